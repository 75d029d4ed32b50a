//! Shared mappings of the front-end's file descriptors: guest memory
//! regions, the dirty log and the inflight area all come through
//! `SharedMapping`, which
//! - maps only what lies inside the file (a range past its end is refused,
//!   instead of faulting at the first access);
//! - registers the mapping, so that a SIGBUS from a file the front-end
//!   shrinks afterwards is recovered: at the first lost page the whole
//!   mapping is replaced by anonymous memory (one system call, no VMA
//!   added, and no later access can fault), it is marked faulted, and the
//!   process lives on (the device using it stops; see `GuestMemory::faulted`);
//! - in test builds (`testing`), lets `audit` check that every guest access
//!   lies inside a live mapping.
//!
//! The registry is a fixed array of atomics, the only state the signal
//! handler reads, so that it stays async-signal-safe. The handler counts
//! itself in `HANDLERS_INSIDE` around its lookup and replacement; a mapping
//! is unregistered first and unmapped only once no handler is inside, so a
//! replacement can never land on memory that has been reused since
//! (docs/security.md, "Files that shrink").

use std::os::fd::{AsRawFd, BorrowedFd};
use std::sync::atomic::{AtomicBool, AtomicPtr, AtomicU64, AtomicU8, AtomicUsize, Ordering};
use std::sync::Once;

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

impl std::error::Error for MapError {}

/// A mapping's recovery state (`Slot::state`).
const LIVE: u8 = 0;
/// A handler is replacing it (a fault on another thread retries the access).
const REPLACING: u8 = 1;
/// Replaced by anonymous memory: it can fault no more for a lost page.
const REPLACED: u8 = 2;

/// One live mapping as the signal handler sees it.
struct Slot {
    /// 0 while free; written last on registration, first on removal.
    len: AtomicUsize,
    start: AtomicUsize,
    /// Whether a SIGBUS inside it is recovered (not for a file sealed
    /// against shrinking, which cannot lose a page to truncation).
    recoverable: AtomicBool,
    state: AtomicU8,
    /// The part the owner uses (`offset..offset + len` of the file), which
    /// guest accesses must stay inside (the audit of test builds).
    used_start: AtomicUsize,
    used_len: AtomicUsize,
}

/// 1024 devices with 8 regions each, their logs, inflight areas and ring
/// windows (`super::window::MAX_WINDOWS`).
const SLOTS: usize = 1024 * (10 + super::window::MAX_WINDOWS);

static REGISTRY: [Slot; SLOTS] = [const {
    Slot {
        len: AtomicUsize::new(0),
        start: AtomicUsize::new(0),
        recoverable: AtomicBool::new(false),
        state: AtomicU8::new(LIVE),
        used_start: AtomicUsize::new(0),
        used_len: AtomicUsize::new(0),
    }
}; SLOTS];
/// Slots below this have been used (bounds the handler's scan).
static HIGH: AtomicUsize = AtomicUsize::new(0);
/// Slots being claimed (start set, len not yet).
static CLAIMED: [AtomicBool; SLOTS] = [const { AtomicBool::new(false) }; SLOTS];
/// Mappings replaced since the process started.
static FAULTS: AtomicU64 = AtomicU64::new(0);
/// SIGBUS handlers between their registry lookup and the end of their
/// replacement; a mapping is unmapped only while this is 0.
static HANDLERS_INSIDE: AtomicUsize = AtomicUsize::new(0);

/// How many mappings had to be replaced after their file shrank. The
/// datapath compares it with the value it saw last, once a chain.
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
    /// The file's block size (huge pages: the huge page size).
    page: u64,
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
        let recoverable = !sealed_against_shrinking(fd);
        if recoverable {
            install_handler();
        } else {
            crate::vlog!(
                Config,
                Info,
                "guest memory",
                "fd {} is a memfd sealed against shrinking: not registered for SIGBUS recovery",
                fd.as_raw_fd()
            );
        }
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
        let addr = register(slot, addr, map_len, recoverable, (offset as usize, len as usize))?;
        Ok(SharedMapping { addr, len: map_len_us, slot, page: blksz })
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
        self.page
    }

    /// Whether its file shrank under it and it was replaced (or is being).
    pub fn faulted(&self) -> bool {
        REGISTRY[self.slot].state.load(Ordering::Relaxed) != LIVE
    }

    /// Whether a SIGBUS inside it is recovered.
    #[cfg(test)]
    fn recoverable(&self) -> bool {
        REGISTRY[self.slot].recoverable.load(Ordering::Relaxed)
    }
}

impl Drop for SharedMapping {
    fn drop(&mut self) {
        // SAFETY: exactly the mapping made in `map` (or its replacement);
        // its users hold it (by Arc), so no access into it is left.
        unsafe { release(self.slot, self.addr, self.len) };
    }
}

/// Registers the fresh mapping at `addr` (`MAP_FAILED`: the mmap failed,
/// and the claimed slot is given back) of `len` bytes in `slot`, with the
/// part its owner uses, `(offset, len)` from its start.
fn register(
    slot: usize,
    addr: *mut libc::c_void,
    len: u64,
    recoverable: bool,
    (used_offset, used_len): (usize, usize),
) -> Result<usize, MapError> {
    if addr == libc::MAP_FAILED {
        CLAIMED[slot].store(false, Ordering::Release);
        return Err(MapError::Mmap { len, err: std::io::Error::last_os_error() });
    }
    let (start, s) = (addr as usize, &REGISTRY[slot]);
    s.start.store(start, Ordering::Relaxed);
    s.recoverable.store(recoverable, Ordering::Relaxed);
    s.state.store(LIVE, Ordering::Relaxed);
    s.used_start.store(start + used_offset, Ordering::Relaxed);
    s.used_len.store(used_len, Ordering::Relaxed);
    // Written last: the handler and the audit read a slot only after it.
    s.len.store(len as usize, Ordering::SeqCst);
    Ok(start)
}

/// Unregisters a slot's mapping and unmaps it. Unregistered first (no
/// handler finds it from here on), unmapped once no handler that may have
/// found it before is still inside: a replacement never lands on a range
/// that is no longer ours.
///
/// # Safety
/// `[addr, addr + len)` must be the mapping registered in `slot`, owned by
/// the caller, with no access into it left.
unsafe fn release(slot: usize, addr: usize, len: usize) {
    REGISTRY[slot].len.store(0, Ordering::SeqCst);
    while HANDLERS_INSIDE.load(Ordering::SeqCst) != 0 {
        std::thread::yield_now();
    }
    // SAFETY: per the caller's contract.
    unsafe { libc::munmap(addr as *mut libc::c_void, len) };
    CLAIMED[slot].store(false, Ordering::Release);
}

/// The page size file pages are placed in a `Window` at.
pub const WINDOW_PAGE: u64 = 4096;

/// A fixed range of our address space into which pages of front-end files
/// are placed side by side (`place`), so that memory the guest's IOMMU
/// scatters over guest pages is seen contiguously (a ring area). Where
/// nothing is placed it is anonymous memory, so that every byte of it
/// stays accessible whatever is placed, replaced or recovered; unmapped on
/// drop only. Registered like a `SharedMapping` for the SIGBUS recovery
/// and, its placed part, for the audit.
#[derive(Debug)]
pub struct Window {
    addr: usize,
    len: usize,
    slot: usize,
}

/// One run of file pages to place: `len` bytes of `fd` from `offset`, both
/// multiples of `WINDOW_PAGE`.
#[derive(Clone, Copy, Debug)]
pub struct FilePages<'f> {
    pub fd: BorrowedFd<'f>,
    pub offset: u64,
    pub len: u64,
}

impl Window {
    /// Reserves `len` bytes (rounded up to `WINDOW_PAGE`) of anonymous
    /// memory, committed only where touched.
    pub fn reserve(len: u64) -> Result<Window, MapError> {
        if len == 0 {
            return Err(MapError::Empty);
        }
        let map_len = len.div_ceil(WINDOW_PAGE) * WINDOW_PAGE;
        let map_len_us = usize::try_from(map_len).map_err(|_| MapError::Mmap {
            len: map_len,
            err: std::io::Error::from_raw_os_error(libc::ENOMEM),
        })?;
        install_handler();
        let slot = claim_slot().ok_or(MapError::TooMany)?;
        // SAFETY: fresh anonymous memory at a kernel-chosen address; it
        // aliases no Rust object.
        let addr = unsafe { anonymous_at(std::ptr::null_mut(), map_len_us, 0) };
        let addr = register(slot, addr, map_len, true, (0, 0))?;
        Ok(Window { addr, len: map_len_us, slot })
    }

    /// Our address of the window's first byte.
    pub fn addr(&self) -> u64 {
        self.addr as u64
    }

    /// Places `runs` one after the other from the window's start (the rest
    /// of the window becomes fresh anonymous memory), replacing what was
    /// placed before. Each piece is mapped over the previous content in one
    /// step (MAP_FIXED), so the window never has a hole. Refused once the
    /// window was replaced after a lost page (`faulted`), and for runs not
    /// in whole pages or longer than the window. On a failure the window
    /// is left anonymous (nothing placed).
    pub fn place(&self, runs: &[FilePages<'_>]) -> Result<(), WindowError> {
        let total = runs.iter().try_fold(0u64, |t, r| {
            (r.offset.is_multiple_of(WINDOW_PAGE) && r.len.is_multiple_of(WINDOW_PAGE) && r.len != 0)
                .then(|| t.checked_add(r.len))
                .flatten()
                .ok_or(WindowError::NotWholePages)
        })?;
        if total > self.len as u64 {
            return Err(WindowError::TooLarge { len: total });
        }
        let slot = &REGISTRY[self.slot];
        // REPLACING keeps the SIGBUS handler off while pieces change (a
        // fault meanwhile retries its access until this is done).
        if slot.state.compare_exchange(LIVE, REPLACING, Ordering::AcqRel, Ordering::Acquire).is_err() {
            return Err(WindowError::Faulted);
        }
        slot.used_len.store(0, Ordering::SeqCst);
        let mut at = self.addr;
        let mut failed = None;
        for r in runs {
            // SAFETY: [at, at + len) lies inside this window (the total was
            // checked), which is ours; a shared mapping of a front-end file
            // over it only changes what accesses into the window see.
            let p = unsafe {
                libc::mmap(
                    at as *mut libc::c_void,
                    r.len as usize,
                    libc::PROT_READ | libc::PROT_WRITE,
                    libc::MAP_SHARED | libc::MAP_FIXED,
                    r.fd.as_raw_fd(),
                    r.offset as libc::off_t,
                )
            };
            if p == libc::MAP_FAILED {
                failed = Some(std::io::Error::last_os_error());
                at = self.addr;
                break;
            }
            at += r.len as usize;
        }
        if at < self.addr + self.len {
            // SAFETY: the rest of this window (all of it after a failure),
            // ours; anonymous memory there drops what was placed before.
            let p = unsafe { anonymous_at(at as *mut _, self.addr + self.len - at, libc::MAP_FIXED) };
            if p == libc::MAP_FAILED {
                failed.get_or_insert_with(std::io::Error::last_os_error);
            }
        }
        if failed.is_none() {
            slot.used_len.store(total as usize, Ordering::SeqCst);
        }
        slot.state.store(LIVE, Ordering::Release);
        failed.map_or(Ok(()), |err| Err(WindowError::Mmap(err)))
    }

    /// Whether a file placed in it shrank under it and it was replaced.
    pub fn faulted(&self) -> bool {
        REGISTRY[self.slot].state.load(Ordering::Relaxed) == REPLACED
    }
}

impl Drop for Window {
    fn drop(&mut self) {
        // SAFETY: exactly the range reserved in `reserve` (with what was
        // placed or recovered in it); its table, which every address into
        // it borrows, is being dropped.
        unsafe { release(self.slot, self.addr, self.len) };
    }
}

/// Why file pages could not be placed in a window.
#[derive(Debug)]
pub enum WindowError {
    NotWholePages,
    TooLarge {
        len: u64,
    },
    /// Replaced after a lost page: the device using it stops.
    Faulted,
    Mmap(std::io::Error),
}

impl std::fmt::Display for WindowError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            WindowError::NotWholePages => write!(f, "pieces not in whole 4 KiB pages"),
            WindowError::TooLarge { len } => write!(f, "{len:#x} bytes do not fit the window"),
            WindowError::Faulted => write!(f, "the window lost a page"),
            WindowError::Mmap(e) => write!(f, "mmap failed: {e}"),
        }
    }
}

impl std::error::Error for WindowError {}

/// Maps `len` bytes of fresh anonymous read-write memory at `at` (with
/// `MAP_FIXED` in `flags`: over what is there), committed only where
/// touched (guest memory can be larger than what the system would commit).
///
/// # Safety
/// With `MAP_FIXED`, `[at, at + len)` must be memory of the caller's that
/// no Rust object is borrowed into.
unsafe fn anonymous_at(at: *mut libc::c_void, len: usize, flags: libc::c_int) -> *mut libc::c_void {
    // SAFETY: per the caller's contract.
    unsafe {
        libc::mmap(
            at,
            len,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE | flags,
            -1,
            0,
        )
    }
}

/// (block size, file size) of `fd`.
fn block_size(fd: BorrowedFd<'_>) -> Result<(u64, u64), MapError> {
    let st = nix::sys::stat::fstat(fd.as_raw_fd()).map_err(|e| MapError::Stat(e.into()))?;
    Ok((st.st_blksize.max(4096) as u64, st.st_size.max(0) as u64))
}

/// Whether `fd` is a memfd with `F_SEAL_SHRINK` (no other file has seals).
fn sealed_against_shrinking(fd: BorrowedFd<'_>) -> bool {
    // SAFETY: F_GET_SEALS reads a flag word of a valid fd (EINVAL if it is
    // not a memfd).
    let seals = unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_GET_SEALS) };
    seals > 0 && seals & libc::F_SEAL_SHRINK != 0
}

fn claim_slot() -> Option<usize> {
    let i = CLAIMED
        .iter()
        .position(|c| c.compare_exchange(false, true, Ordering::AcqRel, Ordering::Relaxed).is_ok())?;
    HIGH.fetch_max(i + 1, Ordering::AcqRel);
    Some(i)
}

// --- SIGBUS recovery ------------------------------------------------------

/// The disposition that was installed before ours (a leaked copy, written
/// once before ours is installed), for signals that are not ours.
static PREVIOUS: AtomicPtr<libc::sigaction> = AtomicPtr::new(std::ptr::null_mut());
/// The previous handler had SA_RESETHAND and has run: the kernel would have
/// reset the disposition to the default.
static PREVIOUS_SPENT: AtomicBool = AtomicBool::new(false);

fn install_handler() {
    static INSTALLED: Once = Once::new();
    INSTALLED.call_once(|| {
        // SAFETY: sigaction with zeroed, then filled structs; the handler
        // only does async-signal-safe work (atomics, mmap, sigaction,
        // sigprocmask, tgkill).
        unsafe {
            let mut old: libc::sigaction = std::mem::zeroed();
            libc::sigaction(libc::SIGBUS, std::ptr::null(), &mut old);
            PREVIOUS.store(Box::into_raw(Box::new(old)), Ordering::Release);
            let mut new: libc::sigaction = std::mem::zeroed();
            new.sa_sigaction = on_sigbus as *const () as usize;
            new.sa_flags = libc::SA_SIGINFO | libc::SA_ONSTACK | libc::SA_RESTART;
            libc::sigemptyset(&mut new.sa_mask);
            libc::sigaction(libc::SIGBUS, &new, std::ptr::null_mut());
        }
    });
}

/// If `addr` lies in a live recoverable mapping, replaces that whole
/// mapping by anonymous memory (reads then see zeros, writes go nowhere)
/// and marks it faulted; true if the faulting access may be retried.
fn recover(addr: usize) -> bool {
    HANDLERS_INSIDE.fetch_add(1, Ordering::SeqCst);
    let recovered = REGISTRY[..HIGH.load(Ordering::Acquire)].iter().any(|s| {
        let len = s.len.load(Ordering::SeqCst);
        let start = s.start.load(Ordering::Relaxed);
        len != 0
            && addr.wrapping_sub(start) < len
            && s.recoverable.load(Ordering::Relaxed)
            // The range was read after its len (written last on
            // registration, first on removal).
            // SAFETY: [start, start + len) is the slot's registered mapping,
            // not unmapped while this handler is counted inside.
            && unsafe { replace_whole(s, start, len) }
    });
    HANDLERS_INSIDE.fetch_sub(1, Ordering::SeqCst);
    recovered
}

/// Replaces `[start, start + len)` by anonymous memory, once per mapping.
///
/// # Safety
/// The range must be `slot`'s live registered mapping, which no one
/// unmaps until this returns.
unsafe fn replace_whole(slot: &Slot, start: usize, len: usize) -> bool {
    #[cfg(test)]
    tests::pause_point();
    match slot.state.compare_exchange(LIVE, REPLACING, Ordering::AcqRel, Ordering::Acquire) {
        Ok(_) => {
            FAULTS.fetch_add(1, Ordering::Relaxed);
            // SAFETY: [start, start + len) is a live mapping of ours (the
            // caller's contract); anonymous memory over it only changes
            // what guest-memory accesses see.
            let p = unsafe { anonymous_at(start as *mut libc::c_void, len, libc::MAP_FIXED) };
            slot.state.store(REPLACED, Ordering::Release);
            p != libc::MAP_FAILED
        }
        // Another thread is replacing it: the access is retried until done.
        Err(REPLACING) => true,
        // Anonymous memory does not lose pages: not a truncation.
        Err(_) => false,
    }
}

extern "C" fn on_sigbus(sig: libc::c_int, info: *mut libc::siginfo_t, ctx: *mut libc::c_void) {
    // SAFETY: the kernel passes a valid siginfo for SA_SIGINFO handlers.
    let (code, addr) = unsafe { ((*info).si_code, (*info).si_addr() as usize) };
    // Only a fault the kernel raised (si_code > 0) has a real si_addr:
    // kill, tgkill and sigqueue (si_code <= 0) are never ours.
    let fault = code > 0;
    if fault && recover(addr) {
        return;
    }
    chain(sig, info, ctx, fault);
}

/// Hands a SIGBUS that is not ours to the disposition found before ours,
/// as the kernel would have.
fn chain(sig: libc::c_int, info: *mut libc::siginfo_t, ctx: *mut libc::c_void, fault: bool) {
    // SAFETY: written once, before our handler was installed, never freed.
    let Some(prev) = (unsafe { PREVIOUS.load(Ordering::Acquire).as_ref() }) else { return };
    let action = if PREVIOUS_SPENT.load(Ordering::Relaxed) { libc::SIG_DFL } else { prev.sa_sigaction };
    match action {
        // A fault is never ignored (the kernel would kill for it).
        libc::SIG_IGN if !fault => {}
        libc::SIG_DFL | libc::SIG_IGN => die_by_default(sig),
        handler => {
            if prev.sa_flags & libc::SA_RESETHAND != 0 {
                PREVIOUS_SPENT.store(true, Ordering::Relaxed);
            }
            // The signal mask is changed for the previous handler's run as
            // the kernel would (its sa_mask, and the signal itself unless
            // SA_NODEFER), then restored.
            // SAFETY: the sets are initialised before use; `handler` is the
            // function the application installed, of the type its
            // SA_SIGINFO flag says, called with the arguments that asks for.
            unsafe {
                let mut old: libc::sigset_t = std::mem::zeroed();
                libc::pthread_sigmask(libc::SIG_BLOCK, &prev.sa_mask, &mut old);
                if prev.sa_flags & libc::SA_NODEFER != 0 {
                    let mut this: libc::sigset_t = std::mem::zeroed();
                    libc::sigemptyset(&mut this);
                    libc::sigaddset(&mut this, sig);
                    libc::pthread_sigmask(libc::SIG_UNBLOCK, &this, std::ptr::null_mut());
                }
                if prev.sa_flags & libc::SA_SIGINFO != 0 {
                    let f: extern "C" fn(libc::c_int, *mut libc::siginfo_t, *mut libc::c_void) =
                        std::mem::transmute(handler);
                    f(sig, info, ctx);
                } else {
                    let f: extern "C" fn(libc::c_int) = std::mem::transmute(handler);
                    f(sig);
                }
                libc::pthread_sigmask(libc::SIG_SETMASK, &old, std::ptr::null_mut());
            }
        }
    }
}

/// The default action for `sig` (for SIGBUS: the process dies, with a core
/// if enabled): the default restored, and the signal raised again on this
/// thread, where it is blocked until the handler returns.
fn die_by_default(sig: libc::c_int) {
    // SAFETY: restoring the default action and raising the signal on the
    // calling thread; both async-signal-safe.
    unsafe {
        let mut dfl: libc::sigaction = std::mem::zeroed();
        dfl.sa_sigaction = libc::SIG_DFL;
        libc::sigaction(sig, &dfl, std::ptr::null_mut());
        libc::syscall(libc::SYS_tgkill, libc::getpid(), libc::syscall(libc::SYS_gettid), sig);
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
pub(super) mod tests {
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

    /// Tests that truncate files or pause the handler, one at a time.
    pub(in crate::guest) fn serial() -> std::sync::MutexGuard<'static, ()> {
        static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());
        SERIAL.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The VMAs of this process that overlap `[addr, addr + len)`.
    fn vmas_in(addr: u64, len: u64) -> usize {
        std::fs::read_to_string("/proc/self/maps")
            .unwrap()
            .lines()
            .filter(|l| {
                let range = l.split(' ').next().unwrap();
                let (a, b) = range.split_once('-').unwrap();
                let (a, b) = (u64::from_str_radix(a, 16).unwrap(), u64::from_str_radix(b, 16).unwrap());
                a < addr + len && b > addr
            })
            .count()
    }

    /// Finding 1 of issue 19: each lost page became a mapping of its own
    /// (two VMAs more a page). Now the first lost page replaces the whole
    /// mapping: one VMA, one replacement, and the other lost pages no
    /// longer fault.
    #[test]
    fn a_shrunk_file_costs_one_replacement_of_the_whole_mapping() {
        let _s = serial();
        let fd = memfd(0x10000);
        let m = SharedMapping::map(fd.as_fd(), 0, 0x10000, false).unwrap();
        let p = m.addr() as *mut u8;
        // SAFETY: inside the live mapping.
        unsafe { p.add(0x3000).write_volatile(7) };
        nix::unistd::ftruncate(&fd, 0x1000).unwrap();
        assert!(!m.faulted());
        let (before, vmas) = (faults(), vmas_in(m.addr(), m.len()));
        assert_eq!(vmas, 1);
        for page in (3..16).step_by(2) {
            // SAFETY: inside the mapping; the SIGBUS of the first lost page
            // is recovered, and the replacement cannot fault.
            let v = unsafe { p.add(page * 0x1000).read_volatile() };
            assert_eq!(v, 0, "a lost page reads as zeros");
        }
        assert!(m.faulted());
        assert_eq!(faults() - before, 1, "one replacement for the whole mapping");
        assert_eq!(vmas_in(m.addr(), m.len()), 1, "no VMA added");
        // SAFETY: inside the (replaced) mapping.
        unsafe { p.write_volatile(9) };
        let mut first = [0xffu8];
        nix::sys::uio::pread(&fd, &mut first, 0).unwrap();
        assert_eq!(first, [0], "the page still in the file was replaced too");
    }

    #[test]
    fn a_memfd_sealed_against_shrinking_is_not_registered_for_recovery() {
        let fd = nix::sys::memfd::memfd_create(
            c"sealed",
            nix::sys::memfd::MemFdCreateFlag::MFD_CLOEXEC
                | nix::sys::memfd::MemFdCreateFlag::MFD_ALLOW_SEALING,
        )
        .unwrap();
        nix::unistd::ftruncate(&fd, 0x2000).unwrap();
        let open = SharedMapping::map(fd.as_fd(), 0, 0x2000, false).unwrap();
        assert!(open.recoverable());
        // SAFETY: adds a seal to our own memfd.
        assert_eq!(unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_ADD_SEALS, libc::F_SEAL_SHRINK) }, 0);
        let sealed = SharedMapping::map(fd.as_fd(), 0, 0x2000, false).unwrap();
        assert!(!sealed.recoverable());
        assert!(nix::unistd::ftruncate(&fd, 0).is_err(), "a sealed memfd cannot shrink");
    }

    static PAUSE: AtomicBool = AtomicBool::new(false);
    static PAUSED: AtomicBool = AtomicBool::new(false);

    /// Holds the handler between its lookup and its replacement while
    /// `PAUSE` is set (async-signal-safe: atomics only).
    pub(super) fn pause_point() {
        if PAUSE.load(Ordering::SeqCst) {
            PAUSED.store(true, Ordering::SeqCst);
            while PAUSE.load(Ordering::SeqCst) {
                std::hint::spin_loop();
            }
        }
    }

    /// Finding 7 of issue 19: a handler that had found a mapping could
    /// replace its range after another thread unmapped it and something
    /// else was mapped there. Unmapping now waits for handlers inside.
    #[test]
    fn a_mapping_is_not_unmapped_under_a_handler_that_found_it() {
        let _s = serial();
        let fd = memfd(0x4000);
        let m = SharedMapping::map(fd.as_fd(), 0, 0x4000, false).unwrap();
        let (addr, len) = (m.addr() as usize, m.len() as usize);
        nix::unistd::ftruncate(&fd, 0).unwrap();
        PAUSED.store(false, Ordering::SeqCst);
        PAUSE.store(true, Ordering::SeqCst);
        // SAFETY: inside the live mapping; the fault is recovered.
        let reader = std::thread::spawn(move || unsafe { (addr as *const u8).read_volatile() });
        while !PAUSED.load(Ordering::SeqCst) {
            std::thread::yield_now();
        }
        // Another thread drops the mapping and maps a file of its own there.
        let other = memfd(0x4000);
        let other_fd = other.as_raw_fd();
        let remapper = std::thread::spawn(move || {
            drop(m);
            // SAFETY: a fresh mapping of our memfd where the dropped one
            // was (NOREPLACE: fails rather than replace anything).
            let p = unsafe {
                libc::mmap(
                    addr as *mut libc::c_void,
                    len,
                    libc::PROT_READ | libc::PROT_WRITE,
                    libc::MAP_SHARED | libc::MAP_FIXED_NOREPLACE,
                    other_fd,
                    0,
                )
            };
            assert_eq!(p as usize, addr, "the range was taken by another test thread; run again");
            // SAFETY: our fresh mapping.
            unsafe { (addr as *mut u8).write_volatile(0xab) };
        });
        // Time enough for an unmapping that does not wait to be done; the
        // outcome below does not depend on it.
        for _ in 0..200 {
            if remapper.is_finished() {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
        PAUSE.store(false, Ordering::SeqCst);
        // The handler's zero page, or, when the remapper ran between the
        // handler's return and the load's retry, the other file's byte (the
        // test itself unmapped the range under the reader): either way not
        // a fault and not a byte of the lost file.
        let read = reader.join().unwrap();
        assert!(
            read == 0 || read == 0xab,
            "the lost page read as zeros (or, later, the new mapping): {read:#x}"
        );
        remapper.join().unwrap();
        nix::sys::uio::pwrite(&other, &[0xcd], 1).unwrap();
        let at = addr as *const u8;
        // SAFETY: the remapper's mapping, still live.
        let seen = unsafe { [at.read_volatile(), at.add(1).read_volatile()] };
        assert_eq!(seen, [0xab, 0xcd], "the new mapping at that address is the other file's, untouched");
        // SAFETY: the remapper's mapping, no longer used.
        unsafe { libc::munmap(addr as *mut libc::c_void, len) };
    }
}
