/* SMTP/LMTP command line parsing: verbs, MAIL/RCPT paths and parameters,
 * BDAT, EHLO arguments, bad octets and the suggested replies. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "smtp/parse.h"

/* Each test parses a copy in a buffer laid out like the connection's: the
 * line, then a NUL where the terminator was. */
static char linebuf[SMTP_MAX_LINE + 64];

static enum smtp_parse_result parse_n(const char *s, size_t len, bool utf8, struct smtp_cmd *cmd)
{
	assert_true(len < sizeof(linebuf));
	memcpy(linebuf, s, len);
	linebuf[len] = '\0';
	return smtp_parse(linebuf, len, utf8, cmd);
}

static enum smtp_parse_result parse(const char *s, struct smtp_cmd *cmd)
{
	return parse_n(s, strlen(s), false, cmd);
}

#define PARSE_LIT(s, utf8, cmd) parse_n(s, sizeof(s) - 1, utf8, cmd)

static void expect(const char *s, enum smtp_parse_result want)
{
	struct smtp_cmd cmd;
	enum smtp_parse_result r = parse(s, &cmd);
	if (r != want)
		fail_msg("\"%s\": got \"%s\", want \"%s\"", s, smtp_parse_strerror(r),
		         smtp_parse_strerror(want));
}

static void test_verbs(void **state)
{
	(void)state;
	struct smtp_cmd cmd;
	static const struct {
		const char *line;
		enum smtp_verb verb;
	} cases[] = {
	    {"EHLO mx.example", SMTP_VERB_EHLO},
	    {"HELO mx.example", SMTP_VERB_HELO},
	    {"LHLO mx.example", SMTP_VERB_LHLO},
	    {"MAIL FROM:<a@b>", SMTP_VERB_MAIL},
	    {"RCPT TO:<a@b>", SMTP_VERB_RCPT},
	    {"DATA", SMTP_VERB_DATA},
	    {"BDAT 10", SMTP_VERB_BDAT},
	    {"RSET", SMTP_VERB_RSET},
	    {"NOOP", SMTP_VERB_NOOP},
	    {"QUIT", SMTP_VERB_QUIT},
	    {"VRFY alice", SMTP_VERB_VRFY},
	    {"HELP", SMTP_VERB_HELP},
	    {"STARTTLS", SMTP_VERB_STARTTLS},
	    {"AUTH PLAIN", SMTP_VERB_AUTH},
	    {"ehlo mx.example", SMTP_VERB_EHLO},
	    {"mAiL fRoM:<a@b>", SMTP_VERB_MAIL},
	    {"rcpt to:<a@b>", SMTP_VERB_RCPT},
	    {"data", SMTP_VERB_DATA},
	    {"StartTLS", SMTP_VERB_STARTTLS},
	    {"quit   ", SMTP_VERB_QUIT},
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		enum smtp_parse_result r = parse(cases[i].line, &cmd);
		if (r != SMTP_PARSE_OK)
			fail_msg("%s: %s", cases[i].line, smtp_parse_strerror(r));
		assert_int_equal(cmd.verb, cases[i].verb);
		assert_string_not_equal(smtp_verb_name(cmd.verb), "-");
	}
	assert_string_equal(smtp_verb_name(SMTP_VERB_STARTTLS), "STARTTLS");

	expect("XYZZY", SMTP_PARSE_UNKNOWN_VERB);
	expect("MAI", SMTP_PARSE_UNKNOWN_VERB);
	expect("MAILFROM:<a@b>", SMTP_PARSE_UNKNOWN_VERB);
	expect("DATAX", SMTP_PARSE_UNKNOWN_VERB);
	expect(" DATA", SMTP_PARSE_UNKNOWN_VERB);
	expect("D\xc3\x84TA", SMTP_PARSE_UNKNOWN_VERB);
	expect("", SMTP_PARSE_EMPTY);
	expect("   ", SMTP_PARSE_EMPTY);
	/* The verb stays set on argument errors. */
	assert_int_equal(parse("DATA now", &cmd), SMTP_PARSE_SYNTAX);
	assert_int_equal(cmd.verb, SMTP_VERB_DATA);
	assert_int_equal(parse("XYZZY", &cmd), SMTP_PARSE_UNKNOWN_VERB);
	assert_int_equal(cmd.verb, SMTP_VERB_NONE);
}

static void test_bad_octets(void **state)
{
	(void)state;
	struct smtp_cmd cmd;

	assert_int_equal(PARSE_LIT("NOOP\0x", false, &cmd), SMTP_PARSE_NUL);
	assert_int_equal(PARSE_LIT("\0", false, &cmd), SMTP_PARSE_NUL);
	assert_int_equal(PARSE_LIT("MAIL FROM:<a@b>\r", false, &cmd), SMTP_PARSE_BARE_CR_LF);
	assert_int_equal(PARSE_LIT("NOOP\rRSET", false, &cmd), SMTP_PARSE_BARE_CR_LF);
	assert_int_equal(PARSE_LIT("NOOP\nRSET", false, &cmd), SMTP_PARSE_BARE_CR_LF);
	assert_int_equal(PARSE_LIT("NOOP\tx", false, &cmd), SMTP_PARSE_CONTROL);
	assert_int_equal(PARSE_LIT("NOOP \x7f", false, &cmd), SMTP_PARSE_CONTROL);
	assert_int_equal(PARSE_LIT("NOOP \x1b[0m", false, &cmd), SMTP_PARSE_CONTROL);
	/* Octet checks come before the verb: a NUL never reaches a handler. */
	assert_int_equal(PARSE_LIT("XX\0", false, &cmd), SMTP_PARSE_NUL);
}

static void test_length(void **state)
{
	(void)state;
	struct smtp_cmd cmd;
	char s[SMTP_MAX_LINE + 8];

	/* 510 octets plus CRLF is the most RFC 5321 §4.5.3.1.4 allows. */
	memcpy(s, "NOOP ", 5);
	memset(s + 5, 'x', sizeof(s) - 5);
	assert_int_equal(parse_n(s, SMTP_MAX_LINE - 2, false, &cmd), SMTP_PARSE_OK);
	assert_int_equal(strlen(cmd.arg), SMTP_MAX_LINE - 2 - 5);
	assert_int_equal(parse_n(s, SMTP_MAX_LINE - 1, false, &cmd), SMTP_PARSE_TOO_LONG);
	assert_int_equal(parse_n(s, SMTP_MAX_LINE + 7, false, &cmd), SMTP_PARSE_TOO_LONG);
}

static void test_helo(void **state)
{
	(void)state;
	struct smtp_cmd cmd;

	assert_int_equal(parse("EHLO mx.example.org", &cmd), SMTP_PARSE_OK);
	assert_string_equal(cmd.arg, "mx.example.org");
	assert_int_equal(parse("HELO  mx  ", &cmd), SMTP_PARSE_OK);
	assert_string_equal(cmd.arg, "mx");
	assert_int_equal(parse("EHLO [192.0.2.7]", &cmd), SMTP_PARSE_OK);
	assert_string_equal(cmd.arg, "[192.0.2.7]");
	assert_int_equal(parse("EHLO [IPv6:2001:db8::7]", &cmd), SMTP_PARSE_OK);
	assert_int_equal(parse("LHLO lmtp_client.local", &cmd), SMTP_PARSE_OK);
	assert_string_equal(cmd.arg, "lmtp_client.local");

	expect("EHLO", SMTP_PARSE_SYNTAX);
	expect("EHLO ", SMTP_PARSE_SYNTAX);
	expect("HELO a b", SMTP_PARSE_SYNTAX);
	expect("EHLO [300.1.1.1]", SMTP_PARSE_SYNTAX);
	expect("EHLO [1.2.3.4", SMTP_PARSE_SYNTAX);
	expect("EHLO -bad.example", SMTP_PARSE_SYNTAX);
	expect("EHLO a..b", SMTP_PARSE_SYNTAX);
	expect("EHLO <a@b>", SMTP_PARSE_SYNTAX);
	expect("EHLO b\xc3\xbc.example", SMTP_PARSE_SYNTAX);
}

static void test_mail(void **state)
{
	(void)state;
	struct smtp_cmd cmd;

	assert_int_equal(parse("MAIL FROM:<Alice@Example.org>", &cmd), SMTP_PARSE_OK);
	assert_string_equal(cmd.path.text, "Alice@Example.org");
	assert_string_equal(cmd.path.canon, "alice@example.org");
	assert_int_equal(cmd.nparams, 0);
	assert_false(cmd.size_given);
	assert_int_equal(cmd.body, SMTP_BODY_NONE);
	assert_false(cmd.smtputf8);

	/* The null reverse-path (RFC 5321 §4.5.5). */
	assert_int_equal(parse("MAIL FROM:<>", &cmd), SMTP_PARSE_OK);
	assert_true(cmd.path.is_null);
	assert_int_equal(parse("MAIL FROM:<> SIZE=100", &cmd), SMTP_PARSE_OK);
	assert_true(cmd.path.is_null);
	assert_int_equal(cmd.size, 100);

	/* One space after the colon is tolerated, no more. */
	assert_int_equal(parse("MAIL FROM: <a@b>", &cmd), SMTP_PARSE_OK);
	assert_string_equal(cmd.path.text, "a@b");
	expect("MAIL FROM:  <a@b>", SMTP_PARSE_SYNTAX);
	expect("MAIL FROM :<a@b>", SMTP_PARSE_SYNTAX);
	expect("MAIL  FROM:<a@b>", SMTP_PARSE_OK); /* runs of spaces after the verb */

	/* Source route accepted and ignored (RFC 5321 §4.1.2). */
	assert_int_equal(parse("MAIL FROM:<@a,@b:user@c>", &cmd), SMTP_PARSE_OK);
	assert_string_equal(cmd.path.text, "user@c");

	/* Quoted local part with '>' and spaces: the path ends at the real
	 * '>'. */
	assert_int_equal(parse("MAIL FROM:<\"a> b\"@x> SIZE=5", &cmd), SMTP_PARSE_OK);
	assert_string_equal(cmd.path.text, "\"a> b\"@x");
	assert_int_equal(cmd.size, 5);

	expect("MAIL", SMTP_PARSE_SYNTAX);
	expect("MAIL FROM:", SMTP_PARSE_SYNTAX);
	expect("MAIL TO:<a@b>", SMTP_PARSE_SYNTAX);
	expect("MAIL FROM:a@b", SMTP_PARSE_SYNTAX);
	expect("MAIL FROM:<a@b>SIZE=1", SMTP_PARSE_SYNTAX);
	expect("MAIL FROM:<a@b", SMTP_PARSE_ADDRESS);
	expect("MAIL FROM:<a b@c>", SMTP_PARSE_ADDRESS);
	expect("MAIL FROM:<Postmaster>", SMTP_PARSE_ADDRESS);

	assert_int_equal(parse("MAIL FROM:<a..b@c>", &cmd), SMTP_PARSE_ADDRESS);
	assert_int_equal(cmd.addr_error, SMTP_ADDR_SYNTAX);
	assert_int_equal(cmd.verb, SMTP_VERB_MAIL);
}

static void test_mail_params(void **state)
{
	(void)state;
	struct smtp_cmd cmd;

	assert_int_equal(parse("MAIL FROM:<a@b> SIZE=12345 BODY=8BITMIME SMTPUTF8", &cmd),
	                 SMTP_PARSE_OK);
	assert_true(cmd.size_given);
	assert_int_equal(cmd.size, 12345);
	assert_int_equal(cmd.body, SMTP_BODY_8BITMIME);
	assert_true(cmd.smtputf8);
	assert_int_equal(cmd.nparams, 3);
	assert_string_equal(cmd.params[0].keyword, "SIZE");
	assert_string_equal(cmd.params[0].value, "12345");
	assert_string_equal(cmd.params[1].keyword, "BODY");
	assert_string_equal(cmd.params[1].value, "8BITMIME");
	assert_string_equal(cmd.params[2].keyword, "SMTPUTF8");
	assert_null(cmd.params[2].value);

	assert_int_equal(parse("mail from:<a@b>   body=7bit   size=0  ", &cmd), SMTP_PARSE_OK);
	assert_int_equal(cmd.body, SMTP_BODY_7BIT);
	assert_true(cmd.size_given);
	assert_int_equal(cmd.size, 0);
	assert_int_equal(parse("MAIL FROM:<a@b> BODY=BinaryMIME", &cmd), SMTP_PARSE_OK);
	assert_int_equal(cmd.body, SMTP_BODY_BINARYMIME);

	/* RFC 1870 §3: up to 20 digits. 20 digits that do not fit in 64 bits
	 * are a (huge) size, not a syntax error. */
	assert_int_equal(parse("MAIL FROM:<a@b> SIZE=18446744073709551615", &cmd), SMTP_PARSE_OK);
	assert_int_equal(cmd.size, UINT64_MAX);
	assert_int_equal(parse("MAIL FROM:<a@b> SIZE=18446744073709551616", &cmd), SMTP_PARSE_OK);
	assert_int_equal(cmd.size, UINT64_MAX);
	assert_int_equal(parse("MAIL FROM:<a@b> SIZE=99999999999999999999", &cmd), SMTP_PARSE_OK);
	assert_int_equal(cmd.size, UINT64_MAX);
	assert_int_equal(parse("MAIL FROM:<a@b> SIZE=00000000000000000042", &cmd), SMTP_PARSE_OK);
	assert_int_equal(cmd.size, 42);
	assert_int_equal(parse("MAIL FROM:<a@b> SIZE=100000000000000000000", &cmd),
	                 SMTP_PARSE_BAD_PARAM);
	assert_string_equal(cmd.bad_param, "SIZE");

	expect("MAIL FROM:<a@b> SIZE=", SMTP_PARSE_SYNTAX);
	expect("MAIL FROM:<a@b> SIZE", SMTP_PARSE_BAD_PARAM);
	expect("MAIL FROM:<a@b> SIZE=-1", SMTP_PARSE_BAD_PARAM);
	expect("MAIL FROM:<a@b> SIZE=+1", SMTP_PARSE_BAD_PARAM);
	expect("MAIL FROM:<a@b> SIZE=1k", SMTP_PARSE_BAD_PARAM);
	expect("MAIL FROM:<a@b> SIZE=1 SIZE=2", SMTP_PARSE_BAD_PARAM);
	expect("MAIL FROM:<a@b> BODY=8BIT", SMTP_PARSE_BAD_PARAM);
	expect("MAIL FROM:<a@b> BODY", SMTP_PARSE_BAD_PARAM);
	expect("MAIL FROM:<a@b> BODY=7BIT BODY=7BIT", SMTP_PARSE_BAD_PARAM);
	expect("MAIL FROM:<a@b> SMTPUTF8=yes", SMTP_PARSE_BAD_PARAM);
	expect("MAIL FROM:<a@b> SMTPUTF8 SMTPUTF8", SMTP_PARSE_BAD_PARAM);
	expect("MAIL FROM:<a@b> SIZE=1=2", SMTP_PARSE_SYNTAX);
	expect("MAIL FROM:<a@b> =1", SMTP_PARSE_SYNTAX);
	expect("MAIL FROM:<a@b> -X=1", SMTP_PARSE_SYNTAX);
	expect("MAIL FROM:<a@b> X_Y=1", SMTP_PARSE_SYNTAX);

	/* Unknown parameters: 555 (RFC 5321 §4.1.1.11). */
	assert_int_equal(parse("MAIL FROM:<a@b> SIZE=1 RET=HDRS", &cmd), SMTP_PARSE_UNKNOWN_PARAM);
	assert_string_equal(cmd.bad_param, "RET");
	assert_int_equal(parse("MAIL FROM:<a@b> AUTH=<>", &cmd), SMTP_PARSE_UNKNOWN_PARAM);
	assert_string_equal(cmd.bad_param, "AUTH");
	assert_int_equal(parse("MAIL FROM:<a@b> X-FOO", &cmd), SMTP_PARSE_UNKNOWN_PARAM);
	assert_int_equal(parse("MAIL FROM:<a@b> X=\xc3\xa9", &cmd), SMTP_PARSE_UNKNOWN_PARAM);

	/* Bounded parameter array. */
	expect("MAIL FROM:<a@b> A B C D E F G H", SMTP_PARSE_UNKNOWN_PARAM);
	expect("MAIL FROM:<a@b> A B C D E F G H I", SMTP_PARSE_TOO_MANY_PARAMS);
}

static void test_mail_utf8(void **state)
{
	(void)state;
	struct smtp_cmd cmd;

	/* RFC 6531 §3.4: the parameter on the same line allows the path. */
	assert_int_equal(parse("MAIL FROM:<pel\xc3\xa9@example.com> SMTPUTF8", &cmd),
	                 SMTP_PARSE_OK);
	assert_true(cmd.path.utf8);
	assert_true(cmd.smtputf8);
	assert_int_equal(parse("MAIL FROM:<pel\xc3\xa9@example.com>", &cmd), SMTP_PARSE_ADDRESS);
	assert_int_equal(cmd.addr_error, SMTP_ADDR_UTF8_NOT_ALLOWED);
	/* The session's flag does not matter for MAIL. */
	assert_int_equal(PARSE_LIT("MAIL FROM:<pel\xc3\xa9@example.com>", true, &cmd),
	                 SMTP_PARSE_ADDRESS);
	assert_int_equal(parse("MAIL FROM:<pel\xc3@example.com> SMTPUTF8", &cmd),
	                 SMTP_PARSE_ADDRESS);
	assert_int_equal(cmd.addr_error, SMTP_ADDR_BAD_UTF8);
	assert_int_equal(parse("MAIL FROM:<pel\xc3@example.com>", &cmd), SMTP_PARSE_ADDRESS);
	assert_int_equal(cmd.addr_error, SMTP_ADDR_BAD_UTF8);
}

static void test_rcpt(void **state)
{
	(void)state;
	struct smtp_cmd cmd;

	assert_int_equal(parse("RCPT TO:<Bob@Example.org>", &cmd), SMTP_PARSE_OK);
	assert_string_equal(cmd.path.canon, "bob@example.org");
	assert_int_equal(parse("RCPT TO: <bob@example.org>  ", &cmd), SMTP_PARSE_OK);
	assert_string_equal(cmd.path.canon, "bob@example.org");
	assert_int_equal(parse("RCPT TO:<@relay:bob@example.org>", &cmd), SMTP_PARSE_OK);
	assert_string_equal(cmd.path.text, "bob@example.org");

	/* RFC 5321 §4.1.1.3 / §4.5.1. */
	assert_int_equal(parse("RCPT TO:<Postmaster>", &cmd), SMTP_PARSE_OK);
	assert_true(cmd.path.is_postmaster);
	assert_string_equal(cmd.path.canon, "postmaster");
	assert_int_equal(parse("rcpt to:<postmaster>", &cmd), SMTP_PARSE_OK);
	assert_true(cmd.path.is_postmaster);

	/* No null path for RCPT. */
	assert_int_equal(parse("RCPT TO:<>", &cmd), SMTP_PARSE_ADDRESS);
	assert_int_equal(cmd.addr_error, SMTP_ADDR_SYNTAX);
	expect("RCPT TO:bob@example.org", SMTP_PARSE_SYNTAX);
	expect("RCPT FROM:<bob@example.org>", SMTP_PARSE_SYNTAX);
	expect("RCPT TO:", SMTP_PARSE_SYNTAX);

	/* No RCPT parameters are supported. */
	assert_int_equal(parse("RCPT TO:<bob@x> NOTIFY=NEVER", &cmd), SMTP_PARSE_UNKNOWN_PARAM);
	assert_string_equal(cmd.bad_param, "NOTIFY");
	expect("RCPT TO:<bob@x> SIZE=1", SMTP_PARSE_UNKNOWN_PARAM);
	expect("RCPT TO:<bob@x> !", SMTP_PARSE_SYNTAX);

	/* UTF-8 only inside an SMTPUTF8 transaction. */
	assert_int_equal(parse("RCPT TO:<j\xc3\xb6rg@example.org>", &cmd), SMTP_PARSE_ADDRESS);
	assert_int_equal(cmd.addr_error, SMTP_ADDR_UTF8_NOT_ALLOWED);
	assert_int_equal(PARSE_LIT("RCPT TO:<J\xc3\xb6rg@Example.org>", true, &cmd), SMTP_PARSE_OK);
	assert_string_equal(cmd.path.canon, "j\xc3\xb6rg@example.org");
	assert_int_equal(PARSE_LIT("RCPT TO:<j\xe0\x80\x80rg@example.org>", true, &cmd),
	                 SMTP_PARSE_ADDRESS);
	assert_int_equal(cmd.addr_error, SMTP_ADDR_BAD_UTF8);
}

static void test_rcpt_long_path(void **state)
{
	(void)state;
	struct smtp_cmd cmd;
	char s[SMTP_MAX_LINE];

	/* 65-octet local part. */
	strcpy(s, "RCPT TO:<");
	memset(s + 9, 'a', 65);
	strcpy(s + 74, "@example.org>");
	assert_int_equal(parse(s, &cmd), SMTP_PARSE_ADDRESS);
	assert_int_equal(cmd.addr_error, SMTP_ADDR_TOO_LONG);
}

static void test_bdat(void **state)
{
	(void)state;
	struct smtp_cmd cmd;

	assert_int_equal(parse("BDAT 1000", &cmd), SMTP_PARSE_OK);
	assert_int_equal(cmd.bdat_size, 1000);
	assert_false(cmd.bdat_last);
	assert_int_equal(parse("BDAT 0 LAST", &cmd), SMTP_PARSE_OK);
	assert_int_equal(cmd.bdat_size, 0);
	assert_true(cmd.bdat_last);
	assert_int_equal(parse("bdat 42 last", &cmd), SMTP_PARSE_OK);
	assert_true(cmd.bdat_last);
	assert_int_equal(parse("BDAT 18446744073709551615 LAST", &cmd), SMTP_PARSE_OK);
	assert_int_equal(cmd.bdat_size, UINT64_MAX);
	assert_int_equal(parse("BDAT 4294967296", &cmd), SMTP_PARSE_OK);
	assert_int_equal(cmd.bdat_size, 4294967296ULL);
	assert_int_equal(parse("BDAT 007", &cmd), SMTP_PARSE_OK);
	assert_int_equal(cmd.bdat_size, 7);

	expect("BDAT 18446744073709551616", SMTP_PARSE_SYNTAX);
	expect("BDAT", SMTP_PARSE_SYNTAX);
	expect("BDAT LAST", SMTP_PARSE_SYNTAX);
	expect("BDAT -1", SMTP_PARSE_SYNTAX);
	expect("BDAT 1x", SMTP_PARSE_SYNTAX);
	expect("BDAT 0x10", SMTP_PARSE_SYNTAX);
	expect("BDAT 10 LASTX", SMTP_PARSE_SYNTAX);
	expect("BDAT 10 LAST X", SMTP_PARSE_SYNTAX);
	expect("BDAT 10 FIRST", SMTP_PARSE_SYNTAX);
}

static void test_other_args(void **state)
{
	(void)state;
	struct smtp_cmd cmd;

	assert_int_equal(parse("NOOP", &cmd), SMTP_PARSE_OK);
	assert_null(cmd.arg);
	assert_int_equal(parse("NOOP hello there  ", &cmd), SMTP_PARSE_OK);
	assert_string_equal(cmd.arg, "hello there");
	assert_int_equal(parse("HELP MAIL", &cmd), SMTP_PARSE_OK);
	assert_string_equal(cmd.arg, "MAIL");
	assert_int_equal(parse("VRFY <alice@example.org>", &cmd), SMTP_PARSE_OK);
	assert_string_equal(cmd.arg, "<alice@example.org>");
	assert_int_equal(parse("AUTH PLAIN AGFsaWNlAHNlY3JldA==", &cmd), SMTP_PARSE_OK);
	assert_string_equal(cmd.arg, "PLAIN AGFsaWNlAHNlY3JldA==");

	expect("VRFY", SMTP_PARSE_SYNTAX);
	expect("AUTH", SMTP_PARSE_SYNTAX);
	expect("DATA x", SMTP_PARSE_SYNTAX);
	expect("RSET x", SMTP_PARSE_SYNTAX);
	expect("QUIT now", SMTP_PARSE_SYNTAX);
	expect("STARTTLS x", SMTP_PARSE_SYNTAX);
	expect("DATA ", SMTP_PARSE_OK);
}

static void test_in_place(void **state)
{
	(void)state;
	struct smtp_cmd cmd;
	char s[] = "MAIL FROM:<a@b> SIZE=1 BODY=7BIT\0";

	/* line[len] is written (the NUL after trimming); nothing beyond. */
	s[sizeof(s) - 1] = 'Z';
	assert_int_equal(smtp_parse(s, sizeof(s) - 2, false, &cmd), SMTP_PARSE_OK);
	assert_int_equal(s[sizeof(s) - 1], 'Z');
	/* The path is a copy: clobbering the line leaves it intact. */
	memset(s, 'x', sizeof(s) - 2);
	assert_string_equal(cmd.path.canon, "a@b");
}

static void test_replies(void **state)
{
	(void)state;
	unsigned code;
	const char *enh;

	smtp_parse_reply(SMTP_PARSE_UNKNOWN_PARAM, SMTP_VERB_MAIL, SMTP_ADDR_OK, &code, &enh);
	assert_int_equal(code, 555);
	assert_string_equal(enh, "5.5.4");
	smtp_parse_reply(SMTP_PARSE_UNKNOWN_VERB, SMTP_VERB_NONE, SMTP_ADDR_OK, &code, &enh);
	assert_int_equal(code, 500);
	assert_string_equal(enh, "5.5.1");
	smtp_parse_reply(SMTP_PARSE_TOO_LONG, SMTP_VERB_NONE, SMTP_ADDR_OK, &code, &enh);
	assert_int_equal(code, 500);
	assert_string_equal(enh, "5.5.2");
	smtp_parse_reply(SMTP_PARSE_SYNTAX, SMTP_VERB_BDAT, SMTP_ADDR_OK, &code, &enh);
	assert_int_equal(code, 501);
	smtp_parse_reply(SMTP_PARSE_ADDRESS, SMTP_VERB_MAIL, SMTP_ADDR_SYNTAX, &code, &enh);
	assert_int_equal(code, 501);
	assert_string_equal(enh, "5.1.7");
	smtp_parse_reply(SMTP_PARSE_ADDRESS, SMTP_VERB_RCPT, SMTP_ADDR_TOO_LONG, &code, &enh);
	assert_int_equal(code, 501);
	assert_string_equal(enh, "5.1.3");
	smtp_parse_reply(SMTP_PARSE_ADDRESS, SMTP_VERB_RCPT, SMTP_ADDR_UTF8_NOT_ALLOWED, &code,
	                 &enh);
	assert_int_equal(code, 553);
	assert_string_equal(enh, "5.6.7");
	for (int r = SMTP_PARSE_OK; r <= SMTP_PARSE_TOO_MANY_PARAMS; r++) {
		assert_non_null(smtp_parse_strerror((enum smtp_parse_result)r));
		smtp_parse_reply((enum smtp_parse_result)r, SMTP_VERB_MAIL, SMTP_ADDR_SYNTAX, &code,
		                 &enh);
		assert_true(code >= 250 && code <= 555);
		assert_non_null(enh);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_verbs),          cmocka_unit_test(test_bad_octets),
	    cmocka_unit_test(test_length),         cmocka_unit_test(test_helo),
	    cmocka_unit_test(test_mail),           cmocka_unit_test(test_mail_params),
	    cmocka_unit_test(test_mail_utf8),      cmocka_unit_test(test_rcpt),
	    cmocka_unit_test(test_rcpt_long_path), cmocka_unit_test(test_bdat),
	    cmocka_unit_test(test_other_args),     cmocka_unit_test(test_in_place),
	    cmocka_unit_test(test_replies),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
