//! The datapath through the C API over a synthetic split ring: a scripted
//! front-end sets the device up over a real socket and plays the guest
//! driver in its own memory. Payloads are compared byte for byte both ways,
//! used-ring entries checked, malformed chains dropped without harm, and with
//! migration logging on, exactly the written pages are marked dirty.

mod common;

use std::ffi::{c_char, c_int, c_uint, CString};
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicI32, Ordering};

use common::{eal_init, socket_path, Frontend, GuestRam};
use rvhost::dpdk::mbuf::{ol, rte_mempool, Mbuf, RteMbuf};
use rvhost::protocol::Request;

const RING: u16 = 256;
const F_VERSION_1: u64 = 1 << 32;
const F_MRG_RXBUF: u64 = 1 << 15;
const F_LOG_ALL: u64 = 1 << 26;
const NET_STATS_ENABLE: u64 = 1 << 9;
const D_NEXT: u16 = 1;
const D_WRITE: u16 = 2;

#[repr(C)]
struct DeviceOps {
    new_device: Option<unsafe extern "C" fn(c_int) -> c_int>,
    rest: [usize; 7],
}

static VID: AtomicI32 = AtomicI32::new(-1);
unsafe extern "C" fn new_device(vid: c_int) -> c_int {
    VID.store(vid, Ordering::SeqCst);
    0
}
static OPS: DeviceOps = DeviceOps { new_device: Some(new_device), rest: [0; 7] };

extern "C" {
    fn rte_vhost_driver_register(path: *const c_char, flags: u64) -> c_int;
    fn rte_vhost_driver_callback_register(path: *const c_char, ops: *const DeviceOps) -> c_int;
    fn rte_vhost_driver_start(path: *const c_char) -> c_int;
    fn rte_vhost_enqueue_burst(vid: c_int, q: u16, pkts: *mut *mut RteMbuf, n: u16) -> u16;
    fn rte_vhost_dequeue_burst(
        vid: c_int,
        q: u16,
        mp: *mut rte_mempool,
        pkts: *mut *mut RteMbuf,
        n: u16,
    ) -> u16;
    fn rte_vhost_vring_stats_get(vid: c_int, q: u16, stats: *mut [u64; 2], n: c_uint) -> c_int;
    fn rte_pktmbuf_pool_create(
        name: *const c_char,
        n: c_uint,
        cache: c_uint,
        priv_size: u16,
        data_room: u16,
        socket: c_int,
    ) -> *mut rte_mempool;
    fn rte_pktmbuf_free_bulk(m: *mut *mut RteMbuf, n: c_uint);
}

/// The guest driver's view of one split ring in its memory.
struct Ring<'a> {
    ram: &'a GuestRam,
    base: u64,
    avail_idx: u16,
}

impl Ring<'_> {
    fn desc_off(&self) -> u64 {
        self.base
    }
    fn avail_off(&self) -> u64 {
        self.base + 16 * u64::from(RING)
    }
    fn used_off(&self) -> u64 {
        self.base + 0x2000
    }
    fn w16(&self, off: u64, v: u16) {
        self.ram.bytes_mut()[off as usize..off as usize + 2].copy_from_slice(&v.to_le_bytes());
    }
    fn r16(&self, off: u64) -> u16 {
        u16::from_le_bytes(self.ram.bytes()[off as usize..off as usize + 2].try_into().unwrap())
    }
    fn r32(&self, off: u64) -> u32 {
        u32::from_le_bytes(self.ram.bytes()[off as usize..off as usize + 4].try_into().unwrap())
    }
    fn set_desc(&self, i: u16, gpa: u64, len: u32, flags: u16, next: u16) {
        let o = (self.desc_off() + 16 * u64::from(i)) as usize;
        let b = self.ram.bytes_mut();
        b[o..o + 8].copy_from_slice(&gpa.to_le_bytes());
        b[o + 8..o + 12].copy_from_slice(&len.to_le_bytes());
        b[o + 12..o + 14].copy_from_slice(&flags.to_le_bytes());
        b[o + 14..o + 16].copy_from_slice(&next.to_le_bytes());
    }
    /// Makes chain `head` available.
    fn post(&mut self, head: u16) {
        self.w16(self.avail_off() + 4 + 2 * u64::from(self.avail_idx % RING), head);
        self.avail_idx = self.avail_idx.wrapping_add(1);
        self.w16(self.avail_off() + 2, self.avail_idx);
    }
    fn used_idx(&self) -> u16 {
        self.r16(self.used_off() + 2)
    }
    fn used(&self, i: u16) -> (u32, u32) {
        let o = self.used_off() + 4 + 8 * u64::from(i % RING);
        (self.r32(o), self.r32(o + 4))
    }
    fn addr_msg(&self, index: u32, log_flag: bool) -> Vec<u8> {
        let ua = |off: u64| self.ram.addr + off;
        let mut p = index.to_ne_bytes().to_vec();
        p.extend_from_slice(&u32::from(log_flag).to_ne_bytes());
        for v in [ua(self.desc_off()), ua(self.used_off()), ua(self.avail_off()), self.used_off()] {
            p.extend_from_slice(&v.to_ne_bytes());
        }
        p
    }
}

/// An Ethernet/IPv4/TCP frame (60 bytes).
fn tcp_ipv4_frame() -> Vec<u8> {
    let mut f = vec![0u8; 60];
    f[..6].copy_from_slice(&[0x52, 0x54, 0, 0, 0, 1]);
    f[6..12].copy_from_slice(&[0x52, 0x54, 0, 0, 0, 2]);
    f[12..14].copy_from_slice(&[0x08, 0x00]);
    f[14] = 0x45; // IPv4, 20-byte header
    f[16..18].copy_from_slice(&46u16.to_be_bytes());
    f[23] = 6; // TCP
    f[46] = 5 << 4; // 20-byte TCP header
    f
}

fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len).map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed)).collect()
}

fn acked(fe: &Frontend, req: Request, payload: &[u8], fds: &[i32]) {
    fe.send(req, payload, fds, true);
    let r = fe.recv();
    assert_eq!(r.payload, 0u64.to_ne_bytes(), "{req:?} acked with success");
}

#[test]
fn payloads_round_trip_and_logging_marks_written_pages() {
    eal_init();
    let path = socket_path("datapath");
    let cpath = CString::new(path.clone()).unwrap();
    // SAFETY: valid path and a static ops table.
    unsafe {
        assert_eq!(rte_vhost_driver_register(cpath.as_ptr(), NET_STATS_ENABLE), 0);
        assert_eq!(rte_vhost_driver_callback_register(cpath.as_ptr(), &OPS), 0);
        assert_eq!(rte_vhost_driver_start(cpath.as_ptr()), 0);
    }
    // SAFETY: EAL is initialised; a fresh pool.
    let pool = unsafe { rte_pktmbuf_pool_create(c"dp".as_ptr(), 1023, 0, 0, 2048 + 128, -1) };
    assert!(!pool.is_null());

    let ram = GuestRam::new(2 << 20);
    let fe = Frontend::connect(&path);
    fe.send(Request::SetOwner, &[], &[], false);
    fe.set_u64(Request::SetProtocolFeatures, (1 << 3) | (1 << 1)); // REPLY_ACK | LOG_SHMFD
    acked(&fe, Request::SetFeatures, &(F_VERSION_1 | F_MRG_RXBUF).to_ne_bytes(), &[]);
    acked(&fe, Request::SetMemTable, &ram.mem_table(), &[ram.fd.as_raw_fd()]);
    let mut rx = Ring { ram: &ram, base: 0x10000, avail_idx: 0 };
    let mut tx = Ring { ram: &ram, base: 0x20000, avail_idx: 0 };
    let efds: Vec<_> = (0..4).map(|_| nix::sys::eventfd::EventFd::new().unwrap()).collect();
    for (q, ring) in [(0u32, &rx), (1, &tx)] {
        acked(&fe, Request::SetVringNum, &[q.to_ne_bytes(), u32::from(RING).to_ne_bytes()].concat(), &[]);
        acked(&fe, Request::SetVringBase, &[q.to_ne_bytes(), 0u32.to_ne_bytes()].concat(), &[]);
        acked(&fe, Request::SetVringAddr, &ring.addr_msg(q, true), &[]);
        acked(&fe, Request::SetVringCall, &u64::from(q).to_ne_bytes(), &[efds[q as usize].as_raw_fd()]);
        acked(&fe, Request::SetVringKick, &u64::from(q).to_ne_bytes(), &[efds[2 + q as usize].as_raw_fd()]);
    }
    // new_device runs right after the last reply (as in DPDK): wait for it.
    let mut vid = -1;
    for _ in 0..500 {
        vid = VID.load(Ordering::SeqCst);
        if vid >= 0 {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    assert!(vid >= 0, "new_device fired (no protocol features: kicked rings are enabled)");

    // --- host -> guest: three packets into four 2 KiB RX buffers.
    for i in 0..4u16 {
        rx.set_desc(i, 0x40000 + 0x1000 * u64::from(i), 2048, D_WRITE, 0);
        rx.post(i);
    }
    let lens = [60usize, 1000, 1514];
    let mut pkts: Vec<*mut RteMbuf> = lens
        .iter()
        .enumerate()
        .map(|(k, &len)| {
            // SAFETY: a fresh mbuf from our pool, filled within its room.
            unsafe {
                let m =
                    rvhost::dpdk::mbuf::alloc(rvhost::dpdk::mbuf::Mempool::from_raw(pool).unwrap()).unwrap();
                let mut mm = m;
                mm.tail_mut(len).copy_from_slice(&pattern(len, k as u8));
                mm.commit(len);
                mm.set_pkt_len(len as u32);
                m.as_ptr()
            }
        })
        .collect();
    // SAFETY: valid vid, queue, and three mbufs.
    let sent = unsafe { rte_vhost_enqueue_burst(vid, 0, pkts.as_mut_ptr(), 3) };
    assert_eq!(sent, 3);
    assert_eq!(rx.used_idx(), 3);
    for (k, &len) in lens.iter().enumerate() {
        let (id, ulen) = rx.used(k as u16);
        assert_eq!((id, ulen as usize), (k as u32, 12 + len), "used entry {k}");
        let at = 0x40000 + 0x1000 * k;
        let buf = &ram.bytes()[at..at + 12 + len];
        assert_eq!(&buf[..10], &[0u8; 10], "no offload requested");
        assert_eq!(u16::from_le_bytes([buf[10], buf[11]]), 1, "num_buffers");
        assert_eq!(&buf[12..], &pattern(len, k as u8)[..], "payload {k}");
    }
    // SAFETY: the mbufs stay ours after enqueue (copy semantics).
    unsafe { rte_pktmbuf_free_bulk(pkts.as_mut_ptr(), 3) };

    // --- guest -> host: header + payload split over two descriptors, then
    // a malformed chain (address outside memory) that must be dropped.
    let payload = pattern(3000, 7);
    ram.bytes_mut()[0x80000..0x80000 + 12].fill(0);
    ram.bytes_mut()[0x81000..0x81000 + 3000].copy_from_slice(&payload);
    tx.set_desc(0, 0x80000, 12, D_NEXT, 1);
    tx.set_desc(1, 0x81000, 1000, D_NEXT, 2);
    tx.set_desc(2, 0x81000 + 1000, 2000, 0, 0);
    tx.post(0);
    tx.set_desc(3, 0x4000_0000, 64, 0, 0);
    tx.post(3);
    let mut out = [std::ptr::null_mut::<RteMbuf>(); 8];
    // SAFETY: valid vid, queue, pool and an 8-entry array.
    let got = unsafe { rte_vhost_dequeue_burst(vid, 1, pool, out.as_mut_ptr(), 8) };
    assert_eq!(got, 1, "one good packet, the malformed chain dropped");
    assert_eq!(tx.used_idx(), 2, "both chains returned to the guest");
    // SAFETY: an mbuf the library handed us.
    let m = unsafe { Mbuf::from_raw(out[0]) }.unwrap();
    let mut bytes = Vec::new();
    let mut seg = Some(m);
    while let Some(s) = seg {
        bytes.extend_from_slice(s.data());
        seg = s.next();
    }
    assert_eq!(m.pkt_len(), 3000);
    assert_eq!(bytes, payload, "dequeued payload");
    m.free();
    let mut stats = [[0u64; 2]; 17];
    // SAFETY: 17 entries.
    assert_eq!(unsafe { rte_vhost_vring_stats_get(vid, 1, stats.as_mut_ptr(), 17) }, 17);
    assert_eq!((stats[0][1], stats[1][1]), (1, 3000), "good_packets / good_bytes");

    // --- offloads: an mbuf asking for a TCP checksum becomes a virtio-net
    // header with NEEDS_CSUM; a guest header asking for one becomes Tx flags
    // on the dequeued mbuf (the legacy, non-compliant behaviour).
    let frame = tcp_ipv4_frame();
    rx.set_desc(4, 0x44000, 2048, D_WRITE, 0);
    rx.post(4);
    // SAFETY: a fresh mbuf, filled within its room.
    let mut csum = [unsafe {
        let mut m = rvhost::dpdk::mbuf::alloc(rvhost::dpdk::mbuf::Mempool::from_raw(pool).unwrap()).unwrap();
        m.tail_mut(frame.len()).copy_from_slice(&frame);
        m.commit(frame.len());
        m.set_pkt_len(frame.len() as u32);
        m.set_ol_flags(ol::TX_TCP_CKSUM | ol::TX_IPV4);
        m.set_tx_offload(14, 20, 20, 0);
        m.as_ptr()
    }];
    // SAFETY: as above.
    assert_eq!(unsafe { rte_vhost_enqueue_burst(vid, 0, csum.as_mut_ptr(), 1) }, 1);
    // SAFETY: ours again.
    unsafe { rte_pktmbuf_free_bulk(csum.as_mut_ptr(), 1) };
    let h = &ram.bytes()[0x43000..0x43000 + 12];
    assert_eq!(h[0], 1, "VIRTIO_NET_HDR_F_NEEDS_CSUM");
    assert_eq!(u16::from_le_bytes([h[6], h[7]]), 34, "csum_start = l2 + l3");
    assert_eq!(u16::from_le_bytes([h[8], h[9]]), 16, "csum_offset of the TCP checksum");
    let mut hdr = [0u8; 12];
    hdr[0] = 1;
    hdr[6..8].copy_from_slice(&34u16.to_le_bytes());
    hdr[8..10].copy_from_slice(&16u16.to_le_bytes());
    ram.bytes_mut()[0x82000..0x82000 + 12].copy_from_slice(&hdr);
    ram.bytes_mut()[0x83000..0x83000 + frame.len()].copy_from_slice(&frame);
    tx.set_desc(4, 0x82000, 12, D_NEXT, 5);
    tx.set_desc(5, 0x83000, frame.len() as u32, 0, 0);
    tx.post(4);
    let mut got = [std::ptr::null_mut::<RteMbuf>(); 2];
    // SAFETY: valid vid, queue, pool and a 2-entry array.
    assert_eq!(unsafe { rte_vhost_dequeue_burst(vid, 1, pool, got.as_mut_ptr(), 2) }, 1);
    // SAFETY: an mbuf the library handed us.
    let g = unsafe { Mbuf::from_raw(got[0]) }.unwrap();
    assert_eq!(g.ol_flags() & (ol::TX_L4_MASK | ol::TX_IPV4), ol::TX_TCP_CKSUM | ol::TX_IPV4);
    let t = g.tx_offload();
    assert_eq!((t.l2_len(), t.l3_len()), (14, 20));
    assert_eq!(g.data(), &frame[..]);
    g.free();

    // --- SEND_RARP: the next dequeue burst starts with a RARP broadcast
    // announcing the guest's MAC (DPDK builds it with rte_net_make_rarp_packet).
    let mac = [0x52u8, 0x54, 0, 0x12, 0x34, 0x56];
    let mut arg = [0u8; 8];
    arg[..6].copy_from_slice(&mac);
    fe.set_u64(Request::SendRarp, u64::from_ne_bytes(arg));
    assert_eq!(fe.call_u64(Request::GetQueueNum), 128, "SEND_RARP handled");
    let mut rarp = [std::ptr::null_mut::<RteMbuf>(); 4];
    // SAFETY: valid vid, queue, pool and a 4-entry array.
    assert_eq!(unsafe { rte_vhost_dequeue_burst(vid, 1, pool, rarp.as_mut_ptr(), 4) }, 1);
    // SAFETY: an mbuf the library handed us.
    let r = unsafe { Mbuf::from_raw(rarp[0]) }.unwrap();
    let frame = r.data();
    assert_eq!(&frame[..6], &[0xff; 6], "broadcast");
    assert_eq!(&frame[6..12], &mac, "source is the guest's MAC");
    assert_eq!(&frame[12..14], &[0x80, 0x35], "RARP ethertype");
    r.free();

    // --- migration logging: a 2 MiB guest needs 64 bytes of bitmap.
    let log = GuestRam::new(4096);
    let mut area = 64u64.to_ne_bytes().to_vec();
    area.extend_from_slice(&0u64.to_ne_bytes());
    fe.send(Request::SetLogBase, &area, &[log.fd.as_raw_fd()], false);
    assert!(fe.recv().payload.is_empty(), "SET_LOG_BASE reply has no body");
    acked(&fe, Request::SetFeatures, &(F_VERSION_1 | F_MRG_RXBUF | F_LOG_ALL).to_ne_bytes(), &[]);
    rx.set_desc(5, 0x45000, 2048, D_WRITE, 0);
    rx.post(5);
    // SAFETY: a fresh mbuf, filled within its room.
    let mut one = [unsafe {
        let mut m = rvhost::dpdk::mbuf::alloc(rvhost::dpdk::mbuf::Mempool::from_raw(pool).unwrap()).unwrap();
        m.tail_mut(100).fill(0xab);
        m.commit(100);
        m.set_pkt_len(100);
        m.as_ptr()
    }];
    // The handler may still hold the ring lock right after its reply; a burst
    // then moves nothing (as in DPDK) and the application retries.
    let mut sent = 0;
    for _ in 0..1000 {
        // SAFETY: as above.
        sent = unsafe { rte_vhost_enqueue_burst(vid, 0, one.as_mut_ptr(), 1) };
        if sent == 1 {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
    assert_eq!(sent, 1);
    // SAFETY: ours again.
    unsafe { rte_pktmbuf_free_bulk(one.as_mut_ptr(), 1) };
    let dirty: Vec<u64> =
        (0..512u64).filter(|p| log.bytes()[(p / 8) as usize] & (1 << (p % 8)) != 0).collect();
    // The buffer's page (0x44000: the RX buffers are used in order) and the
    // used ring's page (logged at the ring's guest address, 0x12000).
    assert_eq!(dirty, vec![0x12, 0x44], "exactly the written pages are dirty");
    assert_eq!(&ram.bytes()[0x44000 + 12..0x44000 + 112], &[0xab; 100][..]);
}
