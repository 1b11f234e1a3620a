/* The auth process: the one process of a worker generation that reads the
 * directory's secrets (password hashes, SCRAM keys, APOP secrets) and
 * hashes passwords. Workers ask it over the socket the master made for the
 * generation (auth/authproto.h), with auth/authc.h.
 *
 * It serves USER/PASS (auth_verify_check), APOP (apop_verify_work) and SASL
 * exchanges (auth/sasl.h, the sessions kept here), each on its own thread
 * pool as slow jobs, with its own event loop. The SCRAM keys a right
 * USER/PASS password makes for an imported hash (auth_verify_finish) are
 * made after the reply is sent, as a background job at the lowest CPU
 * priority (AUTHD_MAX_FINISHING at most). It trusts no client: a
 * peer whose uid is not one of the allowed ones is turned away at accept, and a connection that
 * sends a malformed message, more than AUTHP_MAX_INFLIGHT requests at once or a second step of a
 * session whose step is still running is dropped, its SASL sessions with it. Passwords are wiped
 * once checked, or once their background job is done. */
#ifndef PILLAR_AUTH_AUTHD_H
#define PILLAR_AUTH_AUTHD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

struct config;
struct event_base;
struct pool;
struct authd;

/* Background jobs making SCRAM keys (auth_verify_finish) allowed to wait at
 * once; beyond, a check does that work itself before its reply. */
#define AUTHD_MAX_FINISHING 64

/* Uids allowed to connect: the workers' accounts. */
#define AUTHD_MAX_UIDS 4
/* A SASL session with no step for this long is forgotten (a client that
 * stopped answering: SMTP gives up after 5 minutes, POP3 at the login
 * deadline). */
#define AUTHD_SASL_IDLE_MS (10u * 60u * 1000u)
/* After SIGUSR1 (a reload) or SIGTERM the process stops accepting and
 * exits once its clients, the workers of its generation, have closed
 * their connections, or after this long in any case. */
#define AUTHD_DRAIN_GRACE_MS (60u * 1000u)

struct authd_params {
	const struct config *cfg;
	int listen_fd; /* from authp_listen; taken over */
	uid_t uids[AUTHD_MAX_UIDS];
	size_t nuids;
	/* The key of login tickets (auth/ticket.h), TICKET_KEY_LEN octets;
	 * NULL: a random one. */
	const uint8_t *ticket_key;
	/* For tests: the SASL idle limit, checked every sasl_idle_ms / 10
	 * (0: AUTHD_SASL_IDLE_MS, checked every minute). */
	uint64_t sasl_idle_ms;
};

/* The process: drop to run_as (when root), die with the master, no new
 * privileges, name "pillar-auth", serve until drained. Returns the exit
 * status. */
int authd_main(const struct authd_params *p);

/* The serving part on a loop and pool of the caller's (authd_main's, or a
 * test's that runs workers' sessions in the same loop). Takes over
 * p->listen_fd. */
struct authd *authd_new(struct event_base *base, struct pool *pool, const struct authd_params *p);

/* Stop accepting; when the last connection is gone, end the loop (and so
 * at once when there is none). */
void authd_drain(struct authd *d);

/* Connections open. */
size_t authd_connections(const struct authd *d);

/* Close every connection and free. Call after the pool has finished every
 * job (pool_free), since jobs point at connections. NULLs *d. */
void authd_free(struct authd **d);

#endif
