/* Unit tests for src/auth/penalty.c: the time is passed in, nothing sleeps. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "auth/penalty.h"

#define BASE 2000u
#define T0   1000000u /* an arbitrary start, far from 0 */

static void v4(uint8_t ip[16], uint8_t a, uint8_t b, uint8_t c, uint8_t d)
{
	memset(ip, 0, 16);
	ip[10] = ip[11] = 0xff;
	ip[12] = a;
	ip[13] = b;
	ip[14] = c;
	ip[15] = d;
}

static int setup(void **state)
{
	*state = penalty_create();
	return *state == NULL ? -1 : 0;
}

static int teardown(void **state)
{
	struct penalty *p = *state;

	penalty_destroy(&p);
	assert_null(p);
	return 0;
}

static void test_doubling_and_cap(void **state)
{
	struct penalty *p = *state;
	uint8_t ip[16];
	uint64_t expect = BASE;

	v4(ip, 192, 0, 2, 1);
	/* Each failure is answered after the delay, then recorded. */
	for (int i = 0; i < 10; i++) {
		uint64_t d = penalty_delay_ms_at(p, ip, BASE, T0 + (uint64_t)i * 1000);

		assert_int_equal(d, expect);
		penalty_failure_at(p, ip, T0 + (uint64_t)i * 1000);
		expect = expect * 2 > PENALTY_MAX_DELAY_MS ? PENALTY_MAX_DELAY_MS : expect * 2;
	}
	assert_int_equal(penalty_delay_ms_at(p, ip, BASE, T0 + 20000), PENALTY_MAX_DELAY_MS);
}

/* The delay counts from when the credentials arrived: a check that took
 * part of it shortens the wait by as much, one that took longer leaves none. */
static void test_delay_counts_from_the_credentials(void **state)
{
	struct penalty *p = *state;
	uint8_t ip[16];

	v4(ip, 192, 0, 2, 9);
	assert_int_equal(penalty_fail_at(p, ip, 1000u, T0, T0), 1000u);
	assert_int_equal(penalty_fail_at(p, ip, 1000u, T0 + 10000, T0 + 10300), 1700);
	assert_int_equal(penalty_fail_at(p, ip, 1000u, T0 + 20000, T0 + 20000 + 5000), 0);
	/* Each of them counted as a failure all the same. */
	assert_int_equal(penalty_delay_ms_at(p, ip, 1000u, T0 + 40000), 8000);
}

static void test_success_forgets(void **state)
{
	struct penalty *p = *state;
	uint8_t ip[16];

	v4(ip, 192, 0, 2, 2);
	penalty_failure_at(p, ip, T0);
	penalty_failure_at(p, ip, T0 + 1);
	assert_int_equal(penalty_delay_ms_at(p, ip, BASE, T0 + 2), 4 * BASE);
	penalty_success(p, ip);
	assert_int_equal(penalty_delay_ms_at(p, ip, BASE, T0 + 3), BASE);
}

static void test_forgotten_after_15_minutes(void **state)
{
	struct penalty *p = *state;
	uint8_t ip[16];

	v4(ip, 192, 0, 2, 3);
	penalty_failure_at(p, ip, T0);
	penalty_failure_at(p, ip, T0 + 1000);
	/* The clock runs from the last failure. */
	assert_int_equal(penalty_delay_ms_at(p, ip, BASE, T0 + 1000 + PENALTY_FORGET_MS - 1),
	                 4 * BASE);
	assert_int_equal(penalty_delay_ms_at(p, ip, BASE, T0 + 1000 + PENALTY_FORGET_MS), BASE);
	/* A new failure after that starts from one again. */
	penalty_failure_at(p, ip, T0 + 1000 + PENALTY_FORGET_MS);
	assert_int_equal(penalty_delay_ms_at(p, ip, BASE, T0 + 1001 + PENALTY_FORGET_MS), 2 * BASE);
}

static void test_addresses_apart(void **state)
{
	struct penalty *p = *state;
	uint8_t a[16], b[16];

	v4(a, 198, 51, 100, 1);
	v4(b, 198, 51, 100, 2);
	penalty_failure_at(p, a, T0);
	penalty_failure_at(p, a, T0);
	assert_int_equal(penalty_delay_ms_at(p, a, BASE, T0), 4 * BASE);
	assert_int_equal(penalty_delay_ms_at(p, b, BASE, T0), BASE);
	penalty_success(p, b);
	assert_int_equal(penalty_delay_ms_at(p, a, BASE, T0), 4 * BASE);
}

static void test_ipv6_by_prefix(void **state)
{
	struct penalty *p = *state;
	uint8_t a[16] = {0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 1};
	uint8_t b[16] = {0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 1, 0xde, 0xad, 0, 0, 0, 0, 0, 2};
	uint8_t c[16] = {0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 2, 0, 0, 0, 0, 0, 0, 0, 1};

	penalty_failure_at(p, a, T0);
	/* Same /64: the same penalty. Another /64: none. */
	assert_int_equal(penalty_delay_ms_at(p, b, BASE, T0), 2 * BASE);
	assert_int_equal(penalty_delay_ms_at(p, c, BASE, T0), BASE);
}

static void test_base_larger_than_cap(void **state)
{
	struct penalty *p = *state;
	uint8_t ip[16];

	v4(ip, 203, 0, 113, 9);
	assert_int_equal(penalty_delay_ms_at(p, ip, 0, T0), 0);
	penalty_failure_at(p, ip, T0);
	assert_int_equal(penalty_delay_ms_at(p, ip, 0, T0), 0);
	assert_int_equal(penalty_delay_ms_at(p, ip, 30000, T0), 30000);
	assert_int_equal(penalty_delay_ms_at(p, ip, 100, T0), 200);
}

/* Many addresses: the table stays bounded and recent ones are kept. */
static void test_many_addresses(void **state)
{
	struct penalty *p = *state;
	uint8_t ip[16];

	for (unsigned i = 0; i < 100000; i++) {
		v4(ip, 10, (uint8_t)(i >> 16), (uint8_t)(i >> 8), (uint8_t)i);
		penalty_failure_at(p, ip, T0 + i);
	}
	v4(ip, 10, (uint8_t)(99999 >> 16), (uint8_t)(99999 >> 8), (uint8_t)99999);
	assert_int_equal(penalty_delay_ms_at(p, ip, BASE, T0 + 100000), 2 * BASE);
}

/* A failure recorded in a child process is seen by the parent. */
static void test_shared_across_fork(void **state)
{
	struct penalty *p = *state;
	uint8_t ip[16];
	int status;
	pid_t pid;

	v4(ip, 192, 0, 2, 77);
	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		penalty_failure_at(p, ip, T0);
		penalty_failure_at(p, ip, T0);
		_exit(0);
	}
	assert_int_equal(waitpid(pid, &status, 0), pid);
	assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
	assert_int_equal(penalty_delay_ms_at(p, ip, BASE, T0), 4 * BASE);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_setup_teardown(test_doubling_and_cap, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_delay_counts_from_the_credentials, setup,
	                                    teardown),
	    cmocka_unit_test_setup_teardown(test_success_forgets, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_forgotten_after_15_minutes, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_addresses_apart, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_ipv6_by_prefix, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_base_larger_than_cap, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_many_addresses, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_shared_across_fork, setup, teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
