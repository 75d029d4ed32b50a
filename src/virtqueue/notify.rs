//! Guest notification: whether the guest wants an interrupt once used
//! entries are published (event index or flags, split and packed), with the
//! fence that makes the answer right, the interrupt itself, and the device's
//! own suppression of the guest's kicks.

use std::sync::atomic::{fence, Ordering};

use super::packed::PackedPos;
use super::ring::RingMem;
use super::{EventFd, VqState};
use crate::protocol::features::VIRTIO_RING_F_EVENT_IDX;

const VRING_AVAIL_F_NO_INTERRUPT: u16 = 1;
const VRING_USED_F_NO_NOTIFY: u16 = 1;
const EVENT_F_ENABLE: u16 = 0;
const EVENT_F_DISABLE: u16 = 1;
const EVENT_F_DESC: u16 = 2;

/// `vring_need_event`: whether moving used from `old` to `new` crosses the
/// event index the guest asked for.
#[inline]
pub fn need_event(event: u16, new: u16, old: u16) -> bool {
    new.wrapping_sub(event).wrapping_sub(1) < new.wrapping_sub(old)
}

/// Whether the guest wants an interrupt now, after used entries were
/// published.
pub fn wants_notification(vq: &mut VqState, ring: &RingMem) -> bool {
    // The used index (or descriptor flags) just stored must be visible to
    // the guest before its event index or flags are read: the guest stores
    // those, fences, then re-reads ours; without a full fence here both
    // loads may pass both stores and neither side sees the other's update,
    // leaving an interrupt-driven guest waiting forever (DPDK's
    // vhost_vring_call_split/packed and virtio-queue fence here too).
    fence(Ordering::SeqCst);
    let event_idx = vq.has_feature(VIRTIO_RING_F_EVENT_IDX);
    if !ring.is_packed() {
        if event_idx {
            let new = ring.split_used_idx();
            let old = vq.dp.signalled_used;
            let valid = vq.dp.signalled_used_valid;
            vq.dp.signalled_used = new;
            vq.dp.signalled_used_valid = true;
            return !valid || need_event(ring.split_used_event(), new, old);
        }
        return ring.split_avail_flags() & VRING_AVAIL_F_NO_INTERRUPT == 0;
    }
    let (off_wrap, flags) = ring.packed_driver_event();
    if !event_idx || flags != EVENT_F_DESC {
        return flags != EVENT_F_DISABLE;
    }
    let new = vq.last_used_idx;
    let mut old = vq.dp.signalled_used;
    let valid = vq.dp.signalled_used_valid;
    vq.dp.signalled_used = new;
    vq.dp.signalled_used_valid = true;
    if !valid {
        return true;
    }
    if new <= old {
        old = old.wrapping_sub(ring.size());
    }
    let event = PackedPos::from_wire(off_wrap);
    let mut off = event.idx;
    if vq.used_wrap_counter != event.wrap {
        off = off.wrapping_sub(ring.size());
    }
    need_event(off, new, old)
}

/// Interrupts the guest (an eventfd write of 1): `None` without a call
/// eventfd, else whether the write succeeded (EAGAIN, a saturated counter,
/// needs no retry).
#[inline]
pub fn signal(vq: &VqState) -> Option<bool> {
    match &vq.call {
        EventFd::Fd(fd) => Some(nix::unistd::write(fd, &1u64.to_ne_bytes()).is_ok()),
        _ => None,
    }
}

/// Asks the guest to kick us when it adds buffers (`enable`), or not
/// (`rte_vhost_enable_guest_notification`).
pub fn set_guest_notification(vq: &VqState, ring: &RingMem, enable: bool) {
    let event_idx = vq.has_feature(VIRTIO_RING_F_EVENT_IDX);
    if ring.is_packed() {
        let flags = if !enable {
            EVENT_F_DISABLE
        } else if event_idx {
            EVENT_F_DESC
        } else {
            EVENT_F_ENABLE
        };
        ring.packed_set_device_event(vq.avail_pos().to_wire(), flags);
    } else if event_idx {
        if enable {
            ring.split_set_avail_event(vq.last_avail_idx);
        }
    } else {
        ring.split_set_used_flags(if enable { 0 } else { VRING_USED_F_NO_NOTIFY });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn need_event_crosses_the_event_index_across_wrap() {
        // Used moved 10 -> 12: an event index of 10 or 11 is crossed.
        assert!(need_event(10, 12, 10));
        assert!(need_event(11, 12, 10));
        assert!(!need_event(12, 12, 10), "the event index is the entry after");
        assert!(!need_event(9, 12, 10), "already passed before");
        // Across the 16-bit wrap.
        assert!(need_event(0xffff, 1, 0xfffe));
        assert!(need_event(0, 1, 0xfffe));
        assert!(!need_event(1, 1, 0xfffe));
    }
}

/// What `rte_vhost_get_monitor_addr` reports: wait until `*addr & mask`
/// (`size` bytes) equals (`is_match` = 1) or differs from (0) `val`.
#[derive(Clone, Copy, Debug)]
pub struct MonitorCond {
    pub addr: u64,
    pub val: u64,
    pub mask: u64,
    pub size: u8,
    pub is_match: u8,
}

/// The address a power-management loop may monitor for the guest's next
/// buffer on a translated ring: the flags of the next packed descriptor,
/// or a split ring's avail index.
pub fn monitor_cond(vq: &VqState) -> Option<MonitorCond> {
    let ring = vq.ring()?;
    let (_, avail, _) = ring.addresses();
    Some(if ring.is_packed() {
        let pos = vq.avail_pos();
        let (val, mask) = super::packed::monitor_value(pos);
        MonitorCond {
            addr: ring.packed_flags_addr(pos.idx),
            val: u64::from(val),
            mask: u64::from(mask),
            size: 2,
            is_match: 1,
        }
    } else {
        MonitorCond {
            addr: avail + 2,
            val: u64::from(vq.last_avail_idx & (ring.size() - 1)),
            mask: u64::from(ring.size() - 1),
            size: 2,
            is_match: 0,
        }
    })
}
