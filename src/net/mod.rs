//! The virtio-net datapath: `rte_vhost_enqueue_burst` (host → guest, the
//! guest's RX rings, even queue ids) and `rte_vhost_dequeue_burst` (guest →
//! host, TX rings, odd ids) on split and packed rings, with the virtio-net
//! header, mergeable RX buffers, multi-segment mbufs, RARP injection,
//! notification suppression and per-vring statistics.
//!
//! A burst takes the ring's lock with `try_lock` (no packets move while the
//! control plane changes the ring), reserves descriptor chains as bounded
//! segment lists (`virtqueue::chain`), copies, then publishes all used
//! entries with one release store and notifies the guest if it asked to be.
//! Reserving/walking, copying and publishing are separate steps so the async
//! (DMA) datapath can reuse the first and the last.

pub mod header;
pub mod stats;

use std::sync::atomic::Ordering;

use crate::device::features::*;
use crate::device::Device;
use crate::dpdk::mbuf::{self, Mbuf, Mempool};
use crate::memory::ring::{
    prefetch, prefetch_write, read_guest, read_guest_le, update_guest_le, write_guest, RingMem, Seg,
};
use crate::virtqueue::chain::{lone_buffer, walk_packed, walk_split, BufVec, ChainError, ChainInfo};
use crate::virtqueue::{EventFd, VqState};
use crate::vlog;
use header::NetHdr;

/// DPDK's MAX_PKT_BURST: packets moved per call at most.
pub const MAX_BURST: usize = 32;

const VRING_AVAIL_F_NO_INTERRUPT: u16 = 1;
const VRING_USED_F_NO_NOTIFY: u16 = 1;
const PACKED_F_AVAIL: u16 = 1 << 7;
const PACKED_F_USED: u16 = 1 << 15;
const EVENT_F_ENABLE: u16 = 0;
const EVENT_F_DISABLE: u16 = 1;
const EVENT_F_DESC: u16 = 2;

/// Size of the virtio-net header for the negotiated features.
fn hdr_len(vq: &VqState) -> u32 {
    if vq.has_feature(VIRTIO_NET_F_MRG_RXBUF) || vq.has_feature(VIRTIO_F_VERSION_1) || vq.is_packed() {
        12
    } else {
        10
    }
}

fn log_bad_chain(dev: &Device, vq: &mut VqState, e: ChainError) {
    vq.bad_chains += 1;
    if vq.bad_chains <= 8 {
        vlog!(Data, Err, dev.ifname(), "vring {}: dropping a malformed descriptor chain: {e}", vq.index);
    }
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
fn put(segs: &[Seg], mut pos: (usize, u32), mut src: &[u8]) -> (usize, u32) {
    while !src.is_empty() {
        let Some(seg) = segs.get(pos.0).copied() else { break };
        let room = (seg.len - pos.1) as usize;
        let n = room.min(src.len());
        write_guest(seg, pos.1, &src[..n]);
        src = &src[n..];
        pos.1 += n as u32;
        if pos.1 == seg.len {
            pos = (pos.0 + 1, 0);
        }
    }
    pos
}

/// Reads into `dst` from the segment list at (seg, off); returns the new
/// position and how many bytes were read.
#[inline]
fn get(segs: &[Seg], mut pos: (usize, u32), dst: &mut [u8]) -> ((usize, u32), usize) {
    let mut done = 0;
    while done < dst.len() {
        let Some(seg) = segs.get(pos.0).copied() else { break };
        let n = ((seg.len - pos.1) as usize).min(dst.len() - done);
        read_guest(seg, pos.1, &mut dst[done..done + n]);
        done += n;
        pos.1 += n as u32;
        if pos.1 == seg.len {
            pos = (pos.0 + 1, 0);
        }
    }
    (pos, done)
}

/// Marks the guest pages behind `segs` dirty (migration logging).
fn log_segments(log: &crate::migration::dirty_log::DirtyLog, mem: &crate::memory::GuestMemory, segs: &[Seg]) {
    for s in segs {
        if let Some(gpa) = mem.hva_to_gpa(s.hva, u64::from(s.len)) {
            log.mark(gpa, u64::from(s.len));
        }
    }
}

/// Prefetches the start of guest buffer `d` (header and the first 116 bytes
/// of the packet). On enqueue the packet's lines are fetched for writing; the
/// header's only for reading, as it is usually left as it is.
#[inline]
fn prefetch_buffer(mem: &crate::memory::GuestMemory, d: crate::memory::ring::Desc, write: bool) {
    if let Some((hva, n)) = mem.gpa_to_hva(d.addr, u64::from(d.len.min(128))) {
        let last = hva + n.saturating_sub(1);
        prefetch(hva);
        if write {
            prefetch_write(hva + 12.min(n.saturating_sub(1)));
            prefetch_write(last);
        } else {
            prefetch(last);
        }
    }
}

/// Prefetches the buffers of the `n` split chains from avail position `pos`
/// on, at the start of a burst: the misses on lines the guest's core last
/// touched then overlap each other instead of stalling packet by packet.
fn prefetch_split_burst(ring: &RingMem, mem: &crate::memory::GuestMemory, pos: u16, n: usize, write: bool) {
    for j in 0..n {
        prefetch_buffer(mem, ring.read_split_desc(ring.split_avail_ring(pos.wrapping_add(j as u16))), write);
    }
}

/// Writes the virtio-net header at the start of the segments; returns the
/// position after it.
#[inline]
fn put_header(segs: &[Seg], hdr: NetHdr, hlen: u32) -> (usize, u32) {
    match segs.first() {
        Some(&first) if first.len >= hlen => {
            update_guest_le(first, 0, hdr.to_le(), hlen as usize);
            if first.len == hlen {
                (1, 0)
            } else {
                (0, hlen)
            }
        }
        _ => put(segs, (0, 0), &hdr.to_le().to_le_bytes()[..hlen as usize]),
    }
}

/// Reads the virtio-net header at the start of the segments; returns it and
/// the position after it.
#[inline]
fn get_header(segs: &[Seg], hlen: u32) -> (NetHdr, (usize, u32)) {
    match segs.first() {
        Some(&first) if first.len >= hlen => {
            let hdr = NetHdr::from_le(read_guest_le(first, 0, hlen as usize));
            (hdr, if first.len == hlen { (1, 0) } else { (0, hlen) })
        }
        _ => {
            let mut b = [0u8; 16];
            let (pos, _) = get(segs, (0, 0), &mut b[..hlen as usize]);
            (NetHdr::from_le(u128::from_le_bytes(b)), pos)
        }
    }
}

/// Copies header + packet into the reserved guest segments.
fn copy_to_guest(segs: &[Seg], hdr: NetHdr, hlen: u32, m: Mbuf) {
    // The common case, without the segment walk: a one-segment mbuf and a
    // first guest buffer that holds header and packet. (Tested before
    // `put_header`, whose position bookkeeping this case does not need.)
    if let (Some(&first), None) = (segs.first(), m.next()) {
        let data = m.data();
        if first.len as usize >= hlen as usize + data.len() {
            update_guest_le(first, 0, hdr.to_le(), hlen as usize);
            write_guest(first, hlen, data);
            return;
        }
    }
    let mut pos = put_header(segs, hdr, hlen);
    let mut seg = Some(m);
    while let Some(s) = seg {
        pos = put(segs, pos, s.data());
        seg = s.next();
    }
}

/// Copies a guest packet (after its header, at `pos`) into `head` and more
/// mbufs from `pool` as needed.
fn copy_from_guest(
    segs: &[Seg],
    mut pos: (usize, u32),
    mut left: u64,
    head: &mut Mbuf,
    pool: Mempool,
) -> Result<(), &'static str> {
    let total = left;
    let mut cur = *head;
    while left > 0 {
        if cur.tailroom() == 0 {
            let next = mbuf::alloc(pool).ok_or("failed to allocate an mbuf segment")?;
            Mbuf::chain(head, &mut cur, next);
            cur = next;
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
// Used-ring publication and guest notification.

/// `vring_need_event`: whether moving used from `old` to `new` crosses the
/// event index the guest asked for.
#[inline]
fn need_event(event: u16, new: u16, old: u16) -> bool {
    new.wrapping_sub(event).wrapping_sub(1) < new.wrapping_sub(old)
}

/// Decides whether the guest wants an interrupt now (split or packed).
fn wants_notification(vq: &mut VqState, ring: &RingMem) -> bool {
    let event_idx = vq.has_feature(VIRTIO_RING_F_EVENT_IDX);
    if !vq.is_packed() {
        if event_idx {
            let new = ring.split_used_idx();
            let old = vq.signalled_used;
            let valid = vq.signalled_used_valid;
            vq.signalled_used = new;
            vq.signalled_used_valid = true;
            return !valid || need_event(ring.split_used_event(), new, old);
        }
        return ring.split_avail_flags() & VRING_AVAIL_F_NO_INTERRUPT == 0;
    }
    let (off_wrap, flags) = ring.packed_driver_event();
    if !event_idx || flags != EVENT_F_DESC {
        return flags != EVENT_F_DISABLE;
    }
    let new = vq.last_used_idx;
    let mut old = vq.signalled_used;
    let valid = vq.signalled_used_valid;
    vq.signalled_used = new;
    vq.signalled_used_valid = true;
    if !valid {
        return true;
    }
    if new <= old {
        old = old.wrapping_sub(vq.size);
    }
    let mut off = off_wrap & 0x7fff;
    if vq.used_wrap_counter != (off_wrap >> 15 == 1) {
        off = off.wrapping_sub(vq.size);
    }
    need_event(off, new, old)
}

/// Kicks the guest through the call eventfd if it wants it.
fn notify_guest(vq: &mut VqState, ring: &RingMem, stats: bool) {
    if wants_notification(vq, ring) {
        signal(vq, stats);
    }
}

fn signal(vq: &mut VqState, stats: bool) {
    if let EventFd::Fd(fd) = &vq.call {
        // An eventfd write of 1; EAGAIN (counter saturated) needs no retry.
        let _ = nix::unistd::write(fd, &1u64.to_ne_bytes());
        if stats {
            vq.stats.guest_notifications += 1;
        }
    }
}

// --------------------------------------------------------------------------
// Split ring.

/// Available entries on a split ring, or `None` if the guest's index is
/// nonsense (more than a ring ahead).
fn split_avail(vq: &VqState, ring: &RingMem) -> Option<u16> {
    let n = ring.split_avail_idx().wrapping_sub(vq.last_avail_idx);
    (n <= vq.size).then_some(n)
}

/// Gathers enough split-ring chains, from the next available one on, for a
/// packet of `needed` bytes (several only when `mergeable`) into `bufs`;
/// `avail` and `room` (used entries left in the burst) bound it. `false` if
/// the packet cannot be placed now.
#[allow(clippy::too_many_arguments)]
fn reserve_split(
    dev: &Device,
    vq: &mut VqState,
    ring: &RingMem,
    mem: &crate::memory::GuestMemory,
    bufs: &mut BufVec,
    needed: u64,
    avail: &mut u16,
    room: usize,
) -> bool {
    let mergeable = vq.has_feature(VIRTIO_NET_F_MRG_RXBUF);
    bufs.clear();
    while bufs.total() < needed {
        if *avail == 0 || (!mergeable && bufs.nchains == 1) || bufs.nchains == room {
            return false;
        }
        let head = ring.split_avail_ring(vq.last_avail_idx.wrapping_add(bufs.nchains as u16));
        let before = bufs.total();
        if let Err(e) = walk_split(mem, vq.size, head, |i| ring.read_split_desc(i), bufs) {
            log_bad_chain(dev, vq, e);
            return false;
        }
        if !bufs.push_chain(head, 1, before) {
            return false;
        }
        *avail -= 1;
    }
    true
}

fn split_enqueue(
    dev: &Device,
    vq: &mut VqState,
    bufs: &mut BufVec,
    pkts: &[Option<Mbuf>],
    stats: bool,
) -> usize {
    let ring = vq.ring_mem();
    let Some(mut avail) = split_avail(vq, &ring) else {
        log_bad_chain(dev, vq, ChainError::IndexOutOfRange);
        return 0;
    };
    let hlen = hdr_len(vq);
    let mem = vq.mem.clone();
    let log = vq.active_log();
    prefetch_split_burst(&ring, &mem, vq.last_avail_idx, pkts.len().min(usize::from(avail)), true);
    let mut used = UsedBatch::default();
    let mut done = 0;
    for &p in pkts {
        // A NULL entry ends the burst.
        let Some(m) = p else { break };
        let needed = u64::from(m.pkt_len()) + u64::from(hlen);
        // The common case needs no walk: the next chain is one buffer that
        // holds header and packet.
        let head = ring.split_avail_ring(vq.last_avail_idx);
        let lone = (avail > 0 && used.room() > 0 && head < vq.size)
            .then(|| lone_buffer(&mem, &ring.read_split_desc(head), needed))
            .flatten();
        let one;
        let (segs, chains) = match lone {
            Some(seg) => {
                avail -= 1;
                one = LoneChain::new(seg, head);
                one.parts()
            }
            None => {
                if !reserve_split(dev, vq, &ring, &mem, bufs, needed, &mut avail, used.room()) {
                    break;
                }
                (bufs.segs(), &bufs.chains[..bufs.nchains])
            }
        };
        place_packet(&mem, log.as_deref(), segs, chains, hlen, m, &mut used);
        vq.last_avail_idx = vq.last_avail_idx.wrapping_add(chains.len() as u16);
        if stats {
            vq.stats.count(m.pkt_len(), m.data());
        }
        done += 1;
    }
    if done > 0 {
        split_publish(vq, &ring, used.entries());
        notify_guest(vq, &ring, stats);
    }
    done
}

/// Writes used entries (head id, length) from the ring's used index on, then
/// publishes them all with one release store of used->idx. Batched at the
/// end of a burst, so the lines the guest polls are written once per burst.
fn split_publish(vq: &mut VqState, ring: &RingMem, entries: &[UsedElem]) {
    let log = vq.active_log();
    for e in entries {
        ring.split_write_used(vq.last_used_idx, u32::from(e.id), e.len);
        if let Some(log) = &log {
            vq.log_ring_write(log, 4 + 8 * u64::from(vq.last_used_idx % vq.size), 8);
        }
        vq.last_used_idx = vq.last_used_idx.wrapping_add(1);
    }
    ring.split_set_used_idx(vq.last_used_idx);
    if let Some(log) = &log {
        vq.log_ring_write(log, 2, 2);
    }
}

fn split_dequeue(
    dev: &Device,
    vq: &mut VqState,
    bufs: &mut BufVec,
    pool: Mempool,
    out: &mut [Option<Mbuf>],
    opts: DequeueOpts,
) -> usize {
    let ring = vq.ring_mem();
    let Some(avail) = split_avail(vq, &ring) else {
        log_bad_chain(dev, vq, ChainError::IndexOutOfRange);
        return 0;
    };
    let n = out.len().min(usize::from(avail)).min(MAX_BURST);
    if n == 0 {
        return 0;
    }
    let mem = vq.mem.clone();
    // The buffers' misses overlap the mbuf allocation.
    prefetch_split_burst(&ring, &mem, vq.last_avail_idx, n, false);
    if !mbuf::alloc_bulk(pool, &mut out[..n]) {
        return 0;
    }
    let hlen = hdr_len(vq);
    let mut used = UsedBatch::default();
    let mut done = 0;
    for i in 0..n {
        let head = ring.split_avail_ring(vq.last_avail_idx);
        vq.last_avail_idx = vq.last_avail_idx.wrapping_add(1);
        // The common case needs no walk: one buffer, header and packet.
        let lone = (head < vq.size)
            .then(|| lone_buffer(&mem, &ring.read_split_desc(head), u64::from(hlen) + 1))
            .flatten();
        let res = match lone {
            Some(seg) => fill_mbuf(&[seg], u64::from(seg.len), hlen, out[i], pool, opts),
            None => {
                bufs.clear();
                walk_split(&mem, vq.size, head, |i| ring.read_split_desc(i), bufs)
                    .map_err(DropReason::Chain)
                    .and_then(|()| fill_mbuf(bufs.segs(), bufs.total(), hlen, out[i], pool, opts))
            }
        };
        used.push(head, 0, 1);
        account_dequeued(dev, vq, out, i, &mut done, res, opts.stats);
    }
    release_unused(out, done, n);
    split_publish(vq, &ring, used.entries());
    notify_guest(vq, &ring, opts.stats);
    done
}

// --------------------------------------------------------------------------
// Packed ring.

#[inline]
fn packed_available(ring: &RingMem, slot: u16, wrap: bool) -> bool {
    let f = ring.packed_flags(slot);
    (f & PACKED_F_AVAIL != 0) == wrap && (f & PACKED_F_USED != 0) != wrap
}

/// How many consecutive descriptors from the next one the guest has made
/// available, up to `max`; each one's buffer is prefetched on the way (as
/// `prefetch_split_burst` does for split rings).
fn packed_scan_available(
    vq: &VqState,
    ring: &RingMem,
    mem: &crate::memory::GuestMemory,
    max: usize,
    write: bool,
) -> usize {
    let (mut slot, mut wrap) = (vq.last_avail_idx, vq.avail_wrap_counter);
    let mut n = 0;
    while n < max && packed_available(ring, slot, wrap) {
        prefetch_buffer(mem, ring.read_packed_desc(slot), write);
        n += 1;
        advance(&mut slot, &mut wrap, 1, vq.size);
    }
    n
}

fn advance(idx: &mut u16, wrap: &mut bool, by: u16, size: u16) {
    *idx += by;
    if *idx >= size {
        *idx -= size;
        *wrap = !*wrap;
    }
}

/// Used flags for a descriptor written with the current used wrap counter.
fn used_flags(wrap: bool, write: bool) -> u16 {
    let w = if write { crate::virtqueue::chain::F_WRITE } else { 0 };
    if wrap {
        PACKED_F_AVAIL | PACKED_F_USED | w
    } else {
        w
    }
}

/// Publishes used entries (slot, id, len, desc count) written relaxed, the
/// first one's flags last with release so the guest sees a whole batch.
fn packed_publish(vq: &mut VqState, ring: &RingMem, entries: &[UsedElem], write: bool) {
    let log = vq.active_log();
    let (mut slot, mut wrap, size) = (vq.last_used_idx, vq.used_wrap_counter, vq.size);
    let first = (slot, used_flags(wrap, write));
    for (i, e) in entries.iter().enumerate() {
        let flags = used_flags(wrap, write);
        // The first entry still reads as not used until the batch is written.
        let flags = if i == 0 { flags ^ (PACKED_F_AVAIL | PACKED_F_USED) } else { flags };
        ring.packed_write_used(slot, e.id, e.len, flags, false);
        if let Some(log) = &log {
            vq.log_ring_write(log, u64::from(slot) * 16, 16);
        }
        advance(&mut slot, &mut wrap, e.count, size);
    }
    (vq.last_used_idx, vq.used_wrap_counter) = (slot, wrap);
    if !entries.is_empty() {
        ring.packed_set_flags_release(first.0, first.1);
    }
}

/// Gathers enough packed-ring chains, from the next available slot on, for
/// a packet of `needed` bytes (several only when `mergeable`) into `bufs`;
/// returns the slot and wrap counter after them, or `None` if the packet
/// cannot be placed now (`room`: used entries left in the burst).
fn reserve_packed(
    dev: &Device,
    vq: &mut VqState,
    ring: &RingMem,
    mem: &crate::memory::GuestMemory,
    bufs: &mut BufVec,
    needed: u64,
    room: usize,
) -> Option<(u16, bool)> {
    let mergeable = vq.has_feature(VIRTIO_NET_F_MRG_RXBUF);
    let (mut slot, mut wrap) = (vq.last_avail_idx, vq.avail_wrap_counter);
    bufs.clear();
    while bufs.total() < needed {
        if (!mergeable && bufs.nchains == 1) || bufs.nchains == room || !packed_available(ring, slot, wrap) {
            return None;
        }
        let before = bufs.total();
        match walk_packed(mem, vq.size, slot, |i| ring.read_packed_desc(i), bufs) {
            Ok(c) if bufs.push_chain(c.id, c.count, before) => {
                advance(&mut slot, &mut wrap, c.count, vq.size)
            }
            Ok(_) => return None,
            Err(e) => {
                log_bad_chain(dev, vq, e);
                return None;
            }
        }
    }
    Some((slot, wrap))
}

fn packed_enqueue(
    dev: &Device,
    vq: &mut VqState,
    bufs: &mut BufVec,
    pkts: &[Option<Mbuf>],
    stats: bool,
) -> usize {
    let ring = vq.ring_mem();
    let hlen = hdr_len(vq);
    let mem = vq.mem.clone();
    // Descriptors known available, and how many of them are taken so far.
    let ahead = packed_scan_available(vq, &ring, &mem, pkts.len(), true);
    let mut taken = 0usize;
    let mut used = UsedBatch::default();
    let mut done = 0;
    let log = vq.active_log();
    for &p in pkts {
        let Some(m) = p else { break };
        let needed = u64::from(m.pkt_len()) + u64::from(hlen);
        let (mut slot, mut wrap) = (vq.last_avail_idx, vq.avail_wrap_counter);
        // The common case needs no walk: one descriptor holding it all.
        let lone = (used.room() > 0 && (taken < ahead || packed_available(&ring, slot, wrap)))
            .then(|| {
                let d = ring.read_packed_desc(slot);
                lone_buffer(&mem, &d, needed).map(|seg| (seg, d.next_or_id))
            })
            .flatten();
        let one;
        let (segs, chains) = match lone {
            Some((seg, id)) => {
                advance(&mut slot, &mut wrap, 1, vq.size);
                taken += 1;
                one = LoneChain::new(seg, id);
                one.parts()
            }
            None => {
                let Some(next) = reserve_packed(dev, vq, &ring, &mem, bufs, needed, used.room()) else {
                    break;
                };
                (slot, wrap) = next;
                taken += bufs.chains[..bufs.nchains].iter().map(|c| usize::from(c.count)).sum::<usize>();
                (bufs.segs(), &bufs.chains[..bufs.nchains])
            }
        };
        place_packet(&mem, log.as_deref(), segs, chains, hlen, m, &mut used);
        vq.last_avail_idx = slot;
        vq.avail_wrap_counter = wrap;
        if stats {
            vq.stats.count(m.pkt_len(), m.data());
        }
        done += 1;
    }
    if done > 0 {
        packed_publish(vq, &ring, used.entries(), true);
        notify_guest(vq, &ring, stats);
    }
    done
}

fn packed_dequeue(
    dev: &Device,
    vq: &mut VqState,
    bufs: &mut BufVec,
    pool: Mempool,
    out: &mut [Option<Mbuf>],
    opts: DequeueOpts,
) -> usize {
    let ring = vq.ring_mem();
    let mem = vq.mem.clone();
    // Count the available descriptors first (an upper bound on the packets),
    // to allocate no more mbufs than can be filled; their buffers are
    // prefetched on the way, so the misses overlap the mbuf allocation.
    let n = packed_scan_available(vq, &ring, &mem, out.len().min(MAX_BURST), false);
    if n == 0 || !mbuf::alloc_bulk(pool, &mut out[..n]) {
        return 0;
    }
    let hlen = hdr_len(vq);
    let size = vq.size;
    let mut used = UsedBatch::default();
    let mut done = 0;
    // Descriptors taken so far: the first `n` are known to be available.
    let mut taken = 0usize;
    for i in 0..n {
        if taken >= n && !packed_available(&ring, vq.last_avail_idx, vq.avail_wrap_counter) {
            break;
        }
        let d = ring.read_packed_desc(vq.last_avail_idx);
        // The common case needs no walk: one descriptor, header and packet.
        let (count, id, res) = match lone_buffer(&mem, &d, u64::from(hlen) + 1) {
            Some(seg) => (1, d.next_or_id, fill_mbuf(&[seg], u64::from(seg.len), hlen, out[i], pool, opts)),
            None => {
                bufs.clear();
                match walk_packed(&mem, size, vq.last_avail_idx, |i| ring.read_packed_desc(i), bufs) {
                    Ok(c) => (c.count, c.id, fill_mbuf(bufs.segs(), bufs.total(), hlen, out[i], pool, opts)),
                    // A broken chain is returned as one slot so the ring moves on.
                    Err(e) => (1, d.next_or_id, Err(DropReason::Chain(e))),
                }
            }
        };
        advance(&mut vq.last_avail_idx, &mut vq.avail_wrap_counter, count, size);
        taken += usize::from(count);
        used.push(id, 0, count);
        account_dequeued(dev, vq, out, i, &mut done, res, opts.stats);
    }
    release_unused(out, done, n);
    if !used.entries().is_empty() {
        packed_publish(vq, &ring, used.entries(), false);
        notify_guest(vq, &ring, opts.stats);
    }
    done
}

// --------------------------------------------------------------------------
// Shared by both layouts.

/// A used entry to publish: the chain's head (split) or buffer id (packed),
/// the bytes written into it, and the ring slots it took (packed).
#[derive(Clone, Copy, Debug, Default)]
struct UsedElem {
    id: u16,
    len: u32,
    count: u16,
}

/// The used entries of one burst, published together at its end.
struct UsedBatch {
    elems: [UsedElem; MAX_BURST * 4],
    n: usize,
}

impl Default for UsedBatch {
    fn default() -> Self {
        UsedBatch { elems: [UsedElem::default(); MAX_BURST * 4], n: 0 }
    }
}

impl UsedBatch {
    /// Entries that can still be added.
    fn room(&self) -> usize {
        self.elems.len() - self.n
    }
    /// Adds an entry; the callers never exceed `room()`.
    fn push(&mut self, id: u16, len: u32, count: u16) {
        self.elems[self.n] = UsedElem { id, len, count };
        self.n += 1;
    }
    fn entries(&self) -> &[UsedElem] {
        &self.elems[..self.n]
    }
}

/// The segment and chain record of a chain resolved by `lone_buffer`.
struct LoneChain {
    seg: [Seg; 1],
    chain: [ChainInfo; 1],
}

impl LoneChain {
    fn new(seg: Seg, id: u16) -> LoneChain {
        LoneChain { seg: [seg], chain: [ChainInfo { id, count: 1, cap: seg.len }] }
    }
    fn parts(&self) -> (&[Seg], &[ChainInfo]) {
        (&self.seg, &self.chain)
    }
}

/// Enqueue of one packet into its reserved `chains` (whose buffers are
/// `segs`): header and data copied, pages logged, used entries recorded
/// (each chain filled in turn, the last one partly).
fn place_packet(
    mem: &crate::memory::GuestMemory,
    log: Option<&crate::migration::dirty_log::DirtyLog>,
    segs: &[Seg],
    chains: &[ChainInfo],
    hlen: u32,
    m: Mbuf,
    used: &mut UsedBatch,
) {
    let mut hdr = header::for_mbuf(&m);
    hdr.num_buffers = chains.len() as u16;
    copy_to_guest(segs, hdr, hlen, m);
    if let Some(log) = log {
        log_segments(log, mem, segs);
    }
    let mut left = u64::from(m.pkt_len()) + u64::from(hlen);
    for c in chains {
        let len = u64::from(c.cap).min(left);
        left -= len;
        used.push(c.id, len as u32, c.count);
    }
}

/// Why a dequeued slot carries no packet.
#[derive(Clone, Copy, Debug)]
enum DropReason {
    Chain(ChainError),
    Packet(&'static str),
}

impl std::fmt::Display for DropReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DropReason::Chain(e) => e.fmt(f),
            DropReason::Packet(why) => f.write_str(why),
        }
    }
}

/// Accounts dequeued slot `i`: a good packet moves up to the front of
/// `out`, a bad one is counted and logged (its mbuf is released later).
fn account_dequeued(
    dev: &Device,
    vq: &mut VqState,
    out: &mut [Option<Mbuf>],
    i: usize,
    done: &mut usize,
    res: Result<(), DropReason>,
    stats: bool,
) {
    match res {
        Ok(()) => {
            if let (true, Some(m)) = (stats, out[i]) {
                vq.stats.count(m.pkt_len(), m.data());
            }
            out.swap(*done, i);
            *done += 1;
        }
        Err(e) => {
            vq.bad_chains += 1;
            if vq.bad_chains <= 8 {
                vlog!(Data, Err, dev.ifname(), "vring {}: dropping a packet: {e}", vq.index);
            }
        }
    }
}

/// Returns the mbufs allocated for slots `done..n` that carry no packet.
fn release_unused(out: &mut [Option<Mbuf>], done: usize, n: usize) {
    mbuf::free_bulk(&out[done..n]);
    out[done..n].fill(None);
}

/// DPDK's `virtio_net_with_host_offload`: any of these negotiated makes the
/// dequeue path apply the guest's virtio-net header.
const HOST_OFFLOAD_FEATURES: u64 = bit(VIRTIO_NET_F_CSUM)
    | bit(VIRTIO_NET_F_HOST_ECN)
    | bit(VIRTIO_NET_F_HOST_TSO4)
    | bit(VIRTIO_NET_F_HOST_TSO6)
    | bit(VIRTIO_NET_F_HOST_UFO);

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

/// DPDK's `virtio_dev_pktmbuf_prep`: makes the fresh mbuf `m` ready for a
/// `len`-byte packet. Beyond its tailroom, an external buffer is attached if
/// allowed; failing that, the packet is chained unless linear buffers were
/// asked for, in which case it is dropped.
fn prep_mbuf(m: &mut Mbuf, len: u64, opts: DequeueOpts) -> Result<(), &'static str> {
    if m.tailroom() as u64 >= len || (opts.extbuf && m.attach_extbuf(len)) || !opts.linear {
        return Ok(());
    }
    Err("packet larger than the mbuf data room (linear buffers, no external buffer)")
}

/// Fills mbuf `m` (fresh from the pool) from the gathered guest buffers:
/// skips and interprets the virtio-net header, copies the payload.
fn fill_mbuf(
    segs: &[Seg],
    total: u64,
    hlen: u32,
    m: Option<Mbuf>,
    pool: Mempool,
    opts: DequeueOpts,
) -> Result<(), DropReason> {
    // The common case, inline: one guest buffer whose packet fits the mbuf.
    if let ([seg], Some(mut mb)) = (segs, m) {
        let len = total.wrapping_sub(u64::from(hlen));
        if total > u64::from(hlen) && total <= u64::from(seg.len) && len <= mb.tailroom() as u64 {
            let hdr = NetHdr::from_le(read_guest_le(*seg, 0, hlen as usize));
            read_guest(*seg, hlen, mb.tail_mut(len as usize));
            mb.commit(len as usize);
            mb.set_pkt_len(len as u32);
            if opts.host_offload {
                header::apply_to_mbuf(&hdr, &mut mb, opts.compliant);
            }
            return Ok(());
        }
    }
    fill_mbuf_chained(segs, total, hlen, m, pool, opts)
}

/// `fill_mbuf` for everything else: several guest segments, external or
/// chained mbufs, drops.
#[inline(never)]
fn fill_mbuf_chained(
    segs: &[Seg],
    total: u64,
    hlen: u32,
    m: Option<Mbuf>,
    pool: Mempool,
    opts: DequeueOpts,
) -> Result<(), DropReason> {
    let fill = || {
        if total <= u64::from(hlen) {
            return Err("descriptor chain shorter than the virtio-net header");
        }
        let (hdr, pos) = get_header(segs, hlen);
        let mut m = m.ok_or("no mbuf")?;
        let len = total - u64::from(hlen);
        prep_mbuf(&mut m, len, opts)?;
        copy_from_guest(segs, pos, len, &mut m, pool)?;
        if opts.host_offload {
            header::apply_to_mbuf(&hdr, &mut m, opts.compliant);
        }
        Ok(())
    };
    fill().map_err(DropReason::Packet)
}

/// `rte_vhost_enqueue_burst`: copies up to 32 packets into the guest's RX
/// ring `qid`; returns how many. The caller keeps ownership of the mbufs.
pub fn enqueue_burst(dev: &Device, qid: u16, pkts: &[Option<Mbuf>]) -> u16 {
    let Some(vq) = burst_vq(dev, qid, false, "rte_vhost_enqueue_burst") else { return 0 };
    let Some(mut s) = vq.try_lock() else { return 0 };
    if !s.enabled || !s.rings_ok() {
        return 0;
    }
    let stats = dev.socket_flags() & flags::NET_STATS_ENABLE != 0;
    let mut bufs = s.bufs.take().unwrap_or_default();
    let pkts = &pkts[..pkts.len().min(MAX_BURST)];
    let n = if s.is_packed() {
        packed_enqueue(dev, &mut s, &mut bufs, pkts, stats)
    } else {
        split_enqueue(dev, &mut s, &mut bufs, pkts, stats)
    };
    s.bufs = Some(bufs);
    n as u16
}

/// `rte_vhost_dequeue_burst`: up to `out.len()` (≤ 32) packets from the
/// guest's TX ring `qid` into mbufs from `pool`, RARP first if requested.
pub fn dequeue_burst(dev: &Device, qid: u16, pool: Mempool, out: &mut [Option<Mbuf>]) -> u16 {
    let Some(vq) = burst_vq(dev, qid, true, "rte_vhost_dequeue_burst") else { return 0 };
    let Some(mut s) = vq.try_lock() else { return 0 };
    if !s.enabled || !s.rings_ok() || out.is_empty() {
        return 0;
    }
    let sf = dev.socket_flags();
    let opts = DequeueOpts {
        stats: sf & flags::NET_STATS_ENABLE != 0,
        compliant: sf & flags::NET_COMPLIANT_OL_FLAGS != 0,
        extbuf: sf & flags::EXTBUF_SUPPORT != 0,
        linear: sf & flags::LINEARBUF_SUPPORT != 0,
        host_offload: s.features & HOST_OFFLOAD_FEATURES != 0,
    };
    let out_len = out.len().min(MAX_BURST);
    let mut first = 0;
    if dev.broadcast_rarp.load(Ordering::Acquire)
        && dev.broadcast_rarp.compare_exchange(true, false, Ordering::AcqRel, Ordering::Relaxed).is_ok()
    {
        let mac = *dev.rarp_mac.lock();
        match mbuf::make_rarp(pool, &mac) {
            Some(m) => {
                out[0] = Some(m);
                first = 1;
            }
            None => vlog!(Data, Err, dev.ifname(), "failed to make RARP packet."),
        }
    }
    let mut bufs = s.bufs.take().unwrap_or_default();
    let slots = &mut out[first..out_len];
    let n = if s.is_packed() {
        packed_dequeue(dev, &mut s, &mut bufs, pool, slots, opts)
    } else {
        split_dequeue(dev, &mut s, &mut bufs, pool, slots, opts)
    };
    s.bufs = Some(bufs);
    (n + first) as u16
}

/// `rte_vhost_avail_entries` / `rte_vhost_rx_queue_count`: entries the guest
/// made available that the back-end has not used yet.
pub fn avail_entries(dev: &Device, qid: u16) -> u16 {
    let Some(vq) = dev.vq(qid) else { return 0 };
    let s = vq.lock();
    if !s.enabled || !s.rings_ok() {
        return 0;
    }
    if s.is_packed() {
        return 0;
    }
    s.ring_mem().split_avail_idx().wrapping_sub(s.last_avail_idx).min(s.size)
}

/// `rte_vhost_enable_guest_notification`: ask the guest to kick us (or not)
/// when it adds buffers.
pub fn set_guest_notification(dev: &Device, qid: u16, enable: bool) -> i32 {
    let Some(vq) = dev.vq(qid) else { return -1 };
    let mut s = vq.lock();
    s.notif_enable = Some(enable);
    if !s.rings_ok() {
        return -1;
    }
    let ring = s.ring_mem();
    if s.is_packed() {
        let flags = if !enable {
            EVENT_F_DISABLE
        } else if s.has_feature(VIRTIO_RING_F_EVENT_IDX) {
            EVENT_F_DESC
        } else {
            EVENT_F_ENABLE
        };
        let off_wrap = s.last_avail_idx | (u16::from(s.avail_wrap_counter) << 15);
        ring.packed_set_device_event(off_wrap, flags);
    } else if s.has_feature(VIRTIO_RING_F_EVENT_IDX) {
        if enable {
            ring.split_set_avail_event(s.last_avail_idx);
        }
    } else {
        ring.split_set_used_flags(if enable { 0 } else { VRING_USED_F_NO_NOTIFY });
    }
    0
}

/// `rte_vhost_vring_call`: notify the guest about used entries (if it wants).
pub fn vring_call(dev: &Device, qid: u16, block: bool) -> i32 {
    let Some(vq) = dev.vq(qid) else { return -1 };
    let s = if block { Some(vq.lock()) } else { vq.try_lock() };
    let Some(mut s) = s else { return -libc::EAGAIN };
    if !s.rings_ok() {
        return -1;
    }
    let stats = dev.socket_flags() & flags::NET_STATS_ENABLE != 0;
    let ring = s.ring_mem();
    notify_guest(&mut s, &ring, stats);
    0
}

/// What `rte_vhost_get_monitor_addr` reports: wait until `*addr & mask`
/// (`size` bytes) equals (`is_match` = 1) or differs from (0) `val`.
#[derive(Clone, Copy, Debug)]
pub struct MonitorCond {
    pub addr: u64,
    pub val: u64,
    pub mask: u64,
    pub size: u8,
    pub is_match: u8,
}

/// The address a power-management loop may monitor for new buffers.
pub fn monitor_cond(dev: &Device, qid: u16) -> Option<MonitorCond> {
    let s = dev.vq(qid)?.lock();
    if !s.rings_ok() {
        return None;
    }
    Some(if s.is_packed() {
        MonitorCond {
            addr: s.desc + u64::from(s.last_avail_idx) * 16 + 14,
            val: u64::from(if s.avail_wrap_counter { PACKED_F_AVAIL } else { PACKED_F_USED }),
            mask: u64::from(PACKED_F_AVAIL | PACKED_F_USED),
            size: 2,
            is_match: 1,
        }
    } else {
        MonitorCond {
            addr: s.avail + 2,
            val: u64::from(s.last_avail_idx & (s.size - 1)),
            mask: u64::from(s.size - 1),
            size: 2,
            is_match: 0,
        }
    })
}

fn stats_enabled(dev: &Device, qid: u16) -> bool {
    u32::from(qid) < dev.nr_vring() && dev.socket_flags() & flags::NET_STATS_ENABLE != 0
}

/// Per-vring stat values (`None` unless stats are enabled and the ring exists).
pub fn vring_stats(dev: &Device, qid: u16) -> Option<[u64; 17]> {
    if !stats_enabled(dev, qid) {
        return None;
    }
    let s = dev.vq(qid)?.lock();
    s.rings_ok().then(|| s.stats.values())
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
    s.stats = stats::VringStats::default();
    0
}
