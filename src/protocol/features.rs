//! Virtio and vhost-user feature bits: `Features` and `ProtocolFeatures`,
//! sets of named bits (`features.has(Feature::RING_PACKED)`).

use std::marker::PhantomData;

/// One feature bit of kind `K` (`Feature`, `ProtocolFeature`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Bit<K>(u32, PhantomData<K>);

/// A set of feature bits of kind `K` (`Features`, `ProtocolFeatures`).
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Set<K>(u64, PhantomData<K>);

/// Virtio features (SET_FEATURES).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Virtio {}

/// vhost-user protocol features (SET_PROTOCOL_FEATURES).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum VhostUser {}

pub type Feature = Bit<Virtio>;
pub type Features = Set<Virtio>;
pub type ProtocolFeature = Bit<VhostUser>;
pub type ProtocolFeatures = Set<VhostUser>;

impl<K> Bit<K> {
    const fn new(number: u32) -> Self {
        Bit(number, PhantomData)
    }

    /// The bit's number.
    pub const fn number(self) -> u32 {
        self.0
    }
}

impl<K> Set<K> {
    /// The set a front-end or the application gave as bits.
    pub const fn from_bits(bits: u64) -> Self {
        Set(bits, PhantomData)
    }

    pub const fn bits(self) -> u64 {
        self.0
    }

    pub const fn of(list: &[Bit<K>]) -> Self {
        let (mut bits, mut i) = (0, 0);
        while i < list.len() {
            bits |= 1 << list[i].0;
            i += 1;
        }
        Set::from_bits(bits)
    }

    pub const fn has(self, f: Bit<K>) -> bool {
        self.0 & (1 << f.0) != 0
    }

    /// Whether every bit of `other` is in the set.
    pub const fn contains(self, other: Self) -> bool {
        self.0 & other.0 == other.0
    }

    /// Whether the sets share a bit.
    pub const fn intersects(self, other: Self) -> bool {
        self.0 & other.0 != 0
    }

    pub const fn union(self, other: Self) -> Self {
        Set::from_bits(self.0 | other.0)
    }

    pub const fn intersection(self, other: Self) -> Self {
        Set::from_bits(self.0 & other.0)
    }

    pub const fn without(self, other: Self) -> Self {
        Set::from_bits(self.0 & !other.0)
    }
}

impl<K> Default for Set<K> {
    fn default() -> Self {
        Set::from_bits(0)
    }
}

impl<K> std::fmt::Debug for Set<K> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:#x}", self.0)
    }
}

/// The virtio spec's and vhost's names, without their VIRTIO_/VHOST_
/// prefixes.
impl Feature {
    pub const NET_CSUM: Feature = Bit::new(0);
    pub const NET_GUEST_CSUM: Feature = Bit::new(1);
    pub const NET_MTU: Feature = Bit::new(3);
    pub const NET_GSO: Feature = Bit::new(6);
    pub const NET_GUEST_TSO4: Feature = Bit::new(7);
    pub const NET_GUEST_TSO6: Feature = Bit::new(8);
    pub const NET_GUEST_ECN: Feature = Bit::new(9);
    pub const NET_GUEST_UFO: Feature = Bit::new(10);
    pub const NET_HOST_TSO4: Feature = Bit::new(11);
    pub const NET_HOST_TSO6: Feature = Bit::new(12);
    pub const NET_HOST_ECN: Feature = Bit::new(13);
    pub const NET_HOST_UFO: Feature = Bit::new(14);
    pub const NET_MRG_RXBUF: Feature = Bit::new(15);
    pub const NET_CTRL_VQ: Feature = Bit::new(17);
    pub const NET_CTRL_RX: Feature = Bit::new(18);
    pub const NET_GUEST_ANNOUNCE: Feature = Bit::new(21);
    pub const NET_MQ: Feature = Bit::new(22);
    pub const NOTIFY_ON_EMPTY: Feature = Bit::new(24);
    /// VHOST_F_LOG_ALL: dirty logging (live migration).
    pub const LOG_ALL: Feature = Bit::new(26);
    pub const ANY_LAYOUT: Feature = Bit::new(27);
    pub const RING_INDIRECT_DESC: Feature = Bit::new(28);
    pub const RING_EVENT_IDX: Feature = Bit::new(29);
    /// VHOST_USER_F_PROTOCOL_FEATURES.
    pub const PROTOCOL_FEATURES: Feature = Bit::new(30);
    pub const VERSION_1: Feature = Bit::new(32);
    pub const IOMMU_PLATFORM: Feature = Bit::new(33);
    pub const RING_PACKED: Feature = Bit::new(34);
    pub const IN_ORDER: Feature = Bit::new(35);
}

/// VHOST_USER_PROTOCOL_F_*.
impl ProtocolFeature {
    pub const MQ: ProtocolFeature = Bit::new(0);
    pub const LOG_SHMFD: ProtocolFeature = Bit::new(1);
    pub const RARP: ProtocolFeature = Bit::new(2);
    pub const REPLY_ACK: ProtocolFeature = Bit::new(3);
    pub const NET_MTU: ProtocolFeature = Bit::new(4);
    pub const SLAVE_REQ: ProtocolFeature = Bit::new(5);
    pub const CRYPTO_SESSION: ProtocolFeature = Bit::new(7);
    pub const PAGEFAULT: ProtocolFeature = Bit::new(8);
    pub const CONFIG: ProtocolFeature = Bit::new(9);
    pub const SLAVE_SEND_FD: ProtocolFeature = Bit::new(10);
    pub const HOST_NOTIFIER: ProtocolFeature = Bit::new(11);
    pub const INFLIGHT_SHMFD: ProtocolFeature = Bit::new(12);
    pub const STATUS: ProtocolFeature = Bit::new(16);
}

impl Features {
    /// DPDK 22.11's `VIRTIO_NET_SUPPORTED_FEATURES` (vhost.h): what the
    /// built-in virtio-net back-end offers before the application narrows it.
    pub const VIRTIO_NET_SUPPORTED: Features = Features::of(&[
        Feature::NET_MRG_RXBUF,
        Feature::ANY_LAYOUT,
        Feature::NET_CTRL_VQ,
        Feature::NET_CTRL_RX,
        Feature::NET_GUEST_ANNOUNCE,
        Feature::NET_MQ,
        Feature::VERSION_1,
        Feature::LOG_ALL,
        Feature::PROTOCOL_FEATURES,
        Feature::NET_GSO,
        Feature::NET_GUEST_TSO4,
        Feature::NET_GUEST_TSO6,
        Feature::NET_GUEST_UFO,
        Feature::NET_GUEST_ECN,
        Feature::NET_HOST_TSO4,
        Feature::NET_HOST_TSO6,
        Feature::NET_HOST_UFO,
        Feature::NET_HOST_ECN,
        Feature::NET_CSUM,
        Feature::NET_GUEST_CSUM,
        Feature::RING_INDIRECT_DESC,
        Feature::RING_EVENT_IDX,
        Feature::NET_MTU,
        Feature::IN_ORDER,
        Feature::IOMMU_PLATFORM,
        Feature::RING_PACKED,
    ]);
}

impl ProtocolFeatures {
    /// DPDK 22.11's `VHOST_USER_PROTOCOL_FEATURES`: what is offered by default.
    pub const DEFAULT: ProtocolFeatures = ProtocolFeatures::of(&[
        ProtocolFeature::MQ,
        ProtocolFeature::LOG_SHMFD,
        ProtocolFeature::RARP,
        ProtocolFeature::REPLY_ACK,
        ProtocolFeature::NET_MTU,
        ProtocolFeature::SLAVE_REQ,
        ProtocolFeature::CRYPTO_SESSION,
        ProtocolFeature::SLAVE_SEND_FD,
        ProtocolFeature::HOST_NOTIFIER,
        ProtocolFeature::PAGEFAULT,
        ProtocolFeature::STATUS,
    ]);
}

// The ring code (`virtqueue`, `device::vring`) still tests raw bits: the
// numbers it uses, until it takes `Features`.
pub const VHOST_F_LOG_ALL: u32 = Feature::LOG_ALL.number();
pub const VIRTIO_RING_F_EVENT_IDX: u32 = Feature::RING_EVENT_IDX.number();
pub const VHOST_USER_F_PROTOCOL_FEATURES: u32 = Feature::PROTOCOL_FEATURES.number();
pub const VIRTIO_F_IOMMU_PLATFORM: u32 = Feature::IOMMU_PLATFORM.number();
pub const VIRTIO_F_RING_PACKED: u32 = Feature::RING_PACKED.number();

/// Flags of `rte_vhost_driver_register`.
pub mod flags {
    pub const CLIENT: u64 = 1 << 0;
    pub const NO_RECONNECT: u64 = 1 << 1;
    pub const IOMMU_SUPPORT: u64 = 1 << 3;
    pub const POSTCOPY_SUPPORT: u64 = 1 << 4;
    pub const EXTBUF_SUPPORT: u64 = 1 << 5;
    pub const LINEARBUF_SUPPORT: u64 = 1 << 6;
    pub const ASYNC_COPY: u64 = 1 << 7;
    pub const NET_COMPLIANT_OL_FLAGS: u64 = 1 << 8;
    pub const NET_STATS_ENABLE: u64 = 1 << 9;
    /// DPDK 24.11: a client socket makes its first connection from the
    /// reconnect thread instead of in `rte_vhost_driver_start`.
    #[cfg(feature = "abi-24-11")]
    pub const ASYNC_CONNECT: u64 = 1 << 10;
}
