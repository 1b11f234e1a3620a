/* popload: small helpers, the users file and latency statistics. */
#include "popload.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

struct user *users;
size_t nusers;
struct stats st;
struct stats st_dlv;

double now_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

void die(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	fputs("popload: ", stderr);
	vfprintf(stderr, fmt, ap);
	fputc('\n', stderr);
	va_end(ap);
	exit(2);
}

void *xcalloc(size_t n, size_t size)
{
	void *p = calloc(n, size);
	if (p == NULL)
		die("out of memory");
	return p;
}

/* A number in [lo, hi], or die naming the option. */
long parse_long(const char *name, const char *s, long lo, long hi)
{
	char *end;
	errno = 0;
	long v = strtol(s, &end, 10);
	if (errno != 0 || end == s || *end != '\0' || v < lo || v > hi)
		die("--%s: want a whole number from %ld to %ld, got '%s'", name, lo, hi, s);
	return v;
}

double parse_double(const char *name, const char *s, double lo, double hi)
{
	char *end;
	errno = 0;
	double v = strtod(s, &end);
	if (errno != 0 || end == s || *end != '\0' || !(v >= lo && v <= hi))
		die("--%s: want a number from %g to %g, got '%s'", name, lo, hi, s);
	return v;
}

void load_users(const char *path)
{
	FILE *f = fopen(path, "re");
	if (f == NULL)
		die("%s: %s", path, strerror(errno));
	char line[1024];
	size_t cap = 0;
	while (fgets(line, sizeof(line), f) != NULL) {
		char *p = line, *addr, *pass;
		line[strcspn(line, "\r\n")] = '\0';
		if (*p == '\0' || *p == '#')
			continue;
		addr = strtok(p, " \t");
		pass = strtok(NULL, " \t");
		if (addr == NULL || pass == NULL)
			die("%s: want 'address password' lines", path);
		if (nusers == cap) {
			cap = cap ? cap * 2 : 256;
			users = realloc(users, cap * sizeof(*users));
			if (users == NULL)
				die("out of memory");
		}
		users[nusers].address = strdup(addr);
		users[nusers].password = strdup(pass);
		if (users[nusers].address == NULL || users[nusers].password == NULL)
			die("out of memory");
		nusers++;
	}
	fclose(f);
	if (nusers == 0)
		die("%s: no users", path);
}

void sample(struct stats *s, double v)
{
	if (s->lat == NULL)
		s->lat = xcalloc(SAMPLES_MAX, sizeof(double));
	if (s->nlat < SAMPLES_MAX)
		s->lat[s->nlat++] = v;
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return x < y ? -1 : x > y;
}

/* The q-quantile (0..1) by nearest rank; 0 with no samples. */
double quantile(struct stats *s, double q)
{
	if (s->nlat == 0)
		return 0;
	qsort(s->lat, s->nlat, sizeof(double), cmp_double);
	size_t i = (size_t)(q * (double)s->nlat);
	if (i >= s->nlat)
		i = s->nlat - 1;
	return s->lat[i];
}
