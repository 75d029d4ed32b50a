//! virtio-net bursts on a split ring (`virtqueue::split` is the ring).

use super::*;
use crate::virtqueue::split;

pub(super) fn enqueue<'a>(b: &mut Burst<'a, impl AddressSpace<'a>>, pkts: &mut [Option<Mbuf>]) -> usize {
    let Some(mut avail) = b.vq.split_avail(&b.ring) else {
        b.bad_chain(ChainError::IndexOutOfRange);
        return 0;
    };
    let hlen = hdr_len(b.vq);
    let mergeable = b.vq.has_feature(Feature::NET_MRG_RXBUF.number());
    let ring = b.ring;
    avail.split_prefetch(&ring, &b.mem, pkts.len(), true);
    let mut done = 0;
    for p in pkts.iter_mut() {
        // A NULL entry ends the burst.
        let Some(m) = p else { break };
        let needed = u64::from(m.pkt_len()) + u64::from(hlen);
        // The common case needs no walk: the next chain is one buffer that
        // holds header and packet.
        let lone = if b.used.room() > 0 { avail.split_take_lone(&ring, &b.mem, needed) } else { None };
        match lone {
            // A one-segment mbuf into a buffer that holds header and data
            // (`lone_buffer` checked it against `pkt_len`; the data, which
            // is what is copied, must not be longer): no call into
            // `place_packet`'s general walk.
            Some((seg, id)) if m.next().is_none() && m.data().len() <= m.pkt_len() as usize => {
                put_plain(b.writer, seg, header::wire_header_for(m, 1), hlen, m.data());
                b.used.push(id, needed as u32, 1);
            }
            lone => {
                let reserve = |b: &mut Burst<_>, room| {
                    avail.split_reserve(&ring, &b.mem, b.bufs, needed, mergeable, room)
                };
                let place = |segs: &[GuestSlice<'_>], chains: &[_], w, used: &mut _| {
                    place_packet(w, segs, chains, hlen, m, used)
                };
                if b.place(lone, reserve, place).is_none() {
                    break;
                }
            }
        }
        if b.stats {
            b.vq.datapath_mut().stats.count(m.pkt_len(), m.data());
        }
        done += 1;
    }
    if done > 0 {
        b.vq.settle(avail);
        split::publish(b.vq, &ring, b.used.entries());
        notify_guest(b.dev, b.vq, &ring, b.stats);
    }
    done
}

#[inline(always)]
pub(super) fn dequeue<'a>(
    b: &mut Burst<'a, impl AddressSpace<'a>>,
    pool: Mempool,
    out: &mut [Option<Mbuf>],
    opts: DequeueOpts,
) -> usize {
    let Some(mut avail) = b.vq.split_avail(&b.ring) else {
        b.bad_chain(ChainError::IndexOutOfRange);
        return 0;
    };
    let n = out.len().min(usize::from(avail.left())).min(MAX_BURST);
    if n == 0 {
        return 0;
    }
    let ring = b.ring;
    // The buffers' misses overlap the mbuf allocation.
    avail.split_prefetch(&ring, &b.mem, n, false);
    if !mbuf::alloc_bulk(pool, &mut out[..n]) {
        #[cfg(feature = "abi-24-11")]
        {
            b.vq.datapath_mut().stats.mbuf_alloc_failed += n as u64;
        }
        return 0;
    }
    let hlen = hdr_len(b.vq);
    let mut done = 0;
    let mut taken = n;
    for i in 0..n {
        // The common case needs no walk: one buffer, header and packet.
        let t = avail.split_look(i as u16, &ring, &b.mem, u64::from(hlen) + 1, b.bufs);
        let res = match t.buffer {
            Ok(Some(seg)) => fill_mbuf(&[seg], u64::from(seg.len()), hlen, &mut out[i], pool, opts),
            Ok(None) => fill_mbuf(b.bufs.segs(b.mem.mem()), b.bufs.total(), hlen, &mut out[i], pool, opts),
            // Not mapped yet: the chain stays for a later burst.
            Err(e) if b.missed(e) => {
                taken = i;
                break;
            }
            Err(e) => Err(DropReason::Chain(e)),
        };
        b.used.push(t.id, 0, 1);
        b.account_dequeued(out, i, &mut done, res, opts.stats);
    }
    release_unused(out, done, n);
    if taken > 0 {
        avail.split_skip(taken as u16);
        b.vq.settle(avail);
        split::publish(b.vq, &ring, b.used.entries());
        notify_guest(b.dev, b.vq, &ring, opts.stats);
    }
    done
}
