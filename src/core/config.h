/* The configuration file: `key = value` lines, `#` comments, keys from
 * DESIGN §2 and man 5 pillar.conf. Unknown keys are errors; list keys may
 * repeat; sizes take K/M/G and times s/m/h (and ms). */
#ifndef PILLAR_CORE_CONFIG_H
#define PILLAR_CORE_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

struct strlist {
	char **items;
	size_t count;
};

void strlist_add(struct strlist *list, const char *s);
void strlist_free(struct strlist *list);

enum plaintext_auth {
	PLAINTEXT_AUTH_TLS, /* only under TLS or from loopback (default) */
	PLAINTEXT_AUTH_ALWAYS,
	PLAINTEXT_AUTH_NEVER,
};

/* RFC 1939 §3: the autologout timer must be at least 10 minutes. */
#define POP3_MIN_IDLE_TIMEOUT_MS (10u * 60u * 1000u)

struct config {
	char *path; /* the file this was read from */
	char *state_dir;
	char *mail_root; /* default <state_dir>/mail */
	char *directory; /* "sqlite" or a postgresql:// URL */
	/* A postgresql:// URL for the mail workers, whose role may read the
	 * mailboxes but not their secrets; NULL: they use `directory`. */
	char *mail_directory;
	char *hostname; /* default: the system's host name */
	char *run_as;   /* default "pillar" */
	char *login_as; /* default "pillar-login": the login workers */
	char *auth_as;  /* default "pillar-auth": the auth process */
	struct strlist pop3_listen, pop3s_listen, smtp_listen, lmtp_listen;
	/* Lists, paired in order: several certificates are chosen among by
	 * the client's SNI name; the first is the default. */
	struct strlist tls_cert, tls_key;
	enum plaintext_auth plaintext_auth;
	/* RFC 1939 §7 APOP: the greeting carries a timestamp and APOP is
	 * accepted for mailboxes that have an APOP secret. Default off. */
	bool apop;
	uint64_t max_message_size;        /* bytes, default 50M */
	uint64_t pop3_idle_timeout;       /* ms, default 10m, never below 10m */
	uint64_t login_timeout;           /* ms, default 60s */
	uint64_t smtp_first_mail_timeout; /* ms, default 60s */
	uint64_t auth_failure_delay;      /* ms, default 2s */
	unsigned max_connections_per_ip;
	struct strlist trusted_proxies;
	unsigned workers; /* default: number of online CPUs */
};

/* Read and validate `path`. On success returns 0 and *cfg_r. On failure
 * returns -1 and appends one message per problem to `errors`, each of the
 * form "FILE:LINE: key: what is wrong" (or "FILE: ..." when no line applies).
 * Every problem in the file is reported, not only the first. */
int config_load(const char *path, struct config **cfg_r, struct strlist *errors);

void config_free(struct config **cfg);

/* The file to use when no -c was given: $PILLAR_CONF, then ./pillar.conf, then
 * /etc/pillar/pillar.conf (the first that exists; the last if none does). */
const char *config_default_path(void);

/* <state_dir>/directory.db for the sqlite backend. Caller frees. */
char *config_sqlite_path(const struct config *cfg);
/* The sqlite backend's secrets: <state_dir>/auth (auth_as's alone) and
 * the database in it. Caller frees. */
char *config_secrets_dir(const struct config *cfg);
char *config_secrets_path(const struct config *cfg);

/* Write the effective configuration (defaults filled in) as `key = value`
 * lines, for `pillar check --verbose`. A postgresql:// URL is shown without
 * its credentials. */
void config_dump(const struct config *cfg, FILE *out);

/* Syntax checks shared with the listeners and tests. Each returns 0, or -1
 * with a one-line reason written to why (at least CONFIG_WHY_MAX bytes).
 * listen: ADDR:PORT with ADDR an IPv4 address, [IPv6] or *, or unix:/PATH.
 * cidr: ADDR or ADDR/PREFIX with no address bits set past the prefix. */
#define CONFIG_WHY_MAX 200
int config_check_listen(const char *value, char *why);
int config_check_cidr(const char *value, char *why);

#endif
