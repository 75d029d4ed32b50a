#!/usr/bin/env python3
"""A Linux guest under QEMU with a vhost-user virtio-net NIC served by
dpdk-testpmd's net_vhost on the library under test; testpmd answers with
`icmpecho`. The guest's real virtio-net driver (default offloads, mergeable
buffers, interrupts) pings 10 times with 56-byte and 3 times with 1400-byte
payloads. Run against stock DPDK and ours; ours must pass. TCG is used (this
machine's nested KVM does not reliably boot a stock kernel); under TCG QEMU
7.2 needs vectors=0 on virtio-net-pci with vhost-user.
usage: qemu_guest.py [LIBDIR]"""

import os
import re
import subprocess
import sys
import tempfile
from testpmd import Testpmd, expected_library, port_stats, resolve_libdir, run_differential

GUEST = os.environ.get("GUEST_DIR", "/var/tmp/rvhost-guest")


def run(libdir):
    sock = tempfile.mktemp(prefix="rvhost-qemu-", suffix=".sock")
    eal = ["-l", "0,1", "--main-lcore", "0", "--no-huge", "-m", "512", "--no-pci",
           f"--file-prefix=rvh-qemu-{os.getpid()}", "--vdev", f"net_vhost0,iface={sock},queues=1"]
    pmd = Testpmd("qemu-vhost", eal, ["--nb-cores=1", "--total-num-mbufs=8192"], libdir=libdir)
    qemu = None
    log = tempfile.mktemp(prefix="rvhost-qemu-", suffix=".log")
    try:
        pmd.wait_for(r"testpmd>", 60)
        pmd.cmd("set fwd icmpecho", expect="forwarding mode")
        pmd.cmd("start", expect="forwarding")
        cmd = ["qemu-system-x86_64", "-machine", "pc,accel=tcg", "-cpu", "max", "-m", "256", "-smp", "1",
               "-object", "memory-backend-memfd,id=mem,size=256M,share=on", "-numa", "node,memdev=mem",
               "-chardev", f"socket,id=chr0,path={sock}",
               "-netdev", "type=vhost-user,id=net0,chardev=chr0",
               "-device", "virtio-net-pci,netdev=net0,vectors=0,mac=52:54:00:12:34:56",
               "-kernel", f"{GUEST}/vmlinuz", "-initrd", f"{GUEST}/initrd.gz",
               "-append", "console=ttyS0 panic=-1 quiet", "-nographic", "-no-reboot"]
        with open(log, "w") as out:
            qemu = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
            try:
                qemu.wait(timeout=240)
            except subprocess.TimeoutExpired:
                qemu.kill()
                qemu.wait()
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
        detail = f"{m.group(0) if m else '-'}; {m2.group(0) if m2 else '-'}; testpmd rx {stats['rx_packets']} tx {stats['tx_packets']}"
        return not problems, detail + ("; " + "; ".join(problems) if problems else "")
    finally:
        if qemu and qemu.poll() is None:
            qemu.kill()
        pmd.stop()
        for p in (sock, log):
            try:
                os.unlink(p)
            except OSError:
                pass


def main():
    ours = resolve_libdir(sys.argv[1] if len(sys.argv) > 1 else None)
    subprocess.run([os.path.join(os.path.dirname(os.path.abspath(__file__)), "guest-image.sh")], check=True)
    run_differential([("Linux guest pings through vhost-user", run)], ours)


if __name__ == "__main__":
    main()
