/* Small helpers shared by every module: checked number parsing, sizes and
 * times from the config syntax, randomness, and freeing that NULLs. */
#ifndef PILLAR_CORE_UTIL_H
#define PILLAR_CORE_UTIL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Free *p and set it to NULL, so a second free is harmless. */
#define x_free(p)                                                                                  \
	do {                                                                                       \
		free(*(p));                                                                        \
		*(p) = NULL;                                                                       \
	} while (0)

/* Parse a decimal number of exactly the characters [s, s+len): digits only, no
 * sign, no spaces, no leading '+'; value must be <= max. Returns 0 or -1. */
int parse_uint(const char *s, size_t len, uint64_t max, uint64_t *out);

/* "50M", "2G", "512K", "1000" (bytes). Returns 0 or -1. */
int parse_size(const char *s, uint64_t *out);

/* "10m", "60s", "2h", "250ms", "0" -> milliseconds. Returns 0 or -1. */
int parse_duration_ms(const char *s, uint64_t *out);

/* Fill buf with n cryptographically random bytes; aborts if the kernel's
 * generator is unavailable (a server without randomness must not run). */
void random_bytes(void *buf, size_t n);

/* A random string of len characters from [a-z2-7] plus NUL (buf has len+1). */
void random_token(char *buf, size_t len);

/* Allocation that cannot fail: aborts with a message on exhaustion. */
void *xmalloc(size_t n);
void *xcalloc(size_t n, size_t size);
char *xstrdup(const char *s);
char *xasprintf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* ASCII lower-casing in place. */
void str_lower(char *s);

/* Milliseconds of CLOCK_MONOTONIC. */
uint64_t now_ms(void);

#endif
