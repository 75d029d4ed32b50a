//! The datapath through the C API over split rings: a scripted front-end
//! sets the device up over a real socket and the driver model plays the
//! guest in its own memory. Payloads are compared byte for byte both ways,
//! used entries checked, a malformed chain dropped without harm, ring
//! stats counted, SEND_RARP announced, and with migration logging on
//! exactly the written pages are marked dirty.

mod common;

use std::ffi::{c_int, c_uint};
use std::os::fd::AsRawFd;

use common::net::*;
use common::rig::*;
use common::GuestRam;
use rvhost::testing::mock::Buf;
use rvhost::testing::{Mbuf, Request, RteMbuf};

// rte_vhost_driver_register flags (rte_vhost.h).
const NET_STATS_ENABLE: u64 = 1 << 9;

extern "C" {
    fn rte_vhost_vring_stats_get(vid: c_int, q: u16, stats: *mut [u64; 2], n: c_uint) -> c_int;
}

#[test]
fn payloads_round_trip_and_logging_marks_written_pages() {
    let mut g = Guest::connect("dp", NET_STATS_ENABLE, BASIC);
    let vid = g.rig.vid;

    // --- host -> guest: three packets into three 2 KiB RX buffers.
    g.post_rx_buffers(0x40000, 3);
    let lens = [60usize, 1000, 1514];
    let mut pkts: Vec<*mut RteMbuf> =
        lens.iter().enumerate().map(|(k, &len)| g.mbuf(&pattern(len, k as u8)).as_ptr()).collect();
    // SAFETY: valid vid, queue, and three mbufs.
    let sent = unsafe { rte_vhost_enqueue_burst(vid, 0, pkts.as_mut_ptr(), 3) };
    assert_eq!(sent, 3);
    for (k, &len) in lens.iter().enumerate() {
        let used = g.rx.pop_used().expect("a used entry per packet");
        assert_eq!((used.id, used.len as usize), (k as u16, 12 + len), "used entry {k}");
        let buf = g.rx.mem().read(0x40000 + 0x1000 * k as u64, 12 + len);
        assert_eq!(&buf[..10], &[0u8; 10], "no offload requested");
        assert_eq!(u16::from_le_bytes([buf[10], buf[11]]), 1, "num_buffers");
        assert_eq!(&buf[12..], &pattern(len, k as u8)[..], "payload {k}");
    }
    assert_eq!(g.rx.pop_used(), None, "three used entries");
    for p in pkts {
        // SAFETY: the mbufs stay ours after enqueue (copy semantics).
        unsafe { Mbuf::from_raw(p) }.unwrap().free();
    }

    // --- guest -> host: header + payload split over two descriptors, then
    // a malformed chain (address outside memory) that must be dropped.
    let payload = pattern(3000, 7);
    g.post_packet(0x80000, [0; 12], &payload, 1000);
    g.tx.post(&[Buf { gpa: 0x4000_0000, len: 64, write: false }]).unwrap();
    let got = g.dequeue_all();
    assert_eq!(got.len(), 1, "one good packet, the malformed chain dropped");
    assert_eq!(got[0].pkt_len(), 3000);
    assert_eq!(packet_bytes(&got[0]), payload, "dequeued payload");
    got.into_iter().for_each(Mbuf::free);
    // 17 counters per ring in 22.11, 21 from 24.11 on.
    const COUNTERS: usize = if cfg!(feature = "abi-24-11") { 21 } else { 17 };
    let mut stats = [[0u64; 2]; COUNTERS];
    // SAFETY: COUNTERS entries.
    let n = unsafe { rte_vhost_vring_stats_get(vid, 1, stats.as_mut_ptr(), COUNTERS as _) };
    assert_eq!(n, COUNTERS as c_int);
    assert_eq!((stats[0][1], stats[1][1]), (1, 3000), "good_packets / good_bytes");

    // --- without a host offload feature negotiated (CSUM, HOST_TSO4/6,
    // HOST_UFO, HOST_ECN) DPDK does not read the guest's header: a checksum
    // request sets no flag on the dequeued mbuf.
    let f = frame(true, TCP, 20, 6);
    let m = g.send_from_guest(net_hdr(NEEDS_CSUM, 0, 0, 0, 34, 16), &f, 2048);
    assert_eq!((m.ol_flags(), m.tx_offload().tx_offload), (0, 0), "header ignored");
    assert_eq!(m.data(), &f[..]);
    m.free();

    // --- SEND_RARP: the next dequeue burst starts with a RARP broadcast
    // announcing the guest's MAC (DPDK builds it with rte_net_make_rarp_packet).
    let mac = [0x52u8, 0x54, 0, 0x12, 0x34, 0x56];
    let mut arg = [0u8; 8];
    arg[..6].copy_from_slice(&mac);
    g.rig.fe.set_u64(Request::SendRarp, u64::from_ne_bytes(arg));
    assert_eq!(g.rig.fe.call_u64(Request::GetQueueNum), 128, "SEND_RARP handled");
    let rarp = g.dequeue_all();
    assert_eq!(rarp.len(), 1);
    let frame = rarp[0].data();
    assert_eq!(&frame[..6], &[0xff; 6], "broadcast");
    assert_eq!(&frame[6..12], &mac, "source is the guest's MAC");
    assert_eq!(&frame[12..14], &[0x80, 0x35], "RARP ethertype");
    rarp.into_iter().for_each(Mbuf::free);

    // --- migration logging: a 2 MiB guest needs 64 bytes of bitmap.
    let log = GuestRam::new(4096);
    let mut area = 64u64.to_ne_bytes().to_vec();
    area.extend_from_slice(&0u64.to_ne_bytes());
    g.rig.fe.send(Request::SetLogBase, &area, &[log.fd.as_raw_fd()], false);
    assert!(g.rig.fe.recv().payload.is_empty(), "SET_LOG_BASE reply has no body");
    assert_eq!(g.rig.ack(Request::SetFeatures, &(BASIC | F_LOG_ALL).to_ne_bytes(), &[]), 0);
    g.post_rx_buffers(0x45000, 1);
    // The handler may still hold the ring lock right after its reply; the
    // helper retries.
    g.enqueue(g.mbuf(&[0xab; 100]));
    let dirty: Vec<u64> =
        (0..512u64).filter(|p| log.bytes()[(p / 8) as usize] & (1 << (p % 8)) != 0).collect();
    // The buffer's page (0x45000: the RX buffers are used in order) and the
    // used ring's page (logged at the ring's guest address, 0x12000).
    assert_eq!(dirty, vec![0x12, 0x45], "exactly the written pages are dirty");
    assert_eq!(g.rx.mem().read(0x45000 + 12, 100), [0xab; 100]);
}
