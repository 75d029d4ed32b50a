//! The RSA private key of a virtio-crypto akcipher session: PKCS#1
//! `RSAPrivateKey` (RFC 8017 A.1.2) in DER, as the guest's driver passes it
//! and the front-end copies it into CREATE_CRYPTO_SESSION. The bytes come
//! from the guest: every length is checked against what is left, nothing is
//! indexed unchecked, and anything but a two-prime key of version 0 whose
//! nine INTEGERs fill the SEQUENCE exactly (and the SEQUENCE the buffer) is
//! refused. DPDK 25.11's parser reads lengths without comparing them with
//! the buffer and ignores trailing bytes.

/// The key's integers, big-endian magnitudes (DER's sign byte removed).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RsaPrivateKey<'a> {
    pub n: &'a [u8],
    pub e: &'a [u8],
    pub d: &'a [u8],
    pub p: &'a [u8],
    pub q: &'a [u8],
    pub dp: &'a [u8],
    pub dq: &'a [u8],
    pub qinv: &'a [u8],
}

impl<'a> RsaPrivateKey<'a> {
    /// The integers in the order the shim takes them: n, e, d, p, q, dP,
    /// dQ, qInv.
    pub fn parts(&self) -> [&'a [u8]; 8] {
        [self.n, self.e, self.d, self.p, self.q, self.dp, self.dq, self.qinv]
    }
}

const TAG_INTEGER: u8 = 0x02;
const TAG_SEQUENCE: u8 = 0x30;

/// Splits one TLV of type `tag` off `buf`: its content and what follows.
/// Definite lengths of up to two bytes only (a key that fits the session's
/// 1024-byte buffer never needs more).
fn tlv(buf: &[u8], tag: u8) -> Option<(&[u8], &[u8])> {
    let (&t, rest) = buf.split_first()?;
    let (&first, rest) = rest.split_first()?;
    if t != tag {
        return None;
    }
    let (len, rest) = match first {
        0..=0x7f => (usize::from(first), rest),
        0x81 => {
            let (&b, rest) = rest.split_first()?;
            (usize::from(b), rest)
        }
        0x82 => {
            let (b, rest) = rest.split_first_chunk::<2>()?;
            (usize::from(u16::from_be_bytes(*b)), rest)
        }
        _ => return None,
    };
    (len <= rest.len()).then(|| rest.split_at(len))
}

/// One positive INTEGER's magnitude, and what follows it.
fn integer(buf: &[u8]) -> Option<(&[u8], &[u8])> {
    let (mut v, rest) = tlv(buf, TAG_INTEGER)?;
    if v.first()? & 0x80 != 0 {
        return None;
    }
    while let [0, tail @ ..] = v {
        if tail.is_empty() {
            break;
        }
        v = tail;
    }
    Some((v, rest))
}

/// Parses `der`, which must be exactly one `RSAPrivateKey`.
pub fn parse(der: &[u8]) -> Option<RsaPrivateKey<'_>> {
    let (body, trailing) = tlv(der, TAG_SEQUENCE)?;
    if !trailing.is_empty() {
        return None;
    }
    let (version, mut rest) = integer(body)?;
    if version != [0] {
        return None;
    }
    let mut ints = [&[][..]; 8];
    for slot in &mut ints {
        let (v, next) = integer(rest)?;
        *slot = v;
        rest = next;
    }
    if !rest.is_empty() {
        return None;
    }
    let [n, e, d, p, q, dp, dq, qinv] = ints;
    Some(RsaPrivateKey { n, e, d, p, q, dp, dq, qinv })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn der_int(v: &[u8]) -> Vec<u8> {
        let mut out = vec![TAG_INTEGER];
        out.extend(der_len(v.len()));
        out.extend_from_slice(v);
        out
    }

    fn der_len(n: usize) -> Vec<u8> {
        match n {
            0..=0x7f => vec![n as u8],
            0x80..=0xff => vec![0x81, n as u8],
            _ => vec![0x82, (n >> 8) as u8, n as u8],
        }
    }

    fn sequence(ints: &[Vec<u8>]) -> Vec<u8> {
        let body: Vec<u8> = ints.iter().flat_map(|i| der_int(i)).collect();
        let mut out = vec![TAG_SEQUENCE];
        out.extend(der_len(body.len()));
        out.extend(body);
        out
    }

    /// A key of the right shape (not a real key: the parser checks form).
    fn key_ints() -> Vec<Vec<u8>> {
        let modulus: Vec<u8> = std::iter::once(0).chain((0..128).map(|i| 0x80 | i as u8)).collect();
        vec![
            vec![0],
            modulus,
            vec![1, 0, 1],
            vec![0x55; 128],
            vec![0, 0xc1, 2],
            vec![0x33; 64],
            vec![0x22; 64],
            vec![0x11; 64],
            vec![0x0f; 64],
        ]
    }

    #[test]
    fn a_pkcs1_key_gives_its_integers_without_sign_bytes() {
        let der = sequence(&key_ints());
        let k = parse(&der).expect("valid key");
        assert_eq!(k.n.len(), 128);
        assert_eq!(k.n[0], 0x80);
        assert_eq!(k.e, [1, 0, 1]);
        assert_eq!(k.p, [0xc1, 2]);
        assert_eq!(k.qinv, [0x0f; 64]);
        assert_eq!(k.parts()[2], &[0x55; 128][..]);
    }

    #[test]
    fn malformed_keys_are_refused() {
        let good = sequence(&key_ints());
        let mut cases: Vec<(Vec<u8>, &str)> = vec![
            (vec![], "empty"),
            (good[..good.len() - 1].to_vec(), "truncated"),
            ([&good[..], &[0]].concat(), "trailing byte"),
        ];
        let mut v1 = key_ints();
        v1[0] = vec![1];
        cases.push((sequence(&v1), "multi-prime version"));
        cases.push((sequence(&key_ints()[..8]), "an integer missing"));
        let mut extra = key_ints();
        extra.push(vec![5]);
        cases.push((sequence(&extra), "an integer too many"));
        let mut negative = key_ints();
        negative[2] = vec![0x81, 1];
        cases.push((sequence(&negative), "negative exponent"));
        let mut empty = key_ints();
        empty[4] = vec![];
        cases.push((sequence(&empty), "empty integer"));
        let mut wrong_tag = good.clone();
        wrong_tag[0] = 0x31;
        cases.push((wrong_tag, "SET, not SEQUENCE"));
        let mut long_len = good.clone();
        long_len[1] = 0x83;
        cases.push((long_len, "three length bytes"));
        let mut overlong = good.clone();
        overlong[3] = overlong[3].wrapping_add(1);
        cases.push((overlong, "SEQUENCE longer than the buffer"));
        // The public key (RSAPublicKey: n, e) is not a private key.
        cases.push((sequence(&key_ints()[1..3]), "public key"));
        for (der, why) in cases {
            assert_eq!(parse(&der), None, "{why}");
        }
    }

    proptest! {
        #[test]
        fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..1100)) {
            let _ = parse(&bytes);
        }

        #[test]
        fn corrupted_keys_never_panic(pos in 0usize..700, byte in any::<u8>(), cut in 0usize..700) {
            let mut der = sequence(&key_ints());
            let pos = pos % der.len();
            der[pos] = byte;
            der.truncate(der.len() - cut % der.len());
            let _ = parse(&der);
        }
    }
}
