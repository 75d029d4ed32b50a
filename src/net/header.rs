//! The virtio-net header in front of every packet, and its mapping to and
//! from mbuf offload flags (checksum, TSO/UFO).

use crate::dpdk::mbuf::{ol, ptype, HdrLens, Mbuf};

pub const F_NEEDS_CSUM: u8 = 1;
#[cfg(test)]
pub const F_DATA_VALID: u8 = 2;
pub const GSO_NONE: u8 = 0;
pub const GSO_TCPV4: u8 = 1;
pub const GSO_UDP: u8 = 3;
pub const GSO_TCPV6: u8 = 4;
pub const GSO_ECN: u8 = 0x80;

/// `struct virtio_net_hdr_mrg_rxbuf` (12 bytes; the legacy header is the
/// first 10).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct NetHdr {
    pub flags: u8,
    pub gso_type: u8,
    pub hdr_len: u16,
    pub gso_size: u16,
    pub csum_start: u16,
    pub csum_offset: u16,
    pub num_buffers: u16,
}

impl NetHdr {
    /// The header as the little-endian integer whose first 12 bytes are its
    /// wire form: built and written from registers (a byte array on the
    /// stack read back wider than it was written stalls on store forwarding).
    #[inline]
    pub fn to_le(self) -> u128 {
        u128::from(self.flags)
            | u128::from(self.gso_type) << 8
            | u128::from(self.hdr_len) << 16
            | u128::from(self.gso_size) << 32
            | u128::from(self.csum_start) << 48
            | u128::from(self.csum_offset) << 64
            | u128::from(self.num_buffers) << 80
    }

    /// The header whose wire form is the low 12 bytes of `v` (little-endian).
    #[inline]
    pub fn from_le(v: u128) -> NetHdr {
        let u16_at = |byte: u32| (v >> (8 * byte)) as u16;
        NetHdr {
            flags: v as u8,
            gso_type: (v >> 8) as u8,
            hdr_len: u16_at(2),
            gso_size: u16_at(4),
            csum_start: u16_at(6),
            csum_offset: u16_at(8),
            num_buffers: u16_at(10),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.flags == 0 && self.gso_type == GSO_NONE
    }
}

/// Header for a packet going to the guest (DPDK's `virtio_enqueue_offload`):
/// the requested L4 checksum (TSO implies the TCP one) and segmentation
/// offloads. Like DPDK it prepares the packet itself: the pseudo-header
/// checksum goes into the L4 checksum field (`rte_net_intel_cksum_prepare`)
/// and a requested IPv4 header checksum is computed, so `m` is written.
/// Returned in wire form (`NetHdr::to_le`) with `num_buffers` set: for a
/// plain packet, the usual case, that is a constant.
#[inline]
pub fn wire_header_for(m: &mut Mbuf, num_buffers: u16) -> u128 {
    let f = m.ol_flags();
    if f & (ol::TX_L4_MASK | ol::TX_TCP_SEG | ol::TX_UDP_SEG | ol::TX_IP_CKSUM) == 0 {
        return NetHdr { num_buffers, ..NetHdr::default() }.to_le();
    }
    NetHdr { num_buffers, ..offload_header(m, f) }.to_le()
}

/// `wire_header_for` for a packet with offload requests (kept out of line so the
/// plain packet's path stays short).
#[inline(never)]
fn offload_header(m: &mut Mbuf, f: u64) -> NetHdr {
    let mut h = NetHdr::default();
    let t = m.tx_offload();
    let (l2l3, l4) = ((t.l2_len() + t.l3_len()) as u16, t.l4_len() as u16);
    let tso_segsz = t.tso_segsz() as u16;
    let mut csum_l4 = f & ol::TX_L4_MASK;
    if f & ol::TX_TCP_SEG != 0 {
        csum_l4 |= ol::TX_TCP_CKSUM;
    }
    if csum_l4 != 0 {
        // As DPDK, a failure (headers not in the first segment) is not
        // propagated: the guest would drop the packet.
        m.cksum_prepare();
        h.flags = F_NEEDS_CSUM;
        h.csum_start = l2l3;
        h.csum_offset = match csum_l4 {
            ol::TX_TCP_CKSUM => 16,
            ol::TX_UDP_CKSUM => 6,
            _ => 8, // SCTP
        };
    }
    if f & ol::TX_IP_CKSUM != 0 {
        m.fill_ipv4_cksum();
    }
    if f & ol::TX_TCP_SEG != 0 {
        h.gso_type = if f & ol::TX_IPV4 != 0 { GSO_TCPV4 } else { GSO_TCPV6 };
    } else if f & ol::TX_UDP_SEG != 0 {
        h.gso_type = GSO_UDP;
    }
    if h.gso_type != GSO_NONE {
        h.gso_size = tso_segsz;
        h.hdr_len = l2l3 + l4;
    }
    h
}

/// What the legacy dequeue offload sets on the mbuf: Tx flags and the
/// `tx_offload` lengths.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TxOffload {
    pub flags: u64,
    pub l2_len: u16,
    pub l3_len: u16,
    pub l4_len: u16,
    pub tso_segsz: u16,
}

const ETHER_TYPE_VLAN: u16 = 0x8100;
const ETHER_TYPE_IPV4: u16 = 0x0800;
const ETHER_TYPE_IPV6: u16 = 0x86dd;
const IPPROTO_TCP: u8 = 6;
const IPPROTO_UDP: u8 = 17;
const IPPROTO_SCTP: u8 = 132;

/// DPDK's `parse_headers` over the first segment's data: Ethernet (one VLAN
/// tag at most), IPv4 or IPv6, and a TCP, UDP or SCTP header that fits.
/// Returns the lengths and IP version flag, and the L4 protocol.
fn parse_headers(data: &[u8]) -> Option<(TxOffload, u8)> {
    let be16 = |at: usize| Some(u16::from_be_bytes([*data.get(at)?, *data.get(at + 1)?]));
    let mut o = TxOffload { l2_len: 14, ..TxOffload::default() };
    let mut ethertype = be16(12)?;
    if ethertype == ETHER_TYPE_VLAN {
        ethertype = be16(16)?;
        o.l2_len += 4;
    }
    let l2 = usize::from(o.l2_len);
    let proto = match ethertype {
        ETHER_TYPE_IPV4 if data.len() >= l2 + 20 => {
            o.l3_len = u16::from(data[l2] & 0x0f) * 4;
            o.flags = ol::TX_IPV4;
            data[l2 + 9]
        }
        ETHER_TYPE_IPV6 if data.len() >= l2 + 40 => {
            o.l3_len = 40;
            o.flags = ol::TX_IPV6;
            data[l2 + 6]
        }
        _ => return None,
    };
    let l4_min = match proto {
        IPPROTO_TCP => 20,
        IPPROTO_UDP => 8,
        IPPROTO_SCTP => 12,
        _ => return None,
    };
    (data.len() >= l2 + usize::from(o.l3_len) + l4_min).then_some((o, proto))
}

/// DPDK's `vhost_dequeue_offload_legacy`: a guest header asking for a
/// checksum or segmentation becomes the matching Tx offload request for the
/// next hop. `None` where DPDK resets the mbuf's offload fields (headers it
/// cannot parse, a request that does not match them, an unknown GSO type).
pub fn legacy_offload(h: &NetHdr, data: &[u8]) -> Option<TxOffload> {
    let (mut o, proto) = parse_headers(data)?;
    let l4_off = usize::from(o.l2_len + o.l3_len);
    if h.flags == F_NEEDS_CSUM {
        if h.csum_start != o.l2_len + o.l3_len {
            return None;
        }
        o.flags |= match (h.csum_offset, proto) {
            (16, IPPROTO_TCP) => ol::TX_TCP_CKSUM,
            (6, IPPROTO_UDP) => ol::TX_UDP_CKSUM,
            (8, IPPROTO_SCTP) => ol::TX_SCTP_CKSUM,
            _ => return None,
        };
    }
    if h.gso_type != GSO_NONE {
        if h.gso_size == 0 {
            return None;
        }
        match (h.gso_type & !GSO_ECN, proto) {
            (GSO_TCPV4 | GSO_TCPV6, IPPROTO_TCP) => {
                let tcp_len = u16::from(data[l4_off + 12] & 0xf0) >> 2;
                if data.len() < l4_off + usize::from(tcp_len) {
                    return None;
                }
                o.flags |= ol::TX_TCP_SEG;
                o.l4_len = tcp_len;
            }
            (GSO_UDP, IPPROTO_UDP) => {
                o.flags |= ol::TX_UDP_SEG;
                o.l4_len = 8;
            }
            _ => return None,
        }
        o.tso_segsz = h.gso_size;
    }
    Some(o)
}

/// What the compliant dequeue offload reports on the mbuf.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RxOffload {
    pub flags: u64,
    pub tso_segsz: Option<u16>,
    /// (csum_start, csum_offset) of a checksum to compute in software.
    pub sw_cksum: Option<(u16, u16)>,
}

/// DPDK's `vhost_dequeue_offload` (compliant flags), given the packet type
/// and header lengths `rte_net_get_ptype` found: a checksum the guest left
/// to the device is reported as not computed (`RX_L4_CKSUM_NONE`) or, for a
/// protocol or offset it does not know, done in software; a GSO packet is
/// reported as LRO with its segment size. DATA_VALID is ignored (a driver
/// must not set it on transmit).
pub fn compliant_offload(h: &NetHdr, packet_type: u32, lens: &HdrLens, pkt_len: u32) -> RxOffload {
    let mut o = RxOffload::default();
    let l4 = packet_type & ptype::L4_MASK;
    if h.flags & F_NEEDS_CSUM != 0 {
        let hdrlen = u32::from(lens.l2_len) + u32::from(lens.l3_len) + u32::from(lens.l4_len);
        if u32::from(h.csum_start) <= hdrlen && matches!(l4, ptype::L4_TCP | ptype::L4_UDP | ptype::L4_SCTP) {
            o.flags |= ol::RX_L4_CKSUM_NONE;
        } else if u32::from(h.csum_start) >= pkt_len {
            return o;
        } else {
            o.sw_cksum = Some((h.csum_start, h.csum_offset));
        }
    }
    if h.gso_type != GSO_NONE && h.gso_size != 0 {
        let expected = match h.gso_type & !GSO_ECN {
            GSO_TCPV4 | GSO_TCPV6 => ptype::L4_TCP,
            GSO_UDP => ptype::L4_UDP,
            _ => return o,
        };
        if l4 == expected {
            o.flags |= ol::RX_LRO | ol::RX_L4_CKSUM_NONE;
            o.tso_segsz = Some(h.gso_size);
        }
    }
    o
}

/// Applies a header from the guest to a dequeued mbuf (DPDK's
/// `vhost_dequeue_offload`): the legacy behaviour sets Tx offload flags for
/// the next hop; the compliant one reports Rx flags and the packet type.
/// Only called when a host offload feature was negotiated, as in DPDK.
pub fn apply_to_mbuf(h: &NetHdr, m: &mut Mbuf, compliant: bool) {
    if h.is_empty() {
        return;
    }
    if !compliant {
        // DPDK resets ol_flags to 0 where this yields None; the mbuf's flags
        // are left as they were instead (0, or RTE_MBUF_F_EXTERNAL on an
        // external buffer, which must survive for the buffer to be freed).
        if let Some(o) = legacy_offload(h, m.data()) {
            m.set_ol_flags(m.ol_flags() | o.flags);
            m.set_tx_offload(o.l2_len.into(), o.l3_len.into(), o.l4_len.into(), o.tso_segsz.into());
        }
        return;
    }
    let (ptype, lens) = m.parse_ptype();
    m.set_packet_type(ptype);
    let o = compliant_offload(h, ptype, &lens, m.pkt_len());
    if let Some((start, offset)) = o.sw_cksum {
        let Some(sum) = m.raw_cksum(u32::from(start), m.pkt_len() - u32::from(start)) else { return };
        let cksum = if sum == 0xffff { sum } else { !sum };
        // DPDK writes when one byte of the field is in the first segment;
        // here both must be.
        let at = usize::from(start) + usize::from(offset);
        if let Some(field) = m.data_mut().get_mut(at..at + 2) {
            field.copy_from_slice(&cksum.to_ne_bytes());
        }
    }
    m.set_ol_flags(m.ol_flags() | o.flags);
    if let Some(seg) = o.tso_segsz {
        m.set_tso_segsz(seg);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Ethernet (optionally one tag of `vlan` ethertype) + IPv4 (20 bytes) or
    /// IPv6 + an L4 header of `l4_len` bytes of protocol `proto`, then 100
    /// bytes of payload.
    fn frame(vlan: Option<u16>, v4: bool, proto: u8, l4_len: usize) -> Vec<u8> {
        let mut f = vec![0u8; 12];
        if let Some(tpid) = vlan {
            f.extend_from_slice(&tpid.to_be_bytes());
            f.extend_from_slice(&[0, 1]);
        }
        if v4 {
            f.extend_from_slice(&ETHER_TYPE_IPV4.to_be_bytes());
            let mut ip = [0u8; 20];
            ip[0] = 0x45;
            ip[9] = proto;
            f.extend_from_slice(&ip);
        } else {
            f.extend_from_slice(&ETHER_TYPE_IPV6.to_be_bytes());
            let mut ip = [0u8; 40];
            ip[0] = 0x60;
            ip[6] = proto;
            f.extend_from_slice(&ip);
        }
        let mut l4 = vec![0u8; l4_len];
        if proto == IPPROTO_TCP {
            l4[12] = ((l4_len / 4) as u8) << 4;
        }
        f.extend_from_slice(&l4);
        f.extend_from_slice(&[0xaa; 100]);
        f
    }

    fn hdr(flags: u8, gso_type: u8, gso_size: u16, csum_start: u16, csum_offset: u16) -> NetHdr {
        NetHdr { flags, gso_type, gso_size, csum_start, csum_offset, ..NetHdr::default() }
    }

    fn tx(flags: u64, l2_len: u16, l3_len: u16, l4_len: u16, tso_segsz: u16) -> Option<TxOffload> {
        Some(TxOffload { flags, l2_len, l3_len, l4_len, tso_segsz })
    }

    #[test]
    fn legacy_checksum_request_becomes_tx_checksum_flags() {
        let tcp4 = frame(None, true, IPPROTO_TCP, 20);
        let h = hdr(F_NEEDS_CSUM, GSO_NONE, 0, 34, 16);
        assert_eq!(legacy_offload(&h, &tcp4), tx(ol::TX_IPV4 | ol::TX_TCP_CKSUM, 14, 20, 0, 0));
        let udp6 = frame(None, false, IPPROTO_UDP, 8);
        let h = hdr(F_NEEDS_CSUM, GSO_NONE, 0, 54, 6);
        assert_eq!(legacy_offload(&h, &udp6), tx(ol::TX_IPV6 | ol::TX_UDP_CKSUM, 14, 40, 0, 0));
        let sctp4 = frame(Some(ETHER_TYPE_VLAN), true, IPPROTO_SCTP, 12);
        let h = hdr(F_NEEDS_CSUM, GSO_NONE, 0, 38, 8);
        assert_eq!(legacy_offload(&h, &sctp4), tx(ol::TX_IPV4 | ol::TX_SCTP_CKSUM, 18, 20, 0, 0));
    }

    #[test]
    fn legacy_gso_becomes_tso_or_ufo_without_an_implied_checksum() {
        // A 32-byte TCP header (options): l4_len from data_off.
        let tcp4 = frame(None, true, IPPROTO_TCP, 32);
        let h = hdr(F_NEEDS_CSUM, GSO_TCPV4, 1448, 34, 16);
        let want = ol::TX_IPV4 | ol::TX_TCP_CKSUM | ol::TX_TCP_SEG;
        assert_eq!(legacy_offload(&h, &tcp4), tx(want, 14, 20, 32, 1448));
        let h = hdr(0, GSO_TCPV4 | GSO_ECN, 1000, 0, 0);
        assert_eq!(legacy_offload(&h, &tcp4), tx(ol::TX_IPV4 | ol::TX_TCP_SEG, 14, 20, 32, 1000));
        let tcp6 = frame(None, false, IPPROTO_TCP, 20);
        let h = hdr(0, GSO_TCPV6, 1440, 0, 0);
        assert_eq!(legacy_offload(&h, &tcp6), tx(ol::TX_IPV6 | ol::TX_TCP_SEG, 14, 40, 20, 1440));
        let udp4 = frame(None, true, IPPROTO_UDP, 8);
        let h = hdr(0, GSO_UDP, 1472, 0, 0);
        assert_eq!(legacy_offload(&h, &udp4), tx(ol::TX_IPV4 | ol::TX_UDP_SEG, 14, 20, 8, 1472));
    }

    #[test]
    fn legacy_flags_other_than_needs_csum_alone_still_report_l2_l3() {
        // DPDK compares flags == NEEDS_CSUM: DATA_VALID (alone or with it)
        // requests no checksum, but the parsed lengths and IP version stay.
        let tcp4 = frame(None, true, IPPROTO_TCP, 20);
        for flags in [F_DATA_VALID, F_NEEDS_CSUM | F_DATA_VALID] {
            assert_eq!(
                legacy_offload(&hdr(flags, GSO_NONE, 0, 34, 16), &tcp4),
                tx(ol::TX_IPV4, 14, 20, 0, 0)
            );
        }
    }

    #[test]
    fn legacy_requests_that_do_not_match_the_packet_reset_everything() {
        let tcp4 = frame(None, true, IPPROTO_TCP, 20);
        let udp4 = frame(None, true, IPPROTO_UDP, 8);
        let cases = [
            (hdr(F_NEEDS_CSUM, GSO_NONE, 0, 30, 16), &tcp4, "csum_start not at L4"),
            (hdr(F_NEEDS_CSUM, GSO_NONE, 0, 34, 6), &tcp4, "UDP offset on TCP"),
            (hdr(F_NEEDS_CSUM, GSO_NONE, 0, 34, 10), &tcp4, "unknown offset"),
            (hdr(0, GSO_TCPV4, 0, 0, 0), &tcp4, "gso_size 0"),
            (hdr(0, GSO_TCPV4, 1448, 0, 0), &udp4, "TSO on UDP"),
            (hdr(0, GSO_UDP, 1448, 0, 0), &tcp4, "UFO on TCP"),
            (hdr(0, 5, 1448, 0, 0), &udp4, "GSO_UDP_L4 is unknown to 22.11"),
        ];
        for (h, f, what) in cases {
            assert_eq!(legacy_offload(&h, f), None, "{what}");
        }
        let h = hdr(F_NEEDS_CSUM, GSO_NONE, 0, 34, 16);
        assert_eq!(legacy_offload(&h, &tcp4[..14 + 20 + 19]), None, "TCP header cut short");
        let mut long_tcp = tcp4.clone();
        long_tcp[34 + 12] = 15 << 4; // 60-byte header claimed, 20 + payload present
        assert_eq!(legacy_offload(&hdr(0, GSO_TCPV4, 1448, 0, 0), &long_tcp[..34 + 40]), None);
        // Only one 802.1Q tag is parsed; QinQ (0x88a8) is not.
        let qinq = frame(Some(0x88a8), true, IPPROTO_TCP, 20);
        assert_eq!(legacy_offload(&hdr(F_NEEDS_CSUM, GSO_NONE, 0, 38, 16), &qinq), None);
        let arp = {
            let mut f = tcp4.clone();
            f[12..14].copy_from_slice(&0x0806u16.to_be_bytes());
            f
        };
        assert_eq!(legacy_offload(&hdr(F_NEEDS_CSUM, GSO_NONE, 0, 34, 16), &arp), None);
    }

    fn lens(l2: u8, l3: u16, l4: u8) -> HdrLens {
        HdrLens { l2_len: l2, l3_len: l3, l4_len: l4, ..HdrLens::default() }
    }

    #[test]
    fn compliant_checksum_request_is_reported_or_done_in_software() {
        let tcp = ptype::L4_TCP | 0x11; // L2 ether, L3 IPv4
        let h = hdr(F_NEEDS_CSUM, GSO_NONE, 0, 34, 16);
        let none = RxOffload { flags: ol::RX_L4_CKSUM_NONE, ..RxOffload::default() };
        assert_eq!(compliant_offload(&h, tcp, &lens(14, 20, 20), 154), none);
        // Not a known L4 (or csum_start past the headers): software checksum.
        let sw = RxOffload { sw_cksum: Some((34, 16)), ..RxOffload::default() };
        assert_eq!(compliant_offload(&h, 0x11, &lens(14, 20, 0), 154), sw);
        let far = hdr(F_NEEDS_CSUM, GSO_NONE, 0, 60, 16);
        let sw = RxOffload { sw_cksum: Some((60, 16)), ..RxOffload::default() };
        assert_eq!(compliant_offload(&far, tcp, &lens(14, 20, 20), 154), sw);
        // DATA_VALID means nothing on transmit.
        assert_eq!(
            compliant_offload(&hdr(F_DATA_VALID, GSO_NONE, 0, 0, 0), tcp, &lens(14, 20, 20), 154),
            RxOffload::default()
        );
    }

    #[test]
    fn compliant_gso_is_reported_as_lro_when_the_l4_matches() {
        let tcp = ptype::L4_TCP | 0x11;
        let udp = ptype::L4_UDP | 0x11;
        let lro = |seg| RxOffload {
            flags: ol::RX_LRO | ol::RX_L4_CKSUM_NONE,
            tso_segsz: Some(seg),
            sw_cksum: None,
        };
        for gso in [GSO_TCPV4, GSO_TCPV6, GSO_TCPV4 | GSO_ECN] {
            assert_eq!(
                compliant_offload(&hdr(F_NEEDS_CSUM, gso, 1448, 34, 16), tcp, &lens(14, 20, 20), 3000),
                lro(1448)
            );
        }
        assert_eq!(compliant_offload(&hdr(0, GSO_UDP, 1472, 0, 0), udp, &lens(14, 20, 8), 3000), lro(1472));
        for (h, pt) in [
            (hdr(0, GSO_TCPV4, 1448, 0, 0), udp),
            (hdr(0, GSO_UDP, 1448, 0, 0), tcp),
            (hdr(0, GSO_TCPV4, 0, 0, 0), tcp),
            (hdr(0, 5, 1448, 0, 0), udp),
        ] {
            assert_eq!(compliant_offload(&h, pt, &lens(14, 20, 20), 3000), RxOffload::default(), "{h:?}");
        }
        // A checksum start beyond the packet ends the processing: no LRO.
        let past = hdr(F_NEEDS_CSUM, GSO_TCPV4, 1448, 4000, 16);
        assert_eq!(compliant_offload(&past, 0x11, &lens(14, 20, 0), 3000), RxOffload::default());
    }

    #[test]
    fn wire_form_is_the_little_endian_struct() {
        let h = NetHdr {
            flags: F_NEEDS_CSUM,
            gso_type: GSO_TCPV4,
            hdr_len: 0x3412,
            gso_size: 0x5aa5,
            csum_start: 34,
            csum_offset: 16,
            num_buffers: 0x0102,
        };
        let b = h.to_le().to_le_bytes();
        assert_eq!(&b[..12], &[1, 1, 0x12, 0x34, 0xa5, 0x5a, 34, 0, 16, 0, 0x02, 0x01]);
        assert_eq!(&b[12..], &[0; 4], "nothing beyond the 12-byte header");
        assert_eq!(NetHdr::from_le(h.to_le()), h);
    }
}
