//! `rte_vhost_async.h`: the DMA-offloaded datapath.
#![allow(clippy::missing_safety_doc)]

use std::ffi::c_int;

use super::not_implemented;
use super::types::*;

/// EXPERIMENTAL
#[no_mangle]
pub unsafe extern "C" fn rte_vhost_async_channel_register(_a0: c_int, _a1: u16) -> c_int {
    not_implemented("rte_vhost_async_channel_register", -1)
}

/// EXPERIMENTAL
#[no_mangle]
pub unsafe extern "C" fn rte_vhost_async_channel_register_thread_unsafe(_a0: c_int, _a1: u16) -> c_int {
    not_implemented("rte_vhost_async_channel_register_thread_unsafe", -1)
}

/// EXPERIMENTAL
#[no_mangle]
pub unsafe extern "C" fn rte_vhost_async_channel_unregister(_a0: c_int, _a1: u16) -> c_int {
    not_implemented("rte_vhost_async_channel_unregister", -1)
}

/// EXPERIMENTAL
#[no_mangle]
pub unsafe extern "C" fn rte_vhost_async_channel_unregister_thread_unsafe(_a0: c_int, _a1: u16) -> c_int {
    not_implemented("rte_vhost_async_channel_unregister_thread_unsafe", -1)
}

/// EXPERIMENTAL
#[no_mangle]
pub unsafe extern "C" fn rte_vhost_async_dma_configure(_a0: i16, _a1: u16) -> c_int {
    not_implemented("rte_vhost_async_dma_configure", -1)
}

/// EXPERIMENTAL
#[no_mangle]
pub unsafe extern "C" fn rte_vhost_async_dma_unconfigure(_a0: i16, _a1: u16) -> c_int {
    not_implemented("rte_vhost_async_dma_unconfigure", -1)
}

/// EXPERIMENTAL
#[no_mangle]
pub unsafe extern "C" fn rte_vhost_async_get_inflight(_a0: c_int, _a1: u16) -> c_int {
    not_implemented("rte_vhost_async_get_inflight", -1)
}

/// EXPERIMENTAL
#[no_mangle]
pub unsafe extern "C" fn rte_vhost_async_get_inflight_thread_unsafe(_a0: c_int, _a1: u16) -> c_int {
    not_implemented("rte_vhost_async_get_inflight_thread_unsafe", -1)
}

/// EXPERIMENTAL
#[no_mangle]
pub unsafe extern "C" fn rte_vhost_async_try_dequeue_burst(
    _a0: c_int,
    _a1: u16,
    _a2: *mut rte_mempool,
    _a3: *mut *mut rte_mbuf,
    _a4: u16,
    _a5: *mut c_int,
    _a6: i16,
    _a7: u16,
) -> u16 {
    not_implemented("rte_vhost_async_try_dequeue_burst", 0)
}

/// EXPERIMENTAL
#[no_mangle]
pub unsafe extern "C" fn rte_vhost_clear_queue(
    _a0: c_int,
    _a1: u16,
    _a2: *mut *mut rte_mbuf,
    _a3: u16,
    _a4: i16,
    _a5: u16,
) -> u16 {
    not_implemented("rte_vhost_clear_queue", 0)
}

/// EXPERIMENTAL
#[no_mangle]
pub unsafe extern "C" fn rte_vhost_clear_queue_thread_unsafe(
    _a0: c_int,
    _a1: u16,
    _a2: *mut *mut rte_mbuf,
    _a3: u16,
    _a4: i16,
    _a5: u16,
) -> u16 {
    not_implemented("rte_vhost_clear_queue_thread_unsafe", 0)
}

/// EXPERIMENTAL
#[no_mangle]
pub unsafe extern "C" fn rte_vhost_poll_enqueue_completed(
    _a0: c_int,
    _a1: u16,
    _a2: *mut *mut rte_mbuf,
    _a3: u16,
    _a4: i16,
    _a5: u16,
) -> u16 {
    not_implemented("rte_vhost_poll_enqueue_completed", 0)
}

/// EXPERIMENTAL
#[no_mangle]
pub unsafe extern "C" fn rte_vhost_submit_enqueue_burst(
    _a0: c_int,
    _a1: u16,
    _a2: *mut *mut rte_mbuf,
    _a3: u16,
    _a4: i16,
    _a5: u16,
) -> u16 {
    not_implemented("rte_vhost_submit_enqueue_burst", 0)
}
