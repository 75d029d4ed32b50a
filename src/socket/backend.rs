//! The back-end request channel (SET_SLAVE_REQ_FD): requests from us to the
//! front-end (host notifiers, config changes, IOTLB misses), optionally
//! waiting for its ack. One request at a time: datapath threads and the
//! control plane may share it.

use std::os::fd::{AsFd, OwnedFd, RawFd};

use parking_lot::Mutex;

use super::io::{read_message, send_message};
use crate::device::BackendChannel;
use crate::protocol::{read_u64, Header, FLAG_NEED_REPLY, VERSION};
use crate::vlog;

#[derive(Debug)]
pub(super) struct Channel {
    fd: Mutex<OwnedFd>,
    ifname: String,
}

impl Channel {
    pub(super) fn new(fd: OwnedFd, ifname: &str) -> Channel {
        Channel { fd: Mutex::new(fd), ifname: ifname.to_owned() }
    }
}

impl BackendChannel for Channel {
    fn request(&self, request: u32, body: &[u8], fds: &[RawFd], need_reply: bool) -> Result<(), i32> {
        let fd = self.fd.lock();
        let flags = VERSION | if need_reply { FLAG_NEED_REPLY } else { 0 };
        let header = Header { request, flags, size: body.len() as u32 };
        send_message(fd.as_fd(), header, body, fds).map_err(|e| {
            vlog!(Config, Err, self.ifname, "failed to send slave message: {e}");
            -libc::EIO
        })?;
        if !need_reply {
            return Ok(());
        }
        match read_message(fd.as_fd()) {
            Ok(reply) if reply.payload.len() == 8 && read_u64(&reply.payload, 0) == 0 => Ok(()),
            Ok(_) => Err(-libc::EIO),
            Err(e) => {
                vlog!(Config, Err, self.ifname, "vhost read slave message reply failed: {e}");
                Err(-libc::EIO)
            }
        }
    }
}
