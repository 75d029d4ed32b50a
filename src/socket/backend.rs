//! The back-end request channel (SET_SLAVE_REQ_FD): requests from us to the
//! front-end (host notifiers, config changes, IOTLB misses), optionally
//! waiting for its ack. One request at a time: datapath threads and the
//! control plane may share it.

use std::os::fd::{AsFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicBool, Ordering};

use parking_lot::Mutex;

use super::io::{read_message, send_message, send_message_now};
use crate::device::{BackendChannel, ChannelError};
use crate::protocol::{read_u64, Header, FLAG_NEED_REPLY, VERSION};
use crate::vlog;

#[derive(Debug)]
pub(super) struct Channel {
    fd: Mutex<OwnedFd>,
    ifname: String,
    /// A request was sent in part (`post` on a full socket): the stream is
    /// out of step and nothing more is sent.
    broken: AtomicBool,
}

impl Channel {
    pub(super) fn new(fd: OwnedFd, ifname: &str) -> Channel {
        Channel { fd: Mutex::new(fd), ifname: ifname.to_owned(), broken: AtomicBool::new(false) }
    }
}

impl BackendChannel for Channel {
    fn request(
        &self,
        request: u32,
        body: &[u8],
        fds: &[RawFd],
        need_reply: bool,
    ) -> Result<(), ChannelError> {
        if self.broken.load(Ordering::Acquire) {
            return Err(ChannelError::Broken);
        }
        let fd = self.fd.lock();
        let flags = VERSION | if need_reply { FLAG_NEED_REPLY } else { 0 };
        let header = Header { request, flags, size: body.len() as u32 };
        send_message(fd.as_fd(), header, body, fds).map_err(|e| {
            vlog!(Config, Err, self.ifname, "failed to send slave message: {e}");
            ChannelError::Io
        })?;
        if !need_reply {
            return Ok(());
        }
        match read_message(fd.as_fd()) {
            Ok(reply) if reply.payload.len() == 8 && read_u64(&reply.payload, 0) == 0 => Ok(()),
            Ok(_) => Err(ChannelError::Refused),
            Err(e) => {
                vlog!(Config, Err, self.ifname, "vhost read slave message reply failed: {e}");
                Err(ChannelError::Io)
            }
        }
    }

    fn post(&self, request: u32, body: &[u8]) -> Result<(), ChannelError> {
        if self.broken.load(Ordering::Acquire) {
            return Err(ChannelError::Broken);
        }
        // Another request (maybe waiting for its ack) has the channel.
        let Some(fd) = self.fd.try_lock() else { return Err(ChannelError::Busy) };
        let header = Header { request, flags: VERSION, size: body.len() as u32 };
        match send_message_now(fd.as_fd(), header, body) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => Err(ChannelError::Busy),
            Err(e) => {
                if e.kind() == std::io::ErrorKind::WriteZero {
                    self.broken.store(true, Ordering::Release);
                }
                vlog!(Config, Err, self.ifname, "failed to send slave message: {e}");
                Err(ChannelError::Io)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::net::UnixStream;

    use super::*;

    /// The datapath's requests never wait: a front-end that does not read
    /// its channel gets `Busy` once the socket is full, and what was
    /// sent stays whole messages.
    #[test]
    fn post_never_waits_on_a_channel_nobody_reads() {
        let (ours, theirs) = UnixStream::pair().unwrap();
        let chan = Channel::new(OwnedFd::from(ours), "t");
        let body = [7u8; 32];
        let mut sent = 0;
        let full = loop {
            match chan.post(1, &body) {
                Ok(()) => sent += 1,
                Err(e) => break e,
            }
            assert!(sent < 1_000_000, "the socket never filled");
        };
        assert_eq!(full, ChannelError::Busy);
        assert!(!chan.broken.load(Ordering::Acquire), "a full socket is no broken stream");
        for _ in 0..sent {
            let m = read_message(theirs.as_fd()).expect("a whole message");
            assert_eq!((m.header.request, m.payload.as_slice()), (1, &body[..]));
        }
        // Room again: requests go through.
        assert_eq!(chan.post(1, &body), Ok(()));
    }
}
