/* Password hashes in crypt(3) form (libxcrypt). New passwords are hashed
 * with yescrypt; verification accepts every prefix libxcrypt supports that
 * we allow on import (yescrypt $y$, sha512-crypt $6$, sha256-crypt $5$,
 * bcrypt $2b$/$2y$/$2a$).
 *
 * These are slow on purpose: call them from the thread pool, never from an
 * event loop. */
#ifndef PILLAR_AUTH_PASSWORD_H
#define PILLAR_AUTH_PASSWORD_H

#include <stdbool.h>
#include <stddef.h>

/* Hash a new password with yescrypt and a fresh salt. Returns a malloc'd
 * string, or NULL with *error_r. */
char *password_hash(const char *password, const char **error_r);

/* True when `password` matches `hash`, compared in constant time. A hash
 * that is not a supported crypt(3) form never matches. */
bool password_verify(const char *password, const char *hash);

/* A hash of a random password, made once per process, of the same kind as
 * new hashes: verifying an unknown user against it costs what a real
 * verification costs, so timing does not tell which users exist. */
const char *password_dummy_hash(void);

/* Whether `hash` is a crypt(3) string of a kind we accept on import. */
bool password_hash_supported(const char *hash);

/* Read one password line from fd (for --password-stdin): strips a trailing
 * CR/LF, refuses empty input, NUL bytes and more than 1024 bytes. Returns a
 * malloc'd string or NULL with *error_r. */
char *password_read_fd(int fd, const char **error_r);

#endif
