/* A worker process: one event loop serving many sessions. It drops root
 * first, then accepts on the inherited listeners until told to drain
 * (SIGUSR1, after a reload: stop accepting, finish open sessions) or to stop
 * (SIGTERM/SIGINT: tell every session and close). */
#include <errno.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/listener.h>
#include <event2/thread.h>
#include <malloc.h>
#include <openssl/crypto.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <unistd.h>

#include "auth/authc.h"
#include "core/config.h"
#include "core/env.h"
#include "core/log.h"
#include "core/pool.h"
#include "core/priv.h"
#include "core/util.h"
#include "directory/directory.h"
#include "net/conn.h"
#include "net/listen.h"
#include "net/proxy.h"
#include "net/tls.h"
#include "pop3/pop3.h"
#include "server/iplimit.h"
#include "smtp/smtp.h"
#include "store/delivery.h"
#include "server/handoff.h"
#include "server/listeners.h"
#include "server/sandbox.h"
#include "server/master.h"
#include "server/worker.h"

/* After a stop, sessions get this long to say goodbye before the loop ends
 * regardless. */
#define WORKER_STOP_GRACE_S 10
/* When accept fails for lack of descriptors, pause that listener this long
 * instead of spinning on a socket that stays readable. */
#define ACCEPT_BACKOFF_MS 500

static void backoff_cb(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	struct worker_listener *wl = arg;
	if (wl->evl != NULL)
		evconnlistener_enable(wl->evl);
}

static void accept_error_cb(struct evconnlistener *evl, void *arg)
{
	struct worker_listener *wl = arg;
	int err = EVUTIL_SOCKET_ERROR();

	if (err == EMFILE || err == ENFILE || err == ENOBUFS || err == ENOMEM) {
		log_warn("accept failed errno=%d; pausing listener", err);
		evconnlistener_disable(evl);
		struct timeval tv = {0, ACCEPT_BACKOFF_MS * 1000};
		evtimer_add(wl->backoff, &tv);
	}
}

static void close_listeners(struct worker *w)
{
	for (size_t i = 0; i < w->nlisteners; i++) {
		if (w->listeners[i].evl != NULL) {
			evconnlistener_free(w->listeners[i].evl);
			w->listeners[i].evl = NULL;
		}
		if (w->listeners[i].backoff != NULL)
			event_del(w->listeners[i].backoff);
	}
}

static void stop_timer_cb(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	struct worker *w = arg;
	log_warn("worker %u: sessions still open at the end of the stop grace; closing",
	         w->env.index);
	event_base_loopbreak(w->env.base);
}

static void begin_stop(struct worker *w, bool drain, uint64_t grace_ms)
{
	close_listeners(w);
	if (w->handoff_rx != NULL)
		event_del(w->handoff_rx); /* sessions go to the current mail workers */
	if (!w->env.stopping) {
		w->env.stopping = true;
		if (!drain) {
			struct timeval tv = {(time_t)(grace_ms / 1000),
			                     (suseconds_t)(grace_ms % 1000) * 1000};
			evtimer_add(w->stop_timer, &tv);
		}
	}
	if (!drain)
		env_shutdown_clients(&w->env);
	if (w->env.nclients == 0)
		event_base_loopexit(w->env.base, NULL);
}

/* Maildir: files in tmp/ untouched for 36 hours are leftovers of crashed
 * deliveries. Worker 0 sweeps them (and the spool) at start and hourly, on
 * the pool: a sweep of many mailboxes reads many directories. */
#define CLEANUP_AGE_S      (36 * 3600)
#define CLEANUP_INTERVAL_S 3600

static void cleanup_work(void *arg)
{
	struct worker *w = arg;
	w->cleanup_removed = delivery_clean_spool(w->env.cfg->mail_root, CLEANUP_AGE_S);
}

static void cleanup_done(void *arg)
{
	struct worker *w = arg;
	w->cleanup_running = false;
	if (w->cleanup_removed > 0)
		log_info("event=cleanup removed=%d older_than=36h", w->cleanup_removed);
}

/* A session's end (or, in a login worker, its hand-off) frees memory in
 * the middle of the heap, where malloc keeps it; a burst of TLS handshakes
 * leaves tens of kilobytes per connection there. Give the whole free pages
 * back, so a worker's size follows the sessions it holds. */
static void trim_cb(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	(void)arg;
	malloc_trim(0);
}

static void cleanup_cb(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	struct worker *w = arg;
	if (!w->cleanup_running && !w->env.stopping) {
		w->cleanup_running = true;
		pool_submit(w->env.pool, cleanup_work, cleanup_done, w);
	}
	struct timeval tv = {CLEANUP_INTERVAL_S, 0};
	evtimer_add(w->cleanup_timer, &tv);
}

static void control_stop(void *arg, uint64_t grace_ms)
{
	begin_stop(arg, false, grace_ms);
}

static void signal_cb(evutil_socket_t sig, short what, void *arg)
{
	(void)what;
	begin_stop(arg, sig == SIGUSR1, WORKER_STOP_GRACE_S * 1000);
}

/* A mail worker reads the mailboxes, never their secrets (directory.h,
 * dir_open_only); with PostgreSQL through mail_directory's role when one
 * is set, and then it keeps no copy of the other URL, which may carry a
 * password. The config is this process's own copy since the fork. */
static void use_mail_directory(struct config *cfg)
{
	dir_open_only(DIR_MAILBOXES);
	if (cfg->mail_directory == NULL)
		return;
	OPENSSL_cleanse(cfg->directory, strlen(cfg->directory));
	free(cfg->directory);
	cfg->directory = cfg->mail_directory;
	cfg->mail_directory = NULL;
}

/* Login workers: locked in the empty directory as login_as (when started
 * as root). Mail workers: run_as. Then neither can ever gain more. */
static void drop_privileges(const struct worker_params *p)
{
	const struct config *cfg = p->cfg;
	const char *error;

	if (p->role == ROLE_LOGIN) {
		if (p->jail >= 0) {
			tzset(); /* the log's local time, before /etc is out of reach */
			if (fchdir(p->jail) < 0 || chroot(".") < 0 || chdir("/") < 0)
				fatal("login worker %u: cannot chroot to the empty directory: %s",
				      p->index, strerror(errno));
			close(p->jail);
		}
		if (priv_become(p->login_uid, p->login_gid, &error) < 0)
			fatal("login worker %u: cannot become %s: %s", p->index, cfg->login_as,
			      error);
	} else {
		if (priv_drop(cfg->run_as, &error) < 0)
			fatal("mail worker %u: cannot drop privileges to %s: %s", p->index,
			      cfg->run_as, error);
		use_mail_directory((struct config *)cfg);
	}
	prctl(PR_SET_NAME, p->role == ROLE_LOGIN ? "pillar-login" : "pillar-mail");
	/* Credentials changed, so set this only now: a worker must not outlive
	 * the master that would restart or stop it. */
	prctl(PR_SET_PDEATHSIG, SIGTERM);
	if (getppid() == 1)
		exit(0);
	/* A worker never needs more privilege than it has now: no exec of a
	 * set-uid program can give it any. */
	if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0)
		fatal("worker %u: PR_SET_NO_NEW_PRIVS: %s", p->slot, strerror(errno));
}

int worker_main(const struct worker_params *p)
{
	const struct config *cfg = p->cfg;
	const struct listener_set *set = p->listeners;
	unsigned index = p->slot;
	struct worker w;

	drop_privileges(p);

	memset(&w, 0, sizeof(w));
	env_init(&w.env);
	w.env.cfg = cfg;
	w.env.index = index;
	w.ipl = p->ipl;
	/* TLS and credentials are the login workers' alone; mail workers
	 * take connections only from them, and let go of the private keys
	 * they were forked with. */
	if (p->role == ROLE_LOGIN) {
		w.env.tls = p->tls;
	} else {
		struct tls_ctx *keys = p->tls;
		tls_ctx_free(&keys);
	}
	w.env.penalty = p->penalty;
	w.ticket_key = p->ticket_key;
	w.slot = index;
	w.env.base = event_base_new();
	if (w.env.base == NULL)
		fatal("worker %u: event_base_new failed", index);
	long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
	unsigned threads = ncpu > 0 ? (unsigned)ncpu / (cfg->workers ? cfg->workers : 1) : 1;
	/* Threads for directory lookups, Maildir scans and fsyncs (hashing is
	 * the auth process's), one of them kept for quick work: see
	 * pool_submit_slow. */
	w.env.pool = pool_new(w.env.base, (threads < 2 ? 2 : threads) + 1);
	/* Every credential check goes to the generation's auth process. */
	if (p->role == ROLE_LOGIN)
		w.env.auth = authc_new(w.env.base, p->auth);

	signal(SIGPIPE, SIG_IGN);
	w.sig_term = evsignal_new(w.env.base, SIGTERM, signal_cb, &w);
	w.sig_int = evsignal_new(w.env.base, SIGINT, signal_cb, &w);
	w.sig_usr1 = evsignal_new(w.env.base, SIGUSR1, signal_cb, &w);
	evsignal_add(w.sig_term, NULL);
	evsignal_add(w.sig_int, NULL);
	evsignal_add(w.sig_usr1, NULL);
	w.stop_timer = evtimer_new(w.env.base, stop_timer_cb, &w);

	/* trusted_proxies was validated with the config; parse it once. */
	w.proxies = xcalloc(cfg->trusted_proxies.count + 1, sizeof(*w.proxies));
	for (size_t i = 0; i < cfg->trusted_proxies.count; i++)
		if (proxy_net_parse(cfg->trusted_proxies.items[i], &w.proxies[w.nproxies]) == 0)
			w.nproxies++;

	w.listeners = xcalloc(set->count, sizeof(*w.listeners));
	for (size_t i = 0; i < set->count && p->role == ROLE_LOGIN; i++) {
		struct worker_listener *wl = &w.listeners[w.nlisteners++];
		wl->w = &w;
		wl->proto = set->items[i].proto;
		wl->backoff = evtimer_new(w.env.base, backoff_cb, wl);
		/* dup: the listener closes its fd on free (drain), the
		 * inherited one stays the master's business. */
		int fd = dup(set->items[i].fd);
		if (fd < 0)
			fatal("worker %u: dup: %s", index, strerror(errno));
		wl->evl =
		    evconnlistener_new(w.env.base, worker_accept, wl, LEV_OPT_CLOSE_ON_FREE, 0, fd);
		if (wl->evl == NULL)
			fatal("worker %u: cannot listen on %s", index, set->items[i].spec);
		evconnlistener_set_error_cb(wl->evl, accept_error_cb);
	}
	/* The inherited descriptors are not ours to keep open. */
	for (size_t i = 0; i < set->count; i++)
		close(set->items[i].fd);
	if (p->role == ROLE_LOGIN)
		w.handoff = handoff_sender_new(&w, p->handoff);
	else
		w.handoff_rx = handoff_receiver_new(&w, p->handoff);

	w.cleanup_timer = evtimer_new(w.env.base, cleanup_cb, &w);
	w.env.trim = evtimer_new(w.env.base, trim_cb, NULL);
	if (p->housekeeper)
		event_active(w.cleanup_timer, EV_TIMEOUT, 0);
	struct bufferevent *ctl_bev = worker_control_start(&w.env, p->ctl, control_stop, &w);
	if (ctl_bev == NULL)
		close(p->ctl);

	/* Every listening socket is open by now, and all a login worker
	 * ever opens. */
	const char *error;
	if (sandbox_enter(p->role == ROLE_LOGIN ? SANDBOX_LOGIN : SANDBOX_MAIL, &error) < 0)
		fatal("%s worker %u: %s", p->role == ROLE_LOGIN ? "login" : "mail", p->index,
		      error);

	event_base_dispatch(w.env.base);

	if (ctl_bev != NULL)
		bufferevent_free(ctl_bev);

	close_listeners(&w);
	worker_accept_cleanup(&w);
	handoff_sender_free(&w.handoff);
	if (w.handoff_rx != NULL)
		event_free(w.handoff_rx);
	close(p->handoff);
	free(w.proxies);
	pool_free(&w.env.pool);
	authc_free(&w.env.auth);
	for (size_t i = 0; i < w.nlisteners; i++)
		event_free(w.listeners[i].backoff);
	free(w.listeners);
	event_free(w.sig_term);
	event_free(w.sig_int);
	event_free(w.sig_usr1);
	event_free(w.stop_timer);
	event_free(w.cleanup_timer);
	event_free(w.env.trim);
	event_base_free(w.env.base);
	return 0;
}
