/* The login side's state, shared by login.c (greeting, USER/PASS, the
 * defences) and auth.c (SASL AUTH). Private to src/pop3. */
#ifndef PILLAR_POP3_LOGIN_H
#define PILLAR_POP3_LOGIN_H

#include <stdbool.h>
#include <stdint.h>

#include "core/env.h"
#include "directory/directory.h"
#include "pop3/internal.h"

struct authc_sasl;
struct pop3_check;
struct event;

struct pop3_login {
	struct env_client node; /* first: the env hands us back by it */
	struct worker_env *env;
	struct conn *conn;
	struct pop3_check *check; /* while a PASS or APOP check runs */
	struct authc_sasl *sasl;  /* while an AUTH exchange runs */
	char *apop_ts;            /* the greeting's timestamp, when APOP is on */
	struct event *delay;      /* auth_failure_delay before the -ERR */
	uint64_t connected_ms;
	uint64_t asked_ms; /* when the credentials being checked arrived */
	int64_t since;
	unsigned failures;
	unsigned bad_commands;
	bool have_user;
	bool busy;         /* a verification or a failure delay is under way */
	bool conn_gone;    /* the connection closed while busy */
	bool stop_pending; /* shutdown arrived while busy */
	char sid[POP3_SID_LEN + 1];
	char user[DIR_ADDRESS_MAX + 1];
};

/* Outcomes of a login attempt, whichever command made it. Each writes the
 * reply (a failure after auth_failure_delay and the per-address penalty)
 * and resumes or closes the connection. `name` is what the client gave as
 * user name, for the log; address is the canonical mailbox. */
void pop3_login_succeeded(struct pop3_login *l, const char *address, const uint8_t *ticket);
void pop3_login_failed(struct pop3_login *l, const char *name);
void pop3_login_locked(struct pop3_login *l, const char *address);
void pop3_login_tempfail(struct pop3_login *l, const char *error);

/* A check by the auth process or a delay of this login has finished:
 * returns true when the login is over (freed because the connection went
 * away, or told that the server is stopping) and must not be touched
 * again. */
bool pop3_login_job_done(struct pop3_login *l);

/* auth.c: a line that answers a SASL challenge. */
void pop3_sasl_line(struct pop3_login *l, char *line, size_t len);
/* auth.c: end an exchange (connection gone or done). */
void pop3_sasl_clear(struct pop3_login *l);

#endif
