#!/bin/bash
# Builds the C tests and runs them against a librte_vhost.so.23:
#   ffi-tests/run.sh          Debian's (stock DPDK 22.11)
#   ffi-tests/run.sh LIBDIR   the one in LIBDIR (e.g. build for rvhost)
# Each test prints which file it actually loaded (/proc/self/maps).
set -euo pipefail
if [ $# -gt 0 ]; then
  libdir=$(realpath -e "$1")
  [ -e "$libdir/librte_vhost.so.23" ] || { echo "no librte_vhost.so.23 in $libdir" >&2; exit 2; }
  export LD_LIBRARY_PATH=$libdir
fi
cd "$(dirname "$0")"
make -s out/t_vhost_user out/t_async
timeout 120 ./out/t_vhost_user
timeout 300 ./out/t_async
# vhost-crypto, with QEMU 7.2's front-end and with one speaking 22.11's
# protocol. Not run on Debian's library: it never starts a device for QEMU
# 7.2's front-end, and with the other it writes statuses and used entries
# where the test (and the virtio-crypto specification) does not expect them.
if [ $# -gt 0 ]; then
  make -s out/t_vhost_crypto
  timeout 120 ./out/t_vhost_crypto
  timeout 120 ./out/t_vhost_crypto --dpdk-frontend
fi
