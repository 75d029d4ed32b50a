//! The per-ring access lock: what DPDK's `access_lock` spinlock is, in Rust.
//! The datapath `try_lock`s once per burst (one atomic compare-exchange) and
//! unlocks with a plain release store — no second locked instruction, which
//! `parking_lot`'s unlock needs and which costs measurably per burst. The
//! control plane, which waits rarely and briefly, spins with yields.

use std::cell::UnsafeCell;
use std::marker::PhantomData;
use std::ops::{Deref, DerefMut};
use std::sync::atomic::{AtomicBool, Ordering};

/// A lock around `T` with a lock-free uncontended path.
#[derive(Default)]
pub struct AccessLock<T> {
    locked: AtomicBool,
    value: UnsafeCell<T>,
}

// SAFETY: access to `value` is serialised by `locked` (acquire on lock,
// release on unlock), exactly like a mutex; T moves between threads.
unsafe impl<T: Send> Sync for AccessLock<T> {}
// SAFETY: as above.
unsafe impl<T: Send> Send for AccessLock<T> {}

impl<T: std::fmt::Debug> std::fmt::Debug for AccessLock<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AccessLock").field("locked", &self.locked.load(Ordering::Relaxed)).finish()
    }
}

/// Exclusive access while alive: as `&mut T` is, `Send` when `T: Send` and
/// `Sync` only when `T: Sync` (the marker; the lock reference alone would
/// make it `Sync` for any `T: Send`).
pub struct AccessGuard<'a, T> {
    lock: &'a AccessLock<T>,
    _access: PhantomData<&'a mut T>,
}

impl<T> AccessLock<T> {
    pub fn new(value: T) -> AccessLock<T> {
        AccessLock { locked: AtomicBool::new(false), value: UnsafeCell::new(value) }
    }

    #[inline]
    pub fn try_lock(&self) -> Option<AccessGuard<'_, T>> {
        self.locked
            .compare_exchange(false, true, Ordering::Acquire, Ordering::Relaxed)
            .ok()
            .map(|_| AccessGuard { lock: self, _access: PhantomData })
    }

    /// The datapath's lock: `try_lock`, and if the control plane holds the
    /// ring, a few microseconds of spinning before giving up (the burst
    /// then moves nothing). Most control-plane holds are that short (an
    /// IOTLB update handing a ring its new view); a burst that simply
    /// failed would drop the packets the application gave it.
    #[inline]
    pub fn try_lock_briefly(&self) -> Option<AccessGuard<'_, T>> {
        self.try_lock().or_else(|| self.spin_for_lock())
    }

    #[cold]
    fn spin_for_lock(&self) -> Option<AccessGuard<'_, T>> {
        for _ in 0..64 {
            std::hint::spin_loop();
            if !self.locked.load(Ordering::Relaxed) {
                if let Some(g) = self.try_lock() {
                    return Some(g);
                }
            }
        }
        None
    }

    /// Waits for the lock (control plane): spins briefly, then yields.
    pub fn lock(&self) -> AccessGuard<'_, T> {
        loop {
            if let Some(g) = self.try_lock_briefly() {
                return g;
            }
            std::thread::yield_now();
        }
    }
}

impl<T> Deref for AccessGuard<'_, T> {
    type Target = T;
    #[inline]
    fn deref(&self) -> &T {
        // SAFETY: the guard exists only while `locked` is held by us.
        unsafe { &*self.lock.value.get() }
    }
}

impl<T> DerefMut for AccessGuard<'_, T> {
    #[inline]
    fn deref_mut(&mut self) -> &mut T {
        // SAFETY: as above, and the guard is unique.
        unsafe { &mut *self.lock.value.get() }
    }
}

impl<T> Drop for AccessGuard<'_, T> {
    #[inline]
    fn drop(&mut self) {
        self.lock.locked.store(false, Ordering::Release);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn excludes_and_releases() {
        let l = AccessLock::new(5u32);
        let mut g = l.try_lock().unwrap();
        assert!(l.try_lock().is_none(), "held lock refuses try_lock");
        *g += 1;
        drop(g);
        assert_eq!(*l.lock(), 6);
    }

    #[test]
    fn serialises_threads() {
        let l = std::sync::Arc::new(AccessLock::new(0u64));
        let threads: Vec<_> = (0..4)
            .map(|_| {
                let l = l.clone();
                std::thread::spawn(move || {
                    for _ in 0..10_000 {
                        *l.lock() += 1;
                    }
                })
            })
            .collect();
        threads.into_iter().for_each(|t| t.join().unwrap());
        assert_eq!(*l.lock(), 40_000);
    }

    /// Compiles only if `T` is not `Sync`: with `T: Sync` both impls apply
    /// and `probe` is ambiguous (static_assertions' `assert_not_impl_any`).
    trait AmbiguousIfSync<A> {
        fn probe() {}
    }
    impl<T: ?Sized> AmbiguousIfSync<()> for T {}
    impl<T: ?Sized + Sync> AmbiguousIfSync<u8> for T {}

    fn sync<T: Sync>() {}
    fn send<T: Send>() {}

    /// Finding 8 of issue 19: the guard was `Sync` for any `T: Send`, so
    /// safe code could share a `Cell` across threads through `&guard`.
    /// Checked when this test compiles.
    #[test]
    fn a_guard_is_sync_only_for_sync_contents() {
        <AccessGuard<'static, std::cell::Cell<u8>> as AmbiguousIfSync<_>>::probe();
        sync::<AccessGuard<'static, u8>>();
        send::<AccessGuard<'static, std::cell::Cell<u8>>>();
        sync::<AccessLock<std::cell::Cell<u8>>>();
    }
}
