/* Dropping root. The order is fixed (setgroups, setresgid, setresuid) and a
 * failure is fatal to the caller: a process that meant to drop and could not
 * must not go on. */
#ifndef PILLAR_CORE_PRIV_H
#define PILLAR_CORE_PRIV_H

#include <sys/types.h>

/* Look up `user`: returns 0 with uid/gid, or -1 with *error_r. */
int priv_lookup(const char *user, uid_t *uid_r, gid_t *gid_r, const char **error_r);

/* When running as root, become `user` for good (all of real, effective and
 * saved ids, supplementary groups = the user's primary group only). When not
 * root, does nothing and returns 0. Returns -1 with *error_r on failure. */
int priv_drop(const char *user, const char **error_r);

/* The same with ids looked up before (e.g. before a chroot, where the
 * account database is out of reach). */
int priv_become(uid_t uid, gid_t gid, const char **error_r);

#endif
