#!/bin/bash
# Debian packages (issue 21), end to end in a throw-away Debian chroot:
# builds rvhost-vhostNN with dpkg-buildpackage (offline, vendored crates),
# checks it with lintian, installs it with apt beside Debian's OVS-DPDK and
# testpmd, and checks that both load it, that OVS dpdkvhostuserclient ports
# forward through it, that a Debian update of librte-vhostNN leaves it in
# place, and that `apt remove` gives Debian's library back (docs/packaging.md).
#
# usage: debian-packages.sh [BUILD_DIR]   (BUILD_DIR is unused: the package
#        is built from this checkout's sources inside the chroot)
#        debian-packages.sh --prepare      only make the cached chroot
# RVHOST_DEBIAN=SUITE picks the release (default bookworm):
#   bookworm  DPDK 22.11, OVS 3.1, rvhost-vhost23 (default build)
#   trixie    DPDK 24.11, OVS 3.5, rvhost-vhost25 (build profile pkg.rvhost.abi25)
#   forky     DPDK 25.11, OVS 4.0, rvhost-vhost26 (build profile pkg.rvhost.abi26);
#             not in run-all (CI time): run it by hand
# RVHOST_KEEP_WORK=1 keeps the run's overlay (the .debs, build.log) for a look.
#
# The chroot with Debian's packages installed is cached under
# $RVHOST_CACHE (default /var/cache/rvhost), keyed on the package list and
# debian/control's Build-Depends; each run works on an overlay of it that is
# thrown away. Everything runs in a private mount and PID namespace, so the
# mounts and every process started in the chroot end with the run.
{ # the whole script is read before it runs: it may be edited while it runs
set -euo pipefail
src=$(cd "$(dirname "$0")/../.." && pwd)
cache=${RVHOST_CACHE:-/var/cache/rvhost}
mirror=${RVHOST_DEBIAN_MIRROR:-http://deb.debian.org/debian}
suite=${RVHOST_DEBIAN:-bookworm}
# The suite's librte_vhost SONAME version and the build profile for it
# (debian/rules).
case $suite in
  bookworm) soversion=23 profile= hugepages=0 ;;
  trixie) soversion=25 profile=pkg.rvhost.abi25 hugepages=300 ;;
  forky) soversion=26 profile=pkg.rvhost.abi26 hugepages=300 ;;
  *) echo "RVHOST_DEBIAN=$suite: bookworm, trixie or forky" >&2; exit 2 ;;
esac
# What the test needs from Debian besides the Build-Depends.
# dpdk-dev has dpdk-testpmd; it loads every PMD installed: net/vhost links
# librte_vhost, virtio-user is the front-end of the forwarding check.
packages="dpdk dpdk-dev librte-net-vhost$soversion librte-net-virtio$soversion openvswitch-switch-dpdk \
  debsums lintian dpkg-dev debhelper procps"

log() { printf '[debian-packages/%s %(%T)T] %s\n' "$suite" -1 "$*"; }
die() { log "FAIL: $*"; exit 1; }

[ "$(id -u)" = 0 ] || die "needs root (debootstrap, chroot, mounts)"
for tool in debootstrap unshare cargo git; do
  command -v "$tool" >/dev/null || die "$tool not found (apt-get install debootstrap; cargo from tools/setup.sh)"
done

# Runs bash with the script on stdin inside ROOT, in a private mount and PID
# namespace with proc, a read-only sysfs, a minimal /dev and devpts.
# usage: in_chroot ROOT [LOWER] < script
# With LOWER (a test run), ROOT is an overlay of ROOT.upper on LOWER, in a
# network namespace of its own: the run needs no network, and the tap device
# of OVS's bridge stays in it.
# With IN_CHROOT_EXEC=exec the calling (sub)shell becomes unshare, whose
# death kills every process in the namespace.
in_chroot() {
  local root=$1 lower=${2:-} net=()
  [ -z "$lower" ] || net=(--net)
  ${IN_CHROOT_EXEC:-} unshare --mount --pid "${net[@]}" --fork --kill-child --propagation private \
    bash -s -- "$root" "$lower" 3<&0 <<'NS'
set -eu
root=$1 lower=$2
if [ -n "$lower" ]; then
  mkdir -p "$root.upper" "$root.work" "$root"
  mount -t overlay overlay -o "lowerdir=$lower,upperdir=$root.upper,workdir=$root.work" "$root"
fi
mount -t proc proc "$root/proc"
mount -t sysfs -o ro sysfs "$root/sys"
mount -t tmpfs -o mode=755,nosuid tmpfs "$root/dev"
for n in null:1:3 zero:1:5 full:1:7 random:1:8 urandom:1:9 tty:5:0; do
  IFS=: read -r name major minor <<<"$n"
  mknod -m 666 "$root/dev/$name" c "$major" "$minor"
done
mkdir -p "$root/dev/pts" "$root/dev/shm" "$root/dev/net"
mknod -m 666 "$root/dev/net/tun" c 10 200
mount -t devpts -o newinstance,ptmxmode=0666,mode=620 devpts "$root/dev/pts"
ln -s pts/ptmx "$root/dev/ptmx"
mount -t tmpfs -o mode=1777 tmpfs "$root/dev/shm"
mount -t tmpfs -o mode=755 tmpfs "$root/run"
exec chroot "$root" /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME=/root LANG=C.UTF-8 \
  DEBIAN_FRONTEND=noninteractive /bin/bash -s <&3
NS
}

build_depends=$(sed -n '/^Build-Depends:/,/^[A-Z][a-zA-Z-]*: /p' "$src/debian/control" | sed '$d')
key=$( (echo "$suite $mirror" $packages; echo "$build_depends") | sha256sum | cut -c1-12)
base=$cache/chroot-$suite-$key

# Makes the cached chroot: debootstrap, Debian's DPDK, OVS-DPDK, the build
# dependencies and the check tools, with the downloaded .debs kept (the test
# reinstalls librte-vhostNN from them).
prepare_chroot() {
  [ -e "$base/.complete" ] && return 0
  local tmp=$base.tmp t0=$SECONDS
  rm -rf "$tmp"; mkdir -p "$cache"
  log "making $base (first run: a few minutes, downloads ~400 MB)"
  # In its own mount namespace: debootstrap's mounts in the target end with it.
  nice -n 10 unshare --mount --propagation private debootstrap --variant=minbase "$suite" "$tmp" "$mirror" \
    "/usr/share/debootstrap/scripts/$([ "$suite" = forky ] && echo sid || echo "$suite")" >"$cache/debian-packages-$suite.debootstrap.log" 2>&1 \
    || die "debootstrap failed: $cache/debian-packages-$suite.debootstrap.log"
  security=${mirror%/debian}/debian-security
  cat >"$tmp/etc/apt/sources.list" <<SL
deb $mirror $suite main
deb $mirror $suite-updates main
deb $security $suite-security main
SL
  echo 'APT::Install-Recommends "false";' >"$tmp/etc/apt/apt.conf.d/90rvhost"
  # Testing's Release files may be served after their Valid-Until date.
  [ "$suite" = forky ] && echo 'Acquire::Check-Valid-Until "false";' >>"$tmp/etc/apt/apt.conf.d/90rvhost"
  echo 'Binary::apt::APT::Keep-Downloaded-Packages "true";' >>"$tmp/etc/apt/apt.conf.d/90rvhost"
  printf '#!/bin/sh\nexit 101\n' >"$tmp/usr/sbin/policy-rc.d"; chmod 755 "$tmp/usr/sbin/policy-rc.d"
  cp /etc/resolv.conf "$tmp/etc/resolv.conf"
  mkdir -p "$tmp/tmp/control/debian"
  cp "$src/debian/control" "$tmp/tmp/control/debian/control"
  in_chroot "$tmp" <<SH >"$cache/debian-packages-$suite.apt.log" 2>&1 || die "apt in the chroot failed: $cache/debian-packages-$suite.apt.log"
set -eux
apt-get update
nice -n 10 apt-get install -y $packages
nice -n 10 apt-get build-dep -y ${profile:+-P $profile} /tmp/control
update-alternatives --set ovs-vswitchd /usr/lib/openvswitch-switch-dpdk/ovs-vswitchd-dpdk
rm -rf /tmp/control
SH
  touch "$tmp/.complete"
  rm -rf "$cache"/chroot-"$suite"-*[!p]   # older keys (not .tmp dirs)
  mv "$tmp" "$base"
  log "cached chroot ready in $((SECONDS - t0)) s"
}

mkdir -p "$cache"
# Not chroot-SUITE.lock: tests/chroot/debian.sh's trixie chroot has that one.
exec 9>"$cache/debian-packages-$suite.lock"
flock 9
prepare_chroot
[ "${1:-}" = --prepare ] && exit 0

# 24.11's ovs-vswitchd needs hugepages (tests/e2e/debian-packages-chroot.sh
# says why): makes $hugepages 2 MiB pages free, raising the host's reservation
# as tests/e2e/testpmd.py does.
reserve_hugepages() {
  local free total
  free=$(awk '/^HugePages_Free:/ { print $2 }' /proc/meminfo)
  [ "$free" -ge "$hugepages" ] && return 0
  total=$(cat /proc/sys/vm/nr_hugepages)
  echo $((total + hugepages - free)) >/proc/sys/vm/nr_hugepages
  free=$(awk '/^HugePages_Free:/ { print $2 }' /proc/meminfo)
  [ "$free" -ge "$hugepages" ] || die "cannot reserve $hugepages hugepages ($free free)"
}
reserve_hugepages

# One run: an overlay of the cached chroot, this checkout's sources and their
# vendored crates in /build, and tests/e2e/debian-packages-chroot.sh run in it.
work=$(mktemp -d /var/tmp/rvhost-debpkg.XXXXXX)
ns_pid=
cleanup() {
  [ -n "$ns_pid" ] && kill -KILL "$ns_pid" 2>/dev/null && wait "$ns_pid" 2>/dev/null
  # The overlay and every mount lived in the namespace: only plain files remain.
  if [ -n "${RVHOST_KEEP_WORK:-}" ]; then log "kept $work"; else rm -rf --one-file-system "$work"; fi
}
trap cleanup EXIT
trap 'exit 143' TERM INT
t0=$SECONDS
mkdir -p "$work/root.upper/build/rvhost"
git -C "$src" ls-files -z --cached --others --exclude-standard \
  | (cd "$src" && tar --null --ignore-failed-read -T - -cf -) | tar -C "$work/root.upper/build/rvhost" -xf -
cargo vendor --quiet --locked --manifest-path "$work/root.upper/build/rvhost/Cargo.toml" \
  "$work/root.upper/build/rvhost/vendor" >/dev/null || die "cargo vendor failed"
cp "$src/tests/e2e/debian-packages-chroot.sh" "$work/root.upper/build/check.sh"
log "sources and vendored crates copied in $((SECONDS - t0)) s"
IN_CHROOT_EXEC=exec in_chroot "$work/root" "$base" <<<"exec bash /build/check.sh $soversion" &
ns_pid=$!
status=0
wait "$ns_pid" || status=$?
ns_pid=
log "chroot part finished with status $status in $((SECONDS - t0)) s"
exit "$status"
}
