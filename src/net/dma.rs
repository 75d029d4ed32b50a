//! The async (DMA) datapath of `rte_vhost_async.h`, as 22.11's
//! `virtio_dev_rx_async_*` / `virtio_dev_tx_async_*`, on split and packed
//! rings. Enqueue: `rte_vhost_submit_enqueue_burst` reserves the guest's
//! RX chains, writes each packet's virtio-net header itself and hands the
//! packet data to a DMA channel (guest buffers by their device addresses,
//! `GuestMemory::host_iova`); `rte_vhost_poll_enqueue_completed` publishes
//! the used entries of the packets whose copies completed, in submission
//! order, and returns their mbufs. Dequeue: `rte_vhost_async_try_dequeue_burst`
//! hands the copies of the guest's TX buffers into fresh mbufs to the
//! channel, then returns the packets whose copies completed (their guest
//! header applied) and marks their chains used. The ring's state between
//! the calls is its `AsyncQueue`.
//!
//! Dirty-page logging: as in 22.11, a socket registered with
//! `RTE_VHOST_USER_ASYNC_COPY` does not offer `VHOST_F_LOG_ALL`, so no log
//! is ever active on these rings.

use super::*;
use crate::dpdk::dma::{self, ChannelId, Copy};
use crate::guest::GuestMemory;
use crate::protocol::features::flags::ASYNC_COPY;
use crate::virtqueue::access_lock::AccessGuard;
use crate::virtqueue::async_queue::{AsyncQueue, Prepared};
use crate::virtqueue::avail::Avail;
use crate::virtqueue::{packed as packed_ring, split as split_ring, Virtqueue};

/// How a call takes the ring's lock. 22.11's `_thread_unsafe` variants,
/// for use in the application's vhost callbacks, rely on the lock its
/// message handler holds around them; rvhost never holds a ring's lock
/// while calling out, so those variants wait for the lock instead (only a
/// burst can hold it). The others give up when the ring is busy, as 22.11.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LockMode {
    Try,
    Wait,
}

fn lock(vq: &Virtqueue, mode: LockMode) -> Option<AccessGuard<'_, VqState>> {
    match mode {
        LockMode::Try => vq.try_lock(),
        LockMode::Wait => Some(vq.lock()),
    }
}

/// The ring `qid` of a device whose socket asked for the async datapath.
fn async_vq(dev: &Device, qid: u16) -> Option<&Virtqueue> {
    if dev.socket_flags() & ASYNC_COPY == 0 || u32::from(qid) >= dev.nr_vring() {
        return None;
    }
    dev.vq(qid)
}

/// `rte_vhost_async_channel_register(_thread_unsafe)`: gives ring `qid`
/// its async state. Refused unless the socket has `RTE_VHOST_USER_ASYNC_COPY`,
/// the ring is translated and it has none yet.
pub fn register_async(dev: &Device, qid: u16) -> bool {
    let Some(vq) = async_vq(dev, qid) else { return false };
    let mut s = vq.lock();
    if !s.rings_ok() {
        return false;
    }
    if s.datapath().dma.is_some() {
        vlog!(Config, Err, dev.ifname(), "async register failed: already registered (qid: {qid})");
        return false;
    }
    s.datapath_mut().dma = Some(Box::default());
    true
}

/// `rte_vhost_async_channel_unregister(_thread_unsafe)`: refused while
/// packets are in flight (they must be completed or cleared first), or,
/// with `LockMode::Try`, while the ring is busy.
pub fn unregister_async(dev: &Device, qid: u16, mode: LockMode) -> bool {
    let Some(vq) = dev.vq(qid).filter(|_| u32::from(qid) < dev.nr_vring()) else { return false };
    let Some(mut s) = lock(vq, mode) else {
        vlog!(Config, Err, dev.ifname(), "failed to unregister async channel, virtqueue busy.");
        return false;
    };
    if s.datapath().dma.as_ref().is_some_and(|q| q.inflight() > 0) {
        vlog!(Config, Err, dev.ifname(), "failed to unregister async channel.");
        vlog!(Config, Err, dev.ifname(), "inflight packets must be completed before unregistration.");
        return false;
    }
    s.datapath_mut().dma = None;
    true
}

/// `rte_vhost_async_get_inflight(_thread_unsafe)`: packets in flight on
/// ring `qid`, `None` if it has no async state (or, `LockMode::Try`, is
/// busy).
pub fn async_inflight(dev: &Device, qid: u16, mode: LockMode) -> Option<usize> {
    let vq = dev.vq(qid).filter(|_| u32::from(qid) < dev.nr_vring())?;
    let s = lock(vq, mode)?;
    s.datapath().dma.as_ref().map(|q| q.inflight())
}

fn channel_ok(dev: &Device, ch: ChannelId, func: &str) -> bool {
    let ok = dma::is_configured(ch);
    if !ok {
        vlog!(Data, Err, dev.ifname(), "{func}: invalid channel {}:{}.", ch.dma, ch.vchan);
    }
    ok
}

/// `rte_vhost_submit_enqueue_burst`: submits up to 32 packets to ring
/// `qid` through channel `ch`; returns how many. Those are taken out of
/// `pkts` (the library's until a poll returns them), the others left.
pub fn submit_enqueue_burst(dev: &Device, qid: u16, pkts: &mut [Option<Mbuf>], ch: ChannelId) -> u16 {
    const FUNC: &str = "rte_vhost_submit_enqueue_burst";
    let Some(vq) = burst_vq(dev, qid, false, FUNC) else { return 0 };
    if pkts.is_empty() || !channel_ok(dev, ch, FUNC) {
        return 0;
    }
    let Some(mut s) = vq.lock_for_burst() else { return 0 };
    let (true, Some(ring)) = (s.enabled(), s.ring()) else { return 0 };
    if memory_intact(dev, &s).is_none() {
        return 0;
    }
    let Some(mut q) = s.datapath_mut().dma.take() else { return 0 };
    let stats = dev.socket_flags() & flags::NET_STATS_ENABLE != 0;
    let len = pkts.len().min(MAX_BURST);
    let n = burst!(dev, &mut s, ring, stats, PERM_WO, |b| submit(b, &mut pkts[..len], ch, &mut q));
    s.datapath_mut().dma = Some(q);
    s.datapath_mut().stats.inflight_submitted += n as u64;
    n as u16
}

fn submit<'a>(
    b: &mut Burst<'a, impl AddressSpace<'a>>,
    pkts: &mut [Option<Mbuf>],
    ch: ChannelId,
    q: &mut AsyncQueue,
) -> usize {
    let ring = b.ring;
    let Some(mut avail) = b.vq.avail(&ring) else {
        b.bad_chain(ChainError::IndexOutOfRange);
        return 0;
    };
    let hlen = hdr_len(b.vq);
    let mergeable = b.vq.has_feature(Feature::NET_MRG_RXBUF.number());
    let mem = b.mem.mem();
    let first = q.inflight();
    let mut copies = std::mem::take(&mut q.copies);
    copies.clear();
    // Per packet: the end of its copies, and the avail position before its
    // chains (to give them back if it cannot be sent).
    let (mut copy_ends, mut froms) = ([0; MAX_BURST], [avail; MAX_BURST]);
    let mut n = 0;
    for p in pkts.iter_mut() {
        // Taken for the queue if sent; else the application keeps it.
        let Some(mut m) = p.take() else { break };
        let needed = u64::from(m.pkt_len()) + u64::from(hlen);
        let from = avail;
        // The common case needs no walk (as the sync enqueue): the next
        // chain is one buffer holding the whole packet.
        let lone = if b.used.room() > 0 { avail.take_lone(&ring, &b.mem, needed) } else { None };
        let reserve = |b: &mut Burst<_>, room| avail.reserve(&ring, &b.mem, b.bufs, needed, mergeable, room);
        let submit = |segs: &[GuestSlice<'_>], chains: &[ChainInfo], w, used: &mut UsedBatch| {
            let start = copies.len();
            let pos = put_header(w, segs, header::wire_header_for(&mut m, chains.len() as u16), hlen);
            if !dma_copies(mem, segs, pos, &m, &mut copies) {
                copies.truncate(start);
                return false;
            }
            let used_from = used.entries().len();
            record_used(chains, needed, used);
            q.push(Prepared { mbuf: m, channel: ch, net_hdr: 0 }, &used.entries()[used_from..]);
            true
        };
        match b.place(lone, reserve, submit) {
            Some(true) => {
                (copy_ends[n], froms[n]) = (copies.len(), from);
                n += 1;
            }
            Some(false) => {
                avail = from;
                vlog!(
                    Data,
                    Err,
                    b.dev.ifname(),
                    "vring {}: a guest buffer has no device address",
                    b.vq.index()
                );
                break;
            }
            None => break,
        }
    }
    let burst = Recorded { first, copy_ends: &copy_ends[..n], froms: &froms[..n], end: avail };
    // The application keeps the packets not sent.
    let sent = if n == 0 { 0 } else { send(b, ch, &copies, burst, q, &mut Vec::new()) };
    q.copies = copies;
    sent
}

/// The packets a burst recorded in its ring's `AsyncQueue`: from `first`
/// on, their copies ending at `copy_ends`, the avail positions before
/// their chains (`froms`) and after the last (`end`).
struct Recorded<'s> {
    first: usize,
    copy_ends: &'s [usize],
    froms: &'s [Avail],
    end: Avail,
}

/// Submits the copies of the burst's packets to channel `ch`, as many
/// packets as it has room for; those it has not are forgotten (their
/// mbufs in `unsent`) and give their chains back. Returns how many were
/// sent.
fn send<'a>(
    b: &mut Burst<'a, impl AddressSpace<'a>>,
    ch: ChannelId,
    copies: &[Copy],
    burst: Recorded<'_>,
    q: &mut AsyncQueue,
    unsent: &mut Vec<Option<Mbuf>>,
) -> usize {
    let Recorded { first, copy_ends, froms, end } = burst;
    let sent = q.submitted(first, copy_ends, dma::submit(ch, copies, copy_ends), b.vq.mem(), unsent);
    // Past the last chain taken, or back to the first one not sent.
    b.vq.settle(froms.get(sent).copied().unwrap_or(end));
    sent
}

/// The copies of packet `m`'s data into `segs` from position `pos` (after
/// the header), each within one device-contiguous run of guest memory;
/// false if a guest buffer has no device address.
#[inline(always)]
fn dma_copies(
    mem: &GuestMemory,
    segs: &[GuestSlice<'_>],
    mut pos: (usize, u32),
    m: &Mbuf,
    out: &mut Vec<Copy>,
) -> bool {
    let mut seg = Some(m);
    while let Some(s) = seg {
        let mut src = s.data_iova();
        let mut left = s.data().len() as u32;
        while left > 0 {
            let Some(g) = segs.get(pos.0) else { return false };
            let n = (g.len() - pos.1).min(left);
            let mut done = 0;
            while done < n {
                let at = g.hva() + u64::from(pos.1 + done);
                let Some((dst, k)) = mem.host_iova(at, u64::from(n - done)) else { return false };
                out.push(Copy { src, dst, len: k as u32 });
                src += k;
                done += k as u32;
            }
            left -= n;
            pos.1 += n;
            if pos.1 == g.len() {
                pos = (pos.0 + 1, 0);
            }
        }
        seg = s.next();
    }
    true
}

/// A poll for completed packets: the channel to reap, how to take the
/// ring's lock, and the API function (for the log).
#[derive(Clone, Copy, Debug)]
pub struct PollCall<'a> {
    pub ch: ChannelId,
    pub mode: LockMode,
    pub func: &'a str,
}

/// `rte_vhost_poll_enqueue_completed` (`LockMode::Try`, as 22.11: a busy
/// ring returns nothing) and `rte_vhost_clear_queue(_thread_unsafe)`:
/// returns in `out` the packets of ring `qid` whose copies completed (see
/// `complete`).
pub fn poll_completed(dev: &Device, qid: u16, out: &mut [Option<Mbuf>], call: PollCall<'_>) -> u16 {
    let PollCall { ch, mode, func } = call;
    let Some(vq) = dev.vq(qid) else { return 0 };
    if !channel_ok(dev, ch, func) {
        return 0;
    }
    let s = match mode {
        LockMode::Try => vq.lock_for_burst(),
        LockMode::Wait => Some(vq.lock()),
    };
    let Some(mut s) = s else { return 0 };
    let Some(mut q) = s.datapath_mut().dma.take() else {
        vlog!(Data, Err, dev.ifname(), "{func}: async not registered for virtqueue {qid}.");
        return 0;
    };
    let n = complete(dev, &mut s, &mut q, out, ch);
    s.datapath_mut().dma = Some(q);
    n as u16
}

/// Reaps channel `ch`, then takes the packets of the ring whose copies
/// completed, in submission order, into `out`: publishes their used
/// entries (if the ring is still enabled and translated: otherwise they
/// are dropped, as 22.11 does) and notifies the guest; a dequeued packet
/// gets the guest's offload requests.
fn complete(
    dev: &Device,
    s: &mut VqState,
    q: &mut AsyncQueue,
    out: &mut [Option<Mbuf>],
    ch: ChannelId,
) -> usize {
    dma::reap(ch);
    let n = q.count_completed(out.len());
    if n == 0 {
        return 0;
    }
    let used = q.front_used(n);
    let tx = s.index() & 1 == 1;
    let sf = dev.socket_flags();
    let stats = sf & flags::NET_STATS_ENABLE != 0;
    if let (true, Some(ring)) = (s.enabled(), s.ring()) {
        let mem = std::sync::Arc::clone(s.mem());
        let ring = ring.in_table(&mem);
        for part in used.into_iter().filter(|u| !u.is_empty()) {
            if ring.is_packed() {
                packed_ring::publish(s, &ring, part, !tx);
            } else {
                split_ring::publish(s, &ring, part);
            }
        }
        notify_guest(dev, s, &ring, stats);
    }
    // Only a dequeue applies the guest's offload requests.
    let offload = tx && Features::from_bits(s.features()).intersects(HOST_OFFLOAD_FEATURES);
    let compliant = sf & flags::NET_COMPLIANT_OL_FLAGS != 0;
    if offload || stats {
        for (m, h) in q.front_mut(n) {
            if offload {
                header::apply_to_mbuf(&NetHdr::from_le(h), m, compliant);
            }
            if stats {
                s.datapath_mut().stats.count(m.pkt_len(), m.data());
            }
        }
    }
    q.release_into(&mut out[..n]);
    s.datapath_mut().stats.inflight_completed += n as u64;
    n
}

/// `rte_vhost_clear_queue(_thread_unsafe)`: `poll_completed` on any ring.
pub fn clear_queue(dev: &Device, qid: u16, out: &mut [Option<Mbuf>], call: PollCall<'_>) -> u16 {
    if u32::from(qid) >= dev.nr_vring() {
        vlog!(Data, Err, dev.ifname(), "{}: invalid virtqueue idx {qid}.", call.func);
        return 0;
    }
    poll_completed(dev, qid, out, call)
}

/// `rte_vhost_async_try_dequeue_burst`: hands the copies of up to
/// `out.len()` of the guest's next packets on TX ring `qid` to channel
/// `ch` (into mbufs from `pool`), then returns in `out` the packets whose
/// copies completed (a RARP announcement first, if one is due), and the
/// packets still in flight; `None` if the ring could not be used.
pub fn try_dequeue_burst(
    dev: &Device,
    qid: u16,
    pool: Mempool,
    out: &mut [Option<Mbuf>],
    ch: ChannelId,
) -> Option<(u16, usize)> {
    const FUNC: &str = "rte_vhost_async_try_dequeue_burst";
    let vq = burst_vq(dev, qid, true, FUNC)?;
    if !channel_ok(dev, ch, FUNC) {
        return None;
    }
    let mut s = vq.lock_for_burst()?;
    if !s.enabled() {
        return None;
    }
    let Some(mut q) = s.datapath_mut().dma.take() else {
        vlog!(Data, Err, dev.ifname(), "{FUNC}: async not registered for queue id {qid}.");
        return None;
    };
    let r = dequeue_locked(dev, &mut s, &mut q, pool, out, ch);
    s.datapath_mut().dma = Some(q);
    r
}

fn dequeue_locked(
    dev: &Device,
    s: &mut VqState,
    q: &mut AsyncQueue,
    pool: Mempool,
    out: &mut [Option<Mbuf>],
    ch: ChannelId,
) -> Option<(u16, usize)> {
    let ring = s.ring()?;
    memory_intact(dev, s)?;
    let opts = DequeueOpts::new(dev, s);
    let len = out.len().min(MAX_BURST);
    let out = &mut out[..len];
    if out.is_empty() {
        return Some((0, q.inflight()));
    }
    let first = inject_rarp(dev, pool, out);
    let want = out.len() - first;
    let sent = burst!(dev, s, ring, opts.stats, PERM_RO, |b| submit_dequeue(b, pool, want, ch, q, opts));
    s.datapath_mut().stats.inflight_submitted += sent as u64;
    let n = complete(dev, s, q, &mut out[first..], ch);
    Some(((first + n) as u16, q.inflight()))
}

/// Takes up to `want` chains from the guest's TX ring, each into a fresh
/// mbuf (chained or external as for the sync dequeue), and submits the
/// copies of their data; returns how many were submitted. A chain that
/// cannot be taken now (malformed, too short, no mbuf) ends the burst,
/// as in 22.11.
fn submit_dequeue<'a>(
    b: &mut Burst<'a, impl AddressSpace<'a>>,
    pool: Mempool,
    want: usize,
    ch: ChannelId,
    q: &mut AsyncQueue,
    opts: DequeueOpts,
) -> usize {
    let ring = b.ring;
    let Some(mut avail) = b.vq.avail(&ring) else {
        b.bad_chain(ChainError::IndexOutOfRange);
        return 0;
    };
    let ready =
        if ring.is_packed() { avail.packed_count(&ring, want) } else { usize::from(avail.left()).min(want) };
    let hlen = hdr_len(b.vq);
    let mem = b.mem.mem();
    // The burst's mbufs in one bulk allocation (as 22.11); those left over
    // go back at the end.
    let mut fresh = [const { None }; MAX_BURST];
    let ready = ready.min(MAX_BURST);
    if ready == 0 || !mbuf::alloc_bulk(pool, &mut fresh[..ready]) {
        return 0;
    }
    let first = q.inflight();
    let mut copies = std::mem::take(&mut q.copies);
    copies.clear();
    let (mut copy_ends, mut froms) = ([0; MAX_BURST], [avail; MAX_BURST]);
    let mut n = 0;
    for slot in fresh.iter_mut().take(ready) {
        let from = avail;
        // A chain is taken only once its packet is prepared: a malformed
        // one, or a packet that cannot be, stops the burst before it.
        let Some(t) = avail.take(&ring, &b.mem, u64::from(hlen) + 1, b.bufs) else { break };
        let one;
        let (segs, total) = match t.buffer {
            Ok(Some(seg)) => {
                one = [seg];
                (&one[..], u64::from(seg.len()))
            }
            Ok(None) => (b.bufs.segs(mem), b.bufs.total()),
            Err(e) => {
                avail = from;
                b.bad_chain(e);
                break;
            }
        };
        let Some(mut m) = slot.take() else {
            avail = from;
            break;
        };
        let (hdr, pos) = get_wire_header(segs, hlen);
        let start = copies.len();
        let prepared = match total.checked_sub(u64::from(hlen)).filter(|&n| n > 0) {
            None => Err(DropReason::HeaderOnly),
            Some(len) => prep_mbuf(&mut m, len, opts)
                .and_then(|()| dma_copies_from_guest(mem, segs, pos, len, &mut m, pool, &mut copies)),
        };
        if let Err(why) = prepared {
            avail = from;
            copies.truncate(start);
            mbuf::free_bulk(&mut [Some(m)]);
            b.vq.datapath_mut().bad_chains += 1;
            if b.vq.datapath_mut().bad_chains <= 8 {
                vlog!(Data, Err, b.dev.ifname(), "vring {}: dropping a packet: {why}", b.vq.index());
            }
            break;
        }
        let used = UsedElem { id: t.id, len: 0, count: t.count };
        q.push(Prepared { mbuf: m, channel: ch, net_hdr: hdr }, std::slice::from_ref(&used));
        (copy_ends[n], froms[n]) = (copies.len(), from);
        n += 1;
    }
    mbuf::free_bulk(&mut fresh[..ready]);
    let mut unsent = Vec::new();
    let burst = Recorded { first, copy_ends: &copy_ends[..n], froms: &froms[..n], end: avail };
    let sent = if n == 0 { 0 } else { send(b, ch, &copies, burst, q, &mut unsent) };
    q.copies = copies;
    if !unsent.is_empty() {
        mbuf::free_bulk(&mut unsent);
    }
    sent
}

/// The copies of a guest packet's `len` data bytes, from position `pos` in
/// `segs` (after the header), into `head` and, past its room, further
/// mbufs from `pool` chained to it; the mbufs' lengths are set for the data
/// the copies will bring.
#[inline(always)]
fn dma_copies_from_guest(
    mem: &GuestMemory,
    segs: &[GuestSlice<'_>],
    mut pos: (usize, u32),
    len: u64,
    head: &mut Mbuf,
    pool: Mempool,
    out: &mut Vec<Copy>,
) -> Result<(), DropReason> {
    let mut cur = &mut *head;
    let mut left = len;
    while left > 0 {
        if cur.tailroom() == 0 {
            let next = mbuf::alloc(pool).ok_or(DropReason::NoMbuf)?;
            cur = head.chain(next);
        }
        let n = (cur.tailroom() as u64).min(left) as u32;
        let mut dst = cur.tail_iova();
        let mut done = 0;
        while done < n {
            let g = segs.get(pos.0).ok_or(DropReason::ChainCut)?;
            let piece = (g.len() - pos.1).min(n - done);
            let at = g.hva() + u64::from(pos.1);
            let (src, k) = mem.host_iova(at, u64::from(piece)).ok_or(DropReason::NoDeviceAddress)?;
            out.push(Copy { src, dst, len: k as u32 });
            dst += k;
            done += k as u32;
            pos.1 += k as u32;
            if pos.1 == g.len() {
                pos = (pos.0 + 1, 0);
            }
        }
        cur.commit(n as usize);
        left -= u64::from(n);
    }
    head.set_pkt_len(len as u32);
    Ok(())
}
