#!/bin/bash
# Builds the C tests and runs them against a librte_vhost.so.23:
#   ffi-tests/run.sh          Debian's (stock DPDK 22.11)
#   ffi-tests/run.sh LIBDIR   the one in LIBDIR (e.g. build/ for rvhost)
set -euo pipefail
cd "$(dirname "$0")"
make -s out/t_vhost_user
if [ $# -gt 0 ]; then
  export LD_LIBRARY_PATH=$(realpath "$1")
fi
timeout 120 ./out/t_vhost_user
