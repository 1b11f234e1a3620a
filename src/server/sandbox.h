/* The login workers' seccomp allow-list (see sandbox.c). */
#ifndef PILLAR_SERVER_SANDBOX_H
#define PILLAR_SERVER_SANDBOX_H

/* Install it for the calling process and its threads, for good; call
 * after the chroot and the drop (PR_SET_NO_NEW_PRIVS is set by then).
 * Returns 0, or -1 with *error_r. */
int sandbox_login_worker(const char **error_r);

#endif
