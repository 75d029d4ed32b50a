#!/usr/bin/env python3
"""rvhost-e2e: DPDK's examples/vhost_crypto on rvhost serving a QEMU guest.

The example (built from Debian's DPDK 22.11 source against our headers and
library, as tests/abi/examples.sh builds it) runs on the software
crypto_openssl cryptodev; QEMU (TCG, `-object cryptodev-vhost-user`,
`-device virtio-crypto-pci`) boots Debian's kernel, whose virtio_crypto
driver registers cbc(aes) (its self-test on: CONFIG_CRYPTO_MANAGER_DISABLE_TESTS
is off) and rvcrypto (guest/rvcrypto.c) runs the NIST SP 800-38A CBC-AES128
known answers and random rounds through AF_ALG bound to
virtio_crypto_aes_cbc, compared with the guest's cbc(aes-generic).

`no_timer_check`: under TCG on a loaded host the guest's IO-APIC timer
check can fail and panic the kernel before anything is tested.

QEMU 7.2 enables neither the ring nor DRIVER_OK and sends sessions in QEMU
7.1's layout: with Debian's library the example never gets new_device and
the guest's driver cannot create a session (docs/vhost-crypto.md).

usage: tests/e2e/vhost_crypto.py [LIBDIR] [--rounds N]
"""

import argparse
import glob
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import vm  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
MODULES = ["drivers/virtio/virtio_ring.ko", "drivers/virtio/virtio.ko", "drivers/virtio/virtio_pci_modern_dev.ko",
           "drivers/virtio/virtio_pci_legacy_dev.ko", "drivers/virtio/virtio_pci.ko", "crypto/crypto_engine.ko",
           "drivers/crypto/virtio/virtio_crypto.ko", "crypto/af_alg.ko", "crypto/algif_skcipher.ko"]

INIT = """#!/bin/busybox sh
/bin/busybox --install -s /bin
mount -t proc proc /proc; mount -t sysfs sys /sys; mount -t devtmpfs dev /dev; mkdir -p /tmp
for m in MODS; do insmod /mod/$m.ko; done
sleep 1
echo "GUEST: virtio_crypto cbc(aes): $(grep -A8 'virtio_crypto_aes_cbc' /proc/crypto | grep -m1 selftest)"
rounds=200
for w in $(cat /proc/cmdline); do case $w in rvrounds=*) rounds=${w#*=};; esac; done
rvcrypto $rounds
echo "RVCRYPTO-EXIT: $?"
poweroff -f
"""


def build_example(libdir, out):
    src = (glob.glob("/var/tmp/rvhost-dpdk-src/dpdk-22.11*/examples/vhost_crypto") or [None])[0]
    if not src:
        raise RuntimeError("DPDK 22.11 source not found (tools/setup.sh fetches it)")
    cflags = subprocess.run(["pkg-config", "--cflags", "libdpdk"], capture_output=True, text=True, check=True).stdout
    libs = subprocess.run(["pkg-config", "--libs", "libdpdk"], capture_output=True, text=True, check=True).stdout
    cmd = (["gcc", "-O2", "-Wno-deprecated-declarations", "-DALLOW_EXPERIMENTAL_API", f"-I{ROOT}/include"]
           + cflags.split() + ["-o", out] + sorted(glob.glob(f"{src}/*.c"))
           + [f"-L{libdir}", f"-Wl,-rpath,{libdir}", "-lrte_vhost"] + libs.split() + ["-lpthread"])
    subprocess.run(cmd, check=True)


def build_image(work):
    """initrd-crypto.gz in work/: the basic guest's busybox, the virtio and
    crypto modules, rvcrypto."""
    if not os.path.isdir(f"{vm.GUEST}/root") or not os.path.isdir(f"{vm.GUEST}/kernel"):
        subprocess.run([os.path.join(vm.HERE, "guest-image.sh")], check=True)
    root = f"{work}/root"
    for d in ("bin", "mod", "proc", "sys", "dev"):
        os.makedirs(f"{root}/{d}", exist_ok=True)
    shutil.copy(f"{vm.GUEST}/root/bin/busybox", f"{root}/bin/busybox")
    mods = glob.glob(f"{vm.GUEST}/kernel/lib/modules/*")[0]
    for m in MODULES:
        shutil.copy(f"{mods}/kernel/{m}", f"{root}/mod/")
    subprocess.run(["gcc", "-O2", "-Wall", "-static", "-o", f"{root}/bin/rvcrypto",
                    os.path.join(vm.HERE, "guest", "rvcrypto.c")], check=True)
    names = " ".join(os.path.basename(m)[:-3] for m in MODULES)
    with open(f"{root}/init", "w") as f:
        f.write(INIT.replace("MODS", names))
    os.chmod(f"{root}/init", 0o755)
    subprocess.run(f"cd {root} && find . | cpio -o -H newc --quiet | gzip -1 > {work}/initrd-crypto.gz",
                   shell=True, check=True)
    return f"{work}/initrd-crypto.gz"


def run(libdir, rounds):
    work = tempfile.mkdtemp(prefix="rvhost-crypto-")
    sock = f"{work}/crypto.sock"
    app_log = f"{work}/app.log"
    serial = f"{work}/guest.serial"
    app = None
    try:
        binary = f"{work}/dpdk-vhost_crypto"
        build_example(libdir, binary)
        initrd = build_image(work)
        env = dict(os.environ, LD_LIBRARY_PATH=libdir)
        with open(app_log, "w") as log:
            app = subprocess.Popen([binary, "-l", "0,1", "--no-huge", "-m", "1024", "--no-pci",
                                    f"--file-prefix=rvhost-crypto-{os.getpid()}", "--vdev", "crypto_openssl0",
                                    "--log-level=lib.vhost.*:info", "--", "--config", "(1,0,0)",
                                    "--socket-file", f"1,{sock}"],
                                   stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env)
        for _ in range(300):
            if os.path.exists(sock) or app.poll() is not None:
                break
            time.sleep(0.1)
        if not os.path.exists(sock):
            raise RuntimeError("vhost_crypto did not create its socket: " + open(app_log).read()[-1500:])
        maps = open(f"/proc/{app.pid}/maps").read()
        lib = re.search(r"\S*librte_vhost\.so\S*", maps)
        print(f"vhost_crypto runs with {lib.group(0) if lib else '?'}")
        cmd = vm.QEMU + ["-machine", "pc,accel=tcg", "-cpu", "max", "-m", "256", "-smp", "1",
                         "-object", "memory-backend-memfd,id=mem,size=256M,share=on", "-numa", "node,memdev=mem",
                         "-chardev", f"socket,id=chr0,path={sock}",
                         "-object", "cryptodev-vhost-user,id=cdev0,chardev=chr0",
                         "-device", "virtio-crypto-pci,id=crypto0,cryptodev=cdev0,vectors=0",
                         "-kernel", f"{vm.GUEST}/vmlinuz", "-initrd", initrd,
                         "-append", f"console=ttyS0 panic=-1 quiet no_timer_check rvrounds={rounds}",
                         "-display", "none", "-nodefaults", "-no-reboot", "-serial", f"file:{serial}"]
        vm.run_to_exit(cmd, f"{work}/qemu.err", 600)
        console = open(serial, errors="replace").read() if os.path.exists(serial) else ""
        lines = [ln for ln in console.splitlines() if ln.startswith(("GUEST", "RVCRYPTO"))]
        print("\n".join(lines) or console[-2000:])
        kat = re.search(r"RVCRYPTO: kat (\d+)/10", console)
        rnd = re.search(r"RVCRYPTO: random (\d+)/(\d+)", console)
        selftest = re.search(r"GUEST: virtio_crypto cbc\(aes\): selftest\s*: passed", console)
        ok = (bool(selftest) and kat is not None and kat.group(1) == "10" and rnd is not None
              and rnd.group(1) == rnd.group(2) == str(rounds) and "RVCRYPTO-EXIT: 0" in console)
        print(("PASS" if selftest else "FAIL") + ": the guest's virtio_crypto cbc(aes) passed the kernel self-test")
        print(("PASS" if kat and kat.group(1) == "10" else "FAIL") + ": NIST SP 800-38A CBC-AES128 through AF_ALG")
        print(("PASS" if rnd and rnd.group(1) == rnd.group(2) == str(rounds) else "FAIL")
              + f": {rounds} random rounds equal to cbc(aes-generic)")
        if not ok:
            print("--- vhost_crypto log (tail) ---\n" + open(app_log, errors="replace").read()[-2000:])
            print("--- qemu ---\n" + open(f"{work}/qemu.err", errors="replace").read()[-1000:])
        return ok
    finally:
        if app and app.poll() is None:
            app.kill()
            app.wait()
        if os.environ.get("RVHOST_KEEP"):
            print(f"kept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("libdir", nargs="?", default=os.path.join(ROOT, "build"))
    ap.add_argument("--rounds", type=int, default=200)
    a = ap.parse_args()
    ok = run(os.path.realpath(a.libdir), a.rounds)
    print("1 passed, 0 failed" if ok else "0 passed, 1 failed")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
