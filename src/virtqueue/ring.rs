//! The ring areas shared with the guest: split and packed descriptor tables,
//! available and used rings, event suppression areas.
//!
//! Every address used here was produced by `GuestMemory` translation and
//! bounds-checked for the ring's size and layout (`VqState::translate`,
//! the only maker of a `TranslatedRing`), and is reached only through a
//! view that borrows the memory table it lies in (`RingMem`, `DescTable`).
//! The guest writes this memory concurrently, so ring fields are read and
//! written with atomic or volatile accesses of the right ordering, and each
//! descriptor is copied out once before it is validated and used.

use std::marker::PhantomData;
use std::sync::atomic::{AtomicU16, Ordering};

use crate::guest::mapping::audit;
use crate::guest::slice::{prefetch_lines_for_write, GuestSlice};
use crate::guest::GuestMemory;

/// A descriptor as read from the ring (split or packed layout).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Desc {
    pub addr: u64,
    pub len: u32,
    pub flags: u16,
    /// Split: next index; packed: buffer id.
    pub next_or_id: u16,
}

/// One ring's areas as translated: our addresses of them, checked for one
/// size and one layout inside the memory table `mem_id`. Kept with the ring
/// state between bursts, it reads nothing: the ring is read and written
/// through a `RingMem`, which `in_table` makes with a borrow of that table.
/// Made only by translation (`TranslatedRing::new` is `unsafe`): a change
/// of size, layout or memory makes a new one or none, so the datapath never
/// pairs addresses with a size they were not checked for.
#[derive(Clone, Copy, Debug)]
pub struct TranslatedRing {
    desc: u64,
    avail: u64,
    used: u64,
    size: u16,
    packed: bool,
    mem_id: u64,
}

/// A translated ring's accessors, usable while the memory table it lies in
/// is borrowed (`'m`): the only way to read or write a ring area.
#[derive(Clone, Copy, Debug)]
pub struct RingMem<'m> {
    ring: TranslatedRing,
    _mem: PhantomData<&'m GuestMemory>,
}

impl std::ops::Deref for RingMem<'_> {
    type Target = TranslatedRing;
    #[inline(always)]
    fn deref(&self) -> &TranslatedRing {
        &self.ring
    }
}

// Ring positions are reduced to slots without a division (a `div` per ring
// access was the single largest cost of a burst). Both reductions stay below
// `size` for any input, so a bad index can never leave the ring area.
impl TranslatedRing {
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

/// The 16-bit ring field at `addr`.
///
/// # Safety
/// `addr` must be 2-byte aligned and lie in a ring area that stays mapped
/// for `'m`.
unsafe fn atomic_u16<'m>(addr: u64) -> &'m AtomicU16 {
    audit(addr, 2);
    // SAFETY: per the caller's contract; AtomicU16 has u16's layout.
    unsafe { &*(addr as *const AtomicU16) }
}

impl TranslatedRing {
    /// Wraps ring addresses translated against `mem`.
    ///
    /// # Safety
    /// For a ring of `size` entries in the layout `packed` says, the three
    /// areas (`area_sizes`) must each lie inside one of `mem`'s regions (or
    /// other memory that stays mapped while `mem` lives), aligned as the
    /// layout requires (descriptors 16, split avail 2, the rest 4); a split
    /// `size` must be a power of two.
    pub(crate) unsafe fn new(
        mem: &GuestMemory,
        (desc, avail, used): (u64, u64, u64),
        size: u16,
        packed: bool,
    ) -> TranslatedRing {
        TranslatedRing { desc, avail, used, size, packed, mem_id: mem.id() }
    }

    /// The ring's accessors, for as long as `mem` is borrowed, which must be
    /// the table the ring was translated against (table ids are unique for
    /// the life of the process).
    #[inline(always)]
    pub fn in_table<'m>(&self, mem: &'m GuestMemory) -> RingMem<'m> {
        assert_eq!(mem.id(), self.mem_id, "ring areas of another memory table");
        RingMem { ring: *self, _mem: PhantomData }
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

    /// Our address of packed descriptor `i` (reduced to a slot).
    #[inline(always)]
    fn packed_desc(&self, i: u16) -> u64 {
        self.desc + self.packed_slot(i) * 16
    }
}

// Each access below is to a field of an area `TranslatedRing::new` was
// promised for this size and layout (slots are reduced below the size), in
// the table `'m` borrows.
impl<'m> RingMem<'m> {
    /// Reads split descriptor `i` of the table (reduced to a slot).
    #[inline]
    pub(super) fn read_split_desc(&self, i: u16) -> Desc {
        // SAFETY: a slot of the descriptor table.
        unsafe { read_desc(self.desc + self.split_slot(i) * 16, Layout::Split) }
    }

    /// Reads packed descriptor `i` of the ring (reduced to a slot).
    #[inline]
    pub(super) fn read_packed_desc(&self, i: u16) -> Desc {
        // SAFETY: a slot of the descriptor ring.
        unsafe { read_desc(self.packed_desc(i), Layout::Packed) }
    }

    // --- split layout -----------------------------------------------------

    /// avail->idx, with acquire ordering (ring entries are read after it).
    #[inline]
    pub fn split_avail_idx(&self) -> u16 {
        // SAFETY: avail->idx, in the avail area.
        u16::from_le(unsafe { atomic_u16(self.avail + 2) }.load(Ordering::Acquire))
    }
    #[inline]
    pub fn split_avail_flags(&self) -> u16 {
        // SAFETY: avail->flags, in the avail area.
        u16::from_le(unsafe { atomic_u16(self.avail) }.load(Ordering::Relaxed))
    }
    /// avail->ring[i % size].
    #[inline]
    pub(super) fn split_avail_ring(&self, i: u16) -> u16 {
        // SAFETY: an entry of the avail ring.
        u16::from_le(unsafe { atomic_u16(self.avail + 4 + 2 * self.split_slot(i)) }.load(Ordering::Relaxed))
    }
    /// used_event (after the avail ring).
    #[inline]
    pub fn split_used_event(&self) -> u16 {
        // SAFETY: used_event, the last field of the avail area.
        u16::from_le(unsafe { atomic_u16(self.avail + 4 + 2 * u64::from(self.size)) }.load(Ordering::Acquire))
    }
    /// used->ring[i % size] = {id, len}.
    #[inline]
    pub fn split_write_used(&self, i: u16, id: u32, len: u32) {
        let at = self.used + 4 + 8 * self.split_slot(i);
        audit(at, 8);
        // SAFETY: an 8-byte entry of the used ring (4-aligned); only the
        // guest reads it, after our release store of used->idx.
        unsafe {
            (at as *mut u32).write_volatile(id.to_le());
            ((at + 4) as *mut u32).write_volatile(len.to_le());
        }
    }
    #[inline]
    pub fn split_used_idx(&self) -> u16 {
        // SAFETY: used->idx, in the used area.
        u16::from_le(unsafe { atomic_u16(self.used + 2) }.load(Ordering::Relaxed))
    }
    /// used->idx, with release ordering (publishes the entries written).
    #[inline]
    pub fn split_set_used_idx(&self, idx: u16) {
        // SAFETY: used->idx, in the used area.
        unsafe { atomic_u16(self.used + 2) }.store(idx.to_le(), Ordering::Release);
    }
    pub fn split_set_used_flags(&self, flags: u16) {
        // SAFETY: used->flags, in the used area.
        unsafe { atomic_u16(self.used) }.store(flags.to_le(), Ordering::Release);
    }
    /// avail_event (after the used ring).
    pub fn split_set_avail_event(&self, idx: u16) {
        // SAFETY: avail_event, the last field of the used area.
        unsafe { atomic_u16(self.used + 4 + 8 * u64::from(self.size)) }.store(idx.to_le(), Ordering::Release);
    }

    // --- packed layout ----------------------------------------------------

    /// Flags of packed descriptor `i`, acquire (the rest of it is read after).
    #[inline]
    pub(super) fn packed_flags(&self, i: u16) -> u16 {
        // SAFETY: a slot of the descriptor ring.
        unsafe { load_flags(self.packed_desc(i)) }
    }
    /// Flags of packed descriptors `from`, `from + 1`, ... up to `n` of them
    /// but not past the end of the ring (acquire each), without reducing
    /// each position to a slot.
    #[inline]
    pub(super) fn packed_flags_run(&self, from: u16, n: usize) -> impl Iterator<Item = u16> + 'm {
        let from = usize::from(from);
        let end = (from.saturating_add(n)).min(usize::from(self.size));
        let desc = self.desc;
        // SAFETY: slots `from..end`, below the size, of the descriptor ring.
        (from..end).map(move |i| unsafe { load_flags(desc + 16 * i as u64) })
    }
    /// Packed descriptors `from`, `from + 1`, ... up to `n` of them but not
    /// past the end of the ring, each read as `read_packed_desc` does,
    /// without reducing each position to a slot.
    #[inline(always)]
    pub(super) fn packed_desc_run(&self, from: u16, n: usize) -> impl Iterator<Item = Desc> + 'm {
        let from = usize::from(from);
        let end = (from.saturating_add(n)).min(usize::from(self.size));
        let desc = self.desc;
        // SAFETY: slots `from..end`, below the size, of the descriptor ring.
        (from..end).map(move |i| unsafe { read_desc(desc + 16 * i as u64, Layout::Packed) })
    }
    /// Prefetches the ring lines of packed descriptors `from` to `from + n`
    /// (not past the end of the ring) for writing.
    #[inline]
    pub(super) fn prefetch_packed_run(&self, from: u16, n: usize) {
        let end = usize::from(from).saturating_add(n).min(usize::from(self.size));
        prefetch_lines_for_write(self.desc + 16 * u64::from(from), self.desc + 16 * end as u64);
    }
    /// Writes the id and len of used packed descriptor `i`; its flags are
    /// stored afterwards (`packed_set_flags`): the guest reads an entry only
    /// once it sees them.
    #[inline]
    pub fn packed_write_id_len(&self, i: u16, id: u16, len: u32) {
        // SAFETY: a slot of the descriptor ring.
        unsafe { write_id_len(self.packed_desc(i), id, len) };
    }
    /// Stores the flags of packed descriptor `i` (release publishes the
    /// entries written before).
    #[inline]
    pub fn packed_set_flags(&self, i: u16, flags: u16, order: Ordering) {
        // SAFETY: a slot of the descriptor ring.
        unsafe { flags_of(self.packed_desc(i)) }.store(flags.to_le(), order);
    }
    /// Descriptors `i..i + LINE` of a packed ring as one unit, if `i` is a
    /// multiple of `LINE` and they all lie inside the ring (with a 64-byte
    /// aligned ring, `LINE` = 4 is one cache line).
    #[inline(always)]
    pub(super) fn packed_line<const LINE: usize>(&self, i: u16) -> Option<PackedLine<'m, LINE>> {
        let i = usize::from(i);
        (i % LINE == 0 && i + LINE <= usize::from(self.size))
            .then(|| PackedLine { at: self.desc + 16 * i as u64, _mem: PhantomData })
    }

    /// Driver event suppression structure: (off_wrap, flags).
    pub fn packed_driver_event(&self) -> (u16, u16) {
        // SAFETY: the two fields of the driver event suppression area.
        let (off_wrap, flags) = unsafe { (atomic_u16(self.avail), atomic_u16(self.avail + 2)) };
        (u16::from_le(off_wrap.load(Ordering::Acquire)), u16::from_le(flags.load(Ordering::Acquire)))
    }
    /// Device event suppression structure.
    pub fn packed_set_device_event(&self, off_wrap: u16, flags: u16) {
        // SAFETY: the two fields of the device event suppression area.
        let (off_wrap_at, flags_at) = unsafe { (atomic_u16(self.used), atomic_u16(self.used + 2)) };
        off_wrap_at.store(off_wrap.to_le(), Ordering::Relaxed);
        flags_at.store(flags.to_le(), Ordering::Release);
    }
}

/// `LINE` consecutive descriptors of a packed ring (`RingMem::packed_line`),
/// read and marked used together, without a bounds check per descriptor.
#[derive(Clone, Copy, Debug)]
pub struct PackedLine<'m, const LINE: usize> {
    /// Address of the first descriptor, inside the translated ring of the
    /// table `'m` borrows, with `LINE` descriptors from it in the ring.
    at: u64,
    _mem: PhantomData<&'m GuestMemory>,
}

// Descriptor k < LINE of the line lies inside the ring (`packed_line`
// checked the range).
impl<const LINE: usize> PackedLine<'_, LINE> {
    /// The descriptors' flags (acquire: they are read before the rest).
    #[inline(always)]
    pub fn flags(&self) -> [u16; LINE] {
        let mut flags = [0; LINE];
        for (k, f) in flags.iter_mut().enumerate() {
            // SAFETY: descriptor k of the line.
            *f = unsafe { load_flags(self.at + 16 * k as u64) };
        }
        flags
    }

    /// The descriptors.
    #[inline(always)]
    pub fn read(&self) -> [Desc; LINE] {
        let mut descs = [Desc::default(); LINE];
        for (k, d) in descs.iter_mut().enumerate() {
            // SAFETY: descriptor k of the line.
            *d = unsafe { read_desc(self.at + 16 * k as u64, Layout::Packed) };
        }
        descs
    }

    /// Marks them used: ids and lengths, a release fence, then `flags` on
    /// each (the guest reads an entry once it sees its flags).
    #[inline(always)]
    pub fn write_used(&self, ids: [u16; LINE], lens: [u32; LINE], flags: u16) {
        for k in 0..LINE {
            // SAFETY: descriptor k of the line.
            unsafe { write_id_len(self.at + 16 * k as u64, ids[k], lens[k]) };
        }
        std::sync::atomic::fence(Ordering::Release);
        for k in 0..LINE {
            // SAFETY: descriptor k of the line.
            unsafe { flags_of(self.at + 16 * k as u64) }.store(flags.to_le(), Ordering::Relaxed);
        }
    }
}

/// A descriptor table the guest pointed to (an indirect table), borrowed
/// from the memory table `'m`: `len` 16-byte descriptors, 8-byte aligned.
#[derive(Clone, Copy, Debug)]
pub struct DescTable<'m> {
    at: GuestSlice<'m>,
}

impl<'m> DescTable<'m> {
    /// The table in `at` (translated whole), if it is aligned for its
    /// 8-byte fields.
    #[inline]
    pub fn new(at: GuestSlice<'m>) -> Option<DescTable<'m>> {
        at.hva().is_multiple_of(8).then_some(DescTable { at })
    }

    /// How many whole descriptors it holds.
    #[inline]
    pub fn len(&self) -> u32 {
        self.at.len() / 16
    }

    /// Descriptor `i`, which must be one of them.
    #[inline(always)]
    pub fn read(&self, i: u32, layout: Layout) -> Desc {
        assert!(i < self.len(), "descriptor {i} beyond its table");
        // SAFETY: descriptor i lies in the slice, which is mapped for `'m`
        // and 8-byte aligned (`new`).
        unsafe { read_desc(self.at.hva() + u64::from(i) * 16, layout) }
    }
}

/// The flags of the packed descriptor at `desc`.
///
/// # Safety
/// As `read_desc`, for as long as the result is used.
#[inline(always)]
unsafe fn flags_of<'m>(desc: u64) -> &'m AtomicU16 {
    // SAFETY: per the caller's contract; the flags are its last 2 bytes.
    unsafe { atomic_u16(desc + 14) }
}

/// Loads the flags of the packed descriptor at `desc`, acquire (the rest
/// of the descriptor is read after them).
///
/// # Safety
/// As `read_desc`.
#[inline(always)]
unsafe fn load_flags(desc: u64) -> u16 {
    // SAFETY: per the caller's contract.
    u16::from_le(unsafe { flags_of(desc) }.load(Ordering::Acquire))
}

/// Writes id and len of the used packed descriptor at `desc`; its flags are
/// stored after (the guest reads an entry only once it sees them).
///
/// # Safety
/// As `read_desc`.
#[inline(always)]
unsafe fn write_id_len(desc: u64, id: u16, len: u32) {
    audit(desc + 8, 6);
    // SAFETY: per the caller's contract.
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

/// Reads the 16-byte descriptor at `addr` into a local copy.
///
/// # Safety
/// `addr` must be 8-byte aligned and the 16 bytes from it lie in a ring or
/// table that stays mapped while this runs.
#[inline(always)]
unsafe fn read_desc(addr: u64, layout: Layout) -> Desc {
    audit(addr, 16);
    let p = addr as *const u8;
    // SAFETY: per the caller's contract; volatile reads of guest memory.
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
