#!/bin/bash
# DPDK's examples/vhost, vhost_blk and vhost_crypto compile against our
# headers and link against our library. The release is the installed
# DPDK's (22.11, 24.11 or 25.11): our headers for it are include/ or
# include/<release>/, the library's SONAME librte_vhost.so.23, .25 or .26.
# The examples come from that release's source: DPDK_SRC, else the Debian
# source package tools/setup.sh unpacks (22.11), else Debian's dpdk-doc of
# the installed release (/usr/share/dpdk/examples; the Debian 13 chroot
# installs it, as Debian's archive serves no trixie or forky sources).
# usage: tests/abi/examples.sh [LIBDIR]
set -euo pipefail
cd "$(dirname "$0")/../.."
libdir=$(realpath "${1:-build}")
release=$(pkg-config --modversion libdpdk | cut -d. -f1,2)
case $release in
  22.11) include=include soname=librte_vhost.so.23 ;;
  24.11) include=include/24.11 soname=librte_vhost.so.25 ;;
  25.11) include=include/25.11 soname=librte_vhost.so.26 ;;
  *) echo "FAIL: no rvhost headers for DPDK $release"; exit 1 ;;
esac
doc=
if [ -d /usr/share/dpdk/examples/vhost ] \
    && [ "$(dpkg-query -W -f '${Version}' dpdk-doc 2>/dev/null | cut -d. -f1,2)" = "$release" ]; then
  doc=/usr/share/dpdk
fi
src=${DPDK_SRC:-$(ls -d /var/tmp/rvhost-dpdk-src/dpdk-"$release"* /work/src-dpdk/dpdk-"$release"* $doc 2>/dev/null | head -n1 || true)}
if [ -z "$src" ] || [ ! -d "$src/examples/vhost" ]; then
  echo "FAIL: DPDK $release source not found (DPDK_SRC; tools/setup.sh fetches 22.11's with apt-get source dpdk)"
  exit 1
fi
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
fail=0
for ex in vhost vhost_blk vhost_crypto; do
  bin="$out/dpdk-$ex"
  # Our headers first; -L puts our library ahead of Debian's.
  # shellcheck disable=SC2046
  if gcc -O2 -Wno-deprecated-declarations -DALLOW_EXPERIMENTAL_API -I"$include" $(pkg-config --cflags libdpdk) \
       -o "$bin" "$src"/examples/$ex/*.c -L"$libdir" -Wl,-rpath,"$libdir" -lrte_vhost $(pkg-config --libs libdpdk) -lpthread 2> "$out/$ex.log"; then
    resolved=$(ldd "$bin" | awk -v so="$soname" '$1 == so {print $3}')
    if [ "$(realpath "$resolved")" = "$(realpath "$libdir/$soname")" ]; then
      echo "PASS: DPDK $release examples/$ex builds against $include and links $resolved"
    else
      echo "FAIL: examples/$ex resolves $soname to '$resolved'"; fail=1
    fi
  else
    tail -20 "$out/$ex.log"; echo "FAIL: DPDK $release examples/$ex does not build against $include"; fail=1
  fi
done
exit $fail
