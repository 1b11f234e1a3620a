/* The master's side of the auth processes (auth/authd.h): one per worker
 * generation, alone in reading the directory's secrets and hashing.
 *
 * The master makes the generation's listening socket (an abstract AF_UNIX
 * name, auth/authproto.h) and keeps its own copy, so an auth process that
 * dies is replaced on the same address: the workers' reconnections wait in
 * the socket's backlog meanwhile, and they need not be told anything. On a
 * reload the new generation gets a new socket and process; the old process
 * is told to drain (SIGUSR1) and the master closes its copy of the old
 * socket, so the old workers keep their connections until they exit, and
 * no one new can connect. */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "auth/authd.h"
#include "auth/authproto.h"
#include "core/config.h"
#include "core/log.h"
#include "core/util.h"
#include "net/tls.h"
#include "server/master.h"

/* The uids the auth process serves: the login workers' account (login_as
 * when started as root, else our own). Mail workers never ask: every
 * credential check happens before a hand-off. */
static size_t allowed_uids(const struct master *m, uid_t uids[AUTHD_MAX_UIDS])
{
	uids[0] = geteuid() == 0 ? m->login_uid : geteuid();
	return 1;
}

static void spawn(struct master *m, struct authproc *a)
{
	pid_t pid = fork();

	if (pid < 0) {
		log_error("fork failed errno=%d; retrying the auth process", errno);
		a->restart_at_ms = now_ms() + RESTART_BACKOFF_MS;
		return;
	}
	if (pid == 0) {
		/* Named at once: tests and operators tell it from the
		 * workers by its name. */
		prctl(PR_SET_NAME, "pillar-auth", 0, 0, 0);
		/* Only its own listening socket stays open: no listeners, no
		 * control channels, no other generation's socket. */
		for (size_t i = 0; i < MAX_WORKER_SLOTS; i++)
			if (m->slots[i].in_use && m->slots[i].ctl >= 0)
				close(m->slots[i].ctl);
		if (m->control >= 0)
			close(m->control);
		if (m->control_client >= 0)
			close(m->control_client);
		close(m->sigfd);
		listeners_close(&m->listeners, 0);
		/* Nor the TLS private keys the master loaded. */
		tls_ctx_free(&m->tls);
		for (size_t i = 0; i < AUTHPROC_MAX; i++)
			if (&m->auth[i] != a && m->auth[i].in_use && m->auth[i].listen_fd >= 0)
				close(m->auth[i].listen_fd);
		signal(SIGCHLD, SIG_DFL);
		sigprocmask(SIG_SETMASK, &m->old_mask, NULL);
		struct authd_params p = {
		    .cfg = m->cfg, .listen_fd = a->listen_fd, .ticket_key = m->ticket_key};
		p.nuids = allowed_uids(m, p.uids);
		exit(authd_main(&p));
	}
	a->pid = pid;
	a->started_ms = now_ms();
	a->restart_at_ms = 0;
	char where[64];
	log_info("auth process started pid=%d generation=%u addr=%s", (int)pid, a->generation,
	         authp_addr_str(&a->addr, where, sizeof(where)));
}

/* Tell an old generation's process to finish with the workers it has. */
static void drain(struct authproc *a)
{
	a->draining = true;
	a->restart_at_ms = 0;
	if (a->listen_fd >= 0) {
		close(a->listen_fd);
		a->listen_fd = -1;
	}
	if (a->pid > 0)
		kill(a->pid, SIGUSR1);
	else
		a->in_use = false;
}

void authproc_start_generation(struct master *m)
{
	struct authproc *a = NULL;
	const char *error;

	for (size_t i = 0; i < AUTHPROC_MAX; i++)
		if (m->auth[i].in_use && !m->auth[i].draining)
			drain(&m->auth[i]);
	for (size_t i = 0; i < AUTHPROC_MAX && a == NULL; i++)
		if (!m->auth[i].in_use)
			a = &m->auth[i];
	if (a == NULL) {
		/* Many reloads in a row, each old process still draining:
		 * the oldest makes room (its workers' checks fail for a
		 * moment, temporarily). */
		a = &m->auth[0];
		for (size_t i = 1; i < AUTHPROC_MAX; i++)
			if (m->auth[i].generation < a->generation)
				a = &m->auth[i];
		log_warn("too many auth processes draining; stopping pid=%d", (int)a->pid);
		if (a->pid > 0)
			kill(a->pid, SIGKILL);
	}
	memset(a, 0, sizeof(*a));
	a->listen_fd = authp_listen(&a->addr, &error);
	if (a->listen_fd < 0) {
		/* The workers' checks fail temporarily until a reload. */
		log_error("cannot make the auth socket: %s; logins fail until a reload", error);
		return;
	}
	a->in_use = true;
	a->generation = m->generation;
	spawn(m, a);
}

const struct authp_addr *authproc_addr(const struct master *m, unsigned generation)
{
	for (size_t i = 0; i < AUTHPROC_MAX; i++)
		if (m->auth[i].in_use && m->auth[i].generation == generation)
			return &m->auth[i].addr;
	return NULL;
}

bool authproc_reap(struct master *m, pid_t pid, int status)
{
	struct authproc *a = NULL;

	for (size_t i = 0; i < AUTHPROC_MAX && a == NULL; i++)
		if (m->auth[i].in_use && m->auth[i].pid == pid)
			a = &m->auth[i];
	if (a == NULL)
		return false;
	a->pid = 0;
	bool clean = WIFEXITED(status) && WEXITSTATUS(status) == 0;
	if (m->stopping || a->draining) {
		if (!clean)
			log_warn("auth process exited pid=%d status=%d", (int)pid, status);
		else
			log_info("auth process exited pid=%d generation=%u", (int)pid,
			         a->generation);
		if (a->listen_fd >= 0)
			close(a->listen_fd);
		memset(a, 0, sizeof(*a));
		a->listen_fd = -1;
		return true;
	}
	if (WIFSIGNALED(status))
		log_error("auth process died pid=%d signal=%d; restarting", (int)pid,
		          WTERMSIG(status));
	else
		log_error("auth process died pid=%d status=%d; restarting", (int)pid,
		          WIFEXITED(status) ? WEXITSTATUS(status) : status);
	uint64_t now = now_ms();
	if (now - a->started_ms < RESTART_BACKOFF_MS)
		a->restart_at_ms = now + RESTART_BACKOFF_MS;
	else
		spawn(m, a);
	return true;
}

void authproc_tick(struct master *m, uint64_t now, int *timeout_ms)
{
	for (size_t i = 0; i < AUTHPROC_MAX; i++) {
		struct authproc *a = &m->auth[i];

		if (!a->in_use || a->restart_at_ms == 0 || m->stopping)
			continue;
		if (a->restart_at_ms <= now) {
			spawn(m, a);
			continue;
		}
		int left = (int)(a->restart_at_ms - now);
		if (*timeout_ms < 0 || left < *timeout_ms)
			*timeout_ms = left;
	}
}

size_t authproc_live(const struct master *m)
{
	size_t n = 0;

	for (size_t i = 0; i < AUTHPROC_MAX; i++)
		if (m->auth[i].in_use && m->auth[i].pid > 0)
			n++;
	return n;
}

void authproc_signal(struct master *m, int sig)
{
	for (size_t i = 0; i < AUTHPROC_MAX; i++)
		if (m->auth[i].in_use && m->auth[i].pid > 0)
			kill(m->auth[i].pid, sig);
}

void authproc_close_fds(struct master *m)
{
	for (size_t i = 0; i < AUTHPROC_MAX; i++)
		if (m->auth[i].in_use && m->auth[i].listen_fd >= 0)
			close(m->auth[i].listen_fd);
}

void authproc_close(struct master *m)
{
	authproc_close_fds(m);
	for (size_t i = 0; i < AUTHPROC_MAX; i++) {
		m->auth[i].in_use = false;
		m->auth[i].listen_fd = -1;
	}
}
