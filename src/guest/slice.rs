//! Guest buffers in our address space (`Seg`: a translated, bounds-checked
//! piece of one region) and the copies into and out of them, which go
//! through `raw` (the guest writes the same memory concurrently).

use super::mapping::audit;
use super::raw;

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
