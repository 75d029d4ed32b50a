//! `rte_vdpa_relay_vring_used`, the software relay vDPA drivers run during
//! live migration: the device marks buffers used in a mediated ring of the
//! driver's; the relay copies those entries to the guest's split ring,
//! publishes them and, while migration logging is on, marks the buffers the
//! device could write dirty (direct, chained and indirect). The C tests
//! (`ffi-tests`) run the copy against Debian's library too; the stricter
//! checks here are rvhost's (22.11 trusts the guest's used index and the
//! mediated ring's size).

mod common;

use std::ffi::{c_int, c_uint, c_void};
use std::os::fd::AsRawFd;
use std::sync::{Mutex, MutexGuard};

use common::rig::*;
use common::GuestRam;
use rvhost::testing::mock::{Buf, Layout};
use rvhost::testing::Request;

extern "C" {
    fn rte_vdpa_relay_vring_used(vid: c_int, qid: u16, vring_m: *mut c_void) -> c_int;
}

const SIZE: u16 = 256;

fn serial() -> MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock().unwrap_or_else(|e| e.into_inner())
}

/// `struct vring` (linux/virtio_ring.h).
#[repr(C)]
struct Vring {
    num: c_uint,
    desc: *mut c_void,
    avail: *mut u16,
    used: *mut u16,
}

/// A mediated split ring in the test's memory (the vDPA driver's).
struct Mediated {
    avail: Vec<u16>,
    used: Vec<u32>,
    vring: Vring,
}

impl Mediated {
    fn new(num: u16) -> Box<Mediated> {
        let mut m = Box::new(Mediated {
            avail: vec![0; 3 + usize::from(num)],
            used: vec![0; 1 + 2 * usize::from(num) + 1],
            vring: Vring {
                num: c_uint::from(num),
                desc: std::ptr::null_mut(),
                avail: std::ptr::null_mut(),
                used: std::ptr::null_mut(),
            },
        });
        m.vring.avail = m.avail.as_mut_ptr();
        m.vring.used = m.used.as_mut_ptr().cast();
        m
    }

    /// The device marks `(id, len)` used.
    fn mark_used(&mut self, id: u32, len: u32) {
        let idx = (self.used[0] >> 16) as u16;
        let slot = 1 + 2 * usize::from(idx % self.vring.num as u16);
        self.used[slot] = id;
        self.used[slot + 1] = len;
        let idx = idx.wrapping_add(1);
        self.used[0] = (self.used[0] & 0xffff) | (u32::from(idx) << 16);
    }

    fn used_event(&self) -> u16 {
        self.avail[2 + self.vring.num as usize]
    }

    fn relay(&mut self, vid: c_int, qid: u16) -> c_int {
        // SAFETY: a `struct vring` whose rings hold `num` entries, alive
        // for the call.
        unsafe { rte_vdpa_relay_vring_used(vid, qid, (&mut self.vring as *mut Vring).cast()) }
    }
}

fn rx(gpa: u64) -> Buf {
    Buf { gpa, len: 2048, write: true }
}

/// Entries relayed reach the guest in order, with the mediated ring's
/// lengths; with EVENT_IDX the mediated ring's used_event follows.
#[test]
fn used_entries_are_relayed_to_the_guest() {
    let _s = serial();
    let mut rig = Rig::connect("relay", 0, F_VERSION_1 | F_EVENT_IDX, 0, 1 << 20);
    let mut ring = rig.ring(0, Layout::Split, SIZE, areas_at(0x10000, Layout::Split, SIZE));
    let ids: Vec<u16> = (0..3).map(|k| ring.post(&[rx(0x40000 + 0x1000 * k)]).unwrap()).collect();
    let mut m = Mediated::new(SIZE);
    assert_eq!(m.relay(rig.vid, 0), 0, "nothing used yet");
    for (k, &id) in ids.iter().enumerate() {
        m.mark_used(u32::from(id), 100 + k as u32);
    }
    assert_eq!(m.relay(rig.vid, 0), 3);
    for (k, &id) in ids.iter().enumerate() {
        let u = ring.pop_used().expect("relayed entry");
        assert_eq!((u.id, u.len), (id, 100 + k as u32));
    }
    assert!(ring.pop_used().is_none());
    assert_eq!(m.used_event(), 3, "used_event of the mediated ring follows (EVENT_IDX)");
    assert_eq!(m.relay(rig.vid, 0), 0, "relayed once");

    // Refused: no device, no ring, no mediated ring, a packed ring.
    assert_eq!(m.relay(-1, 0), -1);
    assert_eq!(m.relay(rig.vid, 7), -1);
    // SAFETY: NULL is refused before any access.
    assert_eq!(unsafe { rte_vdpa_relay_vring_used(rig.vid, 0, std::ptr::null_mut()) }, -1);
}

/// While logging is on, the buffers the device could write are marked
/// dirty, through chains and indirect tables; read-only buffers and the
/// indirect table itself are not.
#[test]
fn buffers_the_device_wrote_are_logged() {
    let _s = serial();
    let mut rig = Rig::connect("relaylog", 0, F_VERSION_1, PF_LOG_SHMFD, 1 << 20);
    let log = GuestRam::new(4096);
    let area = [32u64.to_ne_bytes(), 0u64.to_ne_bytes()].concat();
    rig.fe.send(Request::SetLogBase, &area, &[log.fd.as_raw_fd()], false);
    assert!(rig.fe.recv().payload.is_empty());
    assert_eq!(rig.ack(Request::SetFeatures, &(F_VERSION_1 | F_LOG_ALL).to_ne_bytes(), &[]), 0);
    let mut ring = rig.ring(0, Layout::Split, SIZE, areas_at(0x10000, Layout::Split, SIZE));
    let a = ring.post(&[rx(0x40000)]).unwrap();
    let b = ring.post(&[Buf { gpa: 0x70000, len: 64, write: false }, rx(0x41000), rx(0x42000)]).unwrap();
    let c = ring.post_indirect(0x60000, &[rx(0x50000), rx(0x51c00)]).unwrap();
    let mut m = Mediated::new(SIZE);
    for id in [a, b, c] {
        m.mark_used(u32::from(id), 64);
    }
    assert_eq!(m.relay(rig.vid, 0), 3);
    let dirty: Vec<u64> =
        (0..256u64).filter(|p| log.bytes()[(p / 8) as usize] & (1 << (p % 8)) != 0).collect();
    assert_eq!(
        dirty,
        vec![0x40, 0x41, 0x42, 0x50, 0x51, 0x52],
        "exactly the writable buffers' pages (the last one spans two)"
    );
}

/// What 22.11 trusts and rvhost checks: a used id outside the ring, a
/// mediated ring of another size, a mediated index more than a ring ahead
/// of the guest's (which the guest can write). Nothing is published.
#[test]
fn inconsistent_mediated_rings_are_refused() {
    let _s = serial();
    let mut rig = Rig::connect("relaybad", 0, F_VERSION_1, 0, 1 << 20);
    let mut ring = rig.ring(0, Layout::Split, SIZE, areas_at(0x10000, Layout::Split, SIZE));
    ring.post(&[rx(0x40000)]).unwrap();
    let mut m = Mediated::new(SIZE);
    m.mark_used(u32::from(SIZE), 10);
    assert_eq!(m.relay(rig.vid, 0), -1, "a used id outside the ring");
    assert!(ring.pop_used().is_none(), "nothing published");

    let mut small = Mediated::new(SIZE / 2);
    small.mark_used(0, 10);
    assert_eq!(small.relay(rig.vid, 0), -1, "a mediated ring of another size");

    let mut ahead = Mediated::new(SIZE);
    for _ in 0..=SIZE {
        ahead.mark_used(0, 1);
    }
    assert_eq!(ahead.relay(rig.vid, 0), -1, "more than a ring ahead");
    assert!(ring.pop_used().is_none());

    let mut rig = Rig::connect("relaypacked", 0, F_VERSION_1 | F_RING_PACKED, 0, 1 << 20);
    let _packed = rig.ring(0, Layout::Packed, SIZE, areas_at(0x10000, Layout::Packed, SIZE));
    assert_eq!(Mediated::new(SIZE).relay(rig.vid, 0), -1, "a packed ring");
}
