/* SPDX-License-Identifier: BSD-3-Clause
 *
 * Thin out-of-line wrappers over DPDK's static-inline mbuf/mempool/net API.
 * Compiled against the installed DPDK headers so the Rust datapath keeps the
 * exact semantics (mempool cache selection, refcounts, external buffers,
 * checksum helpers) of the DPDK build it runs with. Called once per burst
 * where possible.
 */
#include <rte_dmadev.h>
#include <rte_ip.h>
#include <rte_lcore.h>
#include <rte_mbuf.h>
#include <rte_mempool.h>
#include <rte_net.h>

/* The Rust side (src/dpdk/mbuf.rs) mirrors these. */
_Static_assert(RTE_PKTMBUF_HEADROOM == 128, "mbuf::HEADROOM");
_Static_assert(sizeof(struct rte_mbuf_ext_shared_info) == 24, "mbuf::ExtSharedInfo");
_Static_assert(sizeof(struct rte_net_hdr_lens) == 10, "mbuf::HdrLens");

int rvh_pktmbuf_alloc_bulk(struct rte_mempool *mp, struct rte_mbuf **pkts, unsigned int count)
{
	return rte_pktmbuf_alloc_bulk(mp, pkts, count);
}

struct rte_mbuf *rvh_pktmbuf_alloc(struct rte_mempool *mp)
{
	return rte_pktmbuf_alloc(mp);
}

void rvh_pktmbuf_free(struct rte_mbuf *m)
{
	rte_pktmbuf_free(m);
}

struct rte_mbuf_ext_shared_info *
rvh_pktmbuf_ext_shinfo_init_helper(void *buf_addr, uint16_t *buf_len,
				   rte_mbuf_extbuf_free_callback_t free_cb, void *fcb_opaque)
{
	return rte_pktmbuf_ext_shinfo_init_helper(buf_addr, buf_len, free_cb, fcb_opaque);
}

void rvh_pktmbuf_attach_extbuf(struct rte_mbuf *m, void *buf_addr, rte_iova_t buf_iova,
			       uint16_t buf_len, struct rte_mbuf_ext_shared_info *shinfo)
{
	rte_pktmbuf_attach_extbuf(m, buf_addr, buf_iova, buf_len, shinfo);
}

void rvh_pktmbuf_reset_headroom(struct rte_mbuf *m)
{
	rte_pktmbuf_reset_headroom(m);
}

int rvh_net_intel_cksum_prepare(struct rte_mbuf *m)
{
	return rte_net_intel_cksum_prepare(m);
}

uint16_t rvh_ipv4_cksum(const struct rte_ipv4_hdr *ipv4_hdr)
{
	return rte_ipv4_cksum(ipv4_hdr);
}

int rvh_raw_cksum_mbuf(const struct rte_mbuf *m, uint32_t off, uint32_t len, uint16_t *cksum)
{
	return rte_raw_cksum_mbuf(m, off, len, cksum);
}

/* rte_dmadev: the datapath calls are inline in DPDK's header. */

int rvh_dma_info(int16_t dev_id, uint16_t *max_vchans, uint16_t *max_desc)
{
	struct rte_dma_info info;

	if (!rte_dma_is_valid(dev_id) || rte_dma_info_get(dev_id, &info) != 0)
		return -1;
	*max_vchans = info.max_vchans;
	*max_desc = info.max_desc;
	return 0;
}

int rvh_dma_stats(int16_t dev_id, uint16_t vchan, uint64_t *submitted, uint64_t *completed)
{
	struct rte_dma_stats stats;

	if (rte_dma_stats_get(dev_id, vchan, &stats) != 0)
		return -1;
	*submitted = stats.submitted;
	*completed = stats.completed;
	return 0;
}

uint16_t rvh_dma_burst_capacity(int16_t dev_id, uint16_t vchan)
{
	return rte_dma_burst_capacity(dev_id, vchan);
}

/* One copy; src/dpdk/dma.rs's `Copy` mirrors it. */
struct rvh_dma_copy_op {
	rte_iova_t src;
	rte_iova_t dst;
	uint32_t len;
};
_Static_assert(sizeof(struct rvh_dma_copy_op) == 24, "dma::Copy");

/* Enqueues `n` copies in order, stopping at the first the device refuses,
 * and rings the doorbell once if any went: a burst's copies in one call
 * (rte_dma_copy is inline). Returns how many were enqueued. */
uint32_t rvh_dma_copy_burst(int16_t dev_id, uint16_t vchan, const struct rvh_dma_copy_op *ops, uint32_t n)
{
	uint32_t i;

	for (i = 0; i < n; i++)
		if (rte_dma_copy(dev_id, vchan, ops[i].src, ops[i].dst, ops[i].len, RTE_DMA_OP_FLAG_LLC) < 0)
			break;
	if (i)
		rte_dma_submit(dev_id, vchan);
	return i;
}

uint16_t rvh_dma_completed(int16_t dev_id, uint16_t vchan, uint16_t nb_cpls, bool *has_error)
{
	uint16_t last_idx;

	return rte_dma_completed(dev_id, vchan, nb_cpls, &last_idx, has_error);
}
