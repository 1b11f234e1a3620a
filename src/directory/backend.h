/* Inside the directory: what a backend (sqlite*.c, pg*.c) provides to
 * directory.c, which implements directory.h on top of it, and the helpers
 * directory.c gives the backends in return. Nothing outside src/directory/
 * includes this.
 *
 * Each backend's connection struct starts with a `struct dir`, so the
 * public handle is the same whatever the backend. The operations mean what
 * the public functions of the same name say in directory.h; the ones below
 * that have no public twin are marked. Every address and domain handed to
 * an operation is already lower-cased and fits its buffer (directory.c
 * normalizes first). */
#ifndef PILLAR_DIRECTORY_BACKEND_H
#define PILLAR_DIRECTORY_BACKEND_H

#include "directory/directory.h"

#define DIR_ERROR_MAX 256

struct dir {
	const struct dir_backend *backend;
	unsigned parts;          /* enum dir_part: what the backend opened */
	char err[DIR_ERROR_MAX]; /* what *error_r points at after a failure */
};

struct dir_backend {
	const char *name;
	/* Fill *dir_r (its backend is set by the caller, dir_open), or -1
	 * with *error_r; *dir_r is then the half-open connection (NULL when
	 * there is none), which dir_open closes once it has copied the error
	 * (it may live in dir->err). It opens `parts` (enum dir_part) and
	 * sets dir->parts. */
	int (*open)(const struct config *cfg, unsigned parts, bool create, struct dir **dir_r,
	            const char **error_r);
	void (*close)(struct dir *dir);

	/* Several operations that must happen together: a check made inside
	 * holds until the commit (writers are serialized, as SQLite's BEGIN
	 * IMMEDIATE does). tx_abort rolls back and cannot fail. */
	int (*tx_begin)(struct dir *dir, const char **error_r);
	int (*tx_commit)(struct dir *dir, const char **error_r);
	void (*tx_abort)(struct dir *dir);

	int (*domain_add)(struct dir *dir, const char *domain, const char **error_r);
	int (*domain_del)(struct dir *dir, const char *domain, const char **error_r);
	int (*domain_exists)(struct dir *dir, const char *domain, const char **error_r);
	/* Not public: the first domain added into out (DIR_DOMAIN_MAX + 1):
	 * 1, 0 when there is none, -1. */
	int (*domain_first)(struct dir *dir, char *out, const char **error_r);
	int (*domain_list)(struct dir *dir,
	                   void (*fn)(void *ctx, const char *domain, uint64_t mailboxes), void *ctx,
	                   const char **error_r);

	int (*user_add)(struct dir *dir, const char *address, const char *password_hash,
	                const char **error_r);
	int (*user_del)(struct dir *dir, const char *address, const char **error_r);
	int (*user_set_quota)(struct dir *dir, const char *address, uint64_t bytes,
	                      uint64_t messages, const char **error_r);
	int (*user_set_locked)(struct dir *dir, const char *address, bool locked,
	                       const char **error_r);
	int (*user_rename)(struct dir *dir, const char *from, const char *to, const char **error_r);
	int (*user_set_password)(struct dir *dir, const char *address, const char *password_hash,
	                         const char **error_r);
	int (*user_get_scram)(struct dir *dir, const char *address, struct dir_scram *out,
	                      const char **error_r);
	int (*user_set_scram)(struct dir *dir, const char *address, const char *password_hash,
	                      const struct dir_scram *scram, const char **error_r);
	int (*user_get_apop)(struct dir *dir, const char *address, char *secret, size_t size,
	                     const char **error_r);
	int (*instance_secret)(struct dir *dir, uint8_t out[DIR_INSTANCE_SECRET_LEN],
	                       const char **error_r);
	int (*user_set_credentials)(struct dir *dir, const char *address, const char *password_hash,
	                            const struct dir_scram *scram, const char *apop_secret,
	                            const char **error_r);
	int (*user_lookup)(struct dir *dir, const char *address, struct dir_user *out,
	                   const char **error_r);
	/* Not public: the domain's first-created mailbox still there (RFC 5321
	 * §4.5.1 postmaster): 1, 0, -1. */
	int (*user_first_in_domain)(struct dir *dir, const char *domain, struct dir_user *out,
	                            const char **error_r);
	int (*user_touch_login)(struct dir *dir, const char *address, int64_t when,
	                        const char **error_r);
	int (*user_list)(struct dir *dir, const char *domain,
	                 void (*fn)(void *ctx, const struct dir_user *user), void *ctx,
	                 const char **error_r);

	/* Not public: the targets of alias `address` in insertion order into
	 * targets[max] (rows too long to be addresses are skipped), *n_r of
	 * them. More than max is an error naming the alias. Returns 0 or -1. */
	int (*alias_targets)(struct dir *dir, const char *address,
	                     char (*targets)[DIR_ADDRESS_MAX + 1], size_t max, size_t *n_r,
	                     const char **error_r);
	/* Not public: insert one (address, target) row, nothing checked but
	 * that the pair is new ("alias A already points to T"). */
	int (*alias_insert)(struct dir *dir, const char *address, const char *target,
	                    const char **error_r);
	int (*alias_del)(struct dir *dir, const char *address, const char *target,
	                 const char **error_r);
	int (*alias_list)(struct dir *dir, const char *domain,
	                  void (*fn)(void *ctx, const char *address, const char *target), void *ctx,
	                  const char **error_r);

	/* Copying a whole directory (directory/transfer.h); NULL when the
	 * backend cannot be that end of a copy. */
	const struct dir_transfer_ops *transfer;
};

/* For directory.c and transfer.c. Copy an address or domain lower-cased
 * into buf (size DIR_ADDRESS_MAX+1 or more): -1 when it is too long to be
 * stored at all. The domain of a normalized address (after its last '@'),
 * or NULL. Whether SCRAM keys are usable. 0 when dir has every part in
 * `parts` (enum dir_part), else -1 saying which is missing. */
int dir_normalize(const char *in, char *buf, size_t size);
const char *dir_domain_of(const char *addr);
bool dir_scram_valid(const struct dir_scram *scram);
int dir_need(struct dir *dir, unsigned parts, const char **error_r);

/* Set dir->err from a format and point *error_r at it. Returns -1. */
int dir_fail(struct dir *dir, const char **error_r, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* The columns of a mailbox row that make a struct dir_user, in the order
 * dir_row_user takes them. */
#define DIR_USER_COLUMNS                                                                           \
	"address, password_hash, quota_bytes, quota_messages, locked, created, last_login"

/* Fill *out from the values of one row of DIR_USER_COLUMNS. The quotas are
 * stored signed; a negative one reads as none. Returns -1 (out zeroed) when
 * the address or the hash is missing (NULL) or too long for its field. */
int dir_row_user(struct dir_user *out, const char *address, const char *password_hash,
                 int64_t quota_bytes, int64_t quota_messages, bool locked, int64_t created,
                 int64_t last_login);

/* Fill *out from a row's SCRAM columns (a pointer is NULL when its column
 * is). Returns 1, or 0 with out untouched when a value is missing or out
 * of range: the mailbox then has no usable keys. */
int dir_row_scram(struct dir_scram *out, const void *salt, size_t salt_len, int64_t iterations,
                  const void *stored_key, size_t stored_len, const void *server_key,
                  size_t server_len);

extern const struct dir_backend dir_sqlite_backend;
extern const struct dir_backend dir_pg_backend;

#endif
