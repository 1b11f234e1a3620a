/* New connections in a worker: the PROXY header from trusted proxies, the
 * per-address connection limit (on the real client address), implicit TLS,
 * and the hand-over to the protocol. */
#include <errno.h>
#include <event2/event.h>
#include <event2/listener.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "core/config.h"
#include "core/log.h"
#include "core/util.h"
#include "net/conn.h"
#include "net/listen.h"
#include "net/proxy.h"
#include "net/tls.h"
#include "pop3/pop3.h"
#include "server/iplimit.h"
#include "server/worker.h"
#include "smtp/smtp.h"

/* A trusted proxy sends its header at once; one that does not within this
 * time is not a working proxy. */
#define PROXY_HEADER_TIMEOUT_S 10

/* A connection from a trusted proxy, waiting for its header. The header is
 * read with MSG_PEEK and consumed exactly, so not one byte after it is
 * taken from the socket before the protocol (or the TLS handshake) starts. */
struct pending {
	struct pending *prev, *next;
	struct worker_listener *wl;
	struct event *ev;
	int fd;
	socklen_t salen;
	struct sockaddr_storage sa;
};

static void conn_released(void *arg, struct conn *c)
{
	struct worker *w = arg;
	iplimit_release(w->ipl, conn_peer_key(c), w->slot);
}

/* Over max_connections_per_ip: one line in the protocol's words, then close.
 * The socket is new and empty, so a short non-blocking send cannot block. */
static void refuse(struct worker_listener *wl, int fd, const struct sockaddr *sa, socklen_t salen)
{
	const char *msg = wl->proto == PROTO_POP3
	                      ? "-ERR [SYS/TEMP] too many connections from your address\r\n"
	                      : "421 4.7.0 too many connections from your address\r\n";
	char rip[48];
	net_peer_string(sa, salen, rip, sizeof(rip));
	log_info("event=refused reason=max-connections-per-ip proto=%s rip=%s",
	         listener_proto_name(wl->proto), rip);
	/* On the implicit-TLS port a plaintext line would only confuse the
	 * client's TLS stack: just close. */
	if (wl->proto != PROTO_POP3S)
		(void)send(fd, msg, strlen(msg), MSG_DONTWAIT | MSG_NOSIGNAL);
	close(fd);
}

/* sa is the client: the socket's peer, or what the proxy said. */
static void admit(struct worker_listener *wl, int fd, const struct sockaddr *sa, socklen_t salen)
{
	struct worker *w = wl->w;
	int counted = 1;

	if (sa->sa_family != AF_UNIX) {
		/* Replies end in a short write (the tail of a RETR, ".\r\n",
		 * a one-line answer). With Nagle's algorithm that write waits
		 * for the ACK of the previous one, which the client delays
		 * (up to 40 ms) because it has nothing to send until the
		 * reply is complete: one stall per command. */
		int one = 1;
		(void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
		uint8_t key[16];
		net_peer_key(sa, key);
		counted = iplimit_acquire(w->ipl, key, w->slot, w->env.cfg->max_connections_per_ip);
		if (counted < 0) {
			refuse(wl, fd, sa, salen);
			return;
		}
	}
	struct conn *c;
	if (wl->proto == PROTO_POP3S) {
		SSL *ssl = w->env.tls != NULL ? tls_ssl_new(w->env.tls) : NULL;
		if (ssl == NULL) {
			log_error("event=refused reason=no-tls proto=pop3s");
			if (counted == 0) {
				uint8_t key[16];
				net_peer_key(sa, key);
				iplimit_release(w->ipl, key, w->slot);
			}
			close(fd);
			return;
		}
		c = conn_new_tls(w->env.base, fd, sa, salen, ssl);
	} else {
		c = conn_new(w->env.base, fd, sa, salen);
	}
	if (counted == 0)
		conn_set_on_free(c, conn_released, w);
	if (wl->proto == PROTO_POP3 || wl->proto == PROTO_POP3S)
		pop3_accept(&w->env, c);
	else
		smtp_accept(&w->env, c, wl->proto == PROTO_LMTP);
}

static void pending_free(struct pending *p, bool close_fd)
{
	struct worker *w = p->wl->w;
	if (p->prev != NULL)
		p->prev->next = p->next;
	else
		w->pending = p->next;
	if (p->next != NULL)
		p->next->prev = p->prev;
	event_free(p->ev);
	if (close_fd)
		close(p->fd);
	free(p);
}

static void pending_fail(struct pending *p, const char *why)
{
	char rip[48];
	net_peer_string((struct sockaddr *)&p->sa, p->salen, rip, sizeof(rip));
	log_info("event=refused reason=proxy-header proto=%s proxy=%s error=\"%s\"",
	         listener_proto_name(p->wl->proto), rip, why);
	pending_free(p, true);
}

static void pending_cb(evutil_socket_t fd, short what, void *arg)
{
	struct pending *p = arg;
	/* One per worker (its loop is one thread): 64 KiB is too much for
	 * each connection and for the stack. */
	static uint8_t buf[PROXY_MAX_HEADER];
	struct proxy_result r;
	const char *error = "connection closed before the header";

	if (what & EV_TIMEOUT) {
		pending_fail(p, "no header in time");
		return;
	}
	ssize_t n = recv(fd, buf, sizeof(buf), MSG_PEEK);
	if (n < 0 && (errno == EAGAIN || errno == EINTR))
		return;
	if (n <= 0) {
		pending_fail(p, n < 0 ? strerror(errno) : error);
		return;
	}
	switch (proxy_parse(buf, (size_t)n, &r, &error)) {
	case PROXY_NEED_MORE:
		if ((size_t)n == sizeof(buf))
			pending_fail(p, "header too long");
		else if (what & EV_CLOSED) /* the rest will never come */
			pending_fail(p, "connection closed in the middle of the header");
		return;
	case PROXY_BAD:
		pending_fail(p, error);
		return;
	case PROXY_DONE:
		break;
	}
	/* Consume exactly the header; it is all there (we just peeked it). */
	if (recv(fd, buf, r.length, 0) != (ssize_t)r.length) {
		pending_fail(p, "short read of the header");
		return;
	}
	struct worker_listener *wl = p->wl;
	struct sockaddr_storage sa = r.local ? p->sa : r.src;
	socklen_t salen = r.local ? p->salen : r.srclen;
	pending_free(p, false);
	admit(wl, fd, (struct sockaddr *)&sa, salen);
}

void worker_accept(struct evconnlistener *evl, int fd, struct sockaddr *sa, int salen, void *arg)
{
	(void)evl;
	struct worker_listener *wl = arg;
	struct worker *w = wl->w;

	if (w->nproxies == 0 || sa->sa_family == AF_UNIX ||
	    !proxy_trusted(w->proxies, w->nproxies, sa)) {
		admit(wl, fd, sa, (socklen_t)salen);
		return;
	}
	/* From a trusted proxy the header is required before anything else. */
	struct pending *p = xcalloc(1, sizeof(*p));
	p->wl = wl;
	p->fd = fd;
	p->salen = (socklen_t)salen;
	memcpy(&p->sa, sa, (size_t)salen < sizeof(p->sa) ? (size_t)salen : sizeof(p->sa));
	/* Edge-triggered: the bytes of an incomplete header stay in the
	 * socket (peeked, not read), so a level-triggered event would fire
	 * again at once, for ever. Wake up for new bytes or the peer's close. */
	p->ev = event_new(w->env.base, fd, EV_READ | EV_PERSIST | EV_ET | EV_CLOSED, pending_cb, p);
	p->next = w->pending;
	if (w->pending != NULL)
		w->pending->prev = p;
	w->pending = p;
	struct timeval tv = {PROXY_HEADER_TIMEOUT_S, 0};
	event_add(p->ev, &tv);
}

void worker_accept_cleanup(struct worker *w)
{
	while (w->pending != NULL)
		pending_free(w->pending, true);
}
