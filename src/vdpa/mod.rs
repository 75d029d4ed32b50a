//! The vDPA device registry (`rte_vdpa_register_device` & co.) and the
//! `vdpa` device class through which EAL iterates them (`class=vdpa`).

use parking_lot::Mutex;

#[allow(unsafe_code)]
pub mod driver;

use crate::abi::{rte_device, rte_vdpa_dev_ops};
use crate::device::{Device, VdpaId};
use crate::vlog;
use driver::{MediatedRing, VdpaDevice};

static DEVICES: Mutex<Vec<VdpaDevice>> = Mutex::new(Vec::new());

/// Registers a driver's device; `None` if mandatory ops are missing, the
/// name is taken, or the driver cannot tell its type.
///
/// # Safety
/// `rte_dev` and `ops` must stay valid until the device is unregistered.
#[allow(unsafe_code)]
pub unsafe fn register(rte_dev: *mut rte_device, ops: *mut rte_vdpa_dev_ops) -> Option<VdpaDevice> {
    if rte_dev.is_null() || ops.is_null() {
        return None;
    }
    let mut devices = DEVICES.lock();
    // SAFETY: forwarded caller contract.
    let dev = match unsafe { VdpaDevice::alloc(rte_dev, ops) } {
        Ok(d) => d,
        Err(e) => {
            vlog!(Config, Err, "vdpa", "{e}");
            return None;
        }
    };
    let name = dev.name();
    if devices.iter().any(|d| d.name() == name) {
        // SAFETY: never published.
        unsafe { dev.free() };
        return None;
    }
    devices.push(dev);
    Some(dev)
}

/// Unregisters and frees a device; false if it was not registered.
#[allow(unsafe_code)]
pub fn unregister(dev: VdpaDevice) -> bool {
    let mut devices = DEVICES.lock();
    let Some(i) = devices.iter().position(|d| *d == dev) else { return false };
    devices.remove(i);
    // SAFETY: removed from the registry; per DPDK's contract the driver does
    // not use the object after unregistering it.
    unsafe { dev.free() };
    true
}

pub fn find_by_name(name: &str) -> Option<VdpaDevice> {
    DEVICES.lock().iter().copied().find(|d| d.name() == name)
}

/// Whether `dev` is currently registered.
pub fn is_registered(dev: VdpaDevice) -> bool {
    DEVICES.lock().contains(&dev)
}

/// The registered device after `start` (or the first) whose EAL device is
/// `rte_dev`: the class iterator.
pub fn find_next(start: Option<VdpaDevice>, rte_dev: *mut rte_device) -> Option<VdpaDevice> {
    let devices = DEVICES.lock();
    let from = match start {
        Some(s) => devices.iter().position(|d| *d == s)? + 1,
        None => 0,
    };
    devices[from..].iter().copied().find(|d| d.rte_device() == rte_dev)
}

/// `rte_vhost_host_notifier_ctrl`: hands the front-end (or takes back) the
/// vDPA device's doorbell areas of ring `qid` (all rings for `u16::MAX`)
/// through the back-end channel.
pub fn host_notifier_ctrl(dev: &Device, qid: u16, enable: bool) -> i32 {
    use crate::protocol::features::{Feature, ProtocolFeature as Pf, ProtocolFeatures};
    let Some(v) = dev.vdpa().and_then(find_by_id) else { return -libc::ENODEV };
    let needed_pf = ProtocolFeatures::of(&[Pf::SLAVE_REQ, Pf::SLAVE_SEND_FD, Pf::HOST_NOTIFIER]);
    if !dev.has_feature(Feature::VERSION_1)
        || !dev.has_feature(Feature::PROTOCOL_FEATURES)
        || !dev.protocol_features().contains(needed_pf)
        || !v.has_notify_area()
    {
        return -libc::ENOTSUP;
    }
    let Some(chan) = dev.backend() else { return -libc::ENOTSUP };
    let nr = dev.nr_vring() as u16;
    let queues = if qid == u16::MAX {
        0..nr
    } else if qid < nr {
        qid..qid + 1
    } else {
        return -libc::EINVAL;
    };
    let Some(vfio_fd) = v.get_vfio_device_fd(dev.vid()).filter(|fd| *fd >= 0) else {
        return -libc::ENOTSUP;
    };
    let notifier = |q: u16, fd: Option<i32>, offset: u64, size: u64| {
        use crate::protocol::{backend_request, VringArea, VRING_IDX_MASK, VRING_NOFD_MASK};
        let mut index = u64::from(q) & VRING_IDX_MASK;
        if fd.is_none() {
            index |= VRING_NOFD_MASK;
        }
        let area = VringArea { index_and_flags: index, size, offset };
        let fds: Vec<i32> = fd.into_iter().collect();
        chan.request(backend_request::VRING_HOST_NOTIFIER_MSG, &area.to_bytes(), &fds, true)
    };
    let mut rc = 0;
    if enable {
        for q in queues.clone() {
            let Some((offset, size)) = v.get_notify_area(dev.vid(), q) else {
                rc = -libc::ENOTSUP;
                break;
            };
            if notifier(q, Some(vfio_fd), offset, size).is_err() {
                rc = -libc::EFAULT;
                break;
            }
        }
        if rc == 0 {
            return 0;
        }
    }
    for q in queues {
        let _ = notifier(q, None, 0, 0);
    }
    rc
}

/// The registered device with identity `id`.
pub fn find_by_id(id: VdpaId) -> Option<VdpaDevice> {
    DEVICES.lock().iter().copied().find(|d| d.as_ptr() as usize == id.0)
}

/// `rte_vdpa_relay_vring_used`: copies the used entries a vDPA device wrote
/// in its mediated ring to the guest's split ring `qid` and publishes them
/// (used_event of the mediated ring follows with EVENT_IDX); while
/// migration logging is on, marks the buffers the device could write
/// dirty. Returns the number of entries, or -1. Stricter than 22.11, which
/// trusts the guest's used index and the mediated ring's size: a mediated
/// ring of another size, or more than a ring of entries ahead, is refused.
pub fn relay_vring_used(dev: &Device, qid: u16, m: &MediatedRing) -> i32 {
    use crate::guest::iotlb::PERM_WO;
    use crate::guest::{IovaSpace, PhysicalSpace};
    use crate::protocol::features::Feature;

    let Some(vq) = dev.vq(qid) else { return -1 };
    let s = vq.lock();
    let Some(ring) = s.ring_mem().filter(|r| !r.is_packed()) else { return -1 };
    let size = ring.size();
    if m.size() != size {
        vlog!(
            Config,
            Err,
            dev.ifname(),
            "relay: mediated ring of {} entries for vring {qid} of {size}",
            m.size()
        );
        return -1;
    }
    let (first, last) = (ring.split_used_idx(), m.used_idx());
    let n = last.wrapping_sub(first);
    if n > size {
        vlog!(
            Config,
            Err,
            dev.ifname(),
            "relay: mediated used index {last} more than a ring ahead of {first}"
        );
        return -1;
    }
    let log = s.active_log();
    for k in 0..n {
        let slot = first.wrapping_add(k);
        let (id, len) = m.used_elem(slot);
        ring.split_write_used(slot, id, len);
        let Some(head) = u16::try_from(id).ok().filter(|h| *h < size) else { return -1 };
        let Some(log) = &log else { continue };
        let logged = match s.iotlb() {
            None => log_written(&PhysicalSpace(s.mem()), &ring, head, log),
            Some(view) => log_written(&IovaSpace::new(s.mem(), view, PERM_WO), &ring, head, log),
        };
        if logged.is_err() {
            return -1;
        }
    }
    ring.split_set_used_idx(last);
    if s.has_feature(Feature::RING_EVENT_IDX.number()) {
        m.set_used_event(last);
    }
    i32::from(n)
}

/// Marks dirty the buffers of the chain at `head` the device may have
/// written (what their addresses map to; parts not mapped are skipped).
fn log_written<'m>(
    space: &impl crate::guest::AddressSpace<'m>,
    ring: &crate::virtqueue::ring::RingMem<'_>,
    head: u16,
    log: &crate::guest::dirty_log::DirtyLog,
) -> Result<(), crate::virtqueue::chain::ChainError> {
    use crate::virtqueue::chain::F_WRITE;
    let mem = space.mem();
    crate::virtqueue::split::visit_chain(ring, space, head, |d| {
        let mut done = 0;
        while d.flags & F_WRITE != 0 && done < d.len {
            let Ok(seg) = space.slice(d.addr.wrapping_add(u64::from(done)), d.len - done) else { break };
            if let Some(gpa) = mem.hva_to_gpa(seg.hva(), u64::from(seg.len())) {
                log.mark(gpa, u64::from(seg.len()));
            }
            done += seg.len();
        }
        Ok(())
    })
}
