//! Behind a virtual IOMMU (VIRTIO_F_IOMMU_PLATFORM): the IOTLB the
//! front-end fills with VHOST_USER_IOTLB_MSG, the views rings translate
//! through, and the misses the device asks the front-end for on the
//! back-end request channel.
//!
//! An IOTLB message builds the new view first, then gives it to each ring
//! under that ring's lock, one ring at a time: a burst uses the view its
//! ring had when it took the lock, so once the message is answered no
//! burst can touch an invalidated range again. Bursts of other rings go on
//! meanwhile (a guest that maps and unmaps per packet sends these by the
//! hundred). The misses asked for are bounded whatever the guest posts
//! and the front-end answers (`misses`).

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;

use super::context::{Ctx, Reply};
use super::misses::{Asker, PendingMisses, PAGE};
use super::{BackendChannel, ChannelError, Device, DeviceState};
use crate::guest::iotlb::{IotlbEntry, IotlbView, PERM_RW};
use crate::guest::GuestMemory;
use crate::protocol::features::Feature;
use crate::protocol::{backend_request, Iotlb};
use crate::virtqueue::VqState;
use crate::vlog;

/// How a device asks the front-end for IOTLB misses: the asks not
/// answered yet and the back-end channel they go out on, behind a lock of
/// their own (not the device's state lock), which bursts only try.
#[derive(Debug, Default)]
pub(super) struct MissAsker {
    pub(super) pending: PendingMisses,
    pub(super) channel: Option<Arc<dyn BackendChannel>>,
    /// The device's log prefix.
    pub(super) ifname: String,
}

impl MissAsker {
    /// Asks for `iova` with `perm` (IOTLB_MSG miss) unless its page is
    /// pending or `by` is at its bound (`now`: read with the lock held).
    /// Never waits: a busy or full channel is tried again by the next ask.
    fn ask(&mut self, iova: u64, perm: u8, by: Asker, now: Instant) {
        let page = iova & !(PAGE - 1);
        if !self.pending.ask(page, perm, by, now) {
            return;
        }
        let msg = Iotlb { iova, perm, kind: Iotlb::MISS, ..Default::default() };
        let sent = match &self.channel {
            Some(chan) => chan.post(backend_request::IOTLB_MSG, &msg.to_bytes()),
            None => Err(ChannelError::Absent),
        };
        match sent {
            Ok(()) => vlog!(Data, Debug, self.ifname, "IOTLB miss sent for IOVA {iova:#x} (perm {perm})"),
            Err(ChannelError::Busy) => self.pending.forget(page, perm),
            Err(e) => {
                vlog!(Config, Err, self.ifname, "failed to send IOTLB miss message ({e})");
                vlog!(Data, Err, self.ifname, "IOTLB miss req failed for IOVA {iova:#x}");
            }
        }
    }
}

impl DeviceState {
    /// Puts `mem` in use. The IOTLB's translations were resolved against
    /// the old table: it is emptied (the front-end fills it again on
    /// misses), as 22.11 flushes it.
    pub(super) fn replace_memory(
        &mut self,
        mem: &Arc<GuestMemory>,
    ) -> (Arc<GuestMemory>, Option<Arc<IotlbView>>) {
        self.mem = Arc::clone(mem);
        self.iotlb = Default::default();
        self.translation()
    }

    /// What rings translate through: the memory table and, once
    /// VIRTIO_F_IOMMU_PLATFORM is negotiated, the IOTLB resolved against it.
    pub(super) fn translation(&self) -> (Arc<GuestMemory>, Option<Arc<IotlbView>>) {
        let iommu = self.features.has(Feature::IOMMU_PLATFORM);
        (Arc::clone(&self.mem), iommu.then(|| Arc::new(self.iotlb.view(&self.mem))))
    }
}

impl Device {
    /// Records `translation`'s IOTLB view as the newest (what bursts adopt);
    /// returns it.
    pub(super) fn publish(
        &self,
        translation: (Arc<GuestMemory>, Option<Arc<IotlbView>>),
    ) -> (Arc<GuestMemory>, Option<Arc<IotlbView>>) {
        let mut latest = self.iotlb_latest.lock();
        *latest = translation.1.clone();
        self.iotlb_generation.store(latest.as_ref().map_or(0, |v| v.generation()), Ordering::Release);
        translation
    }

    /// Behind a virtual IOMMU: gives `vq` the device's newest IOTLB view if
    /// its own is older (IOTLB updates leave translated rings to adopt it
    /// at their next burst); one atomic load when nothing changed.
    #[inline(always)]
    pub fn adopt_newer_view(&self, vq: &mut VqState) {
        let Some(have) = vq.iotlb().map(|v| v.generation()) else { return };
        if self.iotlb_generation.load(Ordering::Acquire) != have {
            if let Some(view) = self.iotlb_latest.lock().clone() {
                vq.adopt_view(view);
            }
        }
    }

    /// A burst on ring `ring` missed `iova` with rights `perm`: ask the
    /// front-end for it, once until it answers, within the ring's bound
    /// (`misses::MAX_PER_RING`). Never waits: while the control plane
    /// holds the asks, a later burst asks.
    pub fn iotlb_miss(&self, ring: u16, iova: u64, perm: u8) {
        if let Some(mut asker) = self.iotlb_asks.try_lock() {
            asker.ask(iova, perm, Asker::Burst(ring), Instant::now());
        }
    }

    /// A burst found its ring waiting for areas the IOTLB lacks: asks for
    /// them (nothing goes out for a page asked less than a retry period
    /// ago), so that the ring does not depend on the next message to ask
    /// again. Never waits, as `iotlb_miss`.
    #[cold]
    pub fn iotlb_ring_waits(&self, vq: &VqState) {
        if !vq.waits_for_areas() {
            return;
        }
        if let Some(mut asker) = self.iotlb_asks.try_lock() {
            let now = Instant::now();
            for iova in vq.missing_areas() {
                asker.ask(iova, PERM_RW, Asker::RingArea, now);
            }
        }
    }

    /// After a message: asks for the first missing IOVA of each ring area
    /// that rings wait for, then for posted buffers ahead of need
    /// (IOVA and rights).
    pub(super) fn ask_after_message(&self, areas: &[u64], ahead: &[(u64, u8)]) {
        if areas.is_empty() && ahead.is_empty() {
            return;
        }
        let mut asker = self.iotlb_asks.lock();
        let now = Instant::now();
        for &iova in areas {
            asker.ask(iova, PERM_RW, Asker::RingArea, now);
        }
        for &(iova, perm) in ahead {
            asker.ask(iova, perm, Asker::Ahead, now);
        }
    }

    /// SET_SLAVE_REQ_FD: misses go out on `channel` from now on; those
    /// asked on an earlier one are asked again.
    pub(super) fn set_miss_channel(&self, channel: Arc<dyn BackendChannel>) {
        let mut asker = self.iotlb_asks.lock();
        asker.channel = Some(channel);
        asker.pending.clear();
    }

    /// IOTLB misses asked and not answered (for the tests' bounds).
    #[cfg(feature = "testing")]
    pub fn iotlb_pending(&self) -> usize {
        self.iotlb_asks.lock().pending.len()
    }
}

/// VHOST_USER_IOTLB_MSG: a mapping added or removed. After an
/// invalidation every ring is translated again through the new table;
/// after an update, the rings waiting for an area it overlaps.
pub(super) fn iotlb_msg(ctx: &mut Ctx<'_>, m: Iotlb) -> Reply {
    vlog!(
        Config,
        Debug,
        ctx.ifname,
        "IOTLB message type {}: IOVA {:#x} size {:#x} address {:#x} perm {}",
        m.kind,
        m.iova,
        m.size,
        m.uaddr,
        m.perm
    );
    let (mem, view) = {
        let mut st = ctx.dev.state.lock();
        match m.kind {
            Iotlb::UPDATE => {
                // As 22.11: the front-end address must be guest memory.
                if st.mem.uaddr_to_hva_prefix(m.uaddr, m.size.max(1)).is_none() {
                    vlog!(
                        Config,
                        Err,
                        ctx.ifname,
                        "IOTLB update for IOVA {:#x}: address {:#x} is not guest memory",
                        m.iova,
                        m.uaddr
                    );
                    return Reply::Err;
                }
                if !st.iotlb.update(IotlbEntry { iova: m.iova, size: m.size, uaddr: m.uaddr, perm: m.perm }) {
                    vlog!(
                        Config,
                        Err,
                        ctx.ifname,
                        "invalid IOTLB update: IOVA {:#x} size {:#x}",
                        m.iova,
                        m.size
                    );
                    return Reply::Err;
                }
            }
            Iotlb::INVALIDATE => st.iotlb.invalidate(m.iova, m.size),
            kind => {
                vlog!(Config, Err, ctx.ifname, "invalid IOTLB message type ({kind})");
                return Reply::Err;
            }
        }
        let published = ctx.dev.publish(st.translation());
        // Answered only once published: a burst that misses before it
        // adopts the new view must not ask again.
        if m.kind == Iotlb::UPDATE {
            ctx.dev.iotlb_asks.lock().pending.answered(m.iova, m.size);
        }
        published
    };
    let ifname = ctx.ifname.clone();
    // Not `locks_rings`: each ring is locked only while it takes the view.
    // After an update, a translated ring keeps its areas and adopts the
    // view at its next burst; after an invalidation every ring takes the
    // new view before the front-end is answered.
    let translate = |vq: &mut VqState| {
        if let Err(why) = vq.set_translation(&mem, view.clone()) {
            vlog!(Config, Err, ifname, "failed to translate vring {} addresses: {why}", vq.index());
        }
    };
    if m.kind == Iotlb::INVALIDATE {
        ctx.for_each_vq(translate);
    } else {
        // Only a ring waiting for an area this update overlaps can be
        // translated now; translated rings adopt the view at their next
        // burst (a guest that maps page by page sends these by the
        // thousand, while many rings may wait).
        // (A ring is never skipped: one waiting for this answer would wait
        // for the next message that asks again.)
        for vq in ctx.dev.vqs() {
            let mut g = vq.lock_for_burst().unwrap_or_else(|| vq.lock());
            if g.waits_for(m.iova, m.size) {
                translate(&mut g);
            }
        }
    }
    Reply::Ok
}
