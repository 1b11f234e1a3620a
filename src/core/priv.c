/* Dropping root. See priv.h. */
#include "core/priv.h"

#include <errno.h>
#include <grp.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* getpwnam_r's buffer: _SC_GETPW_R_SIZE_MAX is only a hint (and may be -1),
 * so start there and grow on ERANGE up to this bound. */
#define PRIV_PWBUF_MAX (1024 * 1024)

int priv_lookup(const char *user, uid_t *uid_r, gid_t *gid_r, const char **error_r)
{
	static __thread char errbuf[160];
	struct passwd pw, *res = NULL;
	long hint = sysconf(_SC_GETPW_R_SIZE_MAX);
	size_t size = hint > 0 ? (size_t)hint : 1024;
	char *buf = NULL;
	int r;

	for (;;) {
		char *nbuf = realloc(buf, size);

		if (nbuf == NULL) {
			free(buf);
			*error_r = "out of memory";
			return -1;
		}
		buf = nbuf;
		r = getpwnam_r(user, &pw, buf, size, &res);
		if (r != ERANGE || size >= PRIV_PWBUF_MAX)
			break;
		size *= 2;
	}
	if (res == NULL) {
		if (r == 0 || r == ENOENT || r == ESRCH)
			snprintf(errbuf, sizeof(errbuf), "no such user '%s'", user);
		else
			snprintf(errbuf, sizeof(errbuf), "looking up user '%s': %s", user,
			         strerror(r));
		free(buf);
		*error_r = errbuf;
		return -1;
	}
	*uid_r = pw.pw_uid;
	*gid_r = pw.pw_gid;
	free(buf);
	return 0;
}

int priv_drop(const char *user, const char **error_r)
{
	uid_t uid;
	gid_t gid;

	if (geteuid() != 0 && getuid() != 0)
		return 0;
	if (priv_lookup(user, &uid, &gid, error_r) < 0)
		return -1;
	return priv_become(uid, gid, error_r);
}

int priv_become(uid_t uid, gid_t gid, const char **error_r)
{
	static __thread char errbuf[160];

	if (geteuid() != 0 && getuid() != 0)
		return 0;
	if (uid == 0) {
		*error_r = "refusing to run as root: the account is uid 0";
		return -1;
	}
	/* The order matters: groups first, while we may still change them. */
	if (setgroups(1, &gid) < 0) {
		snprintf(errbuf, sizeof(errbuf), "setgroups: %s", strerror(errno));
		*error_r = errbuf;
		return -1;
	}
	if (setresgid(gid, gid, gid) < 0) {
		snprintf(errbuf, sizeof(errbuf), "setresgid(%u): %s", (unsigned)gid,
		         strerror(errno));
		*error_r = errbuf;
		return -1;
	}
	if (setresuid(uid, uid, uid) < 0) {
		snprintf(errbuf, sizeof(errbuf), "setresuid(%u): %s", (unsigned)uid,
		         strerror(errno));
		*error_r = errbuf;
		return -1;
	}
	/* Paranoia: if root can be regained, the drop did not happen. */
	if (setuid(0) == 0 || seteuid(0) == 0) {
		*error_r = "privileges could be regained after dropping them";
		return -1;
	}
	return 0;
}
