/* SPDX-License-Identifier: BSD-3-Clause
 * A scripted vhost-user front-end for the C tests: raw messages with fds
 * over a unix socket, replies with a timeout, and a memfd "guest memory". */
#ifndef RVHOST_FFI_FRONTEND_H
#define RVHOST_FFI_FRONTEND_H

#include <stddef.h>
#include <stdint.h>

#define FE_NEED_REPLY (1u << 3)
#define FE_VERSION 1u

enum {
	REQ_GET_FEATURES = 1, REQ_SET_FEATURES = 2, REQ_SET_OWNER = 3, REQ_SET_MEM_TABLE = 5,
	REQ_SET_VRING_NUM = 8, REQ_SET_VRING_ADDR = 9, REQ_SET_VRING_BASE = 10, REQ_GET_VRING_BASE = 11,
	REQ_SET_VRING_KICK = 12, REQ_SET_VRING_CALL = 13, REQ_GET_PROTOCOL_FEATURES = 15,
	REQ_SET_PROTOCOL_FEATURES = 16, REQ_GET_QUEUE_NUM = 17, REQ_SET_VRING_ENABLE = 18,
	REQ_SET_STATUS = 39, REQ_GET_STATUS = 40,
};

struct fe_msg {
	uint32_t request, flags, size;
	uint8_t payload[1072]; /* DPDK 25.03's CREATE_CRYPTO_SESSION, the largest */
	int fds[8];
	int nfds;
};

struct guest_ram {
	int fd;
	uint8_t *addr;
	uint64_t size;
};

int fe_connect(const char *path);
/* Sends a message; returns 0 or -1. */
int fe_send(int sock, uint32_t request, uint32_t flags, const void *payload, uint32_t size, const int *fds, int nfds);
/* Receives one message within timeout_ms: 1 received, 0 peer closed, -1 error/timeout. */
int fe_recv(int sock, struct fe_msg *m, int timeout_ms);
/* Sends a request with a u64 payload (or none) and NEED_REPLY; returns the
 * replied u64, or UINT64_MAX on failure. */
uint64_t fe_call_u64(int sock, uint32_t request, const uint64_t *arg);
/* SET_VRING_NUM/BASE/ENABLE and SET_VRING_ADDR payloads. */
struct vstate { uint32_t index, num; };
struct vaddr { uint32_t index, flags; uint64_t desc, used, avail, log; };

/* Sends a request with NEED_REPLY; returns the ack's u64 (0 = success), or
 * -1 if sending failed or no 8-byte reply to that request came in 5 s. */
int64_t fe_acked(int sock, uint32_t request, const void *payload, uint32_t size, const int *fds, int nfds);
int guest_ram_init(struct guest_ram *r, uint64_t size);
void guest_ram_free(struct guest_ram *r);
int count_open_fds(void);
/* The librte_vhost.so file this process mapped (/proc/self/maps), or "". */
const char *loaded_vhost_library(void);

#endif
