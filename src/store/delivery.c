/* The single delivery path: spool once, then link (or copy) into each
 * recipient's tmp/, rename into new/, fsync new/. See delivery.h.
 *
 * Why a spool file and links rather than writing each mailbox directly:
 * SMTP and LMTP learn the recipients before the data, but the data arrives
 * at the speed of the client and may go to many mailboxes. Writing it once
 * keeps the session's cost independent of the recipient count, and a hard
 * link makes each extra recipient cost one directory entry instead of a copy
 * of the message. Mailboxes are never modified in place by anyone (POP3 only
 * reads and unlinks), so sharing one inode between them is safe.
 *
 * The durability order follows qmail-local and the Maildir specification:
 * the data is on disk (fsync of the spool file) before any name for it
 * appears in new/, and the name in new/ is on disk (fsync of new/) before
 * the recipient is reported delivered. A crash in between leaves at most a
 * file in .spool/ or tmp/, which delivery_clean_spool removes later. */
#include "store/delivery.h"
#include "store/deliver.h"
#include "store/maildir.h"
#include "store/maildir_name.h"
#include "store/maildir_private.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

/* Data is collected here and written in large pieces: a session hands over
 * whatever the network delivered (often a few hundred bytes at a time), and
 * one write(2) per piece would cost a system call each. 64 KiB is a few
 * network reads' worth and the size the copy fallback reads in. */
#define DELIVERY_BUF_SIZE (64 * 1024)
/* Below the mail root; a leading '.' so it can never be a domain. */
#define SPOOL_DIR ".spool"
/* How often to draw a new unique name when one already exists (it should
 * not: the name holds the pid, a counter and random bits). */
#define UNIQUE_ATTEMPTS 5
/* "tmp/" or "new/" and a unique name with its ",S=,W=" fields. */
#define SUBPATH_MAX (4 + MAILDIR_UNIQUE_MAX + 64)

struct delivery {
	int fd;       /* the spool file, write-only */
	int spooldfd; /* its directory, for linkat/unlinkat by name */
	char spool_name[MAILDIR_UNIQUE_MAX];
	char *hostname;
	int error;   /* errno of the first failed write, 0 if none (sticky) */
	bool synced; /* the spool file has been fsync'ed */
	uint64_t size, vsize;
	bool prev_cr; /* the data so far ends in CR (for the W= count) */
	size_t buf_len;
	char buf[DELIVERY_BUF_SIZE];
};

/* ---- error texts ----
 *
 * delivery_commit reports one error per recipient and promises static
 * strings (the caller logs them after the delivery is freed, possibly from
 * another thread), so the texts are a fixed table: where it failed x why. */

enum step {
	STEP_SPOOL,
	STEP_SPOOL_SYNC,
	STEP_MAILBOX,
	STEP_LINK,
	STEP_COPY,
	STEP_RENAME,
	STEP_SYNC_NEW,
	STEP_COUNT
};

enum reason {
	R_NOENT,
	R_NOTDIR,
	R_NOSPC,
	R_DQUOT,
	R_FBIG,
	R_IO,
	R_ROFS,
	R_ACCES,
	R_MFILE,
	R_NOMEM,
	R_MLINK,
	R_BADF,
	R_EXIST,
	R_OTHER,
	R_COUNT
};

#define REASONS(step)                                                                              \
	{                                                                                          \
		step ": no such file or directory", step ": not a directory",                      \
		    step ": no space left on device", step ": disk quota exceeded",                \
		    step ": file too large", step ": I/O error", step ": read-only file system",   \
		    step ": permission denied", step ": too many open files",                      \
		    step ": out of memory", step ": too many links", step ": bad file descriptor", \
		    step ": file exists", step ": unexpected error",                               \
	}

static const char *const error_text[STEP_COUNT][R_COUNT] = {
    [STEP_SPOOL] = REASONS("writing the spool file"),
    [STEP_SPOOL_SYNC] = REASONS("fsync of the spool file"),
    [STEP_MAILBOX] = REASONS("opening the mailbox"),
    [STEP_LINK] = REASONS("linking into tmp/"),
    [STEP_COPY] = REASONS("copying into tmp/"),
    [STEP_RENAME] = REASONS("renaming into new/"),
    [STEP_SYNC_NEW] = REASONS("fsync of new/"),
};

static enum reason reason_of(int err)
{
	switch (err) {
	case ENOENT:
		return R_NOENT;
	case ENOTDIR:
		return R_NOTDIR;
	case ENOSPC:
		return R_NOSPC;
	case EDQUOT:
		return R_DQUOT;
	case EFBIG:
		return R_FBIG;
	case EIO:
		return R_IO;
	case EROFS:
		return R_ROFS;
	case EACCES:
	case EPERM:
		return R_ACCES;
	case EMFILE:
	case ENFILE:
		return R_MFILE;
	case ENOMEM:
		return R_NOMEM;
	case EMLINK:
		return R_MLINK;
	case EBADF:
		return R_BADF;
	case EEXIST:
		return R_EXIST;
	default:
		return R_OTHER;
	}
}

static const char *error_for(enum step step, int err)
{
	return error_text[step][reason_of(err)];
}

/* ---- small checked I/O ---- */

static int write_full(int fd, const char *p, size_t len)
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

/* ---- writing the spool file ---- */

int delivery_begin_in(const char *spool_dir, const char *hostname, struct delivery **d_r,
                      const char **error_r)
{
	struct delivery *d;
	int err;

	*d_r = NULL;
	d = malloc(sizeof(*d));
	if (d == NULL) {
		*error_r = maildir_errno_str("delivery");
		return -1;
	}
	d->fd = -1;
	d->hostname = strdup(hostname);
	d->error = 0;
	d->synced = false;
	d->size = d->vsize = 0;
	d->prev_cr = false;
	d->buf_len = 0;
	d->spooldfd = open(spool_dir, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (d->hostname == NULL || d->spooldfd < 0) {
		err = errno;
		*error_r = maildir_errno_str(spool_dir);
		goto fail;
	}
	for (int attempt = 0; d->fd < 0 && attempt < UNIQUE_ATTEMPTS; attempt++) {
		maildir_unique(d->spool_name, sizeof(d->spool_name), hostname);
		d->fd = openat(d->spooldfd, d->spool_name,
		               O_CREAT | O_EXCL | O_WRONLY | O_CLOEXEC | O_NOFOLLOW, 0600);
		if (d->fd < 0 && errno != EEXIST)
			break;
	}
	if (d->fd < 0) {
		err = errno;
		*error_r = maildir_errno_str("creating the spool file");
		goto fail;
	}
	*d_r = d;
	return 0;
fail:
	if (d->spooldfd >= 0)
		close(d->spooldfd);
	free(d->hostname);
	free(d);
	errno = err;
	return -1;
}

int delivery_begin(const char *mail_root, const char *hostname, struct delivery **d_r,
                   const char **error_r)
{
	size_t len = strlen(mail_root);
	char *spool = malloc(len + sizeof("/" SPOOL_DIR));
	int r, err;

	*d_r = NULL;
	if (spool == NULL) {
		*error_r = maildir_errno_str("delivery");
		return -1;
	}
	memcpy(spool, mail_root, len);
	memcpy(spool + len, "/" SPOOL_DIR, sizeof("/" SPOOL_DIR));
	/* 0700: messages in flight are as private as the mailboxes. */
	if (mkdir(spool, 0700) < 0 && errno != EEXIST) {
		err = errno;
		*error_r = maildir_errno_str(spool);
		free(spool);
		errno = err;
		return -1;
	}
	r = delivery_begin_in(spool, hostname, d_r, error_r);
	err = errno;
	free(spool);
	errno = err;
	return r;
}

/* Write out the buffer. On failure the error becomes sticky. */
static int flush(struct delivery *d)
{
	if (d->error != 0)
		return -1;
	if (d->buf_len > 0 && write_full(d->fd, d->buf, d->buf_len) < 0) {
		d->error = errno;
		return -1;
	}
	d->buf_len = 0;
	return 0;
}

int delivery_write(struct delivery *d, const void *data, size_t len, const char **error_r)
{
	const char *p = data;

	if (d->error != 0) {
		*error_r = error_for(STEP_SPOOL, d->error);
		return -1;
	}
	/* Counted as given, even if the write fails below: the sizes only
	 * matter for a message that is committed, and that needs no error. */
	d->size += len;
	maildir_count_vsize(p, len, &d->prev_cr, &d->vsize);
	d->synced = false;

	if (len <= sizeof(d->buf) - d->buf_len) {
		memcpy(d->buf + d->buf_len, p, len);
		d->buf_len += len;
		return 0;
	}
	/* Fill the buffer up, write it, then either buffer the rest or, when
	 * the rest is a buffer's worth or more, write it straight through. */
	size_t room = sizeof(d->buf) - d->buf_len;
	memcpy(d->buf + d->buf_len, p, room);
	d->buf_len += room;
	p += room;
	len -= room;
	if (flush(d) < 0)
		goto fail;
	if (len >= sizeof(d->buf)) {
		if (write_full(d->fd, p, len) < 0) {
			d->error = errno;
			goto fail;
		}
		return 0;
	}
	memcpy(d->buf, p, len);
	d->buf_len = len;
	return 0;
fail:
	*error_r = error_for(STEP_SPOOL, d->error);
	return -1;
}

uint64_t delivery_size(const struct delivery *d)
{
	return d->size;
}

uint64_t delivery_vsize(const struct delivery *d)
{
	return d->vsize;
}

/* ---- into one mailbox ---- */

/* The link failed with EXDEV (another file system), EPERM (a file system
 * without hard links, e.g. some FUSE and network ones), EMLINK (the inode's
 * link limit) or EOPNOTSUPP: copy the spool file into tmp/ instead, and
 * fsync the copy, since it is a new inode. */
static bool link_unsupported(int err)
{
	return err == EXDEV || err == EPERM || err == EMLINK || err == EOPNOTSUPP;
}

static int copy_into(struct delivery *d, int mdfd, const char *tmp)
{
	int in, out, err;
	ssize_t n;

	in = openat(d->spooldfd, d->spool_name, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
	if (in < 0) {
		/* The spool file gone is our problem, not the mailbox's. */
		if (errno == ENOENT)
			errno = EIO;
		return -1;
	}
	out = openat(mdfd, tmp, O_CREAT | O_EXCL | O_WRONLY | O_NOFOLLOW | O_CLOEXEC, 0600);
	if (out < 0) {
		err = errno;
		close(in);
		errno = err;
		return -1;
	}
	/* The buffer is empty: commit flushed it before getting here. */
	for (;;) {
		n = read(in, d->buf, sizeof(d->buf));
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			break;
		if (write_full(out, d->buf, (size_t)n) < 0) {
			n = -1;
			break;
		}
	}
	err = errno;
	if (n == 0 && fsync(out) < 0) {
		n = -1;
		err = errno;
	}
	close(in);
	/* close can report a deferred write error (NFS). */
	if (close(out) < 0 && n == 0) {
		n = -1;
		err = errno;
	}
	if (n < 0) {
		unlinkat(mdfd, tmp, 0);
		errno = err;
		return -1;
	}
	return 0;
}

/* ENOENT/ENOTDIR mean the mailbox (or its tmp/ or new/) is not there, which
 * retrying will not fix; everything else (disk full, I/O error, file
 * descriptors, permissions that an administrator may repair) may pass. */
static enum delivery_status classify(int err)
{
	return err == ENOENT || err == ENOTDIR ? DELIVERY_PERMFAIL : DELIVERY_TEMPFAIL;
}

static enum delivery_status deliver_one(struct delivery *d, const char *maildir,
                                        const char **error_r)
{
	char unique[MAILDIR_UNIQUE_MAX];
	char tmp[SUBPATH_MAX], new[SUBPATH_MAX];
	enum delivery_status status;
	enum step step = STEP_MAILBOX;
	int mdfd, err, r = -1;

	mdfd = open(maildir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (mdfd < 0) {
		err = errno;
		goto fail;
	}

	step = STEP_LINK;
	for (int attempt = 0; attempt < UNIQUE_ATTEMPTS; attempt++) {
		maildir_unique(unique, sizeof(unique), d->hostname);
		snprintf(tmp, sizeof(tmp), "tmp/%s", unique);
		if (step == STEP_LINK) {
			r = linkat(d->spooldfd, d->spool_name, mdfd, tmp, 0);
			if (r < 0 && link_unsupported(errno))
				step = STEP_COPY;
		}
		if (step == STEP_COPY)
			r = copy_into(d, mdfd, tmp);
		if (r == 0 || errno != EEXIST)
			break;
	}
	if (r < 0) {
		err = errno;
		/* ENOENT from link is either tmp/ missing (the mailbox is
		 * broken: permanent) or the spool file gone (temporary). */
		if (err == ENOENT && step == STEP_LINK &&
		    faccessat(d->spooldfd, d->spool_name, F_OK, AT_SYMLINK_NOFOLLOW) < 0) {
			err = EIO;
		}
		goto fail_mailbox;
	}

	step = STEP_RENAME;
	/* The sizes go into the name (Dovecot's ,S= and ,W=) so that a POP3
	 * scan never has to read or stat the file. */
	char *name = maildir_name_with_sizes(unique, d->size, d->vsize);
	if (name == NULL) {
		err = ENOMEM;
		unlinkat(mdfd, tmp, 0);
		goto fail_mailbox;
	}
	if ((size_t)snprintf(new, sizeof(new), "new/%s", name) >= sizeof(new)) {
		free(name);
		err = ENAMETOOLONG;
		unlinkat(mdfd, tmp, 0);
		goto fail_mailbox;
	}
	free(name);
	if (renameat(mdfd, tmp, mdfd, new) < 0) {
		err = errno;
		unlinkat(mdfd, tmp, 0);
		goto fail_mailbox;
	}

	step = STEP_SYNC_NEW;
	if (fsync_subdir(mdfd, "new") < 0) {
		/* The entry may not survive a crash: take it back and let the
		 * sender retry rather than risk losing an acknowledged message.
		 * (A duplicate after a retry is the lesser harm.) */
		err = errno;
		unlinkat(mdfd, new, 0);
		goto fail_mailbox;
	}
	close(mdfd);
	*error_r = NULL;
	return DELIVERY_OK;

fail_mailbox:
	close(mdfd);
fail:
	status = classify(err);
	*error_r = error_for(step, err);
	return status;
}

size_t delivery_commit(struct delivery *d, const char *const *maildirs, size_t n,
                       enum delivery_status *status, const char **errors)
{
	enum step step = STEP_SPOOL;
	size_t delivered = 0;
	int err = 0;

	if (flush(d) < 0) {
		err = d->error;
	} else if (!d->synced) {
		/* One fsync for every recipient: the links share the inode. */
		if (fsync(d->fd) < 0) {
			err = errno;
			step = STEP_SPOOL_SYNC;
		} else {
			d->synced = true;
		}
	}
	for (size_t i = 0; i < n; i++) {
		if (err != 0) {
			/* Whatever the errno, a broken spool is never the
			 * recipient's fault: always temporary. */
			status[i] = DELIVERY_TEMPFAIL;
			errors[i] = error_for(step, err);
			continue;
		}
		status[i] = deliver_one(d, maildirs[i], &errors[i]);
		if (status[i] == DELIVERY_OK)
			delivered++;
	}
	return delivered;
}

void delivery_free(struct delivery **dp)
{
	struct delivery *d = *dp;

	if (d == NULL)
		return;
	if (d->fd >= 0)
		close(d->fd);
	/* The mailboxes hold their own links (or copies); the spool name
	 * was only ever the message's way in. */
	unlinkat(d->spooldfd, d->spool_name, 0);
	close(d->spooldfd);
	free(d->hostname);
	free(d);
	*dp = NULL;
}

/* ---- cleaning up after crashes ---- */

/* Remove regular files in dfd not modified for older_than seconds. */
static int clean_dir(int dfd, time_t older_than)
{
	time_t cutoff = time(NULL) - older_than;
	int removed = 0;
	struct dirent *de;
	DIR *dir = fdopendir(dfd);

	if (dir == NULL) {
		close(dfd);
		return -1;
	}
	while ((de = readdir(dir)) != NULL) {
		struct stat st;

		if (fstatat(dfd, de->d_name, &st, AT_SYMLINK_NOFOLLOW) < 0 ||
		    !S_ISREG(st.st_mode) || st.st_mtime >= cutoff)
			continue;
		if (unlinkat(dfd, de->d_name, 0) == 0)
			removed++;
	}
	closedir(dir);
	return removed;
}

/* Call maildir_clean_tmp for every <mail_root>/<domain>/<local>. */
static int clean_mailboxes(int rootfd, const char *mail_root, time_t older_than)
{
	DIR *root = fdopendir(rootfd);
	struct dirent *dom;
	int removed = 0;

	if (root == NULL) {
		close(rootfd);
		return 0;
	}
	while ((dom = readdir(root)) != NULL) {
		/* Domains never start with '.'; .spool and the leftovers of
		 * `user del --purge` do. */
		if (dom->d_name[0] == '.')
			continue;
		int dfd =
		    openat(rootfd, dom->d_name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
		if (dfd < 0)
			continue;
		DIR *domain = fdopendir(dfd);
		if (domain == NULL) {
			close(dfd);
			continue;
		}
		struct dirent *box;
		while ((box = readdir(domain)) != NULL) {
			if (box->d_name[0] == '.')
				continue;
			char *path = malloc(strlen(mail_root) + strlen(dom->d_name) +
			                    strlen(box->d_name) + 3);
			if (path == NULL)
				break;
			sprintf(path, "%s/%s/%s", mail_root, dom->d_name, box->d_name);
			int r = maildir_clean_tmp(path, older_than);
			if (r > 0)
				removed += r;
			free(path);
		}
		closedir(domain);
	}
	closedir(root);
	return removed;
}

int delivery_clean_spool(const char *mail_root, time_t older_than)
{
	int rootfd, spoolfd, removed = 0, r;

	rootfd = open(mail_root, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (rootfd < 0)
		return -1;
	spoolfd = openat(rootfd, SPOOL_DIR, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (spoolfd >= 0) {
		r = clean_dir(spoolfd, older_than);
		if (r > 0)
			removed += r;
	} else if (errno != ENOENT) {
		close(rootfd);
		return -1;
	}
	return removed + clean_mailboxes(rootfd, mail_root, older_than);
}
