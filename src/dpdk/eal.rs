//! EAL services: control threads (created the way DPDK creates its own, so
//! they run on the control cores and carry a name) and class registration.

use std::ffi::{c_char, c_int, c_void, CString};
use std::io;

#[cfg(not(dpdk_eal_23_11))]
extern "C" {
    fn rte_ctrl_thread_create(
        thread: *mut libc::pthread_t,
        name: *const c_char,
        attr: *const libc::pthread_attr_t,
        start_routine: extern "C" fn(*mut c_void) -> *mut c_void,
        arg: *mut c_void,
    ) -> c_int;
}

/// `rte_thread_t` (rte_thread.h, DPDK 23.11 on).
#[cfg(dpdk_eal_23_11)]
#[repr(C)]
struct RteThread {
    opaque_id: usize,
}

#[cfg(dpdk_eal_23_11)]
extern "C" {
    fn rte_thread_create_control(
        thread: *mut RteThread,
        name: *const c_char,
        thread_func: extern "C" fn(*mut c_void) -> u32,
        arg: *mut c_void,
    ) -> c_int;
    fn rte_thread_detach(thread: RteThread) -> c_int;
}

/// Runs the closure behind `arg`.
///
/// # Safety
/// `arg` is the `Box<Box<dyn FnOnce()>>` leaked by `spawn_ctrl_thread`,
/// handed to exactly one thread.
unsafe fn run_boxed_closure(arg: *mut c_void) {
    // SAFETY: per this function's contract.
    let body = unsafe { Box::from_raw(arg.cast::<Box<dyn FnOnce() + Send>>()) };
    // A panic must not unwind into the C thread start routine.
    let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(body));
}

#[cfg(not(dpdk_eal_23_11))]
extern "C" fn thread_start(arg: *mut c_void) -> *mut c_void {
    // SAFETY: the EAL passes the argument `create_detached` was given.
    unsafe { run_boxed_closure(arg) };
    std::ptr::null_mut()
}

#[cfg(dpdk_eal_23_11)]
extern "C" fn thread_start(arg: *mut c_void) -> u32 {
    // SAFETY: the EAL passes the argument `create_detached` was given.
    unsafe { run_boxed_closure(arg) };
    0
}

/// Creates a detached EAL control thread running `thread_start(arg)`;
/// the error number when it could not.
#[cfg(not(dpdk_eal_23_11))]
fn create_detached(name: &CString, arg: *mut c_void) -> c_int {
    let mut tid: libc::pthread_t = 0;
    // SAFETY: valid out-pointer, NUL-terminated name, NULL attributes (EAL
    // defaults), and an argument that `thread_start` takes ownership of.
    let rc = unsafe { rte_ctrl_thread_create(&mut tid, name.as_ptr(), std::ptr::null(), thread_start, arg) };
    if rc == 0 {
        // SAFETY: `tid` was just created and is joinable; we never join it.
        unsafe { libc::pthread_detach(tid) };
    }
    rc
}

/// As above, through the EAL thread API that replaced `rte_ctrl_thread_create`.
#[cfg(dpdk_eal_23_11)]
fn create_detached(name: &CString, arg: *mut c_void) -> c_int {
    let mut tid = RteThread { opaque_id: 0 };
    // SAFETY: valid out-pointer, NUL-terminated name (the EAL copies it), and
    // an argument that `thread_start` takes ownership of.
    let rc = unsafe { rte_thread_create_control(&mut tid, name.as_ptr(), thread_start, arg) };
    if rc == 0 {
        // SAFETY: `tid` was just created and is joinable; we never join it.
        unsafe { rte_thread_detach(tid) };
    }
    rc
}

/// Starts `body` on an EAL control thread named `name` (as DPDK does for
/// its event and reconnect threads). The thread is detached.
pub fn spawn_ctrl_thread(name: &str, body: Box<dyn FnOnce() + Send>) -> io::Result<()> {
    let cname = CString::new(name).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    let arg = Box::into_raw(Box::new(body));
    let rc = create_detached(&cname, arg.cast());
    if rc != 0 {
        // SAFETY: the thread was not created, so ownership of `arg` is still ours.
        drop(unsafe { Box::from_raw(arg) });
        return Err(io::Error::from_raw_os_error(rc.abs()));
    }
    Ok(())
}

/// `rte_dev_iterate_t`.
pub type DevIterate =
    unsafe extern "C" fn(start: *const c_void, s: *const c_char, it: *const c_void) -> *mut c_void;

/// `struct rte_class` (rte_class.h): EAL links it into its class list.
#[repr(C)]
struct RteClass {
    tqe_next: *mut RteClass,
    tqe_prev: *mut *mut RteClass,
    name: *const c_char,
    dev_iterate: DevIterate,
}

extern "C" {
    fn rte_class_register(class: *mut RteClass);
}

/// Registers a device class with EAL (what `RTE_REGISTER_CLASS` does). The
/// class object lives for the rest of the process, as EAL expects.
pub fn register_class(name: &'static std::ffi::CStr, dev_iterate: DevIterate) {
    let class = Box::leak(Box::new(RteClass {
        tqe_next: std::ptr::null_mut(),
        tqe_prev: std::ptr::null_mut(),
        name: name.as_ptr(),
        dev_iterate,
    }));
    // SAFETY: a leaked, never-freed class object; EAL owns the list links.
    unsafe { rte_class_register(class) };
}
