/* Unit tests for the directory (src/directory/), on SQLite; with
 * PILLAR_TEST_DIRECTORY=postgresql://... the same tests run on that
 * PostgreSQL database (its Pillar tables are dropped before each test). */
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

	if (strcmp(fx->cfg.directory, "sqlite") != 0)
		skip();
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

	/* nothing listens on port 1: a clear error, no connection */
	fx->cfg.directory = (char *)"postgresql://127.0.0.1:1/pillar";
	assert_int_equal(dir_open(&fx->cfg, true, &dir, &err), -1);
	assert_null(dir);
	assert_non_null(strstr(err, "cannot connect to PostgreSQL"));
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

	/* Logins are recorded to the minute: a later one within a minute
	 * writes nothing, one a minute later does, and so does one "earlier"
	 * (the clock went back). */
	struct stat wal_before, wal_after;
	char *wal = NULL;
	if (getenv("PILLAR_TEST_DIRECTORY") == NULL) {
		char *db = config_sqlite_path(&fx->cfg);
		wal = xasprintf("%s-wal", db);
		free(db);
	}
	if (wal != NULL)
		assert_int_equal(stat(wal, &wal_before), 0);
	assert_int_equal(dir_user_touch_login(dir, "bob@one.test", 1700000000 + 59, &err), 0);
	if (wal != NULL) {
		assert_int_equal(stat(wal, &wal_after), 0);
		assert_int_equal(wal_after.st_size, wal_before.st_size);
		assert_int_equal(wal_after.st_mtim.tv_nsec, wal_before.st_mtim.tv_nsec);
		assert_int_equal(wal_after.st_mtim.tv_sec, wal_before.st_mtim.tv_sec);
		free(wal);
	}
	assert_int_equal(dir_user_lookup(dir, "bob@one.test", &u, &err), 1);
	assert_int_equal(u.last_login, 1700000000);
	assert_int_equal(dir_user_touch_login(dir, "bob@one.test", 1700000000 + 60, &err), 0);
	assert_int_equal(dir_user_lookup(dir, "bob@one.test", &u, &err), 1);
	assert_int_equal(u.last_login, 1700000060);
	assert_int_equal(dir_user_touch_login(dir, "bob@one.test", 1600000000, &err), 0);
	assert_int_equal(dir_user_lookup(dir, "bob@one.test", &u, &err), 1);
	assert_int_equal(u.last_login, 1600000000);
	assert_int_equal(dir_user_touch_login(dir, "nobody@one.test", 1600000000, &err), -1);
	assert_string_equal(err, "no such mailbox nobody@one.test");

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

/* "a;b;" from a resolve, or "NO_USER" / "NOT_LOCAL" / "ERROR". */
static const char *resolve(struct dir *dir, const char *address, char *buf, size_t size)
{
	static struct dir_rcpt rcpt;
	enum dir_rcpt_result result;
	const char *err = NULL;

	buf[0] = '\0';
	if (dir_rcpt_resolve(dir, address, &result, &rcpt, &err) < 0)
		return "ERROR";
	if (result == DIR_RCPT_NO_USER)
		return "NO_USER";
	if (result == DIR_RCPT_NOT_LOCAL)
		return "NOT_LOCAL";
	assert_true(rcpt.n >= 1);
	for (size_t i = 0; i < rcpt.n; i++) {
		size_t len = strlen(buf);

		/* delivery never gets the password hash */
		assert_string_equal(rcpt.users[i].password_hash, "");
		snprintf(buf + len, size - len, "%s;", rcpt.users[i].address);
	}
	return buf;
}

static void collect_alias(void *ctx, const char *address, const char *target)
{
	struct collect *c = ctx;
	size_t len = strlen(c->buf);

	snprintf(c->buf + len, sizeof(c->buf) - len, "%s>%s;", address, target);
}

static void test_resolve(void **state)
{
	struct fixture *fx = *state;
	struct dir *dir = open_ok(fx, true);
	const char *err = NULL;
	char buf[1024];

	assert_int_equal(dir_domain_add(dir, "one.test", &err), 0);
	assert_int_equal(dir_domain_add(dir, "two.test", &err), 0);
	assert_int_equal(dir_domain_add(dir, "empty.test", &err), 0);
	/* zed first: the first-created mailbox, not the first by name */
	assert_int_equal(dir_user_add(dir, "zed@one.test", "$y$z", &err), 0);
	assert_int_equal(dir_user_add(dir, "amy@one.test", "$y$a", &err), 0);
	assert_int_equal(dir_user_add(dir, "bo@two.test", "$y$b", &err), 0);

	assert_string_equal(resolve(dir, "amy@one.test", buf, sizeof(buf)), "amy@one.test;");
	assert_string_equal(resolve(dir, "AMY@One.Test", buf, sizeof(buf)), "amy@one.test;");
	assert_string_equal(resolve(dir, "nobody@one.test", buf, sizeof(buf)), "NO_USER");
	assert_string_equal(resolve(dir, "amy@elsewhere.example", buf, sizeof(buf)), "NOT_LOCAL");
	assert_string_equal(resolve(dir, "noat", buf, sizeof(buf)), "NOT_LOCAL");

	/* RFC 5321 §4.5.1: postmaster without an alias */
	assert_string_equal(resolve(dir, "postmaster@one.test", buf, sizeof(buf)), "zed@one.test;");
	assert_string_equal(resolve(dir, "PostMaster@two.test", buf, sizeof(buf)), "bo@two.test;");
	assert_string_equal(resolve(dir, "postmaster@empty.test", buf, sizeof(buf)), "NO_USER");
	assert_string_equal(resolve(dir, "postmaster", buf, sizeof(buf)), "zed@one.test;");
	/* an alias overrides it */
	assert_int_equal(dir_alias_add(dir, "postmaster@one.test", "amy@one.test", &err), 0);
	assert_string_equal(resolve(dir, "postmaster@one.test", buf, sizeof(buf)), "amy@one.test;");
	dir_close(&dir);
}

static void test_aliases(void **state)
{
	struct fixture *fx = *state;
	struct dir *dir = open_ok(fx, true);
	struct collect c = {""};
	const char *err = NULL;
	char buf[1024];

	assert_int_equal(dir_domain_add(dir, "one.test", &err), 0);
	assert_int_equal(dir_domain_add(dir, "two.test", &err), 0);
	assert_int_equal(dir_user_add(dir, "amy@one.test", "$y$a", &err), 0);
	assert_int_equal(dir_user_add(dir, "bo@one.test", "$y$b", &err), 0);
	assert_int_equal(dir_user_add(dir, "cy@two.test", "$y$c", &err), 0);

	/* fan-out, duplicates removed, across domains, nested */
	assert_int_equal(dir_alias_add(dir, "team@one.test", "amy@one.test", &err), 0);
	assert_int_equal(dir_alias_add(dir, "team@one.test", "BO@one.test", &err), 0);
	assert_int_equal(dir_alias_add(dir, "all@two.test", "team@one.test", &err), 0);
	assert_int_equal(dir_alias_add(dir, "all@two.test", "cy@two.test", &err), 0);
	assert_int_equal(dir_alias_add(dir, "all@two.test", "amy@one.test", &err), 0);
	assert_string_equal(resolve(dir, "team@one.test", buf, sizeof(buf)),
	                    "amy@one.test;bo@one.test;");
	/* breadth first, in the order the targets were added */
	assert_string_equal(resolve(dir, "all@two.test", buf, sizeof(buf)),
	                    "cy@two.test;amy@one.test;bo@one.test;");

	/* refusals */
	assert_int_equal(dir_alias_add(dir, "team@one.test", "amy@one.test", &err), -1);
	assert_string_equal(err, "alias team@one.test already points to amy@one.test");
	assert_int_equal(dir_alias_add(dir, "x@nope.test", "amy@one.test", &err), -1);
	assert_string_equal(err, "domain nope.test is not local");
	assert_int_equal(dir_alias_add(dir, "amy@one.test", "bo@one.test", &err), -1);
	assert_string_equal(err, "amy@one.test is a mailbox");
	assert_int_equal(dir_alias_add(dir, "x@one.test", "ghost@one.test", &err), -1);
	assert_string_equal(err, "target ghost@one.test is no mailbox or alias");
	assert_int_equal(dir_alias_add(dir, "x@one.test", "a@remote.example", &err), -1);
	assert_string_equal(err, "target a@remote.example is not in a local domain");
	assert_int_equal(dir_alias_add(dir, "x@one.test", "x@one.test", &err), -1);
	/* a loop: team -> all -> team */
	assert_int_equal(dir_alias_add(dir, "team@one.test", "all@two.test", &err), -1);
	assert_non_null(strstr(err, "loop"));
	/* a mailbox cannot take an alias's address */
	assert_int_equal(dir_user_add(dir, "team@one.test", "$y$t", &err), -1);
	assert_string_equal(err, "team@one.test is an alias");

	assert_int_equal(dir_alias_list(dir, NULL, collect_alias, &c, &err), 0);
	assert_string_equal(c.buf, "all@two.test>amy@one.test;all@two.test>cy@two.test;"
	                           "all@two.test>team@one.test;team@one.test>amy@one.test;"
	                           "team@one.test>bo@one.test;");
	c.buf[0] = '\0';
	assert_int_equal(dir_alias_list(dir, "one.test", collect_alias, &c, &err), 0);
	assert_string_equal(c.buf, "team@one.test>amy@one.test;team@one.test>bo@one.test;");

	/* deleting one target, then the rest */
	assert_int_equal(dir_alias_del(dir, "all@two.test", "cy@two.test", &err), 0);
	assert_int_equal(dir_alias_del(dir, "all@two.test", "cy@two.test", &err), -1);
	assert_string_equal(err, "alias all@two.test does not point to cy@two.test");
	assert_int_equal(dir_alias_del(dir, "all@two.test", NULL, &err), 0);
	assert_int_equal(dir_alias_del(dir, "all@two.test", NULL, &err), -1);
	assert_string_equal(err, "no such alias all@two.test");
	assert_string_equal(resolve(dir, "all@two.test", buf, sizeof(buf)), "NO_USER");

	/* deleting a mailbox removes the alias rows that name it */
	assert_int_equal(dir_user_del(dir, "amy@one.test", &err), 0);
	assert_string_equal(resolve(dir, "team@one.test", buf, sizeof(buf)), "bo@one.test;");
	c.buf[0] = '\0';
	assert_int_equal(dir_alias_list(dir, NULL, collect_alias, &c, &err), 0);
	assert_string_equal(c.buf, "team@one.test>bo@one.test;");

	/* deleting a domain removes its aliases */
	assert_int_equal(dir_alias_add(dir, "fwd@two.test", "bo@one.test", &err), 0);
	assert_int_equal(dir_user_del(dir, "cy@two.test", &err), 0);
	assert_int_equal(dir_domain_del(dir, "two.test", &err), 0);
	assert_int_equal(dir_domain_add(dir, "two.test", &err), 0);
	assert_string_equal(resolve(dir, "fwd@two.test", buf, sizeof(buf)), "NO_USER");
	dir_close(&dir);
}

static void test_alias_limits(void **state)
{
	struct fixture *fx = *state;
	struct dir *dir = open_ok(fx, true);
	const char *err = NULL;
	char a[64], b[64], buf[4096];

	assert_int_equal(dir_domain_add(dir, "d.test", &err), 0);
	assert_int_equal(dir_user_add(dir, "end@d.test", "$y$e", &err), 0);

	/* a chain: l0 -> end, l1 -> l0, ... as deep as allowed */
	assert_int_equal(dir_alias_add(dir, "l0@d.test", "end@d.test", &err), 0);
	int i;
	for (i = 1; i < DIR_MAX_ALIAS_DEPTH; i++) {
		snprintf(a, sizeof(a), "l%d@d.test", i);
		snprintf(b, sizeof(b), "l%d@d.test", i - 1);
		if (dir_alias_add(dir, a, b, &err) < 0)
			fail_msg("level %d: %s", i, err);
	}
	snprintf(a, sizeof(a), "l%d@d.test", i - 1);
	assert_string_equal(resolve(dir, a, buf, sizeof(buf)), "end@d.test;");
	snprintf(a, sizeof(a), "l%d@d.test", i);
	snprintf(b, sizeof(b), "l%d@d.test", i - 1);
	assert_int_equal(dir_alias_add(dir, a, b, &err), -1);
	assert_non_null(strstr(err, "deeper"));

	/* fan-out: DIR_MAX_TARGETS mailboxes, and not one more */
	for (i = 0; i < DIR_MAX_TARGETS + 1; i++) {
		snprintf(a, sizeof(a), "u%d@d.test", i);
		assert_int_equal(dir_user_add(dir, a, "$y$u", &err), 0);
	}
	for (i = 0; i < DIR_MAX_TARGETS; i++) {
		snprintf(a, sizeof(a), "u%d@d.test", i);
		if (dir_alias_add(dir, "many@d.test", a, &err) < 0)
			fail_msg("target %d: %s", i, err);
	}
	assert_int_equal(dir_alias_add(dir, "many@d.test", "end@d.test", &err), -1);
	assert_non_null(strstr(err, "more than"));
	const char *r = resolve(dir, "many@d.test", buf, sizeof(buf));
	size_t n = 0;
	for (const char *p = r; *p != '\0'; p++)
		n += *p == ';';
	assert_int_equal(n, DIR_MAX_TARGETS);
	dir_close(&dir);
}

static void test_quota(void **state)
{
	struct fixture *fx = *state;
	struct dir *dir = open_ok(fx, true);
	const char *err = NULL;
	struct dir_user u;

	assert_int_equal(dir_domain_add(dir, "q.test", &err), 0);
	assert_int_equal(dir_user_add(dir, "q@q.test", "$y$q", &err), 0);
	assert_int_equal(dir_user_set_quota(dir, "Q@q.test", 1048576, 100, &err), 0);
	assert_int_equal(dir_user_lookup(dir, "q@q.test", &u, &err), 1);
	assert_int_equal(u.quota_bytes, 1048576);
	assert_int_equal(u.quota_messages, 100);
	assert_int_equal(dir_user_set_quota(dir, "q@q.test", 0, 0, &err), 0);
	assert_int_equal(dir_user_lookup(dir, "q@q.test", &u, &err), 1);
	assert_int_equal(u.quota_bytes, 0);
	assert_int_equal(u.quota_messages, 0);
	assert_int_equal(dir_user_set_quota(dir, "nobody@q.test", 1, 1, &err), -1);
	assert_string_equal(err, "no such mailbox nobody@q.test");
	assert_int_equal(dir_user_set_quota(dir, "q@q.test", UINT64_MAX, 0, &err), -1);
	dir_close(&dir);
}

static void test_lock_and_rename(void **state)
{
	struct fixture *fx = *state;
	struct dir *dir = open_ok(fx, true);
	const char *err = NULL;
	char buf[1024];
	struct dir_user u;

	assert_int_equal(dir_domain_add(dir, "one.test", &err), 0);
	assert_int_equal(dir_domain_add(dir, "two.test", &err), 0);
	assert_int_equal(dir_user_add(dir, "amy@one.test", "$y$a", &err), 0);
	assert_int_equal(dir_user_add(dir, "bo@one.test", "$y$b", &err), 0);
	assert_int_equal(dir_user_add(dir, "cy@two.test", "$y$c", &err), 0);
	assert_int_equal(dir_alias_add(dir, "team@one.test", "amy@one.test", &err), 0);
	assert_int_equal(dir_alias_add(dir, "team@one.test", "bo@one.test", &err), 0);
	assert_int_equal(dir_user_set_quota(dir, "amy@one.test", 4096, 7, &err), 0);

	assert_int_equal(dir_user_set_locked(dir, "AMY@one.test", true, &err), 0);
	assert_int_equal(dir_user_lookup(dir, "amy@one.test", &u, &err), 1);
	assert_true(u.locked);
	assert_int_equal(dir_user_set_locked(dir, "nobody@one.test", true, &err), -1);
	assert_string_equal(err, "no such mailbox nobody@one.test");

	/* refused: the new address is taken, or not local, or the old one
	 * does not exist */
	assert_int_equal(dir_user_rename(dir, "amy@one.test", "bo@one.test", &err), -1);
	assert_non_null(strstr(err, "a mailbox"));
	assert_int_equal(dir_user_rename(dir, "amy@one.test", "team@one.test", &err), -1);
	assert_non_null(strstr(err, "an alias"));
	assert_int_equal(dir_user_rename(dir, "amy@one.test", "amy@three.test", &err), -1);
	assert_non_null(strstr(err, "not local"));
	assert_int_equal(dir_user_rename(dir, "nobody@one.test", "x@one.test", &err), -1);
	assert_non_null(strstr(err, "no such mailbox"));
	assert_int_equal(dir_user_lookup(dir, "amy@one.test", &u, &err), 1);

	/* into the other domain: everything but the address stays, the alias
	 * follows, and amy is the newest mailbox of two.test */
	assert_int_equal(dir_user_rename(dir, "amy@one.test", "Ann@two.test", &err), 0);
	assert_int_equal(dir_user_lookup(dir, "amy@one.test", &u, &err), 0);
	assert_int_equal(dir_user_lookup(dir, "ann@two.test", &u, &err), 1);
	assert_string_equal(u.password_hash, "$y$a");
	assert_true(u.locked);
	assert_int_equal(u.quota_bytes, 4096);
	assert_int_equal(u.quota_messages, 7);
	assert_string_equal(resolve(dir, "team@one.test", buf, sizeof(buf)),
	                    "ann@two.test;bo@one.test;");
	assert_string_equal(resolve(dir, "postmaster@two.test", buf, sizeof(buf)), "cy@two.test;");
	assert_string_equal(resolve(dir, "postmaster@one.test", buf, sizeof(buf)), "bo@one.test;");
	assert_string_equal(resolve(dir, "amy@one.test", buf, sizeof(buf)), "NO_USER");
	dir_close(&dir);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_setup_teardown(test_open, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_domains, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_users, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_resolve, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_aliases, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_alias_limits, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_quota, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_lock_and_rename, setup, teardown),
	    cmocka_unit_test(test_check_address),
	    cmocka_unit_test(test_check_domain),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
