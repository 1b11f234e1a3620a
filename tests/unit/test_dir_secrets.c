/* Unit tests for the directory's SCRAM keys and APOP secrets, and the
 * schema migrations, and opening one part of the directory alone. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <sqlite3.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/config.h"
#include "core/util.h"
#include "directory/directory.h"

struct fixture {
	char dir[64];
	struct config cfg;
	struct dir *d;
};

static int setup(void **state)
{
	struct fixture *fx = xcalloc(1, sizeof(*fx));
	const char *err;

	snprintf(fx->dir, sizeof(fx->dir), "/tmp/pillar-test-secrets-XXXXXX");
	if (mkdtemp(fx->dir) == NULL)
		return -1;
	fx->cfg.state_dir = fx->dir;
	fx->cfg.directory = (char *)"sqlite";
	/* PILLAR_TEST_DIRECTORY=postgresql://...: the same on PostgreSQL
	 * (the Pillar tables there are dropped first). */
	if (getenv("PILLAR_TEST_DIRECTORY") != NULL) {
		char *cmd = xasprintf("psql -q -v ON_ERROR_STOP=1 '%s' -c 'DROP TABLE IF EXISTS"
		                      " aliases, mailboxes, domains, secrets, schema_version'"
		                      " >/dev/null 2>&1",
		                      getenv("PILLAR_TEST_DIRECTORY"));
		int rc = system(cmd);

		free(cmd);
		if (rc != 0)
			return -1;
		fx->cfg.directory = getenv("PILLAR_TEST_DIRECTORY");
	}
	if (dir_open(&fx->cfg, true, &fx->d, &err) < 0 ||
	    dir_domain_add(fx->d, "example.org", &err) < 0 ||
	    dir_user_add(fx->d, "alice@example.org", "$y$old", &err) < 0) {
		fprintf(stderr, "setup: %s\n", err);
		return -1;
	}
	*state = fx;
	return 0;
}

static int teardown(void **state)
{
	struct fixture *fx = *state;
	char *cmd = xasprintf("rm -rf '%s'", fx->dir);

	dir_close(&fx->d);
	if (system(cmd) != 0)
		fprintf(stderr, "cleanup of %s failed\n", fx->dir);
	free(cmd);
	free(fx);
	return 0;
}

static void sample_keys(struct dir_scram *k, uint8_t fill)
{
	memset(k, 0, sizeof(*k));
	k->salt_len = 16;
	memset(k->salt, fill, k->salt_len);
	k->iterations = 4096;
	memset(k->stored_key, fill + 1, sizeof(k->stored_key));
	memset(k->server_key, fill + 2, sizeof(k->server_key));
}

static void test_scram_roundtrip(void **state)
{
	struct fixture *fx = *state;
	struct dir_scram in, out;
	const char *err;

	assert_int_equal(dir_user_get_scram(fx->d, "alice@example.org", &out, &err), 0);
	assert_int_equal(dir_user_get_scram(fx->d, "nobody@example.org", &out, &err), 0);
	sample_keys(&in, 7);
	/* Only while the hash is the one the password was checked against. */
	assert_int_equal(dir_user_set_scram(fx->d, "alice@example.org", "$y$other", &in, &err), 0);
	assert_int_equal(dir_user_set_scram(fx->d, "alice@example.org", "$y$old", &in, &err), 1);
	assert_int_equal(dir_user_get_scram(fx->d, "ALICE@example.org", &out, &err), 1);
	assert_int_equal(out.salt_len, 16);
	assert_int_equal(out.iterations, 4096);
	assert_memory_equal(out.salt, in.salt, 16);
	assert_memory_equal(out.stored_key, in.stored_key, DIR_SCRAM_KEY_LEN);
	assert_memory_equal(out.server_key, in.server_key, DIR_SCRAM_KEY_LEN);
	/* Keys already there are not replaced by a login's. */
	sample_keys(&in, 9);
	assert_int_equal(dir_user_set_scram(fx->d, "alice@example.org", "$y$old", &in, &err), 0);
	/* A new password clears them. */
	assert_int_equal(dir_user_set_password(fx->d, "alice@example.org", "$y$new", &err), 0);
	assert_int_equal(dir_user_get_scram(fx->d, "alice@example.org", &out, &err), 0);
}

static void test_credentials(void **state)
{
	struct fixture *fx = *state;
	struct dir_scram in, out;
	struct dir_user user;
	char secret[DIR_APOP_SECRET_MAX + 1];
	const char *err;

	sample_keys(&in, 1);
	assert_int_equal(
	    dir_user_set_credentials(fx->d, "alice@example.org", "$y$two", &in, "tanstaaf", &err),
	    0);
	assert_int_equal(dir_user_lookup(fx->d, "alice@example.org", &user, &err), 1);
	assert_string_equal(user.password_hash, "$y$two");
	assert_int_equal(dir_user_get_scram(fx->d, "alice@example.org", &out, &err), 1);
	assert_memory_equal(out.stored_key, in.stored_key, DIR_SCRAM_KEY_LEN);
	assert_int_equal(
	    dir_user_get_apop(fx->d, "alice@example.org", secret, sizeof(secret), &err), 1);
	assert_string_equal(secret, "tanstaaf");
	/* Too small a buffer is "none", never a truncated secret. */
	assert_int_equal(dir_user_get_apop(fx->d, "alice@example.org", secret, 4, &err), 0);
	assert_int_equal(dir_user_get_apop(fx->d, "bob@example.org", secret, sizeof(secret), &err),
	                 0);

	/* A plain password change drops the APOP secret too. */
	assert_int_equal(dir_user_set_password(fx->d, "alice@example.org", "$y$three", &err), 0);
	assert_int_equal(
	    dir_user_get_apop(fx->d, "alice@example.org", secret, sizeof(secret), &err), 0);

	assert_int_equal(
	    dir_user_set_credentials(fx->d, "bob@example.org", "$y$x", NULL, NULL, &err), -1);
	assert_non_null(strstr(err, "no such mailbox"));
	assert_int_equal(
	    dir_user_set_credentials(fx->d, "alice@example.org", "$y$x", NULL, "", &err), -1);
}

/* Whether the file at path holds the bytes of needle. */
static bool file_has(const char *path, const char *needle)
{
	FILE *f = fopen(path, "rb");
	size_t n = strlen(needle), len = 0;
	char buf[1 << 16];
	bool found = false;

	if (f == NULL)
		return false;
	len = fread(buf, 1, sizeof(buf), f);
	fclose(f);
	for (size_t i = 0; i + n <= len && !found; i++)
		found = memcmp(buf + i, needle, n) == 0;
	return found;
}

/* A version 3 directory (everything in directory.db, written here as that
 * version made it) is migrated when opened whole: the secrets move to the
 * secrets file and leave no trace in directory.db; a process that opens
 * one part only refuses the old schema rather than migrate it. */
static void test_migration_from_v3(void **state)
{
	struct fixture *fx = *state;
	char *path = config_sqlite_path(&fx->cfg), *secrets = config_secrets_path(&fx->cfg);
	uint8_t instance[DIR_INSTANCE_SECRET_LEN];
	char apop[64];
	struct dir_user user;
	const char *err;
	sqlite3 *db;
	sqlite3_stmt *st;

	if (strcmp(fx->cfg.directory, "sqlite") != 0) {
		free(path);
		free(secrets);
		skip();
	}
	dir_close(&fx->d);
	assert_int_equal(unlink(path), 0);
	assert_int_equal(unlink(secrets), 0);
	assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
	assert_int_equal(
	    sqlite3_exec(
	        db,
	        "PRAGMA journal_mode = WAL;"
	        "CREATE TABLE domains (id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE,"
	        " created INTEGER NOT NULL);"
	        "CREATE TABLE mailboxes (id INTEGER PRIMARY KEY, address TEXT NOT NULL UNIQUE,"
	        " domain_id INTEGER NOT NULL REFERENCES domains(id) ON DELETE RESTRICT,"
	        " password_hash TEXT NOT NULL, scram_salt BLOB NULL, scram_iterations INTEGER NULL,"
	        " scram_stored_key BLOB NULL, scram_server_key BLOB NULL,"
	        " quota_bytes INTEGER NOT NULL DEFAULT 0, quota_messages INTEGER NOT NULL DEFAULT "
	        "0,"
	        " locked INTEGER NOT NULL DEFAULT 0, created INTEGER NOT NULL,"
	        " last_login INTEGER NOT NULL DEFAULT 0, apop_secret TEXT NULL);"
	        "CREATE INDEX mailboxes_domain ON mailboxes(domain_id);"
	        "CREATE TABLE aliases (id INTEGER PRIMARY KEY, address TEXT NOT NULL,"
	        " target TEXT NOT NULL, UNIQUE(address, target));"
	        "CREATE TABLE secrets (name TEXT PRIMARY KEY, value BLOB NOT NULL);"
	        "INSERT INTO secrets VALUES ('instance', zeroblob(31) || x'07');"
	        "INSERT INTO domains VALUES (1, 'example.org', 100);"
	        "INSERT INTO mailboxes(address, domain_id, password_hash, quota_bytes, locked,"
	        " created, last_login, apop_secret) VALUES ('alice@example.org', 1,"
	        " '$y$hash-of-alice', 5000, 1, 200, 300, 'apop-of-alice');"
	        "PRAGMA user_version = 3;",
	        NULL, NULL, NULL),
	    SQLITE_OK);
	sqlite3_close(db);

	/* A worker's open does not migrate. */
	dir_open_only(DIR_MAILBOXES);
	assert_int_equal(dir_open(&fx->cfg, false, &fx->d, &err), -1);
	assert_non_null(strstr(err, "older than this pillar"));
	dir_open_only(DIR_EVERYTHING);

	assert_int_equal(dir_open(&fx->cfg, false, &fx->d, &err), 0);
	assert_int_equal(dir_user_lookup(fx->d, "alice@example.org", &user, &err), 1);
	assert_string_equal(user.password_hash, "$y$hash-of-alice");
	assert_int_equal(user.quota_bytes, 5000);
	assert_true(user.locked);
	assert_int_equal(user.created, 200);
	assert_int_equal(user.last_login, 300);
	assert_int_equal(dir_user_get_apop(fx->d, "alice@example.org", apop, sizeof(apop), &err),
	                 1);
	assert_string_equal(apop, "apop-of-alice");
	assert_int_equal(dir_instance_secret(fx->d, instance, &err), 0);
	assert_int_equal(instance[DIR_INSTANCE_SECRET_LEN - 1], 7);
	dir_close(&fx->d);

	assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
	assert_int_equal(sqlite3_prepare_v2(db, "PRAGMA user_version", -1, &st, NULL), SQLITE_OK);
	assert_int_equal(sqlite3_step(st), SQLITE_ROW);
	assert_int_equal(sqlite3_column_int(st, 0), 4);
	sqlite3_finalize(st);
	sqlite3_close(db);
	/* Not in a table, not in a free page, not in the log. */
	assert_false(file_has(path, "hash-of-alice"));
	assert_false(file_has(path, "apop-of-alice"));
	char *wal = xasprintf("%s-wal", path);
	assert_false(file_has(wal, "hash-of-alice"));
	free(wal);
	assert_int_equal(dir_open(&fx->cfg, false, &fx->d, &err), 0);
	free(path);
	free(secrets);
}

/* Each part alone: the mailboxes without a single secret, the secrets
 * without the mailboxes; what needs the other part fails, saying so. */
static void test_open_one_part(void **state)
{
	struct fixture *fx = *state;
	struct dir_scram keys;
	struct dir_user user;
	struct dir_rcpt *rcpt = xcalloc(1, sizeof(*rcpt));
	enum dir_rcpt_result result;
	struct dir *d;
	const char *err;

	assert_int_equal(dir_user_set_locked(fx->d, "alice@example.org", true, &err), 0);

	dir_open_only(DIR_MAILBOXES);
	assert_int_equal(dir_open(&fx->cfg, false, &d, &err), 0);
	assert_int_equal(dir_rcpt_resolve(d, "alice@example.org", &result, rcpt, &err), 0);
	assert_int_equal(result, DIR_RCPT_OK);
	assert_int_equal(dir_user_lookup(d, "alice@example.org", &user, &err), 1);
	assert_string_equal(user.password_hash, "");
	assert_false(user.locked);
	assert_int_equal(dir_user_get_scram(d, "alice@example.org", &keys, &err), -1);
	assert_non_null(strstr(err, "secrets are not open"));
	assert_int_equal(dir_user_set_locked(d, "alice@example.org", false, &err), -1);
	assert_int_equal(dir_user_add(d, "bob@example.org", "$y$x", &err), -1);
	dir_close(&d);

	dir_open_only(DIR_SECRETS);
	assert_int_equal(dir_open(&fx->cfg, false, &d, &err), 0);
	assert_int_equal(dir_user_lookup(d, "alice@example.org", &user, &err), 1);
	assert_string_equal(user.password_hash, "$y$old");
	assert_true(user.locked);
	assert_int_equal(dir_user_touch_login(d, "alice@example.org", 12345, &err), 0);
	assert_int_equal(dir_rcpt_resolve(d, "alice@example.org", &result, rcpt, &err), -1);
	assert_non_null(strstr(err, "mailboxes are not open"));
	dir_close(&d);
	dir_open_only(DIR_EVERYTHING);

	assert_int_equal(dir_user_lookup(fx->d, "alice@example.org", &user, &err), 1);
	assert_int_equal(user.last_login, 12345);
	free(rcpt);
}

static void test_instance_secret(void **state)
{
	struct fixture *fx = *state;
	uint8_t a[DIR_INSTANCE_SECRET_LEN], b[DIR_INSTANCE_SECRET_LEN],
	    zero[DIR_INSTANCE_SECRET_LEN];
	struct dir *other;
	const char *err;

	memset(zero, 0, sizeof(zero));
	assert_int_equal(dir_instance_secret(fx->d, a, &err), 0);
	assert_memory_not_equal(a, zero, sizeof(a));
	/* Another connection (another worker) reads the same one. */
	assert_int_equal(dir_open(&fx->cfg, false, &other, &err), 0);
	assert_int_equal(dir_instance_secret(other, b, &err), 0);
	assert_memory_equal(a, b, sizeof(a));
	dir_close(&other);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_setup_teardown(test_scram_roundtrip, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_credentials, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_migration_from_v3, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_open_one_part, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_instance_secret, setup, teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
