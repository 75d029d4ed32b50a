//! The "vhost-events" control thread: one epoll set for every listening
//! socket, accepting connections (each then runs on its own thread); and
//! the "vhost_reconn" thread retrying client sockets.

use std::collections::HashMap;
use std::io;
use std::os::fd::BorrowedFd;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use nix::sys::epoll::{Epoll, EpollCreateFlags, EpollEvent, EpollFlags, EpollTimeout};
use parking_lot::Mutex;

use super::VhostSocket;
use crate::dpdk::eal::spawn_ctrl_thread;

/// What a registered fd is: a listening socket.
pub enum Watch {
    Listener(Arc<VhostSocket>),
}

struct EventLoop {
    epoll: Epoll,
    watches: Mutex<HashMap<u64, Arc<Watch>>>,
}

static EVENT_LOOP: OnceLock<io::Result<EventLoop>> = OnceLock::new();
static DISPATCH_STARTED: Mutex<bool> = Mutex::new(false);
static NEXT_WATCH: AtomicU64 = AtomicU64::new(1);

static RECONNECT_LIST: Mutex<Vec<Arc<VhostSocket>>> = Mutex::new(Vec::new());
static RECONNECT_STARTED: Mutex<bool> = Mutex::new(false);

fn event_loop() -> io::Result<&'static EventLoop> {
    let lp = EVENT_LOOP.get_or_init(|| {
        Ok(EventLoop {
            epoll: Epoll::new(EpollCreateFlags::EPOLL_CLOEXEC)?,
            watches: Mutex::new(HashMap::new()),
        })
    });
    lp.as_ref().map_err(|e| io::Error::new(e.kind(), e.to_string()))
}

/// The names DPDK gives its accept and reconnect threads (24.11 names them
/// through `rte_thread_create_internal_control`, which adds "dpdk-").
#[cfg(not(feature = "abi-24-11"))]
const EVENT_THREAD: &str = "vhost-events";
#[cfg(not(feature = "abi-24-11"))]
const RECONNECT_THREAD: &str = "vhost_reconn";
#[cfg(feature = "abi-24-11")]
const EVENT_THREAD: &str = "dpdk-vhost-evt";
#[cfg(feature = "abi-24-11")]
const RECONNECT_THREAD: &str = "dpdk-vhost-reco";

/// Starts the dispatch thread once (first `rte_vhost_driver_start`).
pub fn ensure_started() -> io::Result<()> {
    let lp = event_loop()?;
    let mut started = DISPATCH_STARTED.lock();
    if !*started {
        spawn_ctrl_thread(EVENT_THREAD, Box::new(move || dispatch(lp)))?;
        *started = true;
    }
    Ok(())
}

pub fn next_watch_id() -> u64 {
    NEXT_WATCH.fetch_add(1, Ordering::Relaxed)
}

/// Watches `fd` for readability; returns the watch id.
pub fn watch(fd: BorrowedFd<'_>, what: Watch) -> io::Result<u64> {
    let id = next_watch_id();
    watch_with_id(id, fd, what)?;
    Ok(id)
}

pub fn watch_with_id(id: u64, fd: BorrowedFd<'_>, what: Watch) -> io::Result<()> {
    let lp = event_loop()?;
    lp.watches.lock().insert(id, Arc::new(what));
    let event = EpollEvent::new(EpollFlags::EPOLLIN, id);
    if let Err(e) = lp.epoll.add(fd, event) {
        lp.watches.lock().remove(&id);
        return Err(e.into());
    }
    Ok(())
}

/// Stops watching (the fd must still be open).
pub fn unwatch(id: u64, fd: BorrowedFd<'_>) {
    if let Ok(lp) = event_loop() {
        let _ = lp.epoll.delete(fd);
        lp.watches.lock().remove(&id);
    }
}

fn dispatch(lp: &'static EventLoop) {
    let mut events = vec![EpollEvent::empty(); 64];
    loop {
        let n = match lp.epoll.wait(&mut events, EpollTimeout::NONE) {
            Ok(n) => n,
            Err(nix::errno::Errno::EINTR) => continue,
            Err(e) => {
                crate::vlog!(Config, Err, "thread", "epoll wait failed: {e}");
                std::thread::sleep(Duration::from_millis(100));
                continue;
            }
        };
        for ev in &events[..n] {
            let Some(watch) = lp.watches.lock().get(&ev.data()).cloned() else {
                continue;
            };
            // A bug must not take the event thread (and every socket) down.
            let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| match &*watch {
                Watch::Listener(socket) => super::accept_ready(socket),
            }));
            if outcome.is_err() {
                crate::vlog!(Config, Err, "thread", "internal error while accepting a connection");
            }
        }
    }
}

/// Queues a client socket for a connection attempt every second.
pub fn queue_reconnect(socket: Arc<VhostSocket>) -> io::Result<()> {
    RECONNECT_LIST.lock().push(socket);
    let mut started = RECONNECT_STARTED.lock();
    if !*started {
        spawn_ctrl_thread(RECONNECT_THREAD, Box::new(reconnect_loop))?;
        *started = true;
    }
    Ok(())
}

fn reconnect_loop() {
    loop {
        let pending: Vec<_> = RECONNECT_LIST.lock().clone();
        for socket in pending {
            if super::retry_client(&socket) {
                RECONNECT_LIST.lock().retain(|s| !Arc::ptr_eq(s, &socket));
            }
        }
        std::thread::sleep(Duration::from_secs(1));
    }
}
