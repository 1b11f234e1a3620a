/* The mail side of a POP3 connection: TRANSACTION and UPDATE states
 * (RFC 1939 §5, §6) over a Maildir snapshot.
 *
 * Long replies (RETR, TOP, LIST, UIDL) are produced by a pump that writes
 * until the output buffer is full and resumes when it drains, so a session
 * holds at most CONN_OUTPUT_HIGH of output whatever the mailbox size, and no
 * further command is read until the reply is complete. Deletions are only
 * marks until QUIT; a session that ends any other way deletes nothing. */
#include <errno.h>
#include <event2/buffer.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/uio.h>
#include <unistd.h>

#include "core/config.h"
#include "core/env.h"
#include "core/log.h"
#include "core/pool.h"
#include "core/util.h"
#include "directory/lock.h"
#include "net/conn.h"
#include "pop3/internal.h"
#include "pop3/retr.h"
#include "store/maildir.h"

/* LIST/UIDL lines written per step of the listing pump. */
#define LISTING_STEP 512

enum pump {
	PUMP_NONE,
	PUMP_MESSAGE, /* RETR or TOP */
	PUMP_LIST,
	PUMP_UIDL,
};

struct pop3_session {
	struct env_client node; /* first: the env hands us back by it */
	struct worker_env *env;
	struct conn *conn;
	struct maildir *md;
	int lock_fd;
	struct dir_session_lock *dir_lock; /* across servers; NULL with SQLite */
	bool *deleted;                     /* per message, until QUIT */
	size_t ndeleted;
	uint64_t deleted_octets;

	enum pump pump;
	struct pop3_retr retr; /* the message being sent */
	size_t cursor;         /* next message of a listing */

	bool opening;      /* the mailbox scan runs on the pool */
	bool expunging;    /* QUIT's removals and fsyncs run on the pool */
	bool conn_gone;    /* closed meanwhile: free when the job returns */
	bool stop_pending; /* shutdown arrived in the middle of a reply */
	bool open_failed;
	int open_result; /* of maildir_lock: 0 taken, 1 busy, -1 error */
	const char *open_error;
	int quit_result; /* of maildir_expunge */
	size_t quit_failed;
	const char *quit_error;
	char quit_error_buf[256];
	char *path;

	unsigned bad_commands;
	unsigned retrieved;
	uint64_t octets_sent;
	uint64_t connected_ms;
	int64_t since;
	char sid[POP3_SID_LEN + 1];
	char user[DIR_ADDRESS_MAX + 1];
};

/* Releasing the lock across servers is a query: on the pool. */
static void session_unlock_work(void *arg)
{
	struct dir_session_lock *lock = arg;
	dir_session_unlock(&lock);
}

static void session_unlock_done(void *arg)
{
	(void)arg;
}

static void session_free(struct pop3_session *s)
{
	env_client_remove(s->env, &s->node);
	pop3_retr_end(&s->retr);
	maildir_free(&s->md);
	/* Closing the lock file releases the mailbox for the next session. */
	if (s->lock_fd >= 0)
		close(s->lock_fd);
	if (s->dir_lock != NULL)
		pool_submit(s->env->pool, session_unlock_work, session_unlock_done, s->dir_lock);
	free(s->deleted);
	free(s->path);
	free(s);
}

static void session_say_shutdown(struct pop3_session *s)
{
	conn_printf(s->conn, "-ERR [SYS/TEMP] server shutting down\r\n");
	log_info("sid=%s event=disconnect reason=shutdown user=%s retr=%u deleted=0", s->sid,
	         s->user, s->retrieved);
	conn_close(s->conn);
}

static void session_shutdown(struct env_client *node)
{
	struct pop3_session *s = (struct pop3_session *)node;
	if (s->conn == NULL || conn_closing(s->conn))
		return;
	if (s->opening || s->expunging || s->pump != PUMP_NONE)
		s->stop_pending = true;
	else
		session_say_shutdown(s);
}

/* A reply is complete: take the next command, or stop if asked to. */
static void session_reply_done(struct pop3_session *s)
{
	if (s->stop_pending) {
		session_say_shutdown(s);
		return;
	}
	conn_resume(s->conn);
}

/* ---- the output pump ---- */

static void pump_message(struct pop3_session *s)
{
	struct evbuffer *out = conn_output(s->conn);

	while (conn_output_len(s->conn) < CONN_OUTPUT_HIGH) {
		const char *error;
		size_t added;
		enum pop3_retr_step step = pop3_retr_step(&s->retr, out, &added, &error);

		s->octets_sent += added;
		if (step == POP3_RETR_FAILED) {
			/* The +OK is out; the only honest ending is to drop. */
			log_error("sid=%s event=read-error user=%s error=\"%s\"", s->sid, s->user,
			          error);
			conn_abort(s->conn);
			return;
		}
		if (step == POP3_RETR_END) {
			pop3_retr_end(&s->retr);
			s->pump = PUMP_NONE;
			session_reply_done(s);
			return;
		}
	}
}

static void pump_listing(struct pop3_session *s)
{
	size_t count = maildir_count(s->md);

	while (conn_output_len(s->conn) < CONN_OUTPUT_HIGH) {
		for (unsigned step = 0; step < LISTING_STEP && s->cursor < count; s->cursor++) {
			size_t i = s->cursor;
			if (s->deleted[i])
				continue;
			if (s->pump == PUMP_LIST)
				conn_printf(s->conn, "%zu %" PRIu64 "\r\n", i + 1,
				            maildir_msg_vsize(s->md, i));
			else
				conn_printf(s->conn, "%zu %s\r\n", i + 1,
				            maildir_msg_uidl(s->md, i));
			step++;
		}
		if (s->cursor >= count) {
			conn_write(s->conn, ".\r\n", 3);
			s->pump = PUMP_NONE;
			session_reply_done(s);
			return;
		}
	}
}

static void session_pump(struct pop3_session *s)
{
	if (s->pump == PUMP_MESSAGE)
		pump_message(s);
	else if (s->pump == PUMP_LIST || s->pump == PUMP_UIDL)
		pump_listing(s);
}

/* ---- connection events ---- */

static void session_bad_command(struct pop3_session *s)
{
	if (++s->bad_commands >= POP3_MAX_BAD_COMMANDS) {
		conn_printf(s->conn, "-ERR too many bad commands, closing connection\r\n");
		log_info("sid=%s event=disconnect reason=bad-commands user=%s deleted=0", s->sid,
		         s->user);
		conn_close(s->conn);
	}
}

static void session_line(void *ctx, char *line, size_t len)
{
	struct pop3_session *s = ctx;
	struct pop3_cmd cmd;

	if (dir_session_lock_lost(s->dir_lock)) {
		/* Another server has the mailbox open now: no command here may
		 * read or change it, and QUIT must not enter UPDATE. */
		conn_printf(s->conn, "-ERR [SYS/TEMP] the mailbox lock was lost while the "
		                     "directory restarted; closing, nothing deleted\r\n");
		log_warn("sid=%s event=disconnect reason=lock-lost user=%s retr=%u deleted=0",
		         s->sid, s->user, s->retrieved);
		conn_close(s->conn);
		return;
	}
	const struct pop3_command *row =
	    pop3_command_check(s->conn, POP3_TRANSACTION, line, len, &cmd);
	if (row == NULL || row->mail(s, &cmd) < 0)
		session_bad_command(s);
}

static void session_too_long(void *ctx)
{
	struct pop3_session *s = ctx;
	conn_printf(s->conn, "-ERR command line too long (limit %d octets)\r\n", POP3_MAX_LINE);
	session_bad_command(s);
}

static void session_drained(void *ctx)
{
	session_pump(ctx);
}

static void session_timeout(void *ctx)
{
	struct pop3_session *s = ctx;
	/* RFC 1939 §3: an autologout timer expiry does not enter UPDATE. */
	if (s->pump == PUMP_NONE && !s->expunging)
		conn_printf(s->conn, "-ERR [SYS/PERM] idle for too long, closing connection\r\n");
	log_info("sid=%s event=disconnect reason=idle-timeout user=%s deleted=0", s->sid, s->user);
}

static void session_closed(void *ctx, enum conn_close_reason why)
{
	struct pop3_session *s = ctx;

	if (why == CONN_CLOSE_EOF || why == CONN_CLOSE_ERROR || why == CONN_CLOSE_FLOOD)
		log_info("sid=%s event=disconnect reason=%s user=%s retr=%u octets=%" PRIu64
		         " deleted=0",
		         s->sid, why == CONN_CLOSE_FLOOD ? "line-flood" : "client-gone", s->user,
		         s->retrieved, s->octets_sent);
	s->conn = NULL;
	if (s->opening || s->expunging) {
		s->conn_gone = true;
		return;
	}
	session_free(s);
}

static const struct conn_handler session_handler = {
    .line = session_line,
    .line_too_long = session_too_long,
    .drained = session_drained,
    .timeout = session_timeout,
    .closed = session_closed,
};

/* ---- opening the mailbox (on the pool: a large scan takes a while) ---- */

static void session_open_work(void *arg)
{
	struct pop3_session *s = arg;

	s->open_result = maildir_lock(s->path, &s->lock_fd, &s->open_error);
	if (s->open_result != 0)
		return;
	/* Sessions of other servers sharing the mail store (DESIGN §7). */
	s->open_result = dir_session_lock(s->env->cfg, s->user, &s->dir_lock, &s->open_error);
	if (s->open_result == 0 && maildir_open(s->path, &s->md, &s->open_error) < 0) {
		s->open_result = -1;
		dir_session_unlock(&s->dir_lock);
	}
	if (s->open_result != 0) {
		close(s->lock_fd);
		s->lock_fd = -1;
	}
}

static void session_open_done(void *arg)
{
	struct pop3_session *s = arg;

	s->opening = false;
	if (s->conn_gone) {
		session_free(s);
		return;
	}
	if (s->stop_pending) {
		session_say_shutdown(s);
		return;
	}
	if (s->open_result == 1) {
		log_info("sid=%s event=login-refused reason=in-use user=%s", s->sid, s->user);
		conn_printf(s->conn, "-ERR [IN-USE] mailbox is locked by another POP3 session\r\n");
		conn_close(s->conn);
		return;
	}
	if (s->open_result < 0) {
		log_error("sid=%s event=mailbox-error user=%s error=\"%s\"", s->sid, s->user,
		          s->open_error);
		conn_printf(s->conn,
		            "-ERR [SYS/TEMP] cannot open the mailbox, try again later\r\n");
		conn_close(s->conn);
		return;
	}
	size_t count = maildir_count(s->md);
	s->deleted = xcalloc(count ? count : 1, sizeof(bool));
	log_info("sid=%s event=mailbox-open user=%s messages=%zu octets=%" PRIu64, s->sid, s->user,
	         count, maildir_total_vsize(s->md));
	conn_printf(s->conn, "+OK maildrop has %zu messages (%" PRIu64 " octets)\r\n", count,
	            maildir_total_vsize(s->md));
	session_reply_done(s);
}

static void session_info(struct env_client *node, struct env_client_info *out)
{
	struct pop3_session *s = (struct pop3_session *)node;
	out->sid = s->sid;
	out->proto = "pop3";
	out->user = s->user;
	conn_describe(s->conn, out);
	out->since = s->since;
}

/* Dropped like a client that went away: no UPDATE, nothing deleted. */
static void session_kick(struct env_client *node)
{
	struct pop3_session *s = (struct pop3_session *)node;
	if (s->conn == NULL || conn_closing(s->conn))
		return;
	log_info("sid=%s event=disconnect reason=kicked user=%s retr=%u deleted=0", s->sid, s->user,
	         s->retrieved);
	conn_abort(s->conn);
}

void pop3_session_start(const struct session_handoff *h)
{
	struct pop3_session *s = xcalloc(1, sizeof(*s));

	s->env = h->env;
	s->conn = h->conn;
	s->lock_fd = -1;
	s->retr.fd = -1;
	s->connected_ms = h->connected_ms;
	memcpy(s->sid, h->sid, sizeof(s->sid));
	memcpy(s->user, h->user, sizeof(s->user) - 1); /* a whole address fits */
	s->path = maildir_path(s->env->cfg->mail_root, s->user);
	s->node.shutdown = session_shutdown;
	s->node.info = session_info;
	s->node.kick = session_kick;
	s->since = h->since;
	env_client_add(s->env, &s->node);

	conn_set_handler(s->conn, &session_handler, s, POP3_MAX_LINE);
	conn_set_idle_timeout(s->conn, s->env->cfg->pop3_idle_timeout);
	/* The connection is paused since PASS; it resumes with the +OK. */
	s->opening = true;
	pool_submit(s->env->pool, session_open_work, session_open_done, s);
}

/* ---- commands ---- */

/* Resolve a message-number argument; writes the -ERR and returns -1 when it
 * is not a live message. */
static int session_msg(struct pop3_session *s, const char *arg, size_t *index_r)
{
	size_t count = maildir_count(s->md);
	uint64_t n;

	if (pop3_parse_msgnum(arg, count, &n) < 0) {
		conn_printf(s->conn, "-ERR no such message, only %zu messages in maildrop\r\n",
		            count);
		return -1;
	}
	if (s->deleted[n - 1]) {
		conn_printf(s->conn, "-ERR message %" PRIu64 " is deleted\r\n", n);
		return -1;
	}
	*index_r = (size_t)(n - 1);
	return 0;
}

static uint64_t live_octets(const struct pop3_session *s)
{
	return maildir_total_vsize(s->md) - s->deleted_octets;
}

int pop3_mail_stat(struct pop3_session *s, const struct pop3_cmd *cmd)
{
	(void)cmd;
	conn_printf(s->conn, "+OK %zu %" PRIu64 "\r\n", maildir_count(s->md) - s->ndeleted,
	            live_octets(s));
	return 0;
}

static int start_listing(struct pop3_session *s, const struct pop3_cmd *cmd, enum pump kind)
{
	if (cmd->argc == 1) {
		size_t i;
		if (session_msg(s, cmd->argv[0], &i) < 0)
			return -1;
		if (kind == PUMP_LIST)
			conn_printf(s->conn, "+OK %zu %" PRIu64 "\r\n", i + 1,
			            maildir_msg_vsize(s->md, i));
		else
			conn_printf(s->conn, "+OK %zu %s\r\n", i + 1, maildir_msg_uidl(s->md, i));
		return 0;
	}
	if (kind == PUMP_LIST)
		conn_printf(s->conn, "+OK %zu messages (%" PRIu64 " octets)\r\n",
		            maildir_count(s->md) - s->ndeleted, live_octets(s));
	else
		conn_printf(s->conn, "+OK unique-id listing follows\r\n");
	s->pump = kind;
	s->cursor = 0;
	conn_pause(s->conn);
	session_pump(s);
	return 0;
}

int pop3_mail_list(struct pop3_session *s, const struct pop3_cmd *cmd)
{
	return start_listing(s, cmd, PUMP_LIST);
}

int pop3_mail_uidl(struct pop3_session *s, const struct pop3_cmd *cmd)
{
	return start_listing(s, cmd, PUMP_UIDL);
}

static int start_message(struct pop3_session *s, size_t i, int64_t top_lines)
{
	const char *error;
	int fd = maildir_msg_open(s->md, i, &error);
	if (fd < 0) {
		log_warn("sid=%s event=message-gone user=%s msg=%zu error=\"%s\"", s->sid, s->user,
		         i + 1, error);
		conn_printf(s->conn, "-ERR message %zu is no longer available\r\n", i + 1);
		return 0;
	}
	pop3_retr_start(&s->retr, fd, top_lines);
	if (top_lines < 0) {
		conn_printf(s->conn, "+OK %" PRIu64 " octets\r\n", maildir_msg_vsize(s->md, i));
		s->retrieved++;
	} else {
		conn_printf(s->conn, "+OK top of message follows\r\n");
	}
	s->pump = PUMP_MESSAGE;
	conn_pause(s->conn);
	session_pump(s);
	return 0;
}

int pop3_mail_retr(struct pop3_session *s, const struct pop3_cmd *cmd)
{
	size_t i;
	if (session_msg(s, cmd->argv[0], &i) < 0)
		return -1;
	return start_message(s, i, -1);
}

int pop3_mail_top(struct pop3_session *s, const struct pop3_cmd *cmd)
{
	size_t i;
	uint64_t lines;

	if (session_msg(s, cmd->argv[0], &i) < 0)
		return -1;
	/* The line count may be 0; reuse the number parser on "n+1". */
	const char *arg = cmd->argv[1];
	if (strcmp(arg, "0") == 0) {
		lines = 0;
	} else if (pop3_parse_msgnum(arg, INT64_MAX, &lines) < 0) {
		conn_printf(s->conn, "-ERR the line count must be a non-negative number\r\n");
		return -1;
	}
	return start_message(s, i, (int64_t)lines);
}

int pop3_mail_dele(struct pop3_session *s, const struct pop3_cmd *cmd)
{
	size_t i;
	if (session_msg(s, cmd->argv[0], &i) < 0)
		return -1;
	s->deleted[i] = true;
	s->ndeleted++;
	s->deleted_octets += maildir_msg_vsize(s->md, i);
	conn_printf(s->conn, "+OK message %zu deleted\r\n", i + 1);
	return 0;
}

int pop3_mail_noop(struct pop3_session *s, const struct pop3_cmd *cmd)
{
	(void)cmd;
	conn_printf(s->conn, "+OK\r\n");
	return 0;
}

int pop3_mail_rset(struct pop3_session *s, const struct pop3_cmd *cmd)
{
	(void)cmd;
	memset(s->deleted, 0, maildir_count(s->md) * sizeof(bool));
	s->ndeleted = 0;
	s->deleted_octets = 0;
	conn_printf(s->conn, "+OK maildrop has %zu messages (%" PRIu64 " octets)\r\n",
	            maildir_count(s->md), maildir_total_vsize(s->md));
	return 0;
}

int pop3_mail_capa(struct pop3_session *s, const struct pop3_cmd *cmd)
{
	(void)cmd;
	pop3_write_capa(s->env, s->conn, POP3_TRANSACTION);
	return 0;
}

/* UPDATE state (RFC 1939 §6): removing the marked files and fsyncing their
 * directories waits on the disk, so it runs on the pool, never on the loop
 * that serves every other session of this worker. Once started it runs to
 * the end whatever happens to the connection (a client that sent QUIT asked
 * for it); the reply waits for it, so +OK still means the removals are on
 * disk. */
static void session_quit_work(void *arg)
{
	struct pop3_session *s = arg;

	s->quit_failed = 0;
	s->quit_error = NULL;
	if (dir_session_lock_confirm(s->dir_lock, &s->quit_error) < 0) {
		/* Not sure to be the only session on the mailbox: delete nothing. */
		s->quit_result = -1;
		s->quit_failed = s->ndeleted;
	} else {
		s->quit_result =
		    maildir_expunge(s->md, s->deleted, &s->quit_failed, &s->quit_error);
	}
	/* The error may be in this thread's buffer, which the next job on it
	 * reuses: copied for the loop's log line. */
	if (s->quit_error != NULL) {
		snprintf(s->quit_error_buf, sizeof(s->quit_error_buf), "%s", s->quit_error);
		s->quit_error = s->quit_error_buf;
	}
}

static void session_quit_reply(struct pop3_session *s, bool failed)
{
	if (failed) {
		log_error("sid=%s event=expunge-error user=%s failed=%zu error=\"%s\"", s->sid,
		          s->user, s->quit_failed, s->quit_error);
		if (s->conn != NULL && s->quit_failed > 0)
			conn_printf(s->conn,
			            "-ERR [SYS/TEMP] %zu of %zu deleted messages could not be "
			            "removed\r\n",
			            s->quit_failed, s->ndeleted);
		else if (s->conn != NULL) /* removed, but the directory sync failed */
			conn_printf(
			    s->conn,
			    "-ERR [SYS/TEMP] the %zu deleted messages were removed, but the "
			    "disk did not confirm it; some may come back\r\n",
			    s->ndeleted);
	} else if (s->conn != NULL) {
		conn_printf(s->conn,
		            "+OK Pillar POP3 server signing off (%zu messages deleted)\r\n",
		            s->ndeleted);
	}
	log_info("sid=%s event=disconnect reason=quit user=%s retr=%u octets=%" PRIu64
	         " deleted=%zu",
	         s->sid, s->user, s->retrieved, s->octets_sent, s->ndeleted - s->quit_failed);
}

static void session_quit_done(void *arg)
{
	struct pop3_session *s = arg;

	s->expunging = false;
	session_quit_reply(s, s->quit_result < 0);
	if (s->conn_gone) {
		session_free(s);
		return;
	}
	conn_close(s->conn);
}

int pop3_mail_quit(struct pop3_session *s, const struct pop3_cmd *cmd)
{
	(void)cmd;

	s->quit_failed = 0;
	if (s->ndeleted == 0) {
		session_quit_reply(s, false);
		conn_close(s->conn);
		return 0;
	}
	/* No further command is read: the session ends with this reply. */
	conn_pause(s->conn);
	s->expunging = true;
	pool_submit(s->env->pool, session_quit_work, session_quit_done, s);
	return 0;
}
