//! The device table (vid → device), each device's control-plane state, its
//! virtqueues, and the application callbacks. `handler` has one function per
//! vhost-user request.

pub mod handler;

pub use crate::protocol::features;

use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};

use parking_lot::Mutex;

use crate::virtqueue::access_lock::AccessGuard;

use crate::ffi::callbacks::{DeviceOps, ExternOps};
use crate::guest::dirty_log::DirtyLog;
use crate::guest::postcopy::Userfault;
use crate::guest::GuestMemory;
use crate::vdpa::driver::{VdpaDevice, DEVICE_TYPE_BLK};
use crate::virtqueue::inflight::InflightRegion;
use crate::virtqueue::{Virtqueue, VqState};
use crate::vlog;

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
    /// The device became ready once (DPDK's VIRTIO_DEV_READY); cleared when
    /// the front-end stops a ring.
    pub ready: bool,
    /// The last SET_FEATURES was refused (DPDK's VIRTIO_DEV_FEATURES_FAILED).
    pub features_failed: bool,
    /// Uses the built-in virtio-net datapath (ready with one queue pair).
    pub builtin_net: bool,
    /// Attached vDPA device.
    pub vdpa_dev: Option<VdpaDevice>,
    pub vdpa_configured: bool,
    /// Application message hooks (`rte_vhost_extern_callback_register`).
    pub extern_ops: ExternOps,
    /// The back-end request channel (SET_SLAVE_REQ_FD).
    pub slave_req: Option<std::os::fd::OwnedFd>,
    /// The dirty-page log (SET_LOG_BASE).
    pub log: Option<Arc<DirtyLog>>,
    /// The inflight region (GET/SET_INFLIGHT_FD).
    pub inflight: Option<Arc<InflightRegion>>,
    /// Postcopy: the userfaultfd (POSTCOPY_ADVISE) and whether the front-end
    /// said POSTCOPY_LISTEN.
    pub postcopy_ufd: Option<Userfault>,
    pub postcopy_listening: bool,
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

    /// Marks rings up to `qid` as in use (DPDK allocates them lazily). A new
    /// ring starts with the device's current memory table, features and log.
    pub fn ensure_vring(&self, qid: u32) {
        let old = self.nr_vring.load(Ordering::Acquire);
        if qid < old {
            return;
        }
        let (mem, features, log) = {
            let st = self.state.lock();
            (Arc::clone(&st.mem), st.features, st.log.clone())
        };
        for vq in &self.vqs[old as usize..=qid as usize] {
            let mut s = vq.lock();
            s.features = features;
            // A ring allocated here has no addresses yet: nothing to translate.
            let _ = s.set_mem(&mem);
            s.log = log.clone();
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

    /// The socket path (log prefix); takes the state lock, so for logs only.
    pub fn ifname(&self) -> String {
        self.state.lock().ifname.clone()
    }

    pub fn socket_flags(&self) -> u64 {
        self.socket_flags.load(Ordering::Relaxed)
    }

    /// Applies the socket's configuration to a new connection's device.
    pub fn setup(&self, builtin_net: bool, vdpa_dev: Option<VdpaDevice>) {
        let mut st = self.state.lock();
        st.builtin_net = builtin_net;
        st.vdpa_dev = vdpa_dev;
    }

    /// DPDK's `vhost_destroy_device_notify`: if the application was told the
    /// device is running, tell it it no longer is. Called with no lock held.
    pub fn destroy_notify(&self, ops: &DeviceOps) {
        let (was_running, vdpa) = {
            let mut st = self.state.lock();
            st.ready = false;
            (std::mem::replace(&mut st.running, false), st.vdpa_dev)
        };
        if was_running {
            if let Some(v) = vdpa {
                v.dev_close(self.vid);
            }
            ops.destroy_device(self.vid);
        }
    }

    /// Fires `vring_state_changed` (no lock held).
    pub fn notify_vring_state(&self, ops: &DeviceOps, idx: u16, enable: bool) {
        let vdpa = self.state.lock().vdpa_dev;
        if let Some(v) = vdpa {
            v.set_vring_state(self.vid, idx, enable);
        }
        ops.vring_state_changed(self.vid, idx, enable);
    }

    /// Calls `new_device` once the device became ready (DPDK: after every
    /// message). A callback returning non-zero leaves the device not running.
    pub fn start_if_ready(&self, ops: &DeviceOps) {
        if self.state.lock().running || !handler::virtio_is_ready(self) {
            return;
        }
        self.state.lock().ready = true;
        let started = ops.new_device(self.vid).is_none_or(|rc| rc == 0);
        if started {
            self.state.lock().running = true;
        } else {
            let ifname = self.state.lock().ifname.clone();
            vlog!(Config, Err, ifname, "application refused the device (new_device failed)");
        }
    }

    /// Configures the attached vDPA device once the rings are ready (DPDK:
    /// after every message; a blk device only once its last ring has its
    /// call fd, signalled by `last_call_for_blk`).
    pub fn configure_vdpa(&self, last_call_for_blk: bool) {
        let (vdpa, configured, ifname) = {
            let st = self.state.lock();
            (st.vdpa_dev, st.vdpa_configured, st.ifname.clone())
        };
        let Some(v) = vdpa else { return };
        if configured || !handler::virtio_is_ready(self) {
            return;
        }
        if v.device_type() == DEVICE_TYPE_BLK && !last_call_for_blk {
            return;
        }
        if v.dev_conf(self.vid) != 0 {
            vlog!(Config, Err, ifname, "failed to configure vDPA device");
        } else {
            self.state.lock().vdpa_configured = true;
        }
    }

    /// `rte_vhost_host_notifier_ctrl`: hands the front-end (or takes back)
    /// the vDPA device's doorbell areas through the back-end channel.
    pub fn host_notifier_ctrl(&self, qid: u16, enable: bool) -> i32 {
        use features::protocol::{HOST_NOTIFIER, SLAVE_REQ, SLAVE_SEND_FD};
        let (vdpa, f, pf) = {
            let st = self.state.lock();
            (st.vdpa_dev, st.features, st.protocol_features)
        };
        let Some(v) = vdpa else { return -libc::ENODEV };
        let needed_f = features::bit(features::VIRTIO_F_VERSION_1)
            | features::bit(features::VHOST_USER_F_PROTOCOL_FEATURES);
        let needed_pf =
            features::bit(SLAVE_REQ) | features::bit(SLAVE_SEND_FD) | features::bit(HOST_NOTIFIER);
        if f & needed_f != needed_f || pf & needed_pf != needed_pf || !v.has_notify_area() {
            return -libc::ENOTSUP;
        }
        let nr = self.nr_vring() as u16;
        let queues = if qid == u16::MAX {
            0..nr
        } else if qid < nr {
            qid..qid + 1
        } else {
            return -libc::EINVAL;
        };
        let Some(vfio_fd) = v.get_vfio_device_fd(self.vid).filter(|fd| *fd >= 0) else {
            return -libc::ENOTSUP;
        };
        let mut rc = 0;
        if enable {
            for q in queues.clone() {
                let Some((offset, size)) = v.get_notify_area(self.vid, q) else {
                    rc = -libc::ENOTSUP;
                    break;
                };
                if self.send_host_notifier(q, Some(vfio_fd), offset, size).is_err() {
                    rc = -libc::EFAULT;
                    break;
                }
            }
            if rc == 0 {
                return 0;
            }
        }
        for q in queues {
            let _ = self.send_host_notifier(q, None, 0, 0);
        }
        rc
    }

    /// VRING_HOST_NOTIFIER_MSG on the back-end channel, waiting for the ack.
    fn send_host_notifier(&self, q: u16, fd: Option<i32>, offset: u64, size: u64) -> Result<(), i32> {
        use crate::protocol::{backend_request, VringArea, VRING_IDX_MASK, VRING_NOFD_MASK};
        let mut index = u64::from(q) & VRING_IDX_MASK;
        if fd.is_none() {
            index |= VRING_NOFD_MASK;
        }
        let area = VringArea { index_and_flags: index, size, offset };
        let fds: Vec<i32> = fd.into_iter().collect();
        self.backend_request(backend_request::VRING_HOST_NOTIFIER_MSG, &area.to_bytes(), &fds, true)
    }

    /// RESET_OWNER: back to the state of a new connection (memory unmapped,
    /// rings and negotiated features cleared).
    pub fn reset_owner(&self) {
        for vq in self.vqs() {
            let mut s = vq.lock();
            *s = VqState { index: s.index, ..Default::default() };
        }
        let mut st = self.state.lock();
        st.features = 0;
        st.protocol_features = 0;
        st.status = 0;
        st.mem = Arc::default();
        st.log = None;
        st.features_failed = false;
    }

    /// Drops rings `keep..` (SET_FEATURES without MQ); `held` holds every
    /// ring's lock, in index order.
    pub fn truncate_vrings(&self, keep: u32, held: &mut Vec<AccessGuard<'_, VqState>>) {
        let nr = self.nr_vring();
        if nr <= keep {
            return;
        }
        for g in held.iter_mut().skip(keep as usize) {
            **g = VqState { index: g.index, ..Default::default() };
        }
        held.truncate(keep as usize);
        self.nr_vring.store(keep, Ordering::Release);
    }

    /// `rte_vhost_log_write`: marks guest pages dirty while logging is on.
    pub fn log_write(&self, gpa: u64, len: u64) {
        let st = self.state.lock();
        if st.features & features::bit(features::VHOST_F_LOG_ALL) != 0 {
            if let Some(log) = &st.log {
                log.mark(gpa, len);
            }
        }
    }

    /// `rte_vhost_log_used_vring`: logs a write to ring `qid`'s used area.
    pub fn log_used_vring(&self, qid: u16, offset: u64, len: u64) {
        let Some(vq) = self.vq(qid) else { return };
        let base = vq.lock().log_guest_addr;
        if base != 0 {
            self.log_write(base.wrapping_add(offset), len);
        }
    }

    /// `rte_vhost_slave_config_change`: tells the front-end the device config
    /// space changed (BACKEND_CONFIG_CHANGE_MSG), waiting for its ack if asked.
    pub fn backend_config_change(&self, need_reply: bool) -> Result<(), i32> {
        self.backend_request(crate::protocol::backend_request::CONFIG_CHANGE_MSG, &[], &[], need_reply)
    }

    /// Sends a request on the back-end channel (SET_SLAVE_REQ_FD) and, if
    /// `need_reply`, waits for the front-end's u64 ack (0 = success).
    fn backend_request(&self, request: u32, body: &[u8], fds: &[i32], need_reply: bool) -> Result<(), i32> {
        use crate::protocol::{Header, FLAG_NEED_REPLY, VERSION};
        let st = self.state.lock();
        let Some(chan) = st.slave_req.as_ref() else {
            return Err(-libc::EINVAL);
        };
        let flags = VERSION | if need_reply { FLAG_NEED_REPLY } else { 0 };
        let header = Header { request, flags, size: body.len() as u32 };
        let fd = std::os::fd::AsFd::as_fd(chan);
        crate::socket::io::send_message(fd, header, body, fds).map_err(|e| {
            vlog!(Config, Err, st.ifname, "failed to send slave message: {e}");
            -libc::EIO
        })?;
        if !need_reply {
            return Ok(());
        }
        match crate::socket::io::read_message(fd) {
            Ok(reply) if reply.payload.len() == 8 && crate::protocol::read_u64(&reply.payload, 0) == 0 => {
                Ok(())
            }
            Ok(_) => Err(-libc::EIO),
            Err(e) => {
                vlog!(Config, Err, st.ifname, "vhost read slave message reply failed: {e}");
                Err(-libc::EIO)
            }
        }
    }

    /// SEND_RARP: the next dequeue burst injects a RARP for `mac`.
    pub fn request_rarp(&self, mac: [u8; 6]) {
        *self.rarp_mac.lock() = mac;
        self.broadcast_rarp.store(true, Ordering::Release);
    }

    /// Resets a recycled slot to a fresh device.
    fn reset(&self, ifname: &str, socket_flags: u64) {
        for vq in self.vqs.iter() {
            let mut s = vq.lock();
            *s = crate::virtqueue::VqState { index: s.index, ..Default::default() };
        }
        self.nr_vring.store(0, Ordering::Release);
        *self.state.lock() = DeviceState { ifname: ifname.to_owned(), ..Default::default() };
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
        if dev.in_use.compare_exchange(false, true, Ordering::AcqRel, Ordering::Acquire).is_ok() {
            dev.reset(ifname, socket_flags);
            return Some(dev);
        }
    }
    None
}

/// DPDK's `vhost_destroy_device`: tells the application (if the device was
/// running), releases guest memory and fds, and frees the vid.
pub fn destroy(dev: &Device, ops: &DeviceOps) {
    dev.destroy_notify(ops);
    dev.reset("", 0);
    dev.in_use.store(false, Ordering::Release);
}
