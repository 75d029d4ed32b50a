#!/bin/bash
# DPDK's examples/vhost, vhost_blk and vhost_crypto (from the Debian source
# package) compile against our include/ and link against our library.
# usage: tests/abi/examples.sh [LIBDIR]
set -euo pipefail
cd "$(dirname "$0")/../.."
libdir=$(realpath "${1:-build}")
src=${DPDK_SRC:-$(ls -d /var/tmp/rvhost-dpdk-src/dpdk-22.11* /work/src-dpdk/dpdk-22.11* 2>/dev/null | head -n1 || true)}
if [ -z "$src" ] || [ ! -d "$src/examples/vhost" ]; then
  echo "FAIL: DPDK 22.11 source not found (tools/setup.sh fetches it with apt-get source dpdk)"
  exit 1
fi
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
fail=0
for ex in vhost vhost_blk vhost_crypto; do
  bin="$out/dpdk-$ex"
  # Our headers first; -L puts our librte_vhost.so ahead of Debian's.
  # shellcheck disable=SC2046
  if gcc -O2 -Wno-deprecated-declarations -DALLOW_EXPERIMENTAL_API -Iinclude $(pkg-config --cflags libdpdk) \
       -o "$bin" "$src"/examples/$ex/*.c -L"$libdir" -Wl,-rpath,"$libdir" -lrte_vhost $(pkg-config --libs libdpdk) -lpthread 2> "$out/$ex.log"; then
    resolved=$(ldd "$bin" | awk '/librte_vhost.so.23/ {print $3}')
    if [ "$(realpath "$resolved")" = "$(realpath "$libdir/librte_vhost.so.23")" ]; then
      echo "PASS: examples/$ex builds against our headers and links $resolved"
    else
      echo "FAIL: examples/$ex resolves librte_vhost.so.23 to '$resolved'"; fail=1
    fi
  else
    tail -20 "$out/$ex.log"; echo "FAIL: examples/$ex does not build"; fail=1
  fi
done
exit $fail
