//! `rte_vhost_crypto.h`: virtio-crypto back-end.
#![allow(clippy::missing_safety_doc)]
// Functions here that are not implemented yet ignore their arguments.
#![allow(unused_variables)]

use std::ffi::{c_char, c_int};

use super::not_implemented;
use crate::abi::*;

/// DPDK_23
#[no_mangle]
pub unsafe extern "C" fn rte_vhost_crypto_create(
    vid: c_int,
    cryptodev_id: u8,
    sess_pool: *mut rte_mempool,
    socket_id: c_int,
) -> c_int {
    boundary!(-1, { not_implemented("rte_vhost_crypto_create", -1) })
}

/// EXPERIMENTAL
#[no_mangle]
pub unsafe extern "C" fn rte_vhost_crypto_driver_start(path: *const c_char) -> c_int {
    boundary!(-1, { not_implemented("rte_vhost_crypto_driver_start", -1) })
}

/// DPDK_23
#[no_mangle]
pub unsafe extern "C" fn rte_vhost_crypto_fetch_requests(
    vid: c_int,
    qid: u32,
    ops: *mut *mut rte_crypto_op,
    nb_ops: u16,
) -> u16 {
    boundary!(0, { not_implemented("rte_vhost_crypto_fetch_requests", 0) })
}

/// DPDK_23
#[no_mangle]
pub unsafe extern "C" fn rte_vhost_crypto_finalize_requests(
    ops: *mut *mut rte_crypto_op,
    nb_ops: u16,
    callfds: *mut c_int,
    nb_callfds: *mut u16,
) -> u16 {
    boundary!(0, { not_implemented("rte_vhost_crypto_finalize_requests", 0) })
}

/// DPDK_23
#[no_mangle]
pub unsafe extern "C" fn rte_vhost_crypto_free(vid: c_int) -> c_int {
    boundary!(-1, { not_implemented("rte_vhost_crypto_free", -1) })
}

/// DPDK_23
#[no_mangle]
pub unsafe extern "C" fn rte_vhost_crypto_set_zero_copy(
    vid: c_int,
    option: rte_vhost_crypto_zero_copy,
) -> c_int {
    boundary!(-1, { not_implemented("rte_vhost_crypto_set_zero_copy", -1) })
}
