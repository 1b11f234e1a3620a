/* The two steps of a transaction that must not run on the event loop:
 * resolving a recipient (directory lookup, quota from the Maildir) and
 * committing the message (fsync, link, rename, fsync). Each runs on the
 * pool; the session is paused meanwhile and its reply is written when the
 * job returns, so pipelined commands still get their replies in order. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/config.h"
#include "core/log.h"
#include "core/pool.h"
#include "core/util.h"
#include "directory/thread.h"
#include "net/conn.h"
#include "smtp/internal.h"
#include "store/maildir.h"
#include "store/quota.h"

struct rcpt_job {
	struct smtp_session *s;
	struct smtp_mailbox rcpt;
	int rc; /* -1: the directory failed */
	const char *error;
	char error_buf[256]; /* error copied out of a connection that is dropped */
	enum dir_rcpt_result result;
	bool full; /* a target mailbox is at its quota */
	char full_address[DIR_ADDRESS_MAX + 1];
	struct dir_rcpt found;
};

/* "<Postmaster>" with no domain (RFC 5321 §4.1.1.3) is the postmaster of
 * this host: of the domain named like the host name if it is ours, else of
 * the first local domain. */
static void first_domain(void *ctx, const char *domain, uint64_t mailboxes)
{
	(void)mailboxes;
	char *first = ctx;
	if (first[0] == '\0')
		snprintf(first, DIR_DOMAIN_MAX + 1, "%s", domain);
}

static void rcpt_work(void *arg)
{
	struct rcpt_job *job = arg;
	const struct config *cfg = job->s->env->cfg;
	char address[SMTP_MAILBOX_MAX + 1];

	struct dir *dir = dir_thread(cfg, &job->error);
	if (dir == NULL) {
		job->rc = -1;
		return;
	}
	snprintf(address, sizeof(address), "%s", job->rcpt.canon);
	if (job->rcpt.is_postmaster) {
		snprintf(address, sizeof(address), "postmaster@%s", cfg->hostname);
		str_lower(address);
		int local = dir_domain_exists(dir, address + strlen("postmaster@"), &job->error);
		char first[DIR_DOMAIN_MAX + 1] = "";
		if (local == 0 && dir_domain_list(dir, first_domain, first, &job->error) == 0 &&
		    first[0] != '\0')
			snprintf(address, sizeof(address), "postmaster@%s", first);
	}
	if (dir_rcpt_resolve(dir, address, &job->result, &job->found, &job->error) < 0) {
		/* The message lives in the connection that is about to go. */
		snprintf(job->error_buf, sizeof(job->error_buf), "%s", job->error);
		job->error = job->error_buf;
		dir_thread_drop();
		job->rc = -1;
		return;
	}
	if (job->result != DIR_RCPT_OK)
		return;
	for (size_t i = 0; i < job->found.n && !job->full; i++) {
		const struct dir_user *u = &job->found.users[i];
		if (u->quota_bytes == 0 && u->quota_messages == 0)
			continue;
		char *path = maildir_path(cfg->mail_root, u->address);
		enum quota_state st;
		if (quota_check(path, u->quota_bytes, u->quota_messages, 0, &st, &job->error) < 0) {
			job->rc = -1;
		} else if (st != QUOTA_OK) {
			job->full = true;
			snprintf(job->full_address, sizeof(job->full_address), "%s", u->address);
		}
		free(path);
	}
}

/* Add the job's mailboxes to the transaction, once each. Returns -1 when
 * the message would go to too many mailboxes. */
static int add_rcpt(struct smtp_session *s, struct rcpt_job *job)
{
	struct smtp_txn *t = s->txn;
	struct smtp_rcpt *r = &t->rcpts[t->nrcpts];
	unsigned first = t->nmailboxes;

	snprintf(r->address, sizeof(r->address), "%s", job->rcpt.canon);
	for (size_t i = 0; i < job->found.n; i++) {
		const struct dir_user *u = &job->found.users[i];
		unsigned j;
		for (j = 0; j < t->nmailboxes; j++)
			if (strcmp(t->mailboxes[j].address, u->address) == 0)
				break;
		if (j < t->nmailboxes)
			continue; /* already a target of an earlier recipient */
		if (t->nmailboxes >= SMTP_MAX_MAILBOXES) {
			while (t->nmailboxes > first)
				free(t->mailboxes[--t->nmailboxes].path);
			return -1;
		}
		struct smtp_mailbox_target *m = &t->mailboxes[t->nmailboxes++];
		memset(m, 0, sizeof(*m));
		snprintf(m->address, sizeof(m->address), "%s", u->address);
		m->path = maildir_path(s->env->cfg->mail_root, u->address);
		m->quota_bytes = u->quota_bytes;
		m->quota_messages = u->quota_messages;
	}
	/* An LMTP reply per recipient needs each recipient's mailboxes,
	 * including ones an earlier recipient already brought in. */
	r->first = (uint16_t)first;
	r->count = (uint16_t)(t->nmailboxes - first);
	if (r->count == 0) {
		for (unsigned j = 0; j < t->nmailboxes; j++)
			if (strcmp(t->mailboxes[j].address, job->found.users[0].address) == 0)
				r->first = (uint16_t)j;
		r->count = 1;
	}
	t->nrcpts++;
	return 0;
}

static void rcpt_done(void *arg)
{
	struct rcpt_job *job = arg;
	struct smtp_session *s = job->s;

	if (s->conn_gone || s->stop_pending) {
		free(job);
		smtp_session_resume(s);
		return;
	}
	const char *who = job->rcpt.text;
	if (job->rc < 0) {
		log_error("sid=%s event=directory-error error=\"%s\"", s->sid,
		          job->error != NULL ? job->error : "unknown");
		smtp_reply(s, "451 4.3.0 <%s> cannot be checked now, try again later", who);
	} else if (job->result == DIR_RCPT_NOT_LOCAL) {
		smtp_reply(s, "554 5.7.1 <%s> relay access denied", who);
		smtp_count_error(s);
	} else if (job->result == DIR_RCPT_NO_USER) {
		smtp_reply(s, "550 5.1.1 <%s> no such user here", who);
		smtp_count_error(s);
	} else if (job->full) {
		log_info("sid=%s event=refused reason=quota rcpt=%s mailbox=%s", s->sid,
		         job->rcpt.canon, job->full_address);
		smtp_reply(s, "452 4.2.2 <%s> mailbox full", who);
	} else if (add_rcpt(s, job) < 0) {
		smtp_reply(s, "452 4.5.3 too many recipients");
	} else {
		s->state = SMTP_ST_RCPT;
		smtp_reply(s, "250 2.1.5 <%s> recipient ok", who);
	}
	free(job);
	smtp_session_resume(s);
}

void smtp_rcpt_start(struct smtp_session *s, const struct smtp_mailbox *rcpt)
{
	struct rcpt_job *job = xcalloc(1, sizeof(*job));
	job->s = s;
	job->rcpt = *rcpt;
	pool_submit(s->env->pool, rcpt_work, rcpt_done, job);
}

/* ---- commit ---- */

static void commit_work(void *arg)
{
	struct smtp_session *s = arg;
	struct smtp_txn *t = s->txn;
	uint64_t size = delivery_size(t->dlv);
	const char *paths[SMTP_MAX_MAILBOXES];
	enum delivery_status status[SMTP_MAX_MAILBOXES];
	const char *errors[SMTP_MAX_MAILBOXES];
	unsigned idx[SMTP_MAX_MAILBOXES];
	bool any_over = false;
	size_t n = 0;

	for (unsigned i = 0; i < t->nmailboxes; i++) {
		struct smtp_mailbox_target *m = &t->mailboxes[i];
		m->status = DELIVERY_OK;
		if (m->quota_bytes == 0 && m->quota_messages == 0)
			continue;
		enum quota_state st;
		if (quota_check(m->path, m->quota_bytes, m->quota_messages, size, &st, &m->error) <
		    0) {
			m->status = DELIVERY_TEMPFAIL;
		} else if (st != QUOTA_OK) {
			m->over_quota = true;
			any_over = true;
		}
	}
	/* SMTP has one reply for the whole message: deliver to all or none. */
	if (!s->lmtp && any_over)
		return;
	for (unsigned i = 0; i < t->nmailboxes; i++) {
		struct smtp_mailbox_target *m = &t->mailboxes[i];
		if (m->over_quota || m->status != DELIVERY_OK)
			continue;
		idx[n] = i;
		paths[n++] = m->path;
	}
	delivery_commit(t->dlv, paths, n, status, errors);
	for (size_t k = 0; k < n; k++) {
		t->mailboxes[idx[k]].status = status[k];
		t->mailboxes[idx[k]].error = errors[k];
		t->mailboxes[idx[k]].committed = status[k] == DELIVERY_OK;
	}
}

/* A recipient's outcome is the worst of its mailboxes'. */
static void rcpt_reply(struct smtp_session *s, const struct smtp_rcpt *r, char *out, size_t size)
{
	struct smtp_txn *t = s->txn;
	bool over = false, temp = false, perm = false;

	for (unsigned i = r->first; i < r->first + r->count; i++) {
		const struct smtp_mailbox_target *m = &t->mailboxes[i];
		over |= m->over_quota;
		temp |= m->status == DELIVERY_TEMPFAIL;
		perm |= m->status == DELIVERY_PERMFAIL;
	}
	if (temp)
		snprintf(out, size, "451 4.3.0 <%s> cannot store the message now, try again later",
		         r->address);
	else if (over)
		snprintf(out, size, "552 5.2.2 <%s> mailbox full", r->address);
	else if (perm)
		/* The directory had the mailbox at RCPT; its Maildir is gone
		 * now: renamed or deleted meanwhile. A retry looks it up anew
		 * (and is refused at RCPT if it is really gone), so nothing
		 * bounces on a race. */
		snprintf(out, size, "450 4.2.1 <%s> mailbox is being changed, try again later",
		         r->address);
	else
		snprintf(out, size, "250 2.0.0 <%s> delivered as %s.%u", r->address, s->sid,
		         s->messages);
}

static int reply_rank(char first_digit)
{
	return first_digit == '4' ? 3 : first_digit == '5' ? 2 : first_digit == '2' ? 1 : 0;
}

static void commit_done(void *arg)
{
	struct smtp_session *s = arg;
	struct smtp_txn *t = s->txn;
	char reply[SMTP_MAX_LINE];

	s->messages++;
	for (unsigned i = 0; i < t->nmailboxes; i++) {
		const struct smtp_mailbox_target *m = &t->mailboxes[i];
		if (m->over_quota)
			log_info("sid=%s event=refused reason=quota mailbox=%s size=%llu", s->sid,
			         m->address, (unsigned long long)delivery_size(t->dlv));
		else if (m->committed)
			log_info("sid=%s event=delivered mailbox=%s size=%llu id=%s.%u", s->sid,
			         m->address, (unsigned long long)delivery_size(t->dlv), s->sid,
			         s->messages);
		else if (m->status != DELIVERY_OK)
			log_error("sid=%s event=delivery-failed mailbox=%s error=\"%s\"", s->sid,
			          m->address, m->error != NULL ? m->error : "unknown");
	}
	if (s->conn_gone) {
		/* The client is gone: it will retry, and what was committed
		 * stays (a duplicate beats a loss). */
		smtp_txn_reset(s);
		smtp_session_resume(s);
		return;
	}
	if (s->lmtp) {
		for (unsigned i = 0; i < t->nrcpts; i++) {
			rcpt_reply(s, &t->rcpts[i], reply, sizeof(reply));
			smtp_reply(s, "%s", reply);
		}
	} else {
		/* One reply for all: nobody's copy is acknowledged that is not
		 * on disk. A temporary failure wins over a permanent one, so
		 * the sender retries rather than bounces. */
		char worst[SMTP_MAX_LINE] = "";
		for (unsigned i = 0; i < t->nrcpts; i++) {
			rcpt_reply(s, &t->rcpts[i], reply, sizeof(reply));
			if (reply_rank(reply[0]) > reply_rank(worst[0]))
				memcpy(worst, reply, sizeof(worst));
		}
		if (worst[0] == '2')
			smtp_reply(s, "250 2.0.0 message accepted as %s.%u", s->sid, s->messages);
		else
			smtp_reply(s, "%s", worst);
	}
	smtp_txn_reset(s);
	smtp_session_resume(s);
}

void smtp_commit_start(struct smtp_session *s)
{
	pool_submit(s->env->pool, commit_work, commit_done, s);
}
