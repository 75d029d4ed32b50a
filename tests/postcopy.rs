//! Postcopy as QEMU drives it, over a real socket: POSTCOPY_ADVISE returns a
//! userfaultfd, LISTEN, SET_MEM_TABLE is answered with the back-end's own
//! mapping addresses and waits for our ack, the mappings are then registered
//! with the userfaultfd — proven by a read of the back-end's mapping that
//! blocks until we place the page with UFFDIO_COPY and then sees exactly our
//! bytes — and POSTCOPY_END answers 0.

mod common;

use std::ffi::CString;
use std::os::fd::{AsRawFd, OwnedFd};

use common::{eal_init, socket_path, Frontend, GuestRam};
use rvhost::testing::{MemoryTable, Request};

const POSTCOPY_SUPPORT: u64 = 1 << 4;
const PAGEFAULT: u64 = 1 << 8;
const PAGE: u64 = 4096;

/// Waits for one page fault on `ufd` and resolves it with `page` (QEMU's
/// part, with the `userfaultfd` crate).
fn resolve_one_fault(ufd: &OwnedFd, page: &[u8]) -> u64 {
    use std::os::fd::FromRawFd;
    let mut pfd = [nix::poll::PollFd::new(std::os::fd::AsFd::as_fd(ufd), nix::poll::PollFlags::POLLIN)];
    let n = nix::poll::poll(&mut pfd, nix::poll::PollTimeout::from(10_000u16)).unwrap();
    assert_eq!(n, 1, "no fault reported within 10 s");
    // SAFETY: a duplicate of the back-end's userfaultfd, owned by the Uffd.
    let uffd = unsafe { userfaultfd::Uffd::from_raw_fd(nix::unistd::dup(ufd.as_raw_fd()).unwrap()) };
    let Some(userfaultfd::Event::Pagefault { addr, .. }) = uffd.read_event().unwrap() else {
        panic!("not a page fault event");
    };
    let addr = (addr as u64) & !(PAGE - 1);
    // SAFETY: one page from our buffer into the faulting, registered range.
    unsafe { uffd.copy(page.as_ptr().cast(), addr as *mut _, PAGE as usize, true) }.unwrap();
    addr
}

#[test]
fn postcopy_sequence_registers_the_mappings() {
    eal_init();
    let path = socket_path("postcopy");
    let cpath = CString::new(path.clone()).unwrap();
    // SAFETY: valid NUL-terminated path.
    unsafe {
        assert_eq!(rvhost_ffi::register(cpath.as_ptr(), POSTCOPY_SUPPORT), 0);
        assert_eq!(rvhost_ffi::start(cpath.as_ptr()), 0);
    }
    let fe = Frontend::connect(&path);
    fe.send(Request::SetOwner, &[], &[], false);
    let proto = fe.call_u64(Request::GetProtocolFeatures);
    assert_ne!(proto & PAGEFAULT, 0, "PAGEFAULT offered with RTE_VHOST_USER_POSTCOPY_SUPPORT");
    fe.set_u64(Request::SetProtocolFeatures, PAGEFAULT);

    fe.send(Request::PostcopyAdvise, &[], &[], false);
    let mut advise = fe.recv();
    assert_eq!(advise.header.request, Request::PostcopyAdvise as u32);
    assert_eq!(advise.fds.len(), 1, "the reply carries the userfaultfd");
    let ufd = advise.fds.pop().unwrap();
    fe.send(Request::PostcopyListen, &[], &[], false);

    let ram = GuestRam::new(4 * PAGE);
    fe.send(Request::SetMemTable, &ram.mem_table(), &[ram.fd.as_raw_fd()], false);
    let reply = fe.recv();
    assert_eq!(reply.header.request, Request::SetMemTable as u32);
    let table = MemoryTable::parse(&reply.payload).expect("reply is a memory table");
    assert_eq!(table.regions.len(), 1);
    let backend_addr = table.regions[0].userspace_addr;
    assert_ne!(backend_addr, ram.addr, "the reply carries the back-end's own address");
    assert_eq!(table.regions[0].guest_phys_addr, 0);
    // Ack: the back-end registers with the uffd only after this. Messages
    // are handled in order, so once the next reply arrives it has.
    fe.send(Request::SetMemTable, &0u64.to_ne_bytes(), &[], false);
    assert_eq!(fe.call_u64(Request::GetProtocolFeatures), proto);

    // Touch the back-end's mapping of page 2: the read must block in the
    // kernel until we place the page through the userfaultfd.
    let page: Vec<u8> = (0..PAGE).map(|i| (i * 7 % 251) as u8).collect();
    let target = backend_addr + 2 * PAGE + 104;
    let reader = std::thread::spawn(move || {
        // SAFETY: the back-end's live mapping of the region (same process).
        unsafe { std::ptr::read_volatile(target as *const u64) }
    });
    let faulted = resolve_one_fault(&ufd, &page);
    assert_eq!(faulted, backend_addr + 2 * PAGE);
    let got = reader.join().unwrap();
    assert_eq!(got, u64::from_ne_bytes(page[104..112].try_into().unwrap()));

    fe.send(Request::PostcopyEnd, &[], &[], false);
    let end = fe.recv();
    assert_eq!(end.header.request, Request::PostcopyEnd as u32);
    assert_eq!(end.payload, 0u64.to_ne_bytes());
    drop(fe);
    // SAFETY: valid path.
    assert_eq!(unsafe { rvhost_ffi::unregister(cpath.as_ptr()) }, 0);
}

/// The exported functions, called as a C application would.
mod rvhost_ffi {
    use std::ffi::{c_char, c_int};
    extern "C" {
        #[link_name = "rte_vhost_driver_register"]
        pub fn register(path: *const c_char, flags: u64) -> c_int;
        #[link_name = "rte_vhost_driver_start"]
        pub fn start(path: *const c_char) -> c_int;
        #[link_name = "rte_vhost_driver_unregister"]
        pub fn unregister(path: *const c_char) -> c_int;
    }
}
