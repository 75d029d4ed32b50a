//! Logging through DPDK's `rte_log`, with the two log types 22.11 registers:
//! `lib.vhost.config` (default INFO) and `lib.vhost.data` (default WARNING), so
//! `--log-level=lib.vhost.*:debug` works as operators expect. Messages keep
//! DPDK's prefixes (`VHOST_CONFIG: (<socket or ifname>) `).

use std::ffi::{c_char, c_int, CString};
use std::fmt;
use std::sync::atomic::{AtomicU32, Ordering};

/// DPDK's `RTE_LOG_*` levels.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
#[repr(u32)]
pub enum Level {
    Err = 4,
    Warning = 5,
    Info = 7,
    Debug = 8,
}

/// Which of the two vhost log types a message belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogType {
    Config,
    Data,
}

extern "C" {
    fn rte_log_register_type_and_pick_level(name: *const c_char, level_def: u32) -> c_int;
    fn rte_log_can_log(logtype: u32, level: u32) -> bool;
    fn rte_log(level: u32, logtype: u32, format: *const c_char, ...) -> c_int;
}

/// `RTE_LOGTYPE_EAL`: DPDK's fallback when registration fails.
const RTE_LOGTYPE_EAL: u32 = 0;

static CONFIG_LOGTYPE: AtomicU32 = AtomicU32::new(RTE_LOGTYPE_EAL);
static DATA_LOGTYPE: AtomicU32 = AtomicU32::new(RTE_LOGTYPE_EAL);

fn register(name: &'static [u8], level: Level, slot: &AtomicU32) {
    // SAFETY: `name` is a NUL-terminated static string; the EAL copies it.
    let id = unsafe { rte_log_register_type_and_pick_level(name.as_ptr().cast(), level as u32) };
    slot.store(u32::try_from(id).unwrap_or(RTE_LOGTYPE_EAL), Ordering::Relaxed);
}

extern "C" fn register_log_types() {
    register(b"lib.vhost.config\0", Level::Info, &CONFIG_LOGTYPE);
    register(b"lib.vhost.data\0", Level::Warning, &DATA_LOGTYPE);
}

// Runs when the shared object is loaded, like DPDK's RTE_LOG_REGISTER_SUFFIX
// constructors, so `--log-level` patterns given to rte_eal_init apply.
#[used]
#[link_section = ".init_array"]
static REGISTER_LOG_TYPES: extern "C" fn() = register_log_types;

fn logtype_id(ty: LogType) -> u32 {
    match ty {
        LogType::Config => CONFIG_LOGTYPE.load(Ordering::Relaxed),
        LogType::Data => DATA_LOGTYPE.load(Ordering::Relaxed),
    }
}

/// Whether a message at `level` would be printed (checked before formatting).
pub fn enabled(ty: LogType, level: Level) -> bool {
    // SAFETY: plain query of EAL's log table; valid for any id.
    unsafe { rte_log_can_log(logtype_id(ty), level as u32) }
}

/// Writes one line: `VHOST_CONFIG: (prefix) message\n` (or `VHOST_DATA:`).
pub fn write(ty: LogType, level: Level, prefix: &str, args: fmt::Arguments<'_>) {
    let tag = match ty {
        LogType::Config => "VHOST_CONFIG",
        LogType::Data => "VHOST_DATA",
    };
    let mut line = format!("{tag}: ({prefix}) {args}\n");
    line.retain(|c| c != '\0');
    let Ok(line) = CString::new(line) else { return };
    // SAFETY: "%s" with one NUL-terminated string argument.
    unsafe {
        rte_log(level as u32, logtype_id(ty), c"%s".as_ptr(), line.as_ptr());
    }
}

/// `vlog!(Config, Info, prefix, "fmt", args..)`: logs through `rte_log` if the
/// level is enabled for that log type.
#[macro_export]
macro_rules! vlog {
    ($ty:ident, $level:ident, $prefix:expr, $($arg:tt)+) => {
        if $crate::dpdk::log::enabled($crate::dpdk::log::LogType::$ty, $crate::dpdk::log::Level::$level) {
            $crate::dpdk::log::write(
                $crate::dpdk::log::LogType::$ty,
                $crate::dpdk::log::Level::$level,
                &$prefix,
                format_args!($($arg)+),
            );
        }
    };
}
