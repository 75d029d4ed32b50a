//! A device's lifecycle around its messages: when the application is told
//! the device runs or stops, when an attached vDPA device is configured or
//! closed (DPDK's checks after every message, `after_message`). The
//! connection makes the call that is due with no lock held and says
//! whether it succeeded.

use super::events::Event;
use super::{status, Device};
use crate::protocol::features::ProtocolFeature;
use crate::protocol::Request;

/// `new_device` is due (`Device::start_due`); report its result with
/// `Device::started`.
#[derive(Debug)]
#[must_use]
pub(super) struct Start(());

/// The vDPA driver's `dev_conf` is due (`Device::vdpa_conf_due`); report
/// its result with `Device::vdpa_conf_done`.
#[derive(Debug)]
#[must_use]
pub(super) struct VdpaConf(());

/// A call due after a message, made by the connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Due {
    /// The application's `new_device`.
    NewDevice,
    /// The vDPA driver's `dev_conf`.
    VdpaConf,
}

/// After every message (`request` with `payload` as the hooks left them,
/// `None` for a request the library does not know): starts what is due
/// through `start`, which makes the call and says whether it succeeded.
/// A vDPA blk device (`vdpa_blk`) is configured only once its last ring
/// has its call fd.
pub fn after_message(
    dev: &Device,
    request: Option<Request>,
    payload: &[u8],
    vdpa_blk: bool,
    start: &mut dyn FnMut(Due) -> bool,
) {
    if let Some(due) = dev.start_due() {
        let accepted = start(Due::NewDevice);
        dev.started(due, accepted);
    }
    let last_call_for_blk = request == Some(Request::SetVringCall)
        && request.and_then(|r| r.ring_index(payload)).is_some_and(|idx| idx + 1 == dev.nr_vring());
    if let Some(due) = dev.vdpa_conf_due(vdpa_blk, last_call_for_blk) {
        let ok = start(Due::VdpaConf);
        dev.vdpa_conf_done(due, ok);
    }
}

impl Device {
    /// DPDK's `vhost_destroy_device_notify`: a device the application was
    /// told runs stops (`Event::Stop`).
    pub fn stop(&self) -> Option<Event> {
        let mut st = self.state.lock();
        st.ready = false;
        std::mem::replace(&mut st.running, false).then_some(Event::Stop)
    }

    /// A configured vDPA device must be closed before the memory changes.
    pub(super) fn unconfigure_vdpa(&self) -> Option<Event> {
        let mut st = self.state.lock();
        let configured = st.vdpa.is_some() && st.vdpa_configured;
        st.vdpa_configured = false;
        configured.then_some(Event::VdpaClose)
    }

    pub fn vdpa_configured(&self) -> bool {
        self.state.lock().vdpa_configured
    }

    /// After a message: `new_device` is due if the device became ready and
    /// is not running yet.
    pub(super) fn start_due(&self) -> Option<Start> {
        if self.state.lock().running || !self.virtio_is_ready() {
            return None;
        }
        self.state.lock().ready = true;
        Some(Start(()))
    }

    /// `new_device` returned: `accepted` unless it refused the device.
    pub(super) fn started(&self, _: Start, accepted: bool) {
        self.state.lock().running = accepted;
    }

    /// After a message: the vDPA driver's `dev_conf` is due once the rings
    /// are ready (a blk device only once its last ring has its call fd:
    /// `last_call_for_blk`).
    pub(super) fn vdpa_conf_due(&self, is_blk: bool, last_call_for_blk: bool) -> Option<VdpaConf> {
        let (attached, configured) = {
            let st = self.state.lock();
            (st.vdpa.is_some(), st.vdpa_configured)
        };
        if !attached || configured || !self.virtio_is_ready() || (is_blk && !last_call_for_blk) {
            return None;
        }
        Some(VdpaConf(()))
    }

    pub(super) fn vdpa_conf_done(&self, _: VdpaConf, ok: bool) {
        self.state.lock().vdpa_configured = ok;
    }

    /// DPDK's `virtio_is_ready`: the first queue pair (or every ring for a
    /// non-net device) ready, and DRIVER_OK when STATUS was negotiated
    /// (not for vhost-crypto, whose QEMU front-end never sends it).
    fn virtio_is_ready(&self) -> bool {
        let (builtin, status_negotiated, driver_ok) = {
            let st = self.state.lock();
            if st.ready {
                return true;
            }
            let status_negotiated = st.protocol_features.has(ProtocolFeature::STATUS) && !st.crypto;
            (st.builtin_net, status_negotiated, st.status & status::DRIVER_OK != 0)
        };
        let nr = self.nr_vring();
        let needed = if builtin { 2 } else { nr };
        if nr == 0 || nr < needed {
            return false;
        }
        if !(0..needed as u16).all(|i| self.vq(i).is_some_and(|vq| vq.lock().is_ready())) {
            return false;
        }
        !status_negotiated || driver_ok
    }
}
