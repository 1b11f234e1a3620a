#include "net/tls.h"

#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/util.h"

/* Certificates one config may name (one per served host name). */
#define TLS_MAX_CERTS 16

/* TLS 1.2 suites with forward secrecy and AEAD only; TLS 1.3 has its own
 * (all fine) list in OpenSSL's default order. */
#define TLS12_CIPHERS                                                                              \
	"ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:"                               \
	"ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384:"                               \
	"ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305:"                               \
	"DHE-RSA-AES128-GCM-SHA256:DHE-RSA-AES256-GCM-SHA384"

struct tls_ctx {
	size_t n;
	SSL_CTX *ctx[TLS_MAX_CERTS];
	X509 *cert[TLS_MAX_CERTS]; /* borrowed from ctx[i], for SNI matching */
};

const char *tls_last_error(char *buf, size_t size)
{
	unsigned long e = ERR_peek_last_error();
	if (e == 0)
		snprintf(buf, size, "unknown TLS error");
	else
		ERR_error_string_n(e, buf, size);
	ERR_clear_error();
	return buf;
}

/* SNI (RFC 6066 §3): switch to the context whose certificate names the
 * requested host; keep the default when none does. */
static int sni_cb(SSL *ssl, int *alert, void *arg)
{
	(void)alert;
	struct tls_ctx *t = arg;
	const char *name = SSL_get_servername(ssl, TLSEXT_NAMETYPE_host_name);

	if (name == NULL)
		return SSL_TLSEXT_ERR_OK;
	for (size_t i = 0; i < t->n; i++) {
		if (X509_check_host(t->cert[i], name, 0, 0, NULL) == 1) {
			if (i > 0)
				SSL_set_SSL_CTX(ssl, t->ctx[i]);
			return SSL_TLSEXT_ERR_OK;
		}
	}
	return SSL_TLSEXT_ERR_OK;
}

static SSL_CTX *make_ctx(const char *cert, const char *key, char *err, size_t errlen)
{
	char buf[256];
	SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());

	if (ctx == NULL) {
		snprintf(err, errlen, "SSL_CTX_new: %s", tls_last_error(buf, sizeof(buf)));
		return NULL;
	}
	SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
	SSL_CTX_set_options(ctx, SSL_OP_CIPHER_SERVER_PREFERENCE | SSL_OP_NO_COMPRESSION |
	                             SSL_OP_NO_RENEGOTIATION);
	/* An idle session keeps no 2 x 16 KiB record buffers. */
	SSL_CTX_set_mode(ctx, SSL_MODE_RELEASE_BUFFERS);
	if (SSL_CTX_set_cipher_list(ctx, TLS12_CIPHERS) != 1 ||
	    SSL_CTX_use_certificate_chain_file(ctx, cert) != 1) {
		snprintf(err, errlen, "%s: %s", cert, tls_last_error(buf, sizeof(buf)));
		SSL_CTX_free(ctx);
		return NULL;
	}
	if (SSL_CTX_use_PrivateKey_file(ctx, key, SSL_FILETYPE_PEM) != 1 ||
	    SSL_CTX_check_private_key(ctx) != 1) {
		snprintf(err, errlen, "%s: %s", key, tls_last_error(buf, sizeof(buf)));
		SSL_CTX_free(ctx);
		return NULL;
	}
	return ctx;
}

struct tls_ctx *tls_ctx_new(const char *const *certs, const char *const *keys, size_t n, char *err,
                            size_t errlen)
{
	if (n == 0 || n > TLS_MAX_CERTS) {
		snprintf(err, errlen, "between 1 and %d certificates are supported", TLS_MAX_CERTS);
		return NULL;
	}
	struct tls_ctx *t = xcalloc(1, sizeof(*t));
	for (size_t i = 0; i < n; i++) {
		t->ctx[i] = make_ctx(certs[i], keys[i], err, errlen);
		if (t->ctx[i] == NULL) {
			tls_ctx_free(&t);
			return NULL;
		}
		t->cert[i] = SSL_CTX_get0_certificate(t->ctx[i]);
		t->n++;
	}
	SSL_CTX_set_tlsext_servername_callback(t->ctx[0], sni_cb);
	SSL_CTX_set_tlsext_servername_arg(t->ctx[0], t);
	return t;
}

void tls_ctx_free(struct tls_ctx **tp)
{
	struct tls_ctx *t = *tp;
	if (t == NULL)
		return;
	for (size_t i = 0; i < t->n; i++)
		SSL_CTX_free(t->ctx[i]);
	free(t);
	*tp = NULL;
}

SSL *tls_ssl_new(struct tls_ctx *t)
{
	return SSL_new(t->ctx[0]);
}
