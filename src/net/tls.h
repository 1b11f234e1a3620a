/* TLS contexts (OpenSSL 3): TLS 1.2 and 1.3 only, the server's cipher
 * preference, no compression, no renegotiation, buffers released while a
 * connection is idle. Several certificates may be loaded; the client's SNI
 * name picks the one whose names match, the first is the default.
 *
 * The master loads the context (it can read root-only key files) before it
 * forks the workers, and loads a fresh one on reload, so renewed
 * certificates are picked up by the new workers while the old ones finish
 * their sessions with the old context. */
#ifndef PILLAR_NET_TLS_H
#define PILLAR_NET_TLS_H

#include <stddef.h>

struct tls_ctx;
typedef struct ssl_st SSL;

/* Load certs[i] with keys[i] for i < n (PEM: the certificate file may hold
 * the chain). Returns NULL with a message in err on any problem. */
struct tls_ctx *tls_ctx_new(const char *const *certs, const char *const *keys, size_t n, char *err,
                            size_t errlen);
void tls_ctx_free(struct tls_ctx **ctx);

/* A new server-side SSL object for one connection, or NULL. */
SSL *tls_ssl_new(struct tls_ctx *ctx);

/* The last OpenSSL error as one short line (for logs). */
const char *tls_last_error(char *buf, size_t size);

#endif
