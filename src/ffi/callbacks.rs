//! Calls from the library into the application: `rte_vhost_device_ops`
//! (stored by pointer, as DPDK does) and the extern message hooks (copied).

use std::ffi::c_void;

use crate::abi::{
    rte_vhost_device_ops, rte_vhost_msg_result, rte_vhost_user_extern_ops, RTE_VHOST_MSG_RESULT_NOT_HANDLED,
};

/// The application's `struct rte_vhost_device_ops *`, or none.
#[derive(Clone, Copy, Debug, Default)]
pub struct DeviceOps(Option<std::ptr::NonNull<rte_vhost_device_ops>>);

// SAFETY: DPDK's contract: the ops structure is owned by the application and
// stays valid and unchanged while the socket is registered; it is only read.
unsafe impl Send for DeviceOps {}
// SAFETY: as above; shared read-only access.
unsafe impl Sync for DeviceOps {}

impl DeviceOps {
    pub fn from_ptr(ops: *const rte_vhost_device_ops) -> DeviceOps {
        DeviceOps(std::ptr::NonNull::new(ops.cast_mut()))
    }

    pub fn is_set(&self) -> bool {
        self.0.is_some()
    }

    fn table(&self) -> Option<rte_vhost_device_ops> {
        // SAFETY: a non-null pointer registered by the application, valid per
        // the contract above; copied out by value.
        self.0.map(|p| unsafe { p.as_ptr().read() })
    }

    /// `new_device`; `None` if the application has no such callback.
    pub fn new_device(&self, vid: i32) -> Option<i32> {
        // SAFETY: calling the application's callback with a valid vid.
        self.table()?.new_device.map(|f| unsafe { f(vid) })
    }
    pub fn destroy_device(&self, vid: i32) {
        if let Some(f) = self.table().and_then(|t| t.destroy_device) {
            // SAFETY: as above.
            unsafe { f(vid) }
        }
    }
    pub fn vring_state_changed(&self, vid: i32, queue_id: u16, enable: bool) {
        if let Some(f) = self.table().and_then(|t| t.vring_state_changed) {
            // SAFETY: as above.
            unsafe { f(vid, queue_id, i32::from(enable)) };
        }
    }
    pub fn features_changed(&self, vid: i32, features: u64) {
        if let Some(f) = self.table().and_then(|t| t.features_changed) {
            // SAFETY: as above.
            unsafe { f(vid, features) };
        }
    }
    pub fn new_connection(&self, vid: i32) -> Option<i32> {
        // SAFETY: as above.
        self.table()?.new_connection.map(|f| unsafe { f(vid) })
    }
    pub fn destroy_connection(&self, vid: i32) {
        if let Some(f) = self.table().and_then(|t| t.destroy_connection) {
            // SAFETY: as above.
            unsafe { f(vid) }
        }
    }
    pub fn guest_notified(&self, vid: i32) {
        if let Some(f) = self.table().and_then(|t| t.guest_notified) {
            // SAFETY: as above.
            unsafe { f(vid) }
        }
    }
}

/// The extern pre/post message hooks (`rte_vhost_extern_callback_register`).
#[derive(Clone, Copy, Debug, Default)]
pub struct ExternOps {
    ops: Option<(rte_vhost_user_extern_ops, usize)>,
}

impl std::fmt::Debug for rte_vhost_user_extern_ops {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("rte_vhost_user_extern_ops").finish_non_exhaustive()
    }
}

/// Which hook to run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Hook {
    Pre,
    Post,
}

impl ExternOps {
    pub fn new(ops: rte_vhost_user_extern_ops, ctx: *mut c_void) -> ExternOps {
        ExternOps { ops: Some((ops, ctx as usize)) }
    }

    pub fn has(&self, hook: Hook) -> bool {
        self.handler(hook).is_some()
    }

    fn handler(&self, hook: Hook) -> crate::abi::rte_vhost_msg_handle {
        let (ops, _) = self.ops?;
        match hook {
            Hook::Pre => ops.pre_msg_handle,
            Hook::Post => ops.post_msg_handle,
        }
    }

    /// Runs a hook on `msg` (DPDK's `struct vhu_msg_context` layout).
    pub fn run(&self, hook: Hook, vid: i32, msg: &mut crate::protocol::MsgContext) -> rte_vhost_msg_result {
        match self.handler(hook) {
            // SAFETY: the application's hook gets a pointer to a live,
            // correctly laid out message context it may read and modify.
            Some(f) => unsafe { f(vid, (msg as *mut crate::protocol::MsgContext).cast()) },
            None => RTE_VHOST_MSG_RESULT_NOT_HANDLED,
        }
    }
}
