//! Negotiation requests: features, protocol features, status, MTU, RARP,
//! owner.

use super::context::{Ctx, Reply};
use super::events::Event;
use super::{status, Device};
use crate::protocol::features::{Feature, Features, ProtocolFeatures};
use crate::virtqueue::VqState;
use crate::vlog;

const VIRTIO_MIN_MTU: u64 = 68;
const VIRTIO_MAX_MTU: u64 = 65535;

pub(super) fn set_features(ctx: &mut Ctx<'_>, features: Features) -> Reply {
    if !ctx.offer.features.contains(features) {
        vlog!(Config, Err, ctx.ifname, "received invalid negotiated features.");
        let mut st = ctx.dev.state.lock();
        st.features_failed = true;
        st.status &= !status::FEATURES_OK;
        return Reply::Err;
    }
    let (builtin_net, vdpa) = {
        let mut st = ctx.dev.state.lock();
        if st.running {
            if st.features == features {
                return Reply::Ok;
            }
            // Only VHOST_F_LOG_ALL may change while running (migration start).
            let log_all = Features::of(&[Feature::LOG_ALL]);
            if st.features.without(log_all) != features.without(log_all) {
                vlog!(Config, Err, ctx.ifname, "features changed while device is running.");
                return Reply::Err;
            }
            ctx.events.push(Event::FeaturesChanged(features));
        }
        st.features = features;
        st.features_failed = false;
        (st.builtin_net, st.vdpa.is_some())
    };
    vlog!(Config, Info, ctx.ifname, "negotiated Virtio features: {:#x}", features.bits());
    vlog!(
        Config,
        Debug,
        ctx.ifname,
        "mergeable RX buffers {}, virtio 1 {}",
        if features.has(Feature::NET_MRG_RXBUF) { "on" } else { "off" },
        if features.has(Feature::VERSION_1) { "on" } else { "off" }
    );
    // Without MQ, the built-in net device keeps only its first queue pair.
    if builtin_net && !features.has(Feature::NET_MQ) {
        ctx.truncate_rings(2);
    }
    let ifname = ctx.ifname.clone();
    let (mem, view) = ctx.dev.publish(ctx.dev.state.lock().translation());
    ctx.for_each_vq(|vq| {
        // A translated ring is checked again for the layout now negotiated
        // (and, with VIRTIO_F_IOMMU_PLATFORM, through the IOTLB).
        if let Err(why) = vq.set_features(features.bits(), &mem, view.clone()) {
            vlog!(Config, Err, ifname, "vring {} not usable with the new features: {why}", vq.index());
        }
    });
    if vdpa {
        ctx.events.push(Event::VdpaSetFeatures);
    }
    Reply::Ok
}

pub(super) fn set_protocol_features(ctx: &mut Ctx<'_>, value: ProtocolFeatures) -> Reply {
    if !ctx.offer.protocol_features.contains(value) {
        vlog!(Config, Err, ctx.ifname, "received invalid protocol features.");
        return Reply::Err;
    }
    ctx.dev.state.lock().protocol_features = value;
    vlog!(Config, Info, ctx.ifname, "negotiated Vhost-user protocol features: {:#x}", value.bits());
    Reply::Ok
}

pub(super) fn set_status(ctx: &mut Ctx<'_>, value: u64) -> Reply {
    let Ok(value) = u8::try_from(value) else {
        vlog!(Config, Err, ctx.ifname, "invalid VHOST_USER_SET_STATUS payload {value:#x}");
        return Reply::Err;
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
    Reply::Ok
}

pub(super) fn net_set_mtu(ctx: &mut Ctx<'_>, value: u64) -> Reply {
    if !(VIRTIO_MIN_MTU..=VIRTIO_MAX_MTU).contains(&value) {
        vlog!(Config, Err, ctx.ifname, "invalid MTU size ({value})");
        return Reply::Err;
    }
    ctx.dev.state.lock().mtu = value as u16;
    Reply::Ok
}

pub(super) fn send_rarp(ctx: &mut Ctx<'_>, mac: [u8; 6]) -> Reply {
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
    if ctx.dev.vdpa().is_some() {
        ctx.events.push(Event::VdpaMigrationDone);
    }
    Reply::Ok
}

impl Device {
    /// RESET_OWNER: back to the state of a new connection (memory unmapped,
    /// rings and negotiated features cleared); the application was told to
    /// stop using the device before (`before`).
    pub(super) fn reset_owner(&self) {
        for vq in self.vqs() {
            vq.lock().reset();
        }
        let mut st = self.state.lock();
        st.features = Features::default();
        st.protocol_features = ProtocolFeatures::default();
        st.status = 0;
        st.mem = Default::default();
        st.iotlb = Default::default();
        st.log = None;
        st.features_failed = false;
    }

    /// Drops rings `keep..` (SET_FEATURES without MQ); `held` holds every
    /// ring's lock, in index order.
    pub(super) fn truncate_vrings(
        &self,
        keep: u32,
        held: &mut Vec<crate::virtqueue::access_lock::AccessGuard<'_, VqState>>,
    ) {
        if self.nr_vring() <= keep {
            return;
        }
        for g in held.iter_mut().skip(keep as usize) {
            g.reset();
        }
        held.truncate(keep as usize);
        self.nr_vring.store(keep, std::sync::atomic::Ordering::Release);
    }
}
