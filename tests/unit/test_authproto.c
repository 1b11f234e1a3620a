/* Unit tests for src/auth/authproto.c: the messages between workers and the
 * auth process, their bounds, and the socket they travel on. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "auth/apop.h"
#include "auth/authproto.h"
#include "auth/sasl.h"
#include "auth/ticket.h"
#include "auth/verify.h"
#include "directory/directory.h"

static uint8_t buf[AUTHP_MSG_MAX + 64];

/* A string of n copies of c (n < sizeof the static buffer it lives in). */
static const char *fill(char *out, size_t n, char c)
{
	memset(out, c, n);
	out[n] = '\0';
	return out;
}

static int encode(const struct authp_msg *m)
{
	const char *err = NULL;
	int n = authp_encode(m, buf, sizeof(buf), &err);

	if (n < 0)
		fail_msg("encode failed: %s", err);
	return n;
}

static void decode_ok(size_t len, struct authp_msg *out)
{
	const char *err = NULL;

	if (authp_decode(buf, len, out, &err) < 0)
		fail_msg("decode failed: %s", err);
}

static void decode_bad(size_t len, const char *why)
{
	struct authp_msg m;
	const char *err = NULL;

	assert_int_equal(authp_decode(buf, len, &m, &err), -1);
	assert_non_null(err);
	if (why != NULL)
		assert_string_equal(err, why);
}

static void test_round_trip_requests(void **state)
{
	(void)state;
	struct authp_msg m = {.type = AUTHP_PASS, .id = 7}, d;
	uint8_t cb[32];
	int n;

	m.user = "alice@example.test";
	m.password = "pass word";
	n = encode(&m);
	decode_ok((size_t)n, &d);
	assert_int_equal(d.type, AUTHP_PASS);
	assert_int_equal(d.id, 7);
	assert_string_equal(d.user, "alice@example.test");
	assert_string_equal(d.password, "pass word");
	assert_null(d.timestamp);

	memset(&m, 0, sizeof(m));
	m.type = AUTHP_APOP;
	m.id = 0xffffffffu;
	m.user = "";
	m.timestamp = "<1.2@x>";
	m.digest = "c4c9334bac560ecc979e58001b3e22fb";
	decode_ok((size_t)encode(&m), &d);
	assert_int_equal(d.id, 0xffffffffu);
	assert_string_equal(d.user, "");
	assert_string_equal(d.timestamp, "<1.2@x>");
	assert_string_equal(d.digest, "c4c9334bac560ecc979e58001b3e22fb");

	for (size_t i = 0; i < sizeof(cb); i++)
		cb[i] = (uint8_t)i; /* NUL bytes included: binary */
	memset(&m, 0, sizeof(m));
	m.type = AUTHP_SASL_START;
	m.id = 1;
	m.session = 99;
	m.mech = "SCRAM-SHA-256-PLUS";
	m.cb = cb;
	m.cb_len = sizeof(cb);
	m.in = "=";
	decode_ok((size_t)encode(&m), &d);
	assert_int_equal(d.session, 99);
	assert_string_equal(d.mech, "SCRAM-SHA-256-PLUS");
	assert_int_equal(d.cb_len, 32);
	assert_memory_equal(d.cb, cb, 32);
	assert_string_equal(d.in, "=");

	/* No initial response and no channel binding: both absent, not "". */
	m.in = NULL;
	m.cb = NULL;
	m.cb_len = 0;
	decode_ok((size_t)encode(&m), &d);
	assert_null(d.in);
	assert_null(d.cb);
	assert_int_equal(d.cb_len, 0);

	memset(&m, 0, sizeof(m));
	m.type = AUTHP_SASL_STEP;
	m.id = 2;
	m.session = 99;
	m.in = "";
	decode_ok((size_t)encode(&m), &d);
	assert_non_null(d.in);
	assert_string_equal(d.in, "");

	memset(&m, 0, sizeof(m));
	m.type = AUTHP_SASL_END;
	m.session = 99;
	decode_ok((size_t)encode(&m), &d);
	assert_int_equal(d.type, AUTHP_SASL_END);
	assert_int_equal(d.id, 0);
	assert_int_equal(d.session, 99);
	assert_true(authp_is_request(AUTHP_SASL_END));
	assert_false(authp_is_request(AUTHP_SASL_REPLY));
}

static void test_round_trip_replies(void **state)
{
	(void)state;
	struct authp_msg m = {.type = AUTHP_VERIFY_REPLY, .id = 3, .result = AUTH_LOCKED}, d;

	m.address = "alice@example.test";
	decode_ok((size_t)encode(&m), &d);
	assert_int_equal(d.result, AUTH_LOCKED);
	assert_string_equal(d.address, "alice@example.test");
	assert_null(d.error);
	assert_null(d.ticket);
	assert_int_equal(d.ticket_len, 0);

	/* A success carries its ticket, octet for octet. */
	uint8_t ticket[TICKET_SIZE];
	for (size_t i = 0; i < sizeof(ticket); i++)
		ticket[i] = (uint8_t)(i * 7);
	m.result = AUTH_OK;
	m.ticket = ticket;
	m.ticket_len = sizeof(ticket);
	decode_ok((size_t)encode(&m), &d);
	assert_int_equal(d.ticket_len, TICKET_SIZE);
	assert_memory_equal(d.ticket, ticket, TICKET_SIZE);

	memset(&m, 0, sizeof(m));
	m.type = AUTHP_SASL_REPLY;
	m.id = 4;
	m.result = SASL_CONTINUE;
	m.out = "";
	m.login_name = "bob";
	m.error = NULL;
	m.mech = "LOGIN";
	decode_ok((size_t)encode(&m), &d);
	assert_int_equal(d.result, SASL_CONTINUE);
	assert_string_equal(d.out, "");
	assert_null(d.address);
	assert_string_equal(d.login_name, "bob");
	assert_string_equal(d.mech, "LOGIN");
}

/* Every type at every field's bound fits in AUTHP_MSG_MAX, and one more
 * character in any string field is refused by the encoder. */
static void test_bounds_fit(void **state)
{
	(void)state;
	static char user[DIR_ADDRESS_MAX + 2], pw[AUTH_PASSWORD_MAX + 2];
	static char ts[APOP_TIMESTAMP_MAX + 2], dg[APOP_DIGEST_HEX_LEN + 2];
	static char in[SASL_B64_MAX + 2], mech[AUTHP_MECH_MAX + 2], err[AUTHP_ERROR_MAX + 2];
	static uint8_t cb[AUTHP_CB_MAX + 1];
	struct authp_msg m;
	const char *e;
	uint8_t *big = buf;

	/* PASS */
	memset(&m, 0, sizeof(m));
	m.type = AUTHP_PASS;
	m.id = 1;
	m.user = fill(user, DIR_ADDRESS_MAX, 'u');
	m.password = fill(pw, AUTH_PASSWORD_MAX, 'p');
	assert_true(authp_encode(&m, big, AUTHP_MSG_MAX, &e) > 0);
	m.password = fill(pw, AUTH_PASSWORD_MAX + 1, 'p');
	assert_int_equal(authp_encode(&m, big, AUTHP_MSG_MAX, &e), -1);
	assert_string_equal(e, "field too long");
	m.password = "x";
	m.user = fill(user, DIR_ADDRESS_MAX + 1, 'u');
	assert_int_equal(authp_encode(&m, big, AUTHP_MSG_MAX, &e), -1);

	/* APOP */
	memset(&m, 0, sizeof(m));
	m.type = AUTHP_APOP;
	m.id = 1;
	m.user = fill(user, DIR_ADDRESS_MAX, 'u');
	m.timestamp = fill(ts, APOP_TIMESTAMP_MAX, 't');
	m.digest = fill(dg, APOP_DIGEST_HEX_LEN, 'a');
	assert_true(authp_encode(&m, big, AUTHP_MSG_MAX, &e) > 0);
	m.digest = fill(dg, APOP_DIGEST_HEX_LEN + 1, 'a');
	assert_int_equal(authp_encode(&m, big, AUTHP_MSG_MAX, &e), -1);

	/* SASL_START */
	memset(&m, 0, sizeof(m));
	m.type = AUTHP_SASL_START;
	m.id = 1;
	m.session = 1;
	m.mech = fill(mech, AUTHP_MECH_MAX, 'M');
	m.cb = cb;
	m.cb_len = AUTHP_CB_MAX;
	m.in = fill(in, SASL_B64_MAX, 'A');
	assert_true(authp_encode(&m, big, AUTHP_MSG_MAX, &e) > 0);
	m.cb_len = AUTHP_CB_MAX + 1;
	assert_int_equal(authp_encode(&m, big, AUTHP_MSG_MAX, &e), -1);
	m.cb_len = 0;
	m.in = fill(in, SASL_B64_MAX + 1, 'A');
	assert_int_equal(authp_encode(&m, big, AUTHP_MSG_MAX, &e), -1);

	/* SASL_REPLY: the largest message */
	memset(&m, 0, sizeof(m));
	m.type = AUTHP_SASL_REPLY;
	m.id = 1;
	m.result = SASL_CONTINUE;
	m.out = fill(in, SASL_B64_MAX, 'A');
	m.address = fill(user, DIR_ADDRESS_MAX, 'u');
	m.login_name = m.address;
	m.error = fill(err, AUTHP_ERROR_MAX, 'e');
	m.mech = fill(mech, AUTHP_MECH_MAX, 'M');
	static uint8_t ticket[TICKET_SIZE + 1];
	m.ticket = ticket;
	m.ticket_len = TICKET_SIZE;
	int n = authp_encode(&m, big, AUTHP_MSG_MAX, &e);
	assert_true(n > 0);
	assert_true(n < 4096);
	m.ticket_len = TICKET_SIZE + 1;
	assert_int_equal(authp_encode(&m, big, AUTHP_MSG_MAX, &e), -1);
	m.ticket_len = TICKET_SIZE;
	m.error = fill(err, AUTHP_ERROR_MAX + 1, 'e');
	assert_int_equal(authp_encode(&m, big, AUTHP_MSG_MAX, &e), -1);

	/* A buffer too small is an error, not an overflow. */
	m.error = NULL;
	assert_int_equal(authp_encode(&m, big, 100, &e), -1);
	assert_string_equal(e, "message too long");
}

static void test_encode_refuses(void **state)
{
	(void)state;
	struct authp_msg m = {.type = AUTHP_PASS, .id = 1, .user = "a"};
	const char *e;

	/* a required field missing */
	assert_int_equal(authp_encode(&m, buf, sizeof(buf), &e), -1);
	assert_string_equal(e, "required field missing");
	/* id 0 in a request, an id in SASL_END */
	m.password = "p";
	m.id = 0;
	assert_int_equal(authp_encode(&m, buf, sizeof(buf), &e), -1);
	m = (struct authp_msg){.type = AUTHP_SASL_END, .id = 5, .session = 1};
	assert_int_equal(authp_encode(&m, buf, sizeof(buf), &e), -1);
	/* session 0 */
	m = (struct authp_msg){.type = AUTHP_SASL_STEP, .id = 5, .session = 0};
	assert_int_equal(authp_encode(&m, buf, sizeof(buf), &e), -1);
	/* a result out of range */
	m = (struct authp_msg){.type = AUTHP_VERIFY_REPLY, .id = 5, .result = AUTH_TEMPFAIL + 1};
	assert_int_equal(authp_encode(&m, buf, sizeof(buf), &e), -1);
	/* an unknown type */
	m = (struct authp_msg){.type = 0, .id = 5};
	assert_int_equal(authp_encode(&m, buf, sizeof(buf), &e), -1);
	m.type = AUTHP_SASL_REPLY + 1;
	assert_int_equal(authp_encode(&m, buf, sizeof(buf), &e), -1);
}

/* Every proper prefix of a valid message, and the message with a byte
 * more, is refused. */
static void test_decode_prefixes_and_trailing(void **state)
{
	(void)state;
	struct authp_msg m = {.type = AUTHP_SASL_START, .id = 9, .session = 4, .mech = "PLAIN"};
	uint8_t cb[32] = {1, 2, 3};

	m.cb = cb;
	m.cb_len = sizeof(cb);
	m.in = "AGFsaWNlAHNlY3JldA==";
	int n = encode(&m);
	for (int len = 0; len < n; len++)
		decode_bad((size_t)len, NULL);
	buf[n] = 0;
	decode_bad((size_t)n + 1, "trailing bytes");
	struct authp_msg d;
	decode_ok((size_t)n, &d);
	decode_bad(AUTHP_MSG_MAX + 1, "message too long");
}

/* Hand-made records that break one rule each. */
static size_t put16(uint8_t *p, uint16_t v)
{
	memcpy(p, &v, 2);
	return 2;
}

static size_t put32(uint8_t *p, uint32_t v)
{
	memcpy(p, &v, 4);
	return 4;
}

static size_t header(uint16_t type, uint16_t zero, uint32_t id)
{
	size_t n = put16(buf, type);
	n += put16(buf + n, zero);
	n += put32(buf + n, id);
	return n;
}

static size_t put_str(size_t at, const void *s, uint16_t len)
{
	at += put16(buf + at, len);
	memcpy(buf + at, s, len);
	return at + len;
}

static void test_decode_malformed(void **state)
{
	(void)state;
	size_t n;

	/* the reference: a valid PASS */
	n = header(AUTHP_PASS, 0, 1);
	n = put_str(n, "a\0", 2);
	n = put_str(n, "p\0", 2);
	struct authp_msg d;
	decode_ok(n, &d);

	/* reserved bits set */
	n = header(AUTHP_PASS, 1, 1);
	n = put_str(n, "a\0", 2);
	n = put_str(n, "p\0", 2);
	decode_bad(n, "unknown message type");
	/* unknown type */
	n = header(42, 0, 1);
	decode_bad(n, "unknown message type");
	/* id 0 for a request */
	n = header(AUTHP_PASS, 0, 0);
	n = put_str(n, "a\0", 2);
	n = put_str(n, "p\0", 2);
	decode_bad(n, "bad request id");
	/* a string without its NUL */
	n = header(AUTHP_PASS, 0, 1);
	n = put_str(n, "ab", 2);
	n = put_str(n, "p\0", 2);
	decode_bad(n, "bad string");
	/* a NUL inside a string (something hidden after it) */
	n = header(AUTHP_PASS, 0, 1);
	n = put_str(n, "a\0b\0", 4);
	n = put_str(n, "p\0", 2);
	decode_bad(n, "bad string");
	/* a required string absent */
	n = header(AUTHP_PASS, 0, 1);
	n = put_str(n, "", 0);
	n = put_str(n, "p\0", 2);
	decode_bad(n, "required field missing");
	/* a length past the end of the record */
	n = header(AUTHP_PASS, 0, 1);
	n = put_str(n, "a\0", 2);
	n += put16(buf + n, 500);
	decode_bad(n, "truncated message");
	/* a string one over its bound */
	{
		static char user[DIR_ADDRESS_MAX + 2];
		memset(user, 'u', DIR_ADDRESS_MAX + 1);
		user[DIR_ADDRESS_MAX + 1] = '\0';
		n = header(AUTHP_PASS, 0, 1);
		n = put_str(n, user, DIR_ADDRESS_MAX + 2);
		n = put_str(n, "p\0", 2);
		decode_bad(n, "field too long");
		/* and at the bound it is fine */
		user[DIR_ADDRESS_MAX] = '\0';
		n = header(AUTHP_PASS, 0, 1);
		n = put_str(n, user, DIR_ADDRESS_MAX + 1);
		n = put_str(n, "p\0", 2);
		decode_ok(n, &d);
	}
	/* channel binding over its bound */
	{
		static uint8_t cb[AUTHP_CB_MAX + 1];
		n = header(AUTHP_SASL_START, 0, 1);
		n += put32(buf + n, 1);
		n = put_str(n, "PLAIN\0", 6);
		n = put_str(n, cb, AUTHP_CB_MAX + 1);
		n = put_str(n, "", 0);
		decode_bad(n, "field too long");
	}
	/* session 0 */
	n = header(AUTHP_SASL_STEP, 0, 1);
	n += put32(buf + n, 0);
	n = put_str(n, "", 0);
	decode_bad(n, "value out of range");
	/* a result out of range */
	n = header(AUTHP_SASL_REPLY, 0, 1);
	n += put32(buf + n, SASL_MALFORMED + 1);
	n = put_str(n, "", 0);
	n = put_str(n, "", 0);
	n = put_str(n, "", 0);
	n = put_str(n, "", 0);
	n = put_str(n, "X\0", 2);
	n = put_str(n, "", 0); /* no ticket */
	decode_bad(n, "value out of range");
	/* the same with a valid result decodes */
	put32(buf + 8, SASL_FAILED);
	decode_ok(n, &d);
	assert_int_equal(d.result, SASL_FAILED);
	/* a short header */
	decode_bad(5, "short header");
}

/* The socket: an abstract name, records kept whole, an over-long record
 * seen as truncated by the reader. */
static void test_listen(void **state)
{
	(void)state;
	struct authp_addr addr;
	const char *err;
	char name[64];
	int lfd = authp_listen(&addr, &err);

	assert_true(lfd >= 0);
	assert_true(addr.len > sizeof(sa_family_t));
	assert_int_equal(addr.sun.sun_path[0], '\0'); /* abstract */
	authp_addr_str(&addr, name, sizeof(name));
	assert_int_equal(name[0], '@');

	int c = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
	assert_true(c >= 0);
	assert_int_equal(connect(c, (struct sockaddr *)&addr.sun, addr.len), 0);
	int s = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
	assert_true(s >= 0);

	static uint8_t big[AUTHP_MSG_MAX + 100];
	memset(big, 'x', sizeof(big));
	assert_int_equal(send(c, "ab", 2, 0), 2);
	assert_int_equal(send(c, "cde", 3, 0), 3);
	assert_int_equal(send(c, big, sizeof(big), 0), (ssize_t)sizeof(big));
	uint8_t in[AUTHP_MSG_MAX];
	struct iovec iov = {in, sizeof(in)};
	struct msghdr mh = {.msg_iov = &iov, .msg_iovlen = 1};
	assert_int_equal(recvmsg(s, &mh, 0), 2);
	assert_int_equal(recvmsg(s, &mh, 0), 3);
	assert_int_equal(recvmsg(s, &mh, 0), AUTHP_MSG_MAX);
	assert_true(mh.msg_flags & MSG_TRUNC);
	close(s);
	close(c);
	close(lfd);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_round_trip_requests),
	    cmocka_unit_test(test_round_trip_replies),
	    cmocka_unit_test(test_bounds_fit),
	    cmocka_unit_test(test_encode_refuses),
	    cmocka_unit_test(test_decode_prefixes_and_trailing),
	    cmocka_unit_test(test_decode_malformed),
	    cmocka_unit_test(test_listen),
	};

	return cmocka_run_group_tests_name("authproto", tests, NULL, NULL);
}
