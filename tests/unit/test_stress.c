/* SPDX-License-Identifier: MIT */
/* test_stress.c: the model-based stress test (stress.c) over several random
 * accounts, 8 threads each. STRESS_SEED=n runs one seed; STRESS_ROUNDS=n
 * sets the rounds per seed. */
#include <stdio.h>
#include <stdlib.h>

#include "log.h"
#include "stress.h"
#include "testhelp.h"

int main(void)
{
	const char *one = getenv("STRESS_SEED"), *r = getenv("STRESS_ROUNDS");
	struct stress_opts o = { 8, r ? atoi(r) : 8, 150, 5000 };
	unsigned first = one ? (unsigned)strtoul(one, NULL, 10) : 1;
	unsigned last = one ? first : 6;

	/* the daemon's warnings (unusable names, injected failures) are expected */
	log_setup("/dev/null", 0);
	for (unsigned s = first; s <= last; s++) {
		struct stress_rng g = { .seed = s };
		int failed = stress_run(&g, &o);

		if (failed)
			fprintf(stderr, "test_stress: seed %u failed (STRESS_SEED=%u reruns it)\n",
				s, s);
		CHECK(failed == 0);
	}
	printf("test_stress: %ld operations on %d threads\n", stress_ops_done(), o.threads);
	return TEST_REPORT();
}
