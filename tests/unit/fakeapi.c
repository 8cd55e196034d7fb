/* SPDX-License-Identifier: MIT */
/* fakeapi.c: the in-memory NCP account of fakeapi.h. One mutex guards it;
 * answers are parsed afresh from text, so the cache never shares a JSON
 * value with the account. */
#include "fakeapi.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define FAKE_MAX_REGIONS 8

struct fake_image {
	uint64_t no;
	char *json;
};

struct fake_region {
	char code[16];
	struct fake_image *img;
	size_t n, cap;
};

struct fake_api {
	pthread_mutex_t lock;
	pthread_cond_t cond;
	double clock;
	struct fake_region region[FAKE_MAX_REGIONS];
	int nregion;
	long page_cap, total;
	int overlap;
	uint64_t wrong;
	double latency;
	int fail[FAKE_NACTIONS];
	enum ncp_errkind fail_kind[FAKE_NACTIONS];
	int closed[FAKE_NACTIONS], waiting[FAKE_NACTIONS];
	unsigned calls[FAKE_NACTIONS];
	unsigned cancelled[FAKE_NACTIONS];
	unsigned sleeping[FAKE_NACTIONS], peak[FAKE_NACTIONS]; /* in their latency */
};

struct fake_api *fake_new(void)
{
	struct fake_api *f = calloc(1, sizeof(*f));

	if (!f)
		abort();
	pthread_mutex_init(&f->lock, NULL);
	pthread_cond_init(&f->cond, NULL);
	f->clock = 1000;
	return f;
}

void fake_free(struct fake_api *f)
{
	for (int r = 0; r < f->nregion; r++) {
		for (size_t i = 0; i < f->region[r].n; i++)
			free(f->region[r].img[i].json);
		free(f->region[r].img);
	}
	pthread_cond_destroy(&f->cond);
	pthread_mutex_destroy(&f->lock);
	free(f);
}

static struct fake_region *region_of(struct fake_api *f, const char *code)
{
	for (int r = 0; r < f->nregion; r++) {
		if (strcmp(f->region[r].code, code) == 0)
			return &f->region[r];
	}
	return NULL;
}

int fake_add_region(struct fake_api *f, const char *code)
{
	int ret = -1;

	pthread_mutex_lock(&f->lock);
	if (!region_of(f, code) && f->nregion < FAKE_MAX_REGIONS) {
		snprintf(f->region[f->nregion].code, sizeof(f->region[0].code), "%s", code);
		f->nregion++;
		ret = 0;
	}
	pthread_mutex_unlock(&f->lock);
	return ret;
}

void fake_put(struct fake_api *f, const char *region, uint64_t no, const char *json)
{
	struct fake_region *r;
	char *copy = strdup(json);

	if (!copy)
		abort();
	pthread_mutex_lock(&f->lock);
	r = region_of(f, region);
	for (size_t i = 0; r && i < r->n; i++) {
		if (r->img[i].no == no) {
			free(r->img[i].json);
			r->img[i].json = copy;
			copy = NULL;
			break;
		}
	}
	if (r && copy) {
		if (r->n == r->cap) {
			r->cap = r->cap ? r->cap * 2 : 64;
			r->img = realloc(r->img, r->cap * sizeof(*r->img));
			if (!r->img)
				abort();
		}
		r->img[r->n].no = no;
		r->img[r->n++].json = copy;
		copy = NULL;
	}
	pthread_mutex_unlock(&f->lock);
	free(copy);
}

void fake_delete(struct fake_api *f, const char *region, uint64_t no)
{
	struct fake_region *r;

	pthread_mutex_lock(&f->lock);
	r = region_of(f, region);
	for (size_t i = 0; r && i < r->n; i++) {
		if (r->img[i].no == no) {
			free(r->img[i].json);
			memmove(&r->img[i], &r->img[i + 1], (r->n - i - 1) * sizeof(*r->img));
			r->n--;
			break;
		}
	}
	pthread_mutex_unlock(&f->lock);
}

char *fake_image_json(uint64_t no, const char *name, const char *os, int version)
{
	/* every fourth version is one in transition (held busy_ttl) */
	char num[24];
	json_t *o;
	char *text;

	snprintf(num, sizeof(num), "%" PRIu64, no);
	o = json_pack("{s:s, s:s, s:s, s:{s:s, s:s}, s:{s:s, s:s}, s:s, s:s, s:i, s:[{s:i, s:s}]}",
		      "serverImageNo", num, "serverImageName", name, "serverImageDescription",
		      "made by the unit tests", "serverImageType", "code", "SELF", "codeName",
		      "self image", "osType", "code", os, "codeName", os, "serverImageStatusName",
		      version % 4 == 3 ? "creating" : "created", "createDate",
		      "2025-06-20T09:59:39+0900", "version", version, "blockStorageMappingList",
		      "order", 0, "blockStorageName", "disk0");
	if (!o)
		abort();
	text = json_dumps(o, JSON_COMPACT);
	json_decref(o);
	if (!text)
		abort();
	return text;
}

void fake_advance(struct fake_api *f, double seconds)
{
	pthread_mutex_lock(&f->lock);
	f->clock += seconds;
	pthread_mutex_unlock(&f->lock);
}

double fake_now(struct fake_api *f)
{
	double t;

	pthread_mutex_lock(&f->lock);
	t = f->clock;
	pthread_mutex_unlock(&f->lock);
	return t;
}

void fake_fail(struct fake_api *f, enum fake_action a, int n, enum ncp_errkind kind)
{
	pthread_mutex_lock(&f->lock);
	f->fail[a] = n;
	f->fail_kind[a] = kind;
	pthread_mutex_unlock(&f->lock);
}

void fake_gate(struct fake_api *f, enum fake_action a, int closed)
{
	pthread_mutex_lock(&f->lock);
	f->closed[a] = closed;
	pthread_cond_broadcast(&f->cond);
	pthread_mutex_unlock(&f->lock);
}

void fake_wait_gated(struct fake_api *f, enum fake_action a, int n)
{
	pthread_mutex_lock(&f->lock);
	while (f->waiting[a] < n)
		pthread_cond_wait(&f->cond, &f->lock);
	pthread_mutex_unlock(&f->lock);
}

void fake_pages(struct fake_api *f, long cap, int overlap, long total)
{
	pthread_mutex_lock(&f->lock);
	f->page_cap = cap;
	f->overlap = overlap;
	f->total = total;
	pthread_mutex_unlock(&f->lock);
}

void fake_wrong_detail(struct fake_api *f, uint64_t other)
{
	pthread_mutex_lock(&f->lock);
	f->wrong = other;
	pthread_mutex_unlock(&f->lock);
}

void fake_latency(struct fake_api *f, double seconds)
{
	pthread_mutex_lock(&f->lock);
	f->latency = seconds;
	pthread_mutex_unlock(&f->lock);
}

static unsigned counted(struct fake_api *f, const unsigned *counter)
{
	unsigned n;

	pthread_mutex_lock(&f->lock);
	n = *counter;
	pthread_mutex_unlock(&f->lock);
	return n;
}

unsigned fake_cancelled(struct fake_api *f, enum fake_action a)
{
	return counted(f, &f->cancelled[a]);
}

unsigned fake_calls(struct fake_api *f, enum fake_action a)
{
	return counted(f, &f->calls[a]);
}

unsigned fake_peak(struct fake_api *f, enum fake_action a)
{
	return counted(f, &f->peak[a]);
}

/* Every call starts here: counts it, waits at its gate, sleeps its latency
 * and says whether it fails (0 or -1 with *err filled). Returns with
 * f->lock held. */
static int begin(struct fake_api *f, enum fake_action a, struct ncp_error *err)
{
	double latency;
	int failing;

	memset(err, 0, sizeof(*err));
	pthread_mutex_lock(&f->lock);
	f->calls[a]++;
	f->waiting[a]++;
	pthread_cond_broadcast(&f->cond);
	/* A closed gate holds the call as a hung API would: until opened, or
	 * until the caller gives up (ncp_set_cancel), looked at every 5 ms. */
	while (f->closed[a] && !ncp_cancelled()) {
		struct timespec ts;

		clock_gettime(CLOCK_REALTIME, &ts);
		ts.tv_nsec += 5000000;
		if (ts.tv_nsec >= 1000000000) {
			ts.tv_sec++;
			ts.tv_nsec -= 1000000000;
		}
		pthread_cond_timedwait(&f->cond, &f->lock, &ts);
	}
	f->waiting[a]--;
	if (f->closed[a]) {
		f->cancelled[a]++;
		err->kind = NCP_ERR_CANCELLED;
		snprintf(err->message, sizeof(err->message), "cancelled");
		err->attempts = 1;
		return -1;
	}
	latency = f->latency;
	if (latency > 0) {
		struct timespec ts = { (time_t)latency,
				       (long)((latency - (double)(time_t)latency) * 1e9) };

		if (++f->sleeping[a] > f->peak[a])
			f->peak[a] = f->sleeping[a];
		pthread_mutex_unlock(&f->lock);
		nanosleep(&ts, NULL);
		pthread_mutex_lock(&f->lock);
		f->sleeping[a]--;
	}
	failing = f->fail[a] > 0;
	if (failing) {
		f->fail[a]--;
		err->kind = f->fail_kind[a] ? f->fail_kind[a] : NCP_ERR_IO;
		err->http_status = err->kind == NCP_ERR_AUTH ? 401 : 503;
		snprintf(err->message, sizeof(err->message), "injected failure");
		err->attempts = 1;
		return -1;
	}
	return 0;
}

static json_t *parse(const char *text)
{
	json_t *v = json_loads(text, 0, NULL);

	if (!v)
		abort();
	return v;
}

static int fake_regions(void *arg, json_t **regions, struct ncp_error *err)
{
	struct fake_api *f = arg;
	json_t *list;

	*regions = NULL;
	if (begin(f, FAKE_REGIONS, err) < 0) {
		pthread_mutex_unlock(&f->lock);
		return -1;
	}
	list = json_array();
	for (int r = 0; r < f->nregion; r++)
		json_array_append_new(list, json_pack("{s:s, s:s}", "regionCode", f->region[r].code,
						      "regionName", f->region[r].code));
	pthread_mutex_unlock(&f->lock);
	*regions = list;
	return 0;
}

static int fake_page(void *arg, const char *region, long page_no, long page_size, json_t **rows,
		     long *total_rows, struct ncp_error *err)
{
	struct fake_api *f = arg;
	struct fake_region *r;
	long size, from;
	json_t *list;

	*rows = NULL;
	if (begin(f, FAKE_LIST, err) < 0) {
		pthread_mutex_unlock(&f->lock);
		return -1;
	}
	r = region_of(f, region);
	if (!r) {
		pthread_mutex_unlock(&f->lock);
		err->kind = NCP_ERR_IO;
		err->http_status = 400;
		snprintf(err->message, sizeof(err->message), "no such region");
		return -1;
	}
	size = f->page_cap && f->page_cap < page_size ? f->page_cap : page_size;
	if (f->overlap < 0)
		page_no = 1; /* a gateway that ignores pageNo */
	from = (page_no - 1) * size - (f->overlap && page_no > 1 ? page_no - 1 : 0);
	list = json_array();
	for (long i = from < 0 ? 0 : from; i < from + size && i < (long)r->n; i++)
		json_array_append_new(list, parse(r->img[i].json));
	*total_rows = f->total > 0 ? f->total : (long)r->n;
	pthread_mutex_unlock(&f->lock);
	*rows = list;
	return 0;
}

static int fake_detail(void *arg, const char *region, const char *no, json_t **image,
		       struct ncp_error *err)
{
	struct fake_api *f = arg;
	struct fake_region *r;
	uint64_t want = strtoull(no, NULL, 10);

	*image = NULL;
	if (begin(f, FAKE_DETAIL, err) < 0) {
		pthread_mutex_unlock(&f->lock);
		return -1;
	}
	if (f->wrong)
		want = f->wrong;
	r = region_of(f, region);
	for (size_t i = 0; r && i < r->n; i++) {
		if (r->img[i].no == want) {
			*image = parse(r->img[i].json);
			break;
		}
	}
	pthread_mutex_unlock(&f->lock);
	if (*image)
		return 0;
	err->kind = NCP_ERR_NOTFOUND;
	err->http_status = 200;
	snprintf(err->message, sizeof(err->message), "no such image");
	return -1;
}

static const char *fake_host(void *arg)
{
	(void)arg;
	return "fake.invalid";
}

static double fake_clock(void *arg)
{
	return fake_now(arg);
}

struct cache_source fake_source(struct fake_api *f)
{
	struct cache_source s = { f,	     fake_regions, fake_page, fake_detail,
				  fake_host, fake_clock,   NULL };

	return s;
}
