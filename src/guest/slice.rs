//! Guest buffers in our address space: `GuestSlice`, a translated,
//! bounds-checked piece of one mapped region that borrows the memory table
//! it came from, and the copies into and out of it (through `raw`: the
//! guest writes the same memory concurrently). Writes go through a
//! `Writer`, which marks what it wrote in the dirty log while migration
//! logging is on: a datapath write cannot forget to log.

use std::marker::PhantomData;

use super::dirty_log::DirtyLog;
use super::mapping::audit;
use super::raw;
use super::GuestMemory;

/// `len` bytes of guest memory at our address `hva`, inside one mapped
/// region of the table `'m` borrows. (16 bytes: the batch paths move
/// arrays of them.)
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GuestSlice<'m> {
    hva: u64,
    len: u32,
    _mem: PhantomData<&'m GuestMemory>,
}

impl Default for GuestSlice<'_> {
    fn default() -> Self {
        GuestSlice { hva: 0, len: 0, _mem: PhantomData }
    }
}

impl<'m> GuestSlice<'m> {
    /// # Safety
    /// `[hva, hva + len)` must lie inside one live mapping of guest memory
    /// that stays mapped for `'m`.
    pub unsafe fn new(hva: u64, len: u32) -> GuestSlice<'m> {
        GuestSlice { hva, len, _mem: PhantomData }
    }

    /// The same slice, borrowing nothing: for storage that keeps its table
    /// alive by other means (a ring's burst scratch holds the table's Arc
    /// and is cleared when the table changes).
    ///
    /// # Safety
    /// The mapping must stay alive for as long as the result is used.
    pub unsafe fn detach(self) -> GuestSlice<'static> {
        GuestSlice { hva: self.hva, len: self.len, _mem: PhantomData }
    }

    pub fn len(&self) -> u32 {
        self.len
    }

    /// Our address (for prefetches, which never fault).
    pub fn hva(&self) -> u64 {
        self.hva
    }

    /// Copies guest memory at `off` into `dst`.
    #[inline(always)]
    pub fn read(self, off: u32, dst: &mut [u8]) {
        assert!(off as usize + dst.len() <= self.len as usize, "guest read beyond its translated segment");
        audit(self.hva + u64::from(off), dst.len() as u64);
        // SAFETY: the range was bounds-checked against the slice, which lies
        // in a live mapped region; the guest may race on the bytes.
        unsafe { raw::copy((self.hva + u64::from(off)) as *const u8, dst.as_mut_ptr(), dst.len()) };
    }

    /// Copies `src` into guest memory at `off` (through a `Writer`).
    #[inline(always)]
    fn write(self, off: u32, src: &[u8]) {
        assert!(off as usize + src.len() <= self.len as usize, "guest write beyond its translated segment");
        audit(self.hva + u64::from(off), src.len() as u64);
        // SAFETY: as in `read`.
        unsafe { raw::copy_out(src.as_ptr(), (self.hva + u64::from(off)) as *mut u8, src.len()) };
    }

    /// Makes the `n` (at most 16) bytes at `off` hold the low `n`
    /// bytes of the little-endian `value` (the virtio-net header), storing only
    /// what differs. A recycled RX buffer usually holds the same header already;
    /// not writing it leaves its cache line shared with the guest's core instead
    /// of taking it over (DPDK's ASSIGN_UNLESS_EQUAL does the same).
    #[inline(always)]
    fn update_le(self, off: u32, value: u128, n: usize) {
        assert!(
            n <= 16 && off as usize + n <= self.len as usize,
            "guest write beyond its translated segment"
        );
        audit(self.hva + u64::from(off), n as u64);
        let dst = (self.hva + u64::from(off)) as *mut u8;
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
        if self.read_le(off, n) == value & low_bytes_mask(n) {
            return;
        }
        let bytes = value.to_le_bytes();
        // SAFETY: as above.
        unsafe { raw::copy(bytes.as_ptr(), dst, n) };
    }

    /// Reads `n` (at most 16) bytes at `self.hva + off` as a little-endian
    /// integer, with register loads.
    #[inline]
    pub fn read_le(self, off: u32, n: usize) -> u128 {
        assert!(n <= 16 && off as usize + n <= self.len as usize, "guest read beyond its translated segment");
        audit(self.hva + u64::from(off), n as u64);
        let src = (self.hva + u64::from(off)) as *const u8;
        // SAFETY: as in `update_le`.
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
}

/// Writes into guest buffers and marks the pages written in the dirty log
/// while migration logging is on (VHOST_F_LOG_ALL with a log; the memory
/// table translates the writes back to guest-physical pages).
#[derive(Clone, Copy, Debug)]
pub struct Writer<'a> {
    log: Option<(&'a DirtyLog, &'a GuestMemory)>,
}

impl<'a> Writer<'a> {
    pub fn new(log: Option<(&'a DirtyLog, &'a GuestMemory)>) -> Writer<'a> {
        Writer { log }
    }

    #[inline(always)]
    fn logged(&self, s: GuestSlice<'_>, off: u32, len: usize) {
        if let Some((log, mem)) = self.log {
            mark_written(log, mem, s.hva + u64::from(off), len as u64);
        }
    }

    /// Copies `src` into `s` at `off`.
    #[inline(always)]
    pub fn write(&self, s: GuestSlice<'_>, off: u32, src: &[u8]) {
        s.write(off, src);
        self.logged(s, off, src.len());
    }

    /// Makes the `n` (at most 16) bytes at `off` of `s` hold the low `n`
    /// bytes of the little-endian `value`, storing only what differs (see
    /// `GuestSlice::update_le`).
    #[inline(always)]
    pub fn update_le(&self, s: GuestSlice<'_>, off: u32, value: u128, n: usize) {
        s.update_le(off, value, n);
        self.logged(s, off, n);
    }
}

/// Marks the guest pages behind our `[hva, hva + len)` dirty. Out of line:
/// only a migrating device logs, and the check must stay a test and a
/// branch in the copy paths.
#[cold]
#[inline(never)]
fn mark_written(log: &DirtyLog, mem: &GuestMemory, hva: u64, len: u64) {
    if let Some(gpa) = mem.hva_to_gpa(hva, len) {
        log.mark(gpa, len);
    }
}

/// The mask of the low `n` bytes of a u128.
fn low_bytes_mask(n: usize) -> u128 {
    if n >= 16 {
        u128::MAX
    } else {
        (1u128 << (8 * n)) - 1
    }
}

/// PREFETCHW of every cache line in `start..end`: ring lines the burst will
/// write arrive owned, all at once, instead of one miss per batch (each
/// first crossing shared for the read, then again owned for the write).
#[inline]
pub(crate) fn prefetch_lines_for_write(start: u64, end: u64) {
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

    fn seg_of(buf: &mut [u8]) -> GuestSlice<'_> {
        // SAFETY: the test's buffer, borrowed for the slice's life.
        unsafe { GuestSlice::new(buf.as_mut_ptr() as u64, buf.len() as u32) }
    }

    const W: Writer<'static> = Writer { log: None };

    #[test]
    fn small_and_large_copies_move_exactly_the_range() {
        let src: Vec<u8> = (0..200u32).map(|i| (i * 7 + 3) as u8).collect();
        for n in 0..=150usize {
            for off in [0u32, 1, 5, 13] {
                let mut guest = vec![0xaau8; 200];
                W.write(seg_of(&mut guest), off, &src[..n]);
                let o = off as usize;
                assert!(guest[..o].iter().all(|&b| b == 0xaa), "n={n} off={off}: bytes before touched");
                assert_eq!(&guest[o..o + n], &src[..n], "n={n} off={off}");
                assert!(guest[o + n..].iter().all(|&b| b == 0xaa), "n={n} off={off}: bytes after touched");
                let mut back = vec![0x55u8; n + 1];
                seg_of(&mut guest).read(off, &mut back[..n]);
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
                W.update_le(seg_of(&mut guest), 2, value, n);
                assert_eq!(&guest[2..2 + n], &value.to_le_bytes()[..n], "n={n}");
                assert!(guest[2 + n..].iter().all(|&b| b == before), "n={n}: wrote too far");
                assert_eq!(seg_of(&mut guest).read_le(2, n), value & low_bytes_mask(n), "n={n}");
            }
        }
    }

    #[test]
    #[should_panic(expected = "beyond its translated segment")]
    fn header_write_past_the_segment_is_refused() {
        let mut guest = [0u8; 10];
        W.update_le(seg_of(&mut guest), 0, 0, 12);
    }
}
