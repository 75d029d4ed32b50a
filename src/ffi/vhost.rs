//! `rte_vhost.h`: sockets, device queries, datapath entry points.

use std::ffi::{c_int, c_uint};

use crate::abi::*;
use crate::dpdk::mbuf::{Mbuf, Mempool};
use crate::{device, net};

/// Get how many avail entries are left in the queue
///
/// @param vid
///  vhost device ID
/// @param queue_id
///  virtio queue index
///
/// @return
///  num of avail entries left
///
/// # Safety
/// Takes no pointers: any `vid` and `queue_id` may be passed (invalid ones
/// return 0).
///
/// Symbol version: DPDK_23
#[no_mangle]
pub unsafe extern "C" fn rte_vhost_avail_entries(vid: c_int, queue_id: u16) -> u16 {
    boundary!(0, { device::get(vid).map_or(0, |d| net::avail_entries(d, queue_id)) })
}

/// This function gets guest buffers from the virtio device TX virtqueue,
/// construct host mbufs, copies guest buffer content to host mbufs and
/// store them in pkts to be processed.
///
/// @param vid
///  vhost device ID
/// @param queue_id
///  virtio queue index in mq case
/// @param mbuf_pool
///  mbuf_pool where host mbuf is allocated.
/// @param pkts
///  array to contain packets to be dequeued
/// @param count
///  packets num to be dequeued
/// @return
///  num of packets dequeued
///
/// # Safety
/// `mbuf_pool` must be NULL or a valid mbuf pool (`rte_pktmbuf_pool_create()`),
/// and `pkts` NULL or valid for writing `count` mbuf pointers. The dequeued
/// mbufs belong to the caller, who frees them.
///
/// Symbol version: DPDK_23
#[no_mangle]
pub unsafe extern "C" fn rte_vhost_dequeue_burst(
    vid: c_int,
    queue_id: u16,
    mbuf_pool: *mut rte_mempool,
    pkts: *mut *mut rte_mbuf,
    count: u16,
) -> u16 {
    boundary!(0, {
        let Some(dev) = device::get(vid) else { return 0 };
        // SAFETY: DPDK's contract: a valid pktmbuf pool.
        let Some(pool) = (unsafe { Mempool::from_raw(mbuf_pool) }) else { return 0 };
        if pkts.is_null() || count == 0 {
            return 0;
        }
        let mut got = [const { None }; net::MAX_BURST];
        let n = usize::from(count).min(net::MAX_BURST);
        let done = net::dequeue_burst(dev, queue_id, pool, &mut got[..n]);
        // The mbufs become the caller's: `got`, unused after, lets them go.
        for (i, m) in got[..usize::from(done)].iter().enumerate() {
            // SAFETY: the caller provides `count` >= done writable entries.
            unsafe { *pkts.add(i) = m.as_ref().map_or(std::ptr::null_mut(), Mbuf::as_ptr) };
        }
        done
    })
}

/// Enable or disable the guest's notifications (kicks) for a virtqueue.
///
/// With notifications enabled the guest signals the virtqueue's kickfd when
/// it makes new buffers available (interrupt-mode receive); disabled, it is
/// asked not to (`VRING_USED_F_NO_NOTIFY`, or the event suppression
/// structure of a packed ring). DPDK 22.11's header has no comment for this
/// function; this text is rvhost's.
///
/// @param vid
///  vhost device ID
/// @param queue_id
///  virtio queue index
/// @param enable
///  non-zero to enable the notifications, 0 to disable them
/// @return
///  0 on success, -1 on failure
///
/// # Safety
/// Takes no pointers: any argument values may be passed (invalid ones make
/// the call fail).
///
/// Symbol version: DPDK_23
#[no_mangle]
pub unsafe extern "C" fn rte_vhost_enable_guest_notification(
    vid: c_int,
    queue_id: u16,
    enable: c_int,
) -> c_int {
    boundary!(-1, { device::get(vid).map_or(-1, |d| net::set_guest_notification(d, queue_id, enable != 0)) })
}

/// This function adds buffers to the virtio devices RX virtqueue. Buffers can
/// be received from the physical port or from another virtual device. A packet
/// count is returned to indicate the number of packets that were successfully
/// added to the RX queue.
///
/// @param vid
///  vhost device ID
/// @param queue_id
///  virtio queue index in mq case
/// @param pkts
///  array to contain packets to be enqueued
/// @param count
///  packets num to be enqueued
/// @return
///  num of packets enqueued
///
/// # Safety
/// `pkts` must be NULL or point to `count` readable mbuf pointers, each NULL
/// or a valid mbuf (chain) that nothing else uses during the call (the
/// checksums its offload flags ask for are written into it, as DPDK does).
/// The packets are copied: the mbufs stay the caller's, who frees them.
///
/// Symbol version: DPDK_23
#[no_mangle]
pub unsafe extern "C" fn rte_vhost_enqueue_burst(
    vid: c_int,
    queue_id: u16,
    pkts: *mut *mut rte_mbuf,
    count: u16,
) -> u16 {
    boundary!(0, {
        let Some(dev) = device::get(vid) else { return 0 };
        if pkts.is_null() || count == 0 {
            return 0;
        }
        let n = usize::from(count).min(net::MAX_BURST);
        // SAFETY: the caller provides `count` mbuf pointers, each NULL or a valid
        // mbuf lent to the burst alone; Option<Mbuf> has the layout of such a
        // pointer. The burst reads and writes the mbufs, never the array.
        let mbufs = unsafe { std::slice::from_raw_parts_mut(pkts.cast::<Option<Mbuf>>(), n) };
        net::enqueue_burst(dev, queue_id, mbufs)
    })
}

/// Get power monitor address of the vhost device
///
/// @param vid
///  vhost device ID
/// @param queue_id
///  vhost queue ID
/// @param pmc
///  power monitor condition
/// @return
///  0 on success, -1 on failure
///
/// # Safety
/// `pmc` must be NULL (refused) or valid for writing one
/// `struct rte_vhost_power_monitor_cond`.
///
/// Symbol version: EXPERIMENTAL
#[no_mangle]
pub unsafe extern "C" fn rte_vhost_get_monitor_addr(
    vid: c_int,
    queue_id: u16,
    pmc: *mut rte_vhost_power_monitor_cond,
) -> c_int {
    boundary!(-1, {
        let Some(dev) = device::get(vid) else { return -1 };
        if pmc.is_null() {
            return -1;
        }
        match net::monitor_cond(dev, queue_id) {
            Some(c) => {
                // SAFETY: checked non-NULL; caller's out-pointer.
                unsafe {
                    pmc.write(rte_vhost_power_monitor_cond {
                        addr: c.addr as *mut _,
                        val: c.val,
                        mask: c.mask,
                        size: c.size,
                        r#match: c.is_match,
                    })
                };
                0
            }
            None => -1,
        }
    })
}

/// Get vhost RX queue avail count.
///
/// @param vid
///  vhost device ID
/// @param qid
///  virtio queue index in mq case
/// @return
///  num of desc available
///
/// # Safety
/// Takes no pointers: any `vid` and `qid` may be passed (invalid ones return
/// 0).
///
/// Symbol version: DPDK_23
#[no_mangle]
pub unsafe extern "C" fn rte_vhost_rx_queue_count(vid: c_int, qid: u16) -> u32 {
    boundary!(0, {
        let Some(dev) = device::get(vid) else { return 0 };
        if qid & 1 == 0 || u32::from(qid) >= dev.nr_vring() {
            crate::vlog!(Data, Err, dev.ifname(), "rte_vhost_rx_queue_count: invalid virtqueue idx {qid}.");
            return 0;
        }
        u32::from(net::avail_entries(dev, qid))
    })
}

/// Notify the guest that used descriptors have been added to the vring.  This
/// function acts as a memory barrier.
///
/// @param vid
///  vhost device ID
/// @param vring_idx
///  vring index
/// @return
///  0 on success, -1 on failure
///
/// # Safety
/// Takes no pointers: any `vid` and `vring_idx` may be passed (invalid ones
/// return -1).
///
/// Symbol version: DPDK_23
#[no_mangle]
pub unsafe extern "C" fn rte_vhost_vring_call(vid: c_int, vring_idx: u16) -> c_int {
    boundary!(-1, { device::get(vid).map_or(-1, |d| net::vring_call(d, vring_idx, true)) })
}

/// Inject the offloaded interrupt into the vhost device's queue.
/// @see guest_notify vhost device operation
///
/// @param vid
///  vhost device ID
/// @param queue_id
///  virtio queue index
///
/// # Safety
/// Takes no pointers: any `vid` and `queue_id` may be passed (invalid ones
/// are ignored).
///
/// Symbol version: EXPERIMENTAL
#[cfg(feature = "abi-24-11")]
#[no_mangle]
pub unsafe extern "C" fn rte_vhost_notify_guest(vid: c_int, queue_id: u16) {
    boundary!((), {
        if let Some(d) = device::get(vid) {
            net::interrupt::notify_guest_now(d, queue_id);
        }
    })
}

/// Notify the guest that used descriptors have been added to the vring.  This
/// function acts as a memory barrier.  This function will return -EAGAIN when
/// vq's access lock is held by other thread, user should try again later.
///
/// @param vid
///  vhost device ID
/// @param vring_idx
///  vring index
/// @return
///  0 on success, -1 on failure, -EAGAIN for another retry
///
/// # Safety
/// Takes no pointers: any `vid` and `vring_idx` may be passed (invalid ones
/// return -1).
///
/// Symbol version: EXPERIMENTAL
#[no_mangle]
pub unsafe extern "C" fn rte_vhost_vring_call_nonblock(vid: c_int, vring_idx: u16) -> c_int {
    boundary!(-1, { device::get(vid).map_or(-1, |d| net::vring_call(d, vring_idx, false)) })
}

/// Retrieve statistics of a Vhost virtqueue.
///
/// There is an assumption that 'stat_names' and 'stats' arrays are matched
/// by array index: `stats_names[i].name => stats[i].value`
///
/// @param vid
///   vhost device ID
/// @param queue_id
///   vhost queue index
/// @param stats
///   A pointer to a table of structure of type rte_vhost_stat to be filled with
///   virtqueue statistics ids and values.
/// @param n
///   The number of elements in stats array.
/// @return
///  - Success if greater than 0 and lower or equal to *n*. The return value
///    indicates the number of elements filled in the *stats* array.
///  - Failure if greater than *n*. The return value indicates the number of
///    elements the *stats* array that should be given to succeed.
///  - Failure if lower than 0. The device ID or queue ID is invalid, or
///    statistics collection is not enabled.
///
/// # Safety
/// `stats` must be NULL or valid for writing `n` `struct rte_vhost_stat`
/// elements.
///
/// Symbol version: DPDK_23
#[no_mangle]
pub unsafe extern "C" fn rte_vhost_vring_stats_get(
    vid: c_int,
    queue_id: u16,
    stats: *mut rte_vhost_stat,
    n: c_uint,
) -> c_int {
    boundary!(-1, {
        let Some(dev) = device::get(vid) else { return -1 };
        let Some(values) = net::vring_stats(dev, queue_id) else { return -1 };
        if stats.is_null() || (n as usize) < values.len() {
            return values.len() as c_int;
        }
        for (i, v) in values.iter().enumerate() {
            // SAFETY: the caller provides `n` >= values.len() entries.
            unsafe { stats.add(i).write(rte_vhost_stat { id: i as u64, value: *v }) };
        }
        values.len() as c_int
    })
}

/// Retrieve names of statistics of a Vhost virtqueue.
///
/// There is an assumption that 'stat_names' and 'stats' arrays are matched
/// by array index: `stats_names[i].name => stats[i].value`
///
/// @param vid
///   vhost device ID
/// @param queue_id
///   vhost queue index
/// @param name
///   array of at least size elements to be filled.
///   If set to NULL, the function returns the required number of elements.
/// @param size
///   The number of elements in stats_names array.
/// @return
///  - Success if greater than 0 and lower or equal to *size*. The return value
///    indicates the number of elements filled in the *names* array.
///  - Failure if greater than *size*. The return value indicates the number of
///    elements the *names* array that should be given to succeed.
///  - Failure if lower than 0. The device ID or queue ID is invalid or
///    statistics collection is not enabled.
///
/// # Safety
/// `name` must be NULL or valid for writing `size` `struct rte_vhost_stat_name`
/// elements.
///
/// Symbol version: DPDK_23
#[no_mangle]
pub unsafe extern "C" fn rte_vhost_vring_stats_get_names(
    vid: c_int,
    queue_id: u16,
    name: *mut rte_vhost_stat_name,
    size: c_uint,
) -> c_int {
    boundary!(-1, {
        let Some(dev) = device::get(vid) else { return -1 };
        let Some(names) = net::vring_stat_names(dev, queue_id) else { return -1 };
        if name.is_null() || (size as usize) < names.len() {
            return names.len() as c_int;
        }
        for (i, n) in names.iter().enumerate() {
            let mut out = rte_vhost_stat_name { name: [0; RTE_VHOST_STATS_NAME_SIZE] };
            for (dst, b) in out.name.iter_mut().zip(n.bytes().take(RTE_VHOST_STATS_NAME_SIZE - 1)) {
                *dst = b as std::ffi::c_char;
            }
            // SAFETY: the caller provides `size` >= names.len() entries.
            unsafe { name.add(i).write(out) };
        }
        names.len() as c_int
    })
}

/// Reset statistics of a Vhost virtqueue.
///
/// @param vid
///   vhost device ID
/// @param queue_id
///   vhost queue index
/// @return
///  - Success if 0. Statistics have been reset.
///  - Failure if lower than 0. The device ID or queue ID is invalid, or
///    statistics collection is not enabled.
///
/// # Safety
/// Takes no pointers: any `vid` and `queue_id` may be passed (invalid ones
/// return -1).
///
/// Symbol version: DPDK_23
#[no_mangle]
pub unsafe extern "C" fn rte_vhost_vring_stats_reset(vid: c_int, queue_id: u16) -> c_int {
    boundary!(-1, { device::get(vid).map_or(-1, |d| net::vring_stats_reset(d, queue_id)) })
}
