//! The dirty-page bitmap QEMU hands over with SET_LOG_BASE: one bit per 4 KiB
//! guest page, set (atomically, the front-end reads it concurrently) for every
//! page the back-end writes while `VHOST_F_LOG_ALL` is negotiated.

use std::os::fd::{AsFd, OwnedFd};
use std::sync::atomic::{AtomicU8, Ordering};

use crate::guest::mapping::{audit, MapError, SharedMapping};

/// Guest page size the log counts in (`VHOST_LOG_PAGE`).
pub const LOG_PAGE: u64 = 4096;

/// The mapped log.
#[derive(Debug)]
pub struct DirtyLog {
    /// Held for its lifetime: unmapped when the log is dropped.
    _mapping: SharedMapping,
    /// Our address of byte 0 of the bitmap (the mapping + offset).
    base: u64,
    /// Bitmap size in bytes.
    size: u64,
}

impl DirtyLog {
    /// Maps `size` bytes of the log at `offset` in `fd` (which must hold
    /// them: a log past the end of its file is refused).
    pub fn map(fd: &OwnedFd, size: u64, offset: u64) -> Result<DirtyLog, MapError> {
        let mapping = SharedMapping::map(fd.as_fd(), offset, size, false)?;
        Ok(DirtyLog { base: mapping.addr() + offset, _mapping: mapping, size })
    }

    pub fn base(&self) -> u64 {
        self.base
    }

    pub fn size(&self) -> u64 {
        self.size
    }

    fn byte(&self, index: u64) -> Option<&AtomicU8> {
        if index >= self.size {
            return None;
        }
        let at = self.base + index;
        audit(at, 1);
        // SAFETY: index < size, so the byte lies inside our live mapping
        // (checked against the file by `map`); the front-end accesses it
        // concurrently, hence atomic access only.
        Some(unsafe { &*(at as *const AtomicU8) })
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
