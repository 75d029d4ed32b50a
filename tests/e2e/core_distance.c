/* How far apart CPUs 0 and 1 are right now: one cache line bounced between
 * a thread on each, nanoseconds per one-way hand-over (the median of 9
 * short runs). On a VM the host moves the vCPUs between its core complexes,
 * and this jumps between ~25-40 ns (sharing a last-level cache) and
 * ~100-260 ns (not); tests/e2e/bench.py keeps the windows measured on one
 * placement. Usage: core_distance [CPU_A CPU_B] */
#define _GNU_SOURCE
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#define HAND_OVERS 4000
#define RUNS 9

static _Alignas(64) atomic_long line;
static int cpu_a, cpu_b;

static void pin(int cpu)
{
	cpu_set_t set;

	CPU_ZERO(&set);
	CPU_SET(cpu, &set);
	pthread_setaffinity_np(pthread_self(), sizeof(set), &set);
}

static void *answer(void *arg)
{
	(void)arg;
	pin(cpu_b);
	for (long i = 0; i < (long)RUNS * HAND_OVERS; i++) {
		while (atomic_load_explicit(&line, memory_order_acquire) != 2 * i + 1)
			;
		atomic_store_explicit(&line, 2 * i + 2, memory_order_release);
	}
	return NULL;
}

static double now_ns(void)
{
	struct timespec t;

	clock_gettime(CLOCK_MONOTONIC, &t);
	return t.tv_sec * 1e9 + t.tv_nsec;
}

static int by_value(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return (x > y) - (x < y);
}

int main(int argc, char **argv)
{
	double runs[RUNS];
	pthread_t peer;
	long i = 0;

	cpu_a = argc > 2 ? atoi(argv[1]) : 0;
	cpu_b = argc > 2 ? atoi(argv[2]) : 1;
	pin(cpu_a);
	if (pthread_create(&peer, NULL, answer, NULL) != 0)
		return 1;
	for (int r = 0; r < RUNS; r++) {
		double start = now_ns();

		for (int k = 0; k < HAND_OVERS; k++, i++) {
			atomic_store_explicit(&line, 2 * i + 1, memory_order_release);
			while (atomic_load_explicit(&line, memory_order_acquire) != 2 * i + 2)
				;
		}
		runs[r] = (now_ns() - start) / HAND_OVERS / 2;
	}
	pthread_join(peer, NULL);
	qsort(runs, RUNS, sizeof(runs[0]), by_value);
	printf("%.0f\n", runs[RUNS / 2]);
	return 0;
}
