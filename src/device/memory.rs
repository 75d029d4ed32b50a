//! Memory requests: the memory table (and its postcopy variant), the dirty
//! log, postcopy's userfaultfd, and the inflight area.

use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::sync::Arc;

use super::context::{Ctx, PendingTable, Reply};
use super::events::Event;
use super::Device;
use crate::guest::dirty_log::DirtyLog;
use crate::guest::postcopy::Userfault;
use crate::guest::GuestMemory;
use crate::protocol::features::{flags, Feature};
use crate::protocol::{InflightArea, LogArea, MemoryTable};
use crate::virtqueue::inflight::{per_queue_size, InflightQueue, InflightRegion};
use crate::virtqueue::MAX_RING_SIZE;
use crate::vlog;

/// Why a postcopy memory table was not put in use.
#[derive(Debug)]
pub enum PostcopyError {
    /// POSTCOPY_LISTEN came without POSTCOPY_ADVISE: no userfaultfd.
    NotAdvised,
    /// The userfaultfd refused the mapping `start..=end`.
    Register { start: u64, end: u64, ufd: RawFd, source: std::io::Error },
}

impl std::fmt::Display for PostcopyError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PostcopyError::NotAdvised => write!(f, "postcopy listening without POSTCOPY_ADVISE"),
            PostcopyError::Register { start, end, ufd, source } => {
                write!(f, "failed to register ufd for region {start:x} - {end:x} (ufd = {ufd}) {source}")
            }
        }
    }
}

impl std::error::Error for PostcopyError {}

impl Device {
    /// Whether `table` describes the memory already mapped.
    pub(super) fn same_memory(&self, table: &MemoryTable) -> bool {
        let mem = self.mem();
        !mem.is_empty()
            && mem.regions().len() == table.regions.len()
            && mem.regions().iter().zip(&table.regions).all(|(r, d)| {
                r.guest_phys_addr == d.guest_phys_addr
                    && r.guest_user_addr == d.userspace_addr
                    && r.size == d.memory_size
                    && r.mmap_offset == d.mmap_offset
            })
    }

    /// The front-end acked our postcopy addresses: register every mapping
    /// with the userfaultfd (so that our faults go to the front-end), then
    /// put the table in use. Nothing touched the mappings before.
    pub fn install_postcopy_table(&self, pending: PendingTable) -> Result<(), PostcopyError> {
        let ifname = self.ifname();
        {
            let st = self.state.lock();
            let ufd = st.postcopy_ufd.as_ref().ok_or(PostcopyError::NotAdvised)?;
            for r in pending.mem.regions() {
                let (start, len) = (r.mmap_addr(), r.mmap_size());
                let end = start + len - 1;
                ufd.register(start, len).map_err(|source| PostcopyError::Register {
                    start,
                    end,
                    ufd: ufd.fd().as_raw_fd(),
                    source,
                })?;
                vlog!(Config, Info, ifname, "\t userfaultfd registered for range : {start:x} - {end:x}");
            }
        }
        self.use_memory(&ifname, &pending.mem);
        Ok(())
    }

    /// Puts `mem` in use: the device's table and every ring's (translated
    /// rings are translated again; the old table is unmapped when the last
    /// ring lets go of it).
    fn use_memory(&self, ifname: &str, mem: &Arc<GuestMemory>) {
        let rings = self.lock_rings();
        let (mem, view) = self.publish(self.state.lock().replace_memory(mem));
        for mut vq in rings {
            if let Err(why) = vq.set_translation(&mem, view.clone()) {
                vlog!(Config, Err, ifname, "failed to translate vring {} addresses: {why}", vq.index());
            }
        }
    }
}

pub(super) fn set_mem_table(ctx: &mut Ctx<'_>, table: MemoryTable, fds: Vec<OwnedFd>) -> Reply {
    if ctx.dev.same_memory(&table) {
        vlog!(Config, Info, ctx.ifname, "memory regions not changed");
        return Reply::Ok;
    }
    let listening = ctx.dev.state.lock().postcopy_listening;
    // During postcopy the mappings must not be touched (pre-faulted) before
    // the userfaultfd covers them.
    // A DMA engine needs every page present (and, in PA mode, its
    // physical address): as 22.11, an async device's memory is populated.
    let dma = ctx.dev.socket_flags() & flags::ASYNC_COPY != 0;
    let mapped = GuestMemory::map(&table.regions, fds, dma && !listening).map(|mut mem| {
        if dma {
            mem.add_host_iovas();
        }
        Arc::new(mem)
    });
    let Some(mem) = ctx.logged("failed to mmap region", mapped) else {
        return Reply::Err;
    };
    for (i, r) in mem.regions().iter().enumerate() {
        vlog!(
            Config,
            Info,
            ctx.ifname,
            "guest memory region {i}, size: {:#x}\n\t guest physical addr: {:#x}\n\t guest virtual  addr: {:#x}\n\t host  virtual  addr: {:#x}\n\t mmap addr : {:#x}\n\t mmap size : {:#x}\n\t mmap off  : {:#x}",
            r.size,
            r.guest_phys_addr,
            r.guest_user_addr,
            r.host_user_addr,
            r.mmap_addr(),
            r.mmap_size(),
            r.mmap_offset
        );
    }
    if listening {
        // QEMU resolves our faults by our addresses: tell it, then wait for
        // its ack before registering and using the mappings.
        let mut ours = table;
        for (d, r) in ours.regions.iter_mut().zip(mem.regions()) {
            d.userspace_addr = r.host_user_addr;
        }
        return Reply::PostcopyTable(ours.to_bytes(), PendingTable { mem });
    }
    // As 22.11, an async application hears of a new table as every ring
    // disabled and enabled again (it clears its DMA queues on the first).
    // The copies in flight meanwhile keep the old table mapped
    // (`virtqueue::async_queue`), so it may hear of it afterwards.
    let replaced = dma && !ctx.dev.mem().is_empty();
    let (mem, view) = ctx.dev.publish(ctx.dev.state.lock().replace_memory(&mem));
    let ifname = ctx.ifname.clone();
    ctx.for_each_vq(|vq| {
        if let Err(why) = vq.set_translation(&mem, view.clone()) {
            vlog!(Config, Err, ifname, "failed to translate vring {} addresses: {why}", vq.index());
        }
    });
    if replaced {
        for enable in [false, true] {
            for queue in 0..ctx.dev.nr_vring() as u16 {
                ctx.events.push(Event::VringState { queue, enable });
            }
        }
    }
    Reply::Ok
}

pub(super) fn set_log_base(ctx: &mut Ctx<'_>, area: LogArea, fd: OwnedFd) -> Reply {
    vlog!(Config, Info, ctx.ifname, "log mmap size: {}, offset: {}", area.mmap_size, area.mmap_offset);
    match DirtyLog::map(&fd, area.mmap_size, area.mmap_offset) {
        Ok(log) => {
            let log = Arc::new(log);
            ctx.for_each_vq(|vq| vq.set_log(Some(Arc::clone(&log))));
            ctx.dev.state.lock().log = Some(log);
            // QEMU expects an empty reply body.
            Reply::Payload(Vec::new(), Vec::new())
        }
        Err(e) => {
            vlog!(Config, Err, ctx.ifname, "mmap log base failed! ({e})");
            Reply::Err
        }
    }
}

pub(super) fn postcopy_advise(ctx: &mut Ctx<'_>) -> Reply {
    let Some(ufd) = ctx.logged("userfaultfd not available", Userfault::open()) else { return Reply::Err };
    let Some(shared) = ctx.logged("failed to share the userfaultfd", ufd.fd().try_clone_to_owned()) else {
        return Reply::Err;
    };
    ctx.dev.state.lock().postcopy_ufd = Some(ufd);
    Reply::Payload(Vec::new(), vec![shared])
}

pub(super) fn postcopy_listen(ctx: &mut Ctx<'_>) -> Reply {
    let mut st = ctx.dev.state.lock();
    if !st.mem.is_empty() {
        vlog!(Config, Err, ctx.ifname, "regions already registered at postcopy-listen");
        return Reply::Err;
    }
    st.postcopy_listening = true;
    Reply::Ok
}

pub(super) fn postcopy_end(ctx: &mut Ctx<'_>) -> Reply {
    let mut st = ctx.dev.state.lock();
    st.postcopy_listening = false;
    st.postcopy_ufd = None;
    Reply::Payload(0u64.to_ne_bytes().to_vec(), Vec::new())
}

fn negotiated_packed(dev: &Device) -> bool {
    dev.has_feature(Feature::RING_PACKED)
}

pub(super) fn get_inflight_fd(ctx: &mut Ctx<'_>, area: InflightArea) -> Reply {
    vlog!(Config, Info, ctx.ifname, "get_inflight_fd num_queues: {}", area.num_queues);
    vlog!(Config, Info, ctx.ifname, "get_inflight_fd queue_size: {}", area.queue_size);
    // Stricter than DPDK: an empty or oversized layout is refused.
    if area.num_queues == 0 || area.queue_size == 0 || u32::from(area.queue_size) > MAX_RING_SIZE {
        vlog!(Config, Err, ctx.ifname, "invalid inflight layout");
        return Reply::Err;
    }
    let packed = negotiated_packed(ctx.dev);
    let Some(region) = ctx.logged(
        "failed to alloc vhost inflight area",
        InflightRegion::allocate(area.num_queues, area.queue_size, packed),
    ) else {
        return Reply::Err;
    };
    let Some(fd) = ctx.logged("failed to share the inflight fd", region.fd().try_clone()) else {
        return Reply::Err;
    };
    let reply = InflightArea { mmap_size: region.size(), mmap_offset: 0, ..area };
    vlog!(Config, Info, ctx.ifname, "send inflight mmap_size: {}", reply.mmap_size);
    vlog!(Config, Info, ctx.ifname, "send inflight mmap_offset: {}", reply.mmap_offset);
    ctx.dev.state.lock().inflight = Some(Arc::new(region));
    Reply::Payload(reply.to_bytes().to_vec(), vec![fd])
}

pub(super) fn set_inflight_fd(ctx: &mut Ctx<'_>, area: InflightArea, fd: OwnedFd) -> Reply {
    vlog!(Config, Info, ctx.ifname, "set_inflight_fd mmap_size: {}", area.mmap_size);
    vlog!(Config, Info, ctx.ifname, "set_inflight_fd mmap_offset: {}", area.mmap_offset);
    vlog!(Config, Info, ctx.ifname, "set_inflight_fd num_queues: {}", area.num_queues);
    vlog!(Config, Info, ctx.ifname, "set_inflight_fd queue_size: {}", area.queue_size);
    if area.num_queues == 0 || usize::from(area.num_queues) > super::MAX_VRING || area.queue_size == 0 {
        vlog!(Config, Err, ctx.ifname, "invalid inflight layout");
        return Reply::Err;
    }
    let packed = negotiated_packed(ctx.dev);
    let needed = per_queue_size(area.queue_size, packed) * u64::from(area.num_queues);
    if area.mmap_size < needed {
        vlog!(
            Config,
            Err,
            ctx.ifname,
            "inflight area of {} bytes too small for its queues ({needed})",
            area.mmap_size
        );
        return Reply::Err;
    }
    let Some(region) = ctx.logged(
        "failed to mmap share memory",
        InflightRegion::map(fd, area.mmap_size, area.mmap_offset).map(Arc::new),
    ) else {
        return Reply::Err;
    };
    ctx.dev.ensure_vring(u32::from(area.num_queues) - 1);
    for q in 0..area.num_queues {
        ctx.vq(q, |vq| vq.set_inflight(InflightQueue::attach(&region, q, area.queue_size, packed)));
    }
    ctx.dev.state.lock().inflight = Some(region);
    Reply::Ok
}
