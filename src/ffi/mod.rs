//! The `extern "C"` surface: exactly the 81 functions of DPDK 22.11's
//! `librte_vhost.so.23` (version nodes in `version.map`), or with the
//! `abi-24-11` feature the 83 of 24.11's `librte_vhost.so.25`
//! (`version-24.11.map`; 25.11's `.so.26` has the same under `DPDK_26`).
//! Each function checks its pointers and ids, converts C types once, calls
//! the domain code, and maps the result to DPDK's return convention. No
//! logic lives here. Every body runs inside `boundary!`, so a Rust panic
//! never unwinds into C (where it would abort the process: OVS, testpmd,
//! every guest on them);
//! `tests/structure.rs` checks that none is left out.

/// The panic boundary every export's body runs in: a panic is logged (with
/// the export's name) and becomes `$on_panic`, DPDK's error value for the
/// function. (`return` in the body returns from the export, as before.)
macro_rules! boundary {
    ($on_panic:expr, $body:block) => {{
        fn here() {}
        $crate::ffi::guard(std::any::type_name_of_val(&here), $on_panic, || $body)
    }};
}

pub mod callbacks;
mod vdpa;
mod vhost;
mod vhost_async;
mod vhost_crypto;
mod vhost_device;
pub(crate) mod vhost_driver;
mod vhost_inflight;

/// Runs `body`, turning a panic into `on_panic` after logging it; `here`
/// is the type name of a function inside the export (`boundary!`).
pub(crate) fn guard<T>(here: &str, on_panic: T, body: impl FnOnce() -> T) -> T {
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(body)) {
        Ok(v) => v,
        Err(_) => {
            let func = here.trim_end_matches("::here").rsplit("::").next().unwrap_or(here);
            crate::vlog!(Config, Err, "ffi", "{func}: internal error (panic caught), returning failure");
            on_panic
        }
    }
}

/// Borrows a C string argument; `None` for NULL or non-UTF-8.
///
/// # Safety
/// `p` must be NULL or point to a NUL-terminated string that outlives the call.
pub(crate) unsafe fn cstr_arg<'a>(p: *const std::ffi::c_char) -> Option<&'a str> {
    if p.is_null() {
        return None;
    }
    // SAFETY: non-NULL and NUL-terminated per the caller's contract.
    unsafe { std::ffi::CStr::from_ptr(p) }.to_str().ok()
}

/// Writes the pair `value()` gives through two out-pointers: 0, or -1
/// (nothing written) if either is NULL or `value` has none. `value` runs
/// only once both pointers were checked.
///
/// # Safety
/// `first` and `second` must each be NULL or valid for a write of `T`.
pub(crate) unsafe fn write_pair<T>(
    first: *mut T,
    second: *mut T,
    value: impl FnOnce() -> Option<(T, T)>,
) -> std::ffi::c_int {
    if first.is_null() || second.is_null() {
        return -1;
    }
    let Some((a, b)) = value() else { return -1 };
    // SAFETY: both non-NULL and writable per the caller's contract.
    unsafe {
        first.write(a);
        second.write(b);
    }
    0
}

/// Writes `value` through an out-pointer: 0, or -1 for NULL.
///
/// # Safety
/// `p` must be NULL or valid for a write of `T`.
pub(crate) unsafe fn write_out<T>(p: *mut T, value: T) -> std::ffi::c_int {
    if p.is_null() {
        return -1;
    }
    // SAFETY: non-NULL and writable per the caller's contract.
    unsafe { p.write(value) };
    0
}
