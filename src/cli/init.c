/* `pillar init DIR`: a ready-to-run instance.
 *
 * The steps, chosen so that a failure leaves nothing half-made and no
 * root-owned file ends up where the server writes:
 *   1. as the invoking user (root or not): check DIR has no instance, make
 *      DIR, pick run_as (creating the "pillar" account when root needs it)
 *      and, as root, give DIR to run_as, since the server keeps the database,
 *      its WAL files, locks and the control socket there;
 *   2. write the config to a temporary name;
 *   3. in a child that has dropped to run_as: create the directory database,
 *      the mail root and, with --demo, the demo domain, mailbox and mail;
 *   4. only when that succeeded, link the config into place (link, not
 *      rename, so a pillar.conf that appeared meanwhile is never replaced).
 * On failure everything made in steps 2-3 is removed again. */
#include "cli/cert.h"
#include "cli/cli.h"

#include "auth/password.h"
#include "core/config.h"
#include "core/priv.h"
#include "core/util.h"
#include "directory/directory.h"
#include "store/deliver.h"
#include "store/maildir.h"

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <limits.h>
#include <openssl/crypto.h>
#include <pwd.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <sysexits.h>
#include <time.h>
#include <unistd.h>

#define DEMO_DOMAIN         "example.test"
#define DEMO_ADDRESS        "demo@" DEMO_DOMAIN
#define DEMO_PASSWORD_LEN   16
#define DEFAULT_SYSTEM_USER "pillar"
#define DEFAULT_LOGIN_USER  "pillar-login"
#define DEFAULT_AUTH_USER   "pillar-auth"
#define DEMO_POP3_LISTEN    "127.0.0.1:1110"
#define DEMO_POP3S_LISTEN   "127.0.0.1:1995"
#define DEMO_SMTP_LISTEN    "127.0.0.1:2525"
#define DEMO_LMTP_LISTEN    "127.0.0.1:2424"

static const char init_help[] =
    "usage: pillar init DIR [--demo] [--run-as USER] [--hostname NAME]\n"
    "                       [--directory postgresql://...]\n"
    "\n"
    "Make a ready-to-run instance in DIR: DIR/pillar.conf (every setting\n"
    "documented), the directory database DIR/directory.db and the mail root\n"
    "DIR/mail. Refuses when DIR already holds an instance.\n"
    "\n"
    "      --demo           also add the domain " DEMO_DOMAIN ", the mailbox\n"
    "                       " DEMO_ADDRESS " with a generated password (printed,\n"
    "                       and kept in DIR/demo-password) and three messages\n"
    "      --run-as USER    account the server runs as (default: you; as root,\n"
    "                       \"pillar\", created when missing)\n"
    "      --hostname NAME  host name for greetings and Received: headers\n"
    "                       (default: the system's)\n"
    "      --directory URL  keep the directory in this PostgreSQL database\n"
    "                       (its tables are created) instead of directory.db\n"
    "  -h, --help           show this help\n";

struct init_opts {
	const char *dir;
	const char *run_as;
	const char *hostname;
	const char *directory; /* NULL: sqlite */
	bool demo;
};

/* ---- the config file ---- */

static void write_config(FILE *f, const char *state_dir, const char *run_as, const char *hostname,
                         const char *directory)
{
	fprintf(f,
	        "# Pillar configuration. `key = value`, '#' starts a comment. Keys marked\n"
	        "# \"list\" may be given more than once. Sizes take K, M or G; times take ms,\n"
	        "# s, m or h. `pillar check -c FILE` validates this file; man 5 pillar.conf\n"
	        "# describes every key.\n"
	        "\n"
	        "# Database, locks and control socket. Required.\n"
	        "state_dir = %s\n"
	        "\n"
	        "# Mailboxes live in <mail_root>/<domain>/<local>/{tmp,new,cur}.\n"
	        "# mail_root = %s/mail\n"
	        "\n"
	        "# Who may log in: \"sqlite\" (<state_dir>/directory.db) or a postgresql:// URL.\n"
	        "%s%s\n"
	        "\n"
	        "# Name used in greetings, Received: headers and Maildir file names.\n",
	        state_dir, state_dir, directory != NULL ? "directory = " : "# directory = ",
	        directory != NULL ? directory : "sqlite");
	if (hostname != NULL)
		fprintf(f, "hostname = %s\n", hostname);
	else
		fprintf(f, "# hostname = (the system's host name)\n");
	fprintf(f,
	        "\n"
	        "# Account the server runs as after binding its ports (when started as root).\n"
	        "run_as = %s\n"
	        "# Account of the login workers, which greet every client and take its\n"
	        "# password (or SMTP's EHLO, STARTTLS and AUTH), locked in\n"
	        "# <state_dir>/empty with no access to mail.\n"
	        "# login_as = " DEFAULT_LOGIN_USER "\n"
	        "# Account of the auth process, which alone reads the password hashes\n"
	        "# (with the sqlite directory: <state_dir>/auth/secrets.db, its own).\n"
	        "# auth_as = " DEFAULT_AUTH_USER "\n"
	        "\n"
	        "# Listeners (lists): ADDR:PORT, [IPv6]:PORT, *:PORT or unix:/PATH.\n"
	        "# This instance listens on loopback only, on unprivileged ports; a\n"
	        "# production server uses pop3_listen = 0.0.0.0:110 (and [::]:110).\n"
	        "pop3_listen = " DEMO_POP3_LISTEN "\n"
	        "# POP3 over implicit TLS (RFC 8314); production uses 0.0.0.0:995.\n"
	        "pop3s_listen = " DEMO_POP3S_LISTEN "\n"
	        "# SMTP from other mail servers, for the local domains only; production\n"
	        "# SMTP uses port 25: smtp_listen = 0.0.0.0:25\n"
	        "smtp_listen = " DEMO_SMTP_LISTEN "\n"
	        "# LMTP from an MTA on this host (Postfix, Exim). May be a unix socket,\n"
	        "# e.g. lmtp_listen = unix:%s/lmtp.sock\n"
	        "lmtp_listen = " DEMO_LMTP_LISTEN "\n"
	        "\n"
	        "# TLS certificate and key (PEM), needed for pop3s_listen and STLS. This\n"
	        "# self-signed pair was made by pillar init; use one from a CA (an ACME\n"
	        "# client) for real clients, then `pillar reload`.\n"
	        "tls_cert = %s/cert.pem\n"
	        "tls_key = %s/key.pem\n"
	        "\n"
	        "# When USER/PASS and AUTH PLAIN/LOGIN are allowed: tls (only under TLS or\n"
	        "# from loopback), always, or never.\n"
	        "# plaintext_auth = tls\n"
	        "\n"
	        "# APOP (RFC 1939): yes puts a timestamp in the POP3 greeting and accepts\n"
	        "# APOP for mailboxes given an APOP secret with 'pillar user passwd --apop'.\n"
	        "# That secret is the password itself, stored as it is: prefer TLS.\n"
	        "# apop = no\n"
	        "\n"
	        "# Largest message accepted over SMTP and LMTP (the SIZE extension) and by\n"
	        "# pillar deliver.\n"
	        "# max_message_size = 50M\n"
	        "\n"
	        "# RFC 1939 autologout timer; never below 10m.\n"
	        "# pop3_idle_timeout = 10m\n"
	        "\n"
	        "# Time a client has to log in after connecting.\n"
	        "# login_timeout = 60s\n"
	        "\n"
	        "# Time an SMTP or LMTP client has to start its first mail transaction\n"
	        "# (MAIL) after connecting.\n"
	        "# smtp_first_mail_timeout = 60s\n"
	        "\n"
	        "# Delay before answering a failed login.\n"
	        "# auth_failure_delay = 2s\n"
	        "\n"
	        "# Simultaneous connections from one client address.\n"
	        "# max_connections_per_ip = 20\n"
	        "\n"
	        "# Networks allowed to send a PROXY protocol header (list), e.g. 10.0.0.0/8.\n"
	        "# trusted_proxies = 10.0.0.0/8\n"
	        "\n"
	        "# Event-loop worker processes (1-256); default: the number of CPUs.\n"
	        "# workers = 4\n",
	        run_as, state_dir, state_dir, state_dir);
}

/* ---- the demo mailbox ---- */

static char *demo_message(const struct config *cfg, unsigned n)
{
	char date[64], id[17];
	time_t now = time(NULL);
	struct tm tm;
	const char *subject, *body;

	localtime_r(&now, &tm);
	/* The C locale (never changed here) gives RFC 5322 day and month names. */
	strftime(date, sizeof(date), "%a, %d %b %Y %H:%M:%S %z", &tm);
	random_token(id, sizeof(id) - 1);

	switch (n) {
	case 0:
		subject = "Welcome to Pillar";
		body = "Hello,\n"
		       "\n"
		       "this mailbox was made by `pillar init --demo`. Pillar takes mail in\n"
		       "over SMTP and LMTP, keeps it in Maildir mailboxes, and hands it to\n"
		       "your mail client over POP3.\n"
		       "\n"
		       "Try the admin commands:\n"
		       "\n"
		       "    pillar user list -c pillar.conf\n"
		       "    pillar domain list --json -c pillar.conf\n"
		       "\n"
		       "-- \n"
		       "Pillar\n";
		break;
	case 1:
		subject = "Every byte arrives as it was stored";
		body = "POP3 ends a message with a line holding a single dot, so a line\n"
		       "that starts with a dot is sent with one more dot and your client\n"
		       "takes it off again. The next lines must arrive unchanged:\n"
		       "\n"
		       ".\n"
		       ".. two dots\n"
		       ".hidden-looking line\n"
		       "\n"
		       "And 8-bit text, byte for byte:\n"
		       "Grüße aus Zürich — naïve café, 東京, ☕\n";
		break;
	default:
		subject = "Fetching your mail";
		body = "Any POP3 client works. From the shell:\n"
		       "\n"
		       "    curl -s --user \"demo@example.test:PASSWORD\" pop3://127.0.0.1:1110/\n"
		       "    curl -s --user \"demo@example.test:PASSWORD\" pop3://127.0.0.1:1110/1\n"
		       "\n"
		       "The first lists the messages with their sizes, the second prints\n"
		       "message 1. LIST sizes are exact: the octets RETR sends.\n";
		break;
	}
	return xasprintf("From: Pillar <postmaster@%s>\n"
	                 "To: Demo User <%s>\n"
	                 "Subject: %s\n"
	                 "Date: %s\n"
	                 "Message-ID: <%s.%u@%s>\n"
	                 "MIME-Version: 1.0\n"
	                 "Content-Type: text/plain; charset=utf-8\n"
	                 "Content-Transfer-Encoding: 8bit\n"
	                 "\n"
	                 "%s",
	                 DEMO_DOMAIN, DEMO_ADDRESS, subject, date, id, n, cfg->hostname, body);
}

static int write_password_file(const char *path, const char *password)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600);
	size_t len = strlen(password);
	bool ok;

	if (fd < 0)
		return -1;
	ok = write(fd, password, len) == (ssize_t)len && write(fd, "\n", 1) == 1;
	ok = fsync(fd) == 0 && ok;
	ok = close(fd) == 0 && ok;
	return ok ? 0 : -1;
}

static int make_demo(struct dir *dir, const struct config *cfg, const char *state_dir)
{
	char password[DEMO_PASSWORD_LEN + 1];
	char *hash, *path, *pwfile;
	const char *err;
	int status = 0;

	if (dir_domain_add(dir, DEMO_DOMAIN, &err) < 0) {
		cli_err("%s", err);
		return 1;
	}
	random_token(password, DEMO_PASSWORD_LEN);
	hash = password_hash(password, &err);
	if (hash == NULL) {
		cli_err("%s", err);
		return EX_SOFTWARE;
	}
	path = maildir_path(cfg->mail_root, DEMO_ADDRESS);
	pwfile = xasprintf("%s/demo-password", state_dir);
	if (maildir_create(path, &err) < 0) {
		cli_err("cannot create the Maildir %s: %s", path, err);
		status = EX_CANTCREAT;
		goto out;
	}
	if (dir_user_add(dir, DEMO_ADDRESS, hash, &err) < 0) {
		cli_err("%s", err);
		status = 1;
		goto out;
	}
	for (unsigned i = 0; i < 3; i++) {
		char *msg = demo_message(cfg, i);
		int temporary = 0;

		if (maildir_deliver(path, cfg->hostname, msg, strlen(msg), &temporary, &err) < 0) {
			cli_err("delivering a demo message: %s", err);
			status = temporary ? EX_TEMPFAIL : EX_CANTCREAT;
		}
		free(msg);
		if (status != 0)
			goto out;
	}
	if (write_password_file(pwfile, password) < 0) {
		cli_err("cannot write %s: %s", pwfile, strerror(errno));
		status = EX_CANTCREAT;
		goto out;
	}
	printf("demo mailbox %s, password: %s\n", DEMO_ADDRESS, password);
	printf("  (the password is also in %s)\n", pwfile);
out:
	OPENSSL_cleanse(password, sizeof(password));
	free(hash);
	free(path);
	free(pwfile);
	return status;
}

/* The child of step 3: runs as run_as, returns the exit status. */
static int make_state(const char *conf_tmp, const char *run_as, const char *state_dir, bool demo)
{
	struct config *cfg;
	struct dir *dir;
	const char *err;
	int status;

	status = cli_load_config(conf_tmp, &cfg);
	if (status != 0)
		return EX_SOFTWARE; /* the file we just wrote must load */
	/* Still root: the directory's files go to run_as and its secrets to
	 * auth_as, each its own (sqlite.c). */
	if (dir_open(cfg, true, &dir, &err) < 0) {
		cli_err("%s", err);
		config_free(&cfg);
		return EX_CANTCREAT;
	}
	if (priv_drop(run_as, &err) < 0) {
		cli_err("cannot become %s: %s", run_as, err);
		status = EX_OSERR;
		goto done;
	}
	if (access(state_dir, R_OK | W_OK | X_OK) < 0) {
		cli_err("%s cannot use %s: %s (is a parent directory closed to it?)", run_as,
		        state_dir, strerror(errno));
		status = EX_CANTCREAT;
		goto done;
	}
	if (mkdir(cfg->mail_root, 0700) < 0 && errno != EEXIST) {
		cli_err("cannot create %s: %s", cfg->mail_root, strerror(errno));
		status = EX_CANTCREAT;
	} else if (demo) {
		status = make_demo(dir, cfg, state_dir);
	}
done:
	dir_close(&dir);
	config_free(&cfg);
	return status;
}

/* ---- run_as ---- */

static int run_command(char *const argv[])
{
	pid_t pid;
	int ws;

	fflush(stdout);
	fflush(stderr);
	pid = fork();
	if (pid < 0)
		return -1;
	if (pid == 0) {
		execv("/usr/sbin/useradd", argv);
		execvp(argv[0], argv);
		_exit(127);
	}
	while (waitpid(pid, &ws, 0) < 0) {
		if (errno != EINTR)
			return -1;
	}
	return WIFEXITED(ws) && WEXITSTATUS(ws) == 0 ? 0 : -1;
}

/* A system account without a home or a shell, made with useradd. */
static int create_account(const char *name)
{
	char *const argv[] = {
	    (char *)"useradd",           (char *)"--system",     (char *)"--no-create-home",
	    (char *)"--home-dir",        (char *)"/nonexistent", (char *)"--shell",
	    (char *)"/usr/sbin/nologin", (char *)name,           NULL,
	};

	if (run_command(argv) < 0) {
		cli_err("cannot create the system account %s with useradd", name);
		return -1;
	}
	printf("created system account %s\n", name);
	return 0;
}

/* Decide who the instance runs as; as root, make sure the account exists.
 * Returns 0 with *user_r (malloc'd) and the ids, or an exit status. */
static int pick_run_as(const char *wanted, char **user_r, uid_t *uid_r, gid_t *gid_r)
{
	bool root = geteuid() == 0;
	const char *err;

	if (!root) {
		if (wanted == NULL) {
			struct passwd *pw = getpwuid(geteuid());

			if (pw == NULL) {
				cli_err("cannot find the name of uid %u; use --run-as",
				        (unsigned)geteuid());
				return EX_NOUSER;
			}
			wanted = pw->pw_name;
		}
		/* Another account may be named for a later start as root;
		 * only never root itself. */
		if (priv_lookup(wanted, uid_r, gid_r, &err) == 0 && *uid_r == 0) {
			cli_err("run_as %s is uid 0; the server must not run as root", wanted);
			return EX_USAGE;
		}
		*user_r = xstrdup(wanted);
		*uid_r = geteuid();
		*gid_r = getegid();
		return 0;
	}

	if (wanted == NULL)
		wanted = DEFAULT_SYSTEM_USER;
	if (priv_lookup(wanted, uid_r, gid_r, &err) < 0) {
		if (strcmp(wanted, DEFAULT_SYSTEM_USER) != 0) {
			cli_err("run_as user %s: %s", wanted, err);
			return EX_NOUSER;
		}
		if (create_account(wanted) < 0 || priv_lookup(wanted, uid_r, gid_r, &err) < 0)
			return EX_CANTCREAT;
	}
	if (*uid_r == 0) {
		cli_err("run_as %s is uid 0; the server must not run as root", wanted);
		return EX_USAGE;
	}
	*user_r = xstrdup(wanted);
	return 0;
}

/* ---- the command ---- */

static int write_config_file(const char *path, const char *state_dir, const char *run_as,
                             const char *hostname, const char *directory)
{
	int fd;
	FILE *f;
	bool ok;

	unlink(path); /* a stale one from an interrupted init */
	fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0644);
	if (fd < 0)
		return -1;
	/* The umask must not make the config unreadable for run_as. */
	fchmod(fd, 0644);
	f = fdopen(fd, "w");
	if (f == NULL) {
		close(fd);
		return -1;
	}
	write_config(f, state_dir, run_as, hostname, directory);
	ok = fflush(f) == 0 && fsync(fd) == 0;
	ok = fclose(f) == 0 && ok;
	return ok ? 0 : -1;
}

static bool exists(const char *dir, const char *name)
{
	struct stat st;
	char *p = xasprintf("%s/%s", dir, name);
	bool r = lstat(p, &st) == 0;

	free(p);
	return r;
}

static void cleanup(const char *state_dir, bool mail_existed)
{
	static const char *const files[] = {
	    ".pillar.conf.new", "directory.db", "directory.db-wal", "directory.db-shm",
	    "demo-password",    "cert.pem",     "key.pem",
	};

	for (size_t i = 0; i < sizeof(files) / sizeof(files[0]); i++) {
		char *p = xasprintf("%s/%s", state_dir, files[i]);
		unlink(p);
		free(p);
	}
	if (!mail_existed) {
		char *p = xasprintf("%s/mail", state_dir);
		cli_remove_tree(p);
		free(p);
	}
}

static int parse_args(int argc, char **argv, struct init_opts *o)
{
	static const struct option opts[] = {
	    {"demo", no_argument, NULL, 'd'},           {"run-as", required_argument, NULL, 'u'},
	    {"hostname", required_argument, NULL, 'H'}, {"directory", required_argument, NULL, 'D'},
	    {"help", no_argument, NULL, 'h'},           {NULL, 0, NULL, 0},
	};
	int c;

	optind = 0;
	opterr = 0;
	while ((c = getopt_long(argc, argv, ":h", opts, NULL)) != -1) {
		switch (c) {
		case 'd':
			o->demo = true;
			break;
		case 'u':
			o->run_as = optarg;
			break;
		case 'H':
			o->hostname = optarg;
			break;
		case 'D':
			if (strncmp(optarg, "postgresql://", 13) != 0 &&
			    strncmp(optarg, "postgres://", 11) != 0)
				return cli_usage_err("init",
				                     "--directory must be a postgresql:// URL");
			o->directory = optarg;
			break;
		case 'h':
			fputs(init_help, stdout);
			return -1;
		case ':':
			return cli_usage_err("init", "option %s needs a value", argv[optind - 1]);
		default:
			return cli_usage_err("init", "unknown option %s", argv[optind - 1]);
		}
	}
	if (optind != argc - 1)
		return cli_usage_err("init", "init takes one DIR");
	o->dir = argv[optind];
	return 0;
}

int cli_init(int argc, char **argv)
{
	struct init_opts o = {0};
	char hostname[DIR_DOMAIN_MAX + 1];
	char *state_dir = NULL, *conf = NULL, *conf_tmp = NULL, *run_as = NULL;
	bool made_dir = false, mail_existed = true;
	const char *err;
	uid_t uid;
	gid_t gid;
	pid_t pid;
	int status, ws;

	status = parse_args(argc, argv, &o);
	if (status != 0)
		return status < 0 ? 0 : status;
	if (o.hostname != NULL) {
		if (strlen(o.hostname) > 253) {
			cli_err("bad host name: longer than 253 characters");
			return EX_USAGE;
		}
		snprintf(hostname, sizeof(hostname), "%s", o.hostname);
		if (dir_check_domain(hostname, &err) < 0) {
			cli_err("bad host name '%s': %s", o.hostname, err);
			return EX_USAGE;
		}
	}
	if (exists(o.dir, "pillar.conf") || exists(o.dir, "directory.db")) {
		cli_err("%s/%s already exists; not overwriting an instance", o.dir,
		        exists(o.dir, "pillar.conf") ? "pillar.conf" : "directory.db");
		return EX_CANTCREAT;
	}
	if (mkdir(o.dir, 0755) == 0) {
		made_dir = true;
	} else if (errno != EEXIST) {
		cli_err("cannot create %s: %s", o.dir, strerror(errno));
		return EX_CANTCREAT;
	}
	state_dir = realpath(o.dir, NULL);
	if (state_dir == NULL) {
		cli_err("%s: %s", o.dir, strerror(errno));
		status = EX_CANTCREAT;
		goto fail;
	}
	status = pick_run_as(o.run_as, &run_as, &uid, &gid);
	if (status != 0)
		goto fail;
	/* The login workers' and the auth process's own accounts (login_as,
	 * auth_as: the defaults). */
	uid_t login_uid;
	gid_t login_gid;
	const char *login_err;
	if (geteuid() == 0 &&
	    ((priv_lookup(DEFAULT_LOGIN_USER, &login_uid, &login_gid, &login_err) < 0 &&
	      create_account(DEFAULT_LOGIN_USER) < 0) ||
	     (priv_lookup(DEFAULT_AUTH_USER, &login_uid, &login_gid, &login_err) < 0 &&
	      create_account(DEFAULT_AUTH_USER) < 0))) {
		status = EX_CANTCREAT;
		goto fail;
	}
	/* state_dir is root's (pillar.conf, the key, the jail and the secrets'
	 * directory are not run_as's to move), run_as's group may add its own
	 * files there (the directory's -wal and -shm, deleted/), and the
	 * sticky bit keeps it from renaming or removing anyone else's. */
	if (geteuid() == 0 && (chown(state_dir, 0, gid) < 0 || chmod(state_dir, 01775) < 0)) {
		cli_err("cannot give %s to root, group %s: %s", state_dir, run_as, strerror(errno));
		status = EX_CANTCREAT;
		goto fail;
	}

	/* The certificate first: the config names it. Key and certificate
	 * stay root's when run as root; the master reads them before it drops
	 * privileges. */
	char cert_host[DIR_DOMAIN_MAX + 1], cert_err[256];
	if (o.hostname != NULL)
		snprintf(cert_host, sizeof(cert_host), "%s", hostname);
	else if (gethostname(cert_host, sizeof(cert_host)) < 0)
		snprintf(cert_host, sizeof(cert_host), "localhost");
	cert_host[sizeof(cert_host) - 1] = '\0';
	char *cert = xasprintf("%s/cert.pem", state_dir), *key = xasprintf("%s/key.pem", state_dir);
	int cert_rc = cert_make_selfsigned(cert, key, cert_host, cert_err, sizeof(cert_err));
	free(cert);
	free(key);
	if (cert_rc < 0) {
		cli_err("%s", cert_err);
		status = EX_CANTCREAT;
		goto fail_cleanup;
	}

	conf = xasprintf("%s/pillar.conf", state_dir);
	conf_tmp = xasprintf("%s/.pillar.conf.new", state_dir);
	mail_existed = exists(state_dir, "mail");
	if (write_config_file(conf_tmp, state_dir, run_as, o.hostname != NULL ? hostname : NULL,
	                      o.directory) < 0) {
		cli_err("cannot write %s: %s", conf_tmp, strerror(errno));
		status = EX_CANTCREAT;
		goto fail_cleanup;
	}

	fflush(stdout);
	fflush(stderr);
	pid = fork();
	if (pid < 0) {
		cli_err("fork: %s", strerror(errno));
		status = EX_OSERR;
		goto fail_cleanup;
	}
	if (pid == 0) {
		status = make_state(conf_tmp, run_as, state_dir, o.demo);
		fflush(stdout);
		_exit(status);
	}
	while (waitpid(pid, &ws, 0) < 0) {
		if (errno != EINTR) {
			ws = 1 << 8;
			break;
		}
	}
	status = WIFEXITED(ws) ? WEXITSTATUS(ws) : EX_SOFTWARE;
	if (status != 0)
		goto fail_cleanup;

	if (link(conf_tmp, conf) < 0) {
		cli_err("cannot create %s: %s", conf, strerror(errno));
		status = EX_CANTCREAT;
		goto fail_cleanup;
	}
	unlink(conf_tmp);
	printf("initialised %s (runs as %s)\n", state_dir, run_as);
	printf("start it with: pillar serve -c %s --foreground\n", conf);
	goto out;

fail_cleanup:
	cleanup(state_dir, mail_existed);
fail:
	if (made_dir)
		rmdir(o.dir);
out:
	free(state_dir);
	free(conf);
	free(conf_tmp);
	free(run_as);
	return status;
}
