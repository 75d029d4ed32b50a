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
pub mod avail;
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
use crate::guest::window::{RingArea, WindowRefusal};
use crate::guest::GuestMemory;
use crate::protocol::features::VIRTIO_F_IOMMU_PLATFORM;
use crate::protocol::VringAddr;
use crate::virtqueue::inflight::{InflightError, InflightQueue, Resubmit};
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

/// Everything about one ring. Guarded by `Virtqueue::state`. No field is
/// reachable from outside `virtqueue`: the protocol's requests are methods
/// that keep the ring translated for exactly the size, layout, positions,
/// addresses and memory it has (`ring`), whatever order they come in.
#[derive(Debug, Default)]
pub struct VqState {
    index: u16,
    /// Ring size the front-end asked for (SET_VRING_NUM); 0 until set. The
    /// datapath uses the size the ring was translated for
    /// (`TranslatedRing::size`).
    num: u16,
    /// Negotiated virtio features, copied in when SET_FEATURES changes them.
    features: u64,
    /// The addresses the front-end gave (SET_VRING_ADDR), kept so the ring can
    /// be re-translated when the memory table changes.
    addr: Option<VringAddr>,
    /// The ring areas, translated and checked for `num` entries in the
    /// layout `features` give, against `mem`; `None` while not translated.
    /// Only `translate` sets it; every method that changes size, layout,
    /// addresses, positions or memory translates again.
    ring: Option<TranslatedRing>,
    /// The front-end asked for the ring to be accessible (kick, or the
    /// addresses of an enabled ring) and has not stopped it: translation
    /// is redone whenever one of its inputs changes.
    live: bool,
    /// Guest-physical address where used-ring writes are logged
    /// (VHOST_VRING_F_LOG), for dirty logging.
    log_guest_addr: u64,
    last_avail_idx: u16,
    last_used_idx: u16,
    avail_wrap_counter: bool,
    used_wrap_counter: bool,
    kick: EventFd,
    call: EventFd,
    err: EventFd,
    /// SET_VRING_ENABLE state (or all-enabled without protocol features).
    enabled: bool,
    /// The front-end has sent SET_VRING_ENABLE for this ring.
    enable_requested: bool,
    /// Last readiness reported through `vring_state_changed`.
    ready: bool,
    /// The memory table the ring addresses were translated against
    /// (replaced with `set_translation`, which also updates the burst
    /// scratch's).
    mem: Arc<GuestMemory>,
    /// Behind a virtual IOMMU (VIRTIO_F_IOMMU_PLATFORM): the IOTLB resolved
    /// against `mem`; ring and buffer addresses are IOVAs.
    iotlb: Option<Arc<IotlbView>>,
    /// Behind a virtual IOMMU, what the last translation of the ring areas
    /// lacked, one entry per area (at most four): the device asks for each
    /// area's first unmapped IOVA, and an IOTLB update translates the ring
    /// again only if it overlaps one of these areas.
    iotlb_waits: Vec<AreaWait>,
    /// A translated ring lost its areas to an IOTLB invalidation and waits
    /// for the front-end to map them again: still ready for the application
    /// (a guest whose IOMMU flushes everything after each packet would
    /// otherwise have its queues disabled and enabled packet by packet, and
    /// net/vhost drops what it sends in between); bursts move nothing.
    iotlb_wait: bool,
    /// This ring's part of the inflight region (SET_INFLIGHT_FD), the
    /// descriptors to resubmit found at reconnect, and the submission counter.
    inflight: Option<InflightQueue>,
    resubmit: Option<Resubmit>,
    inflight_counter: u64,
    /// The dirty-page log shared with the front-end (SET_LOG_BASE); used
    /// while VHOST_F_LOG_ALL is negotiated.
    log: Option<Arc<DirtyLog>>,
    /// What only the datapath changes.
    dp: Datapath,
}

/// The datapath's own state of a ring (`VqState::datapath_mut`): nothing
/// the protocol's requests decide.
#[derive(Debug, Default)]
pub struct Datapath {
    /// Used index up to which the guest was last notified (event-idx), and
    /// whether it is meaningful yet.
    signalled_used: u16,
    signalled_used_valid: bool,
    /// The last `rte_vhost_enable_guest_notification` choice.
    pub notif_enable: Option<bool>,
    pub stats: VringStats,
    /// The application took this ring's last interrupt (`guest_notify`,
    /// DPDK 24.11) and has not raised it yet: later ones are suppressed.
    #[cfg(feature = "abi-24-11")]
    pub irq_pending: bool,
    /// Malformed chains and dropped packets seen (logged for the first few
    /// only).
    pub bad_chains: u64,
    /// The burst scratch space, allocated on the ring's first burst (taken
    /// and given back with `VqState::take_scratch`/`return_scratch`).
    scratch: Option<Box<BurstScratch>>,
    /// The async (DMA) datapath's state, while a channel is registered.
    pub dma: Option<Box<async_queue::AsyncQueue>>,
}

/// Why a ring could not be translated (it stays untranslated, not ready,
/// until a request changes what it depends on).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TranslateError {
    AddressesNotSet,
    SizeNotSet,
    SplitSizeNotPowerOfTwo,
    PositionBeyondSize,
    /// A ring area on scattered guest pages that gets no window.
    AreaScattered(WindowRefusal),
    /// The used area's log address on scattered guest pages.
    LogAreaScattered,
    LogAddressUnmapped,
    DescOutsideMemory,
    AvailOutsideMemory,
    UsedOutsideMemory,
    Misaligned,
}

impl std::fmt::Display for TranslateError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            TranslateError::AddressesNotSet => "ring addresses not set",
            TranslateError::SizeNotSet => "ring size not set",
            TranslateError::SplitSizeNotPowerOfTwo => "split ring size is not a power of two",
            TranslateError::PositionBeyondSize => "ring position beyond the ring size",
            TranslateError::AreaScattered(why) => {
                return write!(f, "ring area on scattered guest pages, not mapped side by side: {why}")
            }
            TranslateError::LogAreaScattered => "ring log area on scattered guest pages",
            TranslateError::LogAddressUnmapped => "failed to map log_guest_addr",
            TranslateError::DescOutsideMemory => "descriptor table outside guest memory",
            TranslateError::AvailOutsideMemory => "avail ring outside guest memory",
            TranslateError::UsedOutsideMemory => "used ring outside guest memory",
            TranslateError::Misaligned => "misaligned ring address",
        })
    }
}

impl std::error::Error for TranslateError {}

/// What a ring request did wrong: refused (the ring is as it was), or
/// accepted but left the ring untranslated.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RingError {
    /// SET_VRING_NUM: zero, beyond `MAX_RING_SIZE`, or not a power of two
    /// for a split ring.
    InvalidSize(u32),
    /// A packed position beyond the ring (its slot would be read).
    PositionBeyondSize,
    /// Accepted; the ring is not usable until changed again.
    Untranslated(TranslateError),
}

impl RingError {
    /// Whether the request was refused (rather than taken).
    pub fn refused(&self) -> bool {
        !matches!(self, RingError::Untranslated(_))
    }
}

impl From<TranslateError> for RingError {
    fn from(e: TranslateError) -> RingError {
        RingError::Untranslated(e)
    }
}

impl std::fmt::Display for RingError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RingError::InvalidSize(n) => write!(f, "invalid virtqueue size {n}"),
            RingError::PositionBeyondSize => f.write_str("ring position beyond the ring size"),
            RingError::Untranslated(e) => write!(f, "ring not usable: {e}"),
        }
    }
}

impl std::error::Error for RingError {}

/// Which rings SET_VRING_KICK enables.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KickEnables {
    /// Only SET_VRING_ENABLE enables rings.
    No,
    /// Every kicked ring (no protocol features).
    Always,
    /// A ring the front-end never enabled or disabled (vhost-crypto).
    UnlessRequested,
}

/// What SET_VRING_KICK found: whether the ring translated, and for a split
/// ring whose used index differed from the guest's (a reconnect after a
/// crash), the (ours, guest's) pair before it took the guest's.
#[derive(Debug)]
pub struct Kicked {
    pub translated: Result<(), TranslateError>,
    pub used_idx_resync: Option<(u16, u16)>,
}

/// A ring area (IOVA range) that the IOTLB does not translate into one
/// contiguous piece of guest memory.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AreaWait {
    pub iova: u64,
    pub len: u64,
    /// The area's first IOVA not mapped with the rights rings need (what
    /// is asked for).
    pub missing: u64,
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
    /// A ring that exists but was never configured.
    pub fn new(index: u16) -> VqState {
        VqState { index, ..VqState::default() }
    }

    /// Back to a new ring (RESET_OWNER, a ring dropped, a recycled device).
    pub fn reset(&mut self) {
        *self = VqState::new(self.index);
    }

    // --- the protocol's requests ------------------------------------------

    /// SET_VRING_NUM. Stricter than DPDK, which accepts 0 (an empty ring
    /// cannot work) and checks a translated ring again for its new size (a
    /// ring grown in place may no longer fit its memory).
    pub fn set_num(&mut self, num: u32) -> Result<(), RingError> {
        if num == 0 || num > MAX_RING_SIZE || (!self.is_packed() && !num.is_power_of_two()) {
            return Err(RingError::InvalidSize(num));
        }
        self.num = num as u16;
        Ok(self.retranslate()?)
    }

    /// SET_VRING_ADDR: an enabled ring (with protocol features) is
    /// translated now, as DPDK does; any other is translated at its kick.
    pub fn set_addr(&mut self, addr: VringAddr) -> Result<(), TranslateError> {
        self.addr = Some(addr);
        self.log_guest_addr = addr.log_guest_addr;
        if self.enabled && self.has_feature(crate::protocol::features::VHOST_USER_F_PROTOCOL_FEATURES) {
            self.start()
        } else {
            self.retranslate()
        }
    }

    /// SET_VRING_BASE: the ring restarts at `base`, with nothing in flight
    /// (used where avail is, as DPDK does). A packed position beyond the
    /// ring is refused (its slot would be read, and handed to monitor loops).
    pub fn set_base(&mut self, base: u16) -> Result<(), RingError> {
        self.set_positions(base, base)
    }

    /// Sets both positions in SET/GET_VRING_BASE's form
    /// (`rte_vhost_set_vring_base`) and translates the ring again.
    pub fn set_positions(&mut self, avail: u16, used: u16) -> Result<(), RingError> {
        if self.is_packed() {
            let (a, u) = (packed::PackedPos::from_wire(avail), packed::PackedPos::from_wire(used));
            let size = self.ring.map_or(self.num, |r| r.size());
            if size != 0 && (a.idx >= size || u.idx >= size) {
                return Err(RingError::PositionBeyondSize);
            }
            self.set_avail_pos(a);
            self.set_used_pos(u);
        } else {
            (self.last_avail_idx, self.last_used_idx) = (avail, used);
        }
        Ok(self.retranslate()?)
    }

    /// SET_VRING_KICK: the ring is accessible from now on (translated now
    /// and after every change); a split ring takes the guest's used index
    /// if ours differs.
    pub fn set_kick(&mut self, fd: EventFd, enables: KickEnables) -> Kicked {
        let translated = self.start();
        let used_idx_resync = self.sync_used_idx();
        match enables {
            KickEnables::Always => self.enabled = true,
            KickEnables::UnlessRequested if !self.enable_requested => self.enabled = true,
            _ => {}
        }
        self.kick = fd;
        Kicked { translated, used_idx_resync }
    }

    /// SET_VRING_CALL.
    pub fn set_call(&mut self, fd: EventFd) {
        self.call = fd;
    }

    /// SET_VRING_ERR.
    pub fn set_err(&mut self, fd: EventFd) {
        self.err = fd;
    }

    /// SET_VRING_ENABLE.
    pub fn set_enable(&mut self, enable: bool) {
        self.enabled = enable;
        self.enable_requested = true;
    }

    /// GET_VRING_BASE: the front-end stops the ring (no access until it is
    /// configured and kicked again); returns its position.
    pub fn stop(&mut self) -> u16 {
        let base = self.base();
        self.kick = EventFd::Uninitialized;
        self.call = EventFd::Uninitialized;
        self.live = false;
        self.ring = None;
        self.iotlb_wait = false;
        self.iotlb_waits.clear();
        self.addr = None;
        base
    }

    /// SET_FEATURES (or a ring created after it): the layout and, with
    /// VIRTIO_F_IOMMU_PLATFORM, the translation through the IOTLB change
    /// together.
    pub fn set_features(
        &mut self,
        features: u64,
        mem: &Arc<GuestMemory>,
        iotlb: Option<Arc<IotlbView>>,
    ) -> Result<(), TranslateError> {
        self.features = features;
        self.set_translation(mem, iotlb)
    }

    /// SET_LOG_BASE: the dirty log bursts write to while VHOST_F_LOG_ALL
    /// is negotiated.
    pub fn set_log(&mut self, log: Option<Arc<DirtyLog>>) {
        self.log = log;
    }

    /// SET_INFLIGHT_FD: this ring's part of the new inflight region; what
    /// was to be resubmitted from the old one is forgotten.
    pub fn set_inflight(&mut self, inflight: Option<InflightQueue>) {
        self.inflight = inflight;
        self.resubmit = None;
    }

    /// At SET_VRING_KICK with INFLIGHT_SHMFD: stamp a fresh inflight area,
    /// or build the resubmit list from an old one (DPDK's
    /// `vhost_check_queue_inflights_*`); the avail position moves past
    /// what was completed.
    pub fn recover_inflight(&mut self) {
        let Some(q) = self.inflight.clone() else { return };
        if self.resubmit.is_some() {
            return;
        }
        let used_idx = self.ring_mem().filter(|r| !r.is_packed()).map(|r| r.split_used_idx());
        let (resubmit, counter, skip) = q.recover(used_idx);
        self.inflight_counter = counter;
        self.last_avail_idx = self.last_avail_idx.wrapping_add(skip);
        self.resubmit = resubmit;
        // The position moved: a packed ring is checked again (and left
        // untranslated if it no longer fits).
        let _ = self.retranslate();
    }

    // --- inflight tracking (`rte_vhost_*inflight*`) -------------------------

    /// This ring's inflight area, if it has one and is in the layout
    /// (`packed` or split) the call is for.
    fn inflight_area(&self, packed: bool) -> Result<&InflightQueue, InflightError> {
        if self.is_packed() != packed {
            return Err(InflightError::WrongLayout);
        }
        self.inflight.as_ref().ok_or(InflightError::NoArea)
    }

    /// Checks `idx` against the ring size and the layout; the area on success.
    fn inflight_entry(&self, packed: bool, idx: u16) -> Result<&InflightQueue, InflightError> {
        let q = self.inflight_area(packed)?;
        if idx >= self.num {
            return Err(InflightError::OutOfRange);
        }
        Ok(q)
    }

    /// The counter stamped on the next submitted descriptor.
    fn next_inflight_counter(&mut self) -> u64 {
        let counter = self.inflight_counter;
        self.inflight_counter += 1;
        counter
    }

    /// `rte_vhost_set_inflight_desc_split`: split descriptor `idx` is in flight.
    pub fn inflight_submit_split(&mut self, idx: u16) -> Result<(), InflightError> {
        self.inflight_entry(false, idx)?;
        let counter = self.next_inflight_counter();
        self.inflight_entry(false, idx)?.set_split(idx, counter)
    }

    /// `rte_vhost_set_inflight_desc_packed`: the packed chain `head..=last`
    /// is in flight; returns the inflight entry that heads it.
    pub fn inflight_submit_packed(&mut self, head: u16, last: u16) -> Result<u16, InflightError> {
        self.inflight_area(true)?;
        let counter = self.next_inflight_counter();
        let ring = self.ring_mem().ok_or(InflightError::OutOfRange)?;
        self.inflight_area(true)?.set_packed(&ring, head, last, counter)
    }

    /// `rte_vhost_clr_inflight_desc_split`.
    pub fn inflight_complete_split(&self, last_used_idx: u16, idx: u16) -> Result<(), InflightError> {
        self.inflight_entry(false, idx)?.clear_split(last_used_idx, idx)
    }

    /// `rte_vhost_clr_inflight_desc_packed`.
    pub fn inflight_complete_packed(&self, head: u16) -> Result<(), InflightError> {
        self.inflight_entry(true, head)?.clear_packed(head)
    }

    /// `rte_vhost_set_last_inflight_io_split`.
    pub fn inflight_set_last_split(&self, idx: u16) -> Result<(), InflightError> {
        self.inflight_entry(false, idx)?.set_last_split(idx)
    }

    /// `rte_vhost_set_last_inflight_io_packed`.
    pub fn inflight_set_last_packed(&self, head: u16) -> Result<(), InflightError> {
        self.inflight_entry(true, head)?.set_last_packed(head)
    }

    /// The inflight area (SET_INFLIGHT_FD), if any.
    pub fn inflight(&self) -> Option<&InflightQueue> {
        self.inflight.as_ref()
    }

    /// The descriptors to resubmit found at reconnect, if any.
    pub fn resubmit_mut(&mut self) -> Option<&mut Resubmit> {
        self.resubmit.as_mut()
    }

    /// Replaces the memory table and, behind a virtual IOMMU, the IOTLB
    /// view resolved against it (the scratch's too, so that the old table
    /// is unmapped as soon as no ring holds it). A translated ring is
    /// translated again.
    pub fn set_translation(
        &mut self,
        mem: &Arc<GuestMemory>,
        iotlb: Option<Arc<IotlbView>>,
    ) -> Result<(), TranslateError> {
        debug_assert!(iotlb.as_ref().is_none_or(|v| v.mem_id() == mem.id()));
        self.mem = Arc::clone(mem);
        self.iotlb = iotlb;
        if let Some(scratch) = &mut self.dp.scratch {
            scratch.mem = Arc::clone(mem);
            scratch.iotlb = self.iotlb.clone();
        }
        self.retranslate()
    }

    /// After a change of what the translation depends on (size, layout,
    /// positions, memory): a translated ring is translated again (and is
    /// left untranslated if it no longer fits); others stay as they are.
    fn retranslate(&mut self) -> Result<(), TranslateError> {
        if self.live {
            self.translate()
        } else {
            Ok(())
        }
    }

    /// Makes the ring accessible (translates it now and after every change).
    fn start(&mut self) -> Result<(), TranslateError> {
        self.live = true;
        self.translate()
    }

    /// The readiness to report, if it changed since last reported (the
    /// report is then taken as made).
    pub fn readiness_change(&mut self) -> Option<bool> {
        let now = self.is_ready();
        (now != self.ready).then(|| {
            self.ready = now;
            now
        })
    }

    /// A ready ring loses readiness before its kick/call fd changes;
    /// whether it was ready (and so must be reported not ready).
    pub fn unready(&mut self) -> bool {
        std::mem::replace(&mut self.ready, false)
    }

    // --- what the ring is --------------------------------------------------

    pub fn index(&self) -> u16 {
        self.index
    }

    /// The size SET_VRING_NUM gave (0 until set).
    pub fn num(&self) -> u16 {
        self.num
    }

    #[inline(always)]
    pub fn features(&self) -> u64 {
        self.features
    }

    #[inline(always)]
    pub fn enabled(&self) -> bool {
        self.enabled
    }

    /// The translated ring areas, `None` while not translated.
    #[inline(always)]
    pub fn ring(&self) -> Option<TranslatedRing> {
        self.ring
    }

    /// The memory table the ring was translated against.
    #[inline(always)]
    pub fn mem(&self) -> &Arc<GuestMemory> {
        &self.mem
    }

    /// Behind a virtual IOMMU, the IOTLB the ring was translated through.
    #[inline(always)]
    pub fn iotlb(&self) -> Option<&IotlbView> {
        self.iotlb.as_deref()
    }

    /// The first unmapped IOVA of each ring area the IOTLB lacked at the
    /// last translation (asked for from the front-end).
    pub fn missing_areas(&self) -> impl Iterator<Item = u64> + '_ {
        self.iotlb_waits.iter().map(|w| w.missing)
    }

    /// Whether the last translation lacked any ring area in the IOTLB.
    pub fn waits_for_areas(&self) -> bool {
        !self.iotlb_waits.is_empty()
    }

    pub fn kick(&self) -> &EventFd {
        &self.kick
    }

    pub fn call(&self) -> &EventFd {
        &self.call
    }

    /// The guest-physical address used-ring writes are logged at.
    pub fn log_guest_addr(&self) -> u64 {
        self.log_guest_addr
    }

    /// `rte_vhost_avail_entries`: entries the guest made available on an
    /// enabled split ring that the back-end has not taken yet.
    pub fn avail_entries(&self) -> u16 {
        match self.ring_mem() {
            Some(ring) if self.enabled && !ring.is_packed() => {
                ring.split_avail_idx().wrapping_sub(self.last_avail_idx).min(ring.size())
            }
            _ => 0,
        }
    }

    /// The datapath's own state.
    #[inline(always)]
    pub fn datapath(&self) -> &Datapath {
        &self.dp
    }

    #[inline(always)]
    pub fn datapath_mut(&mut self) -> &mut Datapath {
        &mut self.dp
    }

    /// The burst scratch, taken out of the ring for a burst (give it back
    /// with `return_scratch`), made on the ring's first burst; its memory
    /// table is the ring's.
    pub fn take_scratch(&mut self) -> Box<BurstScratch> {
        match self.dp.scratch.take() {
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

    #[inline(always)]
    pub fn return_scratch(&mut self, scratch: Box<BurstScratch>) {
        self.dp.scratch = Some(scratch);
    }

    /// Whether an IOTLB update of [iova, iova + size) overlaps an area the
    /// ring's translation lacked (only then can translating it again
    /// change anything).
    pub fn waits_for(&self, iova: u64, size: u64) -> bool {
        let end = iova.saturating_add(size);
        self.iotlb_waits.iter().any(|w| w.iova < end && iova < w.iova.saturating_add(w.len))
    }

    /// The packed ring positions (avail: the next descriptor the device
    /// takes, moved only by the engines, `avail::Avail`; used: the next it
    /// marks used).
    #[inline(always)]
    fn avail_pos(&self) -> packed::PackedPos {
        packed::PackedPos { idx: self.last_avail_idx, wrap: self.avail_wrap_counter }
    }
    #[inline(always)]
    fn set_avail_pos(&mut self, pos: packed::PackedPos) {
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

    /// Both positions in SET/GET_VRING_BASE's form
    /// (`rte_vhost_get_vring_base`).
    pub fn positions(&self) -> (u16, u16) {
        if self.is_packed() {
            (self.avail_pos().to_wire(), self.used_pos().to_wire())
        } else {
            (self.last_avail_idx, self.last_used_idx)
        }
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
    fn translate(&mut self) -> Result<(), TranslateError> {
        let was_usable = self.ring.is_some() || self.iotlb_wait;
        self.ring = None;
        self.iotlb_wait = false;
        self.iotlb_waits.clear();
        let Some(addr) = self.addr else {
            return Err(TranslateError::AddressesNotSet);
        };
        let (size, packed) = (self.num, self.is_packed());
        if size == 0 {
            return Err(TranslateError::SizeNotSet);
        }
        if !packed && !size.is_power_of_two() {
            return Err(TranslateError::SplitSizeNotPowerOfTwo);
        }
        if packed && (self.last_avail_idx >= size || self.last_used_idx >= size) {
            return Err(TranslateError::PositionBeyondSize);
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
            let (mem, index, waits) = (&self.mem, self.index, &mut self.iotlb_waits);
            // An area on scattered guest pages is seen through a window
            // (`guest::window`); the log area is only turned into guest
            // addresses, which it then has no single one of.
            let mut area = |iova: u64, len: u64, kind: Option<RingArea>| {
                let found = match (view.lookup_range(iova, len, PERM_RW), kind) {
                    (Ok(hva), _) => Ok(hva),
                    (Err(RangeFault::Miss(at)), _) => Err(WindowRefusal::Miss(at)),
                    (Err(RangeFault::Scattered), Some(kind)) => {
                        mem.ring_window(index, kind, &view, iova, len, PERM_RW)
                    }
                    (Err(RangeFault::Scattered), None) => return Err(TranslateError::LogAreaScattered),
                };
                match found {
                    Ok(hva) => Ok(Some(hva)),
                    Err(WindowRefusal::Miss(missing)) => {
                        waits.push(AreaWait { iova, len, missing });
                        Ok(None)
                    }
                    Err(why) => Err(TranslateError::AreaScattered(why)),
                }
            };
            let found = (
                area(addr.desc_user_addr, desc_len, Some(RingArea::Desc))?,
                area(addr.avail_user_addr, avail_len, Some(RingArea::Avail))?,
                area(addr.used_user_addr, used_len, Some(RingArea::Used))?,
                if logged { area(addr.log_guest_addr, used_len, None)? } else { Some(0) },
            );
            let (Some(desc), Some(avail), Some(used), Some(log)) = found else {
                self.iotlb_wait = was_usable;
                return Ok(());
            };
            // The log address is an IOVA too; the log wants it guest-physical.
            if logged {
                self.log_guest_addr =
                    self.mem.hva_to_gpa(log, used_len).ok_or(TranslateError::LogAddressUnmapped)?;
            }
            (desc, avail, used)
        } else {
            let mem = &self.mem;
            (
                mem.uaddr_to_hva(addr.desc_user_addr, desc_len).ok_or(TranslateError::DescOutsideMemory)?,
                mem.uaddr_to_hva(addr.avail_user_addr, avail_len)
                    .ok_or(TranslateError::AvailOutsideMemory)?,
                mem.uaddr_to_hva(addr.used_user_addr, used_len).ok_or(TranslateError::UsedOutsideMemory)?,
            )
        };
        let aligned = if packed {
            desc % 16 == 0 && avail % 4 == 0 && used % 4 == 0
        } else {
            desc % 16 == 0 && avail % 2 == 0 && used % 4 == 0
        };
        if !aligned {
            return Err(TranslateError::Misaligned);
        }
        // Each area was just found, for this size and layout, aligned.
        // SAFETY: inside one region of `self.mem` (directly or through the
        // IOTLB view) or one of its ring windows, mapped as long as it is.
        self.ring = Some(unsafe { TranslatedRing::new(&self.mem, (desc, avail, used), size, packed) });
        Ok(())
    }

    /// Split rings: the used index in guest memory is the truth about what
    /// was completed; if ours differs (a reconnect after a crash), take the
    /// guest's, as DPDK does. Returns the (ours, guest's) pair when it did.
    fn sync_used_idx(&mut self) -> Option<(u16, u16)> {
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
            let n = self.split_avail(&ring).map_or(0, |a| a.left()).min(max);
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
            if let Some(scratch) = &mut self.dp.scratch {
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
        Virtqueue { state: AccessLock::new(VqState::new(index)) }
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
