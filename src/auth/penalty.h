/* The brute-force penalty: a failed login from a client address is answered
 * after a delay that doubles with each consecutive failure from that address,
 * across every worker process.
 *
 * Workers share one table in memory mapped by the master before it forks
 * (like server/iplimit.h), guarded by a robust process-shared mutex so a
 * worker that dies holding it does not wedge the others. An address is
 * forgotten after a successful login from it, or PENALTY_FORGET_MS after its
 * last failure. Every call is O(1) and holds the lock for a few hundred
 * nanoseconds: safe to call from an event loop.
 *
 * Addresses are 16 bytes (IPv4 as v4-mapped IPv6). IPv6 addresses count by
 * their /64 prefix: one end site is given a whole /64, so keying on the full
 * address would let one attacker rotate through 2^64 fresh penalties.
 *
 * The table is bounded; when a bucket is full the entry with the oldest
 * failure makes room. Losing a penalty that way only ever makes a delay
 * shorter, never refuses anyone. */
#ifndef PILLAR_AUTH_PENALTY_H
#define PILLAR_AUTH_PENALTY_H

#include <stdint.h>

/* Longest delay the penalty grows to (unless the base delay alone is
 * longer): long enough that guessing is hopeless (a few hundred tries an
 * hour), short enough that a user who mistyped a few times is not locked
 * out for long. */
#define PENALTY_MAX_DELAY_MS (15u * 1000u)
/* A failure older than this is forgotten (DESIGN, issue 4: 15 minutes). */
#define PENALTY_FORGET_MS (15u * 60u * 1000u)

struct penalty;

/* Shared anonymous mapping; call in the master before forking. NULL on
 * failure (out of memory, or no process-shared mutexes). */
struct penalty *penalty_create(void);
void penalty_destroy(struct penalty **p);

/* A login from ip failed; its credentials arrived at asked_ms (now_ms()).
 * Records the failure and returns how much longer to wait before answering
 * it. The delay is base_ms (auth_failure_delay) for the first failure,
 * doubled for each failure already recorded and not yet forgotten, capped at
 * PENALTY_MAX_DELAY_MS (or base_ms when that is larger); base_ms 0 means
 * none. It counts from asked_ms: the time the check took is not added to it,
 * so a failure is answered as late whether its check was quick or slow. */
uint64_t penalty_fail(struct penalty *p, const uint8_t ip[16], uint64_t base_ms, uint64_t asked_ms);

/* A login from ip succeeded: forget its failures. */
void penalty_success(struct penalty *p, const uint8_t ip[16]);

/* The same with the time given (milliseconds of CLOCK_MONOTONIC, which all
 * processes share), for tests, and its two halves: the delay a failure now
 * would get, and recording one. */
uint64_t penalty_fail_at(struct penalty *p, const uint8_t ip[16], uint64_t base_ms,
                         uint64_t asked_ms, uint64_t now);
uint64_t penalty_delay_ms_at(struct penalty *p, const uint8_t ip[16], uint64_t base_ms,
                             uint64_t now);
void penalty_failure_at(struct penalty *p, const uint8_t ip[16], uint64_t now);

#endif
