/* SMTP envelope addresses: paths, quoted local parts, limits, literals,
 * SMTPUTF8 and the canonical lookup form. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "smtp/address.h"

#define UTF8 SMTP_ADDR_SMTPUTF8
#define NUL  SMTP_ADDR_ALLOW_NULL
#define PM   SMTP_ADDR_ALLOW_POSTMASTER

static enum smtp_addr_error path(const char *s, unsigned flags, struct smtp_mailbox *mb)
{
	size_t used = 0;
	enum smtp_addr_error e = smtp_path_parse(s, strlen(s), flags, mb, &used);
	if (e == SMTP_ADDR_OK) {
		/* The whole test string is one path unless it says otherwise. */
		assert_true(used >= 2 && used <= strlen(s));
		assert_int_equal(s[used - 1], '>');
	} else {
		assert_string_equal(mb->text, "");
		assert_string_equal(mb->canon, "");
	}
	return e;
}

/* Parse a path and expect success with the given text and canonical form. */
static void ok(const char *s, unsigned flags, const char *text, const char *canon)
{
	struct smtp_mailbox mb;
	size_t used = 0;

	enum smtp_addr_error e = smtp_path_parse(s, strlen(s), flags, &mb, &used);
	if (e != SMTP_ADDR_OK)
		fail_msg("%s: %s", s, smtp_addr_strerror(e));
	assert_int_equal(used, strlen(s));
	assert_string_equal(mb.text, text);
	assert_string_equal(mb.canon, canon);
	assert_true(strlen(mb.canon) <= strlen(mb.text));
	if (!mb.is_null && !mb.is_postmaster) {
		assert_int_equal(mb.canon[mb.local_len], '@');
		assert_int_equal(mb.domain_off, mb.local_len + 1);
	}
}

static void bad(const char *s, unsigned flags, enum smtp_addr_error want)
{
	struct smtp_mailbox mb;
	enum smtp_addr_error e = path(s, flags, &mb);
	if (e != want)
		fail_msg("%s: got %s, want %s", s, smtp_addr_strerror(e), smtp_addr_strerror(want));
}

static void test_simple(void **state)
{
	(void)state;
	struct smtp_mailbox mb;

	ok("<a@b>", 0, "a@b", "a@b");
	ok("<John.Smith@Example.COM>", 0, "John.Smith@Example.COM", "john.smith@example.com");
	ok("<x!#$%&'*+-/=?^_`{|}~y@h-1.example>", 0, "x!#$%&'*+-/=?^_`{|}~y@h-1.example",
	   "x!#$%&'*+-/=?^_`{|}~y@h-1.example");
	assert_int_equal(path("<Bob@Mail.Example.org>", 0, &mb), SMTP_ADDR_OK);
	assert_int_equal(mb.local_len, 3);
	assert_string_equal(mb.canon + mb.domain_off, "mail.example.org");
	assert_false(mb.is_null || mb.is_postmaster || mb.utf8 || mb.literal);
}

static void test_trailing_text(void **state)
{
	(void)state;
	struct smtp_mailbox mb;
	size_t used;
	const char *s = "<a@b.example> SIZE=10";

	assert_int_equal(smtp_path_parse(s, strlen(s), 0, &mb, &used), SMTP_ADDR_OK);
	assert_int_equal(used, 13);
	/* Only the given length is looked at. */
	assert_int_equal(smtp_path_parse(s, 12, 0, &mb, &used), SMTP_ADDR_SYNTAX);
}

static void test_null_and_postmaster(void **state)
{
	(void)state;
	struct smtp_mailbox mb;

	assert_int_equal(path("<>", NUL, &mb), SMTP_ADDR_OK);
	assert_true(mb.is_null);
	assert_string_equal(mb.text, "");
	assert_string_equal(mb.canon, "");
	bad("<>", 0, SMTP_ADDR_SYNTAX);
	bad("<>", PM, SMTP_ADDR_SYNTAX);

	assert_int_equal(path("<Postmaster>", PM, &mb), SMTP_ADDR_OK);
	assert_true(mb.is_postmaster);
	assert_string_equal(mb.text, "Postmaster");
	assert_string_equal(mb.canon, "postmaster");
	assert_int_equal(mb.local_len, 10);
	assert_int_equal(path("<POSTMASTER>", PM, &mb), SMTP_ADDR_OK);
	assert_true(mb.is_postmaster);
	bad("<Postmaster>", 0, SMTP_ADDR_SYNTAX);
	bad("<Postmaster>", NUL, SMTP_ADDR_SYNTAX);
	bad("<\"Postmaster\">", PM, SMTP_ADDR_SYNTAX);
	bad("<postmasters>", PM, SMTP_ADDR_SYNTAX);
	bad("<postmaste>", PM, SMTP_ADDR_SYNTAX);
	/* With a domain it is an ordinary address. */
	assert_int_equal(path("<PostMaster@Example.org>", PM, &mb), SMTP_ADDR_OK);
	assert_false(mb.is_postmaster);
	assert_string_equal(mb.canon, "postmaster@example.org");
}

static void test_quoted(void **state)
{
	(void)state;

	/* Quotes that are not needed go in the canonical form. */
	ok("<\"john\"@x>", 0, "\"john\"@x", "john@x");
	ok("<\"John.Smith\"@X>", 0, "\"John.Smith\"@X", "john.smith@x");
	ok("<\"j\\ohn\"@x>", 0, "\"j\\ohn\"@x", "john@x");
	/* Quotes that are needed stay, with minimal escaping. */
	ok("<\"a b\"@x>", 0, "\"a b\"@x", "\"a b\"@x");
	ok("<\"a\\ b\"@x>", 0, "\"a\\ b\"@x", "\"a b\"@x");
	ok("<\"a\\\"b\"@x>", 0, "\"a\\\"b\"@x", "\"a\\\"b\"@x");
	ok("<\"a\\\\b\"@x>", 0, "\"a\\\\b\"@x", "\"a\\\\b\"@x");
	ok("<\"a@b\"@x>", 0, "\"a@b\"@x", "\"a@b\"@x");
	ok("<\"A>B\"@x>", 0, "\"A>B\"@x", "\"a>b\"@x");
	ok("<\"a..b\"@x>", 0, "\"a..b\"@x", "\"a..b\"@x");
	ok("<\".a\"@x>", 0, "\".a\"@x", "\".a\"@x");
	ok("<\"a.\"@x>", 0, "\"a.\"@x", "\"a.\"@x");
	ok("<\"\"@x>", 0, "\"\"@x", "\"\"@x");

	bad("<\"a\"b@x>", 0, SMTP_ADDR_SYNTAX);
	bad("<\"ab@x>", 0, SMTP_ADDR_SYNTAX);
	bad("<\"a\\\"@x>", 0, SMTP_ADDR_SYNTAX);
	bad("<\"a\tb\"@x>", 0, SMTP_ADDR_SYNTAX);
	bad("<\"a\\\tb\"@x>", 0, SMTP_ADDR_SYNTAX);
	bad("<\"a\"\"b\"@x>", 0, SMTP_ADDR_SYNTAX);
	bad("<a.\"b\"@x>", 0, SMTP_ADDR_SYNTAX);
}

static void test_dot_string(void **state)
{
	(void)state;

	bad("<.a@x>", 0, SMTP_ADDR_SYNTAX);
	bad("<a.@x>", 0, SMTP_ADDR_SYNTAX);
	bad("<a..b@x>", 0, SMTP_ADDR_SYNTAX);
	bad("<a b@x>", 0, SMTP_ADDR_SYNTAX);
	bad("<a(b)@x>", 0, SMTP_ADDR_SYNTAX);
	bad("<a,b@x>", 0, SMTP_ADDR_SYNTAX);
	bad("<@x>", 0, SMTP_ADDR_SYNTAX);
	bad("<a@>", 0, SMTP_ADDR_SYNTAX);
	bad("<a>", 0, SMTP_ADDR_SYNTAX);
	bad("<a@b", 0, SMTP_ADDR_SYNTAX);
	bad("a@b>", 0, SMTP_ADDR_SYNTAX);
	bad("<a@b@c>", 0, SMTP_ADDR_SYNTAX);
	bad("<", 0, SMTP_ADDR_SYNTAX);
	bad("", 0, SMTP_ADDR_SYNTAX);
}

static void test_domains(void **state)
{
	(void)state;
	struct smtp_mailbox mb;

	ok("<a@x-y.example>", 0, "a@x-y.example", "a@x-y.example");
	ok("<a@1.2.3.4.example>", 0, "a@1.2.3.4.example", "a@1.2.3.4.example");
	bad("<a@-x.example>", 0, SMTP_ADDR_SYNTAX);
	bad("<a@x-.example>", 0, SMTP_ADDR_SYNTAX);
	bad("<a@x..example>", 0, SMTP_ADDR_SYNTAX);
	bad("<a@.example>", 0, SMTP_ADDR_SYNTAX);
	bad("<a@example.>", 0, SMTP_ADDR_SYNTAX);
	bad("<a@ex_ample>", 0, SMTP_ADDR_SYNTAX);
	bad("<a@ex ample>", 0, SMTP_ADDR_SYNTAX);

	/* Address literals (RFC 5321 §4.1.3). */
	assert_int_equal(path("<a@[192.0.2.1]>", 0, &mb), SMTP_ADDR_OK);
	assert_true(mb.literal);
	assert_string_equal(mb.canon + mb.domain_off, "[192.0.2.1]");
	ok("<a@[IPv6:2001:db8::1]>", 0, "a@[IPv6:2001:db8::1]", "a@[ipv6:2001:db8::1]");
	ok("<a@[ipv6:::1]>", 0, "a@[ipv6:::1]", "a@[ipv6:::1]");
	ok("<a@[IPv6:::ffff:192.0.2.1]>", 0, "a@[IPv6:::ffff:192.0.2.1]",
	   "a@[ipv6:::ffff:192.0.2.1]");
	ok("<a@[010.0.0.1]>", 0, "a@[010.0.0.1]", "a@[010.0.0.1]");
	bad("<a@[256.0.0.1]>", 0, SMTP_ADDR_SYNTAX);
	bad("<a@[1.2.3]>", 0, SMTP_ADDR_SYNTAX);
	bad("<a@[1.2.3.4.5]>", 0, SMTP_ADDR_SYNTAX);
	bad("<a@[1.2.3.0004]>", 0, SMTP_ADDR_SYNTAX);
	bad("<a@[IPv6:2001:db8::g]>", 0, SMTP_ADDR_SYNTAX);
	bad("<a@[IPv6:1.2.3.4]>", 0, SMTP_ADDR_SYNTAX);
	bad("<a@[x-tag:abc]>", 0, SMTP_ADDR_SYNTAX);
	bad("<a@[]>", 0, SMTP_ADDR_SYNTAX);
	bad("<a@[1.2.3.4>", 0, SMTP_ADDR_SYNTAX);
	bad("<a@[1.2.3.4]x>", 0, SMTP_ADDR_SYNTAX);
	bad("<a@x.[1.2.3.4]>", 0, SMTP_ADDR_SYNTAX);

	assert_int_equal(smtp_domain_check("mail.example", 12, 0, false), SMTP_ADDR_OK);
	assert_int_equal(smtp_domain_check("[127.0.0.1]", 11, 0, false), SMTP_ADDR_OK);
	assert_int_equal(smtp_domain_check("my_host", 7, 0, false), SMTP_ADDR_SYNTAX);
	assert_int_equal(smtp_domain_check("my_host", 7, 0, true), SMTP_ADDR_OK);
	assert_int_equal(smtp_domain_check("a b", 3, 0, true), SMTP_ADDR_SYNTAX);
	assert_int_equal(smtp_domain_check("", 0, 0, true), SMTP_ADDR_SYNTAX);
	assert_int_equal(smtp_domain_check("b\xc3\xbc.example", 10, 0, false),
	                 SMTP_ADDR_UTF8_NOT_ALLOWED);
	assert_int_equal(smtp_domain_check("b\xc3\xbc.example", 10, UTF8, false), SMTP_ADDR_OK);
}

static void test_source_route(void **state)
{
	(void)state;
	struct smtp_mailbox mb;
	size_t used;

	/* RFC 5321 §4.1.2: accepted, and the route is dropped. */
	ok("<@a,@b:user@c>", 0, "user@c", "user@c");
	ok("<@relay.example:User@C.example>", 0, "User@C.example", "user@c.example");
	assert_int_equal(smtp_path_parse("<@a,@b:u@c>", 11, 0, &mb, &used), SMTP_ADDR_OK);
	assert_int_equal(used, 11);
	bad("<@a,b:user@c>", 0, SMTP_ADDR_SYNTAX);
	bad("<@a:@b:user@c>", 0, SMTP_ADDR_SYNTAX);
	bad("<@a,@b user@c>", 0, SMTP_ADDR_SYNTAX);
	bad("<@:user@c>", 0, SMTP_ADDR_SYNTAX);
	bad("<@a,:user@c>", 0, SMTP_ADDR_SYNTAX);
	bad("<@a:>", 0, SMTP_ADDR_SYNTAX);
	bad("<@a:>", NUL, SMTP_ADDR_SYNTAX);
}

static void fill(char *p, char c, size_t n)
{
	memset(p, c, n);
}

static void test_lengths(void **state)
{
	(void)state;
	char s[600], canon[600];
	struct smtp_mailbox mb;

	/* Local part: 64 ok, 65 too long (RFC 5321 §4.5.3.1.1). */
	s[0] = '<';
	fill(s + 1, 'a', 64);
	strcpy(s + 65, "@x>");
	assert_int_equal(path(s, 0, &mb), SMTP_ADDR_OK);
	fill(s + 1, 'a', 65);
	strcpy(s + 66, "@x>");
	bad(s, 0, SMTP_ADDR_TOO_LONG);
	/* Quotes count. */
	s[1] = '"';
	fill(s + 2, 'a', 62);
	strcpy(s + 64, "\"@x>");
	assert_int_equal(path(s, 0, &mb), SMTP_ADDR_OK);
	assert_int_equal(strlen(mb.canon), 62 + 2);
	fill(s + 2, 'a', 63);
	strcpy(s + 65, "\"@x>");
	bad(s, 0, SMTP_ADDR_TOO_LONG);

	/* A label of 63 is fine, 64 is not (RFC 1035 §2.3.4). */
	strcpy(s, "<a@");
	fill(s + 3, 'b', 63);
	strcpy(s + 66, ">");
	assert_int_equal(path(s, 0, &mb), SMTP_ADDR_OK);
	fill(s + 3, 'b', 64);
	strcpy(s + 67, ">");
	bad(s, 0, SMTP_ADDR_TOO_LONG);

	/* Domain of 255 octets (4 labels of 63 plus 3 dots) is fine; the path
	 * is then 2 + 2 + 255 = 259 > 256 — too long as a path. */
	char dom[300];
	size_t n = 0;
	for (int l = 0; l < 4; l++) {
		if (l > 0)
			dom[n++] = '.';
		fill(dom + n, 'c', 63);
		n += 63;
	}
	dom[n] = '\0';
	assert_int_equal(n, 255);
	assert_int_equal(smtp_domain_check(dom, n, 0, false), SMTP_ADDR_OK);
	snprintf(s, sizeof(s), "<a@%s>", dom);
	bad(s, 0, SMTP_ADDR_TOO_LONG);
	/* 256 octets of domain: "a.a.…a" (255) plus one octet. */
	n = 0;
	for (int l = 0; l < 128; l++) {
		if (l > 0)
			dom[n++] = '.';
		dom[n++] = 'a';
	}
	assert_int_equal(n, 255);
	assert_int_equal(smtp_domain_check(dom, n, 0, false), SMTP_ADDR_OK);
	dom[n++] = 'b';
	assert_int_equal(smtp_domain_check(dom, n, 0, false), SMTP_ADDR_TOO_LONG);

	/* Path exactly 256 octets from '<' to '>' (RFC 5321 §4.5.3.1.3). */
	strcpy(s, "<a@");
	n = 3;
	while (n + 64 < 255) {
		fill(s + n, 'd', 63);
		n += 63;
		s[n++] = '.';
	}
	fill(s + n, 'e', 255 - n);
	n = 255;
	s[n++] = '>';
	s[n] = '\0';
	assert_int_equal(strlen(s), 256);
	assert_int_equal(path(s, 0, &mb), SMTP_ADDR_OK);
	assert_int_equal(strlen(mb.text), 254);
	/* One more octet of local part: 257. */
	canon[0] = '<';
	canon[1] = 'z';
	strcpy(canon + 2, s + 1);
	bad(canon, 0, SMTP_ADDR_TOO_LONG);
	/* A source route counts towards the path but not the mailbox. */
	snprintf(canon, sizeof(canon), "<@r:%s", s + 1);
	bad(canon, 0, SMTP_ADDR_TOO_LONG);
}

static void test_utf8(void **state)
{
	(void)state;
	struct smtp_mailbox mb;

	/* "pelé@example.com" and a U-label domain (RFC 6531 §3.3). */
	bad("<pel\xc3\xa9@example.com>", 0, SMTP_ADDR_UTF8_NOT_ALLOWED);
	assert_int_equal(path("<Pel\xc3\xa9@Example.com>", UTF8, &mb), SMTP_ADDR_OK);
	assert_true(mb.utf8);
	assert_string_equal(mb.canon, "pel\xc3\xa9@example.com");
	bad("<a@b\xc3\xbc.example>", 0, SMTP_ADDR_UTF8_NOT_ALLOWED);
	ok("<a@B\xc3\xbc.example>", UTF8, "a@B\xc3\xbc.example", "a@b\xc3\xbc.example");
	ok("<\"\xe2\x82\xac x\"@x>", UTF8, "\"\xe2\x82\xac x\"@x", "\"\xe2\x82\xac x\"@x");
	ok("<\"\xe2\x82\xac\"@x>", UTF8, "\"\xe2\x82\xac\"@x", "\xe2\x82\xac@x");
	ok("<\xf0\x9f\x93\xa7@x>", UTF8, "\xf0\x9f\x93\xa7@x", "\xf0\x9f\x93\xa7@x");
	bad("<\"\xe2\x82\xac\"@x>", 0, SMTP_ADDR_UTF8_NOT_ALLOWED);
	bad("<@r\xc3\xbc:a@x>", 0, SMTP_ADDR_UTF8_NOT_ALLOWED);

	/* Truncated, overlong, surrogate, out of range, stray continuation. */
	bad("<a\xc3@x>", UTF8, SMTP_ADDR_BAD_UTF8);
	bad("<a\xe2\x82@x>", UTF8, SMTP_ADDR_BAD_UTF8);
	bad("<a@x\xe2\x82>", UTF8, SMTP_ADDR_BAD_UTF8);
	bad("<a\xc0\xaf@x>", UTF8, SMTP_ADDR_BAD_UTF8);
	bad("<a\xe0\x80\xaf@x>", UTF8, SMTP_ADDR_BAD_UTF8);
	bad("<a\xf0\x80\x80\xaf@x>", UTF8, SMTP_ADDR_BAD_UTF8);
	bad("<a\xed\xa0\x80@x>", UTF8, SMTP_ADDR_BAD_UTF8);
	bad("<a\xf4\x90\x80\x80@x>", UTF8, SMTP_ADDR_BAD_UTF8);
	bad("<a\xf5\x80\x80\x80@x>", UTF8, SMTP_ADDR_BAD_UTF8);
	bad("<a\x80@x>", UTF8, SMTP_ADDR_BAD_UTF8);
	bad("<a\xff@x>", UTF8, SMTP_ADDR_BAD_UTF8);
	bad("<@r\xc3:a@x>", UTF8, SMTP_ADDR_BAD_UTF8);
}

static void test_utf8_valid(void **state)
{
	(void)state;

	assert_true(smtp_utf8_valid("", 0));
	assert_true(smtp_utf8_valid("abc", 3));
	assert_true(smtp_utf8_valid("\xc2\x80", 2));
	assert_true(smtp_utf8_valid("\xdf\xbf", 2));
	assert_true(smtp_utf8_valid("\xe0\xa0\x80", 3));
	assert_true(smtp_utf8_valid("\xed\x9f\xbf", 3)); /* U+D7FF */
	assert_true(smtp_utf8_valid("\xee\x80\x80", 3)); /* U+E000 */
	assert_true(smtp_utf8_valid("\xef\xbf\xbf", 3)); /* U+FFFF */
	assert_true(smtp_utf8_valid("\xf0\x90\x80\x80", 4));
	assert_true(smtp_utf8_valid("\xf4\x8f\xbf\xbf", 4)); /* U+10FFFF */
	assert_true(smtp_utf8_valid("a\0b", 3));

	assert_false(smtp_utf8_valid("\xc1\xbf", 2));
	assert_false(smtp_utf8_valid("\xe0\x9f\xbf", 3));
	assert_false(smtp_utf8_valid("\xed\xbf\xbf", 3));
	assert_false(smtp_utf8_valid("\xf0\x8f\xbf\xbf", 4));
	assert_false(smtp_utf8_valid("\xf4\x90\x80\x80", 4));
	assert_false(smtp_utf8_valid("\xe2\x28\xa1", 3));
	assert_false(smtp_utf8_valid("\xf0\x90\x80", 3));
	assert_false(smtp_utf8_valid("\xf0\x90\x80\x80", 3)); /* length respected */
	assert_false(smtp_utf8_valid("\xbf", 1));
	assert_false(smtp_utf8_valid("\xfe", 1));
}

static void test_mailbox_parse(void **state)
{
	(void)state;
	struct smtp_mailbox mb;

	assert_int_equal(smtp_mailbox_parse("Alice@Example.org", 17, 0, &mb), SMTP_ADDR_OK);
	assert_string_equal(mb.canon, "alice@example.org");
	assert_string_equal(mb.text, "Alice@Example.org");
	assert_int_equal(smtp_mailbox_parse("<a@b>", 5, 0, &mb), SMTP_ADDR_SYNTAX);
	assert_int_equal(smtp_mailbox_parse("a@b ", 4, 0, &mb), SMTP_ADDR_SYNTAX);
	assert_int_equal(smtp_mailbox_parse("", 0, 0, &mb), SMTP_ADDR_SYNTAX);
	assert_int_equal(smtp_mailbox_parse("", 0, NUL, &mb), SMTP_ADDR_OK);
	assert_true(mb.is_null);
	assert_int_equal(smtp_mailbox_parse("postmaster", 10, PM, &mb), SMTP_ADDR_OK);
	assert_true(mb.is_postmaster);
	assert_int_equal(smtp_mailbox_parse("postmaster", 10, 0, &mb), SMTP_ADDR_SYNTAX);
	assert_int_equal(smtp_mailbox_parse("\"x y\"@b", 7, 0, &mb), SMTP_ADDR_OK);
	assert_string_equal(mb.canon, "\"x y\"@b");
}

static void test_strerror(void **state)
{
	(void)state;
	for (int e = SMTP_ADDR_OK; e <= SMTP_ADDR_BAD_UTF8; e++)
		assert_non_null(smtp_addr_strerror((enum smtp_addr_error)e));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_simple),
	    cmocka_unit_test(test_trailing_text),
	    cmocka_unit_test(test_null_and_postmaster),
	    cmocka_unit_test(test_quoted),
	    cmocka_unit_test(test_dot_string),
	    cmocka_unit_test(test_domains),
	    cmocka_unit_test(test_source_route),
	    cmocka_unit_test(test_lengths),
	    cmocka_unit_test(test_utf8),
	    cmocka_unit_test(test_utf8_valid),
	    cmocka_unit_test(test_mailbox_parse),
	    cmocka_unit_test(test_strerror),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
