/* SPDX-License-Identifier: MIT */
/* kio.c: libfuse before 3.16 accepts FUSE_CAP_PARALLEL_DIROPS in conn->want
 * but never passes it to the kernel (fixed upstream by libfuse PR #861), so
 * the kernel serializes every lookup in a directory: 16 readers of 16
 * uncached images in one region would wait for each other's fetch. This
 * wraps the session's device I/O and, in the INIT reply only, sets the
 * kernel flag when the kernel offered it. Every other message passes as is. */
#include "kio.h"

#include <linux/fuse.h>
#include <stdatomic.h>
#include <string.h>
#include <sys/uio.h>
#include <unistd.h>

static _Atomic uint64_t init_unique; /* the INIT request's id, once seen */
static atomic_int kernel_parallel;   /* the kernel offered parallel dirops */

static ssize_t kio_read(int fd, void *buf, size_t len, void *userdata)
{
	ssize_t n = read(fd, buf, len);
	const struct fuse_in_header *in = buf;

	(void)userdata;
	if (n >= (ssize_t)(sizeof(*in) + sizeof(struct fuse_init_in)) && in->opcode == FUSE_INIT) {
		const struct fuse_init_in *arg = (const void *)(in + 1);

		atomic_store(&kernel_parallel, (arg->flags & FUSE_PARALLEL_DIROPS) != 0);
		atomic_store(&init_unique, in->unique);
	}
	return n;
}

static ssize_t kio_writev(int fd, struct iovec *iov, int count, void *userdata)
{
	(void)userdata;
	if (count >= 2 && iov[0].iov_len >= sizeof(struct fuse_out_header) &&
	    iov[1].iov_len >= offsetof(struct fuse_init_out, flags) + sizeof(uint32_t)) {
		const struct fuse_out_header *out = iov[0].iov_base;

		if (out->error == 0 && out->unique != 0 &&
		    out->unique == atomic_load(&init_unique) && atomic_load(&kernel_parallel)) {
			struct fuse_init_out *arg = iov[1].iov_base;

			arg->flags |= FUSE_PARALLEL_DIROPS;
			atomic_store(&init_unique, 0);
		}
	}
	return writev(fd, iov, count);
}

int kio_install(struct fuse_session *se)
{
	static const struct fuse_custom_io io = {
		.read = kio_read,
		.writev = kio_writev,
	};

	return fuse_session_custom_io(se, &io, fuse_session_fd(se));
}
