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

#define BURST 32
#define BUF_SIZE 2048u
#define HDR_LEN 12u
#define MAX_RING 1024u
#define SAMPLE_EVERY 1024u

#define F_MRG_RXBUF (1ULL << 15)
#define F_PROTOCOL_FEATURES (1ULL << 30)
#define F_VERSION_1 (1ULL << 32)
#define F_RING_PACKED (1ULL << 34)
#define F_IOMMU_PLATFORM (1ULL << 33)
#define PROTO_F_MQ (1ULL << 0)
#define PROTO_F_REPLY_ACK (1ULL << 3)
#define PROTO_F_SLAVE_REQ (1ULL << 5)
#define REQ_SET_SLAVE_REQ_FD 21
#define REQ_IOTLB_MSG 22
#define IOTLB_UPDATE 2
#define IOTLB_RW 3
#define IOTLB_PAGE (2u << 20)
/* I/O virtual address of guest physical address 0 behind the IOMMU. */
#define IOVA_BASE 0x7000000000ULL
#define PROTO_F_STATUS (1ULL << 16)

#define DESC_F_WRITE 2u
#define AVAIL_F_NO_INTERRUPT 1u
#define PDESC_F_AVAIL (1u << 7)
#define PDESC_F_USED (1u << 15)
#define EVENT_F_DISABLE 1u

/* Guest RAM layout: guest physical address = offset in the memfd. */
#define RAM_SIZE (8u << 20)
#define RING_OFF(q) (0x10000u * ((q) + 1))
#define AVAIL_OFF(q) (RING_OFF(q) + 0x4000u)
#define USED_OFF(q) (RING_OFF(q) + 0x8000u)
#define BUFS_OFF(q) ((q) ? 0x400000u : 0x100000u)

/* Ring structures as the guest driver writes them (virtio 1.1). */
struct b_sdesc { uint64_t addr; uint32_t len; uint16_t flags, next; };
struct b_savail { uint16_t flags, idx, ring[]; };
struct b_selem { uint32_t id, len; };
struct b_sused { uint16_t flags, idx; struct b_selem ring[]; };
struct b_pdesc { uint64_t addr; uint32_t len; uint16_t id, flags; };
struct b_event { uint16_t off_wrap, flags; };

struct mode {
	const char *name;
	int packed, mrg, iommu;
};

/* The first DEFAULT_MODES run when none is named. */
#define DEFAULT_MODES 4
static const struct mode modes[] = {
	{ "split", 0, 0, 0 },	    { "split-mrg", 0, 1, 0 },	    { "packed", 1, 0, 0 },
	{ "packed-mrg", 1, 1, 0 },  { "split-iommu", 0, 0, 1 },    { "split-mrg-iommu", 0, 1, 1 },
	{ "packed-iommu", 1, 0, 1 }, { "packed-mrg-iommu", 1, 1, 1 },
};

/* The guest driver's state of one virtqueue. Buffer id i is always the
 * buffer at BUFS_OFF(q) + i * BUF_SIZE; free ids wait in a FIFO. */
struct gring {
	int packed;
	uint16_t size;
	uint8_t *ram;
	uint64_t bufs;
	uint64_t iova; /* what the device is given for guest physical 0 */
	struct b_sdesc *sdesc;
	struct b_savail *avail;
	struct b_sused *used;
	struct b_pdesc *pdesc;
	struct b_event *drv_event;
	uint16_t avail_idx, used_idx; /* split: free-running; packed: slot */
	int avail_wrap, used_wrap;	  /* packed only */
	uint16_t free_ids[MAX_RING];
	uint32_t free_head, free_count;
	uint16_t in_flight[MAX_RING]; /* ids in posting order */
	uint8_t outstanding[MAX_RING]; /* posted, not yet returned */
	uint32_t posted, reclaimed;	  /* free-running counts */
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

/* ---- guest driver ---- */

static void gring_init(struct gring *r, struct guest_ram *ram, int q, int packed, uint16_t size, uint64_t iova)
{
	uint32_t i;

	memset(r, 0, sizeof(*r));
	r->iova = iova;
	r->packed = packed;
	r->size = size;
	r->ram = ram->addr;
	r->bufs = BUFS_OFF(q);
	memset(ram->addr + RING_OFF(q), 0, 0x10000);
	if (packed) {
		r->pdesc = (struct b_pdesc *)(ram->addr + RING_OFF(q));
		r->drv_event = (struct b_event *)(ram->addr + AVAIL_OFF(q));
		r->drv_event->flags = EVENT_F_DISABLE;
		r->avail_wrap = r->used_wrap = 1;
	} else {
		r->sdesc = (struct b_sdesc *)(ram->addr + RING_OFF(q));
		r->avail = (struct b_savail *)(ram->addr + AVAIL_OFF(q));
		r->used = (struct b_sused *)(ram->addr + USED_OFF(q));
		r->avail->flags = AVAIL_F_NO_INTERRUPT;
	}
	for (i = 0; i < size; i++)
		r->free_ids[i] = i;
	r->free_count = size;
}

static uint8_t *gbuf(const struct gring *r, uint16_t id)
{
	return r->ram + r->bufs + (uint64_t)id * BUF_SIZE;
}

/* Takes a free buffer id and makes it available with `len` bytes (device-
 * writable when `write`); split rings need gring_publish afterwards. */
static uint16_t gring_post(struct gring *r, uint32_t len, int write)
{
	uint16_t id = r->free_ids[r->free_head];

	if (!r->free_count) {
		fprintf(stderr, "bench_datapath: guest ring has no free buffer\n");
		_exit(1);
	}
	r->outstanding[id] = 1;
	r->free_head = (r->free_head + 1) % r->size;
	r->free_count--;
	r->in_flight[r->posted % r->size] = id;
	r->posted++;
	if (r->packed) {
		struct b_pdesc *d = &r->pdesc[r->avail_idx];
		uint16_t flags = (write ? DESC_F_WRITE : 0) | (r->avail_wrap ? PDESC_F_AVAIL : PDESC_F_USED);

		d->addr = r->iova + r->bufs + (uint64_t)id * BUF_SIZE;
		d->len = len;
		d->id = id;
		__atomic_store_n(&d->flags, flags, __ATOMIC_RELEASE);
		if (++r->avail_idx == r->size) {
			r->avail_idx = 0;
			r->avail_wrap ^= 1;
		}
	} else {
		struct b_sdesc *d = &r->sdesc[id];

		d->addr = r->iova + r->bufs + (uint64_t)id * BUF_SIZE;
		d->len = len;
		d->flags = write ? DESC_F_WRITE : 0;
		d->next = 0;
		r->avail->ring[r->avail_idx % r->size] = id;
		r->avail_idx++;
	}
	return id;
}

static void gring_publish(struct gring *r)
{
	if (!r->packed)
		__atomic_store_n(&r->avail->idx, r->avail_idx, __ATOMIC_RELEASE);
}

/* Used entries the device has returned and the driver has not seen yet
 * (not consumed). */
static uint32_t gring_used_pending(const struct gring *r)
{
	uint32_t n = 0;

	if (!r->packed)
		return (uint16_t)(__atomic_load_n(&r->used->idx, __ATOMIC_ACQUIRE) - r->used_idx);
	{
		uint16_t slot = r->used_idx;
		int wrap = r->used_wrap;

		for (;;) {
			uint16_t f = __atomic_load_n(&r->pdesc[slot].flags, __ATOMIC_ACQUIRE);

			if (!!(f & PDESC_F_AVAIL) != wrap || !!(f & PDESC_F_USED) != wrap || n == r->size)
				return n;
			n++;
			if (++slot == r->size) {
				slot = 0;
				wrap ^= 1;
			}
		}
	}
}

/* Consumes one used entry: its buffer id and written length; 0, or -1 when
 * the id is not one the driver has outstanding. */
static int gring_take_used(struct gring *r, uint16_t *id, uint32_t *len)
{
	if (r->packed) {
		struct b_pdesc *d = &r->pdesc[r->used_idx];

		*id = d->id;
		*len = d->len;
		if (++r->used_idx == r->size) {
			r->used_idx = 0;
			r->used_wrap ^= 1;
		}
	} else {
		struct b_selem *e = &r->used->ring[r->used_idx % r->size];

		*id = (uint16_t)e->id;
		*len = e->len;
		r->used_idx++;
	}
	r->reclaimed++;
	if (*id >= r->size || !r->outstanding[*id])
		return -1;
	r->outstanding[*id] = 0;
	return 0;
}

static void gring_free(struct gring *r, uint16_t id)
{
	r->free_ids[(r->free_head + r->free_count) % r->size] = id;
	r->free_count++;
}

/* ---- packets ---- */

static uint16_t ip_csum(const uint8_t *p, unsigned int len)
{
	uint32_t s = 0;
	unsigned int i;

	for (i = 0; i + 1 < len; i += 2)
		s += (uint32_t)p[i] << 8 | p[i + 1];
	while (s >> 16)
		s = (s & 0xffff) + (s >> 16);
	return (uint16_t)~s;
}

/* An Ethernet/IPv4/UDP frame of `size` bytes (no FCS); the 4 bytes at
 * SEQ_OFF carry a per-packet sequence number. */
#define SEQ_OFF 42u
static const uint8_t mac_dst[6] = { 0x52, 0x54, 0x00, 0x00, 0x00, 0x02 };
static const uint8_t mac_src[6] = { 0x52, 0x54, 0x00, 0x00, 0x00, 0x01 };

static void build_frame(uint8_t *f, unsigned int size)
{
	unsigned int ip_len = size - 14, i;
	uint16_t c;

	memcpy(f, mac_dst, 6);
	memcpy(f + 6, mac_src, 6);
	f[12] = 0x08, f[13] = 0x00;
	memset(f + 14, 0, 20);
	f[14] = 0x45;
	f[16] = ip_len >> 8, f[17] = ip_len & 0xff;
	f[22] = 64, f[23] = 17;
	f[26] = 198, f[27] = 18, f[28] = 0, f[29] = 1;
	f[30] = 198, f[31] = 18, f[32] = 0, f[33] = 2;
	c = ip_csum(f + 14, 20);
	f[24] = c >> 8, f[25] = c & 0xff;
	f[34] = 0x04, f[35] = 0xd2, f[36] = 0x16, f[37] = 0x2e;
	f[38] = (ip_len - 20) >> 8, f[39] = (ip_len - 20) & 0xff;
	f[40] = f[41] = 0; /* no UDP checksum */
	for (i = SEQ_OFF; i < size; i++)
		f[i] = (uint8_t)(i * 7 + 3);
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

/* ---- vhost-user front-end (the sequence DPDK's virtio-user sends) ---- */

static uint64_t mode_features(const struct mode *md)
{
	return F_VERSION_1 | F_PROTOCOL_FEATURES | (md->mrg ? F_MRG_RXBUF : 0) | (md->packed ? F_RING_PACKED : 0) |
	       (md->iommu ? F_IOMMU_PLATFORM : 0);
}

/* The IOTLB as QEMU fills it for a guest whose IOMMU maps all its RAM in
 * 2 MiB pages at IOVA_BASE. */
static int fill_iotlb(int s, struct guest_ram *ram)
{
	uint64_t off;

	for (off = 0; off < ram->size; off += IOTLB_PAGE) {
		struct {
			uint64_t iova, size, uaddr;
			uint8_t perm, type, pad[6];
		} m = { IOVA_BASE + off, IOTLB_PAGE, (uint64_t)(uintptr_t)ram->addr + off, IOTLB_RW, IOTLB_UPDATE, { 0 } };

		if (fe_acked(s, REQ_IOTLB_MSG, &m, sizeof(m), NULL, 0))
			return -1;
	}
	return 0;
}

static int negotiate(int s, struct guest_ram *ram, const struct mode *md, uint16_t ring, int efd[4], int backend)
{
	uint64_t features, proto, want, status, pf = PROTO_F_MQ | PROTO_F_REPLY_ACK | PROTO_F_STATUS;
	struct {
		uint32_t nregions, padding;
		uint64_t gpa, size, uaddr, mmap_offset;
	} mt = { 1, 0, 0, ram->size, (uint64_t)(uintptr_t)ram->addr, 0 };
	/* Ring addresses: the front-end's own, or IOVAs behind the IOMMU. */
	uint64_t ua = md->iommu ? IOVA_BASE : (uint64_t)(uintptr_t)ram->addr;
	int q;

	if (md->iommu)
		pf |= PROTO_F_SLAVE_REQ;
	if (fe_send(s, REQ_SET_OWNER, FE_VERSION, NULL, 0, NULL, 0))
		return -1;
	features = fe_call_u64(s, REQ_GET_FEATURES, NULL);
	proto = fe_call_u64(s, REQ_GET_PROTOCOL_FEATURES, NULL);
	if (features == UINT64_MAX || proto == UINT64_MAX || (proto & pf) != pf)
		return -2;
	if (fe_acked(s, REQ_SET_PROTOCOL_FEATURES, &pf, 8, NULL, 0))
		return -3;
	if (md->iommu && fe_acked(s, REQ_SET_SLAVE_REQ_FD, NULL, 0, &backend, 1))
		return -11;
	for (q = 0; q < 2; q++) {
		uint64_t idx = q;

		if (fe_acked(s, REQ_SET_VRING_CALL, &idx, 8, &efd[2 + q], 1))
			return -4;
	}
	want = mode_features(md);
	if ((features & want) != want || fe_acked(s, REQ_SET_FEATURES, &want, 8, NULL, 0))
		return -5;
	status = 0xb;
	if (fe_acked(s, REQ_SET_STATUS, &status, 8, NULL, 0))
		return -6;
	if (fe_acked(s, REQ_SET_MEM_TABLE, &mt, sizeof(mt), &ram->fd, 1))
		return -7;
	if (md->iommu && fill_iotlb(s, ram))
		return -12;
	for (q = 0; q < 2; q++) {
		uint64_t idx = q;
		struct vstate num = { q, ring }, base = { q, md->packed ? 1u << 15 : 0 };
		struct vaddr a = { q, 0, ua + RING_OFF(q), ua + USED_OFF(q), ua + AVAIL_OFF(q), 0 };

		if (fe_acked(s, REQ_SET_VRING_NUM, &num, 8, NULL, 0) || fe_acked(s, REQ_SET_VRING_BASE, &base, 8, NULL, 0) ||
		    fe_acked(s, REQ_SET_VRING_ADDR, &a, sizeof(a), NULL, 0) ||
		    fe_acked(s, REQ_SET_VRING_KICK, &idx, 8, &efd[q], 1))
			return -8;
	}
	for (q = 0; q < 2; q++) {
		struct vstate en = { q, 1 };

		if (fe_acked(s, REQ_SET_VRING_ENABLE, &en, 8, NULL, 0))
			return -9;
	}
	status = 0xf;
	return fe_acked(s, REQ_SET_STATUS, &status, 8, NULL, 0) ? -10 : 0;
}

static uint64_t drain_eventfd(int fd)
{
	uint64_t v = 0;

	if (read(fd, &v, 8) != 8)
		return 0;
	return v;
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
	static const struct mode md = { "iotlb-budget", 0, 0, 1 };
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
