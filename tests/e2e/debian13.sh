#!/bin/bash
# rvhost-e2e: timeout=2400
# Debian 13 (trixie): DPDK 24.11.8, OVS 3.5, QEMU 10. Builds rvhost with
# `meson setup -Dabi=24.11` inside a cached chroot (tests/chroot/debian.sh)
# and runs there, against Debian's librte_vhost.so.25 (stock) and ours:
#   ABI: symbols and versions, layouts and constants (against 24.11's
#        headers), consumers (dpdk-testpmd with every PMD, the vDPA PMDs),
#        DPDK's examples of the release (from dpdk-doc) built on ours;
#   C tests: ffi-tests/run.sh built against 24.11's headers (vhost-user
#        API, async/DMA on EAL's DMA skeleton, vhost-crypto on OpenSSL);
#   e2e: the DTS loopback paths (loopback_paths.py), a QEMU 10 Linux guest
#        pinging testpmd (qemu_guest.py), OVS 3.5 dpdkvhostuserclient ports
#        (ovs_vhostuserclient.py), migration precopy/postcopy (migration.py),
#        a vIOMMU guest whose rings lie on scattered guest pages (viommu.py).
# The stock runs prove the harness on Debian's own library; ours must pass
# every check. If ours cannot be built, that is one FAIL ("not built"), and
# the stock runs still go on.
# By default the loopback paths run in their quick set (the split and packed
# mergeable paths, 2 queues, chains, external and linear buffers) and
# migration its precopy and memfd postcopy cases: the datapath under every
# path is the one the bookworm suite runs in full. --full runs all of both.
# RVHOST_DEBIAN=forky runs the same on Debian testing (DPDK 25.11, .so.26).
# RVHOST_DEBIAN_OURS=DIR (a directory in the chroot holding the SONAME)
# tests that library as ours instead of building the tree.
# usage: tests/e2e/debian13.sh [HOST_BUILDDIR (unused)] [--only=PHRASE,...] [--full]
#   --only: run only the checks whose name contains one of the
#   comma-separated phrases.
set -uo pipefail
tree=$(cd "$(dirname "$0")/../.." && pwd)
suite=${RVHOST_DEBIAN:-trixie}
case $suite in trixie) abi=24.11 soname=librte_vhost.so.25 ;; forky) abi=25.11 soname=librte_vhost.so.26 ;;
  *) echo "RVHOST_DEBIAN: trixie or forky" >&2; exit 2 ;; esac
only= loopback_args=--quick migration_args=--cases=precopy,memfd
for a in "$@"; do
  case $a in --only=*) only=${a#--only=} ;; --full) loopback_args= migration_args= ;; esac
done
chroot_sh=$tree/tests/chroot/debian.sh
results=() failed=0
record() {  # record PASS|FAIL NAME SECONDS
  results+=("$1  $2 ($3 s)")
  [ "$1" = PASS ] || failed=$((failed + 1))
}
wanted() {
  [ -z "$only" ] && return 0
  local w IFS=,
  for w in $only; do [[ $1 == *"$w"* ]] && return 0; done
  return 1
}

t0=$SECONDS
root=$(nice -n 10 "$chroot_sh" "$suite") || { echo "FAIL: could not make the $suite chroot"; exit 1; }
record PASS "chroot $root ready" $((SECONDS - t0))
in_chroot() { "$chroot_sh" "$suite" exec "$@"; }

# The tree, copied (mtimes kept, so cargo and meson rebuild only what
# changed) to a path of its own: concurrent runs from other trees do not mix.
key=$(echo "$tree" | sha256sum | cut -c1-8)
src=/var/tmp/rvhost-src-$key bld=/var/tmp/rvhost-build-$abi-$key
rm -rf "${root:?}$src" && mkdir -p "$root$src"
tar -C "$tree" --exclude=./.git --exclude=./build --exclude='./build-*' --exclude=./target --exclude=./ffi-tests/out -cf - . | tar -C "$root$src" -xf -
"$chroot_sh" "$suite" vendor "$tree"

# The guest for the QEMU tests: the host's image if it has one (kernel and
# busybox initramfs; see guest-image.sh), else guest-image.sh makes one
# from the chroot's Debian.
if [ ! -s "$root/var/tmp/rvhost-guest/initrd.gz" ] && [ -s /var/tmp/rvhost-guest/initrd.gz ] \
    && [ -d /var/tmp/rvhost-guest/root ]; then
  mkdir -p "$root/var/tmp/rvhost-guest"
  cp -a /var/tmp/rvhost-guest/{vmlinuz,initrd.gz,root} "$root/var/tmp/rvhost-guest/"
fi

t=$SECONDS
ours=
if [ -n "${RVHOST_DEBIAN_OURS:-}" ]; then
  ours=$RVHOST_DEBIAN_OURS
  [ -e "$root$ours/$soname" ] && record PASS "ours: $ours/$soname (given, not built)" 0 \
    || { record FAIL "ours: no $soname in $ours" 0; ours=; }
elif in_chroot bash -c "cd $src && { [ -f $bld/build.ninja ] || { rm -rf $bld && meson setup -Dabi=$abi $bld; }; } \
    && nice -n 10 meson compile -C $bld" > "$root/var/tmp/rvhost-build-$key.log" 2>&1 \
    && [ -e "$root$bld/$soname" ]; then
  ours=$bld
  record PASS "rvhost $soname built with -Dabi=$abi" $((SECONDS - t))
elif grep -q 'Unknown option.*abi\|Unknown options:.*abi' "$root/var/tmp/rvhost-build-$key.log"; then
  record FAIL "rvhost $soname not built: -Dabi=$abi unsupported" $((SECONDS - t))
else
  tail -25 "$root/var/tmp/rvhost-build-$key.log"
  record FAIL "rvhost $soname not built (meson -Dabi=$abi failed, log above)" $((SECONDS - t))
fi

# check NAME CMD...: one check run inside the chroot, from the copied tree.
check() {
  local name=$1 t=$SECONDS
  shift
  wanted "$name" || return 0
  echo "=== $name"
  if in_chroot bash -c "cd $src && $*"; then record PASS "$name" $((SECONDS - t))
  else record FAIL "$name" $((SECONDS - t)); fi
}
stock=/usr/lib/x86_64-linux-gnu/$soname
check "ABI symbols: Debian's $soname (harness self-check)" tests/abi/symbols.sh "$stock" "$stock"
check "ABI layout: Debian's $abi headers against themselves (harness self-check)" \
  RVHOST_INCLUDE=/usr/include/dpdk tests/abi/layout.sh
check "ABI consumers: stock" tests/abi/consumers.sh /usr/lib/x86_64-linux-gnu
if [ -n "$ours" ]; then
  check "ABI symbols: ours vs Debian's $soname" tests/abi/symbols.sh "$ours" "$stock"
  check "ABI layout: our include/$abi vs Debian's $abi headers" tests/abi/layout.sh "$ours"
  check "ABI consumers: ours" tests/abi/consumers.sh "$ours"
  check "ABI examples: DPDK $abi's vhost, vhost_blk, vhost_crypto against our include/$abi" \
    tests/abi/examples.sh "$ours"
fi
# The C tests of the public API (vhost-user, async/DMA, vhost-crypto),
# built against this release's headers.
check "C tests: stock" ffi-tests/run.sh
[ -n "$ours" ] && check "C tests: ours (with vhost-crypto)" ffi-tests/run.sh "$ours"
# Each e2e script runs stock and, if built, ours (ours must pass).
e2e() {
  local name=$1
  shift
  check "e2e $name: stock${ours:+ and ours}" env PYTHONUNBUFFERED=1 timeout 900 python3 "$@" $ours
}
e2e "DTS loopback paths" tests/e2e/loopback_paths.py $loopback_args
e2e "QEMU guest pings" tests/e2e/qemu_guest.py
e2e "OVS dpdkvhostuserclient" tests/e2e/ovs_vhostuserclient.py
e2e "migration precopy/postcopy" tests/e2e/migration.py $migration_args
# QEMU 10's intel-iommu without device-iotlb: the guest's multi-page rings
# lie on scattered guest pages, which Debian's library refuses ("failed to
# map desc ring": its runs fail and are reported, not counted); ours maps
# them side by side (src/guest/window.rs) and must answer every ping.
e2e "vIOMMU rings on scattered guest pages (stock refuses them)" \
  tests/e2e/viommu.py --no-device-iotlb --cases 1q-split,1q-packed

echo
echo "Debian $suite (DPDK $abi), tree $tree:"
printf '%s\n' "${results[@]}"
echo "total $((SECONDS - t0)) s"
[ "$failed" = 0 ]
