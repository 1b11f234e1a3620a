/* SASL mechanisms, server side. See sasl.h.
 *
 * PLAIN and LOGIN are a few lines of parsing in front of the USER/PASS
 * verification (auth/verify.h), so they share its dummy-hash path and its
 * SCRAM key upgrade; SCRAM's messages are handled by auth/scram.c, and this
 * file finds the keys (real, or made up for users that have none). */
#include "auth/sasl.h"

#include "auth/base64.h"
#include "auth/scram.h"
#include "auth/verify.h"
#include "core/config.h"
#include "core/util.h"
#include "directory/thread.h"

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

enum sasl_mech {
	MECH_SCRAM_PLUS,
	MECH_SCRAM,
	MECH_PLAIN,
	MECH_LOGIN,
};

static const struct {
	const char *name;
	bool plaintext; /* sends the password itself */
	bool needs_cb;
} mechs[] = {
    [MECH_SCRAM_PLUS] = {"SCRAM-SHA-256-PLUS", false, true},
    [MECH_SCRAM] = {"SCRAM-SHA-256", false, false},
    [MECH_PLAIN] = {"PLAIN", true, false},
    [MECH_LOGIN] = {"LOGIN", true, false},
};
#define NMECHS (sizeof(mechs) / sizeof(mechs[0]))

/* LOGIN's prompts. Not in any RFC (draft-murchison-sasl-login); these are
 * the strings clients have always been sent. */
#define LOGIN_USER_PROMPT "Username:"
#define LOGIN_PASS_PROMPT "Password:"

struct sasl_session {
	const struct config *cfg;
	enum sasl_mech mech;
	unsigned step; /* messages received so far */
	bool started;  /* sasl_step was called */
	bool done;
	uint8_t cb[SCRAM_CB_MAX];
	size_t cb_len;

	struct scram_server *scram;
	bool scram_real;   /* the user exists and has keys */
	bool scram_locked; /* ... and is locked */

	char login_name[SASL_TOKEN_MAX + 1]; /* authcid as given; LOGIN keeps it here */
	bool have_login_name;
	char user[DIR_ADDRESS_MAX + 1]; /* canonical, on OK/LOCKED */
	bool have_user;
	const char *error;
	char error_buf[256];

	/* sasl_test_scram */
	char test_nonce[SCRAM_NONCE_MAX + 1];
	bool test_keys_set;
	struct dir_scram test_keys;
};

/* ---- mechanisms on offer ---- */

const char *sasl_mechanisms(bool plaintext_ok, bool have_cb)
{
	if (plaintext_ok)
		return have_cb ? "SCRAM-SHA-256-PLUS SCRAM-SHA-256 PLAIN LOGIN"
		               : "SCRAM-SHA-256 PLAIN LOGIN";
	return have_cb ? "SCRAM-SHA-256-PLUS SCRAM-SHA-256" : "SCRAM-SHA-256";
}

static int find_mech(const char *name)
{
	for (size_t i = 0; i < NMECHS; i++) {
		if (strcasecmp(name, mechs[i].name) == 0)
			return (int)i;
	}
	return -1;
}

bool sasl_mech_allowed(const char *mech, bool plaintext_ok, bool have_cb)
{
	int m = find_mech(mech);

	if (m < 0)
		return false;
	return (plaintext_ok || !mechs[m].plaintext) && (have_cb || !mechs[m].needs_cb);
}

const char *sasl_mech_check(const char *mech, size_t cb_len, const char **error_r)
{
	int m = find_mech(mech);

	if (m < 0) {
		*error_r = "unknown SASL mechanism";
		return NULL;
	}
	if (cb_len > SCRAM_CB_MAX) {
		*error_r = "channel binding data too long";
		return NULL;
	}
	if (mechs[m].needs_cb && cb_len == 0) {
		*error_r = "SCRAM-SHA-256-PLUS needs channel binding (TLS 1.3)";
		return NULL;
	}
	return mechs[m].name;
}

int sasl_start(const struct config *cfg, const char *mech, const void *cb, size_t cb_len,
               struct sasl_session **s_r, const char **error_r)
{
	struct sasl_session *s;
	int m = find_mech(mech);

	*s_r = NULL;
	if (cb == NULL && cb_len > 0) {
		*error_r = "channel binding data too long";
		return -1;
	}
	if (sasl_mech_check(mech, cb_len, error_r) == NULL)
		return -1;
	s = xcalloc(1, sizeof(*s));
	s->cfg = cfg;
	s->mech = (enum sasl_mech)m;
	if (cb_len > 0)
		memcpy(s->cb, cb, cb_len);
	s->cb_len = cb_len;
	*s_r = s;
	return 0;
}

void sasl_test_scram(struct sasl_session *s, const char *server_nonce, const struct dir_scram *keys)
{
	if (server_nonce != NULL)
		snprintf(s->test_nonce, sizeof(s->test_nonce), "%s", server_nonce);
	if (keys != NULL) {
		s->test_keys = *keys;
		s->test_keys_set = true;
	}
}

void sasl_free(struct sasl_session **sp)
{
	struct sasl_session *s = *sp;

	if (s == NULL)
		return;
	scram_server_free(&s->scram);
	OPENSSL_cleanse(s, sizeof(*s));
	free(s);
	*sp = NULL;
}

const char *sasl_user(const struct sasl_session *s)
{
	return s->have_user ? s->user : NULL;
}

const char *sasl_login_name(const struct sasl_session *s)
{
	return s->have_login_name ? s->login_name : NULL;
}

const char *sasl_error(const struct sasl_session *s)
{
	return s->error;
}

const char *sasl_mech_name(const struct sasl_session *s)
{
	return mechs[s->mech].name;
}

/* ---- helpers ---- */

static enum sasl_step malformed(struct sasl_session *s, const char *why)
{
	s->error = why;
	return SASL_MALFORMED;
}

/* A directory error: keep the message (it lives in the connection), and
 * close this thread's connection so the next job reopens it. */
static enum sasl_step tempfail(struct sasl_session *s, const char *why, bool drop)
{
	snprintf(s->error_buf, sizeof(s->error_buf), "%s", why);
	s->error = s->error_buf;
	if (drop)
		dir_thread_drop();
	return SASL_TEMPFAIL;
}

static void set_login_name(struct sasl_session *s, const char *name, size_t len)
{
	if (len >= sizeof(s->login_name))
		len = sizeof(s->login_name) - 1;
	memcpy(s->login_name, name, len);
	s->login_name[len] = '\0';
	s->have_login_name = true;
}

/* The USER/PASS check (auth/verify.h): dummy hash for unknown users,
 * SCRAM keys computed on the first success. */
static enum sasl_step check_password(struct sasl_session *s, const char *user, const char *password)
{
	struct auth_request *req = xmalloc(sizeof(*req));
	enum sasl_step r;

	auth_request_init(req, s->cfg, user, password);
	auth_verify_work(req);
	auth_request_clear(req);
	switch (req->result) {
	case AUTH_OK:
	case AUTH_LOCKED:
		memcpy(s->user, req->address, sizeof(s->user));
		s->have_user = true;
		r = req->result == AUTH_OK ? SASL_OK : SASL_LOCKED;
		break;
	case AUTH_TEMPFAIL:
		r = tempfail(s, req->error != NULL ? req->error : "directory error", false);
		break;
	default:
		r = SASL_FAILED;
		break;
	}
	free(req);
	return r;
}

/* ---- PLAIN (RFC 4616): [authzid] NUL authcid NUL passwd ---- */

static enum sasl_step plain_step(struct sasl_session *s, char *msg, size_t len)
{
	char *authcid, *password, *nul;

	nul = memchr(msg, '\0', len);
	if (nul == NULL)
		return malformed(s, "PLAIN: no NUL separator");
	authcid = nul + 1;
	nul = memchr(authcid, '\0', len - (size_t)(authcid - msg));
	if (nul == NULL)
		return malformed(s, "PLAIN: only one NUL separator");
	password = nul + 1;
	/* RFC 4616 §2: neither the authcid nor the password may contain NUL;
	 * a third NUL means one of them did. */
	if (memchr(password, '\0', len - (size_t)(password - msg)) != NULL)
		return malformed(s, "PLAIN: NUL inside the user name or password");
	set_login_name(s, authcid, strlen(authcid));
	if (authcid[0] == '\0')
		return malformed(s, "PLAIN: empty user name");
	/* Logging in as someone else is not offered: an authzid must name
	 * the same mailbox (addresses compare without case). */
	if (msg[0] != '\0' && strcasecmp(msg, authcid) != 0)
		return malformed(s, "PLAIN: authorization identity differs from the user name");
	return check_password(s, authcid, password);
}

/* ---- LOGIN: "Username:" then "Password:" ---- */

static enum sasl_step login_step(struct sasl_session *s, const char *msg, size_t len, char **out_r)
{
	if (memchr(msg, '\0', len) != NULL)
		return malformed(s, "LOGIN: NUL byte in the user name or password");
	if (s->step == 1) {
		if (len == 0)
			return malformed(s, "LOGIN: empty user name");
		set_login_name(s, msg, len);
		*out_r = base64_encode(LOGIN_PASS_PROMPT, strlen(LOGIN_PASS_PROMPT));
		return SASL_CONTINUE;
	}
	return check_password(s, s->login_name, msg);
}

/* ---- SCRAM ---- */

static pthread_mutex_t instance_lock = PTHREAD_MUTEX_INITIALIZER;
static uint8_t instance_secret[DIR_INSTANCE_SECRET_LEN];
static bool instance_loaded;

/* The directory's instance secret, read once per process: it never
 * changes. Returns 0, or -1 with *error_r (in dir). */
static int get_instance_secret(struct dir *dir, uint8_t out[DIR_INSTANCE_SECRET_LEN],
                               const char **error_r)
{
	int r = 0;

	pthread_mutex_lock(&instance_lock);
	if (!instance_loaded) {
		r = dir_instance_secret(dir, instance_secret, error_r);
		instance_loaded = r == 0;
	}
	if (r == 0)
		memcpy(out, instance_secret, DIR_INSTANCE_SECRET_LEN);
	pthread_mutex_unlock(&instance_lock);
	return r;
}

/* Keys for a user that has none: a salt that is the same every time this
 * name is tried (HMAC of the name under the instance secret, so it cannot
 * be told from a real random salt), the iteration count of real keys, and
 * random keys no proof can match. */
static void fake_keys(const uint8_t secret[DIR_INSTANCE_SECRET_LEN], const char *name,
                      struct dir_scram *keys)
{
	char lower[SCRAM_NAME_MAX + 1];
	uint8_t mac[EVP_MAX_MD_SIZE];
	unsigned int mac_len = 0;
	char *data;

	snprintf(lower, sizeof(lower), "%s", name);
	str_lower(lower);
	data = xasprintf("scram-salt\n%s", lower);
	memset(keys, 0, sizeof(*keys));
	if (HMAC(EVP_sha256(), secret, DIR_INSTANCE_SECRET_LEN, (const unsigned char *)data,
	         strlen(data), mac, &mac_len) == NULL ||
	    mac_len < SCRAM_SALT_LEN)
		random_bytes(mac, SCRAM_SALT_LEN); /* cannot happen */
	free(data);
	memcpy(keys->salt, mac, SCRAM_SALT_LEN);
	keys->salt_len = SCRAM_SALT_LEN;
	keys->iterations = SCRAM_ITERATIONS;
	random_bytes(keys->stored_key, sizeof(keys->stored_key));
	random_bytes(keys->server_key, sizeof(keys->server_key));
}

/* The keys for name: the mailbox's own, or made up. */
static enum sasl_step scram_keys(struct sasl_session *s, const char *name, struct dir_scram *keys)
{
	uint8_t secret[DIR_INSTANCE_SECRET_LEN];
	char address[DIR_ADDRESS_MAX + 1];
	struct dir_user user;
	const char *error;
	struct dir *dir;
	int r = 0;

	if (s->test_keys_set) {
		*keys = s->test_keys;
		s->scram_real = true;
		snprintf(s->user, sizeof(s->user), "%s", name);
		return SASL_CONTINUE;
	}
	dir = dir_thread(s->cfg, &error);
	if (dir == NULL)
		return tempfail(s, error, false);
	if (strlen(name) < sizeof(address)) {
		memcpy(address, name, strlen(name) + 1);
		if (dir_check_address(address, &error) == 0) {
			/* Both queries whether or not the first finds the
			 * user, so the work does not tell. */
			r = dir_user_lookup(dir, address, &user, &error);
			if (r >= 0) {
				int k = dir_user_get_scram(dir, address, keys, &error);

				OPENSSL_cleanse(user.password_hash, sizeof(user.password_hash));
				r = k < 0 ? -1 : r > 0 && k > 0;
			}
			if (r < 0)
				return tempfail(s, error, true);
		}
	}
	if (r > 0) {
		s->scram_real = true;
		s->scram_locked = user.locked;
		memcpy(s->user, user.address, sizeof(s->user));
		return SASL_CONTINUE;
	}
	/* The same directory work was done as for a real user (a lookup that
	 * found nothing); now the made-up keys. */
	if (get_instance_secret(dir, secret, &error) < 0)
		return tempfail(s, error, true);
	fake_keys(secret, name, keys);
	OPENSSL_cleanse(secret, sizeof(secret));
	return SASL_CONTINUE;
}

static enum sasl_step scram_step(struct sasl_session *s, const char *msg, size_t len, char **out_r)
{
	struct dir_scram keys;
	const char *user, *error;
	char *reply;
	bool proof_ok;
	enum sasl_step r;

	switch (s->step) {
	case 1:
		s->scram = scram_server_new(s->mech == MECH_SCRAM_PLUS, s->cb, s->cb_len);
		if (s->test_nonce[0] != '\0')
			scram_server_set_nonce(s->scram, s->test_nonce);
		if (scram_client_first(s->scram, msg, len, &user, &error) < 0)
			return malformed(s, error);
		set_login_name(s, user, strlen(user));
		r = scram_keys(s, user, &keys);
		if (r != SASL_CONTINUE)
			return r;
		reply = scram_server_first(s->scram, &keys);
		OPENSSL_cleanse(&keys, sizeof(keys));
		*out_r = base64_encode(reply, strlen(reply));
		free(reply);
		return SASL_CONTINUE;
	case 2:
		if (scram_client_final(s->scram, msg, len, &proof_ok, &reply, &error) < 0)
			return malformed(s, error);
		if (!proof_ok || !s->scram_real) {
			free(reply);
			return SASL_FAILED;
		}
		if (s->scram_locked) {
			free(reply);
			s->have_user = true;
			return SASL_LOCKED;
		}
		/* RFC 5802 §3: the client checks the server's signature, sent
		 * as one more challenge (RFC 4954 §4, RFC 5034 §4). */
		*out_r = base64_encode(reply, strlen(reply));
		free(reply);
		return SASL_CONTINUE;
	default:
		if (len != 0)
			return malformed(s, "SCRAM: expected an empty response after server-final");
		if (!s->test_keys_set) {
			struct dir *dir = dir_thread(s->cfg, &error);

			/* A failure to record the time must not refuse a
			 * correct login. */
			if (dir != NULL)
				(void)dir_user_touch_login(dir, s->user, (int64_t)time(NULL),
				                           &error);
		}
		s->have_user = true;
		return SASL_OK;
	}
}

/* ---- the step ---- */

static enum sasl_step first_challenge(struct sasl_session *s, char **out_r)
{
	switch (s->mech) {
	case MECH_LOGIN:
		*out_r = base64_encode(LOGIN_USER_PROMPT, strlen(LOGIN_USER_PROMPT));
		return SASL_CONTINUE;
	default:
		/* PLAIN and SCRAM are client-first: an empty challenge asks
		 * for the first message. */
		*out_r = xstrdup("");
		return SASL_CONTINUE;
	}
}

enum sasl_step sasl_step(struct sasl_session *s, const char *in_b64, char **out_b64_r)
{
	enum sasl_step r;
	char *msg = NULL;
	size_t len = 0, b64_len;

	*out_b64_r = NULL;
	s->error = NULL;
	if (s->done)
		return malformed(s, "SASL exchange already finished");
	if (in_b64 == NULL) {
		if (s->started) {
			s->done = true;
			return malformed(s, "SASL: missing response");
		}
		/* No initial response: the answer to this challenge is the
		 * first message. */
		s->started = true;
		return first_challenge(s, out_b64_r);
	}
	s->started = true;
	s->step++;
	b64_len = strlen(in_b64);
	if (b64_len > SASL_B64_MAX) {
		s->done = true;
		return malformed(s, "SASL: response longer than 2048 bytes");
	}
	/* "=" is an empty response (RFC 4954 §4, RFC 5034 §4). */
	if (strcmp(in_b64, "=") == 0)
		b64_len = 0;
	if (base64_decode(in_b64, b64_len, &msg, &len) < 0) {
		s->done = true;
		return malformed(s, "SASL: bad base64");
	}
	if (len > SASL_TOKEN_MAX) {
		r = malformed(s, "SASL: response longer than 2048 bytes");
	} else {
		switch (s->mech) {
		case MECH_PLAIN:
			r = s->step == 1 ? plain_step(s, msg, len)
			                 : malformed(s, "PLAIN: unexpected response");
			break;
		case MECH_LOGIN:
			r = login_step(s, msg, len, out_b64_r);
			break;
		default:
			r = scram_step(s, msg, len, out_b64_r);
			break;
		}
	}
	OPENSSL_cleanse(msg, len);
	free(msg);
	if (r != SASL_CONTINUE)
		s->done = true;
	return r;
}
