//! Hostile front-end: streams of random messages (random request ids, flags,
//! sizes, payload bytes and fd counts) into live connections. The library
//! must answer or close, never crash or hang, and must still serve a clean
//! front-end afterwards. Also a fixed catalogue of known-bad messages.

mod common;

use std::ffi::CString;
use std::io::Write;
use std::os::fd::{AsFd, AsRawFd};
use std::time::Duration;

use common::{eal_init, socket_path, Frontend, GuestRam};
use proptest::prelude::*;
use rvhost::testing::send_message;
use rvhost::testing::{Header, Request, FLAG_NEED_REPLY, VERSION};

mod ffi {
    use std::ffi::{c_char, c_int};
    extern "C" {
        pub fn rte_vhost_driver_register(path: *const c_char, flags: u64) -> c_int;
        pub fn rte_vhost_driver_start(path: *const c_char) -> c_int;
        pub fn rte_vhost_driver_unregister(path: *const c_char) -> c_int;
    }
}

struct Server {
    path: String,
    cpath: CString,
}

impl Server {
    fn start(name: &str) -> Server {
        eal_init();
        let path = socket_path(name);
        let cpath = CString::new(path.clone()).unwrap();
        // SAFETY: valid NUL-terminated path.
        unsafe {
            assert_eq!(ffi::rte_vhost_driver_register(cpath.as_ptr(), 0), 0);
            assert_eq!(ffi::rte_vhost_driver_start(cpath.as_ptr()), 0);
        }
        Server { path, cpath }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        // SAFETY: valid path.
        unsafe { ffi::rte_vhost_driver_unregister(self.cpath.as_ptr()) };
    }
}

/// A clean front-end can still negotiate: features, memory table, rings.
fn assert_serves_clean_frontend(path: &str) {
    let fe = Frontend::connect(path);
    fe.send(Request::SetOwner, &[], &[], false);
    let features = fe.call_u64(Request::GetFeatures);
    assert_ne!(features & (1 << 32), 0, "VIRTIO_F_VERSION_1 offered");
    fe.set_u64(Request::SetFeatures, 1 << 32);
    let ram = GuestRam::new(1 << 20);
    fe.send(Request::SetMemTable, &ram.mem_table(), &[ram.fd.as_raw_fd()], true);
    let ack = fe.recv();
    assert_eq!(ack.payload, 0u64.to_ne_bytes(), "SET_MEM_TABLE acked with success");
    let mut state = Vec::new();
    state.extend_from_slice(&0u32.to_ne_bytes());
    state.extend_from_slice(&256u32.to_ne_bytes());
    fe.send(Request::SetVringNum, &state, &[], true);
    assert_eq!(fe.recv().payload, 0u64.to_ne_bytes());
}

fn send_raw(fe: &Frontend, request: u32, flags: u32, payload: &[u8], nfds: usize) -> bool {
    let files: Vec<_> = (0..nfds).map(|_| std::fs::File::open("/dev/null").unwrap()).collect();
    let fds: Vec<_> = files.iter().map(|f| f.as_raw_fd()).collect();
    let h = Header { request, flags, size: payload.len() as u32 };
    send_message(fe.stream.as_fd(), h, payload, &fds).is_ok()
}

/// Reads whatever comes back until the peer is quiet or closes.
fn drain(fe: &Frontend) {
    fe.stream.set_read_timeout(Some(Duration::from_millis(50))).unwrap();
    let mut buf = [0u8; 1024];
    while let Ok(n) = std::io::Read::read(&mut &fe.stream, &mut buf) {
        if n == 0 {
            break;
        }
    }
}

/// The two tests share the process's fd table, which the first one counts:
/// they run one at a time.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

#[test]
fn known_bad_messages_are_refused_without_harm() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let server = Server::start("badmsg");
    let need = VERSION | FLAG_NEED_REPLY;
    let cases: Vec<(&str, u32, u32, Vec<u8>, usize)> = vec![
        ("unknown request with NEED_REPLY", 77, need, vec![], 0),
        ("payload too short", Request::SetFeatures as u32, need, vec![0; 4], 0),
        ("payload too long", Request::SetVringNum as u32, need, vec![0; 16], 0),
        ("fd on a request that takes none", Request::SetFeatures as u32, need, vec![0; 8], 1),
        ("too many fds for the table", Request::SetMemTable as u32, need, vec![1, 0, 0, 0, 0, 0, 0, 0], 3),
        (
            "ring size not a power of two",
            Request::SetVringNum as u32,
            need,
            [0u32.to_ne_bytes(), 100u32.to_ne_bytes()].concat(),
            0,
        ),
        (
            "ring size zero",
            Request::SetVringNum as u32,
            need,
            [0u32.to_ne_bytes(), 0u32.to_ne_bytes()].concat(),
            0,
        ),
        ("ring address without memory", Request::SetVringAddr as u32, need, vec![0; 40], 0),
        ("kick without fd", Request::SetVringKick as u32, need, 0u64.to_ne_bytes().to_vec(), 0),
        ("bad MTU", Request::NetSetMtu as u32, need, 10u64.to_ne_bytes().to_vec(), 0),
        ("status above u8", Request::SetStatus as u32, need, 0x1ffu64.to_ne_bytes().to_vec(), 0),
        (
            "zero-size region",
            Request::SetMemTable as u32,
            need,
            [1u32.to_ne_bytes(), 0u32.to_ne_bytes()].concat().into_iter().chain([0u8; 32]).collect(),
            1,
        ),
    ];
    for (what, req, flags, payload, nfds) in cases {
        let fe = Frontend::connect(&server.path);
        fe.send(Request::SetOwner, &[], &[], false);
        assert!(send_raw(&fe, req, flags, &payload, nfds), "{what}: send");
        let reply = fe.recv();
        assert_eq!(reply.payload, 1u64.to_ne_bytes(), "{what}: REPLY_ACK reports failure");
        assert!(reply.fds.is_empty(), "{what}: no fd in the ack");
        // The connection survives a refused message that asked for a reply.
        assert_eq!(fe.call_u64(Request::GetQueueNum), 128, "{what}: connection still served");
    }
    // Without NEED_REPLY a refused message closes the connection, and so does
    // a ring index beyond the 256 rings (DPDK: before any reply).
    let mut buf = [0u8; 1];
    let out_of_range = [0xffffu32.to_ne_bytes(), 256u32.to_ne_bytes()].concat();
    for (what, req, flags, payload) in [
        ("refused without NEED_REPLY", 77, VERSION, vec![]),
        ("vring index out of range", Request::SetVringNum as u32, need, out_of_range),
    ] {
        let fe = Frontend::connect(&server.path);
        assert!(send_raw(&fe, req, flags, &payload, 0));
        fe.stream.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        assert_eq!(std::io::Read::read(&mut &fe.stream, &mut buf).unwrap(), 0, "{what}: connection closed");
    }
    // More fds than a message may carry (9 on a one-region table): the
    // kernel truncates the control data; the 8 that arrived must be closed.
    let count_fds = || std::fs::read_dir("/proc/self/fd").unwrap().count();
    let before = count_fds();
    for _ in 0..3 {
        let fe = Frontend::connect(&server.path);
        let mut table = [1u32.to_ne_bytes(), 0u32.to_ne_bytes()].concat();
        table.extend_from_slice(&[0u8; 32]);
        let files: Vec<_> = (0..9).map(|_| std::fs::File::open("/dev/null").unwrap()).collect();
        let fds: Vec<i32> = files.iter().map(|f| f.as_raw_fd()).collect();
        let hdr =
            Header { request: Request::SetMemTable as u32, flags: need, size: table.len() as u32 }.to_bytes();
        let iov = [std::io::IoSlice::new(&hdr), std::io::IoSlice::new(&table)];
        let rights = [nix::sys::socket::ControlMessage::ScmRights(&fds)];
        nix::sys::socket::sendmsg::<()>(
            fe.stream.as_raw_fd(),
            &iov,
            &rights,
            nix::sys::socket::MsgFlags::empty(),
            None,
        )
        .expect("send with 9 fds");
        drop(files);
        fe.stream.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let _ = std::io::Read::read(&mut &fe.stream, &mut buf);
    }
    std::thread::sleep(Duration::from_millis(200));
    assert!(count_fds() <= before, "fds leaked by truncated fd messages: {before} -> {}", count_fds());
    // Header with a bad version, then a truncated header.
    let fe = Frontend::connect(&server.path);
    assert!(send_raw(&fe, Request::GetFeatures as u32, 2, &[], 0));
    assert_eq!(std::io::Read::read(&mut &fe.stream, &mut buf).unwrap(), 0, "bad version closes");
    let mut fe = Frontend::connect(&server.path);
    fe.stream.write_all(&[1, 0, 0]).unwrap();
    drop(fe);
    assert_serves_clean_frontend(&server.path);
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 300, ..ProptestConfig::default() })]

    #[test]
    fn random_message_streams_never_break_the_server(
        msgs in proptest::collection::vec((0u32..48, 0u32..16, proptest::collection::vec(any::<u8>(), 0..80), 0usize..3), 1..12)
    ) {
        let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
        static SERVER: std::sync::OnceLock<Server> = std::sync::OnceLock::new();
        let server = SERVER.get_or_init(|| Server::start("fuzz"));
        let fe = Frontend::connect(&server.path);
        for (req, flags, payload, nfds) in &msgs {
            if !send_raw(&fe, *req, *flags, payload, *nfds) {
                break;
            }
        }
        drain(&fe);
        drop(fe);
        assert_serves_clean_frontend(&server.path);
    }
}
