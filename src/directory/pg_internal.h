/* Inside the PostgreSQL backend; nothing but pg*.c and lock.c include this.
 *
 * pg.c owns the connection: the schema and its migration, the statements
 * (prepared on a connection at their first use there), running them,
 * reconnecting, transactions, opening and closing. pg_query.c runs the
 * queries behind backend.h's operations and holds the backend's table;
 * pg_transfer.c copies a whole directory in and out for `pillar
 * migrate-directory` (transfer.h).
 *
 * Every call blocks on the network: callers run on a thread of the pool
 * or in an admin command, never on an event loop. */
#ifndef PILLAR_DIRECTORY_PG_INTERNAL_H
#define PILLAR_DIRECTORY_PG_INTERNAL_H

#include "directory/backend.h"

#include <libpq-fe.h>

/* The statements, by name (their SQL: pg.c). */
enum pg_stmt {
	ST_DOMAIN_ADD,
	ST_DOMAIN_DEL,
	ST_DOMAIN_EXISTS,
	ST_DOMAIN_COUNT_USERS,
	ST_DOMAIN_LIST,
	ST_DOMAIN_FIRST,
	ST_USER_ADD,
	ST_USER_DEL,
	ST_USER_SET_PASSWORD,
	ST_USER_LOOKUP,
	ST_USER_TOUCH,
	ST_USER_LIST_ALL,
	ST_USER_LIST_DOMAIN,
	ST_USER_SET_QUOTA,
	ST_USER_FIRST_IN_DOMAIN,
	ST_USER_GET_SCRAM,
	ST_USER_SET_SCRAM,
	ST_USER_GET_APOP,
	ST_USER_SET_CREDENTIALS,
	ST_USER_SET_LOCKED,
	ST_USER_RENAME,
	ST_USER_RENUMBER,
	ST_ALIAS_EXISTS,
	ST_ALIAS_TARGETS,
	ST_ALIAS_ADD,
	ST_ALIAS_DEL_ONE,
	ST_ALIAS_DEL_ALL,
	ST_ALIAS_DEL_TO,
	ST_ALIAS_DEL_DOMAIN,
	ST_ALIAS_LIST_ALL,
	ST_ALIAS_LIST_DOMAIN,
	ST_ALIAS_RETARGET,
	ST_INSTANCE_SECRET,
	ST_DOMAIN_EXPORT,
	ST_USER_EXPORT,
	ST_PUT_DOMAIN,
	ST_PUT_USER,
	ST_PUT_ALIAS,
	ST_PUT_SECRET,
	ST_COUNT
};

struct pg_dir {
	struct dir base; /* first: the public handle */
	PGconn *conn;
	uint64_t prepared; /* bit i: statement i is prepared on conn */
	bool in_tx;
	char sqlstate[6]; /* of the last failed statement, "" when none */
};

_Static_assert(ST_COUNT <= 64, "one bit per statement in pg_dir.prepared");

static inline struct pg_dir *pg(struct dir *dir)
{
	return (struct pg_dir *)dir;
}

/* A new connection to the directory at `url` (pg.c's defaults, then what
 * the URL says); check PQstatus. NULL when out of memory. */
PGconn *pg_connect(const char *url, const char *application);

/* TCP keepalives, seconds: silence before the first probe, between probes,
 * and how many unanswered probes end the connection (30 + 3 × 10 s). */
#define PG_KEEPALIVE_IDLE     "30"
#define PG_KEEPALIVE_INTERVAL "10"
#define PG_KEEPALIVE_COUNT    "3"

/* "directory: <what>: <libpq's message on one line>" into dir's error,
 * saying so when the connection is lost. Returns -1. */
int pg_fail(struct pg_dir *dir, const char **error_r, const char *what);

/* Run statement `which` with n parameters: values[i] NULL is SQL NULL;
 * lengths and formats (NULL: all text) as PQexecPrepared takes them.
 * binary asks for results in binary form. Returns the result (PQclear it)
 * or NULL after setting the error and dir->sqlstate. */
PGresult *pg_run(struct pg_dir *dir, enum pg_stmt which, int n, const char *const *values,
                 const int *lengths, const int *formats, bool binary, const char *what,
                 const char **error_r);
/* pg_run with text parameters and results. */
PGresult *pg_run_text(struct pg_dir *dir, enum pg_stmt which, int n, const char *const *values,
                      const char *what, const char **error_r);
/* Run a statement whose only interest is success; *changed_r (may be NULL)
 * gets the rows changed. Returns 0 or -1. */
int pg_exec_change(struct pg_dir *dir, enum pg_stmt which, int n, const char *const *values,
                   long *changed_r, const char *what, const char **error_r);
/* Rows changed by an INSERT, UPDATE or DELETE. */
long pg_changes(PGresult *res);

/* A text result as a number (0 when it is not one); a number as a
 * parameter's text (24 bytes hold any). */
int64_t pg_get_int64(const PGresult *res, int row, int col);
void pg_fmt_int64(char *buf, size_t size, int64_t v);
/* Parameters values[first..first+3] (and their lengths and formats) for
 * the SCRAM columns; iter holds the number's text. NULL: all four NULL. */
void pg_bind_scram(const struct dir_scram *scram, char *iter, size_t iter_size, const char **values,
                   int *lengths, int *formats, int first);

/* End a transaction that failed; the error already set stays. Returns -1. */
int pg_rollback(struct pg_dir *dir);

/* Calls fn for each row of a statement that selects DIR_USER_COLUMNS with
 * domain as its parameter (none when NULL); a row too long to represent is
 * skipped, not fatal. Returns 0 or -1. */
int pg_list_users(struct pg_dir *dir, enum pg_stmt which, const char *domain,
                  void (*fn)(void *ctx, const struct dir_user *user), void *ctx,
                  const char **error_r);

/* The backend's operations that pg.c implements, for the table in
 * pg_query.c. */
int pg_open(const struct config *cfg, unsigned parts, bool create, struct dir **dir_r,
            const char **error_r);
void pg_close(struct dir *base);
int pg_tx_begin(struct dir *base, const char **error_r);
int pg_tx_commit(struct dir *base, const char **error_r);
void pg_tx_abort(struct dir *base);

/* Both sides of a copy (pg_transfer.c). */
extern const struct dir_transfer_ops pg_transfer;

#endif
