//! The virtio-net datapath: `rte_vhost_enqueue_burst` (host → guest, the
//! guest's RX rings, even queue ids) and `rte_vhost_dequeue_burst` (guest →
//! host, TX rings, odd ids) on split and packed rings, with the virtio-net
//! header, mergeable RX buffers, multi-segment mbufs, RARP injection,
//! notification suppression and per-vring statistics.
//!
//! A burst takes the ring's lock with `try_lock` (no packets move while the
//! control plane changes the ring), reserves descriptor chains as bounded
//! segment lists (`virtqueue::chain`), copies, then publishes the used
//! entries (split: one release store per burst; packed: per batch of four
//! descriptors, or per burst) and notifies the guest if it asked to be.
//! Reserving/walking, copying and publishing are separate steps so the async
//! (DMA) datapath can reuse the first and the last. `split.rs` and
//! `packed.rs` hold the ring-specific bursts; this file what they share.

pub mod header;
pub mod interrupt;
mod packed;
mod split;

use crate::device::Device;
use crate::dpdk::mbuf::{self, Mbuf, Mempool};
use crate::guest::iotlb::{PERM_RO, PERM_WO};
use crate::guest::slice::{GuestSlice, Writer};
use crate::guest::{AddressSpace, IovaSpace, PhysicalSpace};
use crate::protocol::features::*;
use crate::virtqueue::chain::{BufVec, ChainError, ChainInfo};
use crate::virtqueue::notify;
use crate::virtqueue::ring::RingMem;
use crate::virtqueue::stats;
use crate::virtqueue::used::{UsedBatch, UsedElem};
use crate::virtqueue::{BurstScratch, VqState};
use crate::vlog;
use header::NetHdr;
use interrupt::notify_guest;

pub use crate::virtqueue::MAX_BURST;
pub use dma::{
    async_inflight, clear_queue, poll_completed, register_async, submit_enqueue_burst, try_dequeue_burst,
    unregister_async, LockMode, PollCall,
};

/// Size of the virtio-net header for the negotiated features.
fn hdr_len(vq: &VqState) -> u32 {
    if vq.has_feature(Feature::NET_MRG_RXBUF.number())
        || vq.has_feature(Feature::VERSION_1.number())
        || vq.is_packed()
    {
        12
    } else {
        10
    }
}

/// One burst on one ring: the ring's state and the areas it was checked
/// for, the burst's scratch (segments, used entries), where its descriptor
/// addresses point (`S`: guest-physical, or IOVAs), and what the burst
/// needs to know of the device.
pub(super) struct Burst<'a, S> {
    dev: &'a Device,
    vq: &'a mut VqState,
    ring: RingMem<'a>,
    mem: S,
    bufs: &'a mut BufVec,
    used: &'a mut UsedBatch,
    /// Writes guest buffers (and logs them while migration logging is on).
    writer: Writer<'a>,
    stats: bool,
}

impl<S> Burst<'_, S> {
    /// Whether a packet's chains were reserved (`Ok(true)`); a malformed
    /// or missing chain goes to `bad_chain`. Either way a `false` ends the
    /// burst.
    #[inline(always)]
    fn reserved(&mut self, r: Result<bool, ChainError>) -> bool {
        r.unwrap_or_else(|e| {
            self.bad_chain(e);
            false
        })
    }

    /// A chain that cannot be used: a malformed one is counted and logged
    /// for the first few; one that missed in the IOTLB is asked for (the
    /// burst stops before it and takes it again once mapped).
    fn bad_chain(&mut self, e: ChainError) {
        if self.missed(e) {
            return;
        }
        self.vq.datapath_mut().bad_chains += 1;
        if self.vq.datapath_mut().bad_chains <= 8 {
            vlog!(
                Data,
                Err,
                self.dev.ifname(),
                "vring {}: dropping a malformed descriptor chain: {e}",
                self.vq.index()
            );
        }
    }

    /// Whether `e` is an IOTLB miss (then asked for): the chain is left
    /// where it is, for a later burst.
    #[cold]
    fn missed(&self, e: ChainError) -> bool {
        match e {
            ChainError::IotlbMiss { iova, perm } => {
                self.dev.iotlb_miss(self.vq.index(), iova, perm);
                true
            }
            _ => false,
        }
    }

    /// Accounts dequeued slot `i`: a good packet moves up to the front of
    /// `out`, a bad one is counted and logged (its mbuf is released later).
    /// Inline, the good case is a swap and an increment.
    #[inline(always)]
    fn account_dequeued(
        &mut self,
        out: &mut [Option<Mbuf>],
        i: usize,
        done: &mut usize,
        res: Result<(), DropReason>,
        stats: bool,
    ) {
        match res {
            Ok(()) => {
                if let (true, Some(m)) = (stats, &out[i]) {
                    self.vq.datapath_mut().stats.count(m.pkt_len(), m.data());
                }
                out.swap(*done, i);
                *done += 1;
            }
            Err(e) => self.count_dropped(e),
        }
    }

    #[cold]
    #[inline(never)]
    fn count_dropped(&mut self, e: DropReason) {
        #[cfg(feature = "abi-24-11")]
        if matches!(e, DropReason::NoMbuf) {
            self.vq.datapath_mut().stats.mbuf_alloc_failed += 1;
        }
        self.vq.datapath_mut().bad_chains += 1;
        if self.vq.datapath_mut().bad_chains <= 8 {
            vlog!(Data, Err, self.dev.ifname(), "vring {}: dropping a packet: {e}", self.vq.index());
        }
    }
}

impl<'a, S: AddressSpace<'a>> Burst<'a, S> {
    /// Places a packet in the lone buffer taken for it (`lone`), or else in
    /// the chains `reserve` gathers into `bufs` (given the used entries left
    /// in the burst): `place` gets their segments and chain records, with
    /// the burst's writer and used entries. `None` ends the burst (not
    /// enough now, or a malformed chain, which `reserved` reports).
    #[inline(always)]
    fn place<R>(
        &mut self,
        lone: Option<(GuestSlice<'a>, u16)>,
        reserve: impl FnOnce(&mut Self, usize) -> Result<bool, ChainError>,
        place: impl FnOnce(&[GuestSlice<'_>], &[ChainInfo], Writer<'a>, &mut UsedBatch) -> R,
    ) -> Option<R> {
        let one;
        let (segs, chains) = match lone {
            Some((seg, id)) => {
                one = LoneChain::new(seg, id);
                one.parts()
            }
            None => {
                let room = self.used.room();
                let r = reserve(self, room);
                if !self.reserved(r) {
                    return None;
                }
                (self.bufs.segs(self.mem.mem()), &self.bufs.chains[..self.bufs.nchains])
            }
        };
        Some(place(segs, chains, self.writer, self.used))
    }
}

/// Runs `$body` as one burst on `$vq` (locked, enabled, translated), with
/// `$b` the `&mut Burst` and its scratch taken out of the ring for the time
/// of the burst. The body is compiled twice: for guest-physical addresses
/// and, behind a virtual IOMMU, for IOVAs needing rights `$perm`.
macro_rules! burst {
    ($dev:expr, $vq:expr, $ring:expr, $stats:expr, $perm:expr, |$b:ident| $body:expr) => {{
        let vq: &mut VqState = $vq;
        let mut scratch = vq.take_scratch();
        let log = vq.active_log();
        let BurstScratch { bufs, used, mem, iotlb } = &mut *scratch;
        used.clear();
        let writer = Writer::new(log.as_deref().map(|l| (l, &**mem)));
        let (dev, ring, stats) = ($dev, $ring.in_table(mem), $stats);
        let r = match iotlb.as_deref() {
            None => {
                let $b = &mut Burst {
                    dev,
                    vq: &mut *vq,
                    ring,
                    mem: PhysicalSpace(mem),
                    bufs,
                    used,
                    writer,
                    stats,
                };
                $body
            }
            Some(view) => {
                let mem = IovaSpace::new(mem, view, $perm);
                out_of_line(&mut Burst { dev, vq: &mut *vq, ring, mem, bufs, used, writer, stats }, |$b| {
                    $body
                })
            }
        };
        vq.return_scratch(scratch);
        r
    }};
}

/// Runs `f` on `b` in a function of its own: the IOMMU copy of a burst
/// stays out of the paths without one (their inlining is as if it did
/// not exist).
#[inline(never)]
fn out_of_line<'a, S, R>(b: &mut Burst<'a, S>, f: impl FnOnce(&mut Burst<'a, S>) -> R) -> R {
    f(b)
}

// After `burst!`, which it uses.
mod dma;

/// `Some(mapping::faults())` unless the ring's guest memory was lost since
/// it was mapped (the front-end shrank its file; the SIGBUS was
/// recovered): such a device moves nothing until the front-end sends a new
/// memory table. One load of a global counter a burst when nothing was
/// ever lost.
#[inline(always)]
fn memory_intact(dev: &Device, vq: &VqState) -> Option<u64> {
    let faults = crate::guest::mapping::faults();
    (faults == 0 || !memory_lost_slow(dev, vq)).then_some(faults)
}

/// Whether the ring's memory was lost during the burst that began when
/// `mapping::faults()` was `faults_seen`: asked once, after its chains, so
/// that nothing read from or written to lost memory counts as moved. (A
/// check after each chain cost split rings 1-3 % of their instructions.)
#[inline(always)]
fn lost_during_burst(dev: &Device, vq: &VqState, faults_seen: u64) -> bool {
    crate::guest::mapping::faults() != faults_seen && memory_lost_slow(dev, vq)
}

#[cold]
fn memory_lost_slow(dev: &Device, vq: &VqState) -> bool {
    if !vq.mem().faulted() {
        return false;
    }
    if vq.mem().first_loss_report() {
        vlog!(
            Data,
            Err,
            dev.ifname(),
            "guest memory shrank under the device (its file was truncated): stopped until a new memory table"
        );
    }
    true
}

/// Looks up ring `qid` for a burst in direction `tx` (DPDK's
/// `is_valid_virt_queue_idx`: RX rings are even, TX rings odd).
fn burst_vq<'d>(dev: &'d Device, qid: u16, tx: bool, func: &str) -> Option<&'d crate::virtqueue::Virtqueue> {
    if (qid & 1 == 1) != tx || u32::from(qid) >= dev.nr_vring() {
        vlog!(Data, Err, dev.ifname(), "{func}: invalid virtqueue idx {qid}.");
        return None;
    }
    dev.vq(qid)
}

// --------------------------------------------------------------------------
// Copying between mbufs and guest segments.

/// Writes `src` through the segment list starting at (seg, off); returns the
/// new position.
#[inline]
fn put(w: Writer<'_>, segs: &[GuestSlice<'_>], mut pos: (usize, u32), mut src: &[u8]) -> (usize, u32) {
    while !src.is_empty() {
        let Some(seg) = segs.get(pos.0).copied() else { break };
        let room = (seg.len() - pos.1) as usize;
        let n = room.min(src.len());
        w.write(seg, pos.1, &src[..n]);
        src = &src[n..];
        pos.1 += n as u32;
        if pos.1 == seg.len() {
            pos = (pos.0 + 1, 0);
        }
    }
    pos
}

/// Reads into `dst` from the segment list at (seg, off); returns the new
/// position and how many bytes were read.
#[inline]
fn get(segs: &[GuestSlice<'_>], mut pos: (usize, u32), dst: &mut [u8]) -> ((usize, u32), usize) {
    let mut done = 0;
    while done < dst.len() {
        let Some(seg) = segs.get(pos.0).copied() else { break };
        let n = ((seg.len() - pos.1) as usize).min(dst.len() - done);
        seg.read(pos.1, &mut dst[done..done + n]);
        done += n;
        pos.1 += n as u32;
        if pos.1 == seg.len() {
            pos = (pos.0 + 1, 0);
        }
    }
    (pos, done)
}

/// Writes the virtio-net header (wire form) at the start of the segments;
/// returns the position after it.
#[inline]
fn put_header(w: Writer<'_>, segs: &[GuestSlice<'_>], hdr: u128, hlen: u32) -> (usize, u32) {
    match segs.first() {
        Some(&first) if first.len() >= hlen => {
            w.update_le(first, 0, hdr, hlen as usize);
            if first.len() == hlen {
                (1, 0)
            } else {
                (0, hlen)
            }
        }
        _ => put(w, segs, (0, 0), &hdr.to_le_bytes()[..hlen as usize]),
    }
}

/// Reads the virtio-net header at the start of the segments; returns it and
/// the position after it.
#[inline]
fn get_header(segs: &[GuestSlice<'_>], hlen: u32) -> (NetHdr, (usize, u32)) {
    let (hdr, pos) = get_wire_header(segs, hlen);
    (NetHdr::from_le(hdr), pos)
}

/// `get_header` with the header as it is on the wire (little-endian).
#[inline(always)]
fn get_wire_header(segs: &[GuestSlice<'_>], hlen: u32) -> (u128, (usize, u32)) {
    match segs.first() {
        Some(&first) if first.len() >= hlen => {
            (first.read_le(0, hlen as usize), if first.len() == hlen { (1, 0) } else { (0, hlen) })
        }
        _ => {
            let mut b = [0u8; 16];
            let (pos, _) = get(segs, (0, 0), &mut b[..hlen as usize]);
            (u128::from_le_bytes(b), pos)
        }
    }
}

/// Copies header + packet into the reserved guest segments.
fn copy_to_guest(w: Writer<'_>, segs: &[GuestSlice<'_>], hdr: u128, hlen: u32, m: &Mbuf) {
    // The common case, without the segment walk: a one-segment mbuf and a
    // first guest buffer that holds header and packet. (Tested before
    // `put_header`, whose position bookkeeping this case does not need.)
    if let (Some(&first), None) = (segs.first(), m.next()) {
        let data = m.data();
        if first.len() as usize >= hlen as usize + data.len() {
            put_plain(w, first, hdr, hlen, data);
            return;
        }
    }
    let mut pos = put_header(w, segs, hdr, hlen);
    let mut seg = Some(m);
    while let Some(s) = seg {
        pos = put(w, segs, pos, s.data());
        seg = s.next();
    }
}

/// Writes header and packet into one guest buffer that holds both.
#[inline(always)]
fn put_plain(w: Writer<'_>, seg: GuestSlice<'_>, hdr: u128, hlen: u32, data: &[u8]) {
    w.update_le(seg, 0, hdr, hlen as usize);
    w.write(seg, hlen, data);
}

/// Copies a guest packet (after its header, at `pos`) into `head` and more
/// mbufs from `pool` as needed.
fn copy_from_guest(
    segs: &[GuestSlice<'_>],
    mut pos: (usize, u32),
    mut left: u64,
    head: &mut Mbuf,
    pool: Mempool,
) -> Result<(), DropReason> {
    let total = left;
    let mut cur = &mut *head;
    while left > 0 {
        if cur.tailroom() == 0 {
            let next = mbuf::alloc(pool).ok_or(DropReason::NoMbuf)?;
            cur = head.chain(next);
        }
        let n = (cur.tailroom() as u64).min(left) as usize;
        let (p, got) = get(segs, pos, cur.tail_mut(n));
        cur.commit(got);
        pos = p;
        left -= got as u64;
        if got < n {
            break;
        }
    }
    head.set_pkt_len((total - left) as u32);
    Ok(())
}

// --------------------------------------------------------------------------
// Shared by both layouts.

/// The segment and chain record of a chain resolved by `lone_buffer`.
struct LoneChain<'m> {
    seg: [GuestSlice<'m>; 1],
    chain: [ChainInfo; 1],
}

impl<'m> LoneChain<'m> {
    fn new(seg: GuestSlice<'m>, id: u16) -> LoneChain<'m> {
        LoneChain { seg: [seg], chain: [ChainInfo { id, count: 1, cap: seg.len() }] }
    }
    fn parts(&self) -> (&[GuestSlice<'m>], &[ChainInfo]) {
        (&self.seg, &self.chain)
    }
}

/// Enqueue of one packet into its reserved `chains` (whose buffers are
/// `segs`): header and data copied (and logged), used entries recorded
/// (each chain filled in turn, the last one partly).
fn place_packet(
    w: Writer<'_>,
    segs: &[GuestSlice<'_>],
    chains: &[ChainInfo],
    hlen: u32,
    m: &mut Mbuf,
    used: &mut UsedBatch,
) {
    copy_to_guest(w, segs, header::wire_header_for(m, chains.len() as u16), hlen, m);
    record_used(chains, u64::from(m.pkt_len()) + u64::from(hlen), used);
}

/// The used entries of a packet of `len` bytes (header included) placed in
/// `chains`: each chain filled in turn, the last one partly.
#[inline(always)]
fn record_used(chains: &[ChainInfo], mut len: u64, used: &mut UsedBatch) {
    for c in chains {
        let n = u64::from(c.cap).min(len);
        len -= n;
        used.push(c.id, n as u32, c.count);
    }
}

/// Why a dequeued slot carries no packet.
#[derive(Clone, Copy, Debug)]
enum DropReason {
    Chain(ChainError),
    /// The chain holds no more than the virtio-net header.
    HeaderOnly,
    /// The slot got no mbuf from the pool.
    Unallocated,
    /// Linear buffers were asked for and no external buffer was attached.
    TooLarge,
    /// The pool ran out while the packet was being copied.
    NoMbuf,
    /// The buffers end before the length they were summed to (async).
    ChainCut,
    /// A guest buffer has no device address for the DMA engine (async).
    NoDeviceAddress,
}

impl std::fmt::Display for DropReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            DropReason::Chain(e) => return e.fmt(f),
            DropReason::HeaderOnly => "descriptor chain shorter than the virtio-net header",
            DropReason::Unallocated => "no mbuf",
            DropReason::TooLarge => {
                "packet larger than the mbuf data room (linear buffers, no external buffer)"
            }
            DropReason::NoMbuf => "failed to allocate an mbuf segment",
            DropReason::ChainCut => "descriptor chain shorter than its length",
            DropReason::NoDeviceAddress => "a guest buffer has no device address",
        })
    }
}

impl std::error::Error for DropReason {}

/// Returns the mbufs allocated for slots `done..n` that carry no packet.
fn release_unused(out: &mut [Option<Mbuf>], done: usize, n: usize) {
    // Usually none: skip the library calls an empty range still costs.
    if done < n {
        mbuf::free_bulk(&mut out[done..n]);
    }
}

/// DPDK's `virtio_net_with_host_offload`: any of these negotiated makes the
/// dequeue path apply the guest's virtio-net header.
const HOST_OFFLOAD_FEATURES: Features = Features::of(&[
    Feature::NET_CSUM,
    Feature::NET_HOST_ECN,
    Feature::NET_HOST_TSO4,
    Feature::NET_HOST_TSO6,
    Feature::NET_HOST_UFO,
]);

#[derive(Clone, Copy, Debug)]
struct DequeueOpts {
    stats: bool,
    compliant: bool,
    /// RTE_VHOST_USER_EXTBUF_SUPPORT: a packet larger than the mbuf's data
    /// room gets an external buffer.
    extbuf: bool,
    /// RTE_VHOST_USER_LINEARBUF_SUPPORT: a packet is never chained.
    linear: bool,
    /// A host offload feature is negotiated: the guest's header is applied.
    host_offload: bool,
}

impl DequeueOpts {
    // Forced inline: the compiler's own choice gave the dequeue loops more
    // spilled registers (docs/performance.md, 2026-12-07).
    #[inline(always)]
    fn new(dev: &Device, vq: &VqState) -> DequeueOpts {
        let sf = dev.socket_flags();
        DequeueOpts {
            stats: sf & flags::NET_STATS_ENABLE != 0,
            compliant: sf & flags::NET_COMPLIANT_OL_FLAGS != 0,
            extbuf: sf & flags::EXTBUF_SUPPORT != 0,
            linear: sf & flags::LINEARBUF_SUPPORT != 0,
            host_offload: Features::from_bits(vq.features()).intersects(HOST_OFFLOAD_FEATURES),
        }
    }
}

/// A dequeue's first packet: the RARP broadcast a SEND_RARP asked for, put
/// in `out[0]` (`out` is not empty); returns how many slots it took. Only
/// the check is inline (a call each burst cost 0.7 instructions a packet).
#[inline(always)]
fn inject_rarp(dev: &Device, pool: Mempool, out: &mut [Option<Mbuf>]) -> usize {
    if dev.rarp_requested() {
        put_rarp(dev, pool, out)
    } else {
        0
    }
}

/// The rare part of `inject_rarp`: takes the request and builds the packet.
#[cold]
#[inline(never)]
fn put_rarp(dev: &Device, pool: Mempool, out: &mut [Option<Mbuf>]) -> usize {
    let Some(mac) = dev.take_rarp() else { return 0 };
    match mbuf::make_rarp(pool, &mac) {
        Some(m) => {
            out[0] = Some(m);
            1
        }
        None => {
            vlog!(Data, Err, dev.ifname(), "failed to make RARP packet.");
            0
        }
    }
}

/// DPDK's `virtio_dev_pktmbuf_prep`: makes the fresh mbuf `m` ready for a
/// `len`-byte packet. Beyond its tailroom, an external buffer is attached if
/// allowed; failing that, the packet is chained unless linear buffers were
/// asked for, in which case it is dropped.
fn prep_mbuf(m: &mut Mbuf, len: u64, opts: DequeueOpts) -> Result<(), DropReason> {
    if m.tailroom() as u64 >= len || (opts.extbuf && m.attach_extbuf(len)) || !opts.linear {
        return Ok(());
    }
    Err(DropReason::TooLarge)
}

/// Fills mbuf `m` (fresh from the pool) from the gathered guest buffers:
/// skips and interprets the virtio-net header, copies the payload.
#[inline(always)]
fn fill_mbuf(
    segs: &[GuestSlice<'_>],
    total: u64,
    hlen: u32,
    m: &mut Option<Mbuf>,
    pool: Mempool,
    opts: DequeueOpts,
) -> Result<(), DropReason> {
    // The common case, inline: one guest buffer whose packet fits the mbuf.
    if let ([seg], Some(mb)) = (segs, &mut *m) {
        if total == u64::from(seg.len()) {
            if let Some(tail) = plain_tail(*seg, hlen, mb) {
                seg.read(hlen, tail);
                finish_plain(*seg, hlen, mb, opts);
                return Ok(());
            }
        }
    }
    fill_mbuf_chained(segs, total, hlen, m, pool, opts)
}

/// Where the packet in guest buffer `seg` (after its header) goes if it
/// fits the tailroom of the fresh mbuf `mb` without chaining: the plain
/// case, which is copied into it and then finished by `finish_plain`.
#[inline(always)]
fn plain_tail<'b>(seg: GuestSlice<'_>, hlen: u32, mb: &'b mut Mbuf) -> Option<&'b mut [u8]> {
    let len = seg.len().checked_sub(hlen).filter(|&n| n > 0)?;
    mb.try_tail_mut(len as usize)
}

/// Accounts the packet copied into `plain_tail` of `mb` and applies the
/// header if host offloads were negotiated.
#[inline(always)]
fn finish_plain(seg: GuestSlice<'_>, hlen: u32, mb: &mut Mbuf, opts: DequeueOpts) {
    let len = (seg.len() - hlen) as usize;
    mb.commit(len);
    mb.set_pkt_len(len as u32);
    if opts.host_offload {
        let hdr = NetHdr::from_le(seg.read_le(0, hlen as usize));
        header::apply_to_mbuf(&hdr, mb, opts.compliant);
    }
}

/// `fill_mbuf` for everything else: several guest segments, external or
/// chained mbufs, drops.
#[inline(never)]
fn fill_mbuf_chained(
    segs: &[GuestSlice<'_>],
    total: u64,
    hlen: u32,
    m: &mut Option<Mbuf>,
    pool: Mempool,
    opts: DequeueOpts,
) -> Result<(), DropReason> {
    if total <= u64::from(hlen) {
        return Err(DropReason::HeaderOnly);
    }
    let (hdr, pos) = get_header(segs, hlen);
    let m = m.as_mut().ok_or(DropReason::Unallocated)?;
    let len = total - u64::from(hlen);
    prep_mbuf(m, len, opts)?;
    copy_from_guest(segs, pos, len, m, pool)?;
    if opts.host_offload {
        header::apply_to_mbuf(&hdr, m, opts.compliant);
    }
    Ok(())
}

/// `rte_vhost_enqueue_burst`: copies up to 32 packets into the guest's RX
/// ring `qid`; returns how many. The caller keeps ownership of the mbufs.
pub fn enqueue_burst(dev: &Device, qid: u16, pkts: &mut [Option<Mbuf>]) -> u16 {
    let Some(vq) = burst_vq(dev, qid, false, "rte_vhost_enqueue_burst") else { return 0 };
    let Some(mut s) = vq.lock_for_burst() else { return 0 };
    let (true, Some(ring)) = (s.enabled(), s.ring()) else {
        dev.iotlb_ring_waits(&s);
        return 0;
    };
    let Some(faults_seen) = memory_intact(dev, &s) else { return 0 };
    dev.adopt_newer_view(&mut s);
    let stats = dev.socket_flags() & flags::NET_STATS_ENABLE != 0;
    let len = pkts.len().min(MAX_BURST);
    let pkts = &mut pkts[..len];
    let n = burst!(dev, &mut s, ring, stats, PERM_WO, |b| {
        if ring.is_packed() {
            packed::enqueue(b, pkts)
        } else {
            split::enqueue(b, pkts)
        }
    });
    if lost_during_burst(dev, &s, faults_seen) {
        // Written into lost memory: no guest sees them.
        return 0;
    }
    n as u16
}

/// `rte_vhost_dequeue_burst`: up to `out.len()` (≤ 32) packets from the
/// guest's TX ring `qid` into mbufs from `pool`, RARP first if requested.
pub fn dequeue_burst(dev: &Device, qid: u16, pool: Mempool, out: &mut [Option<Mbuf>]) -> u16 {
    let Some(vq) = burst_vq(dev, qid, true, "rte_vhost_dequeue_burst") else { return 0 };
    let Some(mut s) = vq.lock_for_burst() else { return 0 };
    let (true, Some(ring), false) = (s.enabled(), s.ring(), out.is_empty()) else {
        dev.iotlb_ring_waits(&s);
        return 0;
    };
    let Some(faults_seen) = memory_intact(dev, &s) else { return 0 };
    dev.adopt_newer_view(&mut s);
    let opts = DequeueOpts::new(dev, &s);
    let out_len = out.len().min(MAX_BURST);
    let first = inject_rarp(dev, pool, out);
    let slots = &mut out[first..out_len];
    let n = burst!(dev, &mut s, ring, opts.stats, PERM_RO, |b| {
        if ring.is_packed() {
            packed::dequeue(b, pool, slots, opts)
        } else {
            split::dequeue(b, pool, slots, opts)
        }
    });
    if lost_during_burst(dev, &s, faults_seen) {
        // Any of them may hold lost memory's zeros: none is delivered (they
        // are the shrinking front-end's own).
        release_unused(slots, 0, n);
        return first as u16;
    }
    (n + first) as u16
}

/// `rte_vhost_avail_entries` / `rte_vhost_rx_queue_count`: entries the guest
/// made available that the back-end has not used yet.
pub fn avail_entries(dev: &Device, qid: u16) -> u16 {
    let Some(vq) = dev.vq(qid) else { return 0 };
    vq.lock().avail_entries()
}

/// `rte_vhost_enable_guest_notification`: ask the guest to kick us (or not)
/// when it adds buffers.
pub fn set_guest_notification(dev: &Device, qid: u16, enable: bool) -> i32 {
    let Some(vq) = dev.vq(qid) else { return -1 };
    let mut s = vq.lock();
    s.datapath_mut().notif_enable = Some(enable);
    let Some(ring) = s.ring_mem() else { return -1 };
    notify::set_guest_notification(&s, &ring, enable);
    0
}

/// `rte_vhost_vring_call`: notify the guest about used entries (if it wants).
pub fn vring_call(dev: &Device, qid: u16, block: bool) -> i32 {
    let Some(vq) = dev.vq(qid) else { return -1 };
    let s = if block { Some(vq.lock()) } else { vq.try_lock() };
    let Some(mut s) = s else { return -libc::EAGAIN };
    let Some(ring) = s.ring() else { return -1 };
    let stats = dev.socket_flags() & flags::NET_STATS_ENABLE != 0;
    // The table borrowed apart from the state the notification updates.
    let mem = std::sync::Arc::clone(s.mem());
    notify_guest(dev, &mut s, &ring.in_table(&mem), stats);
    0
}

/// The address a power-management loop may monitor for new buffers.
pub fn monitor_cond(dev: &Device, qid: u16) -> Option<notify::MonitorCond> {
    notify::monitor_cond(&dev.vq(qid)?.lock())
}

fn stats_enabled(dev: &Device, qid: u16) -> bool {
    u32::from(qid) < dev.nr_vring() && dev.socket_flags() & flags::NET_STATS_ENABLE != 0
}

/// Per-vring stat values (`None` unless stats are enabled and the ring exists).
pub fn vring_stats(dev: &Device, qid: u16) -> Option<[u64; stats::COUNT]> {
    if !stats_enabled(dev, qid) {
        return None;
    }
    let s = dev.vq(qid)?.lock();
    s.rings_ok().then(|| s.datapath().stats.values())
}

/// Per-vring stat names: `rx_q0_good_packets` (odd rings: the host's RX).
pub fn vring_stat_names(dev: &Device, qid: u16) -> Option<Vec<String>> {
    if !stats_enabled(dev, qid) {
        return None;
    }
    let dir = if qid & 1 == 1 { "rx" } else { "tx" };
    Some(stats::NAMES.iter().map(|n| format!("{dir}_q{}_{n}", qid / 2)).collect())
}

pub fn vring_stats_reset(dev: &Device, qid: u16) -> i32 {
    if !stats_enabled(dev, qid) {
        return -1;
    }
    let Some(vq) = dev.vq(qid) else { return -1 };
    let mut s = vq.lock();
    if !s.rings_ok() {
        return -1;
    }
    s.datapath_mut().stats = stats::VringStats::default();
    0
}
