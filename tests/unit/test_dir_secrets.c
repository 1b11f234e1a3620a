/* Unit tests for the directory's SCRAM keys and APOP secrets, and the
 * schema migration that added the APOP column. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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

/* A version 1 database (no apop_secret column, no secrets table) is
 * migrated when opened. */
static void test_migration_from_v1(void **state)
{
	struct fixture *fx = *state;
	char *path = config_sqlite_path(&fx->cfg);
	char secret[64];
	const char *err;
	sqlite3 *db;
	sqlite3_stmt *st;

	if (strcmp(fx->cfg.directory, "sqlite") != 0) {
		free(path);
		skip();
	}
	dir_close(&fx->d);
	assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
	assert_int_equal(sqlite3_exec(db,
	                              "ALTER TABLE mailboxes DROP COLUMN apop_secret;"
	                              "DROP TABLE secrets;"
	                              "PRAGMA user_version = 1;",
	                              NULL, NULL, NULL),
	                 SQLITE_OK);
	sqlite3_close(db);

	assert_int_equal(dir_open(&fx->cfg, false, &fx->d, &err), 0);
	assert_int_equal(
	    dir_user_set_credentials(fx->d, "alice@example.org", "$y$m", NULL, "secret", &err), 0);
	assert_int_equal(
	    dir_user_get_apop(fx->d, "alice@example.org", secret, sizeof(secret), &err), 1);

	assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
	assert_int_equal(sqlite3_prepare_v2(db, "PRAGMA user_version", -1, &st, NULL), SQLITE_OK);
	assert_int_equal(sqlite3_step(st), SQLITE_ROW);
	assert_int_equal(sqlite3_column_int(st, 0), 3);
	sqlite3_finalize(st);
	sqlite3_close(db);
	free(path);
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
	    cmocka_unit_test_setup_teardown(test_migration_from_v1, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_instance_secret, setup, teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
