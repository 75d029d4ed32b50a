"""Helpers shared by the QEMU end-to-end tests that run the "stream" guest
(migration.py, viommu.py): a minimal QMP client, a QEMU launcher with a
vhost-user virtio-net NIC, serial console logs, and the host-side copy of
rvstream's payload generator (guest/rvstream.c) used to recompute the guest's
digest."""

import json
import os
import re
import socket
import struct
import subprocess
import tempfile
import time
import zlib

GUEST = os.environ.get("GUEST_DIR", "/var/tmp/rvhost-guest")
# The QEMU command (e.g. "chroot /srv/trixie qemu-system-x86_64" for
# another QEMU, with /tmp, /var/tmp and /dev mounted there).
QEMU = os.environ.get("RVHOST_QEMU", "qemu-system-x86_64").split()
HERE = os.path.dirname(os.path.abspath(__file__))


def build_stream_image():
    subprocess.run([os.path.join(HERE, "guest-image.sh"), "stream"], check=True)


def run_to_exit(cmd, out_path, timeout):
    """Runs a QEMU whose guest powers itself off, its stdout and stderr in
    out_path; killed if it is still running after `timeout` seconds."""
    with open(out_path, "w") as out:
        q = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        try:
            q.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            q.kill()
            q.wait()


class QMP:
    """QMP over a unix socket: one command at a time, events kept aside."""

    def __init__(self, path, timeout=60.0, alive=lambda: True):
        end = time.time() + timeout
        while True:
            try:
                self.s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                self.s.connect(path)
                break
            except OSError:
                self.s.close()
                if time.time() > end or not alive():
                    raise
                time.sleep(0.1)
        self.s.settimeout(timeout)
        self.buf = b""
        self.events = []
        self._read()  # greeting
        self.cmd("qmp_capabilities")

    def _read(self):
        while b"\n" not in self.buf:
            data = self.s.recv(65536)
            if not data:
                raise ConnectionError("QMP connection closed")
            self.buf += data
        line, self.buf = self.buf.split(b"\n", 1)
        return json.loads(line)

    def cmd(self, name, **args):
        msg = {"execute": name}
        if args:
            msg["arguments"] = args
        self.s.sendall(json.dumps(msg).encode() + b"\n")
        while True:
            r = self._read()
            if "event" in r:
                self.events.append(r)
                continue
            if "error" in r:
                raise RuntimeError(f"QMP {name}: {r['error']}")
            return r.get("return")

    def close(self):
        try:
            self.s.close()
        except OSError:
            pass


class Qemu:
    """One QEMU with a vhost-user virtio-net NIC on `sock`, its serial console
    in a file and QMP on a unix socket. `machine`: the -machine/-cpu
    arguments; `mem`: the -object memory backend (id=mem); `net`: extra
    virtio-net-pci properties; `extra`: more arguments (before -device)."""

    def __init__(self, tag, machine, mem, sock, append, net="", extra=(), incoming=None, trace=None,
                 initrd="initrd-stream.gz", queues=1, mem_size="256M", netdev_bus=None, smp=1):
        self.tag = tag
        self.serial = tempfile.mktemp(prefix=f"rvhost-{tag}-", suffix=".serial")
        self.qmp_path = tempfile.mktemp(prefix=f"rvhost-{tag}-", suffix=".qmp")
        self.stderr_path = tempfile.mktemp(prefix=f"rvhost-{tag}-", suffix=".err")
        self.trace = trace
        mq = f",mq=on,vectors=0" if queues > 1 else ",vectors=0"
        bus = f",bus={netdev_bus}" if netdev_bus else ""
        cmd = QEMU + machine + ["-m", mem_size, "-smp", str(smp),
               "-object", mem, "-numa", "node,memdev=mem"] + list(extra) + [
               "-chardev", f"socket,id=chr0,path={sock}",
               "-netdev", f"type=vhost-user,id=net0,chardev=chr0,queues={queues}",
               "-device", f"virtio-net-pci,netdev=net0,mac=52:54:00:12:34:56{mq}{bus}{net}",
               "-kernel", f"{GUEST}/vmlinuz", "-initrd", f"{GUEST}/{initrd}",
               "-append", f"console=ttyS0 panic=-1 quiet {append}",
               "-display", "none", "-nodefaults", "-no-reboot", "-serial", f"file:{self.serial}",
               "-qmp", f"unix:{self.qmp_path},server=on,wait=off"]
        if incoming:
            cmd += ["-incoming", incoming]
        if trace:  # (log file, [event patterns]); one -trace: a second would reset file=
            with open(trace[0] + ".events", "w") as f:
                f.write("\n".join(trace[1]) + "\n")
            cmd += ["-trace", f"events={trace[0]}.events,file={trace[0]}"]
        self.cmdline = cmd
        self.err = open(self.stderr_path, "w")
        self.p = subprocess.Popen(cmd, stdout=self.err, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        self.qmp = None

    def connect(self):
        try:
            self.qmp = QMP(self.qmp_path, alive=lambda: self.p.poll() is None)
        except OSError:
            if self.p.poll() is not None:
                time.sleep(0.2)
                raise RuntimeError(f"{self.tag} QEMU exited ({self.p.returncode}): {self.died()}")
            raise
        return self.qmp

    def console(self):
        try:
            with open(self.serial, errors="replace") as f:
                return f.read()
        except OSError:
            return ""

    def stderr(self):
        try:
            with open(self.stderr_path, errors="replace") as f:
                return f.read()
        except OSError:
            return ""

    def wait_console(self, pattern, timeout, start=0):
        end = time.time() + timeout
        while time.time() < end:
            m = re.search(pattern, self.console()[start:])
            if m:
                return m
            if self.p.poll() is not None:
                raise RuntimeError(f"{self.tag} QEMU exited ({self.p.returncode}): {self.died()}")
            time.sleep(0.2)
        raise TimeoutError(f"{self.tag}: no '{pattern}' on the console within {timeout} s: "
                           f"{self.console()[-1200:]}")

    def died(self):
        """Why this QEMU exited: its stderr, else the guest's last words."""
        err = self.stderr().strip()
        if err:
            return err[-600:]
        con = self.console()
        m = re.search(r"(RIP: .*|BUG: .*|general protection fault.*)\n(?:.*\n)*?.*(Kernel panic.*)", con)
        return " / ".join(m.groups()) if m else "console: " + con.strip()[-300:]

    def wait_reports(self, n, timeout, start=0):
        """Waits for n "STREAM ..." reports on the console after offset start."""
        end = time.time() + timeout
        while len(stream_reports(self.console()[start:])) < n:
            if time.time() > end:
                raise TimeoutError(f"{self.tag}: fewer than {n} stream reports within {timeout} s: "
                                   f"{self.console()[start:][-1200:]}")
            if self.p.poll() is not None:
                raise RuntimeError(f"{self.tag} QEMU exited ({self.p.returncode}): {self.died()}")
            time.sleep(0.2)

    def quit(self):
        if self.p.poll() is None:
            try:
                if self.qmp:
                    self.qmp.s.settimeout(5)
                    self.qmp.cmd("quit")
                self.p.wait(timeout=10)
            except Exception:
                self.p.kill()
                self.p.wait()
        if self.qmp:
            self.qmp.close()
        self.err.close()

    def cleanup(self, keep=False):
        self.quit()
        for f in (self.serial, self.qmp_path, self.stderr_path) + ((self.trace[0], self.trace[0] + ".events") if self.trace else ()):
            if not keep:
                try:
                    os.unlink(f)
                except OSError:
                    pass


# --- rvstream's payloads (must match guest/rvstream.c) ---------------------

MAGIC = 0x54535652
BLOCK = 65536
MINLEN, MAXLEN = 1180, 1400


def _block():
    x, mask, out = 0x9E3779B97F4A7C15, (1 << 64) - 1, bytearray()
    for _ in range(BLOCK // 8):
        x ^= (x << 13) & mask
        x ^= x >> 7
        x ^= (x << 17) & mask
        out += x.to_bytes(8, "little")
    return bytes(out)


_BLOCK = _block()


def payload(seq):
    n = MINLEN + (((seq * 2654435761) & 0xFFFFFFFF) >> 8) % (MAXLEN - MINLEN + 1)
    off = ((seq * 7919) & 0xFFFFFFFF) % (BLOCK - MAXLEN)
    return struct.pack("<III", MAGIC, seq, n) + _BLOCK[off:off + n - 12]


STREAM_RE = re.compile(r"STREAM t=(\d+) sent=(\d+) good=(\d+) bad=(\d+) dup=(\d+) bytes=(\d+) dig=(\d+) "
                       r"maxseq=(\d+) nmiss=(\d+) sockdrop=(\d+) miss=(\S+)")


def stream_reports(text):
    """Every "STREAM ..." report line of a console, as dicts."""
    out = []
    for m in STREAM_RE.finditer(text):
        keys = ("t", "sent", "good", "bad", "dup", "bytes", "dig", "maxseq", "nmiss", "sockdrop")
        r = {k: int(v) for k, v in zip(keys, m.groups())}
        r["miss"] = m.group(11)
        out.append(r)
    return out


def expected_digest(report):
    """(digest, good, bytes) the host computes for a report from its own copy
    of the generator: every sequence number below maxseq except the missing
    ones; None if the guest's missing list was cut short."""
    if report["miss"].endswith("..."):
        return None
    missing = set()
    if report["miss"] != "-":
        for r in report["miss"].split(","):
            a, _, b = r.partition("-")
            missing.update(range(int(a), int(b or a) + 1))
    dig = good = nbytes = 0
    for seq in range(report["maxseq"]):
        if seq in missing:
            continue
        p = payload(seq)
        dig += zlib.crc32(p)
        good += 1
        nbytes += len(p)
    return dig & ((1 << 64) - 1), good, nbytes


def check_stream(report, max_missing):
    """Problems found in a guest's final stream report (empty: all good)."""
    problems = []
    if report["bad"]:
        problems.append(f"{report['bad']} corrupted packets")
    if report["dup"]:
        problems.append(f"{report['dup']} duplicated packets")
    if report["nmiss"] > max_missing:
        problems.append(f"{report['nmiss']} packets missing (> {max_missing})")
    exp = expected_digest(report)
    if exp is None:
        problems.append("missing list too long to recompute the digest")
    elif exp != (report["dig"], report["good"], report["bytes"]):
        problems.append(f"digest/good/bytes {report['dig']}/{report['good']}/{report['bytes']} "
                        f"!= host's {exp[0]}/{exp[1]}/{exp[2]}")
    return problems

