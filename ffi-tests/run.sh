#!/bin/bash
# Builds the C tests against the installed DPDK's headers and runs them
# against the librte_vhost.so.N they link (.so.23 for 22.11, .so.25 for
# 24.11, .so.26 for 25.11):
#   ffi-tests/run.sh          Debian's
#   ffi-tests/run.sh LIBDIR   the one in LIBDIR (e.g. build for rvhost)
# Each test prints which file it actually loaded (/proc/self/maps).
set -euo pipefail
[ $# -gt 0 ] && libdir=$(realpath -e "$1")
cd "$(dirname "$0")"
make -s out/t_vhost_user out/t_async
soname=$(objdump -p out/t_vhost_user | awk '$1 == "NEEDED" && $2 ~ /^librte_vhost\.so/ {print $2}')
if [ $# -gt 0 ]; then
  [ -e "$libdir/$soname" ] || { echo "no $soname in $libdir" >&2; exit 2; }
  export LD_LIBRARY_PATH=$libdir
fi
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
