/* System-call allow-lists (seccomp, via libseccomp) for every process
 * that serves clients.
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
 * Mail workers (as run_as) and the auth process (as auth_as) also work
 * with files: the Maildirs and the directory (SQLite, or PostgreSQL over
 * the network).
 * Neither makes a listening socket (the master made every one). Their list
 * adds those calls and nothing that changes
 * who the process is or what it runs: no exec, no ptrace, no mount, no
 * set*id, no new namespaces. A call outside it fails with EPERM instead of
 * killing the process, which holds the sessions of many users: a library
 * path the list missed then shows as an error where it happened, and the
 * process goes on.
 *
 * The filter covers every thread of the process (the pool's threads exist
 * by then). The lists apply on x86-64 and the other architectures
 * libseccomp knows; a name the running architecture lacks is skipped.
 * Sanitizer builds do not install them: their runtimes use calls of their
 * own (reading /proc, extra signal stacks) at unpredictable moments. */
#include "server/sandbox.h"

#include <errno.h>
#include <seccomp.h>
#include <stddef.h>
#include <stdint.h>
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
int sandbox_enter(enum sandbox_kind kind, const char **error_r)
{
	(void)kind;
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

/* Mail workers and the auth process: also these. */
static const char *const allowed_files[] = {
    /* files and directories */
    "open", "openat", "creat", "close_range", "stat", "lstat", "statx", "statfs", "fstatfs",
    "access", "faccessat", "faccessat2", "getdents", "getdents64", "pread64", "pwrite64", "preadv",
    "pwritev", "readlink", "readlinkat", "unlink", "unlinkat", "rename", "renameat", "renameat2",
    "link", "linkat", "mkdir", "mkdirat", "rmdir", "fsync", "fdatasync", "sync_file_range", "flock",
    "ftruncate", "truncate", "fallocate", "fchmod", "fchmodat", "chmod", "fchown", "fchownat",
    "umask", "utimensat", "getcwd", "chdir", "fchdir", "fadvise64", "copy_file_range", "sendfile",
    "msync", "mincore",
    /* the pool's background thread at a low priority; resource use */
    "setpriority", "getpriority", "getrusage", "times", "sysinfo", "getresuid", "getresgid",
    "getgroups"};

/* Login workers: answered EACCES rather than fatal. */
static const char *const refused[] = {"open",  "openat",   "openat2",   "stat",
                                      "lstat", "access",   "faccessat", "faccessat2",
                                      "statx", "readlink", "readlinkat"};

static int add_rules(scmp_filter_ctx ctx, const char *const *names, size_t n, uint32_t action)
{
	int r = 0;

	for (size_t i = 0; r == 0 && i < n; i++) {
		int nr = seccomp_syscall_resolve_name(names[i]);
		if (nr != __NR_SCMP_ERROR)
			r = seccomp_rule_add(ctx, action, nr, 0);
	}
	return r;
}

#define ADD_RULES(ctx, names, action)                                                              \
	add_rules(ctx, names, sizeof(names) / sizeof(names[0]), action)

int sandbox_enter(enum sandbox_kind kind, const char **error_r)
{
	static char errbuf[96];
	bool login = kind == SANDBOX_LOGIN;
	scmp_filter_ctx ctx = seccomp_init(login ? SCMP_ACT_KILL_PROCESS : SCMP_ACT_ERRNO(EPERM));
	int r = ctx == NULL ? -ENOMEM : 0;

	/* Every thread, not only the caller. */
	if (r == 0)
		r = seccomp_attr_set(ctx, SCMP_FLTATR_CTL_TSYNC, 1);
	if (r == 0)
		r = ADD_RULES(ctx, allowed, SCMP_ACT_ALLOW);
	if (r == 0 && login)
		r = ADD_RULES(ctx, refused, SCMP_ACT_ERRNO(EACCES));
	if (r == 0 && !login)
		r = ADD_RULES(ctx, allowed_files, SCMP_ACT_ALLOW);
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
