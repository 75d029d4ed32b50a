//! A symmetric request of the virtio-crypto data queue (virtio 1.2 section
//! 5.9.7.2), checked against its session and the buffers it came in. Pure:
//! the guest's bytes are read by `queue`.
//!
//! A request's chain is its device-readable part (the 72-byte
//! `virtio_crypto_op_data_req`, the IV, the source data) followed by its
//! device-writable part (the destination data, for chained requests the
//! MAC, and last of all the 1-byte status). The status is the *last* byte
//! of the writable part, however many descriptors come before it.

use super::session::status;
#[cfg(feature = "abi-25-11")]
use crate::dpdk::crypto::RsaOp;

/// `sizeof(struct virtio_crypto_op_data_req)`.
pub const HEADER_LEN: usize = 72;
/// 22.11's `VHOST_CRYPTO_MAX_DATA_SIZE`: most source or destination bytes.
pub const MAX_DATA: u32 = 4096;
/// 22.11's `VHOST_CRYPTO_MAX_IV_LEN`.
const MAX_IV: u32 = 32;

const CIPHER_ENCRYPT: u32 = 0;
const CIPHER_DECRYPT: u32 = 1;
const SYM_OP_NONE: u32 = 0;
const SYM_OP_CIPHER: u32 = 1;
const SYM_OP_CHAINING: u32 = 2;
/// `VIRTIO_CRYPTO_AKCIPHER_ENCRYPT` .. `_VERIFY`: service 4, ops 0 to 3.
#[cfg(feature = "abi-25-11")]
const AKCIPHER_OPS: [(u32, RsaOp); 4] =
    [(0x400, RsaOp::Encrypt), (0x401, RsaOp::Decrypt), (0x402, RsaOp::Sign), (0x403, RsaOp::Verify)];
#[cfg(feature = "abi-25-11")]
const AKCIPHER_RSA: u32 = 1;
/// Most bytes of an RSA request's source or destination: a private key in
/// the session's 1024-byte buffer has a shorter modulus.
#[cfg(feature = "abi-25-11")]
pub const MAX_RSA_DATA: u32 = 1024;

/// What a request's session says about it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SessionShape {
    pub chained: bool,
    pub iv_len: u32,
    pub digest_len: u32,
}

/// The header fields a request is routed by.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Header {
    pub opcode: u32,
    pub session_id: u64,
    raw: [u8; HEADER_LEN],
}

fn u32_at(h: &[u8; HEADER_LEN], off: usize) -> u32 {
    u32::from_le_bytes(h[off..off + 4].try_into().expect("4 bytes"))
}

impl Header {
    pub fn new(raw: [u8; HEADER_LEN]) -> Header {
        Header {
            opcode: u32_at(&raw, 0),
            session_id: u64::from_le_bytes(raw[8..16].try_into().expect("8 bytes")),
            raw,
        }
    }

    /// Only symmetric cipher requests (encrypt/decrypt) exist for 22.11.
    pub fn is_cipher(&self) -> bool {
        matches!(self.opcode, CIPHER_ENCRYPT | CIPHER_DECRYPT)
    }

    /// The RSA operation of an akcipher request.
    #[cfg(feature = "abi-25-11")]
    pub fn akcipher_op(&self) -> Option<RsaOp> {
        AKCIPHER_OPS.iter().find(|(code, _)| *code == self.opcode).map(|&(_, op)| op)
    }

    fn para(&self, i: usize) -> u32 {
        u32_at(&self.raw, 24 + 4 * i)
    }

    fn op_type(&self) -> u32 {
        u32_at(&self.raw, 64)
    }
}

/// What to do with a request: where its parts are in the readable and the
/// writable streams, and what the cryptodev is to do.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Plan {
    pub iv_len: u32,
    pub src_len: u32,
    pub dst_len: u32,
    /// Cipher range in the source.
    pub cipher: (u32, u32),
    /// Chained: MAC range in the source, and the MAC's length (written after
    /// the destination data).
    pub auth: Option<(u32, u32)>,
    pub digest_len: u32,
    /// First destination byte written back (22.11: the cipher's offset for
    /// chained requests).
    pub out_from: u32,
}

impl Plan {
    /// Bytes of the destination written, MAC and status included (the used
    /// length, as 22.11 reports it).
    pub fn used_len(&self) -> u32 {
        self.dst_len + self.digest_len + 1
    }
}

/// Checks `h` against its session and the lengths of the readable and
/// writable parts; `Err` is the status to report.
pub fn plan(h: &Header, s: SessionShape, readable: u64, writable: u64) -> Result<Plan, u8> {
    let plan = match (h.op_type(), s.chained) {
        (SYM_OP_NONE, _) => return Err(status::NOTSUPP),
        (SYM_OP_CIPHER, false) => {
            let (iv_len, src_len, dst_len) = (h.para(0), h.para(1), h.para(2));
            if src_len > MAX_DATA || dst_len < src_len || dst_len > MAX_DATA {
                return Err(status::BADMSG);
            }
            Plan { iv_len, src_len, dst_len, cipher: (0, src_len), auth: None, digest_len: 0, out_from: 0 }
        }
        (SYM_OP_CHAINING, true) => {
            let [iv_len, src_len, dst_len, c_off, c_len, h_off, h_len, aad_len, digest_len] =
                std::array::from_fn(|i| h.para(i));
            if aad_len != 0 {
                return Err(status::NOTSUPP);
            }
            let within = |off: u32, len: u32| u64::from(off) + u64::from(len) <= u64::from(src_len);
            if src_len > MAX_DATA
                || dst_len < src_len
                || dst_len > MAX_DATA
                || !within(c_off, c_len)
                || !within(h_off, h_len)
                || digest_len != s.digest_len
            {
                return Err(status::BADMSG);
            }
            Plan {
                iv_len,
                src_len,
                dst_len,
                cipher: (c_off, c_len),
                auth: Some((h_off, h_len)),
                digest_len,
                out_from: c_off,
            }
        }
        // A request of another kind than its session.
        _ => return Err(status::BADMSG),
    };
    // 22.11 takes up to 32 bytes and leaves the rest of the session's IV
    // stale; only the session's length is meaningful.
    if plan.iv_len > MAX_IV || plan.iv_len != s.iv_len {
        return Err(status::BADMSG);
    }
    let needs_in = HEADER_LEN as u64 + u64::from(plan.iv_len) + u64::from(plan.src_len);
    if readable < needs_in || writable < u64::from(plan.used_len()) {
        return Err(status::BADMSG);
    }
    Ok(plan)
}

/// An RSA request: its operation and the lengths of its source and
/// destination (`virtio_crypto_akcipher_para`).
#[cfg(feature = "abi-25-11")]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RsaPlan {
    pub op: RsaOp,
    pub src_len: u32,
    pub dst_len: u32,
}

#[cfg(feature = "abi-25-11")]
impl RsaPlan {
    /// Bytes read after the header: the source, and for a verify the
    /// message (its destination, device-readable).
    pub fn input_len(&self) -> u32 {
        self.src_len + self.message_len()
    }

    /// A verify's message, which follows the signature.
    pub fn message_len(&self) -> u32 {
        if self.op == RsaOp::Verify {
            self.dst_len
        } else {
            0
        }
    }

    /// Room for the result in the writable part (a verify has none).
    pub fn output_room(&self) -> u32 {
        self.dst_len - self.message_len()
    }
}

/// Checks an akcipher request (`op`) against the lengths of its readable
/// and writable parts; `Err` is the status to report.
#[cfg(feature = "abi-25-11")]
pub fn rsa_plan(h: &Header, op: RsaOp, readable: u64, writable: u64) -> Result<RsaPlan, u8> {
    if u32_at(&h.raw, 4) != AKCIPHER_RSA {
        return Err(status::NOTSUPP);
    }
    let plan = RsaPlan { op, src_len: h.para(0), dst_len: h.para(1) };
    if plan.src_len > MAX_RSA_DATA || plan.dst_len > MAX_RSA_DATA {
        return Err(status::BADMSG);
    }
    let needs_in = HEADER_LEN as u64 + u64::from(plan.input_len());
    if readable < needs_in || writable < u64::from(plan.output_room()) + 1 {
        return Err(status::BADMSG);
    }
    Ok(plan)
}

#[cfg(test)]
mod tests {
    use super::*;

    const CBC: SessionShape = SessionShape { chained: false, iv_len: 16, digest_len: 0 };

    fn cipher_req(iv: u32, src: u32, dst: u32) -> Header {
        let mut raw = [0u8; HEADER_LEN];
        raw[8..16].copy_from_slice(&7u64.to_le_bytes());
        for (i, v) in [iv, src, dst].into_iter().enumerate() {
            raw[24 + 4 * i..28 + 4 * i].copy_from_slice(&v.to_le_bytes());
        }
        raw[64..68].copy_from_slice(&SYM_OP_CIPHER.to_le_bytes());
        Header::new(raw)
    }

    #[test]
    fn a_cipher_request_fits_its_buffers() {
        let h = cipher_req(16, 64, 64);
        assert!(h.is_cipher() && h.session_id == 7);
        let p = plan(&h, CBC, 72 + 16 + 64, 65).unwrap();
        assert_eq!((p.cipher, p.used_len()), ((0, 64), 65));
        // Longer buffers than needed are fine (the status is the last byte).
        assert!(plan(&h, CBC, 4000, 4000).is_ok());
    }

    #[test]
    fn every_length_is_checked() {
        let bad = [
            (cipher_req(16, 64, 64), 72 + 16 + 63, 65, "source beyond the readable part"),
            (cipher_req(16, 64, 64), 72 + 16 + 64, 64, "no room for the status"),
            (cipher_req(8, 64, 64), 1000, 1000, "IV of another length than the session's"),
            (cipher_req(16, 64, 32), 1000, 1000, "destination shorter than the source"),
            (cipher_req(16, 4097, 4097), 9000, 9000, "more than 4096 bytes"),
            (cipher_req(u32::MAX, 16, 16), u64::MAX, u64::MAX, "huge IV"),
        ];
        for (h, r, w, why) in bad {
            assert_eq!(plan(&h, CBC, r, w), Err(status::BADMSG), "{why}");
        }
        let chained = SessionShape { chained: true, iv_len: 16, digest_len: 32 };
        assert_eq!(plan(&cipher_req(16, 64, 64), chained, 1000, 1000), Err(status::BADMSG), "kind");
    }

    #[test]
    fn chained_ranges_stay_inside_the_source() {
        let s = SessionShape { chained: true, iv_len: 16, digest_len: 32 };
        let mk = |c_off: u32, c_len: u32, h_off: u32, h_len: u32, digest: u32| {
            let mut raw = [0u8; HEADER_LEN];
            for (i, v) in [16, 128, 128, c_off, c_len, h_off, h_len, 0, digest].into_iter().enumerate() {
                raw[24 + 4 * i..28 + 4 * i].copy_from_slice(&v.to_le_bytes());
            }
            raw[64..68].copy_from_slice(&SYM_OP_CHAINING.to_le_bytes());
            Header::new(raw)
        };
        let p = plan(&mk(16, 112, 0, 128, 32), s, 1000, 1000).unwrap();
        assert_eq!((p.cipher, p.auth, p.out_from, p.used_len()), ((16, 112), Some((0, 128)), 16, 161));
        assert_eq!(plan(&mk(16, 113, 0, 128, 32), s, 1000, 1000), Err(status::BADMSG));
        assert_eq!(plan(&mk(u32::MAX, 2, 0, 128, 32), s, 1000, 1000), Err(status::BADMSG));
        assert_eq!(plan(&mk(0, 128, 0, 128, 20), s, 1000, 1000), Err(status::BADMSG), "MAC length");
        assert_eq!(plan(&mk(0, 128, 0, 128, 32), s, 1000, 160), Err(status::BADMSG), "no room for MAC");
    }

    #[cfg(feature = "abi-25-11")]
    fn akcipher_req(opcode: u32, algo: u32, src: u32, dst: u32) -> Header {
        let mut raw = [0u8; HEADER_LEN];
        raw[..4].copy_from_slice(&opcode.to_le_bytes());
        raw[4..8].copy_from_slice(&algo.to_le_bytes());
        raw[24..28].copy_from_slice(&src.to_le_bytes());
        raw[28..32].copy_from_slice(&dst.to_le_bytes());
        Header::new(raw)
    }

    #[cfg(feature = "abi-25-11")]
    #[test]
    fn rsa_requests_fit_their_buffers() {
        let sign = akcipher_req(0x402, AKCIPHER_RSA, 20, 128);
        assert!(!sign.is_cipher());
        assert_eq!(sign.akcipher_op(), Some(RsaOp::Sign));
        let p = rsa_plan(&sign, RsaOp::Sign, 72 + 20, 129).unwrap();
        assert_eq!((p.input_len(), p.output_room()), (20, 128));
        assert_eq!(rsa_plan(&sign, RsaOp::Sign, 72 + 19, 129), Err(status::BADMSG), "short source");
        assert_eq!(rsa_plan(&sign, RsaOp::Sign, 72 + 20, 128), Err(status::BADMSG), "no room for the status");
        // A verify reads the signature and the message, writes the status only.
        let verify = akcipher_req(0x403, AKCIPHER_RSA, 128, 20);
        let p = rsa_plan(&verify, RsaOp::Verify, 72 + 148, 1).unwrap();
        assert_eq!((p.input_len(), p.output_room()), (148, 0));
        assert_eq!(rsa_plan(&verify, RsaOp::Verify, 72 + 147, 1), Err(status::BADMSG));
        let dsa = akcipher_req(0x400, 2, 16, 128);
        assert_eq!(rsa_plan(&dsa, RsaOp::Encrypt, 1000, 1000), Err(status::NOTSUPP));
        let huge = akcipher_req(0x401, AKCIPHER_RSA, u32::MAX, u32::MAX);
        assert_eq!(rsa_plan(&huge, RsaOp::Decrypt, u64::MAX, u64::MAX), Err(status::BADMSG));
        assert_eq!(akcipher_req(0x404, AKCIPHER_RSA, 0, 0).akcipher_op(), None, "a session op code");
    }
}
