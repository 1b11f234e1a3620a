/* `pillar check`: validate a config file, report every problem, and warn
 * about settings that work but are risky or will fail at run time. */
#include "cli/cli.h"

#include "core/config.h"
#include "core/priv.h"

#include <arpa/inet.h>
#include <errno.h>
#include <getopt.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <sysexits.h>
#include <unistd.h>

static const char check_help[] =
    "usage: pillar check [-c FILE] [--verbose]\n"
    "\n"
    "Validate a config file. Each problem is printed on stderr as\n"
    "FILE:LINE: key: what is wrong, and the exit status is 1; a good file prints\n"
    "\"FILE: ok\".\n"
    "\n"
    "A valid file may still get warnings, lines on stderr that start with\n"
    "\"warning:\" (the exit status stays 0): plaintext_auth = always on a\n"
    "listener other hosts can reach; no TLS certificate, or a tls_cert/tls_key\n"
    "pair that is missing or cannot be loaded; a state_dir or mail_root the\n"
    "run_as account cannot write; a run_as or login_as account that does not\n"
    "exist, or login_as the same account as run_as;\n"
    "listeners on ports below 1024 when not run as root.\n"
    "\n"
    "  -c, --config FILE  the config file\n"
    "  -v, --verbose      also print the effective settings, defaults included\n"
    "  -h, --help         show this help\n";

/* ---- warnings ---- */

static unsigned warnings;

static void warn(const struct config *cfg, const char *key, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void warn(const struct config *cfg, const char *key, const char *fmt, ...)
{
	va_list ap;

	fflush(stdout);
	fprintf(stderr, "warning: %s: %s: ", cfg->path, key);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	warnings++;
}

/* Split a listen value (already valid: config_check_listen) into its
 * address and port. Returns false for unix:PATH. */
static bool listen_parts(const char *value, char *host, size_t size, unsigned *port)
{
	const char *colon;

	if (strncmp(value, "unix:", 5) == 0)
		return false;
	if (value[0] == '[') {
		const char *end = strchr(value, ']');

		if (end == NULL)
			return false;
		snprintf(host, size, "%.*s", (int)(end - value - 1), value + 1);
		colon = end + 1;
	} else {
		colon = strrchr(value, ':');
		if (colon == NULL)
			return false;
		snprintf(host, size, "%.*s", (int)(colon - value), value);
	}
	*port = (unsigned)strtoul(colon + 1, NULL, 10);
	return true;
}

/* 127.0.0.0/8 and ::1, as plaintext_auth counts them (a unix socket is
 * local too, so it never gets here). */
static bool host_is_loopback(const char *host)
{
	struct in_addr a4;
	struct in6_addr a6;

	if (inet_pton(AF_INET, host, &a4) == 1)
		return (ntohl(a4.s_addr) >> 24) == 127;
	if (inet_pton(AF_INET6, host, &a6) == 1)
		return IN6_IS_ADDR_LOOPBACK(&a6);
	return false; /* "*": every address */
}

static void check_listeners(const struct config *cfg)
{
	static const struct {
		const char *key;
		size_t off;
		bool auth; /* clients log in with a password over it */
	} lists[] = {
	    {"pop3_listen", offsetof(struct config, pop3_listen), true},
	    {"pop3s_listen", offsetof(struct config, pop3s_listen), false},
	    {"smtp_listen", offsetof(struct config, smtp_listen), true},
	    {"lmtp_listen", offsetof(struct config, lmtp_listen), false},
	};
	bool root = geteuid() == 0;

	for (size_t i = 0; i < sizeof(lists) / sizeof(lists[0]); i++) {
		const struct strlist *l = (const void *)((const char *)cfg + lists[i].off);

		for (size_t k = 0; k < l->count; k++) {
			char host[256];
			unsigned port;

			if (!listen_parts(l->items[k], host, sizeof(host), &port))
				continue;
			if (lists[i].auth && cfg->plaintext_auth == PLAINTEXT_AUTH_ALWAYS &&
			    !host_is_loopback(host))
				warn(cfg, "plaintext_auth",
				     "'always' lets passwords cross the network unencrypted on "
				     "%s = %s (use 'tls')",
				     lists[i].key, l->items[k]);
			if (!root && port > 0 && port < 1024)
				warn(cfg, lists[i].key,
				     "%s: port %u is privileged and this is not run as root: "
				     "pillar serve will fail to bind it",
				     l->items[k], port);
		}
	}
}

/* Load each certificate/key pair the way the server will. */
static void check_tls(const struct config *cfg)
{
	if (cfg->tls_cert.count == 0) {
		bool remote = false;
		char host[256];
		unsigned port;

		for (size_t k = 0; k < cfg->pop3_listen.count; k++) {
			if (listen_parts(cfg->pop3_listen.items[k], host, sizeof(host), &port) &&
			    !host_is_loopback(host))
				remote = true;
		}
		warn(cfg, "tls_cert", "no TLS certificate: no STLS, STARTTLS or POP3S%s",
		     remote && cfg->plaintext_auth == PLAINTEXT_AUTH_TLS
		         ? ", so clients on other hosts cannot log in (plaintext_auth = tls)"
		         : "");
		return;
	}
	for (size_t i = 0; i < cfg->tls_cert.count && i < cfg->tls_key.count; i++) {
		const char *cert = cfg->tls_cert.items[i], *key = cfg->tls_key.items[i];
		SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());
		const char *what = NULL, *file = NULL;
		bool mismatch = false;

		if (ctx == NULL)
			return;
		ERR_clear_error();
		if (access(cert, R_OK) < 0) {
			warn(cfg, "tls_cert", "%s: %s", cert, strerror(errno));
		} else if (access(key, R_OK) < 0) {
			warn(cfg, "tls_key", "%s: %s", key, strerror(errno));
		} else if (SSL_CTX_use_certificate_chain_file(ctx, cert) != 1) {
			what = "tls_cert";
			file = cert;
		} else if (SSL_CTX_use_PrivateKey_file(ctx, key, SSL_FILETYPE_PEM) != 1) {
			what = "tls_key";
			file = key;
			/* OpenSSL compares the key with the certificate as it
			 * loads it. */
			mismatch =
			    ERR_GET_REASON(ERR_peek_last_error()) == X509_R_KEY_VALUES_MISMATCH;
		} else if (SSL_CTX_check_private_key(ctx) != 1) {
			what = "tls_key";
			file = key;
			mismatch = true;
		}
		if (what != NULL) {
			const char *reason = ERR_reason_error_string(ERR_peek_last_error());

			if (mismatch)
				warn(cfg, what, "%s does not match the certificate %s", key, cert);
			else
				warn(cfg, what, "%s cannot be loaded: %s", file,
				     reason != NULL ? reason : "unknown error");
		}
		ERR_clear_error();
		SSL_CTX_free(ctx);
	}
}

/* Whether the run_as account can create files in dir: as root, a child
 * drops to it and asks the kernel (access(2) then judges owner, mode, ACLs
 * and every directory on the way); otherwise the server will run as us, so
 * ask for ourselves. Returns 1 yes, 0 no, -1 could not tell. */
static int run_as_can_write(const char *run_as, const char *dir)
{
	const char *err;
	pid_t pid;
	int wstatus;

	if (geteuid() != 0)
		return access(dir, W_OK | X_OK) == 0;
	fflush(stdout);
	fflush(stderr);
	pid = fork();
	if (pid < 0)
		return -1;
	if (pid == 0) {
		if (priv_drop(run_as, &err) < 0)
			_exit(2);
		_exit(access(dir, W_OK | X_OK) == 0 ? 0 : 1);
	}
	while (waitpid(pid, &wstatus, 0) < 0) {
		if (errno != EINTR)
			return -1;
	}
	if (!WIFEXITED(wstatus) || WEXITSTATUS(wstatus) > 1)
		return -1;
	return WEXITSTATUS(wstatus) == 0;
}

/* With SQLite, the secrets must be auth_as's, or the auth process cannot
 * open them (after auth_as changed, or a restore as root). */
static void check_secrets(const struct config *cfg, uid_t auth_uid)
{
	char *dir = config_secrets_dir(cfg), *file = config_secrets_path(cfg);
	const char *paths[] = {dir, file};
	struct stat st;

	for (size_t i = 0; i < 2 && strcmp(cfg->directory, "sqlite") == 0; i++) {
		if (stat(paths[i], &st) == 0 && st.st_uid != auth_uid)
			warn(cfg, "auth_as",
			     "%s belongs to uid %u, not %s: the auth process cannot open the "
			     "secrets (chown -R %s %s)",
			     paths[i], (unsigned)st.st_uid, cfg->auth_as, cfg->auth_as, dir);
	}
	free(dir);
	free(file);
}

static void check_dirs(const struct config *cfg)
{
	const char *err;
	uid_t uid;
	gid_t gid;
	bool known = priv_lookup(cfg->run_as, &uid, &gid, &err) == 0;
	const struct {
		const char *key, *path;
	} dirs[] = {{"state_dir", cfg->state_dir}, {"mail_root", cfg->mail_root}};

	if (!known)
		warn(cfg, "run_as", "%s: %s%s", cfg->run_as, err,
		     geteuid() == 0 ? ": pillar serve will refuse to start" : "");
	uid_t login_uid;
	gid_t login_gid;
	if (priv_lookup(cfg->login_as, &login_uid, &login_gid, &err) < 0)
		warn(cfg, "login_as", "%s: %s%s", cfg->login_as, err,
		     geteuid() == 0 ? ": pillar serve will refuse to start" : "");
	else if (known && login_uid == uid)
		warn(cfg, "login_as", "%s is also run_as: login workers could read the mail",
		     cfg->login_as);
	uid_t auth_uid;
	gid_t auth_gid;
	if (priv_lookup(cfg->auth_as, &auth_uid, &auth_gid, &err) < 0)
		warn(cfg, "auth_as", "%s: %s%s", cfg->auth_as, err,
		     geteuid() == 0 ? ": pillar serve will refuse to start" : "");
	else if (known && auth_uid == uid && geteuid() == 0)
		warn(cfg, "auth_as",
		     "%s is also run_as: mail workers could read the password hashes",
		     cfg->auth_as);
	else if (geteuid() == 0)
		check_secrets(cfg, auth_uid);
	for (size_t i = 0; i < sizeof(dirs) / sizeof(dirs[0]); i++) {
		struct stat st;
		int r;

		if (dirs[i].path == NULL)
			continue;
		if (stat(dirs[i].path, &st) < 0) {
			warn(cfg, dirs[i].key, "%s: %s", dirs[i].path, strerror(errno));
			continue;
		}
		if (!S_ISDIR(st.st_mode)) {
			warn(cfg, dirs[i].key, "%s is not a directory", dirs[i].path);
			continue;
		}
		if (geteuid() == 0 && !known)
			continue;
		r = run_as_can_write(cfg->run_as, dirs[i].path);
		if (r == 0)
			warn(cfg, dirs[i].key, "%s: %s cannot write to it", dirs[i].path,
			     geteuid() == 0 ? cfg->run_as
			                    : "this account (the server's when not root)");
	}
}

int cli_check(int argc, char **argv)
{
	static const struct option opts[] = {
	    {"config", required_argument, NULL, 'c'},
	    {"verbose", no_argument, NULL, 'v'},
	    {"help", no_argument, NULL, 'h'},
	    {NULL, 0, NULL, 0},
	};
	struct strlist errors = {0};
	const char *conf = NULL;
	bool verbose = false;
	struct config *cfg;
	int c;

	optind = 0;
	opterr = 0;
	while ((c = getopt_long(argc, argv, ":c:vh", opts, NULL)) != -1) {
		switch (c) {
		case 'c':
			conf = optarg;
			break;
		case 'v':
			verbose = true;
			break;
		case 'h':
			fputs(check_help, stdout);
			return 0;
		case ':':
			return cli_usage_err("check", "option %s needs a value", argv[optind - 1]);
		default:
			return cli_usage_err("check", "unknown option %s", argv[optind - 1]);
		}
	}
	if (optind < argc)
		return cli_usage_err("check", "unexpected argument '%s'", argv[optind]);
	if (conf == NULL)
		conf = config_default_path();

	if (config_load(conf, &cfg, &errors) < 0) {
		for (size_t i = 0; i < errors.count; i++)
			fprintf(stderr, "%s\n", errors.items[i]);
		strlist_free(&errors);
		return 1;
	}
	check_listeners(cfg);
	check_tls(cfg);
	check_dirs(cfg);
	if (warnings > 0)
		printf("%s: ok, %u warning%s\n", conf, warnings, warnings == 1 ? "" : "s");
	else
		printf("%s: ok\n", conf);
	if (verbose)
		config_dump(cfg, stdout);
	config_free(&cfg);
	return 0;
}
