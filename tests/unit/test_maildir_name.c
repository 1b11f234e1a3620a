/* Maildir file names: parsing, UIDLs, CRLF size counting, renaming with sizes. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "store/maildir_name.h"

static void test_parse_with_sizes(void **state)
{
	(void)state;
	struct maildir_name n;
	const char *name = "1700000000.M1P2Q3.host,S=1234,W=1260";

	assert_int_equal(maildir_name_parse(name, &n), 0);
	assert_int_equal(n.unique_len, strlen("1700000000.M1P2Q3.host"));
	assert_ptr_equal(n.unique, name);
	assert_true(n.has_size);
	assert_true(n.has_vsize);
	assert_int_equal(n.size, 1234);
	assert_int_equal(n.vsize, 1260);
	assert_null(n.info);
}

static void test_parse_with_info(void **state)
{
	(void)state;
	struct maildir_name n;

	assert_int_equal(maildir_name_parse("abc,S=5,W=6:2,RS", &n), 0);
	assert_int_equal(n.unique_len, 3);
	assert_int_equal(n.size, 5);
	assert_int_equal(n.vsize, 6);
	assert_string_equal(n.info, "2,RS");

	/* Other Dovecot fields are skipped; order does not matter. */
	assert_int_equal(maildir_name_parse("abc,W=9,XYZ=1,S=8:2,", &n), 0);
	assert_true(n.has_size && n.has_vsize);
	assert_int_equal(n.size, 8);
	assert_int_equal(n.vsize, 9);
	assert_string_equal(n.info, "2,");

	/* The unique part ends at ':' too. */
	assert_int_equal(maildir_name_parse("abc:2,S", &n), 0);
	assert_int_equal(n.unique_len, 3);
	assert_false(n.has_size);
	assert_false(n.has_vsize);
	assert_string_equal(n.info, "2,S");

	/* ",S=" after ':' belongs to the info, not to the sizes. */
	assert_int_equal(maildir_name_parse("abc:2,S=5", &n), 0);
	assert_false(n.has_size);
}

static void test_parse_without_sizes(void **state)
{
	(void)state;
	struct maildir_name n;

	assert_int_equal(maildir_name_parse("1700000000.123.host", &n), 0);
	assert_int_equal(n.unique_len, strlen("1700000000.123.host"));
	assert_false(n.has_size);
	assert_false(n.has_vsize);
	assert_null(n.info);

	assert_int_equal(maildir_name_parse("abc,S=7", &n), 0);
	assert_true(n.has_size);
	assert_false(n.has_vsize);
}

static void test_parse_malformed_sizes(void **state)
{
	(void)state;
	struct maildir_name n;

	assert_int_equal(maildir_name_parse("abc,S=,W=x1", &n), 0);
	assert_false(n.has_size);
	assert_false(n.has_vsize);
	assert_int_equal(maildir_name_parse("abc,S=-1,W=1 ", &n), 0);
	assert_false(n.has_size);
	assert_false(n.has_vsize);
	/* 2^64 overflows; 2^64 - 1 does not. */
	assert_int_equal(maildir_name_parse("abc,S=18446744073709551616", &n), 0);
	assert_false(n.has_size);
	assert_int_equal(maildir_name_parse("abc,S=18446744073709551615", &n), 0);
	assert_true(n.has_size);
	assert_true(n.size == UINT64_MAX);
}

static void test_parse_bad_names(void **state)
{
	(void)state;
	struct maildir_name n;

	assert_int_equal(maildir_name_parse("", &n), -1);
	assert_int_equal(maildir_name_parse(".", &n), -1);
	assert_int_equal(maildir_name_parse("..", &n), -1);
	assert_int_equal(maildir_name_parse(".hidden,S=1,W=1", &n), -1);
	assert_int_equal(maildir_name_parse("a/b", &n), -1);
	assert_int_equal(maildir_name_parse(",S=1,W=1", &n), -1);
	assert_int_equal(maildir_name_parse(":2,S", &n), -1);
}

static void uidl_of(const char *name, char out[MAILDIR_UIDL_MAX + 1])
{
	struct maildir_name n;
	assert_int_equal(maildir_name_parse(name, &n), 0);
	maildir_uidl(&n, out);
}

static void test_uidl(void **state)
{
	(void)state;
	char uidl[MAILDIR_UIDL_MAX + 1];

	uidl_of("1700000000.M1P2Q3.host,S=1,W=2:2,S", uidl);
	assert_string_equal(uidl, "1700000000.M1P2Q3.host");

	/* Exactly 70 characters: used as is. */
	char name[200];
	memset(name, 'x', 70);
	strcpy(name + 70, ",S=1");
	uidl_of(name, uidl);
	assert_int_equal(strlen(uidl), 70);
	assert_memory_equal(uidl, name, 70);

	/* 71 characters: SHA-256 hex, truncated to 64 (all of it). */
	memset(name, 'x', 71);
	strcpy(name + 71, ",S=1");
	uidl_of(name, uidl);
	assert_string_equal(uidl,
	                    "87a1e4c1c92b7b7a7c46433d780de6cc19f9ef34fdb872c875fd6363ab238a56");

	/* Not printable (space): hashed too, and stable. */
	uidl_of("a b,S=3", uidl);
	assert_string_equal(uidl,
	                    "c8687a08aa5d6ed2044328fa6a697ab8e96dc34291e8c2034ae8c38e6fcc6d65");
	char again[MAILDIR_UIDL_MAX + 1];
	uidl_of("a b:2,S", again);
	assert_string_equal(uidl, again);

	uidl_of("a\x80"
	        "b",
	        uidl);
	assert_int_equal(strlen(uidl), 64);
	uidl_of("a\x7f"
	        "b",
	        uidl);
	assert_int_equal(strlen(uidl), 64);
}

static uint64_t vsize_in_chunks(const char *s, size_t len, size_t chunk)
{
	uint64_t v = 0;
	bool prev_cr = false;
	for (size_t i = 0; i < len; i += chunk) {
		size_t n = len - i < chunk ? len - i : chunk;
		maildir_count_vsize(s + i, n, &prev_cr, &v);
	}
	return v;
}

static void test_count_vsize(void **state)
{
	(void)state;
	static const struct {
		const char *s;
		uint64_t want;
	} cases[] = {
	    {"", 0},         {"abc", 3},    {"a\n", 3},    {"a\r\n", 3},     {"\n\n", 4},
	    {"\r\n\r\n", 4}, {"a\rb\n", 5}, {"\r\r\n", 3}, {"x\r\ny\nz", 7}, {"\n\r\n\n\r", 7},
	};
	for (size_t c = 0; c < sizeof(cases) / sizeof(cases[0]); c++) {
		size_t len = strlen(cases[c].s);
		for (size_t chunk = 1; chunk <= len + 1; chunk++)
			assert_int_equal(vsize_in_chunks(cases[c].s, len, chunk), cases[c].want);
	}

	/* CR at the end of one chunk, LF at the start of the next. */
	uint64_t v = 0;
	bool prev_cr = false;
	maildir_count_vsize("ab\r", 3, &prev_cr, &v);
	assert_true(prev_cr);
	maildir_count_vsize("\ncd\n", 4, &prev_cr, &v);
	assert_false(prev_cr);
	assert_int_equal(v, 8);

	/* An empty chunk changes nothing. */
	prev_cr = true;
	maildir_count_vsize("", 0, &prev_cr, &v);
	assert_true(prev_cr);
	assert_int_equal(v, 8);
}

static void test_name_with_sizes(void **state)
{
	(void)state;
	char *s;

	s = maildir_name_with_sizes("abc", 10, 12);
	assert_string_equal(s, "abc,S=10,W=12");
	free(s);

	s = maildir_name_with_sizes("abc:2,RS", 10, 12);
	assert_string_equal(s, "abc,S=10,W=12:2,RS");
	free(s);

	/* An S= without W= is replaced, other fields stay. */
	s = maildir_name_with_sizes("abc,S=9,X=1:2,", 10, 12);
	assert_string_equal(s, "abc,X=1,S=10,W=12:2,");
	free(s);

	s = maildir_name_with_sizes("abc,W=1", 0, 0);
	assert_string_equal(s, "abc,S=0,W=0");
	free(s);

	/* The result parses back with the same unique part. */
	struct maildir_name n;
	s = maildir_name_with_sizes("u.1.h:2,S", UINT64_MAX, UINT64_MAX);
	assert_int_equal(maildir_name_parse(s, &n), 0);
	assert_int_equal(n.unique_len, 5);
	assert_true(n.size == UINT64_MAX && n.vsize == UINT64_MAX);
	assert_string_equal(n.info, "2,S");
	free(s);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_parse_with_sizes),
	    cmocka_unit_test(test_parse_with_info),
	    cmocka_unit_test(test_parse_without_sizes),
	    cmocka_unit_test(test_parse_malformed_sizes),
	    cmocka_unit_test(test_parse_bad_names),
	    cmocka_unit_test(test_uidl),
	    cmocka_unit_test(test_count_vsize),
	    cmocka_unit_test(test_name_with_sizes),
	};
	return cmocka_run_group_tests_name("maildir_name", tests, NULL, NULL);
}
