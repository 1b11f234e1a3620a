/* Maildir delivery: tmp/ -> fsync -> rename into new/ -> fsync new/.
 *
 * Written to be paranoid, like qmail-local: nothing is reported delivered
 * until both the data and the directory entry are on disk, and a failure at
 * any step removes what this call created so no half message is ever seen.
 * The error class matters: a temporary failure makes the SMTP client retry
 * (4xx, EX_TEMPFAIL), a permanent one bounces. */
#include "store/deliver.h"
#include "store/maildir_name.h"
#include "store/maildir_private.h"

#include <errno.h>
#include <fcntl.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

/* How often to retry when the tmp/ name already exists (it should not:
 * the name has the pid, a counter and random bits). */
#define UNIQUE_ATTEMPTS 5
/* Room for a unique name; Maildir names stay well under NAME_MAX. */
#define UNIQUE_MAX 200

static atomic_ulong delivery_counter;

void maildir_unique(char *out, size_t size, const char *hostname)
{
	struct timespec ts;
	unsigned char rnd[8];
	char host[UNIQUE_MAX];
	size_t h = 0;

	clock_gettime(CLOCK_REALTIME, &ts);
	unsigned long counter = atomic_fetch_add(&delivery_counter, 1);
	if (getrandom(rnd, sizeof(rnd), GRND_NONBLOCK) != (ssize_t)sizeof(rnd)) {
		/* The name is still unique by pid and counter. */
		memset(rnd, 0, sizeof(rnd));
	}

	/* '/' and ':' escaped as octal (Maildir convention); ',' too, because
	 * it would end the unique part (S=/W= fields follow it), and anything
	 * not printable so the unique stays a valid UIDL. */
	for (const char *p = hostname; *p != '\0' && h + 5 < sizeof(host); p++) {
		unsigned char c = (unsigned char)*p;
		if (c == '/' || c == ':' || c == ',' || c == '\\' || c < 0x21 || c > 0x7e) {
			snprintf(host + h, sizeof(host) - h, "\\%03o", c);
			h += 4;
		} else {
			host[h++] = (char)c;
		}
	}
	host[h] = '\0';

	snprintf(out, size, "%lld.M%06ldP%ldQ%luR%02x%02x%02x%02x%02x%02x%02x%02x.%s",
	         (long long)ts.tv_sec, ts.tv_nsec / 1000, (long)getpid(), counter, rnd[0], rnd[1],
	         rnd[2], rnd[3], rnd[4], rnd[5], rnd[6], rnd[7], host);
}

/* ENOENT/ENOTDIR: the mailbox (or one of its directories) does not exist,
 * which retrying will not fix. Everything else (ENOSPC, EDQUOT, EIO, EAGAIN,
 * EMFILE, ENFILE, ENOMEM, EACCES after a permission slip, ...) may. */
static bool errno_is_temporary(int err)
{
	return err != ENOENT && err != ENOTDIR;
}

static int write_all(int fd, const char *p, size_t len)
{
	while (len > 0) {
		ssize_t n = write(fd, p, len);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -1;
		}
		if (n == 0) {
			errno = EIO;
			return -1;
		}
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

static int fsync_subdir(int dirfd, const char *sub)
{
	int fd = openat(dirfd, sub, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0)
		return -1;
	int r = fsync(fd);
	int err = errno;
	close(fd);
	errno = err;
	return r;
}

int maildir_deliver(const char *path, const char *hostname, const void *data, size_t len,
                    int *temporary_r, const char **error_r)
{
	char unique[UNIQUE_MAX];
	char tmp_path[4 + UNIQUE_MAX];
	char new_path[4 + UNIQUE_MAX + 64];
	const char *what;
	int fd = -1;

	*temporary_r = 1;
	int mdfd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (mdfd < 0) {
		what = "open mailbox";
		goto fail_mailbox;
	}

	for (int attempt = 0; fd < 0 && attempt < UNIQUE_ATTEMPTS; attempt++) {
		maildir_unique(unique, sizeof(unique), hostname);
		snprintf(tmp_path, sizeof(tmp_path), "tmp/%s", unique);
		fd = openat(mdfd, tmp_path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW,
		            0600);
		if (fd < 0 && errno != EEXIST)
			break;
	}
	if (fd < 0) {
		what = "create tmp file";
		goto fail_mailbox;
	}

	uint64_t vsize = 0;
	bool prev_cr = false;
	maildir_count_vsize(data, len, &prev_cr, &vsize);

	if (write_all(fd, data, len) < 0) {
		what = "write";
		goto fail_tmp;
	}
	if (fsync(fd) < 0) {
		what = "fsync";
		goto fail_tmp;
	}
	/* close can report a deferred write error (NFS); the fd is gone
	 * either way on Linux. */
	int r = close(fd);
	fd = -1;
	if (r < 0) {
		what = "close";
		goto fail_tmp;
	}

	snprintf(new_path, sizeof(new_path), "new/%s,S=%zu,W=%llu", unique, len,
	         (unsigned long long)vsize);
	if (renameat(mdfd, tmp_path, mdfd, new_path) < 0) {
		what = "rename into new/";
		goto fail_tmp;
	}
	if (fsync_subdir(mdfd, "new") < 0) {
		/* The entry may not survive a crash: take it back and let the
		 * sender retry rather than risk losing an acknowledged message. */
		int err = errno;
		unlinkat(mdfd, new_path, 0);
		errno = err;
		what = "fsync new/";
		goto fail_mailbox;
	}
	close(mdfd);
	return 0;

fail_tmp : {
	int err = errno;
	if (fd >= 0)
		close(fd);
	unlinkat(mdfd, tmp_path, 0);
	errno = err;
}
fail_mailbox : {
	int err = errno;
	*error_r = maildir_errno_str(what);
	*temporary_r = errno_is_temporary(err) ? 1 : 0;
	if (mdfd >= 0)
		close(mdfd);
	return -1;
}
}
