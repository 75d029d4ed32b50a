//! `rte_vhost_crypto.h`: virtio-crypto back-end (`crate::crypto`).

use std::ffi::{c_char, c_int};
use std::sync::Arc;

use super::callbacks::CryptoHooks;
use super::cstr_arg;
use crate::abi::*;
use crate::crypto::{self, CryptoError};
use crate::dpdk::crypto::{CryptoOp, SessionPool};
use crate::protocol::features::{Feature, Features, ProtocolFeature, ProtocolFeatures};
use crate::socket;
use crate::vlog;

/// 22.11's `VIRTIO_CRYPTO_FEATURES`, offered by `rte_vhost_crypto_driver_start`.
const VIRTIO_CRYPTO_FEATURES: Features = Features::of(&[
    Feature::NOTIFY_ON_EMPTY,
    Feature::RING_INDIRECT_DESC,
    Feature::RING_EVENT_IDX,
    Feature::NET_CTRL_VQ,
    Feature::VERSION_1,
    Feature::PROTOCOL_FEATURES,
]);

/// Borrows the application's op array (NULL entries end it).
///
/// # Safety
/// `ops` must be NULL or valid for reading `n` pointers, each NULL or a
/// crypto op the caller hands over for the call.
unsafe fn op_array<'a>(ops: *mut *mut rte_crypto_op, n: u16) -> &'a [Option<CryptoOp>] {
    if ops.is_null() {
        return &[];
    }
    // SAFETY: per the caller's contract; Option<CryptoOp> has the layout of
    // a nullable op pointer (NonNull inside).
    unsafe { std::slice::from_raw_parts(ops.cast::<Option<CryptoOp>>(), usize::from(n)) }
}

/// Create Vhost-crypto instance
///
/// @param vid
///  The identifier of the vhost device.
/// @param cryptodev_id
///  The identifier of DPDK Cryptodev, the same cryptodev_id can be assigned to
///  multiple Vhost-crypto devices.
/// @param sess_pool
///  The pointer to the created cryptodev session pool.
/// @param socket_id
///  NUMA Socket ID to allocate resources on.
/// @return
///  0 if the Vhost Crypto Instance is created successfully.
///  Negative integer if otherwise
///
/// # Safety
/// `sess_pool` must be NULL or a valid cryptodev session pool that outlives
/// the instance (until rte_vhost_crypto_free()).
///
/// Symbol version: DPDK_23
#[no_mangle]
pub unsafe extern "C" fn rte_vhost_crypto_create(
    vid: c_int,
    cryptodev_id: u8,
    sess_pool: *mut rte_mempool,
    socket_id: c_int,
) -> c_int {
    boundary!(-1, {
        // SAFETY: the caller's contract on `sess_pool`.
        let Some(pool) = (unsafe { SessionPool::from_raw(sess_pool) }) else {
            vlog!(Config, Err, "VHOST-Crypto", "rte_vhost_crypto_create: no session pool");
            return -libc::EINVAL;
        };
        if let Err(e) = crypto::create(vid, cryptodev_id, pool, socket_id) {
            return e.errno();
        }
        if !socket::set_message_hooks(vid, Arc::new(CryptoHooks)) {
            let _ = crypto::free(vid);
            return -libc::EINVAL;
        }
        0
    })
}

/// Start vhost crypto driver
///
/// @param path
///  The vhost-user socket file path
/// @return
///  0 on success, -1 on failure
///
/// # Safety
/// `path` must be NULL or a NUL-terminated string.
///
/// Symbol version: EXPERIMENTAL
#[no_mangle]
pub unsafe extern "C" fn rte_vhost_crypto_driver_start(path: *const c_char) -> c_int {
    boundary!(-1, {
        // SAFETY: the caller's contract on `path`.
        let Some(path_str) = (unsafe { cstr_arg(path) }) else { return -1 };
        let configured = socket::with_config(path_str, |c| {
            c.supported_features = VIRTIO_CRYPTO_FEATURES;
            c.features = VIRTIO_CRYPTO_FEATURES;
            c.use_builtin_virtio_net = false;
            c.protocol_features = c.protocol_features.union(ProtocolFeatures::of(&[ProtocolFeature::CONFIG]));
            c.crypto = true;
        });
        if let Err(e) = configured {
            vlog!(Config, Err, path_str, "{e}.");
            return -1;
        }
        // SAFETY: as above.
        unsafe { super::vhost_driver::rte_vhost_driver_start(path) }
    })
}

/// Fetch a number of vring descriptors from virt-queue and translate to DPDK
/// crypto operations. After this function is executed, the user can enqueue
/// the processed ops to the target cryptodev.
///
/// @param vid
///  The identifier of the vhost device.
/// @param qid
///  Virtio queue index.
/// @param ops
///  The address of an array of pointers to *rte_crypto_op* structures that must
///  be large enough to store *nb_ops* pointers in it.
/// @param nb_ops
///  The maximum number of operations to be fetched and translated.
/// @return
///  The number of fetched and processed vhost crypto request operations.
///
/// # Safety
/// `ops` must be NULL or valid for writing `nb_ops` pointers.
///
/// Symbol version: DPDK_23
#[no_mangle]
pub unsafe extern "C" fn rte_vhost_crypto_fetch_requests(
    vid: c_int,
    qid: u32,
    ops: *mut *mut rte_crypto_op,
    nb_ops: u16,
) -> u16 {
    boundary!(0, {
        // SAFETY: the caller's contract on `ops`.
        let ops = unsafe { op_array(ops, nb_ops) };
        crypto::fetch_requests(vid, qid, ops)
    })
}

/// Finalize the dequeued crypto ops. After the translated crypto ops are
/// dequeued from the cryptodev, this function shall be called to write the
/// processed data back to the vring descriptor (if no-copy is turned off).
///
/// @param ops
///  The address of an array of *rte_crypto_op* structure that was dequeued
///  from cryptodev.
/// @param nb_ops
///  The number of operations contained in the array.
/// @param callfds
///  The callfd number(s) contained in this burst, this shall be an array with
///  no less than VIRTIO_CRYPTO_MAX_NUM_BURST_VQS elements.
/// @param nb_callfds
///  The number of call_fd numbers exist in the callfds.
/// @return
///  The number of ops processed.
///
/// # Safety
/// `ops` must be NULL or point to `nb_ops` crypto operations returned by
/// rte_vhost_crypto_fetch_requests() and dequeued from the cryptodev;
/// `callfds` NULL or valid for writing `VIRTIO_CRYPTO_MAX_NUM_BURST_VQS`
/// ints, and `nb_callfds` NULL or valid for writing a `uint16_t`.
///
/// Symbol version: DPDK_23
#[no_mangle]
pub unsafe extern "C" fn rte_vhost_crypto_finalize_requests(
    ops: *mut *mut rte_crypto_op,
    nb_ops: u16,
    callfds: *mut c_int,
    nb_callfds: *mut u16,
) -> u16 {
    boundary!(0, {
        if callfds.is_null() || nb_callfds.is_null() {
            return 0;
        }
        // SAFETY: the caller's contract on `ops`.
        let ops = unsafe { op_array(ops, nb_ops) };
        let mut fds = Vec::with_capacity(crypto::MAX_CALLFDS);
        let done = crypto::finalize_requests(ops, &mut fds);
        // SAFETY: room for MAX_CALLFDS ints and a u16, per the contract.
        unsafe {
            std::ptr::copy_nonoverlapping(fds.as_ptr(), callfds, fds.len());
            nb_callfds.write(fds.len() as u16);
        }
        done
    })
}

/// Free the Vhost-crypto instance
///
/// @param vid
///  The identifier of the vhost device.
/// @return
///  0 if the Vhost Crypto Instance is freed successfully.
///  Negative integer if otherwise.
///
/// # Safety
/// Takes no pointers: any `vid` may be passed (an invalid one returns a
/// negative value).
///
/// Symbol version: DPDK_23
#[no_mangle]
pub unsafe extern "C" fn rte_vhost_crypto_free(vid: c_int) -> c_int {
    boundary!(-1, { crypto::free(vid).map_or_else(CryptoError::errno, |()| 0) })
}

/// Enable or disable zero copy feature
///
/// @param vid
///  The identifier of the vhost device.
/// @param option
///  Flag of zero copy feature.
/// @return
///  0 if completed successfully.
///  Negative integer if otherwise.
///
/// # Safety
/// Takes no pointers: any argument values may be passed (invalid ones return
/// a negative value).
///
/// Symbol version: DPDK_23
#[no_mangle]
pub unsafe extern "C" fn rte_vhost_crypto_set_zero_copy(
    vid: c_int,
    option: rte_vhost_crypto_zero_copy,
) -> c_int {
    boundary!(-1, { crypto::set_zero_copy(vid, option).map_or_else(CryptoError::errno, |()| 0) })
}
