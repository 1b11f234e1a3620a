/* Unit tests for src/core/pool.c: every kind of job runs once, on a pool
 * thread, and its done on the loop; background jobs run on a thread of
 * their own at the lowest priority; pool_free runs what is left. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <event2/event.h>
#include <pthread.h>
#include <stdbool.h>
#include <sys/resource.h>
#include <unistd.h>

#include "core/pool.h"

#define JOBS 40

struct job {
	struct pool *pool;
	struct event_base *base;
	pthread_t loop;
	pthread_t ran_on;
	int nice;
	int worked, done;
	unsigned *left;   /* the loop stops when it reaches 0 */
	struct job *then; /* submitted (background) by this one's done */
};

static void work(void *arg)
{
	struct job *j = arg;

	j->ran_on = pthread_self();
	errno = 0;
	j->nice = getpriority(PRIO_PROCESS, (id_t)gettid());
	j->worked++;
}

static void done(void *arg)
{
	struct job *j = arg;

	/* On the loop's thread, after the work. */
	assert_true(pthread_equal(pthread_self(), j->loop));
	assert_int_equal(j->worked, 1);
	j->done++;
	if (j->then != NULL)
		pool_submit_background(j->pool, work, done, j->then);
	if (j->left != NULL && --*j->left == 0)
		event_base_loopbreak(j->base);
}

static void test_every_queue(void **state)
{
	struct event_base *base = event_base_new();
	struct pool *pool = pool_new(base, 3);
	struct job jobs[JOBS] = {0};
	unsigned left = JOBS;

	(void)state;
	for (int i = 0; i < JOBS; i++) {
		jobs[i] =
		    (struct job){.pool = pool, .base = base, .loop = pthread_self(), .left = &left};
		if (i % 3 == 0)
			pool_submit(pool, work, done, &jobs[i]);
		else if (i % 3 == 1)
			pool_submit_slow(pool, work, done, &jobs[i]);
		else
			pool_submit_background(pool, work, done, &jobs[i]);
	}
	assert_int_equal(pool_pending(pool), JOBS);
	event_base_dispatch(base);
	assert_int_equal(left, 0);
	assert_int_equal(pool_pending(pool), 0);

	pthread_t background = 0;
	for (int i = 0; i < JOBS; i++) {
		assert_int_equal(jobs[i].worked, 1);
		assert_int_equal(jobs[i].done, 1);
		assert_false(pthread_equal(jobs[i].ran_on, pthread_self()));
		if (i % 3 == 2) {
			/* One thread runs them all, at nice 19. */
			if (background == 0)
				background = jobs[i].ran_on;
			assert_true(pthread_equal(jobs[i].ran_on, background));
			assert_int_equal(jobs[i].nice, 19);
		} else {
			assert_int_equal(jobs[i].nice, 0);
			assert_false(pthread_equal(jobs[i].ran_on, background));
		}
	}
	pool_free(&pool);
	assert_null(pool);
	event_base_free(base);
}

/* Jobs still queued at pool_free run, and so does a background job that
 * one of their dones submits after the threads have gone. */
static void test_free_runs_the_rest(void **state)
{
	struct event_base *base = event_base_new();
	struct pool *pool = pool_new(base, 2);
	struct job jobs[JOBS] = {0}, later[JOBS] = {0};

	(void)state;
	for (int i = 0; i < JOBS; i++) {
		later[i] = (struct job){.pool = pool, .base = base, .loop = pthread_self()};
		jobs[i] = (struct job){
		    .pool = pool, .base = base, .loop = pthread_self(), .then = &later[i]};
		pool_submit_slow(pool, work, done, &jobs[i]);
	}
	pool_free(&pool);
	for (int i = 0; i < JOBS; i++) {
		assert_int_equal(jobs[i].done, 1);
		assert_int_equal(later[i].worked, 1);
		assert_int_equal(later[i].done, 1);
	}
	event_base_free(base);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_every_queue),
	    cmocka_unit_test(test_free_runs_the_rest),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
