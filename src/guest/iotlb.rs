//! The IOTLB of a guest behind a virtual IOMMU (VIRTIO_F_IOMMU_PLATFORM):
//! the device then sees I/O virtual addresses (IOVAs), which the front-end
//! maps to its own addresses with VHOST_USER_IOTLB_MSG updates and unmaps
//! with invalidations; an IOVA without a mapping is a miss, which the
//! back-end reports on its request channel and retries once the update
//! comes.
//!
//! `Iotlb` is what the front-end said (IOVA → front-end address); an
//! `IotlbView` is that table resolved against one memory table (IOVA → our
//! address), with neighbouring mappings that are contiguous on both sides
//! merged: Linux maps a ring page by page, and a ring is only usable if its
//! area is contiguous here (DPDK 22.11 translates page by page and fails:
//! "failed to map desc ring").

use super::GuestMemory;

/// Access rights (the protocol's `perm`): the device reads (RO), writes
/// (WO), or both.
pub const PERM_RO: u8 = 1;
pub const PERM_WO: u8 = 2;
pub const PERM_RW: u8 = 3;

/// One mapping as the front-end sent it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IotlbEntry {
    pub iova: u64,
    pub size: u64,
    pub uaddr: u64,
    pub perm: u8,
}

impl IotlbEntry {
    fn end(&self) -> u64 {
        self.iova + self.size
    }
}

/// A device's IOTLB: non-overlapping mappings, sorted by IOVA, each with
/// the number of the update that made it.
#[derive(Clone, Debug, Default)]
pub struct Iotlb {
    entries: Vec<(IotlbEntry, u64)>,
    updates: u64,
}

/// Most mappings kept (DPDK keeps 2048 per ring); past it the one updated
/// longest ago is dropped and will miss again.
const MAX_ENTRIES: usize = 8192;

impl Iotlb {
    /// IOTLB update: `e` replaces whatever overlapped it. An entry whose
    /// range wraps is refused. A full table drops the mapping updated
    /// longest ago (22.11 drops one at random): never `e`, which stays for
    /// the next `MAX_ENTRIES - 1` updates, so a working set larger than
    /// the table still makes progress.
    pub fn update(&mut self, e: IotlbEntry) -> bool {
        if e.size == 0 || e.iova.checked_add(e.size).is_none() || e.uaddr.checked_add(e.size).is_none() {
            return false;
        }
        self.invalidate(e.iova, e.size);
        self.updates += 1;
        let at = self.entries.partition_point(|(x, _)| x.iova < e.iova);
        self.entries.insert(at, (e, self.updates));
        if self.entries.len() > MAX_ENTRIES {
            let oldest = (0..self.entries.len()).min_by_key(|&i| self.entries[i].1).unwrap_or(at);
            self.entries.remove(oldest);
        }
        true
    }

    /// IOTLB invalidate: nothing of [iova, iova + size) is mapped any more
    /// (entries partly inside are trimmed). A size that runs past the end
    /// of the address space means "to the end".
    pub fn invalidate(&mut self, iova: u64, size: u64) {
        let end = iova.saturating_add(size);
        let mut kept = Vec::with_capacity(self.entries.len() + 1);
        for (e, n) in self.entries.drain(..) {
            if e.end() <= iova || e.iova >= end {
                kept.push((e, n));
                continue;
            }
            if e.iova < iova {
                kept.push((IotlbEntry { size: iova - e.iova, ..e }, n));
            }
            if e.end() > end {
                let cut = end - e.iova;
                kept.push((
                    IotlbEntry { iova: end, size: e.end() - end, uaddr: e.uaddr + cut, perm: e.perm },
                    n,
                ));
            }
        }
        self.entries = kept;
    }

    /// The table resolved against `mem`: front-end addresses replaced by
    /// ours (a mapping is split where the memory regions split it, and the
    /// parts outside guest memory are left out), neighbours contiguous in
    /// IOVA and in our address space with the same rights merged.
    pub fn view(&self, mem: &GuestMemory) -> IotlbView {
        let mut out: Vec<ViewEntry> = Vec::with_capacity(self.entries.len());
        for (e, _) in &self.entries {
            let mut off = 0;
            while off < e.size {
                let Some((hva, n)) = mem.uaddr_to_hva_prefix(e.uaddr + off, e.size - off) else {
                    break;
                };
                let v = ViewEntry { iova: e.iova + off, len: n, hva, perm: e.perm };
                match out.last_mut() {
                    Some(l) if l.iova + l.len == v.iova && l.hva + l.len == v.hva && l.perm == v.perm => {
                        l.len += v.len
                    }
                    _ => out.push(v),
                }
                off += n;
            }
        }
        static GENERATION: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
        let generation = GENERATION.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        IotlbView { mem_id: mem.id(), generation, entries: out }
    }
}

/// A contiguous mapping of IOVAs to our addresses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct ViewEntry {
    iova: u64,
    len: u64,
    hva: u64,
    perm: u8,
}

/// An IOTLB resolved against one memory table (`Iotlb::view`); the
/// datapath translates through it.
#[derive(Clone, Debug, Default)]
pub struct IotlbView {
    /// The `GuestMemory::id` the addresses belong to.
    mem_id: u64,
    /// Views are numbered as they are made: a later one holds at least
    /// what an earlier one held, unless something was invalidated in
    /// between (which the device hands to every ring itself).
    generation: u64,
    entries: Vec<ViewEntry>,
}

impl IotlbView {
    pub fn mem_id(&self) -> u64 {
        self.mem_id
    }

    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// Our address of `iova` and how many of the `len` bytes from there
    /// are contiguous (at least 1), if mapped with `perm`; `None` is a miss.
    /// (A binary search: merged, the mappings of a guest that maps its
    /// memory in large pages are few.)
    #[inline]
    pub fn lookup(&self, iova: u64, len: u64, perm: u8) -> Option<(u64, u64)> {
        let i = self.entries.partition_point(|e| e.iova + e.len <= iova);
        let e = self.entries.get(i).filter(|e| iova >= e.iova && e.perm & perm == perm)?;
        let off = iova - e.iova;
        Some((e.hva + off, len.min(e.len - off)))
    }

    /// Where [iova, iova + len) is not mapped with `perm`: the first such
    /// IOVA, then the start of each further page, at most `max` of them
    /// (what to ask the front-end for: it answers a miss with its page).
    pub fn unmapped(&self, iova: u64, len: u64, perm: u8, max: usize) -> Vec<u64> {
        const PAGE: u64 = 4096;
        let mut out = Vec::new();
        let end = iova.saturating_add(len);
        let mut at = iova;
        while at < end && out.len() < max {
            match self.lookup(at, end - at, perm) {
                Some((_, n)) => at += n,
                None => {
                    out.push(at);
                    at = (at | (PAGE - 1)).saturating_add(1);
                }
            }
        }
        out
    }

    /// Our address of `len` bytes at `iova` that must be contiguous here
    /// (ring areas, descriptor tables), mapped with `perm`.
    pub fn lookup_range(&self, iova: u64, len: u64, perm: u8) -> Result<u64, RangeFault> {
        let (start, mut n) = self.lookup(iova, len, perm).ok_or(RangeFault::Miss(iova))?;
        // Neighbouring entries are merged when contiguous here, so the next
        // entry can only be a gap or a jump; it is looked up to tell which.
        while n < len {
            let at = iova + n;
            let (hva, more) = self.lookup(at, len - n, perm).ok_or(RangeFault::Miss(at))?;
            if hva != start + n {
                return Err(RangeFault::Scattered);
            }
            n += more;
        }
        Ok(start)
    }
}

/// Why a range has no contiguous translation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RangeFault {
    /// This IOVA (the first one lacking) is not mapped with the rights.
    Miss(u64),
    /// Mapped, but not to one contiguous piece of our memory.
    Scattered,
}

impl std::fmt::Display for RangeFault {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RangeFault::Miss(iova) => write!(f, "IOVA {iova:#x} not mapped"),
            RangeFault::Scattered => write!(f, "not one contiguous piece of our memory"),
        }
    }
}

impl std::error::Error for RangeFault {}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::MemoryRegionDesc;

    fn memory() -> GuestMemory {
        let fd = nix::sys::memfd::memfd_create(c"t", nix::sys::memfd::MemFdCreateFlag::MFD_CLOEXEC).unwrap();
        nix::unistd::ftruncate(&fd, 0x10000).unwrap();
        let fd2 = nix::sys::memfd::memfd_create(c"t", nix::sys::memfd::MemFdCreateFlag::MFD_CLOEXEC).unwrap();
        nix::unistd::ftruncate(&fd2, 0x10000).unwrap();
        let r = |gpa, uaddr| MemoryRegionDesc {
            guest_phys_addr: gpa,
            memory_size: 0x10000,
            userspace_addr: uaddr,
            mmap_offset: 0,
        };
        GuestMemory::map(&[r(0, 0x100_0000), r(0x10000, 0x100_0000 + 0x10000)], vec![fd, fd2], false).unwrap()
    }

    fn e(iova: u64, size: u64, uaddr: u64, perm: u8) -> IotlbEntry {
        IotlbEntry { iova, size, uaddr, perm }
    }

    #[test]
    fn pages_mapped_one_by_one_merge_into_one_range() {
        let mem = memory();
        let mut t = Iotlb::default();
        for p in 0..4 {
            assert!(t.update(e(0x8000_0000 + p * 0x1000, 0x1000, 0x100_2000 + p * 0x1000, PERM_RW)));
        }
        let v = t.view(&mem);
        let base = mem.uaddr_to_hva(0x100_2000, 1).unwrap();
        assert_eq!(v.lookup_range(0x8000_0000, 0x4000, PERM_RW), Ok(base), "a 16 KiB ring over 4 pages");
        assert_eq!(
            v.lookup_range(0x8000_0000, 0x4001, PERM_RW),
            Err(RangeFault::Miss(0x8000_4000)),
            "one byte past the mappings: the miss is where they end"
        );
        assert_eq!(v.lookup(0x8000_3fff, 10, PERM_RO), Some((base + 0x3fff, 1)));
        assert_eq!(v.lookup(0x8000_4000, 1, PERM_RO), None, "a miss");
    }

    #[test]
    fn unmapped_names_every_missing_page_once() {
        let mem = memory();
        let mut t = Iotlb::default();
        t.update(e(0x2000, 0x1000, 0x100_0000, PERM_RW));
        t.update(e(0x5000, 0x1000, 0x100_1000, PERM_RO));
        let v = t.view(&mem);
        assert_eq!(
            v.unmapped(0x1800, 0x4900, PERM_RW, usize::MAX),
            vec![0x1800, 0x3000, 0x4000, 0x5000, 0x6000],
            "the first IOVA itself, then each page: 0x5000 is mapped read-only"
        );
        assert_eq!(v.unmapped(0x1800, 0x4900, PERM_RO, 2), vec![0x1800, 0x3000], "at most `max`");
        assert_eq!(v.unmapped(0x2000, 0x1000, PERM_WO, 8), Vec::<u64>::new());
        assert_eq!(v.unmapped(u64::MAX - 2, 10, PERM_RO, 8), vec![u64::MAX - 2], "no wrap at the top");
    }

    #[test]
    fn rights_are_checked() {
        let mem = memory();
        let mut t = Iotlb::default();
        t.update(e(0x1000, 0x1000, 0x100_0000, PERM_RO));
        let v = t.view(&mem);
        assert!(v.lookup(0x1000, 4, PERM_RO).is_some());
        assert!(v.lookup(0x1000, 4, PERM_WO).is_none(), "the device may not write there");
    }

    #[test]
    fn invalidation_trims_and_updates_replace() {
        let mem = memory();
        let mut t = Iotlb::default();
        t.update(e(0x1000, 0x4000, 0x100_0000, PERM_RW));
        t.invalidate(0x2000, 0x1000);
        let v = t.view(&mem);
        assert!(v.lookup(0x1fff, 1, PERM_RW).is_some());
        assert!(v.lookup(0x2000, 1, PERM_RW).is_none(), "invalidated");
        assert!(v.lookup(0x2fff, 1, PERM_RW).is_none());
        let after = v.lookup(0x3000, 1, PERM_RW).unwrap().0;
        assert_eq!(after, mem.uaddr_to_hva(0x100_2000, 1).unwrap(), "the tail keeps its offset");
        // An update over an old mapping replaces it.
        t.update(e(0x1000, 0x1000, 0x100_8000, PERM_RO));
        let v = t.view(&mem);
        assert_eq!(v.lookup(0x1000, 1, PERM_RO).unwrap().0, mem.uaddr_to_hva(0x100_8000, 1).unwrap());
        t.invalidate(0, u64::MAX);
        assert!(t.entries.is_empty(), "invalidate all");
        assert!(!t.update(e(u64::MAX - 10, 0x100, 0, PERM_RW)), "wrapping range");
    }

    /// Finding 4 of issue 19: a full table dropped its lowest IOVA, which
    /// could be the mapping just made; a buffer below every other mapping
    /// was then asked for, answered and dropped forever.
    #[test]
    fn a_full_table_drops_the_oldest_mapping_never_the_new_one() {
        let mem = memory();
        let mut t = Iotlb::default();
        let high = |k: u64| e(0x1_0000_0000 + k * 0x1000, 0x1000, 0x100_0000, PERM_RW);
        for k in 0..MAX_ENTRIES as u64 {
            assert!(t.update(high(k)));
        }
        assert_eq!(t.entries.len(), MAX_ENTRIES);
        // A working set larger than the table: every new mapping, below all
        // others, is there once made; the oldest ones make room.
        for k in 0..100 {
            assert!(t.update(e(k * 0x1000, 0x1000, 0x100_1000, PERM_WO)));
            assert_eq!(t.entries.len(), MAX_ENTRIES);
            assert!(t.view(&mem).lookup(k * 0x1000, 1, PERM_WO).is_some(), "mapping {k} was dropped at once");
        }
        let v = t.view(&mem);
        assert!(v.lookup(0x1_0000_0000 + 99 * 0x1000, 1, PERM_RW).is_none(), "the oldest went first");
        assert!(v.lookup(0x1_0000_0000 + 100 * 0x1000, 1, PERM_RW).is_some());
        assert!(v.lookup(0, 1, PERM_WO).is_some(), "newer than every high mapping");
    }

    #[test]
    fn mappings_outside_guest_memory_or_across_regions() {
        let mem = memory();
        let mut t = Iotlb::default();
        // Across the two regions (contiguous front-end addresses, not ours).
        t.update(e(0x10_0000, 0x2000, 0x100_f000, PERM_RW));
        // Outside guest memory.
        t.update(e(0x20_0000, 0x1000, 0x900_0000, PERM_RW));
        let v = t.view(&mem);
        assert_eq!(
            v.lookup(0x10_0000, 0x2000, PERM_RW).map(|x| x.1),
            Some(0x1000),
            "split at the region end"
        );
        assert!(v.lookup(0x10_1000, 1, PERM_RW).is_some());
        assert!(v.lookup(0x20_0000, 1, PERM_RW).is_none());
    }
}
