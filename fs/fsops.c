/* fsops.c: the tree as the kernel sees it, through libfuse's low-level API.
 *
 * Inode numbers carry their own meaning, so no inode table is kept: 1 is the
 * root, 0x10000 + id a region, and an image's nodes are
 *   bit 63 | slot << 34 | generation << 18 | node
 * (node 0x3FFFF being <no>.json). An image's generation changes whenever its
 * data does, so the kernel may keep entries, attributes and pages for the
 * whole TTL (entry and attribute timeouts are the time left on the data) and
 * still never show old data as new: changed data arrives under new inodes.
 * Open, opendir and flush answer ENOSYS, so warm reads make no round trip at
 * all. The root and region directories keep their numbers, so their cached
 * listings are dropped explicitly: when they change and when their TTL ends. */
#include "fsops.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <time.h>
#include <unistd.h>

#include "log.h"

#define INO_ROOT 1ull
#define INO_STATS 2ull /* /.stats */
#define INO_REGION 0x10000ull
#define INO_BYNAME 0x20000ull /* <region>/.by-name */
#define INO_IMAGE (1ull << 63)
#define NODE_BITS 18
#define GEN_BITS 16
#define NODE_JSON ((1u << NODE_BITS) - 1)
#define NODE_LINK ((1u << NODE_BITS) - 2) /* the image's .by-name link */
#define SLOT_MAX (1u << 29)
#define MAX_REGIONS 256
#define MAX_DIRS (1 + 2 * MAX_REGIONS) /* the root, every region and its .by-name */
#define BYNAME ".by-name"
#define STATS ".stats"
#define XATTR_CODENAME "user.ncp.codeName"

/* A note for the kernel: drop an inode's cached data, or a name's entry. */
struct note {
	fuse_ino_t ino;
	char name[32]; /* empty: the inode itself */
};

struct fsops {
	struct cache *cache;
	struct ncp_client *client;
	double started; /* monotonic, for the uptime in /.stats */
	struct fsops_opts opts;
	uid_t uid;
	gid_t gid;
	int no_open; /* the kernel agreed to go without open/opendir */

	struct fuse_session *se;
	pthread_t thread;
	int running, stopping;
	pthread_mutex_t lock; /* guards what follows; taken after the cache lock */
	pthread_cond_t cond;
	struct note *notes;
	size_t nnotes, notes_cap;
	int sending;		     /* the notifier is telling the kernel a batch */
	pthread_cond_t drained;	     /* signalled when no note is queued or being sent */
	double dir_expiry[MAX_DIRS]; /* when a directory's cached listing goes stale */
	char *stats;		     /* the /.stats text last made (by lookup or getattr) */
	size_t stats_len;
};

static double now_mono(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

/* ---- inode numbers ---- */

static fuse_ino_t region_ino(uint32_t region)
{
	return INO_REGION + region;
}

static int is_region_ino(fuse_ino_t ino)
{
	return ino >= INO_REGION && ino < INO_REGION + MAX_REGIONS;
}

static fuse_ino_t byname_ino(uint32_t region)
{
	return INO_BYNAME + region;
}

static int is_byname_ino(fuse_ino_t ino)
{
	return ino >= INO_BYNAME && ino < INO_BYNAME + MAX_REGIONS;
}

static fuse_ino_t image_ino(uint32_t slot, uint16_t gen, uint32_t node)
{
	return INO_IMAGE | (uint64_t)slot << (GEN_BITS + NODE_BITS) | (uint64_t)gen << NODE_BITS |
	       node;
}

static void split_image_ino(fuse_ino_t ino, uint32_t *slot, uint16_t *gen, uint32_t *node)
{
	*slot = (uint32_t)((ino & ~INO_IMAGE) >> (GEN_BITS + NODE_BITS));
	*gen = (uint16_t)(ino >> NODE_BITS);
	*node = (uint32_t)(ino & NODE_JSON);
}

/* The node part of an image inode number. */
static uint32_t ino_node(fuse_ino_t ino)
{
	return (uint32_t)(ino & NODE_JSON);
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

static void on_change(void *arg, enum cache_change what, uint32_t region, const char *name)
{
	struct fsops *fs = arg;
	char json[32];

	switch (what) {
	case CACHE_REGIONS_CHANGED:
		queue_note(fs, INO_ROOT, NULL);
		break;
	case CACHE_LISTING_CHANGED:
		queue_note(fs, region_ino(region), NULL);
		queue_note(fs, byname_ino(region), NULL);
		queue_note(fs, INO_ROOT, name);
		break;
	case CACHE_IMAGE_CHANGED:
		snprintf(json, sizeof(json), "%s.json", name);
		queue_note(fs, region_ino(region), name);
		queue_note(fs, region_ino(region), json);
		break;
	}
}

static int dir_index(fuse_ino_t ino)
{
	if (ino == INO_ROOT)
		return 0;
	if (is_byname_ino(ino))
		return 1 + MAX_REGIONS + (int)(ino - INO_BYNAME);
	return 1 + (int)(ino - INO_REGION);
}

static fuse_ino_t dir_ino(int index)
{
	if (index == 0)
		return INO_ROOT;
	if (index > MAX_REGIONS)
		return byname_ino((uint32_t)(index - 1 - MAX_REGIONS));
	return region_ino((uint32_t)index - 1);
}

/* The kernel now holds a listing of dir that goes stale in `left` seconds. */
static void listing_served(struct fsops *fs, fuse_ino_t dir, double left)
{
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

static void *notifier(void *arg)
{
	struct fsops *fs = arg;
	struct note expired[MAX_DIRS];

	pthread_mutex_lock(&fs->lock);
	while (!fs->stopping) {
		size_t nexp = 0, nnotes = fs->nnotes;
		struct note *notes = fs->notes;
		double next = take_expired(fs, expired, &nexp);

		if (nnotes || nexp) {
			fs->notes = NULL;
			fs->nnotes = fs->notes_cap = 0;
			fs->sending = 1;
			pthread_mutex_unlock(&fs->lock);
			for (size_t i = 0; i < nnotes; i++)
				send_note(fs, &notes[i]);
			for (size_t i = 0; i < nexp; i++)
				send_note(fs, &expired[i]);
			free(notes);
			pthread_mutex_lock(&fs->lock);
			fs->sending = 0;
			if (!fs->nnotes)
				pthread_cond_broadcast(&fs->drained);
			continue;
		}
		struct timespec until;
		struct timespec mono_now, real_now;
		double wait;

		clock_gettime(CLOCK_MONOTONIC, &mono_now);
		clock_gettime(CLOCK_REALTIME, &real_now);
		wait = next - ((double)mono_now.tv_sec + mono_now.tv_nsec / 1e9);
		if (wait < 0.001)
			wait = 0.001;
		until.tv_sec = real_now.tv_sec + (time_t)wait;
		until.tv_nsec = real_now.tv_nsec + (long)((wait - (double)(time_t)wait) * 1e9);
		if (until.tv_nsec >= 1000000000L) {
			until.tv_sec++;
			until.tv_nsec -= 1000000000L;
		}
		pthread_cond_timedwait(&fs->cond, &fs->lock, &until);
	}
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

/* The data behind an image inode: 0 and *img (drop img->tree) with *node a
 * node of it or NODE_JSON, or -ESTALE when that generation or node is gone.
 * Not for .by-name links, which have no data of their own. */
static int image_of(struct fsops *fs, fuse_ino_t ino, struct cache_image *img, uint32_t *node)
{
	uint32_t slot;
	uint16_t gen;
	int err;

	split_image_ino(ino, &slot, &gen, node);
	err = cache_image_get(fs->cache, slot, gen, img);
	if (err)
		return err == -ENOENT ? -ESTALE : err;
	if (*node != NODE_JSON && *node >= tree_count(img->tree)) {
		tree_unref(img->tree);
		return -ESTALE;
	}
	return 0;
}

/* Replies with the part of text at off, up to size bytes. */
static void reply_slice(fuse_req_t req, const char *text, size_t len, off_t off, size_t size)
{
	if ((size_t)off >= len)
		fuse_reply_buf(req, NULL, 0);
	else
		fuse_reply_buf(req, text + off,
			       len - (size_t)off < size ? len - (size_t)off : size);
}

/* Attributes of node in img; -errno on failure. */
static int node_attr(struct fsops *fs, const struct cache_image *img, uint32_t node,
		     struct stat *st)
{
	fuse_ino_t ino = image_ino(img->slot, img->gen, node);
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
	ncp_client_stats(fs->client, &ns);
	fprintf(f, "uptime_seconds: %.0f\n", now_mono() - fs->started);
	for (int a = 0; a < NCP_NACTIONS; a++) {
		for (int o = 0; o < NCP_NOUTCOMES; o++)
			fprintf(f, "api_calls.%s.%s: %llu\n", ncp_action_name((enum ncp_action)a),
				ncp_outcome_name((enum ncp_outcome)o), ns.calls[a][o]);
	}
	fprintf(f, "api_retries: %llu\napi_bytes_received: %llu\napi_connections: %ld\n",
		ns.retries, ns.bytes_received, ns.connections);
	fprintf(f,
		"cache_hits: %llu\ncache_misses: %llu\ncache_coalesced: %llu\n"
		"cache_stale_serves: %llu\ncache_images: %llu\ncache_bytes: %llu\n",
		(unsigned long long)cs.hits, (unsigned long long)cs.misses,
		(unsigned long long)cs.coalesced, (unsigned long long)cs.stale,
		(unsigned long long)cs.images, (unsigned long long)cs.bytes);
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
	st->st_mode = S_IFREG | 0444;
	return 0;
}

static void link_target(struct fsops *fs, uint32_t slot, char *buf, size_t len)
{
	char no[24];

	snprintf(buf, len, "../%s", cache_slot_no(fs->cache, slot, no, sizeof(no)));
}

/* A .by-name link's attributes; its mtime is its image's. */
static void link_attr(struct fsops *fs, uint32_t slot, struct stat *st)
{
	struct cache_image img;
	int64_t mtime = 0;
	char target[32];

	if (cache_image_get(fs->cache, slot, -1, &img) == 0) {
		mtime = img.mtime;
		tree_unref(img.tree);
	}
	link_target(fs, slot, target, sizeof(target));
	file_attr(fs, image_ino(slot, 0, NODE_LINK), mtime, strlen(target), st);
	st->st_mode = S_IFLNK | 0777;
}

/* Attributes of any inode, with how long they hold. */
static int ino_attr(struct fsops *fs, fuse_ino_t ino, struct stat *st, double *left)
{
	*left = fs->opts.ttl;
	if (ino == INO_ROOT) {
		dir_attr(fs, ino, cache_regions_mtime(fs->cache), 1, st);
		return 0;
	}
	if (ino == INO_STATS) {
		*left = 0;
		return stats_attr(fs, st);
	}
	if (is_region_ino(ino)) {
		dir_attr(fs, ino, cache_listing_mtime(fs->cache, (uint32_t)(ino - INO_REGION)), 1,
			 st);
		return 0;
	}
	if (is_byname_ino(ino)) {
		dir_attr(fs, ino, cache_listing_mtime(fs->cache, (uint32_t)(ino - INO_BYNAME)), 2,
			 st);
		return 0;
	}
	if ((ino & INO_IMAGE) && ino_node(ino) == NODE_LINK) {
		uint32_t slot, node;
		uint16_t gen;

		split_image_ino(ino, &slot, &gen, &node);
		link_attr(fs, slot, st);
		return 0;
	}
	if (ino & INO_IMAGE) {
		struct cache_image img;
		uint32_t node;
		int err = image_of(fs, ino, &img, &node);

		if (err)
			return err;
		err = node_attr(fs, &img, node, st);
		*left = img.ttl_left;
		tree_unref(img.tree);
		return err;
	}
	return -ESTALE;
}

/* ---- lookup ---- */

static void reply_negative(fuse_req_t req, double left)
{
	struct fuse_entry_param e;

	memset(&e, 0, sizeof(e));
	set_timeouts(&e, left);
	fuse_reply_entry(req, &e);
}

static void lookup_root(struct fsops *fs, fuse_req_t req, const char *name)
{
	struct fuse_entry_param e;
	double left = fs->opts.ttl;
	uint32_t region;
	int err;

	memset(&e, 0, sizeof(e));
	if (strcmp(name, STATS) == 0) {
		err = stats_attr(fs, &e.attr);
		e.ino = INO_STATS;
		if (err)
			fuse_reply_err(req, -err);
		else
			fuse_reply_entry(req, &e); /* timeouts 0: asked again each time */
		return;
	}
	err = cache_region_find(fs->cache, name, &region, &left);
	if (err == -ENOENT) {
		reply_negative(req, left);
		return;
	}
	if (err) {
		fuse_reply_err(req, -err);
		return;
	}
	e.ino = region_ino(region);
	dir_attr(fs, e.ino, cache_listing_mtime(fs->cache, region), 1, &e.attr);
	set_timeouts(&e, left);
	fuse_reply_entry(req, &e);
}

static void lookup_region(struct fsops *fs, fuse_req_t req, uint32_t region, const char *name)
{
	struct fuse_entry_param e;
	struct cache_image img = { 0 };
	char no[24];
	size_t len = strlen(name);
	int json = len > 5 && strcmp(name + len - 5, ".json") == 0;
	int err;

	memset(&e, 0, sizeof(e));
	if (strcmp(name, BYNAME) == 0) {
		e.ino = byname_ino(region);
		dir_attr(fs, e.ino, cache_listing_mtime(fs->cache, region), 2, &e.attr);
		set_timeouts(&e, fs->opts.ttl);
		fuse_reply_entry(req, &e);
		return;
	}
	if ((json ? len - 5 : len) >= sizeof(no)) {
		reply_negative(req, fs->opts.ttl); /* longer than any image number */
		return;
	}
	snprintf(no, sizeof(no), "%.*s", (int)(json ? len - 5 : len), name);
	if (!cache_valid_image_no(no)) {
		reply_negative(req, fs->opts.ttl);
		return;
	}
	err = cache_image_lookup(fs->cache, region, no, &img);
	if (err == -ENOENT) {
		reply_negative(req, img.ttl_left);
		return;
	}
	if (!err && img.slot >= SLOT_MAX)
		err = -ENOMEM;
	if (!err)
		err = node_attr(fs, &img, json ? NODE_JSON : 0, &e.attr);
	if (err) {
		tree_unref(img.tree);
		fuse_reply_err(req, -err);
		return;
	}
	e.ino = image_ino(img.slot, img.gen, json ? NODE_JSON : 0);
	set_timeouts(&e, img.ttl_left);
	tree_unref(img.tree);
	fuse_reply_entry(req, &e);
}

static void lookup_image(struct fsops *fs, fuse_req_t req, fuse_ino_t parent, const char *name)
{
	struct fuse_entry_param e;
	struct cache_image img;
	uint32_t node, child;
	int err = image_of(fs, parent, &img, &node);

	if (err) {
		fuse_reply_err(req, -err);
		return;
	}
	memset(&e, 0, sizeof(e));
	if (node == NODE_JSON) {
		err = -ENOTDIR;
	} else if (tree_lookup(img.tree, node, name, &child) < 0) {
		tree_unref(img.tree);
		reply_negative(req, img.ttl_left);
		return;
	} else {
		err = node_attr(fs, &img, child, &e.attr);
		e.ino = image_ino(img.slot, img.gen, child);
		set_timeouts(&e, img.ttl_left);
	}
	tree_unref(img.tree);
	if (err)
		fuse_reply_err(req, -err);
	else
		fuse_reply_entry(req, &e);
}

static void lookup_byname(struct fsops *fs, fuse_req_t req, uint32_t region, const char *name)
{
	struct fuse_entry_param e;
	struct cache_names *names;
	double left;
	uint32_t i, slot;
	int err = cache_by_name(fs->cache, region, &names, &left);

	if (err) {
		fuse_reply_err(req, -err);
		return;
	}
	memset(&e, 0, sizeof(e));
	if (cache_names_find(names, name, &i) < 0) {
		cache_names_unref(fs->cache, names);
		reply_negative(req, left);
		return;
	}
	slot = cache_names_slot(names, i);
	cache_names_unref(fs->cache, names);
	link_attr(fs, slot, &e.attr);
	e.ino = image_ino(slot, 0, NODE_LINK);
	set_timeouts(&e, left);
	fuse_reply_entry(req, &e);
}

static void op_lookup(fuse_req_t req, fuse_ino_t parent, const char *name)
{
	struct fsops *fs = fuse_req_userdata(req);

	if (strlen(name) > 255)
		fuse_reply_err(req, ENAMETOOLONG);
	else if (parent == INO_ROOT)
		lookup_root(fs, req, name);
	else if (is_region_ino(parent))
		lookup_region(fs, req, (uint32_t)(parent - INO_REGION), name);
	else if (is_byname_ino(parent))
		lookup_byname(fs, req, (uint32_t)(parent - INO_BYNAME), name);
	else if (parent & INO_IMAGE)
		lookup_image(fs, req, parent, name);
	else
		fuse_reply_err(req, ENOENT);
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
	int err;

	(void)fi;
	err = ino_attr(fs, ino, &st, &left);
	if (err)
		fuse_reply_err(req, -err);
	else
		fuse_reply_attr(req, &st, left);
}

/* ---- directories ---- */

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

/* "." and ".." as entries 0 and 1; returns 1 when the buffer is full. */
static int emit_dots(struct dirbuf *d, off_t off, const struct stat *self)
{
	struct fuse_entry_param e;

	memset(&e, 0, sizeof(e));
	e.attr = *self;
	if (off < 1 && emit(d, ".", &e, 1))
		return 1;
	return off < 2 && emit(d, "..", &e, 2);
}

static int readdir_root(struct fsops *fs, struct dirbuf *d, off_t off)
{
	struct cache_ids *ids;
	struct fuse_entry_param e;
	struct stat self;
	double left;
	int err = cache_regions(fs->cache, &ids, &left);

	if (err)
		return err;
	dir_attr(fs, INO_ROOT, cache_regions_mtime(fs->cache), 1, &self);
	if (!emit_dots(d, off, &self)) {
		for (uint32_t i = off > 2 ? (uint32_t)off - 2 : 0; i < ids->n; i++) {
			memset(&e, 0, sizeof(e));
			e.ino = region_ino(ids->ids[i]);
			dir_attr(fs, e.ino, cache_listing_mtime(fs->cache, ids->ids[i]), 1,
				 &e.attr);
			set_timeouts(&e, left);
			if (emit(d, cache_region_code(fs->cache, ids->ids[i]), &e, (off_t)i + 3))
				break;
		}
	}
	cache_ids_unref(fs->cache, ids);
	if (fs->no_open)
		listing_served(fs, INO_ROOT, left);
	return 0;
}

static int readdir_region(struct fsops *fs, struct dirbuf *d, uint32_t region, off_t off)
{
	struct cache_ids *ids;
	struct fuse_entry_param e;
	struct stat self;
	double left;
	int err = cache_listing(fs->cache, region, &ids, &left);

	if (err)
		return err;
	dir_attr(fs, region_ino(region), cache_listing_mtime(fs->cache, region), 1, &self);
	if (!emit_dots(d, off, &self)) {
		for (uint32_t i = off > 2 ? (uint32_t)off - 2 : 0; i < ids->n; i++) {
			struct cache_image img;
			int full;

			memset(&e, 0, sizeof(e));
			if (cache_image_get(fs->cache, ids->ids[i], -1, &img) == 0 &&
			    ids->ids[i] < SLOT_MAX && node_attr(fs, &img, 0, &e.attr) == 0) {
				e.ino = image_ino(img.slot, img.gen, 0);
				set_timeouts(&e, img.ttl_left);
			} else {
				e.attr.st_mode = S_IFDIR; /* listed, but gone since: no entry */
			}
			full = emit(d, img.no, &e, (off_t)i + 3);
			tree_unref(img.tree);
			if (full)
				break;
		}
	}
	cache_ids_unref(fs->cache, ids);
	if (fs->no_open)
		listing_served(fs, region_ino(region), left);
	return 0;
}

static int readdir_byname(struct fsops *fs, struct dirbuf *d, uint32_t region, off_t off)
{
	struct fuse_entry_param e;
	struct cache_names *names;
	struct stat self;
	double left;
	int err = cache_by_name(fs->cache, region, &names, &left);

	if (err)
		return err;
	dir_attr(fs, byname_ino(region), cache_listing_mtime(fs->cache, region), 2, &self);
	if (!emit_dots(d, off, &self)) {
		for (uint32_t i = off > 2 ? (uint32_t)off - 2 : 0; i < cache_names_count(names);
		     i++) {
			uint32_t slot = cache_names_slot(names, i);

			memset(&e, 0, sizeof(e));
			link_attr(fs, slot, &e.attr);
			e.ino = image_ino(slot, 0, NODE_LINK);
			set_timeouts(&e, left);
			if (emit(d, cache_names_name(names, i), &e, (off_t)i + 3))
				break;
		}
	}
	cache_names_unref(fs->cache, names);
	if (fs->no_open)
		listing_served(fs, byname_ino(region), left);
	return 0;
}

static int readdir_image(struct fsops *fs, struct dirbuf *d, fuse_ino_t ino, off_t off)
{
	struct fuse_entry_param e;
	struct cache_image img;
	struct stat self;
	uint32_t node, n;
	int err = image_of(fs, ino, &img, &node);

	if (err)
		return err;
	if (node == NODE_JSON || tree_kind(img.tree, node) != TREE_DIR) {
		tree_unref(img.tree);
		return -ENOTDIR;
	}
	node_attr(fs, &img, node, &self);
	n = tree_nchildren(img.tree, node);
	if (!emit_dots(d, off, &self)) {
		for (uint32_t i = off > 2 ? (uint32_t)off - 2 : 0; i < n; i++) {
			uint32_t child = tree_child(img.tree, node, i);

			memset(&e, 0, sizeof(e));
			node_attr(fs, &img, child, &e.attr);
			e.ino = image_ino(img.slot, img.gen, child);
			set_timeouts(&e, img.ttl_left);
			if (emit(d, tree_name(img.tree, child), &e, (off_t)i + 3))
				break;
		}
	}
	tree_unref(img.tree);
	return 0;
}

static void do_readdir(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off, int plus)
{
	struct fsops *fs = fuse_req_userdata(req);
	struct dirbuf d = { req, plus, malloc(size), size, 0 };
	int err;

	if (!d.buf) {
		fuse_reply_err(req, ENOMEM);
		return;
	}
	if (ino == INO_ROOT)
		err = readdir_root(fs, &d, off);
	else if (is_region_ino(ino))
		err = readdir_region(fs, &d, (uint32_t)(ino - INO_REGION), off);
	else if (is_byname_ino(ino))
		err = readdir_byname(fs, &d, (uint32_t)(ino - INO_BYNAME), off);
	else if (ino & INO_IMAGE)
		err = readdir_image(fs, &d, ino, off);
	else
		err = -ENOTDIR;
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

static void op_read(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
		    struct fuse_file_info *fi)
{
	struct fsops *fs = fuse_req_userdata(req);
	struct cache_image img;
	uint32_t node;
	char *buf = NULL;
	size_t len = 0;
	int err;

	(void)fi;
	if (ino == INO_STATS) {
		pthread_mutex_lock(&fs->lock);
		reply_slice(req, fs->stats, fs->stats_len, off, size);
		pthread_mutex_unlock(&fs->lock);
		return;
	}
	if (!(ino & INO_IMAGE) || ino_node(ino) == NODE_LINK) {
		fuse_reply_err(req, !(ino & INO_IMAGE) ? EISDIR : EINVAL);
		return;
	}
	err = image_of(fs, ino, &img, &node);
	if (err) {
		fuse_reply_err(req, -err);
		return;
	}
	if (node == NODE_JSON) {
		buf = tree_json_text(img.tree, &len);
		err = buf ? 0 : -ENOMEM;
	} else if (tree_kind(img.tree, node) == TREE_DIR) {
		err = -EISDIR;
	} else {
		buf = malloc(size ? size : 1);
		err = buf ? 0 : -ENOMEM;
		if (buf)
			len = tree_read(img.tree, node, (size_t)off, buf, size);
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
	struct cache_image img;
	uint32_t node;
	char *name = NULL;

	*err = 0;
	if (!(ino & INO_IMAGE) || ino_node(ino) == NODE_LINK)
		return NULL;
	*err = image_of(fs, ino, &img, &node);
	if (*err)
		return NULL;
	if (node != NODE_JSON && tree_codename(img.tree, node))
		name = strdup(tree_codename(img.tree, node));
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

static void op_getxattr(fuse_req_t req, fuse_ino_t ino, const char *name, size_t size)
{
	struct fsops *fs = fuse_req_userdata(req);
	char *value = NULL;
	int err = 0;

	if (strcmp(name, XATTR_CODENAME) == 0)
		value = codename_of(fs, ino, &err);
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
	struct fsops *fs = fuse_req_userdata(req);
	int err;
	char *value = codename_of(fs, ino, &err);

	if (err)
		fuse_reply_err(req, -err);
	else if (value)
		reply_xattr(req, XATTR_CODENAME, sizeof(XATTR_CODENAME), size);
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
	uint32_t slot, node;
	uint16_t gen;
	char target[32];

	if (!(ino & INO_IMAGE)) {
		fuse_reply_err(req, EINVAL);
		return;
	}
	split_image_ino(ino, &slot, &gen, &node);
	if (node != NODE_LINK) {
		fuse_reply_err(req, EINVAL);
		return;
	}
	link_target(fs, slot, target, sizeof(target));
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

struct fsops *fsops_new(struct ncp_client *client, const struct fsops_opts *opts)
{
	struct fsops *fs = calloc(1, sizeof(*fs));
	struct cache_opts co = { opts->ttl, opts->negative_ttl, opts->stale };

	if (!fs)
		return NULL;
	fs->opts = *opts;
	fs->client = client;
	fs->started = now_mono();
	fs->uid = getuid();
	fs->gid = getgid();
	pthread_mutex_init(&fs->lock, NULL);
	pthread_cond_init(&fs->cond, NULL);
	pthread_cond_init(&fs->drained, NULL);
	fs->cache = cache_new(client, &co, on_change, fs);
	if (!fs->cache) {
		fsops_free(fs);
		return NULL;
	}
	return fs;
}

int fsops_start(struct fsops *fs, struct fuse_session *se)
{
	fs->se = se;
	if (pthread_create(&fs->thread, NULL, notifier, fs) != 0)
		return -1;
	fs->running = 1;
	return 0;
}

void fsops_stop(struct fsops *fs)
{
	if (!fs->running)
		return;
	pthread_mutex_lock(&fs->lock);
	fs->stopping = 1;
	pthread_cond_signal(&fs->cond);
	pthread_cond_broadcast(&fs->drained);
	pthread_mutex_unlock(&fs->lock);
	pthread_join(fs->thread, NULL);
	fs->running = 0;
}

void fsops_free(struct fsops *fs)
{
	if (!fs)
		return;
	cache_free(fs->cache);
	free(fs->notes);
	free(fs->stats);
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
	while (fs->running && !fs->stopping && (fs->nnotes || fs->sending))
		pthread_cond_wait(&fs->drained, &fs->lock);
	pthread_mutex_unlock(&fs->lock);
}

struct cache *fsops_cache(struct fsops *fs)
{
	return fs->cache;
}
