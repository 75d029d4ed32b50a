#!/bin/bash
# rvhost-e2e: timeout=2400
# Debian testing (forky): DPDK 25.11, librte_vhost.so.26, QEMU and OVS of
# forky. The checks of tests/e2e/debian13.sh that differ by release: the
# ABI (symbols and versions against Debian's .so.26, layouts against
# 25.11's headers, consumers, DPDK 25.11's examples built on ours), the C
# tests on ours (vhost-user API, async/DMA, vhost-crypto with RSA), a QEMU
# guest pinging testpmd, and a vIOMMU guest whose rings lie on scattered
# guest pages. The datapath, OVS and migration checks run the same code as
# in the trixie suite and are left to `debian13.sh --full` with
# RVHOST_DEBIAN=forky, by hand, for CI's time (this subset: about 6 min
# with a cached chroot, 5 more to make it).
# usage: tests/e2e/debian-forky.sh [HOST_BUILDDIR (unused)]
exec env RVHOST_DEBIAN=forky bash "$(dirname "$0")/debian13.sh" "$@" \
  "--only=ABI,C tests: ours,QEMU guest pings,scattered"
