/* Copying one directory into another (transfer.h), on top of the
 * backends' transfer operations; the checks are directory.c's. */
#include "directory/backend.h"
#include "directory/transfer.h"

#include "core/util.h"

#include <string.h>

static const struct dir_transfer_ops *transfer(struct dir *dir, bool source, const char **error_r)
{
	const struct dir_transfer_ops *t = dir->backend->transfer;

	if (dir_need(dir, DIR_EVERYTHING, error_r) < 0)
		return NULL;
	if (t == NULL || (source ? t->domains == NULL : t->put_domain == NULL)) {
		dir_fail(dir, error_r, "a %s directory cannot be copied %s", dir->backend->name,
		         source ? "from" : "into");
		return NULL;
	}
	return t;
}

int dir_transfer_domains(struct dir *dir,
                         void (*fn)(void *ctx, const char *domain, int64_t created), void *ctx,
                         const char **error_r)
{
	const struct dir_transfer_ops *t = transfer(dir, true, error_r);

	return t != NULL ? t->domains(dir, fn, ctx, error_r) : -1;
}

int dir_transfer_users(struct dir *dir, void (*fn)(void *ctx, const struct dir_user *user),
                       void *ctx, const char **error_r)
{
	const struct dir_transfer_ops *t = transfer(dir, true, error_r);

	return t != NULL ? t->users(dir, fn, ctx, error_r) : -1;
}

int dir_transfer_put_domain(struct dir *dir, const char *domain, int64_t created,
                            const char **error_r)
{
	const struct dir_transfer_ops *t = transfer(dir, false, error_r);
	char name[DIR_DOMAIN_MAX + 1];

	if (t == NULL)
		return -1;
	if (dir_normalize(domain, name, sizeof(name)) < 0)
		return dir_fail(dir, error_r, "domain too long");
	return t->put_domain(dir, name, created, error_r);
}

int dir_transfer_put_user(struct dir *dir, const struct dir_user *user,
                          const struct dir_scram *scram, const char *apop_secret,
                          const char **error_r)
{
	const struct dir_transfer_ops *t = transfer(dir, false, error_r);
	struct dir_user u = *user;

	if (t == NULL)
		return -1;
	u.address[DIR_ADDRESS_MAX] = '\0';
	u.password_hash[DIR_HASH_MAX] = '\0';
	str_lower(u.address);
	if (dir_domain_of(u.address) == NULL)
		return dir_fail(dir, error_r, "bad address %s", u.address);
	if (u.quota_bytes > INT64_MAX || u.quota_messages > INT64_MAX)
		return dir_fail(dir, error_r, "%s: quota too large", u.address);
	if (scram != NULL && !dir_scram_valid(scram))
		return dir_fail(dir, error_r, "%s: bad SCRAM keys", u.address);
	if (apop_secret != NULL &&
	    (apop_secret[0] == '\0' || strlen(apop_secret) > DIR_APOP_SECRET_MAX))
		return dir_fail(dir, error_r, "%s: APOP secret empty or too long", u.address);
	return t->put_user(dir, &u, scram, apop_secret, error_r);
}

int dir_transfer_put_alias(struct dir *dir, const char *address, const char *target,
                           const char **error_r)
{
	const struct dir_transfer_ops *t = transfer(dir, false, error_r);
	char addr[DIR_ADDRESS_MAX + 1], to[DIR_ADDRESS_MAX + 1];

	if (t == NULL)
		return -1;
	if (dir_normalize(address, addr, sizeof(addr)) < 0 ||
	    dir_normalize(target, to, sizeof(to)) < 0)
		return dir_fail(dir, error_r, "alias or target too long");
	return t->put_alias(dir, addr, to, error_r);
}

int dir_transfer_put_secret(struct dir *dir, const uint8_t secret[DIR_INSTANCE_SECRET_LEN],
                            const char **error_r)
{
	const struct dir_transfer_ops *t = transfer(dir, false, error_r);

	return t != NULL ? t->put_secret(dir, secret, error_r) : -1;
}

int dir_transfer_begin(struct dir *dir, const char **error_r)
{
	return dir->backend->tx_begin(dir, error_r);
}

int dir_transfer_commit(struct dir *dir, const char **error_r)
{
	return dir->backend->tx_commit(dir, error_r);
}

void dir_transfer_abort(struct dir *dir)
{
	dir->backend->tx_abort(dir);
}
