/* Quota checks (src/store/quota.c) against a real Maildir. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include <ftw.h>
#include <sys/stat.h>
#include <unistd.h>

#include "store/maildir.h"
#include "store/quota.h"

struct fixture {
	char root[64];
	char *box;
};

static int setup(void **state)
{
	struct fixture *f = calloc(1, sizeof(*f));
	const char *error = NULL;

	strcpy(f->root, "/tmp/pillar-test-quota.XXXXXX");
	if (mkdtemp(f->root) == NULL)
		return -1;
	f->box = maildir_path(f->root, "q@example.org");
	if (f->box == NULL || maildir_create(f->box, &error) < 0)
		return -1;
	*state = f;
	return 0;
}

static int rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	(void)st;
	(void)flag;
	(void)ftw;
	return remove(path);
}

static int teardown(void **state)
{
	struct fixture *f = *state;

	nftw(f->root, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
	free(f->box);
	free(f);
	return 0;
}

/* A message file of `size` bytes named with S= in new/ or cur/. */
static void add_msg(struct fixture *f, const char *sub, int n, unsigned size)
{
	char path[1024];
	FILE *fp;

	snprintf(path, sizeof(path), "%s/%s/%d.M1P1.h,S=%u,W=%u%s", f->box, sub, n, size, size,
	         strcmp(sub, "cur") == 0 ? ":2,S" : "");
	fp = fopen(path, "w");
	assert_non_null(fp);
	for (unsigned i = 0; i < size; i++)
		fputc('x', fp);
	assert_int_equal(fclose(fp), 0);
}

static enum quota_state check(struct fixture *f, uint64_t bytes, uint64_t messages,
                              uint64_t incoming)
{
	enum quota_state st = (enum quota_state) - 1;
	const char *error = NULL;

	if (quota_check(f->box, bytes, messages, incoming, &st, &error) < 0)
		fail_msg("quota_check: %s", error);
	return st;
}

static void test_no_limit(void **state)
{
	struct fixture *f = *state;
	enum quota_state st = QUOTA_FULL;
	const char *error = NULL;

	add_msg(f, "new", 1, 100);
	assert_int_equal(check(f, 0, 0, 0), QUOTA_OK);
	assert_int_equal(check(f, 0, 0, UINT64_MAX), QUOTA_OK);
	/* no limit: the mailbox is not even read */
	assert_int_equal(quota_check("/nonexistent/box", 0, 0, 5, &st, &error), 0);
	assert_int_equal(st, QUOTA_OK);
}

static void test_rcpt_time(void **state)
{
	struct fixture *f = *state;

	assert_int_equal(check(f, 1000, 2, 0), QUOTA_OK); /* empty */
	add_msg(f, "new", 1, 400);
	add_msg(f, "cur", 2, 500);
	/* 2 messages, 900 bytes */
	assert_int_equal(check(f, 1000, 0, 0), QUOTA_OK);
	assert_int_equal(check(f, 900, 0, 0), QUOTA_FULL); /* at the limit */
	assert_int_equal(check(f, 899, 0, 0), QUOTA_FULL);
	assert_int_equal(check(f, 0, 3, 0), QUOTA_OK);
	assert_int_equal(check(f, 0, 2, 0), QUOTA_FULL);
	assert_int_equal(check(f, 10000, 2, 0), QUOTA_FULL); /* either limit */
}

static void test_data_time(void **state)
{
	struct fixture *f = *state;

	add_msg(f, "new", 1, 400);
	/* 1 message, 400 bytes */
	assert_int_equal(check(f, 1000, 0, 600), QUOTA_OK); /* exactly fits */
	assert_int_equal(check(f, 1000, 0, 601), QUOTA_WONT_FIT);
	assert_int_equal(check(f, 1000, 0, UINT64_MAX), QUOTA_WONT_FIT); /* no overflow */
	assert_int_equal(check(f, 300, 0, 1), QUOTA_WONT_FIT);           /* already over */
	assert_int_equal(check(f, 0, 2, 1000000), QUOTA_OK);
	assert_int_equal(check(f, 0, 1, 1), QUOTA_WONT_FIT);
}

static void test_missing_mailbox(void **state)
{
	enum quota_state st;
	const char *error = NULL;

	(void)state;
	assert_int_equal(quota_check("/nonexistent/box", 10, 0, 0, &st, &error), -1);
	assert_non_null(error);
}

#define T(name) cmocka_unit_test_setup_teardown(name, setup, teardown)

int main(void)
{
	const struct CMUnitTest tests[] = {
	    T(test_no_limit),
	    T(test_rcpt_time),
	    T(test_data_time),
	    T(test_missing_mailbox),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
