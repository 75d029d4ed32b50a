//! DPDK's `struct rte_mbuf` (22.11, `RTE_IOVA_AS_PA`, 64-byte cache lines) and
//! the shim calls for mempool allocation. The layout is checked against the
//! installed headers by `ffi-tests` (mbuf layout test) and by the size
//! assertions below.

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

extern "C" {
    pub fn rvh_pktmbuf_alloc_bulk(mp: *mut rte_mempool, pkts: *mut *mut RteMbuf, count: u32) -> i32;
    pub fn rvh_pktmbuf_alloc(mp: *mut rte_mempool) -> *mut RteMbuf;
    pub fn rvh_pktmbuf_free(m: *mut RteMbuf);
    pub fn rvh_pktmbuf_data_room_size(mp: *mut rte_mempool) -> u16;
    pub fn rvh_lcore_id() -> u32;
    pub fn rte_pktmbuf_free_bulk(mbufs: *mut *mut RteMbuf, count: u32);
}
