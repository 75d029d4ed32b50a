//! Postcopy live migration (VHOST_USER_PROTOCOL_F_PAGEFAULT): the back-end's
//! userfaultfd. QEMU reads it and resolves the faults our threads take on
//! guest pages that have not arrived yet; the back-end only creates it,
//! registers its mappings of guest memory with it, and closes it at the end.

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd};

/// `struct uffdio_api`.
#[repr(C)]
struct UffdioApi {
    api: u64,
    features: u64,
    ioctls: u64,
}

/// `struct uffdio_register` (range start, len; mode; ioctls out).
#[repr(C)]
struct UffdioRegister {
    start: u64,
    len: u64,
    mode: u64,
    ioctls: u64,
}

const UFFD_API: u64 = 0xaa;
const UFFDIO_REGISTER_MODE_MISSING: u64 = 1;

nix::ioctl_readwrite!(uffdio_api, 0xaa, 0x3f, UffdioApi);
nix::ioctl_readwrite!(uffdio_register, 0xaa, 0x00, UffdioRegister);

/// An open userfaultfd with the API handshake done.
#[derive(Debug)]
pub struct Userfault {
    fd: OwnedFd,
}

fn open_raw() -> io::Result<OwnedFd> {
    let flags = libc::O_CLOEXEC | libc::O_NONBLOCK;
    // SAFETY: the userfaultfd syscall takes only flags and returns a new fd.
    let fd = unsafe { libc::syscall(libc::SYS_userfaultfd, flags) };
    if fd >= 0 {
        // SAFETY: a fresh fd we own.
        return Ok(unsafe { OwnedFd::from_raw_fd(fd as i32) });
    }
    let syscall_err = io::Error::last_os_error();
    // Where unprivileged userfaultfd is disabled (vm.unprivileged_userfaultfd
    // = 0), /dev/userfaultfd hands them out to those allowed to open it.
    let dev = std::fs::OpenOptions::new().read(true).write(true).open("/dev/userfaultfd").map_err(|e| {
        io::Error::new(e.kind(), format!("userfaultfd syscall: {syscall_err}; /dev/userfaultfd: {e}"))
    })?;
    // SAFETY: USERFAULTFD_IOC_NEW on the device fd; flags are passed as the
    // ioctl argument by value, which ioctl_none cannot express, so use libc.
    let fd = unsafe { libc::ioctl(dev.as_raw_fd(), request_code_none(), flags) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: a fresh fd we own.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// `USERFAULTFD_IOC_NEW` = _IO(0xAA, 0x00).
fn request_code_none() -> libc::c_ulong {
    nix::request_code_none!(0xaa, 0x00) as libc::c_ulong
}

impl Userfault {
    /// POSTCOPY_ADVISE: a new userfaultfd after the UFFDIO_API handshake.
    pub fn open() -> io::Result<Userfault> {
        let fd = open_raw()?;
        let mut api = UffdioApi { api: UFFD_API, features: 0, ioctls: 0 };
        // SAFETY: UFFDIO_API on our uffd with a properly sized struct.
        unsafe { uffdio_api(fd.as_raw_fd(), &mut api) }.map_err(io::Error::from)?;
        Ok(Userfault { fd })
    }

    pub fn fd(&self) -> BorrowedFd<'_> {
        use std::os::fd::AsFd;
        self.fd.as_fd()
    }

    /// Registers [start, start+len) for missing-page faults.
    pub fn register(&self, start: u64, len: u64) -> io::Result<()> {
        let mut reg = UffdioRegister { start, len, mode: UFFDIO_REGISTER_MODE_MISSING, ioctls: 0 };
        // SAFETY: UFFDIO_REGISTER on our uffd with a properly sized struct; the
        // range is one of our own live mappings.
        unsafe { uffdio_register(self.fd.as_raw_fd(), &mut reg) }.map(drop).map_err(io::Error::from)
    }
}
