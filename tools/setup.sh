#!/bin/bash
# Installs what rvhost needs on Debian bookworm (as root) and builds it.
# Idempotent: safe to run again.
set -euo pipefail
cd "$(dirname "$0")/.."
export DEBIAN_FRONTEND=noninteractive
need=(dpdk dpdk-dev libdpdk-dev meson ninja-build pkg-config gcc make python3 python3-pexpect)
missing=()
for p in "${need[@]}"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
if [ ${#missing[@]} -gt 0 ]; then
  apt-get update -qq
  apt-get install -y -qq "${missing[@]}" >/dev/null
fi
command -v cargo >/dev/null || { echo "cargo (Rust toolchain) is required" >&2; exit 1; }
[ -d build ] || meson setup build >/dev/null
meson compile -C build >/dev/null
echo "built $(readlink -f build/librte_vhost.so.23)"
