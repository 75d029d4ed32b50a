//! Packed rings through the C API: the scripted front-end sets the device
//! up, the driver model plays the guest (chains, indirect tables, wrap
//! counters) and random mixes of buffers go both ways through the batched
//! and the one-by-one paths.

mod common;

use common::net::*;
use common::rig::*;
use rvhost::testing::mock::{Buf, Layout, Used};
use rvhost::testing::{Mbuf, RteMbuf};

/// A buffer the device reads.
fn tx_buf(gpa: u64, len: u32) -> Buf {
    Buf { gpa, len, write: false }
}

/// A small deterministic generator (the property tests' inputs).
struct Lcg(u64);

impl Lcg {
    fn below(&mut self, n: u64) -> u64 {
        self.0 = self.0.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        (self.0 >> 33) % n
    }
}

/// Packed rings through the batched (four descriptors a step) and the
/// one-by-one paths, over rings whose size is a multiple of four and not,
/// and with VIRTIO_F_IN_ORDER (TX buffers marked used a burst at a time):
/// random mixes of one-descriptor buffers, chains, indirect tables and
/// malformed buffers, random burst sizes, hundreds of ring wraps. Every
/// guest packet comes out once, in order, byte for byte, and the bad ones
/// are dropped; every host packet lands in the guest's buffers byte for
/// byte with the right used lengths and num_buffers; every buffer is marked
/// used once, in order.
#[test]
fn packed_rings_move_every_mix_of_buffers_both_ways() {
    for (k, (size, in_order)) in [(256u16, false), (250, false), (256, true)].into_iter().enumerate() {
        let features = BASIC | F_RING_PACKED | if in_order { F_IN_ORDER } else { 0 };
        let mut rig = Rig::connect(&format!("packed{k}"), 0, features, PF_LOG_SHMFD, 6 << 20);
        let mut rx = rig.ring(0, Layout::Packed, size, areas_at(0x10000, Layout::Packed, size));
        let mut tx = rig.ring(1, Layout::Packed, size, areas_at(0x20000, Layout::Packed, size));
        // rvhost completes buffers in the order they were made available
        // (with VIRTIO_F_IN_ORDER one used descriptor may stand for a run).
        for ring in [&mut rx, &mut tx] {
            (ring.in_order, ring.ordered) = (in_order, true);
        }
        rig.wait_started();
        let (vid, pool, mem) = (rig.vid, rig.pool, rig.view());
        let mut rng = Lcg(0x5eed + u64::from(size));
        let area = |base: u64, id: u16| base + 0x2000 * u64::from(id);
        let (tx_area, rx_area) = (0x100000, 0x300000);
        let mut expected = std::collections::VecDeque::new();
        let mut rx_bufs: Vec<Vec<(u64, u32)>> = vec![Vec::new(); usize::from(size)];
        let (mut tx_good, mut tx_bad, mut rx_pkts) = (0u64, 0u64, 0u64);
        for round in 0..400 {
            // --- guest -> host: post up to 40 packets of random kinds.
            for _ in 0..rng.below(40) {
                if tx.free_slots() < 3 {
                    break;
                }
                let id = tx.next_id().expect("a free id with free slots");
                let a = area(tx_area, id);
                let payload = pattern(1 + rng.below(3000) as usize, round as u8);
                let kind = rng.below(10);
                let hdr = [0u8; 12];
                let posted = match kind {
                    // One descriptor: header and packet.
                    0..=5 => {
                        mem.write(a, &hdr);
                        mem.write(a + 12, &payload);
                        tx.post(&[tx_buf(a, 12 + payload.len() as u32)])
                    }
                    // Header alone, the packet in one or two more.
                    6 | 7 => {
                        mem.write(a, &hdr);
                        mem.write(a + 0x100, &payload);
                        let cut = payload.len() / 2;
                        let mut v = vec![tx_buf(a, 12), tx_buf(a + 0x100, cut as u32)];
                        v.push(tx_buf(a + 0x100 + cut as u64, (payload.len() - cut) as u32));
                        v.retain(|e| e.len > 0);
                        tx.post(&v)
                    }
                    // An indirect table of header and packet.
                    8 => {
                        mem.write(a, &hdr);
                        mem.write(a + 0x100, &payload);
                        tx.post_indirect(
                            a + 0x1f00,
                            &[tx_buf(a, 12), tx_buf(a + 0x100, payload.len() as u32)],
                        )
                    }
                    // Outside guest memory, or shorter than the header.
                    _ => tx.post(&[if rng.below(2) == 0 { tx_buf(0x4000_0000, 100) } else { tx_buf(a, 8) }]),
                };
                assert_eq!(posted, Some(id));
                if kind < 9 {
                    expected.push_back(payload);
                    tx_good += 1;
                } else {
                    tx_bad += 1;
                }
            }
            let mut out = [std::ptr::null_mut::<RteMbuf>(); 32];
            let want = 1 + rng.below(32) as u16;
            // SAFETY: valid vid, queue, pool and a 32-entry array.
            let n = unsafe { rte_vhost_dequeue_burst(vid, 1, pool.as_ptr(), out.as_mut_ptr(), want) };
            assert!(n <= want);
            for &p in &out[..usize::from(n)] {
                // SAFETY: an mbuf the library handed us.
                let m = unsafe { Mbuf::from_raw(p) }.unwrap();
                let payload = expected.pop_front().expect("no more packets than posted");
                assert_eq!(packet_bytes(&m), payload, "guest packet (round {round}, ring {size})");
                m.free();
            }
            while tx.pop_used().is_some() {}

            // --- host -> guest: keep the RX ring stocked with random kinds
            // of buffers, then enqueue a random burst.
            while rx.free_slots() >= 2 {
                let id = rx.next_id().expect("a free id with free slots");
                let a = area(rx_area, id);
                let bufs = match rng.below(8) {
                    0..=4 => vec![(a, 2048)],
                    5 | 6 => vec![(a, 1000), (a + 0x1000, 1048)],
                    _ => vec![(a, 700), (a + 0x800, 1348)],
                };
                let descs: Vec<_> = bufs.iter().map(|&(gpa, len)| Buf { gpa, len, write: true }).collect();
                let posted =
                    if rng.below(8) == 7 { rx.post_indirect(a + 0x1f00, &descs) } else { rx.post(&descs) };
                assert_eq!(posted, Some(id));
                rx_bufs[usize::from(id)] = bufs;
            }
            let count = 1 + rng.below(32) as usize;
            let payloads: Vec<Vec<u8>> = (0..count)
                .map(|j| {
                    let len = if rng.below(10) == 0 { 2100 + rng.below(1900) } else { 60 + rng.below(1400) };
                    pattern(len as usize, (round + j) as u8)
                })
                .collect();
            let mut raw: Vec<*mut RteMbuf> =
                payloads.iter().map(|p| chained_mbuf(pool, p, 2000).as_ptr()).collect();
            // SAFETY: valid vid, queue and `count` mbufs.
            let sent = unsafe { rte_vhost_enqueue_burst(vid, 0, raw.as_mut_ptr(), count as u16) };
            for (j, p) in payloads.iter().take(usize::from(sent)).enumerate() {
                let mut got = Vec::new();
                let mut buffers = None;
                let mut taken = 0;
                while buffers.is_none_or(|b| taken < b) {
                    let Used { id, len } = rx.pop_used().expect("a used RX buffer per enqueued packet");
                    let mut left = len as usize;
                    for &(g, l) in &rx_bufs[usize::from(id)] {
                        let n = left.min(l as usize);
                        got.extend(mem.read(g, n));
                        left -= n;
                    }
                    assert_eq!(left, 0, "used length within the buffer");
                    if buffers.is_none() {
                        buffers = Some(usize::from(u16::from_le_bytes([got[10], got[11]])));
                    }
                    taken += 1;
                }
                assert_eq!(&got[12..], &p[..], "host packet {j} (round {round}, ring {size})");
                rx_pkts += 1;
            }
            assert!(rx.pop_used().is_none(), "no used RX buffer beyond the packets sent");
            for p in raw {
                // SAFETY: the mbufs stay ours after enqueue (copy semantics).
                unsafe { Mbuf::from_raw(p) }.unwrap().free();
            }
        }
        // Drain what is left on the TX ring.
        while !expected.is_empty() {
            let mut out = [std::ptr::null_mut::<RteMbuf>(); 32];
            // SAFETY: valid vid, queue, pool and a 32-entry array.
            let n = unsafe { rte_vhost_dequeue_burst(vid, 1, pool.as_ptr(), out.as_mut_ptr(), 32) };
            for &p in &out[..usize::from(n)] {
                // SAFETY: an mbuf the library handed us.
                let m = unsafe { Mbuf::from_raw(p) }.unwrap();
                assert_eq!(packet_bytes(&m), expected.pop_front().unwrap());
                m.free();
            }
            while tx.pop_used().is_some() {}
            if n == 0 {
                break;
            }
        }
        assert!(expected.is_empty(), "every guest packet dequeued");
        assert_eq!(tx.in_flight(), 0, "every TX buffer used");
        assert!(tx_good > 3000 && tx_bad > 300 && rx_pkts > 3000, "{tx_good} {tx_bad} {rx_pkts}");
        // The wrap counters turned many times.
        assert!(tx_good + tx_bad > 20 * u64::from(size));
    }
}
