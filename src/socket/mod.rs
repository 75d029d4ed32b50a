//! vhost-user sockets: the registry behind `rte_vhost_driver_register`, unix
//! server and client (with reconnect), and their connections. One control
//! thread ("vhost-events") accepts on every server socket; client sockets
//! that could not connect are retried once a second by "vhost_reconn";
//! each connection has a thread of its own ("vhost-dev-VID") that reads,
//! handles and answers its messages, so a front-end that stalls (a
//! postcopy ack that does not come, a page fault it does not serve) stalls
//! only its own device.

mod backend;
mod connection;
mod event_loop;
#[allow(unsafe_code)]
pub mod io;

use std::os::fd::{AsFd, AsRawFd};
use std::os::unix::net::{UnixListener, UnixStream};
use std::sync::Arc;

use parking_lot::Mutex;

pub use connection::{set_message_hooks, HookResult, MessageHooks};

use crate::device::{DeviceEvents, VdpaDriver};
use crate::protocol::features::{self, Feature, Features, ProtocolFeature, ProtocolFeatures};
use crate::vlog;

/// DPDK's `MAX_VHOST_SOCKET`.
const MAX_SOCKETS: usize = 1024;
/// DPDK's `VHOST_MAX_QUEUE_PAIRS` (queue count offered by GET_QUEUE_NUM).
pub const MAX_QUEUE_PAIRS: u32 = 0x80;

/// What the application configured on a socket (features, callbacks...).
#[derive(Clone, Debug)]
pub struct SocketConfig {
    /// Features offered to the front-end (`rte_vhost_driver_get_features`).
    pub features: Features,
    /// Upper bound for `rte_vhost_driver_set/enable_features`.
    pub supported_features: Features,
    pub protocol_features: ProtocolFeatures,
    pub max_queue_pairs: u32,
    /// The application's callbacks (`rte_vhost_driver_callback_register`).
    pub events: Option<Arc<dyn DeviceEvents>>,
    pub use_builtin_virtio_net: bool,
    /// Started by `rte_vhost_crypto_driver_start` (`Device::set_crypto`).
    pub crypto: bool,
    /// Attached vDPA device.
    pub vdpa: Option<Arc<dyn VdpaDriver>>,
}

impl SocketConfig {
    /// Features offered to the front-end: ours, narrowed by the vDPA device.
    pub fn offered_features(&self) -> Option<Features> {
        match &self.vdpa {
            None => Some(self.features),
            Some(d) => d.features().map(|f| Features::from_bits(f).intersection(self.features)),
        }
    }

    /// Queue pairs offered (GET_QUEUE_NUM), narrowed by the vDPA device.
    pub fn queue_num(&self) -> Option<u32> {
        match &self.vdpa {
            None => Some(self.max_queue_pairs),
            Some(d) => d.queue_num().map(|n| n.min(self.max_queue_pairs)),
        }
    }
}

#[derive(Debug, Default)]
struct SocketState {
    listener: Option<UnixListener>,
    listen_watch: Option<u64>,
    connections: Vec<Arc<connection::Connection>>,
    started: bool,
    unregistered: bool,
}

/// A registered vhost-user socket path.
#[derive(Debug)]
pub struct VhostSocket {
    pub path: String,
    pub flags: u64,
    pub is_server: bool,
    pub reconnect: bool,
    pub config: Mutex<SocketConfig>,
    state: Mutex<SocketState>,
}

static REGISTRY: Mutex<Vec<Arc<VhostSocket>>> = Mutex::new(Vec::new());

/// Why a socket call failed (the C API returns -1 for all of them; the log
/// says which).
#[derive(Debug)]
pub enum SocketError {
    NotFound,
    Exists,
    TooMany,
    Invalid(&'static str),
    Io(std::io::Error),
}

impl std::fmt::Display for SocketError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SocketError::NotFound => write!(f, "socket file is not registered yet"),
            SocketError::Exists => write!(f, "socket path already registered"),
            SocketError::TooMany => write!(f, "the number of vhost sockets reaches maximum"),
            SocketError::Invalid(why) => write!(f, "{why}"),
            SocketError::Io(e) => write!(f, "{e}"),
        }
    }
}

impl std::error::Error for SocketError {}

/// Looks up a registered socket by path.
pub fn find(path: &str) -> Option<Arc<VhostSocket>> {
    REGISTRY.lock().iter().find(|s| s.path == path).cloned()
}

/// `rte_vhost_driver_register`.
pub fn register(path: &str, flags: u64) -> Result<(), SocketError> {
    use features::flags::*;
    let mut registry = REGISTRY.lock();
    if registry.len() >= MAX_SOCKETS {
        return Err(SocketError::TooMany);
    }
    if registry.iter().any(|s| s.path == path) {
        return Err(SocketError::Exists);
    }
    if path.is_empty() || path.len() >= 108 {
        return Err(SocketError::Invalid("socket path empty or longer than sun_path"));
    }
    // DPDK 24.11 creates a kernel VDUSE device for such a path; rvhost
    // implements vhost-user only.
    #[cfg(feature = "abi-24-11")]
    if path.starts_with("/dev/vduse/") {
        return Err(SocketError::Invalid(
            "VDUSE devices (/dev/vduse/ paths) are not supported by rvhost; register a vhost-user socket path",
        ));
    }
    if flags & ASYNC_COPY != 0 && flags & (IOMMU_SUPPORT | POSTCOPY_SUPPORT) != 0 {
        return Err(SocketError::Invalid("async copy with IOMMU or post-copy not supported"));
    }
    let mut features = Features::VIRTIO_NET_SUPPORTED;
    let mut protocol_features = ProtocolFeatures::DEFAULT;
    if flags & ASYNC_COPY != 0 {
        features = features.without(Features::of(&[Feature::LOG_ALL]));
        vlog!(Config, Info, path, "logging feature is disabled in async copy mode");
    }
    if flags & LINEARBUF_SUPPORT != 0 && flags & EXTBUF_SUPPORT == 0 {
        vlog!(Config, Info, path, "Linear buffers requested without external buffers,");
        vlog!(Config, Info, path, "disabling host segmentation offloading support");
        features = features.without(Features::of(&[
            Feature::NET_HOST_TSO4,
            Feature::NET_HOST_TSO6,
            Feature::NET_HOST_UFO,
        ]));
    }
    if flags & IOMMU_SUPPORT == 0 {
        features = features.without(Features::of(&[Feature::IOMMU_PLATFORM]));
    }
    if flags & POSTCOPY_SUPPORT == 0 {
        protocol_features = protocol_features.without(ProtocolFeatures::of(&[ProtocolFeature::PAGEFAULT]));
    }
    let is_server = flags & CLIENT == 0;
    let socket = Arc::new(VhostSocket {
        path: path.to_owned(),
        flags,
        is_server,
        reconnect: !is_server && flags & NO_RECONNECT == 0,
        config: Mutex::new(SocketConfig {
            features,
            supported_features: features,
            protocol_features,
            max_queue_pairs: MAX_QUEUE_PAIRS,
            events: None,
            use_builtin_virtio_net: true,
            crypto: false,
            vdpa: None,
        }),
        state: Mutex::new(SocketState::default()),
    });
    vlog!(Config, Info, path, "vhost-user {}: socket created", if is_server { "server" } else { "client" });
    registry.push(socket);
    Ok(())
}

/// `rte_vhost_driver_start`: listen (server) or connect (client).
pub fn start(path: &str) -> Result<(), SocketError> {
    let socket = find(path).ok_or(SocketError::NotFound)?;
    event_loop::ensure_started().map_err(|e| {
        vlog!(Config, Err, path, "failed to create fdset handling thread");
        SocketError::Io(e)
    })?;
    {
        let mut st = socket.state.lock();
        if st.started {
            return Err(SocketError::Invalid("socket already started"));
        }
        st.started = true;
    }
    if socket.is_server {
        start_server(&socket)
    } else {
        start_client(&socket)
    }
}

fn start_server(socket: &Arc<VhostSocket>) -> Result<(), SocketError> {
    // Like DPDK, an existing file is not removed: the user must make sure the
    // path is free.
    let listener = UnixListener::bind(&socket.path).map_err(|e| {
        vlog!(Config, Err, socket.path, "failed to bind: {e}; remove it and try again");
        SocketError::Io(e)
    })?;
    vlog!(Config, Info, socket.path, "binding succeeded");
    listener.set_nonblocking(true).map_err(SocketError::Io)?;
    let watch = event_loop::watch(listener.as_fd(), event_loop::Watch::Listener(Arc::clone(socket)))
        .map_err(SocketError::Io)?;
    let mut st = socket.state.lock();
    st.listener = Some(listener);
    st.listen_watch = Some(watch);
    Ok(())
}

/// Tries to connect once; queues a retry if allowed (at once with
/// `RTE_VHOST_USER_ASYNC_CONNECT`, 24.11).
fn start_client(socket: &Arc<VhostSocket>) -> Result<(), SocketError> {
    #[cfg(feature = "abi-24-11")]
    if socket.flags & features::flags::ASYNC_CONNECT != 0 && socket.reconnect {
        return event_loop::queue_reconnect(Arc::clone(socket)).map_err(SocketError::Io);
    }
    match UnixStream::connect(&socket.path) {
        Ok(stream) => {
            vlog!(Config, Info, socket.path, "connected");
            add_connection(socket, stream);
            Ok(())
        }
        Err(e) => {
            vlog!(Config, Warning, socket.path, "failed to connect: {e}");
            if !socket.reconnect {
                socket.state.lock().started = false;
                return Err(SocketError::Io(e));
            }
            vlog!(Config, Info, socket.path, "reconnecting...");
            event_loop::queue_reconnect(Arc::clone(socket)).map_err(SocketError::Io)
        }
    }
}

/// `rte_vhost_driver_set_max_queue_num` (DPDK 24.11): a vhost-user
/// front-end chooses its queue count, so beyond checking the arguments this
/// changes nothing (24.11 applies it to VDUSE devices only).
#[cfg(feature = "abi-24-11")]
pub fn set_max_queue_pairs(path: &str, max_queue_pairs: u32) -> Result<(), SocketError> {
    vlog!(Config, Info, path, "Setting max queue pairs to {max_queue_pairs}");
    if max_queue_pairs > MAX_QUEUE_PAIRS {
        vlog!(Config, Err, path, "Library only supports up to {MAX_QUEUE_PAIRS} queue pairs");
        return Err(SocketError::Invalid("too many queue pairs"));
    }
    if find(path).is_none() {
        vlog!(Config, Err, path, "socket file is not registered yet.");
        return Err(SocketError::NotFound);
    }
    vlog!(Config, Debug, path, "Keeping {MAX_QUEUE_PAIRS} max queue pairs for Vhost-user backend");
    Ok(())
}

/// Called by the reconnect thread: one attempt, true when connected (or when
/// the socket went away and should no longer be retried).
fn retry_client(socket: &Arc<VhostSocket>) -> bool {
    if socket.state.lock().unregistered {
        return true;
    }
    match UnixStream::connect(&socket.path) {
        Ok(stream) => {
            vlog!(Config, Info, socket.path, "connected");
            add_connection(socket, stream);
            true
        }
        Err(_) => false,
    }
}

/// Accepts pending connections on a server socket.
fn accept_ready(socket: &Arc<VhostSocket>) {
    loop {
        let accepted = match socket.state.lock().listener.as_ref() {
            Some(l) => l.accept(),
            None => return,
        };
        match accepted {
            Ok((stream, _)) => {
                vlog!(Config, Info, socket.path, "new vhost user connection is {}", stream.as_raw_fd());
                add_connection(socket, stream);
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return,
            Err(e) => {
                vlog!(Config, Err, socket.path, "accept failed: {e}");
                return;
            }
        }
    }
}

/// A new connection on `socket` (accepted or connected): its device and
/// thread (DPDK's `vhost_user_add_connection`).
fn add_connection(socket: &Arc<VhostSocket>, stream: UnixStream) {
    connection::start(socket, stream);
}

/// `rte_vhost_driver_unregister`: closes every connection (firing
/// `destroy_device`; waits for each connection's thread unless called from
/// it), stops listening and removes the socket file.
pub fn unregister(path: &str) -> Result<(), SocketError> {
    let socket = {
        let mut registry = REGISTRY.lock();
        let idx = registry.iter().position(|s| s.path == path).ok_or(SocketError::NotFound)?;
        registry.swap_remove(idx)
    };
    let (listener, watch, conns) = {
        let mut st = socket.state.lock();
        st.unregistered = true;
        (st.listener.take(), st.listen_watch.take(), std::mem::take(&mut st.connections))
    };
    if let (Some(l), Some(w)) = (&listener, watch) {
        event_loop::unwatch(w, l.as_fd());
    }
    for conn in &conns {
        conn.close_from_unregister(path);
    }
    if listener.is_some() {
        drop(listener);
        let _ = std::fs::remove_file(path);
    }
    Ok(())
}

/// Runs `f` on the configuration of a registered socket.
pub fn with_config<T>(path: &str, f: impl FnOnce(&mut SocketConfig) -> T) -> Result<T, SocketError> {
    let socket = find(path).ok_or(SocketError::NotFound)?;
    let mut cfg = socket.config.lock();
    Ok(f(&mut cfg))
}
