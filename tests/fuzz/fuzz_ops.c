/* SPDX-License-Identifier: MIT */
/* fuzz_ops.c: libFuzzer target over sequences of filesystem operations.
 * The input chooses everything the model-based stress test (tests/unit/
 * stress.c) would choose at random: the account (regions, images, names),
 * the options, the changes between rounds and each operation (lookups,
 * reads, getxattr, readlink, directory reads in chunks, forget, the clock,
 * dropped caches, reclaiming, injected failures). Every answer is checked
 * against the model; any mismatch aborts. */
#include <stdint.h>
#include <stdlib.h>

#include "log.h"
#include "stress.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static int quiet;
	struct stress_rng g = { 0, data, size, 0, PTHREAD_MUTEX_INITIALIZER };
	/* small accounts, one thread: fast, and the same input does the same */
	struct stress_opts o = { 1, 4, 40, 60 };

	if (!quiet) {
		log_setup("/dev/null", 0);
		quiet = 1;
	}
	if (stress_run(&g, &o) != 0)
		abort();
	return 0;
}
