/* SPDX-License-Identifier: MIT */
/* fakefuse.c: the libfuse functions fsops.c replies through, recording the
 * reply in the request instead of writing to /dev/fuse. Directory entries
 * take the room real ones take, so that chunked reads split where the
 * kernel's would. */
#include "fakefuse.h"

#include <errno.h>
#include <stdio.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

enum { R_NONE, R_ERR, R_ENTRY, R_ATTR, R_BUF, R_LINK, R_XATTR, R_OPEN, R_STATFS, R_NOREPLY };

struct fuse_req {
	void *userdata;
	fuse_interrupt_func_t interrupt;
	void *interrupt_data;
	int kind;
	int err;
	struct fuse_entry_param e;
	struct stat attr;
	char *data;
	size_t len;
	size_t xattr;
};

static atomic_ulong notes;

/* The harness's own allocations are not ncloudfs's: a test that makes
 * allocations fail (test_oom.c) defines this to exempt them. */
__attribute__((weak)) void ff_exempt(int on);
__attribute__((weak)) void ff_exempt(int on)
{
	(void)on;
}

static void *ff_malloc(size_t size)
{
	void *p;

	ff_exempt(1);
	p = malloc(size);
	ff_exempt(0);
	if (!p)
		abort();
	return p;
}

static void ff_free(void *p)
{
	ff_exempt(1);
	free(p);
	ff_exempt(0);
}

/* Room one entry takes: the kernel's header (24 bytes, or 152 with the
 * entry for readdirplus) and the name, 8-byte aligned. */
static size_t entry_room(const char *name, int plus)
{
	return ((plus ? 152 : 24) + strlen(name) + 7) & ~(size_t)7;
}

static size_t add_entry(char *buf, size_t bufsize, const char *name, const struct stat *st,
			off_t off, int plus)
{
	size_t room = entry_room(name, plus);
	struct ff_dirent d;

	if (!buf || room > bufsize)
		return room;
	memset(&d, 0, sizeof(d));
	d.ino = st->st_ino;
	d.off = off;
	d.mode = st->st_mode;
	snprintf(d.name, sizeof(d.name), "%s", name);
	/* The record is bigger than the room; keep it beside the buffer. */
	memcpy(buf, &room, sizeof(room));
	{
		struct ff_dirent **slot = (struct ff_dirent **)(buf + sizeof(room));
		struct ff_dirent *copy = ff_malloc(sizeof(*copy));

		*copy = d;
		memcpy(slot, &copy, sizeof(copy));
	}
	return room;
}

size_t fuse_add_direntry(fuse_req_t req, char *buf, size_t bufsize, const char *name,
			 const struct stat *stbuf, off_t off)
{
	(void)req;
	return add_entry(buf, bufsize, name, stbuf, off, 0);
}

size_t fuse_add_direntry_plus(fuse_req_t req, char *buf, size_t bufsize, const char *name,
			      const struct fuse_entry_param *e, off_t off)
{
	struct stat st = e->attr;

	(void)req;
	if (e->ino)
		st.st_ino = e->ino;
	return add_entry(buf, bufsize, name, &st, off, 1);
}

void *fuse_req_userdata(fuse_req_t req)
{
	return req->userdata;
}

/* A reply frees the request: an interrupt callback must be taken back
 * first (libfuse would call it on a freed request). */
static void replying(fuse_req_t req)
{
	if (req->interrupt) {
		fprintf(stderr, "fakefuse: reply with an interrupt callback still set\n");
		abort();
	}
}

/* Requests here are never interrupted: the callback is only checked to be
 * taken back before the reply. */
void fuse_req_interrupt_func(fuse_req_t req, fuse_interrupt_func_t func, void *data)
{
	req->interrupt = func;
	req->interrupt_data = data;
}

int fuse_reply_err(fuse_req_t req, int err)
{
	replying(req);
	req->kind = R_ERR;
	req->err = err;
	return 0;
}

void fuse_reply_none(fuse_req_t req)
{
	replying(req);
	req->kind = R_NOREPLY;
}

int fuse_reply_entry(fuse_req_t req, const struct fuse_entry_param *e)
{
	replying(req);
	req->kind = R_ENTRY;
	req->e = *e;
	return 0;
}

int fuse_reply_attr(fuse_req_t req, const struct stat *attr, double attr_timeout)
{
	(void)attr_timeout;
	replying(req);
	req->kind = R_ATTR;
	req->attr = *attr;
	return 0;
}

int fuse_reply_buf(fuse_req_t req, const char *buf, size_t size)
{
	replying(req);
	req->kind = R_BUF;
	req->data = ff_malloc(size ? size : 1);
	if (size)
		memcpy(req->data, buf, size);
	req->len = size;
	return 0;
}

int fuse_reply_readlink(fuse_req_t req, const char *link)
{
	replying(req);
	req->kind = R_LINK;
	req->len = strlen(link);
	req->data = ff_malloc(req->len + 1);
	memcpy(req->data, link, req->len + 1);
	return 0;
}

int fuse_reply_xattr(fuse_req_t req, size_t count)
{
	replying(req);
	req->kind = R_XATTR;
	req->xattr = count;
	return 0;
}

int fuse_reply_open(fuse_req_t req, const struct fuse_file_info *fi)
{
	(void)fi;
	replying(req);
	req->kind = R_OPEN;
	return 0;
}

int fuse_reply_statfs(fuse_req_t req, const struct statvfs *stbuf)
{
	(void)stbuf;
	replying(req);
	req->kind = R_STATFS;
	return 0;
}

int fuse_lowlevel_notify_inval_entry(struct fuse_session *se, fuse_ino_t parent, const char *name,
				     size_t namelen)
{
	(void)se, (void)parent, (void)name, (void)namelen;
	atomic_fetch_add(&notes, 1);
	return 0;
}

int fuse_lowlevel_notify_inval_inode(struct fuse_session *se, fuse_ino_t ino, off_t off, off_t len)
{
	(void)se, (void)ino, (void)off, (void)len;
	atomic_fetch_add(&notes, 1);
	return 0;
}

unsigned long ff_notes(void)
{
	return atomic_load(&notes);
}

static void req_init(struct fuse_req *r, struct fsops *fs)
{
	memset(r, 0, sizeof(*r));
	r->userdata = fs;
}

int ff_lookup(struct fsops *fs, uint64_t parent, const char *name, uint64_t *ino, struct stat *st)
{
	struct fuse_req r;

	req_init(&r, fs);
	fsops_ops()->lookup(&r, parent, name);
	if (r.kind == R_ERR)
		return -r.err;
	if (r.kind != R_ENTRY)
		abort();
	if (!r.e.ino)
		return -ENOENT;
	if (ino)
		*ino = r.e.ino;
	if (st)
		*st = r.e.attr;
	return 0;
}

int ff_getattr(struct fsops *fs, uint64_t ino, struct stat *st)
{
	struct fuse_req r;

	req_init(&r, fs);
	fsops_ops()->getattr(&r, ino, NULL);
	if (r.kind == R_ERR)
		return -r.err;
	if (r.kind != R_ATTR)
		abort();
	if (st)
		*st = r.attr;
	return 0;
}

int ff_read(struct fsops *fs, uint64_t ino, int64_t off, size_t size, char **data, size_t *len)
{
	struct fuse_file_info fi;
	struct fuse_req r;

	memset(&fi, 0, sizeof(fi));
	req_init(&r, fs);
	fsops_ops()->read(&r, ino, size, off, &fi);
	if (r.kind == R_ERR)
		return -r.err;
	if (r.kind != R_BUF)
		abort();
	*data = r.data;
	*len = r.len;
	return 0;
}

int ff_readlink(struct fsops *fs, uint64_t ino, char *buf, size_t len)
{
	struct fuse_req r;

	req_init(&r, fs);
	fsops_ops()->readlink(&r, ino);
	if (r.kind == R_ERR)
		return -r.err;
	if (r.kind != R_LINK)
		abort();
	snprintf(buf, len, "%s", r.data);
	ff_free(r.data);
	return 0;
}

int ff_getxattr(struct fsops *fs, uint64_t ino, const char *name, char *buf, size_t size,
		size_t *len)
{
	struct fuse_req r;

	req_init(&r, fs);
	fsops_ops()->getxattr(&r, ino, name, size);
	if (r.kind == R_ERR)
		return -r.err;
	if (r.kind == R_XATTR) {
		*len = r.xattr;
		return 0;
	}
	if (r.kind != R_BUF)
		abort();
	*len = r.len;
	if (buf && r.len <= size)
		memcpy(buf, r.data, r.len);
	ff_free(r.data);
	return 0;
}

int ff_readdir(struct fsops *fs, uint64_t ino, size_t size, int64_t off, int plus,
	       struct ff_dirent *out, size_t max, size_t *n)
{
	struct fuse_file_info fi;
	struct fuse_req r;

	memset(&fi, 0, sizeof(fi));
	req_init(&r, fs);
	if (plus)
		fsops_ops()->readdirplus(&r, ino, size, off, &fi);
	else
		fsops_ops()->readdir(&r, ino, size, off, &fi);
	if (r.kind == R_ERR)
		return -r.err;
	if (r.kind != R_BUF)
		abort();
	*n = 0;
	for (size_t at = 0; at < r.len;) {
		size_t room;
		struct ff_dirent *d;

		memcpy(&room, r.data + at, sizeof(room));
		memcpy(&d, r.data + at + sizeof(room), sizeof(d));
		if (*n < max)
			out[(*n)++] = *d;
		ff_free(d);
		at += room;
	}
	ff_free(r.data);
	return 0;
}

int ff_readdir_all(struct fsops *fs, uint64_t ino, size_t size, int plus, struct ff_dirent **out,
		   size_t *n)
{
	size_t cap = 64, got;
	int64_t off = 0;
	int err;

	*n = 0;
	*out = malloc(cap * sizeof(**out));
	if (!*out)
		abort();
	for (;;) {
		if (*n + 4096 > cap) {
			cap = (*n + 4096) * 2;
			*out = realloc(*out, cap * sizeof(**out));
			if (!*out)
				abort();
		}
		err = ff_readdir(fs, ino, size, off, plus, *out + *n, cap - *n, &got);
		if (err || got == 0)
			return err;
		*n += got;
		off = (*out)[*n - 1].off;
	}
}

void ff_forget(struct fsops *fs, uint64_t ino, uint64_t n)
{
	struct fuse_req r;

	req_init(&r, fs);
	fsops_ops()->forget(&r, ino, n);
}

void ff_init(struct fsops *fs)
{
	struct fuse_conn_info conn;

	memset(&conn, 0, sizeof(conn));
	conn.proto_major = 7;
	conn.proto_minor = 31;
	conn.capable = FUSE_CAP_NO_OPEN_SUPPORT | FUSE_CAP_NO_OPENDIR_SUPPORT |
		       FUSE_CAP_READDIRPLUS | FUSE_CAP_PARALLEL_DIROPS | FUSE_CAP_CACHE_SYMLINKS;
	fsops_ops()->init(fs, &conn);
}
