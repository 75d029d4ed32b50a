//! One message being handled: what its handler works with (`Ctx`) and what
//! it answers (`Reply`). Apart from `handle` so that the handlers
//! (`negotiate`, `memory`, `vring`, `iommu`) and the dispatcher that calls
//! them do not import each other.

use std::os::fd::OwnedFd;
use std::sync::Arc;

use super::events::Event;
use super::Device;
use crate::guest::GuestMemory;
use crate::protocol::features::{Features, ProtocolFeatures};
use crate::virtqueue::access_lock::AccessGuard;
use crate::virtqueue::VqState;
use crate::vlog;

/// What the socket offers this connection (narrowed by its vDPA device).
#[derive(Clone, Copy, Debug)]
pub struct Offer {
    pub features: Features,
    pub protocol_features: ProtocolFeatures,
}

/// The answer to a message.
#[derive(Debug)]
pub enum Reply {
    /// Done; an ack if the front-end asked for one.
    Ok,
    /// Refused (logged); an ack saying so if asked, else the connection is
    /// closed.
    Err,
    /// This payload (and fds) go back.
    Payload(Vec<u8>, Vec<OwnedFd>),
    /// Postcopy SET_MEM_TABLE: this table (our addresses) goes back, the
    /// front-end acks it, then `Device::install_postcopy_table` (the
    /// connection waits for the ack on its own thread, blocking no other
    /// device).
    PostcopyTable(Vec<u8>, PendingTable),
}

/// A memory table mapped during postcopy, not yet in use: the front-end
/// must first learn our addresses and ack them (`Reply::PostcopyTable`).
#[derive(Debug)]
pub struct PendingTable {
    pub(super) mem: Arc<GuestMemory>,
}

/// One message being handled.
pub(super) struct Ctx<'a> {
    pub dev: &'a Device,
    pub ifname: String,
    pub offer: Offer,
    /// Ring locks held for the whole message (requests that change rings).
    held: Vec<AccessGuard<'a, VqState>>,
    pub events: Vec<Event>,
}

impl<'a> Ctx<'a> {
    pub(super) fn new(
        dev: &'a Device,
        ifname: String,
        offer: Offer,
        held: Vec<AccessGuard<'a, VqState>>,
    ) -> Self {
        Ctx { dev, ifname, offer, held, events: Vec::new() }
    }

    /// Whether the message holds the ring locks (a request that changes
    /// rings, on a device no vDPA driver runs).
    pub fn holds_rings(&self) -> bool {
        !self.held.is_empty()
    }

    /// Runs `f` on ring `idx`, through the held lock or a fresh one; `None`
    /// if the ring does not exist.
    pub fn vq<R>(&mut self, idx: u16, f: impl FnOnce(&mut VqState) -> R) -> Option<R> {
        if let Some(g) = self.held.get_mut(usize::from(idx)) {
            return Some(f(g));
        }
        let vq = self.dev.vq(idx)?;
        Some(f(&mut vq.lock()))
    }

    pub fn for_each_vq(&mut self, mut f: impl FnMut(&mut VqState)) {
        for i in 0..self.dev.nr_vring() as u16 {
            self.vq(i, &mut f);
        }
    }

    /// DPDK: a ready ring loses readiness before its kick/call fd changes.
    pub fn unready(&mut self, idx: u16) {
        if self.vq(idx, |vq| vq.unready()) == Some(true) {
            self.events.push(Event::VringState { queue: idx, enable: false });
        }
    }

    /// Logs `r`'s error (prefixed by `what` when not empty).
    pub fn logged<T, E: std::fmt::Display>(&self, what: &str, r: Result<T, E>) -> Option<T> {
        r.map_err(|e| {
            if what.is_empty() {
                vlog!(Config, Err, self.ifname, "{e}");
            } else {
                vlog!(Config, Err, self.ifname, "{what}: {e}");
            }
        })
        .ok()
    }

    /// Drops rings `keep..` (SET_FEATURES without MQ), whose locks are
    /// held.
    pub fn truncate_rings(&mut self, keep: u32) {
        self.dev.truncate_vrings(keep, &mut self.held);
    }
}
