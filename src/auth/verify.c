#include "auth/verify.h"

#include <openssl/crypto.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "auth/password.h"
#include "auth/scram.h"
#include "core/config.h"
#include "directory/thread.h"

void auth_request_init(struct auth_request *req, const struct config *cfg, const char *user,
                       const char *password)
{
	memset(req, 0, sizeof(*req));
	req->cfg = cfg;
	size_t ulen = strlen(user), plen = strlen(password);
	if (ulen < sizeof(req->user))
		memcpy(req->user, user, ulen + 1);
	if (plen < sizeof(req->password))
		memcpy(req->password, password, plen + 1);
	/* An over-long value leaves the field empty: it then fails the same
	 * way as any wrong password. */
}

void auth_request_clear(struct auth_request *req)
{
	OPENSSL_cleanse(req->password, sizeof(req->password));
	OPENSSL_cleanse(req->hash, sizeof(req->hash));
}

/* The request's error, copied from the directory connection (which may be
 * closed next, and whose buffer the next job on this thread reuses). */
static void set_error(struct auth_request *req, const char *error)
{
	snprintf(req->error_buf, sizeof(req->error_buf), "%s", error);
	req->error = req->error_buf;
}

/* A mailbox that got its hash some other way (imported with --password-hash,
 * or set before SCRAM keys existed) gets its keys at the first successful
 * password login, so SCRAM works from then on: whether it has them is
 * looked up with the check; making them (auth_verify_finish) can wait. */
static bool lacks_scram_keys(struct dir *dir, const char *address)
{
	struct dir_scram keys;
	const char *error;
	int r = dir_user_get_scram(dir, address, &keys, &error);

	OPENSSL_cleanse(&keys, sizeof(keys));
	return r == 0;
}

void auth_verify_check(struct auth_request *req)
{
	char address[DIR_ADDRESS_MAX + 1];
	struct dir_user user;
	struct dir *dir = NULL;
	const char *error;
	int found = 0;

	memcpy(address, req->user, sizeof(address));
	if (address[0] != '\0' && dir_check_address(address, &error) == 0) {
		dir = dir_thread(req->cfg, &error);
		if (dir == NULL) {
			req->result = AUTH_TEMPFAIL;
			set_error(req, error);
			auth_request_clear(req);
			return;
		}
		found = dir_user_lookup(dir, address, &user, &error);
		if (found < 0) {
			set_error(req, error);
			dir_thread_drop();
			req->result = AUTH_TEMPFAIL;
			auth_request_clear(req);
			return;
		}
	}

	const char *hash = found ? user.password_hash : password_dummy_hash();
	bool match = password_verify(req->password, hash) && found && req->password[0] != '\0';
	if (!match) {
		auth_request_clear(req);
		OPENSSL_cleanse(user.password_hash, sizeof(user.password_hash));
		req->result = AUTH_FAILED;
		return;
	}
	memcpy(req->address, user.address, sizeof(req->address));
	memcpy(req->hash, user.password_hash, sizeof(req->hash));
	OPENSSL_cleanse(user.password_hash, sizeof(user.password_hash));
	req->result = user.locked ? AUTH_LOCKED : AUTH_OK;
	/* A failure to record the time must not refuse a correct login. */
	if (req->result == AUTH_OK)
		(void)dir_user_touch_login(dir, user.address, (int64_t)time(NULL), &error);
	req->needs_keys = lacks_scram_keys(dir, user.address);
	if (!req->needs_keys)
		auth_request_clear(req);
}

/* Only while the hash is still the one just checked (dir_user_set_scram):
 * a password changed meanwhile must not get keys of the old one. Failures
 * only cost the upgrade. */
void auth_verify_finish(struct auth_request *req)
{
	struct dir_scram keys;
	const char *error;
	struct dir *dir;

	if (!req->needs_keys)
		return;
	req->needs_keys = false;
	dir = dir_thread(req->cfg, &error);
	if (dir != NULL && scram_keys_from_password(req->password, &keys, &error) == 0)
		(void)dir_user_set_scram(dir, req->address, req->hash, &keys, &error);
	OPENSSL_cleanse(&keys, sizeof(keys));
	auth_request_clear(req);
}

void auth_verify_work(struct auth_request *req)
{
	auth_verify_check(req);
	auth_verify_finish(req);
}
