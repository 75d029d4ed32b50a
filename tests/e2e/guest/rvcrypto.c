/* SPDX-License-Identifier: BSD-3-Clause
 * rvcrypto: run in the vhost-crypto guest (built static by
 * tests/e2e/vhost_crypto.py). Through AF_ALG, cbc(aes) bound to the virtio
 * driver by its driver name (virtio_crypto_aes_cbc), it runs the NIST SP
 * 800-38A CBC-AES128 known answers, then random rounds (random key, IV,
 * 16..4096 bytes, encrypt and decrypt) compared with the kernel's software
 * cbc(aes-generic). Prints one line per part, "RVCRYPTO: ..." */
#include <linux/if_alg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "sp800_38a.h"

#ifndef SOL_ALG
#define SOL_ALG 279
#endif

static int alg_open(const char *driver, const uint8_t *key)
{
	struct sockaddr_alg sa = { .salg_family = AF_ALG, .salg_type = "skcipher" };
	int tfm = socket(AF_ALG, SOCK_SEQPACKET, 0);

	strncpy((char *)sa.salg_name, driver, sizeof(sa.salg_name) - 1);
	if (tfm < 0 || bind(tfm, (struct sockaddr *)&sa, sizeof(sa)) < 0 ||
	    setsockopt(tfm, SOL_ALG, ALG_SET_KEY, key, 16) < 0) {
		perror(driver);
		if (tfm >= 0)
			close(tfm);
		return -1;
	}
	return tfm;
}

/* One operation on tfm: 0 or -1. */
static int alg_run(int tfm, int encrypt, const uint8_t *iv, const uint8_t *in, size_t len, uint8_t *out)
{
	char cbuf[CMSG_SPACE(4) + CMSG_SPACE(sizeof(struct af_alg_iv) + 16)] = { 0 };
	struct iovec iov = { (void *)in, len };
	struct msghdr msg = { .msg_control = cbuf, .msg_controllen = sizeof(cbuf), .msg_iov = &iov, .msg_iovlen = 1 };
	struct cmsghdr *c = CMSG_FIRSTHDR(&msg);
	struct af_alg_iv *aiv;
	size_t got = 0;
	int op = accept(tfm, NULL, 0), ok = 0;

	if (op < 0)
		return -1;
	c->cmsg_level = SOL_ALG;
	c->cmsg_type = ALG_SET_OP;
	c->cmsg_len = CMSG_LEN(4);
	*(uint32_t *)CMSG_DATA(c) = encrypt ? ALG_OP_ENCRYPT : ALG_OP_DECRYPT;
	c = CMSG_NXTHDR(&msg, c);
	c->cmsg_level = SOL_ALG;
	c->cmsg_type = ALG_SET_IV;
	c->cmsg_len = CMSG_LEN(sizeof(*aiv) + 16);
	aiv = (struct af_alg_iv *)CMSG_DATA(c);
	aiv->ivlen = 16;
	memcpy(aiv->iv, iv, 16);
	if (sendmsg(op, &msg, 0) == (ssize_t)len) {
		while (got < len) {
			ssize_t n = read(op, out + got, len - got);

			if (n <= 0)
				break;
			got += (size_t)n;
		}
		ok = got == len;
	}
	close(op);
	return ok ? 0 : -1;
}

int main(int argc, char **argv)
{
	int rounds = argc > 1 ? atoi(argv[1]) : 200, good = 0, kat = 0, i, tv;
	uint8_t out[4096];

	tv = alg_open("virtio_crypto_aes_cbc", nist_key);
	if (tv < 0) {
		printf("RVCRYPTO: FAIL cannot bind virtio_crypto_aes_cbc\n");
		return 1;
	}
	/* Each of the four blocks alone (IV = previous ciphertext block) and all 64 bytes. */
	for (i = 0; i < 4; i++) {
		const uint8_t *iv = i ? nist_ct + 16 * (i - 1) : nist_iv;

		kat += alg_run(tv, 1, iv, nist_pt + 16 * i, 16, out) == 0 && memcmp(out, nist_ct + 16 * i, 16) == 0;
		kat += alg_run(tv, 0, iv, nist_ct + 16 * i, 16, out) == 0 && memcmp(out, nist_pt + 16 * i, 16) == 0;
	}
	kat += alg_run(tv, 1, nist_iv, nist_pt, 64, out) == 0 && memcmp(out, nist_ct, 64) == 0;
	kat += alg_run(tv, 0, nist_iv, nist_ct, 64, out) == 0 && memcmp(out, nist_pt, 64) == 0;
	close(tv);
	printf("RVCRYPTO: kat %d/10\n", kat);
	srand(2211);
	for (i = 0; i < rounds; i++) {
		uint8_t k[16], iv[16], in[4096], want[4096];
		size_t len = 16 * (1 + (size_t)(rand() % 256)), j;
		int enc = i & 1, v, s;

		for (j = 0; j < 16; j++) {
			k[j] = (uint8_t)rand();
			iv[j] = (uint8_t)rand();
		}
		for (j = 0; j < len; j++)
			in[j] = (uint8_t)rand();
		v = alg_open("virtio_crypto_aes_cbc", k);
		s = alg_open("cbc(aes-generic)", k);
		if (v >= 0 && s >= 0 && alg_run(s, enc, iv, in, len, want) == 0 && alg_run(v, enc, iv, in, len, out) == 0 &&
		    memcmp(out, want, len) == 0)
			good++;
		else
			printf("RVCRYPTO: round %d (%s, %zu bytes) differs\n", i, enc ? "encrypt" : "decrypt", len);
		if (v >= 0)
			close(v);
		if (s >= 0)
			close(s);
	}
	printf("RVCRYPTO: random %d/%d\n", good, rounds);
	return kat == 10 && good == rounds ? 0 : 1;
}
