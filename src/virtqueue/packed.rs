//! The packed ring (virtio 1.1 section 2.7): one descriptor ring whose
//! entries the guest makes available and the device marks used in place,
//! in rounds told apart by wrap counters. Counting what is available,
//! taking descriptors (one by one, chains, or four at a time when they
//! fill one cache line), and marking them used.

use std::sync::atomic::Ordering;

use super::chain::F_WRITE;
use super::ring::RingMem;
use super::used::{UsedBatch, UsedElem};
use super::VqState;

const F_AVAIL: u16 = 1 << 7;
const F_USED: u16 = 1 << 15;

/// A position in a packed ring: slot index and wrap counter.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PackedPos {
    pub idx: u16,
    pub wrap: bool,
}

impl PackedPos {
    /// From the 16-bit form the protocol uses (SET/GET_VRING_BASE, the
    /// event suppression `off_wrap`, DPDK's API): bits 0-14 the index,
    /// bit 15 the wrap counter.
    #[inline]
    pub fn from_wire(v: u16) -> PackedPos {
        PackedPos { idx: v & 0x7fff, wrap: v & 0x8000 != 0 }
    }

    #[inline]
    pub fn to_wire(self) -> u16 {
        self.idx | (u16::from(self.wrap) << 15)
    }

    /// Moves on by `by` slots of a ring of `size`. Computed in 32 bits from
    /// a zero-extended load: a 16-bit add in place compiles to a 32-bit
    /// load of the u16, which cannot be forwarded from the 16-bit store of
    /// the previous step and so waits for the store buffer to drain (behind
    /// stores to ring lines the guest's core holds).
    #[inline(always)]
    pub fn advance(&mut self, by: u16, size: u16) {
        let next = u32::from(self.idx) + u32::from(by);
        if next >= u32::from(size) {
            self.idx = (next - u32::from(size)) as u16;
            self.wrap = !self.wrap;
        } else {
            self.idx = next as u16;
        }
    }
}

/// The AVAIL/USED flag pair of a descriptor the guest made available in
/// the round of wrap counter `wrap` (AVAIL equal to it, USED not).
#[inline(always)]
fn avail_pattern(wrap: bool) -> u16 {
    if wrap {
        F_AVAIL
    } else {
        F_USED
    }
}

/// Whether descriptor flags `f` say the guest made it available in the
/// round of wrap counter `wrap`.
#[inline(always)]
pub(super) fn made_available(f: u16, wrap: bool) -> bool {
    f & (F_AVAIL | F_USED) == avail_pattern(wrap)
}

/// Whether the descriptor at `pos` is available.
#[inline(always)]
pub(super) fn is_available(ring: &RingMem, pos: PackedPos) -> bool {
    made_available(ring.packed_flags(pos.idx), pos.wrap)
}

/// The flags the device writes to mark a descriptor used in the round of
/// the used wrap counter `wrap` (WRITE when it wrote into the buffer).
#[inline(always)]
pub fn used_flags(wrap: bool, write: bool) -> u16 {
    let w = if write { F_WRITE } else { 0 };
    if wrap {
        F_AVAIL | F_USED | w
    } else {
        w
    }
}

/// The flags a power-management loop waits for at the next available
/// descriptor, and their mask (`rte_vhost_get_monitor_addr`).
pub fn monitor_value(pos: PackedPos) -> (u16, u16) {
    (avail_pattern(pos.wrap), F_AVAIL | F_USED)
}

/// Descriptors taken as one batch: four 16-byte descriptors are one cache
/// line of the ring (DPDK's PACKED_BATCH_SIZE).
pub const BATCH: usize = 4;

/// Publishes used entries (slot, id, len, desc count) written relaxed, the
/// first one's flags last with release so the guest sees a whole batch.
pub fn publish(vq: &mut VqState, ring: &RingMem, entries: &[UsedElem], write: bool) {
    if entries.is_empty() {
        return;
    }
    let log = vq.active_log();
    let mut pos = vq.used_pos();
    let head = (pos.idx, used_flags(pos.wrap, write));
    for (i, e) in entries.iter().enumerate() {
        ring.packed_write_id_len(pos.idx, e.id, e.len);
        // The first entry still reads as not used until the batch is written.
        if i > 0 {
            ring.packed_set_flags(pos.idx, used_flags(pos.wrap, write), Ordering::Relaxed);
        }
        if let Some(log) = &log {
            vq.log_ring_write(log, u64::from(pos.idx) * 16, 16);
        }
        pos.advance(e.count, ring.size());
    }
    vq.set_used_pos(pos);
    ring.packed_set_flags(head.0, head.1, Ordering::Release);
}

/// Marks the `BATCH` descriptors from the next used slot used, with buffer
/// ids `ids` and written lengths `lens`, straight into the ring (DPDK's
/// vhost_flush_enqueue_batch_packed): ids and lengths, a release fence, then
/// the flags, which share one cache line. Entries still pending in `used`
/// are published first, to keep the ring order. If the used slot is not
/// batch-aligned (it follows the avail slot, so it is unless the front-end
/// moved the indices apart) the entries join `used` instead.
#[inline(always)]
pub fn publish_batch(
    vq: &mut VqState,
    ring: &RingMem,
    used: &mut UsedBatch,
    ids: [u16; BATCH],
    lens: [u32; BATCH],
    write: bool,
) {
    if !used.entries().is_empty() {
        publish(vq, ring, used.entries(), write);
        used.clear();
    }
    let Some(line) = ring.packed_line::<BATCH>(vq.last_used_idx) else {
        used.extend(&std::array::from_fn::<_, BATCH, _>(|k| UsedElem { id: ids[k], len: lens[k], count: 1 }));
        return;
    };
    line.write_used(ids, lens, used_flags(vq.used_wrap_counter, write));
    if let Some(log) = vq.active_log() {
        vq.log_ring_write(&log, u64::from(vq.last_used_idx) * 16, 16 * BATCH as u64);
    }
    let mut pos = vq.used_pos();
    pos.advance(BATCH as u16, ring.size());
    vq.set_used_pos(pos);
}

/// With VIRTIO_F_IN_ORDER, buffers used with nothing written (TX) are
/// marked used by one descriptor carrying the last buffer's id; the driver
/// counts the rest (virtio 1.1, 2.7.9; DPDK's
/// vhost_shadow_dequeue_batch_packed_inorder).
pub fn publish_in_order(vq: &mut VqState, ring: &RingMem, entries: &[UsedElem]) {
    let Some(last) = entries.last() else { return };
    let slots = entries.iter().map(|e| e.count).sum();
    publish(vq, ring, &[UsedElem { id: last.id, len: 0, count: slots }], false);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_wrap_and_flip_their_counter() {
        let mut p = PackedPos { idx: 0, wrap: true };
        p.advance(3, 4);
        assert_eq!(p, PackedPos { idx: 3, wrap: true });
        p.advance(1, 4);
        assert_eq!(p, PackedPos { idx: 0, wrap: false }, "past the end: slot 0 of the next round");
        p.advance(6, 4);
        assert_eq!(p, PackedPos { idx: 2, wrap: true });
        assert_eq!(PackedPos::from_wire(0x8005), PackedPos { idx: 5, wrap: true });
        assert_eq!(PackedPos { idx: 0x7fff, wrap: false }.to_wire(), 0x7fff);
        assert_eq!(PackedPos::from_wire(PackedPos { idx: 77, wrap: true }.to_wire()).idx, 77);
    }

    #[test]
    fn availability_follows_the_round() {
        assert!(made_available(F_AVAIL, true));
        assert!(!made_available(F_AVAIL | F_USED, true), "used in round 1");
        assert!(made_available(F_USED, false), "round 2: AVAIL 0, USED 1");
        assert!(!made_available(0, false), "used in round 2");
        assert_eq!(used_flags(true, true), F_AVAIL | F_USED | F_WRITE);
        assert_eq!(used_flags(false, false), 0);
    }
}
