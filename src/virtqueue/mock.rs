//! A driver-side model of split and packed virtqueues, for tests: it plays
//! the guest's virtio driver in memory the test owns (posts buffer chains,
//! direct or indirect, publishes them, reads back used entries, asks for or
//! suppresses notifications), so the device side can be exercised through
//! the real rings without a guest. Unit tests, integration tests and the
//! property tests share it (`testing` feature).

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{fence, AtomicU16, Ordering};

/// Descriptor flags.
pub const F_NEXT: u16 = 1;
pub const F_WRITE: u16 = 2;
pub const F_INDIRECT: u16 = 4;
const F_AVAIL: u16 = 1 << 7;
const F_USED: u16 = 1 << 15;

/// The guest's physical memory as the driver sees it: guest-physical
/// addresses `0..size` at host address `base` (the test's own mapping).
/// Accesses are volatile: the device writes this memory concurrently.
#[derive(Clone, Copy, Debug)]
pub struct GuestView {
    base: u64,
    size: u64,
    /// `(start, pages)`: the driver's addresses in `start..start + pages`
    /// 4 KiB pages lie on those guest pages in reverse order (as a ring
    /// that an IOMMU maps page by page onto scattered guest pages).
    reversed: Option<(u64, u64)>,
}

const PAGE: u64 = 4096;

impl GuestView {
    /// # Safety
    /// `base..base + size` must stay mapped, readable and writable for as
    /// long as the view (and any ring made on it) is used.
    pub unsafe fn new(base: *mut u8, size: u64) -> GuestView {
        GuestView { base: base as u64, size, reversed: None }
    }

    /// The same memory, with the `pages` 4 KiB pages from `start` (page
    /// aligned) in reverse order behind the driver's addresses.
    pub fn with_reversed_pages(self, start: u64, pages: u64) -> GuestView {
        assert!(start.is_multiple_of(PAGE) && start + pages * PAGE <= self.size);
        GuestView { reversed: Some((start, pages)), ..self }
    }

    /// The guest-physical address that the driver's address `addr` lies at.
    pub fn backing(&self, addr: u64) -> u64 {
        match self.reversed {
            Some((start, pages)) if addr >= start && addr - start < pages * PAGE => {
                let page = (addr - start) / PAGE;
                start + (pages - 1 - page) * PAGE + addr % PAGE
            }
            _ => addr,
        }
    }

    pub fn size(&self) -> u64 {
        self.size
    }

    /// `len` bytes at the driver's address `gpa`, which must not cross a
    /// page boundary of a reversed range (multi-byte accesses are aligned
    /// fields of at most 8 bytes; `read`/`write` go a byte at a time).
    fn at(&self, gpa: u64, len: usize) -> *mut u8 {
        assert!(
            gpa.checked_add(len as u64).is_some_and(|end| end <= self.size),
            "driver access {gpa:#x}+{len} outside guest memory"
        );
        let placed = self.backing(gpa);
        assert!(
            len == 0 || self.backing(gpa + len as u64 - 1) == placed + len as u64 - 1,
            "driver access {gpa:#x}+{len} across reversed pages"
        );
        (self.base + placed) as *mut u8
    }

    pub fn write(&self, gpa: u64, bytes: &[u8]) {
        for (i, b) in bytes.iter().enumerate() {
            let p = self.at(gpa + i as u64, 1);
            // SAFETY: inside the view (checked), mapped per `new`'s contract.
            unsafe { p.write_volatile(*b) };
        }
    }

    pub fn read(&self, gpa: u64, len: usize) -> Vec<u8> {
        // SAFETY: as in `write`.
        (0..len).map(|i| unsafe { self.at(gpa + i as u64, 1).read_volatile() }).collect()
    }

    fn atomic16(&self, gpa: u64) -> &AtomicU16 {
        let p = self.at(gpa, 2);
        assert!(gpa.is_multiple_of(2), "unaligned ring field");
        // SAFETY: inside the view, aligned; AtomicU16 has u16's layout.
        unsafe { &*(p as *const AtomicU16) }
    }

    pub fn load16(&self, gpa: u64) -> u16 {
        u16::from_le(self.atomic16(gpa).load(Ordering::Acquire))
    }

    pub fn store16(&self, gpa: u64, v: u16) {
        self.atomic16(gpa).store(v.to_le(), Ordering::Release)
    }

    pub fn read32(&self, gpa: u64) -> u32 {
        u32::from_le_bytes(self.read(gpa, 4).try_into().expect("4 bytes"))
    }

    pub fn write64(&self, gpa: u64, v: u64) {
        self.write(gpa, &v.to_le_bytes())
    }
}

/// Which ring layout.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Layout {
    Split,
    Packed,
}

/// One buffer of a chain: guest-physical address, length, device-writable.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Buf {
    pub gpa: u64,
    pub len: u32,
    pub write: bool,
}

/// A used entry as the driver reads it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Used {
    /// The id the driver got from `post` (split: the chain's head).
    pub id: u16,
    pub len: u32,
}

/// Addresses and sizes of a ring's three areas.
#[derive(Clone, Copy, Debug)]
pub struct RingAreas {
    pub desc: u64,
    /// Split: the available ring; packed: the driver event suppression area.
    pub driver: u64,
    /// Split: the used ring; packed: the device event suppression area.
    pub device: u64,
}

impl RingAreas {
    /// Byte sizes of the areas of a ring of `size` entries.
    pub fn sizes(layout: Layout, size: u16) -> (u64, u64, u64) {
        let n = u64::from(size);
        match layout {
            Layout::Split => (16 * n, 4 + 2 * n + 2, 4 + 8 * n + 2),
            Layout::Packed => (16 * n, 4, 4),
        }
    }
}

/// The driver's side of one virtqueue.
#[derive(Debug)]
pub struct DriverRing {
    mem: GuestView,
    layout: Layout,
    size: u16,
    areas: RingAreas,
    /// Split: free descriptor slots. Packed: free buffer ids.
    free: VecDeque<u16>,
    /// Split: next avail index. Packed: next slot to fill and its wrap counter.
    avail_idx: u16,
    avail_wrap: bool,
    /// Split: next used index to read. Packed: next slot to read and its wrap.
    used_idx: u16,
    used_wrap: bool,
    /// Chains in flight by id: the descriptor slots (split) or slot count
    /// (packed) they took, in posting order.
    inflight: HashMap<u16, Vec<u16>>,
    order: VecDeque<u16>,
    /// The device may mark a run of buffers used with the last one's id
    /// (VIRTIO_F_IN_ORDER).
    pub in_order: bool,
    /// A used id that is not in flight is a test failure (panic); lenient
    /// rings (for devices reconfigured under them) skip it.
    pub strict: bool,
    /// The device must use chains in the order they were posted (a run of
    /// them at once with `in_order`): any other used id is a test failure.
    pub ordered: bool,
    /// What the device is given for a buffer at guest-physical `gpa`:
    /// `gpa + iova_offset` (a virtual IOMMU's I/O addresses; 0 without).
    pub iova_offset: u64,
}

impl DriverRing {
    /// A fresh ring of `size` entries at `areas` (zeroed here, as a driver
    /// initialises its rings).
    pub fn new(mem: GuestView, layout: Layout, size: u16, areas: RingAreas) -> DriverRing {
        assert!(size > 0);
        let (d, a, u) = RingAreas::sizes(layout, size);
        mem.write(areas.desc, &vec![0; d as usize]);
        mem.write(areas.driver, &vec![0; a as usize]);
        mem.write(areas.device, &vec![0; u as usize]);
        DriverRing {
            mem,
            layout,
            size,
            areas,
            free: (0..size).collect(),
            avail_idx: 0,
            avail_wrap: true,
            used_idx: 0,
            used_wrap: true,
            inflight: HashMap::new(),
            order: VecDeque::new(),
            in_order: false,
            strict: true,
            ordered: false,
            iova_offset: 0,
        }
    }

    pub fn layout(&self) -> Layout {
        self.layout
    }
    pub fn size(&self) -> u16 {
        self.size
    }
    pub fn areas(&self) -> RingAreas {
        self.areas
    }
    pub fn mem(&self) -> GuestView {
        self.mem
    }
    /// Chains posted and not yet used.
    pub fn in_flight(&self) -> usize {
        self.inflight.len()
    }

    /// The value for SET_VRING_BASE of a fresh ring (packed: wrap counter
    /// set in bit 15).
    pub fn base(&self) -> u32 {
        match self.layout {
            Layout::Split => u32::from(self.avail_idx),
            Layout::Packed => u32::from(self.avail_idx) | (u32::from(self.avail_wrap) << 15),
        }
    }

    /// Free descriptor slots (split) or ring slots (packed): a chain of up
    /// to this many buffers can be posted now. (A packed chain takes one id
    /// and at least one slot, so ids never run out before slots.)
    pub fn free_slots(&self) -> usize {
        match self.layout {
            Layout::Split => self.free.len(),
            Layout::Packed => {
                let used: usize = self.inflight.values().map(Vec::len).sum();
                usize::from(self.size) - used
            }
        }
    }

    /// The id the next chain posted will get (split: its head slot), so a
    /// test can place its buffers by id before posting; `None` if full.
    pub fn next_id(&self) -> Option<u16> {
        self.free.front().copied()
    }

    fn room_for(&self, n: usize) -> bool {
        self.free_slots() >= n
    }

    fn write_desc(&self, slot: u16, gpa: u64, len: u32, a: u16, b: u16) {
        let at = self.areas.desc + 16 * u64::from(slot);
        self.write_desc_at(at, gpa, len, a, b);
    }

    fn write_desc_at(&self, at: u64, gpa: u64, len: u32, a: u16, b: u16) {
        self.mem.write64(at, gpa + self.iova_offset);
        self.mem.write(at + 8, &len.to_le_bytes());
        self.mem.write(at + 12, &a.to_le_bytes());
        self.mem.write(at + 14, &b.to_le_bytes());
    }

    /// Posts a chain of `bufs` and makes it available; returns its id, or
    /// `None` if the ring has no room.
    pub fn post(&mut self, bufs: &[Buf]) -> Option<u16> {
        assert!(!bufs.is_empty());
        if !self.room_for(bufs.len()) {
            return None;
        }
        let id = match self.layout {
            Layout::Split => self.post_split(bufs),
            Layout::Packed => self.post_packed(bufs),
        };
        self.order.push_back(id);
        Some(id)
    }

    /// Posts `bufs` as one indirect table at `table_gpa` (16 bytes an
    /// entry, split layout for split rings, packed for packed rings).
    pub fn post_indirect(&mut self, table_gpa: u64, bufs: &[Buf]) -> Option<u16> {
        self.post_table(table_gpa, bufs.len() as u32 * 16, bufs)
    }

    /// Like `post_indirect`, but the descriptor claims a table of
    /// `table_len` bytes (hostile or odd drivers), of which `bufs` are the
    /// first entries.
    pub fn post_table(&mut self, table_gpa: u64, table_len: u32, bufs: &[Buf]) -> Option<u16> {
        if !self.room_for(1) {
            return None;
        }
        for (k, b) in bufs.iter().enumerate() {
            let at = table_gpa + 16 * k as u64;
            let w = if b.write { F_WRITE } else { 0 };
            match self.layout {
                Layout::Split => {
                    let next = if k + 1 < bufs.len() { F_NEXT } else { 0 };
                    self.write_desc_at(at, b.gpa, b.len, w | next, (k + 1) as u16);
                }
                Layout::Packed => self.write_desc_at(at, b.gpa, b.len, 0, w),
            }
        }
        let head = Buf { gpa: table_gpa, len: table_len, write: false };
        let id = match self.layout {
            Layout::Split => self.post_split_flags(&[head], F_INDIRECT),
            Layout::Packed => self.post_packed_flags(&[head], F_INDIRECT),
        };
        self.order.push_back(id);
        Some(id)
    }

    fn post_split(&mut self, bufs: &[Buf]) -> u16 {
        self.post_split_flags(bufs, 0)
    }

    fn post_split_flags(&mut self, bufs: &[Buf], extra: u16) -> u16 {
        let slots: Vec<u16> = (0..bufs.len()).map(|_| self.free.pop_front().expect("room checked")).collect();
        for (k, b) in bufs.iter().enumerate() {
            let next = slots.get(k + 1).copied();
            let flags = extra | if b.write { F_WRITE } else { 0 } | if next.is_some() { F_NEXT } else { 0 };
            self.write_desc(slots[k], b.gpa, b.len, flags, next.unwrap_or(0));
        }
        let head = slots[0];
        let ring_at = self.areas.driver + 4 + 2 * u64::from(self.avail_idx % self.size);
        self.mem.write(ring_at, &head.to_le_bytes());
        self.avail_idx = self.avail_idx.wrapping_add(1);
        fence(Ordering::SeqCst);
        self.mem.store16(self.areas.driver + 2, self.avail_idx);
        self.inflight.insert(head, slots);
        head
    }

    fn post_packed(&mut self, bufs: &[Buf]) -> u16 {
        self.post_packed_flags(bufs, 0)
    }

    fn post_packed_flags(&mut self, bufs: &[Buf], extra: u16) -> u16 {
        let id = self.free.pop_front().expect("room checked");
        let avail = |wrap: bool| if wrap { F_AVAIL } else { F_USED };
        let first = (self.avail_idx, self.avail_wrap);
        let mut head_flags = 0;
        let mut slots = Vec::new();
        for (k, b) in bufs.iter().enumerate() {
            let flags = extra
                | avail(self.avail_wrap)
                | if b.write { F_WRITE } else { 0 }
                | if k + 1 < bufs.len() { F_NEXT } else { 0 };
            if k == 0 {
                // The head's flags are stored last: they make the chain
                // visible to the device.
                head_flags = flags;
                self.write_desc(self.avail_idx, b.gpa, b.len, id, 0);
            } else {
                self.write_desc(self.avail_idx, b.gpa, b.len, id, flags);
            }
            slots.push(self.avail_idx);
            self.avail_idx += 1;
            if self.avail_idx == self.size {
                self.avail_idx = 0;
                self.avail_wrap = !self.avail_wrap;
            }
        }
        fence(Ordering::SeqCst);
        self.mem.store16(self.areas.desc + 16 * u64::from(first.0) + 14, head_flags);
        self.inflight.insert(id, slots);
        id
    }

    /// The next used entry, if the device has published one.
    pub fn pop_used(&mut self) -> Option<Used> {
        match self.layout {
            Layout::Split => {
                let idx = self.mem.load16(self.areas.device + 2);
                if idx == self.used_idx {
                    return None;
                }
                let at = self.areas.device + 4 + 8 * u64::from(self.used_idx % self.size);
                let id = self.mem.read32(at) as u16;
                let len = self.mem.read32(at + 4);
                self.used_idx = self.used_idx.wrapping_add(1);
                self.complete(id);
                Some(Used { id, len })
            }
            Layout::Packed => {
                let at = self.areas.desc + 16 * u64::from(self.used_idx);
                let flags = self.mem.load16(at + 14);
                let used = flags & F_USED != 0;
                if used != self.used_wrap || (flags & F_AVAIL != 0) != self.used_wrap {
                    return None;
                }
                let len = self.mem.read32(at + 8);
                let id = u16::from_le_bytes(self.mem.read(at + 12, 2).try_into().expect("2 bytes"));
                let slots = self.complete(id).max(1);
                self.used_idx += slots.min(self.size);
                if self.used_idx >= self.size {
                    self.used_idx -= self.size;
                    self.used_wrap = !self.used_wrap;
                }
                Some(Used { id, len })
            }
        }
    }

    /// Frees the chain `id` (and, in order, those posted before it);
    /// returns the ring slots they took (0 for an unknown id on a lenient
    /// ring).
    fn complete(&mut self, id: u16) -> u16 {
        if !self.strict && !self.inflight.contains_key(&id) {
            return 0;
        }
        let mut slots = 0u16;
        loop {
            let Some(first) = self.order.pop_front() else {
                panic!("device used id {id} that is not in flight");
            };
            if first != id && !self.in_order {
                assert!(!self.ordered, "device used id {id} before id {first}, posted earlier");
                // Out of order: put it back and take the named one.
                self.order.push_front(first);
                self.order.retain(|&x| x != id);
                slots += self.release(id);
                return slots;
            }
            slots += self.release(first);
            if first == id {
                return slots;
            }
        }
    }

    fn release(&mut self, id: u16) -> u16 {
        let Some(taken) = self.inflight.remove(&id) else {
            panic!("device used id {id} that is not in flight");
        };
        match self.layout {
            Layout::Split => self.free.extend(&taken),
            Layout::Packed => self.free.push_back(id),
        }
        taken.len() as u16
    }

    /// Asks for a notification after the next used entry (split: event
    /// index, or clear NO_INTERRUPT; packed: enable or event descriptor),
    /// then, as Linux's `virtqueue_enable_cb_prepare` + `more_used`, a full
    /// fence and a look at the used ring: `true` if entries are already
    /// there (no notification needs to be awaited).
    pub fn enable_notification(&self, event_idx: bool) -> bool {
        match self.layout {
            Layout::Split => {
                if event_idx {
                    let at = self.areas.driver + 4 + 2 * u64::from(self.size);
                    self.mem.store16(at, self.used_idx);
                } else {
                    self.mem.store16(self.areas.driver, 0);
                }
                fence(Ordering::SeqCst);
                self.mem.load16(self.areas.device + 2) != self.used_idx
            }
            Layout::Packed => {
                let off_wrap = self.used_idx | (u16::from(self.used_wrap) << 15);
                self.mem.store16(self.areas.driver, off_wrap);
                self.mem.store16(self.areas.driver + 2, if event_idx { 2 } else { 0 });
                fence(Ordering::SeqCst);
                let flags = self.mem.load16(self.areas.desc + 16 * u64::from(self.used_idx) + 14);
                (flags & F_USED != 0) == self.used_wrap
            }
        }
    }

    /// Asks the device not to notify (split NO_INTERRUPT; packed DISABLE).
    pub fn disable_notification(&self) {
        match self.layout {
            Layout::Split => self.mem.store16(self.areas.driver, 1),
            Layout::Packed => self.mem.store16(self.areas.driver + 2, 1),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn view(buf: &mut [u8]) -> GuestView {
        // SAFETY: the buffer outlives the view in each test.
        unsafe { GuestView::new(buf.as_mut_ptr(), buf.len() as u64) }
    }

    #[test]
    fn split_chains_are_posted_and_recycled() {
        let mut mem = vec![0u8; 0x4000];
        let areas = RingAreas { desc: 0, driver: 0x1000, device: 0x2000 };
        let mut r = DriverRing::new(view(&mut mem), Layout::Split, 4, areas);
        let b = |gpa| Buf { gpa, len: 100, write: true };
        let id = r.post(&[b(0x3000), b(0x3100)]).unwrap();
        assert_eq!(r.mem().load16(0x1002), 1, "avail idx published");
        assert_eq!(r.mem().load16(0x1004), id);
        // The device marks it used.
        r.mem().write(0x2004, &[u32::from(id).to_le_bytes(), 200u32.to_le_bytes()].concat());
        r.mem().store16(0x2002, 1);
        assert_eq!(r.pop_used(), Some(Used { id, len: 200 }));
        assert_eq!(r.pop_used(), None);
        assert_eq!(r.in_flight(), 0);
        for _ in 0..4 {
            r.post(&[b(0x3000)]).unwrap();
        }
        assert_eq!(r.post(&[b(0x3000)]), None, "ring full");
    }

    #[test]
    #[should_panic(expected = "before id")]
    fn an_ordered_ring_refuses_a_chain_used_out_of_order() {
        let mut mem = vec![0u8; 0x4000];
        let areas = RingAreas { desc: 0, driver: 0x1000, device: 0x2000 };
        let mut r = DriverRing::new(view(&mut mem), Layout::Split, 4, areas);
        r.ordered = true;
        let b = Buf { gpa: 0x3000, len: 100, write: true };
        r.post(&[b]).unwrap();
        let second = r.post(&[b]).unwrap();
        // The device marks the second chain used first.
        r.mem().write(0x2004, &[u32::from(second).to_le_bytes(), 0u32.to_le_bytes()].concat());
        r.mem().store16(0x2002, 1);
        r.pop_used();
    }

    #[test]
    fn packed_chains_wrap_and_use_ids() {
        let mut mem = vec![0u8; 0x4000];
        let areas = RingAreas { desc: 0, driver: 0x1000, device: 0x2000 };
        let mut r = DriverRing::new(view(&mut mem), Layout::Packed, 3, areas);
        let b = Buf { gpa: 0x3000, len: 64, write: false };
        let a = r.post(&[b, b]).unwrap();
        assert_eq!(r.mem().load16(14) & (F_AVAIL | F_USED), F_AVAIL, "head available in round 1");
        // The device uses both slots: one used descriptor at slot 0.
        r.mem().write(8, &0u32.to_le_bytes());
        r.mem().write(12, &a.to_le_bytes());
        r.mem().store16(14, F_AVAIL | F_USED);
        assert_eq!(r.pop_used(), Some(Used { id: a, len: 0 }));
        // The next chain starts at slot 2 and wraps to slot 0 (round 2).
        let c = r.post(&[b, b]).unwrap();
        assert_eq!(r.mem().load16(16 * 2 + 14) & (F_AVAIL | F_USED), F_AVAIL);
        assert_eq!(r.mem().load16(14) & (F_AVAIL | F_USED), F_USED, "slot 0 available in round 2");
        r.mem().write(16 * 2 + 8, &[10u32.to_le_bytes().as_slice(), &c.to_le_bytes()].concat());
        r.mem().store16(16 * 2 + 14, F_AVAIL | F_USED);
        assert_eq!(r.pop_used(), Some(Used { id: c, len: 10 }));
        assert_eq!(r.base() & 0x7fff, 1);
    }
}
