//! Behind a virtual IOMMU (VIRTIO_F_IOMMU_PLATFORM): the IOTLB the
//! front-end fills with VHOST_USER_IOTLB_MSG, the views rings translate
//! through, and the misses the device asks the front-end for on the
//! back-end request channel.
//!
//! An IOTLB message locks every ring (its request row says so): no burst
//! runs while the table changes, and each ring gets the new view before
//! its lock is released, so an invalidated range is never touched again.

use std::sync::Arc;
use std::time::{Duration, Instant};

use super::handle::{Ctx, Reply};
use super::{Device, DeviceState};
use crate::guest::iotlb::{IotlbEntry, IotlbView};
use crate::guest::GuestMemory;
use crate::protocol::features::{bit, VIRTIO_F_IOMMU_PLATFORM};
use crate::protocol::{backend_request, Iotlb};
use crate::vlog;

/// Misses asked for and not answered, at most (past it all are forgotten).
const MAX_PENDING: usize = 64;
/// A miss not answered after this long is asked again (the front-end
/// ignores misses the guest had not mapped yet).
const MISS_RETRY: Duration = Duration::from_millis(100);

/// The misses asked for and not answered yet, by page and rights.
#[derive(Debug, Default)]
pub(super) struct PendingMisses(Vec<(u64, u8, Instant)>);

impl PendingMisses {
    /// Whether to ask for `page` with `perm` now (not asked recently); if
    /// so it is recorded as asked.
    fn ask(&mut self, page: u64, perm: u8) -> bool {
        let now = Instant::now();
        self.0.retain(|&(_, _, at)| now.duration_since(at) < MISS_RETRY);
        if self.0.iter().any(|&(p, r, _)| p == page && r == perm) {
            return false;
        }
        if self.0.len() >= MAX_PENDING {
            self.0.clear();
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
    /// A burst or a ring translation missed `iova` with rights `perm`: ask
    /// the front-end for it (IOTLB_MSG miss), once until it answers. Never
    /// waits: a busy channel is tried again by the next burst that misses.
    pub fn iotlb_miss(&self, iova: u64, perm: u8) {
        let page = iova & !(PAGE - 1);
        if !self.iotlb_pending.lock().ask(page, perm) {
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
        st.translation()
    };
    let ifname = ctx.ifname.clone();
    ctx.for_each_vq(|vq| {
        if let Err(why) = vq.set_translation(&mem, view.clone()) {
            vlog!(Config, Err, ifname, "failed to translate vring {} addresses: {why}", vq.index);
        }
    });
    Reply::Ok
}
