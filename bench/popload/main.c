/* popload: options, the modes, and the RESULT line. See popload.h. */
#include "popload.h"

#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <unistd.h>

const char *const mode_names[] = {"login", "retr", "stat100k", "idle",
                                  "lmtp",  "smtp", "mixed",    "limits"};

struct opts opt = {
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

/* ---- modes ---- */

/* login, retr, stat100k: `clients` slots each running sessions back to back. */
static void run_sessions(void)
{
	int n = opt.clients;
	for (int i = 0; i < n && pop3_may_start(); i++)
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
	if (conn_watch_stdin() < 0)
		fprintf(stderr, "popload: stdin not pollable: holding for --hold %gs\n",
		        opt.hold_s);
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
	for (int i = 0; i < opt.clients && pop3_may_start(); i++)
		pop3_start_session(i);
	run_loop(mixed_tick);
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
	    {"host", required_argument, NULL, 'H'},
	    {"port", required_argument, NULL, 'p'},
	    {"tls", no_argument, NULL, 'T'},
	    {"users", required_argument, NULL, 'u'},
	    {"clients", required_argument, NULL, 'c'},
	    {"count", required_argument, NULL, 'n'},
	    {"time", required_argument, NULL, 't'},
	    {"rcpts", required_argument, NULL, 'r'},
	    {"size", required_argument, NULL, 's'},
	    {"lmtp-port", required_argument, NULL, 'L'},
	    {"lmtp-rate", required_argument, NULL, 'R'},
	    {"lmtp-clients", required_argument, NULL, 'C'},
	    {"hold", required_argument, NULL, 'h'},
	    {"dir", required_argument, NULL, 'd'},
	    {"verbose", no_argument, NULL, 'v'},
	    {NULL, 0, NULL, 0},
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
		case 'H':
			opt.host = optarg;
			break;
		case 'p':
			opt.port = (int)parse_long("port", optarg, 1, 65535);
			break;
		case 'T':
			opt.tls = true;
			break;
		case 'u':
			opt.users_file = optarg;
			break;
		case 'c':
			opt.clients = (int)parse_long("clients", optarg, 1, CLIENTS_MAX);
			break;
		case 'n':
			opt.count = parse_long("count", optarg, 1, COUNT_MAX);
			break;
		case 't':
			opt.time_s = parse_double("time", optarg, 0.1, TIME_MAX_S);
			break;
		case 'r':
			opt.rcpts = (int)parse_long("rcpts", optarg, 1, RCPTS_MAX);
			break;
		case 's':
			opt.size = parse_long("size", optarg, 256, MSG_SIZE_MAX);
			break;
		case 'L':
			opt.lmtp_port = (int)parse_long("lmtp-port", optarg, 1, 65535);
			break;
		case 'R':
			opt.lmtp_rate = parse_double("lmtp-rate", optarg, 0.1, 100000);
			break;
		case 'C':
			opt.lmtp_clients = (int)parse_long("lmtp-clients", optarg, 1, 1000);
			break;
		case 'h':
			opt.hold_s = parse_double("hold", optarg, 0, TIME_MAX_S);
			break;
		case 'd':
			opt.dir = optarg;
			break;
		case 'v':
			opt.verbose = true;
			break;
		default:
			usage();
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
	conn_init();

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
