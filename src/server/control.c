/* The control socket: `pillar who`, `kick`, `reload` and `stop` talk to the
 * master over <state_dir>/control.sock (root only, mode 0600). The master
 * answers reload and stop itself and asks every worker for who and kick over
 * the worker's control channel, one line per request and a "." line ending
 * each worker's answer.
 *
 * Requests are tiny and rare, so the master serves one client at a time with
 * short timeouts rather than keeping per-client state: a silent client or a
 * stuck worker costs at most CONTROL_TIMEOUT_MS. */
#include <errno.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <inttypes.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "core/config.h"
#include "core/env.h"
#include "core/log.h"
#include "core/util.h"
#include "server/master.h"

#define CONTROL_TIMEOUT_MS 3000
/* A request line: "kick <address or session id>" at most. */
#define CONTROL_MAX_REQUEST 512
/* What all workers together may answer to one `who` (10^5 sessions). */
#define CONTROL_MAX_REPLY (32u * 1024 * 1024)

static char *control_path(const struct config *cfg)
{
	return xasprintf("%s/control.sock", cfg->state_dir);
}

int control_open(struct master *m, char *err, size_t errlen)
{
	struct sockaddr_un sun = {.sun_family = AF_UNIX};
	char *path = control_path(m->cfg);
	struct stat st;

	if (strlen(path) >= sizeof(sun.sun_path)) {
		snprintf(err, errlen, "%s: path too long for a unix socket", path);
		free(path);
		return -1;
	}
	strcpy(sun.sun_path, path);
	if (lstat(path, &st) == 0 && S_ISSOCK(st.st_mode))
		unlink(path); /* left by a server that did not stop cleanly */
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	mode_t old = umask(0077);
	int rc = fd < 0 ? -1 : bind(fd, (struct sockaddr *)&sun, sizeof(sun));
	umask(old);
	if (rc < 0 || chmod(path, 0600) < 0 || listen(fd, 8) < 0) {
		snprintf(err, errlen, "%s: %s", path, strerror(errno));
		if (fd >= 0)
			close(fd);
		free(path);
		return -1;
	}
	free(path);
	m->control = fd;
	return 0;
}

void control_close(struct master *m)
{
	if (m->control < 0)
		return;
	close(m->control);
	m->control = -1;
	char *path = control_path(m->cfg);
	unlink(path);
	free(path);
}

struct reply {
	char *data;
	size_t len, cap;
	bool truncated;
};

static void reply_add(struct reply *r, const char *s, size_t n)
{
	if (r->len + n > CONTROL_MAX_REPLY) {
		r->truncated = true;
		return;
	}
	if (r->len + n + 1 > r->cap) {
		r->cap = (r->len + n + 1) * 2;
		r->data = realloc(r->data, r->cap);
		if (r->data == NULL)
			abort();
	}
	memcpy(r->data + r->len, s, n);
	r->len += n;
	r->data[r->len] = '\0';
}

/* Send req to every live worker and collect their answers (without the "."
 * lines) into r. A worker that does not answer in time is skipped. */
static void ask_workers(struct master *m, const char *req, struct reply *r)
{
	struct pollfd pfd[MAX_WORKER_SLOTS];
	size_t n = 0;

	for (size_t i = 0; i < MAX_WORKER_SLOTS; i++) {
		struct worker_slot *s = &m->slots[i];
		if (!s->in_use || s->pid <= 0 || s->ctl < 0)
			continue;
		if (send(s->ctl, req, strlen(req), MSG_NOSIGNAL) != (ssize_t)strlen(req))
			continue;
		pfd[n].fd = s->ctl;
		pfd[n].events = POLLIN;
		n++;
	}
	uint64_t deadline = now_ms() + CONTROL_TIMEOUT_MS;
	size_t open = n;
	struct reply line[MAX_WORKER_SLOTS];
	memset(line, 0, sizeof(line[0]) * n);
	while (open > 0) {
		uint64_t now = now_ms();
		if (now >= deadline)
			break;
		if (poll(pfd, n, (int)(deadline - now)) <= 0)
			continue;
		for (size_t i = 0; i < n; i++) {
			if (pfd[i].fd < 0 || !(pfd[i].revents & (POLLIN | POLLHUP | POLLERR)))
				continue;
			char buf[4096];
			ssize_t got = recv(pfd[i].fd, buf, sizeof(buf), MSG_DONTWAIT);
			if (got <= 0) {
				if (got < 0 && errno == EAGAIN)
					continue;
				pfd[i].fd = -1;
				open--;
				continue;
			}
			reply_add(&line[i], buf, (size_t)got);
			/* The answer ends with a line holding only ".". */
			if (line[i].len >= 2 &&
			    strcmp(line[i].data + line[i].len - 2, ".\n") == 0 &&
			    (line[i].len == 2 || line[i].data[line[i].len - 3] == '\n')) {
				reply_add(r, line[i].data, line[i].len - 2);
				pfd[i].fd = -1;
				open--;
			}
		}
	}
	for (size_t i = 0; i < n; i++)
		free(line[i].data);
}

static void send_all(int fd, const char *s, size_t n)
{
	while (n > 0) {
		ssize_t w = send(fd, s, n, MSG_NOSIGNAL);
		if (w <= 0)
			return; /* the client went away or timed out */
		s += w;
		n -= (size_t)w;
	}
}

static void send_str(int fd, const char *s)
{
	send_all(fd, s, strlen(s));
}

void control_serve(struct master *m)
{
	int c = accept4(m->control, NULL, NULL, SOCK_CLOEXEC);
	if (c < 0)
		return;
	m->control_client = c;
	struct timeval tv = {CONTROL_TIMEOUT_MS / 1000, 0};
	setsockopt(c, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	setsockopt(c, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));

	char req[CONTROL_MAX_REQUEST + 1];
	size_t len = 0;
	while (len < CONTROL_MAX_REQUEST && memchr(req, '\n', len) == NULL) {
		ssize_t got = recv(c, req + len, CONTROL_MAX_REQUEST - len, 0);
		if (got <= 0)
			break;
		len += (size_t)got;
	}
	char *nl = memchr(req, '\n', len);
	if (nl == NULL) {
		send_str(c, "error request not understood\n");
		close(c);
		m->control_client = -1;
		return;
	}
	*nl = '\0';

	struct reply r = {0};
	uint64_t ms;
	if (strcmp(req, "who") == 0 || strncmp(req, "kick ", 5) == 0) {
		*nl = '\n';
		nl[1] = '\0';
		ask_workers(m, req, &r);
		if (r.data != NULL)
			send_all(c, r.data, r.len);
		send_str(c, r.truncated ? "error answer truncated\n" : "ok\n");
	} else if (strcmp(req, "reload") == 0) {
		char err[4096];
		if (master_reload(m, err, sizeof(err)) == 0) {
			send_str(c, "ok\n");
		} else {
			for (char *l = strtok(err, "\n"); l != NULL; l = strtok(NULL, "\n")) {
				log_error("reload refused: %s", l);
				send_str(c, "error ");
				send_str(c, l);
				send_str(c, "\n");
			}
		}
	} else if (strncmp(req, "stop ", 5) == 0 &&
	           parse_uint(req + 5, strlen(req + 5), UINT32_MAX, &ms) == 0) {
		send_str(c, "ok\n");
		master_stop(m, ms);
	} else {
		send_str(c, "error unknown request\n");
	}
	free(r.data);
	close(c);
	m->control_client = -1;
}

/* ---- the worker's side ---- */

struct worker_control {
	struct worker_env *env;
	void (*stop)(void *arg, uint64_t ms);
	void *arg;
};

/* Client data in a tab-separated line: tabs and line breaks would break
 * the format, so they become spaces. */
static void put_field(struct evbuffer *out, const char *s, bool last)
{
	for (; *s != '\0'; s++)
		evbuffer_add(out, *s == '\t' || *s == '\n' || *s == '\r' ? " " : s, 1);
	evbuffer_add(out, last ? "\n" : "\t", 1);
}

static void answer_who(struct worker_control *wc, struct evbuffer *out)
{
	for (struct env_client *c = wc->env->clients.next; c != &wc->env->clients; c = c->next) {
		struct env_client_info info;
		char num[64];
		if (c->info == NULL)
			continue;
		c->info(c, &info);
		put_field(out, info.sid, false);
		put_field(out, info.proto, false);
		put_field(out, info.user, false);
		put_field(out, info.rip, false);
		put_field(out, info.tls, false);
		snprintf(num, sizeof(num), "%" PRId64, info.since);
		put_field(out, num, false);
		snprintf(num, sizeof(num), "%" PRIu64, info.bytes_in);
		put_field(out, num, false);
		snprintf(num, sizeof(num), "%" PRIu64, info.bytes_out);
		put_field(out, num, true);
	}
}

static void answer_kick(struct worker_control *wc, const char *target, struct evbuffer *out)
{
	unsigned kicked = 0;
	struct env_client *c = wc->env->clients.next;
	while (c != &wc->env->clients) {
		struct env_client *next = c->next;
		struct env_client_info info;
		if (c->info == NULL) {
			c = next;
			continue;
		}
		c->info(c, &info);
		if (strcmp(info.sid, target) == 0 || strcmp(info.user, target) == 0) {
			c->kick(c);
			kicked++;
		}
		c = next;
	}
	evbuffer_add_printf(out, "kicked\t%u\n", kicked);
}

static void control_read(struct bufferevent *bev, void *arg)
{
	struct worker_control *wc = arg;
	struct evbuffer *out = bufferevent_get_output(bev);
	char *line;
	size_t n;

	while ((line = evbuffer_readln(bufferevent_get_input(bev), &n, EVBUFFER_EOL_LF)) != NULL) {
		uint64_t ms;
		if (strcmp(line, "who") == 0) {
			answer_who(wc, out);
			evbuffer_add(out, ".\n", 2);
		} else if (strncmp(line, "kick ", 5) == 0) {
			answer_kick(wc, line + 5, out);
			evbuffer_add(out, ".\n", 2);
		} else if (strncmp(line, "stop ", 5) == 0 &&
		           parse_uint(line + 5, n - 5, UINT32_MAX, &ms) == 0) {
			wc->stop(wc->arg, ms);
		}
		free(line);
	}
	if (evbuffer_get_length(bufferevent_get_input(bev)) > CONTROL_MAX_REQUEST)
		evbuffer_drain(bufferevent_get_input(bev), (size_t)-1);
}

static void control_event(struct bufferevent *bev, short what, void *arg)
{
	(void)arg;
	/* The master is gone; PR_SET_PDEATHSIG stops us. Stop listening. */
	if (what & (BEV_EVENT_EOF | BEV_EVENT_ERROR))
		bufferevent_disable(bev, EV_READ);
}

struct bufferevent *worker_control_start(struct worker_env *env, int fd,
                                         void (*stop)(void *arg, uint64_t ms), void *arg)
{
	static struct worker_control wc; /* one per worker process */
	wc.env = env;
	wc.stop = stop;
	wc.arg = arg;
	struct bufferevent *bev = bufferevent_socket_new(env->base, fd, BEV_OPT_CLOSE_ON_FREE);
	if (bev == NULL)
		return NULL;
	bufferevent_setcb(bev, control_read, NULL, control_event, &wc);
	bufferevent_enable(bev, EV_READ);
	return bev;
}
