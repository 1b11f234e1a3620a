/* What a protocol session needs from the worker process it lives in: the
 * event loop, the thread pool, the configuration, the auth process's
 * client (auth/authc.h), and a registry of live clients so the worker can
 * shut them down gracefully. Kept here, below every protocol, so sessions
 * never reach up into the server module. */
#ifndef PILLAR_CORE_ENV_H
#define PILLAR_CORE_ENV_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct event_base;
struct pool;
struct config;
struct tls_ctx;
struct penalty;
struct authc;
struct session_handoff;

/* What `pillar who` shows of one client. Strings stay valid until the
 * client's next event. */
struct env_client_info {
	const char *sid;
	const char *proto; /* "pop3", "smtp", "lmtp" */
	const char *user;  /* "" before login */
	const char *rip;
	const char *tls; /* "" without TLS, else version and cipher */
	int64_t since;   /* unix seconds */
	uint64_t bytes_in, bytes_out;
};

struct env_client {
	struct env_client *prev, *next;
	/* Fill in what `pillar who` shows; NULL for plumbing that `who`
	 * and `kick` do not list (a TLS relay: its session is listed by the
	 * mail worker). */
	void (*info)(struct env_client *client, struct env_client_info *out);
	/* `pillar kick`: drop the connection at once, like a client that went
	 * away: nothing is applied (no POP3 UPDATE, no half message kept). */
	void (*kick)(struct env_client *client);
	/* The server is stopping: say so to the client (when it is between
	 * replies) and close without applying anything half-way. */
	void (*shutdown)(struct env_client *client);
};

struct worker_env {
	struct event_base *base;
	struct pool *pool;
	const struct config *cfg;
	struct tls_ctx *tls;       /* NULL when no certificate is configured */
	struct penalty *penalty;   /* failed logins per client address, all workers */
	struct authc *auth;        /* the auth process: every credential check */
	struct env_client clients; /* list head */
	size_t nclients;
	/* Armed when a client goes: gives the heap memory freed since back
	 * to the system a moment later (NULL: never). */
	struct event *trim;
	bool stopping;  /* no new sessions; exit when the last one is gone */
	unsigned index; /* worker number, for logs */
	/* Login workers: pass a connection whose pre-login part is done to
	 * a mail worker (core/handoff.h). Returns 0 when h->conn is no
	 * longer the caller's, -1 when it still is (nothing was sent). NULL
	 * in mail workers, and where one process drives whole sessions (the
	 * fuzzers): the mail side then starts in place. */
	int (*handoff)(struct worker_env *env, const struct session_handoff *h);
};

void env_init(struct worker_env *env);
void env_client_add(struct worker_env *env, struct env_client *client);
/* Unlinks the client and arms env->trim; when the worker is stopping and
 * this was the last one, ends the event loop. */
void env_client_remove(struct worker_env *env, struct env_client *client);
/* Calls shutdown on every live client. */
void env_shutdown_clients(struct worker_env *env);

#endif
