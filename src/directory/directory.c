/* The directory interface (directory.h) over its backends (backend.h).
 *
 * What does not depend on where the rows live is here, once: choosing the
 * backend, normalizing and bounds-checking arguments, reading a row's
 * values into the structs of directory.h, and walking aliases to mailboxes
 * (recipient resolution, and the checks that keep the alias graph free of
 * loops and within its limits). The backends only run queries; address
 * syntax is syntax.c. */
#include "directory/backend.h"
#include "directory/transfer.h"

#include "core/config.h"
#include "core/util.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int dir_fail(struct dir *dir, const char **error_r, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(dir->err, sizeof(dir->err), fmt, ap);
	va_end(ap);
	*error_r = dir->err;
	return -1;
}

int dir_normalize(const char *in, char *buf, size_t size)
{
	size_t len = strlen(in);

	if (len >= size)
		return -1;
	memcpy(buf, in, len + 1);
	str_lower(buf);
	return 0;
}

/* The last '@': a quoted local part from SMTP may hold one (and then
 * matches nothing). */
const char *dir_domain_of(const char *addr)
{
	const char *at = strrchr(addr, '@');

	return at != NULL && at != addr && at[1] != '\0' ? at + 1 : NULL;
}

/* ---- reading rows (backend.h) ---- */

int dir_row_user(struct dir_user *out, const char *address, const char *password_hash,
                 int64_t quota_bytes, int64_t quota_messages, bool locked, int64_t created,
                 int64_t last_login)
{
	memset(out, 0, sizeof(*out));
	if (address == NULL || strlen(address) > DIR_ADDRESS_MAX)
		return -1;
	if (password_hash == NULL || strlen(password_hash) > DIR_HASH_MAX)
		return -1;
	memcpy(out->address, address, strlen(address) + 1);
	memcpy(out->password_hash, password_hash, strlen(password_hash) + 1);
	out->quota_bytes = quota_bytes > 0 ? (uint64_t)quota_bytes : 0;
	out->quota_messages = quota_messages > 0 ? (uint64_t)quota_messages : 0;
	out->locked = locked;
	out->created = created;
	out->last_login = last_login;
	return 0;
}

int dir_row_scram(struct dir_scram *out, const void *salt, size_t salt_len, int64_t iterations,
                  const void *stored_key, size_t stored_len, const void *server_key,
                  size_t server_len)
{
	/* Keys that are missing or of the wrong size count as none: the next
	 * password login recomputes them. */
	if (salt == NULL || salt_len == 0 || salt_len > DIR_SCRAM_SALT_MAX || iterations <= 0 ||
	    iterations > UINT32_MAX || stored_key == NULL || stored_len != DIR_SCRAM_KEY_LEN ||
	    server_key == NULL || server_len != DIR_SCRAM_KEY_LEN)
		return 0;
	memcpy(out->salt, salt, salt_len);
	out->salt_len = salt_len;
	out->iterations = (uint32_t)iterations;
	memcpy(out->stored_key, stored_key, DIR_SCRAM_KEY_LEN);
	memcpy(out->server_key, server_key, DIR_SCRAM_KEY_LEN);
	return 1;
}

/* ---- open and close ---- */

bool dir_is_postgresql(const char *directory)
{
	return strncmp(directory, "postgresql://", strlen("postgresql://")) == 0 ||
	       strncmp(directory, "postgres://", strlen("postgres://")) == 0;
}

/* What this process may open (dir_open_only). */
static unsigned open_parts = DIR_EVERYTHING;

void dir_open_only(unsigned parts)
{
	open_parts = parts & DIR_EVERYTHING;
}

int dir_need(struct dir *dir, unsigned parts, const char **error_r)
{
	if ((dir->parts & parts) == parts)
		return 0;
	return dir_fail(dir, error_r, "directory: the %s are not open in this process",
	                (parts & ~dir->parts & DIR_SECRETS) != 0 ? "secrets" : "mailboxes");
}

int dir_open(const struct config *cfg, bool create, struct dir **dir_r, const char **error_r)
{
	static __thread char open_err[DIR_ERROR_MAX];
	const struct dir_backend *backend;

	*dir_r = NULL;
	if (strcmp(cfg->directory, "sqlite") == 0)
		backend = &dir_sqlite_backend;
	else if (dir_is_postgresql(cfg->directory))
		backend = &dir_pg_backend;
	else {
		*error_r = "directory: must be 'sqlite' or a postgresql:// URL";
		return -1;
	}
	if (backend->open(cfg, open_parts, create, dir_r, error_r) < 0) {
		/* The error may live in the half-open connection: keep a copy,
		 * then close it. */
		snprintf(open_err, sizeof(open_err), "%s", *error_r);
		*error_r = open_err;
		if (*dir_r != NULL)
			backend->close(*dir_r);
		*dir_r = NULL;
		return -1;
	}
	(*dir_r)->backend = backend;
	return 0;
}

void dir_close(struct dir **dirp)
{
	struct dir *dir = *dirp;

	if (dir == NULL)
		return;
	*dirp = NULL;
	dir->backend->close(dir);
}

const char *dir_backend_name(const struct dir *dir)
{
	return dir->backend->name;
}

/* ---- domains ---- */

int dir_domain_add(struct dir *dir, const char *domain, const char **error_r)
{
	char name[DIR_DOMAIN_MAX + 1];

	if (dir_need(dir, DIR_MAILBOXES, error_r) < 0)
		return -1;

	if (dir_normalize(domain, name, sizeof(name)) < 0)
		return dir_fail(dir, error_r, "domain too long");
	return dir->backend->domain_add(dir, name, error_r);
}

int dir_domain_del(struct dir *dir, const char *domain, const char **error_r)
{
	char name[DIR_DOMAIN_MAX + 1];

	if (dir_need(dir, DIR_MAILBOXES, error_r) < 0)
		return -1;

	if (dir_normalize(domain, name, sizeof(name)) < 0)
		return dir_fail(dir, error_r, "no such domain");
	return dir->backend->domain_del(dir, name, error_r);
}

int dir_domain_exists(struct dir *dir, const char *domain, const char **error_r)
{
	char name[DIR_DOMAIN_MAX + 1];

	if (dir_need(dir, DIR_MAILBOXES, error_r) < 0)
		return -1;

	if (dir_normalize(domain, name, sizeof(name)) < 0)
		return 0;
	return dir->backend->domain_exists(dir, name, error_r);
}

int dir_domain_list(struct dir *dir, void (*fn)(void *ctx, const char *domain, uint64_t mailboxes),
                    void *ctx, const char **error_r)
{
	if (dir_need(dir, DIR_MAILBOXES, error_r) < 0)
		return -1;
	return dir->backend->domain_list(dir, fn, ctx, error_r);
}

/* ---- mailboxes ---- */

bool dir_scram_valid(const struct dir_scram *scram)
{
	return scram->salt_len > 0 && scram->salt_len <= DIR_SCRAM_SALT_MAX &&
	       scram->iterations > 0;
}

int dir_user_add(struct dir *dir, const char *address, const char *password_hash,
                 const char **error_r)
{
	char addr[DIR_ADDRESS_MAX + 1];

	if (dir_need(dir, DIR_EVERYTHING, error_r) < 0)
		return -1;

	if (dir_normalize(address, addr, sizeof(addr)) < 0 || strchr(addr, '@') == NULL)
		return dir_fail(dir, error_r, "bad address");
	if (strlen(password_hash) > DIR_HASH_MAX)
		return dir_fail(dir, error_r, "password hash too long");
	return dir->backend->user_add(dir, addr, password_hash, error_r);
}

int dir_user_del(struct dir *dir, const char *address, const char **error_r)
{
	char addr[DIR_ADDRESS_MAX + 1];

	if (dir_need(dir, DIR_EVERYTHING, error_r) < 0)
		return -1;

	if (dir_normalize(address, addr, sizeof(addr)) < 0)
		return dir_fail(dir, error_r, "no such mailbox");
	return dir->backend->user_del(dir, addr, error_r);
}

int dir_user_set_quota(struct dir *dir, const char *address, uint64_t bytes, uint64_t messages,
                       const char **error_r)
{
	char addr[DIR_ADDRESS_MAX + 1];

	if (dir_need(dir, DIR_MAILBOXES, error_r) < 0)
		return -1;

	if (dir_normalize(address, addr, sizeof(addr)) < 0)
		return dir_fail(dir, error_r, "no such mailbox");
	/* Both backends store signed 64-bit integers. */
	if (bytes > INT64_MAX || messages > INT64_MAX)
		return dir_fail(dir, error_r, "quota too large");
	return dir->backend->user_set_quota(dir, addr, bytes, messages, error_r);
}

int dir_user_set_locked(struct dir *dir, const char *address, bool locked, const char **error_r)
{
	char addr[DIR_ADDRESS_MAX + 1];

	if (dir_need(dir, DIR_SECRETS, error_r) < 0)
		return -1;

	if (dir_normalize(address, addr, sizeof(addr)) < 0)
		return dir_fail(dir, error_r, "no such mailbox");
	return dir->backend->user_set_locked(dir, addr, locked, error_r);
}

int dir_user_rename(struct dir *dir, const char *old_address, const char *new_address,
                    const char **error_r)
{
	char from[DIR_ADDRESS_MAX + 1], to[DIR_ADDRESS_MAX + 1];

	if (dir_need(dir, DIR_EVERYTHING, error_r) < 0)
		return -1;

	if (dir_normalize(old_address, from, sizeof(from)) < 0 || dir_domain_of(from) == NULL)
		return dir_fail(dir, error_r, "no such mailbox");
	if (dir_normalize(new_address, to, sizeof(to)) < 0 || dir_domain_of(to) == NULL)
		return dir_fail(dir, error_r, "bad address");
	if (strcmp(from, to) == 0)
		return dir_fail(dir, error_r, "%s is already the mailbox's address", to);
	return dir->backend->user_rename(dir, from, to, error_r);
}

int dir_user_set_password(struct dir *dir, const char *address, const char *password_hash,
                          const char **error_r)
{
	char addr[DIR_ADDRESS_MAX + 1];

	if (dir_need(dir, DIR_SECRETS, error_r) < 0)
		return -1;

	if (dir_normalize(address, addr, sizeof(addr)) < 0)
		return dir_fail(dir, error_r, "no such mailbox");
	if (strlen(password_hash) > DIR_HASH_MAX)
		return dir_fail(dir, error_r, "password hash too long");
	return dir->backend->user_set_password(dir, addr, password_hash, error_r);
}

int dir_user_get_scram(struct dir *dir, const char *address, struct dir_scram *out,
                       const char **error_r)
{
	char addr[DIR_ADDRESS_MAX + 1];

	if (dir_need(dir, DIR_SECRETS, error_r) < 0)
		return -1;

	memset(out, 0, sizeof(*out));
	if (dir_normalize(address, addr, sizeof(addr)) < 0)
		return 0;
	return dir->backend->user_get_scram(dir, addr, out, error_r);
}

int dir_user_set_scram(struct dir *dir, const char *address, const char *password_hash,
                       const struct dir_scram *scram, const char **error_r)
{
	char addr[DIR_ADDRESS_MAX + 1];

	if (dir_need(dir, DIR_SECRETS, error_r) < 0)
		return -1;

	if (dir_normalize(address, addr, sizeof(addr)) < 0)
		return 0;
	if (!dir_scram_valid(scram))
		return dir_fail(dir, error_r, "bad SCRAM keys");
	return dir->backend->user_set_scram(dir, addr, password_hash, scram, error_r);
}

int dir_user_get_apop(struct dir *dir, const char *address, char *secret, size_t size,
                      const char **error_r)
{
	char addr[DIR_ADDRESS_MAX + 1];

	if (dir_need(dir, DIR_SECRETS, error_r) < 0)
		return -1;

	if (size > 0)
		secret[0] = '\0';
	if (dir_normalize(address, addr, sizeof(addr)) < 0)
		return 0;
	return dir->backend->user_get_apop(dir, addr, secret, size, error_r);
}

int dir_instance_secret(struct dir *dir, uint8_t out[DIR_INSTANCE_SECRET_LEN], const char **error_r)
{
	if (dir_need(dir, DIR_SECRETS, error_r) < 0)
		return -1;
	return dir->backend->instance_secret(dir, out, error_r);
}

int dir_user_set_credentials(struct dir *dir, const char *address, const char *password_hash,
                             const struct dir_scram *scram, const char *apop_secret,
                             const char **error_r)
{
	char addr[DIR_ADDRESS_MAX + 1];

	if (dir_need(dir, DIR_SECRETS, error_r) < 0)
		return -1;

	if (dir_normalize(address, addr, sizeof(addr)) < 0)
		return dir_fail(dir, error_r, "no such mailbox");
	if (strlen(password_hash) > DIR_HASH_MAX)
		return dir_fail(dir, error_r, "password hash too long");
	if (scram != NULL && !dir_scram_valid(scram))
		return dir_fail(dir, error_r, "bad SCRAM keys");
	if (apop_secret != NULL &&
	    (apop_secret[0] == '\0' || strlen(apop_secret) > DIR_APOP_SECRET_MAX))
		return dir_fail(dir, error_r, "APOP secret empty or too long");
	return dir->backend->user_set_credentials(dir, addr, password_hash, scram, apop_secret,
	                                          error_r);
}

int dir_user_lookup(struct dir *dir, const char *address, struct dir_user *out,
                    const char **error_r)
{
	char addr[DIR_ADDRESS_MAX + 1];

	if (dir_normalize(address, addr, sizeof(addr)) < 0)
		return 0;
	return dir->backend->user_lookup(dir, addr, out, error_r);
}

int dir_user_touch_login(struct dir *dir, const char *address, int64_t when, const char **error_r)
{
	char addr[DIR_ADDRESS_MAX + 1];

	if (dir_need(dir, DIR_SECRETS, error_r) < 0)
		return -1;

	if (dir_normalize(address, addr, sizeof(addr)) < 0)
		return dir_fail(dir, error_r, "no such mailbox");
	return dir->backend->user_touch_login(dir, addr, when, error_r);
}

int dir_user_list(struct dir *dir, const char *domain,
                  void (*fn)(void *ctx, const struct dir_user *user), void *ctx,
                  const char **error_r)
{
	char name[DIR_DOMAIN_MAX + 1];

	if (dir_need(dir, DIR_EVERYTHING, error_r) < 0)
		return -1;

	if (domain == NULL)
		return dir->backend->user_list(dir, NULL, fn, ctx, error_r);
	if (dir_normalize(domain, name, sizeof(name)) < 0)
		return 0;
	return dir->backend->user_list(dir, name, fn, ctx, error_r);
}

/* ---- recipients and aliases ---- */

static bool is_postmaster(const char *addr)
{
	return strncmp(addr, "postmaster@", strlen("postmaster@")) == 0;
}

/* Addresses visited while expanding one recipient. Bounded, so an alias
 * graph however large or looped costs bounded work. */
#define EXPAND_MAX (DIR_MAX_TARGETS * DIR_MAX_ALIAS_DEPTH)

struct expand {
	char addr[EXPAND_MAX][DIR_ADDRESS_MAX + 1]; /* the queue, and the seen set */
	unsigned char depth[EXPAND_MAX];
	size_t n;
	bool too_deep; /* an alias chain longer than DIR_MAX_ALIAS_DEPTH */
};

static bool expand_seen(const struct expand *e, const char *addr)
{
	for (size_t i = 0; i < e->n; i++) {
		if (strcmp(e->addr[i], addr) == 0)
			return true;
	}
	return false;
}

/* Queue addr unless seen. -1 when the walk is too big. */
static int expand_push(struct dir *dir, struct expand *e, const char *addr, unsigned depth,
                       const char **error_r)
{
	if (strlen(addr) > DIR_ADDRESS_MAX || expand_seen(e, addr))
		return 0;
	if (depth > DIR_MAX_ALIAS_DEPTH) {
		e->too_deep = true;
		return 0;
	}
	if (e->n == EXPAND_MAX)
		return dir_fail(dir, error_r, "aliases expand to more than %d addresses",
		                EXPAND_MAX);
	memcpy(e->addr[e->n], addr, strlen(addr) + 1);
	e->depth[e->n] = (unsigned char)depth;
	e->n++;
	return 0;
}

static int rcpt_add(struct dir *dir, struct dir_rcpt *rcpt, const struct dir_user *user,
                    const char **error_r)
{
	for (size_t i = 0; i < rcpt->n; i++) {
		if (strcmp(rcpt->users[i].address, user->address) == 0)
			return 0;
	}
	if (rcpt->n == DIR_MAX_TARGETS)
		return dir_fail(dir, error_r, "more than %d mailboxes for one recipient",
		                DIR_MAX_TARGETS);
	rcpt->users[rcpt->n] = *user;
	/* Delivery has no use for the hash; keep it where it is needed. */
	memset(rcpt->users[rcpt->n].password_hash, 0, sizeof(rcpt->users[rcpt->n].password_hash));
	rcpt->n++;
	return 0;
}

/* Queue the targets of alias e->addr[i]. Returns how many rows it has, or
 * -1. */
static int push_targets(struct dir *dir, struct expand *e, size_t i, const char **error_r)
{
	char targets[DIR_MAX_TARGETS][DIR_ADDRESS_MAX + 1];
	size_t n;

	if (dir->backend->alias_targets(dir, e->addr[i], targets, DIR_MAX_TARGETS, &n, error_r) < 0)
		return -1;
	for (size_t k = 0; k < n; k++) {
		if (expand_push(dir, e, targets[k], e->depth[i] + 1u, error_r) < 0)
			return -1;
	}
	return (int)n;
}

/* Walk from e->addr[0] to mailboxes. Each address is, in this order: a
 * mailbox; an alias (its targets are walked); postmaster@ of a local
 * domain (the domain's first mailbox); or nothing (skipped: a target whose
 * mailbox was deleted, or in a domain no longer local). rcpt may be NULL
 * to only walk the aliases. */
static int expand_run(struct dir *dir, struct expand *e, struct dir_rcpt *rcpt,
                      const char **error_r)
{
	struct dir_user user;
	int r;

	for (size_t i = 0; i < e->n; i++) {
		const char *addr = e->addr[i];
		const char *domain = dir_domain_of(addr);

		if (domain == NULL)
			continue;
		r = dir->backend->user_lookup(dir, addr, &user, error_r);
		if (r < 0)
			return -1;
		if (r > 0) {
			if (rcpt != NULL && rcpt_add(dir, rcpt, &user, error_r) < 0)
				return -1;
			continue;
		}
		r = push_targets(dir, e, i, error_r);
		if (r < 0)
			return -1;
		if (r > 0 || !is_postmaster(addr))
			continue;
		/* RFC 5321 §4.5.1: every local domain accepts postmaster. */
		r = dir->backend->user_first_in_domain(dir, domain, &user, error_r);
		if (r < 0)
			return -1;
		if (r > 0 && rcpt != NULL && rcpt_add(dir, rcpt, &user, error_r) < 0)
			return -1;
	}
	return 0;
}

int dir_rcpt_resolve(struct dir *dir, const char *address, enum dir_rcpt_result *result_r,
                     struct dir_rcpt *rcpt, const char **error_r)
{
	char addr[DIR_ADDRESS_MAX + 1];
	const char *domain;
	struct expand *e;
	int r;

	if (dir_need(dir, DIR_MAILBOXES, error_r) < 0)
		return -1;

	rcpt->n = 0;
	*result_r = DIR_RCPT_NO_USER;
	if (dir_normalize(address, addr, sizeof(addr)) < 0)
		return 0;
	if (strcmp(addr, "postmaster") == 0) {
		/* "<Postmaster>" without a domain (RFC 5321 §4.1.1.3): the
		 * postmaster of the first local domain. */
		char first[DIR_DOMAIN_MAX + 1];

		r = dir->backend->domain_first(dir, first, error_r);
		if (r <= 0) {
			*result_r = DIR_RCPT_NOT_LOCAL;
			return r;
		}
		if (strlen("postmaster@") + strlen(first) > DIR_ADDRESS_MAX)
			return 0;
		snprintf(addr, sizeof(addr), "postmaster@%s", first);
	}
	domain = dir_domain_of(addr);
	if (domain == NULL) {
		*result_r = DIR_RCPT_NOT_LOCAL;
		return 0;
	}
	r = dir->backend->domain_exists(dir, domain, error_r);
	if (r < 0)
		return -1;
	if (r == 0) {
		*result_r = DIR_RCPT_NOT_LOCAL;
		return 0;
	}
	e = calloc(1, sizeof(*e));
	if (e == NULL)
		return dir_fail(dir, error_r, "resolving %s: out of memory", addr);
	memcpy(e->addr[0], addr, strlen(addr) + 1);
	e->n = 1;
	r = expand_run(dir, e, rcpt, error_r);
	free(e);
	if (r < 0) {
		rcpt->n = 0;
		return -1;
	}
	if (rcpt->n > 0)
		*result_r = DIR_RCPT_OK;
	return 0;
}

/* The checks of dir_alias_add and the insert, inside its transaction. */
static int alias_add_locked(struct dir *dir, const char *addr, const char *domain, const char *to,
                            struct dir_rcpt *rcpt, struct expand *e, const char **error_r)
{
	enum dir_rcpt_result result;
	struct dir_user user;
	int r;

	r = dir->backend->domain_exists(dir, domain, error_r);
	if (r <= 0)
		return r == 0 ? dir_fail(dir, error_r, "domain %s is not local", domain) : -1;
	r = dir->backend->user_lookup(dir, addr, &user, error_r);
	if (r != 0)
		return r > 0 ? dir_fail(dir, error_r, "%s is a mailbox", addr) : -1;
	/* The target must deliver somewhere now: a mailbox, an alias, or a
	 * local postmaster. */
	if (dir_rcpt_resolve(dir, to, &result, rcpt, error_r) < 0)
		return -1;
	if (result == DIR_RCPT_NOT_LOCAL)
		return dir_fail(dir, error_r, "target %s is not in a local domain", to);
	if (result != DIR_RCPT_OK)
		return dir_fail(dir, error_r, "target %s is no mailbox or alias", to);
	/* A loop: the new alias would be reachable from its own target. */
	memcpy(e->addr[0], to, strlen(to) + 1);
	e->n = 1;
	if (expand_run(dir, e, NULL, error_r) < 0)
		return -1;
	if (expand_seen(e, addr))
		return dir_fail(dir, error_r, "%s -> %s would make an alias loop", addr, to);

	if (dir->backend->alias_insert(dir, addr, to, error_r) < 0)
		return -1;
	/* Within the limits as a whole: DIR_MAX_TARGETS mailboxes and
	 * DIR_MAX_ALIAS_DEPTH levels (resolve fails past the first). */
	memset(e, 0, sizeof(*e));
	memcpy(e->addr[0], addr, strlen(addr) + 1);
	e->n = 1;
	rcpt->n = 0;
	if (expand_run(dir, e, rcpt, error_r) < 0)
		return -1;
	if (e->too_deep)
		return dir_fail(dir, error_r, "aliases would nest deeper than %d levels",
		                DIR_MAX_ALIAS_DEPTH);
	return 0;
}

int dir_alias_add(struct dir *dir, const char *address, const char *target, const char **error_r)
{
	char addr[DIR_ADDRESS_MAX + 1], to[DIR_ADDRESS_MAX + 1];
	struct dir_rcpt *rcpt;
	struct expand *e;
	const char *domain;
	int r = -1;

	if (dir_need(dir, DIR_MAILBOXES, error_r) < 0)
		return -1;

	if (dir_normalize(address, addr, sizeof(addr)) < 0 ||
	    (domain = dir_domain_of(addr)) == NULL)
		return dir_fail(dir, error_r, "bad alias address");
	if (dir_normalize(target, to, sizeof(to)) < 0 || dir_domain_of(to) == NULL)
		return dir_fail(dir, error_r, "bad alias target");
	if (strcmp(addr, to) == 0)
		return dir_fail(dir, error_r, "alias %s cannot point to itself", addr);
	rcpt = malloc(sizeof(*rcpt));
	e = calloc(1, sizeof(*e));
	if (rcpt == NULL || e == NULL) {
		free(rcpt);
		free(e);
		return dir_fail(dir, error_r, "adding an alias: out of memory");
	}
	/* Every check and the insert in one transaction, so that a
	 * concurrent change cannot slip a loop in between. */
	if (dir->backend->tx_begin(dir, error_r) == 0) {
		r = alias_add_locked(dir, addr, domain, to, rcpt, e, error_r);
		if (r == 0)
			r = dir->backend->tx_commit(dir, error_r);
		else
			dir->backend->tx_abort(dir);
	}
	free(rcpt);
	free(e);
	return r < 0 ? -1 : 0;
}

int dir_alias_del(struct dir *dir, const char *address, const char *target, const char **error_r)
{
	char addr[DIR_ADDRESS_MAX + 1], to[DIR_ADDRESS_MAX + 1];

	if (dir_need(dir, DIR_MAILBOXES, error_r) < 0)
		return -1;

	if (dir_normalize(address, addr, sizeof(addr)) < 0)
		return dir_fail(dir, error_r, "no such alias");
	if (target == NULL)
		return dir->backend->alias_del(dir, addr, NULL, error_r);
	if (dir_normalize(target, to, sizeof(to)) < 0)
		return dir_fail(dir, error_r, "alias %s has no such target", addr);
	return dir->backend->alias_del(dir, addr, to, error_r);
}

int dir_alias_list(struct dir *dir, const char *domain,
                   void (*fn)(void *ctx, const char *address, const char *target), void *ctx,
                   const char **error_r)
{
	char name[DIR_DOMAIN_MAX + 1];

	if (dir_need(dir, DIR_MAILBOXES, error_r) < 0)
		return -1;

	if (domain == NULL)
		return dir->backend->alias_list(dir, NULL, fn, ctx, error_r);
	if (dir_normalize(domain, name, sizeof(name)) < 0)
		return 0;
	return dir->backend->alias_list(dir, name, fn, ctx, error_r);
}
