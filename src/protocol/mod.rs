//! The vhost-user wire format: header, request ids, payload layouts, and the
//! exact size and fd-count rules for every request. Pure code: no I/O, no
//! DPDK. Everything that comes off the socket is validated here before any
//! handler sees it.

pub mod features;
mod message;
mod payload;

pub use message::{ConnectionMessage, Message, Routed, VringFd};
pub use payload::*;

/// Size of the message header (`request`, `flags`, `size`).
pub const HDR_SIZE: usize = 12;
/// Size of DPDK's `VhostUserMsg` payload union. Larger payloads are rejected.
pub const MAX_PAYLOAD: usize = crate::abi::MSG_PAYLOAD_SIZE;
/// At most this many fds travel with one message (`VHOST_MEMORY_MAX_NREGIONS`).
pub const MAX_FDS: usize = crate::abi::MSG_MAX_FDS;
/// At most this many memory regions in SET_MEM_TABLE.
pub const MAX_REGIONS: usize = 8;

pub const VERSION: u32 = 0x1;
pub const VERSION_MASK: u32 = 0x3;
pub const FLAG_REPLY: u32 = 1 << 2;
pub const FLAG_NEED_REPLY: u32 = 1 << 3;
/// Bits the protocol leaves reserved in `flags`.
pub const FLAGS_RESERVED: u32 = !0xf;

/// In SET_VRING_KICK/CALL/ERR: the queue index and the "no fd" flag.
pub const VRING_IDX_MASK: u64 = 0xff;
pub const VRING_NOFD_MASK: u64 = 1 << 8;

/// The 12-byte message header, native endian.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Header {
    pub request: u32,
    pub flags: u32,
    pub size: u32,
}

impl Header {
    pub fn parse(bytes: &[u8; HDR_SIZE]) -> Header {
        let word = |i: usize| u32::from_ne_bytes([bytes[i], bytes[i + 1], bytes[i + 2], bytes[i + 3]]);
        Header { request: word(0), flags: word(4), size: word(8) }
    }

    pub fn to_bytes(self) -> [u8; HDR_SIZE] {
        let mut out = [0u8; HDR_SIZE];
        out[0..4].copy_from_slice(&self.request.to_ne_bytes());
        out[4..8].copy_from_slice(&self.flags.to_ne_bytes());
        out[8..12].copy_from_slice(&self.size.to_ne_bytes());
        out
    }

    pub fn need_reply(&self) -> bool {
        self.flags & FLAG_NEED_REPLY != 0
    }

    /// Checks what can be checked before the payload is read: protocol
    /// version, reserved flag bits, and the payload size bound.
    pub fn validate(&self) -> Result<(), ProtocolError> {
        if self.flags & VERSION_MASK != VERSION {
            return Err(ProtocolError::BadVersion(self.flags & VERSION_MASK));
        }
        if self.flags & FLAGS_RESERVED != 0 {
            return Err(ProtocolError::ReservedFlags(self.flags));
        }
        if self.size as usize > MAX_PAYLOAD {
            return Err(ProtocolError::PayloadTooLarge(self.size));
        }
        Ok(())
    }
}

/// Why a message was rejected.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ProtocolError {
    BadVersion(u32),
    ReservedFlags(u32),
    PayloadTooLarge(u32),
    /// Payload size differs from what the request requires.
    BadSize {
        request: &'static str,
        expected: usize,
        got: usize,
    },
    /// Number of fds differs from what the request requires.
    BadFdCount {
        request: &'static str,
        expected: &'static str,
        got: usize,
    },
    /// A field value is out of its valid range.
    BadField(&'static str),
}

impl std::fmt::Display for ProtocolError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ProtocolError::BadVersion(v) => write!(f, "unsupported protocol version {v}"),
            ProtocolError::ReservedFlags(fl) => write!(f, "reserved flag bits set (flags {fl:#x})"),
            ProtocolError::PayloadTooLarge(s) => {
                write!(f, "payload size {s} exceeds the maximum {MAX_PAYLOAD}")
            }
            ProtocolError::BadSize { request, expected, got } => {
                write!(f, "invalid payload size for {request}: {got} (expected {expected})")
            }
            ProtocolError::BadFdCount { request, expected, got } => {
                write!(f, "invalid number of fds for {request}: {got} (expected {expected})")
            }
            ProtocolError::BadField(what) => write!(f, "invalid {what}"),
        }
    }
}

impl std::error::Error for ProtocolError {}

/// What a request's payload must be.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PayloadRule {
    /// Nothing the back-end reads: empty, or an ignored u64 (some front-ends
    /// send a zero u64; DPDK only bounds the size).
    Ignored,
    /// Exactly this many bytes.
    Exact(usize),
    /// Checked by its parser (memory table, config access).
    Variable,
}

/// How many fds a request may carry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FdRule {
    None,
    One,
    /// SET_VRING_KICK/CALL/ERR: one fd unless the NOFD bit is set.
    VringFd,
    /// SET_MEM_TABLE: one fd per region.
    PerRegion,
}

/// Where a request names a ring (DPDK allocates a ring on first mention).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RingField {
    None,
    /// `index` of a vring state or vring address (u32 at offset 0).
    Index,
    /// Bits 0-7 of the u64 of SET_VRING_KICK/CALL/ERR.
    FdIndex,
}

/// One row of the request table.
#[derive(Clone, Copy, Debug)]
pub struct Rule {
    pub payload: PayloadRule,
    pub fds: FdRule,
    /// Every ring is locked while the request runs, so that no burst is in
    /// progress (DPDK's `lock_all_qps`): it changes what the datapath reads.
    pub locks_rings: bool,
    /// A running device stops first (the application's `destroy_device`,
    /// with no lock held): the request takes a ring, or every ring, away.
    pub stops_device: bool,
    pub ring: RingField,
}

macro_rules! requests {
    ($($name:ident = $id:literal, $text:literal, $payload:expr, $fds:ident, $locks:literal, $stops:literal, $ring:ident;)*) => {
        /// Front-end → back-end request ids handled by DPDK 22.11 (names as
        /// DPDK logs them; ids from QEMU's vhost-user.rst).
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        #[repr(u32)]
        pub enum Request { $($name = $id,)* }

        impl Request {
            pub fn from_u32(id: u32) -> Option<Request> {
                match id { $($id => Some(Request::$name),)* _ => None }
            }
            /// DPDK's description string, used in `read message ...` lines.
            pub fn name(self) -> &'static str {
                match self { $(Request::$name => $text,)* }
            }
            /// The request's row of the table.
            pub fn rule(self) -> Rule {
                use PayloadRule::*;
                match self {
                    $(Request::$name => Rule {
                        payload: $payload,
                        fds: FdRule::$fds,
                        locks_rings: $locks,
                        stops_device: $stops,
                        ring: RingField::$ring,
                    },)*
                }
            }
        }
    };
}

// Sizes: 8 = u64, vring state; 40 = vring address; 16 = log area; 32 =
// IOTLB message; 24 = inflight area.
requests! {
    // request = id, DPDK's name, payload, fds, locks rings, stops the device, names a ring
    GetFeatures = 1, "VHOST_USER_GET_FEATURES", Ignored, None, false, false, None;
    SetFeatures = 2, "VHOST_USER_SET_FEATURES", Exact(8), None, true, false, None;
    SetOwner = 3, "VHOST_USER_SET_OWNER", Ignored, None, true, false, None;
    ResetOwner = 4, "VHOST_USER_RESET_OWNER", Ignored, None, false, true, None;
    SetMemTable = 5, "VHOST_USER_SET_MEM_TABLE", Variable, PerRegion, true, false, None;
    SetLogBase = 6, "VHOST_USER_SET_LOG_BASE", Exact(LogArea::SIZE), One, true, false, None;
    SetLogFd = 7, "VHOST_USER_SET_LOG_FD", Ignored, One, true, false, None;
    SetVringNum = 8, "VHOST_USER_SET_VRING_NUM", Exact(VringState::SIZE), None, true, false, Index;
    SetVringAddr = 9, "VHOST_USER_SET_VRING_ADDR", Exact(VringAddr::SIZE), None, true, false, Index;
    SetVringBase = 10, "VHOST_USER_SET_VRING_BASE", Exact(VringState::SIZE), None, true, false, Index;
    GetVringBase = 11, "VHOST_USER_GET_VRING_BASE", Exact(VringState::SIZE), None, false, true, Index;
    SetVringKick = 12, "VHOST_USER_SET_VRING_KICK", Exact(8), VringFd, true, false, FdIndex;
    SetVringCall = 13, "VHOST_USER_SET_VRING_CALL", Exact(8), VringFd, true, false, FdIndex;
    SetVringErr = 14, "VHOST_USER_SET_VRING_ERR", Exact(8), VringFd, true, false, FdIndex;
    GetProtocolFeatures = 15, "VHOST_USER_GET_PROTOCOL_FEATURES", Ignored, None, false, false, None;
    SetProtocolFeatures = 16, "VHOST_USER_SET_PROTOCOL_FEATURES", Exact(8), None, true, false, None;
    GetQueueNum = 17, "VHOST_USER_GET_QUEUE_NUM", Ignored, None, false, false, None;
    SetVringEnable = 18, "VHOST_USER_SET_VRING_ENABLE", Exact(VringState::SIZE), None, true, false, Index;
    SendRarp = 19, "VHOST_USER_SEND_RARP", Exact(8), None, true, false, None;
    NetSetMtu = 20, "VHOST_USER_NET_SET_MTU", Exact(8), None, true, false, None;
    SetSlaveReqFd = 21, "VHOST_USER_SET_SLAVE_REQ_FD", Ignored, One, true, false, None;
    IotlbMsg = 22, "VHOST_USER_IOTLB_MSG", Exact(Iotlb::SIZE), None, false, false, None;
    GetConfig = 24, "VHOST_USER_GET_CONFIG", Variable, None, false, false, None;
    SetConfig = 25, "VHOST_USER_SET_CONFIG", Variable, None, false, false, None;
    PostcopyAdvise = 28, "VHOST_USER_POSTCOPY_ADVISE", Ignored, None, false, false, None;
    PostcopyListen = 29, "VHOST_USER_POSTCOPY_LISTEN", Ignored, None, false, false, None;
    PostcopyEnd = 30, "VHOST_USER_POSTCOPY_END", Ignored, None, false, false, None;
    GetInflightFd = 31, "VHOST_USER_GET_INFLIGHT_FD", Exact(InflightArea::SIZE), None, false, false, None;
    SetInflightFd = 32, "VHOST_USER_SET_INFLIGHT_FD", Exact(InflightArea::SIZE), One, false, false, None;
    SetStatus = 39, "VHOST_USER_SET_STATUS", Exact(8), None, false, false, None;
    GetStatus = 40, "VHOST_USER_GET_STATUS", Ignored, None, false, false, None;
}

/// Back-end → front-end requests (on the SET_SLAVE_REQ_FD channel).
pub mod backend_request {
    pub const IOTLB_MSG: u32 = 1;
    pub const CONFIG_CHANGE_MSG: u32 = 2;
    pub const VRING_HOST_NOTIFIER_MSG: u32 = 3;
}

impl Request {
    /// The ring the raw payload names, if the request names one and the
    /// payload is long enough to say (checked in full by `Routed::decode`).
    pub fn ring_index(self, payload: &[u8]) -> Option<u32> {
        match self.rule().ring {
            RingField::Index if payload.len() >= 4 => Some(read_u32(payload, 0)),
            RingField::FdIndex if payload.len() == 8 => Some((read_u64(payload, 0) & VRING_IDX_MASK) as u32),
            _ => None,
        }
    }
}

/// Checks a message's payload size and fd count against the request's row.
pub fn validate(request: Request, payload: &[u8], nfds: usize) -> Result<(), ProtocolError> {
    let name = request.name();
    let rule = request.rule();
    match rule.payload {
        PayloadRule::Ignored if payload.is_empty() || payload.len() == 8 => {}
        PayloadRule::Ignored => {
            return Err(ProtocolError::BadSize { request: name, expected: 0, got: payload.len() })
        }
        PayloadRule::Exact(n) if payload.len() != n => {
            return Err(ProtocolError::BadSize { request: name, expected: n, got: payload.len() })
        }
        PayloadRule::Exact(_) | PayloadRule::Variable => {}
    }
    let (ok, expected) = match rule.fds {
        FdRule::None => (nfds == 0, "0"),
        FdRule::One => (nfds == 1, "1"),
        FdRule::VringFd => {
            let nofd = payload.len() == 8 && read_u64(payload, 0) & VRING_NOFD_MASK != 0;
            if nofd {
                (nfds == 0, "0 (NOFD set)")
            } else {
                (nfds == 1, "1")
            }
        }
        FdRule::PerRegion => {
            let n = if payload.len() >= 4 { read_u32(payload, 0) as usize } else { 0 };
            (nfds == n && n <= MAX_FDS, "one per region")
        }
    };
    if !ok {
        return Err(ProtocolError::BadFdCount { request: name, expected, got: nfds });
    }
    Ok(())
}

pub(crate) fn read_u32(bytes: &[u8], at: usize) -> u32 {
    let mut b = [0u8; 4];
    b.copy_from_slice(&bytes[at..at + 4]);
    u32::from_ne_bytes(b)
}

pub(crate) fn read_u64(bytes: &[u8], at: usize) -> u64 {
    let mut b = [0u8; 8];
    b.copy_from_slice(&bytes[at..at + 8]);
    u64::from_ne_bytes(b)
}

#[cfg(test)]
mod tests;
