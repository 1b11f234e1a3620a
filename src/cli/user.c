/* `pillar user add|del|passwd|quota|list`: mailboxes. */
#include "cli/cli.h"

#include "auth/password.h"
#include "auth/scram.h"
#include "core/config.h"
#include "core/util.h"
#include "directory/directory.h"
#include "store/maildir.h"
#include "store/maildir_name.h"

#include <crypt.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <openssl/crypto.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sysexits.h>
#include <time.h>
#include <unistd.h>

static const char user_help[] =
    "usage: pillar user add ADDRESS [--password-stdin | --password-hash HASH] [-c FILE]\n"
    "       pillar user del ADDRESS [--purge] [-c FILE]\n"
    "       pillar user passwd ADDRESS [--password-stdin | --password-hash HASH] [--apop]\n"
    "                          [-c FILE]\n"
    "       pillar user quota ADDRESS [--bytes SIZE] [--messages N] [-c FILE]\n"
    "       pillar user list [DOMAIN] [--json] [-c FILE]\n"
    "\n"
    "Manage mailboxes. The domain must exist (pillar domain add). Without\n"
    "--password-stdin the password is asked for twice on the terminal. The\n"
    "password is stored as a yescrypt hash and as SCRAM-SHA-256 keys, neither\n"
    "of which gives the password back.\n"
    "--password-hash takes an existing crypt(3) hash instead, for moving\n"
    "mailboxes from another server: yescrypt ($y$), sha512-crypt ($6$),\n"
    "sha256-crypt ($5$) or bcrypt ($2b$, $2y$, $2a$). Quote it for the shell.\n"
    "Such a mailbox can log in with USER/PASS, PLAIN and LOGIN at once, and\n"
    "with SCRAM-SHA-256 after its first such login (which computes its keys).\n"
    "--apop also lets the mailbox log in with POP3 APOP (when the config has\n"
    "apop = yes). WARNING: APOP needs the password itself, so --apop STORES\n"
    "THE PASSWORD IN PLAIN TEXT in the directory database. Prefer SCRAM over\n"
    "TLS; use --apop only for old clients that know nothing else. A later\n"
    "'user passwd' without --apop removes it.\n"
    "'user del' moves the Maildir to <state_dir>/deleted/<address>.<time>;\n"
    "with --purge it is removed. The mailbox is also removed from every alias\n"
    "that delivers to it.\n"
    "'user quota' sets the limits a mailbox may hold (0 = no limit; a limit\n"
    "not given stays as it is). A full mailbox refuses new mail with a\n"
    "temporary error, so senders retry until it has room again.\n"
    "\n"
    "  -c, --config FILE   the config file\n"
    "      --password-stdin  read the password as one line from stdin\n"
    "      --password-hash HASH  use this crypt(3) hash (no SCRAM keys until\n"
    "                      the first password login)\n"
    "      --apop          also store the password in plain text for APOP\n"
    "      --purge         delete the mail too\n"
    "      --bytes SIZE    quota in bytes; K, M and G multiply by 1024\n"
    "      --messages N    quota in messages\n"
    "      --json          list as a JSON array\n"
    "  -h, --help          show this help\n";

enum {
	OPT_PASSWORD_STDIN = 256,
	OPT_PASSWORD_HASH,
	OPT_APOP,
	OPT_PURGE,
	OPT_JSON,
	OPT_BYTES,
	OPT_MESSAGES
};

struct user_opts {
	const char *conf;
	bool password_stdin, purge, json, apop;
	const char *password_hash;    /* --password-hash, NULL when not */
	const char *bytes, *messages; /* user quota: as given, NULL when not */
};

/* ---- list ---- */

struct usage_count {
	uint64_t messages, bytes;
	bool missing; /* no Maildir at all */
};

/* Count one of new/ and cur/ from the file names' S= fields; files without
 * one are stat'ed, never read. */
static void count_subdir(const char *maildir, const char *sub, struct usage_count *u)
{
	char *path = xasprintf("%s/%s", maildir, sub);
	DIR *d = opendir(path);
	struct dirent *de;

	free(path);
	if (d == NULL) {
		if (errno == ENOENT)
			u->missing = true;
		return;
	}
	while ((de = readdir(d)) != NULL) {
		struct maildir_name name;
		struct stat st;

		if (maildir_name_parse(de->d_name, &name) < 0)
			continue;
		if (name.has_size) {
			u->messages++;
			u->bytes += name.size;
		} else if (fstatat(dirfd(d), de->d_name, &st, AT_SYMLINK_NOFOLLOW) == 0 &&
		           S_ISREG(st.st_mode)) {
			u->messages++;
			u->bytes += (uint64_t)st.st_size;
		}
	}
	closedir(d);
}

struct list_ctx {
	const struct config *cfg;
	bool json;
	bool first; /* nothing printed yet */
};

static void format_time(int64_t t, char *buf, size_t size)
{
	time_t tt = (time_t)t;
	struct tm tm;

	if (t <= 0 || localtime_r(&tt, &tm) == NULL)
		snprintf(buf, size, "never");
	else
		strftime(buf, size, "%Y-%m-%d %H:%M", &tm);
}

static void print_user(void *ctx, const struct dir_user *user)
{
	struct list_ctx *lc = ctx;
	struct usage_count u = {0};
	char *path = maildir_path(lc->cfg->mail_root, user->address);
	char quota[32], when[32];

	count_subdir(path, "new", &u);
	count_subdir(path, "cur", &u);
	free(path);

	if (lc->json) {
		printf("%s\n  {\"address\": ", lc->first ? "" : ",");
		cli_json_string(stdout, user->address);
		printf(", \"messages\": %llu, \"bytes\": %llu, \"quota_bytes\": %llu,"
		       " \"quota_messages\": %llu, \"locked\": %s, \"last_login\": ",
		       (unsigned long long)u.messages, (unsigned long long)u.bytes,
		       (unsigned long long)user->quota_bytes,
		       (unsigned long long)user->quota_messages, user->locked ? "true" : "false");
		if (user->last_login > 0)
			printf("%lld}", (long long)user->last_login);
		else
			printf("null}");
		lc->first = false;
		return;
	}
	/* The header only above rows: an empty list prints nothing. */
	if (lc->first)
		printf("%-40s %8s %12s %12s %-6s %s\n", "ADDRESS", "MESSAGES", "BYTES", "QUOTA",
		       "LOCKED", "LAST LOGIN");
	lc->first = false;
	if (user->quota_bytes > 0)
		snprintf(quota, sizeof(quota), "%llu", (unsigned long long)user->quota_bytes);
	else
		snprintf(quota, sizeof(quota), "-");
	format_time(user->last_login, when, sizeof(when));
	printf("%-40s %8llu %12llu %12s %-6s %s\n", user->address, (unsigned long long)u.messages,
	       (unsigned long long)u.bytes, quota, user->locked ? "yes" : "no", when);
}

static int user_list(struct dir *dir, const struct config *cfg, const char *domain, bool json)
{
	struct list_ctx lc = {.cfg = cfg, .json = json, .first = true};
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
	if (dir_user_list(dir, domain, print_user, &lc, &err) < 0) {
		cli_err("%s", err);
		return 1;
	}
	if (json)
		printf("%s]\n", lc.first ? "" : "\n");
	return 0;
}

/* ---- add, passwd ---- */

/* What a mailbox is given for its password. */
struct credentials {
	char *hash;
	struct dir_scram scram;
	bool has_scram;
	char *apop; /* the password itself, with --apop */
};

static void credentials_free(struct credentials *c)
{
	free(c->hash);
	if (c->apop != NULL) {
		OPENSSL_cleanse(c->apop, strlen(c->apop));
		free(c->apop);
	}
	OPENSSL_cleanse(c, sizeof(*c));
}

/* A crypt(3) hash from --password-hash: a prefix we accept, only the
 * characters those hashes use, and complete: hashing any password with it
 * as the setting must give a string of the same form and length (so "$6$",
 * a salt without its hash, or a truncated hash are refused instead of
 * making a mailbox nobody can log in to). */
static bool hash_acceptable(const char *hash)
{
	struct crypt_data *cd;
	bool ok;

	if (!password_hash_supported(hash) || strlen(hash) > DIR_HASH_MAX)
		return false;
	for (const char *p = hash; *p != '\0'; p++) {
		if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') ||
		      (*p >= '0' && *p <= '9') || *p == '.' || *p == '/' || *p == '$' ||
		      *p == '=' || *p == ','))
			return false;
	}
	cd = xcalloc(1, sizeof(*cd));
	ok = crypt_rn("probe", hash, cd, (int)sizeof(*cd)) != NULL && cd->output[0] == '$' &&
	     strlen(cd->output) == strlen(hash) &&
	     strrchr(cd->output, '$') - cd->output == strrchr(hash, '$') - hash &&
	     memcmp(cd->output, hash, (size_t)(strrchr(hash, '$') - hash)) == 0;
	free(cd);
	return ok;
}

/* Fill c from --password-hash, or from a password read from stdin or the
 * terminal: its yescrypt hash, its SCRAM keys and, with --apop, itself.
 * Returns 0, or an exit status after printing why. */
static int new_credentials(const struct user_opts *o, struct credentials *c)
{
	const char *err;
	int status = 0;
	char *pw;

	memset(c, 0, sizeof(*c));
	if (o->password_hash != NULL) {
		c->hash = xstrdup(o->password_hash);
		return 0;
	}
	pw = cli_read_new_password(o->password_stdin, &status);
	if (pw == NULL)
		return status;
	c->hash = password_hash(pw, &err);
	if (c->hash == NULL) {
		cli_err("%s", err);
		status = EX_SOFTWARE;
	} else if (scram_keys_from_password(pw, &c->scram, &err) == 0) {
		c->has_scram = true;
	} else {
		/* Not fatal: every other way to log in still works. */
		cli_err("warning: no SCRAM-SHA-256 keys for this password: %s", err);
	}
	if (status == 0 && o->apop) {
		if (strlen(pw) > DIR_APOP_SECRET_MAX) {
			cli_err("an APOP password may have at most %d bytes", DIR_APOP_SECRET_MAX);
			status = EX_DATAERR;
		} else {
			c->apop = xstrdup(pw);
		}
	}
	OPENSSL_cleanse(pw, strlen(pw));
	free(pw);
	if (status != 0)
		credentials_free(c);
	return status;
}

/* Say, loudly, what --apop just did. */
static void apop_warning(const struct config *cfg, const char *address)
{
	char *db = config_sqlite_path(cfg);

	fprintf(stderr,
	        "WARNING: APOP needs the password itself: the password of %s is now stored\n"
	        "in PLAIN TEXT in %s. Anyone who can read that file can\n"
	        "read it. 'pillar user passwd %s' without --apop removes it.\n",
	        address, strcmp(cfg->directory, "sqlite") == 0 ? db : "the directory", address);
	if (!cfg->apop)
		fprintf(stderr, "note: the config has apop = no, so APOP stays off until it "
		                "says apop = yes.\n");
	free(db);
}

/* 1 exists, 0 not, -1 error (printed). */
static int user_exists(struct dir *dir, const char *address)
{
	struct dir_user user;
	const char *err;
	int r = dir_user_lookup(dir, address, &user, &err);

	OPENSSL_cleanse(user.password_hash, sizeof(user.password_hash));
	if (r < 0)
		cli_err("%s", err);
	return r;
}

static int user_add(struct dir *dir, const struct config *cfg, const char *address,
                    const struct user_opts *o)
{
	const char *domain = strchr(address, '@') + 1, *err;
	struct credentials cred;
	struct stat st;
	char *path;
	bool existed;
	int r, status = 0;

	r = dir_domain_exists(dir, domain, &err);
	if (r < 0) {
		cli_err("%s", err);
		return 1;
	}
	if (r == 0) {
		cli_err("no such domain %s (add it with 'pillar domain add %s')", domain, domain);
		return EX_NOUSER;
	}
	r = user_exists(dir, address);
	if (r != 0) {
		if (r > 0)
			cli_err("mailbox %s already exists", address);
		return r > 0 ? EX_CANTCREAT : 1;
	}
	status = new_credentials(o, &cred);
	if (status != 0)
		return status;

	/* Maildir first, then the directory row: a mailbox that can log in
	 * always has somewhere to keep its mail. */
	path = maildir_path(cfg->mail_root, address);
	existed = lstat(path, &st) == 0;
	if (maildir_create(path, &err) < 0) {
		cli_err("cannot create the Maildir %s: %s", path, err);
		status = EX_CANTCREAT;
	} else if (dir_user_add(dir, address, cred.hash, &err) < 0) {
		cli_err("%s", err);
		if (!existed)
			cli_remove_tree(path);
		status = 1;
	} else if ((cred.has_scram || cred.apop != NULL) &&
	           dir_user_set_credentials(dir, address, cred.hash,
	                                    cred.has_scram ? &cred.scram : NULL, cred.apop,
	                                    &err) < 0) {
		/* The mailbox works; SCRAM keys come at its first login. */
		printf("mailbox %s added\n", address);
		cli_err("but its SCRAM keys%s could not be stored: %s",
		        cred.apop != NULL ? " and APOP secret" : "", err);
		status = 1;
	} else {
		printf("mailbox %s added%s\n", address,
		       o->password_hash != NULL ? " (SCRAM keys at its first password login)" : "");
		if (cred.apop != NULL)
			apop_warning(cfg, address);
	}
	free(path);
	credentials_free(&cred);
	return status;
}

static int user_passwd(struct dir *dir, const struct config *cfg, const char *address,
                       const struct user_opts *o)
{
	struct credentials cred;
	const char *err;
	int r, status;

	r = user_exists(dir, address);
	if (r <= 0) {
		if (r == 0)
			cli_err("no such mailbox %s", address);
		return r == 0 ? EX_NOUSER : 1;
	}
	status = new_credentials(o, &cred);
	if (status != 0)
		return status;
	/* Hash, keys and APOP secret in one statement: never a new hash with
	 * the old password's keys or APOP secret. */
	if (dir_user_set_credentials(dir, address, cred.hash, cred.has_scram ? &cred.scram : NULL,
	                             cred.apop, &err) < 0) {
		cli_err("%s", err);
		status = 1;
	} else {
		printf("password of %s changed%s\n", address,
		       o->password_hash != NULL ? " (SCRAM keys at its first password login)" : "");
		if (cred.apop != NULL)
			apop_warning(cfg, address);
	}
	credentials_free(&cred);
	return status;
}

/* ---- quota ---- */

static void print_limit(uint64_t v, const char *unit)
{
	if (v == 0)
		printf("no %s limit", unit);
	else
		printf("%llu %s%s", (unsigned long long)v, unit, v == 1 ? "" : "s");
}

static int user_quota(struct dir *dir, const char *address, const struct user_opts *o)
{
	struct dir_user user;
	uint64_t bytes, messages;
	const char *err;
	int r = dir_user_lookup(dir, address, &user, &err);

	OPENSSL_cleanse(user.password_hash, sizeof(user.password_hash));
	if (r <= 0) {
		if (r == 0)
			cli_err("no such mailbox %s", address);
		else
			cli_err("%s", err);
		return r == 0 ? EX_NOUSER : 1;
	}
	bytes = user.quota_bytes;
	messages = user.quota_messages;
	/* Parsed (again) here only for the values; the syntax was checked
	 * before the directory was opened. */
	if (o->bytes != NULL)
		parse_size(o->bytes, &bytes);
	if (o->messages != NULL)
		parse_uint(o->messages, strlen(o->messages), INT64_MAX, &messages);
	if (dir_user_set_quota(dir, address, bytes, messages, &err) < 0) {
		cli_err("%s", err);
		return 1;
	}
	printf("quota of %s: ", address);
	print_limit(bytes, "byte");
	printf(", ");
	print_limit(messages, "message");
	printf("\n");
	return 0;
}

/* ---- del ---- */

/* Aliases that name the mailbox as a target: dir_user_del removes those
 * rows, and the command says which. */
struct alias_refs {
	const char *address;
	struct strlist aliases;
};

static void find_alias_ref(void *ctx, const char *address, const char *target)
{
	struct alias_refs *ar = ctx;

	if (strcmp(target, ar->address) == 0)
		strlist_add(&ar->aliases, address);
}

/* Move the Maildir out of the way before the row goes, so that a failure
 * of either step can be undone and nothing is half-deleted. */
static int user_del(struct dir *dir, const struct config *cfg, const char *address, bool purge)
{
	char *path = maildir_path(cfg->mail_root, address);
	char *moved = NULL, *deleted_dir = NULL;
	const char *err;
	struct stat st;
	struct alias_refs ar = {.address = address};
	int r, status = 0;

	r = user_exists(dir, address);
	if (r <= 0) {
		if (r == 0)
			cli_err("no such mailbox %s", address);
		free(path);
		return r == 0 ? EX_NOUSER : 1;
	}
	if (dir_alias_list(dir, NULL, find_alias_ref, &ar, &err) < 0) {
		cli_err("%s", err);
		free(path);
		return 1;
	}

	if (lstat(path, &st) == 0) {
		long long now = (long long)time(NULL);

		if (purge) {
			/* A sibling name no mailbox can have (leading '.'),
			 * on the same file system, so rename cannot fail
			 * with EXDEV. */
			const char *at = strchr(address, '@');
			moved = xasprintf("%s/%s/.%.*s.deleting.%lld.%ld", cfg->mail_root, at + 1,
			                  (int)(at - address), address, now, (long)getpid());
		} else {
			deleted_dir = xasprintf("%s/deleted", cfg->state_dir);
			if (mkdir(deleted_dir, 0700) < 0 && errno != EEXIST) {
				cli_err("cannot create %s: %s", deleted_dir, strerror(errno));
				status = EX_CANTCREAT;
				goto out;
			}
			moved = xasprintf("%s/%s.%lld", deleted_dir, address, now);
			for (int n = 1; lstat(moved, &st) == 0 && n < 100; n++) {
				free(moved);
				moved = xasprintf("%s/%s.%lld-%d", deleted_dir, address, now, n);
			}
		}
		if (rename(path, moved) < 0) {
			if (errno == EXDEV)
				cli_err("cannot move %s to %s: it is on another file system "
				        "(use --purge, or move the Maildir yourself first)",
				        path, deleted_dir);
			else
				cli_err("cannot move %s to %s: %s", path, moved, strerror(errno));
			status = EX_CANTCREAT;
			goto out;
		}
	}

	if (dir_user_del(dir, address, &err) < 0) {
		cli_err("%s", err);
		if (moved != NULL && rename(moved, path) < 0)
			cli_err("and the Maildir could not be put back from %s: %s", moved,
			        strerror(errno));
		status = 1;
		goto out;
	}
	if (moved != NULL && purge) {
		if (cli_remove_tree(moved) < 0) {
			cli_err("mailbox %s deleted, but removing %s failed: %s", address, moved,
			        strerror(errno));
			status = 1;
			goto out;
		}
		printf("mailbox %s deleted, mail removed\n", address);
	} else if (moved != NULL) {
		printf("mailbox %s deleted, mail kept in %s\n", address, moved);
	} else {
		printf("mailbox %s deleted (it had no Maildir)\n", address);
	}
	for (size_t i = 0; i < ar.aliases.count; i++)
		printf("alias %s no longer delivers to %s\n", ar.aliases.items[i], address);
out:
	strlist_free(&ar.aliases);
	free(path);
	free(moved);
	free(deleted_dir);
	return status;
}

/* ---- dispatch ---- */

int cli_user(int argc, char **argv)
{
	static const struct option opts[] = {
	    {"config", required_argument, NULL, 'c'},
	    {"password-stdin", no_argument, NULL, OPT_PASSWORD_STDIN},
	    {"password-hash", required_argument, NULL, OPT_PASSWORD_HASH},
	    {"apop", no_argument, NULL, OPT_APOP},
	    {"purge", no_argument, NULL, OPT_PURGE},
	    {"json", no_argument, NULL, OPT_JSON},
	    {"bytes", required_argument, NULL, OPT_BYTES},
	    {"messages", required_argument, NULL, OPT_MESSAGES},
	    {"help", no_argument, NULL, 'h'},
	    {NULL, 0, NULL, 0},
	};
	struct user_opts o = {0};
	/* Holds an ADDRESS, or a DOMAIN for list, which may be one longer. */
	char address[DIR_DOMAIN_MAX + 1];
	const char *sub, *err, *arg = NULL;
	struct config *cfg;
	struct dir *dir;
	bool list, add, del, passwd, quota;
	uint64_t v;
	int c, status;

	if (argc < 2) {
		fputs(user_help, stderr);
		return EX_USAGE;
	}
	sub = argv[1];
	if (strcmp(sub, "--help") == 0 || strcmp(sub, "-h") == 0) {
		fputs(user_help, stdout);
		return 0;
	}
	list = strcmp(sub, "list") == 0;
	add = strcmp(sub, "add") == 0;
	del = strcmp(sub, "del") == 0;
	passwd = strcmp(sub, "passwd") == 0;
	quota = strcmp(sub, "quota") == 0;
	if (!list && !add && !del && !passwd && !quota)
		return cli_usage_err("user", "unknown user command '%s'", sub);

	argc--;
	argv++;
	optind = 0;
	opterr = 0;
	while ((c = getopt_long(argc, argv, ":c:h", opts, NULL)) != -1) {
		switch (c) {
		case 'c':
			o.conf = optarg;
			break;
		case OPT_PASSWORD_STDIN:
			o.password_stdin = true;
			break;
		case OPT_PASSWORD_HASH:
			o.password_hash = optarg;
			break;
		case OPT_APOP:
			o.apop = true;
			break;
		case OPT_PURGE:
			o.purge = true;
			break;
		case OPT_JSON:
			o.json = true;
			break;
		case OPT_BYTES:
			o.bytes = optarg;
			break;
		case OPT_MESSAGES:
			o.messages = optarg;
			break;
		case 'h':
			fputs(user_help, stdout);
			return 0;
		case ':':
			return cli_usage_err("user", "option %s needs a value", argv[optind - 1]);
		default:
			return cli_usage_err("user", "unknown option %s", argv[optind - 1]);
		}
	}
	if (o.password_stdin && !add && !passwd)
		return cli_usage_err("user", "--password-stdin is for user add and user passwd");
	if (o.password_hash != NULL && !add && !passwd)
		return cli_usage_err("user", "--password-hash is for user add and user passwd");
	if (o.apop && !add && !passwd)
		return cli_usage_err("user", "--apop is for user add and user passwd");
	if (o.password_hash != NULL && o.password_stdin)
		return cli_usage_err("user",
		                     "--password-hash and --password-stdin exclude each other");
	if (o.password_hash != NULL && o.apop)
		return cli_usage_err("user",
		                     "--apop needs the password itself, not --password-hash");
	if (o.password_hash != NULL && !hash_acceptable(o.password_hash)) {
		cli_err(
		    "--password-hash: not a hash pillar accepts: expected yescrypt ($y$...), "
		    "sha512-crypt ($6$...), sha256-crypt ($5$...) or bcrypt ($2b$/$2y$/$2a$...)");
		return EX_DATAERR;
	}
	if (o.purge && !del)
		return cli_usage_err("user", "--purge is for user del");
	if (o.json && !list)
		return cli_usage_err("user", "--json is for user list");
	if ((o.bytes != NULL || o.messages != NULL) && !quota)
		return cli_usage_err("user", "--bytes and --messages are for user quota");
	if (quota && o.bytes == NULL && o.messages == NULL)
		return cli_usage_err("user", "user quota needs --bytes or --messages");
	if (o.bytes != NULL && (parse_size(o.bytes, &v) < 0 || v > INT64_MAX))
		return cli_usage_err("user", "bad --bytes '%s': a size such as 500M, 2G or 0",
		                     o.bytes);
	if (o.messages != NULL && parse_uint(o.messages, strlen(o.messages), INT64_MAX, &v) < 0)
		return cli_usage_err("user", "bad --messages '%s': a number, 0 for no limit",
		                     o.messages);
	if (argc - optind > 1)
		return cli_usage_err("user", "unexpected argument '%s'", argv[optind + 1]);
	if (optind < argc)
		arg = argv[optind];
	if (arg == NULL && !list)
		return cli_usage_err("user", "user %s needs an ADDRESS", sub);

	if (arg != NULL) {
		if (strlen(arg) >= sizeof(address)) {
			cli_err("bad %s: longer than %d characters", list ? "domain" : "address",
			        list ? DIR_DOMAIN_MAX : DIR_ADDRESS_MAX);
			return EX_DATAERR;
		}
		snprintf(address, sizeof(address), "%s", arg);
		if ((list ? dir_check_domain(address, &err) : dir_check_address(address, &err)) <
		    0) {
			cli_err("bad %s '%s': %s", list ? "domain" : "address", arg, err);
			return EX_DATAERR;
		}
	}

	status = cli_admin_open(o.conf, &cfg, &dir);
	if (status != 0)
		return status;
	if (list)
		status = user_list(dir, cfg, arg != NULL ? address : NULL, o.json);
	else if (add)
		status = user_add(dir, cfg, address, &o);
	else if (del)
		status = user_del(dir, cfg, address, o.purge);
	else if (quota)
		status = user_quota(dir, address, &o);
	else
		status = user_passwd(dir, cfg, address, &o);
	dir_close(&dir);
	config_free(&cfg);
	return status;
}
