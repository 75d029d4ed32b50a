/* SPDX-License-Identifier: BSD-3-Clause
 *
 * Bulk copies between guest memory and ours (src/memory/raw.rs). Out of
 * line and in C so that the Rust compiler sees an opaque call: the guest
 * may write the same bytes concurrently, which would be a data race for
 * Rust's own accesses.
 */
#include <stddef.h>
#include <string.h>

void rvh_guest_copy(void *dst, const void *src, size_t n)
{
	memcpy(dst, src, n);
}
