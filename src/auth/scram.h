/* SCRAM-SHA-256 and SCRAM-SHA-256-PLUS, server side (RFC 5802, RFC 7677,
 * channel binding tls-exporter per RFC 9266): the message parsing and the
 * proof check, with no I/O and no directory. auth/sasl.h drives it and
 * finds the keys.
 *
 * Why this is written here rather than run through libgsasl's SCRAM server:
 * that server draws its nonce internally and cannot be given one, so RFC
 * 7677's example exchange cannot be replayed against it; it reports a
 * wrong nonce or channel binding like a wrong password; and it compares the
 * proof with memcmp. Key derivation (PBKDF2, SASLprep of the password) is
 * still libgsasl's: gsasl_scram_secrets_from_password.
 *
 * Exchange (no base64 here: messages are the decoded bytes):
 *     scram_server_new
 *     scram_client_first(client-first-message)   -> the user name to look up
 *     scram_server_first(keys)                   -> server-first-message
 *     scram_client_final(client-final-message)   -> proof ok or not,
 *                                                   server-final-message */
#ifndef PILLAR_AUTH_SCRAM_H
#define PILLAR_AUTH_SCRAM_H

#include <stdbool.h>
#include <stddef.h>

#include "directory/directory.h"

/* PBKDF2 rounds for new SCRAM keys (and the count shown for users that do
 * not exist, so the two look alike). RFC 7677 §4 asks for at least 4096.
 * The stored keys are open to offline guessing if the directory leaks, so
 * more is better; but every SCRAM login makes the *client* run all the
 * rounds, and POP3 clients log in every few minutes, often on phones.
 * 16384 (4x the minimum) costs a client about 10-40 ms per login and an
 * attacker four times what the RFC minimum would. */
#define SCRAM_ITERATIONS 16384
/* Salt length for new keys: 128 bits, unique per password set. */
#define SCRAM_SALT_LEN 16
/* Server nonce: 18 random bytes, 24 base64 characters. */
#define SCRAM_SNONCE_BYTES 18
/* Longest client nonce and user name (encoded) accepted. Real clients
 * send 24-32 character nonces; a name is at most an address. */
#define SCRAM_NONCE_MAX 256
#define SCRAM_NAME_MAX  (3 * DIR_ADDRESS_MAX) /* every ',' or '=' as =2C */
/* tls-exporter channel binding data is 32 bytes (RFC 9266 §2). */
#define SCRAM_CB_MAX 64

/* Derive SCRAM-SHA-256 keys for a password with a fresh random salt and
 * SCRAM_ITERATIONS rounds (the password is SASLprep'ed first, RFC 5802
 * §2.2). Slow on purpose: call it off the event loop. Returns 0, or -1
 * with *error_r when the password cannot be prepared (SASLprep refuses
 * some characters) or hashing failed. */
int scram_keys_from_password(const char *password, struct dir_scram *out, const char **error_r);

struct scram_server;

/* A new exchange. plus: the client chose SCRAM-SHA-256-PLUS. cb/cb_len:
 * the connection's tls-exporter channel binding, or NULL/0 when it has
 * none (not TLS 1.3). Give it for the plain mechanism too: a client that
 * says it could bind ("y") although the server offers -PLUS is then
 * refused, as RFC 5802 §6 requires against downgrades. */
struct scram_server *scram_server_new(bool plus, const void *cb, size_t cb_len);
void scram_server_free(struct scram_server **s);

/* For tests only: use this server nonce instead of a random one. Call
 * before scram_server_first. The nonce must be printable ASCII without
 * ','; it is copied. */
void scram_server_set_nonce(struct scram_server *s, const char *nonce);

/* Parse the client-first-message (len bytes). On success returns 0 and
 * *user_r, the user name (decoded and SASLprep'ed, valid until the server
 * is freed). Returns -1 with *error_r for malformed input or refused
 * options (a mandatory extension, an unsupported or missing channel
 * binding, an authzid other than the user name). */
int scram_client_first(struct scram_server *s, const char *msg, size_t len, const char **user_r,
                       const char **error_r);

/* The server-first-message for these keys (a user that does not exist
 * gets keys made up by the caller). Returns a malloc'd string. */
char *scram_server_first(struct scram_server *s, const struct dir_scram *keys);

/* Check the client-final-message. Returns -1 with *error_r when it is
 * malformed (bad syntax, a nonce other than ours, channel binding data
 * that does not match); otherwise 0 with *proof_ok_r, and when the proof
 * is right *server_final_r, the malloc'd server-final-message ("v=...").
 * The keys given to scram_server_first are wiped here. */
int scram_client_final(struct scram_server *s, const char *msg, size_t len, bool *proof_ok_r,
                       char **server_final_r, const char **error_r);

#endif
