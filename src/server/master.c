/* The master process: binds, forks and watches the workers, reloads and
 * stops. It does no protocol work and holds no session state, so it stays
 * small enough to keep running as root (it must, to bind ports < 1024 again
 * on reload). Signals arrive through a signalfd and are handled in order. */
#include "server/server.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <dirent.h>
#include <openssl/crypto.h>
#include <unistd.h>

#include "core/config.h"
#include "core/log.h"
#include "core/priv.h"
#include "core/util.h"
#include "directory/directory.h"
#include "auth/penalty.h"
#include "net/tls.h"
#include "server/iplimit.h"
#include "server/listeners.h"
#include "server/master.h"
#include "server/sandbox.h"

static unsigned slot_number(const struct master *m, const struct worker_slot *slot)
{
	return (unsigned)(slot - m->slots);
}

static void spawn_worker(struct master *m, struct worker_slot *slot)
{
	int pair[2];
	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, pair) < 0) {
		log_error("socketpair failed errno=%d; retrying", errno);
		slot->restart_at_ms = now_ms() + RESTART_BACKOFF_MS;
		return;
	}
	pid_t pid = fork();
	if (pid < 0) {
		log_error("fork failed errno=%d; retrying", errno);
		close(pair[0]);
		close(pair[1]);
		slot->restart_at_ms = now_ms() + RESTART_BACKOFF_MS;
		return;
	}
	if (pid == 0) {
		/* Only this worker's end of its own channel stays open. */
		close(pair[0]);
		for (size_t i = 0; i < MAX_WORKER_SLOTS; i++)
			if (m->slots[i].in_use && m->slots[i].ctl >= 0)
				close(m->slots[i].ctl);
		if (m->control >= 0)
			close(m->control);
		if (m->control_client >= 0) /* else it never sees its answer end */
			close(m->control_client);
		close(m->sigfd);
		authproc_close_fds(m);
		signal(SIGCHLD, SIG_DFL);
		sigprocmask(SIG_SETMASK, &m->old_mask, NULL);
		bool login = slot->role == ROLE_LOGIN;
		if (login)
			OPENSSL_cleanse(m->ticket_key, sizeof(m->ticket_key));
		close(m->handoff[login ? 1 : 0]);
		if (!login && m->jail >= 0)
			close(m->jail);
		struct worker_params p = {
		    .cfg = m->cfg,
		    .listeners = &m->listeners,
		    .tls = m->tls,
		    .ipl = m->ipl,
		    .penalty = m->penalty,
		    .role = slot->role,
		    .slot = slot_number(m, slot),
		    .index = slot->index,
		    .ctl = pair[1],
		    .handoff = m->handoff[login ? 0 : 1],
		    .jail = login ? m->jail : -1,
		    .login_uid = m->login_uid,
		    .login_gid = m->login_gid,
		    .housekeeper = !login && slot->index == 0,
		    .auth = authproc_addr(m, slot->generation),
		    .ticket_key = login ? NULL : m->ticket_key,
		};
		int status = worker_main(&p);
		sandbox_exit(status, login && p.jail >= 0);
	}
	close(pair[1]);
	slot->ctl = pair[0];
	slot->pid = pid;
	slot->started_ms = now_ms();
	slot->restart_at_ms = 0;
	log_debug("worker started pid=%d role=%s index=%u generation=%u", (int)pid,
	          slot->role == ROLE_LOGIN ? "login" : "mail", slot->index, slot->generation);
}

static struct worker_slot *free_slot(struct master *m)
{
	for (size_t i = 0; i < MAX_WORKER_SLOTS; i++)
		if (!m->slots[i].in_use)
			return &m->slots[i];
	return NULL;
}

static bool has_pop3(const struct listener_set *set)
{
	for (size_t i = 0; i < set->count; i++)
		if (set->items[i].proto == PROTO_POP3 || set->items[i].proto == PROTO_POP3S)
			return true;
	return false;
}

/* `workers` of each role; no login workers without a POP3 listener. */
static void spawn_generation(struct master *m)
{
	m->generation++;
	authproc_start_generation(m);
	for (int role = ROLE_LOGIN; role <= ROLE_MAIL; role++) {
		if (role == ROLE_LOGIN && !has_pop3(&m->listeners))
			continue;
		for (unsigned i = 0; i < m->cfg->workers; i++) {
			struct worker_slot *slot = free_slot(m);
			if (slot == NULL) {
				log_error("too many worker processes; not starting more");
				return;
			}
			memset(slot, 0, sizeof(*slot));
			slot->ctl = -1;
			slot->in_use = true;
			slot->generation = m->generation;
			slot->role = (enum worker_role)role;
			slot->index = i;
			spawn_worker(m, slot);
		}
	}
}

/* Where login workers are locked up when the server runs as root: an empty
 * directory of root's, <state_dir>/empty, made here if missing. The
 * descriptor is kept, so what the workers chroot to is what was checked,
 * whatever happens to the name later. Also looks up login_as. */
static int prepare_jail(const struct config *cfg, int *jail_r, uid_t *uid_r, gid_t *gid_r,
                        char *err, size_t errlen)
{
	const char *error;
	char path[4096];

	*jail_r = -1;
	*uid_r = geteuid();
	*gid_r = getegid();
	if (geteuid() != 0)
		return 0;
	if (priv_lookup(cfg->login_as, uid_r, gid_r, &error) < 0) {
		snprintf(err, errlen, "login_as %s: %s", cfg->login_as, error);
		return -1;
	}
	if (*uid_r == 0) {
		snprintf(err, errlen, "login_as %s is uid 0; login workers must not run as root",
		         cfg->login_as);
		return -1;
	}
	snprintf(path, sizeof(path), "%s/empty", cfg->state_dir);
	if (mkdir(path, 0555) < 0 && errno != EEXIST) {
		snprintf(err, errlen, "cannot create %s: %s", path, strerror(errno));
		return -1;
	}
	int fd = open(path, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	struct stat st;
	if (fd < 0 || fstat(fd, &st) < 0) {
		snprintf(err, errlen, "cannot open %s: %s", path, strerror(errno));
		if (fd >= 0)
			close(fd);
		return -1;
	}
	int probe = dup(fd);
	DIR *d = probe >= 0 ? fdopendir(probe) : NULL;
	bool empty = d != NULL;
	for (struct dirent *de; d != NULL && (de = readdir(d)) != NULL;)
		if (strcmp(de->d_name, ".") != 0 && strcmp(de->d_name, "..") != 0)
			empty = false;
	if (d != NULL)
		closedir(d);
	else if (probe >= 0)
		close(probe);
	if (!empty) {
		snprintf(err, errlen, "%s must be an empty directory (login workers chroot there)",
		         path);
		close(fd);
		return -1;
	}
	if (st.st_uid != 0) {
		snprintf(err, errlen, "%s must belong to root (login workers chroot there)", path);
		close(fd);
		return -1;
	}
	if ((st.st_mode & 07777) != 0555)
		(void)fchmod(fd, 0555);
	*jail_r = fd;
	return 0;
}

static void signal_workers(struct master *m, int sig, bool old_only)
{
	for (size_t i = 0; i < MAX_WORKER_SLOTS; i++) {
		struct worker_slot *s = &m->slots[i];
		if (!s->in_use || s->pid <= 0)
			continue;
		if (old_only && s->generation == m->generation)
			continue;
		kill(s->pid, sig);
	}
}

static size_t live_workers(const struct master *m)
{
	size_t n = 0;
	for (size_t i = 0; i < MAX_WORKER_SLOTS; i++)
		if (m->slots[i].in_use && m->slots[i].pid > 0)
			n++;
	return n;
}

static void reap(struct master *m)
{
	int status;
	pid_t pid;

	while ((pid = waitpid(-1, &status, WNOHANG)) > 0) {
		if (authproc_reap(m, pid, status))
			continue;
		struct worker_slot *s = NULL;
		for (size_t i = 0; i < MAX_WORKER_SLOTS; i++)
			if (m->slots[i].in_use && m->slots[i].pid == pid)
				s = &m->slots[i];
		if (s == NULL)
			continue;
		s->pid = 0;
		if (s->ctl >= 0) {
			close(s->ctl);
			s->ctl = -1;
		}
		iplimit_forget_worker(m->ipl, slot_number(m, s));
		bool clean = WIFEXITED(status) && WEXITSTATUS(status) == 0;
		if (m->stopping || s->generation != m->generation) {
			if (!clean)
				log_warn("worker exited pid=%d status=%d", (int)pid, status);
			s->in_use = false;
			continue;
		}
		if (WIFSIGNALED(status))
			log_error("worker died pid=%d signal=%d; restarting", (int)pid,
			          WTERMSIG(status));
		else
			log_error("worker exited pid=%d status=%d; restarting", (int)pid,
			          WIFEXITED(status) ? WEXITSTATUS(status) : status);
		uint64_t now = now_ms();
		if (now - s->started_ms < RESTART_BACKOFF_MS)
			s->restart_at_ms = now + RESTART_BACKOFF_MS;
		else
			spawn_worker(m, s);
	}
}

/* Every session holds descriptors (its socket, the mailbox's lock file and
 * directory; a relayed TLS session two more), so the soft limit a shell
 * or service manager hands down (often 1024) would cap the server long
 * before memory does. Raise it to the hard limit, which the administrator
 * sets (LimitNOFILE= in the systemd unit); workers inherit it. */
static unsigned long long raise_nofile(void)
{
	struct rlimit rl;

	if (getrlimit(RLIMIT_NOFILE, &rl) < 0)
		return 0;
	if (rl.rlim_cur < rl.rlim_max) {
		rlim_t was = rl.rlim_cur;
		rl.rlim_cur = rl.rlim_max;
		if (setrlimit(RLIMIT_NOFILE, &rl) < 0)
			rl.rlim_cur = was;
	}
	return (unsigned long long)rl.rlim_cur;
}

/* Certificates are read here, as root, so key files may stay private. */
static int load_tls(const struct config *cfg, struct tls_ctx **tls_r, char *err, size_t errlen)
{
	*tls_r = NULL;
	if (cfg->tls_cert.count == 0)
		return 0;
	*tls_r =
	    tls_ctx_new((const char *const *)cfg->tls_cert.items,
	                (const char *const *)cfg->tls_key.items, cfg->tls_cert.count, err, errlen);
	return *tls_r == NULL ? -1 : 0;
}

int master_reload(struct master *m, char *err, size_t errlen)
{
	struct config *cfg;
	struct strlist errors = {0};

	if (config_load(m->cfg->path, &cfg, &errors) < 0) {
		size_t used = 0;
		err[0] = '\0';
		for (size_t i = 0; i < errors.count && used < errlen; i++)
			used += (size_t)snprintf(err + used, errlen - used, "%s%s", i ? "\n" : "",
			                         errors.items[i]);
		strlist_free(&errors);
		return -1;
	}
	struct listener_set fresh;
	struct tls_ctx *tls;
	int jail;
	uid_t login_uid;
	gid_t login_gid;
	if (prepare_jail(cfg, &jail, &login_uid, &login_gid, err, errlen) < 0) {
		config_free(&cfg);
		return -1;
	}
	if (load_tls(cfg, &tls, err, errlen) < 0) {
		if (jail >= 0)
			close(jail);
		config_free(&cfg);
		return -1;
	}
	if (listeners_bind(cfg, &m->listeners, &fresh, err, errlen) < 0) {
		if (jail >= 0)
			close(jail);
		tls_ctx_free(&tls);
		config_free(&cfg);
		return -1;
	}
	if (m->jail >= 0)
		close(m->jail);
	m->jail = jail;
	m->login_uid = login_uid;
	m->login_gid = login_gid;
	/* The old workers keep their own copy of the old context. */
	tls_ctx_free(&m->tls);
	m->tls = tls;
	/* What the new config no longer names is closed here; the old
	 * workers close their copies when they drain. */
	listeners_close(&m->listeners, 1);
	m->listeners = fresh;
	config_free(&m->cfg);
	m->cfg = cfg;
	spawn_generation(m);
	signal_workers(m, SIGUSR1, true);
	log_info("reloaded config=%s workers=%u", m->cfg->path, m->cfg->workers);
	return 0;
}

static void reload(struct master *m)
{
	char err[2048];
	if (master_reload(m, err, sizeof(err)) < 0) {
		for (char *line = strtok(err, "\n"); line != NULL; line = strtok(NULL, "\n"))
			log_error("reload refused: %s", line);
	}
}

void master_stop(struct master *m, uint64_t grace_ms)
{
	if (m->stopping)
		return;
	m->stopping = true;
	m->stop_deadline_ms = now_ms() + grace_ms + STOP_KILL_MARGIN_MS;
	log_info("stopping grace=%llums", (unsigned long long)grace_ms);
	/* The grace goes over the control channel; SIGTERM is the fallback
	 * for a worker whose channel is gone (it then uses its default). */
	char req[64];
	int n = snprintf(req, sizeof(req), "stop %llu\n", (unsigned long long)grace_ms);
	for (size_t i = 0; i < MAX_WORKER_SLOTS; i++) {
		struct worker_slot *s = &m->slots[i];
		if (!s->in_use || s->pid <= 0)
			continue;
		if (s->ctl < 0 || send(s->ctl, req, (size_t)n, MSG_DONTWAIT | MSG_NOSIGNAL) != n)
			kill(s->pid, SIGTERM);
	}
	/* They stop taking connections and exit when the workers have gone. */
	authproc_signal(m, SIGTERM);
}

static void daemonize(void)
{
	pid_t pid = fork();
	if (pid < 0)
		fatal("fork: %s", strerror(errno));
	if (pid > 0)
		_exit(0);
	setsid();
	pid = fork();
	if (pid < 0)
		fatal("fork: %s", strerror(errno));
	if (pid > 0)
		_exit(0);
	int fd = open("/dev/null", O_RDWR);
	if (fd >= 0) {
		dup2(fd, 0);
		dup2(fd, 1);
		dup2(fd, 2);
		if (fd > 2)
			close(fd);
	}
	if (chdir("/") < 0)
		fatal("chdir /: %s", strerror(errno));
}

static void write_pidfile(struct master *m)
{
	m->pidfile = xasprintf("%s/pillar.pid", m->cfg->state_dir);
	FILE *f = fopen(m->pidfile, "w");
	if (f == NULL) {
		log_warn("cannot write pid file path=%s errno=%d", m->pidfile, errno);
		x_free(&m->pidfile);
		return;
	}
	fprintf(f, "%d\n", (int)getpid());
	fclose(f);
}

static int master_loop(struct master *m)
{
	for (;;) {
		uint64_t now = now_ms();
		if (m->stopping && live_workers(m) == 0 && authproc_live(m) == 0)
			return 0;
		if (m->stopping && now >= m->stop_deadline_ms) {
			log_warn("workers did not stop in time; killing them");
			signal_workers(m, SIGKILL, false);
			authproc_signal(m, SIGKILL);
			m->stop_deadline_ms = now + 60000;
		}
		/* Sleep until a signal or the next scheduled restart. */
		int timeout = -1;
		for (size_t i = 0; i < MAX_WORKER_SLOTS; i++) {
			struct worker_slot *s = &m->slots[i];
			if (!s->in_use || s->restart_at_ms == 0 || m->stopping)
				continue;
			if (s->restart_at_ms <= now) {
				spawn_worker(m, s);
				continue;
			}
			int left = (int)(s->restart_at_ms - now);
			if (timeout < 0 || left < timeout)
				timeout = left;
		}
		authproc_tick(m, now, &timeout);
		if (m->stopping) {
			int left = (int)(m->stop_deadline_ms - now);
			if (timeout < 0 || left < timeout)
				timeout = left;
		}

		struct pollfd pfd[2] = {{.fd = m->sigfd, .events = POLLIN},
		                        {.fd = m->control, .events = POLLIN}};
		int n = poll(pfd, m->control >= 0 ? 2 : 1, timeout);
		if (n < 0 && errno != EINTR)
			fatal("poll: %s", strerror(errno));
		if (n <= 0)
			continue;
		if (m->control >= 0 && (pfd[1].revents & POLLIN))
			control_serve(m);
		struct signalfd_siginfo si;
		while (read(m->sigfd, &si, sizeof(si)) == (ssize_t)sizeof(si)) {
			switch (si.ssi_signo) {
			case SIGCHLD:
				reap(m);
				break;
			case SIGHUP:
				if (!m->stopping)
					reload(m);
				break;
			case SIGTERM:
			case SIGINT:
				master_stop(m, DEFAULT_STOP_GRACE_MS);
				break;
			}
		}
	}
}

/* Open the whole directory once, as the account that started us, before
 * any worker: an older schema is migrated here (the workers and the auth
 * process each open one part and never migrate) and a missing SQLite
 * directory is said now, not at the first login. A PostgreSQL server that
 * is not up yet is only warned about: the workers connect when it is. */
static int open_directory(const struct config *cfg)
{
	struct dir *dir;
	const char *error;

	if (dir_open(cfg, false, &dir, &error) == 0) {
		dir_close(&dir);
		return 0;
	}
	if (dir_is_postgresql(cfg->directory)) {
		log_warn("%s", error);
		return 0;
	}
	log_error("%s", error);
	return -1;
}

int server_run(struct config *cfg, bool foreground)
{
	struct master m;
	char err[512];
	const char *error;
	uid_t uid;
	gid_t gid;

	memset(&m, 0, sizeof(m));
	m.cfg = cfg;
	m.control = -1;
	m.control_client = -1;
	m.jail = -1;
	log_open("pillar", foreground);
	if (geteuid() == 0 && priv_lookup(cfg->run_as, &uid, &gid, &error) < 0) {
		log_error("run_as %s: %s", cfg->run_as, error);
		config_free(&m.cfg);
		return 1;
	}
	if (open_directory(cfg) < 0) {
		config_free(&m.cfg);
		return 1;
	}
	if (prepare_jail(cfg, &m.jail, &m.login_uid, &m.login_gid, err, sizeof(err)) < 0) {
		log_error("%s", err);
		config_free(&m.cfg);
		return 1;
	}
	if (load_tls(cfg, &m.tls, err, sizeof(err)) < 0) {
		log_error("cannot load the TLS certificate: %s", err);
		config_free(&m.cfg);
		return 1;
	}
	if (listeners_bind(cfg, NULL, &m.listeners, err, sizeof(err)) < 0) {
		log_error("cannot listen: %s", err);
		tls_ctx_free(&m.tls);
		config_free(&m.cfg);
		return 1;
	}
	if (m.listeners.count == 0) {
		log_error("no listeners: set pop3_listen in %s", cfg->path);
		config_free(&m.cfg);
		return 1;
	}
	if (!foreground)
		daemonize();
	m.ipl = iplimit_create();
	m.penalty = penalty_create();
	if (m.ipl == NULL || m.penalty == NULL)
		fatal("cannot map the per-address connection table: %s", strerror(errno));
	/* One pair for the life of the server: login workers of any
	 * generation hand sessions to whichever mail worker is current. */
	if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, m.handoff) < 0)
		fatal("socketpair: %s", strerror(errno));
	random_bytes(m.ticket_key, sizeof(m.ticket_key));

	sigset_t mask;
	sigemptyset(&mask);
	sigaddset(&mask, SIGCHLD);
	sigaddset(&mask, SIGHUP);
	sigaddset(&mask, SIGTERM);
	sigaddset(&mask, SIGINT);
	sigprocmask(SIG_BLOCK, &mask, &m.old_mask);
	m.sigfd = signalfd(-1, &mask, SFD_NONBLOCK | SFD_CLOEXEC);
	if (m.sigfd < 0)
		fatal("signalfd: %s", strerror(errno));
	signal(SIGPIPE, SIG_IGN);
	write_pidfile(&m);
	if (control_open(&m, err, sizeof(err)) < 0)
		log_warn("no control socket: %s", err);

	for (size_t i = 0; i < m.listeners.count; i++)
		log_info("listening proto=%s addr=%s",
		         listener_proto_name(m.listeners.items[i].proto),
		         m.listeners.items[i].spec);
	unsigned long long nofile = raise_nofile();
	spawn_generation(&m);
	log_info("started pid=%d workers=%u open-files=%llu", (int)getpid(), cfg->workers, nofile);

	int status = master_loop(&m);

	listeners_close(&m.listeners, 1);
	authproc_close(&m);
	if (m.pidfile != NULL) {
		unlink(m.pidfile);
		x_free(&m.pidfile);
	}
	close(m.sigfd);
	control_close(&m);
	for (size_t i = 0; i < MAX_WORKER_SLOTS; i++)
		if (m.slots[i].in_use && m.slots[i].ctl >= 0)
			close(m.slots[i].ctl);
	close(m.handoff[0]);
	close(m.handoff[1]);
	if (m.jail >= 0)
		close(m.jail);
	iplimit_destroy(&m.ipl);
	penalty_destroy(&m.penalty);
	OPENSSL_cleanse(m.ticket_key, sizeof(m.ticket_key));
	tls_ctx_free(&m.tls);
	log_info("stopped");
	config_free(&m.cfg);
	return status;
}
