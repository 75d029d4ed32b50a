#!/bin/bash
# Consumers load our library: dpdk-testpmd with every PMD Debian ships
# (net/vhost imports DPDK_N + EXPERIMENTAL; the vDPA PMDs also INTERNAL)
# runs with our librte_vhost.so.N first in LD_LIBRARY_PATH, and
# /proc/PID/maps shows our file mapped, not Debian's. N is the installed
# DPDK's ABI (23 on bookworm, 25 on Debian 13).
# usage: tests/abi/consumers.sh [LIBDIR]
set -euo pipefail
libdir=$(realpath "${1:-build}")
soname=$(basename "$(ls /usr/lib/x86_64-linux-gnu/librte_vhost.so.[0-9]* | grep -E '\.so\.[0-9]+$')")
abi=${soname##*.so.}
pmds=/usr/lib/x86_64-linux-gnu/dpdk/pmds-$abi.0
[ -d "$pmds" ] || { echo "FAIL: no PMD directory $pmds"; exit 1; }
fail=0
check() { if [ "$2" = ok ]; then echo "PASS: $1"; else echo "FAIL: $1"; fail=1; fi; }

# The vDPA and vhost PMDs resolve their librte_vhost imports against ours.
for pmd in "$pmds"/librte_net_vhost.so.$abi "$pmds"/librte_vdpa_*.so.$abi; do
  [ -e "$pmd" ] || continue
  out=$(LD_LIBRARY_PATH=$libdir LD_BIND_NOW=1 ldd -r "$pmd" 2>&1 || true)
  if echo "$out" | grep -q "$soname => $libdir/$soname" && ! echo "$out" | grep -qE 'undefined symbol|version .* not found'; then
    check "$(basename "$pmd") binds every import to ours" ok
  else
    echo "$out" | grep -E 'vhost|undefined|not found' | head -5
    check "$(basename "$pmd") binds every import to ours" fail
  fi
done

log=$(mktemp)
fifo=$(mktemp -u); mkfifo "$fifo"
LD_LIBRARY_PATH=$libdir dpdk-testpmd -l 0,1 --no-huge -m 256 --no-pci --file-prefix=rvh-consumers-$$ \
  -d "$pmds" --vdev 'net_null0' -- -i --total-num-mbufs=4096 < "$fifo" > "$log" 2>&1 &
pid=$!
exec 3<>"$fifo"
loaded=""
for _ in $(seq 1 150); do
  if grep -q 'testpmd>' "$log" 2>/dev/null; then
    loaded=$(grep -F "$soname" "/proc/$pid/maps" | awk '{print $6}' | sort -u)
    break
  fi
  sleep 0.2
done
echo quit >&3; exec 3>&-
wait "$pid" || true
rm -f "$fifo"
if [ "$loaded" = "$libdir/$soname.0" ] || [ "$loaded" = "$libdir/$soname" ]; then
  check "dpdk-testpmd with all PMDs loaded ($(grep -c . "$log") log lines) maps $loaded" ok
else
  tail -20 "$log"
  check "dpdk-testpmd maps our library (saw: '${loaded:-nothing}')" fail
fi
rm -f "$log"
exit $fail
