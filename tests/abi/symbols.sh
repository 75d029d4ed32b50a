#!/bin/bash
# ABI check: our librte_vhost.so.N exports exactly Debian's symbol@version
# set, nothing else (no Rust symbols), with the same SONAME and three
# independent version nodes.
# usage: tests/abi/symbols.sh [OUR_LIB|BUILDDIR] [STOCK_LIB]
# STOCK_LIB defaults to the installed DPDK's librte_vhost.so.N (.so.23 on
# bookworm, .so.25 on Debian 13); OUR_LIB, a build directory, holds the same
# SONAME.
set -euo pipefail
stock=${2:-$(ls /usr/lib/x86_64-linux-gnu/librte_vhost.so.[0-9]* | grep -E '\.so\.[0-9]+$')}
soname() { readelf -d "$1" | sed -n 's/.*(SONAME).*\[\(.*\)\]/\1/p'; }
abi=$(soname "$stock") && abi=${abi##*.so.}
ours=${1:-build}
[ -d "$ours" ] && ours=$ours/librte_vhost.so.$abi   # a build directory works too
[ -f "$ours" ] || { echo "FAIL: no library at $ours"; exit 1; }
# Exported functions per ABI, counted in Debian's libraries (22.11: 81;
# 24.11 and 25.11: 83; the 24.11 -> 25.11 difference is only the node name).
case $abi in 23) functions=81 ;; 25|26) functions=83 ;; *) echo "FAIL: unknown ABI .so.$abi"; exit 1 ;; esac
fail=0
check() { if [ "$2" = ok ]; then echo "PASS: $1"; else echo "FAIL: $1"; fail=1; fi; }

syms() { objdump -T "$1" | awk '$2 ~ /g/ && $4 != "*UND*" {print $NF "@" $(NF-1)}' | sort; }
d=$(diff <(syms "$stock") <(syms "$ours") || true)
[ -z "$d" ] && check "exported symbol@version set equals Debian's ($(syms "$ours" | wc -l) entries)" ok \
  || { echo "$d" | head -20; check "exported symbol@version set equals Debian's" fail; }

n=$(objdump -T "$ours" | awk '$4 == ".text" && $2 ~ /g/' | wc -l)
[ "$n" = "$functions" ] && check "$functions exported functions" ok || check "$functions exported functions (got $n)" fail

leaks=$(objdump -T "$ours" | awk '$4 != "*UND*" && $2 ~ /g/ {print $NF}' | grep -Ev "^(rte_|DPDK_$abi\$|EXPERIMENTAL\$|INTERNAL\$)" || true)
[ -z "$leaks" ] && check "no non-DPDK symbol exported" ok || { echo "$leaks" | head; check "no non-DPDK symbol exported" fail; }

[ "$(soname "$ours")" = "$(soname "$stock")" ] && check "SONAME $(soname "$ours")" ok || check "SONAME $(soname "$ours") vs $(soname "$stock")" fail

# Version definitions: BASE + DPDK_N, EXPERIMENTAL, INTERNAL, none with a parent.
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
