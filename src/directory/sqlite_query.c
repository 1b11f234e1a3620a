/* The SQLite backend's queries: domains, mailboxes, aliases (backend.h's
 * operations), and the backend's table. The statements are sqlite.c's. */
#include "directory/sqlite_internal.h"

#include <openssl/crypto.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* ---- domains ---- */

static int sq_domain_exists(struct dir *base, const char *name, const char **error_r)
{
	struct sq_dir *dir = sq(base);
	sqlite3_stmt *st;
	int rc;

	st = sq_stmt(dir, ST_DOMAIN_EXISTS);
	sq_bind_text(st, 1, name);
	rc = sqlite3_step(st);
	sqlite3_reset(st);
	if (rc == SQLITE_ROW)
		return 1;
	if (rc == SQLITE_DONE)
		return 0;
	return sq_fail(dir, error_r, "looking up a domain");
}

static int sq_domain_add(struct dir *base, const char *name, const char **error_r)
{
	struct sq_dir *dir = sq(base);
	sqlite3_stmt *st;
	int rc;

	st = sq_stmt(dir, ST_DOMAIN_ADD);
	sq_bind_text(st, 1, name);
	sqlite3_bind_int64(st, 2, (sqlite3_int64)time(NULL));
	rc = sqlite3_step(st);
	sqlite3_reset(st);
	if (rc == SQLITE_DONE)
		return 0;
	if ((rc & 0xff) == SQLITE_CONSTRAINT)
		return dir_fail(&dir->base, error_r, "domain %s already exists", name);
	return sq_fail(dir, error_r, "adding a domain");
}

static int sq_domain_del(struct dir *base, const char *name, const char **error_r)
{
	struct sq_dir *dir = sq(base);
	sqlite3_stmt *st;
	sqlite3_int64 users;
	int rc;

	if (sq_begin(dir, error_r) < 0)
		return -1;
	st = sq_stmt(dir, ST_DOMAIN_COUNT_USERS);
	sq_bind_text(st, 1, name);
	rc = sqlite3_step(st);
	users = rc == SQLITE_ROW ? sqlite3_column_int64(st, 0) : 0;
	sqlite3_reset(st);
	if (rc != SQLITE_ROW) {
		sq_fail(dir, error_r, "counting mailboxes");
		return sq_rollback(dir);
	}
	if (users > 0) {
		dir_fail(&dir->base, error_r, "domain %s still has %lld mailbox%s", name,
		         (long long)users, users == 1 ? "" : "es");
		return sq_rollback(dir);
	}

	/* Its aliases go with it: they could never deliver again, and a
	 * domain added later under the same name must start empty. */
	st = sq_stmt(dir, ST_ALIAS_DEL_DOMAIN);
	sq_bind_text(st, 1, name);
	rc = sqlite3_step(st);
	sqlite3_reset(st);
	if (rc != SQLITE_DONE) {
		sq_fail(dir, error_r, "deleting the domain's aliases");
		return sq_rollback(dir);
	}

	st = sq_stmt(dir, ST_DOMAIN_DEL);
	sq_bind_text(st, 1, name);
	rc = sqlite3_step(st);
	sqlite3_reset(st);
	if ((rc & 0xff) == SQLITE_CONSTRAINT) {
		dir_fail(&dir->base, error_r, "domain %s still has mailboxes", name);
		return sq_rollback(dir);
	}
	if (rc != SQLITE_DONE) {
		sq_fail(dir, error_r, "deleting a domain");
		return sq_rollback(dir);
	}
	if (sqlite3_changes(dir->db) == 0) {
		dir_fail(&dir->base, error_r, "no such domain %s", name);
		return sq_rollback(dir);
	}
	return sq_commit(dir, error_r);
}

static int sq_domain_list(struct dir *base,
                          void (*fn)(void *ctx, const char *domain, uint64_t mailboxes), void *ctx,
                          const char **error_r)
{
	struct sq_dir *dir = sq(base);
	sqlite3_stmt *st = sq_stmt(dir, ST_DOMAIN_LIST);
	int rc;

	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		const char *name = (const char *)sqlite3_column_text(st, 0);
		sqlite3_int64 n = sqlite3_column_int64(st, 1);

		fn(ctx, name != NULL ? name : "", n > 0 ? (uint64_t)n : 0);
	}
	sqlite3_reset(st);
	if (rc != SQLITE_DONE)
		return sq_fail(dir, error_r, "listing domains");
	return 0;
}

/* ---- mailboxes ---- */

static int alias_exists(struct sq_dir *dir, const char *addr, const char **error_r);
static int user_row(struct sq_dir *dir, enum sq_stmt which, const char *key, struct dir_user *out,
                    const char **error_r);

/* Run a prepared statement bound to (from, to); -1 on error. */
static int step_pair(struct sq_dir *dir, enum sq_stmt which, const char *from, const char *to,
                     const char *what, const char **error_r)
{
	sqlite3_stmt *st = sq_stmt(dir, which);
	int rc;

	sq_bind_text(st, 1, from);
	if (to != NULL)
		sq_bind_text(st, 2, to);
	rc = sqlite3_step(st);
	sqlite3_reset(st);
	return rc == SQLITE_DONE ? 0 : sq_fail(dir, error_r, what);
}

/* The row in directory.db, then its secrets; within the caller's
 * transaction when there is one, else in one of its own. */
static int sq_user_add(struct dir *base, const char *addr, const char *password_hash,
                       const char **error_r)
{
	struct sq_dir *dir = sq(base);
	bool own_tx = sqlite3_get_autocommit(dir->db) != 0;
	const char *domain;
	sqlite3_stmt *st;
	int rc;

	if (own_tx && sq_begin(dir, error_r) < 0)
		return -1;
	domain = strchr(addr, '@') + 1;
	/* An address is a mailbox or an alias, never both: which one would
	 * get the mail would otherwise be a guess. */
	rc = alias_exists(dir, addr, error_r);
	if (rc > 0)
		dir_fail(&dir->base, error_r, "%s is an alias", addr);
	if (rc != 0)
		return own_tx ? sq_rollback(dir) : -1;
	st = sq_stmt(dir, ST_USER_ADD);
	sq_bind_text(st, 1, addr);
	sqlite3_bind_int64(st, 3, (sqlite3_int64)time(NULL));
	sq_bind_text(st, 4, domain);
	rc = sqlite3_step(st);
	sqlite3_reset(st);
	if ((rc & 0xff) == SQLITE_CONSTRAINT)
		dir_fail(&dir->base, error_r, "mailbox %s already exists", addr);
	else if (rc != SQLITE_DONE)
		sq_fail(dir, error_r, "adding a mailbox");
	/* The INSERT ... SELECT inserts nothing when the domain is missing. */
	else if (sqlite3_changes(dir->db) == 0)
		dir_fail(&dir->base, error_r, "no such domain %s", domain);
	else if (step_pair(dir, ST_CRED_ADD, addr, password_hash, "adding a mailbox", error_r) == 0)
		return own_tx ? sq_commit(dir, error_r) : 0;
	return own_tx ? sq_rollback(dir) : -1;
}

/* Run a one-address UPDATE or DELETE; no row changed means no such mailbox. */
static int user_change(struct sq_dir *dir, sqlite3_stmt *st, const char *addr, const char *what,
                       const char **error_r)
{
	int rc = sqlite3_step(st);

	sqlite3_reset(st);
	if (rc != SQLITE_DONE)
		return sq_fail(dir, error_r, what);
	if (sqlite3_changes(dir->db) == 0)
		return dir_fail(&dir->base, error_r, "no such mailbox %s", addr);
	return 0;
}

static int sq_user_del(struct dir *base, const char *addr, const char **error_r)
{
	struct sq_dir *dir = sq(base);
	sqlite3_stmt *st;
	int rc;

	if (sq_begin(dir, error_r) < 0)
		return -1;
	/* Alias rows that name the mailbox go in the same transaction: an
	 * alias must never send mail to a mailbox that no longer exists (or
	 * to a different one created later under the same address). */
	st = sq_stmt(dir, ST_ALIAS_DEL_TO);
	sq_bind_text(st, 1, addr);
	rc = sqlite3_step(st);
	sqlite3_reset(st);
	if (rc != SQLITE_DONE) {
		sq_fail(dir, error_r, "deleting aliases of a mailbox");
		return sq_rollback(dir);
	}
	st = sq_stmt(dir, ST_USER_DEL);
	sq_bind_text(st, 1, addr);
	if (user_change(dir, st, addr, "deleting a mailbox", error_r) < 0 ||
	    step_pair(dir, ST_CRED_DEL, addr, NULL, "deleting a mailbox", error_r) < 0)
		return sq_rollback(dir);
	return sq_commit(dir, error_r);
}

static int sq_user_set_quota(struct dir *base, const char *addr, uint64_t bytes, uint64_t messages,
                             const char **error_r)
{
	struct sq_dir *dir = sq(base);
	sqlite3_stmt *st;

	st = sq_stmt(dir, ST_USER_SET_QUOTA);
	sq_bind_text(st, 1, addr);
	sqlite3_bind_int64(st, 2, (sqlite3_int64)bytes);
	sqlite3_bind_int64(st, 3, (sqlite3_int64)messages);
	return user_change(dir, st, addr, "setting a quota", error_r);
}

static int sq_user_set_password(struct dir *base, const char *addr, const char *password_hash,
                                const char **error_r)
{
	struct sq_dir *dir = sq(base);
	sqlite3_stmt *st;

	/* The SCRAM keys and the APOP secret derive from the old password:
	 * they are cleared here (dir_user_set_credentials sets them). */
	st = sq_stmt(dir, ST_USER_SET_PASSWORD);
	sq_bind_text(st, 1, addr);
	sq_bind_text(st, 2, password_hash);
	return user_change(dir, st, addr, "setting a password", error_r);
}

static int sq_user_set_locked(struct dir *base, const char *addr, bool locked, const char **error_r)
{
	struct sq_dir *dir = sq(base);
	sqlite3_stmt *st;

	st = sq_stmt(dir, ST_USER_SET_LOCKED);
	sq_bind_text(st, 1, addr);
	sqlite3_bind_int(st, 2, locked ? 1 : 0);
	return user_change(dir, st, addr, locked ? "locking a mailbox" : "unlocking a mailbox",
	                   error_r);
}

static int sq_user_rename(struct dir *base, const char *from, const char *to, const char **error_r)
{
	struct sq_dir *dir = sq(base);
	const char *from_domain = strrchr(from, '@') + 1, *to_domain = strrchr(to, '@') + 1;
	struct dir_user user;
	sqlite3_stmt *st;
	int r;

	/* Every check and change in one IMMEDIATE transaction: nobody can
	 * add the new address, or an alias to the old one, in between. */
	if (sq_begin(dir, error_r) < 0)
		return -1;
	r = sq_domain_exists(base, to_domain, error_r);
	if (r <= 0) {
		if (r == 0)
			dir_fail(&dir->base, error_r, "domain %s is not local", to_domain);
		return sq_rollback(dir);
	}
	r = user_row(dir, ST_USER_LOOKUP, to, &user, error_r);
	if (r == 0) {
		r = alias_exists(dir, to, error_r);
		r = r > 0 ? 2 : r;
	}
	if (r != 0) {
		if (r > 0)
			dir_fail(&dir->base, error_r, "%s already exists as %s", to,
			         r == 1 ? "a mailbox" : "an alias");
		return sq_rollback(dir);
	}
	st = sq_stmt(dir, ST_USER_RENAME);
	sq_bind_text(st, 1, from);
	sq_bind_text(st, 2, to);
	sq_bind_text(st, 3, to_domain);
	if (user_change(dir, st, from, "renaming a mailbox", error_r) < 0 ||
	    step_pair(dir, ST_CRED_RENAME, from, to, "renaming a mailbox", error_r) < 0)
		return sq_rollback(dir);
	if (strcmp(from_domain, to_domain) != 0 &&
	    step_pair(dir, ST_USER_RENUMBER, to, NULL, "renaming a mailbox", error_r) < 0)
		return sq_rollback(dir);
	if (step_pair(dir, ST_ALIAS_RETARGET, from, to, "updating aliases", error_r) < 0 ||
	    step_pair(dir, ST_ALIAS_DEL_TO, from, NULL, "updating aliases", error_r) < 0)
		return sq_rollback(dir);
	return sq_commit(dir, error_r);
}

static int sq_user_lookup(struct dir *base, const char *addr, struct dir_user *out,
                          const char **error_r);

static int sq_user_touch_login(struct dir *base, const char *addr, int64_t when,
                               const char **error_r)
{
	struct sq_dir *dir = sq(base);
	sqlite3_stmt *st;

	st = sq_stmt(dir, ST_USER_TOUCH);
	sq_bind_text(st, 1, addr);
	sqlite3_bind_int64(st, 2, (sqlite3_int64)when);
	int rc = sqlite3_step(st);
	sqlite3_reset(st);
	if (rc != SQLITE_DONE)
		return sq_fail(dir, error_r, "recording a login");
	if (sqlite3_changes(dir->db) > 0)
		return 0;
	/* Recorded less than a minute ago, or no such mailbox. */
	struct dir_user u;
	int found = sq_user_lookup(base, addr, &u, error_r);
	OPENSSL_cleanse(u.password_hash, sizeof(u.password_hash));
	if (found == 0)
		return dir_fail(&dir->base, error_r, "no such mailbox %s", addr);
	return found < 0 ? -1 : 0;
}

static void bind_scram(sqlite3_stmt *st, int first, const struct dir_scram *scram)
{
	if (scram == NULL) {
		for (int i = 0; i < 4; i++)
			sqlite3_bind_null(st, first + i);
		return;
	}
	sqlite3_bind_blob(st, first, scram->salt, (int)scram->salt_len, SQLITE_STATIC);
	sqlite3_bind_int64(st, first + 1, (sqlite3_int64)scram->iterations);
	sqlite3_bind_blob(st, first + 2, scram->stored_key, DIR_SCRAM_KEY_LEN, SQLITE_STATIC);
	sqlite3_bind_blob(st, first + 3, scram->server_key, DIR_SCRAM_KEY_LEN, SQLITE_STATIC);
}

static int sq_user_get_scram(struct dir *base, const char *addr, struct dir_scram *out,
                             const char **error_r)
{
	struct sq_dir *dir = sq(base);
	sqlite3_stmt *st;
	int rc, ret = 0;

	st = sq_stmt(dir, ST_USER_GET_SCRAM);
	sq_bind_text(st, 1, addr);
	rc = sqlite3_step(st);
	if (rc == SQLITE_ROW) {
		/* Each value before its length, as SQLite asks. */
		const void *salt = sqlite3_column_blob(st, 0);
		size_t salt_len = (size_t)sqlite3_column_bytes(st, 0);
		const void *stored = sqlite3_column_blob(st, 2);
		size_t stored_len = (size_t)sqlite3_column_bytes(st, 2);
		const void *server = sqlite3_column_blob(st, 3);
		size_t server_len = (size_t)sqlite3_column_bytes(st, 3);

		ret = dir_row_scram(out, salt, salt_len, sqlite3_column_int64(st, 1), stored,
		                    stored_len, server, server_len);
	} else if (rc != SQLITE_DONE) {
		ret = sq_fail(dir, error_r, "looking up SCRAM keys");
	}
	sqlite3_reset(st);
	return ret;
}

static int sq_user_set_scram(struct dir *base, const char *addr, const char *password_hash,
                             const struct dir_scram *scram, const char **error_r)
{
	struct sq_dir *dir = sq(base);
	sqlite3_stmt *st;
	int rc;

	st = sq_stmt(dir, ST_USER_SET_SCRAM);
	sq_bind_text(st, 1, addr);
	sq_bind_text(st, 2, password_hash);
	bind_scram(st, 3, scram);
	rc = sqlite3_step(st);
	sqlite3_reset(st);
	if (rc != SQLITE_DONE)
		return sq_fail(dir, error_r, "storing SCRAM keys");
	return sqlite3_changes(dir->db) > 0 ? 1 : 0;
}

static int sq_user_get_apop(struct dir *base, const char *addr, char *secret, size_t size,
                            const char **error_r)
{
	struct sq_dir *dir = sq(base);
	sqlite3_stmt *st;
	int rc, ret = 0;

	st = sq_stmt(dir, ST_USER_GET_APOP);
	sq_bind_text(st, 1, addr);
	rc = sqlite3_step(st);
	if (rc == SQLITE_ROW) {
		const char *v = (const char *)sqlite3_column_text(st, 0);
		int len = sqlite3_column_bytes(st, 0);

		if (v != NULL && len > 0 && (size_t)len < size &&
		    memchr(v, '\0', (size_t)len) == NULL) {
			memcpy(secret, v, (size_t)len + 1);
			ret = 1;
		}
	} else if (rc != SQLITE_DONE) {
		ret = sq_fail(dir, error_r, "looking up an APOP secret");
	}
	sqlite3_reset(st);
	return ret;
}

static int sq_user_set_credentials(struct dir *base, const char *addr, const char *password_hash,
                                   const struct dir_scram *scram, const char *apop_secret,
                                   const char **error_r)
{
	struct sq_dir *dir = sq(base);
	sqlite3_stmt *st;

	st = sq_stmt(dir, ST_USER_SET_CREDENTIALS);
	sq_bind_text(st, 1, addr);
	sq_bind_text(st, 2, password_hash);
	bind_scram(st, 3, scram);
	if (apop_secret != NULL)
		sq_bind_text(st, 7, apop_secret);
	else
		sqlite3_bind_null(st, 7);
	return user_change(dir, st, addr, "setting a password", error_r);
}

static int sq_instance_secret(struct dir *base, uint8_t out[DIR_INSTANCE_SECRET_LEN],
                              const char **error_r)
{
	struct sq_dir *dir = sq(base);
	sqlite3_stmt *st = sq_stmt(dir, ST_INSTANCE_SECRET);
	int rc = sqlite3_step(st), ret = 0;

	if (rc == SQLITE_ROW && sqlite3_column_bytes(st, 0) == DIR_INSTANCE_SECRET_LEN &&
	    sqlite3_column_blob(st, 0) != NULL)
		memcpy(out, sqlite3_column_blob(st, 0), DIR_INSTANCE_SECRET_LEN);
	else if (rc == SQLITE_ROW || rc == SQLITE_DONE)
		ret = dir_fail(&dir->base, error_r,
		               "directory: the instance secret is missing or damaged");
	else
		ret = sq_fail(dir, error_r, "reading the instance secret");
	sqlite3_reset(st);
	return ret;
}

int sq_row_to_user(sqlite3_stmt *st, struct dir_user *out)
{
	return dir_row_user(out, (const char *)sqlite3_column_text(st, 0),
	                    (const char *)sqlite3_column_text(st, 1), sqlite3_column_int64(st, 2),
	                    sqlite3_column_int64(st, 3), sqlite3_column_int64(st, 4) != 0,
	                    sqlite3_column_int64(st, 5), sqlite3_column_int64(st, 6));
}

/* One-row lookup of a user with a prepared statement bound to one text. */
static int user_row(struct sq_dir *dir, enum sq_stmt which, const char *key, struct dir_user *out,
                    const char **error_r)
{
	sqlite3_stmt *st = sq_stmt(dir, which);
	int rc, ret;

	sq_bind_text(st, 1, key);
	rc = sqlite3_step(st);
	if (rc == SQLITE_ROW)
		ret = sq_row_to_user(st, out) == 0
		          ? 1
		          : dir_fail(&dir->base, error_r, "mailbox of %s has a malformed row", key);
	else if (rc == SQLITE_DONE)
		ret = 0;
	else
		ret = sq_fail(dir, error_r, "looking up a mailbox");
	sqlite3_reset(st);
	return ret;
}

static int sq_user_lookup(struct dir *base, const char *addr, struct dir_user *out,
                          const char **error_r)
{
	return user_row(sq(base), ST_USER_LOOKUP, addr, out, error_r);
}

static int sq_user_list(struct dir *base, const char *domain,
                        void (*fn)(void *ctx, const struct dir_user *user), void *ctx,
                        const char **error_r)
{
	struct sq_dir *dir = sq(base);
	struct dir_user user;
	sqlite3_stmt *st;
	int rc;

	if (domain != NULL) {
		st = sq_stmt(dir, ST_USER_LIST_DOMAIN);
		sq_bind_text(st, 1, domain);
	} else {
		st = sq_stmt(dir, ST_USER_LIST_ALL);
	}
	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		/* A row too long to represent is skipped, not fatal: listing
		 * must still show the rest. */
		if (sq_row_to_user(st, &user) == 0)
			fn(ctx, &user);
	}
	sqlite3_reset(st);
	if (rc != SQLITE_DONE)
		return sq_fail(dir, error_r, "listing mailboxes");
	return 0;
}

/* ---- recipients and aliases ---- */

/* 1 when addr has alias rows, 0 not, -1 error. */
static int alias_exists(struct sq_dir *dir, const char *addr, const char **error_r)
{
	sqlite3_stmt *st = sq_stmt(dir, ST_ALIAS_TARGETS);
	int rc;

	sq_bind_text(st, 1, addr);
	rc = sqlite3_step(st);
	sqlite3_reset(st);
	if (rc == SQLITE_ROW)
		return 1;
	if (rc == SQLITE_DONE)
		return 0;
	return sq_fail(dir, error_r, "looking up an alias");
}

static int sq_user_first_in_domain(struct dir *base, const char *domain, struct dir_user *out,
                                   const char **error_r)
{
	return user_row(sq(base), ST_USER_FIRST_IN_DOMAIN, domain, out, error_r);
}

/* The first domain added, for a bare "postmaster". 1 found, 0, -1. */
static int sq_domain_first(struct dir *base, char *out, const char **error_r)
{
	struct sq_dir *dir = sq(base);
	sqlite3_stmt *st = sq_stmt(dir, ST_DOMAIN_FIRST);
	int rc = sqlite3_step(st), ret = 0;

	if (rc == SQLITE_ROW) {
		const char *name = (const char *)sqlite3_column_text(st, 0);

		if (name != NULL && strlen(name) <= DIR_DOMAIN_MAX) {
			memcpy(out, name, strlen(name) + 1);
			ret = 1;
		}
	} else if (rc != SQLITE_DONE) {
		ret = sq_fail(dir, error_r, "listing domains");
	}
	sqlite3_reset(st);
	return ret;
}

static int sq_alias_insert(struct dir *base, const char *addr, const char *to, const char **error_r)
{
	struct sq_dir *dir = sq(base);
	sqlite3_stmt *st = sq_stmt(dir, ST_ALIAS_ADD);
	int rc;

	sq_bind_text(st, 1, addr);
	sq_bind_text(st, 2, to);
	rc = sqlite3_step(st);
	sqlite3_reset(st);
	if ((rc & 0xff) == SQLITE_CONSTRAINT)
		return dir_fail(&dir->base, error_r, "alias %s already points to %s", addr, to);
	if (rc != SQLITE_DONE)
		return sq_fail(dir, error_r, "adding an alias");
	return 0;
}

/* The targets of alias addr, in the order they were added. */
static int sq_alias_targets(struct dir *base, const char *addr,
                            char (*targets)[DIR_ADDRESS_MAX + 1], size_t max, size_t *n_r,
                            const char **error_r)
{
	struct sq_dir *dir = sq(base);
	sqlite3_stmt *st = sq_stmt(dir, ST_ALIAS_TARGETS);
	size_t n = 0;
	int rc;

	*n_r = 0;
	sq_bind_text(st, 1, addr);
	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		const char *t = (const char *)sqlite3_column_text(st, 0);

		if (n == max) {
			sqlite3_reset(st);
			return dir_fail(&dir->base, error_r, "alias %s has more than %zu targets",
			                addr, max);
		}
		if (t != NULL && strlen(t) <= DIR_ADDRESS_MAX)
			memcpy(targets[n++], t, strlen(t) + 1);
	}
	sqlite3_reset(st);
	if (rc != SQLITE_DONE)
		return sq_fail(dir, error_r, "looking up an alias");
	*n_r = n;
	return 0;
}

static int sq_alias_del(struct dir *base, const char *addr, const char *target,
                        const char **error_r)
{
	struct sq_dir *dir = sq(base);
	sqlite3_stmt *st;
	int rc;

	if (target != NULL) {
		st = sq_stmt(dir, ST_ALIAS_DEL_ONE);
		sq_bind_text(st, 2, target);
	} else {
		st = sq_stmt(dir, ST_ALIAS_DEL_ALL);
	}
	sq_bind_text(st, 1, addr);
	rc = sqlite3_step(st);
	sqlite3_reset(st);
	if (rc != SQLITE_DONE)
		return sq_fail(dir, error_r, "deleting an alias");
	if (sqlite3_changes(dir->db) == 0) {
		if (target == NULL || alias_exists(dir, addr, error_r) == 0)
			return dir_fail(&dir->base, error_r, "no such alias %s", addr);
		return dir_fail(&dir->base, error_r, "alias %s does not point to %s", addr, target);
	}
	return 0;
}

static int sq_alias_list(struct dir *base, const char *domain,
                         void (*fn)(void *ctx, const char *address, const char *target), void *ctx,
                         const char **error_r)
{
	struct sq_dir *dir = sq(base);
	sqlite3_stmt *st;
	int rc;

	if (domain != NULL) {
		st = sq_stmt(dir, ST_ALIAS_LIST_DOMAIN);
		sq_bind_text(st, 1, domain);
	} else {
		st = sq_stmt(dir, ST_ALIAS_LIST_ALL);
	}
	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		const char *a = (const char *)sqlite3_column_text(st, 0);
		const char *t = (const char *)sqlite3_column_text(st, 1);

		fn(ctx, a != NULL ? a : "", t != NULL ? t : "");
	}
	sqlite3_reset(st);
	if (rc != SQLITE_DONE)
		return sq_fail(dir, error_r, "listing aliases");
	return 0;
}

/* Opening, closing and transactions are sqlite.c's. */
const struct dir_backend dir_sqlite_backend = {
    .name = "sqlite",
    .open = sq_open,
    .close = sq_close,
    .tx_begin = sq_tx_begin,
    .tx_commit = sq_tx_commit,
    .tx_abort = sq_tx_abort,
    .domain_add = sq_domain_add,
    .domain_del = sq_domain_del,
    .domain_exists = sq_domain_exists,
    .domain_first = sq_domain_first,
    .domain_list = sq_domain_list,
    .user_add = sq_user_add,
    .user_del = sq_user_del,
    .user_set_quota = sq_user_set_quota,
    .user_set_locked = sq_user_set_locked,
    .user_rename = sq_user_rename,
    .user_set_password = sq_user_set_password,
    .user_get_scram = sq_user_get_scram,
    .user_set_scram = sq_user_set_scram,
    .user_get_apop = sq_user_get_apop,
    .instance_secret = sq_instance_secret,
    .user_set_credentials = sq_user_set_credentials,
    .user_lookup = sq_user_lookup,
    .user_first_in_domain = sq_user_first_in_domain,
    .user_touch_login = sq_user_touch_login,
    .user_list = sq_user_list,
    .alias_targets = sq_alias_targets,
    .alias_insert = sq_alias_insert,
    .alias_del = sq_alias_del,
    .alias_list = sq_alias_list,
    .transfer = &sq_transfer,
};
