/* SPDX-License-Identifier: BSD-3-Clause
 * Drives a librte_vhost.so.23 (Debian's or rvhost's: LD_LIBRARY_PATH decides)
 * through its C API, with a scripted vhost-user front-end over a real unix
 * socket: the message sequence DPDK's virtio-user sends, replies and
 * callbacks checked, getters checked against the test's own guest memory,
 * bad messages, fd leaks, unregister while connected, several sockets.
 * Where rvhost deliberately differs from DPDK 22.11 (stricter validation),
 * the expectation says so by name. */
#define _GNU_SOURCE
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <linux/virtio_ring.h>
#include <rte_eal.h>
#include <rte_vdpa.h>
#include <rte_vhost.h>
#include <rte_version.h>

#if RTE_VERSION >= RTE_VERSION_NUM(23, 7, 0, 0)
/* Since 23.07 a driver-SDK function (vdpa_driver.h, which Debian does not
 * install), still exported with version INTERNAL. */
int rte_vdpa_relay_vring_used(int vid, uint16_t qid, void *vring_m);
#endif

#include "frontend.h"

static int passed, failed;
static int is_stock;

#define CHECK(cond, ...) do { \
	if (cond) { passed++; } else { failed++; printf("FAIL %s:%d: ", __func__, __LINE__); \
		printf(__VA_ARGS__); printf("\n"); } } while (0)

/* ---- callbacks, recorded from the library's event thread ---- */
static pthread_mutex_t ev_lock = PTHREAD_MUTEX_INITIALIZER;
static int n_new_conn, n_new_dev, n_destroy_dev, n_destroy_conn, last_vid = -1;
static int vring_enabled[8];

static int cb_new_connection(int vid) { pthread_mutex_lock(&ev_lock); n_new_conn++; last_vid = vid; pthread_mutex_unlock(&ev_lock); return 0; }
static void cb_destroy_connection(int vid) { (void)vid; pthread_mutex_lock(&ev_lock); n_destroy_conn++; pthread_mutex_unlock(&ev_lock); }
static int cb_new_device(int vid) { (void)vid; pthread_mutex_lock(&ev_lock); n_new_dev++; pthread_mutex_unlock(&ev_lock); return 0; }
static void cb_destroy_device(int vid) { (void)vid; pthread_mutex_lock(&ev_lock); n_destroy_dev++; pthread_mutex_unlock(&ev_lock); }
static int cb_vring_state(int vid, uint16_t q, int enable)
{
	(void)vid;
	pthread_mutex_lock(&ev_lock);
	if (q < 8)
		vring_enabled[q] = enable;
	pthread_mutex_unlock(&ev_lock);
	return 0;
}

static const struct rte_vhost_device_ops ops = {
	.new_device = cb_new_device, .destroy_device = cb_destroy_device,
	.vring_state_changed = cb_vring_state, .new_connection = cb_new_connection,
	.destroy_connection = cb_destroy_connection,
};

static void reset_events(void)
{
	pthread_mutex_lock(&ev_lock);
	n_new_conn = n_new_dev = n_destroy_dev = n_destroy_conn = 0;
	last_vid = -1;
	memset(vring_enabled, 0, sizeof(vring_enabled));
	pthread_mutex_unlock(&ev_lock);
}

static int get_count(int *v)
{
	int r;

	pthread_mutex_lock(&ev_lock);
	r = *v;
	pthread_mutex_unlock(&ev_lock);
	return r;
}

/* Waits up to 5 s for a callback counter to reach `want`. */
static int wait_count(int *v, int want)
{
	int i;

	for (i = 0; i < 500 && get_count(v) < want; i++)
		usleep(10000);
	return get_count(v);
}

static char sock_path[108];
static int seq;

static void new_path(void)
{
	snprintf(sock_path, sizeof(sock_path), "/tmp/rvhost-ffi-%d-%d.sock", getpid(), ++seq);
	unlink(sock_path);
}

static int start_server_with(uint64_t flags, const struct rte_vhost_device_ops *with)
{
	new_path();
	reset_events();
	if (rte_vhost_driver_register(sock_path, flags) || rte_vhost_driver_callback_register(sock_path, with) ||
	    rte_vhost_driver_start(sock_path))
		return -1;
	return 0;
}

static int start_server(uint64_t flags)
{
	return start_server_with(flags, &ops);
}

#define PROTO_F_MQ (1ULL << 0)
#define PROTO_F_REPLY_ACK (1ULL << 3)
#define PROTO_F_STATUS (1ULL << 16)
#define F_PROTOCOL_FEATURES (1ULL << 30)
#define F_VERSION_1 (1ULL << 32)
#define F_MRG_RXBUF (1ULL << 15)
#define RING 256

static int negotiate_prefix(int s, uint64_t *features)
{
	uint64_t proto, pf = PROTO_F_MQ | PROTO_F_REPLY_ACK | PROTO_F_STATUS;

	if (fe_send(s, REQ_SET_OWNER, FE_VERSION, NULL, 0, NULL, 0))
		return -1;
	*features = fe_call_u64(s, REQ_GET_FEATURES, NULL);
	proto = fe_call_u64(s, REQ_GET_PROTOCOL_FEATURES, NULL);
	if (*features == UINT64_MAX || proto == UINT64_MAX || (proto & pf) != pf)
		return -1;
	return fe_acked(s, REQ_SET_PROTOCOL_FEATURES, &pf, 8, NULL, 0) == 0 ? 0 : -1;
}

/* The sequence virtio-user sends; rings of RING entries at fixed offsets. */
static int full_sequence(int s, struct guest_ram *ram, int efd[4], uint64_t *negotiated)
{
	uint64_t features, want, status;
	uint32_t mt[2 + 8];
	int q;

	if (negotiate_prefix(s, &features))
		return -1;
	for (q = 0; q < 2; q++) {
		uint64_t idx = q;

		if (fe_acked(s, REQ_SET_VRING_CALL, &idx, 8, &efd[2 + q], 1) != 0)
			return -2;
	}
	want = F_VERSION_1 | F_PROTOCOL_FEATURES | F_MRG_RXBUF;
	*negotiated = want;
	if ((features & want) != want || fe_acked(s, REQ_SET_FEATURES, &want, 8, NULL, 0) != 0)
		return -3;
	status = 0xb;
	if (fe_acked(s, REQ_SET_STATUS, &status, 8, NULL, 0) != 0 || fe_call_u64(s, REQ_GET_STATUS, NULL) != 0xb)
		return -4;
	memset(mt, 0, sizeof(mt));
	mt[0] = 1;
	{
		uint64_t *r = (uint64_t *)&mt[2];

		r[0] = 0;
		r[1] = ram->size;
		r[2] = (uint64_t)(uintptr_t)ram->addr;
		r[3] = 0;
	}
	if (fe_acked(s, REQ_SET_MEM_TABLE, mt, 8 + 32, &ram->fd, 1) != 0)
		return -5;
	for (q = 0; q < 2; q++) {
		uint64_t base_off = 0x10000 * (q + 1), idx = q;
		struct vstate num = { q, RING }, base = { q, q ? 5 : 0 };
		struct vaddr a = { q, 0, (uint64_t)(uintptr_t)ram->addr + base_off,
				   (uint64_t)(uintptr_t)ram->addr + base_off + 0x8000,
				   (uint64_t)(uintptr_t)ram->addr + base_off + 0x4000, 0 };

		if (fe_acked(s, REQ_SET_VRING_NUM, &num, 8, NULL, 0) || fe_acked(s, REQ_SET_VRING_BASE, &base, 8, NULL, 0) ||
		    fe_acked(s, REQ_SET_VRING_ADDR, &a, sizeof(a), NULL, 0) ||
		    fe_acked(s, REQ_SET_VRING_KICK, &idx, 8, &efd[q], 1))
			return -6;
	}
	for (q = 0; q < 2; q++) {
		struct vstate en = { q, 1 };

		if (fe_acked(s, REQ_SET_VRING_ENABLE, &en, 8, NULL, 0))
			return -7;
	}
	status = 0xf;
	return fe_acked(s, REQ_SET_STATUS, &status, 8, NULL, 0) == 0 ? 0 : -8;
}

static void test_negotiate(void)
{
	struct guest_ram ram;
	int efd[4], i, s, vid;
	uint64_t neg = 0, f = 0;
	struct rte_vhost_vring vr;
	struct rte_vhost_memory *mem = NULL;
	char name[128];
	uint16_t la, lu, mtu;
	struct fe_msg m;
	struct vstate st = { 1, 0 };

	CHECK(start_server(0) == 0, "register/start");
	CHECK(guest_ram_init(&ram, 2 << 20) == 0, "guest ram");
	for (i = 0; i < 4; i++)
		efd[i] = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	s = fe_connect(sock_path);
	CHECK(s >= 0, "connect");
	CHECK(wait_count(&n_new_conn, 1) == 1, "new_connection fired once");
	i = full_sequence(s, &ram, efd, &neg);
	CHECK(i == 0, "message sequence acked (step %d)", i);
	CHECK(wait_count(&n_new_dev, 1) == 1, "new_device fired exactly once");
	vid = last_vid;
	CHECK(get_count(&vring_enabled[0]) == 1 && get_count(&vring_enabled[1]) == 1, "vring_state_changed enabled both rings");
	CHECK(rte_vhost_get_negotiated_features(vid, &f) == 0 && f == neg, "negotiated features %#llx", (unsigned long long)f);
	CHECK(rte_vhost_get_negotiated_protocol_features(vid, &f) == 0 &&
	      f == (PROTO_F_MQ | PROTO_F_REPLY_ACK | PROTO_F_STATUS), "negotiated protocol features");
	CHECK(rte_vhost_get_vring_num(vid) == 2, "vring num");
	/* The library's view of ring 1 is the test's own memory. */
	ram.addr[0x20000] = 0x5a;
	CHECK(rte_vhost_get_vhost_vring(vid, 1, &vr) == 0 && vr.size == RING && vr.desc &&
	      *(volatile uint8_t *)vr.desc == 0x5a && vr.kickfd >= 0 && vr.callfd >= 0, "get_vhost_vring");
	CHECK((uint8_t *)vr.avail - (uint8_t *)vr.desc == 0x4000 && (uint8_t *)vr.used - (uint8_t *)vr.desc == 0x8000,
	      "ring areas at the offsets given");
	CHECK(rte_vhost_get_mem_table(vid, &mem) == 0 && mem && mem->nregions == 1 && mem->regions[0].size == ram.size &&
	      mem->regions[0].guest_user_addr == (uint64_t)(uintptr_t)ram.addr, "get_mem_table");
	free(mem);
	CHECK(rte_vhost_get_ifname(vid, name, sizeof(name)) == 0 && strcmp(name, sock_path) == 0, "ifname");
	/* SET_VRING_BASE said 5, but the used ring in guest memory says 0: the
	 * library trusts the guest's used index when it maps the ring. */
	CHECK(rte_vhost_get_vring_base(vid, 1, &la, &lu) == 0 && la == 0 && lu == 0, "vring base resynced to used->idx");
	CHECK(rte_vhost_set_vring_base(vid, 1, 5, 5) == 0 && rte_vhost_get_vring_base(vid, 1, &la, &lu) == 0 && la == 5 &&
	      lu == 5, "set/get vring base 5/5");
	CHECK(rte_vhost_get_mtu(vid, &mtu) == -ENOTSUP, "get_mtu without NET_MTU is -ENOTSUP");
	CHECK(rte_vhost_enable_guest_notification(vid, 0, 0) == 0, "enable_guest_notification");
	/* GET_VRING_BASE stops the ring: destroy_device, the base comes back. */
	CHECK(fe_send(s, REQ_GET_VRING_BASE, FE_VERSION, &st, 8, NULL, 0) == 0 && fe_recv(s, &m, 5000) == 1 &&
	      m.request == REQ_GET_VRING_BASE && ((struct vstate *)m.payload)->num == 5, "GET_VRING_BASE reply carries the base");
	CHECK(wait_count(&n_destroy_dev, 1) == 1, "destroy_device after GET_VRING_BASE");
	close(s);
	CHECK(wait_count(&n_destroy_conn, 1) == 1, "destroy_connection after close");
	CHECK(get_count(&n_destroy_dev) == 1, "destroy_device not fired twice");
	CHECK(rte_vhost_driver_unregister(sock_path) == 0, "unregister");
	for (i = 0; i < 4; i++)
		close(efd[i]);
	guest_ram_free(&ram);
}

/* Each case: what DPDK 22.11 answers and what rvhost answers (the same
 * unless named); -1 = the connection is closed. */
struct bad_case {
	const char *name;
	uint32_t req;
	uint8_t payload[48];
	uint32_t size;
	int nfds;
	int64_t stock, ours;
	const char *why_different;
};

static void test_bad_messages(void)
{
	struct guest_ram ram;
	struct bad_case cases[] = {
		{ "unknown request", 77, {0}, 0, 0, 1, 1, NULL },
		{ "ring size not a power of two", REQ_SET_VRING_NUM, {0, 0, 0, 0, 100}, 8, 0, 1, 1, NULL },
		{ "fd on a request taking none", REQ_SET_STATUS, {0}, 8, 1, 1, 1, NULL },
		{ "ring index out of range", REQ_SET_VRING_NUM, {0x2c, 0x1}, 8, 0, -1, -1, NULL },
		{ "ring size zero", REQ_SET_VRING_NUM, {0}, 8, 0, 1, 1, NULL },
		{ "payload shorter than the request", REQ_SET_STATUS, {0}, 4, 0, 0, 1,
		  "rvhost checks every payload's exact size" },
#if RTE_VERSION >= RTE_VERSION_NUM(24, 11, 0, 0)
		/* 24.11 refuses it as well (measured on Debian 13's library). */
		{ "region beyond its file", REQ_SET_MEM_TABLE, {1}, 40, 1, 1, 1, NULL },
#else
		{ "region beyond its file", REQ_SET_MEM_TABLE, {1}, 40, 1, 0, 1,
		  "rvhost refuses a region its file cannot back (a later SIGBUS in DPDK)" },
#endif
	};
	unsigned int i;
	int s;
	uint64_t features;

	CHECK(start_server(0) == 0, "register/start");
	CHECK(guest_ram_init(&ram, 1 << 20) == 0, "guest ram");
	/* The region case: 16 MiB at offset 0 of a 1 MiB file. */
	{
		uint64_t *r = (uint64_t *)&cases[6].payload[8];

		r[0] = 0;
		r[1] = 16 << 20;
		r[2] = 0x7f0000000000ULL;
		r[3] = 0;
	}
	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		const struct bad_case *c = &cases[i];
		int64_t want = is_stock ? c->stock : c->ours, got;
		int fd = ram.fd;

		s = fe_connect(sock_path);
		if (negotiate_prefix(s, &features)) {
			CHECK(0, "%s: negotiation", c->name);
			close(s);
			continue;
		}
		got = fe_acked(s, c->req, c->payload, c->size, &fd, c->nfds);
		CHECK(got == want, "%s: got %lld, expected %lld%s%s", c->name, (long long)got, (long long)want,
		      c->why_different ? " — differs on purpose: " : "", c->why_different ? c->why_different : "");
		if (got >= 0)
			CHECK(fe_call_u64(s, REQ_GET_QUEUE_NUM, NULL) != UINT64_MAX, "%s: connection still served", c->name);
		close(s);
	}
	s = fe_connect(sock_path);
	CHECK(negotiate_prefix(s, &features) == 0, "still negotiates after all bad messages");
	close(s);
	CHECK(rte_vhost_driver_unregister(sock_path) == 0, "unregister");
	guest_ram_free(&ram);
}

static void test_fd_leaks(void)
{
	struct guest_ram ram;
	int before = -1, after, i, k, efd[4];
	uint64_t neg;

	CHECK(start_server(0) == 0, "register/start");
	CHECK(guest_ram_init(&ram, 2 << 20) == 0, "guest ram");
	for (k = 0; k < 4; k++)
		efd[k] = eventfd(0, EFD_CLOEXEC);
	/* One cycle first: lazily created threads and fds settle. */
	for (i = 0; i < 21; i++) {
		int s;

		if (i == 1)
			before = count_open_fds();
		s = fe_connect(sock_path);
		CHECK(full_sequence(s, &ram, efd, &neg) == 0, "cycle %d negotiated", i);
		close(s);
		CHECK(wait_count(&n_destroy_conn, i + 1) == i + 1, "cycle %d torn down", i);
	}
	after = count_open_fds();
	CHECK(after <= before, "fds before %d, after 20 connect/negotiate/close cycles %d", before, after);
	CHECK(rte_vhost_driver_unregister(sock_path) == 0, "unregister");
	for (k = 0; k < 4; k++)
		close(efd[k]);
	guest_ram_free(&ram);
}

static void test_unregister_connected(void)
{
	struct guest_ram ram;
	int efd[4], k, s;
	uint64_t neg;
	struct fe_msg m;

	CHECK(start_server(0) == 0, "register/start");
	CHECK(guest_ram_init(&ram, 2 << 20) == 0, "guest ram");
	for (k = 0; k < 4; k++)
		efd[k] = eventfd(0, EFD_CLOEXEC);
	s = fe_connect(sock_path);
	CHECK(full_sequence(s, &ram, efd, &neg) == 0 && wait_count(&n_new_dev, 1) == 1, "running device");
	CHECK(rte_vhost_driver_unregister(sock_path) == 0, "unregister while connected");
	CHECK(get_count(&n_destroy_dev) == 1, "destroy_device fired by unregister");
	CHECK(access(sock_path, F_OK) != 0, "socket file removed");
	CHECK(fe_recv(s, &m, 2000) == 0, "front-end sees the connection closed");
	close(s);
	/* Re-register the same path and negotiate again. */
	reset_events();
	CHECK(rte_vhost_driver_register(sock_path, 0) == 0 && rte_vhost_driver_callback_register(sock_path, &ops) == 0 &&
	      rte_vhost_driver_start(sock_path) == 0, "re-register the same path");
	s = fe_connect(sock_path);
	CHECK(full_sequence(s, &ram, efd, &neg) == 0 && wait_count(&n_new_dev, 1) == 1, "negotiates again");
	close(s);
	wait_count(&n_destroy_conn, 1);
	CHECK(rte_vhost_driver_unregister(sock_path) == 0, "unregister");
	CHECK(rte_vhost_driver_unregister(sock_path) == -1, "second unregister fails");
	for (k = 0; k < 4; k++)
		close(efd[k]);
	guest_ram_free(&ram);
}

static void test_several_sockets(void)
{
	char paths[3][108];
	int socks[3], i, vids = 0;
	uint64_t f;

	reset_events();
	for (i = 0; i < 3; i++) {
		new_path();
		strcpy(paths[i], sock_path);
		CHECK(rte_vhost_driver_register(paths[i], 0) == 0 && rte_vhost_driver_callback_register(paths[i], &ops) == 0 &&
		      rte_vhost_driver_start(paths[i]) == 0, "socket %d", i);
	}
	/* DPDK 22.11 accepts a second registration of a path (its start then
	 * fails to bind); rvhost refuses it at once — differs on purpose. */
	CHECK(rte_vhost_driver_register(paths[0], 0) == (is_stock ? 0 : -1), "registering a path twice");
	CHECK(rte_vhost_driver_disable_features(paths[1], F_MRG_RXBUF) == 0 &&
	      rte_vhost_driver_get_features(paths[1], &f) == 0 && !(f & F_MRG_RXBUF), "per-socket feature setters");
	for (i = 0; i < 3; i++) {
		socks[i] = fe_connect(paths[i]);
		f = fe_call_u64(socks[i], REQ_GET_FEATURES, NULL);
		CHECK(f != UINT64_MAX && !!(f & F_MRG_RXBUF) == (i != 1), "socket %d offers its own features", i);
	}
	vids = wait_count(&n_new_conn, 3);
	CHECK(vids == 3, "three connections, three vids");
	for (i = 0; i < 3; i++) {
		close(socks[i]);
		CHECK(rte_vhost_driver_unregister(paths[i]) == 0, "unregister %d", i);
	}
	if (is_stock)
		CHECK(rte_vhost_driver_unregister(paths[0]) == 0, "unregister the duplicate registration");
}

static void test_client_mode(void)
{
	int lfd, c, i;
	struct fe_msg m;

	reset_events();
	new_path();
	/* The test listens; the library connects (and reconnects). */
	lfd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	{
		struct sockaddr_un un = { .sun_family = AF_UNIX };

		strcpy(un.sun_path, sock_path);
		CHECK(bind(lfd, (void *)&un, sizeof(un)) == 0 && listen(lfd, 4) == 0, "listen");
	}
	CHECK(rte_vhost_driver_register(sock_path, RTE_VHOST_USER_CLIENT) == 0 &&
	      rte_vhost_driver_callback_register(sock_path, &ops) == 0 && rte_vhost_driver_start(sock_path) == 0,
	      "client register/start");
	for (i = 0; i < 2; i++) {
		c = accept(lfd, NULL, NULL);
		CHECK(c >= 0 && fe_call_u64(c, REQ_GET_FEATURES, NULL) != UINT64_MAX, "client connection %d served", i);
		close(c);
		CHECK(wait_count(&n_destroy_conn, i + 1) == i + 1, "disconnect %d noticed", i);
	}
	CHECK(rte_vhost_driver_unregister(sock_path) == 0, "unregister client");
	(void)m;
	close(lfd);
	unlink(sock_path);
}

/* rte_vdpa_relay_vring_used: used entries of a mediated ring (the vDPA
 * driver's) copied to the guest's ring 0 and published. */
static void test_vdpa_relay(void)
{
	static uint16_t m_avail[3 + RING];
	static struct {
		uint16_t flags, idx;
		struct vring_used_elem ring[RING];
		uint16_t avail_event;
	} m_used;
	struct vring v = { RING, NULL, (void *)m_avail, (void *)&m_used };
	struct guest_ram ram;
	struct vring_desc *desc;
	struct vring_used *used;
	uint64_t neg;
	int efd[4], s, i, vid, rc;

	CHECK(start_server(0) == 0, "register/start");
	CHECK(guest_ram_init(&ram, 1 << 20) == 0, "guest memory");
	for (i = 0; i < 4; i++)
		efd[i] = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	s = fe_connect(sock_path);
	CHECK(s >= 0 && full_sequence(s, &ram, efd, &neg) == 0, "virtio-user sequence");
	CHECK(wait_count(&n_new_dev, 1) == 1, "device started");
	vid = get_count(&last_vid);
	/* Ring 0's guest side: three writable buffers; the device used them
	 * in the mediated ring. */
	desc = (struct vring_desc *)(ram.addr + 0x10000);
	used = (struct vring_used *)(ram.addr + 0x10000 + 0x8000);
	for (i = 0; i < 3; i++) {
		desc[i] = (struct vring_desc){ 0x40000 + 0x1000 * i, 2048, VRING_DESC_F_WRITE, 0 };
		m_used.ring[i] = (struct vring_used_elem){ i, 100 + i };
	}
	CHECK(rte_vdpa_relay_vring_used(vid, 0, &v) == 0, "nothing used yet");
	__atomic_store_n(&m_used.idx, 3, __ATOMIC_RELEASE);
	rc = rte_vdpa_relay_vring_used(vid, 0, &v);
	CHECK(rc == 3, "three entries relayed (%d)", rc);
	CHECK(used->idx == 3 && used->ring[0].id == 0 && used->ring[2].id == 2 && used->ring[2].len == 102,
	      "guest used ring: idx %u, last {%u, %u}", used->idx, used->ring[2].id, used->ring[2].len);
	CHECK(rte_vdpa_relay_vring_used(vid, 0, &v) == 0, "relayed once");
	CHECK(rte_vdpa_relay_vring_used(vid, 0, NULL) == -1, "no mediated ring");
	CHECK(rte_vdpa_relay_vring_used(vid, 5, &v) == -1, "no such ring");
	CHECK(rte_vdpa_relay_vring_used(vid + 100, 0, &v) == -1, "no such device");
	m_used.ring[3] = (struct vring_used_elem){ RING, 1 };
	__atomic_store_n(&m_used.idx, 4, __ATOMIC_RELEASE);
	CHECK(rte_vdpa_relay_vring_used(vid, 0, &v) == -1 && used->idx == 3, "a used id outside the ring");
	if (!is_stock) {
		/* Stricter than 22.11, which copies whatever the indices say. */
		__atomic_store_n(&m_used.idx, 3 + RING + 1, __ATOMIC_RELEASE);
		CHECK(rte_vdpa_relay_vring_used(vid, 0, &v) == -1 && used->idx == 3,
		      "rvhost stricter: a mediated index more than a ring ahead");
	}
	close(s);
	CHECK(wait_count(&n_destroy_dev, 1) == 1, "device stopped");
	CHECK(rte_vhost_driver_unregister(sock_path) == 0, "unregister");
	for (i = 0; i < 4; i++)
		close(efd[i]);
	guest_ram_free(&ram);
	unlink(sock_path);
}

/* ---- extern message hooks (rte_vhost_extern_callback_register) ---- */

/* The message a hook sees (struct vhu_msg_context starts with it; packed
 * as DPDK's struct vhost_user_msg). */
struct __attribute__((packed)) hook_msg {
	uint32_t request, flags, size;
	union {
		uint64_t u64;
		struct __attribute__((packed)) { uint32_t offset, size, flags; uint8_t region[256]; } cfg;
	} payload;
};

#define REQ_GET_CONFIG 24
#define REQ_SET_CONFIG 25
#define HOOK_ANSWER(req) (0xabc00000ULL | (req))

/* 1: the pre-hook answers every request itself; 0: only GET_CONFIG, as
 * examples/vhost_blk does. */
static int hook_answers_all;
static int hook_seen[64], hook_post_seen[64], reg_conn_rc[8], reg_dev_rc[8], n_reg_conn, n_reg_dev;

static enum rte_vhost_msg_result pre_hook(int vid, void *raw)
{
	struct hook_msg *m = raw;
	char name[128];

	if (rte_vhost_get_ifname(vid, name, sizeof(name)) != 0 || strcmp(name, sock_path) != 0)
		return RTE_VHOST_MSG_RESULT_ERR;
	pthread_mutex_lock(&ev_lock);
	hook_seen[m->request < 64 ? m->request : 63]++;
	pthread_mutex_unlock(&ev_lock);
	if (hook_answers_all) {
		m->payload.u64 = HOOK_ANSWER(m->request);
		m->size = 8;
		return RTE_VHOST_MSG_RESULT_REPLY;
	}
	if (m->request == REQ_GET_CONFIG) {
		uint32_t i;

		for (i = 0; i < m->payload.cfg.size && i < sizeof(m->payload.cfg.region); i++)
			m->payload.cfg.region[i] = (uint8_t)(0x40 + i);
		return RTE_VHOST_MSG_RESULT_REPLY;
	}
	return RTE_VHOST_MSG_RESULT_NOT_HANDLED;
}

static enum rte_vhost_msg_result post_hook(int vid, void *raw)
{
	struct hook_msg *m = raw;

	(void)vid;
	pthread_mutex_lock(&ev_lock);
	hook_post_seen[m->request < 64 ? m->request : 63]++;
	pthread_mutex_unlock(&ev_lock);
	return RTE_VHOST_MSG_RESULT_NOT_HANDLED;
}

static struct rte_vhost_user_extern_ops hook_ops = { .pre_msg_handle = pre_hook, .post_msg_handle = post_hook };

static int hooked_new_connection(int vid)
{
	int rc = rte_vhost_extern_callback_register(vid, &hook_ops, NULL);

	pthread_mutex_lock(&ev_lock);
	reg_conn_rc[n_reg_conn++ & 7] = rc;
	pthread_mutex_unlock(&ev_lock);
	return cb_new_connection(vid);
}

static int hooked_new_device(int vid)
{
	int rc = rte_vhost_extern_callback_register(vid, &hook_ops, NULL);

	pthread_mutex_lock(&ev_lock);
	reg_dev_rc[n_reg_dev++ & 7] = rc;
	pthread_mutex_unlock(&ev_lock);
	return cb_new_device(vid);
}

static const struct rte_vhost_device_ops hooked_ops = {
	.new_device = hooked_new_device, .destroy_device = cb_destroy_device,
	.vring_state_changed = cb_vring_state, .new_connection = hooked_new_connection,
	.destroy_connection = cb_destroy_connection,
};

static void reset_hooks(int answers_all)
{
	pthread_mutex_lock(&ev_lock);
	hook_answers_all = answers_all;
	memset(hook_seen, 0, sizeof(hook_seen));
	memset(hook_post_seen, 0, sizeof(hook_post_seen));
	n_reg_conn = n_reg_dev = 0;
	pthread_mutex_unlock(&ev_lock);
}

/* GET_CONFIG as QEMU's vhost-user-blk sends it: the hook's bytes come back
 * in a reply with the request's size and no ack after it. */
static int get_config_answered(int s, const char *what)
{
	struct { uint32_t offset, size, flags; uint8_t region[60]; } cfg = { 0, 60, 0, {0} };
	struct fe_msg m;
	uint32_t i;
	int ok;

	if (fe_send(s, REQ_GET_CONFIG, FE_VERSION | FE_NEED_REPLY, &cfg, sizeof(cfg), NULL, 0))
		return 0;
	ok = fe_recv(s, &m, 5000) == 1 && m.request == REQ_GET_CONFIG && m.flags == (FE_VERSION | 4) &&
	     m.size == sizeof(cfg) && m.nfds == 0;
	for (i = 0; ok && i < 60; i++)
		ok = m.payload[12 + i] == (uint8_t)(0x40 + i);
	CHECK(ok, "%s: GET_CONFIG answered by the application's pre-hook (req %u flags %#x size %u)", what,
	      m.request, m.flags, m.size);
	/* No ack may follow the hook's reply: the next answer is GET_FEATURES'. */
	CHECK(fe_call_u64(s, REQ_GET_FEATURES, NULL) != UINT64_MAX, "%s: the next request is answered in turn", what);
	return ok;
}

static void test_extern_hooks(void)
{
	struct guest_ram ram;
	struct fe_msg m;
	uint64_t zero[3] = { 0, 0, 1 }, neg;
	int efd[4], i, s, req, all_answered = 1, all_seen_once = 1;

	/* 1. A pre-hook registered from new_connection sees every request
	 * first and answers it; the library does nothing else with it. The
	 * payload names ring 0 wherever a request names a ring (SET_INFLIGHT_FD:
	 * one queue), which both libraries allocate before the hooks run. */
	reset_hooks(1);
	CHECK(start_server_with(0, &hooked_ops) == 0, "register/start");
	s = fe_connect(sock_path);
	CHECK(s >= 0 && wait_count(&n_new_conn, 1) == 1, "connected");
	CHECK(get_count(&n_reg_conn) == 1 && reg_conn_rc[0] == 0,
	      "rte_vhost_extern_callback_register from new_connection returns 0 (got %d)", reg_conn_rc[0]);
	for (req = 1; req <= 40; req++) {
		if (fe_send(s, (uint32_t)req, FE_VERSION | FE_NEED_REPLY, zero, sizeof(zero), NULL, 0) || fe_recv(s, &m, 5000) != 1 ||
		    m.request != (uint32_t)req || m.flags != (FE_VERSION | 4) || m.size != 8 ||
		    *(uint64_t *)m.payload != HOOK_ANSWER(req)) {
			CHECK(0, "request %d: the hook's reply (got req %u flags %#x size %u)", req, m.request, m.flags, m.size);
			all_answered = 0;
			break;
		}
	}
	CHECK(all_answered, "requests 1..40 each answered by the pre-hook, one reply each, flags VERSION|REPLY");
	/* The post-hook of the last request may still run after its reply. */
	for (i = 0; i < 100 && get_count(&hook_post_seen[40]) == 0; i++)
		usleep(10000);
	pthread_mutex_lock(&ev_lock);
	for (req = 1; req <= 40; req++)
		all_seen_once &= hook_seen[req] == 1 && hook_post_seen[req] == 1;
	pthread_mutex_unlock(&ev_lock);
	CHECK(all_seen_once, "pre- and post-hook each ran once per request");
	CHECK(get_count(&n_new_dev) == 0, "SET_STATUS answered by the hook starts nothing");
	close(s);
	CHECK(wait_count(&n_destroy_conn, 1) == 1, "closed");
	CHECK(rte_vhost_driver_unregister(sock_path) == 0, "unregister");

	/* 2. As examples/vhost_blk: only GET_CONFIG is the hook's; the
	 * registration holds on every connection, first and after a
	 * reconnect, and from new_device too. */
	reset_hooks(0);
	CHECK(start_server_with(0, &hooked_ops) == 0, "register/start");
	CHECK(guest_ram_init(&ram, 2 << 20) == 0, "guest ram");
	for (i = 0; i < 4; i++)
		efd[i] = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	for (i = 0; i < 2; i++) {
		s = fe_connect(sock_path);
		CHECK(s >= 0 && wait_count(&n_new_conn, i + 1) == i + 1, "connection %d", i + 1);
		CHECK(get_count(&n_reg_conn) == i + 1 && reg_conn_rc[i] == 0,
		      "connection %d: registration from new_connection returns 0 (got %d)", i + 1, reg_conn_rc[i]);
		get_config_answered(s, i ? "after a reconnect" : "first connection");
		CHECK(full_sequence(s, &ram, efd, &neg) == 0, "connection %d: the device starts", i + 1);
		CHECK(wait_count(&n_new_dev, i + 1) == i + 1 && get_count(&n_reg_dev) == i + 1 && reg_dev_rc[i] == 0,
		      "connection %d: registration from new_device returns 0 (got %d)", i + 1, reg_dev_rc[i]);
		get_config_answered(s, "while running");
		close(s);
		CHECK(wait_count(&n_destroy_conn, i + 1) == i + 1, "connection %d closed", i + 1);
	}
	CHECK(rte_vhost_driver_unregister(sock_path) == 0, "unregister");
	for (i = 0; i < 4; i++)
		close(efd[i]);
	guest_ram_free(&ram);
	unlink(sock_path);
}

int main(int argc, char **argv)
{
	char prefix[64];
	char *eal[] = { argv[0], "--no-huge", "-m", "64", "--no-pci", "--no-shconf", prefix, getenv("FFI_LOG") ? getenv("FFI_LOG") : "--log-level=lib.vhost.*:error" };
	const char *lib;

	(void)argc;
	snprintf(prefix, sizeof(prefix), "--file-prefix=rvhost-ffi-%d", getpid());
	if (rte_eal_init(sizeof(eal) / sizeof(eal[0]), eal) < 0) {
		printf("rte_eal_init failed\n0 passed, 1 failed\n");
		return 1;
	}
	lib = loaded_vhost_library();
	is_stock = strncmp(lib, "/usr/lib/", 9) == 0;
	printf("librte_vhost loaded from %s (%s)\n", lib, is_stock ? rte_version() : "rvhost");
	test_negotiate();
	test_bad_messages();
	test_fd_leaks();
	test_unregister_connected();
	test_several_sockets();
	test_client_mode();
	test_vdpa_relay();
	test_extern_hooks();
	printf("%d passed, %d failed\n", passed, failed);
	return failed ? 1 : 0;
}
