/* The per-address brute-force penalty. See penalty.h.
 *
 * A fixed table in shared memory, hashed with a per-instance random seed so
 * nobody can aim addresses at one bucket and evict a penalty on purpose. */
#include "auth/penalty.h"

#include "core/util.h"

#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <string.h>
#include <sys/mman.h>

/* 4096 buckets of 8 entries: 32k addresses, about 1 MB. More addresses than
 * that failing within 15 minutes only lose the oldest penalties. */
#define PENALTY_BUCKETS 4096
#define PENALTY_WAYS    8

struct penalty_entry {
	uint8_t key[16];
	uint32_t failures; /* 0: free */
	uint64_t last;     /* now_ms() of the last failure */
};

struct penalty {
	pthread_mutex_t lock;
	uint64_t seed;
	struct penalty_entry e[PENALTY_BUCKETS][PENALTY_WAYS];
};

static const uint8_t v4_mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};

struct penalty *penalty_create(void)
{
	struct penalty *p =
	    mmap(NULL, sizeof(*p), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	pthread_mutexattr_t attr;
	int rc;

	if (p == MAP_FAILED)
		return NULL;
	pthread_mutexattr_init(&attr);
	pthread_mutexattr_setpshared(&attr, PTHREAD_PROCESS_SHARED);
	/* A worker killed while holding the lock must not wedge the rest. */
	pthread_mutexattr_setrobust(&attr, PTHREAD_MUTEX_ROBUST);
	rc = pthread_mutex_init(&p->lock, &attr);
	pthread_mutexattr_destroy(&attr);
	if (rc != 0) {
		munmap(p, sizeof(*p));
		return NULL;
	}
	random_bytes(&p->seed, sizeof(p->seed));
	return p;
}

void penalty_destroy(struct penalty **pp)
{
	if (*pp != NULL) {
		pthread_mutex_destroy(&(*pp)->lock);
		munmap(*pp, sizeof(**pp));
		*pp = NULL;
	}
}

static void lock(struct penalty *p)
{
	/* The dead owner left at most one entry half-written; every entry
	 * is valid whatever its bytes, so the table can be used as it is. */
	if (pthread_mutex_lock(&p->lock) == EOWNERDEAD)
		pthread_mutex_consistent(&p->lock);
}

static void unlock(struct penalty *p)
{
	pthread_mutex_unlock(&p->lock);
}

/* The key an address is counted under: IPv4 whole, IPv6 by its /64. */
static void make_key(const uint8_t ip[16], uint8_t key[16])
{
	memcpy(key, ip, 16);
	if (memcmp(ip, v4_mapped, sizeof(v4_mapped)) != 0)
		memset(key + 8, 0, 8);
}

static struct penalty_entry *bucket(struct penalty *p, const uint8_t key[16])
{
	/* FNV-1a over seed and key. */
	uint64_t h = 0xcbf29ce484222325ULL ^ p->seed;

	for (int i = 0; i < 16; i++) {
		h ^= key[i];
		h *= 0x100000001b3ULL;
	}
	return p->e[(h ^ (h >> 29)) % PENALTY_BUCKETS];
}

static bool expired(const struct penalty_entry *e, uint64_t now)
{
	return e->failures == 0 || (now > e->last && now - e->last >= PENALTY_FORGET_MS);
}

/* The live entry for key, or NULL. Called with the lock held. */
static struct penalty_entry *find(struct penalty *p, const uint8_t key[16], uint64_t now)
{
	struct penalty_entry *b = bucket(p, key);

	for (int i = 0; i < PENALTY_WAYS; i++) {
		if (!expired(&b[i], now) && memcmp(b[i].key, key, 16) == 0)
			return &b[i];
	}
	return NULL;
}

uint64_t penalty_delay_ms_at(struct penalty *p, const uint8_t ip[16], uint64_t base_ms,
                             uint64_t now)
{
	uint64_t cap = base_ms > PENALTY_MAX_DELAY_MS ? base_ms : PENALTY_MAX_DELAY_MS;
	uint8_t key[16];
	uint32_t failures = 0;
	uint64_t delay = base_ms;

	make_key(ip, key);
	lock(p);
	struct penalty_entry *e = find(p, key, now);
	if (e != NULL)
		failures = e->failures;
	unlock(p);
	/* Doubling stops at the cap, so this cannot overflow. */
	for (uint32_t i = 0; i < failures && delay < cap; i++)
		delay *= 2;
	return delay < cap ? delay : cap;
}

void penalty_failure_at(struct penalty *p, const uint8_t ip[16], uint64_t now)
{
	uint8_t key[16];

	make_key(ip, key);
	lock(p);
	struct penalty_entry *e = find(p, key, now);
	if (e == NULL) {
		/* A free or expired way, else the one with the oldest failure. */
		struct penalty_entry *b = bucket(p, key);

		e = &b[0];
		for (int i = 0; i < PENALTY_WAYS; i++) {
			if (expired(&b[i], now)) {
				e = &b[i];
				break;
			}
			if (b[i].last < e->last)
				e = &b[i];
		}
		memcpy(e->key, key, 16);
		e->failures = 0;
	}
	if (e->failures < UINT32_MAX)
		e->failures++;
	e->last = now;
	unlock(p);
}

void penalty_success(struct penalty *p, const uint8_t ip[16])
{
	uint8_t key[16];

	make_key(ip, key);
	lock(p);
	struct penalty_entry *b = bucket(p, key);
	for (int i = 0; i < PENALTY_WAYS; i++) {
		if (b[i].failures != 0 && memcmp(b[i].key, key, 16) == 0)
			b[i].failures = 0;
	}
	unlock(p);
}

uint64_t penalty_fail_at(struct penalty *p, const uint8_t ip[16], uint64_t base_ms,
                         uint64_t asked_ms, uint64_t now)
{
	uint64_t delay = penalty_delay_ms_at(p, ip, base_ms, now);
	uint64_t spent = now > asked_ms ? now - asked_ms : 0;

	penalty_failure_at(p, ip, now);
	return delay > spent ? delay - spent : 0;
}

uint64_t penalty_fail(struct penalty *p, const uint8_t ip[16], uint64_t base_ms, uint64_t asked_ms)
{
	return penalty_fail_at(p, ip, base_ms, asked_ms, now_ms());
}
