//! `rte_vhost.h`: sockets, device queries, datapath entry points.
#![allow(clippy::missing_safety_doc)]

use std::ffi::{c_char, c_int, c_uint, c_void};

use super::not_implemented;
use super::types::*;

/// DPDK_23
#[no_mangle]
pub unsafe extern "C" fn rte_vhost_avail_entries(_a0: c_int, _a1: u16) -> u16 {
    not_implemented("rte_vhost_avail_entries", 0)
}

/// DPDK_23
#[no_mangle]
pub unsafe extern "C" fn rte_vhost_clr_inflight_desc_packed(
    _a0: c_int,
    _a1: u16,
    _a2: u16,
) -> c_int {
    not_implemented("rte_vhost_clr_inflight_desc_packed", -1)
}

/// DPDK_23
#[no_mangle]
pub unsafe extern "C" fn rte_vhost_clr_inflight_desc_split(
    _a0: c_int,
    _a1: u16,
    _a2: u16,
    _a3: u16,
) -> c_int {
    not_implemented("rte_vhost_clr_inflight_desc_split", -1)
}

/// DPDK_23
#[no_mangle]
pub unsafe extern "C" fn rte_vhost_dequeue_burst(
    _a0: c_int,
    _a1: u16,
    _a2: *mut rte_mempool,
    _a3: *mut *mut rte_mbuf,
    _a4: u16,
) -> u16 {
    not_implemented("rte_vhost_dequeue_burst", 0)
}

/// DPDK_23
#[no_mangle]
pub unsafe extern "C" fn rte_vhost_driver_attach_vdpa_device(
    _a0: *const c_char,
    _a1: *mut rte_vdpa_device,
) -> c_int {
    not_implemented("rte_vhost_driver_attach_vdpa_device", -1)
}

/// DPDK_23
#[no_mangle]
pub unsafe extern "C" fn rte_vhost_driver_callback_register(
    _a0: *const c_char,
    _a1: *const rte_vhost_device_ops,
) -> c_int {
    not_implemented("rte_vhost_driver_callback_register", -1)
}

/// DPDK_23
#[no_mangle]
pub unsafe extern "C" fn rte_vhost_driver_detach_vdpa_device(_a0: *const c_char) -> c_int {
    not_implemented("rte_vhost_driver_detach_vdpa_device", -1)
}

/// DPDK_23
#[no_mangle]
pub unsafe extern "C" fn rte_vhost_driver_disable_features(_a0: *const c_char, _a1: u64) -> c_int {
    not_implemented("rte_vhost_driver_disable_features", -1)
}

/// DPDK_23
#[no_mangle]
pub unsafe extern "C" fn rte_vhost_driver_enable_features(_a0: *const c_char, _a1: u64) -> c_int {
    not_implemented("rte_vhost_driver_enable_features", -1)
}

/// DPDK_23
#[no_mangle]
pub unsafe extern "C" fn rte_vhost_driver_get_features(_a0: *const c_char, _a1: *mut u64) -> c_int {
    not_implemented("rte_vhost_driver_get_features", -1)
}

/// DPDK_23
#[no_mangle]
pub unsafe extern "C" fn rte_vhost_driver_get_protocol_features(
    _a0: *const c_char,
    _a1: *mut u64,
) -> c_int {
    not_implemented("rte_vhost_driver_get_protocol_features", -1)
}

/// DPDK_23
#[no_mangle]
pub unsafe extern "C" fn rte_vhost_driver_get_queue_num(
    _a0: *const c_char,
    _a1: *mut u32,
) -> c_int {
    not_implemented("rte_vhost_driver_get_queue_num", -1)
}

/// EXPERIMENTAL
#[no_mangle]
pub unsafe extern "C" fn rte_vhost_driver_get_vdpa_dev_type(
    _a0: *const c_char,
    _a1: *mut u32,
) -> c_int {
    not_implemented("rte_vhost_driver_get_vdpa_dev_type", -1)
}

/// DPDK_23
#[no_mangle]
pub unsafe extern "C" fn rte_vhost_driver_get_vdpa_device(
    _a0: *const c_char,
) -> *mut rte_vdpa_device {
    not_implemented("rte_vhost_driver_get_vdpa_device", std::ptr::null_mut())
}

/// DPDK_23
#[no_mangle]
pub unsafe extern "C" fn rte_vhost_driver_register(_a0: *const c_char, _a1: u64) -> c_int {
    not_implemented("rte_vhost_driver_register", -1)
}

/// DPDK_23
#[no_mangle]
pub unsafe extern "C" fn rte_vhost_driver_set_features(_a0: *const c_char, _a1: u64) -> c_int {
    not_implemented("rte_vhost_driver_set_features", -1)
}

/// DPDK_23
#[no_mangle]
pub unsafe extern "C" fn rte_vhost_driver_set_protocol_features(
    _a0: *const c_char,
    _a1: u64,
) -> c_int {
    not_implemented("rte_vhost_driver_set_protocol_features", -1)
}

/// DPDK_23
#[no_mangle]
pub unsafe extern "C" fn rte_vhost_driver_start(_a0: *const c_char) -> c_int {
    not_implemented("rte_vhost_driver_start", -1)
}

/// DPDK_23
#[no_mangle]
pub unsafe extern "C" fn rte_vhost_driver_unregister(_a0: *const c_char) -> c_int {
    not_implemented("rte_vhost_driver_unregister", -1)
}

/// DPDK_23
#[no_mangle]
pub unsafe extern "C" fn rte_vhost_enable_guest_notification(
    _a0: c_int,
    _a1: u16,
    _a2: c_int,
) -> c_int {
    not_implemented("rte_vhost_enable_guest_notification", -1)
}

/// DPDK_23
#[no_mangle]
pub unsafe extern "C" fn rte_vhost_enqueue_burst(
    _a0: c_int,
    _a1: u16,
    _a2: *mut *mut rte_mbuf,
    _a3: u16,
) -> u16 {
    not_implemented("rte_vhost_enqueue_burst", 0)
}

/// DPDK_23
#[no_mangle]
pub unsafe extern "C" fn rte_vhost_extern_callback_register(
    _a0: c_int,
    _a1: *const rte_vhost_user_extern_ops,
    _a2: *mut c_void,
) -> c_int {
    not_implemented("rte_vhost_extern_callback_register", -1)
}

/// DPDK_23
#[no_mangle]
pub unsafe extern "C" fn rte_vhost_get_ifname(_a0: c_int, _a1: *mut c_char, _a2: usize) -> c_int {
    not_implemented("rte_vhost_get_ifname", -1)
}

/// DPDK_23
#[no_mangle]
pub unsafe extern "C" fn rte_vhost_get_log_base(_a0: c_int, _a1: *mut u64, _a2: *mut u64) -> c_int {
    not_implemented("rte_vhost_get_log_base", -1)
}

/// DPDK_23
#[no_mangle]
pub unsafe extern "C" fn rte_vhost_get_mem_table(
    _a0: c_int,
    _a1: *mut *mut rte_vhost_memory,
) -> c_int {
    not_implemented("rte_vhost_get_mem_table", -1)
}

/// EXPERIMENTAL
#[no_mangle]
pub unsafe extern "C" fn rte_vhost_get_monitor_addr(
    _a0: c_int,
    _a1: u16,
    _a2: *mut rte_vhost_power_monitor_cond,
) -> c_int {
    not_implemented("rte_vhost_get_monitor_addr", -1)
}

/// DPDK_23
#[no_mangle]
pub unsafe extern "C" fn rte_vhost_get_mtu(_a0: c_int, _a1: *mut u16) -> c_int {
    not_implemented("rte_vhost_get_mtu", -1)
}

/// DPDK_23
#[no_mangle]
pub unsafe extern "C" fn rte_vhost_get_negotiated_features(_a0: c_int, _a1: *mut u64) -> c_int {
    not_implemented("rte_vhost_get_negotiated_features", -1)
}

/// EXPERIMENTAL
#[no_mangle]
pub unsafe extern "C" fn rte_vhost_get_negotiated_protocol_features(
    _a0: c_int,
    _a1: *mut u64,
) -> c_int {
    not_implemented("rte_vhost_get_negotiated_protocol_features", -1)
}

/// DPDK_23
#[no_mangle]
pub unsafe extern "C" fn rte_vhost_get_numa_node(_a0: c_int) -> c_int {
    not_implemented("rte_vhost_get_numa_node", -1)
}

/// DPDK_23
#[no_mangle]
pub unsafe extern "C" fn rte_vhost_get_vdpa_device(_a0: c_int) -> *mut rte_vdpa_device {
    not_implemented("rte_vhost_get_vdpa_device", std::ptr::null_mut())
}

/// DPDK_23
#[no_mangle]
pub unsafe extern "C" fn rte_vhost_get_vhost_ring_inflight(
    _a0: c_int,
    _a1: u16,
    _a2: *mut rte_vhost_ring_inflight,
) -> c_int {
    not_implemented("rte_vhost_get_vhost_ring_inflight", -1)
}

/// DPDK_23
#[no_mangle]
pub unsafe extern "C" fn rte_vhost_get_vhost_vring(
    _a0: c_int,
    _a1: u16,
    _a2: *mut rte_vhost_vring,
) -> c_int {
    not_implemented("rte_vhost_get_vhost_vring", -1)
}

/// DPDK_23
#[no_mangle]
pub unsafe extern "C" fn rte_vhost_get_vring_base(
    _a0: c_int,
    _a1: u16,
    _a2: *mut u16,
    _a3: *mut u16,
) -> c_int {
    not_implemented("rte_vhost_get_vring_base", -1)
}

/// DPDK_23
#[no_mangle]
pub unsafe extern "C" fn rte_vhost_get_vring_base_from_inflight(
    _a0: c_int,
    _a1: u16,
    _a2: *mut u16,
    _a3: *mut u16,
) -> c_int {
    not_implemented("rte_vhost_get_vring_base_from_inflight", -1)
}

/// DPDK_23
#[no_mangle]
pub unsafe extern "C" fn rte_vhost_get_vring_num(_a0: c_int) -> u16 {
    not_implemented("rte_vhost_get_vring_num", 0)
}

/// DPDK_23
#[no_mangle]
pub unsafe extern "C" fn rte_vhost_log_used_vring(_a0: c_int, _a1: u16, _a2: u64, _a3: u64) {
    not_implemented("rte_vhost_log_used_vring", ())
}

/// DPDK_23
#[no_mangle]
pub unsafe extern "C" fn rte_vhost_log_write(_a0: c_int, _a1: u64, _a2: u64) {
    not_implemented("rte_vhost_log_write", ())
}

/// DPDK_23
#[no_mangle]
pub unsafe extern "C" fn rte_vhost_rx_queue_count(_a0: c_int, _a1: u16) -> u32 {
    not_implemented("rte_vhost_rx_queue_count", 0)
}

/// DPDK_23
#[no_mangle]
pub unsafe extern "C" fn rte_vhost_set_inflight_desc_packed(
    _a0: c_int,
    _a1: u16,
    _a2: u16,
    _a3: u16,
    _a4: *mut u16,
) -> c_int {
    not_implemented("rte_vhost_set_inflight_desc_packed", -1)
}

/// DPDK_23
#[no_mangle]
pub unsafe extern "C" fn rte_vhost_set_inflight_desc_split(
    _a0: c_int,
    _a1: u16,
    _a2: u16,
) -> c_int {
    not_implemented("rte_vhost_set_inflight_desc_split", -1)
}

/// DPDK_23
#[no_mangle]
pub unsafe extern "C" fn rte_vhost_set_last_inflight_io_packed(
    _a0: c_int,
    _a1: u16,
    _a2: u16,
) -> c_int {
    not_implemented("rte_vhost_set_last_inflight_io_packed", -1)
}

/// DPDK_23
#[no_mangle]
pub unsafe extern "C" fn rte_vhost_set_last_inflight_io_split(
    _a0: c_int,
    _a1: u16,
    _a2: u16,
) -> c_int {
    not_implemented("rte_vhost_set_last_inflight_io_split", -1)
}

/// DPDK_23
#[no_mangle]
pub unsafe extern "C" fn rte_vhost_set_vring_base(
    _a0: c_int,
    _a1: u16,
    _a2: u16,
    _a3: u16,
) -> c_int {
    not_implemented("rte_vhost_set_vring_base", -1)
}

/// EXPERIMENTAL
#[no_mangle]
pub unsafe extern "C" fn rte_vhost_slave_config_change(_a0: c_int, _a1: bool) -> c_int {
    not_implemented("rte_vhost_slave_config_change", -1)
}

/// DPDK_23
#[no_mangle]
pub unsafe extern "C" fn rte_vhost_vring_call(_a0: c_int, _a1: u16) -> c_int {
    not_implemented("rte_vhost_vring_call", -1)
}

/// EXPERIMENTAL
#[no_mangle]
pub unsafe extern "C" fn rte_vhost_vring_call_nonblock(_a0: c_int, _a1: u16) -> c_int {
    not_implemented("rte_vhost_vring_call_nonblock", -1)
}

/// DPDK_23
#[no_mangle]
pub unsafe extern "C" fn rte_vhost_vring_stats_get(
    _a0: c_int,
    _a1: u16,
    _a2: *mut rte_vhost_stat,
    _a3: c_uint,
) -> c_int {
    not_implemented("rte_vhost_vring_stats_get", -1)
}

/// DPDK_23
#[no_mangle]
pub unsafe extern "C" fn rte_vhost_vring_stats_get_names(
    _a0: c_int,
    _a1: u16,
    _a2: *mut rte_vhost_stat_name,
    _a3: c_uint,
) -> c_int {
    not_implemented("rte_vhost_vring_stats_get_names", -1)
}

/// DPDK_23
#[no_mangle]
pub unsafe extern "C" fn rte_vhost_vring_stats_reset(_a0: c_int, _a1: u16) -> c_int {
    not_implemented("rte_vhost_vring_stats_reset", -1)
}
