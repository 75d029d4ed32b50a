//! The dirty-page bitmap QEMU hands over with SET_LOG_BASE: one bit per 4 KiB
//! guest page, set (atomically, the front-end reads it concurrently) for every
//! page the back-end writes while `VHOST_F_LOG_ALL` is negotiated.

use std::os::fd::{AsRawFd, OwnedFd};
use std::sync::atomic::{AtomicU8, Ordering};

/// Guest page size the log counts in (`VHOST_LOG_PAGE`).
pub const LOG_PAGE: u64 = 4096;

/// The mapped log.
#[derive(Debug)]
pub struct DirtyLog {
    map_addr: usize,
    map_len: usize,
    /// Our address of byte 0 of the bitmap (map_addr + offset).
    base: usize,
    /// Bitmap size in bytes.
    size: u64,
}

impl DirtyLog {
    /// Maps `size` bytes of the log at `offset` in `fd`.
    pub fn map(fd: &OwnedFd, size: u64, offset: u64) -> std::io::Result<DirtyLog> {
        let len = offset
            .checked_add(size)
            .and_then(|l| usize::try_from(l).ok())
            .ok_or_else(|| std::io::Error::from(std::io::ErrorKind::InvalidInput))?;
        // SAFETY: a fresh shared mapping of a valid fd at a kernel-chosen
        // address; it aliases no Rust object.
        let addr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                fd.as_raw_fd(),
                0,
            )
        };
        if addr == libc::MAP_FAILED {
            return Err(std::io::Error::last_os_error());
        }
        Ok(DirtyLog { map_addr: addr as usize, map_len: len, base: addr as usize + offset as usize, size })
    }

    pub fn base(&self) -> u64 {
        self.base as u64
    }

    pub fn size(&self) -> u64 {
        self.size
    }

    fn byte(&self, index: u64) -> Option<&AtomicU8> {
        if index >= self.size {
            return None;
        }
        // SAFETY: index < size, so the byte lies inside our live mapping; the
        // front-end accesses it concurrently, hence atomic access only.
        Some(unsafe { &*((self.base + index as usize) as *const AtomicU8) })
    }

    /// Marks every page of [gpa, gpa+len) dirty. Pages beyond the bitmap are
    /// ignored (DPDK does the same: the front-end sized the log).
    pub fn mark(&self, gpa: u64, len: u64) {
        if len == 0 {
            return;
        }
        let first = gpa / LOG_PAGE;
        let last = gpa.saturating_add(len - 1) / LOG_PAGE;
        for page in first..=last {
            match self.byte(page / 8) {
                Some(b) => {
                    b.fetch_or(1 << (page % 8), Ordering::Relaxed);
                }
                None => break,
            }
        }
    }
}

impl Drop for DirtyLog {
    fn drop(&mut self) {
        // SAFETY: exactly the mapping created in `map`; no reference into it
        // outlives self (bytes are borrowed from &self only).
        unsafe { libc::munmap(self.map_addr as *mut libc::c_void, self.map_len) };
    }
}
