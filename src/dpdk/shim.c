/* SPDX-License-Identifier: BSD-3-Clause
 *
 * Thin out-of-line wrappers over DPDK's static-inline mbuf/mempool API.
 * Compiled against the installed DPDK headers so the Rust datapath keeps the
 * exact semantics (mempool cache selection, refcounts, external buffers) of
 * the DPDK build it runs with. Called once per burst where possible.
 */
#include <rte_mbuf.h>
#include <rte_mempool.h>
#include <rte_lcore.h>

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

uint16_t rvh_pktmbuf_data_room_size(struct rte_mempool *mp)
{
	return rte_pktmbuf_data_room_size(mp);
}

unsigned int rvh_lcore_id(void)
{
	return rte_lcore_id();
}
