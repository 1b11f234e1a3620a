/* SMTP AUTH (RFC 4954) for SMTP and LMTP: the lines around the SASL
 * mechanisms, which run in the auth process (auth/sasl.c behind
 * auth/authc.h) — the command, "334" challenges, the client's answers, "*"
 * to cancel. Steps go to the auth process with the session paused.
 * Authentication only marks the session (Received: says ESMTPA); Pillar
 * accepts mail for its own domains only, authenticated or not. */
#include <event2/event.h>
#include <openssl/crypto.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "auth/authc.h"
#include "auth/penalty.h"
#include "auth/sasl.h"
#include "core/config.h"
#include "core/log.h"
#include "core/text.h"
#include "core/util.h"
#include "net/conn.h"
#include "smtp/internal.h"

/* Failed AUTH attempts in one session before it is closed. */
#define SMTP_MAX_AUTH_FAILURES 3

/* Same policy as POP3: plaintext mechanisms under TLS or from loopback
 * (plaintext_auth = tls), always, or never. */
static bool plaintext_ok(struct smtp_session *s)
{
	switch (s->env->cfg->plaintext_auth) {
	case PLAINTEXT_AUTH_ALWAYS:
		return true;
	case PLAINTEXT_AUTH_NEVER:
		return false;
	case PLAINTEXT_AUTH_TLS:
		return conn_is_tls(s->conn) || conn_peer_loopback(s->conn);
	}
	return false;
}

const char *smtp_auth_mechanisms(struct smtp_session *s)
{
	unsigned char cb[32];
	/* RFC 4954 §4: once authenticated, no more AUTH; and none after the
	 * session moved to a mail worker. */
	if (s->auth_user[0] != '\0' || s->mail_side)
		return "";
	return sasl_mechanisms(plaintext_ok(s), conn_tls_exporter(s->conn, cb) == 0);
}

void smtp_sasl_clear(struct smtp_session *s)
{
	authc_sasl_free(&s->sasl);
	if (s->conn != NULL)
		conn_set_max_line(s->conn, SMTP_MAX_LINE);
}

static void delay_done(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	struct smtp_session *s = arg;

	if (s->conn_gone || s->stop_pending) {
		smtp_session_resume(s);
		return;
	}
	smtp_reply(s, "535 5.7.8 authentication credentials invalid");
	if (s->auth_failures >= SMTP_MAX_AUTH_FAILURES) {
		smtp_reply(s, "421 4.7.0 %s too many authentication failures, closing connection",
		           s->env->cfg->hostname);
		conn_close(s->conn);
	}
	smtp_session_resume(s);
}

/* Every failure is answered auth_failure_delay (or its penalty) after the
 * credentials arrived, on a timer. */
static void auth_failed(struct smtp_session *s, const char *name)
{
	char safe[DIR_ADDRESS_MAX + 1];
	const uint8_t *ip = conn_peer_key(s->conn);
	uint64_t ms =
	    penalty_fail(s->env->penalty, ip, s->env->cfg->auth_failure_delay, s->auth_asked_ms);
	struct timeval tv = {(time_t)(ms / 1000), (suseconds_t)((ms % 1000) * 1000)};

	s->auth_failures++;
	log_auth_failure("sid=%s auth failed user=%s rip=%s", s->sid,
	                 text_log_safe(name, safe, sizeof(safe)), conn_peer(s->conn));
	s->busy = true;
	if (s->auth_delay == NULL)
		s->auth_delay = evtimer_new(s->env->base, delay_done, s);
	evtimer_add(s->auth_delay, &tv);
}

static void sasl_done(void *arg)
{
	struct smtp_session *s = arg;

	if (s->conn_gone || s->stop_pending) {
		smtp_sasl_clear(s);
		smtp_session_resume(s);
		return;
	}
	enum sasl_step r = authc_sasl_result(s->sasl);
	if (r == SASL_CONTINUE) {
		smtp_reply(s, "334 %s", authc_sasl_challenge(s->sasl));
		smtp_session_resume(s);
		return;
	}
	char name[DIR_ADDRESS_MAX + 1] = "", error[160], mech[32];
	const char *why = authc_sasl_error(s->sasl);
	snprintf(error, sizeof(error), "%s", why != NULL ? why : "unknown");
	snprintf(mech, sizeof(mech), "%s", authc_sasl_mech_name(s->sasl));
	if (authc_sasl_login_name(s->sasl) != NULL)
		snprintf(name, sizeof(name), "%s", authc_sasl_login_name(s->sasl));
	if ((r == SASL_OK || r == SASL_LOCKED) && authc_sasl_user(s->sasl) != NULL)
		snprintf(name, sizeof(name), "%s", authc_sasl_user(s->sasl));
	if (r == SASL_OK)
		memcpy(s->auth_ticket, authc_sasl_ticket(s->sasl), sizeof(s->auth_ticket));
	smtp_sasl_clear(s);

	switch (r) {
	case SASL_OK:
		snprintf(s->auth_user, sizeof(s->auth_user), "%s", name);
		penalty_success(s->env->penalty, conn_peer_key(s->conn));
		log_info("sid=%s event=auth mech=%s user=%s rip=%s", s->sid, mech, name,
		         conn_peer(s->conn));
		smtp_reply(s, "235 2.7.0 authentication successful");
		break;
	case SASL_LOCKED:
		log_info("sid=%s event=auth-refused reason=locked user=%s", s->sid, name);
		smtp_reply(s, "535 5.7.8 mailbox locked");
		break;
	case SASL_TEMPFAIL:
		log_error("sid=%s event=auth-error error=\"%s\"", s->sid, error);
		smtp_reply(s, "454 4.7.0 temporary authentication failure, try again later");
		break;
	case SASL_MALFORMED:
		log_info("sid=%s event=sasl-malformed mech=%s error=\"%s\" rip=%s", s->sid, mech,
		         error, conn_peer(s->conn));
		auth_failed(s, name);
		return;
	case SASL_FAILED:
	case SASL_CONTINUE:
		auth_failed(s, name);
		return;
	}
	smtp_session_resume(s);
}

static void sasl_next(struct smtp_session *s, const char *in)
{
	s->busy = true;
	s->auth_asked_ms = now_ms();
	conn_pause(s->conn);
	/* The line is copied into the request, and wiped there once sent. */
	authc_sasl_step(s->sasl, in, sasl_done, s);
}

void smtp_sasl_line(struct smtp_session *s, char *line, size_t len)
{
	if (len == 1 && line[0] == '*') {
		/* RFC 4954 §4: the client cancels. */
		smtp_sasl_clear(s);
		smtp_reply(s, "501 5.0.0 authentication cancelled");
		return;
	}
	if (strlen(line) != len) { /* a NUL is never base64 */
		smtp_sasl_clear(s);
		conn_pause(s->conn);
		s->auth_asked_ms = now_ms();
		auth_failed(s, "");
		return;
	}
	sasl_next(s, line);
	/* The answer may carry a password (PLAIN, LOGIN). */
	OPENSSL_cleanse(line, len);
}

int smtp_cmd_auth(struct smtp_session *s, struct smtp_cmd *cmd)
{
	if (s->auth_user[0] != '\0') {
		smtp_reply(s, "503 5.5.1 already authenticated");
		return -1;
	}
	if (s->mail_side) {
		/* Credentials are the login worker's business, not a mail
		 * worker's. */
		smtp_reply(s, "503 5.5.1 AUTH must come before the first MAIL");
		return -1;
	}
	if (cmd->arg == NULL) {
		smtp_reply(s, "501 5.5.4 AUTH needs a mechanism");
		return -1;
	}
	char mech[64], ir[SMTP_MAX_LINE];
	ir[0] = '\0';
	int n = sscanf(cmd->arg, "%63s %511s", mech, ir);
	bool plain_ok = plaintext_ok(s);
	unsigned char cb[32];
	bool have_cb = conn_tls_exporter(s->conn, cb) == 0;
	if (!sasl_mech_allowed(mech, plain_ok, have_cb)) {
		if (!plain_ok && sasl_mech_allowed(mech, true, have_cb))
			/* RFC 4954 §6 */
			smtp_reply(s, "538 5.7.11 encryption required for %s: use STARTTLS first",
			           mech);
		else
			smtp_reply(s, "504 5.5.4 unsupported authentication mechanism");
		return -1;
	}
	const char *error;
	s->sasl = authc_sasl_new(s->env->auth, mech, have_cb ? cb : NULL, have_cb ? sizeof(cb) : 0,
	                         &error);
	if (s->sasl == NULL) {
		smtp_reply(s, "504 5.5.4 %s", error);
		return -1;
	}
	conn_set_max_line(s->conn, SASL_B64_MAX + 2);
	sasl_next(s, n == 2 ? ir : NULL);
	OPENSSL_cleanse(ir, sizeof(ir));
	return 0;
}
