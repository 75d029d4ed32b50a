//! One front-end connection and its thread: read a message, let the device
//! admit it (the ring it names), run the application's pre-hook, decode
//! it, answer what the socket, the vDPA driver or the back-end channel
//! knows (`ConnectionMessage`), hand the rest to the device in one call
//! (`device::handle`), reply, run the post-hook, then make the calls the
//! message caused (application callbacks, vDPA driver operations, and what
//! `device::after_message` says is due) with no lock held.

use std::os::fd::{AsFd, AsRawFd, IntoRawFd, OwnedFd, RawFd};
use std::os::unix::net::UnixStream;
use std::sync::Arc;
use std::time::Duration;

use parking_lot::{Condvar, Mutex};

use super::backend::Channel;
use super::io::{read_message, send_message, RawMessage, ReadError};
use super::{SocketConfig, VhostSocket};
use crate::abi::{MsgContext, RTE_VHOST_VDPA_DEVICE_TYPE_BLK};
use crate::device::{
    self, Device, DeviceEvents, Due, Event, Handled, Offer, PostcopyError, Reply, VdpaDriver,
};
use crate::dpdk::eal::spawn_ctrl_thread;
use crate::protocol::{
    ConfigAccess, ConnectionMessage, Header, ProtocolError, Request, Routed, FLAG_NEED_REPLY, FLAG_REPLY,
    MAX_PAYLOAD, VERSION, VERSION_MASK,
};
use crate::vlog;

/// How long a started message may take to arrive in full before the
/// connection is considered broken.
const MESSAGE_TIMEOUT: Duration = Duration::from_secs(10);

/// What an application's message hook decided (`enum rte_vhost_msg_result`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HookResult {
    Err,
    Ok,
    /// The hook wrote the reply into the message; send it.
    Reply,
    NotHandled,
}

/// The application's message hooks (`rte_vhost_extern_callback_register`).
pub trait MessageHooks: Send + Sync + std::fmt::Debug {
    fn has_pre(&self) -> bool;
    fn has_post(&self) -> bool;
    fn pre(&self, vid: i32, msg: &mut MsgContext) -> HookResult;
    fn post(&self, vid: i32, msg: &mut MsgContext) -> HookResult;
}

/// One connection (one vhost device) on a socket.
#[derive(Debug)]
pub struct Connection {
    vid: i32,
    /// For shutting the stream down from `unregister` (the thread reads
    /// its own handle of it).
    stream: UnixStream,
    /// The vDPA device the socket had when the connection came.
    vdpa: Option<Arc<dyn VdpaDriver>>,
    hooks: Mutex<Option<Arc<dyn MessageHooks>>>,
    /// Closed by `unregister`, not by the peer.
    unregistering: std::sync::atomic::AtomicBool,
    /// Set when the connection's device is gone (its thread finished).
    done: Mutex<bool>,
    done_cv: Condvar,
    thread: std::sync::OnceLock<std::thread::ThreadId>,
}

/// The connection has to be closed (peer gone, unreadable or refused message).
#[derive(Debug)]
struct Disconnect;

/// A new connection on `socket`: its device, the application's
/// `new_connection`, and the thread that serves it.
pub(super) fn start(socket: &Arc<VhostSocket>, stream: UnixStream) {
    if stream.set_nonblocking(false).is_err() || stream.set_read_timeout(Some(MESSAGE_TIMEOUT)).is_err() {
        vlog!(Config, Err, socket.path, "failed to configure connection socket");
        return;
    }
    let Some(dev) = device::allocate(&socket.path, socket.flags) else {
        vlog!(Config, Err, socket.path, "failed to find a free slot for new device");
        return;
    };
    let config = socket.config.lock().clone();
    dev.setup(config.use_builtin_virtio_net, config.vdpa.as_ref().map(|v| v.id()));
    dev.set_crypto(config.crypto);
    let vid = dev.vid();
    #[cfg(feature = "abi-24-11")]
    crate::net::interrupt::set_application(vid, config.events.clone());
    vlog!(Config, Info, socket.path, "new device, handle is {vid}");
    let Ok(reader) = stream.try_clone() else {
        vlog!(Config, Err, socket.path, "failed to configure connection socket");
        device::free(dev);
        return;
    };
    let conn = Arc::new(Connection {
        vid,
        stream,
        vdpa: config.vdpa.clone(),
        hooks: Mutex::new(None),
        unregistering: Default::default(),
        done: Mutex::new(false),
        done_cv: Condvar::new(),
        thread: Default::default(),
    });
    // The connection is listed before the application hears of it: what
    // it calls from `new_connection` (rte_vhost_extern_callback_register,
    // as vhost_blk and SPDK do) finds the device.
    {
        let mut st = socket.state.lock();
        if st.unregistered {
            drop(st);
            device::free(dev);
            return;
        }
        st.connections.push(Arc::clone(&conn));
    }
    if let Some(rc) = config.events.as_ref().and_then(|e| e.new_connection(vid)) {
        if rc < 0 {
            vlog!(
                Config,
                Err,
                socket.path,
                "failed to add vhost user connection with fd {}",
                conn.stream.as_raw_fd()
            );
            conn.forget(socket, dev);
            return;
        }
    }
    let (s, c) = (Arc::clone(socket), Arc::clone(&conn));
    if let Err(e) = spawn_ctrl_thread(&format!("vhost-dev-{vid}"), Box::new(move || c.run(&s, reader))) {
        vlog!(Config, Err, socket.path, "failed to create the connection's thread: {e}");
        conn.finish(socket, dev, false);
    }
}

/// `rte_vhost_extern_callback_register`: message hooks for device `vid`.
pub fn set_message_hooks(vid: i32, hooks: Arc<dyn MessageHooks>) -> bool {
    let registry = super::REGISTRY.lock();
    let conn =
        registry.iter().find_map(|s| s.state.lock().connections.iter().find(|c| c.vid == vid).cloned());
    match conn {
        Some(c) => {
            *c.hooks.lock() = Some(hooks);
            true
        }
        None => false,
    }
}

impl Connection {
    /// The connection's thread: one message at a time until it closes.
    fn run(self: Arc<Self>, socket: &Arc<VhostSocket>, stream: UnixStream) {
        let _ = self.thread.set(std::thread::current().id());
        let Some(dev) = device::get(self.vid) else { return };
        loop {
            // A quiet front-end may stay quiet: wait for the next message
            // with no timeout (a started message must then come in full).
            let mut pfd = [nix::poll::PollFd::new(stream.as_fd(), nix::poll::PollFlags::POLLIN)];
            match nix::poll::poll(&mut pfd, nix::poll::PollTimeout::NONE) {
                Ok(_) => {}
                Err(nix::errno::Errno::EINTR) => continue,
                Err(_) => break,
            }
            // A bug must not take the process down: the connection it
            // happened on is closed instead.
            let handled = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                self.handle_message(socket, dev, stream.as_fd())
            }));
            match handled {
                Ok(Ok(())) => {}
                Ok(Err(Disconnect)) => break,
                Err(_) => {
                    vlog!(
                        Config,
                        Err,
                        socket.path,
                        "internal error while handling a message; closing the connection"
                    );
                    break;
                }
            }
        }
        let from_peer = !self.unregistering.load(std::sync::atomic::Ordering::Acquire);
        self.finish(socket, dev, from_peer);
    }

    /// Tears the connection down (DPDK's `vhost_user_read_cb` error path, or
    /// unregister): the application is told the device stops, the device
    /// is freed, and a client socket with reconnect connects again.
    fn finish(&self, socket: &Arc<VhostSocket>, dev: &'static Device, from_peer: bool) {
        let events = socket.config.lock().events.clone();
        self.run_events(events.as_deref(), dev.stop().into_iter().collect());
        if from_peer {
            if let Some(e) = &events {
                e.destroy_connection(self.vid);
            }
        }
        #[cfg(feature = "abi-24-11")]
        crate::net::interrupt::set_application(self.vid, None);
        device::free(dev);
        let reconnect = {
            let mut st = socket.state.lock();
            st.connections.retain(|c| !std::ptr::eq(&**c, self));
            from_peer && socket.reconnect && !st.unregistered
        };
        *self.done.lock() = true;
        self.done_cv.notify_all();
        if reconnect {
            let _ = super::start_client(socket);
        }
    }

    /// Undoes `start` for a connection whose thread never ran (the
    /// application refused it): unlisted, its device freed, and an
    /// `unregister` waiting for it released.
    fn forget(&self, socket: &VhostSocket, dev: &'static Device) {
        socket.state.lock().connections.retain(|c| !std::ptr::eq(&**c, self));
        device::free(dev);
        *self.done.lock() = true;
        self.done_cv.notify_all();
    }

    /// `rte_vhost_driver_unregister`: stops the connection's thread and
    /// waits for its device to be gone (unless called from that thread, by
    /// a callback: it finishes once the callback returns).
    pub(super) fn close_from_unregister(&self, path: &str) {
        vlog!(Config, Info, path, "free connfd {}", self.stream.as_raw_fd());
        self.unregistering.store(true, std::sync::atomic::Ordering::Release);
        let _ = self.stream.shutdown(std::net::Shutdown::Both);
        if self.thread.get() == Some(&std::thread::current().id()) {
            return;
        }
        let mut done = self.done.lock();
        while !*done {
            self.done_cv.wait(&mut done);
        }
    }

    /// Reads and handles one message. `Err` means: close the connection.
    fn handle_message(
        &self,
        socket: &Arc<VhostSocket>,
        dev: &Device,
        conn: std::os::fd::BorrowedFd<'_>,
    ) -> Result<(), Disconnect> {
        let ifname = socket.path.as_str();
        let msg = match read_message(conn) {
            Ok(m) => m,
            Err(ReadError::Closed) => {
                vlog!(Config, Info, ifname, "vhost peer closed");
                return Err(Disconnect);
            }
            Err(e) => {
                vlog!(Config, Err, ifname, "vhost read message failed: {e}");
                return Err(Disconnect);
            }
        };
        let request = Request::from_u32(msg.header.request);
        match request {
            Some(Request::IotlbMsg) => {
                vlog!(Config, Debug, ifname, "read message {}", Request::IotlbMsg.name())
            }
            Some(r) => vlog!(Config, Info, ifname, "read message {}", r.name()),
            None => vlog!(Config, Debug, ifname, "external request {}", msg.header.request),
        }
        if request.is_some_and(|r| !device::admit(dev, r, &msg.payload)) {
            return Err(Disconnect);
        }
        let config = socket.config.lock().clone();
        let hooks = self.hooks.lock().clone();
        let RawMessage { mut header, mut payload, mut fds } = msg;
        let mut result: Option<Result<(), MessageError>> = None;
        // The application's pre-hook (vhost-crypto, vhost_blk, SPDK) sees
        // every request first, whatever the library would do with it.
        if let Some(h) = hooks.as_ref().filter(|h| h.has_pre()) {
            let (rc, reply) = run_hook(h.as_ref(), true, self.vid, &mut header, &mut payload, &mut fds);
            result = settle(rc, conn, ifname, &mut header, &reply);
        }
        // As in 22.11, an ack is owed if the flags still ask for one after
        // the hooks (a reply sent clears NEED_REPLY).
        let mut need_reply = header.need_reply();
        let mut events = Vec::new();
        if let (Some(req), None) = (request, &result) {
            let outcome = match Routed::decode(req, &payload, std::mem::take(&mut fds)) {
                Err(e) => Err(MessageError::Decode(req, e)),
                Ok(m) => {
                    self.process(dev, &config, (conn, ifname), header, req, m, &mut need_reply, &mut events)
                }
            };
            result = Some(outcome);
        }
        if !matches!(result, Some(Err(_))) {
            if let Some(h) = hooks.as_ref().filter(|h| h.has_post()) {
                let (rc, reply) = run_hook(h.as_ref(), false, self.vid, &mut header, &mut payload, &mut fds);
                result = settle(rc, conn, ifname, &mut header, &reply).or(result);
                need_reply &= header.need_reply();
            }
        }
        // Fds nobody took are closed here.
        drop(fds);
        let result = result.unwrap_or(Err(MessageError::NotHandled(header.request)));
        if let Err(e) = &result {
            e.log(ifname);
        }
        let keep = if need_reply {
            let ack = u64::from(result.is_err());
            send_reply(conn, ifname, header.request, &ack.to_ne_bytes(), &[]);
            true
        } else if result.is_err() {
            vlog!(Config, Err, ifname, "vhost message handling failed.");
            false
        } else {
            true
        };
        let app = config.events.as_deref();
        self.run_events(app, events);
        if !keep {
            return Err(Disconnect);
        }
        self.after_message(dev, ifname, app, request, &payload);
        Ok(())
    }

    /// A decoded request: answered here if it was routed to the connection,
    /// else by the device, in one call. Replies are sent here; the events
    /// to fire go to `events`.
    #[allow(clippy::too_many_arguments)]
    fn process(
        &self,
        dev: &Device,
        config: &SocketConfig,
        (conn, ifname): (std::os::fd::BorrowedFd<'_>, &str),
        header: Header,
        req: Request,
        msg: Routed,
        need_reply: &mut bool,
        events: &mut Vec<Event>,
    ) -> Result<(), MessageError> {
        let reply = match msg {
            Routed::Connection(msg) => self.answer(dev, config, ifname, msg),
            Routed::Device(msg) => {
                let offer = Offer {
                    features: config.offered_features().unwrap_or_default(),
                    protocol_features: config.protocol_features,
                };
                let app = config.events.as_deref();
                let fire = &mut |first| self.run_events(app, first);
                let Handled { reply, events: caused } = device::handle(dev, offer, msg, fire);
                events.extend(caused);
                reply
            }
        };
        match &reply {
            // Logged with the failure (`MessageError::log`).
            Reply::Err => {}
            Reply::Ok => vlog!(Config, Debug, ifname, "processing {} succeeded.", req.name()),
            _ => vlog!(Config, Debug, ifname, "processing {} succeeded and needs reply.", req.name()),
        }
        match reply {
            Reply::Ok => Ok(()),
            Reply::Err => Err(MessageError::Refused(req)),
            Reply::Payload(body, fds) => {
                let raw: Vec<RawFd> = fds.iter().map(|f| f.as_raw_fd()).collect();
                send_reply(conn, ifname, header.request, &body, &raw);
                *need_reply = false;
                Ok(())
            }
            Reply::PostcopyTable(table, pending) => {
                // QEMU resolves our faults by these addresses; it acks them
                // (with the request's NEED_REPLY still set, answered after).
                send_reply(conn, ifname, header.request, &table, &[]);
                postcopy_ack(conn).map_err(|e| MessageError::PostcopyAck(req, e))?;
                dev.install_postcopy_table(pending).map_err(|e| MessageError::Postcopy(req, e))
            }
        }
    }

    /// A request only the connection can answer: what the socket offers,
    /// the vDPA driver's config space, the back-end channel.
    fn answer(&self, dev: &Device, config: &SocketConfig, ifname: &str, msg: ConnectionMessage) -> Reply {
        match msg {
            ConnectionMessage::GetFeatures => match config.offered_features() {
                Some(f) => Reply::Payload(f.bits().to_ne_bytes().to_vec(), Vec::new()),
                None => {
                    vlog!(Config, Err, ifname, "failed to get vdpa features for socket file.");
                    Reply::Err
                }
            },
            ConnectionMessage::GetProtocolFeatures => {
                Reply::Payload(config.protocol_features.bits().to_ne_bytes().to_vec(), Vec::new())
            }
            ConnectionMessage::GetQueueNum => match config.queue_num() {
                Some(n) => Reply::Payload(u64::from(n).to_ne_bytes().to_vec(), Vec::new()),
                None => {
                    vlog!(Config, Err, ifname, "failed to get vdpa queue number.");
                    Reply::Err
                }
            },
            ConnectionMessage::GetConfig(cfg) => self.get_config(ifname, cfg),
            ConnectionMessage::SetConfig(cfg) => self.set_config(ifname, cfg),
            ConnectionMessage::SetSlaveReqFd(fd) => {
                dev.set_backend(Arc::new(Channel::new(fd, ifname)));
                Reply::Ok
            }
        }
    }

    fn get_config(&self, ifname: &str, mut cfg: ConfigAccess) -> Reply {
        let Some(v) = &self.vdpa else {
            vlog!(Config, Err, ifname, "is not vDPA device!");
            return Reply::Err;
        };
        match v.get_config(self.vid, &mut cfg.region) {
            Some(0) => Reply::Payload(cfg.to_bytes(), Vec::new()),
            Some(_) => {
                // DPDK answers a failed read with an empty payload.
                vlog!(Config, Err, ifname, "get_config() return error!");
                Reply::Payload(Vec::new(), Vec::new())
            }
            None => {
                vlog!(Config, Err, ifname, "get_config() not supported!");
                Reply::Payload(cfg.to_bytes(), Vec::new())
            }
        }
    }

    fn set_config(&self, ifname: &str, mut cfg: ConfigAccess) -> Reply {
        let Some(v) = &self.vdpa else {
            vlog!(Config, Err, ifname, "is not vDPA device!");
            return Reply::Err;
        };
        match v.set_config(self.vid, &mut cfg.region, cfg.offset, cfg.flags) {
            Some(0) => Reply::Ok,
            Some(_) => {
                vlog!(Config, Err, ifname, "vdpa dev set config failed.");
                Reply::Err
            }
            None => {
                vlog!(Config, Err, ifname, "set_config() not supported!");
                Reply::Err
            }
        }
    }

    /// Makes the calls `events` asks for, in order. Called with no lock
    /// held: the application and the driver may call back into the API.
    fn run_events(&self, app: Option<&dyn DeviceEvents>, events: Vec<Event>) {
        let vid = self.vid;
        let vdpa = self.vdpa.as_deref();
        for ev in events {
            match ev {
                Event::VringState { queue, enable } => {
                    if let Some(v) = vdpa {
                        v.set_vring_state(vid, queue, enable);
                    }
                    if let Some(a) = app {
                        a.vring_state_changed(vid, queue, enable);
                    }
                }
                Event::FeaturesChanged(f) => {
                    if let Some(a) = app {
                        a.features_changed(vid, f);
                    }
                }
                Event::Stop => {
                    if let Some(v) = vdpa {
                        v.dev_close(vid);
                    }
                    if let Some(a) = app {
                        a.destroy_device(vid);
                    }
                }
                Event::VdpaClose => vdpa.into_iter().for_each(|v| v.dev_close(vid)),
                Event::VdpaSetFeatures => vdpa.into_iter().for_each(|v| v.set_features(vid)),
                Event::VdpaMigrationDone => vdpa.into_iter().for_each(|v| v.migration_done(vid)),
            }
        }
    }

    /// DPDK's checks after every message: tell the application a device
    /// that became ready, configure the vDPA device once its rings are.
    fn after_message(
        &self,
        dev: &Device,
        ifname: &str,
        app: Option<&dyn DeviceEvents>,
        req: Option<Request>,
        payload: &[u8],
    ) {
        let vdpa = self.vdpa.as_deref();
        let vdpa_blk = vdpa.is_some_and(|v| v.device_type() == RTE_VHOST_VDPA_DEVICE_TYPE_BLK);
        device::after_message(dev, req, payload, vdpa_blk, &mut |due| match due {
            Due::NewDevice => {
                let accepted = app.and_then(|a| a.new_device(self.vid)).is_none_or(|rc| rc == 0);
                if !accepted {
                    vlog!(Config, Err, ifname, "application refused the device (new_device failed)");
                }
                accepted
            }
            // Due only for a device with a vDPA driver attached.
            Due::VdpaConf => vdpa.is_some_and(|v| {
                let ok = v.dev_conf(self.vid) == 0;
                if !ok {
                    vlog!(Config, Err, ifname, "failed to configure vDPA device");
                }
                ok
            }),
        });
    }
}

/// Reads the front-end's ack of our postcopy memory table.
fn postcopy_ack(conn: std::os::fd::BorrowedFd<'_>) -> Result<(), AckError> {
    let ack = read_message(conn).map_err(AckError::Read)?;
    if !ack.fds.is_empty() {
        return Err(AckError::Fds(ack.fds.len()));
    }
    if ack.header.request != Request::SetMemTable as u32 {
        return Err(AckError::Request(ack.header.request));
    }
    Ok(())
}

/// Why a message failed. Logged once (`log`), by the connection, which
/// then acks the failure or closes.
#[derive(Debug)]
enum MessageError {
    /// The payload did not decode.
    Decode(Request, ProtocolError),
    /// Its handler refused it (and logged why).
    Refused(Request),
    /// The front-end did not ack our postcopy memory table.
    PostcopyAck(Request, AckError),
    /// The acked postcopy memory table was not put in use.
    Postcopy(Request, PostcopyError),
    /// The application's hook failed it.
    Hook,
    /// Neither a hook nor the library handles this request number.
    NotHandled(u32),
}

impl MessageError {
    /// Logs the failure as 22.11 does: its cause, then which request failed.
    fn log(&self, ifname: &str) {
        let failed = match self {
            MessageError::Decode(req, _)
            | MessageError::PostcopyAck(req, _)
            | MessageError::Postcopy(req, _) => {
                vlog!(Config, Err, ifname, "{self}");
                req
            }
            MessageError::Refused(req) => req,
            MessageError::Hook => return,
            MessageError::NotHandled(_) => {
                vlog!(Config, Err, ifname, "{self}");
                return;
            }
        };
        vlog!(Config, Err, ifname, "processing {} failed.", failed.name());
    }
}

impl std::fmt::Display for MessageError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            MessageError::Decode(_, e) => write!(f, "{e}"),
            MessageError::Refused(req) => write!(f, "{} refused", req.name()),
            MessageError::PostcopyAck(_, e) => write!(f, "{e}"),
            MessageError::Postcopy(_, e) => write!(f, "{e}"),
            MessageError::Hook => write!(f, "the message hook failed it"),
            MessageError::NotHandled(req) => write!(f, "vhost message (req: {req}) was not handled."),
        }
    }
}

impl std::error::Error for MessageError {}

/// What was wrong with the front-end's ack of our postcopy memory table.
#[derive(Debug)]
enum AckError {
    Read(ReadError),
    /// It came with this many fds.
    Fds(usize),
    /// It answered this other request.
    Request(u32),
}

impl std::fmt::Display for AckError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            AckError::Read(e) => write!(f, "failed to read qemu ack on postcopy set-mem-table: {e}"),
            AckError::Fds(n) => write!(f, "expect 0 FDs for request VHOST_USER_SET_MEM_TABLE, received {n}"),
            AckError::Request(r) => write!(f, "bad qemu ack on postcopy set-mem-table ({r})"),
        }
    }
}

impl std::error::Error for AckError {}

/// What a hook's answer makes of the message: `Some` outcome if the hook
/// settled it, `None` if it left the message to the library. A reply the
/// hook wrote is sent now, as 22.11's `send_vhost_reply` sends it: the
/// hook's flags with the version set and NEED_REPLY cleared (so no ack
/// follows), its size, and the fds left in its context.
fn settle(
    rc: HookResult,
    conn: std::os::fd::BorrowedFd<'_>,
    ifname: &str,
    header: &mut Header,
    reply: &HookReply,
) -> Option<Result<(), MessageError>> {
    match rc {
        HookResult::Reply => {
            header.flags = (header.flags & !(VERSION_MASK | FLAG_NEED_REPLY)) | VERSION | FLAG_REPLY;
            let sent = Header { size: reply.payload.len() as u32, ..*header };
            if let Err(e) = send_message(conn, sent, &reply.payload, &reply.fds) {
                vlog!(Config, Err, ifname, "failed to send reply: {e}");
            }
            Some(Ok(()))
        }
        HookResult::Ok => Some(Ok(())),
        HookResult::Err => Some(Err(MessageError::Hook)),
        HookResult::NotHandled => None,
    }
}

/// The message as a hook left it, for a reply it asks to send.
struct HookReply {
    payload: Vec<u8>,
    /// The fd numbers in the context's first `fd_num` slots.
    fds: Vec<RawFd>,
}

/// Runs a hook over DPDK's message-context layout and takes back what it
/// changed: payload and size, flags, and fds it consumed (set to -1).
fn run_hook(
    hooks: &dyn MessageHooks,
    pre: bool,
    vid: i32,
    header: &mut Header,
    payload: &mut Vec<u8>,
    fds: &mut Vec<OwnedFd>,
) -> (HookResult, HookReply) {
    let raw: Vec<RawFd> = fds.iter().map(|f| f.as_raw_fd()).collect();
    let mut mc = MsgContext::new(header.request, header.flags, payload, &raw);
    let rc = if pre { hooks.pre(vid, &mut mc) } else { hooks.post(vid, &mut mc) };
    header.size = mc.size.min(MAX_PAYLOAD as u32);
    header.flags = mc.flags;
    *payload = mc.payload_bytes();
    let left = mc.fds;
    let mut kept = Vec::new();
    for (fd, slot) in std::mem::take(fds).into_iter().zip(left) {
        if slot == fd.as_raw_fd() {
            kept.push(fd);
        } else {
            // The hook took ownership of this fd.
            let _ = fd.into_raw_fd();
        }
    }
    *fds = kept;
    let n = usize::try_from(mc.fd_num).unwrap_or(0).min(left.len());
    let reply_fds = left[..n].iter().copied().filter(|&fd| fd >= 0).collect();
    (rc, HookReply { payload: payload.clone(), fds: reply_fds })
}

/// Sends a reply; a failure is logged (the next read sees the broken
/// connection and closes it).
fn send_reply(conn: std::os::fd::BorrowedFd<'_>, ifname: &str, request: u32, body: &[u8], fds: &[RawFd]) {
    let header = Header { request, flags: VERSION | FLAG_REPLY, size: body.len() as u32 };
    if let Err(e) = send_message(conn, header, body, fds) {
        vlog!(Config, Err, ifname, "failed to send reply: {e}");
    }
}
