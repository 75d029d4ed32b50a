//! The packed ring (virtio 1.1 section 2.7): one descriptor ring whose
//! entries the guest makes available and the device marks used in place,
//! tracked by wrap counters.

use super::*;

/// The virtio-net header on a packed ring: always the 12-byte one, as the
/// packed layout comes with VIRTIO_F_VERSION_1 (`hdr_len` agrees). As a
/// constant, the batch paths' header accesses compile to fixed-size ones.
const PACKED_HDR_LEN: u32 = 12;

/// The AVAIL/USED flag pair of a descriptor the guest made available in
/// the round of wrap counter `wrap` (AVAIL equal to it, USED not).
#[inline(always)]
fn avail_pattern(wrap: bool) -> u16 {
    if wrap {
        PACKED_F_AVAIL
    } else {
        PACKED_F_USED
    }
}

/// Whether descriptor flags `f` say the guest made it available in the
/// round of wrap counter `wrap`.
#[inline(always)]
fn made_available(f: u16, wrap: bool) -> bool {
    f & (PACKED_F_AVAIL | PACKED_F_USED) == avail_pattern(wrap)
}

#[inline(always)]
fn packed_available(ring: &RingMem, slot: u16, wrap: bool) -> bool {
    made_available(ring.packed_flags(slot), wrap)
}

/// How many consecutive descriptors from the next one the guest has made
/// available, up to `max` (an upper bound on the packets a dequeue takes).
fn count_available(vq: &VqState, ring: &RingMem, max: usize) -> usize {
    let (slot, wrap) = (vq.last_avail_idx, vq.avail_wrap_counter);
    // Up to the end of the ring, then on from slot 0 in the next round.
    let before_end = usize::from(ring.size().saturating_sub(slot)).min(max);
    let n = ring.packed_flags_run(slot, before_end).take_while(|&f| made_available(f, wrap)).count();
    if n < before_end {
        return n;
    }
    n + ring.packed_flags_run(0, max - n).take_while(|&f| made_available(f, !wrap)).count()
}

/// Prefetches the buffers of the `n` descriptors from the next available
/// slot on (known to be available), at the start of a dequeue burst as
/// split rings do: their misses, on lines the guest's core last wrote, then
/// overlap each other and the mbuf allocation instead of stalling batch by
/// batch.
fn prefetch_packed_burst(vq: &VqState, ring: &RingMem, mem: &crate::guest::GuestMemory, n: usize) {
    let (mut slot, mut wrap) = (vq.last_avail_idx, vq.avail_wrap_counter);
    for _ in 0..n {
        prefetch_buffer(mem, ring.read_packed_desc(slot), false);
        advance(&mut slot, &mut wrap, 1, ring.size());
    }
}

/// Descriptors taken as one batch: four 16-byte descriptors are one cache
/// line of the ring (DPDK's PACKED_BATCH_SIZE).
const BATCH: usize = 4;

/// The next `BATCH` descriptors as lone buffers (`lone_buffer`) of at least
/// `needed[k]` bytes each: their buffers and ids. `None` if the next slot is
/// not a multiple of `BATCH` (the batch would not be one line, or would
/// wrap), if any of them is not available, or if any needs the full walk;
/// the caller then takes them one by one. All four flags are checked before
/// any descriptor is read. For an enqueue (`write`) the buffers are
/// prefetched for writing here; a dequeue burst prefetched all of its
/// buffers at its start (`prefetch_packed_burst`).
#[inline(always)]
fn take_batch(
    vq: &VqState,
    ring: &RingMem,
    mem: &crate::guest::GuestMemory,
    needed: [u64; BATCH],
    write: bool,
) -> Option<[(Seg, u16); BATCH]> {
    let line = ring.packed_line::<BATCH>(vq.last_avail_idx)?;
    let wrap = vq.avail_wrap_counter;
    if !line.flags().iter().fold(true, |all, &f| all & made_available(f, wrap)) {
        return None;
    }
    let descs = line.read();
    let mut bufs = [(Seg::default(), 0); BATCH];
    for ((b, d), need) in bufs.iter_mut().zip(&descs).zip(needed) {
        *b = (lone_buffer(mem, d, need)?, d.next_or_id);
    }
    if write {
        for (seg, _) in &bufs {
            prefetch_segment(*seg, true);
        }
    }
    Some(bufs)
}

/// Moves ring position (`idx`, `wrap`) on by `by` slots. Computed in 32
/// bits from a zero-extended load: a 16-bit add in place compiles to a
/// 32-bit load of the u16, which cannot be forwarded from the 16-bit store
/// of the previous step and so waits for the store buffer to drain (behind
/// stores to ring lines the guest's core holds).
#[inline(always)]
fn advance(idx: &mut u16, wrap: &mut bool, by: u16, size: u16) {
    let next = u32::from(*idx) + u32::from(by);
    if next >= u32::from(size) {
        *idx = (next - u32::from(size)) as u16;
        *wrap = !*wrap;
    } else {
        *idx = next as u16;
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
    if entries.is_empty() {
        return;
    }
    let log = vq.active_log();
    let (mut slot, mut wrap, size) = (vq.last_used_idx, vq.used_wrap_counter, ring.size());
    let head = (slot, used_flags(wrap, write));
    for (i, e) in entries.iter().enumerate() {
        ring.packed_write_id_len(slot, e.id, e.len);
        // The first entry still reads as not used until the batch is written.
        if i > 0 {
            ring.packed_set_flags(slot, used_flags(wrap, write), Ordering::Relaxed);
        }
        if let Some(log) = &log {
            vq.log_ring_write(log, u64::from(slot) * 16, 16);
        }
        advance(&mut slot, &mut wrap, e.count, size);
    }
    (vq.last_used_idx, vq.used_wrap_counter) = (slot, wrap);
    ring.packed_set_flags(head.0, head.1, Ordering::Release);
}

/// Marks the `BATCH` descriptors from the next used slot used, with buffer
/// ids `ids` and written lengths `lens`, straight into the ring (DPDK's
/// vhost_flush_enqueue_batch_packed): ids and lengths, a release fence, then
/// the flags, which share one cache line. Entries still pending in `used`
/// are published first, to keep the ring order. If the used slot is not
/// batch-aligned (it follows the avail slot, so it is unless the front-end
/// moved the indices apart) the entries join `used` instead.
#[inline(always)]
fn publish_batch(
    vq: &mut VqState,
    ring: &RingMem,
    used: &mut UsedBatch,
    ids: [u16; BATCH],
    lens: [u32; BATCH],
    write: bool,
) {
    if !used.entries().is_empty() {
        packed_publish(vq, ring, used.entries(), write);
        used.clear();
    }
    let Some(line) = ring.packed_line::<BATCH>(vq.last_used_idx) else {
        used.extend(&std::array::from_fn::<_, BATCH, _>(|k| UsedElem { id: ids[k], len: lens[k], count: 1 }));
        return;
    };
    line.write_used(ids, lens, used_flags(vq.used_wrap_counter, write));
    if let Some(log) = vq.active_log() {
        vq.log_ring_write(&log, u64::from(vq.last_used_idx) * 16, 16 * BATCH as u64);
    }
    advance(&mut vq.last_used_idx, &mut vq.used_wrap_counter, BATCH as u16, ring.size());
}

/// Gathers enough packed-ring chains, from the next available slot on, for
/// a packet of `needed` bytes (several only when `mergeable`) into `bufs`;
/// returns the slot and wrap counter after them, or `None` if the packet
/// cannot be placed now (`room`: used entries left in the burst).
fn reserve_packed(
    dev: &Device,
    vq: &mut VqState,
    ring: &RingMem,
    mem: &crate::guest::GuestMemory,
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
        match walk_packed(mem, ring.size(), slot, |i| ring.read_packed_desc(i), bufs) {
            Ok(c) if bufs.push_chain(c.id, c.count, before) => {
                advance(&mut slot, &mut wrap, c.count, ring.size())
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

pub(super) fn enqueue(
    dev: &Device,
    vq: &mut VqState,
    ring: RingMem,
    scratch: &mut BurstScratch,
    pkts: &[Option<Mbuf>],
    stats: bool,
) -> usize {
    let hlen = PACKED_HDR_LEN;
    let BurstScratch { bufs, used, mem } = scratch;
    let mem: &crate::guest::GuestMemory = mem;
    let log = vq.active_log();
    // The RX ring lines this burst reads and then marks used, owned at once.
    ring.prefetch_packed_run(vq.last_avail_idx, pkts.len());
    used.clear();
    let mut done = 0;
    while let Some(&p) = pkts.get(done) {
        if let Some(batch) = pkts[done..].first_chunk() {
            if enqueue_batch(vq, &ring, mem, log.as_deref(), hlen, batch, used, stats) {
                done += BATCH;
                continue;
            }
        }
        // A NULL entry ends the burst.
        let Some(m) = p else { break };
        if !enqueue_one(dev, vq, &ring, mem, log.as_deref(), bufs, hlen, m, used) {
            break;
        }
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

/// Enqueue of four one-segment packets into a batch of descriptors
/// (`take_batch`); `false`, with nothing done, if they do not qualify. Each
/// step runs over all four before the next, so their loads overlap.
#[allow(clippy::too_many_arguments)]
#[inline(always)]
fn enqueue_batch(
    vq: &mut VqState,
    ring: &RingMem,
    mem: &crate::guest::GuestMemory,
    log: Option<&crate::guest::dirty_log::DirtyLog>,
    hlen: u32,
    pkts: &[Option<Mbuf>; BATCH],
    used: &mut UsedBatch,
    stats: bool,
) -> bool {
    let [Some(a), Some(b), Some(c), Some(d)] = *pkts else { return false };
    let mbufs = [a, b, c, d];
    if used.room() < BATCH || mbufs.iter().any(|m| m.next().is_some()) {
        return false;
    }
    let needed = mbufs.map(|m| u64::from(m.pkt_len()) + u64::from(hlen));
    let Some(descs) = take_batch(vq, ring, mem, needed, true) else { return false };
    for k in 0..BATCH {
        put_plain(descs[k].0, header::wire_header_for(&mbufs[k], 1), hlen, mbufs[k].data());
    }
    if let Some(log) = log {
        log_segments(log, mem, &descs.map(|(seg, _)| seg));
    }
    publish_batch(vq, ring, used, descs.map(|(_, id)| id), needed.map(|n| n as u32), true);
    if stats {
        for m in mbufs {
            vq.stats.count(m.pkt_len(), m.data());
        }
    }
    advance(&mut vq.last_avail_idx, &mut vq.avail_wrap_counter, BATCH as u16, ring.size());
    true
}

/// Enqueue of one packet into the next descriptor chain(s); `false` if it
/// cannot be placed now.
#[allow(clippy::too_many_arguments)]
fn enqueue_one(
    dev: &Device,
    vq: &mut VqState,
    ring: &RingMem,
    mem: &crate::guest::GuestMemory,
    log: Option<&crate::guest::dirty_log::DirtyLog>,
    bufs: &mut BufVec,
    hlen: u32,
    m: Mbuf,
    used: &mut UsedBatch,
) -> bool {
    let needed = u64::from(m.pkt_len()) + u64::from(hlen);
    let (mut slot, mut wrap) = (vq.last_avail_idx, vq.avail_wrap_counter);
    // The common case needs no walk: one descriptor holding it all.
    let lone = (used.room() > 0 && packed_available(ring, slot, wrap))
        .then(|| {
            let d = ring.read_packed_desc(slot);
            lone_buffer(mem, &d, needed).map(|seg| (seg, d.next_or_id))
        })
        .flatten();
    let one;
    let (segs, chains) = match lone {
        Some((seg, id)) => {
            advance(&mut slot, &mut wrap, 1, ring.size());
            one = LoneChain::new(seg, id);
            one.parts()
        }
        None => {
            let Some(next) = reserve_packed(dev, vq, ring, mem, bufs, needed, used.room()) else {
                return false;
            };
            (slot, wrap) = next;
            (bufs.segs(), &bufs.chains[..bufs.nchains])
        }
    };
    place_packet(mem, log, segs, chains, hlen, m, used);
    vq.last_avail_idx = slot;
    vq.avail_wrap_counter = wrap;
    true
}

pub(super) fn dequeue(
    dev: &Device,
    vq: &mut VqState,
    ring: RingMem,
    scratch: &mut BurstScratch,
    pool: Mempool,
    out: &mut [Option<Mbuf>],
    opts: DequeueOpts,
) -> usize {
    let BurstScratch { bufs, used, mem } = scratch;
    let mem: &crate::guest::GuestMemory = mem;
    // Count the available descriptors first (an upper bound on the packets),
    // to allocate no more mbufs than can be filled.
    let n = count_available(vq, &ring, out.len().min(MAX_BURST));
    if n == 0 {
        return 0;
    }
    // The buffers' misses overlap the mbuf allocation.
    prefetch_packed_burst(vq, &ring, mem, n);
    if !mbuf::alloc_bulk(pool, &mut out[..n]) {
        return 0;
    }
    let hlen = PACKED_HDR_LEN;
    let size = ring.size();
    used.clear();
    let mut done = 0;
    // Descriptors taken so far: the first `n` are known to be available.
    let mut taken = 0usize;
    let mut i = 0;
    while i < n {
        if n - i >= BATCH && dequeue_batch(vq, &ring, mem, hlen, out, i, &mut done, opts, used) {
            i += BATCH;
            taken += BATCH;
            continue;
        }
        if taken >= n && !packed_available(&ring, vq.last_avail_idx, vq.avail_wrap_counter) {
            break;
        }
        let d = ring.read_packed_desc(vq.last_avail_idx);
        // The common case needs no walk: one descriptor, header and packet.
        let (count, id, res) = match lone_buffer(mem, &d, u64::from(hlen) + 1) {
            Some(seg) => (1, d.next_or_id, fill_mbuf(&[seg], u64::from(seg.len), hlen, out[i], pool, opts)),
            None => {
                bufs.clear();
                match walk_packed(mem, size, vq.last_avail_idx, |i| ring.read_packed_desc(i), bufs) {
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
        i += 1;
    }
    release_unused(out, done, n);
    if taken > 0 {
        if vq.has_feature(VIRTIO_F_IN_ORDER) {
            publish_in_order(vq, &ring, used.entries());
        } else {
            packed_publish(vq, &ring, used.entries(), false);
        }
        notify_guest(vq, &ring, opts.stats);
    }
    done
}

/// With VIRTIO_F_IN_ORDER, the TX buffers a burst used (all of length 0)
/// are marked used by one descriptor carrying the last buffer's id; the
/// driver counts the rest (virtio 1.1, 2.7.9; DPDK's
/// vhost_shadow_dequeue_batch_packed_inorder).
fn publish_in_order(vq: &mut VqState, ring: &RingMem, entries: &[UsedElem]) {
    let Some(last) = entries.last() else { return };
    let slots = entries.iter().map(|e| e.count).sum();
    packed_publish(vq, ring, &[UsedElem { id: last.id, len: 0, count: slots }], false);
}

/// Dequeue of a batch of four lone descriptors (`take_batch`) whose packets
/// fit the fresh mbufs `out[i..i + 4]` without chaining; `false`, with
/// nothing done, if they do not qualify. Each step runs over all four before
/// the next, so their loads overlap.
#[allow(clippy::too_many_arguments)]
#[inline(always)]
fn dequeue_batch(
    vq: &mut VqState,
    ring: &RingMem,
    mem: &crate::guest::GuestMemory,
    hlen: u32,
    out: &mut [Option<Mbuf>],
    i: usize,
    done: &mut usize,
    opts: DequeueOpts,
    used: &mut UsedBatch,
) -> bool {
    let Some(&[Some(a), Some(b), Some(c), Some(d)]) = out[i..].first_chunk::<BATCH>() else { return false };
    let mut mbufs = [a, b, c, d];
    if used.room() < BATCH {
        return false;
    }
    let Some(descs) = take_batch(vq, ring, mem, [u64::from(hlen) + 1; BATCH], false) else { return false };
    // All four must fit before any is copied (else the single path takes them).
    let segs = descs.map(|(seg, _)| seg);
    let [ma, mb, mc, md] = &mut mbufs;
    let (Some(ta), Some(tb), Some(tc), Some(td)) = (
        plain_tail(segs[0], hlen, ma),
        plain_tail(segs[1], hlen, mb),
        plain_tail(segs[2], hlen, mc),
        plain_tail(segs[3], hlen, md),
    ) else {
        return false;
    };
    for (seg, dst) in segs.into_iter().zip([ta, tb, tc, td]) {
        read_guest(seg, hlen, dst);
    }
    for (&(seg, _), m) in descs.iter().zip(mbufs) {
        finish_plain(seg, hlen, m, opts);
    }
    if vq.has_feature(VIRTIO_F_IN_ORDER) {
        // Published as one descriptor at the end of the burst.
        used.extend(&descs.map(|(_, id)| UsedElem { id, len: 0, count: 1 }));
    } else {
        publish_batch(vq, ring, used, descs.map(|(_, id)| id), [0; BATCH], false);
    }
    if opts.stats {
        for m in mbufs {
            vq.stats.count(m.pkt_len(), m.data());
        }
    }
    // Packets move up over the slots of packets dropped earlier in the burst.
    if *done != i {
        for k in 0..BATCH {
            out.swap(*done + k, i + k);
        }
    }
    *done += BATCH;
    advance(&mut vq.last_avail_idx, &mut vq.avail_wrap_counter, BATCH as u16, ring.size());
    true
}
