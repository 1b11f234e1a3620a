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
 * The files: main.c (options, modes, results), conn.c (connections and the
 * event loop), pop3.c and deliver.c (the two protocol clients), limits.c
 * (the machine's ceilings), util.c (users, statistics, helpers). This header
 * is what they share; the tool is single-threaded, so the shared state is
 * plain globals, each defined in the file named beside it. */
#ifndef POPLOAD_H
#define POPLOAD_H

#include <netinet/in.h>
#include <openssl/ssl.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

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
#define MSGS_MAX   10000000u
#define EVENTS_MAX 512

/* ---- options (main.c) ---- */

enum mode {
	MODE_LOGIN,
	MODE_RETR,
	MODE_STAT100K,
	MODE_IDLE,
	MODE_LMTP,
	MODE_SMTP,
	MODE_MIXED,
	MODE_LIMITS
};

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

extern struct opts opt;
extern const char *const mode_names[];

/* ---- users and statistics (util.c) ---- */

struct user {
	char *address;
	char *password;
};

extern struct user *users;
extern size_t nusers;

struct stats {
	long started;         /* sessions (or messages) begun */
	long done;            /* finished successfully */
	long errors;          /* failed: bad reply, refused, reset */
	long messages;        /* messages retrieved (retr, mixed) or delivered (lmtp, smtp) */
	long deleted;         /* mixed */
	long mismatch;        /* RETR bodies whose size differs from LIST */
	uint64_t octets;      /* message octets (LIST sizes) retrieved */
	uint64_t wire_octets; /* all bytes read */
	double *lat;
	size_t nlat;
};

extern struct stats st;     /* POP3 sessions, or deliveries in lmtp/smtp */
extern struct stats st_dlv; /* deliveries (lmtp, smtp, and the LMTP side of mixed) */

double now_s(void);
void die(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));
void *xcalloc(size_t n, size_t size);
/* A number in [lo, hi], or die naming the option. */
long parse_long(const char *name, const char *s, long lo, long hi);
double parse_double(const char *name, const char *s, double lo, double hi);
/* "address password" per line; blank lines and '#' comments skipped. */
void load_users(const char *path);
void sample(struct stats *s, double v);
/* The q-quantile (0..1) by nearest rank; 0 with no samples. */
double quantile(struct stats *s, double q);

/* ---- connections (conn.c) ---- */

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
	D_WAIT, /* paced (mixed): nothing due yet */
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
	int body_state;      /* 0 mid-line, 1 at line start, 2 ".", 3 ".\r" */
	uint64_t body_bytes; /* bytes after the status line */
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

extern SSL_CTX *ssl_ctx;
extern struct sockaddr_storage target, target_lmtp;
extern socklen_t target_len, target_lmtp_len;
extern double t_begin, t_soft, t_hard;
extern bool stopping; /* no new sessions */
extern int open_conns;
extern struct conn *live; /* every open connection */

/* Fill in a loopback address for --host and port, or die. */
void make_target(int port, struct sockaddr_storage *ss, socklen_t *len);
void conn_init(void);
/* idle: stdin (a line or EOF releases the sessions) joins the loop. */
int conn_watch_stdin(void);
/* A connection being opened, or NULL when connect failed at once. */
struct conn *conn_new(enum role role, int slot, const struct sockaddr_storage *to, socklen_t tolen,
                      bool tls);
/* Close (counting an error unless ok); freed after the event batch. */
void conn_close(struct conn *c, bool ok);
/* Queue output; conn_flush writes it. Returns -1 when c was closed. */
void send_bytes(struct conn *c, const char *p, size_t n);
void send_fmt(struct conn *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
int conn_flush(struct conn *c);
/* Run until every connection is closed after the time limit, or the hard
 * deadline; tick, if given, runs before each wait. */
void run_loop(void (*tick)(void));

/* ---- POP3 client (pop3.c) ---- */

extern long idle_ready;                            /* idle: sessions logged in */
extern bool idle_release;                          /* idle: stdin said to let go */
extern bool idle_quit_sent;                        /* idle: QUIT said on every held session */
extern double ph_login, ph_stat, ph_list, ph_uidl; /* stat100k phases, ms */
extern long ph_listed, ph_count;

bool pop3_may_start(void);
void pop3_start_session(int slot);
void pop3_session_end(struct conn *c, bool ok);
void pop3_quit(struct conn *c);
/* One reply line (without CRLF) outside a multi-line body. */
void pop3_reply(struct conn *c, const char *line, size_t len);
/* Multi-line bodies: fast scan (RETR) or line by line (LIST, UIDL). They
 * return the bytes used; pop3_body_lines returns -1 when c was closed. */
size_t pop3_body_scan(struct conn *c, const char *p, size_t n);
long pop3_body_lines(struct conn *c, const char *p, size_t n);
void pop3_body_done(struct conn *c);

/* ---- LMTP/SMTP client (deliver.c) ---- */

extern long dlv_started; /* mixed: messages started, for pacing */

void build_message(long size);
void dlv_start_conn(int slot);
void dlv_next(struct conn *c);
void dlv_reply(struct conn *c, const char *line, size_t len);

/* ---- the machine's ceilings (limits.c) ---- */

double limit_tcp(double seconds);
double limit_memcpy(double seconds);
double limit_crypt(double seconds);
double limit_fsync(const char *dir, double seconds);

#endif
