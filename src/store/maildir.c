/* Mailbox paths and creation, the POP3 session lock, message access and
 * expunge, and the small administrative scans (stats, tmp/ cleanup). The
 * snapshot itself is taken in maildir_scan.c. */
#include "store/maildir.h"
#include "store/maildir_name.h"
#include "store/maildir_private.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define LOCK_FILE "pillar-pop3.lock"

static _Thread_local char error_buf[512];

const char *maildir_errno_str(const char *what)
{
	char msg[128];
	int err = errno;

	/* GNU strerror_r: thread-safe, returns the message. */
	snprintf(error_buf, sizeof(error_buf), "%s: %s", what, strerror_r(err, msg, sizeof(msg)));
	return error_buf;
}

char *maildir_path(const char *mail_root, const char *address)
{
	const char *at = strrchr(address, '@');
	if (at == NULL || at == address || at[1] == '\0')
		return NULL;

	size_t root_len = strlen(mail_root);
	while (root_len > 1 && mail_root[root_len - 1] == '/')
		root_len--;
	size_t local_len = (size_t)(at - address);
	const char *domain = at + 1;
	size_t domain_len = strlen(domain);

	char *p = malloc(root_len + 1 + domain_len + 1 + local_len + 1);
	if (p == NULL)
		return NULL;
	char *w = p;
	memcpy(w, mail_root, root_len);
	w += root_len;
	*w++ = '/';
	memcpy(w, domain, domain_len);
	w += domain_len;
	*w++ = '/';
	memcpy(w, address, local_len);
	w += local_len;
	*w = '\0';
	return p;
}

/* mkdir that accepts an existing directory (but not an existing non-directory). */
static int mkdir_exist_ok(const char *path)
{
	struct stat st;

	if (mkdir(path, 0700) == 0)
		return 0;
	if (errno != EEXIST)
		return -1;
	if (stat(path, &st) < 0)
		return -1;
	if (!S_ISDIR(st.st_mode)) {
		errno = ENOTDIR;
		return -1;
	}
	return 0;
}

int maildir_create(const char *path, const char **error_r)
{
	static const char *const subdirs[] = {"tmp", "new", "cur"};
	size_t len = strlen(path);
	char *buf = malloc(len + 5);

	if (buf == NULL) {
		*error_r = "out of memory";
		return -1;
	}
	memcpy(buf, path, len + 1);

	/* mkdir -p: every missing component, including the domain directory
	 * and the mailbox itself, gets mode 0700. */
	for (size_t i = 1; i <= len; i++) {
		if (buf[i] != '/' && buf[i] != '\0')
			continue;
		if (buf[i - 1] == '/')
			continue;
		char saved = buf[i];
		buf[i] = '\0';
		int r = mkdir_exist_ok(buf);
		buf[i] = saved;
		if (r < 0) {
			buf[i] = '\0';
			*error_r = maildir_errno_str(buf);
			free(buf);
			return -1;
		}
	}
	for (size_t i = 0; i < 3; i++) {
		snprintf(buf + len, 5, "/%s", subdirs[i]);
		if (mkdir_exist_ok(buf) < 0) {
			*error_r = maildir_errno_str(buf);
			free(buf);
			return -1;
		}
	}
	free(buf);
	return 0;
}

int maildir_lock(const char *path, int *fd_r, const char **error_r)
{
	char *lock_path = malloc(strlen(path) + sizeof("/" LOCK_FILE));

	*fd_r = -1;
	if (lock_path == NULL) {
		*error_r = "out of memory";
		return -1;
	}
	sprintf(lock_path, "%s/%s", path, LOCK_FILE);
	int fd = open(lock_path, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW | O_NOCTTY, 0600);
	if (fd < 0) {
		*error_r = maildir_errno_str(lock_path);
		free(lock_path);
		return -1;
	}
	/* flock, not fcntl locks: tied to the open file description, so it
	 * is released however the holder dies and is not dropped by another
	 * close of the same file elsewhere in the process. */
	while (flock(fd, LOCK_EX | LOCK_NB) < 0) {
		if (errno == EINTR)
			continue;
		if (errno == EWOULDBLOCK) {
			close(fd);
			free(lock_path);
			return 1;
		}
		*error_r = maildir_errno_str(lock_path);
		close(fd);
		free(lock_path);
		return -1;
	}
	free(lock_path);
	*fd_r = fd;
	return 0;
}

int maildir_msg_open(const struct maildir *md, size_t i, const char **error_r)
{
	char sub[MAILDIR_SUBPATH_MAX];
	struct stat st;

	if (i >= md->count || maildir_msg_subpath(md, i, sub) < 0) {
		*error_r = "no such message";
		return -1;
	}
	/* The name was a regular file at the scan, but anyone who can write
	 * the Maildir may have put something else there since: O_NOFOLLOW so
	 * a symlink is not followed, O_NONBLOCK so a FIFO does not block the
	 * worker in open(2) (it has no effect on reading a regular file), and
	 * the S_ISREG check below for the rest. */
	int fd = openat(md->dirfd, sub, O_RDONLY | O_NOFOLLOW | O_NOCTTY | O_NONBLOCK | O_CLOEXEC);
	if (fd < 0) {
		*error_r = maildir_errno_str(sub);
		return -1;
	}
	if (fstat(fd, &st) < 0) {
		*error_r = maildir_errno_str(sub);
		close(fd);
		return -1;
	}
	if (!S_ISREG(st.st_mode)) {
		*error_r = "message is not a regular file";
		close(fd);
		return -1;
	}
	return fd;
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

int maildir_expunge(struct maildir *md, const bool *del, size_t *failed_r, const char **error_r)
{
	char sub[MAILDIR_SUBPATH_MAX];
	bool touched[2] = {false, false};
	size_t failed = 0;

	*failed_r = 0;
	for (size_t i = 0; i < md->count; i++) {
		if (!del[i])
			continue;
		if (maildir_msg_subpath(md, i, sub) < 0) {
			failed++;
			*error_r = "message name too long";
			continue;
		}
		if (unlinkat(md->dirfd, sub, 0) < 0 && errno != ENOENT) {
			failed++;
			*error_r = maildir_errno_str(sub);
			continue;
		}
		touched[md->msgs[i].in_cur] = true;
	}

	/* Make the removals durable before QUIT is answered +OK. */
	int ret = failed == 0 ? 0 : -1;
	if (touched[0] && fsync_subdir(md->dirfd, "new") < 0) {
		*error_r = maildir_errno_str("fsync(new)");
		ret = -1;
	}
	if (touched[1] && fsync_subdir(md->dirfd, "cur") < 0) {
		*error_r = maildir_errno_str("fsync(cur)");
		ret = -1;
	}
	*failed_r = failed;
	return ret;
}

/* Regular file check like the scan's: trust d_type, stat only if unknown. */
static bool dirent_regular(int dfd, const struct dirent *de, struct stat *st, bool *have_st)
{
	*have_st = false;
	if (de->d_type == DT_REG)
		return true;
	if (de->d_type != DT_UNKNOWN)
		return false;
	if (fstatat(dfd, de->d_name, st, AT_SYMLINK_NOFOLLOW) < 0)
		return false;
	*have_st = true;
	return S_ISREG(st->st_mode);
}

static int stats_dir(int mdfd, const char *sub, uint64_t *messages, uint64_t *bytes,
                     const char **error_r)
{
	int dfd = openat(mdfd, sub, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (dfd < 0) {
		*error_r = maildir_errno_str(sub);
		return -1;
	}
	DIR *dir = fdopendir(dfd);
	if (dir == NULL) {
		*error_r = maildir_errno_str(sub);
		close(dfd);
		return -1;
	}
	int ret = 0;
	for (;;) {
		errno = 0;
		struct dirent *de = readdir(dir);
		if (de == NULL) {
			if (errno != 0) {
				*error_r = maildir_errno_str(sub);
				ret = -1;
			}
			break;
		}
		struct maildir_name name;
		struct stat st;
		bool have_st;
		if (de->d_name[0] == '.' || maildir_name_parse(de->d_name, &name) < 0)
			continue;
		if (!dirent_regular(dfd, de, &st, &have_st))
			continue;
		(*messages)++;
		if (name.has_size) {
			*bytes += name.size;
		} else {
			/* Not yet renamed by a POP3 scan (e.g. delivered by
			 * another program): the rare case worth a stat. */
			if (!have_st && fstatat(dfd, de->d_name, &st, AT_SYMLINK_NOFOLLOW) < 0)
				continue;
			*bytes += (uint64_t)st.st_size;
		}
	}
	closedir(dir);
	return ret;
}

int maildir_stats(const char *path, uint64_t *messages_r, uint64_t *bytes_r, const char **error_r)
{
	uint64_t messages = 0, bytes = 0;
	int mdfd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);

	if (mdfd < 0) {
		*error_r = maildir_errno_str(path);
		return -1;
	}
	int ret = 0;
	if (stats_dir(mdfd, "new", &messages, &bytes, error_r) < 0 ||
	    stats_dir(mdfd, "cur", &messages, &bytes, error_r) < 0)
		ret = -1;
	close(mdfd);
	if (ret == 0) {
		*messages_r = messages;
		*bytes_r = bytes;
	}
	return ret;
}

int maildir_clean_tmp(const char *path, time_t older_than)
{
	char *tmp = malloc(strlen(path) + sizeof("/tmp"));

	if (tmp == NULL)
		return -1;
	sprintf(tmp, "%s/tmp", path);
	int dfd = open(tmp, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	free(tmp);
	if (dfd < 0)
		return -1;
	DIR *dir = fdopendir(dfd);
	if (dir == NULL) {
		close(dfd);
		return -1;
	}

	time_t cutoff = time(NULL) - older_than;
	int removed = 0;
	struct dirent *de;
	while ((de = readdir(dir)) != NULL) {
		struct stat st;
		if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
			continue;
		if (fstatat(dfd, de->d_name, &st, AT_SYMLINK_NOFOLLOW) < 0)
			continue;
		/* A delivery in progress keeps its file fresh; only files
		 * untouched for the whole age are leftovers of a crash. */
		if (S_ISDIR(st.st_mode) || st.st_mtime >= cutoff)
			continue;
		if (unlinkat(dfd, de->d_name, 0) == 0)
			removed++;
	}
	closedir(dir);
	return removed;
}
