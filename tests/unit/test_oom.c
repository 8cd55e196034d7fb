/* SPDX-License-Identifier: MIT */
/* test_oom.c: every allocation failure answers ENOMEM or EIO and leaves the
 * filesystem serving. The scenario (mount, list, read, .by-name, a change,
 * dropped caches, reclaiming) runs once per N with the Nth allocation made
 * by ncloudfs failing, until a run makes fewer than N; after each, with
 * allocations working again, everything must read as it should. Linked with
 * -Wl,--wrap for malloc, calloc, realloc and strdup; jansson's allocations
 * go through json_set_alloc_funcs. The fake account's own allocations never
 * fail. Leaks show under ASan/LSan. */
#include <errno.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "fakeapi.h"
#include "fakefuse.h"
#include "inode.h"
#include "testhelp.h"

void *__real_malloc(size_t size);
void *__real_calloc(size_t n, size_t size);
void *__real_realloc(void *p, size_t size);
char *__real_strdup(const char *s);
void *__wrap_malloc(size_t size);
void *__wrap_calloc(size_t n, size_t size);
void *__wrap_realloc(void *p, size_t size);
char *__wrap_strdup(const char *s);

static atomic_long counted, fail_at; /* fail_at 0: never */
static _Thread_local volatile int exempt;

void ff_exempt(int on)
{
	exempt += on ? 1 : -1;
}

static int failing(void)
{
	long n;

	if (exempt || !atomic_load(&fail_at))
		return 0;
	n = atomic_fetch_add(&counted, 1) + 1;
	return n == atomic_load(&fail_at);
}

void *__wrap_malloc(size_t size)
{
	return failing() ? NULL : __real_malloc(size);
}

void *__wrap_calloc(size_t n, size_t size)
{
	return failing() ? NULL : __real_calloc(n, size);
}

void *__wrap_realloc(void *p, size_t size)
{
	return failing() ? NULL : __real_realloc(p, size);
}

char *__wrap_strdup(const char *s)
{
	return failing() ? NULL : __real_strdup(s);
}

static void *json_alloc(size_t size)
{
	return __wrap_malloc(size);
}

/* The fake account answers with allocations that never fail. */
static struct cache_source fake;

static int ex_regions(void *arg, json_t **regions, struct ncp_error *err)
{
	int r;

	exempt++;
	r = fake.region_list(arg, regions, err);
	exempt--;
	return r;
}

static int ex_page(void *arg, const char *region, long page_no, long page_size, json_t **rows,
		   long *total, struct ncp_error *err)
{
	int r;

	exempt++;
	r = fake.list_page(arg, region, page_no, page_size, rows, total, err);
	exempt--;
	return r;
}

static int ex_detail(void *arg, const char *region, const char *no, json_t **image,
		     struct ncp_error *err)
{
	int r;

	exempt++;
	r = fake.detail(arg, region, no, image, err);
	exempt--;
	return r;
}

static void put(struct fake_api *api, uint64_t no, const char *name, int version)
{
	char *json;

	exempt++;
	json = fake_image_json(no, name, "UBUNTU", version);
	fake_put(api, "KR", no, json);
	free(json);
	exempt--;
}

/* An answer while allocations may fail: success or ENOMEM/EIO, and for
 * names that may be gone, ENOENT/ESTALE. */
static int acceptable_at(int err, int line)
{
	if (err == 0 || err == -ENOMEM || err == -EIO || err == -ENOENT || err == -ESTALE)
		return 1;
	fprintf(stderr, "line %d: %s\n", line, strerror(-err));
	return 0;
}
#define acceptable(err) acceptable_at((err), __LINE__)

static void read_file(struct fsops *fs, uint64_t dir, const char *name, int *bad)
{
	uint64_t ino;
	char *data = NULL;
	size_t len;
	int err = ff_lookup(fs, dir, name, &ino, NULL);

	if (!acceptable(err))
		(*bad)++;
	if (err)
		return;
	err = ff_read(fs, ino, 0, 4096, &data, &len);
	if (!acceptable(err))
		(*bad)++;
	exempt++;
	free(data);
	exempt--;
}

static void read_dir(struct fsops *fs, uint64_t ino, int *bad, size_t *n)
{
	struct ff_dirent *d = NULL;
	int err;

	exempt++; /* the harness's own buffer */
	d = malloc(4096 * sizeof(*d));
	exempt--;
	*n = 0;
	err = 0;
	for (int64_t off = 0;;) {
		size_t got = 0;

		err = ff_readdir(fs, ino, 2048, off, 1, d + *n, 4096 - *n, &got);
		if (err || !got)
			break;
		*n += got;
		off = d[*n - 1].off;
	}
	if (!acceptable(err))
		(*bad)++;
	exempt++;
	free(d);
	exempt--;
}

/* The scenario; returns the number of answers that were not acceptable. */
static int scenario(struct fsops *fs, struct fake_api *api)
{
	uint64_t kr = 0, img = 0, byname = 0, link = 0;
	char target[64], value[64];
	size_t n, len;
	int bad = 0, err;

	err = ff_lookup(fs, INO_ROOT, "KR", &kr, NULL);
	if (!acceptable(err))
		bad++;
	read_dir(fs, INO_ROOT, &bad, &n);
	if (!kr)
		return bad;
	read_dir(fs, kr, &bad, &n);
	read_file(fs, kr, "5.json", &bad);
	read_file(fs, INO_ROOT, "KR.json", &bad);
	if (ff_lookup(fs, kr, "5", &img, NULL) == 0) {
		read_file(fs, img, "serverImageName", &bad);
		read_file(fs, img, "osType", &bad);
		err = ff_getxattr(fs, ino_image(ino_split(img).slot, ino_split(img).gen, 0),
				  "user.ncp.codeName", value, sizeof(value), &len);
		if (err && err != -ENODATA && !acceptable(err))
			bad++;
	}
	if (ff_lookup(fs, kr, ".by-name", &byname, NULL) == 0) {
		read_dir(fs, byname, &bad, &n);
		err = ff_lookup(fs, byname, "shared~6", &link, NULL);
		if (!acceptable(err))
			bad++;
		if (!err && !acceptable(ff_readlink(fs, link, target, sizeof(target))))
			bad++;
	}
	put(api, 5, "renamed", 2);
	fake_advance(api, 61);
	read_file(fs, kr, "5.json", &bad);
	read_dir(fs, kr, &bad, &n);
	read_file(fs, kr, "404", &bad);
	cache_drop_all(fsops_cache(fs));
	read_dir(fs, kr, &bad, &n);
	read_file(fs, INO_ROOT, "KR.json", &bad);
	fake_advance(api, 61);
	fsops_reclaim(fs);
	read_file(fs, kr, "7.json", &bad);
	return bad;
}

static int regjson_whole(struct fsops *fs, size_t images)
{
	uint64_t ino = 0;
	struct stat st;
	char *data = NULL;
	size_t len = 0;
	json_t *j = NULL;
	int ok = ff_lookup(fs, INO_ROOT, "KR.json", &ino, &st) == 0 &&
		 ff_read(fs, ino, 0, (size_t)st.st_size + 1, &data, &len) == 0 &&
		 len == (size_t)st.st_size;

	exempt++;
	if (ok)
		j = json_loadb(data, len, 0, NULL);
	ok = ok && json_is_array(j) && json_array_size(j) == images;
	json_decref(j);
	free(data);
	exempt--;
	return ok;
}

/* With allocations working: the filesystem answers everything right. */
static int serving(struct fsops *fs)
{
	uint64_t kr = 0, img = 0, byname = 0;
	char *data = NULL;
	size_t n, len = 0;
	int bad = 0, ok;

	ok = ff_lookup(fs, INO_ROOT, "KR", &kr, NULL) == 0;
	read_dir(fs, kr, &bad, &n);
	ok = ok && !bad && n == 40 + 2;
	ok = ok && ff_lookup(fs, kr, "5", &img, NULL) == 0;
	if (ok && ff_lookup(fs, img, "serverImageName", &img, NULL) == 0 &&
	    ff_read(fs, img, 0, 4096, &data, &len) == 0)
		ok = len == 8 && memcmp(data, "renamed\n", 8) == 0;
	else
		ok = 0;
	free(data);
	ok = ok && ff_lookup(fs, kr, ".by-name", &byname, NULL) == 0;
	if (ok)
		read_dir(fs, byname, &bad, &n);
	ok = ok && !bad && n == 40 + 2;
	/* KR.json whole, as its size says, and valid: nothing left out of an
	 * image while allocations failed is kept */
	ok = ok && regjson_whole(fs, 40);
	return ok;
}

int main(void)
{
	struct cache_source src;
	struct fsops_opts opts = { 60, 5, 0, 5, 0, 0.2 }; /* as mounted by default */
	long n, runs = 0;
	int bad_runs = 0, broken = 0;

	json_set_alloc_funcs(json_alloc, free);
	for (n = getenv("OOM_FROM") ? strtol(getenv("OOM_FROM"), NULL, 10) : 1;; n++) {
		struct fake_api *api;
		struct fsops *fs;
		int bad;

		exempt++;
		api = fake_new();
		fake_add_region(api, "KR");
		fake_pages(api, 16, 0, 0); /* pages of 16: three, two fetched at once */
		exempt--;
		for (uint64_t no = 1; no <= 40; no++)
			put(api, no,
			    no == 6 || no == 7 ? "shared"
			    : no == 8	       ? "shared~6"
					       : "image",
			    1);
		fake = fake_source(api);
		src = fake;
		src.region_list = ex_regions;
		src.list_page = ex_page;
		src.detail = ex_detail;
		atomic_store(&counted, 0);
		atomic_store(&fail_at, n);
		fs = fsops_new(&src, NULL, &opts);
		if (fs) {
			bad = scenario(fs, api);
			atomic_store(&fail_at, 0);
			if (bad) {
				bad_runs++;
				fprintf(stderr, "allocation %ld failing: %d bad answers\n", n, bad);
			}
			put(api, 5, "renamed", 2); /* where the scenario stopped early */
			fake_advance(api, 61);
			if (!serving(fs)) {
				broken++;
				fprintf(stderr, "allocation %ld failing: not serving after\n", n);
			}
			fsops_free(fs);
		}
		atomic_store(&fail_at, 0);
		runs++;
		exempt++;
		fake_free(api);
		exempt--;
		if (atomic_load(&counted) < n)
			break; /* the Nth allocation never came: every one was tried */
	}
	printf("swept %ld allocations\n", runs - 1);
	CHECK(runs > 100);
	CHECK(bad_runs == 0);
	CHECK(broken == 0);
	return TEST_REPORT();
}
