/* `pillar who`, `pillar kick`, `pillar reload`, `pillar stop`: requests to
 * the running server over <state_dir>/control.sock. The socket is root's
 * (mode 0600): these commands are for the administrator. */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <sysexits.h>
#include <time.h>
#include <unistd.h>

#include "cli/cli.h"
#include "core/config.h"
#include "core/util.h"

/* The server answers within its own 3 s worker timeout; allow for more. */
#define CONTROL_CLIENT_TIMEOUT_S 10

static const char who_help[] =
    "usage: pillar who [--json] [-c FILE]\n"
    "\n"
    "List the open sessions of the running server: session id, protocol, user\n"
    "(empty before login), client address, TLS, start time, octets in and out.\n";

static const char kick_help[] =
    "usage: pillar kick ADDRESS|SESSION [-c FILE]\n"
    "\n"
    "End every session of a mailbox, or one session by its id, as if the client\n"
    "had dropped the connection: a POP3 session applies no deletions.\n";

static const char reload_help[] =
    "usage: pillar reload [-c FILE]\n"
    "\n"
    "Re-read the config file and TLS certificates. Open sessions continue; new\n"
    "connections use the new settings. A config with errors is refused with its\n"
    "errors and the running one stays.\n";

static const char stop_help[] =
    "usage: pillar stop [--grace TIME] [-c FILE]\n"
    "\n"
    "Stop the server: no new connections, sessions are told and closed, nothing\n"
    "half-applied. Sessions still busy after TIME (default 10s) are cut off.\n";

char *cli_control_request(const struct config *cfg, const char *req, int *status_r)
{
	struct sockaddr_un sun = {.sun_family = AF_UNIX};
	char *path = xasprintf("%s/control.sock", cfg->state_dir);

	if (strlen(path) >= sizeof(sun.sun_path)) {
		cli_err("%s: path too long for a unix socket", path);
		free(path);
		*status_r = EX_CONFIG;
		return NULL;
	}
	strcpy(sun.sun_path, path);
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0 || connect(fd, (struct sockaddr *)&sun, sizeof(sun)) < 0) {
		if (errno == ENOENT || errno == ECONNREFUSED)
			cli_err("the server is not running (no %s)", path);
		else
			cli_err("%s: %s", path, strerror(errno));
		if (fd >= 0)
			close(fd);
		free(path);
		*status_r = errno == EACCES ? EX_NOPERM : EX_UNAVAILABLE;
		return NULL;
	}
	free(path);
	struct timeval tv = {CONTROL_CLIENT_TIMEOUT_S, 0};
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
	if (send(fd, req, strlen(req), MSG_NOSIGNAL) != (ssize_t)strlen(req)) {
		cli_err("cannot talk to the server: %s", strerror(errno));
		close(fd);
		*status_r = EX_UNAVAILABLE;
		return NULL;
	}
	size_t len = 0, cap = 4096;
	char *buf = xmalloc(cap);
	for (;;) {
		if (cap - len < 2048) {
			cap *= 2;
			buf = realloc(buf, cap);
			if (buf == NULL)
				abort();
		}
		ssize_t got = recv(fd, buf + len, cap - len - 1, 0);
		if (got < 0) {
			cli_err("no answer from the server: %s", strerror(errno));
			free(buf);
			close(fd);
			*status_r = EX_UNAVAILABLE;
			return NULL;
		}
		if (got == 0)
			break;
		len += (size_t)got;
	}
	close(fd);
	buf[len] = '\0';
	return buf;
}

/* The last line says "ok" or "error ..."; print the errors. Returns 0 or 1. */
static int outcome(const char *answer)
{
	int status = 0;
	bool seen = false;
	for (const char *l = answer; *l != '\0';) {
		const char *nl = strchr(l, '\n');
		size_t n = nl != NULL ? (size_t)(nl - l) : strlen(l);
		if (n >= 6 && strncmp(l, "error ", 6) == 0) {
			cli_err("%.*s", (int)(n - 6), l + 6);
			status = 1;
			seen = true;
		} else if (n == 2 && strncmp(l, "ok", 2) == 0) {
			seen = true;
		}
		l += n + (nl != NULL);
	}
	if (!seen) {
		cli_err("the server closed the connection without an answer");
		return 1;
	}
	return status;
}

/* Sessions ended, summed over the workers' "kicked\tN" lines. */
static unsigned kicked_total(const char *answer)
{
	unsigned total = 0;

	for (const char *p = answer; (p = strstr(p, "kicked\t")) != NULL; p += 7)
		total += (unsigned)strtoul(p + 7, NULL, 10);
	return total;
}

/* A kick target goes into a one-line request: no blanks, bounded. */
static bool kick_target_ok(const char *target)
{
	return target[0] != '\0' && strlen(target) <= 320 && strpbrk(target, " \t\r\n") == NULL;
}

int cli_control_kick(const struct config *cfg, const char *target, unsigned *ended_r)
{
	char req[400];
	int status = 0;

	*ended_r = 0;
	if (!kick_target_ok(target)) {
		cli_err("bad ADDRESS or SESSION '%s'", target);
		return EX_DATAERR;
	}
	snprintf(req, sizeof(req), "kick %s\n", target);
	char *answer = cli_control_request(cfg, req, &status);
	if (answer == NULL)
		return status;
	status = outcome(answer);
	if (status == 0)
		*ended_r = kicked_total(answer);
	free(answer);
	return status;
}

struct opts {
	const char *conf;
	const char *grace;
	bool json;
};

/* Parse -c, --json (who) and --grace (stop). Returns -1 after --help,
 * an exit code on error, else 0 with argv[optind..] the operands. */
static int parse(int argc, char **argv, const char *help, struct opts *o)
{
	static const struct option opts[] = {
	    {"config", required_argument, NULL, 'c'},
	    {"json", no_argument, NULL, 'j'},
	    {"grace", required_argument, NULL, 'g'},
	    {"help", no_argument, NULL, 'h'},
	    {NULL, 0, NULL, 0},
	};
	int c;

	optind = 0;
	opterr = 0;
	while ((c = getopt_long(argc, argv, ":c:h", opts, NULL)) != -1) {
		switch (c) {
		case 'c':
			o->conf = optarg;
			break;
		case 'j':
			if (strcmp(argv[0], "who") != 0)
				return cli_usage_err(argv[0], "--json is for pillar who");
			o->json = true;
			break;
		case 'g':
			if (strcmp(argv[0], "stop") != 0)
				return cli_usage_err(argv[0], "--grace is for pillar stop");
			o->grace = optarg;
			break;
		case 'h':
			fputs(help, stdout);
			return -1;
		case ':':
			return cli_usage_err(argv[0], "option %s needs a value", argv[optind - 1]);
		default:
			return cli_usage_err(argv[0], "unknown option %s", argv[optind - 1]);
		}
	}
	return 0;
}

static void print_who(const char *answer, bool json)
{
	bool first = true;
	if (json)
		printf("[");
	else
		printf("%-12s %-5s %-30s %-20s %-8s %-20s %10s %10s\n", "SESSION", "PROTO", "USER",
		       "ADDRESS", "TLS", "SINCE", "IN", "OUT");
	for (const char *l = answer; *l != '\0';) {
		const char *nl = strchr(l, '\n');
		size_t n = nl != NULL ? (size_t)(nl - l) : strlen(l);
		char line[1024];
		char *f[8];
		unsigned nf = 0;
		snprintf(line, sizeof(line), "%.*s", (int)n, l);
		l += n + (nl != NULL);
		for (char *p = line, *tab; nf < 8; p = tab + 1) {
			f[nf++] = p;
			tab = strchr(p, '\t');
			if (tab == NULL)
				break;
			*tab = '\0';
		}
		if (nf != 8)
			continue; /* "ok" and the like */
		time_t since = (time_t)strtoll(f[5], NULL, 10);
		char when[32];
		struct tm tm;
		localtime_r(&since, &tm);
		strftime(when, sizeof(when), "%Y-%m-%d %H:%M:%S", &tm);
		if (json) {
			printf("%s\n  {\"session\": ", first ? "" : ",");
			cli_json_string(stdout, f[0]);
			printf(", \"protocol\": ");
			cli_json_string(stdout, f[1]);
			printf(", \"user\": ");
			cli_json_string(stdout, f[2]);
			printf(", \"address\": ");
			cli_json_string(stdout, f[3]);
			printf(", \"tls\": ");
			cli_json_string(stdout, f[4]);
			printf(", \"since\": %s, \"bytes_in\": %s, \"bytes_out\": %s}", f[5], f[6],
			       f[7]);
		} else {
			/* The TLS column shows the version only; --json has it all. */
			char tls[16];
			snprintf(tls, sizeof(tls), "%s", f[4][0] != '\0' ? f[4] : "-");
			char *sp = strchr(tls, ' ');
			if (sp != NULL)
				*sp = '\0';
			printf("%-12s %-5s %-30s %-20s %-8s %-20s %10s %10s\n", f[0], f[1],
			       f[2][0] != '\0' ? f[2] : "-", f[3], tls, when, f[6], f[7]);
		}
		first = false;
	}
	if (json)
		printf("%s]\n", first ? "" : "\n");
}

static int run(int argc, char **argv, const char *help, unsigned operands)
{
	struct opts o = {0};
	struct config *cfg;
	int status = parse(argc, argv, help, &o);

	if (status != 0)
		return status < 0 ? 0 : status;
	if ((unsigned)(argc - optind) != operands)
		return cli_usage_err(
		    argv[0], operands ? "%s takes one ADDRESS or SESSION" : "%s takes no arguments",
		    argv[0]);
	char req[600];
	if (strcmp(argv[0], "kick") == 0) {
		const char *target = argv[optind];
		if (!kick_target_ok(target)) {
			cli_err("bad ADDRESS or SESSION '%s'", target);
			return EX_DATAERR;
		}
		snprintf(req, sizeof(req), "kick %s\n", target);
	} else if (strcmp(argv[0], "stop") == 0) {
		uint64_t grace = 10000;
		if (o.grace != NULL && parse_duration_ms(o.grace, &grace) < 0) {
			cli_err("bad --grace '%s': use a time like 30s or 2m", o.grace);
			return EX_USAGE;
		}
		snprintf(req, sizeof(req), "stop %" PRIu64 "\n", grace);
	} else {
		snprintf(req, sizeof(req), "%s\n", argv[0]);
	}
	status = cli_load_config(o.conf, &cfg);
	if (status != 0)
		return status;
	char *answer = cli_control_request(cfg, req, &status);
	config_free(&cfg);
	if (answer == NULL)
		return status;
	status = outcome(answer);
	if (status == 0) {
		if (strcmp(argv[0], "who") == 0) {
			print_who(answer, o.json);
		} else if (strcmp(argv[0], "kick") == 0) {
			unsigned total = kicked_total(answer);
			printf("%u session%s ended\n", total, total == 1 ? "" : "s");
			if (total == 0)
				status = EX_NOUSER;
		} else if (strcmp(argv[0], "reload") == 0) {
			printf("reloaded\n");
		} else {
			printf("stopping\n");
		}
	}
	free(answer);
	return status;
}

int cli_who(int argc, char **argv)
{
	return run(argc, argv, who_help, 0);
}

int cli_kick(int argc, char **argv)
{
	return run(argc, argv, kick_help, 1);
}

int cli_reload(int argc, char **argv)
{
	return run(argc, argv, reload_help, 0);
}

int cli_stop(int argc, char **argv)
{
	return run(argc, argv, stop_help, 0);
}

/* ---- kicking from a command that dropped to run_as ---- */

/* The control socket is root's, but a command that changes mailboxes runs
 * as run_as (cli_admin_open). So when it may need to end sessions, it forks
 * this helper before dropping privileges: a root process that does nothing
 * but turn "ADDRESS\n" lines from its parent into kick requests and answer
 * "STATUS ENDED\n". It touches no file and exits when its parent closes
 * the pipe (or dies). Without root the command kicks by itself. */
struct cli_kicker {
	const struct config *cfg;
	pid_t pid; /* the helper, 0 when there is none */
	int fd;    /* to the helper, -1 when there is none */
};

/* Read one line of at most size-1 bytes, without its '\n'. -1 on EOF or
 * error or an overlong line. */
static int read_line(int fd, char *buf, size_t size)
{
	size_t n = 0;

	for (;;) {
		char c;
		ssize_t got = read(fd, &c, 1);

		if (got < 0 && errno == EINTR)
			continue;
		if (got <= 0)
			return -1;
		if (c == '\n')
			break;
		if (n + 1 >= size)
			return -1;
		buf[n++] = c;
	}
	buf[n] = '\0';
	return 0;
}

static void write_all(int fd, const char *s)
{
	size_t n = strlen(s);

	while (n > 0) {
		ssize_t w = write(fd, s, n);

		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0)
			return;
		s += w;
		n -= (size_t)w;
	}
}

static _Noreturn void kicker_helper(const struct config *cfg, int fd)
{
	char target[400], answer[64];

	while (read_line(fd, target, sizeof(target)) == 0) {
		unsigned ended = 0;
		int status = cli_control_kick(cfg, target, &ended);

		snprintf(answer, sizeof(answer), "%d %u\n", status, ended);
		write_all(fd, answer);
	}
	fflush(stderr);
	_exit(0);
}

struct cli_kicker *cli_kicker_new(const struct config *cfg)
{
	struct cli_kicker *k = xcalloc(1, sizeof(*k));
	int sv[2];

	k->cfg = cfg;
	k->fd = -1;
	if (geteuid() != 0)
		return k;
	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0) {
		cli_err("cannot start the kick helper: %s", strerror(errno));
		free(k);
		return NULL;
	}
	fflush(stdout);
	fflush(stderr);
	k->pid = fork();
	if (k->pid < 0) {
		cli_err("cannot start the kick helper: %s", strerror(errno));
		close(sv[0]);
		close(sv[1]);
		free(k);
		return NULL;
	}
	if (k->pid == 0) {
		close(sv[0]);
		kicker_helper(cfg, sv[1]);
	}
	close(sv[1]);
	k->fd = sv[0];
	return k;
}

int cli_kicker_kick(struct cli_kicker *k, const char *address, unsigned *ended_r)
{
	char answer[64];
	int status;

	*ended_r = 0;
	if (k->pid == 0)
		return cli_control_kick(k->cfg, address, ended_r);
	if (!kick_target_ok(address)) {
		cli_err("bad ADDRESS '%s'", address);
		return EX_DATAERR;
	}
	char *req = xasprintf("%s\n", address);
	write_all(k->fd, req);
	free(req);
	if (read_line(k->fd, answer, sizeof(answer)) < 0 ||
	    sscanf(answer, "%d %u", &status, ended_r) != 2) {
		cli_err("the kick helper did not answer");
		return EX_SOFTWARE;
	}
	return status;
}

void cli_kicker_free(struct cli_kicker **kp)
{
	struct cli_kicker *k = *kp;

	if (k == NULL)
		return;
	if (k->fd >= 0)
		close(k->fd);
	if (k->pid > 0) {
		while (waitpid(k->pid, NULL, 0) < 0 && errno == EINTR)
			;
	}
	free(k);
	*kp = NULL;
}
