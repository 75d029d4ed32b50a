//! The ring areas shared with the guest: split and packed descriptor tables,
//! available and used rings, event suppression areas.
//!
//! Every address used here was produced by `GuestMemory` translation and
//! bounds-checked for the ring's size and layout (`VqState::translate`,
//! the only maker of a `RingMem`). The guest writes this memory
//! concurrently, so ring fields are read and written with atomic or
//! volatile accesses of the right ordering, and each descriptor is copied
//! out once before it is validated and used.

use std::sync::atomic::{AtomicU16, Ordering};

use crate::guest::mapping::audit;
use crate::guest::slice::prefetch_lines_for_write;

/// A descriptor as read from the ring (split or packed layout).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Desc {
    pub addr: u64,
    pub len: u32,
    pub flags: u16,
    /// Split: next index; packed: buffer id.
    pub next_or_id: u16,
}

/// Addresses of one ring's areas, checked for one size and one layout,
/// valid while the ring lock is held and the memory table it was translated
/// against is alive (the ring owns an Arc). Made only by translation
/// (`RingMem::new` is `unsafe`): a change of size, layout or memory makes a
/// new one or none, so the datapath never pairs addresses with a size they
/// were not checked for.
#[derive(Clone, Copy, Debug)]
pub struct RingMem {
    desc: u64,
    avail: u64,
    used: u64,
    size: u16,
    packed: bool,
}

// Ring positions are reduced to slots without a division (a `div` per ring
// access was the single largest cost of a burst). Both reductions stay below
// `size` for any input, so a bad index can never leave the ring area.
impl RingMem {
    /// Split rings: free-running 16-bit indices; the size is a power of two
    /// (SET_VRING_NUM refuses others), so masking is the modulo.
    #[inline(always)]
    fn split_slot(&self, i: u16) -> u64 {
        u64::from(i & self.size.wrapping_sub(1))
    }

    /// Packed rings: positions are already below the size (any size is
    /// allowed); anything else is reduced the slow way.
    #[inline(always)]
    fn packed_slot(&self, i: u16) -> u64 {
        u64::from(if i < self.size { i } else { i % self.size })
    }
}

fn atomic_u16(addr: u64) -> &'static AtomicU16 {
    audit(addr, 2);
    // SAFETY: callers pass addresses inside a translated, 2-byte aligned ring
    // area (checked by VqState::translate); the mapping outlives every use
    // made under the ring lock. AtomicU16 has u16's layout.
    unsafe { &*(addr as *const AtomicU16) }
}

impl RingMem {
    /// Wraps translated ring addresses.
    ///
    /// # Safety
    /// For a ring of `size` entries in the layout `packed` says, the three
    /// areas (`area_sizes`) must lie inside one live mapping of guest memory
    /// each, aligned as the layout requires (descriptors 16, split avail 2,
    /// the rest 4), and stay mapped while the value is used; a split `size`
    /// must be a power of two.
    pub(crate) unsafe fn new(desc: u64, avail: u64, used: u64, size: u16, packed: bool) -> RingMem {
        RingMem { desc, avail, used, size, packed }
    }

    /// Byte sizes of the descriptor, driver (avail) and device (used) areas
    /// of a ring of `size` entries.
    pub fn area_sizes(size: u16, packed: bool) -> (u64, u64, u64) {
        let n = u64::from(size);
        if packed {
            (n * 16, 4, 4)
        } else {
            // avail: flags, idx, ring[n], used_event; used: flags, idx,
            // ring[n] of 8-byte elements, avail_event.
            (n * 16, 4 + 2 * n + 2, 4 + 8 * n + 2)
        }
    }

    pub fn size(&self) -> u16 {
        self.size
    }

    pub fn is_packed(&self) -> bool {
        self.packed
    }

    /// Our addresses of the three areas (for `rte_vhost_get_vhost_vring`).
    pub fn addresses(&self) -> (u64, u64, u64) {
        (self.desc, self.avail, self.used)
    }

    /// Our address of the flags of packed descriptor `i` (reduced to a
    /// slot), which a power-management loop may watch.
    pub fn packed_flags_addr(&self, i: u16) -> u64 {
        self.packed_desc(i) + 14
    }

    /// Reads split descriptor `i` of the table (reduced to a slot).
    #[inline]
    pub fn read_split_desc(&self, i: u16) -> Desc {
        read_desc_at(self.desc + self.split_slot(i) * 16, Layout::Split)
    }

    /// Reads packed descriptor `i` of the ring (reduced to a slot).
    #[inline]
    pub fn read_packed_desc(&self, i: u16) -> Desc {
        read_desc_at(self.packed_desc(i), Layout::Packed)
    }

    // --- split layout -----------------------------------------------------

    /// avail->idx, with acquire ordering (ring entries are read after it).
    #[inline]
    pub fn split_avail_idx(&self) -> u16 {
        u16::from_le(atomic_u16(self.avail + 2).load(Ordering::Acquire))
    }
    #[inline]
    pub fn split_avail_flags(&self) -> u16 {
        u16::from_le(atomic_u16(self.avail).load(Ordering::Relaxed))
    }
    /// avail->ring[i % size].
    #[inline]
    pub fn split_avail_ring(&self, i: u16) -> u16 {
        u16::from_le(atomic_u16(self.avail + 4 + 2 * self.split_slot(i)).load(Ordering::Relaxed))
    }
    /// used_event (after the avail ring).
    #[inline]
    pub fn split_used_event(&self) -> u16 {
        u16::from_le(atomic_u16(self.avail + 4 + 2 * u64::from(self.size)).load(Ordering::Acquire))
    }
    /// used->ring[i % size] = {id, len}.
    #[inline]
    pub fn split_write_used(&self, i: u16, id: u32, len: u32) {
        let at = self.used + 4 + 8 * self.split_slot(i);
        audit(at, 8);
        // SAFETY: inside the translated used ring (8-byte element, 4-aligned);
        // only the guest reads it, after our release store of used->idx.
        unsafe {
            (at as *mut u32).write_volatile(id.to_le());
            ((at + 4) as *mut u32).write_volatile(len.to_le());
        }
    }
    #[inline]
    pub fn split_used_idx(&self) -> u16 {
        u16::from_le(atomic_u16(self.used + 2).load(Ordering::Relaxed))
    }
    /// used->idx, with release ordering (publishes the entries written).
    #[inline]
    pub fn split_set_used_idx(&self, idx: u16) {
        atomic_u16(self.used + 2).store(idx.to_le(), Ordering::Release);
    }
    pub fn split_set_used_flags(&self, flags: u16) {
        atomic_u16(self.used).store(flags.to_le(), Ordering::Release);
    }
    /// avail_event (after the used ring).
    pub fn split_set_avail_event(&self, idx: u16) {
        atomic_u16(self.used + 4 + 8 * u64::from(self.size)).store(idx.to_le(), Ordering::Release);
    }

    // --- packed layout ----------------------------------------------------

    /// Flags of packed descriptor `i`, acquire (the rest of it is read after).
    #[inline]
    pub fn packed_flags(&self, i: u16) -> u16 {
        load_flags_at(self.packed_desc(i))
    }
    /// Flags of packed descriptors `from`, `from + 1`, ... up to `n` of them
    /// but not past the end of the ring (acquire each), without reducing
    /// each position to a slot.
    #[inline]
    pub fn packed_flags_run(&self, from: u16, n: usize) -> impl Iterator<Item = u16> + '_ {
        let from = usize::from(from);
        let end = (from.saturating_add(n)).min(usize::from(self.size));
        (from..end).map(|i| load_flags_at(self.desc + 16 * i as u64))
    }
    /// Prefetches the ring lines of packed descriptors `from` to `from + n`
    /// (not past the end of the ring) for writing.
    #[inline]
    pub fn prefetch_packed_run(&self, from: u16, n: usize) {
        let end = usize::from(from).saturating_add(n).min(usize::from(self.size));
        prefetch_lines_for_write(self.desc + 16 * u64::from(from), self.desc + 16 * end as u64);
    }
    /// Writes the id and len of used packed descriptor `i`; its flags are
    /// stored afterwards (`packed_set_flags`): the guest reads an entry only
    /// once it sees them.
    #[inline]
    pub fn packed_write_id_len(&self, i: u16, id: u16, len: u32) {
        write_id_len_at(self.packed_desc(i), id, len);
    }
    /// Stores the flags of packed descriptor `i` (release publishes the
    /// entries written before).
    #[inline]
    pub fn packed_set_flags(&self, i: u16, flags: u16, order: Ordering) {
        packed_flags_at(self.packed_desc(i)).store(flags.to_le(), order);
    }
    /// Our address of packed descriptor `i` (reduced to a slot).
    #[inline(always)]
    fn packed_desc(&self, i: u16) -> u64 {
        self.desc + self.packed_slot(i) * 16
    }
    /// Descriptors `i..i + LINE` of a packed ring as one unit, if `i` is a
    /// multiple of `LINE` and they all lie inside the ring (with a 64-byte
    /// aligned ring, `LINE` = 4 is one cache line).
    #[inline(always)]
    pub fn packed_line<const LINE: usize>(&self, i: u16) -> Option<PackedLine<LINE>> {
        let i = usize::from(i);
        (i % LINE == 0 && i + LINE <= usize::from(self.size))
            .then(|| PackedLine { at: self.desc + 16 * i as u64 })
    }

    /// Driver event suppression structure: (off_wrap, flags).
    pub fn packed_driver_event(&self) -> (u16, u16) {
        let off_wrap = u16::from_le(atomic_u16(self.avail).load(Ordering::Acquire));
        let flags = u16::from_le(atomic_u16(self.avail + 2).load(Ordering::Acquire));
        (off_wrap, flags)
    }
    /// Device event suppression structure.
    pub fn packed_set_device_event(&self, off_wrap: u16, flags: u16) {
        atomic_u16(self.used).store(off_wrap.to_le(), Ordering::Relaxed);
        atomic_u16(self.used + 2).store(flags.to_le(), Ordering::Release);
    }
}

/// `LINE` consecutive descriptors of a packed ring (`RingMem::packed_line`),
/// read and marked used together, without a bounds check per descriptor.
#[derive(Clone, Copy, Debug)]
pub struct PackedLine<const LINE: usize> {
    /// Address of the first descriptor, inside the translated ring, with
    /// `LINE` descriptors from it in the ring.
    at: u64,
}

impl<const LINE: usize> PackedLine<LINE> {
    /// The descriptors' flags (acquire: they are read before the rest).
    #[inline(always)]
    pub fn flags(&self) -> [u16; LINE] {
        let mut flags = [0; LINE];
        for (k, f) in flags.iter_mut().enumerate() {
            *f = load_flags_at(self.at + 16 * k as u64);
        }
        flags
    }

    /// The descriptors.
    #[inline(always)]
    pub fn read(&self) -> [Desc; LINE] {
        let mut descs = [Desc::default(); LINE];
        for (k, d) in descs.iter_mut().enumerate() {
            *d = read_desc_at(self.at + 16 * k as u64, Layout::Packed);
        }
        descs
    }

    /// Marks them used: ids and lengths, a release fence, then `flags` on
    /// each (the guest reads an entry once it sees its flags).
    #[inline(always)]
    pub fn write_used(&self, ids: [u16; LINE], lens: [u32; LINE], flags: u16) {
        // Descriptor k of the line lies inside the translated ring
        // (`packed_line` checked the range).
        for k in 0..LINE {
            write_id_len_at(self.at + 16 * k as u64, ids[k], lens[k]);
        }
        std::sync::atomic::fence(Ordering::Release);
        for k in 0..LINE {
            packed_flags_at(self.at + 16 * k as u64).store(flags.to_le(), Ordering::Relaxed);
        }
    }
}

/// The flags of the packed descriptor at `desc` (an address inside a
/// translated descriptor ring).
#[inline(always)]
fn packed_flags_at(desc: u64) -> &'static AtomicU16 {
    atomic_u16(desc + 14)
}

/// Loads the flags of the packed descriptor at `desc`, acquire (the rest
/// of the descriptor is read after them).
#[inline(always)]
fn load_flags_at(desc: u64) -> u16 {
    u16::from_le(packed_flags_at(desc).load(Ordering::Acquire))
}

/// Writes id and len of the used packed descriptor at `desc` (an address
/// inside a translated descriptor ring); its flags are stored after.
#[inline(always)]
fn write_id_len_at(desc: u64, id: u16, len: u32) {
    audit(desc + 8, 6);
    // SAFETY: callers pass a descriptor inside the translated ring; the
    // guest only reads an entry after seeing its flags, stored after these.
    unsafe {
        ((desc + 8) as *mut u32).write_volatile(len.to_le());
        ((desc + 12) as *mut u16).write_volatile(id.to_le());
    }
}

/// Descriptor layouts: split `{addr, len, flags, next}`, packed
/// `{addr, len, id, flags}`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Layout {
    Split,
    Packed,
}

/// Reads a 16-byte descriptor at `addr` (a translated ring or indirect table
/// entry) into a local copy.
#[inline(always)]
pub fn read_desc_at(addr: u64, layout: Layout) -> Desc {
    audit(addr, 16);
    let p = addr as *const u8;
    // SAFETY: `addr` lies in a translated descriptor table (ring or indirect
    // table checked to lie in one region); volatile reads of guest memory.
    let (addr_v, len, a, b) = unsafe {
        (
            p.cast::<u64>().read_volatile(),
            p.add(8).cast::<u32>().read_volatile(),
            p.add(12).cast::<u16>().read_volatile(),
            p.add(14).cast::<u16>().read_volatile(),
        )
    };
    let (flags, next_or_id) = match layout {
        Layout::Split => (a, b),
        Layout::Packed => (b, a),
    };
    Desc {
        addr: u64::from_le(addr_v),
        len: u32::from_le(len),
        flags: u16::from_le(flags),
        next_or_id: u16::from_le(next_or_id),
    }
}
