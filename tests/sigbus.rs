//! SIGBUS recovery (issue 19, findings 1 and 5): a front-end that shrinks
//! the guest-memory file costs one replacement of the whole mapping (no
//! VMA per lost page), and a device moves nothing read from lost memory;
//! the handler acts only on faults the kernel raised inside a live
//! registered mapping and hands every other SIGBUS to the disposition
//! found before it, as the kernel would have (signal mask, SA_SIGINFO or
//! plain, SA_RESETHAND, SIG_IGN, SIG_DFL). Each test failed on c73e478.
//!
//! Signal dispositions are per process, so each handler case runs in a
//! fresh copy of this test binary (`in_child`); a case that kills its
//! process is asserted from outside.

mod common;

use std::ffi::c_int;
use std::io::Read;
use std::os::unix::process::ExitStatusExt;
use std::sync::atomic::{AtomicI32, AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use common::rig::*;
use rvhost::testing::mock::{Buf, Layout};

const RAM: u64 = 4 << 20;
/// Where the front-end cuts the file: everything above is lost.
const KEPT: u64 = 1 << 20;

/// Finding 1: each lost page became a mapping of its own between two
/// pieces of the file's (two VMAs a page: one burst over a shrunk file
/// added 16,385). Now the first lost page replaces the whole mapping, and
/// a burst during which the ring's memory was lost delivers nothing (no
/// packet of lost memory's zeros reaches the application).
#[test]
fn a_burst_over_a_shrunk_file_adds_no_vma_and_delivers_nothing() {
    let mut rig = Rig::connect("shrunk-burst", 0, F_VERSION_1, 0, RAM);
    let mut tx = rig.ring(1, Layout::Split, 256, areas_at(0x10000, Layout::Split, 256));
    for k in 0..16u64 {
        rig.view().write(0x40000 + 0x800 * k, &pattern(12 + 60, k as u8));
        tx.post(&[Buf { gpa: 0x40000 + 0x800 * k, len: 72, write: false }]).unwrap();
    }
    // 16 chains of a header and 7 one-byte buffers, each on its own page,
    // every other page of what will be lost (128 pages).
    for c in 0..16u64 {
        let chain: Vec<Buf> = (0..8u64)
            .map(|b| Buf { gpa: KEPT + 0x2000 * (8 * c + b), len: if b == 0 { 12 } else { 1 }, write: false })
            .collect();
        tx.post(&chain).unwrap();
    }
    drop(tx);
    let [mapping] = guest_mappings(rig.vid)[..] else { panic!("one region") };
    assert_eq!(vmas_in(mapping), 1);
    nix::unistd::ftruncate(&rig.ram.fd, KEPT as i64).unwrap();

    let mut out = [std::ptr::null_mut(); 32];
    // SAFETY: valid vid, queue, pool and a 32-entry array.
    let n = unsafe { rte_vhost_dequeue_burst(rig.vid, 1, rig.pool.as_ptr(), out.as_mut_ptr(), 32) };
    for &p in &out[..usize::from(n)] {
        // SAFETY: an mbuf the library handed us.
        unsafe { rvhost::testing::Mbuf::from_raw(p) }.unwrap().free();
    }
    assert_eq!(vmas_in(mapping), 1, "the whole mapping was replaced at once: no VMA added");
    assert_eq!(n, 0, "a burst that read lost memory delivers nothing");
    assert!(rig.dequeue(1).is_empty(), "then the device moves nothing");
}

// --- the handler's dispositions, in child processes ------------------------

const CHILD: &str = "RVHOST_SIGBUS_CHILD";

/// Runs handler case `case` in a fresh copy of this test binary (at most
/// 60 s); its exit status and output.
fn in_child(case: &str) -> (std::process::ExitStatus, String) {
    let log = std::env::temp_dir().join(format!("rvhost-sigbus-{}-{case}.log", std::process::id()));
    let file = std::fs::File::create(&log).unwrap();
    let mut child = std::process::Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "handler_cases_run_here_in_a_child", "--nocapture", "--test-threads=1"])
        .env(CHILD, case)
        .stdout(file.try_clone().unwrap())
        .stderr(file)
        .spawn()
        .unwrap();
    let end = Instant::now() + Duration::from_secs(60);
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if Instant::now() > end {
            child.kill().unwrap();
            panic!("case {case} hung");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let mut out = String::new();
    std::fs::File::open(&log).unwrap().read_to_string(&mut out).unwrap();
    let _ = std::fs::remove_file(&log);
    (status, out)
}

fn killed_by_sigbus(case: &str) {
    let (status, out) = in_child(case);
    assert_eq!(status.signal(), Some(libc::SIGBUS), "{case}: {status}; output:\n{out}");
}

fn survives(case: &str) {
    let (status, out) = in_child(case);
    assert!(status.success(), "{case}: {status}; output:\n{out}");
}

/// Finding 5: with no handler before ours, a SIGBUS sent with raise or
/// kill was swallowed (the process lived on a signal whose default action
/// is to die) and recovery was uninstalled for good.
#[test]
fn a_sent_sigbus_takes_its_default_action() {
    killed_by_sigbus("raise");
    killed_by_sigbus("kill");
}

/// Finding 5: a sigqueue with a forged si_addr inside guest memory made
/// the handler replace a page and stop the device (and the process lived).
#[test]
fn a_forged_fault_address_is_not_recovered() {
    killed_by_sigbus("forged");
}

/// Finding 5: with SIG_IGN before ours, a sent SIGBUS is ignored as it was
/// before us, and recovery still works afterwards (c73e478 uninstalled it:
/// the next shrunk file killed the process).
#[test]
fn an_ignored_sigbus_stays_ignored_and_recovery_stays() {
    survives("ignored");
}

/// Finding 5: an SA_SIGINFO handler installed before ours gets every
/// SIGBUS that is not ours (a forged one inside guest memory, a real fault
/// in memory of its own) with the kernel's arguments, under its sa_mask
/// and with the signal blocked; the device is not stopped by a forged one.
#[test]
fn an_earlier_siginfo_handler_gets_what_is_not_ours() {
    survives("siginfo");
}

/// Finding 5: a plain handler installed before ours runs under its
/// sa_mask; with SA_RESETHAND, the next SIGBUS takes the default action.
#[test]
fn an_earlier_plain_handler_runs_under_its_mask_and_resets() {
    let (status, out) = in_child("plain");
    assert!(out.contains("first SIGBUS handled"), "{status}; output:\n{out}");
    assert_eq!(status.signal(), Some(libc::SIGBUS), "the second one: default action; output:\n{out}");
}

/// Finding 6, a documented limit (docs/security.md, "Known limits"): the
/// kernel runs no handler for a fault on a thread that blocks SIGBUS, so
/// a burst on such a thread over a shrunk file ends the process.
#[test]
fn a_thread_that_blocks_sigbus_dies_of_a_shrunk_file_as_documented() {
    killed_by_sigbus("blocked");
}

/// Entry point of the cases above in their child process (does nothing
/// in the test run itself).
#[test]
fn handler_cases_run_here_in_a_child() {
    let Ok(case) = std::env::var(CHILD) else { return };
    match case.as_str() {
        "raise" => {
            set_previous(libc::SIG_DFL, 0);
            let _rig = device_with_memory("raise");
            // SAFETY: raising a signal.
            unsafe { libc::raise(libc::SIGBUS) };
        }
        "kill" => {
            set_previous(libc::SIG_DFL, 0);
            let _rig = device_with_memory("kill");
            // SAFETY: a signal to ourselves.
            unsafe { libc::kill(libc::getpid(), libc::SIGBUS) };
            // Any thread may take it.
            std::thread::sleep(Duration::from_secs(2));
        }
        "forged" => {
            set_previous(libc::SIG_DFL, 0);
            let rig = device_with_memory("forged");
            queue_forged_sigbus(guest_mappings(rig.vid)[0].0);
        }
        "ignored" => {
            set_previous(libc::SIG_IGN, 0);
            let mut rig = device_with_memory("ignored");
            // SAFETY: a signal to ourselves.
            unsafe { libc::kill(libc::getpid(), libc::SIGBUS) };
            std::thread::sleep(Duration::from_millis(200));
            let mut rx = rig.ring(0, Layout::Split, 256, areas_at(0x10000, Layout::Split, 256));
            rx.post(&[Buf { gpa: 0x40000, len: 2048, write: true }]).unwrap();
            assert_eq!(rig.enqueue(0, &pattern(60, 1)), 1, "still served after an ignored SIGBUS");
            drop(rx);
            nix::unistd::ftruncate(&rig.ram.fd, 0).unwrap();
            assert_eq!(rig.enqueue(0, &pattern(60, 2)), 0, "the shrunk file was recovered");
        }
        "siginfo" => siginfo_case(),
        "blocked" => {
            set_previous(libc::SIG_DFL, 0);
            let mut rig = device_with_memory("blocked");
            let mut rx = rig.ring(0, Layout::Split, 256, areas_at(0x10000, Layout::Split, 256));
            rx.post(&[Buf { gpa: 0x40000, len: 2048, write: true }]).unwrap();
            drop(rx);
            nix::unistd::ftruncate(&rig.ram.fd, 0).unwrap();
            let (vid, m) = (rig.vid, mbuf_of(rig.pool, &pattern(60, 1)).as_ptr() as usize);
            std::thread::spawn(move || {
                // SAFETY: blocks SIGBUS on this thread, then one burst with
                // a valid vid and mbuf.
                unsafe {
                    let mut bus: libc::sigset_t = std::mem::zeroed();
                    libc::sigemptyset(&mut bus);
                    libc::sigaddset(&mut bus, libc::SIGBUS);
                    libc::pthread_sigmask(libc::SIG_BLOCK, &bus, std::ptr::null_mut());
                    let mut raw = [m as *mut rvhost::testing::RteMbuf];
                    rte_vhost_enqueue_burst(vid, 0, raw.as_mut_ptr(), 1);
                }
            })
            .join()
            .unwrap();
        }
        "plain" => {
            set_previous(plain_handler as *const () as usize, libc::SA_RESETHAND);
            let _rig = device_with_memory("plain");
            // SAFETY: raising a signal.
            unsafe { libc::raise(libc::SIGBUS) };
            assert_eq!(CALLS.load(Ordering::SeqCst), 1, "the plain handler ran");
            assert_eq!(SEEN_SIG.load(Ordering::SeqCst), libc::SIGBUS);
            assert_eq!(MASKED.load(Ordering::SeqCst), 0b11, "its sa_mask and SIGBUS blocked while it ran");
            println!("first SIGBUS handled");
            // SAFETY: raising a signal (now with its default action).
            unsafe { libc::raise(libc::SIGBUS) };
        }
        other => panic!("no case {other}"),
    }
}

fn device_with_memory(name: &str) -> Rig {
    Rig::connect(name, 0, F_VERSION_1, 0, 1 << 20)
}

/// Installs `handler` (with `flags`) as SIGBUS's disposition, with SIGUSR2
/// in its sa_mask, before the library maps anything (in place of the
/// Rust runtime's stack-overflow handler, which resets SIGBUS to its
/// default and returns: a C application has none).
fn set_previous(handler: usize, flags: c_int) {
    // SAFETY: sigaction with a zeroed, then filled struct.
    unsafe {
        let mut sa: libc::sigaction = std::mem::zeroed();
        sa.sa_sigaction = handler;
        sa.sa_flags = flags;
        libc::sigemptyset(&mut sa.sa_mask);
        libc::sigaddset(&mut sa.sa_mask, libc::SIGUSR2);
        assert_eq!(libc::sigaction(libc::SIGBUS, &sa, std::ptr::null_mut()), 0);
    }
}

/// A SIGBUS queued to this thread (si_code SI_QUEUE, as any process may
/// send) whose si_addr field says `addr`.
fn queue_forged_sigbus(addr: u64) {
    // SAFETY: a zeroed siginfo, filled; the union starts at byte 16.
    unsafe {
        let mut info: libc::siginfo_t = std::mem::zeroed();
        info.si_signo = libc::SIGBUS;
        info.si_code = libc::SI_QUEUE;
        std::ptr::addr_of_mut!(info).cast::<u8>().add(16).cast::<u64>().write_unaligned(addr);
        assert_eq!(info.si_addr() as u64, addr);
        let tid = libc::syscall(libc::SYS_gettid);
        let rc = libc::syscall(libc::SYS_rt_tgsigqueueinfo, libc::getpid(), tid, libc::SIGBUS, &info);
        assert_eq!(rc, 0, "rt_tgsigqueueinfo");
    }
}

static CALLS: AtomicUsize = AtomicUsize::new(0);
static SEEN_SIG: AtomicI32 = AtomicI32::new(0);
static SEEN_CODE: AtomicI32 = AtomicI32::new(0);
static SEEN_ADDR: AtomicU64 = AtomicU64::new(0);
/// Bit 0: SIGUSR2 was blocked in the handler; bit 1: SIGBUS was.
static MASKED: AtomicI32 = AtomicI32::new(0);

fn record_mask() {
    // SAFETY: reads this thread's signal mask.
    unsafe {
        let mut cur: libc::sigset_t = std::mem::zeroed();
        libc::pthread_sigmask(libc::SIG_BLOCK, std::ptr::null(), &mut cur);
        let bits = (libc::sigismember(&cur, libc::SIGUSR2) == 1) as i32
            | ((libc::sigismember(&cur, libc::SIGBUS) == 1) as i32) << 1;
        MASKED.store(bits, Ordering::SeqCst);
    }
}

extern "C" fn plain_handler(sig: c_int) {
    record_mask();
    SEEN_SIG.store(sig, Ordering::SeqCst);
    CALLS.fetch_add(1, Ordering::SeqCst);
}

extern "C" fn siginfo_handler(sig: c_int, info: *mut libc::siginfo_t, ctx: *mut libc::c_void) {
    record_mask();
    // SAFETY: the siginfo the kernel (through the library) passes.
    let (code, addr) = unsafe { ((*info).si_code, (*info).si_addr() as u64) };
    SEEN_SIG.store(if ctx.is_null() { -1 } else { sig }, Ordering::SeqCst);
    SEEN_CODE.store(code, Ordering::SeqCst);
    SEEN_ADDR.store(addr, Ordering::SeqCst);
    CALLS.fetch_add(1, Ordering::SeqCst);
    if code > 0 {
        // A real fault in our own shrunk file: map a page over it.
        // SAFETY: the page of our own mapping that faulted.
        unsafe {
            libc::mmap(
                (addr & !0xfff) as *mut libc::c_void,
                0x1000,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_FIXED,
                -1,
                0,
            );
        }
    }
}

fn siginfo_case() {
    set_previous(siginfo_handler as *const () as usize, libc::SA_SIGINFO);
    let mut rig = device_with_memory("siginfo");
    let mut rx = rig.ring(0, Layout::Split, 256, areas_at(0x10000, Layout::Split, 256));
    let guest = guest_mappings(rig.vid)[0].0;
    queue_forged_sigbus(guest + 0x40000);
    assert_eq!(CALLS.load(Ordering::SeqCst), 1, "the earlier handler got the forged SIGBUS");
    assert_eq!(
        (SEEN_SIG.load(Ordering::SeqCst), SEEN_CODE.load(Ordering::SeqCst), SEEN_ADDR.load(Ordering::SeqCst)),
        (libc::SIGBUS, libc::SI_QUEUE, guest + 0x40000),
        "with its siginfo and a context"
    );
    assert_eq!(MASKED.load(Ordering::SeqCst), 0b11, "its sa_mask and SIGBUS blocked while it ran");
    rx.post(&[Buf { gpa: 0x40000, len: 2048, write: true }]).unwrap();
    assert_eq!(rig.enqueue(0, &pattern(60, 3)), 1, "the device was not stopped by a forged fault");
    assert_eq!(rig.view().read(0x40000 + 12, 60), pattern(60, 3), "and its memory is the guest's");

    // A real fault in a file of the application's own.
    let own = common::GuestRam::new(0x2000);
    nix::unistd::ftruncate(&own.fd, 0).unwrap();
    // SAFETY: our mapping; its fault is served by our handler.
    let v = unsafe { ((own.addr + 0x1000) as *const u8).read_volatile() };
    assert_eq!(v, 0);
    assert_eq!(CALLS.load(Ordering::SeqCst), 2, "the earlier handler got the real fault");
    assert_eq!(
        (SEEN_CODE.load(Ordering::SeqCst), SEEN_ADDR.load(Ordering::SeqCst)),
        (libc::BUS_ADRERR, own.addr + 0x1000)
    );
}
