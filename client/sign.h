/* SPDX-License-Identifier: MIT */
/* sign.h: API Gateway signature v2 and query encoding, pure functions. */
#ifndef NCP_SIGN_H
#define NCP_SIGN_H

#include <stddef.h>

/* Percent-encodes s as a query component (RFC 3986 unreserved kept) into
 * out; returns the length, or -1 if out is too small. */
int sign_encode_component(const char *s, char *out, size_t outlen);

/* Base64(HMAC-SHA256(secret, method + " " + uri + "\n" + timestamp + "\n" +
 * access_key)) into out (NUL-terminated, 44 chars + NUL needs 45 bytes).
 * uri is the request target exactly as sent (path?query). Returns 0 or -1. */
int sign_v2(const char *method, const char *uri, const char *timestamp, const char *access_key,
	    const char *secret_key, char *out, size_t outlen);

#endif
