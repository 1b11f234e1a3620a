/* The POP3 service (RFC 1939, RFC 2449, RFC 3206). */
#ifndef PILLAR_POP3_POP3_H
#define PILLAR_POP3_POP3_H

struct conn;
struct worker_env;

#include "core/handoff.h"
#include "directory/directory.h"

#define POP3_SID_LEN HANDOFF_SID_LEN
_Static_assert(DIR_ADDRESS_MAX <= HANDOFF_NAME_MAX, "a user name fits the hand-off");

/* Take an accepted connection: greet it and run its login (a login
 * worker's part). */
void pop3_accept(struct worker_env *env, struct conn *conn);

/* Start the mail side (a mail worker's part) from a login's hand-off
 * (core/handoff.h): open the mailbox, answer the login command, run
 * TRANSACTION and UPDATE. */
void pop3_session_start(const struct session_handoff *h);

#endif
