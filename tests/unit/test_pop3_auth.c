/* POP3 AUTH on the login side (src/pop3/auth.c, login.c) over a socketpair,
 * in a real event loop with the thread pool.
 *
 * Regression, found by fuzz/fuzz_pop3_session.c: a SASL answer holding a
 * NUL octet failed the login without pausing the connection, so commands
 * sent after it ran during the failure delay and were answered before the
 * failure. A new AUTH read in that time had its SASL step running on the
 * pool when the delay ended and resumed the connection under it: the next
 * answer started a second step of the same exchange at once, and a "*"
 * freed the exchange under the running step. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <event2/event.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "auth/authc.h"
#include "auth/authd.h"
#include "auth/authproto.h"
#include "auth/penalty.h"
#include "core/config.h"
#include "core/env.h"
#include "core/pool.h"
#include "core/util.h"
#include "net/conn.h"
#include "pop3/pop3.h"

/* Long enough that a command answered during it would show. */
#define DELAY_MS 300

struct fixture {
	char dir[64];
	struct config *cfg;
	struct worker_env env;
	struct authd *authd; /* the auth process's part, in this loop */
	int client;
	char out[8192];
	size_t len;
	bool closed;
};

static int setup(void **state)
{
	struct fixture *fx = xcalloc(1, sizeof(*fx));
	struct strlist errors = {0};
	int sv[2];

	snprintf(fx->dir, sizeof(fx->dir), "/tmp/pillar-test-pop3auth-XXXXXX");
	if (mkdtemp(fx->dir) == NULL)
		return -1;
	char *conf = xasprintf("%s/pillar.conf", fx->dir);
	FILE *f = fopen(conf, "w");
	if (f == NULL)
		return -1;
	fprintf(f, "state_dir = %s\nhostname = test.example\nauth_failure_delay = %dms\n", fx->dir,
	        DELAY_MS);
	fclose(f);
	if (config_load(conf, &fx->cfg, &errors) < 0)
		return -1;
	free(conf);

	env_init(&fx->env);
	fx->env.cfg = fx->cfg;
	fx->env.base = event_base_new();
	fx->env.pool = pool_new(fx->env.base, 1);
	fx->env.penalty = penalty_create();
	if (fx->env.base == NULL || fx->env.penalty == NULL)
		return -1;
	/* The checks go to an auth server in the same loop, over a real
	 * socket, as a worker's go to the auth process. */
	struct authp_addr addr;
	const char *err;
	struct authd_params ap = {.cfg = fx->cfg, .uids = {geteuid()}, .nuids = 1};
	ap.listen_fd = authp_listen(&addr, &err);
	if (ap.listen_fd < 0)
		return -1;
	fx->authd = authd_new(fx->env.base, fx->env.pool, &ap);
	fx->env.auth = authc_new(fx->env.base, &addr);

	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv) < 0)
		return -1;
	struct sockaddr_in peer = {.sin_family = AF_INET, .sin_port = htons(40000)};
	peer.sin_addr.s_addr = htonl(0x7f000001);
	fx->client = sv[1];
	pop3_accept(&fx->env,
	            conn_new(fx->env.base, sv[0], (struct sockaddr *)&peer, sizeof(peer)));
	*state = fx;
	return 0;
}

static int teardown(void **state)
{
	struct fixture *fx = *state;
	char *cmd = xasprintf("rm -rf '%s'", fx->dir);

	close(fx->client);
	pool_free(&fx->env.pool);
	authc_free(&fx->env.auth);
	authd_free(&fx->authd);
	penalty_destroy(&fx->env.penalty);
	event_base_free(fx->env.base);
	config_free(&fx->cfg);
	if (system(cmd) != 0)
		fprintf(stderr, "cleanup of %s failed\n", fx->dir);
	free(cmd);
	free(fx);
	return 0;
}

static void send_str(struct fixture *fx, const char *s, size_t len)
{
	assert_int_equal(send(fx->client, s, len, MSG_NOSIGNAL), (ssize_t)len);
}

/* Run the loop and collect what the server writes until `until` has been
 * received (NULL: until it closes the connection), at most 5 s. */
static void run(struct fixture *fx, const char *until)
{
	uint64_t end = now_ms() + 5000;

	while (now_ms() < end) {
		event_base_loop(fx->env.base, EVLOOP_NONBLOCK);
		ssize_t n = recv(fx->client, fx->out + fx->len, sizeof(fx->out) - 1 - fx->len, 0);
		if (n > 0) {
			fx->len += (size_t)n;
			fx->out[fx->len] = '\0';
		} else if (n == 0 || (errno != EAGAIN && errno != EINTR)) {
			fx->closed = true;
		}
		if (until != NULL
		        ? strstr(fx->out, until) != NULL
		        : fx->closed && fx->env.nclients == 0 && pool_pending(fx->env.pool) == 0)
			return;
		usleep(1000);
	}
	fail_msg("timed out waiting for %s; received:\n%s", until ? until : "the close", fx->out);
}

/* The replies in order: each expected prefix starts a line, after the
 * previous one. */
static void expect_in_order(const char *out, const char *const *prefixes, size_t n)
{
	const char *p = out;

	for (size_t i = 0; i < n; i++) {
		const char *hit = p;
		while ((hit = strstr(hit, prefixes[i])) != NULL && hit != out && hit[-1] != '\n')
			hit++;
		if (hit == NULL)
			fail_msg("reply \"%s\" missing or out of order in:\n%s", prefixes[i], out);
		p = hit + strlen(prefixes[i]);
	}
}

static void test_nul_answer_holds_later_commands(void **state)
{
	struct fixture *fx = *state;
	static const char answer[] = "AG\0B\r\nCAPA\r\nQUIT\r\n";

	run(fx, "+OK Pillar POP3 server ready\r\n");
	send_str(fx, "AUTH PLAIN\r\n", 12);
	run(fx, "+ \r\n");
	uint64_t sent = now_ms();
	send_str(fx, answer, sizeof(answer) - 1);
	run(fx, "-ERR [AUTH] invalid user name or password\r\n");
	/* Nothing was answered before the failure delay had passed... */
	assert_true(now_ms() - sent >= DELAY_MS - 20);
	run(fx, NULL);
	/* ...and CAPA and QUIT only after the failure, in order. */
	static const char *const order[] = {
	    "+ \r\n",
	    "-ERR [AUTH] invalid user name or password\r\n",
	    "+OK capability list follows\r\n",
	    "+OK Pillar POP3 server signing off\r\n",
	};
	expect_in_order(fx->out, order, 4);
}

/* The input the fuzzer found, reduced: a new AUTH and a cancel pipelined
 * behind the bad answer. */
static void test_auth_pipelined_after_nul_answer(void **state)
{
	struct fixture *fx = *state;
	static const char rest[] = "\0\r\nAUTH PLAIN\r\nAGZvbwBiYXI=x\r\n*\r\nQUIT\r\n";

	run(fx, "+OK Pillar POP3 server ready\r\n");
	send_str(fx, "AUTH PLAIN\r\n", 12);
	run(fx, "+ \r\n");
	send_str(fx, rest, sizeof(rest) - 1);
	shutdown(fx->client, SHUT_WR);
	run(fx, NULL);
	static const char *const order[] = {
	    "+ \r\n",
	    "-ERR [AUTH] invalid user name or password\r\n",
	    "+ \r\n",
	    "-ERR [AUTH] invalid user name or password\r\n",
	    "+OK Pillar POP3 server signing off\r\n",
	};
	expect_in_order(fx->out, order, 5);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_setup_teardown(test_nul_answer_holds_later_commands, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_auth_pipelined_after_nul_answer, setup, teardown),
	};

	return cmocka_run_group_tests_name("pop3_auth", tests, NULL, NULL);
}
