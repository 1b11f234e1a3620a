/* RETR/TOP: a message file into the output, a step at a time. See retr.h. */
#include "pop3/retr.h"

#include <errno.h>
#include <event2/buffer.h>
#include <setjmp.h>
#include <signal.h>
#include <stdbool.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

/* ---- reading a mapping that may lose its pages ----
 *
 * Touching a mapped page beyond the end of a file that has been shortened
 * raises SIGBUS. While a step converts mapped octets, the handler knows
 * their range: a fault inside it jumps back to the step, which fails; any
 * other SIGBUS is a real bug and kills the process as it always would.
 * What the jump abandons is pop3_stuff_chunk half-way through its output,
 * which holds no lock and no allocation, and which the failed step throws
 * away with the connection. */

struct guard {
	sigjmp_buf jump;
	const char *lo, *hi;
};

static _Thread_local struct guard *volatile guarded;

static void on_sigbus(int sig, siginfo_t *si, void *ucontext)
{
	struct guard *g = guarded;
	const char *addr = si->si_addr;

	(void)ucontext;
	if (g != NULL && addr >= g->lo && addr < g->hi)
		siglongjmp(g->jump, 1);
	/* Not ours: return to the faulting access, which now kills. */
	signal(sig, SIG_DFL);
}

/* At every mapping (one system call beside mmap's): a handler installed
 * since, such as a test framework's, must not get these faults. */
static void guard_install(void)
{
	struct sigaction sa = {.sa_sigaction = on_sigbus, .sa_flags = SA_SIGINFO};

	sigemptyset(&sa.sa_mask);
	if (sigaction(SIGBUS, &sa, NULL) < 0)
		abort();
}

/* ---- the steps ---- */

void pop3_retr_start(struct pop3_retr *r, int fd, int64_t top_lines)
{
	struct stat st;

	r->fd = fd;
	r->map = NULL;
	r->size = fstat(fd, &st) == 0 && st.st_size > 0 ? (uint64_t)st.st_size : 0;
	r->done = 0;
	pop3_stuff_init(&r->stuff, top_lines);
	if (r->size < POP3_RETR_MAP_MIN || r->size > SIZE_MAX)
		return;
	void *map = mmap(NULL, (size_t)r->size, PROT_READ, MAP_PRIVATE, fd, 0);
	if (map == MAP_FAILED)
		return; /* read instead */
	(void)madvise(map, (size_t)r->size, MADV_SEQUENTIAL);
	guard_install();
	r->map = map;
}

/* Convert n mapped octets from r->done on; false if the file lost them. */
static bool convert_mapped(struct pop3_retr *r, size_t n, char *out, size_t *written_r,
                           size_t *used_r)
{
	struct guard g = {.lo = r->map + r->done, .hi = r->map + r->done + n};

	if (sigsetjmp(g.jump, 1) != 0) {
		guarded = NULL;
		return false;
	}
	guarded = &g;
	*written_r = pop3_stuff_chunk(&r->stuff, g.lo, n, out, used_r);
	guarded = NULL;
	return true;
}

/* Read up to n octets from r->done on into buf; false on an error or an
 * early end of file (the file was shortened). */
static bool read_some(struct pop3_retr *r, char *buf, size_t n, size_t *got_r, const char **error_r)
{
	ssize_t got;

	do
		got = pread(r->fd, buf, n, (off_t)r->done);
	while (got < 0 && errno == EINTR);
	if (got < 0) {
		*error_r = "the message file could not be read";
		return false;
	}
	if (got == 0) {
		*error_r = "the message file was shortened while it was being sent";
		return false;
	}
	*got_r = (size_t)got;
	return true;
}

enum pop3_retr_step pop3_retr_step(struct pop3_retr *r, struct evbuffer *out, size_t *added_r,
                                   const char **error_r)
{
	static char chunk[POP3_RETR_STEP]; /* one loop per process: one buffer */
	size_t n =
	    r->size - r->done < POP3_RETR_STEP ? (size_t)(r->size - r->done) : POP3_RETR_STEP;

	*added_r = 0;
	if (n > 0 && !r->stuff.done) {
		struct evbuffer_iovec v;
		size_t used = 0, written = 0;

		if (evbuffer_reserve_space(out, (ev_ssize_t)(2 * n), &v, 1) < 1)
			abort();
		if (r->map != NULL) {
			if (!convert_mapped(r, n, v.iov_base, &written, &used)) {
				*error_r = "the message file was shortened while it was being sent";
				return POP3_RETR_FAILED;
			}
		} else {
			if (!read_some(r, chunk, n, &n, error_r))
				return POP3_RETR_FAILED;
			written = pop3_stuff_chunk(&r->stuff, chunk, n, v.iov_base, &used);
		}
		v.iov_len = written;
		evbuffer_commit_space(out, &v, 1);
		r->done += used;
		*added_r = written;
		if (r->done < r->size && !r->stuff.done)
			return POP3_RETR_MORE;
	}
	char end[POP3_STUFF_END_MAX];
	size_t len = pop3_stuff_end(&r->stuff, end);
	evbuffer_add(out, end, len);
	*added_r += len;
	return POP3_RETR_END;
}

void pop3_retr_end(struct pop3_retr *r)
{
	if (r->map != NULL)
		munmap((void *)(uintptr_t)r->map, (size_t)r->size);
	if (r->fd >= 0)
		close(r->fd);
	r->map = NULL;
	r->fd = -1;
}
