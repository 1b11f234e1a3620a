/* The login workers' seccomp allow-list (see sandbox.c). */
#ifndef PILLAR_SERVER_SANDBOX_H
#define PILLAR_SERVER_SANDBOX_H

#include <stdbool.h>

/* Install it for the calling process and its threads, for good; call
 * after the chroot and the drop (PR_SET_NO_NEW_PRIVS is set by then).
 * Returns 0, or -1 with *error_r. */
int sandbox_login_worker(const char **error_r);

/* A worker's exit. A sanitizer build's leak check at exit reads /proc,
 * which a chrooted login worker cannot reach (the check then fails with a
 * fatal error of its own): such a worker leaves without the exit handlers.
 * The login code's leaks are checked in one process instead, by the unit
 * tests and the fuzzers. */
_Noreturn void sandbox_exit(int status, bool chrooted);

#endif
