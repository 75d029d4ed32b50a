/* SPDX-License-Identifier: BSD-3-Clause
 *
 * Thin wrappers over DPDK's cryptodev API for vhost-crypto (src/crypto):
 * virtio-crypto algorithm numbers to DPDK's enums, symmetric sessions built
 * from plain parameters, and the inline crypto-op helpers. The virtio side
 * (what a request may say, what is checked) stays in Rust.
 */
#include <rte_cryptodev.h>
#include <rte_crypto.h>
#include <rte_mbuf.h>
#include <rte_mempool.h>
#include <rte_version.h>

/* RSA sessions as vhost-crypto has them from DPDK 25.03 (the padding in the
 * transform, not in the op, since 23.x); stubs that refuse before. */
#if RTE_VERSION >= RTE_VERSION_NUM(25, 3, 0, 0)
#define RVH_HAVE_RSA 1
#endif

/* The IV of an op lives right after its symmetric part (DPDK's IV_OFFSET,
 * which applications size their op pools' private area for). */
#define RVH_IV_OFFSET (sizeof(struct rte_crypto_op) + sizeof(struct rte_crypto_sym_op))

/* Mirrors src/dpdk/crypto.rs `SessionParams`. */
struct rvh_crypto_session_params {
	uint32_t chain;           /* 0: cipher only; 1: cipher then hash; 2: hash then cipher */
	uint32_t cipher_algo;     /* virtio-crypto VIRTIO_CRYPTO_CIPHER_* */
	uint32_t encrypt;         /* cipher only: 1 encrypt, 0 decrypt */
	uint32_t cipher_key_len;
	const uint8_t *cipher_key;
	uint32_t hash_algo;       /* virtio-crypto VIRTIO_CRYPTO_MAC_* */
	uint32_t digest_len;
	uint32_t auth_key_len;
	const uint8_t *auth_key;
};

/* virtio-crypto (VIRTIO_CRYPTO_CIPHER_*) cipher algorithm -> DPDK's, with its
 * IV length: the ones 22.11 creates sessions for; -1 if unsupported. */
static int cipher_algo(uint32_t virtio_algo, enum rte_crypto_cipher_algorithm *algo, uint16_t *iv_len)
{
	switch (virtio_algo) {
	case 3: *algo = RTE_CRYPTO_CIPHER_AES_CBC; *iv_len = 16; return 0;
	case 7: *algo = RTE_CRYPTO_CIPHER_3DES_ECB; *iv_len = 8; return 0;
	case 8: *algo = RTE_CRYPTO_CIPHER_3DES_CBC; *iv_len = 8; return 0;
	case 9: *algo = RTE_CRYPTO_CIPHER_3DES_CTR; *iv_len = 8; return 0;
	default: return -1;
	}
}

/* virtio-crypto VIRTIO_CRYPTO_NO_MAC / VIRTIO_CRYPTO_MAC_* -> DPDK's. */
static int auth_algo(uint32_t virtio_algo, enum rte_crypto_auth_algorithm *algo)
{
	switch (virtio_algo) {
	case 0: *algo = RTE_CRYPTO_AUTH_NULL; return 0;
	case 1: *algo = RTE_CRYPTO_AUTH_MD5_HMAC; return 0;
	case 2: *algo = RTE_CRYPTO_AUTH_SHA1_HMAC; return 0;
	case 3: *algo = RTE_CRYPTO_AUTH_SHA224_HMAC; return 0;
	case 4: *algo = RTE_CRYPTO_AUTH_SHA256_HMAC; return 0;
	case 5: *algo = RTE_CRYPTO_AUTH_SHA384_HMAC; return 0;
	case 6: *algo = RTE_CRYPTO_AUTH_SHA512_HMAC; return 0;
	case 26: *algo = RTE_CRYPTO_AUTH_AES_CMAC; return 0;
	case 27: *algo = RTE_CRYPTO_AUTH_KASUMI_F9; return 0;
	case 28: *algo = RTE_CRYPTO_AUTH_SNOW3G_UIA2; return 0;
	case 41: *algo = RTE_CRYPTO_AUTH_AES_GMAC; return 0;
	case 49: *algo = RTE_CRYPTO_AUTH_AES_CBC_MAC; return 0;
	case 53: *algo = RTE_CRYPTO_AUTH_AES_XCBC_MAC; return 0;
	default: return -1;
	}
}

/* The IV length a session of this virtio cipher algorithm takes, or -1. */
int rvh_crypto_cipher_iv_len(uint32_t virtio_algo)
{
	enum rte_crypto_cipher_algorithm algo;
	uint16_t iv_len;

	return cipher_algo(virtio_algo, &algo, &iv_len) < 0 ? -1 : iv_len;
}

/* Creates a session on cryptodev dev_id from pool mp. Returns NULL with
 * *unsupported set when an algorithm has no DPDK counterpart, NULL alone
 * when the cryptodev refused. */
void *rvh_crypto_session_create(uint8_t dev_id, struct rte_mempool *mp,
				const struct rvh_crypto_session_params *p, int *unsupported)
{
	struct rte_crypto_sym_xform cipher = {0}, auth = {0};
	struct rte_crypto_sym_xform *first = &cipher;

	*unsupported = 0;
	cipher.type = RTE_CRYPTO_SYM_XFORM_CIPHER;
	if (cipher_algo(p->cipher_algo, &cipher.cipher.algo, &cipher.cipher.iv.length) < 0) {
		*unsupported = 1;
		return NULL;
	}
	cipher.cipher.key.data = p->cipher_key;
	cipher.cipher.key.length = p->cipher_key_len;
	cipher.cipher.iv.offset = RVH_IV_OFFSET;
	cipher.cipher.op = p->encrypt ? RTE_CRYPTO_CIPHER_OP_ENCRYPT : RTE_CRYPTO_CIPHER_OP_DECRYPT;
	if (p->chain != 0) {
		auth.type = RTE_CRYPTO_SYM_XFORM_AUTH;
		if (auth_algo(p->hash_algo, &auth.auth.algo) < 0) {
			*unsupported = 1;
			return NULL;
		}
		auth.auth.key.data = p->auth_key;
		auth.auth.key.length = p->auth_key_len;
		auth.auth.digest_length = p->digest_len;
		if (p->chain == 1) {
			cipher.cipher.op = RTE_CRYPTO_CIPHER_OP_ENCRYPT;
			auth.auth.op = RTE_CRYPTO_AUTH_OP_GENERATE;
			cipher.next = &auth;
		} else {
			cipher.cipher.op = RTE_CRYPTO_CIPHER_OP_DECRYPT;
			auth.auth.op = RTE_CRYPTO_AUTH_OP_VERIFY;
			auth.next = &cipher;
			first = &auth;
		}
	}
	return rte_cryptodev_sym_session_create(dev_id, first, mp);
}

int rvh_crypto_session_free(uint8_t dev_id, void *sess, int asym)
{
#ifdef RVH_HAVE_RSA
	if (asym)
		return rte_cryptodev_asym_session_free(dev_id, sess);
#else
	if (asym)
		return -1;
#endif
	return rte_cryptodev_sym_session_free(dev_id, sess);
}

/* One big-endian integer of an RSA key. Mirrors src/dpdk/crypto.rs `Bytes`. */
struct rvh_bytes {
	const uint8_t *data;
	size_t len;
};

/* An asymmetric op carries no mbuf: the one holding its request is named
 * in the op's private area (which the application sizes for the IV). */
struct rvh_asym_tag {
	uint64_t magic;
	struct rte_mbuf *m;
};
#define RVH_ASYM_TAG_MAGIC 0x7276686f73745253ull

/* Creates an RSA session (private key n, e, d, p, q, dP, dQ, qInv, in that
 * order; PKCS#1 v1.5 padding or none) on dev_id from the asymmetric
 * session pool mp; NULL if refused. */
void *rvh_crypto_rsa_session_create(uint8_t dev_id, struct rte_mempool *mp, const struct rvh_bytes *parts,
				    int pkcs1)
{
#ifdef RVH_HAVE_RSA
	struct rte_crypto_asym_xform x = {0};
	rte_crypto_uint *dst[8] = { &x.rsa.n, &x.rsa.e, &x.rsa.d, &x.rsa.qt.p, &x.rsa.qt.q,
				    &x.rsa.qt.dP, &x.rsa.qt.dQ, &x.rsa.qt.qInv };
	void *sess = NULL;
	int i;

	x.xform_type = RTE_CRYPTO_ASYM_XFORM_RSA;
	x.rsa.key_type = RTE_RSA_KEY_TYPE_QT;
	x.rsa.padding.type = pkcs1 ? RTE_CRYPTO_RSA_PADDING_PKCS1_5 : RTE_CRYPTO_RSA_PADDING_NONE;
	for (i = 0; i < 8; i++) {
		dst[i]->data = (uint8_t *)(uintptr_t)parts[i].data;
		dst[i]->length = parts[i].len;
	}
	if (rte_cryptodev_asym_session_create(dev_id, &x, mp, &sess) < 0)
		return NULL;
	return sess;
#else
	(void)dev_id, (void)mp, (void)parts, (void)pkcs1;
	return NULL;
#endif
}

/* Makes op an RSA operation of type op_type (DPDK's enum
 * rte_crypto_asym_op_type) with session sess on m's data: the input at
 * in_off (for a verify the signature, then the message), the output at
 * out_off. -1 if op's pool has no room for an asymmetric op and its tag,
 * or a range leaves m's data. */
int rvh_crypto_rsa_op_prepare(struct rte_crypto_op *op, void *sess, struct rte_mbuf *m, uint32_t op_type,
			      uint32_t in_off, uint32_t in_len, uint32_t msg_len, uint32_t out_off, uint32_t out_len)
{
#ifdef RVH_HAVE_RSA
	const struct rte_crypto_op_pool_private *pool = rte_mempool_get_priv(op->mempool);
	struct rte_crypto_rsa_op_param *rsa = &op->asym->rsa;
	struct rvh_asym_tag *tag;
	uint8_t *in = rte_pktmbuf_mtod_offset(m, uint8_t *, in_off);
	uint8_t *out = rte_pktmbuf_mtod_offset(m, uint8_t *, out_off);

	if ((pool->type != RTE_CRYPTO_OP_TYPE_ASYMMETRIC && pool->type != RTE_CRYPTO_OP_TYPE_UNDEFINED) ||
	    pool->priv_size < sizeof(*tag) ||
	    (uint64_t)in_off + in_len + msg_len > m->data_len || (uint64_t)out_off + out_len > m->data_len)
		return -1;
	op->type = RTE_CRYPTO_OP_TYPE_ASYMMETRIC;
	op->status = RTE_CRYPTO_OP_STATUS_NOT_PROCESSED;
	if (rte_crypto_op_attach_asym_session(op, sess) < 0)
		return -1;
	memset(rsa, 0, sizeof(*rsa));
	rsa->op_type = op_type;
	switch (op_type) {
	case RTE_CRYPTO_ASYM_OP_ENCRYPT:
		rsa->message = (rte_crypto_param){ .data = in, .length = in_len };
		rsa->cipher = (rte_crypto_param){ .data = out, .length = out_len };
		break;
	case RTE_CRYPTO_ASYM_OP_DECRYPT:
		rsa->cipher = (rte_crypto_param){ .data = in, .length = in_len };
		rsa->message = (rte_crypto_param){ .data = out, .length = out_len };
		break;
	case RTE_CRYPTO_ASYM_OP_SIGN:
		rsa->message = (rte_crypto_param){ .data = in, .length = in_len };
		rsa->sign = (rte_crypto_param){ .data = out, .length = out_len };
		break;
	case RTE_CRYPTO_ASYM_OP_VERIFY:
		rsa->sign = (rte_crypto_param){ .data = in, .length = in_len };
		rsa->message = (rte_crypto_param){ .data = in + in_len, .length = msg_len };
		break;
	default:
		return -1;
	}
	tag = rte_crypto_op_ctod_offset(op, struct rvh_asym_tag *,
					sizeof(struct rte_crypto_op) + sizeof(struct rte_crypto_asym_op));
	*tag = (struct rvh_asym_tag){ RVH_ASYM_TAG_MAGIC, m };
	return 0;
#else
	(void)op, (void)sess, (void)m, (void)op_type, (void)in_off, (void)in_len, (void)msg_len, (void)out_off,
		(void)out_len;
	return -1;
#endif
}

/* The bytes an RSA op wrote (its output's length as the PMD set it). */
uint32_t rvh_crypto_rsa_op_out_len(const struct rte_crypto_op *op)
{
#ifdef RVH_HAVE_RSA
	const struct rte_crypto_rsa_op_param *rsa = &op->asym->rsa;

	switch (rsa->op_type) {
	case RTE_CRYPTO_ASYM_OP_ENCRYPT: return rsa->cipher.length;
	case RTE_CRYPTO_ASYM_OP_DECRYPT: return rsa->message.length;
	case RTE_CRYPTO_ASYM_OP_SIGN: return rsa->sign.length;
	default: return 0;
	}
#else
	(void)op;
	return 0;
#endif
}

/* Makes op a symmetric operation with session sess, in place on m (data
 * from offset 0), with iv_len bytes of IV; the auth fields and digest
 * (at digest_off in m) only for chained sessions. */
int rvh_crypto_op_prepare(struct rte_crypto_op *op, void *sess, struct rte_mbuf *m,
			  const uint8_t *iv, uint16_t iv_len, uint32_t cipher_off, uint32_t cipher_len,
			  int chained, uint32_t auth_off, uint32_t auth_len, uint32_t digest_off)
{
	struct rte_crypto_sym_op *sym = op->sym;

	op->type = RTE_CRYPTO_OP_TYPE_SYMMETRIC;
	op->status = RTE_CRYPTO_OP_STATUS_NOT_PROCESSED;
	if (rte_crypto_op_attach_sym_session(op, sess) < 0)
		return -1;
	rte_memcpy(rte_crypto_op_ctod_offset(op, uint8_t *, RVH_IV_OFFSET), iv, iv_len);
	sym->m_src = m;
	sym->m_dst = NULL;
	sym->cipher.data.offset = cipher_off;
	sym->cipher.data.length = cipher_len;
	if (chained) {
		sym->auth.data.offset = auth_off;
		sym->auth.data.length = auth_len;
		sym->auth.digest.data = rte_pktmbuf_mtod_offset(m, uint8_t *, digest_off);
		sym->auth.digest.phys_addr = rte_pktmbuf_iova_offset(m, digest_off);
	}
	return 0;
}

/* The mbuf of an op rvh_crypto_op_prepare or rvh_crypto_rsa_op_prepare
 * made (an asymmetric op names it in its tag). */
struct rte_mbuf *rvh_crypto_op_mbuf(const struct rte_crypto_op *op)
{
#ifdef RVH_HAVE_RSA
	if (op->type == RTE_CRYPTO_OP_TYPE_ASYMMETRIC) {
		const struct rte_crypto_op_pool_private *pool = rte_mempool_get_priv(op->mempool);
		const struct rvh_asym_tag *tag = rte_crypto_op_ctod_offset(op, const struct rvh_asym_tag *,
				sizeof(struct rte_crypto_op) + sizeof(struct rte_crypto_asym_op));

		return pool->priv_size < sizeof(*tag) || tag->magic != RVH_ASYM_TAG_MAGIC ? NULL : tag->m;
	}
#endif
	return op->type == RTE_CRYPTO_OP_TYPE_SYMMETRIC ? op->sym->m_src : NULL;
}

int rvh_crypto_op_succeeded(const struct rte_crypto_op *op)
{
	return op->status == RTE_CRYPTO_OP_STATUS_SUCCESS;
}

void *rvh_mbuf_priv(struct rte_mbuf *m, uint16_t *priv_size)
{
	*priv_size = rte_pktmbuf_priv_size(m->pool);
	return rte_mbuf_to_priv(m);
}

int rvh_mempool_full(const struct rte_mempool *mp)
{
	return rte_mempool_full(mp);
}
