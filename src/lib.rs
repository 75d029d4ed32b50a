//! rvhost: a Rust implementation of DPDK 22.11's `librte_vhost`, built into a
//! C-ABI drop-in `librte_vhost.so.23`. See `README.md` and
//! `docs/architecture.md` for the layering; `ffi/` is the only entry point
//! from C.
//!
//! `unsafe` code is refused everywhere but in the modules and items named
//! with `#[allow(unsafe_code)]`: the C ABI (`ffi`), the calls into DPDK
//! (`dpdk`), guest memory (`guest`: mappings, the SIGBUS handler, raw
//! accesses, userfaultfd), the ring accessors and the access lock
//! (`virtqueue`), vDPA driver calls (`vdpa::driver`), and fds received over
//! sockets (`socket::io`). Each block says why it is sound.

#![deny(unsafe_code)]

pub(crate) mod abi;
pub(crate) mod crypto;
pub(crate) mod device;
#[allow(unsafe_code)]
pub(crate) mod dpdk;
#[allow(unsafe_code)]
pub(crate) mod ffi;
#[allow(unsafe_code)]
pub(crate) mod guest;
pub(crate) mod net;
pub(crate) mod protocol;
pub(crate) mod socket;
pub(crate) mod vdpa;
pub(crate) mod virtqueue;

/// What the integration tests use of the crate's insides (a test build's
/// `testing` feature): the wire format, message I/O, mbufs, the driver-side
/// ring model and the audit of guest accesses.
#[cfg(feature = "testing")]
pub mod testing {
    pub use crate::dpdk::mbuf::{self, ol, rte_mempool, Mbuf, Mempool, RteMbuf};
    pub use crate::guest::mapping::audit_violations;
    pub use crate::protocol::{Header, MemoryTable, Request, FLAG_NEED_REPLY, VERSION};
    pub use crate::socket::io::{read_message, send_message, RawMessage};
    pub use crate::virtqueue::mock;

    /// IOTLB misses device `vid` asked for and did not have answered (0 for
    /// no device).
    pub fn iotlb_pending(vid: i32) -> usize {
        crate::device::get(vid).map_or(0, |d| d.iotlb_pending())
    }
}
