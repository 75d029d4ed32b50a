#!/bin/bash
# rvhost-e2e: helper (used by qemu_guest.py; not a test of its own)
# Builds a tiny Linux guest for the QEMU test: Debian's kernel and a busybox
# initramfs that loads the virtio-net driver, configures 10.0.0.2/24 and pings
# 10.0.0.1 (testpmd's icmpecho behind the vhost-user port).
# Output: $GUEST_DIR/vmlinuz and $GUEST_DIR/initrd.gz (cached).
set -euo pipefail
dir=${GUEST_DIR:-/var/tmp/rvhost-guest}
mkdir -p "$dir"
cd "$dir"
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
