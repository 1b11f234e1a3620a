/* SCRAM-SHA-256(-PLUS), server side. See scram.h; the grammar quoted in
 * comments is RFC 5802 §7. */
#include "auth/scram.h"

#include "auth/base64.h"
#include "core/util.h"

#include <gsasl.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/sha.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define KEY_LEN DIR_SCRAM_KEY_LEN

/* "p=tls-exporter," plus "a=" and an encoded name plus ",": the longest
 * gs2-header we accept. */
#define GS2_HEADER_MAX (32 + SCRAM_NAME_MAX)

enum scram_step {
	STEP_CLIENT_FIRST,
	STEP_SERVER_FIRST,
	STEP_CLIENT_FINAL,
	STEP_DONE,
};

struct scram_server {
	enum scram_step step;
	bool plus;
	uint8_t cb[SCRAM_CB_MAX];
	size_t cb_len; /* 0: the connection has no channel binding */
	char cbflag;   /* 'n', 'y' or 'p' from the client */
	char gs2_header[GS2_HEADER_MAX + 1];
	char *client_first_bare;
	char *server_first;
	char *user; /* SASLprep'ed */
	char snonce[SCRAM_NONCE_MAX + 1];
	char nonce[2 * SCRAM_NONCE_MAX + 1]; /* client's and ours */
	struct dir_scram keys;
};

int scram_keys_from_password(const char *password, struct dir_scram *out, const char **error_r)
{
	char salted[KEY_LEN], client_key[KEY_LEN];
	int rc;

	memset(out, 0, sizeof(*out));
	random_bytes(out->salt, SCRAM_SALT_LEN);
	out->salt_len = SCRAM_SALT_LEN;
	out->iterations = SCRAM_ITERATIONS;
	rc = gsasl_scram_secrets_from_password(
	    GSASL_HASH_SHA256, password, SCRAM_ITERATIONS, (const char *)out->salt, out->salt_len,
	    salted, client_key, (char *)out->server_key, (char *)out->stored_key);
	OPENSSL_cleanse(salted, sizeof(salted));
	OPENSSL_cleanse(client_key, sizeof(client_key));
	if (rc != GSASL_OK) {
		OPENSSL_cleanse(out, sizeof(*out));
		*error_r = rc == GSASL_SASLPREP_ERROR
		               ? "the password has characters SASLprep (RFC 4013) does not allow"
		               : "cannot derive SCRAM keys";
		return -1;
	}
	return 0;
}

struct scram_server *scram_server_new(bool plus, const void *cb, size_t cb_len)
{
	struct scram_server *s = xcalloc(1, sizeof(*s));
	uint8_t raw[SCRAM_SNONCE_BYTES];
	char *b64;

	s->plus = plus;
	if (cb != NULL && cb_len > 0 && cb_len <= sizeof(s->cb)) {
		memcpy(s->cb, cb, cb_len);
		s->cb_len = cb_len;
	}
	random_bytes(raw, sizeof(raw));
	b64 = base64_encode(raw, sizeof(raw));
	snprintf(s->snonce, sizeof(s->snonce), "%s", b64);
	free(b64);
	return s;
}

void scram_server_free(struct scram_server **sp)
{
	struct scram_server *s = *sp;

	if (s == NULL)
		return;
	free(s->client_first_bare);
	free(s->server_first);
	if (s->user != NULL)
		gsasl_free(s->user);
	OPENSSL_cleanse(s, sizeof(*s));
	free(s);
	*sp = NULL;
}

void scram_server_set_nonce(struct scram_server *s, const char *nonce)
{
	snprintf(s->snonce, sizeof(s->snonce), "%s", nonce);
}

/* ---- parsing ---- */

/* printable = %x21-2B / %x2D-7E: a nonce character. */
static bool nonce_char(char c)
{
	return c >= 0x21 && c <= 0x7e && c != ',';
}

/* The attribute starting at *p, up to the next ',' or end: checks that it
 * is "<name>=" and returns its value (not NUL-terminated) and length, and
 * moves *p past it and its ','. */
static bool take_attr(const char **p, const char *end, char name, const char **value_r,
                      size_t *len_r)
{
	const char *s = *p, *comma;

	if (end - s < 2 || s[0] != name || s[1] != '=')
		return false;
	s += 2;
	comma = memchr(s, ',', (size_t)(end - s));
	*value_r = s;
	*len_r = (size_t)((comma != NULL ? comma : end) - s);
	*p = comma != NULL ? comma + 1 : end;
	return true;
}

/* saslname = 1*(value-safe-char / "=2C" / "=3D"): decode into out (size
 * >= len + 1). */
static bool decode_saslname(const char *v, size_t len, char *out)
{
	size_t o = 0;

	if (len == 0)
		return false;
	for (size_t i = 0; i < len; i++) {
		if (v[i] != '=') {
			out[o++] = v[i];
			continue;
		}
		if (len - i < 3)
			return false;
		if (v[i + 1] == '2' && v[i + 2] == 'C')
			out[o++] = ',';
		else if (v[i + 1] == '3' && v[i + 2] == 'D')
			out[o++] = '=';
		else
			return false;
		i += 2;
	}
	out[o] = '\0';
	return true;
}

/* Extensions after the nonce: attr-val = ALPHA "=" value, ignored (RFC
 * 5802 §5.1: unknown optional attributes are ignored). */
static bool skip_extensions(const char *p, const char *end)
{
	while (p < end) {
		const char *comma = memchr(p, ',', (size_t)(end - p));
		const char *stop = comma != NULL ? comma : end;

		if (stop - p < 2 ||
		    !((p[0] >= 'a' && p[0] <= 'z') || (p[0] >= 'A' && p[0] <= 'Z')) || p[1] != '=')
			return false;
		p = comma != NULL ? comma + 1 : end;
		if (comma != NULL && p == end)
			return false; /* a trailing ',' */
	}
	return true;
}

static int fail(const char **error_r, const char *why)
{
	*error_r = why;
	return -1;
}

int scram_client_first(struct scram_server *s, const char *msg, size_t len, const char **user_r,
                       const char **error_r)
{
	char name[SCRAM_NAME_MAX + 1], authzid[SCRAM_NAME_MAX + 1];
	const char *p = msg, *end = msg + len, *v, *bare;
	size_t vlen;
	char *prepped = NULL;
	int rc;

	authzid[0] = '\0';
	if (s->step != STEP_CLIENT_FIRST)
		return fail(error_r, "SCRAM: unexpected client-first-message");
	if (len == 0)
		return fail(error_r, "SCRAM: empty client-first-message");
	if (memchr(msg, '\0', len) != NULL)
		return fail(error_r, "SCRAM: NUL byte in message");

	/* gs2-cbind-flag = ("p=" cb-name) / "n" / "y" */
	if (end - p >= 2 && (p[0] == 'n' || p[0] == 'y') && p[1] == ',') {
		s->cbflag = p[0];
		p += 2;
	} else if (take_attr(&p, end, 'p', &v, &vlen)) {
		s->cbflag = 'p';
		if (vlen != strlen("tls-exporter") || memcmp(v, "tls-exporter", vlen) != 0)
			return fail(error_r, "SCRAM: unsupported channel binding type (only "
			                     "tls-exporter)");
		if (p == end)
			return fail(error_r, "SCRAM: truncated gs2-header");
	} else {
		return fail(error_r, "SCRAM: bad gs2-header");
	}
	/* [ "a=" saslname ] "," */
	if (p < end && *p == 'a') {
		if (!take_attr(&p, end, 'a', &v, &vlen) || vlen > SCRAM_NAME_MAX ||
		    !decode_saslname(v, vlen, authzid))
			return fail(error_r, "SCRAM: bad authorization identity");
	} else if (p < end && *p == ',') {
		p++;
	} else {
		return fail(error_r, "SCRAM: bad gs2-header");
	}
	if ((size_t)(p - msg) > GS2_HEADER_MAX)
		return fail(error_r, "SCRAM: gs2-header too long");
	memcpy(s->gs2_header, msg, (size_t)(p - msg));
	s->gs2_header[p - msg] = '\0';

	/* Channel binding (RFC 5802 §6, RFC 9266). */
	if (s->plus) {
		if (s->cbflag != 'p')
			return fail(error_r, "SCRAM: SCRAM-SHA-256-PLUS needs channel binding");
		if (s->cb_len == 0)
			return fail(error_r, "SCRAM: no channel binding on this connection");
	} else if (s->cbflag == 'p') {
		return fail(error_r, "SCRAM: channel binding asked for with SCRAM-SHA-256 (use "
		                     "SCRAM-SHA-256-PLUS)");
	} else if (s->cbflag == 'y' && s->cb_len > 0) {
		/* The client could bind and believes we cannot: someone
		 * removed -PLUS from what we offered. */
		return fail(error_r, "SCRAM: client supports channel binding but was not offered "
		                     "it (downgrade?)");
	}

	/* client-first-message-bare = [reserved-mext ","] username "," nonce
	 * ["," extensions] */
	bare = p;
	if (end - p >= 2 && p[0] == 'm' && p[1] == '=')
		return fail(error_r, "SCRAM: mandatory extension not supported");
	if (!take_attr(&p, end, 'n', &v, &vlen) || vlen > SCRAM_NAME_MAX ||
	    !decode_saslname(v, vlen, name))
		return fail(error_r, "SCRAM: bad user name");
	if (!take_attr(&p, end, 'r', &v, &vlen) || vlen == 0 || vlen > SCRAM_NONCE_MAX)
		return fail(error_r, "SCRAM: bad nonce");
	for (size_t i = 0; i < vlen; i++) {
		if (!nonce_char(v[i]))
			return fail(error_r, "SCRAM: bad nonce");
	}
	if (p > bare && p[-1] == ',' && p == end)
		return fail(error_r, "SCRAM: trailing ','");
	if (!skip_extensions(p, end))
		return fail(error_r, "SCRAM: bad extension");
	snprintf(s->nonce, sizeof(s->nonce), "%.*s%s", (int)vlen, v, s->snonce);

	/* RFC 5802 §5.1: the user name is SASLprep'ed (RFC 4013). */
	rc = gsasl_saslprep(name, GSASL_ALLOW_UNASSIGNED, &prepped, NULL);
	if (rc != GSASL_OK || prepped == NULL || prepped[0] == '\0') {
		if (prepped != NULL)
			gsasl_free(prepped);
		return fail(error_r, "SCRAM: user name refused by SASLprep");
	}
	/* Acting as someone else is not offered: an authzid, if any, must
	 * name the same user. */
	if (authzid[0] != '\0' && strcasecmp(authzid, name) != 0 &&
	    strcasecmp(authzid, prepped) != 0) {
		gsasl_free(prepped);
		return fail(error_r, "SCRAM: authorization identity differs from the user name");
	}
	s->user = prepped;
	s->client_first_bare = xmalloc((size_t)(end - bare) + 1);
	memcpy(s->client_first_bare, bare, (size_t)(end - bare));
	s->client_first_bare[end - bare] = '\0';
	s->step = STEP_SERVER_FIRST;
	*user_r = s->user;
	return 0;
}

char *scram_server_first(struct scram_server *s, const struct dir_scram *keys)
{
	char *salt = base64_encode(keys->salt, keys->salt_len);

	s->keys = *keys;
	/* server-first-message = [reserved-mext ","] nonce "," salt ","
	 * iteration-count ["," extensions] */
	s->server_first = xasprintf("r=%s,s=%s,i=%u", s->nonce, salt, (unsigned)keys->iterations);
	free(salt);
	s->step = STEP_CLIENT_FINAL;
	return xstrdup(s->server_first);
}

/* HMAC-SHA-256(key, data) */
static bool hmac(const uint8_t key[KEY_LEN], const char *data, size_t len, uint8_t out[KEY_LEN])
{
	unsigned int out_len = 0;

	return HMAC(EVP_sha256(), key, KEY_LEN, (const unsigned char *)data, len, out, &out_len) !=
	           NULL &&
	       out_len == KEY_LEN;
}

/* The c= value must be our gs2-header, followed by the channel binding
 * data when the client used it. */
static bool cbind_matches(const struct scram_server *s, const char *b64, size_t b64_len)
{
	size_t hlen = strlen(s->gs2_header), dlen;
	char *data;
	bool ok;

	if (base64_decode(b64, b64_len, &data, &dlen) < 0)
		return false;
	if (s->cbflag == 'p')
		ok = dlen == hlen + s->cb_len && memcmp(data, s->gs2_header, hlen) == 0 &&
		     CRYPTO_memcmp(data + hlen, s->cb, s->cb_len) == 0;
	else
		ok = dlen == hlen && memcmp(data, s->gs2_header, hlen) == 0;
	free(data);
	return ok;
}

int scram_client_final(struct scram_server *s, const char *msg, size_t len, bool *proof_ok_r,
                       char **server_final_r, const char **error_r)
{
	const char *p = msg, *end = msg + len, *v, *proof_at;
	uint8_t client_sig[KEY_LEN], client_key[KEY_LEN], check[KEY_LEN], server_sig[KEY_LEN];
	size_t vlen, proof_len;
	char *proof = NULL, *auth_msg, *sig_b64;
	bool ok;

	*proof_ok_r = false;
	*server_final_r = NULL;
	if (s->step != STEP_CLIENT_FINAL)
		return fail(error_r, "SCRAM: unexpected client-final-message");
	s->step = STEP_DONE;
	if (len == 0 || memchr(msg, '\0', len) != NULL)
		return fail(error_r, "SCRAM: bad client-final-message");

	/* client-final-message = channel-binding "," nonce [","
	 * extensions] "," proof, with proof = "p=" base64 last. */
	proof_at = NULL;
	for (const char *q = end - 1; q > msg; q--) {
		if (*q == ',') {
			proof_at = q;
			break;
		}
	}
	if (proof_at == NULL || end - proof_at < 3 || proof_at[1] != 'p' || proof_at[2] != '=')
		return fail(error_r, "SCRAM: no proof");
	end = proof_at; /* what follows is client-final-message-without-proof */
	if (!take_attr(&p, end, 'c', &v, &vlen) || p == end)
		return fail(error_r, "SCRAM: bad channel binding attribute");
	if (!cbind_matches(s, v, vlen))
		return fail(error_r, "SCRAM: channel binding does not match");
	if (!take_attr(&p, end, 'r', &v, &vlen))
		return fail(error_r, "SCRAM: bad nonce");
	if (vlen != strlen(s->nonce) || memcmp(v, s->nonce, vlen) != 0)
		return fail(error_r, "SCRAM: nonce does not match");
	if (p > msg && p[-1] == ',' && p == end)
		return fail(error_r, "SCRAM: trailing ','");
	if (!skip_extensions(p, end))
		return fail(error_r, "SCRAM: bad extension");
	if (base64_decode(proof_at + 3, (size_t)(msg + len - proof_at - 3), &proof, &proof_len) <
	        0 ||
	    proof_len != KEY_LEN) {
		free(proof);
		return fail(error_r, "SCRAM: bad proof encoding");
	}

	/* AuthMessage = client-first-message-bare "," server-first-message ","
	 * client-final-message-without-proof */
	auth_msg = xasprintf("%s,%s,%.*s", s->client_first_bare, s->server_first,
	                     (int)(proof_at - msg), msg);
	/* ClientKey = ClientProof XOR HMAC(StoredKey, AuthMessage); the
	 * proof is right when H(ClientKey) is the StoredKey. */
	ok = hmac(s->keys.stored_key, auth_msg, strlen(auth_msg), client_sig);
	for (size_t i = 0; i < KEY_LEN; i++)
		client_key[i] = (uint8_t)proof[i] ^ client_sig[i];
	ok = ok && SHA256(client_key, KEY_LEN, check) != NULL &&
	     CRYPTO_memcmp(check, s->keys.stored_key, KEY_LEN) == 0;
	if (ok && hmac(s->keys.server_key, auth_msg, strlen(auth_msg), server_sig)) {
		sig_b64 = base64_encode(server_sig, KEY_LEN);
		*server_final_r = xasprintf("v=%s", sig_b64);
		free(sig_b64);
		*proof_ok_r = true;
	}
	OPENSSL_cleanse(client_key, sizeof(client_key));
	OPENSSL_cleanse(&s->keys, sizeof(s->keys));
	free(proof);
	free(auth_msg);
	return 0;
}
