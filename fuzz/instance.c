/* The fuzz instance. See instance.h. */
#include "instance.h"

#include <crypt.h>
#include <dlfcn.h>
#include <errno.h>
#include <event2/event.h>
#include <netinet/in.h>
#include <pwd.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "auth/authc.h"
#include "auth/authd.h"
#include "auth/authproto.h"
#include "auth/password.h"
#include "auth/penalty.h"
#include "auth/scram.h"
#include "core/config.h"
#include "core/pool.h"
#include "core/util.h"
#include "directory/directory.h"
#include "net/conn.h"
#include "store/deliver.h"
#include "store/maildir.h"

/* Password hashing cost. Every failed login verifies against a yescrypt
 * hash (the dummy hash for unknown users, so timing tells nothing), and at
 * the default cost that is ~30 ms — longer than a whole fuzz input should
 * take, and the inputs are full of failed logins. This replaces libxcrypt's
 * crypt_gensalt_ra in the fuzz binaries only: yescrypt settings asked for
 * with the default cost (count 0) get the lowest cost (1) instead. The code
 * under test is unchanged; only how long each hash takes differs. */
typedef char *(*gensalt_fn)(const char *, unsigned long, const char *, int);

char *crypt_gensalt_ra(const char *prefix, unsigned long count, const char *rbytes, int nrbytes)
{
	static gensalt_fn real;
	gensalt_fn fn = __atomic_load_n(&real, __ATOMIC_ACQUIRE);

	if (fn == NULL) {
		fn = (gensalt_fn)dlsym(RTLD_NEXT, "crypt_gensalt_ra");
		if (fn == NULL)
			abort();
		__atomic_store_n(&real, fn, __ATOMIC_RELEASE);
	}
	if (prefix != NULL && strcmp(prefix, "$y$") == 0 && count == 0)
		count = 1;
	return fn(prefix, count, rbytes, nrbytes);
}

static void die(const char *what, const char *error)
{
	fprintf(stderr, "pillar fuzz instance: %s: %s\n", what, error != NULL ? error : "failed");
	abort();
}

/* The fixture messages, chosen so RETR, TOP and LIST meet every case of
 * the byte transformation: dot lines, a missing final line break, CRLF and
 * bare CR, NUL and 8-bit octets, an empty message, a long line. */
static const char msg_plain[] = "From: a@example.test\n"
                                "To: fuzz@example.test\n"
                                "Subject: dots\n"
                                "\n"
                                ".\n"
                                "..two\n"
                                ".x\n"
                                "line\n"
                                "\n"
                                "last\n";
static const char msg_crlf[] = "Subject: crlf\r\n"
                               "\r\n"
                               "a\rb\r\n"
                               "nul:\0:end\r\n"
                               ".\r\n"
                               "no final line break";
static const char msg_8bit[] = "Subject: =?utf-8?q?Gr=C3=BC=C3=9Fe?=\n"
                               "\n"
                               "Gr\xc3\xbc\xc3\x9f"
                               "e \xe2\x98\x95\n"
                               "\xff\xfe\n";

/* A file named by another Maildir writer, without S= and W=: the first
 * scan measures it and renames it. */
#define LEGACY_NAME "1000000000.legacy.fuzz:2,S"
static const char msg_legacy[] = "Subject: legacy\n\nno sizes in the name\n";

static void deliver(struct fuzz_instance *fi, const void *data, size_t len)
{
	const char *err;
	int temporary;

	if (maildir_deliver(fi->maildir, fi->cfg->hostname, data, len, &temporary, &err) < 0)
		die("maildir_deliver", err);
}

static void fill_mailbox(struct fuzz_instance *fi)
{
	char path[512];
	char *long_msg;
	size_t long_len = 3000;

	deliver(fi, msg_plain, sizeof(msg_plain) - 1);
	deliver(fi, "", 0);
	deliver(fi, msg_crlf, sizeof(msg_crlf) - 1);
	long_msg = xmalloc(long_len);
	memcpy(long_msg, "Subject: long\n\n", 15);
	memset(long_msg + 15, 'x', long_len - 16);
	long_msg[long_len - 1] = '\n';
	deliver(fi, long_msg, long_len);
	free(long_msg);
	deliver(fi, msg_8bit, sizeof(msg_8bit) - 1);
	snprintf(path, sizeof(path), "%s/cur/%s", fi->maildir, LEGACY_NAME);
	fuzz_write_file(path, msg_legacy, sizeof(msg_legacy) - 1);
}

long fuzz_mailbox_messages(const char *maildir)
{
	char path[512];
	long n, m;

	snprintf(path, sizeof(path), "%s/new", maildir);
	n = fuzz_count_files(path);
	snprintf(path, sizeof(path), "%s/cur", maildir);
	m = fuzz_count_files(path);
	return n < 0 || m < 0 ? -1 : n + m;
}

static void empty_mailbox(const char *maildir)
{
	char path[512];
	const char *err;

	snprintf(path, sizeof(path), "%s/new", maildir);
	fuzz_remove_tree(path);
	snprintf(path, sizeof(path), "%s/cur", maildir);
	fuzz_remove_tree(path);
	if (maildir_create(maildir, &err) < 0)
		die("maildir_create", err);
}

bool fuzz_mailbox_restore(struct fuzz_instance *fi)
{
	bool changed = false;

	if (fuzz_mailbox_messages(fi->maildir) != FUZZ_MESSAGES) {
		empty_mailbox(fi->maildir);
		fill_mailbox(fi);
		changed = true;
	}
	if (fuzz_mailbox_messages(fi->locked_maildir) != 0) {
		empty_mailbox(fi->locked_maildir);
		changed = true;
	}
	return changed;
}

static void add_user(struct dir *d, const struct config *cfg, const char *address, bool locked)
{
	const char *err;
	struct dir_scram keys;
	char *hash = password_hash(FUZZ_PASSWORD, &err);
	char *path;

	if (hash == NULL)
		die("password_hash", err);
	if (scram_keys_from_password(FUZZ_PASSWORD, &keys, &err) < 0)
		die("scram_keys_from_password", err);
	if (dir_user_add(d, address, hash, &err) < 0 ||
	    dir_user_set_credentials(d, address, hash, &keys, FUZZ_PASSWORD, &err) < 0)
		die(address, err);
	if (locked && dir_user_set_locked(d, address, true, &err) < 0)
		die("dir_user_set_locked", err);
	path = maildir_path(cfg->mail_root, address);
	if (maildir_create(path, &err) < 0)
		die("maildir_create", err);
	free(path);
	free(hash);
}

static struct fuzz_instance instance;

static void instance_cleanup(void)
{
	if (instance.dir[0] != '\0')
		fuzz_remove_tree(instance.dir);
}

struct fuzz_instance *fuzz_instance_init(const char *extra_config, bool with_env)
{
	struct fuzz_instance *fi = &instance;
	struct strlist errors = {0};
	const char *err;
	struct dir *d;
	char *conf, *text;

	if (fi->cfg != NULL)
		return fi;
	snprintf(fi->dir, sizeof(fi->dir), "%s/instance", fuzz_scratch_dir());
	if (mkdir(fi->dir, 0700) < 0)
		die("mkdir", fi->dir);
	atexit(instance_cleanup);

	/* The session targets need failures answered at once, and a message
	 * size limit small enough that inputs can cross it. */
	/* The directory's files are this process's own: the accounts the
	 * defaults name need not exist. */
	struct passwd *me = getpwuid(geteuid());
	if (me == NULL)
		die("getpwuid", NULL);
	text =
	    xasprintf("state_dir = %s\n"
	              "hostname = fuzz.example.test\n"
	              "auth_failure_delay = 0\n"
	              "apop = yes\n"
	              "max_message_size = 16K\n"
	              "run_as = %s\n"
	              "auth_as = %s\n"
	              "%s",
	              fi->dir, me->pw_name, me->pw_name, extra_config != NULL ? extra_config : "");
	conf = xasprintf("%s/pillar.conf", fi->dir);
	fuzz_write_file(conf, text, strlen(text));
	free(text);
	if (config_load(conf, &fi->cfg, &errors) < 0)
		die("config_load", errors.count > 0 ? errors.items[0] : NULL);
	strlist_free(&errors);
	free(conf);

	if (dir_open(fi->cfg, true, &d, &err) < 0)
		die("dir_open", err);
	if (mkdir(fi->cfg->mail_root, 0700) < 0)
		die("mkdir", fi->cfg->mail_root);
	if (dir_domain_add(d, FUZZ_DOMAIN, &err) < 0)
		die("dir_domain_add", err);
	add_user(d, fi->cfg, FUZZ_USER, false);
	add_user(d, fi->cfg, FUZZ_LOCKED_USER, true);
	if (dir_alias_add(d, FUZZ_ALIAS, FUZZ_USER, &err) < 0)
		die("dir_alias_add", err);
	dir_close(&d);

	fi->maildir = maildir_path(fi->cfg->mail_root, FUZZ_USER);
	fi->locked_maildir = maildir_path(fi->cfg->mail_root, FUZZ_LOCKED_USER);
	fill_mailbox(fi);
	if (fuzz_mailbox_messages(fi->maildir) != FUZZ_MESSAGES)
		die("fixture", "FUZZ_MESSAGES does not match the messages made");

	if (with_env) {
		env_init(&fi->env);
		fi->env.cfg = fi->cfg;
		fi->env.base = event_base_new();
		if (fi->env.base == NULL)
			die("event_base_new", NULL);
		/* One thread: the machine is shared, and sessions run one at
		 * a time anyway. */
		fi->env.pool = pool_new(fi->env.base, 1);
		fi->env.penalty = penalty_create();
		if (fi->env.penalty == NULL)
			die("penalty_create", NULL);
		/* Credentials are checked by the auth process's code, in this
		 * loop, over a real socket, as a worker has them checked. */
		struct authp_addr addr;
		struct authd_params ap = {.cfg = fi->cfg, .uids = {geteuid()}, .nuids = 1};
		ap.listen_fd = authp_listen(&addr, &err);
		if (ap.listen_fd < 0)
			die("authp_listen", err);
		fi->authd = authd_new(fi->env.base, fi->env.pool, &ap);
		fi->env.auth = authc_new(fi->env.base, &addr);
		/* As a worker does: a client that went away must not kill us. */
		signal(SIGPIPE, SIG_IGN);
		fi->have_env = true;
	}
	return fi;
}

/* ---- one session over a socketpair ---- */

struct client {
	int fd;
	const uint8_t *data;
	size_t size, pos;
	struct fuzz_rng rng;
	struct event *rev, *wev;
	bool write_done;    /* all sent (or the server stopped reading) */
	bool server_closed; /* read returned 0 or the connection was reset */
	bool stuck;
	struct fuzz_transcript *t;
};

static void client_read_cb(evutil_socket_t fd, short what, void *arg)
{
	(void)what;
	struct client *c = arg;
	char buf[16384];

	for (;;) {
		ssize_t n = recv(fd, buf, sizeof(buf), MSG_DONTWAIT);
		if (n > 0) {
			size_t keep = (size_t)n;
			if (c->t->len + keep > FUZZ_TRANSCRIPT_MAX)
				keep = FUZZ_TRANSCRIPT_MAX - c->t->len;
			memcpy(c->t->out + c->t->len, buf, keep);
			c->t->len += keep;
			c->t->total += (size_t)n;
			continue;
		}
		if (n < 0 && (errno == EAGAIN || errno == EINTR))
			return;
		/* EOF, or ECONNRESET when the server closed with our input
		 * unread: either way it is gone. */
		c->server_closed = true;
		event_del(c->rev);
		event_del(c->wev);
		return;
	}
}

static void client_write_cb(evutil_socket_t fd, short what, void *arg)
{
	(void)what;
	struct client *c = arg;

	/* One piece per turn of the loop. */
	size_t n = c->pos < c->size ? fuzz_rng_chunk(&c->rng, c->size - c->pos) : 0;
	ssize_t w = n > 0 ? send(fd, c->data + c->pos, n, MSG_DONTWAIT | MSG_NOSIGNAL) : 0;
	if (w > 0)
		c->pos += (size_t)w;
	else if (w < 0 && errno != EAGAIN && errno != EINTR)
		c->pos = c->size; /* the server is gone: nothing more to say */
	if (c->pos == c->size) {
		shutdown(fd, SHUT_WR);
		c->write_done = true;
		event_del(c->wev);
	}
}

static void deadline_cb(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	((struct client *)arg)->stuck = true;
}

void fuzz_session_run(struct fuzz_instance *fi, const uint8_t *data, size_t size, bool loopback,
                      void (*accept)(struct worker_env *env, struct conn *conn, void *arg),
                      void *arg, struct fuzz_transcript *t)
{
	struct event_base *base = fi->env.base;
	struct client c = {0};
	struct sockaddr_in peer = {0};
	int sv[2];

	if (!fi->have_env)
		die("fuzz_session_run", "instance made without an environment");
	t->out = xmalloc(FUZZ_TRANSCRIPT_MAX + 1);
	t->len = t->total = 0;
	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv) < 0)
		die("socketpair", strerror(errno));
	peer.sin_family = AF_INET;
	peer.sin_port = htons(40000);
	peer.sin_addr.s_addr = htonl(loopback ? 0x7f000001 : 0xc0000207);

	c.fd = sv[1];
	c.data = data;
	c.size = size;
	c.t = t;
	fuzz_rng_seed(&c.rng, data, size, 4);
	c.rev = event_new(base, c.fd, EV_READ | EV_PERSIST, client_read_cb, &c);
	c.wev = event_new(base, c.fd, EV_WRITE | EV_PERSIST, client_write_cb, &c);
	event_add(c.rev, NULL);
	event_add(c.wev, NULL);

	struct conn *conn = conn_new(base, sv[0], (const struct sockaddr *)&peer, sizeof(peer));
	accept(&fi->env, conn, arg);

	/* Wall-clock bound on the whole session, checked from the loop. */
	struct event *deadline = evtimer_new(base, deadline_cb, &c);
	struct timeval tv = {FUZZ_SESSION_DEADLINE_MS / 1000,
	                     (FUZZ_SESSION_DEADLINE_MS % 1000) * 1000};
	evtimer_add(deadline, &tv);
	for (;;) {
		if (c.server_closed && fi->env.nclients == 0 && pool_pending(fi->env.pool) == 0)
			break;
		if (c.stuck)
			fuzz_fail(
			    "session still open %d ms after it started (client sent %zu of %zu "
			    "octets, server %s, %zu session(s), %u pool job(s))",
			    FUZZ_SESSION_DEADLINE_MS, c.pos, c.size,
			    c.server_closed ? "closed" : "open", fi->env.nclients,
			    pool_pending(fi->env.pool));
		event_base_loop(base, EVLOOP_ONCE);
	}
	event_free(deadline);
	event_free(c.rev);
	event_free(c.wev);
	close(c.fd);
	t->out[t->len] = '\0';
}
