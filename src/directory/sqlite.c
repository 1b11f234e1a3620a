/* The directory on SQLite: <state_dir>/directory.db for the mailboxes and
 * <state_dir>/auth/secrets.db, attached as "auth", for their secrets
 * (directory.h, enum dir_part). The secrets file and its directory belong
 * to auth_as alone: mail workers, which open directory.db, cannot read a
 * password hash even when taken over. See directory.h; the parts of the
 * backend: sqlite_internal.h.
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

/* The schemas this code reads and writes: directory.db's and the
 * secrets file's. */
#define DIR_SCHEMA_VERSION     4
#define SECRETS_SCHEMA_VERSION 1
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

/* The secrets file, version 1: per mailbox what proves and records a
 * login, and the installation's secrets. */
static const char secrets_v1[] = "CREATE TABLE auth.credentials ("
                                 "  address TEXT PRIMARY KEY,"
                                 "  password_hash TEXT NOT NULL,"
                                 "  scram_salt BLOB NULL,"
                                 "  scram_iterations INTEGER NULL,"
                                 "  scram_stored_key BLOB NULL,"
                                 "  scram_server_key BLOB NULL,"
                                 "  apop_secret TEXT NULL,"
                                 "  locked INTEGER NOT NULL DEFAULT 0,"
                                 "  last_login INTEGER NOT NULL DEFAULT 0"
                                 ");"
                                 "CREATE TABLE auth.secrets ("
                                 "  name TEXT PRIMARY KEY,"
                                 "  value BLOB NOT NULL"
                                 ");"
                                 "PRAGMA auth.user_version = 1;";

/* Version 4: the secrets move out to the secrets file. OR REPLACE: a
 * migration cut short may have committed the secrets file and not this
 * one (WAL makes each file's commit atomic, not both together), and then
 * runs again. secure_delete (set by the caller) zeroes the freed pages. */
static const char migrate_v4[] =
    "INSERT OR REPLACE INTO auth.credentials(address, password_hash, scram_salt,"
    "  scram_iterations, scram_stored_key, scram_server_key, apop_secret, locked, last_login)"
    " SELECT address, password_hash, scram_salt, scram_iterations, scram_stored_key,"
    "  scram_server_key, apop_secret, locked, last_login FROM main.mailboxes;"
    "INSERT OR REPLACE INTO auth.secrets(name, value) SELECT name, value FROM main.secrets;"
    "DROP TABLE main.secrets;"
    "ALTER TABLE main.mailboxes DROP COLUMN password_hash;"
    "ALTER TABLE main.mailboxes DROP COLUMN scram_salt;"
    "ALTER TABLE main.mailboxes DROP COLUMN scram_iterations;"
    "ALTER TABLE main.mailboxes DROP COLUMN scram_stored_key;"
    "ALTER TABLE main.mailboxes DROP COLUMN scram_server_key;"
    "ALTER TABLE main.mailboxes DROP COLUMN apop_secret;"
    "ALTER TABLE main.mailboxes DROP COLUMN locked;"
    "ALTER TABLE main.mailboxes DROP COLUMN last_login;"
    "PRAGMA main.user_version = 4;";

/* A mailbox with its secrets, as DIR_USER_COLUMNS: both files open. A row
 * missing on the secrets side reads as no password (it cannot log in). */
#define USER_JOINED                                                                                \
	"SELECT m.address, coalesce(c.password_hash, ''), m.quota_bytes, m.quota_messages,"        \
	" coalesce(c.locked, 0), m.created, coalesce(c.last_login, 0)"                             \
	" FROM mailboxes m LEFT JOIN auth.credentials c ON c.address = m.address"
/* Only one file open (directory.h, dir_open_only). */
#define USER_MAILBOX "SELECT address, '', quota_bytes, quota_messages, 0, created, 0 FROM mailboxes"
#define USER_SECRETS                                                                               \
	"SELECT address, password_hash, 0, 0, locked, 0, last_login FROM auth.credentials"

static const char *const stmt_sql[ST_COUNT] = {
    [ST_DOMAIN_ADD] = "INSERT INTO domains(name, created) VALUES (?1, ?2)",
    [ST_DOMAIN_DEL] = "DELETE FROM domains WHERE name = ?1",
    [ST_DOMAIN_EXISTS] = "SELECT 1 FROM domains WHERE name = ?1",
    [ST_DOMAIN_COUNT_USERS] = "SELECT count(*) FROM mailboxes m JOIN domains d"
                              " ON m.domain_id = d.id WHERE d.name = ?1",
    [ST_DOMAIN_LIST] = "SELECT d.name, count(m.id) FROM domains d"
                       " LEFT JOIN mailboxes m ON m.domain_id = d.id"
                       " GROUP BY d.id ORDER BY d.name",
    [ST_USER_ADD] = "INSERT INTO mailboxes(address, domain_id, created)"
                    " SELECT ?1, id, ?3 FROM domains WHERE name = ?4",
    [ST_CRED_ADD] = "INSERT OR REPLACE INTO auth.credentials(address, password_hash)"
                    " VALUES (?1, ?2)",
    [ST_USER_DEL] = "DELETE FROM mailboxes WHERE address = ?1",
    [ST_CRED_DEL] = "DELETE FROM auth.credentials WHERE address = ?1",
    [ST_USER_SET_PASSWORD] = "UPDATE auth.credentials SET password_hash = ?2,"
                             " scram_salt = NULL, scram_iterations = NULL,"
                             " scram_stored_key = NULL, scram_server_key = NULL,"
                             " apop_secret = NULL"
                             " WHERE address = ?1",
    [ST_USER_LOOKUP] = USER_JOINED " WHERE m.address = ?1",
    /* DIR_LAST_LOGIN_STEP_S: written when a minute old, or from the future
     * (the clock went back). */
    [ST_USER_TOUCH] = "UPDATE auth.credentials SET last_login = ?2 WHERE address = ?1"
                      " AND (last_login > ?2 OR last_login <= ?2 - " DIR_LAST_LOGIN_STEP_SQL ")",
    [ST_USER_LIST_ALL] = USER_JOINED " ORDER BY m.address",
    [ST_USER_LIST_DOMAIN] = USER_JOINED " JOIN domains d ON m.domain_id = d.id"
                                        " WHERE d.name = ?1 ORDER BY m.address",
    [ST_USER_SET_QUOTA] = "UPDATE mailboxes SET quota_bytes = ?2, quota_messages = ?3"
                          " WHERE address = ?1",
    /* RFC 5321 §4.5.1 postmaster: the domain's first mailbox. Ids only
     * grow, so the lowest is the oldest still there. */
    [ST_USER_FIRST_IN_DOMAIN] = USER_JOINED " WHERE m.domain_id ="
                                            " (SELECT id FROM domains WHERE name = ?1)"
                                            " ORDER BY m.id LIMIT 1",
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
                          " scram_server_key FROM auth.credentials WHERE address = ?1",
    [ST_USER_SET_SCRAM] = "UPDATE auth.credentials SET scram_salt = ?3, scram_iterations = ?4,"
                          " scram_stored_key = ?5, scram_server_key = ?6"
                          " WHERE address = ?1 AND password_hash = ?2"
                          " AND scram_stored_key IS NULL",
    [ST_USER_GET_APOP] = "SELECT apop_secret FROM auth.credentials WHERE address = ?1",
    [ST_USER_SET_CREDENTIALS] = "UPDATE auth.credentials SET password_hash = ?2,"
                                " scram_salt = ?3, scram_iterations = ?4,"
                                " scram_stored_key = ?5, scram_server_key = ?6,"
                                " apop_secret = ?7 WHERE address = ?1",
    [ST_INSTANCE_SECRET] = "SELECT value FROM auth.secrets WHERE name = 'instance'",
    [ST_USER_SET_LOCKED] = "UPDATE auth.credentials SET locked = ?2 WHERE address = ?1",
    [ST_USER_RENAME] = "UPDATE mailboxes SET address = ?2,"
                       " domain_id = (SELECT id FROM domains WHERE name = ?3)"
                       " WHERE address = ?1",
    [ST_CRED_RENAME] = "UPDATE auth.credentials SET address = ?2 WHERE address = ?1",
    /* A mailbox moved into another domain counts there as created last
     * (ST_USER_FIRST_IN_DOMAIN: postmaster@ goes to the oldest). */
    [ST_USER_RENUMBER] = "UPDATE mailboxes SET id = (SELECT max(id) + 1 FROM mailboxes)"
                         " WHERE address = ?1",
    /* OR IGNORE: an alias that already names the new address keeps that
     * row; its row for the old one goes with ST_ALIAS_DEL_TO. */
    [ST_ALIAS_RETARGET] = "UPDATE OR IGNORE aliases SET target = ?2 WHERE target = ?1",
    /* Copying the directory elsewhere (transfer.h): creation order. */
    [ST_DOMAIN_EXPORT] = "SELECT name, created FROM domains ORDER BY id",
    [ST_USER_EXPORT] = USER_JOINED " ORDER BY m.id",
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

/* The parts of the directory (enum dir_part) a statement needs. */
static unsigned stmt_needs(enum sq_stmt i)
{
	switch (i) {
	case ST_CRED_ADD:
	case ST_CRED_DEL:
	case ST_CRED_RENAME:
	case ST_USER_SET_PASSWORD:
	case ST_USER_TOUCH:
	case ST_USER_GET_SCRAM:
	case ST_USER_SET_SCRAM:
	case ST_USER_GET_APOP:
	case ST_USER_SET_CREDENTIALS:
	case ST_INSTANCE_SECRET:
	case ST_USER_SET_LOCKED:
		return DIR_SECRETS;
	case ST_USER_LIST_ALL:
	case ST_USER_LIST_DOMAIN:
	case ST_USER_EXPORT:
		return DIR_EVERYTHING;
	case ST_USER_LOOKUP:
		return 0; /* whichever is open: stmt_text */
	default:
		return DIR_MAILBOXES;
	}
}

/* A statement's SQL for the parts open: with one file, a mailbox is read
 * from that file alone. */
static const char *stmt_text(enum sq_stmt i, unsigned parts)
{
	if (parts == DIR_MAILBOXES && i == ST_USER_LOOKUP)
		return USER_MAILBOX " WHERE address = ?1";
	if (parts == DIR_MAILBOXES && i == ST_USER_FIRST_IN_DOMAIN)
		return USER_MAILBOX " WHERE domain_id = (SELECT id FROM domains WHERE name = ?1)"
		                    " ORDER BY id LIMIT 1";
	if (parts == DIR_SECRETS && i == ST_USER_LOOKUP)
		return USER_SECRETS " WHERE address = ?1";
	return stmt_sql[i];
}

/* PRAGMA <schema>.user_version into *version_r ("main" or "auth"). */
static int read_version(struct sq_dir *dir, const char *schema, int *version_r,
                        const char **error_r)
{
	char sql[40];
	sqlite3_stmt *st;
	int rc;

	snprintf(sql, sizeof(sql), "PRAGMA %s.user_version", schema);
	rc = sqlite3_prepare_v2(dir->db, sql, -1, &st, NULL);
	if (rc != SQLITE_OK || sqlite3_step(st) != SQLITE_ROW) {
		sqlite3_finalize(st);
		return sq_fail(dir, error_r, "reading the schema version");
	}
	*version_r = sqlite3_column_int(st, 0);
	sqlite3_finalize(st);
	return 0;
}

/* Run `sql` inside the open transaction; on failure roll it back. */
static int migrate_step(struct sq_dir *dir, const char *sql, const char *what, const char **error_r)
{
	if (sqlite3_exec(dir->db, sql, NULL, NULL, NULL) == SQLITE_OK)
		return 0;
	sq_fail(dir, error_r, what);
	return sq_rollback(dir);
}

/* Check the schemas of what is open and, when everything is, create or
 * migrate them: in one transaction with the check, so two processes
 * opening an old directory do not both migrate it. A process that opens
 * one part only (a worker) never migrates: `pillar serve` has done it
 * before it starts any. */
static int create_schema(struct sq_dir *dir, const char **error_r)
{
	unsigned parts = dir->base.parts;
	int version = DIR_SCHEMA_VERSION, secrets = SECRETS_SCHEMA_VERSION;

	if (sqlite3_exec(dir->db, "BEGIN IMMEDIATE", NULL, NULL, NULL) != SQLITE_OK)
		return sq_fail(dir, error_r, "begin");
	if (((parts & DIR_MAILBOXES) != 0 && read_version(dir, "main", &version, error_r) < 0) ||
	    ((parts & DIR_SECRETS) != 0 && read_version(dir, "auth", &secrets, error_r) < 0))
		return sq_rollback(dir);
	if (version > DIR_SCHEMA_VERSION || secrets > SECRETS_SCHEMA_VERSION) {
		sq_rollback(dir);
		return dir_fail(&dir->base, error_r,
		                "directory: schema version %d/%d is newer than this pillar (%d/%d)",
		                version, secrets, DIR_SCHEMA_VERSION, SECRETS_SCHEMA_VERSION);
	}
	if (version < DIR_SCHEMA_VERSION || secrets < SECRETS_SCHEMA_VERSION) {
		if (parts != DIR_EVERYTHING) {
			sq_rollback(dir);
			return dir_fail(
			    &dir->base, error_r,
			    "directory: schema version %d/%d is older than this pillar's: "
			    "start 'pillar serve', or run 'pillar directory migrate' as root, to "
			    "migrate it",
			    version, secrets);
		}
		if ((secrets == 0 &&
		     migrate_step(dir, secrets_v1, "creating the secrets", error_r) < 0) ||
		    (version == 0 &&
		     migrate_step(dir, schema_v1, "creating the schema", error_r) < 0) ||
		    (version < 2 &&
		     migrate_step(dir, migrate_v2, "migrating the schema to version 2", error_r) <
		         0) ||
		    (version < 3 &&
		     migrate_step(dir, migrate_v3, "migrating the schema to version 3", error_r) <
		         0) ||
		    (version < 4 && migrate_step(dir, migrate_v4,
		                                 "migrating the schema to version 4", error_r) < 0))
			return -1;
	}
	if (sq_commit(dir, error_r) < 0)
		return -1;
	if (version > 0 && version < 4) {
		/* The hashes were in directory.db: rewrite it and empty its log,
		 * so no copy of them is left behind in a free page. */
		if (sqlite3_exec(dir->db, "VACUUM main", NULL, NULL, NULL) != SQLITE_OK ||
		    sqlite3_exec(dir->db, "PRAGMA main.wal_checkpoint(TRUNCATE)", NULL, NULL,
		                 NULL) != SQLITE_OK)
			return sq_fail(dir, error_r,
			               "clearing the old secrets out of directory.db");
	}
	return 0;
}

static int open_db(struct sq_dir *dir, const char *path, const char **error_r)
{
	int flags = SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX;

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
	return 0;
}

/* WAL lets the server's readers go on while an admin command writes. */
static int use_wal(struct sq_dir *dir, const char *schema, const char **error_r)
{
	char sql[40];

	snprintf(sql, sizeof(sql), "PRAGMA %s.journal_mode = WAL", schema);
	if (sqlite3_exec(dir->db, sql, NULL, NULL, NULL) != SQLITE_OK)
		return sq_fail(dir, error_r, "enabling WAL");
	return 0;
}

static int attach_secrets(struct sq_dir *dir, const char *path, const char **error_r)
{
	sqlite3_stmt *st;
	int rc;

	if (sqlite3_prepare_v2(dir->db, "ATTACH ?1 AS auth", -1, &st, NULL) != SQLITE_OK)
		return sq_fail(dir, error_r, "opening the secrets");
	sq_bind_text(st, 1, path);
	rc = sqlite3_step(st);
	sqlite3_finalize(st);
	if (rc != SQLITE_DONE)
		return sq_fail(dir, error_r, "opening the secrets");
	return use_wal(dir, "auth", error_r);
}

int sq_open(const struct config *cfg, unsigned parts, bool create, struct dir **dir_r,
            const char **error_r)
{
	struct sq_dir *dir = xcalloc(1, sizeof(*dir));
	char *path = config_sqlite_path(cfg);
	char *secrets_dir = config_secrets_dir(cfg), *secrets = config_secrets_path(cfg);
	struct sq_owner run, auth;
	int r, version = DIR_SCHEMA_VERSION;

	/* On failure dir_open closes the half-open dir after copying the
	 * error out of it. */
	*dir_r = &dir->base;
	dir->base.parts = parts;
	r = sq_owner(dir, cfg->run_as, &run, error_r);
	if (r == 0)
		r = sq_owner(dir, cfg->auth_as, &auth, error_r);
	if (r == 0 && (parts & DIR_SECRETS) != 0)
		r = sq_check_state_dir(dir, cfg->state_dir, &run, error_r);
	/* Each file opened by its owner's ids, the -wal and -shm too (the
	 * first read opens them; the connection keeps them). */
	if (r == 0 && (parts & DIR_MAILBOXES) != 0) {
		sq_become(&run);
		r = sq_make_file(dir, path, create, error_r);
		if (r == 0)
			r = open_db(dir, path, error_r);
		if (r == 0)
			r = use_wal(dir, "main", error_r);
		if (r == 0)
			r = read_version(dir, "main", &version, error_r);
		sq_unbecome(&run);
		/* An admin command deletes freed pages' content. */
		if (r == 0 && parts == DIR_EVERYTHING &&
		    sqlite3_exec(dir->db, "PRAGMA main.secure_delete = ON", NULL, NULL, NULL) !=
		        SQLITE_OK)
			r = sq_fail(dir, error_r, "enabling secure_delete");
	} else if (r == 0) {
		r = open_db(dir, ":memory:", error_r);
	}
	if (r == 0 && (parts & DIR_SECRETS) != 0) {
		/* Made by pillar init, or by the migration that moves the
		 * secrets out of directory.db. */
		bool make = create || (parts == DIR_EVERYTHING && version < DIR_SCHEMA_VERSION);
		int secrets_version;

		if (make)
			r = sq_make_secrets_dir(dir, secrets_dir, &auth, error_r);
		sq_become(&auth);
		if (r == 0)
			r = sq_make_file(dir, secrets, make, error_r);
		if (r == 0)
			r = attach_secrets(dir, secrets, error_r);
		if (r == 0)
			r = read_version(dir, "auth", &secrets_version, error_r);
		sq_unbecome(&auth);
	}
	if (r == 0)
		r = create_schema(dir, error_r);
	for (int i = 0; i < ST_COUNT && r == 0; i++) {
		if ((stmt_needs((enum sq_stmt)i) & ~parts) != 0)
			continue;
		if (sqlite3_prepare_v3(dir->db, stmt_text((enum sq_stmt)i, parts), -1,
		                       SQLITE_PREPARE_PERSISTENT, &dir->stmt[i], NULL) != SQLITE_OK)
			r = sq_fail(dir, error_r, "preparing a query (is the schema damaged?)");
	}
	free(path);
	free(secrets_dir);
	free(secrets);
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
