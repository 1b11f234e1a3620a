/* Password hashes with libxcrypt. See password.h.
 *
 * crypt_rn() with a caller-owned struct crypt_data is the thread-safe form;
 * the struct is about 32 KiB, so it lives on the heap rather than on a thread
 * pool worker's stack. */
#include "auth/password.h"

#include "core/util.h"

#include <crypt.h>
#include <errno.h>
#include <openssl/crypto.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* Longest password we hash or read. Long enough for any passphrase; bounded
 * so a client cannot make us hash megabytes. */
#define PASSWORD_MAX 1024

static char *hash_with(const char *password, const char *setting)
{
	struct crypt_data *cd = calloc(1, sizeof(*cd));
	char *out = NULL;

	if (cd == NULL)
		return NULL;
	if (crypt_rn(password, setting, cd, (int)sizeof(*cd)) != NULL && cd->output[0] != '*')
		out = strdup(cd->output);
	OPENSSL_cleanse(cd, sizeof(*cd));
	free(cd);
	return out;
}

char *password_hash(const char *password, const char **error_r)
{
	char *setting, *hash;

	if (strlen(password) > PASSWORD_MAX) {
		*error_r = "password too long";
		return NULL;
	}
	/* NULL rbytes: libxcrypt takes the salt from the kernel's generator. */
	setting = crypt_gensalt_ra("$y$", 0, NULL, 0);
	if (setting == NULL) {
		*error_r = "crypt_gensalt: cannot make a yescrypt salt";
		return NULL;
	}
	hash = hash_with(password, setting);
	free(setting);
	if (hash == NULL) {
		*error_r = "crypt: hashing failed";
		return NULL;
	}
	return hash;
}

bool password_hash_supported(const char *hash)
{
	static const char *const prefixes[] = {"$y$", "$6$", "$5$", "$2b$", "$2y$", "$2a$"};

	if (hash == NULL)
		return false;
	for (size_t i = 0; i < sizeof(prefixes) / sizeof(prefixes[0]); i++) {
		if (strncmp(hash, prefixes[i], strlen(prefixes[i])) == 0)
			return true;
	}
	return false;
}

bool password_verify(const char *password, const char *hash)
{
	char *computed;
	size_t len;
	bool ok;

	/* An unsupported or garbage hash still costs a hash computation, so a
	 * broken account is not distinguishable by timing either. */
	if (!password_hash_supported(hash) || strlen(password) > PASSWORD_MAX) {
		computed = hash_with(password, password_dummy_hash());
		free(computed);
		return false;
	}
	computed = hash_with(password, hash);
	if (computed == NULL)
		return false;
	len = strlen(hash);
	ok = strlen(computed) == len && CRYPTO_memcmp(computed, hash, len) == 0;
	OPENSSL_cleanse(computed, strlen(computed));
	free(computed);
	return ok;
}

static char *dummy_hash;
static pthread_once_t dummy_once = PTHREAD_ONCE_INIT;

static void make_dummy(void)
{
	char pw[33];
	const char *err;

	random_token(pw, sizeof(pw) - 1);
	dummy_hash = password_hash(pw, &err);
	OPENSSL_cleanse(pw, sizeof(pw));
	if (dummy_hash == NULL) {
		/* Without it unknown users would answer faster than known
		 * ones; a process that cannot hash must not serve logins. */
		fprintf(stderr, "pillar: cannot make the dummy password hash: %s\n", err);
		abort();
	}
}

const char *password_dummy_hash(void)
{
	pthread_once(&dummy_once, make_dummy);
	return dummy_hash;
}

char *password_read_fd(int fd, const char **error_r)
{
	char buf[PASSWORD_MAX + 2];
	size_t len = 0;
	char *out;

	/* Read byte by byte up to the first newline so nothing after the
	 * password line is consumed from a shared stdin. */
	for (;;) {
		char c;
		ssize_t r = read(fd, &c, 1);

		if (r < 0) {
			if (errno == EINTR)
				continue;
			OPENSSL_cleanse(buf, sizeof(buf));
			*error_r = "cannot read the password";
			return NULL;
		}
		if (r == 0 || c == '\n')
			break;
		if (c == '\0') {
			OPENSSL_cleanse(buf, sizeof(buf));
			*error_r = "password contains a NUL byte";
			return NULL;
		}
		if (len >= PASSWORD_MAX) {
			OPENSSL_cleanse(buf, sizeof(buf));
			*error_r = "password longer than 1024 bytes";
			return NULL;
		}
		buf[len++] = c;
	}
	if (len > 0 && buf[len - 1] == '\r')
		len--;
	if (len == 0) {
		*error_r = "empty password";
		return NULL;
	}
	buf[len] = '\0';
	out = xstrdup(buf);
	OPENSSL_cleanse(buf, sizeof(buf));
	return out;
}
