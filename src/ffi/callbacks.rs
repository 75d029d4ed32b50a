//! The application's C callbacks as the traits the library calls through:
//! `rte_vhost_device_ops` (stored by pointer, as DPDK does) as
//! `DeviceEvents`, the extern message hooks (copied) as `MessageHooks`.

use std::ffi::c_void;

use crate::abi::{
    rte_vhost_device_ops, rte_vhost_msg_handle, rte_vhost_user_extern_ops, MsgContext,
    RTE_VHOST_MSG_RESULT_ERR, RTE_VHOST_MSG_RESULT_OK, RTE_VHOST_MSG_RESULT_REPLY,
};
use crate::device::DeviceEvents;
use crate::protocol::features::Features;
use crate::socket::{HookResult, MessageHooks};

/// The application's `struct rte_vhost_device_ops *`.
#[derive(Debug)]
pub struct DeviceOps(std::ptr::NonNull<rte_vhost_device_ops>);

// SAFETY: DPDK's contract: the ops structure is owned by the application and
// stays valid and unchanged while the socket is registered; it is only read.
unsafe impl Send for DeviceOps {}
// SAFETY: as above; shared read-only access.
unsafe impl Sync for DeviceOps {}

impl DeviceOps {
    /// `None` for NULL.
    pub fn from_ptr(ops: *const rte_vhost_device_ops) -> Option<DeviceOps> {
        std::ptr::NonNull::new(ops.cast_mut()).map(DeviceOps)
    }

    fn table(&self) -> rte_vhost_device_ops {
        // SAFETY: a non-null pointer registered by the application, valid per
        // the contract above; copied out by value.
        unsafe { self.0.as_ptr().read() }
    }
}

impl DeviceEvents for DeviceOps {
    fn new_device(&self, vid: i32) -> Option<i32> {
        // SAFETY: calling the application's callback with a valid vid.
        self.table().new_device.map(|f| unsafe { f(vid) })
    }
    fn destroy_device(&self, vid: i32) {
        if let Some(f) = self.table().destroy_device {
            // SAFETY: as above.
            unsafe { f(vid) }
        }
    }
    fn vring_state_changed(&self, vid: i32, queue: u16, enable: bool) {
        if let Some(f) = self.table().vring_state_changed {
            // SAFETY: as above.
            unsafe { f(vid, queue, i32::from(enable)) };
        }
    }
    fn features_changed(&self, vid: i32, features: Features) {
        if let Some(f) = self.table().features_changed {
            // SAFETY: as above.
            unsafe { f(vid, features.bits()) };
        }
    }
    fn new_connection(&self, vid: i32) -> Option<i32> {
        // SAFETY: as above.
        self.table().new_connection.map(|f| unsafe { f(vid) })
    }
    fn destroy_connection(&self, vid: i32) {
        if let Some(f) = self.table().destroy_connection {
            // SAFETY: as above.
            unsafe { f(vid) }
        }
    }
    #[cfg(feature = "abi-24-11")]
    fn guest_notify(&self, vid: i32, queue: u16) -> Option<bool> {
        // SAFETY: as above, with a valid queue index of that device.
        self.table().guest_notify.map(|f| unsafe { f(vid, queue) })
    }
    #[cfg(feature = "abi-24-11")]
    fn guest_notified(&self, vid: i32) {
        if let Some(f) = self.table().guest_notified {
            // SAFETY: as above.
            unsafe { f(vid) }
        }
    }
}

/// The extern pre/post message hooks (`rte_vhost_extern_callback_register`).
#[derive(Debug)]
pub struct ExternOps {
    ops: rte_vhost_user_extern_ops,
}

impl std::fmt::Debug for rte_vhost_user_extern_ops {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("rte_vhost_user_extern_ops").finish_non_exhaustive()
    }
}

impl ExternOps {
    /// DPDK keeps no context pointer for these hooks (the C API passes one
    /// that it ignores); the table is copied.
    pub fn new(ops: rte_vhost_user_extern_ops, _ctx: *mut c_void) -> ExternOps {
        ExternOps { ops }
    }

    fn run(handler: rte_vhost_msg_handle, vid: i32, msg: &mut MsgContext) -> HookResult {
        let Some(f) = handler else { return HookResult::NotHandled };
        // SAFETY: the application's hook gets a pointer to a live, correctly
        // laid out message context it may read and modify.
        match unsafe { f(vid, (msg as *mut MsgContext).cast()) } {
            RTE_VHOST_MSG_RESULT_ERR => HookResult::Err,
            RTE_VHOST_MSG_RESULT_OK => HookResult::Ok,
            RTE_VHOST_MSG_RESULT_REPLY => HookResult::Reply,
            _ => HookResult::NotHandled,
        }
    }
}

impl MessageHooks for ExternOps {
    fn has_pre(&self) -> bool {
        self.ops.pre_msg_handle.is_some()
    }
    fn has_post(&self) -> bool {
        self.ops.post_msg_handle.is_some()
    }
    fn pre(&self, vid: i32, msg: &mut MsgContext) -> HookResult {
        Self::run(self.ops.pre_msg_handle, vid, msg)
    }
    fn post(&self, vid: i32, msg: &mut MsgContext) -> HookResult {
        Self::run(self.ops.post_msg_handle, vid, msg)
    }
}

/// vhost-crypto's message hook (22.11 installs it as the device's post
/// handler): CREATE/CLOSE_CRYPTO_SESSION.
#[derive(Debug)]
pub struct CryptoHooks;

impl MessageHooks for CryptoHooks {
    fn has_pre(&self) -> bool {
        false
    }
    fn has_post(&self) -> bool {
        true
    }
    fn pre(&self, _vid: i32, _msg: &mut MsgContext) -> HookResult {
        HookResult::NotHandled
    }
    fn post(&self, vid: i32, msg: &mut MsgContext) -> HookResult {
        match crate::crypto::handle_message(vid, msg) {
            crate::crypto::MessageOutcome::Err => HookResult::Err,
            crate::crypto::MessageOutcome::Ok => HookResult::Ok,
            crate::crypto::MessageOutcome::Reply => HookResult::Reply,
            crate::crypto::MessageOutcome::NotHandled => HookResult::NotHandled,
        }
    }
}
