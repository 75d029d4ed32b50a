//! `rte_vhost.h`: sockets, device queries, datapath entry points.
#![allow(clippy::missing_safety_doc)]

use std::ffi::{c_int, c_uint};

use crate::abi::*;
use crate::dpdk::mbuf::{Mbuf, Mempool};
use crate::{device, net};

/// DPDK_23
#[no_mangle]
pub unsafe extern "C" fn rte_vhost_avail_entries(vid: c_int, queue_id: u16) -> u16 {
    boundary!(0, { device::get(vid).map_or(0, |d| net::avail_entries(d, queue_id)) })
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
    boundary!(0, {
        let Some(dev) = device::get(vid) else { return 0 };
        // SAFETY: DPDK's contract: a valid pktmbuf pool.
        let Some(pool) = (unsafe { Mempool::from_raw(mbuf_pool) }) else { return 0 };
        if pkts.is_null() || count == 0 {
            return 0;
        }
        let mut got = [None; net::MAX_BURST];
        let n = usize::from(count).min(net::MAX_BURST);
        let done = net::dequeue_burst(dev, queue_id, pool, &mut got[..n]);
        for (i, m) in got[..usize::from(done)].iter().enumerate() {
            // SAFETY: the caller provides `count` >= done writable entries.
            unsafe { *pkts.add(i) = m.map_or(std::ptr::null_mut(), Mbuf::as_ptr) };
        }
        done
    })
}

/// DPDK_23
#[no_mangle]
pub unsafe extern "C" fn rte_vhost_enable_guest_notification(
    vid: c_int,
    queue_id: u16,
    enable: c_int,
) -> c_int {
    boundary!(-1, { device::get(vid).map_or(-1, |d| net::set_guest_notification(d, queue_id, enable != 0)) })
}

/// DPDK_23
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
        // mbuf the burst may read; Option<Mbuf> has the layout of such a pointer.
        let mbufs = unsafe { std::slice::from_raw_parts(pkts.cast::<Option<Mbuf>>(), n) };
        net::enqueue_burst(dev, queue_id, mbufs)
    })
}

/// EXPERIMENTAL
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

/// DPDK_23
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

/// DPDK_23
#[no_mangle]
pub unsafe extern "C" fn rte_vhost_vring_call(vid: c_int, vring_idx: u16) -> c_int {
    boundary!(-1, { device::get(vid).map_or(-1, |d| net::vring_call(d, vring_idx, true)) })
}

/// EXPERIMENTAL
#[no_mangle]
pub unsafe extern "C" fn rte_vhost_vring_call_nonblock(vid: c_int, vring_idx: u16) -> c_int {
    boundary!(-1, { device::get(vid).map_or(-1, |d| net::vring_call(d, vring_idx, false)) })
}

/// DPDK_23
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

/// DPDK_23
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

/// DPDK_23
#[no_mangle]
pub unsafe extern "C" fn rte_vhost_vring_stats_reset(vid: c_int, queue_id: u16) -> c_int {
    boundary!(-1, { device::get(vid).map_or(-1, |d| net::vring_stats_reset(d, queue_id)) })
}
