//! `rte_vhost.h`: sockets, device queries, datapath entry points.
#![allow(clippy::missing_safety_doc)]
// Functions here that are not implemented yet ignore their arguments.
#![allow(unused_variables)]

use std::ffi::{c_int, c_uint};

use super::not_implemented;
use super::types::*;

/// DPDK_23
#[no_mangle]
pub unsafe extern "C" fn rte_vhost_avail_entries(vid: c_int, queue_id: u16) -> u16 {
    not_implemented("rte_vhost_avail_entries", 0)
}

/// DPDK_23
#[no_mangle]
pub unsafe extern "C" fn rte_vhost_dequeue_burst(
    vid: c_int,
    queue_id: u16,
    mbuf_pool: *mut rte_mempool,
    pkts: *mut *mut rte_mbuf,
    count: u16,
) -> u16 {
    not_implemented("rte_vhost_dequeue_burst", 0)
}

/// DPDK_23
#[no_mangle]
pub unsafe extern "C" fn rte_vhost_enable_guest_notification(
    vid: c_int,
    queue_id: u16,
    enable: c_int,
) -> c_int {
    not_implemented("rte_vhost_enable_guest_notification", -1)
}

/// DPDK_23
#[no_mangle]
pub unsafe extern "C" fn rte_vhost_enqueue_burst(
    vid: c_int,
    queue_id: u16,
    pkts: *mut *mut rte_mbuf,
    count: u16,
) -> u16 {
    not_implemented("rte_vhost_enqueue_burst", 0)
}

/// EXPERIMENTAL
#[no_mangle]
pub unsafe extern "C" fn rte_vhost_get_monitor_addr(
    vid: c_int,
    queue_id: u16,
    pmc: *mut rte_vhost_power_monitor_cond,
) -> c_int {
    not_implemented("rte_vhost_get_monitor_addr", -1)
}

/// DPDK_23
#[no_mangle]
pub unsafe extern "C" fn rte_vhost_rx_queue_count(vid: c_int, qid: u16) -> u32 {
    not_implemented("rte_vhost_rx_queue_count", 0)
}

/// DPDK_23
#[no_mangle]
pub unsafe extern "C" fn rte_vhost_vring_call(vid: c_int, vring_idx: u16) -> c_int {
    not_implemented("rte_vhost_vring_call", -1)
}

/// EXPERIMENTAL
#[no_mangle]
pub unsafe extern "C" fn rte_vhost_vring_call_nonblock(vid: c_int, vring_idx: u16) -> c_int {
    not_implemented("rte_vhost_vring_call_nonblock", -1)
}

/// DPDK_23
#[no_mangle]
pub unsafe extern "C" fn rte_vhost_vring_stats_get(
    vid: c_int,
    queue_id: u16,
    stats: *mut rte_vhost_stat,
    n: c_uint,
) -> c_int {
    not_implemented("rte_vhost_vring_stats_get", -1)
}

/// DPDK_23
#[no_mangle]
pub unsafe extern "C" fn rte_vhost_vring_stats_get_names(
    vid: c_int,
    queue_id: u16,
    name: *mut rte_vhost_stat_name,
    size: c_uint,
) -> c_int {
    not_implemented("rte_vhost_vring_stats_get_names", -1)
}

/// DPDK_23
#[no_mangle]
pub unsafe extern "C" fn rte_vhost_vring_stats_reset(vid: c_int, queue_id: u16) -> c_int {
    not_implemented("rte_vhost_vring_stats_reset", -1)
}
