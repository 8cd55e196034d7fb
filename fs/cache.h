/* SPDX-License-Identifier: MIT */
/* cache.h: what ncloudfs knows of NCP, with its age. Regions, each region's
 * listing, and images (held as trees). Fetches lazily through a source (the
 * NCP client, or a fake one in tests), one fetch at a time per object (others
 * wait for its result), never holding a lock across the network. Images are
 * numbered by slots; a slot's generation changes whenever its data does or the
 * slot is given to another image, which is what lets the kernel keep caches
 * without ever showing old data as new. */
#ifndef CACHE_H
#define CACHE_H

#include <stdint.h>

#include "ncp.h"
#include "tree.h"

struct cache;

/* Where answers come from: the three API calls, with ncp.h's contract. */
struct cache_source {
	void *arg;
	int (*region_list)(void *arg, json_t **regions, struct ncp_error *err);
	int (*list_page)(void *arg, const char *region, long page_no, long page_size, json_t **rows,
			 long *total_rows, struct ncp_error *err);
	int (*detail)(void *arg, const char *region, const char *no, json_t **image,
		      struct ncp_error *err);
	const char *(*host)(void *arg); /* for messages */
	double (*now)(void *arg);	/* monotonic seconds; NULL: CLOCK_MONOTONIC */
	/* list_page with the rows handed to a sink as they are parsed; NULL:
	 * list_page's rows are fed to it */
	int (*list_rows)(void *arg, const char *region, long page_no, long page_size,
			 const struct ncp_row_sink *sink, long *total_rows, struct ncp_error *err);
};
/* The source that calls NCP through client (borrowed). */
struct cache_source cache_source_ncp(struct ncp_client *client);

struct cache_opts {
	double ttl;	     /* seconds an answer stays fresh */
	double negative_ttl; /* seconds "no such image" stays fresh */
	double stale;	     /* seconds past ttl a good answer may stand in for a
				failed refresh (stale-if-error) */
	double busy_ttl;     /* seconds an image in transition (and a listing
				holding one) stays fresh; <= 0 or > ttl: ttl */
	unsigned workers;    /* fetches run at once (0: 16) */
	double refresh;	     /* a part of the ttl (a fraction, 0 to 0.5): how long
				after expiry an answer is still served while it
				is refreshed, and the most before expiry that a
				read refreshes it ahead (as long before as a
				fetch takes, at least a quarter of that part).
				0: neither */
};

/* What changed, for the filesystem to tell the kernel. */
enum cache_change {
	CACHE_REGIONS_CHANGED, /* the region list */
	CACHE_LISTING_CHANGED, /* a region's listing */
	CACHE_IMAGE_CHANGED,   /* an image's data, or its presence */
};
/* Called with the cache locked: must only queue work, never call back in.
 * name is the region's code for CACHE_LISTING_CHANGED, the image's number
 * for CACHE_IMAGE_CHANGED, NULL otherwise. */
typedef void cache_change_fn(void *arg, enum cache_change what, uint32_t region, const char *name);

/* An immutable, reference-counted list of ids (regions or image slots): ids
 * in the API's order, and the same ids ascending in sorted (directory reads
 * resume by id, so a listing that changes between two reads neither skips
 * nor repeats an entry). */
struct cache_ids {
	unsigned refs;
	uint32_t n;
	uint32_t *sorted;	       /* ids in key order: directory offsets follow keys */
	uint64_t *keys;		       /* sorted[k]'s key: its image number, or region id */
	struct cache_ids *next, *prev; /* the cache's own: every live listing */
	uint8_t slots;		       /* ids are image slots */
	uint32_t ids[];
};

/* An image as answered to a caller; tree is a reference the caller drops
 * with tree_unref (NULL when the image is missing). */
struct cache_image {
	uint32_t slot;
	uint16_t gen;
	uint32_t region;
	struct tree *tree;
	int64_t mtime;	 /* createDate, else the time ncloudfs started */
	double ttl_left; /* seconds until this answer expires (>= 0) */
	char no[24];	 /* serverImageNo */
};

/* Freshness, as shown in extended attributes: the wall-clock time of the
 * answer being served (-1: none yet), and whether it is fresh, being
 * refreshed, or stale (expired, or its last refresh failed). */
enum cache_state { CACHE_FRESH, CACHE_REFRESHING, CACHE_STALE };
struct cache_age {
	int64_t fetched;
	enum cache_state state;
};
/* The age of the region list (id ignored), a region's listing, or an image
 * slot's answer at generation gen (ignored for the others): 0, or -ENOENT
 * when there is none (for an image, none at that generation). Never
 * fetches. */
enum cache_what { CACHE_AGE_REGIONS, CACHE_AGE_LISTING, CACHE_AGE_IMAGE };
int cache_age(struct cache *c, enum cache_what what, uint32_t id, uint16_t gen,
	      struct cache_age *out);

/* Interruption, for the calling thread: while *flag (read atomically) is
 * nonzero, a wait for the API gives up with -EINTR; the fetch goes on for
 * other readers, and is abandoned when none is left. NULL clears it. Whoever
 * sets the flag calls cache_wake so that waiters look at it. */
void cache_set_interrupt(const int *flag);
void cache_wake(struct cache *c);
/* Waits until no fetch is queued or running (tests, and a quiet shutdown). */
void cache_quiesce(struct cache *c);

/* Creates a cache over src (copied; what src->arg points to must outlive
 * the cache). NULL when out of memory. */
struct cache *cache_new(const struct cache_source *src, const struct cache_opts *opts,
			cache_change_fn *on_change, void *arg);
void cache_free(struct cache *c);
/* Stops the workers: fetches under way give up (waiters get -EINTR), and no
 * more start (a reader that still comes gets -EINTR too; it is called once
 * the filesystem's loop has ended). Idempotent; cache_free does it. */
void cache_close(struct cache *c);
/* Forgets every answer, reporting each as changed so that the kernel can be
 * told too; the next access fetches afresh, and a fetch under way when this
 * is called does not count as fresh either. */
void cache_drop_all(struct cache *c);
/* Gives back what nobody needs: expired "no such image" answers, images no
 * longer listed whose answer has expired, and anything past ttl + stale.
 * Returns the number of image slots freed. */
unsigned cache_reclaim(struct cache *c);

/* The regions (ids for cache_region_code), fetching if stale. 0 and a new
 * reference in *out, or -errno. *ttl_left is set when not NULL. */
int cache_regions(struct cache *c, struct cache_ids **out, double *ttl_left);
/* Installs a region list fetched elsewhere (regions borrowed: the regionList
 * array), as if fetched now. 0 or -errno. */
int cache_prime_regions(struct cache *c, json_t *regions);
/* Finds a region by code: 0, -ENOENT, or another -errno. Names that cannot
 * be region codes answer -ENOENT without any fetch. */
int cache_region_find(struct cache *c, const char *name, uint32_t *region, double *ttl_left);
/* A region's code (borrowed; region ids are never reused). */
const char *cache_region_code(struct cache *c, uint32_t region);
/* Wall-clock time the region list / a listing last changed (directory mtime). */
int64_t cache_regions_mtime(struct cache *c);
int64_t cache_listing_mtime(struct cache *c, uint32_t region);
/* The cache's clock (monotonic seconds). */
double cache_now(struct cache *c);

/* The images listed in a region (slot ids), fetching every page if stale,
 * or, when held is set, only if none is held at all. 0 and a new reference,
 * or -errno. */
int cache_listing(struct cache *c, uint32_t region, int held, struct cache_ids **out,
		  double *ttl_left, uint32_t *changes);
/* The region list likewise, for the rest of a directory read. */
int cache_regions_held(struct cache *c, struct cache_ids **out, double *ttl_left);
/* Drops a reference taken by cache_regions or cache_listing. */
void cache_ids_unref(struct cache *c, struct cache_ids *ids);
/* The index in ids->sorted of the first entry whose key is >= key (ids->n
 * if none). */
uint32_t cache_ids_from(const struct cache_ids *ids, uint64_t key);

/* Looks an image up by number (canonical decimal only; anything else is
 * -ENOENT without a fetch), fetching if stale. 0 and *img, -ENOENT (with
 * img->ttl_left saying how long that holds), or another -errno. */
int cache_image_lookup(struct cache *c, uint32_t region, const char *no, struct cache_image *img);
/* The data of slot at generation gen (-1: whatever is current), without
 * fetching: the current one, or the one it replaced. 0, -ENOENT when the
 * current state is "missing", or -ESTALE when that generation is gone. */
int cache_image_get(struct cache *c, uint32_t slot, int32_t gen, struct cache_image *img);

/* What the cache has done, for /.stats and statfs. */
struct cache_stats {
	uint64_t hits;		 /* answered from the cache */
	uint64_t misses;	 /* fetched */
	uint64_t coalesced;	 /* waited for another reader's fetch */
	uint64_t stale;		 /* served a stale answer after a failed refresh */
	uint64_t images;	 /* image slots held */
	uint64_t bytes;		 /* bytes of image trees held */
	uint64_t reclaimed;	 /* image slots given back */
	uint64_t scans;		 /* cache_reclaim calls */
	uint64_t refresh_ahead;	 /* refreshes started by a read in the last part of a ttl */
	uint64_t revalidations;	 /* refreshes started in the background for an expired answer */
	uint64_t refresh_failed; /* background refreshes that failed */
	uint64_t waited;	 /* reads that waited for the API */
	uint64_t interrupted;	 /* waits given up on a signal (EINTR) */
	uint64_t abandoned;	 /* fetches given up because nobody waited any more */
};
void cache_get_stats(struct cache *c, struct cache_stats *out);

/* A region's images by serverImageName, for <region>/.by-name (made from the
 * listing, fetched as cache_listing does). 0 and a new reference, or -errno.
 * Every name is unique: a name used by more than one image, or equal to
 * another's "name~<serverImageNo>", becomes "name~<serverImageNo>" (cut to
 * 255 bytes at a character boundary); names that cannot be file names are
 * left out (logged once). Index i runs in name order; cache_names_by_key
 * gives the same entries in the order of their keys (from a hash of the
 * name, unique, below 2^62), for directory reads. */
struct cache_names;
int cache_by_name(struct cache *c, uint32_t region, int held, struct cache_names **out,
		  double *ttl_left);
uint32_t cache_names_count(const struct cache_names *n);
const char *cache_names_name(const struct cache_names *n, uint32_t i);
uint32_t cache_names_slot(const struct cache_names *n, uint32_t i);
/* The entry that is k-th in key order (its key in *key), and the first k
 * whose key is >= key. */
uint32_t cache_names_by_key(const struct cache_names *n, uint32_t k, uint64_t *key);
uint32_t cache_names_from(const struct cache_names *n, uint64_t key);
/* Finds name: 0 and its index *i, or -1. */
int cache_names_find(const struct cache_names *n, const char *name, uint32_t *i);
void cache_names_unref(struct cache *c, struct cache_names *n);

/* Nonzero when name is a canonical image number: no leading 0, at most
 * CACHE_MAX_IMAGE_NO (so that a directory offset, a signed 64-bit number,
 * can carry it plus 3). */
#define CACHE_MAX_IMAGE_NO 9223372036854775804ull
int cache_valid_image_no(const char *name);

#endif
