/* SPDX-License-Identifier: MIT */
/* ncp.h: the NAVER Cloud Platform API client.
 *
 * Signs requests (API Gateway signature v2), sends them over HTTPS with libcurl
 * (connections kept alive in a small pool of handles), and decodes the JSON
 * answers and both error shapes. Knows nothing of FUSE; never logs: every
 * failure comes back in a struct ncp_error for the caller to report. */
#ifndef NCP_H
#define NCP_H

#include <stddef.h>
#include <jansson.h>

/* What went wrong, coarsely: the one thing the filesystem needs to decide. */
enum ncp_errkind {
	NCP_OK = 0,
	NCP_ERR_NOTFOUND,  /* no such image (400 responseError or empty list) */
	NCP_ERR_AUTH,	   /* 401/403 from the gateway */
	NCP_ERR_IO,	   /* everything else: network, 5xx, 429, bad body */
	NCP_ERR_CANCELLED, /* given up on the caller's word (ncp_set_cancel) */
};

struct ncp_error {
	enum ncp_errkind kind;
	long http_status;    /* 0 when no HTTP answer arrived */
	char code[32];	     /* errorCode / returnCode when the API gave one */
	char message[256];   /* the API's own message, or curl's, or ours */
	int attempts;	     /* requests sent for this call (retries + 1; 0 when
				cancelled before the first) */
	char request_id[64]; /* the answer's requestId, when it had one (also
				on success, for messages about the data) */
};

/* Everything the client needs; strings are copied by ncp_client_new. */
struct ncp_config {
	const char *api_url; /* e.g. https://ncloud.apigw.ntruss.com, no trailing / needed */
	const char *access_key;
	const char *secret_key;
	const char *cafile; /* extra CA bundle, or NULL */
	double timeout_s;   /* bound on each request, whole transfer */
	int retries;	    /* further tries after a 429, 5xx, reset or timeout */
	int max_requests;   /* requests in flight at once, at most (0: 16) */
};
#define NCP_MAX_REQUESTS_DEFAULT 16

struct ncp_client;

/* A query parameter: name and value, both unencoded. */
struct ncp_param {
	const char *name;
	const char *value;
};

/* Creates a client; NULL with a message in errbuf on failure. The URL must
 * be https://, or http:// to a loopback host (127.0.0.0/8, ::1, localhost). */
struct ncp_client *ncp_client_new(const struct ncp_config *cfg, char *errbuf, size_t errlen);
/* Frees the client and wipes its copy of the secret key. */
void ncp_client_free(struct ncp_client *c);

/* Calls GET /vserver/v2/<action>?<params>&responseFormatType=json. On success
 * returns 0 and sets *payload to a new reference to the "<action>Response"
 * object. On failure returns -1 and fills *err. A 429, a 5xx, a reset or a
 * timeout is tried again up to cfg->retries times, after an exponential,
 * jittered backoff that honours Retry-After (up to the timeout). At most
 * cfg->max_requests requests of one client are in flight at once (fewer
 * after a 429: see struct ncp_stats limit); callers beyond wait. Thread-safe. */
int ncp_call(struct ncp_client *c, const char *action, const struct ncp_param *params,
	     size_t nparams, json_t **payload, struct ncp_error *err);

/* getRegionList: *regions is a new reference to the regionList array. */
int ncp_region_list(struct ncp_client *c, json_t **regions, struct ncp_error *err);
/* getServerImageList, one page: *rows a new reference to serverImageList,
 * *total_rows from totalRows (number or numeric string). */
int ncp_image_list_page(struct ncp_client *c, const char *region, long page_no, long page_size,
			json_t **rows, long *total_rows, struct ncp_error *err);

/* Takes a listing page's rows one by one as they are parsed: begin(arg, n)
 * first, then row(arg, i, row) once for each i < n, on up to two threads at
 * once. begin may come again: the rows before it are void. A row is lent
 * for the call. Each returns 0, or -1 to give up (out of memory). */
struct ncp_row_sink {
	int (*begin)(void *arg, size_t n);
	int (*row)(void *arg, size_t i, json_t *row);
	void *arg;
};
/* As ncp_image_list_page, the rows going to sink: a big page's rows are
 * parsed on two threads, each handed over and freed at once, so that the
 * page is never held parsed whole. A failed call may have fed some. */
int ncp_image_list_rows(struct ncp_client *c, const char *region, long page_no, long page_size,
			const struct ncp_row_sink *sink, long *total_rows, struct ncp_error *err);
/* Hands the rows of a JSON array to sink as above: 0, or -1 when it gave up. */
int ncp_rows_feed(const struct ncp_row_sink *sink, json_t *rows);
/* getServerImageDetail: *image a new reference to the image object. Both
 * shapes of "no such image" give -1 with err->kind NCP_ERR_NOTFOUND. */
int ncp_image_detail(struct ncp_client *c, const char *region, const char *image_no, json_t **image,
		     struct ncp_error *err);

/* Cancellation, for the calling thread only: while set, every call this
 * thread makes gives up as soon as cancelled(arg) says so (checked during a
 * transfer, through libcurl's transfer-info callback, and in slices of at
 * most 20 ms while a retry waits), failing with NCP_ERR_CANCELLED and making
 * no further try. NULL clears it. */
void ncp_set_cancel(int (*cancelled)(void *arg), void *arg);
/* The calling thread's cancel check (NULL if none), to hand to another
 * thread that works for the same call. */
void ncp_get_cancel(int (**cancelled)(void *arg), void **arg);
/* Nonzero when the calling thread's cancel check says so now. */
int ncp_cancelled(void);

/* The gateway's host[:port] (borrowed), for messages. */
const char *ncp_client_host(const struct ncp_client *c);

/* Connections opened so far (libcurl's count, for tests and stats). */
long ncp_client_connections(struct ncp_client *c);

/* What the client has done, for /.stats: calls by action and final outcome. */
enum ncp_action { NCP_ACT_REGIONS, NCP_ACT_LIST, NCP_ACT_DETAIL, NCP_ACT_OTHER, NCP_NACTIONS };
enum ncp_outcome {
	NCP_OUT_OK,	   /* a good answer */
	NCP_OUT_4XX,	   /* 4xx: auth, no such image, bad request, ... */
	NCP_OUT_5XX,	   /* 5xx, after the retries */
	NCP_OUT_BAD_BODY,  /* 200 with a body that could not be used */
	NCP_OUT_NETWORK,   /* no answer: refused, reset, timeout, ... */
	NCP_OUT_CANCELLED, /* given up on the caller's word (ncp_set_cancel) */
	NCP_NOUTCOMES
};
struct ncp_stats {
	unsigned long long calls[NCP_NACTIONS][NCP_NOUTCOMES];
	unsigned long long retries;	   /* extra tries */
	long limit;			   /* requests allowed in flight now (halved on 429) */
	long in_flight_peak;		   /* the most requests in flight at once */
	unsigned long long bytes_received; /* response bodies */
	long connections;
};
void ncp_client_stats(struct ncp_client *c, struct ncp_stats *out);
/* Names for the above ("getRegionList", ..., "ok", "4xx", ...). */
const char *ncp_action_name(enum ncp_action a);
const char *ncp_outcome_name(enum ncp_outcome o);

struct ncp_row_sink;

/* Decodes one HTTP answer to an action (pure: no I/O, for tests and the
 * fuzzer). Same contract as ncp_call. body need not be NUL-terminated. */
int ncp_decode(const char *action, long http_status, const char *body, size_t len, json_t **payload,
	       struct ncp_error *err);
/* The same, with a sink (see below) that takes the rows of serverImageList,
 * leaving it empty; a body of split_min bytes or more (64 KiB for calls)
 * has them parsed apart, on two threads. The answer is the same whatever
 * split_min is. */
int ncp_decode_split(const char *action, long http_status, const char *body, size_t len,
		     size_t split_min, const struct ncp_row_sink *sink, json_t **payload,
		     struct ncp_error *err);

/* The one place an ncp error becomes an errno: AUTH->EACCES,
 * NOTFOUND->ENOENT, else EIO. Returns a positive errno (0 for NCP_OK). */
int ncp_error_errno(const struct ncp_error *err);

#endif
