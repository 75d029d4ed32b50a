//! The ring engines against the driver model (`mock`), in memory mapped
//! the way SET_MEM_TABLE maps it: no socket, no EAL.

use std::sync::Arc;

use super::avail::PackedLones;
use super::mock::{Buf, DriverRing, GuestView, Layout, RingAreas};
use super::notify::{set_guest_notification, wants_notification};
use super::packed::{self, PackedPos};
use super::split;
use super::used::UsedElem;
use super::VqState;
use crate::guest::{GuestMemory, PhysicalSpace};
use crate::protocol::features::{Feature, Features};
use crate::protocol::{MemoryRegionDesc, VringAddr};
use crate::virtqueue::chain::BufVec;

const RAM: u64 = 0x40000;
/// Where a new packed ring starts: slot 0, wrap counter 1 (wire form).
const START: u16 = 0x8000;
const UADDR: u64 = 0x7000_0000;

/// Guest memory of one region (gpa 0, front-end address UADDR) and the
/// driver's view of it (our mapping: the same pages).
fn memory() -> (Arc<GuestMemory>, GuestView) {
    let fd = nix::sys::memfd::memfd_create(c"ring", nix::sys::memfd::MemFdCreateFlag::MFD_CLOEXEC).unwrap();
    nix::unistd::ftruncate(&fd, RAM as i64).unwrap();
    let region =
        MemoryRegionDesc { guest_phys_addr: 0, memory_size: RAM, userspace_addr: UADDR, mmap_offset: 0 };
    let mem = Arc::new(GuestMemory::map(&[region], vec![fd], false).unwrap());
    let hva = mem.regions()[0].host_user_addr;
    // SAFETY: the region's mapping lives as long as `mem`, which each test
    // keeps until the end.
    let view = unsafe { GuestView::new(hva as *mut u8, RAM) };
    (mem, view)
}

/// A started ring of `size` entries at gpa 0 and the driver's model of it.
fn ring(layout: Layout, size: u16, features: u64, base: u16) -> (Arc<GuestMemory>, VqState, DriverRing) {
    let (mem, view) = memory();
    let areas = RingAreas { desc: 0, driver: 0x8000, device: 0x10000 };
    let driver = DriverRing::new(view, layout, size, areas);
    let mut vq = VqState {
        num: size,
        features: features
            | if layout == Layout::Packed { Features::of(&[Feature::RING_PACKED]).bits() } else { 0 },
        addr: Some(VringAddr {
            index: 0,
            flags: 0,
            desc_user_addr: UADDR,
            avail_user_addr: UADDR + areas.driver,
            used_user_addr: UADDR + areas.device,
            log_guest_addr: 0,
        }),
        ..VqState::default()
    };
    vq.set_translation(&mem, None).unwrap();
    vq.set_base(base).unwrap();
    vq.start().unwrap();
    (mem, vq, driver)
}

/// Guest-physical addresses of `mem` (no IOMMU).
fn gpa(mem: &GuestMemory) -> PhysicalSpace<'_> {
    PhysicalSpace(mem)
}

fn buf(k: u64) -> Buf {
    Buf { gpa: 0x20000 + 0x800 * (k % 32), len: 0x800, write: true }
}

#[test]
fn split_counts_reserves_and_publishes() {
    // Six chains of two buffers posted; the device takes five.
    let (mem, mut vq, mut driver) = ring(Layout::Split, 16, 0, 0);
    let ring = vq.ring.unwrap().in_table(&mem);
    for k in 0..6 {
        driver.post(&[buf(k), buf(k + 1)]).unwrap();
    }
    assert_eq!(vq.split_avail(&ring).map(|a| a.left()), Some(6));
    let mut used = Vec::new();
    for _ in 0..5 {
        let mut bufs = BufVec::default();
        let mut avail = vq.split_avail(&ring).unwrap();
        assert!(avail.split_reserve(&ring, &gpa(&mem), &mut bufs, 0x1000, false, 16).unwrap());
        assert_eq!((bufs.total(), bufs.nchains), (0x1000, 1), "one chain of two 2 KiB buffers");
        used.push(UsedElem { id: bufs.chains[0].id, len: 100, count: 1 });
        vq.settle(avail);
    }
    split::publish(&mut vq, &ring, &used);
    for e in &used {
        assert_eq!(driver.pop_used().map(|u| (u.id, u.len)), Some((e.id, 100)));
    }
    assert_eq!(driver.pop_used(), None);
    assert_eq!(vq.split_avail(&ring).map(|a| a.left()), Some(1));
}

#[test]
fn split_indices_wrap_at_sixteen_bits() {
    let (mem, mut vq, _driver) = ring(Layout::Split, 8, 0, 0xfffe);
    let ring = vq.ring.unwrap().in_table(&mem);
    // The guest's avail index wrapped to 2: four entries.
    let avail_idx_at = vq.ring.unwrap().addresses().1 + 2;
    // SAFETY: the avail index field of the ring mapped above.
    unsafe { (avail_idx_at as *mut u16).write_volatile(2) };
    assert_eq!(vq.split_avail(&ring).map(|a| a.left()), Some(4));
    // Nonsense (more than a ring ahead) is refused.
    // SAFETY: as above.
    unsafe { (avail_idx_at as *mut u16).write_volatile(0x10) };
    assert!(vq.split_avail(&ring).is_none());
    vq.last_used_idx = 0xffff;
    split::publish(&mut vq, &ring, &[UsedElem { id: 3, len: 1, count: 1 }]);
    assert_eq!(ring.split_used_idx(), 0, "used idx wraps");
}

#[test]
fn packed_counts_across_the_ring_end_and_flips_wrap_counters() {
    let (mem, mut vq, mut driver) = ring(Layout::Packed, 8, 0, START);
    let ring = vq.ring.unwrap().in_table(&mem);
    // Six single-buffer chains: slots 0..6 in round 1.
    for k in 0..6 {
        driver.post(&[buf(k)]).unwrap();
    }
    let mut avail = vq.packed_avail();
    assert_eq!(avail.packed_count(&ring, 32), 6);
    // The device takes four as a batch (slot 0 starts a cache line).
    let batch = avail.packed_batch(&ring, &gpa(&mem), [1; packed::BATCH]).expect("a batch of four");
    avail.packed_take_batch(&ring);
    vq.settle(avail);
    let mut used = super::used::UsedBatch::default();
    packed::publish_batch(&mut vq, &ring, &mut used, batch.map(|(_, id)| id), [64; 4], true);
    for (_, id) in batch {
        assert_eq!(driver.pop_used().map(|u| (u.id, u.len)), Some((id, 64)));
    }
    // Two more one by one, then the driver wraps: slots 6, 7 of round 1
    // and 0, 1 of round 2 are counted as one run.
    for k in 0..4 {
        driver.post(&[buf(10 + k)]).unwrap();
    }
    let mut avail = vq.packed_avail();
    assert_eq!(avail.packed_count(&ring, 32), 6, "slots 4..8 and 0..2 across the end");
    let mut entries = Vec::new();
    for _ in 0..6 {
        let (_, id) = avail.packed_take_lone(&ring, &gpa(&mem), 1).expect("available");
        entries.push(UsedElem { id, len: 7, count: 1 });
    }
    assert!(!avail.packed_has_next(&ring));
    vq.settle(avail);
    assert_eq!(vq.avail_pos(), PackedPos { idx: 2, wrap: false });
    packed::publish(&mut vq, &ring, &entries, true);
    assert_eq!(vq.used_pos(), PackedPos { idx: 2, wrap: false });
    for e in &entries {
        assert_eq!(driver.pop_used().map(|u| u.id), Some(e.id));
    }
    assert_eq!(driver.pop_used(), None);
}

/// A dequeue burst reads each descriptor once (`packed_gather`): lone
/// buffers of the needed size are handed out from there, with their ids,
/// across the ring's end; a chain's head, a short buffer and the slots
/// past what was gathered are not (the burst walks those from the ring).
#[test]
fn packed_gather_hands_out_lone_buffers_across_the_ring_end() {
    let (mem, mut vq, mut driver) = ring(Layout::Packed, 8, 0, START);
    let ring = vq.ring.unwrap().in_table(&mem);
    // Five buffers posted, taken and used: the next slot is 5.
    let mut entries = Vec::new();
    for k in 0..5 {
        driver.post(&[buf(k)]).unwrap();
        let (_, id) = vq.packed_take_lone(&ring, &gpa(&mem), 1).unwrap();
        entries.push(UsedElem { id, len: 0, count: 1 });
    }
    packed::publish(&mut vq, &ring, &entries, false);
    while driver.pop_used().is_some() {}
    // Slots 5, 6: lone; 7 and 0: a chain of two; 1: a 12-byte buffer; 2, 3: lone.
    let short = Buf { gpa: 0x30000, len: 12, write: false };
    let ids = [
        driver.post(&[buf(5)]).unwrap(),
        driver.post(&[buf(6)]).unwrap(),
        driver.post(&[buf(7), buf(8)]).unwrap(),
        driver.post(&[short]).unwrap(),
        driver.post(&[buf(9)]).unwrap(),
        driver.post(&[buf(10)]).unwrap(),
    ];
    let avail = vq.packed_avail();
    let n = avail.packed_count(&ring, 32);
    assert_eq!(n, 7, "slots 5..8 and 0..4 across the end");
    let mut lones = PackedLones::default();
    avail.packed_gather(&ring, &gpa(&mem), n, 13, &mut lones);
    let hva = |k: u64| mem.gpa_to_hva(buf(k).gpa, 1).unwrap().0;
    let lone = |k: usize| lones.lone(k).map(|(s, id)| (s.hva(), s.len(), id));
    assert_eq!(lone(0), Some((hva(5), 0x800, ids[0])));
    assert_eq!(lone(1), Some((hva(6), 0x800, ids[1])));
    assert_eq!(lone(2), None, "a chain's head is walked");
    assert_eq!(lone(4), None, "shorter than needed");
    assert_eq!(lone(5), Some((hva(9), 0x800, ids[4])));
    assert_eq!(lone(6), Some((hva(10), 0x800, ids[5])));
    assert_eq!(lone(7), None, "not gathered");
    assert!(lones.batch(0, 13).is_none(), "slot 7 is a chain");
    assert!(lones.batch(4, 13).is_none(), "only three gathered from 4");
    assert!(lones.batch(3, 13).is_none(), "slot 1 is short");
    // Taken from what was gathered: the position moves one slot each.
    assert_eq!(vq.packed_take_gathered(&ring, &lones, 0).map(|(_, id)| id), Some(ids[0]));
    assert_eq!(vq.avail_pos(), PackedPos { idx: 6, wrap: true });
    assert!(vq.packed_take_gathered(&ring, &lones, 2).is_none());
    assert_eq!(vq.avail_pos(), PackedPos { idx: 6, wrap: true }, "nothing taken");
}

/// Four lone buffers gathered in a row make a batch wherever they start.
#[test]
fn packed_gather_batches_four_lone_buffers_off_the_line() {
    let (mem, vq, mut driver) = ring(Layout::Packed, 8, 0, START);
    let ring = vq.ring.unwrap().in_table(&mem);
    let ids: Vec<u16> = (0..6).map(|k| driver.post(&[buf(k)]).unwrap()).collect();
    let avail = vq.packed_avail();
    let mut lones = PackedLones::default();
    avail.packed_gather(&ring, &gpa(&mem), 6, 13, &mut lones);
    let batch = lones.batch(1, 13).expect("slots 1..5");
    assert_eq!(batch.map(|(_, id)| id), [ids[1], ids[2], ids[3], ids[4]]);
    assert!(lones.batch(1, 0x801).is_none(), "gathered for less than asked now");
    assert!(lones.batch(3, 13).is_none(), "past the six gathered");
}

#[test]
fn packed_in_order_marks_a_run_used_with_its_last_id() {
    let (mem, mut vq, mut driver) = ring(Layout::Packed, 8, 0, START);
    driver.in_order = true;
    let ring = vq.ring.unwrap().in_table(&mem);
    let ids: Vec<u16> = (0..3).map(|k| driver.post(&[buf(k)]).unwrap()).collect();
    let entries: Vec<UsedElem> = ids.iter().map(|&id| UsedElem { id, len: 0, count: 1 }).collect();
    let mut pos = vq.avail_pos();
    pos.advance(3, 8);
    vq.set_avail_pos(pos);
    packed::publish_in_order(&mut vq, &ring, &entries);
    assert_eq!(driver.pop_used().map(|u| u.id), Some(ids[2]), "one used descriptor for the three");
    assert_eq!(driver.in_flight(), 0);
    assert_eq!(vq.used_pos(), PackedPos { idx: 3, wrap: true });
}

#[test]
fn split_event_index_decides_the_interrupt() {
    let (mem, mut vq, mut driver) =
        ring(Layout::Split, 8, Features::of(&[Feature::RING_EVENT_IDX]).bits(), 0);
    let ring = vq.ring.unwrap().in_table(&mem);
    // The first publication always interrupts (nothing signalled yet).
    let id = driver.post(&[buf(0)]).unwrap();
    split::publish(&mut vq, &ring, &[UsedElem { id, len: 1, count: 1 }]);
    assert!(wants_notification(&mut vq, &ring));
    driver.pop_used();
    // The driver asks for an interrupt at used index 2 (after the next two).
    driver.post(&[buf(1)]).unwrap();
    driver.post(&[buf(2)]).unwrap();
    driver.pop_used();
    assert!(!driver.enable_notification(true), "nothing used yet");
    let event_at = ring.addresses().1 + 4 + 2 * 8;
    // SAFETY: used_event of the ring mapped above.
    unsafe { (event_at as *mut u16).write_volatile(2) };
    split::publish(&mut vq, &ring, &[UsedElem { id: 1, len: 1, count: 1 }]);
    assert!(!wants_notification(&mut vq, &ring), "used 1 -> 2 does not cross event 2");
    split::publish(&mut vq, &ring, &[UsedElem { id: 2, len: 1, count: 1 }]);
    assert!(wants_notification(&mut vq, &ring), "used 2 -> 3 crosses it");
}

#[test]
fn packed_event_suppression_decides_the_interrupt() {
    let (mem, mut vq, mut driver) =
        ring(Layout::Packed, 4, Features::of(&[Feature::RING_EVENT_IDX]).bits(), START);
    let ring = vq.ring.unwrap().in_table(&mem);
    driver.disable_notification();
    let id = driver.post(&[buf(0)]).unwrap();
    packed::publish(&mut vq, &ring, &[UsedElem { id, len: 1, count: 1 }], true);
    assert!(!wants_notification(&mut vq, &ring), "DISABLE");
    driver.pop_used();
    // Event descriptor: the next used slot (1, round 1).
    assert!(!driver.enable_notification(true));
    let id = driver.post(&[buf(1)]).unwrap();
    packed::publish(&mut vq, &ring, &[UsedElem { id, len: 1, count: 1 }], true);
    assert!(wants_notification(&mut vq, &ring), "slot 1 was the event");
    // Our own suppression of the guest's kicks lands in the device area.
    set_guest_notification(&vq, &ring, false);
    let flags_at = ring.addresses().2 + 2;
    // SAFETY: the device event flags of the ring mapped above.
    assert_eq!(unsafe { (flags_at as *const u16).read_volatile() }, 1, "DISABLE");
}

/// The async queue keeps the memory table its copies write into mapped
/// until they complete, whatever the ring moved on to; a queue dropped with
/// copies still running keeps it for good (`docs/security.md`).
#[test]
fn a_memory_table_stays_mapped_until_the_dma_copies_into_it_complete() {
    use super::async_queue::{AsyncQueue, Prepared};
    use super::used::UsedElem;
    use crate::dpdk::dma::{ChannelId, Sent};
    use crate::dpdk::mbuf::{Mbuf, RteMbuf};

    // A channel never configured has completed no copy: a packet done at
    // count 0 is complete, one done at count 1 still has a copy running.
    let ch = ChannelId { dma: 63, vchan: 0 };
    let mut raw = std::mem::MaybeUninit::<RteMbuf>::uninit();
    let raw = raw.as_mut_ptr();
    // SAFETY: the queue only holds and hands back the handles; nothing here
    // reads the (uninitialised) mbuf behind them, nor uses two at once.
    let packet = || Prepared { mbuf: unsafe { Mbuf::from_raw(raw) }.unwrap(), channel: ch, net_hdr: 0 };
    let mut unsent = Vec::new();
    // Records packets `ids`, the channel sending those whose copies end
    // at `copy_ends`, from count 0.
    fn submit(
        q: &mut AsyncQueue,
        packet: &dyn Fn() -> Prepared,
        ids: &[u16],
        copy_ends: &[usize],
        mem: &Arc<GuestMemory>,
        unsent: &mut Vec<Option<Mbuf>>,
    ) -> usize {
        let first = q.inflight();
        for &id in ids {
            q.push(packet(), &[UsedElem { id, len: 64, count: 1 }]);
        }
        let sent = Sent { first_count: 0, packets: copy_ends.len() };
        q.submitted(first, copy_ends, sent, mem, unsent)
    }
    let front_ids = |q: &AsyncQueue, n| q.front_used(n).concat().iter().map(|u| u.id).collect::<Vec<_>>();

    let (mem, _view) = memory();
    let table = Arc::downgrade(&mem);
    let mut q = AsyncQueue::default();
    assert_eq!(submit(&mut q, &packet, &[3], &[0], &mem, &mut unsent), 1);
    drop(mem); // the ring took a new memory table
    assert!(table.upgrade().is_some(), "kept while a copy into it is in flight");
    assert_eq!(q.count_completed(4), 1);
    assert_eq!(front_ids(&q, 1), [3]);
    let mut out = [None; 1];
    q.release_into(&mut out);
    assert_eq!(out.iter().flatten().count(), 1);
    assert_eq!(q.inflight(), 0);
    assert!(table.upgrade().is_none(), "unmapped once its copies completed");

    let (mem, _view) = memory();
    let table = Arc::downgrade(&mem);
    assert_eq!(submit(&mut q, &packet, &[4, 5, 6], &[0, 1], &mem, &mut unsent), 2, "the channel took two");
    assert_eq!((unsent.len(), q.inflight()), (1, 2), "the third is forgotten, its mbuf handed back");
    drop(mem);
    assert_eq!(q.count_completed(4), 1, "in order, up to the running one");
    assert_eq!(front_ids(&q, 1), [4]);
    let mut out = [None; 1];
    q.release_into(&mut out);
    assert_eq!(out.iter().flatten().count(), 1);
    assert_eq!(q.inflight(), 1);
    assert!(table.upgrade().is_some());
    drop(q); // the device goes away with the copy still running
    assert!(table.upgrade().is_some(), "never unmapped under a running copy");
}

/// Each request translates the ring again for what it now is: no caller
/// has to remember to.
#[test]
fn every_request_leaves_the_ring_translated_for_what_it_is() {
    let (mem, mut vq, _driver) = ring(Layout::Split, 256, 0, 0);
    vq.set_num(128).unwrap();
    assert_eq!(vq.ring().map(|r| r.size()), Some(128), "a new size is translated");
    assert_eq!(vq.set_num(100), Err(super::RingError::InvalidSize(100)), "split sizes are powers of two");
    assert_eq!(vq.ring().map(|r| r.size()), Some(128), "a refused size changes nothing");
    vq.set_features(Features::of(&[Feature::RING_PACKED]).bits(), &mem, None).unwrap();
    assert!(vq.ring().is_some_and(|r| r.is_packed()), "a new layout is translated");
    assert_eq!(vq.set_base(200), Err(super::RingError::PositionBeyondSize), "packed base beyond the ring");
    vq.set_base(START | 5).unwrap();
    assert_eq!(vq.base(), START | 5);
    assert_eq!(vq.stop(), START | 5, "stopping gives the position back");
    assert!(vq.ring().is_none() && !vq.is_ready());
    vq.set_num(64).unwrap();
    assert!(vq.ring().is_none(), "a stopped ring stays untranslated");
}
