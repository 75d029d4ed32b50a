//! virtio-net bursts on a packed ring (`virtqueue::packed` is the ring).

use super::*;
use crate::virtqueue::avail::PackedLones;
use crate::virtqueue::packed::{self, BATCH};

/// The virtio-net header on a packed ring: always the 12-byte one, as the
/// packed layout comes with VIRTIO_F_VERSION_1 (`hdr_len` agrees). As a
/// constant, the batch paths' header accesses compile to fixed-size ones.
const PACKED_HDR_LEN: u32 = 12;

pub(super) fn enqueue<'a>(b: &mut Burst<'a, impl AddressSpace<'a>>, pkts: &mut [Option<Mbuf>]) -> usize {
    let hlen = PACKED_HDR_LEN;
    // The RX ring lines this burst reads and then marks used, owned at once.
    b.vq.packed_avail().packed_prefetch_ring(&b.ring, pkts.len());
    let mut done = 0;
    while done < pkts.len() {
        if let Some(batch) = pkts[done..].first_chunk_mut() {
            if enqueue_batch(b, hlen, batch) {
                done += BATCH;
                continue;
            }
        }
        // A NULL entry ends the burst.
        let Some(m) = &mut pkts[done] else { break };
        if !enqueue_one(b, hlen, m) {
            break;
        }
        if b.stats {
            b.vq.datapath_mut().stats.count(m.pkt_len(), m.data());
        }
        done += 1;
    }
    if done > 0 {
        packed::publish(b.vq, &b.ring, b.used.entries(), true);
        notify_guest(b.dev, b.vq, &b.ring, b.stats);
    }
    done
}

/// Enqueue of four one-segment packets into a batch of descriptors
/// (`Avail::packed_batch`); `false`, with nothing done, if they do not
/// qualify. Each step runs over all four before the next, so their loads
/// overlap.
#[inline(always)]
fn enqueue_batch<'a>(
    b: &mut Burst<'a, impl AddressSpace<'a>>,
    hlen: u32,
    pkts: &mut [Option<Mbuf>; BATCH],
) -> bool {
    let [Some(m0), Some(m1), Some(m2), Some(m3)] = pkts else { return false };
    let mbufs = [&*m0, &*m1, &*m2, &*m3];
    if b.used.room() < BATCH || mbufs.iter().any(|m| m.next().is_some()) {
        return false;
    }
    let needed = mbufs.map(|m| u64::from(m.pkt_len()) + u64::from(hlen));
    let Some(descs) = b.vq.packed_avail().packed_batch(&b.ring, &b.mem, needed) else { return false };
    // Written out four times, not looped: LLVM does not always unroll the
    // loop, and rolled it spills the batch to the stack (49 instructions a
    // packet instead of 25).
    let [(s0, _), (s1, _), (s2, _), (s3, _)] = descs;
    put_plain(b.writer, s0, header::wire_header_for(m0, 1), hlen, m0.data());
    put_plain(b.writer, s1, header::wire_header_for(m1, 1), hlen, m1.data());
    put_plain(b.writer, s2, header::wire_header_for(m2, 1), hlen, m2.data());
    put_plain(b.writer, s3, header::wire_header_for(m3, 1), hlen, m3.data());
    packed::publish_batch(b.vq, &b.ring, b.used, descs.map(|(_, id)| id), needed.map(|n| n as u32), true);
    if b.stats {
        for m in [m0, m1, m2, m3] {
            b.vq.datapath_mut().stats.count(m.pkt_len(), m.data());
        }
    }
    b.vq.packed_take_batch(&b.ring);
    true
}

/// Enqueue of one packet into the next descriptor chain(s); `false` if it
/// cannot be placed now. (Kept out of the burst loop, whose batch path is
/// the common one: inlined, it costs that path ~30 instructions a packet.)
#[inline(never)]
fn enqueue_one<'a>(b: &mut Burst<'a, impl AddressSpace<'a>>, hlen: u32, m: &mut Mbuf) -> bool {
    let needed = u64::from(m.pkt_len()) + u64::from(hlen);
    let ring = b.ring;
    // The common case needs no walk: one descriptor holding it all.
    let lone = if b.used.room() > 0 { b.vq.packed_take_lone(&ring, &b.mem, needed) } else { None };
    let reserve = |b: &mut Burst<_>, room| {
        let mergeable = b.vq.has_feature(Feature::NET_MRG_RXBUF.number());
        let mut avail = b.vq.packed_avail();
        let r = avail.packed_reserve(&ring, &b.mem, b.bufs, needed, mergeable, room);
        if matches!(r, Ok(true)) {
            b.vq.settle(avail);
        }
        r
    };
    let place =
        |segs: &[GuestSlice<'_>], chains: &[_], w, used: &mut _| place_packet(w, segs, chains, hlen, m, used);
    b.place(lone, reserve, place).is_some()
}

#[inline(always)]
pub(super) fn dequeue<'a>(
    b: &mut Burst<'a, impl AddressSpace<'a>>,
    pool: Mempool,
    out: &mut [Option<Mbuf>],
    opts: DequeueOpts,
) -> usize {
    let ring = b.ring;
    // Count the available descriptors first (an upper bound on the packets),
    // to allocate no more mbufs than can be filled.
    let n = b.vq.packed_avail().packed_count(&ring, out.len().min(MAX_BURST));
    if n == 0 {
        return 0;
    }
    // Each descriptor read and translated once, its buffer prefetched: the
    // misses overlap the mbuf allocation.
    let hlen = PACKED_HDR_LEN;
    let mut lones = PackedLones::default();
    b.vq.packed_avail().packed_gather(&ring, &b.mem, n, u64::from(hlen) + 1, &mut lones);
    if !mbuf::alloc_bulk(pool, &mut out[..n]) {
        #[cfg(feature = "abi-24-11")]
        {
            b.vq.datapath_mut().stats.mbuf_alloc_failed += n as u64;
        }
        return 0;
    }
    let in_order = b.vq.has_feature(Feature::IN_ORDER.number());
    let mut done = 0;
    // Descriptors taken so far: the first `n` are known to be available.
    let mut taken = 0usize;
    let mut i = 0;
    while i < n {
        if let Some(descs) = lones.batch(taken, u64::from(hlen) + 1) {
            if dequeue_batch(b, out, i, &mut done, opts, in_order, descs) {
                i += BATCH;
                taken += BATCH;
                continue;
            }
        }
        if taken >= n && !b.vq.packed_avail().packed_has_next(&ring) {
            break;
        }
        // The common case needs no walk: one descriptor, header and packet.
        let mem = &b.mem;
        let mut fill = |seg: Option<GuestSlice>, bufs: &BufVec| match seg {
            Some(seg) => fill_mbuf(&[seg], u64::from(seg.len()), hlen, &mut out[i], pool, opts),
            None => fill_mbuf(bufs.segs(mem.mem()), bufs.total(), hlen, &mut out[i], pool, opts),
        };
        let (id, count, res) = if let Some((seg, id)) = b.vq.packed_take_gathered(&ring, &lones, taken) {
            (id, 1, fill(Some(seg), b.bufs))
        } else {
            match b.vq.packed_take_into(&ring, mem, u64::from(hlen) + 1, b.bufs, fill) {
                Ok((id, count, res)) => (id, count, res.map_err(DropReason::Chain).and_then(|filled| filled)),
                // Not mapped yet: the chain stays for a later burst.
                Err(e) => {
                    b.missed(e);
                    break;
                }
            }
        };
        taken += usize::from(count);
        b.used.push(id, 0, count);
        b.account_dequeued(out, i, &mut done, res, opts.stats);
        i += 1;
    }
    release_unused(out, done, n);
    if taken > 0 {
        if in_order {
            packed::publish_in_order(b.vq, &ring, b.used.entries());
        } else {
            packed::publish(b.vq, &ring, b.used.entries(), false);
        }
        notify_guest(b.dev, b.vq, &ring, opts.stats);
    }
    done
}

/// Dequeue of a batch of four lone descriptors (`PackedLones::batch`: the
/// next four, gathered at the burst's start) whose packets fit the fresh
/// mbufs `out[i..i + 4]` without chaining; `false`, with nothing done, if
/// they do not qualify. Each step runs over all four before the next, so
/// their loads overlap.
#[inline(always)]
fn dequeue_batch<'a>(
    b: &mut Burst<'a, impl AddressSpace<'a>>,
    out: &mut [Option<Mbuf>],
    i: usize,
    done: &mut usize,
    opts: DequeueOpts,
    in_order: bool,
    descs: [(GuestSlice<'a>, u16); BATCH],
) -> bool {
    let hlen = PACKED_HDR_LEN;
    let Some([Some(ma), Some(mb), Some(mc), Some(md)]) = out[i..].first_chunk_mut::<BATCH>() else {
        return false;
    };
    if b.used.room() < BATCH {
        return false;
    }
    // All four must fit before any is copied (else the single path takes them).
    let segs = descs.map(|(seg, _)| seg);
    let (Some(ta), Some(tb), Some(tc), Some(td)) = (
        plain_tail(segs[0], hlen, ma),
        plain_tail(segs[1], hlen, mb),
        plain_tail(segs[2], hlen, mc),
        plain_tail(segs[3], hlen, md),
    ) else {
        return false;
    };
    // Written out, not looped (see `enqueue_batch`).
    segs[0].read(hlen, ta);
    segs[1].read(hlen, tb);
    segs[2].read(hlen, tc);
    segs[3].read(hlen, td);
    finish_plain(segs[0], hlen, ma, opts);
    finish_plain(segs[1], hlen, mb, opts);
    finish_plain(segs[2], hlen, mc, opts);
    finish_plain(segs[3], hlen, md, opts);
    if in_order {
        // Published as one descriptor at the end of the burst.
        b.used.extend(&descs.map(|(_, id)| UsedElem { id, len: 0, count: 1 }));
    } else {
        packed::publish_batch(b.vq, &b.ring, b.used, descs.map(|(_, id)| id), [0; BATCH], false);
    }
    if opts.stats {
        for m in [ma, mb, mc, md] {
            b.vq.datapath_mut().stats.count(m.pkt_len(), m.data());
        }
    }
    // Packets move up over the slots of packets dropped earlier in the burst.
    if *done != i {
        for k in 0..BATCH {
            out.swap(*done + k, i + k);
        }
    }
    *done += BATCH;
    b.vq.packed_take_batch(&b.ring);
    true
}
