//! The vhost-user wire format: header, request ids, payload layouts, and the
//! exact size and fd-count rules for every request. Pure code: no I/O, no
//! DPDK. Everything that comes off the socket is validated here before any
//! handler sees it.

pub mod features;
mod payload;

pub use payload::*;

/// Size of the message header (`request`, `flags`, `size`).
pub const HDR_SIZE: usize = 12;
/// Size of DPDK's `VhostUserMsg` payload union (its largest member is the
/// crypto session parameter block). Larger payloads are rejected.
pub const MAX_PAYLOAD: usize = 632;
/// At most this many fds travel with one message (`VHOST_MEMORY_MAX_NREGIONS`).
pub const MAX_FDS: usize = 8;
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

macro_rules! requests {
    ($($name:ident = $id:expr, $text:expr;)*) => {
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
        }
    };
}

requests! {
    GetFeatures = 1, "VHOST_USER_GET_FEATURES";
    SetFeatures = 2, "VHOST_USER_SET_FEATURES";
    SetOwner = 3, "VHOST_USER_SET_OWNER";
    ResetOwner = 4, "VHOST_USER_RESET_OWNER";
    SetMemTable = 5, "VHOST_USER_SET_MEM_TABLE";
    SetLogBase = 6, "VHOST_USER_SET_LOG_BASE";
    SetLogFd = 7, "VHOST_USER_SET_LOG_FD";
    SetVringNum = 8, "VHOST_USER_SET_VRING_NUM";
    SetVringAddr = 9, "VHOST_USER_SET_VRING_ADDR";
    SetVringBase = 10, "VHOST_USER_SET_VRING_BASE";
    GetVringBase = 11, "VHOST_USER_GET_VRING_BASE";
    SetVringKick = 12, "VHOST_USER_SET_VRING_KICK";
    SetVringCall = 13, "VHOST_USER_SET_VRING_CALL";
    SetVringErr = 14, "VHOST_USER_SET_VRING_ERR";
    GetProtocolFeatures = 15, "VHOST_USER_GET_PROTOCOL_FEATURES";
    SetProtocolFeatures = 16, "VHOST_USER_SET_PROTOCOL_FEATURES";
    GetQueueNum = 17, "VHOST_USER_GET_QUEUE_NUM";
    SetVringEnable = 18, "VHOST_USER_SET_VRING_ENABLE";
    SendRarp = 19, "VHOST_USER_SEND_RARP";
    NetSetMtu = 20, "VHOST_USER_NET_SET_MTU";
    SetSlaveReqFd = 21, "VHOST_USER_SET_SLAVE_REQ_FD";
    IotlbMsg = 22, "VHOST_USER_IOTLB_MSG";
    GetConfig = 24, "VHOST_USER_GET_CONFIG";
    SetConfig = 25, "VHOST_USER_SET_CONFIG";
    PostcopyAdvise = 28, "VHOST_USER_POSTCOPY_ADVISE";
    PostcopyListen = 29, "VHOST_USER_POSTCOPY_LISTEN";
    PostcopyEnd = 30, "VHOST_USER_POSTCOPY_END";
    GetInflightFd = 31, "VHOST_USER_GET_INFLIGHT_FD";
    SetInflightFd = 32, "VHOST_USER_SET_INFLIGHT_FD";
    SetStatus = 39, "VHOST_USER_SET_STATUS";
    GetStatus = 40, "VHOST_USER_GET_STATUS";
}

/// Back-end → front-end requests (on the SET_SLAVE_REQ_FD channel).
pub mod backend_request {
    pub const IOTLB_MSG: u32 = 1;
    pub const CONFIG_CHANGE_MSG: u32 = 2;
    pub const VRING_HOST_NOTIFIER_MSG: u32 = 3;
}

/// How many fds a request may carry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FdRule {
    None,
    Exactly(usize),
    /// SET_VRING_KICK/CALL/ERR: one fd unless the NOFD bit is set.
    VringFd,
    /// SET_MEM_TABLE: one fd per region.
    PerRegion,
}

impl Request {
    /// Fds the request carries (QEMU's spec; DPDK's `accepts_fd` column).
    pub fn fd_rule(self) -> FdRule {
        match self {
            Request::SetMemTable => FdRule::PerRegion,
            Request::SetLogBase | Request::SetLogFd | Request::SetSlaveReqFd | Request::SetInflightFd => {
                FdRule::Exactly(1)
            }
            Request::SetVringKick | Request::SetVringCall | Request::SetVringErr => FdRule::VringFd,
            _ => FdRule::None,
        }
    }

    /// The exact payload size the request carries, where it is fixed.
    /// `None` means variable (SET_MEM_TABLE, GET/SET_CONFIG) and is checked by
    /// the payload parser.
    pub fn payload_size(self) -> Option<usize> {
        use Request::*;
        match self {
            GetFeatures | SetOwner | ResetOwner | GetProtocolFeatures | GetQueueNum | SetSlaveReqFd
            | PostcopyAdvise | PostcopyListen | PostcopyEnd | GetStatus | SetLogFd => Some(0),
            SetFeatures | SetProtocolFeatures | SetVringKick | SetVringCall | SetVringErr | SendRarp
            | NetSetMtu | SetStatus => Some(8),
            SetVringNum | SetVringBase | GetVringBase | SetVringEnable => Some(VringState::SIZE),
            SetVringAddr => Some(VringAddr::SIZE),
            SetLogBase => Some(LogArea::SIZE),
            IotlbMsg => Some(Iotlb::SIZE),
            GetInflightFd | SetInflightFd => Some(InflightArea::SIZE),
            SetMemTable | GetConfig | SetConfig => None,
        }
    }
}

/// Name for logs: DPDK's description, or the raw id.
pub fn request_name(id: u32) -> String {
    match Request::from_u32(id) {
        Some(r) => r.name().to_owned(),
        None => format!("request {id}"),
    }
}

/// Checks a message's payload size and fd count against the request's rules.
/// Requests without a payload also accept an ignored 8-byte one, as DPDK
/// does (it only bounds the size), since some front-ends send a zero u64.
pub fn validate(request: Request, payload: &[u8], nfds: usize) -> Result<(), ProtocolError> {
    let name = request.name();
    if let Some(expected) = request.payload_size() {
        let tolerated_u64 = expected == 0 && payload.len() == 8 && ignores_payload(request);
        if payload.len() != expected && !tolerated_u64 {
            return Err(ProtocolError::BadSize { request: name, expected, got: payload.len() });
        }
    }
    let (ok, expected) = match request.fd_rule() {
        FdRule::None => (nfds == 0, "0"),
        FdRule::Exactly(1) => (nfds == 1, "1"),
        FdRule::Exactly(_) => unreachable!("only single-fd requests exist"),
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

/// Requests whose payload carries nothing the back-end reads.
fn ignores_payload(request: Request) -> bool {
    matches!(
        request,
        Request::SetOwner
            | Request::ResetOwner
            | Request::GetFeatures
            | Request::GetProtocolFeatures
            | Request::GetQueueNum
            | Request::GetStatus
            | Request::PostcopyAdvise
            | Request::PostcopyListen
            | Request::PostcopyEnd
            | Request::SetSlaveReqFd
            | Request::SetLogFd
    )
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

/// DPDK's `struct vhu_msg_context` (packed `VhostUserMsg` followed by the
/// message fds): the layout extern message hooks receive and may modify.
#[repr(C, packed)]
#[derive(Clone, Copy)]
pub struct MsgContext {
    pub request: u32,
    pub flags: u32,
    pub size: u32,
    pub payload: [u8; MAX_PAYLOAD],
    pub fds: [i32; MAX_FDS],
    pub fd_num: i32,
}

const _: () = assert!(std::mem::size_of::<MsgContext>() == HDR_SIZE + MAX_PAYLOAD + 4 * MAX_FDS + 4);

impl MsgContext {
    /// Builds the context for `header`/`payload` with raw fd numbers.
    pub fn new(header: Header, payload: &[u8], fds: &[i32]) -> MsgContext {
        let mut ctx = MsgContext {
            request: header.request,
            flags: header.flags,
            size: header.size,
            payload: [0; MAX_PAYLOAD],
            fds: [-1; MAX_FDS],
            fd_num: fds.len().min(MAX_FDS) as i32,
        };
        let n = payload.len().min(MAX_PAYLOAD);
        ctx.payload[..n].copy_from_slice(&payload[..n]);
        let mut raw = [-1; MAX_FDS];
        for (slot, fd) in raw.iter_mut().zip(fds) {
            *slot = *fd;
        }
        ctx.fds = raw;
        ctx
    }

    /// The payload as the hook left it (its `size`, bounded).
    pub fn payload_bytes(&self) -> Vec<u8> {
        let size = (self.size as usize).min(MAX_PAYLOAD);
        let payload = self.payload;
        payload[..size].to_vec()
    }
}
