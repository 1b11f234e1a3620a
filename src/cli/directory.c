/* `pillar directory migrate` and `pillar migrate-directory`: the
 * directory's tables, and moving a directory from SQLite to PostgreSQL. */
#include "cli/cli.h"

#include "core/config.h"
#include "core/priv.h"
#include "core/util.h"
#include "directory/directory.h"
#include "directory/transfer.h"

#include <getopt.h>
#include <openssl/crypto.h>
#include <stdlib.h>
#include <string.h>
#include <sysexits.h>
#include <unistd.h>

static const char directory_help[] =
    "usage: pillar directory migrate [-c FILE]\n"
    "\n"
    "Create the directory's tables when they are missing (a new PostgreSQL\n"
    "database) and bring an older schema up to date. Safe to run again, and\n"
    "while servers run: a schema that is current is left alone.\n"
    "\n"
    "  -c, --config FILE  the config file\n"
    "  -h, --help         show this help\n";

static const char migrate_help[] =
    "usage: pillar migrate-directory --from sqlite|URL --to URL [-c FILE]\n"
    "\n"
    "Copy a directory into a PostgreSQL one: domains, mailboxes (password\n"
    "hashes, SCRAM keys, APOP secrets, quotas, lock, creation and last login\n"
    "times), aliases and the instance secret. --from sqlite is the config's\n"
    "state_dir/directory.db. Rows already in the target are made equal to the\n"
    "source's, so running it again changes nothing; the copy is one\n"
    "transaction. Then set `directory = URL` in the config.\n"
    "\n"
    "Keep a password for PostgreSQL in a libpq password file (~/.pgpass or\n"
    "PGPASSFILE) rather than in the URL.\n"
    "\n"
    "  -c, --config FILE  the config file\n"
    "      --from SOURCE  sqlite, or a postgresql:// URL\n"
    "      --to URL       the postgresql:// URL to copy into\n"
    "  -h, --help         show this help\n";

static bool is_postgresql(const char *s)
{
	return strncmp(s, "postgresql://", strlen("postgresql://")) == 0 ||
	       strncmp(s, "postgres://", strlen("postgres://")) == 0;
}

/* As root, become run_as once the directory is open (as cli_admin_open
 * does): the secrets are auth_as's, and each file is opened with its
 * owner's ids (directory/sqlite_files.c). */
static int drop_root(const struct config *cfg)
{
	const char *err;

	if (geteuid() != 0)
		return 0;
	if (priv_drop(cfg->run_as, &err) < 0) {
		cli_err("cannot become %s: %s", cfg->run_as, err);
		return EX_OSERR;
	}
	return 0;
}

/* Parse -c and the two options of migrate-directory (from/to may be NULL
 * when the command takes none); options may come before or after the
 * verb. *verb_r (NULL when the command takes none) gets the one word that
 * is not an option. Returns 0, -1 after --help, or an exit status. */
static int parse_args(const char *cmd, const char *help, int argc, char **argv, const char **verb_r,
                      const char **conf, const char **from, const char **to)
{
	static const struct option opts[] = {
	    {"config", required_argument, NULL, 'c'},
	    {"from", required_argument, NULL, 'F'},
	    {"to", required_argument, NULL, 'T'},
	    {"help", no_argument, NULL, 'h'},
	    {NULL, 0, NULL, 0},
	};
	int c;

	optind = 0;
	opterr = 0;
	while ((c = getopt_long(argc, argv, ":c:h", opts, NULL)) != -1) {
		switch (c) {
		case 'c':
			*conf = optarg;
			break;
		case 'F':
		case 'T':
			if (from == NULL)
				return cli_usage_err(cmd, "unknown option %s", argv[optind - 1]);
			*(c == 'F' ? from : to) = optarg;
			break;
		case 'h':
			fputs(help, stdout);
			return -1;
		case ':':
			return cli_usage_err(cmd, "option %s needs a value", argv[optind - 1]);
		default:
			return cli_usage_err(cmd, "unknown option %s", argv[optind - 1]);
		}
	}
	if (verb_r != NULL && optind < argc)
		*verb_r = argv[optind++];
	if (optind < argc)
		return cli_usage_err(cmd, "unexpected argument '%s'", argv[optind]);
	return 0;
}

int cli_directory(int argc, char **argv)
{
	const char *conf = NULL, *verb = NULL, *err;
	struct config *cfg;
	struct dir *dir;
	int status;

	status = parse_args("directory", directory_help, argc, argv, &verb, &conf, NULL, NULL);
	if (status != 0)
		return status < 0 ? 0 : status;
	if (verb == NULL || strcmp(verb, "migrate") != 0)
		return cli_usage_err("directory", "the only verb is 'migrate'");
	status = cli_load_config(conf, &cfg);
	if (status != 0)
		return status;
	/* SQLite migrates a database that exists on every open; its file is
	 * made by pillar init, not here, so a mistyped state_dir is not
	 * silently given an empty directory. PostgreSQL's tables are made
	 * here. */
	if (dir_open(cfg, is_postgresql(cfg->directory), &dir, &err) < 0) {
		cli_err("%s", err);
		status = EX_UNAVAILABLE;
		goto out;
	}
	status = drop_root(cfg);
	if (status != 0) {
		dir_close(&dir);
		goto out;
	}
	printf("directory (%s) is up to date\n", dir_backend_name(dir));
	dir_close(&dir);
out:
	config_free(&cfg);
	return status;
}

/* ---- migrate-directory ---- */

struct copy {
	struct dir *to;
	int failed; /* the first failure's status, 0 while none */
	size_t domains, aliases;
	struct dir_user *users;
	size_t nusers, cap;
};

static void copy_domain(void *ctx, const char *domain, int64_t created)
{
	struct copy *c = ctx;
	const char *err;

	if (c->failed != 0)
		return;
	if (dir_transfer_put_domain(c->to, domain, created, &err) < 0) {
		cli_err("%s", err);
		c->failed = 1;
		return;
	}
	c->domains++;
}

/* Mailboxes are gathered first: their secrets are read with other
 * queries on the source. */
static void gather_user(void *ctx, const struct dir_user *user)
{
	struct copy *c = ctx;

	if (c->nusers == c->cap) {
		size_t cap = c->cap ? c->cap * 2 : 64;
		struct dir_user *users = xcalloc(cap, sizeof(*users));

		if (c->users != NULL) {
			memcpy(users, c->users, c->nusers * sizeof(*users));
			/* The copies hold password hashes. */
			OPENSSL_cleanse(c->users, c->nusers * sizeof(*users));
			free(c->users);
		}
		c->users = users;
		c->cap = cap;
	}
	c->users[c->nusers++] = *user;
}

static void copy_alias(void *ctx, const char *address, const char *target)
{
	struct copy *c = ctx;
	const char *err;

	if (c->failed != 0)
		return;
	if (dir_transfer_put_alias(c->to, address, target, &err) < 0) {
		cli_err("%s", err);
		c->failed = 1;
		return;
	}
	c->aliases++;
}

static int copy_users(struct dir *from, struct copy *c)
{
	char apop[DIR_APOP_SECRET_MAX + 1];
	struct dir_scram scram;
	const char *err;
	int has_scram, has_apop;

	for (size_t i = 0; i < c->nusers; i++) {
		const struct dir_user *u = &c->users[i];

		has_scram = dir_user_get_scram(from, u->address, &scram, &err);
		has_apop = has_scram < 0
		               ? -1
		               : dir_user_get_apop(from, u->address, apop, sizeof(apop), &err);
		if (has_scram < 0 || has_apop < 0 ||
		    dir_transfer_put_user(c->to, u, has_scram ? &scram : NULL,
		                          has_apop ? apop : NULL, &err) < 0) {
			cli_err("%s", err);
			OPENSSL_cleanse(apop, sizeof(apop));
			OPENSSL_cleanse(&scram, sizeof(scram));
			return 1;
		}
	}
	OPENSSL_cleanse(apop, sizeof(apop));
	OPENSSL_cleanse(&scram, sizeof(scram));
	return 0;
}

static int copy_all(struct dir *from, struct copy *c)
{
	uint8_t secret[DIR_INSTANCE_SECRET_LEN];
	const char *err;
	int r;

	if (dir_instance_secret(from, secret, &err) < 0 ||
	    dir_transfer_put_secret(c->to, secret, &err) < 0) {
		OPENSSL_cleanse(secret, sizeof(secret));
		cli_err("%s", err);
		return 1;
	}
	OPENSSL_cleanse(secret, sizeof(secret));
	if (dir_transfer_domains(from, copy_domain, c, &err) < 0) {
		cli_err("%s", err);
		return 1;
	}
	if (c->failed != 0)
		return c->failed;
	if (dir_transfer_users(from, gather_user, c, &err) < 0) {
		cli_err("%s", err);
		return 1;
	}
	r = copy_users(from, c);
	if (r != 0)
		return r;
	if (dir_alias_list(from, NULL, copy_alias, c, &err) < 0) {
		cli_err("%s", err);
		return 1;
	}
	return c->failed;
}

int cli_migrate_directory(int argc, char **argv)
{
	const char *conf = NULL, *from_spec = NULL, *to_spec = NULL, *err;
	struct config *cfg, from_cfg, to_cfg;
	struct dir *from = NULL;
	struct copy c = {0};
	int status;

	status = parse_args("migrate-directory", migrate_help, argc, argv, NULL, &conf, &from_spec,
	                    &to_spec);
	if (status != 0)
		return status < 0 ? 0 : status;
	if (from_spec == NULL || to_spec == NULL)
		return cli_usage_err("migrate-directory", "both --from and --to are needed");
	if (strcmp(from_spec, "sqlite") != 0 && !is_postgresql(from_spec))
		return cli_usage_err("migrate-directory",
		                     "--from must be sqlite or a postgresql:// URL");
	if (!is_postgresql(to_spec))
		return cli_usage_err("migrate-directory", "--to must be a postgresql:// URL");
	if (strcmp(from_spec, to_spec) == 0)
		return cli_usage_err("migrate-directory", "--from and --to are the same directory");
	status = cli_load_config(conf, &cfg);
	if (status != 0)
		return status;
	/* The config as it is, but for the directory. */
	from_cfg = *cfg;
	from_cfg.directory = (char *)from_spec;
	to_cfg = *cfg;
	to_cfg.directory = (char *)to_spec;
	if (dir_open(&from_cfg, false, &from, &err) < 0) {
		cli_err("%s", err);
		status = EX_UNAVAILABLE;
		goto out;
	}
	if (dir_open(&to_cfg, true, &c.to, &err) < 0) {
		cli_err("%s", err);
		status = EX_UNAVAILABLE;
		goto out;
	}
	/* Both open (a SQLite source's secrets are auth_as's alone). */
	status = drop_root(cfg);
	if (status != 0)
		goto out;
	if (dir_transfer_begin(c.to, &err) < 0) {
		cli_err("%s", err);
		status = EX_UNAVAILABLE;
		goto out;
	}
	status = copy_all(from, &c);
	if (status != 0) {
		dir_transfer_abort(c.to);
		cli_err("nothing was copied");
		goto out;
	}
	if (dir_transfer_commit(c.to, &err) < 0) {
		cli_err("%s", err);
		status = EX_UNAVAILABLE;
		goto out;
	}
	printf("copied %zu domain%s, %zu mailbox%s and %zu alias%s\n", c.domains,
	       c.domains == 1 ? "" : "s", c.nusers, c.nusers == 1 ? "" : "es", c.aliases,
	       c.aliases == 1 ? "" : "es");
out:
	if (c.users != NULL) {
		OPENSSL_cleanse(c.users, c.nusers * sizeof(*c.users));
		free(c.users);
	}
	dir_close(&c.to);
	dir_close(&from);
	config_free(&cfg);
	return status;
}
