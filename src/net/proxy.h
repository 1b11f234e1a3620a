/* The PROXY protocol (HAProxy's specification, versions 1 and 2): a load
 * balancer in front of Pillar prepends the client's real address to the
 * connection. We accept it only from `trusted_proxies`, and from those we
 * require it: the first bytes of such a connection must be a header.
 *
 * The parser is pure and bounded: it looks at the bytes received so far and
 * says "need more", "bad" or "complete, N bytes long, this address". */
#ifndef PILLAR_NET_PROXY_H
#define PILLAR_NET_PROXY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

/* v1: "PROXY TCP6 <39> <39> <5> <5>\r\n" is at most 107 octets (spec §2.1).
 * v2: a 16-octet fixed part and up to 65535 more (its length field), all of
 * which a receiver must take: addresses, then TLVs of any kind. */
#define PROXY_V1_MAX     107
#define PROXY_V2_MAX_LEN 65535
#define PROXY_MAX_HEADER (16 + PROXY_V2_MAX_LEN)

enum proxy_status {
	PROXY_NEED_MORE = 0,
	PROXY_DONE = 1,
	PROXY_BAD = -1,
};

struct proxy_result {
	size_t length; /* octets of the header, to consume */
	/* The client's address and port; `local` when the proxy speaks for
	 * itself (v2 LOCAL, v1 UNKNOWN, or an address family we do not
	 * carry): then the connection's own address stands. */
	bool local;
	struct sockaddr_storage src;
	socklen_t srclen;
};

/* Parse buf[0..len): the start of a connection. */
enum proxy_status proxy_parse(const uint8_t *buf, size_t len, struct proxy_result *out,
                              const char **error_r);

/* A network from trusted_proxies: "192.0.2.0/24", "2001:db8::/32" or a
 * single address. */
struct proxy_net {
	int family; /* AF_INET or AF_INET6 */
	uint8_t addr[16];
	unsigned prefix;
};

int proxy_net_parse(const char *s, struct proxy_net *out);

/* Whether sa lies in one of nets[0..n) (v4-mapped IPv6 counts as IPv4). */
bool proxy_trusted(const struct proxy_net *nets, size_t n, const struct sockaddr *sa);

#endif
