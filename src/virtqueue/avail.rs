//! The engines' avail side: what a burst takes from the chains the driver
//! made available. A burst starts an `Avail` from the ring's position
//! (`VqState::split_avail`, `packed_avail`), takes buffers through it (a
//! lone buffer with its id, a chain gathered into a `BufVec`, a batch of
//! four, or only a chain's head id), and hands it back with
//! `VqState::settle` before it publishes. Only this file reads avail slots
//! and descriptors for a burst and moves the avail position: the device
//! code never sees an index.
//!
//! The cursor is a copy of the position, a local of the burst: a split
//! burst keeps it in a register instead of reloading it from the ring
//! state behind its stores, and a burst that gives chains back (the async
//! path, when the DMA channel has no room) keeps an earlier copy. The
//! packed bursts take through `VqState`'s in-place forms instead
//! (`packed_take_lone`, `packed_take_into`, ...), which move the ring
//! state's own position.

use super::chain::{
    lone_buffer, prefetch_buffer, prefetch_segment, walk_packed, walk_split, BufVec, ChainError,
};
use super::packed::{is_available, made_available, PackedPos, BATCH};
use super::ring::{Desc, RingMem};
use super::{VqState, MAX_BURST};
use crate::guest::slice::GuestSlice;
use crate::guest::AddressSpace;

/// A burst's position among the available chains (`pos.idx` alone on a
/// split ring) and, on a split ring, how many entries are left.
#[derive(Clone, Copy, Debug)]
pub struct Avail {
    pos: PackedPos,
    left: u16,
}

/// A chain taken by `Avail::take`: its id, the ring slots it used, and its
/// buffer if it is one lone buffer (`Ok(None)`: gathered into the
/// `BufVec`), or why it is unusable. One that missed in the IOTLB was not
/// taken: it stays for a later burst.
#[derive(Clone, Copy, Debug)]
pub struct Taken<'m> {
    pub id: u16,
    pub count: u16,
    pub buffer: Result<Option<GuestSlice<'m>>, ChainError>,
}

/// Descriptor `d`'s buffer if it is a lone one of at least `needed` bytes
/// (else an empty slice), prefetched either way.
#[inline(always)]
fn gather<'m>(mem: &impl AddressSpace<'m>, d: Desc, needed: u64) -> GuestSlice<'m> {
    match lone_buffer(mem, &d, needed) {
        Some(s) => {
            prefetch_segment(s, false);
            s
        }
        None => {
            prefetch_buffer(mem, d, false);
            GuestSlice::default()
        }
    }
}

/// A dequeue burst's descriptors as `Avail::packed_gather` read them:
/// entry `k` is the descriptor `k` slots after the burst's first, with its
/// buffer if it is a lone one of the needed size (an empty slice if not:
/// the burst then walks it from the ring) and its id.
#[derive(Debug)]
pub struct PackedLones<'m> {
    segs: [GuestSlice<'m>; MAX_BURST],
    ids: [u16; MAX_BURST],
    n: usize,
}

impl Default for PackedLones<'_> {
    #[inline(always)]
    fn default() -> Self {
        PackedLones { segs: [GuestSlice::default(); MAX_BURST], ids: [0; MAX_BURST], n: 0 }
    }
}

impl<'m> PackedLones<'m> {
    /// The lone buffer `k` slots after the burst's first, and its id.
    #[inline(always)]
    pub fn lone(&self, k: usize) -> Option<(GuestSlice<'m>, u16)> {
        (k < self.n && self.segs[k].len() > 0).then(|| (self.segs[k], self.ids[k]))
    }

    /// The `BATCH` lone buffers from `k` slots after the burst's first, if
    /// all of them are (`PackedLones::lone`); taken with
    /// `VqState::packed_take_batch`. `needed`, the size they were gathered
    /// for, is tested again where the caller's compiler sees it.
    #[inline(always)]
    pub fn batch(&self, k: usize, needed: u64) -> Option<[(GuestSlice<'m>, u16); BATCH]> {
        let segs: &[GuestSlice<'m>; BATCH] = self.segs.get(k..self.n)?.first_chunk()?;
        let ids: &[u16; BATCH] = self.ids[k..].first_chunk()?;
        segs.iter()
            .fold(true, |all, s| all & (u64::from(s.len()) >= needed))
            .then(|| std::array::from_fn(|j| (segs[j], ids[j])))
    }
}

impl VqState {
    /// A split ring's avail side for a burst; `None` if the guest's index
    /// is nonsense (more than a ring ahead).
    #[inline(always)]
    pub fn split_avail(&self, ring: &RingMem) -> Option<Avail> {
        let left = ring.split_avail_idx().wrapping_sub(self.last_avail_idx);
        (left <= ring.size()).then_some(Avail { pos: self.avail_pos(), left })
    }

    /// A packed ring's avail side for a burst.
    #[inline(always)]
    pub fn packed_avail(&self) -> Avail {
        Avail { pos: self.avail_pos(), left: 0 }
    }

    /// Either layout's (`split_avail`, `packed_avail`).
    #[inline(always)]
    pub fn avail(&self, ring: &RingMem) -> Option<Avail> {
        if ring.is_packed() {
            Some(self.packed_avail())
        } else {
            self.split_avail(ring)
        }
    }

    /// The chains taken through `avail` are the device's: the ring's avail
    /// position moves past them.
    #[inline(always)]
    pub fn settle(&mut self, avail: Avail) {
        self.set_avail_pos(avail.pos);
    }

    /// `f` on a packed ring's avail side in place: what it takes, the ring
    /// state's position moves past at once. (The packed bursts take through
    /// these, the position staying in the ring state as before: a cursor
    /// local to the loops cost them spilled registers, 2-3 % more
    /// instructions.)
    #[inline(always)]
    fn packed_in_place<R>(&mut self, f: impl FnOnce(&mut Avail) -> R) -> R {
        let mut avail = self.packed_avail();
        let r = f(&mut avail);
        self.settle(avail);
        r
    }

    /// `Avail::packed_take_lone` in place.
    #[inline(always)]
    pub fn packed_take_lone<'m>(
        &mut self,
        ring: &RingMem,
        mem: &impl AddressSpace<'m>,
        needed: u64,
    ) -> Option<(GuestSlice<'m>, u16)> {
        self.packed_in_place(|a| a.packed_take_lone(ring, mem, needed))
    }

    /// Takes the next chain of a packed ring (the caller knows it is
    /// available) and hands `use_chain` its buffer: one of at least `needed`
    /// bytes, or `None` when it was gathered into `bufs`. Returns its id,
    /// the ring slots it used and what `use_chain` returned, or the error of
    /// a malformed chain (taken as one slot so the ring moves on); `Err` if
    /// it missed in the IOTLB (not taken: it stays for a later burst). The
    /// position moves after `use_chain`, as the dequeue loop had it: moved
    /// before, the loop spilled more registers.
    #[inline(always)]
    pub fn packed_take_into<'m, R>(
        &mut self,
        ring: &RingMem,
        mem: &impl AddressSpace<'m>,
        needed: u64,
        bufs: &mut BufVec,
        use_chain: impl FnOnce(Option<GuestSlice<'m>>, &BufVec) -> R,
    ) -> Result<(u16, u16, Result<R, ChainError>), ChainError> {
        let pos = self.avail_pos();
        let d = ring.read_packed_desc(pos.idx);
        let (id, count, res) = match lone_buffer(mem, &d, needed) {
            Some(seg) => (d.next_or_id, 1, Ok(use_chain(Some(seg), bufs))),
            None => {
                bufs.clear();
                match walk_packed(mem, ring.size(), pos.idx, |i| ring.read_packed_desc(i), bufs) {
                    Ok(c) => (c.id, c.count, Ok(use_chain(None, bufs))),
                    Err(e @ ChainError::IotlbMiss { .. }) => return Err(e),
                    Err(e) => (d.next_or_id, 1, Err(e)),
                }
            }
        };
        let mut next = pos;
        next.advance(count, ring.size());
        self.set_avail_pos(next);
        Ok((id, count, res))
    }

    /// Takes the next descriptor of a packed ring as `lones` has it, `k`
    /// slots after its burst's first (the position must be there): its
    /// buffer and id if it is a lone one (`PackedLones::lone`).
    #[inline(always)]
    pub fn packed_take_gathered<'m>(
        &mut self,
        ring: &RingMem,
        lones: &PackedLones<'m>,
        k: usize,
    ) -> Option<(GuestSlice<'m>, u16)> {
        let lone = lones.lone(k)?;
        self.packed_in_place(|a| a.pos.advance(1, ring.size()));
        Some(lone)
    }

    /// `Avail::packed_take_batch` in place.
    #[inline(always)]
    pub fn packed_take_batch(&mut self, ring: &RingMem) {
        self.packed_in_place(|a| a.packed_take_batch(ring))
    }
}

impl Avail {
    /// Split rings: entries the guest made available and not taken yet.
    #[inline(always)]
    pub fn left(self) -> u16 {
        self.left
    }

    #[inline(always)]
    fn split_taken(&mut self, n: u16) {
        self.pos.idx = self.pos.idx.wrapping_add(n);
        self.left -= n;
    }

    /// Prefetches the buffers of the next `n` chains (at most those left)
    /// of a split ring, at the start of a burst: the misses on lines the
    /// guest's core last touched then overlap each other instead of
    /// stalling packet by packet.
    pub fn split_prefetch<'m>(self, ring: &RingMem, mem: &impl AddressSpace<'m>, n: usize, write: bool) {
        for j in 0..n.min(usize::from(self.left)) {
            let head = ring.split_avail_ring(self.pos.idx.wrapping_add(j as u16));
            prefetch_buffer(mem, ring.read_split_desc(head), write);
        }
    }

    /// Takes the next chain of a split ring if it is one buffer of at least
    /// `needed` bytes: the buffer and the chain's id.
    #[inline(always)]
    pub fn split_take_lone<'m>(
        &mut self,
        ring: &RingMem,
        mem: &impl AddressSpace<'m>,
        needed: u64,
    ) -> Option<(GuestSlice<'m>, u16)> {
        if self.left == 0 {
            return None;
        }
        let head = ring.split_avail_ring(self.pos.idx);
        if head >= ring.size() {
            return None;
        }
        let seg = lone_buffer(mem, &ring.read_split_desc(head), needed)?;
        self.split_taken(1);
        Some((seg, head))
    }

    /// Takes the next chain of a split ring (the caller knows one is
    /// left): one buffer of at least `needed` bytes, or else gathered into
    /// `bufs`.
    #[inline(always)]
    pub fn split_take<'m>(
        &mut self,
        ring: &RingMem,
        mem: &impl AddressSpace<'m>,
        needed: u64,
        bufs: &mut BufVec,
    ) -> Taken<'m> {
        let t = self.split_look(0, ring, mem, needed, bufs);
        if !matches!(t.buffer, Err(ChainError::IotlbMiss { .. })) {
            self.split_taken(1);
        }
        t
    }

    /// The chain `k` entries after the next one of a split ring (the caller
    /// knows it is left), as `split_take` gives it, without taking it: a
    /// burst that looks at its chains in turn takes them at the end with
    /// `split_skip` (its position then stays in a register).
    #[inline(always)]
    pub fn split_look<'m>(
        self,
        k: u16,
        ring: &RingMem,
        mem: &impl AddressSpace<'m>,
        needed: u64,
        bufs: &mut BufVec,
    ) -> Taken<'m> {
        let head = ring.split_avail_ring(self.pos.idx.wrapping_add(k));
        let lone =
            (head < ring.size()).then(|| lone_buffer(mem, &ring.read_split_desc(head), needed)).flatten();
        let buffer = match lone {
            Some(seg) => Ok(Some(seg)),
            None => {
                bufs.clear();
                walk_split(mem, ring.size(), head, |i| ring.read_split_desc(i), bufs).map(|()| None)
            }
        };
        Taken { id: head, count: 1, buffer }
    }

    /// Takes the next `n` chains of a split ring (at most those left),
    /// looked at with `split_look`.
    #[inline(always)]
    pub fn split_skip(&mut self, n: u16) {
        self.split_taken(n.min(self.left));
    }

    /// Takes the next chain of a split ring for a request the caller walks
    /// itself (`split::visit_chain`): its head id.
    #[inline]
    pub fn split_take_head(&mut self, ring: &RingMem) -> u16 {
        let head = ring.split_avail_ring(self.pos.idx);
        self.split_taken(1);
        head
    }

    /// Gathers enough chains of a split ring, from the next one on, for
    /// `needed` bytes (several only when `mergeable`) into `bufs`, and takes
    /// them; `room` (used entries left in the burst) bounds them. `Ok(false)`
    /// if the packet cannot be placed now (nothing taken), or the error of a
    /// malformed chain.
    pub fn split_reserve<'m>(
        &mut self,
        ring: &RingMem,
        mem: &impl AddressSpace<'m>,
        bufs: &mut BufVec,
        needed: u64,
        mergeable: bool,
        room: usize,
    ) -> Result<bool, ChainError> {
        bufs.clear();
        while bufs.total() < needed {
            let taken = bufs.nchains as u16;
            if taken == self.left || (!mergeable && taken == 1) || bufs.nchains == room {
                return Ok(false);
            }
            let head = ring.split_avail_ring(self.pos.idx.wrapping_add(taken));
            let before = bufs.total();
            walk_split(mem, ring.size(), head, |i| ring.read_split_desc(i), bufs)?;
            if !bufs.push_chain(head, 1, before) {
                return Ok(false);
            }
        }
        self.split_taken(bufs.nchains as u16);
        Ok(true)
    }

    // --- packed layout ----------------------------------------------------

    /// Whether the guest made the next descriptor of a packed ring
    /// available.
    #[inline(always)]
    pub fn packed_has_next(self, ring: &RingMem) -> bool {
        is_available(ring, self.pos)
    }

    /// How many consecutive descriptors from the next one the guest has
    /// made available, up to `max` (an upper bound on the packets a dequeue
    /// takes).
    pub fn packed_count(self, ring: &RingMem, max: usize) -> usize {
        let PackedPos { idx, wrap } = self.pos;
        // Up to the end of the ring, then on from slot 0 in the next round.
        let before_end = usize::from(ring.size().saturating_sub(idx)).min(max);
        let n = ring.packed_flags_run(idx, before_end).take_while(|&f| made_available(f, wrap)).count();
        if n < before_end {
            return n;
        }
        n + ring.packed_flags_run(0, max - n).take_while(|&f| made_available(f, !wrap)).count()
    }

    /// Prefetches for writing the ring lines of the next `n` descriptors
    /// (not past the end of the ring): an enqueue burst reads them and then
    /// marks them used.
    #[inline(always)]
    pub fn packed_prefetch_ring(self, ring: &RingMem, n: usize) {
        ring.prefetch_packed_run(self.pos.idx, n);
    }

    /// Reads the next `n` descriptors (known to be available:
    /// `packed_count`) once, at the start of a dequeue burst, into `lones`:
    /// each lone buffer of at least `needed` bytes translated, for the
    /// burst to take from there (`PackedLones::batch`,
    /// `VqState::packed_take_gathered`) instead of reading and translating
    /// it a second time. Every buffer is prefetched: their misses, on lines
    /// the guest's core last wrote, then overlap each other and the mbuf
    /// allocation instead of stalling batch by batch. Out of line (a call a
    /// burst): inlined, it left the dequeue loops that follow with more
    /// spilled registers (docs/performance.md, 2026-12-07).
    #[inline(never)]
    pub fn packed_gather<'m>(
        self,
        ring: &RingMem,
        mem: &impl AddressSpace<'m>,
        n: usize,
        needed: u64,
        lones: &mut PackedLones<'m>,
    ) {
        let n = n.min(MAX_BURST);
        // Up to the end of the ring, then on from slot 0: two plain runs.
        let idx = self.pos.idx;
        let before_end = usize::from(ring.size().saturating_sub(idx)).min(n);
        let (segs, ids) = (&mut lones.segs[..n], &mut lones.ids[..n]);
        let (segs_end, segs_start) = segs.split_at_mut(before_end);
        let (ids_end, ids_start) = ids.split_at_mut(before_end);
        for ((seg, id), d) in segs_end.iter_mut().zip(ids_end).zip(ring.packed_desc_run(idx, before_end)) {
            (*seg, *id) = (gather(mem, d, needed), d.next_or_id);
        }
        for ((seg, id), d) in
            segs_start.iter_mut().zip(ids_start).zip(ring.packed_desc_run(0, n - before_end))
        {
            (*seg, *id) = (gather(mem, d, needed), d.next_or_id);
        }
        lones.n = n;
    }

    /// Takes the next descriptor of a packed ring if the guest made it
    /// available and it is a lone buffer of at least `needed` bytes: the
    /// buffer and its id.
    #[inline(always)]
    pub fn packed_take_lone<'m>(
        &mut self,
        ring: &RingMem,
        mem: &impl AddressSpace<'m>,
        needed: u64,
    ) -> Option<(GuestSlice<'m>, u16)> {
        if !is_available(ring, self.pos) {
            return None;
        }
        let d = ring.read_packed_desc(self.pos.idx);
        let seg = lone_buffer(mem, &d, needed)?;
        self.pos.advance(1, ring.size());
        Some((seg, d.next_or_id))
    }

    /// Takes the next chain of a packed ring (the caller knows it is
    /// available): one buffer of at least `needed` bytes, or else gathered
    /// into `bufs`. A malformed chain is taken as one slot so the ring
    /// moves on.
    #[inline(always)]
    pub fn packed_take<'m>(
        &mut self,
        ring: &RingMem,
        mem: &impl AddressSpace<'m>,
        needed: u64,
        bufs: &mut BufVec,
    ) -> Taken<'m> {
        let size = ring.size();
        let d = ring.read_packed_desc(self.pos.idx);
        let taken = match lone_buffer(mem, &d, needed) {
            Some(seg) => Taken { id: d.next_or_id, count: 1, buffer: Ok(Some(seg)) },
            None => {
                bufs.clear();
                match walk_packed(mem, size, self.pos.idx, |i| ring.read_packed_desc(i), bufs) {
                    Ok(c) => Taken { id: c.id, count: c.count, buffer: Ok(None) },
                    Err(e @ ChainError::IotlbMiss { .. }) => {
                        return Taken { id: 0, count: 0, buffer: Err(e) }
                    }
                    Err(e) => Taken { id: d.next_or_id, count: 1, buffer: Err(e) },
                }
            }
        };
        self.pos.advance(taken.count, size);
        taken
    }

    /// Gathers enough chains of a packed ring, from the next available one
    /// on, for `needed` bytes (several only when `mergeable`) into `bufs`,
    /// and takes them; `Ok(false)` if not enough is available now (`room`:
    /// used entries left in the burst; nothing taken), or the error of a
    /// malformed chain.
    pub fn packed_reserve<'m>(
        &mut self,
        ring: &RingMem,
        mem: &impl AddressSpace<'m>,
        bufs: &mut BufVec,
        needed: u64,
        mergeable: bool,
        room: usize,
    ) -> Result<bool, ChainError> {
        let mut pos = self.pos;
        bufs.clear();
        while bufs.total() < needed {
            if (!mergeable && bufs.nchains == 1) || bufs.nchains == room || !is_available(ring, pos) {
                return Ok(false);
            }
            let before = bufs.total();
            let c = walk_packed(mem, ring.size(), pos.idx, |i| ring.read_packed_desc(i), bufs)?;
            if !bufs.push_chain(c.id, c.count, before) {
                return Ok(false);
            }
            pos.advance(c.count, ring.size());
        }
        self.pos = pos;
        Ok(true)
    }

    /// The next `BATCH` descriptors of a packed ring as lone buffers
    /// (`lone_buffer`) of at least `needed[k]` bytes each: their buffers
    /// and ids, not taken yet (`packed_take_batch` takes them). `None` if
    /// the next slot is not a multiple of `BATCH` (the batch would not be
    /// one line, or would wrap), if any of them is not available, or if any
    /// needs the full walk; the caller then takes them one by one. All four
    /// flags are checked before any descriptor is read. The buffers are
    /// prefetched for writing (an enqueue's batch; a dequeue takes its
    /// batches from `packed_gather`).
    #[inline(always)]
    pub fn packed_batch<'m>(
        self,
        ring: &RingMem,
        mem: &impl AddressSpace<'m>,
        needed: [u64; BATCH],
    ) -> Option<[(GuestSlice<'m>, u16); BATCH]> {
        let line = ring.packed_line::<BATCH>(self.pos.idx)?;
        let wrap = self.pos.wrap;
        if !line.flags().iter().fold(true, |all, &f| all & made_available(f, wrap)) {
            return None;
        }
        let descs = line.read();
        let mut bufs = [(GuestSlice::default(), 0); BATCH];
        for ((b, d), need) in bufs.iter_mut().zip(&descs).zip(needed) {
            *b = (lone_buffer(mem, d, need)?, d.next_or_id);
        }
        for (seg, _) in &bufs {
            prefetch_segment(*seg, true);
        }
        Some(bufs)
    }

    /// Takes the batch `packed_batch` found.
    #[inline(always)]
    pub fn packed_take_batch(&mut self, ring: &RingMem) {
        self.pos.advance(BATCH as u16, ring.size());
    }

    // --- either layout (the async path) -----------------------------------

    /// `split_take_lone` or `packed_take_lone`.
    #[inline(always)]
    pub fn take_lone<'m>(
        &mut self,
        ring: &RingMem,
        mem: &impl AddressSpace<'m>,
        needed: u64,
    ) -> Option<(GuestSlice<'m>, u16)> {
        if ring.is_packed() {
            self.packed_take_lone(ring, mem, needed)
        } else {
            self.split_take_lone(ring, mem, needed)
        }
    }

    /// `split_reserve` or `packed_reserve`.
    pub fn reserve<'m>(
        &mut self,
        ring: &RingMem,
        mem: &impl AddressSpace<'m>,
        bufs: &mut BufVec,
        needed: u64,
        mergeable: bool,
        room: usize,
    ) -> Result<bool, ChainError> {
        if ring.is_packed() {
            self.packed_reserve(ring, mem, bufs, needed, mergeable, room)
        } else {
            self.split_reserve(ring, mem, bufs, needed, mergeable, room)
        }
    }

    /// The next chain (`split_take` or `packed_take`), `None` if none is
    /// available; the `left` of a packed ring counts descriptors, not
    /// chains, so the next head is checked there.
    #[inline(always)]
    pub fn take<'m>(
        &mut self,
        ring: &RingMem,
        mem: &impl AddressSpace<'m>,
        needed: u64,
        bufs: &mut BufVec,
    ) -> Option<Taken<'m>> {
        if ring.is_packed() {
            self.packed_has_next(ring).then(|| self.packed_take(ring, mem, needed, bufs))
        } else {
            (self.left > 0).then(|| self.split_take(ring, mem, needed, bufs))
        }
    }
}
