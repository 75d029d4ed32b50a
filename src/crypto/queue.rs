//! The data queue: requests from the split ring into crypto ops (`fetch`),
//! processed ops back into the guest's buffers and the used ring
//! (`finalize`).
//!
//! A request that cannot be processed (malformed, unknown session, lengths
//! that do not fit its buffers) is completed at once with its status and
//! the guest is notified; a chain too broken to hold a status is returned
//! with used length 0. Either way the ring moves on (22.11 leaves such a
//! request at the head of the ring and tries it again forever).
//!
//! Behind a virtual IOMMU (VIRTIO_F_IOMMU_PLATFORM) the descriptors hold
//! I/O virtual addresses, translated through the ring's IOTLB view with
//! the rights each part needs (the readable part read-only, the writable
//! part write-only). A request that reaches an address the IOTLB lacks is
//! not taken: the front-end is asked for it and the request waits at the
//! head of the ring for a later fetch, as a network ring's chain does,
//! with nothing written into it (22.11 asks too and stops its fetch there,
//! having possibly written an error status into the request).
//!
//! Used entries go at the used index, in completion order (22.11 writes
//! them at `used->ring[avail->ring[head]]`), and the status is the last
//! byte of the writable descriptors (22.11: the first descriptor after the
//! data, which with Linux's repeated scatterlist entries is a data
//! descriptor).

use std::sync::Arc;

#[cfg(feature = "abi-25-11")]
use super::request::MAX_RSA_DATA;
use super::request::{self, Header, Plan, HEADER_LEN, MAX_DATA};
use super::session::status;
use super::{instance_by_id, Instance, SessionEntry, LOG};
use crate::device::Device;
#[cfg(feature = "abi-25-11")]
use crate::dpdk::crypto::RsaOp;
use crate::dpdk::crypto::{CryptoOp, OwnedPool};
use crate::dpdk::mbuf::{self, HeldMbuf, Mbuf, HEADROOM};
use crate::guest::iotlb::{PERM_RO, PERM_WO};
use crate::guest::slice::Writer;
use crate::guest::{AddressSpace, Fault, IovaSpace, PhysicalSpace};
use crate::virtqueue::avail::Avail;
use crate::virtqueue::chain::{ChainError, F_WRITE};
use crate::virtqueue::notify;
use crate::virtqueue::ring::{Desc, RingMem};
use crate::virtqueue::used::UsedElem;
use crate::virtqueue::{split, VqState};
use crate::vlog;

/// 22.11's `VHOST_CRYPTO_MAX_BURST_SIZE`.
const MAX_BURST: usize = 64;
/// 22.11's `VIRTIO_CRYPTO_MAX_NUM_BURST_VQS`: call fds one finalize returns.
pub const MAX_CALLFDS: usize = 64;
/// Most descriptors in one request (22.11: 32, which a 4 KiB request in
/// single-byte-aligned pieces can exceed).
const MAX_DESCS: usize = 64;
/// Longest MAC (SHA-512).
const MAX_DIGEST: u32 = 64;
/// Where in an mbuf's data the MAC goes: after any destination data.
const DIGEST_OFF: u32 = MAX_DATA;
/// Data room of the request mbufs.
pub(super) const DATA_ROOM: u16 = (HEADROOM + MAX_DATA + MAX_DIGEST) as u16;
/// Where an RSA request's output starts in its mbuf's data (its input,
/// at most two `MAX_RSA_DATA` pieces, comes first), and the data's length.
#[cfg(feature = "abi-25-11")]
const RSA_OUT_OFF: u32 = 2 * MAX_RSA_DATA;
#[cfg(feature = "abi-25-11")]
const RSA_DATA_LEN: u32 = RSA_OUT_OFF + MAX_RSA_DATA;
/// Marks a request context as ours in an mbuf's private area.
const MAGIC: u64 = 0x7276_686f_7374_4352;

/// What `finalize` needs of a request, in its mbuf's private area: where
/// the writable descriptors are (guest-physical; translated again at
/// finalize time) and what goes where.
#[derive(Clone, Copy, Debug)]
#[repr(C)]
pub(super) struct RequestCtx {
    magic: u64,
    instance: u64,
    request: u64,
    qid: u16,
    head: u16,
    nseg: u16,
    out_from: u32,
    dst_len: u32,
    digest_len: u32,
    /// 1: an RSA request (its output's length is the op's).
    #[cfg(feature = "abi-25-11")]
    rsa: u8,
    status_off: u32,
    seg_addr: [u64; MAX_DESCS],
    seg_len: [u32; MAX_DESCS],
}

/// A list of guest buffers read or written as one byte stream.
struct Stream<'a> {
    descs: &'a [Desc],
}

impl Stream<'_> {
    fn len(&self) -> u64 {
        self.descs.iter().map(|d| u64::from(d.len)).sum()
    }

    /// Visits the guest pieces of `[off, off + len)`, each with its offset
    /// in that range; fails if the range leaves the stream or memory.
    fn pieces<'m>(
        &self,
        mem: impl AddressSpace<'m>,
        mut off: u64,
        len: usize,
        mut f: impl FnMut(crate::guest::slice::GuestSlice<'m>, usize),
    ) -> Result<(), Fault> {
        let mut done = 0usize;
        for d in self.descs {
            if done == len {
                break;
            }
            let dlen = u64::from(d.len);
            if off >= dlen {
                off -= dlen;
                continue;
            }
            let mut at = off;
            off = 0;
            while at < dlen && done < len {
                let want = (dlen - at).min((len - done) as u64) as u32;
                let s = mem.slice(d.addr.wrapping_add(at), want)?;
                let n = s.len().min(want);
                f(s, done);
                done += n as usize;
                at += u64::from(n);
            }
        }
        if done == len {
            Ok(())
        } else {
            Err(Fault::Unmapped)
        }
    }

    fn read<'m>(&self, mem: impl AddressSpace<'m>, off: u64, dst: &mut [u8]) -> Result<(), Fault> {
        let len = dst.len();
        self.pieces(mem, off, len, |s, at| {
            let n = (s.len() as usize).min(len - at);
            s.read(0, &mut dst[at..at + n]);
        })
    }

    fn write<'m>(
        &self,
        w: Writer<'_>,
        mem: impl AddressSpace<'m>,
        off: u64,
        src: &[u8],
    ) -> Result<(), Fault> {
        self.pieces(mem, off, src.len(), |s, at| {
            let n = (s.len() as usize).min(src.len() - at);
            w.write(s, 0, &src[at..at + n]);
        })
    }
}

/// The address spaces of a request's readable and writable parts: guest
/// memory, or IOVAs with read or write rights.
#[derive(Clone, Copy, Debug)]
struct Spaces<S> {
    read: S,
    write: S,
}

/// A request not handed to the cryptodev: completed with its used length,
/// or left on the ring until the IOTLB has `iova` with rights `perm`.
enum NotTaken {
    Completed(u32),
    Missed { iova: u64, perm: u8 },
}

/// Moves up to `ops.len()` requests of ring `qid` into `ops`.
pub(super) fn fetch(inst: &Instance, dev: &Device, qid: u16, ops: &[Option<CryptoOp>]) -> u16 {
    let Some(vq) = dev.vq(qid) else {
        vlog!(Data, Err, LOG, "Invalid qid {qid}");
        return 0;
    };
    let Some(mut s) = vq.lock_for_burst() else { return 0 };
    let (true, Some(ring)) = (s.enabled(), s.ring()) else {
        dev.iotlb_ring_waits(&s);
        return 0;
    };
    if ring.is_packed() || s.mem().faulted() {
        // Split rings only, as 22.11.
        return 0;
    }
    dev.adopt_newer_view(&mut s);
    let mem = Arc::clone(s.mem());
    let ring = ring.in_table(&mem);
    let Some(avail) = s.split_avail(&ring) else {
        vlog!(Data, Err, LOG, "vring {qid}: avail index more than a ring ahead");
        return 0;
    };
    let log = s.active_log();
    let writer = Writer::new(log.as_deref().map(|l| (l, &*mem)));
    let batch = Batch { inst, dev, qid, ops, writer, ring: &ring };
    let (avail, fetched, completed) = match s.iotlb() {
        None => batch.fetch(Spaces { read: PhysicalSpace(&mem), write: PhysicalSpace(&mem) }, avail),
        Some(view) => {
            let (read, write) = (IovaSpace::new(&mem, view, PERM_RO), IovaSpace::new(&mem, view, PERM_WO));
            batch.fetch(Spaces { read, write }, avail)
        }
    };
    s.settle(avail);
    if !completed.is_empty() {
        split::publish(&mut s, &ring, &completed);
        if notify::wants_notification(&mut s, &ring) {
            notify::signal(&s);
        }
    }
    fetched
}

/// One `fetch` call's requests: where they come from and go to.
struct Batch<'a> {
    inst: &'a Instance,
    dev: &'a Device,
    qid: u16,
    ops: &'a [Option<CryptoOp>],
    writer: Writer<'a>,
    ring: &'a RingMem<'a>,
}

impl Batch<'_> {
    /// Takes requests from `avail` into the ops; returns where the ring's
    /// avail side now is, how many ops were prepared, and the used entries
    /// of the requests completed at once.
    fn fetch<'m, S: AddressSpace<'m>>(
        &self,
        mem: Spaces<S>,
        mut avail: Avail,
    ) -> (Avail, u16, Vec<UsedElem>) {
        let Batch { inst, dev, qid, ops, writer, ring } = *self;
        let mut completed: Vec<UsedElem> = Vec::new();
        // A refused request completes here and leaves its op to the next one.
        let mut fetched = 0;
        for _ in 0..usize::from(avail.left()).min(MAX_BURST) {
            let Some(&Some(op)) = ops.get(usize::from(fetched)) else { break };
            let Some(mut m) = mbuf::alloc(inst.pool.pool()) else {
                vlog!(Data, Err, LOG, "Insufficient memory");
                break;
            };
            let from = avail;
            let head = avail.split_take_head(ring);
            match prepare(inst, mem, writer, ring, qid, head, op, &mut m) {
                Ok((request, entry)) => {
                    track(inst, request, entry, m);
                    fetched += 1;
                }
                Err(NotTaken::Completed(len)) => {
                    mbuf::free_bulk(&mut [Some(m)]);
                    completed.push(UsedElem { id: head, len, count: 1 });
                }
                Err(NotTaken::Missed { iova, perm }) => {
                    mbuf::free_bulk(&mut [Some(m)]);
                    dev.iotlb_miss(qid, iova, perm);
                    avail = from;
                    break;
                }
            }
        }
        (avail, fetched, completed)
    }
}

/// Reads request `head`, checks it and prepares `op` on `m`: the request's
/// number and session, to track; or completes it with its status, or
/// leaves it for an IOTLB miss.
#[allow(clippy::too_many_arguments)]
fn prepare<'m, S: AddressSpace<'m>>(
    inst: &Instance,
    mem: Spaces<S>,
    w: Writer<'_>,
    ring: &RingMem,
    qid: u16,
    head: u16,
    op: CryptoOp,
    m: &mut Mbuf,
) -> Result<(u64, Arc<SessionEntry>), NotTaken> {
    let mut descs = [Desc::default(); MAX_DESCS];
    let mut n = 0;
    let walked = split::visit_chain(ring, &mem.read, head, |d| {
        if n == MAX_DESCS {
            return Err(ChainError::TooLong);
        }
        descs[n] = *d;
        n += 1;
        Ok(())
    });
    match walked {
        Ok(()) => {}
        Err(ChainError::IotlbMiss { iova, perm }) => return Err(NotTaken::Missed { iova, perm }),
        Err(e) => {
            vlog!(Data, Err, LOG, "vring {qid}: dropping a malformed request chain: {e}");
            return Err(NotTaken::Completed(0));
        }
    }
    let descs = &descs[..n];
    let split_at = descs.iter().position(|d| d.flags & F_WRITE != 0).unwrap_or(n);
    let (readable, writable) = (Stream { descs: &descs[..split_at] }, Stream { descs: &descs[split_at..] });
    let wlen = writable.len();
    if wlen == 0 {
        vlog!(Data, Err, LOG, "vring {qid}: request without room for a status");
        return Err(NotTaken::Completed(0));
    }
    let status_off = wlen - 1;
    // Writes the status where it can (a miss there: nothing written).
    let reject = |(st, why): Refusal| {
        vlog!(Data, Err, LOG, "vring {qid}: request refused ({why}), status {st}");
        NotTaken::Completed(if writable.write(w, mem.write, status_off, &[st]).is_ok() { 1 } else { 0 })
    };
    if writable.descs.iter().any(|d| d.flags & F_WRITE == 0) {
        return Err(reject((status::BADMSG, "device-readable descriptor after a writable one")));
    }
    if let Err(f) = writable.pieces(mem.write, status_off, 1, |_, _| ()) {
        return Err(outside(f, "status outside guest memory").unwrap_or_else(reject));
    }
    let mut raw = [0u8; HEADER_LEN];
    if let Err(f) = readable.read(mem.read, 0, &mut raw) {
        return Err(outside(f, "no request header").unwrap_or_else(reject));
    }
    let h = Header::new(raw);
    let req = Parts { inst, mem, readable: &readable, writable: &writable, h: &h };
    let staged = stage(&req, op, m).map_err(|e| e.unwrap_or_else(reject))?;
    let mut ctx = RequestCtx {
        magic: MAGIC,
        instance: inst.id,
        request: 0,
        qid,
        head,
        nseg: writable.descs.len() as u16,
        out_from: staged.out_from,
        dst_len: staged.dst_len,
        digest_len: staged.digest_len,
        #[cfg(feature = "abi-25-11")]
        rsa: u8::from(staged.rsa),
        status_off: status_off as u32,
        seg_addr: [0; MAX_DESCS],
        seg_len: [0; MAX_DESCS],
    };
    for (i, d) in writable.descs.iter().enumerate() {
        ctx.seg_addr[i] = d.addr;
        ctx.seg_len[i] = d.len;
    }
    ctx.request = next_request(inst);
    if !OwnedPool::store(m, ctx) {
        return Err(reject((status::ERR, "mbuf without room for the request")));
    }
    Ok((ctx.request, staged.entry))
}

/// A checked request, its op prepared: the session it holds and where its
/// results go.
struct Staged {
    entry: Arc<SessionEntry>,
    out_from: u32,
    dst_len: u32,
    digest_len: u32,
    #[cfg(feature = "abi-25-11")]
    rsa: bool,
}

/// Why a request is refused: its status and the log's reason.
type Refusal = (u8, &'static str);

/// A request not prepared: refused (`Err`), or waiting for an IOTLB miss
/// (`Ok`).
type Unprepared = Result<NotTaken, Refusal>;

/// An access that failed at `what`: a refusal (BADMSG, outside the
/// request's buffers or guest memory), or an IOTLB miss to wait for.
fn outside(f: Fault, what: &'static str) -> Unprepared {
    match f {
        Fault::Miss { iova, perm } => Ok(NotTaken::Missed { iova, perm }),
        Fault::Unmapped => Err((status::BADMSG, what)),
    }
}

fn session_of(inst: &Instance, h: &Header) -> Result<Arc<SessionEntry>, Unprepared> {
    inst.sessions.lock().by_id.get(&h.session_id).cloned().ok_or(Err((status::INVSESS, "unknown session")))
}

/// A request being checked: its instance, header and buffers.
struct Parts<'a, S> {
    inst: &'a Instance,
    mem: Spaces<S>,
    readable: &'a Stream<'a>,
    writable: &'a Stream<'a>,
    h: &'a Header,
}

/// Checks request `req` against its session and buffers, copies its input
/// into `m` and prepares `op`.
fn stage<'m, S: AddressSpace<'m>>(
    req: &Parts<'_, S>,
    op: CryptoOp,
    m: &mut Mbuf,
) -> Result<Staged, Unprepared> {
    let Parts { inst, mem, readable, writable, h } = *req;
    #[cfg(feature = "abi-25-11")]
    if let Some(rsa_op) = h.akcipher_op() {
        return stage_rsa(req, rsa_op, op, m);
    }
    if !h.is_cipher() {
        return Err(Err((status::NOTSUPP, "not a cipher request")));
    }
    let entry = session_of(inst, h)?;
    let Some(shape) = entry.shape else {
        return Err(Err((status::BADMSG, "a cipher request on an RSA session")));
    };
    let plan = request::plan(h, shape, readable.len(), writable.len()).map_err(|st| Err((st, "lengths")))?;
    let results = (plan.dst_len + plan.digest_len) as usize;
    writable
        .pieces(mem.write, 0, results, |_, _| ())
        .map_err(|f| outside(f, "destination outside guest memory"))?;
    copy_in(mem, readable, writable, &plan, m).map_err(|f| outside(f, "source outside guest memory"))?;
    let mut iv = [0u8; 32];
    let iv = &mut iv[..plan.iv_len as usize];
    readable.read(mem.read, HEADER_LEN as u64, iv).map_err(|f| outside(f, "IV outside guest memory"))?;
    let auth = plan.auth.map(|(off, len)| (off, len, DIGEST_OFF));
    if !op.prepare(&entry.session, m, iv, plan.cipher, auth) {
        return Err(Err((status::ERR, "cannot attach the session")));
    }
    Ok(Staged {
        entry,
        out_from: plan.out_from,
        dst_len: plan.dst_len,
        digest_len: plan.digest_len,
        #[cfg(feature = "abi-25-11")]
        rsa: false,
    })
}

/// An RSA request: its input (the source, and a verify's message) copied
/// to the start of `m`'s data, the cryptodev's output area after it.
#[cfg(feature = "abi-25-11")]
fn stage_rsa<'m, S: AddressSpace<'m>>(
    req: &Parts<'_, S>,
    rsa_op: RsaOp,
    op: CryptoOp,
    m: &mut Mbuf,
) -> Result<Staged, Unprepared> {
    let Parts { inst, mem, readable, writable, h } = *req;
    let entry = session_of(inst, h)?;
    if entry.shape.is_some() {
        return Err(Err((status::BADMSG, "an RSA request on a symmetric session")));
    }
    let plan =
        request::rsa_plan(h, rsa_op, readable.len(), writable.len()).map_err(|st| Err((st, "lengths")))?;
    writable
        .pieces(mem.write, 0, plan.output_room() as usize, |_, _| ())
        .map_err(|f| outside(f, "destination outside guest memory"))?;
    let data = m.tail_mut(RSA_DATA_LEN as usize);
    data.fill(0);
    readable
        .read(mem.read, HEADER_LEN as u64, &mut data[..plan.input_len() as usize])
        .map_err(|f| outside(f, "source outside guest memory"))?;
    m.commit(RSA_DATA_LEN as usize);
    let output = (RSA_OUT_OFF, plan.output_room());
    if !op.prepare_rsa(&entry.session, m, rsa_op, (0, plan.src_len), plan.message_len(), output) {
        return Err(Err((status::ERR, "the application's op cannot be an RSA operation")));
    }
    Ok(Staged { entry, out_from: 0, dst_len: plan.output_room(), digest_len: 0, rsa: true })
}

/// A number for a new request.
fn next_request(inst: &Instance) -> u64 {
    let mut s = inst.sessions.lock();
    s.next_request += 1;
    s.next_request - 1
}

/// Keeps a request's session alive, and its mbuf (its op's too) held,
/// until it comes back.
fn track(inst: &Instance, request: u64, entry: Arc<SessionEntry>, m: Mbuf) {
    inst.sessions.lock().inflight.insert(request, (entry, HeldMbuf(m)));
}

/// The mbuf of a request come back, once: `None` if it was finalized
/// already (or is not ours).
fn untrack(inst: &Instance, request: u64) -> Option<Mbuf> {
    inst.sessions.lock().inflight.remove(&request).map(|(_, m)| m.0)
}

/// The source data (and for a chained request the MAC area of the
/// destination, which a verifying session compares) into `m`; the
/// destination's extra bytes are zero.
fn copy_in<'m, S: AddressSpace<'m>>(
    mem: Spaces<S>,
    readable: &Stream<'_>,
    writable: &Stream<'_>,
    plan: &Plan,
    m: &mut Mbuf,
) -> Result<(), Fault> {
    let data = m.tail_mut(plan.dst_len as usize);
    let src_at = (HEADER_LEN as u32 + plan.iv_len) as u64;
    let (src, rest) = data.split_at_mut(plan.src_len as usize);
    readable.read(mem.read, src_at, src)?;
    rest.fill(0);
    m.commit(plan.dst_len as usize);
    if plan.digest_len > 0 {
        let d = digest_area(m, plan.dst_len, plan.digest_len).ok_or(Fault::Unmapped)?;
        // Read through the writable part's rights, as it is written later.
        return writable.read(mem.write, u64::from(plan.dst_len), d);
    }
    Ok(())
}

/// The MAC's bytes in `m` (whose data is `dst_len` bytes long).
fn digest_area(m: &mut Mbuf, dst_len: u32, digest_len: u32) -> Option<&mut [u8]> {
    let from = (DIGEST_OFF - dst_len) as usize;
    m.try_tail_mut(from + digest_len as usize).map(|t| &mut t[from..])
}

/// Completes processed ops: results written back, used entries published,
/// mbufs freed. Consecutive ops of one ring are completed under one lock
/// and one used-index store, and give one call fd.
pub(super) fn finalize(ops: &[Option<CryptoOp>], callfds: &mut Vec<i32>) -> u16 {
    let mut i = 0;
    while i < ops.len() {
        let Some((_, ctx)) = ours(ops[i]) else { break };
        let Some(inst) = instance_by_id(ctx.instance) else {
            // The device went away with this request in flight: its mbuf
            // stays with the instance's records, left allocated with its
            // pool (`free`).
            i += 1;
            continue;
        };
        let group_end = i + ops[i..]
            .iter()
            .take_while(|o| ours(**o).is_some_and(|(_, c)| c.instance == ctx.instance && c.qid == ctx.qid))
            .count();
        if callfds.len() == MAX_CALLFDS {
            vlog!(Data, Err, LOG, "Too many vqs");
            break;
        }
        if let Some(fd) =
            complete_group(&inst, ctx.qid, &ops[i..group_end]).filter(|fd| !callfds.contains(fd))
        {
            callfds.push(fd);
        }
        i = group_end;
    }
    i as u16
}

/// An op `fetch` prepared: it and its request (in its mbuf).
fn ours(op: Option<CryptoOp>) -> Option<(CryptoOp, RequestCtx)> {
    let op = op?;
    let ctx = op.mbuf_priv::<RequestCtx>()?.filter(|c| c.magic == MAGIC && usize::from(c.nseg) <= MAX_DESCS);
    if ctx.is_none() {
        vlog!(Data, Err, LOG, "Failed to retrieve vc_req");
    }
    Some((op, ctx?))
}

/// Completes `ops` (all of ring `qid` of `inst`); the ring's call fd.
fn complete_group(inst: &Instance, qid: u16, ops: &[Option<CryptoOp>]) -> Option<i32> {
    let dev = crate::device::get(inst.vid);
    let vq = dev.and_then(|d| d.vq(qid));
    let mut guard = vq.map(|vq| vq.lock());
    if let (Some(dev), Some(s)) = (dev, guard.as_deref_mut()) {
        dev.adopt_newer_view(s);
    }
    let mut used: Vec<UsedElem> = Vec::with_capacity(ops.len());
    for &op in ops {
        let Some((op, ctx)) = ours(op) else { continue };
        let Some(mut m) = untrack(inst, ctx.request) else { continue };
        if let Some(s) = guard.as_deref_mut().filter(|s| s.ring().is_some()) {
            let len = write_back(s, op, &mut m, &ctx);
            used.push(UsedElem { id: ctx.head, len, count: 1 });
        }
        mbuf::free_bulk(&mut [Some(m)]);
    }
    let s = guard.as_deref_mut()?;
    let mem = Arc::clone(s.mem());
    let ring = s.ring()?.in_table(&mem);
    if !used.is_empty() {
        split::publish(s, &ring, &used);
    }
    Some(s.call().raw()).filter(|fd| *fd >= 0)
}

/// Writes one request's result and status into the guest; its used length.
/// Behind an IOMMU, through the IOTLB as it is now: a buffer unmapped since
/// the fetch is not written (nor asked for: the request is over).
fn write_back(s: &VqState, op: CryptoOp, m: &mut Mbuf, ctx: &RequestCtx) -> u32 {
    let descs: Vec<Desc> = (0..usize::from(ctx.nseg))
        .map(|i| Desc { addr: ctx.seg_addr[i], len: ctx.seg_len[i], flags: F_WRITE, next_or_id: 0 })
        .collect();
    let out = Stream { descs: &descs };
    let log = s.active_log();
    let w = Writer::new(log.as_deref().map(|l| (l, &**s.mem())));
    match s.iotlb() {
        None => write_results(&out, w, PhysicalSpace(s.mem()), op, m, ctx),
        Some(view) => write_results(&out, w, IovaSpace::new(s.mem(), view, PERM_WO), op, m, ctx),
    }
}

fn write_results<'m>(
    out: &Stream<'_>,
    w: Writer<'_>,
    mem: impl AddressSpace<'m>,
    op: CryptoOp,
    m: &mut Mbuf,
    ctx: &RequestCtx,
) -> u32 {
    let status_at = u64::from(ctx.status_off);
    if !op.succeeded() {
        return if out.write(w, mem, status_at, &[status::ERR]).is_ok() { 1 } else { 0 };
    }
    #[cfg(feature = "abi-25-11")]
    if ctx.rsa != 0 {
        // The output is as long as the cryptodev made it; the guest gave room
        // for `dst_len` bytes.
        let produced = op.rsa_output_len();
        let output = &m.data()[RSA_OUT_OFF as usize..][..produced.min(MAX_RSA_DATA) as usize];
        let ok = produced <= ctx.dst_len && out.write(w, mem, 0, output).is_ok();
        let st = if ok { status::OK } else { status::ERR };
        return match (out.write(w, mem, status_at, &[st]).is_ok(), ok) {
            (false, _) => 0,
            (true, true) => produced + 1,
            (true, false) => 1,
        };
    }
    let from = ctx.out_from as usize;
    let mut ok = out.write(w, mem, from as u64, &m.data()[from..ctx.dst_len as usize]).is_ok();
    if ctx.digest_len > 0 {
        ok &= match digest_area(m, ctx.dst_len, ctx.digest_len) {
            Some(d) => out.write(w, mem, u64::from(ctx.dst_len), d).is_ok(),
            None => false,
        };
    }
    let st = if ok { status::OK } else { status::ERR };
    if out.write(w, mem, status_at, &[st]).is_err() {
        return 0;
    }
    if ok {
        ctx.dst_len + ctx.digest_len + 1
    } else {
        1
    }
}
