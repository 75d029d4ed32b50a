#!/usr/bin/env python3
"""DPDK's examples/vhost_blk serving a QEMU guest's disk. The example (built
once from Debian's DPDK 22.11 source against Debian's headers, then run
unchanged on either library) registers its extern message hooks from
`new_connection` and answers VHOST_USER_GET_CONFIG there, keeps the disk in
its own memory and moves the requests through the inflight API. A Linux
guest with a vhost-user-blk-pci disk writes 1 MiB of random data and reads it
back from the device (not the page cache); QEMU is then restarted, connects
again (a new connection: the example registers its hooks again) and the
second guest reads the same bytes. The disk's size proves GET_CONFIG was
answered by the example. KVM when the probe boots a guest under it, else TCG
(vectors=0). Run against stock DPDK and ours; ours must pass.
usage: vhost_blk.py [LIBDIR]"""

import os
import re
import shutil
import subprocess
import sys
import tempfile
import time

from qemu_guest import probe_kvm
from vm import run_to_exit
from testpmd import STOCK, resolve_libdir, run_differential

HERE = os.path.dirname(os.path.abspath(__file__))
GUEST = os.environ.get("GUEST_DIR", "/var/tmp/rvhost-guest")
# The example's disk: 32768 blocks of 4096 bytes, in 512-byte sectors.
DISK_SECTORS = 32768 * 4096 // 512


def dpdk_source():
    for d in sorted(os.listdir("/var/tmp/rvhost-dpdk-src")) if os.path.isdir("/var/tmp/rvhost-dpdk-src") else []:
        p = os.path.join("/var/tmp/rvhost-dpdk-src", d)
        if d.startswith("dpdk-22.11") and os.path.isdir(os.path.join(p, "examples/vhost_blk")):
            return p
    raise SystemExit("DPDK 22.11 source not found (tools/setup.sh fetches it with apt-get source dpdk)")


def build_example(out):
    """examples/vhost_blk as a DPDK user builds it: Debian's headers and
    pkg-config, linked by SONAME (LD_LIBRARY_PATH then picks the library)."""
    src = os.path.join(dpdk_source(), "examples/vhost_blk")
    flags = subprocess.run(["pkg-config", "--cflags", "--libs", "libdpdk"], capture_output=True, text=True,
                           check=True).stdout.split()
    srcs = [os.path.join(src, f) for f in sorted(os.listdir(src)) if f.endswith(".c")]
    binary = os.path.join(out, "dpdk-vhost_blk")
    subprocess.run(["gcc", "-O2", "-Wno-deprecated-declarations", "-DALLOW_EXPERIMENTAL_API", "-o", binary] + srcs
                   + flags + ["-lpthread"], check=True)
    return binary


def mapped_vhost_library(pid):
    with open(f"/proc/{pid}/maps") as f:
        for line in f:
            if "librte_vhost.so" in line:
                return os.path.realpath(line.split()[-1])
    return None


def boot(accel, sock, mode, tag):
    """One guest boot with the disk; returns its console text."""
    log = tempfile.mktemp(prefix=f"rvhost-blk-{tag}-", suffix=".log")
    cmd = ["qemu-system-x86_64"] + accel[0] + ["-m", "256", "-smp", "1",
           "-object", "memory-backend-memfd,id=mem,size=256M,share=on", "-numa", "node,memdev=mem",
           "-chardev", f"socket,id=blk0,path={sock}",
           "-device", "vhost-user-blk-pci,chardev=blk0,num-queues=1,vectors=0",
           "-kernel", f"{GUEST}/vmlinuz", "-initrd", f"{GUEST}/initrd-blk.gz",
           "-append", f"console=ttyS0 panic=-1 quiet no_timer_check rvblk={mode}", "-nographic", "-no-reboot", "-nic", "none"]
    try:
        run_to_exit(cmd, log, 240)
        return open(log, errors="replace").read()
    finally:
        os.unlink(log)


def field(text, name):
    m = re.search(rf"{name}: (\S+)", text)
    return m.group(1) if m else None


def run(binary, libdir, accel):
    work = tempfile.mkdtemp(prefix="rvhost-blk-")
    sock = os.path.join(work, "vhost.socket")  # the example's name, in its cwd
    env = dict(os.environ)
    env.pop("LD_LIBRARY_PATH", None)
    if libdir:
        env["LD_LIBRARY_PATH"] = libdir
    log_path = os.path.join(work, "vhost_blk.log")
    log = open(log_path, "w")
    app = subprocess.Popen(["stdbuf", "-oL", binary, "-l", "0", "--no-huge", "-m", "512", "--no-pci", "--file-prefix",
                            f"rvh-blk-{os.getpid()}", "--log-level=lib.vhost.config:info"],
                           cwd=work, env=env, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    try:
        end = time.time() + 60
        while not os.path.exists(sock):
            if app.poll() is not None or time.time() > end:
                raise RuntimeError("vhost_blk did not create its socket: " + open(log_path).read()[-1500:])
            time.sleep(0.1)
        lib = mapped_vhost_library(app.pid)
        want = os.path.realpath(os.path.join(libdir, "librte_vhost.so.23") if libdir else STOCK)
        first = boot(accel, sock, "write", "1")
        second = boot(accel, sock, "check", "2")
        applog = open(log_path, errors="replace").read()
        problems = []
        if lib != want:
            problems.append(f"vhost_blk mapped {lib}, not {want}")
        for name, text in (("first boot", first), ("after QEMU reconnected", second)):
            size = field(text, "GUEST-BLK-SIZE")
            if size != str(DISK_SECTORS):
                problems.append(f"{name}: guest disk size {size} (want {DISK_SECTORS} sectors from GET_CONFIG); "
                                f"console: {text.strip()[-600:]}")
        wrote, read1, read2 = field(first, "GUEST-BLK-WROTE"), field(first, "GUEST-BLK-READ"), \
            field(second, "GUEST-BLK-READ")
        if not wrote or read1 != wrote:
            problems.append(f"first boot read back {read1}, wrote {wrote}")
        if not wrote or read2 != wrote:
            problems.append(f"after QEMU reconnected the guest read {read2}, wrote {wrote}")
        if "rte_vhost_extern_callback_register() failed" in applog:
            problems.append("the example could not register its message hooks")
        if app.poll() is not None:
            problems.append(f"vhost_blk exited ({app.returncode})")
        if problems:
            problems.append("vhost_blk log: " + applog.strip()[-800:].replace("\n", " | "))
        conns = applog.count("New Device")
        if conns < 2:
            problems.append(f"the example started {conns} devices, not one per boot")
        detail = f"{accel[1]}; wrote {wrote}, read {read1} then {read2} after a new connection; {conns} devices started"
        return not problems, detail + ("; " + "; ".join(problems) if problems else "")
    finally:
        if app.poll() is None:
            app.send_signal(2)  # the example's SIGINT handler unregisters and exits
            try:
                app.wait(timeout=10)
            except subprocess.TimeoutExpired:
                app.kill()
                app.wait()
        log.close()
        shutil.rmtree(work, ignore_errors=True)


def main():
    ours = resolve_libdir(sys.argv[1] if len(sys.argv) > 1 else None)
    subprocess.run([os.path.join(HERE, "guest-image.sh"), "blk"], check=True)
    accel = probe_kvm()
    print(f"accelerator: {accel[1]}", flush=True)
    out = tempfile.mkdtemp(prefix="rvhost-blk-bin-")
    try:
        binary = build_example(out)
        run_differential([("examples/vhost_blk serves a guest's disk across a reconnect",
                           lambda libdir: run(binary, libdir, accel))], ours)
    finally:
        shutil.rmtree(out, ignore_errors=True)


if __name__ == "__main__":
    main()
