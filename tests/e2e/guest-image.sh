#!/bin/bash
# rvhost-e2e: helper (used by qemu_guest.py, migration.py, viommu.py, vhost_blk.py; not a test of its own)
# Builds a tiny Linux guest for the QEMU tests: Debian's kernel and a busybox
# initramfs.
#   guest-image.sh          initrd.gz: loads the virtio-net driver, configures
#                           10.0.0.2/24, pings 10.0.0.1 (testpmd's icmpecho
#                           behind the vhost-user port) and powers off.
#   guest-image.sh stream   initrd-stream.gz: the same drivers plus rvstream
#                           (guest/rvstream.c, built static here); its init
#                           reads rvmode= etc. from the kernel command line
#                           (see the init below) and keeps running.
#   guest-image.sh blk      initrd-blk.gz: the virtio-blk driver; rvblk=write
#                           writes 1 MiB of random data at 4000 KiB into
#                           /dev/vda and prints its md5, then (both modes)
#                           reads that range back from the device, prints
#                           its md5 and powers off.
# Intel IOMMU, PCIe ports and ATS are built into Debian's kernel
# (CONFIG_INTEL_IOMMU=y, CONFIG_PCIEPORTBUS=y, CONFIG_PCI_ATS=y): the vIOMMU
# guest needs no module beyond the virtio ones.
# Output in $GUEST_DIR: vmlinuz and initrd.gz / initrd-stream.gz (cached; the
# stream image is rebuilt when this script or rvstream.c changes).
set -euo pipefail
variant=${1:-basic}
here=$(cd "$(dirname "$0")" && pwd)
dir=${GUEST_DIR:-/var/tmp/rvhost-guest}
mkdir -p "$dir"
cd "$dir"
if [ "$variant" = stream ]; then
  stamp=$(cat "$here/guest-image.sh" "$here/guest/rvstream.c" | sha256sum | cut -c1-16)
  if [ -s vmlinuz ] && [ -s initrd-stream.gz ] && [ "$(cat initrd-stream.stamp 2>/dev/null)" = "$stamp" ]; then exit 0; fi
  [ -s vmlinuz ] && [ -s initrd.gz ] && [ -d root ] || { rm -f initrd.gz; GUEST_DIR=$dir "$here/guest-image.sh"; }
  dpkg -s gcc libc6-dev >/dev/null 2>&1 || apt-get install -y -qq gcc libc6-dev >/dev/null
  rm -rf root-stream && cp -a root root-stream
  gcc -O2 -Wall -static -o root-stream/bin/rvstream "$here/guest/rvstream.c"
  cat > root-stream/init <<'INIT'
#!/bin/busybox sh
# Kernel command line: rvmode=stream|ping (default stream), rvq=N (combined
# channels to set), rvpps=, rvhold=, rvndst= (rvstream stream options),
# rvping=N (pings per destination in ping mode).
/bin/busybox --install -s /bin
mount -t proc proc /proc; mount -t sysfs sys /sys; mount -t devtmpfs dev /dev; mkdir -p /tmp
mode=stream q= pps=200 hold=1500 ndst=1 nping=10
for w in $(cat /proc/cmdline); do
  case $w in
    rvmode=*) mode=${w#*=};; rvq=*) q=${w#*=};; rvpps=*) pps=${w#*=};;
    rvhold=*) hold=${w#*=};; rvndst=*) ndst=${w#*=};; rvping=*) nping=${w#*=};;
  esac
done
for m in virtio_ring virtio virtio_pci_modern_dev virtio_pci_legacy_dev virtio_pci failover net_failover virtio_net; do
  insmod /mod/$m.ko
done
sleep 1
[ -n "$q" ] && rvstream channels eth0 "$q"
ip link set eth0 up && ip addr add 10.0.0.2/24 dev eth0
echo "GUEST: eth0 up, $(nproc) CPUs, $(ls -d /sys/class/net/eth0/queues/rx-* | wc -l) rx queues, iommu groups: $(ls /sys/kernel/iommu_groups 2>/dev/null | wc -l)$(dmesg | grep -q 'DMAR: IOMMU enabled' && echo ', DMAR: IOMMU enabled')"
if [ "$mode" = ping ]; then
  # One flow per destination (icmpecho answers any address), the i-th on
  # CPU i modulo the CPU count: with as many CPUs as queues, virtio-net's
  # XPS map sends each CPU's packets on its own transmit queue.
  i=0 ncpu=$(nproc)
  for d in 1 3 4 5; do
    [ $i -ge "$ndst" ] && break
    taskset -c $((i % ncpu)) ping -c "$nping" -i 0.2 -W 2 10.0.0.$d > /tmp/ping$d.txt 2>&1 &
    i=$((i + 1))
  done
  wait
  for d in 1 3 4 5; do
    [ -e /tmp/ping$d.txt ] && echo "GUEST-PING 10.0.0.$d: $(grep 'packets transmitted' /tmp/ping$d.txt)"
  done
  ping -c 3 -s 1400 -W 2 10.0.0.1 > /tmp/pingl.txt 2>&1
  echo "GUEST-PING-LARGE: $(grep 'packets transmitted' /tmp/pingl.txt)"
  echo "GUEST: done"
  poweroff -f
fi
# stream: pings in the background, rvstream in the foreground, forever.
(while :; do
  echo "GUEST-PING: $(ping -c 4 -i 0.5 -W 2 10.0.0.1 2>&1 | grep 'packets transmitted')"
  sleep 1
done) &
exec rvstream stream -p "$pps" -H "$hold" -n "$ndst"
INIT
  chmod +x root-stream/init
  (cd root-stream && find . | cpio -o -H newc --quiet | gzip -1) > initrd-stream.gz.tmp
  mv initrd-stream.gz.tmp initrd-stream.gz
  echo "$stamp" > initrd-stream.stamp
  echo "stream guest image in $dir"
  exit 0
fi
if [ "$variant" = blk ]; then
  stamp=$(sha256sum < "$here/guest-image.sh" | cut -c1-16)
  if [ -s vmlinuz ] && [ -s initrd-blk.gz ] && [ "$(cat initrd-blk.stamp 2>/dev/null)" = "$stamp" ]; then exit 0; fi
  [ -s vmlinuz ] && [ -s initrd.gz ] && [ -d root ] && [ -d kernel ] || { rm -f initrd.gz; GUEST_DIR=$dir "$here/guest-image.sh"; }
  rm -rf root-blk && cp -a root root-blk
  cp kernel/lib/modules/*/kernel/drivers/block/virtio_blk.ko root-blk/mod/
  cat > root-blk/init <<'INIT'
#!/bin/busybox sh
/bin/busybox --install -s /bin
mount -t proc proc /proc; mount -t sysfs sys /sys; mount -t devtmpfs dev /dev; mkdir -p /tmp
for m in virtio_ring virtio virtio_pci_modern_dev virtio_pci_legacy_dev virtio_pci virtio_blk; do
  insmod /mod/$m.ko
done
mode=check
for w in $(cat /proc/cmdline); do case $w in rvblk=*) mode=${w#*=};; esac; done
for i in 1 2 3 4 5 6 7 8 9 10; do [ -b /dev/vda ] && break; sleep 1; done
echo "GUEST-BLK-SIZE: $(cat /sys/block/vda/size 2>/dev/null || echo none) sectors"
if [ "$mode" = write ]; then
  dd if=/dev/urandom of=/tmp/pattern bs=4096 count=256 2>/dev/null
  echo "GUEST-BLK-WROTE: $(md5sum < /tmp/pattern | cut -c1-32)"
  dd if=/tmp/pattern of=/dev/vda bs=4096 seek=1000 conv=fsync 2>/dev/null || echo "GUEST-BLK: write failed"
fi
# Read from the device, not the page cache.
blockdev --flushbufs /dev/vda; echo 3 > /proc/sys/vm/drop_caches
echo "GUEST-BLK-READ: $(dd if=/dev/vda bs=4096 skip=1000 count=256 2>/dev/null | md5sum | cut -c1-32)"
poweroff -f
INIT
  chmod +x root-blk/init
  (cd root-blk && find . | cpio -o -H newc --quiet | gzip -1) > initrd-blk.gz.tmp
  mv initrd-blk.gz.tmp initrd-blk.gz
  echo "$stamp" > initrd-blk.stamp
  echo "blk guest image in $dir"
  exit 0
fi
if [ -s vmlinuz ] && [ -s initrd.gz ]; then exit 0; fi
export DEBIAN_FRONTEND=noninteractive
dpkg -s qemu-system-x86 busybox-static cpio >/dev/null 2>&1 || apt-get install -y -qq qemu-system-x86 busybox-static cpio >/dev/null
pkg=$(apt-cache depends linux-image-amd64 | awk '/Depends: linux-image-[0-9]/ {print $2; exit}')
ls "$pkg"_*.deb >/dev/null 2>&1 || apt-get download -qq "$pkg" 2>/dev/null
rm -rf kernel root && mkdir kernel root
dpkg -x "$pkg"_*.deb kernel
cp kernel/boot/vmlinuz-* vmlinuz
mods=$(ls -d kernel/lib/modules/*)
mkdir -p root/bin root/mod root/proc root/sys root/dev
cp /bin/busybox root/bin/
for m in drivers/virtio/virtio.ko drivers/virtio/virtio_ring.ko drivers/virtio/virtio_pci_modern_dev.ko \
         drivers/virtio/virtio_pci_legacy_dev.ko drivers/virtio/virtio_pci.ko net/core/failover.ko \
         drivers/net/net_failover.ko drivers/net/virtio_net.ko; do
  cp "$mods/kernel/$m" root/mod/
done
cat > root/init <<'INIT'
#!/bin/busybox sh
/bin/busybox --install -s /bin
mount -t proc proc /proc; mount -t sysfs sys /sys; mount -t devtmpfs dev /dev; mkdir -p /tmp
for m in virtio_ring virtio virtio_pci_modern_dev virtio_pci_legacy_dev virtio_pci failover net_failover virtio_net; do
  insmod /mod/$m.ko
done
sleep 1
ip link set eth0 up && ip addr add 10.0.0.2/24 dev eth0
echo "GUEST: eth0 up"
ping -c 10 -W 2 10.0.0.1 > /tmp/ping.txt 2>&1
echo "GUEST-PING: $(grep 'packets transmitted' /tmp/ping.txt)"
# A near-MTU payload (icmpecho does not reassemble fragments).
ping -c 3 -s 1400 -W 2 10.0.0.1 > /tmp/ping2.txt 2>&1
echo "GUEST-PING-LARGE: $(grep 'packets transmitted' /tmp/ping2.txt)"
poweroff -f
INIT
chmod +x root/init
(cd root && find . | cpio -o -H newc --quiet | gzip -1) > initrd.gz.tmp
mv initrd.gz.tmp initrd.gz
echo "guest image in $dir"
