/* SPDX-License-Identifier: MIT */
/* test_decode.c: ncp_decode on success bodies (tests/unit/data, from the API
 * guide), both error shapes and hostile bodies; ncp_error_errno; then the
 * whole client against a small HTTP server on 127.0.0.1 (no TLS, no NCP):
 * signing as sent, keep-alive, the two "no such image" shapes, totalRows as
 * a string, the 16 MiB cap, timeouts and concurrent calls. */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

#include <openssl/evp.h>
#include <openssl/hmac.h>

#include "ncp.h"
#include "testhelp.h"

/* Linked with --wrap=pthread_create: counts the threads started, and can
 * refuse them. */
int __real_pthread_create(pthread_t *t, const pthread_attr_t *attr, void *(*fn)(void *), void *arg);
int __wrap_pthread_create(pthread_t *t, const pthread_attr_t *attr, void *(*fn)(void *), void *arg);
static atomic_int threads_started, no_threads;

int __wrap_pthread_create(pthread_t *t, const pthread_attr_t *attr, void *(*fn)(void *), void *arg)
{
	if (atomic_load(&no_threads))
		return EAGAIN;
	atomic_fetch_add(&threads_started, 1);
	return __real_pthread_create(t, attr, fn, arg);
}

static char *read_data(const char *name, size_t *len)
{
	char path[256], *buf = NULL;
	FILE *f;
	long n;

	snprintf(path, sizeof(path), "data/%s", name);
	f = fopen(path, "rb");
	if (!f) {
		fprintf(stderr, "cannot open %s (run from tests/unit)\n", path);
		return NULL;
	}
	if (fseek(f, 0, SEEK_END) == 0 && (n = ftell(f)) > 0 && fseek(f, 0, SEEK_SET) == 0) {
		buf = malloc((size_t)n);
		if (buf && fread(buf, 1, (size_t)n, f) != (size_t)n) {
			free(buf);
			buf = NULL;
		}
		*len = (size_t)n;
	}
	fclose(f);
	return buf;
}

/* Decodes a copy without a terminating NUL, so ASan sees any overread. */
static int decode(const char *action, long status, const char *body, json_t **payload,
		  struct ncp_error *err)
{
	size_t len = strlen(body);
	char *copy = malloc(len ? len : 1);
	int rc;

	memcpy(copy, body, len);
	rc = ncp_decode(action, status, copy, len, payload, err);
	free(copy);
	return rc;
}

static void test_success_files(void)
{
	struct ncp_error err;
	json_t *p = NULL, *img, *bsm;
	size_t len = 0;
	char *body;

	body = read_data("getServerImageDetail.json", &len);
	CHECK(body != NULL);
	if (body) {
		CHECK(ncp_decode("getServerImageDetail", 200, body, len, &p, &err) == 0);
		CHECK(err.kind == NCP_OK);
		CHECK(err.http_status == 200);
		img = json_array_get(json_object_get(p, "serverImageList"), 0);
		CHECK_STR(json_string_value(json_object_get(img, "serverImageProductCode")),
			  "SW.VSVR.OS.LNX64.UBNTU.SVR24.G003");
		bsm = json_array_get(json_object_get(img, "blockStorageMappingList"), 0);
		CHECK(json_integer_value(json_object_get(bsm, "blockStorageSize")) ==
		      10737418240LL);
		CHECK(p->refcount == 1);
		json_decref(p);
		/* the wrong action does not match */
		CHECK(ncp_decode("getServerImageList", 200, body, len, &p, &err) == -1);
		CHECK(p == NULL);
		CHECK(err.kind == NCP_ERR_IO);
		CHECK_STR(err.message, "unexpected response shape");
		free(body);
	}

	body = read_data("getRegionList.json", &len);
	CHECK(body != NULL);
	if (body) {
		CHECK(ncp_decode("getRegionList", 200, body, len, &p, &err) == 0);
		CHECK(json_array_size(json_object_get(p, "regionList")) == 3);
		json_decref(p);
		free(body);
	}

	body = read_data("getServerImageList.json", &len);
	CHECK(body != NULL);
	if (body) {
		CHECK(ncp_decode("getServerImageList", 200, body, len, &p, &err) == 0);
		CHECK_STR(json_string_value(json_object_get(p, "totalRows")), "2");
		CHECK(json_array_size(json_object_get(p, "serverImageList")) == 2);
		json_decref(p);
		free(body);
	}
}

static void test_return_codes(void)
{
	struct ncp_error err;
	json_t *p = NULL;

	CHECK(decode("getRegionList", 200,
		     "{\"getRegionListResponse\":{\"returnCode\":\"0\",\"regionList\":[]}}", &p,
		     &err) == 0);
	json_decref(p);
	CHECK(decode("getRegionList", 200,
		     "{\"getRegionListResponse\":{\"returnCode\":0,\"regionList\":[]}}", &p,
		     &err) == 0);
	json_decref(p);
	/* no returnCode at all: taken at its word */
	CHECK(decode("getRegionList", 200, "{\"getRegionListResponse\":{\"regionList\":[]}}", &p,
		     &err) == 0);
	json_decref(p);

	CHECK(decode("getRegionList", 200,
		     "{\"getRegionListResponse\":{\"returnCode\":\"1200\","
		     "\"returnMessage\":\"Not authorized\"}}",
		     &p, &err) == -1);
	CHECK(p == NULL);
	CHECK(err.kind == NCP_ERR_IO);
	CHECK(err.http_status == 200);
	CHECK_STR(err.code, "1200");
	CHECK_STR(err.message, "Not authorized");

	CHECK(decode("getRegionList", 200, "{\"getRegionListResponse\":{\"returnCode\":25}}", &p,
		     &err) == -1);
	CHECK_STR(err.code, "25");
	CHECK_STR(err.message, "returnCode 25");
	CHECK(decode("getRegionList", 200,
		     "{\"getRegionListResponse\":{\"returnCode\":\"00\",\"returnMessage\":\"x\"}}",
		     &p, &err) == -1);
	CHECK(decode("getRegionList", 200, "{\"getRegionListResponse\":{\"returnCode\":null}}", &p,
		     &err) == -1);
	CHECK(err.kind == NCP_ERR_IO);
}

static void check_error(long status, const char *body, enum ncp_errkind kind, const char *code,
			const char *message)
{
	struct ncp_error err;
	json_t *p = (json_t *)&err; /* must come back NULL */

	CHECK(decode("getServerImageDetail", status, body, &p, &err) == -1);
	CHECK(p == NULL);
	CHECK(err.kind == kind);
	CHECK(err.http_status == status);
	CHECK_STR(err.code, code);
	CHECK_STR(err.message, message);
}

static void test_errors(void)
{
	/* gateway shape, errorCode as a string and as a number */
	check_error(401,
		    "{\"error\":{\"errorCode\":\"200\",\"message\":\"Authentication Failed\","
		    "\"details\":\"Invalid authentication information.\"}}",
		    NCP_ERR_AUTH, "200",
		    "Authentication Failed: Invalid authentication information.");
	check_error(401, "{\"error\":{\"errorCode\":210,\"message\":\"Permission Denied\"}}",
		    NCP_ERR_AUTH, "210", "Permission Denied");
	check_error(403, "{\"error\":{\"errorCode\":230,\"message\":\"Forbidden\"}}", NCP_ERR_AUTH,
		    "230", "Forbidden");
	check_error(429, "{\"error\":{\"errorCode\":\"420\",\"message\":\"Rate Limited\"}}",
		    NCP_ERR_IO, "420", "Rate Limited");
	check_error(500, "{\"error\":{\"errorCode\":900,\"message\":\"Unexpected Error\"}}",
		    NCP_ERR_IO, "900", "Unexpected Error");
	check_error(503,
		    "{\"error\":{\"errorCode\":\"500\",\"message\":\"Endpoint Error\","
		    "\"details\":\"\"}}",
		    NCP_ERR_IO, "500", "Endpoint Error");
	check_error(404, "{\"error\":{\"errorCode\":\"300\"}}", NCP_ERR_IO, "300", "HTTP 404");

	/* service shape: ncp_decode leaves "no such image" to ncp_image_detail */
	check_error(400,
		    "{\"responseError\":{\"returnCode\":\"10104\","
		    "\"returnMessage\":\"The server image does not exist.\"}}",
		    NCP_ERR_IO, "10104", "The server image does not exist.");
	check_error(400, "{\"responseError\":{\"returnCode\":10104}}", NCP_ERR_IO, "10104",
		    "HTTP 400");
	/* an error body behind a 200 is still an error */
	check_error(200, "{\"responseError\":{\"returnCode\":\"900\",\"returnMessage\":\"oops\"}}",
		    NCP_ERR_IO, "900", "oops");

	/* bodies that are not JSON, or not either shape */
	check_error(502, "<html><body>Bad Gateway</body></html>", NCP_ERR_IO, "", "HTTP 502");
	check_error(401, "", NCP_ERR_AUTH, "", "HTTP 401");
	check_error(500, "{\"message\":\"whatever\"}", NCP_ERR_IO, "", "HTTP 500");
	check_error(403, "{\"error\":\"just a string\"}", NCP_ERR_AUTH, "", "HTTP 403");
	check_error(302, "", NCP_ERR_IO, "", "HTTP 302");
	check_error(500, "{\"error\":{\"errorCode\":{},\"message\":[]}}", NCP_ERR_IO, "",
		    "HTTP 500");
}

static void check_malformed(const char *action, const char *body, const char *prefix)
{
	struct ncp_error err;
	json_t *p = NULL;

	CHECK(decode(action, 200, body, &p, &err) == -1);
	CHECK(p == NULL);
	CHECK(err.kind == NCP_ERR_IO);
	CHECK(err.http_status == 200);
	CHECK(strncmp(err.message, prefix, strlen(prefix)) == 0);
	if (strncmp(err.message, prefix, strlen(prefix)) != 0)
		fprintf(stderr, "  got \"%s\"\n", err.message);
}

static void test_malformed(void)
{
	const char *m = "malformed response: ";
	const char *s = "unexpected response shape";

	check_malformed("getRegionList", "", m);
	check_malformed("getRegionList", "not json", m);
	check_malformed("getRegionList", "<?xml version=\"1.0\"?><getRegionListResponse/>", m);
	check_malformed("getRegionList", "{\"getRegionListResponse\":{\"regionList\":[", m);
	check_malformed("getRegionList", "{\"getRegionListResponse\":{}} trailing", m);
	/* duplicate keys are refused, at any depth */
	check_malformed("getRegionList",
			"{\"getRegionListResponse\":{},\"getRegionListResponse\":{}}", m);
	check_malformed("getRegionList",
			"{\"getRegionListResponse\":{\"returnCode\":\"1\",\"returnCode\":\"0\"}}",
			m);
	/* wrong shapes */
	check_malformed("getRegionList", "[]", s);
	check_malformed("getRegionList", "{}", s);
	check_malformed("getRegionList", "{\"getRegionListResponse\":[]}", s);
	check_malformed("getRegionList", "{\"getRegionListResponse\":\"x\"}", s);
	check_malformed("getRegionList", "{\"getregionlistResponse\":{}}", s);
	/* a bad action is refused before anything else */
	check_malformed("get Region", "{}", "invalid action");
	check_malformed("", "{}", "invalid action");
}

/* ---- a big listing's rows parsed apart: always the same answer ---- */

/* One row with strings that hold what the row finder must step over:
 * braces, brackets, quotes, backslashes, the list's own key, non-ASCII. */
static void put_row(FILE *f, size_t i)
{
	fprintf(f,
		"{\"serverImageNo\":\"%zu\",\"serverImageName\":\"a{b}[c]\\\"d\\\\\","
		"\"serverImageDescription\":\"\\\"serverImageList\\\":[{\\\\\",\"osType\":"
		"\"UBUNTU\","
		"\"blockStorageMappingList\":[{\"iops\":100,\"n\":{\"x\":[1,2.5e3,{\"y\":\"}\"},"
		"null,true]}}],"
		"\"serverImageDescriptionKo\":\"\xec\x9d\xb4\xeb\xaf\xb8\xec\xa7\x80 \xc3\xbc "
		"\\u00e9\"}",
		i);
}

/* A listing body: before, n rows joined by sep, after (printf formats for
 * the outer parts). */
static char *listing(size_t n, const char *head, const char *sep, const char *tail, size_t *len)
{
	char *buf = NULL;
	FILE *f = open_memstream(&buf, len);

	fputs(head, f);
	for (size_t i = 0; i < n; i++) {
		if (i)
			fputs(sep, f);
		put_row(f, i + 1);
	}
	fputs(tail, f);
	fclose(f);
	return buf;
}

/* A sink that keeps what it is given, from two threads at once, and checks
 * the contract: begin before rows, each row once, inside n. */
struct collect {
	json_t **rows;
	size_t n;
	atomic_int begins, rows_given, misuse;
};

static int collect_begin(void *arg, size_t n)
{
	struct collect *k = arg;

	for (size_t i = 0; i < k->n; i++)
		json_decref(k->rows[i]);
	free(k->rows);
	k->rows = calloc(n ? n : 1, sizeof(*k->rows));
	k->n = n;
	atomic_fetch_add(&k->begins, 1);
	atomic_store(&k->rows_given, 0);
	return k->rows ? 0 : -1;
}

static int collect_row(void *arg, size_t i, json_t *row)
{
	struct collect *k = arg;

	if (i >= k->n || k->rows[i]) {
		atomic_store(&k->misuse, 1);
		return -1;
	}
	k->rows[i] = json_incref(row);
	atomic_fetch_add(&k->rows_given, 1);
	return 0;
}

/* The rows collected, as an array (k emptied). */
static json_t *collected(struct collect *k)
{
	json_t *a = json_array();

	for (size_t i = 0; i < k->n; i++)
		json_array_append_new(a, k->rows[i] ? k->rows[i] : json_string("(missing)"));
	free(k->rows);
	k->rows = NULL;
	k->n = 0;
	return a;
}

/* Decodes body whole, into a sink whole, and into a sink with its rows
 * parsed apart: the same result, whatever it is. Returns the last's code. */
static int check_same(const char *what, const char *body, size_t len)
{
	struct ncp_error whole, fed[2];
	json_t *pw = NULL, *pf[2] = { NULL, NULL }, *list, *rows[2];
	char *copy = malloc(len ? len : 1); /* no NUL after it: ASan sees overreads */
	int rw, rf[2], same = 1;

	memcpy(copy, body, len);
	rw = ncp_decode_split("getServerImageList", 200, copy, len, SIZE_MAX, NULL, &pw, &whole);
	list = rw == 0 ? json_object_get(pw, "serverImageList") : NULL;
	for (int k = 0; k < 2; k++) {
		struct collect c = { NULL, 0, 0, 0, 0 };
		struct ncp_row_sink sink = { collect_begin, collect_row, &c };

		rf[k] = ncp_decode_split("getServerImageList", 200, copy, len, k ? 0 : SIZE_MAX,
					 &sink, &pf[k], &fed[k]);
		CHECK(!atomic_load(&c.misuse));
		same = same && rf[k] == rw;
		if (same && rw == 0 && json_is_array(list)) {
			/* the sink had every row, once, and the payload none */
			same = atomic_load(&c.rows_given) == (int)json_array_size(list) &&
			       json_array_size(json_object_get(pf[k], "serverImageList")) == 0;
		}
		rows[k] = collected(&c);
		if (same && rw == 0 && json_is_array(list))
			same = json_equal(list, rows[k]);
		else if (same && rw != 0)
			same = whole.kind == fed[k].kind &&
			       !strcmp(whole.message, fed[k].message) &&
			       !strcmp(whole.code, fed[k].code);
	}
	free(copy);
	if (same && rw == 0) {
		if (json_is_array(list))
			json_object_set_new(pw, "serverImageList", json_array());
		same = json_equal(pw, pf[0]) && json_equal(pw, pf[1]);
	}
	CHECK(same);
	if (!same)
		fprintf(stderr, "  (%s)\n", what);
	for (int k = 0; k < 2; k++) {
		json_decref(rows[k]);
		json_decref(pf[k]);
	}
	json_decref(pw);
	return rf[1];
}

#define HEAD                                                                                       \
	"{\"getServerImageListResponse\":{\"requestId\":\"r\",\"returnCode\":\"0\",\"totalRows\":" \
	"200,\"serverImageList\":["
#define TAIL "]}}"

static void test_split_rows(void)
{
	struct {
		const char *what, *head, *sep, *tail;
		int ok; /* decodes */
	} cases[] = {
		{ "plain", HEAD, ",", TAIL, 1 },
		{ "pretty, totalRows last",
		  " \n{ \"getServerImageListResponse\" :\r\n{ \"serverImageList\" :\t[ ", " ,\n ",
		  "\n] , \"totalRows\" : 200 }\n}\n", 1 },
		{ "another key's list first",
		  "{\"x\":{\"serverImageList\":[{}]},\"getServerImageListResponse\":{"
		  "\"serverImageList\":[",
		  ",", "],\"totalRows\":200}}", 1 },
		{ "the list's key escaped",
		  "{\"getServerImageListResponse\":{\"totalRows\":200,\"server\\u0049mageList\":[",
		  ",", TAIL, 1 },
		{ "a list two deep",
		  "{\"getServerImageListResponse\":{\"totalRows\":200,\"a\":{\"serverImageList\":[",
		  ",", "]},\"serverImageList\":[]}}", 1 },
		{ "a number among the rows", HEAD "7,", ",", TAIL, 1 },
		{ "an error returnCode",
		  "{\"getServerImageListResponse\":{\"returnCode\":\"1300\",\"returnMessage\":"
		  "\"no\",\"serverImageList\":[",
		  ",", TAIL, 0 },
		{ "the list twice", HEAD, ",", "],\"serverImageList\":[]}}", 0 },
		{ "a trailing comma", HEAD, ",", ",]}}", 0 },
		{ "a missing comma", HEAD, " ", TAIL, 0 },
		{ "two commas", HEAD, ",,", TAIL, 0 },
		{ "a duplicate key in a row", HEAD "{\"a\":1,\"a\":2},", ",", TAIL, 0 },
		{ "NUL in a row", HEAD "{\"a\":\"\\u0000\"},", ",", TAIL, 0 },
		{ "bad UTF-8 in a row", HEAD "{\"a\":\"\xff\"},", ",", TAIL, 0 },
		{ "a bare word in a row", HEAD "{\"a\":nope},", ",", TAIL, 0 },
		{ "rows never closed", HEAD, ",", "", 0 },
		{ "trailing text", HEAD, ",", TAIL " x", 0 },
		{ "a byte-order mark", "\xef\xbb\xbf" HEAD, ",", TAIL, 0 },
	};

	for (size_t k = 0; k < sizeof(cases) / sizeof(cases[0]); k++) {
		size_t len;
		char *body = listing(200, cases[k].head, cases[k].sep, cases[k].tail, &len);

		if ((check_same(cases[k].what, body, len) == 0) != cases[k].ok)
			fprintf(stderr, "  (%s: %s)\n", cases[k].what,
				cases[k].ok ? "refused" : "taken");
		CHECK((check_same(cases[k].what, body, len) == 0) == cases[k].ok);
		free(body);
	}
	/* a row deeper than the row finder follows (70 > 64), then the rest */
	{
		char head[sizeof(HEAD) + 200], *body;
		size_t len, n = strlen(HEAD);

		memcpy(head, HEAD, n);
		head[n++] = '{';
		n += (size_t)sprintf(head + n, "\"a\":");
		for (int d = 0; d < 70; d++)
			head[n++] = '[';
		for (int d = 0; d < 70; d++)
			head[n++] = ']';
		memcpy(head + n, "},", 3);
		body = listing(200, head, ",", TAIL, &len);
		CHECK(check_same("deep", body, len) == 0);
		free(body);
	}
}

/* Every prefix of a small listing: cut anywhere, still the same answer. */
static void test_split_truncated(void)
{
	size_t len;
	char *body = listing(3, HEAD, ",", TAIL, &len);

	CHECK(check_same("whole", body, len) == 0);
	for (size_t cut = 0; cut < len; cut++)
		CHECK(check_same("cut", body, cut) == -1);
	free(body);
}

/* Decodes body into a sink as the daemon does: the rows it got, and the
 * helper threads it took. */
static size_t rows_fed(const char *body, size_t len, int *threads)
{
	struct collect c = { NULL, 0, 0, 0, 0 };
	struct ncp_row_sink sink = { collect_begin, collect_row, &c };
	struct ncp_error err;
	json_t *p = NULL;
	int before = atomic_load(&threads_started);
	size_t n;

	CHECK(ncp_decode_split("getServerImageList", 200, body, len, 64 * 1024, &sink, &p, &err) ==
	      0);
	*threads = atomic_load(&threads_started) - before;
	n = (size_t)atomic_load(&c.rows_given);
	json_decref(collected(&c));
	json_decref(p);
	return n;
}

/* The plain layout takes the path apart (one helper thread), others are
 * parsed whole (and fed on one helper thread), and with no thread to be
 * had the rows are parsed all the same. */
static void test_split_threads(void)
{
	size_t len;
	char *body = listing(400, HEAD, ",", TAIL, &len), *odd, *small;
	int threads;

	CHECK(len >= 64 * 1024);
	CHECK(rows_fed(body, len, &threads) == 400 && threads == 1);
	odd = listing(400, HEAD "7,", ",", TAIL, &len);
	CHECK(rows_fed(odd, len, &threads) == 401 && threads == 1);
	free(odd);
	small = listing(20, HEAD, ",", TAIL, &len);
	CHECK(rows_fed(small, len, &threads) == 20 && threads == 0);
	free(small);
	atomic_store(&no_threads, 1);
	len = strlen(body);
	CHECK(rows_fed(body, len, &threads) == 400 && threads == 0);
	CHECK(check_same("no threads", body, len) == 0);
	atomic_store(&no_threads, 0);
	free(body);
}

/* A sink that gives up: the decode fails, saying so, and nothing leaks. */
static int refuse_row(void *arg, size_t i, json_t *row)
{
	(void)arg;
	(void)row;
	return i == 123 ? -1 : 0;
}

static void test_sink_gives_up(void)
{
	size_t len;
	char *body = listing(400, HEAD, ",", TAIL, &len);
	struct collect k = { NULL, 0, 0, 0, 0 };
	struct ncp_row_sink sink = { collect_begin, refuse_row, &k };
	struct ncp_error err;
	json_t *p = NULL, *rows;

	CHECK(ncp_decode_split("getServerImageList", 200, body, len, 0, &sink, &p, &err) == -1);
	CHECK(p == NULL && err.kind == NCP_ERR_IO);
	CHECK_STR(err.message, "out of memory");
	CHECK(atomic_load(&k.begins) == 1); /* not parsed whole again: that would not fare better */
	rows = collected(&k);
	json_decref(rows);
	free(body);
}

static int all_printable(const char *s)
{
	for (; *s; s++)
		if ((unsigned char)*s < 0x20 || *s == 0x7f)
			return 0;
	return 1;
}

/* Valid UTF-8 with no C1 control characters. */
static int clean_utf8(const char *s)
{
	const unsigned char *p = (const unsigned char *)s;

	while (*p) {
		size_t n = *p < 0x80 ? 1 : *p >= 0xf0 ? 4 : *p >= 0xe0 ? 3 : *p >= 0xc2 ? 2 : 0;
		size_t i;

		if (n == 0)
			return 0;
		for (i = 1; i < n; i++)
			if ((p[i] & 0xc0) != 0x80)
				return 0;
		if (n == 2 && p[0] == 0xc2 && p[1] <= 0x9f)
			return 0;
		p += n;
	}
	return 1;
}

static void test_sanitize(void)
{
	struct ncp_error err;
	json_t *p = NULL;
	char body[2048];
	size_t o;
	int i;

	/* a message that tries to forge a log line and drive a terminal */
	CHECK(decode("getServerImageDetail", 500,
		     "{\"error\":{\"errorCode\":\"9\\n00\",\"message\":\"bad\\r\\nWARNING: "
		     "forged\\u001b[31m\\u009b2J\\u007f\",\"details\":\"x\\ty\"}}",
		     &p, &err) == -1);
	CHECK_STR(err.code, "9?00");
	CHECK_STR(err.message, "bad??WARNING: forged?[31m?2J?: x?y");
	CHECK(all_printable(err.message));

	/* a long message is cut to fit, never mid-character */
	o = (size_t)snprintf(body, sizeof(body), "{\"error\":{\"errorCode\":\"");
	for (i = 0; i < 40; i++)
		body[o++] = '7';
	o += (size_t)snprintf(body + o, sizeof(body) - o, "\",\"message\":\"");
	body[o++] = 'x';
	for (i = 0; i < 200; i++)
		o += (size_t)snprintf(body + o, sizeof(body) - o, "\xed\x95\x9c"); /* 한 */
	snprintf(body + o, sizeof(body) - o, "\"}}");
	CHECK(decode("getServerImageDetail", 503, body, &p, &err) == -1);
	CHECK(strlen(err.code) == sizeof(err.code) - 1);
	CHECK(strlen(err.message) == 1 + 3 * 84); /* 255 bytes hold 'x' and 84 whole */
	CHECK(clean_utf8(err.message));

	/* jansson's own error text can quote the body: cleaned as well */
	CHECK(decode("getRegionList", 200, "{\"a\":\x01\x1b\n}", &p, &err) == -1);
	CHECK(strncmp(err.message, "malformed response: ", 20) == 0);
	CHECK(all_printable(err.message));
	CHECK(clean_utf8(err.message));
	CHECK(decode("getRegionList", 200, "\xff\xfe{}", &p, &err) == -1);
	CHECK(all_printable(err.message));
	CHECK(clean_utf8(err.message));
}

static void test_errno(void)
{
	struct ncp_error err;

	memset(&err, 0, sizeof(err));
	err.kind = NCP_OK;
	CHECK(ncp_error_errno(&err) == 0);
	err.kind = NCP_ERR_AUTH;
	CHECK(ncp_error_errno(&err) == EACCES);
	err.kind = NCP_ERR_NOTFOUND;
	CHECK(ncp_error_errno(&err) == ENOENT);
	err.kind = NCP_ERR_IO;
	CHECK(ncp_error_errno(&err) == EIO);
	CHECK(ncp_error_errno(NULL) == EIO);
}

static void test_client_new(void)
{
	struct ncp_config cfg = { "https://ncloud.apigw.ntruss.com/", "AK", "SK", NULL, 5, 0, 0 };
	struct ncp_client *c;
	char eb[256];

	c = ncp_client_new(&cfg, eb, sizeof(eb));
	CHECK(c != NULL);
	CHECK(ncp_client_connections(c) == 0);
	ncp_client_free(c);
	ncp_client_free(NULL);

	cfg.api_url = "ftp://ncloud.apigw.ntruss.com";
	CHECK(ncp_client_new(&cfg, eb, sizeof(eb)) == NULL);
	CHECK(strstr(eb, "https://") != NULL);
	cfg.api_url = "ncloud.apigw.ntruss.com";
	CHECK(ncp_client_new(&cfg, eb, sizeof(eb)) == NULL);
	cfg.api_url = "https://ncloud.apigw.ntruss.com/?a=b";
	CHECK(ncp_client_new(&cfg, eb, sizeof(eb)) == NULL);
	cfg.api_url = "https://user:pw@ncloud.apigw.ntruss.com";
	CHECK(ncp_client_new(&cfg, eb, sizeof(eb)) == NULL);
	CHECK(strstr(eb, "pw") == NULL);
	cfg.api_url = "https://ncloud apigw";
	CHECK(ncp_client_new(&cfg, eb, sizeof(eb)) == NULL);
	cfg.api_url = "https://";
	CHECK(ncp_client_new(&cfg, eb, sizeof(eb)) == NULL);

	cfg.api_url = "http://127.0.0.1:8080";
	cfg.access_key = "AK\r\nX-Injected: 1";
	CHECK(ncp_client_new(&cfg, eb, sizeof(eb)) == NULL);
	cfg.access_key = "";
	CHECK(ncp_client_new(&cfg, eb, sizeof(eb)) == NULL);
	cfg.access_key = "AK";
	cfg.secret_key = "";
	CHECK(ncp_client_new(&cfg, eb, sizeof(eb)) == NULL);
	cfg.secret_key = "SK";
	cfg.cafile = "/nonexistent/ca.pem";
	CHECK(ncp_client_new(&cfg, eb, sizeof(eb)) == NULL);
	CHECK(strstr(eb, "/nonexistent/ca.pem") != NULL);
	CHECK(ncp_client_new(NULL, NULL, 0) == NULL);
}

/* ---- a loopback HTTP/1.1 server, one thread per connection ---- */

#define TEST_AK "AKIDLOOPBACK"
#define TEST_SK "SecretLoopback0123456789"
#define MAX_CONNS 64

struct server {
	int lfd, port;
	pthread_t acceptor;
	pthread_t conns[MAX_CONNS];
	int nconns;
	pthread_mutex_t lock;
	/* under lock */
	int requests, bad_requests;
	char last_target[1024];
	char last_ua[128];
};

static struct server srv;

struct conn_arg {
	int fd;
};

static int send_all(int fd, const char *p, size_t n)
{
	while (n) {
		ssize_t w = send(fd, p, n, MSG_NOSIGNAL);

		if (w <= 0)
			return -1;
		p += w;
		n -= (size_t)w;
	}
	return 0;
}

static int respond(int fd, int status, const char *body)
{
	char head[256];

	snprintf(head, sizeof(head),
		 "HTTP/1.1 %d X\r\nContent-Type: application/json\r\nContent-Length: %zu\r\n\r\n",
		 status, strlen(body));
	if (send_all(fd, head, strlen(head)) < 0)
		return -1;
	return send_all(fd, body, strlen(body));
}

/* 17 MiB of JSON-ish bytes, with or without Content-Length. */
static void respond_huge(int fd, int with_length)
{
	static char chunk[65536];
	char head[256];
	size_t sent = 0, total = (size_t)17 * 1024 * 1024;

	memset(chunk, ' ', sizeof(chunk));
	if (with_length)
		snprintf(head, sizeof(head), "HTTP/1.1 200 OK\r\nContent-Length: %zu\r\n\r\n",
			 total);
	else
		snprintf(head, sizeof(head), "HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n");
	if (send_all(fd, head, strlen(head)) < 0)
		return;
	while (sent < total && send_all(fd, chunk, sizeof(chunk)) == 0)
		sent += sizeof(chunk);
}

static void header_value(const char *req, const char *name, char *out, size_t outlen)
{
	const char *p = req;
	size_t n = strlen(name);

	out[0] = '\0';
	while ((p = strstr(p, "\r\n"))) {
		p += 2;
		if (strncasecmp(p, name, n) == 0 && p[n] == ':') {
			const char *v = p + n + 1, *e;

			while (*v == ' ')
				v++;
			e = strstr(v, "\r\n");
			if (e && (size_t)(e - v) < outlen) {
				memcpy(out, v, (size_t)(e - v));
				out[e - v] = '\0';
			}
			return;
		}
	}
}

/* The gateway's signature, worked out here from the documented recipe with
 * OpenSSL directly (not the product's sign_v2): base64(HMAC-SHA256(secret,
 * "GET <target>\n<timestamp>\n<access key>")). */
static int gateway_sig(const char *target, const char *ts, const char *ak, char *out, size_t outlen)
{
	unsigned char mac[EVP_MAX_MD_SIZE];
	unsigned int maclen = 0;
	char msg[1600];
	int n = snprintf(msg, sizeof(msg), "GET %s\n%s\n%s", target, ts, ak);

	if (n < 0 || (size_t)n >= sizeof(msg) || outlen < 45)
		return -1;
	if (!HMAC(EVP_sha256(), TEST_SK, (int)strlen(TEST_SK), (const unsigned char *)msg,
		  (size_t)n, mac, &maclen))
		return -1;
	return EVP_EncodeBlock((unsigned char *)out, mac, (int)maclen) == 44 ? 0 : -1;
}

/* Answers one request; returns -1 when the connection must close. */
static int serve(int fd, char *req)
{
	char target[1024], ts[64], ak[300], sig[128], ua[128], want[64];
	const char *action, *sp, *img;
	int ok;

	if (strncmp(req, "GET ", 4) != 0 || !(sp = strchr(req + 4, ' ')) ||
	    (size_t)(sp - req - 4) >= sizeof(target))
		return -1;
	memcpy(target, req + 4, (size_t)(sp - req - 4));
	target[sp - req - 4] = '\0';
	header_value(req, "x-ncp-apigw-timestamp", ts, sizeof(ts));
	header_value(req, "x-ncp-iam-access-key", ak, sizeof(ak));
	header_value(req, "x-ncp-apigw-signature-v2", sig, sizeof(sig));
	header_value(req, "user-agent", ua, sizeof(ua));
	/* the gateway's check: the target as received, signed with our secret */
	ok = gateway_sig(target, ts, ak, want, sizeof(want)) == 0 && strcmp(want, sig) == 0 &&
	     strcmp(ak, TEST_AK) == 0 && strstr(req, TEST_SK) == NULL;
	pthread_mutex_lock(&srv.lock);
	srv.requests++;
	if (!ok)
		srv.bad_requests++;
	snprintf(srv.last_target, sizeof(srv.last_target), "%s", target);
	snprintf(srv.last_ua, sizeof(srv.last_ua), "%s", ua);
	pthread_mutex_unlock(&srv.lock);
	if (!ok)
		return respond(fd, 401,
			       "{\"error\":{\"errorCode\":\"200\","
			       "\"message\":\"Authentication Failed\"}}");

	action = strstr(target, "/vserver/v2/");
	action = action ? action + strlen("/vserver/v2/") : "";
	img = strstr(target, "serverImageNo=");
	img = img ? img + strlen("serverImageNo=") : "";
	if (strncmp(action, "getRegionList?", 14) == 0)
		return respond(
			fd, 200,
			"{\"getRegionListResponse\":{\"regionList\":[{\"regionCode\":\"KR\"}],"
			"\"returnCode\":\"0\"}}");
	if (strncmp(action, "getServerImageList?", 19) == 0) {
		if (strstr(target, "regionCode=EMPTY&"))
			return respond(fd, 200,
				       "{\"getServerImageListResponse\":{\"totalRows\":0,"
				       "\"returnCode\":\"0\"}}");
		if (strstr(target, "regionCode=BIG&") || strstr(target, "regionCode=BADBIG&")) {
			size_t len;
			char *big =
				listing(400,
					strstr(target, "=BADBIG&")
						? "{\"getServerImageListResponse\":{\"totalRows\":"
						  "\"2x\",\"serverImageList\":["
						: HEAD,
					",", TAIL, &len);
			int r = respond(fd, 200, big);

			free(big);
			return r;
		}
		if (strstr(target, "regionCode=BAD&"))
			return respond(fd, 200,
				       "{\"getServerImageListResponse\":{\"totalRows\":\"2x\","
				       "\"serverImageList\":[],\"returnCode\":\"0\"}}");
		return respond(fd, 200,
			       "{\"getServerImageListResponse\":{\"totalRows\":\"1234\","
			       "\"serverImageList\":[{\"serverImageNo\":\"1\"},"
			       "{\"serverImageNo\":\"2\"}],\"returnCode\":\"0\"}}");
	}
	if (strncmp(action, "getServerImageDetail?", 21) != 0)
		return respond(fd, 404,
			       "{\"error\":{\"errorCode\":\"300\","
			       "\"message\":\"Not Found Exception\"}}");
	if (strncmp(img, "1&", 2) == 0)
		return respond(fd, 200,
			       "{\"getServerImageDetailResponse\":{\"totalRows\":1,"
			       "\"serverImageList\":[{\"serverImageNo\":\"1\","
			       "\"serverImageName\":\"one\"}],\"returnCode\":\"0\"}}");
	if (strncmp(img, "gone400&", 8) == 0)
		return respond(fd, 400,
			       "{\"responseError\":{\"returnCode\":\"10104\","
			       "\"returnMessage\":\"The server image does not exist.\"}}");
	if (strncmp(img, "gone200&", 8) == 0)
		return respond(fd, 200,
			       "{\"getServerImageDetailResponse\":{\"totalRows\":0,"
			       "\"serverImageList\":[],\"returnCode\":\"0\"}}");
	if (strncmp(img, "gw400&", 6) == 0)
		return respond(fd, 400,
			       "{\"error\":{\"errorCode\":\"100\","
			       "\"message\":\"Bad Request Exception\"}}");
	if (strncmp(img, "notobj&", 7) == 0)
		return respond(fd, 200,
			       "{\"getServerImageDetailResponse\":{\"totalRows\":1,"
			       "\"serverImageList\":[\"1\"],\"returnCode\":\"0\"}}");
	if (strncmp(img, "huge&", 5) == 0 || strncmp(img, "hugecl&", 7) == 0) {
		respond_huge(fd, img[4] == 'c');
		return -1;
	}
	if (strncmp(img, "slow&", 5) == 0) {
		sleep(2);
		return -1;
	}
	return respond(fd, 500, "{\"error\":{\"errorCode\":900,\"message\":\"Unexpected Error\"}}");
}

static void *conn_main(void *arg)
{
	int fd = ((struct conn_arg *)arg)->fd;
	char buf[8192];
	size_t n = 0;
	char *end;

	free(arg);
	for (;;) {
		ssize_t r = recv(fd, buf + n, sizeof(buf) - 1 - n, 0);

		if (r <= 0)
			break;
		n += (size_t)r;
		buf[n] = '\0';
		end = strstr(buf, "\r\n\r\n");
		if (!end) {
			if (n == sizeof(buf) - 1)
				break;
			continue;
		}
		end[2] = '\0'; /* keep the last header's CRLF for header_value */
		if (serve(fd, buf) < 0)
			break;
		n -= (size_t)(end + 4 - buf);
		memmove(buf, end + 4, n);
	}
	close(fd);
	return NULL;
}

static void *accept_main(void *arg)
{
	(void)arg;
	for (;;) {
		struct conn_arg *ca;
		int fd = accept(srv.lfd, NULL, NULL);

		if (fd < 0) {
			if (errno == EINTR)
				continue;
			break;
		}
		ca = malloc(sizeof(*ca));
		ca->fd = fd;
		pthread_mutex_lock(&srv.lock);
		if (srv.nconns < MAX_CONNS &&
		    pthread_create(&srv.conns[srv.nconns], NULL, conn_main, ca) == 0) {
			srv.nconns++;
			ca = NULL;
		}
		pthread_mutex_unlock(&srv.lock);
		if (ca) {
			close(fd);
			free(ca);
		}
	}
	return NULL;
}

static int server_start(void)
{
	struct sockaddr_in sa;
	socklen_t sl = sizeof(sa);

	memset(&srv, 0, sizeof(srv));
	pthread_mutex_init(&srv.lock, NULL);
	srv.lfd = socket(AF_INET, SOCK_STREAM, 0);
	if (srv.lfd < 0)
		return -1;
	memset(&sa, 0, sizeof(sa));
	sa.sin_family = AF_INET;
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if (bind(srv.lfd, (struct sockaddr *)&sa, sizeof(sa)) < 0 || listen(srv.lfd, 16) < 0 ||
	    getsockname(srv.lfd, (struct sockaddr *)&sa, &sl) < 0)
		return -1;
	srv.port = ntohs(sa.sin_port);
	return pthread_create(&srv.acceptor, NULL, accept_main, NULL) == 0 ? 0 : -1;
}

/* Call after every client is freed, so each connection has seen EOF. */
static void server_stop(void)
{
	int i;

	shutdown(srv.lfd, SHUT_RDWR);
	pthread_join(srv.acceptor, NULL);
	close(srv.lfd);
	for (i = 0; i < srv.nconns; i++)
		pthread_join(srv.conns[i], NULL);
	pthread_mutex_destroy(&srv.lock);
}

static struct ncp_client *loopback_client(const char *path, long timeout_s)
{
	char url[128], eb[256];
	struct ncp_config cfg = { url, TEST_AK, TEST_SK, NULL, timeout_s, 0, 0 };
	struct ncp_client *c;

	snprintf(url, sizeof(url), "http://127.0.0.1:%d%s", srv.port, path);
	c = ncp_client_new(&cfg, eb, sizeof(eb));
	if (!c)
		fprintf(stderr, "ncp_client_new: %s\n", eb);
	return c;
}

static void last_target(char *out, size_t outlen)
{
	pthread_mutex_lock(&srv.lock);
	snprintf(out, outlen, "%s", srv.last_target);
	pthread_mutex_unlock(&srv.lock);
}

static void test_loopback_calls(void)
{
	struct ncp_client *c = loopback_client("/", 10);
	struct ncp_error err;
	struct ncp_param params[] = { { "serverImageName", "my image&=+/~\xc3\xa9" } };
	json_t *j = NULL;
	char target[1024];
	long total = -1;
	int i;

	CHECK(c != NULL);
	if (!c)
		return;
	/* the trailing '/' of the URL is gone; the query keeps its order */
	CHECK(ncp_region_list(c, &j, &err) == 0);
	CHECK(json_is_array(j) && json_array_size(j) == 1);
	json_decref(j);
	last_target(target, sizeof(target));
	CHECK_STR(target, "/vserver/v2/getRegionList?responseFormatType=json");
	CHECK(strncmp(srv.last_ua, "ncloudfs/", 9) == 0);

	CHECK(ncp_call(c, "getServerImageList", params, 1, &j, &err) == 0);
	json_decref(j);
	last_target(target, sizeof(target));
	CHECK_STR(target, "/vserver/v2/getServerImageList?serverImageName="
			  "my%20image%26%3D%2B%2F~%C3%A9&responseFormatType=json");

	/* totalRows as a numeric string */
	CHECK(ncp_image_list_page(c, "KR", 1, 100, &j, &total, &err) == 0);
	CHECK(total == 1234);
	CHECK(json_array_size(j) == 2);
	json_decref(j);
	last_target(target, sizeof(target));
	CHECK_STR(target, "/vserver/v2/getServerImageList?regionCode=KR&pageNo=1&pageSize=100"
			  "&responseFormatType=json");
	CHECK(ncp_image_list_page(c, "EMPTY", 1, 100, &j, &total, &err) == 0);
	CHECK(total == 0 && json_is_array(j) && json_array_size(j) == 0);
	json_decref(j);
	CHECK(ncp_image_list_page(c, "BAD", 1, 100, &j, &total, &err) == -1);
	CHECK(j == NULL && err.kind == NCP_ERR_IO);

	/* the same pages with the rows handed to a sink: a big page's parsed
	 * apart, a small one's fed from the array; the same rows either way */
	{
		const char *regions[] = { "BIG", "KR", "EMPTY" };
		struct collect k = { NULL, 0, 0, 0, 0 };
		struct ncp_row_sink sink = { collect_begin, collect_row, &k };

		for (size_t r = 0; r < 3; r++) {
			json_t *fed;
			long total2 = -1;

			CHECK(ncp_image_list_page(c, regions[r], 1, 100, &j, &total, &err) == 0);
			atomic_store(&k.begins, 0);
			CHECK(ncp_image_list_rows(c, regions[r], 1, 100, &sink, &total2, &err) ==
			      0);
			CHECK(atomic_load(&k.begins) == 1 && !atomic_load(&k.misuse));
			CHECK(atomic_load(&k.rows_given) == (int)json_array_size(j));
			CHECK(total2 == total);
			fed = collected(&k);
			CHECK(json_equal(fed, j));
			json_decref(fed);
			json_decref(j);
		}
		CHECK(total == 0);
		CHECK(ncp_image_list_rows(c, "BAD", 1, 100, &sink, &total, &err) == -1);
		CHECK(err.kind == NCP_ERR_IO);
		/* a big page with a bad totalRows: refused before any row is handed over */
		atomic_store(&k.begins, 0);
		CHECK(ncp_image_list_rows(c, "BADBIG", 1, 100, &sink, &total, &err) == -1);
		CHECK(err.kind == NCP_ERR_IO && atomic_load(&k.begins) == 0);
		json_decref(collected(&k));
	}

	CHECK(ncp_image_detail(c, "KR", "1", &j, &err) == 0);
	CHECK_STR(json_string_value(json_object_get(j, "serverImageName")), "one");
	json_decref(j);
	last_target(target, sizeof(target));
	CHECK_STR(target, "/vserver/v2/getServerImageDetail?regionCode=KR&serverImageNo=1"
			  "&responseFormatType=json");
	CHECK(ncp_image_detail(c, NULL, "1", &j, &err) == 0);
	json_decref(j);
	last_target(target, sizeof(target));
	CHECK_STR(target, "/vserver/v2/getServerImageDetail?serverImageNo=1"
			  "&responseFormatType=json");

	/* both shapes of "no such image" */
	CHECK(ncp_image_detail(c, "KR", "gone400", &j, &err) == -1);
	CHECK(j == NULL);
	CHECK(err.kind == NCP_ERR_NOTFOUND && err.http_status == 400);
	CHECK_STR(err.code, "10104");
	CHECK_STR(err.message, "The server image does not exist.");
	CHECK(ncp_error_errno(&err) == ENOENT);
	CHECK(ncp_image_detail(c, "KR", "gone200", &j, &err) == -1);
	CHECK(err.kind == NCP_ERR_NOTFOUND && err.http_status == 200);
	CHECK_STR(err.message, "no such image");
	/* a gateway 400 is not "no such image"; a 401 is AUTH */
	CHECK(ncp_image_detail(c, "KR", "gw400", &j, &err) == -1);
	CHECK(err.kind == NCP_ERR_IO && err.http_status == 400);
	CHECK(ncp_image_detail(c, "KR", "notobj", &j, &err) == -1);
	CHECK(err.kind == NCP_ERR_IO);
	CHECK(ncp_call(c, "getNothing", NULL, 0, &j, &err) == -1);
	CHECK(err.kind == NCP_ERR_IO && err.http_status == 404);
	CHECK(ncp_call(c, "bad/action", NULL, 0, &j, &err) == -1);
	CHECK(err.kind == NCP_ERR_IO && err.http_status == 0);

	/* all of that over one kept-alive connection */
	for (i = 0; i < 5; i++) {
		CHECK(ncp_image_detail(c, "KR", "1", &j, &err) == 0);
		json_decref(j);
	}
	CHECK(ncp_client_connections(c) == 1);

	/* the 16 MiB cap, announced or not */
	CHECK(ncp_image_detail(c, "KR", "huge", &j, &err) == -1);
	CHECK(err.kind == NCP_ERR_IO && err.http_status == 200);
	CHECK_STR(err.message, "response body exceeds 16 MiB");
	CHECK(ncp_image_detail(c, "KR", "hugecl", &j, &err) == -1);
	CHECK_STR(err.message, "response body exceeds 16 MiB");
	ncp_client_free(c);

	pthread_mutex_lock(&srv.lock);
	CHECK(srv.bad_requests == 0);
	pthread_mutex_unlock(&srv.lock);
}

static void test_loopback_prefix_and_auth(void)
{
	struct ncp_client *c = loopback_client("/gw/prefix//", 10);
	char url[128], eb[256], target[1024];
	struct ncp_config cfg = { url, "WRONGKEY", TEST_SK, NULL, 10, 0, 0 };
	struct ncp_error err;
	json_t *j = NULL;

	CHECK(c != NULL);
	if (!c)
		return;
	/* a path in the URL is part of what is signed */
	CHECK(ncp_region_list(c, &j, &err) == 0);
	json_decref(j);
	last_target(target, sizeof(target));
	CHECK_STR(target, "/gw/prefix/vserver/v2/getRegionList?responseFormatType=json");
	ncp_client_free(c);

	snprintf(url, sizeof(url), "http://127.0.0.1:%d", srv.port);
	c = ncp_client_new(&cfg, eb, sizeof(eb));
	CHECK(c != NULL);
	if (!c)
		return;
	CHECK(ncp_region_list(c, &j, &err) == -1);
	CHECK(err.kind == NCP_ERR_AUTH && err.http_status == 401);
	CHECK_STR(err.code, "200");
	CHECK(ncp_error_errno(&err) == EACCES);
	ncp_client_free(c);
	pthread_mutex_lock(&srv.lock);
	srv.bad_requests = 0;
	pthread_mutex_unlock(&srv.lock);
}

static void test_loopback_failures(void)
{
	struct ncp_client *c = loopback_client("", 1);
	struct ncp_config cfg = { "http://127.0.0.1:1", TEST_AK, TEST_SK, NULL, 5, 0, 0 };
	char want[64];
	struct ncp_error err;
	json_t *j = NULL;

	CHECK(c != NULL);
	if (!c)
		return;
	snprintf(want, sizeof(want), "127.0.0.1:%d: Timeout was reached", srv.port);
	CHECK(ncp_image_detail(c, "KR", "slow", &j, &err) == -1);
	CHECK(err.kind == NCP_ERR_IO && err.http_status == 0);
	CHECK(strncmp(err.message, want, strlen(want)) == 0);
	if (strncmp(err.message, want, strlen(want)) != 0)
		fprintf(stderr, "  got \"%s\"\n", err.message);
	ncp_client_free(c);

	/* nothing listens on port 1 */
	c = ncp_client_new(&cfg, NULL, 0);
	CHECK(c != NULL);
	if (!c)
		return;
	CHECK(ncp_region_list(c, &j, &err) == -1);
	CHECK(err.kind == NCP_ERR_IO && err.http_status == 0);
	CHECK(strncmp(err.message, "127.0.0.1:1: Couldn't connect to server",
		      strlen("127.0.0.1:1: Couldn't connect to server")) == 0);
	CHECK(strstr(err.message, TEST_SK) == NULL);
	ncp_client_free(c);
}

struct worker {
	struct ncp_client *c;
	int failures;
};

static void *worker_main(void *arg)
{
	struct worker *w = arg;
	struct ncp_error err;
	json_t *j;
	int i;

	for (i = 0; i < 10; i++) {
		if (ncp_image_detail(w->c, "KR", "1", &j, &err) < 0)
			w->failures++;
		else
			json_decref(j);
	}
	return NULL;
}

static void test_loopback_concurrent(void)
{
	struct ncp_client *c = loopback_client("", 10);
	struct worker w[4];
	pthread_t t[4];
	int i, failures = 0;
	long conns;

	CHECK(c != NULL);
	if (!c)
		return;
	for (i = 0; i < 4; i++) {
		w[i].c = c;
		w[i].failures = 0;
		pthread_create(&t[i], NULL, worker_main, &w[i]);
	}
	for (i = 0; i < 4; i++) {
		pthread_join(t[i], NULL);
		failures += w[i].failures;
	}
	CHECK(failures == 0);
	/* at most one connection per pooled handle, one handle per thread */
	conns = ncp_client_connections(c);
	CHECK(conns >= 1 && conns <= 4);
	ncp_client_free(c);
	pthread_mutex_lock(&srv.lock);
	CHECK(srv.bad_requests == 0);
	pthread_mutex_unlock(&srv.lock);
}

static int requests_now(void)
{
	int n;

	pthread_mutex_lock(&srv.lock);
	n = srv.requests;
	pthread_mutex_unlock(&srv.lock);
	return n;
}

/* Asks a client with one retry and this timeout for image `no`, which
 * fails: the HTTP status and the requests the server saw must be these. */
static void check_tries(double timeout_s, const char *no, long status, int tries,
			const char *message)
{
	char url[128], eb[256];
	struct ncp_config cfg = { url, TEST_AK, TEST_SK, NULL, timeout_s, 1, 0 };
	struct ncp_client *c;
	struct ncp_error err;
	json_t *j = NULL;
	int before;

	snprintf(url, sizeof(url), "http://127.0.0.1:%d/", srv.port);
	c = ncp_client_new(&cfg, eb, sizeof(eb));
	CHECK(c != NULL);
	if (!c)
		return;
	before = requests_now();
	CHECK(ncp_image_detail(c, "KR", no, &j, &err) == -1);
	CHECK(err.http_status == status && err.attempts == tries);
	CHECK(requests_now() - before == tries);
	if (message)
		CHECK_STR(err.message, message);
	ncp_client_free(c);
}

/* Which failures are tried again is decided by where they happen: 5xx and
 * timeouts are, our own limits (the 16 MiB cap) and other 4xx are not. */
static void test_loopback_retries(void)
{
	check_tries(30, "huge", 200, 1, "response body exceeds 16 MiB");
	check_tries(30, "gw400", 400, 1, NULL);
	check_tries(30, "other", 500, 2, NULL);
	check_tries(0.5, "slow", 0, 2, NULL); /* a timeout */
}

static void test_loopback(void)
{
	/* a proxy from the environment would not reach 127.0.0.1 */
	unsetenv("http_proxy");
	unsetenv("HTTP_PROXY");
	unsetenv("all_proxy");
	unsetenv("ALL_PROXY");
	if (server_start() < 0) {
		perror("loopback server");
		CHECK(0);
		return;
	}
	test_loopback_calls();
	test_loopback_prefix_and_auth();
	test_loopback_concurrent();
	test_loopback_failures();
	test_loopback_retries();
	server_stop();
}

int main(void)
{
	test_success_files();
	test_return_codes();
	test_errors();
	test_malformed();
	test_split_rows();
	test_split_truncated();
	test_split_threads();
	test_sink_gives_up();
	test_sanitize();
	test_errno();
	test_client_new();
	test_loopback();
	return TEST_REPORT();
}
