/* SPDX-License-Identifier: MIT */
/* sign.c: API Gateway signature v2 and RFC 3986 query encoding.
 *
 * Pure functions: no state, no I/O. The caller builds the encoded request
 * target once and hands the very same bytes to sign_v2 and to libcurl. */
#include "sign.h"

#include <limits.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>

static int is_unreserved(unsigned char ch)
{
	return (ch >= 'A' && ch <= 'Z') || (ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9') ||
	       ch == '-' || ch == '.' || ch == '_' || ch == '~';
}

int sign_encode_component(const char *s, char *out, size_t outlen)
{
	static const char hex[] = "0123456789ABCDEF";
	size_t o = 0;

	if (!s || !out || outlen == 0)
		return -1;
	for (; *s; s++) {
		unsigned char ch = (unsigned char)*s;

		if (is_unreserved(ch)) {
			if (outlen - o < 2)
				return -1;
			out[o++] = (char)ch;
		} else {
			if (outlen - o < 4)
				return -1;
			out[o++] = '%';
			out[o++] = hex[ch >> 4];
			out[o++] = hex[ch & 0x0f];
		}
		if (o > INT_MAX - 3)
			return -1;
	}
	out[o] = '\0';
	return (int)o;
}

int sign_v2(const char *method, const char *uri, const char *timestamp, const char *access_key,
	    const char *secret_key, char *out, size_t outlen)
{
	unsigned char mac[EVP_MAX_MD_SIZE];
	unsigned int maclen = 0;
	char *msg = NULL;
	size_t lm, lu, lt, la, ls, n;
	int err = -1;

	if (!method || !uri || !timestamp || !access_key || !secret_key || !out)
		goto out;
	/* 32 bytes of HMAC-SHA256 are 44 base64 characters, plus the NUL. */
	if (outlen < 45)
		goto out;
	lm = strlen(method);
	lu = strlen(uri);
	lt = strlen(timestamp);
	la = strlen(access_key);
	ls = strlen(secret_key);
	if (ls > INT_MAX) /* HMAC() takes the key length as an int */
		goto out;
	n = lm + 1 + lu + 1 + lt + 1 + la;
	msg = malloc(n);
	if (!msg)
		goto out;
	/* method " " uri "\n" timestamp "\n" access_key, without a trailing NUL */
	memcpy(msg, method, lm);
	msg[lm] = ' ';
	memcpy(msg + lm + 1, uri, lu);
	msg[lm + 1 + lu] = '\n';
	memcpy(msg + lm + 1 + lu + 1, timestamp, lt);
	msg[lm + 1 + lu + 1 + lt] = '\n';
	memcpy(msg + lm + 1 + lu + 1 + lt + 1, access_key, la);

	if (!HMAC(EVP_sha256(), secret_key, (int)ls, (const unsigned char *)msg, n, mac, &maclen))
		goto out;
	if (maclen != 32)
		goto out;
	if (EVP_EncodeBlock((unsigned char *)out, mac, (int)maclen) != 44)
		goto out;
	err = 0;
out:
	OPENSSL_cleanse(mac, sizeof(mac));
	free(msg);
	return err;
}
