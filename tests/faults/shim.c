/* Fault injection for the integration tests, without special hardware: an
 * LD_PRELOAD library that makes one chosen system call fail (or kills the
 * process at it) when it touches a file under the mail root.
 *
 * The test suite builds it (cc -shared -fPIC -o shim.so shim.c -ldl) and
 * starts `pillar serve` or `pillar deliver` with
 *
 *   LD_PRELOAD=.../shim.so
 *   PILLAR_FAULT=<call>:<action>[:after=N][:times=K]
 *   PILLAR_FAULT_ROOT=<mail root>       only paths under it count
 *   PILLAR_FAULT_MARK=<file>            created when the fault fires
 *
 * <call>   write | fsync (also fdatasync) | rename (rename, renameat,
 *          renameat2) | link (link, linkat) | unlink (unlink, unlinkat) |
 *          create (open/openat with O_CREAT) | open (open/openat without
 *          O_CREAT, directories included) | read (read, pread, and mmap of a
 *          file: every way of reading a message's contents)
 * <action> an errno name (ENOSPC, EIO, EDQUOT, EXDEV, EMFILE, EROFS, EFBIG,
 *          ENOMEM, EPERM, EINTR, EINVAL): the call fails with it and does
 *          nothing;
 *          kill: SIGKILL before the call; kill-after: the call is made, then
 *          SIGKILL (before its caller sees the result);
 *          short (write only): half the bytes are written;
 *          stall: the call is made, but only after a pause of STALL_MS
 *          (the disk of a busy machine, for tests of what waits on it).
 * after=N  the N-th call under the root is the first to fail (default 1)
 * times=K  that many calls in a row fail (default 1)
 *
 * The fault fires once for the whole server: the first process to fire it
 * creates PILLAR_FAULT_MARK, and no process fires after the mark exists —
 * so a worker that the master starts again after a kill does not die the
 * same death, and the test can check that the fault really happened. Calls
 * are counted per process (workers=1 makes "the N-th call" exact). */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

enum call { C_NONE, C_WRITE, C_FSYNC, C_RENAME, C_LINK, C_UNLINK, C_CREATE, C_OPEN, C_READ };
enum action { A_ERRNO, A_KILL, A_KILL_AFTER, A_SHORT, A_STALL };

/* How long a stalled call waits before it is made. */
#define STALL_MS 2000

static struct {
	enum call call;
	enum action action;
	int err;
	long after, times;
	char root[PATH_MAX];
	size_t root_len;
	char mark[PATH_MAX];
} fault;

static long seen;  /* matching calls so far in this process */
static long fired; /* calls failed so far in this process */
static bool spent; /* another process fired it first */

static ssize_t (*real_write)(int, const void *, size_t);
static ssize_t (*real_read)(int, void *, size_t);
static ssize_t (*real_pread)(int, void *, size_t, off_t);
static void *(*real_mmap)(void *, size_t, int, int, int, off_t);
static int (*real_fsync)(int);
static int (*real_fdatasync)(int);
static int (*real_rename)(const char *, const char *);
static int (*real_renameat)(int, const char *, int, const char *);
static int (*real_renameat2)(int, const char *, int, const char *, unsigned);
static int (*real_link)(const char *, const char *);
static int (*real_linkat)(int, const char *, int, const char *, int);
static int (*real_unlink)(const char *);
static int (*real_unlinkat)(int, const char *, int);
static int (*real_open)(const char *, int, ...);
static int (*real_openat)(int, const char *, int, ...);

static const struct {
	const char *name;
	int err;
} errnos[] = {
    {"ENOSPC", ENOSPC}, {"EIO", EIO},     {"EDQUOT", EDQUOT}, {"EXDEV", EXDEV},
    {"EMFILE", EMFILE}, {"EROFS", EROFS}, {"EFBIG", EFBIG},   {"ENOMEM", ENOMEM},
    {"EPERM", EPERM},   {"EINTR", EINTR}, {"EINVAL", EINVAL},
};

static void say(const char *fmt, ...)
{
	char buf[512];
	va_list ap;
	va_start(ap, fmt);
	int n = vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	if (n > 0)
		(void)syscall(SYS_write, 2, buf,
		              (size_t)n < sizeof(buf) ? (size_t)n : sizeof(buf) - 1);
}

static enum call parse_call(const char *s, size_t n)
{
	static const struct {
		const char *name;
		enum call call;
	} calls[] = {{"write", C_WRITE}, {"fsync", C_FSYNC},   {"rename", C_RENAME},
	             {"link", C_LINK},   {"unlink", C_UNLINK}, {"create", C_CREATE},
	             {"open", C_OPEN},   {"read", C_READ}};
	for (size_t i = 0; i < sizeof(calls) / sizeof(calls[0]); i++)
		if (strlen(calls[i].name) == n && strncmp(s, calls[i].name, n) == 0)
			return calls[i].call;
	return C_NONE;
}

static int parse_action(const char *s, size_t n)
{
	if (n == 4 && strncmp(s, "kill", 4) == 0) {
		fault.action = A_KILL;
		return 0;
	}
	if (n == 10 && strncmp(s, "kill-after", 10) == 0) {
		fault.action = A_KILL_AFTER;
		return 0;
	}
	if (n == 5 && strncmp(s, "short", 5) == 0) {
		fault.action = A_SHORT;
		return 0;
	}
	if (n == 5 && strncmp(s, "stall", 5) == 0) {
		fault.action = A_STALL;
		return 0;
	}
	for (size_t i = 0; i < sizeof(errnos) / sizeof(errnos[0]); i++) {
		if (strlen(errnos[i].name) == n && strncmp(s, errnos[i].name, n) == 0) {
			fault.action = A_ERRNO;
			fault.err = errnos[i].err;
			return 0;
		}
	}
	return -1;
}

__attribute__((constructor)) static void shim_init(void)
{
	real_write = dlsym(RTLD_NEXT, "write");
	real_read = dlsym(RTLD_NEXT, "read");
	real_pread = dlsym(RTLD_NEXT, "pread");
	real_mmap = dlsym(RTLD_NEXT, "mmap");
	real_fsync = dlsym(RTLD_NEXT, "fsync");
	real_fdatasync = dlsym(RTLD_NEXT, "fdatasync");
	real_rename = dlsym(RTLD_NEXT, "rename");
	real_renameat = dlsym(RTLD_NEXT, "renameat");
	real_renameat2 = dlsym(RTLD_NEXT, "renameat2");
	real_link = dlsym(RTLD_NEXT, "link");
	real_linkat = dlsym(RTLD_NEXT, "linkat");
	real_unlink = dlsym(RTLD_NEXT, "unlink");
	real_unlinkat = dlsym(RTLD_NEXT, "unlinkat");
	real_open = dlsym(RTLD_NEXT, "open");
	real_openat = dlsym(RTLD_NEXT, "openat");

	const char *spec = getenv("PILLAR_FAULT");
	const char *root = getenv("PILLAR_FAULT_ROOT");
	const char *mark = getenv("PILLAR_FAULT_MARK");
	if (spec == NULL || root == NULL || mark == NULL || strlen(root) >= sizeof(fault.root) ||
	    strlen(mark) >= sizeof(fault.mark))
		return;
	strcpy(fault.root, root);
	fault.root_len = strlen(root);
	while (fault.root_len > 1 && fault.root[fault.root_len - 1] == '/')
		fault.root[--fault.root_len] = '\0';
	strcpy(fault.mark, mark);
	fault.after = 1;
	fault.times = 1;

	/* call:action[:after=N][:times=K] */
	const char *p = spec, *colon = strchr(p, ':');
	if (colon == NULL)
		goto bad;
	enum call call = parse_call(p, (size_t)(colon - p));
	p = colon + 1;
	colon = strchr(p, ':');
	if (call == C_NONE || parse_action(p, colon ? (size_t)(colon - p) : strlen(p)) < 0)
		goto bad;
	while (colon != NULL) {
		p = colon + 1;
		colon = strchr(p, ':');
		char *end;
		if (strncmp(p, "after=", 6) == 0)
			fault.after = strtol(p + 6, &end, 10);
		else if (strncmp(p, "times=", 6) == 0)
			fault.times = strtol(p + 6, &end, 10);
		else
			goto bad;
		if (end == p + 6 || (*end != '\0' && *end != ':') || fault.after < 1 ||
		    fault.times < 1)
			goto bad;
	}
	if (fault.action == A_SHORT && call != C_WRITE)
		goto bad;
	fault.call = call;
	return;
bad:
	say("fault shim: cannot parse PILLAR_FAULT=%s\n", spec);
	abort();
}

static bool under_root(const char *path)
{
	return strncmp(path, fault.root, fault.root_len) == 0 &&
	       (path[fault.root_len] == '/' || path[fault.root_len] == '\0');
}

static bool fd_path(int fd, char *out, size_t size)
{
	char link[64];
	snprintf(link, sizeof(link), "/proc/self/fd/%d", fd);
	ssize_t n = readlink(link, out, size - 1);
	if (n < 0)
		return false;
	out[n] = '\0';
	return true;
}

/* The absolute path of (dirfd, path), good enough for a prefix test. */
static bool at_path(int dirfd, const char *path, char *out, size_t size)
{
	char dir[PATH_MAX];
	if (path[0] == '/') {
		snprintf(out, size, "%s", path);
		return true;
	}
	if (dirfd == AT_FDCWD) {
		if (getcwd(dir, sizeof(dir)) == NULL)
			return false;
	} else if (!fd_path(dirfd, dir, sizeof(dir))) {
		return false;
	}
	snprintf(out, size, "%s/%s", dir, path);
	return true;
}

/* raise(3), a tgkill of this very thread, is what the servers' seccomp
 * filters let a process send; SIGKILL from it ends the whole process. */
static void die(void)
{
	for (;;)
		raise(SIGKILL);
}

/* Whether this call is to fail (or to kill): counts calls under the root.
 * Returns the action, or -1 to let the call through. */
static int decide(enum call call, const char *path)
{
	if (fault.call != call || path == NULL || !under_root(path))
		return -1;
	long n = __atomic_add_fetch(&seen, 1, __ATOMIC_SEQ_CST);
	if (n < fault.after || n >= fault.after + fault.times)
		return -1;
	if (__atomic_fetch_add(&fired, 1, __ATOMIC_SEQ_CST) == 0) {
		/* The first firing in this process: only if no process fired
		 * before (the raw system call, so the shim stays out of it). */
		long fd = syscall(SYS_openat, AT_FDCWD, fault.mark,
		                  O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
		if (fd < 0) {
			__atomic_store_n(&spent, true, __ATOMIC_SEQ_CST);
			return -1;
		}
		syscall(SYS_close, fd);
	}
	if (__atomic_load_n(&spent, __ATOMIC_SEQ_CST))
		return -1;
	say("fault shim: pid %d call %ld under the mail root: %s %s\n", (int)getpid(), n,
	    fault.action == A_ERRNO        ? strerror(fault.err)
	    : fault.action == A_KILL       ? "SIGKILL before"
	    : fault.action == A_KILL_AFTER ? "SIGKILL after"
	    : fault.action == A_STALL      ? "stalled"
	                                   : "short write",
	    path);
	if (fault.action == A_KILL)
		die();
	if (fault.action == A_STALL)
		usleep(STALL_MS * 1000);
	return (int)fault.action;
}

/* ---- the calls ---- */

ssize_t write(int fd, const void *buf, size_t len)
{
	char path[PATH_MAX];
	int a =
	    fault.call == C_WRITE && fd_path(fd, path, sizeof(path)) ? decide(C_WRITE, path) : -1;
	if (a == A_ERRNO) {
		errno = fault.err;
		return -1;
	}
	if (a == A_SHORT && len > 1)
		len /= 2;
	ssize_t r = real_write(fd, buf, len);
	if (a == A_KILL_AFTER)
		die();
	return r;
}

ssize_t read(int fd, void *buf, size_t len)
{
	char path[PATH_MAX];
	int a = fault.call == C_READ && fd_path(fd, path, sizeof(path)) ? decide(C_READ, path) : -1;
	if (a == A_ERRNO) {
		errno = fault.err;
		return -1;
	}
	ssize_t r = real_read(fd, buf, len);
	if (a == A_KILL_AFTER)
		die();
	return r;
}

ssize_t pread(int fd, void *buf, size_t len, off_t off)
{
	char path[PATH_MAX];
	int a = fault.call == C_READ && fd_path(fd, path, sizeof(path)) ? decide(C_READ, path) : -1;
	if (a == A_ERRNO) {
		errno = fault.err;
		return -1;
	}
	ssize_t r = real_pread(fd, buf, len, off);
	if (a == A_KILL_AFTER)
		die();
	return r;
}

/* Only a mapping of a file counts; anonymous ones (malloc's, the loader's)
 * may come before the constructor has run. */
void *mmap(void *addr, size_t len, int prot, int flags, int fd, off_t off)
{
	char path[PATH_MAX];
	if (real_mmap == NULL)
		return (void *)syscall(SYS_mmap, addr, len, prot, flags, fd, off);
	int a = fd >= 0 && fault.call == C_READ && fd_path(fd, path, sizeof(path))
	            ? decide(C_READ, path)
	            : -1;
	if (a == A_ERRNO) {
		errno = fault.err;
		return MAP_FAILED;
	}
	void *r = real_mmap(addr, len, prot, flags, fd, off);
	if (a == A_KILL_AFTER)
		die();
	return r;
}

static int sync_call(int fd, int (*real)(int))
{
	char path[PATH_MAX];
	int a =
	    fault.call == C_FSYNC && fd_path(fd, path, sizeof(path)) ? decide(C_FSYNC, path) : -1;
	if (a == A_ERRNO) {
		errno = fault.err;
		return -1;
	}
	int r = real(fd);
	if (a == A_KILL_AFTER)
		die();
	return r;
}

int fsync(int fd)
{
	return sync_call(fd, real_fsync);
}

int fdatasync(int fd)
{
	return sync_call(fd, real_fdatasync);
}

static int path_decide(enum call call, int dirfd, const char *path)
{
	char abs[PATH_MAX];
	if (fault.call != call || !at_path(dirfd, path, abs, sizeof(abs)))
		return -1;
	return decide(call, abs);
}

#define PATH_CALL(call, dirfd, path, expr)                                                         \
	do {                                                                                       \
		int a_ = path_decide(call, dirfd, path);                                           \
		if (a_ == A_ERRNO) {                                                               \
			errno = fault.err;                                                         \
			return -1;                                                                 \
		}                                                                                  \
		int r_ = (expr);                                                                   \
		if (a_ == A_KILL_AFTER)                                                            \
			die();                                                                     \
		return r_;                                                                         \
	} while (0)

int rename(const char *from, const char *to)
{
	PATH_CALL(C_RENAME, AT_FDCWD, from, real_rename(from, to));
}

int renameat(int fromfd, const char *from, int tofd, const char *to)
{
	PATH_CALL(C_RENAME, fromfd, from, real_renameat(fromfd, from, tofd, to));
}

int renameat2(int fromfd, const char *from, int tofd, const char *to, unsigned flags)
{
	PATH_CALL(C_RENAME, fromfd, from, real_renameat2(fromfd, from, tofd, to, flags));
}

int link(const char *from, const char *to)
{
	PATH_CALL(C_LINK, AT_FDCWD, to, real_link(from, to));
}

int linkat(int fromfd, const char *from, int tofd, const char *to, int flags)
{
	PATH_CALL(C_LINK, tofd, to, real_linkat(fromfd, from, tofd, to, flags));
}

int unlink(const char *path)
{
	PATH_CALL(C_UNLINK, AT_FDCWD, path, real_unlink(path));
}

int unlinkat(int dirfd, const char *path, int flags)
{
	PATH_CALL(C_UNLINK, dirfd, path, real_unlinkat(dirfd, path, flags));
}

int open(const char *path, int flags, ...)
{
	mode_t mode = 0;
	if (flags & (O_CREAT | __O_TMPFILE)) {
		va_list ap;
		va_start(ap, flags);
		mode = (mode_t)va_arg(ap, int);
		va_end(ap);
	}
	if (!(flags & O_CREAT))
		PATH_CALL(C_OPEN, AT_FDCWD, path, real_open(path, flags, mode));
	PATH_CALL(C_CREATE, AT_FDCWD, path, real_open(path, flags, mode));
}

int openat(int dirfd, const char *path, int flags, ...)
{
	mode_t mode = 0;
	if (flags & (O_CREAT | __O_TMPFILE)) {
		va_list ap;
		va_start(ap, flags);
		mode = (mode_t)va_arg(ap, int);
		va_end(ap);
	}
	if (!(flags & O_CREAT))
		PATH_CALL(C_OPEN, dirfd, path, real_openat(dirfd, path, flags, mode));
	PATH_CALL(C_CREATE, dirfd, path, real_openat(dirfd, path, flags, mode));
}
