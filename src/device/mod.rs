//! Vhost devices: the device table (vid → device), each device's
//! control-plane state and rings, and the vhost-user state machine
//! (`handle`: a decoded message in, a reply and the events it caused out).
//!
//! Nothing here does I/O or calls the application or a vDPA driver: the
//! callbacks are traits (`events`) that the connection (`socket`) invokes
//! with the `Event`s a message produced, once `handle` has returned and so
//! released every lock. A driver that calls back into the library from a
//! callback therefore never finds a lock held.

mod context;
pub mod events;
mod handle;
mod iommu;
mod lifecycle;
mod memory;
mod misses;
mod negotiate;
mod vring;

use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};

use parking_lot::Mutex;

use crate::guest::dirty_log::DirtyLog;
use crate::guest::iotlb::{Iotlb, IotlbView};
use crate::guest::postcopy::Userfault;
use crate::guest::GuestMemory;
use crate::protocol::features::{Feature, Features, ProtocolFeature, ProtocolFeatures};
use crate::virtqueue::access_lock::AccessGuard;
use crate::virtqueue::inflight::InflightRegion;
use crate::virtqueue::{Virtqueue, VqState};

pub use context::{Offer, Reply};
pub use events::{BackendChannel, ChannelError, DeviceEvents, Event, VdpaDriver, VdpaId};
pub use handle::{admit, handle, Handled};
pub use lifecycle::{after_message, Due};
pub use memory::PostcopyError;

/// `RTE_MAX_VHOST_DEVICE`: vids are 0..1024.
pub const MAX_DEVICES: usize = 1024;
/// DPDK's `VHOST_MAX_VRING`: queue ids are 0..256 (128 queue pairs).
pub const MAX_VRING: usize = 256;

/// Virtio device status bits (SET_STATUS).
pub mod status {
    pub const ACKNOWLEDGE: u8 = 1;
    pub const DRIVER: u8 = 2;
    pub const DRIVER_OK: u8 = 4;
    pub const FEATURES_OK: u8 = 8;
    pub const DEVICE_NEED_RESET: u8 = 0x40;
    pub const FAILED: u8 = 0x80;
}

/// Control-plane state of a device: changed by its connection's messages,
/// read by the API getters, never touched by the datapath.
#[derive(Debug, Default)]
struct DeviceState {
    /// The socket path, used as the log prefix (DPDK's `dev->ifname`).
    ifname: String,
    /// Negotiated virtio features (SET_FEATURES).
    features: Features,
    protocol_features: ProtocolFeatures,
    /// Virtio device status (SET_STATUS).
    status: u8,
    mtu: u16,
    /// The current memory table (each ring holds a clone).
    mem: Arc<GuestMemory>,
    /// Behind a virtual IOMMU: the mappings the front-end sent (IOTLB_MSG);
    /// emptied with each new memory table, as 22.11 does.
    iotlb: Iotlb,
    /// `new_device` has been called and `destroy_device` not yet.
    running: bool,
    /// The device became ready once (DPDK's VIRTIO_DEV_READY); cleared when
    /// the front-end stops a ring.
    ready: bool,
    /// The last SET_FEATURES was refused (DPDK's VIRTIO_DEV_FEATURES_FAILED).
    features_failed: bool,
    /// Uses the built-in virtio-net datapath (ready with one queue pair).
    builtin_net: bool,
    /// Served by vhost-crypto (`rte_vhost_crypto_driver_start`): QEMU's
    /// cryptodev-vhost-user never enables its rings nor sets DRIVER_OK, so
    /// a ring it never enabled or disabled is enabled once kicked, and
    /// DRIVER_OK is not awaited (docs/vhost-crypto.md).
    crypto: bool,
    /// The attached vDPA device and whether `dev_conf` succeeded.
    vdpa: Option<VdpaId>,
    vdpa_configured: bool,
    /// The back-end request channel (SET_SLAVE_REQ_FD).
    backend: Option<Arc<dyn BackendChannel>>,
    /// The dirty-page log (SET_LOG_BASE).
    log: Option<Arc<DirtyLog>>,
    /// The inflight region (GET/SET_INFLIGHT_FD).
    inflight: Option<Arc<InflightRegion>>,
    /// Postcopy: the userfaultfd (POSTCOPY_ADVISE) and whether the front-end
    /// said POSTCOPY_LISTEN.
    postcopy_ufd: Option<Userfault>,
    postcopy_listening: bool,
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
    state: Mutex<DeviceState>,
    /// `rte_vhost_driver_register` flags of the socket the device came from;
    /// constant for the device's life (EXTBUF/LINEARBUF/compliant offloads/stats).
    socket_flags: AtomicU64,
    /// SEND_RARP asked for a RARP to be injected into the next dequeue burst.
    broadcast_rarp: AtomicBool,
    rarp_mac: Mutex<[u8; 6]>,
    /// IOTLB misses asked for and the channel they go out on (bursts only
    /// try this lock; never held while taking another).
    iotlb_asks: Mutex<iommu::MissAsker>,
    /// The newest IOTLB view and its generation, which bursts adopt when
    /// theirs is older (IOTLB updates do not lock the rings).
    iotlb_latest: Mutex<Option<Arc<IotlbView>>>,
    iotlb_generation: AtomicU64,
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
            iotlb_asks: Mutex::new(Default::default()),
            iotlb_latest: Mutex::new(None),
            iotlb_generation: AtomicU64::new(0),
        }
    }

    pub fn vid(&self) -> i32 {
        self.vid
    }

    pub fn nr_vring(&self) -> u32 {
        self.nr_vring.load(Ordering::Acquire)
    }

    /// Marks rings up to `qid` as in use (DPDK allocates them lazily). A new
    /// ring starts with the device's current memory table, features and log.
    pub fn ensure_vring(&self, qid: u32) {
        let old = self.nr_vring.load(Ordering::Acquire);
        if qid < old || qid as usize >= MAX_VRING {
            return;
        }
        let ((mem, view), features, log) = {
            let st = self.state.lock();
            (self.publish(st.translation()), st.features.bits(), st.log.clone())
        };
        for vq in &self.vqs[old as usize..=qid as usize] {
            let mut s = vq.lock();
            s.set_log(log.clone());
            // A ring allocated here has no addresses yet: nothing to translate.
            let _ = s.set_features(features, &mem, view.clone());
        }
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

    /// Every ring in use, locked, in index order.
    fn lock_rings(&self) -> Vec<AccessGuard<'_, VqState>> {
        self.vqs().iter().map(|vq| vq.lock()).collect()
    }

    /// The socket path (log prefix).
    pub fn ifname(&self) -> String {
        self.state.lock().ifname.clone()
    }

    pub fn socket_flags(&self) -> u64 {
        self.socket_flags.load(Ordering::Relaxed)
    }

    /// The negotiated features' bits (for the C API; `has_feature` tests one).
    pub fn features(&self) -> u64 {
        self.state.lock().features.bits()
    }

    pub fn has_feature(&self, f: Feature) -> bool {
        self.state.lock().features.has(f)
    }

    pub fn protocol_features(&self) -> ProtocolFeatures {
        self.state.lock().protocol_features
    }

    pub fn has_protocol_feature(&self, f: ProtocolFeature) -> bool {
        self.protocol_features().has(f)
    }

    pub fn status(&self) -> u8 {
        self.state.lock().status
    }

    /// The MTU the front-end set, once the device is ready (`None` before).
    pub fn mtu(&self) -> Option<u16> {
        let st = self.state.lock();
        st.ready.then_some(st.mtu)
    }

    /// The current memory table.
    pub fn mem(&self) -> Arc<GuestMemory> {
        Arc::clone(&self.state.lock().mem)
    }

    /// The dirty log's (our address, size), or (0, 0).
    pub fn log_area(&self) -> (u64, u64) {
        self.state.lock().log.as_ref().map_or((0, 0), |l| (l.base(), l.size()))
    }

    /// The attached vDPA device.
    pub fn vdpa(&self) -> Option<VdpaId> {
        self.state.lock().vdpa
    }

    /// The back-end request channel, if the front-end gave one.
    pub fn backend(&self) -> Option<Arc<dyn BackendChannel>> {
        self.state.lock().backend.clone()
    }

    /// SET_SLAVE_REQ_FD: the connection made a channel of the fd.
    pub fn set_backend(&self, channel: Arc<dyn BackendChannel>) {
        self.state.lock().backend = Some(Arc::clone(&channel));
        self.set_miss_channel(channel);
    }

    /// Applies the socket's configuration to a new connection's device.
    pub fn setup(&self, builtin_net: bool, vdpa: Option<VdpaId>) {
        let mut st = self.state.lock();
        st.builtin_net = builtin_net;
        st.vdpa = vdpa;
    }

    /// Marks a new connection's device as served by vhost-crypto.
    pub fn set_crypto(&self, crypto: bool) {
        self.state.lock().crypto = crypto;
    }

    pub fn is_crypto(&self) -> bool {
        self.state.lock().crypto
    }

    /// `rte_vhost_log_write`: marks guest pages dirty while logging is on.
    pub fn log_write(&self, gpa: u64, len: u64) {
        let st = self.state.lock();
        if st.features.has(Feature::LOG_ALL) {
            if let Some(log) = &st.log {
                log.mark(gpa, len);
            }
        }
    }

    /// `rte_vhost_log_used_vring`: logs a write to ring `qid`'s used area.
    pub fn log_used_vring(&self, qid: u16, offset: u64, len: u64) {
        let Some(vq) = self.vq(qid) else { return };
        let base = vq.lock().log_guest_addr();
        if base != 0 {
            self.log_write(base.wrapping_add(offset), len);
        }
    }

    /// `rte_vhost_slave_config_change`: tells the front-end the device config
    /// space changed (BACKEND_CONFIG_CHANGE_MSG), waiting for its ack if asked.
    pub fn backend_config_change(&self, need_reply: bool) -> Result<(), ChannelError> {
        let chan = self.backend().ok_or(ChannelError::Absent)?;
        chan.request(crate::protocol::backend_request::CONFIG_CHANGE_MSG, &[], &[], need_reply)
    }

    /// SEND_RARP: the next dequeue burst injects a RARP for `mac`.
    pub fn request_rarp(&self, mac: [u8; 6]) {
        *self.rarp_mac.lock() = mac;
        self.broadcast_rarp.store(true, Ordering::Release);
    }

    /// Whether a RARP waits to be injected (`take_rarp` takes it).
    #[inline(always)]
    pub fn rarp_requested(&self) -> bool {
        self.broadcast_rarp.load(Ordering::Acquire)
    }

    /// The MAC of a RARP to inject, once (the next dequeue burst).
    #[inline]
    pub fn take_rarp(&self) -> Option<[u8; 6]> {
        if self.rarp_requested()
            && self.broadcast_rarp.compare_exchange(true, false, Ordering::AcqRel, Ordering::Relaxed).is_ok()
        {
            return Some(*self.rarp_mac.lock());
        }
        None
    }

    /// Resets a recycled slot to a fresh device.
    fn reset(&self, ifname: &str, socket_flags: u64) {
        for vq in self.vqs.iter() {
            vq.lock().reset();
        }
        self.nr_vring.store(0, Ordering::Release);
        *self.state.lock() = DeviceState { ifname: ifname.to_owned(), ..Default::default() };
        self.socket_flags.store(socket_flags, Ordering::Relaxed);
        self.broadcast_rarp.store(false, Ordering::Relaxed);
        *self.rarp_mac.lock() = [0; 6];
        *self.iotlb_asks.lock() = iommu::MissAsker { ifname: ifname.to_owned(), ..Default::default() };
        *self.iotlb_latest.lock() = None;
        self.iotlb_generation.store(0, Ordering::Release);
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
        if dev.in_use.compare_exchange(false, true, Ordering::AcqRel, Ordering::Acquire).is_ok() {
            dev.reset(ifname, socket_flags);
            return Some(dev);
        }
    }
    None
}

/// Releases guest memory and fds and frees the vid (after `stop`).
pub fn free(dev: &Device) {
    dev.reset("", 0);
    dev.in_use.store(false, Ordering::Release);
}

#[cfg(test)]
mod tests;
