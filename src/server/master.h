/* The master process's state, shared by master.c (processes, signals,
 * reload) and control.c (the control socket). Nothing outside src/server
 * includes this. */
#ifndef PILLAR_SERVER_MASTER_H
#define PILLAR_SERVER_MASTER_H

#include <signal.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "server/listeners.h"

struct config;
struct iplimit;
struct penalty;
struct tls_ctx;

/* Worker slots, current and draining generations together. */
#define MAX_WORKER_SLOTS 1024
/* A worker that dies sooner than this after starting is restarted only
 * after this delay, so a crash loop does not spin. */
#define RESTART_BACKOFF_MS 1000
/* How long workers get to finish on stop (SIGTERM, or `pillar stop`
 * without --grace), and the margin after it before they are killed. */
#define DEFAULT_STOP_GRACE_MS 10000
#define STOP_KILL_MARGIN_MS   5000

struct worker_slot {
	pid_t pid;
	unsigned generation;
	unsigned index;
	uint64_t started_ms;
	uint64_t restart_at_ms; /* 0: running or not to be restarted */
	bool in_use;
	int ctl; /* master's end of the control channel, -1 if none */
};

struct master {
	struct config *cfg;
	struct listener_set listeners;
	struct worker_slot slots[MAX_WORKER_SLOTS];
	unsigned generation;
	int sigfd;
	sigset_t old_mask;
	bool stopping;
	uint64_t stop_deadline_ms;
	char *pidfile;
	struct iplimit *ipl;
	struct penalty *penalty;
	struct tls_ctx *tls;
	int control;        /* the control socket, -1 if none */
	int control_client; /* the client being served, -1 if none */
};

/* Re-read the config, certificates and listeners; on success start a new
 * generation of workers and let the old ones drain. Returns 0, or -1 with
 * every reason in err (the old config stays). */
int master_reload(struct master *m, char *err, size_t errlen);

/* Stop: workers tell their sessions and close; any still running after
 * grace_ms are killed. */
void master_stop(struct master *m, uint64_t grace_ms);

/* control.c: the control socket <state_dir>/control.sock (root only, 0600). */
int control_open(struct master *m, char *err, size_t errlen);
void control_close(struct master *m);
/* Serve one waiting client of the control socket (call when readable). */
void control_serve(struct master *m);

/* Worker side of the control channel: answer the master's requests (who,
 * kick) and obey stop. Free the returned bufferevent at exit. */
struct worker_env;
struct bufferevent;
struct bufferevent *worker_control_start(struct worker_env *env, int fd,
                                         void (*stop)(void *arg, uint64_t ms), void *arg);

#endif
