//! The virtio-net header in front of every packet, and its mapping to and
//! from mbuf offload flags (checksum, TSO/UFO).

use crate::dpdk::mbuf::{ol, Mbuf};

pub const F_NEEDS_CSUM: u8 = 1;
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
/// requested L4 checksum and segmentation offloads.
pub fn for_mbuf(m: &Mbuf) -> NetHdr {
    let f = m.ol_flags();
    let mut h = NetHdr::default();
    if f & (ol::TX_L4_MASK | ol::TX_TCP_SEG | ol::TX_UDP_SEG) == 0 {
        return h;
    }
    let t = m.tx_offload();
    let l2l3 = (t.l2_len() + t.l3_len()) as u16;
    let csum_offset = match f & ol::TX_L4_MASK {
        ol::TX_TCP_CKSUM => Some(16),
        ol::TX_UDP_CKSUM => Some(6),
        ol::TX_SCTP_CKSUM => Some(8),
        _ => None,
    };
    if let Some(off) = csum_offset {
        h.flags = F_NEEDS_CSUM;
        h.csum_start = l2l3;
        h.csum_offset = off;
    }
    if f & ol::TX_TCP_SEG != 0 {
        h.gso_type = if f & ol::TX_IPV4 != 0 { GSO_TCPV4 } else { GSO_TCPV6 };
        h.gso_size = t.tso_segsz() as u16;
        h.hdr_len = l2l3 + t.l4_len() as u16;
    } else if f & ol::TX_UDP_SEG != 0 {
        h.gso_type = GSO_UDP;
        h.gso_size = t.tso_segsz() as u16;
        h.hdr_len = l2l3 + 8;
    }
    h
}

/// Parses the Ethernet/IP headers at the start of `data`: (l2_len, l3_len,
/// is_ipv4, l4 protocol), VLAN tags included.
fn parse_l2_l3(data: &[u8]) -> Option<(u16, u16, bool, u8)> {
    let mut off = 12usize;
    let mut ethertype = u16::from_be_bytes([*data.get(off)?, *data.get(off + 1)?]);
    off += 2;
    while ethertype == 0x8100 || ethertype == 0x88a8 {
        ethertype = u16::from_be_bytes([*data.get(off + 2)?, *data.get(off + 3)?]);
        off += 4;
    }
    match ethertype {
        0x0800 => {
            let ihl = u16::from(*data.get(off)? & 0x0f) * 4;
            Some((off as u16, ihl, true, *data.get(off + 9)?))
        }
        0x86dd => Some((off as u16, 40, false, *data.get(off + 6)?)),
        _ => None,
    }
}

/// Applies a header from the guest to a dequeued mbuf (DPDK's
/// `vhost_dequeue_offload`): the legacy behaviour sets Tx offload flags for
/// the next hop; the compliant one reports Rx flags. `data` is the start of
/// the packet (at least its headers).
pub fn apply_to_mbuf(h: &NetHdr, data: &[u8], m: &mut Mbuf, compliant: bool) {
    if h.is_empty() {
        return;
    }
    if compliant {
        let mut flags = 0;
        if h.flags & F_NEEDS_CSUM != 0 {
            flags |= ol::RX_L4_CKSUM_NONE;
        } else if h.flags & F_DATA_VALID != 0 {
            flags |= ol::RX_L4_CKSUM_GOOD;
        }
        if h.gso_type != GSO_NONE {
            flags |= ol::RX_LRO;
        }
        m.set_ol_flags(m.ol_flags() | flags);
        return;
    }
    let Some((l2, l3, v4, proto)) = parse_l2_l3(data) else { return };
    let mut flags = 0;
    let mut l4 = 0u64;
    if h.flags & F_NEEDS_CSUM != 0 && h.csum_start == l2 + l3 {
        flags |= match (h.csum_offset, proto) {
            (16, 6) => ol::TX_TCP_CKSUM,
            (6, 17) => ol::TX_UDP_CKSUM,
            (8, 132) => ol::TX_SCTP_CKSUM,
            _ => 0,
        };
    }
    let mut seg = 0u64;
    match h.gso_type & !GSO_ECN {
        GSO_TCPV4 | GSO_TCPV6 if proto == 6 => {
            let th = usize::from(l2 + l3);
            l4 = data.get(th + 12).map_or(20, |b| u64::from(b >> 4) * 4);
            flags |= ol::TX_TCP_SEG | ol::TX_TCP_CKSUM;
            seg = u64::from(h.gso_size);
        }
        GSO_UDP if proto == 17 => {
            l4 = 8;
            flags |= ol::TX_UDP_SEG | ol::TX_UDP_CKSUM;
            seg = u64::from(h.gso_size);
        }
        _ => {}
    }
    if flags != 0 {
        flags |= if v4 { ol::TX_IPV4 } else { ol::TX_IPV6 };
        m.set_ol_flags(m.ol_flags() | flags);
        m.set_tx_offload(u64::from(l2), u64::from(l3), l4, seg);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
