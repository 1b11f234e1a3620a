/* `pillar user add|del|rename|passwd|lock|unlock|quota|list|show`: mailboxes. */
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
    "open; --kick ends such sessions first (as a dropped connection: their\n"
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
    "      --kick          end the mailbox's open sessions first\n"
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

/* How long `--kick` waits for a kicked POP3 session to let go of the
 * mailbox: the worker ends it at once, so this is only slack for a busy
 * machine. */
#define KICK_WAIT_MS 5000
#define KICK_POLL_MS 50

struct user_opts {
	const char *conf;
	bool password_stdin, purge, json, apop, kick;
	const char *password_hash;    /* --password-hash, NULL when not */
	const char *bytes, *messages; /* user quota: as given, NULL when not */
};

/* ---- list, show ---- */

/* What a mailbox holds, from its Maildir's file names (maildir_stats: the
 * S= of each name, a stat only for a name without one), so that listing a
 * mailbox of 100,000 messages reads two directories and nothing else. */
struct usage {
	uint64_t messages, bytes;
	const char *error; /* the Maildir could not be read; NULL when it was */
};

static void read_usage(const struct config *cfg, const char *address, struct usage *u,
                       char **path_r)
{
	char *path = maildir_path(cfg->mail_root, address);

	memset(u, 0, sizeof(*u));
	if (maildir_stats(path, &u->messages, &u->bytes, &u->error) == 0)
		u->error = NULL;
	if (path_r != NULL)
		*path_r = path;
	else
		free(path);
}

/* "12.3 MB", "2 GB", "512 bytes": units of 1024, as quotas are given. */
static void format_size(uint64_t v, char *buf, size_t size)
{
	static const char *const units[] = {"KB", "MB", "GB", "TB", "PB"};
	double d = (double)v;
	size_t u = 0;

	if (v < 1024) {
		snprintf(buf, size, "%llu byte%s", (unsigned long long)v, v == 1 ? "" : "s");
		return;
	}
	d /= 1024;
	while (d >= 1024 && u + 1 < sizeof(units) / sizeof(units[0])) {
		d /= 1024;
		u++;
	}
	/* One decimal, none when it is .0: "2 GB", not "2.0 GB". */
	snprintf(buf, size, "%.1f", d);
	if (strcmp(buf + strlen(buf) - 2, ".0") == 0)
		buf[strlen(buf) - 2] = '\0';
	snprintf(buf + strlen(buf), size - strlen(buf), " %s", units[u]);
}

/* "12.3 MB of 2 GB, 41 of 50000 messages"; a limit that is not set is
 * left out ("12.3 MB, 41 messages"). */
static void format_use(const struct usage *u, const struct dir_user *user, char *buf, size_t size)
{
	char used[32], limit[32];
	size_t n;

	if (u->error != NULL) {
		snprintf(buf, size, "no Maildir (%s)", u->error);
		return;
	}
	format_size(u->bytes, used, sizeof(used));
	if (user->quota_bytes > 0) {
		format_size(user->quota_bytes, limit, sizeof(limit));
		snprintf(buf, size, "%s of %s, ", used, limit);
	} else {
		snprintf(buf, size, "%s, ", used);
	}
	n = strlen(buf);
	if (user->quota_messages > 0)
		snprintf(buf + n, size - n, "%llu of %llu messages",
		         (unsigned long long)u->messages, (unsigned long long)user->quota_messages);
	else
		snprintf(buf + n, size - n, "%llu message%s", (unsigned long long)u->messages,
		         u->messages == 1 ? "" : "s");
}

static void format_time(int64_t t, char *buf, size_t size)
{
	time_t tt = (time_t)t;
	struct tm tm;

	if (t <= 0 || localtime_r(&tt, &tm) == NULL)
		snprintf(buf, size, "never");
	else
		strftime(buf, size, "%Y-%m-%d %H:%M:%S", &tm);
}

/* One mailbox as a JSON object (no trailing newline). Times are Unix
 * seconds; last_login is null before the first login. */
static void print_user_json(const struct dir_user *user, const struct usage *u, const char *path)
{
	printf("{\"address\": ");
	cli_json_string(stdout, user->address);
	printf(", \"messages\": %llu, \"bytes\": %llu, \"quota_bytes\": %llu,"
	       " \"quota_messages\": %llu, \"locked\": %s, \"created\": %lld, \"last_login\": ",
	       (unsigned long long)u->messages, (unsigned long long)u->bytes,
	       (unsigned long long)user->quota_bytes, (unsigned long long)user->quota_messages,
	       user->locked ? "true" : "false", (long long)user->created);
	if (user->last_login > 0)
		printf("%lld", (long long)user->last_login);
	else
		printf("null");
	if (path != NULL) {
		printf(", \"maildir\": ");
		cli_json_string(stdout, path);
	}
	printf(", \"maildir_error\": ");
	if (u->error != NULL)
		cli_json_string(stdout, u->error);
	else
		printf("null");
	printf("}");
}

struct list_ctx {
	const struct config *cfg;
	bool json;
	bool first; /* nothing printed yet */
};

static void print_user(void *ctx, const struct dir_user *user)
{
	struct list_ctx *lc = ctx;
	struct usage u;
	char created[32], when[32], use[160];

	read_usage(lc->cfg, user->address, &u, NULL);
	if (lc->json) {
		printf("%s\n  ", lc->first ? "" : ",");
		print_user_json(user, &u, NULL);
		lc->first = false;
		return;
	}
	/* The header only above rows: an empty list prints nothing. */
	if (lc->first)
		printf("%-32s %8s %12s %-6s %-19s %-19s %s\n", "ADDRESS", "MESSAGES", "BYTES",
		       "LOCKED", "CREATED", "LAST LOGIN", "QUOTA USE");
	lc->first = false;
	format_time(user->created, created, sizeof(created));
	format_time(user->last_login, when, sizeof(when));
	format_use(&u, user, use, sizeof(use));
	printf("%-32s %8llu %12llu %-6s %-19s %-19s %s\n", user->address,
	       (unsigned long long)u.messages, (unsigned long long)u.bytes,
	       user->locked ? "yes" : "no", created, when, use);
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

/* The mailbox's row, its password hash wiped. 1, 0 (printed "no such
 * mailbox"), -1 (printed). */
static int lookup_user(struct dir *dir, const char *address, struct dir_user *user)
{
	const char *err;
	int r = dir_user_lookup(dir, address, user, &err);

	OPENSSL_cleanse(user->password_hash, sizeof(user->password_hash));
	if (r == 0)
		cli_err("no such mailbox %s", address);
	else if (r < 0)
		cli_err("%s", err);
	return r;
}

static int user_show(struct dir *dir, const struct config *cfg, const char *address, bool json)
{
	struct dir_user user;
	struct usage u;
	char *path, created[32], when[32], use[160], size[32];
	int r = lookup_user(dir, address, &user);

	if (r <= 0)
		return r == 0 ? EX_NOUSER : 1;
	read_usage(cfg, user.address, &u, &path);
	if (json) {
		print_user_json(&user, &u, path);
		printf("\n");
		free(path);
		return 0;
	}
	format_time(user.created, created, sizeof(created));
	format_time(user.last_login, when, sizeof(when));
	format_use(&u, &user, use, sizeof(use));
	format_size(u.bytes, size, sizeof(size));
	printf("address:    %s\n", user.address);
	printf("messages:   %llu\n", (unsigned long long)u.messages);
	printf("bytes:      %llu (%s)\n", (unsigned long long)u.bytes, size);
	printf("quota use:  %s\n", use);
	printf("locked:     %s\n", user.locked ? "yes (logins refused, mail delivered)" : "no");
	printf("created:    %s\n", created);
	printf("last login: %s\n", when);
	printf("maildir:    %s\n", path);
	free(path);
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

/* ---- the POP3 session lock, for del and rename ---- */

static void sleep_ms(long ms)
{
	struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};

	while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
		;
}

int cli_mailbox_in_use(const struct config *cfg, const char *address)
{
	char *path = maildir_path(cfg->mail_root, address);
	const char *err;
	struct stat st;
	int fd, r = 0;

	if (lstat(path, &st) == 0) {
		r = maildir_lock(path, &fd, &err);
		if (r == 0)
			close(fd);
		else if (r < 0)
			cli_err("%s", err);
	}
	free(path);
	return r;
}

/* Take the POP3 session lock of the Maildir at path (the one a POP3 session
 * holds for its whole life: maildir_lock), so that no session has the
 * mailbox open while it is moved and none can open it meanwhile. Held by a
 * session: refuse, or with a kicker end the address's sessions and wait a
 * little for the lock to come free. Returns 0 with *fd_r (close it to let
 * go; -1 when the mailbox has no Maildir), or an exit status after saying
 * why. */
static int hold_mailbox(const char *path, const char *address, struct cli_kicker *kicker,
                        const char *what, int *fd_r)
{
	const char *err;
	struct stat st;
	unsigned ended = 0;
	int r;

	*fd_r = -1;
	if (lstat(path, &st) < 0) {
		if (errno == ENOENT)
			return 0;
		cli_err("%s: %s", path, strerror(errno));
		return EX_IOERR;
	}
	r = maildir_lock(path, fd_r, &err);
	if (r < 0) {
		cli_err("cannot lock the Maildir of %s: %s", address, err);
		return EX_IOERR;
	}
	if (r == 0)
		return 0;
	if (kicker == NULL) {
		cli_err("cannot %s %s: a POP3 session has the mailbox open (end it with "
		        "'pillar kick %s', or add --kick)",
		        what, address, address);
		return EX_TEMPFAIL;
	}
	r = cli_kicker_kick(kicker, address, &ended);
	if (r != 0 && r != EX_NOUSER) {
		cli_err("cannot %s %s: a POP3 session has the mailbox open and could not be "
		        "ended",
		        what, address);
		return EX_TEMPFAIL;
	}
	for (long waited = 0; waited < KICK_WAIT_MS; waited += KICK_POLL_MS) {
		sleep_ms(KICK_POLL_MS);
		r = maildir_lock(path, fd_r, &err);
		if (r < 0) {
			cli_err("cannot lock the Maildir of %s: %s", address, err);
			return EX_IOERR;
		}
		if (r == 0) {
			printf("%u session%s of %s ended\n", ended, ended == 1 ? "" : "s", address);
			return 0;
		}
	}
	cli_err("cannot %s %s: its POP3 session still holds the mailbox %d s after %u "
	        "session%s were told to end",
	        what, address, KICK_WAIT_MS / 1000, ended, ended == 1 ? "" : "s");
	return EX_TEMPFAIL;
}

/* fsync a directory so a rename in it survives a crash; best effort (the
 * rename itself has happened either way). */
static void sync_dir(const char *path)
{
	int fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);

	if (fd >= 0) {
		fsync(fd);
		close(fd);
	}
}

/* The directory that holds path ("<mail_root>/<domain>" for a Maildir). */
static char *parent_of(const char *path)
{
	const char *slash = strrchr(path, '/');

	return slash == NULL ? xstrdup(".") : xasprintf("%.*s", (int)(slash - path), path);
}

/* ---- del ---- */

/* Aliases that name the mailbox as a target: dir_user_del removes those
 * rows (dir_user_rename renames them), and the command says which. */
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
 * of either step can be undone and nothing is half-deleted. The session
 * lock is held throughout: no POP3 session has the mailbox open while it
 * goes. */
int cli_user_del(struct dir *dir, const struct config *cfg, const char *address, bool purge,
                 struct cli_kicker *kicker)
{
	char *path = maildir_path(cfg->mail_root, address);
	char *moved = NULL, *deleted_dir = NULL;
	const char *err;
	struct stat st;
	struct alias_refs ar = {.address = address};
	int r, status = 0, lock_fd = -1;

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
	status = hold_mailbox(path, address, kicker, "delete", &lock_fd);
	if (status != 0)
		goto out;

	if (lock_fd >= 0) {
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
	if (lock_fd >= 0)
		close(lock_fd);
	strlist_free(&ar.aliases);
	free(path);
	free(moved);
	free(deleted_dir);
	return status;
}

/* ---- rename ---- */

/* 1 when address has alias rows, 0 not, -1 error (printed). */
struct alias_probe {
	const char *address;
	bool found;
};

static void probe_alias(void *ctx, const char *address, const char *target)
{
	struct alias_probe *ap = ctx;

	(void)target;
	if (strcmp(address, ap->address) == 0)
		ap->found = true;
}

static int alias_exists(struct dir *dir, const char *address)
{
	struct alias_probe ap = {.address = address};
	const char *err;

	if (dir_alias_list(dir, strchr(address, '@') + 1, probe_alias, &ap, &err) < 0) {
		cli_err("%s", err);
		return -1;
	}
	return ap.found ? 1 : 0;
}

/* The Maildir moves with rename(2) and the row changes in one transaction
 * (dir_user_rename); the directory is renamed first and renamed back if the
 * row cannot change, so a failure anywhere leaves both as they were. The
 * message files are not renamed, so their UIDLs stay. Throughout, this
 * command holds the mailbox's POP3 session lock (taken on the old Maildir;
 * the lock file moves with it), so no session has it open or opens it.
 *
 * Delivery has no lock: one that resolved OLD before the row changed opens
 * the old path. If it opened the Maildir before the rename, it writes
 * through that descriptor into the moved Maildir, where the mail belongs;
 * if after, the open fails with ENOENT and the delivery fails (see the
 * store's classification of that error), and nothing is written under the
 * old path: delivery never creates a Maildir. */
static int user_rename(struct dir *dir, const struct config *cfg, const char *from, const char *to,
                       struct cli_kicker *kicker)
{
	const char *to_domain = strchr(to, '@') + 1, *err;
	char *old_path = maildir_path(cfg->mail_root, from);
	char *new_path = maildir_path(cfg->mail_root, to);
	char *old_parent = parent_of(old_path), *new_parent = parent_of(new_path);
	struct alias_refs ar = {.address = from};
	bool made_parent = false, moved = false;
	struct stat st;
	int r, status = 0, lock_fd = -1;

	r = user_exists(dir, from);
	if (r <= 0) {
		if (r == 0)
			cli_err("no such mailbox %s", from);
		status = r == 0 ? EX_NOUSER : 1;
		goto out;
	}
	r = dir_domain_exists(dir, to_domain, &err);
	if (r <= 0) {
		if (r == 0)
			cli_err("cannot rename %s to %s: domain %s is not local (add it with "
			        "'pillar domain add %s')",
			        from, to, to_domain, to_domain);
		else
			cli_err("%s", err);
		status = r == 0 ? EX_NOUSER : 1;
		goto out;
	}
	r = user_exists(dir, to);
	if (r == 0)
		r = alias_exists(dir, to) > 0 ? 2 : 0;
	if (r != 0) {
		if (r > 0)
			cli_err("cannot rename %s to %s: %s already exists as %s", from, to, to,
			        r == 1 ? "a mailbox" : "an alias");
		status = r > 0 ? EX_CANTCREAT : 1;
		goto out;
	}
	if (lstat(new_path, &st) == 0) {
		cli_err("cannot rename %s to %s: %s already exists (not a mailbox in the "
		        "directory); move it away first",
		        from, to, new_path);
		status = EX_CANTCREAT;
		goto out;
	}
	if (dir_alias_list(dir, NULL, find_alias_ref, &ar, &err) < 0) {
		cli_err("%s", err);
		status = 1;
		goto out;
	}

	status = hold_mailbox(old_path, from, kicker, "rename", &lock_fd);
	if (status != 0)
		goto out;
	if (lock_fd >= 0) {
		if (mkdir(new_parent, 0700) == 0)
			made_parent = true;
		else if (errno != EEXIST) {
			cli_err("cannot rename %s to %s: cannot create %s: %s", from, to,
			        new_parent, strerror(errno));
			status = EX_CANTCREAT;
			goto out;
		}
		/* RENAME_NOREPLACE semantics by hand: new_path was checked
		 * above, and rename(2) of a directory fails on a non-empty
		 * target anyway. */
		if (rename(old_path, new_path) < 0) {
			cli_err("cannot rename %s to %s: moving %s to %s: %s", from, to, old_path,
			        new_path, strerror(errno));
			status = errno == EACCES || errno == EPERM ? EX_NOPERM : EX_CANTCREAT;
			goto undo;
		}
		moved = true;
	}
	if (dir_user_rename(dir, from, to, &err) < 0) {
		cli_err("cannot rename %s to %s: %s", from, to, err);
		status = 1;
		goto undo;
	}
	if (moved) {
		sync_dir(new_parent);
		if (strcmp(new_parent, old_parent) != 0)
			sync_dir(old_parent);
	}
	printf("mailbox %s renamed to %s%s\n", from, to, moved ? "" : " (it had no Maildir)");
	for (size_t i = 0; i < ar.aliases.count; i++)
		printf("alias %s now delivers to %s\n", ar.aliases.items[i], to);
	goto out;
undo:
	if (moved && rename(new_path, old_path) < 0)
		cli_err("and the Maildir could not be moved back from %s to %s: %s; move it "
		        "back by hand",
		        new_path, old_path, strerror(errno));
	else if (made_parent)
		rmdir(new_parent);
out:
	if (lock_fd >= 0)
		close(lock_fd);
	strlist_free(&ar.aliases);
	free(old_path);
	free(new_path);
	free(old_parent);
	free(new_parent);
	return status;
}

/* ---- lock, unlock ---- */

static int user_set_locked(struct dir *dir, const char *address, bool locked,
                           struct cli_kicker *kicker)
{
	struct dir_user user;
	const char *err;
	unsigned ended = 0;
	int r = lookup_user(dir, address, &user);

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
		status = user_list(dir, cfg, arg != NULL ? address : NULL, o.json);
	else if (show)
		status = user_show(dir, cfg, address, o.json);
	else if (add)
		status = user_add(dir, cfg, address, &o);
	else if (del)
		status = cli_user_del(dir, cfg, address, o.purge, kicker);
	else if (rename_)
		status = user_rename(dir, cfg, address, new_address, kicker);
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
