/* Base64 for SASL (RFC 4648 §4, as RFC 4954, RFC 5034 and RFC 5802 use it),
 * on top of libgsasl's codec, made strict: padding is required, no white
 * space or other characters, and the unused bits of the last group must be
 * zero, so each byte string has exactly one accepted encoding. */
#ifndef PILLAR_AUTH_BASE64_H
#define PILLAR_AUTH_BASE64_H

#include <stddef.h>

/* Decode in[0..in_len). Returns 0 with *out_r (malloc'd, with a NUL after
 * the *out_len_r bytes for convenience; free it with free()) or -1 when
 * the input is not strict base64. Empty input decodes to 0 bytes. */
int base64_decode(const char *in, size_t in_len, char **out_r, size_t *out_len_r);

/* Encode len bytes. Returns a malloc'd NUL-terminated string ("" for 0
 * bytes); aborts on memory exhaustion. */
char *base64_encode(const void *in, size_t len);

#endif
