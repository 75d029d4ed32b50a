//! The machine accesses to guest memory that are not single aligned
//! words: unaligned loads and stores, and copies. The guest (another
//! process, another core) writes this memory whenever it likes, so for the
//! compiler it must be like device memory: each access happens as written,
//! once, never assumed to hold a value. Aligned ring fields are atomics or
//! volatile words (`ring.rs`); what is here is done in inline assembly
//! (x86-64) or by an out-of-line C `memcpy` (bulk), both outside what the
//! Rust compiler reasons about, where a plain or unaligned Rust access to
//! racing memory would be a data race.

// Copies of more than 64 bytes: an opaque call (see guest_copy.c).
extern "C" {
    fn rvh_guest_copy(dst: *mut u8, src: *const u8, n: usize);
}

#[cfg(target_arch = "x86_64")]
mod imp {
    use std::arch::asm;

    /// Copies 16 bytes.
    ///
    /// # Safety
    /// `src` readable and `dst` writable for 16 bytes.
    #[inline(always)]
    pub unsafe fn move16(src: *const u8, dst: *mut u8) {
        // SAFETY: per the caller's contract; an unaligned SSE move.
        unsafe {
            asm!("movups {x}, [{s}]", "movups [{d}], {x}", s = in(reg) src, d = in(reg) dst,
                 x = out(xmm_reg) _, options(nostack, preserves_flags));
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
    pub unsafe fn move16(src: *const u8, dst: *mut u8) {
        for i in 0..16 {
            // SAFETY: per the caller's contract.
            unsafe { dst.add(i).write_volatile(src.add(i).read_volatile()) };
        }
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

pub use imp::{load4, load8, store4, store8};

/// Copies `n` bytes from `src` to `dst`, one of which is guest memory.
/// Copies of up to 64 bytes (virtio-net headers, small packets) are done
/// inline with overlapping unaligned moves: a library call cost more than
/// the copy itself at 64-byte packets.
///
/// # Safety
/// `src` must be readable and `dst` writable for `n` bytes, not
/// overlapping.
#[inline(always)]
pub unsafe fn copy(src: *const u8, dst: *mut u8, n: usize) {
    // SAFETY (all branches): each access stays inside [0, n) of both
    // ranges. Tested largest first: packets, then headers.
    unsafe {
        if n > 64 {
            rvh_guest_copy(dst, src, n);
        } else if n > 32 {
            imp::move16(src, dst);
            imp::move16(src.add(16), dst.add(16));
            imp::move16(src.add(n - 32), dst.add(n - 32));
            imp::move16(src.add(n - 16), dst.add(n - 16));
        } else if n >= 16 {
            imp::move16(src, dst);
            imp::move16(src.add(n - 16), dst.add(n - 16));
        } else if n >= 8 {
            let (head, tail) = (imp::load8(src), imp::load8(src.add(n - 8)));
            imp::store8(dst, head);
            imp::store8(dst.add(n - 8), tail);
        } else if n >= 4 {
            let (head, tail) = (imp::load4(src), imp::load4(src.add(n - 4)));
            imp::store4(dst, head);
            imp::store4(dst.add(n - 4), tail);
        } else {
            for i in 0..n {
                dst.add(i).write_volatile(src.add(i).read_volatile());
            }
        }
    }
}
