/* The directory on SQLite: <state_dir>/directory.db. See directory.h.
 *
 * Every query is a statement prepared once at open with bound parameters;
 * no SQL is ever built from data. The schema carries its version in
 * PRAGMA user_version so later releases can migrate it in place.
 *
 * Arguments arrive normalized and checked (directory.c); this file only
 * runs the queries. */
#include "directory/backend.h"
#include "directory/transfer.h"

#include "core/config.h"
#include "core/util.h"

#include <errno.h>
#include <fcntl.h>
#include <sqlite3.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

/* The schema this code reads and writes. */
#define DIR_SCHEMA_VERSION 3
/* Other processes (the server, another admin command) may hold the write
 * lock briefly; wait this long before reporting "database is locked". */
#define DIR_BUSY_TIMEOUT_MS 5000

/* Version 1. scram_* and aliases are filled in by later features; they are
 * created now so the first migration is not needed for them. */
static const char schema_v1[] =
    "CREATE TABLE domains ("
    "  id INTEGER PRIMARY KEY,"
    "  name TEXT NOT NULL UNIQUE,"
    "  created INTEGER NOT NULL"
    ");"
    "CREATE TABLE mailboxes ("
    "  id INTEGER PRIMARY KEY,"
    "  address TEXT NOT NULL UNIQUE,"
    "  domain_id INTEGER NOT NULL REFERENCES domains(id) ON DELETE RESTRICT,"
    "  password_hash TEXT NOT NULL,"
    "  scram_salt BLOB NULL,"
    "  scram_iterations INTEGER NULL,"
    "  scram_stored_key BLOB NULL,"
    "  scram_server_key BLOB NULL,"
    "  quota_bytes INTEGER NOT NULL DEFAULT 0,"
    "  quota_messages INTEGER NOT NULL DEFAULT 0,"
    "  locked INTEGER NOT NULL DEFAULT 0,"
    "  created INTEGER NOT NULL,"
    "  last_login INTEGER NOT NULL DEFAULT 0"
    ");"
    "CREATE INDEX mailboxes_domain ON mailboxes(domain_id);"
    "CREATE TABLE aliases ("
    "  id INTEGER PRIMARY KEY,"
    "  address TEXT NOT NULL,"
    "  target TEXT NOT NULL,"
    "  UNIQUE(address, target)"
    ");"
    "PRAGMA user_version = 1;";

/* Version 2: the APOP secret of mailboxes that opted in (RFC 1939 §7). */
static const char migrate_v2[] = "ALTER TABLE mailboxes ADD COLUMN apop_secret TEXT NULL;"
                                 "PRAGMA user_version = 2;";

/* Version 3: secrets of the installation itself, made once here (SQLite's
 * randomblob draws from its OS-seeded generator) and shared by every
 * process and server that uses this directory. */
static const char migrate_v3[] =
    "CREATE TABLE secrets ("
    "  name TEXT PRIMARY KEY,"
    "  value BLOB NOT NULL"
    ");"
    "INSERT INTO secrets(name, value) VALUES ('instance', randomblob(32));"
    "PRAGMA user_version = 3;";

enum dir_stmt {
	ST_DOMAIN_ADD,
	ST_DOMAIN_DEL,
	ST_DOMAIN_EXISTS,
	ST_DOMAIN_COUNT_USERS,
	ST_DOMAIN_LIST,
	ST_USER_ADD,
	ST_USER_DEL,
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
	ST_USER_RENUMBER,
	ST_ALIAS_RETARGET,
	ST_DOMAIN_EXPORT,
	ST_USER_EXPORT,
	ST_COUNT
};

#define USER_COLUMNS                                                                               \
	"address, password_hash, quota_bytes, quota_messages, locked, created, last_login"

static const char *const stmt_sql[ST_COUNT] = {
    [ST_DOMAIN_ADD] = "INSERT INTO domains(name, created) VALUES (?1, ?2)",
    [ST_DOMAIN_DEL] = "DELETE FROM domains WHERE name = ?1",
    [ST_DOMAIN_EXISTS] = "SELECT 1 FROM domains WHERE name = ?1",
    [ST_DOMAIN_COUNT_USERS] = "SELECT count(*) FROM mailboxes m JOIN domains d"
                              " ON m.domain_id = d.id WHERE d.name = ?1",
    [ST_DOMAIN_LIST] = "SELECT d.name, count(m.id) FROM domains d"
                       " LEFT JOIN mailboxes m ON m.domain_id = d.id"
                       " GROUP BY d.id ORDER BY d.name",
    [ST_USER_ADD] = "INSERT INTO mailboxes(address, domain_id, password_hash, created)"
                    " SELECT ?1, id, ?2, ?3 FROM domains WHERE name = ?4",
    [ST_USER_DEL] = "DELETE FROM mailboxes WHERE address = ?1",
    [ST_USER_SET_PASSWORD] = "UPDATE mailboxes SET password_hash = ?2,"
                             " scram_salt = NULL, scram_iterations = NULL,"
                             " scram_stored_key = NULL, scram_server_key = NULL,"
                             " apop_secret = NULL"
                             " WHERE address = ?1",
    [ST_USER_LOOKUP] = "SELECT " USER_COLUMNS " FROM mailboxes WHERE address = ?1",
    [ST_USER_TOUCH] = "UPDATE mailboxes SET last_login = ?2 WHERE address = ?1",
    [ST_USER_LIST_ALL] = "SELECT " USER_COLUMNS " FROM mailboxes ORDER BY address",
    [ST_USER_LIST_DOMAIN] = "SELECT m.address, m.password_hash, m.quota_bytes,"
                            " m.quota_messages, m.locked, m.created, m.last_login"
                            " FROM mailboxes m JOIN domains d ON m.domain_id = d.id"
                            " WHERE d.name = ?1 ORDER BY m.address",
    [ST_USER_SET_QUOTA] = "UPDATE mailboxes SET quota_bytes = ?2, quota_messages = ?3"
                          " WHERE address = ?1",
    /* RFC 5321 §4.5.1 postmaster: the domain's first mailbox. Ids only
     * grow, so the lowest is the oldest still there. */
    [ST_USER_FIRST_IN_DOMAIN] = "SELECT " USER_COLUMNS " FROM mailboxes WHERE domain_id ="
                                " (SELECT id FROM domains WHERE name = ?1)"
                                " ORDER BY id LIMIT 1",
    [ST_DOMAIN_FIRST] = "SELECT name FROM domains ORDER BY id LIMIT 1",
    [ST_ALIAS_TARGETS] = "SELECT target FROM aliases WHERE address = ?1 ORDER BY id",
    [ST_ALIAS_ADD] = "INSERT INTO aliases(address, target) VALUES (?1, ?2)",
    [ST_ALIAS_DEL_ONE] = "DELETE FROM aliases WHERE address = ?1 AND target = ?2",
    [ST_ALIAS_DEL_ALL] = "DELETE FROM aliases WHERE address = ?1",
    [ST_ALIAS_DEL_TO] = "DELETE FROM aliases WHERE target = ?1",
    [ST_ALIAS_DEL_DOMAIN] = "DELETE FROM aliases"
                            " WHERE substr(address, instr(address, '@') + 1) = ?1",
    [ST_ALIAS_LIST_ALL] = "SELECT address, target FROM aliases ORDER BY address, target",
    [ST_ALIAS_LIST_DOMAIN] = "SELECT address, target FROM aliases"
                             " WHERE substr(address, instr(address, '@') + 1) = ?1"
                             " ORDER BY address, target",
    [ST_USER_GET_SCRAM] = "SELECT scram_salt, scram_iterations, scram_stored_key,"
                          " scram_server_key FROM mailboxes WHERE address = ?1",
    [ST_USER_SET_SCRAM] = "UPDATE mailboxes SET scram_salt = ?3, scram_iterations = ?4,"
                          " scram_stored_key = ?5, scram_server_key = ?6"
                          " WHERE address = ?1 AND password_hash = ?2"
                          " AND scram_stored_key IS NULL",
    [ST_USER_GET_APOP] = "SELECT apop_secret FROM mailboxes WHERE address = ?1",
    [ST_USER_SET_CREDENTIALS] = "UPDATE mailboxes SET password_hash = ?2,"
                                " scram_salt = ?3, scram_iterations = ?4,"
                                " scram_stored_key = ?5, scram_server_key = ?6,"
                                " apop_secret = ?7 WHERE address = ?1",
    [ST_INSTANCE_SECRET] = "SELECT value FROM secrets WHERE name = 'instance'",
    [ST_USER_SET_LOCKED] = "UPDATE mailboxes SET locked = ?2 WHERE address = ?1",
    [ST_USER_RENAME] = "UPDATE mailboxes SET address = ?2,"
                       " domain_id = (SELECT id FROM domains WHERE name = ?3)"
                       " WHERE address = ?1",
    /* A mailbox moved into another domain counts there as created last
     * (ST_USER_FIRST_IN_DOMAIN: postmaster@ goes to the oldest). */
    [ST_USER_RENUMBER] = "UPDATE mailboxes SET id = (SELECT max(id) + 1 FROM mailboxes)"
                         " WHERE address = ?1",
    /* OR IGNORE: an alias that already names the new address keeps that
     * row; its row for the old one goes with ST_ALIAS_DEL_TO. */
    [ST_ALIAS_RETARGET] = "UPDATE OR IGNORE aliases SET target = ?2 WHERE target = ?1",
    /* Copying the directory elsewhere (transfer.h): creation order. */
    [ST_DOMAIN_EXPORT] = "SELECT name, created FROM domains ORDER BY id",
    [ST_USER_EXPORT] = "SELECT " USER_COLUMNS " FROM mailboxes ORDER BY id",
};

struct sq_dir {
	struct dir base; /* first: the public handle */
	sqlite3 *db;
	sqlite3_stmt *stmt[ST_COUNT];
};

static struct sq_dir *sq(struct dir *dir)
{
	return (struct sq_dir *)dir;
}

static int db_fail(struct sq_dir *dir, const char **error_r, const char *what)
{
	return dir_fail(&dir->base, error_r, "directory: %s: %s", what, sqlite3_errmsg(dir->db));
}

/* A statement ready to bind: reset from its last use. */
static sqlite3_stmt *stmt_get(struct sq_dir *dir, enum dir_stmt which)
{
	sqlite3_stmt *st = dir->stmt[which];

	sqlite3_reset(st);
	sqlite3_clear_bindings(st);
	return st;
}

static void bind_text(sqlite3_stmt *st, int i, const char *s)
{
	sqlite3_bind_text(st, i, s, -1, SQLITE_STATIC);
}

/* Several statements that must happen together or not at all. IMMEDIATE
 * takes the write lock at once, so a check made inside the transaction
 * still holds when the change is written. */
static int tx_begin(struct sq_dir *dir, const char **error_r)
{
	if (sqlite3_exec(dir->db, "BEGIN IMMEDIATE", NULL, NULL, NULL) != SQLITE_OK)
		return db_fail(dir, error_r, "begin");
	return 0;
}

static int tx_commit(struct sq_dir *dir, const char **error_r)
{
	if (sqlite3_exec(dir->db, "COMMIT", NULL, NULL, NULL) != SQLITE_OK) {
		db_fail(dir, error_r, "commit");
		sqlite3_exec(dir->db, "ROLLBACK", NULL, NULL, NULL);
		return -1;
	}
	return 0;
}

/* Roll back and return -1; *error_r was set by whoever failed. */
static int tx_abort(struct sq_dir *dir)
{
	sqlite3_exec(dir->db, "ROLLBACK", NULL, NULL, NULL);
	return -1;
}

static int sq_tx_begin(struct dir *base, const char **error_r)
{
	return tx_begin(sq(base), error_r);
}

static int sq_tx_commit(struct dir *base, const char **error_r)
{
	return tx_commit(sq(base), error_r);
}

static void sq_tx_abort(struct dir *base)
{
	tx_abort(sq(base));
}

/* ---- open and close ---- */

static int create_schema(struct sq_dir *dir, const char **error_r)
{
	sqlite3_stmt *st;
	int version, rc;

	if (sqlite3_exec(dir->db, "BEGIN IMMEDIATE", NULL, NULL, NULL) != SQLITE_OK)
		return db_fail(dir, error_r, "begin");
	rc = sqlite3_prepare_v2(dir->db, "PRAGMA user_version", -1, &st, NULL);
	if (rc != SQLITE_OK || sqlite3_step(st) != SQLITE_ROW) {
		sqlite3_finalize(st);
		db_fail(dir, error_r, "reading the schema version");
		sqlite3_exec(dir->db, "ROLLBACK", NULL, NULL, NULL);
		return -1;
	}
	version = sqlite3_column_int(st, 0);
	sqlite3_finalize(st);

	if (version == 0 && sqlite3_exec(dir->db, schema_v1, NULL, NULL, NULL) != SQLITE_OK) {
		db_fail(dir, error_r, "creating the schema");
		sqlite3_exec(dir->db, "ROLLBACK", NULL, NULL, NULL);
		return -1;
	}
	/* Migrations run in order, in the same transaction as the check, so
	 * two processes opening an old database do not both migrate it. */
	if (version < 2 && sqlite3_exec(dir->db, migrate_v2, NULL, NULL, NULL) != SQLITE_OK) {
		db_fail(dir, error_r, "migrating the schema to version 2");
		sqlite3_exec(dir->db, "ROLLBACK", NULL, NULL, NULL);
		return -1;
	}
	if (version < 3 && sqlite3_exec(dir->db, migrate_v3, NULL, NULL, NULL) != SQLITE_OK) {
		db_fail(dir, error_r, "migrating the schema to version 3");
		sqlite3_exec(dir->db, "ROLLBACK", NULL, NULL, NULL);
		return -1;
	}
	if (version > DIR_SCHEMA_VERSION) {
		sqlite3_exec(dir->db, "ROLLBACK", NULL, NULL, NULL);
		return dir_fail(&dir->base, error_r,
		                "directory: schema version %d is newer than this pillar (%d)",
		                version, DIR_SCHEMA_VERSION);
	}
	if (sqlite3_exec(dir->db, "COMMIT", NULL, NULL, NULL) != SQLITE_OK) {
		db_fail(dir, error_r, "commit");
		sqlite3_exec(dir->db, "ROLLBACK", NULL, NULL, NULL);
		return -1;
	}
	return 0;
}

static int open_db(struct sq_dir *dir, const char *path, bool create, const char **error_r)
{
	int flags = SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX;

	if (create) {
		/* Create the file ourselves so it is 0600 from the first moment:
		 * it holds password hashes. SQLite gives the -wal and -shm
		 * files the same mode. */
		int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);

		if (fd < 0)
			return dir_fail(&dir->base, error_r, "directory: cannot create %s: %s",
			                path, strerror(errno));
		close(fd);
	} else if (access(path, F_OK) < 0) {
		return dir_fail(&dir->base, error_r, "directory: %s: %s (run 'pillar init'?)", path,
		                strerror(errno));
	}
	if (sqlite3_open_v2(path, &dir->db, flags, NULL) != SQLITE_OK) {
		if (dir->db == NULL)
			return dir_fail(&dir->base, error_r,
			                "directory: cannot open %s: out of memory", path);
		return dir_fail(&dir->base, error_r, "directory: cannot open %s: %s", path,
		                sqlite3_errmsg(dir->db));
	}
	sqlite3_extended_result_codes(dir->db, 1);
	sqlite3_busy_timeout(dir->db, DIR_BUSY_TIMEOUT_MS);
	if (sqlite3_exec(dir->db, "PRAGMA foreign_keys = ON", NULL, NULL, NULL) != SQLITE_OK)
		return db_fail(dir, error_r, "enabling foreign keys");
	/* WAL lets the server's readers go on while an admin command writes. */
	if (sqlite3_exec(dir->db, "PRAGMA journal_mode = WAL", NULL, NULL, NULL) != SQLITE_OK)
		return db_fail(dir, error_r, "enabling WAL");
	return 0;
}

static void sq_close(struct dir *base);

static int sq_open(const struct config *cfg, bool create, struct dir **dir_r, const char **error_r)
{
	static __thread char open_err[DIR_ERROR_MAX];
	struct sq_dir *dir;
	char *path;

	dir = xcalloc(1, sizeof(*dir));
	path = config_sqlite_path(cfg);
	if (open_db(dir, path, create, error_r) < 0)
		goto fail;
	if (create_schema(dir, error_r) < 0)
		goto fail;
	for (int i = 0; i < ST_COUNT; i++) {
		if (sqlite3_prepare_v3(dir->db, stmt_sql[i], -1, SQLITE_PREPARE_PERSISTENT,
		                       &dir->stmt[i], NULL) != SQLITE_OK) {
			db_fail(dir, error_r, "preparing a query (is the schema damaged?)");
			goto fail;
		}
	}
	free(path);
	*dir_r = &dir->base;
	return 0;
fail:
	/* The error lives in dir, which is about to go. */
	snprintf(open_err, sizeof(open_err), "%s", *error_r);
	*error_r = open_err;
	free(path);
	sq_close(&dir->base);
	return -1;
}

static void sq_close(struct dir *base)
{
	struct sq_dir *dir = sq(base);

	for (int i = 0; i < ST_COUNT; i++)
		sqlite3_finalize(dir->stmt[i]);
	sqlite3_close(dir->db);
	free(dir);
}

/* ---- domains ---- */

static int sq_domain_exists(struct dir *base, const char *name, const char **error_r)
{
	struct sq_dir *dir = sq(base);
	sqlite3_stmt *st;
	int rc;

	st = stmt_get(dir, ST_DOMAIN_EXISTS);
	bind_text(st, 1, name);
	rc = sqlite3_step(st);
	sqlite3_reset(st);
	if (rc == SQLITE_ROW)
		return 1;
	if (rc == SQLITE_DONE)
		return 0;
	return db_fail(dir, error_r, "looking up a domain");
}

static int sq_domain_add(struct dir *base, const char *name, const char **error_r)
{
	struct sq_dir *dir = sq(base);
	sqlite3_stmt *st;
	int rc;

	st = stmt_get(dir, ST_DOMAIN_ADD);
	bind_text(st, 1, name);
	sqlite3_bind_int64(st, 2, (sqlite3_int64)time(NULL));
	rc = sqlite3_step(st);
	sqlite3_reset(st);
	if (rc == SQLITE_DONE)
		return 0;
	if ((rc & 0xff) == SQLITE_CONSTRAINT)
		return dir_fail(&dir->base, error_r, "domain %s already exists", name);
	return db_fail(dir, error_r, "adding a domain");
}

static int sq_domain_del(struct dir *base, const char *name, const char **error_r)
{
	struct sq_dir *dir = sq(base);
	sqlite3_stmt *st;
	sqlite3_int64 users;
	int rc;

	if (tx_begin(dir, error_r) < 0)
		return -1;
	st = stmt_get(dir, ST_DOMAIN_COUNT_USERS);
	bind_text(st, 1, name);
	rc = sqlite3_step(st);
	users = rc == SQLITE_ROW ? sqlite3_column_int64(st, 0) : 0;
	sqlite3_reset(st);
	if (rc != SQLITE_ROW) {
		db_fail(dir, error_r, "counting mailboxes");
		return tx_abort(dir);
	}
	if (users > 0) {
		dir_fail(&dir->base, error_r, "domain %s still has %lld mailbox%s", name,
		         (long long)users, users == 1 ? "" : "es");
		return tx_abort(dir);
	}

	/* Its aliases go with it: they could never deliver again, and a
	 * domain added later under the same name must start empty. */
	st = stmt_get(dir, ST_ALIAS_DEL_DOMAIN);
	bind_text(st, 1, name);
	rc = sqlite3_step(st);
	sqlite3_reset(st);
	if (rc != SQLITE_DONE) {
		db_fail(dir, error_r, "deleting the domain's aliases");
		return tx_abort(dir);
	}

	st = stmt_get(dir, ST_DOMAIN_DEL);
	bind_text(st, 1, name);
	rc = sqlite3_step(st);
	sqlite3_reset(st);
	if ((rc & 0xff) == SQLITE_CONSTRAINT) {
		dir_fail(&dir->base, error_r, "domain %s still has mailboxes", name);
		return tx_abort(dir);
	}
	if (rc != SQLITE_DONE) {
		db_fail(dir, error_r, "deleting a domain");
		return tx_abort(dir);
	}
	if (sqlite3_changes(dir->db) == 0) {
		dir_fail(&dir->base, error_r, "no such domain %s", name);
		return tx_abort(dir);
	}
	return tx_commit(dir, error_r);
}

static int sq_domain_list(struct dir *base,
                          void (*fn)(void *ctx, const char *domain, uint64_t mailboxes), void *ctx,
                          const char **error_r)
{
	struct sq_dir *dir = sq(base);
	sqlite3_stmt *st = stmt_get(dir, ST_DOMAIN_LIST);
	int rc;

	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		const char *name = (const char *)sqlite3_column_text(st, 0);
		sqlite3_int64 n = sqlite3_column_int64(st, 1);

		fn(ctx, name != NULL ? name : "", n > 0 ? (uint64_t)n : 0);
	}
	sqlite3_reset(st);
	if (rc != SQLITE_DONE)
		return db_fail(dir, error_r, "listing domains");
	return 0;
}

/* ---- mailboxes ---- */

static int alias_exists(struct sq_dir *dir, const char *addr, const char **error_r);
static int user_row(struct sq_dir *dir, enum dir_stmt which, const char *key, struct dir_user *out,
                    const char **error_r);

static int sq_user_add(struct dir *base, const char *addr, const char *password_hash,
                       const char **error_r)
{
	struct sq_dir *dir = sq(base);
	const char *domain;
	sqlite3_stmt *st;
	int rc;

	domain = strchr(addr, '@') + 1;
	/* An address is a mailbox or an alias, never both: which one would
	 * get the mail would otherwise be a guess. */
	rc = alias_exists(dir, addr, error_r);
	if (rc != 0)
		return rc < 0 ? -1 : dir_fail(&dir->base, error_r, "%s is an alias", addr);
	st = stmt_get(dir, ST_USER_ADD);
	bind_text(st, 1, addr);
	bind_text(st, 2, password_hash);
	sqlite3_bind_int64(st, 3, (sqlite3_int64)time(NULL));
	bind_text(st, 4, domain);
	rc = sqlite3_step(st);
	sqlite3_reset(st);
	if ((rc & 0xff) == SQLITE_CONSTRAINT)
		return dir_fail(&dir->base, error_r, "mailbox %s already exists", addr);
	if (rc != SQLITE_DONE)
		return db_fail(dir, error_r, "adding a mailbox");
	/* The INSERT ... SELECT inserts nothing when the domain is missing. */
	if (sqlite3_changes(dir->db) == 0)
		return dir_fail(&dir->base, error_r, "no such domain %s", domain);
	return 0;
}

/* Run a one-address UPDATE or DELETE; no row changed means no such mailbox. */
static int user_change(struct sq_dir *dir, sqlite3_stmt *st, const char *addr, const char *what,
                       const char **error_r)
{
	int rc = sqlite3_step(st);

	sqlite3_reset(st);
	if (rc != SQLITE_DONE)
		return db_fail(dir, error_r, what);
	if (sqlite3_changes(dir->db) == 0)
		return dir_fail(&dir->base, error_r, "no such mailbox %s", addr);
	return 0;
}

static int sq_user_del(struct dir *base, const char *addr, const char **error_r)
{
	struct sq_dir *dir = sq(base);
	sqlite3_stmt *st;
	int rc;

	if (tx_begin(dir, error_r) < 0)
		return -1;
	/* Alias rows that name the mailbox go in the same transaction: an
	 * alias must never send mail to a mailbox that no longer exists (or
	 * to a different one created later under the same address). */
	st = stmt_get(dir, ST_ALIAS_DEL_TO);
	bind_text(st, 1, addr);
	rc = sqlite3_step(st);
	sqlite3_reset(st);
	if (rc != SQLITE_DONE) {
		db_fail(dir, error_r, "deleting aliases of a mailbox");
		return tx_abort(dir);
	}
	st = stmt_get(dir, ST_USER_DEL);
	bind_text(st, 1, addr);
	if (user_change(dir, st, addr, "deleting a mailbox", error_r) < 0)
		return tx_abort(dir);
	return tx_commit(dir, error_r);
}

static int sq_user_set_quota(struct dir *base, const char *addr, uint64_t bytes, uint64_t messages,
                             const char **error_r)
{
	struct sq_dir *dir = sq(base);
	sqlite3_stmt *st;

	st = stmt_get(dir, ST_USER_SET_QUOTA);
	bind_text(st, 1, addr);
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
	st = stmt_get(dir, ST_USER_SET_PASSWORD);
	bind_text(st, 1, addr);
	bind_text(st, 2, password_hash);
	return user_change(dir, st, addr, "setting a password", error_r);
}

static int sq_user_set_locked(struct dir *base, const char *addr, bool locked, const char **error_r)
{
	struct sq_dir *dir = sq(base);
	sqlite3_stmt *st;

	st = stmt_get(dir, ST_USER_SET_LOCKED);
	bind_text(st, 1, addr);
	sqlite3_bind_int(st, 2, locked ? 1 : 0);
	return user_change(dir, st, addr, locked ? "locking a mailbox" : "unlocking a mailbox",
	                   error_r);
}

/* Run a prepared statement bound to (from, to); -1 on error. */
static int step_pair(struct sq_dir *dir, enum dir_stmt which, const char *from, const char *to,
                     const char *what, const char **error_r)
{
	sqlite3_stmt *st = stmt_get(dir, which);
	int rc;

	bind_text(st, 1, from);
	if (to != NULL)
		bind_text(st, 2, to);
	rc = sqlite3_step(st);
	sqlite3_reset(st);
	return rc == SQLITE_DONE ? 0 : db_fail(dir, error_r, what);
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
	if (tx_begin(dir, error_r) < 0)
		return -1;
	r = sq_domain_exists(base, to_domain, error_r);
	if (r <= 0) {
		if (r == 0)
			dir_fail(&dir->base, error_r, "domain %s is not local", to_domain);
		return tx_abort(dir);
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
		return tx_abort(dir);
	}
	st = stmt_get(dir, ST_USER_RENAME);
	bind_text(st, 1, from);
	bind_text(st, 2, to);
	bind_text(st, 3, to_domain);
	if (user_change(dir, st, from, "renaming a mailbox", error_r) < 0)
		return tx_abort(dir);
	if (strcmp(from_domain, to_domain) != 0 &&
	    step_pair(dir, ST_USER_RENUMBER, to, NULL, "renaming a mailbox", error_r) < 0)
		return tx_abort(dir);
	if (step_pair(dir, ST_ALIAS_RETARGET, from, to, "updating aliases", error_r) < 0 ||
	    step_pair(dir, ST_ALIAS_DEL_TO, from, NULL, "updating aliases", error_r) < 0)
		return tx_abort(dir);
	return tx_commit(dir, error_r);
}

static int sq_user_touch_login(struct dir *base, const char *addr, int64_t when,
                               const char **error_r)
{
	struct sq_dir *dir = sq(base);
	sqlite3_stmt *st;

	st = stmt_get(dir, ST_USER_TOUCH);
	bind_text(st, 1, addr);
	sqlite3_bind_int64(st, 2, (sqlite3_int64)when);
	return user_change(dir, st, addr, "recording a login", error_r);
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

	st = stmt_get(dir, ST_USER_GET_SCRAM);
	bind_text(st, 1, addr);
	rc = sqlite3_step(st);
	if (rc == SQLITE_ROW) {
		const void *salt = sqlite3_column_blob(st, 0);
		int salt_len = sqlite3_column_bytes(st, 0);
		sqlite3_int64 iter = sqlite3_column_int64(st, 1);
		const void *stored = sqlite3_column_blob(st, 2);
		int stored_len = sqlite3_column_bytes(st, 2);
		const void *server = sqlite3_column_blob(st, 3);
		int server_len = sqlite3_column_bytes(st, 3);

		/* Keys that are missing or of the wrong size count as none:
		 * the next password login recomputes them. */
		if (salt != NULL && salt_len > 0 && salt_len <= DIR_SCRAM_SALT_MAX && iter > 0 &&
		    iter <= UINT32_MAX && stored != NULL && stored_len == DIR_SCRAM_KEY_LEN &&
		    server != NULL && server_len == DIR_SCRAM_KEY_LEN) {
			memcpy(out->salt, salt, (size_t)salt_len);
			out->salt_len = (size_t)salt_len;
			out->iterations = (uint32_t)iter;
			memcpy(out->stored_key, stored, DIR_SCRAM_KEY_LEN);
			memcpy(out->server_key, server, DIR_SCRAM_KEY_LEN);
			ret = 1;
		}
	} else if (rc != SQLITE_DONE) {
		ret = db_fail(dir, error_r, "looking up SCRAM keys");
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

	st = stmt_get(dir, ST_USER_SET_SCRAM);
	bind_text(st, 1, addr);
	bind_text(st, 2, password_hash);
	bind_scram(st, 3, scram);
	rc = sqlite3_step(st);
	sqlite3_reset(st);
	if (rc != SQLITE_DONE)
		return db_fail(dir, error_r, "storing SCRAM keys");
	return sqlite3_changes(dir->db) > 0 ? 1 : 0;
}

static int sq_user_get_apop(struct dir *base, const char *addr, char *secret, size_t size,
                            const char **error_r)
{
	struct sq_dir *dir = sq(base);
	sqlite3_stmt *st;
	int rc, ret = 0;

	st = stmt_get(dir, ST_USER_GET_APOP);
	bind_text(st, 1, addr);
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
		ret = db_fail(dir, error_r, "looking up an APOP secret");
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

	st = stmt_get(dir, ST_USER_SET_CREDENTIALS);
	bind_text(st, 1, addr);
	bind_text(st, 2, password_hash);
	bind_scram(st, 3, scram);
	if (apop_secret != NULL)
		bind_text(st, 7, apop_secret);
	else
		sqlite3_bind_null(st, 7);
	return user_change(dir, st, addr, "setting a password", error_r);
}

static int sq_instance_secret(struct dir *base, uint8_t out[DIR_INSTANCE_SECRET_LEN],
                              const char **error_r)
{
	struct sq_dir *dir = sq(base);
	sqlite3_stmt *st = stmt_get(dir, ST_INSTANCE_SECRET);
	int rc = sqlite3_step(st), ret = 0;

	if (rc == SQLITE_ROW && sqlite3_column_bytes(st, 0) == DIR_INSTANCE_SECRET_LEN &&
	    sqlite3_column_blob(st, 0) != NULL)
		memcpy(out, sqlite3_column_blob(st, 0), DIR_INSTANCE_SECRET_LEN);
	else if (rc == SQLITE_ROW || rc == SQLITE_DONE)
		ret = dir_fail(&dir->base, error_r,
		               "directory: the instance secret is missing or damaged");
	else
		ret = db_fail(dir, error_r, "reading the instance secret");
	sqlite3_reset(st);
	return ret;
}

/* Fill out from a row of USER_COLUMNS. Returns -1 if a value does not fit. */
static int row_to_user(sqlite3_stmt *st, struct dir_user *out)
{
	const char *addr = (const char *)sqlite3_column_text(st, 0);
	const char *hash = (const char *)sqlite3_column_text(st, 1);
	sqlite3_int64 v;

	memset(out, 0, sizeof(*out));
	if (addr == NULL || strlen(addr) > DIR_ADDRESS_MAX)
		return -1;
	if (hash == NULL || strlen(hash) > DIR_HASH_MAX)
		return -1;
	memcpy(out->address, addr, strlen(addr) + 1);
	memcpy(out->password_hash, hash, strlen(hash) + 1);
	v = sqlite3_column_int64(st, 2);
	out->quota_bytes = v > 0 ? (uint64_t)v : 0;
	v = sqlite3_column_int64(st, 3);
	out->quota_messages = v > 0 ? (uint64_t)v : 0;
	out->locked = sqlite3_column_int64(st, 4) != 0;
	out->created = sqlite3_column_int64(st, 5);
	out->last_login = sqlite3_column_int64(st, 6);
	return 0;
}

static int sq_user_lookup(struct dir *base, const char *addr, struct dir_user *out,
                          const char **error_r)
{
	struct sq_dir *dir = sq(base);
	sqlite3_stmt *st;
	int rc, ret;

	st = stmt_get(dir, ST_USER_LOOKUP);
	bind_text(st, 1, addr);
	rc = sqlite3_step(st);
	if (rc == SQLITE_ROW)
		ret = row_to_user(st, out) == 0
		          ? 1
		          : dir_fail(&dir->base, error_r, "mailbox %s has a malformed row", addr);
	else if (rc == SQLITE_DONE)
		ret = 0;
	else
		ret = db_fail(dir, error_r, "looking up a mailbox");
	sqlite3_reset(st);
	return ret;
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
		st = stmt_get(dir, ST_USER_LIST_DOMAIN);
		bind_text(st, 1, domain);
	} else {
		st = stmt_get(dir, ST_USER_LIST_ALL);
	}
	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		/* A row too long to represent is skipped, not fatal: listing
		 * must still show the rest. */
		if (row_to_user(st, &user) == 0)
			fn(ctx, &user);
	}
	sqlite3_reset(st);
	if (rc != SQLITE_DONE)
		return db_fail(dir, error_r, "listing mailboxes");
	return 0;
}

/* ---- recipients and aliases ---- */

/* 1 when addr has alias rows, 0 not, -1 error. */
static int alias_exists(struct sq_dir *dir, const char *addr, const char **error_r)
{
	sqlite3_stmt *st = stmt_get(dir, ST_ALIAS_TARGETS);
	int rc;

	bind_text(st, 1, addr);
	rc = sqlite3_step(st);
	sqlite3_reset(st);
	if (rc == SQLITE_ROW)
		return 1;
	if (rc == SQLITE_DONE)
		return 0;
	return db_fail(dir, error_r, "looking up an alias");
}

/* One-row lookup of a user with a prepared statement bound to one text. */
static int user_row(struct sq_dir *dir, enum dir_stmt which, const char *key, struct dir_user *out,
                    const char **error_r)
{
	sqlite3_stmt *st = stmt_get(dir, which);
	int rc, ret;

	bind_text(st, 1, key);
	rc = sqlite3_step(st);
	if (rc == SQLITE_ROW)
		ret = row_to_user(st, out) == 0
		          ? 1
		          : dir_fail(&dir->base, error_r, "mailbox of %s has a malformed row", key);
	else if (rc == SQLITE_DONE)
		ret = 0;
	else
		ret = db_fail(dir, error_r, "looking up a mailbox");
	sqlite3_reset(st);
	return ret;
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
	sqlite3_stmt *st = stmt_get(dir, ST_DOMAIN_FIRST);
	int rc = sqlite3_step(st), ret = 0;

	if (rc == SQLITE_ROW) {
		const char *name = (const char *)sqlite3_column_text(st, 0);

		if (name != NULL && strlen(name) <= DIR_DOMAIN_MAX) {
			memcpy(out, name, strlen(name) + 1);
			ret = 1;
		}
	} else if (rc != SQLITE_DONE) {
		ret = db_fail(dir, error_r, "listing domains");
	}
	sqlite3_reset(st);
	return ret;
}

static int sq_alias_insert(struct dir *base, const char *addr, const char *to, const char **error_r)
{
	struct sq_dir *dir = sq(base);
	sqlite3_stmt *st = stmt_get(dir, ST_ALIAS_ADD);
	int rc;

	bind_text(st, 1, addr);
	bind_text(st, 2, to);
	rc = sqlite3_step(st);
	sqlite3_reset(st);
	if ((rc & 0xff) == SQLITE_CONSTRAINT)
		return dir_fail(&dir->base, error_r, "alias %s already points to %s", addr, to);
	if (rc != SQLITE_DONE)
		return db_fail(dir, error_r, "adding an alias");
	return 0;
}

/* The targets of alias addr, in the order they were added. */
static int sq_alias_targets(struct dir *base, const char *addr,
                            char (*targets)[DIR_ADDRESS_MAX + 1], size_t max, size_t *n_r,
                            const char **error_r)
{
	struct sq_dir *dir = sq(base);
	sqlite3_stmt *st = stmt_get(dir, ST_ALIAS_TARGETS);
	size_t n = 0;
	int rc;

	*n_r = 0;
	bind_text(st, 1, addr);
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
		return db_fail(dir, error_r, "looking up an alias");
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
		st = stmt_get(dir, ST_ALIAS_DEL_ONE);
		bind_text(st, 2, target);
	} else {
		st = stmt_get(dir, ST_ALIAS_DEL_ALL);
	}
	bind_text(st, 1, addr);
	rc = sqlite3_step(st);
	sqlite3_reset(st);
	if (rc != SQLITE_DONE)
		return db_fail(dir, error_r, "deleting an alias");
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
		st = stmt_get(dir, ST_ALIAS_LIST_DOMAIN);
		bind_text(st, 1, domain);
	} else {
		st = stmt_get(dir, ST_ALIAS_LIST_ALL);
	}
	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		const char *a = (const char *)sqlite3_column_text(st, 0);
		const char *t = (const char *)sqlite3_column_text(st, 1);

		fn(ctx, a != NULL ? a : "", t != NULL ? t : "");
	}
	sqlite3_reset(st);
	if (rc != SQLITE_DONE)
		return db_fail(dir, error_r, "listing aliases");
	return 0;
}

/* ---- copying the directory elsewhere (transfer.h) ---- */

static int sq_export_domains(struct dir *base,
                             void (*fn)(void *ctx, const char *domain, int64_t created), void *ctx,
                             const char **error_r)
{
	struct sq_dir *dir = sq(base);
	sqlite3_stmt *st = stmt_get(dir, ST_DOMAIN_EXPORT);
	int rc;

	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		const char *name = (const char *)sqlite3_column_text(st, 0);

		if (name != NULL)
			fn(ctx, name, sqlite3_column_int64(st, 1));
	}
	sqlite3_reset(st);
	if (rc != SQLITE_DONE)
		return db_fail(dir, error_r, "listing domains");
	return 0;
}

static int sq_export_users(struct dir *base, void (*fn)(void *ctx, const struct dir_user *user),
                           void *ctx, const char **error_r)
{
	struct sq_dir *dir = sq(base);
	sqlite3_stmt *st = stmt_get(dir, ST_USER_EXPORT);
	struct dir_user user;
	int rc;

	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		if (row_to_user(st, &user) < 0) {
			sqlite3_reset(st);
			return dir_fail(&dir->base, error_r, "a mailbox has a malformed row");
		}
		fn(ctx, &user);
	}
	sqlite3_reset(st);
	if (rc != SQLITE_DONE)
		return db_fail(dir, error_r, "listing mailboxes");
	return 0;
}

/* A source only: copies go from the embedded database to a shared one. */
static const struct dir_transfer_ops sq_transfer = {
    .domains = sq_export_domains,
    .users = sq_export_users,
};

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
