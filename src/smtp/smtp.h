/* The SMTP (RFC 5321) and LMTP (RFC 2033) services. */
#ifndef PILLAR_SMTP_SMTP_H
#define PILLAR_SMTP_SMTP_H

#include <stdbool.h>

struct conn;
struct worker_env;

/* Take an accepted connection: greet it and run its session. */
void smtp_accept(struct worker_env *env, struct conn *conn, bool lmtp);

#endif
