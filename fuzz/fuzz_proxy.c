/* libFuzzer target: the PROXY protocol header parser, versions 1 and 2
 * (net/proxy.h), and the trusted_proxies networks it is checked against.
 *
 * Input: the first bytes of a connection from a trusted proxy. The parser
 * is called on every prefix of it, as the bytes would arrive; the input up
 * to its first NUL or line break is also parsed as a trusted_proxies value.
 *
 * Checked besides the sanitizers' findings:
 *   - prefixes behave like a stream: "need more" until the parser decides,
 *     then the same decision for every longer prefix — a header, always of
 *     the same length and address, or "bad" for good; a complete header is
 *     never longer than the input, nor than 107 octets (v1) or
 *     16 + PROXY_V2_MAX_LEN (v2);
 *   - a header's client address is IPv4 or IPv6 with the matching length
 *     (or `local`), and it is trusted by a network of exactly itself and by
 *     the whole address family (/0);
 *   - "bad" comes with a reason;
 *   - a trusted_proxies value that `pillar check` accepts (config_check_cidr)
 *     is one the server can load (proxy_net_parse), and the network's own
 *     address lies in it. */
#include <netinet/in.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "common.h"
#include "core/config.h"
#include "net/proxy.h"

static void check_address(const struct proxy_result *r)
{
	struct proxy_net net;

	if (r->local)
		return;
	const struct sockaddr *sa = (const struct sockaddr *)&r->src;
	memset(&net, 0, sizeof(net));
	if (sa->sa_family == AF_INET) {
		FUZZ_CHECK(r->srclen == sizeof(struct sockaddr_in), "IPv4 address of length %u",
		           (unsigned)r->srclen);
		net.family = AF_INET;
		memcpy(net.addr, &((const struct sockaddr_in *)sa)->sin_addr, 4);
		net.prefix = 32;
	} else {
		FUZZ_CHECK(sa->sa_family == AF_INET6 && r->srclen == sizeof(struct sockaddr_in6),
		           "client address of family %d, length %u", sa->sa_family,
		           (unsigned)r->srclen);
		net.family = AF_INET6;
		memcpy(net.addr, &((const struct sockaddr_in6 *)sa)->sin6_addr, 16);
		net.prefix = 128;
	}
	FUZZ_CHECK(proxy_trusted(&net, 1, sa), "an address is not in its own network");
	net.prefix = 0;
	FUZZ_CHECK(proxy_trusted(&net, 1, sa), "an address is not in /0 of its family");
}

static bool same_result(const struct proxy_result *a, const struct proxy_result *b)
{
	return a->length == b->length && a->local == b->local &&
	       (a->local || (a->srclen == b->srclen && memcmp(&a->src, &b->src, a->srclen) == 0));
}

static void check_stream(const uint8_t *data, size_t size)
{
	struct proxy_result first, r;
	enum proxy_status decided = PROXY_NEED_MORE;
	size_t limit = size < PROXY_MAX_HEADER + 64 ? size : PROXY_MAX_HEADER + 64;

	for (size_t k = 0; k <= limit; k++) {
		/* An exact-size copy, so a read past the prefix is caught. */
		uint8_t *buf = malloc(k ? k : 1);
		const char *error = NULL;
		memcpy(buf, data, k);
		memset(&r, 0xa5, sizeof(r));
		enum proxy_status st = proxy_parse(buf, k, &r, &error);
		free(buf);

		FUZZ_CHECK(st == PROXY_NEED_MORE || st == PROXY_DONE || st == PROXY_BAD,
		           "status %d", (int)st);
		if (decided == PROXY_NEED_MORE) {
			decided = st;
			if (st == PROXY_DONE) {
				first = r;
				FUZZ_CHECK(first.length >= 8 && first.length <= k,
				           "header of %zu octets in a prefix of %zu", first.length,
				           k);
				FUZZ_CHECK(first.length <=
				               (data[0] == 'P' ? PROXY_V1_MAX : PROXY_MAX_HEADER),
				           "header of %zu octets", first.length);
				check_address(&first);
			}
		} else {
			FUZZ_CHECK(st == decided, "prefix of %zu octets: status %d after %d", k,
			           (int)st, (int)decided);
			if (st == PROXY_DONE)
				FUZZ_CHECK(same_result(&first, &r),
				           "a longer prefix changed the header's result");
		}
		if (st == PROXY_BAD)
			FUZZ_CHECK(error != NULL && error[0] != '\0', "refused without a reason");
	}
}

static void check_network(const uint8_t *data, size_t size)
{
	size_t n = 0;
	while (n < size && data[n] != '\0' && data[n] != '\n' && data[n] != '\r')
		n++;
	char *s = malloc(n + 1);
	memcpy(s, data, n);
	s[n] = '\0';

	char why[CONFIG_WHY_MAX];
	struct proxy_net net;
	int cfg_ok = config_check_cidr(s, why) == 0;
	int net_ok = proxy_net_parse(s, &net) == 0;
	FUZZ_CHECK(!cfg_ok || net_ok, "\"%s\" passes pillar check but the server cannot load it",
	           s);
	if (net_ok) {
		FUZZ_CHECK((net.family == AF_INET && net.prefix <= 32) ||
		               (net.family == AF_INET6 && net.prefix <= 128),
		           "network family %d prefix %u", net.family, net.prefix);
		struct sockaddr_storage ss;
		memset(&ss, 0, sizeof(ss));
		if (net.family == AF_INET) {
			struct sockaddr_in *sin = (struct sockaddr_in *)&ss;
			sin->sin_family = AF_INET;
			memcpy(&sin->sin_addr, net.addr, 4);
		} else {
			struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)&ss;
			sin6->sin6_family = AF_INET6;
			memcpy(&sin6->sin6_addr, net.addr, 16);
		}
		FUZZ_CHECK(proxy_trusted(&net, 1, (struct sockaddr *)&ss),
		           "\"%s\": the network's own address is not in it", s);
	}
	free(s);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	check_stream(data, size);
	check_network(data, size);
	return 0;
}
