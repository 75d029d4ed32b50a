//! The IOTLB misses a device asked the front-end for and that are not
//! answered yet: what keeps a page from being asked again and again, and
//! what bounds the asking, whatever the guest posts and the front-end
//! answers.
//!
//! Bounds (`docs/security.md` states them): at most `MAX_PENDING` entries,
//! the oldest evicted; a lookup is one hash probe and an insertion evicts at
//! most one entry, so an ask costs O(1) however many are pending; each ring's
//! bursts have at most `MAX_PER_RING` asks outstanding (a guest that posts a
//! new unmapped IOVA before every poll gets that many asks, then more only
//! as the front-end answers or the retry period passes); buffers asked for
//! ahead of need only while fewer than `MAX_AHEAD` asks of any kind are
//! outstanding.

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

use super::MAX_VRING;
use crate::guest::iotlb::{PERM_RO, PERM_RW, PERM_WO};

/// Misses are asked for by page.
pub(super) const PAGE: u64 = 4096;
/// Entries kept at most (22.11's pending list holds 2048).
pub(super) const MAX_PENDING: usize = 2048;
/// Outstanding asks of one ring's bursts, at most (a burst stops at its
/// first miss: an honest guest has one or two outstanding).
pub(super) const MAX_PER_RING: u8 = 8;
/// Buffers asked for ahead of need are asked only while fewer than this
/// many asks are outstanding (QEMU answers in order; asking for a whole
/// ring's buffers at once would put a miss a burst waits for behind all of
/// them).
const MAX_AHEAD: usize = 16;
/// A miss not answered after this long may be asked again (the front-end
/// ignores misses the guest had not mapped yet).
pub(super) const MISS_RETRY: Duration = Duration::from_secs(1);

/// Who asks: what bounds how many of its asks may be outstanding.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Asker {
    /// A ring's translation lacks one of its areas (one ask per area and
    /// translation).
    RingArea,
    /// A burst on this ring missed.
    Burst(u16),
    /// A posted buffer, looked up ahead of need.
    Ahead,
}

type Key = (u64, u8);

#[derive(Debug)]
struct Entry {
    seq: u64,
    asked_at: Instant,
    by: Asker,
}

/// The asks not answered yet, by page and rights.
#[derive(Debug, Default)]
pub(super) struct PendingMisses {
    entries: HashMap<Key, Entry>,
    /// Keys in the order asked, with the entry's `seq`: an item whose entry
    /// is gone or was asked again later is stale (skipped, and dropped when
    /// stale items outnumber the entries).
    order: VecDeque<(u64, Key)>,
    next_seq: u64,
    /// Outstanding asks of each ring's bursts (`MAX_VRING` long once used).
    per_ring: Vec<u8>,
}

impl PendingMisses {
    /// Whether to ask for `page` with `perm` now on behalf of `by` (not
    /// asked less than `MISS_RETRY` ago, and `by` within its bound); if so
    /// it is recorded as asked at `now`, evicting the oldest entry when
    /// full.
    pub(super) fn ask(&mut self, page: u64, perm: u8, by: Asker, now: Instant) -> bool {
        self.expire(now);
        if self.entries.contains_key(&(page, perm)) {
            return false;
        }
        let at_bound = match by {
            Asker::RingArea => false,
            Asker::Burst(ring) => self.per_ring.get(usize::from(ring)).is_some_and(|&n| n >= MAX_PER_RING),
            Asker::Ahead => self.entries.len() >= MAX_AHEAD,
        };
        if at_bound {
            return false;
        }
        if self.entries.len() >= MAX_PENDING {
            self.evict_oldest();
        }
        if let Asker::Burst(ring) = by {
            if self.per_ring.is_empty() {
                self.per_ring = vec![0; MAX_VRING];
            }
            if let Some(n) = self.per_ring.get_mut(usize::from(ring)) {
                *n += 1;
            }
        }
        let seq = self.next_seq;
        self.next_seq += 1;
        self.entries.insert((page, perm), Entry { seq, asked_at: now, by });
        self.order.push_back((seq, (page, perm)));
        true
    }

    /// The ask for `page` with `perm` did not go out: forget it.
    pub(super) fn forget(&mut self, page: u64, perm: u8) {
        self.remove(&(page, perm));
    }

    /// An update for [iova, iova + size) arrived: the pages it overlaps are
    /// answered, whatever rights were asked. Costs the smaller of the
    /// pages in the range and the entries pending.
    pub(super) fn answered(&mut self, iova: u64, size: u64) {
        if size == 0 || self.entries.is_empty() {
            return;
        }
        let first = iova & !(PAGE - 1);
        let last = iova.saturating_add(size - 1) & !(PAGE - 1);
        let pages = (last - first) / PAGE + 1;
        if pages.saturating_mul(3) <= self.entries.len() as u64 {
            for k in 0..pages {
                for perm in [PERM_RO, PERM_WO, PERM_RW] {
                    self.remove(&(first + k * PAGE, perm));
                }
            }
        } else {
            let keys: Vec<Key> =
                self.entries.keys().filter(|&&(p, _)| p >= first && p <= last).copied().collect();
            for key in keys {
                self.remove(&key);
            }
        }
        self.compact();
    }

    pub(super) fn clear(&mut self) {
        *self = PendingMisses::default();
    }

    #[cfg(any(test, feature = "testing"))]
    pub(super) fn len(&self) -> usize {
        self.entries.len()
    }

    /// Drops the entries asked `MISS_RETRY` or more before `now` (they are
    /// at the front: entries are asked in time order).
    fn expire(&mut self, now: Instant) {
        while let Some(&(seq, key)) = self.order.front() {
            match self.entries.get(&key) {
                Some(e) if e.seq == seq => {
                    if now.saturating_duration_since(e.asked_at) < MISS_RETRY {
                        return;
                    }
                    self.remove(&key);
                }
                _ => {}
            }
            self.order.pop_front();
        }
    }

    fn evict_oldest(&mut self) {
        while let Some((seq, key)) = self.order.pop_front() {
            if self.entries.get(&key).is_some_and(|e| e.seq == seq) {
                self.remove(&key);
                return;
            }
        }
    }

    fn remove(&mut self, key: &Key) {
        let Some(e) = self.entries.remove(key) else { return };
        if let Asker::Burst(ring) = e.by {
            if let Some(n) = self.per_ring.get_mut(usize::from(ring)) {
                *n = n.saturating_sub(1);
            }
        }
    }

    /// Drops the stale items of `order` once they outnumber the entries
    /// (amortised O(1) per removal).
    fn compact(&mut self) {
        if self.order.len() > 2 * self.entries.len() + 64 {
            let entries = &self.entries;
            self.order.retain(|(seq, key)| entries.get(key).is_some_and(|e| e.seq == *seq));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn page(k: u64) -> u64 {
        0x7_0000_0000 + k * PAGE
    }

    #[test]
    fn a_page_is_asked_once_until_answered_or_the_retry_period_passed() {
        let mut p = PendingMisses::default();
        let t = Instant::now();
        assert!(p.ask(page(1), PERM_WO, Asker::Burst(0), t));
        assert!(!p.ask(page(1), PERM_WO, Asker::Burst(1), t), "pending");
        assert!(p.ask(page(1), PERM_RO, Asker::Burst(1), t), "other rights are another ask");
        assert!(!p.ask(page(1), PERM_WO, Asker::RingArea, t + MISS_RETRY / 2));
        assert!(
            p.ask(page(1), PERM_WO, Asker::RingArea, t + MISS_RETRY),
            "asked again after the retry period"
        );
        p.answered(page(1) + 100, 1);
        assert_eq!(p.len(), 0, "an update anywhere in the page answers every right");
        assert!(p.ask(page(1), PERM_WO, Asker::Burst(0), t + MISS_RETRY));
    }

    /// Finding 3 of issue 19: the list grew without bound and was scanned
    /// on every ask.
    #[test]
    fn the_set_never_holds_more_than_its_cap_and_evicts_the_oldest() {
        let mut p = PendingMisses::default();
        let t = Instant::now();
        for k in 0..10_000 {
            assert!(p.ask(page(k), PERM_RW, Asker::RingArea, t), "room is made for every new ask");
            assert!(p.len() <= MAX_PENDING);
        }
        assert_eq!(p.len(), MAX_PENDING);
        assert!(
            !p.entries.contains_key(&(page(10_000 - MAX_PENDING as u64 - 1), PERM_RW)),
            "the oldest went"
        );
        assert!(p.entries.contains_key(&(page(10_000 - MAX_PENDING as u64), PERM_RW)));
        assert!(p.entries.contains_key(&(page(9_999), PERM_RW)), "the newest stays");
        assert!(p.order.len() <= 2 * p.len() + 64);
    }

    #[test]
    fn bursts_of_one_ring_have_at_most_max_per_ring_asks_outstanding() {
        let mut p = PendingMisses::default();
        let t = Instant::now();
        let asked = (0..100).filter(|&k| p.ask(page(k), PERM_WO, Asker::Burst(3), t)).count();
        assert_eq!(asked, usize::from(MAX_PER_RING));
        assert!(p.ask(page(500), PERM_WO, Asker::Burst(4), t), "another ring has its own budget");
        assert!(p.ask(page(501), PERM_WO, Asker::RingArea, t), "ring areas are not burst asks");
        p.answered(page(0), PAGE);
        assert!(p.ask(page(200), PERM_WO, Asker::Burst(3), t), "an answer makes room");
        assert!(!p.ask(page(201), PERM_WO, Asker::Burst(3), t));
        assert!(p.ask(page(201), PERM_WO, Asker::Burst(3), t + MISS_RETRY), "so does the retry period");
    }

    #[test]
    fn ahead_of_need_only_while_few_asks_are_outstanding() {
        let mut p = PendingMisses::default();
        let t = Instant::now();
        for k in 0..MAX_AHEAD as u64 {
            assert!(p.ask(page(k), PERM_RO, Asker::RingArea, t));
        }
        assert!(!p.ask(page(100), PERM_RO, Asker::Ahead, t));
        p.answered(page(0), PAGE);
        assert!(p.ask(page(100), PERM_RO, Asker::Ahead, t));
    }

    #[test]
    fn answers_cost_at_most_the_entries_and_leave_the_order_bounded() {
        let mut p = PendingMisses::default();
        let t = Instant::now();
        for k in 0..100_000 {
            assert!(p.ask(page(k % 5000), PERM_RO, Asker::Burst(0), t));
            p.answered(page(k % 5000), PAGE);
            assert!(p.order.len() <= 2 * p.len() + 65, "stale items are dropped");
        }
        p.ask(page(7), PERM_RO, Asker::RingArea, t);
        p.ask(page(8), PERM_RO, Asker::RingArea, t);
        p.answered(0, u64::MAX);
        assert_eq!(p.len(), 0, "an update of the whole space answers everything");
        p.ask(page(9), PERM_RO, Asker::RingArea, t);
        p.answered(u64::MAX - 10, 100);
        assert_eq!(p.len(), 1, "a range that runs past the end is no wrap");
    }
}
