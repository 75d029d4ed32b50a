//! Everything rvhost calls in DPDK: logging, the EAL control thread and device
//! class, and the mbuf/mempool fast path. This module and `ffi/`, `memory/`,
//! `socket/` are the only places allowed to hold `unsafe` code.

pub mod dma;
pub mod eal;
pub mod log;
pub mod mbuf;
