/* The SMTP/LMTP command table and the handlers. The dispatcher in
 * session.c has already checked syntax, protocol and state when a handler
 * runs. */
#include <stdlib.h>
#include <string.h>

#include "core/config.h"
#include "core/log.h"
#include "core/text.h"
#include "core/util.h"
#include "net/conn.h"
#include "net/tls.h"
#include "smtp/internal.h"

static const struct smtp_command commands[] = {
    {SMTP_VERB_EHLO, SMTP_ST_ANY, true, false, smtp_cmd_helo},
    {SMTP_VERB_HELO, SMTP_ST_ANY, true, false, smtp_cmd_helo},
    {SMTP_VERB_LHLO, SMTP_ST_ANY, false, true, smtp_cmd_helo},
    {SMTP_VERB_MAIL, SMTP_ST_READY, true, true, smtp_cmd_mail},
    {SMTP_VERB_RCPT, SMTP_ST_MAIL | SMTP_ST_RCPT, true, true, smtp_cmd_rcpt},
    {SMTP_VERB_DATA, SMTP_ST_RCPT, true, true, smtp_cmd_data},
    {SMTP_VERB_BDAT, SMTP_ST_RCPT, true, true, smtp_cmd_bdat},
    {SMTP_VERB_RSET, SMTP_ST_ANY, true, true, smtp_cmd_rset},
    {SMTP_VERB_NOOP, SMTP_ST_ANY, true, true, smtp_cmd_noop},
    {SMTP_VERB_QUIT, SMTP_ST_ANY, true, true, smtp_cmd_quit},
    {SMTP_VERB_VRFY, SMTP_ST_ANY, true, true, smtp_cmd_vrfy},
    {SMTP_VERB_HELP, SMTP_ST_ANY, true, true, smtp_cmd_help},
    {SMTP_VERB_STARTTLS, SMTP_ST_ANY, true, true, smtp_cmd_starttls},
    {SMTP_VERB_AUTH, SMTP_ST_READY, true, true, smtp_cmd_auth},
};

const struct smtp_command *smtp_command_find(enum smtp_verb verb)
{
	for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++)
		if (commands[i].verb == verb)
			return &commands[i];
	return NULL;
}

int smtp_cmd_helo(struct smtp_session *s, struct smtp_cmd *cmd)
{
	const struct config *cfg = s->env->cfg;

	/* RFC 5321 §4.1.4: a new EHLO/HELO resets any transaction. */
	smtp_txn_reset(s);
	s->state = SMTP_ST_READY;
	s->esmtp = cmd->verb != SMTP_VERB_HELO;
	snprintf(s->helo, sizeof(s->helo), "%s", cmd->arg);
	if (cmd->verb == SMTP_VERB_HELO) {
		smtp_reply(s, "250 %s", cfg->hostname);
		return 0;
	}
	smtp_reply(s, "250-%s", cfg->hostname);
	smtp_reply(s, "250-PIPELINING");
	smtp_reply(s, "250-SIZE %llu", (unsigned long long)cfg->max_message_size);
	smtp_reply(s, "250-8BITMIME");
	smtp_reply(s, "250-SMTPUTF8");
	smtp_reply(s, "250-ENHANCEDSTATUSCODES");
	if (s->env->tls != NULL && !conn_is_tls(s->conn) && !s->mail_side)
		smtp_reply(s, "250-STARTTLS");
	const char *mechs = smtp_auth_mechanisms(s);
	if (mechs[0] != '\0')
		smtp_reply(s, "250-AUTH %s", mechs);
	smtp_reply(s, "250 CHUNKING");
	return 0;
}

int smtp_cmd_mail(struct smtp_session *s, struct smtp_cmd *cmd)
{
	const struct config *cfg = s->env->cfg;

	if (cmd->body == SMTP_BODY_BINARYMIME) {
		/* Not advertised: the store keeps LF line ends and could not
		 * return binary content byte-exact. */
		smtp_reply(s, "555 5.5.4 BODY=BINARYMIME is not supported");
		return -1;
	}
	if (cmd->size_given && cmd->size > cfg->max_message_size) {
		smtp_reply(s, "552 5.3.4 message size exceeds the limit of %llu octets",
		           (unsigned long long)cfg->max_message_size);
		return -1;
	}
	s->txn = xcalloc(1, sizeof(*s->txn));
	s->txn->sender = cmd->path;
	s->txn->smtputf8 = cmd->smtputf8;
	s->state = SMTP_ST_MAIL;
	/* The client has started to send mail: smtp_first_mail_timeout no
	 * longer applies, only the idle and per-line timeouts do. */
	conn_set_deadline(s->conn, 0);
	smtp_reply(s, "250 2.1.0 sender ok");
	return 0;
}

int smtp_cmd_rcpt(struct smtp_session *s, struct smtp_cmd *cmd)
{
	if (s->txn->nrcpts >= SMTP_MAX_RCPTS) {
		smtp_reply(s, "452 4.5.3 too many recipients (limit %d)", SMTP_MAX_RCPTS);
		return 0; /* RFC 5321 §4.5.3.1.10: not an error of the client's */
	}
	/* The directory and the quota are looked up on the pool; the reply
	 * comes when that is done, and no command is read meanwhile. */
	s->busy = true;
	conn_pause(s->conn);
	smtp_rcpt_start(s, &cmd->path);
	return 0;
}

int smtp_cmd_data(struct smtp_session *s, struct smtp_cmd *cmd)
{
	(void)cmd;
	struct smtp_txn *t = s->txn;

	if (t->bdat) {
		smtp_reply(s, "503 5.5.1 DATA cannot follow BDAT in one transaction");
		return -1;
	}
	if (smtp_begin_message(s) < 0) {
		smtp_txn_reset(s);
		return 0;
	}
	smtp_data_init(&t->data, s->env->cfg->max_message_size);
	smtp_reply(s, "354 2.0.0 send the message, end with <CRLF>.<CRLF>");
	smtp_start_data(s);
	return 0;
}

int smtp_cmd_bdat(struct smtp_session *s, struct smtp_cmd *cmd)
{
	struct smtp_txn *t = s->txn;

	if (!t->bdat) {
		/* The first chunk: open the spool file. If that fails the
		 * chunk is still read (RFC 3030 has no other way to stay in
		 * step) and the message refused at its end. */
		t->bdat = true;
		smtp_bdat_init(&t->data, s->env->cfg->max_message_size);
		if (smtp_begin_message(s) < 0)
			t->failed = true;
	}
	t->bdat_left = cmd->bdat_size;
	t->bdat_last = cmd->bdat_last;
	if (t->bdat_left > 0) {
		smtp_start_data(s);
	} else if (t->bdat_last) {
		/* "BDAT 0 LAST" ends the message with no more octets. */
		smtp_bdat_finish(&t->data);
		smtp_data_end(s);
	} else {
		smtp_reply(s, "250 2.0.0 0 octets received");
	}
	return 0;
}

int smtp_cmd_rset(struct smtp_session *s, struct smtp_cmd *cmd)
{
	(void)cmd;
	smtp_txn_reset(s);
	smtp_reply(s, "250 2.0.0 ok");
	return 0;
}

int smtp_cmd_noop(struct smtp_session *s, struct smtp_cmd *cmd)
{
	(void)cmd;
	smtp_reply(s, "250 2.0.0 ok");
	return 0;
}

int smtp_cmd_quit(struct smtp_session *s, struct smtp_cmd *cmd)
{
	(void)cmd;
	smtp_reply(s, "221 2.0.0 %s closing connection", s->env->cfg->hostname);
	log_info("sid=%s event=disconnect reason=quit messages=%u", s->sid, s->messages);
	conn_close(s->conn);
	return 0;
}

int smtp_cmd_vrfy(struct smtp_session *s, struct smtp_cmd *cmd)
{
	(void)cmd;
	/* RFC 5321 §3.5.3: 252 when we will not verify but would accept. */
	smtp_reply(s, "252 2.5.0 VRFY is disabled; send the message and delivery will be "
	              "attempted");
	return 0;
}

int smtp_cmd_help(struct smtp_session *s, struct smtp_cmd *cmd)
{
	(void)cmd;
	smtp_reply(s, "214 2.0.0 commands: %s MAIL RCPT DATA BDAT RSET NOOP QUIT VRFY HELP",
	           s->lmtp ? "LHLO" : "EHLO HELO");
	return 0;
}

int smtp_cmd_starttls(struct smtp_session *s, struct smtp_cmd *cmd)
{
	(void)cmd;
	char tls[96];
	if (conn_tls_info(s->conn, tls, sizeof(tls))[0] != '\0') {
		smtp_reply(s, "503 5.5.1 TLS is already active");
		return -1;
	}
	if (s->mail_side) {
		/* TLS is the login worker's: a mail worker never handshakes. */
		smtp_reply(s, "503 5.5.1 STARTTLS must come before the first MAIL");
		return -1;
	}
	SSL *ssl = s->env->tls != NULL ? tls_ssl_new(s->env->tls) : NULL;
	if (ssl == NULL) {
		smtp_reply(s, "502 5.5.1 STARTTLS is not available on this server");
		return -1;
	}
	/* RFC 3207 §4.2: forget everything learnt before TLS, EHLO included. */
	smtp_txn_reset(s);
	s->auth_user[0] = '\0';
	s->state = SMTP_ST_GREETED;
	s->esmtp = false;
	s->helo[0] = '\0';
	smtp_reply(s, "220 2.0.0 ready to start TLS");
	conn_starttls(s->conn, ssl);
	return 0;
}

int smtp_cmd_not_yet(struct smtp_session *s, struct smtp_cmd *cmd)
{
	smtp_reply(s, "502 5.5.1 %s is not available on this server", smtp_verb_name(cmd->verb));
	return -1;
}
