//! `rte_vhost_async.h`: the DMA-offloaded datapath.
#![allow(clippy::missing_safety_doc)]
// Functions here that are not implemented yet ignore their arguments.
#![allow(unused_variables)]

use std::ffi::c_int;

use super::not_implemented;
use crate::abi::*;

/// EXPERIMENTAL
#[no_mangle]
pub unsafe extern "C" fn rte_vhost_async_channel_register(vid: c_int, queue_id: u16) -> c_int {
    boundary!(-1, { not_implemented("rte_vhost_async_channel_register", -1) })
}

/// EXPERIMENTAL
#[no_mangle]
pub unsafe extern "C" fn rte_vhost_async_channel_register_thread_unsafe(vid: c_int, queue_id: u16) -> c_int {
    boundary!(-1, { not_implemented("rte_vhost_async_channel_register_thread_unsafe", -1) })
}

/// EXPERIMENTAL
#[no_mangle]
pub unsafe extern "C" fn rte_vhost_async_channel_unregister(vid: c_int, queue_id: u16) -> c_int {
    boundary!(-1, { not_implemented("rte_vhost_async_channel_unregister", -1) })
}

/// EXPERIMENTAL
#[no_mangle]
pub unsafe extern "C" fn rte_vhost_async_channel_unregister_thread_unsafe(
    vid: c_int,
    queue_id: u16,
) -> c_int {
    boundary!(-1, { not_implemented("rte_vhost_async_channel_unregister_thread_unsafe", -1) })
}

/// EXPERIMENTAL
#[no_mangle]
pub unsafe extern "C" fn rte_vhost_async_dma_configure(dma_id: i16, vchan_id: u16) -> c_int {
    boundary!(-1, { not_implemented("rte_vhost_async_dma_configure", -1) })
}

/// EXPERIMENTAL
#[no_mangle]
pub unsafe extern "C" fn rte_vhost_async_dma_unconfigure(dma_id: i16, vchan_id: u16) -> c_int {
    boundary!(-1, { not_implemented("rte_vhost_async_dma_unconfigure", -1) })
}

/// EXPERIMENTAL
#[no_mangle]
pub unsafe extern "C" fn rte_vhost_async_get_inflight(vid: c_int, queue_id: u16) -> c_int {
    boundary!(-1, { not_implemented("rte_vhost_async_get_inflight", -1) })
}

/// EXPERIMENTAL
#[no_mangle]
pub unsafe extern "C" fn rte_vhost_async_get_inflight_thread_unsafe(vid: c_int, queue_id: u16) -> c_int {
    boundary!(-1, { not_implemented("rte_vhost_async_get_inflight_thread_unsafe", -1) })
}

/// EXPERIMENTAL
#[no_mangle]
pub unsafe extern "C" fn rte_vhost_async_try_dequeue_burst(
    vid: c_int,
    queue_id: u16,
    mbuf_pool: *mut rte_mempool,
    pkts: *mut *mut rte_mbuf,
    count: u16,
    nr_inflight: *mut c_int,
    dma_id: i16,
    vchan_id: u16,
) -> u16 {
    boundary!(0, { not_implemented("rte_vhost_async_try_dequeue_burst", 0) })
}

/// EXPERIMENTAL
#[no_mangle]
pub unsafe extern "C" fn rte_vhost_clear_queue(
    vid: c_int,
    queue_id: u16,
    pkts: *mut *mut rte_mbuf,
    count: u16,
    dma_id: i16,
    vchan_id: u16,
) -> u16 {
    boundary!(0, { not_implemented("rte_vhost_clear_queue", 0) })
}

/// EXPERIMENTAL
#[no_mangle]
pub unsafe extern "C" fn rte_vhost_clear_queue_thread_unsafe(
    vid: c_int,
    queue_id: u16,
    pkts: *mut *mut rte_mbuf,
    count: u16,
    dma_id: i16,
    vchan_id: u16,
) -> u16 {
    boundary!(0, { not_implemented("rte_vhost_clear_queue_thread_unsafe", 0) })
}

/// EXPERIMENTAL
#[no_mangle]
pub unsafe extern "C" fn rte_vhost_poll_enqueue_completed(
    vid: c_int,
    queue_id: u16,
    pkts: *mut *mut rte_mbuf,
    count: u16,
    dma_id: i16,
    vchan_id: u16,
) -> u16 {
    boundary!(0, { not_implemented("rte_vhost_poll_enqueue_completed", 0) })
}

/// EXPERIMENTAL
#[no_mangle]
pub unsafe extern "C" fn rte_vhost_submit_enqueue_burst(
    vid: c_int,
    queue_id: u16,
    pkts: *mut *mut rte_mbuf,
    count: u16,
    dma_id: i16,
    vchan_id: u16,
) -> u16 {
    boundary!(0, { not_implemented("rte_vhost_submit_enqueue_burst", 0) })
}
