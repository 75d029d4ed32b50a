//! Descriptor chains turned into bounded lists of guest memory segments.
//!
//! A chain is walked at most once per use, each descriptor copied out once,
//! and every buffer translated by `GuestMemory` (a buffer spanning two
//! regions becomes two segments). Anything malformed — a loop, a chain longer
//! than the ring, an index out of range, nested or misplaced indirect tables,
//! a buffer outside guest memory, the wrong direction — is an error, never a
//! panic or an endless walk.

use crate::guest::slice::{prefetch, prefetch_write, GuestSlice};
use crate::guest::{AddressSpace, Fault, GuestMemory};
use crate::virtqueue::ring::{Desc, DescTable, Layout};

/// Descriptor flags (split and packed share NEXT/WRITE/INDIRECT).
pub const F_NEXT: u16 = 1;
pub const F_WRITE: u16 = 2;
pub const F_INDIRECT: u16 = 4;

/// Most segments one packet may use (DPDK's BUF_VECTOR_MAX).
pub const MAX_SEGS: usize = 256;

/// Why a chain was rejected.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ChainError {
    /// More descriptors than the ring (or indirect table) holds: a loop.
    TooLong,
    IndexOutOfRange,
    /// A buffer (or indirect table) not inside guest memory.
    BadAddress,
    /// An indirect descriptor inside an indirect table, or chained.
    BadIndirect,
    /// An indirect table with more entries than the ring allows.
    IndirectTooLarge,
    /// More segments than `MAX_SEGS`.
    TooManySegments,
    /// An address the IOTLB does not map yet: not the guest's fault; the
    /// front-end is asked, the chain is taken again later.
    IotlbMiss {
        iova: u64,
        perm: u8,
    },
}

impl From<Fault> for ChainError {
    fn from(f: Fault) -> ChainError {
        match f {
            Fault::Unmapped => ChainError::BadAddress,
            Fault::Miss { iova, perm } => ChainError::IotlbMiss { iova, perm },
        }
    }
}

impl std::fmt::Display for ChainError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let s = match self {
            ChainError::TooLong => "descriptor chain longer than the ring (loop?)",
            ChainError::IndexOutOfRange => "descriptor index out of range",
            ChainError::BadAddress => "descriptor buffer outside guest memory",
            ChainError::BadIndirect => "invalid indirect descriptor",
            ChainError::IndirectTooLarge => "indirect table larger than the ring",
            ChainError::TooManySegments => "too many buffer segments",
            ChainError::IotlbMiss { .. } => "IOTLB miss",
        };
        f.write_str(s)
    }
}

/// Most descriptor chains one mergeable packet may take.
pub const MAX_CHAINS: usize = 64;

/// One descriptor chain taken for a packet: its head (split) or buffer id
/// (packed), ring slots used (packed), and capacity in bytes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ChainInfo {
    pub id: u16,
    pub count: u16,
    pub cap: u32,
}

/// Segments gathered for one packet (possibly several chains when
/// mergeable), and those chains. Fixed arrays, kept per ring: no allocation
/// or initialisation on the datapath.
pub struct BufVec {
    /// Slices of the table `table` (a `GuestMemory::id`), kept apart from
    /// it: handed out only with a borrow of that same table (`segs`).
    segs: [GuestSlice<'static>; MAX_SEGS],
    table: u64,
    n: usize,
    total: u64,
    pub chains: [ChainInfo; MAX_CHAINS],
    pub nchains: usize,
}

impl Default for BufVec {
    fn default() -> Self {
        BufVec {
            segs: [GuestSlice::default(); MAX_SEGS],
            table: 0,
            n: 0,
            total: 0,
            chains: [ChainInfo::default(); MAX_CHAINS],
            nchains: 0,
        }
    }
}

impl std::fmt::Debug for BufVec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BufVec").field("n", &self.n).field("total", &self.total).finish()
    }
}

impl BufVec {
    pub fn clear(&mut self) {
        self.n = 0;
        self.total = 0;
        self.nchains = 0;
    }

    /// Records a chain whose segments were just added (since `total_before`).
    #[inline]
    pub fn push_chain(&mut self, id: u16, count: u16, total_before: u64) -> bool {
        if self.nchains == MAX_CHAINS {
            return false;
        }
        let cap = (self.total - total_before) as u32;
        self.chains[self.nchains] = ChainInfo { id, count, cap };
        self.nchains += 1;
        true
    }
    /// The segments gathered, which must have come from `mem`.
    #[inline]
    pub fn segs<'m>(&'m self, mem: &'m GuestMemory) -> &'m [GuestSlice<'m>] {
        assert!(self.n == 0 || self.table == mem.id(), "segments of another memory table");
        &self.segs[..self.n]
    }
    pub fn total(&self) -> u64 {
        self.total
    }

    /// Adds guest buffer [gpa, gpa+len), split where it crosses regions.
    #[inline]
    #[allow(unsafe_code)]
    pub fn add_buffer<'m>(
        &mut self,
        mem: &impl AddressSpace<'m>,
        mut gpa: u64,
        len: u32,
    ) -> Result<(), ChainError> {
        if self.n == 0 {
            self.table = mem.mem().id();
        }
        let mut left = len;
        while left > 0 {
            let s = mem.slice(gpa, left)?;
            if self.n == MAX_SEGS {
                return Err(ChainError::TooManySegments);
            }
            // SAFETY: the slice is kept apart from `mem` but handed out
            // only by `segs`, with a borrow of the same table (its id
            // checked), which keeps the mapping alive while it is used.
            self.segs[self.n] = unsafe { s.detach() };
            self.n += 1;
            self.total += u64::from(s.len());
            gpa = gpa.checked_add(u64::from(s.len())).ok_or(ChainError::BadAddress)?;
            left -= s.len();
        }
        Ok(())
    }
}

/// Adds a descriptor's buffer. Its WRITE flag is not enforced, as DPDK does
/// not: DPDK's own virtio-user marks the header of packed indirect TX tables
/// device-writable, and direction is no memory-safety matter for us.
#[inline]
fn take<'m>(mem: &impl AddressSpace<'m>, d: &Desc, out: &mut BufVec) -> Result<(), ChainError> {
    out.add_buffer(mem, d.addr, d.len)
}

/// The common chain resolved without a walk: one descriptor (no NEXT, no
/// INDIRECT) whose buffer holds at least `needed` bytes and is contiguous in
/// our address space. `None` sends the caller to the full walk. Always
/// inline: called once per packet, out of line it costs ~80 instructions a
/// packet, and the compiler's own choice changes with its callers' shape.
#[inline(always)]
pub fn lone_buffer<'m>(mem: &impl AddressSpace<'m>, d: &Desc, needed: u64) -> Option<GuestSlice<'m>> {
    if d.flags & (F_NEXT | F_INDIRECT) != 0 || u64::from(d.len) < needed {
        return None;
    }
    mem.slice(d.addr, d.len).ok().filter(|s| s.len() == d.len)
}

/// Prefetches the start of guest buffer `d` (a virtio-net header and the
/// first 116 bytes after it), translating it first.
#[inline]
pub fn prefetch_buffer<'m>(mem: &impl AddressSpace<'m>, d: Desc, write: bool) {
    if let Ok(s) = mem.slice(d.addr, d.len) {
        prefetch_segment(s, write);
    }
}

/// Prefetches the first 128 bytes of a translated buffer. For a buffer the
/// device writes, the packet's lines are fetched for writing and the
/// header's (12 bytes) only for reading, as it is usually left as it is. A
/// prefetch never faults, so the addresses are not clamped to tiny buffers
/// (at most a neighbouring line is fetched).
#[inline]
pub fn prefetch_segment(seg: GuestSlice<'_>, write: bool) {
    let last = seg.hva().wrapping_add(u64::from(seg.len().min(128))).wrapping_sub(1);
    prefetch(seg.hva());
    if write {
        prefetch_write(seg.hva().wrapping_add(12));
        prefetch_write(last);
    } else {
        prefetch(last);
    }
}

/// Locates the indirect table described by `d` (which must not chain on),
/// of at most `max_entries` (as DPDK bounds them: a table larger than the
/// ring is refused whatever it holds, so a walk costs at most as many
/// descriptor reads as the ring has).
fn indirect_table<'m>(
    mem: &impl AddressSpace<'m>,
    d: &Desc,
    max_entries: u32,
) -> Result<DescTable<'m>, ChainError> {
    if d.flags & F_NEXT != 0 || d.len == 0 || !d.len.is_multiple_of(16) {
        return Err(ChainError::BadIndirect);
    }
    if d.len / 16 > max_entries {
        return Err(ChainError::IndirectTooLarge);
    }
    DescTable::new(mem.table(d.addr, d.len)?).ok_or(ChainError::BadIndirect)
}

/// Visits a split-layout indirect table (entries linked by `next`) of at
/// most `ring_size` entries (DPDK's bound for split rings).
fn visit_indirect<'m>(
    mem: &impl AddressSpace<'m>,
    ring_size: u16,
    d: &Desc,
    visit: &mut impl FnMut(&Desc) -> Result<(), ChainError>,
) -> Result<(), ChainError> {
    let table = indirect_table(mem, d, u32::from(ring_size))?;
    let n = table.len();
    let mut i: u32 = 0;
    // At most n descriptors: the table cannot loop us.
    for _ in 0..n {
        let e = table.read(i, Layout::Split);
        if e.flags & F_INDIRECT != 0 {
            return Err(ChainError::BadIndirect);
        }
        visit(&e)?;
        if e.flags & F_NEXT == 0 {
            return Ok(());
        }
        i = u32::from(e.next_or_id);
        if i >= n {
            return Err(ChainError::IndexOutOfRange);
        }
    }
    Err(ChainError::TooLong)
}

/// Visits the buffer descriptors of the split-ring chain at `head` (through
/// an indirect table if it has one), bounded: a chain cannot loop, leave
/// the ring or the table; `read` fetches ring descriptor i.
#[inline]
pub(super) fn visit_split<'m>(
    mem: &impl AddressSpace<'m>,
    size: u16,
    head: u16,
    read: impl Fn(u16) -> Desc,
    mut visit: impl FnMut(&Desc) -> Result<(), ChainError>,
) -> Result<(), ChainError> {
    if head >= size {
        return Err(ChainError::IndexOutOfRange);
    }
    let mut i = head;
    for _ in 0..size {
        let d = read(i);
        if d.flags & F_INDIRECT != 0 {
            return visit_indirect(mem, size, &d, &mut visit);
        }
        visit(&d)?;
        if d.flags & F_NEXT == 0 {
            return Ok(());
        }
        i = d.next_or_id;
        if i >= size {
            return Err(ChainError::IndexOutOfRange);
        }
    }
    Err(ChainError::TooLong)
}

/// Walks a split-ring chain starting at `head` into `out`; `read` fetches
/// descriptor i.
#[inline]
pub(super) fn walk_split<'m>(
    mem: &impl AddressSpace<'m>,
    size: u16,
    head: u16,
    read: impl Fn(u16) -> Desc,
    out: &mut BufVec,
) -> Result<(), ChainError> {
    visit_split(mem, size, head, read, |d| take(mem, d, out))
}

/// A packed-ring chain: how many ring slots it used and its buffer id.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PackedChain {
    pub count: u16,
    pub id: u16,
}

/// Walks a packed-ring chain starting at slot `start` (whose availability the
/// caller checked); `read` fetches slot i (modulo the size).
pub(super) fn walk_packed<'m>(
    mem: &impl AddressSpace<'m>,
    size: u16,
    start: u16,
    read: impl Fn(u16) -> Desc,
    out: &mut BufVec,
) -> Result<PackedChain, ChainError> {
    let mut count: u16 = 0;
    let mut i = start;
    while count < size {
        let d = read(i);
        count += 1;
        if d.flags & F_INDIRECT != 0 {
            if count != 1 {
                return Err(ChainError::BadIndirect);
            }
            // Packed indirect tables are used whole, in order; only the
            // WRITE flag of their entries has meaning.
            // Fewer entries than the ring (DPDK's bound for packed rings).
            let table = indirect_table(mem, &d, u32::from(size) - 1)?;
            for k in 0..table.len() {
                let e = table.read(k, Layout::Packed);
                take(mem, &e, out)?;
            }
            return Ok(PackedChain { count, id: d.next_or_id });
        }
        take(mem, &d, out)?;
        if d.flags & F_NEXT == 0 {
            return Ok(PackedChain { count, id: d.next_or_id });
        }
        i = if i + 1 == size { 0 } else { i + 1 };
    }
    Err(ChainError::TooLong)
}

#[cfg(test)]
#[allow(unsafe_code)]
mod tests {
    use std::os::fd::OwnedFd;

    use proptest::prelude::*;

    use super::*;
    use crate::protocol::MemoryRegionDesc;
    use crate::virtqueue::ring::Layout;

    /// Two 64 KiB regions: gpa [0, 64K) and [64K, 128K), one per memfd.
    fn memory() -> GuestMemory {
        let fd = || -> OwnedFd {
            let fd =
                nix::sys::memfd::memfd_create(c"t", nix::sys::memfd::MemFdCreateFlag::MFD_CLOEXEC).unwrap();
            nix::unistd::ftruncate(&fd, 0x10000).unwrap();
            fd
        };
        let r = |gpa| MemoryRegionDesc {
            guest_phys_addr: gpa,
            memory_size: 0x10000,
            userspace_addr: gpa,
            mmap_offset: 0,
        };
        GuestMemory::map(&[r(0), r(0x10000)], vec![fd(), fd()], false).unwrap()
    }

    /// A descriptor table held in a test array (split layout semantics).
    fn table(descs: &[(u64, u32, u16, u16)]) -> impl Fn(u16) -> Desc + '_ {
        move |i| {
            let (addr, len, flags, next) = descs[usize::from(i)];
            Desc { addr, len, flags, next_or_id: next }
        }
    }

    /// Guest-physical addresses of `mem` (no IOMMU).
    fn gpa(mem: &GuestMemory) -> crate::guest::PhysicalSpace<'_> {
        crate::guest::PhysicalSpace(mem)
    }

    fn walk(mem: &GuestMemory, descs: &[(u64, u32, u16, u16)], head: u16) -> Result<BufVec, ChainError> {
        let mut out = BufVec::default();
        walk_split(&gpa(mem), descs.len() as u16, head, table(descs), &mut out).map(|()| out)
    }

    #[test]
    fn chains_become_segments() {
        let mem = memory();
        let v = walk(&mem, &[(0x100, 12, F_NEXT, 1), (0x2000, 1500, 0, 0)], 0).unwrap();
        assert_eq!(v.segs(&mem).len(), 2);
        assert_eq!(v.total(), 1512);
        // A buffer across the two regions is split, never assumed contiguous.
        let v = walk(&mem, &[(0xff00, 0x200, 0, 0)], 0).unwrap();
        assert_eq!(v.segs(&mem).iter().map(|s| s.len()).collect::<Vec<_>>(), vec![0x100, 0x100]);
        assert_eq!(v.segs(&mem)[1].hva(), mem.gpa_to_hva(0x10000, 1).unwrap().0);
    }

    #[test]
    fn malformed_chains_are_rejected() {
        let mem = memory();
        let e = |d: &[(u64, u32, u16, u16)]| walk(&mem, d, 0).unwrap_err();
        assert_eq!(e(&[(0, 8, F_NEXT, 1), (0, 8, F_NEXT, 0)]), ChainError::TooLong, "loop");
        assert_eq!(e(&[(0, 8, F_NEXT, 7)]), ChainError::IndexOutOfRange, "next beyond the ring");
        assert_eq!(e(&[(0x20000, 8, 0, 0)]), ChainError::BadAddress, "outside guest memory");
        assert_eq!(e(&[(0x1fff0, 0x20, 0, 0)]), ChainError::BadAddress, "runs off the end of memory");
        assert_eq!(e(&[(u64::MAX - 4, 8, 0, 0)]), ChainError::BadAddress, "address wraps");
        assert_eq!(walk(&mem, &[(0, 8, 0, 0)], 3).unwrap_err(), ChainError::IndexOutOfRange, "head beyond");
        // Indirect: length not a multiple of 16, chained on, nested.
        assert_eq!(e(&[(0x1000, 24, F_INDIRECT, 0)]), ChainError::BadIndirect);
        assert_eq!(e(&[(0x1000, 32, F_INDIRECT | F_NEXT, 0)]), ChainError::BadIndirect);
        let slot = |i: u64| mem.gpa_to_hva(0x1000 + 16 * i, 16).unwrap().0;
        let put = |i: u64, addr: u64, len: u32, flags: u16, next: u16| {
            // SAFETY: a descriptor slot inside `mem`, alive for the test.
            let s = unsafe { GuestSlice::new(slot(i), 16) };
            let mut b = [0u8; 16];
            b[0..8].copy_from_slice(&addr.to_le_bytes());
            b[8..12].copy_from_slice(&len.to_le_bytes());
            b[12..14].copy_from_slice(&flags.to_le_bytes());
            b[14..16].copy_from_slice(&next.to_le_bytes());
            crate::guest::slice::Writer::new(None).write(s, 0, &b);
        };
        put(0, 0x3000, 100, F_INDIRECT, 0);
        assert_eq!(e(&[(0x1000, 16, F_INDIRECT, 0)]), ChainError::BadIndirect, "nested indirect");
        put(0, 0x3000, 100, F_NEXT, 1);
        put(1, 0x4000, 200, F_NEXT, 0);
        // (A second ring slot: a table may have as many entries as the ring.)
        let two = [(0x1000, 32, F_INDIRECT, 0), (0, 0, 0, 0)];
        assert_eq!(e(&two), ChainError::TooLong, "loop inside the table");
        put(1, 0x4000, 200, F_NEXT, 9);
        assert_eq!(e(&two), ChainError::IndexOutOfRange, "next beyond the table");
        put(1, 0x4000, 200, 0, 0);
        assert_eq!(walk(&mem, &two, 0).unwrap().total(), 300);
        assert_eq!(
            e(&[(0x1000, 32, F_INDIRECT, 0)]),
            ChainError::IndirectTooLarge,
            "more entries than the ring"
        );
        // Packed: fewer entries than the ring.
        let rd = |_: u16| Desc { addr: 0x1000, len: 32, flags: F_INDIRECT, next_or_id: 0 };
        assert_eq!(
            walk_packed(&gpa(&mem), 2, 0, rd, &mut BufVec::default()),
            Err(ChainError::IndirectTooLarge)
        );
        assert!(walk_packed(&gpa(&mem), 3, 0, rd, &mut BufVec::default()).is_ok());
        let table = DescTable::new(mem.slice(0x1000, 32).unwrap()).unwrap();
        assert_eq!(table.read(1, Layout::Split).len, 200);
    }

    #[test]
    fn packed_chains_wrap_and_are_bounded() {
        let mem = memory();
        let ring = [(0u64, 10u32, F_NEXT, 0u16), (0, 10, 0, 7), (0, 10, F_NEXT, 0), (0, 10, F_NEXT, 0)];
        let rd = |i: u16| {
            let (addr, len, flags, id) = ring[usize::from(i % 4)];
            Desc { addr, len, flags, next_or_id: id }
        };
        let mut out = BufVec::default();
        // Starting at slot 2: 2, 3, wraps to 0, ends at 1 (id 7).
        assert_eq!(walk_packed(&gpa(&mem), 4, 2, rd, &mut out), Ok(PackedChain { count: 4, id: 7 }));
        let all_next = |_: u16| Desc { addr: 0, len: 1, flags: F_NEXT, next_or_id: 0 };
        assert_eq!(walk_packed(&gpa(&mem), 4, 0, all_next, &mut BufVec::default()), Err(ChainError::TooLong));
    }

    #[test]
    fn lone_buffer_takes_only_a_plain_contiguous_descriptor() {
        let mem = memory();
        let d = |addr, len, flags| Desc { addr, len, flags, next_or_id: 0 };
        let seg = lone_buffer(&gpa(&mem), &d(0x100, 1500, F_WRITE), 76).expect("plain buffer");
        assert_eq!((seg.hva(), seg.len()), (mem.gpa_to_hva(0x100, 1).unwrap().0, 1500));
        assert_eq!(lone_buffer(&gpa(&mem), &d(0x100, 1500, F_NEXT), 76), None, "chained on: needs the walk");
        assert_eq!(
            lone_buffer(&gpa(&mem), &d(0x100, 1500, F_INDIRECT), 76),
            None,
            "indirect: needs the walk"
        );
        assert_eq!(lone_buffer(&gpa(&mem), &d(0x100, 75, 0), 76), None, "too small for the packet");
        assert_eq!(lone_buffer(&gpa(&mem), &d(0xff00, 0x200, 0), 76), None, "spans two regions");
        assert_eq!(lone_buffer(&gpa(&mem), &d(0x1ff00, 0x200, 0), 76), None, "runs off the end of memory");
        assert_eq!(lone_buffer(&gpa(&mem), &d(0x30000, 100, 0), 76), None, "outside guest memory");
        assert_eq!(lone_buffer(&gpa(&mem), &d(u64::MAX - 10, 100, 0), 76), None, "address wraps");
    }

    proptest! {
        /// Any descriptor table: the walk ends (no hang), and whatever it
        /// accepts lies inside guest memory.
        #[test]
        fn arbitrary_tables_never_escape(
            descs in proptest::collection::vec((0u64..0x22000, 0u32..0x3000, 0u16..8, 0u16..20), 1..16),
            head in 0u16..20,
        ) {
            let mem = memory();
            let mut out = BufVec::default();
            if walk_split(&gpa(&mem), descs.len() as u16, head, table(&descs), &mut out).is_ok() {
                for s in out.segs(&mem) {
                    prop_assert!(mem.hva_to_gpa(s.hva(), u64::from(s.len())).is_some());
                }
            }
            let mut out = BufVec::default();
            let _ = walk_packed(&gpa(&mem), descs.len() as u16, head % descs.len() as u16, table(&descs), &mut out);
            // The walk-free path never yields memory the walk would refuse.
            for (i, _) in descs.iter().enumerate() {
                if let Some(seg) = lone_buffer(&gpa(&mem), &table(&descs)(i as u16), 1) {
                    prop_assert!(mem.hva_to_gpa(seg.hva(), u64::from(seg.len())).is_some());
                }
            }
        }
    }
}
