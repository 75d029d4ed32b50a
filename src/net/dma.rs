//! The async (DMA) enqueue of `rte_vhost_async.h`, as 22.11's
//! `virtio_dev_rx_async_*`: `rte_vhost_submit_enqueue_burst` reserves the
//! guest's RX chains, writes each packet's virtio-net header itself and
//! hands the packet data to a DMA channel (guest buffers by their device
//! addresses, `GuestMemory::host_iova`); `rte_vhost_poll_enqueue_completed`
//! publishes the used entries of the packets whose copies completed, in
//! submission order, and returns their mbufs. The ring's state between the
//! two is its `AsyncQueue`.
//!
//! Split and packed rings, mergeable or not.
//!
//! Dirty-page logging: as in 22.11, a socket registered with
//! `RTE_VHOST_USER_ASYNC_COPY` does not offer `VHOST_F_LOG_ALL`, so no log
//! is ever active on these rings.

use super::*;
use crate::dpdk::dma::{self, ChannelId, Copy};
use crate::guest::GuestMemory;
use crate::protocol::features::flags::ASYNC_COPY;
use crate::virtqueue::access_lock::AccessGuard;
use crate::virtqueue::async_queue::{AsyncQueue, DmaScratch, Submitted};
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
    if s.dma.is_some() {
        vlog!(Config, Err, dev.ifname(), "async register failed: already registered (qid: {qid})");
        return false;
    }
    s.dma = Some(Box::default());
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
    if s.dma.as_ref().is_some_and(|q| q.inflight() > 0) {
        vlog!(Config, Err, dev.ifname(), "failed to unregister async channel.");
        vlog!(Config, Err, dev.ifname(), "inflight packets must be completed before unregistration.");
        return false;
    }
    s.dma = None;
    true
}

/// `rte_vhost_async_get_inflight(_thread_unsafe)`: packets in flight on
/// ring `qid`, `None` if it has no async state (or, `LockMode::Try`, is
/// busy).
pub fn async_inflight(dev: &Device, qid: u16, mode: LockMode) -> Option<usize> {
    let vq = dev.vq(qid).filter(|_| u32::from(qid) < dev.nr_vring())?;
    let s = lock(vq, mode)?;
    s.dma.as_ref().map(|q| q.inflight())
}

fn channel_ok(dev: &Device, ch: ChannelId, func: &str) -> bool {
    let ok = dma::is_configured(ch);
    if !ok {
        vlog!(Data, Err, dev.ifname(), "{func}: invalid channel {}:{}.", ch.dma, ch.vchan);
    }
    ok
}

/// `rte_vhost_submit_enqueue_burst`: submits up to 32 packets to ring
/// `qid` through channel `ch`; returns how many. Those are the library's
/// until a poll returns them.
pub fn submit_enqueue_burst(dev: &Device, qid: u16, pkts: &[Option<Mbuf>], ch: ChannelId) -> u16 {
    const FUNC: &str = "rte_vhost_submit_enqueue_burst";
    let Some(vq) = burst_vq(dev, qid, false, FUNC) else { return 0 };
    if pkts.is_empty() || !channel_ok(dev, ch, FUNC) {
        return 0;
    }
    let Some(mut s) = vq.lock_for_burst() else { return 0 };
    let (true, Some(ring)) = (s.enabled, s.ring) else { return 0 };
    if memory_lost(dev, &s) {
        return 0;
    }
    let Some(mut q) = s.dma.take() else { return 0 };
    let stats = dev.socket_flags() & flags::NET_STATS_ENABLE != 0;
    let pkts = &pkts[..pkts.len().min(MAX_BURST)];
    let n = burst!(dev, &mut s, ring, stats, PERM_WO, |b| submit(b, pkts, ch, &mut q));
    s.dma = Some(q);
    s.stats.inflight_submitted += n as u64;
    n as u16
}

/// Reserves the chains for a packet of `needed` bytes from the ring's next
/// available position and moves past them; `Ok(false)` if it cannot be
/// placed now. `avail`: split rings' entries left.
fn reserve_chains<'a>(
    b: &mut Burst<'a, impl AddressSpace<'a>>,
    needed: u64,
    mergeable: bool,
    avail: &mut u16,
) -> Result<bool, ChainError> {
    let (ring, room) = (b.ring, b.used.room());
    if ring.is_packed() {
        let next = packed_ring::reserve(b.vq, &ring, &b.mem, b.bufs, needed, mergeable, room)?;
        if let Some(pos) = next {
            b.vq.set_avail_pos(pos);
        }
        return Ok(next.is_some());
    }
    let ok = split_ring::reserve(b.vq, &ring, &b.mem, b.bufs, needed, mergeable, avail, room)?;
    if ok {
        b.vq.last_avail_idx = b.vq.last_avail_idx.wrapping_add(b.bufs.nchains as u16);
    }
    Ok(ok)
}

fn submit<'a>(
    b: &mut Burst<'a, impl AddressSpace<'a>>,
    pkts: &[Option<Mbuf>],
    ch: ChannelId,
    q: &mut AsyncQueue,
) -> usize {
    let mut avail = 0;
    if !b.ring.is_packed() {
        let Some(n) = split_ring::available(b.vq, &b.ring) else {
            b.bad_chain(ChainError::IndexOutOfRange);
            return 0;
        };
        avail = n;
    }
    let hlen = hdr_len(b.vq);
    let mergeable = b.vq.has_feature(VIRTIO_NET_F_MRG_RXBUF);
    let mem = b.mem.mem();
    let DmaScratch { copies, packets, done_at, .. } = &mut q.scratch;
    copies.clear();
    packets.clear();
    for &p in pkts {
        let Some(m) = p else { break };
        let needed = u64::from(m.pkt_len()) + u64::from(hlen);
        let from = b.vq.avail_pos();
        match reserve_chains(b, needed, mergeable, &mut avail) {
            Ok(true) => {}
            Ok(false) => break,
            Err(e) => {
                b.bad_chain(e);
                break;
            }
        }
        let (segs, chains) = (b.bufs.segs(mem), &b.bufs.chains[..b.bufs.nchains]);
        let start = copies.len();
        let pos = put_header(b.writer, segs, header::wire_header_for(&m, chains.len() as u16), hlen);
        if !dma_copies(mem, segs, pos, m, copies) {
            copies.truncate(start);
            b.vq.set_avail_pos(from);
            vlog!(Data, Err, b.dev.ifname(), "vring {}: a guest buffer has no device address", b.vq.index);
            break;
        }
        record_used(chains, needed, b.used);
        packets.push(Submitted { copies_end: copies.len(), chains: chains.len() as u16, from });
    }
    if packets.is_empty() {
        return 0;
    }
    done_at.clear();
    let runs = packets
        .iter()
        .scan(0, |start, p| Some(&copies[std::mem::replace(start, p.copies_end)..p.copies_end]));
    dma::submit(ch, runs, done_at);
    let sent = done_at.len();
    // Packets the channel had no room for give their chains back.
    if let Some(first_unsent) = packets.get(sent) {
        b.vq.set_avail_pos(first_unsent.from);
    }
    let (packets, done_at) = (std::mem::take(packets), std::mem::take(done_at));
    let mut used = b.used.entries();
    for (i, (p, &at)) in packets.iter().zip(&done_at).enumerate() {
        let (mine, rest) = used.split_at(usize::from(p.chains));
        used = rest;
        if let Some(m) = pkts[i] {
            q.push(m, mine, ch, at, &b.vq.mem);
        }
    }
    (q.scratch.packets, q.scratch.done_at) = (packets, done_at);
    sent
}

/// The copies of packet `m`'s data into `segs` from position `pos` (after
/// the header), each within one device-contiguous run of guest memory;
/// false if a guest buffer has no device address.
fn dma_copies(
    mem: &GuestMemory,
    segs: &[GuestSlice<'_>],
    mut pos: (usize, u32),
    m: Mbuf,
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
/// ring returns nothing) and `rte_vhost_clear_queue(_thread_unsafe)` on an
/// RX ring: reaps channel `ch`, then returns in `out` the packets of ring
/// `qid` whose copies completed, in submission order, publishing their used
/// entries (if the ring is still enabled and translated: otherwise they are
/// dropped, as 22.11 does) and notifying the guest.
pub fn poll_enqueue_completed(dev: &Device, qid: u16, out: &mut [Option<Mbuf>], call: PollCall<'_>) -> u16 {
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
    let Some(mut q) = s.dma.take() else {
        vlog!(Data, Err, dev.ifname(), "{func}: async not registered for virtqueue {qid}.");
        return 0;
    };
    dma::reap(ch);
    let mut used = std::mem::take(&mut q.scratch.used);
    used.clear();
    let n = q.take_completed(out, &mut used);
    if n > 0 {
        let stats = dev.socket_flags() & flags::NET_STATS_ENABLE != 0;
        if let (true, Some(ring)) = (s.enabled, s.ring) {
            if ring.is_packed() {
                packed_ring::publish(&mut s, &ring, &used, true);
            } else {
                split_ring::publish(&mut s, &ring, &used);
            }
            notify_guest(&mut s, &ring, stats);
        }
        if stats {
            for m in out[..n].iter().flatten() {
                s.stats.count(m.pkt_len(), m.data());
            }
        }
        s.stats.inflight_completed += n as u64;
    }
    q.scratch.used = used;
    s.dma = Some(q);
    n as u16
}

/// `rte_vhost_clear_queue(_thread_unsafe)`: on an RX ring, what
/// `poll_enqueue_completed` does; the async dequeue (TX rings) is not
/// implemented.
pub fn clear_queue(dev: &Device, qid: u16, out: &mut [Option<Mbuf>], call: PollCall<'_>) -> u16 {
    let func = call.func;
    if u32::from(qid) >= dev.nr_vring() {
        vlog!(Data, Err, dev.ifname(), "{func}: invalid virtqueue idx {qid}.");
        return 0;
    }
    if qid & 1 == 1 {
        vlog!(Data, Err, dev.ifname(), "{func}: the async dequeue is not implemented");
        return 0;
    }
    poll_enqueue_completed(dev, qid, out, call)
}
