/* SPDX-License-Identifier: MIT */
/* stress.h: the model-based stress test of the cache and inode layer
 * (stress.c), shared by test_stress and the fuzz_ops fuzz target. */
#ifndef STRESS_H
#define STRESS_H

#include <pthread.h>
#include <stddef.h>
#include <stdint.h>

/* Where choices come from: rand_r(seed), or the bytes of data (a fuzzer's
 * input; choices are 0 once it is used up). */
struct stress_rng {
	unsigned seed;
	const uint8_t *data;
	size_t len, pos;
	pthread_mutex_t lock;
};

struct stress_opts {
	int threads;	     /* 1 to 8; 1 runs the operations on the caller */
	int rounds;	     /* account changes, then operations, this often */
	int ops;	     /* operations per thread and round */
	unsigned max_region; /* images in a region at the start, at most */
};

/* Runs one account through rounds of changes and operations, every answer
 * checked against the model; failures are printed. Returns their count. */
int stress_run(struct stress_rng *g, const struct stress_opts *o);
/* Operations run so far, over all runs. */
long stress_ops_done(void);

#endif
