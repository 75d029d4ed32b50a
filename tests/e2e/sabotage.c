/* LD_PRELOAD shim that breaks a vhost-user back-end on purpose, to show that
 * migration.py's checks catch the breakage (RVHOST_SABOTAGE=... migration.py,
 * never in CI). Library-agnostic: it works on stock DPDK and on rvhost.
 *   RVHOST_SABOTAGE=dirty-log  the dirty log QEMU hands over (SET_LOG_BASE,
 *                              memfd "vhost-log") is replaced by private
 *                              anonymous memory: the back-end logs into the
 *                              void and QEMU never re-sends the pages it
 *                              wrote during precopy.
 *   RVHOST_SABOTAGE=no-uffd    UFFDIO_REGISTER pretends to succeed without
 *                              registering: the destination back-end touches
 *                              guest pages that have not arrived yet and QEMU
 *                              never hears of it. */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <linux/userfaultfd.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <unistd.h>

static int mode(const char *m)
{
	const char *s = getenv("RVHOST_SABOTAGE");
	return s && !strcmp(s, m);
}

static int is_vhost_log(int fd)
{
	char link[64], target[256];
	snprintf(link, sizeof(link), "/proc/self/fd/%d", fd);
	ssize_t n = readlink(link, target, sizeof(target) - 1);
	if (n <= 0)
		return 0;
	target[n] = 0;
	return strstr(target, "vhost-log") != NULL;
}

static void *sabotaged_mmap(void *(*real)(void *, size_t, int, int, int, off_t), void *addr, size_t len, int prot,
			    int flags, int fd, off_t off)
{
	if (fd >= 0 && (flags & MAP_SHARED) && mode("dirty-log") && is_vhost_log(fd)) {
		fprintf(stderr, "sabotage: the vhost dirty log (fd %d, %zu bytes) goes to private memory\n", fd, len);
		return real(addr, len, prot, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	}
	return real(addr, len, prot, flags, fd, off);
}

void *mmap(void *addr, size_t len, int prot, int flags, int fd, off_t off)
{
	static void *(*real)(void *, size_t, int, int, int, off_t);
	if (!real)
		real = dlsym(RTLD_NEXT, "mmap");
	return sabotaged_mmap(real, addr, len, prot, flags, fd, off);
}

void *mmap64(void *addr, size_t len, int prot, int flags, int fd, off_t off)
{
	static void *(*real)(void *, size_t, int, int, int, off_t);
	if (!real)
		real = dlsym(RTLD_NEXT, "mmap64");
	return sabotaged_mmap(real, addr, len, prot, flags, fd, off);
}

int ioctl(int fd, unsigned long req, ...)
{
	static int (*real)(int, unsigned long, ...);
	va_list ap;
	va_start(ap, req);
	void *arg = va_arg(ap, void *);
	va_end(ap);
	if (!real)
		real = dlsym(RTLD_NEXT, "ioctl");
	if (req == UFFDIO_REGISTER && mode("no-uffd")) {
		struct uffdio_register *r = arg;
		r->ioctls = (1ull << _UFFDIO_WAKE) | (1ull << _UFFDIO_COPY) | (1ull << _UFFDIO_ZEROPAGE);
		fprintf(stderr, "sabotage: UFFDIO_REGISTER of %llu bytes skipped\n", (unsigned long long)r->range.len);
		return 0;
	}
	return real(fd, req, arg);
}
