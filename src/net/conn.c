/* The connection layer over a libevent bufferevent. See conn.h for the
 * limits it enforces; here is how. */
#include "net/conn.h"

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <event2/event.h>
#include <netinet/in.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/env.h"
#include "core/util.h"
#include "net/listen.h"

/* Refill long replies when queued output falls to this. */
#define CONN_OUTPUT_LOW (64 * 1024)
/* Octets handed to the kernel (or to TLS) per write. */
#define CONN_MAX_SINGLE_WRITE (256 * 1024)
/* A closing connection gets this long to flush its last reply. */
#define CONN_FLUSH_TIMEOUT_S 10

struct conn {
	struct event_base *base;
	struct bufferevent *bev;
	const struct conn_handler *h;
	void *ctx;
	size_t max_line;
	size_t discarded; /* bytes of an over-long line thrown away so far */
	struct event *deadline;
	struct event *line_timer; /* conn_set_line_timeout, while a line is open */
	uint64_t line_timeout_ms; /* 0 = lines are not timed */
	bool line_open;           /* octets of an unfinished line have been read */
	bool discarding;
	bool paused;
	bool eof;                  /* the client half-closed; finish buffered lines */
	bool closing;              /* no more events but `closed` */
	bool freeing;              /* free is scheduled */
	bool in_process;           /* guards against re-entering conn_process */
	bool raw;                  /* deliver bytes, not lines */
	bool tls;                  /* the bufferevent is a TLS one */
	bool handshaking;          /* no lines until the TLS handshake completes */
	bool tls_shut;             /* close_notify sent */
	bool under_watch;          /* waiting for `under` to drain before the free */
	struct bufferevent *under; /* the plain socket under a STARTTLS filter */
	bool loopback;
	enum conn_close_reason reason;
	void (*on_free)(void *arg, struct conn *c);
	void *on_free_arg;
	uint8_t peer_key[16];
	struct sockaddr_storage peer_sa;
	socklen_t peer_salen;
	uint64_t bytes_in, bytes_out; /* application data, after TLS */
	unsigned long tls_err;        /* why the handshake failed */
	char *tls_label;              /* TLS ended in another process (conn_set_tls_label) */
	char peer[48];
};

static void conn_process(struct conn *c);
static void conn_under_drained(struct evbuffer *buf, const struct evbuffer_cb_info *info,
                               void *arg);

static void conn_free_cb(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	struct conn *c = arg;

	if (c->deadline != NULL)
		event_free(c->deadline);
	if (c->line_timer != NULL)
		event_free(c->line_timer);
	if (c->under_watch)
		evbuffer_remove_cb(bufferevent_get_output(c->under), conn_under_drained, c);
	bufferevent_free(c->bev);
	/* The protocol may still ask conn_peer() in its last event. */
	c->h->closed(c->ctx, c->reason);
	if (c->on_free != NULL)
		c->on_free(c->on_free_arg, c);
	free(c->tls_label);
	free(c);
}

/* Schedule the free from the loop, so no caller up the stack sees a freed
 * connection. */
static void conn_finish(struct conn *c, enum conn_close_reason why)
{
	if (c->freeing)
		return;
	c->freeing = true;
	c->closing = true;
	c->reason = why;
	bufferevent_disable(c->bev, EV_READ | EV_WRITE);
	if (c->deadline != NULL)
		event_del(c->deadline);
	if (c->line_timer != NULL)
		event_del(c->line_timer);
	struct timeval zero = {0, 0};
	if (event_base_once(c->base, -1, EV_TIMEOUT, conn_free_cb, c, &zero) < 0)
		abort(); /* out of memory in libevent: nothing sane is left */
}

static void conn_readcb(struct bufferevent *bev, void *arg)
{
	(void)bev;
	conn_process(arg);
}

static void conn_under_drained(struct evbuffer *buf, const struct evbuffer_cb_info *info, void *arg)
{
	(void)info;
	if (evbuffer_get_length(buf) == 0)
		conn_finish(arg, ((struct conn *)arg)->reason);
}

/* Everything the protocol wrote has left our output buffer: end TLS with
 * close_notify, and under STARTTLS wait until the socket below has sent
 * the records too — freeing the filter frees what it still holds. */
static void conn_flushed(struct conn *c)
{
	if (c->tls && !c->handshaking && !c->tls_shut) {
		c->tls_shut = true;
		SSL *ssl = bufferevent_openssl_get_ssl(c->bev);
		if (ssl != NULL)
			(void)SSL_shutdown(ssl); /* one way: we do not wait for the peer's */
	}
	if (c->under != NULL && evbuffer_get_length(bufferevent_get_output(c->under)) > 0) {
		if (!c->under_watch) {
			c->under_watch = true;
			evbuffer_add_cb(bufferevent_get_output(c->under), conn_under_drained, c);
		}
		return;
	}
	conn_finish(c, c->reason);
}

static void conn_writecb(struct bufferevent *bev, void *arg)
{
	struct conn *c = arg;

	if (c->closing) {
		if (evbuffer_get_length(bufferevent_get_output(bev)) == 0)
			conn_flushed(c);
		return;
	}
	if (c->h->drained != NULL)
		c->h->drained(c->ctx);
	if (!c->closing)
		conn_process(c);
}

static void conn_eventcb(struct bufferevent *bev, short what, void *arg)
{
	(void)bev;
	struct conn *c = arg;

	if (c->freeing)
		return;
	if (what & BEV_EVENT_CONNECTED) {
		/* The TLS handshake is done. */
		c->handshaking = false;
		if (c->h->tls_ready != NULL)
			c->h->tls_ready(c->ctx);
		conn_process(c);
		return;
	}
	if ((what & (BEV_EVENT_ERROR | BEV_EVENT_EOF)) && c->tls && c->handshaking) {
		/* Keep the reason for the log line; let the alert we owe the
		 * client (e.g. "protocol version") reach it before we close. */
		c->tls_err = bufferevent_get_openssl_error(c->bev);
		c->reason = CONN_CLOSE_TLS;
		c->closing = true;
		if (c->under != NULL && evbuffer_get_length(bufferevent_get_output(c->under)) > 0 &&
		    !c->under_watch) {
			c->under_watch = true;
			evbuffer_add_cb(bufferevent_get_output(c->under), conn_under_drained, c);
			conn_set_deadline(c, CONN_FLUSH_TIMEOUT_S * 1000);
			return;
		}
		conn_finish(c, CONN_CLOSE_TLS);
		return;
	}
	if (what & BEV_EVENT_EOF) {
		c->eof = true;
		if (c->closing) {
			conn_finish(c, c->reason);
			return;
		}
		conn_process(c);
		return;
	}
	if (what & BEV_EVENT_ERROR) {
		conn_finish(c, c->closing ? c->reason : CONN_CLOSE_ERROR);
		return;
	}
	if (what & BEV_EVENT_TIMEOUT) {
		if (c->closing) {
			conn_finish(c, c->reason);
			return;
		}
		c->reason = CONN_CLOSE_TIMEOUT;
		c->h->timeout(c->ctx);
		if (!c->closing)
			conn_close(c);
		c->reason = CONN_CLOSE_TIMEOUT;
	}
}

static void conn_deadline_cb(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	conn_eventcb(((struct conn *)arg)->bev, BEV_EVENT_TIMEOUT, arg);
}

/* A line is complete (or dropped, or no longer read as a line): the next
 * one gets its own time. */
static void conn_line_done(struct conn *c)
{
	c->line_open = false;
	if (c->line_timer != NULL)
		event_del(c->line_timer);
}

/* After reading: start the clock when an unfinished line has begun, stop
 * it when the line is complete (even if the protocol is busy and has not
 * taken it yet: waiting for us is not the client's time). The first octet
 * arrived no earlier than the read before this call, so a line is never
 * given less time than the protocol asked for. */
static void conn_line_check(struct conn *c)
{
	if (c->line_timeout_ms == 0 || c->closing || c->raw || c->handshaking)
		return;
	struct evbuffer *in = bufferevent_get_input(c->bev);
	bool open = (c->discarding || evbuffer_get_length(in) > 0) &&
	            evbuffer_search(in, "\n", 1, NULL).pos < 0;
	if (!open) {
		conn_line_done(c);
		return;
	}
	if (c->line_open)
		return;
	if (c->line_timer == NULL)
		c->line_timer = evtimer_new(c->base, conn_deadline_cb, c);
	struct timeval tv = {(time_t)(c->line_timeout_ms / 1000),
	                     (suseconds_t)((c->line_timeout_ms % 1000) * 1000)};
	evtimer_add(c->line_timer, &tv);
	c->line_open = true;
}

static void conn_count_out(struct evbuffer *buf, const struct evbuffer_cb_info *info, void *arg)
{
	(void)buf;
	((struct conn *)arg)->bytes_out += info->n_deleted;
}

static void conn_setup_bev(struct conn *c)
{
	evbuffer_add_cb(bufferevent_get_output(c->bev), conn_count_out, c);
	bufferevent_setcb(c->bev, conn_readcb, conn_writecb, conn_eventcb, c);
	bufferevent_setwatermark(c->bev, EV_READ, 0, CONN_MAX_READAHEAD);
	bufferevent_setwatermark(c->bev, EV_WRITE, CONN_OUTPUT_LOW, 0);
	/* libevent writes 16 KiB per call by default: one writev per loop
	 * iteration would cap a RETR far below what the socket takes. */
	bufferevent_set_max_single_write(c->bev, CONN_MAX_SINGLE_WRITE);
	if (c->tls) /* clients that just close without close_notify are normal */
		bufferevent_openssl_set_allow_dirty_shutdown(c->bev, 1);
}

static struct conn *conn_alloc(struct event_base *base, const struct sockaddr *peer,
                               socklen_t peerlen)
{
	struct conn *c = xcalloc(1, sizeof(*c));

	c->base = base;
	if (peerlen > sizeof(c->peer_sa))
		peerlen = sizeof(c->peer_sa);
	memcpy(&c->peer_sa, peer, peerlen);
	c->peer_salen = peerlen;
	net_peer_string(peer, peerlen, c->peer, sizeof(c->peer));
	c->loopback = net_is_loopback(peer);
	net_peer_key(peer, c->peer_key);
	return c;
}

struct conn *conn_new(struct event_base *base, int fd, const struct sockaddr *peer,
                      socklen_t peerlen)
{
	struct conn *c = conn_alloc(base, peer, peerlen);

	c->bev = bufferevent_socket_new(base, fd, BEV_OPT_CLOSE_ON_FREE);
	if (c->bev == NULL)
		abort();
	conn_setup_bev(c);
	return c;
}

struct conn *conn_new_tls(struct event_base *base, int fd, const struct sockaddr *peer,
                          socklen_t peerlen, SSL *ssl)
{
	struct conn *c = conn_alloc(base, peer, peerlen);

	c->bev = bufferevent_openssl_socket_new(base, fd, ssl, BUFFEREVENT_SSL_ACCEPTING,
	                                        BEV_OPT_CLOSE_ON_FREE);
	if (c->bev == NULL)
		abort();
	c->tls = true;
	c->handshaking = true;
	conn_setup_bev(c);
	return c;
}

void conn_starttls(struct conn *c, SSL *ssl)
{
	struct bufferevent *plain = c->bev;
	struct evbuffer *in = bufferevent_get_input(plain);

	/* Whatever the client pipelined after the command is dropped here
	 * (RFC 3207 §4.2 forbids acting on it); bytes still in flight reach
	 * the TLS layer and fail the handshake instead. */
	evbuffer_drain(in, evbuffer_get_length(in));
	c->discarding = false;
	conn_line_done(c);
	/* From here `plain` carries TLS records; count the plaintext only. */
	evbuffer_remove_cb(bufferevent_get_output(plain), conn_count_out, c);
	/* The plaintext reply already queued on `plain` is written before any
	 * TLS record, which the filter appends after it. */
	c->under = plain;
	c->bev = bufferevent_openssl_filter_new(c->base, plain, ssl, BUFFEREVENT_SSL_ACCEPTING,
	                                        BEV_OPT_CLOSE_ON_FREE);
	if (c->bev == NULL)
		abort();
	c->tls = true;
	c->handshaking = true;
	conn_setup_bev(c);
	bufferevent_enable(c->bev, EV_READ | EV_WRITE);
}

const char *conn_tls_error(const struct conn *c, char *buf, size_t size)
{
	if (c->tls_err == 0)
		snprintf(buf, size, "handshake not completed");
	else
		ERR_error_string_n(c->tls_err, buf, size);
	return buf;
}

bool conn_is_tls(const struct conn *c)
{
	return c->tls && !c->handshaking;
}

const char *conn_tls_info(const struct conn *c, char *buf, size_t size)
{
	SSL *ssl = c->tls ? bufferevent_openssl_get_ssl(c->bev) : NULL;
	if (ssl == NULL)
		snprintf(buf, size, "%s", c->tls_label != NULL ? c->tls_label : "");
	else
		snprintf(buf, size, "%s %s", SSL_get_version(ssl), SSL_get_cipher_name(ssl));
	return buf;
}

int conn_tls_exporter(const struct conn *c, unsigned char out[32])
{
	static const char label[] = "EXPORTER-Channel-Binding";
	SSL *ssl = c->tls ? bufferevent_openssl_get_ssl(c->bev) : NULL;

	if (ssl == NULL || SSL_version(ssl) != TLS1_3_VERSION)
		return -1;
	return SSL_export_keying_material(ssl, out, 32, label, sizeof(label) - 1, NULL, 0, 0) == 1
	           ? 0
	           : -1;
}

void conn_set_tls_label(struct conn *c, const char *label)
{
	free(c->tls_label);
	c->tls_label = label[0] != '\0' ? xstrdup(label) : NULL;
}

static void quiet_closed(void *ctx, enum conn_close_reason why)
{
	(void)ctx;
	(void)why;
}

static const struct conn_handler quiet_handler = {.closed = quiet_closed};

int conn_detach(struct conn *c, struct evbuffer *in, struct evbuffer *out)
{
	if (c->tls || c->closing)
		return -1;
	int sock = bufferevent_getfd(c->bev);
	int fd = fcntl(sock, F_DUPFD_CLOEXEC, 0);
	if (fd < 0)
		return -1;
	/* Replies not yet written (the client pipelined): what the socket
	 * takes now goes now, the rest travels with the connection. */
	struct evbuffer *pending = bufferevent_get_output(c->bev);
	/* Only the bufferevent drains its output (its front is frozen); it
	 * will not any more. */
	evbuffer_unfreeze(pending, 1);
	if (evbuffer_get_length(pending) > 0)
		(void)evbuffer_write(pending, sock);
	evbuffer_add_buffer(out, pending);
	evbuffer_add_buffer(in, bufferevent_get_input(c->bev));
	c->h = &quiet_handler;
	c->ctx = NULL;
	conn_finish(c, CONN_CLOSE_DONE);
	return fd;
}

void conn_feed(struct conn *c, const void *data, size_t len)
{
	/* A bufferevent's input only takes what it reads itself: lift that
	 * for the bytes another process read for us. */
	struct evbuffer *in = bufferevent_get_input(c->bev);
	evbuffer_unfreeze(in, 0);
	evbuffer_add(in, data, len);
	evbuffer_freeze(in, 0);
}

void conn_unread(struct conn *c, const char *line, size_t len)
{
	struct evbuffer *in = bufferevent_get_input(c->bev);

	/* Only the end of a bufferevent's input is frozen, never its front. */
	if (evbuffer_prepend(in, "\r\n", 2) < 0 || evbuffer_prepend(in, line, len) < 0)
		abort();
}

void conn_set_handler(struct conn *c, const struct conn_handler *h, void *ctx, size_t max_line)
{
	c->h = h;
	c->ctx = ctx;
	c->max_line = max_line < CONN_LINE_MAX ? max_line : CONN_LINE_MAX;
}

void conn_set_max_line(struct conn *c, size_t max_line)
{
	c->max_line = max_line < CONN_LINE_MAX ? max_line : CONN_LINE_MAX;
}

void conn_set_idle_timeout(struct conn *c, uint64_t ms)
{
	struct timeval tv = {(time_t)(ms / 1000), (suseconds_t)((ms % 1000) * 1000)};
	if (ms == 0)
		bufferevent_set_timeouts(c->bev, NULL, NULL);
	else
		bufferevent_set_timeouts(c->bev, &tv, &tv);
}

void conn_set_deadline(struct conn *c, uint64_t ms)
{
	if (ms == 0) {
		if (c->deadline != NULL)
			event_del(c->deadline);
		return;
	}
	if (c->deadline == NULL)
		c->deadline = evtimer_new(c->base, conn_deadline_cb, c);
	struct timeval tv = {(time_t)(ms / 1000), (suseconds_t)((ms % 1000) * 1000)};
	evtimer_add(c->deadline, &tv);
}

void conn_set_line_timeout(struct conn *c, uint64_t ms)
{
	c->line_timeout_ms = ms;
	conn_line_done(c);
}

void conn_set_raw(struct conn *c, bool raw)
{
	c->raw = raw;
	c->discarding = false;
	conn_line_done(c);
}

void conn_start(struct conn *c)
{
	bufferevent_enable(c->bev, EV_READ | EV_WRITE);
}

void conn_pause(struct conn *c)
{
	c->paused = true;
}

void conn_resume(struct conn *c)
{
	if (!c->paused || c->closing)
		return;
	c->paused = false;
	/* Lines may already be buffered; handle them from the loop. */
	bufferevent_trigger(c->bev, EV_READ, BEV_TRIG_IGNORE_WATERMARKS | BEV_TRIG_DEFER_CALLBACKS);
}

bool conn_paused(const struct conn *c)
{
	return c->paused;
}

/* Deliver complete lines while the protocol is ready for them. */
static void conn_process(struct conn *c)
{
	struct evbuffer *in = bufferevent_get_input(c->bev);
	char line[CONN_LINE_MAX + 1];

	if (c->in_process || c->handshaking)
		return;
	c->in_process = true;
	while (!c->paused && !c->closing) {
		if (evbuffer_get_length(bufferevent_get_output(c->bev)) > CONN_OUTPUT_HIGH)
			break; /* resumed by conn_writecb */
		size_t avail = evbuffer_get_length(in);
		if (avail == 0)
			break;
		if (c->raw) {
			struct evbuffer_iovec v;
			if (evbuffer_peek(in, -1, NULL, &v, 1) < 1)
				break;
			size_t used = c->h->data(c->ctx, v.iov_base, v.iov_len);
			evbuffer_drain(in, used);
			c->bytes_in += used;
			if (used == 0 && c->raw)
				break; /* the handler is not ready for more */
			continue;
		}
		struct evbuffer_ptr lf = evbuffer_search(in, "\n", 1, NULL);
		if (c->discarding) {
			size_t n = lf.pos < 0 ? avail : (size_t)lf.pos + 1;
			evbuffer_drain(in, n);
			c->bytes_in += n;
			c->discarded += n;
			if (lf.pos >= 0) {
				c->discarding = false;
				conn_line_done(c);
				continue;
			}
			if (c->discarded > CONN_MAX_DISCARD) {
				c->reason = CONN_CLOSE_FLOOD;
				conn_close(c);
			}
			break;
		}
		if (lf.pos < 0) {
			if (avail >= c->max_line) {
				/* Already too long without its terminator. */
				c->discarding = true;
				c->discarded = 0;
				c->h->line_too_long(c->ctx);
				continue;
			}
			break;
		}
		size_t n = (size_t)lf.pos + 1;
		c->bytes_in += n;
		conn_line_done(c);
		if (n > c->max_line) {
			evbuffer_drain(in, n);
			c->h->line_too_long(c->ctx);
			continue;
		}
		evbuffer_remove(in, line, n);
		n--; /* the LF */
		if (n > 0 && line[n - 1] == '\r')
			n--;
		line[n] = '\0';
		c->h->line(c->ctx, line, n);
	}
	c->in_process = false;
	conn_line_check(c);
	/* A client that half-closed is done once every whole line it sent has
	 * been answered; a partial last line is dropped. */
	if (c->eof && !c->closing && !c->paused &&
	    (c->raw || evbuffer_search(in, "\n", 1, NULL).pos < 0)) {
		c->reason = CONN_CLOSE_EOF;
		conn_close(c);
	}
}

void conn_write(struct conn *c, const void *data, size_t len)
{
	if (!c->freeing)
		bufferevent_write(c->bev, data, len);
}

void conn_printf(struct conn *c, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	if (!c->freeing)
		evbuffer_add_vprintf(bufferevent_get_output(c->bev), fmt, ap);
	va_end(ap);
}

struct evbuffer *conn_output(struct conn *c)
{
	return bufferevent_get_output(c->bev);
}

size_t conn_output_len(const struct conn *c)
{
	return evbuffer_get_length(bufferevent_get_output(c->bev));
}

void conn_close(struct conn *c)
{
	if (c->closing)
		return;
	c->closing = true;
	if (c->reason == CONN_CLOSE_NONE)
		c->reason = CONN_CLOSE_DONE;
	bufferevent_disable(c->bev, EV_READ);
	if (c->deadline != NULL)
		event_del(c->deadline);
	if (c->line_timer != NULL)
		event_del(c->line_timer);
	/* Nothing can be flushed through a TLS handshake that never completed
	 * (garbage, a half-open ClientHello): close at once. */
	if (c->handshaking) {
		conn_finish(c, c->reason);
		return;
	}
	/* However the flush goes, it ends by this deadline. */
	conn_set_deadline(c, CONN_FLUSH_TIMEOUT_S * 1000);
	if (evbuffer_get_length(bufferevent_get_output(c->bev)) == 0) {
		conn_flushed(c);
		return;
	}
	struct timeval tv = {CONN_FLUSH_TIMEOUT_S, 0};
	bufferevent_set_timeouts(c->bev, NULL, &tv);
	bufferevent_setwatermark(c->bev, EV_WRITE, 0, 0);
	bufferevent_enable(c->bev, EV_WRITE);
}

void conn_abort(struct conn *c)
{
	conn_finish(c, c->closing ? c->reason : CONN_CLOSE_DONE);
}

bool conn_closing(const struct conn *c)
{
	return c->closing;
}

void conn_set_on_free(struct conn *c, void (*fn)(void *arg, struct conn *c), void *arg)
{
	c->on_free = fn;
	c->on_free_arg = arg;
}

void conn_describe(const struct conn *c, struct env_client_info *out)
{
	static char tls[96]; /* valid until the next call: one loop per process */
	out->rip = c != NULL ? c->peer : "";
	out->tls = c != NULL ? conn_tls_info(c, tls, sizeof(tls)) : "";
	out->bytes_in = c != NULL ? c->bytes_in : 0;
	out->bytes_out = c != NULL ? c->bytes_out : 0;
}

const uint8_t *conn_peer_key(const struct conn *c)
{
	return c->peer_key;
}

void conn_peer_addr(const struct conn *c, struct sockaddr *sa, socklen_t *len)
{
	socklen_t n = c->peer_salen < *len ? c->peer_salen : *len;
	memcpy(sa, &c->peer_sa, n);
	*len = n;
}

const char *conn_peer(const struct conn *c)
{
	return c->peer;
}

bool conn_peer_loopback(const struct conn *c)
{
	return c->loopback;
}
