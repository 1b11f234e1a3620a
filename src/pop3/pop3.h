/* The POP3 service (RFC 1939, RFC 2449, RFC 3206). */
#ifndef PILLAR_POP3_POP3_H
#define PILLAR_POP3_POP3_H

struct conn;
struct worker_env;

/* Take an accepted connection: greet it and run its session. */
void pop3_accept(struct worker_env *env, struct conn *conn);

#endif
