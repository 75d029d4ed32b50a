//! rte_dmadev virtual channels as the async datapath uses them
//! (`rte_vhost_async_dma_configure`): the copy calls, inline in DPDK's
//! header, go through the C shim; each configured channel counts the
//! copies submitted to it and the completions reaped from it.
//!
//! A channel completes its copies in submission order, so a packet is done
//! once the channel's completion count has reached the count its last copy
//! was given: no per-copy table (22.11 keeps one of flag pointers). A
//! channel's counts live for the process (configured again, it goes on
//! counting), so a packet never compares against counts restarted under it.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::OnceLock;

use parking_lot::Mutex;

/// RTE_DMADEV_DEFAULT_MAX: DMA device ids are below it.
pub const MAX_DMA_DEVICES: usize = 64;

/// Completions reaped per call (22.11's VHOST_DMA_MAX_COPY_COMPLETE).
const MAX_REAP: u16 = 8192;

extern "C" {
    fn rvh_dma_info(dev_id: i16, max_vchans: *mut u16, max_desc: *mut u16) -> i32;
    fn rvh_dma_stats(dev_id: i16, vchan: u16, submitted: *mut u64, completed: *mut u64) -> i32;
    fn rvh_dma_burst_capacity(dev_id: i16, vchan: u16) -> u16;
    fn rvh_dma_copy_burst(dev_id: i16, vchan: u16, copies: *const Copy, n: u32) -> u32;
    fn rvh_dma_completed(dev_id: i16, vchan: u16, nb_cpls: u16, has_error: *mut bool) -> u16;
}

/// A (DMA device, virtual channel) pair as the API names it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ChannelId {
    pub dma: i16,
    pub vchan: u16,
}

/// One virtual channel's bookkeeping.
#[derive(Debug, Default)]
struct Channel {
    configured: AtomicBool,
    /// Copies handed to the channel (under `lock`).
    submitted: AtomicU64,
    /// Copies the channel reported complete (under `lock`; read without).
    completed: AtomicU64,
    /// Serialises copies and reaping: rings on several lcores may share a
    /// channel (22.11's per-channel `dma_lock`).
    lock: Mutex<()>,
}

/// Per DMA device, its channels, made on its first configuration.
static DEVICES: [OnceLock<Box<[Channel]>>; MAX_DMA_DEVICES] = [const { OnceLock::new() }; MAX_DMA_DEVICES];
static CONFIG_LOCK: Mutex<()> = Mutex::new(());

/// The channel's bookkeeping, configured or not.
fn slot(id: ChannelId) -> Option<&'static Channel> {
    let dev = DEVICES.get(usize::try_from(id.dma).ok()?)?.get()?;
    dev.get(usize::from(id.vchan))
}

fn channel(id: ChannelId) -> Option<&'static Channel> {
    slot(id).filter(|c| c.configured.load(Ordering::Acquire))
}

/// Why a channel cannot be (un)configured.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConfigError {
    NotFound,
    BadChannel,
    Busy,
}

impl std::fmt::Display for ConfigError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            ConfigError::NotFound => "DMA device not found",
            ConfigError::BadChannel => "invalid vChannel",
            ConfigError::Busy => "copies still in flight on the vChannel",
        })
    }
}

impl std::error::Error for ConfigError {}

fn max_vchans(dma: i16) -> Option<u16> {
    if !usize::try_from(dma).is_ok_and(|d| d < MAX_DMA_DEVICES) {
        return None;
    }
    let (mut vchans, mut desc) = (0u16, 0u16);
    // SAFETY: the shim checks the id and writes two u16s.
    let rc = unsafe { rvh_dma_info(dma, &mut vchans, &mut desc) };
    (rc == 0).then_some(vchans)
}

/// `rte_vhost_async_dma_configure`: makes the channel usable (configuring
/// one already configured succeeds).
pub fn configure(id: ChannelId) -> Result<(), ConfigError> {
    let _g = CONFIG_LOCK.lock();
    let n = max_vchans(id.dma).ok_or(ConfigError::NotFound)?;
    if id.vchan >= n {
        return Err(ConfigError::BadChannel);
    }
    let chans = DEVICES[id.dma as usize].get_or_init(|| (0..n).map(|_| Channel::default()).collect());
    let c = chans.get(usize::from(id.vchan)).ok_or(ConfigError::BadChannel)?;
    c.configured.store(true, Ordering::Release);
    Ok(())
}

/// `rte_vhost_async_dma_unconfigure`: refused while the device reports
/// copies in flight on the channel, or rvhost has completions not reaped.
pub fn unconfigure(id: ChannelId) -> Result<(), ConfigError> {
    let _g = CONFIG_LOCK.lock();
    max_vchans(id.dma).ok_or(ConfigError::NotFound)?;
    let c = channel(id).ok_or(ConfigError::BadChannel)?;
    let (mut submitted, mut completed) = (0u64, 0u64);
    // SAFETY: the shim writes two u64s; the id was checked above.
    if unsafe { rvh_dma_stats(id.dma, id.vchan, &mut submitted, &mut completed) } != 0 {
        return Err(ConfigError::BadChannel);
    }
    let _l = c.lock.lock();
    if submitted != completed || c.submitted.load(Ordering::Relaxed) != c.completed.load(Ordering::Relaxed) {
        return Err(ConfigError::Busy);
    }
    c.configured.store(false, Ordering::Release);
    Ok(())
}

/// Whether the channel is configured.
pub fn is_configured(id: ChannelId) -> bool {
    channel(id).is_some()
}

/// One copy: device-visible addresses (IOVAs) and length (the shim's
/// `struct rvh_dma_copy_op`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[repr(C)]
pub struct Copy {
    pub src: u64,
    pub dst: u64,
    pub len: u32,
}

/// What `submit` sent: how many packets, the first from the channel's
/// submission count `first_count` on (a packet is done once the channel
/// has completed `first_count` plus the end of its copies).
#[derive(Clone, Copy, Debug, Default)]
pub struct Sent {
    pub first_count: u64,
    pub packets: usize,
}

/// Submits the packets whose copies are `copies`, each ending at the
/// next of `copy_ends` (increasing), in order on channel `id`, stopping
/// at the first packet the channel has no room for; rings the doorbell
/// once.
pub fn submit(id: ChannelId, copies: &[Copy], copy_ends: &[usize]) -> Sent {
    let Some(c) = channel(id) else { return Sent::default() };
    let _l = c.lock.lock();
    let first_count = c.submitted.load(Ordering::Relaxed);
    // SAFETY: a configured channel (ids checked at configuration).
    let room = usize::from(unsafe { rvh_dma_burst_capacity(id.dma, id.vchan) });
    // A packet's copies all go, or none.
    let fit = copy_ends.partition_point(|&end| end <= room);
    let fit = &copies[..fit.checked_sub(1).map_or(0, |last| copy_ends[last].min(copies.len()))];
    let sent = if fit.is_empty() {
        0
    } else {
        // The addresses are IOVAs the device may access (guest pages kept
        // mapped until completion, mbufs).
        // SAFETY: as above; `fit` is `fit.len()` copies laid out as the
        // shim's `struct rvh_dma_copy_op` (repr(C), size asserted there).
        unsafe { rvh_dma_copy_burst(id.dma, id.vchan, fit.as_ptr(), fit.len() as u32) as usize }
    };
    if sent < fit.len() {
        // The copies of the failed packet already queued still run (and
        // are counted); the packet is not handed to the guest.
        crate::vlog!(Data, Err, "dma", "DMA copy failed for channel {}:{}", id.dma, id.vchan);
    }
    c.submitted.store(first_count + sent as u64, Ordering::Relaxed);
    Sent { first_count, packets: copy_ends.partition_point(|&end| end <= sent) }
}

/// Reaps what channel `id` completed (any ring's copies).
pub fn reap(id: ChannelId) {
    let Some(c) = channel(id) else { return };
    let _l = c.lock.lock();
    let mut err = false;
    // SAFETY: a configured channel; the shim writes one bool.
    let n = unsafe { rvh_dma_completed(id.dma, id.vchan, MAX_REAP, &mut err) };
    if err {
        static LOGGED: AtomicBool = AtomicBool::new(false);
        if !LOGGED.swap(true, Ordering::Relaxed) {
            crate::vlog!(Data, Err, "dma", "DMA completion failure on channel {}:{}", id.dma, id.vchan);
        }
    }
    c.completed.fetch_add(u64::from(n), Ordering::Release);
}

/// How many copies channel `id` has completed (also once it has been
/// unconfigured: that needs every copy reaped).
pub fn completed(id: ChannelId) -> u64 {
    slot(id).map_or(0, |c| c.completed.load(Ordering::Acquire))
}

extern "C" {
    fn rte_eal_iova_mode() -> i32;
    fn rte_mem_virt2iova(virt: *const std::ffi::c_void) -> u64;
}

/// RTE_IOVA_VA: device addresses are our virtual addresses.
const RTE_IOVA_VA: i32 = 2;
/// RTE_BAD_IOVA.
const BAD_IOVA: u64 = u64::MAX;

/// Whether the EAL runs with IOVAs that are virtual addresses.
pub fn iova_is_va() -> bool {
    // SAFETY: reads the EAL's configuration.
    let mode = unsafe { rte_eal_iova_mode() };
    mode == RTE_IOVA_VA
}

/// The IOVA of our address `va` as the EAL sees it (`rte_mem_virt2iova`:
/// the physical address in PA mode), `None` if it has none.
pub fn virt2iova(va: u64) -> Option<u64> {
    // SAFETY: looks the address up (page map in PA mode); never
    // dereferences it.
    let iova = unsafe { rte_mem_virt2iova(va as *const std::ffi::c_void) };
    (iova != BAD_IOVA).then_some(iova)
}
