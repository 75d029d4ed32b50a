/* SPDX-License-Identifier: BSD-3-Clause
 * In-process datapath microbenchmark of a librte_vhost.so.23 (Debian's or
 * rvhost's: LD_LIBRARY_PATH decides, the same binary runs both).
 *
 * The test is the vhost application (one EAL lcore, like a net/vhost PMD
 * forwarding core) and, between library calls, the guest's virtio-net
 * driver in its own memfd guest RAM, connected over a real vhost-user
 * socket with the messages DPDK's virtio-user sends. Ring 1 (guest TX) and
 * ring 0 (guest RX), split or packed. Per burst:
 *
 *   guest:   post 32 packets on ring 1 (one descriptor each: the 12-byte
 *            virtio-net header and the frame in one buffer, as virtio-user
 *            does with VERSION_1/any_layout)
 *   timed:   rte_vhost_dequeue_burst(vid, 1, ...)
 *   untimed: swap the MAC addresses in the mbufs
 *   timed:   rte_vhost_enqueue_burst(vid, 0, ...)
 *   untimed: free the mbufs; the guest reclaims the used entries of both
 *            rings and reposts them (ring 0 always has every buffer posted,
 *            2048 writable bytes each).
 *
 * The guest polls: interrupts are suppressed (split: avail->flags
 * VRING_AVAIL_F_NO_INTERRUPT; packed: driver event flags DISABLE) and it
 * never kicks, so no eventfd is written on the measured path (checked).
 * Every burst is checked (32 dequeued, all enqueued, both used rings moved
 * by exactly that); every 1024th burst the mbufs and the guest's received
 * buffers are compared byte for byte. Any failure exits non-zero.
 *
 * With a MODE ending in -iommu the guest is behind a virtual IOMMU, as a
 * DPDK application in a guest with VFIO maps its hugepages: the socket is
 * registered with RTE_VHOST_USER_IOMMU_SUPPORT, VIRTIO_F_IOMMU_PLATFORM is
 * negotiated, ring and buffer addresses are I/O virtual addresses (guest
 * physical + IOVA_BASE), and the front-end fills the IOTLB with 2 MiB
 * mappings before the rings are set (QEMU's vhost IOTLB updates); a miss
 * request on the back-end channel is a failure (none is expected).
 *
 * usage: bench_datapath [MODE...] [--size BYTES] [--iters BURSTS]
 *                       [--warmup BURSTS] [--ring ENTRIES]
 *   MODE: split split-mrg packed packed-mrg (default: these four), and
 *         each with -iommu appended; iotlb-budget (see run_iotlb_budget)
 *   bench_datapath --has-callgrind-macros: exit status 0 if built with them
 * Prints per mode (cycles/pkt, deq, enq: medians over chunks of 64 bursts,
 * see CHUNK; mean: all cycles / all packets):
 *   MODE size=S cycles/pkt=X pkts=N deq=X enq=X mean=X ring=R lib=PATH
 */
#define _GNU_SOURCE
#include <errno.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <rte_cycles.h>
#include <rte_eal.h>
#include <rte_errno.h>
#include <rte_lcore.h>
#include <rte_mbuf.h>
#include <rte_mempool.h>
#include <rte_vhost.h>

#include "frontend.h"
#include "guest_ring.h"

#if defined(__has_include)
#if __has_include(<valgrind/callgrind.h>)
#include <valgrind/callgrind.h>
#define HAVE_CALLGRIND 1
#endif
#endif
#ifndef HAVE_CALLGRIND
#define CALLGRIND_TOGGLE_COLLECT
#define CALLGRIND_START_INSTRUMENTATION
#define CALLGRIND_STOP_INSTRUMENTATION
#endif

/* The first DEFAULT_MODES run when none is named. */
#define DEFAULT_MODES 4
static const struct mode modes[] = {
	{ "split", 0, 0, 0, 0 },	       { "split-mrg", 0, 1, 0, 0 },	  { "packed", 1, 0, 0, 0 },
	{ "packed-mrg", 1, 1, 0, 0 },   { "split-iommu", 0, 0, 1, 0 },  { "split-mrg-iommu", 0, 1, 1, 0 },
	{ "packed-iommu", 1, 0, 1, 0 }, { "packed-mrg-iommu", 1, 1, 1, 0 },
};

static char sock_path[108]; /* removed by die() */
static _Atomic int new_vid = -1;
static _Atomic int destroyed;

static int cb_new_device(int vid)
{
	atomic_store(&new_vid, vid);
	return 0;
}

static void cb_destroy_device(int vid)
{
	(void)vid;
	atomic_store(&destroyed, 1);
}

static const struct rte_vhost_device_ops ops = {
	.new_device = cb_new_device,
	.destroy_device = cb_destroy_device,
};

static void die(const char *mode, const char *fmt, ...) __attribute__((format(printf, 2, 3), noreturn));
static void die(const char *mode, const char *fmt, ...)
{
	va_list ap;

	fprintf(stderr, "bench_datapath: %s: ", mode);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	fflush(stdout);
	if (sock_path[0])
		unlink(sock_path);
	_exit(1);
}

static void swap_macs(struct rte_mbuf **pkts, unsigned int n)
{
	unsigned int i;

	for (i = 0; i < n; i++) {
		uint8_t *p = rte_pktmbuf_mtod(pkts[i], uint8_t *), t[6];

		memcpy(t, p, 6);
		memcpy(p, p + 6, 6);
		memcpy(p + 6, t, 6);
	}
}

/* ---- the benchmark ---- */

/* Cycles are summed per chunk of CHUNK bursts; a mode's figure is the
 * median over its chunks (the mean is printed too). On a shared VM a chunk
 * now and then contains a timer interrupt or a preempted vCPU: the median
 * leaves those out, the per-chunk sum keeps any periodic cost of the
 * library itself (a refill every few bursts) in the figure. */
#define CHUNK 64u

struct result {
	uint64_t deq_cycles, enq_cycles, pkts;
	double med, med_deq, med_enq;
};

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

	return x < y ? -1 : x > y;
}

static double median_per_pkt(uint64_t *v, size_t n)
{
	qsort(v, n, sizeof(*v), cmp_u64);
	return (n % 2 ? (double)v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2.0) / (CHUNK * BURST);
}

static void check_sample(const char *mode, struct rte_mbuf **pkts, unsigned int n, const uint8_t *frame,
			 unsigned int size, uint32_t seq0)
{
	unsigned int i;

	for (i = 0; i < n; i++) {
		const uint8_t *p = rte_pktmbuf_mtod(pkts[i], const uint8_t *);
		uint32_t seq = seq0 + i;

		if (pkts[i]->pkt_len != size || pkts[i]->data_len != size || pkts[i]->nb_segs != 1)
			die(mode, "dequeued mbuf %u: pkt_len %u data_len %u segs %u, expected %u in one segment", i,
			    pkts[i]->pkt_len, pkts[i]->data_len, pkts[i]->nb_segs, size);
		if (memcmp(p, frame, SEQ_OFF) || memcmp(p + SEQ_OFF, &seq, 4) ||
		    memcmp(p + SEQ_OFF + 4, frame + SEQ_OFF + 4, size - SEQ_OFF - 4))
			die(mode, "dequeued mbuf %u: payload differs from what the guest sent", i);
	}
}

/* Closes the front-end's sockets, waits for the device to go, and frees
 * the guest. */
static void disconnect(int s, int backend[2], int efd[4], struct guest_ram *ram)
{
	int i;

	close(s);
	close(backend[0]);
	close(backend[1]);
	for (i = 0; i < 500 && !atomic_load(&destroyed); i++)
		usleep(10000);
	rte_vhost_driver_unregister(sock_path);
	for (i = 0; i < 4; i++)
		close(efd[i]);
	guest_ram_free(ram);
}

static struct result run_mode(const struct mode *md, struct rte_mempool *pool, unsigned int size, uint16_t ring,
			      uint64_t warmup, uint64_t iters)
{
	char *path = sock_path;
	struct guest_ram ram;
	struct gring *rx = calloc(1, sizeof(*rx)), *tx = calloc(1, sizeof(*tx));
	struct rte_mbuf *pkts[BURST];
	uint8_t frame[2048], expect[2048];
	int efd[4], backend[2], s, vid = -1, i, rc;
	struct fe_msg miss;
	uint64_t it, signals = 0, features = 0;
	uint32_t seq = 0;
	struct result res = { 0, 0, 0, 0, 0, 0 };
	const char *mode = md->name;
	size_t nchunks = iters / CHUNK, c;
	uint64_t *ch_deq = calloc(nchunks + 1, 8), *ch_enq = calloc(nchunks + 1, 8), *ch_all = calloc(nchunks + 1, 8);

	if (!rx || !tx || !ch_deq || !ch_enq || !ch_all)
		die(mode, "out of memory");
	snprintf(sock_path, sizeof(sock_path), "/tmp/rvhost-bench-%d-%s.sock", getpid(), mode);
	unlink(path);
	atomic_store(&new_vid, -1);
	atomic_store(&destroyed, 0);
	if (rte_vhost_driver_register(path, md->iommu ? RTE_VHOST_USER_IOMMU_SUPPORT : 0) ||
	    rte_vhost_driver_callback_register(path, &ops) ||
	    rte_vhost_driver_start(path))
		die(mode, "register/start %s failed", path);
	if (guest_ram_init(&ram, RAM_SIZE))
		die(mode, "guest RAM: %s", strerror(errno));
	memset(ram.addr, 0, RAM_SIZE); /* fault every page in */
	gring_init(rx, &ram, 0, md->packed, ring, md->iommu ? IOVA_BASE : 0);
	gring_init(tx, &ram, 1, md->packed, ring, md->iommu ? IOVA_BASE : 0);
	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, backend))
		die(mode, "socketpair: %s", strerror(errno));
	for (i = 0; i < 4; i++)
		efd[i] = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);

	/* Frames: every TX buffer holds header + frame; only the sequence
	 * number changes per packet. */
	build_frame(frame, size);
	memcpy(expect, frame, size);
	memcpy(expect, mac_src, 6);
	memcpy(expect + 6, mac_dst, 6);
	for (i = 0; i < ring; i++) {
		memset(gbuf(tx, i), 0, HDR_LEN);
		memcpy(gbuf(tx, i) + HDR_LEN, frame, size);
	}

	s = fe_connect(path);
	if (s < 0)
		die(mode, "connect %s failed", path);
	rc = negotiate(s, &ram, md, ring, efd, backend[1]);
	if (rc)
		die(mode, "vhost-user negotiation failed at step %d", -rc);
	for (i = 0; i < 500 && (vid = atomic_load(&new_vid)) < 0; i++)
		usleep(10000);
	if (vid < 0)
		die(mode, "no new_device callback");
	if (rte_vhost_get_negotiated_features(vid, &features) || features != mode_features(md))
		die(mode, "negotiated features %#llx, expected %#llx", (unsigned long long)features,
		    (unsigned long long)mode_features(md));

	/* Every RX buffer posted. */
	for (i = 0; i < ring; i++)
		gring_post(rx, BUF_SIZE, 1);
	gring_publish(rx);
	for (i = 0; i < 4; i++)
		drain_eventfd(efd[i]);

	for (it = 0; it < warmup + iters; it++) {
		int sample = it % SAMPLE_EVERY == SAMPLE_EVERY - 1, measured = it >= warmup;
		uint32_t seq0 = seq, k;
		uint16_t n, m;
		uint64_t t0, t1, t2, t3;

		if (it == warmup)
			CALLGRIND_START_INSTRUMENTATION;
		/* Guest TX: 32 packets. */
		for (k = 0; k < BURST; k++) {
			uint16_t id = gring_post(tx, HDR_LEN + size, 0);

			memcpy(gbuf(tx, id) + HDR_LEN + SEQ_OFF, &seq, 4);
			seq++;
		}
		gring_publish(tx);
		if (sample) {
			/* The next BURST RX buffers the device will fill: poison them. */
			for (k = 0; k < BURST; k++)
				memset(gbuf(rx, rx->in_flight[(rx->reclaimed + k) % ring]), 0xa5, HDR_LEN + size);
		}

		if (measured)
			CALLGRIND_TOGGLE_COLLECT;
		t0 = rte_rdtsc();
		n = rte_vhost_dequeue_burst(vid, 1, pool, pkts, BURST);
		t1 = rte_rdtsc();
		if (measured)
			CALLGRIND_TOGGLE_COLLECT;
		if (n != BURST)
			die(mode, "burst %llu: dequeued %u of %u", (unsigned long long)it, n, BURST);
		if (sample)
			check_sample(mode, pkts, n, frame, size, seq0);
		swap_macs(pkts, n);
		if (measured)
			CALLGRIND_TOGGLE_COLLECT;
		t2 = rte_rdtsc();
		m = rte_vhost_enqueue_burst(vid, 0, pkts, n);
		t3 = rte_rdtsc();
		if (measured)
			CALLGRIND_TOGGLE_COLLECT;
		rte_pktmbuf_free_bulk(pkts, n);
		if (m != n)
			die(mode, "burst %llu: enqueued %u of %u", (unsigned long long)it, m, n);
		if (measured) {
			c = (it - warmup) / CHUNK;
			res.deq_cycles += t1 - t0;
			res.enq_cycles += t3 - t2;
			res.pkts += n;
			ch_deq[c] += t1 - t0;
			ch_enq[c] += t3 - t2;
		}

		/* Guest reclaims both rings. */
		if ((k = gring_used_pending(tx)) != n)
			die(mode, "burst %llu: guest TX used ring moved by %u, expected %u", (unsigned long long)it, k, n);
		for (k = 0; k < n; k++) {
			uint16_t id;
			uint32_t len;

			if (gring_take_used(tx, &id, &len))
				die(mode, "burst %llu: TX used id %u was not outstanding", (unsigned long long)it, id);
			gring_free(tx, id);
		}
		if ((k = gring_used_pending(rx)) != m)
			die(mode, "burst %llu: guest RX used ring moved by %u, expected %u", (unsigned long long)it, k, m);
		for (k = 0; k < m; k++) {
			uint16_t id;
			uint32_t len, sq = seq0 + k;
			const uint8_t *b;

			if (gring_take_used(rx, &id, &len) || len != HDR_LEN + size)
				die(mode, "burst %llu: RX used id %u len %u: expected an outstanding id and len %u",
				    (unsigned long long)it, id, len, HDR_LEN + size);
			b = gbuf(rx, id);
			if (sample) {
				static const uint8_t zero[10];
				uint16_t nb;

				memcpy(&nb, b + 10, 2);
				if (memcmp(b, zero, 10) || (md->mrg && nb != 1))
					die(mode, "burst %llu: RX virtio-net header of packet %u not as expected (num_buffers %u)",
					    (unsigned long long)it, k, nb);
				if (memcmp(b + HDR_LEN, expect, SEQ_OFF) || memcmp(b + HDR_LEN + SEQ_OFF, &sq, 4) ||
				    memcmp(b + HDR_LEN + SEQ_OFF + 4, expect + SEQ_OFF + 4, size - SEQ_OFF - 4))
					die(mode, "burst %llu: RX packet %u differs from the frame sent (MACs swapped)",
					    (unsigned long long)it, k);
			}
			gring_free(rx, id);
			gring_post(rx, BUF_SIZE, 1);
		}
		gring_publish(rx);
	}
	CALLGRIND_STOP_INSTRUMENTATION;
	for (c = 0; c < nchunks; c++)
		ch_all[c] = ch_deq[c] + ch_enq[c];
	res.med = median_per_pkt(ch_all, nchunks);
	res.med_deq = median_per_pkt(ch_deq, nchunks);
	res.med_enq = median_per_pkt(ch_enq, nchunks);
	free(ch_deq);
	free(ch_enq);
	free(ch_all);
	for (i = 0; i < 4; i++)
		signals += drain_eventfd(efd[i]);
	/* The IOTLB held every address: the back-end never had to ask. */
	if (md->iommu && fe_recv(backend[0], &miss, 0) > 0)
		die(mode, "the back-end sent request %u on its channel (an IOTLB miss?)", miss.request);
	if (signals)
		fprintf(stderr, "bench_datapath: %s: warning: %llu eventfd signals during the run\n", mode,
			(unsigned long long)signals);

	disconnect(s, backend, efd, &ram);
	free(rx);
	free(tx);
	return res;
}

/* ---- IOTLB budget (MODE iotlb-budget) ----
 *
 * The IOTLB work a front-end or a guest can cause, measured against the
 * same work with nothing pending (split rings behind the IOMMU):
 *   control thread: an IOTLB update (the front-end's send-to-ack time) on
 *     a device with 256 rings, all translated, then all waiting for areas
 *     nothing maps (steady, and the first message after the retry period,
 *     which asks again for what the rings wait for);
 *   lcore: a dequeue burst whose next chain the guest pointed at a fresh
 *     unmapped IOVA (a hostile guest), with nothing pending, then with the
 *     pending set filled by the other 254 rings' bursts (8 misses each).
 * Miss requests are counted (the front-end reads them all and answers
 * none). Rings 2..255 have 256 entries, at EXTRA_RING_OFF(q). */
#define BUDGET_RINGS 256u
#define EXTRA_RING_OFF(q) (0x600000u + (q) * 0x2000u)
#define EXTRA_RING_SIZE 256u
#define BUDGET_SAMPLES 256u
/* IOVAs from here on are never mapped. */
#define UNMAPPED_IOVA 0x10000000000ULL
#define IOTLB_RO 1

static uint64_t unmapped_pages;

static uint64_t fresh_unmapped_iova(void)
{
	return UNMAPPED_IOVA + unmapped_pages++ * 4096;
}

/* Miss requests waiting on the back-end channel, read and counted. */
static unsigned int drain_misses(int backend)
{
	struct fe_msg m;
	unsigned int n = 0;

	while (fe_recv(backend, &m, 0) == 1)
		n++;
	return n;
}

static double median_u64(uint64_t *v, size_t n)
{
	qsort(v, n, sizeof(*v), cmp_u64);
	return n % 2 ? (double)v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2.0;
}

static int set_ring_addr(int s, uint32_t q, uint64_t desc, uint64_t avail, uint64_t used)
{
	struct vaddr a = { q, 0, desc, used, avail, 0 };

	return fe_acked(s, REQ_SET_VRING_ADDR, &a, sizeof(a), NULL, 0) ? -1 : 0;
}

/* Ring q (2..255): 256 entries at EXTRA_RING_OFF(q), started and enabled. */
static int setup_extra_ring(int s, struct guest_ram *ram, uint32_t q, int kick)
{
	uint64_t idx = q, ua = IOVA_BASE + EXTRA_RING_OFF(q);
	struct vstate num = { q, EXTRA_RING_SIZE }, base = { q, 0 }, en = { q, 1 };

	memset(ram->addr + EXTRA_RING_OFF(q), 0, 0x2000);
	((struct b_savail *)(ram->addr + EXTRA_RING_OFF(q) + 0x1000))->flags = AVAIL_F_NO_INTERRUPT;
	if (fe_acked(s, REQ_SET_VRING_NUM, &num, 8, NULL, 0) || fe_acked(s, REQ_SET_VRING_BASE, &base, 8, NULL, 0) ||
	    set_ring_addr(s, q, ua, ua + 0x1000, ua + 0x1240) || fe_acked(s, REQ_SET_VRING_KICK, &idx, 8, &kick, 1) ||
	    fe_acked(s, REQ_SET_VRING_ENABLE, &en, 8, NULL, 0))
		return -1;
	return 0;
}

/* One burst on ring q whose only posted chain the guest just pointed at a
 * fresh unmapped IOVA; it must move nothing. */
static void missing_burst(int vid, uint32_t q, struct guest_ram *ram, struct rte_mempool *pool, struct rte_mbuf *m)
{
	uint8_t *ring = ram->addr + EXTRA_RING_OFF(q);
	struct b_sdesc *d = (struct b_sdesc *)ring;
	struct b_savail *avail = (struct b_savail *)(ring + 0x1000);
	struct rte_mbuf *pkts[BURST];

	d->addr = fresh_unmapped_iova();
	if (__atomic_load_n(&avail->idx, __ATOMIC_RELAXED) == 0) {
		d->len = BUF_SIZE;
		d->flags = q % 2 ? 0 : DESC_F_WRITE;
		avail->ring[0] = 0;
		__atomic_store_n(&avail->idx, 1, __ATOMIC_RELEASE);
	}
	if (q % 2 ? rte_vhost_dequeue_burst(vid, q, pool, pkts, BURST) : rte_vhost_enqueue_burst(vid, q, &m, 1))
		die("iotlb-budget", "ring %u: a burst moved a packet through an unmapped IOVA", q);
}

static double cpu_us(clockid_t clock)
{
	struct timespec t;

	clock_gettime(clock, &t);
	return t.tv_sec * 1e6 + t.tv_nsec / 1e3;
}

/* What IOTLB messages cost the device's connection thread. */
struct ctl_cost {
	double median;	       /* send-to-ack cycles */
	uint64_t first;	       /* the first message's */
	double cpu_us;	       /* CPU time of the other threads per message */
	unsigned int misses;   /* miss requests they caused */
};

/* BUDGET_SAMPLES IOTLB updates of pages nothing uses. The process's CPU
 * time less this thread's is the connection thread's (the others idle):
 * unlike the send-to-ack time it does not depend on when the scheduler
 * runs that thread. */
static struct ctl_cost unrelated_updates(int s, int backend, struct guest_ram *ram)
{
	static uint64_t page;
	uint64_t cyc[BUDGET_SAMPLES], t0;
	double proc0 = cpu_us(CLOCK_PROCESS_CPUTIME_ID), self0 = cpu_us(CLOCK_THREAD_CPUTIME_ID);
	struct ctl_cost c = { 0, 0, 0, 0 };
	unsigned int i;

	for (i = 0; i < BUDGET_SAMPLES; i++) {
		struct {
			uint64_t iova, size, uaddr;
			uint8_t perm, type, pad[6];
		} m = { UNMAPPED_IOVA * 2 + page++ * 4096, 4096, (uint64_t)(uintptr_t)ram->addr, IOTLB_RO, IOTLB_UPDATE, { 0 } };

		t0 = rte_rdtsc();
		if (fe_acked(s, REQ_IOTLB_MSG, &m, sizeof(m), NULL, 0))
			die("iotlb-budget", "IOTLB update refused");
		cyc[i] = rte_rdtsc() - t0;
		c.misses += drain_misses(backend);
	}
	c.cpu_us = (cpu_us(CLOCK_PROCESS_CPUTIME_ID) - proc0 - (cpu_us(CLOCK_THREAD_CPUTIME_ID) - self0)) / BUDGET_SAMPLES;
	c.first = cyc[0];
	c.median = median_u64(cyc, BUDGET_SAMPLES);
	return c;
}

/* BUDGET_SAMPLES dequeue bursts on ring 1, each missing a fresh IOVA: the
 * median cycles and the misses they caused. */
static double missing_tx_bursts(int vid, struct gring *tx, uint16_t id, struct rte_mempool *pool, int backend,
				unsigned int *misses)
{
	uint64_t cyc[BUDGET_SAMPLES], t0;
	struct rte_mbuf *pkts[BURST];
	unsigned int i;

	for (i = 0; i < BUDGET_SAMPLES; i++) {
		tx->sdesc[id].addr = fresh_unmapped_iova();
		t0 = rte_rdtsc();
		if (rte_vhost_dequeue_burst(vid, 1, pool, pkts, BURST))
			die("iotlb-budget", "a burst moved a packet through an unmapped IOVA");
		cyc[i] = rte_rdtsc() - t0;
	}
	*misses = drain_misses(backend);
	return median_u64(cyc, BUDGET_SAMPLES);
}

static void run_iotlb_budget(struct rte_mempool *pool, uint16_t ring)
{
	static const struct mode md = { "iotlb-budget", 0, 0, 1, 0 };
	const double us = rte_get_tsc_hz() / 1e6;
	struct guest_ram ram;
	struct gring *rx = calloc(1, sizeof(*rx)), *tx = calloc(1, sizeof(*tx));
	struct rte_mbuf *m = rte_pktmbuf_alloc(pool);
	int efd[4], backend[2], s, vid = -1, i;
	uint32_t q, k;
	uint16_t id;
	struct ctl_cost idle, waiting;
	double burst_idle, burst_full;
	unsigned int miss_burst_idle, miss_burst_full, filled, asked;

	if (!rx || !tx || !m)
		die(md.name, "out of memory");
	snprintf(sock_path, sizeof(sock_path), "/tmp/rvhost-bench-%d-budget.sock", getpid());
	unlink(sock_path);
	atomic_store(&new_vid, -1);
	atomic_store(&destroyed, 0);
	if (rte_vhost_driver_register(sock_path, RTE_VHOST_USER_IOMMU_SUPPORT) ||
	    rte_vhost_driver_callback_register(sock_path, &ops) || rte_vhost_driver_start(sock_path))
		die(md.name, "register/start %s failed", sock_path);
	if (guest_ram_init(&ram, RAM_SIZE))
		die(md.name, "guest RAM: %s", strerror(errno));
	memset(ram.addr, 0, RAM_SIZE);
	gring_init(rx, &ram, 0, 0, ring, IOVA_BASE);
	gring_init(tx, &ram, 1, 0, ring, IOVA_BASE);
	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, backend))
		die(md.name, "socketpair: %s", strerror(errno));
	for (i = 0; i < 4; i++)
		efd[i] = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	s = fe_connect(sock_path);
	if (s < 0 || negotiate(s, &ram, &md, ring, efd, backend[1]))
		die(md.name, "vhost-user negotiation failed");
	for (i = 0; i < 500 && (vid = atomic_load(&new_vid)) < 0; i++)
		usleep(10000);
	if (vid < 0)
		die(md.name, "no new_device callback");
	for (q = 2; q < BUDGET_RINGS; q++)
		if (setup_extra_ring(s, &ram, q, efd[0]))
			die(md.name, "ring %u setup failed", q);
	for (k = 0; k < ring; k++)
		gring_post(rx, BUF_SIZE, 1);
	gring_publish(rx);
	drain_misses(backend[0]);

	/* Control thread, 256 rings translated. */
	idle = unrelated_updates(s, backend[0], &ram);

	/* lcore, nothing pending but ring 1's own (at most 8) misses. */
	id = gring_post(tx, HDR_LEN + 60, 0);
	gring_publish(tx);
	burst_idle = missing_tx_bursts(vid, tx, id, pool, backend[0], &miss_burst_idle);
	usleep(1100000); /* ring 1's misses expire */

	/* The other rings fill the pending set: 8 misses each. */
	for (filled = 0, k = 0; k < 8; k++) {
		for (q = 2; q < BUDGET_RINGS; q++)
			missing_burst(vid, q, &ram, pool, m);
		filled += drain_misses(backend[0]);
	}
	burst_full = missing_tx_bursts(vid, tx, id, pool, backend[0], &miss_burst_full);

	/* Control thread, 256 rings waiting for areas nothing maps. */
	for (q = 0; q < BUDGET_RINGS; q++) {
		uint64_t at = UNMAPPED_IOVA * 3 + (uint64_t)q * 0x100000;

		if (set_ring_addr(s, q, at, at + 0x4000, at + 0x5000))
			die(md.name, "ring %u: SET_VRING_ADDR refused", q);
	}
	asked = drain_misses(backend[0]);
	usleep(1100000); /* the first message asks again for every area */
	waiting = unrelated_updates(s, backend[0], &ram);

	printf("iotlb-budget control: an IOTLB update with %u rings: all translated: %.1f us CPU of the connection "
	       "thread a message, send to ack median %.1f us, %u misses in %u messages; all waiting (asked for at "
	       "first: %u misses): %.1f us CPU a message, send to ack median %.1f us, first after the retry period "
	       "%.1f us, %u misses in %u messages\n",
	       BUDGET_RINGS, idle.cpu_us, idle.median / us, idle.misses, BUDGET_SAMPLES, asked, waiting.cpu_us,
	       waiting.median / us, waiting.first / us, waiting.misses, BUDGET_SAMPLES);
	printf("iotlb-budget lcore: a dequeue burst missing a fresh IOVA: nothing pending: median %.0f cycles "
	       "(%.2f us), %u misses in %u bursts; after %u misses of 254 other rings: median %.0f cycles (%.2f us), "
	       "%u misses in %u bursts; lib=%s\n",
	       burst_idle, burst_idle / us, miss_burst_idle, BUDGET_SAMPLES, filled, burst_full, burst_full / us,
	       miss_burst_full, BUDGET_SAMPLES, loaded_vhost_library());
	fflush(stdout);
	rte_pktmbuf_free(m);
	disconnect(s, backend, efd, &ram);
	free(rx);
	free(tx);
}

static void usage(void)
{
	fprintf(stderr, "usage: bench_datapath [split|split-mrg|packed|packed-mrg[-iommu]|iotlb-budget ...]\n"
			"                      [--size BYTES(60..2036)]\n"
			"                      [--iters BURSTS] [--warmup BURSTS] [--ring 256|512|1024]\n");
	exit(2);
}

int main(int argc, char **argv)
{
	char prefix[64];
	char *eal[] = { argv[0], "-l", "0", "--no-huge", "-m", "256", "--no-pci", "--no-shconf", "--no-telemetry", prefix,
			"--log-level=lib.vhost.*:error", "--log-level=lib.eal:error" };
	const struct mode *sel[8];
	unsigned int nsel = 0, size = 64, ring = 1024, i, j, budget = 0;
	unsigned long long iters = 200000, warmup = 20000;
	struct rte_mempool *pool;
	const char *lib;

	for (i = 1; i < (unsigned int)argc; i++) {
		if (!strcmp(argv[i], "--has-callgrind-macros")) /* for tools/microbench.sh */
#ifdef HAVE_CALLGRIND
			return 0;
#else
			return 1;
#endif
		if (!strcmp(argv[i], "--size") && i + 1 < (unsigned int)argc)
			size = strtoul(argv[++i], NULL, 0);
		else if (!strcmp(argv[i], "--iters") && i + 1 < (unsigned int)argc)
			iters = strtoull(argv[++i], NULL, 0);
		else if (!strcmp(argv[i], "--warmup") && i + 1 < (unsigned int)argc)
			warmup = strtoull(argv[++i], NULL, 0);
		else if (!strcmp(argv[i], "--ring") && i + 1 < (unsigned int)argc)
			ring = strtoul(argv[++i], NULL, 0);
		else if (!strcmp(argv[i], "iotlb-budget"))
			budget = 1;
		else {
			for (j = 0; j < sizeof(modes) / sizeof(modes[0]); j++)
				if (!strcmp(argv[i], modes[j].name))
					break;
			if (j == sizeof(modes) / sizeof(modes[0]) || nsel == 8)
				usage();
			sel[nsel++] = &modes[j];
		}
	}
	/* The frame must hold the sequence number and, with its header, fit
	 * one guest buffer and one mbuf. */
	if (size < 60 || size > BUF_SIZE - HDR_LEN || (ring != 256 && ring != 512 && ring != 1024) || iters < CHUNK)
		usage();
	if (!nsel && !budget)
		for (j = 0; j < DEFAULT_MODES; j++)
			sel[nsel++] = &modes[j];

	snprintf(prefix, sizeof(prefix), "--file-prefix=rvhost-bench-%d", getpid());
	if (rte_eal_init(sizeof(eal) / sizeof(eal[0]), eal) < 0) {
		fprintf(stderr, "rte_eal_init failed\n");
		return 1;
	}
	pool = rte_pktmbuf_pool_create("bench", 8191, 256, 0, RTE_MBUF_DEFAULT_BUF_SIZE, rte_socket_id());
	if (!pool) {
		fprintf(stderr, "mbuf pool: %s\n", rte_strerror(rte_errno));
		return 1;
	}
	lib = loaded_vhost_library();
	printf("# librte_vhost: %s; TSC %.3f GHz; lcore %u; %u-entry rings, %llu bursts of %d after %llu warm-up\n",
	       lib, rte_get_tsc_hz() / 1e9, rte_lcore_id(), ring, iters, BURST, warmup);
	fflush(stdout);
	for (i = 0; i < nsel; i++) {
		struct result r = run_mode(sel[i], pool, size, ring, warmup, iters);

		printf("%s size=%u cycles/pkt=%.1f pkts=%llu deq=%.1f enq=%.1f mean=%.1f ring=%u lib=%s\n", sel[i]->name,
		       size, r.med, (unsigned long long)r.pkts, r.med_deq, r.med_enq,
		       (double)(r.deq_cycles + r.enq_cycles) / r.pkts, ring, lib);
		fflush(stdout);
	}
	if (budget)
		run_iotlb_budget(pool, ring);
	rte_mempool_free(pool);
	rte_eal_cleanup();
	return 0;
}
