/* SPDX-License-Identifier: MIT */
/* test_cache.c: the cache and the inode layer with no network: a fake
 * account and clock (fakeapi.h) behind the cache's source, and fsops run
 * in-process (fakefuse.h). One test per behaviour that once went wrong:
 * .by-name names, flights across a growing slot table, inode numbers,
 * capped pages, readdir offsets, reclaiming, dropped caches. */
#include <errno.h>
#include <inttypes.h>
#include <jansson.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "fakeapi.h"
#include "fakefuse.h"
#include "inode.h"
#include "testhelp.h"

static struct fsops *mount_fake(struct fake_api *api, double ttl, double negative_ttl, double stale)
{
	struct cache_source src = fake_source(api);
	struct fsops_opts o = { .ttl = ttl, .negative_ttl = negative_ttl, .stale = stale };
	struct fsops *fs = fsops_new(&src, NULL, &o);

	if (!fs)
		abort();
	return fs;
}

static void put(struct fake_api *api, const char *region, uint64_t no, const char *name)
{
	char *json = fake_image_json(no, name, "UBUNTU", 1);

	fake_put(api, region, no, json);
	free(json);
}

static uint64_t region_ino_of(struct fsops *fs, const char *code)
{
	uint64_t ino = 0;

	CHECK(ff_lookup(fs, INO_ROOT, code, &ino, NULL) == 0);
	return ino;
}

/* Reads every .by-name entry: names unique, each link to an image whose
 * name is the entry's, or whose name~no it is. Returns the count. */
static size_t check_by_name(struct fsops *fs, struct fake_api *api, uint64_t region)
{
	struct ff_dirent *d;
	uint64_t dir = 0;
	size_t n = 0, entries = 0;

	(void)api;
	CHECK(ff_lookup(fs, region, ".by-name", &dir, NULL) == 0);
	CHECK(ff_readdir_all(fs, dir, 4096, 1, &d, &n) == 0);
	for (size_t i = 0; i < n; i++) {
		char target[64], path[64], *name = NULL;
		uint64_t link = 0, img = 0, node = 0;
		size_t len = 0;

		if (!strcmp(d[i].name, ".") || !strcmp(d[i].name, ".."))
			continue;
		entries++;
		for (size_t j = i + 1; j < n; j++)
			CHECK(strcmp(d[i].name, d[j].name) != 0);
		CHECK(strlen(d[i].name) <= 255);
		CHECK(ff_lookup(fs, dir, d[i].name, &link, NULL) == 0);
		CHECK(ff_readlink(fs, link, target, sizeof(target)) == 0);
		CHECK(strncmp(target, "../", 3) == 0);
		CHECK(ff_lookup(fs, region, target + 3, &img, NULL) == 0);
		CHECK(ff_lookup(fs, img, "serverImageName", &node, NULL) == 0);
		CHECK(ff_read(fs, node, 0, 4096, &name, &len) == 0);
		if (!name)
			continue;
		if (len)
			name[len - 1] = '\0'; /* the newline */
		snprintf(path, sizeof(path), "~%s", target + 3);
		if (strcmp(name, d[i].name) != 0) {
			size_t nl = strlen(d[i].name), sl = strlen(path);

			/* name~no, the name cut to fit */
			CHECK(nl > sl && strcmp(d[i].name + nl - sl, path) == 0);
			CHECK(strncmp(name, d[i].name, nl - sl) == 0);
		}
		free(name);
	}
	free(d);
	return entries;
}

/* Four images, two pairs sharing a 30-character name: the name pool once
 * overflowed here and the daemon aborted. */
static void test_by_name_shared_names(void)
{
	struct fake_api *api = fake_new();
	const char *a = "nightly-backup-web-2025-06-20", *b = "nightly-backup-db--2025-06-20";
	struct fsops *fs;
	uint64_t kr;

	fake_add_region(api, "KR");
	put(api, "KR", 101, a);
	put(api, "KR", 102, a);
	put(api, "KR", 103, b);
	put(api, "KR", 104, b);
	fs = mount_fake(api, 60, 5, 0);
	kr = region_ino_of(fs, "KR");
	CHECK(check_by_name(fs, api, kr) == 4);
	CHECK(ff_lookup(fs, ino_byname((uint32_t)(kr - INO_REGION)),
			"nightly-backup-web-2025-06-20~101", NULL, NULL) == 0);
	CHECK(ff_lookup(fs, ino_byname((uint32_t)(kr - INO_REGION)),
			"nightly-backup-web-2025-06-20", NULL, NULL) == -ENOENT);
	fsops_free(fs);
	fake_free(api);
}

/* "web" twice and an image really named "web~5": every name unique. */
static void test_by_name_collisions(void)
{
	struct fake_api *api = fake_new();
	struct fsops *fs;
	uint64_t kr, dir = 0, link = 0;
	char target[32];

	fake_add_region(api, "KR");
	put(api, "KR", 5, "web");
	put(api, "KR", 6, "web");
	put(api, "KR", 7, "web~5");
	put(api, "KR", 8, "web~5~7");
	fs = mount_fake(api, 60, 5, 0);
	kr = region_ino_of(fs, "KR");
	CHECK(check_by_name(fs, api, kr) == 4);
	CHECK(ff_lookup(fs, kr, ".by-name", &dir, NULL) == 0);
	CHECK(ff_lookup(fs, dir, "web~5", &link, NULL) == 0);
	CHECK(ff_readlink(fs, link, target, sizeof(target)) == 0);
	CHECK_STR(target, "../5");
	fsops_free(fs);
	fake_free(api);
}

/* Shared names of 255 bytes, non-ASCII, cut at a character boundary. */
static void test_by_name_long_names(void)
{
	struct fake_api *api = fake_new();
	char name[256] = "";
	struct fsops *fs;
	uint64_t kr;

	while (strlen(name) + 3 <= 255)
		strcat(name, "\xea\xb0\x80"); /* U+AC00, three bytes */
	fake_add_region(api, "KR");
	for (uint64_t no = 1000; no < 1010; no++)
		put(api, "KR", no, name);
	put(api, "KR", 2000, "\xed\x95\x9c\xea\xb8\x80 image");
	fs = mount_fake(api, 60, 5, 0);
	kr = region_ino_of(fs, "KR");
	CHECK(check_by_name(fs, api, kr) == 11);
	fsops_free(fs);
	fake_free(api);
}

struct lookup_arg {
	struct fsops *fs;
	uint64_t region;
	const char *name;
	int err;
	uint64_t ino;
};

static void *lookup_thread(void *p)
{
	struct lookup_arg *a = p;

	a->err = ff_lookup(a->fs, a->region, a->name, &a->ino, NULL);
	return NULL;
}

/* A reader waiting for another's fetch of an image while a big listing
 * lands (the slot table grows meanwhile): it gets the answer, once. */
static void test_flight_across_growth(void)
{
	struct fake_api *api = fake_new();
	struct lookup_arg a, b;
	pthread_t ta, tb;
	struct ff_dirent *d;
	struct cache_stats st;
	struct fsops *fs;
	uint64_t kr;
	size_t n;

	fake_add_region(api, "KR");
	for (uint64_t no = 1; no <= 5000; no++)
		put(api, "KR", 10000 + no, "many");
	put(api, "KR", 7, "late");
	fs = mount_fake(api, 60, 5, 0);
	kr = region_ino_of(fs, "KR");
	fake_gate(api, FAKE_DETAIL, 1);
	a = (struct lookup_arg){ fs, kr, "7", -1, 0 };
	b = a;
	pthread_create(&ta, NULL, lookup_thread, &a);
	fake_wait_gated(api, FAKE_DETAIL, 1);
	pthread_create(&tb, NULL, lookup_thread, &b);
	do {
		cache_get_stats(fsops_cache(fs), &st);
	} while (st.coalesced < 1); /* b waits on a's flight */
	CHECK(ff_readdir_all(fs, kr, 65536, 1, &d, &n) == 0);
	CHECK(n == 5001 + 2);
	free(d);
	fake_gate(api, FAKE_DETAIL, 0);
	pthread_join(ta, NULL);
	pthread_join(tb, NULL);
	CHECK(a.err == 0 && b.err == 0 && a.ino == b.ino);
	CHECK(fake_calls(api, FAKE_DETAIL) == 1);
	fsops_free(fs);
	fake_free(api);
}

/* Inode numbers: no node of the largest tree takes a reserved number. */
static void test_inode_layout(void)
{
	struct ino_parts p;

	CHECK(TREE_MAX_NODES - 1 < NODE_LINK);
	p = ino_split(ino_image(SLOT_MAX - 1, 65535, TREE_MAX_NODES - 1));
	CHECK(p.kind == INO_K_NODE && p.slot == SLOT_MAX - 1 && p.gen == 65535);
	CHECK(ino_split(ino_image(3, 1, NODE_LINK)).kind == INO_K_LINK);
	CHECK(ino_split(ino_image(3, 1, NODE_JSON)).kind == INO_K_JSON);
	CHECK(ino_split(ino_region(MAX_REGIONS - 1)).kind == INO_K_REGION);
	CHECK(ino_split(ino_byname(MAX_REGIONS - 1)).kind == INO_K_BYNAME);
	CHECK(ino_split(INO_REGION + MAX_REGIONS).kind == INO_K_NONE);
	CHECK(ino_split(INO_STATS).kind == INO_K_STATS);
	/* <region>.json: every region and generation, its own inode */
	p = ino_split(ino_regjson(MAX_REGIONS - 1, UINT32_MAX));
	CHECK(p.kind == INO_K_REGJSON && p.id == MAX_REGIONS - 1 && p.doc == UINT32_MAX);
	p = ino_split(ino_regjson(0, 1u << 24));
	CHECK(p.kind == INO_K_REGJSON && p.id == 0 && p.doc == 1u << 24);
	CHECK(ino_regjson(0, 1) != ino_regjson(0, 1 + (1u << 24)));
	CHECK(ino_split(3).kind == INO_K_NONE);
}

/* A tree with the most nodes allowed builds, one more does not. */
static void test_tree_limit(void)
{
	json_t *o = json_object(), *arr = json_array();
	char err[128];
	struct tree *t;

	/* node 0, the array, and its elements */
	for (uint32_t i = 0; i < TREE_MAX_NODES - 2; i++)
		json_array_append_new(arr, json_integer(i));
	json_object_set_new(o, "a", arr);
	t = tree_build(o, NULL, err, sizeof(err));
	CHECK(t && tree_count(t) == TREE_MAX_NODES);
	tree_unref(t);
	json_array_append_new(arr, json_integer(0));
	t = tree_build(o, NULL, err, sizeof(err));
	CHECK(t == NULL);
	json_decref(o);
}

/* A region KR of n images; the pages shaped as fake_pages says. */
static struct fake_api *region_of_n(uint64_t n)
{
	struct fake_api *api = fake_new();

	fake_add_region(api, "KR");
	for (uint64_t no = 1; no <= n; no++)
		put(api, "KR", no, "img");
	return api;
}

/* Lists KR on a new mount with pages shaped so: the entries (free them),
 * each name once. */
static size_t list_shaped(struct fake_api *api, long cap, int overlap, long total,
			  struct ff_dirent **d)
{
	struct fsops *fs;
	size_t n = 0;

	fake_pages(api, cap, overlap, total);
	fs = mount_fake(api, 60, 5, 0);
	CHECK(ff_readdir_all(fs, region_ino_of(fs, "KR"), 65536, 0, d, &n) == 0);
	for (size_t i = 0; i + 1 < n; i++) {
		for (size_t j = i + 1; j < n; j++)
			CHECK(strcmp((*d)[i].name, (*d)[j].name) != 0);
	}
	fsops_free(fs);
	return n;
}

/* A gateway that caps pages below pageSize: the listing goes on while
 * totalRows says more remain; an empty page ends a lying total. */
static void test_capped_pages(void)
{
	struct fake_api *api = region_of_n(250);
	struct ff_dirent *d;

	CHECK(list_shaped(api, 100, 0, 0, &d) == 252);
	CHECK(fake_calls(api, FAKE_LIST) == 3);
	free(d);
	/* totalRows lies: the first page, then one wave of pages fetched at
	 * once (three with rows, the rest empty), and no more */
	CHECK(list_shaped(api, 100, 0, 1000000, &d) == 252);
	CHECK(fake_calls(api, FAKE_LIST) == 3 + 1 + 16);
	free(d);
	/* a row shifting onto the next page is neither lost nor listed twice */
	CHECK(list_shaped(api, 100, 1, 0, &d) == 252);
	free(d);
	fake_free(api);
}

/* 10,000 images: the first page, then the other nine at once (the fake
 * takes 20 ms a call): ten calls, as one after another. A failing page
 * fails the listing, nothing installed and nothing leaked; the next read
 * lists afresh. */
static void test_pages_at_once(void)
{
	struct fake_api *api = region_of_n(10000);
	struct ff_dirent *d;

	fake_latency(api, 0.02);
	CHECK(list_shaped(api, 0, 0, 0, &d) == 10000 + 2);
	CHECK(fake_calls(api, FAKE_LIST) == 10);
	CHECK(fake_peak(api, FAKE_LIST) >= 2);
	free(d);
	fake_fail(api, FAKE_LIST, 1, NCP_ERR_IO);
	fake_latency(api, 0);
	{
		struct fsops *fs = mount_fake(api, 60, 5, 0);
		uint64_t kr = region_ino_of(fs, "KR");
		size_t n = 0;

		d = NULL;
		CHECK(ff_readdir_all(fs, kr, 65536, 0, &d, &n) == -EIO);
		free(d); /* what was read before the error, if anything */
		CHECK(ff_readdir_all(fs, kr, 65536, 0, &d, &n) == 0 && n == 10002);
		free(d);
		fsops_free(fs);
	}
	fake_free(api);
}

/* A gateway that ignores pageNo: the listing ends when a page brings no new
 * image, after the first page and the two fetched at once with it, not ten
 * thousand calls. */
static void test_stuck_pages(void)
{
	struct fake_api *api = region_of_n(2500);
	struct ff_dirent *d;

	CHECK(list_shaped(api, 0, -1, 0, &d) == 1000 + 2);
	CHECK(fake_calls(api, FAKE_LIST) == 3);
	free(d);
	fake_free(api);
}

/* A detail answer about another image is an error, not data. */
static void test_wrong_detail(void)
{
	struct fake_api *api = fake_new();
	struct fsops *fs;
	uint64_t kr;

	fake_add_region(api, "KR");
	put(api, "KR", 1, "one");
	put(api, "KR", 2, "two");
	fake_wrong_detail(api, 2);
	fs = mount_fake(api, 60, 5, 0);
	kr = region_ino_of(fs, "KR");
	CHECK(ff_lookup(fs, kr, "1", NULL, NULL) == -EIO);
	fake_wrong_detail(api, 0);
	CHECK(ff_lookup(fs, kr, "1", NULL, NULL) == 0);
	fsops_free(fs);
	fake_free(api);
}

/* With ttl=0, a directory read in small chunks costs one listing, and a
 * listing that changes between chunks neither skips nor repeats. */
/* Lists region code whole (so that its images take slots). */
static void check_listed(struct fsops *fs, const char *code)
{
	struct ff_dirent *d = NULL;
	size_t n = 0;
	uint64_t ino = 0;

	CHECK(ff_lookup(fs, INO_ROOT, code, &ino, NULL) == 0);
	CHECK(ff_readdir_all(fs, ino, 4096, 0, &d, &n) == 0);
	free(d);
}

/* Reads directory dir in calls of size bytes into all (at most max
 * entries), calling between(arg, round) after each call; checks that no
 * name came twice and returns the count. */
static size_t read_in_chunks(struct fsops *fs, uint64_t dir, size_t size, struct ff_dirent *all,
			     size_t max, void (*between)(void *, int), void *arg)
{
	struct ff_dirent chunk[64];
	size_t total = 0, n;
	int64_t off = 0;

	for (int round = 0;; round++) {
		CHECK(ff_readdir(fs, dir, size, off, 0, chunk, 64, &n) == 0);
		if (n == 0 || total + n > max)
			break;
		memcpy(all + total, chunk, n * sizeof(*chunk));
		total += n;
		off = chunk[n - 1].off;
		between(arg, round);
	}
	for (size_t i = 0; i < total; i++) {
		for (size_t j = i + 1; j < total; j++)
			CHECK(strcmp(all[i].name, all[j].name) != 0);
	}
	return total;
}

static void change_account(void *arg, int round)
{
	if (round == 3) {
		/* the account changes between two chunks */
		fake_delete(arg, "KR", 500);
		put(arg, "KR", 5000, "new");
	}
}

static void test_readdir_chunks(void)
{
	struct fake_api *api = region_of_n(1001);
	static struct ff_dirent all[2000];
	struct fsops *fs;
	size_t total;
	uint64_t kr;

	fs = mount_fake(api, 0, 0, 0);
	kr = region_ino_of(fs, "KR");
	total = read_in_chunks(fs, kr, 1024, all, 2000, change_account, api);
	CHECK(fake_calls(api, FAKE_LIST) == 2); /* 1,001 images: two pages, once */
	CHECK(total >= 1001 + 2);
	/* every image there throughout was listed */
	for (uint64_t no = 1; no <= 1001; no++) {
		char name[24];
		int found = 0;

		if (no == 500)
			continue;
		snprintf(name, sizeof(name), "%" PRIu64, no);
		for (size_t i = 0; i < total && !found; i++)
			found = !strcmp(all[i].name, name);
		CHECK(found);
	}
	fsops_free(fs);
	fake_free(api);
}

struct reclaim_arg {
	struct fake_api *api;
	struct fsops *fs;
};

static void expire_and_reclaim(void *p, int round)
{
	struct reclaim_arg *a = p;

	fake_advance(a->api, 2);
	CHECK(cache_reclaim(fsops_cache(a->fs)) > 0);
	if (round < 3) {
		/* another region's listing takes the freed slots first */
		if (round == 0)
			fake_add_region(a->api, "JPN");
		for (uint64_t no = 900 + 3 * (uint64_t)round; no < 903 + 3 * (uint64_t)round; no++)
			put(a->api, "JPN", no, "other");
		check_listed(a->fs, "JPN");
	}
}

/* A directory read whose images lose their slots between two chunks (their
 * data expired and reclaimed, the listing fetched again into other slots)
 * still lists each image once: offsets follow image numbers. */
static void test_readdir_across_reclaim(void)
{
	struct reclaim_arg a = { fake_new(), NULL };
	struct ff_dirent all[64];
	uint64_t kr;

	fake_add_region(a.api, "KR");
	for (uint64_t no = 101; no <= 140; no++)
		put(a.api, "KR", no, "img");
	a.fs = mount_fake(a.api, 1, 0, 0);
	kr = region_ino_of(a.fs, "KR");
	CHECK(read_in_chunks(a.fs, kr, 200, all, 64, expire_and_reclaim, &a) == 40 + 2);
	fsops_free(a.fs);
	fake_free(a.api);
}

/* Image 1 looked up (its inode and its serverImageName's kept, as by a
 * process with it open), reclaimed, then its slot reused `reuses` times by
 * lookups of a missing number, each reclaimed: the mount, with KR's inode. */
struct wrap {
	struct fake_api *api;
	struct fsops *fs;
	uint64_t kr, img, name;
};

static void wrap_setup(struct wrap *w, int reuses)
{
	int cycled = 0;

	w->api = fake_new();
	fake_add_region(w->api, "KR");
	put(w->api, "KR", 1, "first-image");
	w->fs = mount_fake(w->api, 1, 1, 0);
	w->kr = region_ino_of(w->fs, "KR");
	CHECK(ff_lookup(w->fs, w->kr, "1", &w->img, NULL) == 0);
	CHECK(ff_lookup(w->fs, w->img, "serverImageName", &w->name, NULL) == 0);
	fake_advance(w->api, 5);
	CHECK(fsops_reclaim(w->fs) == 1);
	while (cycled < reuses) {
		CHECK(ff_lookup(w->fs, w->kr, "999", NULL, NULL) == -ENOENT);
		fake_advance(w->api, 2);
		if (fsops_reclaim(w->fs) != 1)
			break;
		cycled++;
	}
	CHECK(cycled == reuses);
}

/* The kept inodes of image 1 are stale, never another image's. */
static void wrap_check_done(struct wrap *w)
{
	char *text = NULL;
	size_t len = 0;

	CHECK(ff_getattr(w->fs, w->img, NULL) == -ESTALE);
	CHECK(ff_read(w->fs, w->name, 0, 4096, &text, &len) == -ESTALE);
	free(text);
	fsops_free(w->fs);
	fake_free(w->api);
}

/* A slot reused 32,768 times would wrap its 16-bit generation: an inode
 * the kernel still holds for the first image must never name another's
 * data (the slot is retired instead). */
static void test_generation_wrap(void)
{
	struct wrap w;

	wrap_setup(&w, 32767);
	put(w.api, "KR", 2, "SECOND-IMAGE");
	CHECK(ff_lookup(w.fs, w.kr, "2", NULL, NULL) == 0);
	wrap_check_done(&w);
}

/* A slot reused until its generation is near the top, then its new image
 * changes a few times: the generation must not wrap onto that of an inode
 * the kernel holds for the first image (the image moves to a new slot). */
static void test_generation_wrap_by_change(void)
{
	struct wrap w;
	uint64_t now = 0, node = 0;
	char *text = NULL;
	size_t len = 0;

	wrap_setup(&w, 32765);
	put(w.api, "KR", 2, "SECOND-IMAGE");
	CHECK(ff_lookup(w.fs, w.kr, "2", &now, NULL) == 0);
	for (int k = 0; k < 4; k++) {
		char v[32];

		snprintf(v, sizeof(v), "SECOND-v%d", k);
		put(w.api, "KR", 2, v);
		fake_advance(w.api, 2);
		CHECK(ff_lookup(w.fs, w.kr, "2", &now, NULL) == 0);
	}
	/* the image itself reads its last version */
	CHECK(ff_lookup(w.fs, now, "serverImageName", &node, NULL) == 0);
	CHECK(ff_read(w.fs, node, 0, 4096, &text, &len) == 0);
	CHECK(text && len == 10 && memcmp(text, "SECOND-v3\n", 10) == 0);
	free(text);
	wrap_check_done(&w);
}

/* A reader's fetch of an image lands after a listing moved the image to a
 * new slot (its generation was used up): the answer goes with the retired
 * slot, the reader gets the image from its new slot, and the count of live
 * slots stays right through a reclaim. */
static void test_generation_wrap_during_fetch(void)
{
	struct wrap w;
	struct lookup_arg a;
	struct cache_stats st;
	struct ff_dirent *d = NULL;
	uint64_t ino = 0, node = 0;
	size_t n = 0, len = 0;
	char *text = NULL;
	pthread_t t;

	wrap_setup(&w, 32765);
	put(w.api, "KR", 2, "SECOND-IMAGE");
	CHECK(ff_lookup(w.fs, w.kr, "2", &ino, NULL) == 0);
	for (int k = 0; k < 10 && ino_split(ino).gen != UINT16_MAX; k++) {
		char v[32];

		snprintf(v, sizeof(v), "SECOND-v%d", k);
		put(w.api, "KR", 2, v);
		fake_advance(w.api, 2);
		CHECK(ff_lookup(w.fs, w.kr, "2", &ino, NULL) == 0);
	}
	CHECK(ino_split(ino).gen == UINT16_MAX);
	put(w.api, "KR", 2, "SECOND-moved");
	fake_advance(w.api, 2);
	a = (struct lookup_arg){ w.fs, w.kr, "2", -1, 0 };
	fake_gate(w.api, FAKE_DETAIL, 1);
	pthread_create(&t, NULL, lookup_thread, &a);
	fake_wait_gated(w.api, FAKE_DETAIL, 1);
	CHECK(ff_readdir_all(w.fs, w.kr, 4096, 0, &d, &n) == 0); /* the listing moves it */
	free(d);
	fake_gate(w.api, FAKE_DETAIL, 0);
	pthread_join(t, NULL);
	CHECK(a.err == 0 && ino_split(a.ino).slot != ino_split(ino).slot);
	CHECK(ff_lookup(w.fs, a.ino, "serverImageName", &node, NULL) == 0);
	CHECK(ff_read(w.fs, node, 0, 4096, &text, &len) == 0);
	CHECK(text && len == 13 && memcmp(text, "SECOND-moved\n", 13) == 0);
	free(text);
	CHECK(ff_getattr(w.fs, ino, NULL) == -ESTALE); /* the old slot answers nothing */
	cache_get_stats(fsops_cache(w.fs), &st);
	CHECK(st.images == 2); /* images 1 and 2, as listed */
	fake_advance(w.api, 100);
	fsops_reclaim(w.fs);
	cache_get_stats(fsops_cache(w.fs), &st);
	CHECK(st.images == 0);
	fsops_free(w.fs);
	fake_free(w.api);
}

/* .by-name read one entry at a time while a name passes from one image to
 * another: image 2's plain name "web~9" becomes image 9's once image 9 is
 * renamed "web" (as image 3 is called), and image 2 becomes "web~9~2". Read
 * from the old listing up to any point and on in the new one, no name
 * comes twice. */
static void test_by_name_read_across_rename(void)
{
	for (int before = 1; before <= 3; before++) {
		struct fake_api *api = fake_new();
		struct fsops *fs;
		struct ff_dirent seen[16], d, *all = NULL;
		uint64_t kr, dir = 0;
		int64_t off = 0;
		size_t n = 0, got = 0, total = 0;

		fake_add_region(api, "KR");
		put(api, "KR", 2, "web~9");
		put(api, "KR", 3, "web");
		put(api, "KR", 9, "alpha");
		fs = mount_fake(api, 1, 1, 0);
		kr = region_ino_of(fs, "KR");
		CHECK(ff_lookup(fs, kr, ".by-name", &dir, NULL) == 0);
		for (int switched = 0;;) {
			if (got >= (size_t)before && !switched) {
				switched = 1;
				put(api, "KR", 9, "web"); /* a new listing, read afresh */
				fake_advance(api, 2);
				CHECK(ff_readdir_all(fs, dir, 4096, 0, &all, &total) == 0 &&
				      total == 5);
				free(all);
			}
			CHECK(ff_readdir(fs, dir, 4096, off, 0, &d, 1, &n) == 0);
			if (n == 0 || got == 16)
				break;
			off = d.off;
			if (!strcmp(d.name, ".") || !strcmp(d.name, ".."))
				continue;
			for (size_t i = 0; i < got; i++)
				CHECK(strcmp(seen[i].name, d.name) != 0);
			seen[got++] = d;
		}
		CHECK(got >= 2 && got <= 4);
		fsops_free(fs);
		fake_free(api);
	}
}

/* <region>.json of 0, 1, 2 and 7 images: its size is exact, it parses, and
 * a read at any offset (the last byte alone included, as the kernel reads a
 * last page) gives the bytes of the whole. */
static void test_regjson_layout(void)
{
	static const unsigned sizes[] = { 0, 1, 2, 7 };

	for (size_t k = 0; k < sizeof(sizes) / sizeof(sizes[0]); k++) {
		struct fake_api *api = region_of_n(sizes[k]);
		struct fsops *fs = mount_fake(api, 60, 5, 0);
		char *whole = NULL, *part = NULL;
		size_t len = 0, plen = 0;
		uint64_t ino = 0;
		struct stat st;
		json_t *j;

		CHECK(ff_lookup(fs, INO_ROOT, "KR.json", &ino, &st) == 0);
		CHECK(ff_read(fs, ino, 0, 1 << 20, &whole, &len) == 0);
		CHECK(whole && len == (size_t)st.st_size);
		j = whole ? json_loadb(whole, len, 0, NULL) : NULL;
		CHECK(json_is_array(j) && json_array_size(j) == sizes[k]);
		json_decref(j);
		for (size_t off = 0; whole && off <= len + 1; off++) {
			CHECK(ff_read(fs, ino, (int64_t)off, off % 3 ? 1 : 5, &part, &plen) == 0);
			CHECK(plen == (off >= len      ? 0
				       : off % 3       ? 1
				       : len - off < 5 ? len - off
						       : 5));
			CHECK(!plen || memcmp(part, whole + off, plen) == 0);
			free(part);
			part = NULL;
		}
		free(whole);
		fsops_free(fs);
		fake_free(api);
	}
}

/* Reads KR.json through ino from offset 0 to the end in pieces of 50
 * bytes: 0 and the bytes, NUL-terminated (free them), or -errno. */
static int read_pieces(struct fsops *fs, uint64_t ino, char **out, size_t *n)
{
	char *all = NULL, *part = NULL;
	size_t len = 0, plen = 0;
	int err;

	*out = NULL;
	*n = 0;
	while ((err = ff_read(fs, ino, (int64_t)len, 50, &part, &plen)) == 0 && plen) {
		all = realloc(all, len + plen + 1);
		memcpy(all + len, part, plen);
		len += plen;
		all[len] = '\0';
		free(part);
		part = NULL;
	}
	free(part);
	if (err) {
		free(all);
		return err;
	}
	*out = all;
	*n = len;
	return 0;
}

/* An image changes while KR.json is being read: the reader goes on with
 * the snapshot it opened (one document, not two halves); a new lookup gets
 * the new one under a new inode; two changes later the old inode is stale. */
static void test_regjson_snapshots(void)
{
	struct fake_api *api = region_of_n(5);
	struct fsops *fs = mount_fake(api, 10, 5, 0);
	uint64_t old = 0, now = 0, kr;
	char *first = NULL, *rest = NULL, *text = NULL;
	size_t flen = 0, rlen = 0, tlen = 0;
	json_t *j;

	CHECK(ff_lookup(fs, INO_ROOT, "KR.json", &old, NULL) == 0);
	CHECK(ff_read(fs, old, 0, 100, &first, &flen) == 0 && flen == 100);
	put(api, "KR", 3, "renamed-while-read");
	fake_advance(api, 11);
	kr = region_ino_of(fs, "KR");
	CHECK(ff_lookup(fs, kr, "3", NULL, NULL) == 0); /* the cache sees the change */
	CHECK(ff_lookup(fs, INO_ROOT, "KR.json", &now, NULL) == 0);
	CHECK(now != old);
	/* the rest of the old one, then the whole */
	CHECK(read_pieces(fs, old, &text, &tlen) == 0);
	CHECK(text && tlen > 100 && memcmp(text, first, 100) == 0);
	j = text ? json_loadb(text, tlen, 0, NULL) : NULL;
	CHECK(json_is_array(j) && json_array_size(j) == 5);
	CHECK(!strstr(text ? text : "", "renamed-while-read"));
	json_decref(j);
	free(text);
	CHECK(read_pieces(fs, now, &rest, &rlen) == 0);
	CHECK(rest && strstr(rest, "renamed-while-read"));
	free(rest);
	/* two more changes: the first inode is gone */
	for (int k = 0; k < 2; k++) {
		put(api, "KR", 4, k ? "second" : "first");
		fake_advance(api, 11);
		CHECK(ff_lookup(fs, kr, "4", NULL, NULL) == 0);
		CHECK(ff_lookup(fs, INO_ROOT, "KR.json", &now, NULL) == 0);
	}
	CHECK(ff_read(fs, old, 0, 100, &text, &tlen) == -ESTALE);
	free(first);
	fsops_free(fs);
	fake_free(api);
}

struct regjson_look {
	struct fsops *fs;
	pthread_barrier_t *start;
	int err;
	uint64_t ino;
};

static void *regjson_look(void *p)
{
	struct regjson_look *l = p;

	pthread_barrier_wait(l->start);
	l->err = ff_lookup(l->fs, INO_ROOT, "KR.json", &l->ino, NULL);
	return NULL;
}

/* Eight lookups of KR.json at once, nothing changing: one snapshot, one
 * inode, and it answers (each used to build and install its own, pushing
 * the others' out: inodes ESTALE as soon as given). */
static void test_regjson_concurrent_lookups(void)
{
	struct fake_api *api = region_of_n(3000);
	struct fsops *fs = mount_fake(api, 60, 5, 0);
	struct regjson_look l[8];
	pthread_barrier_t start;
	pthread_t t[8];
	struct ff_dirent *d;
	size_t n;

	CHECK(ff_readdir_all(fs, region_ino_of(fs, "KR"), 1 << 16, 1, &d, &n) == 0);
	free(d);
	pthread_barrier_init(&start, NULL, 8);
	for (int i = 0; i < 8; i++) {
		l[i] = (struct regjson_look){ fs, &start, -1, 0 };
		pthread_create(&t[i], NULL, regjson_look, &l[i]);
	}
	for (int i = 0; i < 8; i++)
		pthread_join(t[i], NULL);
	for (int i = 0; i < 8; i++) {
		CHECK(l[i].err == 0 && l[i].ino == l[0].ino);
		CHECK(ff_getattr(fs, l[i].ino, NULL) == 0);
	}
	pthread_barrier_destroy(&start);
	fsops_free(fs);
	fake_free(api);
}

/* A read <region>.json holds nothing back: its images are given back as
 * any others (the snapshot is let go of first). */
static void test_regjson_reclaim(void)
{
	struct fake_api *api = region_of_n(100);
	struct fsops *fs = mount_fake(api, 10, 5, 30);
	struct cache_stats st;
	char *text = NULL;
	size_t len = 0;
	uint64_t ino = 0;

	CHECK(ff_lookup(fs, INO_ROOT, "KR.json", &ino, NULL) == 0);
	CHECK(ff_read(fs, ino, 0, 1 << 20, &text, &len) == 0 && len > 0);
	free(text);
	for (uint64_t no = 1; no <= 100; no++)
		fake_delete(api, "KR", no);
	fake_advance(api, 41); /* past ttl + stale */
	CHECK(fsops_reclaim(fs) == 100);
	cache_get_stats(fsops_cache(fs), &st);
	CHECK(st.images == 0 && st.bytes == 0);
	fsops_free(fs);
	fake_free(api);
}

/* Missing numbers, deleted images and old data are given back. */
static void test_reclaim(void)
{
	struct fake_api *api = region_of_n(100);
	struct cache_stats st;
	struct fsops *fs;
	struct ff_dirent *d;
	uint64_t kr, ino = 0;
	char name[24];
	size_t n;

	fs = mount_fake(api, 10, 5, 30);
	kr = region_ino_of(fs, "KR");
	for (int i = 0; i < 10000; i++) {
		snprintf(name, sizeof(name), "%d", 100000 + i);
		CHECK(ff_lookup(fs, kr, name, NULL, NULL) == -ENOENT);
	}
	cache_get_stats(fsops_cache(fs), &st);
	CHECK(st.images == 10000);
	fake_advance(api, 6); /* past negative_ttl */
	CHECK(cache_reclaim(fsops_cache(fs)) == 10000);
	cache_get_stats(fsops_cache(fs), &st);
	CHECK(st.images == 0 && st.bytes == 0);

	/* a listing, then half the images deleted */
	CHECK(ff_readdir_all(fs, kr, 65536, 0, &d, &n) == 0 && n == 102);
	free(d);
	CHECK(ff_lookup(fs, kr, "1", &ino, NULL) == 0);
	for (uint64_t no = 51; no <= 100; no++)
		fake_delete(api, "KR", no);
	fake_advance(api, 11);
	CHECK(ff_readdir_all(fs, kr, 65536, 0, &d, &n) == 0 && n == 52);
	free(d);
	CHECK(cache_reclaim(fsops_cache(fs)) == 50);
	cache_get_stats(fsops_cache(fs), &st);
	CHECK(st.images == 50);
	/* an inode of a listed image still answers; one of a freed slot is stale */
	CHECK(ff_getattr(fs, ino, NULL) == 0);
	/* everything past ttl + stale goes, listing and all */
	fake_advance(api, 41);
	CHECK(cache_reclaim(fsops_cache(fs)) == 50);
	cache_get_stats(fsops_cache(fs), &st);
	CHECK(st.images == 0 && st.bytes == 0);
	CHECK(ff_getattr(fs, ino, NULL) == -ESTALE);
	/* and a slot given to another image never answers for the old one */
	CHECK(ff_lookup(fs, kr, "2", NULL, NULL) == 0);
	CHECK(ff_getattr(fs, ino, NULL) == -ESTALE);
	fsops_free(fs);
	fake_free(api);
}

struct drop_arg {
	struct fsops *fs;
	uint64_t kr;
	int err;
};

static void *lookup_one(void *p)
{
	struct drop_arg *a = p;

	a->err = ff_lookup(a->fs, a->kr, "1", NULL, NULL);
	return NULL;
}

/* A fetch in flight when every cache is dropped does not count as fresh. */
static void test_drop_during_fetch(void)
{
	struct fake_api *api = fake_new();
	struct drop_arg a;
	struct fsops *fs;
	pthread_t t;

	fake_add_region(api, "KR");
	put(api, "KR", 1, "one");
	fs = mount_fake(api, 60, 5, 0);
	a = (struct drop_arg){ fs, region_ino_of(fs, "KR"), -1 };
	fake_gate(api, FAKE_DETAIL, 1);
	pthread_create(&t, NULL, lookup_one, &a);
	fake_wait_gated(api, FAKE_DETAIL, 1);
	cache_drop_all(fsops_cache(fs));
	fake_gate(api, FAKE_DETAIL, 0);
	pthread_join(t, NULL);
	CHECK(a.err == 0);
	CHECK(ff_lookup(fs, a.kr, "1", NULL, NULL) == 0);
	CHECK(fake_calls(api, FAKE_DETAIL) == 2);
	CHECK(ff_lookup(fs, a.kr, "1", NULL, NULL) == 0);
	CHECK(fake_calls(api, FAKE_DETAIL) == 2);
	fsops_free(fs);
	fake_free(api);
}

/* A reader that comes after the caches were dropped waits for a fetch
 * started before the drop but does not take its answer: it fetches afresh
 * and sees the account as it is after the drop. */
static void test_no_join_after_drop(void)
{
	struct fake_api *api = fake_new();
	struct lookup_arg a, b;
	pthread_t ta, tb;
	struct fsops *fs;
	uint64_t kr, node = 0;
	char *name = NULL;
	size_t len = 0;

	fake_add_region(api, "KR");
	put(api, "KR", 1, "before-drop");
	fs = mount_fake(api, 60, 5, 0);
	kr = region_ino_of(fs, "KR");
	a = (struct lookup_arg){ fs, kr, "1", -1, 0 };
	b = a;
	fake_gate(api, FAKE_DETAIL, 1);
	pthread_create(&ta, NULL, lookup_thread, &a);
	fake_wait_gated(api, FAKE_DETAIL, 1);
	fsops_drop_caches(fs);
	put(api, "KR", 1, "after-drop");
	pthread_create(&tb, NULL, lookup_thread, &b);
	/* give b time to reach the flight (ordering only: the checks below
	 * hold whichever comes first) */
	nanosleep(&(struct timespec){ 0, 100 * 1000 * 1000 }, NULL);
	fake_gate(api, FAKE_DETAIL, 0);
	pthread_join(ta, NULL);
	pthread_join(tb, NULL);
	CHECK(a.err == 0 && b.err == 0);
	CHECK(fake_calls(api, FAKE_DETAIL) == 2);
	CHECK(ff_lookup(fs, b.ino, "serverImageName", &node, NULL) == 0);
	CHECK(ff_read(fs, node, 0, 4096, &name, &len) == 0);
	CHECK(name && len == 11 && memcmp(name, "after-drop\n", 11) == 0);
	free(name);
	fsops_free(fs);
	fake_free(api);
}

static void *list_thread(void *p)
{
	struct lookup_arg *a = p;
	struct ff_dirent *d = NULL;
	size_t n = 0;

	a->err = ff_readdir_all(a->fs, a->region, 4096, 0, &d, &n);
	free(d);
	return NULL;
}

/* An image's fetch asked before a listing of its region but answered after
 * it: the listing's row, the later word, stays, and so does its freshness
 * (the image is not asked for again a ttl after the earlier fetch). The
 * other way round the same: a listing asked before a fetch of one of its
 * images does not undo that fetch. */
static void test_later_word_stands(void)
{
	struct fake_api *api = fake_new();
	struct lookup_arg a;
	struct ff_dirent *d = NULL;
	struct fsops *fs;
	size_t n = 0;
	pthread_t t;
	uint64_t kr;

	fake_add_region(api, "KR");
	put(api, "KR", 1, "one");
	fs = mount_fake(api, 10, 5, 0);
	kr = region_ino_of(fs, "KR");
	a = (struct lookup_arg){ fs, kr, "1", -1, 0 };
	fake_gate(api, FAKE_DETAIL, 1);
	pthread_create(&t, NULL, lookup_thread, &a);
	fake_wait_gated(api, FAKE_DETAIL, 1);
	fake_advance(api, 5);
	CHECK(ff_readdir_all(fs, kr, 4096, 0, &d, &n) == 0 && n == 3); /* asked later */
	free(d);
	fake_gate(api, FAKE_DETAIL, 0);
	pthread_join(t, NULL);
	CHECK(a.err == 0);
	fake_advance(api, 6); /* a ttl after the fetch, not after the listing */
	CHECK(ff_lookup(fs, kr, "1", NULL, NULL) == 0);
	CHECK(fake_calls(api, FAKE_DETAIL) == 1 && fake_calls(api, FAKE_LIST) == 1);

	/* a listing asked first, answered after a fetch of its image */
	fake_advance(api, 10);
	fake_gate(api, FAKE_LIST, 1);
	a = (struct lookup_arg){ fs, kr, NULL, -1, 0 };
	pthread_create(&t, NULL, list_thread, &a);
	fake_wait_gated(api, FAKE_LIST, 1);
	fake_advance(api, 5);
	CHECK(ff_lookup(fs, kr, "1", NULL, NULL) == 0); /* asked later */
	CHECK(fake_calls(api, FAKE_DETAIL) == 2);
	fake_gate(api, FAKE_LIST, 0);
	pthread_join(t, NULL);
	CHECK(a.err == 0);
	fake_advance(api, 6);
	CHECK(ff_lookup(fs, kr, "1", NULL, NULL) == 0);
	CHECK(fake_calls(api, FAKE_DETAIL) == 2);
	fsops_free(fs);
	fake_free(api);
}

/* Eight readers of one image: one fetch. */
static void test_single_flight(void)
{
	struct fake_api *api = fake_new();
	struct lookup_arg a[8];
	pthread_t t[8];
	struct fsops *fs;
	uint64_t kr;

	fake_add_region(api, "KR");
	put(api, "KR", 3135, "ubuntu");
	fs = mount_fake(api, 60, 5, 0);
	kr = region_ino_of(fs, "KR");
	fake_gate(api, FAKE_DETAIL, 1);
	for (int i = 0; i < 8; i++) {
		a[i] = (struct lookup_arg){ fs, kr, "3135", -1, 0 };
		pthread_create(&t[i], NULL, lookup_thread, &a[i]);
	}
	fake_wait_gated(api, FAKE_DETAIL, 1);
	fake_gate(api, FAKE_DETAIL, 0);
	for (int i = 0; i < 8; i++) {
		pthread_join(t[i], NULL);
		CHECK(a[i].err == 0 && a[i].ino == a[0].ino);
	}
	CHECK(fake_calls(api, FAKE_DETAIL) == 1);
	fsops_free(fs);
	fake_free(api);
}

/* TTL, negative TTL and stale-if-error on the fake clock. */
static void test_ttl_and_stale(void)
{
	struct fake_api *api = fake_new();
	struct fsops *fs;
	uint64_t kr, ino1 = 0, ino2 = 0;
	char *json;

	fake_add_region(api, "KR");
	put(api, "KR", 1, "one");
	fs = mount_fake(api, 10, 3, 100);
	kr = region_ino_of(fs, "KR");
	CHECK(ff_lookup(fs, kr, "1", &ino1, NULL) == 0);
	CHECK(ff_lookup(fs, kr, "2", NULL, NULL) == -ENOENT);
	fake_advance(api, 2);
	CHECK(ff_lookup(fs, kr, "1", NULL, NULL) == 0);
	CHECK(ff_lookup(fs, kr, "2", NULL, NULL) == -ENOENT);
	CHECK(fake_calls(api, FAKE_DETAIL) == 2); /* both still fresh */
	fake_advance(api, 2);
	CHECK(ff_lookup(fs, kr, "2", NULL, NULL) == -ENOENT);
	CHECK(fake_calls(api, FAKE_DETAIL) == 3); /* past negative_ttl */
	/* a changed image comes under a new inode; the old one still reads */
	json = fake_image_json(1, "one", "ROCKY", 2);
	fake_put(api, "KR", 1, json);
	free(json);
	fake_advance(api, 7);
	CHECK(ff_lookup(fs, kr, "1", &ino2, NULL) == 0);
	CHECK(ino2 != ino1);
	CHECK(ff_getattr(fs, ino1, NULL) == 0);
	/* past ttl, the API failing: the last good answer stands in */
	fake_advance(api, 11);
	fake_fail(api, FAKE_DETAIL, 1000, NCP_ERR_IO);
	fake_fail(api, FAKE_REGIONS, 1000, NCP_ERR_IO);
	CHECK(ff_lookup(fs, kr, "1", NULL, NULL) == 0);
	fake_advance(api, 120);
	CHECK(ff_lookup(fs, kr, "1", NULL, NULL) == -EIO);
	fake_fail(api, FAKE_DETAIL, 0, NCP_ERR_IO);
	fake_fail(api, FAKE_REGIONS, 0, NCP_ERR_IO);
	CHECK(ff_lookup(fs, kr, "1", NULL, NULL) == 0);
	fsops_free(fs);
	fake_free(api);
}

/* Reads a field of image no: the value without its newline, malloc'd. */
static char *field(struct fsops *fs, uint64_t region, const char *no, const char *name)
{
	uint64_t img = 0, node = 0;
	char *data = NULL;
	size_t len = 0;

	if (ff_lookup(fs, region, no, &img, NULL) || ff_lookup(fs, img, name, &node, NULL) ||
	    ff_read(fs, node, 0, 4096, &data, &len))
		return NULL;
	if (len)
		data[len - 1] = '\0';
	return data;
}

static int listed(struct fsops *fs, uint64_t dir, const char *name)
{
	struct ff_dirent *d;
	size_t n;
	int found = 0;

	if (ff_readdir_all(fs, dir, 4096, 0, &d, &n) != 0)
		return -1;
	for (size_t i = 0; i < n; i++)
		found += !strcmp(d[i].name, name);
	free(d);
	return found;
}

/* What a change in the account looks like on the fake clock: nothing
 * within the ttl, everything after it. */
static void test_changes_after_ttl(void)
{
	struct fake_api *api = fake_new();
	struct fsops *fs;
	uint64_t kr, dir = 0, ino1 = 0, ino2 = 0;
	char *v, *json;
	unsigned list;

	fake_add_region(api, "KR");
	put(api, "KR", 1, "one");
	put(api, "KR", 2, "two");
	fs = mount_fake(api, 10, 3, 0);
	kr = region_ino_of(fs, "KR");
	CHECK(listed(fs, kr, "1") == 1 && listed(fs, kr, "3") == 0);
	CHECK(ff_lookup(fs, kr, ".by-name", &dir, NULL) == 0);
	CHECK(ff_lookup(fs, dir, "one", NULL, NULL) == 0);
	CHECK(ff_lookup(fs, kr, "3", NULL, NULL) == -ENOENT);
	CHECK(ff_lookup(fs, kr, "2", &ino1, NULL) == 0);
	list = fake_calls(api, FAKE_LIST);
	/* renamed, deleted, created, and changed by one letter */
	put(api, "KR", 1, "uno");
	fake_delete(api, "KR", 2);
	put(api, "KR", 3, "three");
	json = fake_image_json(4, "four", "ROCKY", 1);
	fake_put(api, "KR", 4, json);
	free(json);
	fake_advance(api, 9);
	v = field(fs, kr, "1", "serverImageName");
	CHECK_STR(v, "one");
	free(v);
	CHECK(listed(fs, kr, "2") == 1 && listed(fs, kr, "3") == 0);
	CHECK(fake_calls(api, FAKE_LIST) == list);
	fake_advance(api, 2);
	CHECK(listed(fs, kr, "2") == 0 && listed(fs, kr, "3") == 1 && listed(fs, kr, "4") == 1);
	CHECK(fake_calls(api, FAKE_LIST) == list + 1);
	v = field(fs, kr, "1", "serverImageName");
	CHECK_STR(v, "uno");
	free(v);
	CHECK(ff_lookup(fs, dir, "one", NULL, NULL) == -ENOENT);
	CHECK(ff_lookup(fs, dir, "uno", NULL, NULL) == 0);
	CHECK(ff_lookup(fs, kr, "2", NULL, NULL) == -ENOENT);
	CHECK(ff_getattr(fs, ino1, NULL) == -ESTALE || ff_getattr(fs, ino1, NULL) == 0);
	/* the negative entry for 3 ended with the listing that has it */
	CHECK(ff_lookup(fs, kr, "3", &ino2, NULL) == 0);
	/* same length, other letters: a new inode, the new content */
	json = fake_image_json(4, "four", "UBUNT", 2);
	fake_put(api, "KR", 4, json);
	free(json);
	CHECK(ff_lookup(fs, kr, "4", &ino1, NULL) == 0);
	fake_advance(api, 11);
	CHECK(ff_lookup(fs, kr, "4", &ino2, NULL) == 0);
	CHECK(ino1 != ino2);
	v = field(fs, kr, "4", "osType");
	CHECK_STR(v, "UBUNT");
	free(v);
	fsops_free(fs);
	fake_free(api);
}

int main(void)
{
	test_inode_layout();
	test_tree_limit();
	test_by_name_shared_names();
	test_by_name_collisions();
	test_by_name_long_names();
	test_by_name_read_across_rename();
	test_flight_across_growth();
	test_capped_pages();
	test_stuck_pages();
	test_pages_at_once();
	test_wrong_detail();
	test_readdir_chunks();
	test_readdir_across_reclaim();
	test_reclaim();
	test_regjson_layout();
	test_generation_wrap();
	test_generation_wrap_by_change();
	test_generation_wrap_during_fetch();
	test_regjson_reclaim();
	test_regjson_snapshots();
	test_regjson_concurrent_lookups();
	test_drop_during_fetch();
	test_no_join_after_drop();
	test_single_flight();
	test_later_word_stands();
	test_ttl_and_stale();
	test_changes_after_ttl();
	return TEST_REPORT();
}
