/* The configuration file. See config.h and DESIGN §2.
 *
 * The parser is a key table: each key names the function that checks and
 * stores its value and whether it may repeat. Every line is checked even after
 * an error, so `pillar check` shows all the problems at once. */
#include "core/config.h"

#include "core/util.h"

#include <arpa/inet.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/un.h>
#include <unistd.h>

/* A config line longer than this is an error rather than a reason to grow a
 * buffer without bound; no sensible value comes close. */
#define CONFIG_LINE_MAX 4096
/* More problems than this in one file means it is not a config file at all. */
#define CONFIG_MAX_ERRORS 100

/* Bounds for numeric keys: wide enough for any real installation, narrow
 * enough to catch a missing or extra unit. */
#define MIN_MESSAGE_SIZE           1024ull
#define MAX_MESSAGE_SIZE           (2ull * 1024 * 1024 * 1024)
#define MAX_IDLE_TIMEOUT_MS        (24ull * 60 * 60 * 1000)
#define MIN_LOGIN_TIMEOUT_MS       1000ull
#define MAX_LOGIN_TIMEOUT_MS       (60ull * 60 * 1000)
#define MAX_AUTH_FAILURE_DELAY_MS  (60ull * 1000)
#define MAX_CONNECTIONS_PER_IP_MAX 65535u
#define MAX_WORKERS                256u

void strlist_add(struct strlist *list, const char *s)
{
	char **items = realloc(list->items, (list->count + 1) * sizeof(*items));

	if (items == NULL) {
		fputs("pillar: out of memory\n", stderr);
		abort();
	}
	list->items = items;
	list->items[list->count++] = xstrdup(s);
}

void strlist_free(struct strlist *list)
{
	for (size_t i = 0; i < list->count; i++)
		free(list->items[i]);
	free(list->items);
	list->items = NULL;
	list->count = 0;
}

/* ---- value checks: each returns 0, or -1 with a reason in why[] ---- */

#define WHY_MAX CONFIG_WHY_MAX

static int fail(char *why, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int fail(char *why, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(why, WHY_MAX, fmt, ap);
	va_end(ap);
	return -1;
}

static bool is_space(char c)
{
	return c == ' ' || c == '\t' || c == '\r' || c == '\n' || c == '\v' || c == '\f';
}

static int check_abs_path(const char *v, char *why)
{
	if (v[0] != '/')
		return fail(why, "must be an absolute path");
	return 0;
}

/* A directory: absolute, kept without trailing slashes. A name that would
 * then end in white space could not be written back to this file. */
static int set_dir(char **dst, const char *v, char *why)
{
	size_t len = strlen(v);

	if (check_abs_path(v, why) < 0)
		return -1;
	while (len > 1 && v[len - 1] == '/')
		len--;
	if (is_space(v[len - 1]))
		return fail(why, "must not end in white space");
	free(*dst);
	*dst = xasprintf("%.*s", (int)len, v);
	return 0;
}

static int check_port(const char *s, char *why)
{
	uint64_t port;

	if (parse_uint(s, strlen(s), 65535, &port) < 0 || port == 0)
		return fail(why, "port must be a number from 1 to 65535");
	return 0;
}

/* ADDR:PORT where ADDR is an IPv4 address, [IPv6] or *; or unix:/abs/path. */
int config_check_listen(const char *v, char *why)
{
	char addr[INET6_ADDRSTRLEN + 1];
	unsigned char bin[sizeof(struct in6_addr)];
	const char *colon;
	size_t alen;

	if (strncmp(v, "unix:", 5) == 0) {
		const char *path = v + 5;

		if (path[0] != '/')
			return fail(why, "unix socket path must be absolute");
		if (strlen(path) >= sizeof(((struct sockaddr_un *)0)->sun_path))
			return fail(why, "unix socket path is too long");
		return 0;
	}
	if (v[0] == '[') {
		const char *close = strchr(v, ']');

		if (close == NULL || close[1] != ':')
			return fail(why, "expected [IPv6]:PORT");
		alen = (size_t)(close - v - 1);
		if (alen == 0 || alen >= sizeof(addr))
			return fail(why, "bad IPv6 address");
		memcpy(addr, v + 1, alen);
		addr[alen] = '\0';
		if (inet_pton(AF_INET6, addr, bin) != 1)
			return fail(why, "bad IPv6 address '%s'", addr);
		return check_port(close + 2, why);
	}
	colon = strrchr(v, ':');
	if (colon == NULL)
		return fail(why, "expected ADDR:PORT, [IPv6]:PORT, *:PORT or unix:/PATH");
	alen = (size_t)(colon - v);
	if (alen == 0 || alen >= sizeof(addr))
		return fail(why, "expected ADDR:PORT, [IPv6]:PORT, *:PORT or unix:/PATH");
	memcpy(addr, v, alen);
	addr[alen] = '\0';
	if (strchr(addr, ':') != NULL)
		return fail(why, "an IPv6 address must be written in brackets: [ADDR]:PORT");
	if (strcmp(addr, "*") != 0 && inet_pton(AF_INET, addr, bin) != 1)
		return fail(why, "'%s' is not an IPv4 address (use an address, [IPv6] or *)", addr);
	return check_port(colon + 1, why);
}

/* ADDR or ADDR/PREFIX, IPv4 or IPv6, with no bits set past the prefix. */
int config_check_cidr(const char *v, char *why)
{
	char addr[INET6_ADDRSTRLEN + 1];
	unsigned char bin[sizeof(struct in6_addr)];
	const char *slash = strchr(v, '/');
	size_t alen = slash != NULL ? (size_t)(slash - v) : strlen(v);
	unsigned bits;
	uint64_t prefix;

	if (alen == 0 || alen >= sizeof(addr))
		return fail(why, "expected ADDR or ADDR/PREFIX");
	memcpy(addr, v, alen);
	addr[alen] = '\0';
	if (inet_pton(AF_INET, addr, bin) == 1)
		bits = 32;
	else if (inet_pton(AF_INET6, addr, bin) == 1)
		bits = 128;
	else
		return fail(why, "'%s' is not an IP address", addr);
	if (slash == NULL)
		return 0;
	if (parse_uint(slash + 1, strlen(slash + 1), bits, &prefix) < 0)
		return fail(why, "prefix length must be 0 to %u", bits);
	for (unsigned b = (unsigned)prefix; b < bits; b++) {
		if (bin[b / 8] & (0x80u >> (b % 8)))
			return fail(why, "address has bits set past the /%u prefix",
			            (unsigned)prefix);
	}
	return 0;
}

/* ---- key setters ---- */

typedef int (*setter_fn)(struct config *cfg, const char *v, char *why);

static int set_str(char **dst, const char *v)
{
	free(*dst);
	*dst = xstrdup(v);
	return 0;
}

static int set_state_dir(struct config *cfg, const char *v, char *why)
{
	return set_dir(&cfg->state_dir, v, why);
}

static int set_mail_root(struct config *cfg, const char *v, char *why)
{
	return set_dir(&cfg->mail_root, v, why);
}

static int set_directory(struct config *cfg, const char *v, char *why)
{
	if (strcmp(v, "sqlite") != 0 && strncmp(v, "postgresql://", 13) != 0 &&
	    strncmp(v, "postgres://", 11) != 0)
		return fail(why, "must be 'sqlite' or a postgresql:// URL");
	return set_str(&cfg->directory, v);
}

static int set_mail_directory(struct config *cfg, const char *v, char *why)
{
	if (strncmp(v, "postgresql://", 13) != 0 && strncmp(v, "postgres://", 11) != 0)
		return fail(why, "must be a postgresql:// URL");
	return set_str(&cfg->mail_directory, v);
}

static int set_hostname(struct config *cfg, const char *v, char *why)
{
	/* It goes into greetings, Received: headers and Maildir file names:
	 * keep it to the characters a host name may have. */
	if (strlen(v) > 253)
		return fail(why, "longer than 253 characters");
	for (const char *p = v; *p != '\0'; p++) {
		if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') ||
		      (*p >= '0' && *p <= '9') || *p == '-' || *p == '.'))
			return fail(why, "may contain only letters, digits, '-' and '.'");
	}
	return set_str(&cfg->hostname, v);
}

static int check_user_name(const char *v, char *why)
{
	if (strlen(v) > 32)
		return fail(why, "user name longer than 32 characters");
	for (const char *p = v; *p != '\0'; p++) {
		if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') ||
		      (*p >= '0' && *p <= '9') || *p == '-' || *p == '_' || *p == '.'))
			return fail(why, "not a valid user name");
	}
	return 0;
}

static int set_run_as(struct config *cfg, const char *v, char *why)
{
	return check_user_name(v, why) < 0 ? -1 : set_str(&cfg->run_as, v);
}

static int set_login_as(struct config *cfg, const char *v, char *why)
{
	return check_user_name(v, why) < 0 ? -1 : set_str(&cfg->login_as, v);
}

static int set_auth_as(struct config *cfg, const char *v, char *why)
{
	return check_user_name(v, why) < 0 ? -1 : set_str(&cfg->auth_as, v);
}

#define LISTEN_SETTER(field)                                                                       \
	static int set_##field(struct config *cfg, const char *v, char *why)                       \
	{                                                                                          \
		if (config_check_listen(v, why) < 0)                                               \
			return -1;                                                                 \
		strlist_add(&cfg->field, v);                                                       \
		return 0;                                                                          \
	}
LISTEN_SETTER(pop3_listen)
LISTEN_SETTER(pop3s_listen)
LISTEN_SETTER(smtp_listen)
LISTEN_SETTER(lmtp_listen)

static int set_tls_cert(struct config *cfg, const char *v, char *why)
{
	if (check_abs_path(v, why) < 0)
		return -1;
	strlist_add(&cfg->tls_cert, v);
	return 0;
}

static int set_tls_key(struct config *cfg, const char *v, char *why)
{
	if (check_abs_path(v, why) < 0)
		return -1;
	strlist_add(&cfg->tls_key, v);
	return 0;
}

static int set_plaintext_auth(struct config *cfg, const char *v, char *why)
{
	if (strcmp(v, "tls") == 0)
		cfg->plaintext_auth = PLAINTEXT_AUTH_TLS;
	else if (strcmp(v, "always") == 0)
		cfg->plaintext_auth = PLAINTEXT_AUTH_ALWAYS;
	else if (strcmp(v, "never") == 0)
		cfg->plaintext_auth = PLAINTEXT_AUTH_NEVER;
	else
		return fail(why, "must be tls, always or never");
	return 0;
}

static int set_apop(struct config *cfg, const char *v, char *why)
{
	if (strcmp(v, "yes") == 0)
		cfg->apop = true;
	else if (strcmp(v, "no") == 0)
		cfg->apop = false;
	else
		return fail(why, "must be yes or no");
	return 0;
}

static int set_max_message_size(struct config *cfg, const char *v, char *why)
{
	uint64_t n;

	if (parse_size(v, &n) < 0)
		return fail(why, "not a size (a number with an optional K, M or G)");
	if (n < MIN_MESSAGE_SIZE || n > MAX_MESSAGE_SIZE)
		return fail(why, "must be from 1K to 2G");
	cfg->max_message_size = n;
	return 0;
}

static int parse_time(const char *v, uint64_t *n, char *why)
{
	if (parse_duration_ms(v, n) < 0)
		return fail(why, "not a time (a number with ms, s, m or h)");
	return 0;
}

static int set_pop3_idle_timeout(struct config *cfg, const char *v, char *why)
{
	uint64_t n;

	if (parse_time(v, &n, why) < 0)
		return -1;
	if (n < POP3_MIN_IDLE_TIMEOUT_MS)
		return fail(why, "must be at least 10m (RFC 1939 section 3: the autologout "
		                 "timer must be at least 10 minutes)");
	if (n > MAX_IDLE_TIMEOUT_MS)
		return fail(why, "must be at most 24h");
	cfg->pop3_idle_timeout = n;
	return 0;
}

static int set_login_timeout(struct config *cfg, const char *v, char *why)
{
	uint64_t n;

	if (parse_time(v, &n, why) < 0)
		return -1;
	if (n < MIN_LOGIN_TIMEOUT_MS || n > MAX_LOGIN_TIMEOUT_MS)
		return fail(why, "must be from 1s to 1h");
	cfg->login_timeout = n;
	return 0;
}

static int set_smtp_first_mail_timeout(struct config *cfg, const char *v, char *why)
{
	uint64_t n;

	if (parse_time(v, &n, why) < 0)
		return -1;
	if (n < MIN_LOGIN_TIMEOUT_MS || n > MAX_LOGIN_TIMEOUT_MS)
		return fail(why, "must be from 1s to 1h");
	cfg->smtp_first_mail_timeout = n;
	return 0;
}

static int set_auth_failure_delay(struct config *cfg, const char *v, char *why)
{
	uint64_t n;

	if (parse_time(v, &n, why) < 0)
		return -1;
	if (n > MAX_AUTH_FAILURE_DELAY_MS)
		return fail(why, "must be at most 60s");
	cfg->auth_failure_delay = n;
	return 0;
}

static int set_max_connections_per_ip(struct config *cfg, const char *v, char *why)
{
	uint64_t n;

	if (parse_uint(v, strlen(v), MAX_CONNECTIONS_PER_IP_MAX, &n) < 0 || n == 0)
		return fail(why, "must be a number from 1 to %u", MAX_CONNECTIONS_PER_IP_MAX);
	cfg->max_connections_per_ip = (unsigned)n;
	return 0;
}

static int set_trusted_proxies(struct config *cfg, const char *v, char *why)
{
	if (config_check_cidr(v, why) < 0)
		return -1;
	strlist_add(&cfg->trusted_proxies, v);
	return 0;
}

static int set_workers(struct config *cfg, const char *v, char *why)
{
	uint64_t n;

	if (parse_uint(v, strlen(v), MAX_WORKERS, &n) < 0 || n == 0)
		return fail(why, "must be a number from 1 to %u", MAX_WORKERS);
	cfg->workers = (unsigned)n;
	return 0;
}

struct config_key {
	const char *name;
	setter_fn set;
	bool list; /* may repeat */
};

static const struct config_key keys[] = {
    {"state_dir", set_state_dir, false},
    {"mail_root", set_mail_root, false},
    {"directory", set_directory, false},
    {"mail_directory", set_mail_directory, false},
    {"hostname", set_hostname, false},
    {"run_as", set_run_as, false},
    {"login_as", set_login_as, false},
    {"auth_as", set_auth_as, false},
    {"pop3_listen", set_pop3_listen, true},
    {"pop3s_listen", set_pop3s_listen, true},
    {"smtp_listen", set_smtp_listen, true},
    {"lmtp_listen", set_lmtp_listen, true},
    {"tls_cert", set_tls_cert, true},
    {"tls_key", set_tls_key, true},
    {"plaintext_auth", set_plaintext_auth, false},
    {"apop", set_apop, false},
    {"max_message_size", set_max_message_size, false},
    {"pop3_idle_timeout", set_pop3_idle_timeout, false},
    {"login_timeout", set_login_timeout, false},
    {"smtp_first_mail_timeout", set_smtp_first_mail_timeout, false},
    {"auth_failure_delay", set_auth_failure_delay, false},
    {"max_connections_per_ip", set_max_connections_per_ip, false},
    {"trusted_proxies", set_trusted_proxies, true},
    {"workers", set_workers, false},
};
#define NKEYS (sizeof(keys) / sizeof(keys[0]))

/* ---- the file ---- */

struct parse_state {
	const char *path;
	struct strlist *errors;
	unsigned first_line[NKEYS]; /* line where each key was first set, 0 = not yet */
	unsigned times[NKEYS];      /* lines setting each key, valid or not */
	size_t nerrors;
};

static void add_error(struct parse_state *ps, unsigned line, const char *key, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static void add_error(struct parse_state *ps, unsigned line, const char *key, const char *fmt, ...)
{
	char msg[512];
	char loc[32] = "";
	va_list ap;

	ps->nerrors++;
	if (ps->nerrors > CONFIG_MAX_ERRORS)
		return;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	if (line > 0)
		snprintf(loc, sizeof(loc), ":%u", line);
	if (ps->nerrors == CONFIG_MAX_ERRORS) {
		char *s = xasprintf("%s%s: too many errors, giving up", ps->path, loc);
		strlist_add(ps->errors, s);
		free(s);
		return;
	}
	char *s = key != NULL ? xasprintf("%s%s: %s: %s", ps->path, loc, key, msg)
	                      : xasprintf("%s%s: %s", ps->path, loc, msg);
	strlist_add(ps->errors, s);
	free(s);
}

/* Trim in place; returns the start of the trimmed string. */
static char *trim(char *s)
{
	size_t len;

	while (is_space(*s))
		s++;
	len = strlen(s);
	while (len > 0 && is_space(s[len - 1]))
		s[--len] = '\0';
	return s;
}

static void parse_line(struct parse_state *ps, struct config *cfg, char *line, unsigned lineno)
{
	char *eq, *key, *value, *hash;
	char why[WHY_MAX];
	size_t k;

	/* '#' starts a comment at the start of a line or after white space, so
	 * a '#' inside a value (a URL fragment, say) stays part of it. */
	for (hash = line; (hash = strchr(hash, '#')) != NULL; hash++) {
		if (hash == line || is_space(hash[-1])) {
			*hash = '\0';
			break;
		}
	}
	line = trim(line);
	if (*line == '\0')
		return;
	for (const char *p = line; *p != '\0'; p++) {
		if ((unsigned char)*p < 0x20 && *p != '\t') {
			add_error(ps, lineno, NULL, "control character in line");
			return;
		}
	}

	eq = strchr(line, '=');
	if (eq == NULL) {
		add_error(ps, lineno, NULL, "expected 'key = value', found no '='");
		return;
	}
	*eq = '\0';
	key = trim(line);
	value = trim(eq + 1);
	if (*key == '\0') {
		add_error(ps, lineno, NULL, "missing key before '='");
		return;
	}
	for (k = 0; k < NKEYS; k++) {
		if (strcmp(keys[k].name, key) == 0)
			break;
	}
	if (k == NKEYS) {
		add_error(ps, lineno, key, "unknown key");
		return;
	}
	if (!keys[k].list && ps->first_line[k] != 0) {
		add_error(ps, lineno, key, "set more than once (first on line %u)",
		          ps->first_line[k]);
		return;
	}
	if (ps->first_line[k] == 0)
		ps->first_line[k] = lineno;
	ps->times[k]++;
	if (*value == '\0') {
		add_error(ps, lineno, key, "missing value");
		return;
	}
	if (keys[k].set(cfg, value, why) < 0)
		add_error(ps, lineno, key, "%s", why);
}

static unsigned online_cpus(void)
{
	long n = sysconf(_SC_NPROCESSORS_ONLN);

	if (n < 1)
		return 1;
	if (n > (long)MAX_WORKERS)
		return MAX_WORKERS;
	return (unsigned)n;
}

static void set_defaults(struct config *cfg)
{
	cfg->directory = xstrdup("sqlite");
	cfg->run_as = xstrdup("pillar");
	cfg->login_as = xstrdup("pillar-login");
	cfg->auth_as = xstrdup("pillar-auth");
	cfg->plaintext_auth = PLAINTEXT_AUTH_TLS;
	cfg->max_message_size = 50ull * 1024 * 1024;
	cfg->pop3_idle_timeout = POP3_MIN_IDLE_TIMEOUT_MS;
	cfg->login_timeout = 60ull * 1000;
	cfg->smtp_first_mail_timeout = 60ull * 1000;
	cfg->auth_failure_delay = 2ull * 1000;
	cfg->max_connections_per_ip = 20;
	cfg->workers = online_cpus();
}

/* Whether the file set `name` at all, valid or not: checks that involve
 * several keys skip a key whose own line was already reported. */
static bool key_seen(const struct parse_state *ps, const char *name)
{
	for (size_t k = 0; k < NKEYS; k++) {
		if (strcmp(keys[k].name, name) == 0)
			return ps->first_line[k] != 0;
	}
	return false;
}

static unsigned key_times(const struct parse_state *ps, const char *name)
{
	for (size_t k = 0; k < NKEYS; k++) {
		if (strcmp(keys[k].name, name) == 0)
			return ps->times[k];
	}
	return 0;
}

static void finish(struct parse_state *ps, struct config *cfg)
{
	bool cert = key_seen(ps, "tls_cert"), key = key_seen(ps, "tls_key");

	if (cfg->state_dir == NULL && !key_seen(ps, "state_dir"))
		add_error(ps, 0, "state_dir", "required but not set");
	if (cfg->mail_root == NULL && cfg->state_dir != NULL)
		cfg->mail_root = xasprintf("%s/mail", cfg->state_dir);

	if (cert != key)
		add_error(ps, 0, cert ? "tls_key" : "tls_cert",
		          "tls_cert and tls_key must be set together");
	else if (key_times(ps, "tls_cert") != key_times(ps, "tls_key"))
		add_error(ps, 0, "tls_key", "give one tls_key per tls_cert, in the same order");
	if (cfg->pop3s_listen.count > 0 && !cert)
		add_error(ps, 0, "pop3s_listen", "needs tls_cert and tls_key");
	if (cfg->mail_directory != NULL && strcmp(cfg->directory, "sqlite") == 0)
		add_error(ps, 0, "mail_directory", "only with a postgresql:// directory");

	if (cfg->hostname == NULL) {
		char host[256];

		if (gethostname(host, sizeof(host)) < 0 || host[0] == '\0') {
			snprintf(host, sizeof(host), "localhost");
		}
		host[sizeof(host) - 1] = '\0';
		cfg->hostname = xstrdup(host);
	}
}

int config_load(const char *path, struct config **cfg_r, struct strlist *errors)
{
	struct parse_state ps = {.path = path, .errors = errors};
	struct config *cfg;
	char *buf = NULL;
	size_t cap = 0;
	ssize_t len;
	unsigned lineno = 0;
	FILE *f;

	*cfg_r = NULL;
	f = fopen(path, "re");
	if (f == NULL) {
		add_error(&ps, 0, NULL, "cannot open: %s", strerror(errno));
		return -1;
	}
	cfg = xcalloc(1, sizeof(*cfg));
	cfg->path = xstrdup(path);
	set_defaults(cfg);

	while ((len = getline(&buf, &cap, f)) >= 0) {
		lineno++;
		if ((size_t)len > CONFIG_LINE_MAX) {
			add_error(&ps, lineno, NULL, "line longer than %d bytes", CONFIG_LINE_MAX);
			continue;
		}
		if (memchr(buf, '\0', (size_t)len) != NULL) {
			add_error(&ps, lineno, NULL, "NUL byte in line");
			continue;
		}
		parse_line(&ps, cfg, buf, lineno);
	}
	if (ferror(f))
		add_error(&ps, 0, NULL, "read error: %s", strerror(errno));
	free(buf);
	fclose(f);

	finish(&ps, cfg);
	if (ps.nerrors > 0) {
		config_free(&cfg);
		return -1;
	}
	*cfg_r = cfg;
	return 0;
}

void config_free(struct config **cfgp)
{
	struct config *cfg = *cfgp;

	if (cfg == NULL)
		return;
	free(cfg->path);
	free(cfg->state_dir);
	free(cfg->mail_root);
	free(cfg->directory);
	free(cfg->hostname);
	free(cfg->run_as);
	free(cfg->login_as);
	free(cfg->auth_as);
	free(cfg->mail_directory);
	strlist_free(&cfg->pop3_listen);
	strlist_free(&cfg->pop3s_listen);
	strlist_free(&cfg->smtp_listen);
	strlist_free(&cfg->lmtp_listen);
	strlist_free(&cfg->tls_cert);
	strlist_free(&cfg->tls_key);
	strlist_free(&cfg->trusted_proxies);
	free(cfg);
	*cfgp = NULL;
}

const char *config_default_path(void)
{
	const char *env = getenv("PILLAR_CONF");

	/* An explicit $PILLAR_CONF wins even when the file is missing: the
	 * user then gets an error about the file they named, not a surprise
	 * fallback. */
	if (env != NULL && env[0] != '\0')
		return env;
	if (access("pillar.conf", F_OK) == 0)
		return "pillar.conf";
	return "/etc/pillar/pillar.conf";
}

char *config_sqlite_path(const struct config *cfg)
{
	return xasprintf("%s/directory.db", cfg->state_dir);
}

char *config_secrets_dir(const struct config *cfg)
{
	return xasprintf("%s/auth", cfg->state_dir);
}

char *config_secrets_path(const struct config *cfg)
{
	return xasprintf("%s/auth/secrets.db", cfg->state_dir);
}

static void dump_list(FILE *out, const char *key, const struct strlist *l)
{
	for (size_t i = 0; i < l->count; i++)
		fprintf(out, "%s = %s\n", key, l->items[i]);
}

/* Durations are printed in the largest unit that divides them exactly. */
static void dump_ms(FILE *out, const char *key, uint64_t ms)
{
	if (ms != 0 && ms % 3600000 == 0)
		fprintf(out, "%s = %lluh\n", key, (unsigned long long)(ms / 3600000));
	else if (ms != 0 && ms % 60000 == 0)
		fprintf(out, "%s = %llum\n", key, (unsigned long long)(ms / 60000));
	else if (ms != 0 && ms % 1000 == 0)
		fprintf(out, "%s = %llus\n", key, (unsigned long long)(ms / 1000));
	else if (ms != 0)
		fprintf(out, "%s = %llums\n", key, (unsigned long long)ms);
	else
		fprintf(out, "%s = 0\n", key);
}

static void dump_size(FILE *out, const char *key, uint64_t n)
{
	static const char units[] = "GMK";
	for (int i = 0; i < 3; i++) {
		uint64_t m = 1ull << (10 * (3 - i));
		if (n != 0 && n % m == 0) {
			fprintf(out, "%s = %llu%c\n", key, (unsigned long long)(n / m), units[i]);
			return;
		}
	}
	fprintf(out, "%s = %llu\n", key, (unsigned long long)n);
}

void config_dump(const struct config *cfg, FILE *out)
{
	static const char *const pa[] = {
	    [PLAINTEXT_AUTH_TLS] = "tls",
	    [PLAINTEXT_AUTH_ALWAYS] = "always",
	    [PLAINTEXT_AUTH_NEVER] = "never",
	};

	fprintf(out, "state_dir = %s\n", cfg->state_dir);
	fprintf(out, "mail_root = %s\n", cfg->mail_root);
	/* A postgresql:// URL may carry a password: show only the scheme. */
	fprintf(out, "directory = %s\n",
	        strcmp(cfg->directory, "sqlite") == 0 ? "sqlite" : "postgresql://...");
	if (cfg->mail_directory != NULL)
		fprintf(out, "mail_directory = postgresql://...\n");
	fprintf(out, "hostname = %s\n", cfg->hostname);
	fprintf(out, "run_as = %s\n", cfg->run_as);
	fprintf(out, "login_as = %s\n", cfg->login_as);
	fprintf(out, "auth_as = %s\n", cfg->auth_as);
	dump_list(out, "pop3_listen", &cfg->pop3_listen);
	dump_list(out, "pop3s_listen", &cfg->pop3s_listen);
	dump_list(out, "smtp_listen", &cfg->smtp_listen);
	dump_list(out, "lmtp_listen", &cfg->lmtp_listen);
	dump_list(out, "tls_cert", &cfg->tls_cert);
	dump_list(out, "tls_key", &cfg->tls_key);
	fprintf(out, "plaintext_auth = %s\n", pa[cfg->plaintext_auth]);
	fprintf(out, "apop = %s\n", cfg->apop ? "yes" : "no");
	dump_size(out, "max_message_size", cfg->max_message_size);
	dump_ms(out, "pop3_idle_timeout", cfg->pop3_idle_timeout);
	dump_ms(out, "login_timeout", cfg->login_timeout);
	dump_ms(out, "smtp_first_mail_timeout", cfg->smtp_first_mail_timeout);
	dump_ms(out, "auth_failure_delay", cfg->auth_failure_delay);
	fprintf(out, "max_connections_per_ip = %u\n", cfg->max_connections_per_ip);
	dump_list(out, "trusted_proxies", &cfg->trusted_proxies);
	fprintf(out, "workers = %u\n", cfg->workers);
}
