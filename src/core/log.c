/* Logging to stderr (foreground) or syslog facility mail. See log.h.
 *
 * The state is per process and set by log_open(); a forked worker calls it
 * again. Each line is formatted into one buffer and written with a single
 * write(2) so lines from several workers sharing stderr do not interleave.
 *
 * Rate limit. Anyone who can connect can make the server log: a connect and
 * a disconnect line per connection, a line per malformed SASL exchange, per
 * failed login. Unlimited, a flood of cheap connections turns into a flood
 * of disk writes (or of syslog traffic, which syslog daemons then drop
 * without telling us what). So each process passes lines through a token
 * bucket per class: a burst goes through at once, then a steady rate, and
 * the dropped lines are counted and reported by one line when the class
 * gets through again. The limits are above what normal work logs: a POP3
 * session logs three lines, so a worker loses none unless it serves more
 * than sixty-six sessions a second, and even then only once the burst of a
 * thousand lines is used up. They are per process, so the whole server's
 * limit grows with `workers`.
 *
 *  - auth: failed logins. fail2ban needs them to stop the attack that causes
 *    them, so their limit is five times higher; they are capped only so that
 *    a distributed guessing attack cannot fill the disk either.
 *  - problem: warnings and errors, so that a flood of routine lines cannot
 *    hide that something is wrong (and the reverse).
 *  - info: everything else. */
#include "core/log.h"

#include <pthread.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <syslog.h>
#include <time.h>
#include <unistd.h>

/* A log line longer than this is truncated; no event needs more. */
#define LOG_LINE_MAX 2048

enum log_class { LOG_CLASS_INFO, LOG_CLASS_PROBLEM, LOG_CLASS_AUTH, LOG_CLASS_COUNT };

static const struct {
	const char *name;
	uint64_t burst; /* lines let through at once after a quiet time */
	uint64_t per_s; /* lines per second after that */
} class_limit[LOG_CLASS_COUNT] = {
    [LOG_CLASS_INFO] = {"info", 1000, 200},
    [LOG_CLASS_PROBLEM] = {"problem", 1000, 200},
    [LOG_CLASS_AUTH] = {"auth", 5000, 1000},
};

/* Tokens are counted in thousandths of a line, so a rate of R lines a
 * second refills R tokens each millisecond without rounding away. */
struct log_bucket {
	bool primed;
	uint64_t millitokens;
	uint64_t last_ms;
	uint64_t suppressed;
};

/* Pool threads may log too. */
static pthread_mutex_t bucket_lock = PTHREAD_MUTEX_INITIALIZER;
static struct log_bucket buckets[LOG_CLASS_COUNT];

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

static uint64_t monotonic_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

/* May a line of this class go out now? When it may, *suppressed_r is how
 * many were dropped since the last one that did (to be reported first). */
static bool log_admit(enum log_class cls, uint64_t *suppressed_r)
{
	struct log_bucket *b = &buckets[cls];
	const uint64_t full = class_limit[cls].burst * 1000u;
	uint64_t now = monotonic_ms();
	bool ok;

	pthread_mutex_lock(&bucket_lock);
	if (!b->primed) {
		b->primed = true;
		b->millitokens = full;
	} else if (now > b->last_ms) {
		uint64_t add = (now - b->last_ms) * class_limit[cls].per_s;
		b->millitokens = add >= full - b->millitokens ? full : b->millitokens + add;
	}
	b->last_ms = now;
	ok = b->millitokens >= 1000u;
	if (ok) {
		b->millitokens -= 1000u;
		*suppressed_r = b->suppressed;
		b->suppressed = 0;
	} else {
		b->suppressed++;
	}
	pthread_mutex_unlock(&bucket_lock);
	return ok;
}

__attribute__((format(printf, 2, 0))) static void log_emit(enum log_level level, const char *fmt,
                                                           va_list ap)
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

static void log_emitf(enum log_level level, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static void log_emitf(enum log_level level, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	log_emit(level, fmt, ap);
	va_end(ap);
}

__attribute__((format(printf, 3, 0))) static void log_vmsg(enum log_level level, enum log_class cls,
                                                           const char *fmt, va_list ap)
{
	uint64_t suppressed = 0;

	if (!log_admit(cls, &suppressed))
		return;
	if (suppressed > 0)
		log_emitf(LOG_LVL_WARN, "log: suppressed %llu lines class=%s",
		          (unsigned long long)suppressed, class_limit[cls].name);
	log_emit(level, fmt, ap);
}

void log_msg(enum log_level level, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	log_vmsg(level, level >= LOG_LVL_WARN ? LOG_CLASS_PROBLEM : LOG_CLASS_INFO, fmt, ap);
	va_end(ap);
}

void log_auth_failure(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	log_vmsg(LOG_LVL_INFO, LOG_CLASS_AUTH, fmt, ap);
	va_end(ap);
}

void fatal(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	log_emit(LOG_LVL_ERROR, fmt, ap); /* the last word is never dropped */
	va_end(ap);
	exit(1);
}
