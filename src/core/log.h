/* Logging: one line per event, key=value fields.
 *
 * In the foreground lines go to stderr with a timestamp; otherwise to syslog
 * (facility mail). Callers put the session id first: log_info("sid=%s ...").
 * Never pass secrets.
 *
 * Lines are rate-limited per process, in three classes that do not starve
 * each other: failed logins (log_auth_failure), warnings and errors, and the
 * rest. Each class lets a burst through, then a steady rate; what it drops is
 * counted and reported as one "log: suppressed N lines class=..." line when
 * that class logs again. fatal() is never suppressed. */
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

/* A failed login ("sid=... auth failed user=... rip=..."), at info level.
 * fail2ban bans on these lines, so they have a class of their own with a much
 * higher limit: a flood of other lines never hides them, and only a flood of
 * failed logins themselves (from very many addresses) is ever capped. */
void log_auth_failure(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* Log at error level and exit(1). Only for start-up failures and "cannot
 * happen"; run-time errors return -1 to their caller instead. */
void fatal(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));

#endif
