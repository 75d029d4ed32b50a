#!/usr/bin/env python3
"""A Linux guest under QEMU with a vhost-user virtio-net NIC served by
dpdk-testpmd's net_vhost on the library under test; testpmd answers with
`icmpecho`. The guest's real virtio-net driver (default offloads, mergeable
buffers, interrupts) pings 10 times with 56-byte and 3 times with 1400-byte
payloads. Run against stock DPDK and ours; ours must pass. KVM is used when
/dev/kvm boots the guest kernel within a short probe; otherwise TCG (this
machine's nested KVM has not always booted a stock kernel). Under TCG QEMU
7.2 needs vectors=0 on virtio-net-pci with vhost-user.
usage: qemu_guest.py [LIBDIR]"""

import os
import re
import subprocess
import sys
import tempfile
from vm import run_to_exit
from testpmd import Testpmd, expected_library, port_stats, resolve_libdir, run_differential

GUEST = os.environ.get("GUEST_DIR", "/var/tmp/rvhost-guest")
PROBE_SECONDS = 20


def probe_kvm():
    """(accelerator args, why): KVM if a guest kernel boots to its init under
    it within PROBE_SECONDS, else TCG."""
    if not os.access("/dev/kvm", os.R_OK | os.W_OK):
        return ["-machine", "pc,accel=tcg", "-cpu", "max"], "TCG (no usable /dev/kvm)"
    cmd = ["qemu-system-x86_64", "-machine", "pc,accel=kvm", "-cpu", "host", "-m", "256", "-smp", "1",
           "-kernel", f"{GUEST}/vmlinuz", "-append", "console=ttyS0 panic=-1 rdinit=/bin/none",
           "-nographic", "-no-reboot", "-nic", "none"]
    try:
        p = subprocess.run(cmd, capture_output=True, text=True, errors="replace", timeout=PROBE_SECONDS,
                           stdin=subprocess.DEVNULL)
        out = p.stdout + p.stderr
    except subprocess.TimeoutExpired as e:
        out = (e.stdout or b"").decode(errors="replace") if isinstance(e.stdout, bytes) else (e.stdout or "")
    # With no initramfs the kernel boots to the point of mounting a root
    # and panics: proof that it ran under KVM.
    if "Kernel panic" in out or "VFS:" in out:
        return ["-machine", "pc,accel=kvm", "-cpu", "host"], "KVM"
    last = out.strip().splitlines()[-1:] or ["no output"]
    return ["-machine", "pc,accel=tcg", "-cpu", "max"], f"TCG (KVM probe did not boot: {last[0][:120]})"


def run(libdir, accel):
    sock = tempfile.mktemp(prefix="rvhost-qemu-", suffix=".sock")
    eal = ["-l", "0,1", "--main-lcore", "0", "--no-huge", "-m", "512", "--no-pci",
           f"--file-prefix=rvh-qemu-{os.getpid()}", "--vdev", f"net_vhost0,iface={sock},queues=1"]
    pmd = Testpmd("qemu-vhost", eal, ["--nb-cores=1", "--total-num-mbufs=8192"], libdir=libdir)
    log = tempfile.mktemp(prefix="rvhost-qemu-", suffix=".log")
    try:
        pmd.wait_for(r"testpmd>", 60)
        pmd.cmd("set fwd icmpecho", expect="forwarding mode")
        pmd.cmd("start", expect="forwarding")
        cmd = ["qemu-system-x86_64"] + accel[0] + ["-m", "256", "-smp", "1",
               "-object", "memory-backend-memfd,id=mem,size=256M,share=on", "-numa", "node,memdev=mem",
               "-chardev", f"socket,id=chr0,path={sock}",
               "-netdev", "type=vhost-user,id=net0,chardev=chr0",
               "-device", "virtio-net-pci,netdev=net0,vectors=0,mac=52:54:00:12:34:56",
               "-kernel", f"{GUEST}/vmlinuz", "-initrd", f"{GUEST}/initrd.gz",
               "-append", "console=ttyS0 panic=-1 quiet", "-nographic", "-no-reboot"]
        run_to_exit(cmd, log, 240)
        text = open(log, errors="replace").read()
        lib = pmd.mapped_vhost_library()
        stats = port_stats(pmd)
        m = re.search(r"GUEST-PING: (\d+) packets transmitted, (\d+) (?:packets )?received", text)
        m2 = re.search(r"GUEST-PING-LARGE: (\d+) packets transmitted, (\d+) (?:packets )?received", text)
        problems = []
        if lib != expected_library(libdir):
            problems.append(f"vhost side mapped {lib}")
        if not m or int(m.group(2)) < 8:
            problems.append("56-byte pings not answered: " + (m.group(0) if m else text[-1500:]))
        if not m2 or int(m2.group(2)) < 2:
            problems.append("1400-byte pings not answered: " + (m2.group(0) if m2 else "no result"))
        detail = f"{accel[1]}; {m.group(0) if m else '-'}; {m2.group(0) if m2 else '-'}; testpmd rx {stats['rx_packets']} tx {stats['tx_packets']}"
        return not problems, detail + ("; " + "; ".join(problems) if problems else "")
    finally:
        pmd.stop()
        for p in (sock, log):
            try:
                os.unlink(p)
            except OSError:
                pass


def main():
    ours = resolve_libdir(sys.argv[1] if len(sys.argv) > 1 else None)
    subprocess.run([os.path.join(os.path.dirname(os.path.abspath(__file__)), "guest-image.sh")], check=True)
    accel = probe_kvm()
    print(f"accelerator: {accel[1]}", flush=True)
    run_differential([("Linux guest pings through vhost-user", lambda libdir: run(libdir, accel))], ours)


if __name__ == "__main__":
    main()
