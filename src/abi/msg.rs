//! DPDK's `struct vhu_msg_context`: a vhost-user message as extern message
//! hooks (`rte_vhost_extern_callback_register`) receive and may modify it.

/// Size of DPDK's `VhostUserMsg` payload union (its largest member is the
/// crypto session parameter block: 632 bytes until 24.11, 1072 from 25.03,
/// whose akcipher sessions carry a 1024-byte key).
#[cfg(not(feature = "abi-25-11"))]
pub const MSG_PAYLOAD_SIZE: usize = 632;
#[cfg(feature = "abi-25-11")]
pub const MSG_PAYLOAD_SIZE: usize = 1072;
/// `VHOST_MEMORY_MAX_NREGIONS`: fds a message carries at most.
pub const MSG_MAX_FDS: usize = 8;

/// The packed `VhostUserMsg` (header and payload) followed by the fds.
#[repr(C, packed)]
#[derive(Clone, Copy)]
pub struct MsgContext {
    pub request: u32,
    pub flags: u32,
    pub size: u32,
    pub payload: [u8; MSG_PAYLOAD_SIZE],
    pub fds: [i32; MSG_MAX_FDS],
    pub fd_num: i32,
}

const _: () = assert!(std::mem::size_of::<MsgContext>() == 12 + MSG_PAYLOAD_SIZE + 4 * MSG_MAX_FDS + 4);

impl MsgContext {
    /// A context holding `payload` (at most `MSG_PAYLOAD_SIZE` bytes) and
    /// raw fd numbers.
    pub fn new(request: u32, flags: u32, payload: &[u8], fds: &[i32]) -> MsgContext {
        let n = payload.len().min(MSG_PAYLOAD_SIZE);
        let mut ctx = MsgContext {
            request,
            flags,
            size: n as u32,
            payload: [0; MSG_PAYLOAD_SIZE],
            fds: [-1; MSG_MAX_FDS],
            fd_num: fds.len().min(MSG_MAX_FDS) as i32,
        };
        ctx.payload[..n].copy_from_slice(&payload[..n]);
        let mut raw = [-1; MSG_MAX_FDS];
        for (slot, fd) in raw.iter_mut().zip(fds) {
            *slot = *fd;
        }
        ctx.fds = raw;
        ctx
    }

    /// The payload as the hook left it (its `size`, bounded).
    pub fn payload_bytes(&self) -> Vec<u8> {
        let size = (self.size as usize).min(MSG_PAYLOAD_SIZE);
        let payload = self.payload;
        payload[..size].to_vec()
    }
}
