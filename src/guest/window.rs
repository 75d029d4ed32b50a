//! Ring windows. Behind a virtual IOMMU a ring area is contiguous in IOVAs
//! only: Linux allocates a multi-page ring page by page when its IOMMU can
//! map them side by side (intel-iommu without device-iotlb, QEMU 10), so
//! the area lies on scattered guest pages. Such an area is seen through a
//! window of our own address space into which those guest pages (of the
//! region files, 4 KiB pages only) are mapped in IOVA order; the ring
//! engines then read and write it as one piece, with the same accessors.
//!
//! A memory table keeps one window per (ring, area), at most `MAX_WINDOWS`,
//! for as long as it lives: a ring translated again (the guest's IOMMU
//! flushes often) places its pages in the same window, and only when they
//! changed. Since a window is never unmapped before its table and always
//! holds guest pages or anonymous memory, an address into it stays valid
//! for as long as the table is borrowed, like an address into a region.

use super::iotlb::IotlbView;
use super::mapping::{FilePages, Window, WINDOW_PAGE};
use super::GuestMemory;

/// Windows per memory table: two multi-page areas (descriptors, used) of
/// eight 1024-entry split ring pairs.
pub const MAX_WINDOWS: usize = 32;

/// Fits any ring area: a descriptor table of 32768 entries (512 KiB)
/// starting anywhere in its first page. Address space only: a window
/// commits nothing by itself.
const WINDOW_LEN: u64 = 512 * 1024 + WINDOW_PAGE;

/// The three areas of a ring.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RingArea {
    Desc,
    Avail,
    Used,
}

/// Why a scattered ring area has no window.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WindowRefusal {
    /// This IOVA (the first one lacking) is not mapped with the rights.
    Miss(u64),
    /// Its pages lie in a region of huge pages, which cannot be mapped
    /// 4 KiB at a time.
    HugePages,
    /// An IOTLB entry that does not start or end on a page boundary.
    NotWholePages,
    /// The table has `MAX_WINDOWS` windows already.
    TooMany,
    /// The window could not be made or filled (the address space, the
    /// process's mapping count), or it lost a page.
    Unmappable,
}

impl std::fmt::Display for WindowRefusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            WindowRefusal::Miss(iova) => write!(f, "IOVA {iova:#x} not mapped"),
            WindowRefusal::HugePages => write!(f, "its pages are in huge pages"),
            WindowRefusal::NotWholePages => write!(f, "its IOTLB entries are not whole 4 KiB pages"),
            WindowRefusal::TooMany => write!(f, "the memory table has {MAX_WINDOWS} ring windows already"),
            WindowRefusal::Unmappable => write!(f, "its window could not be mapped"),
        }
    }
}

/// A memory table's windows.
#[derive(Debug, Default)]
pub(super) struct RingWindows {
    placed: parking_lot::Mutex<Vec<Placed>>,
    /// Whether any window was made: `faulted`, which vhost-crypto asks
    /// every burst, takes the lock only then.
    made: std::sync::atomic::AtomicBool,
}

impl RingWindows {
    pub(super) fn faulted(&self) -> bool {
        self.made.load(std::sync::atomic::Ordering::Acquire)
            && self.placed.lock().iter().any(|p| p.window.faulted())
    }
}

/// One window and what is placed in it.
#[derive(Debug)]
struct Placed {
    ring: u16,
    area: RingArea,
    window: Window,
    pieces: Vec<Piece>,
}

/// Pages of one region's file, in IOVA order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Piece {
    region: usize,
    offset: u64,
    len: u64,
}

impl GuestMemory {
    /// Our address of ring `ring`'s `area`: `len` bytes at `iova`, which
    /// `view` maps with `perm` to guest pages of this table that are not
    /// contiguous here (`IotlbView::lookup_range` said so). The pages are
    /// placed in the (ring, area)'s window.
    pub fn ring_window(
        &self,
        ring: u16,
        area: RingArea,
        view: &IotlbView,
        iova: u64,
        len: u64,
        perm: u8,
    ) -> Result<u64, WindowRefusal> {
        let first = iova & !(WINDOW_PAGE - 1);
        let end = iova
            .checked_add(len)
            .and_then(|e| e.checked_next_multiple_of(WINDOW_PAGE))
            .filter(|&e| e - first <= WINDOW_LEN)
            .ok_or(WindowRefusal::Unmappable)?;
        let pieces = self.pieces(view, first, end, perm)?;
        let mut placed = self.windows.placed.lock();
        let i = match placed.iter().position(|p| p.ring == ring && p.area == area) {
            Some(i) => i,
            None if placed.len() >= MAX_WINDOWS => return Err(WindowRefusal::TooMany),
            None => {
                let window = Window::reserve(WINDOW_LEN).map_err(|e| {
                    crate::vlog!(Config, Err, "guest memory", "ring {ring} {area:?} area window: {e}");
                    WindowRefusal::Unmappable
                })?;
                placed.push(Placed { ring, area, window, pieces: Vec::new() });
                self.windows.made.store(true, std::sync::atomic::Ordering::Release);
                placed.len() - 1
            }
        };
        let p = &mut placed[i];
        if p.pieces != pieces {
            let runs: Vec<FilePages<'_>> = pieces
                .iter()
                .map(|q| FilePages { fd: self.regions[q.region].file(), offset: q.offset, len: q.len })
                .collect();
            p.pieces.clear();
            if let Err(e) = p.window.place(&runs) {
                crate::vlog!(Config, Err, "guest memory", "ring {ring} {area:?} area window: {e}");
                return Err(WindowRefusal::Unmappable);
            }
            p.pieces = pieces;
            crate::vlog!(
                Config,
                Debug,
                "guest memory",
                "ring {ring} {area:?} area: IOVA {iova:#x}+{len:#x} on {} scattered guest pages, mapped side by side at {:#x}",
                (end - first) / WINDOW_PAGE,
                p.window.addr()
            );
        }
        Ok(p.window.addr() + (iova - first))
    }

    /// The region file pages behind IOVAs `[first, end)` (page-aligned), in
    /// IOVA order, neighbours in one file merged.
    fn pieces(&self, view: &IotlbView, first: u64, end: u64, perm: u8) -> Result<Vec<Piece>, WindowRefusal> {
        let mut pieces: Vec<Piece> = Vec::new();
        let mut at = first;
        while at < end {
            let (hva, n) = view.lookup(at, end - at, perm).ok_or(WindowRefusal::Miss(at))?;
            let mut done = 0;
            while done < n {
                let h = hva + done;
                // The view only holds addresses inside this table's regions.
                let (region, r) = self
                    .regions
                    .iter()
                    .enumerate()
                    .find(|(_, r)| r.contains_hva(h))
                    .ok_or(WindowRefusal::Unmappable)?;
                if r.mapping.page_size() != WINDOW_PAGE {
                    return Err(WindowRefusal::HugePages);
                }
                let m = (n - done).min(r.host_user_addr + r.size - h);
                let offset = h - r.mapping.addr();
                if !offset.is_multiple_of(WINDOW_PAGE) || !m.is_multiple_of(WINDOW_PAGE) {
                    return Err(WindowRefusal::NotWholePages);
                }
                match pieces.last_mut() {
                    Some(l) if l.region == region && l.offset + l.len == offset => l.len += m,
                    _ => pieces.push(Piece { region, offset, len: m }),
                }
                done += m;
            }
            at += n;
        }
        Ok(pieces)
    }
}

#[cfg(test)]
#[allow(unsafe_code)]
mod tests {
    use super::*;
    use crate::guest::iotlb::{Iotlb, IotlbEntry, PERM_RO, PERM_RW};
    use crate::protocol::MemoryRegionDesc;
    use std::os::fd::OwnedFd;

    const IOVA: u64 = 0x8000_0000;
    const UADDR: u64 = 0x100_0000;
    const PAGE: u64 = WINDOW_PAGE;

    fn memfd(size: u64) -> OwnedFd {
        let fd = nix::sys::memfd::memfd_create(c"w", nix::sys::memfd::MemFdCreateFlag::MFD_CLOEXEC).unwrap();
        nix::unistd::ftruncate(&fd, size as i64).unwrap();
        fd
    }

    /// One 64 KiB region at guest-physical 0; its file, duplicated.
    fn memory() -> (GuestMemory, OwnedFd) {
        let fd = memfd(0x10000);
        let file = fd.try_clone().unwrap();
        let r = MemoryRegionDesc {
            guest_phys_addr: 0,
            memory_size: 0x10000,
            userspace_addr: UADDR,
            mmap_offset: 0,
        };
        (GuestMemory::map(&[r], vec![fd], false).unwrap(), file)
    }

    /// A view mapping IOVA page `i` to guest page `pages[i]`.
    fn view(mem: &GuestMemory, pages: &[u64], perm: u8) -> IotlbView {
        let mut t = Iotlb::default();
        for (i, &p) in pages.iter().enumerate() {
            assert!(t.update(IotlbEntry {
                iova: IOVA + i as u64 * PAGE,
                size: PAGE,
                uaddr: UADDR + p * PAGE,
                perm
            }));
        }
        t.view(mem)
    }

    fn page_byte(file: &OwnedFd, page: u64, off: u64) -> u8 {
        let mut b = [0u8];
        nix::sys::uio::pread(file, &mut b, (page * PAGE + off) as i64).unwrap();
        b[0]
    }

    /// Writes `v` at `hva`.
    ///
    /// # Safety
    /// `hva` lies in a window of a live table.
    unsafe fn poke(hva: u64, v: u8) {
        // SAFETY: per the caller's contract (windows stay mapped).
        unsafe { (hva as *mut u8).write_volatile(v) }
    }

    /// Reads the byte at `hva`.
    ///
    /// # Safety
    /// As `poke`.
    unsafe fn peek(hva: u64) -> u8 {
        // SAFETY: as in `poke`.
        unsafe { (hva as *const u8).read_volatile() }
    }

    #[test]
    fn a_scattered_area_is_seen_in_iova_order_and_keeps_its_window() {
        let (mem, file) = memory();
        let pages = [9, 4, 12, 5];
        let v = view(&mem, &pages, PERM_RW);
        let len = 4 * PAGE - 0x10;
        assert_eq!(
            v.lookup_range(IOVA + 0x10, len, PERM_RW),
            Err(crate::guest::iotlb::RangeFault::Scattered)
        );
        let at = mem.ring_window(0, RingArea::Desc, &v, IOVA + 0x10, len, PERM_RW).unwrap();
        assert_eq!(at % PAGE, 0x10, "the area's offset in its first page is kept");
        for (i, &p) in pages.iter().enumerate() {
            // SAFETY: inside the window just made; `mem` lives.
            unsafe { poke(at - 0x10 + i as u64 * PAGE + 0x20, 0x40 + i as u8) };
            assert_eq!(page_byte(&file, p, 0x20), 0x40 + i as u8, "IOVA page {i} is guest page {p}");
        }
        // Translated again, unchanged: the same window, nothing replaced.
        let again = mem.ring_window(0, RingArea::Desc, &v, IOVA + 0x10, len, PERM_RW).unwrap();
        assert_eq!(again, at);
        // SAFETY: inside the window; `mem` lives.
        assert_eq!(unsafe { peek(at - 0x10 + 0x20) }, 0x40);
        // The guest moved a page: the same window shows the new one.
        let moved = view(&mem, &[9, 4, 13, 5], PERM_RW);
        nix::sys::uio::pwrite(&file, &[0x77], (13 * PAGE + 0x20) as i64).unwrap();
        assert_eq!(mem.ring_window(0, RingArea::Desc, &moved, IOVA + 0x10, len, PERM_RW), Ok(at));
        // SAFETY: inside the window; `mem` lives.
        assert_eq!(unsafe { peek(at - 0x10 + 2 * PAGE + 0x20) }, 0x77);
        // Another area, or ring, has a window of its own.
        let used = mem.ring_window(0, RingArea::Used, &v, IOVA, 2 * PAGE, PERM_RW).unwrap();
        assert_ne!(used & !(PAGE - 1), at & !(PAGE - 1));
        assert!(!mem.faulted());
    }

    #[test]
    fn what_cannot_be_placed_is_refused() {
        let (mem, _file) = memory();
        let holey = {
            let mut t = Iotlb::default();
            for (i, p) in [(0u64, 3u64), (2, 1)] {
                assert!(t.update(IotlbEntry {
                    iova: IOVA + i * PAGE,
                    size: PAGE,
                    uaddr: UADDR + p * PAGE,
                    perm: PERM_RW
                }));
            }
            t.view(&mem)
        };
        assert_eq!(
            mem.ring_window(1, RingArea::Desc, &holey, IOVA, 3 * PAGE, PERM_RW),
            Err(WindowRefusal::Miss(IOVA + PAGE)),
            "the first page missing is named (and asked for)"
        );
        let read_only = view(&mem, &[3, 1], PERM_RO);
        assert_eq!(
            mem.ring_window(1, RingArea::Desc, &read_only, IOVA, 2 * PAGE, PERM_RW),
            Err(WindowRefusal::Miss(IOVA)),
            "rights are checked"
        );
        let v = view(&mem, &[3, 1], PERM_RW);
        assert_eq!(
            mem.ring_window(1, RingArea::Desc, &v, IOVA, WINDOW_LEN + 1, PERM_RW),
            Err(WindowRefusal::Unmappable),
            "longer than any ring area"
        );
        for ring in 0..MAX_WINDOWS as u16 {
            assert!(mem.ring_window(ring, RingArea::Used, &v, IOVA, 2 * PAGE, PERM_RW).is_ok());
        }
        assert_eq!(
            mem.ring_window(MAX_WINDOWS as u16, RingArea::Used, &v, IOVA, 2 * PAGE, PERM_RW),
            Err(WindowRefusal::TooMany)
        );
        assert!(
            mem.ring_window(0, RingArea::Used, &v, IOVA, 2 * PAGE, PERM_RW).is_ok(),
            "an existing one is reused"
        );
    }

    #[test]
    fn a_window_over_a_shrunk_file_is_recovered_and_faults_its_table() {
        let _s = crate::guest::mapping::tests::serial();
        let (mem, file) = memory();
        let v = view(&mem, &[7, 2], PERM_RW);
        let at = mem.ring_window(0, RingArea::Desc, &v, IOVA, 2 * PAGE, PERM_RW).unwrap();
        // SAFETY: inside the window just made; `mem` lives.
        unsafe { poke(at, 1) };
        nix::unistd::ftruncate(&file, 0).unwrap();
        // SAFETY: inside the window; `mem` lives.
        assert_eq!(unsafe { peek(at + PAGE) }, 0, "a lost page reads as zeros, without a crash");
        assert!(mem.faulted(), "the table is faulted: its device stops");
        assert_eq!(
            mem.ring_window(0, RingArea::Desc, &v, IOVA, 2 * PAGE, PERM_RW),
            Ok(at),
            "unchanged pieces: nothing is placed again"
        );
        let other = view(&mem, &[8, 2], PERM_RW);
        assert_eq!(
            mem.ring_window(0, RingArea::Desc, &other, IOVA, 2 * PAGE, PERM_RW),
            Err(WindowRefusal::Unmappable),
            "nothing is placed in a recovered window"
        );
    }
}
