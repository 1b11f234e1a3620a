/* A throw-away Pillar instance for the fuzz targets that need more than a
 * pure function: a state directory with a real SQLite directory, a domain,
 * two mailboxes and a few messages, and (for the session targets) the
 * worker environment a session runs in — an event loop, a thread pool, the
 * failed-login penalty table, and the auth process's server and client
 * (auth/authd.h, auth/authc.h) on that loop and pool.
 *
 * Everything is made with the project's own functions (config_load,
 * dir_open, password_hash, maildir_deliver, pool_new), in a fresh
 * directory under /dev/shm when it exists (fsync is cheap there), removed
 * again at exit. One instance per process: libFuzzer runs one target per
 * process, inputs one after another.
 *
 * Not thread-safe; call from LLVMFuzzerInitialize / LLVMFuzzerTestOneInput. */
#ifndef PILLAR_FUZZ_INSTANCE_H
#define PILLAR_FUZZ_INSTANCE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/env.h"
#include "common.h"

struct authd;
struct config;
struct conn;

/* The mailbox whose password the dictionaries and seeds know. It has a
 * yescrypt hash, SCRAM keys and an APOP secret (the same password). */
#define FUZZ_DOMAIN   "example.test"
#define FUZZ_USER     "fuzz@" FUZZ_DOMAIN
#define FUZZ_PASSWORD "fuzz"
/* Same password, locked by the administrator: right credentials give
 * "locked", never a login. */
#define FUZZ_LOCKED_USER "locked@" FUZZ_DOMAIN
/* An alias that delivers to FUZZ_USER. */
#define FUZZ_ALIAS "alias@" FUZZ_DOMAIN

/* Messages FUZZ_USER's Maildir holds at the start of every input. */
#define FUZZ_MESSAGES 6

struct fuzz_instance {
	char dir[128]; /* the state directory */
	struct config *cfg;
	char *maildir;        /* FUZZ_USER's Maildir */
	char *locked_maildir; /* FUZZ_LOCKED_USER's */
	bool have_env;
	struct worker_env env; /* only with fuzz_instance_init(..., true) */
	struct authd *authd;   /* serves env.auth, in env's loop */
};

/* Make the instance. extra_config is appended to the config file (lines
 * "key = value\n"), may be NULL. with_env also makes env: an event base, a
 * pool with one thread, a penalty table, cfg, an auth server and its
 * client (env.auth). Aborts on any failure: a target without its instance
 * must not pretend to run. */
struct fuzz_instance *fuzz_instance_init(const char *extra_config, bool with_env);

/* Messages in new/ and cur/ of a Maildir; -1 when it cannot be read. */
long fuzz_mailbox_messages(const char *maildir);

/* Put FUZZ_USER's Maildir back to the FUZZ_MESSAGES fixture messages and
 * empty FUZZ_LOCKED_USER's, if anything changed (a QUIT after DELE, an SMTP
 * delivery). Returns true when it had to. */
bool fuzz_mailbox_restore(struct fuzz_instance *fi);

/* What the client of one session received. */
struct fuzz_transcript {
	char *out; /* NUL-terminated; at most FUZZ_TRANSCRIPT_MAX octets kept */
	size_t len;
	size_t total; /* octets received, kept or not */
};
#define FUZZ_TRANSCRIPT_MAX (4u * 1024 * 1024)

/* A session must be over this long after it started at most; past it the
 * target reports a hang (libFuzzer's own -timeout is longer). Inputs are
 * small and failed logins are answered without delay here, so a session
 * normally takes a few milliseconds. */
#define FUZZ_SESSION_DEADLINE_MS 3000

/* Run one session over a socketpair in fi's event loop (fuzz_instance_init
 * with_env): accept(env, conn, arg) takes the server end (as pop3_accept or
 * smtp_accept would), the client end writes data in pieces of
 * pseudo-random sizes — one piece per turn of the loop, so the server sees
 * the input split in many ways — then shuts down its write side and reads
 * until the server closes. Returns when the session is gone: the server
 * closed the connection, the session left env's client list and the pool
 * has no job left. The peer address is 127.0.0.1, or 192.0.2.7 (not
 * loopback) when loopback is false. Fills *t; free t->out. */
void fuzz_session_run(struct fuzz_instance *fi, const uint8_t *data, size_t size, bool loopback,
                      void (*accept)(struct worker_env *env, struct conn *conn, void *arg),
                      void *arg, struct fuzz_transcript *t);

#endif
