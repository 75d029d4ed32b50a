//! The inflight-descriptor region (VHOST_USER_PROTOCOL_F_INFLIGHT_SHMFD):
//! shared memory in which a back-end records which descriptors it is working
//! on, so that after a crash and reconnect it can resubmit them. Layouts are
//! `rte_vhost_inflight_info_split/packed` (a wire format shared with QEMU).
//!
//! The region is writable by the front-end, so every index read from it is
//! bounds-checked before use, and fields are accessed with volatile reads and
//! writes through raw pointers (never Rust references).

use crate::guest::mapping::SharedMapping;
use crate::virtqueue::ring::RingMem;
use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::ptr::addr_of_mut;
use std::sync::Arc;

use crate::abi::{
    rte_vhost_inflight_desc_packed, rte_vhost_inflight_desc_split, rte_vhost_inflight_info_packed,
    rte_vhost_inflight_info_split, rte_vhost_resubmit_desc, rte_vhost_resubmit_info,
};

/// `INFLIGHT_ALIGNMENT`: each queue's area is rounded up to this.
const ALIGNMENT: u64 = 64;
/// `INFLIGHT_VERSION`.
const VERSION: u16 = 1;

/// Bytes one queue needs (header + `queue_size` descriptor states).
pub fn per_queue_size(queue_size: u16, packed: bool) -> u64 {
    let (desc, header) = if packed {
        (std::mem::size_of::<rte_vhost_inflight_desc_packed>() as u64, 8 + 2 * 6 + 9)
    } else {
        (std::mem::size_of::<rte_vhost_inflight_desc_split>() as u64, 8 + 2 * 4)
    };
    (desc * u64::from(queue_size) + header).div_ceil(ALIGNMENT) * ALIGNMENT
}

/// A mapped inflight region.
/// Why an inflight-tracking call did nothing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum InflightError {
    /// The ring has no inflight area (SET_INFLIGHT_FD not received).
    NoArea,
    /// The ring's layout is not the one the call is for.
    WrongLayout,
    /// An index beyond the ring or the area, or a ring not translated.
    OutOfRange,
}

impl std::fmt::Display for InflightError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            InflightError::NoArea => "no inflight area for the ring",
            InflightError::WrongLayout => "the ring's layout is not the one asked for",
            InflightError::OutOfRange => "index beyond the ring or its inflight area",
        })
    }
}

impl std::error::Error for InflightError {}

#[derive(Debug)]
pub struct InflightRegion {
    /// Held for its lifetime: unmapped when the region is dropped.
    _mapping: SharedMapping,
    /// Our address of the area (the mapping + offset) and its size.
    addr: usize,
    len: usize,
    fd: OwnedFd,
}

fn map_fd(fd: OwnedFd, len: u64, offset: u64) -> io::Result<InflightRegion> {
    let mapping = SharedMapping::map(fd.as_fd(), offset, len, false)
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e.to_string()))?;
    let addr = (mapping.addr() + offset) as usize;
    Ok(InflightRegion { _mapping: mapping, addr, len: len as usize, fd })
}

impl InflightRegion {
    /// GET_INFLIGHT_FD: a zeroed memfd region for `num_queues` queues.
    pub fn allocate(num_queues: u16, queue_size: u16, packed: bool) -> io::Result<InflightRegion> {
        let size = per_queue_size(queue_size, packed) * u64::from(num_queues);
        let fd =
            nix::sys::memfd::memfd_create(c"vhost-inflight", nix::sys::memfd::MemFdCreateFlag::MFD_CLOEXEC)?;
        nix::unistd::ftruncate(&fd, size as libc::off_t)?;
        let region = map_fd(fd, size, 0)?;
        if packed {
            for q in 0..usize::from(num_queues) {
                let base = region.addr + q * per_queue_size(queue_size, true) as usize;
                let info = base as *mut rte_vhost_inflight_info_packed;
                // SAFETY: `base` lies inside our fresh mapping, sized for
                // num_queues areas of queue_size descriptors each.
                unsafe {
                    addr_of_mut!((*info).used_wrap_counter).write_volatile(1);
                    addr_of_mut!((*info).old_used_wrap_counter).write_volatile(1);
                    let descs = addr_of_mut!((*info).desc).cast::<rte_vhost_inflight_desc_packed>();
                    for j in 0..queue_size {
                        addr_of_mut!((*descs.add(usize::from(j))).next).write_volatile(j.wrapping_add(1));
                    }
                }
            }
        }
        Ok(region)
    }

    /// SET_INFLIGHT_FD: maps what the front-end hands back after a reconnect.
    pub fn map(fd: OwnedFd, size: u64, offset: u64) -> io::Result<InflightRegion> {
        map_fd(fd, size, offset)
    }

    pub fn size(&self) -> u64 {
        self.len as u64
    }

    pub fn fd(&self) -> &OwnedFd {
        &self.fd
    }
}

/// One queue's view of the region.
#[derive(Debug, Clone)]
pub struct InflightQueue {
    _region: Arc<InflightRegion>,
    base: usize,
    packed: bool,
    /// Descriptor count, fixed when the queue was attached.
    desc_num: u16,
}

/// The resubmit list handed to the application (`rte_vhost_resubmit_info`),
/// kept at a stable address while the queue lives.
pub struct Resubmit {
    info: Box<rte_vhost_resubmit_info>,
    _list: Vec<rte_vhost_resubmit_desc>,
}

impl std::fmt::Debug for Resubmit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Resubmit").field("resubmit_num", &self.info.resubmit_num).finish()
    }
}

// SAFETY: the raw pointer inside `info` points into `_list`, owned alongside.
unsafe impl Send for Resubmit {}

impl Resubmit {
    pub fn as_ptr(&mut self) -> *mut rte_vhost_resubmit_info {
        &mut *self.info
    }
}

impl InflightQueue {
    /// Attaches queue `index` of `region` (with `queue_size` descriptors);
    /// `None` if the region is too small for it.
    pub fn attach(
        region: &Arc<InflightRegion>,
        index: u16,
        queue_size: u16,
        packed: bool,
    ) -> Option<InflightQueue> {
        let per = per_queue_size(queue_size, packed);
        let start = per.checked_mul(u64::from(index))?;
        if start.checked_add(per)? > region.size() || queue_size == 0 {
            return None;
        }
        let q = InflightQueue {
            _region: Arc::clone(region),
            base: region.addr + start as usize,
            packed,
            desc_num: queue_size,
        };
        if packed {
            // SAFETY: header lies inside the checked per-queue area.
            unsafe { addr_of_mut!((*q.packed_info()).desc_num).write_volatile(queue_size) };
        } else {
            // SAFETY: as above.
            unsafe { addr_of_mut!((*q.split_info()).desc_num).write_volatile(queue_size) };
        }
        Some(q)
    }

    pub fn is_packed(&self) -> bool {
        self.packed
    }

    /// The header pointer the C API returns.
    pub fn split_info(&self) -> *mut rte_vhost_inflight_info_split {
        self.base as *mut _
    }

    pub fn packed_info(&self) -> *mut rte_vhost_inflight_info_packed {
        self.base as *mut _
    }

    fn split_desc(&self, i: u16) -> Option<*mut rte_vhost_inflight_desc_split> {
        // SAFETY: only computes an address; i < desc_num keeps it inside the area.
        (i < self.desc_num).then(|| unsafe {
            addr_of_mut!((*self.split_info()).desc)
                .cast::<rte_vhost_inflight_desc_split>()
                .add(usize::from(i))
        })
    }

    fn packed_desc(&self, i: u16) -> Option<*mut rte_vhost_inflight_desc_packed> {
        // SAFETY: as above.
        (i < self.desc_num).then(|| unsafe {
            addr_of_mut!((*self.packed_info()).desc)
                .cast::<rte_vhost_inflight_desc_packed>()
                .add(usize::from(i))
        })
    }

    /// `rte_vhost_set_inflight_desc_split`.
    pub fn set_split(&self, idx: u16, counter: u64) -> Result<(), InflightError> {
        let d = self.split_desc(idx).ok_or(InflightError::OutOfRange)?;
        // SAFETY: bounds-checked descriptor inside the live region.
        unsafe {
            addr_of_mut!((*d).counter).write_volatile(counter);
            addr_of_mut!((*d).inflight).write_volatile(1);
        }
        Ok(())
    }

    /// `rte_vhost_clr_inflight_desc_split`.
    pub fn clear_split(&self, last_used_idx: u16, idx: u16) -> Result<(), InflightError> {
        let d = self.split_desc(idx).ok_or(InflightError::OutOfRange)?;
        std::sync::atomic::fence(std::sync::atomic::Ordering::SeqCst);
        // SAFETY: bounds-checked descriptor and header inside the live region.
        unsafe { addr_of_mut!((*d).inflight).write_volatile(0) };
        std::sync::atomic::fence(std::sync::atomic::Ordering::SeqCst);
        // SAFETY: as above.
        unsafe { addr_of_mut!((*self.split_info()).used_idx).write_volatile(last_used_idx) };
        Ok(())
    }

    /// `rte_vhost_set_last_inflight_io_split`.
    pub fn set_last_split(&self, idx: u16) -> Result<(), InflightError> {
        self.split_desc(idx).ok_or(InflightError::OutOfRange)?;
        // SAFETY: header inside the live region.
        unsafe { addr_of_mut!((*self.split_info()).last_inflight_io).write_volatile(idx) };
        Ok(())
    }

    /// `rte_vhost_set_inflight_desc_packed`: records the chain `head..=last`
    /// of the packed ring `ring` (our address of its descriptor table, `size`
    /// entries) and returns the inflight entry that heads it.
    pub fn set_packed(
        &self,
        ring: &RingMem,
        head: u16,
        last: u16,
        counter: u64,
    ) -> Result<u16, InflightError> {
        let size = ring.size();
        if head >= size || last >= size || !ring.is_packed() {
            return Err(InflightError::OutOfRange);
        }
        let info = self.packed_info();
        // SAFETY: header inside the live region.
        let old_free_head = unsafe { addr_of_mut!((*info).old_free_head).read_volatile() };
        let entry = self.packed_desc(old_free_head).ok_or(InflightError::OutOfRange)?;
        // SAFETY: bounds-checked entry.
        unsafe {
            addr_of_mut!((*entry).num).write_volatile(0);
            addr_of_mut!((*entry).counter).write_volatile(counter);
            addr_of_mut!((*entry).inflight).write_volatile(1);
        }
        let mut free_head = old_free_head;
        let mut h = head;
        let stop = (last + 1) % size;
        // At most `size` descriptors: a corrupted free list cannot loop us.
        for _ in 0..size {
            if h == stop {
                break;
            }
            let slot = self.packed_desc(free_head).ok_or(InflightError::OutOfRange)?;
            let d = ring.read_packed_desc(h);
            // SAFETY: `slot` and `entry` are bounds-checked entries of the
            // live region.
            unsafe {
                addr_of_mut!((*entry).num).write_volatile(addr_of_mut!((*entry).num).read_volatile() + 1);
                addr_of_mut!((*slot).addr).write_volatile(d.addr);
                addr_of_mut!((*slot).len).write_volatile(d.len);
                addr_of_mut!((*slot).flags).write_volatile(d.flags);
                addr_of_mut!((*slot).id).write_volatile(d.next_or_id);
                addr_of_mut!((*entry).last).write_volatile(free_head);
                free_head = addr_of_mut!((*slot).next).read_volatile();
                addr_of_mut!((*info).free_head).write_volatile(free_head);
            }
            h = (h + 1) % size;
        }
        // SAFETY: header inside the live region.
        unsafe { addr_of_mut!((*info).old_free_head).write_volatile(free_head) };
        Ok(old_free_head)
    }

    /// `rte_vhost_clr_inflight_desc_packed`.
    pub fn clear_packed(&self, head: u16) -> Result<(), InflightError> {
        let d = self.packed_desc(head).ok_or(InflightError::OutOfRange)?;
        let info = self.packed_info();
        std::sync::atomic::fence(std::sync::atomic::Ordering::SeqCst);
        // SAFETY: bounds-checked descriptor and header inside the live region.
        unsafe { addr_of_mut!((*d).inflight).write_volatile(0) };
        std::sync::atomic::fence(std::sync::atomic::Ordering::SeqCst);
        // SAFETY: header fields inside the live region.
        unsafe {
            addr_of_mut!((*info).old_free_head)
                .write_volatile(addr_of_mut!((*info).free_head).read_volatile());
            addr_of_mut!((*info).old_used_idx).write_volatile(addr_of_mut!((*info).used_idx).read_volatile());
            addr_of_mut!((*info).old_used_wrap_counter)
                .write_volatile(addr_of_mut!((*info).used_wrap_counter).read_volatile());
        }
        Ok(())
    }

    /// `rte_vhost_set_last_inflight_io_packed`.
    pub fn set_last_packed(&self, head: u16) -> Result<(), InflightError> {
        let d = self.packed_desc(head).ok_or(InflightError::OutOfRange)?;
        let info = self.packed_info();
        // SAFETY: bounds-checked descriptor; `last` is checked before use.
        unsafe {
            let last = addr_of_mut!((*d).last).read_volatile();
            let last_desc = self.packed_desc(last).ok_or(InflightError::OutOfRange)?;
            addr_of_mut!((*last_desc).next).write_volatile(addr_of_mut!((*info).free_head).read_volatile());
            addr_of_mut!((*info).free_head).write_volatile(head);
            let num = addr_of_mut!((*d).num).read_volatile();
            let mut used = addr_of_mut!((*info).used_idx).read_volatile().wrapping_add(num);
            if used >= self.desc_num {
                used -= self.desc_num;
                let w = addr_of_mut!((*info).used_wrap_counter).read_volatile();
                addr_of_mut!((*info).used_wrap_counter).write_volatile(u8::from(w == 0));
            }
            addr_of_mut!((*info).used_idx).write_volatile(used);
        }
        Ok(())
    }

    /// `rte_vhost_get_vring_base_from_inflight` (packed only).
    pub fn base_from_packed(&self) -> u16 {
        let info = self.packed_info();
        // SAFETY: header inside the live region.
        let (idx, wrap) = unsafe {
            (
                addr_of_mut!((*info).old_used_idx).read_volatile(),
                addr_of_mut!((*info).old_used_wrap_counter).read_volatile() != 0,
            )
        };
        super::packed::PackedPos { idx: idx & 0x7fff, wrap }.to_wire()
    }

    /// At SET_VRING_KICK (DPDK's `vhost_check_queue_inflights_*`): a new
    /// region gets its version stamped; an old one is repaired and scanned
    /// for descriptors still in flight. Returns the resubmit list (sorted by
    /// submission order, newest first), the next counter, and for split rings
    /// how many entries to add to `last_avail_idx`. `used_idx` is the split
    /// used ring's current index.
    pub fn recover(&self, split_used_idx: Option<u16>) -> (Option<Resubmit>, u64, u16) {
        let mut found: Vec<rte_vhost_resubmit_desc> = Vec::new();
        // SAFETY: header fields and bounds-checked descriptors inside the
        // live region.
        unsafe {
            if self.packed {
                let info = self.packed_info();
                if addr_of_mut!((*info).version).read_volatile() == 0 {
                    addr_of_mut!((*info).version).write_volatile(VERSION);
                    return (None, 0, 0);
                }
                let old_used = addr_of_mut!((*info).old_used_idx).read_volatile();
                if addr_of_mut!((*info).used_idx).read_volatile() != old_used {
                    let completed =
                        self.packed_desc(old_used).map(|d| addr_of_mut!((*d).inflight).read_volatile() == 0);
                    if completed == Some(true) {
                        addr_of_mut!((*info).old_used_idx)
                            .write_volatile(addr_of_mut!((*info).used_idx).read_volatile());
                        addr_of_mut!((*info).old_used_wrap_counter)
                            .write_volatile(addr_of_mut!((*info).used_wrap_counter).read_volatile());
                        addr_of_mut!((*info).old_free_head)
                            .write_volatile(addr_of_mut!((*info).free_head).read_volatile());
                    } else {
                        addr_of_mut!((*info).used_idx).write_volatile(old_used);
                        addr_of_mut!((*info).used_wrap_counter)
                            .write_volatile(addr_of_mut!((*info).old_used_wrap_counter).read_volatile());
                        addr_of_mut!((*info).free_head)
                            .write_volatile(addr_of_mut!((*info).old_free_head).read_volatile());
                    }
                }
                for i in 0..self.desc_num {
                    let d = self.packed_desc(i).expect("i < desc_num");
                    if addr_of_mut!((*d).inflight).read_volatile() == 1 {
                        found.push(rte_vhost_resubmit_desc {
                            index: i,
                            counter: addr_of_mut!((*d).counter).read_volatile(),
                        });
                    }
                }
            } else {
                let info = self.split_info();
                if addr_of_mut!((*info).version).read_volatile() == 0 {
                    addr_of_mut!((*info).version).write_volatile(VERSION);
                    return (None, 0, 0);
                }
                let last_io = addr_of_mut!((*info).last_inflight_io).read_volatile();
                if let Some(used) = split_used_idx {
                    if addr_of_mut!((*info).used_idx).read_volatile() != used {
                        if let Some(d) = self.split_desc(last_io) {
                            addr_of_mut!((*d).inflight).write_volatile(0);
                        }
                        std::sync::atomic::fence(std::sync::atomic::Ordering::SeqCst);
                        addr_of_mut!((*info).used_idx).write_volatile(used);
                    }
                }
                for i in 0..self.desc_num {
                    let d = self.split_desc(i).expect("i < desc_num");
                    if addr_of_mut!((*d).inflight).read_volatile() == 1 {
                        found.push(rte_vhost_resubmit_desc {
                            index: i,
                            counter: addr_of_mut!((*d).counter).read_volatile(),
                        });
                    }
                }
            }
        }
        if found.is_empty() {
            return (None, 0, 0);
        }
        found.sort_by_key(|d| std::cmp::Reverse(d.counter));
        let next_counter = found[0].counter.wrapping_add(1);
        let n = found.len() as u16;
        let mut list = found;
        let info = Box::new(rte_vhost_resubmit_info { resubmit_list: list.as_mut_ptr(), resubmit_num: n });
        let skip = if self.packed { 0 } else { n };
        (Some(Resubmit { info, _list: list }), next_counter, skip)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::guest::GuestMemory;
    use crate::virtqueue::ring::TranslatedRing;

    #[test]
    fn sizes_match_dpdk_layout() {
        // 16-byte split entries + 16-byte header, rounded to 64.
        assert_eq!(per_queue_size(128, false), (16 * 128 + 16u64).div_ceil(64) * 64);
        assert_eq!(per_queue_size(256, true), (32 * 256 + 29u64).div_ceil(64) * 64);
    }

    #[test]
    fn split_resubmit_after_reconnect() {
        let region = Arc::new(InflightRegion::allocate(2, 8, false).unwrap());
        let q = InflightQueue::attach(&region, 1, 8, false).unwrap();
        assert!(q.recover(Some(0)).0.is_none(), "first kick only stamps the version");
        q.set_split(3, 10).unwrap();
        q.set_split(5, 11).unwrap();
        q.set_split(6, 12).unwrap();
        q.clear_split(1, 5).unwrap();
        assert!(q.set_split(8, 13).is_err(), "index beyond the ring is refused");
        let (resubmit, next, skip) = q.recover(Some(1));
        let mut r = resubmit.unwrap();
        // SAFETY: test reads the list it owns.
        let info = unsafe { &*r.as_ptr() };
        assert_eq!(info.resubmit_num, 2);
        // SAFETY: as above, resubmit_num entries.
        let list = unsafe { std::slice::from_raw_parts(info.resubmit_list, 2) };
        assert_eq!((list[0].index, list[1].index), (6, 3), "newest first");
        assert_eq!((next, skip), (13, 2));
        assert!(InflightQueue::attach(&region, 2, 8, false).is_none(), "queue beyond the region");
    }

    #[test]
    fn packed_corrupted_free_list_is_bounded() {
        let region = Arc::new(InflightRegion::allocate(1, 4, true).unwrap());
        let q = InflightQueue::attach(&region, 0, 4, true).unwrap();
        // Four 16-byte descriptors, 16-byte aligned.
        let ring = [0u128; 4];
        // Corrupt the free list: next points far outside.
        let d0 = q.packed_desc(0).unwrap();
        // SAFETY: test write into the live region.
        unsafe { addr_of_mut!((*d0).next).write_volatile(9999) };
        let mem = GuestMemory::default();
        // SAFETY: a 4-entry packed descriptor ring in a local array that
        // outlives `mem` (only its descriptors are read).
        let ring = unsafe { TranslatedRing::new(&mem, (ring.as_ptr() as u64, 0, 0), 4, true) };
        assert!(q.set_packed(&ring.in_table(&mem), 0, 2, 1).is_err());
    }
}
