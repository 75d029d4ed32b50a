//! `rte_vhost_async.h`: the DMA-offloaded datapath (`net::dma`; the
//! channels: `dpdk::dma`).

use std::ffi::c_int;

use crate::abi::*;
use crate::device;
use crate::dpdk::dma::{self, ChannelId, MAX_DMA_DEVICES};
use crate::dpdk::mbuf::{Mbuf, Mempool};
use crate::net::{self, LockMode, PollCall};
use crate::vlog;

/// The caller's array of `count` entries for the mbufs a call returns, as
/// the datapath's type. The datapath only fills it: what the entries held
/// before is never read nor freed.
///
/// # Safety
/// `pkts` must be NULL or valid for reading and writing `count` pointers.
unsafe fn mbuf_array<'a>(pkts: *mut *mut rte_mbuf, count: u16) -> &'a mut [Option<Mbuf>] {
    if pkts.is_null() {
        return &mut [];
    }
    // SAFETY: per the contract; Option<Mbuf> has the layout of a nullable
    // mbuf pointer, every pointer value is a valid Option<Mbuf>, and the
    // entries are only written (their values are no handles of ours).
    unsafe { std::slice::from_raw_parts_mut(pkts.cast::<Option<Mbuf>>(), usize::from(count)) }
}

fn as_c(ok: bool) -> c_int {
    if ok {
        0
    } else {
        -1
    }
}

fn inflight(vid: c_int, queue_id: u16, mode: LockMode) -> c_int {
    let Some(dev) = device::get(vid) else { return -1 };
    net::async_inflight(dev, queue_id, mode).map_or(-1, |n| n as c_int)
}

fn clear(
    vid: c_int,
    queue_id: u16,
    pkts: *mut *mut rte_mbuf,
    count: u16,
    ch: ChannelId,
    mode: LockMode,
    func: &str,
) -> u16 {
    let Some(dev) = device::get(vid) else { return 0 };
    if usize::try_from(ch.dma).map_or(true, |d| d >= MAX_DMA_DEVICES) {
        vlog!(Data, Err, dev.ifname(), "{func}: invalid dma id {}.", ch.dma);
        return 0;
    }
    // SAFETY: the caller's array of `count` entries (DPDK's contract).
    let out = unsafe { mbuf_array(pkts, count) };
    net::clear_queue(dev, queue_id, out, PollCall { ch, mode, func })
}

/// Register an async channel for a vhost queue
///
/// @param vid
///  vhost device id async channel to be attached to
/// @param queue_id
///  vhost queue id async channel to be attached to
/// @return
///  0 on success, -1 on failures
///
/// # Safety
/// Takes no pointers: any `vid` and `queue_id` may be passed (invalid ones
/// return -1).
///
/// Symbol version: EXPERIMENTAL
#[no_mangle]
pub unsafe extern "C" fn rte_vhost_async_channel_register(vid: c_int, queue_id: u16) -> c_int {
    boundary!(-1, {
        let Some(dev) = device::get(vid) else { return -1 };
        as_c(net::register_async(dev, queue_id))
    })
}

/// Register an async channel for a vhost queue without performing any
/// locking
///
/// @note This function does not perform any locking, and is only safe to
///       call in vhost callback functions.
///
/// @param vid
///  vhost device id async channel to be attached to
/// @param queue_id
///  vhost queue id async channel to be attached to
/// @return
///  0 on success, -1 on failures
///
/// # Safety
/// Only from a vhost callback (struct rte_vhost_device_ops) of device `vid`,
/// as the note above says.
///
/// Symbol version: EXPERIMENTAL
#[no_mangle]
pub unsafe extern "C" fn rte_vhost_async_channel_register_thread_unsafe(vid: c_int, queue_id: u16) -> c_int {
    boundary!(-1, {
        let Some(dev) = device::get(vid) else { return -1 };
        as_c(net::register_async(dev, queue_id))
    })
}

/// Unregister an async channel for a vhost queue
///
/// @param vid
///  vhost device id async channel to be detached from
/// @param queue_id
///  vhost queue id async channel to be detached from
/// @return
///  0 on success, -1 on failures
///
/// # Safety
/// Takes no pointers: any `vid` and `queue_id` may be passed (invalid ones
/// return -1).
///
/// Symbol version: EXPERIMENTAL
#[no_mangle]
pub unsafe extern "C" fn rte_vhost_async_channel_unregister(vid: c_int, queue_id: u16) -> c_int {
    boundary!(-1, {
        let Some(dev) = device::get(vid) else { return -1 };
        as_c(net::unregister_async(dev, queue_id, LockMode::Try))
    })
}

/// Unregister an async channel for a vhost queue without performing any
/// locking
///
/// @note This function does not perform any locking, and is only safe to
///       call in vhost callback functions.
///
/// @param vid
///  vhost device id async channel to be detached from
/// @param queue_id
///  vhost queue id async channel to be detached from
/// @return
///  0 on success, -1 on failures
///
/// # Safety
/// Only from a vhost callback (struct rte_vhost_device_ops) of device `vid`,
/// as the note above says.
///
/// Symbol version: EXPERIMENTAL
#[no_mangle]
pub unsafe extern "C" fn rte_vhost_async_channel_unregister_thread_unsafe(
    vid: c_int,
    queue_id: u16,
) -> c_int {
    boundary!(-1, {
        let Some(dev) = device::get(vid) else { return -1 };
        as_c(net::unregister_async(dev, queue_id, LockMode::Wait))
    })
}

/// The DMA vChannels used in asynchronous data path must be configured
/// first. So this function needs to be called before enabling DMA
/// acceleration for vring. If this function fails, the given DMA vChannel
/// cannot be used in asynchronous data path.
///
/// DMA devices used in data-path must belong to DMA devices given in this
/// function. Application is free to use DMA devices passed to this function
/// for non-vhost scenarios, but will have to ensure the Vhost library is not
/// using the channel at the same time.
///
/// @param dma_id
///  the identifier of DMA device
/// @param vchan_id
///  the identifier of virtual DMA channel
/// @return
///  0 on success, and -1 on failure
///
/// # Safety
/// Takes no pointers: any `dma_id` and `vchan_id` may be passed (invalid ones
/// return -1).
///
/// Symbol version: EXPERIMENTAL
#[no_mangle]
pub unsafe extern "C" fn rte_vhost_async_dma_configure(dma_id: i16, vchan_id: u16) -> c_int {
    boundary!(-1, {
        match dma::configure(ChannelId { dma: dma_id, vchan: vchan_id }) {
            Ok(()) => 0,
            Err(e) => {
                vlog!(Config, Err, "dma", "DMA {dma_id} vChannel {vchan_id}: {e}.");
                -1
            }
        }
    })
}

/// @warning
/// @b EXPERIMENTAL: this API may change, or be removed, without prior notice.
///
/// Unconfigure DMA vChannel in Vhost asynchronous data path.
/// This function should be called when the specified DMA vChannel is no longer
/// used by the Vhost library. Before this function is called, make sure there
/// does not exist in-flight packets in DMA vChannel.
///
/// @param dma_id
///  the identifier of DMA device
/// @param vchan_id
///  the identifier of virtual DMA channel
/// @return
///  0 on success, and -1 on failure
///
/// # Safety
/// Takes no pointers: any `dma_id` and `vchan_id` may be passed (invalid ones
/// return -1).
///
/// Symbol version: EXPERIMENTAL
#[no_mangle]
pub unsafe extern "C" fn rte_vhost_async_dma_unconfigure(dma_id: i16, vchan_id: u16) -> c_int {
    boundary!(-1, {
        match dma::unconfigure(ChannelId { dma: dma_id, vchan: vchan_id }) {
            Ok(()) => 0,
            Err(e) => {
                vlog!(Config, Err, "dma", "cannot unconfigure DMA {dma_id} vChannel {vchan_id}: {e}.");
                -1
            }
        }
    })
}

/// This function returns the amount of in-flight packets for the vhost
/// queue which uses async channel acceleration.
///
/// @param vid
///  id of vhost device to enqueue data
/// @param queue_id
///  queue id to enqueue data
/// @return
///  the amount of in-flight packets on success; -1 on failure
///
/// # Safety
/// Takes no pointers: any `vid` and `queue_id` may be passed (invalid ones
/// return -1).
///
/// Symbol version: EXPERIMENTAL
#[no_mangle]
pub unsafe extern "C" fn rte_vhost_async_get_inflight(vid: c_int, queue_id: u16) -> c_int {
    boundary!(-1, { inflight(vid, queue_id, LockMode::Try) })
}

/// This function is lock-free version to return the amount of in-flight
/// packets for the vhost queue which uses async channel acceleration.
///
/// @note This function does not perform any locking, it should only be
/// used within the vhost ops, which already holds the lock.
///
/// @param vid
///  id of vhost device to enqueue data
/// @param queue_id
///  queue id to enqueue data
/// @return
///  the amount of in-flight packets on success; -1 on failure
///
/// # Safety
/// Only from a vhost callback (struct rte_vhost_device_ops) of device `vid`,
/// as the note above says.
///
/// Symbol version: EXPERIMENTAL
#[no_mangle]
pub unsafe extern "C" fn rte_vhost_async_get_inflight_thread_unsafe(vid: c_int, queue_id: u16) -> c_int {
    boundary!(-1, { inflight(vid, queue_id, LockMode::Wait) })
}

/// @warning
/// @b EXPERIMENTAL: this API may change, or be removed, without prior notice
///
/// This function tries to receive packets from the guest with offloading
/// copies to the DMA vChannels. Successfully dequeued packets are returned
/// in "pkts". The other packets that their copies are submitted to
/// the DMA vChannels but not completed are called "in-flight packets".
/// This function will not return in-flight packets until their copies are
/// completed by the DMA vChannels.
///
/// @param vid
///  ID of vhost device to dequeue data
/// @param queue_id
///  ID of virtqueue to dequeue data
/// @param mbuf_pool
///  Mbuf_pool where host mbuf is allocated
/// @param pkts
///  Blank array to keep successfully dequeued packets
/// @param count
///  Size of the packet array
/// @param nr_inflight
///  `>= 0`: The amount of in-flight packets
///  `-1`: Meaningless, indicates failed lock acquisition or invalid queue_id/dma_id
/// @param dma_id
///  The identifier of DMA device
/// @param vchan_id
///  The identifier of virtual DMA channel
/// @return
///  Number of successfully dequeued packets
///
/// # Safety
/// `mbuf_pool` must be NULL or a valid mbuf pool, `pkts` NULL or valid for
/// writing `count` mbuf pointers, and `nr_inflight` NULL or valid for writing
/// an `int`.
///
/// Symbol version: EXPERIMENTAL
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
    boundary!(0, {
        let Some(dev) = device::get(vid) else { return 0 };
        if nr_inflight.is_null() {
            return 0;
        }
        // SAFETY: checked non-NULL; the caller's int.
        unsafe { *nr_inflight = -1 };
        if usize::try_from(dma_id).map_or(true, |d| d >= MAX_DMA_DEVICES) {
            vlog!(Data, Err, dev.ifname(), "rte_vhost_async_try_dequeue_burst: invalid dma id {dma_id}.");
            return 0;
        }
        // SAFETY: DPDK's contract: a valid pktmbuf pool.
        let Some(pool) = (unsafe { Mempool::from_raw(mbuf_pool) }) else { return 0 };
        // SAFETY: the caller's array of `count` entries (DPDK's contract).
        let out = unsafe { mbuf_array(pkts, count) };
        let ch = ChannelId { dma: dma_id, vchan: vchan_id };
        let Some((n, inflight)) = net::try_dequeue_burst(dev, queue_id, pool, out, ch) else { return 0 };
        // SAFETY: as above.
        unsafe { *nr_inflight = inflight as c_int };
        n
    })
}

/// This function checks async completion status and clear packets for
/// a specific vhost device queue. Packets which are inflight will be
/// returned in an array.
///
/// @param vid
///  ID of vhost device to clear data
/// @param queue_id
///  Queue id to clear data
/// @param pkts
///  Blank array to get return packet pointer
/// @param count
///  Size of the packet array
/// @param dma_id
///  The identifier of the DMA device
/// @param vchan_id
///  The identifier of virtual DMA channel
/// @return
///  Number of packets returned
///
/// # Safety
/// `pkts` must be NULL or valid for writing `count` mbuf pointers.
///
/// Symbol version: EXPERIMENTAL
#[no_mangle]
pub unsafe extern "C" fn rte_vhost_clear_queue(
    vid: c_int,
    queue_id: u16,
    pkts: *mut *mut rte_mbuf,
    count: u16,
    dma_id: i16,
    vchan_id: u16,
) -> u16 {
    boundary!(0, {
        let ch = ChannelId { dma: dma_id, vchan: vchan_id };
        clear(vid, queue_id, pkts, count, ch, LockMode::Try, "rte_vhost_clear_queue")
    })
}

/// This function checks async completion status and clear packets for
/// a specific vhost device queue. Packets which are inflight will be
/// returned in an array.
///
/// @note This function does not perform any locking
///
/// @param vid
///  ID of vhost device to clear data
/// @param queue_id
///  Queue id to clear data
/// @param pkts
///  Blank array to get return packet pointer
/// @param count
///  Size of the packet array
/// @param dma_id
///  the identifier of DMA device
/// @param vchan_id
///  the identifier of virtual DMA channel
/// @return
///  Number of packets returned
///
/// # Safety
/// `pkts` must be NULL or valid for writing `count` mbuf pointers. Only from
/// a vhost callback (struct rte_vhost_device_ops) of device `vid`, or while
/// no other thread uses the queue: the queue is not locked.
///
/// Symbol version: EXPERIMENTAL
#[no_mangle]
pub unsafe extern "C" fn rte_vhost_clear_queue_thread_unsafe(
    vid: c_int,
    queue_id: u16,
    pkts: *mut *mut rte_mbuf,
    count: u16,
    dma_id: i16,
    vchan_id: u16,
) -> u16 {
    boundary!(0, {
        let ch = ChannelId { dma: dma_id, vchan: vchan_id };
        clear(vid, queue_id, pkts, count, ch, LockMode::Wait, "rte_vhost_clear_queue_thread_unsafe")
    })
}

/// This function checks async completion status for a specific vhost
/// device queue. Packets which finish copying (enqueue) operation
/// will be returned in an array.
///
/// @param vid
///  id of vhost device to enqueue data
/// @param queue_id
///  queue id to enqueue data
/// @param pkts
///  blank array to get return packet pointer
/// @param count
///  size of the packet array
/// @param dma_id
///  the identifier of DMA device
/// @param vchan_id
///  the identifier of virtual DMA channel
/// @return
///  num of packets returned
///
/// # Safety
/// `pkts` must be NULL or valid for writing `count` mbuf pointers.
///
/// Symbol version: EXPERIMENTAL
#[no_mangle]
pub unsafe extern "C" fn rte_vhost_poll_enqueue_completed(
    vid: c_int,
    queue_id: u16,
    pkts: *mut *mut rte_mbuf,
    count: u16,
    dma_id: i16,
    vchan_id: u16,
) -> u16 {
    boundary!(0, {
        let Some(dev) = device::get(vid) else { return 0 };
        if queue_id & 1 == 1 || u32::from(queue_id) >= dev.nr_vring() {
            vlog!(
                Data,
                Err,
                dev.ifname(),
                "rte_vhost_poll_enqueue_completed: invalid virtqueue idx {queue_id}."
            );
            return 0;
        }
        // SAFETY: the caller's array of `count` entries (DPDK's contract).
        let out = unsafe { mbuf_array(pkts, count) };
        let ch = ChannelId { dma: dma_id, vchan: vchan_id };
        let call = PollCall { ch, mode: LockMode::Try, func: "rte_vhost_poll_enqueue_completed" };
        net::poll_completed(dev, queue_id, out, call)
    })
}

/// This function submits enqueue packets to async copy engine. Users
/// need to poll transfer status by rte_vhost_poll_enqueue_completed()
/// for successfully enqueued packets.
///
/// @param vid
///  id of vhost device to enqueue data
/// @param queue_id
///  queue id to enqueue data
/// @param pkts
///  array of packets to be enqueued
/// @param count
///  packets num to be enqueued
/// @param dma_id
///  the identifier of DMA device
/// @param vchan_id
///  the identifier of virtual DMA channel
/// @return
///  num of packets enqueued
///
/// # Safety
/// `pkts` must be NULL or point to `count` valid mbuf pointers. Submitted
/// packets must not be freed or modified until
/// rte_vhost_poll_enqueue_completed() (or rte_vhost_clear_queue()) returns
/// them.
///
/// Symbol version: EXPERIMENTAL
#[no_mangle]
pub unsafe extern "C" fn rte_vhost_submit_enqueue_burst(
    vid: c_int,
    queue_id: u16,
    pkts: *mut *mut rte_mbuf,
    count: u16,
    dma_id: i16,
    vchan_id: u16,
) -> u16 {
    boundary!(0, {
        let Some(dev) = device::get(vid) else { return 0 };
        // The burst takes the packets it sends out of a copy of the array:
        // the caller's is left as it was.
        let n = if pkts.is_null() { 0 } else { usize::from(count).min(net::MAX_BURST) };
        let mut lent = [const { None }; net::MAX_BURST];
        for (i, slot) in lent[..n].iter_mut().enumerate() {
            // A sent mbuf is given up to the library, an unsent one stays the caller's.
            // SAFETY: `count` readable pointers, each NULL or a valid mbuf
            // (DPDK's contract); this copy is the library's only handle to it.
            *slot = unsafe { Mbuf::from_raw(*pkts.add(i)) };
        }
        net::submit_enqueue_burst(dev, queue_id, &mut lent[..n], ChannelId { dma: dma_id, vchan: vchan_id })
    })
}
