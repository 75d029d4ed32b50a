//! Reading and writing vhost-user messages on a unix stream socket, with fds
//! passed as SCM_RIGHTS ancillary data.

use std::io::{self, IoSlice, IoSliceMut};
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};

use nix::sys::socket::{recvmsg, sendmsg, ControlMessage, ControlMessageOwned, MsgFlags};

use crate::protocol::{Header, ProtocolError, HDR_SIZE, MAX_FDS, MAX_PAYLOAD};

/// A message as read from the socket: validated header, payload bytes, fds.
#[derive(Debug)]
pub struct RawMessage {
    pub header: Header,
    pub payload: Vec<u8>,
    pub fds: Vec<OwnedFd>,
}

#[derive(Debug)]
pub enum ReadError {
    /// The peer closed the connection (orderly EOF before a header).
    Closed,
    Io(io::Error),
    /// Ancillary data was truncated: more fds than we accept.
    TooManyFds,
    Truncated {
        expected: usize,
        got: usize,
    },
    Protocol(ProtocolError),
}

impl std::fmt::Display for ReadError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ReadError::Closed => write!(f, "peer closed"),
            ReadError::Io(e) => write!(f, "{e}"),
            ReadError::TooManyFds => write!(f, "too many fds (more than {MAX_FDS})"),
            ReadError::Truncated { expected, got } => {
                write!(f, "short read: {got} of {expected} bytes")
            }
            ReadError::Protocol(e) => write!(f, "{e}"),
        }
    }
}

impl std::error::Error for ReadError {}

fn take_fds(cmsgs: impl Iterator<Item = ControlMessageOwned>) -> Vec<OwnedFd> {
    let mut fds = Vec::new();
    for cmsg in cmsgs {
        if let ControlMessageOwned::ScmRights(raw) = cmsg {
            for fd in raw {
                // SAFETY: the kernel just installed this fd in our table for
                // us (SCM_RIGHTS); nothing else owns it.
                fds.push(unsafe { OwnedFd::from_raw_fd(fd) });
            }
        }
    }
    fds
}

/// The fds of a truncated SCM_RIGHTS message (the ones the kernel installed
/// before running out of room), so they can be closed.
fn take_truncated_fds(cmsg: &[u8]) -> Vec<OwnedFd> {
    const HDR: usize = std::mem::size_of::<libc::cmsghdr>();
    if cmsg.len() < HDR {
        return Vec::new();
    }
    let len = usize::from_ne_bytes(cmsg[..8].try_into().expect("8 bytes")).min(cmsg.len());
    let level = i32::from_ne_bytes(cmsg[8..12].try_into().expect("4 bytes"));
    let kind = i32::from_ne_bytes(cmsg[12..16].try_into().expect("4 bytes"));
    if level != libc::SOL_SOCKET || kind != libc::SCM_RIGHTS || len < HDR {
        return Vec::new();
    }
    cmsg[HDR..len]
        .chunks_exact(4)
        .map(|c| i32::from_ne_bytes(c.try_into().expect("4 bytes")))
        .filter(|fd| *fd >= 0)
        // SAFETY: the kernel installed these fds in our table for this
        // message (SCM_RIGHTS); nothing else owns them.
        .map(|fd| unsafe { OwnedFd::from_raw_fd(fd) })
        .collect()
}

/// Reads exactly `buf.len()` bytes (the socket has a receive timeout, so a
/// stalled peer yields an error instead of a hang).
fn read_exact(fd: RawFd, buf: &mut [u8]) -> Result<(), ReadError> {
    let mut done = 0;
    while done < buf.len() {
        match nix::unistd::read(fd, &mut buf[done..]) {
            Ok(0) => return Err(ReadError::Truncated { expected: buf.len(), got: done }),
            Ok(n) => done += n,
            Err(nix::errno::Errno::EINTR) => continue,
            Err(e) => return Err(ReadError::Io(e.into())),
        }
    }
    Ok(())
}

/// Reads one message: the header with any fds, then the payload. Fds are
/// closed (dropped) on every error path.
pub fn read_message(sock: BorrowedFd<'_>) -> Result<RawMessage, ReadError> {
    let mut hdr = [0u8; HDR_SIZE];
    let mut cmsg_buf = nix::cmsg_space!([RawFd; MAX_FDS]);
    // Initialised and full length, so truncated control data can be parsed
    // from it afterwards (nix only uses the capacity).
    cmsg_buf.resize(cmsg_buf.capacity(), 0);
    let (n, fds, truncated) = loop {
        let mut iov = [IoSliceMut::new(&mut hdr)];
        match recvmsg::<()>(sock.as_raw_fd(), &mut iov, Some(&mut cmsg_buf), MsgFlags::MSG_CMSG_CLOEXEC) {
            Ok(msg) => {
                let truncated = msg.flags.contains(MsgFlags::MSG_CTRUNC);
                let n = msg.bytes;
                // nix refuses to iterate truncated control data; the fds
                // that did arrive must still be closed, so take them raw.
                let fds = match msg.cmsgs() {
                    Ok(cmsgs) if !truncated => take_fds(cmsgs),
                    _ => Vec::new(),
                };
                break (n, fds, truncated);
            }
            Err(nix::errno::Errno::EINTR) => continue,
            Err(e) => return Err(ReadError::Io(e.into())),
        }
    };
    if n == 0 {
        return Err(ReadError::Closed);
    }
    if truncated {
        drop(take_truncated_fds(&cmsg_buf));
        return Err(ReadError::TooManyFds);
    }
    if n < HDR_SIZE {
        read_exact(sock.as_raw_fd(), &mut hdr[n..])?;
    }
    let header = Header::parse(&hdr);
    header.validate().map_err(ReadError::Protocol)?;
    let mut payload = vec![0u8; header.size as usize];
    read_exact(sock.as_raw_fd(), &mut payload)?;
    Ok(RawMessage { header, payload, fds })
}

/// Sends one message with optional fds.
pub fn send_message(sock: BorrowedFd<'_>, header: Header, payload: &[u8], fds: &[RawFd]) -> io::Result<()> {
    send_with(sock, header, payload, fds, MsgFlags::MSG_NOSIGNAL)
}

/// Sends a message without waiting: `WouldBlock` if the socket cannot take
/// it now. A message the socket took only part of is an error too (the
/// stream is then out of step; the caller stops using it).
pub fn send_message_now(sock: BorrowedFd<'_>, header: Header, payload: &[u8]) -> io::Result<()> {
    send_with(sock, header, payload, &[], MsgFlags::MSG_NOSIGNAL | MsgFlags::MSG_DONTWAIT)
}

fn send_with(
    sock: BorrowedFd<'_>,
    header: Header,
    payload: &[u8],
    fds: &[RawFd],
    flags: MsgFlags,
) -> io::Result<()> {
    debug_assert!(payload.len() <= MAX_PAYLOAD && fds.len() <= MAX_FDS);
    let hdr = header.to_bytes();
    let iov = [IoSlice::new(&hdr), IoSlice::new(payload)];
    let rights = [ControlMessage::ScmRights(fds)];
    let cmsgs: &[ControlMessage] = if fds.is_empty() { &[] } else { &rights };
    let total = HDR_SIZE + payload.len();
    let sent = loop {
        match sendmsg::<()>(sock.as_raw_fd(), &iov, cmsgs, flags, None) {
            Ok(n) => break n,
            Err(nix::errno::Errno::EINTR) => continue,
            Err(e) => return Err(e.into()),
        }
    };
    if sent != total {
        return Err(io::Error::new(io::ErrorKind::WriteZero, format!("short send: {sent} of {total} bytes")));
    }
    Ok(())
}
