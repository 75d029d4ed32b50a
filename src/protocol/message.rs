//! A vhost-user request decoded once: its payload parsed into its type and
//! the fds it carried moved into it, and routed to the side that answers
//! it (the device, or the connection for what only the socket, its vDPA
//! driver or its back-end channel knows). What a handler receives cannot
//! be malformed: sizes, fd counts and field ranges were checked here.

use std::os::fd::OwnedFd;

use super::features::{Features, ProtocolFeatures};
use super::*;

/// SET_VRING_KICK/CALL/ERR: the ring and its eventfd (`None`: the NOFD
/// flag, polling mode).
#[derive(Debug)]
pub struct VringFd {
    pub index: u32,
    pub fd: Option<OwnedFd>,
}

/// A decoded front-end request, routed.
#[derive(Debug)]
pub enum Routed {
    Device(Message),
    Connection(ConnectionMessage),
}

/// A request the connection answers: what the socket offers, the vDPA
/// driver's config space, the back-end channel (a socket the connection
/// owns).
#[derive(Debug)]
pub enum ConnectionMessage {
    GetFeatures,
    GetProtocolFeatures,
    GetQueueNum,
    GetConfig(ConfigAccess),
    SetConfig(ConfigAccess),
    SetSlaveReqFd(OwnedFd),
}

/// A decoded request the device answers.
#[derive(Debug)]
pub enum Message {
    SetFeatures(Features),
    SetOwner,
    ResetOwner,
    SetMemTable(MemoryTable, Vec<OwnedFd>),
    SetLogBase(LogArea, OwnedFd),
    /// SET_LOG_FD (its fd is closed: DPDK does not use it either).
    SetLogFd,
    SetVringNum(VringState),
    SetVringAddr(VringAddr),
    SetVringBase(VringState),
    GetVringBase(VringState),
    SetVringKick(VringFd),
    SetVringCall(VringFd),
    SetVringErr(VringFd),
    SetProtocolFeatures(ProtocolFeatures),
    SetVringEnable(VringState),
    /// The MAC address to announce.
    SendRarp([u8; 6]),
    NetSetMtu(u64),
    IotlbMsg(Iotlb),
    PostcopyAdvise,
    PostcopyListen,
    PostcopyEnd,
    GetInflightFd(InflightArea),
    SetInflightFd(InflightArea, OwnedFd),
    SetStatus(u64),
    GetStatus,
}

impl Message {
    /// The request this message is.
    pub fn request(&self) -> Request {
        use Message as M;
        match self {
            M::SetFeatures(_) => Request::SetFeatures,
            M::SetOwner => Request::SetOwner,
            M::ResetOwner => Request::ResetOwner,
            M::SetMemTable(..) => Request::SetMemTable,
            M::SetLogBase(..) => Request::SetLogBase,
            M::SetLogFd => Request::SetLogFd,
            M::SetVringNum(_) => Request::SetVringNum,
            M::SetVringAddr(_) => Request::SetVringAddr,
            M::SetVringBase(_) => Request::SetVringBase,
            M::GetVringBase(_) => Request::GetVringBase,
            M::SetVringKick(_) => Request::SetVringKick,
            M::SetVringCall(_) => Request::SetVringCall,
            M::SetVringErr(_) => Request::SetVringErr,
            M::SetProtocolFeatures(_) => Request::SetProtocolFeatures,
            M::SetVringEnable(_) => Request::SetVringEnable,
            M::SendRarp(_) => Request::SendRarp,
            M::NetSetMtu(_) => Request::NetSetMtu,
            M::IotlbMsg(_) => Request::IotlbMsg,
            M::PostcopyAdvise => Request::PostcopyAdvise,
            M::PostcopyListen => Request::PostcopyListen,
            M::PostcopyEnd => Request::PostcopyEnd,
            M::GetInflightFd(_) => Request::GetInflightFd,
            M::SetInflightFd(..) => Request::SetInflightFd,
            M::SetStatus(_) => Request::SetStatus,
            M::GetStatus => Request::GetStatus,
        }
    }

    /// The ring the request names (the table's `ring` column, decoded).
    pub fn ring(&self) -> Option<u32> {
        match self {
            Message::SetVringNum(s)
            | Message::SetVringBase(s)
            | Message::GetVringBase(s)
            | Message::SetVringEnable(s) => Some(s.index),
            Message::SetVringAddr(a) => Some(a.index),
            Message::SetVringKick(f) | Message::SetVringCall(f) | Message::SetVringErr(f) => Some(f.index),
            _ => None,
        }
    }
}

impl Routed {
    /// Decodes `payload` and `fds` as `request`: the table's size and fd
    /// rules, then the payload's own parser.
    pub fn decode(request: Request, payload: &[u8], fds: Vec<OwnedFd>) -> Result<Routed, ProtocolError> {
        validate(request, payload, fds.len())?;
        let mut fds = fds.into_iter();
        let u64_ = || read_u64(payload, 0);
        let mut one_fd = || fds.next().ok_or(ProtocolError::BadField("missing fd"));
        use ConnectionMessage as C;
        use Request as R;
        let connection = |m| Ok(Routed::Connection(m));
        Ok(Routed::Device(match request {
            R::GetFeatures => return connection(C::GetFeatures),
            R::GetProtocolFeatures => return connection(C::GetProtocolFeatures),
            R::GetQueueNum => return connection(C::GetQueueNum),
            R::GetConfig => return connection(C::GetConfig(ConfigAccess::parse(payload)?)),
            R::SetConfig => return connection(C::SetConfig(ConfigAccess::parse(payload)?)),
            R::SetSlaveReqFd => return connection(C::SetSlaveReqFd(one_fd()?)),
            R::SetFeatures => Message::SetFeatures(Features::from_bits(u64_())),
            R::SetOwner => Message::SetOwner,
            R::ResetOwner => Message::ResetOwner,
            R::SetMemTable => Message::SetMemTable(MemoryTable::parse(payload)?, fds.collect()),
            R::SetLogBase => Message::SetLogBase(LogArea::parse(payload)?, one_fd()?),
            R::SetLogFd => {
                drop(one_fd()?);
                Message::SetLogFd
            }
            R::SetVringNum => Message::SetVringNum(VringState::parse(payload)?),
            R::SetVringAddr => Message::SetVringAddr(VringAddr::parse(payload)?),
            R::SetVringBase => Message::SetVringBase(VringState::parse(payload)?),
            R::GetVringBase => Message::GetVringBase(VringState::parse(payload)?),
            R::SetVringKick | R::SetVringCall | R::SetVringErr => {
                let v = u64_();
                let fd = if v & VRING_NOFD_MASK != 0 { None } else { Some(one_fd()?) };
                let ring = VringFd { index: (v & VRING_IDX_MASK) as u32, fd };
                match request {
                    R::SetVringKick => Message::SetVringKick(ring),
                    R::SetVringCall => Message::SetVringCall(ring),
                    _ => Message::SetVringErr(ring),
                }
            }
            R::SetProtocolFeatures => Message::SetProtocolFeatures(ProtocolFeatures::from_bits(u64_())),
            R::SetVringEnable => Message::SetVringEnable(VringState::parse(payload)?),
            R::SendRarp => {
                let b = u64_().to_ne_bytes();
                Message::SendRarp([b[0], b[1], b[2], b[3], b[4], b[5]])
            }
            R::NetSetMtu => Message::NetSetMtu(u64_()),
            R::IotlbMsg => Message::IotlbMsg(Iotlb::parse(payload)?),
            R::PostcopyAdvise => Message::PostcopyAdvise,
            R::PostcopyListen => Message::PostcopyListen,
            R::PostcopyEnd => Message::PostcopyEnd,
            R::GetInflightFd => Message::GetInflightFd(InflightArea::parse(payload)?),
            R::SetInflightFd => Message::SetInflightFd(InflightArea::parse(payload)?, one_fd()?),
            R::SetStatus => Message::SetStatus(u64_()),
            R::GetStatus => Message::GetStatus,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fd() -> OwnedFd {
        std::fs::File::open("/dev/null").unwrap().into()
    }

    #[test]
    fn decodes_into_typed_messages_with_their_fds() {
        let device = |r, payload: &[u8], fds| match Routed::decode(r, payload, fds).unwrap() {
            Routed::Device(m) => m,
            other => panic!("{other:?} routed to the connection"),
        };
        let kick = device(Request::SetVringKick, &3u64.to_ne_bytes(), vec![fd()]);
        assert!(matches!(kick, Message::SetVringKick(VringFd { index: 3, fd: Some(_) })));
        assert_eq!(kick.ring(), Some(3));
        let nofd = (5 | VRING_NOFD_MASK).to_ne_bytes();
        let call = device(Request::SetVringCall, &nofd, vec![]);
        assert!(matches!(call, Message::SetVringCall(VringFd { index: 5, fd: None })));
        let rarp = device(Request::SendRarp, &[1, 2, 3, 4, 5, 6, 7, 8], vec![]);
        assert!(matches!(rarp, Message::SendRarp([1, 2, 3, 4, 5, 6])));
        assert_eq!((rarp.request(), rarp.ring()), (Request::SendRarp, None));
        assert!(Routed::decode(Request::SetLogFd, &[], vec![]).is_err(), "fd missing");
        assert!(Routed::decode(Request::SetFeatures, &[0; 8], vec![fd()]).is_err(), "fd not expected");
        let slave = Routed::decode(Request::SetSlaveReqFd, &[], vec![fd()]).unwrap();
        assert!(matches!(slave, Routed::Connection(ConnectionMessage::SetSlaveReqFd(_))));
    }
}
