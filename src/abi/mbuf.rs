//! DPDK's `struct rte_mbuf` (22.11, `RTE_IOVA_AS_PA`, 64-byte cache lines)
//! and the structures and constants the datapath shares with DPDK's mbuf
//! library. The layout is checked against the installed headers by
//! `ffi-tests` (mbuf layout test), by the size assertions below and by the
//! `_Static_assert`s of `shim.c`.
#![allow(non_camel_case_types)]

use std::ffi::c_void;

/// Opaque `struct rte_mempool`.
#[repr(C)]
pub struct rte_mempool {
    _private: [u8; 0],
}

/// `struct rte_mbuf`, first two cache lines, field for field.
#[repr(C, align(64))]
pub struct RteMbuf {
    pub buf_addr: *mut u8,
    pub buf_iova: u64,
    pub data_off: u16,
    pub refcnt: u16,
    pub nb_segs: u16,
    pub port: u16,
    pub ol_flags: u64,
    pub packet_type: u32,
    pub pkt_len: u32,
    pub data_len: u16,
    pub vlan_tci: u16,
    pub hash: [u32; 2],
    pub vlan_tci_outer: u16,
    pub buf_len: u16,
    pub pool: *mut rte_mempool,
    pub next: *mut RteMbuf,
    /// l2_len:7 l3_len:9 l4_len:8 tso_segsz:16 outer_l3_len:9 outer_l2_len:7
    pub tx_offload: u64,
    pub shinfo: *mut c_void,
    pub priv_size: u16,
    pub timesync: u16,
    pub dynfield1: [u32; 9],
}

const _: () = assert!(std::mem::size_of::<RteMbuf>() == 128);
const _: () = assert!(std::mem::offset_of!(RteMbuf, ol_flags) == 24);
const _: () = assert!(std::mem::offset_of!(RteMbuf, pkt_len) == 36);
const _: () = assert!(std::mem::offset_of!(RteMbuf, hash) == 44);
const _: () = assert!(std::mem::offset_of!(RteMbuf, pool) == 56);
const _: () = assert!(std::mem::offset_of!(RteMbuf, next) == 64);
const _: () = assert!(std::mem::offset_of!(RteMbuf, dynfield1) == 92);

impl RteMbuf {
    pub fn l2_len(&self) -> u64 {
        self.tx_offload & 0x7f
    }
    pub fn l3_len(&self) -> u64 {
        (self.tx_offload >> 7) & 0x1ff
    }
    pub fn l4_len(&self) -> u64 {
        (self.tx_offload >> 16) & 0xff
    }
    pub fn tso_segsz(&self) -> u64 {
        (self.tx_offload >> 24) & 0xffff
    }
}

/// `RTE_PKTMBUF_HEADROOM` of the installed DPDK (asserted in `shim.c`).
pub const HEADROOM: u32 = 128;

/// `struct rte_mbuf_ext_shared_info`: kept at the end of an external buffer.
#[repr(C)]
pub struct ExtSharedInfo {
    pub free_cb: Option<ExtbufFreeCb>,
    pub fcb_opaque: *mut c_void,
    pub refcnt: u16,
}

const _: () = assert!(std::mem::size_of::<ExtSharedInfo>() == 24);

/// `rte_mbuf_extbuf_free_callback_t`.
pub type ExtbufFreeCb = unsafe extern "C" fn(addr: *mut c_void, opaque: *mut c_void);

/// `struct rte_net_hdr_lens`, filled by `rte_net_get_ptype`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct HdrLens {
    pub l2_len: u8,
    pub inner_l2_len: u8,
    pub l3_len: u16,
    pub inner_l3_len: u16,
    pub tunnel_len: u16,
    pub l4_len: u8,
    pub inner_l4_len: u8,
}

const _: () = assert!(std::mem::size_of::<HdrLens>() == 10);

/// `RTE_PTYPE_*` values used by the offload code.
pub mod ptype {
    pub const ALL_MASK: u32 = 0x0fff_ffff;
    pub const L4_MASK: u32 = 0x0f00;
    pub const L4_TCP: u32 = 0x0100;
    pub const L4_UDP: u32 = 0x0200;
    pub const L4_SCTP: u32 = 0x0400;
}

/// mbuf offload flag bits (22.11 values).
pub mod ol {
    pub const RX_L4_CKSUM_NONE: u64 = 0x108;
    pub const RX_LRO: u64 = 0x10000;
    #[cfg(any(test, feature = "testing"))]
    pub const EXTERNAL: u64 = 1 << 61;
    pub const TX_TCP_SEG: u64 = 1 << 50;
    pub const TX_UDP_SEG: u64 = 1 << 42;
    pub const TX_IP_CKSUM: u64 = 1 << 54;
    pub const TX_IPV4: u64 = 1 << 55;
    pub const TX_IPV6: u64 = 1 << 56;
    pub const TX_TCP_CKSUM: u64 = 1 << 52;
    pub const TX_SCTP_CKSUM: u64 = 2 << 52;
    pub const TX_UDP_CKSUM: u64 = 3 << 52;
    pub const TX_L4_MASK: u64 = 3 << 52;
}
