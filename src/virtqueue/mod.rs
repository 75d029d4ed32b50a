//! Virtqueues: the per-ring state shared by the control plane (message
//! handler) and the datapath, and the split/packed ring engines.
//!
//! Concurrency: each ring's state sits behind its own lock. The datapath
//! (`rte_vhost_enqueue_burst` and friends, called on the application's
//! lcores) only ever `try_lock`s it for the duration of one burst and returns
//! 0 packets when the control plane holds it, exactly like DPDK's per-vring
//! `access_lock`. The control plane locks every ring before it changes
//! anything the datapath reads (memory table, ring addresses, features), so
//! the datapath never sees a half-updated ring or an unmapped table: each ring
//! holds its own `Arc` of the memory table, swapped under the lock.

#[allow(unsafe_code)]
pub mod access_lock;
pub mod async_queue;
pub mod chain;
#[allow(unsafe_code)]
pub mod inflight;
#[cfg(any(test, feature = "testing"))]
#[allow(unsafe_code)]
pub mod mock;
pub mod notify;
pub mod packed;
#[allow(unsafe_code)]
pub mod ring;
pub mod split;
pub mod stats;
pub mod used;

use std::os::fd::{AsRawFd, OwnedFd};
use std::sync::Arc;

use access_lock::{AccessGuard, AccessLock};

use crate::guest::dirty_log::DirtyLog;
use crate::guest::iotlb::{IotlbView, RangeFault, PERM_RO, PERM_RW, PERM_WO};
use crate::guest::GuestMemory;
use crate::protocol::features::VIRTIO_F_IOMMU_PLATFORM;
use crate::protocol::VringAddr;
use crate::virtqueue::inflight::{InflightQueue, Resubmit};
use crate::virtqueue::ring::{RingMem, TranslatedRing};
use crate::virtqueue::stats::VringStats;
use chain::BufVec;
use used::UsedBatch;

/// DPDK's MAX_PKT_BURST: packets (so used entries) a burst moves at most.
pub const MAX_BURST: usize = 32;

/// Largest ring size the protocol allows (virtio 1.1: 32768).
pub const MAX_RING_SIZE: u32 = 32768;

/// The kick/call/err eventfd of a ring as the front-end configured it.
#[derive(Debug, Default)]
pub enum EventFd {
    /// Never configured (DPDK's VIRTIO_UNINITIALIZED_EVENTFD, -2).
    #[default]
    Uninitialized,
    /// Configured with the NOFD flag: polling mode (VIRTIO_INVALID_EVENTFD, -1).
    Invalid,
    Fd(OwnedFd),
}

impl EventFd {
    /// The C-visible value: the fd, -1 (NOFD) or -2 (never set).
    pub fn raw(&self) -> i32 {
        match self {
            EventFd::Uninitialized => -2,
            EventFd::Invalid => -1,
            EventFd::Fd(fd) => fd.as_raw_fd(),
        }
    }
    pub fn is_initialized(&self) -> bool {
        !matches!(self, EventFd::Uninitialized)
    }
}

/// Everything about one ring. Guarded by `Virtqueue::state`.
#[derive(Debug, Default)]
pub struct VqState {
    pub index: u16,
    /// Ring size the front-end asked for (SET_VRING_NUM); 0 until set. The
    /// datapath uses the size the ring was translated for
    /// (`TranslatedRing::size`).
    pub num: u16,
    /// Negotiated virtio features, copied in when SET_FEATURES changes them.
    pub features: u64,
    /// The addresses the front-end gave (SET_VRING_ADDR), kept so the ring can
    /// be re-translated when the memory table changes.
    pub addr: Option<VringAddr>,
    /// The ring areas, translated and checked for `num` entries in the
    /// layout `features` give, against `mem`; `None` while not translated.
    /// Only `translate` sets it; anything that changes size, layout,
    /// addresses, positions or memory translates again. Accessed through
    /// `ring_mem` (or, in a burst, `in_table` with the scratch's table).
    pub ring: Option<TranslatedRing>,
    /// The front-end asked for the ring to be accessible (kick, or the
    /// addresses of an enabled ring) and has not stopped it: translation
    /// is redone whenever one of its inputs changes.
    pub live: bool,
    /// Guest-physical address where used-ring writes are logged
    /// (VHOST_VRING_F_LOG), for dirty logging.
    pub log_guest_addr: u64,
    pub last_avail_idx: u16,
    pub last_used_idx: u16,
    pub avail_wrap_counter: bool,
    pub used_wrap_counter: bool,
    pub kick: EventFd,
    pub call: EventFd,
    pub err: EventFd,
    /// SET_VRING_ENABLE state (or all-enabled without protocol features).
    pub enabled: bool,
    /// The front-end has sent SET_VRING_ENABLE for this ring.
    pub enable_requested: bool,
    /// Last readiness reported through `vring_state_changed`.
    pub ready: bool,
    /// The memory table the ring addresses were translated against
    /// (replaced with `set_translation`, which also updates the burst
    /// scratch's).
    pub mem: Arc<GuestMemory>,
    /// Behind a virtual IOMMU (VIRTIO_F_IOMMU_PLATFORM): the IOTLB resolved
    /// against `mem`; ring and buffer addresses are IOVAs.
    pub iotlb: Option<Arc<IotlbView>>,
    /// Behind a virtual IOMMU, what the last translation of the ring areas
    /// lacked, one entry per area (at most four): the device asks for each
    /// area's first unmapped IOVA, and an IOTLB update translates the ring
    /// again only if it overlaps one of these areas.
    pub iotlb_waits: Vec<AreaWait>,
    /// A translated ring lost its areas to an IOTLB invalidation and waits
    /// for the front-end to map them again: still ready for the application
    /// (a guest whose IOMMU flushes everything after each packet would
    /// otherwise have its queues disabled and enabled packet by packet, and
    /// net/vhost drops what it sends in between); bursts move nothing.
    pub iotlb_wait: bool,
    /// This ring's part of the inflight region (SET_INFLIGHT_FD), the
    /// descriptors to resubmit found at reconnect, and the submission counter.
    pub inflight: Option<InflightQueue>,
    pub resubmit: Option<Resubmit>,
    pub inflight_counter: u64,

    // --- datapath state (net/) -------------------------------------------
    /// Used index up to which the guest was last notified (event-idx), and
    /// whether it is meaningful yet.
    pub signalled_used: u16,
    pub signalled_used_valid: bool,
    /// The last `rte_vhost_enable_guest_notification` choice, re-applied when
    /// the ring becomes ready.
    pub notif_enable: Option<bool>,
    pub stats: VringStats,
    /// The application took this ring's last interrupt (`guest_notify`,
    /// DPDK 24.11) and has not raised it yet: later ones are suppressed.
    #[cfg(feature = "abi-24-11")]
    pub irq_pending: bool,
    /// The dirty-page log shared with the front-end (SET_LOG_BASE); used
    /// while VHOST_F_LOG_ALL is negotiated.
    pub log: Option<Arc<DirtyLog>>,
    /// Malformed chains seen (logged for the first few only).
    pub bad_chains: u64,
    /// The datapath's scratch space, allocated on the ring's first burst.
    pub scratch: Option<Box<BurstScratch>>,
    /// The async (DMA) datapath's state, while a channel is registered.
    pub dma: Option<Box<async_queue::AsyncQueue>>,
}

/// A ring area (IOVA range) that the IOTLB does not translate into one
/// contiguous piece of guest memory.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AreaWait {
    pub iova: u64,
    pub len: u64,
    /// The area's first IOVA not mapped with the rights rings need (what
    /// is asked for); `None`: mapped, but scattered.
    pub missing: Option<u64>,
}

/// What a burst works in, kept with the ring between bursts: the gathered
/// segments of the chain(s) being walked, the used entries to publish, and
/// the ring's memory table.
#[derive(Debug)]
pub struct BurstScratch {
    pub bufs: BufVec,
    pub used: UsedBatch,
    /// `VqState::mem`, held here so that a burst borrows it apart from the
    /// ring state it changes. (A clone of the `Arc` per burst costs two
    /// locked instructions, and each waits for the stores before it to
    /// drain, among them the previous burst's to ring lines the guest's core
    /// holds: measured at 3-8 % of the packed bursts' time.)
    pub mem: Arc<GuestMemory>,
    /// `VqState::iotlb`, likewise.
    pub iotlb: Option<Arc<IotlbView>>,
}

impl VqState {
    /// The burst scratch, taken out of the ring for a burst (give it back
    /// in `scratch`), made on the ring's first burst; its memory table is
    /// the ring's.
    pub fn take_scratch(&mut self) -> Box<BurstScratch> {
        match self.scratch.take() {
            Some(mut scratch) => {
                if !Arc::ptr_eq(&scratch.mem, &self.mem) {
                    scratch.mem = Arc::clone(&self.mem);
                }
                scratch
            }
            None => Box::new(BurstScratch {
                bufs: BufVec::default(),
                used: UsedBatch::default(),
                mem: Arc::clone(&self.mem),
                iotlb: self.iotlb.clone(),
            }),
        }
    }

    /// Replaces the memory table and, behind a virtual IOMMU, the IOTLB
    /// view resolved against it (the scratch's too, so that the old table
    /// is unmapped as soon as no ring holds it). A translated ring is
    /// translated again.
    pub fn set_translation(
        &mut self,
        mem: &Arc<GuestMemory>,
        iotlb: Option<Arc<IotlbView>>,
    ) -> Result<(), &'static str> {
        debug_assert!(iotlb.as_ref().is_none_or(|v| v.mem_id() == mem.id()));
        self.mem = Arc::clone(mem);
        self.iotlb = iotlb;
        if let Some(scratch) = &mut self.scratch {
            scratch.mem = Arc::clone(mem);
            scratch.iotlb = self.iotlb.clone();
        }
        self.retranslate()
    }

    /// After a change of what the translation depends on (size, layout,
    /// positions, memory): a translated ring is translated again (and is
    /// left untranslated if it no longer fits); others stay as they are.
    pub fn retranslate(&mut self) -> Result<(), &'static str> {
        if self.live {
            self.translate()
        } else {
            Ok(())
        }
    }

    /// Makes the ring accessible (translates it now and after every change).
    pub fn start(&mut self) -> Result<(), &'static str> {
        self.live = true;
        self.translate()
    }

    /// The front-end stopped the ring (GET_VRING_BASE): no access until it
    /// is started again.
    pub fn stop(&mut self) {
        self.live = false;
        self.ring = None;
        self.iotlb_wait = false;
        self.iotlb_waits.clear();
    }

    /// Whether an IOTLB update of [iova, iova + size) overlaps an area the
    /// ring's translation lacked (only then can translating it again
    /// change anything).
    pub fn waits_for(&self, iova: u64, size: u64) -> bool {
        let end = iova.saturating_add(size);
        self.iotlb_waits.iter().any(|w| w.iova < end && iova < w.iova.saturating_add(w.len))
    }

    /// The packed ring positions (avail: the next descriptor the device
    /// takes; used: the next it marks used).
    #[inline(always)]
    pub fn avail_pos(&self) -> packed::PackedPos {
        packed::PackedPos { idx: self.last_avail_idx, wrap: self.avail_wrap_counter }
    }
    #[inline(always)]
    pub fn set_avail_pos(&mut self, pos: packed::PackedPos) {
        (self.last_avail_idx, self.avail_wrap_counter) = (pos.idx, pos.wrap);
    }
    #[inline(always)]
    pub fn used_pos(&self) -> packed::PackedPos {
        packed::PackedPos { idx: self.last_used_idx, wrap: self.used_wrap_counter }
    }
    #[inline(always)]
    pub fn set_used_pos(&mut self, pos: packed::PackedPos) {
        (self.last_used_idx, self.used_wrap_counter) = (pos.idx, pos.wrap);
    }

    /// The position SET/GET_VRING_BASE carry: the next avail index (split),
    /// or the avail position in its wire form (packed).
    pub fn base(&self) -> u16 {
        if self.is_packed() {
            self.avail_pos().to_wire()
        } else {
            self.last_avail_idx
        }
    }

    /// SET_VRING_BASE: the ring restarts at `base`, with nothing in flight
    /// (used where avail is, as DPDK does). A packed position beyond the
    /// ring is refused (its slot would be read, and handed to monitor loops).
    pub fn set_base(&mut self, base: u16) -> Result<(), &'static str> {
        self.set_positions(base, base)
    }

    /// Both positions in SET/GET_VRING_BASE's form
    /// (`rte_vhost_get_vring_base`).
    pub fn positions(&self) -> (u16, u16) {
        if self.is_packed() {
            (self.avail_pos().to_wire(), self.used_pos().to_wire())
        } else {
            (self.last_avail_idx, self.last_used_idx)
        }
    }

    /// Sets both positions (`rte_vhost_set_vring_base`, SET_VRING_BASE);
    /// the caller translates the ring again (`retranslate`).
    pub fn set_positions(&mut self, avail: u16, used: u16) -> Result<(), &'static str> {
        if self.is_packed() {
            let (a, u) = (packed::PackedPos::from_wire(avail), packed::PackedPos::from_wire(used));
            let size = self.ring.map_or(self.num, |r| r.size());
            if size != 0 && (a.idx >= size || u.idx >= size) {
                return Err("ring position beyond the ring size");
            }
            self.set_avail_pos(a);
            self.set_used_pos(u);
        } else {
            (self.last_avail_idx, self.last_used_idx) = (avail, used);
        }
        Ok(())
    }

    pub fn is_packed(&self) -> bool {
        self.features & (1 << crate::protocol::features::VIRTIO_F_RING_PACKED) != 0
    }

    /// The ring's accessors, borrowing the memory table it lies in.
    pub fn ring_mem(&self) -> Option<RingMem<'_>> {
        Some(self.ring?.in_table(&self.mem))
    }

    /// Whether the ring areas are translated (DPDK's `access_ok`).
    pub fn rings_ok(&self) -> bool {
        self.ring.is_some()
    }

    /// DPDK's `vq_is_ready`: rings mapped (or only waiting for the IOTLB
    /// to map them again), kick and call configured, enabled.
    pub fn is_ready(&self) -> bool {
        (self.rings_ok() || self.iotlb_wait)
            && self.kick.is_initialized()
            && self.call.is_initialized()
            && self.enabled
    }

    /// Translates the front-end's ring addresses for `num` entries in the
    /// negotiated layout against `self.mem` (through the IOTLB behind a
    /// virtual IOMMU). On failure the ring stays untranslated (not ready)
    /// and the reason is returned for the log; an IOTLB miss is no failure:
    /// the ring stays untranslated until the front-end maps what
    /// `iotlb_waits` names.
    #[allow(unsafe_code)]
    fn translate(&mut self) -> Result<(), &'static str> {
        let was_usable = self.ring.is_some() || self.iotlb_wait;
        self.ring = None;
        self.iotlb_wait = false;
        self.iotlb_waits.clear();
        let Some(addr) = self.addr else {
            return Err("ring addresses not set");
        };
        let (size, packed) = (self.num, self.is_packed());
        if size == 0 {
            return Err("ring size not set");
        }
        if !packed && !size.is_power_of_two() {
            return Err("split ring size is not a power of two");
        }
        if packed && (self.last_avail_idx >= size || self.last_used_idx >= size) {
            return Err("ring position beyond the ring size");
        }
        let (desc_len, avail_len, used_len) = TranslatedRing::area_sizes(size, packed);
        let (desc, avail, used) = if self.has_feature(VIRTIO_F_IOMMU_PLATFORM) {
            // Behind a virtual IOMMU the addresses are IOVAs. An area not in
            // the IOTLB yet is asked for, its first missing page only, as
            // 22.11 does (`iotlb_waits`); the ring waits for it,
            // untranslated.
            let view = self.iotlb.clone().unwrap_or_default();
            self.log_guest_addr = 0;
            let logged = addr.flags & crate::protocol::VRING_F_LOG != 0;
            let mut area = |iova: u64, len: u64| match view.lookup_range(iova, len, PERM_RW) {
                Ok(hva) => Some(hva),
                Err(fault) => {
                    let missing = match fault {
                        RangeFault::Miss(at) => Some(at),
                        RangeFault::Scattered => None,
                    };
                    self.iotlb_waits.push(AreaWait { iova, len, missing });
                    None
                }
            };
            let found = (
                area(addr.desc_user_addr, desc_len),
                area(addr.avail_user_addr, avail_len),
                area(addr.used_user_addr, used_len),
                if logged { area(addr.log_guest_addr, used_len) } else { Some(0) },
            );
            if self.iotlb_waits.iter().any(|w| w.missing.is_none()) {
                return Err("ring area not contiguous in guest memory");
            }
            let (Some(desc), Some(avail), Some(used), Some(log)) = found else {
                self.iotlb_wait = was_usable;
                return Ok(());
            };
            // The log address is an IOVA too; the log wants it guest-physical.
            if logged {
                self.log_guest_addr =
                    self.mem.hva_to_gpa(log, used_len).ok_or("failed to map log_guest_addr")?;
            }
            (desc, avail, used)
        } else {
            let mem = &self.mem;
            (
                mem.uaddr_to_hva(addr.desc_user_addr, desc_len)
                    .ok_or("descriptor table outside guest memory")?,
                mem.uaddr_to_hva(addr.avail_user_addr, avail_len).ok_or("avail ring outside guest memory")?,
                mem.uaddr_to_hva(addr.used_user_addr, used_len).ok_or("used ring outside guest memory")?,
            )
        };
        let aligned = if packed {
            desc % 16 == 0 && avail % 4 == 0 && used % 4 == 0
        } else {
            desc % 16 == 0 && avail % 2 == 0 && used % 4 == 0
        };
        if !aligned {
            return Err("misaligned ring address");
        }
        // SAFETY: each area was just found inside one region of `self.mem`
        // (directly, or through the IOTLB view resolved against it) for
        // this size and layout, aligned.
        self.ring = Some(unsafe { TranslatedRing::new(&self.mem, (desc, avail, used), size, packed) });
        Ok(())
    }

    /// Split rings: the used index in guest memory is the truth about what
    /// was completed; if ours differs (a reconnect after a crash), take the
    /// guest's, as DPDK does. Returns the (ours, guest's) pair when it did.
    pub fn sync_used_idx(&mut self) -> Option<(u16, u16)> {
        let guest = self.ring_mem().filter(|r| !r.is_packed())?.split_used_idx();
        if guest == self.last_used_idx {
            return None;
        }
        let ours = self.last_used_idx;
        self.last_used_idx = guest;
        self.last_avail_idx = guest;
        Some((ours, guest))
    }

    pub fn has_feature(&self, bit: u32) -> bool {
        self.features & (1u64 << bit) != 0
    }

    /// Behind a virtual IOMMU: the pages of the first buffers of the next
    /// `max` chains the driver made available that the IOTLB does not map
    /// (IOVA and the rights the device needs: writes for device-writable
    /// buffers), so that they can be asked for before a burst needs them. A guest that
    /// flushes its whole IOTLB after each packet (Linux's intel-iommu does,
    /// through QEMU) would otherwise have every burst miss and drop.
    pub fn unmapped_buffers(&self, max: u16) -> Vec<(u64, u8)> {
        // Pages of one buffer asked for ahead, at most (a packet buffer
        // crosses one page boundary or none; a larger one waits for the
        // burst to miss).
        const MAX_PAGES_AHEAD: usize = 2;
        let (Some(ring), Some(view)) = (self.ring_mem(), self.iotlb.as_deref()) else { return Vec::new() };
        let size = ring.size();
        let descs: Vec<ring::Desc> = if ring.is_packed() {
            let mut pos = self.avail_pos();
            let mut out = Vec::new();
            while out.len() < usize::from(max.min(size)) && packed::is_available(&ring, pos) {
                out.push(ring.read_packed_desc(pos.idx));
                pos.advance(1, size);
            }
            out
        } else {
            let n = split::available(self, &ring).unwrap_or(0).min(max);
            (0..n)
                .map(|k| ring.split_avail_ring(self.last_avail_idx.wrapping_add(k)))
                .filter(|&head| head < size)
                .map(|head| ring.read_split_desc(head))
                .collect()
        };
        let mut missing = Vec::new();
        for d in descs {
            let perm = if d.flags & chain::F_WRITE != 0 { PERM_WO } else { PERM_RO };
            let perm = if d.flags & chain::F_INDIRECT != 0 { PERM_RO } else { perm };
            for at in view.unmapped(d.addr, u64::from(d.len.max(1)), perm, MAX_PAGES_AHEAD) {
                if !missing.contains(&(at, perm)) {
                    missing.push((at, perm));
                }
            }
        }
        missing
    }

    /// Takes `view`, a later view of the same memory made by an IOTLB
    /// update (which only adds mappings, so the ring areas stay as they
    /// were translated): what a burst does when the device has a newer
    /// view than its ring, instead of the update locking every ring.
    #[cold]
    pub fn adopt_view(&mut self, view: Arc<IotlbView>) {
        let newer = self.iotlb.as_ref().is_some_and(|v| v.generation() < view.generation());
        if newer && view.mem_id() == self.mem.id() {
            if let Some(scratch) = &mut self.scratch {
                scratch.iotlb = Some(Arc::clone(&view));
            }
            self.iotlb = Some(view);
        }
    }

    /// The dirty log to write to, while live migration logging is on.
    #[inline]
    pub fn active_log(&self) -> Option<Arc<DirtyLog>> {
        if self.has_feature(crate::protocol::features::VHOST_F_LOG_ALL) {
            self.log.clone()
        } else {
            None
        }
    }

    /// Logs a write of `len` bytes at `offset` in the used area (split) or
    /// descriptor ring (packed), at the guest address the front-end gave for
    /// logging (VHOST_VRING_F_LOG).
    pub fn log_ring_write(&self, log: &DirtyLog, offset: u64, len: u64) {
        let wants = self.addr.is_some_and(|a| a.flags & crate::protocol::VRING_F_LOG != 0);
        if wants && self.log_guest_addr != 0 {
            log.mark(self.log_guest_addr.wrapping_add(offset), len);
        }
    }
}

/// One virtqueue: its state behind the per-ring access lock. Cache-line
/// aligned: a device's rings sit side by side, and two rings may be used
/// from two cores (OVS sends to a port's RX ring from any PMD thread while
/// one polls its TX ring), so no line may hold parts of two rings.
#[derive(Debug, Default)]
#[repr(align(64))]
pub struct Virtqueue {
    state: AccessLock<VqState>,
}

impl Virtqueue {
    pub fn new(index: u16) -> Virtqueue {
        Virtqueue { state: AccessLock::new(VqState { index, ..VqState::default() }) }
    }

    /// Control plane: waits for the datapath to finish its burst.
    pub fn lock(&self) -> AccessGuard<'_, VqState> {
        self.state.lock()
    }

    /// One atomic, no waiting; `None` if someone holds the ring.
    #[inline]
    pub fn try_lock(&self) -> Option<AccessGuard<'_, VqState>> {
        self.state.try_lock()
    }

    /// Datapath: one uncontended atomic; `None` if the control plane keeps
    /// the ring for more than a few microseconds (the burst then moves no
    /// packets).
    #[inline]
    pub fn lock_for_burst(&self) -> Option<AccessGuard<'_, VqState>> {
        self.state.try_lock_briefly()
    }
}

#[cfg(test)]
#[allow(unsafe_code)]
mod tests;

const _: () = assert!(std::mem::size_of::<Virtqueue>().is_multiple_of(64));
