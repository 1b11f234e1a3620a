/* The auth process's client, used by workers on their event loop: checks of
 * USER/PASS, APOP and SASL exchanges, done by the auth process
 * (auth/authd.h), which alone reads the directory's secrets and hashes.
 *
 * The contract is the thread pool's (core/pool.h): every request ends with
 * exactly one call of done(arg) on the loop, never from inside the call
 * that made the request, whatever happens to the auth process meanwhile.
 * The caller keeps arg (and the result it passed) alive until then, so a
 * session that closes in between waits for its done, as with a pool job.
 *
 * The connection is made at authc_new and again when it is needed after it
 * broke: then every request in flight or waiting completes with a
 * temporary failure (AUTH_TEMPFAIL, SASL_TEMPFAIL), and the next request
 * reconnects, soon at first and backing off (up to AUTHC_BACKOFF_MAX_MS)
 * while connecting keeps failing. A connection on which requests wait and
 * the auth process answers nothing for AUTHC_TIMEOUT_MS (it hangs, or was
 * never restarted) counts as broken. Requests the connection has no room
 * for yet (AUTHP_MAX_INFLIGHT) wait here meanwhile, as jobs wait in a
 * pool's queue.
 *
 * Policy stays with the caller: which mechanisms to offer and allow
 * (sasl_mechanisms, sasl_mech_allowed), the failure delay, the penalty and
 * the log lines. */
#ifndef PILLAR_AUTH_AUTHC_H
#define PILLAR_AUTH_AUTHC_H

#include <stddef.h>

#include "auth/authproto.h"
#include "auth/sasl.h"
#include "auth/ticket.h"
#include "auth/verify.h"
#include "directory/directory.h"

struct event_base;
struct authc;
struct authc_sasl;

/* With requests waiting, a connection that brings no reply in this long
 * is given up (its requests fail temporarily). */
#define AUTHC_TIMEOUT_MS 30000
/* Reconnecting after a failure: at once the first time, then waiting from
 * AUTHC_BACKOFF_MIN_MS, doubling up to AUTHC_BACKOFF_MAX_MS. */
#define AUTHC_BACKOFF_MIN_MS 50
#define AUTHC_BACKOFF_MAX_MS 2000

/* A client for the auth process listening at addr (copied; NULL or an
 * empty address: every request fails with a temporary failure). Starts
 * connecting at once. */
struct authc *authc_new(struct event_base *base, const struct authp_addr *addr);

/* Close the connection and free everything. Requests still pending are
 * dropped without their done being called: call it only once the loop is
 * over for good (worker exit). NULLs *c; safe on NULL. */
void authc_free(struct authc **c);

/* Requests not yet answered (waiting to be sent or in flight). */
unsigned authc_pending(const struct authc *c);

/* ---- USER/PASS and APOP ---- */

/* The outcome of authc_pass or authc_apop, filled in before done(arg). */
struct authc_verify {
	enum auth_result result;
	char address[DIR_ADDRESS_MAX + 1]; /* canonical, on AUTH_OK/AUTH_LOCKED */
	char error[AUTHP_ERROR_MAX + 1];   /* why, on AUTH_TEMPFAIL (for the log) */
	uint8_t ticket[TICKET_SIZE];       /* on AUTH_OK: for the hand-off */
};

/* Check a user name and password (auth_verify_work in the auth process).
 * The password is copied into the request at once and wiped once it has
 * been sent; the caller may wipe its own copy as soon as this returns. A
 * user name or password too long to be anybody's fails like a wrong one
 * (auth_request_init). */
void authc_pass(struct authc *c, const char *user, const char *password, struct authc_verify *out,
                void (*done)(void *arg), void *arg);

/* Check an APOP command (apop_verify_work): the user, the timestamp of
 * this connection's greeting, and the client's digest. */
void authc_apop(struct authc *c, const char *user, const char *timestamp, const char *digest,
                struct authc_verify *out, void (*done)(void *arg), void *arg);

/* ---- SASL (auth/sasl.h, run in the auth process) ---- */

/* Begin an exchange: what sasl_start takes, checked here (sasl_mech_check)
 * so that an unknown mechanism is refused at once, with sasl_start's
 * errors. Nothing is sent until the first step. Returns the handle, or
 * NULL with *error_r. */
struct authc_sasl *authc_sasl_new(struct authc *c, const char *mech, const void *cb, size_t cb_len,
                                  const char **error_r);

/* One step, as sasl_step (in_b64: the client's line, or NULL when AUTH came
 * without an initial response). The line is copied at once. When done(arg)
 * runs, the result and what goes with it are read with the accessors
 * below. One step at a time: not again before done. */
void authc_sasl_step(struct authc_sasl *s, const char *in_b64, void (*done)(void *arg), void *arg);

/* The result of the last step. */
enum sasl_step authc_sasl_result(const struct authc_sasl *s);
/* On SASL_CONTINUE: the base64 challenge to send (maybe ""); valid until
 * the next step or authc_sasl_free. NULL otherwise. */
const char *authc_sasl_challenge(const struct authc_sasl *s);
/* As sasl_user, sasl_login_name (at most DIR_ADDRESS_MAX characters: it
 * is for the log), sasl_error and sasl_mech_name. */
const char *authc_sasl_user(const struct authc_sasl *s);
const char *authc_sasl_login_name(const struct authc_sasl *s);
/* On SASL_OK: the auth process's ticket for the user (auth/ticket.h). */
const uint8_t *authc_sasl_ticket(const struct authc_sasl *s);
const char *authc_sasl_error(const struct authc_sasl *s);
const char *authc_sasl_mech_name(const struct authc_sasl *s);

/* End the exchange (the auth process forgets its side) and free the
 * handle. Not while a step is pending: the caller frees it in or after
 * done, as with sasl_free after a pool job. NULLs *s; safe on NULL. */
void authc_sasl_free(struct authc_sasl **s);

#endif
