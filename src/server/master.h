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

#include "auth/authproto.h"
#include "auth/ticket.h"
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
	enum worker_role role;
	int ctl; /* master's end of the control channel, -1 if none */
};

/* Auth processes (auth/authd.h): one per worker generation, the current
 * one and those still draining after reloads. */
#define AUTHPROC_MAX 16

struct authproc {
	bool in_use;
	bool draining; /* an old generation's: told to drain, never restarted */
	unsigned generation;
	pid_t pid;              /* 0: not running */
	int listen_fd;          /* the master's copy, kept across restarts */
	struct authp_addr addr; /* what the generation's workers connect to */
	uint64_t started_ms;
	uint64_t restart_at_ms; /* 0: running or not to be restarted */
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
	int handoff[2];  /* login workers send on [0], mail workers take from [1] */
	int jail;        /* as root: <state_dir>/empty, where login workers chroot */
	uid_t login_uid; /* as root: login_as */
	gid_t login_gid;
	int control;        /* the control socket, -1 if none */
	int control_client; /* the client being served, -1 if none */
	struct authproc auth[AUTHPROC_MAX];
	/* Login tickets (auth/ticket.h): the auth process makes them, mail
	 * workers check them; login workers wipe their copy at once. */
	uint8_t ticket_key[TICKET_KEY_LEN];
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

/* authproc.c: the auth processes. The master calls these at a few points:
 * spawn_generation (authproc_start_generation: a listening socket and an
 * auth process for the new generation; older ones are told to drain),
 * spawn_worker (authproc_addr for the worker's parameters, and
 * authproc_close_fds in the child), reap (authproc_reap), its loop
 * (authproc_tick, authproc_live), stop (authproc_signal) and exit
 * (authproc_close). */
void authproc_start_generation(struct master *m);
/* The socket address of a generation's auth process, NULL if it has none. */
const struct authp_addr *authproc_addr(const struct master *m, unsigned generation);
/* Whether pid was an auth process; if so it is dealt with: one of the
 * current generation is restarted (after RESTART_BACKOFF_MS when it died
 * young), a draining one forgotten. */
bool authproc_reap(struct master *m, pid_t pid, int status);
/* Restart what is due; lower *timeout_ms (-1: none) to the next restart. */
void authproc_tick(struct master *m, uint64_t now, int *timeout_ms);
/* Auth processes running. */
size_t authproc_live(const struct master *m);
/* Signal every auth process (SIGTERM: drain and exit; SIGKILL). */
void authproc_signal(struct master *m, int sig);
/* In a child the master forked: close the master's listening sockets. */
void authproc_close_fds(struct master *m);
/* At exit: close everything. */
void authproc_close(struct master *m);

/* Worker side of the control channel: answer the master's requests (who,
 * kick) and obey stop. Free the returned bufferevent at exit. */
struct worker_env;
struct bufferevent;
struct bufferevent *worker_control_start(struct worker_env *env, int fd,
                                         void (*stop)(void *arg, uint64_t ms), void *arg);

#endif
