//! Typed request payloads. Each `parse` checks the exact size (and field
//! ranges that need no device state) and copies the fields out once.

use super::{read_u32, read_u64, ProtocolError, MAX_REGIONS};

fn exact<'a>(payload: &'a [u8], size: usize, what: &'static str) -> Result<&'a [u8], ProtocolError> {
    if payload.len() == size {
        Ok(payload)
    } else {
        Err(ProtocolError::BadSize { request: what, expected: size, got: payload.len() })
    }
}

/// `struct vhost_vring_state { unsigned int index; unsigned int num; }`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct VringState {
    pub index: u32,
    pub num: u32,
}

impl VringState {
    pub const SIZE: usize = 8;
    pub fn parse(payload: &[u8]) -> Result<VringState, ProtocolError> {
        let p = exact(payload, Self::SIZE, "vring state")?;
        Ok(VringState { index: read_u32(p, 0), num: read_u32(p, 4) })
    }
    pub fn to_bytes(self) -> [u8; 8] {
        let mut out = [0u8; 8];
        out[..4].copy_from_slice(&self.index.to_ne_bytes());
        out[4..].copy_from_slice(&self.num.to_ne_bytes());
        out
    }
}

/// `struct vhost_vring_addr`: ring addresses in the front-end's address space
/// (or IOVAs with VIRTIO_F_IOMMU_PLATFORM).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct VringAddr {
    pub index: u32,
    pub flags: u32,
    pub desc_user_addr: u64,
    pub used_user_addr: u64,
    pub avail_user_addr: u64,
    pub log_guest_addr: u64,
}

/// `VHOST_VRING_F_LOG`: log used-ring writes at `log_guest_addr`.
pub const VRING_F_LOG: u32 = 1 << 0;

impl VringAddr {
    pub const SIZE: usize = 40;
    pub fn parse(payload: &[u8]) -> Result<VringAddr, ProtocolError> {
        let p = exact(payload, Self::SIZE, "vring address")?;
        Ok(VringAddr {
            index: read_u32(p, 0),
            flags: read_u32(p, 4),
            desc_user_addr: read_u64(p, 8),
            used_user_addr: read_u64(p, 16),
            avail_user_addr: read_u64(p, 24),
            log_guest_addr: read_u64(p, 32),
        })
    }
}

/// One region of SET_MEM_TABLE (`VhostUserMemoryRegion`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MemoryRegionDesc {
    pub guest_phys_addr: u64,
    pub memory_size: u64,
    pub userspace_addr: u64,
    pub mmap_offset: u64,
}

impl MemoryRegionDesc {
    pub const SIZE: usize = 32;

    /// The region must be non-empty and no range may wrap around.
    pub fn validate(&self) -> Result<(), ProtocolError> {
        let size = self.memory_size;
        if size == 0 {
            return Err(ProtocolError::BadField("memory region size 0"));
        }
        let wraps = |base: u64| base.checked_add(size).is_none();
        if wraps(self.guest_phys_addr) || wraps(self.userspace_addr) || wraps(self.mmap_offset) {
            return Err(ProtocolError::BadField("memory region range (wraps around)"));
        }
        Ok(())
    }
}

/// SET_MEM_TABLE payload: `{nregions, padding, regions[nregions]}`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MemoryTable {
    pub regions: Vec<MemoryRegionDesc>,
}

impl MemoryTable {
    pub fn parse(payload: &[u8]) -> Result<MemoryTable, ProtocolError> {
        if payload.len() < 8 {
            return Err(ProtocolError::BadSize { request: "memory table", expected: 8, got: payload.len() });
        }
        let n = read_u32(payload, 0) as usize;
        if n == 0 || n > MAX_REGIONS {
            return Err(ProtocolError::BadField("number of memory regions"));
        }
        let p = exact(payload, 8 + n * MemoryRegionDesc::SIZE, "memory table")?;
        let mut regions = Vec::with_capacity(n);
        for i in 0..n {
            let at = 8 + i * MemoryRegionDesc::SIZE;
            let r = MemoryRegionDesc {
                guest_phys_addr: read_u64(p, at),
                memory_size: read_u64(p, at + 8),
                userspace_addr: read_u64(p, at + 16),
                mmap_offset: read_u64(p, at + 24),
            };
            r.validate()?;
            regions.push(r);
        }
        // No two regions may overlap in guest-physical or front-end space.
        for (i, a) in regions.iter().enumerate() {
            for b in &regions[i + 1..] {
                let overlap = |x: u64, y: u64| x < y + b.memory_size && y < x + a.memory_size;
                if overlap(a.guest_phys_addr, b.guest_phys_addr) {
                    return Err(ProtocolError::BadField("memory regions overlap in guest-physical space"));
                }
                if overlap(a.userspace_addr, b.userspace_addr) {
                    return Err(ProtocolError::BadField("memory regions overlap in front-end address space"));
                }
            }
        }
        Ok(MemoryTable { regions })
    }

    /// Serialises the table (used for the postcopy reply carrying our own
    /// mapping addresses).
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(8 + self.regions.len() * MemoryRegionDesc::SIZE);
        out.extend_from_slice(&(self.regions.len() as u32).to_ne_bytes());
        out.extend_from_slice(&0u32.to_ne_bytes());
        for r in &self.regions {
            for v in [r.guest_phys_addr, r.memory_size, r.userspace_addr, r.mmap_offset] {
                out.extend_from_slice(&v.to_ne_bytes());
            }
        }
        out
    }
}

/// SET_LOG_BASE payload (`VhostUserLog`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LogArea {
    pub mmap_size: u64,
    pub mmap_offset: u64,
}

impl LogArea {
    pub const SIZE: usize = 16;
    pub fn parse(payload: &[u8]) -> Result<LogArea, ProtocolError> {
        let p = exact(payload, Self::SIZE, "log area")?;
        let area = LogArea { mmap_size: read_u64(p, 0), mmap_offset: read_u64(p, 8) };
        if area.mmap_size == 0 || area.mmap_offset.checked_add(area.mmap_size).is_none() {
            return Err(ProtocolError::BadField("log area size/offset"));
        }
        Ok(area)
    }
}

/// `struct vhost_iotlb_msg` (32 bytes with tail padding).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Iotlb {
    pub iova: u64,
    pub size: u64,
    pub uaddr: u64,
    pub perm: u8,
    pub kind: u8,
}

impl Iotlb {
    pub const SIZE: usize = 32;
    /// `kind`: the back-end lacks a mapping (back-end → front-end).
    pub const MISS: u8 = 1;
    /// `kind`: a new mapping (front-end → back-end).
    pub const UPDATE: u8 = 2;
    /// `kind`: a range is no longer mapped (front-end → back-end).
    pub const INVALIDATE: u8 = 3;

    pub fn to_bytes(self) -> [u8; Self::SIZE] {
        let mut b = [0u8; Self::SIZE];
        b[0..8].copy_from_slice(&self.iova.to_ne_bytes());
        b[8..16].copy_from_slice(&self.size.to_ne_bytes());
        b[16..24].copy_from_slice(&self.uaddr.to_ne_bytes());
        b[24] = self.perm;
        b[25] = self.kind;
        b
    }

    pub fn parse(payload: &[u8]) -> Result<Iotlb, ProtocolError> {
        let p = exact(payload, Self::SIZE, "IOTLB message")?;
        Ok(Iotlb {
            iova: read_u64(p, 0),
            size: read_u64(p, 8),
            uaddr: read_u64(p, 16),
            perm: p[24],
            kind: p[25],
        })
    }
}

/// Largest device-config access DPDK serves (`VHOST_USER_MAX_CONFIG_SIZE`).
pub const MAX_CONFIG_SIZE: usize = 256;
pub const CONFIG_HDR_SIZE: usize = 12;

/// GET/SET_CONFIG payload: `{offset, size, flags, region[size]}`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ConfigAccess {
    pub offset: u32,
    pub size: u32,
    pub flags: u32,
    pub region: Vec<u8>,
}

impl ConfigAccess {
    pub fn parse(payload: &[u8]) -> Result<ConfigAccess, ProtocolError> {
        if payload.len() < CONFIG_HDR_SIZE {
            return Err(ProtocolError::BadSize {
                request: "device config",
                expected: CONFIG_HDR_SIZE,
                got: payload.len(),
            });
        }
        let size = read_u32(payload, 4) as usize;
        if size == 0 || size > MAX_CONFIG_SIZE {
            return Err(ProtocolError::BadField("device config size"));
        }
        let p = exact(payload, CONFIG_HDR_SIZE + size, "device config")?;
        Ok(ConfigAccess {
            offset: read_u32(p, 0),
            size: size as u32,
            flags: read_u32(p, 8),
            region: p[CONFIG_HDR_SIZE..].to_vec(),
        })
    }
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(CONFIG_HDR_SIZE + self.region.len());
        out.extend_from_slice(&self.offset.to_ne_bytes());
        out.extend_from_slice(&self.size.to_ne_bytes());
        out.extend_from_slice(&self.flags.to_ne_bytes());
        out.extend_from_slice(&self.region);
        out
    }
}

/// GET/SET_INFLIGHT_FD payload (`VhostUserInflight`, 24 bytes with padding).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct InflightArea {
    pub mmap_size: u64,
    pub mmap_offset: u64,
    pub num_queues: u16,
    pub queue_size: u16,
}

impl InflightArea {
    pub const SIZE: usize = 24;
    pub fn parse(payload: &[u8]) -> Result<InflightArea, ProtocolError> {
        let p = exact(payload, Self::SIZE, "inflight area")?;
        Ok(InflightArea {
            mmap_size: read_u64(p, 0),
            mmap_offset: read_u64(p, 8),
            num_queues: u16::from_ne_bytes([p[16], p[17]]),
            queue_size: u16::from_ne_bytes([p[18], p[19]]),
        })
    }
    pub fn to_bytes(self) -> [u8; Self::SIZE] {
        let mut out = [0u8; Self::SIZE];
        out[0..8].copy_from_slice(&self.mmap_size.to_ne_bytes());
        out[8..16].copy_from_slice(&self.mmap_offset.to_ne_bytes());
        out[16..18].copy_from_slice(&self.num_queues.to_ne_bytes());
        out[18..20].copy_from_slice(&self.queue_size.to_ne_bytes());
        out
    }
}

/// `VhostUserVringArea` (host notifier message on the back-end channel).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct VringArea {
    pub index_and_flags: u64,
    pub size: u64,
    pub offset: u64,
}

impl VringArea {
    pub fn to_bytes(self) -> [u8; 24] {
        let mut out = [0u8; 24];
        out[0..8].copy_from_slice(&self.index_and_flags.to_ne_bytes());
        out[8..16].copy_from_slice(&self.size.to_ne_bytes());
        out[16..24].copy_from_slice(&self.offset.to_ne_bytes());
        out
    }
}
