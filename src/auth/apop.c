/* APOP verification. See apop.h. */
#include "auth/apop.h"

#include "core/util.h"
#include "directory/thread.h"

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define MD5_LEN 16

void apop_timestamp(char *buf, size_t size, const char *hostname)
{
	uint64_t r;

	random_bytes(&r, sizeof(r));
	snprintf(buf, size, "<%ld.%016llx.%lld@%.253s>", (long)getpid(), (unsigned long long)r,
	         (long long)time(NULL), hostname);
}

/* Per-process dummy secret for users without one: the digest computed for
 * them costs the same as a real one and can never match by design (the
 * secret is random and never leaves the process). */
static char dummy_secret[33];
static pthread_once_t dummy_once = PTHREAD_ONCE_INIT;

static void make_dummy(void)
{
	random_token(dummy_secret, sizeof(dummy_secret) - 1);
}

/* Close this thread's directory connection after an error, keeping the
 * message: it lives in the connection that is about to go. */
static const char *drop_dir(const char *error)
{
	static __thread char buf[256];

	snprintf(buf, sizeof(buf), "%s", error);
	dir_thread_drop();
	return buf;
}

/* MD5(timestamp || secret) into out. Returns false if the digest could not
 * be computed (no MD5 in this OpenSSL configuration). */
static bool apop_digest(const char *timestamp, const char *secret, uint8_t out[MD5_LEN])
{
	EVP_MD_CTX *ctx = EVP_MD_CTX_new();
	unsigned int len = 0;
	bool ok;

	ok = ctx != NULL && EVP_DigestInit_ex(ctx, EVP_md5(), NULL) == 1 &&
	     EVP_DigestUpdate(ctx, timestamp, strlen(timestamp)) == 1 &&
	     EVP_DigestUpdate(ctx, secret, strlen(secret)) == 1 &&
	     EVP_DigestFinal_ex(ctx, out, &len) == 1 && len == MD5_LEN;
	EVP_MD_CTX_free(ctx);
	return ok;
}

static int hex_value(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

/* 32 hex digits, either case (RFC 1939 shows lower case; some clients
 * may not). Returns false for anything else. */
static bool parse_digest(const char *hex, uint8_t out[MD5_LEN])
{
	if (strlen(hex) != 2 * MD5_LEN)
		return false;
	for (size_t i = 0; i < MD5_LEN; i++) {
		int hi = hex_value(hex[2 * i]), lo = hex_value(hex[2 * i + 1]);

		if (hi < 0 || lo < 0)
			return false;
		out[i] = (uint8_t)(hi << 4 | lo);
	}
	return true;
}

enum auth_result apop_verify(const struct config *cfg, const char *user, const char *timestamp,
                             const char *digest_hex, char address_r[DIR_ADDRESS_MAX + 1],
                             const char **error_r)
{
	char address[DIR_ADDRESS_MAX + 1];
	char secret[DIR_APOP_SECRET_MAX + 1];
	uint8_t want[MD5_LEN], got[MD5_LEN];
	struct dir_user du;
	struct dir *dir = NULL;
	bool found = false, given, match;
	int r;

	pthread_once(&dummy_once, make_dummy);
	address_r[0] = '\0';
	given = parse_digest(digest_hex, got);
	if (given && strlen(user) < sizeof(address)) {
		memcpy(address, user, strlen(user) + 1);
		if (dir_check_address(address, error_r) == 0) {
			dir = dir_thread(cfg, error_r);
			if (dir == NULL)
				return AUTH_TEMPFAIL;
			/* Both queries whether or not the first finds the
			 * user, so the work does not tell. */
			r = dir_user_lookup(dir, address, &du, error_r);
			if (r >= 0) {
				int k = dir_user_get_apop(dir, address, secret, sizeof(secret),
				                          error_r);

				OPENSSL_cleanse(du.password_hash, sizeof(du.password_hash));
				r = k < 0 ? -1 : r > 0 && k > 0;
			}
			if (r < 0) {
				*error_r = drop_dir(*error_r);
				return AUTH_TEMPFAIL;
			}
			found = r > 0;
		}
	}
	/* The same work whether or not there is a secret to check against. */
	if (!apop_digest(timestamp, found ? secret : dummy_secret, want)) {
		OPENSSL_cleanse(secret, sizeof(secret));
		*error_r = "apop: MD5 is not available";
		return AUTH_TEMPFAIL;
	}
	OPENSSL_cleanse(secret, sizeof(secret));
	match = CRYPTO_memcmp(want, got, MD5_LEN) == 0 && found && given;
	OPENSSL_cleanse(want, sizeof(want));
	if (!match)
		return AUTH_FAILED;
	memcpy(address_r, du.address, DIR_ADDRESS_MAX + 1);
	if (du.locked)
		return AUTH_LOCKED;
	/* A failure to record the time must not refuse a correct login. */
	(void)dir_user_touch_login(dir, du.address, (int64_t)time(NULL), error_r);
	return AUTH_OK;
}

static void copy_field(char *dst, size_t size, const char *src)
{
	size_t len = strlen(src);

	if (len < size)
		memcpy(dst, src, len + 1);
}

void apop_request_init(struct apop_request *req, const struct config *cfg, const char *user,
                       const char *timestamp, const char *digest_hex)
{
	memset(req, 0, sizeof(*req));
	req->cfg = cfg;
	copy_field(req->user, sizeof(req->user), user);
	copy_field(req->timestamp, sizeof(req->timestamp), timestamp);
	copy_field(req->digest, sizeof(req->digest), digest_hex);
}

void apop_verify_work(void *arg)
{
	struct apop_request *req = arg;
	const char *error = NULL;

	req->result =
	    apop_verify(req->cfg, req->user, req->timestamp, req->digest, req->address, &error);
	if (req->result == AUTH_TEMPFAIL) {
		/* Copied: the pool thread's buffer may be reused before the
		 * loop reads it. */
		snprintf(req->error_buf, sizeof(req->error_buf), "%s", error);
		req->error = req->error_buf;
	}
}
