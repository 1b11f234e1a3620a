/* The directory: which domains are local, which mailboxes exist, their
 * password hashes, quotas and state. One interface; the backend is chosen by
 * the `directory` config key (SQLite, the default, lives in
 * <state_dir>/directory.db in WAL mode).
 *
 * A `struct dir` is a connection: use one per thread. All functions return
 * 0 on success and -1 on error with *error_r set (a static or per-connection
 * string valid until the next call); lookups return 1 found / 0 not found /
 * -1 error. Addresses are stored and looked up lower-cased. */
#ifndef PILLAR_DIRECTORY_DIRECTORY_H
#define PILLAR_DIRECTORY_DIRECTORY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct config;
struct dir;

/* RFC 5321 §4.5.3.1: local part 64, domain 255, path 256 (so 254 usable). */
#define DIR_ADDRESS_MAX 254
#define DIR_DOMAIN_MAX  255
#define DIR_LOCAL_MAX   64
#define DIR_HASH_MAX    255

struct dir_user {
	char address[DIR_ADDRESS_MAX + 1];
	char password_hash[DIR_HASH_MAX + 1]; /* crypt(3) form */
	uint64_t quota_bytes;                 /* 0 = none */
	uint64_t quota_messages;              /* 0 = none */
	bool locked;
	int64_t created;    /* unix seconds */
	int64_t last_login; /* unix seconds, 0 = never */
};

/* The two parts of the directory. The secrets are what proves a login:
 * password hashes, SCRAM keys, APOP secrets, whether a mailbox may log in
 * (locked) and when it last did, and the instance secret. With SQLite
 * they live in a file of their own, <state_dir>/auth/secrets.db, that
 * only auth_as (and root) may open; with PostgreSQL mail workers may use
 * a role of their own (mail_directory) that cannot read those columns. */
enum dir_part {
	DIR_MAILBOXES = 1 << 0, /* domains, mailboxes and their quotas, aliases */
	DIR_SECRETS = 1 << 1,
	DIR_EVERYTHING = DIR_MAILBOXES | DIR_SECRETS,
};

/* From now on this process opens only `parts` (by default everything, as
 * the admin commands do): mail workers and `pillar deliver` the
 * mailboxes, the auth process the secrets. A function that needs a part
 * not open fails, saying so. A user looked up without the secrets has an
 * empty password hash, is not locked and never logged in; one looked up
 * with only the secrets has no quota and no creation time. */
void dir_open_only(unsigned parts);

/* Open the configured directory. With create, a missing SQLite database is
 * created with the current schema (pillar init); without, it must exist.
 * Opening everything migrates an older schema. */
int dir_open(const struct config *cfg, bool create, struct dir **dir_r, const char **error_r);
void dir_close(struct dir **dir);
/* Whether a `directory` setting names a PostgreSQL database (a
 * postgresql:// or postgres:// URL) rather than "sqlite". */
bool dir_is_postgresql(const char *directory);

/* Validate a domain name / a mailbox address (syntax only, lower-cases in
 * place). A mailbox local part may not contain '/', NUL, control characters
 * or spaces, nor start with '.', so it is safe as a directory name. Returns
 * 0 or -1 with *error_r. */
int dir_check_domain(char *domain, const char **error_r);
int dir_check_address(char *address, const char **error_r);

int dir_domain_add(struct dir *dir, const char *domain, const char **error_r);
/* Refuses (-1) while the domain has mailboxes; removes the domain's
 * aliases with it. */
int dir_domain_del(struct dir *dir, const char *domain, const char **error_r);
int dir_domain_exists(struct dir *dir, const char *domain, const char **error_r);
/* Calls fn for each domain in name order with its mailbox count. */
int dir_domain_list(struct dir *dir, void (*fn)(void *ctx, const char *domain, uint64_t mailboxes),
                    void *ctx, const char **error_r);

/* The domain must exist; the address must not (as a mailbox or alias). */
int dir_user_add(struct dir *dir, const char *address, const char *password_hash,
                 const char **error_r);
/* Also removes every alias row that has the mailbox as its target (in the
 * same transaction); list them first (dir_alias_list) to report them. */
int dir_user_del(struct dir *dir, const char *address, const char **error_r);
/* Set both quota limits (0 = none); the new values apply to the next
 * delivery. */
int dir_user_set_quota(struct dir *dir, const char *address, uint64_t bytes, uint64_t messages,
                       const char **error_r);
/* Lock or unlock a mailbox: a locked mailbox cannot log in (POP3 answers
 * "-ERR [AUTH] mailbox locked" to the right password only) but still
 * receives mail. Sessions already open are not affected. */
int dir_user_set_locked(struct dir *dir, const char *address, bool locked, const char **error_r);
/* Give a mailbox a new address, in one transaction: the new domain must be
 * local, the new address must be neither a mailbox nor an alias; aliases
 * that named the old address name the new one. Everything else (password,
 * keys, quota, lock, times) stays. A mailbox moved into another domain
 * counts there as its newest (for postmaster@). Only the row: moving the
 * Maildir is the caller's job. */
int dir_user_rename(struct dir *dir, const char *old_address, const char *new_address,
                    const char **error_r);
/* Replace the password hash. The SCRAM keys and any APOP secret derive from
 * the old password, so they are cleared in the same statement; use
 * dir_user_set_credentials to set all of them at once. */
int dir_user_set_password(struct dir *dir, const char *address, const char *password_hash,
                          const char **error_r);

/* ---- secrets beyond the password hash ---- */

/* SCRAM-SHA-256 stored keys (RFC 5802 §3, RFC 7677): enough to verify a
 * SCRAM login, not to log in as the user elsewhere. */
#define DIR_SCRAM_SALT_MAX 64
#define DIR_SCRAM_KEY_LEN  32 /* SHA-256 */
struct dir_scram {
	uint8_t salt[DIR_SCRAM_SALT_MAX];
	size_t salt_len; /* 1..DIR_SCRAM_SALT_MAX */
	uint32_t iterations;
	uint8_t stored_key[DIR_SCRAM_KEY_LEN];
	uint8_t server_key[DIR_SCRAM_KEY_LEN];
};

/* RFC 1939 §7 APOP needs the password itself (a plaintext equivalent); only
 * mailboxes that opted in (pillar user passwd --apop) have one. */
#define DIR_APOP_SECRET_MAX 1024

/* The mailbox's SCRAM keys: 1 when it has them, 0 when there is no such
 * mailbox or it has none yet (an imported hash), -1 on error. */
int dir_user_get_scram(struct dir *dir, const char *address, struct dir_scram *out,
                       const char **error_r);

/* Store SCRAM keys computed at a successful login, but only while the
 * mailbox still has `password_hash` (the hash the password was checked
 * against) and no keys: a password changed meanwhile must not get keys
 * derived from the old one. Returns 1 stored, 0 not (changed meanwhile, or
 * no such mailbox), -1 on error. */
int dir_user_set_scram(struct dir *dir, const char *address, const char *password_hash,
                       const struct dir_scram *scram, const char **error_r);

/* The mailbox's APOP secret into secret[size] (size > DIR_APOP_SECRET_MAX
 * is always enough): 1 when it has one, 0 when there is no such mailbox or
 * it has none, -1 on error. The caller wipes it after use. */
int dir_user_get_apop(struct dir *dir, const char *address, char *secret, size_t size,
                      const char **error_r);

/* A random key made once when the directory was created (or migrated to
 * schema 3), the same for every process and server that shares the
 * directory. For values that must be stable yet unpredictable, such as the
 * SCRAM salt shown for a user that does not exist (it must not change
 * between workers, restarts or servers, or it would tell that the user is
 * not real). */
#define DIR_INSTANCE_SECRET_LEN 32
int dir_instance_secret(struct dir *dir, uint8_t out[DIR_INSTANCE_SECRET_LEN],
                        const char **error_r);

/* Set the password hash, the SCRAM keys (NULL: none) and the APOP secret
 * (NULL: none) together, in one statement. */
int dir_user_set_credentials(struct dir *dir, const char *address, const char *password_hash,
                             const struct dir_scram *scram, const char *apop_secret,
                             const char **error_r);
int dir_user_lookup(struct dir *dir, const char *address, struct dir_user *out,
                    const char **error_r);
/* Records a login at `when`. The time is kept to the minute: when the
 * recorded one is less than DIR_LAST_LOGIN_STEP_S older, nothing is written,
 * so a client polling every few seconds costs no write (and no fsync) per
 * login. A missing mailbox is an error. */
#define DIR_LAST_LOGIN_STEP_S   60
#define DIR_LAST_LOGIN_STEP_SQL "60"
int dir_user_touch_login(struct dir *dir, const char *address, int64_t when, const char **error_r);
/* Calls fn for each mailbox (of `domain`, or all when NULL) in address order. */
int dir_user_list(struct dir *dir, const char *domain,
                  void (*fn)(void *ctx, const struct dir_user *user), void *ctx,
                  const char **error_r);

/* ---- mail delivery: recipients and aliases ---- */

/* Mailboxes one address may expand to (an alias with more is refused). */
#define DIR_MAX_TARGETS 32
/* Aliases may point to aliases this deep; deeper is treated as a loop. */
#define DIR_MAX_ALIAS_DEPTH 8

enum dir_rcpt_result {
	DIR_RCPT_OK,        /* rcpt->n mailboxes, n >= 1 */
	DIR_RCPT_NO_USER,   /* a local domain, but no such mailbox or alias */
	DIR_RCPT_NOT_LOCAL, /* not one of our domains: relaying is refused */
};

struct dir_rcpt {
	size_t n;
	struct dir_user users[DIR_MAX_TARGETS]; /* distinct mailboxes */
};

/* Resolve an envelope recipient (lower-case "local@domain") to mailboxes:
 * a mailbox is itself; an alias expands (recursively, duplicates removed)
 * to its targets; "postmaster@<local domain>" (RFC 5321 §4.5.1) without an
 * alias goes to the domain's first-created mailbox; a bare "postmaster"
 * is postmaster@ of the first domain added. Targets that no longer lead
 * anywhere (a deleted mailbox, a domain no longer local) are skipped; an
 * alias with none left is DIR_RCPT_NO_USER. The users come without their
 * password hashes (zeroed). Returns 0 with *result_r
 * (and rcpt filled on DIR_RCPT_OK), or -1 with *error_r. */
int dir_rcpt_resolve(struct dir *dir, const char *address, enum dir_rcpt_result *result_r,
                     struct dir_rcpt *rcpt, const char **error_r);

/* An alias address in a local domain to a target (a mailbox or another
 * alias, possibly in another local domain, or a local postmaster@). The
 * address must be in a local domain and not a mailbox; a target that does
 * not exist, that would make the alias reach itself, nest aliases deeper
 * than DIR_MAX_ALIAS_DEPTH or expand past DIR_MAX_TARGETS is refused. */
int dir_alias_add(struct dir *dir, const char *address, const char *target, const char **error_r);
/* Remove one target, or every target when target is NULL. */
int dir_alias_del(struct dir *dir, const char *address, const char *target, const char **error_r);
/* Calls fn for each (alias, target) pair, of `domain` or all when NULL, in
 * address order. */
int dir_alias_list(struct dir *dir, const char *domain,
                   void (*fn)(void *ctx, const char *address, const char *target), void *ctx,
                   const char **error_r);

#endif
