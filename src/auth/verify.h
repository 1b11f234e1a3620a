/* Checking a user name and password against the directory: the work done for
 * USER/PASS and SASL PLAIN/LOGIN (auth/sasl.h). Runs on a pool thread (it hashes),
 * with one directory connection per thread.
 *
 * Unknown users, wrong passwords and malformed names take the same path and
 * cost: a hash verification (against a dummy hash when there is no user), so
 * neither the reply nor its timing tells which users exist. */
#ifndef PILLAR_AUTH_VERIFY_H
#define PILLAR_AUTH_VERIFY_H

#include <stdbool.h>

#include "directory/directory.h"

struct config;

enum auth_result {
	AUTH_OK,
	AUTH_FAILED,   /* unknown user or wrong password: indistinguishable */
	AUTH_LOCKED,   /* correct password, mailbox locked by the admin */
	AUTH_TEMPFAIL, /* the directory could not be read */
};

/* Longest password accepted; longer ones fail like wrong ones. */
#define AUTH_PASSWORD_MAX 1024

struct auth_request {
	const struct config *cfg;
	char user[DIR_ADDRESS_MAX + 1];
	char password[AUTH_PASSWORD_MAX + 1];
	/* results */
	enum auth_result result;
	bool needs_keys; /* right password, no SCRAM keys yet: auth_verify_finish */
	char address[DIR_ADDRESS_MAX + 1]; /* canonical form, on AUTH_OK/LOCKED */
	char hash[DIR_HASH_MAX + 1];       /* the hash checked, for auth_verify_finish */
	const char *error;                 /* on AUTH_TEMPFAIL, for the log */
	char error_buf[256];               /* where error points */
};

/* Fill a request; a user or password too long to store makes the request
 * fail (after the same work as any other failure). */
void auth_request_init(struct auth_request *req, const struct config *cfg, const char *user,
                       const char *password);

/* On a pool thread: fills req->result and req->address, and records the
 * login time of a successful login. The password is wiped unless
 * needs_keys: a right password for a mailbox without SCRAM keys (an
 * imported hash), which auth_verify_finish still needs. */
void auth_verify_check(struct auth_request *req);

/* With needs_keys: computes the SCRAM keys from the password and stores
 * them (auth/scram.h), so SCRAM works from then on, then wipes the
 * password. The auth process runs it after the reply is sent: the keys
 * take tens of milliseconds of CPU to make. */
void auth_verify_finish(struct auth_request *req);

/* Both, one after the other. */
void auth_verify_work(struct auth_request *req);

/* Wipe the password from memory. */
void auth_request_clear(struct auth_request *req);

#endif
