/* The SQLite backend as the source of a copy (transfer.h, `pillar
 * migrate-directory`): every domain and mailbox in creation order. */
#include "directory/sqlite_internal.h"
#include "directory/transfer.h"

static int sq_export_domains(struct dir *base,
                             void (*fn)(void *ctx, const char *domain, int64_t created), void *ctx,
                             const char **error_r)
{
	struct sq_dir *dir = sq(base);
	sqlite3_stmt *st = sq_stmt(dir, ST_DOMAIN_EXPORT);
	int rc;

	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		const char *name = (const char *)sqlite3_column_text(st, 0);

		if (name != NULL)
			fn(ctx, name, sqlite3_column_int64(st, 1));
	}
	sqlite3_reset(st);
	if (rc != SQLITE_DONE)
		return sq_fail(dir, error_r, "listing domains");
	return 0;
}

static int sq_export_users(struct dir *base, void (*fn)(void *ctx, const struct dir_user *user),
                           void *ctx, const char **error_r)
{
	struct sq_dir *dir = sq(base);
	sqlite3_stmt *st = sq_stmt(dir, ST_USER_EXPORT);
	struct dir_user user;
	int rc;

	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		if (sq_row_to_user(st, &user) < 0) {
			sqlite3_reset(st);
			return dir_fail(&dir->base, error_r, "a mailbox has a malformed row");
		}
		fn(ctx, &user);
	}
	sqlite3_reset(st);
	if (rc != SQLITE_DONE)
		return sq_fail(dir, error_r, "listing mailboxes");
	return 0;
}

/* A source only: copies go from the embedded database to a shared one. */
const struct dir_transfer_ops sq_transfer = {
    .domains = sq_export_domains,
    .users = sq_export_users,
};
