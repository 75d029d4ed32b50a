//! vhost-crypto (`rte_vhost_crypto.h`), as DPDK 22.11's
//! `lib/vhost/vhost_crypto.c` serves QEMU's `cryptodev-vhost-user`: one
//! instance per device, made by the application's `new_device` with a
//! cryptodev and its session pool. The front-end's CREATE/CLOSE session
//! messages become sessions on that cryptodev (`session`); the guest's
//! data-queue requests are checked (`request`) and copied into mbufs the
//! application enqueues to the cryptodev (`fetch`); the processed ones are
//! written back where the virtio-crypto specification puts them and
//! returned on the used ring (`finalize`). Split rings only, as 22.11.
//!
//! Guest memory is never handed to the cryptodev: requests are copied in
//! and results copied out under the ring's lock, translated again with the
//! memory table of that moment (zero copy is accepted and served by copying).
//!
//! The build for DPDK 25.11 also serves RSA (akcipher) sessions and their
//! sign, verify, encrypt and decrypt requests, as 25.03 added them.

mod queue;
pub mod request;
#[cfg(feature = "abi-25-11")]
mod rsa_key;
pub mod session;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use parking_lot::{Mutex, RwLock};

use crate::abi::MsgContext;
use crate::dpdk::crypto::{Chaining, CryptoOp, OwnedPool, Session, SessionError, SessionPool, SessionSpec};
use crate::dpdk::mbuf::HeldMbuf;
use crate::vlog;
pub use queue::MAX_CALLFDS;
use request::SessionShape;
use session::{status, Spec};

/// 22.11's `VHOST_CRYPTO_MBUF_POOL_SIZE`: requests in flight per device.
const POOL_SIZE: u32 = 8192;
/// 22.11's `VHOST_CRYPTO_SESSION_MAP_ENTRIES`.
const MAX_SESSIONS: usize = 1024;
const LOG: &str = "VHOST-Crypto";

/// What a session message hook decided (`enum rte_vhost_msg_result`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MessageOutcome {
    Err,
    Ok,
    Reply,
    NotHandled,
}

/// A session and what its requests must look like.
#[derive(Debug)]
struct SessionEntry {
    session: Session,
    /// A symmetric session's; `None` for an RSA one.
    shape: Option<SessionShape>,
}

#[derive(Debug, Default)]
struct Sessions {
    by_id: HashMap<u64, Arc<SessionEntry>>,
    next_id: u64,
    /// The requests with the cryptodev, by request number: the session
    /// (one the guest closes meanwhile is freed when its last request comes
    /// back, never under the cryptodev's feet) and the mbuf, the library's
    /// own handle to it until the request is finalized.
    inflight: HashMap<u64, (Arc<SessionEntry>, HeldMbuf)>,
    next_request: u64,
}

/// One device's vhost-crypto instance.
#[derive(Debug)]
pub struct Instance {
    id: u64,
    vid: i32,
    cryptodev: u8,
    sess_pool: SessionPool,
    pool: OwnedPool<queue::RequestCtx>,
    zero_copy: std::sync::atomic::AtomicBool,
    sessions: Mutex<Sessions>,
}

static INSTANCES: RwLock<Vec<Arc<Instance>>> = RwLock::new(Vec::new());
static NEXT_INSTANCE: AtomicU64 = AtomicU64::new(1);

fn instance(vid: i32) -> Option<Arc<Instance>> {
    INSTANCES.read().iter().find(|i| i.vid == vid).cloned()
}

fn instance_by_id(id: u64) -> Option<Arc<Instance>> {
    INSTANCES.read().iter().find(|i| i.id == id).cloned()
}

/// Why a vhost-crypto API call was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CryptoError {
    /// No device has this vid.
    InvalidVid(i32),
    /// The device already has an instance.
    Exists(i32),
    /// The instance's mbuf pool could not be made.
    NoPool,
    /// The device has no instance.
    NoInstance,
    /// `rte_vhost_crypto_set_zero_copy`'s option is neither 0 nor 1.
    InvalidOption(i32),
}

impl CryptoError {
    /// The negative errno the C API returns for it.
    pub fn errno(self) -> i32 {
        -match self {
            CryptoError::InvalidVid(_) | CryptoError::InvalidOption(_) => libc::EINVAL,
            CryptoError::Exists(_) => libc::EEXIST,
            CryptoError::NoPool => libc::ENOMEM,
            CryptoError::NoInstance => libc::ENOENT,
        }
    }

    /// Logs it (as DPDK does, under vhost-crypto's name) and gives it back.
    fn logged(self) -> Self {
        vlog!(Config, Err, LOG, "{self}");
        self
    }
}

impl std::fmt::Display for CryptoError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CryptoError::InvalidVid(vid) => write!(f, "Invalid vid {vid}"),
            CryptoError::Exists(vid) => write!(f, "vid {vid} already has a vhost-crypto instance"),
            CryptoError::NoPool => write!(f, "Failed to create mbuf pool"),
            CryptoError::NoInstance => write!(f, "Cannot find required data, is it initialized?"),
            CryptoError::InvalidOption(option) => write!(f, "Invalid option {option}"),
        }
    }
}

impl std::error::Error for CryptoError {}

/// Refuses a vid no device has.
fn check_vid(vid: i32) -> Result<(), CryptoError> {
    match crate::device::get(vid) {
        Some(_) => Ok(()),
        None => Err(CryptoError::InvalidVid(vid).logged()),
    }
}

/// `rte_vhost_crypto_create`.
pub fn create(vid: i32, cryptodev: u8, sess_pool: SessionPool, socket_id: i32) -> Result<(), CryptoError> {
    check_vid(vid)?;
    if instance(vid).is_some() {
        return Err(CryptoError::Exists(vid).logged());
    }
    let id = NEXT_INSTANCE.fetch_add(1, Ordering::Relaxed);
    let Some(pool) = OwnedPool::create(&format!("VHC_MBUF_{id}"), POOL_SIZE, queue::DATA_ROOM, socket_id)
    else {
        return Err(CryptoError::NoPool.logged());
    };
    let sessions = Mutex::new(Sessions { next_id: 1, ..Default::default() });
    let inst = Instance { id, vid, cryptodev, sess_pool, pool, zero_copy: Default::default(), sessions };
    INSTANCES.write().push(Arc::new(inst));
    Ok(())
}

/// `rte_vhost_crypto_free`. The instance's pool and sessions are released
/// if none of its requests is still with the cryptodev; otherwise they are
/// left allocated (a request coming back later finds its memory).
pub fn free(vid: i32) -> Result<(), CryptoError> {
    check_vid(vid)?;
    let inst = {
        let mut all = INSTANCES.write();
        let Some(pos) = all.iter().position(|i| i.vid == vid) else {
            return Err(CryptoError::NoInstance.logged());
        };
        all.swap_remove(pos)
    };
    let released = match Arc::try_unwrap(inst) {
        Ok(inst) if inst.pool.is_full() => {
            inst.pool.release();
            true
        }
        Ok(inst) => {
            std::mem::forget(inst);
            false
        }
        Err(shared) => {
            std::mem::forget(shared);
            false
        }
    };
    if !released {
        vlog!(
            Config,
            Err,
            LOG,
            "vid {vid}: requests still in flight, their pool and sessions are left allocated"
        );
    }
    Ok(())
}

/// `rte_vhost_crypto_set_zero_copy`: accepted; requests are copied either way.
pub fn set_zero_copy(vid: i32, option: i32) -> Result<(), CryptoError> {
    check_vid(vid)?;
    if !(0..2).contains(&option) {
        return Err(CryptoError::InvalidOption(option).logged());
    }
    let Some(inst) = instance(vid) else {
        return Err(CryptoError::NoInstance.logged());
    };
    if option == 1 && !inst.zero_copy.swap(true, Ordering::Relaxed) {
        vlog!(Config, Info, LOG, "vid {vid}: zero copy requested; requests are copied (guest memory is never given to the cryptodev)");
    }
    if option == 0 {
        inst.zero_copy.store(false, Ordering::Relaxed);
    }
    Ok(())
}

/// The vhost-crypto message hook: CREATE/CLOSE_CRYPTO_SESSION.
pub fn handle_message(vid: i32, msg: &mut MsgContext) -> MessageOutcome {
    if !matches!(msg.request, session::CREATE_SESSION | session::CLOSE_SESSION) {
        return MessageOutcome::NotHandled;
    }
    let Some(inst) = instance(vid) else {
        vlog!(Config, Err, LOG, "Cannot find required data, is it initialized?");
        return MessageOutcome::Err;
    };
    let size = msg.size as usize;
    if msg.request == session::CLOSE_SESSION {
        if size != 8 {
            vlog!(Config, Err, LOG, "close session: payload of {size} bytes, expected 8");
            return MessageOutcome::Err;
        }
        let id = u64::from_ne_bytes(msg.payload[..8].try_into().expect("8 bytes"));
        return if inst.close_session(id) { MessageOutcome::Ok } else { MessageOutcome::Err };
    }
    #[cfg(feature = "abi-25-11")]
    let layout_size = size == session::SESSION_MSG_SIZE_25_03;
    #[cfg(not(feature = "abi-25-11"))]
    let layout_size = false;
    if size != session::SESSION_MSG_SIZE && !layout_size {
        vlog!(
            Config,
            Err,
            LOG,
            "create session: payload of {size} bytes, expected {}",
            session::SESSION_MSG_SIZE
        );
        return MessageOutcome::Err;
    }
    let result = inst.create_session(&msg.payload[..size]);
    session::set_reply(&mut msg.payload[..size], result);
    msg.fd_num = 0;
    MessageOutcome::Reply
}

impl Instance {
    fn create_session(&self, payload: &[u8]) -> Result<u64, u8> {
        let req = session::parse(payload).inspect_err(|st| {
            vlog!(Config, Err, LOG, "Error transform session msg ({})", -i32::from(*st));
        })?;
        let mut s = self.sessions.lock();
        if s.by_id.len() >= MAX_SESSIONS {
            vlog!(Config, Err, LOG, "Failed to insert session to hash table");
            return Err(status::ERR);
        }
        let made = match &req.spec {
            Spec::Sym(spec) => self.create_sym_session(spec)?,
            #[cfg(feature = "abi-25-11")]
            Spec::Rsa(spec) => (Session::create_rsa(self.cryptodev, self.sess_pool, spec), None),
        };
        let (Ok(session), shape) = made else {
            vlog!(Config, Err, LOG, "Failed to create session");
            return Err(match made.0 {
                Err(SessionError::Unsupported) => status::NOTSUPP,
                _ => status::ERR,
            });
        };
        let id = s.next_id;
        s.next_id += 1;
        s.by_id.insert(id, Arc::new(SessionEntry { session, shape }));
        vlog!(Config, Info, LOG, "Session {id} created for vdev {} ({:?} layout).", self.vid, req.layout);
        Ok(id)
    }

    /// A symmetric session and its requests' shape (the session may have
    /// been refused by the cryptodev).
    fn create_sym_session(
        &self,
        spec: &SessionSpec<'_>,
    ) -> Result<(Result<Session, SessionError>, Option<SessionShape>), u8> {
        let iv_len = session::iv_len(spec).ok_or_else(|| {
            vlog!(Config, Err, LOG, "cipher algorithm {} not supported", spec.cipher_algo);
            status::NOTSUPP
        })?;
        let shape = SessionShape {
            chained: !matches!(spec.chaining, Chaining::CipherOnly { .. }),
            iv_len: u32::from(iv_len),
            digest_len: spec.digest_len,
        };
        Ok((Session::create(self.cryptodev, self.sess_pool, spec), Some(shape)))
    }

    fn close_session(&self, id: u64) -> bool {
        if self.sessions.lock().by_id.remove(&id).is_none() {
            vlog!(Config, Err, LOG, "Failed to delete session {id}.");
            return false;
        }
        vlog!(Config, Info, LOG, "Session {id} deleted for vdev {}.", self.vid);
        true
    }
}

/// `rte_vhost_crypto_fetch_requests`.
pub fn fetch_requests(vid: i32, qid: u32, ops: &[Option<CryptoOp>]) -> u16 {
    let Some(dev) = crate::device::get(vid) else {
        vlog!(Data, Err, LOG, "Invalid vid {vid}");
        return 0;
    };
    let Some(inst) = instance(vid) else {
        vlog!(Data, Err, LOG, "Cannot find required data, is it initialized?");
        return 0;
    };
    let Ok(qid) = u16::try_from(qid) else {
        vlog!(Data, Err, LOG, "Invalid qid {qid}");
        return 0;
    };
    queue::fetch(&inst, dev, qid, ops)
}

/// `rte_vhost_crypto_finalize_requests`: returns the ops processed; the
/// call fds of the rings they completed on go to `callfds`.
pub fn finalize_requests(ops: &[Option<CryptoOp>], callfds: &mut Vec<i32>) -> u16 {
    queue::finalize(ops, callfds)
}
