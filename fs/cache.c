/* SPDX-License-Identifier: MIT */
/* cache.c: regions, listings and images with their age, and the fetches that
 * fill them. One mutex guards all of it; it is never held across the network.
 * The region list, each listing and each image carry the same freshness
 * record, and one sequence (obtain) serves all three: answer from the cache,
 * or join the fetch in flight, or fetch, install and land the flight. */
#include "cache.h"

#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#ifdef __GLIBC__
#include <malloc.h>
#endif
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "inode.h"
#include "log.h"

#define LIST_PAGE_SIZE 1000
#define MAX_LIST_PAGES 10000
#define LIST_AT_ONCE 16	     /* pages of one listing fetched at once, at most */
#define STALE_RETRY_S 5.0    /* first wait before a failing object is tried again */
#define STALE_RETRY_MAX 60.0 /* the longest: the wait doubles up to this */
#define WORKERS_DEFAULT 16
#define SLOT_CHUNK 1024u /* slots are allocated in chunks that never move */

/* One fetch in progress, and how the last one ended. A fetch runs on one of
 * the cache's workers; readers wait for it (and may be interrupted), and a
 * background refresh runs with nobody waiting at all. */
struct flight {
	uint32_t seq;	  /* bumped when a fetch lands */
	uint32_t waiters; /* readers waiting for the fetch in progress */
	uint32_t epoch;	  /* the cache's epoch when the fetch started */
	int16_t err;	  /* -errno of the last fetch, 0 for success */
	uint8_t busy;
	uint8_t background; /* started for no reader: never abandoned */
	uint8_t abandon;    /* every reader left: give the fetch up (atomic) */
};

/* How old one cached object is; the same for all three kinds. */
struct freshness {
	double fetched;	 /* time the answer counts from; -1: none, or forgotten */
	double good;	 /* time of the last good answer; -1: none */
	double retry_at; /* failing: no refresh before this time */
	uint8_t warned;	 /* a stale answer was logged since the last good one */
	uint8_t failing; /* refreshes failed in a row since the last good answer */
	struct flight flight;
};

enum slot_state { SLOT_FREE, SLOT_EMPTY, SLOT_OK, SLOT_MISSING };

struct slot {
	uint64_t no;
	struct tree *tree; /* current data, or NULL */
	struct tree *prev; /* the data of generation gen - 1, for inodes still using it */
	struct freshness fr;
	uint32_t region;
	uint32_t mark;	    /* the listing build or scan that last saw this slot */
	uint32_t next_free; /* when free: the next free slot + 1, 0 = none */
	uint16_t gen;
	uint8_t state;
	uint8_t name_logged; /* its name was found unusable for .by-name */
	uint8_t transit;     /* its status is one in transition: held busy_ttl */
};

struct name_entry {
	uint64_t key;  /* from a hash of the name: the order of a directory read */
	uint32_t name; /* offset in pool */
	uint32_t slot;
};

struct cache_names {
	unsigned refs;
	uint32_t n;
	struct cache_ids *from; /* the listing these were made of (a reference) */
	uint32_t made;		/* the region's changes then: names change with the data */
	struct name_entry *entries;
	uint32_t *by_key; /* entry indices in key order */
	char *pool;
};

struct region {
	char code[16];
	struct cache_names *names; /* by serverImageName, made when asked for */
	struct cache_ids *listing; /* NULL until listed */
	struct freshness fr;
	uint32_t changes; /* bumped when an image of the region changes */
	uint32_t transit; /* images of the listing in transition: held busy_ttl */
	int64_t mtime;
};

/* The objects that obtain() keeps fresh. */
enum kind { K_REGIONS, K_LISTING, K_IMAGE };
struct obj {
	enum kind kind;
	uint32_t id; /* region for K_LISTING, slot for K_IMAGE */
};

struct cache {
	pthread_mutex_t lock;
	pthread_cond_t cond;
	struct cache_source src;
	struct cache_opts opts;
	cache_change_fn *on_change;
	void *arg;
	int64_t start_wall;
	uint32_t epoch; /* bumped by cache_drop_all */

	struct cache_ids *regions; /* NULL until fetched */
	struct freshness regions_fr;
	int64_t regions_mtime;
	struct region region[MAX_REGIONS]; /* every region ever seen; ids never reused */
	uint32_t nregion;

	struct slot **chunk; /* slot i is chunk[i / SLOT_CHUNK][i % SLOT_CHUNK] */
	uint32_t nslot;	     /* slots ever made (free ones included) */
	uint32_t nlive;	     /* slots in use */
	uint32_t free_head;  /* first free slot + 1, 0 = none */
	uint32_t *hash;	     /* slot + 1, 0 = empty; open addressing */
	uint32_t hash_cap;
	uint32_t mark;
	struct cache_ids *live; /* every listing alive, linked */
	uint64_t tree_bytes;
	struct cache_stats stats;
	double took[3]; /* seconds a fetch of each kind takes (moving average) */

	/* The workers that run fetches: started as needed, up to max. */
	pthread_cond_t work;	       /* a job was queued, or the cache is closing */
	pthread_cond_t quiet;	       /* a job ended */
	struct job *jobs, **jobs_tail; /* readers' fetches, first come first */
	struct job *bg, **bg_tail;     /* background refreshes, after those */
	pthread_t *worker;
	unsigned nworker, idle, queued, running, max_workers;
	int closing; /* atomic: cache_free has begun */
};

static double left_of_obj(struct cache *c, struct obj o);

/* A fetch for a worker to run. */
struct job {
	struct job *next;
	struct obj o;
};

/* What a fetch needs, copied under the lock, and what it brings back. */
struct request {
	char code[16];
	char no[24];
};

struct rows {
	struct tree **trees;
	uint64_t *nos;
	size_t n, cap;
};

struct answer {
	json_t *regions;
	struct rows rows;
	struct tree *tree; /* NULL: no such image */
};

static double real_now(void *arg)
{
	struct timespec ts;

	(void)arg;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

static double now_mono(const struct cache *c)
{
	return c->src.now(c->src.arg);
}

static int64_t now_wall(void)
{
	return (int64_t)time(NULL);
}

static double left_of(const struct cache *c, double fetched, double ttl)
{
	double left = fetched + ttl - now_mono(c);

	return fetched >= 0 && left > 0 ? left : 0;
}

static void fr_init(struct freshness *f)
{
	memset(f, 0, sizeof(*f));
	f->fetched = f->good = -1;
}

static struct slot *slot_at(const struct cache *c, uint32_t i)
{
	return &c->chunk[i / SLOT_CHUNK][i % SLOT_CHUNK];
}

static void slot_name(const struct slot *s, char *buf, size_t len)
{
	snprintf(buf, len, "%" PRIu64, s->no);
}

/* ---- the real source ---- */

static int ncp_regions(void *arg, json_t **regions, struct ncp_error *err)
{
	return ncp_region_list(arg, regions, err);
}

static int ncp_page(void *arg, const char *region, long page_no, long page_size, json_t **rows,
		    long *total_rows, struct ncp_error *err)
{
	return ncp_image_list_page(arg, region, page_no, page_size, rows, total_rows, err);
}

static int ncp_rows(void *arg, const char *region, long page_no, long page_size,
		    const struct ncp_row_sink *sink, long *total_rows, struct ncp_error *err)
{
	return ncp_image_list_rows(arg, region, page_no, page_size, sink, total_rows, err);
}

static int ncp_detail(void *arg, const char *region, const char *no, json_t **image,
		      struct ncp_error *err)
{
	return ncp_image_detail(arg, region, no, image, err);
}

static const char *ncp_host(void *arg)
{
	return ncp_client_host(arg);
}

struct cache_source cache_source_ncp(struct ncp_client *client)
{
	struct cache_source s = {
		.arg = client,
		.region_list = ncp_regions,
		.list_page = ncp_page,
		.detail = ncp_detail,
		.host = ncp_host,
		.list_rows = ncp_rows,
	};

	return s;
}

/* ---- id lists ---- */

/* A new list of up to n ids; the caller fills ids and calls ids_seal. */
static struct cache_ids *ids_new(struct cache *c, uint32_t n, int slots)
{
	struct cache_ids *ids;

	ids = malloc(sizeof(*ids) + 2 * (size_t)n * sizeof(uint32_t));
	if (!ids)
		return NULL;
	ids->keys = malloc((n ? n : 1) * sizeof(uint64_t));
	if (!ids->keys) {
		free(ids);
		return NULL;
	}
	ids->refs = 1;
	ids->n = 0;
	ids->sorted = ids->ids + n;
	ids->slots = (uint8_t)slots;
	ids->prev = NULL;
	ids->next = c->live;
	if (c->live)
		c->live->prev = ids;
	c->live = ids;
	return ids;
}

static uint64_t id_key(struct cache *c, const struct cache_ids *ids, uint32_t id)
{
	return ids->slots ? slot_at(c, id)->no : id;
}

static int by_key(const void *a, const void *b, void *arg)
{
	struct cache *c = ((void **)arg)[0];
	const struct cache_ids *ids = ((void **)arg)[1];
	uint64_t x = id_key(c, ids, *(const uint32_t *)a), y = id_key(c, ids, *(const uint32_t *)b);

	return x < y ? -1 : x > y;
}

/* Orders the ids by key. Keys are image numbers (or region ids), not slots:
 * a slot may be reclaimed and its image come back under another, and a
 * directory read in several calls must still never repeat or skip one. */
static void ids_seal(struct cache *c, struct cache_ids *ids)
{
	void *arg[2] = { c, ids };

	memcpy(ids->sorted, ids->ids, ids->n * sizeof(uint32_t));
	qsort_r(ids->sorted, ids->n, sizeof(uint32_t), by_key, arg);
	for (uint32_t k = 0; k < ids->n; k++)
		ids->keys[k] = id_key(c, ids, ids->sorted[k]);
}

/* References are taken and dropped under c->lock. */
static struct cache_ids *ids_ref(struct cache_ids *ids)
{
	ids->refs++;
	return ids;
}

static void ids_unref_locked(struct cache *c, struct cache_ids *ids)
{
	if (ids && --ids->refs == 0) {
		if (ids->prev)
			ids->prev->next = ids->next;
		else
			c->live = ids->next;
		if (ids->next)
			ids->next->prev = ids->prev;
		free(ids->keys);
		free(ids);
	}
}

static int ids_equal(const struct cache_ids *a, const struct cache_ids *b)
{
	return a && b && a->n == b->n && memcmp(a->ids, b->ids, a->n * sizeof(uint32_t)) == 0;
}

uint32_t cache_ids_from(const struct cache_ids *ids, uint64_t key)
{
	uint32_t lo = 0, hi = ids->n;

	while (lo < hi) {
		uint32_t mid = lo + (hi - lo) / 2;

		if (ids->keys[mid] < key)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo;
}

static void names_unref_locked(struct cache *c, struct cache_names *n)
{
	if (n && --n->refs == 0) {
		ids_unref_locked(c, n->from);
		free(n->entries);
		free(n->by_key);
		free(n->pool);
		free(n);
	}
}

void cache_ids_unref(struct cache *c, struct cache_ids *ids)
{
	pthread_mutex_lock(&c->lock);
	ids_unref_locked(c, ids);
	pthread_mutex_unlock(&c->lock);
}

/* ---- life ---- */

struct cache *cache_new(const struct cache_source *src, const struct cache_opts *opts,
			cache_change_fn *on_change, void *arg)
{
	struct cache *c = calloc(1, sizeof(*c));

	if (!c)
		return NULL;
	pthread_mutex_init(&c->lock, NULL);
	pthread_cond_init(&c->cond, NULL);
	c->src = *src;
	if (!c->src.now)
		c->src.now = real_now;
	c->opts = *opts;
	c->max_workers = opts->workers ? opts->workers : WORKERS_DEFAULT;
	if (!(c->opts.refresh >= 0 && c->opts.refresh <= 0.5))
		c->opts.refresh = 0;
	c->worker = calloc(c->max_workers, sizeof(*c->worker));
	if (!c->worker) {
		free(c);
		return NULL;
	}
	pthread_cond_init(&c->work, NULL);
	pthread_cond_init(&c->quiet, NULL);
	c->jobs_tail = &c->jobs;
	c->bg_tail = &c->bg;
	c->on_change = on_change;
	c->arg = arg;
	c->start_wall = now_wall();
	c->regions_mtime = c->start_wall;
	fr_init(&c->regions_fr);
	return c;
}

void cache_close(struct cache *c)
{
	unsigned n;

	/* Fetches under way give up; queued ones end at once. */
	pthread_mutex_lock(&c->lock);
	__atomic_store_n(&c->closing, 1, __ATOMIC_RELAXED);
	pthread_cond_broadcast(&c->work);
	n = c->nworker;
	c->nworker = 0;
	pthread_mutex_unlock(&c->lock);
	for (unsigned i = 0; i < n; i++)
		pthread_join(c->worker[i], NULL);
}

void cache_free(struct cache *c)
{
	if (!c)
		return;
	cache_close(c);
	free(c->worker);
	for (uint32_t i = 0; i < c->nslot; i++) {
		tree_unref(slot_at(c, i)->tree);
		tree_unref(slot_at(c, i)->prev);
	}
	for (uint32_t i = 0; i < c->nregion; i++) {
		names_unref_locked(c, c->region[i].names);
		ids_unref_locked(c, c->region[i].listing);
	}
	ids_unref_locked(c, c->regions);
	for (uint32_t i = 0; i < c->nslot; i += SLOT_CHUNK)
		free(c->chunk[i / SLOT_CHUNK]);
	free(c->chunk);
	free(c->hash);
	pthread_cond_destroy(&c->cond);
	pthread_cond_destroy(&c->work);
	pthread_cond_destroy(&c->quiet);
	pthread_mutex_destroy(&c->lock);
	free(c);
}

void cache_drop_all(struct cache *c)
{
	char no[24];

	pthread_mutex_lock(&c->lock);
	c->epoch++;
	c->regions_fr.fetched = -1;
	c->regions_fr.failing = 0;
	c->on_change(c->arg, CACHE_REGIONS_CHANGED, 0, NULL);
	for (uint32_t i = 0; i < c->nregion; i++) {
		c->region[i].fr.fetched = -1;
		c->region[i].fr.failing = 0;
		c->on_change(c->arg, CACHE_LISTING_CHANGED, i, c->region[i].code);
	}
	for (uint32_t i = 0; i < c->nslot; i++) {
		struct slot *s = slot_at(c, i);

		s->fr.fetched = -1;
		s->fr.failing = 0;
		if (s->state == SLOT_OK || s->state == SLOT_MISSING) {
			slot_name(s, no, sizeof(no));
			c->on_change(c->arg, CACHE_IMAGE_CHANGED, s->region, no);
		}
	}
	pthread_mutex_unlock(&c->lock);
}

/* Logs a failed call with the API's own message, its request id and the
 * host that failed. */
static void report(struct cache *c, const char *what, const struct ncp_error *e)
{
	char id[80] = "";

	if (e->kind == NCP_ERR_CANCELLED)
		return; /* given up on purpose: nobody waits for it */
	if (e->request_id[0])
		snprintf(id, sizeof(id), ", request %s", e->request_id);
	if (e->http_status)
		log_msg(LOG_LVL_ERROR, "%s: HTTP %ld%s%s: %s (from %s%s)", what, e->http_status,
			e->code[0] ? " code " : "", e->code, e->message, c->src.host(c->src.arg),
			id);
	else
		log_msg(LOG_LVL_ERROR, "%s: %s", what, e->message); /* names the host already */
}

/* ---- image slots ---- */

int cache_valid_image_no(const char *name)
{
	size_t n = strlen(name);

	if (n == 0 || n > 19 || name[0] == '0')
		return 0;
	for (size_t i = 0; i < n; i++) {
		if (name[i] < '0' || name[i] > '9')
			return 0;
	}
	return n < 19 || strtoull(name, NULL, 10) <= CACHE_MAX_IMAGE_NO;
}

static uint64_t parse_no(const char *s)
{
	return strtoull(s, NULL, 10);
}

static uint32_t hash_of(uint32_t region, uint64_t no)
{
	uint64_t h = (no ^ ((uint64_t)region << 56)) * 0x9E3779B97F4A7C15ull;

	return (uint32_t)(h >> 32);
}

static uint32_t hash_index(const struct cache *c, uint32_t region, uint64_t no)
{
	uint32_t mask = c->hash_cap - 1;

	for (uint32_t i = hash_of(region, no) & mask;; i = (i + 1) & mask) {
		uint32_t s = c->hash[i];

		if (!s || (slot_at(c, s - 1)->no == no && slot_at(c, s - 1)->region == region))
			return i;
	}
}

static int hash_grow(struct cache *c)
{
	uint32_t cap = c->hash_cap ? c->hash_cap * 2 : 1024;
	uint32_t *old = c->hash, old_cap = c->hash_cap;

	if (cap > (1u << 31))
		return -1;
	c->hash = calloc(cap, sizeof(uint32_t));
	if (!c->hash) {
		c->hash = old;
		return -1;
	}
	c->hash_cap = cap;
	for (uint32_t i = 0; i < old_cap; i++) {
		if (old[i]) {
			struct slot *s = slot_at(c, old[i] - 1);

			c->hash[hash_index(c, s->region, s->no)] = old[i];
		}
	}
	free(old);
	return 0;
}

/* Removes slot idx from the hash (linear probing: later entries of the same
 * run move back into the hole, so that every lookup still finds its own). */
static void hash_remove(struct cache *c, uint32_t idx)
{
	struct slot *s = slot_at(c, idx);
	uint32_t mask = c->hash_cap - 1, hole = hash_index(c, s->region, s->no);

	c->hash[hole] = 0;
	for (uint32_t j = (hole + 1) & mask; c->hash[j]; j = (j + 1) & mask) {
		struct slot *o = slot_at(c, c->hash[j] - 1);
		uint32_t home = hash_of(o->region, o->no) & mask;

		/* Stays when its home lies cyclically in (hole, j]. */
		if (hole <= j ? (home > hole && home <= j) : (home > hole || home <= j))
			continue;
		c->hash[hole] = c->hash[j];
		c->hash[j] = 0;
		hole = j;
	}
}

/* With c->lock held: the slot of (region, no), made if needed; -1 when out
 * of memory or out of slot numbers. */
static int64_t slot_of(struct cache *c, uint32_t region, uint64_t no)
{
	uint32_t idx, h;
	struct slot *s;

	if (!c->hash_cap && hash_grow(c) < 0)
		return -1;
	h = hash_index(c, region, no);
	if (c->hash[h])
		return c->hash[h] - 1;
	if ((c->nlive + 1) * 2 > c->hash_cap) {
		if (hash_grow(c) < 0)
			return -1;
		h = hash_index(c, region, no);
	}
	if (c->free_head) {
		idx = c->free_head - 1;
		c->free_head = slot_at(c, idx)->next_free;
	} else {
		if (c->nslot >= SLOT_MAX)
			return -1;
		if (c->nslot % SLOT_CHUNK == 0) {
			uint32_t k = c->nslot / SLOT_CHUNK;
			struct slot **chunks = realloc(c->chunk, (k + 1) * sizeof(*chunks));

			if (!chunks)
				return -1;
			c->chunk = chunks;
			c->chunk[k] = calloc(SLOT_CHUNK, sizeof(struct slot));
			if (!c->chunk[k])
				return -1;
		}
		idx = c->nslot++;
	}
	s = slot_at(c, idx);
	s->no = no;
	s->region = region;
	s->state = SLOT_EMPTY;
	s->mark = 0;
	s->name_logged = 0;
	fr_init(&s->fr);
	c->hash[h] = idx + 1;
	c->nlive++;
	return idx;
}

/* With c->lock held: gives a slot back. Its generation moves on by two, so
 * that no inode of the image it held can name the next one. The kernel
 * needs no word of it: a slot goes only once its answer has expired (and
 * the kernel's copies with it) or was already reported as changed. */
static void slot_free(struct cache *c, uint32_t idx)
{
	struct slot *s = slot_at(c, idx);

	hash_remove(c, idx);
	if (s->tree)
		c->tree_bytes -= tree_bytes(s->tree);
	tree_unref(s->tree);
	tree_unref(s->prev);
	s->tree = s->prev = NULL;
	s->state = SLOT_FREE;
	c->nlive--;
	if ((uint16_t)(s->gen + 2) < s->gen) {
		/* Its generations are used up: reused, it would give an inode
		 * the kernel may still hold (a cwd, an open file) another
		 * image's data. It stays out of use, a few bytes. */
		c->stats.reclaimed++;
		return;
	}
	s->gen = (uint16_t)(s->gen + 2);
	s->next_free = c->free_head;
	c->free_head = idx + 1;
	c->stats.reclaimed++;
}

/* With c->lock held: retires slot idx, whose generation cannot move on
 * without wrapping, and gives its image a new slot: its index, or -1 when
 * out of memory (the image is then simply forgotten). Readers waiting on the
 * old slot's fetch find the new slot by looking the image up again. */
static int64_t slot_move(struct cache *c, uint32_t idx)
{
	struct slot *s = slot_at(c, idx);
	uint32_t region = s->region, mark = s->mark;
	uint64_t no = s->no;
	int64_t moved;

	slot_free(c, idx);    /* its generation is used up: retired, not reused */
	c->stats.reclaimed--; /* not memory given back */
	moved = slot_of(c, region, no);
	if (moved >= 0)
		slot_at(c, (uint32_t)moved)->mark = mark;
	return moved;
}

/* Whether image t is in one of NCP's states in transition (its
 * serverImageStatusName is not a settled one). */
static int in_transit(const struct tree *t)
{
	static const char *const moving[] = { "initialized", "creating", "copying", "terminating",
					      "repairing" };
	uint32_t n;

	if (!t || tree_lookup(t, 0, "serverImageStatusName", &n) < 0 ||
	    tree_kind(t, n) != TREE_FILE)
		return 0;
	for (size_t i = 0; i < sizeof(moving) / sizeof(moving[0]); i++) {
		if (strcmp(tree_value(t, n), moving[i]) == 0)
			return 1;
	}
	return 0;
}

/* With c->lock held: gives slot new data (t, consumed) or marks it missing
 * (t NULL), bumping the generation when anything changed. Returns the slot
 * that holds the image now: idx, or another one when the generation would
 * have wrapped (see slot_move), or -1 when out of memory then. */
static int64_t install_image(struct cache *c, uint32_t idx, struct tree *t, double fetched,
			     double good)
{
	struct slot *s = slot_at(c, idx);
	char no[24];

	if (s->tree && s->gen == UINT16_MAX && !(t && tree_equal(s->tree, t)) &&
	    !(!t && s->state == SLOT_MISSING)) {
		int64_t moved;

		slot_name(s, no, sizeof(no));
		c->on_change(c->arg, CACHE_IMAGE_CHANGED, s->region, no);
		moved = slot_move(c, idx);
		if (moved < 0) {
			tree_unref(t);
			return -1;
		}
		idx = (uint32_t)moved;
		s = slot_at(c, idx);
	}
	s->fr.fetched = fetched;
	s->fr.good = good;
	s->fr.warned = 0;
	s->transit = (uint8_t)in_transit(t);
	if (t && s->tree && tree_equal(s->tree, t)) {
		tree_unref(t);
		s->state = SLOT_OK;
		return idx;
	}
	if (!t && s->state == SLOT_MISSING)
		return idx;
	if (t)
		c->tree_bytes += tree_bytes(t);
	if (s->tree) {
		c->tree_bytes -= tree_bytes(s->tree);
		tree_unref(s->prev);
		s->prev = s->tree;
		s->gen++;
	}
	if (s->state != SLOT_EMPTY) {
		slot_name(s, no, sizeof(no));
		c->on_change(c->arg, CACHE_IMAGE_CHANGED, s->region, no);
	}
	c->region[s->region].changes++;
	s->tree = t;
	s->state = t ? SLOT_OK : SLOT_MISSING;
	return idx;
}

static int64_t tree_mtime(struct cache *c, const struct tree *t)
{
	int64_t when;

	return t && tree_create_date(t, &when) == 0 ? when : c->start_wall;
}

/* With c->lock held: fills img from slot idx at its current state. */
static int answer_of(struct cache *c, uint32_t idx, struct cache_image *img)
{
	struct slot *s = slot_at(c, idx);

	img->slot = idx;
	img->gen = s->gen;
	img->region = s->region;
	slot_name(s, img->no, sizeof(img->no));
	img->tree = s->tree && s->state == SLOT_OK ? tree_ref(s->tree) : NULL;
	img->mtime = tree_mtime(c, img->tree);
	img->ttl_left = left_of_obj(c, (struct obj){ K_IMAGE, idx });
	return img->tree ? 0 : -ENOENT;
}

/* The serverImageNo of a row, if canonical. */
static const char *row_no(json_t *row, char *buf, size_t len)
{
	json_t *v = json_object_get(row, "serverImageNo");

	if (json_is_string(v))
		snprintf(buf, len, "%s", json_string_value(v));
	else if (json_is_integer(v))
		snprintf(buf, len, "%" JSON_INTEGER_FORMAT, json_integer_value(v));
	else
		return NULL;
	return cache_valid_image_no(buf) ? buf : NULL;
}

/* A detail (or list) row as a tree; NULL and a log line when unusable.
 * what names the call; request is its request id, or "". */
static struct tree *build(const char *what, const char *request, json_t *image)
{
	char err[160], id[80] = "";
	unsigned skipped = 0;
	struct tree *t = tree_build(image, &skipped, err, sizeof(err));

	if (request[0])
		snprintf(id, sizeof(id), " (request %s)", request);
	if (!t)
		log_msg(LOG_LVL_ERROR, "%s: unusable image: %s%s", what, err, id);
	else if (skipped)
		log_msg(LOG_LVL_WARNING, "%s: left out %u key(s) that are not valid file names%s",
			what, skipped, id);
	return t;
}

/* Fetches one image: 0 and the tree (NULL when there is no such image) in
 * *out, or -errno. An answer about another image is no answer. */
static int fetch_image(struct cache *c, const char *region, const char *no, struct tree **out)
{
	struct ncp_error e;
	json_t *image = NULL;
	char what[96], got[24];
	int err = 0;

	*out = NULL;
	snprintf(what, sizeof(what), "getServerImageDetail %s/%s", region, no);
	if (c->src.detail(c->src.arg, region, no, &image, &e) < 0) {
		if (e.kind == NCP_ERR_NOTFOUND)
			return 0;
		report(c, what, &e);
		return -ncp_error_errno(&e);
	}
	if (!row_no(image, got, sizeof(got)) || strcmp(got, no) != 0) {
		log_msg(LOG_LVL_ERROR, "%s: the answer is about image %s%s%s", what,
			row_no(image, got, sizeof(got)) ? got : "(no usable serverImageNo)",
			e.request_id[0] ? ", request " : "", e.request_id);
		err = -EIO;
	} else {
		*out = build(what, e.request_id, image);
		if (!*out)
			err = -EIO;
	}
	json_decref(image);
	return err;
}

/* ---- listings: fetching every page ---- */

static void rows_release(struct rows *r)
{
	for (size_t i = 0; i < r->n; i++)
		tree_unref(r->trees[i]);
	free(r->trees);
	free(r->nos);
	memset(r, 0, sizeof(*r));
}

/* Appends one row's tree to r. */
static int rows_push(struct rows *r, struct tree *t, uint64_t no)
{
	if (r->n == r->cap) {
		size_t cap = r->cap ? r->cap * 2 : 1024;
		struct tree **trees = realloc(r->trees, cap * sizeof(*trees));
		uint64_t *nos;

		if (!trees)
			return -ENOMEM;
		r->trees = trees;
		nos = realloc(r->nos, cap * sizeof(*nos));
		if (!nos)
			return -ENOMEM;
		r->nos = nos;
		r->cap = cap;
	}
	r->trees[r->n] = t;
	r->nos[r->n++] = no;
	return 0;
}

/* One page's rows as trees, at their places in the page: the sink the
 * source hands rows to as they are parsed (on up to two threads at once,
 * each place written by one), so that a page is never held parsed whole. */
struct page_rows {
	const char *region;
	struct rows at; /* trees[i] is NULL where row i was unusable */
	int nomem;	/* begin could not allocate */
};

static int page_rows_begin(void *arg, size_t n)
{
	struct page_rows *p = arg;

	rows_release(&p->at);
	p->at.trees = calloc(n ? n : 1, sizeof(*p->at.trees));
	p->at.nos = calloc(n ? n : 1, sizeof(*p->at.nos));
	if (!p->at.trees || !p->at.nos) {
		rows_release(&p->at);
		p->nomem = 1;
		return -1;
	}
	p->at.n = p->at.cap = n;
	return 0;
}

static int page_rows_row(void *arg, size_t i, json_t *row)
{
	struct page_rows *p = arg;
	char what[96], no[24];

	if (!row_no(row, no, sizeof(no))) {
		log_msg(LOG_LVL_WARNING,
			"getServerImageList %s: skipping a row without a usable serverImageNo",
			p->region);
		return 0;
	}
	snprintf(what, sizeof(what), "getServerImageList %s/%s", p->region, no);
	p->at.trees[i] = build(what, "", row);
	p->at.nos[i] = parse_no(no);
	return 0;
}

/* The usable rows, in page order: the unusable ones' places closed up, in
 * the same arrays. */
static struct rows page_rows_take(struct page_rows *p)
{
	struct rows r = p->at;

	r.n = 0;
	for (size_t i = 0; i < p->at.n; i++) {
		if (p->at.trees[i]) {
			r.trees[r.n] = p->at.trees[i];
			r.nos[r.n++] = p->at.nos[i];
		}
	}
	memset(&p->at, 0, sizeof(p->at));
	return r;
}

#ifdef __GLIBC__
static void *trim(void *arg)
{
	(void)arg;
	malloc_trim(0);
	return NULL;
}
#endif

/* Gives the memory a big listing's parsing used back to the system, off
 * the request's path (a walk of every heap); only the trees stay. */
static void trim_later(void)
{
#ifdef __GLIBC__
	pthread_attr_t attr;
	pthread_t t;

	if (pthread_attr_init(&attr) != 0)
		return;
	pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
	(void)pthread_create(&t, &attr, trim, NULL); /* none: the next listing's will */
	pthread_attr_destroy(&attr);
#endif
}

/* The image numbers a listing has brought so far, to count distinct rows. */
struct seen {
	uint64_t *no; /* open addressing, 0 = empty (0 is never an image number) */
	size_t n, cap;
};

/* Adds no: 1 when new, 0 when seen before, -1 when out of memory. */
static int seen_add(struct seen *s, uint64_t no)
{
	size_t mask;

	if ((s->n + 1) * 2 > s->cap) {
		struct seen bigger = { NULL, 0, s->cap ? s->cap * 2 : 4096 };

		bigger.no = calloc(bigger.cap, sizeof(uint64_t));
		if (!bigger.no)
			return -1;
		for (size_t i = 0; i < s->cap; i++) {
			if (s->no[i])
				seen_add(&bigger, s->no[i]);
		}
		free(s->no);
		*s = bigger;
	}
	mask = s->cap - 1;
	for (size_t i = (size_t)hash_of(0, no) & mask;; i = (i + 1) & mask) {
		if (s->no[i] == no)
			return 0;
		if (!s->no[i]) {
			s->no[i] = no;
			s->n++;
			return 1;
		}
	}
}

/* One page of a listing, fetched and mapped to trees. */
struct page {
	long no;
	long total; /* its totalRows */
	size_t got; /* rows it held */
	struct rows rows;
	int err;
};

/* Pages fetched at once by a few threads, each taking the next page. */
struct batch {
	struct cache *c;
	const char *region;
	struct page *pages;
	long n, next; /* next: the next page to take, under lock */
	int failed;   /* a page failed: take no more */
	pthread_mutex_t lock;
	int (*cancel)(void *); /* the caller's cancel check, for every thread */
	void *cancel_arg;
};

/* Fetches page p and maps its rows; reports a failure. */
static void page_fetch(struct cache *c, const char *region, struct page *p)
{
	struct page_rows got = { region, { NULL, NULL, 0, 0 }, 0 };
	struct ncp_row_sink sink = { page_rows_begin, page_rows_row, &got };
	struct ncp_error e;
	json_t *part = NULL;
	char what[64];
	int rc;

	if (c->src.list_rows) {
		rc = c->src.list_rows(c->src.arg, region, p->no, LIST_PAGE_SIZE, &sink, &p->total,
				      &e);
	} else {
		rc = c->src.list_page(c->src.arg, region, p->no, LIST_PAGE_SIZE, &part, &p->total,
				      &e);
		if (rc == 0 && ncp_rows_feed(&sink, part) < 0)
			got.nomem = 1;
		json_decref(part);
	}
	if (got.nomem) { /* not the answer's fault: said as such */
		rows_release(&got.at);
		log_msg(LOG_LVL_ERROR, "getServerImageList %s page %ld: out of memory", region,
			p->no);
		p->err = -ENOMEM;
		return;
	}
	if (rc < 0) {
		rows_release(&got.at);
		snprintf(what, sizeof(what), "getServerImageList %s page %ld", region, p->no);
		report(c, what, &e);
		p->err = -ncp_error_errno(&e);
		return;
	}
	p->got = got.at.n;
	p->rows = page_rows_take(&got);
}

static void *batch_run(void *arg)
{
	struct batch *b = arg;

	ncp_set_cancel(b->cancel, b->cancel_arg);
	for (;;) {
		long i;

		pthread_mutex_lock(&b->lock);
		i = b->failed ? b->n : b->next++;
		pthread_mutex_unlock(&b->lock);
		if (i >= b->n)
			break;
		page_fetch(b->c, b->region, &b->pages[i]);
		if (b->pages[i].err) {
			pthread_mutex_lock(&b->lock);
			b->failed = 1;
			pthread_mutex_unlock(&b->lock);
		}
	}
	ncp_set_cancel(NULL, NULL);
	return NULL;
}

/* Fetches pages first .. first + n - 1 at once (on up to LIST_AT_ONCE
 * threads, this one included) into pages[]: 0, or the first error. */
static int batch_fetch(struct cache *c, const char *region, struct page *pages, long first, long n)
{
	struct batch b = { c, region, pages, n, 0, 0, PTHREAD_MUTEX_INITIALIZER, NULL, NULL };
	pthread_t t[LIST_AT_ONCE];
	int started = 0;

	for (long i = 0; i < n; i++)
		pages[i] = (struct page){ .no = first + i };
	ncp_get_cancel(&b.cancel, &b.cancel_arg);
	while (started < LIST_AT_ONCE - 1 && started + 1 < n &&
	       pthread_create(&t[started], NULL, batch_run, &b) == 0)
		started++;
	batch_run(&b);
	ncp_set_cancel(b.cancel, b.cancel_arg); /* batch_run cleared this thread's */
	for (int i = 0; i < started; i++)
		pthread_join(t[i], NULL);
	pthread_mutex_destroy(&b.lock);
	for (long i = 0; i < n; i++) {
		if (pages[i].err)
			return pages[i].err;
	}
	return 0;
}

/* Adds page p's rows to rows and their numbers to seen; consumes p's rows.
 * Returns -ENOMEM, 1 when the listing is complete or ends here (said once),
 * or 0 to go on. */
static int page_merge(const char *region, struct page *p, struct rows *rows, struct seen *seen,
		      long *total)
{
	size_t distinct = seen->n;
	int err = 0;

	*total = p->total;
	for (size_t i = 0; i < p->rows.n; i++) {
		if (err || rows_push(rows, p->rows.trees[i], p->rows.nos[i]) < 0) {
			err = -ENOMEM;
			tree_unref(p->rows.trees[i]);
		} else if (seen_add(seen, p->rows.nos[i]) < 0) {
			err = -ENOMEM; /* the tree is rows' now */
		}
	}
	free(p->rows.trees);
	free(p->rows.nos);
	memset(&p->rows, 0, sizeof(p->rows));
	if (err)
		return err;
	if ((long)seen->n >= *total)
		return 1;
	/* A gateway that ends early, or repeats itself (ignoring pageNo), ends
	 * the listing here, said once rather than 10,000 calls later. */
	if (p->got == 0 || seen->n == distinct) {
		log_msg(LOG_LVL_WARNING,
			"getServerImageList %s: page %ld brought %s; listed %zu of %ld", region,
			p->no, p->got ? "no image not already listed" : "no image", seen->n,
			*total);
		return 1;
	}
	if (p->no == MAX_LIST_PAGES) {
		log_msg(LOG_LVL_WARNING,
			"getServerImageList %s: stopped after %d pages; listed %zu of %ld", region,
			MAX_LIST_PAGES, seen->n, *total);
		return 1;
	}
	return 0;
}

/* Fetches every page of a region's listing. It ends at an empty page, or
 * once as many distinct images as totalRows says have come: a page shorter
 * than asked does not end it (a gateway may cap its pages), and a row that
 * shifts onto the next page while images are created is not counted twice.
 * Once the first page tells how many there are, the pages that should hold
 * the rest are fetched at once; any still missing (rows that shifted, a
 * gateway that capped its pages) are then fetched one after another. The
 * listing is installed once, whole. */
static int fetch_listing(struct cache *c, const char *region, struct rows *rows)
{
	struct seen seen = { 0 };
	long total = 0, next = 1, n = 1;
	size_t per = 0; /* rows per page, as the first page had them */
	int done = 0;

	while (!done && next <= MAX_LIST_PAGES) {
		struct page *pages = calloc((size_t)n, sizeof(*pages));

		if (!pages) {
			done = -ENOMEM;
			break;
		}
		if (n > 1) {
			done = batch_fetch(c, region, pages, next, n);
		} else {
			pages[0].no = next;
			page_fetch(c, region, &pages[0]);
			done = pages[0].err;
			if (next == 1)
				per = pages[0].got;
		}
		for (long i = 0; i < n; i++) {
			if (!done)
				done = page_merge(region, &pages[i], rows, &seen, &total);
			rows_release(&pages[i].rows);
		}
		free(pages);
		next += n;
		/* the pages that should hold the rest, at once (LIST_AT_ONCE at a
		 * time, so that a totalRows that lies costs one such wave, not
		 * MAX_LIST_PAGES calls) */
		n = per && total > (long)seen.n ? (long)(((size_t)total - seen.n + per - 1) / per)
						: 1;
		if (n > LIST_AT_ONCE)
			n = LIST_AT_ONCE;
		if (next + n - 1 > MAX_LIST_PAGES)
			n = MAX_LIST_PAGES - next + 1;
	}
	free(seen.no);
	if (seen.n >= LIST_PAGE_SIZE)
		trim_later();
	return done < 0 ? done : 0;
}

/* ---- installing answers (with c->lock held) ---- */

static int valid_region_code(const char *s)
{
	size_t n = strlen(s);

	if (n == 0 || n >= sizeof(((struct region *)0)->code))
		return 0;
	for (size_t i = 0; i < n; i++) {
		if (!((s[i] >= 'A' && s[i] <= 'Z') || (s[i] >= '0' && s[i] <= '9') || s[i] == '-'))
			return 0;
	}
	return 1;
}

/* The id of region code, adding it if new; -1 if full. */
static int64_t region_id(struct cache *c, const char *code)
{
	struct region *r;

	for (uint32_t i = 0; i < c->nregion; i++) {
		if (strcmp(c->region[i].code, code) == 0)
			return i;
	}
	if (c->nregion == MAX_REGIONS)
		return -1;
	r = &c->region[c->nregion];
	memset(r, 0, sizeof(*r));
	snprintf(r->code, sizeof(r->code), "%s", code);
	fr_init(&r->fr);
	r->mtime = now_wall();
	return c->nregion++;
}

static int install_regions(struct cache *c, json_t *list, double fetched, double good)
{
	struct cache_ids *ids = ids_new(c, (uint32_t)json_array_size(list), 0);
	size_t i;
	json_t *r;

	if (!ids)
		return -ENOMEM;
	json_array_foreach(list, i, r)
	{
		const char *code = json_string_value(json_object_get(r, "regionCode"));
		int64_t id;

		if (!code || !valid_region_code(code)) {
			log_msg(LOG_LVL_WARNING, "getRegionList: skipping a region with no usable "
						 "regionCode");
			continue;
		}
		id = region_id(c, code);
		if (id < 0) {
			log_msg(LOG_LVL_WARNING,
				"getRegionList: more than %u regions; "
				"skipping the rest",
				MAX_REGIONS);
			break;
		}
		for (uint32_t k = 0; k < ids->n && id >= 0; k++) {
			if (ids->ids[k] == (uint32_t)id)
				id = -1; /* listed twice */
		}
		if (id >= 0)
			ids->ids[ids->n++] = (uint32_t)id;
	}
	ids_seal(c, ids);
	c->regions_fr.fetched = fetched;
	c->regions_fr.good = good;
	c->regions_fr.warned = 0;
	if (ids_equal(c->regions, ids)) {
		ids_unref_locked(c, ids);
		return 0;
	}
	if (c->regions) {
		c->regions_mtime = now_wall();
		c->on_change(c->arg, CACHE_REGIONS_CHANGED, 0, NULL);
	}
	ids_unref_locked(c, c->regions);
	c->regions = ids;
	return 0;
}

/* Installs listed images and the new listing, or nothing at all (-ENOMEM). */
static int install_listing(struct cache *c, uint32_t region, struct rows *rows, double fetched,
			   double good)
{
	struct region *r = &c->region[region];
	struct cache_ids *ids;
	uint32_t mark;
	int64_t moved;
	char no[24];

	if (rows->n > UINT32_MAX / 2)
		return -ENOMEM;
	/* Every slot first: a listing is installed whole or not at all. */
	for (size_t i = 0; i < rows->n; i++) {
		if (slot_of(c, region, rows->nos[i]) < 0)
			return -ENOMEM;
	}
	ids = ids_new(c, (uint32_t)rows->n, 1);
	if (!ids)
		return -ENOMEM;
	mark = ++c->mark;
	for (size_t i = 0; i < rows->n; i++) {
		uint32_t idx = (uint32_t)slot_of(c, region, rows->nos[i]); /* found */

		if (slot_at(c, idx)->mark == mark)
			continue; /* listed twice: the first row stands */
		slot_at(c, idx)->mark = mark;
		if (slot_at(c, idx)->fr.good > good) {
			/* a fetch of the image asked after this listing landed
			 * first: it is the later word */
			ids->ids[ids->n++] = idx;
			continue;
		}
		moved = install_image(c, idx, rows->trees[i], fetched, good);
		rows->trees[i] = NULL;
		if (moved >= 0)
			ids->ids[ids->n++] = (uint32_t)moved;
	}
	ids_seal(c, ids);
	r->transit = 0;
	for (uint32_t i = 0; i < ids->n; i++)
		r->transit += slot_at(c, ids->ids[i])->transit;
	/* Images no longer listed are gone, or will be asked for again. */
	for (uint32_t i = 0; r->listing && i < r->listing->n; i++) {
		struct slot *s = slot_at(c, r->listing->ids[i]);

		if (s->mark != mark && s->state == SLOT_OK) {
			s->fr.fetched = -1;
			slot_name(s, no, sizeof(no));
			c->on_change(c->arg, CACHE_IMAGE_CHANGED, region, no);
		}
	}
	r->fr.fetched = fetched;
	r->fr.good = good;
	r->fr.warned = 0;
	if (!ids_equal(r->listing, ids)) {
		if (r->listing) {
			r->mtime = now_wall();
			c->on_change(c->arg, CACHE_LISTING_CHANGED, region, r->code);
		}
		ids_unref_locked(c, r->listing);
		r->listing = ids;
		r->changes++;
	} else {
		ids_unref_locked(c, ids);
	}
	return 0;
}

/* ---- the one fetch sequence ---- */

/* The freshness record of o: derived anew after every unlock, since nothing
 * may be held across one. */
static struct freshness *fr_of(struct cache *c, struct obj o)
{
	switch (o.kind) {
	case K_REGIONS:
		return &c->regions_fr;
	case K_LISTING:
		return &c->region[o.id].fr;
	default:
		return &slot_at(c, o.id)->fr;
	}
}

/* Whether o has an answer to give at all, and whether that is good data
 * (which may stand in for a failed refresh). */
static int has_answer(struct cache *c, struct obj o, int good_only)
{
	switch (o.kind) {
	case K_REGIONS:
		return c->regions != NULL;
	case K_LISTING:
		return c->region[o.id].listing != NULL;
	default:
		return slot_at(c, o.id)->state == SLOT_OK ||
		       (!good_only && slot_at(c, o.id)->state == SLOT_MISSING);
	}
}

/* How long o's answer stays fresh: negative_ttl for "no such image", busy_ttl
 * for an image in transition or a listing that holds one, else ttl. */
static double ttl_of(struct cache *c, struct obj o)
{
	double busy = c->opts.busy_ttl > 0 && c->opts.busy_ttl < c->opts.ttl ? c->opts.busy_ttl
									     : c->opts.ttl;

	if (o.kind == K_IMAGE && slot_at(c, o.id)->state == SLOT_MISSING)
		return c->opts.negative_ttl;
	if (o.kind == K_IMAGE && slot_at(c, o.id)->transit)
		return busy;
	if (o.kind == K_LISTING && c->region[o.id].transit)
		return busy;
	return c->opts.ttl;
}

/* Whether o's answer is within its ttl. */
static int is_fresh(struct cache *c, struct obj o)
{
	struct freshness *f = fr_of(c, o);

	return f->fetched >= 0 && now_mono(c) < f->fetched + ttl_of(c, o);
}

/* How long before expiry a read refreshes o ahead: as long as a fetch of its
 * kind takes, and a little more, so that the new answer lands about when
 * the old one expires (one call per ttl); at least a quarter, at most all
 * of the refresh part of the ttl. */
static double ahead_of(struct cache *c, struct obj o, double ttl)
{
	double part = ttl * c->opts.refresh, need = 1.25 * c->took[o.kind];

	if (need < part / 4)
		need = part / 4;
	return need < part ? need : part;
}

/* Seconds the kernel may keep o's answer: until its refresh window opens,
 * so that a read there reaches the cache and refreshes it ahead. */
static double left_of_obj(struct cache *c, struct obj o)
{
	double ttl = ttl_of(c, o);

	return left_of(c, fr_of(c, o)->fetched, ttl - ahead_of(c, o, ttl));
}

static void what_of(struct cache *c, struct obj o, char *buf, size_t len)
{
	char no[24];

	if (o.kind == K_REGIONS) {
		snprintf(buf, len, "getRegionList");
	} else if (o.kind == K_LISTING) {
		snprintf(buf, len, "getServerImageList %s", c->region[o.id].code);
	} else {
		slot_name(slot_at(c, o.id), no, sizeof(no));
		snprintf(buf, len, "%s/%s", c->region[slot_at(c, o.id)->region].code, no);
	}
}

/* With c->lock held: whether o's last good answer may still stand in for
 * failed refreshes (stale-if-error): until ttl + stale after it. */
static int stale_usable(struct cache *c, struct obj o, const struct freshness *f)
{
	return c->opts.stale > 0 && f->good >= 0 && has_answer(c, o, 1) &&
	       now_mono(c) < f->good + c->opts.ttl + c->opts.stale;
}

/* With c->lock held: a fetch of o failed with err. The next background
 * try waits a backoff that doubles from STALE_RETRY_S up to
 * STALE_RETRY_MAX; a reader with no answer that may stand in (none yet, or
 * past ttl + stale) asks the API itself, as any read of a network
 * filesystem would. Returns 0 when the last good answer stands in (logged
 * once until the next good one), else err. */
static int failed(struct cache *c, struct obj o, struct freshness *f, int err)
{
	double now = now_mono(c), wait = STALE_RETRY_S;
	char what[96];

	if (f->failing < UINT8_MAX)
		f->failing++;
	for (unsigned i = 1; i < f->failing && wait < STALE_RETRY_MAX; i++)
		wait *= 2;
	f->retry_at = now + (wait < STALE_RETRY_MAX ? wait : STALE_RETRY_MAX);
	if (!stale_usable(c, o, f))
		return err;
	c->stats.stale++;
	if (!f->warned) {
		what_of(c, o, what, sizeof(what));
		log_msg(LOG_LVL_WARNING,
			"%s: refresh failed; serving the answer from %.0f s ago "
			"for up to %.0f s more",
			what, now - f->good, f->good + c->opts.ttl + c->opts.stale - now);
	}
	f->warned = 1;
	return 0;
}

/* Fetches o (without the lock). */
static int fetch(struct cache *c, struct obj o, const struct request *rq, struct answer *a)
{
	struct ncp_error e;

	switch (o.kind) {
	case K_REGIONS:
		if (c->src.region_list(c->src.arg, &a->regions, &e) < 0) {
			report(c, "getRegionList", &e);
			return -ncp_error_errno(&e);
		}
		return 0;
	case K_LISTING:
		return fetch_listing(c, rq->code, &a->rows);
	default:
		return fetch_image(c, rq->code, rq->no, &a->tree);
	}
}

static int install(struct cache *c, struct obj o, struct answer *a, double fetched, double good)
{
	switch (o.kind) {
	case K_REGIONS:
		return install_regions(c, a->regions, fetched, good);
	case K_LISTING:
		return install_listing(c, o.id, &a->rows, fetched, good);
	default:
		/* The slot was retired while this fetch was out (a listing moved
		 * the image, see slot_move): the answer goes with it, and the
		 * readers find the image in its new slot. */
		if (slot_at(c, o.id)->state == SLOT_FREE)
			return 0;
		/* A listing asked after this fetch has landed first: its row
		 * is the later word on the image. */
		if (slot_at(c, o.id)->fr.good > good)
			return 0;
		/* if the image moves (generation wrap), its lookup finds it anew */
		install_image(c, o.id, a->tree, fetched, good);
		a->tree = NULL;
		return 0;
	}
}

static void answer_release(struct answer *a)
{
	json_decref(a->regions);
	rows_release(&a->rows);
	tree_unref(a->tree);
	memset(a, 0, sizeof(*a));
}

/* What a fetch checks, through the client, to know it may give up. */
struct give_up {
	struct cache *c;
	struct flight *flight;
};

static int given_up(void *arg)
{
	struct give_up *g = arg;

	return __atomic_load_n(&g->flight->abandon, __ATOMIC_RELAXED) ||
	       __atomic_load_n(&g->c->closing, __ATOMIC_RELAXED);
}

/* With c->lock held and o's flight marked busy: fetches o (letting go of the
 * lock meanwhile), installs the answer and lands the flight, waking its
 * readers. Returns the flight's result. */
static int fly(struct cache *c, struct obj o)
{
	struct freshness *f = fr_of(c, o);
	struct give_up g = { c, &f->flight }; /* flights never move */
	uint32_t epoch = f->flight.epoch;
	struct request rq;
	struct answer a;
	double started;
	int err;

	memset(&rq, 0, sizeof(rq));
	memset(&a, 0, sizeof(a));
	if (o.kind != K_REGIONS)
		snprintf(rq.code, sizeof(rq.code), "%s",
			 c->region[o.kind == K_LISTING ? o.id : slot_at(c, o.id)->region].code);
	if (o.kind == K_IMAGE)
		slot_name(slot_at(c, o.id), rq.no, sizeof(rq.no));
	for (;;) {
		pthread_mutex_unlock(&c->lock);
		started = now_mono(c);
		ncp_set_cancel(given_up, &g);
		err = fetch(c, o, &rq, &a);
		ncp_set_cancel(NULL, NULL);
		pthread_mutex_lock(&c->lock);
		if (!err) {
			double took = now_mono(c) - started;

			c->took[o.kind] =
				c->took[o.kind] > 0 ? 0.7 * c->took[o.kind] + 0.3 * took : took;
		}
		f = fr_of(c, o);
		/* Given up, but a reader came meanwhile: fetch for it after all. */
		if (err != -EINTR || !f->flight.waiters ||
		    __atomic_load_n(&c->closing, __ATOMIC_RELAXED))
			break;
		__atomic_store_n(&f->flight.abandon, 0, __ATOMIC_RELAXED);
		answer_release(&a);
	}
	if (err == -EINTR) {
		c->stats.abandoned++; /* nobody wants it: nothing learnt */
	} else {
		/* An answer that was on its way when every cache was dropped is
		 * given to the readers waiting for it, but does not count as
		 * fresh. */
		if (!err)
			err = install(c, o, &a, epoch == c->epoch ? started : -1, started);
		f = fr_of(c, o);
		if (!err) {
			f->failing = 0;
		} else {
			if (f->flight.background)
				c->stats.refresh_failed++;
			err = failed(c, o, f, err);
		}
	}
	f->flight.busy = 0;
	f->flight.background = 0;
	__atomic_store_n(&f->flight.abandon, 0, __ATOMIC_RELAXED);
	f->flight.seq++;
	f->flight.err = (int16_t)err;
	pthread_cond_broadcast(&c->cond);
	answer_release(&a);
	return err;
}

static void *worker(void *arg)
{
	struct cache *c = arg;

	pthread_mutex_lock(&c->lock);
	for (;;) {
		struct job *j;

		while (!c->jobs && !c->bg && !__atomic_load_n(&c->closing, __ATOMIC_RELAXED)) {
			c->idle++;
			pthread_cond_wait(&c->work, &c->lock);
			c->idle--;
		}
		j = c->jobs ? c->jobs : c->bg;
		if (!j)
			break; /* closing, and nothing left to do */
		if (j == c->jobs) {
			if (!(c->jobs = j->next))
				c->jobs_tail = &c->jobs;
		} else if (!(c->bg = j->next)) {
			c->bg_tail = &c->bg;
		}
		c->queued--;
		c->running++;
		fly(c, j->o);
		c->running--;
		free(j);
		pthread_cond_broadcast(&c->quiet);
	}
	pthread_mutex_unlock(&c->lock);
	return NULL;
}

/* With c->lock held: starts a fetch of o on a worker (in the background: for
 * no reader, behind readers' fetches). 0, or -ENOMEM when no job or worker
 * could be had (or the workers are stopped). */
static int start(struct cache *c, struct obj o, int background)
{
	struct freshness *f = fr_of(c, o);
	struct job *j = malloc(sizeof(*j));

	if (!j || __atomic_load_n(&c->closing, __ATOMIC_RELAXED)) {
		free(j);
		return -ENOMEM;
	}
	if (c->queued + 1 > c->idle && c->nworker < c->max_workers &&
	    pthread_create(&c->worker[c->nworker], NULL, worker, c) == 0)
		c->nworker++;
	if (!c->nworker) {
		free(j);
		return -ENOMEM;
	}
	j->next = NULL;
	j->o = o;
	*(background ? c->bg_tail : c->jobs_tail) = j;
	if (background)
		c->bg_tail = &j->next;
	else
		c->jobs_tail = &j->next;
	c->queued++;
	f->flight.busy = 1;
	f->flight.background = (uint8_t)background;
	__atomic_store_n(&f->flight.abandon, 0, __ATOMIC_RELAXED);
	f->flight.epoch = c->epoch;
	c->stats.misses++;
	pthread_cond_signal(&c->work);
	return 0;
}

/* With c->lock held: refreshes o in the background, unless a fetch of it is
 * under way or its last one failed too recently. */
static void refresh(struct cache *c, struct obj o, struct freshness *f, uint64_t *counter)
{
	if (f->flight.busy || (f->failing && now_mono(c) < f->retry_at) ||
	    __atomic_load_n(&c->closing, __ATOMIC_RELAXED))
		return;
	if (start(c, o, 1) == 0)
		(*counter)++;
}

static _Thread_local const int *interrupt_flag;

void cache_set_interrupt(const int *flag)
{
	interrupt_flag = flag;
}

static int interrupted(void)
{
	return interrupt_flag && __atomic_load_n(interrupt_flag, __ATOMIC_ACQUIRE);
}

void cache_wake(struct cache *c)
{
	pthread_mutex_lock(&c->lock);
	pthread_cond_broadcast(&c->cond);
	pthread_mutex_unlock(&c->lock);
}

void cache_quiesce(struct cache *c)
{
	pthread_mutex_lock(&c->lock);
	while (c->jobs || c->bg || c->running)
		pthread_cond_wait(&c->quiet, &c->lock);
	pthread_mutex_unlock(&c->lock);
}

/* With c->lock held: whether o's answer may be given without waiting, and
 * refreshes it in the background where due. Fresh answers are; in the last
 * part of their ttl they are refreshed ahead. Once expired: the region list
 * (revalidated off the path, it changes rarely), an answer read within the
 * same part of ttl after its expiry (a reader who just missed the window),
 * and a good answer within stale while a refresh runs in the background or
 * after refreshes failed (tried again in the background with backoff): an
 * outage is waited through by one background task, not by readers. */
static int answer_now(struct cache *c, struct obj o, struct freshness *f, int strict)
{
	double now = now_mono(c), ttl = ttl_of(c, o), end = f->fetched + ttl;
	double part = ttl * c->opts.refresh;

	if (!has_answer(c, o, 0))
		return 0;
	if (f->fetched >= 0 && now < end) {
		if (now >= end - ahead_of(c, o, ttl))
			refresh(c, o, f, &c->stats.refresh_ahead);
		return 1;
	}
	if (strict)
		return 0;
	if (f->fetched >= 0 && ((o.kind == K_REGIONS && has_answer(c, o, 1)) || now < end + part)) {
		refresh(c, o, f, &c->stats.revalidations);
		return 1;
	}
	if ((f->failing ||
	     (f->flight.busy && f->flight.background && f->flight.epoch == c->epoch)) &&
	    stale_usable(c, o, f)) {
		refresh(c, o, f, &c->stats.revalidations);
		c->stats.stale++;
		return 1;
	}
	return 0;
}

/* With c->lock held: makes o answerable. 0 when it has an answer to give
 * (see answer_now; only a fresh one when strict; or just fetched for this
 * reader or another, or stale standing in for a failed refresh), or -errno
 * (-EINTR when the reader was interrupted). The lock is let go while waiting: callers re-derive
 * every pointer into the cache afterwards. */
static int obtain_as(struct cache *c, struct obj o, int strict)
{
	for (;;) {
		struct freshness *f = fr_of(c, o);
		uint32_t seq;
		int older;

		if (answer_now(c, o, f, strict)) {
			c->stats.hits++;
			return 0;
		}
		if (interrupted())
			return -EINTR;
		if (!f->flight.busy) {
			if (start(c, o, 0) < 0) {
				int err;

				/* no worker to be had: this reader fetches, counted
				 * as a waiter so that no other's interrupt gives its
				 * fetch up */
				f->flight.busy = 1;
				f->flight.epoch = c->epoch;
				f->flight.waiters++;
				c->stats.misses++;
				c->stats.waited++;
				err = fly(c, o);
				fr_of(c, o)->flight.waiters--;
				return err;
			}
		} else if (f->flight.epoch == c->epoch) {
			c->stats.coalesced++;
		}
		/* A fetch started before the caches were dropped is waited for,
		 * not joined: "the next access fetches afresh". */
		older = f->flight.epoch != c->epoch;
		c->stats.waited++;
		seq = f->flight.seq;
		f->flight.waiters++;
		__atomic_store_n(&f->flight.abandon, 0, __ATOMIC_RELAXED);
		while ((f = fr_of(c, o))->flight.seq == seq && !interrupted())
			pthread_cond_wait(&c->cond, &c->lock);
		f->flight.waiters--;
		if (f->flight.seq == seq) {
			c->stats.interrupted++;
			if (!f->flight.waiters && !f->flight.background)
				__atomic_store_n(&f->flight.abandon, 1, __ATOMIC_RELAXED);
			return -EINTR;
		}
		if (older)
			continue;
		if (f->flight.err)
			return f->flight.err;
		if (o.kind == K_IMAGE && slot_at(c, o.id)->state == SLOT_FREE)
			return 0; /* moved (see slot_move): the caller looks it up anew */
		return has_answer(c, o, 0) ? 0 : -EIO;
	}
}

/* With c->lock held: obtain_as, taking no expired answer when strict. */
static int obtain(struct cache *c, struct obj o)
{
	return obtain_as(c, o, 0);
}

/* ---- regions ---- */

int cache_regions(struct cache *c, struct cache_ids **out, double *left)
{
	struct obj o = { K_REGIONS, 0 };
	int err;

	pthread_mutex_lock(&c->lock);
	err = obtain(c, o);
	if (!err) {
		*out = ids_ref(c->regions);
		if (left)
			*left = left_of_obj(c, (struct obj){ K_REGIONS, 0 });
	}
	pthread_mutex_unlock(&c->lock);
	return err;
}

int cache_regions_held(struct cache *c, struct cache_ids **out, double *left)
{
	int err = -EAGAIN;

	pthread_mutex_lock(&c->lock);
	if (c->regions) {
		*out = ids_ref(c->regions);
		if (left)
			*left = left_of_obj(c, (struct obj){ K_REGIONS, 0 });
		err = 0;
	}
	pthread_mutex_unlock(&c->lock);
	return err ? cache_regions(c, out, left) : 0;
}

double cache_now(struct cache *c)
{
	return now_mono(c);
}

int cache_prime_regions(struct cache *c, json_t *regions)
{
	double now;
	int err;

	pthread_mutex_lock(&c->lock);
	now = now_mono(c);
	err = install_regions(c, regions, now, now);
	pthread_mutex_unlock(&c->lock);
	return err;
}

/* With c->lock held: the id of region code in the region list, or -1. */
static int64_t listed_region(struct cache *c, const char *code)
{
	for (uint32_t i = 0; i < c->regions->n; i++) {
		if (strcmp(c->region[c->regions->ids[i]].code, code) == 0)
			return c->regions->ids[i];
	}
	return -1;
}

int cache_region_find(struct cache *c, const char *name, uint32_t *region, double *left)
{
	struct obj o = { K_REGIONS, 0 };
	int64_t id = -1;
	int err;

	if (!valid_region_code(name))
		return -ENOENT;
	pthread_mutex_lock(&c->lock);
	err = obtain(c, o);
	if (!err)
		id = listed_region(c, name);
	/* A region the expired list does not have may be a new one: that
	 * lookup (only) waits for the list. */
	if (id < 0 && (err || !is_fresh(c, o))) {
		err = obtain_as(c, o, 1);
		if (!err)
			id = listed_region(c, name);
	}
	if (!err && id < 0)
		err = -ENOENT;
	if (!err) {
		*region = (uint32_t)id;
		if (left)
			*left = left_of_obj(c, o);
	}
	pthread_mutex_unlock(&c->lock);
	return err;
}

const char *cache_region_code(struct cache *c, uint32_t region)
{
	const char *code;

	pthread_mutex_lock(&c->lock);
	code = region < c->nregion ? c->region[region].code : "";
	pthread_mutex_unlock(&c->lock);
	return code; /* stable: region entries never move nor go */
}

int64_t cache_regions_mtime(struct cache *c)
{
	int64_t t;

	pthread_mutex_lock(&c->lock);
	t = c->regions_mtime;
	pthread_mutex_unlock(&c->lock);
	return t;
}

int64_t cache_listing_mtime(struct cache *c, uint32_t region)
{
	int64_t t;

	pthread_mutex_lock(&c->lock);
	t = region < c->nregion ? c->region[region].mtime : c->start_wall;
	pthread_mutex_unlock(&c->lock);
	return t;
}

/* ---- images ---- */

int cache_image_lookup(struct cache *c, uint32_t region, const char *no, struct cache_image *img)
{
	struct obj o = { K_IMAGE, 0 };
	int64_t idx;
	int err;

	if (!cache_valid_image_no(no))
		return -ENOENT;
	pthread_mutex_lock(&c->lock);
	idx = region < c->nregion ? slot_of(c, region, parse_no(no)) : -1;
	if (idx < 0) {
		pthread_mutex_unlock(&c->lock);
		return region < c->nregion ? -ENOMEM : -ENOENT;
	}
	o.id = (uint32_t)idx;
	err = obtain(c, o);
	if (!err && slot_at(c, o.id)->state == SLOT_FREE) {
		/* retired meanwhile: the image moved to another slot */
		idx = slot_of(c, region, parse_no(no));
		if (idx < 0)
			err = -ENOMEM;
		else
			o.id = (uint32_t)idx;
	}
	if (!err)
		err = answer_of(c, o.id, img);
	pthread_mutex_unlock(&c->lock);
	return err;
}

int cache_image_get(struct cache *c, uint32_t slot, int32_t gen, struct cache_image *img)
{
	int err = -ESTALE;

	pthread_mutex_lock(&c->lock);
	if (slot < c->nslot && slot_at(c, slot)->state != SLOT_FREE) {
		struct slot *s = slot_at(c, slot);

		if (gen < 0 || (s->gen == gen && s->state == SLOT_OK)) {
			err = answer_of(c, slot, img);
		} else if ((uint16_t)(s->gen - 1) == gen && s->prev) {
			/* An inode of the data just replaced: serve it, but let the
			 * kernel keep nothing of it. */
			answer_of(c, slot, img);
			tree_unref(img->tree);
			img->gen = (uint16_t)gen;
			img->tree = tree_ref(s->prev);
			img->mtime = tree_mtime(c, img->tree);
			img->ttl_left = 0;
			err = 0;
		}
	}
	pthread_mutex_unlock(&c->lock);
	return err;
}

/* ---- listings ---- */

/* With c->lock held: makes the region's listing answerable (any held one
 * will do when held is set). */
static int listing_locked(struct cache *c, uint32_t region, int held)
{
	struct obj o = { K_LISTING, region };

	if (region >= c->nregion)
		return -ENOENT;
	if (held && c->region[region].listing)
		return 0;
	return obtain(c, o);
}

int cache_listing(struct cache *c, uint32_t region, int held, struct cache_ids **out, double *left,
		  uint32_t *changes)
{
	int err;

	pthread_mutex_lock(&c->lock);
	err = listing_locked(c, region, held);
	if (!err) {
		struct region *r = &c->region[region];

		*out = ids_ref(r->listing);
		if (left)
			*left = left_of_obj(c, (struct obj){ K_LISTING, region });
		if (changes)
			*changes = r->changes;
	}
	pthread_mutex_unlock(&c->lock);
	return err;
}

int cache_age(struct cache *c, enum cache_what what, uint32_t id, uint16_t gen,
	      struct cache_age *out)
{
	struct obj o = { what == CACHE_AGE_REGIONS   ? K_REGIONS
			 : what == CACHE_AGE_LISTING ? K_LISTING
						     : K_IMAGE,
			 id };
	struct freshness *f;
	struct timespec wall;
	int err = -ENOENT;

	clock_gettime(CLOCK_REALTIME, &wall);
	pthread_mutex_lock(&c->lock);
	if ((o.kind == K_LISTING && id >= c->nregion) ||
	    (o.kind == K_IMAGE &&
	     (id >= c->nslot || slot_at(c, id)->state == SLOT_FREE || slot_at(c, id)->gen != gen)))
		goto out;
	f = fr_of(c, o);
	if (f->good >= 0 && has_answer(c, o, 0)) {
		double now = now_mono(c);

		out->fetched = (int64_t)(wall.tv_sec + wall.tv_nsec / 1e9 - (now - f->good));
		if (f->flight.busy)
			out->state = CACHE_REFRESHING;
		else if (f->fetched < 0 || now >= f->fetched + ttl_of(c, o))
			out->state = CACHE_STALE;
		else
			out->state = CACHE_FRESH;
		err = 0;
	}
out:
	pthread_mutex_unlock(&c->lock);
	return err;
}

void cache_get_stats(struct cache *c, struct cache_stats *out)
{
	pthread_mutex_lock(&c->lock);
	*out = c->stats;
	out->images = c->nlive;
	out->bytes = c->tree_bytes;
	pthread_mutex_unlock(&c->lock);
}

/* ---- reclaiming ---- */

/* Whether slot s may go: nobody fetches or waits for it, no listing alive
 * holds it, and its answer is of no more use. */
static int slot_unneeded(struct cache *c, const struct slot *s, uint32_t mark, double now)
{
	double keep = c->opts.ttl + c->opts.stale;

	if (s->state == SLOT_FREE || s->mark == mark || s->fr.flight.busy || s->fr.flight.waiters)
		return 0;
	switch (s->state) {
	case SLOT_MISSING:
		return s->fr.fetched < 0 || now >= s->fr.fetched + c->opts.negative_ttl;
	case SLOT_OK:
		return s->fr.fetched < 0 || s->fr.good < 0 || now >= s->fr.good + keep;
	default:
		return 1; /* never answered: a failed first fetch */
	}
}

#define RECLAIM_TRIM_BYTES (1u << 20)

unsigned cache_reclaim(struct cache *c)
{
	unsigned freed = 0;
	uint64_t bytes;
	uint32_t mark;
	double now;

	pthread_mutex_lock(&c->lock);
	now = now_mono(c);
	bytes = c->tree_bytes;
	c->stats.scans++;
	/* Listings past any use are dropped first; their images follow. */
	for (uint32_t i = 0; i < c->nregion; i++) {
		struct region *r = &c->region[i];

		if (r->listing && !r->fr.flight.busy && !r->fr.flight.waiters &&
		    (r->fr.good < 0 || now >= r->fr.good + c->opts.ttl + c->opts.stale)) {
			names_unref_locked(c, r->names);
			r->names = NULL;
			ids_unref_locked(c, r->listing);
			r->listing = NULL;
			r->changes++;
			r->fr.fetched = -1;
		}
	}
	mark = ++c->mark;
	for (struct cache_ids *ids = c->live; ids; ids = ids->next) {
		for (uint32_t i = 0; ids->slots && i < ids->n; i++)
			slot_at(c, ids->ids[i])->mark = mark;
	}
	for (uint32_t i = 0; i < c->nslot; i++) {
		if (slot_unneeded(c, slot_at(c, i), mark, now)) {
			slot_free(c, i);
			freed++;
		}
	}
	bytes -= c->tree_bytes;
	pthread_mutex_unlock(&c->lock);
#ifdef __GLIBC__
	/* Give the freed pages back to the system; worth its cost (a walk of
	 * every heap) only when much was freed. */
	if (bytes >= RECLAIM_TRIM_BYTES)
		malloc_trim(0);
#endif
	return freed;
}

/* ---- images by name ---- */

/* The serverImageName of slot idx if it can be a file name, or NULL (logged
 * once). */
static const char *usable_name(struct cache *c, uint32_t idx)
{
	struct slot *s = slot_at(c, idx);
	const char *name;
	uint32_t node;
	size_t len;

	if (s->state != SLOT_OK || !s->tree ||
	    tree_lookup(s->tree, 0, "serverImageName", &node) < 0 ||
	    tree_kind(s->tree, node) == TREE_DIR)
		return NULL; /* no name at all: nothing to link */
	name = tree_value(s->tree, node);
	len = strlen(name);
	if (len > 0 && len <= 255 && strcmp(name, ".") && strcmp(name, "..") && !strchr(name, '/'))
		return name;
	if (!s->name_logged) {
		char no[24];

		slot_name(s, no, sizeof(no));
		log_msg(LOG_LVL_WARNING,
			"%s/%s: serverImageName is not a valid file name; "
			"not in .by-name",
			c->region[s->region].code, no);
		s->name_logged = 1;
	}
	return NULL;
}

/* A growable pool of NUL-terminated strings, addressed by offset. */
struct pool {
	char *buf;
	size_t used, cap;
};

/* Appends the first len bytes of s and then suffix; returns the offset or -1. */
static int64_t pool_add(struct pool *p, const char *s, size_t len, const char *suffix)
{
	size_t slen = strlen(suffix), need = len + slen + 1;
	int64_t at = (int64_t)p->used;

	if (p->used + need > UINT32_MAX)
		return -1;
	if (p->used + need > p->cap) {
		size_t cap = p->cap ? p->cap : 4096;
		char *buf;

		while (cap < p->used + need)
			cap *= 2;
		buf = realloc(p->buf, cap);
		if (!buf)
			return -1;
		p->buf = buf;
		p->cap = cap;
	}
	memcpy(p->buf + p->used, s, len);
	memcpy(p->buf + p->used + len, suffix, slen + 1);
	p->used += need;
	return at;
}

/* "name~no", the name cut at a character boundary so that all of it fits
 * in 255 bytes; appended to p. */
static int64_t pool_add_suffixed(struct pool *p, const char *name, const char *no)
{
	char suffix[32];
	size_t len = strlen(name), room;

	snprintf(suffix, sizeof(suffix), "~%s", no);
	room = 255 - strlen(suffix);
	if (len > room) {
		len = room;
		while (len > 0 && ((unsigned char)name[len] & 0xC0) == 0x80)
			len--; /* not inside a UTF-8 sequence */
	}
	return pool_add(p, name, len, suffix);
}

struct name_work {
	uint32_t slot;
	uint32_t name;	  /* final name: offset in the pool */
	uint8_t suffixed; /* carries "~<no>" */
};

static int by_final(const void *a, const void *b, void *pool)
{
	const struct name_work *x = a, *y = b;

	return strcmp((const char *)pool + x->name, (const char *)pool + y->name);
}

static int by_entry_name(const void *a, const void *b, void *pool)
{
	const struct name_entry *x = a, *y = b;

	return strcmp((const char *)pool + x->name, (const char *)pool + y->name);
}

static int by_entry_key(const void *a, const void *b, void *names)
{
	const struct cache_names *n = names;
	const struct name_entry *x = &n->entries[*(const uint32_t *)a],
				*y = &n->entries[*(const uint32_t *)b];

	if (x->key != y->key)
		return x->key < y->key ? -1 : 1;
	return strcmp(n->pool + x->name, n->pool + y->name);
}

/* A .by-name entry's key: its name hashed (FNV-1a, 64 bits) into 62, so that
 * key + 3 is a directory offset. A name keeps its key from one listing to
 * the next, so a directory read that goes on in a newer listing neither
 * repeats nor skips a name that is in both, even when the name passed to
 * another image in between (as a plain name may take the place of another's
 * "name~no"). */
static uint64_t name_key(const char *name)
{
	uint64_t h = 14695981039346656037ull;

	for (const unsigned char *p = (const unsigned char *)name; *p; p++)
		h = (h ^ *p) * 1099511628211ull;
	return h >> 2;
}

/* Gives "~<no>" to every plain name that equals another entry's name, until
 * none does. A suffixed name ends in its own image's number after its last
 * '~', so two suffixed names never collide; each round turns at least one
 * plain name into a suffixed one, so this ends. w is sorted by final name. */
static int names_settle(struct cache *c, struct name_work *w, uint32_t n, struct pool *p)
{
	char no[24], name[256];

	for (;;) {
		int changed = 0;

		for (uint32_t i = 0; i < n;) {
			uint32_t j = i + 1;

			while (j < n && !strcmp(p->buf + w[i].name, p->buf + w[j].name))
				j++;
			for (uint32_t k = i; j - i > 1 && k < j; k++) {
				int64_t at;

				if (w[k].suffixed)
					continue;
				/* copied: adding to the pool may move it */
				snprintf(name, sizeof(name), "%s", p->buf + w[k].name);
				slot_name(slot_at(c, w[k].slot), no, sizeof(no));
				at = pool_add_suffixed(p, name, no);
				if (at < 0)
					return -ENOMEM;
				w[k].name = (uint32_t)at;
				w[k].suffixed = 1;
				changed = 1;
			}
			i = j;
		}
		if (!changed)
			return 0;
		qsort_r(w, n, sizeof(*w), by_final, p->buf);
	}
}

/* Builds the by-name table of a listing. */
static int names_build(struct cache *c, struct cache_ids *listing, uint32_t made,
		       struct cache_names **out)
{
	struct cache_names *n = calloc(1, sizeof(*n));
	struct name_work *w = calloc(listing->n ? listing->n : 1, sizeof(*w));
	struct pool p = { 0 }, final = { 0 };
	uint32_t count = 0;
	int err = -ENOMEM;

	if (!n || !w)
		goto out;
	for (uint32_t i = 0; i < listing->n; i++) {
		const char *name = usable_name(c, listing->ids[i]);
		int64_t at;

		if (!name)
			continue;
		at = pool_add(&p, name, strlen(name), "");
		if (at < 0)
			goto out;
		w[count].slot = listing->ids[i];
		w[count++].name = (uint32_t)at;
	}
	qsort_r(w, count, sizeof(*w), by_final, p.buf);
	if (names_settle(c, w, count, &p) < 0)
		goto out;
	n->refs = 1;
	n->n = count;
	n->made = made;
	n->entries = calloc(count ? count : 1, sizeof(*n->entries));
	n->by_key = calloc(count ? count : 1, sizeof(*n->by_key));
	if (!n->entries || !n->by_key)
		goto out;
	for (uint32_t i = 0; i < count; i++) {
		const char *name = p.buf + w[i].name;
		int64_t at = pool_add(&final, name, strlen(name), "");

		if (at < 0)
			goto out;
		n->entries[i].name = (uint32_t)at;
		n->entries[i].slot = w[i].slot;
		n->entries[i].key = name_key(name);
		n->by_key[i] = i;
	}
	n->pool = final.buf;
	final.buf = NULL;
	qsort_r(n->entries, count, sizeof(*n->entries), by_entry_name, n->pool);
	qsort_r(n->by_key, count, sizeof(*n->by_key), by_entry_key, n);
	/* two names of one hash (never by chance): the later one takes the next
	 * key, so that keys are unique and a read resumed after the first
	 * does not skip the second */
	for (uint32_t k = 1; k < count; k++) {
		struct name_entry *e = &n->entries[n->by_key[k]];
		uint64_t prev = n->entries[n->by_key[k - 1]].key;

		if (e->key <= prev)
			e->key = prev + 1;
	}
	n->from = ids_ref(listing);
	*out = n;
	n = NULL;
	err = 0;
out:
	if (n) {
		free(n->entries);
		free(n->by_key);
		free(n->pool);
		free(n);
	}
	free(w);
	free(p.buf);
	free(final.buf);
	return err;
}

int cache_by_name(struct cache *c, uint32_t region, int held, struct cache_names **out,
		  double *left)
{
	struct region *r;
	int err;

	pthread_mutex_lock(&c->lock);
	err = listing_locked(c, region, held);
	if (err)
		goto out;
	r = &c->region[region];
	if (!r->names || r->names->from != r->listing || r->names->made != r->changes) {
		struct cache_names *n;

		err = names_build(c, r->listing, r->changes, &n);
		if (err)
			goto out;
		names_unref_locked(c, r->names);
		r->names = n;
	}
	r->names->refs++;
	*out = r->names;
	if (left)
		*left = left_of_obj(c, (struct obj){ K_LISTING, region });
out:
	pthread_mutex_unlock(&c->lock);
	return err;
}

uint32_t cache_names_count(const struct cache_names *n)
{
	return n->n;
}

const char *cache_names_name(const struct cache_names *n, uint32_t i)
{
	return n->pool + n->entries[i].name;
}

uint32_t cache_names_slot(const struct cache_names *n, uint32_t i)
{
	return n->entries[i].slot;
}

uint32_t cache_names_by_key(const struct cache_names *n, uint32_t k, uint64_t *key)
{
	*key = n->entries[n->by_key[k]].key;
	return n->by_key[k];
}

uint32_t cache_names_from(const struct cache_names *n, uint64_t key)
{
	uint32_t lo = 0, hi = n->n;

	while (lo < hi) {
		uint32_t mid = lo + (hi - lo) / 2;

		if (n->entries[n->by_key[mid]].key < key)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo;
}

int cache_names_find(const struct cache_names *n, const char *name, uint32_t *i)
{
	uint32_t lo = 0, hi = n->n;

	while (lo < hi) {
		uint32_t mid = lo + (hi - lo) / 2;
		int d = strcmp(name, n->pool + n->entries[mid].name);

		if (d == 0) {
			*i = mid;
			return 0;
		}
		if (d < 0)
			hi = mid;
		else
			lo = mid + 1;
	}
	return -1;
}

void cache_names_unref(struct cache *c, struct cache_names *n)
{
	pthread_mutex_lock(&c->lock);
	names_unref_locked(c, n);
	pthread_mutex_unlock(&c->lock);
}
