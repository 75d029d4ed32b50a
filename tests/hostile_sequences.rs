//! Stateful property test: random sequences of *valid* vhost-user requests
//! in any order (before and after the device starts, after GET_VRING_BASE,
//! across SET_FEATURES, SET_MEM_TABLE, SET_LOG_BASE, inflight and
//! postcopy, behind a virtual IOMMU with IOTLB updates and invalidations,
//! answered misses or a back-end channel never read, and IOTLB floods:
//! many rings waiting, unrelated updates, a guest cycling unmapped IOVAs),
//! interleaved with enqueue and dequeue bursts against a driver
//! that plays split and packed rings (and sometimes scribbles over them, or
//! shrinks its memory file). After every step:
//! - every guest access the library made lay inside a live guest region, log
//!   or inflight area (the audit of test builds, `memory::mapping::audit`);
//! - the connection is still served (every request gets its reply);
//! - the IOTLB misses it caused and those pending are within their bounds
//!   (`check_iotlb_bounds`).
//!
//! After every sequence a well-behaved front-end still gets a device that
//! moves packets both ways.
//!
//! Bounded in `cargo test` (`RVHOST_SEQ_CASES`, default 48 sequences); the
//! soak runs many more: `RVHOST_SEQ_CASES=5000 cargo test --release --test
//! hostile_sequences`.

mod common;

use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::rig::*;
use common::{Frontend, GuestRam};
use proptest::prelude::*;
use rvhost::testing::audit_violations;
use rvhost::testing::mock::{Buf, DriverRing, GuestView, Layout, RingAreas};
use rvhost::testing::RawMessage;
use rvhost::testing::{MemoryTable, Request};

extern "C" {
    fn rte_vhost_driver_get_protocol_features(path: *const std::ffi::c_char, f: *mut u64) -> i32;
    fn rte_vhost_driver_set_protocol_features(path: *const std::ffi::c_char, f: u64) -> i32;
}

const F_IOMMU_PLATFORM: u64 = 1 << 33;
/// `RTE_VHOST_USER_IOMMU_SUPPORT`.
const IOMMU_SUPPORT: u64 = 1 << 3;

const FEATURES: [u64; 10] = [
    F_VERSION_1,
    F_VERSION_1 | F_MRG_RXBUF,
    F_VERSION_1 | F_RING_PACKED,
    F_VERSION_1 | F_RING_PACKED | F_IN_ORDER | F_MRG_RXBUF,
    F_VERSION_1 | F_EVENT_IDX,
    F_VERSION_1 | F_LOG_ALL | F_MRG_RXBUF,
    F_VERSION_1 | F_RING_PACKED | F_LOG_ALL | F_EVENT_IDX,
    F_VERSION_1 | (1 << 30),
    F_VERSION_1 | F_IOMMU_PLATFORM,
    F_VERSION_1 | F_RING_PACKED | F_IOMMU_PLATFORM | F_LOG_ALL,
];
const SIZES: [u32; 8] = [1, 2, 16, 256, 1024, 32768, 100, 0];
const RAM: [u64; 3] = [1 << 20, 1 << 20, 0x10000];

#[derive(Clone, Debug)]
enum Op {
    Features(usize),
    MemTable(usize),
    VringNum(u32, usize),
    VringBase(u32, u16),
    /// Ring `q` at placement `p` (see `placement`).
    VringAddr(u32, usize),
    Kick(u32),
    Call(u32),
    Enable(u32, bool),
    GetVringBase(u32),
    LogBase,
    InflightGet,
    InflightSet,
    PostcopyAdvise,
    PostcopyListen,
    PostcopyEnd,
    Status(u8),
    /// The driver (re)initialises its two rings on the current memory, at
    /// placement 0 (256 entries) or 1 (the end of memory, 1 entry).
    NewRings(usize),
    PostRx(u8),
    PostTx(u8),
    Enqueue(u8),
    Dequeue,
    /// The guest writes `value` at `offset` into its ring area.
    Scribble(u32, u64),
    /// The front-end shrinks the current memory file.
    Shrink,
    /// SET_SLAVE_REQ_FD with a new channel (never read unless `Misses`).
    BackendChannel,
    /// The front-end answers the IOTLB misses waiting on the channel.
    Misses,
    /// IOTLB update (`true`) or invalidation of range `r` (see
    /// `iotlb_range`) with rights `perm`.
    Iotlb(bool, usize, u8),
    /// IOTLB floods (see `IotlbFlood`).
    Flood(IotlbFlood),
    /// Ring `q` across a page boundary (`placement` 4), mapped one to one
    /// but for its second page, which lies elsewhere: an area on scattered
    /// guest pages, as a Linux guest behind QEMU 10's intel-iommu lays it.
    ScatterRing(u32),
}

fn op() -> impl Strategy<Value = Op> {
    let q = 0u32..2;
    prop_oneof![
        3 => (0..FEATURES.len()).prop_map(Op::Features),
        3 => (0..RAM.len()).prop_map(Op::MemTable),
        3 => (q.clone(), 0..SIZES.len()).prop_map(|(q, s)| Op::VringNum(q, s)),
        2 => (q.clone(), any::<u16>()).prop_map(|(q, n)| Op::VringBase(q, n)),
        4 => (q.clone(), 0usize..6).prop_map(|(q, p)| Op::VringAddr(q, p)),
        3 => q.clone().prop_map(Op::Kick),
        2 => q.clone().prop_map(Op::Call),
        2 => (q.clone(), any::<bool>()).prop_map(|(q, e)| Op::Enable(q, e)),
        2 => q.clone().prop_map(Op::GetVringBase),
        1 => Just(Op::LogBase),
        1 => Just(Op::InflightGet),
        1 => Just(Op::InflightSet),
        1 => Just(Op::PostcopyAdvise),
        1 => Just(Op::PostcopyListen),
        1 => Just(Op::PostcopyEnd),
        1 => any::<u8>().prop_map(Op::Status),
        3 => (0usize..2).prop_map(Op::NewRings),
        4 => (1u8..8).prop_map(Op::PostRx),
        4 => (1u8..8).prop_map(Op::PostTx),
        6 => (1u8..40).prop_map(Op::Enqueue),
        6 => Just(Op::Dequeue),
        2 => (0u32..0x3000, any::<u64>()).prop_map(|(o, v)| Op::Scribble(o, v)),
        1 => Just(Op::Shrink),
        1 => Just(Op::BackendChannel),
        3 => Just(Op::Misses),
        4 => (any::<bool>(), 0usize..8, 0u8..4).prop_map(|(u, r, p)| Op::Iotlb(u, r, p)),
        3 => flood().prop_map(Op::Flood),
        2 => q.clone().prop_map(Op::ScatterRing),
    ]
}

/// A front-end and driver under random orders, with a model of what it has
/// said (enough to keep each request valid).
struct Session {
    fe: Frontend,
    vid: i32,
    rams: Vec<GuestRam>,
    shrunk: Vec<bool>,
    current: usize,
    features: u64,
    rings: [Option<DriverRing>; 2],
    fds: Vec<OwnedFd>,
    eventfds: Vec<nix::sys::eventfd::EventFd>,
    listening: bool,
    ufd_server: Option<(Arc<AtomicBool>, std::thread::JoinHandle<u32>)>,
    inflight: Option<(Vec<u8>, OwnedFd)>,
    backend: Option<std::os::unix::net::UnixStream>,
    /// Messages sent with `call`.
    messages: std::cell::Cell<u64>,
    flood: FloodState,
}

impl Session {
    /// Sends `req` with NEED_REPLY; the reply must come (the connection is
    /// never closed for a valid request).
    fn call(&self, req: Request, payload: &[u8], fds: &[i32]) -> RawMessage {
        self.messages.set(self.messages.get() + 1);
        self.fe.send(req, payload, fds, true);
        match rvhost::testing::read_message(self.fe.stream.as_fd()) {
            Ok(r) => {
                assert_eq!(r.header.request, req as u32, "reply to {req:?}");
                r
            }
            Err(e) => panic!("{req:?}: no reply ({e}): the connection was closed or hung"),
        }
    }

    fn ram(&self) -> &GuestRam {
        &self.rams[self.current]
    }

    fn usable(&self) -> bool {
        !self.shrunk[self.current]
    }

    fn layout(&self) -> Layout {
        if self.features & F_RING_PACKED != 0 {
            Layout::Packed
        } else {
            Layout::Split
        }
    }

    /// Ring areas for placement `p` of ring `q`, as front-end addresses.
    fn placement(&self, q: u32, p: usize) -> [u64; 3] {
        let (ram, size) = (self.ram().addr, self.ram().size);
        match p {
            0 => {
                let a = areas_at(0x10000 * (u64::from(q) + 1), self.layout(), 256);
                [ram + a.desc, ram + a.driver, ram + a.device]
            }
            // The very end of guest memory.
            1 => [ram + size - 0x1000, ram + size - 0x100, ram + size - 16],
            // Misaligned.
            2 => [ram + 0x10008, ram + 0x11001, ram + 0x12002],
            // In the other memory (not the one in the table, maybe).
            3 => {
                let other = &self.rams[(self.current + 1) % self.rams.len()];
                [other.addr + 0x10000, other.addr + 0x14000, other.addr + 0x18000]
            }
            // Across a page boundary: behind a virtual IOMMU, `iotlb_range`
            // 5 and 6 put the second page elsewhere (scattered guest pages).
            4 => {
                let a = areas_at(0x10000 * (u64::from(q) + 1) + 0x800, self.layout(), 256);
                [ram + a.desc, ram + a.driver, ram + a.device]
            }
            _ => [u64::MAX - 0x100, u64::MAX - 0x80, u64::MAX - 0x10],
        }
    }

    /// IOTLB range `r` as (IOVA, size, front-end address): ring addresses
    /// are front-end addresses, mapped as IOVAs one to one; buffer
    /// addresses are guest-physical, mapped at 0.
    fn iotlb_range(&self, r: usize) -> (u64, u64, u64) {
        let (ram, size) = (self.ram().addr, self.ram().size);
        match r {
            0 => (ram, size, ram),
            1 => (0, size, ram),
            2 => (0x40000, 0x1000, ram + 0x40000),
            // Memory the table does not hold (maybe).
            3 => {
                let other = &self.rams[(self.current + 1) % self.rams.len()];
                (0, other.size, other.addr)
            }
            4 => (0x10000, 0x2000, ram + 0x10000),
            // The second page of ring 0's or 1's areas in `placement` 4,
            // mapped to another guest page.
            5 => (ram + 0x11000, 0x1000, ram + 0x30000),
            6 => (ram + 0x21000, 0x1000, ram + 0x38000),
            _ => (0, u64::MAX, ram),
        }
    }

    fn iotlb(&self, update: bool, (iova, size, uaddr): (u64, u64, u64), perm: u8) {
        let mut p = [0u8; 32];
        p[0..8].copy_from_slice(&iova.to_ne_bytes());
        p[8..16].copy_from_slice(&size.to_ne_bytes());
        p[16..24].copy_from_slice(&uaddr.to_ne_bytes());
        p[24] = perm;
        p[25] = if update { 2 } else { 3 };
        self.call(Request::IotlbMsg, &p, &[]);
    }

    fn view(&self) -> GuestView {
        // SAFETY: the test's own mapping of the current memory, alive for
        // the session; never used after the file shrank (`usable`).
        unsafe { GuestView::new(self.ram().addr as *mut u8, self.ram().size) }
    }

    fn step(&mut self, op: &Op) {
        let st = |q: u32, n: u32| [q.to_ne_bytes(), n.to_ne_bytes()].concat();
        match *op {
            Op::Features(i) => {
                self.features = FEATURES[i];
                self.call(Request::SetFeatures, &self.features.to_ne_bytes(), &[]);
            }
            Op::MemTable(i) => {
                self.current = i;
                let ram = &self.rams[i];
                let table = ram.mem_table();
                if self.listening {
                    // Postcopy: our addresses back, then the front-end's
                    // ack (with NEED_REPLY, as QEMU sends it), then the ack's ack.
                    self.fe.send(Request::SetMemTable, &table, &[ram.fd.as_raw_fd()], true);
                    let reply =
                        rvhost::testing::read_message(self.fe.stream.as_fd()).expect("postcopy table");
                    if reply.payload.len() > 8 {
                        MemoryTable::parse(&reply.payload).expect("our mapping addresses");
                        self.call(Request::SetMemTable, &0u64.to_ne_bytes(), &[]);
                    }
                } else {
                    self.call(Request::SetMemTable, &table, &[ram.fd.as_raw_fd()]);
                }
            }
            Op::VringNum(q, s) => {
                self.call(Request::SetVringNum, &st(q, SIZES[s]), &[]);
            }
            Op::VringBase(q, n) => {
                self.call(Request::SetVringBase, &st(q, u32::from(n)), &[]);
            }
            Op::VringAddr(q, p) => {
                let [desc, avail, used] = self.placement(q, p);
                let mut m = q.to_ne_bytes().to_vec();
                m.extend_from_slice(&1u32.to_ne_bytes()); // VHOST_VRING_F_LOG
                for v in [desc, used, avail, 0x10000] {
                    m.extend_from_slice(&v.to_ne_bytes());
                }
                self.call(Request::SetVringAddr, &m, &[]);
            }
            Op::Kick(q) | Op::Call(q) => {
                let efd = nix::sys::eventfd::EventFd::from_value_and_flags(
                    0,
                    nix::sys::eventfd::EfdFlags::EFD_NONBLOCK,
                )
                .unwrap();
                let req =
                    if matches!(op, Op::Kick(_)) { Request::SetVringKick } else { Request::SetVringCall };
                self.call(req, &u64::from(q).to_ne_bytes(), &[efd.as_raw_fd()]);
                self.eventfds.push(efd);
            }
            Op::Enable(q, e) => {
                self.call(Request::SetVringEnable, &st(q, u32::from(e)), &[]);
            }
            Op::GetVringBase(q) => {
                self.call(Request::GetVringBase, &st(q, 0), &[]);
            }
            Op::LogBase => {
                // A log for the largest memory, in a file that holds it.
                let fd = memfd(RAM[0] / 4096 / 8);
                let area = [(RAM[0] / 4096 / 8).to_ne_bytes(), 0u64.to_ne_bytes()].concat();
                self.call(Request::SetLogBase, &area, &[fd.as_raw_fd()]);
                self.fds.push(fd);
            }
            Op::InflightGet => {
                let mut area = [0u64.to_ne_bytes(), 0u64.to_ne_bytes()].concat();
                area.extend_from_slice(&2u16.to_ne_bytes());
                area.extend_from_slice(&256u16.to_ne_bytes());
                area.extend_from_slice(&[0; 4]);
                let mut r = self.call(Request::GetInflightFd, &area, &[]);
                if let Some(fd) = r.fds.pop() {
                    self.inflight = Some((r.payload, fd));
                }
            }
            Op::InflightSet => {
                if let Some((area, fd)) = &self.inflight {
                    self.call(Request::SetInflightFd, area, &[fd.as_raw_fd()]);
                }
            }
            Op::PostcopyAdvise => {
                let mut r = self.call(Request::PostcopyAdvise, &[], &[]);
                if let Some(ufd) = r.fds.pop() {
                    self.stop_fault_server();
                    let stop = Arc::new(AtomicBool::new(false));
                    self.ufd_server = Some((Arc::clone(&stop), serve_faults(ufd, stop)));
                }
            }
            Op::PostcopyListen => {
                let r = self.call(Request::PostcopyListen, &[], &[]);
                // A refused LISTEN (a table is already mapped) leaves the
                // back-end as it was.
                self.listening |= r.payload == 0u64.to_ne_bytes();
            }
            Op::PostcopyEnd => {
                self.call(Request::PostcopyEnd, &[], &[]);
                self.listening = false;
            }
            Op::Status(s) => {
                self.call(Request::SetStatus, &u64::from(s).to_ne_bytes(), &[]);
            }
            Op::NewRings(p) => {
                self.rings = [None, None];
                // Placement 0 needs the larger memories.
                if self.usable() && (p == 1 || self.ram().size >= 1 << 20) {
                    let layout = self.layout();
                    let size = if p == 0 { 256 } else { 1 };
                    for q in 0..2u32 {
                        let [desc, driver, device] = self.placement(q, p).map(|a| a - self.ram().addr);
                        if p == 1 && q == 1 {
                            break; // one ring fits the end of memory
                        }
                        let mut r =
                            DriverRing::new(self.view(), layout, size, RingAreas { desc, driver, device });
                        r.strict = false;
                        r.in_order = self.features & F_IN_ORDER != 0;
                        self.rings[q as usize] = Some(r);
                    }
                }
            }
            Op::PostRx(n) => {
                if let Some(r) = &mut self.rings[0] {
                    for k in 0..u64::from(n) {
                        let _ = r.post(&[Buf { gpa: 0x40000 + 0x800 * (k % 64), len: 2048, write: true }]);
                    }
                }
            }
            Op::PostTx(n) => {
                if let Some(r) = self.rings[1].as_mut().filter(|r| r.mem().size() >= 1 << 20) {
                    let mem = r.mem();
                    for k in 0..u64::from(n) {
                        let at = 0x80000 + 0x800 * (k % 64);
                        mem.write(at, &pattern(12 + 60 + k as usize, k as u8));
                        let _ = r.post(&[Buf { gpa: at, len: 72 + k as u32, write: false }]);
                    }
                }
            }
            Op::Enqueue(n) => {
                let pkts: Vec<_> =
                    (0..n).map(|k| mbuf_of(pool(), &pattern(60 + usize::from(k) * 37, k))).collect();
                let mut raw: Vec<_> = pkts.iter().map(|m| m.as_ptr()).collect();
                // SAFETY: valid mbufs; the library copies them.
                unsafe { rte_vhost_enqueue_burst(self.vid, 0, raw.as_mut_ptr(), u16::from(n)) };
                for m in pkts {
                    m.free();
                }
                self.drain_used();
            }
            Op::Dequeue => {
                let mut out = [std::ptr::null_mut(); 32];
                let mempool = pool().as_ptr();
                // SAFETY: a valid pool and a 32-entry array.
                let n = unsafe { rte_vhost_dequeue_burst(self.vid, 1, mempool, out.as_mut_ptr(), 32) };
                for &p in &out[..usize::from(n)] {
                    // SAFETY: an mbuf the library handed us.
                    unsafe { rvhost::testing::mbuf::Mbuf::from_raw(p) }.unwrap().free();
                }
                self.drain_used();
            }
            Op::Scribble(off, v) => {
                let at = 0x10000 + u64::from(off & !7);
                if self.usable() && at + 8 <= self.ram().size {
                    self.view().write64(at, v);
                }
            }
            Op::BackendChannel => {
                let (ours, theirs) = std::os::unix::net::UnixStream::pair().unwrap();
                ours.set_nonblocking(true).unwrap();
                self.call(Request::SetSlaveReqFd, &[], &[theirs.as_raw_fd()]);
                self.backend = Some(ours);
            }
            Op::Misses => {
                // (With those the bounds check read off the channel.)
                let mut misses = std::mem::take(&mut self.flood.unanswered);
                if let Some(chan) = &self.backend {
                    while let Ok(m) = rvhost::testing::read_message(chan.as_fd()) {
                        assert_eq!(
                            (m.header.request, m.payload.len(), m.payload[25]),
                            (1, 32, 1),
                            "IOTLB miss"
                        );
                        misses.push((u64::from_ne_bytes(m.payload[..8].try_into().unwrap()), m.payload[24]));
                    }
                }
                // As QEMU: the page, where the guest mapped it (rings at
                // their front-end address, buffers at their guest address).
                for (iova, perm) in misses {
                    let page = iova & !0xfff;
                    let (ram, size) = (self.ram().addr, self.ram().size);
                    if page < size {
                        self.iotlb(true, (page, 0x1000, ram + page), perm);
                    } else if (ram..ram + size).contains(&page) {
                        self.iotlb(true, (page, 0x1000, page), perm);
                    }
                }
            }
            Op::Iotlb(update, r, perm) => {
                self.iotlb(update, self.iotlb_range(r), perm);
            }
            Op::Flood(f) => self.flood(f),
            Op::ScatterRing(q) => {
                self.iotlb(true, self.iotlb_range(0), 3);
                self.iotlb(true, self.iotlb_range(5 + q as usize), 3);
                self.step(&Op::VringAddr(q, 4));
            }
            Op::Shrink => {
                if self.usable() {
                    self.rings = [None, None];
                    self.shrunk[self.current] = true;
                    nix::unistd::ftruncate(&self.ram().fd, (RAM[self.current] / 2) as i64).unwrap();
                }
            }
        }
    }

    fn drain_used(&mut self) {
        if !self.usable() {
            return;
        }
        for r in self.rings.iter_mut().flatten() {
            for _ in 0..600 {
                if r.pop_used().is_none() {
                    break;
                }
            }
        }
    }

    fn stop_fault_server(&mut self) {
        if let Some((stop, t)) = self.ufd_server.take() {
            stop.store(true, Ordering::Relaxed);
            t.join().unwrap();
        }
    }
}

// ---------------------------------------------------------------------------
// IOTLB floods (issue 19): many rings waiting for their areas, updates no
// ring waits for, a guest cycling unmapped IOVAs; after every step the
// device's IOTLB work is within its bounds (`docs/security.md`).

/// Rings a device has at most here (2 of the driver's, the rest waiting).
const MAX_FLOOD_RINGS: u32 = 64;
/// The library's bounds: entries in the pending set, outstanding asks of
/// one ring's bursts, asks ahead of need per message, areas of a ring.
const MAX_PENDING: usize = 2048;
const MAX_PER_RING: u64 = 8;
const MAX_AHEAD: u64 = 16;
const RING_AREAS: u64 = 4;

#[derive(Clone, Copy, Debug)]
enum IotlbFlood {
    /// `n` more rings of 32768 entries at IOVAs nothing maps, which wait
    /// for their areas (behind a virtual IOMMU).
    WaitingRings(u8),
    /// `n` IOTLB updates of pages nothing uses.
    UnrelatedUpdates(u8),
    /// Before each of `n` bursts the guest points its next RX descriptor at
    /// a new IOVA nothing maps.
    CycleUnmapped(u8),
}

fn flood() -> impl Strategy<Value = IotlbFlood> {
    prop_oneof![
        (1u8..32).prop_map(IotlbFlood::WaitingRings),
        (1u8..64).prop_map(IotlbFlood::UnrelatedUpdates),
        (1u8..200).prop_map(IotlbFlood::CycleUnmapped),
    ]
}

#[derive(Debug, Default)]
struct FloodState {
    /// Rings set up by `WaitingRings` (2.. 2 + rings).
    waiting_rings: u32,
    /// Pages handed out as unmapped IOVAs so far.
    pages: u64,
    /// Misses read off the channel by the bounds check (`Misses` answers them).
    unanswered: Vec<(u64, u8)>,
}

impl Session {
    fn flood(&mut self, f: IotlbFlood) {
        const PAGE: u64 = 0x1000;
        match f {
            IotlbFlood::WaitingRings(n) => {
                let size = 32768u32;
                for _ in 0..n {
                    let q = 2 + self.flood.waiting_rings;
                    if q >= MAX_FLOOD_RINGS {
                        return;
                    }
                    self.flood.waiting_rings += 1;
                    let at = 0x1_0000_0000 + u64::from(q) * 0x10_0000;
                    let st = |n: u32| [q.to_ne_bytes(), n.to_ne_bytes()].concat();
                    self.call(Request::SetVringNum, &st(size), &[]);
                    let mut m = q.to_ne_bytes().to_vec();
                    m.extend_from_slice(&0u32.to_ne_bytes());
                    for v in [at, at + 0xa_0000, at + 0x8_0000, 0] {
                        m.extend_from_slice(&v.to_ne_bytes());
                    }
                    self.call(Request::SetVringAddr, &m, &[]);
                    let kick = nix::sys::eventfd::EventFd::new().unwrap();
                    self.call(Request::SetVringKick, &u64::from(q).to_ne_bytes(), &[kick.as_raw_fd()]);
                    self.eventfds.push(kick);
                }
            }
            IotlbFlood::UnrelatedUpdates(n) => {
                for _ in 0..n {
                    self.flood.pages += 1;
                    let iova = 0x2_0000_0000 + self.flood.pages * PAGE;
                    self.iotlb(true, (iova, PAGE, self.ram().addr), 1);
                }
            }
            IotlbFlood::CycleUnmapped(n) => {
                let unmapped = |k: u64| 0x3_0000_0000 + k * PAGE;
                self.flood.pages += 1;
                let marker = unmapped(self.flood.pages);
                let Some(r) = self.rings[0].as_mut().filter(|_| !self.shrunk[self.current]) else { return };
                if r.post(&[Buf { gpa: marker, len: 2048, write: true }]).is_none() {
                    return;
                }
                let (mem, desc) = (r.mem(), r.areas().desc);
                let Some(slot) = (0..u64::from(r.size())).map(|k| desc + 16 * k).find(|&at| {
                    u64::from_le_bytes(mem.read(at, 8).try_into().unwrap()) == marker + r.iova_offset
                }) else {
                    return;
                };
                for _ in 0..n {
                    self.flood.pages += 1;
                    mem.write64(slot, unmapped(self.flood.pages));
                    let m = mbuf_of(pool(), &pattern(60, 1));
                    let mut raw = [m.as_ptr()];
                    // SAFETY: a valid mbuf; the library copies it.
                    unsafe { rte_vhost_enqueue_burst(self.vid, 0, raw.as_mut_ptr(), 1) };
                    m.free();
                }
                self.drain_used();
            }
        }
    }

    /// After `op` (sent from `messages` on, started at `at`): the misses it
    /// caused, read off the channel, and the pending set are within the
    /// library's bounds.
    fn check_iotlb_bounds(&mut self, op: &Op, (messages, at): (u64, std::time::Instant)) {
        let pending = rvhost::testing::iotlb_pending(self.vid);
        assert!(pending <= MAX_PENDING, "{op:?}: {pending} misses pending");
        let rings = u64::from(2 + self.flood.waiting_rings);
        let Some(chan) = &self.backend else { return };
        let mut misses = Vec::new();
        while let Ok(m) = rvhost::testing::read_message(chan.as_fd()) {
            assert_eq!((m.header.request, m.payload.len(), m.payload[25]), (1, 32, 1), "IOTLB miss");
            misses.push((u64::from_ne_bytes(m.payload[..8].try_into().unwrap()), m.payload[24]));
        }
        let (elapsed, sent) = (at.elapsed(), self.messages.get() - messages);
        let bursts = match op {
            Op::Enqueue(_) | Op::Dequeue => 1,
            Op::Flood(IotlbFlood::CycleUnmapped(n)) => u64::from(*n),
            _ => 0,
        };
        // A message asks at most once for each area rings wait for and
        // for `MAX_AHEAD` buffers; a burst for its chain's page, or for
        // the areas its ring waits for. (A message not sent with `call`,
        // the postcopy table's, is the `+ 1`.)
        let bound = (sent + 1) * (RING_AREAS * rings + MAX_AHEAD) + bursts * RING_AREAS;
        assert!(misses.len() as u64 <= bound, "{op:?}: {} misses, at most {bound}", misses.len());
        if let Op::Flood(IotlbFlood::CycleUnmapped(_)) = op {
            // No answers during the step: the ring's asks are bounded per
            // retry period, not per burst.
            let periods = 2 + elapsed.as_secs();
            let most = (MAX_PER_RING + RING_AREAS) * periods;
            assert!(misses.len() as u64 <= most, "{op:?}: {} misses", misses.len());
        }
        // (Answers may make a page be asked again with other rights.)
        let answers = !matches!(op, Op::Flood(_) | Op::Enqueue(_) | Op::Dequeue);
        if !answers && elapsed < std::time::Duration::from_millis(900) {
            let mut seen = std::collections::HashSet::new();
            assert!(
                misses.iter().all(|m| seen.insert(m)),
                "{op:?}: a page asked twice within the retry period"
            );
        }
        self.flood.unanswered.extend(misses);
    }
}

fn memfd(size: u64) -> OwnedFd {
    let fd = nix::sys::memfd::memfd_create(c"log", nix::sys::memfd::MemFdCreateFlag::MFD_CLOEXEC).unwrap();
    nix::unistd::ftruncate(&fd, size as i64).unwrap();
    fd
}

/// One sequence on a fresh connection, then the service check. Sequences
/// run one at a time: they share the server (a connection's vid is found
/// by its socket) and the audit record.
fn run_sequence(ops: &[Op]) {
    static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    static SERVER: std::sync::OnceLock<Server> = std::sync::OnceLock::new();
    let server = SERVER.get_or_init(|| {
        Server::start_with("sequences", POSTCOPY_SUPPORT | IOMMU_SUPPORT, |path| {
            // Inflight tracking is the application's choice (SPDK makes it).
            let mut pf = 0u64;
            // SAFETY: a registered path and a valid out-pointer.
            unsafe {
                assert_eq!(rte_vhost_driver_get_protocol_features(path.as_ptr(), &mut pf), 0);
                assert_eq!(rte_vhost_driver_set_protocol_features(path.as_ptr(), pf | PF_INFLIGHT), 0);
            }
        })
    });
    let fe = Frontend::connect(&server.path);
    fe.stream.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let vid = server.wait_vid();
    let mut s = Session {
        fe,
        vid,
        rams: RAM.iter().map(|&size| GuestRam::new(size)).collect(),
        shrunk: vec![false; RAM.len()],
        current: 0,
        features: F_VERSION_1,
        rings: [None, None],
        fds: Vec::new(),
        eventfds: Vec::new(),
        listening: false,
        ufd_server: None,
        inflight: None,
        backend: None,
        messages: Default::default(),
        flood: FloodState::default(),
    };
    s.fe.send(Request::SetOwner, &[], &[], false);
    let proto = PF_MQ | PF_LOG_SHMFD | PF_REPLY_ACK | PF_SLAVE_REQ | PF_PAGEFAULT | PF_INFLIGHT | PF_STATUS;
    s.fe.set_u64(Request::SetProtocolFeatures, proto);
    let _ = audit_violations();
    for (i, op) in ops.iter().enumerate() {
        let before = (s.messages.get(), std::time::Instant::now());
        s.step(op);
        s.check_iotlb_bounds(op, before);
        let bad = audit_violations();
        assert!(
            bad.is_empty(),
            "step {i} ({op:?}) of {ops:?}: guest accesses outside checked memory: {bad:?}"
        );
    }
    s.stop_fault_server();
    drop(s);
    assert_serves_a_clean_frontend();
    let bad = audit_violations();
    assert!(bad.is_empty(), "after {ops:?}: {bad:?}");
}

/// A new device set up properly moves a packet each way.
fn assert_serves_a_clean_frontend() {
    static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let name = format!("clean-{}", N.fetch_add(1, Ordering::Relaxed));
    let mut rig = Rig::connect(&name, 0, F_VERSION_1, 0, 1 << 20);
    let mut rx = rig.ring(0, Layout::Split, 256, areas_at(0x10000, Layout::Split, 256));
    let mut tx = rig.ring(1, Layout::Split, 256, areas_at(0x20000, Layout::Split, 256));
    rx.post(&[Buf { gpa: 0x40000, len: 2048, write: true }]).unwrap();
    assert_eq!(rig.enqueue(0, &pattern(60, 1)), 1, "a clean device takes a packet");
    assert_eq!(rx.pop_used().map(|u| u.len), Some(72));
    let packet = pattern(72, 2);
    rig.view().write(0x80000, &packet);
    tx.post(&[Buf { gpa: 0x80000, len: 72, write: false }]).unwrap();
    assert_eq!(rig.dequeue(1), vec![packet[12..].to_vec()], "a clean device gives a packet");
}

fn cases() -> u32 {
    std::env::var("RVHOST_SEQ_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(48)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(), max_shrink_iters: 200, ..ProptestConfig::default() })]

    #[test]
    fn random_orders_of_valid_requests_stay_inside_checked_memory(ops in proptest::collection::vec(op(), 1..80)) {
        run_sequence(&ops);
    }
}

/// Known interesting orders, always run.
#[test]
fn fixed_orders() {
    use Op::*;
    let start = [
        Features(0),
        MemTable(0),
        NewRings(0),
        VringNum(0, 3),
        VringNum(1, 3),
        VringAddr(0, 0),
        VringAddr(1, 0),
        Call(0),
        Call(1),
        Kick(0),
        Kick(1),
    ];
    let orders: Vec<Vec<Op>> = vec![
        // Grow a running ring past its memory.
        [&start[..], &[PostRx(4), Enqueue(4), VringNum(0, 5), PostRx(4), Enqueue(8), Dequeue]].concat(),
        vec![
            Features(0),
            MemTable(0),
            NewRings(1),
            VringNum(0, 0),
            VringAddr(0, 1),
            Call(0),
            Kick(0),
            PostRx(1),
            Enqueue(1),
            VringNum(0, 1),
            PostRx(1),
            Enqueue(1),
            VringNum(0, 5),
            PostRx(1),
            Enqueue(2),
        ],
        // Flip the layout under translated rings.
        [&start[..], &[Features(2), PostRx(4), Enqueue(4), Features(0), Enqueue(4), Dequeue]].concat(),
        // A new memory table under running rings, then the old one back.
        [&start[..], &[PostRx(2), MemTable(2), Enqueue(2), MemTable(0), Enqueue(2), Dequeue]].concat(),
        // Stop, resize, restart.
        [&start[..], &[GetVringBase(0), VringNum(0, 0), VringNum(0, 1), Kick(0), Enqueue(2)]].concat(),
        // Logging, then its file replaced by a smaller memory.
        [&start[..], &[LogBase, Features(5), PostRx(3), Enqueue(3), MemTable(2), Enqueue(3)]].concat(),
        // Memory shrinks under a running device.
        [&start[..], &[PostRx(3), Shrink, Enqueue(3), Dequeue, MemTable(1), NewRings(0), Enqueue(2)]]
            .concat(),
        // Postcopy around a new table.
        [
            &start[..],
            &[
                PostcopyAdvise,
                PostcopyListen,
                MemTable(1),
                NewRings(0),
                VringAddr(0, 0),
                Kick(0),
                PostRx(2),
                Enqueue(2),
                PostcopyEnd,
            ],
        ]
        .concat(),
        // Inflight areas across a ring restart.
        [&start[..], &[InflightGet, InflightSet, GetVringBase(1), Kick(1), PostTx(3), Dequeue]].concat(),
        // Behind a virtual IOMMU: misses answered, buffers invalidated
        // under traffic, a new memory table flushing the IOTLB.
        [
            &[BackendChannel, Features(8)][..],
            &start[1..],
            &[
                Misses,
                PostRx(4),
                PostTx(4),
                Enqueue(4),
                Dequeue,
                Misses,
                Enqueue(4),
                Dequeue,
                Iotlb(false, 1, 0),
                PostRx(2),
                Enqueue(2),
                Misses,
                Enqueue(2),
                MemTable(1),
                Enqueue(2),
                Misses,
                Misses,
                Enqueue(2),
                Iotlb(true, 3, 3),
                Enqueue(2),
            ],
        ]
        .concat(),
        // Packed behind a virtual IOMMU with logging; a channel never read.
        [
            &[BackendChannel, Features(9), MemTable(0), NewRings(0)][..],
            &start[3..],
            &[LogBase, Iotlb(true, 0, 3), Iotlb(true, 1, 1), PostRx(7), PostTx(7), Enqueue(39), Dequeue],
            &[Enqueue(39), Dequeue, Iotlb(true, 1, 3), Enqueue(39), Dequeue, Iotlb(false, 5, 0), Enqueue(8)],
        ]
        .concat(),
        // IOTLB floods: 62 rings waiting, unrelated updates, a guest
        // cycling unmapped IOVAs, everything invalidated, misses answered.
        [
            &[BackendChannel, Features(8)][..],
            &start[1..],
            &[
                Misses,
                PostRx(2),
                Enqueue(2),
                Op::Flood(IotlbFlood::WaitingRings(31)),
                Op::Flood(IotlbFlood::WaitingRings(31)),
            ],
            &[
                Op::Flood(IotlbFlood::UnrelatedUpdates(63)),
                Op::Flood(IotlbFlood::CycleUnmapped(199)),
                Misses,
                Enqueue(2),
            ],
            &[
                Iotlb(false, 5, 0),
                Op::Flood(IotlbFlood::UnrelatedUpdates(8)),
                Misses,
                Misses,
                PostRx(4),
                Enqueue(4),
            ],
        ]
        .concat(),
    ];
    for ops in orders {
        run_sequence(&ops);
    }
}

// --- truncation storms across devices (issue 19, finding 1) ---------------
//
// Several devices whose front-ends shrink their memory files at random
// while the guest posts chains over many pages and bursts run. After every
// step: each of the library's guest mappings is still one VMA (a shrunk
// file costs one replacement of the whole mapping, never a VMA per lost
// page), and every guest access lay inside checked memory.

const STORM_DEVICES: usize = 3;
const STORM_RAM: u64 = 1 << 20;

#[derive(Clone, Debug)]
enum StormOp {
    /// Device `d`'s guest posts `n` RX buffers and `n` TX chains, each
    /// chain a header and 3 one-byte buffers on pages of their own.
    Post(usize, u8),
    /// Device `d`'s front-end cuts its memory file to `pages` pages.
    Shrink(usize, u8),
    Enqueue(usize, u8),
    Dequeue(usize),
    /// Device `d` gets a new memory table and rings.
    NewTable(usize),
}

fn storm_op() -> impl Strategy<Value = StormOp> {
    let d = 0..STORM_DEVICES;
    prop_oneof![
        4 => (d.clone(), 1u8..8).prop_map(|(d, n)| StormOp::Post(d, n)),
        2 => (d.clone(), any::<u8>()).prop_map(|(d, p)| StormOp::Shrink(d, p)),
        3 => (d.clone(), 1u8..32).prop_map(|(d, n)| StormOp::Enqueue(d, n)),
        3 => d.clone().prop_map(StormOp::Dequeue),
        1 => d.prop_map(StormOp::NewTable),
    ]
}

/// One device of a storm: the rig, its rings while its memory is whole.
struct StormDevice {
    rig: Rig,
    rings: Option<(DriverRing, DriverRing)>,
    /// Pages handed out to TX chains so far (they walk over the memory).
    next_page: u64,
}

impl StormDevice {
    fn new(name: &str) -> StormDevice {
        let rig = Rig::connect(name, 0, F_VERSION_1, 0, STORM_RAM);
        let mut d = StormDevice { rig, rings: None, next_page: 0 };
        d.set_rings();
        d
    }

    fn set_rings(&mut self) {
        let rx = self.rig.ring(0, Layout::Split, 256, areas_at(0x10000, Layout::Split, 256));
        let tx = self.rig.ring(1, Layout::Split, 256, areas_at(0x20000, Layout::Split, 256));
        self.rings = Some((rx, tx));
    }

    fn step(&mut self, op: &StormOp) {
        match *op {
            StormOp::Post(_, n) => {
                let Some((rx, tx)) = &mut self.rings else { return };
                for _ in 0..n {
                    // Pages 0x30..0x100, every other one.
                    let page = |k: u64| 0x30000 + 0x2000 * (k % 0x68);
                    let _ = rx.post(&[Buf { gpa: page(self.next_page), len: 2048, write: true }]);
                    let chain: Vec<Buf> = (0..4)
                        .map(|b| Buf {
                            gpa: page(self.next_page + b),
                            len: if b == 0 { 12 } else { 1 },
                            write: false,
                        })
                        .collect();
                    let _ = tx.post(&chain);
                    self.next_page += 4;
                }
            }
            StormOp::Shrink(_, pages) => {
                if self.rings.take().is_some() {
                    nix::unistd::ftruncate(&self.rig.ram.fd, i64::from(pages) * 0x1000).unwrap();
                }
            }
            StormOp::Enqueue(_, n) => {
                let pkts: Vec<_> = (0..n).map(|k| mbuf_of(pool(), &pattern(60, k))).collect();
                let mut raw: Vec<_> = pkts.iter().map(|m| m.as_ptr()).collect();
                // SAFETY: valid mbufs; the library copies them.
                unsafe { rte_vhost_enqueue_burst(self.rig.vid, 0, raw.as_mut_ptr(), u16::from(n)) };
                pkts.into_iter().for_each(|m| m.free());
                self.drain_used();
            }
            StormOp::Dequeue(_) => {
                let mut out = [std::ptr::null_mut(); 32];
                // SAFETY: a valid pool and a 32-entry array.
                let n = unsafe {
                    rte_vhost_dequeue_burst(self.rig.vid, 1, pool().as_ptr(), out.as_mut_ptr(), 32)
                };
                for &p in &out[..usize::from(n)] {
                    // SAFETY: an mbuf the library handed us.
                    unsafe { rvhost::testing::mbuf::Mbuf::from_raw(p) }.unwrap().free();
                }
                self.drain_used();
            }
            StormOp::NewTable(_) => {
                self.rings = None;
                self.rig.ram = GuestRam::new(STORM_RAM);
                let table = self.rig.ram.mem_table();
                assert_eq!(self.rig.ack(Request::SetMemTable, &table, &[self.rig.ram.fd.as_raw_fd()]), 0);
                self.set_rings();
            }
        }
    }

    fn drain_used(&mut self) {
        if let Some((rx, tx)) = &mut self.rings {
            while rx.pop_used().is_some() {}
            while tx.pop_used().is_some() {}
        }
    }
}

/// Every guest mapping of every device is one VMA.
fn assert_one_vma_per_mapping(devices: &[StormDevice], at: &str) {
    for d in devices {
        for m in guest_mappings(d.rig.vid) {
            assert_eq!(vmas_in(m), 1, "{at}: device {}'s mapping {m:x?} split into VMAs", d.rig.vid);
        }
    }
}

fn run_storm(ops: &[StormOp]) {
    static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let run = N.fetch_add(1, Ordering::Relaxed);
    let mut devices: Vec<StormDevice> =
        (0..STORM_DEVICES).map(|d| StormDevice::new(&format!("storm-{run}-{d}"))).collect();
    for (i, op) in ops.iter().enumerate() {
        let (StormOp::Post(d, _)
        | StormOp::Shrink(d, _)
        | StormOp::Enqueue(d, _)
        | StormOp::Dequeue(d)
        | StormOp::NewTable(d)) = *op;
        devices[d].step(op);
        let at = format!("step {i} ({op:?}) of {ops:?}");
        assert_one_vma_per_mapping(&devices, &at);
        let bad = audit_violations();
        assert!(bad.is_empty(), "{at}: guest accesses outside checked memory: {bad:?}");
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases() / 4, max_shrink_iters: 50, ..ProptestConfig::default() })]

    #[test]
    fn truncation_storms_across_devices_cost_one_vma_per_mapping(ops in proptest::collection::vec(storm_op(), 1..60)) {
        run_storm(&ops);
    }
}
