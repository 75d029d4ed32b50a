//! The `extern "C"` surface: exactly the 81 functions of DPDK 22.11's
//! `librte_vhost.so.23` (version nodes in `version.map`). Each function checks
//! its pointers and ids, converts C types once, calls the domain code, and maps
//! the result to DPDK's return convention. No logic lives here. Every body runs
//! inside `guard`, so a Rust panic never unwinds into C.

pub mod types;
mod vdpa;
mod vhost;
mod vhost_async;
mod vhost_crypto;

/// Runs `body`, turning a panic into `on_panic` (DPDK's error value for the
/// function) after logging it.
pub(crate) fn guard<T>(func: &str, on_panic: T, body: impl FnOnce() -> T) -> T {
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(body)) {
        Ok(v) => v,
        Err(_) => {
            crate::vlog!(
                Config,
                Err,
                "ffi",
                "{func}: internal error (panic caught), returning failure"
            );
            on_panic
        }
    }
}

/// Logs that `func` has no implementation in this build and returns `ret`
/// (DPDK's error value for it). The README feature table lists these.
pub(crate) fn not_implemented<T>(func: &str, ret: T) -> T {
    crate::vlog!(Config, Err, "rvhost", "{func} is not implemented yet");
    ret
}
