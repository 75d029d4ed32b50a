//! A device under test driven end to end: a registered socket, a scripted
//! front-end on it, guest memory the test owns, and rings played by the
//! driver-side model (`rvhost::testing::mock`). Packets go in and out
//! through the C API, as an application moves them.

use std::ffi::{c_char, c_int, CStr, CString};
use std::os::fd::{AsRawFd, RawFd};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use rvhost::testing::mock::{DriverRing, GuestView, Layout, RingAreas};
use rvhost::testing::Request;
use rvhost::testing::{mbuf, rte_mempool, Mbuf, Mempool, RteMbuf};

use super::{eal_init, socket_path, Frontend, GuestRam};

pub const F_EVENT_IDX: u64 = 1 << 29;
pub const F_MRG_RXBUF: u64 = 1 << 15;
pub const F_LOG_ALL: u64 = 1 << 26;
pub const F_VERSION_1: u64 = 1 << 32;
pub const F_RING_PACKED: u64 = 1 << 34;
pub const F_IN_ORDER: u64 = 1 << 35;

pub const PF_MQ: u64 = 1 << 0;
pub const PF_LOG_SHMFD: u64 = 1 << 1;
pub const PF_REPLY_ACK: u64 = 1 << 3;
pub const PF_SLAVE_REQ: u64 = 1 << 5;
pub const PF_PAGEFAULT: u64 = 1 << 8;
pub const PF_INFLIGHT: u64 = 1 << 12;
pub const PF_STATUS: u64 = 1 << 16;

pub const POSTCOPY_SUPPORT: u64 = 1 << 4;

/// Bursts tried before a test concludes a ring moves nothing.
const RETRIES: usize = 30;

/// `struct rte_vhost_device_ops`.
#[repr(C)]
pub struct DeviceOps {
    pub new_device: Option<unsafe extern "C" fn(c_int) -> c_int>,
    pub destroy_device: Option<unsafe extern "C" fn(c_int)>,
    pub vring_state_changed: Option<unsafe extern "C" fn(c_int, u16, c_int) -> c_int>,
    pub features_changed: Option<unsafe extern "C" fn(c_int, u64) -> c_int>,
    pub new_connection: Option<unsafe extern "C" fn(c_int) -> c_int>,
    pub destroy_connection: Option<unsafe extern "C" fn(c_int)>,
    pub guest_notified: Option<unsafe extern "C" fn(c_int)>,
    #[cfg(not(feature = "abi-24-11"))]
    pub reserved: [*mut std::ffi::c_void; 1],
    #[cfg(feature = "abi-24-11")]
    pub guest_notify: Option<unsafe extern "C" fn(c_int, u16) -> bool>,
}

/// No callbacks (`..NO_OPS` fills a table's others).
pub const NO_OPS: DeviceOps = DeviceOps {
    new_device: None,
    destroy_device: None,
    vring_state_changed: None,
    features_changed: None,
    new_connection: None,
    destroy_connection: None,
    guest_notified: None,
    #[cfg(not(feature = "abi-24-11"))]
    reserved: [std::ptr::null_mut(); 1],
    #[cfg(feature = "abi-24-11")]
    guest_notify: None,
};

// SAFETY: a static table of function pointers, only read.
unsafe impl Sync for DeviceOps {}

extern "C" {
    pub fn rte_vhost_driver_register(path: *const c_char, flags: u64) -> c_int;
    pub fn rte_vhost_driver_unregister(path: *const c_char) -> c_int;
    pub fn rte_vhost_driver_callback_register(path: *const c_char, ops: *const DeviceOps) -> c_int;
    pub fn rte_vhost_driver_start(path: *const c_char) -> c_int;
    pub fn rte_vhost_get_ifname(vid: c_int, buf: *mut c_char, len: usize) -> c_int;
    pub fn rte_vhost_enqueue_burst(vid: c_int, q: u16, pkts: *mut *mut RteMbuf, n: u16) -> u16;
    pub fn rte_vhost_dequeue_burst(
        vid: c_int,
        q: u16,
        mp: *mut rte_mempool,
        pkts: *mut *mut RteMbuf,
        n: u16,
    ) -> u16;
    pub fn rte_pktmbuf_pool_create(
        name: *const c_char,
        n: u32,
        cache: u32,
        priv_size: u16,
        data_room: u16,
        socket: c_int,
    ) -> *mut rte_mempool;
}

/// Connections opened (`new_connection`), by vid, not yet claimed.
static CONNECTED: Mutex<Vec<c_int>> = Mutex::new(Vec::new());
/// Devices started (`new_device`).
pub static STARTED: Mutex<Vec<c_int>> = Mutex::new(Vec::new());

pub unsafe extern "C" fn on_new_connection(vid: c_int) -> c_int {
    CONNECTED.lock().unwrap().push(vid);
    0
}
pub unsafe extern "C" fn on_new_device(vid: c_int) -> c_int {
    STARTED.lock().unwrap().push(vid);
    0
}

pub static OPS: DeviceOps =
    DeviceOps { new_device: Some(on_new_device), new_connection: Some(on_new_connection), ..NO_OPS };

pub fn ifname(vid: c_int) -> String {
    let mut buf = [0 as c_char; 256];
    // SAFETY: a 256-byte buffer.
    if unsafe { rte_vhost_get_ifname(vid, buf.as_mut_ptr(), buf.len()) } != 0 {
        return String::new();
    }
    // SAFETY: NUL-terminated by the library.
    unsafe { CStr::from_ptr(buf.as_ptr()) }.to_string_lossy().into_owned()
}

/// A registered, started vhost-user server socket (unregistered on drop).
pub struct Server {
    pub path: String,
    cpath: CString,
}

impl Server {
    pub fn start(name: &str, flags: u64) -> Server {
        Server::start_with(name, flags, |_| {})
    }

    /// Registers, runs `configure` on the C path, then starts.
    pub fn start_with(name: &str, flags: u64, configure: impl FnOnce(&CStr)) -> Server {
        eal_init();
        let path = socket_path(name);
        let cpath = CString::new(path.clone()).unwrap();
        // SAFETY: valid path and a static ops table.
        unsafe {
            assert_eq!(rte_vhost_driver_register(cpath.as_ptr(), flags), 0);
            assert_eq!(rte_vhost_driver_callback_register(cpath.as_ptr(), &OPS), 0);
        }
        configure(&cpath);
        // SAFETY: as above.
        assert_eq!(unsafe { rte_vhost_driver_start(cpath.as_ptr()) }, 0);
        Server { path, cpath }
    }

    /// The vid of the newest connection to this socket.
    pub fn wait_vid(&self) -> c_int {
        let end = Instant::now() + Duration::from_secs(10);
        while Instant::now() < end {
            {
                let mut v = CONNECTED.lock().unwrap();
                if let Some(i) = v.iter().position(|&vid| ifname(vid) == self.path) {
                    return v.remove(i);
                }
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        panic!("no connection on {}", self.path);
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        // SAFETY: valid path.
        unsafe { rte_vhost_driver_unregister(self.cpath.as_ptr()) };
    }
}

/// The mbuf pool (2 KiB data room) the rigs of a test binary share.
pub fn pool() -> Mempool {
    static POOL: std::sync::OnceLock<Mempool> = std::sync::OnceLock::new();
    *POOL.get_or_init(|| {
        eal_init();
        let n = CString::new(format!("rig-{}", std::process::id())).unwrap();
        // SAFETY: EAL is initialised; a fresh pool.
        let p = unsafe { rte_pktmbuf_pool_create(n.as_ptr(), 2047, 0, 0, 2048 + 128, -1) };
        // SAFETY: a pool pointer from DPDK, never freed.
        unsafe { Mempool::from_raw(p) }.expect("mbuf pool")
    })
}

/// One device: its socket, front-end, guest memory and vid.
pub struct Rig {
    pub fe: Frontend,
    pub ram: GuestRam,
    pub vid: c_int,
    pub pool: Mempool,
    /// Call eventfds of rings set up by `ring`, by queue.
    pub calls: Vec<(u32, nix::sys::eventfd::EventFd)>,
    kicks: Vec<nix::sys::eventfd::EventFd>,
    pub server: Server,
    /// Behind a virtual IOMMU: ring and buffer addresses given to the
    /// device are guest-physical plus this (IOVAs); `None` without.
    pub iova_offset: Option<u64>,
    /// `(start, pages)`: the driver's rings and buffers there lie on those
    /// guest pages in reverse order (`GuestView::with_reversed_pages`).
    pub reversed_pages: Option<(u64, u64)>,
    /// Rings set up from here on ask for their used ring's writes to be
    /// logged (VHOST_VRING_F_LOG in SET_VRING_ADDR).
    pub log_rings: bool,
}

impl Rig {
    /// Connects to a new server socket `name` (register `flags`), sends
    /// SET_OWNER, protocol features `proto` (REPLY_ACK is always added),
    /// features `features` and a memory table of `ram_size` bytes at gpa 0.
    pub fn connect(name: &str, flags: u64, features: u64, proto: u64, ram_size: u64) -> Rig {
        Rig::connect_with_ops(name, flags, features, proto, ram_size, &OPS)
    }

    /// As `connect`, with the application callbacks `ops` (which must
    /// include `on_new_connection`).
    pub fn connect_with_ops(
        name: &str,
        flags: u64,
        features: u64,
        proto: u64,
        ram_size: u64,
        ops: &'static DeviceOps,
    ) -> Rig {
        let server = Server::start_with(name, flags, |path| {
            // SAFETY: a registered path and a static ops table.
            assert_eq!(unsafe { rte_vhost_driver_callback_register(path.as_ptr(), ops) }, 0);
        });
        let fe = Frontend::connect(&server.path);
        let vid = server.wait_vid();
        fe.send(Request::SetOwner, &[], &[], false);
        fe.set_u64(Request::SetProtocolFeatures, proto | PF_REPLY_ACK);
        let ram = GuestRam::new(ram_size);
        let rig = Rig {
            fe,
            ram,
            vid,
            pool: pool(),
            calls: Vec::new(),
            kicks: Vec::new(),
            server,
            iova_offset: None,
            reversed_pages: None,
            log_rings: false,
        };
        assert_eq!(rig.ack(Request::SetFeatures, &features.to_ne_bytes(), &[]), 0, "SET_FEATURES");
        assert_eq!(rig.ack(Request::SetMemTable, &rig.ram.mem_table(), &[rig.ram.fd.as_raw_fd()]), 0);
        rig
    }

    /// Sends `req` with NEED_REPLY and returns the front-end's view of the
    /// ack (0 success); panics if the connection closed or timed out.
    pub fn ack(&self, req: Request, payload: &[u8], fds: &[RawFd]) -> u64 {
        self.fe.send(req, payload, fds, true);
        let r = self.fe.recv();
        assert_eq!(r.header.request, req as u32, "reply to {req:?}");
        assert_eq!(r.payload.len(), 8, "{req:?}: an ack");
        u64::from_ne_bytes(r.payload[..8].try_into().unwrap())
    }

    /// The driver's view of this rig's guest memory.
    pub fn view(&self) -> GuestView {
        // SAFETY: the test's own mapping of the guest memory lives as long
        // as the rig (tests drop rings before the rig).
        let view = unsafe { GuestView::new(self.ram.addr as *mut u8, self.ram.size) };
        match self.reversed_pages {
            Some((start, pages)) => view.with_reversed_pages(start, pages),
            None => view,
        }
    }

    /// Sets ring `q` up as a driver does (NUM, BASE, ADDR, CALL, KICK, each
    /// acked) and returns the driver's model of it. `features` decides the
    /// layout (RING_PACKED).
    pub fn ring(&mut self, q: u32, layout: Layout, size: u16, areas: RingAreas) -> DriverRing {
        let mut ring = DriverRing::new(self.view(), layout, size, areas);
        ring.iova_offset = self.iova_offset.unwrap_or(0);
        let st = |n: u32| [q.to_ne_bytes(), n.to_ne_bytes()].concat();
        assert_eq!(self.ack(Request::SetVringNum, &st(u32::from(size)), &[]), 0, "SET_VRING_NUM");
        assert_eq!(self.ack(Request::SetVringBase, &st(ring.base()), &[]), 0, "SET_VRING_BASE");
        assert_eq!(self.ack(Request::SetVringAddr, &self.addr_msg(q, areas), &[]), 0, "SET_VRING_ADDR");
        let call =
            nix::sys::eventfd::EventFd::from_value_and_flags(0, nix::sys::eventfd::EfdFlags::EFD_NONBLOCK)
                .unwrap();
        let kick = nix::sys::eventfd::EventFd::new().unwrap();
        assert_eq!(self.ack(Request::SetVringCall, &u64::from(q).to_ne_bytes(), &[call.as_raw_fd()]), 0);
        assert_eq!(self.ack(Request::SetVringKick, &u64::from(q).to_ne_bytes(), &[kick.as_raw_fd()]), 0);
        self.calls.push((q, call));
        self.kicks.push(kick);
        ring
    }

    /// A SET_VRING_ADDR payload for ring `q` at `areas` (front-end virtual
    /// addresses: the test's mapping; IOVAs behind a virtual IOMMU).
    pub fn addr_msg(&self, q: u32, areas: RingAreas) -> Vec<u8> {
        let mut p = q.to_ne_bytes().to_vec();
        p.extend_from_slice(&u32::from(self.log_rings).to_ne_bytes());
        let base = self.iova_offset.unwrap_or(self.ram.addr);
        for v in [areas.desc, areas.device, areas.driver] {
            p.extend_from_slice(&(base + v).to_ne_bytes());
        }
        p.extend_from_slice(&(self.iova_offset.unwrap_or(0) + areas.device).to_ne_bytes());
        p
    }

    /// Waits for `new_device` on this rig's device (its rings set up and
    /// kicked) and claims it (a later device may reuse the vid).
    pub fn wait_started(&self) {
        let end = Instant::now() + Duration::from_secs(10);
        loop {
            {
                let mut started = STARTED.lock().unwrap();
                if let Some(i) = started.iter().position(|&vid| vid == self.vid) {
                    started.remove(i);
                    return;
                }
            }
            assert!(Instant::now() < end, "new_device never fired for vid {}", self.vid);
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// Enqueues one packet of `data` into RX ring `q`; returns how many the
    /// library took. A burst moves nothing while the control plane holds the
    /// ring (as applications do, it is retried for a while).
    pub fn enqueue(&self, q: u16, data: &[u8]) -> u16 {
        let m = mbuf_of(self.pool, data);
        let mut raw = [m.as_ptr()];
        let mut n = 0;
        for _ in 0..RETRIES {
            // SAFETY: valid vid, queue and one mbuf.
            n = unsafe { rte_vhost_enqueue_burst(self.vid, q, raw.as_mut_ptr(), 1) };
            if n > 0 {
                break;
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        m.free();
        n
    }

    /// One enqueue burst, not retried.
    pub fn enqueue_once(&self, q: u16, data: &[u8]) -> u16 {
        let m = mbuf_of(self.pool, data);
        let mut raw = [m.as_ptr()];
        // SAFETY: valid vid, queue and one mbuf.
        let n = unsafe { rte_vhost_enqueue_burst(self.vid, q, raw.as_mut_ptr(), 1) };
        m.free();
        n
    }

    /// Dequeues from TX ring `q` (retried while it moves nothing, as
    /// `enqueue`): the packets' bytes.
    pub fn dequeue(&self, q: u16) -> Vec<Vec<u8>> {
        let mut out = [std::ptr::null_mut::<RteMbuf>(); 32];
        let mut n = 0;
        for _ in 0..RETRIES {
            // SAFETY: valid vid, queue, pool and a 32-entry array.
            n = unsafe { rte_vhost_dequeue_burst(self.vid, q, self.pool.as_ptr(), out.as_mut_ptr(), 32) };
            if n > 0 {
                break;
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        out[..usize::from(n)]
            .iter()
            .map(|&p| {
                // SAFETY: an mbuf the library handed us.
                let m = unsafe { Mbuf::from_raw(p) }.unwrap();
                let bytes = packet_bytes(&m);
                m.free();
                bytes
            })
            .collect()
    }
}

/// Runs `f` on a thread of its own and waits at most `limit` for it: a
/// deadlock in the library fails the test instead of hanging it (the stuck
/// thread is left behind).
pub fn within<T: Send + 'static>(limit: Duration, f: impl FnOnce() -> T + Send + 'static) -> T {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)));
    });
    match rx.recv_timeout(limit) {
        Ok(Ok(v)) => v,
        Ok(Err(panic)) => std::panic::resume_unwind(panic),
        Err(_) => panic!("no result within {limit:?} (a deadlock?)"),
    }
}

/// The payload of a packet, all segments.
pub fn packet_bytes(m: &Mbuf) -> Vec<u8> {
    let mut bytes = Vec::new();
    let mut seg = Some(m);
    while let Some(s) = seg {
        bytes.extend_from_slice(s.data());
        seg = s.next();
    }
    bytes
}

/// A one-segment mbuf holding `data`.
pub fn mbuf_of(pool: Mempool, data: &[u8]) -> Mbuf {
    let mut m = mbuf::alloc(pool).expect("mbuf");
    m.tail_mut(data.len()).copy_from_slice(data);
    m.commit(data.len());
    m.set_pkt_len(data.len() as u32);
    m
}

/// Ring areas packed from `base` on: descriptors, then the driver area,
/// then the device area, each 64-byte aligned.
pub fn areas_at(base: u64, layout: Layout, size: u16) -> RingAreas {
    let (d, a, _) = RingAreas::sizes(layout, size);
    let up = |x: u64| x.div_ceil(64) * 64;
    RingAreas { desc: base, driver: base + up(d), device: base + up(d) + up(a) }
}

/// A packet whose bytes are `seed`-dependent.
pub fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len).map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed)).collect()
}

/// Plays QEMU's postcopy part: serves every fault reported on `ufd` with a
/// zero page until `stop`; returns how many it served.
pub fn serve_faults(
    ufd: std::os::fd::OwnedFd,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
) -> std::thread::JoinHandle<u32> {
    std::thread::spawn(move || {
        use std::os::fd::{FromRawFd, IntoRawFd};
        // SAFETY: the userfaultfd the back-end handed over, owned from here by the Uffd.
        let uffd = unsafe { userfaultfd::Uffd::from_raw_fd(ufd.into_raw_fd()) };
        let mut served = 0;
        while !stop.load(std::sync::atomic::Ordering::Relaxed) {
            let mut pfd =
                [nix::poll::PollFd::new(std::os::fd::AsFd::as_fd(&uffd), nix::poll::PollFlags::POLLIN)];
            if nix::poll::poll(&mut pfd, nix::poll::PollTimeout::from(100u16)).unwrap_or(0) == 0 {
                continue;
            }
            let Ok(Some(userfaultfd::Event::Pagefault { addr, .. })) = uffd.read_event() else { continue };
            let page = (addr as usize & !4095) as *mut std::ffi::c_void;
            // SAFETY: a zero page into the faulting page of a registered range.
            let _ = unsafe { uffd.zeropage(page, 4096, true) };
            served += 1;
        }
        served
    })
}

/// `struct rte_vhost_mem_region`.
#[repr(C)]
struct MemRegion {
    guest_phys_addr: u64,
    guest_user_addr: u64,
    host_user_addr: u64,
    size: u64,
    mmap_addr: u64,
    mmap_size: u64,
    fd: c_int,
}

extern "C" {
    fn rte_vhost_get_mem_table(vid: c_int, mem: *mut *mut u32) -> c_int;
}

/// The library's mappings of device `vid`'s guest memory, as (our
/// address, length), from `rte_vhost_get_mem_table`.
pub fn guest_mappings(vid: c_int) -> Vec<(u64, u64)> {
    let mut table: *mut u32 = std::ptr::null_mut();
    // SAFETY: a valid out-pointer; the table is ours to free.
    if unsafe { rte_vhost_get_mem_table(vid, &mut table) } != 0 || table.is_null() {
        return Vec::new();
    }
    // SAFETY: `struct rte_vhost_memory`: nregions, then 8-aligned regions.
    let ranges = unsafe {
        let n = *table as usize;
        let first = table.cast::<u8>().add(8).cast::<MemRegion>();
        (0..n).map(|i| ((*first.add(i)).mmap_addr, (*first.add(i)).mmap_size)).collect()
    };
    // SAFETY: malloc'ed by the library for us.
    unsafe { libc::free(table.cast()) };
    ranges
}

/// The VMAs of this process (`/proc/self/maps`) overlapping `[addr, addr + len)`.
pub fn vmas_in((addr, len): (u64, u64)) -> usize {
    std::fs::read_to_string("/proc/self/maps")
        .expect("/proc/self/maps")
        .lines()
        .filter_map(|l| {
            let (a, b) = l.split(' ').next()?.split_once('-')?;
            Some((u64::from_str_radix(a, 16).ok()?, u64::from_str_radix(b, 16).ok()?))
        })
        .filter(|&(a, b)| a < addr + len && b > addr)
        .count()
}
