/* cache.c: regions, listings and images with their age, and the fetches that
 * fill them. One mutex guards all of it; it is never held across the network.
 * Each cached object has a "flight": the first caller to find it stale fetches
 * while later callers wait on the condition variable for that fetch's result
 * instead of fetching again. */
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

#include "log.h"

#define LIST_PAGE_SIZE 1000
#define MAX_REGIONS 256
#define MAX_LIST_PAGES 10000
#define STALE_RETRY_S 5.0 /* least time between refreshes of a failing object */

/* One fetch in progress, and how the last one ended. */
struct flight {
	uint32_t seq; /* bumped when a fetch lands */
	int16_t err;  /* -errno of the last fetch, 0 for success */
	uint8_t busy;
};

enum slot_state { SLOT_EMPTY, SLOT_OK, SLOT_MISSING };

struct slot {
	uint64_t no;
	struct tree *tree; /* current data, or NULL */
	struct tree *prev; /* the data of generation gen - 1, for inodes still using it */
	double fetched;	   /* monotonic time the answer counts from; -1: never or forgotten */
	double good;	   /* monotonic time of the last good answer */
	uint32_t region;
	uint32_t mark; /* listing build that last saw this slot */
	uint16_t gen;
	uint8_t state;
	uint8_t warned;	     /* a stale answer was logged since the last good one */
	uint8_t name_logged; /* its name was found unusable for .by-name */
	struct flight flight;
};

struct cache_names {
	unsigned refs;
	uint32_t n;
	struct cache_ids *from; /* the listing these were made of (a reference) */
	double made;		/* ... as fetched then: names change with the data */
	struct name_entry {
		uint32_t name; /* offset in pool */
		uint32_t slot;
	} * entries;
	char *pool;
};

struct region {
	char code[16];
	struct cache_names *names; /* by serverImageName, made when asked for */
	struct cache_ids *listing; /* NULL until listed */
	double listed, good;
	uint8_t warned;
	int64_t mtime;
	struct flight flight;
};

struct cache {
	pthread_mutex_t lock;
	pthread_cond_t cond;
	struct ncp_client *client;
	struct cache_opts opts;
	cache_change_fn *on_change;
	void *arg;
	int64_t start_wall;

	struct cache_ids *regions; /* NULL until fetched */
	double regions_fetched, regions_good;
	uint8_t regions_warned;
	int64_t regions_mtime;
	struct flight regions_flight;
	struct region region[MAX_REGIONS]; /* every region ever seen; ids never reused */
	uint32_t nregion;

	struct slot *slot;
	uint32_t nslot, slot_cap;
	uint32_t *hash; /* slot + 1, 0 = empty; open addressing */
	uint32_t hash_cap;
	uint32_t mark;
	uint64_t tree_bytes;
	struct cache_stats stats;
};

static double now_mono(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

static int64_t now_wall(void)
{
	return (int64_t)time(NULL);
}

static double ttl_left(double fetched, double ttl)
{
	double left = fetched + ttl - now_mono();

	return left > 0 ? left : 0;
}

static int fresh(double fetched, double ttl)
{
	return fetched >= 0 && now_mono() < fetched + ttl;
}

/* Stale-if-error: after a failed refresh, may the answer last good at `good`
 * stand in? If so, sets *fetched so that it is fresh again until the next try
 * (max(ttl, STALE_RETRY_S) away, never past good + ttl + stale), logs one
 * warning until the next good answer, and returns 1. */
static int serve_stale(struct cache *c, const char *what, double good, double *fetched,
		       uint8_t *warned)
{
	double now = now_mono(), until = good + c->opts.stale;

	if (c->opts.stale <= 0 || good < 0 || now >= until + c->opts.ttl)
		return 0;
	/* Readers of a failing object pay the retry cycle at most every few
	 * seconds, however short the ttl. */
	*fetched = now + (c->opts.ttl < STALE_RETRY_S ? STALE_RETRY_S - c->opts.ttl : 0);
	if (*fetched > until)
		*fetched = until;
	c->stats.stale++;
	if (!*warned)
		log_msg(LOG_LVL_WARNING,
			"%s: refresh failed; serving the answer from %.0f s ago "
			"for up to %.0f s more",
			what, now - good, until + c->opts.ttl - now);
	*warned = 1;
	return 1;
}

/* With c->lock held. Returns 1 when the caller now owns the fetch (and must
 * call flight_land), 0 when a fetch by someone else landed meanwhile. */
static int flight_join(struct cache *c, struct flight *f)
{
	uint32_t seq;

	if (!f->busy) {
		f->busy = 1;
		return 1;
	}
	seq = f->seq;
	while (f->seq == seq)
		pthread_cond_wait(&c->cond, &c->lock);
	return 0;
}

static void flight_land(struct cache *c, struct flight *f, int err)
{
	f->busy = 0;
	f->seq++;
	f->err = (int16_t)err;
	pthread_cond_broadcast(&c->cond);
}

static struct cache_ids *ids_new(uint32_t n)
{
	struct cache_ids *ids = malloc(sizeof(*ids) + (size_t)n * sizeof(uint32_t));

	if (ids) {
		ids->refs = 1;
		ids->n = n;
	}
	return ids;
}

/* References are taken and dropped under c->lock. */
static struct cache_ids *ids_ref(struct cache_ids *ids)
{
	ids->refs++;
	return ids;
}

static void ids_unref_locked(struct cache_ids *ids)
{
	if (ids && --ids->refs == 0)
		free(ids);
}

static int ids_equal(const struct cache_ids *a, const struct cache_ids *b)
{
	return a && b && a->n == b->n && memcmp(a->ids, b->ids, a->n * sizeof(uint32_t)) == 0;
}

static void names_unref_locked(struct cache_names *n)
{
	if (n && --n->refs == 0) {
		ids_unref_locked(n->from);
		free(n->entries);
		free(n->pool);
		free(n);
	}
}

void cache_ids_unref(struct cache *c, struct cache_ids *ids)
{
	pthread_mutex_lock(&c->lock);
	ids_unref_locked(ids);
	pthread_mutex_unlock(&c->lock);
}

struct cache *cache_new(struct ncp_client *client, const struct cache_opts *opts,
			cache_change_fn *on_change, void *arg)
{
	struct cache *c = calloc(1, sizeof(*c));

	if (!c)
		return NULL;
	pthread_mutex_init(&c->lock, NULL);
	pthread_cond_init(&c->cond, NULL);
	c->client = client;
	c->opts = *opts;
	c->on_change = on_change;
	c->arg = arg;
	c->start_wall = now_wall();
	c->regions_mtime = c->start_wall;
	c->regions_fetched = c->regions_good = -1;
	return c;
}

void cache_free(struct cache *c)
{
	if (!c)
		return;
	for (uint32_t i = 0; i < c->nslot; i++) {
		tree_unref(c->slot[i].tree);
		tree_unref(c->slot[i].prev);
	}
	for (uint32_t i = 0; i < c->nregion; i++) {
		ids_unref_locked(c->region[i].listing);
		names_unref_locked(c->region[i].names);
	}
	ids_unref_locked(c->regions);
	free(c->slot);
	free(c->hash);
	pthread_cond_destroy(&c->cond);
	pthread_mutex_destroy(&c->lock);
	free(c);
}

static void slot_name(const struct slot *s, char *buf, size_t len)
{
	snprintf(buf, len, "%" PRIu64, s->no);
}

void cache_drop_all(struct cache *c)
{
	char no[24];

	pthread_mutex_lock(&c->lock);
	c->regions_fetched = -1;
	c->on_change(c->arg, CACHE_REGIONS_CHANGED, 0, NULL);
	for (uint32_t i = 0; i < c->nregion; i++) {
		c->region[i].listed = -1;
		c->on_change(c->arg, CACHE_LISTING_CHANGED, i, c->region[i].code);
	}
	for (uint32_t i = 0; i < c->nslot; i++) {
		struct slot *s = &c->slot[i];

		s->fetched = -1;
		if (s->state != SLOT_EMPTY) {
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

	if (e->request_id[0])
		snprintf(id, sizeof(id), ", request %s", e->request_id);
	if (e->http_status)
		log_msg(LOG_LVL_ERROR, "%s: HTTP %ld%s%s: %s (from %s%s)", what, e->http_status,
			e->code[0] ? " code " : "", e->code, e->message, ncp_client_host(c->client),
			id);
	else
		log_msg(LOG_LVL_ERROR, "%s: %s", what, e->message); /* names the host already */
}

/* ---- regions ---- */

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

/* With c->lock held: the id of region code, adding it if new; -1 if full. */
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
	r->listed = r->good = -1;
	r->mtime = now_wall();
	return c->nregion++;
}

/* Installs a fetched region list (with c->lock held). */
static void install_regions(struct cache *c, json_t *list)
{
	struct cache_ids *ids = ids_new((uint32_t)json_array_size(list));
	size_t i;
	json_t *r;

	if (!ids)
		return;
	ids->n = 0;
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
		if (id < 0)
			break;
		ids->ids[ids->n++] = (uint32_t)id;
	}
	c->regions_fetched = c->regions_good = now_mono();
	c->regions_warned = 0;
	if (ids_equal(c->regions, ids)) {
		ids_unref_locked(ids);
		return;
	}
	if (c->regions) {
		c->regions_mtime = now_wall();
		c->on_change(c->arg, CACHE_REGIONS_CHANGED, 0, NULL);
	}
	ids_unref_locked(c->regions);
	c->regions = ids;
}

/* With c->lock held: makes the region list fresh, or returns -errno. */
static int regions_locked(struct cache *c)
{
	struct ncp_error e;
	json_t *list = NULL;
	int err;

	if (c->regions && fresh(c->regions_fetched, c->opts.ttl)) {
		c->stats.hits++;
		return 0;
	}
	if (!flight_join(c, &c->regions_flight)) {
		c->stats.coalesced++;
		return c->regions_flight.err ? c->regions_flight.err : (c->regions ? 0 : -EIO);
	}
	c->stats.misses++;
	pthread_mutex_unlock(&c->lock);
	err = ncp_region_list(c->client, &list, &e) < 0 ? -ncp_error_errno(&e) : 0;
	if (err)
		report(c, "getRegionList", &e);
	pthread_mutex_lock(&c->lock);
	if (!err)
		install_regions(c, list);
	else if (c->regions && serve_stale(c, "getRegionList", c->regions_good, &c->regions_fetched,
					   &c->regions_warned))
		err = 0;
	flight_land(c, &c->regions_flight, err);
	json_decref(list);
	return err;
}

int cache_regions(struct cache *c, struct cache_ids **out, double *left)
{
	int err;

	pthread_mutex_lock(&c->lock);
	err = regions_locked(c);
	if (!err) {
		*out = ids_ref(c->regions);
		if (left)
			*left = ttl_left(c->regions_fetched, c->opts.ttl);
	}
	pthread_mutex_unlock(&c->lock);
	return err;
}

int cache_region_find(struct cache *c, const char *name, uint32_t *region, double *left)
{
	int err;

	if (!valid_region_code(name))
		return -ENOENT;
	pthread_mutex_lock(&c->lock);
	err = regions_locked(c);
	if (!err) {
		err = -ENOENT;
		for (uint32_t i = 0; i < c->regions->n; i++) {
			if (strcmp(c->region[c->regions->ids[i]].code, name) == 0) {
				*region = c->regions->ids[i];
				err = 0;
			}
		}
		if (left)
			*left = ttl_left(c->regions_fetched, c->opts.ttl);
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
	return 1;
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

static uint32_t *hash_find(struct cache *c, uint32_t region, uint64_t no)
{
	uint32_t mask = c->hash_cap - 1;

	for (uint32_t i = hash_of(region, no) & mask;; i = (i + 1) & mask) {
		uint32_t s = c->hash[i];

		if (!s || (c->slot[s - 1].no == no && c->slot[s - 1].region == region))
			return &c->hash[i];
	}
}

static int hash_grow(struct cache *c)
{
	uint32_t cap = c->hash_cap ? c->hash_cap * 2 : 1024;
	uint32_t *old = c->hash, old_cap = c->hash_cap;

	c->hash = calloc(cap, sizeof(uint32_t));
	if (!c->hash) {
		c->hash = old;
		return -1;
	}
	c->hash_cap = cap;
	for (uint32_t i = 0; i < old_cap; i++) {
		if (old[i]) {
			struct slot *s = &c->slot[old[i] - 1];

			*hash_find(c, s->region, s->no) = old[i];
		}
	}
	free(old);
	return 0;
}

/* With c->lock held: the slot of (region, no), created if needed; -1 on OOM. */
static int64_t slot_of(struct cache *c, uint32_t region, uint64_t no)
{
	uint32_t *h;
	struct slot *s;

	if ((c->nslot + 1) * 2 > c->hash_cap && hash_grow(c) < 0)
		return -1;
	h = hash_find(c, region, no);
	if (*h)
		return *h - 1;
	if (c->nslot == c->slot_cap) {
		uint32_t cap = c->slot_cap ? c->slot_cap * 2 : 256;
		struct slot *p = realloc(c->slot, (size_t)cap * sizeof(*p));

		if (!p)
			return -1;
		c->slot = p;
		c->slot_cap = cap;
	}
	s = &c->slot[c->nslot];
	memset(s, 0, sizeof(*s));
	s->no = no;
	s->region = region;
	s->fetched = s->good = -1;
	*h = c->nslot + 1;
	return c->nslot++;
}

/* With c->lock held: gives slot new data (t, consumed) or marks it missing
 * (t NULL), bumping the generation when anything changed. */
static void install_image(struct cache *c, uint32_t idx, struct tree *t, double when)
{
	struct slot *s = &c->slot[idx];
	char no[24];

	s->fetched = s->good = when;
	s->warned = 0;
	if (t && s->tree && tree_equal(s->tree, t)) {
		tree_unref(t);
		s->state = SLOT_OK;
		return;
	}
	if (!t && s->state == SLOT_MISSING)
		return;
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
	s->tree = t;
	s->state = t ? SLOT_OK : SLOT_MISSING;
}

static int64_t tree_mtime(struct cache *c, const struct tree *t)
{
	int64_t when;

	return t && tree_create_date(t, &when) == 0 ? when : c->start_wall;
}

/* With c->lock held: fills img from slot idx at its current state. */
static int answer(struct cache *c, uint32_t idx, struct cache_image *img)
{
	struct slot *s = &c->slot[idx];

	img->slot = idx;
	img->gen = s->gen;
	img->region = s->region;
	slot_name(s, img->no, sizeof(img->no));
	img->tree = s->tree && s->state == SLOT_OK ? tree_ref(s->tree) : NULL;
	img->mtime = tree_mtime(c, img->tree);
	img->ttl_left =
		ttl_left(s->fetched, s->state == SLOT_OK ? c->opts.ttl : c->opts.negative_ttl);
	return img->tree ? 0 : -ENOENT;
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

/* Fetches one image; returns the tree (NULL when missing) via *out, or -errno. */
static int fetch_image(struct cache *c, const char *region, const char *no, struct tree **out)
{
	struct ncp_error e;
	json_t *image = NULL;
	char what[96];
	int err = 0;

	*out = NULL;
	snprintf(what, sizeof(what), "getServerImageDetail %s/%s", region, no);
	if (ncp_image_detail(c->client, region, no, &image, &e) < 0) {
		if (e.kind == NCP_ERR_NOTFOUND)
			return 0;
		report(c, what, &e);
		return -ncp_error_errno(&e);
	}
	*out = build(what, e.request_id, image);
	if (!*out)
		err = -EIO;
	json_decref(image);
	return err;
}

int cache_image_lookup(struct cache *c, uint32_t region, const char *no, struct cache_image *img)
{
	char code[16];
	struct tree *t;
	struct slot *s;
	int64_t idx;
	double ttl;
	int err;

	if (!cache_valid_image_no(no))
		return -ENOENT;
	pthread_mutex_lock(&c->lock);
	idx = slot_of(c, region, parse_no(no));
	if (idx < 0) {
		pthread_mutex_unlock(&c->lock);
		return -ENOMEM;
	}
	s = &c->slot[idx];
	ttl = s->state == SLOT_MISSING ? c->opts.negative_ttl : c->opts.ttl;
	if (s->state != SLOT_EMPTY && fresh(s->fetched, ttl)) {
		c->stats.hits++;
		goto done;
	}
	if (!flight_join(c, &c->slot[idx].flight)) {
		c->stats.coalesced++;
		err = c->slot[idx].flight.err;
		if (err)
			goto out;
		goto done;
	}
	c->stats.misses++;
	snprintf(code, sizeof(code), "%s", c->region[region].code);
	pthread_mutex_unlock(&c->lock);
	err = fetch_image(c, code, no, &t);
	pthread_mutex_lock(&c->lock);
	s = &c->slot[idx];
	if (!err) {
		install_image(c, (uint32_t)idx, t, now_mono());
	} else if (s->state == SLOT_OK) {
		char what[64];

		snprintf(what, sizeof(what), "%s/%s", code, no);
		if (serve_stale(c, what, s->good, &s->fetched, &s->warned))
			err = 0;
	}
	flight_land(c, &c->slot[idx].flight, err);
	if (err)
		goto out;
done:
	err = answer(c, (uint32_t)idx, img);
out:
	pthread_mutex_unlock(&c->lock);
	return err;
}

int cache_image_get(struct cache *c, uint32_t slot, int32_t gen, struct cache_image *img)
{
	int err = -ESTALE;

	pthread_mutex_lock(&c->lock);
	if (slot < c->nslot) {
		struct slot *s = &c->slot[slot];

		if (gen < 0 || (s->gen == gen && s->state == SLOT_OK)) {
			err = answer(c, slot, img);
		} else if ((uint16_t)(s->gen - 1) == gen && s->prev) {
			/* An inode of the data just replaced: serve it, but let the
			 * kernel keep nothing of it. */
			answer(c, slot, img);
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

/* The serverImageNo of a list row, if canonical. */
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

/* A listing as it arrives: each row already turned into a tree. */
struct rows {
	struct tree **trees;
	uint64_t *nos;
	size_t n, cap;
};

static void rows_release(struct rows *r)
{
	for (size_t i = 0; i < r->n; i++)
		tree_unref(r->trees[i]);
	free(r->trees);
	free(r->nos);
}

/* Appends one row's tree to r. */
static int rows_push(struct rows *r, struct tree *t, uint64_t no)
{
	if (r->n == r->cap) {
		size_t cap = r->cap ? r->cap * 2 : 1024;
		struct tree **trees = realloc(r->trees, cap * sizeof(*trees));
		uint64_t *nos = trees ? realloc(r->nos, cap * sizeof(*nos)) : NULL;

		if (trees)
			r->trees = trees;
		if (!nos)
			return -ENOMEM;
		r->nos = nos;
		r->cap = cap;
	}
	r->trees[r->n] = t;
	r->nos[r->n++] = no;
	return 0;
}

/* A share of one page's rows to turn into trees. */
struct page_part {
	const char *region;
	json_t *page;
	size_t from, to;
	struct rows rows;
	int err;
};

static void *map_part(void *arg)
{
	struct page_part *p = arg;
	char what[96], no[24];

	for (size_t i = p->from; i < p->to && !p->err; i++) {
		json_t *row = json_array_get(p->page, i);
		struct tree *t;

		if (!row_no(row, no, sizeof(no))) {
			log_msg(LOG_LVL_WARNING,
				"getServerImageList %s: skipping a row without a "
				"usable serverImageNo",
				p->region);
			continue;
		}
		snprintf(what, sizeof(what), "getServerImageList %s/%s", p->region, no);
		t = build(what, "", row);
		if (t && rows_push(&p->rows, t, parse_no(no)) < 0) {
			tree_unref(t);
			p->err = -ENOMEM;
		}
	}
	return NULL;
}

static void *free_json(void *arg)
{
	json_decref(arg);
#ifdef __GLIBC__
	malloc_trim(0); /* give the page's memory back: only the trees stay */
#endif
	return NULL;
}

/* Drops a page's JSON off the request's path: freeing ~10^5 values takes
 * milliseconds that the waiting reader need not spend. */
static void drop_page(json_t *page)
{
	pthread_attr_t attr;
	pthread_t t;
	int ok;

	pthread_attr_init(&attr);
	pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
	ok = pthread_create(&t, &attr, free_json, page) == 0;
	pthread_attr_destroy(&attr);
	if (!ok)
		json_decref(page);
}

/* Turns one page's rows into trees (half of them on a second thread: the
 * mapping is on the path of the first `ls` of a region), so that only one
 * page of JSON is ever held at once. Consumes page. */
static int rows_add_page(struct rows *r, const char *region, json_t *page)
{
	size_t n = json_array_size(page);
	struct page_part a = { region, page, 0, n / 2, { 0 }, 0 };
	struct page_part b = { region, page, n / 2, n, { 0 }, 0 };
	pthread_t helper;
	int threaded = n >= 64 && pthread_create(&helper, NULL, map_part, &b) == 0;
	int err = 0;

	if (!threaded)
		a.to = n;
	map_part(&a);
	if (threaded)
		pthread_join(helper, NULL);
	drop_page(page);
	err = a.err ? a.err : b.err;
	for (int k = 0; k < 2; k++) {
		struct rows *part = k ? &b.rows : &a.rows;

		for (size_t i = 0; i < part->n; i++) {
			if (!err && rows_push(r, part->trees[i], part->nos[i]) < 0)
				err = -ENOMEM;
			if (err)
				tree_unref(part->trees[i]);
		}
		free(part->trees);
		free(part->nos);
	}
	return err;
}

/* Fetches every page of a region's listing. */
static int fetch_listing(struct cache *c, const char *region, struct rows *rows)
{
	struct ncp_error e;
	long total = 0, seen = 0;
	char what[64];
	int err = 0;

	for (long page = 1; page <= MAX_LIST_PAGES && !err; page++) {
		json_t *part = NULL;
		size_t got;

		if (ncp_image_list_page(c->client, region, page, LIST_PAGE_SIZE, &part, &total,
					&e) < 0) {
			snprintf(what, sizeof(what), "getServerImageList %s page %ld", region,
				 page);
			report(c, what, &e);
			return -ncp_error_errno(&e);
		}
		got = json_array_size(part);
		err = rows_add_page(rows, region, part);
		seen += (long)got;
		if (got < LIST_PAGE_SIZE || seen >= total)
			break;
	}
	return err;
}

/* With c->lock held: installs listed images and the new listing. */
static void install_listing(struct cache *c, uint32_t region, struct rows *rows, double when)
{
	struct region *r = &c->region[region];
	struct cache_ids *ids = ids_new((uint32_t)rows->n);
	uint32_t mark = ++c->mark;

	if (!ids)
		return;
	ids->n = 0;
	for (size_t i = 0; i < rows->n; i++) {
		int64_t idx = slot_of(c, region, rows->nos[i]);

		if (idx < 0 || c->slot[idx].mark == mark)
			continue; /* out of memory, or listed twice */
		c->slot[idx].mark = mark;
		install_image(c, (uint32_t)idx, rows->trees[i], when);
		rows->trees[i] = NULL;
		ids->ids[ids->n++] = (uint32_t)idx;
	}
	/* Images no longer listed are asked for again on their next lookup. */
	for (uint32_t i = 0; r->listing && i < r->listing->n; i++) {
		struct slot *s = &c->slot[r->listing->ids[i]];

		if (s->mark != mark)
			s->fetched = -1;
	}
	r->listed = r->good = when;
	r->warned = 0;
	if (!ids_equal(r->listing, ids)) {
		if (r->listing) {
			r->mtime = now_wall();
			c->on_change(c->arg, CACHE_LISTING_CHANGED, region, r->code);
		}
		ids_unref_locked(r->listing);
		r->listing = ids;
	} else {
		ids_unref_locked(ids);
	}
}

int cache_listing(struct cache *c, uint32_t region, struct cache_ids **out, double *left)
{
	struct rows rows = { 0 };
	char code[16];
	struct region *r;
	double when;
	int err = 0;

	pthread_mutex_lock(&c->lock);
	r = &c->region[region];
	if (r->listing && fresh(r->listed, c->opts.ttl)) {
		c->stats.hits++;
		goto done;
	}
	if (!flight_join(c, &r->flight)) {
		c->stats.coalesced++;
		err = c->region[region].flight.err;
		goto done;
	}
	c->stats.misses++;
	snprintf(code, sizeof(code), "%s", r->code);
	pthread_mutex_unlock(&c->lock);

	when = now_mono();
	err = fetch_listing(c, code, &rows);

	pthread_mutex_lock(&c->lock);
	r = &c->region[region];
	if (!err) {
		install_listing(c, region, &rows, when);
	} else if (r->listing) {
		char what[64];

		snprintf(what, sizeof(what), "getServerImageList %s", code);
		if (serve_stale(c, what, r->good, &r->listed, &r->warned))
			err = 0;
	}
	flight_land(c, &c->region[region].flight, err);
	rows_release(&rows);
done:
	r = &c->region[region];
	if (!err && !r->listing)
		err = -EIO;
	if (!err) {
		*out = ids_ref(r->listing);
		if (left)
			*left = ttl_left(r->listed, c->opts.ttl);
	}
	pthread_mutex_unlock(&c->lock);
	return err;
}

void cache_get_stats(struct cache *c, struct cache_stats *out)
{
	pthread_mutex_lock(&c->lock);
	*out = c->stats;
	out->images = c->nslot;
	out->bytes = c->tree_bytes;
	pthread_mutex_unlock(&c->lock);
}

/* ---- images by name ---- */

/* The serverImageName of slot idx as a file name, or NULL (logged once). */
static const char *usable_name(struct cache *c, uint32_t idx)
{
	struct slot *s = &c->slot[idx];
	const char *name;
	uint32_t node;
	size_t len;

	if (!s->tree || tree_lookup(s->tree, 0, "serverImageName", &node) < 0 ||
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

static int by_name(const void *a, const void *b, void *pool)
{
	const struct name_entry *x = a, *y = b;

	return strcmp((const char *)pool + x->name, (const char *)pool + y->name);
}

/* With c->lock held: builds the by-name table of a listing. Names used by
 * more than one image get "~<serverImageNo>" appended, for every one of them. */
static struct cache_names *names_build(struct cache *c, struct cache_ids *listing, double made)
{
	struct cache_names *n = calloc(1, sizeof(*n));
	size_t cap = 1, used = 0;
	char no[24];

	if (!n)
		return NULL;
	n->refs = 1;
	n->from = ids_ref(listing);
	n->made = made;
	for (uint32_t i = 0; i < listing->n; i++) {
		const char *name = usable_name(c, listing->ids[i]);

		if (name)
			cap += strlen(name) + 1 + 1 + sizeof(no);
	}
	n->entries = calloc(listing->n ? listing->n : 1, sizeof(*n->entries));
	n->pool = malloc(cap);
	if (!n->entries || !n->pool) {
		names_unref_locked(n);
		return NULL;
	}
	for (uint32_t i = 0; i < listing->n; i++) {
		const char *name = usable_name(c, listing->ids[i]);

		if (!name)
			continue;
		n->entries[n->n].name = (uint32_t)used;
		n->entries[n->n++].slot = listing->ids[i];
		used += (size_t)snprintf(n->pool + used, cap - used, "%s", name) + 1;
	}
	qsort_r(n->entries, n->n, sizeof(*n->entries), by_name, n->pool);
	for (uint32_t i = 0; i < n->n;) {
		uint32_t j = i + 1;

		while (j < n->n &&
		       !strcmp(n->pool + n->entries[i].name, n->pool + n->entries[j].name))
			j++;
		for (uint32_t k = i; j - i > 1 && k < j; k++) {
			const char *name = n->pool + n->entries[k].name;
			size_t len = strlen(name);

			slot_name(&c->slot[n->entries[k].slot], no, sizeof(no));
			n->entries[k].name = (uint32_t)used;
			used += (size_t)snprintf(
					n->pool + used, cap - used, "%.*s~%s",
					(int)(len + strlen(no) + 1 > 255 ? 254 - strlen(no) : len),
					name, no) +
				1;
		}
		i = j;
	}
	qsort_r(n->entries, n->n, sizeof(*n->entries), by_name, n->pool);
	return n;
}

int cache_by_name(struct cache *c, uint32_t region, struct cache_names **out, double *left)
{
	struct cache_ids *listing;
	struct region *r;
	int err = cache_listing(c, region, &listing, left);

	if (err)
		return err;
	pthread_mutex_lock(&c->lock);
	r = &c->region[region];
	if (!r->names || r->names->from != r->listing || r->names->made != r->good) {
		struct cache_names *n = names_build(c, r->listing, r->good);

		if (n) {
			names_unref_locked(r->names);
			r->names = n;
		}
	}
	if (r->names && r->names->from == r->listing && r->names->made == r->good) {
		r->names->refs++;
		*out = r->names;
	} else {
		err = -ENOMEM;
	}
	ids_unref_locked(listing);
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
	names_unref_locked(n);
	pthread_mutex_unlock(&c->lock);
}

const char *cache_slot_no(struct cache *c, uint32_t slot, char *buf, size_t len)
{
	pthread_mutex_lock(&c->lock);
	if (slot < c->nslot)
		slot_name(&c->slot[slot], buf, len);
	else
		snprintf(buf, len, "0");
	pthread_mutex_unlock(&c->lock);
	return buf;
}
