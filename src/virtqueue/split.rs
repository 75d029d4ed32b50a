//! The split ring (virtio 1.0 section 2.6): descriptor table, available
//! ring of chain heads, used ring of (head, length); free-running 16-bit
//! indices. Counting what is available, gathering chains, publishing used
//! entries.

use super::chain::{prefetch_buffer, walk_split, BufVec, ChainError};
use super::ring::RingMem;
use super::used::UsedElem;
use super::VqState;
use crate::guest::AddressSpace;

/// Available entries, or `None` if the guest's index is nonsense (more than
/// a ring ahead).
#[inline(always)]
pub fn available(vq: &VqState, ring: &RingMem) -> Option<u16> {
    let n = ring.split_avail_idx().wrapping_sub(vq.last_avail_idx);
    (n <= ring.size()).then_some(n)
}

/// Prefetches the buffers of the `n` chains from avail position `pos` on,
/// at the start of a burst: the misses on lines the guest's core last
/// touched then overlap each other instead of stalling packet by packet.
pub fn prefetch_burst<'m>(ring: &RingMem, mem: &impl AddressSpace<'m>, pos: u16, n: usize, write: bool) {
    for j in 0..n {
        prefetch_buffer(mem, ring.read_split_desc(ring.split_avail_ring(pos.wrapping_add(j as u16))), write);
    }
}

/// Gathers enough chains, from the next available one on, for `needed`
/// bytes (several only when `mergeable`) into `bufs`; `avail` (entries
/// left) and `room` (used entries left in the burst) bound it. `Ok(false)`
/// if the packet cannot be placed now, or the error of a malformed chain.
#[allow(clippy::too_many_arguments)]
pub fn reserve<'m>(
    vq: &VqState,
    ring: &RingMem,
    mem: &impl AddressSpace<'m>,
    bufs: &mut BufVec,
    needed: u64,
    mergeable: bool,
    avail: &mut u16,
    room: usize,
) -> Result<bool, ChainError> {
    bufs.clear();
    while bufs.total() < needed {
        if *avail == 0 || (!mergeable && bufs.nchains == 1) || bufs.nchains == room {
            return Ok(false);
        }
        let head = ring.split_avail_ring(vq.last_avail_idx.wrapping_add(bufs.nchains as u16));
        let before = bufs.total();
        walk_split(mem, ring.size(), head, |i| ring.read_split_desc(i), bufs)?;
        if !bufs.push_chain(head, 1, before) {
            return Ok(false);
        }
        *avail -= 1;
    }
    Ok(true)
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
