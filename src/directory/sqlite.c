/* The directory on SQLite: <state_dir>/directory.db. See directory.h; the
 * parts of the backend: sqlite_internal.h.
 *
 * Every query is a statement prepared once at open with bound parameters;
 * no SQL is ever built from data. The schema carries its version in
 * PRAGMA user_version so later releases can migrate it in place.
 *
 * Arguments arrive normalized and checked (directory.c); the backend only
 * runs the queries. This file: the schema, the statements, opening and
 * closing, transactions. */
#include "directory/sqlite_internal.h"

#include "core/config.h"
#include "core/util.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
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
    [ST_USER_LOOKUP] = "SELECT " DIR_USER_COLUMNS " FROM mailboxes WHERE address = ?1",
    /* DIR_LAST_LOGIN_STEP_S: written when a minute old, or from the future
     * (the clock went back). */
    [ST_USER_TOUCH] = "UPDATE mailboxes SET last_login = ?2 WHERE address = ?1"
                      " AND (last_login > ?2 OR last_login <= ?2 - " DIR_LAST_LOGIN_STEP_SQL ")",
    [ST_USER_LIST_ALL] = "SELECT " DIR_USER_COLUMNS " FROM mailboxes ORDER BY address",
    [ST_USER_LIST_DOMAIN] = "SELECT m.address, m.password_hash, m.quota_bytes,"
                            " m.quota_messages, m.locked, m.created, m.last_login"
                            " FROM mailboxes m JOIN domains d ON m.domain_id = d.id"
                            " WHERE d.name = ?1 ORDER BY m.address",
    [ST_USER_SET_QUOTA] = "UPDATE mailboxes SET quota_bytes = ?2, quota_messages = ?3"
                          " WHERE address = ?1",
    /* RFC 5321 §4.5.1 postmaster: the domain's first mailbox. Ids only
     * grow, so the lowest is the oldest still there. */
    [ST_USER_FIRST_IN_DOMAIN] = "SELECT " DIR_USER_COLUMNS " FROM mailboxes WHERE domain_id ="
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
    [ST_USER_EXPORT] = "SELECT " DIR_USER_COLUMNS " FROM mailboxes ORDER BY id",
};

int sq_fail(struct sq_dir *dir, const char **error_r, const char *what)
{
	return dir_fail(&dir->base, error_r, "directory: %s: %s", what, sqlite3_errmsg(dir->db));
}

sqlite3_stmt *sq_stmt(struct sq_dir *dir, enum sq_stmt which)
{
	sqlite3_stmt *st = dir->stmt[which];

	sqlite3_reset(st);
	sqlite3_clear_bindings(st);
	return st;
}

/* ---- transactions ---- */

int sq_begin(struct sq_dir *dir, const char **error_r)
{
	if (sqlite3_exec(dir->db, "BEGIN IMMEDIATE", NULL, NULL, NULL) != SQLITE_OK)
		return sq_fail(dir, error_r, "begin");
	return 0;
}

int sq_commit(struct sq_dir *dir, const char **error_r)
{
	if (sqlite3_exec(dir->db, "COMMIT", NULL, NULL, NULL) != SQLITE_OK) {
		sq_fail(dir, error_r, "commit");
		sqlite3_exec(dir->db, "ROLLBACK", NULL, NULL, NULL);
		return -1;
	}
	return 0;
}

int sq_rollback(struct sq_dir *dir)
{
	sqlite3_exec(dir->db, "ROLLBACK", NULL, NULL, NULL);
	return -1;
}

int sq_tx_begin(struct dir *base, const char **error_r)
{
	return sq_begin(sq(base), error_r);
}

int sq_tx_commit(struct dir *base, const char **error_r)
{
	return sq_commit(sq(base), error_r);
}

void sq_tx_abort(struct dir *base)
{
	sq_rollback(sq(base));
}

/* ---- open and close ---- */

static int create_schema(struct sq_dir *dir, const char **error_r)
{
	sqlite3_stmt *st;
	int version, rc;

	if (sqlite3_exec(dir->db, "BEGIN IMMEDIATE", NULL, NULL, NULL) != SQLITE_OK)
		return sq_fail(dir, error_r, "begin");
	rc = sqlite3_prepare_v2(dir->db, "PRAGMA user_version", -1, &st, NULL);
	if (rc != SQLITE_OK || sqlite3_step(st) != SQLITE_ROW) {
		sqlite3_finalize(st);
		sq_fail(dir, error_r, "reading the schema version");
		sqlite3_exec(dir->db, "ROLLBACK", NULL, NULL, NULL);
		return -1;
	}
	version = sqlite3_column_int(st, 0);
	sqlite3_finalize(st);

	if (version == 0 && sqlite3_exec(dir->db, schema_v1, NULL, NULL, NULL) != SQLITE_OK) {
		sq_fail(dir, error_r, "creating the schema");
		sqlite3_exec(dir->db, "ROLLBACK", NULL, NULL, NULL);
		return -1;
	}
	/* Migrations run in order, in the same transaction as the check, so
	 * two processes opening an old database do not both migrate it. */
	if (version < 2 && sqlite3_exec(dir->db, migrate_v2, NULL, NULL, NULL) != SQLITE_OK) {
		sq_fail(dir, error_r, "migrating the schema to version 2");
		sqlite3_exec(dir->db, "ROLLBACK", NULL, NULL, NULL);
		return -1;
	}
	if (version < 3 && sqlite3_exec(dir->db, migrate_v3, NULL, NULL, NULL) != SQLITE_OK) {
		sq_fail(dir, error_r, "migrating the schema to version 3");
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
		sq_fail(dir, error_r, "commit");
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
		return sq_fail(dir, error_r, "enabling foreign keys");
	/* WAL lets the server's readers go on while an admin command writes. */
	if (sqlite3_exec(dir->db, "PRAGMA journal_mode = WAL", NULL, NULL, NULL) != SQLITE_OK)
		return sq_fail(dir, error_r, "enabling WAL");
	return 0;
}

int sq_open(const struct config *cfg, bool create, struct dir **dir_r, const char **error_r)
{
	struct sq_dir *dir = xcalloc(1, sizeof(*dir));
	char *path = config_sqlite_path(cfg);
	int r;

	/* On failure dir_open closes the half-open dir after copying the
	 * error out of it. */
	*dir_r = &dir->base;
	r = open_db(dir, path, create, error_r);
	if (r == 0)
		r = create_schema(dir, error_r);
	for (int i = 0; i < ST_COUNT && r == 0; i++) {
		if (sqlite3_prepare_v3(dir->db, stmt_sql[i], -1, SQLITE_PREPARE_PERSISTENT,
		                       &dir->stmt[i], NULL) != SQLITE_OK)
			r = sq_fail(dir, error_r, "preparing a query (is the schema damaged?)");
	}
	free(path);
	return r;
}

void sq_close(struct dir *base)
{
	struct sq_dir *dir = sq(base);

	for (int i = 0; i < ST_COUNT; i++)
		sqlite3_finalize(dir->stmt[i]);
	sqlite3_close(dir->db);
	free(dir);
}
