/* The SMTP/LMTP session: greeting, dispatch through the command table, the
 * error limit, timeouts, shutdown, the hand-off, and the message stream.
 *
 * A session runs in two processes (DESIGN §3). A login worker greets the
 * client and answers EHLO, STARTTLS and AUTH; the first MAIL it accepts
 * hands the connection, with that MAIL put back in front of its input, to
 * a mail worker, which starts the rest of the session from the hand-off
 * record alone and serves every transaction until QUIT.
 *
 * The message stream is read in the connection's raw mode: DATA through the
 * dot-stuffing decoder until <CRLF>.<CRLF>, BDAT exactly the announced
 * octets. Decoded octets go straight to the spool file, so memory per
 * session stays bounded by the connection's read-ahead whatever the size of
 * the message. Whatever follows the end of the data is read as commands
 * again (PIPELINING, RFC 2920). */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <event2/event.h>

#include "core/config.h"
#include "core/log.h"
#include "core/text.h"
#include "core/util.h"
#include "net/conn.h"
#include "smtp/internal.h"
#include "smtp/smtp.h"

/* Octets decoded per step of the message stream. */
#define SMTP_DATA_STEP (64 * 1024)

void smtp_reply(struct smtp_session *s, const char *fmt, ...)
{
	va_list ap;
	char line[SMTP_MAX_LINE];

	va_start(ap, fmt);
	int n = vsnprintf(line, sizeof(line) - 2, fmt, ap);
	va_end(ap);
	if (n < 0)
		return;
	size_t len = (size_t)n < sizeof(line) - 2 ? (size_t)n : sizeof(line) - 3;
	line[len++] = '\r';
	line[len++] = '\n';
	conn_write(s->conn, line, len);
}

void smtp_txn_reset(struct smtp_session *s)
{
	struct smtp_txn *t = s->txn;

	if (t != NULL) {
		delivery_free(&t->dlv);
		for (unsigned i = 0; i < t->nmailboxes; i++)
			free(t->mailboxes[i].path);
		x_free(&s->txn);
	}
	if (s->state != SMTP_ST_GREETED)
		s->state = SMTP_ST_READY;
}

static void session_free(struct smtp_session *s)
{
	smtp_txn_reset(s);
	smtp_sasl_clear(s);
	if (s->auth_delay != NULL)
		event_free(s->auth_delay);
	env_client_remove(s->env, &s->node);
	free(s);
}

static void say_shutdown(struct smtp_session *s)
{
	smtp_reply(s, "421 4.3.2 %s service shutting down, closing connection",
	           s->env->cfg->hostname);
	log_info("sid=%s event=disconnect reason=shutdown", s->sid);
	conn_close(s->conn);
}

/* A command or a pool job is done: read the next command, unless the server
 * is stopping. */
void smtp_session_resume(struct smtp_session *s)
{
	s->busy = false;
	if (s->conn_gone) {
		session_free(s);
		return;
	}
	if (s->stop_pending) {
		say_shutdown(s);
		return;
	}
	conn_resume(s->conn);
}

void smtp_count_error(struct smtp_session *s)
{
	if (++s->errors >= SMTP_MAX_ERRORS) {
		smtp_reply(s, "421 4.7.0 %s too many errors, closing connection",
		           s->env->cfg->hostname);
		log_info("sid=%s event=disconnect reason=too-many-errors rip=%s", s->sid,
		         conn_peer(s->conn));
		conn_close(s->conn);
	}
}

static void hand_off(struct smtp_session *s, const char *line, size_t len);

static void session_line(void *ctx, char *line, size_t len)
{
	struct smtp_session *s = ctx;
	struct smtp_cmd cmd;
	bool utf8 = s->txn != NULL && s->txn->smtputf8;
	char mail[SMTP_MAX_LINE]; /* the line as sent, should it hand off */

	if (s->sasl != NULL) {
		smtp_sasl_line(s, line, len);
		return;
	}
	/* Any line that parses fits (SMTP_PARSE_TOO_LONG beyond). */
	if (!s->mail_side && len < sizeof(mail))
		memcpy(mail, line, len + 1);
	enum smtp_parse_result r = smtp_parse(line, len, utf8, &cmd);
	if (r != SMTP_PARSE_OK) {
		unsigned code;
		const char *enhanced;
		smtp_parse_reply(r, cmd.verb, cmd.addr_error, &code, &enhanced);
		const char *why = r == SMTP_PARSE_ADDRESS ? smtp_addr_strerror(cmd.addr_error)
		                                          : smtp_parse_strerror(r);
		smtp_reply(s, "%u %s %s", code, enhanced, why);
		if (cmd.verb == SMTP_VERB_BDAT) {
			/* RFC 3030 cannot resynchronise after a bad BDAT: we do
			 * not know how many octets follow. */
			conn_close(s->conn);
			return;
		}
		smtp_count_error(s);
		return;
	}
	const struct smtp_command *row = smtp_command_find(cmd.verb);
	if (row == NULL || !(s->lmtp ? row->lmtp : row->smtp)) {
		smtp_reply(s, "500 5.5.1 %s is not a command of this %s server",
		           smtp_verb_name(cmd.verb), s->lmtp ? "LMTP" : "SMTP");
		smtp_count_error(s);
		return;
	}
	if (!(row->states & s->state)) {
		if (s->state == SMTP_ST_GREETED)
			smtp_reply(s, "503 5.5.1 send %s first", s->lmtp ? "LHLO" : "EHLO or HELO");
		else if (cmd.verb == SMTP_VERB_AUTH)
			smtp_reply(s, "503 5.5.1 AUTH is not allowed during a mail transaction");
		else if (cmd.verb == SMTP_VERB_MAIL)
			smtp_reply(s, "503 5.5.1 a transaction is already under way (send RSET)");
		else if (s->state == SMTP_ST_READY)
			smtp_reply(s, "503 5.5.1 send MAIL first");
		else
			smtp_reply(s, "554 5.5.1 no valid recipients");
		if (cmd.verb == SMTP_VERB_BDAT) {
			/* The chunk's octets follow whatever we answer; skip
			 * them by closing rather than reading them as commands. */
			conn_close(s->conn);
			return;
		}
		smtp_count_error(s);
		return;
	}
	if (cmd.verb == SMTP_VERB_MAIL && !s->mail_side) {
		hand_off(s, mail, len);
		return;
	}
	if (row->run(s, &cmd) < 0)
		smtp_count_error(s);
}

static void session_too_long(void *ctx)
{
	struct smtp_session *s = ctx;
	smtp_reply(s, "500 5.5.2 line too long (limit %d octets)", SMTP_MAX_LINE);
	smtp_count_error(s);
}

/* ---- the message stream ---- */

void smtp_data_end(struct smtp_session *s)
{
	struct smtp_txn *t = s->txn;

	conn_set_raw(s->conn, false);
	conn_set_idle_timeout(s->conn, SMTP_COMMAND_TIMEOUT_MS);
	char reply[SMTP_MAX_LINE];
	if (t->data.bare_eol) {
		snprintf(reply, sizeof(reply),
		         "550 5.6.0 bare CR or LF in the message; lines must end in CRLF");
		log_info("sid=%s event=refused reason=bare-line-end size=%llu", s->sid,
		         (unsigned long long)t->data.size);
	} else if (t->data.too_big) {
		snprintf(reply, sizeof(reply),
		         "552 5.3.4 message exceeds the size limit of %llu octets",
		         (unsigned long long)s->env->cfg->max_message_size);
		log_info("sid=%s event=refused reason=too-big", s->sid);
	} else if (t->write_error != NULL || t->failed) {
		snprintf(reply, sizeof(reply),
		         "451 4.3.0 cannot store the message now, try again later");
		log_error("sid=%s event=spool-error error=\"%s\"", s->sid,
		          t->write_error ? t->write_error : "earlier chunk refused");
	} else {
		/* Durable first, reply after: the commit job answers. */
		s->busy = true;
		conn_pause(s->conn);
		smtp_commit_start(s);
		return;
	}
	/* LMTP (RFC 2033 §4.2): one reply per accepted recipient, failures too. */
	for (unsigned i = 0; i < (s->lmtp ? t->nrcpts : 1); i++)
		smtp_reply(s, "%s", reply);
	smtp_txn_reset(s);
}

static void store_decoded(struct smtp_session *s, const char *buf, size_t len)
{
	struct smtp_txn *t = s->txn;
	if (len > 0 && t->dlv != NULL && t->write_error == NULL && !t->data.bare_eol &&
	    !t->data.too_big)
		(void)delivery_write(t->dlv, buf, len, &t->write_error);
}

static size_t session_data(void *ctx, const char *buf, size_t len)
{
	static char out[SMTP_DATA_STEP]; /* one loop per process: one buffer */
	struct smtp_session *s = ctx;
	struct smtp_txn *t = s->txn;
	size_t used = 0, produced;

	if (len > sizeof(out))
		len = sizeof(out);
	if (t->bdat) {
		if (len > t->bdat_left)
			len = (size_t)t->bdat_left;
		produced = smtp_bdat_feed(&t->data, buf, len, out);
		used = len;
		t->bdat_left -= len;
		store_decoded(s, out, produced);
		if (t->bdat_left > 0)
			return used;
		if (!t->bdat_last) {
			conn_set_raw(s->conn, false);
			conn_set_idle_timeout(s->conn, SMTP_COMMAND_TIMEOUT_MS);
			if (t->data.too_big || t->data.bare_eol || t->write_error != NULL)
				t->failed = true;
			smtp_reply(s, "250 2.0.0 %llu octets received",
			           (unsigned long long)t->data.size);
			return used;
		}
		smtp_bdat_finish(&t->data);
		smtp_data_end(s);
		return used;
	}
	smtp_data_feed(&t->data, buf, len, out, &used, &produced);
	store_decoded(s, out, produced);
	if (t->data.done)
		smtp_data_end(s);
	return used;
}

static const char *rfc5322_date(char *buf, size_t size)
{
	time_t now = time(NULL);
	struct tm tm;
	localtime_r(&now, &tm);
	strftime(buf, size, "%a, %d %b %Y %H:%M:%S %z", &tm);
	return buf;
}

/* The spool file and the two headers we add (RFC 5321 §4.4): Return-Path
 * with the reverse path, and a Received line with the session's facts. */
int smtp_begin_message(struct smtp_session *s)
{
	struct smtp_txn *t = s->txn;
	const struct config *cfg = s->env->cfg;
	const char *error;
	char date[64], helo[SMTP_DOMAIN_MAX + 1];

	if (delivery_begin(cfg->mail_root, cfg->hostname, &t->dlv, &error) < 0) {
		log_error("sid=%s event=spool-error error=\"%s\"", s->sid, error);
		smtp_reply(s, "451 4.3.0 cannot accept the message now, try again later");
		return -1;
	}
	/* TLS may have ended in the login worker, which relays. */
	char proto[16], tlsinfo[96], using[128] = "";
	bool tls = conn_tls_info(s->conn, tlsinfo, sizeof(tlsinfo))[0] != '\0';
	/* RFC 3848 protocol names (ESMTP, ESMTPS, ESMTPA, LMTP, ...), with RFC
	 * 6531's UTF8SMTP/UTF8LMTP for SMTPUTF8 transactions. */
	snprintf(proto, sizeof(proto), "%s%s%s%s", t->smtputf8 ? "UTF8" : "",
	         s->lmtp       ? "LMTP"
	         : t->smtputf8 ? "SMTP"
	         : s->esmtp    ? "ESMTP"
	                       : "SMTP",
	         tls ? "S" : "", s->auth_user[0] != '\0' ? "A" : "");
	if (tls)
		snprintf(using, sizeof(using), "\n\t(using %s)", tlsinfo);
	char *hdr =
	    xasprintf("Return-Path: <%s>\n"
	              "Received: from %s ([%s])%s\n"
	              "\tby %s (Pillar) with %s id %s.%u%s%s%s;\n"
	              "\t%s\n",
	              t->sender.text, text_log_safe(s->helo, helo, sizeof(helo)),
	              conn_peer(s->conn), using, cfg->hostname, proto, s->sid, s->messages + 1,
	              t->nrcpts == 1 ? "\n\tfor <" : "", t->nrcpts == 1 ? t->rcpts[0].address : "",
	              t->nrcpts == 1 ? ">" : "", rfc5322_date(date, sizeof(date)));
	(void)delivery_write(t->dlv, hdr, strlen(hdr), &t->write_error);
	free(hdr);
	return 0;
}

void smtp_start_data(struct smtp_session *s)
{
	conn_set_raw(s->conn, true);
	conn_set_idle_timeout(s->conn, SMTP_DATA_TIMEOUT_MS);
}

/* ---- connection events and lifecycle ---- */

static void session_timeout(void *ctx)
{
	struct smtp_session *s = ctx;
	smtp_reply(s, "421 4.4.2 %s timeout, closing connection", s->env->cfg->hostname);
	log_info("sid=%s event=disconnect reason=timeout rip=%s", s->sid, conn_peer(s->conn));
}

static void session_closed(void *ctx, enum conn_close_reason why)
{
	struct smtp_session *s = ctx;

	if (why == CONN_CLOSE_TLS) {
		char err[160];
		log_info("sid=%s event=disconnect reason=tls-failed rip=%s error=\"%s\"", s->sid,
		         conn_peer(s->conn), conn_tls_error(s->conn, err, sizeof(err)));
	} else if (why != CONN_CLOSE_DONE && why != CONN_CLOSE_TIMEOUT) {
		log_info("sid=%s event=disconnect reason=%s rip=%s%s", s->sid,
		         why == CONN_CLOSE_FLOOD ? "line-flood" : "client-gone", conn_peer(s->conn),
		         s->txn != NULL && s->txn->dlv != NULL ? " message=abandoned" : "");
	}
	s->conn = NULL;
	if (s->busy) {
		s->conn_gone = true;
		return;
	}
	session_free(s);
}

static const struct conn_handler session_handler = {
    .line = session_line,
    .data = session_data,
    .line_too_long = session_too_long,
    .drained = NULL,
    .timeout = session_timeout,
    .closed = session_closed,
};

static void session_shutdown(struct env_client *node)
{
	struct smtp_session *s = (struct smtp_session *)node;
	if (s->conn == NULL || conn_closing(s->conn))
		return;
	if (s->busy) {
		/* A commit is running: its replies go out, then 421. */
		s->stop_pending = true;
		return;
	}
	/* Mid-message or between commands: nothing was acknowledged that is
	 * not on disk, so the client simply retries later. */
	say_shutdown(s);
}

static void session_info(struct env_client *node, struct env_client_info *out)
{
	struct smtp_session *s = (struct smtp_session *)node;
	out->sid = s->sid;
	out->proto = s->lmtp ? "lmtp" : "smtp";
	out->user = s->auth_user;
	conn_describe(s->conn, out);
	out->since = s->since;
}

/* Dropped like a client that went away: a message not yet acknowledged is
 * abandoned (the sender retries); one being committed finishes first. */
static void session_kick(struct env_client *node)
{
	struct smtp_session *s = (struct smtp_session *)node;
	if (s->conn == NULL || conn_closing(s->conn))
		return;
	log_info("sid=%s event=disconnect reason=kicked rip=%s", s->sid, conn_peer(s->conn));
	conn_abort(s->conn);
}

static struct smtp_session *session_new(struct worker_env *env, struct conn *conn, bool lmtp)
{
	struct smtp_session *s = xcalloc(1, sizeof(*s));

	s->env = env;
	s->conn = conn;
	s->lmtp = lmtp;
	s->node.shutdown = session_shutdown;
	s->node.info = session_info;
	s->node.kick = session_kick;
	env_client_add(env, &s->node);
	conn_set_handler(conn, &session_handler, s, SMTP_MAX_LINE);
	conn_set_idle_timeout(conn, SMTP_COMMAND_TIMEOUT_MS);
	conn_set_line_timeout(conn, SMTP_COMMAND_TIMEOUT_MS);
	return s;
}

/* The idle timeout alone would let a client that sends a byte now and then
 * hold the connection for ever without sending mail: until the first MAIL
 * is accepted there is an absolute deadline too, counted from the
 * connection, which input never extends (smtp_cmd_mail cancels it). */
static void first_mail_deadline(struct smtp_session *s)
{
	uint64_t end = s->connected_ms + s->env->cfg->smtp_first_mail_timeout;
	uint64_t now = now_ms();

	conn_set_deadline(s->conn, end > now ? end - now : 1);
}

/* A valid MAIL in a login worker: the connection goes to a mail worker with
 * the line put back for it to answer, and this side ends. */
static void hand_off(struct smtp_session *s, const char *line, size_t len)
{
	struct session_handoff h;

	memset(&h, 0, sizeof(h));
	h.env = s->env;
	h.conn = s->conn;
	h.proto = s->lmtp ? HANDOFF_LMTP : HANDOFF_SMTP;
	memcpy(h.sid, s->sid, sizeof(h.sid));
	snprintf(h.user, sizeof(h.user), "%s", s->auth_user);
	memcpy(h.ticket, s->auth_ticket, sizeof(h.ticket));
	snprintf(h.helo, sizeof(h.helo), "%s", s->helo);
	h.esmtp = s->esmtp;
	h.errors = s->errors;
	h.connected_ms = s->connected_ms;
	h.since = s->since;
	conn_unread(s->conn, line, len);
	conn_pause(s->conn);
	if (s->env->handoff == NULL) {
		s->conn = NULL;
		smtp_session_start(&h);
	} else if (s->env->handoff(s->env, &h) < 0) {
		log_error("sid=%s event=handoff-failed rip=%s", s->sid, conn_peer(s->conn));
		smtp_reply(s, "421 4.3.0 %s cannot take mail now, try again later",
		           s->env->cfg->hostname);
		conn_close(s->conn);
		return;
	}
	s->conn = NULL;
	session_free(s);
}

void smtp_session_start(const struct session_handoff *h)
{
	struct smtp_session *s = session_new(h->env, h->conn, h->proto == HANDOFF_LMTP);

	s->mail_side = true;
	s->state = SMTP_ST_READY;
	memcpy(s->sid, h->sid, sizeof(s->sid));
	memcpy(s->auth_user, h->user, sizeof(s->auth_user) - 1); /* a whole address fits */
	snprintf(s->helo, sizeof(s->helo), "%s", h->helo);
	s->esmtp = h->esmtp;
	s->errors = h->errors;
	s->connected_ms = h->connected_ms;
	s->since = h->since;
	first_mail_deadline(s);
	conn_resume(s->conn);
}

void smtp_accept(struct worker_env *env, struct conn *conn, bool lmtp)
{
	struct smtp_session *s = session_new(env, conn, lmtp);

	s->state = SMTP_ST_GREETED;
	random_token(s->sid, SMTP_SID_LEN);
	s->since = (int64_t)time(NULL);
	s->connected_ms = now_ms();
	first_mail_deadline(s);
	log_info("sid=%s event=connect proto=%s rip=%s", s->sid, lmtp ? "lmtp" : "smtp",
	         conn_peer(conn));
	smtp_reply(s, "220 %s %s Pillar ready", env->cfg->hostname, lmtp ? "LMTP" : "ESMTP");
	conn_start(conn);
}
