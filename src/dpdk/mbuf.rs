//! Mbufs and mempools: `Mbuf` over DPDK's `struct rte_mbuf` (its layout is
//! in `abi::mbuf`), and the shim calls for mempool allocation, external
//! buffers and the checksum helpers.

use std::ffi::c_void;

use crate::abi::mbuf::ExtbufFreeCb;
pub use crate::abi::mbuf::{ol, ptype, rte_mempool, ExtSharedInfo, HdrLens, RteMbuf, HEADROOM};

extern "C" {
    fn rte_malloc(ty: *const std::ffi::c_char, size: usize, align: u32) -> *mut c_void;
    fn rte_free(ptr: *mut c_void);
    fn rte_malloc_virt2iova(addr: *const c_void) -> u64;
    fn rte_net_get_ptype(m: *const RteMbuf, hdr_lens: *mut HdrLens, layers: u32) -> u32;
    fn rvh_pktmbuf_ext_shinfo_init_helper(
        buf_addr: *mut c_void,
        buf_len: *mut u16,
        free_cb: ExtbufFreeCb,
        fcb_opaque: *mut c_void,
    ) -> *mut ExtSharedInfo;
    fn rvh_pktmbuf_attach_extbuf(
        m: *mut RteMbuf,
        buf_addr: *mut c_void,
        buf_iova: u64,
        buf_len: u16,
        shinfo: *mut ExtSharedInfo,
    );
    fn rvh_pktmbuf_reset_headroom(m: *mut RteMbuf);
    fn rvh_net_intel_cksum_prepare(m: *mut RteMbuf) -> i32;
    fn rvh_ipv4_cksum(ipv4_hdr: *const u8) -> u16;
    fn rvh_raw_cksum_mbuf(m: *const RteMbuf, off: u32, len: u32, cksum: *mut u16) -> i32;
}

/// Frees an external buffer once its last mbuf lets go of it (DPDK's
/// `virtio_dev_extbuf_free`): `opaque` is the `rte_malloc`ed buffer.
unsafe extern "C" fn extbuf_free(_addr: *mut c_void, opaque: *mut c_void) {
    // SAFETY: `opaque` is the buffer `attach_extbuf` allocated; its shared
    // info's refcount reached zero, so nothing refers to it any more.
    unsafe { rte_free(opaque) }
}

extern "C" {
    pub fn rvh_pktmbuf_alloc_bulk(mp: *mut rte_mempool, pkts: *mut *mut RteMbuf, count: u32) -> i32;
    pub fn rvh_pktmbuf_alloc(mp: *mut rte_mempool) -> *mut RteMbuf;
    #[cfg(any(test, feature = "testing"))]
    pub fn rvh_pktmbuf_free(m: *mut RteMbuf);
    pub fn rte_pktmbuf_free_bulk(mbufs: *mut *mut RteMbuf, count: u32);
}

/// A DPDK mbuf the library has the use of: fresh from the caller's pool
/// (dequeue), or the caller's own, lent for one call (enqueue). Wraps the
/// raw pointer so the rest of the datapath stays free of `unsafe`.
///
/// An exclusive handle, neither `Copy` nor `Clone`: the methods that write
/// the mbuf (and hand out `&mut` to its data) take `&mut self`, those that
/// read it `&self`, so `&Mbuf` is the read-only view and the borrow checker
/// keeps one writer at a time. A segment further down the chain is reached
/// by reference (`next`), never as a second handle. Giving the mbuf away
/// (to the application, to a crypto op) is explicit: `into_raw`.
///
/// `repr(transparent)` over `NonNull`: an `Option<Mbuf>` has the layout of a
/// C `struct rte_mbuf *` (NULL is `None`), so arrays of mbuf pointers are
/// shared with C without copying.
#[derive(Debug, PartialEq, Eq)]
#[repr(transparent)]
pub struct Mbuf(std::ptr::NonNull<RteMbuf>);

impl Mbuf {
    /// # Safety
    /// `p` must be NULL or a valid mbuf (chain) that nothing else uses while
    /// the handle lives.
    pub unsafe fn from_raw(p: *mut RteMbuf) -> Option<Mbuf> {
        std::ptr::NonNull::new(p).map(Mbuf)
    }

    /// The pointer, for a C call that does not keep it.
    pub fn as_ptr(&self) -> *mut RteMbuf {
        self.0.as_ptr()
    }

    /// Gives the mbuf away (to the application, or to a crypto op): the
    /// handle is gone, the pointer is the new owner's.
    pub fn into_raw(self) -> *mut RteMbuf {
        self.0.as_ptr()
    }

    #[inline]
    fn m(&self) -> &RteMbuf {
        // SAFETY: a valid mbuf per `from_raw`'s contract.
        unsafe { self.0.as_ref() }
    }

    #[inline]
    fn m_mut(&mut self) -> &mut RteMbuf {
        // SAFETY: as above; the handle is the mbuf's only user and `&mut
        // self` its only writer.
        unsafe { self.0.as_mut() }
    }

    #[inline]
    pub fn pkt_len(&self) -> u32 {
        self.m().pkt_len
    }
    #[inline]
    #[cfg(any(test, feature = "testing"))]
    pub fn data_len(&self) -> u16 {
        self.m().data_len
    }
    #[cfg(any(test, feature = "testing"))]
    pub fn nb_segs(&self) -> u16 {
        self.m().nb_segs
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
    /// Sets only the `tso_segsz` field of `tx_offload`.
    pub fn set_tso_segsz(&mut self, tso_segsz: u16) {
        let t = &mut self.m_mut().tx_offload;
        *t = (*t & !(0xffff << 24)) | (u64::from(tso_segsz) << 24);
    }
    #[cfg(any(test, feature = "testing"))]
    pub fn packet_type(&self) -> u32 {
        self.m().packet_type
    }
    pub fn set_packet_type(&mut self, ptype: u32) {
        self.m_mut().packet_type = ptype;
    }
    /// The next segment of the chain, borrowed with this one.
    #[inline]
    pub fn next(&self) -> Option<&Mbuf> {
        let next: *const *mut RteMbuf = &self.m().next;
        // `Option<Mbuf>` has the field's layout (a nullable mbuf pointer).
        // SAFETY: NULL or the chain's next valid mbuf, used with this one;
        // borrowed no longer than `&self`, so the field is not rewritten.
        unsafe { &*next.cast::<Option<Mbuf>>() }.as_ref()
    }

    /// The last segment of the chain.
    fn last_mut(&mut self) -> &mut Mbuf {
        let mut seg = self;
        while !seg.m().next.is_null() {
            let next: *mut *mut RteMbuf = &mut seg.m_mut().next;
            // SAFETY: as `next`, exclusively: the field (not NULL) is the
            // chain's next mbuf, borrowed from `seg` as mutably as `seg` is.
            seg = unsafe { (*next.cast::<Option<Mbuf>>()).as_mut() }.expect("checked not NULL");
        }
        seg
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

    /// This segment's data, writable.
    pub fn data_mut(&mut self) -> &mut [u8] {
        let m = self.m();
        // SAFETY: as `data`; `&mut self` keeps every other view of the mbuf
        // out while the slice lives.
        unsafe {
            std::slice::from_raw_parts_mut(m.buf_addr.add(usize::from(m.data_off)), usize::from(m.data_len))
        }
    }

    /// The device address (IOVA) of this segment's data, for a DMA engine.
    #[inline]
    pub fn data_iova(&self) -> u64 {
        let m = self.m();
        m.buf_iova + u64::from(m.data_off)
    }

    /// The device address of the free room after this segment's data.
    #[inline]
    pub fn tail_iova(&self) -> u64 {
        self.data_iova() + u64::from(self.m().data_len)
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
        self.try_tail_mut(n).expect("mbuf tail overflow")
    }

    /// `tail_mut`, or `None` if the tailroom is less than `n` bytes.
    #[inline(always)]
    pub fn try_tail_mut(&mut self, n: usize) -> Option<&mut [u8]> {
        let m = self.m();
        let start = usize::from(m.data_off) + usize::from(m.data_len);
        if start + n > usize::from(m.buf_len) {
            return None;
        }
        // SAFETY: [start, start + n) lies inside the segment's buffer
        // (checked just above against buf_len).
        Some(unsafe { std::slice::from_raw_parts_mut(m.buf_addr.add(start), n) })
    }

    /// Commits `n` bytes written into `tail_mut(n)`.
    #[inline]
    pub fn commit(&mut self, n: usize) {
        let m = self.m_mut();
        m.data_len += n as u16;
    }

    /// Chains `seg` (one segment) after the last segment of this packet
    /// (its head); returns it, now the last.
    pub fn chain(&mut self, seg: Mbuf) -> &mut Mbuf {
        self.m_mut().nb_segs += 1;
        let last = self.last_mut();
        last.m_mut().next = seg.into_raw();
        last.last_mut()
    }

    /// Sets the packet length of a head mbuf.
    pub fn set_pkt_len(&mut self, len: u32) {
        self.m_mut().pkt_len = len;
    }

    /// Replaces the (empty) data room of this fresh mbuf by an external buffer
    /// holding `size` bytes after the standard headroom (DPDK's
    /// `virtio_dev_extbuf_alloc`): `rte_malloc`ed, cache-line aligned, with
    /// its `rte_mbuf_ext_shared_info` at the end, freed by `rte_free` when the
    /// mbuf is. False (mbuf unchanged) if that does not fit an mbuf's 16-bit
    /// buffer length or memory is short.
    pub fn attach_extbuf(&mut self, size: u64) -> bool {
        let shinfo_room = (std::mem::size_of::<ExtSharedInfo>() + std::mem::size_of::<usize>()) as u64;
        let total = (u64::from(HEADROOM) + size + shinfo_room).next_multiple_of(8);
        let Ok(mut buf_len) = u16::try_from(total) else { return false };
        // SAFETY: plain allocation from DPDK's heap (NULL type, 64-byte
        // alignment, any socket), as DPDK does.
        let buf = unsafe { rte_malloc(std::ptr::null(), usize::from(buf_len), 64) };
        if buf.is_null() {
            return false;
        }
        // SAFETY: `buf` holds `buf_len` bytes; the helper puts the shared info
        // at its end and shortens `buf_len` to what precedes it.
        let shinfo = unsafe { rvh_pktmbuf_ext_shinfo_init_helper(buf, &mut buf_len, extbuf_free, buf) };
        if shinfo.is_null() {
            // SAFETY: ours, never attached.
            unsafe { rte_free(buf) };
            return false;
        }
        // SAFETY: a fresh direct mbuf we own (refcnt 1) and a buffer whose
        // shared info has refcount 1 and our free callback; the mbuf now owns
        // the buffer and frees it through the callback.
        unsafe {
            let iova = rte_malloc_virt2iova(buf);
            rvh_pktmbuf_attach_extbuf(self.as_ptr(), buf, iova, buf_len, shinfo);
            rvh_pktmbuf_reset_headroom(self.as_ptr());
        }
        true
    }

    /// `rte_net_intel_cksum_prepare`: writes the pseudo-header checksums the
    /// requested L4 checksum / TSO offloads need into the packet (DPDK's
    /// enqueue does this for the guest). False if the headers are not all in
    /// the first segment.
    pub fn cksum_prepare(&mut self) -> bool {
        // SAFETY: a valid mbuf we may modify; DPDK's helper checks that the
        // headers it writes lie within the first segment.
        unsafe { rvh_net_intel_cksum_prepare(self.as_ptr()) == 0 }
    }

    /// Computes and stores the IPv4 header checksum of the header at
    /// `l2_len` (what a NIC does for `RTE_MBUF_F_TX_IP_CKSUM`), if that header
    /// lies within the first segment.
    pub fn fill_ipv4_cksum(&mut self) {
        let l2 = self.tx_offload().l2_len() as usize;
        let data = self.data_mut();
        let Some(&version_ihl) = data.get(l2) else { return };
        let ihl = usize::from(version_ihl & 0x0f) * 4;
        if ihl < 20 || data.len() < l2 + ihl {
            return;
        }
        data[l2 + 10..l2 + 12].fill(0);
        // SAFETY: the IPv4 header of `ihl` bytes is inside `data` (checked).
        let cksum = unsafe { rvh_ipv4_cksum(data[l2..].as_ptr()) };
        data[l2 + 10..l2 + 12].copy_from_slice(&cksum.to_ne_bytes());
    }

    /// `rte_net_get_ptype` over all layers: the packet type and header lengths.
    pub fn parse_ptype(&self) -> (u32, HdrLens) {
        let mut lens = HdrLens::default();
        // SAFETY: a valid mbuf chain; `lens` is a writable rte_net_hdr_lens.
        let ptype = unsafe { rte_net_get_ptype(self.as_ptr(), &mut lens, ptype::ALL_MASK) };
        (ptype, lens)
    }

    /// `rte_raw_cksum_mbuf`: the raw one's complement sum of `len` bytes at
    /// `off` over the whole chain (`None` if beyond the packet).
    pub fn raw_cksum(&self, off: u32, len: u32) -> Option<u16> {
        let mut sum = 0u16;
        // SAFETY: a valid mbuf chain; DPDK's helper bounds the range by
        // pkt_len and walks the segments.
        (unsafe { rvh_raw_cksum_mbuf(self.as_ptr(), off, len, &mut sum) } == 0).then_some(sum)
    }

    #[cfg(any(test, feature = "testing"))]
    /// Frees the whole chain back to its pool.
    pub fn free(self) {
        // SAFETY: a valid mbuf we own; the handle is gone with it.
        unsafe { rvh_pktmbuf_free(self.into_raw()) }
    }
}

/// An mbuf the library holds between calls (a packet whose DMA copies are
/// in flight: the application's, given up on submit, or one of ours), until
/// it hands it back. Owned as the `Mbuf` it wraps: moved in, moved out.
#[derive(Debug)]
pub struct HeldMbuf(pub Mbuf);

// SAFETY: an mbuf is plain memory of DPDK's, passed between lcores by
// design; the holder is its only user until it hands it back.
unsafe impl Send for HeldMbuf {}

/// An application's mbuf pool (`struct rte_mempool *`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Mempool(std::ptr::NonNull<rte_mempool>);

// SAFETY: a DPDK mempool is made for concurrent use from any thread (its
// get/put operations are thread-safe); the handle is only a pointer to it.
unsafe impl Send for Mempool {}
// SAFETY: as above.
unsafe impl Sync for Mempool {}

impl Mempool {
    /// # Safety
    /// `p` must be NULL or a valid pktmbuf pool for the whole burst.
    pub unsafe fn from_raw(p: *mut rte_mempool) -> Option<Mempool> {
        std::ptr::NonNull::new(p).map(Mempool)
    }

    pub fn as_ptr(self) -> *mut rte_mempool {
        self.0.as_ptr()
    }
}

/// Most mbufs handled in one bulk call.
pub const BULK_MAX: usize = 64;

/// Fills `out` with fresh mbufs from `pool` in one bulk operation (all or
/// none). `out` must hold no mbuf of ours: its slots are overwritten, not
/// freed.
pub fn alloc_bulk(pool: Mempool, out: &mut [Option<Mbuf>]) -> bool {
    let n = out.len().min(BULK_MAX);
    // SAFETY: a valid pool; `out` has room for n pointers, and Option<Mbuf>
    // is a nullable mbuf pointer (repr(transparent)); on success each entry
    // is a fresh mbuf from the pool, now ours.
    if unsafe { rvh_pktmbuf_alloc_bulk(pool.0.as_ptr(), out.as_mut_ptr().cast(), n as u32) } != 0 {
        out[..n].iter_mut().for_each(|m| *m = None);
        return false;
    }
    true
}

/// Allocates one mbuf from `pool`.
pub fn alloc(pool: Mempool) -> Option<Mbuf> {
    // SAFETY: a valid pool; the result is ours.
    unsafe { Mbuf::from_raw(rvh_pktmbuf_alloc(pool.0.as_ptr())) }
}

/// Returns mbufs we allocated and did not hand out to their pools (their
/// entries become `None`).
pub fn free_bulk(mbufs: &mut [Option<Mbuf>]) {
    let mut raw = [std::ptr::null_mut::<RteMbuf>(); BULK_MAX];
    let mut n = 0;
    for m in mbufs.iter_mut().filter_map(Option::take) {
        raw[n] = m.into_raw();
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
