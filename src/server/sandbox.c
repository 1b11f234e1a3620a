/* The login workers' system-call allow-list (seccomp, via libseccomp).
 *
 * A login worker talks to clients that have not logged in, so it is the
 * process most worth containing. After its chroot and its drop to
 * login_as it needs little: its event loop, sockets it already has (plus
 * socketpairs for TLS relays and a connection to the auth process), memory,
 * time, randomness, signals and its threads. Anything else kills it; the
 * master starts a fresh one. Opening files is answered EACCES instead of a
 * kill: a library that probes for a file (a time zone, a configuration)
 * should see "not there", as it would in the empty chroot anyway.
 *
 * The list applies on x86-64 and the other architectures libseccomp knows;
 * a name the running architecture lacks is skipped. Sanitizer builds do not
 * install it: their runtimes use calls of their own (reading /proc, extra
 * signal stacks) at unpredictable moments. */
#include "server/sandbox.h"

#include <errno.h>
#include <seccomp.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_UNDEFINED__)
#define SANDBOX_UNDER_SANITIZER 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(undefined_behavior_sanitizer)
#define SANDBOX_UNDER_SANITIZER 1
#endif
#endif

#ifdef SANDBOX_UNDER_SANITIZER
int sandbox_login_worker(const char **error_r)
{
	(void)error_r;
	return 0;
}

void sandbox_exit(int status, bool chrooted)
{
	if (chrooted)
		_exit(status);
	exit(status);
}
#else
static const char *const allowed[] = {
    /* the loop and sockets */
    "read", "write", "readv", "writev", "recvfrom", "recvmsg", "recvmmsg", "sendto", "sendmsg",
    "sendmmsg", "close", "shutdown", "accept", "accept4", "socket", "connect", "socketpair",
    "getsockname", "getpeername", "setsockopt", "getsockopt", "fcntl", "ioctl", "epoll_create",
    "epoll_create1", "epoll_ctl", "epoll_wait", "epoll_pwait", "epoll_pwait2", "poll", "ppoll",
    "select", "pselect6", "eventfd2", "pipe2", "dup", "dup2", "dup3", "fstat", "newfstatat",
    "lseek",
    /* memory */
    "mmap", "munmap", "mremap", "mprotect", "brk", "madvise",
    /* threads (the pool), time, randomness, signals, exit */
    "futex", "clone", "clone3", "set_robust_list", "rseq", "sched_yield", "sched_getaffinity",
    "membarrier", "clock_gettime", "clock_getres", "gettimeofday", "time", "nanosleep",
    "clock_nanosleep", "getrandom", "rt_sigaction", "rt_sigprocmask", "rt_sigreturn", "sigaltstack",
    "restart_syscall", "exit", "exit_group", "getpid", "gettid", "getppid", "tgkill", "getuid",
    "geteuid", "getgid", "getegid", "prctl", "uname", "getrlimit", "prlimit64"};

/* Answered EACCES rather than fatal. */
static const char *const refused[] = {"open",  "openat",   "openat2",   "stat",
                                      "lstat", "access",   "faccessat", "faccessat2",
                                      "statx", "readlink", "readlinkat"};

int sandbox_login_worker(const char **error_r)
{
	static char errbuf[96];
	scmp_filter_ctx ctx = seccomp_init(SCMP_ACT_KILL_PROCESS);
	int r = ctx == NULL ? -ENOMEM : 0;

	for (size_t i = 0; r == 0 && i < sizeof(allowed) / sizeof(allowed[0]); i++) {
		int nr = seccomp_syscall_resolve_name(allowed[i]);
		if (nr != __NR_SCMP_ERROR)
			r = seccomp_rule_add(ctx, SCMP_ACT_ALLOW, nr, 0);
	}
	for (size_t i = 0; r == 0 && i < sizeof(refused) / sizeof(refused[0]); i++) {
		int nr = seccomp_syscall_resolve_name(refused[i]);
		if (nr != __NR_SCMP_ERROR)
			r = seccomp_rule_add(ctx, SCMP_ACT_ERRNO(EACCES), nr, 0);
	}
	if (r == 0)
		r = seccomp_load(ctx);
	if (ctx != NULL)
		seccomp_release(ctx);
	if (r < 0) {
		snprintf(errbuf, sizeof(errbuf), "seccomp: %s", strerror(-r));
		*error_r = errbuf;
		return -1;
	}
	return 0;
}

void sandbox_exit(int status, bool chrooted)
{
	(void)chrooted;
	exit(status);
}
#endif
