//! Shared mappings of the front-end's file descriptors: guest memory
//! regions, the dirty log and the inflight area all come through
//! `SharedMapping`, which
//! - maps only what lies inside the file (a range past its end is refused,
//!   instead of faulting at the first access);
//! - registers the mapping, so that a SIGBUS from a file the front-end
//!   shrinks afterwards is recovered: the page is replaced by anonymous
//!   memory, the mapping is marked faulted, and the process lives on (the
//!   device using it stops; see `GuestMemory::faulted`);
//! - in test builds (`testing`), lets `audit` check that every guest access
//!   lies inside a live mapping.
//!
//! The registry is a fixed array of atomics, the only state the signal
//! handler reads, so that it stays async-signal-safe.

use std::os::fd::{AsRawFd, BorrowedFd};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::OnceLock;

/// Why a file could not be mapped.
#[derive(Debug)]
pub enum MapError {
    Stat(std::io::Error),
    /// `offset + len` overflows or lies beyond the end of the file.
    BeyondFile {
        end: u64,
        file_size: u64,
    },
    Empty,
    /// Every registry slot is taken (more live mappings than devices can have).
    TooMany,
    Mmap {
        len: u64,
        err: std::io::Error,
    },
}

impl std::fmt::Display for MapError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            MapError::Stat(e) => write!(f, "fstat failed: {e}"),
            MapError::BeyondFile { end, file_size } => {
                write!(f, "range ends at file offset {end:#x}, beyond the file size {file_size:#x}")
            }
            MapError::Empty => write!(f, "empty range"),
            MapError::TooMany => write!(f, "too many shared mappings"),
            MapError::Mmap { len, err } => write!(f, "mmap of {len:#x} bytes failed: {err}"),
        }
    }
}

/// One live mapping as the signal handler sees it.
struct Slot {
    /// 0 while free; written last on registration, first on removal.
    len: AtomicUsize,
    start: AtomicUsize,
    /// The file's block size: the unit a lost page is replaced in (huge
    /// pages must be replaced whole).
    page: AtomicUsize,
    faulted: AtomicBool,
    /// The part the owner uses (`offset..offset + len` of the file), which
    /// guest accesses must stay inside (the audit of test builds).
    used_start: AtomicUsize,
    used_len: AtomicUsize,
}

/// 1024 devices with 8 regions each, their logs and inflight areas.
const SLOTS: usize = 1024 * 10;

static REGISTRY: [Slot; SLOTS] = [const {
    Slot {
        len: AtomicUsize::new(0),
        start: AtomicUsize::new(0),
        page: AtomicUsize::new(0),
        faulted: AtomicBool::new(false),
        used_start: AtomicUsize::new(0),
        used_len: AtomicUsize::new(0),
    }
}; SLOTS];
/// Slots below this have been used (bounds the handler's scan).
static HIGH: AtomicUsize = AtomicUsize::new(0);
/// Slots being claimed (start set, len not yet).
static CLAIMED: [AtomicBool; SLOTS] = [const { AtomicBool::new(false) }; SLOTS];
/// Pages recovered since the process started.
static FAULTS: AtomicU64 = AtomicU64::new(0);

/// How many guest pages had to be replaced after their file shrank. The
/// datapath compares it with 0 once a burst before asking its memory.
#[inline(always)]
pub fn faults() -> u64 {
    FAULTS.load(Ordering::Relaxed)
}

/// A shared read-write mapping of a front-end file, unmapped on drop.
#[derive(Debug)]
pub struct SharedMapping {
    addr: usize,
    len: usize,
    slot: usize,
}

impl SharedMapping {
    /// Maps the file from offset 0 through `offset + len` (rounded up to the
    /// file's block size, as DPDK maps regions), after checking that the
    /// range lies inside the file. `populate` pre-faults it.
    pub fn map(fd: BorrowedFd<'_>, offset: u64, len: u64, populate: bool) -> Result<SharedMapping, MapError> {
        if len == 0 {
            return Err(MapError::Empty);
        }
        let (blksz, file_size) = block_size(fd)?;
        let end = offset.checked_add(len).ok_or(MapError::BeyondFile { end: u64::MAX, file_size })?;
        if end > file_size {
            return Err(MapError::BeyondFile { end, file_size });
        }
        let map_len = end.div_ceil(blksz) * blksz;
        let map_len_us = usize::try_from(map_len).map_err(|_| MapError::BeyondFile { end, file_size })?;
        install_handler();
        let slot = claim_slot().ok_or(MapError::TooMany)?;
        let flags = libc::MAP_SHARED | if populate { libc::MAP_POPULATE } else { 0 };
        // SAFETY: a fresh shared mapping of a valid fd at a kernel-chosen
        // address; it aliases no Rust object.
        let addr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                map_len_us,
                libc::PROT_READ | libc::PROT_WRITE,
                flags,
                fd.as_raw_fd(),
                0,
            )
        };
        if addr == libc::MAP_FAILED {
            CLAIMED[slot].store(false, Ordering::Release);
            return Err(MapError::Mmap { len: map_len, err: std::io::Error::last_os_error() });
        }
        let s = &REGISTRY[slot];
        s.start.store(addr as usize, Ordering::Relaxed);
        s.page.store(blksz as usize, Ordering::Relaxed);
        s.faulted.store(false, Ordering::Relaxed);
        s.used_start.store(addr as usize + offset as usize, Ordering::Relaxed);
        s.used_len.store(len as usize, Ordering::Relaxed);
        s.len.store(map_len_us, Ordering::Release);
        Ok(SharedMapping { addr: addr as usize, len: map_len_us, slot })
    }

    /// Our address of file offset 0.
    pub fn addr(&self) -> u64 {
        self.addr as u64
    }

    pub fn len(&self) -> u64 {
        self.len as u64
    }

    /// The file's block (page) size.
    pub fn page_size(&self) -> u64 {
        REGISTRY[self.slot].page.load(Ordering::Relaxed) as u64
    }

    /// Whether a page of it was lost (the file shrank) and replaced.
    pub fn faulted(&self) -> bool {
        REGISTRY[self.slot].faulted.load(Ordering::Relaxed)
    }
}

impl Drop for SharedMapping {
    fn drop(&mut self) {
        let s = &REGISTRY[self.slot];
        s.len.store(0, Ordering::Release);
        s.start.store(0, Ordering::Relaxed);
        // SAFETY: exactly the mapping made in `map`; its users hold it (by
        // Arc), so no access into it is left.
        unsafe { libc::munmap(self.addr as *mut libc::c_void, self.len) };
        CLAIMED[self.slot].store(false, Ordering::Release);
    }
}

/// (block size, file size) of `fd`.
fn block_size(fd: BorrowedFd<'_>) -> Result<(u64, u64), MapError> {
    let st = nix::sys::stat::fstat(fd.as_raw_fd()).map_err(|e| MapError::Stat(e.into()))?;
    Ok((st.st_blksize.max(4096) as u64, st.st_size.max(0) as u64))
}

fn claim_slot() -> Option<usize> {
    let i = CLAIMED
        .iter()
        .position(|c| c.compare_exchange(false, true, Ordering::AcqRel, Ordering::Relaxed).is_ok())?;
    HIGH.fetch_max(i + 1, Ordering::AcqRel);
    Some(i)
}

/// The registered mapping holding `addr`, if any: (slot, start, len, page).
fn lookup(addr: usize) -> Option<(&'static Slot, usize, usize, usize)> {
    REGISTRY[..HIGH.load(Ordering::Acquire)].iter().find_map(|s| {
        let len = s.len.load(Ordering::Acquire);
        let start = s.start.load(Ordering::Relaxed);
        (len != 0 && addr >= start && addr - start < len)
            .then(|| (s, start, len, s.page.load(Ordering::Relaxed)))
    })
}

// --- SIGBUS recovery ------------------------------------------------------

/// The handler that was installed before ours (called for faults that are
/// not in a registered mapping).
static PREVIOUS: OnceLock<libc::sigaction> = OnceLock::new();

fn install_handler() {
    PREVIOUS.get_or_init(|| {
        // SAFETY: sigaction with a zeroed, then filled struct; the handler
        // only does async-signal-safe work (atomics, mmap, sigaction).
        unsafe {
            let mut new: libc::sigaction = std::mem::zeroed();
            new.sa_sigaction = on_sigbus as *const () as usize;
            new.sa_flags = libc::SA_SIGINFO | libc::SA_ONSTACK | libc::SA_RESTART;
            libc::sigemptyset(&mut new.sa_mask);
            let mut old: libc::sigaction = std::mem::zeroed();
            libc::sigaction(libc::SIGBUS, &new, &mut old);
            old
        }
    });
}

/// Replaces the lost page holding `addr`, if it lies in a registered
/// mapping: reads then see zeros and writes go nowhere, and the mapping is
/// marked faulted.
fn recover(addr: usize) -> bool {
    let Some((slot, start, len, page)) = lookup(addr) else { return false };
    let at = (start + (addr - start) / page * page).min(start + len - page);
    // SAFETY: [at, at + page) lies inside a live mapping of ours that the
    // faulting thread is using (its owner holds it); replacing it with
    // private anonymous memory only changes what the guest-memory accesses
    // see. MAP_FIXED over our own range.
    let p = unsafe {
        libc::mmap(
            at as *mut libc::c_void,
            page,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_FIXED,
            -1,
            0,
        )
    };
    if p == libc::MAP_FAILED {
        return false;
    }
    slot.faulted.store(true, Ordering::Relaxed);
    FAULTS.fetch_add(1, Ordering::Relaxed);
    true
}

extern "C" fn on_sigbus(sig: libc::c_int, info: *mut libc::siginfo_t, ctx: *mut libc::c_void) {
    // SAFETY: the kernel passes a valid siginfo for SA_SIGINFO handlers.
    let addr = unsafe { (*info).si_addr() } as usize;
    if recover(addr) {
        return;
    }
    let Some(prev) = PREVIOUS.get() else { return };
    match prev.sa_sigaction {
        libc::SIG_DFL | libc::SIG_IGN => {
            // Not ours: let the fault take its default course (the access
            // is retried and kills the process as it would have).
            // SAFETY: restoring the default action for SIGBUS.
            unsafe {
                let mut dfl: libc::sigaction = std::mem::zeroed();
                dfl.sa_sigaction = libc::SIG_DFL;
                libc::sigaction(libc::SIGBUS, &dfl, std::ptr::null_mut());
            }
        }
        f if prev.sa_flags & libc::SA_SIGINFO != 0 => {
            // SAFETY: the application's own SA_SIGINFO handler.
            let f: extern "C" fn(libc::c_int, *mut libc::siginfo_t, *mut libc::c_void) =
                unsafe { std::mem::transmute(f) };
            f(sig, info, ctx);
        }
        f => {
            // SAFETY: the application's own plain handler.
            let f: extern "C" fn(libc::c_int) = unsafe { std::mem::transmute(f) };
            f(sig);
        }
    }
}

// --- audit (test builds) --------------------------------------------------

/// Checks that `[addr, addr + len)` lies inside the used part of one live
/// mapping (a guest region, the log, an inflight area); in test
/// builds a miss is recorded for `audit_violations`, otherwise this is
/// nothing.
#[inline(always)]
pub fn audit(addr: u64, len: u64) {
    #[cfg(feature = "testing")]
    audit_range(addr, len);
    #[cfg(not(feature = "testing"))]
    let _ = (addr, len);
}

#[cfg(feature = "testing")]
static VIOLATIONS: std::sync::Mutex<Vec<String>> = std::sync::Mutex::new(Vec::new());

#[cfg(feature = "testing")]
fn audit_range(addr: u64, len: u64) {
    let inside = addr.checked_add(len).is_some_and(|end| {
        REGISTRY[..HIGH.load(Ordering::Acquire)].iter().any(|s| {
            let used = s.used_start.load(Ordering::Relaxed) as u64;
            s.len.load(Ordering::Acquire) != 0
                && addr >= used
                && end <= used + s.used_len.load(Ordering::Relaxed) as u64
        })
    });
    if !inside {
        let mut v = VIOLATIONS.lock().unwrap_or_else(|e| e.into_inner());
        if v.len() < 16 {
            v.push(format!("access to {addr:#x}+{len} outside every live region, log and inflight area"));
        }
    }
}

/// Test builds: the accesses outside every live mapping seen since the last
/// call (at most 16), cleared.
#[cfg(feature = "testing")]
pub fn audit_violations() -> Vec<String> {
    std::mem::take(&mut *VIOLATIONS.lock().unwrap_or_else(|e| e.into_inner()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsFd;

    fn memfd(size: u64) -> std::os::fd::OwnedFd {
        let fd = nix::sys::memfd::memfd_create(c"t", nix::sys::memfd::MemFdCreateFlag::MFD_CLOEXEC).unwrap();
        nix::unistd::ftruncate(&fd, size as i64).unwrap();
        fd
    }

    #[test]
    fn maps_only_inside_the_file() {
        let fd = memfd(0x3000);
        let m = SharedMapping::map(fd.as_fd(), 0x1000, 0x2000, false).unwrap();
        assert_eq!(m.len(), 0x3000);
        assert!(matches!(
            SharedMapping::map(fd.as_fd(), 0x1000, 0x2001, false),
            Err(MapError::BeyondFile { end: 0x3001, .. })
        ));
        assert!(matches!(
            SharedMapping::map(fd.as_fd(), u64::MAX, 2, false),
            Err(MapError::BeyondFile { .. })
        ));
        assert!(matches!(
            SharedMapping::map(memfd(0).as_fd(), 0, 4096, false),
            Err(MapError::BeyondFile { .. })
        ));
        assert!(matches!(SharedMapping::map(fd.as_fd(), 0, 0, false), Err(MapError::Empty)));
    }

    #[test]
    fn a_page_lost_to_truncation_is_replaced_not_fatal() {
        let fd = memfd(0x4000);
        let m = SharedMapping::map(fd.as_fd(), 0, 0x4000, false).unwrap();
        let p = m.addr() as *mut u8;
        // SAFETY: inside the live mapping.
        unsafe { p.add(0x3000).write_volatile(7) };
        nix::unistd::ftruncate(&fd, 0x1000).unwrap();
        assert!(!m.faulted());
        let before = faults();
        // SAFETY: inside the mapping; the page beyond the file is replaced
        // by the SIGBUS handler, so the access completes.
        let v = unsafe { p.add(0x3000).read_volatile() };
        assert_eq!(v, 0, "the lost page reads as zeros");
        assert!(m.faulted());
        assert!(faults() > before);
        // SAFETY: the page still inside the file is the file's.
        unsafe { p.write_volatile(9) };
    }
}
