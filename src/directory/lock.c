/* The POP3 session lock in PostgreSQL. See lock.h.
 *
 * One connection per process, guarded by a mutex, holds every advisory
 * lock the process's sessions have taken (session-level locks belong to
 * the connection that took them). A lock is pg_try_advisory_lock on a
 * bigint derived from the mailbox address, so the lock never waits: a
 * mailbox in use is answered at once, as the flock answers it.
 *
 * A restart of PostgreSQL ends that connection and with it every lock.
 * While locks are held, a watcher thread looks at the connection every
 * second and, once the server is back, takes them all again on a new
 * one, before another server's login is likely to. A lock that another
 * server took meanwhile is marked lost: its session must end without
 * changing the mailbox (dir_session_lock_lost, dir_session_lock_confirm). */
#include "directory/lock.h"

#include "core/config.h"
#include "core/util.h"
#include "directory/directory.h"
#include "directory/pg_internal.h"

#include <inttypes.h>
#include <libpq-fe.h>
#include <openssl/evp.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

/* After a failed connect, callers within this many seconds get the same
 * error at once instead of each waiting for a connect of its own. */
#define LOCK_RETRY_SECONDS 1

/* How often the watcher looks at the connection while locks are held. */
#define LOCK_WATCH_SECONDS 1

struct dir_session_lock {
	int64_t key;
	bool held;        /* taken on the current connection */
	atomic_bool lost; /* another session took it while ours was down */
	struct dir_session_lock *prev, *next;
};

static struct {
	pthread_mutex_t mutex;
	pthread_cond_t wake; /* of the watcher: a lock was added */
	PGconn *conn;
	pid_t pid;                      /* the process conn belongs to */
	pid_t watcher;                  /* the process whose watcher runs */
	char *url;                      /* of the directory, for the watcher */
	time_t failed_at;               /* of the last failed connect */
	char failed[256];               /* its error */
	struct dir_session_lock *locks; /* every live lock of this process */
} lk = {.mutex = PTHREAD_MUTEX_INITIALIZER, .wake = PTHREAD_COND_INITIALIZER};

static __thread char lock_err[320];

/* "<prefix><libpq's message on one line>" into this thread's buffer. */
static int lock_fail(const char *prefix, const char *detail, const char **error_r)
{
	char msg[256];
	size_t len;

	snprintf(msg, sizeof(msg), "%s", detail != NULL && detail[0] != '\0' ? detail : "");
	len = strlen(msg);
	while (len > 0 && (msg[len - 1] == '\n' || msg[len - 1] == '\r'))
		msg[--len] = '\0';
	for (char *p = msg; *p != '\0'; p++) {
		if (*p == '\n')
			*p = ' ';
	}
	snprintf(lock_err, sizeof(lock_err), "%s%s", prefix, msg);
	*error_r = lock_err;
	return -1;
}

/* The advisory lock key of a mailbox: the first 8 bytes of SHA-256 of its
 * address. A collision would only make two mailboxes exclude each other. */
static int64_t lock_key(const char *address)
{
	unsigned char md[EVP_MAX_MD_SIZE];
	unsigned int len = 0;
	uint64_t k = 0;

	if (EVP_Digest(address, strlen(address), md, &len, EVP_sha256(), NULL) != 1 || len < 8)
		abort();
	for (int i = 0; i < 8; i++)
		k = k << 8 | md[i];
	return (int64_t)k;
}

static void ignore_notice(void *arg, const char *message)
{
	(void)arg;
	(void)message;
}

/* One statement on the lock connection: "t" or "f" into *result_r. */
static int lock_query(const char *sql, int64_t key, bool *result_r)
{
	char k[24];
	const char *values[1] = {k};
	PGresult *res;
	bool ok;

	snprintf(k, sizeof(k), "%" PRId64, key);
	res = PQexecParams(lk.conn, sql, 1, NULL, values, NULL, NULL, 0);
	ok = res != NULL && PQresultStatus(res) == PGRES_TUPLES_OK && PQntuples(res) == 1;
	if (ok)
		*result_r = strcmp(PQgetvalue(res, 0, 0), "t") == 0;
	PQclear(res);
	return ok ? 0 : -1;
}

/* Take again, on a new connection, the locks the old one held: each one
 * that is neither held nor lost. One that another server took meanwhile
 * is lost, and stays unheld, so its unlock does not release the other's.
 * Mutex held. */
static int lock_retake(const char **error_r)
{
	for (struct dir_session_lock *l = lk.locks; l != NULL; l = l->next) {
		bool taken = false;

		if (l->held || atomic_load(&l->lost))
			continue;
		if (lock_query("SELECT pg_try_advisory_lock($1::bigint)", l->key, &taken) < 0)
			return lock_fail("session lock: ", PQerrorMessage(lk.conn), error_r);
		l->held = taken;
		if (!taken)
			atomic_store(&l->lost, true);
	}
	return 0;
}

/* A working connection in lk.conn holding every lock not lost, or -1.
 * Mutex held. */
static int lock_connect(const char *url, const char **error_r)
{
	time_t now = time(NULL);

	if (lk.conn != NULL && lk.pid != getpid()) {
		/* Inherited over fork: the parent's. Finishing it would end
		 * the parent's session; leave it, and its locks, alone. */
		lk.conn = NULL;
		lk.locks = NULL;
	}
	/* A connection the server ended while idle (a restart: a FATAL
	 * message, then EOF) is noticed by libpq only when it reads. An idle
	 * connection has nothing to read: anything there means it is gone. */
	if (lk.conn != NULL && PQstatus(lk.conn) == CONNECTION_OK) {
		struct pollfd pfd = {.fd = PQsocket(lk.conn), .events = POLLIN};

		if (pfd.fd >= 0 && poll(&pfd, 1, 0) == 0)
			return 0;
	}
	if (lk.conn == NULL && lk.failed_at != 0 && now - lk.failed_at < LOCK_RETRY_SECONDS)
		return lock_fail("session lock: cannot connect to PostgreSQL: ", lk.failed,
		                 error_r);
	if (lk.conn != NULL) {
		PQfinish(lk.conn);
		lk.conn = NULL;
		/* Its locks went with it. */
		for (struct dir_session_lock *l = lk.locks; l != NULL; l = l->next)
			l->held = false;
	}
	lk.conn = pg_connect(url, "pillar-lock");
	lk.pid = getpid();
	if (lk.conn == NULL || PQstatus(lk.conn) != CONNECTION_OK) {
		snprintf(lk.failed, sizeof(lk.failed), "%s",
		         lk.conn != NULL ? PQerrorMessage(lk.conn) : "out of memory");
		lk.failed_at = now;
		PQfinish(lk.conn);
		lk.conn = NULL;
		return lock_fail("session lock: cannot connect to PostgreSQL: ", lk.failed,
		                 error_r);
	}
	lk.failed_at = 0;
	PQsetNoticeProcessor(lk.conn, ignore_notice, NULL);
	/* The server's keepalives end this connection, and so release its
	 * locks, when this machine vanishes without closing it. */
	PQclear(PQexec(lk.conn, "SET tcp_keepalives_idle = " PG_KEEPALIVE_IDLE
	                        "; SET tcp_keepalives_interval = " PG_KEEPALIVE_INTERVAL
	                        "; SET tcp_keepalives_count = " PG_KEEPALIVE_COUNT));
	return lock_retake(error_r);
}

/* The watcher: while this process holds locks, keeps the connection that
 * holds them alive, so a restarted server gets them back at once rather
 * than at the next login or logout. */
static void *lock_watch(void *arg)
{
	const char *error;

	(void)arg;
	pthread_mutex_lock(&lk.mutex);
	for (;;) {
		struct timespec until;

		while (lk.locks == NULL)
			pthread_cond_wait(&lk.wake, &lk.mutex);
		clock_gettime(CLOCK_REALTIME, &until);
		until.tv_sec += LOCK_WATCH_SECONDS;
		pthread_cond_timedwait(&lk.wake, &lk.mutex, &until);
		if (lk.locks != NULL)
			lock_connect(lk.url, &error);
	}
	return NULL;
}

/* Start this process's watcher, once. Mutex held. */
static void lock_watch_start(const char *url)
{
	pthread_t thread;
	pthread_attr_t attr;

	if (lk.watcher == getpid())
		return;
	free(lk.url);
	lk.url = xstrdup(url);
	pthread_attr_init(&attr);
	pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
	pthread_attr_setstacksize(&attr, 64 * 1024);
	if (pthread_create(&thread, &attr, lock_watch, NULL) == 0)
		lk.watcher = getpid();
	pthread_attr_destroy(&attr);
}

int dir_session_lock(const struct config *cfg, const char *address,
                     struct dir_session_lock **lock_r, const char **error_r)
{
	struct dir_session_lock *l;
	bool taken = false;
	int r;

	*lock_r = NULL;
	if (!dir_is_postgresql(cfg->directory))
		return 0;
	l = xcalloc(1, sizeof(*l));
	l->key = lock_key(address);
	pthread_mutex_lock(&lk.mutex);
	r = lock_connect(cfg->directory, error_r);
	if (r == 0 && lock_query("SELECT pg_try_advisory_lock($1::bigint)", l->key, &taken) < 0) {
		/* The connection broke since its last use (PostgreSQL was
		 * restarted): connect again, once, and retry. */
		r = lock_fail("session lock: ", PQerrorMessage(lk.conn), error_r);
		if (PQstatus(lk.conn) != CONNECTION_OK &&
		    lock_connect(cfg->directory, error_r) == 0) {
			r = lock_query("SELECT pg_try_advisory_lock($1::bigint)", l->key, &taken);
			if (r < 0)
				lock_fail("session lock: ", PQerrorMessage(lk.conn), error_r);
		}
	}
	if (r == 0 && taken) {
		l->held = true;
		l->next = lk.locks;
		if (lk.locks != NULL)
			lk.locks->prev = l;
		lk.locks = l;
		lock_watch_start(cfg->directory);
		pthread_cond_signal(&lk.wake);
	}
	pthread_mutex_unlock(&lk.mutex);
	if (r < 0 || !taken) {
		free(l);
		return r < 0 ? -1 : 1;
	}
	*lock_r = l;
	return 0;
}

bool dir_session_lock_lost(const struct dir_session_lock *l)
{
	return l != NULL && atomic_load(&l->lost);
}

int dir_session_lock_confirm(struct dir_session_lock *l, const char **error_r)
{
	int r;

	if (l == NULL)
		return 0;
	pthread_mutex_lock(&lk.mutex);
	r = lock_connect(lk.url, error_r);
	if (r == 0 && !l->held)
		r = lock_fail("session lock: ",
		              "another session took the mailbox while PostgreSQL "
		              "was restarting",
		              error_r);
	pthread_mutex_unlock(&lk.mutex);
	return r;
}

void dir_session_unlock(struct dir_session_lock **lockp)
{
	struct dir_session_lock *l = *lockp;
	bool released;

	if (l == NULL)
		return;
	*lockp = NULL;
	pthread_mutex_lock(&lk.mutex);
	if (l->prev != NULL)
		l->prev->next = l->next;
	else if (lk.locks == l)
		lk.locks = l->next;
	if (l->next != NULL)
		l->next->prev = l->prev;
	/* On a broken connection the lock went with it: nothing to do. */
	if (l->held && lk.conn != NULL && lk.pid == getpid() && PQstatus(lk.conn) == CONNECTION_OK)
		lock_query("SELECT pg_advisory_unlock($1::bigint)", l->key, &released);
	pthread_mutex_unlock(&lk.mutex);
	free(l);
}
