//! Ring requests: size, addresses, base, kick/call/err fds, enable. Each is
//! one method of the ring's state (`VqState`), which keeps the ring
//! translated for what it now is; what is left here is the device's part:
//! what to log, what to reply, which events to raise.

use super::context::{Ctx, Reply};
use crate::protocol::features::{Feature, ProtocolFeature};
use crate::protocol::{VringAddr, VringFd, VringState};
use crate::virtqueue::{EventFd, KickEnables, Kicked, RingError};
use crate::vlog;

/// The reply to a ring request that did `done` to ring `idx` (`None`: no
/// such ring): refused, or taken (a ring left untranslated by it is only
/// logged: it stays not ready until the front-end fixes it).
fn reply(ctx: &Ctx<'_>, idx: u32, what: &str, done: Option<Result<(), RingError>>) -> Reply {
    match done {
        Some(Err(e)) if e.refused() => {
            vlog!(Config, Err, ctx.ifname, "vring {idx}: {what} refused: {e}");
            Reply::Err
        }
        Some(Err(e)) => {
            vlog!(Config, Err, ctx.ifname, "vring {idx}: {e} after {what}");
            Reply::Ok
        }
        Some(Ok(())) => Reply::Ok,
        None => Reply::Err,
    }
}

pub(super) fn set_vring_num(ctx: &mut Ctx<'_>, state: VringState) -> Reply {
    let done = ctx.vq(state.index as u16, |vq| vq.set_num(state.num));
    // An unknown ring was never an error for this request.
    reply(ctx, state.index, "SET_VRING_NUM", Some(done.unwrap_or(Ok(()))))
}

pub(super) fn set_vring_addr(ctx: &mut Ctx<'_>, addr: VringAddr) -> Reply {
    if ctx.dev.mem().is_empty() {
        vlog!(Config, Err, ctx.ifname, "no memory table set before the vring addresses");
        return Reply::Err;
    }
    let done = ctx.vq(addr.index as u16, |vq| vq.set_addr(addr).map_err(RingError::from));
    reply(ctx, addr.index, "SET_VRING_ADDR", Some(done.unwrap_or(Ok(()))))
}

/// Bits 0-15: the avail position (packed: index and wrap counter); the
/// used side restarts there (nothing is in flight).
pub(super) fn set_vring_base(ctx: &mut Ctx<'_>, state: VringState) -> Reply {
    let done = ctx.vq(state.index as u16, |vq| (vq.set_base(state.num as u16), vq.positions()));
    if let Some((Ok(()), (avail, used))) = done {
        vlog!(
            Config,
            Info,
            ctx.ifname,
            "vring base idx:{} last_used_idx:{used} last_avail_idx:{avail}.",
            state.index
        );
    }
    reply(ctx, state.index, "SET_VRING_BASE", done.map(|(r, _)| r))
}

/// The ring stops (the application was told to stop using the device
/// first: `before`); its position goes back to the front-end.
pub(super) fn get_vring_base(ctx: &mut Ctx<'_>, mut state: VringState) -> Reply {
    ctx.dev.state.lock().vdpa_configured = false;
    let Some(base) = ctx.vq(state.index as u16, |vq| vq.stop()) else { return Reply::Err };
    state.num = u32::from(base);
    vlog!(Config, Info, ctx.ifname, "vring base idx:{} file:{}", state.index, state.num);
    Reply::Payload(state.to_bytes().to_vec(), Vec::new())
}

fn event_fd(ring: VringFd) -> EventFd {
    match ring.fd {
        Some(fd) => EventFd::Fd(fd),
        None => EventFd::Invalid,
    }
}

/// The ring becomes accessible (and enabled, as `kick_enables` says); an
/// inflight area is stamped or read for what to resubmit.
pub(super) fn set_vring_kick(ctx: &mut Ctx<'_>, ring: VringFd) -> Reply {
    let (idx, fd) = (ring.index as u16, event_fd(ring));
    vlog!(Config, Info, ctx.ifname, "vring kick idx:{idx} file:{}", fd.raw());
    let (enables, recover) =
        (kick_enables(ctx), ctx.dev.has_protocol_feature(ProtocolFeature::INFLIGHT_SHMFD));
    ctx.unready(idx);
    let kicked = ctx.vq(idx, |vq| {
        let kicked = vq.set_kick(fd, enables);
        if recover {
            vq.recover_inflight();
        }
        kicked
    });
    if let Some(kicked) = kicked {
        log_kicked(ctx, idx, kicked);
    }
    Reply::Ok
}

/// Without protocol features a kicked ring is enabled; so is a
/// vhost-crypto ring the front-end never enabled or disabled.
fn kick_enables(ctx: &Ctx<'_>) -> KickEnables {
    if !ctx.dev.has_feature(Feature::PROTOCOL_FEATURES) {
        KickEnables::Always
    } else if ctx.dev.is_crypto() {
        KickEnables::UnlessRequested
    } else {
        KickEnables::No
    }
}

fn log_kicked(ctx: &Ctx<'_>, idx: u16, kicked: Kicked) {
    if let Err(why) = kicked.translated {
        vlog!(Config, Debug, ctx.ifname, "vring {idx} not translated yet: {why}");
    }
    // DPDK's check when a split ring's addresses are translated.
    if let Some((ours, guest)) = kicked.used_idx_resync {
        vlog!(Config, Warning, ctx.ifname, "last_used_idx ({ours}) and vq->used->idx ({guest}) mismatches;");
        vlog!(Config, Warning, ctx.ifname, "some packets maybe resent for Tx and dropped for Rx");
    }
}

pub(super) fn set_vring_call(ctx: &mut Ctx<'_>, ring: VringFd) -> Reply {
    let (idx, fd) = (ring.index as u16, event_fd(ring));
    vlog!(Config, Info, ctx.ifname, "vring call idx:{idx} file:{}", fd.raw());
    ctx.unready(idx);
    ctx.vq(idx, |vq| vq.set_call(fd));
    Reply::Ok
}

pub(super) fn set_vring_err(ctx: &mut Ctx<'_>, ring: VringFd) -> Reply {
    let (idx, fd) = (ring.index as u16, event_fd(ring));
    vlog!(Config, Info, ctx.ifname, "vring err idx:{idx} file:{}", fd.raw());
    ctx.vq(idx, |vq| vq.set_err(fd));
    Reply::Ok
}

pub(super) fn set_vring_enable(ctx: &mut Ctx<'_>, state: VringState) -> Reply {
    let enable = state.num != 0;
    vlog!(Config, Info, ctx.ifname, "set queue enable: {} to qp idx: {}", u8::from(enable), state.index);
    ctx.vq(state.index as u16, |vq| vq.set_enable(enable));
    Reply::Ok
}
