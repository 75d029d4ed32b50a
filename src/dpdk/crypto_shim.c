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

int rvh_crypto_session_free(uint8_t dev_id, void *sess)
{
	return rte_cryptodev_sym_session_free(dev_id, sess);
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

struct rte_mbuf *rvh_crypto_op_mbuf(const struct rte_crypto_op *op)
{
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
