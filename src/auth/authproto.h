/* The messages between workers and the auth process (auth/authd.h,
 * auth/authc.h), and the socket they travel on.
 *
 * The auth process alone reads the directory's secrets and hashes
 * passwords; workers ask it over an AF_UNIX SOCK_SEQPACKET connection, one
 * message per record, so there is no stream framing to get wrong. Each side
 * treats what the other sends as untrusted: a message is decoded against a
 * fixed layout per type with a hard bound on every field, and anything else
 * (an unknown type, a field too long, a string with a NUL inside or without
 * its terminating NUL, bytes left over, a record longer than AUTHP_MSG_MAX)
 * is refused, and the connection that sent it is dropped.
 *
 * Layout, in host byte order (both ends are processes of one host):
 *
 *     u16 type, u16 zero, u32 id         the header
 *     then the type's fields in order:
 *       u32                              4 bytes
 *       string                           u16 n, then n bytes: the text and
 *                                        its NUL (n >= 1); optional strings
 *                                        may be absent (n = 0, read as NULL)
 *       bytes                            u16 n, then n bytes
 *
 *     request            fields                               reply
 *     AUTHP_PASS         user, password                       AUTHP_VERIFY_REPLY
 *     AUTHP_APOP         user, timestamp, digest              AUTHP_VERIFY_REPLY
 *     AUTHP_SASL_START   session, mech, cb, in (optional)     AUTHP_SASL_REPLY
 *     AUTHP_SASL_STEP    session, in (optional)               AUTHP_SASL_REPLY
 *     AUTHP_SASL_END     session                              none
 *     AUTHP_VERIFY_REPLY result (enum auth_result), address (optional),
 *                        error (optional), ticket (bytes)
 *     AUTHP_SASL_REPLY   result (enum sasl_step), out (optional), address
 *                        (optional), login_name (optional), error
 *                        (optional), mech, ticket (bytes)
 *
 * A reply that says a login succeeded carries the auth process's ticket
 * for it (auth/ticket.h); others carry none.
 *
 * Ids: a request's id is the client's (non-zero, unique among its requests
 * in flight) and the reply carries it back; replies may come in any order.
 * SASL sessions are named by the client too (non-zero, unique among its
 * open sessions on that connection): SASL_START creates one and takes its
 * first step, so an exchange costs one round trip per step, as it did in
 * process. A session ends with a result other than SASL_CONTINUE, with
 * SASL_END, or with the connection. */
#ifndef PILLAR_AUTH_AUTHPROTO_H
#define PILLAR_AUTH_AUTHPROTO_H

#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>
#include <sys/un.h>

/* The longest record either side sends or accepts. The largest message,
 * a SASL reply at every field's bound, is about 3.6 KiB (test_authproto.c
 * checks that it fits). */
#define AUTHP_MSG_MAX 8192
/* Requests one connection may have unanswered. The client holds back
 * more; the auth process drops a connection that sends more. It also
 * bounds the replies the auth process queues for a client that does not
 * read. */
#define AUTHP_MAX_INFLIGHT 128
/* SASL sessions one connection may hold open (a worker's sessions in the
 * middle of an AUTH exchange). Past it SASL_START is answered with
 * SASL_TEMPFAIL. */
#define AUTHP_MAX_SASL 4096
/* Field bounds not given by other modules (auth/verify.h, auth/apop.h,
 * auth/sasl.h, directory/directory.h). */
#define AUTHP_MECH_MAX  32  /* "SCRAM-SHA-256-PLUS" is 18 */
#define AUTHP_ERROR_MAX 255 /* log text only */
#define AUTHP_CB_MAX    64  /* tls-exporter channel binding: 32 (RFC 9266 §2) */

enum authp_type {
	AUTHP_PASS = 1,
	AUTHP_APOP,
	AUTHP_SASL_START,
	AUTHP_SASL_STEP,
	AUTHP_SASL_END,
	AUTHP_VERIFY_REPLY,
	AUTHP_SASL_REPLY,
};

/* A message, decoded or to encode. Only the fields of its type are read
 * (encoding) or set (decoding; the others are zero/NULL). Decoded strings
 * point into the record they came from: keep it while using them. */
struct authp_msg {
	uint16_t type;
	uint32_t id;      /* 0 only in AUTHP_SASL_END */
	uint32_t session; /* SASL requests */
	uint32_t result;  /* replies */
	const char *user, *password, *timestamp, *digest;
	const char *mech;
	const uint8_t *cb;
	size_t cb_len;
	const char *in; /* SASL: the client's base64 line; NULL for none */
	const char *out, *address, *login_name, *error;
	const uint8_t *ticket; /* replies: TICKET_SIZE octets, or NULL */
	size_t ticket_len;
};

/* Encode m into buf (size bytes). Returns the record's length, or -1 with
 * *error_r when a required field is NULL, a field is longer than its
 * bound, a value is out of range, or buf is too small. */
int authp_encode(const struct authp_msg *m, uint8_t *buf, size_t size, const char **error_r);

/* Decode one record of len bytes. Returns 0, or -1 with *error_r (a static
 * string) for anything that is not exactly a well-formed message. */
int authp_decode(const uint8_t *buf, size_t len, struct authp_msg *m, const char **error_r);

/* Whether a type is a request (sent by workers) or a reply. */
int authp_is_request(uint16_t type);

/* Where the auth process listens: an abstract AF_UNIX name (no file, so a
 * chrooted worker reaches it too). */
struct authp_addr {
	struct sockaddr_un sun;
	socklen_t len; /* 0: none */
};

/* A listening AF_UNIX SOCK_SEQPACKET socket with a name the kernel picks
 * (autobind, Linux's abstract namespace), close-on-exec and non-blocking.
 * Anyone on the host may connect to an abstract name: the auth process
 * checks each peer's credentials (SO_PEERCRED). Returns the descriptor with
 * *addr_r, or -1 with *error_r. */
int authp_listen(struct authp_addr *addr_r, const char **error_r);

/* The address for logs: "@" and the name (abstract names start with NUL). */
const char *authp_addr_str(const struct authp_addr *addr, char *buf, size_t size);

#endif
