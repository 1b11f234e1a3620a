#include "server/iplimit.h"

#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <string.h>
#include <sys/mman.h>

#include "core/util.h"

/* 4096 buckets of 16 entries: 64k (address, worker) pairs, 1.3 MB. */
#define IPLIMIT_BUCKETS 4096
#define IPLIMIT_WAYS    16

struct ipl_entry {
	uint8_t ip[16];
	uint16_t worker;
	uint16_t count; /* 0: free */
};

struct iplimit {
	pthread_mutex_t lock;
	uint64_t seed; /* so nobody can aim addresses at one bucket */
	struct ipl_entry e[IPLIMIT_BUCKETS][IPLIMIT_WAYS];
};

struct iplimit *iplimit_create(void)
{
	struct iplimit *t =
	    mmap(NULL, sizeof(*t), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	if (t == MAP_FAILED)
		return NULL;
	pthread_mutexattr_t attr;
	pthread_mutexattr_init(&attr);
	pthread_mutexattr_setpshared(&attr, PTHREAD_PROCESS_SHARED);
	/* A worker killed while holding the lock must not wedge the rest. */
	pthread_mutexattr_setrobust(&attr, PTHREAD_MUTEX_ROBUST);
	pthread_mutex_init(&t->lock, &attr);
	pthread_mutexattr_destroy(&attr);
	random_bytes(&t->seed, sizeof(t->seed));
	return t;
}

void iplimit_destroy(struct iplimit **t)
{
	if (*t != NULL) {
		munmap(*t, sizeof(**t));
		*t = NULL;
	}
}

static void lock(struct iplimit *t)
{
	if (pthread_mutex_lock(&t->lock) == EOWNERDEAD)
		pthread_mutex_consistent(&t->lock);
}

static struct ipl_entry *bucket(struct iplimit *t, const uint8_t ip[16])
{
	/* FNV-1a over seed and address. */
	uint64_t h = 0xcbf29ce484222325ULL ^ t->seed;
	for (int i = 0; i < 16; i++) {
		h ^= ip[i];
		h *= 0x100000001b3ULL;
	}
	return t->e[(h ^ (h >> 29)) % IPLIMIT_BUCKETS];
}

int iplimit_acquire(struct iplimit *t, const uint8_t ip[16], unsigned worker, unsigned limit)
{
	lock(t);
	struct ipl_entry *b = bucket(t, ip), *mine = NULL, *free_e = NULL;
	unsigned total = 0;
	for (int i = 0; i < IPLIMIT_WAYS; i++) {
		if (b[i].count == 0) {
			if (free_e == NULL)
				free_e = &b[i];
		} else if (memcmp(b[i].ip, ip, 16) == 0) {
			total += b[i].count;
			if (b[i].worker == worker)
				mine = &b[i];
		}
	}
	int rc = 1;
	if (total >= limit) {
		rc = -1;
	} else if (mine != NULL && mine->count < UINT16_MAX) {
		mine->count++;
		rc = 0;
	} else if (mine == NULL && free_e != NULL) {
		memcpy(free_e->ip, ip, 16);
		free_e->worker = (uint16_t)worker;
		free_e->count = 1;
		rc = 0;
	}
	pthread_mutex_unlock(&t->lock);
	return rc;
}

void iplimit_release(struct iplimit *t, const uint8_t ip[16], unsigned worker)
{
	lock(t);
	struct ipl_entry *b = bucket(t, ip);
	for (int i = 0; i < IPLIMIT_WAYS; i++) {
		if (b[i].count > 0 && b[i].worker == worker && memcmp(b[i].ip, ip, 16) == 0) {
			b[i].count--;
			break;
		}
	}
	pthread_mutex_unlock(&t->lock);
}

void iplimit_forget_worker(struct iplimit *t, unsigned worker)
{
	lock(t);
	for (size_t i = 0; i < IPLIMIT_BUCKETS; i++)
		for (int j = 0; j < IPLIMIT_WAYS; j++)
			if (t->e[i][j].worker == worker)
				t->e[i][j].count = 0;
	pthread_mutex_unlock(&t->lock);
}
