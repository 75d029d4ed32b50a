#!/bin/bash
# rvhost-e2e: helper (makes the Debian chroots of tests/e2e/debian13.sh; not a test of its own)
# A cached Debian chroot with that release's DPDK, OVS, QEMU and a Rust
# toolchain new enough for rvhost, to build and test the .so.25/.so.26 ABIs.
#   debian.sh SUITE                 make or complete it (idempotent), print its path
#   debian.sh SUITE exec CMD...     the same, then run CMD inside (as root, cwd /)
#                                   with proc, sys (ro), dev and devpts mounted
#   debian.sh SUITE vendor SRCDIR   vendor SRCDIR's crates into it (done for
#                                   this tree already when it is made)
# SUITE: trixie (Debian 13: DPDK 24.11, OVS 3.5, QEMU 10) or forky (testing:
# DPDK 25.11, OVS 4.0, QEMU 11).
# Where: ${RVHOST_CHROOT_DIR:-/var/cache/rvhost}/chroot-SUITE. Stages leave
# stamps: .rvhost-ready once DPDK's dev files, meson and rustc >= 1.87 are in
# (enough to build rvhost), .rvhost-complete once OVS and QEMU are too.
# Mounts are shared between concurrent users (a shared flock) and undone by
# the last one leaving; nothing is left mounted by "exec".
# Crates come from the host (`cargo vendor`): the chroot's TLS stack may not
# trust the host's network's certificates. Needs root, debootstrap and
# network access to the Debian mirror.
set -euo pipefail
suite=${1:?usage: debian.sh trixie|forky [exec CMD...|vendor SRCDIR]}
shift
here=$(cd "$(dirname "$0")" && pwd)
tree=$(cd "$here/../.." && pwd)
mirror=${RVHOST_DEBIAN_MIRROR:-http://deb.debian.org/debian}
security=${RVHOST_DEBIAN_SECURITY:-http://deb.debian.org/debian-security}
base=${RVHOST_CHROOT_DIR:-/var/cache/rvhost}
root=$base/chroot-$suite
lock=$base/chroot-$suite.lock
case $suite in
  # rustc-web (1.96) replaces trixie's rustc 1.85; rvhost needs >= 1.87.
  trixie) rust=(rustc-web cargo-web) script=trixie ;;
  forky) rust=(rustc cargo) script=sid ;;
  *) echo "unknown suite '$suite' (trixie or forky)" >&2; exit 2 ;;
esac
# dpdk-doc ships the release's examples' sources (tests/abi/examples.sh).
build_pkgs=(dpdk dpdk-dev libdpdk-dev dpdk-doc meson ninja-build pkgconf gcc make libc6-dev libssl-dev binutils libclang-dev
            python3 python3-pexpect "${rust[@]}")
run_pkgs=(openvswitch-switch-dpdk qemu-system-x86 procps iproute2 busybox-static cpio)
export DEBIAN_FRONTEND=noninteractive LC_ALL=C

log() { echo "debian.sh[$suite]: $*" >&2; }
in_root() { chroot "$root" /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME=/root LC_ALL=C \
  DEBIAN_FRONTEND=noninteractive "$@"; }
is_mounted() { mountpoint -q "$root/$1"; }

mount_all() {
  is_mounted proc || mount -t proc proc "$root/proc"
  is_mounted sys || mount -t sysfs -o ro sysfs "$root/sys"
  if ! is_mounted dev; then
    # KVM, /dev/net/tun, hugepages: the host's devices. rslave: unmounting
    # here never propagates to the host's /dev.
    mount --rbind /dev "$root/dev"
    mount --make-rslave "$root/dev"
  fi
}

umount_all() {
  local m
  for m in dev sys proc; do
    if is_mounted "$m"; then umount -R "$root/$m" || umount -R -l "$root/$m"; fi
  done
}

# Holds the shared lock on fd 9 while the caller uses the chroot; the first
# user mounts (under the exclusive lock), the last one unmounts.
enter() {
  exec 9>"$lock"
  flock -x 9
  mount_all
  flock -s 9
}
leave() {
  if flock -x -n 9; then umount_all; fi
  flock -u 9
}
# The EXIT trap (leave) also runs when a signal ends the script.
trap 'exit 130' INT
trap 'exit 143' TERM HUP

bootstrap() {
  [ -e "$root/.rvhost-debootstrap" ] && return
  command -v debootstrap >/dev/null || apt-get install -y -qq debootstrap >/dev/null
  # An interrupted debootstrap: start over (nothing is mounted there then).
  if [ -d "$root" ]; then
    umount_all
    if grep -q " $root/" /proc/mounts; then log "mounts left under $root, not removing it"; exit 1; fi
    rm -rf --one-file-system "$root"
  fi
  mkdir -p "$root"
  log "debootstrap $suite (about a minute)"
  debootstrap --variant=minbase --arch=amd64 "$suite" "$root" "$mirror" \
    "/usr/share/debootstrap/scripts/$script" > "$base/chroot-$suite.debootstrap.log" 2>&1 \
    || { tail -20 "$base/chroot-$suite.debootstrap.log" >&2; exit 1; }
  touch "$root/.rvhost-debootstrap"
}

configure() {
  cat > "$root/etc/apt/sources.list" <<EOF
deb $mirror $suite main
deb $mirror $suite-updates main
deb $security $suite-security main
EOF
  # Testing's Release files may be served after their Valid-Until date.
  [ "$suite" = trixie ] || echo 'Acquire::Check-Valid-Until "false";' > "$root/etc/apt/apt.conf.d/99rvhost"
  # No daemon (OVS, ...) starts from a package's maintainer scripts.
  printf '#!/bin/sh\nexit 101\n' > "$root/usr/sbin/policy-rc.d"
  chmod +x "$root/usr/sbin/policy-rc.d"
  cp /etc/resolv.conf "$root/etc/resolv.conf" 2>/dev/null || true
}

apt_install() {
  local missing=() p
  for p in "$@"; do in_root dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
  [ ${#missing[@]} = 0 ] && return
  log "apt-get install ${missing[*]}"
  in_root apt-get update -qq
  in_root apt-get install -y -qq --no-install-recommends "${missing[@]}" > "$base/chroot-$suite.apt.log" 2>&1 \
    || { tail -20 "$base/chroot-$suite.apt.log" >&2; exit 1; }
}

# The host's cargo vendors SRCDIR's locked crates into /opt/rvhost-vendor,
# which the chroot's cargo uses in place of crates.io. Crates accumulate
# (--no-delete) so trees with different Cargo.lock files share it.
vendor() {
  local src=$1 sum
  sum=$(sha256sum "$src/Cargo.lock" | cut -c1-16)
  grep -qx "$sum" "$root/opt/rvhost-vendor/.locks" 2>/dev/null && return
  log "cargo vendor ($src)"
  mkdir -p "$root/opt/rvhost-vendor"
  cargo vendor --quiet --locked --versioned-dirs --no-delete --manifest-path "$src/Cargo.toml" \
    "$root/opt/rvhost-vendor" > /dev/null
  mkdir -p "$root/root/.cargo"
  cat > "$root/root/.cargo/config.toml" <<'EOF'
[source.crates-io]
replace-with = "rvhost-vendor"

[source.rvhost-vendor]
directory = "/opt/rvhost-vendor"
EOF
  echo "$sum" >> "$root/opt/rvhost-vendor/.locks"
}

# The stamp names the packages: a changed list completes the chroot again.
want="${build_pkgs[*]} ${run_pkgs[*]}"
complete() { [ "$(cat "$root/.rvhost-complete" 2>/dev/null)" = "$want" ]; }
mkdir -p "$base"
if ! complete; then
  # One builder at a time; users of a ready chroot do not wait for it.
  exec 8>"$base/chroot-$suite.build.lock"
  flock -x 8
fi
if ! complete; then
  t0=$SECONDS
  bootstrap
  configure
  enter
  trap leave EXIT
  apt_install "${build_pkgs[@]}"
  vendor "$tree"
  v=$(in_root rustc --version)
  case $v in rustc\ 1.[0-9].*|rustc\ 1.[0-7][0-9].*|rustc\ 1.8[0-6].*) log "$v is too old"; exit 1 ;; esac
  if [ ! -e "$root/.rvhost-ready" ]; then
    touch "$root/.rvhost-ready"
    log "ready to build in $((SECONDS - t0)) s ($v, $(in_root dpkg-query -W -f='dpdk ${Version}' dpdk))"
  fi
  apt_install "${run_pkgs[@]}"
  # OVS's DPDK-enabled daemon is an alternative of the plain one.
  in_root update-alternatives --set ovs-vswitchd /usr/lib/openvswitch-switch-dpdk/ovs-vswitchd-dpdk >/dev/null
  in_root apt-get clean
  echo "$want" > "$root/.rvhost-complete"
  log "complete in $((SECONDS - t0)) s ($(du -sh --one-file-system "$root" | cut -f1))"
  leave
  trap - EXIT
fi
exec 8>&-

case ${1:-} in
  "") echo "$root" ;;
  vendor) vendor "$(cd "${2:?vendor SRCDIR}" && pwd)" ;;
  exec)
    shift
    enter
    trap leave EXIT
    rc=0
    in_root "$@" || rc=$?
    exit $rc ;;
  *) echo "unknown command '$1'" >&2; exit 2 ;;
esac
