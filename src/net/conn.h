/* A client connection as a protocol sees it: complete lines in, bytes out,
 * and a handful of events. It hides the socket (and, later, TLS) and enforces
 * the limits every protocol needs:
 *
 *  - a line longer than max_line (terminator included) is never delivered:
 *    the protocol gets `line_too_long` and the rest of that line is discarded;
 *    when a line keeps growing past CONN_MAX_DISCARD the client is dropped;
 *  - read-ahead is bounded (CONN_MAX_READAHEAD): a client that pipelines
 *    faster than we answer is simply not read until we catch up;
 *  - no new line is delivered while the protocol is paused (waiting for a
 *    job, streaming a long reply) or while output is backed up past
 *    CONN_OUTPUT_HIGH — so memory per connection stays bounded whatever the
 *    client does;
 *  - the connection is freed only from the loop, never inside a callback of
 *    the protocol, and `closed` is the protocol's last event.
 */
#ifndef PILLAR_NET_CONN_H
#define PILLAR_NET_CONN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

struct event_base;
struct evbuffer;
struct conn;
typedef struct ssl_st SSL;

/* Longest line any protocol accepts; per-protocol limits are lower. */
#define CONN_LINE_MAX 4096
/* Bytes of one over-long line we discard before giving up on the client. */
#define CONN_MAX_DISCARD (64 * 1024)
/* Input read ahead of processing: enough for a generous pipeline. */
#define CONN_MAX_READAHEAD (16 * 1024)
/* Output queued before we stop producing more (and stop taking commands). */
#define CONN_OUTPUT_HIGH (256 * 1024)

enum conn_close_reason {
	CONN_CLOSE_NONE,
	CONN_CLOSE_DONE,    /* the protocol closed it (QUIT, error reply) */
	CONN_CLOSE_EOF,     /* client closed */
	CONN_CLOSE_ERROR,   /* socket error */
	CONN_CLOSE_TIMEOUT, /* idle or deadline timeout, after `timeout` */
	CONN_CLOSE_FLOOD,   /* a line kept growing past CONN_MAX_DISCARD */
	CONN_CLOSE_TLS,     /* the TLS handshake or a TLS record failed */
};

struct conn_handler {
	/* One complete line without its LF or CRLF (NUL-terminated; may
	 * contain NULs of its own, len is exact). */
	void (*line)(void *ctx, char *line, size_t len);
	/* Raw mode only (conn_set_raw): bytes as they arrive, with no line
	 * splitting. Returns how many it used; the rest stays buffered. A
	 * handler that has what it needs calls conn_set_raw(c, false) and
	 * returns the count up to that point: the rest is read as lines. */
	size_t (*data)(void *ctx, const char *buf, size_t len);
	/* A line exceeded max_line; its rest is being discarded. */
	void (*line_too_long)(void *ctx);
	/* Output fell below the low-water mark (resume a long reply). */
	void (*drained)(void *ctx);
	/* The idle timeout or the deadline expired. The protocol may write a
	 * last reply; the connection is closed after it. */
	void (*timeout)(void *ctx);
	/* The TLS handshake has completed (implicit TLS or after
	 * conn_starttls); lines flow again after this returns. Optional. */
	void (*tls_ready)(void *ctx);
	/* The connection is gone; last event. Free ctx here (or later). */
	void (*closed)(void *ctx, enum conn_close_reason why);
};

struct conn *conn_new(struct event_base *base, int fd, const struct sockaddr *peer,
                      socklen_t peerlen);

/* The same over implicit TLS (RFC 8314): the handshake starts at once;
 * output queued before it completes is sent after it. Takes ownership of
 * ssl. */
struct conn *conn_new_tls(struct event_base *base, int fd, const struct sockaddr *peer,
                          socklen_t peerlen, SSL *ssl);

/* STLS / STARTTLS (RFC 2595, RFC 3207): call right after queueing the
 * positive reply. Input the client sent after the command is discarded —
 * never executed as commands, before or after the handshake (the STARTTLS
 * injection defence) — the reply goes out in plaintext, and the handshake
 * follows. No line is delivered until `tls_ready`. Takes ownership of ssl. */
void conn_starttls(struct conn *c, SSL *ssl);

bool conn_is_tls(const struct conn *c);
/* Why the TLS handshake failed (after CONN_CLOSE_TLS), for the log. */
const char *conn_tls_error(const struct conn *c, char *buf, size_t size);
/* "TLSv1.3 TLS_AES_256_GCM_SHA384", or "" without TLS. */
const char *conn_tls_info(const struct conn *c, char *buf, size_t size);
/* RFC 9266 tls-exporter channel binding (32 octets): only on TLS 1.3.
 * Returns 0 or -1. */
int conn_tls_exporter(const struct conn *c, unsigned char out[32]);

/* Hand the socket to another process (the POP3 login hand-off): returns a
 * duplicate of the descriptor, moves the input read ahead to `in` and the
 * replies the socket would not take yet to `out`; the connection then goes
 * away without a `closed` event to its handler and without closing the
 * client's socket. Plain connections only (TLS state cannot move). -1 when
 * it cannot (TLS, closing, no descriptor). */
int conn_detach(struct conn *c, struct evbuffer *in, struct evbuffer *out);

/* The receiving end: input the client sent before the hand-off, to be
 * read before anything new. Call before conn_start. (Replies owed go out
 * with conn_write.) */
void conn_feed(struct conn *c, const void *data, size_t len);

/* Put a line the protocol has read back in front of the input, to be read
 * again (by whoever handles the connection next). */
void conn_unread(struct conn *c, const char *line, size_t len);

/* The client's TLS ends in another process (the login worker relays):
 * what conn_tls_info and `pillar who` report. */
void conn_set_tls_label(struct conn *c, const char *label);

/* Set who receives events. Switching handlers (the login hand-off) keeps
 * buffered input, which the new handler then receives. */
void conn_set_handler(struct conn *c, const struct conn_handler *h, void *ctx, size_t max_line);

/* Change the line limit (a SASL exchange allows longer lines than
 * commands). */
void conn_set_max_line(struct conn *c, size_t max_line);

/* Idle timeout in ms (0 = none): restarted by every byte read or written. */
void conn_set_idle_timeout(struct conn *c, uint64_t ms);
/* Absolute deadline in ms from now (0 = cancel): never extended by input. */
void conn_set_deadline(struct conn *c, uint64_t ms);
/* Time limit for each line in ms (0 = none, the default): a line must be
 * complete within ms of the read that brought its first octet, however the
 * octets trickle in; past it comes the `timeout` event. An over-long line
 * being discarded is still the same line. Not applied in raw mode. */
void conn_set_line_timeout(struct conn *c, uint64_t ms);

/* Switch between line mode (the default) and raw mode (SMTP DATA/BDAT). */
void conn_set_raw(struct conn *c, bool raw);

/* Start reading (after the greeting is queued). */
void conn_start(struct conn *c);

/* Stop/restart delivering lines. Resume processes any buffered input from
 * the loop, not recursively. */
void conn_pause(struct conn *c);
void conn_resume(struct conn *c);
bool conn_paused(const struct conn *c);

/* Output. */
void conn_write(struct conn *c, const void *data, size_t len);
void conn_printf(struct conn *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
struct evbuffer *conn_output(struct conn *c);
size_t conn_output_len(const struct conn *c);

/* Close after the queued output is written (bounded by a short timeout).
 * No more events except `closed`. */
void conn_close(struct conn *c);
/* Close now, dropping queued output (`closed` then reports
 * CONN_CLOSE_DONE: the protocol decided, and logs why). */
void conn_abort(struct conn *c);
bool conn_closing(const struct conn *c);

/* Called after `closed`, when the connection is gone for good. */
void conn_set_on_free(struct conn *c, void (*fn)(void *arg, struct conn *c), void *arg);

const char *conn_peer(const struct conn *c);
/* The client's address as given to conn_new (the PROXY one, if any); *len
 * is the room in sa, then the length. */
void conn_peer_addr(const struct conn *c, struct sockaddr *sa, socklen_t *len);
/* Fill the connection's part of what `pillar who` shows: address, TLS,
 * octets. c may be NULL (a session whose connection just went away). */
struct env_client_info;
void conn_describe(const struct conn *c, struct env_client_info *out);

/* The peer's address as 16 bytes (IPv4 v4-mapped; zeros for unix sockets). */
const uint8_t *conn_peer_key(const struct conn *c);
bool conn_peer_loopback(const struct conn *c);

#endif
