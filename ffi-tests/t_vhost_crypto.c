/* SPDX-License-Identifier: BSD-3-Clause
 * vhost-crypto through the C API, as DPDK's examples/vhost_crypto drives it:
 * rte_vhost_crypto_driver_start, rte_vhost_crypto_create from new_device,
 * fetch -> a real software cryptodev (crypto_openssl) -> finalize. The
 * front-end here speaks like QEMU 7.2's cryptodev-vhost-user (no
 * SET_VRING_ENABLE, no SET_STATUS, sessions in QEMU 7.1's layout) and also
 * sends a session in DPDK 22.11's layout. Requests are laid out as Linux's
 * virtio_crypto driver lays them out (one indirect table: header, IV,
 * source, destination, status). Checked: NIST SP 800-38A CBC-AES128
 * known answers, random rounds against OpenSSL's software AES-CBC, every
 * bad request completed with its virtio-crypto status and the ring moving
 * on, a cipher-then-HMAC-SHA1 chained request against OpenSSL, used entries at the used index, the status in the last writable
 * descriptor.
 *
 * Built against DPDK 25.03 or later, a second front-end connection then
 * does RSA (akcipher) as 25.03 added it: a session from a PKCS#1 private
 * key that OpenSSL generates (CREATE_CRYPTO_SESSION in 25.03's layout),
 * sign, verify, encrypt and decrypt through the ring on crypto_openssl,
 * compared with OpenSSL's own results, and malformed keys refused; and
 * first an AES-CBC session in 25.03's layout.
 *
 * Last, a third connection behind a virtual IOMMU (VIRTIO_F_IOMMU_PLATFORM,
 * on a socket registered with RTE_VHOST_USER_IOMMU_SUPPORT): ring and
 * buffer addresses are IOVAs the front-end maps with IOTLB updates; a
 * request whose buffers are mapped is served, one whose destination is
 * not waits at the head of the ring while the back-end asks for it (an
 * IOTLB miss on the back-end channel) and is served once it is mapped, and
 * a bad one gets its status through the IOTLB.
 *
 * Deliberate differences from DPDK 22.11, named where checked: 22.11 never
 * calls new_device for such a front-end (its rings stay disabled), writes
 * the status into the first writable descriptor after the data, writes the
 * used entry at used->ring[avail->ring[head]], and leaves a bad request at
 * the head of the ring forever. */
#define _GNU_SOURCE
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include <linux/virtio_ring.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rsa.h>
#include <rte_bus_vdev.h>
#include <rte_crypto.h>
#include <rte_cryptodev.h>
#include <rte_eal.h>
#include <rte_lcore.h>
#include <rte_vhost.h>
#include <rte_vhost_crypto.h>
#include <rte_version.h>

#if RTE_VERSION >= RTE_VERSION_NUM(25, 3, 0, 0)
#define HAVE_RSA 1
#endif

#include "../tests/e2e/guest/sp800_38a.h"
#include "frontend.h"

static int passed, failed;

#define CHECK(cond, ...) do { \
	if (cond) { passed++; } else { failed++; printf("FAIL %s:%d: ", __func__, __LINE__); \
		printf(__VA_ARGS__); printf("\n"); } } while (0)

enum { REQ_CREATE_SESSION = 26, REQ_CLOSE_SESSION = 27 };
#define RING 64
#define DESC_GPA 0x10000ull
#define AVAIL_GPA 0x11000ull
#define USED_GPA 0x12000ull
#define TABLES_GPA 0x20000ull /* one indirect table of 16 entries per head */
#define BUFS_GPA 0x40000ull   /* 16 KiB of buffers per head */
#define RAM_SIZE (BUFS_GPA + RING * 0x4000ull)

#define STATUS_OK 0
#define STATUS_ERR 1
#define STATUS_BADMSG 2
#define STATUS_INVSESS 4

/* ---- the back-end side: examples/vhost_crypto in miniature ---- */
static uint8_t cid;
static struct rte_mempool *sess_pool, *op_pool;
/* The RSA phase's: an asymmetric session pool and op pool, as
 * examples/vhost_crypto --asymmetric-crypto makes them. */
static struct rte_mempool *asym_sess_pool, *asym_op_pool;
static int rsa_phase;
static pthread_mutex_t ev_lock = PTHREAD_MUTEX_INITIALIZER;
static int dev_vid = -1, create_rc = 1, destroyed;

static int cb_new_device(int vid)
{
	int rc = rte_vhost_crypto_create(vid, cid, rsa_phase ? asym_sess_pool : sess_pool, rte_socket_id());

	if (rc == 0)
		rc = rte_vhost_crypto_set_zero_copy(vid, RTE_VHOST_CRYPTO_ZERO_COPY_DISABLE);
	pthread_mutex_lock(&ev_lock);
	create_rc = rc;
	dev_vid = vid;
	pthread_mutex_unlock(&ev_lock);
	return rc;
}

static void cb_destroy_device(int vid)
{
	rte_vhost_crypto_free(vid);
	pthread_mutex_lock(&ev_lock);
	destroyed = 1;
	pthread_mutex_unlock(&ev_lock);
}

static const struct rte_vhost_device_ops ops = { .new_device = cb_new_device, .destroy_device = cb_destroy_device };

/* Waits up to 5 s for new_device; the device's vid or -1. */
static int wait_for_device(void)
{
	int waited, vid = -1;

	for (waited = 0; waited < 500 && vid < 0; waited++) {
		pthread_mutex_lock(&ev_lock);
		vid = dev_vid;
		pthread_mutex_unlock(&ev_lock);
		if (vid < 0)
			usleep(10000);
	}
	return vid;
}

static int setup_cryptodev(void)
{
	struct rte_cryptodev_config conf = { .socket_id = (int)rte_socket_id(), .nb_queue_pairs = 1 };
	struct rte_cryptodev_qp_conf qp = { .nb_descriptors = 256 };
	int id;

	if (rte_vdev_init("crypto_openssl0", NULL) < 0 || (id = rte_cryptodev_get_dev_id("crypto_openssl0")) < 0)
		return -1;
	cid = (uint8_t)id;
	sess_pool = rte_cryptodev_sym_session_pool_create("vhc_sess", 256,
			rte_cryptodev_sym_get_private_session_size(cid), 0, 0, (int)rte_socket_id());
	op_pool = rte_crypto_op_pool_create("vhc_ops", RTE_CRYPTO_OP_TYPE_SYMMETRIC, 512, 0,
			VHOST_CRYPTO_MAX_IV_LEN, (int)rte_socket_id());
	qp.mp_session = sess_pool;
#ifdef HAVE_RSA
	/* 64 bytes of user data, as the example gives (25.11 keeps a request
	 * there; rvhost does not need it). */
	asym_sess_pool = rte_cryptodev_asym_session_pool_create("vhc_asess", 64, 0, 64, (int)rte_socket_id());
	asym_op_pool = rte_crypto_op_pool_create("vhc_aops", RTE_CRYPTO_OP_TYPE_ASYMMETRIC, 512, 0,
			VHOST_CRYPTO_MAX_IV_LEN, (int)rte_socket_id());
	if (!asym_sess_pool || !asym_op_pool)
		return -1;
#endif
	if (!sess_pool || !op_pool || rte_cryptodev_configure(cid, &conf) ||
	    rte_cryptodev_queue_pair_setup(cid, 0, &qp, (int)rte_socket_id()) || rte_cryptodev_start(cid))
		return -1;
	return 0;
}

/* One round of the example's worker: fetch, through the cryptodev, finalize.
 * Returns the requests fetched; *callfds_out the call fds finalize gave. */
static int run_worker(int vid, int *ncallfds_out)
{
	struct rte_crypto_op *cops[64], *done[64];
	int callfds[VIRTIO_CRYPTO_MAX_NUM_BURST_VQS];
	uint16_t n, nb_callfds = 0, deq = 0, enq;
	int spins = 0;
	struct rte_mempool *pool = rsa_phase ? asym_op_pool : op_pool;

	if (rte_crypto_op_bulk_alloc(pool, rsa_phase ? RTE_CRYPTO_OP_TYPE_ASYMMETRIC : RTE_CRYPTO_OP_TYPE_SYMMETRIC,
				     cops, 64) != 64)
		return -1;
	n = rte_vhost_crypto_fetch_requests(vid, 0, cops, 64);
	enq = rte_cryptodev_enqueue_burst(cid, 0, cops, n);
	while (deq < enq && spins++ < 1000000)
		deq += rte_cryptodev_dequeue_burst(cid, 0, &done[deq], enq - deq);
	*ncallfds_out = 0;
	CHECK(enq == n && deq == enq, "cryptodev took %u of %u fetched ops and returned %u", enq, n, deq);
	if (deq) {
		uint16_t fin = rte_vhost_crypto_finalize_requests(done, deq, callfds, &nb_callfds);

		CHECK(fin == deq, "finalize took %u of %u ops", fin, deq);
		*ncallfds_out = nb_callfds;
	}
	rte_mempool_put_bulk(pool, (void **)cops, 64);
	return n;
}

/* ---- the front-end side: QEMU 7.2's cryptodev-vhost-user ---- */
static struct guest_ram ram;
static int sock = -1, kickfd, callfd;
/* --dpdk-frontend: enable the ring and send sessions in 22.11's layout only,
 * as a front-end that speaks 22.11's protocol does (DPDK 22.11 serves it). */
static int dpdk_frontend, rsa_only;
static uint16_t avail_idx, used_seen;
/* The IOMMU phase: the IOVA of guest-physical address 0 (0: no IOMMU), and
 * the front-end's end of the back-end request channel (the back-end's
 * while connecting). */
#define IOVA_BASE 0x700000000ull
static uint64_t iova_off;
static int backend_fd = -1;

static struct vring_desc *gdesc(uint64_t gpa) { return (struct vring_desc *)(ram.addr + gpa); }
static struct vring_avail *avail(void) { return (struct vring_avail *)(ram.addr + AVAIL_GPA); }
static struct vring_used *used(void) { return (struct vring_used *)(ram.addr + USED_GPA); }

enum { REQ_SET_SLAVE_REQ_FD = 21, REQ_IOTLB_MSG = 22, BACKEND_IOTLB_MSG = 1 };
enum { PERM_RO = 1, PERM_WO = 2, PERM_RW = 3, IOTLB_MISS = 1, IOTLB_UPDATE = 2 };

/* Maps guest-physical [gpa, gpa + size) at its IOVA with rights `perm`
 * (an IOTLB update, as QEMU's vIOMMU sends); 0 once acknowledged. */
static int iotlb_map(uint64_t gpa, uint64_t size, uint8_t perm)
{
	uint8_t p[32] = { 0 };
	uint64_t v[3] = { gpa + iova_off, size, (uintptr_t)ram.addr + gpa };

	memcpy(p, v, sizeof(v));
	p[24] = perm;
	p[25] = IOTLB_UPDATE;
	return fe_acked(sock, REQ_IOTLB_MSG, p, sizeof(p), NULL, 0) == 0 ? 0 : -1;
}

static int connect_like_qemu72(const char *path)
{
	uint64_t f, pf = (1ULL << 3) | (1ULL << 7) | (1ULL << 9) | (iova_off ? 1ULL << 5 : 0), want;
	uint32_t mt[2 + 8] = { 1 };
	uint64_t *r = (uint64_t *)&mt[2];
	struct vstate num = { 0, RING }, base = { 0, 0 };
	/* Without an IOMMU the ring addresses are the front-end's own. */
	uint64_t base_addr = iova_off ? iova_off : (uintptr_t)ram.addr;
	struct vaddr a = { 0, 0, base_addr + DESC_GPA, base_addr + USED_GPA, base_addr + AVAIL_GPA, 0 };
	uint64_t idx = 0;

	sock = fe_connect(path);
	if (sock < 0 || fe_send(sock, REQ_SET_OWNER, FE_VERSION, NULL, 0, NULL, 0))
		return -1;
	f = fe_call_u64(sock, REQ_GET_FEATURES, NULL);
	want = (1ULL << 32) | (1ULL << 30) | (1ULL << 28) | (iova_off ? 1ULL << 33 : 0);
	if ((f & want) != want || fe_acked(sock, REQ_SET_FEATURES, &want, 8, NULL, 0))
		return -2;
	if ((fe_call_u64(sock, REQ_GET_PROTOCOL_FEATURES, NULL) & pf) != pf ||
	    fe_acked(sock, REQ_SET_PROTOCOL_FEATURES, &pf, 8, NULL, 0))
		return -3;
	r[0] = 0;
	r[1] = ram.size;
	r[2] = (uintptr_t)ram.addr;
	r[3] = 0;
	if (fe_acked(sock, REQ_SET_MEM_TABLE, mt, 8 + 32, &ram.fd, 1))
		return -4;
	if (iova_off && (fe_acked(sock, REQ_SET_SLAVE_REQ_FD, NULL, 0, &backend_fd, 1) ||
			 iotlb_map(DESC_GPA, 0x3000, PERM_RW) || iotlb_map(TABLES_GPA, RING * 256, PERM_RO)))
		return -7;
	if (fe_acked(sock, REQ_SET_VRING_NUM, &num, 8, NULL, 0) || fe_acked(sock, REQ_SET_VRING_BASE, &base, 8, NULL, 0) ||
	    fe_acked(sock, REQ_SET_VRING_ADDR, &a, sizeof(a), NULL, 0) ||
	    fe_acked(sock, REQ_SET_VRING_KICK, &idx, 8, &kickfd, 1) ||
	    fe_acked(sock, REQ_SET_VRING_CALL, &idx, 8, &callfd, 1))
		return -5;
	if (dpdk_frontend) {
		struct vstate en = { 0, 1 };

		if (fe_acked(sock, REQ_SET_VRING_ENABLE, &en, 8, NULL, 0))
			return -6;
	}
	return 0;
}

/* CREATE_CRYPTO_SESSION for AES-CBC with `key` (16 bytes): QEMU 7.1's layout
 * (no op_code) or DPDK 22.11's. Returns the replied session id. */
static int64_t create_session(int qemu71, int encrypt, const uint8_t *key)
{
	uint8_t p[632] = { 0 };
	uint32_t base = qemu71 ? 8 : 12, v;
	struct fe_msg m;
	int64_t id;

	if (!qemu71) {
		v = 2; /* VIRTIO_CRYPTO_CIPHER_CREATE_SESSION */
		memcpy(p + 8, &v, 4);
	}
	v = 3; /* AES_CBC */
	memcpy(p + base, &v, 4);
	v = 16;
	memcpy(p + base + 4, &v, 4);
	p[base + 24] = 1;                /* op_type: cipher */
	p[base + 25] = encrypt ? 1 : 2;  /* direction */
	memcpy(p + 56, key, 16);
	if (fe_send(sock, REQ_CREATE_SESSION, FE_VERSION, p, sizeof(p), NULL, 0) || fe_recv(sock, &m, 5000) != 1 ||
	    m.request != REQ_CREATE_SESSION || m.size != sizeof(p))
		return INT64_MIN;
	memcpy(&id, m.payload, 8);
	return id;
}

/* A cipher-then-HMAC-SHA1 session in 22.11's layout (QEMU's builtin
 * back-end's chaining, which Linux's driver does not use). */
static int64_t create_chain_session(const uint8_t *key, const uint8_t *auth_key)
{
	uint8_t p[632] = { 0 };
	uint32_t f[7] = { 2, 3, 16, 2 /* HMAC_SHA1 */, 20, 20, 0 };
	struct fe_msg m;
	int64_t id;

	memcpy(p + 8, f, sizeof(f));
	p[36] = 2; /* algorithm chaining */
	p[38] = 2; /* hash mode: auth */
	p[39] = 2; /* cipher then hash */
	memcpy(p + 56, key, 16);
	memcpy(p + 120, auth_key, 20);
	if (fe_send(sock, REQ_CREATE_SESSION, FE_VERSION, p, sizeof(p), NULL, 0) || fe_recv(sock, &m, 5000) != 1)
		return INT64_MIN;
	memcpy(&id, m.payload, 8);
	return id;
}

/* A request as Linux lays it out, in head `h`'s indirect table: header, IV,
 * source (readable); the destination in `ndst` pieces, `extra` spare
 * writable bytes (repeated scatterlist entries), the status (writable). */
struct req {
	uint16_t head;
	uint64_t session;
	uint32_t opcode, iv_len, src_len, dst_len, ndst, extra;
	/* Chained requests: cipher and MAC ranges, MAC length (written after
	 * the destination, at digest_gpa). */
	int chained;
	uint32_t c_off, c_len, h_off, h_len, digest_len;
	uint64_t digest_gpa;
	const uint8_t *iv, *src;
	int no_status, dst_outside;
	uint64_t dst_gpa, status_gpa, extra_gpa;
};

static void post(struct req *q)
{
	uint64_t t = TABLES_GPA + q->head * 16 * 16ull, b = BUFS_GPA + q->head * 0x4000ull;
	struct vring_desc *tab = gdesc(t);
	uint64_t io = b + iova_off; /* the buffers as the descriptors name them */
	uint8_t *hdr = ram.addr + b;
	uint32_t n = 0, i, op_type = q->chained ? 2 : 1, piece;

	memset(hdr, 0, 72);
	memcpy(hdr, &q->opcode, 4);
	memcpy(hdr + 8, &q->session, 8);
	memcpy(hdr + 24, &q->iv_len, 4);
	memcpy(hdr + 28, &q->src_len, 4);
	memcpy(hdr + 32, &q->dst_len, 4);
	if (q->chained) {
		uint32_t para[6] = { q->c_off, q->c_len, q->h_off, q->h_len, 0, q->digest_len };

		memcpy(hdr + 36, para, sizeof(para));
	}
	memcpy(hdr + 64, &op_type, 4);
	tab[n++] = (struct vring_desc){ io, 72, VRING_DESC_F_NEXT, 0 };
	memcpy(ram.addr + b + 0x100, q->iv, q->iv_len);
	tab[n++] = (struct vring_desc){ io + 0x100, q->iv_len, VRING_DESC_F_NEXT, 0 };
	memcpy(ram.addr + b + 0x200, q->src, q->src_len < 0x1800 ? q->src_len : 0x1800);
	tab[n++] = (struct vring_desc){ io + 0x200, q->src_len < 0x1800 ? q->src_len : 0x1800, VRING_DESC_F_NEXT, 0 };
	q->dst_gpa = b + 0x2000;
	memset(ram.addr + q->dst_gpa, 0xee, 0x1800);
	piece = q->dst_len / q->ndst;
	for (i = 0; i < q->ndst; i++) {
		uint32_t len = i + 1 == q->ndst ? q->dst_len - piece * i : piece;

		tab[n++] = (struct vring_desc){ q->dst_outside ? RAM_SIZE * 4 : q->dst_gpa + iova_off + piece * i, len,
						VRING_DESC_F_NEXT | VRING_DESC_F_WRITE, 0 };
	}
	q->digest_gpa = b + 0x3800;
	memset(ram.addr + q->digest_gpa, 0xee, 64);
	if (q->chained)
		tab[n++] = (struct vring_desc){ q->digest_gpa + iova_off, q->digest_len, VRING_DESC_F_NEXT | VRING_DESC_F_WRITE, 0 };
	q->extra_gpa = b + 0x3900;
	if (q->extra)
		tab[n++] = (struct vring_desc){ q->extra_gpa + iova_off, q->extra, VRING_DESC_F_NEXT | VRING_DESC_F_WRITE, 0 };
	q->status_gpa = b + 0x3f00;
	ram.addr[q->status_gpa] = 0xaa;
	ram.addr[q->extra_gpa] = 0xaa;
	if (!q->no_status)
		tab[n++] = (struct vring_desc){ q->status_gpa + iova_off, 1, VRING_DESC_F_WRITE, 0 };
	for (i = 0; i + 1 < n; i++)
		tab[i].next = (uint16_t)(i + 1);
	tab[n - 1].flags &= (uint16_t)~VRING_DESC_F_NEXT;
	*gdesc(DESC_GPA + q->head * 16u) = (struct vring_desc){ t + iova_off, n * 16, VRING_DESC_F_INDIRECT, 0 };
	avail()->ring[avail_idx % RING] = q->head;
	__atomic_store_n(&avail()->idx, ++avail_idx, __ATOMIC_RELEASE);
}

/* Runs the worker until `n` more used entries appear (at most 100 rounds). */
static int complete(int n, int *signalled)
{
	int round, ncallfds, any_callfd = 0;
	eventfd_t v;

	for (round = 0; round < 100 && (uint16_t)(__atomic_load_n(&used()->idx, __ATOMIC_ACQUIRE) - used_seen) < n;
	     round++) {
		if (run_worker(dev_vid, &ncallfds) < 0)
			return -1;
		any_callfd |= ncallfds > 0;
	}
	*signalled = any_callfd || eventfd_read(callfd, &v) == 0;
	return (uint16_t)(used()->idx - used_seen);
}

/* The used entry for `head` among the new ones; its length or -1. */
static int64_t used_len_of(uint16_t head, int n)
{
	int i;

	for (i = 0; i < n; i++) {
		struct vring_used_elem *e = &used()->ring[(uint16_t)(used_seen + i) % RING];

		if (e->id == head)
			return e->len;
	}
	return -1;
}

static int aes_cbc(int enc, const uint8_t *key, const uint8_t *iv, const uint8_t *in, int len, uint8_t *out)
{
	EVP_CIPHER_CTX *c = EVP_CIPHER_CTX_new();
	int n1 = 0, n2 = 0, ok;

	ok = c && EVP_CipherInit_ex(c, EVP_aes_128_cbc(), NULL, key, iv, enc) && EVP_CIPHER_CTX_set_padding(c, 0) &&
	     EVP_CipherUpdate(c, out, &n1, in, len) && EVP_CipherFinal_ex(c, out + n1, &n2);
	EVP_CIPHER_CTX_free(c);
	return ok && n1 + n2 == len ? 0 : -1;
}

/* Closes the connection, waits for destroy_device, and connects to `path`
 * again (`rsa`: the device's instance gets the asymmetric session pool);
 * 0 once the new device's instance is created. */
static int reconnect(const char *path, int rsa)
{
	eventfd_t v;
	int waited, gone = 0;

	close(sock);
	for (waited = 0; waited < 500 && !gone; waited++) {
		usleep(10000);
		pthread_mutex_lock(&ev_lock);
		gone = destroyed;
		pthread_mutex_unlock(&ev_lock);
	}
	pthread_mutex_lock(&ev_lock);
	rsa_phase = rsa;
	dev_vid = -1;
	create_rc = 1;
	destroyed = 0;
	pthread_mutex_unlock(&ev_lock);
	memset(ram.addr, 0, BUFS_GPA);
	avail_idx = used_seen = 0;
	eventfd_read(callfd, &v);
	if (connect_like_qemu72(path))
		return -1;
	return wait_for_device() >= 0 && create_rc == 0 ? 0 : -1;
}

static void test_sessions_and_known_answers(int64_t enc, int64_t dec)
{
	struct req e = { .head = 5, .session = (uint64_t)enc, .opcode = 0, .iv_len = 16, .src_len = 64, .dst_len = 64,
			 .ndst = 2, .iv = nist_iv, .src = nist_pt };
	/* Decrypt with the writable part longer than the data: Linux 6.1's
	 * driver repeats scatterlist entries; the status is the last byte
	 * (22.11 writes it into the spare descriptor and the guest sees -EIO). */
	struct req d = { .head = 9, .session = (uint64_t)dec, .opcode = 1, .iv_len = 16, .src_len = 64, .dst_len = 64,
			 .ndst = 3, .extra = 48, .iv = nist_iv, .src = nist_ct };
	int n, signalled;

	post(&e);
	post(&d);
	n = complete(2, &signalled);
	CHECK(n == 2, "2 requests completed, got %d", n);
	CHECK(memcmp(ram.addr + e.dst_gpa, nist_ct, 64) == 0, "SP 800-38A F.2.1 CBC-AES128 encrypt");
	CHECK(ram.addr[e.status_gpa] == STATUS_OK && used_len_of(5, n) == 65, "encrypt: status OK, used len 65 (%ld)",
	      (long)used_len_of(5, n));
	CHECK(memcmp(ram.addr + d.dst_gpa, nist_pt, 64) == 0, "SP 800-38A F.2.2 CBC-AES128 decrypt (22.11-layout session)");
	CHECK(ram.addr[d.status_gpa] == STATUS_OK && ram.addr[d.extra_gpa] == 0xaa,
	      "status in the last writable descriptor, spare descriptor untouched (22.11: status in the spare one)");
	/* 22.11 writes used->ring[avail->ring[head]]: slots 5 and 9 here. */
	CHECK(used()->ring[used_seen % RING].id == 5 && used()->ring[(used_seen + 1) % RING].id == 9,
	      "used entries at the used index (22.11: at used->ring[avail->ring[head]])");
	CHECK(signalled, "guest signalled");
	used_seen += (uint16_t)n;
}

static void test_random_rounds(int64_t enc, int64_t dec, const uint8_t *key)
{
	int round, good = 0;

	for (round = 0; round < 200; round++) {
		uint8_t iv[16], pt[4096], want[4096];
		uint32_t len = 16 * (1 + (uint32_t)(rand() % 256)), i;
		int encrypt = round & 1, n, signalled;
		struct req q = { .head = (uint16_t)(round % RING), .session = (uint64_t)(encrypt ? enc : dec),
				 .opcode = encrypt ? 0 : 1, .iv_len = 16, .src_len = len, .dst_len = len,
				 .ndst = 1 + (uint32_t)(rand() % 4), .extra = (uint32_t)(rand() % 3) * 16, .iv = iv, .src = pt };

		for (i = 0; i < 16; i++)
			iv[i] = (uint8_t)rand();
		for (i = 0; i < len; i++)
			pt[i] = (uint8_t)rand();
		if (aes_cbc(encrypt, key, iv, pt, (int)len, want))
			break;
		post(&q);
		n = complete(1, &signalled);
		if (n == 1 && memcmp(ram.addr + q.dst_gpa, want, len) == 0 && ram.addr[q.status_gpa] == STATUS_OK &&
		    used()->ring[used_seen % RING].len == len + 1)
			good++;
		else
			printf("round %d (%s, %u bytes): n=%d status=%u\n", round, encrypt ? "enc" : "dec", len, n,
			       ram.addr[q.status_gpa]);
		used_seen += (uint16_t)n;
	}
	CHECK(good == 200, "200 random rounds equal OpenSSL's AES-CBC, got %d", good);
}

static void test_bad_requests(int64_t enc)
{
	static const uint8_t zeros[4096];
	struct req bad[] = {
		{ .head = 1, .session = (uint64_t)enc, .iv_len = 16, .src_len = 64, .dst_len = 32, .ndst = 1, .iv = nist_iv, .src = zeros },
		{ .head = 2, .session = 777, .iv_len = 16, .src_len = 64, .dst_len = 64, .ndst = 1, .iv = nist_iv, .src = zeros },
		{ .head = 3, .session = (uint64_t)enc, .iv_len = 8, .src_len = 64, .dst_len = 64, .ndst = 1, .iv = nist_iv, .src = zeros },
		{ .head = 4, .session = (uint64_t)enc, .iv_len = 16, .src_len = 64, .dst_len = 64, .ndst = 1, .iv = nist_iv, .src = zeros, .dst_outside = 1 },
		{ .head = 6, .session = (uint64_t)enc, .iv_len = 16, .src_len = 8192, .dst_len = 8192, .ndst = 1, .iv = nist_iv, .src = zeros },
	};
	const uint8_t want[] = { STATUS_BADMSG, STATUS_INVSESS, STATUS_BADMSG, STATUS_BADMSG, STATUS_BADMSG };
	const char *what[] = { "destination shorter than source", "unknown session", "IV of 8 bytes for AES-CBC",
			       "destination outside guest memory", "source larger than 4096 bytes (and its buffer)" };
	struct req nostatus = { .head = 7, .session = (uint64_t)enc, .iv_len = 16, .src_len = 64, .dst_len = 64,
				.ndst = 1, .iv = nist_iv, .src = zeros, .no_status = 1 };
	struct req good = { .head = 8, .session = (uint64_t)enc, .iv_len = 16, .src_len = 64, .dst_len = 64, .ndst = 1,
			    .iv = nist_iv, .src = nist_pt };
	unsigned int i;
	int n, signalled, fetched, ncallfds;

	for (i = 0; i < 5; i++)
		post(&bad[i]);
	post(&nostatus);
	post(&good);
	fetched = run_worker(dev_vid, &ncallfds);
	CHECK(fetched == 1, "only the good request reaches the cryptodev (fetched %d)", fetched);
	n = complete(7 - (fetched == 1), &signalled);
	n = (uint16_t)(used()->idx - used_seen);
	CHECK(n == 7, "every request returned, the ring moved on (22.11: stuck at the first bad one), got %d", n);
	for (i = 0; i < 5; i++)
		CHECK(ram.addr[bad[i].status_gpa] == want[i] && used_len_of(bad[i].head, n) == 1,
		      "%s: status %u (want %u), used len %ld", what[i], ram.addr[bad[i].status_gpa], want[i],
		      (long)used_len_of(bad[i].head, n));
	/* Without a status byte, the 64 destination bytes are the last writable byte's home. */
	CHECK(used_len_of(7, n) == 0 || used_len_of(7, n) == 1, "no status descriptor: returned (len %ld)",
	      (long)used_len_of(7, n));
	CHECK(memcmp(ram.addr + good.dst_gpa, nist_ct, 64) == 0 && ram.addr[good.status_gpa] == STATUS_OK,
	      "the good request among them processed");
	CHECK(signalled, "guest signalled for the refused requests");
	used_seen += (uint16_t)n;
}

/* Encrypt-then-MAC: the destination is the source with its cipher range
 * encrypted, the MAC (over the encrypted hash range) follows it. */
static void test_chained(void)
{
	static const uint8_t auth_key[20] = { 'r', 'v', 'h', 'o', 's', 't', '-', 'h', 'm', 'a',
					      'c', '-', 'k', 'e', 'y', '-', '0', '1', '2', '3' };
	uint8_t src[96], want[96], mac[EVP_MAX_MD_SIZE];
	unsigned int mac_len = 0, i;
	int64_t id = create_chain_session(nist_key, auth_key);
	struct req q = { .head = 12, .session = (uint64_t)id, .iv_len = 16, .src_len = 96, .dst_len = 96, .ndst = 2,
			 .iv = nist_iv, .src = src, .chained = 1, .c_off = 16, .c_len = 64, .h_off = 0, .h_len = 96,
			 .digest_len = 20 };
	int n, signalled;

	CHECK(id > 0, "chained session created (%ld)", (long)id);
	for (i = 0; i < sizeof(src); i++)
		src[i] = (uint8_t)(i * 7);
	memcpy(src + 16, nist_pt, 64);
	memcpy(want, src, sizeof(want));
	memcpy(want + 16, nist_ct, 64);
	HMAC(EVP_sha1(), auth_key, 20, want, 96, mac, &mac_len);
	post(&q);
	n = complete(1, &signalled);
	CHECK(n == 1 && ram.addr[q.status_gpa] == STATUS_OK && used()->ring[used_seen % RING].len == 96 + 20 + 1,
	      "chained request completed (status %u)", ram.addr[q.status_gpa]);
	/* 22.11 writes back from the cipher offset on (dst[0..16) is left alone). */
	CHECK(memcmp(ram.addr + q.dst_gpa + 16, want + 16, 80) == 0, "cipher range encrypted in place");
	CHECK(mac_len == 20 && memcmp(ram.addr + q.digest_gpa, mac, 20) == 0, "HMAC-SHA1 of the encrypted data");
	used_seen += (uint16_t)n;
}

static void test_close_session(int64_t enc)
{
	uint64_t id = (uint64_t)enc, unknown = 4242;
	struct req q = { .head = 11, .session = id, .iv_len = 16, .src_len = 16, .dst_len = 16, .ndst = 1, .iv = nist_iv,
			 .src = nist_pt };
	int n, signalled;

	CHECK(fe_acked(sock, REQ_CLOSE_SESSION, &id, 8, NULL, 0) == 0, "close session acked");
	CHECK(fe_acked(sock, REQ_CLOSE_SESSION, &unknown, 8, NULL, 0) == 1, "closing an unknown session refused");
	post(&q);
	n = complete(1, &signalled);
	CHECK(n == 1 && ram.addr[q.status_gpa] == STATUS_INVSESS, "request on a closed session: INVSESS");
	used_seen += (uint16_t)n;
}

#ifdef HAVE_RSA
/* ---- RSA (akcipher), DPDK 25.03 and later ---- */
#define AKCIPHER_ENCRYPT 0x400
#define AKCIPHER_DECRYPT 0x401
#define AKCIPHER_SIGN 0x402
#define AKCIPHER_VERIFY 0x403
#define AKCIPHER_CREATE_SESSION 0x404
#define RSA_BYTES 128 /* a 1024-bit key: its DER fits the session's 1024-byte buffer */

/* CREATE_CRYPTO_SESSION in 25.03's layout (QEMU 9's): op code at 0, the
 * parameters (`params`, from byte 8), the session id replied at 1064. */
static int64_t create_session_2503(uint32_t op_code, const uint8_t *params, uint32_t len)
{
	uint8_t p[1072] = { 0 };
	struct fe_msg m;
	int64_t id;

	memcpy(p, &op_code, 4);
	memcpy(p + 8, params, len);
	if (fe_send(sock, REQ_CREATE_SESSION, FE_VERSION, p, sizeof(p), NULL, 0) || fe_recv(sock, &m, 5000) != 1 ||
	    m.request != REQ_CREATE_SESSION || m.size != sizeof(p))
		return INT64_MIN;
	memcpy(&id, m.payload + 1064, 8);
	return id;
}

/* RSA with private key `der`, PKCS#1 v1.5 padding, no hash. */
static int64_t create_rsa_session(const uint8_t *der, uint32_t der_len)
{
	uint8_t params[32 + 1024] = { 0 };
	uint32_t f[3] = { 1 /* RSA */, 2 /* private key */, der_len }, pad = 1;

	memcpy(params, f, sizeof(f));
	memcpy(params + 24, &pad, 4);
	memcpy(params + 32, der, der_len);
	return create_session_2503(AKCIPHER_CREATE_SESSION, params, sizeof(params));
}

/* A symmetric session in 25.03's layout: AES-CBC encrypt, SP 800-38A. */
static void test_2503_layout_cipher(void)
{
	uint8_t params[48 + 64] = { 0 };
	uint32_t f[2] = { 3 /* AES_CBC */, 16 };
	int64_t id;
	struct req e = { .head = 13, .opcode = 0, .iv_len = 16, .src_len = 64, .dst_len = 64, .ndst = 1,
			 .iv = nist_iv, .src = nist_pt };
	int n, signalled;

	memcpy(params, f, sizeof(f));
	params[24] = 1; /* op_type: cipher */
	params[25] = 1; /* encrypt */
	memcpy(params + 48, nist_key, 16);
	id = create_session_2503(2 /* VIRTIO_CRYPTO_CIPHER_CREATE_SESSION */, params, sizeof(params));
	CHECK(id > 0, "AES-CBC session in 25.03's layout, id replied last (%ld)", (long)id);
	e.session = (uint64_t)id;
	post(&e);
	n = complete(1, &signalled);
	CHECK(n == 1 && ram.addr[e.status_gpa] == STATUS_OK && memcmp(ram.addr + e.dst_gpa, nist_ct, 64) == 0,
	      "SP 800-38A CBC-AES128 encrypt on the 25.03-layout session");
	used_seen += (uint16_t)n;
}

/* An RSA request as Linux lays it out in head `h`'s indirect table: header,
 * source (readable); for a verify the message (readable) else the
 * destination (writable); the status. Returns the destination's address. */
static uint64_t post_rsa(uint16_t h, uint64_t session, uint32_t opcode, const uint8_t *src, uint32_t src_len,
			 const uint8_t *msg, uint32_t dst_len, uint64_t *status_gpa)
{
	uint64_t t = TABLES_GPA + h * 16 * 16ull, b = BUFS_GPA + h * 0x4000ull;
	struct vring_desc *tab = gdesc(t);
	uint8_t *hdr = ram.addr + b;
	uint32_t algo = 1, n = 0, i;
	uint16_t dst_flags = opcode == AKCIPHER_VERIFY ? 0 : VRING_DESC_F_WRITE;

	memset(hdr, 0, 72);
	memcpy(hdr, &opcode, 4);
	memcpy(hdr + 4, &algo, 4);
	memcpy(hdr + 8, &session, 8);
	memcpy(hdr + 24, &src_len, 4);
	memcpy(hdr + 28, &dst_len, 4);
	tab[n++] = (struct vring_desc){ b, 72, VRING_DESC_F_NEXT, 0 };
	memcpy(ram.addr + b + 0x100, src, src_len);
	tab[n++] = (struct vring_desc){ b + 0x100, src_len, VRING_DESC_F_NEXT, 0 };
	memset(ram.addr + b + 0x1000, 0xee, 0x1000);
	if (msg)
		memcpy(ram.addr + b + 0x1000, msg, dst_len);
	tab[n++] = (struct vring_desc){ b + 0x1000, dst_len, VRING_DESC_F_NEXT | dst_flags, 0 };
	*status_gpa = b + 0x3f00;
	ram.addr[*status_gpa] = 0xaa;
	tab[n++] = (struct vring_desc){ *status_gpa, 1, VRING_DESC_F_WRITE, 0 };
	for (i = 0; i + 1 < n; i++)
		tab[i].next = (uint16_t)(i + 1);
	*gdesc(DESC_GPA + h * 16u) = (struct vring_desc){ t, n * 16, VRING_DESC_F_INDIRECT, 0 };
	avail()->ring[avail_idx % RING] = h;
	__atomic_store_n(&avail()->idx, ++avail_idx, __ATOMIC_RELEASE);
	return b + 0x1000;
}

/* Posts one RSA request and runs it; its status (or -1), *used_len. */
static int rsa_round(uint64_t session, uint32_t opcode, const uint8_t *src, uint32_t src_len, const uint8_t *msg,
		     uint32_t dst_len, uint8_t *out, int64_t *used_len)
{
	uint64_t status_gpa, dst = post_rsa(3, session, opcode, src, src_len, msg, dst_len, &status_gpa);
	int n, signalled;

	n = complete(1, &signalled);
	*used_len = n == 1 ? used_len_of(3, n) : -1;
	used_seen += (uint16_t)n;
	if (out)
		memcpy(out, ram.addr + dst, dst_len + 16);
	return n == 1 ? ram.addr[status_gpa] : -1;
}

/* OpenSSL's RSA with PKCS#1 v1.5 padding: op 0 encrypt, 1 decrypt, 2 sign. */
static size_t openssl_rsa(EVP_PKEY *key, int op, const uint8_t *in, size_t in_len, uint8_t *out)
{
	EVP_PKEY_CTX *c = EVP_PKEY_CTX_new(key, NULL);
	size_t out_len = 512;
	int ok = c && (op == 0 ? EVP_PKEY_encrypt_init(c) : op == 1 ? EVP_PKEY_decrypt_init(c) : EVP_PKEY_sign_init(c)) > 0 &&
		 EVP_PKEY_CTX_set_rsa_padding(c, RSA_PKCS1_PADDING) > 0 &&
		 (op == 0 ? EVP_PKEY_encrypt(c, out, &out_len, in, in_len) :
		  op == 1 ? EVP_PKEY_decrypt(c, out, &out_len, in, in_len) : EVP_PKEY_sign(c, out, &out_len, in, in_len)) > 0;

	EVP_PKEY_CTX_free(c);
	return ok ? out_len : 0;
}

static void test_rsa(const char *path)
{
	static const uint8_t msg[] = "rvhost RSA over virtio-crypto, 25.03";
	uint8_t *der = NULL, want[512], got[RSA_BYTES + 16], sig[512], ct[512], bad_sig[RSA_BYTES];
	EVP_PKEY *key = EVP_RSA_gen(8 * RSA_BYTES);
	int der_len = key ? i2d_PrivateKey(key, &der) : -1;
	int64_t id, bad_id, used_len;
	size_t n;
	int st;

	printf("RSA (akcipher, DPDK 25.03+): second connection, asymmetric pools\n");
	/* A new front-end connection (the same socket), whose device gets the
	 * asymmetric session pool: the application's choice per device, as
	 * examples/vhost_crypto --asymmetric-crypto. */
	CHECK(reconnect(path, 1) == 0, "second device with the asymmetric session pool");
	CHECK(der_len > 0 && der_len <= 1024, "OpenSSL's 1024-bit PKCS#1 key, %d bytes of DER", der_len);
	if (der_len <= 0 || der_len > 1024)
		return;
	id = create_rsa_session(der, (uint32_t)der_len);
	CHECK(id > 0, "RSA session created (%ld)", (long)id);
	/* Malformed keys: one byte short (its SEQUENCE runs past the given
	 * length: 25.11 reads the missing byte beyond it and makes a session),
	 * and not a SEQUENCE (25.11 replies -EINVAL, -22); rvhost replies the
	 * virtio-crypto status BADMSG to both. */
	bad_id = create_rsa_session(der, (uint32_t)der_len - 1);
	CHECK(bad_id == -STATUS_BADMSG, "key one byte short refused: session id %ld (want -%d)", (long)bad_id,
	      STATUS_BADMSG);
	der[0] ^= 0x01;
	bad_id = create_rsa_session(der, (uint32_t)der_len);
	der[0] ^= 0x01;
	CHECK(bad_id == -STATUS_BADMSG, "key not a SEQUENCE refused: session id %ld (want -%d)", (long)bad_id,
	      STATUS_BADMSG);

	/* Sign: PKCS#1 v1.5 is deterministic, so equal to OpenSSL's bytes. */
	n = openssl_rsa(key, 2, msg, sizeof(msg), want);
	st = rsa_round((uint64_t)id, AKCIPHER_SIGN, msg, sizeof(msg), NULL, RSA_BYTES, got, &used_len);
	CHECK(n == RSA_BYTES && st == STATUS_OK && memcmp(got, want, RSA_BYTES) == 0 && used_len == RSA_BYTES + 1,
	      "sign equals OpenSSL's signature (status %d, used len %ld)", st, (long)used_len);

	/* Verify: OpenSSL's signature passes, a corrupted one fails. */
	memcpy(sig, want, RSA_BYTES);
	st = rsa_round((uint64_t)id, AKCIPHER_VERIFY, sig, RSA_BYTES, msg, sizeof(msg), NULL, &used_len);
	CHECK(st == STATUS_OK && used_len == 1, "verify of OpenSSL's signature: status %d, used len %ld", st,
	      (long)used_len);
	memcpy(bad_sig, sig, RSA_BYTES);
	bad_sig[RSA_BYTES / 2] ^= 0x5a;
	st = rsa_round((uint64_t)id, AKCIPHER_VERIFY, bad_sig, RSA_BYTES, msg, sizeof(msg), NULL, &used_len);
	CHECK(st == STATUS_ERR, "verify of a corrupted signature: status %d (want ERR)", st);

	/* Encrypt (randomized padding): OpenSSL decrypts it back. */
	st = rsa_round((uint64_t)id, AKCIPHER_ENCRYPT, msg, sizeof(msg), NULL, RSA_BYTES, got, &used_len);
	n = st == STATUS_OK ? openssl_rsa(key, 1, got, RSA_BYTES, want) : 0;
	CHECK(st == STATUS_OK && used_len == RSA_BYTES + 1 && n == sizeof(msg) && memcmp(want, msg, n) == 0,
	      "encrypt: OpenSSL decrypts the message back (status %d, %zu bytes)", st, n);

	/* Decrypt what OpenSSL encrypted: the message, its length the used length. */
	n = openssl_rsa(key, 0, msg, sizeof(msg), ct);
	st = rsa_round((uint64_t)id, AKCIPHER_DECRYPT, ct, (uint32_t)n, NULL, RSA_BYTES, got, &used_len);
	CHECK(st == STATUS_OK && memcmp(got, msg, sizeof(msg)) == 0 && used_len == sizeof(msg) + 1,
	      "decrypt of OpenSSL's ciphertext (status %d, used len %ld)", st, (long)used_len);

	/* A signature longer than its destination: refused, nothing written
	 * past it (25.11 lets the cryptodev write the whole signature there). */
	st = rsa_round((uint64_t)id, AKCIPHER_SIGN, msg, sizeof(msg), NULL, RSA_BYTES / 2, got, &used_len);
	CHECK(st == STATUS_ERR && got[RSA_BYTES / 2] == 0xee, "sign into a short destination: status %d (want ERR)",
	      st);

	CHECK(fe_acked(sock, REQ_CLOSE_SESSION, &id, 8, NULL, 0) == 0, "RSA session closed");
	st = rsa_round((uint64_t)id, AKCIPHER_SIGN, msg, sizeof(msg), NULL, RSA_BYTES, got, &used_len);
	CHECK(st == STATUS_INVSESS, "sign on the closed session: status %d (want INVSESS)", st);
	OPENSSL_free(der);
	EVP_PKEY_free(key);
}
#endif

/* The next IOTLB miss the back-end sent within 1 s: 0, its IOVA and rights. */
static int next_miss(uint64_t *iova, uint8_t *perm)
{
	struct fe_msg m;

	if (fe_recv(backend_fd, &m, 1000) != 1 || m.request != BACKEND_IOTLB_MSG || m.size != 32 ||
	    m.payload[25] != IOTLB_MISS)
		return -1;
	memcpy(iova, m.payload, 8);
	*perm = m.payload[24];
	return 0;
}

/* A third connection, to `path` (registered with IOMMU support): ring and
 * buffers behind the IOTLB. */
static void test_iommu(const char *path)
{
	int sv[2], n, signalled, fetched, ncallfds;
	struct req e = { .head = 5, .opcode = 0, .iv_len = 16, .src_len = 64, .dst_len = 64, .ndst = 2, .iv = nist_iv,
			 .src = nist_pt };
	struct req w = e;
	uint64_t b5 = BUFS_GPA + 5 * 0x4000ull, b6 = BUFS_GPA + 6 * 0x4000ull, b7 = BUFS_GPA + 7 * 0x4000ull;
	uint64_t iova = 0;
	uint8_t perm = 0;
	int64_t enc;

	printf("behind a virtual IOMMU: third connection, IOVAs through the IOTLB\n");
	if (socketpair(AF_UNIX, SOCK_STREAM, 0, sv)) {
		CHECK(0, "socketpair");
		return;
	}
	iova_off = IOVA_BASE;
	backend_fd = sv[1]; /* the back-end's end, sent with SET_SLAVE_REQ_FD */
	CHECK(reconnect(path, 0) == 0, "device with VIRTIO_F_IOMMU_PLATFORM negotiated");
	close(sv[1]);
	backend_fd = sv[0];
	if (dev_vid < 0)
		return;
	enc = create_session(!dpdk_frontend, 1, nist_key);
	CHECK(enc > 0, "session created (%ld)", (long)enc);
	e.session = w.session = (uint64_t)enc;

	/* Mapped as Linux's DMA API maps them: the readable page read-only,
	 * the destination and status pages write-only. */
	CHECK(iotlb_map(b5, 0x1000, PERM_RO) == 0 && iotlb_map(b5 + 0x2000, 0x2000, PERM_WO) == 0, "buffers mapped");
	post(&e);
	n = complete(1, &signalled);
	CHECK(n == 1 && memcmp(ram.addr + e.dst_gpa, nist_ct, 64) == 0 && ram.addr[e.status_gpa] == STATUS_OK &&
	      used_len_of(5, n) == 65, "request through the IOTLB: SP 800-38A F.2.1, status OK, used len 65 (%d done)",
	      n);
	used_seen += (uint16_t)n;

	/* The destination page not mapped: the request waits, asked for. */
	w.head = 6;
	CHECK(iotlb_map(b6, 0x1000, PERM_RO) == 0 && iotlb_map(b6 + 0x3000, 0x1000, PERM_WO) == 0,
	      "buffers but the destination mapped");
	post(&w);
	fetched = run_worker(dev_vid, &ncallfds);
	CHECK(fetched == 0 && used()->idx == used_seen && ram.addr[w.status_gpa] == 0xaa,
	      "a request reaching an unmapped page is not taken, no status written (fetched %d)", fetched);
	CHECK(next_miss(&iova, &perm) == 0 && iova == IOVA_BASE + b6 + 0x2000 && perm == PERM_WO,
	      "IOTLB miss asked for its destination: IOVA %#lx, perm %u", (unsigned long)iova, perm);
	CHECK(iotlb_map(b6 + 0x2000, 0x1000, PERM_WO) == 0, "destination mapped on the miss");
	n = complete(1, &signalled);
	CHECK(n == 1 && memcmp(ram.addr + w.dst_gpa, nist_ct, 64) == 0 && ram.addr[w.status_gpa] == STATUS_OK &&
	      used_len_of(6, n) == 65, "the waiting request served once mapped (%d done)", n);
	used_seen += (uint16_t)n;

	/* A bad request (unknown session) through the IOTLB: its status. */
	w.head = 7;
	w.session = 777;
	CHECK(iotlb_map(b7, 0x1000, PERM_RO) == 0 && iotlb_map(b7 + 0x2000, 0x2000, PERM_WO) == 0,
	      "third request's buffers mapped");
	post(&w);
	n = complete(1, &signalled);
	CHECK(n == 1 && ram.addr[w.status_gpa] == STATUS_INVSESS && used_len_of(7, n) == 1,
	      "unknown session through the IOTLB: status INVSESS (%u), used len 1", ram.addr[w.status_gpa]);
	used_seen += (uint16_t)n;
	close(backend_fd);
}

int main(int argc, char **argv)
{
	char prefix[64], path[108], iommu_path[108];
	char *eal[] = { argv[0], "--no-huge", "-m", "512", "--no-pci", "--no-shconf", prefix,
			"--log-level=lib.vhost.*:error", "--log-level=user1:error" };
	uint8_t key2[16];
	uint64_t features;
	int64_t enc, dec, enc2, dec2;
	int i;

	dpdk_frontend = argc > 1 && strcmp(argv[1], "--dpdk-frontend") == 0;
	/* --dpdk-frontend --rsa-only: the RSA case alone, to watch DPDK 25.11's
	 * own library (whose symmetric sessions want 25.03's layout). */
	rsa_only = argc > 2 && strcmp(argv[2], "--rsa-only") == 0;
	snprintf(prefix, sizeof(prefix), "--file-prefix=rvhost-crypto-%d", getpid());
	snprintf(path, sizeof(path), "/tmp/rvhost-crypto-%d.sock", getpid());
	snprintf(iommu_path, sizeof(iommu_path), "/tmp/rvhost-crypto-iommu-%d.sock", getpid());
	if (rte_eal_init(sizeof(eal) / sizeof(eal[0]), eal) < 0 || setup_cryptodev()) {
		printf("EAL or crypto_openssl setup failed\n0 passed, 1 failed\n");
		return 1;
	}
	printf("librte_vhost loaded from %s\n", loaded_vhost_library());
	srand(22);
	unlink(path);
	CHECK(rte_vhost_driver_register(path, 0) == 0 && rte_vhost_driver_callback_register(path, &ops) == 0 &&
	      rte_vhost_crypto_driver_start(path) == 0, "rte_vhost_crypto_driver_start");
	/* The IOMMU phase's socket: 22.11's rte_vhost_crypto_driver_start
	 * offers no VIRTIO_F_IOMMU_PLATFORM; the application adds it. */
	unlink(iommu_path);
	CHECK(rte_vhost_driver_register(iommu_path, RTE_VHOST_USER_IOMMU_SUPPORT) == 0 &&
	      rte_vhost_driver_callback_register(iommu_path, &ops) == 0 &&
	      rte_vhost_crypto_driver_start(iommu_path) == 0 &&
	      rte_vhost_driver_get_features(iommu_path, &features) == 0 &&
	      rte_vhost_driver_set_features(iommu_path, features | 1ULL << 33) == 0,
	      "a second socket with VIRTIO_F_IOMMU_PLATFORM");
	kickfd = eventfd(0, EFD_NONBLOCK);
	callfd = eventfd(0, EFD_NONBLOCK);
	if (guest_ram_init(&ram, RAM_SIZE) || connect_like_qemu72(path)) {
		printf("front-end setup failed\n%d passed, %d failed\n", passed, failed + 1);
		return 1;
	}
	wait_for_device();
	CHECK(dev_vid >= 0 && create_rc == 0, "new_device (QEMU 7.2's front-end: 22.11 never calls it), create rc %d",
	      create_rc);
	if (dev_vid < 0 || create_rc) {
		printf("%d passed, %d failed\n", passed, failed);
		return 1;
	}
	printf("front-end: %s\n", dpdk_frontend ? "22.11's protocol" : "QEMU 7.2's");
	if (rsa_only)
		goto rsa;
	enc = create_session(!dpdk_frontend, 1, nist_key);
	dec = create_session(0, 0, nist_key);
	CHECK(enc > 0 && dec > 0 && enc != dec, "sessions in QEMU 7.1's and 22.11's layouts: %ld %ld", (long)enc, (long)dec);
	for (i = 0; i < 16; i++)
		key2[i] = (uint8_t)rand();
	enc2 = create_session(!dpdk_frontend, 1, key2);
	dec2 = create_session(!dpdk_frontend, 0, key2);
	test_sessions_and_known_answers(enc, dec);
	test_random_rounds(enc2, dec2, key2);
	test_bad_requests(enc);
	test_chained();
	test_close_session(enc);
#ifdef HAVE_RSA
	test_2503_layout_cipher();
#endif
rsa:
#ifdef HAVE_RSA
	test_rsa(path);
#endif
	if (!rsa_only)
		test_iommu(iommu_path);
	close(sock);
	usleep(200000);
	rte_vhost_driver_unregister(path);
	rte_vhost_driver_unregister(iommu_path);
	printf("%d passed, %d failed\n", passed, failed);
	return failed ? 1 : 0;
}
