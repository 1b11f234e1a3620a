/* APOP (RFC 1939 §7): the client proves it knows a shared secret by sending
 * MD5(timestamp || secret) for the timestamp in the server's greeting.
 *
 * The secret is a plaintext equivalent of the password, so APOP is off
 * unless the config says `apop = yes`, and only mailboxes that opted in
 * (`pillar user passwd ADDR --apop`) have a secret to check against.
 *
 * No enumeration: an unknown user, a mailbox without an APOP secret and a
 * wrong digest take the same path (an MD5 over a dummy secret, a
 * constant-time comparison) and give the same AUTH_FAILED. A correct digest
 * on a locked mailbox is AUTH_LOCKED, as for USER/PASS (auth/verify.h). */
#ifndef PILLAR_AUTH_APOP_H
#define PILLAR_AUTH_APOP_H

#include <stddef.h>

#include "auth/verify.h"
#include "directory/directory.h"

struct config;

/* "<pid.random.time@hostname>": 10 + 16 + 20 digits, 4 punctuation marks
 * and a host name of at most 253 characters (config.c checks it). */
#define APOP_TIMESTAMP_MAX 310
/* The digest is 32 hex digits (either case). */
#define APOP_DIGEST_HEX_LEN 32

/* Write a fresh msg-id style timestamp (RFC 1939 §7, RFC 822 msg-id) for
 * the greeting into buf: "<pid.random.time@hostname>", where random is 64
 * bits from the kernel's generator, so a timestamp is never reused (a
 * replayed digest is worthless). size should be > APOP_TIMESTAMP_MAX; a
 * longer host name is cut short rather than overflowing. */
void apop_timestamp(char *buf, size_t size, const char *hostname);

/* Check an APOP command. Opens this thread's directory connection
 * (directory/thread.h): call it on a pool thread. Returns the result; on
 * AUTH_OK and AUTH_LOCKED the canonical address is copied to address_r,
 * on AUTH_TEMPFAIL *error_r says why (for the log; valid until the next
 * call on this thread). A successful login
 * records the time of last login. */
enum auth_result apop_verify(const struct config *cfg, const char *user, const char *timestamp,
                             const char *digest_hex, char address_r[DIR_ADDRESS_MAX + 1],
                             const char **error_r);

/* The same as a pool job, like auth_verify_work (auth/verify.h). */
struct apop_request {
	const struct config *cfg;
	char user[DIR_ADDRESS_MAX + 1];
	char timestamp[APOP_TIMESTAMP_MAX + 1];
	char digest[APOP_DIGEST_HEX_LEN + 1];
	/* results */
	enum auth_result result;
	char address[DIR_ADDRESS_MAX + 1]; /* canonical form, on AUTH_OK/LOCKED */
	const char *error;                 /* on AUTH_TEMPFAIL, for the log */
	char error_buf[256];               /* where error points */
};

/* Fill a request. A user, timestamp or digest too long to store leaves the
 * field empty, and the request then fails like a wrong digest. */
void apop_request_init(struct apop_request *req, const struct config *cfg, const char *user,
                       const char *timestamp, const char *digest_hex);

/* The pool job: fills req->result, req->address and req->error. */
void apop_verify_work(void *req);

#endif
