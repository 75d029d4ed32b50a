#!/usr/bin/env python3
"""DTS 'loopback multi-paths' (functional part): vhost-user (the library
under test) <-> virtio-user under dpdk-testpmd, mac forwarding in a closed
loop, on every virtio-user Rx/Tx path, plus 2 queues and 6000-byte
multi-segment packets, also with net/vhost's ext-buffer=1 and
linear-buffer=1 devargs (RTE_VHOST_USER_EXTBUF_SUPPORT / LINEARBUF_SUPPORT).
Run against stock DPDK and against ours (same checks); ours must pass every
case. Counts asserted:
  - vhost RX == virtio TX (every packet sent was received), and RX-bytes =
    packets x size (nothing truncated or padded);
  - vhost TX > 0 and virtio RX > 0 (the other direction flows), and virtio
    RX <= vhost TX <= vhost RX (nothing invented);
  - with 2 queues, every queue carried traffic (per-vring xstats);
  - with external buffers, the vhost side receives each 6000-byte packet as
    one segment (testpmd's verbose dump: nb_segs=1);
  - with linear buffers alone, 6000-byte packets are all dropped by the vhost
    side and 64-byte packets flow afterwards (the ring moved on).
usage: loopback_paths.py [LIBDIR] [--quick] [--only=SUBSTRING]"""

import re
import sys
import time

from testpmd import Pair, expected_library, port_stats, resolve_libdir, run_differential

PATHS = [
    ("split mergeable", ",packed_vq=0,mrg_rxbuf=1,in_order=0"),
    ("split non-mergeable", ",packed_vq=0,mrg_rxbuf=0,in_order=0"),
    ("split in-order mergeable", ",packed_vq=0,mrg_rxbuf=1,in_order=1"),
    ("split in-order non-mergeable", ",packed_vq=0,mrg_rxbuf=0,in_order=1"),
    ("split vectorized", ",packed_vq=0,mrg_rxbuf=0,in_order=0,vectorized=1"),
    ("packed mergeable", ",packed_vq=1,mrg_rxbuf=1,in_order=0"),
    ("packed non-mergeable", ",packed_vq=1,mrg_rxbuf=0,in_order=0"),
    ("packed in-order mergeable", ",packed_vq=1,mrg_rxbuf=1,in_order=1"),
    ("packed in-order non-mergeable", ",packed_vq=1,mrg_rxbuf=0,in_order=1"),
    ("packed vectorized", ",packed_vq=1,mrg_rxbuf=0,in_order=1,vectorized=1"),
]
QUICK = {"split mergeable", "packed in-order mergeable"}


def start_pair(libdir, vargs, queues=1, vhost_args=""):
    """A started pair and the problems found so far (wrong library mapped)."""
    pair = Pair(libdir, vargs, queues=queues, vhost_args=vhost_args, mbuf_size=None, tag="lb")
    pair.start()
    lib = pair.loaded_library()
    if lib != expected_library(libdir):
        return pair, [f"vhost side mapped {lib}, expected {expected_library(libdir)}"]
    return pair, []


def vhost_rx_segments(pair, size):
    """The nb_segs of the size-byte packets the vhost side receives from one
    tx_first burst, from testpmd's verbose dump (rxonly, so nothing loops)."""
    pair.vhost.cmd("set fwd rxonly", expect=r"forwarding mode")
    pair.vhost.cmd("set verbose 1", expect=r"verbose level")
    pair.vhost.cmd("start", expect=r"forwarding")
    pair.virtio.cmd("start tx_first 1", expect=r"forwarding")
    time.sleep(1)
    pair.virtio.cmd("stop", expect=r"Done\.")
    dump = pair.vhost.since_mark()
    pair.vhost.cmd("stop", expect=r"Done\.")
    pair.vhost.cmd("set verbose 0", expect=r"verbose level")
    return {int(n) for n in re.findall(rf"length={size} - nb_segs=(\d+)", dump)}


def run_case(libdir, name, vargs, queues=1, txpkts=None, size=64, vhost_args="", segs=None):
    pair, problems = start_pair(libdir, vargs, queues, vhost_args)
    try:
        pair.run_traffic(txpkts=txpkts)
        time.sleep(3)
        xstats = ""
        if queues > 1:
            pair.vhost.cmd("show port xstats 0", expect=r"tx_q\d+_good_packets|Error")
            time.sleep(0.3)
            xstats = pair.vhost.since_mark()
        pair.stop_traffic()
        vh, vu = port_stats(pair.vhost), port_stats(pair.virtio)
        if segs is not None:
            seen = vhost_rx_segments(pair, size)
            if seen != {segs}:
                problems.append(f"vhost received {size}-byte packets in {sorted(seen)} segments, expected {segs}")
    finally:
        pair.close()
    if vh["rx_packets"] == 0 or vh["tx_packets"] == 0 or vu["rx_packets"] == 0:
        problems.append("traffic did not flow both ways")
    if vh["rx_packets"] != vu["tx_packets"]:
        problems.append(f"vhost RX {vh['rx_packets']} != virtio TX {vu['tx_packets']}")
    if not vu["rx_packets"] <= vh["tx_packets"] <= vh["rx_packets"]:
        problems.append("forwarded counts inconsistent")
    if vh["rx_bytes"] != vh["rx_packets"] * size:
        problems.append(f"RX-bytes {vh['rx_bytes']} != {vh['rx_packets']} x {size}")
    if vu["rx_bytes"] != vu["rx_packets"] * size:
        problems.append(f"virtio RX-bytes {vu['rx_bytes']} != {vu['rx_packets']} x {size}")
    for q in range(queues if queues > 1 else 0):
        for d in ("rx", "tx"):
            m = re.search(rf"{d}_q{q}_good_packets:\s+(\d+)", xstats)
            if not m or int(m.group(1)) == 0:
                problems.append(f"queue {q} {d}: no traffic in xstats")
    summary = (f"vhost rx {vh['rx_packets']} tx {vh['tx_packets']} | "
               f"virtio rx {vu['rx_packets']} tx {vu['tx_packets']}")
    return not problems, summary + ("; " + "; ".join(problems) if problems else "")


def run_linear_drop_case(libdir, vargs):
    """net/vhost linear-buffer=1 without ext-buffer: a 6000-byte packet does
    not fit a 2048-byte mbuf and may not be chained, so the vhost side drops
    every one (DPDK's virtio_dev_pktmbuf_prep); the ring still moves on, so
    64-byte packets sent afterwards flow."""
    pair, problems = start_pair(libdir, vargs, vhost_args=",linear-buffer=1")
    try:
        pair.run_traffic(txpkts="2000,2000,2000")
        time.sleep(2)
        pair.stop_traffic()
        big_vh, big_vu = port_stats(pair.vhost), port_stats(pair.virtio)
        pair.run_traffic(txpkts="64")
        time.sleep(2)
        pair.stop_traffic()
        vh, vu = port_stats(pair.vhost), port_stats(pair.virtio)
    finally:
        pair.close()
    if big_vu["tx_packets"] == 0:
        problems.append("virtio sent no 6000-byte packet")
    if big_vh["rx_packets"] != 0:
        problems.append(f"vhost received {big_vh['rx_packets']} 6000-byte packets, expected all dropped")
    small = vh["rx_packets"] - big_vh["rx_packets"]
    if small == 0 or vu["rx_packets"] == 0:
        problems.append("64-byte traffic did not flow after the drops")
    if vh["rx_bytes"] != small * 64:
        problems.append(f"RX-bytes {vh['rx_bytes']} != {small} x 64")
    summary = (f"6000 B: virtio tx {big_vu['tx_packets']}, vhost rx {big_vh['rx_packets']} | "
               f"64 B: vhost rx {small}, virtio rx {vu['rx_packets']}")
    return not problems, summary + ("; " + "; ".join(problems) if problems else "")


def main():
    args = [a for a in sys.argv[1:] if not a.startswith("--")]
    quick = "--quick" in sys.argv
    only = next((a.split("=", 1)[1] for a in sys.argv[1:] if a.startswith("--only=")), None)
    ours = resolve_libdir(args[0] if args else None)
    cases = [(n, v, 1, None, 64) for n, v in PATHS if not quick or n in QUICK]
    cases.append(("split mergeable, 2 queues", ",packed_vq=0,mrg_rxbuf=1", 2, None, 64))
    cases.append(("split mergeable, 6000-byte chains", ",packed_vq=0,mrg_rxbuf=1", 1, "2000,2000,2000", 6000))
    if not quick:
        cases.append(("packed mergeable, 2 queues", ",packed_vq=1,mrg_rxbuf=1", 2, None, 64))
        cases.append(("packed mergeable, 6000-byte chains", ",packed_vq=1,mrg_rxbuf=1", 1, "2000,2000,2000", 6000))
    runs = [(c[0], lambda libdir, c=c: run_case(libdir, *c)) for c in cases]
    for devargs in [",ext-buffer=1", ",ext-buffer=1,linear-buffer=1"]:
        name = f"split mergeable, 6000-byte packets, {devargs[1:]}: one segment each"
        runs.append((name, lambda libdir, n=name, d=devargs: run_case(
            libdir, n, ",packed_vq=0,mrg_rxbuf=1", 1, "2000,2000,2000", 6000, vhost_args=d, segs=1)))
    runs.append(("split mergeable, linear-buffer=1: 6000-byte packets dropped, then 64-byte ones flow",
                 lambda libdir: run_linear_drop_case(libdir, ",packed_vq=0,mrg_rxbuf=1")))
    run_differential([r for r in runs if only is None or only in r[0]], ours)


if __name__ == "__main__":
    main()
