//! Hostile order: sequences of individually valid messages, and guest
//! memory that changes under the device, must never make the library touch
//! memory it did not check, stall a core, or freeze other devices. One test
//! per finding of the hostile-order review (each failed on 38ce5d6, before
//! the fixes; the closing note of that work says how).
//!
//! Deliberate differences from DPDK 22.11, named here: a ring whose size or
//! layout changes after it was translated is translated again for the new
//! shape (DPDK keeps the old checks); a packed SET_VRING_BASE beyond the ring
//! is refused; the dirty log must lie inside its file; a shrunk guest-memory
//! file stops the device instead of killing the process; vDPA driver and
//! application callbacks never run with a library lock held; a postcopy
//! front-end that stalls cannot stall another device's messages.

mod common;

use std::ffi::{c_char, c_int, c_void};
use std::os::fd::{AsFd, AsRawFd};
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::rig::*;
use common::{Frontend, GuestRam};
use rvhost::testing::mock::{Buf, DriverRing, Layout, RingAreas};
use rvhost::testing::{MemoryTable, Request};

/// The tests share process-wide state (the EAL, fd counts, signal
/// handlers): one at a time.
fn serial() -> std::sync::MutexGuard<'static, ()> {
    static SERIAL: Mutex<()> = Mutex::new(());
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

fn state(q: u32, n: u32) -> Vec<u8> {
    [q.to_ne_bytes(), n.to_ne_bytes()].concat()
}

fn rx(gpa: u64) -> Buf {
    Buf { gpa, len: 2048, write: true }
}

/// Finding 1: SET_VRING_NUM on a translated ring changed the size the
/// datapath used and nothing else; a ring of 1 entry whose used ring ends
/// at the end of guest memory, grown to 32768, had the next enqueue write
/// its used element past the mapping.
#[test]
fn a_ring_resized_after_translation_is_checked_again() {
    let _s = serial();
    let mut rig = Rig::connect("resize", 0, F_VERSION_1, 0, 0x10000);
    let areas = RingAreas { desc: 0, driver: 0x100, device: 0x10000 - 16 };
    let mut ring = rig.ring(0, Layout::Split, 1, areas);
    ring.post(&[rx(0x1000)]).unwrap();
    assert_eq!(rig.enqueue(0, &pattern(60, 1)), 1, "a sane ring works");
    assert!(ring.pop_used().is_some());
    // Grown in place: the used ring no longer fits guest memory.
    rig.ack(Request::SetVringNum, &state(0, 32768), &[]);
    ring.post(&[rx(0x1000)]).unwrap();
    for _ in 0..20 {
        assert_eq!(rig.enqueue(0, &pattern(60, 2)), 0, "a ring that does not fit its memory takes nothing");
    }
    // Back to the size it was checked for: service resumes.
    assert_eq!(rig.ack(Request::SetVringNum, &state(0, 1), &[]), 0);
    assert_eq!(rig.enqueue(0, &pattern(60, 3)), 1, "the ring works again at a size that fits");
    assert!(ring.pop_used().is_some());
}

/// Finding 1 (layout): SET_FEATURES dropping VIRTIO_F_RING_PACKED on a
/// translated packed ring had the split datapath use areas checked for the
/// (smaller) packed event structures.
#[test]
fn a_ring_whose_layout_flips_after_translation_is_checked_again() {
    let _s = serial();
    let mut rig = Rig::connect("flip", 0, F_VERSION_1 | F_RING_PACKED, 0, 0x10000);
    // Packed: 4 descriptors, 4-byte event areas, the device's at the very end.
    let areas = RingAreas { desc: 0, driver: 0x100, device: 0x10000 - 4 };
    let mut ring = rig.ring(0, Layout::Packed, 4, areas);
    ring.post(&[rx(0x1000)]).unwrap();
    // Read as a split ring, the driver area says one chain is available
    // (head 0, whose flags, the packed id, are plain).
    ring.mem().store16(0x102, 1);
    rig.ack(Request::SetFeatures, &F_VERSION_1.to_ne_bytes(), &[]);
    for _ in 0..20 {
        assert_eq!(rig.enqueue(0, &pattern(60, 1)), 0, "areas checked for packed are not used as split");
    }
}

/// Finding 2: SET_LOG_BASE mapped offset + size of the fd without looking at
/// the file's size; a 0-byte memfd then killed the process (SIGBUS) at the
/// first logged write.
#[test]
fn a_dirty_log_beyond_its_file_is_refused() {
    let _s = serial();
    let mut rig = Rig::connect("log", 0, F_VERSION_1, PF_LOG_SHMFD, 1 << 20);
    let empty = nix::sys::memfd::memfd_create(c"log", nix::sys::memfd::MemFdCreateFlag::MFD_CLOEXEC).unwrap();
    let log_area = [4096u64.to_ne_bytes(), 0u64.to_ne_bytes()].concat();
    rig.fe.send(Request::SetLogBase, &log_area, &[empty.as_raw_fd()], true);
    let reply = rig.fe.recv();
    assert_eq!(reply.payload, 1u64.to_ne_bytes(), "a log larger than its file is refused");
    // Logging on: writes go on, nothing is logged into a missing file.
    rig.ack(Request::SetFeatures, &(F_VERSION_1 | F_LOG_ALL).to_ne_bytes(), &[]);
    let mut ring = rig.ring(0, Layout::Split, 256, areas_at(0x10000, Layout::Split, 256));
    ring.post(&[rx(0x40000)]).unwrap();
    assert_eq!(rig.enqueue(0, &pattern(60, 1)), 1);
}

/// Finding 3: a front-end that shrinks the guest-memory file after
/// SET_MEM_TABLE killed the process (SIGBUS) at the next access. The device
/// now stops (bursts move nothing) and a new memory table brings it back.
#[test]
fn guest_memory_truncated_under_the_device_stops_it_without_a_crash() {
    let _s = serial();
    let mut rig = Rig::connect("truncate", 0, F_VERSION_1, 0, 1 << 20);
    let areas = areas_at(0x10000, Layout::Split, 256);
    let mut ring = rig.ring(0, Layout::Split, 256, areas);
    for k in 0..4 {
        ring.post(&[rx(0x40000 + 0x1000 * k)]).unwrap();
    }
    assert_eq!(rig.enqueue(0, &pattern(60, 1)), 1);
    drop(ring);
    // The front-end takes the pages away (the test no longer touches them).
    nix::unistd::ftruncate(&rig.ram.fd, 0).unwrap();
    for _ in 0..4 {
        assert_eq!(rig.enqueue(0, &pattern(60, 2)), 0, "a device whose memory went away moves nothing");
        assert!(rig.dequeue(1).is_empty());
    }
    // A new memory table and ring: service resumes.
    rig.ram = GuestRam::new(1 << 20);
    assert_eq!(rig.ack(Request::SetMemTable, &rig.ram.mem_table(), &[rig.ram.fd.as_raw_fd()]), 0);
    let mut ring = DriverRing::new(rig.view(), Layout::Split, 256, areas);
    assert_eq!(rig.ack(Request::SetVringAddr, &rig.addr_msg(0, areas), &[]), 0);
    // The new ring restarts at index 0; the device resynchronises from the
    // used index it finds (0) when kicked.
    assert_eq!(rig.ack(Request::SetVringBase, &state(0, 0), &[]), 0);
    let kick = nix::sys::eventfd::EventFd::new().unwrap();
    assert_eq!(rig.ack(Request::SetVringKick, &0u64.to_ne_bytes(), &[kick.as_raw_fd()]), 0);
    ring.post(&[rx(0x40000)]).unwrap();
    assert_eq!(rig.enqueue(0, &pattern(60, 3)), 1, "the device works on its new memory");
    assert_eq!(ring.pop_used().map(|u| u.len), Some(72));
}

// --- a vDPA driver that calls back into the library, as real ones do -----

#[repr(C)]
struct VdpaOps {
    get_queue_num: Option<unsafe extern "C" fn(*mut c_void, *mut u32) -> c_int>,
    get_features: Option<unsafe extern "C" fn(*mut c_void, *mut u64) -> c_int>,
    get_protocol_features: Option<unsafe extern "C" fn(*mut c_void, *mut u64) -> c_int>,
    dev_conf: Option<unsafe extern "C" fn(c_int) -> c_int>,
    dev_close: Option<unsafe extern "C" fn(c_int) -> c_int>,
    dev_cleanup: Option<unsafe extern "C" fn(c_int) -> c_int>,
    set_vring_state: Option<unsafe extern "C" fn(c_int, c_int, c_int) -> c_int>,
    set_features: Option<unsafe extern "C" fn(c_int) -> c_int>,
    migration_done: Option<unsafe extern "C" fn(c_int) -> c_int>,
    rest: [usize; 9],
}

#[repr(C)]
struct RteVhostVring {
    desc: *mut c_void,
    avail: *mut c_void,
    used: *mut c_void,
    log_guest_addr: u64,
    callfd: c_int,
    kickfd: c_int,
    size: u16,
}

extern "C" {
    fn rte_vdpa_register_device(dev: *mut c_void, ops: *const VdpaOps) -> *mut c_void;
    fn rte_vdpa_unregister_device(dev: *mut c_void) -> c_int;
    fn rte_vhost_driver_attach_vdpa_device(path: *const c_char, dev: *mut c_void) -> c_int;
    fn rte_vhost_get_vdpa_device(vid: c_int) -> *mut c_void;
    fn rte_vhost_get_negotiated_features(vid: c_int, features: *mut u64) -> c_int;
    fn rte_vhost_get_vhost_vring(vid: c_int, idx: u16, vring: *mut RteVhostVring) -> c_int;
}

/// Callbacks the fake driver saw, each after calling back into the library.
static VDPA_CALLS: Mutex<Vec<&'static str>> = Mutex::new(Vec::new());

/// What mlx5/ifc do first in their callbacks: find their device, read the
/// negotiated features and a ring.
fn call_back_into_the_library(vid: c_int, what: &'static str) -> c_int {
    // SAFETY: plain API calls with valid out-pointers.
    unsafe {
        assert!(!rte_vhost_get_vdpa_device(vid).is_null(), "{what}: the vDPA device of vid {vid}");
        let mut f = 0u64;
        rte_vhost_get_negotiated_features(vid, &mut f);
        let mut v = std::mem::zeroed::<RteVhostVring>();
        rte_vhost_get_vhost_vring(vid, 0, &mut v);
    }
    VDPA_CALLS.lock().unwrap().push(what);
    0
}

unsafe extern "C" fn vdpa_queue_num(_: *mut c_void, n: *mut u32) -> c_int {
    // SAFETY: the library's out-pointer.
    unsafe { *n = 1 };
    0
}
unsafe extern "C" fn vdpa_features(_: *mut c_void, f: *mut u64) -> c_int {
    // SAFETY: the library's out-pointer.
    unsafe { *f = u64::MAX };
    0
}
unsafe extern "C" fn vdpa_dev_conf(vid: c_int) -> c_int {
    call_back_into_the_library(vid, "dev_conf")
}
unsafe extern "C" fn vdpa_dev_close(vid: c_int) -> c_int {
    call_back_into_the_library(vid, "dev_close")
}
unsafe extern "C" fn vdpa_set_vring_state(vid: c_int, _: c_int, _: c_int) -> c_int {
    call_back_into_the_library(vid, "set_vring_state")
}
unsafe extern "C" fn vdpa_set_features(vid: c_int) -> c_int {
    call_back_into_the_library(vid, "set_features")
}
unsafe extern "C" fn vdpa_migration_done(vid: c_int) -> c_int {
    call_back_into_the_library(vid, "migration_done")
}

static VDPA_OPS: VdpaOps = VdpaOps {
    get_queue_num: Some(vdpa_queue_num),
    get_features: Some(vdpa_features),
    get_protocol_features: Some(vdpa_features),
    dev_conf: Some(vdpa_dev_conf),
    dev_close: Some(vdpa_dev_close),
    dev_cleanup: None,
    set_vring_state: Some(vdpa_set_vring_state),
    set_features: Some(vdpa_set_features),
    migration_done: Some(vdpa_migration_done),
    rest: [0; 9],
};

/// Finding 4: the handler held the device lock (and, for SET_MEM_TABLE, every
/// ring lock) across vDPA driver callbacks; a driver calling back into the
/// library deadlocked the event thread, and with it every socket.
#[test]
fn vdpa_drivers_may_call_back_into_the_library_from_any_callback() {
    let _s = serial();
    within(Duration::from_secs(30), vdpa_callbacks);
}

fn vdpa_callbacks() {
    // struct rte_device: the name pointer after the two list pointers.
    let name = c"rvhost-test-vdpa";
    let mut rte_device = [0usize; 8];
    rte_device[2] = name.as_ptr() as usize;
    // SAFETY: a device and ops table that outlive the registration.
    let vdpa = unsafe { rte_vdpa_register_device(rte_device.as_mut_ptr().cast(), &VDPA_OPS) };
    assert!(!vdpa.is_null(), "fake vDPA device registered");
    let server = Server::start_with("vdpa", 0, |path| {
        // SAFETY: a registered device and a valid path.
        assert_eq!(unsafe { rte_vhost_driver_attach_vdpa_device(path.as_ptr(), vdpa) }, 0);
    });
    let fe = Frontend::connect(&server.path);
    fe.stream.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
    let _vid = server.wait_vid();
    let ram = GuestRam::new(1 << 20);
    let ack = |req: Request, payload: &[u8], fds: &[i32]| {
        fe.send(req, payload, fds, true);
        let r = fe.recv();
        assert_eq!(r.header.request, req as u32, "{req:?} answered (no deadlock)");
    };
    fe.send(Request::SetOwner, &[], &[], false);
    fe.set_u64(Request::SetProtocolFeatures, PF_REPLY_ACK);
    ack(Request::SetFeatures, &F_VERSION_1.to_ne_bytes(), &[]);
    ack(Request::SetMemTable, &ram.mem_table(), &[ram.fd.as_raw_fd()]);
    let mut fds = Vec::new();
    // SAFETY: the test's own mapping.
    let view = unsafe { rvhost::testing::mock::GuestView::new(ram.addr as *mut u8, ram.size) };
    for q in 0..2u32 {
        let areas = areas_at(0x10000 * (u64::from(q) + 1), Layout::Split, 256);
        let _ring = DriverRing::new(view, Layout::Split, 256, areas);
        ack(Request::SetVringNum, &state(q, 256), &[]);
        ack(Request::SetVringBase, &state(q, 0), &[]);
        let mut addr = q.to_ne_bytes().to_vec();
        addr.extend_from_slice(&0u32.to_ne_bytes());
        for v in [areas.desc, areas.device, areas.driver] {
            addr.extend_from_slice(&(ram.addr + v).to_ne_bytes());
        }
        addr.extend_from_slice(&0u64.to_ne_bytes());
        ack(Request::SetVringAddr, &addr, &[]);
        let call = nix::sys::eventfd::EventFd::new().unwrap();
        let kick = nix::sys::eventfd::EventFd::new().unwrap();
        ack(Request::SetVringCall, &u64::from(q).to_ne_bytes(), &[call.as_raw_fd()]);
        ack(Request::SetVringKick, &u64::from(q).to_ne_bytes(), &[kick.as_raw_fd()]);
        fds.push((call, kick));
    }
    // Configured: dev_conf ran. A new memory table closes the device first.
    let ram2 = GuestRam::new(1 << 20);
    ack(Request::SetMemTable, &ram2.mem_table(), &[ram2.fd.as_raw_fd()]);
    ack(Request::SendRarp, &[0x52, 0x54, 0, 0, 0, 1, 0, 0], &[]);
    ack(Request::GetVringBase, &state(0, 0), &[]);
    let calls = VDPA_CALLS.lock().unwrap().clone();
    for expected in ["set_features", "dev_conf", "dev_close", "migration_done"] {
        assert!(calls.contains(&expected), "driver callback {expected} ran and returned: {calls:?}");
    }
    // Every other socket is still served.
    let other = Server::start("vdpa-other", 0);
    let fe2 = Frontend::connect(&other.path);
    fe2.stream.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
    assert_ne!(fe2.call_u64(Request::GetFeatures), 0);
    drop(fe);
    drop(server);
    // SAFETY: our registered device, no longer attached.
    unsafe { rte_vdpa_unregister_device(vdpa) };
}

/// Finding 5: indirect tables were bounded only by their length (a 1 GiB
/// table of zero-length entries is ~67 M descriptor reads a chain). As in
/// DPDK, a table with more entries than the ring (split) or as many (packed)
/// is refused, whatever it holds.
#[test]
fn indirect_tables_larger_than_the_ring_are_refused() {
    let _s = serial();
    for layout in [Layout::Split, Layout::Packed] {
        let features = F_VERSION_1 | if layout == Layout::Packed { F_RING_PACKED } else { 0 };
        let mut rig = Rig::connect(&format!("indirect-{layout:?}"), 0, features, 0, 1 << 20);
        let mut _rx = rig.ring(0, layout, 256, areas_at(0x10000, layout, 256));
        let mut tx = rig.ring(1, layout, 256, areas_at(0x20000, layout, 256));
        let packet = pattern(72, 9);
        rig.view().write(0x40000, &packet);
        let bufs = [Buf { gpa: 0x40000, len: 12, write: false }, Buf { gpa: 0x4000c, len: 60, write: false }];
        // A table within the bound moves its packet.
        tx.post_indirect(0x30000, &bufs).unwrap();
        let got = rig.dequeue(1);
        assert_eq!(got, vec![packet[12..].to_vec()], "{layout:?}: a small indirect table works");
        assert!(tx.pop_used().is_some());
        // The same two entries in a table claiming 512 entries: refused,
        // and the ring moves on.
        tx.post_table(0x30000, 512 * 16, &bufs).unwrap();
        assert!(rig.dequeue(1).is_empty(), "{layout:?}: a table larger than the ring is refused");
        assert!(tx.pop_used().is_some(), "{layout:?}: the refused chain is returned to the guest");
        // Packed: as many entries as the ring is one too many (DPDK).
        if layout == Layout::Packed {
            tx.post_table(0x30000, 256 * 16, &bufs).unwrap();
            assert!(rig.dequeue(1).is_empty(), "packed: a table as large as the ring is refused");
            assert!(tx.pop_used().is_some());
        }
        // A 64 MiB table of zero-length entries costs nothing either.
        let start = Instant::now();
        tx.post_table(0x30000, 64 << 20, &bufs).unwrap();
        assert!(rig.dequeue(1).is_empty());
        assert!(start.elapsed() < Duration::from_millis(500), "{layout:?}: bounded work");
    }
}

#[repr(C)]
#[derive(Default)]
struct MonitorCond {
    addr: u64,
    val: u64,
    mask: u64,
    size: u8,
    is_match: u8,
}

extern "C" {
    fn rte_vhost_get_monitor_addr(vid: c_int, q: u16, pmc: *mut MonitorCond) -> c_int;
}

/// Finding 6: a packed SET_VRING_BASE beyond the ring was stored as is, and
/// `rte_vhost_get_monitor_addr` handed power-management loops an address
/// outside the ring.
#[test]
fn packed_ring_positions_stay_inside_the_ring() {
    let _s = serial();
    let mut rig = Rig::connect("packedbase", 0, F_VERSION_1 | F_RING_PACKED, 0, 1 << 20);
    let areas = areas_at(0x10000, Layout::Packed, 128);
    let _ring = rig.ring(0, Layout::Packed, 128, areas);
    // The library's own address of the descriptor ring.
    // SAFETY: a plain C struct of pointers and integers; all-zero is valid.
    let mut v = unsafe { std::mem::zeroed::<RteVhostVring>() };
    // SAFETY: a valid out-pointer.
    assert_eq!(unsafe { rte_vhost_get_vhost_vring(rig.vid, 0, &mut v) }, 0);
    let desc = v.desc as u64;
    let inside = |rig: &Rig| {
        let mut c = MonitorCond::default();
        // SAFETY: a valid out-pointer.
        let rc = unsafe { rte_vhost_get_monitor_addr(rig.vid, 0, &mut c) };
        rc != 0 || (desc..desc + 128 * 16).contains(&c.addr)
    };
    assert!(inside(&rig));
    assert_eq!(rig.ack(Request::SetVringBase, &state(0, 300 | 1 << 15), &[]), 1, "index 300 of 128 refused");
    assert!(inside(&rig), "the monitor address stays inside the ring");
    // A position valid for the old size, then a smaller ring: never an
    // address past it.
    assert_eq!(rig.ack(Request::SetVringBase, &state(0, 100 | 1 << 15), &[]), 0);
    rig.ack(Request::SetVringNum, &state(0, 64), &[]);
    assert!(inside(&rig), "after shrinking, the monitor address stays inside the ring");
}

/// Finding 7: the used index was published and the guest's event index read
/// with no full fence between (DPDK and virtio-queue fence there). On x86 the
/// store can pass the load: the device then misses the guest's new event
/// index while the guest misses the new used index, and an interrupt-driven
/// guest waits forever. Played for many rounds against a guest thread that
/// does exactly what Linux does (store event index, full fence, re-check).
#[test]
fn interrupts_are_never_lost_with_event_idx() {
    let _s = serial();
    let mut rig = Rig::connect("fence", 0, F_VERSION_1 | F_EVENT_IDX, 0, 1 << 20);
    let mut ring = rig.ring(0, Layout::Split, 256, areas_at(0x10000, Layout::Split, 256));
    let rig = Arc::new(rig);
    let stop = Arc::new(AtomicBool::new(false));
    let enqueued = Arc::new(AtomicU32::new(0));
    let host = {
        let (rig, stop, enqueued) = (Arc::clone(&rig), Arc::clone(&stop), Arc::clone(&enqueued));
        std::thread::spawn(move || {
            on_cpu(1);
            let data = pattern(60, 5);
            while !stop.load(Ordering::Relaxed) {
                if rig.enqueue_once(0, &data) == 1 {
                    enqueued.fetch_add(1, Ordering::Relaxed);
                }
            }
        })
    };
    // The EAL pinned this thread to its main lcore; guest and device each
    // get a core of their own, as a guest's vCPU and a PMD thread have.
    on_cpu(0);
    let call = &rig.calls.iter().find(|(q, _)| *q == 0).unwrap().1;
    let deadline = Instant::now() + Duration::from_secs(8);
    let (mut rounds, mut lost, mut waits) = (0u32, 0u32, 0u32);
    while Instant::now() < deadline && lost == 0 {
        ring.post(&[rx(0x40000)]).unwrap();
        // A varying head start for the device: the guest's check sweeps
        // across the device's publication of the used index.
        for i in 0..(rounds * 7) % 20000 {
            std::hint::black_box(i);
        }
        if !ring.enable_notification(true) {
            // Nothing used yet: the device must interrupt.
            let mut pfd = [nix::poll::PollFd::new(call.as_fd(), nix::poll::PollFlags::POLLIN)];
            if nix::poll::poll(&mut pfd, nix::poll::PollTimeout::from(1000u16)).unwrap() == 1 {
                waits += 1;
            } else {
                lost += 1;
            }
        }
        while ring.pop_used().is_some() {}
        // An interrupt for an entry seen without waiting may still be on
        // its way: let it land and drop it, so that the next round waits
        // only for its own.
        let t = Instant::now();
        while t.elapsed() < Duration::from_micros(3) {
            std::hint::spin_loop();
        }
        let _ = call.read();
        rounds += 1;
    }
    stop.store(true, Ordering::Relaxed);
    host.join().unwrap();
    eprintln!(
        "{rounds} rounds, {waits} interrupts awaited, {lost} lost, {} enqueued",
        enqueued.load(Ordering::Relaxed)
    );
    assert_eq!(lost, 0, "an interrupt was lost after {rounds} rounds");
    assert!(rounds > 1000, "enough rounds ran: {rounds}");
}

/// Moves the calling thread to `cpu` (modulo the CPUs online; the thread's
/// own affinity, which the EAL narrowed, does not count).
fn on_cpu(cpu: usize) {
    // SAFETY: a plain query.
    let online = unsafe { libc::sysconf(libc::_SC_NPROCESSORS_ONLN) }.max(1) as usize;
    let mut set = nix::sched::CpuSet::new();
    set.set(cpu % online).unwrap();
    nix::sched::sched_setaffinity(nix::unistd::Pid::from_raw(0), &set).unwrap();
}

// --- postcopy ---------------------------------------------------------

/// Another socket answers within `limit`.
fn other_device_is_served(other: &Server, limit: Duration) -> bool {
    let fe = Frontend::connect(&other.path);
    fe.stream.set_read_timeout(Some(limit)).unwrap();
    let t = Instant::now();
    fe.send(Request::GetFeatures, &[], &[], false);
    let ok = rvhost::testing::read_message(fe.stream.as_fd()).is_ok();
    ok && t.elapsed() < limit
}

/// Finding 8: in postcopy, SET_MEM_TABLE waited for the front-end's ack on
/// the one event thread (up to 10 s), and a control-plane touch of a page
/// that never arrives blocked it for good: one front-end froze every device.
#[test]
fn a_stalled_postcopy_frontend_does_not_stall_other_devices() {
    let _s = serial();
    let other = Server::start("pc-other", 0);
    let server = Server::start("pc", POSTCOPY_SUPPORT);
    let fe = Frontend::connect(&server.path);
    let _vid = server.wait_vid();
    fe.send(Request::SetOwner, &[], &[], false);
    fe.set_u64(Request::SetProtocolFeatures, PF_PAGEFAULT | PF_REPLY_ACK);
    fe.set_u64(Request::SetFeatures, F_VERSION_1);
    fe.send(Request::PostcopyAdvise, &[], &[], false);
    let mut advise = fe.recv();
    let ufd = advise.fds.pop().expect("the back-end's userfaultfd");
    fe.send(Request::PostcopyListen, &[], &[], false);
    let ram = GuestRam::new(1 << 20);
    fe.send(Request::SetMemTable, &ram.mem_table(), &[ram.fd.as_raw_fd()], false);
    let reply = fe.recv();
    let ours = MemoryTable::parse(&reply.payload).expect("our mapping addresses");
    // The front-end does not ack (yet): other devices must not wait for it.
    assert!(other_device_is_served(&other, Duration::from_secs(2)), "served while a postcopy ack is pending");
    fe.send(Request::SetMemTable, &0u64.to_ne_bytes(), &[], false);
    // Ring set up; the kick makes the back-end read the used index, a page
    // that has not arrived and that nobody serves yet.
    let areas = areas_at(0x10000, Layout::Split, 256);
    for (req, payload) in [
        (Request::SetVringNum, state(0, 256)),
        (Request::SetVringBase, state(0, 0)),
        (Request::SetVringAddr, {
            let mut p = 0u32.to_ne_bytes().to_vec();
            p.extend_from_slice(&0u32.to_ne_bytes());
            for v in [areas.desc, areas.device, areas.driver] {
                p.extend_from_slice(&(ram.addr + v).to_ne_bytes());
            }
            p.extend_from_slice(&0u64.to_ne_bytes());
            p
        }),
    ] {
        fe.send(req, &payload, &[], false);
    }
    let kick = nix::sys::eventfd::EventFd::new().unwrap();
    fe.send(Request::SetVringKick, &0u64.to_ne_bytes(), &[kick.as_raw_fd()], false);
    std::thread::sleep(Duration::from_millis(300));
    assert!(
        other_device_is_served(&other, Duration::from_secs(2)),
        "served while a postcopy fault is pending"
    );
    // The front-end finally serves its faults: its device goes on.
    let stop = Arc::new(AtomicBool::new(false));
    let server_thread = serve_faults(ufd, Arc::clone(&stop));
    fe.stream.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    assert_eq!(fe.call_u64(Request::GetProtocolFeatures) & PF_PAGEFAULT, PF_PAGEFAULT);
    stop.store(true, Ordering::Relaxed);
    let served = server_thread.join().unwrap();
    assert!(served > 0, "the back-end's own faults reached the front-end's userfaultfd");
    assert!(!ours.regions.is_empty());
}
