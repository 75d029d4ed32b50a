//! The vhost-user message handler: one function per request, run on the
//! "vhost-events" thread for each message read from a connection.
//!
//! The sequence for every message follows DPDK 22.11's
//! `vhost_user_msg_handler`: read and validate, log `read message ...`,
//! allocate the ring it names, lock every ring for requests that change what
//! the datapath reads, run the application's pre-hook, the built-in handler
//! and the post-hook, reply (or REPLY_ACK), then re-evaluate ring readiness
//! and device readiness. Application callbacks (`vring_state_changed`,
//! `new_device`, `destroy_device`, `features_changed`) are always invoked
//! with no lock held, so the application may call back into the API.

use std::os::fd::{AsRawFd, BorrowedFd, IntoRawFd, OwnedFd, RawFd};
use std::sync::Arc;

use crate::virtqueue::access_lock::AccessGuard;

use super::features::{self, bit, protocol as pf};
use super::{Device, MAX_VRING};
use crate::abi::{RTE_VHOST_MSG_RESULT_ERR, RTE_VHOST_MSG_RESULT_OK, RTE_VHOST_MSG_RESULT_REPLY};
use crate::ffi::callbacks::{DeviceOps, ExternOps, Hook};
use crate::guest::dirty_log::DirtyLog;
use crate::guest::postcopy::Userfault;
use crate::guest::GuestMemory;
use crate::protocol::{
    self, ConfigAccess, Header, InflightArea, LogArea, MemoryTable, MsgContext, Request, VringAddr,
    VringState, FLAG_REPLY, VERSION, VRING_IDX_MASK, VRING_NOFD_MASK,
};
use crate::socket::io::{read_message, send_message, ReadError};
use crate::socket::{SocketConfig, VhostSocket};
use crate::virtqueue::inflight::{InflightQueue, InflightRegion};
use crate::virtqueue::{EventFd, VqState, MAX_RING_SIZE};
use crate::vlog;

/// Virtio device status bits (SET_STATUS).
pub mod status {
    pub const ACKNOWLEDGE: u8 = 1;
    pub const DRIVER: u8 = 2;
    pub const DRIVER_OK: u8 = 4;
    pub const FEATURES_OK: u8 = 8;
    pub const DEVICE_NEED_RESET: u8 = 0x40;
    pub const FAILED: u8 = 0x80;
}

const VIRTIO_MIN_MTU: u64 = 68;
const VIRTIO_MAX_MTU: u64 = 65535;

/// What a request handler produced.
enum Outcome {
    Ok,
    /// Send this payload back (with these fds).
    Reply(Vec<u8>, Vec<OwnedFd>),
    Err,
}

/// A callback to fire once every lock is released.
enum Event {
    VringState(u16, bool),
    FeaturesChanged(u64),
}

/// One message being handled.
struct Ctx<'a> {
    dev: &'a Device,
    ifname: String,
    config: SocketConfig,
    /// Ring locks held for the whole message (requests that change rings).
    held: Vec<AccessGuard<'a, VqState>>,
    events: Vec<Event>,
}

impl<'a> Ctx<'a> {
    /// Runs `f` on ring `idx`, through the held lock or a fresh one.
    fn vq<R>(&mut self, idx: u16, f: impl FnOnce(&mut VqState) -> R) -> R {
        if let Some(g) = self.held.get_mut(usize::from(idx)) {
            return f(g);
        }
        let vq = self.dev.vq(idx).expect("ring allocated before the handler runs");
        f(&mut vq.lock())
    }

    fn for_each_vq(&mut self, mut f: impl FnMut(&mut VqState)) {
        for i in 0..self.dev.nr_vring() as u16 {
            self.vq(i, &mut f);
        }
    }

    /// DPDK: a ready ring loses readiness before its kick/call fd changes.
    fn unready(&mut self, idx: u16) {
        if self.vq(idx, |vq| std::mem::replace(&mut vq.ready, false)) {
            self.events.push(Event::VringState(idx, false));
        }
    }
}

/// Requests that change ring state: every ring is locked while they run, so
/// no datapath burst is in progress (DPDK's `vhost_user_lock_all_queue_pairs`).
fn locks_all_rings(request: Request) -> bool {
    use Request::*;
    matches!(
        request,
        SetFeatures
            | SetProtocolFeatures
            | SetOwner
            | SetMemTable
            | SetLogBase
            | SetLogFd
            | SetVringNum
            | SetVringAddr
            | SetVringBase
            | SetVringKick
            | SetVringCall
            | SetVringErr
            | SetVringEnable
            | SendRarp
            | NetSetMtu
            | SetSlaveReqFd
    )
}

/// The ring a request names, if any (DPDK allocates it on first mention).
fn vring_index(request: Request, payload: &[u8]) -> Option<u32> {
    use Request::*;
    match request {
        SetVringKick | SetVringCall | SetVringErr if payload.len() == 8 => {
            Some((protocol::read_u64(payload, 0) & VRING_IDX_MASK) as u32)
        }
        SetVringNum | SetVringBase | GetVringBase | SetVringEnable | SetVringAddr if payload.len() >= 4 => {
            Some(protocol::read_u32(payload, 0))
        }
        _ => None,
    }
}

/// The connection must be closed (peer gone, unreadable or rejected message).
#[derive(Debug)]
pub struct Disconnect;

/// Handles one message from `conn`. `Err` means: close the connection.
pub fn handle_message(dev: &Device, socket: &VhostSocket, conn: BorrowedFd<'_>) -> Result<(), Disconnect> {
    let ifname = socket.path.clone();
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
        Some(Request::IotlbMsg) => vlog!(Config, Debug, ifname, "read message {}", Request::IotlbMsg.name()),
        Some(r) => vlog!(Config, Info, ifname, "read message {}", r.name()),
        None => vlog!(Config, Debug, ifname, "external request {}", msg.header.request),
    }

    if let Some(idx) = request.and_then(|r| vring_index(r, &msg.payload)) {
        if idx as usize >= MAX_VRING {
            vlog!(Config, Err, ifname, "invalid vring index: {idx}");
            return Err(Disconnect);
        }
        dev.ensure_vring(idx);
    }

    let config = socket.config.lock().clone();
    let ops = config.ops;
    let extern_ops = dev.state.lock().extern_ops;
    let vdpa_configured = dev.state.lock().vdpa_configured;
    let held = match request {
        Some(r) if locks_all_rings(r) && !vdpa_configured => dev.vqs().iter().map(|vq| vq.lock()).collect(),
        _ => Vec::new(),
    };
    let mut ctx = Ctx { dev, ifname: ifname.clone(), config, held, events: Vec::new() };

    let mut header = msg.header;
    let mut fds = msg.fds;
    let mut handled = false;
    let mut result = RTE_VHOST_MSG_RESULT_OK;
    let mut need_reply = header.need_reply();

    // Application pre-hook (vhost-crypto, SPDK): may handle the message.
    let mut payload = msg.payload;
    let mut skip_builtin = false;
    if extern_ops.has(Hook::Pre) {
        match run_hook(&extern_ops, Hook::Pre, dev.vid(), &mut header, &mut payload, &mut fds) {
            Some(RTE_VHOST_MSG_RESULT_REPLY) => {
                send_reply(conn, &ifname, header.request, &payload, &[]);
                need_reply = false;
                handled = true;
                skip_builtin = true;
            }
            Some(r @ (RTE_VHOST_MSG_RESULT_ERR | RTE_VHOST_MSG_RESULT_OK)) => {
                result = r;
                handled = true;
                skip_builtin = true;
            }
            _ => {}
        }
    }

    if let (Some(req), false) = (request, skip_builtin) {
        let outcome = match protocol::validate(req, &payload, fds.len()) {
            Err(e) => {
                vlog!(Config, Err, ifname, "{e}");
                Outcome::Err
            }
            Ok(()) => dispatch(&mut ctx, req, header, &payload, std::mem::take(&mut fds), &ops, conn),
        };
        handled = true;
        match outcome {
            Outcome::Err => {
                vlog!(Config, Err, ifname, "processing {} failed.", req.name());
                result = RTE_VHOST_MSG_RESULT_ERR;
            }
            Outcome::Ok => {
                vlog!(Config, Debug, ifname, "processing {} succeeded.", req.name());
                result = RTE_VHOST_MSG_RESULT_OK;
            }
            Outcome::Reply(body, reply_fds) => {
                vlog!(Config, Debug, ifname, "processing {} succeeded and needs reply.", req.name());
                let raw: Vec<RawFd> = reply_fds.iter().map(|f| f.as_raw_fd()).collect();
                send_reply(conn, &ifname, header.request, &body, &raw);
                need_reply = false;
                result = RTE_VHOST_MSG_RESULT_REPLY;
            }
        }
    }

    if result != RTE_VHOST_MSG_RESULT_ERR && extern_ops.has(Hook::Post) {
        match run_hook(&extern_ops, Hook::Post, dev.vid(), &mut header, &mut payload, &mut fds) {
            Some(RTE_VHOST_MSG_RESULT_REPLY) => {
                send_reply(conn, &ifname, header.request, &payload, &[]);
                need_reply = false;
                handled = true;
            }
            Some(r @ (RTE_VHOST_MSG_RESULT_ERR | RTE_VHOST_MSG_RESULT_OK)) => {
                result = r;
                handled = true;
            }
            _ => {}
        }
    }
    // Fds nobody took are closed here.
    drop(fds);

    if !handled {
        vlog!(Config, Err, ifname, "vhost message (req: {}) was not handled.", header.request);
        result = RTE_VHOST_MSG_RESULT_ERR;
    }

    let mut keep = true;
    if need_reply {
        let ack = u64::from(result == RTE_VHOST_MSG_RESULT_ERR);
        send_reply(conn, &ifname, header.request, &ack.to_ne_bytes(), &[]);
    } else if result == RTE_VHOST_MSG_RESULT_ERR {
        vlog!(Config, Err, ifname, "vhost message handling failed.");
        keep = false;
    }

    if keep {
        // Ring readiness may have changed.
        let nr = dev.nr_vring() as u16;
        for i in 0..nr {
            let changed = ctx.vq(i, |vq| {
                let now = vq.is_ready();
                (now != vq.ready).then(|| {
                    vq.ready = now;
                    now
                })
            });
            if let Some(now) = changed {
                ctx.events.push(Event::VringState(i, now));
            }
        }
    }
    let Ctx { held, events, .. } = ctx;
    drop(held);

    for ev in events {
        match ev {
            Event::VringState(idx, enable) => dev.notify_vring_state(&ops, idx, enable),
            Event::FeaturesChanged(f) => ops.features_changed(dev.vid(), f),
        }
    }
    if !keep {
        return Err(Disconnect);
    }
    dev.start_if_ready(&ops);
    let last_call_for_blk = request == Some(Request::SetVringCall)
        && payload.len() == 8
        && (protocol::read_u64(&payload, 0) & VRING_IDX_MASK) as u32 + 1 == dev.nr_vring();
    dev.configure_vdpa(last_call_for_blk);
    Ok(())
}

/// Runs an extern hook over DPDK's message-context layout and takes back what
/// it changed: payload and size, and fds it consumed (set to -1).
fn run_hook(
    ops: &ExternOps,
    hook: Hook,
    vid: i32,
    header: &mut Header,
    payload: &mut Vec<u8>,
    fds: &mut Vec<OwnedFd>,
) -> Option<i32> {
    let raw: Vec<RawFd> = fds.iter().map(|f| f.as_raw_fd()).collect();
    let mut mc = MsgContext::new(*header, payload, &raw);
    let rc = ops.run(hook, vid, &mut mc);
    header.size = mc.size.min(protocol::MAX_PAYLOAD as u32);
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
    Some(rc)
}

/// Sends a reply; a failure is logged (the next read sees the broken
/// connection and closes it).
fn send_reply(conn: BorrowedFd<'_>, ifname: &str, request: u32, body: &[u8], fds: &[RawFd]) {
    let header = Header { request, flags: VERSION | FLAG_REPLY, size: body.len() as u32 };
    if let Err(e) = send_message(conn, header, body, fds) {
        vlog!(Config, Err, ifname, "failed to send reply: {e}");
    }
}

fn reply_u64(v: u64) -> Outcome {
    Outcome::Reply(v.to_ne_bytes().to_vec(), Vec::new())
}

fn dispatch(
    ctx: &mut Ctx<'_>,
    req: Request,
    header: Header,
    payload: &[u8],
    fds: Vec<OwnedFd>,
    ops: &DeviceOps,
    conn: BorrowedFd<'_>,
) -> Outcome {
    use Request::*;
    let u64_payload = || protocol::read_u64(payload, 0);
    match req {
        GetFeatures => match ctx.config.offered_features() {
            Some(f) => reply_u64(f),
            None => {
                vlog!(Config, Err, ctx.ifname, "failed to get vdpa features for socket file.");
                Outcome::Err
            }
        },
        SetFeatures => set_features(ctx, u64_payload()),
        SetOwner => Outcome::Ok,
        ResetOwner => {
            ctx.dev.destroy_notify(ops);
            ctx.dev.reset_owner();
            Outcome::Ok
        }
        SetMemTable => set_mem_table(ctx, payload, fds, header, conn),
        SetLogBase => set_log_base(ctx, payload, fds),
        SetLogFd => Outcome::Ok,
        SetVringNum => set_vring_num(ctx, payload),
        SetVringAddr => set_vring_addr(ctx, payload),
        SetVringBase => set_vring_base(ctx, payload),
        GetVringBase => get_vring_base(ctx, payload, ops),
        SetVringKick | SetVringCall | SetVringErr => set_vring_fd(ctx, req, u64_payload(), fds),
        GetProtocolFeatures => reply_u64(ctx.config.protocol_features),
        SetProtocolFeatures => set_protocol_features(ctx, u64_payload()),
        GetQueueNum => match ctx.config.queue_num() {
            Some(n) => reply_u64(u64::from(n)),
            None => {
                vlog!(Config, Err, ctx.ifname, "failed to get vdpa queue number.");
                Outcome::Err
            }
        },
        SetVringEnable => set_vring_enable(ctx, payload),
        SendRarp => send_rarp(ctx, u64_payload()),
        NetSetMtu => net_set_mtu(ctx, u64_payload()),
        SetSlaveReqFd => {
            ctx.dev.state.lock().slave_req = fds.into_iter().next();
            Outcome::Ok
        }
        IotlbMsg => {
            vlog!(
                Config,
                Err,
                ctx.ifname,
                "IOTLB message received but VIRTIO_F_IOMMU_PLATFORM is not supported"
            );
            Outcome::Err
        }
        GetConfig => get_config(ctx, payload),
        SetConfig => set_config(ctx, payload),
        PostcopyAdvise => postcopy_advise(ctx),
        PostcopyListen => {
            let mut st = ctx.dev.state.lock();
            if !st.mem.is_empty() {
                vlog!(Config, Err, ctx.ifname, "regions already registered at postcopy-listen");
                return Outcome::Err;
            }
            st.postcopy_listening = true;
            Outcome::Ok
        }
        PostcopyEnd => {
            let mut st = ctx.dev.state.lock();
            st.postcopy_listening = false;
            st.postcopy_ufd = None;
            reply_u64(0)
        }
        GetInflightFd => get_inflight_fd(ctx, payload),
        SetInflightFd => set_inflight_fd(ctx, payload, fds),
        SetStatus => set_status(ctx, u64_payload()),
        GetStatus => reply_u64(u64::from(ctx.dev.state.lock().status)),
    }
}

fn set_features(ctx: &mut Ctx<'_>, features: u64) -> Outcome {
    let offered = ctx.config.offered_features().unwrap_or(0);
    if features & !offered != 0 {
        vlog!(Config, Err, ctx.ifname, "received invalid negotiated features.");
        let mut st = ctx.dev.state.lock();
        st.features_failed = true;
        st.status &= !status::FEATURES_OK;
        return Outcome::Err;
    }
    {
        let st = ctx.dev.state.lock();
        if st.running {
            if st.features == features {
                return Outcome::Ok;
            }
            // Only VHOST_F_LOG_ALL may change while running (migration start).
            if (st.features ^ features) & !bit(features::VHOST_F_LOG_ALL) != 0 {
                vlog!(Config, Err, ctx.ifname, "features changed while device is running.");
                return Outcome::Err;
            }
            ctx.events.push(Event::FeaturesChanged(features));
        }
    }
    {
        let mut st = ctx.dev.state.lock();
        st.features = features;
        st.features_failed = false;
    }
    vlog!(Config, Info, ctx.ifname, "negotiated Virtio features: {features:#x}");
    vlog!(
        Config,
        Debug,
        ctx.ifname,
        "mergeable RX buffers {}, virtio 1 {}",
        if features & bit(features::VIRTIO_NET_F_MRG_RXBUF) != 0 { "on" } else { "off" },
        if features & bit(features::VIRTIO_F_VERSION_1) != 0 { "on" } else { "off" }
    );
    // Without MQ, the built-in net device keeps only its first queue pair.
    if ctx.dev.state.lock().builtin_net && features & bit(features::VIRTIO_NET_F_MQ) == 0 {
        ctx.dev.truncate_vrings(2, &mut ctx.held);
    }
    let ifname = ctx.ifname.clone();
    ctx.for_each_vq(|vq| {
        vq.features = features;
        // A translated ring is checked again for the layout now negotiated.
        if let Err(why) = vq.retranslate() {
            vlog!(Config, Err, ifname, "vring {} not usable with the new features: {why}", vq.index);
        }
    });
    if let Some(v) = ctx.dev.state.lock().vdpa_dev {
        v.set_features(ctx.dev.vid());
    }
    Outcome::Ok
}

fn get_config(ctx: &mut Ctx<'_>, payload: &[u8]) -> Outcome {
    let Some(v) = ctx.dev.state.lock().vdpa_dev else {
        vlog!(Config, Err, ctx.ifname, "is not vDPA device!");
        return Outcome::Err;
    };
    let Some(mut cfg) = logged(ctx, "", ConfigAccess::parse(payload)) else { return Outcome::Err };
    match v.get_config(ctx.dev.vid(), &mut cfg.region) {
        Some(0) => Outcome::Reply(cfg.to_bytes(), Vec::new()),
        Some(_) => {
            // DPDK answers a failed read with an empty payload.
            vlog!(Config, Err, ctx.ifname, "get_config() return error!");
            Outcome::Reply(Vec::new(), Vec::new())
        }
        None => {
            vlog!(Config, Err, ctx.ifname, "get_config() not supported!");
            Outcome::Reply(cfg.to_bytes(), Vec::new())
        }
    }
}

fn set_config(ctx: &mut Ctx<'_>, payload: &[u8]) -> Outcome {
    let Some(v) = ctx.dev.state.lock().vdpa_dev else {
        vlog!(Config, Err, ctx.ifname, "is not vDPA device!");
        return Outcome::Err;
    };
    let Some(mut cfg) = logged(ctx, "", ConfigAccess::parse(payload)) else { return Outcome::Err };
    match v.set_config(ctx.dev.vid(), &mut cfg.region, cfg.offset, cfg.flags) {
        Some(0) => Outcome::Ok,
        Some(_) => {
            vlog!(Config, Err, ctx.ifname, "vdpa dev set config failed.");
            Outcome::Err
        }
        None => {
            vlog!(Config, Err, ctx.ifname, "set_config() not supported!");
            Outcome::Err
        }
    }
}

fn set_protocol_features(ctx: &mut Ctx<'_>, value: u64) -> Outcome {
    if value & !ctx.config.protocol_features != 0 {
        vlog!(Config, Err, ctx.ifname, "received invalid protocol features.");
        return Outcome::Err;
    }
    ctx.dev.state.lock().protocol_features = value;
    vlog!(Config, Info, ctx.ifname, "negotiated Vhost-user protocol features: {value:#x}");
    Outcome::Ok
}

fn set_mem_table(
    ctx: &mut Ctx<'_>,
    payload: &[u8],
    fds: Vec<OwnedFd>,
    header: Header,
    conn: BorrowedFd<'_>,
) -> Outcome {
    let Some(table) = logged(ctx, "", MemoryTable::parse(payload)) else { return Outcome::Err };
    let current = Arc::clone(&ctx.dev.state.lock().mem);
    if !current.is_empty() && same_layout(&current, &table) {
        vlog!(Config, Info, ctx.ifname, "memory regions not changed");
        return Outcome::Ok;
    }
    // A configured vDPA device uses the old table: stop it first.
    let configured_vdpa = {
        let mut st = ctx.dev.state.lock();
        let v = st.vdpa_dev.filter(|_| st.vdpa_configured);
        st.vdpa_configured = false;
        v
    };
    if let Some(v) = configured_vdpa {
        v.dev_close(ctx.dev.vid());
    }
    let Some(mem) =
        logged(ctx, "failed to mmap region", GuestMemory::map(&table.regions, fds, false).map(Arc::new))
    else {
        return Outcome::Err;
    };
    for (i, r) in mem.regions().iter().enumerate() {
        vlog!(
            Config,
            Info,
            ctx.ifname,
            "guest memory region {i}, size: {:#x}\n\t guest physical addr: {:#x}\n\t guest virtual  addr: {:#x}\n\t host  virtual  addr: {:#x}\n\t mmap addr : {:#x}\n\t mmap size : {:#x}\n\t mmap off  : {:#x}",
            r.size,
            r.guest_phys_addr,
            r.guest_user_addr,
            r.host_user_addr,
            r.mmap_addr(),
            r.mmap_size(),
            r.mmap_offset
        );
    }
    if ctx.dev.state.lock().postcopy_listening {
        if let Err(why) = postcopy_register(ctx, &table, &mem, header, conn) {
            vlog!(Config, Err, ctx.ifname, "{why}");
            return Outcome::Err;
        }
    }
    ctx.dev.state.lock().mem = Arc::clone(&mem);
    // Rings that were translated must be translated again: our addresses
    // changed. The old table is unmapped when the last ring lets go of it.
    let ifname = ctx.ifname.clone();
    ctx.for_each_vq(|vq| {
        if let Err(why) = vq.set_mem(&mem) {
            vlog!(Config, Err, ifname, "failed to translate vring {} addresses: {why}", vq.index);
        }
    });
    Outcome::Ok
}

fn postcopy_advise(ctx: &mut Ctx<'_>) -> Outcome {
    let Some(ufd) = logged(ctx, "userfaultfd not available", Userfault::open()) else { return Outcome::Err };
    let Some(shared) = logged(ctx, "failed to share the userfaultfd", ufd.fd().try_clone_to_owned()) else {
        return Outcome::Err;
    };
    ctx.dev.state.lock().postcopy_ufd = Some(ufd);
    Outcome::Reply(Vec::new(), vec![shared])
}

/// SET_MEM_TABLE while postcopy-listening: tell QEMU where we mapped each
/// region (it resolves our faults by those addresses), wait for its ack, then
/// register every mapping with the userfaultfd. Nothing may touch the new
/// mappings before the registration.
fn postcopy_register(
    ctx: &Ctx<'_>,
    table: &MemoryTable,
    mem: &GuestMemory,
    header: Header,
    conn: BorrowedFd<'_>,
) -> Result<(), String> {
    let mut ours = table.clone();
    for (d, r) in ours.regions.iter_mut().zip(mem.regions()) {
        d.userspace_addr = r.host_user_addr;
    }
    send_reply(conn, &ctx.ifname, header.request, &ours.to_bytes(), &[]);
    let ack =
        read_message(conn).map_err(|e| format!("failed to read qemu ack on postcopy set-mem-table: {e}"))?;
    if !ack.fds.is_empty() {
        return Err(format!("expect 0 FDs for request VHOST_USER_SET_MEM_TABLE, received {}", ack.fds.len()));
    }
    if ack.header.request != Request::SetMemTable as u32 {
        return Err(format!("bad qemu ack on postcopy set-mem-table ({})", ack.header.request));
    }
    let st = ctx.dev.state.lock();
    let ufd = st.postcopy_ufd.as_ref().ok_or("postcopy listening without POSTCOPY_ADVISE")?;
    for r in mem.regions() {
        let (start, len) = (r.mmap_addr(), r.mmap_size());
        ufd.register(start, len).map_err(|e| {
            format!(
                "failed to register ufd for region {start:x} - {:x} (ufd = {}) {e}",
                start + len - 1,
                ufd.fd().as_raw_fd()
            )
        })?;
        vlog!(
            Config,
            Info,
            ctx.ifname,
            "\t userfaultfd registered for range : {start:x} - {:x}",
            start + len - 1
        );
    }
    Ok(())
}

fn same_layout(mem: &GuestMemory, table: &MemoryTable) -> bool {
    mem.regions().len() == table.regions.len()
        && mem.regions().iter().zip(&table.regions).all(|(r, d)| {
            r.guest_phys_addr == d.guest_phys_addr
                && r.guest_user_addr == d.userspace_addr
                && r.size == d.memory_size
                && r.mmap_offset == d.mmap_offset
        })
}

fn set_log_base(ctx: &mut Ctx<'_>, payload: &[u8], fds: Vec<OwnedFd>) -> Outcome {
    let Some(area) = logged(ctx, "", LogArea::parse(payload)) else { return Outcome::Err };
    let Some(fd) = fds.into_iter().next() else {
        return Outcome::Err;
    };
    vlog!(Config, Info, ctx.ifname, "log mmap size: {}, offset: {}", area.mmap_size, area.mmap_offset);
    match DirtyLog::map(&fd, area.mmap_size, area.mmap_offset) {
        Ok(log) => {
            let log = Arc::new(log);
            ctx.for_each_vq(|vq| vq.log = Some(Arc::clone(&log)));
            ctx.dev.state.lock().log = Some(log);
            // QEMU expects an empty reply body.
            Outcome::Reply(Vec::new(), Vec::new())
        }
        Err(e) => {
            vlog!(Config, Err, ctx.ifname, "mmap log base failed! ({e})");
            Outcome::Err
        }
    }
}

fn set_vring_num(ctx: &mut Ctx<'_>, payload: &[u8]) -> Outcome {
    let Ok(state) = VringState::parse(payload) else {
        return Outcome::Err;
    };
    let packed = ctx.dev.state.lock().features & bit(features::VIRTIO_F_RING_PACKED) != 0;
    // Stricter than DPDK, which accepts 0: an empty ring cannot work.
    if state.num == 0 || state.num > MAX_RING_SIZE || (!packed && !state.num.is_power_of_two()) {
        vlog!(Config, Err, ctx.ifname, "invalid virtqueue size {}", state.num);
        return Outcome::Err;
    }
    let ifname = ctx.ifname.clone();
    ctx.vq(state.index as u16, |vq| {
        vq.num = state.num as u16;
        // Stricter than DPDK: a translated ring is checked again for its
        // new size (a ring grown in place may no longer fit its memory).
        if let Err(why) = vq.retranslate() {
            vlog!(Config, Err, ifname, "vring {} no longer usable at size {}: {why}", vq.index, state.num);
        }
    });
    Outcome::Ok
}

fn set_vring_addr(ctx: &mut Ctx<'_>, payload: &[u8]) -> Outcome {
    let Ok(addr) = VringAddr::parse(payload) else {
        return Outcome::Err;
    };
    let (mem_empty, proto) = {
        let st = ctx.dev.state.lock();
        (st.mem.is_empty(), st.features & bit(features::VHOST_USER_F_PROTOCOL_FEATURES) != 0)
    };
    if mem_empty {
        vlog!(Config, Err, ctx.ifname, "no memory table set before the vring addresses");
        return Outcome::Err;
    }
    let ifname = ctx.ifname.clone();
    ctx.vq(addr.index as u16, |vq| {
        vq.addr = Some(addr);
        vq.log_guest_addr = addr.log_guest_addr;
        let result = if vq.enabled && proto { vq.start() } else { vq.retranslate() };
        if let Err(why) = result {
            vlog!(Config, Err, ifname, "failed to translate vring {} addresses: {why}", vq.index);
        }
    });
    Outcome::Ok
}

fn set_vring_base(ctx: &mut Ctx<'_>, payload: &[u8]) -> Outcome {
    let Ok(state) = VringState::parse(payload) else {
        return Outcome::Err;
    };
    let ifname = ctx.ifname.clone();
    let set = ctx.vq(state.index as u16, |vq| {
        if vq.is_packed() {
            // Stricter than DPDK: a position beyond the ring is refused
            // (the slot it names is read and handed to monitor loops).
            if vq.num != 0 && (state.num & 0x7fff) >= u32::from(vq.num) {
                vlog!(
                    Config,
                    Err,
                    ifname,
                    "vring {} base {} beyond the ring size {}",
                    vq.index,
                    state.num & 0x7fff,
                    vq.num
                );
                return None;
            }
            // Bits 0-14: avail index, bit 15: avail wrap counter; the used
            // side restarts where avail stopped (nothing is in flight).
            vq.last_avail_idx = (state.num & 0x7fff) as u16;
            vq.avail_wrap_counter = state.num & 0x8000 != 0;
            vq.last_used_idx = vq.last_avail_idx;
            vq.used_wrap_counter = vq.avail_wrap_counter;
        } else {
            vq.last_avail_idx = state.num as u16;
            vq.last_used_idx = state.num as u16;
        }
        if let Err(why) = vq.retranslate() {
            vlog!(Config, Err, ifname, "vring {} not usable at its new base: {why}", vq.index);
        }
        Some((vq.last_used_idx, vq.last_avail_idx))
    });
    let Some((last_used, last_avail)) = set else { return Outcome::Err };
    vlog!(
        Config,
        Info,
        ctx.ifname,
        "vring base idx:{} last_used_idx:{last_used} last_avail_idx:{last_avail}.",
        state.index
    );
    Outcome::Ok
}

fn get_vring_base(ctx: &mut Ctx<'_>, payload: &[u8], ops: &DeviceOps) -> Outcome {
    let Ok(mut state) = VringState::parse(payload) else {
        return Outcome::Err;
    };
    // The ring is being stopped: the application must stop using the device
    // first (DPDK fires destroy_device here).
    ctx.dev.destroy_notify(ops);
    {
        let mut st = ctx.dev.state.lock();
        st.vdpa_configured = false;
    }
    state.num = ctx.vq(state.index as u16, |vq| {
        let num = if vq.is_packed() {
            u32::from(vq.last_avail_idx & 0x7fff) | (u32::from(vq.avail_wrap_counter) << 15)
        } else {
            u32::from(vq.last_avail_idx)
        };
        vq.kick = EventFd::Uninitialized;
        vq.call = EventFd::Uninitialized;
        vq.stop();
        vq.addr = None;
        num
    });
    vlog!(Config, Info, ctx.ifname, "vring base idx:{} file:{}", state.index, state.num);
    Outcome::Reply(state.to_bytes().to_vec(), Vec::new())
}

fn set_vring_fd(ctx: &mut Ctx<'_>, req: Request, value: u64, fds: Vec<OwnedFd>) -> Outcome {
    let idx = (value & VRING_IDX_MASK) as u16;
    let fd = if value & VRING_NOFD_MASK != 0 {
        EventFd::Invalid
    } else {
        match fds.into_iter().next() {
            Some(fd) => EventFd::Fd(fd),
            None => return Outcome::Err,
        }
    };
    let what = match req {
        Request::SetVringKick => "kick",
        Request::SetVringCall => "call",
        _ => "err",
    };
    vlog!(Config, Info, ctx.ifname, "vring {what} idx:{idx} file:{}", fd.raw());
    match req {
        Request::SetVringKick => {
            let proto = ctx.dev.state.lock().features & bit(features::VHOST_USER_F_PROTOCOL_FEATURES) != 0;
            let ifname = ctx.ifname.clone();
            ctx.vq(idx, |vq| {
                if let Err(why) = vq.start() {
                    vlog!(Config, Debug, ifname, "vring {idx} not translated yet: {why}");
                }
                warn_used_idx_resync(&ifname, vq);
                // Without protocol features, a kicked ring is enabled.
                if !proto {
                    vq.enabled = true;
                }
            });
            ctx.unready(idx);
            ctx.vq(idx, |vq| vq.kick = fd);
            check_inflights(ctx, idx);
        }
        Request::SetVringCall => {
            ctx.unready(idx);
            ctx.vq(idx, |vq| vq.call = fd);
        }
        _ => ctx.vq(idx, |vq| vq.err = fd),
    }
    Outcome::Ok
}

fn get_inflight_fd(ctx: &mut Ctx<'_>, payload: &[u8]) -> Outcome {
    let Ok(area) = InflightArea::parse(payload) else { return Outcome::Err };
    vlog!(Config, Info, ctx.ifname, "get_inflight_fd num_queues: {}", area.num_queues);
    vlog!(Config, Info, ctx.ifname, "get_inflight_fd queue_size: {}", area.queue_size);
    // Stricter than DPDK: an empty or oversized layout is refused.
    if area.num_queues == 0 || area.queue_size == 0 || u32::from(area.queue_size) > MAX_RING_SIZE {
        vlog!(Config, Err, ctx.ifname, "invalid inflight layout");
        return Outcome::Err;
    }
    let packed = ctx.dev.state.lock().features & bit(features::VIRTIO_F_RING_PACKED) != 0;
    let Some(region) = logged(
        ctx,
        "failed to alloc vhost inflight area",
        InflightRegion::allocate(area.num_queues, area.queue_size, packed),
    ) else {
        return Outcome::Err;
    };
    let Some(fd) = logged(ctx, "failed to share the inflight fd", region.fd().try_clone()) else {
        return Outcome::Err;
    };
    let reply = InflightArea { mmap_size: region.size(), mmap_offset: 0, ..area };
    vlog!(Config, Info, ctx.ifname, "send inflight mmap_size: {}", reply.mmap_size);
    vlog!(Config, Info, ctx.ifname, "send inflight mmap_offset: {}", reply.mmap_offset);
    ctx.dev.state.lock().inflight = Some(Arc::new(region));
    Outcome::Reply(reply.to_bytes().to_vec(), vec![fd])
}

fn set_inflight_fd(ctx: &mut Ctx<'_>, payload: &[u8], fds: Vec<OwnedFd>) -> Outcome {
    let Ok(area) = InflightArea::parse(payload) else { return Outcome::Err };
    let Some(fd) = fds.into_iter().next() else { return Outcome::Err };
    vlog!(Config, Info, ctx.ifname, "set_inflight_fd mmap_size: {}", area.mmap_size);
    vlog!(Config, Info, ctx.ifname, "set_inflight_fd mmap_offset: {}", area.mmap_offset);
    vlog!(Config, Info, ctx.ifname, "set_inflight_fd num_queues: {}", area.num_queues);
    vlog!(Config, Info, ctx.ifname, "set_inflight_fd queue_size: {}", area.queue_size);
    if area.num_queues == 0 || usize::from(area.num_queues) > MAX_VRING || area.queue_size == 0 {
        vlog!(Config, Err, ctx.ifname, "invalid inflight layout");
        return Outcome::Err;
    }
    let packed = ctx.dev.state.lock().features & bit(features::VIRTIO_F_RING_PACKED) != 0;
    let needed =
        crate::virtqueue::inflight::per_queue_size(area.queue_size, packed) * u64::from(area.num_queues);
    if area.mmap_size < needed {
        vlog!(
            Config,
            Err,
            ctx.ifname,
            "inflight area of {} bytes too small for its queues ({needed})",
            area.mmap_size
        );
        return Outcome::Err;
    }
    let Some(region) = logged(
        ctx,
        "failed to mmap share memory",
        InflightRegion::map(fd, area.mmap_size, area.mmap_offset).map(Arc::new),
    ) else {
        return Outcome::Err;
    };
    ctx.dev.ensure_vring(u32::from(area.num_queues) - 1);
    for q in 0..area.num_queues {
        ctx.vq(q, |vq| {
            vq.inflight = InflightQueue::attach(&region, q, area.queue_size, packed);
            vq.resubmit = None;
        });
    }
    ctx.dev.state.lock().inflight = Some(region);
    Outcome::Ok
}

/// At SET_VRING_KICK: stamp a fresh inflight area, or build the resubmit
/// list from an old one (DPDK's `vhost_check_queue_inflights_*`).
fn check_inflights(ctx: &mut Ctx<'_>, idx: u16) {
    if !has_protocol_feature(ctx.dev, pf::INFLIGHT_SHMFD) {
        return;
    }
    ctx.vq(idx, |vq| {
        let Some(q) = vq.inflight.clone() else { return };
        if vq.resubmit.is_some() {
            return;
        }
        let used_idx = vq.ring.filter(|r| !r.is_packed()).map(|r| r.split_used_idx());
        let (resubmit, counter, skip) = q.recover(used_idx);
        vq.inflight_counter = counter;
        vq.last_avail_idx = vq.last_avail_idx.wrapping_add(skip);
        vq.resubmit = resubmit;
    });
}

fn set_vring_enable(ctx: &mut Ctx<'_>, payload: &[u8]) -> Outcome {
    let Ok(state) = VringState::parse(payload) else {
        return Outcome::Err;
    };
    let enable = state.num != 0;
    vlog!(Config, Info, ctx.ifname, "set queue enable: {} to qp idx: {}", u8::from(enable), state.index);
    ctx.vq(state.index as u16, |vq| vq.enabled = enable);
    Outcome::Ok
}

fn send_rarp(ctx: &mut Ctx<'_>, value: u64) -> Outcome {
    let b = value.to_ne_bytes();
    let mac = [b[0], b[1], b[2], b[3], b[4], b[5]];
    vlog!(
        Config,
        Debug,
        ctx.ifname,
        "MAC: {:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
        mac[0],
        mac[1],
        mac[2],
        mac[3],
        mac[4],
        mac[5]
    );
    ctx.dev.request_rarp(mac);
    if let Some(v) = ctx.dev.state.lock().vdpa_dev {
        v.migration_done(ctx.dev.vid());
    }
    Outcome::Ok
}

fn net_set_mtu(ctx: &mut Ctx<'_>, value: u64) -> Outcome {
    if !(VIRTIO_MIN_MTU..=VIRTIO_MAX_MTU).contains(&value) {
        vlog!(Config, Err, ctx.ifname, "invalid MTU size ({value})");
        return Outcome::Err;
    }
    ctx.dev.state.lock().mtu = value as u16;
    Outcome::Ok
}

fn set_status(ctx: &mut Ctx<'_>, value: u64) -> Outcome {
    let Ok(value) = u8::try_from(value) else {
        vlog!(Config, Err, ctx.ifname, "invalid VHOST_USER_SET_STATUS payload {value:#x}");
        return Outcome::Err;
    };
    let st_val = {
        let mut st = ctx.dev.state.lock();
        st.status = value;
        if st.status & status::FEATURES_OK != 0 && st.features_failed {
            vlog!(Config, Err, ctx.ifname, "FEATURES_OK bit is set but feature negotiation failed");
            st.status &= !status::FEATURES_OK;
        }
        st.status
    };
    let flag = |b: u8| u8::from(st_val & b != 0);
    vlog!(Config, Info, ctx.ifname, "new device status(0x{:08x}):", st_val);
    vlog!(Config, Info, ctx.ifname, "\t-RESET: {}", u8::from(st_val == 0));
    vlog!(Config, Info, ctx.ifname, "\t-ACKNOWLEDGE: {}", flag(status::ACKNOWLEDGE));
    vlog!(Config, Info, ctx.ifname, "\t-DRIVER: {}", flag(status::DRIVER));
    vlog!(Config, Info, ctx.ifname, "\t-FEATURES_OK: {}", flag(status::FEATURES_OK));
    vlog!(Config, Info, ctx.ifname, "\t-DRIVER_OK: {}", flag(status::DRIVER_OK));
    vlog!(Config, Info, ctx.ifname, "\t-DEVICE_NEED_RESET: {}", flag(status::DEVICE_NEED_RESET));
    vlog!(Config, Info, ctx.ifname, "\t-FAILED: {}", flag(status::FAILED));
    Outcome::Ok
}

/// The value of `r`, or `None` after logging its error (prefixed by `what`
/// when not empty) for this device.
fn logged<T, E: std::fmt::Display>(ctx: &Ctx<'_>, what: &str, r: Result<T, E>) -> Option<T> {
    r.map_err(|e| {
        if what.is_empty() {
            vlog!(Config, Err, ctx.ifname, "{e}");
        } else {
            vlog!(Config, Err, ctx.ifname, "{what}: {e}");
        }
    })
    .ok()
}

/// DPDK's check when a split ring's addresses are translated.
fn warn_used_idx_resync(ifname: &str, vq: &mut VqState) {
    if let Some((ours, guest)) = vq.sync_used_idx() {
        vlog!(Config, Warning, ifname, "last_used_idx ({ours}) and vq->used->idx ({guest}) mismatches;");
        vlog!(Config, Warning, ifname, "some packets maybe resent for Tx and dropped for Rx");
    }
}

/// Whether the device's protocol features include `bit`.
pub fn has_protocol_feature(dev: &Device, b: u32) -> bool {
    dev.state.lock().protocol_features & bit(b) != 0
}

/// DPDK's `virtio_is_ready`: the first queue pair (or every ring for a
/// non-net device) ready, and DRIVER_OK when STATUS was negotiated.
pub fn virtio_is_ready(dev: &Device) -> bool {
    let (builtin, status_negotiated, driver_ok) = {
        let st = dev.state.lock();
        if st.ready {
            return true;
        }
        (st.builtin_net, st.protocol_features & bit(pf::STATUS) != 0, st.status & status::DRIVER_OK != 0)
    };
    let nr = dev.nr_vring();
    if nr == 0 {
        return false;
    }
    let needed = if builtin { 2 } else { nr };
    if nr < needed {
        return false;
    }
    if !(0..needed as u16).all(|i| dev.vq(i).is_some_and(|vq| vq.lock().is_ready())) {
        return false;
    }
    !status_negotiated || driver_ok
}
