/* `pillar domain add|del|list`: the local domains. */
#include "cli/cli.h"

#include "core/config.h"
#include "core/util.h"
#include "directory/directory.h"

#include <errno.h>
#include <getopt.h>
#include <stdlib.h>
#include <string.h>
#include <sysexits.h>
#include <unistd.h>

static const char domain_help[] =
    "usage: pillar domain add DOMAIN [-c FILE]\n"
    "       pillar domain del DOMAIN [--force [--purge] [--kick]] [-c FILE]\n"
    "       pillar domain list [--json] [-c FILE]\n"
    "\n"
    "Manage the domains Pillar receives mail for. A domain with mailboxes is\n"
    "deleted only with --force, which deletes its mailboxes as 'pillar user del'\n"
    "does (their Maildirs kept in <state_dir>/deleted/, or removed with --purge);\n"
    "it refuses while a POP3 session has one of them open (with a PostgreSQL\n"
    "directory, on any server sharing it), unless --kick ends those sessions\n"
    "(this server's). Deleting a domain deletes its aliases.\n"
    "\n"
    "Every domain accepts mail for postmaster@DOMAIN (RFC 5321 section 4.5.1):\n"
    "it goes to the first mailbox created in the domain unless an alias says\n"
    "otherwise (pillar alias add postmaster@DOMAIN TARGET).\n"
    "\n"
    "  -c, --config FILE  the config file\n"
    "      --force        also delete the domain's mailboxes\n"
    "      --purge        with --force: delete their mail too\n"
    "      --kick         with --force: end their open sessions first\n"
    "      --json         list as a JSON array\n"
    "  -h, --help         show this help\n";

struct list_ctx {
	bool json;
	bool first; /* nothing printed yet */
};

static void print_domain(void *ctx, const char *domain, uint64_t mailboxes)
{
	struct list_ctx *lc = ctx;

	if (!lc->json) {
		/* The header only above rows: an empty list prints nothing. */
		if (lc->first)
			printf("%-40s %s\n", "DOMAIN", "MAILBOXES");
		lc->first = false;
		printf("%-40s %llu\n", domain, (unsigned long long)mailboxes);
		return;
	}
	printf("%s\n  {\"domain\": ", lc->first ? "" : ",");
	cli_json_string(stdout, domain);
	printf(", \"mailboxes\": %llu}", (unsigned long long)mailboxes);
	lc->first = false;
}

static int domain_list(struct dir *dir, bool json)
{
	struct list_ctx lc = {.json = json, .first = true};
	const char *err;

	if (json)
		printf("[");
	if (dir_domain_list(dir, print_domain, &lc, &err) < 0) {
		cli_err("%s", err);
		return 1;
	}
	if (json)
		printf("%s]\n", lc.first ? "" : "\n");
	return 0;
}

static int domain_add(struct dir *dir, const char *domain)
{
	const char *err;
	int r = dir_domain_exists(dir, domain, &err);

	if (r < 0) {
		cli_err("%s", err);
		return 1;
	}
	if (r > 0) {
		cli_err("domain %s already exists", domain);
		return EX_CANTCREAT;
	}
	if (dir_domain_add(dir, domain, &err) < 0) {
		cli_err("%s", err);
		return 1;
	}
	printf("domain %s added\n", domain);
	printf("postmaster@%s goes to the first mailbox created in %s unless an alias says\n"
	       "otherwise (RFC 5321 section 4.5.1): pillar alias add postmaster@%s TARGET\n",
	       domain, domain, domain);
	return 0;
}

static void count_alias(void *ctx, const char *address, const char *target)
{
	size_t *n = ctx;
	static char last[DIR_ADDRESS_MAX + 1];

	(void)target;
	/* Rows come ordered by address: count each alias once. */
	if (*n == 0 || strcmp(last, address) != 0)
		(*n)++;
	snprintf(last, sizeof(last), "%s", address);
}

struct del_opts {
	bool force, purge, kick;
};

static void collect_address(void *ctx, const struct dir_user *user)
{
	strlist_add(ctx, user->address);
}

/* --force: delete the domain's mailboxes first, one by one as `user del`
 * does (each undone by itself if it fails). Every mailbox is checked for an
 * open POP3 session (with a PostgreSQL directory, on any server sharing it)
 * before any is touched, so that a busy mailbox refuses the whole command
 * instead of stopping it half-way: any, without --kick; with it, one open
 * on another server (--kick ends only this server's sessions).
 * Returns 0 or an exit status after printing why. */
static int delete_mailboxes(struct dir *dir, const struct config *cfg, const char *domain,
                            const struct del_opts *o, struct cli_kicker *kicker)
{
	struct strlist users = {0};
	const char *err;
	int status = 0;

	if (dir_user_list(dir, domain, collect_address, &users, &err) < 0) {
		cli_err("%s", err);
		return 1;
	}
	for (size_t i = 0; i < users.count; i++) {
		int r = cli_mailbox_in_use(cfg, users.items[i]);

		if (r == 1 && o->kick)
			continue; /* kicked when its turn comes */
		if (r == 1)
			cli_err("cannot delete domain %s: a POP3 session has %s open (end it "
			        "with 'pillar kick %s', or add --kick)",
			        domain, users.items[i], users.items[i]);
		else if (r == 2)
			cli_err("cannot delete domain %s: a POP3 session has %s open on another "
			        "server (end it there with 'pillar kick %s')",
			        domain, users.items[i], users.items[i]);
		if (r != 0) {
			status = r > 0 ? EX_TEMPFAIL : 1;
			goto out;
		}
	}
	for (size_t i = 0; i < users.count; i++) {
		status = cli_user_del(dir, cfg, users.items[i], o->purge, kicker);
		if (status != 0) {
			cli_err("domain %s was not deleted: %zu of its %zu mailboxes were", domain,
			        i, users.count);
			goto out;
		}
	}
out:
	strlist_free(&users);
	return status;
}

static int domain_del(struct dir *dir, const struct config *cfg, const char *domain,
                      const struct del_opts *o, struct cli_kicker *kicker)
{
	const char *err;
	char *path;
	size_t aliases = 0;
	int r = dir_domain_exists(dir, domain, &err);

	if (r < 0) {
		cli_err("%s", err);
		return 1;
	}
	if (r == 0) {
		cli_err("no such domain %s", domain);
		return EX_NOUSER;
	}
	if (o->force) {
		r = delete_mailboxes(dir, cfg, domain, o, kicker);
		if (r != 0)
			return r;
	}
	if (dir_alias_list(dir, domain, count_alias, &aliases, &err) < 0) {
		cli_err("%s", err);
		return 1;
	}
	if (dir_domain_del(dir, domain, &err) < 0) {
		if (strstr(err, "still has") != NULL)
			cli_err("%s (delete them first, or use --force)", err);
		else
			cli_err("%s", err);
		return EX_DATAERR;
	}
	/* Its mailboxes are gone, so <mail_root>/<domain> is normally empty;
	 * if something is still in it, leave it for the administrator. */
	path = xasprintf("%s/%s", cfg->mail_root, domain);
	if (rmdir(path) < 0 && errno != ENOENT)
		cli_err("note: %s was kept: %s", path, strerror(errno));
	free(path);
	if (aliases > 0)
		printf("domain %s deleted, with its %zu alias%s\n", domain, aliases,
		       aliases == 1 ? "" : "es");
	else
		printf("domain %s deleted\n", domain);
	return 0;
}

int cli_domain(int argc, char **argv)
{
	static const struct option opts[] = {
	    {"config", required_argument, NULL, 'c'},
	    {"json", no_argument, NULL, 'j'},
	    {"force", no_argument, NULL, 'f'},
	    {"purge", no_argument, NULL, 'p'},
	    {"kick", no_argument, NULL, 'k'},
	    {"help", no_argument, NULL, 'h'},
	    {NULL, 0, NULL, 0},
	};
	const char *conf = NULL, *sub, *err;
	bool json = false;
	struct del_opts del = {0};
	struct cli_kicker *kicker = NULL;
	struct config *cfg;
	struct dir *dir;
	char domain[DIR_DOMAIN_MAX + 1];
	int c, status;

	if (argc < 2) {
		fputs(domain_help, stderr);
		return EX_USAGE;
	}
	sub = argv[1];
	if (strcmp(sub, "--help") == 0 || strcmp(sub, "-h") == 0) {
		fputs(domain_help, stdout);
		return 0;
	}
	if (strcmp(sub, "add") != 0 && strcmp(sub, "del") != 0 && strcmp(sub, "list") != 0)
		return cli_usage_err("domain", "unknown domain command '%s'", sub);

	argc--;
	argv++;
	optind = 0;
	opterr = 0;
	while ((c = getopt_long(argc, argv, ":c:h", opts, NULL)) != -1) {
		switch (c) {
		case 'c':
			conf = optarg;
			break;
		case 'j':
			json = true;
			break;
		case 'f':
			del.force = true;
			break;
		case 'p':
			del.purge = true;
			break;
		case 'k':
			del.kick = true;
			break;
		case 'h':
			fputs(domain_help, stdout);
			return 0;
		case ':':
			return cli_usage_err("domain", "option %s needs a value", argv[optind - 1]);
		default:
			return cli_usage_err("domain", "unknown option %s", argv[optind - 1]);
		}
	}
	if ((del.force || del.purge || del.kick) && strcmp(sub, "del") != 0)
		return cli_usage_err("domain", "--force, --purge and --kick are for domain del");
	if ((del.purge || del.kick) && !del.force)
		return cli_usage_err("domain", "--purge and --kick go with --force");
	if (strcmp(sub, "list") == 0) {
		if (optind < argc)
			return cli_usage_err("domain", "unexpected argument '%s'", argv[optind]);
	} else {
		if (optind != argc - 1)
			return cli_usage_err("domain", "domain %s takes one DOMAIN", sub);
		if (json)
			return cli_usage_err("domain", "--json is for domain list");
		if (strlen(argv[optind]) >= sizeof(domain)) {
			cli_err("bad domain: longer than 255 characters");
			return EX_DATAERR;
		}
		snprintf(domain, sizeof(domain), "%s", argv[optind]);
		if (dir_check_domain(domain, &err) < 0) {
			cli_err("bad domain '%s': %s", argv[optind], err);
			return EX_DATAERR;
		}
	}

	status = cli_admin_open_kicker(conf, &cfg, &dir, del.kick ? &kicker : NULL);
	if (status != 0)
		return status;
	if (strcmp(sub, "list") == 0)
		status = domain_list(dir, json);
	else if (strcmp(sub, "add") == 0)
		status = domain_add(dir, domain);
	else
		status = domain_del(dir, cfg, domain, &del, kicker);
	dir_close(&dir);
	cli_kicker_free(&kicker);
	config_free(&cfg);
	return status;
}
