#include "auth/verify.h"

#include <openssl/crypto.h>
#include <stdbool.h>
#include <string.h>
#include <time.h>

#include "auth/password.h"
#include "auth/scram.h"
#include "core/config.h"
#include "directory/thread.h"

#include <stdio.h>

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
 * password login, so SCRAM works from then on. Only while the hash is still
 * the one just checked (dir_user_set_scram): a password changed meanwhile
 * must not get keys of the old one. Failures only cost the upgrade. */
static void upgrade_scram(struct dir *dir, const struct dir_user *user, const char *password)
{
	struct dir_scram keys;
	const char *error;
	int r = dir_user_get_scram(dir, user->address, &keys, &error);

	OPENSSL_cleanse(&keys, sizeof(keys));
	if (r != 0)
		return;
	if (scram_keys_from_password(password, &keys, &error) == 0)
		(void)dir_user_set_scram(dir, user->address, user->password_hash, &keys, &error);
	OPENSSL_cleanse(&keys, sizeof(keys));
}

void auth_verify_work(void *arg)
{
	struct auth_request *req = arg;
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
			return;
		}
		found = dir_user_lookup(dir, address, &user, &error);
		if (found < 0) {
			set_error(req, error);
			dir_thread_drop();
			req->result = AUTH_TEMPFAIL;
			return;
		}
	}

	const char *hash = found ? user.password_hash : password_dummy_hash();
	bool match = password_verify(req->password, hash) && found && req->password[0] != '\0';
	if (match)
		upgrade_scram(dir, &user, req->password);
	auth_request_clear(req);
	OPENSSL_cleanse(user.password_hash, sizeof(user.password_hash));
	if (!match) {
		req->result = AUTH_FAILED;
		return;
	}
	memcpy(req->address, user.address, sizeof(req->address));
	if (user.locked) {
		req->result = AUTH_LOCKED;
		return;
	}
	req->result = AUTH_OK;
	/* A failure to record the time must not refuse a correct login. */
	(void)dir_user_touch_login(dir, user.address, (int64_t)time(NULL), &error);
}
