#!/bin/bash
# Struct sizes/offsets, enum values, constants and the inline helper:
# our include/ against DPDK's installed headers, compiled by the same
# program. vdpa_driver.h is not installed by Debian; it is compared when the
# DPDK source package is unpacked (DPDK_SRC or /var/tmp/rvhost-dpdk-src).
# The ABI is the installed DPDK's release (22.11, 24.11 or 25.11): our
# headers for it are include/ or include/<release>/ (tests/headers.rs).
# usage: tests/abi/layout.sh [BUILDDIR]   (the build directory is not needed)
set -euo pipefail
cd "$(dirname "$0")/../.."
release=$(pkg-config --modversion libdpdk | cut -d. -f1,2)
case $release in
  22.11) ours_include=include ;;
  24.11|25.11) ours_include=include/$release ;;
  *) echo "FAIL: no rvhost headers for DPDK $release"; exit 1 ;;
esac
# RVHOST_INCLUDE=DIR compares DIR's headers instead (e.g. DPDK's own, to check this test).
ours_include=${RVHOST_INCLUDE:-$ours_include}
abi_define=-DRVHOST_ABI=${release/./}
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
cflags=$(pkg-config --cflags libdpdk)
src=${DPDK_SRC:-$(ls -d /var/tmp/rvhost-dpdk-src/dpdk-"$release"* /work/src-dpdk/dpdk-"$release"* 2>/dev/null | head -n1 || true)}
stock_extra=() ours_extra=()
if [ -n "$src" ] && [ -f "$src/lib/vhost/vdpa_driver.h" ]; then
  mkdir -p "$out/sdk" && cp "$src/lib/vhost/vdpa_driver.h" "$out/sdk/"
  stock_extra=(-DHAVE_VDPA_DRIVER_H -I"$out/sdk")
  ours_extra=(-DHAVE_VDPA_DRIVER_H)
  echo "comparing vdpa_driver.h too ($src)"
else
  echo "note: DPDK source not unpacked: vdpa_driver.h layout not compared"
fi
# shellcheck disable=SC2086
gcc -Wall -Werror "$abi_define" -o "$out/stock" tests/abi/layout.c $cflags "${stock_extra[@]}"
# shellcheck disable=SC2086
gcc -Wall -Werror "$abi_define" -o "$out/ours" -I"$ours_include" tests/abi/layout.c $cflags "${ours_extra[@]}"
"$out/stock" > "$out/stock.txt"
"$out/ours" > "$out/ours.txt"
if diff -u "$out/stock.txt" "$out/ours.txt"; then
  echo "PASS: $(grep -c . "$out/ours.txt") layout/constant lines identical to DPDK $release's headers"
else
  echo "FAIL: layouts differ"
  exit 1
fi
