/* Shared by the two halves of a POP3 connection: the login side
 * (AUTHORIZATION state, login.c) and the mail side (TRANSACTION and UPDATE,
 * session.c). The mail side is created only from a `session_handoff` record,
 * never from the login side's memory: that is where the privilege boundary
 * between login and mail processes will run (DESIGN §3). */
#ifndef PILLAR_POP3_INTERNAL_H
#define PILLAR_POP3_INTERNAL_H

#include <stdbool.h>
#include <stdint.h>

#include "directory/directory.h"
#include "pop3/parse.h"
#include "pop3/pop3.h"

struct conn;
struct worker_env;
struct pop3_login;
struct pop3_session;

/* Commands that fail (unknown, wrong state, bad arguments) before the
 * connection is closed. */
#define POP3_MAX_BAD_COMMANDS 20

enum pop3_state {
	POP3_AUTHORIZATION = 1 << 0,
	POP3_TRANSACTION = 1 << 1,
};

/* One row of the command table: "may this run now?" is answered from the
 * row by pop3_command_check; the handlers only do the work. A handler
 * writes its reply and returns 0, or -1 after writing an -ERR that counts as
 * a bad command. */
struct pop3_command {
	const char *name;
	unsigned states;
	unsigned min_args, max_args;
	int (*login)(struct pop3_login *l, const struct pop3_cmd *cmd);
	int (*mail)(struct pop3_session *s, const struct pop3_cmd *cmd);
};

/* Parse a line and look it up. Returns the row when the command may run in
 * `state`; otherwise writes the -ERR to conn and returns NULL (the caller
 * counts a bad command). */
const struct pop3_command *pop3_command_check(struct conn *conn, enum pop3_state state, char *line,
                                              size_t len, struct pop3_cmd *cmd);

/* The CAPA response (RFC 2449 §5): what this connection may use now. */
void pop3_write_capa(const struct worker_env *env, struct conn *conn, enum pop3_state state);

/* Whether STLS is offered (a certificate is configured, not yet on TLS). */
bool pop3_stls_available(const struct worker_env *env, const struct conn *conn);

/* Whether USER/PASS may be used on this connection (plaintext_auth). */
bool pop3_plaintext_allowed(const struct worker_env *env, const struct conn *conn);

/* Handlers, for the command table. */
int pop3_login_user(struct pop3_login *l, const struct pop3_cmd *cmd);
int pop3_login_pass(struct pop3_login *l, const struct pop3_cmd *cmd);
int pop3_login_apop(struct pop3_login *l, const struct pop3_cmd *cmd);
int pop3_login_capa(struct pop3_login *l, const struct pop3_cmd *cmd);
int pop3_login_quit(struct pop3_login *l, const struct pop3_cmd *cmd);
int pop3_login_stls(struct pop3_login *l, const struct pop3_cmd *cmd);
int pop3_login_auth(struct pop3_login *l, const struct pop3_cmd *cmd);

int pop3_mail_stat(struct pop3_session *s, const struct pop3_cmd *cmd);
int pop3_mail_list(struct pop3_session *s, const struct pop3_cmd *cmd);
int pop3_mail_uidl(struct pop3_session *s, const struct pop3_cmd *cmd);
int pop3_mail_retr(struct pop3_session *s, const struct pop3_cmd *cmd);
int pop3_mail_top(struct pop3_session *s, const struct pop3_cmd *cmd);
int pop3_mail_dele(struct pop3_session *s, const struct pop3_cmd *cmd);
int pop3_mail_noop(struct pop3_session *s, const struct pop3_cmd *cmd);
int pop3_mail_rset(struct pop3_session *s, const struct pop3_cmd *cmd);
int pop3_mail_quit(struct pop3_session *s, const struct pop3_cmd *cmd);
int pop3_mail_capa(struct pop3_session *s, const struct pop3_cmd *cmd);

#endif
