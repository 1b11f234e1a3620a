/* The SMTP (RFC 5321) and LMTP (RFC 2033) services. */
#ifndef PILLAR_SMTP_SMTP_H
#define PILLAR_SMTP_SMTP_H

#include <stdbool.h>

#include "core/handoff.h"

struct conn;
struct worker_env;

/* Take an accepted connection: greet it and run its session up to the
 * first MAIL (a login worker's part): EHLO, STARTTLS, AUTH. The MAIL hands
 * the connection to a mail worker (worker_env.handoff). */
void smtp_accept(struct worker_env *env, struct conn *conn, bool lmtp);

/* The rest of the session, from that hand-off (a mail worker's part): the
 * MAIL that ended the first part, then mail transactions until QUIT. */
void smtp_session_start(const struct session_handoff *h);

#endif
