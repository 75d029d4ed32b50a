//! The device's side of a message, at DPDK's three points around the
//! application's hooks: `admit` (the ring a request names exists before the
//! pre-hook sees it), `handle` (stop first if the row says so, lock what it
//! says, run the handler, return reply and events) and `after_message` (what
//! to start). The handlers, by request family, are in `negotiate`,
//! `memory` and `vring`.

use super::context::{Ctx, Offer, Reply};
use super::events::Event;
use super::{Device, MAX_VRING};
use crate::protocol::{Message, Request};
use crate::virtqueue::VqState;
use crate::vlog;

/// Behind a virtual IOMMU, how many posted buffers of each ring are
/// looked up after every message, and asked for if unmapped.
const PREFETCHED_TRANSLATIONS: u16 = 8;

/// A handled message: its reply and the events to fire after it.
#[derive(Debug)]
pub struct Handled {
    pub reply: Reply,
    pub events: Vec<Event>,
}

/// DPDK allocates the ring a request names before anything else: the
/// index as the raw payload says it (the table's `ring` column). `false`:
/// no such ring can exist (logged); the connection closes.
pub fn admit(dev: &Device, request: Request, payload: &[u8]) -> bool {
    let Some(idx) = request.ring_index(payload) else { return true };
    if idx as usize >= MAX_VRING {
        vlog!(Config, Err, dev.ifname(), "invalid vring index: {idx}");
        return false;
    }
    dev.ensure_vring(idx);
    true
}

/// What must happen before `msg` is handled, with no lock held: the
/// application stops using a device whose ring is being stopped or reset
/// (the row's `stops_device`: DPDK calls `destroy_device` first), a
/// configured vDPA device lets go of the memory table that is about to
/// change.
pub(super) fn before(dev: &Device, msg: &Message) -> Option<Event> {
    match msg {
        _ if msg.request().rule().stops_device => dev.stop(),
        Message::SetMemTable(table, _) if !dev.same_memory(table) => dev.unconfigure_vdpa(),
        _ => None,
    }
}

/// Handles `msg` (from the device's connection, one at a time): what must
/// happen first goes to `fire` (the connection makes those calls at once,
/// with no lock held), then the handler runs.
pub fn handle(dev: &Device, offer: Offer, msg: Message, fire: &mut dyn FnMut(Vec<Event>)) -> Handled {
    fire(before(dev, &msg).into_iter().collect());
    let request = msg.request();
    let ifname = dev.ifname();
    // The ring a message names exists from here on (`admit` made it when
    // the message was read; a hook may have changed the index since).
    if let Some(idx) = msg.ring() {
        if idx as usize >= MAX_VRING {
            vlog!(Config, Err, ifname, "invalid vring index: {idx}");
            return Handled { reply: Reply::Err, events: Vec::new() };
        }
        dev.ensure_vring(idx);
    }
    let held =
        if request.rule().locks_rings && !dev.vdpa_configured() { dev.lock_rings() } else { Vec::new() };
    let mut ctx = Ctx::new(dev, ifname, offer, held);
    let reply = dispatch(&mut ctx, msg);
    // Ring readiness may have changed; a ring that waits for areas the
    // IOTLB lacks asks for them (asked again once the retry period
    // passed), and for its posted buffers (asked once the ring lock is
    // released: the requests are syscalls).
    let (mut areas, mut ahead) = (Vec::new(), Vec::new());
    // IOTLB messages come by the hundred while bursts wait for them: they
    // look at a ring only if a burst does not keep it for more than a few
    // microseconds (one that does has its areas, so its readiness did not
    // change; its posted buffers are asked for after the next message).
    let iotlb = matches!(request, Request::IotlbMsg) && !ctx.holds_rings();
    if !matches!(reply, Reply::Err) {
        for i in 0..dev.nr_vring() as u16 {
            let mut step = |vq: &mut VqState| {
                dev.adopt_newer_view(vq);
                areas.extend(vq.missing_areas());
                ahead.extend(vq.unmapped_buffers(PREFETCHED_TRANSLATIONS));
                vq.readiness_change()
            };
            let changed = if iotlb {
                dev.vq(i).and_then(|vq| vq.lock_for_burst()).and_then(|mut g| step(&mut g))
            } else {
                ctx.vq(i, step).flatten()
            };
            if let Some(enable) = changed {
                ctx.events.push(Event::VringState { queue: i, enable });
            }
        }
    }
    // (Held ring locks, if any, go with the context.)
    let events = std::mem::take(&mut ctx.events);
    drop(ctx);
    dev.ask_after_message(&areas, &ahead);
    Handled { reply, events }
}

fn reply_u64(v: u64) -> Reply {
    Reply::Payload(v.to_ne_bytes().to_vec(), Vec::new())
}

fn dispatch(ctx: &mut Ctx<'_>, msg: Message) -> Reply {
    use Message::*;
    match msg {
        SetFeatures(f) => super::negotiate::set_features(ctx, f),
        SetOwner => Reply::Ok,
        ResetOwner => {
            ctx.dev.reset_owner();
            Reply::Ok
        }
        SetProtocolFeatures(f) => super::negotiate::set_protocol_features(ctx, f),
        SetStatus(v) => super::negotiate::set_status(ctx, v),
        GetStatus => reply_u64(u64::from(ctx.dev.status())),
        NetSetMtu(v) => super::negotiate::net_set_mtu(ctx, v),
        SendRarp(mac) => super::negotiate::send_rarp(ctx, mac),
        SetMemTable(table, fds) => super::memory::set_mem_table(ctx, table, fds),
        SetLogBase(area, fd) => super::memory::set_log_base(ctx, area, fd),
        SetLogFd => Reply::Ok,
        PostcopyAdvise => super::memory::postcopy_advise(ctx),
        PostcopyListen => super::memory::postcopy_listen(ctx),
        PostcopyEnd => super::memory::postcopy_end(ctx),
        GetInflightFd(area) => super::memory::get_inflight_fd(ctx, area),
        SetInflightFd(area, fd) => super::memory::set_inflight_fd(ctx, area, fd),
        SetVringNum(s) => super::vring::set_vring_num(ctx, s),
        SetVringAddr(a) => super::vring::set_vring_addr(ctx, a),
        SetVringBase(s) => super::vring::set_vring_base(ctx, s),
        GetVringBase(s) => super::vring::get_vring_base(ctx, s),
        SetVringKick(f) => super::vring::set_vring_kick(ctx, f),
        SetVringCall(f) => super::vring::set_vring_call(ctx, f),
        SetVringErr(f) => super::vring::set_vring_err(ctx, f),
        SetVringEnable(s) => super::vring::set_vring_enable(ctx, s),
        IotlbMsg(m) => super::iommu::iotlb_msg(ctx, m),
    }
}
