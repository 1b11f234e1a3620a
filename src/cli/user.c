/* `pillar user add|del|rename|passwd|lock|unlock|quota|list|show`: mailboxes. */
#include "cli/cli.h"
#include "cli/user.h"

#include "auth/password.h"
#include "auth/scram.h"
#include "core/config.h"
#include "core/util.h"
#include "directory/directory.h"
#include "store/maildir.h"

#include <crypt.h>
#include <errno.h>
#include <getopt.h>
#include <openssl/crypto.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sysexits.h>
#include <unistd.h>

static const char user_help[] =
    "usage: pillar user add ADDRESS [--password-stdin | --password-hash HASH] [-c FILE]\n"
    "       pillar user del ADDRESS [--purge] [--kick] [-c FILE]\n"
    "       pillar user rename OLD NEW [--kick] [-c FILE]\n"
    "       pillar user passwd ADDRESS [--password-stdin | --password-hash HASH] [--apop]\n"
    "                          [-c FILE]\n"
    "       pillar user lock ADDRESS [--kick] [-c FILE]\n"
    "       pillar user unlock ADDRESS [-c FILE]\n"
    "       pillar user quota ADDRESS [--bytes SIZE] [--messages N] [-c FILE]\n"
    "       pillar user list [DOMAIN] [--json] [-c FILE]\n"
    "       pillar user show ADDRESS [--json] [-c FILE]\n"
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
    "that delivers to it. Mail to the address is refused from then on.\n"
    "'user rename' moves the Maildir to <mail_root>/<domain>/<local> of NEW\n"
    "and renames the mailbox in one step: if either fails, both stay as they\n"
    "were. NEW's domain must be local and NEW must not exist (as a mailbox or\n"
    "an alias); aliases that named OLD name NEW. The messages keep their\n"
    "UIDLs, so POP3 clients do not download them again.\n"
    "'user del' and 'user rename' refuse while a POP3 session has the mailbox\n"
    "open (with a PostgreSQL directory, on any server sharing it); --kick ends\n"
    "this server's such sessions first (as a dropped connection: their\n"
    "deletions are not applied).\n"
    "'user lock' refuses logins to the mailbox (mail is still delivered);\n"
    "with --kick it also ends the sessions already open. 'user unlock' lets\n"
    "it log in again.\n"
    "'user quota' sets the limits a mailbox may hold (0 = no limit; a limit\n"
    "not given stays as it is). A full mailbox refuses new mail with a\n"
    "temporary error, so senders retry until it has room again.\n"
    "'user list' and 'user show' print the messages and bytes in the Maildir,\n"
    "the quota use, the lock, when the mailbox was created and last logged in.\n"
    "\n"
    "  -c, --config FILE   the config file\n"
    "      --password-stdin  read the password as one line from stdin\n"
    "      --password-hash HASH  use this crypt(3) hash (no SCRAM keys until\n"
    "                      the first password login)\n"
    "      --apop          also store the password in plain text for APOP\n"
    "      --purge         delete the mail too\n"
    "      --kick          end the mailbox's open sessions (on this server) first\n"
    "      --bytes SIZE    quota in bytes; K, M and G multiply by 1024\n"
    "      --messages N    quota in messages\n"
    "      --json          list or show as JSON\n"
    "  -h, --help          show this help\n";

enum {
	OPT_PASSWORD_STDIN = 256,
	OPT_PASSWORD_HASH,
	OPT_APOP,
	OPT_PURGE,
	OPT_JSON,
	OPT_BYTES,
	OPT_MESSAGES,
	OPT_KICK
};

struct user_opts {
	const char *conf;
	bool password_stdin, purge, json, apop, kick;
	const char *password_hash;    /* --password-hash, NULL when not */
	const char *bytes, *messages; /* user quota: as given, NULL when not */
};

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
	char *db = config_secrets_path(cfg);

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
int cli_user_exists(struct dir *dir, const char *address)
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
	r = cli_user_exists(dir, address);
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

	r = cli_user_exists(dir, address);
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

/* ---- lock, unlock ---- */

static int user_set_locked(struct dir *dir, const char *address, bool locked,
                           struct cli_kicker *kicker)
{
	struct dir_user user;
	const char *err;
	unsigned ended = 0;
	int r = cli_user_lookup(dir, address, &user);

	if (r <= 0)
		return r == 0 ? EX_NOUSER : 1;
	if (dir_user_set_locked(dir, address, locked, &err) < 0) {
		cli_err("%s", err);
		return 1;
	}
	if (!locked) {
		printf("mailbox %s unlocked%s\n", address,
		       user.locked ? "" : " (it was not locked)");
		return 0;
	}
	printf("mailbox %s locked: logins are refused, mail is still delivered%s\n", address,
	       user.locked ? " (it was locked already)" : "");
	if (kicker == NULL)
		return 0;
	r = cli_kicker_kick(kicker, address, &ended);
	if (r != 0 && r != EX_NOUSER)
		return r;
	printf("%u session%s of %s ended\n", ended, ended == 1 ? "" : "s", address);
	return 0;
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
	    {"kick", no_argument, NULL, OPT_KICK},
	    {"help", no_argument, NULL, 'h'},
	    {NULL, 0, NULL, 0},
	};
	struct user_opts o = {0};
	/* Holds an ADDRESS, or a DOMAIN for list, which may be one longer. */
	char address[DIR_DOMAIN_MAX + 1], new_address[DIR_ADDRESS_MAX + 1];
	const char *sub, *err, *arg = NULL;
	struct cli_kicker *kicker = NULL;
	struct config *cfg;
	struct dir *dir;
	bool list, add, del, passwd, quota, rename_, lock, unlock, show;
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
	rename_ = strcmp(sub, "rename") == 0;
	lock = strcmp(sub, "lock") == 0;
	unlock = strcmp(sub, "unlock") == 0;
	show = strcmp(sub, "show") == 0;
	if (!list && !add && !del && !passwd && !quota && !rename_ && !lock && !unlock && !show)
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
		case OPT_KICK:
			o.kick = true;
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
	if (o.json && !list && !show)
		return cli_usage_err("user", "--json is for user list and user show");
	if (o.kick && !del && !rename_ && !lock)
		return cli_usage_err("user", "--kick is for user del, user rename and user lock");
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
	if (rename_ && argc - optind != 2)
		return cli_usage_err("user", "user rename needs OLD and NEW addresses");
	if (argc - optind > (rename_ ? 2 : 1))
		return cli_usage_err("user", "unexpected argument '%s'", argv[optind + 1]);
	if (optind < argc)
		arg = argv[optind];
	if (arg == NULL && !list)
		return cli_usage_err("user", "user %s needs an ADDRESS", sub);
	if (rename_) {
		const char *to = argv[optind + 1];

		if (strlen(to) >= sizeof(new_address)) {
			cli_err("bad address: longer than %d characters", DIR_ADDRESS_MAX);
			return EX_DATAERR;
		}
		snprintf(new_address, sizeof(new_address), "%s", to);
		if (dir_check_address(new_address, &err) < 0) {
			cli_err("bad address '%s': %s", to, err);
			return EX_DATAERR;
		}
	}

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

	if (rename_ && strcmp(address, new_address) == 0) {
		cli_err("cannot rename %s to itself", address);
		return EX_DATAERR;
	}

	status = cli_admin_open_kicker(o.conf, &cfg, &dir, o.kick ? &kicker : NULL);
	if (status != 0)
		return status;
	if (list)
		status = cli_user_list(dir, cfg, arg != NULL ? address : NULL, o.json);
	else if (show)
		status = cli_user_show(dir, cfg, address, o.json);
	else if (add)
		status = user_add(dir, cfg, address, &o);
	else if (del)
		status = cli_user_del(dir, cfg, address, o.purge, kicker);
	else if (rename_)
		status = cli_user_rename(dir, cfg, address, new_address, kicker);
	else if (lock || unlock)
		status = user_set_locked(dir, address, lock, kicker);
	else if (quota)
		status = user_quota(dir, address, &o);
	else
		status = user_passwd(dir, cfg, address, &o);
	dir_close(&dir);
	cli_kicker_free(&kicker);
	config_free(&cfg);
	return status;
}
