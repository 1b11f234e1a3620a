/* Inside the SQLite backend; nothing but sqlite*.c includes this.
 *
 * sqlite.c owns the database file: the schema and its migrations, the
 * statements (all prepared once at open), opening and closing, and
 * transactions. sqlite_query.c runs the queries behind backend.h's
 * operations and holds the backend's table; sqlite_transfer.c reads a
 * whole directory out for `pillar migrate-directory` (transfer.h). */
#ifndef PILLAR_DIRECTORY_SQLITE_INTERNAL_H
#define PILLAR_DIRECTORY_SQLITE_INTERNAL_H

#include "directory/backend.h"

#include <sqlite3.h>
#include <stdbool.h>
#include <sys/types.h>

/* The prepared statements, by name (their SQL: sqlite.c). */
enum sq_stmt {
	ST_DOMAIN_ADD,
	ST_DOMAIN_DEL,
	ST_DOMAIN_EXISTS,
	ST_DOMAIN_COUNT_USERS,
	ST_DOMAIN_LIST,
	ST_USER_ADD,
	ST_CRED_ADD,
	ST_USER_DEL,
	ST_CRED_DEL,
	ST_USER_SET_PASSWORD,
	ST_USER_LOOKUP,
	ST_USER_TOUCH,
	ST_USER_LIST_ALL,
	ST_USER_LIST_DOMAIN,
	ST_USER_SET_QUOTA,
	ST_USER_FIRST_IN_DOMAIN,
	ST_DOMAIN_FIRST,
	ST_ALIAS_TARGETS,
	ST_ALIAS_ADD,
	ST_ALIAS_DEL_ONE,
	ST_ALIAS_DEL_ALL,
	ST_ALIAS_DEL_TO,
	ST_ALIAS_DEL_DOMAIN,
	ST_ALIAS_LIST_ALL,
	ST_ALIAS_LIST_DOMAIN,
	ST_USER_GET_SCRAM,
	ST_USER_SET_SCRAM,
	ST_USER_GET_APOP,
	ST_USER_SET_CREDENTIALS,
	ST_INSTANCE_SECRET,
	ST_USER_SET_LOCKED,
	ST_USER_RENAME,
	ST_CRED_RENAME,
	ST_USER_RENUMBER,
	ST_ALIAS_RETARGET,
	ST_DOMAIN_EXPORT,
	ST_USER_EXPORT,
	ST_COUNT
};

struct sq_dir {
	struct dir base; /* first: the public handle */
	sqlite3 *db;
	sqlite3_stmt *stmt[ST_COUNT];
};

static inline struct sq_dir *sq(struct dir *dir)
{
	return (struct sq_dir *)dir;
}

/* A text parameter; SQLITE_STATIC: the caller's string outlives the step. */
static inline void sq_bind_text(sqlite3_stmt *st, int i, const char *s)
{
	sqlite3_bind_text(st, i, s, -1, SQLITE_STATIC);
}

/* "directory: <what>: <SQLite's message>" into dir's error. Returns -1. */
int sq_fail(struct sq_dir *dir, const char **error_r, const char *what);

/* Statement `which`, reset from its last use and ready to bind. */
sqlite3_stmt *sq_stmt(struct sq_dir *dir, enum sq_stmt which);

/* Several statements that must happen together or not at all. sq_begin's
 * IMMEDIATE takes the write lock at once, so a check made inside the
 * transaction still holds when the change is written. sq_commit rolls back
 * when it fails. sq_rollback returns -1 for the caller to pass on (the
 * error was set by whoever failed). */
int sq_begin(struct sq_dir *dir, const char **error_r);
int sq_commit(struct sq_dir *dir, const char **error_r);
int sq_rollback(struct sq_dir *dir);

/* Fill out from the current row of a statement that selects
 * DIR_USER_COLUMNS. Returns -1 if a value does not fit. */
int sq_row_to_user(sqlite3_stmt *st, struct dir_user *out);

/* ---- the files (sqlite_files.c) ---- */

/* An account that owns files of the directory. as_owner: we are root, and
 * open its files with its file-system ids (sq_become) rather than root's;
 * false when not root, or when the config names no account (a test's). */
struct sq_owner {
	uid_t uid;
	gid_t gid;
	bool as_owner;
};
int sq_owner(struct sq_dir *dir, const char *name, struct sq_owner *out, const char **error_r);
void sq_become(const struct sq_owner *o);
void sq_unbecome(const struct sq_owner *o);

/* `path` must exist; with create it is made when missing, 0600 from the
 * first moment (SQLite gives the -wal and -shm files the same mode). */
int sq_make_file(struct sq_dir *dir, const char *path, bool create, const char **error_r);
/* The secrets' directory: made when missing, and, as root, given to
 * auth_as with mode 0700, unless it belongs to someone else. */
int sq_make_secrets_dir(struct sq_dir *dir, const char *path, const struct sq_owner *auth,
                        const char **error_r);
/* Whether the secrets' directory is safe in state_dir: state_dir is root's
 * (or ours) and sticky when others may write in it. One that belongs to
 * run_as (an older pillar init made it so) is given to root here, group
 * run_as, mode 1775. */
int sq_check_state_dir(struct sq_dir *dir, const char *state_dir, const struct sq_owner *run,
                       const char **error_r);

/* The backend's operations that sqlite.c implements, for the table in
 * sqlite_query.c. */
int sq_open(const struct config *cfg, unsigned parts, bool create, struct dir **dir_r,
            const char **error_r);
void sq_close(struct dir *base);
int sq_tx_begin(struct dir *base, const char **error_r);
int sq_tx_commit(struct dir *base, const char **error_r);
void sq_tx_abort(struct dir *base);

/* The source side of a copy (sqlite_transfer.c). */
extern const struct dir_transfer_ops sq_transfer;

#endif
