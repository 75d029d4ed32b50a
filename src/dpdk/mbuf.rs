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

/// A DPDK mbuf the datapath works on for one burst (owned by the caller, or
/// allocated by us from the caller's mempool). Wraps the raw pointer so the
/// rest of the datapath stays free of `unsafe`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Mbuf(std::ptr::NonNull<RteMbuf>);

impl Mbuf {
    /// # Safety
    /// `p` must be NULL or a valid mbuf not used elsewhere during the burst.
    pub unsafe fn from_raw(p: *mut RteMbuf) -> Option<Mbuf> {
        std::ptr::NonNull::new(p).map(Mbuf)
    }

    pub fn as_ptr(self) -> *mut RteMbuf {
        self.0.as_ptr()
    }

    #[inline]
    fn m(&self) -> &RteMbuf {
        // SAFETY: a valid mbuf per `from_raw`'s contract.
        unsafe { self.0.as_ref() }
    }

    #[inline]
    fn m_mut(&mut self) -> &mut RteMbuf {
        // SAFETY: as above; the burst has exclusive use of it.
        unsafe { self.0.as_mut() }
    }

    #[inline]
    pub fn pkt_len(&self) -> u32 {
        self.m().pkt_len
    }
    #[inline]
    pub fn data_len(&self) -> u16 {
        self.m().data_len
    }
    #[inline]
    pub fn ol_flags(&self) -> u64 {
        self.m().ol_flags
    }
    pub fn set_ol_flags(&mut self, flags: u64) {
        self.m_mut().ol_flags = flags;
    }
    pub fn tx_offload(&self) -> &RteMbuf {
        self.m()
    }
    pub fn set_tx_offload(&mut self, l2: u64, l3: u64, l4: u64, tso_segsz: u64) {
        self.m_mut().tx_offload =
            (l2 & 0x7f) | ((l3 & 0x1ff) << 7) | ((l4 & 0xff) << 16) | ((tso_segsz & 0xffff) << 24);
    }
    pub fn set_packet_type(&mut self, ptype: u32) {
        self.m_mut().packet_type = ptype;
    }
    #[inline]
    pub fn next(&self) -> Option<Mbuf> {
        // SAFETY: `next` of a valid mbuf chain is NULL or a valid mbuf.
        unsafe { Mbuf::from_raw(self.m().next) }
    }

    /// This segment's data.
    #[inline]
    pub fn data(&self) -> &[u8] {
        let m = self.m();
        // SAFETY: [buf_addr+data_off, +data_len) is the segment's data, inside
        // its buffer (mbuf invariant maintained by DPDK and by `append`).
        unsafe {
            std::slice::from_raw_parts(m.buf_addr.add(usize::from(m.data_off)), usize::from(m.data_len))
        }
    }

    /// Free room after this segment's data.
    #[inline]
    pub fn tailroom(&self) -> usize {
        let m = self.m();
        usize::from(m.buf_len).saturating_sub(usize::from(m.data_off) + usize::from(m.data_len))
    }

    /// Room for `n` bytes at the tail of this segment; the caller fills it,
    /// then calls `commit(n)`.
    #[inline]
    pub fn tail_mut(&mut self, n: usize) -> &mut [u8] {
        assert!(n <= self.tailroom(), "mbuf tail overflow");
        let m = self.m();
        // SAFETY: within the segment's buffer (checked against tailroom).
        unsafe {
            std::slice::from_raw_parts_mut(
                m.buf_addr.add(usize::from(m.data_off) + usize::from(m.data_len)),
                n,
            )
        }
    }

    /// Accounts `n` bytes appended to this segment (of packet `head`).
    #[inline]
    pub fn commit(&mut self, n: usize) {
        let m = self.m_mut();
        m.data_len += n as u16;
    }

    /// Chains `seg` after `self` (the current last segment) in packet `head`.
    pub fn chain(head: &mut Mbuf, last: &mut Mbuf, seg: Mbuf) {
        last.m_mut().next = seg.as_ptr();
        head.m_mut().nb_segs += 1;
    }

    /// Sets the packet length of a head mbuf.
    pub fn set_pkt_len(&mut self, len: u32) {
        self.m_mut().pkt_len = len;
    }

    /// Frees the whole chain back to its pool.
    pub fn free(self) {
        // SAFETY: a valid mbuf we own.
        unsafe { rvh_pktmbuf_free(self.as_ptr()) }
    }
}

/// An application's mbuf pool (`struct rte_mempool *`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Mempool(std::ptr::NonNull<rte_mempool>);

impl Mempool {
    /// # Safety
    /// `p` must be NULL or a valid pktmbuf pool for the whole burst.
    pub unsafe fn from_raw(p: *mut rte_mempool) -> Option<Mempool> {
        std::ptr::NonNull::new(p).map(Mempool)
    }
}

/// Most mbufs handled in one bulk call.
pub const BULK_MAX: usize = 64;

/// Fills `out` with fresh mbufs from `pool` in one bulk operation (all or
/// none).
pub fn alloc_bulk(pool: Mempool, out: &mut [Option<Mbuf>]) -> bool {
    let n = out.len().min(BULK_MAX);
    let mut raw = [std::ptr::null_mut::<RteMbuf>(); BULK_MAX];
    // SAFETY: a valid pool; `raw` has room for n pointers.
    if unsafe { rvh_pktmbuf_alloc_bulk(pool.0.as_ptr(), raw.as_mut_ptr(), n as u32) } != 0 {
        return false;
    }
    for (slot, p) in out.iter_mut().zip(&raw[..n]) {
        // SAFETY: fresh mbufs from the pool, now ours.
        *slot = unsafe { Mbuf::from_raw(*p) };
    }
    true
}

/// Allocates one mbuf from `pool`.
pub fn alloc(pool: Mempool) -> Option<Mbuf> {
    // SAFETY: a valid pool; the result is ours.
    unsafe { Mbuf::from_raw(rvh_pktmbuf_alloc(pool.0.as_ptr())) }
}

/// Returns mbufs we allocated and did not hand out to their pools.
pub fn free_bulk(mbufs: &[Option<Mbuf>]) {
    let mut raw = [std::ptr::null_mut::<RteMbuf>(); BULK_MAX];
    let mut n = 0;
    for m in mbufs.iter().flatten() {
        raw[n] = m.as_ptr();
        n += 1;
        if n == BULK_MAX {
            // SAFETY: mbufs we own, not referenced elsewhere.
            unsafe { rte_pktmbuf_free_bulk(raw.as_mut_ptr(), n as u32) };
            n = 0;
        }
    }
    if n > 0 {
        // SAFETY: as above.
        unsafe { rte_pktmbuf_free_bulk(raw.as_mut_ptr(), n as u32) };
    }
}

extern "C" {
    fn rte_net_make_rarp_packet(mpool: *mut rte_mempool, mac: *const [u8; 6]) -> *mut RteMbuf;
}

/// A RARP broadcast announcing `mac` (DPDK builds it: librte_net).
pub fn make_rarp(pool: Mempool, mac: &[u8; 6]) -> Option<Mbuf> {
    // SAFETY: valid pool and a 6-byte address; the result is ours.
    unsafe { Mbuf::from_raw(rte_net_make_rarp_packet(pool.0.as_ptr(), mac)) }
}

/// mbuf offload flag bits (22.11 values).
pub mod ol {
    pub const RX_L4_CKSUM_NONE: u64 = 0x108;
    pub const RX_L4_CKSUM_GOOD: u64 = 0x100;
    pub const RX_LRO: u64 = 0x10000;
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
