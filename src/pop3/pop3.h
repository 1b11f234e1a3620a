/* The POP3 service (RFC 1939, RFC 2449, RFC 3206). */
#ifndef PILLAR_POP3_POP3_H
#define PILLAR_POP3_POP3_H

struct conn;
struct worker_env;

#include <stdint.h>

#include "directory/directory.h"

/* Session ids: 12 random base32 characters. */
#define POP3_SID_LEN 12

/* Take an accepted connection: greet it and run its login (a login
 * worker's part). */
void pop3_accept(struct worker_env *env, struct conn *conn);

/* What the mail side of a connection is created from, and nothing else:
 * the login side fills it in one process, the mail side starts from it in
 * another (DESIGN §3, src/server/handoff.c carries it between them). */
struct pop3_handoff {
	struct worker_env *env;
	struct conn *conn; /* paused; input sent after the login is in it */
	char sid[POP3_SID_LEN + 1];
	char user[DIR_ADDRESS_MAX + 1];
	uint64_t connected_ms; /* CLOCK_MONOTONIC, the same in every process */
	int64_t since;         /* unix time of the connection, for `pillar who` */
};

/* Start the mail side (a mail worker's part): open the mailbox, answer
 * the login command, run TRANSACTION and UPDATE. */
void pop3_session_start(const struct pop3_handoff *h);

#endif
