//! Per-device queries and controls of `rte_vhost.h` (by vid).

use std::ffi::{c_char, c_int};

use super::{write_out, write_pair};
use crate::abi::*;
use crate::device::{self, Device};
use crate::ffi::callbacks::ExternOps;
use crate::protocol::features::Feature;
use crate::virtqueue::RingError;

fn dev(vid: c_int) -> Option<&'static Device> {
    device::get(vid)
}

/// Get the virtio net device's ifname, which is the vhost-user socket
/// file path.
///
/// @param vid
///  vhost device ID
/// @param buf
///  The buffer to stored the queried ifname
/// @param len
///  The length of buf
///
/// @return
///  0 on success, -1 on failure
///
/// # Safety
/// `buf` must be NULL or valid for writing `len` bytes.
///
/// Symbol version: DPDK_23
#[no_mangle]
pub unsafe extern "C" fn rte_vhost_get_ifname(vid: c_int, buf: *mut c_char, len: usize) -> c_int {
    boundary!(-1, {
        let Some(d) = dev(vid) else { return -1 };
        if buf.is_null() || len == 0 {
            return -1;
        }
        let name = d.ifname();
        let n = name.len().min(len - 1);
        // SAFETY: the caller provides `len` writable bytes at `buf`; we write n+1 <= len.
        unsafe {
            std::ptr::copy_nonoverlapping(name.as_ptr(), buf.cast::<u8>(), n);
            *buf.add(n) = 0;
        }
        0
    })
}

/// Get the feature bits after negotiation
///
/// @param vid
///  Vhost device ID
/// @param features
///  A pointer to store the queried feature bits
/// @return
///  0 on success, -1 on failure
///
/// # Safety
/// `features` must be NULL or valid for writing a `uint64_t`.
///
/// Symbol version: DPDK_23
#[no_mangle]
pub unsafe extern "C" fn rte_vhost_get_negotiated_features(vid: c_int, features: *mut u64) -> c_int {
    boundary!(-1, {
        let Some(d) = dev(vid) else { return -1 };
        // SAFETY: caller's contract on the out-pointer (NULL is refused).
        unsafe { write_out(features, d.features()) }
    })
}

/// Get the protocol feature bits after negotiation
///
/// @param vid
///  Vhost device ID
/// @param features
///  A pointer to store the queried protocol feature bits
/// @return
///  0 on success, -1 on failure
///
/// # Safety
/// `features` must be NULL or valid for writing a `uint64_t`.
///
/// Symbol version: EXPERIMENTAL
#[no_mangle]
pub unsafe extern "C" fn rte_vhost_get_negotiated_protocol_features(vid: c_int, features: *mut u64) -> c_int {
    boundary!(-1, {
        let Some(d) = dev(vid) else { return -1 };
        // SAFETY: caller's contract on the out-pointer (NULL is refused).
        unsafe { write_out(features, d.protocol_features().bits()) }
    })
}

/// Get the MTU value of the device if set in QEMU.
///
/// @param vid
///  virtio-net device ID
/// @param mtu
///  The variable to store the MTU value
///
/// @return
///  0: success
///  -EAGAIN: device not yet started
///  -ENOTSUP: device does not support MTU feature
///
/// # Safety
/// `mtu` must be NULL or valid for writing a `uint16_t`.
///
/// Symbol version: DPDK_23
#[no_mangle]
pub unsafe extern "C" fn rte_vhost_get_mtu(vid: c_int, mtu: *mut u16) -> c_int {
    boundary!(-1, {
        let Some(d) = dev(vid) else {
            return -libc::ENODEV;
        };
        if mtu.is_null() {
            return -libc::ENODEV;
        }
        let Some(value) = d.mtu() else {
            return -libc::EAGAIN;
        };
        if !d.has_feature(Feature::NET_MTU) {
            return -libc::ENOTSUP;
        }
        // SAFETY: checked non-NULL; caller's contract.
        unsafe { write_out(mtu, value) }
    })
}

/// Get the numa node from which the virtio net device's memory
/// is allocated.
///
/// @param vid
///  vhost device ID
///
/// @return
///  The numa node, -1 on failure
///
/// # Safety
/// Takes no pointers: any `vid` may be passed (an invalid one returns -1).
///
/// Symbol version: DPDK_23
#[no_mangle]
pub unsafe extern "C" fn rte_vhost_get_numa_node(vid: c_int) -> c_int {
    boundary!(-1, {
        let Some(d) = dev(vid) else { return -1 };
        let mem = d.mem();
        crate::guest::numa_node_of(&mem).unwrap_or(-1)
    })
}

/// Get the number of vrings the device supports.
///
/// @param vid
///  vhost device ID
///
/// @return
///  The number of vrings, 0 on failure
///
/// # Safety
/// Takes no pointers: any `vid` may be passed (an invalid one returns 0).
///
/// Symbol version: DPDK_23
#[no_mangle]
pub unsafe extern "C" fn rte_vhost_get_vring_num(vid: c_int) -> u16 {
    boundary!(0, { dev(vid).map_or(0, |d| d.nr_vring() as u16) })
}

/// Get guest mem table: a list of memory regions.
///
/// An rte_vhost_vhost_memory object will be allocated internally, to hold the
/// guest memory regions. Application should free it at destroy_device()
/// callback.
///
/// @param vid
///  vhost device ID
/// @param mem
///  To store the returned mem regions
/// @return
///  0 on success, -1 on failure
///
/// # Safety
/// `mem` must be NULL or valid for writing a pointer. The table stored there
/// is allocated with malloc(): the caller releases it with free(). Its
/// addresses stay valid until the guest memory changes (destroy_device(), or
/// a new memory table from the front-end).
///
/// Symbol version: DPDK_23
#[no_mangle]
pub unsafe extern "C" fn rte_vhost_get_mem_table(vid: c_int, mem: *mut *mut rte_vhost_memory) -> c_int {
    boundary!(-1, {
        let Some(d) = dev(vid) else { return -1 };
        if mem.is_null() {
            return -1;
        }
        {
            let table = d.mem();
            let regions = table.regions();
            let size = std::mem::size_of::<rte_vhost_memory>()
                + regions.len() * std::mem::size_of::<rte_vhost_mem_region>();
            // SAFETY: libc malloc, as DPDK does: the caller releases it with free().
            let out = unsafe { libc::malloc(size) }.cast::<rte_vhost_memory>();
            if out.is_null() {
                return -1;
            }
            // SAFETY: `out` points to `size` fresh bytes, enough for the header
            // and `regions.len()` region entries.
            unsafe {
                (*out).nregions = regions.len() as u32;
                let first = std::ptr::addr_of_mut!((*out).regions).cast::<rte_vhost_mem_region>();
                for (i, r) in regions.iter().enumerate() {
                    first.add(i).write(rte_vhost_mem_region {
                        guest_phys_addr: r.guest_phys_addr,
                        guest_user_addr: r.guest_user_addr,
                        host_user_addr: r.host_user_addr,
                        size: r.size,
                        mmap_addr: r.mmap_addr() as *mut _,
                        mmap_size: r.mmap_size(),
                        fd: r.fd(),
                    });
                }
                *mem = out;
            }
            0
        }
    })
}

/// Get guest vring info, including the vring address, vring size, etc.
///
/// @param vid
///  vhost device ID
/// @param vring_idx
///  vring index
/// @param vring
///  the structure to hold the requested vring info
/// @return
///  0 on success, -1 on failure
///
/// # Safety
/// `vring` must be NULL or valid for writing a `struct rte_vhost_vring`. The
/// ring addresses returned point into guest memory: they stay valid until
/// the device is destroyed or its memory or rings change.
///
/// Symbol version: DPDK_23
#[no_mangle]
pub unsafe extern "C" fn rte_vhost_get_vhost_vring(
    vid: c_int,
    vring_idx: u16,
    vring: *mut rte_vhost_vring,
) -> c_int {
    boundary!(-1, {
        let Some(d) = dev(vid) else { return -1 };
        let Some(vq) = d.vq(vring_idx) else { return -1 };
        if vring.is_null() {
            return -1;
        }
        let s = vq.lock();
        let (desc, avail, used) = s.ring().map_or((0, 0, 0), |r| r.addresses());
        let out = rte_vhost_vring {
            desc: desc as *mut _,
            avail: avail as *mut _,
            used: used as *mut _,
            log_guest_addr: s.log_guest_addr(),
            callfd: s.call().raw(),
            kickfd: s.kick().raw(),
            size: s.num(),
        };
        // SAFETY: checked non-NULL; caller's contract.
        unsafe { vring.write(out) };
        0
    })
}

/// Get last_avail/used_idx of the vhost virtqueue
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
pub unsafe extern "C" fn rte_vhost_get_vring_base(
    vid: c_int,
    queue_id: u16,
    last_avail_idx: *mut u16,
    last_used_idx: *mut u16,
) -> c_int {
    boundary!(-1, {
        let Some(d) = dev(vid) else { return -1 };
        let Some(vq) = d.vq(queue_id) else { return -1 };
        // SAFETY: each NULL or writable, the caller's contract.
        unsafe { write_pair(last_avail_idx, last_used_idx, || Some(vq.lock().positions())) }
    })
}

/// Set last_avail/used_idx of the vhost virtqueue
///
/// @param vid
///  vhost device ID
/// @param queue_id
///  vhost queue index
/// @param last_avail_idx
///  last_avail_idx to set
/// @param last_used_idx
///  last_used_idx to set
/// @return
///  0 on success, -1 on failure
///
/// # Safety
/// Takes no pointers: any argument values may be passed (invalid ones return
/// -1).
///
/// Symbol version: DPDK_23
#[no_mangle]
pub unsafe extern "C" fn rte_vhost_set_vring_base(
    vid: c_int,
    queue_id: u16,
    last_avail_idx: u16,
    last_used_idx: u16,
) -> c_int {
    boundary!(-1, {
        let Some(d) = dev(vid) else { return -1 };
        let Some(vq) = d.vq(queue_id) else { return -1 };
        match vq.lock().set_positions(last_avail_idx, last_used_idx) {
            // A ring that no longer translates is left not ready.
            Ok(()) | Err(RingError::Untranslated(_)) => 0,
            Err(_) => -1,
        }
    })
}

/// Get log base and log size of the vhost device
///
/// @param vid
///  vhost device ID
/// @param log_base
///  vhost log base
/// @param log_size
///  vhost log size
/// @return
///  0 on success, -1 on failure
///
/// # Safety
/// `log_base` and `log_size` must each be NULL or valid for writing a
/// `uint64_t`.
///
/// Symbol version: DPDK_23
#[no_mangle]
pub unsafe extern "C" fn rte_vhost_get_log_base(vid: c_int, log_base: *mut u64, log_size: *mut u64) -> c_int {
    boundary!(-1, {
        let Some(d) = dev(vid) else { return -1 };
        // SAFETY: each NULL or writable, the caller's contract.
        unsafe { write_pair(log_base, log_size, || Some(d.log_area())) }
    })
}

/// Log the memory write start with given address.
///
/// This function only need be invoked when the live migration starts.
/// Therefore, we won't need call it at all in the most of time. For
/// making the performance impact be minimum, it's suggested to do a
/// check before calling it:
///
/// ```c
/// if (unlikely(RTE_VHOST_NEED_LOG(features)))
///         rte_vhost_log_write(vid, addr, len);
/// ```
///
/// @param vid
///  vhost device ID
/// @param addr
///  the starting address for write (in guest physical address space)
/// @param len
///  the length to write
///
/// # Safety
/// Takes no pointers: any argument values may be passed.
///
/// Symbol version: DPDK_23
#[no_mangle]
pub unsafe extern "C" fn rte_vhost_log_write(vid: c_int, addr: u64, len: u64) {
    boundary!((), {
        if let Some(d) = dev(vid) {
            d.log_write(addr, len);
        }
    })
}

/// Log the used ring update start at given offset.
///
/// Same as rte_vhost_log_write, it's suggested to do a check before
/// calling it:
///
/// ```c
/// if (unlikely(RTE_VHOST_NEED_LOG(features)))
///         rte_vhost_log_used_vring(vid, vring_idx, offset, len);
/// ```
///
/// @param vid
///  vhost device ID
/// @param vring_idx
///  the vring index
/// @param offset
///  the offset inside the used ring
/// @param len
///  the length to write
///
/// # Safety
/// Takes no pointers: any argument values may be passed.
///
/// Symbol version: DPDK_23
#[no_mangle]
pub unsafe extern "C" fn rte_vhost_log_used_vring(vid: c_int, vring_idx: u16, offset: u64, len: u64) {
    boundary!((), {
        if let Some(d) = dev(vid) {
            d.log_used_vring(vring_idx, offset, len);
        }
    })
}

/// Register external message handling callbacks
///
/// @param vid
///  vhost device ID
/// @param ops
///  virtio external callbacks to register
/// @param ctx
///  additional context passed to the callbacks
/// @return
///  0 on success, -1 on failure
///
/// # Safety
/// `ops` must be NULL or point to a readable
/// `struct rte_vhost_user_extern_ops`; it is copied, so it need not outlive
/// the call. The callbacks must stay callable while the device exists, and
/// are called from the library's threads. `ctx` is not dereferenced.
///
/// Symbol version: DPDK_23
#[no_mangle]
pub unsafe extern "C" fn rte_vhost_extern_callback_register(
    vid: c_int,
    ops: *const rte_vhost_user_extern_ops,
    ctx: *mut std::ffi::c_void,
) -> c_int {
    boundary!(-1, {
        if dev(vid).is_none() || ops.is_null() {
            return -1;
        }
        // SAFETY: non-NULL; DPDK copies the structure, and so do we.
        let ops = unsafe { ops.read() };
        if crate::socket::set_message_hooks(vid, std::sync::Arc::new(ExternOps::new(ops, ctx))) {
            0
        } else {
            -1
        }
    })
}

/// Get vdpa device id for vhost device.
///
/// @param vid
///  vhost device id
/// @return
///  vDPA device pointer on success, NULL on failure
///
/// # Safety
/// Takes no pointers: any `vid` may be passed (an invalid one returns NULL).
///
/// Symbol version: DPDK_23
#[no_mangle]
pub unsafe extern "C" fn rte_vhost_get_vdpa_device(vid: c_int) -> *mut rte_vdpa_device {
    boundary!(std::ptr::null_mut(), {
        dev(vid).map_or(std::ptr::null_mut(), |d| {
            d.vdpa().map_or(std::ptr::null_mut(), |id| id.0 as *mut rte_vdpa_device)
        })
    })
}

/// `rte_vhost_slave_config_change` (22.11) and its 24.11 name
/// `rte_vhost_backend_config_change`: the same call.
fn config_change(vid: c_int, need_reply: bool) -> c_int {
    let Some(d) = dev(vid) else {
        return -libc::ENODEV;
    };
    match d.backend_config_change(need_reply) {
        Ok(()) => 0,
        Err(e) => e.errno(),
    }
}

/// Notify the guest that should get virtio configuration space from backend.
///
/// @param vid
///  vhost device ID
/// @param need_reply
///  wait for the master response the status of this operation
/// @return
///  0 on success, < 0 on failure
///
/// # Safety
/// Takes no pointers: any argument values may be passed (invalid ones return
/// a negative value).
///
/// Symbol version: EXPERIMENTAL
#[cfg(not(feature = "abi-24-11"))]
#[no_mangle]
pub unsafe extern "C" fn rte_vhost_slave_config_change(vid: c_int, need_reply: bool) -> c_int {
    boundary!(-1, { config_change(vid, need_reply) })
}

/// Notify the guest that should get virtio configuration space from backend.
///
/// @param vid
///  vhost device ID
/// @param need_reply
///  wait for the frontend response the status of this operation
/// @return
///  0 on success, < 0 on failure
///
/// # Safety
/// Takes no pointers: any argument values may be passed (invalid ones return
/// a negative value).
///
/// Symbol version: DPDK_25
#[cfg(feature = "abi-24-11")]
#[no_mangle]
pub unsafe extern "C" fn rte_vhost_backend_config_change(vid: c_int, need_reply: bool) -> c_int {
    boundary!(-1, { config_change(vid, need_reply) })
}
