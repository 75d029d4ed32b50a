/* Prints the size, alignment and member offsets of every public vhost type,
 * and the value of every public constant. Compiled once against DPDK's
 * installed headers and once against ours; tests/abi/layout.sh diffs them.
 * RVHOST_ABI (2211, 2411, 2511) is the release both sets of headers are of
 * (tests/abi/layout.sh sets it from the installed DPDK). */
#ifndef RVHOST_ABI
#define RVHOST_ABI 2211
#endif
#include <stddef.h>
#include <stdio.h>
#include <rte_vhost.h>
#include <rte_vhost_async.h>
#include <rte_vdpa.h>
#include <rte_vhost_crypto.h>
#ifdef HAVE_VDPA_DRIVER_H
#include <vdpa_driver.h>
#endif

#define TYPE(t) printf("%-40s size=%zu align=%zu\n", #t, sizeof(t), _Alignof(t))
#define FIELD(t, f) printf("  %-38s off=%zu size=%zu\n", #f, offsetof(t, f), sizeof(((t *)0)->f))
#define CONST(c) printf("%-40s = %lld\n", #c, (long long)(c))

int main(void)
{
	TYPE(struct rte_vhost_mem_region);
	FIELD(struct rte_vhost_mem_region, guest_phys_addr);
	FIELD(struct rte_vhost_mem_region, guest_user_addr);
	FIELD(struct rte_vhost_mem_region, host_user_addr);
	FIELD(struct rte_vhost_mem_region, size);
	FIELD(struct rte_vhost_mem_region, mmap_addr);
	FIELD(struct rte_vhost_mem_region, mmap_size);
	FIELD(struct rte_vhost_mem_region, fd);
	TYPE(struct rte_vhost_memory);
	FIELD(struct rte_vhost_memory, nregions);
	printf("  regions off=%zu\n", offsetof(struct rte_vhost_memory, regions));
	TYPE(struct rte_vhost_inflight_desc_split);
	FIELD(struct rte_vhost_inflight_desc_split, inflight);
	FIELD(struct rte_vhost_inflight_desc_split, padding);
	FIELD(struct rte_vhost_inflight_desc_split, next);
	FIELD(struct rte_vhost_inflight_desc_split, counter);
	TYPE(struct rte_vhost_inflight_info_split);
	FIELD(struct rte_vhost_inflight_info_split, features);
	FIELD(struct rte_vhost_inflight_info_split, version);
	FIELD(struct rte_vhost_inflight_info_split, desc_num);
	FIELD(struct rte_vhost_inflight_info_split, last_inflight_io);
	FIELD(struct rte_vhost_inflight_info_split, used_idx);
	printf("  desc off=%zu\n", offsetof(struct rte_vhost_inflight_info_split, desc));
	TYPE(struct rte_vhost_inflight_desc_packed);
	FIELD(struct rte_vhost_inflight_desc_packed, inflight);
	FIELD(struct rte_vhost_inflight_desc_packed, padding);
	FIELD(struct rte_vhost_inflight_desc_packed, next);
	FIELD(struct rte_vhost_inflight_desc_packed, last);
	FIELD(struct rte_vhost_inflight_desc_packed, num);
	FIELD(struct rte_vhost_inflight_desc_packed, counter);
	FIELD(struct rte_vhost_inflight_desc_packed, id);
	FIELD(struct rte_vhost_inflight_desc_packed, flags);
	FIELD(struct rte_vhost_inflight_desc_packed, len);
	FIELD(struct rte_vhost_inflight_desc_packed, addr);
	TYPE(struct rte_vhost_inflight_info_packed);
	FIELD(struct rte_vhost_inflight_info_packed, features);
	FIELD(struct rte_vhost_inflight_info_packed, version);
	FIELD(struct rte_vhost_inflight_info_packed, desc_num);
	FIELD(struct rte_vhost_inflight_info_packed, free_head);
	FIELD(struct rte_vhost_inflight_info_packed, old_free_head);
	FIELD(struct rte_vhost_inflight_info_packed, used_idx);
	FIELD(struct rte_vhost_inflight_info_packed, old_used_idx);
	FIELD(struct rte_vhost_inflight_info_packed, used_wrap_counter);
	FIELD(struct rte_vhost_inflight_info_packed, old_used_wrap_counter);
	FIELD(struct rte_vhost_inflight_info_packed, padding);
	printf("  desc off=%zu\n", offsetof(struct rte_vhost_inflight_info_packed, desc));
	TYPE(struct rte_vhost_resubmit_desc);
	FIELD(struct rte_vhost_resubmit_desc, index);
	FIELD(struct rte_vhost_resubmit_desc, counter);
	TYPE(struct rte_vhost_resubmit_info);
	FIELD(struct rte_vhost_resubmit_info, resubmit_list);
	FIELD(struct rte_vhost_resubmit_info, resubmit_num);
	TYPE(struct rte_vhost_ring_inflight);
	FIELD(struct rte_vhost_ring_inflight, inflight_split);
	FIELD(struct rte_vhost_ring_inflight, inflight_packed);
	FIELD(struct rte_vhost_ring_inflight, resubmit_inflight);
	TYPE(struct rte_vhost_vring);
	FIELD(struct rte_vhost_vring, desc);
	FIELD(struct rte_vhost_vring, desc_packed);
	FIELD(struct rte_vhost_vring, avail);
	FIELD(struct rte_vhost_vring, driver_event);
	FIELD(struct rte_vhost_vring, used);
	FIELD(struct rte_vhost_vring, device_event);
	FIELD(struct rte_vhost_vring, log_guest_addr);
	FIELD(struct rte_vhost_vring, callfd);
	FIELD(struct rte_vhost_vring, kickfd);
	FIELD(struct rte_vhost_vring, size);
	TYPE(enum rte_vhost_msg_result);
	CONST(RTE_VHOST_MSG_RESULT_ERR);
	CONST(RTE_VHOST_MSG_RESULT_OK);
	CONST(RTE_VHOST_MSG_RESULT_REPLY);
	CONST(RTE_VHOST_MSG_RESULT_NOT_HANDLED);
	TYPE(rte_vhost_msg_handle);
	TYPE(struct rte_vhost_user_extern_ops);
	FIELD(struct rte_vhost_user_extern_ops, pre_msg_handle);
	FIELD(struct rte_vhost_user_extern_ops, post_msg_handle);
	TYPE(struct rte_vhost_device_ops);
	FIELD(struct rte_vhost_device_ops, new_device);
	FIELD(struct rte_vhost_device_ops, destroy_device);
	FIELD(struct rte_vhost_device_ops, vring_state_changed);
	FIELD(struct rte_vhost_device_ops, features_changed);
	FIELD(struct rte_vhost_device_ops, new_connection);
	FIELD(struct rte_vhost_device_ops, destroy_connection);
	FIELD(struct rte_vhost_device_ops, guest_notified);
#if RVHOST_ABI >= 2411
	FIELD(struct rte_vhost_device_ops, guest_notify);
#else
	FIELD(struct rte_vhost_device_ops, reserved);
#endif
	TYPE(struct rte_vhost_power_monitor_cond);
	FIELD(struct rte_vhost_power_monitor_cond, addr);
	FIELD(struct rte_vhost_power_monitor_cond, val);
	FIELD(struct rte_vhost_power_monitor_cond, mask);
	FIELD(struct rte_vhost_power_monitor_cond, size);
	FIELD(struct rte_vhost_power_monitor_cond, match);
	TYPE(struct rte_vhost_stat);
	FIELD(struct rte_vhost_stat, id);
	FIELD(struct rte_vhost_stat, value);
	TYPE(struct rte_vhost_stat_name);
	FIELD(struct rte_vhost_stat_name, name);
	TYPE(struct rte_vdpa_stat);
	FIELD(struct rte_vdpa_stat, id);
	FIELD(struct rte_vdpa_stat, value);
	TYPE(struct rte_vdpa_stat_name);
	FIELD(struct rte_vdpa_stat_name, name);
	TYPE(enum rte_vhost_crypto_zero_copy);
	CONST(RTE_VHOST_CRYPTO_ZERO_COPY_DISABLE);
	CONST(RTE_VHOST_CRYPTO_ZERO_COPY_ENABLE);
	CONST(RTE_VHOST_CRYPTO_MAX_ZERO_COPY_OPTIONS);
#ifdef HAVE_VDPA_DRIVER_H
	TYPE(struct rte_vdpa_dev_ops);
	FIELD(struct rte_vdpa_dev_ops, get_queue_num);
	FIELD(struct rte_vdpa_dev_ops, get_features);
	FIELD(struct rte_vdpa_dev_ops, get_protocol_features);
	FIELD(struct rte_vdpa_dev_ops, dev_conf);
	FIELD(struct rte_vdpa_dev_ops, dev_close);
	FIELD(struct rte_vdpa_dev_ops, dev_cleanup);
	FIELD(struct rte_vdpa_dev_ops, set_vring_state);
	FIELD(struct rte_vdpa_dev_ops, set_features);
	FIELD(struct rte_vdpa_dev_ops, migration_done);
	FIELD(struct rte_vdpa_dev_ops, get_vfio_group_fd);
	FIELD(struct rte_vdpa_dev_ops, get_vfio_device_fd);
	FIELD(struct rte_vdpa_dev_ops, get_notify_area);
	FIELD(struct rte_vdpa_dev_ops, get_stats_names);
	FIELD(struct rte_vdpa_dev_ops, get_stats);
	FIELD(struct rte_vdpa_dev_ops, reset_stats);
	FIELD(struct rte_vdpa_dev_ops, get_config);
	FIELD(struct rte_vdpa_dev_ops, set_config);
	FIELD(struct rte_vdpa_dev_ops, get_dev_type);
	TYPE(struct rte_vdpa_device);
	FIELD(struct rte_vdpa_device, next);
	FIELD(struct rte_vdpa_device, device);
	FIELD(struct rte_vdpa_device, ops);
	FIELD(struct rte_vdpa_device, type);
	CONST(RTE_VHOST_QUEUE_ALL);
#endif
	CONST(RTE_VHOST_USER_CLIENT);
	CONST(RTE_VHOST_USER_NO_RECONNECT);
	CONST(RTE_VHOST_USER_RESERVED_1);
	CONST(RTE_VHOST_USER_IOMMU_SUPPORT);
	CONST(RTE_VHOST_USER_POSTCOPY_SUPPORT);
	CONST(RTE_VHOST_USER_EXTBUF_SUPPORT);
	CONST(RTE_VHOST_USER_LINEARBUF_SUPPORT);
	CONST(RTE_VHOST_USER_ASYNC_COPY);
	CONST(RTE_VHOST_USER_NET_COMPLIANT_OL_FLAGS);
	CONST(RTE_VHOST_USER_NET_STATS_ENABLE);
#if RVHOST_ABI >= 2411
	CONST(RTE_VHOST_USER_ASYNC_CONNECT);
#endif
	CONST(VIRTIO_NET_F_GUEST_ANNOUNCE);
	CONST(VIRTIO_NET_F_MQ);
	CONST(VIRTIO_NET_F_MTU);
	CONST(VIRTIO_F_ANY_LAYOUT);
	CONST(VHOST_USER_PROTOCOL_F_MQ);
	CONST(VHOST_USER_PROTOCOL_F_LOG_SHMFD);
	CONST(VHOST_USER_PROTOCOL_F_RARP);
	CONST(VHOST_USER_PROTOCOL_F_REPLY_ACK);
	CONST(VHOST_USER_PROTOCOL_F_NET_MTU);
#if RVHOST_ABI >= 2411
	CONST(VHOST_USER_PROTOCOL_F_BACKEND_REQ);
#else
	CONST(VHOST_USER_PROTOCOL_F_SLAVE_REQ);
#endif
	CONST(VHOST_USER_PROTOCOL_F_CRYPTO_SESSION);
	CONST(VHOST_USER_PROTOCOL_F_PAGEFAULT);
	CONST(VHOST_USER_PROTOCOL_F_CONFIG);
#if RVHOST_ABI >= 2411
	CONST(VHOST_USER_PROTOCOL_F_BACKEND_SEND_FD);
#else
	CONST(VHOST_USER_PROTOCOL_F_SLAVE_SEND_FD);
#endif
	CONST(VHOST_USER_PROTOCOL_F_HOST_NOTIFIER);
	CONST(VHOST_USER_PROTOCOL_F_INFLIGHT_SHMFD);
	CONST(VHOST_USER_PROTOCOL_F_STATUS);
	CONST(VHOST_USER_F_PROTOCOL_FEATURES);
	CONST(RTE_MAX_VHOST_DEVICE);
#ifdef _VHOST_CRYPTO_H_
	printf("include guard _VHOST_CRYPTO_H_\n");
#endif
#ifdef _RTE_VHOST_CRYPTO_H_
	printf("include guard _RTE_VHOST_CRYPTO_H_\n");
#endif
	CONST(RTE_VHOST_VDPA_DEVICE_TYPE_NET);
	CONST(RTE_VHOST_VDPA_DEVICE_TYPE_BLK);
	CONST(RTE_VHOST_STATS_NAME_SIZE);
	CONST(RTE_VHOST_NEED_LOG(0xFFFFFFFFFFFFFFFFULL));
	CONST(VHOST_F_LOG_ALL);
	CONST(RTE_VDPA_STATS_NAME_SIZE);
	CONST(VHOST_CRYPTO_MBUF_POOL_SIZE);
	CONST(VHOST_CRYPTO_MAX_BURST_SIZE);
	CONST(VHOST_CRYPTO_MAX_DATA_SIZE);
	CONST(VHOST_CRYPTO_SESSION_MAP_ENTRIES);
	CONST(VIRTIO_CRYPTO_MAX_NUM_BURST_VQS);
	CONST(VHOST_CRYPTO_MAX_IV_LEN);
	CONST(VHOST_CRYPTO_MAX_N_DESC);
	{
		/* The inline helper behaves the same. */
		struct { struct rte_vhost_memory m; struct rte_vhost_mem_region r[2]; } t = {
			.m = { .nregions = 2 },
			.r = { { .guest_phys_addr = 0x1000, .host_user_addr = 0x70000, .size = 0x1000 },
			       { .guest_phys_addr = 0x4000, .host_user_addr = 0x90000, .size = 0x2000 } } };
		uint64_t gpas[] = { 0x0, 0x1000, 0x1ff0, 0x2000, 0x4800, 0x5fff, 0x6000 };
		for (unsigned i = 0; i < sizeof(gpas) / sizeof(gpas[0]); i++) {
			uint64_t len = 0x100;
			uint64_t va = rte_vhost_va_from_guest_pa(&t.m, gpas[i], &len);
			printf("va_from_guest_pa(%#llx) = %#llx len %#llx\n", (unsigned long long)gpas[i],
			       (unsigned long long)va, (unsigned long long)len);
		}
	}
	return 0;
}
