/* SPDX-License-Identifier: MIT */
/* testhelp.h: a minimal unit-test harness: CHECK records a failure and goes
 * on; TEST_REPORT prints the totals as "N passed, N failed" and gives the
 * exit status. */
#ifndef TESTHELP_H
#define TESTHELP_H

#include <stdio.h>
#include <string.h>

static int test_passed, test_failed;

#define CHECK(cond)                                                                        \
	do {                                                                               \
		if (cond) {                                                                \
			test_passed++;                                                     \
		} else {                                                                   \
			test_failed++;                                                     \
			fprintf(stderr, "%s:%d: FAILED: %s\n", __FILE__, __LINE__, #cond); \
		}                                                                          \
	} while (0)

#define CHECK_STR(a, b)                                                                           \
	do {                                                                                      \
		const char *check_a_ = (a), *check_b_ = (b);                                      \
		if (check_a_ && check_b_ && strcmp(check_a_, check_b_) == 0) {                    \
			test_passed++;                                                            \
		} else {                                                                          \
			test_failed++;                                                            \
			fprintf(stderr, "%s:%d: FAILED: %s == %s (\"%s\" vs \"%s\")\n", __FILE__, \
				__LINE__, #a, #b, check_a_ ? check_a_ : "(null)",                 \
				check_b_ ? check_b_ : "(null)");                                  \
		}                                                                                 \
	} while (0)

#define TEST_REPORT()                                                              \
	(printf("%s: %d passed, %d failed\n", __FILE__, test_passed, test_failed), \
	 test_failed ? 1 : 0)

#endif
