//! Postcopy live migration (VHOST_USER_PROTOCOL_F_PAGEFAULT): the back-end's
//! userfaultfd, on the `userfaultfd` crate. QEMU reads it and resolves the
//! faults our threads take on guest pages that have not arrived yet; the
//! back-end only creates it, registers its mappings of guest memory with it,
//! and closes it at the end.

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd};

use userfaultfd::{Uffd, UffdBuilder};

/// An open userfaultfd (API handshake done by the builder).
#[derive(Debug)]
pub struct Userfault {
    uffd: Uffd,
}

impl Userfault {
    /// POSTCOPY_ADVISE: a new userfaultfd, close-on-exec and non-blocking as
    /// QEMU expects. The builder falls back to /dev/userfaultfd where the
    /// syscall is refused (vm.unprivileged_userfaultfd = 0).
    pub fn open() -> io::Result<Userfault> {
        let uffd = UffdBuilder::new()
            .close_on_exec(true)
            .non_blocking(true)
            .user_mode_only(false)
            .create()
            .map_err(|e| io::Error::other(e.to_string()))?;
        Ok(Userfault { uffd })
    }

    pub fn fd(&self) -> BorrowedFd<'_> {
        // SAFETY: the uffd's fd stays open as long as `self` (it closes it
        // on drop), which the borrow ties the result to.
        unsafe { BorrowedFd::borrow_raw(self.uffd.as_raw_fd()) }
    }

    /// Registers [start, start+len) (one of our own live mappings) for
    /// missing-page faults.
    pub fn register(&self, start: u64, len: u64) -> io::Result<()> {
        self.uffd
            .register(start as *mut libc::c_void, len as usize)
            .map(drop)
            .map_err(|e| io::Error::other(e.to_string()))
    }
}
