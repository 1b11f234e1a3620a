/* Copying one directory into another, for `pillar migrate-directory`:
 * every row as it is (hashes, SCRAM keys, APOP secrets, quotas, lock,
 * creation and last-login times) and the instance secret, so that a
 * mailbox logs in and resolves the same before and after.
 *
 * The writes are upserts: copying the same source twice leaves the target
 * as the first copy made it. Order matters where the directory gives it a
 * meaning (the first domain and the oldest mailbox of a domain get
 * postmaster's mail), so sources list in creation order and targets keep
 * the order of their first insert. Returns follow directory.h. */
#ifndef PILLAR_DIRECTORY_TRANSFER_H
#define PILLAR_DIRECTORY_TRANSFER_H

#include "directory/directory.h"

struct dir_transfer_ops {
	/* Source side. */
	int (*domains)(struct dir *dir, void (*fn)(void *ctx, const char *domain, int64_t created),
	               void *ctx, const char **error_r);
	int (*users)(struct dir *dir, void (*fn)(void *ctx, const struct dir_user *user), void *ctx,
	             const char **error_r);
	/* Target side. */
	int (*put_domain)(struct dir *dir, const char *domain, int64_t created,
	                  const char **error_r);
	int (*put_user)(struct dir *dir, const struct dir_user *user, const struct dir_scram *scram,
	                const char *apop_secret, const char **error_r);
	int (*put_alias)(struct dir *dir, const char *address, const char *target,
	                 const char **error_r);
	int (*put_secret)(struct dir *dir, const uint8_t secret[DIR_INSTANCE_SECRET_LEN],
	                  const char **error_r);
};

/* The name of dir's backend ("sqlite", "postgresql"). */
const char *dir_backend_name(const struct dir *dir);

/* Source side: every domain with its creation time, every mailbox (with
 * its password hash), both in creation order. -1 with *error_r when the
 * backend cannot be a source. */
int dir_transfer_domains(struct dir *dir,
                         void (*fn)(void *ctx, const char *domain, int64_t created), void *ctx,
                         const char **error_r);
int dir_transfer_users(struct dir *dir, void (*fn)(void *ctx, const struct dir_user *user),
                       void *ctx, const char **error_r);

/* Target side: insert, or make an existing row equal to the given one.
 * put_user's domain must be there already; scram and apop_secret may be
 * NULL (none). put_alias adds a missing pair only. put_secret replaces the
 * instance secret. -1 with *error_r when the backend cannot be a target. */
int dir_transfer_put_domain(struct dir *dir, const char *domain, int64_t created,
                            const char **error_r);
int dir_transfer_put_user(struct dir *dir, const struct dir_user *user,
                          const struct dir_scram *scram, const char *apop_secret,
                          const char **error_r);
int dir_transfer_put_alias(struct dir *dir, const char *address, const char *target,
                           const char **error_r);
int dir_transfer_put_secret(struct dir *dir, const uint8_t secret[DIR_INSTANCE_SECRET_LEN],
                            const char **error_r);

/* A transaction on the target around the whole copy, so a failed copy
 * leaves it as it was. */
int dir_transfer_begin(struct dir *dir, const char **error_r);
int dir_transfer_commit(struct dir *dir, const char **error_r);
void dir_transfer_abort(struct dir *dir);

#endif
