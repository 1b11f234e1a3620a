/* Unit tests for src/auth/ticket.c: login tickets. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <string.h>

#include "auth/ticket.h"

static const uint8_t key[TICKET_KEY_LEN] = "a key of exactly thirty-two oct";
static const uint8_t other_key[TICKET_KEY_LEN] = "another key, thirty-two octets.";

#define T0 5000000u

static void test_valid_for_its_user_and_key_only(void **state)
{
	(void)state;
	uint8_t t[TICKET_SIZE];

	ticket_make(key, "alice@example.test", T0, t);
	assert_true(ticket_valid(key, "alice@example.test", t, T0));
	assert_true(ticket_valid(key, "alice@example.test", t, T0 + TICKET_LIFETIME_MS));
	assert_false(ticket_valid(key, "bob@example.test", t, T0));
	assert_false(ticket_valid(key, "alice@example.tes", t, T0));
	assert_false(ticket_valid(key, "", t, T0));
	assert_false(ticket_valid(other_key, "alice@example.test", t, T0));
}

static void test_expires_and_cannot_come_from_the_future(void **state)
{
	(void)state;
	uint8_t t[TICKET_SIZE];

	ticket_make(key, "alice@example.test", T0, t);
	assert_false(ticket_valid(key, "alice@example.test", t, T0 + TICKET_LIFETIME_MS + 1));
	assert_false(ticket_valid(key, "alice@example.test", t, T0 - 1));
}

static void test_any_changed_bit_is_refused(void **state)
{
	(void)state;
	uint8_t t[TICKET_SIZE];

	ticket_make(key, "alice@example.test", T0, t);
	for (size_t i = 0; i < TICKET_SIZE; i++) {
		for (int bit = 0; bit < 8; bit++) {
			uint8_t forged[TICKET_SIZE];
			memcpy(forged, t, sizeof(forged));
			forged[i] ^= (uint8_t)(1u << bit);
			/* A later time inside the lifetime is still a forgery. */
			assert_false(ticket_valid(key, "alice@example.test", forged, T0 + 1000));
		}
	}
	uint8_t zero[TICKET_SIZE] = {0};
	assert_false(ticket_valid(key, "alice@example.test", zero, 1000));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_valid_for_its_user_and_key_only),
	    cmocka_unit_test(test_expires_and_cannot_come_from_the_future),
	    cmocka_unit_test(test_any_changed_bit_is_refused),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
