/* Unit tests for src/auth/apop.c against a real SQLite directory. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "auth/apop.h"
#include "core/config.h"
#include "core/util.h"
#include "directory/directory.h"
#include "directory/thread.h"

/* RFC 1939 §7. */
#define RFC_TIMESTAMP "<1896.697170952@dbc.mtview.ca.us>"
#define RFC_SECRET    "tanstaaf"
#define RFC_DIGEST    "c4c9334bac560ecc979e58001b3e22fb"

struct fixture {
	char dir[64];
	struct config cfg;
};

static int setup(void **state)
{
	struct fixture *fx = xcalloc(1, sizeof(*fx));
	struct dir *d;
	const char *err;

	snprintf(fx->dir, sizeof(fx->dir), "/tmp/pillar-test-apop-XXXXXX");
	if (mkdtemp(fx->dir) == NULL)
		return -1;
	fx->cfg.state_dir = fx->dir;
	fx->cfg.directory = (char *)"sqlite";
	fx->cfg.apop = true;
	if (dir_open(&fx->cfg, true, &d, &err) < 0 || dir_domain_add(d, "example.org", &err) < 0 ||
	    dir_user_add(d, "mrose@example.org", "$y$x", &err) < 0 ||
	    dir_user_set_credentials(d, "mrose@example.org", "$y$x", NULL, RFC_SECRET, &err) < 0 ||
	    dir_user_add(d, "plain@example.org", "$y$x", &err) < 0) {
		fprintf(stderr, "setup: %s\n", err);
		return -1;
	}
	dir_close(&d);
	*state = fx;
	return 0;
}

static int teardown(void **state)
{
	struct fixture *fx = *state;
	char *cmd = xasprintf("rm -rf '%s'", fx->dir);

	/* The next test has another database. */
	dir_thread_drop();
	if (system(cmd) != 0)
		fprintf(stderr, "cleanup of %s failed\n", fx->dir);
	free(cmd);
	free(fx);
	return 0;
}

static enum auth_result check(struct fixture *fx, const char *user, const char *ts,
                              const char *digest, char *address)
{
	const char *err = NULL;
	enum auth_result r = apop_verify(&fx->cfg, user, ts, digest, address, &err);

	if (r == AUTH_TEMPFAIL)
		fail_msg("tempfail: %s", err);
	return r;
}

static void test_rfc1939_example(void **state)
{
	struct fixture *fx = *state;
	char address[DIR_ADDRESS_MAX + 1];

	assert_int_equal(check(fx, "mrose@example.org", RFC_TIMESTAMP, RFC_DIGEST, address),
	                 AUTH_OK);
	assert_string_equal(address, "mrose@example.org");
	/* Upper-case hex and a mixed-case address are the same login. */
	assert_int_equal(check(fx, "MRose@Example.ORG", RFC_TIMESTAMP,
	                       "C4C9334BAC560ECC979E58001B3E22FB", address),
	                 AUTH_OK);
	assert_string_equal(address, "mrose@example.org");
}

static void test_failures_look_alike(void **state)
{
	struct fixture *fx = *state;
	char address[DIR_ADDRESS_MAX + 1];

	/* wrong digest, another timestamp (a replay), unknown user, a mailbox
	 * without an APOP secret, a malformed name or digest: all AUTH_FAILED */
	assert_int_equal(check(fx, "mrose@example.org", RFC_TIMESTAMP,
	                       "c4c9334bac560ecc979e58001b3e22fc", address),
	                 AUTH_FAILED);
	assert_string_equal(address, "");
	assert_int_equal(check(fx, "mrose@example.org", "<1897.697170952@dbc.mtview.ca.us>",
	                       RFC_DIGEST, address),
	                 AUTH_FAILED);
	assert_int_equal(check(fx, "nobody@example.org", RFC_TIMESTAMP, RFC_DIGEST, address),
	                 AUTH_FAILED);
	/* MD5 of the timestamp alone: what an empty secret would give */
	assert_int_equal(check(fx, "plain@example.org", RFC_TIMESTAMP,
	                       "6d7379174f7df9fb329480e5c47c1f1a", address),
	                 AUTH_FAILED);
	assert_int_equal(check(fx, "no-at-sign", RFC_TIMESTAMP, RFC_DIGEST, address), AUTH_FAILED);
	assert_int_equal(check(fx, "", RFC_TIMESTAMP, RFC_DIGEST, address), AUTH_FAILED);
	assert_int_equal(check(fx, "mrose@example.org", RFC_TIMESTAMP,
	                       "c4c9334bac560ecc979e58001b3e22f", address),
	                 AUTH_FAILED);
	assert_int_equal(check(fx, "mrose@example.org", RFC_TIMESTAMP,
	                       "c4c9334bac560ecc979e58001b3e22fbb", address),
	                 AUTH_FAILED);
	assert_int_equal(check(fx, "mrose@example.org", RFC_TIMESTAMP,
	                       "g4c9334bac560ecc979e58001b3e22fb", address),
	                 AUTH_FAILED);
}

static void test_locked(void **state)
{
	struct fixture *fx = *state;
	char address[DIR_ADDRESS_MAX + 1];
	char *path = config_secrets_path(&fx->cfg);
	sqlite3 *db;

	assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
	assert_int_equal(sqlite3_exec(db, "UPDATE credentials SET locked = 1", NULL, NULL, NULL),
	                 SQLITE_OK);
	sqlite3_close(db);
	free(path);
	/* Locked shows only with the right digest. */
	assert_int_equal(check(fx, "mrose@example.org", RFC_TIMESTAMP, RFC_DIGEST, address),
	                 AUTH_LOCKED);
	assert_string_equal(address, "mrose@example.org");
	assert_int_equal(check(fx, "mrose@example.org", RFC_TIMESTAMP,
	                       "00000000000000000000000000000000", address),
	                 AUTH_FAILED);
}

static void test_request_job(void **state)
{
	struct fixture *fx = *state;
	struct apop_request req;
	char long_user[DIR_ADDRESS_MAX + 10];

	apop_request_init(&req, &fx->cfg, "mrose@example.org", RFC_TIMESTAMP, RFC_DIGEST);
	apop_verify_work(&req);
	assert_int_equal(req.result, AUTH_OK);
	assert_string_equal(req.address, "mrose@example.org");

	memset(long_user, 'a', sizeof(long_user) - 1);
	long_user[sizeof(long_user) - 1] = '\0';
	apop_request_init(&req, &fx->cfg, long_user, RFC_TIMESTAMP, RFC_DIGEST);
	apop_verify_work(&req);
	assert_int_equal(req.result, AUTH_FAILED);
}

static void test_login_recorded(void **state)
{
	struct fixture *fx = *state;
	char address[DIR_ADDRESS_MAX + 1];
	struct dir_user user;
	struct dir *d;
	const char *err;

	assert_int_equal(check(fx, "mrose@example.org", RFC_TIMESTAMP, RFC_DIGEST, address),
	                 AUTH_OK);
	assert_int_equal(dir_open(&fx->cfg, false, &d, &err), 0);
	assert_int_equal(dir_user_lookup(d, "mrose@example.org", &user, &err), 1);
	assert_true(user.last_login > 0);
	dir_close(&d);
}

static void test_timestamp(void **state)
{
	char a[APOP_TIMESTAMP_MAX + 1], b[APOP_TIMESTAMP_MAX + 1], host[300];
	long pid;
	unsigned long long r;
	long long t;
	int n = 0;

	(void)state;
	apop_timestamp(a, sizeof(a), "mail.example.org");
	apop_timestamp(b, sizeof(b), "mail.example.org");
	assert_string_not_equal(a, b);
	assert_int_equal(a[0], '<');
	assert_int_equal(a[strlen(a) - 1], '>');
	assert_int_equal(sscanf(a, "<%ld.%16llx.%lld@mail.example.org>%n", &pid, &r, &t, &n), 3);
	assert_int_equal((size_t)n, strlen(a));
	assert_true(pid > 0 && t > 0);

	/* The longest host name the config allows still fits whole. */
	memset(host, 'h', 253);
	host[253] = '\0';
	apop_timestamp(a, sizeof(a), host);
	assert_true(strlen(a) <= APOP_TIMESTAMP_MAX);
	assert_non_null(strstr(a, host));
	assert_int_equal(a[strlen(a) - 1], '>');
	/* A short buffer is cut, never overrun. */
	apop_timestamp(b, 10, host);
	assert_int_equal(strlen(b), 9);
}

static void write_file(const char *path, const char *text)
{
	FILE *f = fopen(path, "w");

	assert_non_null(f);
	fputs(text, f);
	fclose(f);
}

static void test_config_key(void **state)
{
	struct fixture *fx = *state;
	char *path = xasprintf("%s/pillar.conf", fx->dir);
	struct strlist errors = {0};
	struct config *cfg;

	write_file(path, "state_dir = /tmp\n");
	assert_int_equal(config_load(path, &cfg, &errors), 0);
	assert_false(cfg->apop);
	config_free(&cfg);
	write_file(path, "state_dir = /tmp\napop = yes\n");
	assert_int_equal(config_load(path, &cfg, &errors), 0);
	assert_true(cfg->apop);
	config_free(&cfg);
	write_file(path, "state_dir = /tmp\napop = on\n");
	assert_int_equal(config_load(path, &cfg, &errors), -1);
	assert_int_equal(errors.count, 1);
	assert_non_null(strstr(errors.items[0], ":2: apop: must be yes or no"));
	strlist_free(&errors);
	free(path);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_setup_teardown(test_rfc1939_example, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_failures_look_alike, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_locked, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_request_job, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_login_recorded, setup, teardown),
	    cmocka_unit_test(test_timestamp),
	    cmocka_unit_test_setup_teardown(test_config_key, setup, teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
