/* The directory on SQLite: <state_dir>/directory.db. See directory.h.
 *
 * Every query is a statement prepared once at open with bound parameters;
 * no SQL is ever built from data. The schema carries its version in
 * PRAGMA user_version so later releases can migrate it in place. */
#include "directory/directory.h"

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
};

struct dir {
	sqlite3 *db;
	sqlite3_stmt *stmt[ST_COUNT];
	char err[256];
};

/* Set dir->err and point *error_r at it. */
static int dir_fail(struct dir *dir, const char **error_r, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static int dir_fail(struct dir *dir, const char **error_r, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(dir->err, sizeof(dir->err), fmt, ap);
	va_end(ap);
	*error_r = dir->err;
	return -1;
}

static int db_fail(struct dir *dir, const char **error_r, const char *what)
{
	return dir_fail(dir, error_r, "directory: %s: %s", what, sqlite3_errmsg(dir->db));
}

/* A statement ready to bind: reset from its last use. */
static sqlite3_stmt *stmt_get(struct dir *dir, enum dir_stmt which)
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
static int tx_begin(struct dir *dir, const char **error_r)
{
	if (sqlite3_exec(dir->db, "BEGIN IMMEDIATE", NULL, NULL, NULL) != SQLITE_OK)
		return db_fail(dir, error_r, "begin");
	return 0;
}

static int tx_commit(struct dir *dir, const char **error_r)
{
	if (sqlite3_exec(dir->db, "COMMIT", NULL, NULL, NULL) != SQLITE_OK) {
		db_fail(dir, error_r, "commit");
		sqlite3_exec(dir->db, "ROLLBACK", NULL, NULL, NULL);
		return -1;
	}
	return 0;
}

/* Roll back and return -1; *error_r was set by whoever failed. */
static int tx_abort(struct dir *dir)
{
	sqlite3_exec(dir->db, "ROLLBACK", NULL, NULL, NULL);
	return -1;
}

/* Copy an address or domain lower-cased into buf (size DIR_ADDRESS_MAX+1 or
 * more). Returns -1 when it is too long to be stored at all. */
static int normalize(const char *in, char *buf, size_t size)
{
	size_t len = strlen(in);

	if (len >= size)
		return -1;
	memcpy(buf, in, len + 1);
	str_lower(buf);
	return 0;
}

/* ---- syntax ---- */

int dir_check_domain(char *domain, const char **error_r)
{
	size_t len = strlen(domain), label = 0;

	if (len == 0) {
		*error_r = "empty domain";
		return -1;
	}
	if (len > DIR_DOMAIN_MAX) {
		*error_r = "domain longer than 255 characters";
		return -1;
	}
	str_lower(domain);
	/* RFC 1035 §2.3.1 / RFC 1123 §2.1: letters, digits and hyphens, labels
	 * of 1-63, no hyphen at either end of a label. Single-label names such
	 * as "localhost" are allowed for test setups. */
	for (size_t i = 0; i <= len; i++) {
		char c = domain[i];

		if (c == '.' || c == '\0') {
			if (label == 0) {
				*error_r =
				    "empty label in domain (leading, trailing or double dot)";
				return -1;
			}
			if (domain[i - 1] == '-') {
				*error_r = "domain label may not end with '-'";
				return -1;
			}
			label = 0;
			continue;
		}
		if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-')) {
			*error_r = "domain may contain only letters, digits, '-' and '.'";
			return -1;
		}
		if (c == '-' && label == 0) {
			*error_r = "domain label may not start with '-'";
			return -1;
		}
		if (++label > 63) {
			*error_r = "domain label longer than 63 characters";
			return -1;
		}
	}
	return 0;
}

int dir_check_address(char *address, const char **error_r)
{
	char *at = strchr(address, '@');
	size_t local_len;

	if (at == NULL) {
		*error_r = "address must be local@domain";
		return -1;
	}
	if (strchr(at + 1, '@') != NULL) {
		*error_r = "address has more than one '@'";
		return -1;
	}
	if (strlen(address) > DIR_ADDRESS_MAX) {
		*error_r = "address longer than 254 characters";
		return -1;
	}
	local_len = (size_t)(at - address);
	if (local_len == 0) {
		*error_r = "empty local part";
		return -1;
	}
	if (local_len > DIR_LOCAL_MAX) {
		*error_r = "local part longer than 64 octets";
		return -1;
	}
	/* The local part becomes a directory name under <mail_root>/<domain>:
	 * nothing that could leave it or hide it. 8-bit bytes are allowed for
	 * SMTPUTF8 (RFC 6531) addresses. */
	if (address[0] == '.') {
		*error_r = "local part may not start with '.'";
		return -1;
	}
	for (size_t i = 0; i < local_len; i++) {
		unsigned char c = (unsigned char)address[i];

		if (c == '/') {
			*error_r = "local part may not contain '/'";
			return -1;
		}
		if (c <= 0x20 || c == 0x7f) {
			*error_r = "local part may not contain spaces or control characters";
			return -1;
		}
	}
	if (dir_check_domain(at + 1, error_r) < 0)
		return -1;
	str_lower(address);
	return 0;
}

/* ---- open and close ---- */

static int create_schema(struct dir *dir, const char **error_r)
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
		return dir_fail(dir, error_r,
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

static int open_db(struct dir *dir, const char *path, bool create, const char **error_r)
{
	int flags = SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX;

	if (create) {
		/* Create the file ourselves so it is 0600 from the first moment:
		 * it holds password hashes. SQLite gives the -wal and -shm
		 * files the same mode. */
		int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);

		if (fd < 0)
			return dir_fail(dir, error_r, "directory: cannot create %s: %s", path,
			                strerror(errno));
		close(fd);
	} else if (access(path, F_OK) < 0) {
		return dir_fail(dir, error_r, "directory: %s: %s (run 'pillar init'?)", path,
		                strerror(errno));
	}
	if (sqlite3_open_v2(path, &dir->db, flags, NULL) != SQLITE_OK) {
		if (dir->db == NULL)
			return dir_fail(dir, error_r, "directory: cannot open %s: out of memory",
			                path);
		return dir_fail(dir, error_r, "directory: cannot open %s: %s", path,
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

int dir_open(const struct config *cfg, bool create, struct dir **dir_r, const char **error_r)
{
	static __thread char open_err[sizeof(((struct dir *)0)->err)];
	struct dir *dir;
	char *path;

	*dir_r = NULL;
	if (strcmp(cfg->directory, "sqlite") != 0) {
		*error_r = "postgresql directory not supported yet";
		return -1;
	}
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
	*dir_r = dir;
	return 0;
fail:
	/* The error lives in dir, which is about to go. */
	snprintf(open_err, sizeof(open_err), "%s", *error_r);
	*error_r = open_err;
	free(path);
	dir_close(&dir);
	return -1;
}

void dir_close(struct dir **dirp)
{
	struct dir *dir = *dirp;

	if (dir == NULL)
		return;
	for (int i = 0; i < ST_COUNT; i++)
		sqlite3_finalize(dir->stmt[i]);
	sqlite3_close(dir->db);
	free(dir);
	*dirp = NULL;
}

/* ---- domains ---- */

int dir_domain_exists(struct dir *dir, const char *domain, const char **error_r)
{
	char name[DIR_DOMAIN_MAX + 1];
	sqlite3_stmt *st;
	int rc;

	if (normalize(domain, name, sizeof(name)) < 0)
		return 0;
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

int dir_domain_add(struct dir *dir, const char *domain, const char **error_r)
{
	char name[DIR_DOMAIN_MAX + 1];
	sqlite3_stmt *st;
	int rc;

	if (normalize(domain, name, sizeof(name)) < 0)
		return dir_fail(dir, error_r, "domain too long");
	st = stmt_get(dir, ST_DOMAIN_ADD);
	bind_text(st, 1, name);
	sqlite3_bind_int64(st, 2, (sqlite3_int64)time(NULL));
	rc = sqlite3_step(st);
	sqlite3_reset(st);
	if (rc == SQLITE_DONE)
		return 0;
	if ((rc & 0xff) == SQLITE_CONSTRAINT)
		return dir_fail(dir, error_r, "domain %s already exists", name);
	return db_fail(dir, error_r, "adding a domain");
}

int dir_domain_del(struct dir *dir, const char *domain, const char **error_r)
{
	char name[DIR_DOMAIN_MAX + 1];
	sqlite3_stmt *st;
	sqlite3_int64 users;
	int rc;

	if (normalize(domain, name, sizeof(name)) < 0)
		return dir_fail(dir, error_r, "no such domain");
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
		dir_fail(dir, error_r, "domain %s still has %lld mailbox%s", name, (long long)users,
		         users == 1 ? "" : "es");
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
		dir_fail(dir, error_r, "domain %s still has mailboxes", name);
		return tx_abort(dir);
	}
	if (rc != SQLITE_DONE) {
		db_fail(dir, error_r, "deleting a domain");
		return tx_abort(dir);
	}
	if (sqlite3_changes(dir->db) == 0) {
		dir_fail(dir, error_r, "no such domain %s", name);
		return tx_abort(dir);
	}
	return tx_commit(dir, error_r);
}

int dir_domain_list(struct dir *dir, void (*fn)(void *ctx, const char *domain, uint64_t mailboxes),
                    void *ctx, const char **error_r)
{
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

static int alias_exists(struct dir *dir, const char *addr, const char **error_r);
static const char *domain_of(const char *addr);
static int user_row(struct dir *dir, enum dir_stmt which, const char *key, struct dir_user *out,
                    const char **error_r);

int dir_user_add(struct dir *dir, const char *address, const char *password_hash,
                 const char **error_r)
{
	char addr[DIR_ADDRESS_MAX + 1];
	const char *domain;
	sqlite3_stmt *st;
	int rc;

	if (normalize(address, addr, sizeof(addr)) < 0 || (domain = strchr(addr, '@')) == NULL)
		return dir_fail(dir, error_r, "bad address");
	domain++;
	if (strlen(password_hash) > DIR_HASH_MAX)
		return dir_fail(dir, error_r, "password hash too long");
	/* An address is a mailbox or an alias, never both: which one would
	 * get the mail would otherwise be a guess. */
	rc = alias_exists(dir, addr, error_r);
	if (rc != 0)
		return rc < 0 ? -1 : dir_fail(dir, error_r, "%s is an alias", addr);
	st = stmt_get(dir, ST_USER_ADD);
	bind_text(st, 1, addr);
	bind_text(st, 2, password_hash);
	sqlite3_bind_int64(st, 3, (sqlite3_int64)time(NULL));
	bind_text(st, 4, domain);
	rc = sqlite3_step(st);
	sqlite3_reset(st);
	if ((rc & 0xff) == SQLITE_CONSTRAINT)
		return dir_fail(dir, error_r, "mailbox %s already exists", addr);
	if (rc != SQLITE_DONE)
		return db_fail(dir, error_r, "adding a mailbox");
	/* The INSERT ... SELECT inserts nothing when the domain is missing. */
	if (sqlite3_changes(dir->db) == 0)
		return dir_fail(dir, error_r, "no such domain %s", domain);
	return 0;
}

/* Run a one-address UPDATE or DELETE; no row changed means no such mailbox. */
static int user_change(struct dir *dir, sqlite3_stmt *st, const char *addr, const char *what,
                       const char **error_r)
{
	int rc = sqlite3_step(st);

	sqlite3_reset(st);
	if (rc != SQLITE_DONE)
		return db_fail(dir, error_r, what);
	if (sqlite3_changes(dir->db) == 0)
		return dir_fail(dir, error_r, "no such mailbox %s", addr);
	return 0;
}

int dir_user_del(struct dir *dir, const char *address, const char **error_r)
{
	char addr[DIR_ADDRESS_MAX + 1];
	sqlite3_stmt *st;
	int rc;

	if (normalize(address, addr, sizeof(addr)) < 0)
		return dir_fail(dir, error_r, "no such mailbox");
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

int dir_user_set_quota(struct dir *dir, const char *address, uint64_t bytes, uint64_t messages,
                       const char **error_r)
{
	char addr[DIR_ADDRESS_MAX + 1];
	sqlite3_stmt *st;

	if (normalize(address, addr, sizeof(addr)) < 0)
		return dir_fail(dir, error_r, "no such mailbox");
	/* SQLite integers are signed 64-bit. */
	if (bytes > INT64_MAX || messages > INT64_MAX)
		return dir_fail(dir, error_r, "quota too large");
	st = stmt_get(dir, ST_USER_SET_QUOTA);
	bind_text(st, 1, addr);
	sqlite3_bind_int64(st, 2, (sqlite3_int64)bytes);
	sqlite3_bind_int64(st, 3, (sqlite3_int64)messages);
	return user_change(dir, st, addr, "setting a quota", error_r);
}

int dir_user_set_password(struct dir *dir, const char *address, const char *password_hash,
                          const char **error_r)
{
	char addr[DIR_ADDRESS_MAX + 1];
	sqlite3_stmt *st;

	if (normalize(address, addr, sizeof(addr)) < 0)
		return dir_fail(dir, error_r, "no such mailbox");
	if (strlen(password_hash) > DIR_HASH_MAX)
		return dir_fail(dir, error_r, "password hash too long");
	/* The SCRAM keys and the APOP secret derive from the old password:
	 * they are cleared here (dir_user_set_credentials sets them). */
	st = stmt_get(dir, ST_USER_SET_PASSWORD);
	bind_text(st, 1, addr);
	bind_text(st, 2, password_hash);
	return user_change(dir, st, addr, "setting a password", error_r);
}

int dir_user_set_locked(struct dir *dir, const char *address, bool locked, const char **error_r)
{
	char addr[DIR_ADDRESS_MAX + 1];
	sqlite3_stmt *st;

	if (normalize(address, addr, sizeof(addr)) < 0)
		return dir_fail(dir, error_r, "no such mailbox");
	st = stmt_get(dir, ST_USER_SET_LOCKED);
	bind_text(st, 1, addr);
	sqlite3_bind_int(st, 2, locked ? 1 : 0);
	return user_change(dir, st, addr, locked ? "locking a mailbox" : "unlocking a mailbox",
	                   error_r);
}

/* Run a prepared statement bound to (from, to); -1 on error. */
static int step_pair(struct dir *dir, enum dir_stmt which, const char *from, const char *to,
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

int dir_user_rename(struct dir *dir, const char *old_address, const char *new_address,
                    const char **error_r)
{
	char from[DIR_ADDRESS_MAX + 1], to[DIR_ADDRESS_MAX + 1];
	const char *from_domain, *to_domain;
	struct dir_user user;
	sqlite3_stmt *st;
	int r;

	if (normalize(old_address, from, sizeof(from)) < 0 ||
	    (from_domain = domain_of(from)) == NULL)
		return dir_fail(dir, error_r, "no such mailbox");
	if (normalize(new_address, to, sizeof(to)) < 0 || (to_domain = domain_of(to)) == NULL)
		return dir_fail(dir, error_r, "bad address");
	if (strcmp(from, to) == 0)
		return dir_fail(dir, error_r, "%s is already the mailbox's address", to);
	/* Every check and change in one IMMEDIATE transaction: nobody can
	 * add the new address, or an alias to the old one, in between. */
	if (tx_begin(dir, error_r) < 0)
		return -1;
	r = dir_domain_exists(dir, to_domain, error_r);
	if (r <= 0) {
		if (r == 0)
			dir_fail(dir, error_r, "domain %s is not local", to_domain);
		return tx_abort(dir);
	}
	r = user_row(dir, ST_USER_LOOKUP, to, &user, error_r);
	if (r == 0) {
		r = alias_exists(dir, to, error_r);
		r = r > 0 ? 2 : r;
	}
	if (r != 0) {
		if (r > 0)
			dir_fail(dir, error_r, "%s already exists as %s", to,
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

int dir_user_touch_login(struct dir *dir, const char *address, int64_t when, const char **error_r)
{
	char addr[DIR_ADDRESS_MAX + 1];
	sqlite3_stmt *st;

	if (normalize(address, addr, sizeof(addr)) < 0)
		return dir_fail(dir, error_r, "no such mailbox");
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

static bool scram_valid(const struct dir_scram *scram)
{
	return scram->salt_len > 0 && scram->salt_len <= DIR_SCRAM_SALT_MAX &&
	       scram->iterations > 0;
}

int dir_user_get_scram(struct dir *dir, const char *address, struct dir_scram *out,
                       const char **error_r)
{
	char addr[DIR_ADDRESS_MAX + 1];
	sqlite3_stmt *st;
	int rc, ret = 0;

	memset(out, 0, sizeof(*out));
	if (normalize(address, addr, sizeof(addr)) < 0)
		return 0;
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

int dir_user_set_scram(struct dir *dir, const char *address, const char *password_hash,
                       const struct dir_scram *scram, const char **error_r)
{
	char addr[DIR_ADDRESS_MAX + 1];
	sqlite3_stmt *st;
	int rc;

	if (normalize(address, addr, sizeof(addr)) < 0)
		return 0;
	if (!scram_valid(scram))
		return dir_fail(dir, error_r, "bad SCRAM keys");
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

int dir_user_get_apop(struct dir *dir, const char *address, char *secret, size_t size,
                      const char **error_r)
{
	char addr[DIR_ADDRESS_MAX + 1];
	sqlite3_stmt *st;
	int rc, ret = 0;

	if (size > 0)
		secret[0] = '\0';
	if (normalize(address, addr, sizeof(addr)) < 0)
		return 0;
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

int dir_user_set_credentials(struct dir *dir, const char *address, const char *password_hash,
                             const struct dir_scram *scram, const char *apop_secret,
                             const char **error_r)
{
	char addr[DIR_ADDRESS_MAX + 1];
	sqlite3_stmt *st;

	if (normalize(address, addr, sizeof(addr)) < 0)
		return dir_fail(dir, error_r, "no such mailbox");
	if (strlen(password_hash) > DIR_HASH_MAX)
		return dir_fail(dir, error_r, "password hash too long");
	if (scram != NULL && !scram_valid(scram))
		return dir_fail(dir, error_r, "bad SCRAM keys");
	if (apop_secret != NULL &&
	    (apop_secret[0] == '\0' || strlen(apop_secret) > DIR_APOP_SECRET_MAX))
		return dir_fail(dir, error_r, "APOP secret empty or too long");
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

int dir_instance_secret(struct dir *dir, uint8_t out[DIR_INSTANCE_SECRET_LEN], const char **error_r)
{
	sqlite3_stmt *st = stmt_get(dir, ST_INSTANCE_SECRET);
	int rc = sqlite3_step(st), ret = 0;

	if (rc == SQLITE_ROW && sqlite3_column_bytes(st, 0) == DIR_INSTANCE_SECRET_LEN &&
	    sqlite3_column_blob(st, 0) != NULL)
		memcpy(out, sqlite3_column_blob(st, 0), DIR_INSTANCE_SECRET_LEN);
	else if (rc == SQLITE_ROW || rc == SQLITE_DONE)
		ret =
		    dir_fail(dir, error_r, "directory: the instance secret is missing or damaged");
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

int dir_user_lookup(struct dir *dir, const char *address, struct dir_user *out,
                    const char **error_r)
{
	char addr[DIR_ADDRESS_MAX + 1];
	sqlite3_stmt *st;
	int rc, ret;

	if (normalize(address, addr, sizeof(addr)) < 0)
		return 0;
	st = stmt_get(dir, ST_USER_LOOKUP);
	bind_text(st, 1, addr);
	rc = sqlite3_step(st);
	if (rc == SQLITE_ROW)
		ret = row_to_user(st, out) == 0
		          ? 1
		          : dir_fail(dir, error_r, "mailbox %s has a malformed row", addr);
	else if (rc == SQLITE_DONE)
		ret = 0;
	else
		ret = db_fail(dir, error_r, "looking up a mailbox");
	sqlite3_reset(st);
	return ret;
}

int dir_user_list(struct dir *dir, const char *domain,
                  void (*fn)(void *ctx, const struct dir_user *user), void *ctx,
                  const char **error_r)
{
	char name[DIR_DOMAIN_MAX + 1];
	struct dir_user user;
	sqlite3_stmt *st;
	int rc;

	if (domain != NULL) {
		if (normalize(domain, name, sizeof(name)) < 0)
			return 0;
		st = stmt_get(dir, ST_USER_LIST_DOMAIN);
		bind_text(st, 1, name);
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
static int alias_exists(struct dir *dir, const char *addr, const char **error_r)
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

/* The domain part of a normalized address, or NULL. The last '@': a quoted
 * local part from SMTP may hold one (and then matches nothing). */
static const char *domain_of(const char *addr)
{
	const char *at = strrchr(addr, '@');

	return at != NULL && at != addr && at[1] != '\0' ? at + 1 : NULL;
}

static bool is_postmaster(const char *addr)
{
	return strncmp(addr, "postmaster@", strlen("postmaster@")) == 0;
}

/* Addresses visited while expanding one recipient. Bounded, so an alias
 * graph however large or looped costs bounded work. */
#define EXPAND_MAX (DIR_MAX_TARGETS * DIR_MAX_ALIAS_DEPTH)

struct expand {
	char addr[EXPAND_MAX][DIR_ADDRESS_MAX + 1]; /* the queue, and the seen set */
	unsigned char depth[EXPAND_MAX];
	size_t n;
	bool too_deep; /* an alias chain longer than DIR_MAX_ALIAS_DEPTH */
};

static bool expand_seen(const struct expand *e, const char *addr)
{
	for (size_t i = 0; i < e->n; i++) {
		if (strcmp(e->addr[i], addr) == 0)
			return true;
	}
	return false;
}

/* Queue addr unless seen. -1 when the walk is too big. */
static int expand_push(struct dir *dir, struct expand *e, const char *addr, unsigned depth,
                       const char **error_r)
{
	if (strlen(addr) > DIR_ADDRESS_MAX || expand_seen(e, addr))
		return 0;
	if (depth > DIR_MAX_ALIAS_DEPTH) {
		e->too_deep = true;
		return 0;
	}
	if (e->n == EXPAND_MAX)
		return dir_fail(dir, error_r, "aliases expand to more than %d addresses",
		                EXPAND_MAX);
	memcpy(e->addr[e->n], addr, strlen(addr) + 1);
	e->depth[e->n] = (unsigned char)depth;
	e->n++;
	return 0;
}

static int rcpt_add(struct dir *dir, struct dir_rcpt *rcpt, const struct dir_user *user,
                    const char **error_r)
{
	for (size_t i = 0; i < rcpt->n; i++) {
		if (strcmp(rcpt->users[i].address, user->address) == 0)
			return 0;
	}
	if (rcpt->n == DIR_MAX_TARGETS)
		return dir_fail(dir, error_r, "more than %d mailboxes for one recipient",
		                DIR_MAX_TARGETS);
	rcpt->users[rcpt->n] = *user;
	/* Delivery has no use for the hash; keep it where it is needed. */
	memset(rcpt->users[rcpt->n].password_hash, 0, sizeof(rcpt->users[rcpt->n].password_hash));
	rcpt->n++;
	return 0;
}

/* One-row lookup of a user with a prepared statement bound to one text. */
static int user_row(struct dir *dir, enum dir_stmt which, const char *key, struct dir_user *out,
                    const char **error_r)
{
	sqlite3_stmt *st = stmt_get(dir, which);
	int rc, ret;

	bind_text(st, 1, key);
	rc = sqlite3_step(st);
	if (rc == SQLITE_ROW)
		ret = row_to_user(st, out) == 0
		          ? 1
		          : dir_fail(dir, error_r, "mailbox of %s has a malformed row", key);
	else if (rc == SQLITE_DONE)
		ret = 0;
	else
		ret = db_fail(dir, error_r, "looking up a mailbox");
	sqlite3_reset(st);
	return ret;
}

/* Queue the targets of alias e->addr[i]. Returns how many rows it has, or
 * -1. The rows are copied out before anything else runs, since the
 * statement is shared. */
static int push_targets(struct dir *dir, struct expand *e, size_t i, const char **error_r)
{
	char targets[DIR_MAX_TARGETS][DIR_ADDRESS_MAX + 1];
	sqlite3_stmt *st = stmt_get(dir, ST_ALIAS_TARGETS);
	size_t n = 0;
	int rc;

	bind_text(st, 1, e->addr[i]);
	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		const char *t = (const char *)sqlite3_column_text(st, 0);

		if (n == DIR_MAX_TARGETS) {
			sqlite3_reset(st);
			return dir_fail(dir, error_r, "alias %s has more than %d targets",
			                e->addr[i], DIR_MAX_TARGETS);
		}
		if (t != NULL && strlen(t) <= DIR_ADDRESS_MAX)
			memcpy(targets[n++], t, strlen(t) + 1);
	}
	sqlite3_reset(st);
	if (rc != SQLITE_DONE)
		return db_fail(dir, error_r, "looking up an alias");
	for (size_t k = 0; k < n; k++) {
		if (expand_push(dir, e, targets[k], e->depth[i] + 1u, error_r) < 0)
			return -1;
	}
	return (int)n;
}

/* Walk from e->addr[0] to mailboxes. Each address is, in this order: a
 * mailbox; an alias (its targets are walked); postmaster@ of a local
 * domain (the domain's first mailbox); or nothing (skipped: a target whose
 * mailbox was deleted, or in a domain no longer local). rcpt may be NULL
 * to only walk the aliases. */
static int expand_run(struct dir *dir, struct expand *e, struct dir_rcpt *rcpt,
                      const char **error_r)
{
	struct dir_user user;
	int r;

	for (size_t i = 0; i < e->n; i++) {
		const char *addr = e->addr[i];
		const char *domain = domain_of(addr);

		if (domain == NULL)
			continue;
		r = user_row(dir, ST_USER_LOOKUP, addr, &user, error_r);
		if (r < 0)
			return -1;
		if (r > 0) {
			if (rcpt != NULL && rcpt_add(dir, rcpt, &user, error_r) < 0)
				return -1;
			continue;
		}
		r = push_targets(dir, e, i, error_r);
		if (r < 0)
			return -1;
		if (r > 0 || !is_postmaster(addr))
			continue;
		/* RFC 5321 §4.5.1: every local domain accepts postmaster. */
		r = user_row(dir, ST_USER_FIRST_IN_DOMAIN, domain, &user, error_r);
		if (r < 0)
			return -1;
		if (r > 0 && rcpt != NULL && rcpt_add(dir, rcpt, &user, error_r) < 0)
			return -1;
	}
	return 0;
}

/* The first domain added, for a bare "postmaster". 1 found, 0, -1. */
static int first_domain(struct dir *dir, char *out, const char **error_r)
{
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

int dir_rcpt_resolve(struct dir *dir, const char *address, enum dir_rcpt_result *result_r,
                     struct dir_rcpt *rcpt, const char **error_r)
{
	char addr[DIR_ADDRESS_MAX + 1];
	const char *domain;
	struct expand *e;
	int r;

	rcpt->n = 0;
	*result_r = DIR_RCPT_NO_USER;
	if (normalize(address, addr, sizeof(addr)) < 0)
		return 0;
	if (strcmp(addr, "postmaster") == 0) {
		/* "<Postmaster>" without a domain (RFC 5321 §4.1.1.3): the
		 * postmaster of the first local domain. */
		char first[DIR_DOMAIN_MAX + 1];

		r = first_domain(dir, first, error_r);
		if (r <= 0) {
			*result_r = DIR_RCPT_NOT_LOCAL;
			return r;
		}
		if (strlen("postmaster@") + strlen(first) > DIR_ADDRESS_MAX)
			return 0;
		snprintf(addr, sizeof(addr), "postmaster@%s", first);
	}
	domain = domain_of(addr);
	if (domain == NULL) {
		*result_r = DIR_RCPT_NOT_LOCAL;
		return 0;
	}
	r = dir_domain_exists(dir, domain, error_r);
	if (r < 0)
		return -1;
	if (r == 0) {
		*result_r = DIR_RCPT_NOT_LOCAL;
		return 0;
	}
	e = calloc(1, sizeof(*e));
	if (e == NULL)
		return dir_fail(dir, error_r, "resolving %s: out of memory", addr);
	memcpy(e->addr[0], addr, strlen(addr) + 1);
	e->n = 1;
	r = expand_run(dir, e, rcpt, error_r);
	free(e);
	if (r < 0) {
		rcpt->n = 0;
		return -1;
	}
	if (rcpt->n > 0)
		*result_r = DIR_RCPT_OK;
	return 0;
}

int dir_alias_add(struct dir *dir, const char *address, const char *target, const char **error_r)
{
	char addr[DIR_ADDRESS_MAX + 1], to[DIR_ADDRESS_MAX + 1];
	enum dir_rcpt_result result;
	struct dir_rcpt *rcpt = NULL;
	struct expand *e = NULL;
	struct dir_user user;
	sqlite3_stmt *st;
	const char *domain;
	int r = -1, rc;

	if (normalize(address, addr, sizeof(addr)) < 0 || (domain = domain_of(addr)) == NULL)
		return dir_fail(dir, error_r, "bad alias address");
	if (normalize(target, to, sizeof(to)) < 0 || domain_of(to) == NULL)
		return dir_fail(dir, error_r, "bad alias target");
	if (strcmp(addr, to) == 0)
		return dir_fail(dir, error_r, "alias %s cannot point to itself", addr);
	rcpt = malloc(sizeof(*rcpt));
	e = calloc(1, sizeof(*e));
	if (rcpt == NULL || e == NULL) {
		free(rcpt);
		free(e);
		return dir_fail(dir, error_r, "adding an alias: out of memory");
	}
	/* Every check and the insert in one transaction, so that a
	 * concurrent change cannot slip a loop in between. */
	if (tx_begin(dir, error_r) < 0)
		goto out;
	r = dir_domain_exists(dir, domain, error_r);
	if (r <= 0) {
		if (r == 0)
			dir_fail(dir, error_r, "domain %s is not local", domain);
		goto fail;
	}
	r = user_row(dir, ST_USER_LOOKUP, addr, &user, error_r);
	if (r != 0) {
		if (r > 0)
			dir_fail(dir, error_r, "%s is a mailbox", addr);
		goto fail;
	}
	/* The target must deliver somewhere now: a mailbox, an alias, or a
	 * local postmaster. */
	if (dir_rcpt_resolve(dir, to, &result, rcpt, error_r) < 0)
		goto fail;
	if (result == DIR_RCPT_NOT_LOCAL) {
		dir_fail(dir, error_r, "target %s is not in a local domain", to);
		goto fail;
	}
	if (result != DIR_RCPT_OK) {
		dir_fail(dir, error_r, "target %s is no mailbox or alias", to);
		goto fail;
	}
	/* A loop: the new alias would be reachable from its own target. */
	memcpy(e->addr[0], to, strlen(to) + 1);
	e->n = 1;
	if (expand_run(dir, e, NULL, error_r) < 0)
		goto fail;
	if (expand_seen(e, addr)) {
		dir_fail(dir, error_r, "%s -> %s would make an alias loop", addr, to);
		goto fail;
	}

	st = stmt_get(dir, ST_ALIAS_ADD);
	bind_text(st, 1, addr);
	bind_text(st, 2, to);
	rc = sqlite3_step(st);
	sqlite3_reset(st);
	if ((rc & 0xff) == SQLITE_CONSTRAINT) {
		dir_fail(dir, error_r, "alias %s already points to %s", addr, to);
		goto fail;
	}
	if (rc != SQLITE_DONE) {
		db_fail(dir, error_r, "adding an alias");
		goto fail;
	}
	/* Within the limits as a whole: DIR_MAX_TARGETS mailboxes and
	 * DIR_MAX_ALIAS_DEPTH levels (resolve fails past the first). */
	memset(e, 0, sizeof(*e));
	memcpy(e->addr[0], addr, strlen(addr) + 1);
	e->n = 1;
	rcpt->n = 0;
	if (expand_run(dir, e, rcpt, error_r) < 0)
		goto fail;
	if (e->too_deep) {
		dir_fail(dir, error_r, "aliases would nest deeper than %d levels",
		         DIR_MAX_ALIAS_DEPTH);
		goto fail;
	}
	r = tx_commit(dir, error_r);
	goto out;
fail:
	tx_abort(dir);
	r = -1;
out:
	free(rcpt);
	free(e);
	return r < 0 ? -1 : 0;
}

int dir_alias_del(struct dir *dir, const char *address, const char *target, const char **error_r)
{
	char addr[DIR_ADDRESS_MAX + 1], to[DIR_ADDRESS_MAX + 1];
	sqlite3_stmt *st;
	int rc;

	if (normalize(address, addr, sizeof(addr)) < 0)
		return dir_fail(dir, error_r, "no such alias");
	if (target != NULL) {
		if (normalize(target, to, sizeof(to)) < 0)
			return dir_fail(dir, error_r, "alias %s has no such target", addr);
		st = stmt_get(dir, ST_ALIAS_DEL_ONE);
		bind_text(st, 2, to);
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
			return dir_fail(dir, error_r, "no such alias %s", addr);
		return dir_fail(dir, error_r, "alias %s does not point to %s", addr, to);
	}
	return 0;
}

int dir_alias_list(struct dir *dir, const char *domain,
                   void (*fn)(void *ctx, const char *address, const char *target), void *ctx,
                   const char **error_r)
{
	char name[DIR_DOMAIN_MAX + 1];
	sqlite3_stmt *st;
	int rc;

	if (domain != NULL) {
		if (normalize(domain, name, sizeof(name)) < 0)
			return 0;
		st = stmt_get(dir, ST_ALIAS_LIST_DOMAIN);
		bind_text(st, 1, name);
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
