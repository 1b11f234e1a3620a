/* The hand-off between processes (DESIGN §3). A login worker that is done
 * with a connection's pre-login part (a POP3 login, an SMTP/LMTP client's
 * first MAIL) sends the client's socket (SCM_RIGHTS) with a record of the
 * session to the mail workers over one SOCK_SEQPACKET pair
 * that all of them share: whichever mail worker reads a record first
 * serves the session. Under TLS the socket cannot move (the TLS state lives
 * in the login worker), so the login worker sends one end of a socketpair
 * instead and relays between it and the TLS connection for the rest of the
 * session; the mail worker cannot tell the difference.
 *
 * The record is the whole of what the mail side is built from: protocol,
 * session id, user, the client's address (the PROXY one, if any), times,
 * the TLS label, the SMTP client's HELO, and the input not yet answered
 * (what the client pipelined after its login; SMTP's MAIL and what came
 * after it). */
#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "auth/ticket.h"
#include "core/config.h"
#include "core/env.h"
#include "core/log.h"
#include "core/text.h"
#include "core/util.h"
#include "net/conn.h"
#include "pop3/pop3.h"
#include "server/handoff.h"
#include "smtp/smtp.h"
#include "server/iplimit.h"
#include "server/worker.h"

#define HANDOFF_MAGIC 0x50494c32u /* "PIL2" */
/* Records waiting for room in the socket before logins are refused. */
#define HANDOFF_QUEUE_MAX 256
/* Relay buffers, each way: beyond this a side is not read until the other
 * side has taken some. */
#define RELAY_HIGH (256 * 1024)
#define RELAY_LOW  (64 * 1024)
/* Read from the mail worker at once: a bufferevent reads 4 KiB at a time
 * (libevent 2.1), which made a TLS record and two system calls of every
 * 4 KiB of a RETR. */
#define RELAY_READ (64 * 1024)
/* After the client has gone, the mail worker gets this long to take what
 * the client sent last. */
#define RELAY_FLUSH_TIMEOUT_S 10

struct handoff_wire {
	uint32_t magic;
	uint8_t counted; /* the receiver takes over the per-address count */
	uint8_t proto;   /* enum handoff_proto */
	uint8_t esmtp;
	uint8_t pad;
	uint32_t errors;
	uint32_t peerlen;
	uint32_t inlen;  /* input bytes after the record */
	uint32_t outlen; /* then replies still owed to the client */
	struct sockaddr_storage peer;
	uint64_t connected_ms;
	int64_t since;
	char sid[HANDOFF_SID_LEN + 1];
	char user[HANDOFF_NAME_MAX + 1];
	char helo[HANDOFF_NAME_MAX + 1];
	uint8_t ticket[HANDOFF_TICKET_SIZE];
	char tls[96];
};

/* Replies owed that may travel with a connection; a client that let more
 * pile up (hundreds of pipelined CAPAs it does not read) is refused. */
#define HANDOFF_OUT_MAX (16 * 1024)
#define HANDOFF_MAX     (sizeof(struct handoff_wire) + CONN_MAX_READAHEAD + 4096 + HANDOFF_OUT_MAX)

/* ---- sending (login workers) ---- */

struct queued {
	struct queued *next;
	int fd;
	size_t len;
	unsigned char msg[];
};

struct handoff {
	struct worker *w;
	int fd; /* our end of the shared pair */
	struct event *ev;
	struct queued *head, **tail;
	size_t queued;
};

static int send_one(int sock, int fd, const void *msg, size_t len)
{
	union {
		struct cmsghdr h;
		char buf[CMSG_SPACE(sizeof(int))];
	} ctl;
	struct iovec iov = {(void *)msg, len};
	struct msghdr mh = {0};

	memset(&ctl, 0, sizeof(ctl));
	mh.msg_iov = &iov;
	mh.msg_iovlen = 1;
	mh.msg_control = ctl.buf;
	mh.msg_controllen = sizeof(ctl.buf);
	struct cmsghdr *cm = CMSG_FIRSTHDR(&mh);
	cm->cmsg_level = SOL_SOCKET;
	cm->cmsg_type = SCM_RIGHTS;
	cm->cmsg_len = CMSG_LEN(sizeof(int));
	memcpy(CMSG_DATA(cm), &fd, sizeof(int));
	for (;;) {
		ssize_t n = sendmsg(sock, &mh, MSG_DONTWAIT | MSG_NOSIGNAL);
		if (n == (ssize_t)len)
			return 0;
		if (n < 0 && errno == EINTR)
			continue;
		return n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == ENOBUFS) ? 1
		                                                                              : -1;
	}
}

static void queue_flush(evutil_socket_t sock, short what, void *arg)
{
	(void)sock;
	(void)what;
	struct handoff *ho = arg;

	while (ho->head != NULL) {
		struct queued *q = ho->head;
		int r = send_one(ho->fd, q->fd, q->msg, q->len);
		if (r == 1) {
			event_add(ho->ev, NULL);
			return;
		}
		if (r < 0)
			log_error("event=handoff-failed error=\"%s\"", strerror(errno));
		ho->head = q->next;
		if (ho->head == NULL)
			ho->tail = &ho->head;
		ho->queued--;
		close(q->fd);
		free(q);
	}
}

/* Send now, or queue while the mail workers catch up. Returns 0 when the
 * record is sent or queued (fd is then ours to close), -1 otherwise. */
static int send_or_queue(struct handoff *ho, int fd, const struct handoff_wire *rec,
                         struct evbuffer *data)
{
	size_t dlen = data != NULL ? evbuffer_get_length(data) : 0;
	size_t len = sizeof(*rec) + dlen;
	struct queued *q = xmalloc(sizeof(*q) + len);

	memcpy(q->msg, rec, sizeof(*rec));
	if (dlen > 0)
		evbuffer_remove(data, q->msg + sizeof(*rec), dlen);
	q->len = len;
	q->fd = fd;
	int r = ho->head == NULL ? send_one(ho->fd, fd, q->msg, len) : 1;
	if (r == 0) {
		close(fd);
		free(q);
		return 0;
	}
	if (r < 0 || ho->queued >= HANDOFF_QUEUE_MAX) {
		free(q);
		return -1;
	}
	q->next = NULL;
	*ho->tail = q;
	ho->tail = &q->next;
	ho->queued++;
	event_add(ho->ev, NULL);
	return 0;
}

/* The relay: TLS connection <-> plain socketpair to the mail worker. */
struct relay {
	struct env_client node; /* first */
	struct worker_env *env;
	struct conn *conn;
	struct bufferevent *pair; /* writes to the mail worker */
	struct event *pair_rd;    /* reads from it, RELAY_READ at a time */
};

static size_t relay_data(void *ctx, const char *buf, size_t len)
{
	struct relay *r = ctx;
	if (r->pair == NULL)
		return len; /* the mail side is gone; the close is under way */
	struct evbuffer *out = bufferevent_get_output(r->pair);
	if (evbuffer_get_length(out) >= RELAY_HIGH) {
		conn_pause(r->conn); /* resumed when the mail side has read */
		return 0;
	}
	evbuffer_add(out, buf, len);
	return len;
}

static void relay_drained(void *ctx)
{
	struct relay *r = ctx;
	if (r->pair != NULL)
		event_add(r->pair_rd, NULL);
}

static void relay_timeout(void *ctx)
{
	(void)ctx;
}

static void pair_free(struct relay *r)
{
	event_free(r->pair_rd);
	bufferevent_free(r->pair); /* the mail worker sees the client go */
	r->pair_rd = NULL;
	r->pair = NULL;
}

static void relay_free(struct relay *r)
{
	if (r->pair != NULL)
		pair_free(r);
	env_client_remove(r->env, &r->node);
	free(r);
}

static void relay_closed(void *ctx, enum conn_close_reason why)
{
	(void)why;
	struct relay *r = ctx;
	r->conn = NULL;
	/* What the client sent before it went (a QUIT, say) still reaches the
	 * mail worker; then it sees the end. */
	if (r->pair != NULL && evbuffer_get_length(bufferevent_get_output(r->pair)) > 0) {
		struct timeval tv = {RELAY_FLUSH_TIMEOUT_S, 0};
		event_del(r->pair_rd);
		bufferevent_setwatermark(r->pair, EV_WRITE, 0, 0);
		bufferevent_set_timeouts(r->pair, NULL, &tv);
		return;
	}
	relay_free(r);
}

static const struct conn_handler relay_handler = {
    .data = relay_data,
    .drained = relay_drained,
    .timeout = relay_timeout,
    .closed = relay_closed,
};

/* The mail side ended the session: flush to the client, then TLS
 * close_notify and close. */
static void mail_side_gone(struct relay *r)
{
	pair_free(r);
	conn_close(r->conn);
}

static void pair_readable(evutil_socket_t fd, short what, void *arg)
{
	static char scrap[RELAY_READ];
	struct relay *r = arg;
	struct evbuffer_iovec v = {scrap, sizeof(scrap)};
	bool keep = !conn_closing(r->conn);

	(void)what;
	if (keep && evbuffer_reserve_space(conn_output(r->conn), RELAY_READ, &v, 1) < 1)
		abort();
	ssize_t n = read(fd, v.iov_base, RELAY_READ);
	if (n < 0 && (errno == EAGAIN || errno == EINTR))
		return;
	if (n <= 0) {
		mail_side_gone(r);
		return;
	}
	if (!keep)
		return;
	v.iov_len = (size_t)n;
	evbuffer_commit_space(conn_output(r->conn), &v, 1);
	if (conn_output_len(r->conn) > RELAY_HIGH)
		event_del(r->pair_rd); /* relay_drained */
}

static void pair_written(struct bufferevent *bev, void *arg)
{
	struct relay *r = arg;
	if (r->conn == NULL) {
		if (evbuffer_get_length(bufferevent_get_output(bev)) == 0)
			relay_free(r);
		return;
	}
	if (conn_paused(r->conn))
		conn_resume(r->conn);
}

/* Only writes are the bufferevent's: a failed one, or the flush timeout. */
static void pair_event(struct bufferevent *bev, short what, void *arg)
{
	struct relay *r = arg;
	(void)bev;
	(void)what;
	if (r->conn == NULL) { /* flushing after the client left: give up */
		relay_free(r);
		return;
	}
	mail_side_gone(r);
}

static void relay_kick(struct env_client *node)
{
	struct relay *r = (struct relay *)node;
	if (r->conn != NULL && !conn_closing(r->conn))
		conn_abort(r->conn);
}

/* On stop the mail worker says goodbye through the relay; the relay ends
 * when that side closes (or at the stop grace). */
static void relay_shutdown(struct env_client *node)
{
	(void)node;
}

static void relay_start(struct worker_env *env, struct conn *c, int fd)
{
	struct relay *r = xcalloc(1, sizeof(*r));

	r->env = env;
	r->conn = c;
	r->node.kick = relay_kick;
	r->node.shutdown = relay_shutdown;
	env_client_add(env, &r->node);
	r->pair = bufferevent_socket_new(env->base, fd, BEV_OPT_CLOSE_ON_FREE);
	if (r->pair == NULL)
		abort();
	bufferevent_setcb(r->pair, NULL, pair_written, pair_event, r);
	bufferevent_setwatermark(r->pair, EV_WRITE, RELAY_LOW, 0);
	bufferevent_enable(r->pair, EV_WRITE);
	r->pair_rd = event_new(env->base, fd, EV_READ | EV_PERSIST, pair_readable, r);
	if (r->pair_rd == NULL)
		abort();
	event_add(r->pair_rd, NULL);
	conn_set_idle_timeout(c, 0);
	conn_set_handler(c, &relay_handler, r, CONN_LINE_MAX);
	conn_set_raw(c, true);
	conn_resume(c);
}

static void fill_record(struct handoff_wire *rec, const struct session_handoff *h)
{
	memset(rec, 0, sizeof(*rec));
	rec->magic = HANDOFF_MAGIC;
	rec->proto = (uint8_t)h->proto;
	rec->esmtp = h->esmtp;
	rec->errors = h->errors;
	memcpy(rec->sid, h->sid, sizeof(rec->sid));
	memcpy(rec->user, h->user, sizeof(rec->user));
	memcpy(rec->helo, h->helo, sizeof(rec->helo));
	memcpy(rec->ticket, h->ticket, sizeof(rec->ticket));
	rec->connected_ms = h->connected_ms;
	rec->since = h->since;
	conn_tls_info(h->conn, rec->tls, sizeof(rec->tls));
	socklen_t len = sizeof(rec->peer);
	conn_peer_addr(h->conn, (struct sockaddr *)&rec->peer, &len);
	rec->peerlen = len;
}

static int handoff_send(struct worker_env *env, const struct session_handoff *h)
{
	struct worker *w = (struct worker *)env;
	struct handoff *ho = w->handoff;
	struct handoff_wire rec;

	fill_record(&rec, h);
	if (!conn_is_tls(h->conn)) {
		/* The socket moves; the per-address count moves with it. */
		rec.counted = 1;
		struct evbuffer *in = evbuffer_new(), *out = evbuffer_new();
		int fd = conn_detach(h->conn, in, out);
		if (fd < 0) {
			evbuffer_free(in);
			evbuffer_free(out);
			return -1;
		}
		rec.inlen = (uint32_t)evbuffer_get_length(in);
		rec.outlen = (uint32_t)evbuffer_get_length(out);
		evbuffer_add_buffer(in, out);
		if (rec.inlen > CONN_MAX_READAHEAD + 4096 || rec.outlen > HANDOFF_OUT_MAX ||
		    send_or_queue(ho, fd, &rec, in) < 0) {
			/* The connection is gone from under the login already:
			 * say why on the socket itself before closing it. */
			char msg[320];
			if (h->proto == HANDOFF_POP3)
				snprintf(msg, sizeof(msg),
				         "-ERR [SYS/TEMP] cannot open the "
				         "mailbox, try again later\r\n");
			else
				snprintf(msg, sizeof(msg),
				         "421 4.3.0 %s cannot take mail now, try again later\r\n",
				         env->cfg->hostname);
			(void)send(fd, msg, strlen(msg), MSG_DONTWAIT | MSG_NOSIGNAL);
			close(fd);
		}
		evbuffer_free(in);
		evbuffer_free(out);
		return 0;
	}
	int pair[2];
	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, pair) < 0)
		return -1;
	if (send_or_queue(ho, pair[1], &rec, NULL) < 0) {
		close(pair[0]);
		close(pair[1]);
		return -1;
	}
	relay_start(env, h->conn, pair[0]);
	return 0;
}

struct handoff *handoff_sender_new(struct worker *w, int fd)
{
	struct handoff *ho = xcalloc(1, sizeof(*ho));
	ho->w = w;
	ho->fd = fd;
	ho->tail = &ho->head;
	ho->ev = event_new(w->env.base, fd, EV_WRITE, queue_flush, ho);
	w->env.handoff = handoff_send;
	return ho;
}

/* ---- receiving (mail workers) ---- */

static void conn_released(void *arg, struct conn *c)
{
	struct worker *w = arg;
	iplimit_release(w->ipl, conn_peer_key(c), w->slot);
}

/* Returns false when there was nothing to take. */
static bool receive_one(struct worker *w, int sock)
{
	static unsigned char buf[HANDOFF_MAX];
	union {
		struct cmsghdr h;
		char buf[CMSG_SPACE(sizeof(int) * 4)];
	} ctl;
	struct iovec iov = {buf, sizeof(buf)};
	struct msghdr mh = {0};
	int fd = -1;

	mh.msg_iov = &iov;
	mh.msg_iovlen = 1;
	mh.msg_control = ctl.buf;
	mh.msg_controllen = sizeof(ctl.buf);
	ssize_t n = recvmsg(sock, &mh, MSG_DONTWAIT | MSG_CMSG_CLOEXEC);
	if (n < 0)
		return false; /* another mail worker took it, or nothing yet */
	for (struct cmsghdr *cm = CMSG_FIRSTHDR(&mh); cm != NULL; cm = CMSG_NXTHDR(&mh, cm)) {
		if (cm->cmsg_level != SOL_SOCKET || cm->cmsg_type != SCM_RIGHTS)
			continue;
		size_t nfd = (cm->cmsg_len - CMSG_LEN(0)) / sizeof(int);
		for (size_t i = 0; i < nfd; i++) {
			int one;
			memcpy(&one, CMSG_DATA(cm) + i * sizeof(int), sizeof(int));
			if (fd < 0)
				fd = one;
			else
				close(one);
		}
	}
	struct handoff_wire rec;
	if (fd < 0 && (mh.msg_flags & MSG_CTRUNC)) {
		/* The kernel had no descriptor for it in this process: the
		 * client's connection is gone with it. */
		log_error("event=handoff-bad reason=descriptor-limit error=\"no descriptor left "
		          "for a session: raise the limit on open files (ulimit -n)\"");
		return true;
	}
	if (fd < 0 || (mh.msg_flags & (MSG_TRUNC | MSG_CTRUNC)) || (size_t)n < sizeof(rec)) {
		log_error("event=handoff-bad reason=short-record");
		if (fd >= 0)
			close(fd);
		return true;
	}
	memcpy(&rec, buf, sizeof(rec));
	if (rec.magic != HANDOFF_MAGIC || rec.outlen > HANDOFF_OUT_MAX ||
	    (size_t)rec.inlen + rec.outlen != (size_t)n - sizeof(rec) ||
	    rec.peerlen > sizeof(rec.peer) || rec.proto > HANDOFF_LMTP ||
	    rec.sid[HANDOFF_SID_LEN] != '\0' || rec.user[HANDOFF_NAME_MAX] != '\0' ||
	    rec.helo[HANDOFF_NAME_MAX] != '\0' || rec.tls[sizeof(rec.tls) - 1] != '\0') {
		log_error("event=handoff-bad reason=malformed-record");
		close(fd);
		return true;
	}
	/* A user is served only on the auth process's word for it. */
	if ((rec.proto == HANDOFF_POP3 || rec.user[0] != '\0') &&
	    !ticket_valid(w->ticket_key, rec.user, rec.ticket, now_ms())) {
		char safe[HANDOFF_NAME_MAX + 1];
		log_error("event=handoff-bad reason=bad-ticket user=%s",
		          text_log_safe(rec.user, safe, sizeof(safe)));
		close(fd);
		return true;
	}
	struct conn *c = conn_new(w->env.base, fd, (struct sockaddr *)&rec.peer, rec.peerlen);
	if (rec.counted) {
		/* Counted here from now on; the login worker let go of it. */
		if (iplimit_acquire(w->ipl, conn_peer_key(c), w->slot, UINT32_MAX) == 0)
			conn_set_on_free(c, conn_released, w);
	}
	conn_set_tls_label(c, rec.tls);
	if (rec.inlen > 0)
		conn_feed(c, buf + sizeof(rec), rec.inlen);
	if (rec.outlen > 0)
		conn_write(c, buf + sizeof(rec) + rec.inlen, rec.outlen);
	conn_pause(c);
	conn_start(c);
	struct session_handoff h;
	memset(&h, 0, sizeof(h));
	h.env = &w->env;
	h.conn = c;
	h.proto = (enum handoff_proto)rec.proto;
	memcpy(h.sid, rec.sid, sizeof(h.sid));
	memcpy(h.user, rec.user, sizeof(h.user));
	memcpy(h.helo, rec.helo, sizeof(h.helo));
	h.esmtp = rec.esmtp != 0;
	h.errors = rec.errors;
	h.connected_ms = rec.connected_ms;
	h.since = rec.since;
	if (h.proto == HANDOFF_POP3)
		pop3_session_start(&h);
	else
		smtp_session_start(&h);
	return true;
}

static void receive_cb(evutil_socket_t sock, short what, void *arg)
{
	(void)what;
	struct worker *w = arg;
	/* A few per wakeup: the other mail workers get their share. */
	for (int i = 0; i < 8 && !w->env.stopping; i++)
		if (!receive_one(w, sock))
			break;
}

struct event *handoff_receiver_new(struct worker *w, int fd)
{
	struct event *ev = event_new(w->env.base, fd, EV_READ | EV_PERSIST, receive_cb, w);
	event_add(ev, NULL);
	return ev;
}

void handoff_sender_free(struct handoff **hop)
{
	struct handoff *ho = *hop;
	if (ho == NULL)
		return;
	while (ho->head != NULL) {
		struct queued *q = ho->head;
		ho->head = q->next;
		close(q->fd);
		free(q);
	}
	event_free(ho->ev);
	free(ho);
	*hop = NULL;
}
