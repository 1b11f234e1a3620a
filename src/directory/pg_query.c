/* The PostgreSQL backend's queries: domains, mailboxes, aliases
 * (backend.h's operations), and the backend's table. The statements and
 * running them are pg.c's; the behaviour is SQLite's (sqlite_query.c). */
#include "directory/pg_internal.h"

#include <errno.h>
#include <openssl/crypto.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* SQLSTATEs (PostgreSQL, appendix A). */
#define PG_UNIQUE_VIOLATION      "23505"
#define PG_FOREIGN_KEY_VIOLATION "23503"

/* A one-address UPDATE or DELETE; no row changed means no such mailbox. */
static int user_change(struct pg_dir *dir, enum pg_stmt which, int n, const char *const *values,
                       const char *what, const char **error_r)
{
	long changed;

	if (pg_exec_change(dir, which, n, values, &changed, what, error_r) < 0)
		return -1;
	if (changed == 0)
		return dir_fail(&dir->base, error_r, "no such mailbox %s", values[0]);
	return 0;
}

/* 1 when the statement returns a row, 0 when none, -1. */
static int exists(struct pg_dir *dir, enum pg_stmt which, const char *key, const char *what,
                  const char **error_r)
{
	const char *values[1] = {key};
	PGresult *res = pg_run_text(dir, which, 1, values, what, error_r);
	int r;

	if (res == NULL)
		return -1;
	r = PQntuples(res) > 0 ? 1 : 0;
	PQclear(res);
	return r;
}

/* ---- domains ---- */

static int pg_domain_exists(struct dir *base, const char *name, const char **error_r)
{
	return exists(pg(base), ST_DOMAIN_EXISTS, name, "looking up a domain", error_r);
}

static int pg_domain_add(struct dir *base, const char *name, const char **error_r)
{
	struct pg_dir *dir = pg(base);
	char now[24];
	const char *values[2] = {name, now};

	pg_fmt_int64(now, sizeof(now), (int64_t)time(NULL));
	if (pg_exec_change(dir, ST_DOMAIN_ADD, 2, values, NULL, "adding a domain", error_r) == 0)
		return 0;
	if (strcmp(dir->sqlstate, PG_UNIQUE_VIOLATION) == 0)
		return dir_fail(base, error_r, "domain %s already exists", name);
	return -1;
}

static int pg_domain_del(struct dir *base, const char *name, const char **error_r)
{
	struct pg_dir *dir = pg(base);
	const char *values[1] = {name};
	PGresult *res;
	int64_t users;
	long changed;

	if (pg_tx_begin(base, error_r) < 0)
		return -1;
	res = pg_run_text(dir, ST_DOMAIN_COUNT_USERS, 1, values, "counting mailboxes", error_r);
	if (res == NULL)
		return pg_rollback(dir);
	users = PQntuples(res) == 1 ? pg_get_int64(res, 0, 0) : 0;
	PQclear(res);
	if (users > 0) {
		dir_fail(base, error_r, "domain %s still has %lld mailbox%s", name,
		         (long long)users, users == 1 ? "" : "es");
		return pg_rollback(dir);
	}
	/* Its aliases go with it: they could never deliver again, and a
	 * domain added later under the same name must start empty. */
	if (pg_exec_change(dir, ST_ALIAS_DEL_DOMAIN, 1, values, NULL,
	                   "deleting the domain's aliases", error_r) < 0)
		return pg_rollback(dir);
	if (pg_exec_change(dir, ST_DOMAIN_DEL, 1, values, &changed, "deleting a domain", error_r) <
	    0) {
		if (strcmp(dir->sqlstate, PG_FOREIGN_KEY_VIOLATION) == 0)
			dir_fail(base, error_r, "domain %s still has mailboxes", name);
		return pg_rollback(dir);
	}
	if (changed == 0) {
		dir_fail(base, error_r, "no such domain %s", name);
		return pg_rollback(dir);
	}
	return pg_tx_commit(base, error_r);
}

static int pg_domain_first(struct dir *base, char *out, const char **error_r)
{
	PGresult *res = pg_run_text(pg(base), ST_DOMAIN_FIRST, 0, NULL, "listing domains", error_r);
	int r = 0;

	if (res == NULL)
		return -1;
	if (PQntuples(res) == 1 && strlen(PQgetvalue(res, 0, 0)) <= DIR_DOMAIN_MAX) {
		memcpy(out, PQgetvalue(res, 0, 0), strlen(PQgetvalue(res, 0, 0)) + 1);
		r = 1;
	}
	PQclear(res);
	return r;
}

static int pg_domain_list(struct dir *base,
                          void (*fn)(void *ctx, const char *domain, uint64_t mailboxes), void *ctx,
                          const char **error_r)
{
	PGresult *res = pg_run_text(pg(base), ST_DOMAIN_LIST, 0, NULL, "listing domains", error_r);

	if (res == NULL)
		return -1;
	for (int i = 0; i < PQntuples(res); i++) {
		int64_t n = pg_get_int64(res, i, 1);

		fn(ctx, PQgetvalue(res, i, 0), n > 0 ? (uint64_t)n : 0);
	}
	PQclear(res);
	return 0;
}

/* ---- mailboxes ---- */

/* Fill out from row `row` of DIR_USER_COLUMNS. Returns -1 if a value does
 * not fit. */
static int row_to_user(const PGresult *res, int row, struct dir_user *out)
{
	return dir_row_user(out, PQgetisnull(res, row, 0) ? NULL : PQgetvalue(res, row, 0),
	                    PQgetisnull(res, row, 1) ? NULL : PQgetvalue(res, row, 1),
	                    pg_get_int64(res, row, 2), pg_get_int64(res, row, 3),
	                    strcmp(PQgetvalue(res, row, 4), "t") == 0, pg_get_int64(res, row, 5),
	                    pg_get_int64(res, row, 6));
}

/* One-row lookup of a user with a statement bound to one text. */
static int user_row(struct pg_dir *dir, enum pg_stmt which, const char *key, struct dir_user *out,
                    const char **error_r)
{
	const char *values[1] = {key};
	PGresult *res = pg_run_text(dir, which, 1, values, "looking up a mailbox", error_r);
	int r = 0;

	if (res == NULL)
		return -1;
	if (PQntuples(res) > 0)
		r = row_to_user(res, 0, out) == 0
		        ? 1
		        : dir_fail(&dir->base, error_r, "mailbox of %s has a malformed row", key);
	PQclear(res);
	return r;
}

static int pg_user_add(struct dir *base, const char *addr, const char *password_hash,
                       const char **error_r)
{
	struct pg_dir *dir = pg(base);
	const char *domain = strchr(addr, '@') + 1;
	char now[24];
	const char *values[4] = {addr, password_hash, now, domain};
	long changed;
	int r;

	/* An address is a mailbox or an alias, never both: which one would
	 * get the mail would otherwise be a guess. */
	r = exists(dir, ST_ALIAS_EXISTS, addr, "looking up an alias", error_r);
	if (r != 0)
		return r < 0 ? -1 : dir_fail(base, error_r, "%s is an alias", addr);
	pg_fmt_int64(now, sizeof(now), (int64_t)time(NULL));
	if (pg_exec_change(dir, ST_USER_ADD, 4, values, &changed, "adding a mailbox", error_r) <
	    0) {
		if (strcmp(dir->sqlstate, PG_UNIQUE_VIOLATION) == 0)
			return dir_fail(base, error_r, "mailbox %s already exists", addr);
		return -1;
	}
	/* The INSERT ... SELECT inserts nothing when the domain is missing. */
	if (changed == 0)
		return dir_fail(base, error_r, "no such domain %s", domain);
	return 0;
}

static int pg_user_del(struct dir *base, const char *addr, const char **error_r)
{
	struct pg_dir *dir = pg(base);
	const char *values[1] = {addr};

	if (pg_tx_begin(base, error_r) < 0)
		return -1;
	/* Alias rows that name the mailbox go in the same transaction: an
	 * alias must never send mail to a mailbox that no longer exists (or
	 * to a different one created later under the same address). */
	if (pg_exec_change(dir, ST_ALIAS_DEL_TO, 1, values, NULL, "deleting aliases of a mailbox",
	                   error_r) < 0)
		return pg_rollback(dir);
	if (user_change(dir, ST_USER_DEL, 1, values, "deleting a mailbox", error_r) < 0)
		return pg_rollback(dir);
	return pg_tx_commit(base, error_r);
}

static int pg_user_set_quota(struct dir *base, const char *addr, uint64_t bytes, uint64_t messages,
                             const char **error_r)
{
	char b[24], m[24];
	const char *values[3] = {addr, b, m};

	/* directory.c refused values past INT64_MAX. */
	pg_fmt_int64(b, sizeof(b), (int64_t)bytes);
	pg_fmt_int64(m, sizeof(m), (int64_t)messages);
	return user_change(pg(base), ST_USER_SET_QUOTA, 3, values, "setting a quota", error_r);
}

static int pg_user_set_password(struct dir *base, const char *addr, const char *password_hash,
                                const char **error_r)
{
	const char *values[2] = {addr, password_hash};

	/* The SCRAM keys and the APOP secret derive from the old password:
	 * the statement clears them (dir_user_set_credentials sets them). */
	return user_change(pg(base), ST_USER_SET_PASSWORD, 2, values, "setting a password",
	                   error_r);
}

static int pg_user_set_locked(struct dir *base, const char *addr, bool locked, const char **error_r)
{
	const char *values[2] = {addr, locked ? "true" : "false"};

	return user_change(pg(base), ST_USER_SET_LOCKED, 2, values,
	                   locked ? "locking a mailbox" : "unlocking a mailbox", error_r);
}

static int pg_user_rename(struct dir *base, const char *from, const char *to, const char **error_r)
{
	struct pg_dir *dir = pg(base);
	const char *from_domain = strrchr(from, '@') + 1, *to_domain = strrchr(to, '@') + 1;
	const char *values[3] = {from, to, to_domain};
	struct dir_user user;
	int r;

	/* Every check and change in one transaction that holds the write
	 * lock: nobody can add the new address, or an alias to the old one,
	 * in between. */
	if (pg_tx_begin(base, error_r) < 0)
		return -1;
	r = pg_domain_exists(base, to_domain, error_r);
	if (r <= 0) {
		if (r == 0)
			dir_fail(base, error_r, "domain %s is not local", to_domain);
		return pg_rollback(dir);
	}
	r = user_row(dir, ST_USER_LOOKUP, to, &user, error_r);
	if (r == 0) {
		r = exists(dir, ST_ALIAS_EXISTS, to, "looking up an alias", error_r);
		r = r > 0 ? 2 : r;
	}
	if (r != 0) {
		if (r > 0)
			dir_fail(base, error_r, "%s already exists as %s", to,
			         r == 1 ? "a mailbox" : "an alias");
		return pg_rollback(dir);
	}
	if (user_change(dir, ST_USER_RENAME, 3, values, "renaming a mailbox", error_r) < 0)
		return pg_rollback(dir);
	if (strcmp(from_domain, to_domain) != 0 &&
	    pg_exec_change(dir, ST_USER_RENUMBER, 1, &values[1], NULL, "renaming a mailbox",
	                   error_r) < 0)
		return pg_rollback(dir);
	if (pg_exec_change(dir, ST_ALIAS_RETARGET, 2, values, NULL, "updating aliases", error_r) <
	        0 ||
	    pg_exec_change(dir, ST_ALIAS_DEL_TO, 1, values, NULL, "updating aliases", error_r) < 0)
		return pg_rollback(dir);
	return pg_tx_commit(base, error_r);
}

static int pg_user_lookup(struct dir *base, const char *addr, struct dir_user *out,
                          const char **error_r);

static int pg_user_touch_login(struct dir *base, const char *addr, int64_t when,
                               const char **error_r)
{
	char w[24];
	const char *values[2] = {addr, w};

	long changed;

	pg_fmt_int64(w, sizeof(w), when);
	if (pg_exec_change(pg(base), ST_USER_TOUCH, 2, values, &changed, "recording a login",
	                   error_r) < 0)
		return -1;
	if (changed > 0)
		return 0;
	/* Recorded less than a minute ago, or no such mailbox. */
	struct dir_user u;
	int found = pg_user_lookup(base, addr, &u, error_r);
	OPENSSL_cleanse(u.password_hash, sizeof(u.password_hash));
	if (found == 0)
		return dir_fail(base, error_r, "no such mailbox %s", addr);
	return found < 0 ? -1 : 0;
}

static int pg_user_get_scram(struct dir *base, const char *addr, struct dir_scram *out,
                             const char **error_r)
{
	const char *values[1] = {addr};
	PGresult *res = pg_run(pg(base), ST_USER_GET_SCRAM, 1, values, NULL, NULL, true,
	                       "looking up SCRAM keys", error_r);
	int r = 0;

	if (res == NULL)
		return -1;
	if (PQntuples(res) == 1 && !PQgetisnull(res, 0, 1)) {
		char iter_text[24];
		long long iter;
		char *end;

		/* Binary results: the number is its text (cast in the query). */
		snprintf(iter_text, sizeof(iter_text), "%.*s", PQgetlength(res, 0, 1),
		         PQgetvalue(res, 0, 1));
		errno = 0;
		iter = strtoll(iter_text, &end, 10);
		if (errno != 0 || *end != '\0')
			iter = 0;
		r = dir_row_scram(out, PQgetisnull(res, 0, 0) ? NULL : PQgetvalue(res, 0, 0),
		                  (size_t)PQgetlength(res, 0, 0), (int64_t)iter,
		                  PQgetisnull(res, 0, 2) ? NULL : PQgetvalue(res, 0, 2),
		                  (size_t)PQgetlength(res, 0, 2),
		                  PQgetisnull(res, 0, 3) ? NULL : PQgetvalue(res, 0, 3),
		                  (size_t)PQgetlength(res, 0, 3));
	}
	PQclear(res);
	return r;
}

static int pg_user_set_scram(struct dir *base, const char *addr, const char *password_hash,
                             const struct dir_scram *scram, const char **error_r)
{
	const char *values[6] = {addr, password_hash};
	int lengths[6] = {0}, formats[6] = {0};
	char iter[16];
	PGresult *res;
	int r;

	pg_bind_scram(scram, iter, sizeof(iter), values, lengths, formats, 2);
	res = pg_run(pg(base), ST_USER_SET_SCRAM, 6, values, lengths, formats, false,
	             "storing SCRAM keys", error_r);
	if (res == NULL)
		return -1;
	r = pg_changes(res) > 0 ? 1 : 0;
	PQclear(res);
	return r;
}

static int pg_user_get_apop(struct dir *base, const char *addr, char *secret, size_t size,
                            const char **error_r)
{
	const char *values[1] = {addr};
	PGresult *res = pg_run_text(pg(base), ST_USER_GET_APOP, 1, values,
	                            "looking up an APOP secret", error_r);
	int r = 0;

	if (res == NULL)
		return -1;
	if (PQntuples(res) == 1 && !PQgetisnull(res, 0, 0)) {
		const char *v = PQgetvalue(res, 0, 0);
		size_t len = strlen(v);

		if (len > 0 && len < size) {
			memcpy(secret, v, len + 1);
			r = 1;
		}
	}
	/* libpq's copy of the secret goes with the result. */
	if (PQntuples(res) == 1)
		OPENSSL_cleanse(PQgetvalue(res, 0, 0), (size_t)PQgetlength(res, 0, 0));
	PQclear(res);
	return r;
}

static int pg_instance_secret(struct dir *base, uint8_t out[DIR_INSTANCE_SECRET_LEN],
                              const char **error_r)
{
	PGresult *res = pg_run(pg(base), ST_INSTANCE_SECRET, 0, NULL, NULL, NULL, true,
	                       "reading the instance secret", error_r);
	int r = 0;

	if (res == NULL)
		return -1;
	if (PQntuples(res) == 1 && PQgetlength(res, 0, 0) == DIR_INSTANCE_SECRET_LEN)
		memcpy(out, PQgetvalue(res, 0, 0), DIR_INSTANCE_SECRET_LEN);
	else
		r = dir_fail(base, error_r, "directory: the instance secret is missing or damaged");
	PQclear(res);
	return r;
}

static int pg_user_set_credentials(struct dir *base, const char *addr, const char *password_hash,
                                   const struct dir_scram *scram, const char *apop_secret,
                                   const char **error_r)
{
	struct pg_dir *dir = pg(base);
	const char *values[7] = {addr, password_hash};
	int lengths[7] = {0}, formats[7] = {0};
	char iter[16];
	PGresult *res;
	long changed;

	pg_bind_scram(scram, iter, sizeof(iter), values, lengths, formats, 2);
	values[6] = apop_secret;
	res = pg_run(dir, ST_USER_SET_CREDENTIALS, 7, values, lengths, formats, false,
	             "setting a password", error_r);
	if (res == NULL)
		return -1;
	changed = pg_changes(res);
	PQclear(res);
	return changed > 0 ? 0 : dir_fail(base, error_r, "no such mailbox %s", addr);
}

static int pg_user_lookup(struct dir *base, const char *addr, struct dir_user *out,
                          const char **error_r)
{
	return user_row(pg(base), ST_USER_LOOKUP, addr, out, error_r);
}

static int pg_user_first_in_domain(struct dir *base, const char *domain, struct dir_user *out,
                                   const char **error_r)
{
	return user_row(pg(base), ST_USER_FIRST_IN_DOMAIN, domain, out, error_r);
}

int pg_list_users(struct pg_dir *dir, enum pg_stmt which, const char *domain,
                  void (*fn)(void *ctx, const struct dir_user *user), void *ctx,
                  const char **error_r)
{
	const char *values[1] = {domain};
	PGresult *res =
	    pg_run_text(dir, which, domain != NULL ? 1 : 0, values, "listing mailboxes", error_r);
	struct dir_user user;

	if (res == NULL)
		return -1;
	for (int i = 0; i < PQntuples(res); i++) {
		if (row_to_user(res, i, &user) == 0)
			fn(ctx, &user);
	}
	PQclear(res);
	return 0;
}

static int pg_user_list(struct dir *base, const char *domain,
                        void (*fn)(void *ctx, const struct dir_user *user), void *ctx,
                        const char **error_r)
{
	return pg_list_users(pg(base), domain != NULL ? ST_USER_LIST_DOMAIN : ST_USER_LIST_ALL,
	                     domain, fn, ctx, error_r);
}

/* ---- aliases ---- */

static int pg_alias_targets(struct dir *base, const char *addr,
                            char (*targets)[DIR_ADDRESS_MAX + 1], size_t max, size_t *n_r,
                            const char **error_r)
{
	const char *values[1] = {addr};
	PGresult *res =
	    pg_run_text(pg(base), ST_ALIAS_TARGETS, 1, values, "looking up an alias", error_r);
	size_t n = 0;

	*n_r = 0;
	if (res == NULL)
		return -1;
	if ((size_t)PQntuples(res) > max) {
		PQclear(res);
		return dir_fail(base, error_r, "alias %s has more than %zu targets", addr, max);
	}
	for (int i = 0; i < PQntuples(res); i++) {
		const char *t = PQgetvalue(res, i, 0);

		if (strlen(t) <= DIR_ADDRESS_MAX)
			memcpy(targets[n++], t, strlen(t) + 1);
	}
	PQclear(res);
	*n_r = n;
	return 0;
}

static int pg_alias_insert(struct dir *base, const char *addr, const char *to, const char **error_r)
{
	struct pg_dir *dir = pg(base);
	const char *values[2] = {addr, to};

	if (pg_exec_change(dir, ST_ALIAS_ADD, 2, values, NULL, "adding an alias", error_r) == 0)
		return 0;
	if (strcmp(dir->sqlstate, PG_UNIQUE_VIOLATION) == 0)
		return dir_fail(base, error_r, "alias %s already points to %s", addr, to);
	return -1;
}

static int pg_alias_del(struct dir *base, const char *addr, const char *target,
                        const char **error_r)
{
	struct pg_dir *dir = pg(base);
	const char *values[2] = {addr, target};
	long changed;
	int r;

	if (pg_exec_change(dir, target != NULL ? ST_ALIAS_DEL_ONE : ST_ALIAS_DEL_ALL,
	                   target != NULL ? 2 : 1, values, &changed, "deleting an alias",
	                   error_r) < 0)
		return -1;
	if (changed > 0)
		return 0;
	if (target == NULL)
		return dir_fail(base, error_r, "no such alias %s", addr);
	r = exists(dir, ST_ALIAS_EXISTS, addr, "looking up an alias", error_r);
	if (r < 0)
		return -1;
	if (r == 0)
		return dir_fail(base, error_r, "no such alias %s", addr);
	return dir_fail(base, error_r, "alias %s does not point to %s", addr, target);
}

static int pg_alias_list(struct dir *base, const char *domain,
                         void (*fn)(void *ctx, const char *address, const char *target), void *ctx,
                         const char **error_r)
{
	const char *values[1] = {domain};
	PGresult *res =
	    pg_run_text(pg(base), domain != NULL ? ST_ALIAS_LIST_DOMAIN : ST_ALIAS_LIST_ALL,
	                domain != NULL ? 1 : 0, values, "listing aliases", error_r);

	if (res == NULL)
		return -1;
	for (int i = 0; i < PQntuples(res); i++)
		fn(ctx, PQgetvalue(res, i, 0), PQgetvalue(res, i, 1));
	PQclear(res);
	return 0;
}

/* Opening, closing and transactions are pg.c's. */
const struct dir_backend dir_pg_backend = {
    .name = "postgresql",
    .open = pg_open,
    .close = pg_close,
    .tx_begin = pg_tx_begin,
    .tx_commit = pg_tx_commit,
    .tx_abort = pg_tx_abort,
    .domain_add = pg_domain_add,
    .domain_del = pg_domain_del,
    .domain_exists = pg_domain_exists,
    .domain_first = pg_domain_first,
    .domain_list = pg_domain_list,
    .user_add = pg_user_add,
    .user_del = pg_user_del,
    .user_set_quota = pg_user_set_quota,
    .user_set_locked = pg_user_set_locked,
    .user_rename = pg_user_rename,
    .user_set_password = pg_user_set_password,
    .user_get_scram = pg_user_get_scram,
    .user_set_scram = pg_user_set_scram,
    .user_get_apop = pg_user_get_apop,
    .instance_secret = pg_instance_secret,
    .user_set_credentials = pg_user_set_credentials,
    .user_lookup = pg_user_lookup,
    .user_first_in_domain = pg_user_first_in_domain,
    .user_touch_login = pg_user_touch_login,
    .user_list = pg_user_list,
    .alias_targets = pg_alias_targets,
    .alias_insert = pg_alias_insert,
    .alias_del = pg_alias_del,
    .alias_list = pg_alias_list,
    .transfer = &pg_transfer,
};
