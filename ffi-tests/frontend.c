/* SPDX-License-Identifier: BSD-3-Clause */
#define _GNU_SOURCE
#include "frontend.h"

#include <dirent.h>
#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

int fe_connect(const char *path)
{
	struct sockaddr_un un = { .sun_family = AF_UNIX };
	int s, i;

	strncpy(un.sun_path, path, sizeof(un.sun_path) - 1);
	for (i = 0; i < 200; i++) {
		s = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
		if (s < 0)
			return -1;
		if (connect(s, (struct sockaddr *)&un, sizeof(un)) == 0)
			return s;
		close(s);
		usleep(20000);
	}
	return -1;
}

int fe_send(int sock, uint32_t request, uint32_t flags, const void *payload, uint32_t size,
	    const int *fds, int nfds)
{
	uint32_t hdr[3] = { request, flags, size };
	struct iovec iov[2] = { { hdr, sizeof(hdr) }, { (void *)payload, size } };
	char ctrl[CMSG_SPACE(sizeof(int) * 16)];
	struct msghdr mh = { .msg_iov = iov, .msg_iovlen = size ? 2 : 1 };

	if (nfds > 0) {
		struct cmsghdr *c;

		memset(ctrl, 0, sizeof(ctrl));
		mh.msg_control = ctrl;
		mh.msg_controllen = CMSG_SPACE(sizeof(int) * nfds);
		c = CMSG_FIRSTHDR(&mh);
		c->cmsg_level = SOL_SOCKET;
		c->cmsg_type = SCM_RIGHTS;
		c->cmsg_len = CMSG_LEN(sizeof(int) * nfds);
		memcpy(CMSG_DATA(c), fds, sizeof(int) * nfds);
	}
	return sendmsg(sock, &mh, MSG_NOSIGNAL) == (ssize_t)(sizeof(hdr) + size) ? 0 : -1;
}

static int wait_readable(int sock, int timeout_ms)
{
	struct pollfd p = { .fd = sock, .events = POLLIN };

	return poll(&p, 1, timeout_ms) == 1 ? 0 : -1;
}

int fe_recv(int sock, struct fe_msg *m, int timeout_ms)
{
	char ctrl[CMSG_SPACE(sizeof(int) * 8)];
	struct iovec iov = { m, 12 };
	struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = ctrl,
			     .msg_controllen = sizeof(ctrl) };
	struct cmsghdr *c;
	ssize_t n;

	m->nfds = 0;
	if (wait_readable(sock, timeout_ms))
		return -1;
	n = recvmsg(sock, &mh, MSG_CMSG_CLOEXEC);
	if (n == 0)
		return 0;
	if (n != 12)
		return -1;
	for (c = CMSG_FIRSTHDR(&mh); c; c = CMSG_NXTHDR(&mh, c)) {
		if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_RIGHTS) {
			m->nfds = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
			memcpy(m->fds, CMSG_DATA(c), sizeof(int) * m->nfds);
		}
	}
	if (m->size > sizeof(m->payload))
		return -1;
	if (m->size && (wait_readable(sock, timeout_ms) || read(sock, m->payload, m->size) != (ssize_t)m->size))
		return -1;
	return 1;
}

uint64_t fe_call_u64(int sock, uint32_t request, const uint64_t *arg)
{
	struct fe_msg m;
	uint64_t v;

	if (fe_send(sock, request, FE_VERSION | FE_NEED_REPLY, arg, arg ? 8 : 0, NULL, 0))
		return UINT64_MAX;
	if (fe_recv(sock, &m, 5000) != 1 || m.request != request || m.size != 8)
		return UINT64_MAX;
	memcpy(&v, m.payload, 8);
	return v;
}

int guest_ram_init(struct guest_ram *r, uint64_t size)
{
	r->fd = memfd_create("guest", MFD_CLOEXEC);
	if (r->fd < 0 || ftruncate(r->fd, size))
		return -1;
	r->addr = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, r->fd, 0);
	r->size = size;
	return r->addr == MAP_FAILED ? -1 : 0;
}

void guest_ram_free(struct guest_ram *r)
{
	munmap(r->addr, r->size);
	close(r->fd);
}

int count_open_fds(void)
{
	DIR *d = opendir("/proc/self/fd");
	struct dirent *e;
	int n = 0;

	while (d && (e = readdir(d)))
		n += e->d_name[0] != '.';
	if (d)
		closedir(d);
	return n - 1; /* the directory's own fd */
}

/* The librte_vhost.so file this process mapped (/proc/self/maps), or "". */
const char *loaded_vhost_library(void)
{
	static char path[512];
	char line[1024];
	FILE *f = fopen("/proc/self/maps", "r");

	path[0] = 0;
	while (f && fgets(line, sizeof(line), f)) {
		char *p = strchr(line, '/');

		if (p && strstr(p, "librte_vhost.so")) {
			p[strcspn(p, "\n")] = 0;
			snprintf(path, sizeof(path), "%s", p);
			break;
		}
	}
	if (f)
		fclose(f);
	return path;
}

int64_t fe_acked(int sock, uint32_t request, const void *payload, uint32_t size, const int *fds, int nfds)
{
	struct fe_msg m;

	if (fe_send(sock, request, FE_VERSION | FE_NEED_REPLY, payload, size, fds, nfds))
		return -1;
	if (fe_recv(sock, &m, 5000) != 1 || m.request != request || m.size != 8)
		return -1;
	return (int64_t)*(uint64_t *)m.payload;
}
