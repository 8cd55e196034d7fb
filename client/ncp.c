/* SPDX-License-Identifier: MIT */
/* ncp.c: the NCP API client: builds and signs GET requests, sends them with
 * libcurl, decodes the JSON answers and both error shapes.
 *
 * Each concurrent call borrows an easy handle from a pool, so calls run in
 * parallel and every handle keeps its own connections alive; a CURLSH shares
 * the DNS and TLS session caches between them. Nothing here logs. */
#include "ncp.h"
#include "sign.h"

#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include <arpa/inet.h>
#include <curl/curl.h>
#include <openssl/crypto.h>
#include <openssl/x509.h>

#ifndef NCLOUDFS_VERSION
#define NCLOUDFS_VERSION "unknown"
#endif

#define NCP_BODY_MAX ((size_t)16 * 1024 * 1024)
#define NCP_TIMEOUT_DEFAULT 30L /* when the config says 0: never wait forever */
#define NCP_CONNECT_TIMEOUT_MAX 10L
#define NCP_ACTION_MAX 64
#define NCP_PARAM_MAX 4096		  /* longest parameter name or value sent */
#define NCP_SPLIT_MIN ((size_t)64 * 1024) /* smaller bodies are parsed in one go */
#define NCP_ACCESS_KEY_MAX 256

/* How a failed answer was shaped: ncp_image_detail needs to tell a service
 * error (no such image) from a gateway error of the same HTTP status. */
enum shape {
	SHAPE_NONE,
	SHAPE_GATEWAY, /* {"error":{"errorCode","message","details"}} */
	SHAPE_SERVICE, /* {"responseError":{"returnCode","returnMessage"}} */
};

struct pooled {
	CURL *h;
	struct pooled *next;
	char errbuf[CURL_ERROR_SIZE];
};

struct ncp_client {
	char *origin;	 /* scheme://host[:port] */
	char *base_path; /* api_url's path without the trailing '/', usually "" */
	char *authority; /* host[:port], for error messages */
	char *access_key;
	char *secret_key;
	char *cafile;
	double timeout_s;
	int retries;
	CURLSH *share;
	pthread_mutex_t share_locks[CURL_LOCK_DATA_LAST];
	pthread_mutex_t pool_lock;
	struct pooled *idle; /* handles not in use, under pool_lock */
	atomic_long connections;
	pthread_mutex_t stats_lock;
	struct ncp_stats stats; /* under stats_lock */
	/* At most `limit` requests in flight (under stats_lock): halved on a
	 * 429, then grown back by one per limit answers, up to max_requests. */
	pthread_cond_t slot_freed;
	int max_requests, in_flight;
	double limit;
	unsigned cut; /* bumped at each halving: one per burst of 429s */
};

struct body {
	char *data;
	size_t len, cap;
	int overflow, oom;
};

static pthread_once_t global_once = PTHREAD_ONCE_INIT;
static CURLcode global_rc = CURLE_FAILED_INIT;

static void global_init(void)
{
	global_rc = curl_global_init(CURL_GLOBAL_DEFAULT);
}

/* Length of the valid UTF-8 sequence at s (at most n bytes), 0 if invalid. */
static size_t utf8_seq(const unsigned char *s, size_t n)
{
	size_t len, i;

	if (s[0] >= 0xc2 && s[0] <= 0xdf)
		len = 2;
	else if (s[0] >= 0xe0 && s[0] <= 0xef)
		len = 3;
	else if (s[0] >= 0xf0 && s[0] <= 0xf4)
		len = 4;
	else
		return 0;
	if (len > n)
		return 0;
	for (i = 1; i < len; i++)
		if ((s[i] & 0xc0) != 0x80)
			return 0;
	return len;
}

/* Copies at most dstlen-1 bytes of src, turning control characters (C0, DEL,
 * C1) and invalid UTF-8 into '?' so an answer cannot forge log lines or drive
 * a terminal, and never cutting a UTF-8 sequence in half. */
static void copy_clean(char *dst, size_t dstlen, const char *src, size_t srclen)
{
	const unsigned char *s = (const unsigned char *)src;
	size_t i = 0, o = 0, n;

	if (dstlen == 0)
		return;
	while (i < srclen && o < dstlen - 1) {
		if (s[i] < 0x80) {
			dst[o++] = (s[i] < 0x20 || s[i] == 0x7f) ? '?' : (char)s[i];
			i++;
			continue;
		}
		n = utf8_seq(s + i, srclen - i);
		if (n == 0 || (n == 2 && s[i] == 0xc2 && s[i + 1] <= 0x9f)) {
			dst[o++] = '?';
			i += n ? n : 1;
			continue;
		}
		if (n > dstlen - 1 - o)
			break;
		memcpy(dst + o, s + i, n);
		o += n;
		i += n;
	}
	dst[o] = '\0';
}

static void err_clear(struct ncp_error *err, long http_status)
{
	memset(err, 0, sizeof(*err));
	err->kind = NCP_OK;
	err->http_status = http_status;
}

/* Sets kind and a formatted message; the text may quote the answer (jansson
 * errors do), so it is cleaned like any other text from outside. */
__attribute__((format(printf, 3, 4))) static void
err_set(struct ncp_error *err, enum ncp_errkind kind, const char *fmt, ...)
{
	char tmp[sizeof(err->message)];
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(tmp, sizeof(tmp), fmt, ap);
	va_end(ap);
	if (n < 0)
		tmp[0] = '\0';
	err->kind = kind;
	copy_clean(err->message, sizeof(err->message), tmp, strlen(tmp));
}

/* errorCode / returnCode: a string or a number, depending on who answers. */
static void copy_code(char *dst, size_t dstlen, json_t *v)
{
	char tmp[32];

	if (json_is_string(v)) {
		copy_clean(dst, dstlen, json_string_value(v), json_string_length(v));
	} else if (json_is_integer(v)) {
		snprintf(tmp, sizeof(tmp), "%" JSON_INTEGER_FORMAT, json_integer_value(v));
		copy_clean(dst, dstlen, tmp, strlen(tmp));
	}
}

static void copy_message(struct ncp_error *err, json_t *msg, json_t *details)
{
	size_t n;

	if (json_is_string(msg))
		copy_clean(err->message, sizeof(err->message), json_string_value(msg),
			   json_string_length(msg));
	n = strlen(err->message);
	if (n && json_is_string(details) && json_string_length(details) &&
	    n + 3 < sizeof(err->message)) {
		memcpy(err->message + n, ": ", 3);
		copy_clean(err->message + n + 2, sizeof(err->message) - n - 2,
			   json_string_value(details), json_string_length(details));
	}
}

/* Fills err from a failed answer (any status, root possibly NULL). */
static void decode_error(json_t *root, long status, struct ncp_error *err, enum shape *shape)
{
	json_t *e;

	err->kind = (status == 401 || status == 403) ? NCP_ERR_AUTH : NCP_ERR_IO;
	if (json_is_object(root) && json_is_object(e = json_object_get(root, "error"))) {
		*shape = SHAPE_GATEWAY;
		copy_code(err->code, sizeof(err->code), json_object_get(e, "errorCode"));
		copy_message(err, json_object_get(e, "message"), json_object_get(e, "details"));
	} else if (json_is_object(root) &&
		   json_is_object(e = json_object_get(root, "responseError"))) {
		*shape = SHAPE_SERVICE;
		copy_code(err->code, sizeof(err->code), json_object_get(e, "returnCode"));
		copy_message(err, json_object_get(e, "returnMessage"), NULL);
	}
	if (!err->message[0])
		snprintf(err->message, sizeof(err->message), "HTTP %ld", status);
}

/* returnCode is "0" (or 0) on success. An answer without one is taken at
 * its word: the list or object the caller wants is checked anyway. */
static int return_code_ok(json_t *resp, struct ncp_error *err)
{
	json_t *rc = json_object_get(resp, "returnCode");

	if (!rc)
		return 1;
	if (json_is_string(rc) && json_string_length(rc) == 1 && json_string_value(rc)[0] == '0')
		return 1;
	if (json_is_integer(rc) && json_integer_value(rc) == 0)
		return 1;
	err->kind = NCP_ERR_IO;
	copy_code(err->code, sizeof(err->code), rc);
	copy_message(err, json_object_get(resp, "returnMessage"), NULL);
	if (!err->message[0])
		err_set(err, NCP_ERR_IO, "returnCode %s", err->code[0] ? err->code : "(bad type)");
	return 0;
}

static int valid_action(const char *action)
{
	size_t i;

	if (!action || !action[0])
		return 0;
	for (i = 0; action[i]; i++) {
		char ch = action[i];

		if (i >= NCP_ACTION_MAX || !((ch >= 'A' && ch <= 'Z') || (ch >= 'a' && ch <= 'z') ||
					     (ch >= '0' && ch <= '9')))
			return 0;
	}
	return 1;
}

/* ---- a big listing page: its rows parsed as they are used ----
 *
 * Parsing a 1,000-row page (1.4 MB) in one go was the slowest step of a cold
 * listing, slower than fetching it, and held a page's worth of parsed values
 * at once. So a big body of the plain layout, {"<action>Response": {...,
 * "<key>": [{row}, {row}, ...], ...}}, is cut at its rows' edges: the rest
 * (the body with an empty array in their place) goes through decode() as
 * any answer does, then the rows are parsed on two threads, each handed to
 * the caller's sink and freed at once. This only finds where the pieces
 * are; jansson parses each. Any other layout, a row nested deeper than
 * SPLIT_ROW_DEPTH, or a piece jansson refuses leaves the body to one
 * json_loadb, which then gives the answer or the error: the result is the
 * same either way (fuzz_decode checks this). */

#define SPLIT_ROW_DEPTH 64 /* the whole body allows 2048; a row starts 3 deep */

struct span {
	size_t off, len;
};

struct split {
	size_t open, close; /* the offsets of the array's '[' and ']' */
	struct span *rows;
	size_t n, cap;
};

static int is_ws(char ch)
{
	return ch == ' ' || ch == '\t' || ch == '\n' || ch == '\r';
}

/* The offset just past the string whose '"' is at b[i] (len if it does not end). */
static size_t string_end(const char *b, size_t len, size_t i)
{
	for (i++; i < len; i++) {
		if (b[i] == '\\')
			i++;
		else if (b[i] == '"')
			return i + 1;
	}
	return len;
}

/* Whether b[from, to) is a string holding exactly name, unescaped. */
static int string_is(const char *b, size_t from, size_t to, const char *name)
{
	size_t n = strlen(name);

	return to - from == n + 2 && memcmp(b + from + 1, name, n) == 0;
}

/* The offset just past the object whose '{' is at b[i], or 0 if it does
 * not end or nests deeper than SPLIT_ROW_DEPTH. */
static size_t object_end(const char *b, size_t len, size_t i)
{
	size_t depth = 0;

	for (; i < len; i++) {
		switch (b[i]) {
		case '"':
			i = string_end(b, len, i) - 1;
			break;
		case '{':
		case '[':
			if (++depth > SPLIT_ROW_DEPTH)
				return 0;
			break;
		case '}':
		case ']':
			if (--depth == 0)
				return b[i] == '}' ? i + 1 : 0;
			break;
		default:
			break;
		}
	}
	return 0;
}

static int split_push(struct split *s, size_t off, size_t len)
{
	if (s->n == s->cap) {
		size_t cap = s->cap ? s->cap * 2 : 1024;
		struct span *bigger = realloc(s->rows, cap * sizeof(*bigger));

		if (!bigger)
			return -1;
		s->rows = bigger;
		s->cap = cap;
	}
	s->rows[s->n++] = (struct span){ off, len };
	return 0;
}

/* The rows from b[i], just past the array's '[': 0 when they are objects
 * separated by commas up to a ']', 1 otherwise, -1 out of memory. */
static int split_rows(const char *b, size_t len, size_t i, struct split *s)
{
	int want_row = 0; /* after a comma: a row must follow */

	for (;; i++) {
		size_t end;

		while (i < len && is_ws(b[i]))
			i++;
		if (i >= len)
			return 1;
		if (b[i] == ']' && !want_row) {
			s->close = i;
			return 0;
		}
		if (b[i] != '{' || (s->n > 0 && !want_row))
			return 1;
		end = object_end(b, len, i);
		if (!end)
			return 1;
		if (split_push(s, i, end - i) < 0)
			return -1;
		for (i = end; i < len && is_ws(b[i]); i++)
			;
		if (i < len && b[i] == ',') {
			want_row = 1;
			continue;
		}
		want_row = 0;
		i--; /* the loop's i++ comes back to this byte */
	}
}

/* Finds the rows of {"<outer>": {..., "<key>": [...], ...}} in b: 0 when
 * found, 1 when b is laid out otherwise, -1 out of memory. Strings are
 * stepped over whole, so no brace or key inside one is taken for syntax. */
static int split_find(const char *b, size_t len, const char *outer, const char *key,
		      struct split *s)
{
	size_t depth = 0, str = 0, str_end = 0;
	char prev = 0;	  /* the last token: '"' a string, ':' , '{', ... */
	int key_ok = 0;	  /* the string before the last ':' is the key wanted here */
	int in_outer = 0; /* the object 2 deep is outer's */

	for (size_t i = 0; i < len; i++) {
		char ch = b[i];

		if (is_ws(ch))
			continue;
		switch (ch) {
		case '"':
			str = i;
			str_end = i = string_end(b, len, i);
			i--;
			break;
		case ':':
			if (prev != '"')
				return 1;
			key_ok = string_is(b, str, str_end, depth == 1 ? outer : key);
			break;
		case '{':
			if (depth == 0 && prev != 0)
				return 1;
			if (depth == 1)
				in_outer = prev == ':' && key_ok;
			depth++;
			break;
		case '[':
			if (depth == 0)
				return 1;
			if (depth == 1)
				in_outer = 0;
			if (depth == 2 && in_outer && prev == ':' && key_ok) {
				s->open = i;
				return split_rows(b, len, i + 1, s);
			}
			depth++;
			break;
		case '}':
		case ']':
			if (depth-- <= 1)
				return 1; /* the root ended before the rows */
			break;
		default:
			break;
		}
		prev = ch;
	}
	return 1;
}

/* ---- handing rows to a sink, on two threads ---- */

/* Rows to hand over: get(src, i) gives row i (a new reference), or NULL
 * when it is refused. */
struct feed {
	const struct ncp_row_sink *sink;
	json_t *(*get)(void *src, size_t i);
	void *src;
	size_t n;
	atomic_int stop; /* FEED_REFUSED or FEED_GAVE_UP: the others stop too */
};
enum { FEED_OK, FEED_REFUSED, FEED_GAVE_UP };

struct feed_part {
	struct feed *f;
	size_t from, to;
};

static void *feed_part(void *arg)
{
	struct feed_part *p = arg;
	struct feed *f = p->f;

	for (size_t i = p->from; i < p->to && !atomic_load(&f->stop); i++) {
		json_t *row = f->get(f->src, i);

		if (!row) {
			atomic_store(&f->stop, FEED_REFUSED);
			break;
		}
		if (f->sink->row(f->sink->arg, i, row) < 0)
			atomic_store(&f->stop, FEED_GAVE_UP);
		json_decref(row);
	}
	return NULL;
}

/* begin, then every row, half of them on a second thread when there are
 * enough to be worth one: FEED_OK or why it stopped. */
static int feed_run(struct feed *f)
{
	struct feed_part a = { f, 0, f->n / 2 }, b = { f, f->n / 2, f->n };
	pthread_t helper;
	int threaded;

	atomic_init(&f->stop, FEED_OK);
	if (f->sink->begin(f->sink->arg, f->n) < 0)
		return FEED_GAVE_UP;
	threaded = f->n >= 64 && pthread_create(&helper, NULL, feed_part, &b) == 0;
	if (!threaded)
		a.to = f->n;
	feed_part(&a);
	if (threaded)
		pthread_join(helper, NULL);
	return atomic_load(&f->stop);
}

static json_t *array_get(void *src, size_t i)
{
	return json_incref(json_array_get(src, i));
}

int ncp_rows_feed(const struct ncp_row_sink *sink, json_t *rows)
{
	struct feed f = { sink, array_get, rows, json_array_size(rows), FEED_OK };

	if (!sink || (rows && !json_is_array(rows)))
		return -1;
	return feed_run(&f) == FEED_OK ? 0 : -1;
}

struct spans {
	const char *body;
	const struct span *rows;
};

static json_t *span_get(void *src, size_t i)
{
	const struct spans *s = src;
	json_error_t jerr;

	return json_loadb(s->body + s->rows[i].off, s->rows[i].len, JSON_REJECT_DUPLICATES, &jerr);
}

/* Where a listing's rows may go: to sink as they are parsed (then delivered
 * is set, and the payload's list is left empty). */
struct rows_to {
	const struct ncp_row_sink *sink;
	int delivered;
};

static int decode(const char *action, long status, const char *body, size_t len, size_t split_min,
		  struct rows_to *to, json_t **payload, struct ncp_error *err, enum shape *shape);
static int parse_total(json_t *v, long *out);

/* decode() for a big body of rows: 0 with the payload, -1 when the sink
 * gave up, or 1 when the body is to be decoded whole. */
static int decode_split(const char *action, const char *key, const char *body, size_t len,
			struct rows_to *to, json_t **payload, struct ncp_error *err,
			enum shape *shape)
{
	char outer[NCP_ACTION_MAX + sizeof("Response")];
	struct ncp_error rest_err;
	enum shape rest_shape;
	struct split s = { 0 };
	struct spans spans = { body, NULL };
	struct feed f = { to->sink, span_get, &spans, 0, FEED_OK };
	char *rest = NULL;
	json_t *list;
	long total;
	int rc = 1, fed = FEED_REFUSED;

	snprintf(outer, sizeof(outer), "%sResponse", action);
	if (split_find(body, len, outer, key, &s) != 0)
		goto out;
	/* the body with "[]" for the rows, decoded as any answer */
	rest = malloc(len - (s.close - s.open) + 1);
	if (!rest)
		goto out;
	memcpy(rest, body, s.open + 1);
	memcpy(rest + s.open + 1, body + s.close, len - s.close);
	/* Kept apart until the rows are in: a refusal here may be about the
	 * rows' part as well, and the whole body is then the one to say so. */
	if (decode(action, 200, rest, s.open + 1 + len - s.close, SIZE_MAX, NULL, payload,
		   &rest_err, &rest_shape) < 0)
		goto out;
	list = json_object_get(*payload, key);
	spans.rows = s.rows;
	f.n = s.n;
	/* no row is handed over for an answer that will be refused anyway */
	if (json_is_array(list) && json_array_size(list) == 0 &&
	    parse_total(json_object_get(*payload, "totalRows"), &total) == 0)
		fed = feed_run(&f);
	if (fed == FEED_OK) {
		*err = rest_err;
		*shape = rest_shape;
		to->delivered = 1;
		rc = 0;
	} else {
		json_decref(*payload);
		*payload = NULL;
	}
	if (fed == FEED_GAVE_UP) { /* the whole body would not fare better */
		err_clear(err, 200);
		err_set(err, NCP_ERR_IO, "out of memory");
		rc = -1;
	}
out:
	free(rest);
	free(s.rows);
	return rc;
}

/* Decodes an answer; a body of split_min bytes or more may have its rows
 * parsed apart (see decode_split). */
static int decode(const char *action, long status, const char *body, size_t len, size_t split_min,
		  struct rows_to *to, json_t **payload, struct ncp_error *err, enum shape *shape)
{
	char key[NCP_ACTION_MAX + sizeof("Response")];
	json_error_t jerr;
	json_t *root = NULL, *resp = NULL;
	int rc = -1;

	*payload = NULL;
	*shape = SHAPE_NONE;
	err_clear(err, status);
	if (!valid_action(action)) {
		err_set(err, NCP_ERR_IO, "invalid action");
		goto out;
	}
	if (to && status == 200 && body && len >= split_min &&
	    strcmp(action, "getServerImageList") == 0) {
		rc = decode_split(action, "serverImageList", body, len, to, payload, err, shape);
		if (rc <= 0)
			return rc;
		rc = -1; /* decoded whole, below */
	}
	root = json_loadb(body ? body : "", body ? len : 0, JSON_REJECT_DUPLICATES, &jerr);
	if (status != 200) {
		decode_error(root, status, err, shape);
		goto out;
	}
	if (!root) {
		err_set(err, NCP_ERR_IO, "malformed response: %s", jerr.text);
		goto out;
	}
	snprintf(key, sizeof(key), "%sResponse", action);
	if (json_is_object(root))
		resp = json_object_get(root, key);
	if (!json_is_object(resp)) {
		if (json_is_object(root) &&
		    (json_object_get(root, "error") || json_object_get(root, "responseError")))
			decode_error(root, status, err, shape);
		else
			err_set(err, NCP_ERR_IO, "unexpected response shape");
		goto out;
	}
	if (json_is_string(json_object_get(resp, "requestId"))) {
		const char *id = json_string_value(json_object_get(resp, "requestId"));

		copy_clean(err->request_id, sizeof(err->request_id), id, strlen(id));
	}
	if (!return_code_ok(resp, err))
		goto out;
	*payload = json_incref(resp);
	rc = 0;
out:
	json_decref(root);
	return rc;
}

int ncp_decode(const char *action, long http_status, const char *body, size_t len, json_t **payload,
	       struct ncp_error *err)
{
	enum shape shape;

	if (!payload || !err)
		return -1;
	return decode(action, http_status, body, len, SIZE_MAX, NULL, payload, err, &shape);
}

int ncp_decode_split(const char *action, long http_status, const char *body, size_t len,
		     size_t split_min, const struct ncp_row_sink *sink, json_t **payload,
		     struct ncp_error *err)
{
	struct rows_to to = { sink, 0 };
	enum shape shape;
	json_t *list, *none;
	int rc;

	if (!payload || !err)
		return -1;
	rc = decode(action, http_status, body, len, split_min, sink ? &to : NULL, payload, err,
		    &shape);
	if (rc < 0 || !sink || to.delivered)
		return rc;
	/* parsed whole: the rows go to the sink all the same */
	list = json_object_get(*payload, "serverImageList");
	if (!json_is_array(list))
		return 0;
	if (ncp_rows_feed(sink, list) < 0 || !(none = json_array()) ||
	    json_object_set_new(*payload, "serverImageList", none) < 0) {
		json_decref(*payload);
		*payload = NULL;
		err_set(err, NCP_ERR_IO, "out of memory");
		return -1;
	}
	return 0;
}

int ncp_error_errno(const struct ncp_error *err)
{
	if (!err)
		return EIO;
	switch (err->kind) {
	case NCP_OK:
		return 0;
	case NCP_ERR_AUTH:
		return EACCES;
	case NCP_ERR_NOTFOUND:
		return ENOENT;
	case NCP_ERR_CANCELLED:
		return EINTR;
	case NCP_ERR_IO:
		break;
	}
	return EIO;
}

/* ---- the client ---- */

static void share_lock(CURL *h, curl_lock_data data, curl_lock_access access, void *userp)
{
	struct ncp_client *c = userp;

	(void)h;
	(void)access;
	if ((unsigned)data < CURL_LOCK_DATA_LAST)
		pthread_mutex_lock(&c->share_locks[data]);
}

static void share_unlock(CURL *h, curl_lock_data data, void *userp)
{
	struct ncp_client *c = userp;

	(void)h;
	if ((unsigned)data < CURL_LOCK_DATA_LAST)
		pthread_mutex_unlock(&c->share_locks[data]);
}

static size_t body_write(char *ptr, size_t size, size_t nmemb, void *userdata)
{
	struct body *b = userdata;
	size_t n = size * nmemb, cap;
	char *nd;

	if (n > NCP_BODY_MAX - b->len) {
		b->overflow = 1;
		return 0; /* aborts the transfer with CURLE_WRITE_ERROR */
	}
	if (b->len + n + 1 > b->cap) {
		cap = b->cap ? b->cap : 16384;
		while (cap < b->len + n + 1)
			cap *= 2;
		if (cap > NCP_BODY_MAX + 1)
			cap = NCP_BODY_MAX + 1;
		nd = realloc(b->data, cap);
		if (!nd) {
			b->oom = 1;
			return 0;
		}
		b->data = nd;
		b->cap = cap;
	}
	memcpy(b->data + b->len, ptr, n);
	b->len += n;
	b->data[b->len] = '\0';
	return n;
}

#define SETOPT(h, opt, val)                                 \
	do {                                                \
		if (rc == CURLE_OK)                         \
			rc = curl_easy_setopt(h, opt, val); \
	} while (0)

static _Thread_local int (*cancel_fn)(void *);
static _Thread_local void *cancel_arg;

void ncp_set_cancel(int (*cancelled)(void *arg), void *arg)
{
	cancel_fn = cancelled;
	cancel_arg = cancelled ? arg : NULL;
}

void ncp_get_cancel(int (**cancelled)(void *arg), void **arg)
{
	*cancelled = cancel_fn;
	*arg = cancel_arg;
}

int ncp_cancelled(void)
{
	return cancel_fn && cancel_fn(cancel_arg);
}

/* libcurl's transfer-info callback: nonzero aborts the transfer. */
static int transfer_info(void *arg, curl_off_t dltotal, curl_off_t dlnow, curl_off_t ultotal,
			 curl_off_t ulnow)
{
	(void)arg;
	(void)dltotal;
	(void)dlnow;
	(void)ultotal;
	(void)ulnow;
	return ncp_cancelled();
}

/* A new easy handle with everything that does not change between requests. */
static struct pooled *handle_new(struct ncp_client *c)
{
	struct pooled *p = calloc(1, sizeof(*p));
	double connect_s =
		c->timeout_s < NCP_CONNECT_TIMEOUT_MAX ? c->timeout_s : NCP_CONNECT_TIMEOUT_MAX;
	CURLcode rc = CURLE_OK;

	if (!p)
		return NULL;
	p->h = curl_easy_init();
	if (!p->h) {
		free(p);
		return NULL;
	}
	SETOPT(p->h, CURLOPT_SHARE, c->share);
	SETOPT(p->h, CURLOPT_NOSIGNAL, 1L);
	SETOPT(p->h, CURLOPT_SSL_VERIFYPEER, 1L);
	SETOPT(p->h, CURLOPT_SSL_VERIFYHOST, 2L);
	if (c->cafile)
		SETOPT(p->h, CURLOPT_CAINFO, c->cafile);
	SETOPT(p->h, CURLOPT_TIMEOUT_MS, (long)(c->timeout_s * 1000));
	SETOPT(p->h, CURLOPT_CONNECTTIMEOUT_MS, (long)(connect_s * 1000));
	SETOPT(p->h, CURLOPT_FOLLOWLOCATION, 0L);
#if LIBCURL_VERSION_NUM >= 0x075500
	SETOPT(p->h, CURLOPT_PROTOCOLS_STR, "https,http");
#else
	SETOPT(p->h, CURLOPT_PROTOCOLS, (long)(CURLPROTO_HTTPS | CURLPROTO_HTTP));
#endif
	SETOPT(p->h, CURLOPT_USERAGENT, "ncloudfs/" NCLOUDFS_VERSION);
	SETOPT(p->h, CURLOPT_ACCEPT_ENCODING, "");
	/* The signature covers the path: curl must send it byte for byte. */
	SETOPT(p->h, CURLOPT_PATH_AS_IS, 1L);
	SETOPT(p->h, CURLOPT_TCP_KEEPALIVE, 1L);
	SETOPT(p->h, CURLOPT_MAXFILESIZE_LARGE, (curl_off_t)NCP_BODY_MAX);
	SETOPT(p->h, CURLOPT_WRITEFUNCTION, body_write);
	SETOPT(p->h, CURLOPT_XFERINFOFUNCTION, transfer_info);
	SETOPT(p->h, CURLOPT_NOPROGRESS, 0L);
	SETOPT(p->h, CURLOPT_ERRORBUFFER, p->errbuf);
	SETOPT(p->h, CURLOPT_HTTPGET, 1L);
	if (rc != CURLE_OK) {
		curl_easy_cleanup(p->h);
		free(p);
		return NULL;
	}
	return p;
}

/* Never holds the lock while a handle is created or used. */
static struct pooled *pool_get(struct ncp_client *c)
{
	struct pooled *p;

	pthread_mutex_lock(&c->pool_lock);
	p = c->idle;
	if (p)
		c->idle = p->next;
	pthread_mutex_unlock(&c->pool_lock);
	return p ? p : handle_new(c);
}

static void pool_put(struct ncp_client *c, struct pooled *p)
{
	pthread_mutex_lock(&c->pool_lock);
	p->next = c->idle;
	c->idle = p;
	pthread_mutex_unlock(&c->pool_lock);
}

/* Splits api_url into origin, path and authority with libcurl's URL parser. */
/* Whether path holds at least one certificate that OpenSSL can load. */
static int has_certificate(const char *path)
{
	X509_STORE *store = X509_STORE_new();
	int ok = store && X509_STORE_load_file(store, path) == 1 &&
		 sk_X509_OBJECT_num(X509_STORE_get0_objects(store)) > 0;

	X509_STORE_free(store);
	return ok;
}

/* Loopback hosts, where plain http:// cannot be read off the wire. */
static int loopback_host(const char *host)
{
	struct in_addr a4;

	if (strcasecmp(host, "localhost") == 0 || strcmp(host, "[::1]") == 0 ||
	    strcmp(host, "::1") == 0)
		return 1;
	return inet_pton(AF_INET, host, &a4) == 1 && (ntohl(a4.s_addr) >> 24) == 127;
}

static int parse_api_url(struct ncp_client *c, const char *url, char *errbuf, size_t errlen)
{
	CURLU *u = NULL;
	CURLUcode uc;
	char *scheme = NULL, *host = NULL, *port = NULL, *path = NULL, *part = NULL;
	size_t i, n;
	int err = -1;

	if (strncasecmp(url, "https://", 8) != 0 && strncasecmp(url, "http://", 7) != 0) {
		snprintf(errbuf, errlen, "API URL must start with https:// or http://");
		goto out;
	}
	/* Only plain ASCII: whatever curl would re-encode would break the signature. */
	for (i = 0; url[i]; i++) {
		unsigned char ch = (unsigned char)url[i];

		if (ch <= 0x20 || ch >= 0x7f) {
			snprintf(errbuf, errlen, "API URL contains a space or non-ASCII byte");
			goto out;
		}
	}
	u = curl_url();
	if (!u) {
		snprintf(errbuf, errlen, "out of memory");
		goto out;
	}
	uc = curl_url_set(u, CURLUPART_URL, url, 0);
	if (uc != CURLUE_OK) {
		snprintf(errbuf, errlen, "invalid API URL %s: %s", url, curl_url_strerror(uc));
		goto out;
	}
	if (curl_url_get(u, CURLUPART_USER, &part, 0) == CURLUE_OK ||
	    curl_url_get(u, CURLUPART_QUERY, &part, 0) == CURLUE_OK ||
	    curl_url_get(u, CURLUPART_FRAGMENT, &part, 0) == CURLUE_OK) {
		snprintf(errbuf, errlen, "API URL must not have user info, a query or a fragment");
		goto out;
	}
	if (curl_url_get(u, CURLUPART_SCHEME, &scheme, 0) != CURLUE_OK ||
	    curl_url_get(u, CURLUPART_HOST, &host, 0) != CURLUE_OK ||
	    curl_url_get(u, CURLUPART_PATH, &path, 0) != CURLUE_OK) {
		snprintf(errbuf, errlen, "invalid API URL %s", url);
		goto out;
	}
	if (strcasecmp(scheme, "http") == 0 && !loopback_host(host)) {
		snprintf(errbuf, errlen,
			 "refusing plain http:// to %s: only https:// may leave this "
			 "machine",
			 host);
		goto out;
	}
	if (curl_url_get(u, CURLUPART_PORT, &port, 0) != CURLUE_OK)
		port = NULL;
	n = strlen(host) + (port ? strlen(port) + 1 : 0) + 1;
	c->authority = malloc(n);
	c->origin = malloc(strlen(scheme) + 3 + n);
	n = strlen(path);
	while (n > 0 && path[n - 1] == '/')
		n--;
	c->base_path = strndup(path, n);
	if (!c->authority || !c->origin || !c->base_path) {
		snprintf(errbuf, errlen, "out of memory");
		goto out;
	}
	n = strlen(host) + (port ? strlen(port) + 1 : 0) + 1;
	snprintf(c->authority, n, "%s%s%s", host, port ? ":" : "", port ? port : "");
	snprintf(c->origin, strlen(scheme) + 3 + n, "%s://%s", scheme, c->authority);
	err = 0;
out:
	curl_free(scheme);
	curl_free(host);
	curl_free(port);
	curl_free(path);
	curl_free(part);
	curl_url_cleanup(u);
	return err;
}

static int valid_access_key(const char *k)
{
	size_t i;

	for (i = 0; k[i]; i++)
		if (i >= NCP_ACCESS_KEY_MAX || (unsigned char)k[i] <= 0x20 ||
		    (unsigned char)k[i] >= 0x7f)
			return 0;
	return i > 0;
}

struct ncp_client *ncp_client_new(const struct ncp_config *cfg, char *errbuf, size_t errlen)
{
	struct ncp_client *c = NULL;
	int i, nlocks = 0, ok = 0;
	CURLSHcode sc = CURLSHE_OK;

	if (errbuf && errlen)
		errbuf[0] = '\0';
	else
		errlen = 0;
	if (!cfg || !cfg->api_url || !cfg->access_key || !cfg->secret_key) {
		snprintf(errbuf, errlen, "incomplete NCP client configuration");
		return NULL;
	}
	/* No header injection through the key; the secret only feeds the HMAC. */
	if (!valid_access_key(cfg->access_key)) {
		snprintf(errbuf, errlen,
			 "invalid NCP access key (empty, too long or not printable)");
		return NULL;
	}
	if (!cfg->secret_key[0]) {
		snprintf(errbuf, errlen, "empty NCP secret key");
		return NULL;
	}
	if (cfg->cafile && access(cfg->cafile, R_OK) != 0) {
		snprintf(errbuf, errlen, "cannot read CA file %s: %s", cfg->cafile,
			 strerror(errno));
		return NULL;
	}
	if (cfg->cafile && !has_certificate(cfg->cafile)) {
		snprintf(errbuf, errlen, "CA file %s holds no PEM certificate", cfg->cafile);
		return NULL;
	}
	pthread_once(&global_once, global_init);
	if (global_rc != CURLE_OK) {
		snprintf(errbuf, errlen, "cannot initialise libcurl: %s",
			 curl_easy_strerror(global_rc));
		return NULL;
	}

	c = calloc(1, sizeof(*c));
	if (!c) {
		snprintf(errbuf, errlen, "out of memory");
		return NULL;
	}
	/* All locks exist before anything can fail, so ncp_client_free can
	 * always destroy them. */
	if (pthread_mutex_init(&c->pool_lock, NULL) != 0) {
		free(c);
		snprintf(errbuf, errlen, "cannot create a mutex");
		return NULL;
	}
	if (pthread_mutex_init(&c->stats_lock, NULL) != 0) {
		pthread_mutex_destroy(&c->pool_lock);
		free(c);
		snprintf(errbuf, errlen, "cannot create a mutex");
		return NULL;
	}
	for (nlocks = 0; nlocks < CURL_LOCK_DATA_LAST; nlocks++)
		if (pthread_mutex_init(&c->share_locks[nlocks], NULL) != 0)
			break;
	if (nlocks < CURL_LOCK_DATA_LAST || pthread_cond_init(&c->slot_freed, NULL) != 0) {
		for (i = 0; i < nlocks; i++)
			pthread_mutex_destroy(&c->share_locks[i]);
		pthread_mutex_destroy(&c->pool_lock);
		pthread_mutex_destroy(&c->stats_lock);
		free(c);
		snprintf(errbuf, errlen, "cannot create a mutex");
		return NULL;
	}
	c->max_requests = cfg->max_requests > 0 ? cfg->max_requests : NCP_MAX_REQUESTS_DEFAULT;
	c->limit = c->max_requests;
	atomic_init(&c->connections, 0);
	c->timeout_s = cfg->timeout_s > 0 ? cfg->timeout_s : NCP_TIMEOUT_DEFAULT;
	c->retries = cfg->retries > 0 ? cfg->retries : 0;

	if (parse_api_url(c, cfg->api_url, errbuf, errlen) < 0)
		goto out;
	c->access_key = strdup(cfg->access_key);
	c->secret_key = strdup(cfg->secret_key);
	c->cafile = cfg->cafile ? strdup(cfg->cafile) : NULL;
	if (!c->access_key || !c->secret_key || (cfg->cafile && !c->cafile)) {
		snprintf(errbuf, errlen, "out of memory");
		goto out;
	}
	c->share = curl_share_init();
	if (!c->share) {
		snprintf(errbuf, errlen, "cannot create a libcurl share");
		goto out;
	}
	sc = curl_share_setopt(c->share, CURLSHOPT_USERDATA, c);
	if (sc == CURLSHE_OK)
		sc = curl_share_setopt(c->share, CURLSHOPT_LOCKFUNC, share_lock);
	if (sc == CURLSHE_OK)
		sc = curl_share_setopt(c->share, CURLSHOPT_UNLOCKFUNC, share_unlock);
	if (sc == CURLSHE_OK)
		sc = curl_share_setopt(c->share, CURLSHOPT_SHARE, CURL_LOCK_DATA_DNS);
	if (sc == CURLSHE_OK)
		sc = curl_share_setopt(c->share, CURLSHOPT_SHARE, CURL_LOCK_DATA_SSL_SESSION);
	if (sc != CURLSHE_OK) {
		snprintf(errbuf, errlen, "cannot set up a libcurl share: %s",
			 curl_share_strerror(sc));
		goto out;
	}
	ok = 1;
out:
	if (!ok) {
		ncp_client_free(c);
		return NULL;
	}
	return c;
}

void ncp_client_free(struct ncp_client *c)
{
	struct pooled *p;
	int i;

	if (!c)
		return;
	/* Handles first: a share still in use cannot be cleaned up. */
	while ((p = c->idle)) {
		c->idle = p->next;
		curl_easy_cleanup(p->h);
		free(p);
	}
	if (c->share)
		curl_share_cleanup(c->share);
	for (i = 0; i < CURL_LOCK_DATA_LAST; i++)
		pthread_mutex_destroy(&c->share_locks[i]);
	pthread_mutex_destroy(&c->pool_lock);
	pthread_mutex_destroy(&c->stats_lock);
	pthread_cond_destroy(&c->slot_freed);
	if (c->secret_key) {
		OPENSSL_cleanse(c->secret_key, strlen(c->secret_key));
		free(c->secret_key);
	}
	free(c->access_key);
	free(c->cafile);
	free(c->origin);
	free(c->base_path);
	free(c->authority);
	free(c);
}

static const char *const action_names[NCP_NACTIONS] = { "getRegionList", "getServerImageList",
							"getServerImageDetail", "other" };

const char *ncp_action_name(enum ncp_action a)
{
	return a < NCP_NACTIONS ? action_names[a] : "?";
}

const char *ncp_outcome_name(enum ncp_outcome o)
{
	static const char *const names[NCP_NOUTCOMES] = { "ok",	      "4xx",	 "5xx",
							  "bad_body", "network", "cancelled" };

	return o < NCP_NOUTCOMES ? names[o] : "?";
}

void ncp_client_stats(struct ncp_client *c, struct ncp_stats *out)
{
	pthread_mutex_lock(&c->stats_lock);
	*out = c->stats;
	out->limit = (long)c->limit;
	pthread_mutex_unlock(&c->stats_lock);
	out->connections = atomic_load(&c->connections);
}

/* Counts one call's final outcome. */
static void count_call(struct ncp_client *c, const char *action, int answered, long status, int ok,
		       int cancelled, int attempts, size_t bytes)
{
	enum ncp_action a = NCP_ACT_OTHER;
	enum ncp_outcome o;

	for (int i = 0; i < NCP_ACT_OTHER; i++) {
		if (strcmp(action, action_names[i]) == 0)
			a = (enum ncp_action)i;
	}
	if (cancelled)
		o = NCP_OUT_CANCELLED;
	else if (!answered)
		o = NCP_OUT_NETWORK;
	else if (ok)
		o = NCP_OUT_OK;
	else if (status >= 500)
		o = NCP_OUT_5XX;
	else if (status >= 400)
		o = NCP_OUT_4XX;
	else
		o = NCP_OUT_BAD_BODY;
	pthread_mutex_lock(&c->stats_lock);
	c->stats.calls[a][o]++;
	if (attempts > 1)
		c->stats.retries += (unsigned long long)(attempts - 1);
	c->stats.bytes_received += bytes;
	pthread_mutex_unlock(&c->stats_lock);
}

const char *ncp_client_host(const struct ncp_client *c)
{
	return c->authority;
}

long ncp_client_connections(struct ncp_client *c)
{
	return c ? atomic_load(&c->connections) : 0;
}

/* Builds the request target (path?query) once; the very same bytes are
 * signed and sent. *uri and *url are malloc'd. */
static int build_target(struct ncp_client *c, const char *action, const struct ncp_param *params,
			size_t nparams, char **uri, char **url, struct ncp_error *err)
{
	static const char tail[] = "responseFormatType=json";
	size_t need, o, i, nl, vl;
	int k;

	*uri = NULL;
	*url = NULL;
	need = strlen(c->base_path) + sizeof("/vserver/v2/?") + strlen(action) + sizeof(tail);
	for (i = 0; i < nparams; i++) {
		if (!params[i].name || !params[i].value) {
			err_set(err, NCP_ERR_IO, "invalid request parameter");
			return -1;
		}
		nl = strlen(params[i].name);
		vl = strlen(params[i].value);
		if (nl == 0 || nl > NCP_PARAM_MAX || vl > NCP_PARAM_MAX) {
			err_set(err, NCP_ERR_IO, "invalid request parameter");
			return -1;
		}
		need += 3 * nl + 1 + 3 * vl + 1;
	}
	*uri = malloc(need);
	if (!*uri)
		goto oom;
	k = snprintf(*uri, need, "%s/vserver/v2/%s?", c->base_path, action);
	if (k < 0 || (size_t)k >= need)
		goto oom;
	o = (size_t)k;
	for (i = 0; i < nparams; i++) {
		k = sign_encode_component(params[i].name, *uri + o, need - o);
		if (k < 0)
			goto oom;
		o += (size_t)k;
		(*uri)[o++] = '=';
		k = sign_encode_component(params[i].value, *uri + o, need - o);
		if (k < 0)
			goto oom;
		o += (size_t)k;
		(*uri)[o++] = '&';
	}
	if (need - o < sizeof(tail))
		goto oom;
	memcpy(*uri + o, tail, sizeof(tail));

	need = strlen(c->origin) + strlen(*uri) + 1;
	*url = malloc(need);
	if (!*url)
		goto oom;
	snprintf(*url, need, "%s%s", c->origin, *uri);
	return 0;
oom:
	free(*uri);
	*uri = NULL;
	err_set(err, NCP_ERR_IO, "cannot build request: out of memory");
	return -1;
}

/* How one try ended, as decided where it failed: the retry decision is
 * made from this, never from the text of the message. */
enum outcome {
	ANSWERED,  /* an HTTP answer arrived (any status) */
	TRANSPORT, /* no answer: reset, timeout, refused, TLS; worth another try */
	LOCAL,	   /* our own limit or failure (body cap, out of memory): final */
};

/* One signed GET. */
static enum outcome perform(struct ncp_client *c, const char *url, const char *uri, struct body *b,
			    long *status, double *retry_after, struct ncp_error *err)
{
	curl_off_t after = -1;

	*retry_after = -1;
	char ts[32], sig[64], line[NCP_ACCESS_KEY_MAX + 64];
	struct curl_slist *headers = NULL, *t;
	struct pooled *p = NULL;
	struct timespec now;
	long nconn = 0;
	CURLcode rc = CURLE_OK;
	enum outcome ret = LOCAL;

	*status = 0;
	clock_gettime(CLOCK_REALTIME, &now);
	snprintf(ts, sizeof(ts), "%lld",
		 (long long)now.tv_sec * 1000 + (long long)(now.tv_nsec / 1000000));
	if (sign_v2("GET", uri, ts, c->access_key, c->secret_key, sig, sizeof(sig)) < 0) {
		err_set(err, NCP_ERR_IO, "cannot sign request");
		goto out;
	}
	snprintf(line, sizeof(line), "x-ncp-apigw-timestamp: %s", ts);
	headers = curl_slist_append(headers, line);
	snprintf(line, sizeof(line), "x-ncp-iam-access-key: %s", c->access_key);
	t = headers ? curl_slist_append(headers, line) : NULL;
	snprintf(line, sizeof(line), "x-ncp-apigw-signature-v2: %s", sig);
	t = t ? curl_slist_append(t, line) : NULL;
	t = t ? curl_slist_append(t, "Accept: application/json") : NULL;
	if (!t) {
		err_set(err, NCP_ERR_IO, "cannot build request: out of memory");
		goto out;
	}

	p = pool_get(c);
	if (!p) {
		err_set(err, NCP_ERR_IO, "cannot create a libcurl handle");
		goto out;
	}
	p->errbuf[0] = '\0';
	SETOPT(p->h, CURLOPT_URL, url);
	SETOPT(p->h, CURLOPT_HTTPHEADER, headers);
	SETOPT(p->h, CURLOPT_WRITEDATA, b);
	if (rc == CURLE_OK)
		rc = curl_easy_perform(p->h);
	curl_easy_getinfo(p->h, CURLINFO_RESPONSE_CODE, status);
	*retry_after =
		curl_easy_getinfo(p->h, CURLINFO_RETRY_AFTER, &after) == CURLE_OK && after > 0
			? (double)after
			: -1;
	if (curl_easy_getinfo(p->h, CURLINFO_NUM_CONNECTS, &nconn) == CURLE_OK && nconn > 0)
		atomic_fetch_add(&c->connections, nconn);
	err->http_status = *status;
	if (b->overflow || rc == CURLE_FILESIZE_EXCEEDED)
		err_set(err, NCP_ERR_IO, "response body exceeds 16 MiB");
	else if (b->oom)
		err_set(err, NCP_ERR_IO, "out of memory reading the response");
	else if (rc == CURLE_OUT_OF_MEMORY)
		err_set(err, NCP_ERR_IO, "%s: %s", c->authority, curl_easy_strerror(rc));
	else if (rc == CURLE_ABORTED_BY_CALLBACK)
		err_set(err, NCP_ERR_CANCELLED, "cancelled");
	else if (rc != CURLE_OK) {
		if (p->errbuf[0])
			err_set(err, NCP_ERR_IO, "%s: %s (%s)", c->authority,
				curl_easy_strerror(rc), p->errbuf);
		else
			err_set(err, NCP_ERR_IO, "%s: %s", c->authority, curl_easy_strerror(rc));
		ret = TRANSPORT;
	} else
		ret = ANSWERED;
	/* No dangling pointers left in an idle handle; p->errbuf is not ours
	 * once it is back in the pool. */
	curl_easy_setopt(p->h, CURLOPT_HTTPHEADER, (struct curl_slist *)NULL);
	curl_easy_setopt(p->h, CURLOPT_WRITEDATA, (void *)NULL);
	pool_put(c, p);
out:
	curl_slist_free_all(headers);
	return ret;
}

/* Worth another try: no answer at all (reset, timeout, refused), 429 or 5xx. */
static int retryable(enum outcome how, long status)
{
	if (how == ANSWERED)
		return status == 429 || status >= 500;
	return how == TRANSPORT;
}

/* Sleeps before try number attempt + 1: exponential from 250 ms, capped at
 * 8 s, with full jitter so that many readers do not retry in step; a
 * Retry-After is honoured up to the request timeout. */
static void backoff(const struct ncp_client *c, int attempt, double retry_after)
{
	double cap = 0.25 * (double)(1u << (attempt < 5 ? attempt : 5)), wait;
	struct timespec ts;
	unsigned int seed;

	/* Seeded from the clock's nanoseconds: two backoffs in one second (or
	 * of two threads) do not draw the same jitter. */
	clock_gettime(CLOCK_MONOTONIC, &ts);
	seed = (unsigned int)ts.tv_nsec ^ (unsigned int)ts.tv_sec ^ (unsigned int)(uintptr_t)&cap;

	if (cap > 8)
		cap = 8;
	wait = cap / 2 + cap / 2 * ((double)rand_r(&seed) / RAND_MAX);
	if (retry_after > 0)
		wait = retry_after < c->timeout_s ? retry_after : c->timeout_s;
	/* in slices, so that a cancelled call does not sleep on */
	while (wait > 0 && !ncp_cancelled()) {
		double slice = wait < 0.02 ? wait : 0.02;

		ts.tv_sec = 0;
		ts.tv_nsec = (long)(slice * 1e9);
		while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
			;
		wait -= slice;
	}
}

/* Waits for room among the requests in flight: 0 and the halving count to
 * hand back to slot_give, or -1 when the call is cancelled meanwhile. */
static int slot_take(struct ncp_client *c, unsigned *cut)
{
	if (ncp_cancelled())
		return -1;
	pthread_mutex_lock(&c->stats_lock);
	while (c->in_flight >= (int)c->limit) {
		struct timespec ts;

		if (ncp_cancelled()) {
			pthread_mutex_unlock(&c->stats_lock);
			return -1;
		}
		clock_gettime(CLOCK_REALTIME, &ts);
		ts.tv_nsec += 20000000; /* looks at the cancel check every 20 ms */
		if (ts.tv_nsec >= 1000000000) {
			ts.tv_sec++;
			ts.tv_nsec -= 1000000000;
		}
		pthread_cond_timedwait(&c->slot_freed, &c->stats_lock, &ts);
	}
	c->in_flight++;
	if (c->in_flight > c->stats.in_flight_peak)
		c->stats.in_flight_peak = c->in_flight;
	*cut = c->cut;
	pthread_mutex_unlock(&c->stats_lock);
	return 0;
}

/* A request is over: a 429 halves the limit (once for all the requests sent
 * before the halving), any other answer grows it by 1/limit, so by one per
 * limit answers, as TCP's congestion window does. */
static void slot_give(struct ncp_client *c, unsigned cut, enum outcome how, long status)
{
	pthread_mutex_lock(&c->stats_lock);
	c->in_flight--;
	if (how == ANSWERED && status == 429) {
		if (cut == c->cut) {
			c->limit = c->limit / 2 < 1 ? 1 : (double)(int)(c->limit / 2);
			c->cut++;
		}
	} else if (how == ANSWERED && c->limit < c->max_requests) {
		c->limit += 1 / c->limit;
		if (c->limit > c->max_requests)
			c->limit = c->max_requests;
	}
	pthread_cond_signal(&c->slot_freed);
	pthread_mutex_unlock(&c->stats_lock);
}

static int call(struct ncp_client *c, const char *action, const struct ncp_param *params,
		size_t nparams, struct rows_to *to, json_t **payload, struct ncp_error *err,
		enum shape *shape)
{
	struct body b = { 0 };
	char *uri = NULL, *url = NULL;
	double retry_after;
	long status = 0;
	size_t bytes = 0;
	enum outcome how = LOCAL;
	int rc = -1, attempt = 0, unsent = 0;
	unsigned cut;

	*payload = NULL;
	*shape = SHAPE_NONE;
	err_clear(err, 0);
	if (!c || !valid_action(action) || (!params && nparams)) {
		err_set(err, NCP_ERR_IO, "invalid request");
		goto out;
	}
	if (build_target(c, action, params, nparams, &uri, &url, err) < 0)
		goto out;
	for (;; attempt++) {
		/* Signed anew each time: the gateway refuses stale timestamps. */
		free(b.data);
		memset(&b, 0, sizeof(b));
		err_clear(err, 0);
		if (slot_take(c, &cut) < 0) {
			err_set(err, NCP_ERR_CANCELLED, "cancelled");
			unsent = 1;
			break;
		}
		how = perform(c, url, uri, &b, &status, &retry_after, err);
		slot_give(c, cut, how, status);
		bytes += b.len;
		if (err->kind == NCP_ERR_CANCELLED)
			break;
		if (how == ANSWERED) {
			rc = decode(action, status, b.data, b.len, NCP_SPLIT_MIN, to, payload, err,
				    shape);
			if (rc == 0)
				break;
		}
		if (attempt >= c->retries || !retryable(how, status))
			break;
		backoff(c, attempt, retry_after);
		if (ncp_cancelled()) {
			err_set(err, NCP_ERR_CANCELLED, "cancelled");
			break;
		}
	}
	err->attempts = attempt + 1 - unsent;
	count_call(c, action, how == ANSWERED, status, rc == 0, err->kind == NCP_ERR_CANCELLED,
		   err->attempts, bytes);
out:
	free(b.data);
	free(uri);
	free(url);
	return rc;
}

int ncp_call(struct ncp_client *c, const char *action, const struct ncp_param *params,
	     size_t nparams, json_t **payload, struct ncp_error *err)
{
	enum shape shape;

	if (!payload || !err)
		return -1;
	return call(c, action, params, nparams, NULL, payload, err, &shape);
}

int ncp_region_list(struct ncp_client *c, json_t **regions, struct ncp_error *err)
{
	json_t *payload = NULL, *list;
	int rc = -1;

	if (!regions || !err)
		return -1;
	*regions = NULL;
	if (ncp_call(c, "getRegionList", NULL, 0, &payload, err) < 0)
		goto out;
	list = json_object_get(payload, "regionList");
	if (!json_is_array(list)) {
		err_set(err, NCP_ERR_IO, "unexpected response shape: no regionList array");
		goto out;
	}
	*regions = json_incref(list);
	rc = 0;
out:
	json_decref(payload);
	return rc;
}

/* totalRows: a number, or a numeric string from older API versions. */
static int parse_total(json_t *v, long *out)
{
	const char *s;
	char *end;
	long n;

	if (json_is_integer(v)) {
		json_int_t i = json_integer_value(v);

		if (i < 0 || (unsigned long long)i > (unsigned long long)LONG_MAX)
			return -1;
		*out = (long)i;
		return 0;
	}
	if (!json_is_string(v))
		return -1;
	s = json_string_value(v);
	if (s[0] < '0' || s[0] > '9')
		return -1;
	errno = 0;
	n = strtol(s, &end, 10);
	if (errno || *end || (size_t)(end - s) != json_string_length(v))
		return -1;
	*out = n;
	return 0;
}

/* One page: its rows into *rows, or to the sink in to (then *rows is an
 * empty array when to->delivered is set). */
static int list_page(struct ncp_client *c, const char *region, long page_no, long page_size,
		     struct rows_to *to, json_t **rows, long *total_rows, struct ncp_error *err)
{
	struct ncp_param params[3];
	char no[24], size[24];
	json_t *payload = NULL, *list;
	size_t n = 0;
	long total = 0;
	enum shape shape;
	int rc = -1;

	*rows = NULL;
	*total_rows = 0;
	snprintf(no, sizeof(no), "%ld", page_no);
	snprintf(size, sizeof(size), "%ld", page_size);
	if (region)
		params[n++] = (struct ncp_param){ "regionCode", region };
	params[n++] = (struct ncp_param){ "pageNo", no };
	params[n++] = (struct ncp_param){ "pageSize", size };
	if (call(c, "getServerImageList", params, n, to, &payload, err, &shape) < 0)
		goto out;
	if (parse_total(json_object_get(payload, "totalRows"), &total) < 0) {
		err_set(err, NCP_ERR_IO, "unexpected response shape: bad totalRows");
		goto out;
	}
	list = json_object_get(payload, "serverImageList");
	if ((!list || json_is_null(list)) && total == 0) {
		list = json_array();
		if (!list) {
			err_set(err, NCP_ERR_IO, "out of memory");
			goto out;
		}
	} else if (json_is_array(list)) {
		json_incref(list);
	} else {
		err_set(err, NCP_ERR_IO, "unexpected response shape: no serverImageList array");
		goto out;
	}
	*rows = list;
	*total_rows = total;
	rc = 0;
out:
	json_decref(payload);
	return rc;
}

int ncp_image_list_page(struct ncp_client *c, const char *region, long page_no, long page_size,
			json_t **rows, long *total_rows, struct ncp_error *err)
{
	if (!rows || !total_rows || !err)
		return -1;
	return list_page(c, region, page_no, page_size, NULL, rows, total_rows, err);
}

int ncp_image_list_rows(struct ncp_client *c, const char *region, long page_no, long page_size,
			const struct ncp_row_sink *sink, long *total_rows, struct ncp_error *err)
{
	struct rows_to to = { sink, 0 };
	json_t *rows;
	int rc;

	if (!sink || !total_rows || !err)
		return -1;
	rc = list_page(c, region, page_no, page_size, &to, &rows, total_rows, err);
	if (rc == 0 && !to.delivered && ncp_rows_feed(sink, rows) < 0) {
		err_set(err, NCP_ERR_IO, "out of memory");
		rc = -1;
	}
	json_decref(rows);
	return rc;
}

int ncp_image_detail(struct ncp_client *c, const char *region, const char *image_no, json_t **image,
		     struct ncp_error *err)
{
	struct ncp_param params[2];
	enum shape shape;
	json_t *payload = NULL, *list, *img;
	size_t n = 0;
	long total = -1;
	int rc = -1;

	if (!image || !err)
		return -1;
	*image = NULL;
	if (region)
		params[n++] = (struct ncp_param){ "regionCode", region };
	params[n++] = (struct ncp_param){ "serverImageNo", image_no };
	if (call(c, "getServerImageDetail", params, n, NULL, &payload, err, &shape) < 0) {
		/* The service's own 400 is how NCP says "no such image"; a
		 * gateway 400 (malformed request) is not. */
		if (shape == SHAPE_SERVICE && err->http_status == 400)
			err->kind = NCP_ERR_NOTFOUND;
		goto out;
	}
	list = json_object_get(payload, "serverImageList");
	if ((json_is_array(list) && json_array_size(list) == 0) ||
	    (!list && parse_total(json_object_get(payload, "totalRows"), &total) == 0 &&
	     total == 0)) {
		err_set(err, NCP_ERR_NOTFOUND, "no such image");
		goto out;
	}
	img = json_array_get(list, 0);
	if (!json_is_object(img)) {
		err_set(err, NCP_ERR_IO, "unexpected response shape: no serverImageList object");
		goto out;
	}
	*image = json_incref(img);
	rc = 0;
out:
	json_decref(payload);
	return rc;
}
