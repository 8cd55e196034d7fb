/* SPDX-License-Identifier: MIT */
/* test_tree.c: the JSON-to-tree mapping, against golden files: every
 * golden/NAME.json is mapped and dumped (one line per node: path, kind, size,
 * content, codeName) and compared with golden/NAME.expected. Run with
 * REGEN=1 to rewrite the expected files after a deliberate change. */
#include <stdlib.h>

#include "testhelp.h"
#include "tree.h"

static void dump_node(const struct tree *t, uint32_t node, const char *path, FILE *out)
{
	if (tree_kind(t, node) == TREE_DIR) {
		fprintf(out, "%s/\tdir\tentries=%u subdirs=%u\n", path, tree_nchildren(t, node),
			tree_nsubdirs(t, node));
		for (uint32_t i = 0; i < tree_nchildren(t, node); i++) {
			uint32_t c = tree_child(t, node, i);
			char sub[1024];

			snprintf(sub, sizeof(sub), "%s/%s", path, tree_name(t, c));
			dump_node(t, c, sub, out);
		}
		return;
	}
	char buf[4096];
	size_t n = tree_read(t, node, 0, buf, sizeof(buf));

	fprintf(out, "%s\tfile\tsize=%zu\t", path, tree_size(t, node));
	for (size_t i = 0; i < n; i++)
		fprintf(out, buf[i] == '\n' ? "\\n" : "%c", buf[i]);
	if (tree_codename(t, node))
		fprintf(out, "\tcodeName=%s", tree_codename(t, node));
	fputc('\n', out);
}

static char *slurp(const char *path, size_t *len)
{
	FILE *f = fopen(path, "rb");
	char *buf = NULL;
	long n;

	if (!f)
		return NULL;
	fseek(f, 0, SEEK_END);
	n = ftell(f);
	rewind(f);
	buf = malloc((size_t)n + 1);
	if (buf && fread(buf, 1, (size_t)n, f) != (size_t)n) {
		free(buf);
		buf = NULL;
	}
	if (buf)
		buf[n] = '\0';
	*len = (size_t)n;
	fclose(f);
	return buf;
}

static void golden(const char *name)
{
	char in[256], exp[256], err[128];
	json_error_t jerr;
	json_t *j;
	struct tree *t;
	unsigned skipped = 0;
	char *got = NULL, *want;
	size_t got_len = 0, want_len = 0;
	FILE *mem;

	snprintf(in, sizeof(in), "golden/%s.json", name);
	snprintf(exp, sizeof(exp), "golden/%s.expected", name);
	j = json_load_file(in, 0, &jerr);
	CHECK(j != NULL);
	if (!j)
		return;
	t = tree_build(j, &skipped, err, sizeof(err));
	CHECK(t != NULL);
	if (!t) {
		json_decref(j);
		return;
	}
	mem = open_memstream(&got, &got_len);
	fprintf(mem, "skipped=%u\n", skipped);
	dump_node(t, 0, "", mem);
	fclose(mem);
	if (getenv("REGEN")) {
		FILE *f = fopen(exp, "w");

		fputs(got, f);
		fclose(f);
	}
	want = slurp(exp, &want_len);
	CHECK(want != NULL);
	if (want && (got_len != want_len || memcmp(got, want, got_len) != 0)) {
		fprintf(stderr, "%s: mapping differs from %s:\n%s", name, exp, got);
		CHECK(0);
	} else if (want) {
		CHECK(1);
	}
	/* .json round trip: the rebuilt image maps to the very same tree. */
	{
		json_t *again = tree_to_json(t);
		struct tree *t2 = tree_build(again, NULL, err, sizeof(err));

		CHECK(t2 && tree_equal(t, t2));
		tree_unref(t2);
		json_decref(again);
	}
	/* <no>.json: its size is known before it is read, and matches. */
	{
		size_t len = 0, size = tree_json_size(t);
		char *text = tree_json_text(t, &len);

		CHECK(text && size == len && text[len - 1] == '\n');
		CHECK(tree_json_size(t) == size);
		free(text);
	}
	free(want);
	free(got);
	tree_unref(t);
	json_decref(j);
}

static void test_reads(void)
{
	json_t *j = json_pack("{s:s, s:I}", "name", "abcdef", "size", (json_int_t)10737418240);
	char err[128], buf[16];
	struct tree *t = tree_build(j, NULL, err, sizeof(err));
	uint32_t n;

	CHECK(tree_lookup(t, 0, "name", &n) == 0);
	CHECK(tree_size(t, n) == 7);
	CHECK(tree_read(t, n, 0, buf, 3) == 3 && memcmp(buf, "abc", 3) == 0);
	CHECK(tree_read(t, n, 3, buf, 16) == 4 && memcmp(buf, "def\n", 4) == 0);
	CHECK(tree_read(t, n, 6, buf, 16) == 1 && buf[0] == '\n');
	CHECK(tree_read(t, n, 7, buf, 16) == 0);
	CHECK(tree_lookup(t, 0, "size", &n) == 0);
	CHECK_STR(tree_value(t, n), "10737418240");
	CHECK(tree_lookup(t, 0, "nope", &n) == -1);
	tree_unref(t);
	json_decref(j);
}

static void test_array_names(void)
{
	json_t *j = json_pack("{s:[s,s,s]}", "l", "a", "b", "c");
	char err[128];
	struct tree *t = tree_build(j, NULL, err, sizeof(err));
	uint32_t l, n;

	CHECK(tree_lookup(t, 0, "l", &l) == 0);
	CHECK(tree_lookup(t, l, "2", &n) == 0 && strcmp(tree_value(t, n), "c") == 0);
	CHECK(tree_lookup(t, l, "3", &n) == -1);
	CHECK(tree_lookup(t, l, "01", &n) == -1);
	CHECK(tree_lookup(t, l, "+1", &n) == -1);
	CHECK(tree_lookup(t, l, "-0", &n) == -1);
	CHECK(tree_lookup(t, l, "", &n) == -1);
	tree_unref(t);
	json_decref(j);
}

static void test_limits(void)
{
	char err[128];
	json_t *deep = json_object(), *cur = deep;
	struct tree *t;

	for (int i = 0; i < TREE_MAX_DEPTH + 1; i++) {
		json_t *next = json_object();

		json_object_set_new(cur, "d", next);
		cur = next;
	}
	t = tree_build(deep, NULL, err, sizeof(err));
	CHECK(t == NULL && strstr(err, "deeper") != NULL);
	json_decref(deep);

	json_t *arr = json_array();
	CHECK(tree_build(arr, NULL, err, sizeof(err)) == NULL);
	json_decref(arr);
}

static void test_dates(void)
{
	int64_t w;

	CHECK(tree_parse_date("2025-06-20T09:59:39+0900", &w) == 0 && w == 1750381179);
	CHECK(tree_parse_date("2025-06-20T00:59:39Z", &w) == 0 && w == 1750381179);
	CHECK(tree_parse_date("2025-06-20T09:59:39+09:00", &w) == 0 && w == 1750381179);
	CHECK(tree_parse_date("2025-06-19T19:59:39-0500", &w) == 0 && w == 1750381179);
	CHECK(tree_parse_date("yesterday", &w) == -1);
	CHECK(tree_parse_date("2025-13-20T09:59:39+0900", &w) == -1);
	CHECK(tree_parse_date("2025-06-20T09:59:39+0900junk", &w) == -1);
}

/* Strings shared across trees read back right, whatever their kind: codes
 * with and without a codeName, a codeName too long to share, values with
 * and without digits; equal images are equal trees and JSON round-trips;
 * once the shared table is full (hostile answers full of distinct keys),
 * new strings stay in their own tree and still read back. */
static void test_shared_strings(void)
{
	const char *text = "{\"serverImageNo\": \"5000\", \"osType\": {\"code\": \"UBUNTU\", "
			   "\"codeName\": \"Ubuntu\"}, \"noName\": {\"code\": \"X\", "
			   "\"codeName\": null}, \"status\": \"created\", \"size\": 10737418240}";
	json_t *j = json_loads(text, 0, NULL), *back, *big;
	struct tree *a, *b, *c;
	char err[128], *longname = malloc(600);
	uint32_t n;

	a = tree_build(j, NULL, err, sizeof(err));
	b = tree_build(j, NULL, err, sizeof(err));
	CHECK(a && b && tree_equal(a, b));
	CHECK(tree_lookup(a, 0, "osType", &n) == 0 && !strcmp(tree_value(a, n), "UBUNTU") &&
	      !strcmp(tree_codename(a, n), "Ubuntu") && tree_size(a, n) == 7);
	CHECK(tree_lookup(b, 0, "noName", &n) == 0 && !strcmp(tree_value(b, n), "X") &&
	      !tree_codename(b, n));
	back = tree_to_json(b);
	CHECK(json_equal(back, j));
	json_decref(back);
	/* a codeName too long to share, next to a shared one */
	memset(longname, 'n', 599);
	longname[599] = '\0';
	json_object_set_new(json_object_get(j, "osType"), "codeName", json_string(longname));
	c = tree_build(j, NULL, err, sizeof(err));
	CHECK(c && !tree_equal(a, c));
	CHECK(c && tree_lookup(c, 0, "osType", &n) == 0 && !strcmp(tree_value(c, n), "UBUNTU") &&
	      !strcmp(tree_codename(c, n), longname));
	back = c ? tree_to_json(c) : NULL;
	CHECK(json_equal(back, j));
	json_decref(back);
	tree_unref(c);
	/* 300 trees of 1,000 distinct keys each: more than the shared table holds */
	for (int part = 0; part < 300; part++) {
		char key[32];
		uint32_t f;

		big = json_object();
		for (int i = 0; i < 1000; i++) {
			snprintf(key, sizeof(key), "k%d-%d", part, i);
			json_object_set_new(big, key, json_integer(i));
		}
		c = tree_build(big, NULL, err, sizeof(err));
		CHECK(c != NULL);
		snprintf(key, sizeof(key), "k%d-999", part);
		CHECK(c && tree_lookup(c, 0, key, &f) == 0 && !strcmp(tree_value(c, f), "999"));
		back = c ? tree_to_json(c) : NULL;
		CHECK(json_equal(back, big));
		json_decref(back);
		tree_unref(c);
		json_decref(big);
	}
	tree_unref(a);
	tree_unref(b);
	json_decref(j);
	free(longname);
}

/* A digit-free name made of n (as the API's keys and codes are). */
static void letters(char *buf, const char *prefix, unsigned n)
{
	size_t at = strlen(prefix);

	memcpy(buf, prefix, at);
	do {
		buf[at++] = (char)('a' + n % 26);
		n /= 26;
	} while (n);
	buf[at] = '\0';
}

/* The size of a small image built from strings nobody has seen. */
static size_t fresh_bytes(const char *prefix)
{
	char k1[32], k2[32], v1[32], v2[32], err[128];
	json_t *j;
	struct tree *t;
	size_t bytes;

	letters(k1, prefix, 1);
	letters(k2, prefix, 2);
	letters(v1, prefix, 3);
	letters(v2, prefix, 4);
	j = json_pack("{s:s, s:s}", k1, v1, k2, v2);
	t = tree_build(j, NULL, err, sizeof(err));
	CHECK(t != NULL);
	bytes = t ? tree_bytes(t) : 0;
	tree_unref(t);
	json_decref(j);
	return bytes;
}

/* An answer refused for its size, or one full of distinct keys, leaves the
 * shared table to everyone else: an image built after it is as small as one
 * built before. */
static void test_shared_table_kept(void)
{
	size_t before = fresh_bytes("before"), again;
	json_t *huge = json_object(), *nulls = json_array(), *keys = json_object();
	char err[128], key[32];
	struct tree *t;

	CHECK(before > 0 && fresh_bytes("before") == before);
	for (int i = 0; i < 300000; i++)
		json_array_append_new(nulls, json_null());
	json_object_set_new(huge, "a", nulls);
	t = tree_build(huge, NULL, err, sizeof(err));
	CHECK(t == NULL && strstr(err, "too large"));
	for (unsigned i = 0; i < 200000; i++) {
		letters(key, "x", i);
		json_object_set_new(keys, key, json_string(key));
	}
	t = tree_build(keys, NULL, err, sizeof(err));
	CHECK(t != NULL && tree_count(t) == 200001);
	tree_unref(t);
	again = fresh_bytes("after");
	CHECK(again == before);
	json_decref(huge);
	json_decref(keys);
}

int main(void)
{
	golden("guide-3135");
	golden("edge");
	test_reads();
	test_array_names();
	test_limits();
	test_dates();
	test_shared_table_kept();
	test_shared_strings();
	return TEST_REPORT();
}
