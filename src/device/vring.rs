//! Ring requests: size, addresses, base, kick/call/err fds, enable.

use super::handle::{Ctx, Reply};
use crate::protocol::features::{self, bit, protocol as pf};
use crate::protocol::{VringAddr, VringFd, VringState};
use crate::virtqueue::{EventFd, VqState, MAX_RING_SIZE};
use crate::vlog;

pub(super) fn set_vring_num(ctx: &mut Ctx<'_>, state: VringState) -> Reply {
    let packed = ctx.dev.features() & bit(features::VIRTIO_F_RING_PACKED) != 0;
    // Stricter than DPDK, which accepts 0: an empty ring cannot work.
    if state.num == 0 || state.num > MAX_RING_SIZE || (!packed && !state.num.is_power_of_two()) {
        vlog!(Config, Err, ctx.ifname, "invalid virtqueue size {}", state.num);
        return Reply::Err;
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
    Reply::Ok
}

pub(super) fn set_vring_addr(ctx: &mut Ctx<'_>, addr: VringAddr) -> Reply {
    let (mem_empty, proto) =
        (ctx.dev.mem().is_empty(), ctx.dev.features() & bit(features::VHOST_USER_F_PROTOCOL_FEATURES) != 0);
    if mem_empty {
        vlog!(Config, Err, ctx.ifname, "no memory table set before the vring addresses");
        return Reply::Err;
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
    Reply::Ok
}

pub(super) fn set_vring_base(ctx: &mut Ctx<'_>, state: VringState) -> Reply {
    let ifname = ctx.ifname.clone();
    let set = ctx.vq(state.index as u16, |vq| {
        // Bits 0-15: the avail position (packed: index and wrap counter);
        // the used side restarts there (nothing is in flight).
        vq.set_base(state.num as u16)?;
        if let Err(why) = vq.retranslate() {
            vlog!(Config, Err, ifname, "vring {} not usable at its new base: {why}", vq.index);
        }
        Ok::<_, &str>((vq.last_used_idx, vq.last_avail_idx))
    });
    let (last_used, last_avail) = match set {
        Some(Ok(p)) => p,
        Some(Err(why)) => {
            vlog!(Config, Err, ifname, "vring {} base {:#x} refused: {why}", state.index, state.num);
            return Reply::Err;
        }
        None => return Reply::Err,
    };
    vlog!(
        Config,
        Info,
        ctx.ifname,
        "vring base idx:{} last_used_idx:{last_used} last_avail_idx:{last_avail}.",
        state.index
    );
    Reply::Ok
}

/// The ring stops (the application was told to stop using the device
/// first: `before`); its position goes back to the front-end.
pub(super) fn get_vring_base(ctx: &mut Ctx<'_>, mut state: VringState) -> Reply {
    ctx.dev.state.lock().vdpa_configured = false;
    let Some(num) = ctx.vq(state.index as u16, |vq| {
        let num = u32::from(vq.base());
        vq.kick = EventFd::Uninitialized;
        vq.call = EventFd::Uninitialized;
        vq.stop();
        vq.addr = None;
        num
    }) else {
        return Reply::Err;
    };
    state.num = num;
    vlog!(Config, Info, ctx.ifname, "vring base idx:{} file:{}", state.index, state.num);
    Reply::Payload(state.to_bytes().to_vec(), Vec::new())
}

fn event_fd(ring: VringFd) -> EventFd {
    match ring.fd {
        Some(fd) => EventFd::Fd(fd),
        None => EventFd::Invalid,
    }
}

pub(super) fn set_vring_kick(ctx: &mut Ctx<'_>, ring: VringFd) -> Reply {
    let idx = ring.index as u16;
    let fd = event_fd(ring);
    vlog!(Config, Info, ctx.ifname, "vring kick idx:{idx} file:{}", fd.raw());
    let proto = ctx.dev.features() & bit(features::VHOST_USER_F_PROTOCOL_FEATURES) != 0;
    let crypto = ctx.dev.is_crypto();
    let ifname = ctx.ifname.clone();
    ctx.vq(idx, |vq| {
        if let Err(why) = vq.start() {
            vlog!(Config, Debug, ifname, "vring {idx} not translated yet: {why}");
        }
        warn_used_idx_resync(&ifname, vq);
        // Without protocol features, a kicked ring is enabled; so is a
        // vhost-crypto ring the front-end never enabled or disabled.
        if !proto || (crypto && !vq.enable_requested) {
            vq.enabled = true;
        }
    });
    ctx.unready(idx);
    ctx.vq(idx, |vq| vq.kick = fd);
    check_inflights(ctx, idx);
    Reply::Ok
}

pub(super) fn set_vring_call(ctx: &mut Ctx<'_>, ring: VringFd) -> Reply {
    let idx = ring.index as u16;
    let fd = event_fd(ring);
    vlog!(Config, Info, ctx.ifname, "vring call idx:{idx} file:{}", fd.raw());
    ctx.unready(idx);
    ctx.vq(idx, |vq| vq.call = fd);
    Reply::Ok
}

pub(super) fn set_vring_err(ctx: &mut Ctx<'_>, ring: VringFd) -> Reply {
    let idx = ring.index as u16;
    let fd = event_fd(ring);
    vlog!(Config, Info, ctx.ifname, "vring err idx:{idx} file:{}", fd.raw());
    ctx.vq(idx, |vq| vq.err = fd);
    Reply::Ok
}

pub(super) fn set_vring_enable(ctx: &mut Ctx<'_>, state: VringState) -> Reply {
    let enable = state.num != 0;
    vlog!(Config, Info, ctx.ifname, "set queue enable: {} to qp idx: {}", u8::from(enable), state.index);
    ctx.vq(state.index as u16, |vq| {
        vq.enabled = enable;
        vq.enable_requested = true;
    });
    Reply::Ok
}

/// At SET_VRING_KICK: stamp a fresh inflight area, or build the resubmit
/// list from an old one (DPDK's `vhost_check_queue_inflights_*`).
fn check_inflights(ctx: &mut Ctx<'_>, idx: u16) {
    if !ctx.dev.has_protocol_feature(pf::INFLIGHT_SHMFD) {
        return;
    }
    ctx.vq(idx, |vq| {
        let Some(q) = vq.inflight.clone() else { return };
        if vq.resubmit.is_some() {
            return;
        }
        let used_idx = vq.ring_mem().filter(|r| !r.is_packed()).map(|r| r.split_used_idx());
        let (resubmit, counter, skip) = q.recover(used_idx);
        vq.inflight_counter = counter;
        vq.last_avail_idx = vq.last_avail_idx.wrapping_add(skip);
        vq.resubmit = resubmit;
        // The position moved: a packed ring checks it again.
        let _ = vq.retranslate();
    });
}

/// DPDK's check when a split ring's addresses are translated.
fn warn_used_idx_resync(ifname: &str, vq: &mut VqState) {
    if let Some((ours, guest)) = vq.sync_used_idx() {
        vlog!(Config, Warning, ifname, "last_used_idx ({ours}) and vq->used->idx ({guest}) mismatches;");
        vlog!(Config, Warning, ifname, "some packets maybe resent for Tx and dropped for Rx");
    }
}
