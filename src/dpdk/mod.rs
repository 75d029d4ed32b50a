//! Everything rvhost calls in DPDK: logging, the EAL control thread and device
//! class, the mbuf/mempool fast path, and cryptodev sessions and ops for
//! vhost-crypto. This module and `ffi/`, `memory/`,
//! `socket/` are the only places allowed to hold `unsafe` code.

pub mod crypto;
pub mod dma;
pub mod eal;
pub mod log;
pub mod mbuf;
