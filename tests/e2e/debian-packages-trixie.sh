#!/bin/bash
# Debian packages on trixie (issue 21): tests/e2e/debian-packages.sh with
# RVHOST_DEBIAN=trixie, as a test of its own (its own time limit in
# tests/run-all.sh): builds rvhost-vhost25 (DPDK 24.11, build profile
# pkg.rvhost.abi25) and checks it under Debian's OVS 3.5 and testpmd.
# usage: debian-packages-trixie.sh [BUILD_DIR] | --prepare
RVHOST_DEBIAN=trixie exec bash "$(dirname "$0")/debian-packages.sh" "$@"
