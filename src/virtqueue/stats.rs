//! Per-vring statistics (RTE_VHOST_USER_NET_STATS_ENABLE), with DPDK's names.

/// How many counters a ring reports (DPDK 24.11 added four).
#[cfg(not(feature = "abi-24-11"))]
pub const COUNT: usize = 17;
#[cfg(feature = "abi-24-11")]
pub const COUNT: usize = 21;

/// Names in the order `rte_vhost_vring_stats_get` reports them.
pub const NAMES: [&str; COUNT] = [
    "good_packets",
    "good_bytes",
    "multicast_packets",
    "broadcast_packets",
    "undersize_packets",
    "size_64_packets",
    "size_65_127_packets",
    "size_128_255_packets",
    "size_256_511_packets",
    "size_512_1023_packets",
    "size_1024_1518_packets",
    "size_1519_max_packets",
    "guest_notifications",
    #[cfg(feature = "abi-24-11")]
    "guest_notifications_offloaded",
    #[cfg(feature = "abi-24-11")]
    "guest_notifications_error",
    #[cfg(feature = "abi-24-11")]
    "guest_notifications_suppressed",
    "iotlb_hits",
    "iotlb_misses",
    "inflight_submitted",
    "inflight_completed",
    #[cfg(feature = "abi-24-11")]
    "mbuf_alloc_failed",
];

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct VringStats {
    pub packets: u64,
    pub bytes: u64,
    pub multicast: u64,
    pub broadcast: u64,
    pub size_bins: [u64; 8],
    pub guest_notifications: u64,
    /// `guest_notify` took the interrupt (24.11's interrupt offload).
    #[cfg(feature = "abi-24-11")]
    pub guest_notifications_offloaded: u64,
    /// The call eventfd could not be written (none given, or the write failed).
    #[cfg(feature = "abi-24-11")]
    pub guest_notifications_error: u64,
    /// An interrupt not raised because an offloaded one is still pending.
    #[cfg(feature = "abi-24-11")]
    pub guest_notifications_suppressed: u64,
    pub iotlb_hits: u64,
    pub iotlb_misses: u64,
    pub inflight_submitted: u64,
    pub inflight_completed: u64,
    /// Mbufs a dequeue burst could not allocate.
    #[cfg(feature = "abi-24-11")]
    pub mbuf_alloc_failed: u64,
}

impl VringStats {
    /// Counts one packet of `len` bytes whose first bytes are `head`.
    #[inline]
    pub fn count(&mut self, len: u32, head: &[u8]) {
        self.packets += 1;
        self.bytes += u64::from(len);
        let bin = match len {
            0..=63 => 0,
            64 => 1,
            65..=127 => 2,
            128..=255 => 3,
            256..=511 => 4,
            512..=1023 => 5,
            1024..=1518 => 6,
            _ => 7,
        };
        self.size_bins[bin] += 1;
        if let Some(dst) = head.get(..6) {
            if dst[0] & 1 != 0 {
                if dst == [0xff; 6] {
                    self.broadcast += 1;
                } else {
                    self.multicast += 1;
                }
            }
        }
    }

    pub fn values(&self) -> [u64; COUNT] {
        let b = &self.size_bins;
        [
            self.packets,
            self.bytes,
            self.multicast,
            self.broadcast,
            b[0],
            b[1],
            b[2],
            b[3],
            b[4],
            b[5],
            b[6],
            b[7],
            self.guest_notifications,
            #[cfg(feature = "abi-24-11")]
            self.guest_notifications_offloaded,
            #[cfg(feature = "abi-24-11")]
            self.guest_notifications_error,
            #[cfg(feature = "abi-24-11")]
            self.guest_notifications_suppressed,
            self.iotlb_hits,
            self.iotlb_misses,
            self.inflight_submitted,
            self.inflight_completed,
            #[cfg(feature = "abi-24-11")]
            self.mbuf_alloc_failed,
        ]
    }
}
