/* PROXY protocol headers, versions 1 (text) and 2 (binary), as HAProxy's
 * specification defines them. Written here: no Debian library parses
 * them, and the format is small. */
#include "net/proxy.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>

#include "core/util.h"

static const uint8_t v2_sig[12] = {0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d,
                                   0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a};

/* Could buf still become the start of `prefix`? */
static bool may_start(const uint8_t *buf, size_t len, const void *prefix, size_t plen)
{
	return memcmp(buf, prefix, len < plen ? len : plen) == 0;
}

static int v1_port(const char *s, size_t n, uint16_t *out)
{
	uint64_t v;
	/* Decimal 0-65535 without leading zeros (spec §2.1). */
	if (n == 0 || n > 5 || (n > 1 && s[0] == '0') || parse_uint(s, n, 65535, &v) < 0)
		return -1;
	*out = (uint16_t)v;
	return 0;
}

static enum proxy_status parse_v1(const uint8_t *buf, size_t len, struct proxy_result *out,
                                  const char **error_r)
{
	const uint8_t *lf = memchr(buf, '\n', len < PROXY_V1_MAX ? len : PROXY_V1_MAX);
	if (lf == NULL) {
		if (len >= PROXY_V1_MAX) {
			*error_r = "v1 header longer than 107 octets";
			return PROXY_BAD;
		}
		return PROXY_NEED_MORE;
	}
	size_t n = (size_t)(lf - buf) + 1;
	if (n < 8 || buf[n - 2] != '\r') {
		*error_r = "v1 header does not end in CRLF";
		return PROXY_BAD;
	}
	char line[PROXY_V1_MAX + 1];
	memcpy(line, buf, n - 2);
	line[n - 2] = '\0';
	if (memchr(line, '\0', n - 2) != NULL) {
		*error_r = "NUL in v1 header";
		return PROXY_BAD;
	}
	out->length = n;
	if (strncmp(line, "PROXY UNKNOWN", 13) == 0 && (line[13] == '\0' || line[13] == ' ')) {
		out->local = true;
		return PROXY_DONE;
	}
	/* PROXY TCP4|TCP6 SRC DST SPORT DPORT, single spaces. */
	char *f[6];
	unsigned nf = 0;
	for (char *p = line; nf < 6;) {
		f[nf++] = p;
		char *sp = strchr(p, ' ');
		if (sp == NULL)
			break;
		*sp = '\0';
		p = sp + 1;
	}
	size_t spaces = 0;
	for (size_t i = 0; i < n - 2; i++)
		spaces += buf[i] == ' ';
	if (nf != 6 || spaces != 5 || strcmp(f[0], "PROXY") != 0) {
		*error_r = "malformed v1 header";
		return PROXY_BAD;
	}
	uint16_t sport, dport;
	if (v1_port(f[4], strlen(f[4]), &sport) < 0 || v1_port(f[5], strlen(f[5]), &dport) < 0) {
		*error_r = "bad port in v1 header";
		return PROXY_BAD;
	}
	memset(&out->src, 0, sizeof(out->src));
	if (strcmp(f[1], "TCP4") == 0) {
		struct sockaddr_in *sin = (struct sockaddr_in *)&out->src;
		struct in_addr dst;
		if (inet_pton(AF_INET, f[2], &sin->sin_addr) != 1 ||
		    inet_pton(AF_INET, f[3], &dst) != 1) {
			*error_r = "bad IPv4 address in v1 header";
			return PROXY_BAD;
		}
		sin->sin_family = AF_INET;
		sin->sin_port = htons(sport);
		out->srclen = sizeof(*sin);
	} else if (strcmp(f[1], "TCP6") == 0) {
		struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)&out->src;
		struct in6_addr dst;
		if (inet_pton(AF_INET6, f[2], &sin6->sin6_addr) != 1 ||
		    inet_pton(AF_INET6, f[3], &dst) != 1) {
			*error_r = "bad IPv6 address in v1 header";
			return PROXY_BAD;
		}
		sin6->sin6_family = AF_INET6;
		sin6->sin6_port = htons(sport);
		out->srclen = sizeof(*sin6);
	} else {
		*error_r = "unknown protocol in v1 header";
		return PROXY_BAD;
	}
	out->local = false;
	return PROXY_DONE;
}

static enum proxy_status parse_v2(const uint8_t *buf, size_t len, struct proxy_result *out,
                                  const char **error_r)
{
	if (len < 16)
		return PROXY_NEED_MORE;
	uint8_t ver_cmd = buf[12], fam = buf[13];
	size_t body = (size_t)buf[14] << 8 | buf[15];
	if ((ver_cmd >> 4) != 2 || (ver_cmd & 0x0f) > 1) {
		*error_r = "v2 header: unknown version or command";
		return PROXY_BAD;
	}
	if (len < 16 + body)
		return PROXY_NEED_MORE;
	out->length = 16 + body;
	const uint8_t *a = buf + 16;
	memset(&out->src, 0, sizeof(out->src));
	/* LOCAL: the proxy's own connection (health checks). Families and
	 * protocols we do not carry (UNSPEC, UNIX, DGRAM) keep the real
	 * endpoints, as the specification asks. Any TLVs after the addresses
	 * are skipped: receivers must ignore what they do not know. */
	if ((ver_cmd & 0x0f) == 0 || (fam & 0x0f) != 1 || ((fam >> 4) != 1 && (fam >> 4) != 2)) {
		out->local = true;
		return PROXY_DONE;
	}
	if ((fam >> 4) == 1) {
		if (body < 12) {
			*error_r = "v2 header: IPv4 addresses truncated";
			return PROXY_BAD;
		}
		struct sockaddr_in *sin = (struct sockaddr_in *)&out->src;
		sin->sin_family = AF_INET;
		memcpy(&sin->sin_addr, a, 4);
		memcpy(&sin->sin_port, a + 8, 2);
		out->srclen = sizeof(*sin);
	} else {
		if (body < 36) {
			*error_r = "v2 header: IPv6 addresses truncated";
			return PROXY_BAD;
		}
		struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)&out->src;
		sin6->sin6_family = AF_INET6;
		memcpy(&sin6->sin6_addr, a, 16);
		memcpy(&sin6->sin6_port, a + 32, 2);
		out->srclen = sizeof(*sin6);
	}
	out->local = false;
	return PROXY_DONE;
}

enum proxy_status proxy_parse(const uint8_t *buf, size_t len, struct proxy_result *out,
                              const char **error_r)
{
	if (len == 0)
		return PROXY_NEED_MORE;
	if (may_start(buf, len, v2_sig, sizeof(v2_sig)))
		return len < sizeof(v2_sig) ? PROXY_NEED_MORE : parse_v2(buf, len, out, error_r);
	if (may_start(buf, len, "PROXY ", 6))
		return len < 6 ? PROXY_NEED_MORE : parse_v1(buf, len, out, error_r);
	*error_r = "no PROXY protocol header";
	return PROXY_BAD;
}

int proxy_net_parse(const char *s, struct proxy_net *out)
{
	char addr[64];
	const char *slash = strchr(s, '/');
	size_t alen = slash != NULL ? (size_t)(slash - s) : strlen(s);

	if (alen == 0 || alen >= sizeof(addr))
		return -1;
	memcpy(addr, s, alen);
	addr[alen] = '\0';
	memset(out, 0, sizeof(*out));
	if (inet_pton(AF_INET, addr, out->addr) == 1)
		out->family = AF_INET;
	else if (inet_pton(AF_INET6, addr, out->addr) == 1)
		out->family = AF_INET6;
	else
		return -1;
	unsigned max = out->family == AF_INET ? 32 : 128;
	uint64_t prefix = max;
	if (slash != NULL && parse_uint(slash + 1, strlen(slash + 1), max, &prefix) < 0)
		return -1;
	out->prefix = (unsigned)prefix;
	return 0;
}

static bool prefix_match(const uint8_t *a, const uint8_t *b, unsigned bits)
{
	unsigned bytes = bits / 8, rest = bits % 8;
	if (memcmp(a, b, bytes) != 0)
		return false;
	if (rest == 0)
		return true;
	uint8_t mask = (uint8_t)(0xff << (8 - rest));
	return (a[bytes] & mask) == (b[bytes] & mask);
}

bool proxy_trusted(const struct proxy_net *nets, size_t n, const struct sockaddr *sa)
{
	uint8_t v4[4], v6[16];
	bool has4 = false, has6 = false;

	if (sa->sa_family == AF_INET) {
		memcpy(v4, &((const struct sockaddr_in *)sa)->sin_addr, 4);
		has4 = true;
	} else if (sa->sa_family == AF_INET6) {
		const struct in6_addr *a = &((const struct sockaddr_in6 *)sa)->sin6_addr;
		memcpy(v6, a, 16);
		has6 = true;
		if (IN6_IS_ADDR_V4MAPPED(a)) {
			memcpy(v4, v6 + 12, 4);
			has4 = true;
		}
	}
	for (size_t i = 0; i < n; i++) {
		if (nets[i].family == AF_INET && has4 &&
		    prefix_match(v4, nets[i].addr, nets[i].prefix))
			return true;
		if (nets[i].family == AF_INET6 && has6 &&
		    prefix_match(v6, nets[i].addr, nets[i].prefix))
			return true;
	}
	return false;
}
