#!/usr/bin/env python3
"""The main job: vhost-user <-> virtio-user loopback under dpdk-testpmd,
stock DPDK 22.11's librte_vhost against ours, same machine, alternating the
order every round. For each path it reports the median Rx rate at the vhost
port (Mpps, sampled after a warm-up) and the vhost forwarding core's CPU
cycles per packet (testpmd --record-core-cycles), and the ratio ours/stock.
It is a benchmark: it fails only if traffic does not flow.
usage: bench.py [LIBDIR] [--rounds N] [--quick] [--size 64|1518] [--ring N] [--mbufs N]
                [--paths WORD,...] [--no-huge]
--paths keeps the paths whose name contains one of the words (e.g. packed).
--ring sets the virtio-user rings' size (devargs queue_size=, default 256 as
virtio-user's own default; QEMU guests use 256 to 1024) and both testpmds'
--txd/--rxd to match (net_vhost ignores its own). --mbufs sets both
testpmds' --total-num-mbufs (default: testpmd's own count); more mbufs
spread the packets over more cache lines.
Both testpmds run on 2 MiB hugepages (reserved and mounted here if needed,
as root), as DPDK's own performance test plans do: on 4 KiB pages
(`--no-huge`, also the fallback when none can be reserved) the TLB misses
make whole runs of either library 30-60 % slower at random, which hides
differences of 10 %."""

import argparse
import statistics
import sys
import time

from testpmd import Pair, cycles_per_packet, expected_library, port_stats, reserve_hugepages, resolve_libdir
from loopback_paths import PATHS

QUICK = ["split mergeable", "packed in-order mergeable"]


def measure(libdir, vargs, a, huge, samples=3):
    pair = Pair(libdir, f"{vargs},queue_size={a.ring}", record_cycles=True, tag="bench", huge=huge,
                descs=a.ring, mbufs=a.mbufs)
    try:
        pair.start()
        if pair.loaded_library() != expected_library(libdir):
            raise RuntimeError(f"wrong library mapped: {pair.loaded_library()}")
        pair.run_traffic(txpkts=str(a.size) if a.size != 64 else None)
        time.sleep(2)
        rates = []
        for _ in range(samples):
            time.sleep(1.5)
            rates.append(port_stats(pair.vhost)["rx_pps"] / 1e6)
        pair.stop_traffic()
        cyc = cycles_per_packet(pair.vhost)
        return statistics.median(rates), cyc
    finally:
        pair.close()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("libdir", nargs="?", default="build")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("--ring", type=int, default=256, help="virtio-user queue_size and testpmd --txd/--rxd")
    ap.add_argument("--mbufs", type=int, default=None, help="testpmd --total-num-mbufs (both sides)")
    ap.add_argument("--paths", default="", help="comma-separated words; keep paths whose name has one")
    ap.add_argument("--no-huge", action="store_true", help="4 KiB pages (noisier, slower for both)")
    a = ap.parse_args()
    huge = not a.no_huge and reserve_hugepages()
    if not a.no_huge and not huge:
        print("note: no hugepages could be reserved; running with --no-huge (noisier)", flush=True)
    ours = resolve_libdir(a.libdir)
    words = [w for w in a.paths.split(",") if w]
    paths = [(n, v) for n, v in PATHS
             if (not a.quick or n in QUICK) and (not words or any(w in n for w in words))]
    rounds = 1 if a.quick else a.rounds
    results = {n: {"stock": [], "rvhost": []} for n, _ in paths}
    flowed = True
    for r in range(rounds):
        order = [("stock", None), ("rvhost", ours)]
        if r % 2:
            order.reverse()
        for name, vargs in paths:
            for label, libdir in order:
                try:
                    mpps, cyc = measure(libdir, vargs, a, huge)
                except Exception as e:
                    print(f"[{label}] {name}: error {str(e)[:200]}", flush=True)
                    mpps, cyc = 0.0, None
                flowed &= mpps > 0
                results[name][label].append((mpps, cyc))
                print(f"round {r + 1} [{label}] {name}: {mpps:.2f} Mpps, "
                      f"{cyc if cyc is not None else '?'} cycles/pkt", flush=True)

    def med(vals, i):
        v = [x[i] for x in vals if x[i]]
        return statistics.median(v) if v else None

    mbufs = f"{a.mbufs} mbufs" if a.mbufs else "testpmd's default mbuf count"
    print(f"\n{a.size}-byte packets, {a.ring}-entry rings, {mbufs}, {rounds} round(s), "
          f"{'2 MiB hugepages' if huge else '--no-huge'}, "
          "median per path; vhost side's forwarding core (cycles/packet from --record-core-cycles)\n")
    def best(vals):
        v = [x[1] for x in vals if x[1]]
        return min(v) if v else None

    # Whole runs are slowed by the machine (both libraries alike), so each
    # library's fastest run is shown next to the medians.
    print("| path | stock Mpps | rvhost Mpps | ratio | stock cyc/pkt | rvhost cyc/pkt | ratio "
          "| fastest run cyc/pkt: stock / rvhost | ratio |")
    print("|---|---|---|---|---|---|---|---|---|")
    for name, _ in paths:
        s, o = results[name]["stock"], results[name]["rvhost"]
        sm, om, sc, oc = med(s, 0), med(o, 0), med(s, 1), med(o, 1)
        sb, ob = best(s), best(o)

        def fmt(x, p=2):
            return f"{x:.{p}f}" if x else "-"

        ratio = f"{om / sm:.2f}" if sm and om else "-"
        cratio = f"{oc / sc:.2f}" if sc and oc else "-"
        bratio = f"{ob / sb:.2f}" if sb and ob else "-"
        print(f"| {name} | {fmt(sm)} | {fmt(om)} | {ratio} | {fmt(sc, 0)} | {fmt(oc, 0)} | {cratio} "
              f"| {fmt(sb, 0)} / {fmt(ob, 0)} | {bratio} |")
    sys.exit(0 if flowed else 1)


if __name__ == "__main__":
    main()
