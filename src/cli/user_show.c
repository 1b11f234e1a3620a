/* `pillar user list` and `pillar user show`: what each mailbox holds, read
 * from its Maildir's file names. */
#include "cli/cli.h"
#include "cli/user.h"

#include "core/config.h"
#include "core/util.h"
#include "directory/directory.h"
#include "store/maildir.h"

#include <openssl/crypto.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sysexits.h>
#include <time.h>

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

int cli_user_list(struct dir *dir, const struct config *cfg, const char *domain, bool json)
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
int cli_user_lookup(struct dir *dir, const char *address, struct dir_user *user)
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

int cli_user_show(struct dir *dir, const struct config *cfg, const char *address, bool json)
{
	struct dir_user user;
	struct usage u;
	char *path, created[32], when[32], use[160], size[32];
	int r = cli_user_lookup(dir, address, &user);

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
