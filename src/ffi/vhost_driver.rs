//! `rte_vhost_driver_*`: registering and configuring vhost-user sockets.

use std::ffi::{c_char, c_int};

use super::callbacks::DeviceOps;
use super::{cstr_arg, write_out};
use crate::abi::*;
use crate::protocol::features::{Features, ProtocolFeatures};
use crate::socket::{self, SocketConfig};
use crate::vdpa::driver::VdpaDevice;
use crate::vlog;

/// Runs `f` on the configuration of the socket at `path`; -1 (and a log line)
/// if the path is NULL, not UTF-8 or not registered.
unsafe fn with_socket(path: *const c_char, f: impl FnOnce(&mut SocketConfig) -> c_int) -> c_int {
    // SAFETY: forwarded from the caller's contract (NUL-terminated or NULL).
    let Some(path) = (unsafe { cstr_arg(path) }) else {
        return -1;
    };
    match socket::with_config(path, f) {
        Ok(rc) => rc,
        Err(e) => {
            vlog!(Config, Err, path, "{e}.");
            -1
        }
    }
}

/// Register vhost driver. path could be different for multiple
/// instance support.
///
/// This function registers a vhost driver into the system: `path` specifies
/// the Unix domain socket file path, `flags` a combination of:
/// - `RTE_VHOST_USER_CLIENT`: act as the client (connect to `path`) instead
///   of the server.
/// - `RTE_VHOST_USER_NO_RECONNECT`: as a client, do not keep trying to
///   reconnect to the server until it succeeds.
/// - `RTE_VHOST_USER_IOMMU_SUPPORT`: enable guest vIOMMU support.
/// - `RTE_VHOST_USER_POSTCOPY_SUPPORT`: enable postcopy live-migration; only
///   if the application does not pre-fault the guest shared memory.
/// - `RTE_VHOST_USER_LINEARBUF_SUPPORT`: dequeue provides only linear
///   (single-segment) mbufs.
/// - `RTE_VHOST_USER_EXTBUF_SUPPORT`: dequeue may attach an external buffer
///   to an mbuf too small for the packet.
/// - `RTE_VHOST_USER_ASYNC_COPY`: enable the asynchronous data path.
/// - `RTE_VHOST_USER_NET_COMPLIANT_OL_FLAGS`: report offloads of received
///   packets as Rx offload metadata instead of the legacy Tx metadata.
/// - `RTE_VHOST_USER_NET_STATS_ENABLE`: enable per-virtqueue statistics.
///
/// @param path
///  The vhost-user socket file path
/// @param flags
///  RTE_VHOST_USER_* flags
/// @return
///  0 on success, -1 on failure
///
/// # Safety
/// `path` must be NULL or a NUL-terminated string.
///
/// Symbol version: DPDK_23
#[no_mangle]
pub unsafe extern "C" fn rte_vhost_driver_register(path: *const c_char, flags: u64) -> c_int {
    boundary!(-1, {
        // SAFETY: the caller passes a NUL-terminated path or NULL.
        let Some(path) = (unsafe { cstr_arg(path) }) else {
            return -1;
        };
        match socket::register(path, flags) {
            Ok(()) => 0,
            Err(e) => {
                vlog!(Config, Err, path, "{e}");
                -1
            }
        }
    })
}

/// Unregister vhost driver. This is only meaningful to vhost user.
///
/// Closes the socket (and its connections) registered with
/// rte_vhost_driver_register() for `path`.
///
/// @param path
///  The vhost-user socket file path
/// @return
///  0 on success, -1 on failure
///
/// # Safety
/// `path` must be NULL or a NUL-terminated string.
///
/// Symbol version: DPDK_23
#[no_mangle]
pub unsafe extern "C" fn rte_vhost_driver_unregister(path: *const c_char) -> c_int {
    boundary!(-1, {
        // SAFETY: as above.
        let Some(path) = (unsafe { cstr_arg(path) }) else {
            return -1;
        };
        match socket::unregister(path) {
            Ok(()) => 0,
            Err(_) => -1,
        }
    })
}

/// Start the vhost-user driver.
///
/// This function triggers the vhost-user negotiation.
///
/// @param path
///  The vhost-user socket file path
/// @return
///  0 on success, -1 on failure
///
/// # Safety
/// `path` must be NULL or a NUL-terminated string.
///
/// Symbol version: DPDK_23
#[no_mangle]
pub unsafe extern "C" fn rte_vhost_driver_start(path: *const c_char) -> c_int {
    boundary!(-1, {
        // SAFETY: as above.
        let Some(path) = (unsafe { cstr_arg(path) }) else {
            return -1;
        };
        match socket::start(path) {
            Ok(()) => 0,
            Err(e) => {
                vlog!(Config, Err, path, "failed to start: {e}");
                -1
            }
        }
    })
}

/// Register callbacks.
///
/// This function registers a set of callbacks, to let DPDK applications take
/// the appropriate action when some events happen (see
/// struct rte_vhost_device_ops): `new_device` when a virtio device becomes
/// ready, `destroy_device` when it is paused or shut down,
/// `vring_state_changed` when a queue is enabled or disabled,
/// `features_changed` when the negotiated features change (for example
/// `VHOST_F_LOG_ALL` at the start and end of live migration),
/// `new_connection` and `destroy_connection` when a vhost-user connection is
/// opened or closed.
///
/// @param path
///  The vhost-user socket file path
/// @param ops
///  the callbacks to register
/// @return
///  0 on success, -1 on failure
///
/// # Safety
/// `path` must be NULL or a NUL-terminated string. `ops` is kept by pointer,
/// not copied: it must be NULL or point to a `struct rte_vhost_device_ops`
/// that stays valid and unchanged while the socket is registered, whose
/// callbacks may be called from the library's threads.
///
/// Symbol version: DPDK_23
#[no_mangle]
pub unsafe extern "C" fn rte_vhost_driver_callback_register(
    path: *const c_char,
    ops: *const rte_vhost_device_ops,
) -> c_int {
    boundary!(-1, {
        // SAFETY: caller's contract on `path`; `ops` is stored by pointer as DPDK does.
        unsafe {
            with_socket(path, |c| {
                c.events = DeviceOps::from_ptr(ops).map(|o| std::sync::Arc::new(o) as _);
                0
            })
        }
    })
}

/// Set the feature bits the vhost-user driver supports.
///
/// @param path
///  The vhost-user socket file path
/// @param features
///  Supported features
/// @return
///  0 on success, -1 on failure
///
/// # Safety
/// `path` must be NULL or a NUL-terminated string.
///
/// Symbol version: DPDK_23
#[no_mangle]
pub unsafe extern "C" fn rte_vhost_driver_set_features(path: *const c_char, features: u64) -> c_int {
    boundary!(-1, {
        // SAFETY: caller's contract on `path`.
        unsafe {
            with_socket(path, |c| {
                c.supported_features = Features::from_bits(features);
                c.features = Features::from_bits(features);
                // Whoever sets feature bits implements their own device type.
                c.use_builtin_virtio_net = false;
                0
            })
        }
    })
}

/// Enable vhost-user driver features.
///
/// Note that
/// - the param features should be a subset of the feature bits provided
///   by rte_vhost_driver_set_features().
/// - it must be invoked before vhost-user negotiation starts.
///
/// @param path
///  The vhost-user socket file path
/// @param features
///  Features to enable
/// @return
///  0 on success, -1 on failure
///
/// # Safety
/// `path` must be NULL or a NUL-terminated string.
///
/// Symbol version: DPDK_23
#[no_mangle]
pub unsafe extern "C" fn rte_vhost_driver_enable_features(path: *const c_char, features: u64) -> c_int {
    boundary!(-1, {
        // SAFETY: caller's contract on `path`.
        unsafe {
            with_socket(path, |c| {
                let features = Features::from_bits(features);
                if !c.supported_features.contains(features) {
                    return -1;
                }
                c.features = c.features.union(features);
                0
            })
        }
    })
}

/// Disable vhost-user driver features.
///
/// The two notes at rte_vhost_driver_enable_features() also apply here.
///
/// @param path
///  The vhost-user socket file path
/// @param features
///  Features to disable
/// @return
///  0 on success, -1 on failure
///
/// # Safety
/// `path` must be NULL or a NUL-terminated string.
///
/// Symbol version: DPDK_23
#[no_mangle]
pub unsafe extern "C" fn rte_vhost_driver_disable_features(path: *const c_char, features: u64) -> c_int {
    boundary!(-1, {
        // SAFETY: caller's contract on `path`.
        unsafe {
            with_socket(path, |c| {
                c.features = c.features.without(Features::from_bits(features));
                0
            })
        }
    })
}

/// Get the feature bits before feature negotiation.
///
/// @param path
///  The vhost-user socket file path
/// @param features
///  A pointer to store the queried feature bits
/// @return
///  0 on success, -1 on failure
///
/// # Safety
/// `path` must be NULL or a NUL-terminated string; `features` NULL or valid
/// for writing a `uint64_t`.
///
/// Symbol version: DPDK_23
#[no_mangle]
pub unsafe extern "C" fn rte_vhost_driver_get_features(path: *const c_char, features: *mut u64) -> c_int {
    boundary!(-1, {
        // SAFETY: caller's contract on `path` and `features`.
        unsafe { with_socket(path, |c| write_out(features, c.features.bits())) }
    })
}

/// Set the protocol feature bits before feature negotiation.
///
/// @param path
///  The vhost-user socket file path
/// @param features
///  Supported protocol features
/// @return
///  0 on success, -1 on failure
///
/// # Safety
/// `path` must be NULL or a NUL-terminated string.
///
/// Symbol version: DPDK_23
#[no_mangle]
pub unsafe extern "C" fn rte_vhost_driver_set_protocol_features(path: *const c_char, features: u64) -> c_int {
    boundary!(-1, {
        // SAFETY: caller's contract on `path`.
        unsafe {
            with_socket(path, |c| {
                c.protocol_features = ProtocolFeatures::from_bits(features);
                0
            })
        }
    })
}

/// Get the protocol feature bits before feature negotiation.
///
/// @param path
///  The vhost-user socket file path
/// @param features
///  A pointer to store the queried protocol feature bits
/// @return
///  0 on success, -1 on failure
///
/// # Safety
/// `path` must be NULL or a NUL-terminated string; `features` NULL or valid
/// for writing a `uint64_t`.
///
/// Symbol version: DPDK_23
#[no_mangle]
pub unsafe extern "C" fn rte_vhost_driver_get_protocol_features(
    path: *const c_char,
    features: *mut u64,
) -> c_int {
    boundary!(-1, {
        // SAFETY: caller's contract on `path` and `features`.
        unsafe { with_socket(path, |c| write_out(features, c.protocol_features.bits())) }
    })
}

/// Get the queue number bits before feature negotiation.
///
/// @param path
///  The vhost-user socket file path
/// @param queue_num
///  A pointer to store the queried queue number bits
/// @return
///  0 on success, -1 on failure
///
/// # Safety
/// `path` must be NULL or a NUL-terminated string; `queue_num` NULL or valid
/// for writing a `uint32_t`.
///
/// Symbol version: DPDK_23
#[no_mangle]
pub unsafe extern "C" fn rte_vhost_driver_get_queue_num(path: *const c_char, queue_num: *mut u32) -> c_int {
    boundary!(-1, {
        // SAFETY: caller's contract on `path` and `queue_num`.
        unsafe { with_socket(path, |c| write_out(queue_num, c.max_queue_pairs)) }
    })
}

/// Set the maximum number of queue pairs supported by the device.
/// The value set is ignored for Vhost-user backends. It is only taken into
/// account with VDUSE backends.
///
/// @param path
///  The vhost-user socket file path
/// @param max_queue_pairs
///  The maximum number of queue pairs
/// @return
///  0 on success, -1 on failure
///
/// # Safety
/// `path` must be NULL or a NUL-terminated string.
///
/// Symbol version: DPDK_25
#[cfg(feature = "abi-24-11")]
#[no_mangle]
pub unsafe extern "C" fn rte_vhost_driver_set_max_queue_num(
    path: *const c_char,
    max_queue_pairs: u32,
) -> c_int {
    boundary!(-1, {
        // SAFETY: the caller passes a NUL-terminated path or NULL.
        let Some(path) = (unsafe { cstr_arg(path) }) else {
            return -1;
        };
        match socket::set_max_queue_pairs(path, max_queue_pairs) {
            Ok(()) => 0,
            Err(_) => -1,
        }
    })
}

/// Set the vdpa device id, enforce single connection per socket
///
/// @param path
///  The vhost-user socket file path
/// @param dev
///  vDPA device pointer
/// @return
///  0 on success, -1 on failure
///
/// # Safety
/// `path` must be NULL or a NUL-terminated string. `dev` may be any value:
/// only a device registered with rte_vdpa_register_device() is accepted.
///
/// Symbol version: DPDK_23
#[no_mangle]
pub unsafe extern "C" fn rte_vhost_driver_attach_vdpa_device(
    path: *const c_char,
    dev: *mut rte_vdpa_device,
) -> c_int {
    boundary!(-1, {
        let Some(dev) = VdpaDevice::from_ptr(dev).filter(|d| crate::vdpa::is_registered(*d)) else {
            return -1;
        };
        // SAFETY: caller's contract on `path`; `dev` is kept by pointer.
        unsafe {
            with_socket(path, |c| {
                c.vdpa = Some(std::sync::Arc::new(dev));
                0
            })
        }
    })
}

/// Unset the vdpa device id
///
/// @param path
///  The vhost-user socket file path
/// @return
///  0 on success, -1 on failure
///
/// # Safety
/// `path` must be NULL or a NUL-terminated string.
///
/// Symbol version: DPDK_23
#[no_mangle]
pub unsafe extern "C" fn rte_vhost_driver_detach_vdpa_device(path: *const c_char) -> c_int {
    boundary!(-1, {
        // SAFETY: caller's contract on `path`.
        unsafe {
            with_socket(path, |c| {
                c.vdpa = None;
                0
            })
        }
    })
}

/// Get the device id
///
/// @param path
///  The vhost-user socket file path
/// @return
///  vDPA device pointer, NULL on failure
///
/// # Safety
/// `path` must be NULL or a NUL-terminated string.
///
/// Symbol version: DPDK_23
#[no_mangle]
pub unsafe extern "C" fn rte_vhost_driver_get_vdpa_device(path: *const c_char) -> *mut rte_vdpa_device {
    boundary!(std::ptr::null_mut(), {
        // SAFETY: caller's contract on `path`.
        let Some(path) = (unsafe { cstr_arg(path) }) else {
            return std::ptr::null_mut();
        };
        socket::with_config(path, |c| c.vdpa.as_ref().map_or(std::ptr::null_mut(), |v| v.id().0 as *mut _))
            .unwrap_or(std::ptr::null_mut())
    })
}

/// Get the device type of the vdpa device.
///
/// @param path
///  The vhost-user socket file path
/// @param dev_type
///  the device type of the vdpa device
/// @return
///  0 on success, -1 on failure
///
/// # Safety
/// `path` must be NULL or a NUL-terminated string; `dev_type` NULL or valid
/// for writing a `uint32_t`.
///
/// Symbol version: EXPERIMENTAL
#[no_mangle]
pub unsafe extern "C" fn rte_vhost_driver_get_vdpa_dev_type(
    path: *const c_char,
    dev_type: *mut u32,
) -> c_int {
    boundary!(-1, {
        // SAFETY: caller's contract on `path`.
        let Some(path) = (unsafe { cstr_arg(path) }) else {
            return -1;
        };
        match socket::with_config(path, |c| c.vdpa.as_ref().map(|v| v.device_type())) {
            // SAFETY: caller's out-pointer contract (NULL refused).
            Ok(Some(t)) => unsafe { write_out(dev_type, t) },
            Ok(None) => {
                vlog!(Config, Err, path, "socket file is not registered with a vDPA device.");
                -1
            }
            Err(e) => {
                vlog!(Config, Err, path, "{e}.");
                -1
            }
        }
    })
}
