#!/usr/bin/env python3
"""DTS 'loopback multi-paths' (functional part): vhost-user (the library
under test) <-> virtio-user under dpdk-testpmd, mac forwarding in a closed
loop, on every virtio-user Rx/Tx path, plus 2 queues and 6000-byte
multi-segment packets. Run against stock DPDK and against ours (same checks);
ours must pass every case. Counts asserted:
  - vhost RX == virtio TX (every packet sent was received), and RX-bytes =
    packets x size (nothing truncated or padded);
  - vhost TX > 0 and virtio RX > 0 (the other direction flows), and virtio
    RX <= vhost TX <= vhost RX (nothing invented);
  - with 2 queues, every queue carried traffic (per-vring xstats).
usage: loopback_paths.py [LIBDIR] [--quick]"""

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


def run_case(libdir, name, vargs, queues=1, txpkts=None, size=64):
    pair = Pair(libdir, vargs, queues=queues, mbuf_size=None, tag="lb")
    problems = []
    try:
        pair.start()
        lib = pair.loaded_library()
        if lib != expected_library(libdir):
            problems.append(f"vhost side mapped {lib}, expected {expected_library(libdir)}")
        pair.run_traffic(txpkts=txpkts)
        time.sleep(3)
        xstats = ""
        if queues > 1:
            pair.vhost.cmd("show port xstats 0", expect=r"tx_q\d+_good_packets|Error")
            time.sleep(0.3)
            xstats = pair.vhost.since_mark()
        pair.stop_traffic()
        vh, vu = port_stats(pair.vhost), port_stats(pair.virtio)
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


def main():
    args = [a for a in sys.argv[1:] if not a.startswith("--")]
    quick = "--quick" in sys.argv
    ours = resolve_libdir(args[0] if args else None)
    cases = [(n, v, 1, None, 64) for n, v in PATHS if not quick or n in QUICK]
    cases.append(("split mergeable, 2 queues", ",packed_vq=0,mrg_rxbuf=1", 2, None, 64))
    cases.append(("split mergeable, 6000-byte chains", ",packed_vq=0,mrg_rxbuf=1", 1, "2000,2000,2000", 6000))
    if not quick:
        cases.append(("packed mergeable, 2 queues", ",packed_vq=1,mrg_rxbuf=1", 2, None, 64))
        cases.append(("packed mergeable, 6000-byte chains", ",packed_vq=1,mrg_rxbuf=1", 1, "2000,2000,2000", 6000))
    run_differential([(c[0], lambda libdir, c=c: run_case(libdir, *c)) for c in cases], ours)


if __name__ == "__main__":
    main()
