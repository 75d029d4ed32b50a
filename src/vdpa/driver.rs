//! Calls into a vDPA driver: `struct rte_vdpa_device` objects we allocate for
//! drivers, and their `struct rte_vdpa_dev_ops` callbacks.

use std::ffi::{c_char, c_int, CStr};
use std::ptr::NonNull;

use crate::abi::{
    rte_device, rte_vdpa_dev_ops, rte_vdpa_device, rte_vdpa_stat, rte_vdpa_stat_name,
    RTE_VHOST_VDPA_DEVICE_TYPE_NET,
};
use crate::device::{VdpaDriver, VdpaId};

extern "C" {
    fn rte_dev_name(dev: *const rte_device) -> *const c_char;
}

/// A registered vDPA device (the C object drivers hold a pointer to).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct VdpaDevice(NonNull<rte_vdpa_device>);

// SAFETY: the object is created by `alloc` and freed only by `free` after it
// left the registry; the driver ops table it points to is static in drivers.
unsafe impl Send for VdpaDevice {}
// SAFETY: as above; the library only reads the object after registration.
unsafe impl Sync for VdpaDevice {}

/// Why registration was refused.
#[derive(Debug)]
pub enum VdpaError {
    MissingOps,
    DevType,
}

impl std::fmt::Display for VdpaError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            VdpaError::MissingOps => "Some mandatory vDPA ops aren't implemented",
            VdpaError::DevType => "Failed to get vdpa dev type.",
        })
    }
}

impl std::error::Error for VdpaError {}

impl VdpaDevice {
    /// Wraps a pointer the application handed back to us.
    pub fn from_ptr(p: *mut rte_vdpa_device) -> Option<VdpaDevice> {
        NonNull::new(p).map(VdpaDevice)
    }

    pub fn as_ptr(self) -> *mut rte_vdpa_device {
        self.0.as_ptr()
    }

    /// Allocates the device object for `rte_vdpa_register_device`, checking
    /// the mandatory ops and asking the driver for its type.
    ///
    /// # Safety
    /// `rte_dev` and `ops` must be valid for the device's lifetime.
    pub unsafe fn alloc(
        rte_dev: *mut rte_device,
        ops: *mut rte_vdpa_dev_ops,
    ) -> Result<VdpaDevice, VdpaError> {
        // SAFETY: non-NULL checked by the caller; valid per contract.
        let o = unsafe { &*ops };
        if o.get_queue_num.is_none()
            || o.get_features.is_none()
            || o.get_protocol_features.is_none()
            || o.dev_conf.is_none()
            || o.dev_close.is_none()
            || o.set_vring_state.is_none()
            || o.set_features.is_none()
        {
            return Err(VdpaError::MissingOps);
        }
        let raw = Box::into_raw(Box::new(rte_vdpa_device {
            next_tqe_next: std::ptr::null_mut(),
            next_tqe_prev: std::ptr::null_mut(),
            device: rte_dev,
            ops,
            r#type: RTE_VHOST_VDPA_DEVICE_TYPE_NET,
        }));
        if let Some(get_type) = o.get_dev_type {
            // SAFETY: driver callback with the device object it will own.
            if unsafe { get_type(raw, std::ptr::addr_of_mut!((*raw).r#type)) } != 0 {
                // SAFETY: just allocated above, not shared.
                drop(unsafe { Box::from_raw(raw) });
                return Err(VdpaError::DevType);
            }
        }
        // SAFETY: Box::into_raw never returns NULL.
        Ok(VdpaDevice(unsafe { NonNull::new_unchecked(raw) }))
    }

    /// Frees an object made by `alloc` (after it left the registry).
    ///
    /// # Safety
    /// No pointer to the device may be used afterwards.
    pub unsafe fn free(self) {
        // SAFETY: allocated by `alloc` with Box; caller guarantees uniqueness.
        drop(unsafe { Box::from_raw(self.0.as_ptr()) });
    }

    fn obj(&self) -> &rte_vdpa_device {
        // SAFETY: a live object from `alloc` (see the Send/Sync reasoning).
        unsafe { self.0.as_ref() }
    }

    fn ops(&self) -> &rte_vdpa_dev_ops {
        // SAFETY: registered with a valid ops table (checked non-NULL).
        unsafe { &*self.obj().ops }
    }

    pub fn rte_device(&self) -> *mut rte_device {
        self.obj().device
    }

    pub fn device_type(&self) -> u32 {
        self.obj().r#type
    }

    /// The EAL device name (`rte_dev->name`).
    pub fn name(&self) -> String {
        let dev = self.obj().device;
        if dev.is_null() {
            return String::new();
        }
        // SAFETY: a valid rte_device; EAL returns its NUL-terminated name.
        let p = unsafe { rte_dev_name(dev) };
        if p.is_null() {
            return String::new();
        }
        // SAFETY: non-NULL, NUL-terminated, owned by EAL.
        unsafe { CStr::from_ptr(p) }.to_string_lossy().into_owned()
    }

    pub fn get_features(&self) -> Option<u64> {
        let mut v = 0u64;
        // SAFETY: mandatory op, called with our object and a local out-value.
        let rc = unsafe { (self.ops().get_features?)(self.as_ptr(), &mut v) };
        (rc >= 0).then_some(v)
    }
    pub fn get_protocol_features(&self) -> Option<u64> {
        let mut v = 0u64;
        // SAFETY: as above.
        let rc = unsafe { (self.ops().get_protocol_features?)(self.as_ptr(), &mut v) };
        (rc >= 0).then_some(v)
    }
    pub fn get_queue_num(&self) -> Option<u32> {
        let mut v = 0u32;
        // SAFETY: as above.
        let rc = unsafe { (self.ops().get_queue_num?)(self.as_ptr(), &mut v) };
        (rc >= 0).then_some(v)
    }

    fn vid_op(op: Option<unsafe extern "C" fn(c_int) -> c_int>, vid: i32) -> Option<i32> {
        // SAFETY: a driver callback taking a vid.
        op.map(|f| unsafe { f(vid) })
    }
    pub fn dev_conf(&self, vid: i32) -> i32 {
        Self::vid_op(self.ops().dev_conf, vid).unwrap_or(-1)
    }
    pub fn dev_close(&self, vid: i32) {
        Self::vid_op(self.ops().dev_close, vid);
    }
    pub fn set_features(&self, vid: i32) {
        Self::vid_op(self.ops().set_features, vid);
    }
    pub fn migration_done(&self, vid: i32) {
        Self::vid_op(self.ops().migration_done, vid);
    }
    pub fn get_vfio_device_fd(&self, vid: i32) -> Option<i32> {
        Self::vid_op(self.ops().get_vfio_device_fd, vid)
    }
    pub fn set_vring_state(&self, vid: i32, idx: u16, enable: bool) {
        if let Some(f) = self.ops().set_vring_state {
            // SAFETY: driver callback.
            unsafe { f(vid, c_int::from(idx), c_int::from(enable)) };
        }
    }
    /// `get_notify_area(vid, qid)` → (offset, size).
    pub fn get_notify_area(&self, vid: i32, qid: u16) -> Option<(u64, u64)> {
        let f = self.ops().get_notify_area?;
        let (mut off, mut size) = (0u64, 0u64);
        // SAFETY: driver callback with local out-values.
        (unsafe { f(vid, c_int::from(qid), &mut off, &mut size) } >= 0).then_some((off, size))
    }
    pub fn has_notify_area(&self) -> bool {
        self.ops().get_notify_area.is_some() && self.ops().get_vfio_device_fd.is_some()
    }
    /// Reads `buf.len()` bytes of device config space; `None` if unsupported.
    pub fn get_config(&self, vid: i32, buf: &mut [u8]) -> Option<i32> {
        let f = self.ops().get_config?;
        // SAFETY: driver callback writing at most buf.len() bytes.
        Some(unsafe { f(vid, buf.as_mut_ptr(), buf.len() as u32) })
    }
    pub fn set_config(&self, vid: i32, data: &mut [u8], offset: u32, flags: u32) -> Option<i32> {
        let f = self.ops().set_config?;
        // SAFETY: driver callback reading data.len() bytes.
        Some(unsafe { f(vid, data.as_mut_ptr(), offset, data.len() as u32, flags) })
    }
    /// Stats calls, passed through (`-ENOTSUP` where the driver has none).
    ///
    /// # Safety
    /// `names` must be valid for `size` entries (or NULL with size 0).
    pub unsafe fn get_stats_names(&self, names: *mut rte_vdpa_stat_name, size: u32) -> i32 {
        match self.ops().get_stats_names {
            // SAFETY: forwarded caller contract.
            Some(f) => unsafe { f(self.as_ptr(), names, size) },
            None => -libc::ENOTSUP,
        }
    }
    /// # Safety
    /// `stats` must be valid for `n` entries.
    pub unsafe fn get_stats(&self, qid: u16, stats: *mut rte_vdpa_stat, n: u32) -> i32 {
        match self.ops().get_stats {
            // SAFETY: forwarded caller contract.
            Some(f) => unsafe { f(self.as_ptr(), c_int::from(qid), stats, n) },
            None => -libc::ENOTSUP,
        }
    }
    pub fn reset_stats(&self, qid: u16) -> i32 {
        match self.ops().reset_stats {
            // SAFETY: driver callback.
            Some(f) => unsafe { f(self.as_ptr(), c_int::from(qid)) },
            None => -libc::ENOTSUP,
        }
    }
}

impl VdpaDriver for VdpaDevice {
    fn id(&self) -> VdpaId {
        VdpaId(self.as_ptr() as usize)
    }
    fn device_type(&self) -> u32 {
        VdpaDevice::device_type(self)
    }
    fn features(&self) -> Option<u64> {
        self.get_features()
    }
    fn queue_num(&self) -> Option<u32> {
        self.get_queue_num()
    }
    fn dev_conf(&self, vid: i32) -> i32 {
        VdpaDevice::dev_conf(self, vid)
    }
    fn dev_close(&self, vid: i32) {
        VdpaDevice::dev_close(self, vid)
    }
    fn set_vring_state(&self, vid: i32, queue: u16, enable: bool) {
        VdpaDevice::set_vring_state(self, vid, queue, enable)
    }
    fn set_features(&self, vid: i32) {
        VdpaDevice::set_features(self, vid)
    }
    fn migration_done(&self, vid: i32) {
        VdpaDevice::migration_done(self, vid)
    }
    fn get_config(&self, vid: i32, buf: &mut [u8]) -> Option<i32> {
        VdpaDevice::get_config(self, vid, buf)
    }
    fn set_config(&self, vid: i32, data: &mut [u8], offset: u32, flags: u32) -> Option<i32> {
        VdpaDevice::set_config(self, vid, data, offset, flags)
    }
}

/// `struct vring` (linux/virtio_ring.h): a split ring by its parts.
#[repr(C)]
struct vring {
    num: std::ffi::c_uint,
    desc: *mut std::ffi::c_void,
    avail: *mut u8,
    used: *mut u8,
}

/// A vDPA driver's mediated split ring (the software relay during live
/// migration): the device marks buffers used there, and
/// `rte_vdpa_relay_vring_used` copies them to the guest's ring. The
/// driver's own memory: trusted to be the ring it says, read and written
/// only at the offsets its size allows.
#[derive(Debug)]
pub struct MediatedRing {
    num: u16,
    avail: NonNull<u8>,
    used: NonNull<u8>,
}

impl MediatedRing {
    /// # Safety
    /// `p` is null or points to a `struct vring` whose avail ring (with its
    /// used_event) and used ring hold `num` entries, valid, 4-byte aligned
    /// and not moved for as long as the result is used.
    pub unsafe fn from_raw(p: *const std::ffi::c_void) -> Option<MediatedRing> {
        // SAFETY: non-null, a `struct vring` per the caller.
        let v = unsafe { p.cast::<vring>().as_ref()? };
        let num = u16::try_from(v.num).ok().filter(|n| *n > 0 && n.is_power_of_two())?;
        Some(MediatedRing { num, avail: NonNull::new(v.avail)?, used: NonNull::new(v.used)? })
    }

    pub fn size(&self) -> u16 {
        self.num
    }

    /// used->idx (acquire: the entries before it are written).
    pub fn used_idx(&self) -> u16 {
        // SAFETY: offset 2 of the used ring, 2-byte aligned (from_raw's
        // contract); the device updates it concurrently, hence atomic.
        let idx = unsafe { &*self.used.as_ptr().add(2).cast::<std::sync::atomic::AtomicU16>() };
        u16::from_le(idx.load(std::sync::atomic::Ordering::Acquire))
    }

    /// used->ring[i % num]: (id, len).
    pub fn used_elem(&self, i: u16) -> (u32, u32) {
        let at = 4 + 8 * usize::from(i % self.num);
        // SAFETY: entry i % num of a used ring of num entries.
        unsafe {
            let p = self.used.as_ptr().add(at).cast::<u32>();
            (u32::from_le(p.read_volatile()), u32::from_le(p.add(1).read_volatile()))
        }
    }

    /// used_event (avail->ring[num]): where the device wants its next
    /// notification.
    pub fn set_used_event(&self, idx: u16) {
        // SAFETY: the slot after the avail ring's num entries (from_raw's
        // contract), 2-byte aligned.
        unsafe {
            self.avail.as_ptr().add(4 + 2 * usize::from(self.num)).cast::<u16>().write_volatile(idx.to_le())
        }
    }
}
