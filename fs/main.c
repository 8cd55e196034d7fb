/* main.c: ncloudfs's command line: options, credentials, mounting, and the
 * FUSE session's life from mount to a clean unmount. Everything that can be
 * wrong with the command line or the credentials is found before mounting. */
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <signal.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "creds.h"
#include "fsops.h"
#include "kio.h"
#include "log.h"
#include "ncp.h"

#ifndef NCLOUDFS_VERSION
#define NCLOUDFS_VERSION "dev"
#endif

#define DEFAULT_API_URL "https://ncloud.apigw.ntruss.com"

struct options {
	char *api_url;
	char *cafile;
	char *profile;
	char *config;
	char *ttl;
	char *negative_ttl;
	char *timeout;
	char *max_threads;
	char *retries;
	char *stale;
	int help;
	int version;
};

enum { KEY_HELP, KEY_VERSION };

#define OPT(t, f) { t, offsetof(struct options, f), 0 }
static const struct fuse_opt option_spec[] = {
	OPT("api_url=%s", api_url),
	OPT("cafile=%s", cafile),
	OPT("profile=%s", profile),
	OPT("config=%s", config),
	OPT("ttl=%s", ttl),
	OPT("negative_ttl=%s", negative_ttl),
	OPT("timeout=%s", timeout),
	OPT("max_threads=%s", max_threads),
	OPT("retries=%s", retries),
	OPT("stale=%s", stale),
	FUSE_OPT_KEY("-h", KEY_HELP),
	FUSE_OPT_KEY("--help", KEY_HELP),
	FUSE_OPT_KEY("-V", KEY_VERSION),
	FUSE_OPT_KEY("--version", KEY_VERSION),
	FUSE_OPT_END,
};

static int option_proc(void *data, const char *arg, int key, struct fuse_args *outargs)
{
	struct options *o = data;

	(void)arg;
	(void)outargs;
	if (key == KEY_HELP) {
		o->help = 1;
		return 0;
	}
	if (key == KEY_VERSION) {
		o->version = 1;
		return 0;
	}
	return 1; /* everything else is for libfuse */
}

static void usage(const char *prog)
{
	printf("usage: %s [options] MOUNTPOINT\n"
	       "\n"
	       "Shows NAVER Cloud Platform server images as a read-only filesystem:\n"
	       "MOUNTPOINT/<region>/<serverImageNo>/<field>.\n"
	       "\n"
	       "ncloudfs options:\n"
	       "    -o ttl=SECONDS          keep answers this long (default 60; 0: no caching)\n"
	       "    -o negative_ttl=SECONDS remember missing images this long (default 10)\n"
	       "    -o timeout=SECONDS      bound on each API request (default 10)\n"
	       "    -o retries=N            tries again after a 429, 5xx, reset or timeout\n"
	       "                            (default 3; exponential backoff with jitter)\n"
	       "    -o stale=SECONDS        when a refresh fails, serve the last good answer\n"
	       "                            this long past its ttl (default 300; 0: never)\n"
	       "    -o api_url=URL          API gateway (default: $NCLOUD_API_GW, else the\n"
	       "                            profile's ncloud_api_url, else %s)\n"
	       "    -o cafile=PATH          also trust the CA certificates in PATH\n"
	       "    -o profile=NAME         credentials profile (default: $NCLOUD_PROFILE,\n"
	       "                            else DEFAULT)\n"
	       "    -o config=PATH          credentials file (default ~/.ncloud/configure)\n"
	       "    -o max_threads=N        most requests served at once (default 64)\n"
	       "    -h, --help              this help\n"
	       "    -V, --version           the version\n"
	       "\n"
	       "Environment:\n"
	       "    NCLOUD_ACCESS_KEY_ID, NCLOUD_SECRET_ACCESS_KEY   the API key pair\n"
	       "        (else NCLOUD_ACCESS_KEY, NCLOUD_SECRET_KEY; else the credentials file)\n"
	       "    NCLOUD_API_GW                                   the API gateway\n"
	       "    NCLOUD_PROFILE                                  the credentials profile\n"
	       "\n"
	       "FUSE options:\n",
	       prog, DEFAULT_API_URL);
	fuse_cmdline_help();
	fuse_lowlevel_help();
}

/* Parses a number of seconds in [min, 1e9]; -1 with a message otherwise. */
static int parse_seconds(const char *name, const char *s, double min, double *out)
{
	char *end;
	double v;

	if (!s)
		return 0;
	errno = 0;
	v = strtod(s, &end);
	if (end == s || *end || errno || !isfinite(v) || v < min || v > 1e9) {
		fprintf(stderr, "ncloudfs: invalid %s '%s': expected a number of seconds%s\n", name,
			s, min > 0 ? " above 0" : " (0 or more)");
		return -1;
	}
	*out = v;
	return 0;
}

static int parse_count(const char *name, const char *s, long min, long max, long *out)
{
	char *end;
	long v;

	if (!s)
		return 0;
	errno = 0;
	v = strtol(s, &end, 10);
	if (end == s || *end || errno || v < min || v > max) {
		fprintf(stderr, "ncloudfs: invalid %s '%s': expected a whole number from %ld to %ld\n",
			name, s, min, max);
		return -1;
	}
	*out = v;
	return 0;
}

struct settings {
	struct fsops_opts fs;
	double timeout;
	long max_threads;
	long retries;
	char *api_url; /* owned */
};

/* Makes *path absolute: the daemon leaves the working directory. */
static int absolute(char **path)
{
	char *abs = realpath(*path, NULL);

	if (!abs)
		return -1;
	free(*path);
	*path = abs;
	return 0;
}

static int check_options(struct options *o, struct settings *s)
{
	s->fs.ttl = 60;
	s->fs.negative_ttl = 10;
	s->timeout = 10;
	s->max_threads = 64;
	s->retries = 3;
	s->fs.stale = 300;
	if (parse_seconds("ttl", o->ttl, 0, &s->fs.ttl) < 0 ||
	    parse_seconds("stale", o->stale, 0, &s->fs.stale) < 0 ||
	    parse_count("retries", o->retries, 0, 20, &s->retries) < 0 ||
	    parse_seconds("negative_ttl", o->negative_ttl, 0, &s->fs.negative_ttl) < 0 ||
	    parse_seconds("timeout", o->timeout, 0.001, &s->timeout) < 0 ||
	    parse_count("max_threads", o->max_threads, 1, 1024, &s->max_threads) < 0)
		return -1;
	if (o->cafile && (access(o->cafile, R_OK) != 0 || absolute(&o->cafile) < 0)) {
		fprintf(stderr, "ncloudfs: cannot read cafile '%s': %s\n", o->cafile,
			strerror(errno));
		return -1;
	}
	if (o->config && absolute(&o->config) < 0) {
		fprintf(stderr, "ncloudfs: cannot use config '%s': %s\n", o->config,
			strerror(errno));
		return -1;
	}
	return 0;
}

/* The gateway: option, environment, credentials file, default. */
static const char *pick_api_url(const struct options *o, const struct ncp_creds *cr)
{
	const char *env = getenv("NCLOUD_API_GW");

	if (o->api_url)
		return o->api_url;
	if (env && *env)
		return env;
	if (cr->api_url && *cr->api_url)
		return cr->api_url;
	return DEFAULT_API_URL;
}

/* Runs the session until unmount or a signal; returns the exit status. */
static int serve(struct fuse_session *se, struct fsops *fs, const struct fuse_cmdline_opts *co,
		 const struct settings *s)
{
	struct fuse_loop_config *cfg;
	int ret;

	if (fuse_set_signal_handlers(se) != 0)
		return 1;
	if (fuse_session_mount(se, co->mountpoint) != 0) {
		ret = 1;
		goto out_signals;
	}
	if (kio_install(se) != 0) {
		ret = 1;
		goto out_unmount;
	}
	fuse_daemonize(co->foreground);
	log_setup(!co->foreground, co->debug);
	if (fsops_start(fs, se) < 0) {
		log_msg(LOG_LVL_ERROR, "cannot start the notification thread");
		ret = 1;
		goto out_unmount;
	}
	log_msg(LOG_LVL_INFO, "mounted %s (API %s, ttl %gs)", co->mountpoint, s->api_url, s->fs.ttl);
	if (co->singlethread) {
		ret = fuse_session_loop(se);
	} else {
		cfg = fuse_loop_cfg_create();
		fuse_loop_cfg_set_clone_fd(cfg, (unsigned)co->clone_fd);
		if (co->max_idle_threads != UINT_MAX)
			fuse_loop_cfg_set_idle_threads(cfg, co->max_idle_threads);
		fuse_loop_cfg_set_max_threads(cfg, (unsigned)s->max_threads);
		ret = fuse_session_loop_mt(se, cfg);
		fuse_loop_cfg_destroy(cfg);
	}
	fsops_stop(fs);
	/* A signal (SIGTERM, SIGINT, SIGHUP) ending the loop is a clean exit. */
	ret = ret < 0 ? 1 : 0;
	log_msg(LOG_LVL_INFO, "unmounting %s", co->mountpoint);
out_unmount:
	fuse_session_unmount(se);
out_signals:
	fuse_remove_signal_handlers(se);
	return ret;
}

int main(int argc, char *argv[])
{
	struct fuse_args args = FUSE_ARGS_INIT(argc, argv);
	struct fuse_cmdline_opts co = { 0 };
	struct options o = { 0 };
	struct ncp_creds cr = { 0 };
	struct settings s = { 0 };
	struct ncp_config nc;
	struct ncp_client *client = NULL;
	struct fsops *fs = NULL;
	struct fuse_session *se = NULL;
	char err[512];
	int ret = 1;

	if (fuse_opt_parse(&args, &o, option_spec, option_proc) != 0)
		goto out;
	if (o.help) {
		usage(argv[0]);
		ret = 0;
		goto out;
	}
	if (o.version) {
		printf("ncloudfs %s (libfuse %s)\n", NCLOUDFS_VERSION, fuse_pkgversion());
		ret = 0;
		goto out;
	}
	if (fuse_parse_cmdline(&args, &co) != 0 || check_options(&o, &s) < 0)
		goto out;
	if (!co.mountpoint) {
		fprintf(stderr, "ncloudfs: no mountpoint given (see %s --help)\n", argv[0]);
		goto out;
	}
	if (creds_load(&cr, o.config, o.profile, err, sizeof(err)) < 0) {
		fprintf(stderr, "ncloudfs: %s\n", err);
		goto out;
	}
	s.api_url = strdup(pick_api_url(&o, &cr));
	if (!s.api_url)
		goto out;
	nc = (struct ncp_config){ s.api_url, cr.access_key, cr.secret_key, o.cafile, s.timeout,
				  (int)s.retries };
	client = ncp_client_new(&nc, err, sizeof(err));
	if (!client) {
		fprintf(stderr, "ncloudfs: %s\n", err);
		goto out;
	}
	creds_release(&cr); /* the client holds its own copy of the secret */
	creds_scrub_env();
	fs = fsops_new(client, &s.fs);
	if (!fs) {
		fprintf(stderr, "ncloudfs: out of memory\n");
		goto out;
	}
	if (fuse_opt_add_arg(&args, "-oro,default_permissions,fsname=ncloudfs,subtype=ncloudfs") !=
	    0)
		goto out;
	se = fuse_session_new(&args, fsops_ops(), sizeof(struct fuse_lowlevel_ops), fs);
	if (!se)
		goto out;
	log_setup(0, co.debug);
	ret = serve(se, fs, &co, &s);
out:
	if (se)
		fuse_session_destroy(se);
	fsops_free(fs);
	ncp_client_free(client);
	creds_release(&cr);
	free(co.mountpoint);
	fuse_opt_free_args(&args);
	free(o.api_url);
	free(o.cafile);
	free(o.profile);
	free(o.config);
	free(o.ttl);
	free(o.negative_ttl);
	free(o.timeout);
	free(o.max_threads);
	free(s.api_url);
	free(o.retries);
	free(o.stale);
	return ret;
}
