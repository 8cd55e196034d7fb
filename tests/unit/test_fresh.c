/* SPDX-License-Identifier: MIT */
/* test_fresh.c: freshness without waiting, through the fake account and
 * clock: refresh ahead in the last part of a ttl, the region list kept off
 * the path, stale answers served at once while one background task retries
 * with backoff, images in transition held busy_ttl, readers interrupted
 * while the fetch goes on for others (or is abandoned), the age shown in
 * extended attributes, and an idle mount that calls nothing. Every claim is
 * a count: calls made, readers that waited, fetches given up. */
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "fakeapi.h"
#include "fakefuse.h"
#include "inode.h"
#include "testhelp.h"

/* Linked with -Wl,--wrap=pthread_create: while no_threads is set, the
 * cache can start no worker (the test's own threads use the real one). */
int __real_pthread_create(pthread_t *t, const pthread_attr_t *attr, void *(*fn)(void *), void *arg);
int __wrap_pthread_create(pthread_t *t, const pthread_attr_t *attr, void *(*fn)(void *), void *arg);
static atomic_int no_threads, refused;

int __wrap_pthread_create(pthread_t *t, const pthread_attr_t *attr, void *(*fn)(void *), void *arg)
{
	if (atomic_load(&no_threads)) {
		atomic_fetch_add(&refused, 1);
		return EAGAIN;
	}
	return __real_pthread_create(t, attr, fn, arg);
}

#define TTL 10.0
#define STALE 100.0
#define BUSY 2.0

static void put(struct fake_api *api, const char *region, uint64_t no, const char *name,
		int version)
{
	char *json = fake_image_json(no, name, "UBUNTU", version);

	fake_put(api, region, no, json);
	free(json);
}

/* A mount over one region KR with images 1 and 2, refreshing in the last
 * fifth of the ttl, as ncloudfs mounts by default. */
static struct fsops *mount_fresh(struct fake_api *api)
{
	struct cache_source src = fake_source(api);
	struct fsops_opts o = { TTL, 5, STALE, BUSY, 0, 0.2 };
	struct fsops *fs;

	fake_add_region(api, "KR");
	put(api, "KR", 1, "one", 1);
	put(api, "KR", 2, "two", 1);
	fs = fsops_new(&src, NULL, &o);
	if (!fs)
		abort();
	return fs;
}

/* A test's mount: the fake account, the filesystem, KR's inode. */
struct mnt {
	struct fake_api *api;
	struct fsops *fs;
	uint64_t kr;
};

static uint64_t kr_of(struct fsops *fs);

static struct mnt mnt_open(void)
{
	struct mnt m;

	m.api = fake_new();
	m.fs = mount_fresh(m.api);
	m.kr = kr_of(m.fs);
	return m;
}

static void mnt_close(struct mnt *m)
{
	fsops_free(m->fs);
	fake_free(m->api);
}

static struct cache_stats stats_of(struct fsops *fs)
{
	struct cache_stats st;

	cache_get_stats(fsops_cache(fs), &st);
	return st;
}

static uint64_t kr_of(struct fsops *fs)
{
	uint64_t ino = 0;

	CHECK(ff_lookup(fs, INO_ROOT, "KR", &ino, NULL) == 0);
	return ino;
}

/* The serverImageName that a lookup of image no shows now ("" on error). */
static void name_of(struct fsops *fs, uint64_t kr, const char *no, char *out, size_t len)
{
	uint64_t img = 0, node = 0;
	char *text = NULL;
	size_t n = 0;

	out[0] = '\0';
	if (ff_lookup(fs, kr, no, &img, NULL) == 0 &&
	    ff_lookup(fs, img, "serverImageName", &node, NULL) == 0 &&
	    ff_read(fs, node, 0, 256, &text, &n) == 0 && n > 0 && n < len) {
		memcpy(out, text, n - 1); /* without the newline */
		out[n - 1] = '\0';
	}
	free(text);
}

/* A read in the last fifth of the ttl answers at once with the current data
 * (even while the API hangs) and refreshes in the background, once; the new
 * answer replaces the old when it lands. */
static void test_refresh_ahead(void)
{
	struct mnt m = mnt_open();
	struct fake_api *api = m.api;
	struct fsops *fs = m.fs;
	uint64_t kr = m.kr;
	char name[64];
	struct cache_stats before;

	name_of(fs, kr, "1", name, sizeof(name));
	CHECK_STR(name, "one");
	CHECK(fake_calls(api, FAKE_DETAIL) == 1);
	put(api, "KR", 1, "uno", 2);
	fake_advance(api,
		     9.4); /* not yet in the window: the last 0.5 s (fetches take no time here) */
	name_of(fs, kr, "1", name, sizeof(name));
	CHECK(fake_calls(api, FAKE_DETAIL) == 1 && stats_of(fs).refresh_ahead == 0);

	fake_gate(api, FAKE_DETAIL, 1);
	fake_advance(api, 0.2); /* 9.6 s: in the window */
	before = stats_of(fs);
	name_of(fs, kr, "1", name, sizeof(name));
	CHECK_STR(name, "one"); /* at once, the current answer */
	name_of(fs, kr, "1", name, sizeof(name));
	fake_wait_gated(api, FAKE_DETAIL, 1);
	CHECK(fake_calls(api, FAKE_DETAIL) == 2); /* one refresh for both reads */
	CHECK(stats_of(fs).refresh_ahead == before.refresh_ahead + 1);
	CHECK(stats_of(fs).waited == before.waited);
	/* expired, past its grace, the refresh still under way: served (within
	 * stale) while it runs */
	fake_advance(api, 3);
	name_of(fs, kr, "1", name, sizeof(name));
	CHECK_STR(name, "one");
	CHECK(stats_of(fs).waited == before.waited);
	fake_gate(api, FAKE_DETAIL, 0);
	cache_quiesce(fsops_cache(fs));
	name_of(fs, kr, "1", name, sizeof(name));
	CHECK_STR(name, "uno");
	CHECK(fake_calls(api, FAKE_DETAIL) == 2);
	mnt_close(&m);
}

/* Just after expiry (within the same fifth of the ttl) an answer is served
 * while it is refreshed; later than that a reader waits, as before. */
static void test_grace_then_wait(void)
{
	struct mnt m = mnt_open();
	struct fake_api *api = m.api;
	struct fsops *fs = m.fs;
	uint64_t kr = m.kr;
	char name[64];
	struct cache_stats before;

	name_of(fs, kr, "1", name, sizeof(name));
	put(api, "KR", 1, "uno", 2);
	fake_advance(api, 11); /* expired 1 s ago */
	before = stats_of(fs);
	name_of(fs, kr, "1", name, sizeof(name));
	CHECK_STR(name, "one");
	cache_quiesce(fsops_cache(fs));
	CHECK(stats_of(fs).revalidations == before.revalidations + 1);
	CHECK(stats_of(fs).waited == before.waited);
	name_of(fs, kr, "1", name, sizeof(name));
	CHECK_STR(name, "uno");

	put(api, "KR", 1, "eins", 3);
	fake_advance(api, 13); /* 2.5 s past expiry and its grace */
	before = stats_of(fs);
	name_of(fs, kr, "1", name, sizeof(name));
	CHECK_STR(name, "eins");
	CHECK(stats_of(fs).waited == before.waited + 1);
	mnt_close(&m);
}

/* Once known, the region list never makes an image read wait: expired long
 * ago and its API hanging, images are still read; a region the list does
 * not have yet is looked for in a fresh list. */
static void test_regions_off_the_path(void)
{
	struct mnt m = mnt_open();
	struct fake_api *api = m.api;
	struct fsops *fs = m.fs;
	uint64_t kr = m.kr, jpn = 0;
	char name[64];
	unsigned regions;

	name_of(fs, kr, "1", name, sizeof(name));
	regions = fake_calls(api, FAKE_REGIONS);
	fake_gate(api, FAKE_REGIONS, 1);
	fake_advance(api, 1000);
	CHECK(ff_lookup(fs, INO_ROOT, "KR", &kr, NULL) == 0);
	name_of(fs, kr, "1", name, sizeof(name)); /* the image is fetched again */
	CHECK_STR(name, "one");
	fake_wait_gated(api, FAKE_REGIONS, 1);
	CHECK(fake_calls(api, FAKE_REGIONS) == regions + 1); /* in the background */
	fake_gate(api, FAKE_REGIONS, 0);
	cache_quiesce(fsops_cache(fs));

	fake_add_region(api, "JPN");
	fake_advance(api, 11);
	CHECK(ff_lookup(fs, INO_ROOT, "JPN", &jpn, NULL) == 0);
	CHECK(fake_calls(api, FAKE_REGIONS) == regions + 2);
	CHECK(ff_lookup(fs, INO_ROOT, "NOPE", NULL, NULL) == -ENOENT); /* fresh: no call */
	CHECK(fake_calls(api, FAKE_REGIONS) == regions + 2);
	mnt_close(&m);
}

/* During an outage a good answer within stale is served at once, and only a
 * background task tries the API: once per backoff step (5 s, then 10 s,
 * 20 s, ...); past ttl + stale the error comes back. */
static void test_outage(void)
{
	struct mnt m = mnt_open();
	struct fake_api *api = m.api;
	struct fsops *fs = m.fs;
	uint64_t kr = m.kr;
	char name[64];
	struct cache_stats before;
	unsigned calls;
	double t = 0;

	name_of(fs, kr, "1", name, sizeof(name));
	fake_fail(api, FAKE_DETAIL, 1000, NCP_ERR_IO);
	fake_advance(api, 9.6); /* refresh ahead: fails */
	t = 9.6;
	before = stats_of(fs);
	name_of(fs, kr, "1", name, sizeof(name));
	cache_quiesce(fsops_cache(fs));
	calls = fake_calls(api, FAKE_DETAIL);
	CHECK(calls == 2);
	CHECK(stats_of(fs).refresh_failed == before.refresh_failed + 1);
	/* reads every second for 60 s: never a wait, tries at 9.6 + 5, + 10, + 20 */
	for (int i = 0; i < 60; i++) {
		fake_advance(api, 1);
		t += 1;
		name_of(fs, kr, "1", name, sizeof(name));
		CHECK_STR(name, "one");
		cache_quiesce(fsops_cache(fs));
	}
	CHECK(stats_of(fs).waited == before.waited);
	CHECK(fake_calls(api, FAKE_DETAIL) == calls + 3); /* at 14.6, 24.6, 44.6 */
	CHECK(stats_of(fs).stale > before.stale);
	/* past ttl + stale: the reader waits and gets the error */
	fake_advance(api, TTL + STALE - t + 1);
	before = stats_of(fs);
	name_of(fs, kr, "1", name, sizeof(name));
	CHECK_STR(name, "");
	CHECK(stats_of(fs).waited == before.waited + 1);
	mnt_close(&m);
}

/* An image in transition is held busy_ttl, not ttl; so is a listing holding
 * one. A settled image is held ttl. */
static void test_busy_ttl(void)
{
	struct mnt m = mnt_open();
	struct fake_api *api = m.api;
	struct fsops *fs = m.fs;
	uint64_t kr = m.kr;
	struct ff_dirent *d = NULL;
	size_t n = 0;
	char name[64];
	unsigned calls, lists;

	put(api, "KR", 1, "making", 3); /* version 3: "creating" */
	name_of(fs, kr, "1", name, sizeof(name));
	name_of(fs, kr, "2", name, sizeof(name));
	calls = fake_calls(api, FAKE_DETAIL);
	put(api, "KR", 1, "made", 4); /* "created" */
	fake_advance(api, BUSY + 0.5);
	name_of(fs, kr, "1", name, sizeof(name));
	cache_quiesce(fsops_cache(fs));
	name_of(fs, kr, "1", name, sizeof(name));
	CHECK_STR(name, "made");
	name_of(fs, kr, "2", name, sizeof(name)); /* settled: still fresh */
	CHECK(fake_calls(api, FAKE_DETAIL) == calls + 1);
	/* settled now: held the whole ttl */
	fake_advance(api, BUSY + 0.5);
	name_of(fs, kr, "1", name, sizeof(name));
	CHECK(fake_calls(api, FAKE_DETAIL) == calls + 1);

	/* a listing holding an image in transition */
	put(api, "KR", 3, "three", 3);
	CHECK(ff_readdir_all(fs, kr, 65536, 0, &d, &n) == 0 && n == 5);
	free(d);
	lists = fake_calls(api, FAKE_LIST);
	put(api, "KR", 3, "three", 4);
	put(api, "KR", 4, "four", 1);
	fake_advance(api, BUSY * 1.5);
	CHECK(ff_readdir_all(fs, kr, 65536, 0, &d, &n) == 0 && n == 6);
	free(d);
	CHECK(fake_calls(api, FAKE_LIST) == lists + 1);
	/* none in transition now: the next listing is held ttl */
	put(api, "KR", 5, "five", 1);
	fake_advance(api, BUSY * 1.5);
	CHECK(ff_readdir_all(fs, kr, 65536, 0, &d, &n) == 0 && n == 6);
	free(d);
	CHECK(fake_calls(api, FAKE_LIST) == lists + 1);
	mnt_close(&m);
}

struct reader {
	struct fsops *fs;
	const char *no;
	uint32_t region;
	int flag; /* set to interrupt */
	int err;
};

static void *read_image(void *arg)
{
	struct reader *r = arg;
	struct cache_image img;

	cache_set_interrupt(&r->flag);
	r->err = cache_image_lookup(fsops_cache(r->fs), r->region, r->no, &img);
	cache_set_interrupt(NULL);
	if (r->err == 0)
		tree_unref(img.tree);
	return NULL;
}

/* Waits (in real time) until the cache counts n readers that waited. */
static void wait_waiting(struct fsops *fs, uint64_t n)
{
	while (stats_of(fs).waited < n)
		nanosleep(&(struct timespec){ 0, 1000000 }, NULL);
}

static void interrupt(struct fsops *fs, struct reader *r)
{
	__atomic_store_n(&r->flag, 1, __ATOMIC_RELEASE);
	cache_wake(fsops_cache(fs));
}

/* A reader blocked on a hung API gets EINTR when interrupted; the fetch
 * goes on for another reader, and is abandoned when nobody waits. */
static void test_interrupt(void)
{
	struct mnt m = mnt_open();
	struct fake_api *api = m.api;
	struct fsops *fs = m.fs;
	struct reader a = { fs, "2", 0, 0, 1 }, b = { fs, "2", 0, 0, 1 };
	pthread_t ta, tb;
	uint64_t waited;

	CHECK(cache_region_find(fsops_cache(fs), "KR", &a.region, NULL) == 0);
	b.region = a.region;
	fake_gate(api, FAKE_DETAIL, 1);
	waited = stats_of(fs).waited;
	pthread_create(&ta, NULL, read_image, &a);
	pthread_create(&tb, NULL, read_image, &b);
	wait_waiting(fs, waited + 2);
	fake_wait_gated(api, FAKE_DETAIL, 1);
	interrupt(fs, &a);
	pthread_join(ta, NULL);
	CHECK(a.err == -EINTR);
	CHECK(stats_of(fs).interrupted == 1);
	fake_gate(api, FAKE_DETAIL, 0); /* the API answers: b gets it */
	pthread_join(tb, NULL);
	CHECK(b.err == 0);
	CHECK(fake_calls(api, FAKE_DETAIL) == 1 && fake_cancelled(api, FAKE_DETAIL) == 0);

	/* alone, interrupted: the fetch is given up, and nothing is learnt */
	a.no = "1";
	a.flag = 0;
	fake_gate(api, FAKE_DETAIL, 1);
	waited = stats_of(fs).waited;
	pthread_create(&ta, NULL, read_image, &a);
	wait_waiting(fs, waited + 1);
	fake_wait_gated(api, FAKE_DETAIL, 1);
	interrupt(fs, &a);
	pthread_join(ta, NULL);
	CHECK(a.err == -EINTR);
	cache_quiesce(fsops_cache(fs));
	CHECK(fake_cancelled(api, FAKE_DETAIL) == 1);
	CHECK(stats_of(fs).abandoned == 1);
	fake_gate(api, FAKE_DETAIL, 0);
	a.flag = 0;
	read_image(&a); /* asked again: fetched afresh */
	CHECK(a.err == 0);
	CHECK(fake_calls(api, FAKE_DETAIL) == 3);
	/* interrupted alone, and another reader comes as the fetch is being given
	 * up: it gets the answer (the fetch goes on, or is made again) */
	a.no = b.no = "9";
	a.flag = b.flag = 0;
	put(api, "KR", 9, "nine", 1);
	fake_gate(api, FAKE_DETAIL, 1);
	waited = stats_of(fs).waited;
	pthread_create(&ta, NULL, read_image, &a);
	wait_waiting(fs, waited + 1);
	fake_wait_gated(api, FAKE_DETAIL, 1);
	interrupt(fs, &a);
	pthread_create(&tb, NULL, read_image, &b);
	pthread_join(ta, NULL);
	wait_waiting(fs, waited + 2);
	fake_gate(api, FAKE_DETAIL, 0);
	pthread_join(tb, NULL);
	CHECK(a.err == -EINTR && b.err == 0);
	CHECK(fake_calls(api, FAKE_DETAIL) - fake_cancelled(api, FAKE_DETAIL) == 3);
	/* a reader interrupted before it waits does not wait at all */
	a.no = "7";
	a.flag = 1;
	read_image(&a);
	CHECK(a.err == -EINTR);
	mnt_close(&m);
}

/* With no worker thread to be had (pthread_create failing), a reader
 * fetches itself; another reader waiting for that fetch and interrupted
 * leaves it alone: the first one still gets its answer. */
static void test_interrupt_without_workers(void)
{
	struct mnt m;
	struct reader a = { NULL, "2", 0, 0, 1 }, b = { NULL, "2", 0, 0, 1 };
	pthread_t ta, tb;
	uint64_t waited;

	atomic_store(&no_threads, 1);
	m = mnt_open();
	a.fs = b.fs = m.fs;
	CHECK(cache_region_find(fsops_cache(m.fs), "KR", &a.region, NULL) == 0);
	b.region = a.region;
	fake_gate(m.api, FAKE_DETAIL, 1);
	waited = stats_of(m.fs).waited;
	__real_pthread_create(&ta, NULL, read_image, &a);
	fake_wait_gated(m.api, FAKE_DETAIL, 1);
	__real_pthread_create(&tb, NULL, read_image, &b);
	wait_waiting(m.fs, waited + 2);
	interrupt(m.fs, &b);
	pthread_join(tb, NULL);
	CHECK(b.err == -EINTR);
	/* time for a wrongly given up fetch to notice (the fake looks every
	 * 5 ms); ordering only, the checks hold either way when it is right */
	for (int i = 0; i < 200 && !fake_cancelled(m.api, FAKE_DETAIL); i++)
		nanosleep(&(struct timespec){ 0, 1000000 }, NULL);
	fake_gate(m.api, FAKE_DETAIL, 0);
	pthread_join(ta, NULL);
	CHECK(a.err == 0);
	CHECK(fake_calls(m.api, FAKE_DETAIL) == 1 && fake_cancelled(m.api, FAKE_DETAIL) == 0);
	CHECK(atomic_load(&refused) > 0); /* the cache did ask for a worker, in vain */
	mnt_close(&m);
	atomic_store(&no_threads, 0);
}

/* An idle mount calls nothing, however long. */
static void test_idle(void)
{
	struct mnt m = mnt_open();
	struct fake_api *api = m.api;
	struct fsops *fs = m.fs;
	uint64_t kr = m.kr;
	struct ff_dirent *d = NULL;
	size_t n = 0;
	unsigned before[FAKE_NACTIONS];

	CHECK(ff_readdir_all(fs, kr, 65536, 1, &d, &n) == 0);
	free(d);
	cache_quiesce(fsops_cache(fs));
	for (int a = 0; a < FAKE_NACTIONS; a++)
		before[a] = fake_calls(api, (enum fake_action)a);
	for (int i = 0; i < 100; i++) {
		fake_advance(api, 7);
		fsops_reclaim(fs);
	}
	cache_quiesce(fsops_cache(fs));
	for (int a = 0; a < FAKE_NACTIONS; a++)
		CHECK(fake_calls(api, (enum fake_action)a) == before[a]);
	mnt_close(&m);
}

static void xattr(struct fsops *fs, uint64_t ino, const char *name, char *buf, size_t len)
{
	size_t n = 0;

	buf[0] = '\0';
	if (ff_getxattr(fs, ino, name, buf, len - 1, &n) == 0 && n < len)
		buf[n] = '\0';
}

/* user.ncp.fetched and user.ncp.state on the root, a region and an image:
 * fresh, refreshing while a refresh is under way, stale while refreshes
 * fail; names outside user.* are not supported (so ls stops asking). */
static void test_age_xattrs(void)
{
	struct mnt m = mnt_open();
	struct fake_api *api = m.api;
	struct fsops *fs = m.fs;
	uint64_t kr = m.kr, img = 0;
	struct ff_dirent *d = NULL;
	size_t n = 0;
	char v[64];
	time_t now = time(NULL);
	struct tm tm;

	CHECK(ff_readdir_all(fs, kr, 65536, 0, &d, &n) == 0);
	free(d);
	CHECK(ff_lookup(fs, kr, "1", &img, NULL) == 0);
	uint64_t inos[] = { INO_ROOT, kr, img };

	for (int i = 0; i < 3; i++) {
		xattr(fs, inos[i], "user.ncp.state", v, sizeof(v));
		CHECK_STR(v, "fresh");
		xattr(fs, inos[i], "user.ncp.fetched", v, sizeof(v));
		CHECK(strlen(v) == 20 && v[4] == '-' && v[10] == 'T' && v[19] == 'Z');
		memset(&tm, 0, sizeof(tm));
		CHECK(strptime(v, "%Y-%m-%dT%H:%M:%SZ", &tm) && timegm(&tm) <= now + 1 &&
		      timegm(&tm) >= now - 60);
	}
	CHECK(ff_getxattr(fs, img, "security.selinux", NULL, 0, &n) == -EOPNOTSUPP);
	CHECK(ff_getxattr(fs, img, "system.posix_acl_access", NULL, 0, &n) == -EOPNOTSUPP);
	CHECK(ff_getxattr(fs, img, "user.other", NULL, 0, &n) == -ENODATA);

	fake_gate(api, FAKE_DETAIL, 1);
	fake_advance(api, 9.6);
	CHECK(ff_lookup(fs, kr, "1", &img, NULL) == 0);
	fake_wait_gated(api, FAKE_DETAIL, 1);
	xattr(fs, img, "user.ncp.state", v, sizeof(v));
	CHECK_STR(v, "refreshing");
	fake_fail(api, FAKE_DETAIL, 1000, NCP_ERR_IO);
	fake_gate(api, FAKE_DETAIL, 0);
	cache_quiesce(fsops_cache(fs));
	fake_advance(api, 2.6); /* past ttl and its grace: its refresh failed */
	CHECK(ff_lookup(fs, kr, "1", &img, NULL) == 0);
	xattr(fs, img, "user.ncp.state", v, sizeof(v));
	CHECK_STR(v, "stale");
	mnt_close(&m);
}

/* An image directory's inode from before its data changed has no age: the
 * answer it named is gone (the age of the new one would be another's). */
static void test_age_of_old_inode(void)
{
	struct mnt m = mnt_open();
	uint64_t old = 0, img = 0;
	size_t n = 0;
	char v[64];

	CHECK(ff_lookup(m.fs, m.kr, "1", &old, NULL) == 0);
	put(m.api, "KR", 1, "one-changed", 2);
	fake_advance(m.api, TTL + STALE + 1);
	CHECK(ff_lookup(m.fs, m.kr, "1", &img, NULL) == 0);
	cache_quiesce(fsops_cache(m.fs));
	CHECK(ff_lookup(m.fs, m.kr, "1", &img, NULL) == 0);
	CHECK(img != old && ino_split(img).slot == ino_split(old).slot);
	CHECK(ff_getxattr(m.fs, old, "user.ncp.state", v, sizeof(v), &n) == -ENODATA);
	CHECK(ff_getxattr(m.fs, old, "user.ncp.fetched", v, sizeof(v), &n) == -ENODATA);
	xattr(m.fs, img, "user.ncp.state", v, sizeof(v));
	CHECK_STR(v, "fresh");
	mnt_close(&m);
}

int main(void)
{
	test_refresh_ahead();
	test_grace_then_wait();
	test_regions_off_the_path();
	test_outage();
	test_busy_ttl();
	test_interrupt();
	test_interrupt_without_workers();
	test_idle();
	test_age_xattrs();
	test_age_of_old_inode();
	return TEST_REPORT();
}
