//! virtio-net through the C API for the datapath tests: a device with an
//! RX and a TX split ring played by the driver model, and the guest's side
//! of a packet (virtio-net header, Ethernet/IP/L4 frame, checksums) built
//! and read back byte for byte.

use std::collections::HashMap;
use std::time::Duration;

use rvhost::testing::mock::{Buf, DriverRing, Layout, RingAreas, Used};
use rvhost::testing::{Mbuf, RteMbuf};

use super::rig::*;

// virtio-net feature bits beside the rig's.
pub const F_CSUM: u64 = 1 << 0;
pub const F_GUEST_CSUM: u64 = 1 << 1;
pub const F_GUEST_TSO4: u64 = 1 << 7;
pub const F_GUEST_TSO6: u64 = 1 << 8;
pub const F_GUEST_UFO: u64 = 1 << 10;
pub const F_HOST_TSO4: u64 = 1 << 11;
pub const F_HOST_TSO6: u64 = 1 << 12;
pub const F_HOST_UFO: u64 = 1 << 14;
pub const BASIC: u64 = F_VERSION_1 | F_MRG_RXBUF;
pub const GUEST_OFFLOADS: u64 = F_GUEST_CSUM | F_GUEST_TSO4 | F_GUEST_TSO6 | F_GUEST_UFO;
pub const HOST_OFFLOADS: u64 = F_CSUM | F_HOST_TSO4 | F_HOST_TSO6 | F_HOST_UFO;
pub const OFFLOADS: u64 = BASIC | GUEST_OFFLOADS | HOST_OFFLOADS;

// virtio-net header values.
pub const NEEDS_CSUM: u8 = 1;
pub const DATA_VALID: u8 = 2;
pub const GSO_TCPV4: u8 = 1;
pub const GSO_UDP: u8 = 3;
pub const GSO_TCPV6: u8 = 4;

pub const TCP: u8 = 6;
pub const UDP: u8 = 17;

/// Entries of the `Guest`'s rings.
pub const RING: u16 = 256;

/// A split ring of `RING` entries at `base`: descriptors, the avail ring
/// right after them, the used ring 8 KiB in (a page of its own, which the
/// logging test looks for).
fn split_areas(base: u64) -> RingAreas {
    RingAreas { desc: base, driver: base + 16 * u64::from(RING), device: base + 0x2000 }
}

/// One virtio-net device driven by the scripted front-end: RX ring (queue
/// 0) at 0x10000 and TX ring (queue 1) at 0x20000 of a 2 MiB guest memory,
/// both logging their used rings once logging is on.
pub struct Guest {
    pub rx: DriverRing,
    pub tx: DriverRing,
    /// Where each RX buffer posted is, by chain id.
    rx_at: HashMap<u16, u64>,
    /// The TX ring's used entries, in the order the device published them.
    pub tx_used: Vec<Used>,
    pub rig: Rig,
}

impl Guest {
    /// Sets the device up (protocol features REPLY_ACK and LOG_SHMFD) and
    /// returns once `new_device` fired for it.
    pub fn connect(name: &str, socket_flags: u64, features: u64) -> Guest {
        let mut rig = Rig::connect(name, socket_flags, features, PF_LOG_SHMFD, 2 << 20);
        rig.log_rings = true;
        let rx = rig.ring(0, Layout::Split, RING, split_areas(0x10000));
        let tx = rig.ring(1, Layout::Split, RING, split_areas(0x20000));
        rig.wait_started();
        Guest { rx, tx, rx_at: HashMap::new(), tx_used: Vec::new(), rig }
    }

    /// A fresh mbuf holding `data` (within one segment).
    pub fn mbuf(&self, data: &[u8]) -> Mbuf {
        mbuf_of(self.rig.pool, data)
    }

    /// Enqueues `m` into the guest's RX ring (retrying while the control
    /// plane holds the ring, as applications do) and frees it: the library
    /// copies.
    pub fn enqueue(&self, m: Mbuf) {
        let mut raw = [m.as_ptr()];
        let sent = (0..1000).any(|_| {
            // SAFETY: valid vid, queue and one mbuf.
            let n = unsafe { rte_vhost_enqueue_burst(self.rig.vid, 0, raw.as_mut_ptr(), 1) };
            if n == 0 {
                std::thread::sleep(Duration::from_millis(1));
            }
            n == 1
        });
        assert!(sent, "packet enqueued");
        m.free();
    }

    /// Posts `n` writable 2 KiB RX buffers from `gpa` on, 4 KiB apart.
    pub fn post_rx_buffers(&mut self, gpa: u64, n: u64) {
        for at in (0..n).map(|k| gpa + 0x1000 * k) {
            let id = self.rx.post(&[Buf { gpa: at, len: 2048, write: true }]).expect("room on the RX ring");
            self.rx_at.insert(id, at);
        }
    }

    /// The next packet the guest received: its virtio-net header and
    /// payload, gathered over `num_buffers` used entries.
    pub fn received(&mut self) -> ([u8; 12], Vec<u8>) {
        let first = self.next_rx_buffer();
        let hdr: [u8; 12] = first[..12].try_into().unwrap();
        let mut data = first[12..].to_vec();
        for _ in 1..u16::from_le_bytes([hdr[10], hdr[11]]) {
            data.extend(self.next_rx_buffer());
        }
        (hdr, data)
    }

    /// What the device wrote into the next used RX buffer.
    fn next_rx_buffer(&mut self) -> Vec<u8> {
        let used = self.rx.pop_used().expect("a used RX buffer");
        self.rx.mem().read(self.rx_at[&used.id], used.len as usize)
    }

    /// Posts one guest packet on the TX ring: its virtio-net header alone
    /// in a descriptor at `gpa`, the payload at `gpa + 0x1000` in
    /// descriptors of at most `seg` bytes. Returns the chain's id.
    pub fn post_packet(&mut self, gpa: u64, hdr: [u8; 12], payload: &[u8], seg: usize) -> u16 {
        let mem = self.tx.mem();
        mem.write(gpa, &hdr);
        mem.write(gpa + 0x1000, payload);
        let mut bufs = vec![Buf { gpa, len: 12, write: false }];
        for (k, chunk) in payload.chunks(seg).enumerate() {
            bufs.push(Buf { gpa: gpa + 0x1000 + (k * seg) as u64, len: chunk.len() as u32, write: false });
        }
        self.tx.post(&bufs).expect("room on the TX ring")
    }

    /// Dequeue bursts from the guest's TX ring until the device used every
    /// chain posted (a burst moves nothing while the control plane holds
    /// the ring, and DPDK ends a burst at a dropped packet); at least one
    /// burst. The used entries read go to `tx_used`.
    pub fn dequeue_all(&mut self) -> Vec<Mbuf> {
        let mut got = Vec::new();
        for _ in 0..1000 {
            let mut out = [std::ptr::null_mut::<RteMbuf>(); 32];
            let (vid, pool) = (self.rig.vid, self.rig.pool.as_ptr());
            // SAFETY: valid vid, queue, pool and a 32-entry array.
            let n = unsafe { rte_vhost_dequeue_burst(vid, 1, pool, out.as_mut_ptr(), 32) };
            // SAFETY: mbufs the library handed us.
            got.extend(out[..usize::from(n)].iter().map(|&p| unsafe { Mbuf::from_raw(p) }.unwrap()));
            self.tx_used.extend(std::iter::from_fn(|| self.tx.pop_used()));
            if self.tx.in_flight() == 0 {
                return got;
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        panic!("{} TX chains never used", self.tx.in_flight());
    }

    /// Posts one guest packet and dequeues it (exactly one mbuf out).
    pub fn send_from_guest(&mut self, hdr: [u8; 12], payload: &[u8], seg: usize) -> Mbuf {
        self.post_packet(0x80000, hdr, payload, seg);
        let mut got = self.dequeue_all();
        assert_eq!(got.len(), 1, "one packet dequeued");
        got.pop().unwrap()
    }
}

/// A packet holding `data` in segments of at most `seg` bytes.
pub fn chained_mbuf(pool: rvhost::testing::Mempool, data: &[u8], seg: usize) -> Mbuf {
    let mut head = rvhost::testing::mbuf::alloc(pool).unwrap();
    for (k, chunk) in data.chunks(seg).enumerate() {
        let last = if k == 0 { &mut head } else { head.chain(rvhost::testing::mbuf::alloc(pool).unwrap()) };
        last.tail_mut(chunk.len()).copy_from_slice(chunk);
        last.commit(chunk.len());
    }
    head.set_pkt_len(data.len() as u32);
    head
}

/// Ethernet + IPv4 (20-byte header) or IPv6 + an L4 header of `l4_len`
/// bytes of protocol `proto` (ports, TCP data offset / UDP length filled) +
/// `payload` pattern bytes. Checksums are zero.
pub fn frame(v4: bool, proto: u8, l4_len: usize, payload: usize) -> Vec<u8> {
    let mut f = vec![0x52, 0x54, 0, 0, 0, 1, 0x52, 0x54, 0, 0, 0, 2];
    let l4_total = (l4_len + payload) as u16;
    if v4 {
        f.extend_from_slice(&[0x08, 0x00]);
        let mut ip = [0u8; 20];
        ip[0] = 0x45;
        ip[2..4].copy_from_slice(&(20 + l4_total).to_be_bytes());
        ip[8] = 64;
        ip[9] = proto;
        ip[12..16].copy_from_slice(&[10, 0, 0, 1]);
        ip[16..20].copy_from_slice(&[10, 0, 0, 2]);
        f.extend_from_slice(&ip);
    } else {
        f.extend_from_slice(&[0x86, 0xdd]);
        let mut ip = [0u8; 40];
        ip[0] = 0x60;
        ip[4..6].copy_from_slice(&l4_total.to_be_bytes());
        ip[6] = proto;
        ip[7] = 64;
        ip[8..10].copy_from_slice(&[0xfe, 0x80]);
        ip[23] = 1;
        ip[24..26].copy_from_slice(&[0xfe, 0x80]);
        ip[39] = 2;
        f.extend_from_slice(&ip);
    }
    let mut l4 = vec![0u8; l4_len];
    l4[0..2].copy_from_slice(&1234u16.to_be_bytes());
    l4[2..4].copy_from_slice(&80u16.to_be_bytes());
    match proto {
        TCP => l4[12] = ((l4_len / 4) as u8) << 4,
        UDP => l4[4..6].copy_from_slice(&l4_total.to_be_bytes()),
        _ => {}
    }
    f.extend_from_slice(&l4);
    f.extend_from_slice(&pattern(payload, 3));
    f
}

/// The folded one's complement sum of big-endian 16-bit words.
pub fn ones_sum(data: &[u8]) -> u16 {
    let mut sum: u32 =
        data.chunks(2).map(|w| u32::from(u16::from_be_bytes([w[0], *w.get(1).unwrap_or(&0)]))).sum();
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    sum as u16
}

/// A guest virtio-net header.
pub fn net_hdr(
    flags: u8,
    gso_type: u8,
    hdr_len: u16,
    gso_size: u16,
    csum_start: u16,
    csum_offset: u16,
) -> [u8; 12] {
    let mut h = [0u8; 12];
    h[0] = flags;
    h[1] = gso_type;
    h[2..4].copy_from_slice(&hdr_len.to_le_bytes());
    h[4..6].copy_from_slice(&gso_size.to_le_bytes());
    h[6..8].copy_from_slice(&csum_start.to_le_bytes());
    h[8..10].copy_from_slice(&csum_offset.to_le_bytes());
    h
}
