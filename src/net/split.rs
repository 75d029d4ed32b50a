//! The split ring (virtio 1.0 section 2.6): descriptor table, available
//! ring of chain heads, used ring of (head, length); free-running 16-bit
//! indices.

use super::*;

/// Prefetches the buffers of the `n` split chains from avail position `pos`
/// on, at the start of a burst: the misses on lines the guest's core last
/// touched then overlap each other instead of stalling packet by packet.
fn prefetch_split_burst(ring: &RingMem, mem: &crate::guest::GuestMemory, pos: u16, n: usize, write: bool) {
    for j in 0..n {
        prefetch_buffer(mem, ring.read_split_desc(ring.split_avail_ring(pos.wrapping_add(j as u16))), write);
    }
}

/// Available entries on a split ring, or `None` if the guest's index is
/// nonsense (more than a ring ahead).
fn split_avail(vq: &VqState, ring: &RingMem) -> Option<u16> {
    let n = ring.split_avail_idx().wrapping_sub(vq.last_avail_idx);
    (n <= ring.size()).then_some(n)
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
    mem: &crate::guest::GuestMemory,
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
        if let Err(e) = walk_split(mem, ring.size(), head, |i| ring.read_split_desc(i), bufs) {
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

pub(super) fn enqueue(
    dev: &Device,
    vq: &mut VqState,
    ring: RingMem,
    scratch: &mut BurstScratch,
    pkts: &[Option<Mbuf>],
    stats: bool,
) -> usize {
    let Some(mut avail) = split_avail(vq, &ring) else {
        log_bad_chain(dev, vq, ChainError::IndexOutOfRange);
        return 0;
    };
    let hlen = hdr_len(vq);
    let BurstScratch { bufs, used, mem } = scratch;
    let mem: &crate::guest::GuestMemory = mem;
    let log = vq.active_log();
    prefetch_split_burst(&ring, mem, vq.last_avail_idx, pkts.len().min(usize::from(avail)), true);
    used.clear();
    let mut done = 0;
    for &p in pkts {
        // A NULL entry ends the burst.
        let Some(m) = p else { break };
        let needed = u64::from(m.pkt_len()) + u64::from(hlen);
        // The common case needs no walk: the next chain is one buffer that
        // holds header and packet.
        let head = ring.split_avail_ring(vq.last_avail_idx);
        let lone = (avail > 0 && used.room() > 0 && head < ring.size())
            .then(|| lone_buffer(mem, &ring.read_split_desc(head), needed))
            .flatten();
        let one;
        let (segs, chains) = match lone {
            Some(seg) => {
                avail -= 1;
                one = LoneChain::new(seg, head);
                one.parts()
            }
            None => {
                if !reserve_split(dev, vq, &ring, mem, bufs, needed, &mut avail, used.room()) {
                    break;
                }
                (bufs.segs(), &bufs.chains[..bufs.nchains])
            }
        };
        place_packet(mem, log.as_deref(), segs, chains, hlen, m, used);
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
            vq.log_ring_write(log, 4 + 8 * u64::from(vq.last_used_idx % ring.size()), 8);
        }
        vq.last_used_idx = vq.last_used_idx.wrapping_add(1);
    }
    ring.split_set_used_idx(vq.last_used_idx);
    if let Some(log) = &log {
        vq.log_ring_write(log, 2, 2);
    }
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
    let Some(avail) = split_avail(vq, &ring) else {
        log_bad_chain(dev, vq, ChainError::IndexOutOfRange);
        return 0;
    };
    let n = out.len().min(usize::from(avail)).min(MAX_BURST);
    if n == 0 {
        return 0;
    }
    let BurstScratch { bufs, used, mem } = scratch;
    let mem: &crate::guest::GuestMemory = mem;
    // The buffers' misses overlap the mbuf allocation.
    prefetch_split_burst(&ring, mem, vq.last_avail_idx, n, false);
    if !mbuf::alloc_bulk(pool, &mut out[..n]) {
        return 0;
    }
    let hlen = hdr_len(vq);
    used.clear();
    let mut done = 0;
    // The next avail position in a local: kept in a register, not reloaded
    // from `vq` behind the burst's stores.
    let first = vq.last_avail_idx;
    for i in 0..n {
        let head = ring.split_avail_ring(first.wrapping_add(i as u16));
        // The common case needs no walk: one buffer, header and packet.
        let lone = (head < ring.size())
            .then(|| lone_buffer(mem, &ring.read_split_desc(head), u64::from(hlen) + 1))
            .flatten();
        let res = match lone {
            Some(seg) => fill_mbuf(&[seg], u64::from(seg.len), hlen, out[i], pool, opts),
            None => {
                bufs.clear();
                walk_split(mem, ring.size(), head, |i| ring.read_split_desc(i), bufs)
                    .map_err(DropReason::Chain)
                    .and_then(|()| fill_mbuf(bufs.segs(), bufs.total(), hlen, out[i], pool, opts))
            }
        };
        used.push(head, 0, 1);
        account_dequeued(dev, vq, out, i, &mut done, res, opts.stats);
    }
    vq.last_avail_idx = first.wrapping_add(n as u16);
    release_unused(out, done, n);
    split_publish(vq, &ring, used.entries());
    notify_guest(vq, &ring, opts.stats);
    done
}
