/* SASL authentication for POP3 AUTH (RFC 5034) and SMTP AUTH (RFC 4954),
 * server side: PLAIN (RFC 4616), LOGIN, SCRAM-SHA-256 (RFC 7677) and
 * SCRAM-SHA-256-PLUS with tls-exporter channel binding (RFC 9266).
 *
 * The protocol code owns the lines; this module owns the mechanisms. It
 * speaks base64 in and out, so a session only moves lines:
 *
 *     if (!sasl_mech_allowed(mech, plaintext_ok, have_cb)) -> "unsupported mechanism"
 *     sasl_start(cfg, mech, cb, cb_len, &s, &error)
 *     r = sasl_step(s, initial_response_or_NULL, &out)     (on a pool thread)
 *     while (r == SASL_CONTINUE) {
 *             send out as a challenge: POP3 "+ <out>", SMTP "334 <out>"
 *             (out may be "": POP3 then sends "+ ", SMTP "334 ")
 *             read the client's line; "*" cancels: sasl_free, reply
 *             "-ERR" / "501 5.0.0", no penalty (the caller checks "*")
 *             r = sasl_step(s, line, &out)                  (on a pool thread)
 *     }
 *     SASL_OK: logged in as sasl_user(s); anything else: a failure reply
 *     sasl_free(&s)
 *
 * Extra data with success (SCRAM's server-final "v=..."): RFC 4954 §4 and
 * RFC 5034 §4 carry it in one more challenge that the client answers with
 * an empty line. This module does that itself: the proof step returns
 * SASL_CONTINUE with the "v=..." challenge, and the client's empty answer
 * then gives SASL_OK. So SASL_OK never comes with data, and the caller has
 * no special case.
 *
 * Threads: sasl_start, sasl_free and the query functions are cheap and may
 * run anywhere; sasl_step may hash a password or query the directory (this
 * thread's connection, directory/thread.h), so run it on the pool. Sessions
 * share nothing mutable: any number may step at once on different threads,
 * and a session may move between threads from one step to the next, but
 * two steps of one session must never overlap.
 *
 * No enumeration: an unknown user, a wrong password and a locked mailbox
 * with a wrong password all give SASL_FAILED after the same work (PLAIN and
 * LOGIN verify against password_dummy_hash(); SCRAM for a user that does
 * not exist, or has no SCRAM keys yet, runs the whole exchange with a salt
 * and iteration count made up from the directory's instance secret and
 * the name, stable across processes, restarts and servers, and fails at the
 * proof). SASL_LOCKED comes only after correct credentials. */
#ifndef PILLAR_AUTH_SASL_H
#define PILLAR_AUTH_SASL_H

#include <stdbool.h>
#include <stddef.h>

#include "directory/directory.h"

struct config;
struct sasl_session;

/* Longest decoded client message. PLAIN with the longest authzid and
 * authcid (254 each) and the longest password (1024) is 1534 bytes; SCRAM
 * messages are far smaller. A longer message is SASL_MALFORMED. */
#define SASL_TOKEN_MAX 2048
/* ... and the base64 line that carries it. */
#define SASL_B64_MAX (4 * ((SASL_TOKEN_MAX + 2) / 3))

enum sasl_step {
	SASL_CONTINUE,  /* send *out_b64_r as a challenge, pass the answer back */
	SASL_OK,        /* authenticated as sasl_user() */
	SASL_FAILED,    /* wrong credentials (or unknown user: the same) */
	SASL_LOCKED,    /* right credentials, mailbox locked by the admin */
	SASL_TEMPFAIL,  /* the directory could not be read: try again later */
	SASL_MALFORMED, /* not valid for the mechanism: bad base64 or padding,
	                   a NUL inside a name, an authzid other than the
	                   authcid, more than SASL_TOKEN_MAX bytes, a SCRAM
	                   protocol error (bad nonce, channel binding, ...) */
};

/* The mechanisms to offer now, for CAPA's "SASL" line and EHLO's "AUTH":
 * space separated, strongest first. PLAIN and LOGIN only when
 * plaintext_ok (the plaintext_auth policy allows it on this connection);
 * SCRAM-SHA-256 always; SCRAM-SHA-256-PLUS only when have_cb (TLS 1.3, so
 * the tls-exporter channel binding exists). Returns a static string. */
const char *sasl_mechanisms(bool plaintext_ok, bool have_cb);

/* Whether mech (case-insensitive, RFC 4422 §3.1) is one sasl_mechanisms()
 * would offer with the same arguments. Check it before sasl_start. */
bool sasl_mech_allowed(const char *mech, bool plaintext_ok, bool have_cb);

/* Whether sasl_start would accept mech (any case) with cb_len bytes of
 * channel binding: returns the mechanism's canonical name, or NULL with
 * *error_r (the same errors sasl_start gives). Pure, for a caller that runs
 * the exchange in another process (auth/authc.h). */
const char *sasl_mech_check(const char *mech, size_t cb_len, const char **error_r);

/* Begin an exchange for mech (any case). cb/cb_len: the connection's
 * tls-exporter channel binding (RFC 9266: SSL_export_keying_material with
 * label "EXPORTER-Channel-Binding", no context, 32 bytes) when the
 * connection is TLS 1.3, else NULL/0. Give it for every mechanism, not
 * only -PLUS: SCRAM-SHA-256 needs it to detect a downgrade. cfg must
 * outlive the session. Returns 0 with *s_r, or -1 with *error_r for an
 * unknown mechanism or -PLUS without channel binding data. Policy
 * (plaintext_auth) is the caller's: check sasl_mech_allowed first. */
int sasl_start(const struct config *cfg, const char *mech, const void *cb, size_t cb_len,
               struct sasl_session **s_r, const char **error_r);

/* One step. in_b64 is the client's base64 line without CRLF: the initial
 * response of the AUTH command (RFC 4954 / RFC 5034; "=" means an empty
 * one) or the answer to a challenge ("" or "=" for an empty answer); NULL
 * when AUTH came without an initial response (then the first challenge is
 * returned). The caller handles "*" (cancel) itself and never passes it.
 *
 * On SASL_CONTINUE, *out_b64_r is a malloc'd base64 challenge (maybe "")
 * that the caller sends and frees. On any other result *out_b64_r is NULL
 * and the exchange is over: further steps return SASL_MALFORMED.
 * Runs on the pool (see above). */
enum sasl_step sasl_step(struct sasl_session *s, const char *in_b64, char **out_b64_r);

/* The canonical mailbox address (lower-case) after SASL_OK or
 * SASL_LOCKED; NULL before or otherwise. */
const char *sasl_user(const struct sasl_session *s);

/* The user name the client gave (authcid) once it is known, even when the
 * login failed, for the "auth failed user=..." log line; NULL if none yet.
 * Client text: escape it before logging. */
const char *sasl_login_name(const struct sasl_session *s);

/* Why the last step failed (SASL_MALFORMED, SASL_TEMPFAIL), for the log;
 * never for the client on SASL_FAILED. NULL if nothing to say. */
const char *sasl_error(const struct sasl_session *s);

/* The mechanism's canonical name ("SCRAM-SHA-256", ...). */
const char *sasl_mech_name(const struct sasl_session *s);

/* Wipe and free; NULLs *s. Safe on NULL. */
void sasl_free(struct sasl_session **s);

/* For unit tests only (RFC 7677's example exchange): make the next SCRAM
 * exchange of this session use server_nonce instead of a random one, and
 * keys (when not NULL) for any user name instead of the directory's, as if
 * a mailbox of that name existed, unlocked. Call right after sasl_start. */
void sasl_test_scram(struct sasl_session *s, const char *server_nonce,
                     const struct dir_scram *keys);

#endif
