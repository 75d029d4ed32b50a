//! CREATE_CRYPTO_SESSION / CLOSE_CRYPTO_SESSION (vhost-user requests 26 and
//! 27, handled like 22.11's vhost-crypto message hook): the session's
//! parameters, in either layout a front-end sends, become a session on the
//! application's cryptodev under a 64-bit id the guest names in requests.
//!
//! Two layouts of the 632-byte payload exist. DPDK 22.11's
//! `VhostUserCryptoSessionParam` (and QEMU up to 7.0) has a 32-bit `op_code`
//! after the session id; QEMU 7.1 dropped it from the structure it copies
//! in, so every field from the cipher algorithm to the chaining order sits
//! 4 bytes earlier and bytes 36..40 are the structure's padding (zero). The
//! keys are at the same offsets in both. In 22.11's layout bytes 36 and 37
//! are the operation type and the cipher direction, which a valid session
//! never has both zero (a cipher session needs a direction, a chained one
//! its type): so zero there means QEMU's layout. docs/vhost-crypto.md.
//!
//! DPDK 25.03 (and QEMU 9) moved to a third layout, 1072 bytes: a 32-bit
//! op code first, then either the symmetric parameters (as in QEMU 7.1's
//! layout, from byte 8) or the akcipher (RSA) ones, and the session id
//! last. The build for 25.11 reads it besides the two 632-byte ones.

use crate::dpdk::crypto::{cipher_iv_len, Chaining, SessionSpec};
#[cfg(feature = "abi-25-11")]
use crate::dpdk::crypto::{RsaPadding, RsaSpec};

/// vhost-user request numbers (not in 22.11's request table: handled by the
/// vhost-crypto hook).
pub const CREATE_SESSION: u32 = 26;
pub const CLOSE_SESSION: u32 = 27;
/// `sizeof(VhostUserCryptoSessionParam)`, in both layouts of 22.11's time.
pub const SESSION_MSG_SIZE: usize = 632;
/// `sizeof(VhostUserCryptoSessionParam)` from DPDK 25.03 on.
#[cfg(feature = "abi-25-11")]
pub const SESSION_MSG_SIZE_25_03: usize = 1072;
/// `VIRTIO_CRYPTO_AKCIPHER_CREATE_SESSION`: service 4 (akcipher), op 4.
#[cfg(feature = "abi-25-11")]
const AKCIPHER_CREATE_SESSION: u32 = 0x404;
#[cfg(feature = "abi-25-11")]
const AKCIPHER_RSA: u32 = 1;
#[cfg(feature = "abi-25-11")]
const AKCIPHER_KEY_PRIVATE: u32 = 2;
/// `VHOST_USER_CRYPTO_MAX_KEY_LENGTH`: the akcipher key buffer.
#[cfg(feature = "abi-25-11")]
const MAX_AKCIPHER_KEY: usize = 1024;
#[cfg(feature = "abi-25-11")]
const AKCIPHER_KEY_OFFSET: usize = 40;
const CIPHER_KEY_OFFSET: usize = 56;
const MAX_CIPHER_KEY: usize = 64;
const AUTH_KEY_OFFSET: usize = CIPHER_KEY_OFFSET + MAX_CIPHER_KEY;
const MAX_AUTH_KEY: usize = 512;

/// virtio-crypto status codes (the session id replied on failure is their
/// negation, as 22.11 does).
pub mod status {
    pub const OK: u8 = 0;
    pub const ERR: u8 = 1;
    pub const BADMSG: u8 = 2;
    pub const NOTSUPP: u8 = 3;
    pub const INVSESS: u8 = 4;
}

const SYM_OP_NONE: u8 = 0;
const SYM_OP_CIPHER: u8 = 1;
const SYM_OP_CHAINING: u8 = 2;
const OP_ENCRYPT: u8 = 1;
const OP_DECRYPT: u8 = 2;
const HASH_MODE_AUTH: u8 = 2;
const CHAIN_HASH_THEN_CIPHER: u8 = 1;
const CHAIN_CIPHER_THEN_HASH: u8 = 2;

/// Which structure the front-end sent.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Layout {
    /// DPDK 22.11's, with `op_code` (QEMU before 7.1).
    WithOpCode,
    /// QEMU 7.1 to 8: no `op_code`.
    Qemu71,
    /// DPDK 25.03 and QEMU 9: op code first, session id last.
    #[cfg(feature = "abi-25-11")]
    OpCodeFirst,
}

/// What a CREATE_CRYPTO_SESSION asks for.
#[derive(Debug, PartialEq, Eq)]
pub enum Spec<'a> {
    Sym(SessionSpec<'a>),
    #[cfg(feature = "abi-25-11")]
    Rsa(RsaSpec<'a>),
}

/// A parsed CREATE_CRYPTO_SESSION.
#[derive(Debug, PartialEq, Eq)]
pub struct SessionRequest<'a> {
    pub layout: Layout,
    pub spec: Spec<'a>,
}

/// The IV length requests of a session of `spec` must carry.
pub fn iv_len(spec: &SessionSpec<'_>) -> Option<u16> {
    cipher_iv_len(spec.cipher_algo)
}

fn u32_at(p: &[u8], off: usize) -> u32 {
    u32::from_ne_bytes(p[off..off + 4].try_into().expect("4 bytes"))
}

/// Parses a CREATE_CRYPTO_SESSION payload; `Err` is the virtio-crypto status
/// to reply (as a negative session id).
pub fn parse(p: &[u8]) -> Result<SessionRequest<'_>, u8> {
    #[cfg(feature = "abi-25-11")]
    if p.len() == SESSION_MSG_SIZE_25_03 {
        let spec = match u32_at(p, 0) {
            AKCIPHER_CREATE_SESSION => Spec::Rsa(parse_rsa(p)?),
            _ => Spec::Sym(parse_sym(p, 8)?),
        };
        return Ok(SessionRequest { layout: Layout::OpCodeFirst, spec });
    }
    if p.len() != SESSION_MSG_SIZE {
        return Err(status::BADMSG);
    }
    // Offset of the cipher algorithm; every field up to the chaining order follows it.
    let (layout, base) = if p[36..40] == [0; 4] { (Layout::Qemu71, 8) } else { (Layout::WithOpCode, 12) };
    Ok(SessionRequest { layout, spec: Spec::Sym(parse_sym(p, base)?) })
}

/// The symmetric parameters, the cipher algorithm at `base`.
fn parse_sym(p: &[u8], base: usize) -> Result<SessionSpec<'_>, u8> {
    let cipher_algo = u32_at(p, base);
    let cipher_key_len = u32_at(p, base + 4) as usize;
    let hash_algo = u32_at(p, base + 8);
    let digest_len = u32_at(p, base + 12);
    let auth_key_len = u32_at(p, base + 16) as usize;
    let [op_type, dir, hash_mode, chain_order] = p[base + 24..base + 28].try_into().expect("4 bytes");
    if cipher_key_len > MAX_CIPHER_KEY || auth_key_len > MAX_AUTH_KEY {
        return Err(status::BADMSG);
    }
    let chaining = match op_type {
        SYM_OP_NONE | SYM_OP_CIPHER => match dir {
            OP_ENCRYPT => Chaining::CipherOnly { encrypt: true },
            OP_DECRYPT => Chaining::CipherOnly { encrypt: false },
            _ => return Err(status::BADMSG),
        },
        SYM_OP_CHAINING if hash_mode != HASH_MODE_AUTH => return Err(status::NOTSUPP),
        SYM_OP_CHAINING => match chain_order {
            CHAIN_CIPHER_THEN_HASH => Chaining::CipherThenHash,
            CHAIN_HASH_THEN_CIPHER => Chaining::HashThenCipher,
            _ => return Err(status::BADMSG),
        },
        _ => return Err(status::NOTSUPP),
    };
    let chained = !matches!(chaining, Chaining::CipherOnly { .. });
    Ok(SessionSpec {
        chaining,
        cipher_algo,
        cipher_key: &p[CIPHER_KEY_OFFSET..CIPHER_KEY_OFFSET + cipher_key_len],
        hash_algo,
        digest_len: if chained { digest_len } else { 0 },
        auth_key: if chained { &p[AUTH_KEY_OFFSET..AUTH_KEY_OFFSET + auth_key_len] } else { &[] },
    })
}

/// 25.03's `VhostUserCryptoAsymSessionParam`, from byte 8: algorithm, key
/// type, key length, (pointer), RSA padding and hash, the key's DER.
#[cfg(feature = "abi-25-11")]
fn parse_rsa(p: &[u8]) -> Result<RsaSpec<'_>, u8> {
    let (algo, key_type, key_len) = (u32_at(p, 8), u32_at(p, 12), u32_at(p, 16) as usize);
    let padding = match u32_at(p, 32) {
        0 => RsaPadding::Raw,
        1 => RsaPadding::Pkcs1,
        _ => return Err(status::NOTSUPP),
    };
    if algo != AKCIPHER_RSA || key_type != AKCIPHER_KEY_PRIVATE {
        return Err(status::NOTSUPP);
    }
    if key_len > MAX_AKCIPHER_KEY {
        return Err(status::BADMSG);
    }
    let der = &p[AKCIPHER_KEY_OFFSET..AKCIPHER_KEY_OFFSET + key_len];
    let key = super::rsa_key::parse(der).ok_or(status::BADMSG)?;
    Ok(RsaSpec { parts: key.parts(), padding })
}

/// Writes the reply's session id (or negated status) where the payload's
/// layout has it: first in the 632-byte ones, last in 25.03's.
pub fn set_reply(p: &mut [u8], id: Result<u64, u8>) {
    let v: i64 = match id {
        Ok(id) => id as i64,
        Err(st) => -i64::from(st),
    };
    let at = if p.len() == SESSION_MSG_SIZE { 0 } else { p.len() - 8 };
    p[at..at + 8].copy_from_slice(&v.to_ne_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sym<'a>(r: &'a SessionRequest<'a>) -> &'a SessionSpec<'a> {
        match &r.spec {
            Spec::Sym(s) => s,
            #[cfg(feature = "abi-25-11")]
            Spec::Rsa(_) => panic!("not a symmetric session"),
        }
    }

    /// A payload in `layout` for an AES-CBC (3) cipher session.
    fn cbc(layout: Layout, dir: u8) -> Vec<u8> {
        let mut p = vec![0u8; SESSION_MSG_SIZE];
        let base = if layout == Layout::WithOpCode {
            p[8..12].copy_from_slice(&2u32.to_ne_bytes()); // CIPHER_CREATE_SESSION
            12
        } else {
            8
        };
        p[base..base + 4].copy_from_slice(&3u32.to_ne_bytes());
        p[base + 4..base + 8].copy_from_slice(&16u32.to_ne_bytes());
        p[base + 24] = SYM_OP_CIPHER;
        p[base + 25] = dir;
        p[CIPHER_KEY_OFFSET..CIPHER_KEY_OFFSET + 16].copy_from_slice(&[0xab; 16]);
        p
    }

    #[test]
    fn both_layouts_give_the_same_session() {
        for layout in [Layout::WithOpCode, Layout::Qemu71] {
            for (dir, encrypt) in [(OP_ENCRYPT, true), (OP_DECRYPT, false)] {
                let p = cbc(layout, dir);
                let r = parse(&p).unwrap();
                assert_eq!(r.layout, layout);
                let s = sym(&r);
                assert_eq!(s.chaining, Chaining::CipherOnly { encrypt });
                assert_eq!((s.cipher_algo, s.cipher_key), (3, &[0xab; 16][..]));
            }
        }
    }

    #[test]
    fn bad_sessions_are_refused_with_their_status() {
        assert_eq!(parse(&[0; 100]), Err(status::BADMSG));
        // No direction: invalid in 22.11's layout, and read as QEMU's where
        // it is just as invalid.
        assert_eq!(parse(&cbc(Layout::Qemu71, 0)), Err(status::BADMSG));
        let mut p = cbc(Layout::WithOpCode, OP_ENCRYPT);
        p[16..20].copy_from_slice(&65u32.to_ne_bytes());
        assert_eq!(parse(&p), Err(status::BADMSG), "cipher key longer than 64");
        let mut p = cbc(Layout::Qemu71, OP_ENCRYPT);
        p[32] = SYM_OP_CHAINING;
        p[34] = 1; // plain hash mode
        assert_eq!(parse(&p), Err(status::NOTSUPP));
        p[32] = 9;
        assert_eq!(parse(&p), Err(status::NOTSUPP));
    }

    #[test]
    fn chained_sessions_take_the_mac_and_its_key() {
        let mut p = cbc(Layout::WithOpCode, 0);
        p[20..24].copy_from_slice(&4u32.to_ne_bytes()); // HMAC-SHA256
        p[24..28].copy_from_slice(&32u32.to_ne_bytes());
        p[28..32].copy_from_slice(&20u32.to_ne_bytes());
        p[36] = SYM_OP_CHAINING;
        p[38] = HASH_MODE_AUTH;
        p[39] = CHAIN_CIPHER_THEN_HASH;
        let r = parse(&p).unwrap();
        let s = sym(&r);
        assert_eq!(s.chaining, Chaining::CipherThenHash);
        assert_eq!((s.hash_algo, s.digest_len, s.auth_key.len()), (4, 32, 20));
        let mut reply = p.clone();
        set_reply(&mut reply, Err(status::NOTSUPP));
        assert_eq!(i64::from_ne_bytes(reply[..8].try_into().unwrap()), -3);
    }

    /// 25.03's layout: op code, the parameters from byte 8, session id last.
    #[cfg(feature = "abi-25-11")]
    fn op_code_first(op_code: u32, params: &[u8]) -> Vec<u8> {
        let mut p = vec![0u8; SESSION_MSG_SIZE_25_03];
        p[..4].copy_from_slice(&op_code.to_ne_bytes());
        p[8..8 + params.len()].copy_from_slice(params);
        p
    }

    #[cfg(feature = "abi-25-11")]
    #[test]
    fn the_25_03_layout_carries_symmetric_sessions_and_replies_last() {
        let qemu71 = cbc(Layout::Qemu71, OP_DECRYPT);
        let mut p = op_code_first(2, &qemu71[8..]);
        let r = parse(&p).unwrap();
        assert_eq!(r.layout, Layout::OpCodeFirst);
        assert_eq!(sym(&r).chaining, Chaining::CipherOnly { encrypt: false });
        assert_eq!(sym(&r).cipher_key, &[0xab; 16][..]);
        set_reply(&mut p, Ok(7));
        assert_eq!(i64::from_ne_bytes(p[1064..].try_into().unwrap()), 7);
        assert_eq!(u32_at(&p, 0), 2, "the op code is left alone");
    }

    /// An akcipher session: algorithm, key type, key length, padding, key.
    #[cfg(feature = "abi-25-11")]
    fn rsa_session(algo: u32, key_type: u32, padding: u32, key: &[u8]) -> Vec<u8> {
        let mut params = vec![0u8; 32 + key.len()];
        for (i, v) in [algo, key_type, key.len() as u32].into_iter().enumerate() {
            params[4 * i..4 * i + 4].copy_from_slice(&v.to_ne_bytes());
        }
        params[24..28].copy_from_slice(&padding.to_ne_bytes());
        params[32..].copy_from_slice(key);
        op_code_first(AKCIPHER_CREATE_SESSION, &params)
    }

    /// The smallest key of the right form: version 0 and eight integers.
    #[cfg(feature = "abi-25-11")]
    const TOY_KEY: [u8; 30] =
        [0x30, 28, 2, 1, 0, 2, 2, 0, 0xc5, 2, 1, 3, 2, 1, 7, 2, 1, 11, 2, 1, 13, 2, 1, 5, 2, 1, 6, 2, 1, 9];

    #[cfg(feature = "abi-25-11")]
    #[test]
    fn rsa_sessions_take_a_pkcs1_private_key() {
        let p = rsa_session(AKCIPHER_RSA, AKCIPHER_KEY_PRIVATE, 1, &TOY_KEY);
        let r = parse(&p).unwrap();
        let Spec::Rsa(rsa) = r.spec else { panic!("not RSA") };
        assert_eq!(rsa.padding, RsaPadding::Pkcs1);
        assert_eq!(rsa.parts[0], [0xc5], "n without its sign byte");
        assert_eq!(rsa.parts[7], [9]);
        let bad = [
            (rsa_session(2, AKCIPHER_KEY_PRIVATE, 1, &TOY_KEY), status::NOTSUPP, "DSA"),
            (rsa_session(AKCIPHER_RSA, 1, 1, &TOY_KEY), status::NOTSUPP, "public key"),
            (rsa_session(AKCIPHER_RSA, AKCIPHER_KEY_PRIVATE, 7, &TOY_KEY), status::NOTSUPP, "padding"),
            (rsa_session(AKCIPHER_RSA, AKCIPHER_KEY_PRIVATE, 0, &TOY_KEY[..29]), status::BADMSG, "cut key"),
        ];
        for (p, st, why) in bad {
            assert_eq!(parse(&p), Err(st), "{why}");
        }
        let mut huge = rsa_session(AKCIPHER_RSA, AKCIPHER_KEY_PRIVATE, 0, &TOY_KEY);
        huge[16..20].copy_from_slice(&1025u32.to_ne_bytes());
        assert_eq!(parse(&huge), Err(status::BADMSG), "key longer than its buffer");
    }
}
