/* log.c: where the daemon's messages go. Lines are prefixed with their level
 * so that tests (and operators) can grep for "error:" and "warning:". */
#include "log.h"

#include <stdarg.h>
#include <stdio.h>
#include <syslog.h>

static int to_syslog;
static int debug_on;

void log_setup(int use_syslog, int debug)
{
	to_syslog = use_syslog;
	debug_on = debug;
	if (use_syslog)
		openlog("ncloudfs", LOG_PID, LOG_DAEMON);
}

int log_debug_enabled(void)
{
	return debug_on;
}

void log_msg(enum log_level level, const char *fmt, ...)
{
	static const char *const names[] = { "error", "warning", "info", "debug" };
	static const int prio[] = { LOG_ERR, LOG_WARNING, LOG_INFO, LOG_DEBUG };
	char line[1024];
	va_list ap;

	if (level == LOG_LVL_DEBUG && !debug_on)
		return;
	va_start(ap, fmt);
	vsnprintf(line, sizeof(line), fmt, ap);
	va_end(ap);
	if (to_syslog)
		syslog(prio[level], "%s: %s", names[level], line);
	else
		fprintf(stderr, "ncloudfs: %s: %s\n", names[level], line);
}
