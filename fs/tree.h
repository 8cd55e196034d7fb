/* SPDX-License-Identifier: MIT */
/* tree.h: one server image as a compact, immutable tree of files and
 * directories: objects and arrays become directories, scalars files, and
 * common codes ({code, codeName}) files holding the code. One allocation per
 * image; nodes are numbered breadth-first from 0 (the image itself), so a
 * directory's children are contiguous. Reference-counted so that readers and
 * a refresh that replaces it never race. */
#ifndef TREE_H
#define TREE_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

#define TREE_MAX_DEPTH 64 /* deeper JSON is refused */
#define TREE_MAX_NODES                                                             \
	262142u /* nodes 0 .. 2^18 - 3: the top two numbers are reserved (inode.h) \
		 */

enum tree_kind { TREE_FILE = 0, TREE_DIR = 1 };

struct tree;

/* Builds the tree of an image object (borrowed). Returns a tree with one
 * reference, or NULL with a message in errbuf (too deep, too big, not an
 * object). Keys that cannot be file names (empty, ".", "..", containing '/',
 * over 255 bytes) are left out; *skipped (if not NULL) counts them. */
struct tree *tree_build(json_t *image, unsigned *skipped, char *errbuf, size_t errlen);
/* Takes another reference; returns t. */
struct tree *tree_ref(struct tree *t);
/* Drops a reference, freeing the tree with the last one. NULL is fine. */
void tree_unref(struct tree *t);

/* Number of nodes, and bytes the tree occupies. */
uint32_t tree_count(const struct tree *t);
size_t tree_bytes(const struct tree *t);
/* Nonzero when both trees hold exactly the same data. */
int tree_equal(const struct tree *a, const struct tree *b);

enum tree_kind tree_kind(const struct tree *t, uint32_t node);
/* The node's name (borrowed, NUL-terminated); "" for node 0. */
const char *tree_name(const struct tree *t, uint32_t node);
/* Directories: number of entries, of subdirectories, and the i-th entry. */
uint32_t tree_nchildren(const struct tree *t, uint32_t dir);
uint32_t tree_nsubdirs(const struct tree *t, uint32_t dir);
uint32_t tree_child(const struct tree *t, uint32_t dir, uint32_t i);
/* Finds name in dir: 0 and *child, or -1 when absent. */
int tree_lookup(const struct tree *t, uint32_t dir, const char *name, uint32_t *child);

/* Files: size of the content (value plus newline; 0 for null), and the
 * value itself without the newline (borrowed, NUL-terminated). */
size_t tree_size(const struct tree *t, uint32_t file);
const char *tree_value(const struct tree *t, uint32_t file);
/* Copies up to len bytes of the file's content from off into buf; returns
 * the number copied. */
size_t tree_read(const struct tree *t, uint32_t file, size_t off, char *buf, size_t len);
/* The codeName of a common-code file (borrowed), or NULL. */
const char *tree_codename(const struct tree *t, uint32_t file);

/* The image as JSON again (new reference). */
json_t *tree_to_json(const struct tree *t);
/* <no>.json: the image as indented JSON and a newline (malloc'd; NULL when out
 * of memory), and its size, worked out once per tree (0 when out of memory). */
char *tree_json_text(struct tree *t, size_t *len);
size_t tree_json_size(struct tree *t);
/* The image's createDate as epoch seconds: 0 and *when, or -1. */
int tree_create_date(const struct tree *t, int64_t *when);
/* Parses NCP's date form "2025-06-20T09:59:39+0900" (also "+09:00", "Z"). */
int tree_parse_date(const char *s, int64_t *when);

#endif
