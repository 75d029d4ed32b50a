//! Used entries gathered during a burst, published together (split: at the
//! end of the burst; packed: per batch or at the end).

use super::MAX_BURST;

/// A used entry to publish: the chain's head (split) or buffer id (packed),
/// the bytes written into it, and the ring slots it took (packed).
#[derive(Clone, Copy, Debug, Default)]
pub struct UsedElem {
    pub id: u16,
    pub len: u32,
    pub count: u16,
}

/// The used entries of one burst. It lives in the ring's `BurstScratch` and
/// is only `clear`ed between bursts: zeroing a fresh one cost about three
/// instructions a packet.
#[derive(Debug)]
pub struct UsedBatch {
    elems: [UsedElem; MAX_BURST * 4],
    n: usize,
}

impl Default for UsedBatch {
    fn default() -> Self {
        UsedBatch { elems: [UsedElem::default(); MAX_BURST * 4], n: 0 }
    }
}

impl UsedBatch {
    /// Entries that can still be added.
    pub fn room(&self) -> usize {
        self.elems.len() - self.n
    }
    /// Adds an entry; the callers never exceed `room()`.
    pub fn push(&mut self, id: u16, len: u32, count: u16) {
        self.elems[self.n] = UsedElem { id, len, count };
        self.n += 1;
    }
    /// Adds entries; the callers never exceed `room()`.
    #[inline(always)]
    pub fn extend(&mut self, elems: &[UsedElem]) {
        self.elems[self.n..self.n + elems.len()].copy_from_slice(elems);
        self.n += elems.len();
    }
    pub fn entries(&self) -> &[UsedElem] {
        &self.elems[..self.n]
    }
    pub fn clear(&mut self) {
        self.n = 0;
    }
}
