//! `rte_vhost_crypto.h`: virtio-crypto back-end.
#![allow(clippy::missing_safety_doc)]

use std::ffi::{c_char, c_int};

use super::not_implemented;
use super::types::*;

/// DPDK_23
#[no_mangle]
pub unsafe extern "C" fn rte_vhost_crypto_create(
    _a0: c_int,
    _a1: u8,
    _a2: *mut rte_mempool,
    _a3: c_int,
) -> c_int {
    not_implemented("rte_vhost_crypto_create", -1)
}

/// EXPERIMENTAL
#[no_mangle]
pub unsafe extern "C" fn rte_vhost_crypto_driver_start(_a0: *const c_char) -> c_int {
    not_implemented("rte_vhost_crypto_driver_start", -1)
}

/// DPDK_23
#[no_mangle]
pub unsafe extern "C" fn rte_vhost_crypto_fetch_requests(
    _a0: c_int,
    _a1: u32,
    _a2: *mut *mut rte_crypto_op,
    _a3: u16,
) -> u16 {
    not_implemented("rte_vhost_crypto_fetch_requests", 0)
}

/// DPDK_23
#[no_mangle]
pub unsafe extern "C" fn rte_vhost_crypto_finalize_requests(
    _a0: *mut *mut rte_crypto_op,
    _a1: u16,
    _a2: *mut c_int,
    _a3: *mut u16,
) -> u16 {
    not_implemented("rte_vhost_crypto_finalize_requests", 0)
}

/// DPDK_23
#[no_mangle]
pub unsafe extern "C" fn rte_vhost_crypto_free(_a0: c_int) -> c_int {
    not_implemented("rte_vhost_crypto_free", -1)
}

/// DPDK_23
#[no_mangle]
pub unsafe extern "C" fn rte_vhost_crypto_set_zero_copy(
    _a0: c_int,
    _a1: rte_vhost_crypto_zero_copy,
) -> c_int {
    not_implemented("rte_vhost_crypto_set_zero_copy", -1)
}
