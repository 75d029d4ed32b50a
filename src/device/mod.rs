//! The device table (vid → device), each device's control-plane state, its
//! virtqueues, and the application callbacks. `handler` has one function per
//! vhost-user request.

pub mod features;

use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};

use parking_lot::Mutex;

use crate::memory::GuestMemory;
use crate::virtqueue::Virtqueue;

/// `RTE_MAX_VHOST_DEVICE`: vids are 0..1024.
pub const MAX_DEVICES: usize = 1024;
/// DPDK's `VHOST_MAX_VRING`: queue ids are 0..256 (128 queue pairs).
pub const MAX_VRING: usize = 256;

/// A vhost device id as the C API hands it out.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Vid(pub i32);

/// Control-plane state of a device: touched by the message handler and the
/// API getters, never by the datapath.
#[derive(Debug, Default)]
pub struct DeviceState {
    /// The socket path, used as the log prefix (DPDK's `dev->ifname`).
    pub ifname: String,
    /// Negotiated virtio features (SET_FEATURES).
    pub features: u64,
    pub protocol_features: u64,
    /// Virtio device status (SET_STATUS).
    pub status: u8,
    pub mtu: u16,
    /// The current memory table (each ring holds a clone).
    pub mem: Arc<GuestMemory>,
    /// `new_device` has been called and `destroy_device` not yet.
    pub running: bool,
    /// Features have been set at least once (DPDK's VIRTIO_DEV_FEATURES_FAILED
    /// is the opposite case).
    pub features_set: bool,
}

/// One vhost device. Slots of the table are allocated once and reused, so a
/// `&'static Device` stays valid even if an application races a burst with
/// `destroy_device` (the ring is then simply not ready).
#[derive(Debug)]
pub struct Device {
    vid: i32,
    in_use: AtomicBool,
    /// Number of rings the front-end has touched (DPDK's `nr_vring`).
    nr_vring: AtomicU32,
    vqs: Box<[Virtqueue]>,
    pub state: Mutex<DeviceState>,
    /// `rte_vhost_driver_register` flags of the socket the device came from;
    /// constant for the device's life (EXTBUF/LINEARBUF/compliant offloads/stats).
    pub socket_flags: AtomicU64,
    /// SEND_RARP asked for a RARP to be injected into the next dequeue burst.
    pub broadcast_rarp: AtomicBool,
    pub rarp_mac: Mutex<[u8; 6]>,
}

impl Device {
    fn new(vid: i32) -> Device {
        Device {
            vid,
            in_use: AtomicBool::new(false),
            nr_vring: AtomicU32::new(0),
            vqs: (0..MAX_VRING as u16).map(Virtqueue::new).collect(),
            state: Mutex::new(DeviceState::default()),
            socket_flags: AtomicU64::new(0),
            broadcast_rarp: AtomicBool::new(false),
            rarp_mac: Mutex::new([0; 6]),
        }
    }

    pub fn vid(&self) -> i32 {
        self.vid
    }

    pub fn nr_vring(&self) -> u32 {
        self.nr_vring.load(Ordering::Acquire)
    }

    /// Marks rings up to `qid` as in use (DPDK allocates them lazily).
    pub fn ensure_vring(&self, qid: u32) {
        self.nr_vring.fetch_max(qid + 1, Ordering::AcqRel);
    }

    /// The ring `qid` if the front-end has set it up (`qid < nr_vring`).
    #[inline]
    pub fn vq(&self, qid: u16) -> Option<&Virtqueue> {
        if u32::from(qid) < self.nr_vring.load(Ordering::Acquire) {
            self.vqs.get(usize::from(qid))
        } else {
            None
        }
    }

    /// All rings in use.
    pub fn vqs(&self) -> &[Virtqueue] {
        &self.vqs[..self.nr_vring() as usize]
    }

    pub fn socket_flags(&self) -> u64 {
        self.socket_flags.load(Ordering::Relaxed)
    }

    /// Resets a recycled slot to a fresh device.
    fn reset(&self, ifname: &str, socket_flags: u64) {
        for vq in self.vqs.iter() {
            let mut s = vq.lock();
            *s = crate::virtqueue::VqState {
                index: s.index,
                ..Default::default()
            };
        }
        self.nr_vring.store(0, Ordering::Release);
        *self.state.lock() = DeviceState {
            ifname: ifname.to_owned(),
            ..Default::default()
        };
        self.socket_flags.store(socket_flags, Ordering::Relaxed);
        self.broadcast_rarp.store(false, Ordering::Relaxed);
        *self.rarp_mac.lock() = [0; 6];
    }
}

static DEVICES: [OnceLock<Device>; MAX_DEVICES] = [const { OnceLock::new() }; MAX_DEVICES];

/// The device behind `vid`, if that vid is currently allocated.
#[inline]
pub fn get(vid: i32) -> Option<&'static Device> {
    let slot = DEVICES.get(usize::try_from(vid).ok()?)?;
    slot.get().filter(|d| d.in_use.load(Ordering::Acquire))
}

/// Allocates a vid for a new connection (DPDK's `vhost_new_device`).
pub fn allocate(ifname: &str, socket_flags: u64) -> Option<&'static Device> {
    for (i, slot) in DEVICES.iter().enumerate() {
        let dev = slot.get_or_init(|| Device::new(i as i32));
        if dev
            .in_use
            .compare_exchange(false, true, Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
        {
            dev.reset(ifname, socket_flags);
            return Some(dev);
        }
    }
    None
}

/// Returns the vid to the free pool (after `destroy_device`).
pub fn release(dev: &Device) {
    dev.reset("", 0);
    dev.in_use.store(false, Ordering::Release);
}
