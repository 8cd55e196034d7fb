/* log.h: the daemon's log: stderr in the foreground, syslog once daemonized.
 * One line per event. Never pass a secret to these. */
#ifndef LOG_H
#define LOG_H

enum log_level { LOG_LVL_ERROR, LOG_LVL_WARNING, LOG_LVL_INFO, LOG_LVL_DEBUG };

/* Sends further lines to syslog (1) or stderr (0); debug enables DEBUG lines. */
void log_setup(int use_syslog, int debug);
/* Logs one line at level; a trailing newline is added. */
void log_msg(enum log_level level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Nonzero when DEBUG lines are printed. */
int log_debug_enabled(void);

#endif
