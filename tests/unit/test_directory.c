/* Unit tests for src/directory/sqlite.c. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/config.h"
#include "core/util.h"
#include "directory/directory.h"

struct fixture {
	char dir[64];
	struct config cfg;
};

static int setup(void **state)
{
	struct fixture *fx = xcalloc(1, sizeof(*fx));

	snprintf(fx->dir, sizeof(fx->dir), "/tmp/pillar-test-dir-XXXXXX");
	if (mkdtemp(fx->dir) == NULL)
		return -1;
	fx->cfg.state_dir = fx->dir;
	fx->cfg.directory = (char *)"sqlite";
	*state = fx;
	return 0;
}

static int teardown(void **state)
{
	struct fixture *fx = *state;
	char *cmd = xasprintf("rm -rf '%s'", fx->dir);

	if (system(cmd) != 0)
		fprintf(stderr, "cleanup of %s failed\n", fx->dir);
	free(cmd);
	free(fx);
	return 0;
}

static struct dir *open_ok(struct fixture *fx, bool create)
{
	struct dir *dir = NULL;
	const char *err = NULL;

	if (dir_open(&fx->cfg, create, &dir, &err) < 0)
		fail_msg("dir_open: %s", err);
	return dir;
}

static void test_open(void **state)
{
	struct fixture *fx = *state;
	struct dir *dir = NULL;
	const char *err = NULL;
	struct stat st;
	char *path;

	/* without create a missing database is an error */
	assert_int_equal(dir_open(&fx->cfg, false, &dir, &err), -1);
	assert_null(dir);
	assert_non_null(strstr(err, "directory.db"));

	dir = open_ok(fx, true);
	dir_close(&dir);
	assert_null(dir);
	dir_close(&dir);

	path = config_sqlite_path(&fx->cfg);
	assert_int_equal(stat(path, &st), 0);
	assert_int_equal(st.st_mode & 0777, 0600);
	free(path);

	/* re-open (and re-create) keeps working on the existing schema */
	dir = open_ok(fx, false);
	dir_close(&dir);
	dir = open_ok(fx, true);
	dir_close(&dir);

	fx->cfg.directory = (char *)"postgresql://localhost/pillar";
	assert_int_equal(dir_open(&fx->cfg, true, &dir, &err), -1);
	assert_string_equal(err, "postgresql directory not supported yet");
	fx->cfg.directory = (char *)"sqlite";
}

struct collect {
	char buf[1024];
};

static void collect_domain(void *ctx, const char *domain, uint64_t n)
{
	struct collect *c = ctx;
	size_t len = strlen(c->buf);

	snprintf(c->buf + len, sizeof(c->buf) - len, "%s=%llu;", domain, (unsigned long long)n);
}

static void collect_user(void *ctx, const struct dir_user *u)
{
	struct collect *c = ctx;
	size_t len = strlen(c->buf);

	snprintf(c->buf + len, sizeof(c->buf) - len, "%s;", u->address);
}

static void test_domains(void **state)
{
	struct fixture *fx = *state;
	struct dir *dir = open_ok(fx, true);
	struct collect c = {""};
	const char *err = NULL;

	assert_int_equal(dir_domain_exists(dir, "example.test", &err), 0);
	assert_int_equal(dir_domain_add(dir, "example.test", &err), 0);
	assert_int_equal(dir_domain_add(dir, "b.example", &err), 0);
	assert_int_equal(dir_domain_add(dir, "example.test", &err), -1);
	assert_string_equal(err, "domain example.test already exists");
	assert_int_equal(dir_domain_exists(dir, "example.test", &err), 1);
	assert_int_equal(dir_domain_exists(dir, "EXAMPLE.test", &err), 1);

	assert_int_equal(dir_user_add(dir, "a@example.test", "$y$x", &err), 0);
	assert_int_equal(dir_domain_list(dir, collect_domain, &c, &err), 0);
	assert_string_equal(c.buf, "b.example=0;example.test=1;");

	assert_int_equal(dir_domain_del(dir, "example.test", &err), -1);
	assert_string_equal(err, "domain example.test still has 1 mailbox");
	assert_int_equal(dir_domain_del(dir, "nope.test", &err), -1);
	assert_string_equal(err, "no such domain nope.test");
	assert_int_equal(dir_domain_del(dir, "b.example", &err), 0);
	assert_int_equal(dir_domain_exists(dir, "b.example", &err), 0);
	assert_int_equal(dir_user_del(dir, "a@example.test", &err), 0);
	assert_int_equal(dir_domain_del(dir, "example.test", &err), 0);
	c.buf[0] = '\0';
	assert_int_equal(dir_domain_list(dir, collect_domain, &c, &err), 0);
	assert_string_equal(c.buf, "");
	dir_close(&dir);
}

static void test_users(void **state)
{
	struct fixture *fx = *state;
	struct dir *dir = open_ok(fx, true);
	struct collect c = {""};
	struct dir_user u;
	const char *err = NULL;

	assert_int_equal(dir_user_add(dir, "x@missing.test", "$y$h", &err), -1);
	assert_string_equal(err, "no such domain missing.test");
	assert_int_equal(dir_domain_add(dir, "one.test", &err), 0);
	assert_int_equal(dir_domain_add(dir, "two.test", &err), 0);
	assert_int_equal(dir_user_add(dir, "bob@one.test", "$y$bob", &err), 0);
	assert_int_equal(dir_user_add(dir, "alice@one.test", "$y$alice", &err), 0);
	assert_int_equal(dir_user_add(dir, "carol@two.test", "$y$carol", &err), 0);
	assert_int_equal(dir_user_add(dir, "Bob@one.test", "$y$other", &err), -1);
	assert_string_equal(err, "mailbox bob@one.test already exists");

	assert_int_equal(dir_user_lookup(dir, "BOB@One.Test", &u, &err), 1);
	assert_string_equal(u.address, "bob@one.test");
	assert_string_equal(u.password_hash, "$y$bob");
	assert_int_equal(u.quota_bytes, 0);
	assert_false(u.locked);
	assert_true(u.created > 0);
	assert_int_equal(u.last_login, 0);
	assert_int_equal(dir_user_lookup(dir, "nobody@one.test", &u, &err), 0);

	assert_int_equal(dir_user_set_password(dir, "bob@one.test", "$y$new", &err), 0);
	assert_int_equal(dir_user_touch_login(dir, "bob@one.test", 1700000000, &err), 0);
	assert_int_equal(dir_user_lookup(dir, "bob@one.test", &u, &err), 1);
	assert_string_equal(u.password_hash, "$y$new");
	assert_int_equal(u.last_login, 1700000000);
	assert_int_equal(dir_user_set_password(dir, "nobody@one.test", "$y$n", &err), -1);
	assert_string_equal(err, "no such mailbox nobody@one.test");
	assert_int_equal(dir_user_touch_login(dir, "nobody@one.test", 1, &err), -1);

	assert_int_equal(dir_user_list(dir, NULL, collect_user, &c, &err), 0);
	assert_string_equal(c.buf, "alice@one.test;bob@one.test;carol@two.test;");
	c.buf[0] = '\0';
	assert_int_equal(dir_user_list(dir, "one.test", collect_user, &c, &err), 0);
	assert_string_equal(c.buf, "alice@one.test;bob@one.test;");
	c.buf[0] = '\0';
	assert_int_equal(dir_user_list(dir, "none.test", collect_user, &c, &err), 0);
	assert_string_equal(c.buf, "");

	assert_int_equal(dir_user_del(dir, "bob@one.test", &err), 0);
	assert_int_equal(dir_user_del(dir, "bob@one.test", &err), -1);
	assert_string_equal(err, "no such mailbox bob@one.test");
	assert_int_equal(dir_user_lookup(dir, "bob@one.test", &u, &err), 0);
	dir_close(&dir);

	/* the data survives a reopen */
	dir = open_ok(fx, false);
	assert_int_equal(dir_user_lookup(dir, "alice@one.test", &u, &err), 1);
	dir_close(&dir);
}

static int check_addr(const char *in, char *out, size_t size)
{
	const char *err = NULL;

	snprintf(out, size, "%s", in);
	return dir_check_address(out, &err);
}

static void test_check_address(void **state)
{
	char buf[512], longer[512];

	(void)state;
	assert_int_equal(check_addr("Demo@Example.TEST", buf, sizeof(buf)), 0);
	assert_string_equal(buf, "demo@example.test");
	assert_int_equal(check_addr("a.b+tag@localhost", buf, sizeof(buf)), 0);
	assert_int_equal(check_addr("j\xc3\xbcrgen@example.test", buf, sizeof(buf)), 0);
	assert_int_equal(check_addr("x@a-b.c0m", buf, sizeof(buf)), 0);

	assert_int_equal(check_addr("", buf, sizeof(buf)), -1);
	assert_int_equal(check_addr("noat", buf, sizeof(buf)), -1);
	assert_int_equal(check_addr("@example.test", buf, sizeof(buf)), -1);
	assert_int_equal(check_addr("a@", buf, sizeof(buf)), -1);
	assert_int_equal(check_addr("a@b@example.test", buf, sizeof(buf)), -1);
	assert_int_equal(check_addr(".@example.test", buf, sizeof(buf)), -1);
	assert_int_equal(check_addr("..@example.test", buf, sizeof(buf)), -1);
	assert_int_equal(check_addr(".hidden@example.test", buf, sizeof(buf)), -1);
	assert_int_equal(check_addr("a/b@example.test", buf, sizeof(buf)), -1);
	assert_int_equal(check_addr("../x@example.test", buf, sizeof(buf)), -1);
	assert_int_equal(check_addr("a b@example.test", buf, sizeof(buf)), -1);
	assert_int_equal(check_addr("a\tb@example.test", buf, sizeof(buf)), -1);
	assert_int_equal(check_addr("a\x7f@example.test", buf, sizeof(buf)), -1);
	assert_int_equal(check_addr("a@exa_mple.test", buf, sizeof(buf)), -1);
	assert_int_equal(check_addr("a@example..test", buf, sizeof(buf)), -1);
	assert_int_equal(check_addr("a@.example.test", buf, sizeof(buf)), -1);
	assert_int_equal(check_addr("a@example.test.", buf, sizeof(buf)), -1);
	assert_int_equal(check_addr("a@-example.test", buf, sizeof(buf)), -1);
	assert_int_equal(check_addr("a@example-.test", buf, sizeof(buf)), -1);
	assert_int_equal(check_addr("a@ex/ample.test", buf, sizeof(buf)), -1);

	/* local part: 64 octets is the limit (RFC 5321 §4.5.3.1.1) */
	memset(longer, 'l', 64);
	snprintf(longer + 64, sizeof(longer) - 64, "@example.test");
	assert_int_equal(check_addr(longer, buf, sizeof(buf)), 0);
	memset(longer, 'l', 65);
	snprintf(longer + 65, sizeof(longer) - 65, "@example.test");
	assert_int_equal(check_addr(longer, buf, sizeof(buf)), -1);

	/* whole address: at most 254 */
	memset(longer, 'a', sizeof(longer));
	memcpy(longer, "x@", 2);
	for (size_t i = 2 + 63; i < 254; i += 64)
		longer[i] = '.';
	longer[254] = '\0';
	assert_int_equal(check_addr(longer, buf, sizeof(buf)), 0);
	longer[254] = 'a';
	longer[255] = '\0';
	assert_int_equal(check_addr(longer, buf, sizeof(buf)), -1);
}

static void test_check_domain(void **state)
{
	char buf[400];
	const char *err = NULL;

	(void)state;
	snprintf(buf, sizeof(buf), "Mail.Example.ORG");
	assert_int_equal(dir_check_domain(buf, &err), 0);
	assert_string_equal(buf, "mail.example.org");
	snprintf(buf, sizeof(buf), "localhost");
	assert_int_equal(dir_check_domain(buf, &err), 0);
	snprintf(buf, sizeof(buf), "%s", "");
	assert_int_equal(dir_check_domain(buf, &err), -1);
	assert_string_equal(err, "empty domain");
	/* 63-character label ok, 64 not */
	memset(buf, 'a', 63);
	snprintf(buf + 63, sizeof(buf) - 63, ".test");
	assert_int_equal(dir_check_domain(buf, &err), 0);
	memset(buf, 'a', 64);
	snprintf(buf + 64, sizeof(buf) - 64, ".test");
	assert_int_equal(dir_check_domain(buf, &err), -1);
	assert_string_equal(err, "domain label longer than 63 characters");
	/* 255 total ok, 256 not */
	memset(buf, 'a', 256);
	for (size_t i = 63; i < 256; i += 64)
		buf[i] = '.';
	buf[255] = '\0';
	assert_int_equal(dir_check_domain(buf, &err), 0);
	buf[255] = 'b';
	buf[256] = '\0';
	assert_int_equal(dir_check_domain(buf, &err), -1);
	snprintf(buf, sizeof(buf), "sp ace.test");
	assert_int_equal(dir_check_domain(buf, &err), -1);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_setup_teardown(test_open, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_domains, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_users, setup, teardown),
	    cmocka_unit_test(test_check_address),
	    cmocka_unit_test(test_check_domain),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
