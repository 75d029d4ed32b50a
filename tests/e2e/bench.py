#!/usr/bin/env python3
"""The main job: vhost-user <-> virtio-user loopback under dpdk-testpmd,
stock DPDK 22.11's librte_vhost against ours, same machine, in alternating
windows a few seconds apart. For each path it reports the Rx rate at the
vhost port (Mpps) and the vhost forwarding core's CPU cycles per packet
(testpmd --record-core-cycles), each library's median over its windows, and
the ratio ours/stock. It is a benchmark: it fails only if traffic does not
flow.
usage: bench.py [LIBDIR] [--baseline LIBDIR] [--rounds N] [--window S] [--quick]
                [--size 64|1518] [--ring N] [--mbufs N] [--paths WORD,...] [--no-huge]

Why windows: on a VM the host moves the two vCPUs between its core
complexes every 15-25 s under load, and a cache line bounced between them
costs ~25 ns on one placement and ~165 ns on another (measured here with a
ping-pong between the two cores). The loopback moves several lines a packet
between the cores, so a whole run of either library took 1.5x as many cycles
when it fell on the far placement, and runs a minute apart could not be
compared. So both libraries' testpmd pairs stay up for the whole path, and
their forwarding alternates in windows (`--window` seconds measured after a
half-second warm-up, `--rounds` windows each); a window of one library is
compared with the mean of the other's windows just before and after it, and
the ratio reported is the median of those paired ratios, which a placement
change inside one window moves only for that pair.

--baseline sets the library compared against (default: Debian's, "stock");
another build of ours gives a before/after comparison.
--paths keeps the paths whose name contains one of the words (e.g. packed).
--ring sets the virtio-user rings' size (devargs queue_size=, default 256 as
virtio-user's own default; QEMU guests use 256 to 1024) and both testpmds'
--txd/--rxd to match (net_vhost ignores its own). --mbufs sets both
testpmds' --total-num-mbufs (default: testpmd's own count); more mbufs
spread the packets over more cache lines.
The testpmds run on 2 MiB hugepages (reserved and mounted here if needed, as
root), as DPDK's own performance test plans do: on 4 KiB pages (`--no-huge`,
also the fallback when none can be reserved) the TLB misses make whole runs
of either library 30-60 % slower at random."""

import argparse
import atexit
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

from testpmd import Pair, cycles_per_packet, expected_library, port_stats, reserve_hugepages, resolve_libdir
from loopback_paths import PATHS

QUICK = ["split mergeable", "packed in-order mergeable"]
# Two pairs of testpmds (-m 1024 each) are up at once.
HUGEPAGES = 2200
WARM_UP = 0.5
# Below this many ns a line crosses within one last-level cache.
NEAR_NS = 60


def start_pair(label, libdir, vargs, a, huge):
    pair = Pair(libdir, f"{vargs},queue_size={a.ring}", record_cycles=True, tag=f"bench-{label}",
                huge=huge, descs=a.ring, mbufs=a.mbufs)
    try:
        pair.start()
        if pair.loaded_library() != expected_library(libdir):
            raise RuntimeError(f"wrong library mapped: {pair.loaded_library()}")
        pair.set_traffic(txpkts=str(a.size) if a.size != 64 else None)
    except Exception:
        pair.close()
        raise
    return pair


def core_distance_probe():
    """Builds core_distance.c; the command that runs it, or None without a
    C compiler."""
    src = os.path.join(os.path.dirname(os.path.abspath(__file__)), "core_distance.c")
    tmp = tempfile.mkdtemp(prefix="rvhost-bench-")
    atexit.register(shutil.rmtree, tmp, True)
    exe = os.path.join(tmp, "core_distance")
    try:
        subprocess.run(["cc", "-O2", "-pthread", "-o", exe, src], check=True)
    except (OSError, subprocess.CalledProcessError):
        return None
    return exe


def core_distance(probe):
    """Nanoseconds a cache line takes between the two forwarding cores now
    (0 when there is no probe)."""
    if not probe:
        return 0
    return int(subprocess.run([probe], check=True, capture_output=True, text=True).stdout)


def window(pair, a, probe):
    """Forwards for one window: (Mpps at the vhost port, vhost cycles/packet,
    the cores' distance in ns, the larger of before and after). Each start
    resets testpmd's forwarding statistics and drops what the Rx queues
    held, so every window begins alike."""
    before = core_distance(probe)
    pair.start_traffic()
    time.sleep(WARM_UP)
    port_stats(pair.vhost)  # the rate below counts from here
    time.sleep(a.window)
    mpps = port_stats(pair.vhost)["rx_pps"] / 1e6
    pair.stop_traffic()
    cycles = cycles_per_packet(pair.vhost)
    return mpps, cycles, max(before, core_distance(probe))


def wanted(placement, ns):
    return placement == "any" or (ns < NEAR_NS) == (placement == "near")


def measure_path(libs, vargs, a, huge, probe):
    """[(label, Mpps, cycles/packet, ns)] a window each, in time order, the
    windows alternating between the two libraries `libs` ([(label, libdir)])
    until each has `a.rounds` windows on the wanted placement (at most
    three times as many each)."""
    pairs = {}
    try:
        for label, libdir in libs:
            pairs[label] = start_pair(label, libdir, vargs, a, huge)
        # A first window each, not counted: its first packets touch
        # every mbuf and ring page for the first time.
        for label, _ in libs:
            window(pairs[label], a, probe)
        windows = []
        kept = {label: 0 for label, _ in libs}
        for w in range(6 * a.rounds):
            if min(kept.values()) >= a.rounds:
                break
            label = libs[w % 2][0]
            windows.append((label, *window(pairs[label], a, probe)))
            kept[label] += wanted(a.placement, windows[-1][3])
        return windows
    finally:
        for pair in pairs.values():
            pair.close()


def paired_ratios(windows, label):
    """Cycles of each `label` window over the mean of the other library's
    nearest windows before and after it (`windows` in time order)."""
    ratios = []
    for k, (lab, _, cyc, _) in enumerate(windows):
        if lab != label or not cyc:
            continue
        before = [w[2] for w in windows[:k] if w[0] != label and w[2]][-1:]
        after = [w[2] for w in windows[k + 1:] if w[0] != label and w[2]][:1]
        if before + after:
            ratios.append(cyc / statistics.mean(before + after))
    return ratios


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("libdir", nargs="?", default="build")
    ap.add_argument("--baseline", default="stock", help="library compared against: stock or a LIBDIR")
    ap.add_argument("--rounds", type=int, default=5, help="windows per library and path")
    ap.add_argument("--window", type=float, default=2.0, help="seconds measured per window")
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("--ring", type=int, default=256, help="virtio-user queue_size and testpmd --txd/--rxd")
    ap.add_argument("--mbufs", type=int, default=None, help="testpmd --total-num-mbufs (both sides)")
    ap.add_argument("--paths", default="", help="comma-separated words; keep paths whose name has one")
    ap.add_argument("--no-huge", action="store_true", help="4 KiB pages (noisier, slower for both)")
    ap.add_argument("--placement", choices=["near", "far", "any"], default="near",
                    help="keep the windows where the two cores share a last-level cache (near), "
                    "do not (far), or all")
    a = ap.parse_args()
    if a.quick:
        a.rounds = 2
    huge = not a.no_huge and reserve_hugepages(HUGEPAGES)
    if not a.no_huge and not huge:
        print("note: no hugepages could be reserved; running with --no-huge (noisier)", flush=True)
    probe = core_distance_probe() if a.placement != "any" else None
    if a.placement != "any" and not probe:
        print("note: no C compiler for the placement probe; keeping every window", flush=True)
        a.placement = "any"
    base_label = "stock" if a.baseline == "stock" else "baseline"
    libs = [(base_label, resolve_libdir(a.baseline)), ("rvhost", resolve_libdir(a.libdir))]
    words = [w for w in a.paths.split(",") if w]
    paths = [(n, v) for n, v in PATHS
             if (not a.quick or n in QUICK) and (not words or any(w in n for w in words))]
    results = {}
    flowed = True
    for name, vargs in paths:
        # Which library opens the path alternates too.
        order = libs if len(results) % 2 == 0 else libs[::-1]
        try:
            windows = measure_path(order, vargs, a, huge, probe)
        except Exception as e:
            print(f"{name}: error {str(e)[:200]}", flush=True)
            windows = [(label, 0.0, None, 0) for label, _ in libs]
        for label, _ in libs:
            mine = [w for w in windows if w[0] == label]
            flowed &= all(w[1] > 0 for w in mine)
            cells = " ".join(f"{m:.2f}/{c if c is not None else '?'}/{ns}ns" for _, m, c, ns in mine)
            print(f"{name} [{label}] Mpps/cycles/core distance per window: {cells}", flush=True)
        results[name] = [w for w in windows if wanted(a.placement, w[3])]

    def med(vals, i):
        v = [x[i] for x in vals if x[i]]
        return statistics.median(v) if v else None

    mbufs = f"{a.mbufs} mbufs" if a.mbufs else "testpmd's default mbuf count"
    where = {"near": "the cores sharing a last-level cache", "far": "the cores not sharing one",
             "any": "any placement of the cores"}[a.placement]
    print(f"\n{a.size}-byte packets, {a.ring}-entry rings, {mbufs}, "
          f"{'2 MiB hugepages' if huge else '--no-huge'}; windows of {a.window:g} s alternating, "
          f"those measured with {where} kept (n: kept windows, {base_label} + rvhost); "
          "medians over them; cycles/packet of the vhost side's forwarding core "
          "(--record-core-cycles); paired: each rvhost window over the mean of the nearest "
          f"{base_label} windows before and after it, median (min-max)\n")
    print(f"| path | n | {base_label} Mpps | rvhost Mpps | ratio | {base_label} cyc/pkt | rvhost cyc/pkt "
          "| ratio | paired cyc ratio |")
    print("|---|---|---|---|---|---|---|---|---|")
    for name, _ in paths:
        windows = results[name]
        s = [w[1:3] for w in windows if w[0] == base_label]
        o = [w[1:3] for w in windows if w[0] == "rvhost"]
        pr = paired_ratios(windows, "rvhost")
        sm, om, sc, oc = med(s, 0), med(o, 0), med(s, 1), med(o, 1)

        def fmt(x, p=2):
            return f"{x:.{p}f}" if x else "-"

        ratio = f"{om / sm:.2f}" if sm and om else "-"
        cratio = f"{oc / sc:.2f}" if sc and oc else "-"
        paired = f"{statistics.median(pr):.2f} ({min(pr):.2f}-{max(pr):.2f})" if pr else "-"
        print(f"| {name} | {len(s)} + {len(o)} | {fmt(sm)} | {fmt(om)} | {ratio} | {fmt(sc, 0)} "
              f"| {fmt(oc, 0)} | {cratio} | {paired} |")
    sys.exit(0 if flowed else 1)


if __name__ == "__main__":
    main()
