/* Logging: one line per event, key=value fields.
 *
 * In the foreground lines go to stderr with a timestamp; otherwise to syslog
 * (facility mail). Callers put the session id first: log_info("sid=%s ...").
 * Never pass secrets. */
#ifndef PILLAR_CORE_LOG_H
#define PILLAR_CORE_LOG_H

#include <stdbool.h>

enum log_level { LOG_LVL_DEBUG, LOG_LVL_INFO, LOG_LVL_WARN, LOG_LVL_ERROR };

/* ident is the program part of syslog lines ("pillar"); to_stderr chooses the
 * sink. May be called again (after fork, on reload). */
void log_open(const char *ident, bool to_stderr);

void log_msg(enum log_level level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#define log_debug(...) log_msg(LOG_LVL_DEBUG, __VA_ARGS__)
#define log_info(...)  log_msg(LOG_LVL_INFO, __VA_ARGS__)
#define log_warn(...)  log_msg(LOG_LVL_WARN, __VA_ARGS__)
#define log_error(...) log_msg(LOG_LVL_ERROR, __VA_ARGS__)

/* Log at error level and exit(1). Only for start-up failures and "cannot
 * happen"; run-time errors return -1 to their caller instead. */
void fatal(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));

#endif
