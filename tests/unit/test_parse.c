/* POP3 command line parsing and message-number arguments. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "pop3/parse.h"

/* Parse a copy of line[0..len); the copy has one spare byte where the line
 * terminator would be, as in the connection's line buffer. */
static enum pop3_parse_result parse(const char *line, size_t len, struct pop3_cmd *cmd,
                                    char copy[POP3_MAX_LINE + 1])
{
	assert_true(len <= POP3_MAX_LINE);
	memcpy(copy, line, len);
	copy[len] = '\r';
	return pop3_parse(copy, len, cmd);
}

#define PARSE(s, cmd, copy) parse(s, sizeof(s) - 1, cmd, copy)

static void test_commands(void **state)
{
	(void)state;
	struct pop3_cmd cmd;
	char copy[POP3_MAX_LINE + 1];

	assert_int_equal(PARSE("STAT", &cmd, copy), POP3_PARSE_OK);
	assert_string_equal(cmd.keyword, "STAT");
	assert_int_equal(cmd.argc, 0);

	assert_int_equal(PARSE("RETR 1", &cmd, copy), POP3_PARSE_OK);
	assert_string_equal(cmd.keyword, "RETR");
	assert_int_equal(cmd.argc, 1);
	assert_string_equal(cmd.argv[0], "1");

	assert_int_equal(PARSE("TOP 12 0", &cmd, copy), POP3_PARSE_OK);
	assert_string_equal(cmd.keyword, "TOP");
	assert_int_equal(cmd.argc, 2);
	assert_string_equal(cmd.argv[0], "12");
	assert_string_equal(cmd.argv[1], "0");

	assert_int_equal(PARSE("APOP mrose c4c9334bac560ecc979e58001b3e22fb", &cmd, copy),
	                 POP3_PARSE_OK);
	assert_int_equal(cmd.argc, 2);
	assert_string_equal(cmd.argv[0], "mrose");
	assert_string_equal(cmd.argv[1], "c4c9334bac560ecc979e58001b3e22fb");
}

static void test_case(void **state)
{
	(void)state;
	struct pop3_cmd cmd;
	char copy[POP3_MAX_LINE + 1];

	assert_int_equal(PARSE("uidl", &cmd, copy), POP3_PARSE_OK);
	assert_string_equal(cmd.keyword, "UIDL");
	assert_int_equal(PARSE("uSeR Alice", &cmd, copy), POP3_PARSE_OK);
	assert_string_equal(cmd.keyword, "USER");
	/* Arguments keep their case. */
	assert_string_equal(cmd.argv[0], "Alice");
}

static void test_args_spaces(void **state)
{
	(void)state;
	struct pop3_cmd cmd;
	char copy[POP3_MAX_LINE + 1];

	assert_int_equal(PARSE("TOP  1   2", &cmd, copy), POP3_PARSE_OK);
	assert_int_equal(cmd.argc, 2);
	assert_string_equal(cmd.argv[0], "1");
	assert_string_equal(cmd.argv[1], "2");

	assert_int_equal(PARSE("LIST ", &cmd, copy), POP3_PARSE_OK);
	assert_int_equal(cmd.argc, 0);

	assert_int_equal(PARSE("LIST 3 ", &cmd, copy), POP3_PARSE_OK);
	assert_int_equal(cmd.argc, 1);
	assert_string_equal(cmd.argv[0], "3");

	/* 8-bit argument bytes are allowed (RFC 6856). */
	assert_int_equal(PARSE("USER j\xc3\xb6rg", &cmd, copy), POP3_PARSE_OK);
	assert_string_equal(cmd.argv[0], "j\xc3\xb6rg");
}

static void test_pass_with_spaces(void **state)
{
	(void)state;
	struct pop3_cmd cmd;
	char copy[POP3_MAX_LINE + 1];

	assert_int_equal(PARSE("PASS my secret  pass ", &cmd, copy), POP3_PARSE_OK);
	assert_string_equal(cmd.keyword, "PASS");
	assert_int_equal(cmd.argc, 1);
	assert_string_equal(cmd.argv[0], "my secret  pass ");

	assert_int_equal(PARSE("pass  lead", &cmd, copy), POP3_PARSE_OK);
	assert_int_equal(cmd.argc, 1);
	assert_string_equal(cmd.argv[0], " lead");

	assert_int_equal(PARSE("PASS", &cmd, copy), POP3_PARSE_OK);
	assert_int_equal(cmd.argc, 0);
	assert_int_equal(PARSE("PASS ", &cmd, copy), POP3_PARSE_OK);
	assert_int_equal(cmd.argc, 0);
}

static void test_empty(void **state)
{
	(void)state;
	struct pop3_cmd cmd;
	char copy[POP3_MAX_LINE + 1];

	assert_int_equal(parse("", 0, &cmd, copy), POP3_PARSE_EMPTY);
}

static void test_bad_chars(void **state)
{
	(void)state;
	struct pop3_cmd cmd;
	char copy[POP3_MAX_LINE + 1];

	assert_int_equal(PARSE("USER a\0b", &cmd, copy), POP3_PARSE_BAD_CHAR);
	assert_int_equal(PARSE("USER a\rb", &cmd, copy), POP3_PARSE_BAD_CHAR);
	assert_int_equal(PARSE("STAT\r", &cmd, copy), POP3_PARSE_BAD_CHAR);
	assert_int_equal(PARSE("\0", &cmd, copy), POP3_PARSE_BAD_CHAR);
	assert_int_equal(PARSE("USER\ta", &cmd, copy), POP3_PARSE_BAD_CHAR);
	assert_int_equal(PARSE("PASS a\x7f", &cmd, copy), POP3_PARSE_BAD_CHAR);
	assert_int_equal(PARSE("PASS a\nb", &cmd, copy), POP3_PARSE_BAD_CHAR);
}

static void test_bad_keyword(void **state)
{
	(void)state;
	struct pop3_cmd cmd;
	char copy[POP3_MAX_LINE + 1];

	assert_int_equal(PARSE("ST", &cmd, copy), POP3_PARSE_KEYWORD);
	assert_int_equal(PARSE("STATS", &cmd, copy), POP3_PARSE_KEYWORD);
	assert_int_equal(PARSE("ST1T", &cmd, copy), POP3_PARSE_KEYWORD);
	assert_int_equal(PARSE(" STAT", &cmd, copy), POP3_PARSE_KEYWORD);
	assert_int_equal(PARSE(" ", &cmd, copy), POP3_PARSE_KEYWORD);
	assert_int_equal(PARSE("ST\xc3\x84T", &cmd, copy), POP3_PARSE_KEYWORD);
}

static void test_too_many_args(void **state)
{
	(void)state;
	struct pop3_cmd cmd;
	char copy[POP3_MAX_LINE + 1];

	assert_int_equal(PARSE("TOP 1 2 3", &cmd, copy), POP3_PARSE_TOO_MANY);
	assert_int_equal(PARSE("TOP 1 2 ", &cmd, copy), POP3_PARSE_OK);
	assert_int_equal(cmd.argc, 2);
}

static void test_max_length_line(void **state)
{
	(void)state;
	struct pop3_cmd cmd;
	char line[POP3_MAX_LINE];
	char copy[POP3_MAX_LINE + 1];

	memset(line, 'x', sizeof(line));
	memcpy(line, "USER ", 5);
	assert_int_equal(parse(line, sizeof(line), &cmd, copy), POP3_PARSE_OK);
	assert_int_equal(cmd.argc, 1);
	assert_int_equal(strlen(cmd.argv[0]), POP3_MAX_LINE - 5);
}

static void test_msgnum(void **state)
{
	(void)state;
	uint64_t v = 0;

	assert_int_equal(pop3_parse_msgnum("1", 10, &v), 0);
	assert_int_equal(v, 1);
	assert_int_equal(pop3_parse_msgnum("10", 10, &v), 0);
	assert_int_equal(v, 10);
	assert_int_equal(pop3_parse_msgnum("007", 10, &v), 0);
	assert_int_equal(v, 7);
	assert_int_equal(pop3_parse_msgnum("11", 10, &v), -1);
	assert_int_equal(pop3_parse_msgnum("0", 10, &v), -1);
	assert_int_equal(pop3_parse_msgnum("00", 10, &v), -1);
	assert_int_equal(pop3_parse_msgnum("-1", 10, &v), -1);
	assert_int_equal(pop3_parse_msgnum("+1", 10, &v), -1);
	assert_int_equal(pop3_parse_msgnum("1x", 10, &v), -1);
	assert_int_equal(pop3_parse_msgnum(" 1", 10, &v), -1);
	assert_int_equal(pop3_parse_msgnum("1 ", 10, &v), -1);
	assert_int_equal(pop3_parse_msgnum("", 10, &v), -1);
	assert_int_equal(pop3_parse_msgnum("1", 0, &v), -1);
	/* 2^32 + 1 must not wrap to 1. */
	assert_int_equal(pop3_parse_msgnum("4294967297", 10, &v), -1);
	assert_int_equal(pop3_parse_msgnum("4294967297", UINT32_MAX, &v), -1);
	assert_int_equal(pop3_parse_msgnum("4294967297", UINT64_MAX, &v), 0);
	assert_int_equal(v, 4294967297ULL);
	/* 20 digits: past 2^64 - 1 must not wrap either. */
	assert_int_equal(pop3_parse_msgnum("18446744073709551615", UINT64_MAX, &v), 0);
	assert_true(v == UINT64_MAX);
	assert_int_equal(pop3_parse_msgnum("18446744073709551616", UINT64_MAX, &v), -1);
	assert_int_equal(pop3_parse_msgnum("18446744073709551617", 10, &v), -1);
	assert_int_equal(pop3_parse_msgnum("99999999999999999999", UINT64_MAX, &v), -1);
	assert_int_equal(pop3_parse_msgnum("100000000000000000001", UINT64_MAX, &v), -1);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_commands),        cmocka_unit_test(test_case),
	    cmocka_unit_test(test_args_spaces),     cmocka_unit_test(test_pass_with_spaces),
	    cmocka_unit_test(test_empty),           cmocka_unit_test(test_bad_chars),
	    cmocka_unit_test(test_bad_keyword),     cmocka_unit_test(test_too_many_args),
	    cmocka_unit_test(test_max_length_line), cmocka_unit_test(test_msgnum),
	};
	return cmocka_run_group_tests_name("parse", tests, NULL, NULL);
}
