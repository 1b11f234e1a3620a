/* The login side of a POP3 connection: greeting, CAPA, USER/PASS and the
 * defences around them (failure delay, failures per connection, the login
 * deadline). On success it builds a hand-off record and lets go. */
#include <event2/event.h>
#include <openssl/crypto.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "auth/apop.h"
#include "auth/authc.h"
#include "auth/penalty.h"
#include "core/config.h"
#include "core/env.h"
#include "core/log.h"
#include "core/text.h"
#include "core/util.h"
#include "net/conn.h"
#include "net/tls.h"
#include "pop3/internal.h"
#include "pop3/login.h"
#include "pop3/pop3.h"

/* Failed logins in one connection before it is closed. */
#define POP3_MAX_AUTH_FAILURES 3

/* A PASS or APOP check on its way through the auth process. */
struct pop3_check {
	struct authc_verify v;
	char name[DIR_ADDRESS_MAX + 1]; /* the user name given, for the log */
};

static void login_free(struct pop3_login *l)
{
	env_client_remove(l->env, &l->node);
	if (l->delay != NULL)
		event_free(l->delay);
	free(l->check);
	pop3_sasl_clear(l);
	free(l->apop_ts);
	free(l);
}

static void login_say_shutdown(struct pop3_login *l)
{
	conn_printf(l->conn, "-ERR [SYS/TEMP] server shutting down\r\n");
	conn_close(l->conn);
}

static void login_bad_command(struct pop3_login *l)
{
	if (++l->bad_commands >= POP3_MAX_BAD_COMMANDS) {
		conn_printf(l->conn, "-ERR too many bad commands, closing connection\r\n");
		log_info("sid=%s event=disconnect reason=bad-commands rip=%s", l->sid,
		         conn_peer(l->conn));
		conn_close(l->conn);
	}
}

static void login_line(void *ctx, char *line, size_t len)
{
	struct pop3_login *l = ctx;
	struct pop3_cmd cmd;

	if (l->sasl != NULL) {
		pop3_sasl_line(l, line, len);
		return;
	}
	const struct pop3_command *row =
	    pop3_command_check(l->conn, POP3_AUTHORIZATION, line, len, &cmd);
	if (row == NULL || row->login(l, &cmd) < 0)
		login_bad_command(l);
	/* The line may hold a password: wipe it. */
	OPENSSL_cleanse(line, len);
}

static void login_too_long(void *ctx)
{
	struct pop3_login *l = ctx;
	conn_printf(l->conn, "-ERR command line too long (limit %d octets)\r\n", POP3_MAX_LINE);
	login_bad_command(l);
}

static void login_timeout(void *ctx)
{
	struct pop3_login *l = ctx;
	conn_printf(l->conn, "-ERR [SYS/PERM] login time exceeded, closing connection\r\n");
	log_info("sid=%s event=disconnect reason=login-timeout rip=%s", l->sid, conn_peer(l->conn));
}

static void login_closed(void *ctx, enum conn_close_reason why)
{
	struct pop3_login *l = ctx;

	if (why == CONN_CLOSE_TLS) {
		char err[160];
		log_info("sid=%s event=disconnect reason=tls-failed rip=%s error=\"%s\"", l->sid,
		         conn_peer(l->conn), conn_tls_error(l->conn, err, sizeof(err)));
	} else if (why == CONN_CLOSE_EOF || why == CONN_CLOSE_ERROR || why == CONN_CLOSE_FLOOD)
		log_info("sid=%s event=disconnect reason=%s rip=%s", l->sid,
		         why == CONN_CLOSE_FLOOD ? "line-flood" : "client-gone",
		         conn_peer(l->conn));
	l->conn = NULL;
	if (l->busy) {
		/* The verification still points at us: free when it returns. */
		l->conn_gone = true;
		return;
	}
	login_free(l);
}

static const struct conn_handler login_handler = {
    .line = login_line,
    .line_too_long = login_too_long,
    .drained = NULL,
    .timeout = login_timeout,
    .closed = login_closed,
};

static void login_shutdown(struct env_client *node)
{
	struct pop3_login *l = (struct pop3_login *)node;
	if (l->conn == NULL || conn_closing(l->conn))
		return;
	if (l->busy)
		l->stop_pending = true;
	else
		login_say_shutdown(l);
}

static void login_info(struct env_client *node, struct env_client_info *out)
{
	struct pop3_login *l = (struct pop3_login *)node;
	out->sid = l->sid;
	out->proto = "pop3";
	out->user = "";
	conn_describe(l->conn, out);
	out->since = l->since;
}

static void login_kick(struct env_client *node)
{
	struct pop3_login *l = (struct pop3_login *)node;
	if (l->conn == NULL || conn_closing(l->conn))
		return;
	log_info("sid=%s event=disconnect reason=kicked rip=%s", l->sid, conn_peer(l->conn));
	conn_abort(l->conn);
}

void pop3_accept(struct worker_env *env, struct conn *conn)
{
	struct pop3_login *l = xcalloc(1, sizeof(*l));

	l->env = env;
	l->connected_ms = now_ms();
	random_token(l->sid, POP3_SID_LEN);
	l->node.shutdown = login_shutdown;
	l->node.info = login_info;
	l->node.kick = login_kick;
	l->since = (int64_t)time(NULL);
	l->conn = conn;
	conn_set_handler(l->conn, &login_handler, l, POP3_MAX_LINE);
	/* An absolute deadline: trickling bytes does not extend it. */
	conn_set_deadline(l->conn, env->cfg->login_timeout);
	env_client_add(env, &l->node);
	log_info("sid=%s event=connect proto=pop3 rip=%s", l->sid, conn_peer(l->conn));
	if (env->cfg->apop) {
		/* RFC 1939 §7: a fresh msg-id per connection to digest with. */
		l->apop_ts = xmalloc(APOP_TIMESTAMP_MAX + 1);
		apop_timestamp(l->apop_ts, APOP_TIMESTAMP_MAX + 1, env->cfg->hostname);
		conn_printf(l->conn, "+OK Pillar POP3 server ready %s\r\n", l->apop_ts);
	} else {
		conn_printf(l->conn, "+OK Pillar POP3 server ready\r\n");
	}
	conn_start(l->conn);
}

int pop3_login_capa(struct pop3_login *l, const struct pop3_cmd *cmd)
{
	(void)cmd;
	pop3_write_capa(l->env, l->conn, POP3_AUTHORIZATION);
	return 0;
}

int pop3_login_quit(struct pop3_login *l, const struct pop3_cmd *cmd)
{
	(void)cmd;
	conn_printf(l->conn, "+OK Pillar POP3 server signing off\r\n");
	log_info("sid=%s event=disconnect reason=quit rip=%s", l->sid, conn_peer(l->conn));
	conn_close(l->conn);
	return 0;
}

/* What USER/PASS and APOP share once the check is done. */
static void login_outcome(struct pop3_login *l, const struct authc_verify *v, const char *name)
{
	switch (v->result) {
	case AUTH_OK:
		pop3_login_succeeded(l, v->address, v->ticket);
		break;
	case AUTH_LOCKED:
		pop3_login_locked(l, v->address);
		break;
	case AUTH_TEMPFAIL:
		pop3_login_tempfail(l, v->error);
		break;
	case AUTH_FAILED:
		pop3_login_failed(l, name);
		break;
	}
}

/* The auth process has answered a PASS or APOP. */
static void check_done(void *arg)
{
	struct pop3_login *l = arg;
	struct pop3_check *ck = l->check;

	l->check = NULL;
	if (!pop3_login_job_done(l))
		login_outcome(l, &ck->v, ck->name);
	free(ck);
}

/* Start a check: the connection waits (paused) for check_done. */
static struct pop3_check *check_begin(struct pop3_login *l, const char *name)
{
	struct pop3_check *ck = xcalloc(1, sizeof(*ck));

	/* A name too long to be anybody's is logged as empty. */
	if (strlen(name) < sizeof(ck->name))
		memcpy(ck->name, name, strlen(name) + 1);
	l->check = ck;
	l->busy = true;
	l->asked_ms = now_ms();
	conn_pause(l->conn);
	return ck;
}

int pop3_login_apop(struct pop3_login *l, const struct pop3_cmd *cmd)
{
	if (l->apop_ts == NULL) {
		conn_printf(
		    l->conn,
		    "-ERR [AUTH] APOP is not enabled on this server; use USER and PASS\r\n");
		return 0;
	}
	struct pop3_check *ck = check_begin(l, cmd->argv[0]);
	authc_apop(l->env->auth, cmd->argv[0], l->apop_ts, cmd->argv[1], &ck->v, check_done, l);
	return 0;
}

/* plaintext_auth forbids USER/PASS here: say what would work instead. */
static int refuse_plaintext(struct pop3_login *l)
{
	if (pop3_stls_available(l->env, l->conn))
		conn_printf(l->conn, "-ERR [AUTH] plaintext authentication needs TLS here: "
		                     "use STLS first\r\n");
	else
		conn_printf(l->conn, "-ERR [AUTH] plaintext authentication is disabled on this "
		                     "connection\r\n");
	return -1;
}

int pop3_login_stls(struct pop3_login *l, const struct pop3_cmd *cmd)
{
	(void)cmd;
	if (conn_is_tls(l->conn)) {
		conn_printf(l->conn, "-ERR TLS is already active\r\n");
		return -1;
	}
	SSL *ssl = l->env->tls != NULL ? tls_ssl_new(l->env->tls) : NULL;
	if (ssl == NULL) {
		conn_printf(l->conn, "-ERR STLS is not available on this server\r\n");
		return -1;
	}
	/* RFC 2595 §4: a USER given before TLS does not carry over. */
	l->have_user = false;
	conn_printf(l->conn, "+OK begin TLS negotiation\r\n");
	conn_starttls(l->conn, ssl);
	return 0;
}

int pop3_login_user(struct pop3_login *l, const struct pop3_cmd *cmd)
{
	if (!pop3_plaintext_allowed(l->env, l->conn))
		return refuse_plaintext(l);
	size_t len = strlen(cmd->argv[0]);
	if (len >= sizeof(l->user)) {
		/* Too long to be anybody: remember nothing, fail at PASS like
		 * any unknown user. */
		l->user[0] = '\0';
	} else {
		memcpy(l->user, cmd->argv[0], len + 1);
	}
	l->have_user = true;
	/* The same reply whether or not the user exists (no enumeration). */
	conn_printf(l->conn, "+OK send PASS\r\n");
	return 0;
}

bool pop3_login_job_done(struct pop3_login *l)
{
	l->busy = false;
	if (l->conn_gone) {
		login_free(l);
		return true;
	}
	if (l->stop_pending) {
		login_say_shutdown(l);
		return true;
	}
	return false;
}

static void login_fail_reply(struct pop3_login *l)
{
	l->busy = false;
	if (l->conn_gone) {
		login_free(l);
		return;
	}
	if (l->stop_pending) {
		login_say_shutdown(l);
		return;
	}
	if (l->failures >= POP3_MAX_AUTH_FAILURES) {
		conn_printf(l->conn, "-ERR [AUTH] invalid user name or password; too many "
		                     "failures, closing connection\r\n");
		log_info("sid=%s event=disconnect reason=auth-failures rip=%s", l->sid,
		         conn_peer(l->conn));
		conn_close(l->conn);
		return;
	}
	conn_printf(l->conn, "-ERR [AUTH] invalid user name or password\r\n");
	conn_resume(l->conn);
}

static void login_delay_done(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	login_fail_reply(arg);
}

void pop3_login_succeeded(struct pop3_login *l, const char *address, const uint8_t *ticket)
{
	struct session_handoff h;

	memset(&h, 0, sizeof(h));
	h.env = l->env;
	h.conn = l->conn;
	h.proto = HANDOFF_POP3;
	memcpy(h.ticket, ticket, sizeof(h.ticket));
	memcpy(h.sid, l->sid, sizeof(h.sid));
	snprintf(h.user, sizeof(h.user), "%s", address);
	h.connected_ms = l->connected_ms;
	h.since = l->since;
	char tls[96];
	penalty_success(l->env->penalty, conn_peer_key(l->conn));
	log_info("sid=%s event=login user=%s rip=%s tls=\"%s\"", l->sid, address,
	         conn_peer(l->conn), conn_tls_info(l->conn, tls, sizeof(tls)));
	conn_set_deadline(l->conn, 0);
	/* From here the connection belongs to the mail side, in a mail
	 * worker: the +OK comes from there once the mailbox is open. With no
	 * hand-off (one process driving a whole session: the fuzzers) the
	 * mail side starts here, from the same record. */
	if (l->env->handoff == NULL) {
		l->conn = NULL;
		pop3_session_start(&h);
		login_free(l);
		return;
	}
	if (l->env->handoff(l->env, &h) < 0) {
		log_error("sid=%s event=handoff-failed user=%s", l->sid, address);
		conn_printf(l->conn,
		            "-ERR [SYS/TEMP] cannot open the mailbox, try again later\r\n");
		l->busy = false;
		conn_close(l->conn);
		return;
	}
	l->conn = NULL;
	login_free(l);
}

void pop3_login_locked(struct pop3_login *l, const char *address)
{
	log_info("sid=%s event=login-refused reason=locked user=%s rip=%s", l->sid, address,
	         conn_peer(l->conn));
	conn_printf(l->conn, "-ERR [AUTH] mailbox locked\r\n");
	l->busy = false;
	conn_resume(l->conn);
}

void pop3_login_tempfail(struct pop3_login *l, const char *error)
{
	log_error("sid=%s event=auth-error error=\"%s\" rip=%s", l->sid,
	          error != NULL ? error : "unknown", conn_peer(l->conn));
	conn_printf(l->conn, "-ERR [SYS/TEMP] authentication is temporarily unavailable\r\n");
	l->busy = false;
	conn_resume(l->conn);
}

void pop3_login_failed(struct pop3_login *l, const char *name)
{
	char safe[DIR_ADDRESS_MAX + 1];

	l->failures++;
	log_auth_failure("sid=%s auth failed user=%s rip=%s", l->sid,
	                 text_log_safe(name != NULL ? name : "", safe, sizeof(safe)),
	                 conn_peer(l->conn));
	/* Answer only after the delay, on a timer: other sessions go on. The
	 * delay counts from when the credentials arrived and grows with this
	 * address's recent failures, in all workers. */
	const uint8_t *ip = conn_peer_key(l->conn);
	uint64_t ms =
	    penalty_fail(l->env->penalty, ip, l->env->cfg->auth_failure_delay, l->asked_ms);
	struct timeval tv = {(time_t)(ms / 1000), (suseconds_t)((ms % 1000) * 1000)};
	l->busy = true;
	if (l->delay == NULL)
		l->delay = evtimer_new(l->env->base, login_delay_done, l);
	evtimer_add(l->delay, &tv);
}

int pop3_login_pass(struct pop3_login *l, const struct pop3_cmd *cmd)
{
	if (!pop3_plaintext_allowed(l->env, l->conn))
		return refuse_plaintext(l);
	if (!l->have_user) {
		conn_printf(l->conn, "-ERR USER first\r\n");
		return -1;
	}
	l->have_user = false;
	/* The password is copied into the request: the line that holds it is
	 * wiped when this returns. */
	struct pop3_check *ck = check_begin(l, l->user);
	authc_pass(l->env->auth, l->user, cmd->argv[0], &ck->v, check_done, l);
	return 0;
}
