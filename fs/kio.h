/* SPDX-License-Identifier: MIT */
/* kio.h: the session's reads and writes of /dev/fuse, passed through
 * unchanged but for one repair of the INIT reply (see kio.c). */
#ifndef KIO_H
#define KIO_H

#include "fsops.h"

/* Routes se's device I/O through kio; call after fuse_session_mount. 0 or -1. */
int kio_install(struct fuse_session *se);

#endif
