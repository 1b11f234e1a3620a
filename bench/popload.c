/* popload: the load generator of `make bench` (bench/NOTES.md says what each
 * mode measures and how bench/run uses it).
 *
 * One process, one epoll loop, many non-blocking connections to a POP3,
 * POP3S, LMTP or SMTP server on loopback. Every mode is bounded twice: by a
 * count (sessions or messages) and by a wall-clock limit; at the hard
 * deadline (the limit plus a grace period) whatever is still open is closed
 * and counted as unfinished, so a stuck server cannot hang a run.
 *
 * Only loopback addresses are accepted as targets: this tool is for
 * measuring a server on the same machine, never anyone else's.
 *
 * Output: one line "RESULT mode=... key=value ..." on stdout for bench/run;
 * progress and errors on stderr. The idle mode also prints "READY ..." when
 * its sessions are all logged in, and holds them until stdin gives a line or
 * closes (or --hold runs out). */
#include <arpa/inet.h>
#include <crypt.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <limits.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

/* ---- limits, all named ---- */

/* Input buffer of a connection. RETR bodies are scanned in place and
 * dropped, so this bounds one read, not a message; 256 KiB keeps the
 * number of read calls for a 10 MB message low. Other modes only ever hold
 * a partial reply line. */
#define IN_CAP_BULK  (256 * 1024)
#define IN_CAP_SMALL (8 * 1024)
/* Output buffer: commands, and for LMTP/SMTP one pipelined envelope or one
 * dot-stuffed message (MSG_SIZE_MAX plus stuffing). */
#define OUT_CAP_SMALL 4096
#define MSG_SIZE_MAX  (1024 * 1024)
#define OUT_CAP_BULK  (2 * MSG_SIZE_MAX + 64)
/* A reply line longer than this is a protocol error (RFC 2449 §4 allows 512
 * octets for POP3 replies; SMTP's RFC 5321 §4.5.3.1.5 also 512). */
#define LINE_MAX_LEN 1024
#define CLIENTS_MAX  60000
#define RCPTS_MAX    100
#define TIME_MAX_S   3600.0
#define COUNT_MAX    100000000L
/* Grace after --time for sessions in flight to finish before the hard stop. */
#define GRACE_S 10.0
/* Latency samples kept (one per session); further sessions are counted but
 * not sampled. */
#define SAMPLES_MAX (4 * 1024 * 1024)
/* Messages a retr session will track sizes for. */
#define MSGS_MAX 10000000u
#define EVENTS_MAX 512

/* ---- options ---- */

enum mode { MODE_LOGIN, MODE_RETR, MODE_STAT100K, MODE_IDLE, MODE_LMTP, MODE_SMTP, MODE_MIXED, MODE_LIMITS };

static const char *const mode_names[] = {"login", "retr", "stat100k", "idle",
                                         "lmtp",  "smtp", "mixed",    "limits"};

struct opts {
	enum mode mode;
	const char *host;
	int port;
	bool tls;
	const char *users_file;
	int clients;
	long count;
	double time_s;
	int rcpts;
	long size;
	int lmtp_port;
	double lmtp_rate;
	int lmtp_clients;
	double hold_s;
	const char *dir;
	bool verbose;
};

static struct opts opt = {
    .host = "127.0.0.1",
    .clients = 1,
    .count = 1000000,
    .time_s = 10,
    .rcpts = 1,
    .size = 10240,
    .lmtp_rate = 100,
    .lmtp_clients = 2,
    .hold_s = 60,
    .dir = "/tmp",
};

/* ---- small helpers ---- */

static double now_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void die(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));
static void die(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	fputs("popload: ", stderr);
	vfprintf(stderr, fmt, ap);
	fputc('\n', stderr);
	va_end(ap);
	exit(2);
}

static void *xcalloc(size_t n, size_t size)
{
	void *p = calloc(n, size);
	if (p == NULL)
		die("out of memory");
	return p;
}

/* A number in [lo, hi], or die naming the option. */
static long parse_long(const char *name, const char *s, long lo, long hi)
{
	char *end;
	errno = 0;
	long v = strtol(s, &end, 10);
	if (errno != 0 || end == s || *end != '\0' || v < lo || v > hi)
		die("--%s: want a whole number from %ld to %ld, got '%s'", name, lo, hi, s);
	return v;
}

static double parse_double(const char *name, const char *s, double lo, double hi)
{
	char *end;
	errno = 0;
	double v = strtod(s, &end);
	if (errno != 0 || end == s || *end != '\0' || !(v >= lo && v <= hi))
		die("--%s: want a number from %g to %g, got '%s'", name, lo, hi, s);
	return v;
}

/* ---- users ---- */

struct user {
	char *address;
	char *password;
};

static struct user *users;
static size_t nusers;

/* "address password" per line; blank lines and '#' comments skipped. */
static void load_users(const char *path)
{
	FILE *f = fopen(path, "re");
	if (f == NULL)
		die("%s: %s", path, strerror(errno));
	char line[1024];
	size_t cap = 0;
	while (fgets(line, sizeof(line), f) != NULL) {
		char *p = line, *addr, *pass;
		line[strcspn(line, "\r\n")] = '\0';
		if (*p == '\0' || *p == '#')
			continue;
		addr = strtok(p, " \t");
		pass = strtok(NULL, " \t");
		if (addr == NULL || pass == NULL)
			die("%s: want 'address password' lines", path);
		if (nusers == cap) {
			cap = cap ? cap * 2 : 256;
			users = realloc(users, cap * sizeof(*users));
			if (users == NULL)
				die("out of memory");
		}
		users[nusers].address = strdup(addr);
		users[nusers].password = strdup(pass);
		if (users[nusers].address == NULL || users[nusers].password == NULL)
			die("out of memory");
		nusers++;
	}
	fclose(f);
	if (nusers == 0)
		die("%s: no users", path);
}

/* ---- statistics ---- */

struct stats {
	long started;   /* sessions (or messages) begun */
	long done;      /* finished successfully */
	long errors;    /* failed: bad reply, refused, reset */
	long messages;  /* messages retrieved (retr, mixed) or delivered (lmtp, smtp) */
	long deleted;   /* mixed */
	long mismatch;  /* RETR bodies whose size differs from LIST */
	uint64_t octets;      /* message octets (LIST sizes) retrieved */
	uint64_t wire_octets; /* all bytes read */
	double *lat;
	size_t nlat;
};

static struct stats st;
static struct stats st_dlv; /* the LMTP side of mixed */

static void sample(struct stats *s, double v)
{
	if (s->lat == NULL)
		s->lat = xcalloc(SAMPLES_MAX, sizeof(double));
	if (s->nlat < SAMPLES_MAX)
		s->lat[s->nlat++] = v;
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return x < y ? -1 : x > y;
}

/* The q-quantile (0..1) by nearest rank; 0 with no samples. */
static double quantile(struct stats *s, double q)
{
	if (s->nlat == 0)
		return 0;
	qsort(s->lat, s->nlat, sizeof(double), cmp_double);
	size_t i = (size_t)(q * (double)s->nlat);
	if (i >= s->nlat)
		i = s->nlat - 1;
	return s->lat[i];
}

/* ---- connections ---- */

enum role { ROLE_POP3, ROLE_DELIVER };

/* Steps of a POP3 session, in order. */
enum pop3_step {
	P_CONNECT,
	P_GREETING,
	P_USER,
	P_PASS,
	P_STAT,
	P_LIST,
	P_UIDL,
	P_RETR,
	P_DELE,
	P_IDLE,
	P_QUIT,
	P_EOF, /* QUIT answered: wait for the server to close */
};

/* Steps of an LMTP/SMTP connection. */
enum dlv_step {
	D_CONNECT,
	D_GREETING,
	D_HELLO,
	D_ENVELOPE, /* MAIL, RCPT..., DATA pipelined: 2 + rcpts replies */
	D_DATA,     /* the message sent: 1 (SMTP) or rcpts (LMTP) replies */
	D_QUIT,
	D_WAIT,     /* paced (mixed): nothing due yet */
};

struct conn {
	struct conn *prev, *next; /* the live list */
	int fd;
	SSL *ssl;
	enum role role;
	int step;
	int slot; /* client number: picks the user; stable across sessions */
	bool connecting;
	bool handshaking;
	bool ssl_want_write;
	bool dead; /* closed; freed after the event batch */
	bool in_epoll_out;

	double t_start; /* session start */
	double t_phase; /* stat100k: start of the current phase */

	char *in;
	size_t in_len, in_cap;
	/* multi-line body (POP3): fast scan or line by line */
	bool in_body;
	bool body_lines;
	int body_state;       /* 0 mid-line, 1 at line start, 2 ".", 3 ".\r" */
	uint64_t body_bytes;  /* bytes after the status line */
	uint64_t body_stuffed;

	char *out;
	size_t out_len, out_off, out_cap;

	/* POP3 session */
	const struct user *user;
	uint64_t *sizes; /* retr: LIST sizes */
	size_t nsizes, sizes_cap;
	size_t nlisted;  /* lines in the last LIST/UIDL */
	size_t nmsgs;    /* mixed: messages the UIDL listed */
	size_t next_msg; /* 1-based */
	long stat_count;

	/* LMTP/SMTP */
	int replies_wanted;
	int replies_ok;
	long msg_no;
	double t_msg;
};

static int ep = -1;
static SSL_CTX *ssl_ctx;
static struct sockaddr_storage target, target_lmtp;
static socklen_t target_len, target_lmtp_len;
static double t_begin, t_soft, t_hard;
static bool stopping; /* no new sessions */
static int open_conns;
static struct conn *live; /* every open connection */
static struct conn **dead_list;
static size_t ndead, dead_cap;

/* Idle mode */
static long idle_ready;
static bool idle_release;
static bool idle_quit_sent; /* QUIT said on every held session */

/* stat100k phases, in ms */
static double ph_login, ph_stat, ph_list, ph_uidl;
static long ph_listed, ph_count;

/* Mixed: LMTP messages started so far, for pacing. */
static long dlv_started;

static char *msg_wire; /* dot-stuffed message + ".\r\n" */
static size_t msg_wire_len, msg_id_off;

static void conn_close(struct conn *c, bool ok);
static void pop3_start_session(int slot);
static void dlv_start_conn(int slot);
static void dlv_next(struct conn *c);

static bool is_loopback(const struct sockaddr_storage *ss)
{
	if (ss->ss_family == AF_INET) {
		const struct sockaddr_in *sin = (const struct sockaddr_in *)ss;
		return (ntohl(sin->sin_addr.s_addr) >> 24) == 127;
	}
	if (ss->ss_family == AF_INET6) {
		const struct sockaddr_in6 *sin6 = (const struct sockaddr_in6 *)ss;
		return IN6_IS_ADDR_LOOPBACK(&sin6->sin6_addr);
	}
	return false;
}

static void make_target(int port, struct sockaddr_storage *ss, socklen_t *len)
{
	memset(ss, 0, sizeof(*ss));
	struct sockaddr_in *sin = (struct sockaddr_in *)ss;
	struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)ss;
	if (inet_pton(AF_INET, opt.host, &sin->sin_addr) == 1) {
		sin->sin_family = AF_INET;
		sin->sin_port = htons((uint16_t)port);
		*len = sizeof(*sin);
	} else if (inet_pton(AF_INET6, opt.host, &sin6->sin6_addr) == 1) {
		sin6->sin6_family = AF_INET6;
		sin6->sin6_port = htons((uint16_t)port);
		*len = sizeof(*sin6);
	} else {
		die("--host: want a numeric address, got '%s'", opt.host);
	}
	if (!is_loopback(ss))
		die("--host %s is not a loopback address: popload only measures servers on this "
		    "machine",
		    opt.host);
}

static void ep_update(struct conn *c)
{
	bool want_out = c->connecting || c->ssl_want_write || c->out_off < c->out_len;
	if (want_out == c->in_epoll_out)
		return;
	struct epoll_event ev = {.events = EPOLLIN | (want_out ? EPOLLOUT : 0), .data.ptr = c};
	if (epoll_ctl(ep, EPOLL_CTL_MOD, c->fd, &ev) < 0)
		die("epoll_ctl: %s", strerror(errno));
	c->in_epoll_out = want_out;
}

static struct conn *conn_new(enum role role, int slot, const struct sockaddr_storage *to,
                             socklen_t tolen, bool tls)
{
	struct conn *c = xcalloc(1, sizeof(*c));
	bool bulk = role == ROLE_DELIVER || opt.mode == MODE_RETR || opt.mode == MODE_MIXED ||
	            opt.mode == MODE_STAT100K;
	c->role = role;
	c->slot = slot;
	c->in_cap = bulk ? IN_CAP_BULK : IN_CAP_SMALL;
	c->out_cap = role == ROLE_DELIVER ? OUT_CAP_BULK : OUT_CAP_SMALL;
	c->in = malloc(c->in_cap);
	c->out = malloc(c->out_cap);
	if (c->in == NULL || c->out == NULL)
		die("out of memory");
	c->t_start = now_s();
	c->next = live;
	if (live != NULL)
		live->prev = c;
	live = c;

	c->fd = socket(to->ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (c->fd < 0)
		die("socket: %s (raise ulimit -n?)", strerror(errno));
	int one = 1;
	setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	open_conns++;
	if (connect(c->fd, (const struct sockaddr *)to, tolen) < 0 && errno != EINPROGRESS) {
		fprintf(stderr, "popload: connect: %s\n", strerror(errno));
		struct epoll_event ev0 = {.events = 0, .data.ptr = c};
		epoll_ctl(ep, EPOLL_CTL_ADD, c->fd, &ev0);
		conn_close(c, false);
		return NULL;
	}
	c->connecting = true;
	if (tls) {
		c->ssl = SSL_new(ssl_ctx);
		if (c->ssl == NULL || SSL_set_fd(c->ssl, c->fd) != 1)
			die("SSL_new failed");
		SSL_set_connect_state(c->ssl);
		c->handshaking = true;
	}
	struct epoll_event ev = {.events = EPOLLIN | EPOLLOUT, .data.ptr = c};
	if (epoll_ctl(ep, EPOLL_CTL_ADD, c->fd, &ev) < 0)
		die("epoll_ctl: %s", strerror(errno));
	c->in_epoll_out = true;
	return c;
}

static void conn_close(struct conn *c, bool ok)
{
	if (c->dead)
		return;
	c->dead = true;
	if (!ok) {
		if (c->role == ROLE_DELIVER)
			st_dlv.errors++;
		else
			st.errors++;
	}
	if (c->ssl != NULL) {
		SSL_free(c->ssl);
		c->ssl = NULL;
	}
	epoll_ctl(ep, EPOLL_CTL_DEL, c->fd, NULL);
	close(c->fd);
	open_conns--;
	if (c->prev != NULL)
		c->prev->next = c->next;
	else
		live = c->next;
	if (c->next != NULL)
		c->next->prev = c->prev;
	if (ndead == dead_cap) {
		dead_cap = dead_cap ? dead_cap * 2 : 64;
		dead_list = realloc(dead_list, dead_cap * sizeof(*dead_list));
		if (dead_list == NULL)
			die("out of memory");
	}
	dead_list[ndead++] = c;
}

/* Queue bytes to send; flushed by conn_flush. Overflow cannot happen with
 * the sizes used here: it is a bug, so it stops the run. */
static void send_bytes(struct conn *c, const char *p, size_t n)
{
	if (c->out_off == c->out_len)
		c->out_off = c->out_len = 0;
	if (c->out_cap - c->out_len < n)
		die("output buffer overflow (bug)");
	memcpy(c->out + c->out_len, p, n);
	c->out_len += n;
}

static void send_fmt(struct conn *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void send_fmt(struct conn *c, const char *fmt, ...)
{
	char buf[LINE_MAX_LEN];
	va_list ap;
	va_start(ap, fmt);
	int n = vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	if (n < 0 || (size_t)n >= sizeof(buf))
		die("command too long (bug)");
	send_bytes(c, buf, (size_t)n);
}

/* Write what is queued. Returns -1 when the connection failed (closed). */
static int conn_flush(struct conn *c)
{
	while (c->out_off < c->out_len) {
		size_t n = c->out_len - c->out_off;
		ssize_t w;
		if (c->ssl != NULL) {
			int r = SSL_write(c->ssl, c->out + c->out_off, n > INT_MAX ? INT_MAX : (int)n);
			if (r <= 0) {
				int e = SSL_get_error(c->ssl, r);
				if (e == SSL_ERROR_WANT_WRITE || e == SSL_ERROR_WANT_READ)
					break;
				conn_close(c, false);
				return -1;
			}
			w = r;
		} else {
			w = send(c->fd, c->out + c->out_off, n, MSG_NOSIGNAL);
			if (w < 0) {
				if (errno == EAGAIN || errno == EINTR)
					break;
				conn_close(c, false);
				return -1;
			}
		}
		c->out_off += (size_t)w;
	}
	ep_update(c);
	return 0;
}

/* ---- POP3 ---- */

static const struct user *slot_user(int slot)
{
	return &users[(size_t)slot % nusers];
}

static bool may_start(void)
{
	return !stopping && st.started < opt.count && now_s() < t_soft;
}

/* The POP3 session on c ended (QUIT answered and the server closed, or an
 * error). Start the slot's next session when allowed. */
static void pop3_session_end(struct conn *c, bool ok)
{
	int slot = c->slot;
	conn_close(c, ok);
	if (opt.mode == MODE_IDLE || opt.mode == MODE_STAT100K)
		return;
	if (!ok && st.errors > 100 + st.done / 10) {
		fprintf(stderr, "popload: too many errors, stopping\n");
		stopping = true;
	}
	if (may_start())
		pop3_start_session(slot);
}

static void pop3_start_session(int slot)
{
	st.started++;
	struct conn *c = conn_new(ROLE_POP3, slot, &target, target_len, opt.tls);
	if (c == NULL)
		return;
	c->step = P_GREETING;
	c->user = slot_user(slot);
}

/* Begin a multi-line reply body after its +OK line. */
static void body_begin(struct conn *c, bool lines)
{
	c->in_body = true;
	c->body_lines = lines;
	c->body_state = 1;
	c->body_bytes = 0;
	c->body_stuffed = 0;
}

static void pop3_quit(struct conn *c)
{
	c->step = P_QUIT;
	send_fmt(c, "QUIT\r\n");
}

static void retr_next(struct conn *c)
{
	if (c->next_msg > c->nsizes || stopping || now_s() >= t_hard) {
		pop3_quit(c);
		return;
	}
	c->step = P_RETR;
	send_fmt(c, "RETR %zu\r\n", c->next_msg);
}

static void mixed_next(struct conn *c)
{
	if (c->next_msg > c->nmsgs || now_s() >= t_hard) {
		pop3_quit(c);
		return;
	}
	c->step = P_RETR;
	send_fmt(c, "RETR %zu\r\n", c->next_msg);
}

/* After a successful login: the mode's commands. */
static void pop3_after_login(struct conn *c)
{
	switch (opt.mode) {
	case MODE_LOGIN:
	case MODE_STAT100K:
		c->step = P_STAT;
		send_fmt(c, "STAT\r\n");
		break;
	case MODE_RETR:
		c->step = P_LIST;
		c->nsizes = 0;
		c->nlisted = 0;
		send_fmt(c, "LIST\r\n");
		break;
	case MODE_MIXED:
		c->step = P_UIDL;
		c->nlisted = 0;
		send_fmt(c, "UIDL\r\n");
		break;
	case MODE_IDLE:
		c->step = P_IDLE;
		idle_ready++;
		break;
	default:
		die("bad mode (bug)");
	}
}

/* One line of a LIST or UIDL body (dot-unstuffed, without CRLF). */
static void pop3_body_line(struct conn *c, const char *line, size_t len)
{
	c->nlisted++;
	if (c->step != P_LIST || opt.mode != MODE_RETR)
		return;
	/* "n size" */
	const char *sp = memchr(line, ' ', len);
	if (sp == NULL)
		return;
	uint64_t v = 0;
	for (const char *p = sp + 1; p < line + len && *p >= '0' && *p <= '9'; p++)
		v = v * 10 + (uint64_t)(*p - '0');
	if (c->nsizes == c->sizes_cap) {
		if (c->sizes_cap >= MSGS_MAX)
			return;
		c->sizes_cap = c->sizes_cap ? c->sizes_cap * 2 : 1024;
		c->sizes = realloc(c->sizes, c->sizes_cap * sizeof(*c->sizes));
		if (c->sizes == NULL)
			die("out of memory");
	}
	c->sizes[c->nsizes++] = v;
}

/* A multi-line reply ended. */
static void pop3_body_done(struct conn *c)
{
	double t = now_s();
	switch (c->step) {
	case P_LIST:
		if (opt.mode == MODE_STAT100K) {
			ph_list = (t - c->t_phase) * 1000;
			ph_listed = (long)c->nlisted;
			c->t_phase = t;
			c->step = P_UIDL;
			c->nlisted = 0;
			send_fmt(c, "UIDL\r\n");
			return;
		}
		c->next_msg = 1;
		retr_next(c);
		return;
	case P_UIDL:
		if (opt.mode == MODE_STAT100K) {
			ph_uidl = (t - c->t_phase) * 1000;
			if ((long)c->nlisted != ph_listed)
				st.mismatch++;
			pop3_quit(c);
			return;
		}
		c->nmsgs = c->nlisted;
		c->next_msg = 1;
		mixed_next(c);
		return;
	case P_RETR: {
		/* Body octets as stored: what arrived, less the terminating
		 * ".\r\n" and the dots added by stuffing. */
		uint64_t octets = c->body_bytes - 3 - c->body_stuffed;
		st.messages++;
		st.octets += octets;
		if (opt.mode == MODE_RETR) {
			if (c->next_msg <= c->nsizes && c->sizes[c->next_msg - 1] != octets)
				st.mismatch++;
			c->next_msg++;
			retr_next(c);
		} else {
			c->step = P_DELE;
			send_fmt(c, "DELE %zu\r\n", c->next_msg);
		}
		return;
	}
	default:
		die("multi-line reply in step %d (bug)", c->step);
	}
}

/* One single-line POP3 reply. */
static void pop3_reply(struct conn *c, const char *line, size_t len)
{
	bool ok = len >= 3 && memcmp(line, "+OK", 3) == 0;
	double t = now_s();

	if (!ok && c->step != P_EOF) {
		if (opt.verbose || st.errors < 5)
			fprintf(stderr, "popload: step %d user %s: %.*s\n", c->step,
			        c->user ? c->user->address : "-", (int)(len > 200 ? 200 : len), line);
		pop3_session_end(c, false);
		return;
	}
	switch (c->step) {
	case P_GREETING:
		c->step = P_USER;
		send_fmt(c, "USER %s\r\n", c->user->address);
		c->t_phase = t;
		break;
	case P_USER:
		c->step = P_PASS;
		send_fmt(c, "PASS %s\r\n", c->user->password);
		break;
	case P_PASS:
		if (opt.mode == MODE_STAT100K) {
			ph_login = (t - c->t_phase) * 1000;
			/* "first STAT" counts from USER: the login opens the mailbox. */
		}
		pop3_after_login(c);
		break;
	case P_STAT:
		if (opt.mode == MODE_STAT100K) {
			ph_stat = (t - c->t_phase) * 1000;
			c->t_phase = t;
			c->stat_count = strtol(line + 3, NULL, 10);
			ph_count = c->stat_count;
			c->step = P_LIST;
			c->nlisted = 0;
			send_fmt(c, "LIST\r\n");
			break;
		}
		pop3_quit(c);
		break;
	case P_LIST:
	case P_UIDL:
	case P_RETR:
		body_begin(c, c->step != P_RETR);
		break;
	case P_DELE:
		st.deleted++;
		c->next_msg++;
		mixed_next(c);
		break;
	case P_QUIT:
		/* The session counts as done at the QUIT reply; the server
		 * then closes (RFC 1939 §6) and we wait for that. */
		st.done++;
		sample(&st, (t - c->t_start) * 1000);
		c->step = P_EOF;
		break;
	case P_IDLE:
	case P_EOF:
	default:
		if (opt.verbose)
			fprintf(stderr, "popload: unexpected line in step %d: %.*s\n", c->step,
			        (int)(len > 200 ? 200 : len), line);
		break;
	}
}

/* Scan a multi-line body fast: only line starts matter. Returns bytes used;
 * sets c->in_body false at the terminator. */
static size_t body_scan(struct conn *c, const char *p, size_t n)
{
	size_t i = 0;
	while (i < n) {
		switch (c->body_state) {
		case 0: {
			const char *nl = memchr(p + i, '\n', n - i);
			if (nl == NULL) {
				i = n;
				break;
			}
			i = (size_t)(nl - p) + 1;
			c->body_state = 1;
			break;
		}
		case 1:
			c->body_state = p[i] == '.' ? 2 : p[i] == '\n' ? 1 : 0;
			i++;
			break;
		case 2:
			if (p[i] == '\r') {
				c->body_state = 3;
			} else {
				c->body_stuffed++; /* "..x": the first dot was stuffed */
				c->body_state = p[i] == '\n' ? 1 : 0;
			}
			i++;
			break;
		case 3:
			if (p[i] == '\n') {
				i++;
				c->body_bytes += i;
				c->in_body = false;
				return i;
			}
			/* ".\rx": a stuffed line that is just ".\r..." is not
			 * possible (the server stuffs every leading dot), but
			 * count it as a stuffed line and carry on. */
			c->body_stuffed++;
			c->body_state = 0;
			break;
		}
	}
	c->body_bytes += n;
	return n;
}

/* Lines of a multi-line body (LIST, UIDL). Returns bytes used; -1 when the
 * connection was closed. */
static long body_lines(struct conn *c, const char *p, size_t n)
{
	size_t used = 0;
	while (used < n) {
		const char *nl = memchr(p + used, '\n', n - used);
		if (nl == NULL)
			break;
		size_t len = (size_t)(nl - (p + used)) + 1;
		const char *line = p + used;
		used += len;
		c->body_bytes += len;
		size_t l = len - 1;
		if (l > 0 && line[l - 1] == '\r')
			l--;
		if (l == 1 && line[0] == '.') {
			c->in_body = false;
			pop3_body_done(c);
			return c->dead ? -1 : (long)used;
		}
		if (l > 0 && line[0] == '.') {
			line++;
			l--;
		}
		pop3_body_line(c, line, l);
	}
	return (long)used;
}

/* ---- LMTP / SMTP ---- */

static bool dlv_may_start(void)
{
	if (stopping || now_s() >= t_soft)
		return false;
	if (opt.mode == MODE_MIXED)
		return true;
	return st_dlv.started < opt.count;
}

/* Send the next message's envelope, pipelined (RFC 2920): MAIL, the RCPTs
 * and DATA; the replies are counted in dlv_reply. */
static void dlv_next(struct conn *c)
{
	if (!dlv_may_start()) {
		c->step = D_QUIT;
		send_fmt(c, "QUIT\r\n");
		return;
	}
	if (opt.mode == MODE_MIXED) {
		/* Pacing: the n-th message is due at n / rate seconds. */
		double due = t_begin + (double)dlv_started / opt.lmtp_rate;
		if (now_s() < due) {
			c->step = D_WAIT;
			return;
		}
	}
	long n = opt.mode == MODE_MIXED ? dlv_started++ : st_dlv.started;
	st_dlv.started++;
	c->msg_no = n;
	c->t_msg = now_s();
	send_fmt(c, "MAIL FROM:<sender@example.org> BODY=8BITMIME\r\n");
	for (int r = 0; r < opt.rcpts; r++) {
		size_t u = ((size_t)n * (size_t)opt.rcpts + (size_t)r) % nusers;
		send_fmt(c, "RCPT TO:<%s>\r\n", users[u].address);
	}
	send_fmt(c, "DATA\r\n");
	c->step = D_ENVELOPE;
	c->replies_wanted = opt.rcpts + 2;
	c->replies_ok = 0;
}

static void dlv_send_message(struct conn *c)
{
	char id[16];
	snprintf(id, sizeof(id), "%011ld", c->msg_no % 100000000000L);
	memcpy(msg_wire + msg_id_off, id, 11);
	send_bytes(c, msg_wire, msg_wire_len);
	c->step = D_DATA;
	c->replies_wanted = opt.mode == MODE_SMTP ? 1 : opt.rcpts;
	c->replies_ok = 0;
}

static void dlv_reply(struct conn *c, const char *line, size_t len)
{
	if (len < 4) {
		conn_close(c, false);
		return;
	}
	if (line[3] == '-')
		return; /* continuation of a multi-line reply */
	int code = (line[0] - '0') * 100 + (line[1] - '0') * 10 + (line[2] - '0');
	switch (c->step) {
	case D_GREETING:
		if (code != 220)
			goto bad;
		c->step = D_HELLO;
		send_fmt(c, "%s bench.test\r\n", opt.mode == MODE_SMTP ? "EHLO" : "LHLO");
		return;
	case D_HELLO:
		if (code != 250)
			goto bad;
		dlv_next(c);
		return;
	case D_ENVELOPE: {
		int idx = opt.rcpts + 2 - c->replies_wanted; /* 0 MAIL, 1..r RCPT, r+1 DATA */
		bool want354 = idx == opt.rcpts + 1;
		if ((want354 && code != 354) || (!want354 && code != 250))
			goto bad;
		if (--c->replies_wanted == 0)
			dlv_send_message(c);
		return;
	}
	case D_DATA:
		if (code != 250)
			goto bad;
		if (--c->replies_wanted == 0) {
			double t = now_s();
			st_dlv.done++;
			st_dlv.messages++;
			sample(&st_dlv, (t - c->t_msg) * 1000);
			dlv_next(c);
		}
		return;
	case D_QUIT:
		conn_close(c, true);
		return;
	default:
		goto bad;
	}
bad:
	if (st_dlv.errors < 5 || opt.verbose)
		fprintf(stderr, "popload: delivery step %d: %.*s\n", c->step, (int)(len > 200 ? 200 : len),
		        line);
	{
		int slot = c->slot;
		conn_close(c, false);
		if (st_dlv.errors > 100 + st_dlv.done / 10) {
			fprintf(stderr, "popload: too many delivery errors, stopping\n");
			stopping = true;
		}
		if (dlv_may_start())
			dlv_start_conn(slot);
	}
}

static void dlv_start_conn(int slot)
{
	bool lmtp_port = opt.mode == MODE_MIXED;
	struct conn *c = conn_new(ROLE_DELIVER, slot, lmtp_port ? &target_lmtp : &target,
	                          lmtp_port ? target_lmtp_len : target_len, false);
	if (c != NULL)
		c->step = D_GREETING;
}

/* Build the message: realistic headers, a body of text with lines that
 * start with '.', 8-bit (UTF-8) lines, about `size` octets with CRLF line
 * ends, then dot-stuffed for the wire with the final ".\r\n". */
static void build_message(long size)
{
	static const char *const words[] = {
	    "the",    "quarterly", "report", "shows", "that", "delivery", "times", "improved",
	    "Grüße",  "naïve",     "café",   "über",  "mail", "server",   "pop3",  "fetch",
	    "résumé", "data",      "at",     "noon",  "and",  "again",    "on",    "Friday",
	};
	size_t cap = (size_t)size + 4096;
	char *msg = xcalloc(1, cap);
	int n = snprintf(msg, cap,
	                 "Return-Path: <sender@example.org>\r\n"
	                 "From: Sender Example <sender@example.org>\r\n"
	                 "To: Bench Recipient <rcpt@bench.test>\r\n"
	                 "Subject: =?UTF-8?Q?Quarterly_r=C3=A9sum=C3=A9?= and load figures\r\n"
	                 "Date: Tue, 03 Mar 2026 10:00:00 +0000\r\n"
	                 "Message-ID: <00000000000.popload@example.org>\r\n"
	                 "MIME-Version: 1.0\r\n"
	                 "Content-Type: text/plain; charset=utf-8\r\n"
	                 "Content-Transfer-Encoding: 8bit\r\n"
	                 "\r\n");
	size_t len = (size_t)n;
	unsigned seed = 12345;
	int lineno = 0;
	while (len + 100 < (size_t)size) {
		size_t start = len;
		if (lineno % 7 == 3)
			msg[len++] = '.'; /* exercises dot-stuffing */
		while (len - start < 70) {
			seed = seed * 1103515245u + 12345u;
			const char *w = words[(seed >> 16) % (sizeof(words) / sizeof(words[0]))];
			size_t wl = strlen(w);
			memcpy(msg + len, w, wl);
			len += wl;
			msg[len++] = ' ';
		}
		msg[len++] = '\r';
		msg[len++] = '\n';
		lineno++;
	}
	while (len + 2 < (size_t)size)
		msg[len++] = 'x';
	msg[len++] = '\r';
	msg[len++] = '\n';

	const char *idp = strstr(msg, "<00000000000.");
	size_t id_off = (size_t)(idp + 1 - msg);

	/* Dot-stuff (RFC 5321 §4.5.2). Headers have no leading dots, so the
	 * Message-ID offset is the same on the wire. */
	msg_wire = xcalloc(1, 2 * len + 8);
	size_t w = 0;
	bool bol = true;
	for (size_t i = 0; i < len; i++) {
		if (bol && msg[i] == '.')
			msg_wire[w++] = '.';
		msg_wire[w++] = msg[i];
		bol = msg[i] == '\n';
	}
	memcpy(msg_wire + w, ".\r\n", 3);
	msg_wire_len = w + 3;
	msg_id_off = id_off;
	free(msg);
}

/* ---- the event loop ---- */

/* Handle the bytes in c->in. */
static void conn_input(struct conn *c)
{
	size_t used = 0;
	while (used < c->in_len && !c->dead) {
		char *p = c->in + used;
		size_t n = c->in_len - used;
		if (c->in_body) {
			if (c->body_lines) {
				long u = body_lines(c, p, n);
				if (u < 0)
					return;
				if (u == 0)
					break;
				used += (size_t)u;
			} else {
				used += body_scan(c, p, n);
				if (!c->in_body)
					pop3_body_done(c);
			}
			continue;
		}
		char *nl = memchr(p, '\n', n);
		if (nl == NULL) {
			if (n > LINE_MAX_LEN) {
				fprintf(stderr, "popload: reply line too long\n");
				conn_close(c, false);
				return;
			}
			break;
		}
		size_t len = (size_t)(nl - p) + 1;
		used += len;
		size_t l = len - 1;
		if (l > 0 && p[l - 1] == '\r')
			l--;
		if (c->role == ROLE_POP3)
			pop3_reply(c, p, l);
		else
			dlv_reply(c, p, l);
	}
	if (c->dead)
		return;
	if (used < c->in_len)
		memmove(c->in, c->in + used, c->in_len - used);
	c->in_len -= used;
}

/* Read what is there. Returns -1 when c was closed. */
static int conn_read(struct conn *c)
{
	for (;;) {
		if (c->in_len == c->in_cap) {
			fprintf(stderr, "popload: input buffer full\n");
			conn_close(c, false);
			return -1;
		}
		ssize_t r;
		size_t room = c->in_cap - c->in_len;
		if (c->ssl != NULL) {
			int k = SSL_read(c->ssl, c->in + c->in_len, room > INT_MAX ? INT_MAX : (int)room);
			if (k <= 0) {
				int e = SSL_get_error(c->ssl, k);
				if (e == SSL_ERROR_WANT_READ)
					return 0;
				if (e == SSL_ERROR_WANT_WRITE) {
					c->ssl_want_write = true;
					ep_update(c);
					return 0;
				}
				r = e == SSL_ERROR_ZERO_RETURN ? 0 : -1;
			} else {
				r = k;
			}
		} else {
			r = recv(c->fd, c->in + c->in_len, room, 0);
			if (r < 0 && (errno == EAGAIN || errno == EINTR))
				return 0;
		}
		if (r <= 0) {
			/* Closed by the server: expected only after QUIT. */
			bool ok = c->role == ROLE_POP3 ? c->step == P_EOF : c->step == D_QUIT;
			if (c->role == ROLE_POP3)
				pop3_session_end(c, ok);
			else
				conn_close(c, ok);
			return -1;
		}
		st.wire_octets += (uint64_t)r;
		c->in_len += (size_t)r;
		conn_input(c);
		if (c->dead)
			return -1;
		if (conn_flush(c) < 0)
			return -1;
	}
}

static void conn_event(struct conn *c, uint32_t events)
{
	if (c->dead)
		return;
	if (c->connecting) {
		int err = 0;
		socklen_t l = sizeof(err);
		if (!(events & (EPOLLOUT | EPOLLERR | EPOLLHUP)))
			return;
		getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &l);
		if (err != 0) {
			if (st.errors < 5)
				fprintf(stderr, "popload: connect: %s\n", strerror(err));
			if (c->role == ROLE_POP3)
				pop3_session_end(c, false);
			else
				conn_close(c, false);
			return;
		}
		c->connecting = false;
		ep_update(c);
	}
	if (c->handshaking) {
		int r = SSL_do_handshake(c->ssl);
		if (r != 1) {
			int e = SSL_get_error(c->ssl, r);
			if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) {
				c->ssl_want_write = e == SSL_ERROR_WANT_WRITE;
				ep_update(c);
				return;
			}
			if (st.errors < 5) {
				fprintf(stderr, "popload: TLS handshake failed: ");
				ERR_print_errors_fp(stderr);
				fputc('\n', stderr);
			}
			pop3_session_end(c, false);
			return;
		}
		c->handshaking = false;
		c->ssl_want_write = false;
		ep_update(c);
	}
	if (c->ssl_want_write && (events & EPOLLOUT)) {
		c->ssl_want_write = false;
		ep_update(c);
	}
	/* With TLS, records may already sit in OpenSSL's buffer after the
	 * handshake or a write: always try to read. */
	if ((events & (EPOLLIN | EPOLLERR | EPOLLHUP)) || c->ssl != NULL) {
		if (conn_read(c) < 0)
			return;
	}
	if (c->out_off < c->out_len)
		conn_flush(c);
}

static void reap_dead(void)
{
	for (size_t i = 0; i < ndead; i++) {
		struct conn *c = dead_list[i];
		free(c->in);
		free(c->out);
		free(c->sizes);
		free(c);
	}
	ndead = 0;
}

static void run_loop(void (*tick)(void))
{
	struct epoll_event evs[EVENTS_MAX];
	for (;;) {
		double t = now_s();
		if (t >= t_hard) {
			if (open_conns > 0)
				fprintf(stderr, "popload: hard time limit: %d connections still open\n",
				        open_conns);
			break;
		}
		if (t >= t_soft && opt.mode != MODE_IDLE)
			stopping = true;
		if (tick != NULL)
			tick();
		if (open_conns == 0 && (tick == NULL || (stopping && idle_quit_sent) ||
		                        (stopping && opt.mode != MODE_IDLE)))
			break;
		int timeout = opt.mode == MODE_MIXED ? 2 : 50;
		int n = epoll_wait(ep, evs, EVENTS_MAX, timeout);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			die("epoll_wait: %s", strerror(errno));
		}
		for (int i = 0; i < n; i++) {
			if (evs[i].data.ptr == NULL) {
				/* stdin (idle mode): a line or EOF releases */
				char b[256];
				ssize_t r = read(0, b, sizeof(b));
				if (r <= 0 || memchr(b, '\n', (size_t)r) != NULL) {
					idle_release = true;
					epoll_ctl(ep, EPOLL_CTL_DEL, 0, NULL);
				}
				continue;
			}
			conn_event(evs[i].data.ptr, evs[i].events);
		}
		reap_dead();
	}
}

/* ---- modes ---- */

/* login, retr, stat100k: `clients` slots each running sessions back to back. */
static void run_sessions(void)
{
	int n = opt.clients;
	for (int i = 0; i < n && may_start(); i++)
		pop3_start_session(i);
	run_loop(NULL);
}

/* Idle: open `count` sessions, `clients` logging in at a time, print READY
 * and hold them until released (a line or EOF on stdin, or --hold). */
static long idle_target;
static int idle_next_slot;
static bool idle_reported;

static void idle_tick(void)
{
	if (!idle_reported) {
		if (now_s() >= t_soft)
			stopping = true;
		long logging_in = open_conns - idle_ready;
		while (!stopping && idle_next_slot < idle_target && logging_in < opt.clients) {
			pop3_start_session(idle_next_slot++);
			logging_in++;
		}
		bool all = idle_next_slot >= idle_target && idle_ready + st.errors >= idle_target;
		if (!all && !stopping)
			return;
		/* All logged in, or --time ran out: report what there is. */
		idle_reported = true;
		double t = now_s();
		printf("READY sessions=%ld errors=%ld seconds=%.2f\n", idle_ready, st.errors,
		       t - t_begin);
		fflush(stdout);
		stopping = true;
		t_soft = t + opt.hold_s;
		t_hard = t_soft + GRACE_S;
		return;
	}
	if (!idle_quit_sent && (idle_release || now_s() >= t_soft)) {
		idle_quit_sent = true;
		for (struct conn *c = live, *next; c != NULL; c = next) {
			next = c->next;
			if (c->role == ROLE_POP3 && c->step == P_IDLE) {
				pop3_quit(c);
				conn_flush(c);
			}
		}
	}
}

static void run_idle(void)
{
	idle_target = opt.count;
	if ((size_t)idle_target > nusers)
		die("idle: --count %ld is more than the %zu users: every session needs its own "
		    "mailbox",
		    idle_target, nusers);
	struct epoll_event ev = {.events = EPOLLIN, .data.ptr = NULL};
	if (epoll_ctl(ep, EPOLL_CTL_ADD, 0, &ev) < 0)
		fprintf(stderr, "popload: stdin not pollable: holding for --hold %gs\n", opt.hold_s);
	run_loop(idle_tick);
}

/* lmtp, smtp: `clients` connections each delivering messages back to back. */
static void run_deliveries(void)
{
	for (int i = 0; i < opt.clients; i++)
		dlv_start_conn(i);
	run_loop(NULL);
}

static void mixed_tick(void)
{
	/* Wake paced LMTP connections whose next message is due. */
	double due = t_begin + (double)dlv_started / opt.lmtp_rate;
	if (now_s() < due && !stopping)
		return;
	for (struct conn *c = live, *next; c != NULL; c = next) {
		next = c->next;
		if (c->role == ROLE_DELIVER && c->step == D_WAIT) {
			dlv_next(c);
			conn_flush(c);
		}
	}
}

static void run_mixed(void)
{
	for (int i = 0; i < opt.lmtp_clients; i++)
		dlv_start_conn(i);
	for (int i = 0; i < opt.clients && may_start(); i++)
		pop3_start_session(i);
	run_loop(mixed_tick);
}

/* ---- limits: what this machine can do at best ---- */

/* One TCP stream over loopback: a child writes, we read. */
static double limit_tcp(double seconds)
{
	int ls = socket(AF_INET, SOCK_STREAM, 0);
	struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	socklen_t al = sizeof(a);
	if (ls < 0 || bind(ls, (struct sockaddr *)&a, sizeof(a)) < 0 || listen(ls, 1) < 0 ||
	    getsockname(ls, (struct sockaddr *)&a, &al) < 0)
		die("limits: listen: %s", strerror(errno));
	pid_t pid = fork();
	if (pid < 0)
		die("fork: %s", strerror(errno));
	if (pid == 0) {
		int s = socket(AF_INET, SOCK_STREAM, 0);
		if (connect(s, (struct sockaddr *)&a, sizeof(a)) < 0)
			_exit(1);
		static char buf[256 * 1024];
		memset(buf, 'x', sizeof(buf));
		double end = now_s() + seconds + 5;
		/* Bounded by time; the reader closing ends it sooner. */
		while (now_s() < end)
			if (send(s, buf, sizeof(buf), MSG_NOSIGNAL) <= 0)
				break;
		_exit(0);
	}
	int s = accept(ls, NULL, NULL);
	if (s < 0)
		die("limits: accept: %s", strerror(errno));
	static char rbuf[256 * 1024];
	uint64_t total = 0;
	double t0 = now_s(), t;
	while ((t = now_s()) - t0 < seconds) {
		ssize_t r = recv(s, rbuf, sizeof(rbuf), 0);
		if (r <= 0)
			break;
		total += (uint64_t)r;
	}
	close(s);
	close(ls);
	waitpid(pid, NULL, 0);
	return (double)total / (t - t0) / 1e6;
}

static double limit_memcpy(double seconds)
{
	size_t n = 64u * 1024 * 1024;
	char *a = malloc(n), *b = malloc(n);
	if (a == NULL || b == NULL)
		die("out of memory");
	memset(a, 1, n);
	memset(b, 2, n);
	uint64_t total = 0;
	double t0 = now_s(), t;
	int rounds = 0;
	while ((t = now_s()) - t0 < seconds && rounds < 100000) {
		memcpy((rounds & 1) ? a : b, (rounds & 1) ? b : a, n);
		total += n;
		rounds++;
	}
	volatile char sink = a[n / 2] ^ b[n / 3];
	(void)sink;
	free(a);
	free(b);
	return (double)total / (t - t0) / 1e6;
}

/* sha512-crypt verifications per second on one core: logins/s can at best
 * be this times the number of cores with these hashes. */
static double limit_crypt(double seconds)
{
	char salt[CRYPT_GENSALT_OUTPUT_SIZE];
	if (crypt_gensalt_rn("$6$", 0, NULL, 0, salt, sizeof(salt)) == NULL)
		die("crypt_gensalt: %s", strerror(errno));
	struct crypt_data cd;
	memset(&cd, 0, sizeof(cd));
	char *h = crypt_r("benchmark password", salt, &cd);
	if (h == NULL || h[0] == '*')
		die("crypt: no sha512-crypt");
	char hash[CRYPT_OUTPUT_SIZE];
	snprintf(hash, sizeof(hash), "%s", h);
	long n = 0;
	double t0 = now_s(), t;
	while ((t = now_s()) - t0 < seconds && n < 1000000) {
		crypt_r("benchmark password", hash, &cd);
		n++;
	}
	return (double)n / (t - t0);
}

/* Durable small writes per second in `dir`, one after another: write 10 KB
 * to a new file, fsync it, rename it, fsync the directory (what a Maildir
 * delivery must do). Deliveries/s per connection cannot beat this unless
 * fsyncs are shared between deliveries. */
static double limit_fsync(const char *dir, double seconds)
{
	static char buf[10240];
	char tmp[PATH_MAX], dst[PATH_MAX];
	memset(buf, 'x', sizeof(buf));
	int dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (dfd < 0)
		die("limits: %s: %s", dir, strerror(errno));
	long n = 0;
	double t0 = now_s(), t;
	while ((t = now_s()) - t0 < seconds && n < 100000) {
		snprintf(tmp, sizeof(tmp), "%s/popload-fsync.tmp", dir);
		snprintf(dst, sizeof(dst), "%s/popload-fsync.%ld", dir, n % 2);
		int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
		if (fd < 0 || write(fd, buf, sizeof(buf)) != (ssize_t)sizeof(buf) || fsync(fd) < 0)
			die("limits: %s: %s", tmp, strerror(errno));
		close(fd);
		if (rename(tmp, dst) < 0 || fsync(dfd) < 0)
			die("limits: %s: %s", dst, strerror(errno));
		n++;
	}
	for (int i = 0; i < 2; i++) {
		snprintf(dst, sizeof(dst), "%s/popload-fsync.%d", dir, i);
		unlink(dst);
	}
	close(dfd);
	return (double)n / (t - t0);
}

/* ---- main ---- */

static void usage(void)
{
	fputs("usage: popload MODE [options]\n"
	      "\n"
	      "Modes:\n"
	      "  login     USER/PASS/STAT/QUIT sessions back to back; logins/s\n"
	      "  retr      log in, LIST, RETR every message, QUIT; MB/s (--tls for POP3S)\n"
	      "  stat100k  one session: time to the first STAT, then LIST and UIDL\n"
	      "  idle      log in --count sessions and hold them; prints READY\n"
	      "  lmtp      deliver messages over LMTP; messages/s\n"
	      "  smtp      deliver messages over SMTP; messages/s\n"
	      "  mixed     POP3 clients (login, UIDL, RETR+DELE each, QUIT) while LMTP\n"
	      "            delivers at --lmtp-rate; sessions/s and p99 latency\n"
	      "  limits    loopback TCP throughput, memcpy bandwidth, sha512-crypt rate,\n"
	      "            fsync'ed 10 KB file creations per second in --dir\n"
	      "\n"
	      "Options:\n"
	      "  --host ADDR        loopback address of the server (127.0.0.1)\n"
	      "  --port N           server port (POP3, POP3S with --tls, LMTP or SMTP)\n"
	      "  --tls              implicit TLS\n"
	      "  --users FILE       'address password' lines\n"
	      "  --clients N        concurrent connections (1)\n"
	      "  --count N          at most N sessions / messages / held sessions (1000000)\n"
	      "  --time SEC         wall-clock limit (10); in-flight work gets 10 s more\n"
	      "  --rcpts N          recipients per message (1)\n"
	      "  --size BYTES       message size for lmtp, smtp, mixed (10240)\n"
	      "  --lmtp-port N      mixed: the LMTP port\n"
	      "  --lmtp-rate N      mixed: messages/s offered over LMTP (100)\n"
	      "  --lmtp-clients N   mixed: LMTP connections (2)\n"
	      "  --hold SEC         idle: hold at most this long after READY (60)\n"
	      "  --dir DIR          limits: where to time fsyncs (/tmp)\n"
	      "  -v, --verbose\n",
	      stderr);
	exit(2);
}

static void parse_args(int argc, char **argv)
{
	static const struct option longopts[] = {
	    {"host", required_argument, NULL, 'H'},       {"port", required_argument, NULL, 'p'},
	    {"tls", no_argument, NULL, 'T'},              {"users", required_argument, NULL, 'u'},
	    {"clients", required_argument, NULL, 'c'},    {"count", required_argument, NULL, 'n'},
	    {"time", required_argument, NULL, 't'},       {"rcpts", required_argument, NULL, 'r'},
	    {"size", required_argument, NULL, 's'},       {"lmtp-port", required_argument, NULL, 'L'},
	    {"lmtp-rate", required_argument, NULL, 'R'},  {"lmtp-clients", required_argument, NULL, 'C'},
	    {"hold", required_argument, NULL, 'h'},       {"dir", required_argument, NULL, 'd'},
	    {"verbose", no_argument, NULL, 'v'},          {NULL, 0, NULL, 0},
	};
	if (argc < 2)
		usage();
	bool found = false;
	for (size_t i = 0; i < sizeof(mode_names) / sizeof(mode_names[0]); i++) {
		if (strcmp(argv[1], mode_names[i]) == 0) {
			opt.mode = (enum mode)i;
			found = true;
		}
	}
	if (!found)
		usage();
	optind = 2;
	int ch;
	while ((ch = getopt_long(argc, argv, "v", longopts, NULL)) != -1) {
		switch (ch) {
		case 'H': opt.host = optarg; break;
		case 'p': opt.port = (int)parse_long("port", optarg, 1, 65535); break;
		case 'T': opt.tls = true; break;
		case 'u': opt.users_file = optarg; break;
		case 'c': opt.clients = (int)parse_long("clients", optarg, 1, CLIENTS_MAX); break;
		case 'n': opt.count = parse_long("count", optarg, 1, COUNT_MAX); break;
		case 't': opt.time_s = parse_double("time", optarg, 0.1, TIME_MAX_S); break;
		case 'r': opt.rcpts = (int)parse_long("rcpts", optarg, 1, RCPTS_MAX); break;
		case 's': opt.size = parse_long("size", optarg, 256, MSG_SIZE_MAX); break;
		case 'L': opt.lmtp_port = (int)parse_long("lmtp-port", optarg, 1, 65535); break;
		case 'R': opt.lmtp_rate = parse_double("lmtp-rate", optarg, 0.1, 100000); break;
		case 'C': opt.lmtp_clients = (int)parse_long("lmtp-clients", optarg, 1, 1000); break;
		case 'h': opt.hold_s = parse_double("hold", optarg, 0, TIME_MAX_S); break;
		case 'd': opt.dir = optarg; break;
		case 'v': opt.verbose = true; break;
		default: usage();
		}
	}
	if (optind != argc)
		usage();
	if (opt.mode != MODE_LIMITS) {
		if (opt.port == 0)
			die("--port is required");
		if (opt.users_file == NULL)
			die("--users is required");
		if (opt.mode == MODE_MIXED && opt.lmtp_port == 0)
			die("mixed needs --lmtp-port");
		if (opt.tls && (opt.mode == MODE_LMTP || opt.mode == MODE_SMTP))
			die("--tls is for POP3 modes");
	}
}

/* Enough descriptors for every connection, up to the hard limit. */
static void raise_nofile(long want)
{
	struct rlimit rl;
	if (getrlimit(RLIMIT_NOFILE, &rl) < 0)
		return;
	rlim_t w = (rlim_t)want;
	if (w > rl.rlim_max)
		w = rl.rlim_max;
	if (rl.rlim_cur < w) {
		rl.rlim_cur = w;
		setrlimit(RLIMIT_NOFILE, &rl);
	}
}

int main(int argc, char **argv)
{
	parse_args(argc, argv);
	signal(SIGPIPE, SIG_IGN);

	if (opt.mode == MODE_LIMITS) {
		double tcp = limit_tcp(2.0);
		double mem = limit_memcpy(1.0);
		double cr = limit_crypt(1.0);
		double fs = limit_fsync(opt.dir, 1.0);
		long cores = sysconf(_SC_NPROCESSORS_ONLN);
		printf("RESULT mode=limits tcp_mbps=%.1f memcpy_mbps=%.1f crypt6_per_s_core=%.1f "
		       "fsync_per_s=%.1f cores=%ld\n",
		       tcp, mem, cr, fs, cores);
		return 0;
	}

	load_users(opt.users_file);
	make_target(opt.port, &target, &target_len);
	if (opt.mode == MODE_MIXED)
		make_target(opt.lmtp_port, &target_lmtp, &target_lmtp_len);
	long conns = opt.mode == MODE_IDLE ? opt.count : opt.clients;
	raise_nofile(conns + opt.lmtp_clients + 64);
	if (opt.mode == MODE_LMTP || opt.mode == MODE_SMTP || opt.mode == MODE_MIXED)
		build_message(opt.size);
	if (opt.tls) {
		ssl_ctx = SSL_CTX_new(TLS_client_method());
		if (ssl_ctx == NULL)
			die("SSL_CTX_new failed");
		/* A benchmark of our own server on loopback with its
		 * self-signed certificate: the peer is not verified. */
		SSL_CTX_set_verify(ssl_ctx, SSL_VERIFY_NONE, NULL);
		SSL_CTX_set_mode(ssl_ctx, SSL_MODE_ENABLE_PARTIAL_WRITE |
		                              SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
	}
	ep = epoll_create1(EPOLL_CLOEXEC);
	if (ep < 0)
		die("epoll_create1: %s", strerror(errno));

	t_begin = now_s();
	t_soft = t_begin + opt.time_s;
	t_hard = t_soft + GRACE_S;
	if (opt.mode == MODE_IDLE)
		t_hard = t_soft + opt.hold_s + GRACE_S;

	switch (opt.mode) {
	case MODE_LOGIN:
	case MODE_RETR:
		run_sessions();
		break;
	case MODE_STAT100K:
		opt.clients = 1;
		opt.count = 1;
		run_sessions();
		break;
	case MODE_IDLE:
		run_idle();
		break;
	case MODE_LMTP:
	case MODE_SMTP:
		run_deliveries();
		break;
	case MODE_MIXED:
		run_mixed();
		break;
	case MODE_LIMITS:
		break;
	}
	double el = now_s() - t_begin;

	switch (opt.mode) {
	case MODE_LOGIN:
		printf("RESULT mode=login clients=%d sessions=%ld errors=%ld seconds=%.3f "
		       "logins_per_s=%.1f p50_ms=%.2f p99_ms=%.2f\n",
		       opt.clients, st.done, st.errors, el, (double)st.done / el,
		       quantile(&st, 0.5), quantile(&st, 0.99));
		break;
	case MODE_RETR:
		printf("RESULT mode=retr tls=%d clients=%d sessions=%ld errors=%ld messages=%ld "
		       "octets=%" PRIu64 " wire_octets=%" PRIu64 " mismatch=%ld seconds=%.3f "
		       "mb_per_s=%.1f\n",
		       opt.tls, opt.clients, st.done, st.errors, st.messages, st.octets,
		       st.wire_octets, st.mismatch, el, (double)st.octets / el / 1e6);
		break;
	case MODE_STAT100K:
		printf("RESULT mode=stat100k errors=%ld messages=%ld listed=%ld mismatch=%ld "
		       "login_ms=%.2f first_stat_ms=%.2f list_ms=%.2f uidl_ms=%.2f\n",
		       st.errors, ph_count, ph_listed, st.mismatch, ph_login, ph_stat, ph_list,
		       ph_uidl);
		break;
	case MODE_IDLE:
		printf("RESULT mode=idle tls=%d sessions=%ld errors=%ld\n", opt.tls, idle_ready,
		       st.errors);
		break;
	case MODE_LMTP:
	case MODE_SMTP:
		printf("RESULT mode=%s clients=%d rcpts=%d size=%ld messages=%ld errors=%ld "
		       "seconds=%.3f msgs_per_s=%.1f rcpts_per_s=%.1f p50_ms=%.2f p99_ms=%.2f\n",
		       mode_names[opt.mode], opt.clients, opt.rcpts, opt.size, st_dlv.done,
		       st_dlv.errors, el, (double)st_dlv.done / el,
		       (double)st_dlv.done * opt.rcpts / el, quantile(&st_dlv, 0.5),
		       quantile(&st_dlv, 0.99));
		break;
	case MODE_MIXED:
		printf("RESULT mode=mixed clients=%d sessions=%ld errors=%ld retrieved=%ld "
		       "deleted=%ld octets=%" PRIu64 " delivered=%ld dlv_errors=%ld seconds=%.3f "
		       "sessions_per_s=%.1f msgs_per_s=%.1f p50_ms=%.2f p99_ms=%.2f "
		       "dlv_p99_ms=%.2f\n",
		       opt.clients, st.done, st.errors, st.messages, st.deleted, st.octets,
		       st_dlv.done, st_dlv.errors, el, (double)st.done / el,
		       (double)st.messages / el, quantile(&st, 0.5), quantile(&st, 0.99),
		       quantile(&st_dlv, 0.99));
		break;
	case MODE_LIMITS:
		break;
	}
	return 0;
}
