/* Unit tests for src/core/util.c. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdlib.h>
#include <string.h>

#include "core/util.h"

static int pu(const char *s, uint64_t max, uint64_t *out)
{
	return parse_uint(s, strlen(s), max, out);
}

static void test_parse_uint_ok(void **state)
{
	uint64_t v = 99;

	(void)state;
	assert_int_equal(pu("0", 10, &v), 0);
	assert_int_equal(v, 0);
	assert_int_equal(pu("42", UINT64_MAX, &v), 0);
	assert_int_equal(v, 42);
	assert_int_equal(pu("007", 10, &v), 0);
	assert_int_equal(v, 7);
	/* exactly max */
	assert_int_equal(pu("10", 10, &v), 0);
	assert_int_equal(v, 10);
	assert_int_equal(pu("18446744073709551615", UINT64_MAX, &v), 0);
	assert_true(v == UINT64_MAX);
	assert_int_equal(pu("4294967295", UINT32_MAX, &v), 0);
	assert_true(v == UINT32_MAX);
	/* only [s, s+len) is looked at */
	assert_int_equal(parse_uint("123abc", 3, 1000, &v), 0);
	assert_int_equal(v, 123);
}

static void test_parse_uint_bad(void **state)
{
	uint64_t v = 77;

	(void)state;
	assert_int_equal(pu("", 10, &v), -1);
	assert_int_equal(pu("+1", 10, &v), -1);
	assert_int_equal(pu("-1", 10, &v), -1);
	assert_int_equal(pu("1x", 10, &v), -1);
	assert_int_equal(pu(" 1", 10, &v), -1);
	assert_int_equal(pu("1 ", 10, &v), -1);
	assert_int_equal(pu("0x10", 100, &v), -1);
	assert_int_equal(pu("11", 10, &v), -1);
	/* 2^32 + 1 against a 32-bit max */
	assert_int_equal(pu("4294967297", UINT32_MAX, &v), -1);
	assert_int_equal(pu("4294967296", UINT32_MAX, &v), -1);
	/* 20 digits beyond 2^64 - 1 */
	assert_int_equal(pu("18446744073709551616", UINT64_MAX, &v), -1);
	assert_int_equal(pu("99999999999999999999", UINT64_MAX, &v), -1);
	assert_int_equal(pu("123456789012345678901234", UINT64_MAX, &v), -1);
	assert_int_equal(parse_uint(NULL, 0, 10, &v), -1);
	assert_int_equal(parse_uint("1\0"
	                            "2",
	                            3, 100, &v),
	                 -1);
	/* failures leave out untouched */
	assert_int_equal(v, 77);
}

static void test_parse_size(void **state)
{
	uint64_t v;

	(void)state;
	assert_int_equal(parse_size("1000", &v), 0);
	assert_int_equal(v, 1000);
	assert_int_equal(parse_size("512K", &v), 0);
	assert_int_equal(v, 512 * 1024);
	assert_int_equal(parse_size("50M", &v), 0);
	assert_int_equal(v, 50ull * 1024 * 1024);
	assert_int_equal(parse_size("2G", &v), 0);
	assert_true(v == 2ull * 1024 * 1024 * 1024);
	assert_int_equal(parse_size("0", &v), 0);
	assert_int_equal(v, 0);
	assert_int_equal(parse_size("", &v), -1);
	assert_int_equal(parse_size("M", &v), -1);
	assert_int_equal(parse_size("5MB", &v), -1);
	assert_int_equal(parse_size("5 M", &v), -1);
	assert_int_equal(parse_size("-5M", &v), -1);
	assert_int_equal(parse_size("5T", &v), -1);
	assert_int_equal(parse_size("1.5M", &v), -1);
	/* overflow of the product */
	assert_int_equal(parse_size("18446744073709551615G", &v), -1);
	assert_int_equal(parse_size("17179869184G", &v), -1);
}

static void test_parse_duration(void **state)
{
	uint64_t v;

	(void)state;
	assert_int_equal(parse_duration_ms("0", &v), 0);
	assert_int_equal(v, 0);
	assert_int_equal(parse_duration_ms("250ms", &v), 0);
	assert_int_equal(v, 250);
	assert_int_equal(parse_duration_ms("60s", &v), 0);
	assert_int_equal(v, 60000);
	assert_int_equal(parse_duration_ms("10m", &v), 0);
	assert_int_equal(v, 600000);
	assert_int_equal(parse_duration_ms("2h", &v), 0);
	assert_int_equal(v, 7200000);
	assert_int_equal(parse_duration_ms("0s", &v), 0);
	assert_int_equal(v, 0);
	/* a bare non-zero number is ambiguous */
	assert_int_equal(parse_duration_ms("10", &v), -1);
	assert_int_equal(parse_duration_ms("", &v), -1);
	assert_int_equal(parse_duration_ms("s", &v), -1);
	assert_int_equal(parse_duration_ms("10 m", &v), -1);
	assert_int_equal(parse_duration_ms("10min", &v), -1);
	assert_int_equal(parse_duration_ms("1d", &v), -1);
	assert_int_equal(parse_duration_ms("-1s", &v), -1);
	assert_int_equal(parse_duration_ms("18446744073709551615h", &v), -1);
}

static void test_random(void **state)
{
	char a[17], b[17];
	unsigned char raw[64] = {0}, zero[64] = {0};

	(void)state;
	random_token(a, 16);
	random_token(b, 16);
	assert_int_equal(strlen(a), 16);
	assert_string_not_equal(a, b);
	for (size_t i = 0; i < 16; i++)
		assert_non_null(strchr("abcdefghijklmnopqrstuvwxyz234567", a[i]));
	random_token(a, 0);
	assert_string_equal(a, "");
	random_bytes(raw, sizeof(raw));
	assert_memory_not_equal(raw, zero, sizeof(raw));
}

static void test_strings(void **state)
{
	char s[] = "MiXeD@Example.TEST-09";
	char *p;

	(void)state;
	str_lower(s);
	assert_string_equal(s, "mixed@example.test-09");
	p = xasprintf("%s=%d", "n", 5);
	assert_string_equal(p, "n=5");
	x_free(&p);
	assert_null(p);
	x_free(&p);
	p = xstrdup("abc");
	assert_string_equal(p, "abc");
	free(p);
}

static void test_now_ms(void **state)
{
	uint64_t a, b;

	(void)state;
	a = now_ms();
	b = now_ms();
	assert_true(b >= a);
	assert_true(a > 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_parse_uint_ok), cmocka_unit_test(test_parse_uint_bad),
	    cmocka_unit_test(test_parse_size),    cmocka_unit_test(test_parse_duration),
	    cmocka_unit_test(test_random),        cmocka_unit_test(test_strings),
	    cmocka_unit_test(test_now_ms),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
