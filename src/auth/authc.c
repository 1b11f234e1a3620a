/* The auth process's client. See authc.h.
 *
 * Requests wait in a queue until the connection has room (AUTHP_MAX_INFLIGHT
 * unanswered) and the socket takes them, then wait for their reply in a
 * second list; finished ones go to a third list that an event drains, so
 * done() always runs from the loop, never inside the call that made the
 * request. A broken connection fails everything queued or in flight: SASL
 * sessions lived in the connection, and nothing says a request sent just
 * before the break was not acted on. */
#include "auth/authc.h"

#include <errno.h>
#include <event2/event.h>
#include <openssl/crypto.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "auth/apop.h"
#include "core/log.h"
#include "core/util.h"

/* Replies read per readiness event, so one busy connection cannot keep
 * the loop from everything else. */
#define AUTHC_READ_BURST 64

enum req_kind {
	REQ_VERIFY, /* PASS, APOP */
	REQ_SASL,   /* SASL_START, SASL_STEP */
	REQ_NOTICE, /* SASL_END: no reply, no done */
};

struct authc_req {
	struct authc_req *next;
	enum req_kind kind;
	uint32_t id;
	bool sasl_start; /* starts its session: the session lives on the
	                    connection this goes out on */
	uint8_t *msg;    /* the encoded request until it is sent */
	size_t len;
	void (*done)(void *arg);
	void *arg;
	struct authc_verify *verify; /* REQ_VERIFY */
	struct authc_sasl *sasl;     /* REQ_SASL; NULL once the handle is freed */
};

struct queue {
	struct authc_req *head, *tail;
};

struct authc {
	struct event_base *base;
	struct authp_addr addr;
	int fd;         /* -1: not connected */
	unsigned epoch; /* counts connections, so a session knows its own */
	struct event *rev, *wev;
	struct event *timer;    /* reconnect after a backoff; a stalled connection */
	struct event *complete; /* runs done callbacks */
	struct queue waiting, sent, finished;
	unsigned nsent, npending;
	uint32_t next_id, next_session;
	uint64_t retry_at_ms;
	unsigned backoff_ms;
	/* Since when the connection has had work and nothing came back: set
	 * when work arrives on an idle connection and at every reply. */
	uint64_t progress_ms;
};

struct authc_sasl {
	struct authc *c;
	uint32_t session;
	unsigned epoch;         /* the connection its START went out on */
	bool started;           /* a START was queued */
	bool finished;          /* a result other than SASL_CONTINUE came */
	struct authc_req *step; /* the step under way */
	char mech[AUTHP_MECH_MAX + 1];
	uint8_t cb[AUTHP_CB_MAX];
	size_t cb_len;
	enum sasl_step result;
	char *challenge;
	bool have_user, have_login_name, have_error;
	char user[DIR_ADDRESS_MAX + 1];
	char login_name[DIR_ADDRESS_MAX + 1];
	char error[AUTHP_ERROR_MAX + 1];
	char mech_name[AUTHP_MECH_MAX + 1];
	uint8_t ticket[TICKET_SIZE];
};

static void schedule(struct authc *c);
static void flush(struct authc *c);

/* ---- queues ---- */

static void push(struct queue *q, struct authc_req *r)
{
	r->next = NULL;
	if (q->tail != NULL)
		q->tail->next = r;
	else
		q->head = r;
	q->tail = r;
}

static struct authc_req *pop(struct queue *q)
{
	struct authc_req *r = q->head;

	if (r != NULL) {
		q->head = r->next;
		if (q->head == NULL)
			q->tail = NULL;
		r->next = NULL;
	}
	return r;
}

/* Take the request with this id out of q; NULL if there is none. */
static struct authc_req *take(struct queue *q, uint32_t id)
{
	struct authc_req *prev = NULL;

	for (struct authc_req *r = q->head; r != NULL; prev = r, r = r->next) {
		if (r->id != id)
			continue;
		if (prev != NULL)
			prev->next = r->next;
		else
			q->head = r->next;
		if (q->tail == r)
			q->tail = prev;
		r->next = NULL;
		return r;
	}
	return NULL;
}

static void wipe_msg(struct authc_req *r)
{
	if (r->msg != NULL) {
		OPENSSL_cleanse(r->msg, r->len);
		x_free(&r->msg);
	}
}

static void free_req(struct authc_req *r)
{
	wipe_msg(r);
	free(r);
}

/* ---- completion ---- */

static void complete_cb(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	struct authc *c = arg;
	struct authc_req *r;

	/* done() may make new requests; any that finish at once are
	 * appended and run in this same pass. */
	while ((r = pop(&c->finished)) != NULL) {
		void (*done)(void *) = r->done;
		void *done_arg = r->arg;

		free_req(r);
		done(done_arg);
	}
}

/* The request has its result: queue its done. */
static void complete(struct authc *c, struct authc_req *r)
{
	wipe_msg(r);
	if (r->kind == REQ_NOTICE) {
		free(r);
		return;
	}
	if (r->sasl != NULL)
		r->sasl->step = NULL;
	c->npending--;
	push(&c->finished, r);
	event_active(c->complete, EV_TIMEOUT, 0);
}

static void sasl_set_error(struct authc_sasl *s, const char *why)
{
	snprintf(s->error, sizeof(s->error), "%s", why);
	s->have_error = true;
}

/* End a request with a temporary failure. */
static void fail(struct authc *c, struct authc_req *r, const char *why)
{
	if (r->kind == REQ_VERIFY) {
		r->verify->result = AUTH_TEMPFAIL;
		r->verify->address[0] = '\0';
		snprintf(r->verify->error, sizeof(r->verify->error), "%s", why);
	} else if (r->kind == REQ_SASL && r->sasl != NULL) {
		struct authc_sasl *s = r->sasl;

		x_free(&s->challenge);
		s->result = SASL_TEMPFAIL;
		s->finished = true;
		s->have_user = false;
		sasl_set_error(s, why);
	}
	complete(c, r);
}

static void fail_queue(struct authc *c, struct queue *q, const char *why)
{
	struct authc_req *r;

	while ((r = pop(q)) != NULL)
		fail(c, r, why);
}

/* ---- the connection ---- */

static void next_backoff(struct authc *c)
{
	c->retry_at_ms = now_ms() + c->backoff_ms;
	if (c->backoff_ms == 0)
		c->backoff_ms = AUTHC_BACKOFF_MIN_MS;
	else if (c->backoff_ms < AUTHC_BACKOFF_MAX_MS / 2)
		c->backoff_ms *= 2;
	else
		c->backoff_ms = AUTHC_BACKOFF_MAX_MS;
}

/* The connection is over: fail everything, reconnect when next needed. */
static void break_conn(struct authc *c, const char *why)
{
	char msg[AUTHP_ERROR_MAX + 1];

	snprintf(msg, sizeof(msg), "auth process: %s", why);
	if (c->fd >= 0) {
		log_warn("event=auth-connection-lost error=\"%s\" pending=%u", why, c->npending);
		event_free(c->rev);
		c->rev = NULL;
		event_free(c->wev);
		c->wev = NULL;
		close(c->fd);
		c->fd = -1;
	}
	c->nsent = 0;
	fail_queue(c, &c->sent, msg);
	fail_queue(c, &c->waiting, msg);
	next_backoff(c);
	schedule(c);
}

static void read_cb(evutil_socket_t fd, short what, void *arg);
static void write_cb(evutil_socket_t fd, short what, void *arg);

static void connect_now(struct authc *c)
{
	const char *why = NULL;
	int fd = -1;

	if (c->addr.len == 0) {
		why = "no auth process address";
	} else {
		fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
		/* AF_UNIX connects at once or not at all (EAGAIN: the
		 * backlog is full); EINPROGRESS is not expected, but then the
		 * first send simply waits for the socket to be writable. */
		if (fd < 0 ||
		    (connect(fd, (const struct sockaddr *)&c->addr.sun, c->addr.len) < 0 &&
		     errno != EINPROGRESS))
			why = strerror(errno);
	}
	if (why != NULL) {
		char msg[AUTHP_ERROR_MAX + 1];

		if (fd >= 0)
			close(fd);
		snprintf(msg, sizeof(msg), "auth process unavailable: %s", why);
		if (c->npending > 0)
			log_warn("event=auth-connect-failed error=\"%s\"", why);
		fail_queue(c, &c->waiting, msg);
		next_backoff(c);
		return;
	}
	c->fd = fd;
	c->epoch++;
	c->progress_ms = now_ms();
	c->rev = event_new(c->base, fd, EV_READ | EV_PERSIST, read_cb, c);
	c->wev = event_new(c->base, fd, EV_WRITE, write_cb, c);
	event_add(c->rev, NULL);
}

/* Send what is waiting, as far as the connection has room. */
static void flush(struct authc *c)
{
	struct authc_req *r;

	while (c->fd >= 0 && (r = c->waiting.head) != NULL) {
		if (r->kind != REQ_NOTICE && c->nsent >= AUTHP_MAX_INFLIGHT)
			return; /* a reply will make room */
		ssize_t n = send(c->fd, r->msg, r->len, MSG_DONTWAIT | MSG_NOSIGNAL);
		if (n < 0 && (errno == EAGAIN || errno == ENOBUFS || errno == EINTR)) {
			event_add(c->wev, NULL);
			return;
		}
		if (n != (ssize_t)r->len) {
			break_conn(c, n < 0 ? strerror(errno) : "short send");
			return;
		}
		pop(&c->waiting);
		wipe_msg(r);
		if (r->kind == REQ_NOTICE) {
			free(r);
			continue;
		}
		if (r->sasl_start && r->sasl != NULL)
			r->sasl->epoch = c->epoch;
		push(&c->sent, r);
		c->nsent++;
	}
}

static void write_cb(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	struct authc *c = arg;

	flush(c);
	schedule(c);
}

static void copy_opt(char *dst, size_t size, const char *src, bool *have)
{
	*have = src != NULL;
	snprintf(dst, size, "%s", src != NULL ? src : "");
}

/* A reply for r. Returns -1 when it does not fit the request. */
static int take_reply(struct authc_req *r, const struct authp_msg *m)
{
	if (r->kind == REQ_VERIFY) {
		struct authc_verify *v = r->verify;

		if (m->type != AUTHP_VERIFY_REPLY)
			return -1;
		if ((m->result == AUTH_OK || m->result == AUTH_LOCKED) && m->address == NULL)
			return -1;
		if ((m->result == AUTH_OK) != (m->ticket_len == TICKET_SIZE))
			return -1;
		if (m->result == AUTH_OK)
			memcpy(v->ticket, m->ticket, TICKET_SIZE);
		v->result = (enum auth_result)m->result;
		snprintf(v->address, sizeof(v->address), "%s",
		         m->address != NULL ? m->address : "");
		snprintf(v->error, sizeof(v->error), "%s",
		         m->error != NULL ? m->error : "unknown error");
		return 0;
	}
	if (m->type != AUTHP_SASL_REPLY || (m->result == SASL_CONTINUE) != (m->out != NULL) ||
	    ((m->result == SASL_OK || m->result == SASL_LOCKED) && m->address == NULL) ||
	    (m->result == SASL_OK) != (m->ticket_len == TICKET_SIZE))
		return -1;
	struct authc_sasl *s = r->sasl;
	if (s == NULL)
		return 0; /* the handle is gone; only done is left to run */
	x_free(&s->challenge);
	s->result = (enum sasl_step)m->result;
	if (s->result == SASL_CONTINUE)
		s->challenge = xstrdup(m->out);
	else
		s->finished = true;
	copy_opt(s->user, sizeof(s->user), m->address, &s->have_user);
	copy_opt(s->login_name, sizeof(s->login_name), m->login_name, &s->have_login_name);
	copy_opt(s->error, sizeof(s->error), m->error, &s->have_error);
	if (m->ticket_len == TICKET_SIZE)
		memcpy(s->ticket, m->ticket, TICKET_SIZE);
	snprintf(s->mech_name, sizeof(s->mech_name), "%s", m->mech);
	return 0;
}

static void read_cb(evutil_socket_t fd, short what, void *arg)
{
	(void)what;
	struct authc *c = arg;
	uint8_t buf[AUTHP_MSG_MAX];

	for (int i = 0; i < AUTHC_READ_BURST; i++) {
		struct iovec iov = {buf, sizeof(buf)};
		struct msghdr mh = {.msg_iov = &iov, .msg_iovlen = 1};
		struct authp_msg m;
		const char *error;
		ssize_t n = recvmsg(fd, &mh, MSG_DONTWAIT);

		if (n < 0) {
			if (errno == EAGAIN || errno == EINTR)
				break;
			break_conn(c, strerror(errno));
			return;
		}
		if (n == 0) {
			break_conn(c, "connection closed");
			return;
		}
		if (mh.msg_flags & MSG_TRUNC) {
			break_conn(c, "over-long reply");
			return;
		}
		if (authp_decode(buf, (size_t)n, &m, &error) < 0) {
			break_conn(c, error);
			return;
		}
		struct authc_req *r = authp_is_request(m.type) ? NULL : take(&c->sent, m.id);
		if (r == NULL) {
			break_conn(c, "reply to no request");
			return;
		}
		c->nsent--;
		if (take_reply(r, &m) < 0) {
			fail(c, r, "auth process: malformed reply");
			break_conn(c, "malformed reply");
			return;
		}
		c->backoff_ms = 0;
		c->progress_ms = now_ms();
		complete(c, r);
	}
	flush(c);
	schedule(c);
}

/* ---- stalls and reconnecting ---- */

/* A connection is stalled when it has had work and no reply for
 * AUTHC_TIMEOUT_MS. Only the auth process's progress counts, not how long
 * a request has waited: under a burst of logins requests queue here for a
 * while, and that is no reason to fail the ones in flight. */
static bool has_work(const struct authc *c)
{
	return c->sent.head != NULL || c->waiting.head != NULL;
}

static void schedule(struct authc *c)
{
	uint64_t at = 0, now = now_ms();

	if (c->fd < 0) {
		if (c->waiting.head != NULL)
			at = c->retry_at_ms > now ? c->retry_at_ms : now;
	} else if (has_work(c)) {
		at = c->progress_ms + AUTHC_TIMEOUT_MS;
	}
	if (at == 0) {
		event_del(c->timer);
		return;
	}
	uint64_t ms = at > now ? at - now : 0;
	struct timeval tv = {(time_t)(ms / 1000), (suseconds_t)((ms % 1000) * 1000)};
	evtimer_add(c->timer, &tv);
}

static void timer_cb(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	struct authc *c = arg;
	uint64_t now = now_ms();

	if (c->fd >= 0) {
		if (has_work(c) && now >= c->progress_ms + AUTHC_TIMEOUT_MS) {
			break_conn(c, "no answer in time");
			return;
		}
	} else if (c->waiting.head != NULL && now >= c->retry_at_ms) {
		connect_now(c);
		flush(c);
	}
	schedule(c);
}

/* Queue a request and send what can go now. */
static void submit(struct authc *c, struct authc_req *r)
{
	if (!has_work(c))
		c->progress_ms = now_ms(); /* the clock starts now */
	if (r->kind != REQ_NOTICE)
		c->npending++;
	push(&c->waiting, r);
	if (c->fd < 0 && now_ms() >= c->retry_at_ms)
		connect_now(c);
	flush(c);
	schedule(c);
}

static uint32_t new_id(struct authc *c)
{
	for (;;) {
		uint32_t id = ++c->next_id;
		bool used = id == 0;

		/* Only a wrap-around of 2^32 ids could meet one still in
		 * flight; replies are matched among those. */
		for (struct authc_req *r = c->sent.head; r != NULL && !used; r = r->next)
			used = r->id == id;
		if (!used)
			return id;
	}
}

/* A request for m; the caller submits it. On an encoding failure (nothing
 * the callers pass can cause one) the request is completed as a temporary
 * failure instead and NULL returned. */
static struct authc_req *make_req(struct authc *c, enum req_kind kind, struct authp_msg *m,
                                  void (*done)(void *), void *arg, struct authc_verify *verify,
                                  struct authc_sasl *s)
{
	struct authc_req *r = xcalloc(1, sizeof(*r));
	uint8_t buf[AUTHP_MSG_MAX];
	const char *error;
	int n;

	r->kind = kind;
	r->done = done;
	r->arg = arg;
	r->verify = verify;
	r->sasl = s;
	if (kind != REQ_NOTICE)
		m->id = r->id = new_id(c);
	n = authp_encode(m, buf, sizeof(buf), &error);
	if (n < 0) {
		OPENSSL_cleanse(buf, sizeof(buf));
		if (kind == REQ_NOTICE) {
			free(r);
			return NULL;
		}
		char why[AUTHP_ERROR_MAX + 1];
		snprintf(why, sizeof(why), "cannot encode the request: %s", error);
		c->npending++;
		fail(c, r, why);
		return NULL;
	}
	r->len = (size_t)n;
	r->msg = xmalloc(r->len);
	memcpy(r->msg, buf, r->len);
	OPENSSL_cleanse(buf, r->len);
	return r;
}

/* ---- public ---- */

struct authc *authc_new(struct event_base *base, const struct authp_addr *addr)
{
	struct authc *c = xcalloc(1, sizeof(*c));

	c->base = base;
	c->fd = -1;
	if (addr != NULL && addr->len > 0 && addr->len <= sizeof(c->addr.sun))
		c->addr = *addr;
	c->timer = evtimer_new(base, timer_cb, c);
	c->complete = event_new(base, -1, 0, complete_cb, c);
	if (c->timer == NULL || c->complete == NULL) {
		log_error("authc: cannot make events");
		abort();
	}
	connect_now(c);
	return c;
}

void authc_free(struct authc **cp)
{
	struct authc *c = *cp;
	struct authc_req *r;

	if (c == NULL)
		return;
	if (c->fd >= 0) {
		event_free(c->rev);
		event_free(c->wev);
		close(c->fd);
	}
	while ((r = pop(&c->waiting)) != NULL)
		free_req(r);
	while ((r = pop(&c->sent)) != NULL)
		free_req(r);
	while ((r = pop(&c->finished)) != NULL)
		free_req(r);
	event_free(c->timer);
	event_free(c->complete);
	free(c);
	*cp = NULL;
}

unsigned authc_pending(const struct authc *c)
{
	return c->npending;
}

/* Over-long values are sent empty: they then fail like a wrong password,
 * after the same work (auth_request_init, apop_request_init). */
static const char *bounded(const char *s, size_t max)
{
	return strnlen(s, max + 1) > max ? "" : s;
}

void authc_pass(struct authc *c, const char *user, const char *password, struct authc_verify *out,
                void (*done)(void *arg), void *arg)
{
	struct authp_msg m = {.type = AUTHP_PASS};
	struct authc_req *r;

	memset(out, 0, sizeof(*out));
	m.user = bounded(user, DIR_ADDRESS_MAX);
	m.password = bounded(password, AUTH_PASSWORD_MAX);
	r = make_req(c, REQ_VERIFY, &m, done, arg, out, NULL);
	if (r != NULL)
		submit(c, r);
}

void authc_apop(struct authc *c, const char *user, const char *timestamp, const char *digest,
                struct authc_verify *out, void (*done)(void *arg), void *arg)
{
	struct authp_msg m = {.type = AUTHP_APOP};
	struct authc_req *r;

	memset(out, 0, sizeof(*out));
	m.user = bounded(user, DIR_ADDRESS_MAX);
	m.timestamp = bounded(timestamp, APOP_TIMESTAMP_MAX);
	m.digest = bounded(digest, APOP_DIGEST_HEX_LEN);
	r = make_req(c, REQ_VERIFY, &m, done, arg, out, NULL);
	if (r != NULL)
		submit(c, r);
}

struct authc_sasl *authc_sasl_new(struct authc *c, const char *mech, const void *cb, size_t cb_len,
                                  const char **error_r)
{
	const char *name;
	struct authc_sasl *s;

	if (cb == NULL && cb_len > 0) {
		*error_r = "channel binding data too long";
		return NULL;
	}
	name = sasl_mech_check(mech, cb_len, error_r);
	if (name == NULL)
		return NULL;
	if (cb_len > AUTHP_CB_MAX) { /* sasl_mech_check allows no more */
		*error_r = "channel binding data too long";
		return NULL;
	}
	s = xcalloc(1, sizeof(*s));
	s->c = c;
	snprintf(s->mech, sizeof(s->mech), "%s", name);
	snprintf(s->mech_name, sizeof(s->mech_name), "%s", name);
	if (cb_len > 0)
		memcpy(s->cb, cb, cb_len);
	s->cb_len = cb_len;
	s->result = SASL_CONTINUE;
	return s;
}

/* Finish a step here, without the auth process. */
static void local_result(struct authc_sasl *s, struct authc_req *r, enum sasl_step result,
                         const char *why)
{
	x_free(&s->challenge);
	s->result = result;
	s->finished = true;
	s->have_user = false;
	sasl_set_error(s, why);
	s->c->npending++;
	complete(s->c, r);
}

static void queue_end(struct authc_sasl *s)
{
	struct authp_msg m = {.type = AUTHP_SASL_END, .session = s->session};
	struct authc_req *r = make_req(s->c, REQ_NOTICE, &m, NULL, NULL, NULL, NULL);

	if (r != NULL)
		submit(s->c, r);
}

void authc_sasl_step(struct authc_sasl *s, const char *in_b64, void (*done)(void *arg), void *arg)
{
	struct authc *c = s->c;
	struct authp_msg m = {0};
	struct authc_req *r;

	x_free(&s->challenge);
	s->have_error = false;
	if (s->finished || (in_b64 != NULL && strlen(in_b64) > SASL_B64_MAX)) {
		r = xcalloc(1, sizeof(*r));
		r->kind = REQ_SASL;
		r->done = done;
		r->arg = arg;
		r->sasl = s;
		s->step = r;
		if (s->finished) {
			local_result(s, r, SASL_MALFORMED, "SASL exchange already finished");
		} else {
			local_result(s, r, SASL_MALFORMED, "SASL: response longer than 2048 bytes");
			if (s->started && c->fd >= 0 && s->epoch == c->epoch)
				queue_end(s);
		}
		return;
	}
	m.in = in_b64;
	if (!s->started) {
		if (++c->next_session == 0)
			++c->next_session;
		s->session = c->next_session;
		m.type = AUTHP_SASL_START;
		m.session = s->session;
		m.mech = s->mech;
		m.cb = s->cb_len > 0 ? s->cb : NULL;
		m.cb_len = s->cb_len;
	} else {
		m.type = AUTHP_SASL_STEP;
		m.session = s->session;
	}
	r = make_req(c, REQ_SASL, &m, done, arg, NULL, s);
	if (r == NULL)
		return; /* completed as a failure */
	s->step = r;
	if (!s->started) {
		r->sasl_start = true;
		s->started = true;
	} else if (c->fd < 0 || s->epoch != c->epoch) {
		/* The session was in a connection that has broken since. */
		c->npending++;
		fail(c, r, "auth process: connection lost during the exchange");
		return;
	}
	submit(c, r);
}

enum sasl_step authc_sasl_result(const struct authc_sasl *s)
{
	return s->result;
}

const char *authc_sasl_challenge(const struct authc_sasl *s)
{
	return s->result == SASL_CONTINUE ? s->challenge : NULL;
}

const char *authc_sasl_user(const struct authc_sasl *s)
{
	return s->have_user ? s->user : NULL;
}

const uint8_t *authc_sasl_ticket(const struct authc_sasl *s)
{
	return s->result == SASL_OK ? s->ticket : NULL;
}

const char *authc_sasl_login_name(const struct authc_sasl *s)
{
	return s->have_login_name ? s->login_name : NULL;
}

const char *authc_sasl_error(const struct authc_sasl *s)
{
	return s->have_error ? s->error : NULL;
}

const char *authc_sasl_mech_name(const struct authc_sasl *s)
{
	return s->mech_name;
}

void authc_sasl_free(struct authc_sasl **sp)
{
	struct authc_sasl *s = *sp;

	if (s == NULL)
		return;
	if (s->step != NULL) {
		/* Against the contract, but harmless: the step still ends
		 * with its done, and the auth process is told to forget the
		 * session right after it. */
		s->step->sasl = NULL;
		queue_end(s);
	} else if (s->started && !s->finished && s->c->fd >= 0 && s->epoch == s->c->epoch) {
		queue_end(s);
	}
	x_free(&s->challenge);
	OPENSSL_cleanse(s, sizeof(*s));
	free(s);
	*sp = NULL;
}
