"""Drives pairs of dpdk-testpmd processes (vhost-user <-> virtio-user) for the
end-to-end tests and the benchmark. The vhost side runs with a chosen
librte_vhost (LD_LIBRARY_PATH), and the library it actually mapped is read
from /proc/PID/maps. The SONAME is the installed DPDK's: librte_vhost.so.23
on bookworm (22.11), .so.25 in a Debian 13 chroot (24.11)."""

import glob
import os
import re
import subprocess
import tempfile
import time

LIBDIR = "/usr/lib/x86_64-linux-gnu"


def installed_soname():
    """The SONAME file name of the installed DPDK's librte_vhost."""
    names = [n for n in os.listdir(LIBDIR) if re.fullmatch(r"librte_vhost\.so\.\d+", n)]
    if len(names) != 1:
        raise SystemExit(f"expected one librte_vhost.so.N in {LIBDIR}, found {names}")
    return names[0]


SONAME = installed_soname()
STOCK = os.path.join(LIBDIR, SONAME)


class Testpmd:
    """One interactive testpmd, fed through a pipe, output to a log file."""

    def __init__(self, name, eal, app, libdir=None, env=None):
        self.name = name
        self.log_path = tempfile.mktemp(prefix=f"rvhost-{name}-", suffix=".log")
        self.log = open(self.log_path, "w+")
        e = dict(os.environ)
        e.pop("LD_LIBRARY_PATH", None)
        if libdir:
            e["LD_LIBRARY_PATH"] = libdir
        if env:
            e.update(env)
        # Line-buffered stdout: testpmd prints with stdio, the log is a file.
        cmd = ["stdbuf", "-oL", "dpdk-testpmd"] + eal + ["--"] + ["-i"] + app
        self.p = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=self.log, stderr=subprocess.STDOUT,
                                  text=True, env=e)
        self.pos = 0

    def output(self):
        with open(self.log_path) as f:
            return f.read()

    def wait_for(self, pattern, timeout=30.0):
        """Waits until `pattern` appears in the output after the last mark."""
        end = time.time() + timeout
        while time.time() < end:
            out = self.output()
            m = re.search(pattern, out[self.pos:])
            if m:
                return m
            if self.p.poll() is not None:
                raise RuntimeError(f"{self.name} exited early:\n{out[-3000:]}")
            time.sleep(0.05)
        raise TimeoutError(f"{self.name}: no '{pattern}' within {timeout}s:\n{self.output()[-3000:]}")

    def cmd(self, line, expect=None, timeout=10.0):
        self.pos = len(self.output())
        self.p.stdin.write(line + "\n")
        self.p.stdin.flush()
        if expect:
            return self.wait_for(expect, timeout)
        return None

    def since_mark(self):
        return self.output()[self.pos:]

    def mapped_vhost_library(self):
        try:
            with open(f"/proc/{self.p.pid}/maps") as f:
                libs = {line.split()[-1] for line in f if "librte_vhost.so" in line}
        except OSError:
            return None
        return sorted(libs)[0] if libs else None

    def stop(self):
        if self.p.poll() is None:
            try:
                self.p.stdin.write("quit\n")
                self.p.stdin.flush()
                self.p.wait(timeout=15)
            except Exception:
                self.p.kill()
                self.p.wait()
        self.log.close()

    def kill(self):
        if self.p.poll() is None:
            self.p.kill()
            self.p.wait()


def port_stats(pmd, port=0):
    """Parses 'show port stats PORT' into a dict (packets, bytes, pps)."""
    pmd.cmd(f"show port stats {port}", expect=r"Tx-pps:\s+\d+")
    out = pmd.since_mark()
    nums = {}
    for key, pat in [("rx_packets", r"RX-packets:\s+(\d+)"), ("tx_packets", r"TX-packets:\s+(\d+)"),
                     ("rx_bytes", r"RX-bytes:\s+(\d+)"), ("tx_bytes", r"TX-bytes:\s+(\d+)"),
                     ("rx_pps", r"Rx-pps:\s+(\d+)"), ("tx_pps", r"Tx-pps:\s+(\d+)"),
                     ("rx_missed", r"RX-missed:\s+(\d+)"), ("tx_errors", r"TX-errors:\s+(\d+)")]:
        m = re.search(pat, out)
        nums[key] = int(m.group(1)) if m else 0
    return nums


class Pair:
    """A vhost-user testpmd (library under test) and a virtio-user testpmd."""

    def __init__(self, libdir, virtio_args="", queues=1, vhost_args="", record_cycles=False,
                 vhost_client=False, mbuf_size=None, tag="t", huge=False, descs=1024, mbufs=None):
        self.sock = tempfile.mktemp(prefix=f"rvhost-{tag}-", suffix=".sock")
        self.libdir = libdir
        self.queues = queues
        self.virtio_args = virtio_args
        self.vhost_client = vhost_client
        self.record = ["--record-core-cycles"] if record_cycles else []
        self.mbuf = [f"--mbuf-size={mbuf_size}"] if mbuf_size else []
        self.mbuf += [f"--total-num-mbufs={mbufs}"] if mbufs else []
        self.descs = descs
        self.vhost_args = vhost_args
        self.tag = tag
        self.huge = huge
        self.mem = ["-m", "1024"] if huge else ["--no-huge", "-m", "1024"]
        self.vhost = None
        self.virtio = None

    def prefix(self, side):
        return f"rvh-{self.tag}-{side}-{os.getpid()}"

    def app_args(self):
        q = [f"--rxq={self.queues}", f"--txq={self.queues}"] if self.queues > 1 else []
        return ["--nb-cores=1", f"--txd={self.descs}", f"--rxd={self.descs}"] + q + self.record + self.mbuf

    def start_vhost(self):
        client = ",client=1" if self.vhost_client else ""
        vdev = f"net_vhost0,iface={self.sock},queues={self.queues}{client}{self.vhost_args}"
        eal = ["-l", "0,1", "--main-lcore", "0"] + self.mem + ["--no-pci",
               f"--file-prefix={self.prefix('vh')}", "--vdev", vdev]
        self.vhost = Testpmd(f"{self.tag}-vhost", eal, self.app_args(), libdir=self.libdir)
        self.vhost.wait_for(r"testpmd>", 60)

    def start_virtio(self, wait=True):
        server = ",server=1" if self.vhost_client else ""
        vdev = f"net_virtio_user0,path={self.sock},queues={self.queues}{server}{self.virtio_args}"
        # --no-huge memory is one shared segment already; 25.11's EAL refuses
        # --single-file-segments next to it.
        segments = ["--single-file-segments"] if self.huge else []
        eal = ["-l", "0,1", "--main-lcore", "1"] + self.mem + ["--no-pci"] + segments + [
               f"--file-prefix={self.prefix('vu')}", "--vdev", vdev]
        self.virtio = Testpmd(f"{self.tag}-virtio", eal, self.app_args())
        if wait:
            self.virtio.wait_for(r"testpmd>", 60)

    def start(self):
        if self.vhost_client:
            # A virtio-user server finishes probing only once the vhost
            # client has connected.
            self.start_virtio(wait=False)
            time.sleep(1)
            self.start_vhost()
            self.virtio.wait_for(r"testpmd>", 60)
        else:
            self.start_vhost()
            self.start_virtio()
        self.wait_link()

    def wait_link(self, timeout=90):
        """The vhost port is up once the device was created (new_device):
        testpmd reports the link-state-change event, after the queue state
        events of the rings the front-end enabled."""
        self.vhost.pos = 0
        self.vhost.wait_for(r"Port 0: link state change event", timeout)
        self.vhost.cmd("show port info 0", expect=r"Link status: \w+", timeout=60)
        if "Link status: up" not in self.vhost.since_mark():
            raise RuntimeError("vhost port link is not up")
        # net/vhost turns vring_state_changed into queue state events.
        if "Port 0: queue state event" not in self.vhost.output():
            raise RuntimeError("no queue state event on the vhost port")

    def loaded_library(self):
        return self.vhost.mapped_vhost_library()

    def set_traffic(self, fwd="mac", txpkts=None):
        """The forwarding mode of both sides, and the virtio side's packet
        sizes."""
        for pmd in (self.vhost, self.virtio):
            pmd.cmd(f"set fwd {fwd}", expect=r"forwarding mode")
        if txpkts:
            self.virtio.cmd(f"set txpkts {txpkts}")
            time.sleep(0.2)

    def start_traffic(self):
        """Starts forwarding, the virtio side sending 32 bursts first."""
        self.vhost.cmd("start", expect=r"forwarding")
        self.virtio.cmd("start tx_first 32", expect=r"forwarding")

    def run_traffic(self, fwd="mac", txpkts=None):
        self.set_traffic(fwd, txpkts)
        self.start_traffic()

    def stop_traffic(self):
        self.virtio.cmd("stop", expect=r"Done\.")
        time.sleep(0.3)
        self.vhost.cmd("stop", expect=r"Done\.")

    def close(self):
        for pmd in (self.virtio, self.vhost):
            if pmd:
                pmd.stop()
        # DPDK leaves its hugepage files behind: without this, every run
        # would keep its pages reserved.
        leftovers = [f for side in ("vh", "vu") for f in glob.glob(f"{HUGEPAGE_DIR}/{self.prefix(side)}*")]
        for f in [self.sock] + (leftovers if self.huge else []):
            try:
                os.unlink(f)
            except OSError:
                pass


HUGEPAGE_DIR = "/dev/hugepages"


def reserve_hugepages(pages=1100):
    """Makes `pages` free 2 MiB hugepages available under /dev/hugepages
    (reserving and mounting as needed; needs root). True if they are."""
    def free():
        with open("/proc/meminfo") as f:
            m = re.search(r"HugePages_Free:\s+(\d+)", f.read())
        return int(m.group(1)) if m else 0
    try:
        if free() < pages:
            with open("/proc/sys/vm/nr_hugepages") as f:
                total = int(f.read())
            with open("/proc/sys/vm/nr_hugepages", "w") as f:
                f.write(str(total + pages - free()))
        if not os.path.ismount(HUGEPAGE_DIR):
            os.makedirs(HUGEPAGE_DIR, exist_ok=True)
            subprocess.run(["mount", "-t", "hugetlbfs", "nodev", HUGEPAGE_DIR], check=True,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    except (OSError, ValueError, subprocess.CalledProcessError):
        return False
    return free() >= pages


def cycles_per_packet(pmd):
    """'CPU cycles/packet=N' from 'show fwd stats all' (with
    --record-core-cycles), or None."""
    pmd.cmd("show fwd stats all", expect=r"Accumulated forward statistics")
    time.sleep(0.3)
    m = re.search(r"CPU cycles/packet=([\d.]+)", pmd.since_mark())
    return float(m.group(1)) if m else None


def resolve_libdir(arg):
    """None (stock) or an absolute directory holding our SONAME."""
    if not arg or arg == "stock":
        return None
    d = os.path.abspath(arg)
    if not os.path.exists(os.path.join(d, SONAME)):
        raise SystemExit(f"no {SONAME} in {d}")
    return d


def expected_library(libdir):
    return os.path.realpath(os.path.join(libdir, SONAME)) if libdir else os.path.realpath(STOCK)


def run_differential(cases, ours):
    """Runs each (name, fn) case with stock DPDK's library and with `ours`
    (a libdir, or None for stock only); fn(libdir) returns (ok, detail).
    Prints PASS/FAIL per run and the closing 'N passed, N failed' line,
    counting the runs on ours (or on stock when ours is None); exits 1 on
    any failure."""
    import sys
    libs = [("stock", None)] + ([("rvhost", ours)] if ours else [])
    passed = failed = 0
    for name, fn in cases:
        for label, libdir in libs:
            t0 = time.time()
            try:
                ok, detail = fn(libdir)
            except Exception as e:  # a crash or a hang of a process is a failure
                ok, detail = False, f"{type(e).__name__}: {str(e)[:400]}"
            print(f"{'PASS' if ok else 'FAIL'}: [{label}] {name} ({time.time() - t0:.0f} s): {detail}", flush=True)
            if label == "rvhost" or not ours:
                passed += ok
                failed += not ok
    print(f"{passed} passed, {failed} failed")
    sys.exit(1 if failed else 0)
