/* SPDX-License-Identifier: MIT */
/* fuzz_tree.c: libFuzzer target for tree_build, the JSON-to-tree mapping.
 * The input is parsed as the client parses answers; an object is built into
 * a tree, every node is walked through the public calls and compared with the
 * JSON it came from, and tree_to_json must give back a tree equal to it. */
#include <inttypes.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tree.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int valid_name(const char *k)
{
	size_t n = strlen(k);

	return n > 0 && n <= 255 && strcmp(k, ".") != 0 && strcmp(k, "..") != 0 && !strchr(k, '/');
}

/* A common code, as tree.h defines it: {code, codeName}, where keys that
 * cannot be file names are left out first (else tree_to_json's output of an
 * object that lost such a key would read back as a code). */
static int is_code(json_t *v)
{
	json_t *name = json_object_get(v, "codeName");
	size_t n = 0;

	if (!json_is_object(v))
		return 0;
	for (void *it = json_object_iter(v); it; it = json_object_iter_next(v, it))
		n += valid_name(json_object_iter_key(it));
	return n == 2 && json_is_string(json_object_get(v, "code")) &&
	       (json_is_string(name) || json_is_null(name));
}

/* A file's content read in chunks of len bytes must be its value and a
 * newline (nothing for null), and reads at or past the end give nothing. */
static void check_reads(const struct tree *t, uint32_t node, size_t len)
{
	size_t size = tree_size(t, node), off = 0, n;
	const char *value = tree_value(t, node);
	char *buf = malloc(size + len + 1);

	if (!buf)
		abort();
	while (off < size) {
		n = tree_read(t, node, off, buf + off, len);
		if (n == 0 || n > len || n > size - off)
			abort();
		off += n;
	}
	if (size && (buf[size - 1] != '\n' || memcmp(buf, value, size - 1) != 0))
		abort();
	if (tree_read(t, node, size, buf, len) != 0 ||
	    tree_read(t, node, size + 1, buf, len) != 0 ||
	    tree_read(t, node, SIZE_MAX / 2, buf, len) != 0)
		abort();
	free(buf);
}

/* Every node through the public calls: names are file names, children are
 * numbered after their directory and found by name, each node is reached
 * exactly once, and file sizes agree with their values and reads. */
static void walk(const struct tree *t)
{
	uint32_t count = tree_count(t);
	unsigned char *seen = calloc(count, 1);
	uint32_t child;
	char byte;

	if (!seen || count == 0 || tree_kind(t, 0) != TREE_DIR || strcmp(tree_name(t, 0), "") != 0)
		abort();
	seen[0] = 1;
	for (uint32_t node = 0; node < count; node++) {
		const char *name = tree_name(t, node);

		if (node > 0 && !valid_name(name))
			abort();
		if (tree_kind(t, node) == TREE_DIR) {
			uint32_t n = tree_nchildren(t, node), dirs = 0;

			if (tree_size(t, node) != 0 || tree_codename(t, node) ||
			    tree_read(t, node, 0, &byte, 1) != 0)
				abort();
			for (uint32_t i = 0; i < n; i++) {
				uint32_t c = tree_child(t, node, i);

				if (c <= node || c >= count || seen[c])
					abort();
				seen[c] = 1;
				dirs += tree_kind(t, c) == TREE_DIR;
				if (tree_lookup(t, node, tree_name(t, c), &child) != 0 ||
				    child != c)
					abort();
			}
			if (dirs != tree_nsubdirs(t, node))
				abort();
		} else {
			const char *value = tree_value(t, node);
			size_t size = tree_size(t, node);

			if (tree_nchildren(t, node) != 0 || tree_nsubdirs(t, node) != 0 ||
			    tree_lookup(t, node, "0", &child) != -1)
				abort();
			if (size != 0 && size != strlen(value) + 1)
				abort();
			check_reads(t, node, 1);
			check_reads(t, node, 7);
			check_reads(t, node, size + 3);
		}
	}
	for (uint32_t node = 0; node < count; node++)
		if (!seen[node])
			abort();
	free(seen);
}

static void check_scalar(const struct tree *t, uint32_t node, json_t *v)
{
	const char *value = tree_value(t, node);
	char num[64], *end;
	int64_t when;

	if (tree_kind(t, node) != TREE_FILE)
		abort();
	if (json_is_object(v)) {
		json_t *name = json_object_get(v, "codeName");
		const char *cn = tree_codename(t, node);

		if (strcmp(value, json_string_value(json_object_get(v, "code"))) != 0 ||
		    (json_is_null(name) ? cn != NULL : !cn || strcmp(cn, json_string_value(name))))
			abort();
	} else if (json_is_string(v)) {
		if (strcmp(value, json_string_value(v)) != 0 || tree_codename(t, node))
			abort();
		tree_parse_date(value, &when); /* sscanf on hostile text */
	} else if (json_is_integer(v)) {
		snprintf(num, sizeof(num), "%" JSON_INTEGER_FORMAT, json_integer_value(v));
		if (strcmp(value, num) != 0)
			abort();
	} else if (json_is_real(v)) {
		/* Printed short, but it must read back as the very same double. */
		if (strtod(value, &end) != json_real_value(v) || *end || !*value)
			abort();
	} else if (json_is_true(v) || json_is_false(v)) {
		if (strcmp(value, json_is_true(v) ? "true" : "false") != 0)
			abort();
	} else if (tree_size(t, node) != 0 || value[0]) {
		abort(); /* null: an empty file */
	}
}

/* The tree against the JSON it was built from: a directory per object or
 * array, a file per scalar or common code, and a child per valid name. */
static void check_json(const struct tree *t, uint32_t node, json_t *v)
{
	uint32_t child, n = 0;
	char idx[24];

	if (!(json_is_object(v) && !is_code(v)) && !json_is_array(v)) {
		check_scalar(t, node, v);
		return;
	}
	if (tree_kind(t, node) != TREE_DIR)
		abort();
	if (json_is_object(v)) {
		for (void *it = json_object_iter(v); it; it = json_object_iter_next(v, it)) {
			const char *k = json_object_iter_key(it);

			if (!valid_name(k)) {
				if (tree_lookup(t, node, k, &child) != -1)
					abort();
				continue;
			}
			n++;
			if (tree_lookup(t, node, k, &child) != 0)
				abort();
			check_json(t, child, json_object_iter_value(it));
		}
	} else {
		for (size_t i = 0; i < json_array_size(v); i++) {
			snprintf(idx, sizeof(idx), "%zu", i);
			child = tree_child(t, node, (uint32_t)i);
			if (strcmp(tree_name(t, child), idx) != 0)
				abort();
			check_json(t, child, json_array_get(v, i));
			n++;
		}
		/* Only canonical indexes name entries. */
		snprintf(idx, sizeof(idx), "%zu", json_array_size(v));
		if (tree_lookup(t, node, idx, &child) != -1 ||
		    tree_lookup(t, node, "-0", &child) != -1)
			abort();
		if (tree_lookup(t, node, "00", &child) != -1 ||
		    tree_lookup(t, node, "", &child) != -1)
			abort();
	}
	if (tree_nchildren(t, node) != n)
		abort();
}

/* createDate is parsed once at build time; it must agree with a fresh parse. */
static void check_date(const struct tree *t, json_t *image)
{
	json_t *d = json_object_get(image, "createDate");
	int64_t a = 0, b = 0;
	int has = tree_create_date(t, &a) == 0;

	if (json_is_string(d) && tree_parse_date(json_string_value(d), &b) == 0) {
		if (!has || a != b)
			abort();
	} else if (has) {
		abort();
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct tree *t = NULL, *again = NULL;
	json_t *root, *back = NULL;
	unsigned skipped = 0, skipped_again = 1;
	char errbuf[256];
	json_error_t jerr;

	root = json_loadb((const char *)data, size, JSON_REJECT_DUPLICATES, &jerr);
	if (!json_is_object(root))
		goto out;
	errbuf[0] = '\0';
	t = tree_build(root, &skipped, errbuf, sizeof(errbuf));
	if (!t) {
		if (!errbuf[0] || !memchr(errbuf, '\0', sizeof(errbuf)))
			abort();
		goto out;
	}
	walk(t);
	check_json(t, 0, root);
	check_date(t, root);
	if (tree_ref(t) != t)
		abort();
	tree_unref(t);

	back = tree_to_json(t);
	if (!json_is_object(back))
		abort();
	again = tree_build(back, &skipped_again, errbuf, sizeof(errbuf));
	if (!again || skipped_again != 0 || !tree_equal(t, again) || !tree_equal(again, t) ||
	    tree_bytes(again) != tree_bytes(t))
		abort();
out:
	tree_unref(again);
	tree_unref(t);
	json_decref(back);
	json_decref(root);
	return 0;
}
