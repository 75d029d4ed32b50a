//! rvhost: a Rust implementation of DPDK 22.11's `librte_vhost`, built into a
//! C-ABI drop-in `librte_vhost.so.23`. See `README.md` and
//! `docs/architecture.md` for the layering; `ffi/` is the only entry point
//! from C.

pub mod abi;
pub mod device;
pub mod dpdk;
pub mod ffi;
pub mod guest;
pub mod net;
pub mod protocol;
pub mod socket;
pub mod vdpa;
pub mod virtqueue;
