/* Login tickets. See ticket.h. */
#include "auth/ticket.h"

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <stdlib.h>
#include <string.h>

#include "core/handoff.h"

_Static_assert(TICKET_SIZE == HANDOFF_TICKET_SIZE, "a ticket fits the hand-off");

static void mac(const uint8_t key[TICKET_KEY_LEN], const char *user, const uint8_t when[8],
                uint8_t out[32])
{
	uint8_t msg[8 + HANDOFF_NAME_MAX + 1];
	size_t n = strnlen(user, HANDOFF_NAME_MAX);
	unsigned len = 32;

	/* The time first: fixed length, so no two (time, user) pairs make one
	 * message. */
	memcpy(msg, when, 8);
	memcpy(msg + 8, user, n);
	if (HMAC(EVP_sha256(), key, TICKET_KEY_LEN, msg, 8 + n, out, &len) == NULL || len != 32)
		abort();
}

void ticket_make(const uint8_t key[TICKET_KEY_LEN], const char *user, uint64_t now,
                 uint8_t out[TICKET_SIZE])
{
	memcpy(out, &now, 8);
	mac(key, user, out, out + 8);
}

bool ticket_valid(const uint8_t key[TICKET_KEY_LEN], const char *user, const uint8_t t[TICKET_SIZE],
                  uint64_t now)
{
	uint64_t made;
	uint8_t want[32];

	memcpy(&made, t, 8);
	if (made > now || now - made > TICKET_LIFETIME_MS)
		return false;
	mac(key, user, t, want);
	return CRYPTO_memcmp(want, t + 8, sizeof(want)) == 0;
}
