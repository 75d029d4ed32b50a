//! The public C types of `rte_vhost.h`, `rte_vdpa.h`, `vdpa_driver.h` and
//! `rte_vhost_crypto.h`, with DPDK's names and 22.11 layouts. Sizes and offsets
//! are compared with `/usr/include/dpdk` by the layout test in `ffi-tests/`.
#![allow(non_camel_case_types)]

use std::ffi::{c_char, c_int, c_uint, c_void};

pub use super::mbuf::{rte_mempool, RteMbuf as rte_mbuf};

/// Opaque `struct rte_device` (EAL); only `name` at offset 16 is read.
#[repr(C)]
pub struct rte_device {
    _private: [u8; 0],
}

/// Opaque `struct rte_crypto_op` (cryptodev).
#[repr(C)]
pub struct rte_crypto_op {
    _private: [u8; 0],
}

#[repr(C)]
#[derive(Clone, Copy, Debug)]
/// Information relating to memory regions including offsets to
/// addresses in QEMUs memory file.
pub struct rte_vhost_mem_region {
    pub guest_phys_addr: u64,
    pub guest_user_addr: u64,
    pub host_user_addr: u64,
    pub size: u64,
    pub mmap_addr: *mut c_void,
    pub mmap_size: u64,
    pub fd: c_int,
}

/// Memory structure includes region and mapping information.
#[repr(C)]
pub struct rte_vhost_memory {
    pub nregions: u32,
    pub regions: [rte_vhost_mem_region; 0],
}

#[repr(C)]
pub struct rte_vhost_inflight_desc_split {
    pub inflight: u8,
    pub padding: [u8; 5],
    pub next: u16,
    pub counter: u64,
}

#[repr(C)]
pub struct rte_vhost_inflight_info_split {
    pub features: u64,
    pub version: u16,
    pub desc_num: u16,
    pub last_inflight_io: u16,
    pub used_idx: u16,
    pub desc: [rte_vhost_inflight_desc_split; 0],
}

#[repr(C)]
pub struct rte_vhost_inflight_desc_packed {
    pub inflight: u8,
    pub padding: u8,
    pub next: u16,
    pub last: u16,
    pub num: u16,
    pub counter: u64,
    pub id: u16,
    pub flags: u16,
    pub len: u32,
    pub addr: u64,
}

#[repr(C)]
pub struct rte_vhost_inflight_info_packed {
    pub features: u64,
    pub version: u16,
    pub desc_num: u16,
    pub free_head: u16,
    pub old_free_head: u16,
    pub used_idx: u16,
    pub old_used_idx: u16,
    pub used_wrap_counter: u8,
    pub old_used_wrap_counter: u8,
    pub padding: [u8; 7],
    pub desc: [rte_vhost_inflight_desc_packed; 0],
}

#[repr(C)]
pub struct rte_vhost_resubmit_desc {
    pub index: u16,
    pub counter: u64,
}

#[repr(C)]
pub struct rte_vhost_resubmit_info {
    pub resubmit_list: *mut rte_vhost_resubmit_desc,
    pub resubmit_num: u16,
}

/// `struct rte_vhost_ring_inflight`; the first member is a union of the split
/// and packed info pointers.
#[repr(C)]
pub struct rte_vhost_ring_inflight {
    pub inflight: *mut c_void,
    pub resubmit_inflight: *mut rte_vhost_resubmit_info,
}

/// `struct rte_vhost_vring`; desc/avail/used are unions with the packed-ring
/// pointers (desc_packed, driver_event, device_event).
#[repr(C)]
pub struct rte_vhost_vring {
    pub desc: *mut c_void,
    pub avail: *mut c_void,
    pub used: *mut c_void,
    pub log_guest_addr: u64,
    pub callfd: c_int,
    pub kickfd: c_int,
    pub size: u16,
}

/// `enum rte_vhost_msg_result`.
pub type rte_vhost_msg_result = c_int;
pub const RTE_VHOST_MSG_RESULT_ERR: rte_vhost_msg_result = -1;
pub const RTE_VHOST_MSG_RESULT_OK: rte_vhost_msg_result = 0;
pub const RTE_VHOST_MSG_RESULT_REPLY: rte_vhost_msg_result = 1;

pub type rte_vhost_msg_handle =
    Option<unsafe extern "C" fn(vid: c_int, msg: *mut c_void) -> rte_vhost_msg_result>;

/// Optional vhost user message handlers.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct rte_vhost_user_extern_ops {
    /// Called prior to the master message handling.
    pub pre_msg_handle: rte_vhost_msg_handle,
    /// Called after the master message handling.
    pub post_msg_handle: rte_vhost_msg_handle,
}

/// Device and vring operations.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct rte_vhost_device_ops {
    /// Add device.
    pub new_device: Option<unsafe extern "C" fn(vid: c_int) -> c_int>,
    /// Remove device.
    pub destroy_device: Option<unsafe extern "C" fn(vid: c_int)>,
    /// triggered when a vring is enabled or disabled
    pub vring_state_changed: Option<unsafe extern "C" fn(vid: c_int, queue_id: u16, enable: c_int) -> c_int>,
    /// Features could be changed after the feature negotiation.
    /// For example, VHOST_F_LOG_ALL will be set/cleared at the
    /// start/end of live migration, respectively. This callback
    /// is used to inform the application on such change.
    pub features_changed: Option<unsafe extern "C" fn(vid: c_int, features: u64) -> c_int>,
    /// Invoked on a new vhost-user socket connection. If DPDK acts as the
    /// server the device should not be deleted before the
    /// destroy_connection callback is received.
    pub new_connection: Option<unsafe extern "C" fn(vid: c_int) -> c_int>,
    /// Invoked when the vhost-user socket connection is closed. It indicates
    /// that the device with id `vid` is no longer in use and can be safely
    /// deleted.
    pub destroy_connection: Option<unsafe extern "C" fn(vid: c_int)>,
    /// This callback gets called each time a guest gets notified
    /// about waiting packets. This is the interrupt handling through
    /// the eventfd_write(callfd), which can be used for counting these
    /// "slow" syscalls.
    pub guest_notified: Option<unsafe extern "C" fn(vid: c_int)>,
    /// Reserved for future extension
    #[cfg(not(feature = "abi-24-11"))]
    pub reserved: [*mut c_void; 1],
    /// If this callback is registered, notification to the guest can
    /// be handled by the front-end calling rte_vhost_notify_guest().
    /// If it's not handled, 'false' should be returned. This can be used
    /// to remove the "slow" eventfd_write() syscall from the datapath.
    #[cfg(feature = "abi-24-11")]
    pub guest_notify: Option<unsafe extern "C" fn(vid: c_int, queue_id: u16) -> bool>,
}

#[repr(C)]
pub struct rte_vhost_power_monitor_cond {
    pub addr: *mut c_void,
    pub val: u64,
    pub mask: u64,
    pub size: u8,
    pub r#match: u8,
}

pub const RTE_VHOST_STATS_NAME_SIZE: usize = 64;

/// Vhost virtqueue statistics structure
///
/// This structure is used by rte_vhost_vring_stats_get() to provide
/// virtqueue statistics to the calling application.
/// It maps a name ID, corresponding to an index in the array returned
/// by rte_vhost_vring_stats_get_names(), to a statistic value.
#[repr(C)]
pub struct rte_vhost_stat {
    /// The index in xstats name array.
    pub id: u64,
    /// The statistic counter value.
    pub value: u64,
}

/// Vhost virtqueue statistic name element
///
/// This structure is used by rte_vhost_vring_stats_get_names() to
/// provide virtqueue statistics names to the calling application.
#[repr(C)]
pub struct rte_vhost_stat_name {
    /// The statistic name.
    pub name: [c_char; RTE_VHOST_STATS_NAME_SIZE],
}

pub const RTE_VDPA_STATS_NAME_SIZE: usize = 64;

/// A vDPA device statistic structure
///
/// This structure is used by rte_vdpa_get_stats() to provide
/// statistics from the HW vDPA device.
///
/// It maps a name id, corresponding to an index in the array returned
/// by rte_vdpa_get_stats_names, to a statistic value.
#[repr(C)]
pub struct rte_vdpa_stat {
    /// The index in stats name array
    pub id: u64,
    /// The statistic counter value
    pub value: u64,
}

/// A name element for statistics
///
/// An array of this structure is returned by rte_vdpa_get_stats_names
/// It lists the names of extended statistics for a PMD. The rte_vdpa_stat
/// structure references these names by their array index
#[repr(C)]
pub struct rte_vdpa_stat_name {
    /// The statistic name
    pub name: [c_char; RTE_VDPA_STATS_NAME_SIZE],
}

/// vdpa device operations
///
/// `struct rte_vdpa_dev_ops` of vdpa_driver.h, provided by vDPA drivers.
#[repr(C)]
pub struct rte_vdpa_dev_ops {
    /// Get capabilities of this device (Mandatory)
    pub get_queue_num: Option<unsafe extern "C" fn(*mut rte_vdpa_device, *mut u32) -> c_int>,
    /// Get supported features of this device (Mandatory)
    pub get_features: Option<unsafe extern "C" fn(*mut rte_vdpa_device, *mut u64) -> c_int>,
    /// Get supported protocol features of this device (Mandatory)
    pub get_protocol_features: Option<unsafe extern "C" fn(*mut rte_vdpa_device, *mut u64) -> c_int>,
    /// Driver configure the device (Mandatory)
    pub dev_conf: Option<unsafe extern "C" fn(c_int) -> c_int>,
    /// Driver close the device (Mandatory)
    pub dev_close: Option<unsafe extern "C" fn(c_int) -> c_int>,
    /// Connection closed, clean up resources
    pub dev_cleanup: Option<unsafe extern "C" fn(c_int) -> c_int>,
    /// Enable/disable this vring (Mandatory)
    pub set_vring_state: Option<unsafe extern "C" fn(c_int, c_int, c_int) -> c_int>,
    /// Set features when changed (Mandatory)
    pub set_features: Option<unsafe extern "C" fn(c_int) -> c_int>,
    /// Destination operations when migration done
    pub migration_done: Option<unsafe extern "C" fn(c_int) -> c_int>,
    /// Get the vfio group fd
    pub get_vfio_group_fd: Option<unsafe extern "C" fn(c_int) -> c_int>,
    /// Get the vfio device fd
    pub get_vfio_device_fd: Option<unsafe extern "C" fn(c_int) -> c_int>,
    /// Get the notify area info of the queue
    pub get_notify_area: Option<unsafe extern "C" fn(c_int, c_int, *mut u64, *mut u64) -> c_int>,
    /// Get statistics name
    pub get_stats_names:
        Option<unsafe extern "C" fn(*mut rte_vdpa_device, *mut rte_vdpa_stat_name, c_uint) -> c_int>,
    /// Get statistics of the queue
    pub get_stats:
        Option<unsafe extern "C" fn(*mut rte_vdpa_device, c_int, *mut rte_vdpa_stat, c_uint) -> c_int>,
    /// Reset statistics of the queue
    pub reset_stats: Option<unsafe extern "C" fn(*mut rte_vdpa_device, c_int) -> c_int>,
    /// Get the device configuration space
    pub get_config: Option<unsafe extern "C" fn(c_int, *mut u8, u32) -> c_int>,
    /// Set the device configuration space
    pub set_config: Option<unsafe extern "C" fn(c_int, *mut u8, u32, u32, u32) -> c_int>,
    /// get device type: net device, blk device...
    pub get_dev_type: Option<unsafe extern "C" fn(*mut rte_vdpa_device, *mut u32) -> c_int>,
}

/// `struct rte_vdpa_device` (vdpa_driver.h): drivers read `device`.
#[repr(C)]
pub struct rte_vdpa_device {
    pub next_tqe_next: *mut rte_vdpa_device,
    pub next_tqe_prev: *mut *mut rte_vdpa_device,
    pub device: *mut rte_device,
    pub ops: *mut rte_vdpa_dev_ops,
    pub r#type: u32,
}

/// `enum rte_vhost_crypto_zero_copy`.
pub type rte_vhost_crypto_zero_copy = c_int;

const _: () = assert!(std::mem::size_of::<rte_vhost_mem_region>() == 56);
const _: () = assert!(std::mem::size_of::<rte_vhost_memory>() == 8);
const _: () = assert!(std::mem::size_of::<rte_vhost_inflight_info_packed>() == 32);
const _: () = assert!(std::mem::size_of::<rte_vhost_vring>() == 48);
const _: () = assert!(std::mem::size_of::<rte_vhost_device_ops>() == 64);
const _: () = assert!(std::mem::size_of::<rte_vhost_power_monitor_cond>() == 32);
const _: () = assert!(std::mem::size_of::<rte_vdpa_dev_ops>() == 144);
const _: () = assert!(std::mem::size_of::<rte_vdpa_device>() == 40);

/// `RTE_VHOST_VDPA_DEVICE_TYPE_NET` / `_BLK`.
pub const RTE_VHOST_VDPA_DEVICE_TYPE_NET: u32 = 0;
pub const RTE_VHOST_VDPA_DEVICE_TYPE_BLK: u32 = 1;
