/* SPDX-License-Identifier: MIT */
/* log.h: the daemon's log: stderr, syslog or a file, one line per event.
 * Never pass a secret to these. */
#ifndef LOG_H
#define LOG_H

enum log_level { LOG_LVL_ERROR, LOG_LVL_WARNING, LOG_LVL_INFO, LOG_LVL_DEBUG };

/* Where lines go: "stderr", "syslog" or an absolute file path (appended to).
 * debug enables DEBUG lines. Returns 0, or -1 when the file cannot be
 * opened (lines then go to stderr). */
int log_setup(const char *where, int debug);
/* Reopens the log file (after logrotate moved it); a no-op otherwise. */
int log_reopen(void);
/* Logs one line at level; a trailing newline is added. Thread-safe. */
void log_msg(enum log_level level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Nonzero when DEBUG lines are printed. */
int log_debug_enabled(void);

#endif
