/* popload: connections (non-blocking sockets, OpenSSL for POP3S) and the
 * epoll loop that drives them. */
#include "popload.h"

#include <arpa/inet.h>
#include <errno.h>
#include <limits.h>
#include <netinet/tcp.h>
#include <openssl/err.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <unistd.h>

static int ep = -1;
SSL_CTX *ssl_ctx;
struct sockaddr_storage target, target_lmtp;
socklen_t target_len, target_lmtp_len;
double t_begin, t_soft, t_hard;
bool stopping;
int open_conns;
struct conn *live;
static struct conn **dead_list;
static size_t ndead, dead_cap;

void conn_init(void)
{
	ep = epoll_create1(EPOLL_CLOEXEC);
	if (ep < 0)
		die("epoll_create1: %s", strerror(errno));
}

int conn_watch_stdin(void)
{
	struct epoll_event ev = {.events = EPOLLIN, .data.ptr = NULL};
	return epoll_ctl(ep, EPOLL_CTL_ADD, 0, &ev);
}

static bool is_loopback(const struct sockaddr_storage *ss)
{
	if (ss->ss_family == AF_INET) {
		const struct sockaddr_in *sin = (const struct sockaddr_in *)ss;
		return (ntohl(sin->sin_addr.s_addr) >> 24) == 127;
	}
	if (ss->ss_family == AF_INET6) {
		const struct sockaddr_in6 *sin6 = (const struct sockaddr_in6 *)ss;
		return IN6_IS_ADDR_LOOPBACK(&sin6->sin6_addr);
	}
	return false;
}

void make_target(int port, struct sockaddr_storage *ss, socklen_t *len)
{
	memset(ss, 0, sizeof(*ss));
	struct sockaddr_in *sin = (struct sockaddr_in *)ss;
	struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)ss;
	if (inet_pton(AF_INET, opt.host, &sin->sin_addr) == 1) {
		sin->sin_family = AF_INET;
		sin->sin_port = htons((uint16_t)port);
		*len = sizeof(*sin);
	} else if (inet_pton(AF_INET6, opt.host, &sin6->sin6_addr) == 1) {
		sin6->sin6_family = AF_INET6;
		sin6->sin6_port = htons((uint16_t)port);
		*len = sizeof(*sin6);
	} else {
		die("--host: want a numeric address, got '%s'", opt.host);
	}
	if (!is_loopback(ss))
		die("--host %s is not a loopback address: popload only measures servers on this "
		    "machine",
		    opt.host);
}

static void ep_update(struct conn *c)
{
	bool want_out = c->connecting || c->ssl_want_write || c->out_off < c->out_len;
	if (want_out == c->in_epoll_out)
		return;
	struct epoll_event ev = {.events = EPOLLIN | (want_out ? EPOLLOUT : 0), .data.ptr = c};
	if (epoll_ctl(ep, EPOLL_CTL_MOD, c->fd, &ev) < 0)
		die("epoll_ctl: %s", strerror(errno));
	c->in_epoll_out = want_out;
}

struct conn *conn_new(enum role role, int slot, const struct sockaddr_storage *to, socklen_t tolen,
                      bool tls)
{
	struct conn *c = xcalloc(1, sizeof(*c));
	bool bulk = role == ROLE_DELIVER || opt.mode == MODE_RETR || opt.mode == MODE_MIXED ||
	            opt.mode == MODE_STAT100K;
	c->role = role;
	c->slot = slot;
	c->in_cap = bulk ? IN_CAP_BULK : IN_CAP_SMALL;
	c->out_cap = role == ROLE_DELIVER ? OUT_CAP_BULK : OUT_CAP_SMALL;
	c->in = malloc(c->in_cap);
	c->out = malloc(c->out_cap);
	if (c->in == NULL || c->out == NULL)
		die("out of memory");
	c->t_start = now_s();
	c->next = live;
	if (live != NULL)
		live->prev = c;
	live = c;

	c->fd = socket(to->ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (c->fd < 0)
		die("socket: %s (raise ulimit -n?)", strerror(errno));
	int one = 1;
	setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	open_conns++;
	if (connect(c->fd, (const struct sockaddr *)to, tolen) < 0 && errno != EINPROGRESS) {
		fprintf(stderr, "popload: connect: %s\n", strerror(errno));
		struct epoll_event ev0 = {.events = 0, .data.ptr = c};
		epoll_ctl(ep, EPOLL_CTL_ADD, c->fd, &ev0);
		conn_close(c, false);
		return NULL;
	}
	c->connecting = true;
	if (tls) {
		c->ssl = SSL_new(ssl_ctx);
		if (c->ssl == NULL || SSL_set_fd(c->ssl, c->fd) != 1)
			die("SSL_new failed");
		SSL_set_connect_state(c->ssl);
		c->handshaking = true;
	}
	struct epoll_event ev = {.events = EPOLLIN | EPOLLOUT, .data.ptr = c};
	if (epoll_ctl(ep, EPOLL_CTL_ADD, c->fd, &ev) < 0)
		die("epoll_ctl: %s", strerror(errno));
	c->in_epoll_out = true;
	return c;
}

void conn_close(struct conn *c, bool ok)
{
	if (c->dead)
		return;
	c->dead = true;
	if (!ok) {
		if (c->role == ROLE_DELIVER)
			st_dlv.errors++;
		else
			st.errors++;
	}
	if (c->ssl != NULL) {
		SSL_free(c->ssl);
		c->ssl = NULL;
	}
	epoll_ctl(ep, EPOLL_CTL_DEL, c->fd, NULL);
	close(c->fd);
	open_conns--;
	if (c->prev != NULL)
		c->prev->next = c->next;
	else
		live = c->next;
	if (c->next != NULL)
		c->next->prev = c->prev;
	if (ndead == dead_cap) {
		dead_cap = dead_cap ? dead_cap * 2 : 64;
		dead_list = realloc(dead_list, dead_cap * sizeof(*dead_list));
		if (dead_list == NULL)
			die("out of memory");
	}
	dead_list[ndead++] = c;
}

/* Queue bytes to send; flushed by conn_flush. Overflow cannot happen with
 * the sizes used here: it is a bug, so it stops the run. */
void send_bytes(struct conn *c, const char *p, size_t n)
{
	if (c->out_off == c->out_len)
		c->out_off = c->out_len = 0;
	if (c->out_cap - c->out_len < n)
		die("output buffer overflow (bug)");
	memcpy(c->out + c->out_len, p, n);
	c->out_len += n;
}

void send_fmt(struct conn *c, const char *fmt, ...)
{
	char buf[LINE_MAX_LEN];
	va_list ap;
	va_start(ap, fmt);
	int n = vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	if (n < 0 || (size_t)n >= sizeof(buf))
		die("command too long (bug)");
	send_bytes(c, buf, (size_t)n);
}

/* Write what is queued. Returns -1 when the connection failed (closed). */
int conn_flush(struct conn *c)
{
	while (c->out_off < c->out_len) {
		size_t n = c->out_len - c->out_off;
		ssize_t w;
		if (c->ssl != NULL) {
			int r =
			    SSL_write(c->ssl, c->out + c->out_off, n > INT_MAX ? INT_MAX : (int)n);
			if (r <= 0) {
				int e = SSL_get_error(c->ssl, r);
				if (e == SSL_ERROR_WANT_WRITE || e == SSL_ERROR_WANT_READ)
					break;
				conn_close(c, false);
				return -1;
			}
			w = r;
		} else {
			w = send(c->fd, c->out + c->out_off, n, MSG_NOSIGNAL);
			if (w < 0) {
				if (errno == EAGAIN || errno == EINTR)
					break;
				conn_close(c, false);
				return -1;
			}
		}
		c->out_off += (size_t)w;
	}
	ep_update(c);
	return 0;
}

/* ---- the event loop ---- */

/* Handle the bytes in c->in. */
static void conn_input(struct conn *c)
{
	size_t used = 0;
	while (used < c->in_len && !c->dead) {
		char *p = c->in + used;
		size_t n = c->in_len - used;
		if (c->in_body) {
			if (c->body_lines) {
				long u = pop3_body_lines(c, p, n);
				if (u < 0)
					return;
				if (u == 0)
					break;
				used += (size_t)u;
			} else {
				used += pop3_body_scan(c, p, n);
				if (!c->in_body)
					pop3_body_done(c);
			}
			continue;
		}
		char *nl = memchr(p, '\n', n);
		if (nl == NULL) {
			if (n > LINE_MAX_LEN) {
				fprintf(stderr, "popload: reply line too long\n");
				conn_close(c, false);
				return;
			}
			break;
		}
		size_t len = (size_t)(nl - p) + 1;
		used += len;
		size_t l = len - 1;
		if (l > 0 && p[l - 1] == '\r')
			l--;
		if (c->role == ROLE_POP3)
			pop3_reply(c, p, l);
		else
			dlv_reply(c, p, l);
	}
	if (c->dead)
		return;
	if (used < c->in_len)
		memmove(c->in, c->in + used, c->in_len - used);
	c->in_len -= used;
}

/* Read what is there. Returns -1 when c was closed. */
static int conn_read(struct conn *c)
{
	for (;;) {
		if (c->in_len == c->in_cap) {
			fprintf(stderr, "popload: input buffer full\n");
			conn_close(c, false);
			return -1;
		}
		ssize_t r;
		size_t room = c->in_cap - c->in_len;
		if (c->ssl != NULL) {
			int k = SSL_read(c->ssl, c->in + c->in_len,
			                 room > INT_MAX ? INT_MAX : (int)room);
			if (k <= 0) {
				int e = SSL_get_error(c->ssl, k);
				if (e == SSL_ERROR_WANT_READ)
					return 0;
				if (e == SSL_ERROR_WANT_WRITE) {
					c->ssl_want_write = true;
					ep_update(c);
					return 0;
				}
				r = e == SSL_ERROR_ZERO_RETURN ? 0 : -1;
			} else {
				r = k;
			}
		} else {
			r = recv(c->fd, c->in + c->in_len, room, 0);
			if (r < 0 && (errno == EAGAIN || errno == EINTR))
				return 0;
		}
		if (r <= 0) {
			/* Closed by the server: expected only after QUIT. */
			bool ok = c->role == ROLE_POP3 ? c->step == P_EOF : c->step == D_QUIT;
			if (c->role == ROLE_POP3)
				pop3_session_end(c, ok);
			else
				conn_close(c, ok);
			return -1;
		}
		st.wire_octets += (uint64_t)r;
		c->in_len += (size_t)r;
		conn_input(c);
		if (c->dead)
			return -1;
		if (conn_flush(c) < 0)
			return -1;
	}
}

static void conn_event(struct conn *c, uint32_t events)
{
	if (c->dead)
		return;
	if (c->connecting) {
		int err = 0;
		socklen_t l = sizeof(err);
		if (!(events & (EPOLLOUT | EPOLLERR | EPOLLHUP)))
			return;
		getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &l);
		if (err != 0) {
			if (st.errors < 5)
				fprintf(stderr, "popload: connect: %s\n", strerror(err));
			if (c->role == ROLE_POP3)
				pop3_session_end(c, false);
			else
				conn_close(c, false);
			return;
		}
		c->connecting = false;
		ep_update(c);
	}
	if (c->handshaking) {
		int r = SSL_do_handshake(c->ssl);
		if (r != 1) {
			int e = SSL_get_error(c->ssl, r);
			if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) {
				c->ssl_want_write = e == SSL_ERROR_WANT_WRITE;
				ep_update(c);
				return;
			}
			if (st.errors < 5) {
				fprintf(stderr, "popload: TLS handshake failed: ");
				ERR_print_errors_fp(stderr);
				fputc('\n', stderr);
			}
			pop3_session_end(c, false);
			return;
		}
		c->handshaking = false;
		c->ssl_want_write = false;
		ep_update(c);
	}
	if (c->ssl_want_write && (events & EPOLLOUT)) {
		c->ssl_want_write = false;
		ep_update(c);
	}
	/* With TLS, records may already sit in OpenSSL's buffer after the
	 * handshake or a write: always try to read. */
	if ((events & (EPOLLIN | EPOLLERR | EPOLLHUP)) || c->ssl != NULL) {
		if (conn_read(c) < 0)
			return;
	}
	if (c->out_off < c->out_len)
		conn_flush(c);
}

static void reap_dead(void)
{
	for (size_t i = 0; i < ndead; i++) {
		struct conn *c = dead_list[i];
		free(c->in);
		free(c->out);
		free(c->sizes);
		free(c);
	}
	ndead = 0;
}

void run_loop(void (*tick)(void))
{
	struct epoll_event evs[EVENTS_MAX];
	for (;;) {
		double t = now_s();
		if (t >= t_hard) {
			if (open_conns > 0)
				fprintf(stderr,
				        "popload: hard time limit: %d connections still open\n",
				        open_conns);
			break;
		}
		if (t >= t_soft && opt.mode != MODE_IDLE)
			stopping = true;
		if (tick != NULL)
			tick();
		if (open_conns == 0 && (tick == NULL || (stopping && idle_quit_sent) ||
		                        (stopping && opt.mode != MODE_IDLE)))
			break;
		int timeout = opt.mode == MODE_MIXED ? 2 : 50;
		int n = epoll_wait(ep, evs, EVENTS_MAX, timeout);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			die("epoll_wait: %s", strerror(errno));
		}
		for (int i = 0; i < n; i++) {
			if (evs[i].data.ptr == NULL) {
				/* stdin (idle mode): a line or EOF releases */
				char b[256];
				ssize_t r = read(0, b, sizeof(b));
				if (r <= 0 || memchr(b, '\n', (size_t)r) != NULL) {
					idle_release = true;
					epoll_ctl(ep, EPOLL_CTL_DEL, 0, NULL);
				}
				continue;
			}
			conn_event(evs[i].data.ptr, evs[i].events);
		}
		reap_dead();
	}
}
