/* Thread pool with completions delivered to a libevent loop.
 *
 * Submitted jobs wait in a FIFO; a thread runs work(), moves the job to the
 * done list and wakes the loop through an eventfd. The loop drains the done
 * list and runs done() callbacks in submission-completion order. */
#include "core/pool.h"

#include "core/log.h"
#include "core/util.h"

#include <errno.h>
#include <event2/event.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/eventfd.h>
#include <sys/resource.h>
#include <unistd.h>

/* Enough threads to keep every core busy hashing; more only queue. */
#define POOL_MAX_THREADS 64

struct job {
	struct job *next;
	void (*work)(void *arg);
	void (*done)(void *arg);
	void *arg;
};

struct job_queue {
	struct job *head, *tail;
};

struct pool {
	pthread_mutex_t lock;
	pthread_cond_t cond;
	struct job_queue todo, slow, background, finished;
	bool stopping;
	bool has_background; /* its thread is started */
	unsigned pending;
	int efd;
	struct event *ev;
	unsigned nthreads;
	pthread_t threads[POOL_MAX_THREADS];
};

static void queue_push(struct job_queue *q, struct job *j)
{
	j->next = NULL;
	if (q->tail != NULL)
		q->tail->next = j;
	else
		q->head = j;
	q->tail = j;
}

static struct job *queue_pop(struct job_queue *q)
{
	struct job *j = q->head;
	if (j != NULL) {
		q->head = j->next;
		if (q->head == NULL)
			q->tail = NULL;
	}
	return j;
}

enum thread_kind {
	THREAD_QUICK,      /* never runs slow jobs */
	THREAD_ANY,        /* quick jobs first, then slow ones */
	THREAD_BACKGROUND, /* background jobs only, at the lowest priority */
};

struct pool_thread_arg {
	struct pool *pool;
	enum thread_kind kind;
};

static struct job *next_job(struct pool *pool, enum thread_kind kind)
{
	if (kind == THREAD_BACKGROUND)
		return queue_pop(&pool->background);
	struct job *j = queue_pop(&pool->todo);
	if (j == NULL && kind == THREAD_ANY)
		j = queue_pop(&pool->slow);
	return j;
}

static void *pool_thread(void *argp)
{
	struct pool_thread_arg *arg = argp;
	struct pool *pool = arg->pool;
	enum thread_kind kind = arg->kind;

	free(arg);
	/* Linux gives each thread its own nice value; raising it needs no
	 * privilege (and cannot be undone without one, so this thread keeps
	 * it). A failure only leaves the thread at normal priority. */
	if (kind == THREAD_BACKGROUND)
		(void)setpriority(PRIO_PROCESS, (id_t)gettid(), 19);
	pthread_mutex_lock(&pool->lock);
	for (;;) {
		struct job *j;
		while ((j = next_job(pool, kind)) == NULL && !pool->stopping)
			pthread_cond_wait(&pool->cond, &pool->lock);
		if (j == NULL)
			break;
		pthread_mutex_unlock(&pool->lock);
		j->work(j->arg);
		pthread_mutex_lock(&pool->lock);
		bool was_empty = pool->finished.head == NULL;
		queue_push(&pool->finished, j);
		if (was_empty) {
			uint64_t one = 1;
			/* The counter cannot overflow in practice; a failed write
			 * would only delay completions until the next one. */
			if (write(pool->efd, &one, sizeof(one)) < 0 && errno != EAGAIN)
				log_error("pool: eventfd write failed errno=%d", errno);
		}
	}
	pthread_mutex_unlock(&pool->lock);
	return NULL;
}

static void pool_run_done(struct pool *pool)
{
	struct job_queue done;

	pthread_mutex_lock(&pool->lock);
	done = pool->finished;
	pool->finished.head = pool->finished.tail = NULL;
	pthread_mutex_unlock(&pool->lock);

	struct job *j;
	while ((j = queue_pop(&done)) != NULL) {
		pool->pending--;
		j->done(j->arg);
		free(j);
	}
}

static void pool_wakeup(evutil_socket_t fd, short what, void *arg)
{
	(void)what;
	uint64_t n;
	if (read(fd, &n, sizeof(n)) < 0 && errno != EAGAIN)
		log_error("pool: eventfd read failed errno=%d", errno);
	pool_run_done(arg);
}

static void start_thread(struct pool *pool, enum thread_kind kind)
{
	struct pool_thread_arg *arg = xmalloc(sizeof(*arg));

	arg->pool = pool;
	arg->kind = kind;
	int err = pthread_create(&pool->threads[pool->nthreads], NULL, pool_thread, arg);
	if (err != 0)
		fatal("pool: pthread_create: errno=%d", err);
	pool->nthreads++;
}

struct pool *pool_new(struct event_base *base, unsigned threads)
{
	struct pool *pool = xcalloc(1, sizeof(*pool));

	if (threads == 0)
		threads = 1;
	if (threads > POOL_MAX_THREADS - 1) /* one slot kept for the background thread */
		threads = POOL_MAX_THREADS - 1;
	pthread_mutex_init(&pool->lock, NULL);
	pthread_cond_init(&pool->cond, NULL);
	pool->efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	if (pool->efd < 0)
		fatal("pool: eventfd: errno=%d", errno);
	pool->ev = event_new(base, pool->efd, EV_READ | EV_PERSIST, pool_wakeup, pool);
	event_add(pool->ev, NULL);
	for (unsigned i = 0; i < threads; i++)
		start_thread(pool, i == 0 && threads > 1 ? THREAD_QUICK : THREAD_ANY);
	return pool;
}

static void submit(struct pool *pool, struct job_queue *q, void (*work)(void *arg),
                   void (*done)(void *arg), void *arg)
{
	/* From a done run by pool_free, after the threads are gone. */
	if (pool->stopping) {
		work(arg);
		done(arg);
		return;
	}
	struct job *j = xmalloc(sizeof(*j));
	j->work = work;
	j->done = done;
	j->arg = arg;
	pool->pending++;
	pthread_mutex_lock(&pool->lock);
	queue_push(q, j);
	/* Wake them all: the one woken must be allowed to take this job. */
	pthread_cond_broadcast(&pool->cond);
	pthread_mutex_unlock(&pool->lock);
}

void pool_submit(struct pool *pool, void (*work)(void *arg), void (*done)(void *arg), void *arg)
{
	submit(pool, &pool->todo, work, done, arg);
}

void pool_submit_slow(struct pool *pool, void (*work)(void *arg), void (*done)(void *arg),
                      void *arg)
{
	submit(pool, &pool->slow, work, done, arg);
}

void pool_submit_background(struct pool *pool, void (*work)(void *arg), void (*done)(void *arg),
                            void *arg)
{
	if (!pool->has_background && !pool->stopping) {
		start_thread(pool, THREAD_BACKGROUND);
		pool->has_background = true;
	}
	submit(pool, &pool->background, work, done, arg);
}

unsigned pool_pending(const struct pool *pool)
{
	return pool->pending;
}

void pool_free(struct pool **poolp)
{
	struct pool *pool = *poolp;

	if (pool == NULL)
		return;
	pthread_mutex_lock(&pool->lock);
	pool->stopping = true;
	pthread_cond_broadcast(&pool->cond);
	pthread_mutex_unlock(&pool->lock);
	/* Threads finish the whole queue before they see `stopping`. */
	for (unsigned i = 0; i < pool->nthreads; i++)
		pthread_join(pool->threads[i], NULL);
	pool_run_done(pool);
	event_free(pool->ev);
	close(pool->efd);
	pthread_cond_destroy(&pool->cond);
	pthread_mutex_destroy(&pool->lock);
	free(pool);
	*poolp = NULL;
}
