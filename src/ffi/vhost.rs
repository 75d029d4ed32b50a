//! `rte_vhost.h`: sockets, device queries, datapath entry points.
#![allow(clippy::missing_safety_doc)]

use std::ffi::{c_int, c_uint};

use super::not_implemented;
use super::types::*;

/// DPDK_23
#[no_mangle]
pub unsafe extern "C" fn rte_vhost_avail_entries(_a0: c_int, _a1: u16) -> u16 {
    not_implemented("rte_vhost_avail_entries", 0)
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
pub unsafe extern "C" fn rte_vhost_enable_guest_notification(_a0: c_int, _a1: u16, _a2: c_int) -> c_int {
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
pub unsafe extern "C" fn rte_vhost_rx_queue_count(_a0: c_int, _a1: u16) -> u32 {
    not_implemented("rte_vhost_rx_queue_count", 0)
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
