/* The auth process's server (src/auth/authd.c) and its client
 * (src/auth/authc.c) in one event loop, over a real socket, against a real
 * SQLite directory; and raw clients that break the protocol's rules. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <event2/event.h>
#include <poll.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "auth/authc.h"
#include "auth/authd.h"
#include "auth/authproto.h"
#include "auth/base64.h"
#include "auth/password.h"
#include "auth/scram.h"
#include "auth/ticket.h"
#include "core/config.h"
#include "core/pool.h"
#include "core/util.h"
#include "directory/directory.h"
#include "directory/thread.h"

#define USER     "alice@example.test"
#define PASSWORD "alice-Secret-1"
/* RFC 1939 §7's example, as alice's APOP secret. */
#define RFC_TIMESTAMP "<1896.697170952@dbc.mtview.ca.us>"
#define RFC_SECRET    "tanstaaf"
#define RFC_DIGEST    "c4c9334bac560ecc979e58001b3e22fb"
/* The key the fixture's auth process makes its login tickets with. */
static const uint8_t ticket_key[TICKET_KEY_LEN] = "0123456789abcdef0123456789abcde";
/* The auth process's SASL idle limit here, instead of 10 minutes. */
#define SASL_IDLE_MS 1500

struct fixture {
	char dir[64];
	struct config *cfg;
	struct event_base *base;
	struct pool *pool;
	struct authd *authd;
	struct authc *authc;
	struct authp_addr addr;
	int spare_fd; /* a copy of the listening socket, as the master keeps */
	/* blocking the pool's one thread */
	int block[2];
};

static struct fixture *new_fixture(bool allow_us)
{
	struct fixture *fx = xcalloc(1, sizeof(*fx));
	struct strlist errors = {0};
	struct dir_scram keys;
	const char *err;
	struct dir *d;

	snprintf(fx->dir, sizeof(fx->dir), "/tmp/pillar-test-authd-XXXXXX");
	if (mkdtemp(fx->dir) == NULL)
		return NULL;
	char *conf = xasprintf("%s/pillar.conf", fx->dir);
	FILE *f = fopen(conf, "w");
	if (f == NULL)
		return NULL;
	/* The directory's files are this test's own: the accounts the
	 * defaults name may not exist here. */
	struct passwd *me = getpwuid(geteuid());
	if (me == NULL)
		return NULL;
	fprintf(f,
	        "state_dir = %s\nhostname = test.example\napop = yes\nrun_as = %s\n"
	        "auth_as = %s\n",
	        fx->dir, me->pw_name, me->pw_name);
	fclose(f);
	if (config_load(conf, &fx->cfg, &errors) < 0)
		return NULL;
	free(conf);
	char *hash = password_hash(PASSWORD, &err);
	if (hash == NULL || scram_keys_from_password(PASSWORD, &keys, &err) < 0 ||
	    dir_open(fx->cfg, true, &d, &err) < 0 || dir_domain_add(d, "example.test", &err) < 0 ||
	    dir_user_add(d, USER, hash, &err) < 0 ||
	    dir_user_set_credentials(d, USER, hash, &keys, RFC_SECRET, &err) < 0) {
		fprintf(stderr, "setup: %s\n", err);
		return NULL;
	}
	dir_close(&d);
	free(hash);

	fx->base = event_base_new();
	/* One thread: it takes slow jobs too, and a test can hold it. */
	fx->pool = pool_new(fx->base, 1);
	struct authd_params p = {
	    .cfg = fx->cfg, .nuids = 1, .sasl_idle_ms = SASL_IDLE_MS, .ticket_key = ticket_key};
	p.uids[0] = allow_us ? geteuid() : geteuid() + 12345;
	p.listen_fd = authp_listen(&fx->addr, &err);
	if (p.listen_fd < 0)
		return NULL;
	fx->spare_fd = dup(p.listen_fd);
	fx->authd = authd_new(fx->base, fx->pool, &p);
	fx->authc = authc_new(fx->base, &fx->addr);
	fx->block[0] = fx->block[1] = -1;
	return fx;
}

static int setup(void **state)
{
	*state = new_fixture(true);
	return *state == NULL ? -1 : 0;
}

static int setup_stranger(void **state)
{
	*state = new_fixture(false);
	return *state == NULL ? -1 : 0;
}

static int teardown(void **state)
{
	struct fixture *fx = *state;
	char *cmd = xasprintf("rm -rf '%s'", fx->dir);

	if (fx->block[1] >= 0)
		close(fx->block[1]);
	pool_free(&fx->pool);
	if (fx->block[0] >= 0)
		close(fx->block[0]);
	authc_free(&fx->authc);
	authd_free(&fx->authd);
	if (fx->spare_fd >= 0)
		close(fx->spare_fd);
	event_base_free(fx->base);
	dir_thread_drop();
	config_free(&fx->cfg);
	if (system(cmd) != 0)
		fprintf(stderr, "cleanup of %s failed\n", fx->dir);
	free(cmd);
	free(fx);
	return 0;
}

/* Run the loop until *flag is set, at most 10 s. */
static void run_until(struct fixture *fx, const int *count, int want)
{
	uint64_t end = now_ms() + 10000;

	while (*count < want) {
		if (now_ms() > end)
			fail_msg("timed out: %d of %d done", *count, want);
		event_base_loop(fx->base, EVLOOP_ONCE | EVLOOP_NONBLOCK);
		usleep(500);
	}
}

static void run_for(struct fixture *fx, unsigned ms)
{
	uint64_t end = now_ms() + ms;

	while (now_ms() < end) {
		event_base_loop(fx->base, EVLOOP_ONCE | EVLOOP_NONBLOCK);
		usleep(500);
	}
}

static void count_done(void *arg)
{
	++*(int *)arg;
}

/* A job that holds the pool's one thread until block[1] is closed. */
static void block_work(void *arg)
{
	struct fixture *fx = arg;
	char c;

	while (read(fx->block[0], &c, 1) < 0 && errno == EINTR)
		;
}

static void nothing(void *arg)
{
	(void)arg;
}

static void hold_pool(struct fixture *fx)
{
	assert_int_equal(pipe(fx->block), 0);
	pool_submit_slow(fx->pool, block_work, nothing, fx);
}

static void release_pool(struct fixture *fx)
{
	close(fx->block[1]);
	fx->block[1] = -1;
}

/* ---- through the client ---- */

static void pass(struct fixture *fx, const char *user, const char *password, struct authc_verify *v)
{
	int done = 0;

	authc_pass(fx->authc, user, password, v, count_done, &done);
	assert_int_equal(done, 0); /* never from inside the call */
	run_until(fx, &done, 1);
	run_for(fx, 20);
	assert_int_equal(done, 1); /* exactly once */
}

static void test_pass(void **state)
{
	struct fixture *fx = *state;
	struct authc_verify v;

	pass(fx, "Alice@Example.TEST", PASSWORD, &v);
	assert_int_equal(v.result, AUTH_OK);
	assert_string_equal(v.address, USER);
	/* With a ticket for the canonical address, and for no one else. */
	assert_true(ticket_valid(ticket_key, USER, v.ticket, now_ms()));
	assert_false(ticket_valid(ticket_key, "bob@example.test", v.ticket, now_ms()));
	pass(fx, USER, "wrong", &v);
	assert_int_equal(v.result, AUTH_FAILED);
	assert_string_equal(v.address, "");
	pass(fx, "nobody@example.test", PASSWORD, &v);
	assert_int_equal(v.result, AUTH_FAILED);
	/* Too long to be anybody: sent empty, fails like a wrong password. */
	char longname[DIR_ADDRESS_MAX + 10];
	memset(longname, 'a', sizeof(longname) - 1);
	longname[sizeof(longname) - 1] = '\0';
	pass(fx, longname, PASSWORD, &v);
	assert_int_equal(v.result, AUTH_FAILED);
	assert_int_equal(authc_pending(fx->authc), 0);
}

static void test_apop(void **state)
{
	struct fixture *fx = *state;
	struct authc_verify v;
	int done = 0;

	authc_apop(fx->authc, USER, RFC_TIMESTAMP, RFC_DIGEST, &v, count_done, &done);
	run_until(fx, &done, 1);
	assert_int_equal(v.result, AUTH_OK);
	assert_string_equal(v.address, USER);
	assert_true(ticket_valid(ticket_key, USER, v.ticket, now_ms()));
	authc_apop(fx->authc, USER, RFC_TIMESTAMP, "c4c9334bac560ecc979e58001b3e22fc", &v,
	           count_done, &done);
	run_until(fx, &done, 2);
	assert_int_equal(v.result, AUTH_FAILED);
}

/* Many checks at once, more than one connection may have in flight: the
 * client holds the rest back, and every one ends exactly once. */
static void test_many(void **state)
{
	struct fixture *fx = *state;
	enum { N = 3 * AUTHP_MAX_INFLIGHT };
	static struct authc_verify v[N];
	int done = 0;

	for (int i = 0; i < N; i++)
		authc_apop(fx->authc, USER, RFC_TIMESTAMP, i % 2 ? RFC_DIGEST : "0", &v[i],
		           count_done, &done);
	assert_int_equal(authc_pending(fx->authc), N);
	run_until(fx, &done, N);
	run_for(fx, 20);
	assert_int_equal(done, N);
	for (int i = 0; i < N; i++)
		assert_int_equal(v[i].result, i % 2 ? AUTH_OK : AUTH_FAILED);
	assert_int_equal(authc_pending(fx->authc), 0);
}

static enum sasl_step step(struct fixture *fx, struct authc_sasl *s, const char *in)
{
	int done = 0;

	authc_sasl_step(s, in, count_done, &done);
	assert_int_equal(done, 0);
	run_until(fx, &done, 1);
	return authc_sasl_result(s);
}

static void test_sasl_plain_and_login(void **state)
{
	struct fixture *fx = *state;
	static const char msg[] = "\0" USER "\0" PASSWORD;
	char *b64 = base64_encode(msg, sizeof(msg) - 1);
	const char *err;

	struct authc_sasl *s = authc_sasl_new(fx->authc, "plain", NULL, 0, &err);
	assert_non_null(s);
	assert_string_equal(authc_sasl_mech_name(s), "PLAIN");
	assert_int_equal(step(fx, s, NULL), SASL_CONTINUE);
	assert_string_equal(authc_sasl_challenge(s), "");
	assert_int_equal(step(fx, s, b64), SASL_OK);
	assert_string_equal(authc_sasl_user(s), USER);
	assert_true(ticket_valid(ticket_key, USER, authc_sasl_ticket(s), now_ms()));
	assert_string_equal(authc_sasl_login_name(s), USER);
	assert_null(authc_sasl_challenge(s));
	/* Over: another step is refused, as in process. */
	assert_int_equal(step(fx, s, "="), SASL_MALFORMED);
	authc_sasl_free(&s);
	assert_null(s);
	free(b64);

	/* LOGIN, wrong password: the name the client gave comes back. */
	s = authc_sasl_new(fx->authc, "LOGIN", NULL, 0, &err);
	assert_int_equal(step(fx, s, NULL), SASL_CONTINUE);
	assert_string_equal(authc_sasl_challenge(s), "VXNlcm5hbWU6"); /* Username: */
	b64 = base64_encode(USER, strlen(USER));
	assert_int_equal(step(fx, s, b64), SASL_CONTINUE);
	assert_string_equal(authc_sasl_challenge(s), "UGFzc3dvcmQ6"); /* Password: */
	free(b64);
	assert_int_equal(step(fx, s, "d3Jvbmc="), SASL_FAILED);
	assert_null(authc_sasl_user(s));
	assert_string_equal(authc_sasl_login_name(s), USER);
	authc_sasl_free(&s);

	/* Malformed: the reason comes back for the log. */
	s = authc_sasl_new(fx->authc, "PLAIN", NULL, 0, &err);
	assert_int_equal(step(fx, s, "!!!!"), SASL_MALFORMED);
	assert_string_equal(authc_sasl_error(s), "SASL: bad base64");
	authc_sasl_free(&s);

	/* Freed in the middle of an exchange: the auth process forgets it. */
	s = authc_sasl_new(fx->authc, "LOGIN", NULL, 0, &err);
	assert_int_equal(step(fx, s, NULL), SASL_CONTINUE);
	authc_sasl_free(&s);
	run_for(fx, 20);
	assert_int_equal(authc_pending(fx->authc), 0);
}

/* A SASL exchange left without a step for the idle limit is forgotten
 * (the fixture's limit is SASL_IDLE_MS); one that goes on in time is not. */
static void test_sasl_idle_expires(void **state)
{
	struct fixture *fx = *state;
	const char *err;
	char *name = base64_encode(USER, strlen(USER));

	struct authc_sasl *idle = authc_sasl_new(fx->authc, "LOGIN", NULL, 0, &err);
	struct authc_sasl *busy = authc_sasl_new(fx->authc, "LOGIN", NULL, 0, &err);
	assert_int_equal(step(fx, idle, NULL), SASL_CONTINUE);
	assert_int_equal(step(fx, busy, NULL), SASL_CONTINUE);
	/* busy answers within the limit; idle stays silent past it. */
	run_for(fx, SASL_IDLE_MS * 2 / 3);
	assert_int_equal(step(fx, busy, name), SASL_CONTINUE);
	run_for(fx, SASL_IDLE_MS * 2 / 3);
	assert_int_equal(step(fx, busy, "d3Jvbmc="), SASL_FAILED);
	assert_int_equal(step(fx, idle, name), SASL_MALFORMED);
	assert_string_equal(authc_sasl_error(idle), "unknown or expired SASL session");
	authc_sasl_free(&idle);
	authc_sasl_free(&busy);
	free(name);
}

static void test_sasl_refused_here(void **state)
{
	struct fixture *fx = *state;
	const char *err = NULL;
	uint8_t cb[32] = {0};

	assert_null(authc_sasl_new(fx->authc, "CRAM-MD5", NULL, 0, &err));
	assert_string_equal(err, "unknown SASL mechanism");
	assert_null(authc_sasl_new(fx->authc, "SCRAM-SHA-256-PLUS", NULL, 0, &err));
	assert_string_equal(err, "SCRAM-SHA-256-PLUS needs channel binding (TLS 1.3)");
	struct authc_sasl *s = authc_sasl_new(fx->authc, "SCRAM-SHA-256-PLUS", cb, 32, &err);
	assert_non_null(s);
	authc_sasl_free(&s);
	/* An over-long answer never leaves the worker. */
	s = authc_sasl_new(fx->authc, "PLAIN", NULL, 0, &err);
	char *big = xmalloc(SASL_B64_MAX + 5);
	memset(big, 'A', SASL_B64_MAX + 4);
	big[SASL_B64_MAX + 4] = '\0';
	assert_int_equal(step(fx, s, big), SASL_MALFORMED);
	free(big);
	authc_sasl_free(&s);
}

/* The auth process dies with requests in flight: they fail temporarily;
 * a new one on the same socket serves the next request. */
static void test_restart(void **state)
{
	struct fixture *fx = *state;
	struct authc_verify v1, v2;
	int done = 0;

	run_for(fx, 20); /* connected and accepted */
	authc_pass(fx->authc, USER, PASSWORD, &v1, count_done, &done);
	/* Gone before reading it: the connection closes under the request. */
	authd_free(&fx->authd);
	run_until(fx, &done, 1);
	assert_int_equal(v1.result, AUTH_TEMPFAIL);
	assert_non_null(strstr(v1.error, "auth process"));

	struct authd_params p = {.cfg = fx->cfg, .uids = {geteuid()}, .nuids = 1};
	p.listen_fd = fx->spare_fd;
	fx->spare_fd = -1;
	fx->authd = authd_new(fx->base, fx->pool, &p);
	authc_pass(fx->authc, USER, PASSWORD, &v2, count_done, &done);
	run_until(fx, &done, 2);
	assert_int_equal(v2.result, AUTH_OK);

	/* A SASL exchange begun before a break cannot go on after it. */
	const char *err;
	struct authc_sasl *s = authc_sasl_new(fx->authc, "LOGIN", NULL, 0, &err);
	assert_int_equal(step(fx, s, NULL), SASL_CONTINUE);
	authd_free(&fx->authd);
	run_for(fx, 50);
	assert_int_equal(step(fx, s, "YWxpY2U="), SASL_TEMPFAIL);
	assert_non_null(strstr(authc_sasl_error(s), "auth process"));
	authc_sasl_free(&s);
}

/* A peer with a uid not on the list is turned away. */
static void test_stranger(void **state)
{
	struct fixture *fx = *state;
	struct authc_verify v;

	pass(fx, USER, PASSWORD, &v);
	assert_int_equal(v.result, AUTH_TEMPFAIL);
}

/* Draining: no new connections; the loop ends when the last one goes. */
static void test_drain(void **state)
{
	struct fixture *fx = *state;
	struct authc_verify v;

	pass(fx, USER, PASSWORD, &v);
	assert_int_equal(v.result, AUTH_OK);
	close(fx->spare_fd);
	fx->spare_fd = -1;
	authd_drain(fx->authd);
	assert_int_equal(authd_connections(fx->authd), 1);
	/* The open connection is still served. */
	pass(fx, USER, PASSWORD, &v);
	assert_int_equal(v.result, AUTH_OK);
	/* A new one is refused. */
	int c = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
	assert_int_equal(connect(c, (struct sockaddr *)&fx->addr.sun, fx->addr.len), -1);
	assert_int_equal(errno, ECONNREFUSED);
	close(c);
	run_for(fx, 50);
	assert_false(event_base_got_exit(fx->base));
	authc_free(&fx->authc);
	/* Each turn of the loop clears the flag: look after every one. */
	uint64_t end = now_ms() + 5000;
	bool exited = false;
	while (!exited && now_ms() < end) {
		event_base_loop(fx->base, EVLOOP_ONCE | EVLOOP_NONBLOCK);
		exited = event_base_got_exit(fx->base);
		usleep(500);
	}
	assert_true(exited);
	assert_int_equal(authd_connections(fx->authd), 0);
}

/* ---- raw clients that break the rules ---- */

static int raw_connect(struct fixture *fx)
{
	int c = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);

	assert_true(c >= 0);
	assert_int_equal(connect(c, (struct sockaddr *)&fx->addr.sun, fx->addr.len), 0);
	run_for(fx, 20);
	return c;
}

static void raw_send(int c, const struct authp_msg *m)
{
	uint8_t buf[AUTHP_MSG_MAX];
	const char *err;
	int n = authp_encode(m, buf, sizeof(buf), &err);

	assert_true(n > 0);
	assert_int_equal(send(c, buf, (size_t)n, MSG_NOSIGNAL), n);
}

/* The server closes c within 5 s; replies before the close are skipped. */
static void raw_expect_closed(struct fixture *fx, int c)
{
	uint64_t end = now_ms() + 5000;
	uint8_t buf[AUTHP_MSG_MAX];

	while (now_ms() < end) {
		event_base_loop(fx->base, EVLOOP_ONCE | EVLOOP_NONBLOCK);
		ssize_t n = recv(c, buf, sizeof(buf), MSG_DONTWAIT);
		if (n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR)) {
			close(c);
			return;
		}
		usleep(500);
	}
	fail_msg("the auth server kept a connection that broke the rules");
}

/* One reply on c within 5 s. */
static void raw_reply(struct fixture *fx, int c, struct authp_msg *m, uint8_t *buf)
{
	uint64_t end = now_ms() + 5000;
	const char *err;

	while (now_ms() < end) {
		event_base_loop(fx->base, EVLOOP_ONCE | EVLOOP_NONBLOCK);
		ssize_t n = recv(c, buf, AUTHP_MSG_MAX, MSG_DONTWAIT);
		if (n > 0) {
			assert_int_equal(authp_decode(buf, (size_t)n, m, &err), 0);
			return;
		}
		assert_true(n < 0 && errno == EAGAIN);
		usleep(500);
	}
	fail_msg("no reply");
}

static void test_raw_malformed(void **state)
{
	struct fixture *fx = *state;
	uint8_t buf[AUTHP_MSG_MAX];
	struct authp_msg r;

	/* A well-formed request is answered... */
	int ok = raw_connect(fx);
	struct authp_msg m = {.type = AUTHP_SASL_START, .id = 5, .session = 1, .mech = "PLAIN"};
	raw_send(ok, &m);
	raw_reply(fx, ok, &r, buf);
	assert_int_equal(r.type, AUTHP_SASL_REPLY);
	assert_int_equal(r.id, 5);
	assert_int_equal(r.result, SASL_CONTINUE);

	/* ...garbage is not. */
	int c = raw_connect(fx);
	assert_int_equal(send(c, "hello", 5, MSG_NOSIGNAL), 5);
	raw_expect_closed(fx, c);

	/* A record longer than any message. */
	c = raw_connect(fx);
	static uint8_t big[AUTHP_MSG_MAX + 1];
	assert_int_equal(send(c, big, sizeof(big), MSG_NOSIGNAL), (ssize_t)sizeof(big));
	raw_expect_closed(fx, c);

	/* A reply sent as a request. */
	c = raw_connect(fx);
	struct authp_msg reply = {.type = AUTHP_VERIFY_REPLY, .id = 1, .result = AUTH_OK};
	raw_send(c, &reply);
	raw_expect_closed(fx, c);

	/* A session id already open. */
	c = raw_connect(fx);
	raw_send(c, &m);
	raw_reply(fx, c, &r, buf);
	m.id = 6;
	raw_send(c, &m);
	raw_expect_closed(fx, c);

	/* An empty record. */
	c = raw_connect(fx);
	assert_int_equal(send(c, "", 0, MSG_NOSIGNAL), 0);
	raw_expect_closed(fx, c);

	/* The first connection was never disturbed: its session goes on. */
	struct authp_msg s = {.type = AUTHP_SASL_STEP, .id = 7, .session = 1, .in = "!"};
	raw_send(ok, &s);
	raw_reply(fx, ok, &r, buf);
	assert_int_equal(r.id, 7);
	assert_int_equal(r.result, SASL_MALFORMED);
	/* The session ended with that result; a step now finds none. */
	s.id = 8;
	raw_send(ok, &s);
	raw_reply(fx, ok, &r, buf);
	assert_int_equal(r.result, SASL_MALFORMED);
	assert_string_equal(r.error, "unknown or expired SASL session");
	/* Ending an unknown session is no error. */
	struct authp_msg end = {.type = AUTHP_SASL_END, .session = 77};
	raw_send(ok, &end);
	s.id = 9;
	raw_send(ok, &s);
	raw_reply(fx, ok, &r, buf);
	assert_int_equal(r.id, 9);
	close(ok);
}

/* More requests in flight than allowed, with the pool held so that none
 * is answered: dropped. The jobs then come back to a closed connection. */
static void test_raw_too_many(void **state)
{
	struct fixture *fx = *state;
	run_for(fx, 20);
	size_t before = authd_connections(fx->authd); /* the fixture's client */
	int c = raw_connect(fx);
	struct authp_msg m = {.type = AUTHP_APOP, .user = USER};

	hold_pool(fx);
	m.timestamp = RFC_TIMESTAMP;
	m.digest = RFC_DIGEST;
	for (uint32_t i = 1; i <= AUTHP_MAX_INFLIGHT; i++) {
		m.id = i;
		raw_send(c, &m);
	}
	run_for(fx, 50);
	/* At the bound: still served. */
	uint8_t buf[AUTHP_MSG_MAX];
	assert_int_equal(recv(c, buf, sizeof(buf), MSG_DONTWAIT), -1);
	assert_int_equal(errno, EAGAIN);
	m.id = AUTHP_MAX_INFLIGHT + 1;
	raw_send(c, &m);
	raw_expect_closed(fx, c);
	assert_int_equal(authd_connections(fx->authd), before);
	release_pool(fx);
	run_for(fx, 200);
	assert_int_equal(authd_connections(fx->authd), before);
}

/* A second step of a session whose step still runs: dropped, and its
 * sessions freed (the sanitizer build checks nothing leaks). */
static void test_raw_step_while_busy(void **state)
{
	struct fixture *fx = *state;
	run_for(fx, 20);
	size_t before = authd_connections(fx->authd);
	int c = raw_connect(fx);
	struct authp_msg m = {.type = AUTHP_SASL_START, .id = 1, .session = 3, .mech = "LOGIN"};

	/* Another session left open, to be freed with the connection. */
	raw_send(c, &m);
	run_for(fx, 50);
	hold_pool(fx);
	m.id = 2;
	m.session = 4;
	raw_send(c, &m);
	struct authp_msg s = {.type = AUTHP_SASL_STEP, .id = 3, .session = 4, .in = "YQ=="};
	raw_send(c, &s);
	raw_expect_closed(fx, c);
	release_pool(fx);
	run_for(fx, 200);
	assert_int_equal(authd_connections(fx->authd), before);
	/* The client on the other connection is still served. */
	struct authc_verify v;
	int done = 0;
	authc_apop(fx->authc, USER, RFC_TIMESTAMP, RFC_DIGEST, &v, count_done, &done);
	run_until(fx, &done, 1);
	assert_int_equal(v.result, AUTH_OK);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_setup_teardown(test_pass, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_apop, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_many, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_sasl_plain_and_login, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_sasl_idle_expires, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_sasl_refused_here, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_restart, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_stranger, setup_stranger, teardown),
	    cmocka_unit_test_setup_teardown(test_drain, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_raw_malformed, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_raw_too_many, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_raw_step_while_busy, setup, teardown),
	};

	return cmocka_run_group_tests_name("authd", tests, NULL, NULL);
}
