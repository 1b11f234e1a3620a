/* POP3 AUTH (RFC 5034): SASL on the login side. The mechanisms run in the
 * auth process (auth/sasl.c behind auth/authc.h); here are only the lines:
 * the command, "+ " challenges, the client's answers, "*" to cancel. Every
 * step goes to the auth process (it may hash or query the directory) with
 * the connection paused. */
#include <openssl/crypto.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "auth/authc.h"
#include "auth/sasl.h"
#include "core/config.h"
#include "core/env.h"
#include "core/log.h"
#include "core/util.h"
#include "net/conn.h"
#include "pop3/internal.h"
#include "pop3/login.h"

void pop3_sasl_clear(struct pop3_login *l)
{
	authc_sasl_free(&l->sasl);
	if (l->conn != NULL)
		conn_set_max_line(l->conn, POP3_MAX_LINE);
}

static void sasl_done(void *arg)
{
	struct pop3_login *l = arg;

	if (pop3_login_job_done(l))
		return;
	enum sasl_step r = authc_sasl_result(l->sasl);
	if (r == SASL_CONTINUE) {
		conn_printf(l->conn, "+ %s\r\n", authc_sasl_challenge(l->sasl));
		conn_resume(l->conn);
		return;
	}
	/* The exchange is over: copy what we still need, then end it. */
	char user[DIR_ADDRESS_MAX + 1] = "", name[DIR_ADDRESS_MAX + 1] = "";
	const char *why = authc_sasl_error(l->sasl);
	char error[160];
	snprintf(error, sizeof(error), "%s", why != NULL ? why : "unknown");
	if (authc_sasl_user(l->sasl) != NULL)
		snprintf(user, sizeof(user), "%s", authc_sasl_user(l->sasl));
	if (authc_sasl_login_name(l->sasl) != NULL)
		snprintf(name, sizeof(name), "%s", authc_sasl_login_name(l->sasl));
	char mech[32];
	snprintf(mech, sizeof(mech), "%s", authc_sasl_mech_name(l->sasl));
	uint8_t ticket[TICKET_SIZE] = {0};
	if (authc_sasl_ticket(l->sasl) != NULL)
		memcpy(ticket, authc_sasl_ticket(l->sasl), sizeof(ticket));
	pop3_sasl_clear(l);

	switch (r) {
	case SASL_OK:
		log_info("sid=%s event=sasl mech=%s user=%s", l->sid, mech, user);
		pop3_login_succeeded(l, user, ticket);
		break;
	case SASL_LOCKED:
		pop3_login_locked(l, user);
		break;
	case SASL_TEMPFAIL:
		pop3_login_tempfail(l, error);
		break;
	case SASL_MALFORMED:
		/* Not a guess at a password: answered at once, but it still
		 * counts towards the failures of this connection. */
		log_info("sid=%s event=sasl-malformed mech=%s error=\"%s\" rip=%s", l->sid, mech,
		         error, conn_peer(l->conn));
		pop3_login_failed(l, name);
		break;
	case SASL_FAILED:
	case SASL_CONTINUE:
		pop3_login_failed(l, name);
		break;
	}
}

static void sasl_next(struct pop3_login *l, const char *in)
{
	l->busy = true;
	l->asked_ms = now_ms();
	conn_pause(l->conn);
	/* The line is copied into the request, and wiped there once sent. */
	authc_sasl_step(l->sasl, in, sasl_done, l);
}

void pop3_sasl_line(struct pop3_login *l, char *line, size_t len)
{
	if (len == 1 && line[0] == '*') {
		/* RFC 5034 §4: the client cancels; we reject the AUTH. */
		pop3_sasl_clear(l);
		conn_printf(l->conn, "-ERR [AUTH] authentication cancelled\r\n");
		return;
	}
	if (strlen(line) != len) { /* a NUL can never be base64 */
		pop3_sasl_clear(l);
		/* No line may run until the failure is answered: the reply
		 * comes after the delay, and a command read meanwhile (a new
		 * AUTH) would have its job running when the delay ends. */
		conn_pause(l->conn);
		l->asked_ms = now_ms();
		pop3_login_failed(l, "");
		return;
	}
	sasl_next(l, line);
	/* The answer may carry a password (PLAIN, LOGIN). */
	OPENSSL_cleanse(line, len);
}

int pop3_login_auth(struct pop3_login *l, const struct pop3_cmd *cmd)
{
	bool plain_ok = pop3_plaintext_allowed(l->env, l->conn);
	unsigned char cb[32];
	bool have_cb = conn_tls_exporter(l->conn, cb) == 0;

	if (cmd->argc == 0) {
		/* No mechanism: list them (the RFC 1734 form clients still use). */
		char list[256];
		snprintf(list, sizeof(list), "%s", sasl_mechanisms(plain_ok, have_cb));
		conn_printf(l->conn, "+OK supported mechanisms follow\r\n");
		for (char *m = strtok(list, " "); m != NULL; m = strtok(NULL, " "))
			conn_printf(l->conn, "%s\r\n", m);
		conn_printf(l->conn, ".\r\n");
		return 0;
	}
	const char *mech = cmd->argv[0];
	if (!sasl_mech_allowed(mech, plain_ok, have_cb)) {
		if (!plain_ok && sasl_mech_allowed(mech, true, have_cb))
			conn_printf(l->conn, "-ERR [AUTH] %s needs TLS here: use STLS first\r\n",
			            mech);
		else
			conn_printf(l->conn, "-ERR unsupported authentication mechanism\r\n");
		return -1;
	}
	const char *error;
	l->sasl = authc_sasl_new(l->env->auth, mech, have_cb ? cb : NULL, have_cb ? sizeof(cb) : 0,
	                         &error);
	if (l->sasl == NULL) {
		conn_printf(l->conn, "-ERR %s\r\n", error);
		return -1;
	}
	/* Challenge answers may be longer than a command line. */
	conn_set_max_line(l->conn, SASL_B64_MAX + 2);
	sasl_next(l, cmd->argc == 2 ? cmd->argv[1] : NULL);
	return 0;
}
