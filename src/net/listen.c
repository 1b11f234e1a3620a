#include "net/listen.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "core/util.h"

/* Pending connections the kernel may queue per listener; bursts of new
 * clients wait there instead of being refused. */
#define LISTEN_BACKLOG 1024
/* A unix listener (LMTP from the local MTA) is open to every local account,
 * like a TCP listener on loopback is: the MTA runs under its own account. */
#define LISTEN_UNIX_MODE 0666

int listen_parse(const char *spec, struct sockaddr_storage *ss, socklen_t *len_r,
                 const char **error_r)
{
	memset(ss, 0, sizeof(*ss));
	if (strncmp(spec, "unix:", 5) == 0) {
		struct sockaddr_un *sun = (struct sockaddr_un *)ss;
		const char *path = spec + 5;
		if (path[0] != '/' || strlen(path) >= sizeof(sun->sun_path)) {
			*error_r = "unix socket path must be absolute and shorter than 108 bytes";
			return -1;
		}
		sun->sun_family = AF_UNIX;
		strcpy(sun->sun_path, path);
		*len_r = sizeof(*sun);
		return 0;
	}

	const char *colon = strrchr(spec, ':');
	if (colon == NULL || colon == spec) {
		*error_r = "expected ADDR:PORT";
		return -1;
	}
	uint64_t port;
	if (parse_uint(colon + 1, strlen(colon + 1), 65535, &port) < 0 || port == 0) {
		*error_r = "port must be 1-65535";
		return -1;
	}
	char host[64];
	size_t hlen = (size_t)(colon - spec);
	if (spec[0] == '[') {
		if (hlen < 3 || spec[hlen - 1] != ']') {
			*error_r = "IPv6 address must be in brackets: [::1]:110";
			return -1;
		}
		hlen -= 2;
		spec++;
	}
	if (hlen >= sizeof(host)) {
		*error_r = "address too long";
		return -1;
	}
	memcpy(host, spec, hlen);
	host[hlen] = '\0';

	struct sockaddr_in *sin = (struct sockaddr_in *)ss;
	struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)ss;
	if (strcmp(host, "*") == 0 || strcmp(host, "0.0.0.0") == 0) {
		sin->sin_family = AF_INET;
		sin->sin_addr.s_addr = htonl(INADDR_ANY);
		sin->sin_port = htons((uint16_t)port);
		*len_r = sizeof(*sin);
	} else if (inet_pton(AF_INET, host, &sin->sin_addr) == 1) {
		sin->sin_family = AF_INET;
		sin->sin_port = htons((uint16_t)port);
		*len_r = sizeof(*sin);
	} else if (inet_pton(AF_INET6, host, &sin6->sin6_addr) == 1) {
		sin6->sin6_family = AF_INET6;
		sin6->sin6_port = htons((uint16_t)port);
		*len_r = sizeof(*sin6);
	} else {
		*error_r = "not a numeric IPv4 or IPv6 address";
		return -1;
	}
	return 0;
}

int listen_bind(const char *spec, char *err, size_t errlen)
{
	struct sockaddr_storage ss;
	socklen_t len;
	const char *error;

	if (listen_parse(spec, &ss, &len, &error) < 0) {
		snprintf(err, errlen, "%s: %s", spec, error);
		return -1;
	}
	int fd = socket(ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0) {
		snprintf(err, errlen, "%s: socket: %s", spec, strerror(errno));
		return -1;
	}
	if (ss.ss_family == AF_UNIX) {
		const char *path = ((struct sockaddr_un *)&ss)->sun_path;
		struct stat st;
		if (lstat(path, &st) == 0 && S_ISSOCK(st.st_mode))
			unlink(path);
	} else {
		int one = 1;
		setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
		if (ss.ss_family == AF_INET6)
			setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one));
	}
	if (bind(fd, (struct sockaddr *)&ss, len) < 0 || listen(fd, LISTEN_BACKLOG) < 0 ||
	    (ss.ss_family == AF_UNIX &&
	     chmod(((struct sockaddr_un *)&ss)->sun_path, LISTEN_UNIX_MODE) < 0)) {
		snprintf(err, errlen, "%s: %s", spec, strerror(errno));
		close(fd);
		return -1;
	}
	return fd;
}

void net_peer_string(const struct sockaddr *sa, socklen_t len, char *out, size_t size)
{
	(void)len;
	if (sa->sa_family == AF_INET) {
		inet_ntop(AF_INET, &((const struct sockaddr_in *)sa)->sin_addr, out,
		          (socklen_t)size);
	} else if (sa->sa_family == AF_INET6) {
		const struct in6_addr *a = &((const struct sockaddr_in6 *)sa)->sin6_addr;
		if (IN6_IS_ADDR_V4MAPPED(a))
			inet_ntop(AF_INET, &a->s6_addr[12], out, (socklen_t)size);
		else
			inet_ntop(AF_INET6, a, out, (socklen_t)size);
	} else {
		snprintf(out, size, "local");
	}
}

void net_peer_key(const struct sockaddr *sa, uint8_t key[16])
{
	memset(key, 0, 16);
	if (sa->sa_family == AF_INET) {
		key[10] = key[11] = 0xff;
		memcpy(key + 12, &((const struct sockaddr_in *)sa)->sin_addr, 4);
	} else if (sa->sa_family == AF_INET6) {
		memcpy(key, &((const struct sockaddr_in6 *)sa)->sin6_addr, 16);
	}
}

bool net_is_loopback(const struct sockaddr *sa)
{
	if (sa->sa_family == AF_INET)
		return (ntohl(((const struct sockaddr_in *)sa)->sin_addr.s_addr) >> 24) == 127;
	if (sa->sa_family == AF_INET6) {
		const struct in6_addr *a = &((const struct sockaddr_in6 *)sa)->sin6_addr;
		if (IN6_IS_ADDR_LOOPBACK(a))
			return true;
		return IN6_IS_ADDR_V4MAPPED(a) && a->s6_addr[12] == 127;
	}
	return sa->sa_family == AF_UNIX;
}
