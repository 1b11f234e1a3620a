/* Small helpers shared by every module. See util.h. */
#include "core/util.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

int parse_uint(const char *s, size_t len, uint64_t max, uint64_t *out)
{
	uint64_t v = 0;

	if (s == NULL || len == 0)
		return -1;
	for (size_t i = 0; i < len; i++) {
		unsigned d;

		if (s[i] < '0' || s[i] > '9')
			return -1;
		d = (unsigned)(s[i] - '0');
		/* v * 10 + d must stay <= max (and so within uint64_t). */
		if (v > (max - d) / 10)
			return -1;
		v = v * 10 + d;
	}
	*out = v;
	return 0;
}

/* Split "<digits><suffix>" into the number and the suffix; the suffix is
 * looked up in `units` (name -> multiplier). The product must fit in
 * uint64_t. */
struct unit {
	const char *name;
	uint64_t mult;
};

static int parse_with_unit(const char *s, const struct unit *units, uint64_t *out)
{
	size_t digits = 0;
	uint64_t n;

	if (s == NULL)
		return -1;
	while (s[digits] >= '0' && s[digits] <= '9')
		digits++;
	if (parse_uint(s, digits, UINT64_MAX, &n) < 0)
		return -1;
	for (const struct unit *u = units; u->name != NULL; u++) {
		if (strcmp(s + digits, u->name) != 0)
			continue;
		if (u->mult != 0 && n > UINT64_MAX / u->mult)
			return -1;
		*out = n * u->mult;
		return 0;
	}
	return -1;
}

int parse_size(const char *s, uint64_t *out)
{
	static const struct unit units[] = {
	    {"", 1},
	    {"K", 1024},
	    {"k", 1024},
	    {"M", 1024 * 1024},
	    {"m", 1024 * 1024},
	    {"G", 1024ull * 1024 * 1024},
	    {"g", 1024ull * 1024 * 1024},
	    {NULL, 0},
	};
	return parse_with_unit(s, units, out);
}

int parse_duration_ms(const char *s, uint64_t *out)
{
	static const struct unit units[] = {
	    {"ms", 1}, {"s", 1000}, {"m", 60 * 1000}, {"h", 60 * 60 * 1000}, {NULL, 0},
	};

	/* A bare number is ambiguous (seconds? milliseconds?), so only "0",
	 * which means the same in every unit, is accepted without one. */
	if (s != NULL && strcmp(s, "0") == 0) {
		*out = 0;
		return 0;
	}
	return parse_with_unit(s, units, out);
}

void random_bytes(void *buf, size_t n)
{
	unsigned char *p = buf;

	while (n > 0) {
		ssize_t r = getrandom(p, n, 0);

		if (r < 0) {
			if (errno == EINTR)
				continue;
			fprintf(stderr, "pillar: getrandom: %s\n", strerror(errno));
			abort();
		}
		p += r;
		n -= (size_t)r;
	}
}

void random_token(char *buf, size_t len)
{
	/* RFC 4648 base32 alphabet, lower-cased: no look-alike 0/O, 1/l. */
	static const char alphabet[] = "abcdefghijklmnopqrstuvwxyz234567";
	unsigned char raw[64];
	size_t done = 0;

	while (done < len) {
		size_t chunk = len - done < sizeof(raw) ? len - done : sizeof(raw);

		random_bytes(raw, chunk);
		/* 32 symbols divide 256 evenly, so masking is unbiased. */
		for (size_t i = 0; i < chunk; i++)
			buf[done + i] = alphabet[raw[i] & 31];
		done += chunk;
	}
	buf[len] = '\0';
}

static void out_of_memory(void)
{
	fputs("pillar: out of memory\n", stderr);
	abort();
}

void *xmalloc(size_t n)
{
	void *p = malloc(n == 0 ? 1 : n);

	if (p == NULL)
		out_of_memory();
	return p;
}

void *xcalloc(size_t n, size_t size)
{
	void *p = calloc(n == 0 ? 1 : n, size == 0 ? 1 : size);

	if (p == NULL)
		out_of_memory();
	return p;
}

char *xstrdup(const char *s)
{
	char *p = strdup(s);

	if (p == NULL)
		out_of_memory();
	return p;
}

char *xasprintf(const char *fmt, ...)
{
	va_list ap;
	char *p;
	int r;

	va_start(ap, fmt);
	r = vasprintf(&p, fmt, ap);
	va_end(ap);
	if (r < 0)
		out_of_memory();
	return p;
}

void str_lower(char *s)
{
	for (; *s != '\0'; s++) {
		if (*s >= 'A' && *s <= 'Z')
			*s = (char)(*s - 'A' + 'a');
	}
}

uint64_t now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}
