/* The auth process. See authd.h.
 *
 * Each connection is one worker. A request is decoded against its fixed
 * layout (auth/authproto.h) and becomes a slow pool job, as it was in the
 * worker before; the job's done sends the reply. A connection that goes
 * away while its jobs run is closed at once and freed when the last job has
 * come back (the pool's done always runs). */
#include "auth/authd.h"

#include <errno.h>
#include <event2/event.h>
#include <openssl/crypto.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "auth/apop.h"
#include "auth/authproto.h"
#include "auth/sasl.h"
#include "auth/ticket.h"
#include "auth/verify.h"
#include "core/config.h"
#include "core/log.h"
#include "core/pool.h"
#include "core/util.h"

/* Requests read per readiness event, so one busy worker cannot keep the
 * loop from the others. */
#define AUTHD_READ_BURST 32
/* Connections at once: one per worker of the generation, and a few more
 * while broken ones are replaced. Past it new ones are closed at once. */
#define AUTHD_MAX_CONNS 1024
/* Out of descriptors at accept: wait this long rather than spin on a
 * listening socket that stays readable. */
#define AUTHD_ACCEPT_BACKOFF_MS 500
/* How often idle SASL sessions are looked for. */
#define AUTHD_SWEEP_MS (60u * 1000u)
/* SASL sessions of a connection, by id: a small hash table. */
#define SASL_BUCKETS 256

struct reply {
	struct reply *next;
	size_t len;
	uint8_t msg[];
};

struct authd_sasl {
	struct authd_sasl *next;
	uint32_t id;
	struct sasl_session *s;
	bool busy; /* a step is on the pool */
	bool end;  /* SASL_END came while busy: free after the step */
	uint64_t last_ms;
};

struct authd_conn {
	struct authd *d;
	struct authd_conn *prev, *next;
	int fd;
	pid_t pid; /* the peer, for logs */
	uid_t uid;
	struct event *rev, *wev;
	unsigned inflight; /* requests whose reply is not sent yet */
	unsigned jobs;     /* on the pool */
	bool closed;       /* gone; freed when jobs is 0 */
	struct reply *outq, *outq_tail;
	struct authd_sasl *sasl[SASL_BUCKETS];
	size_t nsasl;
};

struct authd {
	struct event_base *base;
	struct pool *pool;
	const struct config *cfg;
	uint8_t ticket_key[TICKET_KEY_LEN];
	/* auth_verify_finish jobs queued or running in the background. */
	atomic_uint finishing;
	int listen_fd;
	struct event *accept_ev, *accept_backoff, *sweep;
	uid_t uids[AUTHD_MAX_UIDS];
	size_t nuids;
	uint64_t sasl_idle_ms;
	struct authd_conn *conns;
	size_t nconns;
	bool draining;
};

struct job {
	struct authd_conn *c;
	struct authd *d; /* for a background job, which has no connection */
	uint32_t id;
	struct auth_request *pass;
	struct apop_request *apop;
	struct authd_sasl *sasl;
	char *in; /* the step's input; NULL for none */
	char *out;
	enum sasl_step result;
};

static void conn_close(struct authd_conn *c, const char *why);

/* ---- SASL sessions of a connection ---- */

static struct authd_sasl **sasl_slot(struct authd_conn *c, uint32_t id)
{
	struct authd_sasl **pp = &c->sasl[id % SASL_BUCKETS];

	while (*pp != NULL && (*pp)->id != id)
		pp = &(*pp)->next;
	return pp;
}

static void sasl_remove(struct authd_conn *c, struct authd_sasl *s)
{
	struct authd_sasl **pp = sasl_slot(c, s->id);

	if (*pp == s) {
		*pp = s->next;
		c->nsasl--;
	}
	sasl_free(&s->s);
	free(s);
}

/* Free every session not in a running step (those go when it returns). */
static void sasl_free_idle(struct authd_conn *c, uint64_t older_than_ms)
{
	uint64_t now = now_ms();

	for (size_t b = 0; b < SASL_BUCKETS; b++) {
		struct authd_sasl **pp = &c->sasl[b];

		while (*pp != NULL) {
			struct authd_sasl *s = *pp;

			if (s->busy || now - s->last_ms < older_than_ms) {
				pp = &s->next;
				continue;
			}
			*pp = s->next;
			c->nsasl--;
			sasl_free(&s->s);
			free(s);
		}
	}
}

/* ---- replies ---- */

static void write_cb(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	struct authd_conn *c = arg;

	while (c->outq != NULL) {
		struct reply *r = c->outq;
		ssize_t n = send(c->fd, r->msg, r->len, MSG_DONTWAIT | MSG_NOSIGNAL);

		if (n < 0 && (errno == EAGAIN || errno == ENOBUFS || errno == EINTR)) {
			event_add(c->wev, NULL);
			return;
		}
		if (n != (ssize_t)r->len) {
			conn_close(c, n < 0 ? strerror(errno) : "short send");
			return;
		}
		c->outq = r->next;
		if (c->outq == NULL)
			c->outq_tail = NULL;
		free(r);
		c->inflight--;
	}
}

/* Send the reply to one request, or queue it while the worker is not
 * reading. Replies queued are bounded by AUTHP_MAX_INFLIGHT. Returns -1
 * when the connection was closed instead (c may be freed then). */
static int send_reply(struct authd_conn *c, struct authp_msg *m)
{
	uint8_t buf[AUTHP_MSG_MAX];
	const char *error;
	int n = authp_encode(m, buf, sizeof(buf), &error);

	if (n < 0) {
		/* Nothing we make is out of bounds; if it were, the worker
		 * would wait for this reply, so end the connection. */
		log_error("event=auth-reply-failed error=\"%s\"", error);
		conn_close(c, NULL);
		return -1;
	}
	if (c->outq == NULL) {
		ssize_t w = send(c->fd, buf, (size_t)n, MSG_DONTWAIT | MSG_NOSIGNAL);

		if (w == n) {
			c->inflight--;
			return 0;
		}
		if (w >= 0 || (errno != EAGAIN && errno != ENOBUFS && errno != EINTR)) {
			conn_close(c, w < 0 ? strerror(errno) : "short send");
			return -1;
		}
	}
	struct reply *r = xmalloc(sizeof(*r) + (size_t)n);
	r->next = NULL;
	r->len = (size_t)n;
	memcpy(r->msg, buf, (size_t)n);
	if (c->outq_tail != NULL)
		c->outq_tail->next = r;
	else
		c->outq = r;
	c->outq_tail = r;
	event_add(c->wev, NULL);
	return 0;
}

static int sasl_reply(struct authd_conn *c, uint32_t id, enum sasl_step result, const char *error,
                      const char *mech)
{
	struct authp_msg m = {.type = AUTHP_SASL_REPLY, .id = id, .result = result};
	char mech_buf[AUTHP_MECH_MAX + 1];

	snprintf(mech_buf, sizeof(mech_buf), "%s", mech);
	m.error = error;
	m.mech = mech_buf;
	return send_reply(c, &m);
}

/* ---- jobs ---- */

static void job_free(struct job *j)
{
	if (j->pass != NULL) {
		auth_request_clear(j->pass);
		OPENSSL_cleanse(j->pass, sizeof(*j->pass));
		free(j->pass);
	}
	if (j->apop != NULL) {
		OPENSSL_cleanse(j->apop, sizeof(*j->apop));
		free(j->apop);
	}
	if (j->in != NULL) {
		OPENSSL_cleanse(j->in, strlen(j->in));
		free(j->in);
	}
	free(j->out);
	free(j);
}

/* A job is back: false when its connection is gone (then it was the last
 * thing keeping the connection, maybe, and the caller only cleans up). */
static bool job_back(struct job *j)
{
	struct authd_conn *c = j->c;

	c->jobs--;
	if (!c->closed)
		return true;
	if (j->sasl != NULL)
		sasl_remove(c, j->sasl);
	if (c->jobs == 0)
		free(c);
	return false;
}

static bool right_password(const struct auth_request *req)
{
	return req->result == AUTH_OK || req->result == AUTH_LOCKED;
}

/* The check, and what follows from a right password after the reply, in
 * the background. When AUTHD_MAX_FINISHING of those are waiting already (a
 * burst of first logins, whose SCRAM keys take long to make), it follows
 * before the reply instead, so passwords never pile up in memory. */
static void pass_work(void *arg)
{
	struct job *j = arg;

	auth_verify_check(j->pass);
	if (right_password(j->pass) && atomic_load(&j->c->d->finishing) >= AUTHD_MAX_FINISHING)
		auth_verify_finish(j->pass);
}

static void finish_work(void *arg)
{
	auth_verify_finish(((struct job *)arg)->pass);
}

static void finish_done(void *arg)
{
	struct job *j = arg;

	atomic_fetch_sub(&j->d->finishing, 1);
	job_free(j);
}

static void apop_work(void *arg)
{
	apop_verify_work(((struct job *)arg)->apop);
}

static void verify_done(void *arg)
{
	struct job *j = arg;
	struct authd *d = j->c->d;
	struct authp_msg m = {.type = AUTHP_VERIFY_REPLY, .id = j->id};

	if (job_back(j)) {
		enum auth_result result = j->pass != NULL ? j->pass->result : j->apop->result;
		const char *address = j->pass != NULL ? j->pass->address : j->apop->address;
		const char *error = j->pass != NULL ? j->pass->error : j->apop->error;
		char error_buf[AUTHP_ERROR_MAX + 1];
		uint8_t ticket[TICKET_SIZE];

		m.result = result;
		if (result == AUTH_OK || result == AUTH_LOCKED)
			m.address = address;
		if (result == AUTH_OK) {
			ticket_make(d->ticket_key, address, now_ms(), ticket);
			m.ticket = ticket;
			m.ticket_len = sizeof(ticket);
		}
		if (result == AUTH_TEMPFAIL) {
			snprintf(error_buf, sizeof(error_buf), "%s",
			         error != NULL ? error : "unknown error");
			m.error = error_buf;
		}
		(void)send_reply(j->c, &m);
	}
	/* The connection may go now; the job no longer belongs to it. */
	j->c = NULL;
	if (j->pass != NULL && j->pass->needs_keys) {
		j->d = d;
		atomic_fetch_add(&d->finishing, 1);
		pool_submit_background(d->pool, finish_work, finish_done, j);
	} else {
		job_free(j);
	}
}

static void step_work(void *arg)
{
	struct job *j = arg;

	j->result = sasl_step(j->sasl->s, j->in, &j->out);
}

static void step_done(void *arg)
{
	struct job *j = arg;
	struct authd_sasl *s = j->sasl;

	s->busy = false;
	if (job_back(j)) {
		struct authd_conn *c = j->c;
		struct authp_msg m = {.type = AUTHP_SASL_REPLY, .id = j->id, .result = j->result};
		char name[DIR_ADDRESS_MAX + 1], error[AUTHP_ERROR_MAX + 1];
		char user[DIR_ADDRESS_MAX + 1], mech[AUTHP_MECH_MAX + 1];
		uint8_t ticket[TICKET_SIZE];
		const char *v;

		/* Copied: the session may be freed before the reply goes. */
		s->last_ms = now_ms();
		if (j->result == SASL_CONTINUE)
			m.out = j->out != NULL ? j->out : "";
		if ((v = sasl_user(s->s)) != NULL) {
			snprintf(user, sizeof(user), "%s", v);
			m.address = user;
			if (j->result == SASL_OK) {
				ticket_make(c->d->ticket_key, user, now_ms(), ticket);
				m.ticket = ticket;
				m.ticket_len = sizeof(ticket);
			}
		}
		/* The name is client text for a log line: an address is the
		 * most it can usefully be. */
		if ((v = sasl_login_name(s->s)) != NULL) {
			snprintf(name, sizeof(name), "%s", v);
			m.login_name = name;
		}
		if ((v = sasl_error(s->s)) != NULL) {
			snprintf(error, sizeof(error), "%s", v);
			m.error = error;
		}
		snprintf(mech, sizeof(mech), "%s", sasl_mech_name(s->s));
		m.mech = mech;
		/* Over, or ended meanwhile: nothing more will come for it. */
		if (j->result != SASL_CONTINUE || s->end)
			sasl_remove(c, s);
		j->sasl = NULL;
		(void)send_reply(c, &m);
	}
	job_free(j);
}

static struct job *job_new(struct authd_conn *c, uint32_t id)
{
	struct job *j = xcalloc(1, sizeof(*j));

	j->c = c;
	j->id = id;
	c->jobs++;
	return j;
}

/* ---- requests ---- */

static void sasl_step_start(struct authd_conn *c, struct authd_sasl *s, const struct authp_msg *m)
{
	struct job *j = job_new(c, m->id);

	j->sasl = s;
	j->in = m->in != NULL ? xstrdup(m->in) : NULL;
	s->busy = true;
	s->last_ms = now_ms();
	pool_submit_slow(c->d->pool, step_work, step_done, j);
}

/* One request. Returns -1 when the connection was closed for it. */
static int handle(struct authd_conn *c, const struct authp_msg *m)
{
	struct authd *d = c->d;
	struct authd_sasl *s;
	struct job *j;

	if (!authp_is_request(m->type)) {
		conn_close(c, "a reply sent as a request");
		return -1;
	}
	if (m->type == AUTHP_SASL_END) {
		s = *sasl_slot(c, m->session);
		if (s != NULL && s->busy)
			s->end = true;
		else if (s != NULL)
			sasl_remove(c, s);
		/* An unknown session has ended already. */
		return 0;
	}
	if (c->inflight >= AUTHP_MAX_INFLIGHT) {
		conn_close(c, "too many requests in flight");
		return -1;
	}
	c->inflight++;
	switch (m->type) {
	case AUTHP_PASS:
		j = job_new(c, m->id);
		j->pass = xmalloc(sizeof(*j->pass));
		auth_request_init(j->pass, d->cfg, m->user, m->password);
		pool_submit_slow(d->pool, pass_work, verify_done, j);
		return 0;
	case AUTHP_APOP:
		j = job_new(c, m->id);
		j->apop = xmalloc(sizeof(*j->apop));
		apop_request_init(j->apop, d->cfg, m->user, m->timestamp, m->digest);
		pool_submit_slow(d->pool, apop_work, verify_done, j);
		return 0;
	case AUTHP_SASL_START: {
		struct sasl_session *ss;
		const char *error;

		if (*sasl_slot(c, m->session) != NULL) {
			conn_close(c, "SASL session id in use");
			return -1;
		}
		if (c->nsasl >= AUTHP_MAX_SASL)
			return sasl_reply(c, m->id, SASL_TEMPFAIL, "too many SASL sessions",
			                  m->mech);
		if (sasl_start(d->cfg, m->mech, m->cb, m->cb_len, &ss, &error) < 0)
			return sasl_reply(c, m->id, SASL_MALFORMED, error, m->mech);
		s = xcalloc(1, sizeof(*s));
		s->id = m->session;
		s->s = ss;
		*sasl_slot(c, s->id) = s;
		c->nsasl++;
		sasl_step_start(c, s, m);
		return 0;
	}
	case AUTHP_SASL_STEP:
		s = *sasl_slot(c, m->session);
		if (s == NULL)
			return sasl_reply(c, m->id, SASL_MALFORMED,
			                  "unknown or expired SASL session", "");
		if (s->busy) {
			conn_close(c, "a SASL step while the last one runs");
			return -1;
		}
		sasl_step_start(c, s, m);
		return 0;
	}
	conn_close(c, "unknown request");
	return -1;
}

static void read_cb(evutil_socket_t fd, short what, void *arg)
{
	(void)what;
	struct authd_conn *c = arg;
	uint8_t buf[AUTHP_MSG_MAX];

	for (int i = 0; i < AUTHD_READ_BURST; i++) {
		struct iovec iov = {buf, sizeof(buf)};
		struct msghdr mh = {.msg_iov = &iov, .msg_iovlen = 1};
		struct authp_msg m;
		const char *error;
		ssize_t n = recvmsg(fd, &mh, MSG_DONTWAIT);
		int r;

		if (n < 0 && (errno == EAGAIN || errno == EINTR))
			break;
		if (n <= 0) {
			conn_close(c, n < 0 ? strerror(errno) : NULL);
			return;
		}
		if (mh.msg_flags & MSG_TRUNC) {
			OPENSSL_cleanse(buf, sizeof(buf));
			conn_close(c, "over-long message");
			return;
		}
		if (authp_decode(buf, (size_t)n, &m, &error) < 0) {
			OPENSSL_cleanse(buf, (size_t)n);
			conn_close(c, error);
			return;
		}
		r = handle(c, &m);
		/* The record may have held a password. */
		OPENSSL_cleanse(buf, (size_t)n);
		if (r < 0)
			return;
	}
}

/* ---- connections ---- */

static void conn_close(struct authd_conn *c, const char *why)
{
	struct authd *d = c->d;

	if (c->closed)
		return;
	if (why != NULL)
		log_warn("event=auth-client-dropped pid=%d uid=%u error=\"%s\"", (int)c->pid,
		         (unsigned)c->uid, why);
	c->closed = true;
	event_free(c->rev);
	event_free(c->wev);
	close(c->fd);
	c->fd = -1;
	while (c->outq != NULL) {
		struct reply *r = c->outq;
		c->outq = r->next;
		free(r);
	}
	c->outq_tail = NULL;
	sasl_free_idle(c, 0);
	if (c->prev != NULL)
		c->prev->next = c->next;
	else
		d->conns = c->next;
	if (c->next != NULL)
		c->next->prev = c->prev;
	d->nconns--;
	if (c->jobs == 0)
		free(c);
	if (d->draining && d->nconns == 0)
		event_base_loopexit(d->base, NULL);
}

static bool uid_allowed(const struct authd *d, uid_t uid)
{
	for (size_t i = 0; i < d->nuids; i++)
		if (d->uids[i] == uid)
			return true;
	return false;
}

static void accept_backoff_cb(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	struct authd *d = arg;

	if (!d->draining)
		event_add(d->accept_ev, NULL);
}

static void accept_cb(evutil_socket_t lfd, short what, void *arg)
{
	(void)what;
	struct authd *d = arg;

	for (int i = 0; i < AUTHD_READ_BURST; i++) {
		struct ucred cred = {0, 0, 0};
		socklen_t len = sizeof(cred);
		int fd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);

		if (fd < 0) {
			if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS ||
			    errno == ENOMEM) {
				struct timeval tv = {0, AUTHD_ACCEPT_BACKOFF_MS * 1000};

				log_warn("event=auth-accept-failed errno=%d; pausing", errno);
				event_del(d->accept_ev);
				evtimer_add(d->accept_backoff, &tv);
			}
			return;
		}
		/* The name is abstract: anyone on the host can connect.
		 * Only the workers' accounts are served. */
		if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) < 0 ||
		    !uid_allowed(d, cred.uid)) {
			log_warn("event=auth-client-refused pid=%d uid=%u", (int)cred.pid,
			         (unsigned)cred.uid);
			close(fd);
			continue;
		}
		if (d->nconns >= AUTHD_MAX_CONNS) {
			log_warn("event=auth-client-refused pid=%d reason=too-many-connections",
			         (int)cred.pid);
			close(fd);
			continue;
		}
		struct authd_conn *c = xcalloc(1, sizeof(*c));
		c->d = d;
		c->fd = fd;
		c->pid = cred.pid;
		c->uid = cred.uid;
		c->rev = event_new(d->base, fd, EV_READ | EV_PERSIST, read_cb, c);
		c->wev = event_new(d->base, fd, EV_WRITE, write_cb, c);
		event_add(c->rev, NULL);
		c->next = d->conns;
		if (d->conns != NULL)
			d->conns->prev = c;
		d->conns = c;
		d->nconns++;
		log_debug("event=auth-client pid=%d uid=%u", (int)c->pid, (unsigned)c->uid);
	}
}

static void sweep_cb(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	struct authd *d = arg;

	for (struct authd_conn *c = d->conns; c != NULL; c = c->next)
		sasl_free_idle(c, d->sasl_idle_ms);
}

struct authd *authd_new(struct event_base *base, struct pool *pool, const struct authd_params *p)
{
	struct authd *d = xcalloc(1, sizeof(*d));
	if (p->ticket_key != NULL)
		memcpy(d->ticket_key, p->ticket_key, sizeof(d->ticket_key));
	else /* tickets nobody else can check: one process plays every part */
		random_bytes(d->ticket_key, sizeof(d->ticket_key));
	d->sasl_idle_ms = p->sasl_idle_ms != 0 ? p->sasl_idle_ms : AUTHD_SASL_IDLE_MS;
	uint64_t every = p->sasl_idle_ms != 0 ? d->sasl_idle_ms / 10 : AUTHD_SWEEP_MS;
	struct timeval sweep = {(time_t)(every / 1000), (suseconds_t)(every % 1000) * 1000};

	d->base = base;
	d->pool = pool;
	d->cfg = p->cfg;
	d->listen_fd = p->listen_fd;
	d->nuids = p->nuids < AUTHD_MAX_UIDS ? p->nuids : AUTHD_MAX_UIDS;
	memcpy(d->uids, p->uids, d->nuids * sizeof(d->uids[0]));
	d->accept_ev = event_new(base, d->listen_fd, EV_READ | EV_PERSIST, accept_cb, d);
	d->accept_backoff = evtimer_new(base, accept_backoff_cb, d);
	d->sweep = event_new(base, -1, EV_PERSIST, sweep_cb, d);
	if (d->accept_ev == NULL || d->accept_backoff == NULL || d->sweep == NULL)
		fatal("auth: cannot make events");
	event_add(d->accept_ev, NULL);
	event_add(d->sweep, &sweep);
	return d;
}

void authd_drain(struct authd *d)
{
	if (!d->draining) {
		d->draining = true;
		event_del(d->accept_ev);
		event_del(d->accept_backoff);
		if (d->listen_fd >= 0) {
			close(d->listen_fd);
			d->listen_fd = -1;
		}
	}
	if (d->nconns == 0)
		event_base_loopexit(d->base, NULL);
}

size_t authd_connections(const struct authd *d)
{
	return d->nconns;
}

void authd_free(struct authd **dp)
{
	struct authd *d = *dp;

	if (d == NULL)
		return;
	while (d->conns != NULL)
		conn_close(d->conns, NULL);
	event_free(d->accept_ev);
	event_free(d->accept_backoff);
	event_free(d->sweep);
	if (d->listen_fd >= 0)
		close(d->listen_fd);
	OPENSSL_cleanse(d->ticket_key, sizeof(d->ticket_key));
	free(d);
	*dp = NULL;
}
