//! `rte_vhost_driver_*`: registering and configuring vhost-user sockets.
#![allow(clippy::missing_safety_doc)]

use std::ffi::{c_char, c_int};

use super::callbacks::DeviceOps;
use super::{cstr_arg, write_out};
use crate::abi::*;
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

/// DPDK_23
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

/// DPDK_23
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

/// DPDK_23
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

/// DPDK_23
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

/// DPDK_23
#[no_mangle]
pub unsafe extern "C" fn rte_vhost_driver_set_features(path: *const c_char, features: u64) -> c_int {
    boundary!(-1, {
        // SAFETY: caller's contract on `path`.
        unsafe {
            with_socket(path, |c| {
                c.supported_features = features;
                c.features = features;
                // Whoever sets feature bits implements their own device type.
                c.use_builtin_virtio_net = false;
                0
            })
        }
    })
}

/// DPDK_23
#[no_mangle]
pub unsafe extern "C" fn rte_vhost_driver_enable_features(path: *const c_char, features: u64) -> c_int {
    boundary!(-1, {
        // SAFETY: caller's contract on `path`.
        unsafe {
            with_socket(path, |c| {
                if c.supported_features & features != features {
                    return -1;
                }
                c.features |= features;
                0
            })
        }
    })
}

/// DPDK_23
#[no_mangle]
pub unsafe extern "C" fn rte_vhost_driver_disable_features(path: *const c_char, features: u64) -> c_int {
    boundary!(-1, {
        // SAFETY: caller's contract on `path`.
        unsafe {
            with_socket(path, |c| {
                c.features &= !features;
                0
            })
        }
    })
}

/// DPDK_23
#[no_mangle]
pub unsafe extern "C" fn rte_vhost_driver_get_features(path: *const c_char, features: *mut u64) -> c_int {
    boundary!(-1, {
        // SAFETY: caller's contract on `path` and `features`.
        unsafe { with_socket(path, |c| write_out(features, c.features)) }
    })
}

/// DPDK_23
#[no_mangle]
pub unsafe extern "C" fn rte_vhost_driver_set_protocol_features(path: *const c_char, features: u64) -> c_int {
    boundary!(-1, {
        // SAFETY: caller's contract on `path`.
        unsafe {
            with_socket(path, |c| {
                c.protocol_features = features;
                0
            })
        }
    })
}

/// DPDK_23
#[no_mangle]
pub unsafe extern "C" fn rte_vhost_driver_get_protocol_features(
    path: *const c_char,
    features: *mut u64,
) -> c_int {
    boundary!(-1, {
        // SAFETY: caller's contract on `path` and `features`.
        unsafe { with_socket(path, |c| write_out(features, c.protocol_features)) }
    })
}

/// DPDK_23
#[no_mangle]
pub unsafe extern "C" fn rte_vhost_driver_get_queue_num(path: *const c_char, queue_num: *mut u32) -> c_int {
    boundary!(-1, {
        // SAFETY: caller's contract on `path` and `queue_num`.
        unsafe { with_socket(path, |c| write_out(queue_num, c.max_queue_pairs)) }
    })
}

/// DPDK_23
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

/// DPDK_23
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

/// DPDK_23
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

/// EXPERIMENTAL
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
