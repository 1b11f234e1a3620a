/* Logging to stderr (foreground) or syslog facility mail. See log.h.
 *
 * The state is per process and set by log_open(); a forked worker calls it
 * again. Each line is formatted into one buffer and written with a single
 * write(2) so lines from several workers sharing stderr do not interleave. */
#include "core/log.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <syslog.h>
#include <time.h>
#include <unistd.h>

/* A log line longer than this is truncated; no event needs more. */
#define LOG_LINE_MAX 2048

static bool log_to_stderr = true;
static bool log_syslog_open;

static const char *const level_names[] = {
    [LOG_LVL_DEBUG] = "debug",
    [LOG_LVL_INFO] = "info",
    [LOG_LVL_WARN] = "warn",
    [LOG_LVL_ERROR] = "error",
};

static const int level_syslog[] = {
    [LOG_LVL_DEBUG] = LOG_DEBUG,
    [LOG_LVL_INFO] = LOG_INFO,
    [LOG_LVL_WARN] = LOG_WARNING,
    [LOG_LVL_ERROR] = LOG_ERR,
};

void log_open(const char *ident, bool to_stderr)
{
	if (log_syslog_open) {
		closelog();
		log_syslog_open = false;
	}
	log_to_stderr = to_stderr;
	if (!to_stderr) {
		/* ident must outlive the log; callers pass a literal. */
		openlog(ident, LOG_PID | LOG_NDELAY, LOG_MAIL);
		log_syslog_open = true;
	}
}

static void log_vmsg(enum log_level level, const char *fmt, va_list ap)
{
	char line[LOG_LINE_MAX];
	size_t len = 0;
	int n;

	if ((unsigned)level > LOG_LVL_ERROR)
		level = LOG_LVL_ERROR;

	if (!log_to_stderr) {
		vsnprintf(line, sizeof(line), fmt, ap);
		syslog(level_syslog[level], "%s", line);
		return;
	}

	struct timeval tv;
	struct tm tm;

	gettimeofday(&tv, NULL);
	localtime_r(&tv.tv_sec, &tm);
	len = strftime(line, sizeof(line), "%Y-%m-%dT%H:%M:%S", &tm);
	n = snprintf(line + len, sizeof(line) - len, ".%03ld", (long)(tv.tv_usec / 1000));
	len += (size_t)n;
	len += strftime(line + len, sizeof(line) - len, "%z", &tm);
	n = snprintf(line + len, sizeof(line) - len, " %s ", level_names[level]);
	len += (size_t)n;
	n = vsnprintf(line + len, sizeof(line) - len, fmt, ap);
	if (n < 0)
		n = 0;
	len += (size_t)n;
	if (len > sizeof(line) - 2)
		len = sizeof(line) - 2;
	line[len++] = '\n';

	/* Best effort: there is nowhere to report a failed log write. */
	const char *p = line;
	while (len > 0) {
		ssize_t w = write(STDERR_FILENO, p, len);
		if (w <= 0)
			break;
		p += w;
		len -= (size_t)w;
	}
}

void log_msg(enum log_level level, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	log_vmsg(level, fmt, ap);
	va_end(ap);
}

void fatal(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	log_vmsg(LOG_LVL_ERROR, fmt, ap);
	va_end(ap);
	exit(1);
}
