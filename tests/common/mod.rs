//! Shared pieces of the Rust integration tests: EAL initialisation (once per
//! test binary) and a scripted vhost-user front-end over a real socket.
#![allow(dead_code)]

pub mod net;
pub mod rig;

use std::ffi::{c_char, c_int, CString};
use std::os::fd::{AsFd, AsRawFd, OwnedFd, RawFd};
use std::os::unix::net::UnixStream;
use std::sync::OnceLock;
use std::time::Duration;

use rvhost::testing::{read_message, send_message, RawMessage};
use rvhost::testing::{Header, Request, FLAG_NEED_REPLY, VERSION};

extern "C" {
    fn rte_eal_init(argc: c_int, argv: *mut *mut c_char) -> c_int;
}

/// Initialises DPDK's EAL once (no hugepages, no PCI, no shared config).
pub fn eal_init() {
    static DONE: OnceLock<()> = OnceLock::new();
    DONE.get_or_init(|| {
        let prefix = format!("--file-prefix=rvhost-test-{}", std::process::id());
        let args = [
            "rvhost-test",
            "--no-huge",
            "-m",
            "128",
            "--no-pci",
            "--no-shconf",
            &prefix,
            "--log-level=lib.vhost.*:debug",
        ];
        let cstrings: Vec<CString> = args.iter().map(|a| CString::new(*a).unwrap()).collect();
        let mut argv: Vec<*mut c_char> = cstrings.iter().map(|c| c.as_ptr().cast_mut()).collect();
        // SAFETY: argv holds NUL-terminated strings that outlive the call.
        let rc = unsafe { rte_eal_init(argv.len() as c_int, argv.as_mut_ptr()) };
        assert!(rc >= 0, "rte_eal_init failed");
        std::mem::forget(cstrings);
    });
}

/// A unique socket path for one test.
pub fn socket_path(name: &str) -> String {
    let p = format!("/tmp/rvhost-test-{}-{name}.sock", std::process::id());
    let _ = std::fs::remove_file(&p);
    p
}

/// A scripted front-end connection.
pub struct Frontend {
    pub stream: UnixStream,
}

impl Frontend {
    pub fn connect(path: &str) -> Frontend {
        for _ in 0..100 {
            if let Ok(stream) = UnixStream::connect(path) {
                stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
                return Frontend { stream };
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!("could not connect to {path}");
    }

    pub fn send(&self, req: Request, payload: &[u8], fds: &[RawFd], need_reply: bool) {
        let flags = VERSION | if need_reply { FLAG_NEED_REPLY } else { 0 };
        let h = Header { request: req as u32, flags, size: payload.len() as u32 };
        send_message(self.stream.as_fd(), h, payload, fds).expect("send");
    }

    pub fn recv(&self) -> RawMessage {
        read_message(self.stream.as_fd()).expect("reply")
    }

    pub fn call_u64(&self, req: Request) -> u64 {
        self.send(req, &[], &[], false);
        let r = self.recv();
        assert_eq!(r.header.request, req as u32);
        assert_eq!(r.payload.len(), 8);
        u64::from_ne_bytes(r.payload[..8].try_into().unwrap())
    }

    pub fn set_u64(&self, req: Request, v: u64) {
        self.send(req, &v.to_ne_bytes(), &[], false);
    }
}

/// A memfd of `size` bytes mapped into the test (the "guest memory").
pub struct GuestRam {
    pub fd: OwnedFd,
    pub addr: u64,
    pub size: u64,
}

impl GuestRam {
    pub fn new(size: u64) -> GuestRam {
        let fd =
            nix::sys::memfd::memfd_create(c"guest", nix::sys::memfd::MemFdCreateFlag::MFD_CLOEXEC).unwrap();
        nix::unistd::ftruncate(&fd, size as i64).unwrap();
        // SAFETY: a fresh shared mapping of our memfd.
        let addr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                size as usize,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                fd.as_raw_fd(),
                0,
            )
        };
        assert_ne!(addr, libc::MAP_FAILED);
        GuestRam { fd, addr: addr as u64, size }
    }

    pub fn bytes(&self) -> &[u8] {
        // SAFETY: our live mapping of `size` bytes.
        unsafe { std::slice::from_raw_parts(self.addr as *const u8, self.size as usize) }
    }

    /// The driver's writable view (the back-end writes concurrently only into
    /// buffers the test reads after the API call returned).
    #[allow(clippy::mut_from_ref)]
    pub fn bytes_mut(&self) -> &mut [u8] {
        // SAFETY: as above; tests are single-threaded with respect to it.
        unsafe { std::slice::from_raw_parts_mut(self.addr as *mut u8, self.size as usize) }
    }

    /// SET_MEM_TABLE payload with one region: gpa 0, our address as uaddr.
    pub fn mem_table(&self) -> Vec<u8> {
        let mut p = 1u32.to_ne_bytes().to_vec();
        p.extend_from_slice(&0u32.to_ne_bytes());
        for v in [0u64, self.size, self.addr, 0] {
            p.extend_from_slice(&v.to_ne_bytes());
        }
        p
    }
}
