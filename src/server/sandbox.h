/* The seccomp allow-lists of the processes that serve clients (see
 * sandbox.c). */
#ifndef PILLAR_SERVER_SANDBOX_H
#define PILLAR_SERVER_SANDBOX_H

#include <stdbool.h>

enum sandbox_kind {
	SANDBOX_LOGIN, /* login workers: sockets only, anything else kills */
	SANDBOX_MAIL,  /* mail workers and the auth process: files too */
};

/* Install one for the calling process and all its threads, for good;
 * call after the chroot and the drop (PR_SET_NO_NEW_PRIVS is set by then)
 * and once every listening socket is open. Returns 0, or -1 with
 * *error_r. */
int sandbox_enter(enum sandbox_kind kind, const char **error_r);

/* A worker's exit. A sanitizer build's leak check at exit reads /proc,
 * which a chrooted login worker cannot reach (the check then fails with a
 * fatal error of its own): such a worker leaves without the exit handlers.
 * The login code's leaks are checked in one process instead, by the unit
 * tests and the fuzzers. */
_Noreturn void sandbox_exit(int status, bool chrooted);

#endif
