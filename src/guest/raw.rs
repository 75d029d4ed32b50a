//! Guest-memory accesses that are not single aligned words: unaligned
//! loads and stores (virtio-net headers) and copies. The guest (another
//! process, another core) writes this memory whenever it likes, so for the
//! compiler it must be like device memory: each access happens as written,
//! once, never assumed to hold a value. Aligned ring fields are atomics or
//! volatile words (`ring.rs`); unaligned words and small copies into the
//! guest here are inline assembly (x86-64), other copies an opaque call
//! into C (`guest_copy.c`): both outside what the Rust compiler reasons
//! about, where a plain or unaligned Rust access to racing memory would be
//! a data race.

extern "C" {
    fn rvh_guest_copy(dst: *mut u8, src: *const u8, n: usize);
}

#[cfg(target_arch = "x86_64")]
mod imp {
    use std::arch::asm;

    /// Copies `n` bytes of ours at `src` into guest memory at `dst`: 16 to
    /// 64 bytes in one assembly block of overlapping 16-byte moves (one
    /// compiler barrier instead of a call); others by the opaque copy.
    ///
    /// # Safety
    /// As `copy`.
    #[inline(always)]
    pub unsafe fn copy_out(src: *const u8, dst: *mut u8, n: usize) {
        // SAFETY: in both blocks, every 16-byte word starts at or after
        // offset 0 and ends at or before `n`, in both ranges.
        unsafe {
            if n > 32 && n <= 64 {
                asm!(
                    "movdqu {a}, xmmword ptr [{s}]",
                    "movdqu {b}, xmmword ptr [{s} + 16]",
                    "movdqu {c}, xmmword ptr [{s} + {n} - 32]",
                    "movdqu {d}, xmmword ptr [{s} + {n} - 16]",
                    "movdqu xmmword ptr [{t}], {a}",
                    "movdqu xmmword ptr [{t} + 16], {b}",
                    "movdqu xmmword ptr [{t} + {n} - 32], {c}",
                    "movdqu xmmword ptr [{t} + {n} - 16], {d}",
                    s = in(reg) src, t = in(reg) dst, n = in(reg) n,
                    a = out(xmm_reg) _, b = out(xmm_reg) _, c = out(xmm_reg) _, d = out(xmm_reg) _,
                    options(nostack, preserves_flags)
                );
            } else if (16..=32).contains(&n) {
                asm!(
                    "movdqu {a}, xmmword ptr [{s}]",
                    "movdqu {d}, xmmword ptr [{s} + {n} - 16]",
                    "movdqu xmmword ptr [{t}], {a}",
                    "movdqu xmmword ptr [{t} + {n} - 16], {d}",
                    s = in(reg) src, t = in(reg) dst, n = in(reg) n,
                    a = out(xmm_reg) _, d = out(xmm_reg) _,
                    options(nostack, preserves_flags)
                );
            } else {
                super::copy(src, dst, n);
            }
        }
    }

    /// # Safety
    /// `p` readable for 8 bytes.
    #[inline(always)]
    pub unsafe fn load8(p: *const u8) -> u64 {
        let v: u64;
        // SAFETY: per the caller's contract.
        unsafe {
            asm!("mov {v}, qword ptr [{p}]", p = in(reg) p, v = out(reg) v, options(nostack, preserves_flags, readonly))
        };
        v
    }

    /// # Safety
    /// `p` writable for 8 bytes.
    #[inline(always)]
    pub unsafe fn store8(p: *mut u8, v: u64) {
        // SAFETY: per the caller's contract.
        unsafe {
            asm!("mov qword ptr [{p}], {v}", p = in(reg) p, v = in(reg) v, options(nostack, preserves_flags))
        };
    }

    /// # Safety
    /// `p` readable for 4 bytes.
    #[inline(always)]
    pub unsafe fn load4(p: *const u8) -> u32 {
        let v: u32;
        // SAFETY: per the caller's contract.
        unsafe {
            asm!("mov {v:e}, dword ptr [{p}]", p = in(reg) p, v = out(reg) v, options(nostack, preserves_flags, readonly))
        };
        v
    }

    /// # Safety
    /// `p` writable for 4 bytes.
    #[inline(always)]
    pub unsafe fn store4(p: *mut u8, v: u32) {
        // SAFETY: per the caller's contract.
        unsafe {
            asm!("mov dword ptr [{p}], {v:e}", p = in(reg) p, v = in(reg) v, options(nostack, preserves_flags))
        };
    }
}

#[cfg(not(target_arch = "x86_64"))]
mod imp {
    //! Byte-wise volatile fallbacks (correct, not fast).

    /// # Safety
    /// As the x86-64 version.
    pub unsafe fn copy_out(src: *const u8, dst: *mut u8, n: usize) {
        // SAFETY: per the caller's contract.
        unsafe { super::copy(src, dst, n) }
    }

    /// # Safety
    /// As the x86-64 version.
    pub unsafe fn load8(p: *const u8) -> u64 {
        // SAFETY: per the caller's contract.
        u64::from_ne_bytes(std::array::from_fn(|i| unsafe { p.add(i).read_volatile() }))
    }
    /// # Safety
    /// As the x86-64 version.
    pub unsafe fn store8(p: *mut u8, v: u64) {
        for (i, b) in v.to_ne_bytes().into_iter().enumerate() {
            // SAFETY: per the caller's contract.
            unsafe { p.add(i).write_volatile(b) };
        }
    }
    /// # Safety
    /// As the x86-64 version.
    pub unsafe fn load4(p: *const u8) -> u32 {
        // SAFETY: per the caller's contract.
        u32::from_ne_bytes(std::array::from_fn(|i| unsafe { p.add(i).read_volatile() }))
    }
    /// # Safety
    /// As the x86-64 version.
    pub unsafe fn store4(p: *mut u8, v: u32) {
        for (i, b) in v.to_ne_bytes().into_iter().enumerate() {
            // SAFETY: per the caller's contract.
            unsafe { p.add(i).write_volatile(b) };
        }
    }
}

pub use imp::{copy_out, load4, load8, store4, store8};

/// Copies `n` bytes from `src` to `dst`, one of which is guest memory, by
/// an opaque call: the compiler assumes nothing about what it reads or
/// writes. (Inline assembly copies were measured at 10 % more instructions
/// a packet on the packed batch path, whose four copies each became a
/// compiler barrier.)
///
/// # Safety
/// `src` must be readable and `dst` writable for `n` bytes, not
/// overlapping.
#[inline(always)]
pub unsafe fn copy(src: *const u8, dst: *mut u8, n: usize) {
    // SAFETY: per the caller's contract.
    unsafe { rvh_guest_copy(dst, src, n) }
}
