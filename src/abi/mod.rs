//! The layouts and constants shared with C, as DPDK 22.11's headers define
//! them (`librte_vhost.so.23`): the public structs of rte_vhost.h,
//! rte_vdpa.h, vdpa_driver.h and rte_vhost_crypto.h, the message context of
//! extern hooks, the flags of `rte_vhost_driver_register`. A leaf: nothing
//! else of the crate is used here. A second ABI (24.11's
//! `librte_vhost.so.25`) would sit beside it as a module of its own.

pub mod mbuf;
mod msg;
mod vhost;

pub use msg::*;
pub use vhost::*;
