/* SPDX-License-Identifier: MIT */
/* fsops.c: the tree as the kernel sees it, through libfuse's low-level API.
 *
 * Inode numbers carry their own meaning (inode.h), so no inode table is kept.
 * An image's generation changes whenever its data does, so the kernel may
 * keep entries, attributes and pages for the whole TTL (entry and attribute
 * timeouts are the time left on the data) and still never show old data as
 * new: changed data arrives under new inodes. Open, opendir and flush answer
 * ENOSYS, so warm reads make no round trip at all. The root and region
 * directories keep their numbers, so their cached listings are dropped
 * explicitly: when they change and when their TTL ends. */
#include "fsops.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/sysmacros.h>
#include <time.h>
#include <unistd.h>

#include "inode.h"
#include "log.h"

#define MAX_DIRS ((int)(1 + 2 * MAX_REGIONS)) /* the root, every region and its .by-name */
#define BYNAME ".by-name"
#define STATS ".stats"
#define XATTR_CODENAME "user.ncp.codeName"
#define XATTR_FETCHED "user.ncp.fetched"
#define XATTR_STATE "user.ncp.state"
#define STOP_WAIT_S 1.0 /* how long unmounting waits for the kernel to take a note */

/* A note for the kernel: drop an inode's cached data, or a name's entry. */
struct note {
	fuse_ino_t ino;
	char name[32]; /* empty: the inode itself */
};

struct regdoc;
static void regdoc_unref(struct fsops *fs, struct regdoc *d);

struct fsops {
	struct cache *cache;
	/* <region>.json, under lock: the current snapshot, the one it replaced
	 * (for readers that opened it), and the generation last given */
	struct regdoc *regdoc[MAX_REGIONS], *regdoc_prev[MAX_REGIONS];
	uint32_t regdoc_gen[MAX_REGIONS];
	char regdoc_code[MAX_REGIONS][16]; /* the region's code, once looked up */
	struct ncp_client *client;	   /* for /.stats; may be NULL */
	double started;			   /* monotonic, for the uptime in /.stats */
	struct fsops_opts opts;
	uid_t uid;
	gid_t gid;
	int no_open; /* the kernel agreed to go without open/opendir */

	struct fuse_session *se;
	char *mountpoint;
	pthread_t thread;
	int running;
	atomic_int stopping;
	pthread_mutex_t lock; /* guards what follows; taken after the cache lock */
	pthread_cond_t cond;
	struct note *notes;
	size_t nnotes, notes_cap;
	int sending;		     /* the notifier is telling the kernel a batch */
	int done;		     /* the notifier has returned */
	pthread_cond_t drained;	     /* signalled when no note is queued or being sent */
	double dir_expiry[MAX_DIRS]; /* when a directory's cached listing goes stale */
	double next_scan;	     /* when the cache is next reclaimed */
	char *stats;		     /* the /.stats text last made (by lookup or getattr) */
	size_t stats_len;
};

static double now_mono(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

/* ---- notes to the kernel ---- */

static void queue_note(struct fsops *fs, fuse_ino_t ino, const char *name)
{
	pthread_mutex_lock(&fs->lock);
	if (fs->nnotes == fs->notes_cap) {
		size_t cap = fs->notes_cap ? fs->notes_cap * 2 : 64;
		struct note *p = realloc(fs->notes, cap * sizeof(*p));

		if (!p)
			goto out; /* the kernel's own timeouts still apply */
		fs->notes = p;
		fs->notes_cap = cap;
	}
	fs->notes[fs->nnotes].ino = ino;
	snprintf(fs->notes[fs->nnotes].name, sizeof(fs->notes[0].name), "%s", name ? name : "");
	fs->nnotes++;
	pthread_cond_signal(&fs->cond);
out:
	pthread_mutex_unlock(&fs->lock);
}

/* An image of region changed: if a snapshot of it was given out, the
 * kernel is told to look its name up again (it gets a new inode). */
static void regjson_changed(struct fsops *fs, uint32_t region)
{
	char json[32] = "";

	pthread_mutex_lock(&fs->lock);
	if (fs->regdoc_code[region][0])
		snprintf(json, sizeof(json), "%s.json", fs->regdoc_code[region]);
	pthread_mutex_unlock(&fs->lock);
	if (json[0])
		queue_note(fs, INO_ROOT, json);
}

static void on_change(void *arg, enum cache_change what, uint32_t region, const char *name)
{
	struct fsops *fs = arg;
	char json[32];

	switch (what) {
	case CACHE_REGIONS_CHANGED:
		queue_note(fs, INO_ROOT, NULL);
		break;
	case CACHE_LISTING_CHANGED:
		queue_note(fs, ino_region(region), NULL);
		queue_note(fs, ino_byname(region), NULL);
		queue_note(fs, INO_ROOT, name);
		snprintf(json, sizeof(json), "%s.json", name);
		queue_note(fs, INO_ROOT, json); /* a new snapshot, a new inode */
		break;
	case CACHE_IMAGE_CHANGED:
		snprintf(json, sizeof(json), "%s.json", name);
		queue_note(fs, ino_region(region), name);
		queue_note(fs, ino_region(region), json);
		regjson_changed(fs, region);
		break;
	}
}

static int dir_index(fuse_ino_t ino)
{
	struct ino_parts p = ino_split(ino);

	if (p.kind == INO_K_BYNAME)
		return 1 + (int)MAX_REGIONS + (int)p.id;
	if (p.kind == INO_K_REGION)
		return 1 + (int)p.id;
	return 0;
}

static fuse_ino_t dir_ino(int index)
{
	if (index == 0)
		return INO_ROOT;
	if (index > (int)MAX_REGIONS)
		return ino_byname((uint32_t)(index - 1 - (int)MAX_REGIONS));
	return ino_region((uint32_t)index - 1);
}

/* The kernel now holds a listing of dir that goes stale in `left` seconds. */
static void listing_served(struct fsops *fs, fuse_ino_t dir, double left)
{
	if (!fs->no_open)
		return;
	pthread_mutex_lock(&fs->lock);
	if (fs->dir_expiry[dir_index(dir)] == 0) {
		fs->dir_expiry[dir_index(dir)] = now_mono() + left;
		pthread_cond_signal(&fs->cond);
	}
	pthread_mutex_unlock(&fs->lock);
}

static void send_note(struct fsops *fs, const struct note *n)
{
	int err;

	if (n->name[0])
		err = fuse_lowlevel_notify_inval_entry(fs->se, n->ino, n->name, strlen(n->name));
	else
		err = fuse_lowlevel_notify_inval_inode(fs->se, n->ino, 0, 0);
	if (err && err != -ENOENT)
		log_msg(LOG_LVL_DEBUG, "kernel notification for inode %llu: %s",
			(unsigned long long)n->ino, strerror(-err));
}

/* Takes due directory expiries as notes; returns the next deadline. */
static double take_expired(struct fsops *fs, struct note *out, size_t *n)
{
	double now = now_mono(), next = now + 3600;

	for (int i = 0; i < MAX_DIRS; i++) {
		double when = fs->dir_expiry[i];

		if (when == 0)
			continue;
		if (when <= now) {
			out[*n].ino = dir_ino(i);
			out[*n].name[0] = '\0';
			(*n)++;
			fs->dir_expiry[i] = 0;
		} else if (when < next) {
			next = when;
		}
	}
	return next;
}

/* Seconds between two reclaim scans: about the ttl, within [1, 60]. */
static double scan_interval(const struct fsops *fs)
{
	double t = fs->opts.ttl;

	return t < 1 ? 1 : t > 60 ? 60 : t;
}

static void timed_wait(pthread_cond_t *cond, pthread_mutex_t *lock, double wait)
{
	struct timespec until;

	if (wait < 0.001)
		wait = 0.001;
	clock_gettime(CLOCK_REALTIME, &until);
	until.tv_sec += (time_t)wait;
	until.tv_nsec += (long)((wait - (double)(time_t)wait) * 1e9);
	if (until.tv_nsec >= 1000000000L) {
		until.tv_sec++;
		until.tv_nsec -= 1000000000L;
	}
	pthread_cond_timedwait(cond, lock, &until);
}

/* Tells the kernel what changed, drops directory listings when they expire,
 * and gives back cache memory now and then. */
static void *notifier(void *arg)
{
	struct fsops *fs = arg;
	struct note expired[MAX_DIRS];

	pthread_mutex_lock(&fs->lock);
	while (!atomic_load(&fs->stopping)) {
		size_t nexp = 0, nnotes;
		struct note *notes;
		double next;

		if (now_mono() >= fs->next_scan) {
			pthread_mutex_unlock(&fs->lock);
			fsops_reclaim(fs);
			pthread_mutex_lock(&fs->lock);
			fs->next_scan = now_mono() + scan_interval(fs);
			continue;
		}
		/* taken only now, so that none is lost to a scan */
		nnotes = fs->nnotes;
		notes = fs->notes;
		next = take_expired(fs, expired, &nexp);
		if (nnotes || nexp) {
			fs->notes = NULL;
			fs->nnotes = fs->notes_cap = 0;
			fs->sending = 1;
			pthread_mutex_unlock(&fs->lock);
			for (size_t i = 0; i < nnotes && !atomic_load(&fs->stopping); i++)
				send_note(fs, &notes[i]);
			for (size_t i = 0; i < nexp && !atomic_load(&fs->stopping); i++)
				send_note(fs, &expired[i]);
			free(notes);
			pthread_mutex_lock(&fs->lock);
			fs->sending = 0;
			if (!fs->nnotes)
				pthread_cond_broadcast(&fs->drained);
			continue;
		}
		if (fs->next_scan < next)
			next = fs->next_scan;
		timed_wait(&fs->cond, &fs->lock, next - now_mono());
	}
	fs->done = 1;
	pthread_cond_broadcast(&fs->drained);
	pthread_mutex_unlock(&fs->lock);
	return NULL;
}

/* ---- attributes ---- */

static void dir_attr(struct fsops *fs, fuse_ino_t ino, int64_t mtime, nlink_t nlink,
		     struct stat *st)
{
	memset(st, 0, sizeof(*st));
	st->st_ino = ino;
	st->st_mode = S_IFDIR | 0555;
	st->st_nlink = nlink;
	st->st_uid = fs->uid;
	st->st_gid = fs->gid;
	st->st_blksize = 4096;
	st->st_atime = st->st_mtime = st->st_ctime = (time_t)mtime;
}

static void file_attr(struct fsops *fs, fuse_ino_t ino, int64_t mtime, size_t size, struct stat *st)
{
	memset(st, 0, sizeof(*st));
	st->st_ino = ino;
	st->st_mode = S_IFREG | 0444;
	st->st_nlink = 1;
	st->st_uid = fs->uid;
	st->st_gid = fs->gid;
	st->st_size = (off_t)size;
	st->st_blocks = (blkcnt_t)((size + 511) / 512);
	st->st_blksize = 4096;
	st->st_atime = st->st_mtime = st->st_ctime = (time_t)mtime;
}

/* The data behind an image inode (a node or <no>.json): 0 and *img (drop
 * img->tree), or -ESTALE when that generation or node is gone. */
static int image_of(struct fsops *fs, const struct ino_parts *p, struct cache_image *img)
{
	int err = cache_image_get(fs->cache, p->slot, p->gen, img);

	if (err)
		return err == -ENOENT ? -ESTALE : err;
	if (p->kind == INO_K_NODE && p->node >= tree_count(img->tree)) {
		tree_unref(img->tree);
		return -ESTALE;
	}
	return 0;
}

/* Replies with the part of text at off, up to size bytes. */
static void reply_slice(fuse_req_t req, const char *text, size_t len, off_t off, size_t size)
{
	if (off < 0 || (size_t)off >= len)
		fuse_reply_buf(req, NULL, 0);
	else
		fuse_reply_buf(req, text + off,
			       len - (size_t)off < size ? len - (size_t)off : size);
}

/* Attributes of node in img; -errno on failure. */
static int node_attr(struct fsops *fs, const struct cache_image *img, uint32_t node,
		     struct stat *st)
{
	fuse_ino_t ino = ino_image(img->slot, img->gen, node);
	const struct tree *t = img->tree;

	if (node == NODE_JSON) {
		size_t len = tree_json_size(img->tree);

		if (!len)
			return -ENOMEM;
		file_attr(fs, ino, img->mtime, len, st);
	} else if (tree_kind(t, node) == TREE_DIR) {
		dir_attr(fs, ino, img->mtime, 2 + tree_nsubdirs(t, node), st);
	} else {
		file_attr(fs, ino, img->mtime, tree_size(t, node), st);
	}
	return 0;
}

static void set_timeouts(struct fuse_entry_param *e, double left)
{
	e->entry_timeout = left;
	e->attr_timeout = left;
}

/* ---- interrupts ---- */

/* A request that may wait for the API: a signal to its caller (Ctrl-C)
 * reaches the daemon as an interrupt, which ends the wait with EINTR. */
struct intr {
	int flag; /* atomic */
	struct fsops *fs;
	fuse_req_t req;
};

static void on_interrupt(fuse_req_t req, void *data)
{
	struct intr *i = data;

	(void)req;
	__atomic_store_n(&i->flag, 1, __ATOMIC_RELEASE);
	cache_wake(i->fs->cache);
}

static void intr_begin(struct intr *i, fuse_req_t req, struct fsops *fs)
{
	i->flag = 0;
	i->fs = fs;
	i->req = req;
	cache_set_interrupt(&i->flag);
	fuse_req_interrupt_func(req, on_interrupt, i);
}

/* Before the reply (which frees the request): waits out a callback under
 * way, so that i may go. */
static void intr_end(struct intr *i)
{
	fuse_req_interrupt_func(i->req, NULL, NULL);
	cache_set_interrupt(NULL);
}

/* ---- /.stats and .by-name ---- */

/* Makes a new /.stats text ("key: value" lines) and keeps it for reads;
 * returns its length, or -1. */
static ssize_t stats_refresh(struct fsops *fs)
{
	struct cache_stats cs;
	struct ncp_stats ns;
	char *text = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&text, &len);

	if (!f)
		return -1;
	cache_get_stats(fs->cache, &cs);
	memset(&ns, 0, sizeof(ns));
	if (fs->client)
		ncp_client_stats(fs->client, &ns);
	fprintf(f, "uptime_seconds: %.0f\n", now_mono() - fs->started);
	for (int a = 0; a < NCP_NACTIONS; a++) {
		for (int o = 0; o < NCP_NOUTCOMES; o++)
			fprintf(f, "api_calls.%s.%s: %llu\n", ncp_action_name((enum ncp_action)a),
				ncp_outcome_name((enum ncp_outcome)o), ns.calls[a][o]);
	}
	fprintf(f,
		"api_retries: %llu\napi_bytes_received: %llu\n"
		"api_connections: %ld\napi_requests_limit: %ld\napi_requests_peak: %ld\n",
		ns.retries, ns.bytes_received, ns.connections, ns.limit, ns.in_flight_peak);
	fprintf(f,
		"cache_hits: %" PRIu64 "\ncache_misses: %" PRIu64 "\ncache_coalesced: %" PRIu64
		"\ncache_stale_serves: %" PRIu64 "\ncache_images: %" PRIu64
		"\ncache_bytes: %" PRIu64 "\ncache_reclaimed: %" PRIu64 "\ncache_scans: %" PRIu64
		"\n",
		cs.hits, cs.misses, cs.coalesced, cs.stale, cs.images, cs.bytes, cs.reclaimed,
		cs.scans);
	fprintf(f,
		"refresh_ahead: %" PRIu64 "\nrefresh_revalidations: %" PRIu64
		"\nrefresh_failures: %" PRIu64 "\nreads_waited: %" PRIu64
		"\nreads_interrupted: %" PRIu64 "\nfetches_abandoned: %" PRIu64 "\n",
		cs.refresh_ahead, cs.revalidations, cs.refresh_failed, cs.waited, cs.interrupted,
		cs.abandoned);
	if (fclose(f) != 0) {
		free(text);
		return -1;
	}
	pthread_mutex_lock(&fs->lock);
	free(fs->stats);
	fs->stats = text;
	fs->stats_len = len;
	pthread_mutex_unlock(&fs->lock);
	return (ssize_t)len;
}

/* /.stats changes all the time: a fresh mtime on each stat makes the kernel
 * drop what it read before (auto_inval_data), and its timeouts are 0. */
static int stats_attr(struct fsops *fs, struct stat *st)
{
	struct timespec now;
	ssize_t len = stats_refresh(fs);

	if (len < 0)
		return -ENOMEM;
	file_attr(fs, INO_STATS, 0, (size_t)len, st);
	clock_gettime(CLOCK_REALTIME, &now);
	st->st_mtim = st->st_ctim = st->st_atim = now;
	return 0;
}

/* A .by-name link to slot at generation gen (-1: the current data): its
 * attributes (mtime the image's) and inode. 0, or -ENOENT when the image is
 * gone (-ESTALE when that generation is). */
static int link_attr(struct fsops *fs, uint32_t slot, int32_t gen, struct fuse_entry_param *e)
{
	struct cache_image img;
	char target[32];

	if (cache_image_get(fs->cache, slot, gen, &img) != 0)
		return gen < 0 ? -ENOENT : -ESTALE;
	snprintf(target, sizeof(target), "../%s", img.no);
	e->ino = ino_image(slot, img.gen, NODE_LINK);
	file_attr(fs, e->ino, img.mtime, strlen(target), &e->attr);
	e->attr.st_mode = S_IFLNK | 0777;
	set_timeouts(e, img.ttl_left);
	tree_unref(img.tree);
	return 0;
}

/* ---- <region>.json ---- */

/* A region's images as one JSON array, in listing order, each image as its
 * <no>.json shows it: a snapshot of the listing and of each image's tree
 * (references), with where each image's text ends, so that stat and every
 * read of one snapshot agree. Made anew when the listing or an image of the
 * region changed. The text: "[\n", each image's JSON without its last
 * newline followed by ",\n" (the last by "\n]\n"); or "[]\n". */
struct regdoc {
	unsigned refs; /* under fs->lock */
	uint32_t gen;  /* in its inode number */
	double used;   /* last given out (the cache's clock), under fs->lock */
	uint32_t changes;
	uint32_t n;
	struct tree **trees;
	uint64_t *ends; /* ends[i]: just past image i's text and ",\n" (or "\n]\n") */
	uint64_t size;
	int64_t mtime;
};

static void regdoc_unref(struct fsops *fs, struct regdoc *d)
{
	int last;

	if (!d)
		return;
	pthread_mutex_lock(&fs->lock);
	last = --d->refs == 0;
	pthread_mutex_unlock(&fs->lock);
	if (!last)
		return;
	for (uint32_t i = 0; i < d->n; i++)
		tree_unref(d->trees[i]);
	free(d->trees);
	free(d->ends);
	free(d);
}

/* Builds the snapshot of listing ids (a reference it lets go of). */
static int regdoc_build(struct fsops *fs, struct cache_ids *ids, uint32_t changes, int64_t mtime,
			struct regdoc **out)
{
	struct regdoc *d = calloc(1, sizeof(*d));
	uint64_t at = 2;

	if (d) {
		d->trees = calloc(ids->n ? ids->n : 1, sizeof(*d->trees));
		d->ends = calloc(ids->n ? ids->n : 1, sizeof(*d->ends));
	}
	if (!d || !d->trees || !d->ends) {
		if (d) {
			free(d->trees);
			free(d->ends);
		}
		free(d);
		cache_ids_unref(fs->cache, ids);
		return -ENOMEM;
	}
	d->refs = 1;
	d->changes = changes;
	d->mtime = mtime;
	for (uint32_t i = 0; i < ids->n; i++) {
		struct cache_image img;
		size_t len;

		if (cache_image_get(fs->cache, ids->ids[i], -1, &img) != 0)
			continue; /* listed, but gone since */
		len = tree_json_size(img.tree);
		d->trees[d->n] = img.tree;
		if (!len) {
			d->n++;
			regdoc_unref(fs, d);
			cache_ids_unref(fs->cache, ids);
			return -ENOMEM;
		}
		at += len + 1; /* less its newline, plus ",\n" */
		d->ends[d->n++] = at;
	}
	cache_ids_unref(fs->cache, ids); /* the trees are kept; the listing need not be */
	d->size = d->n ? at + 1 : 3;	 /* the last is followed by "\n]\n", not ",\n" */
	if (d->n)
		d->ends[d->n - 1] = d->size;
	*out = d;
	return 0;
}

/* Hands out d (fs->lock held): a reference, and it counts as used. */
static struct regdoc *regdoc_take(struct fsops *fs, struct regdoc *d)
{
	d->refs++;
	d->used = cache_now(fs->cache);
	return d;
}

/* The snapshot of region's listing as it is now, for a lookup (fetching the
 * listing if it is stale): 0 and a reference. A new snapshot gets a new
 * generation, so a new inode; the one it replaces is kept for the readers
 * that have it open. */
static int regdoc_current(struct fsops *fs, uint32_t region, const char *code, struct regdoc **out,
			  double *left)
{
	struct regdoc *d, *gone;
	struct cache_ids *ids;
	uint32_t changes;
	int err;

	err = cache_listing(fs->cache, region, 0, &ids, left, &changes);
	if (err)
		return err;
	pthread_mutex_lock(&fs->lock);
	d = fs->regdoc[region];
	if (d && d->changes == changes) {
		*out = regdoc_take(fs, d);
		pthread_mutex_unlock(&fs->lock);
		cache_ids_unref(fs->cache, ids);
		return 0;
	}
	pthread_mutex_unlock(&fs->lock);
	err = regdoc_build(fs, ids, changes, cache_listing_mtime(fs->cache, region), &d);
	if (err)
		return err;
	pthread_mutex_lock(&fs->lock);
	snprintf(fs->regdoc_code[region], sizeof(fs->regdoc_code[region]), "%s", code);
	gone = fs->regdoc[region];
	if (gone && (int32_t)(gone->changes - changes) >= 0) {
		/* another lookup installed this state, or a newer one, meanwhile:
		 * give that (a region's changes only grow) */
		*out = regdoc_take(fs, gone);
		pthread_mutex_unlock(&fs->lock);
		regdoc_unref(fs, d);
		return 0;
	}
	d->gen = ++fs->regdoc_gen[region];
	gone = fs->regdoc_prev[region];
	fs->regdoc_prev[region] = fs->regdoc[region];
	fs->regdoc[region] = d;
	*out = regdoc_take(fs, d);
	pthread_mutex_unlock(&fs->lock);
	regdoc_unref(fs, gone);
	return 0;
}

/* The snapshot an inode names: 0 and a reference, or -ESTALE once it is
 * gone (two newer ones made since, or let go of unused). */
static int regdoc_of(struct fsops *fs, const struct ino_parts *p, struct regdoc **out)
{
	struct regdoc *d;

	pthread_mutex_lock(&fs->lock);
	d = fs->regdoc[p->id];
	if (!d || d->gen != p->doc)
		d = fs->regdoc_prev[p->id];
	*out = d && d->gen == p->doc ? regdoc_take(fs, d) : NULL;
	pthread_mutex_unlock(&fs->lock);
	return *out ? 0 : -ESTALE;
}

unsigned fsops_reclaim(struct fsops *fs)
{
	struct regdoc *gone[2 * MAX_REGIONS];
	double old = cache_now(fs->cache) - fs->opts.ttl - fs->opts.stale;
	size_t n = 0;

	/* <region>.json snapshots keep their images' trees: those not given
	 * out for ttl + stale go (a reader in the middle of one keeps it) */
	pthread_mutex_lock(&fs->lock);
	for (uint32_t r = 0; r < MAX_REGIONS; r++) {
		struct regdoc **at[2] = { &fs->regdoc[r], &fs->regdoc_prev[r] };

		for (int k = 0; k < 2; k++) {
			if (*at[k] && (*at[k])->used < old) {
				gone[n++] = *at[k];
				*at[k] = NULL;
			}
		}
	}
	pthread_mutex_unlock(&fs->lock);
	while (n)
		regdoc_unref(fs, gone[--n]);
	return cache_reclaim(fs->cache);
}

/* Copies the part of src[0, len) that falls in [off, off + size) of the
 * document, src starting at document offset at, into buf. */
static void regdoc_copy(char *buf, uint64_t off, size_t size, const char *src, uint64_t at,
			size_t len)
{
	uint64_t from = at > off ? at : off, to = at + len < off + size ? at + len : off + size;

	if (from < to)
		memcpy(buf + (from - off), src + (from - at), (size_t)(to - from));
}

/* Reads [off, off + size) of d into buf: 0 and *len, or -errno. */
static int regdoc_read(struct regdoc *d, uint64_t off, size_t size, char *buf, size_t *len)
{
	uint32_t lo = 0, hi = d->n;

	*len = 0;
	if (off >= d->size)
		return 0;
	if (size > d->size - off)
		size = (size_t)(d->size - off);
	*len = size;
	if (d->n == 0) {
		regdoc_copy(buf, off, size, "[]\n", 0, 3);
		return 0;
	}
	regdoc_copy(buf, off, size, "[\n", 0, 2);
	while (lo < hi) { /* the first image whose text ends past off */
		uint32_t mid = lo + (hi - lo) / 2;

		if (d->ends[mid] <= off)
			lo = mid + 1;
		else
			hi = mid;
	}
	for (uint32_t i = lo; i < d->n; i++) {
		uint64_t at = i ? d->ends[i - 1] : 2;
		size_t tlen;
		char *text;

		if (at >= off + size)
			break;
		text = tree_json_text(d->trees[i], &tlen);
		if (!text)
			return -ENOMEM;
		if (tlen + (i + 1 < d->n ? 1 : 2) != d->ends[i] - at) {
			free(text); /* not the text the layout was made for */
			return -EIO;
		}
		regdoc_copy(buf, off, size, text, at, tlen - 1);
		regdoc_copy(buf, off, size, i + 1 < d->n ? ",\n" : "\n]\n", at + tlen - 1,
			    i + 1 < d->n ? 2 : 3);
		free(text);
	}
	return 0;
}

/* The region named by "<code>.json": 0, *region and its code (16 bytes),
 * else -ENOENT (or the region list's error). */
static int regjson_region(struct fsops *fs, const char *name, uint32_t *region, char *code,
			  double *left)
{
	size_t len = strlen(name);

	if (len <= 5 || len - 5 >= 16 || strcmp(name + len - 5, ".json") != 0)
		return -ENOENT;
	memcpy(code, name, len - 5);
	code[len - 5] = '\0';
	return cache_region_find(fs->cache, code, region, left);
}

static void regjson_attr(struct fsops *fs, uint32_t region, const struct regdoc *d, struct stat *st)
{
	file_attr(fs, ino_regjson(region, d->gen), d->mtime, (size_t)d->size, st);
}

/* Attributes of any inode, with how long they hold. */
static int ino_attr(struct fsops *fs, fuse_ino_t ino, struct stat *st, double *left)
{
	struct ino_parts p = ino_split(ino);
	struct fuse_entry_param e;
	struct cache_image img;
	int err;

	*left = fs->opts.ttl;
	switch (p.kind) {
	case INO_K_ROOT:
		/* Cached like any directory's: with default_permissions the
		 * kernel checks them on every path walk from the mountpoint. A
		 * dead daemon is told by statfs, which is never cached (see
		 * watchdog() in main.c). */
		dir_attr(fs, ino, cache_regions_mtime(fs->cache), 1, st);
		return 0;
	case INO_K_STATS:
		*left = 0;
		return stats_attr(fs, st);
	case INO_K_REGION:
		dir_attr(fs, ino, cache_listing_mtime(fs->cache, p.id), 1, st);
		return 0;
	case INO_K_BYNAME:
		dir_attr(fs, ino, cache_listing_mtime(fs->cache, p.id), 2, st);
		return 0;
	case INO_K_REGJSON: {
		struct regdoc *d;

		err = regdoc_of(fs, &p, &d);
		if (err)
			return err;
		regjson_attr(fs, p.id, d, st);
		regdoc_unref(fs, d);
		return 0; /* *left: ttl; the data of this inode never changes */
	}
	case INO_K_LINK:
		/* one look at the slot, at the inode's generation: not another
		 * image's link if the slot was given away meanwhile */
		if (link_attr(fs, p.slot, p.gen, &e) != 0)
			return -ESTALE;
		*st = e.attr;
		st->st_ino = ino;
		*left = e.attr_timeout;
		return 0;
	case INO_K_NODE:
	case INO_K_JSON:
		err = image_of(fs, &p, &img);
		if (err)
			return err;
		err = node_attr(fs, &img, p.kind == INO_K_JSON ? NODE_JSON : p.node, st);
		*left = img.ttl_left;
		tree_unref(img.tree);
		return err;
	default:
		return -ESTALE;
	}
}

/* ---- lookup ---- */

static void reply_negative(fuse_req_t req, double left)
{
	struct fuse_entry_param e;

	memset(&e, 0, sizeof(e));
	set_timeouts(&e, left);
	fuse_reply_entry(req, &e);
}

/* Replies to a lookup with e, or with -err, or as "no such name" for left
 * seconds when err is -ENOENT. */
static void reply_lookup(fuse_req_t req, int err, const struct fuse_entry_param *e, double left)
{
	if (err == -ENOENT)
		reply_negative(req, left);
	else if (err)
		fuse_reply_err(req, -err);
	else
		fuse_reply_entry(req, e);
}

static int lookup_root(struct fsops *fs, const char *name, struct fuse_entry_param *e, double *left)
{
	uint32_t region;
	char code[16];
	int err;

	if (strcmp(name, STATS) == 0) {
		e->ino = INO_STATS;
		*left = 0;
		return stats_attr(fs, &e->attr); /* timeouts 0: asked again each time */
	}
	err = regjson_region(fs, name, &region, code, left);
	if (err == 0) {
		struct regdoc *d;

		err = regdoc_current(fs, region, code, &d, left);
		if (err)
			return err;
		regjson_attr(fs, region, d, &e->attr);
		e->ino = e->attr.st_ino;
		/* the name for as long as the listing holds; the inode's data
		 * never changes (a new snapshot is a new inode) */
		e->entry_timeout = *left;
		e->attr_timeout = fs->opts.ttl;
		regdoc_unref(fs, d);
		return 0;
	}
	if (err != -ENOENT)
		return err; /* the region list failed: not "no such file" */
	err = cache_region_find(fs->cache, name, &region, left);
	if (err)
		return err;
	e->ino = ino_region(region);
	dir_attr(fs, e->ino, cache_listing_mtime(fs->cache, region), 1, &e->attr);
	set_timeouts(e, *left);
	return 0;
}

static int lookup_region(struct fsops *fs, uint32_t region, const char *name,
			 struct fuse_entry_param *e, double *left)
{
	struct cache_image img = { 0 };
	char no[24];
	size_t len = strlen(name);
	int json = len > 5 && strcmp(name + len - 5, ".json") == 0;
	int err;

	*left = fs->opts.ttl;
	if (strcmp(name, BYNAME) == 0) {
		e->ino = ino_byname(region);
		dir_attr(fs, e->ino, cache_listing_mtime(fs->cache, region), 2, &e->attr);
		set_timeouts(e, *left);
		return 0;
	}
	if ((json ? len - 5 : len) >= sizeof(no))
		return -ENOENT; /* longer than any image number */
	snprintf(no, sizeof(no), "%.*s", (int)(json ? len - 5 : len), name);
	err = cache_image_lookup(fs->cache, region, no, &img);
	if (err == -ENOENT)
		*left = cache_valid_image_no(no) ? img.ttl_left : fs->opts.ttl;
	if (err)
		return err;
	err = node_attr(fs, &img, json ? NODE_JSON : 0, &e->attr);
	e->ino = ino_image(img.slot, img.gen, json ? NODE_JSON : 0);
	set_timeouts(e, img.ttl_left);
	tree_unref(img.tree);
	return err;
}

static int lookup_node(struct fsops *fs, const struct ino_parts *p, const char *name,
		       struct fuse_entry_param *e, double *left)
{
	struct cache_image img;
	uint32_t child;
	int err;

	if (p->kind == INO_K_JSON || p->kind == INO_K_LINK)
		return -ENOTDIR;
	err = image_of(fs, p, &img);
	if (err)
		return err;
	*left = img.ttl_left;
	if (tree_kind(img.tree, p->node) != TREE_DIR) {
		err = -ENOTDIR;
	} else if (tree_lookup(img.tree, p->node, name, &child) < 0) {
		err = -ENOENT;
	} else {
		err = node_attr(fs, &img, child, &e->attr);
		e->ino = ino_image(img.slot, img.gen, child);
		set_timeouts(e, img.ttl_left);
	}
	tree_unref(img.tree);
	return err;
}

static int lookup_byname(struct fsops *fs, uint32_t region, const char *name,
			 struct fuse_entry_param *e, double *left)
{
	struct cache_names *names;
	uint32_t i, slot;
	int err = cache_by_name(fs->cache, region, 0, &names, left);

	if (err)
		return err;
	err = cache_names_find(names, name, &i) < 0 ? -ENOENT : 0;
	slot = err ? 0 : cache_names_slot(names, i);
	/* while names holds the listing, so that the slot cannot be reclaimed
	 * and reused by another image in between */
	if (!err)
		err = link_attr(fs, slot, -1, e);
	cache_names_unref(fs->cache, names);
	if (!err)
		set_timeouts(e, *left < e->entry_timeout ? *left : e->entry_timeout);
	return err;
}

static void op_lookup(fuse_req_t req, fuse_ino_t parent, const char *name)
{
	struct fsops *fs = fuse_req_userdata(req);
	struct ino_parts p = ino_split(parent);
	struct fuse_entry_param e;
	double left = fs->opts.ttl;
	struct intr in;
	int err;

	memset(&e, 0, sizeof(e));
	if (strlen(name) > 255) {
		fuse_reply_err(req, ENAMETOOLONG);
		return;
	}
	intr_begin(&in, req, fs);
	switch (p.kind) {
	case INO_K_ROOT:
		err = lookup_root(fs, name, &e, &left);
		break;
	case INO_K_REGION:
		err = lookup_region(fs, p.id, name, &e, &left);
		break;
	case INO_K_BYNAME:
		err = lookup_byname(fs, p.id, name, &e, &left);
		break;
	case INO_K_NODE:
	case INO_K_JSON:
	case INO_K_LINK:
		err = lookup_node(fs, &p, name, &e, &left);
		break;
	default:
		err = -ENOTDIR;
		break;
	}
	intr_end(&in);
	reply_lookup(req, err, &e, left);
}

static void op_forget(fuse_req_t req, fuse_ino_t ino, uint64_t nlookup)
{
	(void)ino;
	(void)nlookup;
	fuse_reply_none(req); /* inode numbers are computed, not stored */
}

static void op_forget_multi(fuse_req_t req, size_t count, struct fuse_forget_data *forgets)
{
	(void)count;
	(void)forgets;
	fuse_reply_none(req);
}

static void op_getattr(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	struct fsops *fs = fuse_req_userdata(req);
	struct stat st;
	double left;
	struct intr in;
	int err;

	(void)fi;
	intr_begin(&in, req, fs);
	err = ino_attr(fs, ino, &st, &left);
	intr_end(&in);
	if (err)
		fuse_reply_err(req, -err);
	else
		fuse_reply_attr(req, &st, left);
}

/* ---- directories ---- */

/* What one directory read walks: entries in ascending key order, where a
 * key is a region id, an image number (in a region; not its slot, which may
 * be reclaimed and its image come back under another one), a name's hash
 * (in .by-name, where a name may pass from one image to another) or a
 * child's index. An entry's offset
 * is its key + 3 (0-2 are the start, "." and ".."), and a read at offset off
 * resumes at the first key >= off - 2: a listing that changes between two
 * reads then neither skips nor repeats an entry that is in both. */
struct dirview {
	struct ino_parts p;
	struct stat self;
	double left;
	struct cache_ids *ids;	   /* the root and regions */
	struct cache_names *names; /* .by-name */
	struct cache_image img;	   /* an image's directory */
	uint32_t count;
};

/* Takes the directory's current listing: a read from the start may fetch
 * (ttl), one that resumes takes whatever is held, so that one directory read
 * costs at most one listing. */
static int view_open(struct fsops *fs, fuse_ino_t ino, off_t off, struct dirview *v)
{
	int held = off > 2;
	int err = 0;

	memset(v, 0, sizeof(*v));
	v->p = ino_split(ino);
	switch (v->p.kind) {
	case INO_K_ROOT:
		err = held ? cache_regions_held(fs->cache, &v->ids, &v->left)
			   : cache_regions(fs->cache, &v->ids, &v->left);
		if (!err)
			dir_attr(fs, ino, cache_regions_mtime(fs->cache), 1, &v->self);
		break;
	case INO_K_REGION:
		err = cache_listing(fs->cache, v->p.id, held, &v->ids, &v->left, NULL);
		if (!err)
			dir_attr(fs, ino, cache_listing_mtime(fs->cache, v->p.id), 1, &v->self);
		break;
	case INO_K_BYNAME:
		err = cache_by_name(fs->cache, v->p.id, held, &v->names, &v->left);
		if (!err)
			dir_attr(fs, ino, cache_listing_mtime(fs->cache, v->p.id), 2, &v->self);
		break;
	case INO_K_NODE:
		err = image_of(fs, &v->p, &v->img);
		if (!err && tree_kind(v->img.tree, v->p.node) != TREE_DIR) {
			tree_unref(v->img.tree);
			err = -ENOTDIR;
		}
		if (!err)
			node_attr(fs, &v->img, v->p.node, &v->self);
		break;
	default:
		err = -ENOTDIR;
		break;
	}
	if (err)
		return err;
	v->count = v->ids     ? v->ids->n
		   : v->names ? cache_names_count(v->names)
			      : tree_nchildren(v->img.tree, v->p.node);
	return 0;
}

static void view_close(struct fsops *fs, fuse_ino_t ino, struct dirview *v)
{
	if (v->ids)
		cache_ids_unref(fs->cache, v->ids);
	if (v->names)
		cache_names_unref(fs->cache, v->names);
	tree_unref(v->img.tree);
	if (v->p.kind != INO_K_NODE)
		listing_served(fs, ino, v->left);
}

/* The position of the first entry whose key is >= key. */
static uint32_t view_from(const struct dirview *v, uint64_t key)
{
	if (v->ids)
		return cache_ids_from(v->ids, key);
	if (v->names)
		return cache_names_from(v->names, key);
	return key < v->count ? (uint32_t)key : v->count;
}

/* Entry k: its key, its name (into buf) and its attributes. 0, or -ENOENT
 * for an entry to pass over (an image listed but gone since). */
static int view_entry(struct fsops *fs, struct dirview *v, uint32_t k, uint64_t *key, char *buf,
		      size_t len, struct fuse_entry_param *e)
{
	struct cache_image img;
	uint32_t i, id, child;

	memset(e, 0, sizeof(*e));
	switch (v->p.kind) {
	case INO_K_ROOT:
		id = v->ids->sorted[k];
		*key = v->ids->keys[k];
		snprintf(buf, len, "%s", cache_region_code(fs->cache, id));
		e->ino = ino_region(id);
		dir_attr(fs, e->ino, cache_listing_mtime(fs->cache, id), 1, &e->attr);
		set_timeouts(e, v->left);
		return 0;
	case INO_K_REGION:
		*key = v->ids->keys[k];
		if (cache_image_get(fs->cache, v->ids->sorted[k], -1, &img) != 0)
			return -ENOENT;
		snprintf(buf, len, "%s", img.no);
		node_attr(fs, &img, 0, &e->attr);
		e->ino = ino_image(img.slot, img.gen, 0);
		set_timeouts(e, img.ttl_left);
		tree_unref(img.tree);
		return 0;
	case INO_K_BYNAME:
		i = cache_names_by_key(v->names, k, key);
		snprintf(buf, len, "%s", cache_names_name(v->names, i));
		return link_attr(fs, cache_names_slot(v->names, i), -1, e);
	default:
		*key = k;
		child = tree_child(v->img.tree, v->p.node, k);
		snprintf(buf, len, "%s", tree_name(v->img.tree, child));
		node_attr(fs, &v->img, child, &e->attr);
		e->ino = ino_image(v->img.slot, v->img.gen, child);
		set_timeouts(e, v->img.ttl_left);
		return 0;
	}
}

struct dirbuf {
	fuse_req_t req;
	int plus;
	char *buf;
	size_t size, used;
};

/* Adds one entry; returns 1 when the buffer is full. */
static int emit(struct dirbuf *d, const char *name, const struct fuse_entry_param *e, off_t next)
{
	size_t room = d->size - d->used, n;

	if (d->plus)
		n = fuse_add_direntry_plus(d->req, d->buf + d->used, room, name, e, next);
	else
		n = fuse_add_direntry(d->req, d->buf + d->used, room, name, &e->attr, next);
	if (n > room)
		return 1;
	d->used += n;
	return 0;
}

/* Fills d from offset off: ".", "..", then the entries. */
static void fill_dir(struct fsops *fs, struct dirview *v, struct dirbuf *d, off_t off)
{
	struct fuse_entry_param e;
	char name[256];
	uint64_t key;

	memset(&e, 0, sizeof(e));
	e.attr = v->self;
	if (off < 1 && emit(d, ".", &e, 1))
		return;
	if (off < 2 && emit(d, "..", &e, 2))
		return;
	for (uint32_t k = off > 2 ? view_from(v, (uint64_t)off - 2) : 0; k < v->count; k++) {
		if (view_entry(fs, v, k, &key, name, sizeof(name), &e) != 0)
			continue;
		if (emit(d, name, &e, (off_t)key + 3))
			return;
	}
}

static void do_readdir(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off, int plus)
{
	struct fsops *fs = fuse_req_userdata(req);
	struct dirbuf d = { req, plus, malloc(size ? size : 1), size, 0 };
	struct dirview v;
	struct intr in;
	int err;

	if (!d.buf) {
		fuse_reply_err(req, ENOMEM);
		return;
	}
	intr_begin(&in, req, fs);
	err = view_open(fs, ino, off < 0 ? 0 : off, &v);
	if (!err) {
		fill_dir(fs, &v, &d, off < 0 ? 0 : off);
		view_close(fs, ino, &v);
	}
	intr_end(&in);
	if (err)
		fuse_reply_err(req, -err);
	else
		fuse_reply_buf(req, d.buf, d.used);
	free(d.buf);
}

static void op_readdir(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
		       struct fuse_file_info *fi)
{
	(void)fi;
	do_readdir(req, ino, size, off, 0);
}

static void op_readdirplus(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
			   struct fuse_file_info *fi)
{
	(void)fi;
	do_readdir(req, ino, size, off, 1);
}

/* ---- files ---- */

static void op_open(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	struct fsops *fs = fuse_req_userdata(req);

	(void)ino;
	if (fs->no_open) {
		fuse_reply_err(req, ENOSYS); /* and the kernel stops asking */
		return;
	}
	if ((fi->flags & O_ACCMODE) != O_RDONLY) {
		fuse_reply_err(req, EROFS);
		return;
	}
	fi->keep_cache = 0; /* caching is off: read afresh on each open */
	fi->noflush = 1;
	fuse_reply_open(req, fi);
}

static void op_opendir(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	struct fsops *fs = fuse_req_userdata(req);

	(void)ino;
	if (fs->no_open) {
		fuse_reply_err(req, ENOSYS);
		return;
	}
	fi->cache_readdir = 0;
	fuse_reply_open(req, fi);
}

static void op_release(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	(void)ino;
	(void)fi;
	fuse_reply_err(req, 0);
}

static void op_flush(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	(void)ino;
	(void)fi;
	fuse_reply_err(req, ENOSYS); /* nothing to flush; the kernel stops asking */
}

static void read_regjson(fuse_req_t req, struct fsops *fs, const struct ino_parts *p, size_t size,
			 off_t off)
{
	struct regdoc *d;
	char *buf = NULL;
	size_t len = 0;
	struct intr in;
	int err;

	intr_begin(&in, req, fs);
	err = off < 0 ? -EINVAL : regdoc_of(fs, p, &d);
	intr_end(&in);
	if (!err) {
		buf = malloc(size ? size : 1);
		err = buf ? regdoc_read(d, (uint64_t)off, size, buf, &len) : -ENOMEM;
		regdoc_unref(fs, d);
	}
	if (err)
		fuse_reply_err(req, -err);
	else
		fuse_reply_buf(req, buf, len);
	free(buf);
}

static void op_read(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
		    struct fuse_file_info *fi)
{
	struct fsops *fs = fuse_req_userdata(req);
	struct ino_parts p = ino_split(ino);
	struct cache_image img;
	char *buf = NULL;
	size_t len = 0;
	int err;

	(void)fi;
	if (p.kind == INO_K_STATS) {
		pthread_mutex_lock(&fs->lock);
		reply_slice(req, fs->stats, fs->stats_len, off, size);
		pthread_mutex_unlock(&fs->lock);
		return;
	}
	if (p.kind == INO_K_REGJSON) {
		read_regjson(req, fs, &p, size, off);
		return;
	}
	if (p.kind != INO_K_NODE && p.kind != INO_K_JSON) {
		fuse_reply_err(req, p.kind == INO_K_LINK ? EINVAL : EISDIR);
		return;
	}
	err = image_of(fs, &p, &img);
	if (err) {
		fuse_reply_err(req, -err);
		return;
	}
	if (p.kind == INO_K_JSON) {
		buf = tree_json_text(img.tree, &len);
		err = buf ? 0 : -ENOMEM;
	} else if (tree_kind(img.tree, p.node) == TREE_DIR) {
		err = -EISDIR;
	} else if (off < 0) {
		err = -EINVAL;
	} else {
		buf = malloc(size ? size : 1);
		err = buf ? 0 : -ENOMEM;
		if (buf)
			len = tree_read(img.tree, p.node, (size_t)off, buf, size);
		off = 0; /* buf holds the requested part already */
	}
	if (err)
		fuse_reply_err(req, -err);
	else
		reply_slice(req, buf, len, off, size);
	free(buf);
	tree_unref(img.tree);
}

/* ---- extended attributes ---- */

/* The codeName of ino, if it is a common-code file (a new string), or NULL. */
static char *codename_of(struct fsops *fs, fuse_ino_t ino, int *err)
{
	struct ino_parts p = ino_split(ino);
	struct cache_image img;
	char *name = NULL;

	*err = 0;
	if (p.kind != INO_K_NODE)
		return NULL;
	*err = image_of(fs, &p, &img);
	if (*err)
		return NULL;
	if (tree_codename(img.tree, p.node)) {
		name = strdup(tree_codename(img.tree, p.node));
		if (!name)
			*err = -ENOMEM;
	}
	tree_unref(img.tree);
	return name;
}

/* Answers an xattr-style request: the size when size is 0, else the value. */
static void reply_xattr(fuse_req_t req, const char *value, size_t len, size_t size)
{
	if (size == 0)
		fuse_reply_xattr(req, len);
	else if (size < len)
		fuse_reply_err(req, ERANGE);
	else
		fuse_reply_buf(req, value, len);
}

/* The age of the answer a directory shows: the region list for the root,
 * the listing for a region, the image for an image's directory. 0, or
 * -ENOENT (no such answer yet, or not such a directory). */
static int age_of(struct fsops *fs, fuse_ino_t ino, struct cache_age *age)
{
	struct ino_parts p = ino_split(ino);

	switch (p.kind) {
	case INO_K_ROOT:
		return cache_age(fs->cache, CACHE_AGE_REGIONS, 0, 0, age);
	case INO_K_REGION:
		return cache_age(fs->cache, CACHE_AGE_LISTING, p.id, 0, age);
	case INO_K_NODE:
		return p.node == 0 ? cache_age(fs->cache, CACHE_AGE_IMAGE, p.slot, p.gen, age)
				   : -ENOENT;
	default:
		return -ENOENT;
	}
}

/* user.ncp.fetched (RFC 3339, UTC) or user.ncp.state of ino, into buf. */
static int age_value(struct fsops *fs, fuse_ino_t ino, const char *name, char *buf, size_t len)
{
	static const char *const states[] = { "fresh", "refreshing", "stale" };
	struct cache_age age;
	time_t t;
	struct tm tm;

	if (age_of(fs, ino, &age) < 0)
		return -ENODATA;
	if (strcmp(name, XATTR_STATE) == 0) {
		snprintf(buf, len, "%s", states[age.state]);
		return 0;
	}
	t = (time_t)age.fetched;
	if (!gmtime_r(&t, &tm) || strftime(buf, len, "%Y-%m-%dT%H:%M:%SZ", &tm) == 0)
		return -EIO;
	return 0;
}

static void op_getxattr(fuse_req_t req, fuse_ino_t ino, const char *name, size_t size)
{
	struct fsops *fs = fuse_req_userdata(req);
	char *value = NULL, age[40];
	int err = 0;

	/* Only user.* names exist here. Saying that a namespace is not
	 * supported (rather than "no such attribute") lets ls -l stop asking
	 * for security.selinux and ACLs after the first file. */
	if (strncmp(name, "user.", 5) != 0) {
		fuse_reply_err(req, EOPNOTSUPP);
		return;
	}
	if (strcmp(name, XATTR_CODENAME) == 0) {
		value = codename_of(fs, ino, &err);
	} else if (strcmp(name, XATTR_FETCHED) == 0 || strcmp(name, XATTR_STATE) == 0) {
		err = age_value(fs, ino, name, age, sizeof(age));
		if (!err) {
			reply_xattr(req, age, strlen(age), size);
			return;
		}
	}
	if (err)
		fuse_reply_err(req, -err);
	else if (!value)
		fuse_reply_err(req, ENODATA);
	else
		reply_xattr(req, value, strlen(value), size);
	free(value);
}

static void op_listxattr(fuse_req_t req, fuse_ino_t ino, size_t size)
{
	static const char ages[] = XATTR_FETCHED "\0" XATTR_STATE;
	struct fsops *fs = fuse_req_userdata(req);
	struct cache_age age;
	int err;
	char *value = codename_of(fs, ino, &err);

	if (err)
		fuse_reply_err(req, -err);
	else if (value)
		reply_xattr(req, XATTR_CODENAME, sizeof(XATTR_CODENAME), size);
	else if (age_of(fs, ino, &age) == 0)
		reply_xattr(req, ages, sizeof(ages), size);
	else
		reply_xattr(req, "", 0, size);
	free(value);
}

/* ---- the rest ---- */

static void op_statfs(fuse_req_t req, fuse_ino_t ino)
{
	struct fsops *fs = fuse_req_userdata(req);
	struct statvfs sv;
	struct cache_stats cs;

	(void)ino;
	cache_get_stats(fs->cache, &cs);
	memset(&sv, 0, sizeof(sv));
	sv.f_bsize = 4096;
	sv.f_frsize = 4096;
	sv.f_blocks = (fsblkcnt_t)((cs.bytes + 4095) / 4096);
	sv.f_files = (fsfilcnt_t)cs.images;
	sv.f_namemax = 255;
	sv.f_flag = ST_RDONLY | ST_NOSUID | ST_NODEV;
	fuse_reply_statfs(req, &sv);
}

static void op_readlink(fuse_req_t req, fuse_ino_t ino)
{
	struct fsops *fs = fuse_req_userdata(req);
	struct ino_parts p = ino_split(ino);
	struct cache_image img;
	char target[32];

	if (p.kind != INO_K_LINK) {
		fuse_reply_err(req, EINVAL);
		return;
	}
	if (cache_image_get(fs->cache, p.slot, p.gen, &img) != 0) {
		fuse_reply_err(req, ESTALE);
		return;
	}
	snprintf(target, sizeof(target), "../%s", img.no);
	tree_unref(img.tree);
	fuse_reply_readlink(req, target);
}

static void op_init(void *userdata, struct fuse_conn_info *conn)
{
	struct fsops *fs = userdata;
	const unsigned want = FUSE_CAP_NO_OPEN_SUPPORT | FUSE_CAP_NO_OPENDIR_SUPPORT;

	/* With caching off, real opens let each one drop the page cache. */
	if (fs->opts.ttl > 0 && (conn->capable & want) == want) {
		conn->want |= want;
		fs->no_open = 1;
	}
	if (conn->capable & FUSE_CAP_READDIRPLUS)
		conn->want |= FUSE_CAP_READDIRPLUS;
	if (conn->capable & FUSE_CAP_CACHE_SYMLINKS)
		conn->want |= FUSE_CAP_CACHE_SYMLINKS; /* a link's target never changes */
	/* Lookups in one directory (many images of a region) must overlap. */
	if (conn->capable & FUSE_CAP_PARALLEL_DIROPS)
		conn->want |= FUSE_CAP_PARALLEL_DIROPS;
	conn->want &= ~(unsigned)FUSE_CAP_WRITEBACK_CACHE;
	log_msg(LOG_LVL_DEBUG,
		"kernel protocol %u.%u, capable %#x, want %#x, zero-round-trip opens %s",
		conn->proto_major, conn->proto_minor, conn->capable, conn->want,
		fs->no_open ? "on" : "off");
}

/* Every way of writing is refused; the mount is read-only as well. */
static void erofs(fuse_req_t req)
{
	fuse_reply_err(req, EROFS);
}

static void op_setattr(fuse_req_t req, fuse_ino_t ino, struct stat *attr, int to_set,
		       struct fuse_file_info *fi)
{
	(void)ino, (void)attr, (void)to_set, (void)fi;
	erofs(req);
}

static void op_mknod(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode, dev_t rdev)
{
	(void)parent, (void)name, (void)mode, (void)rdev;
	erofs(req);
}

static void op_mkdir(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode)
{
	(void)parent, (void)name, (void)mode;
	erofs(req);
}

static void op_unlink(fuse_req_t req, fuse_ino_t parent, const char *name)
{
	(void)parent, (void)name;
	erofs(req);
}

static void op_symlink(fuse_req_t req, const char *link, fuse_ino_t parent, const char *name)
{
	(void)link, (void)parent, (void)name;
	erofs(req);
}

static void op_rename(fuse_req_t req, fuse_ino_t parent, const char *name, fuse_ino_t newparent,
		      const char *newname, unsigned int flags)
{
	(void)parent, (void)name, (void)newparent, (void)newname, (void)flags;
	erofs(req);
}

static void op_link(fuse_req_t req, fuse_ino_t ino, fuse_ino_t newparent, const char *newname)
{
	(void)ino, (void)newparent, (void)newname;
	erofs(req);
}

static void op_write(fuse_req_t req, fuse_ino_t ino, const char *buf, size_t size, off_t off,
		     struct fuse_file_info *fi)
{
	(void)ino, (void)buf, (void)size, (void)off, (void)fi;
	erofs(req);
}

static void op_create(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode,
		      struct fuse_file_info *fi)
{
	(void)parent, (void)name, (void)mode, (void)fi;
	erofs(req);
}

static void op_setxattr(fuse_req_t req, fuse_ino_t ino, const char *name, const char *value,
			size_t size, int flags)
{
	(void)ino, (void)name, (void)value, (void)size, (void)flags;
	erofs(req);
}

static void op_removexattr(fuse_req_t req, fuse_ino_t ino, const char *name)
{
	(void)ino, (void)name;
	erofs(req);
}

static void op_fallocate(fuse_req_t req, fuse_ino_t ino, int mode, off_t offset, off_t length,
			 struct fuse_file_info *fi)
{
	(void)ino, (void)mode, (void)offset, (void)length, (void)fi;
	erofs(req);
}

static const struct fuse_lowlevel_ops ops = {
	.init = op_init,
	.lookup = op_lookup,
	.forget = op_forget,
	.forget_multi = op_forget_multi,
	.getattr = op_getattr,
	.readlink = op_readlink,
	.open = op_open,
	.read = op_read,
	.flush = op_flush,
	.release = op_release,
	.opendir = op_opendir,
	.readdir = op_readdir,
	.readdirplus = op_readdirplus,
	.releasedir = op_release,
	.statfs = op_statfs,
	.getxattr = op_getxattr,
	.listxattr = op_listxattr,
	.setattr = op_setattr,
	.mknod = op_mknod,
	.mkdir = op_mkdir,
	.unlink = op_unlink,
	.rmdir = op_unlink,
	.symlink = op_symlink,
	.rename = op_rename,
	.link = op_link,
	.write = op_write,
	.create = op_create,
	.setxattr = op_setxattr,
	.removexattr = op_removexattr,
	.fallocate = op_fallocate,
};

const struct fuse_lowlevel_ops *fsops_ops(void)
{
	return &ops;
}

struct fsops *fsops_new(const struct cache_source *src, struct ncp_client *client,
			const struct fsops_opts *opts)
{
	struct fsops *fs = calloc(1, sizeof(*fs));
	struct cache_opts co = { opts->ttl,	 opts->negative_ttl, opts->stale,
				 opts->busy_ttl, opts->workers,	     opts->refresh };

	if (!fs)
		return NULL;
	fs->opts = *opts;
	fs->client = client;
	fs->started = now_mono();
	fs->next_scan = fs->started + scan_interval(fs);
	fs->uid = getuid();
	fs->gid = getgid();
	pthread_mutex_init(&fs->lock, NULL);
	pthread_cond_init(&fs->cond, NULL);
	pthread_cond_init(&fs->drained, NULL);
	fs->cache = cache_new(src, &co, on_change, fs);
	if (!fs->cache) {
		fsops_free(fs);
		return NULL;
	}
	return fs;
}

int fsops_start(struct fsops *fs, struct fuse_session *se, const char *mountpoint)
{
	fs->se = se;
	fs->mountpoint = mountpoint ? strdup(mountpoint) : NULL;
	if (mountpoint && !fs->mountpoint)
		return -1;
	if (pthread_create(&fs->thread, NULL, notifier, fs) != 0)
		return -1;
	pthread_mutex_lock(&fs->lock);
	fs->running = 1; /* read by fsops_drop_caches (the SIGHUP thread) */
	pthread_mutex_unlock(&fs->lock);
	return 0;
}

/* The kernel's id of the connection mounted at mountpoint, from
 * /proc/self/mountinfo ("major:minor" of a fuse.ncloudfs mount): 0 or -1. */
static int connection_of(const char *mountpoint, unsigned *major_out, unsigned *minor_out)
{
	FILE *f = fopen("/proc/self/mountinfo", "re");
	char *line = NULL, point[4096], type[64];
	size_t cap = 0;
	int found = -1;

	if (!f)
		return -1;
	while (found < 0 && getline(&line, &cap, f) > 0) {
		unsigned maj, mnr;
		char *dash = strstr(line, " - ");

		if (!dash || sscanf(line, "%*u %*u %u:%u %*s %4095s", &maj, &mnr, point) != 3 ||
		    sscanf(dash + 3, "%63s", type) != 1)
			continue;
		/* Mount points are written with octal escapes (\040 for a space). */
		for (char *r = point, *w = point;; r++, w++) {
			if (r[0] == '\\' && r[1] >= '0' && r[1] <= '3' && r[2] && r[3]) {
				*w = (char)((r[1] - '0') * 64 + (r[2] - '0') * 8 + (r[3] - '0'));
				r += 3;
			} else {
				*w = *r;
			}
			if (!*r)
				break;
		}
		if (strcmp(point, mountpoint) == 0 && strncmp(type, "fuse", 4) == 0) {
			*major_out = maj;
			*minor_out = mnr;
			found = 0;
		}
	}
	free(line);
	fclose(f);
	return found;
}

/* Ends the connection so that the kernel fails what it still has queued:
 * through fusectl when it is mounted, else by a forced unmount (root). */
static void abort_connection(struct fsops *fs)
{
	unsigned maj, mnr;
	char path[96];
	int fd;

	if (!fs->mountpoint)
		return;
	if (connection_of(fs->mountpoint, &maj, &mnr) == 0) {
		snprintf(path, sizeof(path), "/sys/fs/fuse/connections/%u/abort",
			 (maj << 20) | mnr);
		fd = open(path, O_WRONLY | O_CLOEXEC);
		if (fd >= 0) {
			ssize_t n = write(fd, "1", 1);

			close(fd);
			if (n == 1)
				return;
		}
	}
	if (umount2(fs->mountpoint, MNT_FORCE | MNT_DETACH) < 0)
		log_msg(LOG_LVL_DEBUG, "cannot end the connection at %s: %s", fs->mountpoint,
			strerror(errno));
}

void fsops_stop(struct fsops *fs)
{
	double deadline;
	int done;

	pthread_mutex_lock(&fs->lock);
	if (!fs->running) {
		pthread_mutex_unlock(&fs->lock);
		return;
	}
	atomic_store(&fs->stopping, 1);
	pthread_cond_signal(&fs->cond);
	pthread_cond_broadcast(&fs->drained);
	/* A note about a directory waits in the kernel while lookups in it are
	 * queued, and nobody answers them any more: if the notifier does not
	 * come back soon, end the connection, which fails them. */
	deadline = now_mono() + STOP_WAIT_S;
	while (!fs->done && now_mono() < deadline)
		timed_wait(&fs->drained, &fs->lock, deadline - now_mono());
	done = fs->done;
	pthread_mutex_unlock(&fs->lock);
	if (!done) {
		log_msg(LOG_LVL_INFO, "the kernel holds a notification; ending the connection");
		abort_connection(fs);
	}
	pthread_join(fs->thread, NULL);
	pthread_mutex_lock(&fs->lock);
	fs->running = 0;
	pthread_mutex_unlock(&fs->lock);
}

void fsops_free(struct fsops *fs)
{
	if (!fs)
		return;
	if (fs->cache)
		cache_close(fs->cache); /* no fetch lands on what goes next */
	for (uint32_t r = 0; r < MAX_REGIONS; r++) {
		regdoc_unref(fs, fs->regdoc[r]);
		regdoc_unref(fs, fs->regdoc_prev[r]);
	}
	cache_free(fs->cache);
	free(fs->notes);
	free(fs->stats);
	free(fs->mountpoint);
	pthread_cond_destroy(&fs->cond);
	pthread_cond_destroy(&fs->drained);
	pthread_mutex_destroy(&fs->lock);
	free(fs);
}

void fsops_drop_caches(struct fsops *fs)
{
	cache_drop_all(fs->cache);
	/* Return once the kernel has been told, so that "dropped" means it. */
	pthread_mutex_lock(&fs->lock);
	while (fs->running && !atomic_load(&fs->stopping) && (fs->nnotes || fs->sending))
		pthread_cond_wait(&fs->drained, &fs->lock);
	pthread_mutex_unlock(&fs->lock);
}

struct cache *fsops_cache(struct fsops *fs)
{
	return fs->cache;
}
