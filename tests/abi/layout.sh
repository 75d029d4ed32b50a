#!/bin/bash
# Struct sizes/offsets, enum values, constants and the inline helper:
# our include/ against DPDK's installed headers, compiled by the same
# program. vdpa_driver.h is not installed by Debian; it is compared when the
# installed release's DPDK source package is unpacked (DPDK_SRC or
# /var/tmp/rvhost-dpdk-src).
# usage: tests/abi/layout.sh [BUILDDIR [INCLUDEDIR]]  (INCLUDEDIR: our
# headers, default include/; BUILDDIR is not used)
set -euo pipefail
ours_inc=$(realpath "${2:-$(dirname "$0")/../../include}")
cd "$(dirname "$0")/../.."
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
cflags=$(pkg-config --cflags libdpdk)
release=$(pkg-config --modversion libdpdk | cut -d. -f1,2)
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
gcc -Wall -Werror -o "$out/stock" tests/abi/layout.c $cflags "${stock_extra[@]}"
# shellcheck disable=SC2086
gcc -Wall -Werror -o "$out/ours" -I"$ours_inc" tests/abi/layout.c $cflags "${ours_extra[@]}"
"$out/stock" > "$out/stock.txt"
"$out/ours" > "$out/ours.txt"
if diff -u "$out/stock.txt" "$out/ours.txt"; then
  echo "PASS: $(grep -c . "$out/ours.txt") layout/constant lines identical to DPDK $release's headers ($(pkg-config --modversion libdpdk))"
else
  echo "FAIL: layouts differ"
  exit 1
fi
