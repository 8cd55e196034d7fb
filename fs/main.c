/* SPDX-License-Identifier: MIT */
/* main.c: ncloudfs's command line: options, credentials, mounting, and the
 * FUSE session's life from mount to a clean unmount. Everything that can be
 * wrong with the command line or the credentials is found before mounting. */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <limits.h>
#ifdef __GLIBC__
#include <malloc.h>
#endif
#include <math.h>
#include <signal.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <spawn.h>
#include <string.h>
#include <syslog.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/wait.h>
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
	char *busy_ttl;
	char *timeout;
	char *max_threads;
	char *max_requests;
	char *retries;
	char *stale;
	char *site;
	char *log;
	int noauto_unmount;
	int delay_connect;
	char *positional[3]; /* [SOURCE] MOUNTPOINT, as mount(8) passes them */
	int npositional;
	int help;
	int version;
};

enum { KEY_HELP, KEY_VERSION, KEY_MOUNT8 };

/* clang-format off */
#define OPT(t, f) { t, offsetof(struct options, f), 0 }
static const struct fuse_opt option_spec[] = {
	OPT("api_url=%s", api_url),
	OPT("cafile=%s", cafile),
	OPT("profile=%s", profile),
	OPT("config=%s", config),
	OPT("ttl=%s", ttl),
	OPT("negative_ttl=%s", negative_ttl),
	OPT("busy_ttl=%s", busy_ttl),
	OPT("timeout=%s", timeout),
	OPT("max_threads=%s", max_threads),
	OPT("max_requests=%s", max_requests),
	OPT("retries=%s", retries),
	OPT("stale=%s", stale),
	OPT("site=%s", site),
	OPT("log=%s", log),
	{ "noauto_unmount", offsetof(struct options, noauto_unmount), 1 },
	{ "delay_connect", offsetof(struct options, delay_connect), 1 },
	{ "auto_unmount", offsetof(struct options, noauto_unmount), 0 },
	/* What mount(8) and fstab add that means nothing to a FUSE daemon. */
	FUSE_OPT_KEY("_netdev", KEY_MOUNT8),
	FUSE_OPT_KEY("auto", KEY_MOUNT8),
	FUSE_OPT_KEY("noauto", KEY_MOUNT8),
	FUSE_OPT_KEY("nofail", KEY_MOUNT8),
	FUSE_OPT_KEY("user", KEY_MOUNT8),
	FUSE_OPT_KEY("users", KEY_MOUNT8),
	FUSE_OPT_KEY("nouser", KEY_MOUNT8),
	FUSE_OPT_KEY("owner", KEY_MOUNT8),
	FUSE_OPT_KEY("group", KEY_MOUNT8),
	FUSE_OPT_KEY("defaults", KEY_MOUNT8),
	FUSE_OPT_KEY("rw", KEY_MOUNT8), /* the mount is read-only whatever is asked */
	FUSE_OPT_KEY("ro", KEY_MOUNT8),
	FUSE_OPT_KEY("comment=", KEY_MOUNT8), /* and x-*: see option_proc */
	FUSE_OPT_KEY("-h", KEY_HELP),
	FUSE_OPT_KEY("--help", KEY_HELP),
	FUSE_OPT_KEY("-V", KEY_VERSION),
	FUSE_OPT_KEY("--version", KEY_VERSION),
	FUSE_OPT_END,
};
/* clang-format on */

static int option_proc(void *data, const char *arg, int key, struct fuse_args *outargs)
{
	struct options *o = data;

	(void)outargs;
	if (key == KEY_MOUNT8 || (key == FUSE_OPT_KEY_OPT && strncmp(arg, "x-", 2) == 0))
		return 0;
	if (key == FUSE_OPT_KEY_NONOPT) {
		if (o->npositional == 2) {
			fprintf(stderr, "ncloudfs: too many arguments: '%s' (see --help)\n", arg);
			return -1;
		}
		o->positional[o->npositional] = strdup(arg);
		return o->positional[o->npositional++] ? 0 : -1;
	}
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
	printf("usage: %s [options] [SOURCE] MOUNTPOINT\n"
	       "\n"
	       "Shows NAVER Cloud Platform server images as a read-only filesystem:\n"
	       "MOUNTPOINT/<region>/<serverImageNo>/<field>. SOURCE (as mount(8) passes\n"
	       "it, e.g. `ncloudfs') is ignored.\n"
	       "\n"
	       "ncloudfs options:\n"
	       "    -o ttl=SECONDS          keep answers this long (default 60; 0: no caching)\n"
	       "    -o negative_ttl=SECONDS remember missing images this long (default 10)\n"
	       "    -o busy_ttl=SECONDS     keep images in transition (creating, copying, ...)\n"
	       "                            and listings holding one this long (default 5,\n"
	       "                            at most ttl)\n"
	       "    -o timeout=SECONDS      bound on each API request (default 10)\n"
	       "    -o retries=N            tries again after a 429, 5xx, reset or timeout\n"
	       "                            (default 3; exponential backoff with jitter)\n"
	       "    -o stale=SECONDS        when a refresh fails, serve the last good answer\n"
	       "                            this long past its ttl (default 300; 0: never)\n"
	       "    -o api_url=URL          API gateway (default: $NCLOUD_API_GW, else the\n"
	       "                            site's if one is given, else the profile's\n"
	       "                            ncloud_api_url, else the public gateway)\n"
	       "    -o site=SITE            public, gov or fin: the cloud whose gateway to use\n"
	       "                            (default: $NCLOUD_SITE, else public: %s)\n"
	       "    -o cafile=PATH          verify the gateway with the CA certificates in\n"
	       "                            PATH instead of the system's\n"
	       "    -o profile=NAME         credentials profile (default: $NCLOUD_PROFILE,\n"
	       "                            else DEFAULT)\n"
	       "    -o config=PATH          credentials file (default ~/.ncloud/configure)\n"
	       "    -o max_threads=N        most requests served at once (default 64)\n"
	       "    -o max_requests=N       most API requests in flight at once (default 16;\n"
	       "                            halved on an HTTP 429, then grown back)\n"
	       "    -o delay_connect        mount without first checking the keys and the\n"
	       "                            gateway with one getRegionList call\n"
	       "    -o noauto_unmount       leave the mount behind if the daemon dies (by\n"
	       "                            default it is unmounted: auto_unmount)\n"
	       "    -o log=WHERE            syslog, stderr or a file path (default: stderr in\n"
	       "                            the foreground, syslog when daemonized)\n"
	       "    -h, --help              this help\n"
	       "    -V, --version           the version\n"
	       "\n"
	       "Environment:\n"
	       "    NCLOUD_ACCESS_KEY_ID, NCLOUD_SECRET_ACCESS_KEY   the API key pair\n"
	       "        (else NCLOUD_ACCESS_KEY, NCLOUD_SECRET_KEY; else the credentials file)\n"
	       "    NCLOUD_API_GW                                   the API gateway\n"
	       "    NCLOUD_PROFILE                                  the credentials profile\n"
	       "    NCLOUD_SITE                                     public, gov or fin\n"
	       "\n"
	       "Options that mount(8) adds (_netdev, noauto, nofail, user, rw, x-systemd.*,\n"
	       "...) are accepted and ignored. SIGHUP drops every cache and reopens the log.\n"
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
		fprintf(stderr,
			"ncloudfs: invalid %s '%s': expected a whole number from %ld to %ld\n",
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
	long max_requests;
	long retries;
	const char *site_url;
	const char *log; /* -o log, or NULL for the default */
	char *api_url;	 /* owned */
	int watchdog;	 /* the write end of the watchdog's pipe, or -1 */
};

/* The gateways of NCP's clouds. */
static const struct {
	const char *site;
	const char *url;
} sites[] = {
	{ "public", DEFAULT_API_URL },
	{ "gov", "https://ncloud.apigw.gov-ntruss.com" },
	{ "fin", "https://fin-ncloud.apigw.fin-ntruss.com" },
};

/* The gateway of the site named by -o site or NCLOUD_SITE (default public);
 * NULL with a message for an unknown site. */
static const char *site_url(const struct options *o)
{
	const char *env = getenv("NCLOUD_SITE");
	const char *site = o->site ? o->site : env && *env ? env : "public";

	for (size_t i = 0; i < sizeof(sites) / sizeof(sites[0]); i++) {
		if (strcmp(site, sites[i].site) == 0)
			return sites[i].url;
	}
	fprintf(stderr, "ncloudfs: invalid site '%s'%s: expected public, gov or fin\n", site,
		o->site ? "" : " (from NCLOUD_SITE)");
	return NULL;
}

/* Makes a path that need not exist yet absolute (its directory must). */
static int absolute_new(char **path)
{
	char *copy = strdup(*path), *slash, *dir, *abs;
	const char *base;
	size_t n;

	if (!copy)
		return -1;
	slash = strrchr(copy, '/');
	base = slash ? slash + 1 : copy;
	if (slash)
		*slash = '\0';
	dir = realpath(slash ? (copy[0] ? copy : "/") : ".", NULL);
	if (!dir || !*base) {
		if (dir && !*base)
			errno = EISDIR;
		free(dir);
		free(copy);
		return -1;
	}
	n = strlen(dir) + strlen(base) + 2;
	abs = malloc(n);
	if (abs)
		snprintf(abs, n, "%s/%s", strcmp(dir, "/") ? dir : "", base);
	free(dir);
	free(copy);
	if (!abs)
		return -1;
	free(*path);
	*path = abs;
	return 0;
}

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
	s->max_requests = NCP_MAX_REQUESTS_DEFAULT;
	s->retries = 3;
	s->fs.stale = 300;
	s->fs.busy_ttl = 5;
	s->fs.refresh = 0.2; /* see README, "Fresh without waiting" */
	if (parse_seconds("ttl", o->ttl, 0, &s->fs.ttl) < 0 ||
	    parse_seconds("stale", o->stale, 0, &s->fs.stale) < 0 ||
	    parse_count("retries", o->retries, 0, 20, &s->retries) < 0 ||
	    parse_seconds("negative_ttl", o->negative_ttl, 0, &s->fs.negative_ttl) < 0 ||
	    parse_seconds("busy_ttl", o->busy_ttl, 0.001, &s->fs.busy_ttl) < 0 ||
	    parse_seconds("timeout", o->timeout, 0.001, &s->timeout) < 0 ||
	    parse_count("max_threads", o->max_threads, 1, 1024, &s->max_threads) < 0 ||
	    parse_count("max_requests", o->max_requests, 1, 1024, &s->max_requests) < 0)
		return -1;
	/* a fetch per request allowed, and at least the default's: fetches
	 * beyond the limit wait in the client, where the limit may change */
	s->fs.workers =
		(unsigned)(s->max_requests > NCP_MAX_REQUESTS_DEFAULT ? s->max_requests
								      : NCP_MAX_REQUESTS_DEFAULT);
	if (o->busy_ttl && s->fs.busy_ttl > s->fs.ttl) {
		fprintf(stderr, "ncloudfs: busy_ttl (%s) must be at most ttl (%g)\n", o->busy_ttl,
			s->fs.ttl);
		return -1;
	}
	if (s->fs.busy_ttl > s->fs.ttl)
		s->fs.busy_ttl = s->fs.ttl; /* the default, with a shorter ttl */
	if (o->cafile && (access(o->cafile, R_OK) != 0 || absolute(&o->cafile) < 0)) {
		fprintf(stderr, "ncloudfs: cannot read cafile '%s': %s\n", o->cafile,
			strerror(errno));
		return -1;
	}
	s->log = o->log;
	s->site_url = site_url(o);
	if (!s->site_url)
		return -1;
	if (o->log && strcmp(o->log, "syslog") != 0 && strcmp(o->log, "stderr") != 0 &&
	    absolute_new(&o->log) < 0) {
		fprintf(stderr, "ncloudfs: invalid log '%s': %s\n", o->log, strerror(errno));
		return -1;
	}
	if (o->config && absolute(&o->config) < 0) {
		fprintf(stderr, "ncloudfs: cannot use config '%s': %s\n", o->config,
			strerror(errno));
		return -1;
	}
	return 0;
}

/* The gateway: -o api_url, NCLOUD_API_GW, a site asked for (-o site or
 * NCLOUD_SITE), the profile's ncloud_api_url, else the public gateway. */
static const char *pick_api_url(const struct options *o, const struct ncp_creds *cr,
				const char *site)
{
	const char *env = getenv("NCLOUD_API_GW"), *env_site = getenv("NCLOUD_SITE");

	if (o->api_url)
		return o->api_url;
	if (env && *env)
		return env;
	if (o->site || (env_site && *env_site))
		return site;
	if (cr->api_url && *cr->api_url)
		return cr->api_url;
	return site;
}

/* SIGHUP: the handler only wakes a thread, which drops the caches and
 * reopens the log (neither is safe inside a signal handler). */
static int hup_pipe[2] = { -1, -1 };

static void on_hup(int sig)
{
	int saved = errno;
	char c = (char)sig;

	if (write(hup_pipe[1], &c, 1) < 0) {
		/* the pipe is full: a drop is already pending */
	}
	errno = saved;
}

static void *hup_thread(void *arg)
{
	char c;

	while (read(hup_pipe[0], &c, 1) == 1) {
		if (log_reopen() < 0)
			log_msg(LOG_LVL_ERROR, "cannot reopen the log file: %s", strerror(errno));
		fsops_drop_caches(arg);
		/* After the drop: the line says it has happened. */
		log_msg(LOG_LVL_INFO, "SIGHUP: dropped every cache, reopened the log");
	}
	return NULL;
}

/* Starts the SIGHUP thread; returns 0 or -1. */
static int hup_start(struct fsops *fs, pthread_t *thread)
{
	struct sigaction sa;

	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_hup;
	sigemptyset(&sa.sa_mask);
	sa.sa_flags = SA_RESTART;
	if (pipe2(hup_pipe, O_CLOEXEC | O_NONBLOCK) < 0)
		return -1;
	/* The reading end blocks; only the handler's end must never block. */
	fcntl(hup_pipe[0], F_SETFL, 0);
	if (pthread_create(thread, NULL, hup_thread, fs) != 0 || sigaction(SIGHUP, &sa, NULL) < 0)
		return -1;
	return 0;
}

static void hup_stop(pthread_t thread)
{
	signal(SIGHUP, SIG_IGN);
	close(hup_pipe[1]); /* the thread reads end-of-file and returns */
	pthread_join(thread, NULL);
	close(hup_pipe[0]);
}

/* Whether the mount at path (absolute, as in /proc/self/mountinfo, where
 * spaces and the like are octal escapes) is an ncloudfs one: 1 or 0. */
static int is_ncloudfs_mount(const char *path)
{
	FILE *f = fopen("/proc/self/mountinfo", "re");
	char line[8192], mp[4096], fstype[256];
	int found = 0;

	if (!f)
		return 0;
	while (fgets(line, sizeof(line), f)) {
		const char *sep = strstr(line, " - ");
		size_t k = 0;

		/* id parent major:minor root mountpoint ... - fstype source ... */
		if (!sep || sscanf(line, "%*s %*s %*s %*s %4095s", mp) != 1 ||
		    sscanf(sep + 3, "%255s", fstype) != 1)
			continue;
		for (size_t i = 0; mp[i]; i++, k++) { /* undo the octal escapes */
			if (mp[i] == '\\' && mp[i + 1] >= '0' && mp[i + 1] <= '3' && mp[i + 2] &&
			    mp[i + 3]) {
				mp[k] = (char)((mp[i + 1] - '0') * 64 + (mp[i + 2] - '0') * 8 +
					       (mp[i + 3] - '0'));
				i += 3;
			} else {
				mp[k] = mp[i];
			}
		}
		mp[k] = '\0';
		if (strcmp(mp, path) == 0) /* the last mount there wins */
			found = strcmp(fstype, "fuse.ncloudfs") == 0;
	}
	fclose(f);
	return found;
}

/* Whether path is a FUSE mount whose daemon is gone (ENOTCONN, "Transport
 * endpoint is not connected"). statfs, because the kernel answers it from no
 * cache: a stat may be answered from the root's cached attributes. */
static int mount_is_dead(const char *path)
{
	struct statfs st;

	return statfs(path, &st) < 0 && errno == ENOTCONN;
}

/* Lazily unmounts path: umount2 as root, else fusermount3 -u -z. 0 or -1. */
static int unmount_lazily(const char *path)
{
	char cmd[] = "fusermount3", u[] = "-u", z[] = "-z";
	char *argv[] = { cmd, u, z, (char *)path, NULL };
	pid_t pid;
	int status;

	if (geteuid() == 0)
		return umount2(path, MNT_DETACH);
	if (posix_spawnp(&pid, "fusermount3", NULL, NULL, argv, environ) != 0)
		return -1;
	while (waitpid(pid, &status, 0) < 0) {
		if (errno != EINTR)
			return -1;
	}
	return WIFEXITED(status) && WEXITSTATUS(status) == 0 ? 0 : -1;
}

/* The mount's watchdog (a process of its own). The kernel keeps the root's
 * attributes, so walking a path from the mountpoint costs no round trip; but
 * then fusermount3's auto_unmount, which unmounts only if opening the
 * mountpoint answers ENOTCONN, no longer sees a dead daemon (the open is
 * answered from those attributes). The watchdog holds the read end of a pipe
 * whose write end only the daemon holds: it learns that the mount is up (one
 * byte), then that the daemon is gone (end of file, however it ended). A clean
 * exit has unmounted by then; otherwise statfs, which always reaches the
 * daemon, answers ENOTCONN on the ncloudfs mount there, and it is unmounted.
 * Never returns. */
static void watchdog(const char *mountpoint, int fd, int foreground)
{
	char byte;
	ssize_t n;
	int armed = 0, null = open("/dev/null", O_RDWR);

	(void)!setsid(); /* not killed with the terminal's process group */
	(void)!chdir("/");
	signal(SIGPIPE, SIG_IGN);
	if (null >= 0) {
		dup2(null, STDIN_FILENO);
		dup2(null, STDOUT_FILENO);
		if (!foreground) /* a caller waiting for the end of our output */
			dup2(null, STDERR_FILENO);
	}
	/* nothing of the daemon's: no descriptor (above all not /dev/fuse, which
	 * keeps a connection alive), no secret from the environment */
	if (fd > STDERR_FILENO + 1)
		close_range(STDERR_FILENO + 1, (unsigned)fd - 1, 0);
	close_range((unsigned)fd + 1, ~0U, 0);
	creds_scrub_env();
	while ((n = read(fd, &byte, 1)) != 0) {
		if (n > 0)
			armed = 1;
		else if (errno != EINTR)
			_exit(1);
	}
	if (!armed || !mount_is_dead(mountpoint) || !is_ncloudfs_mount(mountpoint))
		_exit(0); /* never mounted, or unmounted cleanly */
	if (unmount_lazily(mountpoint) != 0)
		_exit(1);
	if (foreground) {
		fprintf(stderr, "ncloudfs: %s: the daemon died; unmounted its mount\n", mountpoint);
	} else {
		openlog("ncloudfs", LOG_PID, LOG_DAEMON);
		syslog(LOG_NOTICE, "%s: the daemon died; unmounted its mount", mountpoint);
	}
	_exit(0);
}

/* Forks the watchdog; *fd gets the pipe's write end. Called before any thread
 * starts and before the secret is read. 0 or -1. */
static int watchdog_start(const char *mountpoint, int foreground, int *fd)
{
	int p[2];
	pid_t pid;

	if (pipe2(p, O_CLOEXEC) < 0)
		return -1;
	fflush(NULL);
	pid = fork();
	if (pid < 0) {
		close(p[0]);
		close(p[1]);
		return -1;
	}
	if (pid == 0) {
		close(p[1]);
		watchdog(mountpoint, p[0], foreground);
	}
	close(p[0]);
	*fd = p[1];
	return 0;
}

/* Tells the watchdog that the mount is up. */
static void watchdog_arm(int fd)
{
	const char byte = 'm';

	if (fd >= 0 && write(fd, &byte, 1) != 1)
		log_msg(LOG_LVL_WARNING, "the watchdog is gone: a dead daemon's mount may stay");
}

/* A mountpoint whose FUSE daemon died answers ENOTCONN ("Transport endpoint
 * is not connected"). If the dead mount is an ncloudfs one it is unmounted
 * so that this mount can go ahead; otherwise says what to run. 0 or -1. */
static int recover_dead_mount(const char *mountpoint)
{
	char *path = strdup(mountpoint);
	int ret = 0;

	size_t len;

	if (!path)
		return -1;
	for (len = strlen(path); len > 1 && path[len - 1] == '/'; len--)
		path[len - 1] = '\0'; /* "MNT/" names MNT */
	if (!mount_is_dead(path) || absolute_new(&path) < 0)
		goto out;
	if (is_ncloudfs_mount(path) && unmount_lazily(path) == 0) {
		fprintf(stderr, "ncloudfs: %s: the ncloudfs mounted there had died; unmounted it\n",
			path);
		goto out;
	}
	fprintf(stderr,
		"ncloudfs: %s: a dead FUSE mount (its daemon is gone): run `fusermount3 -u %s`, "
		"then mount again\n",
		path, path);
	ret = -1;
out:
	free(path);
	return ret;
}

/* The check at mount: one getRegionList call tries the keys, the gateway and
 * TLS, and its answer (*regions) primes the root listing. 0, or -1 with the
 * API's message, the host and a hint. */
static int check_api(struct ncp_client *client, const struct ncp_creds *cr, json_t **regions)
{
	struct ncp_error err;
	const char *hint;

	if (ncp_region_list(client, regions, &err) == 0)
		return 0;
	if (err.kind == NCP_ERR_AUTH)
		hint = cr->from;
	else if (err.http_status == 0)
		hint = "check the network, -o api_url and -o cafile; -o delay_connect mounts "
		       "without this check (e.g. at boot, before the network is up)";
	else
		hint = "-o delay_connect mounts without this check";
	fprintf(stderr, "ncloudfs: cannot use the NCP API at %s: %s (%s)\n",
		ncp_client_host(client), err.message, hint);
	return -1;
}

/* Runs the session until unmount or a signal; returns the exit status. */
static int serve(struct fuse_session *se, struct fsops *fs, const struct fuse_cmdline_opts *co,
		 const struct settings *s)
{
	struct fuse_loop_config *cfg;
	pthread_t hup;
	int ret = 1, hup_running = 0;

	if (fuse_set_signal_handlers(se) != 0)
		return 1;
	if (fuse_session_mount(se, co->mountpoint) != 0)
		goto out_signals;
	if (kio_install(se) != 0)
		goto out_unmount;
	fuse_daemonize(co->foreground);
	if (!s->log)
		log_setup(co->foreground ? "stderr" : "syslog", co->debug);
	if (fsops_start(fs, se, co->mountpoint) < 0 || hup_start(fs, &hup) < 0) {
		log_msg(LOG_LVL_ERROR, "cannot start the daemon's threads");
		goto out_stop;
	}
	hup_running = 1;
	watchdog_arm(s->watchdog);
	log_msg(LOG_LVL_INFO, "mounted %s (API %s, ttl %gs)", co->mountpoint, s->api_url,
		s->fs.ttl);
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
	/* A signal (SIGTERM, SIGINT) ending the loop is a clean exit. */
	ret = ret < 0 ? 1 : 0;
	log_msg(LOG_LVL_INFO, "unmounting %s", co->mountpoint);
out_stop:
	/* The notifier first: a SIGHUP being handled waits for it to drain. */
	fsops_stop(fs);
	if (hup_running)
		hup_stop(hup);
out_unmount:
	fuse_session_unmount(se);
out_signals:
	fuse_remove_signal_handlers(se);
	return ret;
}

/* Started with stdin, stdout or stderr closed (by a supervisor, or `<&-`),
 * the next descriptors opened would take their numbers: the watchdog's pipe
 * would be dup'ed over, messages would go into a socket. Each closed one is
 * opened on /dev/null first. 0 or -1. */
static int std_fds_open(void)
{
	for (int fd = STDIN_FILENO; fd <= STDERR_FILENO; fd++) {
		int null;

		if (fcntl(fd, F_GETFD) >= 0 || errno != EBADF)
			continue;
		null = open("/dev/null", O_RDWR);
		if (null != fd) { /* the lowest free number is fd */
			if (null >= 0)
				close(null);
			return -1;
		}
	}
	return 0;
}

int main(int argc, char *argv[])
{
	struct fuse_args args = FUSE_ARGS_INIT(argc, argv);
	struct fuse_cmdline_opts co = { 0 };
	struct options o = { 0 };
	struct ncp_creds cr = { 0 };
	struct settings s = { .watchdog = -1 };
	struct ncp_config nc;
	struct ncp_client *client = NULL;
	struct cache_source src;
	struct fsops *fs = NULL;
	struct fuse_session *se = NULL;
	json_t *regions = NULL;
	char err[512];
	int ret = 1;

#ifdef __GLIBC__
	/* glibc gives each busy thread its own heap arena and keeps what is
	 * freed in each: with 64 FUSE threads RSS would creep up for ever. A
	 * fixed mmap threshold keeps response bodies and list pages (MiBs, short
	 * lived) out of the heaps, where they would leave holes. */
	mallopt(M_ARENA_MAX, 2);
	mallopt(M_MMAP_THRESHOLD, 256 * 1024);
#endif
	if (std_fds_open() < 0)
		return 1;
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
	/* mount(8) runs `ncloudfs SOURCE MOUNTPOINT -o ...`: keep the last. */
	if (o.npositional && (recover_dead_mount(o.positional[o.npositional - 1]) < 0 ||
			      fuse_opt_add_arg(&args, o.positional[o.npositional - 1]) != 0))
		goto out;
	/* A daemon that dies takes its mount with it (see watchdog()). */
	if (!o.noauto_unmount && fuse_opt_add_arg(&args, "-oauto_unmount") != 0)
		goto out;
	if (fuse_parse_cmdline(&args, &co) != 0 || check_options(&o, &s) < 0)
		goto out;
	if (!co.mountpoint) {
		fprintf(stderr, "ncloudfs: no mountpoint given (see %s --help)\n", argv[0]);
		goto out;
	}
	if (log_setup(o.log ? o.log : "stderr", co.debug) < 0) {
		fprintf(stderr, "ncloudfs: cannot open log file %s: %s\n", o.log, strerror(errno));
		goto out;
	}
	/* Like ssh-agent: once the secret is in memory, no core dump holds it
	 * and no process of the same user can read or trace this one (root can).
	 * With -d (debugging) the process stays dumpable; README says how to
	 * get a core. */
	if (!co.debug && prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) < 0)
		log_msg(LOG_LVL_WARNING, "cannot make the process non-dumpable: %s",
			strerror(errno));
	/* Before any thread starts and before the secret is read. */
	if (!o.noauto_unmount && watchdog_start(co.mountpoint, co.foreground, &s.watchdog) < 0) {
		fprintf(stderr, "ncloudfs: cannot start the mount's watchdog: %s\n",
			strerror(errno));
		goto out;
	}
	if (creds_load(&cr, o.config, o.profile, err, sizeof(err)) < 0) {
		fprintf(stderr, "ncloudfs: %s\n", err);
		goto out;
	}
	s.api_url = strdup(pick_api_url(&o, &cr, s.site_url));
	if (!s.api_url)
		goto out;
	nc = (struct ncp_config){ s.api_url, cr.access_key,  cr.secret_key,	 o.cafile,
				  s.timeout, (int)s.retries, (int)s.max_requests };
	client = ncp_client_new(&nc, err, sizeof(err));
	if (!client) {
		fprintf(stderr, "ncloudfs: %s\n", err);
		goto out;
	}
	creds_release(&cr); /* the client holds its own copy of the secret */
	creds_scrub_env();
	src = cache_source_ncp(client);
	fs = fsops_new(&src, client, &s.fs);
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
	/* Every option is good: now the API, before mounting. */
	if (!o.delay_connect && check_api(client, &cr, &regions) < 0)
		goto out;
	if (regions && cache_prime_regions(fsops_cache(fs), regions) < 0) {
		fprintf(stderr, "ncloudfs: out of memory\n");
		goto out;
	}
	ret = serve(se, fs, &co, &s);
out:
	if (se)
		fuse_session_destroy(se);
	json_decref(regions);
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
	free(o.busy_ttl);
	free(o.timeout);
	free(o.max_threads);
	free(o.max_requests);
	free(s.api_url);
	free(o.retries);
	free(o.site);
	free(o.log);
	for (int i = 0; i < o.npositional; i++)
		free(o.positional[i]);
	free(o.stale);
	if (s.watchdog >= 0)
		close(s.watchdog);
	return ret;
}
