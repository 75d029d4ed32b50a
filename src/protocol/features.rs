//! Virtio and vhost-user feature bits used by the back-end.

pub const VIRTIO_NET_F_CSUM: u32 = 0;
pub const VIRTIO_F_NOTIFY_ON_EMPTY: u32 = 24;
pub const VIRTIO_NET_F_GUEST_CSUM: u32 = 1;
pub const VIRTIO_NET_F_MTU: u32 = 3;
pub const VIRTIO_NET_F_GSO: u32 = 6;
pub const VIRTIO_NET_F_GUEST_TSO4: u32 = 7;
pub const VIRTIO_NET_F_GUEST_TSO6: u32 = 8;
pub const VIRTIO_NET_F_GUEST_ECN: u32 = 9;
pub const VIRTIO_NET_F_GUEST_UFO: u32 = 10;
pub const VIRTIO_NET_F_HOST_TSO4: u32 = 11;
pub const VIRTIO_NET_F_HOST_TSO6: u32 = 12;
pub const VIRTIO_NET_F_HOST_ECN: u32 = 13;
pub const VIRTIO_NET_F_HOST_UFO: u32 = 14;
pub const VIRTIO_NET_F_MRG_RXBUF: u32 = 15;
pub const VIRTIO_NET_F_CTRL_VQ: u32 = 17;
pub const VIRTIO_NET_F_CTRL_RX: u32 = 18;
pub const VIRTIO_NET_F_GUEST_ANNOUNCE: u32 = 21;
pub const VIRTIO_NET_F_MQ: u32 = 22;
pub const VHOST_F_LOG_ALL: u32 = 26;
pub const VIRTIO_F_ANY_LAYOUT: u32 = 27;
pub const VIRTIO_RING_F_INDIRECT_DESC: u32 = 28;
pub const VIRTIO_RING_F_EVENT_IDX: u32 = 29;
pub const VHOST_USER_F_PROTOCOL_FEATURES: u32 = 30;
pub const VIRTIO_F_VERSION_1: u32 = 32;
pub const VIRTIO_F_IOMMU_PLATFORM: u32 = 33;
pub const VIRTIO_F_RING_PACKED: u32 = 34;
pub const VIRTIO_F_IN_ORDER: u32 = 35;

pub const fn bit(b: u32) -> u64 {
    1u64 << b
}

/// DPDK 22.11's `VIRTIO_NET_SUPPORTED_FEATURES` (vhost.h): what the built-in
/// virtio-net back-end offers before the application narrows it.
pub const VIRTIO_NET_SUPPORTED: u64 = bit(VIRTIO_NET_F_MRG_RXBUF)
    | bit(VIRTIO_F_ANY_LAYOUT)
    | bit(VIRTIO_NET_F_CTRL_VQ)
    | bit(VIRTIO_NET_F_CTRL_RX)
    | bit(VIRTIO_NET_F_GUEST_ANNOUNCE)
    | bit(VIRTIO_NET_F_MQ)
    | bit(VIRTIO_F_VERSION_1)
    | bit(VHOST_F_LOG_ALL)
    | bit(VHOST_USER_F_PROTOCOL_FEATURES)
    | bit(VIRTIO_NET_F_GSO)
    | bit(VIRTIO_NET_F_GUEST_TSO4)
    | bit(VIRTIO_NET_F_GUEST_TSO6)
    | bit(VIRTIO_NET_F_GUEST_UFO)
    | bit(VIRTIO_NET_F_GUEST_ECN)
    | bit(VIRTIO_NET_F_HOST_TSO4)
    | bit(VIRTIO_NET_F_HOST_TSO6)
    | bit(VIRTIO_NET_F_HOST_UFO)
    | bit(VIRTIO_NET_F_HOST_ECN)
    | bit(VIRTIO_NET_F_CSUM)
    | bit(VIRTIO_NET_F_GUEST_CSUM)
    | bit(VIRTIO_RING_F_INDIRECT_DESC)
    | bit(VIRTIO_RING_F_EVENT_IDX)
    | bit(VIRTIO_NET_F_MTU)
    | bit(VIRTIO_F_IN_ORDER)
    | bit(VIRTIO_F_IOMMU_PLATFORM)
    | bit(VIRTIO_F_RING_PACKED);

/// vhost-user protocol feature bits.
pub mod protocol {
    pub const MQ: u32 = 0;
    pub const LOG_SHMFD: u32 = 1;
    pub const RARP: u32 = 2;
    pub const REPLY_ACK: u32 = 3;
    pub const NET_MTU: u32 = 4;
    pub const SLAVE_REQ: u32 = 5;
    pub const CONFIG: u32 = 9;
    pub const CRYPTO_SESSION: u32 = 7;
    pub const PAGEFAULT: u32 = 8;
    pub const SLAVE_SEND_FD: u32 = 10;
    pub const HOST_NOTIFIER: u32 = 11;
    pub const INFLIGHT_SHMFD: u32 = 12;
    pub const STATUS: u32 = 16;

    use super::bit;
    /// DPDK 22.11's `VHOST_USER_PROTOCOL_FEATURES`: what is offered by default.
    pub const DEFAULT: u64 = bit(MQ)
        | bit(LOG_SHMFD)
        | bit(RARP)
        | bit(REPLY_ACK)
        | bit(NET_MTU)
        | bit(SLAVE_REQ)
        | bit(CRYPTO_SESSION)
        | bit(SLAVE_SEND_FD)
        | bit(HOST_NOTIFIER)
        | bit(PAGEFAULT)
        | bit(STATUS);
}

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
