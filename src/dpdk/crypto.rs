//! The application's cryptodev, for vhost-crypto: symmetric sessions (and
//! RSA ones in the 25.11 build), crypto operations, and the mbuf pool requests are copied into (C shim
//! `crypto_shim.c` over DPDK's cryptodev API, much of which is inline).

use std::ffi::{c_int, c_void, CString};
use std::ptr::NonNull;

use super::mbuf::{Mbuf, Mempool, RteMbuf};
use crate::abi::{rte_crypto_op, rte_mempool};

/// `struct rvh_crypto_session_params` of the shim.
#[repr(C)]
struct SessionParams {
    chain: u32,
    cipher_algo: u32,
    encrypt: u32,
    cipher_key_len: u32,
    cipher_key: *const u8,
    hash_algo: u32,
    digest_len: u32,
    auth_key_len: u32,
    auth_key: *const u8,
}

extern "C" {
    fn rvh_crypto_cipher_iv_len(virtio_algo: u32) -> c_int;
    fn rvh_crypto_session_create(
        dev_id: u8,
        mp: *mut rte_mempool,
        p: *const SessionParams,
        unsupported: *mut c_int,
    ) -> *mut c_void;
    fn rvh_crypto_session_free(dev_id: u8, sess: *mut c_void, asym: c_int) -> c_int;
    #[cfg(feature = "abi-25-11")]
    fn rvh_crypto_rsa_session_create(
        dev_id: u8,
        mp: *mut rte_mempool,
        parts: *const Bytes,
        pkcs1: c_int,
    ) -> *mut c_void;
    #[cfg(feature = "abi-25-11")]
    #[allow(clippy::too_many_arguments)]
    fn rvh_crypto_rsa_op_prepare(
        op: *mut rte_crypto_op,
        sess: *mut c_void,
        m: *mut RteMbuf,
        op_type: u32,
        in_off: u32,
        in_len: u32,
        msg_len: u32,
        out_off: u32,
        out_len: u32,
    ) -> c_int;
    #[cfg(feature = "abi-25-11")]
    fn rvh_crypto_rsa_op_out_len(op: *const rte_crypto_op) -> u32;
    #[allow(clippy::too_many_arguments)]
    fn rvh_crypto_op_prepare(
        op: *mut rte_crypto_op,
        sess: *mut c_void,
        m: *mut RteMbuf,
        iv: *const u8,
        iv_len: u16,
        cipher_off: u32,
        cipher_len: u32,
        chained: c_int,
        auth_off: u32,
        auth_len: u32,
        digest_off: u32,
    ) -> c_int;
    fn rvh_crypto_op_mbuf(op: *const rte_crypto_op) -> *mut RteMbuf;
    fn rvh_crypto_op_succeeded(op: *const rte_crypto_op) -> c_int;
    fn rvh_mbuf_priv(m: *mut RteMbuf, priv_size: *mut u16) -> *mut c_void;
    fn rvh_mempool_full(mp: *const rte_mempool) -> c_int;
    fn rte_pktmbuf_pool_create(
        name: *const std::ffi::c_char,
        n: u32,
        cache_size: u32,
        priv_size: u16,
        data_room_size: u16,
        socket_id: c_int,
    ) -> *mut rte_mempool;
    fn rte_mempool_free(mp: *mut rte_mempool);
}

/// The IV length DPDK sessions of virtio-crypto cipher algorithm `algo` take
/// (`None`: no session can be made for it).
pub fn cipher_iv_len(algo: u32) -> Option<u16> {
    // SAFETY: a pure function of its argument.
    u16::try_from(unsafe { rvh_crypto_cipher_iv_len(algo) }).ok()
}

/// How a session chains its cipher with a MAC.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Chaining {
    CipherOnly {
        encrypt: bool,
    },
    /// Encrypt, then generate the MAC.
    CipherThenHash,
    /// Verify the MAC, then decrypt.
    HashThenCipher,
}

/// What a session is made of (virtio-crypto algorithm numbers).
#[derive(Debug, PartialEq, Eq)]
pub struct SessionSpec<'a> {
    pub chaining: Chaining,
    pub cipher_algo: u32,
    pub cipher_key: &'a [u8],
    pub hash_algo: u32,
    pub digest_len: u32,
    pub auth_key: &'a [u8],
}

/// `struct rvh_bytes` of the shim: one integer of an RSA key.
#[cfg(feature = "abi-25-11")]
#[repr(C)]
struct Bytes {
    data: *const u8,
    len: usize,
}

/// The padding of an RSA session (virtio-crypto's RAW or PKCS1).
#[cfg(feature = "abi-25-11")]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RsaPadding {
    Raw,
    Pkcs1,
}

/// An RSA private key session: n, e, d, p, q, dP, dQ, qInv (big-endian).
#[cfg(feature = "abi-25-11")]
#[derive(Debug, PartialEq, Eq)]
pub struct RsaSpec<'a> {
    pub parts: [&'a [u8]; 8],
    pub padding: RsaPadding,
}

/// An RSA operation (DPDK's `enum rte_crypto_asym_op_type`).
#[cfg(feature = "abi-25-11")]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u32)]
pub enum RsaOp {
    Encrypt = 0,
    Decrypt = 1,
    Sign = 2,
    Verify = 3,
}

/// Why a session was not made.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SessionError {
    /// An algorithm without a DPDK counterpart.
    Unsupported,
    /// The cryptodev refused it (algorithm it lacks, key length, pool empty).
    Refused,
}

impl std::fmt::Display for SessionError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            SessionError::Unsupported => "algorithm not supported",
            SessionError::Refused => "the cryptodev refused the session",
        })
    }
}

impl std::error::Error for SessionError {}

/// A session on a cryptodev, freed when dropped.
#[derive(Debug)]
pub struct Session {
    dev_id: u8,
    handle: NonNull<c_void>,
    /// An asymmetric (RSA) session.
    asym: bool,
}

// SAFETY: a cryptodev session is an object in a DPDK mempool, usable from
// any thread; the handle is only its address.
unsafe impl Send for Session {}
// SAFETY: as above (attaching it to an op only reads the handle).
unsafe impl Sync for Session {}

impl Session {
    /// `rte_cryptodev_sym_session_create` on `dev_id` from `pool`.
    pub fn create(dev_id: u8, pool: SessionPool, spec: &SessionSpec<'_>) -> Result<Session, SessionError> {
        let (chain, encrypt) = match spec.chaining {
            Chaining::CipherOnly { encrypt } => (0, encrypt),
            Chaining::CipherThenHash => (1, true),
            Chaining::HashThenCipher => (2, false),
        };
        let p = SessionParams {
            chain,
            cipher_algo: spec.cipher_algo,
            encrypt: u32::from(encrypt),
            cipher_key_len: spec.cipher_key.len() as u32,
            cipher_key: spec.cipher_key.as_ptr(),
            hash_algo: spec.hash_algo,
            digest_len: spec.digest_len,
            auth_key_len: spec.auth_key.len() as u32,
            auth_key: spec.auth_key.as_ptr(),
        };
        let mut unsupported = 0;
        // SAFETY: `pool` is the application's session pool (its contract with
        // rte_vhost_crypto_create); the keys outlive the call, which copies
        // them into the session.
        let h = unsafe { rvh_crypto_session_create(dev_id, pool.0.as_ptr(), &p, &mut unsupported) };
        match NonNull::new(h) {
            Some(handle) => Ok(Session { dev_id, handle, asym: false }),
            None if unsupported != 0 => Err(SessionError::Unsupported),
            None => Err(SessionError::Refused),
        }
    }

    /// `rte_cryptodev_asym_session_create` of an RSA session on `dev_id`
    /// from `pool` (an asymmetric session pool).
    #[cfg(feature = "abi-25-11")]
    pub fn create_rsa(dev_id: u8, pool: SessionPool, spec: &RsaSpec<'_>) -> Result<Session, SessionError> {
        let parts = spec.parts.map(|p| Bytes { data: p.as_ptr(), len: p.len() });
        let pkcs1 = c_int::from(spec.padding == RsaPadding::Pkcs1);
        // SAFETY: as for `create`; `parts` is 8 entries, each a live slice,
        // which the cryptodev copies into the session.
        let h = unsafe { rvh_crypto_rsa_session_create(dev_id, pool.0.as_ptr(), parts.as_ptr(), pkcs1) };
        NonNull::new(h).map(|handle| Session { dev_id, handle, asym: true }).ok_or(SessionError::Refused)
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        // SAFETY: a session this cryptodev made, no longer attached to an op
        // in flight (callers keep it alive while one is).
        if unsafe { rvh_crypto_session_free(self.dev_id, self.handle.as_ptr(), c_int::from(self.asym)) } < 0 {
            crate::vlog!(Config, Err, "vhost-crypto", "failed to free a cryptodev session");
        }
    }
}

/// The application's cryptodev session pool.
#[derive(Clone, Copy, Debug)]
pub struct SessionPool(NonNull<rte_mempool>);

// SAFETY: a DPDK mempool is usable from any thread; this is its address.
unsafe impl Send for SessionPool {}
// SAFETY: as above.
unsafe impl Sync for SessionPool {}

impl SessionPool {
    /// # Safety
    /// `p` must be NULL or a cryptodev session pool that outlives every use.
    pub unsafe fn from_raw(p: *mut rte_mempool) -> Option<SessionPool> {
        NonNull::new(p).map(SessionPool)
    }
}

/// An application's crypto operation (`struct rte_crypto_op *`, symmetric,
/// from a pool with room for the IV after it, as 22.11 requires).
/// `repr(transparent)`: an `Option<CryptoOp>` is a nullable op pointer, so
/// the application's op arrays are used in place.
#[derive(Clone, Copy, Debug)]
#[repr(transparent)]
pub struct CryptoOp(NonNull<rte_crypto_op>);

impl CryptoOp {
    /// Makes this op process `m` in place with `session`: `iv`, the cipher
    /// range, and for a chained session the MAC range and the digest's
    /// offset in `m`.
    pub fn prepare(
        self,
        session: &Session,
        m: &Mbuf,
        iv: &[u8],
        cipher: (u32, u32),
        auth: Option<(u32, u32, u32)>,
    ) -> bool {
        let (auth_off, auth_len, digest_off) = auth.unwrap_or_default();
        // SAFETY: a valid op and mbuf (ours until finalized); the IV lies in
        // the op's private area, which the application sized for it.
        unsafe {
            rvh_crypto_op_prepare(
                self.0.as_ptr(),
                session.handle.as_ptr(),
                m.as_ptr(),
                iv.as_ptr(),
                iv.len() as u16,
                cipher.0,
                cipher.1,
                c_int::from(auth.is_some()),
                auth_off,
                auth_len,
                digest_off,
            ) == 0
        }
    }

    /// Makes this op an RSA `op` with `session` on `m`'s data: the input
    /// (`input`: offset, length; for a verify the signature, followed by a
    /// `msg_len`-byte message) and the room for the output. False if the
    /// application's op has no room for an asymmetric op or a range leaves
    /// `m`'s data.
    #[cfg(feature = "abi-25-11")]
    pub fn prepare_rsa(
        self,
        session: &Session,
        m: &Mbuf,
        op: RsaOp,
        input: (u32, u32),
        msg_len: u32,
        output: (u32, u32),
    ) -> bool {
        // SAFETY: a valid op (its pool's type and private area are checked
        // before it is written as an asymmetric op) and mbuf (ours until
        // finalized; the ranges are checked against its data).
        unsafe {
            rvh_crypto_rsa_op_prepare(
                self.0.as_ptr(),
                session.handle.as_ptr(),
                m.as_ptr(),
                op as u32,
                input.0,
                input.1,
                msg_len,
                output.0,
                output.1,
            ) == 0
        }
    }

    /// The bytes an RSA op produced (0 for a verify).
    #[cfg(feature = "abi-25-11")]
    pub fn rsa_output_len(self) -> u32 {
        // SAFETY: a valid op that `prepare_rsa` made asymmetric.
        unsafe { rvh_crypto_rsa_op_out_len(self.0.as_ptr()) }
    }

    /// The `T` stored in the private area of the op's mbuf by a pool of
    /// ours (`OwnedPool::store`): `None` if the op has no mbuf, `Some(None)`
    /// if the mbuf has no room for one. Reads no more than the private area.
    pub fn mbuf_priv<T: Copy>(self) -> Option<Option<T>> {
        // SAFETY: a valid op; its m_src (or an asymmetric op's tag) is NULL
        // or the mbuf `prepare` (`prepare_rsa`) set, the library's until the
        // request is finalized (DPDK's contract: an op is finalized once).
        let m = std::ptr::NonNull::new(unsafe { rvh_crypto_op_mbuf(self.0.as_ptr()) })?;
        // SAFETY: room for a T (checked), written by `store` for mbufs of
        // our pools.
        Some(priv_area::<T>(m.as_ptr()).map(|p| unsafe { p.read_unaligned() }))
    }

    pub fn succeeded(self) -> bool {
        // SAFETY: a valid op.
        unsafe { rvh_crypto_op_succeeded(self.0.as_ptr()) != 0 }
    }
}

/// A pktmbuf pool we own, whose mbufs carry a `T` in their private area.
#[derive(Debug)]
pub struct OwnedPool<T> {
    pool: Mempool,
    _priv: std::marker::PhantomData<T>,
}

impl<T: Copy> OwnedPool<T> {
    /// `rte_pktmbuf_pool_create` with `T`'s size as private area.
    pub fn create(name: &str, n: u32, data_room: u16, socket: i32) -> Option<OwnedPool<T>> {
        let name = CString::new(name).ok()?;
        let priv_size = std::mem::size_of::<T>().next_multiple_of(8) as u16;
        // SAFETY: a NUL-terminated name; DPDK copies it.
        let p = unsafe { rte_pktmbuf_pool_create(name.as_ptr(), n, 256, priv_size, data_room, socket) };
        // SAFETY: a fresh pool, ours until dropped.
        unsafe { Mempool::from_raw(p) }.map(|pool| OwnedPool { pool, _priv: std::marker::PhantomData })
    }

    pub fn pool(&self) -> Mempool {
        self.pool
    }

    /// Every mbuf is back (none in flight).
    pub fn is_full(&self) -> bool {
        // SAFETY: a valid pool.
        unsafe { rvh_mempool_full(self.pool.as_ptr()) != 0 }
    }

    /// Frees the pool if every mbuf is back; else leaves it (and says so:
    /// an mbuf still with the cryptodev would return to freed memory).
    pub fn release(self) -> bool {
        if !self.is_full() {
            return false;
        }
        // SAFETY: our pool, every mbuf back in it.
        unsafe { rte_mempool_free(self.pool.as_ptr()) };
        true
    }

    /// Stores `v` in `m`'s private area; false if `m` is not from a pool
    /// with room for it.
    pub fn store(m: &mut Mbuf, v: T) -> bool {
        match priv_area::<T>(m.as_ptr()) {
            Some(p) => {
                // SAFETY: room for a T (checked), possibly unaligned.
                unsafe { p.write_unaligned(v) };
                true
            }
            None => false,
        }
    }
}

/// `m`'s private area, if it has room for a `T`.
fn priv_area<T>(m: *mut RteMbuf) -> Option<*mut T> {
    let mut size = 0u16;
    // SAFETY: callers pass a valid mbuf with a pool.
    let p = unsafe { rvh_mbuf_priv(m, &mut size) };
    (usize::from(size) >= std::mem::size_of::<T>()).then_some(p.cast())
}
