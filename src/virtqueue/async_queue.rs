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
    mbuf: HeldMbuf,
    /// Its used entries (the chains it filled).
    used: u16,
    channel: ChannelId,
    /// The channel's completion count at which its last copy is done.
    done_at: u64,
    /// Dequeue: the guest's virtio-net header (wire form), applied to the
    /// mbuf once its data has arrived.
    net_hdr: u128,
}

#[derive(Debug, Default)]
pub struct AsyncQueue {
    packets: VecDeque<InflightPacket>,
    used: VecDeque<UsedElem>,
    /// Tables written by the copies in flight (the newest last).
    tables: Vec<Arc<GuestMemory>>,
    /// What the submit and poll calls work in, kept between them.
    pub scratch: DmaScratch,
}

/// A packet being submitted: its mbuf, the end of its copies in
/// `DmaScratch::copies`, the chains (used entries) it took, the ring's
/// avail position before them (to give them back if it cannot be sent),
/// and (dequeue) the guest's virtio-net header in wire form.
#[derive(Clone, Copy, Debug)]
pub struct Submitted {
    pub mbuf: HeldMbuf,
    pub copies_end: usize,
    pub chains: u16,
    pub from: super::avail::Avail,
    pub net_hdr: u128,
}

/// How a packet's copies were submitted: on which channel, the channel's
/// completion count at which they are all done, and (dequeue) the guest's
/// virtio-net header.
#[derive(Clone, Copy, Debug)]
pub struct Completion {
    pub channel: ChannelId,
    pub done_at: u64,
    pub net_hdr: u128,
}

/// Working space of one submit or poll call.
#[derive(Debug, Default)]
pub struct DmaScratch {
    /// The copies of the packets being submitted, packet after packet.
    pub copies: Vec<dma::Copy>,
    /// The packets being submitted.
    pub packets: Vec<Submitted>,
    /// Per packet submitted: its completion count.
    pub done_at: Vec<u64>,
    /// The used entries and headers of the packets a poll completes.
    pub used: Vec<UsedElem>,
    pub hdrs: Vec<u128>,
}

impl AsyncQueue {
    /// Packets in flight (`rte_vhost_async_get_inflight`).
    pub fn inflight(&self) -> usize {
        self.packets.len()
    }

    /// Records packet `mbuf`, whose copies into or out of `mem` were
    /// submitted as `copies` says, and its used entries.
    #[inline(always)]
    pub fn push(&mut self, mbuf: Mbuf, used: &[UsedElem], copies: Completion, mem: &Arc<GuestMemory>) {
        if !self.tables.last().is_some_and(|t| Arc::ptr_eq(t, mem)) {
            self.tables.push(Arc::clone(mem));
        }
        self.packets.push_back(InflightPacket {
            mbuf: HeldMbuf(mbuf),
            used: used.len() as u16,
            channel: copies.channel,
            done_at: copies.done_at,
            net_hdr: copies.net_hdr,
        });
        // Usually one entry: a loop, not a copy call.
        for &u in used {
            self.used.push_back(u);
        }
    }

    /// Takes up to `out.len()` packets from the front whose copies are
    /// complete, writing them to `out`, their headers to `hdrs` (if
    /// wanted) and their used entries to `used`; returns how many.
    pub fn take_completed(
        &mut self,
        out: &mut [Option<Mbuf>],
        hdrs: Option<&mut Vec<u128>>,
        used: &mut Vec<UsedElem>,
    ) -> usize {
        // The completion count of the channel of the packet before (one
        // lookup per channel change, usually one a call).
        let mut last: Option<(ChannelId, u64)> = None;
        let n = self
            .packets
            .iter()
            .take(out.len())
            .take_while(|p| {
                let completed = match last {
                    Some((ch, count)) if ch == p.channel => count,
                    _ => dma::completed(p.channel),
                };
                last = Some((p.channel, completed));
                completed >= p.done_at
            })
            .count();
        if let Some(hdrs) = hdrs {
            hdrs.extend(self.packets.range(..n).map(|p| p.net_hdr));
        }
        let mut nused = 0;
        for (slot, p) in out.iter_mut().zip(self.packets.drain(..n)) {
            *slot = Some(p.mbuf.0);
            nused += usize::from(p.used);
        }
        used.extend(self.used.drain(..nused));
        if self.packets.is_empty() {
            self.tables.clear();
        }
        n
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
            let mbufs: Vec<Option<Mbuf>> = self.packets.iter().map(|p| Some(p.mbuf.0)).collect();
            mbuf::free_bulk(&mbufs);
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
