/* PROXY protocol header parsing and trusted networks. */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "net/proxy.h"

static enum proxy_status parse(const void *buf, size_t len, struct proxy_result *r)
{
	const char *error = NULL;
	memset(r, 0, sizeof(*r));
	return proxy_parse(buf, len, r, &error);
}

static const char *src_ip(const struct proxy_result *r, char *buf, size_t size)
{
	if (r->src.ss_family == AF_INET)
		inet_ntop(AF_INET, &((const struct sockaddr_in *)&r->src)->sin_addr, buf, size);
	else
		inet_ntop(AF_INET6, &((const struct sockaddr_in6 *)&r->src)->sin6_addr, buf,
		          (socklen_t)size);
	return buf;
}

static void test_v1(void **state)
{
	(void)state;
	struct proxy_result r;
	char ip[64];
	const char *h = "PROXY TCP4 192.0.2.7 198.51.100.1 56324 110\r\nUSER x\r\n";

	assert_int_equal(parse(h, strlen(h), &r), PROXY_DONE);
	assert_int_equal(r.length, strlen("PROXY TCP4 192.0.2.7 198.51.100.1 56324 110\r\n"));
	assert_false(r.local);
	assert_string_equal(src_ip(&r, ip, sizeof(ip)), "192.0.2.7");
	assert_int_equal(ntohs(((struct sockaddr_in *)&r.src)->sin_port), 56324);

	h = "PROXY TCP6 2001:db8::7 2001:db8::1 1 995\r\n";
	assert_int_equal(parse(h, strlen(h), &r), PROXY_DONE);
	assert_string_equal(src_ip(&r, ip, sizeof(ip)), "2001:db8::7");

	h = "PROXY UNKNOWN\r\n";
	assert_int_equal(parse(h, strlen(h), &r), PROXY_DONE);
	assert_true(r.local);
	h = "PROXY UNKNOWN ffff::1 ffff::2 1 2\r\n";
	assert_int_equal(parse(h, strlen(h), &r), PROXY_DONE);
	assert_true(r.local);

	/* Every prefix of a good header needs more; byte by byte. */
	h = "PROXY TCP4 192.0.2.7 198.51.100.1 56324 110\r\n";
	for (size_t i = 1; i < strlen(h); i++)
		assert_int_equal(parse(h, i, &r), PROXY_NEED_MORE);
}

static void test_v1_bad(void **state)
{
	(void)state;
	struct proxy_result r;
	const char *bad[] = {
	    "USER alice\r\n",
	    "PROXY TCP4 192.0.2.7 198.51.100.1 56324 110\n",   /* LF only */
	    "PROXY TCP4 192.0.2.7 198.51.100.1 56324\r\n",     /* a field missing */
	    "PROXY TCP4 192.0.2.7  198.51.100.1 1 2\r\n",      /* two spaces */
	    "PROXY TCP4 300.0.2.7 198.51.100.1 1 2\r\n",       /* bad address */
	    "PROXY TCP4 2001:db8::1 198.51.100.1 1 2\r\n",     /* wrong family */
	    "PROXY TCP4 192.0.2.7 198.51.100.1 65536 2\r\n",   /* port range */
	    "PROXY TCP4 192.0.2.7 198.51.100.1 01 2\r\n",      /* leading zero */
	    "PROXY TCP4 192.0.2.7 198.51.100.1 -1 2\r\n",      /* sign */
	    "PROXY UDP4 192.0.2.7 198.51.100.1 1 2\r\n",       /* protocol */
	    "PROXY TCP4 192.0.2.7 198.51.100.1 1 2 extra\r\n", /* a field too many */
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		assert_int_equal(parse(bad[i], strlen(bad[i]), &r), PROXY_BAD);
	/* 107 octets without a line end: too long. */
	char longline[200] = "PROXY TCP6 ";
	memset(longline + 11, 'a', 120);
	assert_int_equal(parse(longline, 131, &r), PROXY_BAD);
}

static size_t v2(uint8_t *buf, uint8_t ver_cmd, uint8_t fam, const void *body, uint16_t len)
{
	static const uint8_t sig[12] = {0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d,
	                                0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a};
	memcpy(buf, sig, 12);
	buf[12] = ver_cmd;
	buf[13] = fam;
	buf[14] = (uint8_t)(len >> 8);
	buf[15] = (uint8_t)len;
	memcpy(buf + 16, body, len);
	return 16u + len;
}

static void test_v2(void **state)
{
	(void)state;
	struct proxy_result r;
	uint8_t buf[2048], body[64];
	char ip[64];

	/* IPv4 with an unknown TLV after the addresses: ignored. */
	memcpy(body,
	       "\xc6\x33\x64\x09"
	       "\x7f\x00\x00\x01"
	       "\x11\x5c"
	       "\x00\x6e",
	       12);
	memcpy(body + 12,
	       "\xee\x00\x03"
	       "abc",
	       6);
	size_t n = v2(buf, 0x21, 0x11, body, 18);
	memcpy(buf + n, "CAPA\r\n", 6);
	assert_int_equal(parse(buf, n + 6, &r), PROXY_DONE);
	assert_int_equal(r.length, n);
	assert_string_equal(src_ip(&r, ip, sizeof(ip)), "198.51.100.9");
	assert_int_equal(ntohs(((struct sockaddr_in *)&r.src)->sin_port), 4444);
	for (size_t i = 1; i < n; i++)
		assert_int_equal(parse(buf, i, &r), PROXY_NEED_MORE);

	/* IPv6. */
	memset(body, 0, 36);
	body[0] = 0x20, body[1] = 0x01, body[2] = 0x0d, body[3] = 0xb8, body[15] = 7;
	n = v2(buf, 0x21, 0x21, body, 36);
	assert_int_equal(parse(buf, n, &r), PROXY_DONE);
	assert_string_equal(src_ip(&r, ip, sizeof(ip)), "2001:db8::7");

	/* The largest header there is: 65535 octets after the fixed part,
	 * nearly all one unknown TLV. */
	uint8_t *big = malloc(PROXY_MAX_HEADER + 8);
	assert_non_null(big);
	n = v2(big, 0x21, 0x11, "\xc6\x33\x64\x0a\x7f\x00\x00\x01\x11\x5c\x00\x6e", 12);
	big[14] = 0xff, big[15] = 0xff;
	big[n] = 0xee, big[n + 1] = (65535 - 15) >> 8, big[n + 2] = (65535 - 15) & 0xff;
	memset(big + n + 3, 'x', 65535 - 15);
	memcpy(big + PROXY_MAX_HEADER, "CAPA\r\n", 6);
	assert_int_equal(parse(big, 16, &r), PROXY_NEED_MORE);
	assert_int_equal(parse(big, PROXY_MAX_HEADER - 1, &r), PROXY_NEED_MORE);
	assert_int_equal(parse(big, PROXY_MAX_HEADER + 6, &r), PROXY_DONE);
	assert_int_equal(r.length, PROXY_MAX_HEADER);
	assert_string_equal(src_ip(&r, ip, sizeof(ip)), "198.51.100.10");
	free(big);

	/* LOCAL (health checks) and UNSPEC keep the real endpoints. */
	n = v2(buf, 0x20, 0x00, body, 0);
	assert_int_equal(parse(buf, n, &r), PROXY_DONE);
	assert_true(r.local);
	n = v2(buf, 0x21, 0x00, body, 0);
	assert_int_equal(parse(buf, n, &r), PROXY_DONE);
	assert_true(r.local);
}

static void test_v2_bad(void **state)
{
	(void)state;
	struct proxy_result r;
	uint8_t buf[2048] = {0}, body[64] = {0};

	assert_int_equal(parse(buf, v2(buf, 0x11, 0x11, body, 12), &r), PROXY_BAD); /* version */
	assert_int_equal(parse(buf, v2(buf, 0x22, 0x11, body, 12), &r), PROXY_BAD); /* command */
	assert_int_equal(parse(buf, v2(buf, 0x21, 0x11, body, 8), &r), PROXY_BAD);  /* short v4 */
	assert_int_equal(parse(buf, v2(buf, 0x21, 0x21, body, 20), &r), PROXY_BAD); /* short v6 */
	/* A wrong signature byte. */
	v2(buf, 0x21, 0x11, body, 12);
	buf[7] = 'X';
	assert_int_equal(parse(buf, 28, &r), PROXY_BAD);
}

static void test_trusted(void **state)
{
	(void)state;
	struct proxy_net nets[3];
	struct sockaddr_in sin = {.sin_family = AF_INET};
	struct sockaddr_in6 sin6 = {.sin6_family = AF_INET6};

	assert_int_equal(proxy_net_parse("10.0.0.0/8", &nets[0]), 0);
	assert_int_equal(proxy_net_parse("2001:db8::/32", &nets[1]), 0);
	assert_int_equal(proxy_net_parse("192.0.2.1", &nets[2]), 0);
	assert_int_equal(proxy_net_parse("10.0.0.0/33", &nets[0]), -1);
	assert_int_equal(proxy_net_parse("not-an-address", &nets[0]), -1);
	assert_int_equal(proxy_net_parse("10.0.0.0/8", &nets[0]), 0);

	inet_pton(AF_INET, "10.200.3.4", &sin.sin_addr);
	assert_true(proxy_trusted(nets, 3, (struct sockaddr *)&sin));
	inet_pton(AF_INET, "11.0.0.1", &sin.sin_addr);
	assert_false(proxy_trusted(nets, 3, (struct sockaddr *)&sin));
	inet_pton(AF_INET, "192.0.2.1", &sin.sin_addr);
	assert_true(proxy_trusted(nets, 3, (struct sockaddr *)&sin));
	inet_pton(AF_INET, "192.0.2.2", &sin.sin_addr);
	assert_false(proxy_trusted(nets, 3, (struct sockaddr *)&sin));
	inet_pton(AF_INET6, "2001:db8:ffff::1", &sin6.sin6_addr);
	assert_true(proxy_trusted(nets, 3, (struct sockaddr *)&sin6));
	inet_pton(AF_INET6, "2001:db9::1", &sin6.sin6_addr);
	assert_false(proxy_trusted(nets, 3, (struct sockaddr *)&sin6));
	inet_pton(AF_INET6, "::ffff:10.1.2.3", &sin6.sin6_addr); /* v4-mapped */
	assert_true(proxy_trusted(nets, 3, (struct sockaddr *)&sin6));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_v1),      cmocka_unit_test(test_v1_bad),
	    cmocka_unit_test(test_v2),      cmocka_unit_test(test_v2_bad),
	    cmocka_unit_test(test_trusted),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
