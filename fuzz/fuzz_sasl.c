/* libFuzzer target: SASL (auth/sasl.h), SCRAM messages (auth/scram.h) and
 * strict base64 (auth/base64.h), against a real SQLite directory.
 *
 * Input: one mode octet, then the client's messages separated by '\n'
 * (at most MAX_MSGS).
 *   bits 0-1  mechanism: PLAIN, LOGIN, SCRAM-SHA-256, SCRAM-SHA-256-PLUS
 *   bit 2     the connection has tls-exporter channel binding data
 *   bit 3     messages are sent as they are (the client's base64 lines);
 *             otherwise each is base64-encoded here first, so the
 *             mechanism's own parser sees the fuzzed octets
 *   bit 4     AUTH without an initial response (first step gets NULL)
 *   bit 5     SCRAM with RFC 7677's nonce and keys (sasl_test_scram), so
 *             the RFC's example exchange succeeds
 * e.g. mode '@' is PLAIN with an initial response, 'A' LOGIN, 'B' SCRAM,
 * 'b' SCRAM with the RFC 7677 keys, 'G' SCRAM-SHA-256-PLUS with binding.
 *
 * The instance (fuzz/instance.h) has FUZZ_USER (password FUZZ_PASSWORD,
 * SCRAM keys) and FUZZ_LOCKED_USER (same password, locked).
 *
 * Checked besides the sanitizers' findings:
 *   - SASL_CONTINUE comes with a strict-base64 challenge, every other
 *     result without one, and ends the exchange (the next step is
 *     SASL_MALFORMED);
 *   - SASL_OK only as FUZZ_USER, SASL_LOCKED only as FUZZ_LOCKED_USER, and
 *     sasl_user is NULL otherwise;
 *   - SCRAM against the directory never succeeds (nobody here can compute
 *     a proof); with the RFC 7677 keys, only for the RFC's exact messages;
 *   - the SCRAM layer alone, driven with the first two messages and RFC
 *     7677's keys, accepts a proof only for exactly the RFC's messages and
 *     then answers exactly the RFC's server-final-message;
 *   - base64: a string that decodes re-encodes to itself (one encoding per
 *     byte string), and encoded bytes decode back to themselves. */
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/sha.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "auth/base64.h"
#include "auth/sasl.h"
#include "auth/scram.h"
#include "common.h"
#include "instance.h"

#define MAX_MSGS 6

/* RFC 7677 §3. */
#define RFC_PASSWORD     "pencil"
#define RFC_SALT_B64     "W22ZaJ0SNY7soEsUEjb6gQ=="
#define RFC_ITERATIONS   4096
#define RFC_CLIENT_FIRST "n,,n=user,r=rOprNGfwEbeRWgbNEkqO"
#define RFC_SERVER_NONCE "%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0"
#define RFC_CLIENT_FINAL                                                                           \
	"c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,"                             \
	"p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ="
#define RFC_SERVER_FINAL "v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4="

static const char *const mech_names[] = {"PLAIN", "LOGIN", "SCRAM-SHA-256", "SCRAM-SHA-256-PLUS"};

static struct fuzz_instance *fi;
static struct dir_scram rfc_keys;
static const uint8_t cb_data[32] = "channel binding data, 32 octets";

/* SCRAM keys from a password (RFC 5802 §3), for RFC 7677's example. */
static void make_rfc_keys(void)
{
	uint8_t salted[32], client_key[32];
	unsigned int len = 0;
	char *salt;
	size_t salt_len;

	if (base64_decode(RFC_SALT_B64, strlen(RFC_SALT_B64), &salt, &salt_len) < 0 ||
	    salt_len > sizeof(rfc_keys.salt))
		abort();
	memcpy(rfc_keys.salt, salt, salt_len);
	rfc_keys.salt_len = salt_len;
	rfc_keys.iterations = RFC_ITERATIONS;
	free(salt);
	if (PKCS5_PBKDF2_HMAC(RFC_PASSWORD, strlen(RFC_PASSWORD), rfc_keys.salt, (int)salt_len,
	                      RFC_ITERATIONS, EVP_sha256(), sizeof(salted), salted) != 1 ||
	    HMAC(EVP_sha256(), salted, sizeof(salted), (const uint8_t *)"Client Key", 10,
	         client_key, &len) == NULL ||
	    HMAC(EVP_sha256(), salted, sizeof(salted), (const uint8_t *)"Server Key", 10,
	         rfc_keys.server_key, &len) == NULL)
		abort();
	SHA256(client_key, sizeof(client_key), rfc_keys.stored_key);
}

int LLVMFuzzerInitialize(int *argc, char ***argv);

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc;
	(void)argv;
	fi = fuzz_instance_init(NULL, false);
	make_rfc_keys();
	return 0;
}

static void check_base64(const char *s, size_t len)
{
	char *dec = NULL, *enc;
	size_t dec_len = 0;

	if (base64_decode(s, len, &dec, &dec_len) == 0) {
		enc = base64_encode(dec, dec_len);
		FUZZ_CHECK(strlen(enc) == len && memcmp(enc, s, len) == 0,
		           "base64 \"%.*s\" decodes but is not the encoding of what it decodes to",
		           (int)len, s);
		free(enc);
		free(dec);
	}
	enc = base64_encode(s, len);
	FUZZ_CHECK(base64_decode(enc, strlen(enc), &dec, &dec_len) == 0 && dec_len == len &&
	               memcmp(dec, s, len) == 0,
	           "base64 of %zu octets does not decode back", len);
	free(dec);
	free(enc);
}

/* The SCRAM layer on its own, with RFC 7677's nonce and keys. */
static void check_scram_layer(bool plus, bool cb, const char *m1, size_t l1, const char *m2,
                              size_t l2)
{
	struct scram_server *ss =
	    scram_server_new(plus, cb ? cb_data : NULL, cb ? sizeof(cb_data) : 0);
	const char *user = NULL, *error = NULL;
	bool ok = false;
	char *final = NULL;

	scram_server_set_nonce(ss, RFC_SERVER_NONCE);
	if (scram_client_first(ss, m1, l1, &user, &error) == 0) {
		FUZZ_CHECK(user != NULL && user[0] != '\0', "SCRAM accepted an empty user name");
		char *first = scram_server_first(ss, &rfc_keys);
		FUZZ_CHECK(strncmp(first, "r=", 2) == 0 &&
		               strstr(first, RFC_SERVER_NONCE ",s=") != NULL,
		           "server-first-message \"%s\"", first);
		free(first);
		if (m2 != NULL && scram_client_final(ss, m2, l2, &ok, &final, &error) == 0 && ok) {
			FUZZ_CHECK(l1 == strlen(RFC_CLIENT_FIRST) &&
			               memcmp(m1, RFC_CLIENT_FIRST, l1) == 0 &&
			               l2 == strlen(RFC_CLIENT_FINAL) &&
			               memcmp(m2, RFC_CLIENT_FINAL, l2) == 0,
			           "SCRAM proof accepted for messages other than RFC 7677's");
			FUZZ_CHECK(final != NULL && strcmp(final, RFC_SERVER_FINAL) == 0,
			           "server-final-message \"%s\"", final != NULL ? final : "(null)");
		}
		free(final);
	}
	scram_server_free(&ss);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 1)
		return 0;

	unsigned mode = data[0];
	unsigned mech = mode & 3;
	bool cb = mode & 4, raw = mode & 8, no_ir = mode & 16, rfc = (mode & 32) && mech >= 2;
	const char *msgs[MAX_MSGS];
	size_t lens[MAX_MSGS], n = 0;
	const char *p = (const char *)data + 1, *end = (const char *)data + size;

	while (n < MAX_MSGS && p <= end) {
		const char *nl = memchr(p, '\n', (size_t)(end - p));
		const char *stop = nl != NULL ? nl : end;
		msgs[n] = p;
		lens[n++] = (size_t)(stop - p);
		p = stop + 1;
	}
	check_base64((const char *)data + 1, size - 1);
	if (mech >= 2)
		check_scram_layer(mech == 3, cb, msgs[0], lens[0], n > 1 ? msgs[1] : NULL,
		                  n > 1 ? lens[1] : 0);

	struct sasl_session *s = NULL;
	const char *error = NULL;
	if (sasl_start(fi->cfg, mech_names[mech], cb ? cb_data : NULL, cb ? sizeof(cb_data) : 0, &s,
	               &error) < 0) {
		FUZZ_CHECK(mech == 3 && !cb && error != NULL, "sasl_start %s refused: %s",
		           mech_names[mech], error != NULL ? error : "(no error)");
		return 0;
	}
	FUZZ_CHECK(strcmp(sasl_mech_name(s), mech_names[mech]) == 0, "mechanism name %s",
	           sasl_mech_name(s));
	if (rfc)
		sasl_test_scram(s, RFC_SERVER_NONCE, &rfc_keys);

	enum sasl_step r = SASL_CONTINUE;
	for (size_t i = no_ir ? 0 : 1; i <= n && r == SASL_CONTINUE; i++) {
		char *line, *out = NULL;
		if (i == 0) {
			line = NULL; /* AUTH without an initial response */
		} else if (raw) {
			line = strndup(msgs[i - 1], lens[i - 1]);
		} else {
			line = base64_encode(msgs[i - 1], lens[i - 1]);
		}
		r = sasl_step(s, line, &out);
		FUZZ_CHECK(r >= SASL_CONTINUE && r <= SASL_MALFORMED, "sasl_step result %d",
		           (int)r);
		if (r == SASL_CONTINUE) {
			char *dec;
			size_t dec_len;
			FUZZ_CHECK(out != NULL &&
			               base64_decode(out, strlen(out), &dec, &dec_len) == 0,
			           "challenge is not strict base64");
			free(dec);
		} else {
			FUZZ_CHECK(out == NULL, "a challenge with a final result");
		}
		free(out);
		free(line);
	}

	const char *user = sasl_user(s);
	switch (r) {
	case SASL_OK:
		FUZZ_CHECK(mech < 2 || rfc, "SCRAM succeeded without a proof anyone here can make");
		if (rfc)
			FUZZ_CHECK(user != NULL && strcmp(user, "user") == 0,
			           "RFC 7677 exchange logged in as %s", user ? user : "(null)");
		else
			FUZZ_CHECK(user != NULL && strcmp(user, FUZZ_USER) == 0,
			           "%s logged in as %s", mech_names[mech], user ? user : "(null)");
		break;
	case SASL_LOCKED:
		FUZZ_CHECK(mech < 2, "SCRAM reported a locked mailbox without a proof");
		FUZZ_CHECK(user != NULL && strcmp(user, FUZZ_LOCKED_USER) == 0, "locked as %s",
		           user ? user : "(null)");
		break;
	case SASL_CONTINUE:
		/* Ran out of messages: the exchange is simply abandoned. */
		break;
	default:
		FUZZ_CHECK(user == NULL, "sasl_user %s after a failure", user);
		break;
	}
	if (r != SASL_CONTINUE) {
		char *out = NULL;
		enum sasl_step again = sasl_step(s, "", &out);
		FUZZ_CHECK(again == SASL_MALFORMED && out == NULL, "a step after the end gave %d",
		           (int)again);
	}
	sasl_free(&s);
	FUZZ_CHECK(s == NULL, "sasl_free did not clear the pointer");
	return 0;
}
