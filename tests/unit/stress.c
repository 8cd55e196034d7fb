/* SPDX-License-Identifier: MIT */
/* stress.c: a model-based stress test of the cache and inode layer, run by
 * test_stress (random seeds, 8 threads) and fuzz_ops (every choice taken
 * from the fuzzer's input, one thread).
 *
 * A random account (regions of 0 to 5,000 images; shared, long, 255-byte,
 * non-ASCII, "~"-suffixed and unusable names) lives in the fake source and,
 * as plain arrays, in a reference model. Each round first changes the
 * account (images added, renamed, changed, deleted), sometimes drops the
 * caches, then runs random operations on 8 threads: lookups, getattr, reads,
 * getxattr, readlink, readdir in random chunk sizes, forget, the fake clock
 * moved, caches dropped, memory reclaimed and API failures injected. Every
 * answer is checked against the model:
 *   - an image's files show one version it had since the caches were last
 *     dropped, never a mix of two, never another image's;
 *   - an inode kept from an earlier answer reads the same bytes or ESTALE;
 *   - a directory read in chunks never repeats an entry; it lists only
 *     images that existed, and exactly the account when nothing changed
 *     since the drop;
 *   - .by-name names are unique, at most 255 bytes, and each link leads to
 *     an image that carries that name (or name~no);
 *   - errors other than ENOENT/ESTALE come only while failures are injected. */
#include <errno.h>
#include <inttypes.h>
#include <jansson.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fakeapi.h"
#include "fakefuse.h"
#include "inode.h"
#include "log.h"
#include "stress.h"

#define NREG 4
#define THREADS_MAX 8
#define HELD 16

static const char *const region_code[NREG] = { "KR", "JPN", "SGN", "DEN" };
static const char *const os_name[] = { "UBUNTU", "ROCKY", "CENTOS", "윈도우" };

/* --- the reference model ------------------------------------------------ */

struct version {
	char *name;
	const char *os;
	int version;
};

struct mimage {
	uint64_t no;
	int region;
	int present;		   /* in the account now */
	int present_ok, absent_ok; /* was present / absent since the last drop */
	int stale_ok;		   /* was present before it: may be served stale */
	int fresh_from;		   /* v[fresh_from..] are the versions since the drop */
	struct version *v;	   /* every version since the last drop, */
	int nv;			   /* the last one current */
};

struct model {
	struct mimage *img; /* by number, ascending */
	size_t n, cap;
	uint64_t next_no;
	int exact[NREG]; /* nothing changed in the region since the last drop */
};

/* Shared by the threads of a round, read-only while they run. */
static struct model M;
static struct fake_api *api;
static struct fsops *fs;
static uint64_t region_ino[NREG];
static double ttl, stale;
static int faults; /* failures may be injected this round */
static atomic_int failures;
static atomic_long ops_done;

static void fail(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void fail(const char *fmt, ...)
{
	va_list ap;

	if (atomic_fetch_add(&failures, 1) >= 20)
		return; /* enough said */
	va_start(ap, fmt);
	fprintf(stderr, "test_stress: FAILED: ");
	vfprintf(stderr, fmt, ap);
	fputc('\n', stderr);
	va_end(ap);
}

/* A choice in [0, n): from the input when there is one (0 once it is used
 * up), else from the seed. */
static unsigned rnd(struct stress_rng *g, unsigned n)
{
	unsigned x;

	if (n <= 1)
		return 0;
	if (!g->data)
		return (unsigned)rand_r(&g->seed) % n;
	pthread_mutex_lock(&g->lock);
	if (g->pos + 2 <= g->len) {
		x = (unsigned)g->data[g->pos] << 8 | g->data[g->pos + 1];
		g->pos += 2;
	} else {
		x = 0;
		g->pos = g->len;
	}
	pthread_mutex_unlock(&g->lock);
	return x % n;
}

static struct mimage *model_find(uint64_t no)
{
	size_t lo = 0, hi = M.n;

	while (lo < hi) {
		size_t mid = (lo + hi) / 2;

		if (M.img[mid].no == no)
			return &M.img[mid];
		if (M.img[mid].no < no)
			lo = mid + 1;
		else
			hi = mid;
	}
	return NULL;
}

/* A name as accounts have them. */
static char *make_name(struct stress_rng *seed)
{
	static const char *const shared[] = { "web", "nightly-backup-web-2025-06-20",
					      "nightly-backup-db--2025-06-20", "이미지 백업",
					      "base" };
	char buf[512];
	size_t len = 0;

	switch (rnd(seed, 12)) {
	case 0:
	case 1:
	case 2:
		return strdup(shared[rnd(seed, 5)]);
	case 3: /* 255 bytes of three-byte characters, or one byte over */
		while (len + 3 <= 255) {
			memcpy(buf + len, "\xea\xb0\x80", 3);
			len += 3;
		}
		buf[len] = '\0';
		if (rnd(seed, 2))
			strcat(buf, "x");
		return strdup(buf);
	case 4: /* 250 to 256 ASCII bytes */
		len = 250 + rnd(seed, 7);
		memset(buf, 'a' + (char)rnd(seed, 3), len);
		buf[len] = '\0';
		return strdup(buf);
	case 5: /* another image's name~no */
		snprintf(buf, sizeof(buf), "web~%" PRIu64,
			 M.n ? M.img[rnd(seed, (unsigned)M.n)].no : 5);
		return strdup(buf);
	case 6: /* not a file name: not in .by-name */
	{
		static const char *const bad[] = { "", ".", "..", "a/b", "/" };

		return strdup(bad[rnd(seed, 5)]);
	}
	default:
		snprintf(buf, sizeof(buf), "%s-%u", rnd(seed, 2) ? "app" : "서버", rnd(seed, 400));
		return strdup(buf);
	}
}

static void put_version(struct mimage *mi, struct version v)
{
	char *json = fake_image_json(mi->no, v.name, v.os, v.version);

	fake_put(api, region_code[mi->region], mi->no, json);
	free(json);
	mi->v = realloc(mi->v, (size_t)(mi->nv + 1) * sizeof(*mi->v));
	if (!mi->v)
		abort();
	mi->v[mi->nv++] = v;
	mi->present = 1;
	mi->present_ok = 1;
}

static void model_add(struct stress_rng *seed, int region)
{
	struct mimage *mi;
	struct version v;

	if (M.n == M.cap) {
		M.cap = M.cap ? M.cap * 2 : 256;
		M.img = realloc(M.img, M.cap * sizeof(*M.img));
		if (!M.img)
			abort();
	}
	M.next_no += 1 + rnd(seed, 3); /* gaps: numbers that never existed */
	mi = &M.img[M.n++];
	memset(mi, 0, sizeof(*mi));
	mi->no = M.next_no;
	mi->region = region;
	mi->absent_ok = 1;
	v.name = make_name(seed);
	v.os = os_name[rnd(seed, 4)];
	v.version = 1;
	put_version(mi, v);
	M.exact[region] = 0;
}

/* One change to the account: a new image, a rename, a changed field, a
 * deletion or an image coming back. */
static void model_mutate(struct stress_rng *seed)
{
	struct mimage *mi;
	struct version v;

	if (M.n == 0 || rnd(seed, 5) == 0) {
		model_add(seed, (int)rnd(seed, NREG));
		return;
	}
	mi = &M.img[rnd(seed, (unsigned)M.n)];
	M.exact[mi->region] = 0;
	if (mi->present && rnd(seed, 4) == 0) {
		fake_delete(api, region_code[mi->region], mi->no);
		mi->present = 0;
		mi->absent_ok = 1;
		return;
	}
	v = mi->v[mi->nv - 1];
	v.version++;
	if (rnd(seed, 2))
		v.name = make_name(seed);
	else
		v.name = strdup(v.name);
	if (rnd(seed, 3) == 0)
		v.os = os_name[rnd(seed, 4)];
	put_version(mi, v);
}

/* The caches were dropped: from now on only the current account may show,
 * except that with stale set, a failed refresh may still serve the last good
 * answer from before the drop (stale-if-error). */
static void model_fresh(void)
{
	for (size_t i = 0; i < M.n; i++) {
		struct mimage *mi = &M.img[i];

		if (stale > 0) {
			mi->stale_ok |= mi->present_ok;
		} else {
			for (int k = 0; k < mi->nv - 1; k++)
				free(mi->v[k].name);
			if (mi->nv > 1) {
				mi->v[0] = mi->v[mi->nv - 1];
				mi->nv = 1;
			}
		}
		mi->fresh_from = mi->nv - 1;
		mi->present_ok = mi->present;
		mi->absent_ok = !mi->present;
	}
	for (int r = 0; r < NREG; r++)
		M.exact[r] = 1;
}

/* Failures are injected this round and stale answers may stand in. */
static int stale_served(void)
{
	return faults && stale > 0;
}

/* Version k of mi may show now. */
static int version_ok(const struct mimage *mi, int k)
{
	return k >= mi->fresh_from || stale_served();
}

/* mi may be found now. */
static int found_ok(const struct mimage *mi)
{
	return mi->present_ok || (mi->stale_ok && stale_served());
}

/* Nothing changed in region r since the drop, and nothing stale can show. */
static int exact(int r)
{
	return M.exact[r] && !stale_served();
}

static void model_free(void)
{
	for (size_t i = 0; i < M.n; i++) {
		for (int k = 0; k < M.img[i].nv; k++)
			free(M.img[i].v[k].name);
		free(M.img[i].v);
	}
	free(M.img);
	memset(&M, 0, sizeof(M));
}

static int usable(const char *name)
{
	size_t len = strlen(name);

	return len > 0 && len <= 255 && strcmp(name, ".") && strcmp(name, "..") &&
	       !strchr(name, '/');
}

/* An error is fine when failures are being injected. */
static int injected(int err)
{
	return faults && (err == -EIO || err == -EACCES);
}

/* --- one thread's view --------------------------------------------------- */

struct held {
	uint64_t ino;
	char *data;
	size_t len;
};

struct worker {
	struct stress_rng own, *rng;
	int ops;
	struct held held[HELD];
	int nheld;
};

static void hold(struct worker *w, uint64_t ino, const char *data, size_t len)
{
	struct held *h;

	if (w->nheld == HELD) {
		h = &w->held[rnd(w->rng, HELD)];
		free(h->data);
	} else {
		h = &w->held[w->nheld++];
	}
	h->ino = ino;
	h->data = malloc(len ? len : 1);
	if (!h->data)
		abort();
	memcpy(h->data, data, len);
	h->len = len;
}

/* Reads a whole small file under dir: 0, or -errno. */
static int read_child(uint64_t dir, const char *name, char **data, size_t *len, uint64_t *ino)
{
	uint64_t child = 0;
	int err = ff_lookup(fs, dir, name, &child, NULL);

	*data = NULL;
	if (err)
		return err;
	if (ino)
		*ino = child;
	return ff_read(fs, child, 0, 1 << 16, data, len);
}

/* name\n, version\n and the os code name read through one image inode
 * must be one version of that image. */
static void check_image(struct worker *w, struct mimage *mi, uint64_t img)
{
	char *name = NULL, *ver = NULL, os[64];
	size_t nlen = 0, vlen = 0, olen = 0;
	uint64_t name_ino = 0, os_ino = 0;
	int err, match = 0;

	err = read_child(img, "serverImageName", &name, &nlen, &name_ino);
	if (!err)
		err = read_child(img, "version", &ver, &vlen, NULL);
	if (!err)
		err = ff_lookup(fs, img, "osType", &os_ino, NULL);
	if (!err)
		err = ff_getxattr(fs, os_ino, "user.ncp.codeName", os, sizeof(os) - 1, &olen);
	if (err) {
		if (err != -ESTALE && !injected(err))
			fail("image %" PRIu64 ": reading its files: %s", mi->no, strerror(-err));
		goto out;
	}
	os[olen] = '\0';
	for (int k = 0; k < mi->nv && !match; k++) {
		const struct version *v = &mi->v[k];

		if (!version_ok(mi, k))
			continue;
		size_t l = strlen(v->name);
		char vs[16];

		snprintf(vs, sizeof(vs), "%d\n", v->version);
		match = nlen == l + 1 && !memcmp(name, v->name, l) && name[l] == '\n' &&
			vlen == strlen(vs) && !memcmp(ver, vs, vlen) && !strcmp(os, v->os);
	}
	if (!match)
		fail("image %" PRIu64 ": name %.*s version %.*s os %s is no version it had", mi->no,
		     (int)(nlen > 40 ? 40 : nlen), name, (int)vlen, ver, os);
	else
		hold(w, name_ino, name, nlen);
out:
	free(name);
	free(ver);
}

/* A lookup of an image number, present, gone or never there. */
static void op_image(struct worker *w)
{
	int r = (int)rnd(w->rng, NREG), err;
	struct mimage *mi = NULL;
	char no[32];
	uint64_t img = 0;
	struct stat st;

	if (M.n && rnd(w->rng, 5)) {
		mi = &M.img[rnd(w->rng, (unsigned)M.n)];
		r = mi->region;
		snprintf(no, sizeof(no), "%" PRIu64, mi->no);
	} else {
		snprintf(no, sizeof(no), "%u", 1 + rnd(w->rng, (unsigned)M.next_no + 10));
		mi = model_find(strtoull(no, NULL, 10));
		if (mi && mi->region != r)
			mi = NULL;
	}
	err = ff_lookup(fs, region_ino[r], no, &img, &st);
	if (err == 0) {
		if (!mi || !found_ok(mi)) {
			struct mimage *any = model_find(strtoull(no, NULL, 10));

			fail("%s/%s found, never there since the drop (it is in %s, %s; faults %d)",
			     region_code[r], no, any ? region_code[any->region] : "no region",
			     any && any->present ? "present" : "absent", faults);
			return;
		}
		if (!S_ISDIR(st.st_mode))
			fail("%s/%s is not a directory", region_code[r], no);
		check_image(w, mi, img);
		if (rnd(w->rng, 2))
			ff_forget(fs, img, 1);
	} else if (err == -ENOENT) {
		if (mi && !mi->absent_ok && !stale_served())
			fail("%s/%s: ENOENT, yet present since the drop", region_code[r], no);
	} else if (!injected(err)) {
		fail("%s/%s: lookup: %s", region_code[r], no, strerror(-err));
	}
}

/* <no>.json parses and is one version of the image. */
static void op_json(struct worker *w)
{
	struct mimage *mi;
	char name[40], *data = NULL;
	size_t len = 0;
	json_t *j;
	int err, match = 0;

	if (!M.n)
		return;
	mi = &M.img[rnd(w->rng, (unsigned)M.n)];
	snprintf(name, sizeof(name), "%" PRIu64 ".json", mi->no);
	err = read_child(region_ino[mi->region], name, &data, &len, NULL);
	if (err) {
		/* ESTALE: two refreshes passed between the lookup and the read */
		if (!(err == -ENOENT && (mi->absent_ok || stale_served())) && err != -ESTALE &&
		    !injected(err))
			fail("%s: %s", name, strerror(-err));
		return;
	}
	j = json_loadb(data, len, 0, NULL);
	for (int k = 0; j && k < mi->nv && !match; k++)
		match = version_ok(mi, k) &&
			json_is_string(json_object_get(j, "serverImageName")) &&
			!strcmp(json_string_value(json_object_get(j, "serverImageName")),
				mi->v[k].name) &&
			json_integer_value(json_object_get(j, "version")) == mi->v[k].version;
	if (!match)
		fail("%s: not a version of the image: %.60s", name, data);
	json_decref(j);
	free(data);
}

/* <region>.json: an array of versions of images that were listed, each
 * once, as long as stat says. */
static void op_regjson(struct worker *w)
{
	int r = (int)rnd(w->rng, NREG), err;
	char name[32], *data = NULL;
	size_t len = 0, n;
	uint64_t ino = 0;
	struct stat st;
	json_t *j, *item;

	snprintf(name, sizeof(name), "%s.json", region_code[r]);
	err = ff_lookup(fs, INO_ROOT, name, &ino, &st);
	if (err) {
		if (!injected(err))
			fail("lookup %s: %s", name, strerror(-err));
		return;
	}
	err = ff_read(fs, ino, 0, (size_t)st.st_size + 4096, &data, &len);
	if (err) {
		if (err != -ESTALE && !injected(err))
			fail("read %s: %s", name, strerror(-err));
		free(data);
		return;
	}
	j = json_loadb(data, len, 0, NULL);
	if (!json_is_array(j))
		fail("%s: not a JSON array (%zu bytes)", name, len);
	n = json_array_size(j);
	for (size_t i = 0; i < n; i++) {
		const char *no;
		struct mimage *mi;
		int match = 0;

		item = json_array_get(j, i);
		no = json_string_value(json_object_get(item, "serverImageNo"));
		mi = no ? model_find(strtoull(no, NULL, 10)) : NULL;
		for (size_t k = 0; k < i && mi; k++)
			if (json_equal(json_object_get(json_array_get(j, k), "serverImageNo"),
				       json_object_get(item, "serverImageNo")))
				fail("%s: %s twice", name, no);
		for (int v = 0; mi && v < mi->nv && !match; v++)
			match = version_ok(mi, v) &&
				json_is_string(json_object_get(item, "serverImageName")) &&
				!strcmp(json_string_value(json_object_get(item, "serverImageName")),
					mi->v[v].name) &&
				json_integer_value(json_object_get(item, "version")) ==
					mi->v[v].version;
		if (!mi || mi->region != r || !found_ok(mi) || !match)
			fail("%s: item %zu (%s) is no version of an image listed there", name, i,
			     no ? no : "no number");
	}
	json_decref(j);
	free(data);
}

/* An inode from an earlier answer: the same bytes, or ESTALE. */
static void op_held(struct worker *w)
{
	struct held *h;
	char *data = NULL;
	size_t len = 0;
	struct stat st;
	int err;

	if (!w->nheld)
		return;
	h = &w->held[rnd(w->rng, (unsigned)w->nheld)];
	if (rnd(w->rng, 4) == 0) {
		err = ff_getattr(fs, h->ino, &st);
		if (err == 0 && (size_t)st.st_size != h->len)
			fail("held inode %" PRIx64 ": size %lld, was %zu", h->ino,
			     (long long)st.st_size, h->len);
		else if (err && err != -ESTALE && !injected(err))
			fail("held inode %" PRIx64 ": getattr: %s", h->ino, strerror(-err));
		return;
	}
	err = ff_read(fs, h->ino, 0, 1 << 16, &data, &len);
	if (err == 0 && (len != h->len || memcmp(data, h->data, len)))
		fail("held inode %" PRIx64 ": now reads %.*s, was %.*s", h->ino,
		     (int)(len > 40 ? 40 : len), data, (int)(h->len > 40 ? 40 : h->len), h->data);
	else if (err && err != -ESTALE && !injected(err))
		fail("held inode %" PRIx64 ": read: %s", h->ino, strerror(-err));
	free(data);
}

/* at least one entry of a 255-byte name fits, as in any kernel request */
static const size_t chunk_sizes[] = { 512, 700, 1000, 2048, 4096, 65536 };

static int by_name(const void *a, const void *b)
{
	return strcmp(((const struct ff_dirent *)a)->name, ((const struct ff_dirent *)b)->name);
}

/* Entries other than . and .., sorted by name; repeated names reported. */
static size_t entries_of(struct ff_dirent *d, size_t n, const char *what)
{
	size_t k = 0;

	for (size_t i = 0; i < n; i++)
		if (strcmp(d[i].name, ".") && strcmp(d[i].name, ".."))
			d[k++] = d[i];
	qsort(d, k, sizeof(*d), by_name);
	for (size_t i = 1; i < k; i++)
		if (!strcmp(d[i - 1].name, d[i].name))
			fail("%s: %s listed twice", what, d[i].name);
	return k;
}

static void op_readdir_region(struct worker *w, int r, int serial)
{
	size_t size = chunk_sizes[rnd(w->rng, 6)], n = 0, k, want = 0;
	struct ff_dirent *d = NULL;
	int err = ff_readdir_all(fs, region_ino[r], size, (int)rnd(w->rng, 2), &d, &n);

	if (err) {
		if (!injected(err))
			fail("readdir %s: %s", region_code[r], strerror(-err));
		free(d);
		return;
	}
	k = entries_of(d, n, region_code[r]);
	for (size_t i = 0; i < k; i++) {
		struct mimage *mi = model_find(strtoull(d[i].name, NULL, 10));

		if (!mi || mi->region != r || !found_ok(mi))
			fail("readdir %s: %s was never there since the drop", region_code[r],
			     d[i].name);
		else if (ino_split(d[i].ino).kind != INO_K_NODE || ino_split(d[i].ino).node)
			fail("readdir %s: %s has inode %" PRIx64, region_code[r], d[i].name,
			     d[i].ino);
	}
	if (exact(r) || serial) {
		for (size_t i = 0; i < M.n; i++)
			want += M.img[i].region == r && M.img[i].present;
		if (k != want)
			fail("readdir %s in chunks of %zu: %zu entries, the account has %zu",
			     region_code[r], size, k, want);
	}
	free(d);
}

/* .by-name: unique names of at most 255 bytes, each a link to an image
 * carrying that name or name~no; when nothing changed since the drop, one
 * link per image with a usable name. */
static void op_by_name(struct worker *w, int r, int serial)
{
	size_t size = chunk_sizes[rnd(w->rng, 6)], n = 0, k, want = 0, every;
	struct ff_dirent *d = NULL;
	uint64_t dir = 0;
	int all;
	unsigned char *seen = NULL;
	int err;

	err = ff_lookup(fs, region_ino[r], ".by-name", &dir, NULL);
	if (!err)
		err = ff_readdir_all(fs, dir, size, 1, &d, &n);
	if (err) {
		if (!injected(err))
			fail("%s/.by-name: %s", region_code[r], strerror(-err));
		free(d);
		return;
	}
	k = entries_of(d, n, ".by-name");
	every = serial ? 1 : 1 + k / 8; /* check some links, or all */
	all = every == 1;
	seen = calloc(M.n + 1, 1);
	if (!seen)
		abort();
	for (size_t i = rnd(w->rng, (unsigned)every); i < k; i += every) {
		char target[64];
		struct mimage *mi;
		int match = 0;

		if (strlen(d[i].name) > 255)
			fail(".by-name: a name of %zu bytes", strlen(d[i].name));
		err = ff_readlink(fs, d[i].ino, target, sizeof(target));
		if (err) {
			if (serial || (err != -ESTALE && !injected(err)))
				fail(".by-name/%s: readlink: %s", d[i].name, strerror(-err));
			all = 0;
			continue;
		}
		mi = strncmp(target, "../", 3) ? NULL : model_find(strtoull(target + 3, NULL, 10));
		if (!mi || mi->region != r || !found_ok(mi)) {
			fail(".by-name/%.40s -> %s: no such image", d[i].name, target);
			continue;
		}
		seen[mi - M.img] = 1;
		for (int v = 0; v < mi->nv && !match; v++) {
			const char *name = mi->v[v].name, *dn = d[i].name;

			if (!version_ok(mi, v))
				continue;
			size_t sl = strlen(target + 3) + 1, dl = strlen(dn);

			if (!usable(name))
				continue;
			/* the name, or the name cut to fit then ~no */
			match = !strcmp(name, dn) || (dl > sl && dn[dl - sl] == '~' &&
						      !strcmp(dn + dl - sl + 1, target + 3) &&
						      !strncmp(name, dn, dl - sl));
		}
		if (!match)
			fail(".by-name/%.40s -> %s: the image is not named so", d[i].name, target);
	}
	if (exact(r) || serial) {
		for (size_t i = 0; i < M.n; i++) {
			struct mimage *mi = &M.img[i];
			int plain = 1;

			if (mi->region != r || !mi->present || !usable(mi->v[mi->nv - 1].name))
				continue;
			want++;
			if (all && !seen[i])
				fail(".by-name: no link to %" PRIu64, mi->no);
			/* a name no other image has, without '~', is listed as it is */
			for (size_t j = 0; j < M.n && plain; j++)
				plain = j == i || M.img[j].region != r || !M.img[j].present ||
					strcmp(M.img[j].v[M.img[j].nv - 1].name,
					       mi->v[mi->nv - 1].name);
			if (plain && !strchr(mi->v[mi->nv - 1].name, '~') && all) {
				struct ff_dirent key;

				snprintf(key.name, sizeof(key.name), "%s", mi->v[mi->nv - 1].name);
				if (!bsearch(&key, d, k, sizeof(*d), by_name))
					fail(".by-name: %.40s (only %" PRIu64
					     ") is not listed as it is",
					     key.name, mi->no);
			}
		}
		if (k != want)
			fail("%s/.by-name: %zu entries, %zu images have usable names",
			     region_code[r], k, want);
	}
	free(seen);
	free(d);
}

/* Names that are no image number: ENOENT at once. */
static void op_nonsense(struct worker *w)
{
	static const char *const names[] = { "abc", "00",    "99999999999999999999999",
					     "-1",  "3135x", ".by-name2" };
	const char *name = names[rnd(w->rng, 6)];
	int err = ff_lookup(fs, region_ino[rnd(w->rng, NREG)], name, NULL, NULL);

	if (err != -ENOENT && !injected(err))
		fail("lookup %s: %s", name, err ? strerror(-err) : "found");
}

static void op_root(struct worker *w)
{
	struct ff_dirent *d = NULL;
	size_t n = 0;
	int err;

	if (rnd(w->rng, 2)) {
		err = ff_readdir_all(fs, INO_ROOT, chunk_sizes[rnd(w->rng, 6)], 1, &d, &n);
		if (!err && entries_of(d, n, "/") != NREG)
			fail("/: %zu regions listed", n);
	} else {
		uint64_t ino = 0;

		err = ff_lookup(fs, INO_ROOT, region_code[rnd(w->rng, NREG)], &ino, NULL);
		if (!err && ino_split(ino).kind != INO_K_REGION)
			fail("a region's inode %" PRIx64, ino);
		if (!err && rnd(w->rng, 2)) {
			int e = ff_lookup(fs, INO_ROOT, "MARS", NULL, NULL);

			if (e != -ENOENT && !injected(e))
				fail("/MARS: %s", e ? strerror(-e) : "found");
		}
	}
	if (err && !injected(err))
		fail("/: %s", strerror(-err));
	free(d);
}

static void op_world(struct worker *w)
{
	static const enum ncp_errkind kinds[] = { NCP_ERR_IO, NCP_ERR_AUTH };

	switch (rnd(w->rng, 4)) {
	case 0: {
		double steps[] = { 0.5, ttl / 2, ttl + 0.5, ttl + stale + 1 };

		fake_advance(api, steps[rnd(w->rng, 4)]);
		break;
	}
	case 1:
		fsops_drop_caches(fs);
		break;
	case 2:
		fsops_reclaim(fs);
		break;
	default:
		if (faults)
			fake_fail(api, (enum fake_action)rnd(w->rng, FAKE_NACTIONS),
				  1 + (int)rnd(w->rng, 3), kinds[rnd(w->rng, 2)]);
	}
}

static void *worker_main(void *arg)
{
	struct worker *w = arg;

	for (int i = 0; i < w->ops; i++) {
		unsigned op = rnd(w->rng, 100);

		if (op < 35)
			op_image(w);
		else if (op < 50)
			op_held(w);
		else if (op < 56)
			op_json(w);
		else if (op < 58)
			op_regjson(w);
		else if (op < 68)
			op_readdir_region(w, (int)rnd(w->rng, NREG), 0);
		else if (op < 76)
			op_by_name(w, (int)rnd(w->rng, NREG), 0);
		else if (op < 84)
			op_nonsense(w);
		else if (op < 92)
			op_root(w);
		else
			op_world(w);
		atomic_fetch_add(&ops_done, 1);
	}
	return NULL;
}

static void clear_faults(void)
{
	for (int a = 0; a < FAKE_NACTIONS; a++)
		fake_fail(api, (enum fake_action)a, 0, NCP_OK);
}

/* One account, one mount, rounds of changes and concurrent operations. */
int stress_run(struct stress_rng *g, const struct stress_opts *so)
{
	static const double ttls[] = { 0, 1, 60 };
	struct worker wk[THREADS_MAX];
	pthread_t t[THREADS_MAX];
	struct cache_source src;
	struct fsops_opts o;
	int big = (int)rnd(g, NREG); /* one region may be large */
	int threads = so->threads < 1 ? 1 : so->threads > THREADS_MAX ? THREADS_MAX : so->threads;
	int before = atomic_load(&failures);

	memset(wk, 0, sizeof(wk));
	api = fake_new();
	M.next_no = 100000 + rnd(g, 1000);
	for (int r = 0; r < NREG; r++) {
		unsigned sizes[] = { 0, 1 + rnd(g, 3), 10 + rnd(g, 200),
				     r == big && rnd(g, 3) == 0 ? 1000 + rnd(g, 4001) : 50 };
		unsigned n = sizes[rnd(g, 4)];

		if (n > so->max_region)
			n = so->max_region;
		fake_add_region(api, region_code[r]);
		for (unsigned i = 0; i < n; i++)
			model_add(g, r);
	}
	/* pages capped below what is asked, rows shifting between pages */
	fake_pages(api, (long[]){ 0, 50, 500, 3 }[rnd(g, so->max_region < 100 ? 4 : 3)],
		   (int)rnd(g, 2), 0);
	ttl = ttls[rnd(g, 3)];
	stale = rnd(g, 2) ? 0 : 30;
	/* refreshes ahead of the ttl and in the background, or none; images in
	 * transition held a shorter time, or not */
	o = (struct fsops_opts){ ttl, rnd(g, 2) ? 0 : 5,  stale, rnd(g, 2) ? 0 : 0.5,
				 0,   rnd(g, 3) ? 0.2 : 0 };
	src = fake_source(api);
	fs = fsops_new(&src, NULL, &o);
	if (!fs)
		abort();
	ff_init(fs);
	model_fresh();
	for (int r = 0; r < NREG; r++)
		if (ff_lookup(fs, INO_ROOT, region_code[r], &region_ino[r], NULL) != 0)
			fail("region %s not found", region_code[r]);

	for (int round = 0; round < so->rounds; round++) {
		if (round > 0) {
			unsigned changes = rnd(g, 3) ? rnd(g, 8) : rnd(g, 200);

			for (unsigned i = 0; i < changes; i++)
				model_mutate(g);
		}
		faults = 0;
		clear_faults();
		if (round == 0 || rnd(g, 3) == 0) {
			/* after a drop, one thread sees exactly the account */
			struct worker one = { .rng = g };

			fsops_drop_caches(fs);
			model_fresh();
			for (int r = 0; r < NREG; r++) {
				op_readdir_region(&one, r, 1);
				op_by_name(&one, r, 1);
			}
			for (int h = 0; h < one.nheld; h++)
				free(one.held[h].data);
		}
		faults = rnd(g, 4) == 0;
		for (int i = 0; i < threads; i++) {
			wk[i].own.seed = g->seed * 7919u + (unsigned)(round * threads + i);
			wk[i].rng = g->data ? g : &wk[i].own;
			wk[i].ops = so->ops;
			if (threads == 1)
				worker_main(&wk[i]);
			else if (pthread_create(&t[i], NULL, worker_main, &wk[i]) != 0)
				abort();
		}
		for (int i = 0; threads > 1 && i < threads; i++)
			pthread_join(t[i], NULL);
	}
	clear_faults();
	for (int i = 0; i < threads; i++)
		for (int h = 0; h < wk[i].nheld; h++)
			free(wk[i].held[h].data);
	fsops_free(fs);
	fake_free(api);
	model_free();
	return atomic_load(&failures) - before;
}

long stress_ops_done(void)
{
	return atomic_load(&ops_done);
}
