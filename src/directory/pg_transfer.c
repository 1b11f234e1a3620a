/* The PostgreSQL backend at either end of a copy (transfer.h, `pillar
 * migrate-directory`): listed in creation order, written as upserts. */
#include "directory/pg_internal.h"
#include "directory/transfer.h"

#include <string.h>

static int pg_export_domains(struct dir *base,
                             void (*fn)(void *ctx, const char *domain, int64_t created), void *ctx,
                             const char **error_r)
{
	PGresult *res =
	    pg_run_text(pg(base), ST_DOMAIN_EXPORT, 0, NULL, "listing domains", error_r);

	if (res == NULL)
		return -1;
	for (int i = 0; i < PQntuples(res); i++)
		fn(ctx, PQgetvalue(res, i, 0), pg_get_int64(res, i, 1));
	PQclear(res);
	return 0;
}

static int pg_export_users(struct dir *base, void (*fn)(void *ctx, const struct dir_user *user),
                           void *ctx, const char **error_r)
{
	return pg_list_users(pg(base), ST_USER_EXPORT, NULL, fn, ctx, error_r);
}

static int pg_put_domain(struct dir *base, const char *domain, int64_t created,
                         const char **error_r)
{
	char c[24];
	const char *values[2] = {domain, c};

	pg_fmt_int64(c, sizeof(c), created);
	return pg_exec_change(pg(base), ST_PUT_DOMAIN, 2, values, NULL, "copying a domain",
	                      error_r);
}

static int pg_put_user(struct dir *base, const struct dir_user *u, const struct dir_scram *scram,
                       const char *apop_secret, const char **error_r)
{
	char iter[16], qb[24], qm[24], created[24], last[24];
	const char *values[13];
	int lengths[13] = {0}, formats[13] = {0};
	PGresult *res;
	long changed;

	values[0] = u->address;
	values[1] = u->password_hash;
	pg_bind_scram(scram, iter, sizeof(iter), values, lengths, formats, 2);
	pg_fmt_int64(qb, sizeof(qb), (int64_t)u->quota_bytes);
	pg_fmt_int64(qm, sizeof(qm), (int64_t)u->quota_messages);
	pg_fmt_int64(created, sizeof(created), u->created);
	pg_fmt_int64(last, sizeof(last), u->last_login);
	values[6] = qb;
	values[7] = qm;
	values[8] = u->locked ? "true" : "false";
	values[9] = created;
	values[10] = last;
	values[11] = apop_secret;
	values[12] = strrchr(u->address, '@') + 1;
	res = pg_run(pg(base), ST_PUT_USER, 13, values, lengths, formats, false,
	             "copying a mailbox", error_r);
	if (res == NULL)
		return -1;
	changed = pg_changes(res);
	PQclear(res);
	return changed > 0 ? 0
	                   : dir_fail(base, error_r, "copying %s: no such domain %s", u->address,
	                              values[12]);
}

static int pg_put_alias(struct dir *base, const char *address, const char *target,
                        const char **error_r)
{
	const char *values[2] = {address, target};

	return pg_exec_change(pg(base), ST_PUT_ALIAS, 2, values, NULL, "copying an alias", error_r);
}

static int pg_put_secret(struct dir *base, const uint8_t secret[DIR_INSTANCE_SECRET_LEN],
                         const char **error_r)
{
	const char *values[1] = {(const char *)secret};
	int lengths[1] = {DIR_INSTANCE_SECRET_LEN}, formats[1] = {1};
	PGresult *res = pg_run(pg(base), ST_PUT_SECRET, 1, values, lengths, formats, false,
	                       "copying the instance secret", error_r);

	if (res == NULL)
		return -1;
	PQclear(res);
	return 0;
}

const struct dir_transfer_ops pg_transfer = {
    .domains = pg_export_domains,
    .users = pg_export_users,
    .put_domain = pg_put_domain,
    .put_user = pg_put_user,
    .put_alias = pg_put_alias,
    .put_secret = pg_put_secret,
};
