//! `rte_vdpa.h` and `vdpa_driver.h`: the vDPA device registry, the `vdpa`
//! device class, and the driver-side helpers.
#![allow(clippy::missing_safety_doc)]

use std::ffi::{c_char, c_int, c_uint, c_void};

use super::{cstr_arg, write_out};
use crate::abi::*;
use crate::vdpa::driver::VdpaDevice;
use crate::{device, vdpa};

/// A pointer the application passed, if it names a registered device.
fn registered(dev: *mut rte_vdpa_device) -> Option<VdpaDevice> {
    VdpaDevice::from_ptr(dev).filter(|d| vdpa::is_registered(*d))
}

/// DPDK_23
#[no_mangle]
pub unsafe extern "C" fn rte_vdpa_find_device_by_name(name: *const c_char) -> *mut rte_vdpa_device {
    boundary!(std::ptr::null_mut(), {
        // SAFETY: caller passes a NUL-terminated name or NULL.
        let Some(name) = (unsafe { cstr_arg(name) }) else { return std::ptr::null_mut() };
        vdpa::find_by_name(name).map_or(std::ptr::null_mut(), VdpaDevice::as_ptr)
    })
}

/// DPDK_23
#[no_mangle]
pub unsafe extern "C" fn rte_vdpa_get_rte_device(dev: *mut rte_vdpa_device) -> *mut rte_device {
    boundary!(std::ptr::null_mut(), { registered(dev).map_or(std::ptr::null_mut(), |d| d.rte_device()) })
}

/// DPDK_23
#[no_mangle]
pub unsafe extern "C" fn rte_vdpa_get_features(dev: *mut rte_vdpa_device, features: *mut u64) -> c_int {
    boundary!(-1, {
        match registered(dev).and_then(|d| d.get_features()) {
            // SAFETY: caller's out-pointer (NULL refused).
            Some(f) => unsafe { write_out(features, f) },
            None => -1,
        }
    })
}

/// DPDK_23
#[no_mangle]
pub unsafe extern "C" fn rte_vdpa_get_protocol_features(
    dev: *mut rte_vdpa_device,
    features: *mut u64,
) -> c_int {
    boundary!(-1, {
        match registered(dev).and_then(|d| d.get_protocol_features()) {
            // SAFETY: caller's out-pointer (NULL refused).
            Some(f) => unsafe { write_out(features, f) },
            None => -1,
        }
    })
}

/// DPDK_23
#[no_mangle]
pub unsafe extern "C" fn rte_vdpa_get_queue_num(dev: *mut rte_vdpa_device, queue_num: *mut u32) -> c_int {
    boundary!(-1, {
        match registered(dev).and_then(|d| d.get_queue_num()) {
            // SAFETY: caller's out-pointer (NULL refused).
            Some(n) => unsafe { write_out(queue_num, n) },
            None => -1,
        }
    })
}

/// DPDK_23
#[no_mangle]
pub unsafe extern "C" fn rte_vdpa_get_stats_names(
    dev: *mut rte_vdpa_device,
    stats_names: *mut rte_vdpa_stat_name,
    size: c_uint,
) -> c_int {
    boundary!(-1, {
        let Some(d) = registered(dev) else { return -libc::EINVAL };
        // SAFETY: forwarded caller contract on the array.
        unsafe { d.get_stats_names(stats_names, size) }
    })
}

/// DPDK_23
#[no_mangle]
pub unsafe extern "C" fn rte_vdpa_get_stats(
    dev: *mut rte_vdpa_device,
    qid: u16,
    stats: *mut rte_vdpa_stat,
    n: c_uint,
) -> c_int {
    boundary!(-1, {
        let Some(d) = registered(dev) else { return -libc::EINVAL };
        if stats.is_null() || n == 0 {
            return -libc::EINVAL;
        }
        // SAFETY: forwarded caller contract on the array.
        unsafe { d.get_stats(qid, stats, n) }
    })
}

/// DPDK_23
#[no_mangle]
pub unsafe extern "C" fn rte_vdpa_reset_stats(dev: *mut rte_vdpa_device, qid: u16) -> c_int {
    boundary!(-1, { registered(dev).map_or(-libc::EINVAL, |d| d.reset_stats(qid)) })
}

/// INTERNAL
#[no_mangle]
pub unsafe extern "C" fn rte_vdpa_register_device(
    rte_dev: *mut rte_device,
    ops: *mut rte_vdpa_dev_ops,
) -> *mut rte_vdpa_device {
    boundary!(std::ptr::null_mut(), {
        // SAFETY: the driver keeps both objects alive while registered.
        unsafe { vdpa::register(rte_dev, ops) }.map_or(std::ptr::null_mut(), VdpaDevice::as_ptr)
    })
}

/// INTERNAL
#[no_mangle]
pub unsafe extern "C" fn rte_vdpa_unregister_device(dev: *mut rte_vdpa_device) -> c_int {
    boundary!(-1, {
        match VdpaDevice::from_ptr(dev) {
            Some(d) if vdpa::unregister(d) => 0,
            _ => -1,
        }
    })
}

/// INTERNAL
#[no_mangle]
pub unsafe extern "C" fn rte_vdpa_relay_vring_used(vid: c_int, qid: u16, vring_m: *mut c_void) -> c_int {
    boundary!(-1, {
        let Some(dev) = device::get(vid) else { return -1 };
        // SAFETY: the driver's mediated `struct vring` (or NULL), as the
        // API requires.
        let Some(m) = (unsafe { crate::vdpa::driver::MediatedRing::from_raw(vring_m) }) else { return -1 };
        crate::vdpa::relay_vring_used(dev, qid, &m)
    })
}

/// INTERNAL
#[no_mangle]
pub unsafe extern "C" fn rte_vhost_host_notifier_ctrl(vid: c_int, qid: u16, enable: bool) -> c_int {
    boundary!(-1, {
        let Some(dev) = device::get(vid) else { return -libc::ENODEV };
        crate::vdpa::host_notifier_ctrl(dev, qid, enable)
    })
}

/// `struct rte_dev_iterator` (rte_dev.h): the class iterator reads `device`.
#[repr(C)]
struct rte_dev_iterator {
    dev_str: *const c_char,
    bus_str: *const c_char,
    cls_str: *const c_char,
    bus: *mut c_void,
    cls: *mut c_void,
    device: *mut rte_device,
    class_device: *mut c_void,
}

/// The `vdpa` class's `dev_iterate`: the next vDPA device after `start`
/// that belongs to the EAL device being iterated.
unsafe extern "C" fn vdpa_dev_iterate(
    start: *const c_void,
    _s: *const c_char,
    it: *const c_void,
) -> *mut c_void {
    if it.is_null() {
        return std::ptr::null_mut();
    }
    // SAFETY: EAL passes its live iterator.
    let device = unsafe { (*it.cast::<rte_dev_iterator>()).device };
    let start = VdpaDevice::from_ptr(start.cast_mut().cast());
    vdpa::find_next(start, device).map_or(std::ptr::null_mut(), |d| d.as_ptr().cast())
}

extern "C" fn register_vdpa_class() {
    crate::dpdk::eal::register_class(c"vdpa", vdpa_dev_iterate);
}

// RTE_REGISTER_CLASS(vdpa, ...): runs at load time with EAL's class priority.
#[used]
#[link_section = ".init_array.00120"]
static REGISTER_VDPA_CLASS: extern "C" fn() = register_vdpa_class;
