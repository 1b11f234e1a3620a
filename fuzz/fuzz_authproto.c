/* libFuzzer target: the messages between workers and the auth process
 * (auth/authproto.h), as either side receives them.
 *
 * Input: one record, handed to authp_decode as it would come off the
 * socket.
 *
 * Checked besides the sanitizers' findings:
 *   - a record is refused with a reason, or decoded;
 *   - what is decoded is within its bounds: every string is a C string that
 *     ends inside the record, no longer than its field allows, and the
 *     channel binding lies inside the record;
 *   - the encoding is canonical: encoding a decoded message gives back
 *     exactly the record, so no two records mean the same message and
 *     nothing in a record goes unread. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "auth/apop.h"
#include "auth/authproto.h"
#include "auth/sasl.h"
#include "auth/verify.h"
#include "common.h"
#include "directory/directory.h"

static void check_str(const uint8_t *data, size_t size, const char *s, size_t max, const char *what)
{
	if (s == NULL)
		return;
	const uint8_t *p = (const uint8_t *)s;
	FUZZ_CHECK(p >= data && p < data + size, "%s points outside the record", what);
	size_t left = (size_t)(data + size - p);
	const uint8_t *nul = memchr(p, '\0', left);
	FUZZ_CHECK(nul != NULL, "%s has no NUL inside the record", what);
	FUZZ_CHECK((size_t)(nul - p) <= max, "%s is %zu octets, more than %zu", what,
	           (size_t)(nul - p), max);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	/* A copy of exactly the input, so a read past it is seen. */
	uint8_t *rec = malloc(size ? size : 1);
	struct authp_msg m;
	const char *error = NULL;

	memcpy(rec, data, size);
	if (authp_decode(rec, size, &m, &error) < 0) {
		FUZZ_CHECK(error != NULL && error[0] != '\0', "refused without a reason");
		free(rec);
		return 0;
	}
	check_str(rec, size, m.user, DIR_ADDRESS_MAX, "user");
	check_str(rec, size, m.password, AUTH_PASSWORD_MAX, "password");
	check_str(rec, size, m.timestamp, APOP_TIMESTAMP_MAX, "timestamp");
	check_str(rec, size, m.digest, APOP_DIGEST_HEX_LEN, "digest");
	check_str(rec, size, m.mech, AUTHP_MECH_MAX, "mech");
	check_str(rec, size, m.in, SASL_B64_MAX, "in");
	check_str(rec, size, m.out, SASL_B64_MAX, "out");
	check_str(rec, size, m.address, DIR_ADDRESS_MAX, "address");
	check_str(rec, size, m.login_name, DIR_ADDRESS_MAX, "login_name");
	check_str(rec, size, m.error, AUTHP_ERROR_MAX, "error");
	FUZZ_CHECK(m.cb_len <= AUTHP_CB_MAX, "channel binding of %zu octets", m.cb_len);
	if (m.cb != NULL)
		FUZZ_CHECK(m.cb >= rec && m.cb + m.cb_len <= rec + size,
		           "channel binding outside the record");

	uint8_t out[AUTHP_MSG_MAX];
	int n = authp_encode(&m, out, sizeof(out), &error);
	FUZZ_CHECK(n >= 0, "a decoded message does not encode: %s", error);
	FUZZ_CHECK((size_t)n == size && memcmp(out, rec, size) == 0,
	           "the record (%zu octets) is not the encoding of what it decodes to (%d octets)",
	           size, n);
	free(rec);
	return 0;
}
