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
//! hundred).

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::handle::{Ctx, Reply};
use super::{Device, DeviceState};
use crate::guest::iotlb::{IotlbEntry, IotlbView};
use crate::guest::GuestMemory;
use crate::protocol::features::{bit, VIRTIO_F_IOMMU_PLATFORM};
use crate::protocol::{backend_request, Iotlb};
use crate::virtqueue::VqState;
use crate::vlog;

/// Buffers asked for ahead of need and not answered, at most: more wait
/// until answers come (QEMU answers in order; asking for a whole ring's
/// buffers at once would put a miss a burst waits for behind all of them).
/// What a burst or a ring misses is asked for at once.
const MAX_AHEAD: usize = 16;
/// A miss not answered after this long is asked again (the front-end
/// ignores misses the guest had not mapped yet).
const MISS_RETRY: Duration = Duration::from_secs(1);

/// The misses asked for and not answered yet, by page and rights.
#[derive(Debug, Default)]
pub(super) struct PendingMisses(Vec<(u64, u8, Instant)>);

impl PendingMisses {
    /// Whether to ask for `page` with `perm` now (not asked recently, and
    /// for a page asked `ahead` of need, room for one more); if so it is
    /// recorded as asked.
    fn ask(&mut self, page: u64, perm: u8, ahead: bool) -> bool {
        let now = Instant::now();
        self.0.retain(|&(_, _, at)| now.duration_since(at) < MISS_RETRY);
        if (ahead && self.0.len() >= MAX_AHEAD) || self.0.iter().any(|&(p, r, _)| p == page && r == perm) {
            return false;
        }
        self.0.push((page, perm, now));
        true
    }

    fn forget(&mut self, page: u64, perm: u8) {
        self.0.retain(|&(p, r, _)| (p, r) != (page, perm));
    }

    /// An update for [iova, iova + size) arrived.
    fn answered(&mut self, iova: u64, size: u64) {
        self.0.retain(|&(p, _, _)| p.wrapping_add(PAGE) <= iova || p >= iova.saturating_add(size));
    }

    pub(super) fn clear(&mut self) {
        self.0.clear();
    }
}

/// Misses are asked for by page.
const PAGE: u64 = 4096;

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
        let iommu = self.features & bit(VIRTIO_F_IOMMU_PLATFORM) != 0;
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
        let Some(have) = vq.iotlb.as_ref().map(|v| v.generation()) else { return };
        if self.iotlb_generation.load(Ordering::Acquire) != have {
            if let Some(view) = self.iotlb_latest.lock().clone() {
                vq.adopt_view(view);
            }
        }
    }

    /// A burst or a ring translation missed `iova` with rights `perm`: ask
    /// the front-end for it (IOTLB_MSG miss), once until it answers. Never
    /// waits: a busy channel is tried again by the next burst that misses.
    pub fn iotlb_miss(&self, iova: u64, perm: u8) {
        self.ask_iotlb(iova, perm, false);
    }

    /// Asks for a posted buffer before a burst needs it (at most
    /// `MAX_AHEAD` of these outstanding).
    pub(super) fn iotlb_ask_ahead(&self, iova: u64, perm: u8) {
        self.ask_iotlb(iova, perm, true);
    }

    fn ask_iotlb(&self, iova: u64, perm: u8, ahead: bool) {
        let page = iova & !(PAGE - 1);
        if !self.iotlb_pending.lock().ask(page, perm, ahead) {
            return;
        }
        let msg = Iotlb { iova, perm, kind: Iotlb::MISS, ..Default::default() };
        let sent = match self.backend() {
            Some(chan) => chan.post(backend_request::IOTLB_MSG, &msg.to_bytes()),
            None => Err(-libc::ENOTCONN),
        };
        match sent {
            Ok(()) => vlog!(Data, Debug, self.ifname(), "IOTLB miss sent for IOVA {iova:#x} (perm {perm})"),
            Err(e) if e == -libc::EAGAIN => self.iotlb_pending.lock().forget(page, perm),
            Err(e) => {
                let ifname = self.ifname();
                vlog!(Config, Err, ifname, "failed to send IOTLB miss message ({e})");
                vlog!(Data, Err, ifname, "IOTLB miss req failed for IOVA {iova:#x}");
            }
        }
    }
}

/// VHOST_USER_IOTLB_MSG: a mapping added or removed; every ring is
/// translated again through the new table.
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
                ctx.dev.iotlb_pending.lock().answered(m.iova, m.size);
            }
            Iotlb::INVALIDATE => st.iotlb.invalidate(m.iova, m.size),
            kind => {
                vlog!(Config, Err, ctx.ifname, "invalid IOTLB message type ({kind})");
                return Reply::Err;
            }
        }
        ctx.dev.publish(st.translation())
    };
    let ifname = ctx.ifname.clone();
    // Not `locks_rings`: each ring is locked only while it takes the view.
    // After an update, a translated ring keeps its areas and adopts the
    // view at its next burst; after an invalidation every ring takes the
    // new view before the front-end is answered.
    let translate = |vq: &mut VqState| {
        if let Err(why) = vq.set_translation(&mem, view.clone()) {
            vlog!(Config, Err, ifname, "failed to translate vring {} addresses: {why}", vq.index);
        }
    };
    if m.kind == Iotlb::INVALIDATE {
        ctx.for_each_vq(translate);
    } else {
        // A ring a burst holds is translated: it adopts the view itself.
        for vq in ctx.dev.vqs() {
            if let Some(mut g) = vq.lock_for_burst().filter(|g| !g.rings_ok()) {
                translate(&mut g);
            }
        }
    }
    Reply::Ok
}
