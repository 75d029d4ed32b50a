//! A ring's async (DMA) state (`rte_vhost_async_channel_register`): the
//! packets whose copies are in flight, in submission order, with the used
//! entries they will publish and the memory tables their copies write into.
//!
//! Completion is in order: a packet is returned (and its used entries
//! published) only after every packet submitted before it on the ring, as
//! 22.11 does. A memory table stays mapped while a copy into it may be in
//! flight, whatever the front-end sends meanwhile (a new table, a file it
//! truncates): a DMA write never lands in an address reused for something
//! else.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::used::UsedElem;
use crate::dpdk::dma::{self, ChannelId};
use crate::dpdk::mbuf::{self, HeldMbuf, Mbuf};
use crate::guest::GuestMemory;

/// A packet whose copies were submitted.
#[derive(Debug)]
struct InflightPacket {
    /// Taken when the packet is handed back (`release_into`).
    mbuf: Option<HeldMbuf>,
    /// The end of its used entries (the chains it filled), counted over
    /// every entry the queue has recorded.
    used_end: u64,
    channel: ChannelId,
    /// The channel's completion count at which its last copy is done.
    done_at: u64,
    /// Dequeue: the guest's virtio-net header (wire form), applied to the
    /// mbuf once its data has arrived.
    net_hdr: u128,
}

/// A packet's record, written into the queue as its burst prepares it
/// (before its copies are submitted, so nothing is written twice).
#[derive(Debug)]
pub struct Prepared {
    pub mbuf: Mbuf,
    pub channel: ChannelId,
    /// Dequeue: the guest's virtio-net header in wire form.
    pub net_hdr: u128,
}

#[derive(Debug, Default)]
pub struct AsyncQueue {
    packets: VecDeque<InflightPacket>,
    used: VecDeque<UsedElem>,
    /// Used entries taken from the front so far.
    used_taken: u64,
    /// Tables written by the copies in flight (the newest last).
    tables: Vec<Arc<GuestMemory>>,
    /// The copies of the packets being submitted, packet after packet
    /// (kept between the calls for its allocation).
    pub copies: Vec<dma::Copy>,
}

impl AsyncQueue {
    /// Packets in flight (`rte_vhost_async_get_inflight`).
    pub fn inflight(&self) -> usize {
        self.packets.len()
    }

    /// Records packet `p` and its used entries; `submitted` then gives it
    /// its completion count, or forgets it if its copies were not sent.
    #[inline(always)]
    pub fn push(&mut self, p: Prepared, used: &[UsedElem]) {
        // Usually one entry: a loop, not a copy call.
        for &u in used {
            self.used.push_back(u);
        }
        let used_end = self.used_taken + self.used.len() as u64;
        let Prepared { mbuf, channel, net_hdr } = p;
        self.packets.push_back(InflightPacket {
            mbuf: Some(HeldMbuf(mbuf)),
            used_end,
            channel,
            done_at: 0,
            net_hdr,
        });
    }

    /// The packets recorded from `first` on (`inflight()` before the burst
    /// pushed them) had their copies submitted into or out of `mem` as
    /// `sent` says, each ending at the next of `copy_ends`: those sent get
    /// their completion counts, the others are forgotten (their mbufs
    /// returned, for the caller to give back). Returns how many were sent.
    pub fn submitted(
        &mut self,
        first: usize,
        copy_ends: &[usize],
        sent: dma::Sent,
        mem: &Arc<GuestMemory>,
        unsent: &mut Vec<Option<Mbuf>>,
    ) -> usize {
        for (p, &end) in self.packets.range_mut(first..first + sent.packets).zip(copy_ends) {
            p.done_at = sent.first_count + end as u64;
        }
        let kept = first + sent.packets;
        if kept < self.packets.len() {
            unsent.extend(self.packets.drain(kept..).map(|p| p.mbuf.map(|h| h.0)));
            let used_end = self.packets.back().map_or(self.used_taken, |p| p.used_end);
            self.used.truncate((used_end - self.used_taken) as usize);
        }
        if sent.packets > 0 && !self.tables.last().is_some_and(|t| Arc::ptr_eq(t, mem)) {
            self.tables.push(Arc::clone(mem));
        }
        sent.packets
    }

    /// How many packets from the front, at most `max`, have all their
    /// copies complete (in order: none after one still running).
    pub fn count_completed(&self, max: usize) -> usize {
        let (a, b) = self.packets.as_slices();
        // The completion count of the channel of the packet before (one
        // lookup per channel change, usually one a call).
        let mut last: Option<(ChannelId, u64)> = None;
        let mut done = |p: &InflightPacket| {
            let completed = match last {
                Some((ch, count)) if ch == p.channel => count,
                _ => dma::completed(p.channel),
            };
            last = Some((p.channel, completed));
            completed >= p.done_at
        };
        let n = a.iter().take(max).take_while(|p| done(p)).count();
        if n < a.len() || n == max {
            return n;
        }
        n + b.iter().take(max - n).take_while(|p| done(p)).count()
    }

    /// The used entries of the first `n` packets (`n` at most
    /// `inflight()`), in up to two pieces.
    pub fn front_used(&self, n: usize) -> [&[UsedElem]; 2] {
        let nused =
            n.checked_sub(1).map_or(0, |last| (self.packets[last].used_end - self.used_taken) as usize);
        let (a, b) = self.used.as_slices();
        if nused <= a.len() {
            [&a[..nused], &b[..0]]
        } else {
            [a, &b[..nused - a.len()]]
        }
    }

    /// The first `n` packets' mbufs (their copies complete), in place, with
    /// their headers: to finish them before `release_into`.
    pub fn front_mut(&mut self, n: usize) -> impl Iterator<Item = (&mut Mbuf, u128)> + '_ {
        self.packets.range_mut(..n).filter_map(|p| Some((&mut p.mbuf.as_mut()?.0, p.net_hdr)))
    }

    /// Takes the first `out.len()` packets (their copies complete, their
    /// used entries published after `front_used`) out of the queue, their
    /// mbufs into `out`. (Taken in place, then the records dropped
    /// together: moving each record out cost a poll 10 %.)
    pub fn release_into(&mut self, out: &mut [Option<Mbuf>]) {
        let n = out.len();
        let Some(last) = n.checked_sub(1) else { return };
        let used_end = self.packets[last].used_end;
        self.used.drain(..(used_end - self.used_taken) as usize);
        self.used_taken = used_end;
        for (slot, p) in out.iter_mut().zip(self.packets.range_mut(..n)) {
            *slot = p.mbuf.take().map(|h| h.0);
        }
        if self.packets.len() == n {
            self.tables.clear();
        }
        self.packets.drain(..n);
    }
}

impl Drop for AsyncQueue {
    /// The device goes away with copies in flight (the application did
    /// not clear the ring): waits a while for them; then returns the mbufs
    /// to their pools, or, if copies are still running, keeps their mbufs
    /// and tables forever rather than let a late write land in freed
    /// memory.
    fn drop(&mut self) {
        if self.packets.is_empty() {
            return;
        }
        let deadline = Instant::now() + Duration::from_secs(1);
        let done = |q: &AsyncQueue| q.packets.iter().all(|p| dma::completed(p.channel) >= p.done_at);
        while !done(self) && Instant::now() < deadline {
            for p in &self.packets {
                dma::reap(p.channel);
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        if done(self) {
            let mut mbufs: Vec<Option<Mbuf>> = self.packets.drain(..).map(|p| p.mbuf.map(|h| h.0)).collect();
            mbuf::free_bulk(&mut mbufs);
        } else {
            crate::vlog!(
                Data,
                Err,
                "dma",
                "device destroyed with DMA copies still running: their memory is kept"
            );
            std::mem::forget(std::mem::take(&mut self.tables));
        }
        self.packets.clear();
    }
}
