/* SPDX-License-Identifier: MIT */
/* fsops.h: the filesystem itself: libfuse low-level operations over the
 * cache, and the thread that tells the kernel when cached data changed. */
#ifndef FSOPS_H
#define FSOPS_H

#define FUSE_USE_VERSION 314
#include <fuse_lowlevel.h>

#include "cache.h"

struct fsops;

struct fsops_opts {
	double ttl;
	double negative_ttl;
	double stale;	  /* serve the last good answer this long past ttl on errors */
	double busy_ttl;  /* ttl of images in transition (<= 0: ttl) */
	unsigned workers; /* fetches at once (0: the cache's default) */
	double refresh;	  /* see struct cache_opts (0: no refresh ahead) */
};

/* Creates the filesystem over src (copied; see cache_new); client (borrowed,
 * may be NULL) only feeds /.stats. NULL on out of memory. */
struct fsops *fsops_new(const struct cache_source *src, struct ncp_client *client,
			const struct fsops_opts *opts);
/* Frees it; call fsops_stop first if it was started. */
void fsops_free(struct fsops *fs);
/* The operations table; pass fs as userdata to fuse_session_new. */
const struct fuse_lowlevel_ops *fsops_ops(void);
/* Starts the thread that tells the kernel of changes and reclaims memory,
 * for session se mounted at mountpoint (copied; NULL if none): 0 or -1. */
int fsops_start(struct fsops *fs, struct fuse_session *se, const char *mountpoint);
/* Stops that thread; call before the session is destroyed. If the kernel
 * holds a notification back (lookups queued that nobody will answer), the
 * connection is ended after a second so that stopping always finishes. */
void fsops_stop(struct fsops *fs);
/* Forgets every cached answer and tells the kernel to forget what it holds,
 * so that the next access fetches afresh (SIGHUP). */
void fsops_drop_caches(struct fsops *fs);
/* Gives back memory no longer needed (what the notifier does every
 * clamp(ttl, 1, 60) seconds): the number of image slots freed. */
unsigned fsops_reclaim(struct fsops *fs);
/* The cache (borrowed), for signals and statistics. */
struct cache *fsops_cache(struct fsops *fs);

#endif
