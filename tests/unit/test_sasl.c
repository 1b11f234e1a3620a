/* Unit tests for src/auth/sasl.c, scram.c and base64.c, against a real
 * SQLite directory in a temporary state dir. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <gsasl.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <pthread.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "auth/base64.h"
#include "auth/password.h"
#include "auth/sasl.h"
#include "auth/scram.h"
#include "core/config.h"
#include "core/util.h"
#include "directory/directory.h"
#include "directory/thread.h"

/* RFC 7677 §3. */
#define RFC_PASSWORD     "pencil"
#define RFC_SALT_B64     "W22ZaJ0SNY7soEsUEjb6gQ=="
#define RFC_CLIENT_FIRST "n,,n=user,r=rOprNGfwEbeRWgbNEkqO"
#define RFC_SERVER_NONCE "%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0"
#define RFC_SERVER_FIRST                                                                           \
	"r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096"
#define RFC_CLIENT_FINAL                                                                           \
	"c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,"                             \
	"p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ="
#define RFC_SERVER_FINAL "v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4="

#define GOOD_PW "correct horse"

struct fixture {
	char dir[64];
	struct config cfg;
};

static char *b64(const char *s)
{
	return base64_encode(s, strlen(s));
}

static char *b64n(const char *s, size_t len)
{
	return base64_encode(s, len);
}

/* Decode a challenge; fails the test if it is not base64. */
static char *unb64(const char *s)
{
	char *out;
	size_t len;

	if (base64_decode(s, strlen(s), &out, &len) < 0)
		fail_msg("challenge is not base64: '%s'", s);
	return out;
}

static void add_user(struct dir *d, const char *address, const char *pw, bool scram)
{
	const char *err;
	char *hash = password_hash(pw, &err);
	struct dir_scram keys;

	assert_non_null(hash);
	if (dir_user_add(d, address, hash, &err) < 0)
		fail_msg("%s", err);
	if (scram) {
		assert_int_equal(scram_keys_from_password(pw, &keys, &err), 0);
		assert_int_equal(dir_user_set_credentials(d, address, hash, &keys, NULL, &err), 0);
	}
	free(hash);
}

static int setup(void **state)
{
	struct fixture *fx = xcalloc(1, sizeof(*fx));
	struct dir *d;
	const char *err;
	sqlite3 *db;
	char *path;

	snprintf(fx->dir, sizeof(fx->dir), "/tmp/pillar-test-sasl-XXXXXX");
	if (mkdtemp(fx->dir) == NULL)
		return -1;
	fx->cfg.state_dir = fx->dir;
	fx->cfg.directory = (char *)"sqlite";
	if (dir_open(&fx->cfg, true, &d, &err) < 0 || dir_domain_add(d, "example.org", &err) < 0)
		return -1;
	add_user(d, "alice@example.org", GOOD_PW, true);
	add_user(d, "imported@example.org", GOOD_PW, false); /* no SCRAM keys */
	add_user(d, "locked@example.org", GOOD_PW, true);
	dir_close(&d);
	path = config_secrets_path(&fx->cfg);
	if (sqlite3_open(path, &db) != SQLITE_OK ||
	    sqlite3_exec(db,
	                 "UPDATE credentials SET locked = 1 WHERE address = 'locked@example.org'",
	                 NULL, NULL, NULL) != SQLITE_OK)
		return -1;
	sqlite3_close(db);
	free(path);
	*state = fx;
	return 0;
}

static int teardown(void **state)
{
	struct fixture *fx = *state;
	char *cmd = xasprintf("rm -rf '%s'", fx->dir);

	dir_thread_drop();
	if (system(cmd) != 0)
		fprintf(stderr, "cleanup of %s failed\n", fx->dir);
	free(cmd);
	free(fx);
	return 0;
}

static struct sasl_session *start(struct fixture *fx, const char *mech, const void *cb,
                                  size_t cb_len)
{
	struct sasl_session *s = NULL;
	const char *err = NULL;

	if (sasl_start(&fx->cfg, mech, cb, cb_len, &s, &err) < 0)
		fail_msg("sasl_start %s: %s", mech, err);
	return s;
}

/* One step with a raw (not yet encoded) message; returns the result and
 * the decoded challenge in *out_r (or NULL). */
static enum sasl_step step_raw(struct sasl_session *s, const char *msg, size_t len, char **out_r)
{
	char *in = b64n(msg, len), *out = NULL;
	enum sasl_step r = sasl_step(s, len == 0 ? "=" : in, &out);

	free(in);
	*out_r = out != NULL ? unb64(out) : NULL;
	if (r != SASL_CONTINUE)
		assert_null(out);
	free(out);
	return r;
}

static enum sasl_step step_str(struct sasl_session *s, const char *msg, char **out_r)
{
	return step_raw(s, msg, strlen(msg), out_r);
}

/* ---- SCRAM ---- */

static void rfc_keys(struct dir_scram *keys)
{
	char salted[32], client_key[32], *salt;
	size_t salt_len;

	memset(keys, 0, sizeof(*keys));
	assert_int_equal(base64_decode(RFC_SALT_B64, strlen(RFC_SALT_B64), &salt, &salt_len), 0);
	memcpy(keys->salt, salt, salt_len);
	keys->salt_len = salt_len;
	keys->iterations = 4096;
	free(salt);
	assert_int_equal(gsasl_scram_secrets_from_password(
	                     GSASL_HASH_SHA256, RFC_PASSWORD, 4096, (const char *)keys->salt,
	                     keys->salt_len, salted, client_key, (char *)keys->server_key,
	                     (char *)keys->stored_key),
	                 GSASL_OK);
}

static struct sasl_session *rfc_session(struct fixture *fx)
{
	struct sasl_session *s = start(fx, "SCRAM-SHA-256", NULL, 0);
	struct dir_scram keys;

	rfc_keys(&keys);
	sasl_test_scram(s, RFC_SERVER_NONCE, &keys);
	return s;
}

static void test_rfc7677_example(void **state)
{
	struct sasl_session *s = rfc_session(*state);
	char *out;

	assert_string_equal(sasl_mech_name(s), "SCRAM-SHA-256");
	assert_int_equal(step_str(s, RFC_CLIENT_FIRST, &out), SASL_CONTINUE);
	assert_string_equal(out, RFC_SERVER_FIRST);
	free(out);
	assert_int_equal(step_str(s, RFC_CLIENT_FINAL, &out), SASL_CONTINUE);
	assert_string_equal(out, RFC_SERVER_FINAL);
	free(out);
	assert_null(sasl_user(s)); /* not before the client's last answer */
	/* The client's empty answer to the server-final challenge. */
	assert_int_equal(step_raw(s, "", 0, &out), SASL_OK);
	assert_null(out);
	assert_string_equal(sasl_user(s), "user");
	assert_string_equal(sasl_login_name(s), "user");
	/* Over: no more steps. */
	assert_int_equal(step_raw(s, "", 0, &out), SASL_MALFORMED);
	sasl_free(&s);
	assert_null(s);
}

static void test_rfc7677_without_initial_response(void **state)
{
	struct sasl_session *s = rfc_session(*state);
	char *out = NULL, *dec;

	/* AUTH SCRAM-SHA-256 with no initial response: an empty challenge. */
	assert_int_equal(sasl_step(s, NULL, &out), SASL_CONTINUE);
	assert_string_equal(out, "");
	free(out);
	assert_int_equal(step_str(s, RFC_CLIENT_FIRST, &dec), SASL_CONTINUE);
	assert_string_equal(dec, RFC_SERVER_FIRST);
	free(dec);
	/* A second NULL is not an answer. */
	assert_int_equal(sasl_step(s, NULL, &out), SASL_MALFORMED);
	assert_null(out);
	sasl_free(&s);
}

static void test_scram_bad_proof(void **state)
{
	struct sasl_session *s = rfc_session(*state);
	char final[] = RFC_CLIENT_FINAL, *out;

	/* RFC 5802 §5.1: a proof that does not verify is a failed login. */
	final[strlen(final) - 5] = final[strlen(final) - 5] == 'A' ? 'B' : 'A';
	assert_int_equal(step_str(s, RFC_CLIENT_FIRST, &out), SASL_CONTINUE);
	free(out);
	assert_int_equal(step_str(s, final, &out), SASL_FAILED);
	assert_null(out);
	assert_null(sasl_user(s));
	sasl_free(&s);
}

static void test_scram_bad_nonce(void **state)
{
	static const char *const finals[] = {
	    /* the client's nonce without ours */
	    "c=biws,r=rOprNGfwEbeRWgbNEkqO,p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=",
	    /* ours changed by one character */
	    "c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k1,"
	    "p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=",
	    /* one character longer */
	    "c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0x,"
	    "p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=",
	};

	for (size_t i = 0; i < sizeof(finals) / sizeof(finals[0]); i++) {
		struct sasl_session *s = rfc_session(*state);
		char *out;

		assert_int_equal(step_str(s, RFC_CLIENT_FIRST, &out), SASL_CONTINUE);
		free(out);
		assert_int_equal(step_str(s, finals[i], &out), SASL_MALFORMED);
		assert_non_null(strstr(sasl_error(s), "nonce"));
		sasl_free(&s);
	}
}

static void test_scram_malformed(void **state)
{
	static const char *const firsts[] = {
	    "",                             /* empty */
	    "x,,n=user,r=abc",              /* bad cbind flag */
	    "n,n=user,r=abc",               /* no authzid field */
	    "n,,m=ext,n=user,r=abc",        /* mandatory extension */
	    "n,,n=,r=abc",                  /* empty name */
	    "n,,n=us=er,r=abc",             /* bad saslname escape */
	    "n,,n=user,r=",                 /* empty nonce */
	    "n,,n=user",                    /* no nonce */
	    "n,,n=user,r=abc,",             /* trailing comma */
	    "n,,n=user,r=abc,1=x",          /* extension name not a letter */
	    "n,a=other,n=user,r=abc",       /* authzid other than the user */
	    "p=tls-exporter,,n=user,r=abc", /* binding with the plain mechanism */
	    "p=tls-unique,,n=user,r=abc",   /* unsupported binding */
	    "n,,n=user,r=ab\x7f",           /* nonce not printable */
	};

	for (size_t i = 0; i < sizeof(firsts) / sizeof(firsts[0]); i++) {
		struct sasl_session *s = rfc_session(*state);
		char *out;

		if (step_str(s, firsts[i], &out) != SASL_MALFORMED)
			fail_msg("accepted client-first '%s'", firsts[i]);
		assert_null(out);
		sasl_free(&s);
	}
	/* A NUL inside the message. */
	{
		struct sasl_session *s = rfc_session(*state);
		char *out;

		assert_int_equal(step_raw(s, "n,,n=us\0er,r=abc", 16, &out), SASL_MALFORMED);
		sasl_free(&s);
	}
	/* Accepted: an authzid equal to the user, escapes, extensions. */
	{
		struct sasl_session *s = rfc_session(*state);
		char *out;

		assert_int_equal(step_str(s, "n,a=User,n=user,r=abc,x=ext", &out), SASL_CONTINUE);
		free(out);
		sasl_free(&s);
		s = rfc_session(*state);
		assert_int_equal(step_str(s, "n,,n=a=2Cb=3Dc,r=abc", &out), SASL_CONTINUE);
		assert_string_equal(sasl_login_name(s), "a,b=c");
		free(out);
		sasl_free(&s);
	}
	/* client-final: bad channel binding attribute, proof not base64, a
	 * proof of the wrong length, no proof, a non-empty final answer. */
	{
		static const char *const finals[] = {
		    "c=eSws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,"
		    "p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=",
		    "c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,p=!!!!",
		    "c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,p=dHzb",
		    "c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0",
		    "r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,c=biws,"
		    "p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=",
		};

		for (size_t i = 0; i < sizeof(finals) / sizeof(finals[0]); i++) {
			struct sasl_session *s = rfc_session(*state);
			char *out;

			assert_int_equal(step_str(s, RFC_CLIENT_FIRST, &out), SASL_CONTINUE);
			free(out);
			if (step_str(s, finals[i], &out) != SASL_MALFORMED)
				fail_msg("accepted client-final '%s'", finals[i]);
			sasl_free(&s);
		}
	}
	{
		struct sasl_session *s = rfc_session(*state);
		char *out;

		assert_int_equal(step_str(s, RFC_CLIENT_FIRST, &out), SASL_CONTINUE);
		free(out);
		assert_int_equal(step_str(s, RFC_CLIENT_FINAL, &out), SASL_CONTINUE);
		free(out);
		assert_int_equal(step_str(s, "more", &out), SASL_MALFORMED);
		sasl_free(&s);
	}
}

/* A SCRAM client, enough to log in: builds client-first, then the
 * client-final for the server-first it gets. gs2 is the gs2-header; cb
 * the binding data to put after it in c=. Returns the result of the proof
 * step and the server-final in *final_r. */
static enum sasl_step scram_login(struct sasl_session *s, const char *gs2, const void *cb,
                                  size_t cb_len, const char *user, const char *pw,
                                  char **server_first_r, char **final_r)
{
	char *first_bare = xasprintf("n=%s,r=clientnonce123", user);
	char *first = xasprintf("%s%s", gs2, first_bare);
	char *sf, *cbind, *cbind_b64, *without_proof, *auth, *final, *proof_b64, *salt;
	char salted[32], client_key[32], server_key[32], stored_key[32];
	unsigned char sig[32], proof[32];
	unsigned int sig_len;
	size_t salt_len, gs2_len = strlen(gs2);
	const char *r, *sp, *ip;
	enum sasl_step res;

	*final_r = NULL;
	res = step_str(s, first, &sf);
	free(first);
	if (res != SASL_CONTINUE) {
		free(first_bare);
		return res;
	}
	/* r=...,s=...,i=... */
	r = strstr(sf, "r=");
	sp = strstr(sf, ",s=");
	ip = strstr(sf, ",i=");
	assert_true(r == sf && sp != NULL && ip != NULL);
	assert_int_equal(base64_decode(sp + 3, (size_t)(ip - sp - 3), &salt, &salt_len), 0);
	assert_int_equal(gsasl_scram_secrets_from_password(
	                     GSASL_HASH_SHA256, pw, (unsigned)strtoul(ip + 3, NULL, 10), salt,
	                     salt_len, salted, client_key, server_key, stored_key),
	                 GSASL_OK);
	free(salt);
	cbind = xmalloc(gs2_len + cb_len);
	memcpy(cbind, gs2, gs2_len);
	if (cb_len > 0)
		memcpy(cbind + gs2_len, cb, cb_len);
	cbind_b64 = base64_encode(cbind, gs2_len + cb_len);
	free(cbind);
	without_proof = xasprintf("c=%s,r=%.*s", cbind_b64, (int)(sp - r - 2), r + 2);
	free(cbind_b64);
	auth = xasprintf("%s,%s,%s", first_bare, sf, without_proof);
	HMAC(EVP_sha256(), stored_key, 32, (unsigned char *)auth, strlen(auth), sig, &sig_len);
	for (int i = 0; i < 32; i++)
		proof[i] = (unsigned char)client_key[i] ^ sig[i];
	proof_b64 = base64_encode(proof, 32);
	final = xasprintf("%s,p=%s", without_proof, proof_b64);
	res = step_str(s, final, final_r);
	if (server_first_r != NULL)
		*server_first_r = sf;
	else
		free(sf);
	free(first_bare);
	free(without_proof);
	free(auth);
	free(proof_b64);
	free(final);
	return res;
}

static void test_scram_directory_user(void **state)
{
	struct fixture *fx = *state;
	struct sasl_session *s = start(fx, "scram-sha-256", NULL, 0);
	char *final, *out;

	assert_int_equal(scram_login(s, "n,,", NULL, 0, "Alice@Example.org", GOOD_PW, NULL, &final),
	                 SASL_CONTINUE);
	assert_true(strncmp(final, "v=", 2) == 0);
	free(final);
	assert_int_equal(step_raw(s, "", 0, &out), SASL_OK);
	assert_string_equal(sasl_user(s), "alice@example.org");
	sasl_free(&s);

	s = start(fx, "SCRAM-SHA-256", NULL, 0);
	assert_int_equal(scram_login(s, "n,,", NULL, 0, "alice@example.org", "wrong", NULL, &final),
	                 SASL_FAILED);
	assert_null(final);
	assert_string_equal(sasl_login_name(s), "alice@example.org");
	sasl_free(&s);

	/* Locked shows only after the right proof, and gives no v=. */
	s = start(fx, "SCRAM-SHA-256", NULL, 0);
	assert_int_equal(
	    scram_login(s, "n,,", NULL, 0, "locked@example.org", GOOD_PW, NULL, &final),
	    SASL_LOCKED);
	assert_string_equal(sasl_user(s), "locked@example.org");
	sasl_free(&s);
	s = start(fx, "SCRAM-SHA-256", NULL, 0);
	assert_int_equal(
	    scram_login(s, "n,,", NULL, 0, "locked@example.org", "wrong", NULL, &final),
	    SASL_FAILED);
	sasl_free(&s);
}

static char *server_first_for(struct fixture *fx, const char *user)
{
	struct sasl_session *s = start(fx, "SCRAM-SHA-256", NULL, 0);
	char *first = xasprintf("n,,n=%s,r=abcdef", user), *sf, *comma;

	assert_int_equal(step_str(s, first, &sf), SASL_CONTINUE);
	free(first);
	sasl_free(&s);
	/* drop the nonce: r=...,s=...,i=... -> s=...,i=... */
	comma = strchr(sf, ',');
	assert_non_null(comma);
	memmove(sf, comma + 1, strlen(comma + 1) + 1);
	return sf;
}

/* An unknown user, or one without SCRAM keys yet, gets the whole exchange
 * with a stable made-up salt and the usual iteration count, and fails only
 * at the proof. */
static void test_scram_unknown_user(void **state)
{
	struct fixture *fx = *state;
	char *a, *b, *c, *real, *final, expect_i[32];
	struct sasl_session *s;

	a = server_first_for(fx, "nobody@example.org");
	b = server_first_for(fx, "nobody@example.org");
	c = server_first_for(fx, "NOBODY@example.org");
	assert_string_equal(a, b);
	assert_string_equal(a, c);
	snprintf(expect_i, sizeof(expect_i), ",i=%u", SCRAM_ITERATIONS);
	assert_non_null(strstr(a, expect_i));
	/* The salt looks like a real one: same length. */
	real = server_first_for(fx, "alice@example.org");
	assert_int_equal(strlen(strchr(a, ',')), strlen(strchr(real, ',')));
	assert_int_equal(strchr(a, ',') - a, strchr(real, ',') - real);
	free(b);
	free(c);
	/* Another name, another salt. */
	b = server_first_for(fx, "nobody2@example.org");
	assert_string_not_equal(a, b);
	/* Not even an address: the same path. */
	c = server_first_for(fx, "no-domain");
	assert_non_null(strstr(c, expect_i));
	free(a);
	free(b);
	free(c);
	free(real);

	s = start(fx, "SCRAM-SHA-256", NULL, 0);
	assert_int_equal(
	    scram_login(s, "n,,", NULL, 0, "nobody@example.org", GOOD_PW, NULL, &final),
	    SASL_FAILED);
	assert_null(sasl_user(s));
	sasl_free(&s);
	s = start(fx, "SCRAM-SHA-256", NULL, 0);
	assert_int_equal(
	    scram_login(s, "n,,", NULL, 0, "imported@example.org", GOOD_PW, NULL, &final),
	    SASL_FAILED);
	sasl_free(&s);
}

/* ---- SCRAM-SHA-256-PLUS ---- */

static void test_scram_plus(void **state)
{
	struct fixture *fx = *state;
	struct sasl_session *s = NULL;
	uint8_t cb[32], other[32];
	const char *err;
	char *final, *out;

	memset(cb, 0x5a, sizeof(cb));
	memset(other, 0xa5, sizeof(other));
	assert_int_equal(sasl_start(&fx->cfg, "SCRAM-SHA-256-PLUS", NULL, 0, &s, &err), -1);
	assert_null(s);

	s = start(fx, "SCRAM-SHA-256-PLUS", cb, sizeof(cb));
	assert_int_equal(scram_login(s, "p=tls-exporter,,", cb, sizeof(cb), "alice@example.org",
	                             GOOD_PW, NULL, &final),
	                 SASL_CONTINUE);
	free(final);
	assert_int_equal(step_raw(s, "", 0, &out), SASL_OK);
	sasl_free(&s);

	/* Binding data of another TLS connection: a man in the middle. */
	s = start(fx, "SCRAM-SHA-256-PLUS", cb, sizeof(cb));
	assert_int_equal(scram_login(s, "p=tls-exporter,,", other, sizeof(other),
	                             "alice@example.org", GOOD_PW, NULL, &final),
	                 SASL_MALFORMED);
	sasl_free(&s);

	/* -PLUS without binding from the client. */
	s = start(fx, "SCRAM-SHA-256-PLUS", cb, sizeof(cb));
	assert_int_equal(scram_login(s, "n,,", NULL, 0, "alice@example.org", GOOD_PW, NULL, &final),
	                 SASL_MALFORMED);
	sasl_free(&s);

	/* Downgrade: the client could bind ("y") while the server offers
	 * -PLUS (it has binding data). Without binding data, "y" is fine. */
	s = start(fx, "SCRAM-SHA-256", cb, sizeof(cb));
	assert_int_equal(scram_login(s, "y,,", NULL, 0, "alice@example.org", GOOD_PW, NULL, &final),
	                 SASL_MALFORMED);
	sasl_free(&s);
	s = start(fx, "SCRAM-SHA-256", NULL, 0);
	assert_int_equal(scram_login(s, "y,,", NULL, 0, "alice@example.org", GOOD_PW, NULL, &final),
	                 SASL_CONTINUE);
	free(final);
	sasl_free(&s);
	/* The plain mechanism on a TLS 1.3 connection, client not binding. */
	s = start(fx, "SCRAM-SHA-256", cb, sizeof(cb));
	assert_int_equal(scram_login(s, "n,,", NULL, 0, "alice@example.org", GOOD_PW, NULL, &final),
	                 SASL_CONTINUE);
	free(final);
	sasl_free(&s);
}

/* ---- PLAIN ---- */

static enum sasl_step plain(struct fixture *fx, const char *msg, size_t len,
                            struct sasl_session **s_r)
{
	struct sasl_session *s = start(fx, "PLAIN", NULL, 0);
	enum sasl_step r;
	char *out;

	r = step_raw(s, msg, len, &out);
	assert_null(out);
	if (s_r != NULL)
		*s_r = s;
	else
		sasl_free(&s);
	return r;
}

#define PLAIN_MSG(s) s, sizeof(s) - 1

static void test_plain(void **state)
{
	struct fixture *fx = *state;
	struct sasl_session *s;

	assert_int_equal(plain(fx, PLAIN_MSG("\0alice@example.org\0" GOOD_PW), &s), SASL_OK);
	assert_string_equal(sasl_user(s), "alice@example.org");
	sasl_free(&s);
	/* authzid equal to the authcid (any case) */
	assert_int_equal(
	    plain(fx, PLAIN_MSG("Alice@example.org\0alice@example.org\0" GOOD_PW), NULL), SASL_OK);
	assert_int_equal(plain(fx, PLAIN_MSG("\0alice@example.org\0wrong"), &s), SASL_FAILED);
	assert_null(sasl_user(s));
	assert_string_equal(sasl_login_name(s), "alice@example.org");
	sasl_free(&s);
	assert_int_equal(plain(fx, PLAIN_MSG("\0nobody@example.org\0" GOOD_PW), NULL), SASL_FAILED);
	assert_int_equal(plain(fx, PLAIN_MSG("\0alice@example.org\0"), NULL), SASL_FAILED);
	assert_int_equal(plain(fx, PLAIN_MSG("\0locked@example.org\0" GOOD_PW), &s), SASL_LOCKED);
	assert_string_equal(sasl_user(s), "locked@example.org");
	sasl_free(&s);
	assert_int_equal(plain(fx, PLAIN_MSG("\0locked@example.org\0wrong"), NULL), SASL_FAILED);

	/* malformed */
	assert_int_equal(plain(fx, PLAIN_MSG("\0alice@exa\0mple.org\0" GOOD_PW), NULL),
	                 SASL_MALFORMED);
	assert_int_equal(plain(fx, PLAIN_MSG("\0alice@example.org\0pass\0word"), NULL),
	                 SASL_MALFORMED);
	assert_int_equal(plain(fx, PLAIN_MSG("bob@example.org\0alice@example.org\0" GOOD_PW), &s),
	                 SASL_MALFORMED);
	assert_non_null(strstr(sasl_error(s), "authorization identity"));
	sasl_free(&s);
	assert_int_equal(plain(fx, PLAIN_MSG("alice@example.org"), NULL), SASL_MALFORMED);
	assert_int_equal(plain(fx, PLAIN_MSG("\0alice@example.org"), NULL), SASL_MALFORMED);
	assert_int_equal(plain(fx, PLAIN_MSG("\0\0" GOOD_PW), NULL), SASL_MALFORMED);
	assert_int_equal(plain(fx, "", 0, NULL), SASL_MALFORMED); /* "=" */
}

static enum sasl_step plain_b64(struct fixture *fx, const char *in_b64)
{
	struct sasl_session *s = start(fx, "PLAIN", NULL, 0);
	char *out = NULL;
	enum sasl_step r = sasl_step(s, in_b64, &out);

	assert_null(out);
	sasl_free(&s);
	return r;
}

static void test_base64_strict(void **state)
{
	struct fixture *fx = *state;
	char *good = b64n(PLAIN_MSG("\0alice@example.org\0" GOOD_PW)), *bad, *big;
	size_t len = strlen(good);

	assert_int_equal(plain_b64(fx, good), SASL_OK);
	/* missing padding */
	assert_true(good[len - 1] == '=');
	bad = xstrdup(good);
	bad[strlen(bad) - 1] = '\0';
	while (bad[strlen(bad) - 1] == '=')
		bad[strlen(bad) - 1] = '\0';
	assert_int_equal(plain_b64(fx, bad), SASL_MALFORMED);
	free(bad);
	/* white space, a bad character, too much padding */
	bad = xasprintf(" %s", good);
	assert_int_equal(plain_b64(fx, bad), SASL_MALFORMED);
	free(bad);
	bad = xstrdup(good);
	bad[3] = '*';
	assert_int_equal(plain_b64(fx, bad), SASL_MALFORMED);
	free(bad);
	bad = xasprintf("%s====", good);
	assert_int_equal(plain_b64(fx, bad), SASL_MALFORMED);
	free(bad);
	free(good);
	/* bits set past the data: "dXNlch==" would also decode to "user" */
	{
		char *out;
		size_t n;

		assert_int_equal(base64_decode("dXNlcg==", 8, &out, &n), 0);
		assert_int_equal(n, 4);
		assert_string_equal(out, "user");
		free(out);
		assert_int_equal(base64_decode("dXNlch==", 8, &out, &n), -1);
		assert_int_equal(base64_decode("dXNlcg=", 7, &out, &n), -1);
		assert_int_equal(base64_decode("", 0, &out, &n), 0);
		assert_int_equal(n, 0);
		free(out);
	}
	/* Over SASL_TOKEN_MAX: refused before any work. */
	big = xmalloc(SASL_TOKEN_MAX + 2);
	memset(big, 'a', SASL_TOKEN_MAX + 1);
	big[0] = '\0';
	big[1 + DIR_ADDRESS_MAX] = '\0';
	bad = b64n(big, SASL_TOKEN_MAX + 1);
	assert_int_equal(plain_b64(fx, bad), SASL_MALFORMED);
	free(bad);
	free(big);
	big = xmalloc(SASL_B64_MAX + 10);
	memset(big, 'A', SASL_B64_MAX + 8);
	big[SASL_B64_MAX + 8] = '\0';
	assert_int_equal(plain_b64(fx, big), SASL_MALFORMED);
	free(big);
}

/* ---- LOGIN ---- */

static void test_login(void **state)
{
	struct fixture *fx = *state;
	struct sasl_session *s = start(fx, "LOGIN", NULL, 0);
	char *out = NULL;

	/* Without an initial response: both prompts. */
	assert_int_equal(sasl_step(s, NULL, &out), SASL_CONTINUE);
	assert_string_equal(out, "VXNlcm5hbWU6"); /* "Username:" */
	free(out);
	assert_int_equal(step_str(s, "alice@example.org", &out), SASL_CONTINUE);
	assert_string_equal(out, "Password:");
	free(out);
	assert_int_equal(step_str(s, GOOD_PW, &out), SASL_OK);
	assert_string_equal(sasl_user(s), "alice@example.org");
	sasl_free(&s);

	/* With the user name as initial response. */
	s = start(fx, "login", NULL, 0);
	assert_int_equal(step_str(s, "alice@example.org", &out), SASL_CONTINUE);
	free(out);
	assert_int_equal(step_str(s, "wrong", &out), SASL_FAILED);
	assert_string_equal(sasl_login_name(s), "alice@example.org");
	sasl_free(&s);

	s = start(fx, "LOGIN", NULL, 0);
	assert_int_equal(step_str(s, "nobody@example.org", &out), SASL_CONTINUE);
	free(out);
	assert_int_equal(step_str(s, GOOD_PW, &out), SASL_FAILED);
	sasl_free(&s);

	s = start(fx, "LOGIN", NULL, 0);
	assert_int_equal(step_raw(s, "al\0ice@example.org", 18, &out), SASL_MALFORMED);
	sasl_free(&s);
	s = start(fx, "LOGIN", NULL, 0);
	assert_int_equal(step_raw(s, "", 0, &out), SASL_MALFORMED);
	sasl_free(&s);
}

/* A mailbox imported with a hash and no SCRAM keys gets them at its first
 * password login, and SCRAM works from then on. */
static void test_scram_keys_after_password_login(void **state)
{
	struct fixture *fx = *state;
	struct sasl_session *s;
	char *final, *out;

	assert_int_equal(plain(fx, PLAIN_MSG("\0imported@example.org\0wrong"), NULL), SASL_FAILED);
	s = start(fx, "SCRAM-SHA-256", NULL, 0);
	assert_int_equal(
	    scram_login(s, "n,,", NULL, 0, "imported@example.org", GOOD_PW, NULL, &final),
	    SASL_FAILED);
	sasl_free(&s);

	assert_int_equal(plain(fx, PLAIN_MSG("\0imported@example.org\0" GOOD_PW), NULL), SASL_OK);
	s = start(fx, "SCRAM-SHA-256", NULL, 0);
	assert_int_equal(
	    scram_login(s, "n,,", NULL, 0, "imported@example.org", GOOD_PW, NULL, &final),
	    SASL_CONTINUE);
	free(final);
	assert_int_equal(step_raw(s, "", 0, &out), SASL_OK);
	sasl_free(&s);
}

/* ---- offer ---- */

static void test_mechanisms(void **state)
{
	(void)state;
	assert_string_equal(sasl_mechanisms(false, false), "SCRAM-SHA-256");
	assert_string_equal(sasl_mechanisms(true, false), "SCRAM-SHA-256 PLAIN LOGIN");
	assert_string_equal(sasl_mechanisms(false, true), "SCRAM-SHA-256-PLUS SCRAM-SHA-256");
	assert_string_equal(sasl_mechanisms(true, true),
	                    "SCRAM-SHA-256-PLUS SCRAM-SHA-256 PLAIN LOGIN");
	assert_true(sasl_mech_allowed("scram-sha-256", false, false));
	assert_false(sasl_mech_allowed("PLAIN", false, true));
	assert_true(sasl_mech_allowed("plain", true, false));
	assert_false(sasl_mech_allowed("LOGIN", false, false));
	assert_false(sasl_mech_allowed("SCRAM-SHA-256-PLUS", true, false));
	assert_true(sasl_mech_allowed("Scram-Sha-256-Plus", false, true));
	assert_false(sasl_mech_allowed("CRAM-MD5", true, true));
	assert_false(sasl_mech_allowed("", true, true));
	assert_false(sasl_mech_allowed("SCRAM-SHA-1", true, true));
}

static void test_start_errors(void **state)
{
	struct fixture *fx = *state;
	struct sasl_session *s = NULL;
	const char *err = NULL;
	uint8_t big[SCRAM_CB_MAX + 1] = {0};

	assert_int_equal(sasl_start(&fx->cfg, "GSSAPI", NULL, 0, &s, &err), -1);
	assert_null(s);
	assert_non_null(err);
	assert_int_equal(sasl_start(&fx->cfg, "SCRAM-SHA-256", big, sizeof(big), &s, &err), -1);
	sasl_free(&s); /* harmless on NULL */
}

/* ---- threads ---- */

struct thread_arg {
	struct fixture *fx;
	int failures;
};

static void *thread_main(void *p)
{
	struct thread_arg *ta = p;

	for (int i = 0; i < 3; i++) {
		struct sasl_session *s = NULL;
		const char *err;
		char *out = NULL, *in = b64n(PLAIN_MSG("\0alice@example.org\0" GOOD_PW));

		if (sasl_start(&ta->fx->cfg, "PLAIN", NULL, 0, &s, &err) < 0 ||
		    sasl_step(s, in, &out) != SASL_OK)
			ta->failures++;
		free(in);
		sasl_free(&s);
		s = NULL;
		in = b64("n,,n=nobody@example.org,r=xyz");
		if (sasl_start(&ta->fx->cfg, "SCRAM-SHA-256", NULL, 0, &s, &err) < 0 ||
		    sasl_step(s, in, &out) != SASL_CONTINUE)
			ta->failures++;
		free(in);
		free(out);
		sasl_free(&s);
	}
	dir_thread_drop();
	return NULL;
}

static void test_threads(void **state)
{
	struct thread_arg args[4];
	pthread_t t[4];

	for (int i = 0; i < 4; i++) {
		args[i].fx = *state;
		args[i].failures = 0;
		assert_int_equal(pthread_create(&t[i], NULL, thread_main, &args[i]), 0);
	}
	for (int i = 0; i < 4; i++) {
		assert_int_equal(pthread_join(t[i], NULL), 0);
		assert_int_equal(args[i].failures, 0);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_setup_teardown(test_rfc7677_example, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_rfc7677_without_initial_response, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_scram_bad_proof, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_scram_bad_nonce, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_scram_malformed, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_scram_directory_user, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_scram_unknown_user, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_scram_plus, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_plain, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_base64_strict, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_login, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_scram_keys_after_password_login, setup, teardown),
	    cmocka_unit_test(test_mechanisms),
	    cmocka_unit_test_setup_teardown(test_start_errors, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_threads, setup, teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
