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

/* Open the configured directory. With create, a missing SQLite database is
 * created with the current schema (pillar init); without, it must exist. */
int dir_open(const struct config *cfg, bool create, struct dir **dir_r, const char **error_r);
void dir_close(struct dir **dir);

/* Validate a domain name / a mailbox address (syntax only, lower-cases in
 * place). A mailbox local part may not contain '/', NUL, control characters
 * or spaces, nor start with '.', so it is safe as a directory name. Returns
 * 0 or -1 with *error_r. */
int dir_check_domain(char *domain, const char **error_r);
int dir_check_address(char *address, const char **error_r);

int dir_domain_add(struct dir *dir, const char *domain, const char **error_r);
/* Refuses (-1) while the domain has mailboxes. */
int dir_domain_del(struct dir *dir, const char *domain, const char **error_r);
int dir_domain_exists(struct dir *dir, const char *domain, const char **error_r);
/* Calls fn for each domain in name order with its mailbox count. */
int dir_domain_list(struct dir *dir, void (*fn)(void *ctx, const char *domain, uint64_t mailboxes),
		    void *ctx, const char **error_r);

/* The domain must exist; the address must not. */
int dir_user_add(struct dir *dir, const char *address, const char *password_hash,
		 const char **error_r);
int dir_user_del(struct dir *dir, const char *address, const char **error_r);
int dir_user_set_password(struct dir *dir, const char *address, const char *password_hash,
			  const char **error_r);
int dir_user_lookup(struct dir *dir, const char *address, struct dir_user *out,
		    const char **error_r);
int dir_user_touch_login(struct dir *dir, const char *address, int64_t when,
			 const char **error_r);
/* Calls fn for each mailbox (of `domain`, or all when NULL) in address order. */
int dir_user_list(struct dir *dir, const char *domain,
		  void (*fn)(void *ctx, const struct dir_user *user), void *ctx,
		  const char **error_r);

#endif
