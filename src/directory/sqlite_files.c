/* The SQLite backend's files and who may touch them (sqlite_internal.h).
 *
 * directory.db (and its -wal and -shm) belong to run_as, auth/secrets.db
 * and its directory to auth_as. Root opens them too: `pillar serve` before
 * it forks, and the admin commands before they become run_as. It must not
 * be led anywhere by a link that run_as, or a taken-over auth process,
 * planted: root opens each file with its owner's file-system ids (so a
 * link can lead only where that owner could write anyway), and the
 * secrets' directory sits in a state_dir that is root's and sticky, where
 * run_as may add files but move nothing of another's. */
#include "directory/sqlite_internal.h"

#include "core/priv.h"

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/fsuid.h>
#include <sys/stat.h>
#include <unistd.h>

int sq_owner(struct sq_dir *dir, const char *name, struct sq_owner *out, const char **error_r)
{
	const char *err;

	memset(out, 0, sizeof(*out));
	if (geteuid() != 0 || name == NULL)
		return 0;
	if (priv_lookup(name, &out->uid, &out->gid, &err) < 0)
		return dir_fail(&dir->base, error_r, "directory: %s: %s", name, err);
	out->as_owner = true;
	return 0;
}

void sq_become(const struct sq_owner *o)
{
	if (!o->as_owner)
		return;
	setfsgid(o->gid);
	setfsuid(o->uid);
}

void sq_unbecome(const struct sq_owner *o)
{
	if (!o->as_owner)
		return;
	setfsuid(0);
	setfsgid(0);
}

int sq_make_file(struct sq_dir *dir, const char *path, bool create, const char **error_r)
{
	int fd;

	if (!create) {
		if (access(path, F_OK) < 0)
			return dir_fail(&dir->base, error_r,
			                "directory: %s: %s (run 'pillar init'?)", path,
			                strerror(errno));
		return 0;
	}
	fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
	if (fd < 0)
		return dir_fail(&dir->base, error_r, "directory: cannot create %s: %s", path,
		                strerror(errno));
	close(fd);
	return 0;
}

int sq_make_secrets_dir(struct sq_dir *dir, const char *path, const struct sq_owner *auth,
                        const char **error_r)
{
	struct stat st;
	int fd;

	if (mkdir(path, 0700) < 0 && errno != EEXIST)
		return dir_fail(&dir->base, error_r, "directory: cannot create %s: %s", path,
		                strerror(errno));
	/* Through a descriptor, never the name again: what is changed is
	 * what was checked. */
	fd = open(path, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (fd < 0 || fstat(fd, &st) < 0) {
		if (fd >= 0)
			close(fd);
		return dir_fail(&dir->base, error_r, "directory: %s: %s", path, strerror(errno));
	}
	if (auth->as_owner && ((st.st_uid != 0 && st.st_uid != auth->uid) ||
	                       fchown(fd, auth->uid, auth->gid) < 0 || fchmod(fd, 0700) < 0)) {
		close(fd);
		return dir_fail(&dir->base, error_r,
		                "directory: %s belongs to uid %u, neither root nor auth_as: "
		                "not using it",
		                path, (unsigned)st.st_uid);
	}
	close(fd);
	return 0;
}

int sq_check_state_dir(struct sq_dir *dir, const char *state_dir, const struct sq_owner *run,
                       const char **error_r)
{
	struct stat st;
	int fd = open(state_dir, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);

	if (fd < 0 || fstat(fd, &st) < 0) {
		if (fd >= 0)
			close(fd);
		return dir_fail(&dir->base, error_r, "directory: %s: %s", state_dir,
		                strerror(errno));
	}
	/* Made by an older pillar init, for run_as: root's now, with run_as's
	 * group still allowed to add its files. */
	if (run->as_owner && st.st_uid == run->uid && st.st_uid != 0) {
		if (fchown(fd, 0, run->gid) < 0 || fchmod(fd, 01775) < 0) {
			close(fd);
			return dir_fail(&dir->base, error_r,
			                "directory: cannot give %s to root: %s", state_dir,
			                strerror(errno));
		}
		st.st_uid = 0;
		st.st_mode = S_IFDIR | 01775;
	}
	close(fd);
	if (st.st_uid != 0 && st.st_uid != geteuid())
		return dir_fail(&dir->base, error_r,
		                "directory: %s belongs to uid %u: the secrets in it are safe only "
		                "when it is root's (chown root %s)",
		                state_dir, (unsigned)st.st_uid, state_dir);
	if ((st.st_mode & (S_IWGRP | S_IWOTH)) != 0 && (st.st_mode & S_ISVTX) == 0)
		return dir_fail(&dir->base, error_r,
		                "directory: others may write in %s, and it is not sticky: the "
		                "secrets in it are not safe (chmod +t %s)",
		                state_dir, state_dir);
	return 0;
}
