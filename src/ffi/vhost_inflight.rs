//! The inflight-tracking API of `rte_vhost.h` (used by storage back-ends such
//! as examples/vhost_blk and SPDK).

use std::ffi::c_int;

use crate::abi::*;
use crate::device;
use crate::protocol::features::ProtocolFeature;
use crate::virtqueue::inflight::InflightError;
use crate::virtqueue::VqState;

/// Why an inflight call cannot proceed.
enum Skip {
    /// INFLIGHT_SHMFD not negotiated: DPDK returns 0 (nothing to track).
    NotNegotiated,
    Invalid,
}

/// Runs `f` on ring `qid` when the device negotiated INFLIGHT_SHMFD.
fn with_inflight(vid: c_int, qid: u16, f: impl FnOnce(&mut VqState) -> Result<(), InflightError>) -> c_int {
    let run = || -> Result<(), Skip> {
        let dev = device::get(vid).ok_or(Skip::Invalid)?;
        if !dev.has_protocol_feature(ProtocolFeature::INFLIGHT_SHMFD) {
            return Err(Skip::NotNegotiated);
        }
        let mut vq = dev.vq(qid).ok_or(Skip::Invalid)?.lock();
        f(&mut vq).map_err(|_| Skip::Invalid)
    };
    match run() {
        Ok(()) | Err(Skip::NotNegotiated) => 0,
        Err(Skip::Invalid) => -1,
    }
}

/// Set split inflight descriptor.
///
/// This function save descriptors that has been consumed in available
/// ring
///
/// @param vid
///  vhost device ID
/// @param vring_idx
///  vring index
/// @param idx
///  inflight entry index
/// @return
///  0 on success, -1 on failure
///
/// # Safety
/// Takes no pointers: any argument values may be passed (invalid ones return
/// -1).
///
/// Symbol version: DPDK_23
#[no_mangle]
pub unsafe extern "C" fn rte_vhost_set_inflight_desc_split(vid: c_int, vring_idx: u16, idx: u16) -> c_int {
    boundary!(-1, { with_inflight(vid, vring_idx, |vq| vq.inflight_submit_split(idx)) })
}

/// Set packed inflight descriptor and get corresponding inflight entry
///
/// This function save descriptors that has been consumed
///
/// @param vid
///  vhost device ID
/// @param vring_idx
///  vring index
/// @param head
///  head of descriptors
/// @param last
///  last of descriptors
/// @param inflight_entry
///  corresponding inflight entry
/// @return
///  0 on success, -1 on failure
///
/// # Safety
/// `inflight_entry` must be NULL or valid for writing a `uint16_t`.
///
/// Symbol version: DPDK_23
#[no_mangle]
pub unsafe extern "C" fn rte_vhost_set_inflight_desc_packed(
    vid: c_int,
    vring_idx: u16,
    head: u16,
    last: u16,
    inflight_entry: *mut u16,
) -> c_int {
    boundary!(-1, {
        with_inflight(vid, vring_idx, |vq| {
            let entry = vq.inflight_submit_packed(head, last)?;
            if !inflight_entry.is_null() {
                // SAFETY: caller's out-pointer.
                unsafe { inflight_entry.write(entry) };
            }
            Ok(())
        })
    })
}

/// Clear the split inflight status.
///
/// @param vid
///  vhost device ID
/// @param vring_idx
///  vring index
/// @param last_used_idx
///  last used idx of used ring
/// @param idx
///  inflight entry index
/// @return
///  0 on success, -1 on failure
///
/// # Safety
/// Takes no pointers: any argument values may be passed (invalid ones return
/// -1).
///
/// Symbol version: DPDK_23
#[no_mangle]
pub unsafe extern "C" fn rte_vhost_clr_inflight_desc_split(
    vid: c_int,
    vring_idx: u16,
    last_used_idx: u16,
    idx: u16,
) -> c_int {
    boundary!(-1, { with_inflight(vid, vring_idx, |vq| vq.inflight_complete_split(last_used_idx, idx)) })
}

/// Clear the packed inflight status.
///
/// @param vid
///  vhost device ID
/// @param vring_idx
///  vring index
/// @param head
///  inflight entry index
/// @return
///  0 on success, -1 on failure
///
/// # Safety
/// Takes no pointers: any argument values may be passed (invalid ones return
/// -1).
///
/// Symbol version: DPDK_23
#[no_mangle]
pub unsafe extern "C" fn rte_vhost_clr_inflight_desc_packed(vid: c_int, vring_idx: u16, head: u16) -> c_int {
    boundary!(-1, { with_inflight(vid, vring_idx, |vq| vq.inflight_complete_packed(head)) })
}

/// Save the head of list that the last batch of used descriptors.
///
/// @param vid
///  vhost device ID
/// @param vring_idx
///  vring index
/// @param idx
///  descriptor entry index
/// @return
///  0 on success, -1 on failure
///
/// # Safety
/// Takes no pointers: any argument values may be passed (invalid ones return
/// -1).
///
/// Symbol version: DPDK_23
#[no_mangle]
pub unsafe extern "C" fn rte_vhost_set_last_inflight_io_split(vid: c_int, vring_idx: u16, idx: u16) -> c_int {
    boundary!(-1, { with_inflight(vid, vring_idx, |vq| vq.inflight_set_last_split(idx)) })
}

/// Update the inflight free_head, used_idx and used_wrap_counter.
///
/// This function will update status first before updating descriptors
/// to used
///
/// @param vid
///  vhost device ID
/// @param vring_idx
///  vring index
/// @param head
///  head of descriptors
/// @return
///  0 on success, -1 on failure
///
/// # Safety
/// Takes no pointers: any argument values may be passed (invalid ones return
/// -1).
///
/// Symbol version: DPDK_23
#[no_mangle]
pub unsafe extern "C" fn rte_vhost_set_last_inflight_io_packed(
    vid: c_int,
    vring_idx: u16,
    head: u16,
) -> c_int {
    boundary!(-1, { with_inflight(vid, vring_idx, |vq| vq.inflight_set_last_packed(head)) })
}

/// Get guest inflight vring info, including inflight ring and resubmit list.
///
/// @param vid
///  vhost device ID
/// @param vring_idx
///  vring index
/// @param vring
///  the structure to hold the requested inflight vring info
/// @return
///  0 on success, -1 on failure
///
/// # Safety
/// `vring` must be NULL or valid for writing a
/// `struct rte_vhost_ring_inflight`. The pointers returned in it stay valid
/// until the device is destroyed or the front-end sets a new inflight area.
///
/// Symbol version: DPDK_23
#[no_mangle]
pub unsafe extern "C" fn rte_vhost_get_vhost_ring_inflight(
    vid: c_int,
    vring_idx: u16,
    vring: *mut rte_vhost_ring_inflight,
) -> c_int {
    boundary!(-1, {
        let Some(dev) = device::get(vid) else { return -1 };
        let Some(vq) = dev.vq(vring_idx) else { return -1 };
        if vring.is_null() {
            return -1;
        }
        let mut s = vq.lock();
        let Some(q) = s.inflight() else { return -1 };
        let info = if q.is_packed() { q.packed_info().cast() } else { q.split_info().cast() };
        let resubmit = s.resubmit_mut().map_or(std::ptr::null_mut(), |r| r.as_ptr());
        // SAFETY: checked non-NULL; caller's contract.
        unsafe { vring.write(rte_vhost_ring_inflight { inflight: info, resubmit_inflight: resubmit }) };
        0
    })
}

/// Get last_avail/last_used of the vhost virtqueue
///
/// This function is designed for the reconnection and it's specific for
/// the packed ring as we can get the two parameters from the inflight
/// queueregion
///
/// @param vid
///  vhost device ID
/// @param queue_id
///  vhost queue index
/// @param last_avail_idx
///  vhost last_avail_idx to get
/// @param last_used_idx
///  vhost last_used_idx to get
/// @return
///  0 on success, -1 on failure
///
/// # Safety
/// `last_avail_idx` and `last_used_idx` must each be NULL or valid for
/// writing a `uint16_t`.
///
/// Symbol version: DPDK_23
#[no_mangle]
pub unsafe extern "C" fn rte_vhost_get_vring_base_from_inflight(
    vid: c_int,
    queue_id: u16,
    last_avail_idx: *mut u16,
    last_used_idx: *mut u16,
) -> c_int {
    boundary!(-1, {
        let Some(dev) = device::get(vid) else { return -1 };
        let Some(vq) = dev.vq(queue_id) else { return -1 };
        let base = || {
            let s = vq.lock();
            let base = s.inflight().filter(|q| q.is_packed())?.base_from_packed();
            Some((base, base))
        };
        // SAFETY: each NULL or writable, the caller's contract.
        unsafe { super::write_pair(last_avail_idx, last_used_idx, base) }
    })
}
