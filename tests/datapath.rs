//! The datapath through the C API over a synthetic split ring: a scripted
//! front-end sets the device up over a real socket and plays the guest
//! driver in its own memory. Payloads are compared byte for byte both ways,
//! used-ring entries checked, malformed chains dropped without harm, with
//! migration logging on exactly the written pages are marked dirty, external
//! and linear buffers behave as DPDK 22.11's `virtio_dev_pktmbuf_prep`, and
//! the virtio-net header maps to and from mbuf offloads as its
//! `virtio_enqueue_offload` / `vhost_dequeue_offload(_legacy)`.
//!
//! The tests run one at a time (`serial`): the external-buffer test counts
//! DPDK heap allocations, which any concurrent pool creation would disturb.

mod common;

use std::ffi::{c_char, c_int, c_uint, CStr, CString};
use std::os::fd::AsRawFd;
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use common::rig::{rte_vhost_driver_callback_register, DeviceOps, NO_OPS};
use common::{eal_init, socket_path, Frontend, GuestRam};
use rvhost::testing::Request;
use rvhost::testing::{mbuf, ol, rte_mempool, Mbuf, Mempool, RteMbuf};

const RING: u16 = 256;

// Feature bits (virtio-net, vhost).
const F_CSUM: u64 = 1 << 0;
const F_GUEST_CSUM: u64 = 1 << 1;
const F_GUEST_TSO4: u64 = 1 << 7;
const F_GUEST_TSO6: u64 = 1 << 8;
const F_GUEST_UFO: u64 = 1 << 10;
const F_HOST_TSO4: u64 = 1 << 11;
const F_HOST_TSO6: u64 = 1 << 12;
const F_HOST_UFO: u64 = 1 << 14;
const F_MRG_RXBUF: u64 = 1 << 15;
const F_LOG_ALL: u64 = 1 << 26;
const F_VERSION_1: u64 = 1 << 32;
const F_RING_PACKED: u64 = 1 << 34;
const F_IN_ORDER: u64 = 1 << 35;
const BASIC: u64 = F_VERSION_1 | F_MRG_RXBUF;
const OFFLOADS: u64 = BASIC
    | F_CSUM
    | F_GUEST_CSUM
    | F_GUEST_TSO4
    | F_GUEST_TSO6
    | F_GUEST_UFO
    | F_HOST_TSO4
    | F_HOST_TSO6
    | F_HOST_UFO;

// rte_vhost_driver_register flags (rte_vhost.h).
const EXTBUF_SUPPORT: u64 = 1 << 5;
const LINEARBUF_SUPPORT: u64 = 1 << 6;
const NET_COMPLIANT_OL_FLAGS: u64 = 1 << 8;
const NET_STATS_ENABLE: u64 = 1 << 9;

// virtio-net header values.
const NEEDS_CSUM: u8 = 1;
const DATA_VALID: u8 = 2;
const GSO_TCPV4: u8 = 1;
const GSO_UDP: u8 = 3;
const GSO_TCPV6: u8 = 4;

// RTE_PTYPE_* (rte_mbuf_ptype.h).
const PTYPE_ETHER_IPV4_TCP: u32 = 0x1 | 0x10 | 0x100;
const PTYPE_ETHER_IPV6_UDP: u32 = 0x1 | 0x40 | 0x200;
const PTYPE_ETHER_IPV4: u32 = 0x1 | 0x10;

const D_NEXT: u16 = 1;
const D_WRITE: u16 = 2;
const TCP: u8 = 6;
const UDP: u8 = 17;

/// Devices created and not yet claimed by a test (`Guest::connect`).
static NEW_VIDS: Mutex<Vec<c_int>> = Mutex::new(Vec::new());
unsafe extern "C" fn new_device(vid: c_int) -> c_int {
    NEW_VIDS.lock().unwrap().push(vid);
    0
}
static OPS: DeviceOps = DeviceOps { new_device: Some(new_device), ..NO_OPS };

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
    fn rte_vhost_driver_register(path: *const c_char, flags: u64) -> c_int;
    fn rte_vhost_driver_start(path: *const c_char) -> c_int;
    fn rte_vhost_get_ifname(vid: c_int, buf: *mut c_char, len: usize) -> c_int;
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

/// The guest driver's view of one split ring in its memory.
struct Ring {
    ram: &'static GuestRam,
    base: u64,
    avail_idx: u16,
    next_desc: u16,
}

impl Ring {
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
    fn desc_addr(&self, i: u32) -> usize {
        let o = (self.desc_off() + 16 * u64::from(i)) as usize;
        u64::from_le_bytes(self.ram.bytes()[o..o + 8].try_into().unwrap()) as usize
    }
    /// Makes chain `head` available.
    fn post(&mut self, head: u16) {
        self.w16(self.avail_off() + 4 + 2 * u64::from(self.avail_idx % RING), head);
        self.avail_idx = self.avail_idx.wrapping_add(1);
        self.w16(self.avail_off() + 2, self.avail_idx);
    }
    fn take_desc(&mut self) -> u16 {
        let d = self.next_desc;
        self.next_desc = (d + 1) % RING;
        d
    }
    /// Posts one guest packet: its virtio-net header alone in a descriptor at
    /// `gpa`, the payload at `gpa + 0x1000` in descriptors of at most `seg`
    /// bytes. Returns the chain's head.
    fn post_packet(&mut self, gpa: u64, hdr: [u8; 12], payload: &[u8], seg: usize) -> u16 {
        let b = self.ram.bytes_mut();
        b[gpa as usize..gpa as usize + 12].copy_from_slice(&hdr);
        let data = gpa as usize + 0x1000;
        b[data..data + payload.len()].copy_from_slice(payload);
        let head = self.take_desc();
        let mut prev = (head, gpa, 12u32);
        for (k, chunk) in payload.chunks(seg).enumerate() {
            let d = self.take_desc();
            self.set_desc(prev.0, prev.1, prev.2, D_NEXT, d);
            prev = (d, (data + k * seg) as u64, chunk.len() as u32);
        }
        self.set_desc(prev.0, prev.1, prev.2, 0, 0);
        self.post(head);
        head
    }
    /// Posts `n` writable 2 KiB buffers from `gpa` on, 4 KiB apart.
    fn post_buffers(&mut self, gpa: u64, n: u64) {
        for k in 0..n {
            let d = self.take_desc();
            self.set_desc(d, gpa + 0x1000 * k, 2048, D_WRITE, 0);
            self.post(d);
        }
    }
    fn used_idx(&self) -> u16 {
        self.r16(self.used_off() + 2)
    }
    fn used(&self, i: u16) -> (u32, u32) {
        let o = self.used_off() + 4 + 8 * u64::from(i % RING);
        (self.r32(o), self.r32(o + 4))
    }
    fn addr_msg(&self, index: u32, log_flag: bool) -> Vec<u8> {
        vring_addr(self.ram, index, log_flag, self.desc_off(), self.used_off(), self.avail_off())
    }
}

fn acked(fe: &Frontend, req: Request, payload: &[u8], fds: &[i32]) {
    fe.send(req, payload, fds, true);
    let r = fe.recv();
    assert_eq!(r.payload, 0u64.to_ne_bytes(), "{req:?} acked with success");
}

/// One vhost-user device driven by the scripted front-end: RX ring (queue
/// 0) at 0x10000, TX ring (queue 1) at 0x20000 of a 2 MiB guest memory, and
/// an mbuf pool with a 2048-byte data room.
struct Guest {
    vid: c_int,
    fe: Frontend,
    ram: &'static GuestRam,
    rx: Ring,
    tx: Ring,
    pool: *mut rte_mempool,
    _eventfds: Vec<nix::sys::eventfd::EventFd>,
}

/// A device set up by the scripted front-end: its vid, the front-end, an
/// mbuf pool with a 2048-byte data room, and the rings' eventfds.
struct Device {
    vid: c_int,
    fe: Frontend,
    pool: *mut rte_mempool,
    eventfds: Vec<nix::sys::eventfd::EventFd>,
}

/// Registers socket `name`, connects the scripted front-end and sets up
/// guest memory `ram` and rings 0 and 1 of `size` entries at the addresses
/// `addr_msg(q)` gives (a SET_VRING_ADDR payload); returns once
/// new_device has fired for the socket.
fn set_up(
    name: &str,
    socket_flags: u64,
    features: u64,
    ram: &GuestRam,
    size: u16,
    addr_msg: impl Fn(u32) -> Vec<u8>,
) -> Device {
    eal_init();
    let path = socket_path(name);
    let cpath = CString::new(path.clone()).unwrap();
    // SAFETY: valid path and a static ops table.
    unsafe {
        assert_eq!(rte_vhost_driver_register(cpath.as_ptr(), socket_flags), 0);
        assert_eq!(rte_vhost_driver_callback_register(cpath.as_ptr(), &OPS), 0);
        assert_eq!(rte_vhost_driver_start(cpath.as_ptr()), 0);
    }
    let pool_name = CString::new(name).unwrap();
    // SAFETY: EAL is initialised; a fresh pool.
    let pool = unsafe { rte_pktmbuf_pool_create(pool_name.as_ptr(), 1023, 0, 0, 2048 + 128, -1) };
    assert!(!pool.is_null());
    let fe = Frontend::connect(&path);
    fe.send(Request::SetOwner, &[], &[], false);
    fe.set_u64(Request::SetProtocolFeatures, (1 << 3) | (1 << 1)); // REPLY_ACK | LOG_SHMFD
    acked(&fe, Request::SetFeatures, &features.to_ne_bytes(), &[]);
    acked(&fe, Request::SetMemTable, &ram.mem_table(), &[ram.fd.as_raw_fd()]);
    let efds: Vec<_> = (0..4).map(|_| nix::sys::eventfd::EventFd::new().unwrap()).collect();
    for q in 0..2u32 {
        acked(&fe, Request::SetVringNum, &[q.to_ne_bytes(), u32::from(size).to_ne_bytes()].concat(), &[]);
        // Packed rings: avail wrap counter 1 (bit 15), as a fresh ring.
        let base = if features & F_RING_PACKED != 0 { 1u32 << 15 } else { 0 };
        acked(&fe, Request::SetVringBase, &[q.to_ne_bytes(), base.to_ne_bytes()].concat(), &[]);
        acked(&fe, Request::SetVringAddr, &addr_msg(q), &[]);
        acked(&fe, Request::SetVringCall, &u64::from(q).to_ne_bytes(), &[efds[q as usize].as_raw_fd()]);
        acked(&fe, Request::SetVringKick, &u64::from(q).to_ne_bytes(), &[efds[2 + q as usize].as_raw_fd()]);
    }
    // new_device runs right after the last reply (as in DPDK): wait for
    // the device whose ifname is our socket path.
    let vid = (0..500)
        .find_map(|_| {
            let mut vids = NEW_VIDS.lock().unwrap();
            let found = vids.iter().position(|&v| ifname(v) == path).map(|i| vids.remove(i));
            drop(vids);
            if found.is_none() {
                std::thread::sleep(Duration::from_millis(10));
            }
            found
        })
        .expect("new_device fired (no protocol features: kicked rings are enabled)");
    Device { vid, fe, pool, eventfds: efds }
}

/// A SET_VRING_ADDR payload: ring `index`, the log flag, the three ring
/// addresses as front-end virtual addresses in `ram`, and the used ring's
/// guest-physical address for logging.
fn vring_addr(ram: &GuestRam, index: u32, log_flag: bool, desc: u64, used: u64, avail: u64) -> Vec<u8> {
    let mut p = index.to_ne_bytes().to_vec();
    p.extend_from_slice(&u32::from(log_flag).to_ne_bytes());
    for v in [ram.addr + desc, ram.addr + used, ram.addr + avail, used] {
        p.extend_from_slice(&v.to_ne_bytes());
    }
    p
}

impl Guest {
    fn connect(name: &str, socket_flags: u64, features: u64) -> Guest {
        let ram: &'static GuestRam = Box::leak(Box::new(GuestRam::new(2 << 20)));
        let rx = Ring { ram, base: 0x10000, avail_idx: 0, next_desc: 0 };
        let tx = Ring { ram, base: 0x20000, avail_idx: 0, next_desc: 0 };
        let d = set_up(name, socket_flags, features, ram, RING, |q| [&rx, &tx][q as usize].addr_msg(q, true));
        Guest { vid: d.vid, fe: d.fe, ram, rx, tx, pool: d.pool, _eventfds: d.eventfds }
    }

    fn pool(&self) -> Mempool {
        // SAFETY: the pool lives for the whole test binary.
        unsafe { Mempool::from_raw(self.pool) }.unwrap()
    }

    /// A fresh mbuf holding `data` (within one segment).
    fn mbuf(&self, data: &[u8]) -> Mbuf {
        chained_mbuf(self.pool(), data, data.len().max(1))
    }

    /// Enqueues `m` into the guest's RX ring (retrying while the control
    /// plane holds the ring, as applications do) and frees it: the library
    /// copies.
    fn enqueue(&self, m: Mbuf) {
        let mut raw = [m.as_ptr()];
        let sent = (0..1000).any(|_| {
            // SAFETY: valid vid, queue and one mbuf.
            let n = unsafe { rte_vhost_enqueue_burst(self.vid, 0, raw.as_mut_ptr(), 1) };
            if n == 0 {
                std::thread::sleep(Duration::from_millis(1));
            }
            n == 1
        });
        assert!(sent, "packet enqueued");
        m.free();
    }

    /// Dequeue bursts from the guest's TX ring until its used index reaches
    /// `used` (a burst moves nothing while the control plane holds the ring,
    /// and DPDK ends a burst at a dropped packet); at least one burst.
    fn dequeue_until(&self, used: u16) -> Vec<Mbuf> {
        let mut got = Vec::new();
        for _ in 0..1000 {
            let mut out = [std::ptr::null_mut::<RteMbuf>(); 32];
            // SAFETY: valid vid, queue, pool and a 32-entry array.
            let n = unsafe { rte_vhost_dequeue_burst(self.vid, 1, self.pool, out.as_mut_ptr(), 32) };
            // SAFETY: mbufs the library handed us.
            got.extend(out[..usize::from(n)].iter().map(|&p| unsafe { Mbuf::from_raw(p) }.unwrap()));
            if self.tx.used_idx() == used {
                return got;
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        panic!("TX used index stuck at {} (expected {used})", self.tx.used_idx());
    }

    /// Posts one guest packet and dequeues it (exactly one mbuf out).
    fn send_from_guest(&mut self, hdr: [u8; 12], payload: &[u8], seg: usize) -> Mbuf {
        self.tx.post_packet(0x80000, hdr, payload, seg);
        let got = self.dequeue_until(self.tx.avail_idx);
        assert_eq!(got.len(), 1, "one packet dequeued");
        got[0]
    }

    /// The packet the guest received at RX used entry `i`: its virtio-net
    /// header and payload, gathered over `num_buffers` used entries.
    fn received(&self, i: u16) -> ([u8; 12], Vec<u8>) {
        let (id, len) = self.rx.used(i);
        let at = self.rx.desc_addr(id);
        let first = &self.ram.bytes()[at..at + len as usize];
        let hdr: [u8; 12] = first[..12].try_into().unwrap();
        let mut data = first[12..].to_vec();
        for k in 1..u16::from_le_bytes([hdr[10], hdr[11]]) {
            let (id, len) = self.rx.used(i + k);
            let at = self.rx.desc_addr(id);
            data.extend_from_slice(&self.ram.bytes()[at..at + len as usize]);
        }
        (hdr, data)
    }
}

fn ifname(vid: c_int) -> String {
    let mut buf = [0 as c_char; 256];
    // SAFETY: a 256-byte buffer.
    if unsafe { rte_vhost_get_ifname(vid, buf.as_mut_ptr(), buf.len()) } != 0 {
        return String::new();
    }
    // SAFETY: NUL-terminated by the library.
    unsafe { CStr::from_ptr(buf.as_ptr()) }.to_string_lossy().into_owned()
}

fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len).map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed)).collect()
}

/// The payload of a packet, all segments.
fn packet_bytes(m: Mbuf) -> Vec<u8> {
    let mut bytes = Vec::new();
    let mut seg = Some(m);
    while let Some(s) = seg {
        bytes.extend_from_slice(s.data());
        seg = s.next();
    }
    bytes
}

/// Ethernet + IPv4 (20-byte header) or IPv6 + an L4 header of `l4_len`
/// bytes of protocol `proto` (ports, TCP data offset / UDP length filled) +
/// `payload` pattern bytes. Checksums are zero.
fn frame(v4: bool, proto: u8, l4_len: usize, payload: usize) -> Vec<u8> {
    let mut f = vec![0x52, 0x54, 0, 0, 0, 1, 0x52, 0x54, 0, 0, 0, 2];
    let l4_total = (l4_len + payload) as u16;
    if v4 {
        f.extend_from_slice(&[0x08, 0x00]);
        let mut ip = [0u8; 20];
        ip[0] = 0x45;
        ip[2..4].copy_from_slice(&(20 + l4_total).to_be_bytes());
        ip[8] = 64;
        ip[9] = proto;
        ip[12..16].copy_from_slice(&[10, 0, 0, 1]);
        ip[16..20].copy_from_slice(&[10, 0, 0, 2]);
        f.extend_from_slice(&ip);
    } else {
        f.extend_from_slice(&[0x86, 0xdd]);
        let mut ip = [0u8; 40];
        ip[0] = 0x60;
        ip[4..6].copy_from_slice(&l4_total.to_be_bytes());
        ip[6] = proto;
        ip[7] = 64;
        ip[8..10].copy_from_slice(&[0xfe, 0x80]);
        ip[23] = 1;
        ip[24..26].copy_from_slice(&[0xfe, 0x80]);
        ip[39] = 2;
        f.extend_from_slice(&ip);
    }
    let mut l4 = vec![0u8; l4_len];
    l4[0..2].copy_from_slice(&1234u16.to_be_bytes());
    l4[2..4].copy_from_slice(&80u16.to_be_bytes());
    match proto {
        TCP => l4[12] = ((l4_len / 4) as u8) << 4,
        UDP => l4[4..6].copy_from_slice(&l4_total.to_be_bytes()),
        _ => {}
    }
    f.extend_from_slice(&l4);
    f.extend_from_slice(&pattern(payload, 3));
    f
}

/// The folded one's complement sum of big-endian 16-bit words.
fn ones_sum(data: &[u8]) -> u16 {
    let mut sum: u32 =
        data.chunks(2).map(|w| u32::from(u16::from_be_bytes([w[0], *w.get(1).unwrap_or(&0)]))).sum();
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    sum as u16
}

/// The pseudo-header sum DPDK writes into the L4 checksum field
/// (`rte_ipv4/6_phdr_cksum`): addresses, protocol and, unless
/// `tso`, the L4 length.
fn pseudo_header_sum(f: &[u8], v4: bool, tso: bool) -> [u8; 2] {
    let mut p = Vec::new();
    if v4 {
        p.extend_from_slice(&f[26..34]);
        p.extend_from_slice(&[0, f[23]]);
        let l4_len = u16::from_be_bytes([f[16], f[17]]) - 20;
        p.extend_from_slice(&if tso { 0 } else { l4_len }.to_be_bytes());
    } else {
        p.extend_from_slice(&f[22..54]);
        p.extend_from_slice(&[0, f[20]]);
        p.extend_from_slice(&if tso { [0, 0] } else { [f[18], f[19]] });
    }
    ones_sum(&p).to_be_bytes()
}

/// A guest virtio-net header.
fn net_hdr(
    flags: u8,
    gso_type: u8,
    hdr_len: u16,
    gso_size: u16,
    csum_start: u16,
    csum_offset: u16,
) -> [u8; 12] {
    let mut h = [0u8; 12];
    h[0] = flags;
    h[1] = gso_type;
    h[2..4].copy_from_slice(&hdr_len.to_le_bytes());
    h[4..6].copy_from_slice(&gso_size.to_le_bytes());
    h[6..8].copy_from_slice(&csum_start.to_le_bytes());
    h[8..10].copy_from_slice(&csum_offset.to_le_bytes());
    h
}

#[test]
fn payloads_round_trip_and_logging_marks_written_pages() {
    let _serial = serial();
    let mut g = Guest::connect("dp", NET_STATS_ENABLE, BASIC);
    let vid = g.vid;

    // --- host -> guest: three packets into three 2 KiB RX buffers.
    g.rx.post_buffers(0x40000, 3);
    let lens = [60usize, 1000, 1514];
    let mut pkts: Vec<*mut RteMbuf> =
        lens.iter().enumerate().map(|(k, &len)| g.mbuf(&pattern(len, k as u8)).as_ptr()).collect();
    // SAFETY: valid vid, queue, and three mbufs.
    let sent = unsafe { rte_vhost_enqueue_burst(vid, 0, pkts.as_mut_ptr(), 3) };
    assert_eq!(sent, 3);
    assert_eq!(g.rx.used_idx(), 3);
    for (k, &len) in lens.iter().enumerate() {
        let (id, ulen) = g.rx.used(k as u16);
        assert_eq!((id, ulen as usize), (k as u32, 12 + len), "used entry {k}");
        let at = 0x40000 + 0x1000 * k;
        let buf = &g.ram.bytes()[at..at + 12 + len];
        assert_eq!(&buf[..10], &[0u8; 10], "no offload requested");
        assert_eq!(u16::from_le_bytes([buf[10], buf[11]]), 1, "num_buffers");
        assert_eq!(&buf[12..], &pattern(len, k as u8)[..], "payload {k}");
    }
    for p in pkts {
        // SAFETY: the mbufs stay ours after enqueue (copy semantics).
        unsafe { Mbuf::from_raw(p) }.unwrap().free();
    }

    // --- guest -> host: header + payload split over two descriptors, then
    // a malformed chain (address outside memory) that must be dropped.
    let payload = pattern(3000, 7);
    g.tx.post_packet(0x80000, [0; 12], &payload, 1000);
    let bad = g.tx.take_desc();
    g.tx.set_desc(bad, 0x4000_0000, 64, 0, 0);
    g.tx.post(bad);
    let got = g.dequeue_until(2);
    assert_eq!(got.len(), 1, "one good packet, the malformed chain dropped");
    assert_eq!(got[0].pkt_len(), 3000);
    assert_eq!(packet_bytes(got[0]), payload, "dequeued payload");
    got[0].free();
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
    g.fe.set_u64(Request::SendRarp, u64::from_ne_bytes(arg));
    assert_eq!(g.fe.call_u64(Request::GetQueueNum), 128, "SEND_RARP handled");
    let rarp = g.dequeue_until(g.tx.used_idx());
    assert_eq!(rarp.len(), 1);
    let frame = rarp[0].data();
    assert_eq!(&frame[..6], &[0xff; 6], "broadcast");
    assert_eq!(&frame[6..12], &mac, "source is the guest's MAC");
    assert_eq!(&frame[12..14], &[0x80, 0x35], "RARP ethertype");
    rarp[0].free();

    // --- migration logging: a 2 MiB guest needs 64 bytes of bitmap.
    let log = GuestRam::new(4096);
    let mut area = 64u64.to_ne_bytes().to_vec();
    area.extend_from_slice(&0u64.to_ne_bytes());
    g.fe.send(Request::SetLogBase, &area, &[log.fd.as_raw_fd()], false);
    assert!(g.fe.recv().payload.is_empty(), "SET_LOG_BASE reply has no body");
    acked(&g.fe, Request::SetFeatures, &(BASIC | F_LOG_ALL).to_ne_bytes(), &[]);
    g.rx.post_buffers(0x45000, 1);
    // The handler may still hold the ring lock right after its reply; the
    // helper retries.
    g.enqueue(g.mbuf(&[0xab; 100]));
    let dirty: Vec<u64> =
        (0..512u64).filter(|p| log.bytes()[(p / 8) as usize] & (1 << (p % 8)) != 0).collect();
    // The buffer's page (0x45000: the RX buffers are used in order) and the
    // used ring's page (logged at the ring's guest address, 0x12000).
    assert_eq!(dirty, vec![0x12, 0x45], "exactly the written pages are dirty");
    assert_eq!(&g.ram.bytes()[0x45000 + 12..0x45000 + 112], &[0xab; 100][..]);
}

/// A 9000-byte guest packet over three 3000-byte descriptors.
const JUMBO: usize = 9000;

fn assert_one_external_segment(m: Mbuf, payload: &[u8]) {
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
    // SAFETY: a valid pool.
    let pool_free = unsafe { rte_mempool_avail_count(g.pool) };
    let heap = heap_allocs();
    for round in 0..1000u32 {
        let payload = pattern(JUMBO, round as u8);
        let m = g.send_from_guest([0; 12], &payload, 3000);
        assert_one_external_segment(m, &payload);
        // The headroom is the standard one, as on a pool mbuf.
        assert_eq!(m.data().as_ptr() as usize - m.tx_offload().buf_addr as usize, 128);
        if round == 0 {
            assert_eq!(heap_allocs(), heap + 1, "one rte_malloc'ed buffer behind the mbuf");
        }
        m.free();
    }
    assert_eq!(heap_allocs(), heap, "every external buffer went back to the heap");
    // SAFETY: as above.
    assert_eq!(unsafe { rte_mempool_avail_count(g.pool) }, pool_free, "every mbuf back in its pool");

    // A packet whose buffer would exceed an mbuf's 16-bit buffer length gets
    // no external buffer: without LINEARBUF it is chained, as in DPDK.
    let payload = pattern(65500, 9);
    let m = g.send_from_guest([0; 12], &payload, 8192);
    assert_eq!(m.ol_flags() & ol::EXTERNAL, 0);
    assert_eq!(m.nb_segs(), 32, "65500 bytes in 2048-byte segments");
    assert_eq!(m.pkt_len(), 65500);
    assert!(packet_bytes(m) == payload);
    m.free();
    assert_eq!(heap_allocs(), heap);
}

#[test]
fn linearbuf_drops_a_packet_larger_than_the_data_room_and_moves_on() {
    let _serial = serial();
    let mut g = Guest::connect("linear", LINEARBUF_SUPPORT, BASIC);
    // As DPDK: linear buffers without external ones withdraw the host
    // segmentation offloads (a TSO packet could not fit an mbuf).
    let offered = g.fe.call_u64(Request::GetFeatures);
    assert_eq!(offered & (F_HOST_TSO4 | F_HOST_TSO6 | F_HOST_UFO), 0, "no host TSO/UFO offered");
    assert_ne!(offered & F_CSUM, 0);

    let big = pattern(2049, 1);
    let fits = pattern(2048, 2);
    let head_big = g.tx.post_packet(0x80000, [0; 12], &big, 1000);
    let head_fits = g.tx.post_packet(0x90000, [0; 12], &fits, 1000);
    let got = g.dequeue_until(2);
    assert_eq!(got.len(), 1, "the 2049-byte packet dropped");
    assert_eq!((got[0].nb_segs(), got[0].ol_flags()), (1, 0));
    assert!(packet_bytes(got[0]) == fits, "the 2048-byte packet (the data room) intact");
    got[0].free();
    assert_eq!(
        (g.tx.used(0).0, g.tx.used(1).0),
        (u32::from(head_big), u32::from(head_fits)),
        "both chains returned to the guest"
    );
    let after = pattern(1500, 3);
    let m = g.send_from_guest([0; 12], &after, 700);
    assert!(packet_bytes(m) == after, "the ring moved on");
    m.free();
}

#[test]
fn extbuf_with_linearbuf_attaches_an_external_buffer_or_drops_never_chains() {
    let _serial = serial();
    let mut g = Guest::connect("extlin", EXTBUF_SUPPORT | LINEARBUF_SUPPORT, BASIC);
    let offered = g.fe.call_u64(Request::GetFeatures);
    assert_eq!(offered & F_HOST_TSO4, F_HOST_TSO4, "with external buffers TSO stays offered");
    let heap = heap_allocs();
    let payload = pattern(JUMBO, 4);
    let m = g.send_from_guest([0; 12], &payload, 3000);
    assert_one_external_segment(m, &payload);
    m.free();
    let too_big = pattern(65500, 5);
    g.tx.post_packet(0x80000, [0; 12], &too_big, 8192);
    let next = pattern(100, 6);
    g.tx.post_packet(0xa0000, [0; 12], &next, 100);
    let got = g.dequeue_until(g.tx.avail_idx);
    assert_eq!(got.len(), 1, "the packet too large for an external buffer dropped");
    assert!(packet_bytes(got[0]) == next);
    got[0].free();
    assert_eq!(heap_allocs(), heap);
}

/// Enqueues `f` with the offload request (`flags`, l2/l3/l4 lengths,
/// segment size); returns the header and packet the guest received.
fn enqueue_offload(
    g: &mut Guest,
    f: &[u8],
    flags: u64,
    lens: (u64, u64, u64),
    tso_segsz: u64,
) -> ([u8; 12], Vec<u8>) {
    let first = g.rx.used_idx();
    g.rx.post_buffers(0x40000 + 0x1000 * u64::from(g.rx.next_desc), 2);
    let mut m = g.mbuf(f);
    m.set_ol_flags(flags);
    m.set_tx_offload(lens.0, lens.1, lens.2, tso_segsz);
    g.enqueue(m);
    g.received(first)
}

/// The header fields (flags, gso_type, hdr_len, gso_size, csum_start,
/// csum_offset).
fn fields(h: &[u8; 12]) -> (u8, u8, u16, u16, u16, u16) {
    let u = |i: usize| u16::from_le_bytes([h[i], h[i + 1]]);
    (h[0], h[1], u(2), u(4), u(6), u(8))
}

#[test]
fn tso_and_ufo_requests_become_the_guest_header_and_pseudo_header_checksum() {
    let _serial = serial();
    let mut g = Guest::connect("ol-enq", 0, OFFLOADS);

    // TSO over IPv4 with the IP checksum: GSO_TCPV4, the TCP checksum
    // implied, the pseudo-header sum (without length) in the TCP header and
    // a valid IPv4 header checksum, everything else unchanged.
    let f = frame(true, TCP, 20, 1900);
    let tso = ol::TX_TCP_SEG | ol::TX_IPV4 | ol::TX_IP_CKSUM;
    let (h, data) = enqueue_offload(&mut g, &f, tso, (14, 20, 20), 1448);
    assert_eq!(fields(&h), (NEEDS_CSUM, GSO_TCPV4, 54, 1448, 34, 16));
    assert_eq!(data.len(), f.len());
    assert_eq!(ones_sum(&data[14..34]), 0xffff, "IPv4 header checksum computed");
    assert_eq!(data[50..52], pseudo_header_sum(&f, true, true), "TCP pseudo-header checksum, no length");
    let mut expect = f.clone();
    expect[24..26].copy_from_slice(&data[24..26]);
    expect[50..52].copy_from_slice(&data[50..52]);
    assert!(data == expect, "payload unchanged");

    // TSO over IPv6 without an L4 flag: GSO_TCPV6, TCP checksum implied.
    let f = frame(false, TCP, 32, 1900);
    let (h, data) = enqueue_offload(&mut g, &f, ol::TX_TCP_SEG | ol::TX_IPV6, (14, 40, 32), 1440);
    assert_eq!(fields(&h), (NEEDS_CSUM, GSO_TCPV6, 86, 1440, 54, 16));
    assert_eq!(data[70..72], pseudo_header_sum(&f, false, true));

    // UFO over IPv6 with the UDP checksum: GSO_UDP (22.11 knows no
    // GSO_UDP_L4), hdr_len from l4_len, the pseudo-header sum with length.
    let f = frame(false, UDP, 8, 1900);
    let ufo = ol::TX_UDP_SEG | ol::TX_IPV6 | ol::TX_UDP_CKSUM;
    let (h, data) = enqueue_offload(&mut g, &f, ufo, (14, 40, 8), 1400);
    assert_eq!(fields(&h), (NEEDS_CSUM, GSO_UDP, 62, 1400, 54, 6));
    assert_eq!(data[60..62], pseudo_header_sum(&f, false, false), "UDP pseudo-header checksum, with length");

    // UFO alone implies no checksum (DPDK adds TCP_CKSUM for TSO only).
    let f = frame(true, UDP, 8, 1900);
    let (h, data) = enqueue_offload(&mut g, &f, ol::TX_UDP_SEG | ol::TX_IPV4, (14, 20, 8), 1400);
    assert_eq!(fields(&h), (0, GSO_UDP, 42, 1400, 0, 0));
    assert!(data == f, "packet untouched");

    // A plain TCP checksum request: NEEDS_CSUM, no GSO, pseudo-header with
    // the L4 length.
    let f = frame(true, TCP, 20, 6);
    let (h, data) = enqueue_offload(&mut g, &f, ol::TX_TCP_CKSUM | ol::TX_IPV4, (14, 20, 20), 0);
    assert_eq!(fields(&h), (NEEDS_CSUM, 0, 0, 0, 34, 16));
    assert_eq!(data[50..52], pseudo_header_sum(&f, true, false));
    assert_eq!(u16::from_le_bytes([h[10], h[11]]), 1, "num_buffers");
}

#[test]
fn guest_gso_and_checksum_headers_become_legacy_tx_offloads() {
    let _serial = serial();
    let mut g = Guest::connect("ol-deq", 0, OFFLOADS);
    // (header, frame, ol_flags, l2, l3, l4, tso_segsz) as
    // vhost_dequeue_offload_legacy sets them.
    let cases = [
        (
            net_hdr(NEEDS_CSUM, GSO_TCPV4, 66, 1448, 34, 16),
            frame(true, TCP, 32, 3000),
            ol::TX_IPV4 | ol::TX_TCP_CKSUM | ol::TX_TCP_SEG,
            (14, 20, 32, 1448),
        ),
        (
            net_hdr(NEEDS_CSUM, GSO_TCPV6, 74, 1440, 54, 16),
            frame(false, TCP, 20, 3000),
            ol::TX_IPV6 | ol::TX_TCP_CKSUM | ol::TX_TCP_SEG,
            (14, 40, 20, 1440),
        ),
        (
            net_hdr(0, GSO_UDP, 42, 1400, 0, 0),
            frame(true, UDP, 8, 3000),
            ol::TX_IPV4 | ol::TX_UDP_SEG,
            (14, 20, 8, 1400),
        ),
        (
            net_hdr(NEEDS_CSUM, 0, 0, 0, 34, 6),
            frame(true, UDP, 8, 100),
            ol::TX_IPV4 | ol::TX_UDP_CKSUM,
            (14, 20, 0, 0),
        ),
        // A GSO type that does not match the packet: everything reset.
        (net_hdr(0, GSO_TCPV4, 42, 1400, 0, 0), frame(true, UDP, 8, 3000), 0, (0, 0, 0, 0)),
    ];
    for (k, (h, f, flags, (l2, l3, l4, seg))) in cases.into_iter().enumerate() {
        let m = g.send_from_guest(h, &f, 2000);
        let t = m.tx_offload();
        assert_eq!(m.ol_flags(), flags, "case {k}: ol_flags");
        assert_eq!(
            (t.l2_len(), t.l3_len(), t.l4_len(), t.tso_segsz()),
            (l2, l3, l4, seg),
            "case {k}: lengths"
        );
        assert!(packet_bytes(m) == f, "case {k}: payload");
        m.free();
    }
}

#[test]
fn guest_gso_and_checksum_headers_become_compliant_rx_flags() {
    let _serial = serial();
    let mut g = Guest::connect("ol-cmp", NET_COMPLIANT_OL_FLAGS, OFFLOADS);
    // (header, frame, ol_flags, tso_segsz, packet_type) as
    // vhost_dequeue_offload sets them; l2/l3/l4 lengths stay 0.
    let lro = ol::RX_LRO | ol::RX_L4_CKSUM_NONE;
    let cases = [
        (
            net_hdr(NEEDS_CSUM, GSO_TCPV4, 54, 1448, 34, 16),
            frame(true, TCP, 20, 3000),
            lro,
            1448,
            PTYPE_ETHER_IPV4_TCP,
        ),
        (net_hdr(0, GSO_UDP, 62, 1400, 0, 0), frame(false, UDP, 8, 3000), lro, 1400, PTYPE_ETHER_IPV6_UDP),
        (
            net_hdr(NEEDS_CSUM, 0, 0, 0, 34, 16),
            frame(true, TCP, 20, 100),
            ol::RX_L4_CKSUM_NONE,
            0,
            PTYPE_ETHER_IPV4_TCP,
        ),
        // DATA_VALID means nothing from a driver on transmit.
        (net_hdr(DATA_VALID, 0, 0, 0, 0, 0), frame(true, TCP, 20, 100), 0, 0, PTYPE_ETHER_IPV4_TCP),
        // A GSO type that does not match the packet: not LRO.
        (net_hdr(0, GSO_TCPV4, 42, 1400, 0, 0), frame(true, UDP, 8, 3000), 0, 0, PTYPE_ETHER_IPV4 | 0x200),
    ];
    for (k, (h, f, flags, seg, ptype)) in cases.into_iter().enumerate() {
        let m = g.send_from_guest(h, &f, 2000);
        let t = m.tx_offload();
        assert_eq!(m.ol_flags(), flags, "case {k}: ol_flags");
        assert_eq!(
            (t.tso_segsz(), t.l2_len(), t.l3_len(), t.l4_len()),
            (seg, 0, 0, 0),
            "case {k}: tx_offload"
        );
        assert_eq!(m.packet_type(), ptype, "case {k}: packet_type");
        assert!(packet_bytes(m) == f, "case {k}: payload");
        m.free();
    }

    // A checksum request for an L4 protocol rte_net_get_ptype does not know
    // is done in software: afterwards the L4 part sums to 0xffff.
    let f = frame(true, 253, 8, 500);
    let m = g.send_from_guest(net_hdr(NEEDS_CSUM, 0, 0, 0, 34, 6), &f, 2000);
    assert_eq!((m.ol_flags(), m.packet_type()), (0, PTYPE_ETHER_IPV4));
    let data = packet_bytes(m);
    assert_ne!(data[40..42], [0, 0], "checksum written at csum_start + csum_offset");
    assert_eq!(ones_sum(&data[34..]), 0xffff, "a valid checksum over the L4 part");
    assert!(data[..40] == f[..40] && data[42..] == f[42..], "nothing else changed");
    m.free();
}

// --------------------------------------------------------------------------
// Packed rings.

const P_AVAIL: u16 = 1 << 7;
const P_USED: u16 = 1 << 15;
const D_INDIRECT: u16 = 4;

/// The guest driver's view of one packed ring: descriptors at `base`, the
/// driver and device event areas after them; buffer ids handed out in turn
/// and the chains in flight in the order they were made available.
struct PackedRing {
    ram: &'static GuestRam,
    base: u64,
    size: u16,
    avail: (u16, bool),
    used: (u16, bool),
    next_id: u16,
    in_flight: std::collections::VecDeque<(u16, u16)>,
    /// VIRTIO_F_IN_ORDER negotiated.
    in_order: bool,
}

impl PackedRing {
    fn new(ram: &'static GuestRam, base: u64, size: u16, in_order: bool) -> PackedRing {
        let in_flight = Default::default();
        PackedRing { ram, base, size, avail: (0, true), used: (0, true), next_id: 0, in_flight, in_order }
    }
    fn addr_msg(&self, index: u32) -> Vec<u8> {
        // Driver event area (the "avail" address), device event area ("used").
        vring_addr(self.ram, index, false, self.base, self.base + 0x4010, self.base + 0x4000)
    }
    fn free_slots(&self) -> u16 {
        self.size - self.in_flight.iter().map(|c| c.1).sum::<u16>()
    }
    fn slot_off(&self, slot: u16) -> usize {
        (self.base + 16 * u64::from(slot)) as usize
    }
    /// Makes a chain of `(gpa, len, flags)` descriptors available (NEXT set
    /// on all but the last, every one carrying the buffer id); returns the id.
    fn post(&mut self, descs: &[(u64, u32, u16)]) -> u16 {
        assert!(descs.len() as u16 <= self.free_slots());
        let id = self.next_id;
        self.next_id = (id + 1) % self.size;
        for (k, &(gpa, len, flags)) in descs.iter().enumerate() {
            let (slot, wrap) = self.avail;
            let next = if k + 1 < descs.len() { D_NEXT } else { 0 };
            let f = flags | next | if wrap { P_AVAIL } else { P_USED };
            let o = self.slot_off(slot);
            let b = self.ram.bytes_mut();
            b[o..o + 8].copy_from_slice(&gpa.to_le_bytes());
            b[o + 8..o + 12].copy_from_slice(&len.to_le_bytes());
            b[o + 12..o + 14].copy_from_slice(&id.to_le_bytes());
            b[o + 14..o + 16].copy_from_slice(&f.to_le_bytes());
            self.avail = if slot + 1 == self.size { (0, !wrap) } else { (slot + 1, wrap) };
        }
        self.in_flight.push_back((id, descs.len() as u16));
        id
    }
    /// The next used buffer (id, written length), if the device marked one.
    /// rvhost completes buffers in the order they were made available; the
    /// id is checked against that order (with VIRTIO_F_IN_ORDER, the buffers
    /// before the one named count as used too).
    fn take_used(&mut self) -> Option<(u16, u32)> {
        let (slot, wrap) = self.used;
        let o = self.slot_off(slot);
        let b = self.ram.bytes();
        let f = u16::from_le_bytes([b[o + 14], b[o + 15]]);
        if (f & P_AVAIL != 0) != wrap || (f & P_USED != 0) != wrap {
            return None;
        }
        let id = u16::from_le_bytes([b[o + 12], b[o + 13]]);
        let len = u32::from_le_bytes(b[o + 8..o + 12].try_into().unwrap());
        // With VIRTIO_F_IN_ORDER one used descriptor may stand for all the
        // buffers up to the one it names.
        let mut n = 0;
        loop {
            let (want, count) = self.in_flight.pop_front().expect("a used entry for a buffer in flight");
            n += count;
            if want == id {
                break;
            }
            assert!(self.in_order, "used buffer id {id} at slot {slot}, expected {want}");
        }
        let next = slot + n;
        self.used = if next >= self.size { (next - self.size, !wrap) } else { (next, wrap) };
        Some((id, len))
    }
}

/// A packet holding `data` in segments of at most `seg` bytes.
fn chained_mbuf(pool: Mempool, data: &[u8], seg: usize) -> Mbuf {
    let mut head = mbuf::alloc(pool).unwrap();
    let mut last = head;
    for (k, chunk) in data.chunks(seg).enumerate() {
        if k > 0 {
            let next = mbuf::alloc(pool).unwrap();
            Mbuf::chain(&mut head, &mut last, next);
            last = next;
        }
        last.tail_mut(chunk.len()).copy_from_slice(chunk);
        last.commit(chunk.len());
    }
    head.set_pkt_len(data.len() as u32);
    head
}

/// A small deterministic generator (the property tests' inputs).
struct Lcg(u64);

impl Lcg {
    fn below(&mut self, n: u64) -> u64 {
        self.0 = self.0.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        (self.0 >> 33) % n
    }
}

/// Writes `b` into guest memory at `gpa`.
fn poke(ram: &GuestRam, gpa: u64, b: &[u8]) {
    ram.bytes_mut()[gpa as usize..gpa as usize + b.len()].copy_from_slice(b);
}

/// An indirect table at `table` holding `(gpa, len, flags)` entries, as the
/// descriptor (gpa, len, flags) that points at it.
fn indirect(ram: &GuestRam, table: u64, entries: &[(u64, u32, u16)]) -> (u64, u32, u16) {
    for (k, &(gpa, len, flags)) in entries.iter().enumerate() {
        let mut e = gpa.to_le_bytes().to_vec();
        e.extend_from_slice(&len.to_le_bytes());
        e.extend_from_slice(&0u16.to_le_bytes());
        e.extend_from_slice(&flags.to_le_bytes());
        poke(ram, table + 16 * k as u64, &e);
    }
    (table, 16 * entries.len() as u32, D_INDIRECT)
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
    let _serial = serial();
    for (k, (size, in_order)) in [(256u16, false), (250, false), (256, true)].into_iter().enumerate() {
        let ram: &'static GuestRam = Box::leak(Box::new(GuestRam::new(6 << 20)));
        let mut rx = PackedRing::new(ram, 0x10000, size, in_order);
        let mut tx = PackedRing::new(ram, 0x20000, size, in_order);
        let features = BASIC | F_RING_PACKED | if in_order { F_IN_ORDER } else { 0 };
        let d = set_up(&format!("packed{k}"), 0, features, ram, size, |q| [&rx, &tx][q as usize].addr_msg(q));
        // SAFETY: the pool lives for the whole test binary.
        let pool = unsafe { Mempool::from_raw(d.pool) }.unwrap();
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
                let id = tx.next_id;
                let a = area(tx_area, id);
                let payload = pattern(1 + rng.below(3000) as usize, round as u8);
                let kind = rng.below(10);
                let hdr = [0u8; 12];
                let descs = match kind {
                    // One descriptor: header and packet.
                    0..=5 => {
                        poke(ram, a, &hdr);
                        poke(ram, a + 12, &payload);
                        vec![(a, 12 + payload.len() as u32, 0)]
                    }
                    // Header alone, the packet in one or two more.
                    6 | 7 => {
                        poke(ram, a, &hdr);
                        poke(ram, a + 0x100, &payload);
                        let cut = payload.len() / 2;
                        let mut v = vec![(a, 12, 0), (a + 0x100, cut as u32, 0)];
                        v.push((a + 0x100 + cut as u64, (payload.len() - cut) as u32, 0));
                        v.retain(|e| e.1 > 0);
                        v
                    }
                    // An indirect table of header and packet.
                    8 => {
                        poke(ram, a, &hdr);
                        poke(ram, a + 0x100, &payload);
                        vec![indirect(ram, a + 0x1f00, &[(a, 12, 0), (a + 0x100, payload.len() as u32, 0)])]
                    }
                    // Outside guest memory, or shorter than the header.
                    _ => vec![if rng.below(2) == 0 { (0x4000_0000, 100, 0) } else { (a, 8, 0) }],
                };
                tx.post(&descs);
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
            let n = unsafe { rte_vhost_dequeue_burst(d.vid, 1, d.pool, out.as_mut_ptr(), want) };
            assert!(n <= want);
            for &p in &out[..usize::from(n)] {
                // SAFETY: an mbuf the library handed us.
                let m = unsafe { Mbuf::from_raw(p) }.unwrap();
                let payload = expected.pop_front().expect("no more packets than posted");
                assert_eq!(packet_bytes(m), payload, "guest packet (round {round}, ring {size})");
                m.free();
            }
            while tx.take_used().is_some() {}

            // --- host -> guest: keep the RX ring stocked with random kinds
            // of buffers, then enqueue a random burst.
            while rx.free_slots() >= 2 {
                let id = rx.next_id;
                let a = area(rx_area, id);
                let bufs = match rng.below(8) {
                    0..=4 => vec![(a, 2048)],
                    5 | 6 => vec![(a, 1000), (a + 0x1000, 1048)],
                    _ => vec![(a, 700), (a + 0x800, 1348)],
                };
                let descs: Vec<_> = bufs.iter().map(|&(g, l)| (g, l, D_WRITE)).collect();
                if rng.below(8) == 7 {
                    rx.post(&[indirect(ram, a + 0x1f00, &descs)]);
                } else {
                    rx.post(&descs);
                }
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
            let sent = unsafe { rte_vhost_enqueue_burst(d.vid, 0, raw.as_mut_ptr(), count as u16) };
            for (j, p) in payloads.iter().take(usize::from(sent)).enumerate() {
                let mut got = Vec::new();
                let mut buffers = None;
                let mut taken = 0;
                while buffers.is_none_or(|b| taken < b) {
                    let (id, len) = rx.take_used().expect("a used RX buffer per enqueued packet");
                    let mut left = len as usize;
                    for &(g, l) in &rx_bufs[usize::from(id)] {
                        let n = left.min(l as usize);
                        got.extend_from_slice(&ram.bytes()[g as usize..g as usize + n]);
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
            assert!(rx.take_used().is_none(), "no used RX buffer beyond the packets sent");
            for p in raw {
                // SAFETY: the mbufs stay ours after enqueue (copy semantics).
                unsafe { Mbuf::from_raw(p) }.unwrap().free();
            }
        }
        // Drain what is left on the TX ring.
        while !expected.is_empty() {
            let mut out = [std::ptr::null_mut::<RteMbuf>(); 32];
            // SAFETY: valid vid, queue, pool and a 32-entry array.
            let n = unsafe { rte_vhost_dequeue_burst(d.vid, 1, d.pool, out.as_mut_ptr(), 32) };
            for &p in &out[..usize::from(n)] {
                // SAFETY: an mbuf the library handed us.
                let m = unsafe { Mbuf::from_raw(p) }.unwrap();
                assert_eq!(packet_bytes(m), expected.pop_front().unwrap());
                m.free();
            }
            while tx.take_used().is_some() {}
            if n == 0 {
                break;
            }
        }
        assert!(expected.is_empty(), "every guest packet dequeued");
        assert!(tx.in_flight.is_empty(), "every TX buffer used");
        assert!(tx_good > 3000 && tx_bad > 300 && rx_pkts > 3000, "{tx_good} {tx_bad} {rx_pkts}");
        // The wrap counters turned many times.
        assert!(tx_good + tx_bad > 20 * u64::from(size));
    }
}
