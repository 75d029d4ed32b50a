//! Guest memory: the regions of SET_MEM_TABLE mapped into our address space,
//! and translation of guest-physical (GPA) and front-end virtual (uaddr)
//! addresses to our host virtual addresses (HVA). This is the only code that
//! turns a guest address into something the datapath may dereference.

pub mod inflight;
pub mod ring;

use std::os::fd::{AsRawFd, OwnedFd};

use crate::protocol::MemoryRegionDesc;

/// Why a memory table could not be mapped.
#[derive(Debug)]
pub enum MemoryError {
    /// fstat failed on the region's fd.
    Stat(std::io::Error),
    /// The region (offset + size) lies beyond the end of the file.
    BeyondFile {
        region: usize,
        end: u64,
        file_size: u64,
    },
    Mmap {
        region: usize,
        len: u64,
        err: std::io::Error,
    },
}

impl std::fmt::Display for MemoryError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            MemoryError::Stat(e) => write!(f, "fstat of region fd failed: {e}"),
            MemoryError::BeyondFile { region, end, file_size } => {
                write!(f, "region {region} ends at file offset {end:#x}, beyond the file size {file_size:#x}")
            }
            MemoryError::Mmap { region, len, err } => {
                write!(f, "mmap of region {region} ({len:#x} bytes) failed: {err}")
            }
        }
    }
}

/// A shared mapping of one region's fd, unmapped on drop.
#[derive(Debug)]
struct Mapping {
    addr: usize,
    len: usize,
}

impl Drop for Mapping {
    fn drop(&mut self) {
        // SAFETY: (addr, len) is exactly a mapping created by `map_fd` and not
        // unmapped elsewhere; no reference into it outlives the GuestMemory
        // (the datapath holds an Arc to the table while it copies).
        unsafe { libc::munmap(self.addr as *mut libc::c_void, self.len) };
    }
}

/// One mapped guest memory region.
#[derive(Debug)]
pub struct Region {
    pub guest_phys_addr: u64,
    pub guest_user_addr: u64,
    pub size: u64,
    /// Our address of `guest_phys_addr`.
    pub host_user_addr: u64,
    pub mmap_offset: u64,
    mapping: Mapping,
    fd: OwnedFd,
}

impl Region {
    pub fn mmap_addr(&self) -> u64 {
        self.mapping.addr as u64
    }
    pub fn mmap_size(&self) -> u64 {
        self.mapping.len as u64
    }
    pub fn fd(&self) -> i32 {
        self.fd.as_raw_fd()
    }
    fn contains_gpa(&self, gpa: u64) -> bool {
        gpa >= self.guest_phys_addr && gpa - self.guest_phys_addr < self.size
    }
}

/// The mapped memory table of one device. Immutable once built; the control
/// plane replaces the whole table (datapath users hold an `Arc`).
#[derive(Debug, Default)]
pub struct GuestMemory {
    regions: Vec<Region>,
}

fn block_size(fd: &OwnedFd) -> Result<(u64, u64), MemoryError> {
    let mut st = std::mem::MaybeUninit::<libc::stat>::zeroed();
    // SAFETY: fstat fills the stat struct we own; the fd is valid.
    if unsafe { libc::fstat(fd.as_raw_fd(), st.as_mut_ptr()) } != 0 {
        return Err(MemoryError::Stat(std::io::Error::last_os_error()));
    }
    // SAFETY: fstat succeeded, so the struct is initialised.
    let st = unsafe { st.assume_init() };
    Ok((st.st_blksize.max(4096) as u64, st.st_size as u64))
}

fn map_fd(fd: &OwnedFd, len: usize, region: usize, populate: bool) -> Result<Mapping, MemoryError> {
    let flags = libc::MAP_SHARED | if populate { libc::MAP_POPULATE } else { 0 };
    // SAFETY: a fresh shared mapping of a valid fd at a kernel-chosen address;
    // it aliases no Rust object.
    let addr = unsafe {
        libc::mmap(std::ptr::null_mut(), len, libc::PROT_READ | libc::PROT_WRITE, flags, fd.as_raw_fd(), 0)
    };
    if addr == libc::MAP_FAILED {
        return Err(MemoryError::Mmap { region, len: len as u64, err: std::io::Error::last_os_error() });
    }
    Ok(Mapping { addr: addr as usize, len })
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
            let (blksz, file_size) = block_size(&fd)?;
            let end = d.mmap_offset + d.memory_size;
            if end > file_size {
                return Err(MemoryError::BeyondFile { region: i, end, file_size });
            }
            let len = end.div_ceil(blksz) * blksz;
            let mapping = map_fd(&fd, len as usize, i, populate)?;
            regions.push(Region {
                guest_phys_addr: d.guest_phys_addr,
                guest_user_addr: d.userspace_addr,
                size: d.memory_size,
                host_user_addr: mapping.addr as u64 + d.mmap_offset,
                mmap_offset: d.mmap_offset,
                mapping,
                fd,
            });
        }
        Ok(GuestMemory { regions })
    }

    pub fn regions(&self) -> &[Region] {
        &self.regions
    }

    pub fn is_empty(&self) -> bool {
        self.regions.is_empty()
    }

    /// Translates `gpa`; returns our address and how many of the `len` bytes
    /// from there are contiguous in the same region (at least 1, at most len).
    #[inline]
    pub fn gpa_to_hva(&self, gpa: u64, len: u64) -> Option<(u64, u64)> {
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

    /// Translates a front-end virtual address range (vring addresses without
    /// IOMMU) that must lie entirely in one region.
    pub fn uaddr_to_hva(&self, uaddr: u64, len: u64) -> Option<u64> {
        self.regions.iter().find_map(|r| {
            let off = uaddr.checked_sub(r.guest_user_addr)?;
            (off < r.size && len <= r.size - off).then_some(r.host_user_addr + off)
        })
    }

    /// Reads a little-endian u16 the guest may be writing concurrently (a
    /// ring index) at one of our addresses; `None` unless the 2 bytes lie in
    /// a mapped region and are aligned.
    pub fn read_u16(&self, hva: u64) -> Option<u16> {
        self.hva_to_gpa(hva, 2)?;
        if !hva.is_multiple_of(2) {
            return None;
        }
        // SAFETY: checked to lie inside a live mapping of this table, aligned;
        // the volatile read tolerates concurrent guest writes.
        Some(u16::from_le(unsafe { (hva as *const u16).read_volatile() }))
    }

    /// Translates one of our addresses back to guest-physical (for dirty
    /// logging of ring writes, which are known by HVA).
    pub fn hva_to_gpa(&self, hva: u64, len: u64) -> Option<u64> {
        self.regions.iter().find_map(|r| {
            let off = hva.checked_sub(r.host_user_addr)?;
            (off < r.size && len <= r.size - off).then_some(r.guest_phys_addr + off)
        })
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

    #[test]
    fn refuses_region_beyond_its_file() {
        let err = GuestMemory::map(&[desc(0, 0x10000, 0, 0x1000)], vec![memfd(0x10000)], false).unwrap_err();
        assert!(matches!(err, MemoryError::BeyondFile { region: 0, .. }), "{err}");
    }
}
