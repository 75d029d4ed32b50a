//! The virtio-net header through the C API, as DPDK 22.11 maps it: an
//! mbuf's offload request becomes the guest's header on enqueue
//! (`virtio_enqueue_offload`: GSO type, sizes, the pseudo-header checksum
//! in the packet) and the guest's header becomes the mbuf's offload flags
//! on dequeue (`vhost_dequeue_offload_legacy`, or with
//! RTE_VHOST_USER_NET_COMPLIANT_OL_FLAGS `vhost_dequeue_offload`).

mod common;

use common::net::*;
use common::rig::packet_bytes;
use rvhost::testing::ol;

// rte_vhost_driver_register flags (rte_vhost.h).
const NET_COMPLIANT_OL_FLAGS: u64 = 1 << 8;

// RTE_PTYPE_* (rte_mbuf_ptype.h).
const PTYPE_ETHER_IPV4_TCP: u32 = 0x1 | 0x10 | 0x100;
const PTYPE_ETHER_IPV6_UDP: u32 = 0x1 | 0x40 | 0x200;
const PTYPE_ETHER_IPV4: u32 = 0x1 | 0x10;

/// The pseudo-header sum DPDK writes into the L4 checksum field
/// (`rte_ipv4/6_phdr_cksum`): addresses, protocol and, unless
/// `tso`, the L4 length.
fn pseudo_header_sum(f: &[u8], v4: bool, tso: bool) -> [u8; 2] {
    let mut p = Vec::new();
    if v4 {
        p.extend_from_slice(&f[26..34]);
        p.extend_from_slice(&[0, f[23]]);
        let l4_len = u16::from_be_bytes([f[16], f[17]]) - 20;
        p.extend_from_slice(&if tso { 0 } else { l4_len }.to_be_bytes());
    } else {
        p.extend_from_slice(&f[22..54]);
        p.extend_from_slice(&[0, f[20]]);
        p.extend_from_slice(&if tso { [0, 0] } else { [f[18], f[19]] });
    }
    ones_sum(&p).to_be_bytes()
}

/// Enqueues `f` with the offload request (`flags`, l2/l3/l4 lengths,
/// segment size); returns the header and packet the guest received.
fn enqueue_offload(
    g: &mut Guest,
    f: &[u8],
    flags: u64,
    lens: (u64, u64, u64),
    tso_segsz: u64,
) -> ([u8; 12], Vec<u8>) {
    // Two buffers, each at a place of its own id's.
    for _ in 0..2 {
        let id = g.rx.next_id().expect("room on the RX ring");
        g.post_rx_buffers(0x40000 + 0x1000 * u64::from(id), 1);
    }
    let mut m = g.mbuf(f);
    m.set_ol_flags(flags);
    m.set_tx_offload(lens.0, lens.1, lens.2, tso_segsz);
    g.enqueue(m);
    g.received()
}

/// The header fields (flags, gso_type, hdr_len, gso_size, csum_start,
/// csum_offset).
fn fields(h: &[u8; 12]) -> (u8, u8, u16, u16, u16, u16) {
    let u = |i: usize| u16::from_le_bytes([h[i], h[i + 1]]);
    (h[0], h[1], u(2), u(4), u(6), u(8))
}

#[test]
fn tso_and_ufo_requests_become_the_guest_header_and_pseudo_header_checksum() {
    let mut g = Guest::connect("ol-enq", 0, OFFLOADS);

    // TSO over IPv4 with the IP checksum: GSO_TCPV4, the TCP checksum
    // implied, the pseudo-header sum (without length) in the TCP header and
    // a valid IPv4 header checksum, everything else unchanged.
    let f = frame(true, TCP, 20, 1900);
    let tso = ol::TX_TCP_SEG | ol::TX_IPV4 | ol::TX_IP_CKSUM;
    let (h, data) = enqueue_offload(&mut g, &f, tso, (14, 20, 20), 1448);
    assert_eq!(fields(&h), (NEEDS_CSUM, GSO_TCPV4, 54, 1448, 34, 16));
    assert_eq!(data.len(), f.len());
    assert_eq!(ones_sum(&data[14..34]), 0xffff, "IPv4 header checksum computed");
    assert_eq!(data[50..52], pseudo_header_sum(&f, true, true), "TCP pseudo-header checksum, no length");
    let mut expect = f.clone();
    expect[24..26].copy_from_slice(&data[24..26]);
    expect[50..52].copy_from_slice(&data[50..52]);
    assert!(data == expect, "payload unchanged");

    // TSO over IPv6 without an L4 flag: GSO_TCPV6, TCP checksum implied.
    let f = frame(false, TCP, 32, 1900);
    let (h, data) = enqueue_offload(&mut g, &f, ol::TX_TCP_SEG | ol::TX_IPV6, (14, 40, 32), 1440);
    assert_eq!(fields(&h), (NEEDS_CSUM, GSO_TCPV6, 86, 1440, 54, 16));
    assert_eq!(data[70..72], pseudo_header_sum(&f, false, true));

    // UFO over IPv6 with the UDP checksum: GSO_UDP (22.11 knows no
    // GSO_UDP_L4), hdr_len from l4_len, the pseudo-header sum with length.
    let f = frame(false, UDP, 8, 1900);
    let ufo = ol::TX_UDP_SEG | ol::TX_IPV6 | ol::TX_UDP_CKSUM;
    let (h, data) = enqueue_offload(&mut g, &f, ufo, (14, 40, 8), 1400);
    assert_eq!(fields(&h), (NEEDS_CSUM, GSO_UDP, 62, 1400, 54, 6));
    assert_eq!(data[60..62], pseudo_header_sum(&f, false, false), "UDP pseudo-header checksum, with length");

    // UFO alone implies no checksum (DPDK adds TCP_CKSUM for TSO only).
    let f = frame(true, UDP, 8, 1900);
    let (h, data) = enqueue_offload(&mut g, &f, ol::TX_UDP_SEG | ol::TX_IPV4, (14, 20, 8), 1400);
    assert_eq!(fields(&h), (0, GSO_UDP, 42, 1400, 0, 0));
    assert!(data == f, "packet untouched");

    // A plain TCP checksum request: NEEDS_CSUM, no GSO, pseudo-header with
    // the L4 length.
    let f = frame(true, TCP, 20, 6);
    let (h, data) = enqueue_offload(&mut g, &f, ol::TX_TCP_CKSUM | ol::TX_IPV4, (14, 20, 20), 0);
    assert_eq!(fields(&h), (NEEDS_CSUM, 0, 0, 0, 34, 16));
    assert_eq!(data[50..52], pseudo_header_sum(&f, true, false));
    assert_eq!(u16::from_le_bytes([h[10], h[11]]), 1, "num_buffers");
}

#[test]
fn guest_gso_and_checksum_headers_become_legacy_tx_offloads() {
    let mut g = Guest::connect("ol-deq", 0, OFFLOADS);
    // (header, frame, ol_flags, l2, l3, l4, tso_segsz) as
    // vhost_dequeue_offload_legacy sets them.
    let cases = [
        (
            net_hdr(NEEDS_CSUM, GSO_TCPV4, 66, 1448, 34, 16),
            frame(true, TCP, 32, 3000),
            ol::TX_IPV4 | ol::TX_TCP_CKSUM | ol::TX_TCP_SEG,
            (14, 20, 32, 1448),
        ),
        (
            net_hdr(NEEDS_CSUM, GSO_TCPV6, 74, 1440, 54, 16),
            frame(false, TCP, 20, 3000),
            ol::TX_IPV6 | ol::TX_TCP_CKSUM | ol::TX_TCP_SEG,
            (14, 40, 20, 1440),
        ),
        (
            net_hdr(0, GSO_UDP, 42, 1400, 0, 0),
            frame(true, UDP, 8, 3000),
            ol::TX_IPV4 | ol::TX_UDP_SEG,
            (14, 20, 8, 1400),
        ),
        (
            net_hdr(NEEDS_CSUM, 0, 0, 0, 34, 6),
            frame(true, UDP, 8, 100),
            ol::TX_IPV4 | ol::TX_UDP_CKSUM,
            (14, 20, 0, 0),
        ),
        // A GSO type that does not match the packet: everything reset.
        (net_hdr(0, GSO_TCPV4, 42, 1400, 0, 0), frame(true, UDP, 8, 3000), 0, (0, 0, 0, 0)),
    ];
    for (k, (h, f, flags, (l2, l3, l4, seg))) in cases.into_iter().enumerate() {
        let m = g.send_from_guest(h, &f, 2000);
        let t = m.tx_offload();
        assert_eq!(m.ol_flags(), flags, "case {k}: ol_flags");
        assert_eq!(
            (t.l2_len(), t.l3_len(), t.l4_len(), t.tso_segsz()),
            (l2, l3, l4, seg),
            "case {k}: lengths"
        );
        assert!(packet_bytes(&m) == f, "case {k}: payload");
        m.free();
    }
}

#[test]
fn guest_gso_and_checksum_headers_become_compliant_rx_flags() {
    let mut g = Guest::connect("ol-cmp", NET_COMPLIANT_OL_FLAGS, OFFLOADS);
    // (header, frame, ol_flags, tso_segsz, packet_type) as
    // vhost_dequeue_offload sets them; l2/l3/l4 lengths stay 0.
    let lro = ol::RX_LRO | ol::RX_L4_CKSUM_NONE;
    let cases = [
        (
            net_hdr(NEEDS_CSUM, GSO_TCPV4, 54, 1448, 34, 16),
            frame(true, TCP, 20, 3000),
            lro,
            1448,
            PTYPE_ETHER_IPV4_TCP,
        ),
        (net_hdr(0, GSO_UDP, 62, 1400, 0, 0), frame(false, UDP, 8, 3000), lro, 1400, PTYPE_ETHER_IPV6_UDP),
        (
            net_hdr(NEEDS_CSUM, 0, 0, 0, 34, 16),
            frame(true, TCP, 20, 100),
            ol::RX_L4_CKSUM_NONE,
            0,
            PTYPE_ETHER_IPV4_TCP,
        ),
        // DATA_VALID means nothing from a driver on transmit.
        (net_hdr(DATA_VALID, 0, 0, 0, 0, 0), frame(true, TCP, 20, 100), 0, 0, PTYPE_ETHER_IPV4_TCP),
        // A GSO type that does not match the packet: not LRO.
        (net_hdr(0, GSO_TCPV4, 42, 1400, 0, 0), frame(true, UDP, 8, 3000), 0, 0, PTYPE_ETHER_IPV4 | 0x200),
    ];
    for (k, (h, f, flags, seg, ptype)) in cases.into_iter().enumerate() {
        let m = g.send_from_guest(h, &f, 2000);
        let t = m.tx_offload();
        assert_eq!(m.ol_flags(), flags, "case {k}: ol_flags");
        assert_eq!(
            (t.tso_segsz(), t.l2_len(), t.l3_len(), t.l4_len()),
            (seg, 0, 0, 0),
            "case {k}: tx_offload"
        );
        assert_eq!(m.packet_type(), ptype, "case {k}: packet_type");
        assert!(packet_bytes(&m) == f, "case {k}: payload");
        m.free();
    }

    // A checksum request for an L4 protocol rte_net_get_ptype does not know
    // is done in software: afterwards the L4 part sums to 0xffff.
    let f = frame(true, 253, 8, 500);
    let m = g.send_from_guest(net_hdr(NEEDS_CSUM, 0, 0, 0, 34, 6), &f, 2000);
    assert_eq!((m.ol_flags(), m.packet_type()), (0, PTYPE_ETHER_IPV4));
    let data = packet_bytes(&m);
    assert_ne!(data[40..42], [0, 0], "checksum written at csum_start + csum_offset");
    assert_eq!(ones_sum(&data[34..]), 0xffff, "a valid checksum over the L4 part");
    assert!(data[..40] == f[..40] && data[42..] == f[42..], "nothing else changed");
    m.free();
}
