#!/bin/bash
# ABI check: our librte_vhost.so.NN exports exactly Debian's symbol@version
# set, nothing else (no Rust symbols), with the same SONAME and three
# independent version nodes. Any ABI: .so.23 (22.11), .so.25 (24.11),
# .so.26 (25.11); the reference is Debian's library of the same SONAME.
# usage: tests/abi/symbols.sh [OUR_LIB|BUILDDIR] [STOCK_LIB]
set -euo pipefail
ours=${1:-build/librte_vhost.so.23}
if [ -d "$ours" ]; then   # a build directory works too: the library it built
  ours=$(ls "$ours"/librte_vhost.so.[0-9]* 2>/dev/null | grep -E '\.so\.[0-9]+$' | head -n1 || true)
fi
[ -n "$ours" ] && [ -f "$ours" ] || { echo "FAIL: no library at ${1:-build/librte_vhost.so.23}"; exit 1; }
soname() { readelf -d "$1" | sed -n 's/.*(SONAME).*\[\(.*\)\]/\1/p'; }
stock=${2:-/usr/lib/x86_64-linux-gnu/$(soname "$ours")}
[ -f "$stock" ] || { echo "FAIL: no reference library at $stock"; exit 1; }
fail=0
check() { if [ "$2" = ok ]; then echo "PASS: $1"; else echo "FAIL: $1"; fail=1; fi; }

syms() { objdump -T "$1" | awk '$2 ~ /g/ && $4 != "*UND*" {print $NF "@" $(NF-1)}' | sort; }
d=$(diff <(syms "$stock") <(syms "$ours") || true)
[ -z "$d" ] && check "exported symbol@version set equals Debian's ($(syms "$ours" | wc -l) entries)" ok \
  || { echo "$d" | head -20; check "exported symbol@version set equals Debian's" fail; }

functions() { objdump -T "$1" | awk '$4 == ".text" && $2 ~ /g/' | wc -l; }
n=$(functions "$ours") want=$(functions "$stock")
[ "$n" = "$want" ] && check "$n exported functions" ok || check "$want exported functions (got $n)" fail

leaks=$(objdump -T "$ours" | awk '$4 != "*UND*" && $2 ~ /g/ {print $NF}' | grep -Ev '^(rte_|DPDK_[0-9]+$|EXPERIMENTAL$|INTERNAL$)' || true)
[ -z "$leaks" ] && check "no non-DPDK symbol exported" ok || { echo "$leaks" | head; check "no non-DPDK symbol exported" fail; }

[ "$(soname "$ours")" = "$(soname "$stock")" ] && check "SONAME $(soname "$ours")" ok || check "SONAME $(soname "$ours") vs $(soname "$stock")" fail

# Version definitions: BASE + DPDK_NN, EXPERIMENTAL, INTERNAL, none with a parent.
vdefs() { readelf -V "$1" | sed -n '/Version definition/,/Version needs/p' | grep -oE 'Name: [A-Za-z0-9_.]+' | sort; }
[ "$(vdefs "$ours")" = "$(vdefs "$stock")" ] && check "version definitions equal ($(vdefs "$ours" | tr '\n' ' '))" ok || check "version definitions differ" fail
parents=$(readelf -V "$ours" | sed -n '/Version definition/,/Version needs/p' | grep -c 'Parent' || true)
[ "$parents" = 0 ] && check "version nodes have no parent" ok || check "version nodes have parents" fail

# Loads wherever Debian's does: every library we need, Debian's needs too,
# except libgcc_s.so.1 (Rust's unwinder; package libgcc-s1, Priority: required).
needed() { readelf -d "$1" | sed -n 's/.*(NEEDED).*\[\(.*\)\]/\1/p' | sort -u; }
extra=$(comm -13 <(needed "$stock") <(needed "$ours") | grep -vx 'libgcc_s.so.1' || true)
[ -z "$extra" ] && check "NEEDED ($(needed "$ours" | tr '\n' ' '))within Debian's" ok \
  || check "NEEDED libraries Debian's library does not need: $(echo $extra)" fail

# rte_vhost_va_from_guest_pa stays a header inline.
objdump -T "$ours" | grep -q 'rte_vhost_va_from_guest_pa' && check "rte_vhost_va_from_guest_pa not exported" fail || check "rte_vhost_va_from_guest_pa not exported" ok
exit $fail
