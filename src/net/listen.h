/* Listening sockets: "ADDR:PORT", "[V6]:PORT", "*:PORT" or "unix:/PATH". */
#ifndef PILLAR_NET_LISTEN_H
#define PILLAR_NET_LISTEN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

/* Resolve a listen spec to a socket address (numeric only: no DNS). */
int listen_parse(const char *spec, struct sockaddr_storage *ss, socklen_t *len_r,
                 const char **error_r);

/* Create, bind and listen (non-blocking, close-on-exec, SO_REUSEADDR; a stale
 * unix socket file is replaced). Returns the fd, or -1 with a message in err. */
int listen_bind(const char *spec, char *err, size_t errlen);

/* The numeric host of a peer address ("192.0.2.1", "2001:db8::1", "local"
 * for unix sockets) into out; whether it is loopback (127.0.0.0/8, ::1,
 * v4-mapped loopback, or a unix socket). */
void net_peer_string(const struct sockaddr *sa, socklen_t len, char *out, size_t size);
bool net_is_loopback(const struct sockaddr *sa);
/* The address as 16 bytes: IPv6 as is, IPv4 v4-mapped, others all zero. */
void net_peer_key(const struct sockaddr *sa, uint8_t key[16]);

#endif
