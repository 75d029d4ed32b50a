/* SPDX-License-Identifier: BSD-3-Clause
 * The guest side of the in-process C tests (bench_datapath.c, t_async.c):
 * a virtio-net driver's split and packed rings in a memfd guest RAM, the
 * frames it sends, and the vhost-user sequence DPDK's virtio-user sends to
 * bring the device up (frontend.h has the message layer). Static inline:
 * each test uses what it needs. */
#ifndef RVHOST_FFI_GUEST_RING_H
#define RVHOST_FFI_GUEST_RING_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "frontend.h"

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

#define DESC_F_NEXT 1u
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
	int chained; /* TX frames as two-descriptor chains: header, payload */
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
	uint8_t chain_len[MAX_RING];   /* by head id: descriptors in its chain */
	uint16_t chain_tail[MAX_RING]; /* by head id: the second buffer's id */
	uint32_t posted, reclaimed;	  /* free-running counts */
};

/* ---- guest driver ---- */

static inline void gring_init(struct gring *r, struct guest_ram *ram, int q, int packed, uint16_t size, uint64_t iova)
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
	for (i = 0; i < size; i++) {
		r->free_ids[i] = i;
		r->chain_len[i] = 1;
	}
	r->free_count = size;
}

static inline uint8_t *gbuf(const struct gring *r, uint16_t id)
{
	return r->ram + r->bufs + (uint64_t)id * BUF_SIZE;
}

/* Takes a free buffer id and makes it available with `len` bytes (device-
 * writable when `write`); split rings need gring_publish afterwards. */
static inline uint16_t gring_post(struct gring *r, uint32_t len, int write)
{
	uint16_t id = r->free_ids[r->free_head];

	if (!r->free_count) {
		fprintf(stderr, "guest ring has no free buffer\n");
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

/* Makes a two-descriptor chain available: `len0` bytes in buffer `head`
 * (which the used entry names) then `len1` in the next free buffer, both
 * device-readable; the caller filled both buffers (gbuf of the next two
 * free ids, free_ids[free_head] and the one after it). Split rings need
 * gring_publish afterwards. */
static inline uint16_t gring_post_chain(struct gring *r, uint32_t len0, uint32_t len1)
{
	uint16_t head = r->free_ids[r->free_head], tail = r->free_ids[(r->free_head + 1) % r->size];

	if (r->free_count < 2) {
		fprintf(stderr, "guest ring has no two free buffers\n");
		_exit(1);
	}
	r->free_head = (r->free_head + 2) % r->size;
	r->free_count -= 2;
	r->outstanding[head] = 1;
	r->chain_len[head] = 2;
	r->chain_tail[head] = tail;
	r->in_flight[r->posted % r->size] = head;
	r->posted++;
	if (r->packed) {
		uint16_t first = r->avail_idx, second = (uint16_t)((first + 1) % r->size);
		int wrap0 = r->avail_wrap, wrap1 = second ? wrap0 : !wrap0;
		struct b_pdesc *d0 = &r->pdesc[first], *d1 = &r->pdesc[second];

		d1->addr = r->iova + r->bufs + (uint64_t)tail * BUF_SIZE;
		d1->len = len1;
		d1->id = head;
		d1->flags = wrap1 ? PDESC_F_AVAIL : PDESC_F_USED;
		d0->addr = r->iova + r->bufs + (uint64_t)head * BUF_SIZE;
		d0->len = len0;
		d0->id = head;
		/* The head's flags last: the whole chain is available at once. */
		__atomic_store_n(&d0->flags, DESC_F_NEXT | (wrap0 ? PDESC_F_AVAIL : PDESC_F_USED), __ATOMIC_RELEASE);
		r->avail_idx = (uint16_t)((first + 2) % r->size);
		r->avail_wrap = r->avail_idx < 2 ? !wrap0 : wrap0;
	} else {
		struct b_sdesc *d0 = &r->sdesc[head], *d1 = &r->sdesc[tail];

		d0->addr = r->iova + r->bufs + (uint64_t)head * BUF_SIZE;
		d0->len = len0;
		d0->flags = DESC_F_NEXT;
		d0->next = tail;
		d1->addr = r->iova + r->bufs + (uint64_t)tail * BUF_SIZE;
		d1->len = len1;
		d1->flags = 0;
		d1->next = 0;
		r->avail->ring[r->avail_idx % r->size] = head;
		r->avail_idx++;
	}
	return head;
}

static inline void gring_publish(struct gring *r)
{
	if (!r->packed)
		__atomic_store_n(&r->avail->idx, r->avail_idx, __ATOMIC_RELEASE);
}

/* Used entries the device has returned and the driver has not seen yet
 * (not consumed). */
static inline uint32_t gring_used_pending(const struct gring *r)
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
			{
				uint16_t id = r->pdesc[slot].id, step = id < r->size ? r->chain_len[id] : 1;

				if (slot + step >= r->size)
					wrap ^= 1;
				slot = (uint16_t)((slot + step) % r->size);
			}
		}
	}
}

/* Consumes one used entry: its buffer id and written length; 0, or -1 when
 * the id is not one the driver has outstanding. */
static inline int gring_take_used(struct gring *r, uint16_t *id, uint32_t *len)
{
	if (r->packed) {
		struct b_pdesc *d = &r->pdesc[r->used_idx];

		uint16_t step;

		*id = d->id;
		*len = d->len;
		/* A chain's used entry stands for all its slots. */
		step = *id < r->size ? r->chain_len[*id] : 1;
		if (r->used_idx + step >= r->size)
			r->used_wrap ^= 1;
		r->used_idx = (uint16_t)((r->used_idx + step) % r->size);
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

/* Returns buffer `id` (and, for a chain's head, its second buffer) to
 * the free ids. */
static inline void gring_free(struct gring *r, uint16_t id)
{
	r->free_ids[(r->free_head + r->free_count) % r->size] = id;
	r->free_count++;
	if (r->chain_len[id] == 2) {
		r->chain_len[id] = 1;
		gring_free(r, r->chain_tail[id]);
	}
}

/* ---- packets ---- */

static inline uint16_t ip_csum(const uint8_t *p, unsigned int len)
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

static inline void build_frame(uint8_t *f, unsigned int size)
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

/* ---- vhost-user front-end (the sequence DPDK's virtio-user sends) ---- */

static inline uint64_t mode_features(const struct mode *md)
{
	return F_VERSION_1 | F_PROTOCOL_FEATURES | (md->mrg ? F_MRG_RXBUF : 0) | (md->packed ? F_RING_PACKED : 0) |
	       (md->iommu ? F_IOMMU_PLATFORM : 0);
}

/* The IOTLB as QEMU fills it for a guest whose IOMMU maps all its RAM in
 * 2 MiB pages at IOVA_BASE. */
static inline int fill_iotlb(int s, struct guest_ram *ram)
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

static inline int negotiate(int s, struct guest_ram *ram, const struct mode *md, uint16_t ring, int efd[4], int backend)
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

static inline uint64_t drain_eventfd(int fd)
{
	uint64_t v = 0;

	if (read(fd, &v, 8) != 8)
		return 0;
	return v;
}

#endif
