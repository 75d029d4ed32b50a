//! Interrupting the guest once used entries are published, if it wants it.
//!
//! DPDK 24.11 (librte_vhost.so.25 on) lets the application take the
//! interrupts (`guest_notify` in `rte_vhost_device_ops`): each is offered to
//! it first; if it takes one, the ring's interrupt is pending and later ones
//! are suppressed until the application raises it with
//! `rte_vhost_notify_guest`; if it declines, the library writes the call
//! eventfd itself. Counters: offloaded, suppressed, error (no call eventfd,
//! or the write failed), and the plain notifications.

use crate::device::Device;
use crate::virtqueue::notify;
use crate::virtqueue::ring::RingMem;
use crate::virtqueue::VqState;

#[cfg(feature = "abi-24-11")]
pub use offload::{notify_guest_now, set_application};

/// Interrupts the guest if it wants an interrupt now (event index or flags).
#[inline]
pub fn notify_guest(dev: &Device, vq: &mut VqState, ring: &RingMem, stats: bool) {
    if notify::wants_notification(vq, ring) {
        inject(dev, vq, stats);
    }
}

/// DPDK 22.11: the call eventfd, counted when there is one.
#[cfg(not(feature = "abi-24-11"))]
#[inline]
fn inject(_dev: &Device, vq: &mut VqState, stats: bool) {
    if notify::signal(vq).is_some() && stats {
        vq.datapath_mut().stats.guest_notifications += 1;
    }
}

#[cfg(feature = "abi-24-11")]
use offload::inject;

#[cfg(feature = "abi-24-11")]
mod offload {
    use std::cell::Cell;
    use std::sync::Arc;

    use parking_lot::RwLock;

    use crate::device::{Device, DeviceEvents, MAX_DEVICES};
    use crate::protocol::features::flags;
    use crate::virtqueue::notify;
    use crate::virtqueue::VqState;

    /// The application callbacks of each device (by vid), set while it is
    /// connected: the datapath offers them the interrupts.
    type Application = RwLock<Option<Arc<dyn DeviceEvents>>>;
    static APPLICATIONS: [Application; MAX_DEVICES] =
        [const { parking_lot::const_rwlock(None) }; MAX_DEVICES];

    thread_local! {
        /// The ring (vid, queue) whose interrupt this thread is offering to
        /// `guest_notify`, and whether `rte_vhost_notify_guest` was called
        /// for it from inside the callback (the ring's lock is held then:
        /// the injection is done once the callback has returned).
        static OFFERING: Cell<Option<(i32, u16, bool)>> = const { Cell::new(None) };
    }

    /// Sets (at connection) or clears (at its end) the device's callbacks.
    pub fn set_application(vid: i32, app: Option<Arc<dyn DeviceEvents>>) {
        if let Some(slot) = usize::try_from(vid).ok().and_then(|i| APPLICATIONS.get(i)) {
            *slot.write() = app;
        }
    }

    fn application(vid: i32) -> Option<Arc<dyn DeviceEvents>> {
        APPLICATIONS.get(usize::try_from(vid).ok()?)?.read().clone()
    }

    /// DPDK 24.11's `vhost_vring_inject_irq`.
    pub fn inject(dev: &Device, vq: &mut VqState, stats: bool) {
        let vid = dev.vid();
        let app = application(vid);
        if let Some(app) = app.as_deref() {
            if vq.datapath_mut().irq_pending {
                vq.datapath_mut().stats.guest_notifications_suppressed += 1;
                return;
            }
            vq.datapath_mut().irq_pending = true;
            OFFERING.set(Some((vid, vq.index(), false)));
            let taken = app.guest_notify(vid, vq.index());
            let raised_meanwhile = OFFERING.replace(None).is_some_and(|(_, _, raised)| raised);
            if raised_meanwhile {
                raise(Some(app), vid, vq, stats);
            }
            if taken == Some(true) {
                if stats {
                    vq.datapath_mut().stats.guest_notifications_offloaded += 1;
                }
                return;
            }
            vq.datapath_mut().irq_pending = false;
        }
        signal(app.as_deref(), vid, vq, stats);
    }

    /// The library's own interrupt: the call eventfd, then `guest_notified`.
    fn signal(app: Option<&dyn DeviceEvents>, vid: i32, vq: &mut VqState, stats: bool) {
        if notify::signal(vq) != Some(true) {
            if stats {
                vq.datapath_mut().stats.guest_notifications_error += 1;
            }
            return;
        }
        if stats {
            vq.datapath_mut().stats.guest_notifications += 1;
        }
        if let Some(app) = app {
            app.guest_notified(vid);
        }
    }

    /// An interrupt the application raises: no longer pending, then signalled.
    fn raise(app: Option<&dyn DeviceEvents>, vid: i32, vq: &mut VqState, stats: bool) {
        vq.datapath_mut().irq_pending = false;
        signal(app, vid, vq, stats);
    }

    /// `rte_vhost_notify_guest`: raises the interrupt the application took.
    pub fn notify_guest_now(dev: &Device, qid: u16) {
        let vid = dev.vid();
        let inside_offer = OFFERING.with(|o| match o.get() {
            Some((v, q, _)) if v == vid && q == qid => {
                o.set(Some((v, q, true)));
                true
            }
            _ => false,
        });
        if inside_offer {
            return;
        }
        let Some(vq) = dev.vq(qid) else { return };
        let mut s = vq.lock();
        if !s.rings_ok() {
            return;
        }
        let stats = dev.socket_flags() & flags::NET_STATS_ENABLE != 0;
        raise(application(vid).as_deref(), vid, &mut s, stats);
    }
}
