/* `pillar alias add|del|list`: addresses that deliver to mailboxes. */
#include "cli/cli.h"

#include "core/config.h"
#include "core/util.h"
#include "directory/directory.h"

#include <getopt.h>
#include <stdlib.h>
#include <string.h>
#include <sysexits.h>

static const char alias_help[] =
    "usage: pillar alias add ADDRESS TARGET... [-c FILE]\n"
    "       pillar alias del ADDRESS [TARGET...] [-c FILE]\n"
    "       pillar alias list [DOMAIN] [--json] [-c FILE]\n"
    "\n"
    "Manage aliases: addresses in a local domain that deliver to one or more\n"
    "mailboxes. A target is a mailbox or another alias, in any local domain;\n"
    "aliases may nest 8 levels deep and reach at most 32 mailboxes, and may\n"
    "not loop. An alias cannot have a mailbox's address.\n"
    "\n"
    "Every local domain accepts postmaster@DOMAIN (RFC 5321 section 4.5.1): it\n"
    "goes to the first mailbox created in the domain unless an alias for\n"
    "postmaster@DOMAIN says otherwise.\n"
    "\n"
    "'alias del' without TARGET removes the alias; with targets, only those.\n"
    "Deleting a mailbox (pillar user del) removes it from every alias.\n"
    "\n"
    "  -c, --config FILE  the config file\n"
    "      --json         list as a JSON array\n"
    "  -h, --help         show this help\n";

/* An address or target from the command line, checked and lower-cased
 * into buf. Returns 0, or EX_DATAERR after saying why. */
static int check_arg(const char *what, const char *arg, char buf[DIR_ADDRESS_MAX + 1])
{
	const char *err;

	if (strlen(arg) > DIR_ADDRESS_MAX) {
		cli_err("bad %s: longer than %d characters", what, DIR_ADDRESS_MAX);
		return EX_DATAERR;
	}
	snprintf(buf, DIR_ADDRESS_MAX + 1, "%s", arg);
	if (dir_check_address(buf, &err) < 0) {
		cli_err("bad %s '%s': %s", what, arg, err);
		return EX_DATAERR;
	}
	return 0;
}

/* ---- list ---- */

struct list_ctx {
	bool json;
	bool first;                        /* nothing printed yet */
	char current[DIR_ADDRESS_MAX + 1]; /* the alias whose targets are being printed */
};

/* Rows come ordered by address: one line (or JSON object) per alias with
 * all its targets. */
static void print_alias(void *ctx, const char *address, const char *target)
{
	struct list_ctx *lc = ctx;
	bool same = !lc->first && strcmp(lc->current, address) == 0;

	if (lc->json) {
		if (same) {
			printf(", ");
		} else {
			if (!lc->first)
				printf("]}");
			printf("%s\n  {\"address\": ", lc->first ? "" : ",");
			cli_json_string(stdout, address);
			printf(", \"targets\": [");
		}
		cli_json_string(stdout, target);
	} else if (same) {
		printf(", %s", target);
	} else {
		/* The header only above rows: an empty list prints nothing. */
		if (lc->first)
			printf("%-40s %s\n", "ALIAS", "TARGETS");
		else
			printf("\n");
		printf("%-40s %s", address, target);
	}
	lc->first = false;
	snprintf(lc->current, sizeof(lc->current), "%s", address);
}

static int alias_list(struct dir *dir, const char *domain, bool json)
{
	struct list_ctx lc = {.json = json, .first = true};
	const char *err;

	if (domain != NULL) {
		int r = dir_domain_exists(dir, domain, &err);

		if (r < 0) {
			cli_err("%s", err);
			return 1;
		}
		if (r == 0) {
			cli_err("no such domain %s", domain);
			return EX_NOUSER;
		}
	}
	if (json)
		printf("[");
	if (dir_alias_list(dir, domain, print_alias, &lc, &err) < 0) {
		if (!lc.first)
			printf("\n");
		cli_err("%s", err);
		return 1;
	}
	if (json)
		printf("%s]\n", lc.first ? "" : "]}\n");
	else if (!lc.first)
		printf("\n");
	return 0;
}

/* ---- add ---- */

/* Undo the targets added so far, so a refused target leaves the alias as
 * it was (each add is its own transaction in the directory). */
static void undo_adds(struct dir *dir, const char *address, char (*targets)[DIR_ADDRESS_MAX + 1],
                      int n)
{
	const char *err;

	for (int i = 0; i < n; i++) {
		if (dir_alias_del(dir, address, targets[i], &err) < 0)
			cli_err("and %s -> %s could not be taken back: %s", address, targets[i],
			        err);
	}
}

static int alias_add(struct dir *dir, const char *address, char (*targets)[DIR_ADDRESS_MAX + 1],
                     int n)
{
	const char *domain = strchr(address, '@') + 1, *err;
	enum dir_rcpt_result result;
	struct dir_rcpt *rcpt;
	struct dir_user user;
	int r, status = 0;

	/* The checks the directory makes too, done first for a precise
	 * exit status. */
	r = dir_domain_exists(dir, domain, &err);
	if (r <= 0) {
		if (r == 0)
			cli_err("no such domain %s (add it with 'pillar domain add %s')", domain,
			        domain);
		else
			cli_err("%s", err);
		return r == 0 ? EX_NOUSER : 1;
	}
	r = dir_user_lookup(dir, address, &user, &err);
	if (r != 0) {
		if (r > 0)
			cli_err("%s is a mailbox; an alias cannot have its address", address);
		else
			cli_err("%s", err);
		return r > 0 ? EX_CANTCREAT : 1;
	}
	rcpt = xmalloc(sizeof(*rcpt));
	for (int i = 0; i < n && status == 0; i++) {
		if (dir_rcpt_resolve(dir, targets[i], &result, rcpt, &err) < 0) {
			cli_err("%s", err);
			status = 1;
		} else if (result != DIR_RCPT_OK) {
			cli_err("no such mailbox or alias %s%s", targets[i],
			        result == DIR_RCPT_NOT_LOCAL ? " (not a local domain)" : "");
			status = EX_NOUSER;
		}
	}
	free(rcpt);
	for (int i = 0; i < n && status == 0; i++) {
		if (dir_alias_add(dir, address, targets[i], &err) < 0) {
			cli_err("%s", err);
			undo_adds(dir, address, targets, i);
			status = EX_DATAERR;
		}
	}
	if (status == 0) {
		printf("alias %s ->", address);
		for (int i = 0; i < n; i++)
			printf("%s %s", i == 0 ? "" : ",", targets[i]);
		printf(" added\n");
	}
	return status;
}

/* ---- del ---- */

struct has_ctx {
	const char *address;
	char (*targets)[DIR_ADDRESS_MAX + 1];
	int n;
	bool *found;
	bool alias; /* the address has any row */
};

static void mark_target(void *ctx, const char *address, const char *target)
{
	struct has_ctx *hc = ctx;

	if (strcmp(address, hc->address) != 0)
		return;
	hc->alias = true;
	for (int i = 0; i < hc->n; i++) {
		if (strcmp(hc->targets[i], target) == 0)
			hc->found[i] = true;
	}
}

static int alias_del(struct dir *dir, const char *address, char (*targets)[DIR_ADDRESS_MAX + 1],
                     int n)
{
	const char *domain = strchr(address, '@') + 1, *err;
	struct has_ctx hc = {.address = address, .targets = targets, .n = n};
	int status = 0;

	/* Check every target first, so that a wrong one deletes nothing. */
	hc.found = xcalloc(n > 0 ? (size_t)n : 1, sizeof(bool));
	if (dir_alias_list(dir, domain, mark_target, &hc, &err) < 0) {
		cli_err("%s", err);
		free(hc.found);
		return 1;
	}
	if (!hc.alias) {
		cli_err("no such alias %s", address);
		free(hc.found);
		return EX_NOUSER;
	}
	for (int i = 0; i < n; i++) {
		if (!hc.found[i]) {
			cli_err("alias %s does not point to %s", address, targets[i]);
			free(hc.found);
			return EX_NOUSER;
		}
	}
	free(hc.found);

	if (n == 0) {
		if (dir_alias_del(dir, address, NULL, &err) < 0) {
			cli_err("%s", err);
			return 1;
		}
		printf("alias %s deleted\n", address);
		return 0;
	}
	for (int i = 0; i < n; i++) {
		if (dir_alias_del(dir, address, targets[i], &err) < 0) {
			cli_err("%s", err);
			status = 1;
			continue;
		}
		printf("alias %s no longer delivers to %s\n", address, targets[i]);
	}
	return status;
}

/* ---- dispatch ---- */

int cli_alias(int argc, char **argv)
{
	static const struct option opts[] = {
	    {"config", required_argument, NULL, 'c'},
	    {"json", no_argument, NULL, 'j'},
	    {"help", no_argument, NULL, 'h'},
	    {NULL, 0, NULL, 0},
	};
	const char *conf = NULL, *sub, *err;
	bool json = false, list, add;
	char address[DIR_DOMAIN_MAX + 1]; /* or a DOMAIN for list */
	char(*targets)[DIR_ADDRESS_MAX + 1] = NULL;
	struct config *cfg;
	struct dir *dir;
	int c, status, ntargets = 0;

	if (argc < 2) {
		fputs(alias_help, stderr);
		return EX_USAGE;
	}
	sub = argv[1];
	if (strcmp(sub, "--help") == 0 || strcmp(sub, "-h") == 0) {
		fputs(alias_help, stdout);
		return 0;
	}
	list = strcmp(sub, "list") == 0;
	add = strcmp(sub, "add") == 0;
	if (!list && !add && strcmp(sub, "del") != 0)
		return cli_usage_err("alias", "unknown alias command '%s'", sub);

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
		case 'h':
			fputs(alias_help, stdout);
			return 0;
		case ':':
			return cli_usage_err("alias", "option %s needs a value", argv[optind - 1]);
		default:
			return cli_usage_err("alias", "unknown option %s", argv[optind - 1]);
		}
	}
	if (json && !list)
		return cli_usage_err("alias", "--json is for alias list");
	if (list) {
		if (argc - optind > 1)
			return cli_usage_err("alias", "unexpected argument '%s'", argv[optind + 1]);
		if (optind < argc) {
			if (strlen(argv[optind]) > DIR_DOMAIN_MAX) {
				cli_err("bad domain: longer than %d characters", DIR_DOMAIN_MAX);
				return EX_DATAERR;
			}
			snprintf(address, sizeof(address), "%s", argv[optind]);
			if (dir_check_domain(address, &err) < 0) {
				cli_err("bad domain '%s': %s", argv[optind], err);
				return EX_DATAERR;
			}
		}
	} else {
		if (optind >= argc)
			return cli_usage_err("alias", "alias %s needs an ADDRESS", sub);
		if (add && argc - optind < 2)
			return cli_usage_err("alias", "alias add needs at least one TARGET");
		if (argc - optind - 1 > DIR_MAX_TARGETS)
			return cli_usage_err("alias", "at most %d targets at once",
			                     DIR_MAX_TARGETS);
		status = check_arg("address", argv[optind], address);
		if (status != 0)
			return status;
		ntargets = argc - optind - 1;
		targets = xcalloc(ntargets > 0 ? (size_t)ntargets : 1, sizeof(*targets));
		for (int i = 0; i < ntargets; i++) {
			status = check_arg("target", argv[optind + 1 + i], targets[i]);
			if (status != 0) {
				free(targets);
				return status;
			}
		}
	}

	status = cli_admin_open(conf, &cfg, &dir);
	if (status == 0) {
		if (list)
			status = alias_list(dir, optind < argc ? address : NULL, json);
		else if (add)
			status = alias_add(dir, address, targets, ntargets);
		else
			status = alias_del(dir, address, targets, ntargets);
		dir_close(&dir);
		config_free(&cfg);
	}
	free(targets);
	return status;
}
