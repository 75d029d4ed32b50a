//! The calls a device makes out of the library, as traits: the application's
//! callbacks (`rte_vhost_device_ops`), a vDPA driver's operations
//! (`vdpa_driver.h`) and the back-end request channel to the front-end.
//! `ffi`, `vdpa` and `socket` implement them; the state machine never holds
//! one, it only says what to call (`Event`).

use std::os::fd::RawFd;

use crate::protocol::features::Features;

/// What the application is told about its devices.
pub trait DeviceEvents: Send + Sync + std::fmt::Debug {
    /// The device is ready; `None` if the application has no such callback,
    /// else its return value (non-zero refuses the device).
    fn new_device(&self, vid: i32) -> Option<i32>;
    fn destroy_device(&self, vid: i32);
    fn vring_state_changed(&self, vid: i32, queue: u16, enable: bool);
    fn features_changed(&self, vid: i32, features: Features);
    /// A front-end connected; a negative return value refuses it.
    fn new_connection(&self, vid: i32) -> Option<i32>;
    fn destroy_connection(&self, vid: i32);
    /// DPDK 24.11's `guest_notify`: offers the interrupt of `queue` to the
    /// application; `None` without the callback, else whether it took it.
    #[cfg(feature = "abi-24-11")]
    fn guest_notify(&self, vid: i32, queue: u16) -> Option<bool>;
    /// `guest_notified`: the library interrupted the guest.
    #[cfg(feature = "abi-24-11")]
    fn guest_notified(&self, vid: i32);
}

/// The identity of a registered vDPA device (its C object's address).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct VdpaId(pub usize);

/// A vDPA driver's operations on the devices attached to it.
pub trait VdpaDriver: Send + Sync + std::fmt::Debug {
    fn id(&self) -> VdpaId;
    /// `RTE_VHOST_VDPA_DEVICE_TYPE_NET` or `_BLK`.
    fn device_type(&self) -> u32;
    fn features(&self) -> Option<u64>;
    fn queue_num(&self) -> Option<u32>;
    fn dev_conf(&self, vid: i32) -> i32;
    fn dev_close(&self, vid: i32);
    fn set_vring_state(&self, vid: i32, queue: u16, enable: bool);
    fn set_features(&self, vid: i32);
    fn migration_done(&self, vid: i32);
    /// `None` if the driver has no such operation.
    fn get_config(&self, vid: i32, buf: &mut [u8]) -> Option<i32>;
    fn set_config(&self, vid: i32, data: &mut [u8], offset: u32, flags: u32) -> Option<i32>;
}

/// The back-end request channel (SET_SLAVE_REQ_FD).
pub trait BackendChannel: Send + Sync + std::fmt::Debug {
    /// Sends `request` with `body` and `fds`; with `need_reply`, waits for
    /// the front-end's u64 ack.
    fn request(&self, request: u32, body: &[u8], fds: &[RawFd], need_reply: bool)
        -> Result<(), ChannelError>;
    /// Sends `request` (no fds, no reply) without waiting, for the
    /// datapath: `Busy` if the channel is busy or full right now.
    fn post(&self, request: u32, body: &[u8]) -> Result<(), ChannelError>;
}

/// Why a request on the back-end channel did not go through (the I/O
/// error itself is logged by the channel, with its device).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ChannelError {
    /// The front-end gave no channel.
    Absent,
    /// Another request has the channel, or its socket is full: try later.
    Busy,
    /// A request was sent in part earlier: the stream is out of step.
    Broken,
    /// Sending, or reading the ack, failed.
    Io,
    /// The front-end acked with a failure.
    Refused,
}

impl ChannelError {
    /// The negative errno the C API returns for it.
    pub fn errno(self) -> i32 {
        -match self {
            ChannelError::Absent => libc::EINVAL,
            ChannelError::Busy => libc::EAGAIN,
            ChannelError::Broken => libc::EPIPE,
            ChannelError::Io | ChannelError::Refused => libc::EIO,
        }
    }
}

impl std::fmt::Display for ChannelError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            ChannelError::Absent => "no back-end channel",
            ChannelError::Busy => "back-end channel busy",
            ChannelError::Broken => "back-end channel broken by a partial send",
            ChannelError::Io => "back-end channel I/O failed",
            ChannelError::Refused => "front-end refused the request",
        })
    }
}

impl std::error::Error for ChannelError {}

/// A call to make once no lock is held, in order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Event {
    /// `vring_state_changed` (and the vDPA driver's `set_vring_state`).
    VringState {
        queue: u16,
        enable: bool,
    },
    /// `features_changed` (LOG_ALL toggled on a running device).
    FeaturesChanged(Features),
    /// The device stops: the vDPA driver's `dev_close` (if one is
    /// attached), then `destroy_device`.
    Stop,
    /// A configured vDPA device must let go of the memory table.
    VdpaClose,
    VdpaSetFeatures,
    VdpaMigrationDone,
}
