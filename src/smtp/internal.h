/* The SMTP/LMTP session (RFC 5321, RFC 2033): one struct, one command table,
 * the message stream (DATA/BDAT) and the pool jobs that resolve recipients
 * and commit messages. LMTP is the same session with LHLO and one reply per
 * recipient after the data. */
#ifndef PILLAR_SMTP_INTERNAL_H
#define PILLAR_SMTP_INTERNAL_H

#include <stdbool.h>
#include <stdint.h>

#include "core/env.h"
#include "core/handoff.h"
#include "directory/directory.h"
#include "smtp/address.h"
#include "smtp/data.h"
#include "smtp/parse.h"
#include "store/delivery.h"

struct conn;
struct event;
struct authc_sasl;

#define SMTP_SID_LEN HANDOFF_SID_LEN
_Static_assert(SMTP_DOMAIN_MAX <= HANDOFF_NAME_MAX, "a HELO name fits the hand-off");
/* RFC 5321 §4.5.3.1.8 asks for at least 100 recipients per message; we take
 * exactly that many and answer 452 4.5.3 beyond (§4.5.3.1.10). */
#define SMTP_MAX_RCPTS 100
/* Distinct mailboxes one message may go to (recipients and alias targets). */
#define SMTP_MAX_MAILBOXES 256
/* Failed commands before the session is closed with 421. */
#define SMTP_MAX_ERRORS 20
/* RFC 5321 §4.5.3.2.7: wait at least 5 minutes for the next command. The
 * same time bounds each command line from its first octet, so a client
 * that trickles a line cannot stretch it past that (RFC-wise we have still
 * waited the 5 minutes for the command). */
#define SMTP_COMMAND_TIMEOUT_MS (5u * 60u * 1000u)
/* RFC 5321 §4.5.3.2.5/6: data blocks may take 3 minutes each, and the end
 * of the data up to 10 minutes; we allow 10 minutes of silence in data. */
#define SMTP_DATA_TIMEOUT_MS (10u * 60u * 1000u)

/* Where a session is; a command row lists the states it may run in. */
enum smtp_state {
	SMTP_ST_GREETED = 1 << 0, /* before HELO/EHLO/LHLO */
	SMTP_ST_READY = 1 << 1,   /* greeted by the client, no transaction */
	SMTP_ST_MAIL = 1 << 2,    /* MAIL given, no recipient accepted yet */
	SMTP_ST_RCPT = 1 << 3,    /* at least one recipient accepted */
};
#define SMTP_ST_ANY (SMTP_ST_GREETED | SMTP_ST_READY | SMTP_ST_MAIL | SMTP_ST_RCPT)

struct smtp_mailbox_target {
	char *path; /* the Maildir */
	char address[DIR_ADDRESS_MAX + 1];
	uint64_t quota_bytes, quota_messages;
	enum delivery_status status;
	bool over_quota; /* the message does not fit (checked at commit) */
	bool committed;  /* durable in this mailbox */
	const char *error;
};

struct smtp_rcpt {
	char address[SMTP_MAILBOX_MAX + 1]; /* canonical, for logs and Received */
	uint16_t first, count;              /* its mailboxes in the mailbox list */
};

/* One mail transaction: from MAIL to the end of the data or RSET. */
struct smtp_txn {
	struct smtp_mailbox sender;
	bool smtputf8;
	bool bdat;          /* the message is coming in BDAT chunks */
	bool failed;        /* BDAT: an earlier chunk was refused; refuse LAST too */
	uint64_t bdat_left; /* octets of the current chunk still to read */
	bool bdat_last;
	unsigned nrcpts;
	struct smtp_rcpt rcpts[SMTP_MAX_RCPTS];
	unsigned nmailboxes;
	struct smtp_mailbox_target mailboxes[SMTP_MAX_MAILBOXES];
	struct delivery *dlv;
	struct smtp_data data;
	const char *write_error;
};

struct smtp_session {
	struct env_client node; /* first: the env hands us back by it */
	struct worker_env *env;
	struct conn *conn;
	bool lmtp;
	bool mail_side;    /* started from a hand-off: mail is all it takes */
	bool esmtp;        /* EHLO/LHLO rather than HELO */
	bool busy;         /* a pool job holds the session */
	bool conn_gone;    /* closed while busy: free when the job returns */
	bool stop_pending; /* shutdown arrived while busy */
	enum smtp_state state;
	unsigned errors;
	unsigned messages;
	int64_t since;
	uint64_t connected_ms;
	/* SMTP AUTH (RFC 4954) */
	struct authc_sasl *sasl; /* while an exchange runs */
	unsigned auth_failures;
	struct event *auth_delay;
	uint64_t auth_asked_ms;                   /* when the credentials being checked arrived */
	char auth_user[DIR_ADDRESS_MAX + 1];      /* "" until authenticated */
	uint8_t auth_ticket[HANDOFF_TICKET_SIZE]; /* the auth process's, for the hand-off */
	struct smtp_txn *txn;
	char helo[SMTP_DOMAIN_MAX + 1];
	char sid[SMTP_SID_LEN + 1];
};

/* One row of the command table. "May this run now?" is answered from the
 * row before the handler runs; handlers write their reply and return 0, or
 * -1 after writing an error reply that counts towards SMTP_MAX_ERRORS. */
struct smtp_command {
	enum smtp_verb verb;
	unsigned states;
	bool smtp, lmtp; /* valid in which protocol */
	int (*run)(struct smtp_session *s, struct smtp_cmd *cmd);
};

const struct smtp_command *smtp_command_find(enum smtp_verb verb);

/* session.c */
void smtp_reply(struct smtp_session *s, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void smtp_txn_reset(struct smtp_session *s);
/* Count a failed command; the session ends with 421 at SMTP_MAX_ERRORS. */
void smtp_count_error(struct smtp_session *s);
void smtp_session_resume(struct smtp_session *s);
/* Start reading message octets (DATA or a BDAT chunk). */
void smtp_start_data(struct smtp_session *s);
int smtp_begin_message(struct smtp_session *s);
/* The message's octets are all in: refuse it, or commit it on the pool. */
void smtp_data_end(struct smtp_session *s);

/* txn.c: the pool jobs */
void smtp_rcpt_start(struct smtp_session *s, const struct smtp_mailbox *rcpt);
void smtp_commit_start(struct smtp_session *s);

/* commands.c: handlers */
int smtp_cmd_helo(struct smtp_session *s, struct smtp_cmd *cmd);
int smtp_cmd_mail(struct smtp_session *s, struct smtp_cmd *cmd);
int smtp_cmd_rcpt(struct smtp_session *s, struct smtp_cmd *cmd);
int smtp_cmd_data(struct smtp_session *s, struct smtp_cmd *cmd);
int smtp_cmd_bdat(struct smtp_session *s, struct smtp_cmd *cmd);
int smtp_cmd_rset(struct smtp_session *s, struct smtp_cmd *cmd);
int smtp_cmd_noop(struct smtp_session *s, struct smtp_cmd *cmd);
int smtp_cmd_quit(struct smtp_session *s, struct smtp_cmd *cmd);
int smtp_cmd_vrfy(struct smtp_session *s, struct smtp_cmd *cmd);
int smtp_cmd_help(struct smtp_session *s, struct smtp_cmd *cmd);
int smtp_cmd_starttls(struct smtp_session *s, struct smtp_cmd *cmd);
int smtp_cmd_auth(struct smtp_session *s, struct smtp_cmd *cmd);

/* auth.c */
/* A line answering a SASL challenge. */
void smtp_sasl_line(struct smtp_session *s, char *line, size_t len);
/* End an exchange and free its state (also at session end). */
void smtp_sasl_clear(struct smtp_session *s);
/* The mechanisms to list in EHLO, "" for none. */
const char *smtp_auth_mechanisms(struct smtp_session *s);
int smtp_cmd_not_yet(struct smtp_session *s, struct smtp_cmd *cmd);

#endif
