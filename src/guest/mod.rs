//! Guest memory: the regions of SET_MEM_TABLE mapped into our address space,
//! and translation of guest-physical (GPA) and front-end virtual (uaddr)
//! addresses to our host virtual addresses (HVA). This is the only code that
//! turns a guest address into something the datapath may dereference.

pub mod dirty_log;
pub mod iotlb;
pub mod mapping;
pub mod postcopy;
mod raw;
pub mod slice;
pub mod window;

use std::os::fd::{AsFd, AsRawFd, OwnedFd};

use iotlb::IotlbView;
use mapping::{MapError, SharedMapping};
use slice::GuestSlice;

use crate::protocol::MemoryRegionDesc;

/// Why a memory table could not be mapped.
#[derive(Debug)]
pub struct MemoryError {
    pub region: usize,
    pub err: MapError,
}

impl std::fmt::Display for MemoryError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "region {}: {}", self.region, self.err)
    }
}

impl std::error::Error for MemoryError {}

/// One mapped guest memory region.
#[derive(Debug)]
pub struct Region {
    pub guest_phys_addr: u64,
    pub guest_user_addr: u64,
    pub size: u64,
    /// Our address of `guest_phys_addr`.
    pub host_user_addr: u64,
    pub mmap_offset: u64,
    mapping: SharedMapping,
    fd: OwnedFd,
}

impl Region {
    pub fn mmap_addr(&self) -> u64 {
        self.mapping.addr()
    }
    pub fn mmap_size(&self) -> u64 {
        self.mapping.len()
    }
    pub fn fd(&self) -> i32 {
        self.fd.as_raw_fd()
    }
    fn file(&self) -> std::os::fd::BorrowedFd<'_> {
        self.fd.as_fd()
    }
    fn contains_gpa(&self, gpa: u64) -> bool {
        gpa >= self.guest_phys_addr && gpa - self.guest_phys_addr < self.size
    }
    fn contains_hva(&self, hva: u64) -> bool {
        hva >= self.host_user_addr && hva - self.host_user_addr < self.size
    }
}

/// The mapped memory table of one device. Immutable once built; the control
/// plane replaces the whole table (datapath users hold an `Arc`).
#[derive(Debug, Default)]
pub struct GuestMemory {
    regions: Vec<Region>,
    /// Unique for the life of the process (0: the empty table), so that
    /// slices kept apart from their table can be checked to belong to it.
    id: u64,
    /// The loss of a page (`faulted`) has been logged.
    loss_reported: std::sync::atomic::AtomicBool,
    /// For a DMA engine (async datapath): runs of our addresses whose
    /// device addresses are contiguous, sorted by our address; empty
    /// unless `add_host_iovas` made them.
    host_iovas: Vec<IovaRun>,
    /// The largest region, tried first by `gpa_to_hva` without the walk
    /// over `regions` (most buffers lie there; a guest's one region, all).
    hot: HotRegion,
    /// Ring areas on scattered guest pages, seen contiguously.
    windows: window::RingWindows,
}

/// The bounds of one region of the same table, copied out of it (a table
/// is immutable, so they cannot go stale); all 0 in the empty table, which
/// then matches no address.
#[derive(Clone, Copy, Debug, Default)]
struct HotRegion {
    guest_phys_addr: u64,
    size: u64,
    host_user_addr: u64,
}

/// `len` bytes at our address `hva` that a DMA engine reaches at `iova`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct IovaRun {
    hva: u64,
    iova: u64,
    len: u64,
}

impl GuestMemory {
    /// Maps every region (the protocol layer has checked sizes, wrap-around
    /// and overlaps). Each fd is mapped from offset 0 through the region's
    /// end, rounded up to the fd's block (huge page) size, as DPDK does; a
    /// region extending beyond its file is refused instead of faulting later.
    /// `populate` pre-faults the mapping (never during postcopy).
    pub fn map(
        descs: &[MemoryRegionDesc],
        fds: Vec<OwnedFd>,
        populate: bool,
    ) -> Result<GuestMemory, MemoryError> {
        let mut regions = Vec::with_capacity(descs.len());
        for (i, (d, fd)) in descs.iter().zip(fds).enumerate() {
            let mapping = SharedMapping::map(fd.as_fd(), d.mmap_offset, d.memory_size, populate)
                .map_err(|err| MemoryError { region: i, err })?;
            regions.push(Region {
                guest_phys_addr: d.guest_phys_addr,
                guest_user_addr: d.userspace_addr,
                size: d.memory_size,
                host_user_addr: mapping.addr() + d.mmap_offset,
                mmap_offset: d.mmap_offset,
                mapping,
                fd,
            });
        }
        static NEXT_ID: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
        let id = NEXT_ID.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let hot = regions.iter().max_by_key(|r| r.size).map_or_else(HotRegion::default, |r| HotRegion {
            guest_phys_addr: r.guest_phys_addr,
            size: r.size,
            host_user_addr: r.host_user_addr,
        });
        Ok(GuestMemory {
            regions,
            id,
            loss_reported: Default::default(),
            host_iovas: Vec::new(),
            hot,
            windows: Default::default(),
        })
    }

    /// DPDK's `add_guest_pages`: finds the device address (IOVA, in the
    /// EAL's IOVA mode) of every page of every region, so that a DMA engine
    /// can be handed guest buffers. In VA mode a region is one run; in PA
    /// mode pages are looked up one by one (the mapping must be populated)
    /// and physically contiguous ones merged; a page without one is left
    /// out (a copy to it is refused).
    pub fn add_host_iovas(&mut self) {
        let va = crate::dpdk::dma::iova_is_va();
        let mut runs: Vec<IovaRun> = Vec::new();
        for r in &self.regions {
            if va {
                runs.push(IovaRun { hva: r.host_user_addr, iova: r.host_user_addr, len: r.size });
                continue;
            }
            let page = r.mapping.page_size();
            let mut off = 0;
            while off < r.size {
                let hva = r.host_user_addr + off;
                let len = (page - hva % page).min(r.size - off);
                if let Some(iova) = crate::dpdk::dma::virt2iova(hva) {
                    match runs.last_mut() {
                        Some(l) if l.hva + l.len == hva && l.iova + l.len == iova => l.len += len,
                        _ => runs.push(IovaRun { hva, iova, len }),
                    }
                }
                off += len;
            }
        }
        runs.sort_by_key(|r| r.hva);
        self.host_iovas = runs;
    }

    /// The device address of our address `hva` and how many of the `len`
    /// bytes from there are contiguous for the device (at least 1, at most
    /// `len`); `None` if it has none.
    #[inline]
    pub fn host_iova(&self, hva: u64, len: u64) -> Option<(u64, u64)> {
        let i = self.host_iovas.partition_point(|r| r.hva + r.len <= hva);
        let r = self.host_iovas.get(i).filter(|r| r.hva <= hva)?;
        let off = hva - r.hva;
        Some((r.iova + off, len.min(r.len - off)))
    }

    pub fn regions(&self) -> &[Region] {
        &self.regions
    }

    pub fn is_empty(&self) -> bool {
        self.regions.is_empty()
    }

    pub fn id(&self) -> u64 {
        self.id
    }

    /// The guest memory at `gpa`: as much of `len` bytes as is contiguous in
    /// one region (at least one byte), or `None` if `gpa` is not mapped.
    #[inline]
    pub fn slice(&self, gpa: u64, len: u32) -> Option<slice::GuestSlice<'_>> {
        let (hva, n) = self.gpa_to_hva(gpa, u64::from(len))?;
        // SAFETY: gpa_to_hva found [hva, hva + n) inside a region of this
        // table, which the borrow of `self` keeps mapped.
        Some(unsafe { slice::GuestSlice::new(hva, n as u32) })
    }

    /// Whether the front-end shrank a region's file under us (a page was
    /// lost and replaced): the device must stop using this table.
    pub fn faulted(&self) -> bool {
        self.regions.iter().any(|r| r.mapping.faulted()) || self.windows.faulted()
    }

    /// True the first time it is asked (to log a loss once per table).
    pub fn first_loss_report(&self) -> bool {
        !self.loss_reported.swap(true, std::sync::atomic::Ordering::Relaxed)
    }

    /// Translates `gpa`; returns our address and how many of the `len` bytes
    /// from there are contiguous in the same region (at least 1, at most len).
    #[inline(always)]
    pub fn gpa_to_hva(&self, gpa: u64, len: u64) -> Option<(u64, u64)> {
        let hot = &self.hot;
        let off = gpa.wrapping_sub(hot.guest_phys_addr);
        if off < hot.size {
            return Some((hot.host_user_addr + off, len.min(hot.size - off)));
        }
        self.gpa_to_hva_other(gpa, len)
    }

    /// `gpa_to_hva` outside the largest region: the walk over them all.
    /// Cold and out of line: inline, the walk made the burst loops around
    /// every translation spill more registers (docs/performance.md).
    #[cold]
    #[inline(never)]
    fn gpa_to_hva_other(&self, gpa: u64, len: u64) -> Option<(u64, u64)> {
        let r = self.regions.iter().find(|r| r.contains_gpa(gpa))?;
        let off = gpa - r.guest_phys_addr;
        Some((r.host_user_addr + off, len.min(r.size - off)))
    }

    /// Translates a whole guest-physical range that must lie in one region.
    #[inline]
    pub fn gpa_range_to_hva(&self, gpa: u64, len: u64) -> Option<u64> {
        match self.gpa_to_hva(gpa, len) {
            Some((hva, n)) if n == len => Some(hva),
            _ => None,
        }
    }

    /// Translates front-end virtual address `uaddr`: our address and how
    /// many of the `len` bytes from there lie in the same region (at least
    /// 1, at most len).
    pub fn uaddr_to_hva_prefix(&self, uaddr: u64, len: u64) -> Option<(u64, u64)> {
        self.regions.iter().find_map(|r| {
            let off = uaddr.checked_sub(r.guest_user_addr)?;
            (off < r.size).then(|| (r.host_user_addr + off, len.min(r.size - off)))
        })
    }

    /// Translates a front-end virtual address range (vring addresses without
    /// IOMMU) that must lie entirely in one region.
    pub fn uaddr_to_hva(&self, uaddr: u64, len: u64) -> Option<u64> {
        self.regions.iter().find_map(|r| {
            let off = uaddr.checked_sub(r.guest_user_addr)?;
            (off < r.size && len <= r.size - off).then(|| r.host_user_addr + off)
        })
    }

    /// Translates one of our addresses back to guest-physical (for dirty
    /// logging of ring writes, which are known by HVA).
    pub fn hva_to_gpa(&self, hva: u64, len: u64) -> Option<u64> {
        self.regions.iter().find_map(|r| {
            let off = hva.checked_sub(r.host_user_addr)?;
            (off < r.size && len <= r.size - off).then(|| r.guest_phys_addr + off)
        })
    }
}

/// Where descriptor addresses point: guest-physical addresses
/// (`PhysicalSpace`) or, behind a virtual IOMMU, I/O virtual addresses
/// translated through the IOTLB (`IovaSpace`). The datapath is generic
/// over it, so the paths without an IOMMU carry no IOTLB test at all.
pub trait AddressSpace<'a>: Copy {
    /// The memory table the translations land in.
    fn mem(&self) -> &'a GuestMemory;
    /// The buffer at `addr`: as much of `len` bytes as is contiguous here
    /// (at least one byte).
    fn slice(&self, addr: u64, len: u32) -> Result<GuestSlice<'a>, Fault>;
    /// The `len` bytes at `addr`, which must be contiguous and readable
    /// (descriptor tables).
    fn table(&self, addr: u64, len: u32) -> Result<GuestSlice<'a>, Fault>;
}

/// Why an address could not be translated.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fault {
    /// Not guest memory (or not allowed).
    Unmapped,
    /// Not in the IOTLB yet: ask the front-end (and retry later).
    Miss { iova: u64, perm: u8 },
}

impl std::fmt::Display for Fault {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Fault::Unmapped => write!(f, "not guest memory"),
            Fault::Miss { iova, perm } => write!(f, "IOVA {iova:#x} (perm {perm}) not in the IOTLB"),
        }
    }
}

impl std::error::Error for Fault {}

/// Guest-physical addresses of a memory table.
#[derive(Clone, Copy, Debug)]
pub struct PhysicalSpace<'a>(pub &'a GuestMemory);

impl<'a> AddressSpace<'a> for PhysicalSpace<'a> {
    #[inline(always)]
    fn mem(&self) -> &'a GuestMemory {
        self.0
    }
    #[inline(always)]
    fn slice(&self, addr: u64, len: u32) -> Result<GuestSlice<'a>, Fault> {
        self.0.slice(addr, len).ok_or(Fault::Unmapped)
    }
    #[inline(always)]
    fn table(&self, addr: u64, len: u32) -> Result<GuestSlice<'a>, Fault> {
        let hva = self.0.gpa_range_to_hva(addr, u64::from(len)).ok_or(Fault::Unmapped)?;
        // SAFETY: the whole range lies in one region of the table `'a`
        // borrows.
        Ok(unsafe { GuestSlice::new(hva, len) })
    }
}

/// I/O virtual addresses, through an IOTLB view resolved against a memory
/// table; buffers need rights `perm` (reads for a dequeue, writes for an
/// enqueue).
#[derive(Clone, Copy, Debug)]
pub struct IovaSpace<'a> {
    mem: &'a GuestMemory,
    iotlb: &'a IotlbView,
    perm: u8,
}

impl<'a> IovaSpace<'a> {
    /// `iotlb` must have been resolved against `mem`.
    pub fn new(mem: &'a GuestMemory, iotlb: &'a IotlbView, perm: u8) -> IovaSpace<'a> {
        assert_eq!(iotlb.mem_id(), mem.id(), "an IOTLB view of another memory table");
        IovaSpace { mem, iotlb, perm }
    }
}

impl<'a> AddressSpace<'a> for IovaSpace<'a> {
    #[inline(always)]
    fn mem(&self) -> &'a GuestMemory {
        self.mem
    }
    #[inline]
    fn slice(&self, addr: u64, len: u32) -> Result<GuestSlice<'a>, Fault> {
        let (hva, n) = self
            .iotlb
            .lookup(addr, u64::from(len), self.perm)
            .ok_or(Fault::Miss { iova: addr, perm: self.perm })?;
        // SAFETY: the view was resolved against `self.mem` (checked in
        // `new`), so [hva, hva + n) lies inside one of its regions, mapped
        // while it is borrowed.
        Ok(unsafe { GuestSlice::new(hva, n as u32) })
    }
    #[inline]
    fn table(&self, addr: u64, len: u32) -> Result<GuestSlice<'a>, Fault> {
        let hva = self.iotlb.lookup_range(addr, u64::from(len), iotlb::PERM_RO).map_err(|f| match f {
            iotlb::RangeFault::Miss(iova) => Fault::Miss { iova, perm: iotlb::PERM_RO },
            // Mapped, but not contiguously: unusable here.
            iotlb::RangeFault::Scattered => Fault::Unmapped,
        })?;
        // SAFETY: as in `slice`, for the whole range.
        Ok(unsafe { GuestSlice::new(hva, len) })
    }
}

/// The NUMA node backing the guest memory (its first region), as
/// `rte_vhost_get_numa_node` reports it; `None` if unknown.
pub fn numa_node_of(mem: &GuestMemory) -> Option<i32> {
    let addr = mem.regions().first()?.host_user_addr;
    const MPOL_F_NODE: libc::c_ulong = 1;
    const MPOL_F_ADDR: libc::c_ulong = 2;
    let mut node: libc::c_int = -1;
    // SAFETY: get_mempolicy writes one int; addr lies in our live mapping;
    // no nodemask is requested (NULL, 0).
    let rc = unsafe {
        libc::syscall(
            libc::SYS_get_mempolicy,
            &mut node as *mut libc::c_int,
            std::ptr::null_mut::<libc::c_ulong>(),
            0 as libc::c_ulong,
            addr as *mut libc::c_void,
            MPOL_F_NODE | MPOL_F_ADDR,
        )
    };
    (rc == 0 && node >= 0).then_some(node)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn memfd(size: u64) -> OwnedFd {
        let fd = nix::sys::memfd::memfd_create(c"rvhost-test", nix::sys::memfd::MemFdCreateFlag::MFD_CLOEXEC)
            .unwrap();
        nix::unistd::ftruncate(&fd, size as i64).unwrap();
        fd
    }

    fn desc(gpa: u64, size: u64, uaddr: u64, off: u64) -> MemoryRegionDesc {
        MemoryRegionDesc { guest_phys_addr: gpa, memory_size: size, userspace_addr: uaddr, mmap_offset: off }
    }

    #[test]
    fn translates_gpa_and_uaddr_within_regions() {
        let mem = GuestMemory::map(
            &[desc(0, 0x10000, 0x7f00_0000_0000, 0), desc(0x10000, 0x8000, 0x7f00_0001_0000, 0x1000)],
            vec![memfd(0x10000), memfd(0x9000)],
            false,
        )
        .unwrap();
        let (h0, n) = mem.gpa_to_hva(0xff00, 0x1000).unwrap();
        assert_eq!(n, 0x100, "contiguous length stops at the region end");
        let (h1, n1) = mem.gpa_to_hva(0x10000, 0x1000).unwrap();
        assert_eq!(n1, 0x1000);
        assert_eq!(h1, mem.regions()[1].host_user_addr);
        assert_eq!(h0 + 0x100, mem.regions()[0].host_user_addr + 0x10000);
        assert!(mem.gpa_to_hva(0x18000, 1).is_none(), "past the last region");
        assert!(mem.gpa_range_to_hva(0xff00, 0x200).is_none(), "range spans two regions");
        assert_eq!(mem.uaddr_to_hva(0x7f00_0001_0010, 16), Some(h1 + 0x10));
        assert!(mem.uaddr_to_hva(0x7f00_0000_fff0, 0x20).is_none());
        assert_eq!(mem.hva_to_gpa(h1 + 8, 8), Some(0x10008));
        // Writes through one translation are visible through the other.
        // SAFETY: test-only access to a live, writable mapping.
        unsafe { *(h1 as *mut u32) = 0xdead_beef };
        let via_uaddr = mem.uaddr_to_hva(0x7f00_0001_0000, 4).unwrap();
        // SAFETY: as above.
        assert_eq!(unsafe { *(via_uaddr as *const u32) }, 0xdead_beef);
    }

    /// The largest region is tried first; every other one, the gaps and
    /// the edges translate as the walk over all regions does.
    #[test]
    fn translates_in_and_around_the_largest_region_as_in_the_others() {
        let mem = GuestMemory::map(
            &[desc(0x1000, 0x1000, 0, 0), desc(0x4000, 0x4000, 0, 0), desc(0x8000, 0x2000, 0, 0)],
            vec![memfd(0x1000), memfd(0x4000), memfd(0x2000)],
            false,
        )
        .unwrap();
        const EDGES: [u64; 12] =
            [0, 0xfff, 0x1000, 0x1fff, 0x2000, 0x3fff, 0x4000, 0x7fff, 0x8000, 0x9fff, 0xa000, u64::MAX];
        for gpa in EDGES {
            assert_eq!(mem.gpa_to_hva(gpa, 0x800), mem.gpa_to_hva_other(gpa, 0x800), "gpa {gpa:#x}");
        }
        assert!(mem.gpa_to_hva(0x1800, 1).is_some() && mem.gpa_to_hva(0x9000, 1).is_some());
        assert_eq!(mem.gpa_to_hva(0x7f00, 0x800).unwrap().1, 0x100, "stops at the largest region's end");
        assert!(GuestMemory::default().gpa_to_hva(0, 1).is_none(), "the empty table maps nothing");
    }

    #[test]
    fn refuses_region_beyond_its_file() {
        let err = GuestMemory::map(&[desc(0, 0x10000, 0, 0x1000)], vec![memfd(0x10000)], false).unwrap_err();
        assert!(matches!(err, MemoryError { region: 0, err: MapError::BeyondFile { .. } }), "{err}");
    }
}
