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
	double stale; /* serve the last good answer this long past ttl on errors */
};

/* Creates the filesystem over client (borrowed). NULL on out of memory. */
struct fsops *fsops_new(struct ncp_client *client, const struct fsops_opts *opts);
/* Frees it; call fsops_stop first if it was started. */
void fsops_free(struct fsops *fs);
/* The operations table; pass fs as userdata to fuse_session_new. */
const struct fuse_lowlevel_ops *fsops_ops(void);
/* Starts the kernel-notification thread for session se: 0 or -1. */
int fsops_start(struct fsops *fs, struct fuse_session *se);
/* Stops that thread; call before the session is destroyed. */
void fsops_stop(struct fsops *fs);
/* Forgets every cached answer and tells the kernel to forget what it holds,
 * so that the next access fetches afresh (SIGHUP). */
void fsops_drop_caches(struct fsops *fs);
/* The cache (borrowed), for signals and statistics. */
struct cache *fsops_cache(struct fsops *fs);

#endif
