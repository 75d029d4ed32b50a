/* SPDX-License-Identifier: BSD-3-Clause
 * The async (DMA) enqueue of a librte_vhost.so.23 (Debian's or rvhost's:
 * LD_LIBRARY_PATH decides) on EAL's software DMA engine, dma_skeleton.
 *
 * The test is the back-end application (a socket registered with
 * RTE_VHOST_USER_ASYNC_COPY, the channel registered in new_device as
 * DPDK's examples/vhost does) and, between library calls, the guest's
 * virtio-net driver in its own memfd RAM behind a real vhost-user socket
 * (guest_ring.h). Per mode (split, split-mrg, packed, packed-mrg, and
 * split-chained and packed-chained (mergeable), whose TX frames are
 * two-descriptor chains, the header alone in the first buffer):
 *
 *   loopback: the guest sends FRAMES frames of 64..1518 bytes, each with
 *     its sequence number and contents derived from it; the back-end
 *     takes them with rte_vhost_async_try_dequeue_burst and gives them
 *     back through rte_vhost_submit_enqueue_burst /
 *     rte_vhost_poll_enqueue_completed (channels on both rings);
 *     the guest checks every frame it receives, in order, byte for byte
 *     (mergeable: 1024-byte RX buffers, so frames over 1012 bytes take
 *     two). The DMA device's submitted and completed counts must both
 *     equal the copies the frames need (one per guest buffer written, and
 *     one per frame taken from the guest).
 *     Printed: the TSC cycles per frame of the async dequeue, submit and
 *     poll calls that moved packets, medians over the calls (the vhost core's share of the
 *     async enqueue; the engine's thread runs on lcore 1).
 *   ring disable: 32 packets submitted and not polled; unregistering the
 *     channel is refused; the front-end disables the RX ring, and the
 *     application's vring_state_changed counts them with
 *     rte_vhost_async_get_inflight_thread_unsafe and takes them back with
 *     rte_vhost_clear_queue_thread_unsafe; every mbuf is back in its pool.
 *   new memory table: 32 packets in flight again; the front-end sends a
 *     memory table with one more region; the application hears of it as
 *     the rings disabled (22.11's notice to stop DMA) and clears them.
 *   device destroy: the same with the ring enabled again and the socket
 *     closed: destroy_device clears with the locking calls and
 *     unregisters the channels.
 *
 * usage: t_async [--frames N] [--settle] [MODE...]   (prints "N passed, N failed")
 *
 * --settle: before each dequeue and poll call of the loopback, wait until
 * the DMA engine has finished every copy submitted, so each call moves a
 * whole burst whatever the machine's load: the instructions spent inside
 * the library calls per frame (valgrind --tool=callgrind
 * --toggle-collect=rte_vhost_*) are then the same run to run.
 */
#define _GNU_SOURCE
#include <stdatomic.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <time.h>

#include <rte_cycles.h>
#include <rte_dmadev.h>
#include <rte_eal.h>
#include <rte_errno.h>
#include <rte_lcore.h>
#include <rte_mbuf.h>
#include <rte_mempool.h>
#include <rte_vhost.h>
#include <rte_vhost_async.h>

#include "guest_ring.h"

#define RING 1024
#define MRG_RX_LEN 1024u
#define HELD 32

static int passed, failed;

#define CHECK(cond, ...) do { \
	if (cond) { passed++; } else { failed++; printf("FAIL %s:%d: ", __func__, __LINE__); \
		printf(__VA_ARGS__); printf("\n"); fflush(stdout); } } while (0)

static int16_t dma_id = -1;
static int settle;

/* What the callbacks saw, from the library's thread. */
static _Atomic int cb_vid = -1, cb_new, cb_destroyed, cb_disabled;
static _Atomic int cb_register_rc = 1, cb_unregister_rc = 1;
static _Atomic int cb_inflight_seen = -1, cb_cleared = -1;

/* Takes every in-flight packet of RX ring 0 back (examples/vhost's
 * vhost_clear_queue); returns how many, or -1 if they did not come back
 * within 5 s. */
static int clear_ring(int vid, int thread_unsafe)
{
	struct rte_mbuf *m[HELD];
	int total = 0, left, i;

	left = thread_unsafe ? rte_vhost_async_get_inflight_thread_unsafe(vid, 0) : rte_vhost_async_get_inflight(vid, 0);
	atomic_store(&cb_inflight_seen, left);
	for (i = 0; left > 0 && i < 5000; i++) {
		uint16_t n = thread_unsafe ? rte_vhost_clear_queue_thread_unsafe(vid, 0, m, HELD, dma_id, 0)
					   : rte_vhost_clear_queue(vid, 0, m, HELD, dma_id, 0);

		if (n > HELD) /* 22.11's (uint16_t)-1 for a missing lock */
			return -1;
		rte_pktmbuf_free_bulk(m, n);
		total += n;
		left = thread_unsafe ? rte_vhost_async_get_inflight_thread_unsafe(vid, 0)
				     : rte_vhost_async_get_inflight(vid, 0);
		if (left > 0)
			usleep(1000);
	}
	return left == 0 ? total : -1;
}

static int cb_new_device(int vid)
{
	atomic_store(&cb_register_rc, rte_vhost_async_channel_register(vid, 0) | rte_vhost_async_channel_register(vid, 1));
	atomic_store(&cb_vid, vid);
	atomic_store(&cb_new, 1);
	return 0;
}

static int cb_vring_state(int vid, uint16_t q, int enable)
{
	if (q == 0 && !enable && atomic_load(&cb_vid) == vid) {
		atomic_store(&cb_cleared, clear_ring(vid, 1));
		atomic_store(&cb_disabled, 1);
	}
	return 0;
}

static void cb_destroy_device(int vid)
{
	atomic_store(&cb_cleared, clear_ring(vid, 0));
	atomic_store(&cb_unregister_rc,
		     rte_vhost_async_channel_unregister(vid, 0) | rte_vhost_async_channel_unregister(vid, 1));
	atomic_store(&cb_destroyed, 1);
}

static const struct rte_vhost_device_ops ops = {
	.new_device = cb_new_device,
	.destroy_device = cb_destroy_device,
	.vring_state_changed = cb_vring_state,
};

static int wait_flag(_Atomic int *f)
{
	int i;

	for (i = 0; i < 500 && !atomic_load(f); i++)
		usleep(10000);
	return atomic_load(f);
}

/* ---- frames ---- */

static unsigned int frame_size(uint32_t seq)
{
	return 64 + (seq * 7919u) % (1518 - 64 + 1);
}

/* The frame with sequence number `seq`: headers, the number, then bytes
 * that depend on both. */
static unsigned int make_frame(uint8_t *f, uint32_t seq)
{
	unsigned int size = frame_size(seq), i;

	build_frame(f, size);
	memcpy(f + SEQ_OFF, &seq, 4);
	for (i = SEQ_OFF + 4; i < size; i++)
		f[i] = (uint8_t)(i * 7 + 3 + seq * 13);
	return size;
}

struct run {
	const struct mode *md;
	struct gring *tx, *rx;
	uint32_t sent, received;
	uint64_t copies;
	/* Per submit / poll call that moved packets: TSC cycles per packet
	 * (the medians are reported: a call the machine preempted is left
	 * out). */
	double *deq_cpp, *sub_cpp, *poll_cpp;
	uint32_t ndeq, nsub, npoll;
	int bad;
};

/* The guest posts up to `n` more frames on its TX ring. */
static void guest_send(struct run *r, uint32_t n)
{
	uint32_t k;

	for (k = 0; k < n && r->tx->free_count >= (r->md->chained ? 2u : 1u); k++) {
		/* The buffers gring_post takes next, filled before they are posted
		 * (a packed descriptor is available as soon as it is written). */
		struct gring *tx = r->tx;
		uint8_t *b = gbuf(tx, tx->free_ids[tx->free_head]);

		memset(b, 0, HDR_LEN);
		if (r->md->chained) {
			/* The header alone in the head buffer, the frame in the next. */
			uint8_t *payload = gbuf(tx, tx->free_ids[(tx->free_head + 1) % tx->size]);

			gring_post_chain(tx, HDR_LEN, make_frame(payload, r->sent));
		} else {
			gring_post(tx, HDR_LEN + make_frame(b + HDR_LEN, r->sent), 0);
		}
		r->sent++;
	}
	gring_publish(r->tx);
}

/* The guest reclaims its TX buffers and checks and reposts the RX ones. */
static void guest_receive(struct run *r)
{
	static uint8_t got[4096], want[2048];
	uint32_t pending = gring_used_pending(r->tx), k;

	for (k = 0; k < pending; k++) {
		uint16_t id;
		uint32_t len;

		if (gring_take_used(r->tx, &id, &len)) {
			r->bad++;
			return;
		}
		gring_free(r->tx, id);
	}
	pending = gring_used_pending(r->rx);
	while (pending && !r->bad) {
		uint16_t id = 0, nb = 1, i;
		uint32_t len = 0, total = 0;
		unsigned int size = make_frame(want, r->received);

		for (i = 0; i < nb; i++) {
			if (!pending-- || gring_take_used(r->rx, &id, &len) || total + len > sizeof(got)) {
				printf("frame %u: bad used entry (id %u len %u)\n", r->received, id, len);
				r->bad++;
				return;
			}
			memcpy(got + total, gbuf(r->rx, id), len);
			if (i == 0 && r->md->mrg)
				memcpy(&nb, got + 10, 2);
			total += len;
			gring_free(r->rx, id);
			gring_post(r->rx, r->md->mrg ? MRG_RX_LEN : BUF_SIZE, 1);
		}
		if (total != HDR_LEN + size || memcmp(got + HDR_LEN, want, size)) {
			printf("frame %u: %u bytes in %u buffers, expected %u bytes %s\n", r->received, total, nb,
			       HDR_LEN + size, total == HDR_LEN + size ? "(contents differ)" : "");
			r->bad++;
			return;
		}
		r->copies += nb + 1;
		r->received++;
	}
	gring_publish(r->rx);
}

static void dma_counts(uint64_t *submitted, uint64_t *completed)
{
	struct rte_dma_stats st = { 0 };

	rte_dma_stats_get(dma_id, 0, &st);
	*submitted = st.submitted;
	*completed = st.completed;
}

/* --settle: waits until the DMA engine has done every copy submitted. */
static void dma_settle(void)
{
	uint64_t submitted, completed;

	if (!settle)
		return;
	for (dma_counts(&submitted, &completed); completed != submitted; dma_counts(&submitted, &completed))
		sched_yield();
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return x < y ? -1 : x > y;
}

static double median(double *v, uint32_t n)
{
	if (!n)
		return 0;
	qsort(v, n, sizeof(*v), cmp_double);
	return v[n / 2];
}

/* Frames through the async enqueue until the guest has them all back. */
static void loopback(struct run *r, int vid, struct rte_mempool *pool, uint32_t frames)
{
	struct rte_mbuf *held[HELD], *done[HELD];
	uint16_t nheld = 0;
	uint64_t sub0, cpl0, sub1, cpl1;
	time_t deadline = time(NULL) + 120;

	r->deq_cpp = calloc(frames, sizeof(double));
	r->sub_cpp = calloc(frames, sizeof(double));
	r->poll_cpp = calloc(frames, sizeof(double));
	if (!r->deq_cpp || !r->sub_cpp || !r->poll_cpp)
		r->bad++;
	dma_counts(&sub0, &cpl0);
	while (r->received < frames && !r->bad && time(NULL) < deadline) {
		uint16_t n, c;
		uint64_t t0, t1, t2, t3;
		int inflight;

		/* Chains go in small uneven batches: a dequeue then finds fewer
		 * chains than descriptors, and unposted slots after them. */
		if (r->sent < frames)
			guest_send(r, RTE_MIN(frames - r->sent, r->md->chained ? 1 + r->sent % 7 : (uint32_t)BURST));
		if (!nheld) {
			dma_settle();
			t0 = rte_rdtsc();
			nheld = rte_vhost_async_try_dequeue_burst(vid, 1, pool, held, HELD, &inflight, dma_id, 0);
			t1 = rte_rdtsc();
			if (nheld && r->ndeq < frames)
				r->deq_cpp[r->ndeq++] = (double)(t1 - t0) / nheld;
		}
		t0 = rte_rdtsc();
		n = rte_vhost_submit_enqueue_burst(vid, 0, held, nheld, dma_id, 0);
		t1 = rte_rdtsc();
		memmove(held, held + n, (nheld - n) * sizeof(held[0]));
		nheld -= n;
		dma_settle();
		t2 = rte_rdtsc();
		c = rte_vhost_poll_enqueue_completed(vid, 0, done, HELD, dma_id, 0);
		t3 = rte_rdtsc();
		/* Busy cycles only (as testpmd's --record-core-cycles): a call
		 * that moved nothing is the engine not done yet. */
		if (n && r->nsub < frames)
			r->sub_cpp[r->nsub++] = (double)(t1 - t0) / n;
		if (c && r->npoll < frames)
			r->poll_cpp[r->npoll++] = (double)(t3 - t2) / c;
		rte_pktmbuf_free_bulk(done, c);
		guest_receive(r);
	}
	rte_pktmbuf_free_bulk(held, nheld);
	dma_counts(&sub1, &cpl1);
	CHECK(r->received == frames && !r->bad, "%s: %u of %u frames came back in order and intact", r->md->name,
	      r->received, frames);
	CHECK(sub1 - sub0 == r->copies && cpl1 - cpl0 == r->copies,
	      "%s: DMA submitted %llu and completed %llu copies, the frames needed %llu", r->md->name,
	      (unsigned long long)(sub1 - sub0), (unsigned long long)(cpl1 - cpl0), (unsigned long long)r->copies);
	printf("%s: %u frames of 64..1518 bytes back in order, %llu DMA copies; cycles/pkt: dequeue %.1f submit %.1f "
	       "poll %.1f\n",
	       r->md->name, r->received, (unsigned long long)r->copies, median(r->deq_cpp, r->ndeq),
	       median(r->sub_cpp, r->nsub), median(r->poll_cpp, r->npoll));
	free(r->deq_cpp);
	free(r->sub_cpp);
	free(r->poll_cpp);
}

/* The guest sends HELD frames; the back-end submits them and does not
 * poll. Returns how many were submitted. */
static int submit_unpolled(struct run *r, int vid, struct rte_mempool *pool)
{
	struct rte_mbuf *m[HELD];
	uint16_t n, s;
	int i;

	guest_send(r, HELD);
	/* The library may still hold the rings for the last message (22.11
	 * answers before it lets them go): a busy ring moves nothing. */
	for (i = 0, n = 0; i < 1000 && n < HELD; i++) {
		n += rte_vhost_dequeue_burst(vid, 1, pool, m + n, HELD - n);
		if (n < HELD)
			usleep(1000);
	}
	s = rte_vhost_submit_enqueue_burst(vid, 0, m, n, dma_id, 0);
	rte_pktmbuf_free_bulk(m + s, n - s);
	usleep(20000); /* the copies complete; the packets stay until polled */
	return s;
}

/* SET_MEM_TABLE: the guest's RAM and a second 1 MiB region. */
static int grow_memory(int s, struct guest_ram *ram)
{
	static struct guest_ram extra;
	struct {
		uint32_t nregions, padding;
		uint64_t r[2][4]; /* gpa, size, uaddr, mmap_offset */
	} mt = { 2, 0, { { 0, ram->size, (uint64_t)(uintptr_t)ram->addr, 0 }, { 0x10000000, 1u << 20, 0x7e0000000000, 0 } } };
	int fds[2] = { ram->fd, -1 };

	if (!extra.addr && guest_ram_init(&extra, 1u << 20))
		return -1;
	fds[1] = extra.fd;
	return fe_acked(s, REQ_SET_MEM_TABLE, &mt, sizeof(mt), fds, 2) ? -1 : 0;
}

static void run_mode(const struct mode *md, struct rte_mempool *pool, uint32_t frames)
{
	char path[108];
	struct guest_ram ram;
	struct run r = { md, calloc(1, sizeof(struct gring)), calloc(1, sizeof(struct gring)), 0, 0, 0, NULL, NULL, NULL, 0, 0, 0, 0 };
	int efd[4], s, vid, i, held;
	struct vstate off = { 0, 0 }, on = { 0, 1 };

	snprintf(path, sizeof(path), "/tmp/rvhost-async-%d-%s.sock", getpid(), md->name);
	unlink(path);
	atomic_store(&cb_vid, -1);
	atomic_store(&cb_new, 0);
	atomic_store(&cb_destroyed, 0);
	atomic_store(&cb_disabled, 0);
	atomic_store(&cb_register_rc, 1);
	if (rte_vhost_driver_register(path, RTE_VHOST_USER_ASYNC_COPY) || rte_vhost_driver_callback_register(path, &ops) ||
	    rte_vhost_driver_start(path) || guest_ram_init(&ram, RAM_SIZE) || !r.tx || !r.rx) {
		CHECK(0, "%s: set-up failed", md->name);
		return;
	}
	memset(ram.addr, 0, RAM_SIZE);
	gring_init(r.rx, &ram, 0, md->packed, RING, 0);
	gring_init(r.tx, &ram, 1, md->packed, RING, 0);
	for (i = 0; i < 4; i++)
		efd[i] = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	s = fe_connect(path);
	CHECK(s >= 0 && negotiate(s, &ram, md, RING, efd, -1) == 0, "%s: vhost-user set-up", md->name);
	vid = wait_flag(&cb_new) ? atomic_load(&cb_vid) : -1;
	CHECK(vid >= 0 && atomic_load(&cb_register_rc) == 0, "%s: new_device registered the channel (rc %d)", md->name,
	      atomic_load(&cb_register_rc));
	if (vid < 0)
		return;
	for (i = 0; i < RING; i++)
		gring_post(r.rx, md->mrg ? MRG_RX_LEN : BUF_SIZE, 1);
	gring_publish(r.rx);

	loopback(&r, vid, pool, frames);
	CHECK(rte_mempool_in_use_count(pool) == 0, "%s: %u mbufs not back in the pool after the loopback", md->name,
	      rte_mempool_in_use_count(pool));

	/* Ring disable with packets in flight. */
	held = submit_unpolled(&r, vid, pool);
	CHECK(held == HELD && rte_vhost_async_get_inflight(vid, 0) == held, "%s: %d submitted, %d in flight", md->name,
	      held, rte_vhost_async_get_inflight(vid, 0));
	CHECK(rte_vhost_async_channel_unregister(vid, 0) == -1, "%s: unregister refused with packets in flight",
	      md->name);
	atomic_store(&cb_cleared, -1);
	CHECK(fe_acked(s, REQ_SET_VRING_ENABLE, &off, 8, NULL, 0) == 0 && wait_flag(&cb_disabled),
	      "%s: RX ring disabled, vring_state_changed called", md->name);
	CHECK(atomic_load(&cb_inflight_seen) == held && atomic_load(&cb_cleared) == held,
	      "%s: ring disable: %d in flight seen, %d cleared, expected %d", md->name, atomic_load(&cb_inflight_seen),
	      atomic_load(&cb_cleared), held);
	CHECK(rte_mempool_in_use_count(pool) == 0, "%s: %u mbufs not back in the pool after the ring disable",
	      md->name, rte_mempool_in_use_count(pool));
	CHECK(fe_acked(s, REQ_SET_VRING_ENABLE, &on, 8, NULL, 0) == 0, "%s: RX ring enabled again", md->name);

	/* A new memory table with packets in flight: the application hears of
	 * it as the rings disabled (and enabled again), as from 22.11. */
	held = submit_unpolled(&r, vid, pool);
	atomic_store(&cb_cleared, -1);
	atomic_store(&cb_disabled, 0);
	CHECK(held == HELD && grow_memory(s, &ram) == 0 && wait_flag(&cb_disabled),
	      "%s: a new memory table with %d in flight, vring_state_changed called", md->name, held);
	CHECK(atomic_load(&cb_inflight_seen) == held && atomic_load(&cb_cleared) == held,
	      "%s: new memory table: %d in flight seen, %d cleared, expected %d", md->name,
	      atomic_load(&cb_inflight_seen), atomic_load(&cb_cleared), held);
	CHECK(rte_mempool_in_use_count(pool) == 0, "%s: %u mbufs not back in the pool after the new memory table",
	      md->name, rte_mempool_in_use_count(pool));

	/* Device destroy with packets in flight. */
	held = submit_unpolled(&r, vid, pool);
	CHECK(held == HELD && rte_vhost_async_get_inflight(vid, 0) == held, "%s: %d submitted, %d in flight", md->name,
	      held, rte_vhost_async_get_inflight(vid, 0));
	atomic_store(&cb_cleared, -1);
	atomic_store(&cb_unregister_rc, 1);
	close(s);
	CHECK(wait_flag(&cb_destroyed), "%s: destroy_device called", md->name);
	CHECK(atomic_load(&cb_inflight_seen) == held && atomic_load(&cb_cleared) == held &&
		      atomic_load(&cb_unregister_rc) == 0,
	      "%s: device destroy: %d in flight seen, %d cleared (expected %d), unregister rc %d", md->name,
	      atomic_load(&cb_inflight_seen), atomic_load(&cb_cleared), held, atomic_load(&cb_unregister_rc));
	CHECK(rte_mempool_in_use_count(pool) == 0, "%s: %u mbufs not back in the pool after the device destroy",
	      md->name, rte_mempool_in_use_count(pool));

	rte_vhost_driver_unregister(path);
	for (i = 0; i < 4; i++)
		close(efd[i]);
	guest_ram_free(&ram);
	free(r.tx);
	free(r.rx);
}

static int16_t start_dma(void)
{
	struct rte_dma_conf conf = { .nb_vchans = 1 };
	struct rte_dma_vchan_conf vconf = { .direction = RTE_DMA_DIR_MEM_TO_MEM, .nb_desc = 4096 };
	int16_t id = rte_dma_get_dev_id_by_name("dma_skeleton");

	if (id < 0 || rte_dma_configure(id, &conf) || rte_dma_vchan_setup(id, 0, &vconf) || rte_dma_start(id))
		return -1;
	return id;
}

int main(int argc, char **argv)
{
	static const struct mode modes[] = { { "split", 0, 0, 0, 0 },	     { "split-mrg", 0, 1, 0, 0 },
					     { "packed", 1, 0, 0, 0 },	     { "packed-mrg", 1, 1, 0, 0 },
					     { "split-chained", 0, 0, 0, 1 }, { "packed-chained", 1, 1, 0, 1 } };
	const unsigned int nmodes = sizeof(modes) / sizeof(modes[0]);
	char prefix[64];
	char *eal[] = { argv[0], "-l", "0,1", "--no-huge", "-m", "256", "--no-pci", "--no-shconf", "--no-telemetry",
			"--iova-mode=va", "--vdev", "dma_skeleton,lcore=1", prefix, "--log-level=lib.vhost.*:error",
			"--log-level=lib.eal:error" };
	uint32_t frames = 200000;
	const struct mode *sel[8];
	unsigned int nsel = 0, i, j;
	struct rte_mempool *pool;

	for (i = 1; i < (unsigned int)argc; i++) {
		if (!strcmp(argv[i], "--frames") && i + 1 < (unsigned int)argc) {
			frames = strtoul(argv[++i], NULL, 0);
			continue;
		}
		if (!strcmp(argv[i], "--settle")) {
			settle = 1;
			continue;
		}
		for (j = 0; j < nmodes && strcmp(argv[i], modes[j].name); j++)
			;
		if (j == nmodes || nsel == 8) {
			fprintf(stderr, "usage: t_async [--frames N] [--settle] "
					"[split|split-mrg|packed|packed-mrg|split-chained|packed-chained ...]\n");
			return 2;
		}
		sel[nsel++] = &modes[j];
	}
	if (!nsel)
		for (j = 0; j < nmodes; j++)
			sel[nsel++] = &modes[j];
	snprintf(prefix, sizeof(prefix), "--file-prefix=rvhost-async-%d", getpid());
	if (rte_eal_init(sizeof(eal) / sizeof(eal[0]), eal) < 0) {
		fprintf(stderr, "rte_eal_init failed\n");
		return 1;
	}
	printf("# librte_vhost: %s\n", loaded_vhost_library());
	dma_id = start_dma();
	pool = rte_pktmbuf_pool_create("async", 4095, 0, 0, RTE_MBUF_DEFAULT_BUF_SIZE, rte_socket_id());
	CHECK(dma_id >= 0 && pool, "dma_skeleton started and mbuf pool made");
	if (dma_id < 0 || !pool)
		return 1;
	CHECK(rte_vhost_async_dma_configure(dma_id, 1) == -1, "vChannel 1 does not exist");
	CHECK(rte_vhost_async_dma_configure(63, 0) == -1, "DMA 63 does not exist");
	if (rte_vhost_async_dma_configure(dma_id, 0) == 0) {
		for (i = 0; i < nsel; i++)
			run_mode(sel[i], pool, frames);
		CHECK(rte_vhost_async_dma_unconfigure(dma_id, 0) == 0, "unconfigure DMA %d vChannel 0", dma_id);
	} else {
		CHECK(0, "configure DMA %d vChannel 0", dma_id);
	}
	rte_dma_stop(dma_id);
	rte_dma_close(dma_id);
	rte_mempool_free(pool);
	rte_eal_cleanup();
	printf("%d passed, %d failed\n", passed, failed);
	return failed ? 1 : 0;
}
