/* SPDX-License-Identifier: MIT */
/* fakeapi.h: an NCP account in memory behind the cache's source interface,
 * for tests with no network: regions and images (kept as JSON text), a
 * clock that only moves when told, per-action failures, gates that hold
 * calls until opened, capped or overlapping pages, and call counts. */
#ifndef FAKEAPI_H
#define FAKEAPI_H

#include <pthread.h>
#include <stdint.h>

#include "cache.h"

enum fake_action { FAKE_REGIONS, FAKE_LIST, FAKE_DETAIL, FAKE_NACTIONS };

struct fake_api;

struct fake_api *fake_new(void);
void fake_free(struct fake_api *f);
/* The source to give cache_new / fsops_new (arg is f). */
struct cache_source fake_source(struct fake_api *f);

/* The account: regions and images; json is one image object as text,
 * which must carry serverImageNo. */
int fake_add_region(struct fake_api *f, const char *code);
void fake_put(struct fake_api *f, const char *region, uint64_t no, const char *json);
void fake_delete(struct fake_api *f, const char *region, uint64_t no);
/* An image object as text (malloc'd): typical fields, the given name. */
char *fake_image_json(uint64_t no, const char *name, const char *os, int version);

/* The clock (monotonic seconds as the cache sees them). */
void fake_advance(struct fake_api *f, double seconds);
double fake_now(struct fake_api *f);

/* Faults: the next n calls of action fail with kind (NCP_ERR_IO, _AUTH). */
void fake_fail(struct fake_api *f, enum fake_action a, int n, enum ncp_errkind kind);
/* Gates: while closed, calls of action wait; fake_wait_gated returns once
 * n calls are waiting. */
void fake_gate(struct fake_api *f, enum fake_action a, int closed);
void fake_wait_gated(struct fake_api *f, enum fake_action a, int n);

/* Listing shapes: at most cap rows per page (0: as asked); overlap repeats
 * each page's last row first on the next page (-1: every page is the first,
 * as from a gateway that ignores pageNo); total (if > 0) is the totalRows
 * reported whatever the truth. */
void fake_pages(struct fake_api *f, long cap, int overlap, long total);
/* Detail answers describe image `other` instead of the one asked (0: off). */
void fake_wrong_detail(struct fake_api *f, uint64_t other);
/* Real seconds each call takes (for concurrency tests). */
void fake_latency(struct fake_api *f, double seconds);

unsigned fake_calls(struct fake_api *f, enum fake_action a);
/* The most calls of action at once (while in their latency). */
unsigned fake_peak(struct fake_api *f, enum fake_action a);
/* Calls given up at a closed gate (the caller's ncp_set_cancel check). */
unsigned fake_cancelled(struct fake_api *f, enum fake_action a);

#endif
