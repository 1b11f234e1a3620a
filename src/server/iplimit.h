/* max_connections_per_ip across all worker processes.
 *
 * Workers share one table in memory mapped before they are forked. Each
 * entry counts the connections of one client address in one worker, so when
 * a worker dies the master can drop exactly what that worker held. A bucket
 * that is full lets the connection through (fail open) rather than refuse
 * clients the table cannot track. */
#ifndef PILLAR_SERVER_IPLIMIT_H
#define PILLAR_SERVER_IPLIMIT_H

#include <stdint.h>

struct iplimit;

/* Shared anonymous mapping; call before forking. NULL on failure. */
struct iplimit *iplimit_create(void);
void iplimit_destroy(struct iplimit **t);

/* Count one more connection of ip (16 bytes, IPv4 as v4-mapped IPv6) in
 * worker `worker`. Returns 0 when counted (release it later), 1 when the
 * table has no room to track it (let it through, do not release), or -1 when
 * the address already has `limit` connections in all workers together. */
int iplimit_acquire(struct iplimit *t, const uint8_t ip[16], unsigned worker, unsigned limit);
void iplimit_release(struct iplimit *t, const uint8_t ip[16], unsigned worker);

/* The worker is gone: forget every connection it held. */
void iplimit_forget_worker(struct iplimit *t, unsigned worker);

#endif
