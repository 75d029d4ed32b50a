//! Where a dequeued packet's data goes, as DPDK 22.11's
//! `virtio_dev_pktmbuf_prep`: with external buffers a large packet gets one
//! `rte_malloc`'ed segment freed with the mbuf, with linear buffers one
//! larger than the data room is dropped, without either it is chained.
//!
//! The tests run one at a time (`serial`): they count DPDK heap
//! allocations, which any concurrent pool creation would disturb.

mod common;

use std::ffi::{c_int, c_uint};
use std::sync::{Mutex, MutexGuard};

use common::net::*;
use common::rig::*;
use rvhost::testing::{ol, rte_mempool, Mbuf, Request};

// rte_vhost_driver_register flags (rte_vhost.h).
const EXTBUF_SUPPORT: u64 = 1 << 5;
const LINEARBUF_SUPPORT: u64 = 1 << 6;

/// A 9000-byte guest packet over three 3000-byte descriptors.
const JUMBO: usize = 9000;

#[repr(C)]
#[derive(Default)]
struct MallocSocketStats {
    heap_totalsz_bytes: usize,
    heap_freesz_bytes: usize,
    greatest_free_size: usize,
    free_count: c_uint,
    alloc_count: c_uint,
    heap_allocsz_bytes: usize,
}

extern "C" {
    fn rte_mempool_avail_count(mp: *const rte_mempool) -> c_uint;
    fn rte_socket_count() -> c_uint;
    fn rte_socket_id_by_idx(idx: c_uint) -> c_int;
    fn rte_malloc_get_socket_stats(socket: c_int, stats: *mut MallocSocketStats) -> c_int;
}

fn serial() -> MutexGuard<'static, ()> {
    static SERIAL: Mutex<()> = Mutex::new(());
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

/// Elements allocated on DPDK's heaps, all sockets.
fn heap_allocs() -> u64 {
    // SAFETY: plain EAL queries into a local stats struct.
    unsafe {
        (0..rte_socket_count())
            .map(|i| {
                let mut s = MallocSocketStats::default();
                assert_eq!(rte_malloc_get_socket_stats(rte_socket_id_by_idx(i), &mut s), 0);
                u64::from(s.alloc_count)
            })
            .sum()
    }
}

fn assert_one_external_segment(m: &Mbuf, payload: &[u8]) {
    assert_ne!(m.ol_flags() & ol::EXTERNAL, 0, "RTE_MBUF_F_EXTERNAL");
    assert_eq!(m.nb_segs(), 1, "one segment");
    assert_eq!(u32::from(m.data_len()), m.pkt_len(), "data_len == pkt_len");
    assert_eq!(m.pkt_len() as usize, payload.len());
    assert!(m.data() == payload, "payload intact");
}

#[test]
fn extbuf_gives_a_large_packet_one_external_segment_freed_with_the_mbuf() {
    let _serial = serial();
    let mut g = Guest::connect("extbuf", EXTBUF_SUPPORT, BASIC);
    let pool = g.rig.pool.as_ptr();
    // SAFETY: a valid pool.
    let pool_free = unsafe { rte_mempool_avail_count(pool) };
    let heap = heap_allocs();
    for round in 0..1000u32 {
        let payload = pattern(JUMBO, round as u8);
        let m = g.send_from_guest([0; 12], &payload, 3000);
        assert_one_external_segment(&m, &payload);
        // The headroom is the standard one, as on a pool mbuf.
        assert_eq!(m.data().as_ptr() as usize - m.tx_offload().buf_addr as usize, 128);
        if round == 0 {
            assert_eq!(heap_allocs(), heap + 1, "one rte_malloc'ed buffer behind the mbuf");
        }
        m.free();
    }
    assert_eq!(heap_allocs(), heap, "every external buffer went back to the heap");
    // SAFETY: as above.
    assert_eq!(unsafe { rte_mempool_avail_count(pool) }, pool_free, "every mbuf back in its pool");

    // A packet whose buffer would exceed an mbuf's 16-bit buffer length gets
    // no external buffer: without LINEARBUF it is chained, as in DPDK.
    let payload = pattern(65500, 9);
    let m = g.send_from_guest([0; 12], &payload, 8192);
    assert_eq!(m.ol_flags() & ol::EXTERNAL, 0);
    assert_eq!(m.nb_segs(), 32, "65500 bytes in 2048-byte segments");
    assert_eq!(m.pkt_len(), 65500);
    assert!(packet_bytes(&m) == payload);
    m.free();
    assert_eq!(heap_allocs(), heap);
}

#[test]
fn linearbuf_drops_a_packet_larger_than_the_data_room_and_moves_on() {
    let _serial = serial();
    let mut g = Guest::connect("linear", LINEARBUF_SUPPORT, BASIC);
    // As DPDK: linear buffers without external ones withdraw the host
    // segmentation offloads (a TSO packet could not fit an mbuf).
    let offered = g.rig.fe.call_u64(Request::GetFeatures);
    assert_eq!(offered & (F_HOST_TSO4 | F_HOST_TSO6 | F_HOST_UFO), 0, "no host TSO/UFO offered");
    assert_ne!(offered & F_CSUM, 0);

    let big = pattern(2049, 1);
    let fits = pattern(2048, 2);
    let head_big = g.post_packet(0x80000, [0; 12], &big, 1000);
    let head_fits = g.post_packet(0x90000, [0; 12], &fits, 1000);
    let got = g.dequeue_all();
    assert_eq!(got.len(), 1, "the 2049-byte packet dropped");
    assert_eq!((got[0].nb_segs(), got[0].ol_flags()), (1, 0));
    assert!(packet_bytes(&got[0]) == fits, "the 2048-byte packet (the data room) intact");
    got.into_iter().for_each(Mbuf::free);
    let returned: Vec<u16> = g.tx_used.iter().map(|u| u.id).collect();
    assert_eq!(returned, [head_big, head_fits], "both chains returned to the guest");
    let after = pattern(1500, 3);
    let m = g.send_from_guest([0; 12], &after, 700);
    assert!(packet_bytes(&m) == after, "the ring moved on");
    m.free();
}

#[test]
fn extbuf_with_linearbuf_attaches_an_external_buffer_or_drops_never_chains() {
    let _serial = serial();
    let mut g = Guest::connect("extlin", EXTBUF_SUPPORT | LINEARBUF_SUPPORT, BASIC);
    let offered = g.rig.fe.call_u64(Request::GetFeatures);
    assert_eq!(offered & F_HOST_TSO4, F_HOST_TSO4, "with external buffers TSO stays offered");
    let heap = heap_allocs();
    let payload = pattern(JUMBO, 4);
    let m = g.send_from_guest([0; 12], &payload, 3000);
    assert_one_external_segment(&m, &payload);
    m.free();
    let too_big = pattern(65500, 5);
    g.post_packet(0x80000, [0; 12], &too_big, 8192);
    let next = pattern(100, 6);
    g.post_packet(0xa0000, [0; 12], &next, 100);
    let got = g.dequeue_all();
    assert_eq!(got.len(), 1, "the packet too large for an external buffer dropped");
    assert!(packet_bytes(&got[0]) == next);
    got.into_iter().for_each(Mbuf::free);
    assert_eq!(heap_allocs(), heap);
}
