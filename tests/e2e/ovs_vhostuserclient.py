#!/usr/bin/env python3
"""Open vSwitch with DPDK (ovs-vswitchd-dpdk) forwarding between two
`dpdkvhostuserclient` ports: OVS is the vhost-user client, on the library
under test (LD_LIBRARY_PATH of ovs-vswitchd only); each port's server is a
dpdk-testpmd with net_virtio_user (server=1). OpenFlow sends port 1 to port 2
and back, nothing else. One testpmd sends 128 64-byte packets (4 tx_first
bursts) and then only receives; the other only receives. Then the other way.
Counts asserted, each direction:
  - sender TX == 128, OVS's rx_packets of the ingress port == 128, OVS's
    tx_packets of the egress port == 128, receiver RX == 128 and its
    RX-bytes == 128 x 64 (nothing lost, invented or truncated in either
    vhost-user dequeue or enqueue of the library);
  - ovs-vswitchd maps the library under test (/proc/PID/maps).
Run against stock DPDK and ours; ours must pass. Needs ovs-vswitchd built
with DPDK (Debian's openvswitch-switch-dpdk, selected with
update-alternatives) and the installed DPDK's testpmd; as tests/chroot/debian.sh
sets up in a Debian 13 chroot (OVS 3.5), also on bookworm (OVS 3.1).
usage: ovs_vhostuserclient.py [LIBDIR]"""

import os
import re
import shutil
import subprocess
import sys
import tempfile
import time

from testpmd import Testpmd, expected_library, port_stats, reserve_hugepages, resolve_libdir, run_differential

PACKETS = 4 * 32
# OVS always gives DPDK --in-memory, which --no-huge cannot go with: its
# memory comes from 2 MiB hugepages.
HUGEPAGES = 512
SCHEMA = "/usr/share/openvswitch/vswitch.ovsschema"


class Ovs:
    """A private ovsdb-server and ovs-vswitchd (DPDK --in-memory) in a
    temporary run directory, so that nothing is shared with another OVS.
    Its processes are stopped by close(), also when start() failed."""

    def __init__(self):
        self.dir = tempfile.mkdtemp(prefix="rvhost-ovs-")
        self.procs = []
        self.vswitchd = None

    def start(self, libdir):
        self.db = f"unix:{self.dir}/db.sock"
        self.env = dict(os.environ, OVS_RUNDIR=self.dir, OVS_LOGDIR=self.dir, OVS_DBDIR=self.dir,
                        OVS_SYSCONFDIR=self.dir)
        self.env.pop("LD_LIBRARY_PATH", None)
        subprocess.run(["ovsdb-tool", "create", f"{self.dir}/conf.db", SCHEMA], check=True, env=self.env)
        self._spawn(["ovsdb-server", f"{self.dir}/conf.db", f"--remote=p{self.db}",
                     f"--pidfile={self.dir}/ovsdb-server.pid", f"--unixctl={self.dir}/ovsdb-server.ctl",
                     f"--log-file={self.dir}/ovsdb-server.log"], "ovsdb-server.out", self.env)
        end = time.time() + 30
        while not os.path.exists(f"{self.dir}/db.sock"):
            if time.time() > end or self.procs[0].poll() is not None:
                raise RuntimeError("ovsdb-server did not start")
            time.sleep(0.1)
        self.vsctl("--no-wait", "init")
        self.vsctl("--no-wait", "set", "Open_vSwitch", ".", "other_config:dpdk-init=true",
                   'other_config:dpdk-extra="--no-pci"', "other_config:dpdk-socket-mem=512",
                   "other_config:pmd-cpu-mask=0x2")
        env = dict(self.env)
        if libdir:
            env["LD_LIBRARY_PATH"] = libdir
        self.vswitchd = self._spawn(["ovs-vswitchd", self.db, f"--pidfile={self.dir}/ovs-vswitchd.pid",
                                     f"--unixctl={self.dir}/ovs-vswitchd.ctl",
                                     f"--log-file={self.dir}/ovs-vswitchd.log"], "ovs-vswitchd.out", env)
        self.vsctl("--timeout=60", "add-br", "br0", "--", "set", "bridge", "br0", "datapath_type=netdev")

    def _spawn(self, cmd, out, env):
        with open(f"{self.dir}/{out}", "w") as f:
            p = subprocess.Popen(cmd, stdout=f, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env)
        self.procs.append(p)
        return p

    def vsctl(self, *args):
        r = subprocess.run(["ovs-vsctl", f"--db={self.db}"] + list(args), capture_output=True, text=True,
                           env=self.env, timeout=90)
        if r.returncode != 0:
            raise RuntimeError(f"ovs-vsctl {' '.join(args)}: {r.stderr.strip()}\n{self.log()[-2000:]}")
        return r.stdout.strip()

    def ofctl(self, *args):
        return subprocess.run(["ovs-ofctl"] + list(args), check=True, env=self.env, capture_output=True,
                              text=True, timeout=30).stdout

    def add_vhostuserclient(self, name, ofport, sock):
        self.vsctl("add-port", "br0", name, "--", "set", "Interface", name, "type=dpdkvhostuserclient",
                   f"options:vhost-server-path={sock}", f"ofport_request={ofport}")

    def port_packets(self, ofport, direction):
        """OVS's live rx or tx packet count of an OpenFlow port (the
        database's statistics lag by seconds)."""
        out = self.ofctl("dump-ports", "br0", str(ofport))
        m = re.search(rf"{direction} pkts=(\d+)", out)
        if not m:
            raise RuntimeError(f"no {direction} count in: {out}")
        return int(m.group(1))

    def log(self):
        try:
            with open(f"{self.dir}/ovs-vswitchd.log", errors="replace") as f:
                return f.read()
        except OSError:
            return ""

    def mapped_vhost_library(self):
        with open(f"/proc/{self.vswitchd.pid}/maps") as f:
            libs = {line.split()[-1] for line in f if "librte_vhost.so" in line}
        return sorted(libs)[0] if libs else None

    def close(self):
        for p in reversed(self.procs):
            if p.poll() is None:
                p.terminate()
                try:
                    p.wait(timeout=15)
                except subprocess.TimeoutExpired:
                    p.kill()
                    p.wait()
        shutil.rmtree(self.dir, ignore_errors=True)


def virtio_server(tag, sock, main_lcore):
    """A testpmd whose net_virtio_user is the vhost-user server on `sock`
    (its probe returns once OVS has connected)."""
    eal = ["-l", "0,1", "--main-lcore", str(main_lcore), "--no-huge", "-m", "512", "--no-pci",
           f"--file-prefix=rvh-ovs-{tag}-{os.getpid()}",
           "--vdev", f"net_virtio_user0,path={sock},server=1,queues=1"]
    return Testpmd(f"ovs-{tag}", eal, ["--nb-cores=1", "--no-lsc-interrupt", "--total-num-mbufs=4096"])


def wait_counter(read, want, timeout=10.0):
    """Polls a counter until it reaches `want` (or the timeout); its last value."""
    end = time.time() + timeout
    value = read()
    while value < want and time.time() < end:
        time.sleep(0.2)
        value = read()
    return value


def direction(sender, receiver, ovs, ingress, egress):
    """`sender` sends PACKETS through OVS (OpenFlow port `ingress` to
    `egress`) to `receiver`; the counts and the problems found."""
    before = {"in": ovs.port_packets(ingress, "rx"), "out": ovs.port_packets(egress, "tx"),
              "rx": port_stats(receiver)["rx_packets"], "rx_bytes": port_stats(receiver)["rx_bytes"],
              "tx": port_stats(sender)["tx_packets"]}
    sender.cmd(f"start tx_first {PACKETS // 32}", expect=r"forwarding")
    got = wait_counter(lambda: port_stats(receiver)["rx_packets"] - before["rx"], PACKETS)
    time.sleep(0.5)  # anything more than PACKETS would arrive now
    rx = port_stats(receiver)
    sent = port_stats(sender)["tx_packets"] - before["tx"]
    sender.cmd("stop", expect=r"Done\.")
    counts = {"sent": sent, "ovs_in": ovs.port_packets(ingress, "rx") - before["in"],
              "ovs_out": ovs.port_packets(egress, "tx") - before["out"],
              "received": rx["rx_packets"] - before["rx"], "bytes": rx["rx_bytes"] - before["rx_bytes"]}
    problems = [f"{k} {v} != {PACKETS}" for k, v in counts.items() if k != "bytes" and v != PACKETS]
    if counts["bytes"] != PACKETS * 64:
        problems.append(f"received {counts['bytes']} bytes != {PACKETS} x 64")
    if got < PACKETS:
        problems.append(f"receiver saw {got} within 10 s")
    return counts, problems


def run(libdir):
    socks = [tempfile.mktemp(prefix=f"rvhost-ovs{i}-", suffix=".sock") for i in (0, 1)]
    if not reserve_hugepages(HUGEPAGES):
        return False, f"cannot reserve {HUGEPAGES} hugepages"
    pmds, ovs = [], Ovs()
    try:
        ovs.start(libdir)
        pmds = [virtio_server(f"p{i}", socks[i], i) for i in (0, 1)]
        time.sleep(1)
        for i in (0, 1):
            ovs.add_vhostuserclient(f"vhu{i}", i + 1, socks[i])
        for pmd in pmds:
            pmd.wait_for(r"testpmd>", 60)
            pmd.cmd("set fwd rxonly", expect=r"forwarding mode")
            pmd.cmd("start", expect=r"forwarding")
        ovs.ofctl("del-flows", "br0")
        ovs.ofctl("add-flow", "br0", "in_port=1,actions=output:2")
        ovs.ofctl("add-flow", "br0", "in_port=2,actions=output:1")
        # Both ports up in OVS (the vhost device was created on each).
        for i in (0, 1):
            end = time.time() + 30
            while ovs.vsctl("get", "Interface", f"vhu{i}", "link_state") != "up" and time.time() < end:
                time.sleep(0.2)
        problems = []
        lib = ovs.mapped_vhost_library()
        if lib != expected_library(libdir):
            problems.append(f"ovs-vswitchd mapped {lib}, expected {expected_library(libdir)}")
        results = []
        for a, b in ((0, 1), (1, 0)):
            pmds[a].cmd("stop", expect=r"Done\.")
            pmds[a].cmd("set fwd rxonly", expect=r"forwarding mode")
            counts, found = direction(pmds[a], pmds[b], ovs, a + 1, b + 1)
            pmds[a].cmd("start", expect=r"forwarding")
            results.append(f"{a}->{b}: " + " ".join(f"{k} {v}" for k, v in counts.items()))
            problems += [f"{a}->{b}: {p}" for p in found]
        version = re.search(r"ovs-vswitchd \(Open vSwitch\) (\S+)", subprocess.run(
            ["ovs-vswitchd", "--version"], capture_output=True, text=True).stdout)
        detail = f"OVS {version.group(1) if version else '?'}; " + "; ".join(results)
        return not problems, detail + ("; " + "; ".join(problems) if problems else "")
    except Exception as e:
        raise RuntimeError(f"{e}\novs-vswitchd.log:\n{ovs.log()[-1500:]}") from e
    finally:
        for pmd in pmds:
            pmd.stop()
        ovs.close()
        for s in socks:
            try:
                os.unlink(s)
            except OSError:
                pass


def main():
    ours = resolve_libdir(sys.argv[1] if len(sys.argv) > 1 else None)
    run_differential([("OVS dpdkvhostuserclient ports forward 128 packets each way", run)], ours)


if __name__ == "__main__":
    main()
