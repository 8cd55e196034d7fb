/* SPDX-License-Identifier: MIT */
/* fakefuse.h: runs fsops' low-level operations in-process, with no kernel:
 * fakefuse.c defines the libfuse reply functions that fsops.c calls (the
 * test binary's definitions win over the library's), records each reply,
 * and these helpers turn an operation into a return value. */
#ifndef FAKEFUSE_H
#define FAKEFUSE_H

#include <stddef.h>
#include <stdint.h>
#include <sys/stat.h>

#include "fsops.h"

struct ff_dirent {
	uint64_t ino;
	int64_t off;
	mode_t mode;
	char name[256];
};

/* Each returns 0 or -errno (a negative entry is -ENOENT). */
int ff_lookup(struct fsops *fs, uint64_t parent, const char *name, uint64_t *ino, struct stat *st);
int ff_getattr(struct fsops *fs, uint64_t ino, struct stat *st);
/* Reads up to size bytes at off into a new buffer (*data, free it). */
int ff_read(struct fsops *fs, uint64_t ino, int64_t off, size_t size, char **data, size_t *len);
int ff_readlink(struct fsops *fs, uint64_t ino, char *buf, size_t len);
/* getxattr into buf (size 0: asks for the size); the length in *len. */
int ff_getxattr(struct fsops *fs, uint64_t ino, const char *name, char *buf, size_t size,
		size_t *len);
/* One readdir(plus) call of `size` bytes at off: up to max entries. */
int ff_readdir(struct fsops *fs, uint64_t ino, size_t size, int64_t off, int plus,
	       struct ff_dirent *out, size_t max, size_t *n);
/* A whole directory read in chunks of `size` bytes: *out is malloc'd. */
int ff_readdir_all(struct fsops *fs, uint64_t ino, size_t size, int plus, struct ff_dirent **out,
		   size_t *n);
void ff_forget(struct fsops *fs, uint64_t ino, uint64_t n);
/* Calls the init operation as a kernel offering everything would. */
void ff_init(struct fsops *fs);
/* Marks the harness's own allocations (on: 1, then 0 after); a no-op
 * unless a test defines it. */
void ff_exempt(int on);
/* Notifications fsops sent to the "kernel" so far. */
unsigned long ff_notes(void);

#endif
