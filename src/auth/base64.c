/* Strict base64 over libgsasl. See base64.h. */
#include "auth/base64.h"

#include "core/util.h"

#include <gsasl.h>
#include <openssl/crypto.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

char *base64_encode(const void *in, size_t len)
{
	char *b64 = NULL, *out;

	if (len == 0)
		return xstrdup("");
	if (gsasl_base64_to(in, len, &b64, NULL) != GSASL_OK || b64 == NULL)
		return xstrdup(""); /* only on malloc failure inside libgsasl */
	out = xstrdup(b64);
	gsasl_free(b64);
	return out;
}

int base64_decode(const char *in, size_t in_len, char **out_r, size_t *out_len_r)
{
	char *raw = NULL, *again = NULL, *out;
	size_t raw_len = 0;
	bool canonical;

	*out_r = NULL;
	*out_len_r = 0;
	if (in_len == 0) {
		*out_r = xstrdup("");
		return 0;
	}
	if (in_len % 4 != 0 || gsasl_base64_from(in, in_len, &raw, &raw_len) != GSASL_OK)
		return -1;
	/* libgsasl ignores bits set past the data in the last group
	 * ("dXNlch==" decodes like "dXNlcg=="): re-encoding shows them. */
	canonical = raw_len > 0 && gsasl_base64_to(raw, raw_len, &again, NULL) == GSASL_OK &&
	            again != NULL && strlen(again) == in_len && memcmp(again, in, in_len) == 0;
	/* It may be a password: wipe every copy but the caller's. */
	if (again != NULL)
		OPENSSL_cleanse(again, strlen(again));
	gsasl_free(again);
	if (!canonical) {
		if (raw != NULL)
			OPENSSL_cleanse(raw, raw_len);
		gsasl_free(raw);
		return -1;
	}
	out = xmalloc(raw_len + 1);
	memcpy(out, raw, raw_len);
	out[raw_len] = '\0';
	OPENSSL_cleanse(raw, raw_len);
	gsasl_free(raw);
	*out_r = out;
	*out_len_r = raw_len;
	return 0;
}
