#!/bin/bash
# rvhost-e2e: helper
# The part of tests/e2e/debian-packages.sh that runs inside the throw-away
# Debian chroot (as /build/check.sh, sources in /build/rvhost with their
# vendored crates). Each step logs what it checks; any failed check exits 1.
# usage: check.sh SOVERSION   (23: bookworm, DPDK 22.11; 25: trixie, DPDK 24.11;
#                              26: forky, DPDK 25.11)
set -euo pipefail
soversion=${1:?usage: check.sh 23|25|26}
case $soversion in
  23) dpdk=22.11 profile= ;;
  25) dpdk=24.11 profile=pkg.rvhost.abi25 ;;
  26) dpdk=25.11 profile=pkg.rvhost.abi26 ;;
  *) echo "no Debian suite for librte_vhost.so.$soversion" >&2; exit 2 ;;
esac
lib=librte_vhost.so.$soversion.0
libdir=/usr/lib/x86_64-linux-gnu
pkg=rvhost-vhost$soversion
debian_pkg=librte-vhost$soversion
diverted=$libdir/rvhost-diverted
run=/run/rvhost
mkdir -p "$run"

# OVS's clients wait for ovs-vswitchd without limit by default: a daemon that
# died must fail the test, not hang it.
ovs-vsctl() { command ovs-vsctl --timeout=60 "$@"; }
ovs-appctl() { command ovs-appctl --timeout=60 "$@"; }
ovs-ofctl() { command ovs-ofctl --timeout=60 "$@"; }

log() { printf '[debian-packages/chroot %(%T)T] %s\n' -1 "$*"; }
die() { log "FAIL: $*"; exit 1; }
expect_eq() { [ "$2" = "$3" ] || die "$1: got '$2', expected '$3'"; log "ok: $1 ($2)"; }

md5_of() { md5sum <"$1" | cut -d' ' -f1; }
# md5 of the librte_vhost file PID has mapped (read through map_files: the
# file mapped, whatever its path is now), or "none".
mapped_md5() {
  local range
  range=$(awk -v lib="$lib" 'index($6, lib) { print $1; exit }' "/proc/$1/maps")
  if [ -z "$range" ]; then echo none; else md5_of "/proc/$1/map_files/$range"; fi
}
installed() { dpkg-query -W -f '${db:Status-Abbrev} ${Package}\n' | awk '$1 == "ii" { print $2 }'; }

# --- build -----------------------------------------------------------------
t0=$SECONDS
log "building with dpkg-buildpackage -us -uc -b ${profile:+-P$profile }offline (the chroot's network namespace has no network)"
cd /build/rvhost
if ! nice -n 10 dpkg-buildpackage -us -uc -b ${profile:+-P$profile} >/build/build.log 2>&1; then
  tail -n 40 /build/build.log
  die "dpkg-buildpackage failed (log above)"
fi
log "built in $((SECONDS - t0)) s: $(cd /build && echo ./*.deb)"
cd /build
deb=$(echo ./"$pkg"_*_amd64.deb)
dbgsym=$(echo ./"$pkg"-dbgsym_*_amd64.deb)
[ -f "$deb" ] && [ -f "$dbgsym" ] || die "expected $pkg and $pkg-dbgsym .debs"
ours_md5=$(dpkg-deb --fsys-tarfile "$deb" | tar -xO ".$libdir/$lib" | md5sum | cut -d' ' -f1)
debian_md5=$(awk -v f="${libdir#/}/$lib" '$2 == f { print $1 }' "/var/lib/dpkg/info/$debian_pkg:amd64.md5sums")
[ -n "$debian_md5" ] && [ "$ours_md5" != "$debian_md5" ] || die "cannot tell ours ($ours_md5) from Debian's ($debian_md5)"
log "ours $ours_md5, Debian's $debian_md5"
expect_eq "$pkg ships the library, its SONAME link and lintian's override" \
  "$(dpkg-deb -c "$deb" | awk '$1 !~ /^d/ && $6 !~ /usr\/share\/doc/ { print $6 }' | sort | tr '\n' ' ')" \
  ".$libdir/librte_vhost.so.$soversion .$libdir/$lib ./usr/share/lintian/overrides/$pkg "
expect_eq "$pkg's control files" "$(dpkg-deb --ctrl-tarfile "$deb" | tar -t | sort | tr '\n' ' ')" \
  "./ ./control ./md5sums ./postrm ./preinst ./shlibs ./triggers "
# What is built against the library keeps depending on Debian's package; no
# symbols file (Debian's package keeps its own).
expect_eq "$pkg's shlibs" "$(dpkg-deb --ctrl-tarfile "$deb" | tar -xO ./shlibs)" \
  "librte_vhost $soversion $debian_pkg (>= $dpdk)"
expect_eq "$pkg's trigger" "$(dpkg-deb --ctrl-tarfile "$deb" | tar -xO ./triggers | grep -v '^#')" \
  "activate-noawait ldconfig"
build_id=$(dpkg-deb --fsys-tarfile "$deb" | tar -xO ".$libdir/$lib" >/tmp/ours.so && readelf -n /tmp/ours.so \
  | awk '/Build ID/ { print $3 }')
expect_eq "-dbgsym has the debug file for the library's build-id" \
  "$(dpkg-deb -c "$dbgsym" | grep -c "/usr/lib/debug/.build-id/${build_id:0:2}/${build_id:2}.debug" || true)" 1

log "lintian (errors fail; every override is listed with its reason in debian/)"
lintian --pedantic --show-overrides --fail-on error ./*.changes | tee /build/lintian.log \
  || die "lintian reports errors"
grep -q '^O: .*package-name-doesnt-match-sonames' /build/lintian.log || die "the lintian override is not used"

# --- Open vSwitch with DPDK, started by hand --------------------------------
mkdir -p /run/openvswitch /var/log/openvswitch /etc/openvswitch
rm -f /etc/openvswitch/conf.db
ovsdb-tool create /etc/openvswitch/conf.db /usr/share/openvswitch/vswitch.ovsschema
ovsdb-server /etc/openvswitch/conf.db --remote=punix:/run/openvswitch/db.sock \
  --pidfile=/run/openvswitch/ovsdb-server.pid --detach --log-file=/var/log/openvswitch/ovsdb-server.log
ovs-vsctl --no-wait init
ovs-vsctl --no-wait set Open_vSwitch . other_config:dpdk-init=true other_config:dpdk-lcore-mask=0x1 \
  other_config:pmd-cpu-mask=0x1
# OVS always gives DPDK --in-memory. 22.11's EAL takes --no-huge with it when
# --legacy-mem (what --no-huge implies anyway) is given, and per-port mempools
# fit in 1 GB where OVS's shared one does not. 24.11's EAL refuses --no-huge
# with --in-memory: its memory comes from 2 MiB hugepages the host reserved
# (debian-packages.sh), taken anonymously (no hugetlbfs mount needed).
if [ "$dpdk" = 22.11 ]; then
  ovs-vsctl --no-wait set Open_vSwitch . other_config:per-port-memory=true \
    "other_config:dpdk-extra=--no-huge -m 1024 --no-pci --legacy-mem"
else
  ovs-vsctl --no-wait set Open_vSwitch . other_config:dpdk-socket-mem=512 other_config:dpdk-extra=--no-pci
fi
ovs_pid=
start_ovs() {
  ovs-vswitchd --pidfile=/run/openvswitch/ovs-vswitchd.pid --detach -vconsole:off \
    --log-file=/var/log/openvswitch/ovs-vswitchd.log
  ovs_pid=$(cat /run/openvswitch/ovs-vswitchd.pid)
  ovs-vsctl wait-until Open_vSwitch . dpdk_initialized=true \
    || { tail -n 30 /var/log/openvswitch/ovs-vswitchd.log; die "ovs-vswitchd did not initialise DPDK"; }
}
restart_ovs() {
  ovs-appctl -t ovs-vswitchd exit
  while kill -0 "$ovs_pid" 2>/dev/null; do sleep 0.2; done
  start_ovs
}
start_ovs
expect_eq "ovs-vswitchd maps Debian's library before ours is installed" "$(mapped_md5 "$ovs_pid")" "$debian_md5"
ovs-vsctl add-br br0 -- set bridge br0 datapath_type=netdev
for i in 0 1; do
  ovs-vsctl add-port br0 vhu$i -- set Interface vhu$i type=dpdkvhostuserclient \
    "options:vhost-server-path=$run/vhu$i.sock"
done
ovs-ofctl del-flows br0
ovs-ofctl add-flow br0 in_port=vhu0,actions=output:vhu1
ovs-ofctl add-flow br0 in_port=vhu1,actions=output:vhu0

# PORT rx|tx: packets counted by ovs-vswitchd now (the database's copy of the
# statistics lags by seconds).
port_stat() { ovs-ofctl dump-ports br0 "$1" | sed -n "s/.*$2 pkts=\([0-9]*\).*/\1/p"; }
# One testpmd with two virtio-user ports (vhost-user servers OVS connects to),
# io forwarding port 0 <-> port 1, started with a burst from each: packets
# circle testpmd -> vhu0 -> vhu1 -> testpmd -> vhu1 -> vhu0 -> ... Checks the
# counts both ways on both sides, and which librte_vhost testpmd mapped
# (EXPECTED_MD5; net/vhost, loaded as a plugin, links it).
forward_check() {
  local expected_md5=$1 label=$2 tp_pid i
  rm -f "$run/testpmd.in" "$run"/vhu?.sock
  mkfifo "$run/testpmd.in"
  # 25.11's EAL refuses --single-file-segments with --no-huge (one memfd
  # then anyway).
  # shellcheck disable=SC2046
  dpdk-testpmd -l 0,1 --no-huge -m 512 $([ "$dpdk" = 25.11 ] || echo --single-file-segments) --no-pci --file-prefix=tp \
    --vdev "net_virtio_user0,path=$run/vhu0.sock,server=1" \
    --vdev "net_virtio_user1,path=$run/vhu1.sock,server=1" -- -i --forward-mode=io --total-num-mbufs=8192 \
    <"$run/testpmd.in" >"$run/testpmd.out" 2>&1 &
  tp_pid=$!
  exec 5>"$run/testpmd.in"
  for i in $(seq 300); do grep -q 'testpmd> ' "$run/testpmd.out" && break; sleep 0.1; done
  grep -q 'testpmd> ' "$run/testpmd.out" || { tail -n 20 "$run/testpmd.out"; die "testpmd did not start ($label)"; }
  expect_eq "testpmd maps $label" "$(mapped_md5 "$tp_pid")" "$expected_md5"
  for i in 0 1; do
    ovs-vsctl wait-until Interface vhu$i link_state=up || die "vhu$i did not come up ($label)"
  done
  # OVS reports a vhost port's counters while it is connected only.
  local before_rx0 before_tx0 before_rx1 before_tx1 tp_rx0 tp_tx0 tp_rx1 tp_tx1 rx0 tx0 rx1 tx1
  before_rx0=$(port_stat vhu0 rx) before_tx0=$(port_stat vhu0 tx)
  before_rx1=$(port_stat vhu1 rx) before_tx1=$(port_stat vhu1 tx)
  echo "start tx_first" >&5; sleep 2
  echo "stop" >&5; sleep 1
  rx0=$(($(port_stat vhu0 rx) - before_rx0)) tx0=$(($(port_stat vhu0 tx) - before_tx0))
  rx1=$(($(port_stat vhu1 rx) - before_rx1)) tx1=$(($(port_stat vhu1 tx) - before_tx1))
  echo "show port stats all" >&5; sleep 0.5
  echo "quit" >&5; exec 5>&-
  wait "$tp_pid" || die "testpmd failed ($label)"
  read -r tp_rx0 tp_rx1 <<<"$(awk '/NIC statistics for port/ { p = 1 } p && /RX-packets:/ { printf "%s ", $2 }' \
    "$run/testpmd.out")"
  read -r tp_tx0 tp_tx1 <<<"$(awk '/NIC statistics for port/ { p = 1 } p && /TX-packets:/ { printf "%s ", $2 }' \
    "$run/testpmd.out")"
  log "$label: testpmd port0 tx $tp_tx0 rx $tp_rx0, port1 tx $tp_tx1 rx $tp_rx1;" \
    "OVS vhu0 rx $rx0 tx $tx0, vhu1 rx $rx1 tx $tx1"
  # Both bursts of 32 went round at least twice, through both OVS ports both
  # ways. OVS received every packet testpmd sent. testpmd stopped reading with
  # the 64 packets still in the loop sitting in its receive rings: so OVS sent
  # exactly 64 more than testpmd received (none lost, none made up).
  for n in "$tp_tx0" "$tp_rx0" "$tp_tx1" "$tp_rx1" "$rx0" "$tx0" "$rx1" "$tx1"; do
    [ "${n:-0}" -ge 64 ] || die "$label: fewer than 64 packets on some port (see counts above)"
  done
  expect_eq "$label: OVS vhu0 received what testpmd port 0 sent" "$rx0" "$tp_tx0"
  expect_eq "$label: OVS vhu1 received what testpmd port 1 sent" "$rx1" "$tp_tx1"
  expect_eq "$label: packets OVS sent that testpmd had not read when it stopped" \
    "$((tx0 - tp_rx0 + tx1 - tp_rx1))" 64
}

# --- install ours with apt ---------------------------------------------------
installed >/tmp/installed.before
log "apt install $deb"
apt-get install -y "$deb" >/build/apt-install.log
grep -E "diversion|to remove" /build/apt-install.log
grep -q ' 0 to remove' /build/apt-install.log || die "apt removed packages"
installed >/tmp/installed.after
expect_eq "apt install added only $pkg and removed nothing" \
  "$(diff /tmp/installed.before /tmp/installed.after | grep '^[<>]' | tr '\n' ' ')" "> $pkg "
expect_eq "diversions held by $pkg" "$(dpkg-divert --list | grep -c "by $pkg" || true)" 2
expect_eq "$libdir/$lib is ours" "$(md5_of "$libdir/$lib")" "$ours_md5"
expect_eq "Debian's copy sits in $diverted" "$(md5_of "$diverted/$lib")" "$debian_md5"
expect_eq "ld.so's cache resolves the SONAME to ours" \
  "$(md5_of "$(ldconfig -p | awk -v s="librte_vhost.so.$soversion" '$1 == s { print $NF; exit }')")" "$ours_md5"
restart_ovs
expect_eq "restarted ovs-vswitchd maps ours" "$(mapped_md5 "$ovs_pid")" "$ours_md5"
forward_check "$ours_md5" "rvhost"

verify_packages() {
  local out
  out=$(dpkg -V 2>&1) || true
  expect_eq "dpkg -V $1" "$out" ""
  out=$(debsums -s 2>&1) || true
  expect_eq "debsums -s $1" "$out" ""
}
verify_packages "with $pkg installed"

# --- a Debian update of librte-vhostNN -------------------------------------
log "apt-get install --reinstall $debian_pkg (what a Debian point or security update does)"
apt-get install -y --reinstall "$debian_pkg" >/build/apt-reinstall.log
expect_eq "after the reinstall $libdir/$lib is still ours" "$(md5_of "$libdir/$lib")" "$ours_md5"
expect_eq "and Debian's update went into $diverted" "$(md5_of "$diverted/$lib")" "$debian_md5"
restart_ovs
expect_eq "restarted ovs-vswitchd still maps ours" "$(mapped_md5 "$ovs_pid")" "$ours_md5"
verify_packages "after the reinstall"

# --- apt remove gives Debian's library back -----------------------------------
log "apt remove $pkg"
apt-get remove -y "$pkg" >/build/apt-remove.log
installed >/tmp/installed.removed
expect_eq "apt remove took only $pkg" "$(diff /tmp/installed.before /tmp/installed.removed | tr '\n' ' ')" ""
expect_eq "diversions left" "$(dpkg-divert --list | grep -c librte_vhost || true)" 0
expect_eq "$libdir/$lib is Debian's again" "$(md5_of "$libdir/$lib")" "$debian_md5"
expect_eq "its SONAME link is Debian's" "$(readlink "$libdir/librte_vhost.so.$soversion")" "$lib"
[ ! -e "$diverted" ] || die "$diverted is left behind"
restart_ovs
expect_eq "restarted ovs-vswitchd maps Debian's library again" "$(mapped_md5 "$ovs_pid")" "$debian_md5"
forward_check "$debian_md5" "Debian's library"
verify_packages "after the removal"

ovs-appctl -t ovs-vswitchd exit
ovs-appctl -t ovsdb-server exit
log "PASS ($((SECONDS - t0)) s in the chroot)"
