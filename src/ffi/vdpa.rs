//! `rte_vdpa.h` and `vdpa_driver.h`: the vDPA device registry.
#![allow(clippy::missing_safety_doc)]

use std::ffi::{c_char, c_int, c_uint, c_void};

use super::not_implemented;
use super::types::*;

/// DPDK_23
#[no_mangle]
pub unsafe extern "C" fn rte_vdpa_find_device_by_name(_a0: *const c_char) -> *mut rte_vdpa_device {
    not_implemented("rte_vdpa_find_device_by_name", std::ptr::null_mut())
}

/// DPDK_23
#[no_mangle]
pub unsafe extern "C" fn rte_vdpa_get_features(_a0: *mut rte_vdpa_device, _a1: *mut u64) -> c_int {
    not_implemented("rte_vdpa_get_features", -1)
}

/// DPDK_23
#[no_mangle]
pub unsafe extern "C" fn rte_vdpa_get_protocol_features(
    _a0: *mut rte_vdpa_device,
    _a1: *mut u64,
) -> c_int {
    not_implemented("rte_vdpa_get_protocol_features", -1)
}

/// DPDK_23
#[no_mangle]
pub unsafe extern "C" fn rte_vdpa_get_queue_num(_a0: *mut rte_vdpa_device, _a1: *mut u32) -> c_int {
    not_implemented("rte_vdpa_get_queue_num", -1)
}

/// DPDK_23
#[no_mangle]
pub unsafe extern "C" fn rte_vdpa_get_rte_device(_a0: *mut rte_vdpa_device) -> *mut rte_device {
    not_implemented("rte_vdpa_get_rte_device", std::ptr::null_mut())
}

/// DPDK_23
#[no_mangle]
pub unsafe extern "C" fn rte_vdpa_get_stats(
    _a0: *mut rte_vdpa_device,
    _a1: u16,
    _a2: *mut rte_vdpa_stat,
    _a3: c_uint,
) -> c_int {
    not_implemented("rte_vdpa_get_stats", -1)
}

/// DPDK_23
#[no_mangle]
pub unsafe extern "C" fn rte_vdpa_get_stats_names(
    _a0: *mut rte_vdpa_device,
    _a1: *mut rte_vdpa_stat_name,
    _a2: c_uint,
) -> c_int {
    not_implemented("rte_vdpa_get_stats_names", -1)
}

/// INTERNAL
#[no_mangle]
pub unsafe extern "C" fn rte_vdpa_register_device(
    _a0: *mut rte_device,
    _a1: *mut rte_vdpa_dev_ops,
) -> *mut rte_vdpa_device {
    not_implemented("rte_vdpa_register_device", std::ptr::null_mut())
}

/// INTERNAL
#[no_mangle]
pub unsafe extern "C" fn rte_vdpa_relay_vring_used(
    _a0: c_int,
    _a1: u16,
    _a2: *mut c_void,
) -> c_int {
    not_implemented("rte_vdpa_relay_vring_used", -1)
}

/// DPDK_23
#[no_mangle]
pub unsafe extern "C" fn rte_vdpa_reset_stats(_a0: *mut rte_vdpa_device, _a1: u16) -> c_int {
    not_implemented("rte_vdpa_reset_stats", -1)
}

/// INTERNAL
#[no_mangle]
pub unsafe extern "C" fn rte_vdpa_unregister_device(_a0: *mut rte_vdpa_device) -> c_int {
    not_implemented("rte_vdpa_unregister_device", -1)
}

/// INTERNAL
#[no_mangle]
pub unsafe extern "C" fn rte_vhost_host_notifier_ctrl(_a0: c_int, _a1: u16, _a2: bool) -> c_int {
    not_implemented("rte_vhost_host_notifier_ctrl", -1)
}
