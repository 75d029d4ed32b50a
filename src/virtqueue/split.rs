//! The split ring (virtio 1.0 section 2.6): descriptor table, available
//! ring of chain heads, used ring of (head, length); free-running 16-bit
//! indices. Counting what is available, gathering chains, publishing used
//! entries.

use super::chain::{visit_split, ChainError};
use super::ring::{Desc, RingMem};
use super::used::UsedElem;
use super::VqState;
use crate::guest::AddressSpace;

/// Visits the buffer descriptors of the chain at `head` (a request's, or a
/// used entry's), bounded as `chain::visit_split`.
#[inline]
pub fn visit_chain<'m>(
    ring: &RingMem,
    mem: &impl AddressSpace<'m>,
    head: u16,
    visit: impl FnMut(&Desc) -> Result<(), ChainError>,
) -> Result<(), ChainError> {
    visit_split(mem, ring.size(), head, |i| ring.read_split_desc(i), visit)
}

/// Writes used entries (head id, length) from the ring's used index on, then
/// publishes them all with one release store of used->idx. Batched at the
/// end of a burst, so the lines the guest polls are written once per burst.
pub fn publish(vq: &mut VqState, ring: &RingMem, entries: &[UsedElem]) {
    let log = vq.active_log();
    for e in entries {
        ring.split_write_used(vq.last_used_idx, u32::from(e.id), e.len);
        if let Some(log) = &log {
            vq.log_ring_write(log, 4 + 8 * u64::from(vq.last_used_idx % ring.size()), 8);
        }
        vq.last_used_idx = vq.last_used_idx.wrapping_add(1);
    }
    ring.split_set_used_idx(vq.last_used_idx);
    if let Some(log) = &log {
        vq.log_ring_write(log, 2, 2);
    }
}
