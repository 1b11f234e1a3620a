/* The auth process itself (authd_main, authd.h): its account and
 * limits, its signals and its loop around the serving part (authd.c). */
#include "auth/authd.h"

#include <errno.h>
#include <event2/event.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <unistd.h>

#include "core/config.h"
#include "core/log.h"
#include "core/pool.h"
#include "core/priv.h"
#include "core/util.h"
#include "directory/directory.h"
#include "server/sandbox.h"

struct authd_proc {
	struct authd *d;
	struct event_base *base;
	struct event *grace;
};

static void grace_cb(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	struct authd_proc *ap = arg;

	log_warn("auth process: %zu connection(s) still open at the end of the drain grace; "
	         "exiting",
	         authd_connections(ap->d));
	event_base_loopbreak(ap->base);
}

static void signal_cb(evutil_socket_t sig, short what, void *arg)
{
	(void)sig;
	(void)what;
	struct authd_proc *ap = arg;
	struct timeval tv = {AUTHD_DRAIN_GRACE_MS / 1000, 0};

	if (!evtimer_pending(ap->grace, NULL))
		evtimer_add(ap->grace, &tv);
	authd_drain(ap->d);
}

int authd_main(const struct authd_params *p)
{
	const struct config *cfg = p->cfg;
	struct authd_proc ap = {0};
	const char *error;

	if (priv_drop(cfg->auth_as, &error) < 0)
		fatal("auth process: cannot drop privileges to %s: %s", cfg->auth_as, error);
	/* The secrets, and nothing of the mailboxes. */
	dir_open_only(DIR_SECRETS);
	/* As a worker: it must not outlive the master. */
	prctl(PR_SET_PDEATHSIG, SIGTERM);
	if (getppid() == 1)
		exit(0);
	if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0)
		fatal("auth process: PR_SET_NO_NEW_PRIVS: %s", strerror(errno));
	/* Before the pool's threads exist, so they are named alike. */
	prctl(PR_SET_NAME, "pillar-auth", 0, 0, 0);

	ap.base = event_base_new();
	if (ap.base == NULL)
		fatal("auth process: event_base_new failed");
	/* Every core may hash, plus the thread that takes no slow jobs. */
	long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
	unsigned threads = ncpu > 1 ? (unsigned)ncpu : 2;
	struct pool *pool = pool_new(ap.base, threads + 1);

	signal(SIGPIPE, SIG_IGN);
	struct event *sig_term = evsignal_new(ap.base, SIGTERM, signal_cb, &ap);
	struct event *sig_int = evsignal_new(ap.base, SIGINT, signal_cb, &ap);
	struct event *sig_usr1 = evsignal_new(ap.base, SIGUSR1, signal_cb, &ap);
	ap.grace = evtimer_new(ap.base, grace_cb, &ap);
	evsignal_add(sig_term, NULL);
	evsignal_add(sig_int, NULL);
	evsignal_add(sig_usr1, NULL);
	ap.d = authd_new(ap.base, pool, p);
	if (sandbox_enter(SANDBOX_MAIL, &error) < 0)
		fatal("auth process: %s", error);

	event_base_dispatch(ap.base);

	/* Jobs still running finish (their replies go to whoever is still
	 * connected), then everything goes. */
	pool_free(&pool);
	authd_free(&ap.d);
	event_free(sig_term);
	event_free(sig_int);
	event_free(sig_usr1);
	event_free(ap.grace);
	event_base_free(ap.base);
	return 0;
}
