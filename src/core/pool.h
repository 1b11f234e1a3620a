/* A small thread pool whose completions come back to a libevent loop.
 *
 * libevent has none, so this is written here: jobs run `work(arg)` on one of
 * the pool's threads, then `done(arg)` runs on the loop thread. Password
 * hashing and directory queries go through it so the loop never blocks.
 * `done` is always called exactly once per submitted job; the caller keeps
 * `arg` alive until then (a session that closes meanwhile waits for it). */
#ifndef PILLAR_CORE_POOL_H
#define PILLAR_CORE_POOL_H

struct event_base;
struct pool;

struct pool *pool_new(struct event_base *base, unsigned threads);

/* Waits until every submitted job has run (work and done), then joins the
 * threads. A job submitted by a done that pool_free runs runs at once, on
 * the caller's thread. */
void pool_free(struct pool **pool);

void pool_submit(struct pool *pool, void (*work)(void *arg), void (*done)(void *arg), void *arg);

/* The same for CPU-heavy work (password hashing). Such jobs wait in a
 * queue of their own, and one thread of the pool never takes them, so a
 * burst of logins never delays directory lookups, mailbox scans and fsyncs
 * that sessions already logged in are waiting for. */
void pool_submit_slow(struct pool *pool, void (*work)(void *arg), void (*done)(void *arg),
                      void *arg);

/* The same for work nobody waits for (what a reply has already been sent
 * without): one thread of its own, started with the first such job, runs
 * these one at a time at the lowest CPU priority, so they take only time
 * nothing else wants. */
void pool_submit_background(struct pool *pool, void (*work)(void *arg), void (*done)(void *arg),
                            void *arg);

/* Jobs queued or running. */
unsigned pool_pending(const struct pool *pool);

#endif
