#!/bin/bash
# Installs what rvhost needs on Debian bookworm (as root) and builds it.
# Idempotent: safe to run again.
set -euo pipefail
cd "$(dirname "$0")/.."
export DEBIAN_FRONTEND=noninteractive
# libclang-dev: the userfaultfd crate generates its kernel bindings with bindgen.
# debootstrap: the Debian package test's chroot.
need=(dpdk dpdk-dev libdpdk-dev meson ninja-build pkg-config gcc make python3 python3-pexpect libclang-dev
  debootstrap)
missing=()
for p in "${need[@]}"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
if [ ${#missing[@]} -gt 0 ]; then
  apt-get update -qq
  apt-get install -y -qq "${missing[@]}" >/dev/null
fi
# DPDK 22.11's source (examples built against our headers by the ABI tests).
srcdir=/var/tmp/rvhost-dpdk-src
if ! ls -d "$srcdir"/dpdk-22.11*/examples >/dev/null 2>&1; then
  for f in /etc/apt/sources.list.d/*.sources; do
    [ -e "$f" ] && grep -q '^Types: deb$' "$f" && sed -i 's/^Types: deb$/Types: deb deb-src/' "$f"
  done
  if [ -f /etc/apt/sources.list ] && ! grep -q '^deb-src' /etc/apt/sources.list; then
    sed -n 's/^deb /deb-src /p' /etc/apt/sources.list >> /etc/apt/sources.list
  fi
  apt-get update -qq
  mkdir -p "$srcdir"
  (cd "$srcdir" && apt-get source -qq dpdk >/dev/null 2>&1) || echo "warning: apt-get source dpdk failed" >&2
fi
command -v cargo >/dev/null || { echo "cargo (Rust toolchain) is required" >&2; exit 1; }
[ -d build ] || meson setup build >/dev/null
meson compile -C build >/dev/null
echo "built $(readlink -f build/librte_vhost.so.23)"
# The bookworm and trixie chroots tests/e2e/debian-packages.sh and
# debian-packages-trixie.sh run in, made once (3-8 min and 2.2-2.4 GB each
# under /var/cache/rvhost) and kept, so that the tests fit in the suite's
# time limit.
tests/e2e/debian-packages.sh --prepare
tests/e2e/debian-packages-trixie.sh --prepare
