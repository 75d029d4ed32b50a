//! Parser tests: exact sizes, fd rules, field ranges, and a property test
//! feeding arbitrary headers, payloads and fd counts to every parser (none may
//! panic; whatever is accepted must satisfy the rules).

use proptest::prelude::*;

use super::*;

fn region(gpa: u64, size: u64, uaddr: u64, off: u64) -> Vec<u8> {
    [gpa, size, uaddr, off].iter().flat_map(|v| v.to_ne_bytes()).collect()
}

fn table(regions: &[Vec<u8>]) -> Vec<u8> {
    let mut p = (regions.len() as u32).to_ne_bytes().to_vec();
    p.extend_from_slice(&[0; 4]);
    for r in regions {
        p.extend_from_slice(r);
    }
    p
}

#[test]
fn header_round_trip_and_checks() {
    let h = Header { request: 5, flags: VERSION | FLAG_NEED_REPLY, size: 40 };
    assert_eq!(Header::parse(&h.to_bytes()), h);
    assert!(h.validate().is_ok());
    assert!(h.need_reply());
    assert_eq!(Header { flags: 2, ..h }.validate(), Err(ProtocolError::BadVersion(2)));
    assert_eq!(Header { flags: VERSION | 0x10, ..h }.validate(), Err(ProtocolError::ReservedFlags(0x11)));
    let big = MAX_PAYLOAD as u32 + 1;
    assert_eq!(Header { size: big, ..h }.validate(), Err(ProtocolError::PayloadTooLarge(big)));
}

#[test]
fn names_match_dpdk() {
    assert_eq!(Request::from_u32(5).map(Request::name), Some("VHOST_USER_SET_MEM_TABLE"));
    assert_eq!(Request::from_u32(21).map(Request::name), Some("VHOST_USER_SET_SLAVE_REQ_FD"));
    assert_eq!(Request::from_u32(40).map(Request::name), Some("VHOST_USER_GET_STATUS"));
    for unknown in [0, 23, 26, 27, 33, 34, 35, 36, 37, 38, 41, 42, 43, 44, 1000] {
        assert_eq!(Request::from_u32(unknown), None, "id {unknown}");
    }
}

#[test]
fn exact_sizes_are_enforced() {
    assert!(validate(Request::SetFeatures, &[0; 8], 0).is_ok());
    assert!(matches!(validate(Request::SetFeatures, &[0; 4], 0), Err(ProtocolError::BadSize { .. })));
    assert!(matches!(validate(Request::SetFeatures, &[0; 16], 0), Err(ProtocolError::BadSize { .. })));
    assert!(validate(Request::SetVringAddr, &[0; 40], 0).is_ok());
    assert!(validate(Request::SetVringAddr, &[0; 39], 0).is_err());
    assert!(validate(Request::SetVringNum, &[0; 8], 0).is_ok());
    assert!(validate(Request::SetVringNum, &[0; 12], 0).is_err());
    // Payload-less requests tolerate an ignored u64, nothing else.
    assert!(validate(Request::SetOwner, &[], 0).is_ok());
    assert!(validate(Request::SetOwner, &[0; 8], 0).is_ok());
    assert!(validate(Request::SetOwner, &[0; 4], 0).is_err());
    assert!(validate(Request::GetFeatures, &[0; 8], 0).is_ok());
}

#[test]
fn fd_rules_are_enforced() {
    assert!(validate(Request::SetFeatures, &[0; 8], 1).is_err());
    let kick = 1u64.to_ne_bytes();
    assert!(validate(Request::SetVringKick, &kick, 1).is_ok());
    assert!(validate(Request::SetVringKick, &kick, 0).is_err());
    assert!(validate(Request::SetVringKick, &kick, 2).is_err());
    let nofd = (1u64 | VRING_NOFD_MASK).to_ne_bytes();
    assert!(validate(Request::SetVringCall, &nofd, 0).is_ok());
    assert!(validate(Request::SetVringCall, &nofd, 1).is_err());
    let t = table(&[region(0, 4096, 0x1000, 0), region(0x10000, 4096, 0x20000, 0)]);
    assert!(validate(Request::SetMemTable, &t, 2).is_ok());
    assert!(validate(Request::SetMemTable, &t, 1).is_err());
    assert!(validate(Request::SetMemTable, &t, 3).is_err());
    assert!(validate(Request::SetSlaveReqFd, &[], 1).is_ok());
    assert!(validate(Request::SetSlaveReqFd, &[], 0).is_err());
}

#[test]
fn memory_table_validation() {
    let ok = table(&[region(0, 0x1000, 0x7000_0000, 0), region(0x1000, 0x1000, 0x7000_1000, 0x1000)]);
    let t = MemoryTable::parse(&ok).unwrap();
    assert_eq!(t.regions.len(), 2);
    assert_eq!(t.to_bytes(), ok);
    // Zero regions, too many regions, size mismatch.
    assert!(MemoryTable::parse(&table(&[])).is_err());
    let nine: Vec<_> = (0..9).map(|i| region(i * 0x1000, 0x1000, i * 0x1000, 0)).collect();
    assert!(MemoryTable::parse(&table(&nine)).is_err());
    assert!(MemoryTable::parse(&ok[..ok.len() - 1]).is_err());
    // Zero-size, wrapping and overlapping regions.
    assert!(MemoryTable::parse(&table(&[region(0, 0, 0, 0)])).is_err());
    assert!(MemoryTable::parse(&table(&[region(u64::MAX - 10, 0x1000, 0, 0)])).is_err());
    assert!(MemoryTable::parse(&table(&[region(0, 0x1000, 0, u64::MAX)])).is_err());
    let gpa_overlap = table(&[region(0, 0x2000, 0x10000, 0), region(0x1000, 0x1000, 0x20000, 0)]);
    assert!(MemoryTable::parse(&gpa_overlap).is_err());
    let va_overlap = table(&[region(0, 0x1000, 0x10000, 0), region(0x8000, 0x1000, 0x10800, 0)]);
    assert!(MemoryTable::parse(&va_overlap).is_err());
}

#[test]
fn config_and_log_validation() {
    let mut cfg = vec![0u8; CONFIG_HDR_SIZE + 8];
    cfg[4..8].copy_from_slice(&8u32.to_ne_bytes());
    assert_eq!(ConfigAccess::parse(&cfg).unwrap().region.len(), 8);
    cfg[4..8].copy_from_slice(&9u32.to_ne_bytes());
    assert!(ConfigAccess::parse(&cfg).is_err());
    cfg[4..8].copy_from_slice(&((MAX_CONFIG_SIZE + 1) as u32).to_ne_bytes());
    assert!(ConfigAccess::parse(&cfg).is_err());
    let mut log = [0u8; 16];
    assert!(LogArea::parse(&log).is_err(), "zero-size log");
    log[..8].copy_from_slice(&4096u64.to_ne_bytes());
    log[8..].copy_from_slice(&u64::MAX.to_ne_bytes());
    assert!(LogArea::parse(&log).is_err(), "offset + size wraps");
}

#[test]
fn vring_state_round_trip() {
    let s = VringState { index: 3, num: 0x8005 };
    assert_eq!(VringState::parse(&s.to_bytes()).unwrap(), s);
}

/// The default offers keep DPDK 22.11's values (`VIRTIO_NET_SUPPORTED_FEATURES`,
/// `VHOST_USER_PROTOCOL_FEATURES`).
#[test]
fn default_offers_are_dpdks() {
    use features::{Feature, Features, ProtocolFeatures};
    assert_eq!(Features::VIRTIO_NET_SUPPORTED.bits(), 0xf_7c66_ffcb);
    assert_eq!(ProtocolFeatures::DEFAULT.bits(), 0x1_0dbf);
    let offered = Features::VIRTIO_NET_SUPPORTED;
    assert!(offered.has(Feature::RING_PACKED) && !offered.has(Feature::NOTIFY_ON_EMPTY));
    let packed = Features::of(&[Feature::RING_PACKED]);
    assert!(offered.contains(packed) && !offered.without(packed).intersects(packed));
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 4096, ..ProptestConfig::default() })]

    /// No parser panics on any input; whatever `validate` accepts has the
    /// exact size and fd count its request requires.
    #[test]
    fn parsers_never_panic(req in 0u32..48, payload in proptest::collection::vec(any::<u8>(), 0..700), nfds in 0usize..12) {
        let _ = MemoryTable::parse(&payload);
        let _ = VringAddr::parse(&payload);
        let _ = VringState::parse(&payload);
        let _ = LogArea::parse(&payload);
        let _ = Iotlb::parse(&payload);
        let _ = ConfigAccess::parse(&payload);
        let _ = InflightArea::parse(&payload);
        if let Some(r) = Request::from_u32(req) {
            if validate(r, &payload, nfds).is_ok() {
                match r.rule().payload {
                    PayloadRule::Exact(size) => prop_assert_eq!(payload.len(), size),
                    PayloadRule::Ignored => prop_assert!(payload.is_empty() || payload.len() == 8),
                    PayloadRule::Variable => {}
                }
                if r.rule().fds == FdRule::None {
                    prop_assert_eq!(nfds, 0);
                }
                if r == Request::SetMemTable {
                    let t = MemoryTable::parse(&payload);
                    prop_assert!(t.is_err() || t.unwrap().regions.len() == nfds);
                }
            }
        }
    }

    /// Accepted memory tables never contain overlapping or wrapping regions.
    #[test]
    fn accepted_tables_are_sane(regions in proptest::collection::vec((0u64..1 << 20, 1u64..1 << 16, 0u64..1 << 20), 1..9)) {
        let raw: Vec<_> = regions.iter().map(|&(g, s, u)| region(g << 12, s << 12, u << 12, 0)).collect();
        if let Ok(t) = MemoryTable::parse(&table(&raw)) {
            for (i, a) in t.regions.iter().enumerate() {
                for b in &t.regions[i + 1..] {
                    prop_assert!(a.guest_phys_addr + a.memory_size <= b.guest_phys_addr
                        || b.guest_phys_addr + b.memory_size <= a.guest_phys_addr);
                }
            }
        }
    }
}
