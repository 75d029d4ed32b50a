#!/bin/bash
# The main job: set up and build (tools/setup.sh), then run the vhost-user <->
# virtio-user loopback under dpdk-testpmd on every virtio-user path, with
# Debian's librte_vhost and with rvhost alternately (both testpmds on 2 MiB
# hugepages, reserved if needed), and print the packet rates side by side.
# Extra arguments go to tests/e2e/bench.py (e.g. --rounds 3, --quick,
# --size 1518, --ring 1024 for 1024-entry virtio-user rings, --mbufs 32768).
set -euo pipefail
cd "$(dirname "$0")/.."
tools/setup.sh
exec python3 tests/e2e/bench.py build "$@"
