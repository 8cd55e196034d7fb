/* SPDX-License-Identifier: MIT */
/* log.c: where the daemon's messages go. Lines carry their level ("error:",
 * "warning:", ...) so that operators and tests can grep for them; file lines
 * also carry a timestamp, as syslog would add. */
#include "log.h"

#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <syslog.h>
#include <time.h>
#include <unistd.h>

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static int to_syslog;
static int debug_on;
static char path[4096]; /* the log file, when there is one */
static FILE *file;

static int open_file(void)
{
	FILE *f = fopen(path, "ae");

	if (!f)
		return -1;
	setvbuf(f, NULL, _IOLBF, 0);
	if (file)
		fclose(file);
	file = f;
	return 0;
}

int log_setup(const char *where, int debug)
{
	int err = 0;

	pthread_mutex_lock(&lock);
	debug_on = debug;
	to_syslog = strcmp(where, "syslog") == 0;
	if (to_syslog)
		openlog("ncloudfs", LOG_PID, LOG_DAEMON);
	if (!to_syslog && strcmp(where, "stderr") != 0) {
		snprintf(path, sizeof(path), "%s", where);
		err = open_file();
	}
	pthread_mutex_unlock(&lock);
	return err;
}

int log_reopen(void)
{
	int err = 0;

	pthread_mutex_lock(&lock);
	if (path[0])
		err = open_file();
	pthread_mutex_unlock(&lock);
	return err;
}

int log_debug_enabled(void)
{
	return debug_on;
}

void log_msg(enum log_level level, const char *fmt, ...)
{
	static const char *const names[] = { "error", "warning", "info", "debug" };
	static const int prio[] = { LOG_ERR, LOG_WARNING, LOG_INFO, LOG_DEBUG };
	char line[1024], stamp[40];
	struct tm tm;
	time_t now;
	va_list ap;

	if (level == LOG_LVL_DEBUG && !debug_on)
		return;
	va_start(ap, fmt);
	vsnprintf(line, sizeof(line), fmt, ap);
	va_end(ap);
	pthread_mutex_lock(&lock);
	if (to_syslog) {
		syslog(prio[level], "%s: %s", names[level], line);
	} else if (file) {
		now = time(NULL);
		localtime_r(&now, &tm);
		strftime(stamp, sizeof(stamp), "%Y-%m-%dT%H:%M:%S%z", &tm);
		fprintf(file, "%s ncloudfs[%ld]: %s: %s\n", stamp, (long)getpid(), names[level],
			line);
	} else {
		fprintf(stderr, "ncloudfs: %s: %s\n", names[level], line);
	}
	pthread_mutex_unlock(&lock);
}
