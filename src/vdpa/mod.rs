//! The vDPA device registry (`rte_vdpa_register_device` & co.) and the
//! `vdpa` device class through which EAL iterates them (`class=vdpa`).

use parking_lot::Mutex;

pub mod driver;

use crate::abi::{rte_device, rte_vdpa_dev_ops};
use crate::vlog;
use driver::{VdpaDevice, VdpaError};

static DEVICES: Mutex<Vec<VdpaDevice>> = Mutex::new(Vec::new());

/// Registers a driver's device; `None` if mandatory ops are missing, the
/// name is taken, or the driver cannot tell its type.
///
/// # Safety
/// `rte_dev` and `ops` must stay valid until the device is unregistered.
pub unsafe fn register(rte_dev: *mut rte_device, ops: *mut rte_vdpa_dev_ops) -> Option<VdpaDevice> {
    if rte_dev.is_null() || ops.is_null() {
        return None;
    }
    let mut devices = DEVICES.lock();
    // SAFETY: forwarded caller contract.
    let dev = match unsafe { VdpaDevice::alloc(rte_dev, ops) } {
        Ok(d) => d,
        Err(e) => {
            let why = match e {
                VdpaError::MissingOps => "Some mandatory vDPA ops aren't implemented",
                VdpaError::DevType => "Failed to get vdpa dev type.",
            };
            vlog!(Config, Err, "vdpa", "{why}");
            return None;
        }
    };
    let name = dev.name();
    if devices.iter().any(|d| d.name() == name) {
        // SAFETY: never published.
        unsafe { dev.free() };
        return None;
    }
    devices.push(dev);
    Some(dev)
}

/// Unregisters and frees a device; false if it was not registered.
pub fn unregister(dev: VdpaDevice) -> bool {
    let mut devices = DEVICES.lock();
    let Some(i) = devices.iter().position(|d| *d == dev) else { return false };
    devices.remove(i);
    // SAFETY: removed from the registry; per DPDK's contract the driver does
    // not use the object after unregistering it.
    unsafe { dev.free() };
    true
}

pub fn find_by_name(name: &str) -> Option<VdpaDevice> {
    DEVICES.lock().iter().copied().find(|d| d.name() == name)
}

/// Whether `dev` is currently registered.
pub fn is_registered(dev: VdpaDevice) -> bool {
    DEVICES.lock().contains(&dev)
}

/// The registered device after `start` (or the first) whose EAL device is
/// `rte_dev`: the class iterator.
pub fn find_next(start: Option<VdpaDevice>, rte_dev: *mut rte_device) -> Option<VdpaDevice> {
    let devices = DEVICES.lock();
    let from = match start {
        Some(s) => devices.iter().position(|d| *d == s)? + 1,
        None => 0,
    };
    devices[from..].iter().copied().find(|d| d.rte_device() == rte_dev)
}
