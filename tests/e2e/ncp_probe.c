/* SPDX-License-Identifier: MIT */
/* ncp_probe.c: drives client/ncp.c against the emulator for tests/e2e/test_client.py,
 * where a mount cannot reach: the per-thread cancel hook and the in-flight limit.
 *
 *   ncp_probe URL CAFILE TIMEOUT RETRIES MAX_REQUESTS CANCEL_AFTER IMAGE[@CANCEL[@DELAY]]...
 *
 * Keys come from NCLOUD_ACCESS_KEY_ID and NCLOUD_SECRET_ACCESS_KEY. Each IMAGE (a KR
 * serverImageNo) is fetched with getServerImageDetail on its own thread, all at once
 * (or DELAY seconds later); a thread's cancel check turns true CANCEL_AFTER (or CANCEL)
 * seconds after its call starts (< 0: never).
 * Then one more fetch of the first image, with no cancel check, shows whether the
 * client still works. Prints "key: value" lines: one "call.N" line per thread
 * ("kind errno attempts seconds"), "after" (the last fetch's kind) and the client's stats. */
#include "ncp.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define PROBE_MAX_IMAGES 256

struct probe_call {
	struct ncp_client *client;
	char image[32];
	double cancel_after, delay;
	double started, took;
	struct ncp_error err;
	int rc;
};

static double now_mono(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int deadline_passed(void *arg)
{
	const struct probe_call *pc = arg;

	return now_mono() - pc->started >= pc->cancel_after;
}

static void *run_call(void *arg)
{
	struct probe_call *pc = arg;
	json_t *image = NULL;
	struct timespec ts = { (time_t)pc->delay,
			       (long)((pc->delay - (double)(time_t)pc->delay) * 1e9) };

	if (pc->delay > 0)
		nanosleep(&ts, NULL);
	pc->started = now_mono();
	if (pc->cancel_after >= 0)
		ncp_set_cancel(deadline_passed, pc);
	pc->rc = ncp_image_detail(pc->client, "KR", pc->image, &image, &pc->err);
	pc->took = now_mono() - pc->started;
	ncp_set_cancel(NULL, NULL);
	json_decref(image);
	return NULL;
}

static const char *kind_name(enum ncp_errkind k)
{
	switch (k) {
	case NCP_OK:
		return "ok";
	case NCP_ERR_NOTFOUND:
		return "notfound";
	case NCP_ERR_AUTH:
		return "auth";
	case NCP_ERR_IO:
		return "io";
	case NCP_ERR_CANCELLED:
		return "cancelled";
	}
	return "?";
}

/* A number ending at the string's end or at '@'; *next is past it. */
static double parse_num(const char *s, const char *what, const char **next)
{
	char *end;
	double v = strtod(s, &end);

	if (end == s || (*end && *end != '@') || (*end && !next)) {
		fprintf(stderr, "ncp_probe: bad %s: %s\n", what, s);
		exit(2);
	}
	if (next)
		*next = *end ? end + 1 : NULL;
	return v;
}

/* IMAGE[@CANCEL[@DELAY]] */
static void parse_image(struct probe_call *pc, const char *arg)
{
	size_t n = strcspn(arg, "@");
	const char *rest = arg[n] ? arg + n + 1 : NULL;

	if (n == 0 || n >= sizeof(pc->image)) {
		fprintf(stderr, "ncp_probe: bad image: %s\n", arg);
		exit(2);
	}
	memcpy(pc->image, arg, n);
	pc->image[n] = '\0';
	if (rest)
		pc->cancel_after = parse_num(rest, "cancel time", &rest);
	if (rest)
		pc->delay = parse_num(rest, "delay", NULL);
}

int main(int argc, char **argv)
{
	static struct probe_call calls[PROBE_MAX_IMAGES];
	static pthread_t threads[PROBE_MAX_IMAGES];
	struct ncp_config cfg = { 0 };
	struct ncp_client *client;
	struct ncp_stats st;
	struct ncp_error err;
	json_t *image = NULL;
	char errbuf[256];
	double cancel_after;
	int n, i;

	if (argc < 8 || argc - 7 > PROBE_MAX_IMAGES) {
		fprintf(stderr, "usage: ncp_probe URL CAFILE TIMEOUT RETRIES MAX_REQUESTS "
				"CANCEL_AFTER IMAGE...\n");
		return 2;
	}
	cfg.api_url = argv[1];
	cfg.cafile = argv[2][0] ? argv[2] : NULL;
	cfg.timeout_s = parse_num(argv[3], "timeout", NULL);
	cfg.retries = (int)parse_num(argv[4], "retries", NULL);
	cfg.max_requests = (int)parse_num(argv[5], "max_requests", NULL);
	cancel_after = parse_num(argv[6], "cancel_after", NULL);
	cfg.access_key = getenv("NCLOUD_ACCESS_KEY_ID");
	cfg.secret_key = getenv("NCLOUD_SECRET_ACCESS_KEY");
	if (!cfg.access_key || !cfg.secret_key) {
		fprintf(stderr, "ncp_probe: NCLOUD_ACCESS_KEY_ID and NCLOUD_SECRET_ACCESS_KEY\n");
		return 2;
	}
	client = ncp_client_new(&cfg, errbuf, sizeof(errbuf));
	if (!client) {
		fprintf(stderr, "ncp_probe: %s\n", errbuf);
		return 2;
	}
	n = argc - 7;
	for (i = 0; i < n; i++) {
		calls[i] = (struct probe_call){ .client = client, .cancel_after = cancel_after };
		parse_image(&calls[i], argv[7 + i]);
		if (pthread_create(&threads[i], NULL, run_call, &calls[i]) != 0) {
			fprintf(stderr, "ncp_probe: cannot start a thread\n");
			return 2;
		}
	}
	for (i = 0; i < n; i++)
		pthread_join(threads[i], NULL);
	for (i = 0; i < n; i++)
		printf("call.%d: %s %d %d %.3f\n", i, kind_name(calls[i].err.kind),
		       ncp_error_errno(&calls[i].err), calls[i].err.attempts, calls[i].took);
	if (ncp_image_detail(client, "KR", calls[0].image, &image, &err) == 0)
		printf("after: ok\n");
	else
		printf("after: %s %s\n", kind_name(err.kind), err.message);
	json_decref(image);
	ncp_client_stats(client, &st);
	printf("cancelled: %llu\nretries: %llu\nlimit: %ld\nin_flight_peak: %ld\n",
	       st.calls[NCP_ACT_DETAIL][NCP_OUT_CANCELLED], st.retries, st.limit,
	       st.in_flight_peak);
	ncp_client_free(client);
	return 0;
}
