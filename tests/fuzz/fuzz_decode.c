/* SPDX-License-Identifier: MIT */
/* fuzz_decode.c: libFuzzer target for ncp_decode, the decoder of every API
 * answer. The first byte picks the HTTP status, the rest is the body, decoded
 * as each of the three actions. Checks the contract: 0 gives an object, -1 an
 * error kind and a message safe to log (clean, NUL-terminated UTF-8). A
 * listing is also decoded with its rows parsed apart (ncp_decode_split), and
 * with them handed to a sink: the result must be the same as when it is
 * parsed whole. */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "ncp.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Indexed by the first byte modulo 9: the seeds start with 'H' to 'P', which
 * pick these in order (their names start with the status they pick). */
static const long statuses[] = { 200, 400, 401, 403, 404, 429, 500, 503, 504 };
static const char *const actions[] = { "getRegionList", "getServerImageList",
				       "getServerImageDetail" };

/* Length of the well-formed UTF-8 sequence at s (RFC 3629: no overlongs, no
 * surrogates, nothing past U+10FFFF), 0 if there is none. */
static size_t utf8_len(const unsigned char *s)
{
	if (s[0] >= 0xc2 && s[0] <= 0xdf)
		return (s[1] & 0xc0) == 0x80 ? 2 : 0;
	if (s[0] >= 0xe0 && s[0] <= 0xef) {
		unsigned lo = s[0] == 0xe0 ? 0xa0 : 0x80, hi = s[0] == 0xed ? 0x9f : 0xbf;

		if (s[1] < lo || s[1] > hi || (s[2] & 0xc0) != 0x80)
			return 0;
		return 3;
	}
	if (s[0] >= 0xf0 && s[0] <= 0xf4) {
		unsigned lo = s[0] == 0xf0 ? 0x90 : 0x80, hi = s[0] == 0xf4 ? 0x8f : 0xbf;

		if (s[1] < lo || s[1] > hi || (s[2] & 0xc0) != 0x80 || (s[3] & 0xc0) != 0x80)
			return 0;
		return 4;
	}
	return 0;
}

/* Text from the answer ends up in log lines: it must end inside its array and
 * hold no C0, DEL or C1 control character and no malformed UTF-8. The reads
 * past s[i] stop at the NUL, which fails every continuation-byte test. */
static void check_text(const char *text, size_t cap)
{
	const unsigned char *s = (const unsigned char *)text;
	size_t i = 0, n;

	if (!memchr(text, '\0', cap))
		abort();
	while (s[i]) {
		if (s[i] < 0x20 || s[i] == 0x7f)
			abort();
		if (s[i] < 0x80) {
			i++;
			continue;
		}
		n = utf8_len(s + i);
		if (n == 0 || (s[i] == 0xc2 && s[i + 1] <= 0x9f))
			abort();
		i += n;
	}
}

/* ncp_error_errno's documented mapping. */
static int expected_errno(enum ncp_errkind kind)
{
	switch (kind) {
	case NCP_OK:
		return 0;
	case NCP_ERR_AUTH:
		return EACCES;
	case NCP_ERR_NOTFOUND:
		return ENOENT;
	default:
		return EIO;
	}
}

static void check_result(int rc, json_t *payload, const struct ncp_error *err, long status)
{
	int e = ncp_error_errno(err);

	if (rc == 0) {
		if (!json_is_object(payload))
			abort();
		json_decref(payload);
		return;
	}
	if (rc != -1 || err->kind == NCP_OK)
		abort();
	check_text(err->message, sizeof(err->message));
	check_text(err->code, sizeof(err->code));
	if (!err->message[0]) /* a failure always says what went wrong */
		abort();
	if (err->http_status != status)
		abort();
	if (e != expected_errno(err->kind))
		abort();
}

/* The rows handed to a sink, kept in place; a row given twice aborts. */
struct kept {
	json_t *rows; /* n nulls at begin, then the rows */
	size_t given;
};

static int kept_begin(void *arg, size_t n)
{
	struct kept *k = arg;

	json_decref(k->rows);
	k->rows = json_array();
	for (size_t i = 0; i < n; i++)
		json_array_append_new(k->rows, json_null());
	k->given = 0;
	return 0;
}

/* Rows come from two threads, each place from one. */
static int kept_row(void *arg, size_t i, json_t *row)
{
	struct kept *k = arg;

	if (i >= json_array_size(k->rows) || !json_is_null(json_array_get(k->rows, i)))
		abort(); /* out of range, or given twice */
	json_array_set(k->rows, i, row);
	__atomic_fetch_add(&k->given, 1, __ATOMIC_RELAXED);
	return 0;
}

/* A listing parsed whole, and handed to a sink (parsed apart, or whole):
 * the same answer, or the same error. */
static void check_split(const char *body, size_t len, long status)
{
	struct ncp_error whole, fed;
	json_t *pw = NULL, *list;
	int rw = ncp_decode_split("getServerImageList", status, body, len, SIZE_MAX, NULL, &pw,
				  &whole);

	list = rw == 0 ? json_object_get(pw, "serverImageList") : NULL;
	for (int apart = 0; apart < 2; apart++) {
		struct kept k = { NULL, 0 };
		struct ncp_row_sink sink = { kept_begin, kept_row, &k };
		json_t *pf = NULL, *emptied;
		int rf = ncp_decode_split("getServerImageList", status, body, len,
					  apart ? 0 : SIZE_MAX, &sink, &pf, &fed);

		if (rf != rw)
			abort();
		if (rw != 0 && (whole.kind != fed.kind || strcmp(whole.message, fed.message) != 0 ||
				strcmp(whole.code, fed.code) != 0 ||
				strcmp(whole.request_id, fed.request_id) != 0))
			abort();
		if (json_is_array(list) &&
		    (k.given != json_array_size(list) || !json_equal(list, k.rows) ||
		     json_array_size(json_object_get(pf, "serverImageList")) != 0))
			abort();
		if (rw == 0) {
			/* the rest of the answer as parsed whole */
			emptied = json_deep_copy(pw);
			if (json_is_array(list))
				json_object_set_new(emptied, "serverImageList", json_array());
			if (!json_equal(emptied, pf) ||
			    strcmp(whole.request_id, fed.request_id) != 0)
				abort();
			json_decref(emptied);
		}
		json_decref(k.rows);
		json_decref(pf);
	}
	json_decref(pw);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const char *body = (const char *)data + 1;
	struct ncp_error err;
	json_t *payload;
	long status;
	int rc;

	if (size == 0)
		return 0;
	status = statuses[data[0] % (sizeof(statuses) / sizeof(statuses[0]))];
	for (size_t i = 0; i < sizeof(actions) / sizeof(actions[0]); i++) {
		payload = NULL;
		memset(&err, 0xa5, sizeof(err)); /* ncp_decode must fill it, not rely on it */
		rc = ncp_decode(actions[i], status, body, size - 1, &payload, &err);
		check_result(rc, payload, &err, status);
	}
	check_split(body, size - 1, status);
	return 0;
}
