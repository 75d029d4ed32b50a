//! What librte_vhost.so.25 (DPDK 24.11) and .so.26 (25.11) do beyond
//! 22.11, through the C API (`cargo test --features abi-24-11`, or
//! `abi-25-11`): `rte_vhost_driver_set_max_queue_num` accepts a vhost-user
//! socket and changes nothing; the `guest_notify` interrupt offload with
//! `rte_vhost_notify_guest` and its counters; the 21 per-ring stats names
//! and `mbuf_alloc_failed`; `RTE_VHOST_USER_ASYNC_CONNECT`; 24.11's thread
//! names.
//!
//! Deliberate difference from DPDK 24.11, named here: a `/dev/vduse/` path
//! is refused by `rte_vhost_driver_register` (rvhost has no VDUSE back-end).
#![cfg(feature = "abi-24-11")]

mod common;

use std::ffi::{c_char, c_int, c_uint, CString};
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixListener;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use common::rig::*;
use common::{eal_init, socket_path};
use rvhost::testing::mock::{Buf, Layout};
use rvhost::testing::{mbuf, Mbuf, Mempool, Request, RteMbuf};

const CLIENT: u64 = 1 << 0;
const NET_STATS_ENABLE: u64 = 1 << 9;
const ASYNC_CONNECT: u64 = 1 << 10;
const VRING_NOFD: u64 = 1 << 8;

#[repr(C)]
struct StatName {
    name: [c_char; 64],
}

#[repr(C)]
#[derive(Clone, Copy, Default)]
struct Stat {
    id: u64,
    value: u64,
}

extern "C" {
    fn rte_vhost_driver_set_max_queue_num(path: *const c_char, max_queue_pairs: u32) -> c_int;
    fn rte_vhost_driver_get_queue_num(path: *const c_char, queue_num: *mut u32) -> c_int;
    fn rte_vhost_notify_guest(vid: c_int, queue_id: u16);
    fn rte_vhost_vring_stats_get_names(vid: c_int, queue_id: u16, name: *mut StatName, size: c_uint)
        -> c_int;
    fn rte_vhost_vring_stats_get(vid: c_int, queue_id: u16, stats: *mut Stat, n: c_uint) -> c_int;
}

/// One test at a time: the offload tests share their callbacks' state.
fn serial() -> std::sync::MutexGuard<'static, ()> {
    static SERIAL: Mutex<()> = Mutex::new(());
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

fn rx(gpa: u64) -> Buf {
    Buf { gpa, len: 2048, write: true }
}

/// Ring `q`'s stats by name.
fn stats(vid: c_int, q: u16) -> Vec<(String, u64)> {
    let mut names: Vec<StatName> = (0..64).map(|_| StatName { name: [0; 64] }).collect();
    let mut values = [Stat::default(); 64];
    // SAFETY: 64-entry arrays.
    let n = unsafe { rte_vhost_vring_stats_get_names(vid, q, names.as_mut_ptr(), 64) };
    // SAFETY: as above.
    assert_eq!(unsafe { rte_vhost_vring_stats_get(vid, q, values.as_mut_ptr(), 64) }, n);
    (0..n as usize)
        .map(|i| {
            // SAFETY: NUL-terminated by the library.
            let name = unsafe { std::ffi::CStr::from_ptr(names[i].name.as_ptr()) };
            (name.to_string_lossy().into_owned(), values[i].value)
        })
        .collect()
}

fn stat(vid: c_int, q: u16, name: &str) -> u64 {
    let dir = if q % 2 == 1 { "rx" } else { "tx" };
    let full = format!("{dir}_q{}_{name}", q / 2);
    stats(vid, q).into_iter().find(|(n, _)| *n == full).unwrap_or_else(|| panic!("no stat {full}")).1
}

/// The call eventfd's count since the last read (0: not written).
fn interrupts(rig: &Rig, q: u32) -> u64 {
    let (_, call) = rig.calls.iter().find(|(cq, _)| *cq == q).unwrap();
    let mut buf = [0u8; 8];
    match nix::unistd::read(call.as_raw_fd(), &mut buf) {
        Ok(8) => u64::from_ne_bytes(buf),
        _ => 0,
    }
}

#[test]
fn set_max_queue_num_accepts_a_vhost_user_socket_and_changes_nothing() {
    let _s = serial();
    eal_init();
    let path = CString::new(socket_path("maxq")).unwrap();
    let unknown = CString::new(socket_path("maxq-unregistered")).unwrap();
    // SAFETY: valid paths and out-pointer throughout.
    unsafe {
        assert_eq!(rte_vhost_driver_register(path.as_ptr(), 0), 0);
        assert_eq!(rte_vhost_driver_set_max_queue_num(path.as_ptr(), 1), 0, "net/vhost and OVS 3.5 need 0");
        let mut n = 0u32;
        assert_eq!(rte_vhost_driver_get_queue_num(path.as_ptr(), &mut n), 0);
        assert_eq!(n, 128, "the front-end chooses the queue count on a vhost-user socket");
        assert_eq!(rte_vhost_driver_set_max_queue_num(path.as_ptr(), 128), 0);
        assert_eq!(
            rte_vhost_driver_set_max_queue_num(path.as_ptr(), 129),
            -1,
            "beyond VHOST_MAX_QUEUE_PAIRS"
        );
        assert_eq!(rte_vhost_driver_set_max_queue_num(unknown.as_ptr(), 1), -1, "not registered");
        assert_eq!(rte_vhost_driver_set_max_queue_num(std::ptr::null(), 1), -1);
        assert_eq!(rte_vhost_driver_unregister(path.as_ptr()), 0);
    }
}

/// Deliberate difference: DPDK 24.11 creates a VDUSE device for such a path.
#[test]
fn a_vduse_path_is_refused() {
    let _s = serial();
    eal_init();
    let path = CString::new("/dev/vduse/rvhost-test").unwrap();
    // SAFETY: a valid path.
    assert_eq!(unsafe { rte_vhost_driver_register(path.as_ptr(), 0) }, -1);
    // SAFETY: as above.
    assert_eq!(unsafe { rte_vhost_driver_start(path.as_ptr()) }, -1, "nothing was registered");
}

#[test]
fn rings_report_24_11s_21_stats() {
    let _s = serial();
    let mut rig = Rig::connect("stats21", NET_STATS_ENABLE, 1 << 32, 0, 1 << 20);
    let _rx = rig.ring(0, Layout::Split, 256, areas_at(0x10000, Layout::Split, 256));
    let names: Vec<String> = stats(rig.vid, 0).into_iter().map(|(n, _)| n).collect();
    let expected = [
        "good_packets",
        "good_bytes",
        "multicast_packets",
        "broadcast_packets",
        "undersize_packets",
        "size_64_packets",
        "size_65_127_packets",
        "size_128_255_packets",
        "size_256_511_packets",
        "size_512_1023_packets",
        "size_1024_1518_packets",
        "size_1519_max_packets",
        "guest_notifications",
        "guest_notifications_offloaded",
        "guest_notifications_error",
        "guest_notifications_suppressed",
        "iotlb_hits",
        "iotlb_misses",
        "inflight_submitted",
        "inflight_completed",
        "mbuf_alloc_failed",
    ];
    assert_eq!(names, expected.map(|n| format!("tx_q0_{n}")));
}

/// 24.11 counts the mbufs a dequeue could not have: the burst's, and a
/// segment of a packet being copied (that packet is dropped).
#[test]
fn a_dequeue_that_runs_out_of_mbufs_counts_them() {
    let _s = serial();
    let mut rig = Rig::connect("nombuf", NET_STATS_ENABLE, 1 << 32, 0, 1 << 20);
    let mut tx = rig.ring(1, Layout::Split, 256, areas_at(0x10000, Layout::Split, 256));
    // Three mbufs of 128 bytes (after the 128-byte headroom), no cache.
    let name = CString::new(format!("nombuf-{}", std::process::id())).unwrap();
    // SAFETY: EAL is initialised (the rig); a fresh pool, never freed.
    let small = unsafe { Mempool::from_raw(rte_pktmbuf_pool_create(name.as_ptr(), 3, 0, 0, 256, -1)) };
    let small = small.unwrap();
    let vid = rig.vid;
    let dequeue = || {
        let mut out = [std::ptr::null_mut::<RteMbuf>(); 8];
        // SAFETY: valid vid, queue, pool and an 8-entry array.
        let n = unsafe { rte_vhost_dequeue_burst(vid, 1, small.as_ptr(), out.as_mut_ptr(), 8) };
        for &p in &out[..usize::from(n)] {
            // SAFETY: an mbuf the library handed us.
            unsafe { Mbuf::from_raw(p) }.unwrap().free();
        }
        n
    };
    // A 1000-byte packet needs 8 such mbufs: the fourth fails.
    tx.post(&[Buf { gpa: 0x40000, len: 12 + 1000, write: false }]).unwrap();
    assert_eq!(dequeue(), 0, "the packet is dropped");
    assert!(tx.pop_used().is_some(), "and its buffer returned");
    assert_eq!(stat(vid, 1, "mbuf_alloc_failed"), 1);
    // The pool has its three back; with all held, a burst of two fails.
    let held: Vec<Mbuf> = (0..3).map(|_| mbuf::alloc(small).unwrap()).collect();
    tx.post(&[Buf { gpa: 0x41000, len: 72, write: false }]).unwrap();
    tx.post(&[Buf { gpa: 0x42000, len: 72, write: false }]).unwrap();
    assert_eq!(dequeue(), 0);
    assert_eq!(stat(vid, 1, "mbuf_alloc_failed"), 3, "both mbufs of the burst");
    held.into_iter().for_each(Mbuf::free);
    assert_eq!(dequeue(), 2, "served once the mbufs are back");
}

static OFFERS: AtomicU32 = AtomicU32::new(0);
static TAKE: AtomicBool = AtomicBool::new(false);
static NOTIFIED: AtomicU32 = AtomicU32::new(0);
/// The callback raises the interrupt itself, from inside.
static RAISE_INSIDE: AtomicBool = AtomicBool::new(false);

unsafe extern "C" fn guest_notify(vid: c_int, queue_id: u16) -> bool {
    OFFERS.fetch_add(1, Ordering::SeqCst);
    if RAISE_INSIDE.load(Ordering::SeqCst) {
        // SAFETY: the device and queue the library just named.
        unsafe { rte_vhost_notify_guest(vid, queue_id) };
    }
    TAKE.load(Ordering::SeqCst)
}

unsafe extern "C" fn guest_notified(_vid: c_int) {
    NOTIFIED.fetch_add(1, Ordering::SeqCst);
}

static OFFLOAD_OPS: DeviceOps = DeviceOps {
    new_connection: Some(on_new_connection),
    guest_notify: Some(guest_notify),
    guest_notified: Some(guest_notified),
    ..NO_OPS
};

fn offload_rig(name: &str) -> (Rig, rvhost::testing::mock::DriverRing) {
    OFFERS.store(0, Ordering::SeqCst);
    NOTIFIED.store(0, Ordering::SeqCst);
    TAKE.store(false, Ordering::SeqCst);
    RAISE_INSIDE.store(false, Ordering::SeqCst);
    // VERSION_1, no EVENT_IDX: the guest wants every interrupt.
    let mut rig = Rig::connect_with_ops(name, NET_STATS_ENABLE, 1 << 32, 0, 1 << 20, &OFFLOAD_OPS);
    let ring = rig.ring(0, Layout::Split, 256, areas_at(0x10000, Layout::Split, 256));
    (rig, ring)
}

#[test]
fn guest_notify_takes_the_interrupt_and_suppresses_until_raised() {
    let _s = serial();
    let (rig, mut ring) = offload_rig("offload");
    TAKE.store(true, Ordering::SeqCst);
    ring.post(&[rx(0x40000)]).unwrap();
    assert_eq!(rig.enqueue(0, &pattern(60, 1)), 1);
    assert!(ring.pop_used().is_some());
    assert_eq!(OFFERS.load(Ordering::SeqCst), 1, "offered to the application first");
    assert_eq!(interrupts(&rig, 0), 0, "taken: the library does not write the call eventfd");
    assert_eq!(stat(rig.vid, 0, "guest_notifications_offloaded"), 1);
    assert_eq!(stat(rig.vid, 0, "guest_notifications"), 0);

    // Pending: the next one is suppressed, not offered.
    ring.post(&[rx(0x41000)]).unwrap();
    assert_eq!(rig.enqueue(0, &pattern(60, 2)), 1);
    assert_eq!(OFFERS.load(Ordering::SeqCst), 1);
    assert_eq!(interrupts(&rig, 0), 0);
    assert_eq!(stat(rig.vid, 0, "guest_notifications_suppressed"), 1);

    // The application raises it.
    // SAFETY: a connected device and its ring.
    unsafe { rte_vhost_notify_guest(rig.vid, 0) };
    assert_eq!(interrupts(&rig, 0), 1, "rte_vhost_notify_guest writes the call eventfd");
    assert_eq!(stat(rig.vid, 0, "guest_notifications"), 1);
    assert_eq!(NOTIFIED.load(Ordering::SeqCst), 1, "guest_notified follows the library's interrupt");

    // No longer pending; declined: the library interrupts itself.
    TAKE.store(false, Ordering::SeqCst);
    ring.post(&[rx(0x42000)]).unwrap();
    assert_eq!(rig.enqueue(0, &pattern(60, 3)), 1);
    assert_eq!(OFFERS.load(Ordering::SeqCst), 2, "offered again once raised");
    assert_eq!(interrupts(&rig, 0), 1, "declined: the library writes the call eventfd");
    assert_eq!(stat(rig.vid, 0, "guest_notifications"), 2);
    assert_eq!(stat(rig.vid, 0, "guest_notifications_offloaded"), 1);
    assert_eq!(NOTIFIED.load(Ordering::SeqCst), 2);

    // Invalid ids are ignored.
    // SAFETY: any ids may be passed.
    unsafe {
        rte_vhost_notify_guest(rig.vid, 200);
        rte_vhost_notify_guest(-1, 0);
    }
}

/// The callback may raise the interrupt at once (DPDK's read lock allows
/// it; rvhost's ring lock is exclusive, so the library injects it after the
/// callback returns): no deadlock, one interrupt, nothing left pending.
#[test]
fn guest_notify_may_raise_the_interrupt_from_inside() {
    let _s = serial();
    let (rig, mut ring) = offload_rig("offload-inside");
    TAKE.store(true, Ordering::SeqCst);
    RAISE_INSIDE.store(true, Ordering::SeqCst);
    let (vid, pool) = (rig.vid, rig.pool);
    ring.post(&[rx(0x40000)]).unwrap();
    let moved = within(Duration::from_secs(10), move || {
        let m = mbuf_of(pool, &pattern(60, 1));
        let mut raw = [m.as_ptr()];
        // SAFETY: valid vid, queue and one mbuf.
        let n = unsafe { rte_vhost_enqueue_burst(vid, 0, raw.as_mut_ptr(), 1) };
        m.free();
        n
    });
    assert_eq!(moved, 1);
    assert_eq!(interrupts(&rig, 0), 1);
    assert_eq!(stat(rig.vid, 0, "guest_notifications_offloaded"), 1);
    assert_eq!(stat(rig.vid, 0, "guest_notifications"), 1);
    ring.post(&[rx(0x41000)]).unwrap();
    assert_eq!(rig.enqueue(0, &pattern(60, 2)), 1);
    assert_eq!(OFFERS.load(Ordering::SeqCst), 2, "not left pending: offered again");
    assert_eq!(stat(rig.vid, 0, "guest_notifications_suppressed"), 0);
}

/// No call eventfd (SET_VRING_CALL with the no-fd flag): counted as an error.
#[test]
fn an_interrupt_without_a_call_eventfd_counts_as_an_error() {
    let _s = serial();
    let (rig, mut ring) = offload_rig("offload-nofd");
    assert_eq!(rig.ack(Request::SetVringCall, &VRING_NOFD.to_ne_bytes(), &[]), 0);
    ring.post(&[rx(0x40000)]).unwrap();
    assert_eq!(rig.enqueue(0, &pattern(60, 1)), 1);
    assert_eq!(OFFERS.load(Ordering::SeqCst), 1);
    assert_eq!(stat(rig.vid, 0, "guest_notifications_error"), 1);
    assert_eq!(stat(rig.vid, 0, "guest_notifications"), 0);
    assert_eq!(NOTIFIED.load(Ordering::SeqCst), 0);
}

fn thread_names() -> Vec<String> {
    std::fs::read_dir("/proc/self/task")
        .unwrap()
        .filter_map(|t| std::fs::read_to_string(t.ok()?.path().join("comm")).ok())
        .map(|n| n.trim().to_owned())
        .collect()
}

/// With ASYNC_CONNECT a client's first connection comes from the reconnect
/// thread ("dpdk-vhost-reco", 24.11's name), even when the server is up
/// (without it, `rte_vhost_driver_start` connects and starts no thread).
#[test]
fn an_async_connect_client_connects_from_the_reconnect_thread() {
    let _s = serial();
    eal_init();
    let path = socket_path("async-connect");
    let listener = UnixListener::bind(&path).unwrap();
    listener.set_nonblocking(true).unwrap();
    let cpath = CString::new(path.clone()).unwrap();
    assert!(!thread_names().iter().any(|n| n == "dpdk-vhost-reco"));
    // SAFETY: a valid path and a static ops table.
    unsafe {
        assert_eq!(rte_vhost_driver_register(cpath.as_ptr(), CLIENT | ASYNC_CONNECT), 0);
        assert_eq!(rte_vhost_driver_callback_register(cpath.as_ptr(), &OPS), 0);
        assert_eq!(rte_vhost_driver_start(cpath.as_ptr()), 0);
    }
    let names = thread_names();
    assert!(names.iter().any(|n| n == "dpdk-vhost-reco"), "threads: {names:?}");
    assert!(names.iter().any(|n| n == "dpdk-vhost-evt"), "threads: {names:?}");
    let end = Instant::now() + Duration::from_secs(5);
    let accepted = loop {
        if let Ok((stream, _)) = listener.accept() {
            break Some(stream);
        }
        if Instant::now() > end {
            break None;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(accepted.is_some(), "the reconnect thread connected");
    // SAFETY: a registered path.
    assert_eq!(unsafe { rte_vhost_driver_unregister(cpath.as_ptr()) }, 0);
    let _ = std::fs::remove_file(&path);
}
