//! virtio-net bursts on a split ring (`virtqueue::split` is the ring).

use super::*;
use crate::virtqueue::split;

pub(super) fn enqueue<'a>(b: &mut Burst<'a, impl AddressSpace<'a>>, pkts: &[Option<Mbuf>]) -> usize {
    let Some(mut avail) = split::available(b.vq, &b.ring) else {
        b.bad_chain(ChainError::IndexOutOfRange);
        return 0;
    };
    let hlen = hdr_len(b.vq);
    let mergeable = b.vq.has_feature(Feature::NET_MRG_RXBUF.number());
    let ring = b.ring;
    split::prefetch_burst(&ring, &b.mem, b.vq.last_avail_idx(), pkts.len().min(usize::from(avail)), true);
    let mut done = 0;
    for &p in pkts {
        // A NULL entry ends the burst.
        let Some(m) = p else { break };
        let needed = u64::from(m.pkt_len()) + u64::from(hlen);
        // The common case needs no walk: the next chain is one buffer that
        // holds header and packet.
        let head = ring.split_avail_ring(b.vq.last_avail_idx());
        let lone = (avail > 0 && b.used.room() > 0 && head < ring.size())
            .then(|| lone_buffer(&b.mem, &ring.read_split_desc(head), needed))
            .flatten();
        let nchains = match lone {
            // A one-segment mbuf into a buffer that holds header and data
            // (`lone_buffer` checked it against `pkt_len`; the data, which
            // is what is copied, must not be longer): no call into
            // `place_packet`'s general walk.
            Some(seg) if m.next().is_none() && m.data().len() <= m.pkt_len() as usize => {
                avail -= 1;
                put_plain(b.writer, seg, header::wire_header_for(&m, 1), hlen, m.data());
                b.used.push(head, needed as u32, 1);
                1
            }
            lone => {
                let one;
                let (segs, chains) = match lone {
                    Some(seg) => {
                        avail -= 1;
                        one = LoneChain::new(seg, head);
                        one.parts()
                    }
                    None => {
                        let room = b.used.room();
                        match split::reserve(b.vq, &ring, &b.mem, b.bufs, needed, mergeable, &mut avail, room)
                        {
                            Ok(true) => {}
                            Ok(false) => break,
                            Err(e) => {
                                b.bad_chain(e);
                                break;
                            }
                        }
                        (b.bufs.segs(b.mem.mem()), &b.bufs.chains[..b.bufs.nchains])
                    }
                };
                place_packet(b.writer, segs, chains, hlen, m, b.used);
                chains.len()
            }
        };
        b.vq.advance_avail(nchains as u16);
        if b.stats {
            b.vq.datapath_mut().stats.count(m.pkt_len(), m.data());
        }
        done += 1;
    }
    if done > 0 {
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
    let Some(avail) = split::available(b.vq, &b.ring) else {
        b.bad_chain(ChainError::IndexOutOfRange);
        return 0;
    };
    let n = out.len().min(usize::from(avail)).min(MAX_BURST);
    if n == 0 {
        return 0;
    }
    let ring = b.ring;
    // The buffers' misses overlap the mbuf allocation.
    split::prefetch_burst(&ring, &b.mem, b.vq.last_avail_idx(), n, false);
    if !mbuf::alloc_bulk(pool, &mut out[..n]) {
        #[cfg(feature = "abi-24-11")]
        {
            b.vq.datapath_mut().stats.mbuf_alloc_failed += n as u64;
        }
        return 0;
    }
    let hlen = hdr_len(b.vq);
    let mut done = 0;
    // The next avail position in a local: kept in a register, not reloaded
    // from `vq` behind the burst's stores.
    let first = b.vq.last_avail_idx();
    let mut taken = n;
    for i in 0..n {
        let head = ring.split_avail_ring(first.wrapping_add(i as u16));
        // The common case needs no walk: one buffer, header and packet.
        let lone = (head < ring.size())
            .then(|| lone_buffer(&b.mem, &ring.read_split_desc(head), u64::from(hlen) + 1))
            .flatten();
        let res = match lone {
            Some(seg) => fill_mbuf(&[seg], u64::from(seg.len()), hlen, out[i], pool, opts),
            None => {
                b.bufs.clear();
                match walk_split(&b.mem, ring.size(), head, |i| ring.read_split_desc(i), b.bufs) {
                    // Not mapped yet: the chain stays for a later burst.
                    Err(e) if b.missed(e) => {
                        taken = i;
                        break;
                    }
                    walked => walked.map_err(DropReason::Chain).and_then(|()| {
                        fill_mbuf(b.bufs.segs(b.mem.mem()), b.bufs.total(), hlen, out[i], pool, opts)
                    }),
                }
            }
        };
        b.used.push(head, 0, 1);
        b.account_dequeued(out, i, &mut done, res, opts.stats);
    }
    b.vq.advance_avail(taken as u16);
    release_unused(out, done, n);
    if taken > 0 {
        split::publish(b.vq, &ring, b.used.entries());
        notify_guest(b.dev, b.vq, &ring, opts.stats);
    }
    done
}
