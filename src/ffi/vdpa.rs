//! `rte_vdpa.h` and `vdpa_driver.h`: the vDPA device registry, the `vdpa`
//! device class, and the driver-side helpers.

use std::ffi::{c_char, c_int, c_uint, c_void};

use super::{cstr_arg, write_out};
use crate::abi::*;
use crate::vdpa::driver::VdpaDevice;
use crate::{device, vdpa};

/// A pointer the application passed, if it names a registered device.
fn registered(dev: *mut rte_vdpa_device) -> Option<VdpaDevice> {
    VdpaDevice::from_ptr(dev).filter(|d| vdpa::is_registered(*d))
}

/// Find the device id of a vdpa device from its name
///
/// @param name
///  the vdpa device name
/// @return
///  vDPA device pointer on success, NULL on failure
///
/// # Safety
/// `name` must be NULL or a NUL-terminated string.
///
/// Symbol version: DPDK_23
#[no_mangle]
pub unsafe extern "C" fn rte_vdpa_find_device_by_name(name: *const c_char) -> *mut rte_vdpa_device {
    boundary!(std::ptr::null_mut(), {
        // SAFETY: caller passes a NUL-terminated name or NULL.
        let Some(name) = (unsafe { cstr_arg(name) }) else { return std::ptr::null_mut() };
        vdpa::find_by_name(name).map_or(std::ptr::null_mut(), VdpaDevice::as_ptr)
    })
}

/// Get the generic device from the vdpa device
///
/// @param dev
///  the vdpa device pointer
/// @return
///  generic device pointer on success, NULL on failure
///
/// # Safety
/// `dev` may be any value: only a device registered with
/// rte_vdpa_register_device() is accepted.
///
/// Symbol version: DPDK_23
#[no_mangle]
pub unsafe extern "C" fn rte_vdpa_get_rte_device(dev: *mut rte_vdpa_device) -> *mut rte_device {
    boundary!(std::ptr::null_mut(), { registered(dev).map_or(std::ptr::null_mut(), |d| d.rte_device()) })
}

/// Get the Virtio features supported by the vDPA device
///
/// @param dev
///  vDP device pointer
/// @param features
///  pointer on where the supported features are stored
/// @return
///  0 on success, -1 on failure
///
/// # Safety
/// `dev` may be any value (only a registered device is accepted);
/// `features` must be NULL or valid for writing a `uint64_t`.
///
/// Symbol version: DPDK_23
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

/// Get the Vhost-user protocol features supported by the vDPA device
///
/// @param dev
///  vDP device pointer
/// @param features
///  pointer on where the supported protocol features are stored
/// @return
///  0 on success, -1 on failure
///
/// # Safety
/// `dev` may be any value (only a registered device is accepted);
/// `features` must be NULL or valid for writing a `uint64_t`.
///
/// Symbol version: DPDK_23
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

/// Get number of queue pairs supported by the vDPA device
///
/// @param dev
///  vDP device pointer
/// @param queue_num
///  pointer on where the number of queue is stored
/// @return
///  0 on success, -1 on failure
///
/// # Safety
/// `dev` may be any value (only a registered device is accepted);
/// `queue_num` must be NULL or valid for writing a `uint32_t`.
///
/// Symbol version: DPDK_23
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

/// Retrieve names of statistics of a vDPA device.
///
/// There is an assumption that 'stat_names' and 'stats' arrays are matched
/// by array index: `stats_names[i].name => stats[i].value`
///
/// And the array index is same with id field of 'struct rte_vdpa_stat':
/// `stats[i].id == i`
///
/// @param dev
///  vDPA device pointer
/// @param stats_names
///   array of at least size elements to be filled.
///   If set to NULL, the function returns the required number of elements.
/// @param size
///   The number of elements in stats_names array.
/// @return
///   A negative value on error, otherwise the number of entries filled in the
///   stats name array.
///
/// # Safety
/// `dev` may be any value (only a registered device is accepted);
/// `stats_names` must be NULL or valid for writing `size`
/// `struct rte_vdpa_stat_name` elements (the device's driver fills them).
///
/// Symbol version: DPDK_23
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

/// Retrieve statistics of a vDPA device.
///
/// There is an assumption that 'stat_names' and 'stats' arrays are matched
/// by array index: `stats_names[i].name => stats[i].value`
///
/// And the array index is same with id field of 'struct rte_vdpa_stat':
/// `stats[i].id == i`
///
/// @param dev
///  vDPA device pointer
/// @param qid
///  queue id
/// @param stats
///   A pointer to a table of structure of type rte_vdpa_stat to be filled with
///   device statistics ids and values.
/// @param n
///   The number of elements in stats array.
/// @return
///   A negative value on error, otherwise the number of entries filled in the
///   stats table.
///
/// # Safety
/// `dev` may be any value (only a registered device is accepted); `stats`
/// must be NULL or valid for writing `n` `struct rte_vdpa_stat` elements (the
/// device's driver fills them).
///
/// Symbol version: DPDK_23
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

/// Reset statistics of a vDPA device.
///
/// @param dev
///  vDPA device pointer
/// @param qid
///  queue id
/// @return
///   0 on success, a negative value on error.
///
/// # Safety
/// `dev` may be any value: only a device registered with
/// rte_vdpa_register_device() is accepted.
///
/// Symbol version: DPDK_23
#[no_mangle]
pub unsafe extern "C" fn rte_vdpa_reset_stats(dev: *mut rte_vdpa_device, qid: u16) -> c_int {
    boundary!(-1, { registered(dev).map_or(-libc::EINVAL, |d| d.reset_stats(qid)) })
}

/// Register a vdpa device
///
/// @param rte_dev
///  the generic device pointer
/// @param ops
///  the vdpa device operations
/// @return
///  vDPA device pointer on success, NULL on failure
///
/// # Safety
/// For vDPA drivers only. `rte_dev` must be a valid EAL device and `ops` a
/// valid `struct rte_vdpa_dev_ops`; both are kept by pointer and must stay
/// valid and unchanged until rte_vdpa_unregister_device(). The operations
/// are called from the library's threads.
///
/// Symbol version: INTERNAL
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

/// Unregister a vdpa device
///
/// @param dev
///  vDPA device pointer
/// @return
///  0 on success, -1 on failure
///
/// # Safety
/// For vDPA drivers only. `dev` may be any value: only a registered device is
/// unregistered; the pointer is invalid afterwards.
///
/// Symbol version: INTERNAL
#[no_mangle]
pub unsafe extern "C" fn rte_vdpa_unregister_device(dev: *mut rte_vdpa_device) -> c_int {
    boundary!(-1, {
        match VdpaDevice::from_ptr(dev) {
            Some(d) if vdpa::unregister(d) => 0,
            _ => -1,
        }
    })
}

/// Synchronize the used ring from mediated ring to guest, log dirty
/// page for each writeable buffer, caller should handle the used
/// ring logging before device stop.
///
/// @param vid
///  vhost device id
/// @param qid
///  vhost queue id
/// @param vring_m
///  mediated virtio ring pointer
/// @return
///  number of synced used entries on success, -1 on failure
///
/// # Safety
/// For vDPA drivers only. `vring_m` must be NULL or point to a valid
/// `struct vring` (the mediated ring) whose rings the driver owns and keeps
/// valid during the call.
///
/// Symbol version: INTERNAL
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

/// Enable/Disable host notifier mapping for a vdpa port.
///
/// @param vid
///  vhost device id
/// @param qid
///  vhost queue id, RTE_VHOST_QUEUE_ALL to configure all the device queues
/// @param enable
///  true for host notifier map, false for host notifier unmap
/// @return
///  0 on success, -1 on failure
///
/// # Safety
/// For vDPA drivers only: takes no pointers; any argument values may be
/// passed (invalid ones return a negative value).
///
/// Symbol version: INTERNAL
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
