//! Access to virtqueue memory shared with the guest: the split and packed
//! ring areas, descriptor reads, and copies into and out of guest buffers.
//!
//! Every address used here was produced by `GuestMemory` translation and
//! bounds-checked against the region it lies in (ring areas by
//! `VqState::translate` for the ring size; buffers by `gpa_to_hva` for their
//! length). The guest writes this memory concurrently, so ring fields are
//! read and written with atomic accesses of the right ordering, and each
//! descriptor is copied out once before it is validated and used.

use std::sync::atomic::{AtomicU16, Ordering};

use super::mapping::audit;
use super::raw;

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

/// A contiguous piece of a guest buffer in our address space.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Seg {
    pub hva: u64,
    pub len: u32,
}

/// Copies `src` into guest memory at `seg.hva + off`.
#[inline(always)]
pub fn write_guest(seg: Seg, off: u32, src: &[u8]) {
    assert!(off as usize + src.len() <= seg.len as usize, "guest write beyond its translated segment");
    audit(seg.hva + u64::from(off), src.len() as u64);
    // SAFETY: the range was bounds-checked against the segment, which lies in
    // a mapped region; the guest may race on the bytes (as with any device).
    unsafe { raw::copy(src.as_ptr(), (seg.hva + u64::from(off)) as *mut u8, src.len()) };
}

/// Copies guest memory at `seg.hva + off` into `dst`.
#[inline(always)]
pub fn read_guest(seg: Seg, off: u32, dst: &mut [u8]) {
    assert!(off as usize + dst.len() <= seg.len as usize, "guest read beyond its translated segment");
    audit(seg.hva + u64::from(off), dst.len() as u64);
    // SAFETY: as above.
    unsafe { raw::copy((seg.hva + u64::from(off)) as *const u8, dst.as_mut_ptr(), dst.len()) };
}

/// Makes the `n` (at most 16) bytes at `seg.hva + off` hold the low `n`
/// bytes of the little-endian `value` (the virtio-net header), storing only
/// what differs. A recycled RX buffer usually holds the same header already;
/// not writing it leaves its cache line shared with the guest's core instead
/// of taking it over (DPDK's ASSIGN_UNLESS_EQUAL does the same).
#[inline]
pub fn update_guest_le(seg: Seg, off: u32, value: u128, n: usize) {
    assert!(n <= 16 && off as usize + n <= seg.len as usize, "guest write beyond its translated segment");
    audit(seg.hva + u64::from(off), n as u64);
    let dst = (seg.hva + u64::from(off)) as *mut u8;
    // SAFETY: [dst, dst+n) was bounds-checked against the segment, which lies
    // in a mapped region; each access below stays inside it.
    unsafe {
        if n == 12 {
            // The mergeable/VERSION_1 header, the usual case.
            let (lo, hi) = ((value as u64).to_le(), ((value >> 64) as u32).to_le());
            if raw::load8(dst) != lo {
                raw::store8(dst, lo);
            }
            if raw::load4(dst.add(8)) != hi {
                raw::store4(dst.add(8), hi);
            }
            return;
        }
    }
    if read_guest_le(seg, off, n) == value & low_bytes_mask(n) {
        return;
    }
    let bytes = value.to_le_bytes();
    // SAFETY: as above.
    unsafe { raw::copy(bytes.as_ptr(), dst, n) };
}

/// The mask of the low `n` bytes of a u128.
fn low_bytes_mask(n: usize) -> u128 {
    if n >= 16 {
        u128::MAX
    } else {
        (1u128 << (8 * n)) - 1
    }
}

/// Reads `n` (at most 16) bytes at `seg.hva + off` as a little-endian
/// integer, with register loads.
#[inline]
pub fn read_guest_le(seg: Seg, off: u32, n: usize) -> u128 {
    assert!(n <= 16 && off as usize + n <= seg.len as usize, "guest read beyond its translated segment");
    audit(seg.hva + u64::from(off), n as u64);
    let src = (seg.hva + u64::from(off)) as *const u8;
    // SAFETY: as in update_guest_le.
    unsafe {
        if n == 12 {
            let lo = u64::from_le(raw::load8(src));
            let hi = u32::from_le(raw::load4(src.add(8)));
            return u128::from(lo) | u128::from(hi) << 64;
        }
        let mut bytes = [0u8; 16];
        raw::copy(src, bytes.as_mut_ptr(), n);
        u128::from_le_bytes(bytes)
    }
}

/// PREFETCHW of every cache line in `start..end`: ring lines the burst will
/// write arrive owned, all at once, instead of one miss per batch (each
/// first crossing shared for the read, then again owned for the write).
#[inline]
fn prefetch_lines_for_write(start: u64, end: u64) {
    let mut line = start & !63;
    while line < end {
        prefetch_write(line);
        line += 64;
    }
}

/// Hints the CPU to fetch the cache line at `hva` for writing (PREFETCHW:
/// the line arrives owned, so the store that follows does not wait for the
/// guest's core to give it up). A no-op hint on CPUs without it.
#[inline(always)]
pub fn prefetch_write(hva: u64) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: PREFETCHW is a hint: it never faults or changes memory.
    unsafe {
        std::arch::asm!("prefetchw [{}]", in(reg) hva, options(nostack, preserves_flags, readonly))
    };
    #[cfg(not(target_arch = "x86_64"))]
    prefetch(hva);
}

/// Hints the CPU to fetch the cache line at `hva` (a translated guest
/// address); never faults, so any address is harmless.
#[inline(always)]
pub fn prefetch(hva: u64) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: PREFETCHT0 is a hint: it never faults or changes memory.
    unsafe {
        std::arch::x86_64::_mm_prefetch::<{ std::arch::x86_64::_MM_HINT_T0 }>(hva as *const i8)
    };
    #[cfg(not(target_arch = "x86_64"))]
    let _ = hva;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seg_of(buf: &mut [u8]) -> Seg {
        Seg { hva: buf.as_mut_ptr() as u64, len: buf.len() as u32 }
    }

    #[test]
    fn small_and_large_copies_move_exactly_the_range() {
        let src: Vec<u8> = (0..200u32).map(|i| (i * 7 + 3) as u8).collect();
        for n in 0..=150usize {
            for off in [0u32, 1, 5, 13] {
                let mut guest = vec![0xaau8; 200];
                write_guest(seg_of(&mut guest), off, &src[..n]);
                let o = off as usize;
                assert!(guest[..o].iter().all(|&b| b == 0xaa), "n={n} off={off}: bytes before touched");
                assert_eq!(&guest[o..o + n], &src[..n], "n={n} off={off}");
                assert!(guest[o + n..].iter().all(|&b| b == 0xaa), "n={n} off={off}: bytes after touched");
                let mut back = vec![0x55u8; n + 1];
                read_guest(seg_of(&mut guest), off, &mut back[..n]);
                assert_eq!(&back[..n], &src[..n]);
                assert_eq!(back[n], 0x55, "read wrote past its destination");
            }
        }
    }

    #[test]
    fn little_endian_words_round_trip_at_every_width() {
        let value = 0x0f0e_0d0c_0b0a_0908_0706_0504_0302_0100u128;
        for n in 0..=16usize {
            for before in [0xffu8, 0x00] {
                let mut guest = [before; 20];
                // What is already there (partly equal) is made equal too.
                guest[2..2 + n.min(4)].copy_from_slice(&value.to_le_bytes()[..n.min(4)]);
                update_guest_le(seg_of(&mut guest), 2, value, n);
                assert_eq!(&guest[2..2 + n], &value.to_le_bytes()[..n], "n={n}");
                assert!(guest[2 + n..].iter().all(|&b| b == before), "n={n}: wrote too far");
                assert_eq!(read_guest_le(seg_of(&mut guest), 2, n), value & low_bytes_mask(n), "n={n}");
            }
        }
    }

    #[test]
    #[should_panic(expected = "beyond its translated segment")]
    fn header_write_past_the_segment_is_refused() {
        let mut guest = [0u8; 10];
        update_guest_le(seg_of(&mut guest), 0, 0, 12);
    }
}
