//! The state machine alone: messages in, replies and events out, no socket,
//! no EAL, no callback.

use std::os::fd::{AsRawFd, OwnedFd};

use super::*;
use crate::protocol::features::{Feature as F, Features, ProtocolFeature as Pf, ProtocolFeatures};
use crate::protocol::{MemoryRegionDesc, MemoryTable, Message, Request, VringAddr, VringFd, VringState};

const RAM: u64 = 0x10000;

fn memfd(size: u64) -> OwnedFd {
    let fd = nix::sys::memfd::memfd_create(c"t", nix::sys::memfd::MemFdCreateFlag::MFD_CLOEXEC).unwrap();
    nix::unistd::ftruncate(&fd, size as i64).unwrap();
    fd
}

fn eventfd() -> OwnedFd {
    nix::sys::eventfd::EventFd::new().unwrap().into()
}

/// A fresh built-in net device, as a connection starts it.
fn device() -> Device {
    let d = Device::new(7);
    d.reset("test", 0);
    d.setup(true, None);
    d
}

fn offer() -> Offer {
    Offer {
        features: Features::VIRTIO_NET_SUPPORTED,
        protocol_features: ProtocolFeatures::DEFAULT.union(ProtocolFeatures::of(&[Pf::INFLIGHT_SHMFD])),
    }
}

fn send(d: &Device, msg: Message) -> Handled {
    handle(d, offer(), msg, &mut |first| assert!(first.is_empty(), "nothing to do first: {first:?}"))
}

fn ok(d: &Device, msg: Message) -> Vec<Event> {
    let h = send(d, msg);
    assert!(!matches!(h.reply, Reply::Err), "refused: {h:?}");
    h.events
}

fn table() -> Message {
    table_at(0x1000_0000)
}

/// A one-region table whose front-end address is `uaddr`.
fn table_at(uaddr: u64) -> Message {
    let region =
        MemoryRegionDesc { guest_phys_addr: 0, memory_size: RAM, userspace_addr: uaddr, mmap_offset: 0 };
    Message::SetMemTable(MemoryTable { regions: vec![region] }, vec![memfd(RAM)])
}

fn state(index: u32, num: u32) -> VringState {
    VringState { index, num }
}

/// Ring `q` of `size` entries at front-end address `at` (split layout).
fn addr(q: u32, at: u64, size: u64) -> VringAddr {
    VringAddr {
        index: q,
        flags: 0,
        desc_user_addr: 0x1000_0000 + at,
        avail_user_addr: 0x1000_0000 + at + 16 * size,
        used_user_addr: 0x1000_0000 + at + 0x1000,
        log_guest_addr: 0,
    }
}

/// Both rings of the first pair set up, as QEMU does.
fn set_up(d: &Device) -> Vec<Event> {
    ok(d, Message::SetFeatures(Features::of(&[F::VERSION_1])));
    ok(d, table());
    let mut events = Vec::new();
    for q in 0..2 {
        events.extend(ok(d, Message::SetVringNum(state(q, 256))));
        events.extend(ok(d, Message::SetVringBase(state(q, 0))));
        events.extend(ok(d, Message::SetVringAddr(addr(q, 0x4000 * u64::from(q), 256))));
        events.extend(ok(d, Message::SetVringCall(VringFd { index: q, fd: Some(eventfd()) })));
        events.extend(ok(d, Message::SetVringKick(VringFd { index: q, fd: Some(eventfd()) })));
    }
    events
}

#[test]
fn rings_become_ready_and_the_device_starts() {
    let d = device();
    assert!(d.start_due().is_none(), "nothing set up yet");
    let events = set_up(&d);
    assert_eq!(
        events,
        vec![Event::VringState { queue: 0, enable: true }, Event::VringState { queue: 1, enable: true }]
    );
    let start = d.start_due().expect("ready: new_device is due");
    d.started(start, true);
    assert!(d.start_due().is_none(), "started once");
}

#[test]
fn a_ring_that_no_longer_fits_its_memory_becomes_unready() {
    let d = device();
    set_up(&d);
    // 32768 entries at 0x4000 run past the 64 KiB of memory.
    let events = ok(&d, Message::SetVringNum(state(1, 32768)));
    assert_eq!(events, vec![Event::VringState { queue: 1, enable: false }]);
    assert!(d.vq(1).unwrap().lock().ring().is_none());
    let events = ok(&d, Message::SetVringNum(state(1, 256)));
    assert_eq!(
        events,
        vec![Event::VringState { queue: 1, enable: true }],
        "usable again at a size that fits"
    );
}

#[test]
fn the_layout_a_ring_was_checked_for_is_the_one_it_has() {
    let d = device();
    set_up(&d);
    let split = d.vq(0).unwrap().lock().ring().unwrap();
    assert!(!split.is_packed());
    ok(&d, Message::SetFeatures(Features::of(&[F::VERSION_1, F::RING_PACKED])));
    let packed = d.vq(0).unwrap().lock().ring().expect("packed areas fit where split ones did");
    assert!(packed.is_packed());
}

#[test]
fn stopping_a_ring_stops_a_running_device_first() {
    let d = device();
    set_up(&d);
    let start = d.start_due().unwrap();
    d.started(start, true);
    let mut first = Vec::new();
    let h = handle(&d, offer(), Message::GetVringBase(state(0, 0)), &mut |e| first.extend(e));
    assert_eq!(first, vec![Event::Stop], "destroy_device before the ring stops");
    let Reply::Payload(body, fds) = h.reply else { panic!("{h:?}") };
    assert_eq!((body, fds.len()), (state(0, 0).to_bytes().to_vec(), 0));
    assert_eq!(h.events, vec![Event::VringState { queue: 0, enable: false }]);
    send(&d, Message::GetVringBase(state(1, 0)));
}

#[test]
fn only_log_all_changes_while_running() {
    let d = device();
    set_up(&d);
    let start = d.start_due().unwrap();
    d.started(start, true);
    let with_log = Features::of(&[F::VERSION_1, F::LOG_ALL]);
    assert_eq!(ok(&d, Message::SetFeatures(with_log)), vec![Event::FeaturesChanged(with_log)]);
    let h = send(&d, Message::SetFeatures(with_log.union(Features::of(&[F::NET_MRG_RXBUF]))));
    assert!(matches!(h.reply, Reply::Err));
    let h = send(&d, Message::SetFeatures(Features::from_bits(1 << 63)));
    assert!(matches!(h.reply, Reply::Err), "beyond what was offered");
}

#[test]
fn a_packed_position_beyond_the_ring_is_refused() {
    let d = device();
    ok(&d, Message::SetFeatures(Features::of(&[F::VERSION_1, F::RING_PACKED])));
    ok(&d, Message::SetVringNum(state(0, 128)));
    assert!(matches!(send(&d, Message::SetVringBase(state(0, 128 | 1 << 15))).reply, Reply::Err));
    ok(&d, Message::SetVringBase(state(0, 127 | 1 << 15)));
}

#[test]
fn a_vdpa_device_is_told_in_events() {
    let d = device();
    d.setup(true, Some(VdpaId(0x1234)));
    assert_eq!(ok(&d, Message::SetFeatures(Features::of(&[F::VERSION_1]))), vec![Event::VdpaSetFeatures]);
    set_up(&d);
    let conf = d.vdpa_conf_due(false, false).expect("dev_conf due once ready");
    d.vdpa_conf_done(conf, true);
    assert!(d.vdpa_conf_due(false, false).is_none());
    assert!(handle::before(&d, &table()).is_none(), "the same table changes nothing");
    assert_eq!(
        handle::before(&d, &table_at(0x2000_0000)),
        Some(Event::VdpaClose),
        "a new table closes the device first"
    );
    assert_eq!(ok(&d, Message::SendRarp([0; 6])), vec![Event::VdpaMigrationDone]);
}

#[test]
fn a_vdpa_blk_device_is_configured_once_its_last_ring_has_its_call_fd() {
    let d = device();
    d.setup(false, Some(VdpaId(0x1234)));
    set_up(&d);
    let call = |q: u64| Some((Request::SetVringCall, q.to_ne_bytes()));
    for (msg, expected) in [(call(0), vec![Due::NewDevice]), (None, vec![]), (call(1), vec![Due::VdpaConf])] {
        let (req, payload) = msg.map_or((None, [0; 8]), |(r, p)| (Some(r), p));
        let mut due = Vec::new();
        after_message(&d, req, &payload, true, &mut |call| {
            due.push(call);
            true
        });
        assert_eq!(due, expected, "after {req:?}");
    }
}

#[test]
fn a_postcopy_table_is_used_only_once_acked() {
    let d = device();
    ok(&d, Message::SetProtocolFeatures(ProtocolFeatures::of(&[Pf::PAGEFAULT, Pf::REPLY_ACK])));
    let h = send(&d, Message::PostcopyAdvise);
    let Reply::Payload(_, ufd) = h.reply else { return }; // no userfaultfd here
    assert_eq!(ufd.len(), 1);
    ok(&d, Message::PostcopyListen);
    let h = send(&d, table());
    let Reply::PostcopyTable(body, pending) = h.reply else { panic!("{h:?}") };
    let ours = MemoryTable::parse(&body).unwrap();
    assert!(d.mem().is_empty(), "not in use before the front-end's ack");
    d.install_postcopy_table(pending).unwrap();
    assert_eq!(d.mem().regions()[0].host_user_addr, ours.regions[0].userspace_addr);
    assert!(ufd[0].as_raw_fd() >= 0);
}

/// One data ring as QEMU 7.2's cryptodev-vhost-user sets it up: protocol
/// features (STATUS among them) but no SET_VRING_ENABLE and no SET_STATUS.
fn crypto_front_end(d: &Device, enable_first: Option<bool>) {
    ok(d, Message::SetFeatures(Features::of(&[F::VERSION_1, F::PROTOCOL_FEATURES])));
    ok(
        d,
        Message::SetProtocolFeatures(ProtocolFeatures::of(&[Pf::STATUS, Pf::CRYPTO_SESSION, Pf::REPLY_ACK])),
    );
    ok(d, table());
    ok(d, Message::SetVringNum(state(0, 256)));
    ok(d, Message::SetVringBase(state(0, 0)));
    ok(d, Message::SetVringAddr(addr(0, 0, 256)));
    if let Some(en) = enable_first {
        ok(d, Message::SetVringEnable(state(0, u32::from(en))));
    }
    ok(d, Message::SetVringCall(VringFd { index: 0, fd: Some(eventfd()) }));
    ok(d, Message::SetVringKick(VringFd { index: 0, fd: Some(eventfd()) }));
}

#[test]
fn a_crypto_device_starts_without_ring_enable_or_driver_ok() {
    let crypto = |enable_first| {
        let d = Device::new(7);
        d.reset("test", 0);
        d.setup(false, None);
        d.set_crypto(true);
        crypto_front_end(&d, enable_first);
        d
    };
    assert!(crypto(None).start_due().is_some(), "QEMU 7.2's sequence starts a vhost-crypto device");
    assert!(crypto(Some(true)).start_due().is_some(), "22.11's sequence too");
    assert!(crypto(Some(false)).start_due().is_none(), "a ring the front-end disabled stays disabled");
    // DPDK 22.11's rule for every other device: disabled until enabled.
    let other = Device::new(7);
    other.reset("test", 0);
    other.setup(false, None);
    crypto_front_end(&other, None);
    assert!(other.start_due().is_none());
}
