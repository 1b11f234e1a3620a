/* `pillar user del` and `pillar user rename`: moving a mailbox's Maildir
 * and its directory row as one step, under the POP3 session locks. */
#include "cli/cli.h"
#include "cli/user.h"

#include "core/config.h"
#include "core/util.h"
#include "directory/directory.h"
#include "directory/lock.h"
#include "store/maildir.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sysexits.h>
#include <time.h>
#include <unistd.h>

/* How long `--kick` waits for a kicked POP3 session to let go of the
 * mailbox: the worker ends it at once, so this is only slack for a busy
 * machine. */
#define KICK_WAIT_MS 5000
#define KICK_POLL_MS 50

/* ---- the POP3 session locks, for del and rename ---- */

/* What a POP3 session holds for its whole life, and so what these commands
 * take to keep sessions out while they move a mailbox: the Maildir's lock
 * (maildir_lock, an flock) and, with a PostgreSQL directory, the lock in
 * PostgreSQL that keeps sessions of every server sharing it apart
 * (directory/lock.h; none with SQLite). */
struct mailbox_hold {
	int fd;                            /* the Maildir's; -1 when none */
	struct dir_session_lock *dir_lock; /* NULL when none */
	/* After EX_TEMPFAIL from take_locks: the Maildir's lock was free and
	 * the one in PostgreSQL taken, as by a session on another server. */
	bool elsewhere;
};

static void sleep_ms(long ms)
{
	struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};

	while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
		;
}

static void release_mailbox(struct mailbox_hold *h)
{
	if (h->fd >= 0)
		close(h->fd);
	h->fd = -1;
	dir_session_unlock(&h->dir_lock);
}

/* Take both locks of the mailbox (the Maildir's only when it has one: a
 * session cannot open a mailbox without one). Returns 0 with both held;
 * EX_TEMPFAIL when a session holds one (neither is kept; h->elsewhere says
 * whether the Maildir's was free, as it is for a session on another
 * server); or an exit status after printing the error. */
static int take_locks(const struct config *cfg, const char *path, bool has_maildir,
                      const char *address, struct mailbox_hold *h)
{
	const char *err;
	int r;

	h->fd = -1;
	h->dir_lock = NULL;
	h->elsewhere = false;
	if (has_maildir) {
		r = maildir_lock(path, &h->fd, &err);
		if (r < 0) {
			cli_err("cannot lock the Maildir of %s: %s", address, err);
			return EX_IOERR;
		}
		if (r > 0)
			return EX_TEMPFAIL;
	}
	r = dir_session_lock(cfg, address, &h->dir_lock, &err);
	if (r == 0)
		return 0;
	release_mailbox(h);
	if (r < 0) {
		cli_err("cannot lock the mailbox %s: %s", address, err);
		return 1;
	}
	h->elsewhere = true;
	return EX_TEMPFAIL;
}

int cli_mailbox_in_use(const struct config *cfg, const char *address)
{
	char *path = maildir_path(cfg->mail_root, address);
	struct mailbox_hold h;
	struct stat st;
	int r = take_locks(cfg, path, lstat(path, &st) == 0, address, &h);

	free(path);
	if (r == 0) {
		release_mailbox(&h);
		return 0;
	}
	if (r == EX_TEMPFAIL)
		return h.elsewhere ? 2 : 1;
	return -1;
}

/* Take the POP3 session locks of the mailbox whose Maildir is at path, so
 * that no session has the mailbox open while it is moved and none can open
 * it meanwhile. Held by a session: refuse, or with a kicker end the
 * address's sessions on this server and wait a little for the locks to
 * come free. Returns 0 with h held (release_mailbox lets go), or an exit
 * status after saying why. */
static int hold_mailbox(const struct config *cfg, const char *path, const char *address,
                        struct cli_kicker *kicker, const char *what, struct mailbox_hold *h)
{
	struct stat st;
	bool has_maildir = true;
	unsigned ended = 0;
	int r;

	h->fd = -1;
	h->dir_lock = NULL;
	if (lstat(path, &st) < 0) {
		if (errno != ENOENT) {
			cli_err("%s: %s", path, strerror(errno));
			return EX_IOERR;
		}
		has_maildir = false;
	}
	r = take_locks(cfg, path, has_maildir, address, h);
	if (r != EX_TEMPFAIL)
		return r;
	if (kicker == NULL) {
		if (h->elsewhere)
			cli_err("cannot %s %s: a POP3 session has the mailbox open on another "
			        "server (end it there with 'pillar kick %s')",
			        what, address, address);
		else
			cli_err("cannot %s %s: a POP3 session has the mailbox open (end it with "
			        "'pillar kick %s', or add --kick)",
			        what, address, address);
		return EX_TEMPFAIL;
	}
	r = cli_kicker_kick(kicker, address, &ended);
	if (r != 0 && r != EX_NOUSER) {
		cli_err("cannot %s %s: a POP3 session has the mailbox open and could not be "
		        "ended",
		        what, address);
		return EX_TEMPFAIL;
	}
	/* A kicked session lets go of the Maildir's lock first and of the
	 * one in PostgreSQL just after: wait for both. */
	for (long waited = 0; waited < KICK_WAIT_MS; waited += KICK_POLL_MS) {
		sleep_ms(KICK_POLL_MS);
		r = take_locks(cfg, path, has_maildir, address, h);
		if (r == 0) {
			printf("%u session%s of %s ended\n", ended, ended == 1 ? "" : "s", address);
			return 0;
		}
		if (r != EX_TEMPFAIL)
			return r;
	}
	if (h->elsewhere)
		cli_err("cannot %s %s: a POP3 session on another server still has the mailbox "
		        "open (end it there with 'pillar kick %s')",
		        what, address, address);
	else
		cli_err("cannot %s %s: its POP3 session still holds the mailbox %d s after %u "
		        "session%s were told to end",
		        what, address, KICK_WAIT_MS / 1000, ended, ended == 1 ? "" : "s");
	return EX_TEMPFAIL;
}

/* fsync a directory so a rename in it survives a crash; best effort (the
 * rename itself has happened either way). */
static void sync_dir(const char *path)
{
	int fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);

	if (fd >= 0) {
		fsync(fd);
		close(fd);
	}
}

/* The directory that holds path ("<mail_root>/<domain>" for a Maildir). */
static char *parent_of(const char *path)
{
	const char *slash = strrchr(path, '/');

	return slash == NULL ? xstrdup(".") : xasprintf("%.*s", (int)(slash - path), path);
}

/* ---- del ---- */

/* Aliases that name the mailbox as a target: dir_user_del removes those
 * rows (dir_user_rename renames them), and the command says which. */
struct alias_refs {
	const char *address;
	struct strlist aliases;
};

static void find_alias_ref(void *ctx, const char *address, const char *target)
{
	struct alias_refs *ar = ctx;

	if (strcmp(target, ar->address) == 0)
		strlist_add(&ar->aliases, address);
}

/* Move the Maildir out of the way before the row goes, so that a failure
 * of either step can be undone and nothing is half-deleted. The session
 * lock is held throughout: no POP3 session has the mailbox open while it
 * goes. */
int cli_user_del(struct dir *dir, const struct config *cfg, const char *address, bool purge,
                 struct cli_kicker *kicker)
{
	char *path = maildir_path(cfg->mail_root, address);
	char *moved = NULL, *deleted_dir = NULL;
	const char *err;
	struct stat st;
	struct alias_refs ar = {.address = address};
	struct mailbox_hold hold = {.fd = -1};
	int r, status = 0;

	r = cli_user_exists(dir, address);
	if (r <= 0) {
		if (r == 0)
			cli_err("no such mailbox %s", address);
		free(path);
		return r == 0 ? EX_NOUSER : 1;
	}
	if (dir_alias_list(dir, NULL, find_alias_ref, &ar, &err) < 0) {
		cli_err("%s", err);
		free(path);
		return 1;
	}
	status = hold_mailbox(cfg, path, address, kicker, "delete", &hold);
	if (status != 0)
		goto out;

	if (hold.fd >= 0) {
		long long now = (long long)time(NULL);

		if (purge) {
			/* A sibling name no mailbox can have (leading '.'),
			 * on the same file system, so rename cannot fail
			 * with EXDEV. */
			const char *at = strchr(address, '@');
			moved = xasprintf("%s/%s/.%.*s.deleting.%lld.%ld", cfg->mail_root, at + 1,
			                  (int)(at - address), address, now, (long)getpid());
		} else {
			deleted_dir = xasprintf("%s/deleted", cfg->state_dir);
			if (mkdir(deleted_dir, 0700) < 0 && errno != EEXIST) {
				cli_err("cannot create %s: %s", deleted_dir, strerror(errno));
				status = EX_CANTCREAT;
				goto out;
			}
			moved = xasprintf("%s/%s.%lld", deleted_dir, address, now);
			for (int n = 1; lstat(moved, &st) == 0 && n < 100; n++) {
				free(moved);
				moved = xasprintf("%s/%s.%lld-%d", deleted_dir, address, now, n);
			}
		}
		if (rename(path, moved) < 0) {
			if (errno == EXDEV)
				cli_err("cannot move %s to %s: it is on another file system "
				        "(use --purge, or move the Maildir yourself first)",
				        path, deleted_dir);
			else
				cli_err("cannot move %s to %s: %s", path, moved, strerror(errno));
			status = EX_CANTCREAT;
			goto out;
		}
	}

	if (dir_user_del(dir, address, &err) < 0) {
		cli_err("%s", err);
		if (moved != NULL && rename(moved, path) < 0)
			cli_err("and the Maildir could not be put back from %s: %s", moved,
			        strerror(errno));
		status = 1;
		goto out;
	}
	if (moved != NULL && purge) {
		if (cli_remove_tree(moved) < 0) {
			cli_err("mailbox %s deleted, but removing %s failed: %s", address, moved,
			        strerror(errno));
			status = 1;
			goto out;
		}
		printf("mailbox %s deleted, mail removed\n", address);
	} else if (moved != NULL) {
		printf("mailbox %s deleted, mail kept in %s\n", address, moved);
	} else {
		printf("mailbox %s deleted (it had no Maildir)\n", address);
	}
	for (size_t i = 0; i < ar.aliases.count; i++)
		printf("alias %s no longer delivers to %s\n", ar.aliases.items[i], address);
out:
	release_mailbox(&hold);
	strlist_free(&ar.aliases);
	free(path);
	free(moved);
	free(deleted_dir);
	return status;
}

/* ---- rename ---- */

/* 1 when address has alias rows, 0 not, -1 error (printed). */
struct alias_probe {
	const char *address;
	bool found;
};

static void probe_alias(void *ctx, const char *address, const char *target)
{
	struct alias_probe *ap = ctx;

	(void)target;
	if (strcmp(address, ap->address) == 0)
		ap->found = true;
}

static int alias_exists(struct dir *dir, const char *address)
{
	struct alias_probe ap = {.address = address};
	const char *err;

	if (dir_alias_list(dir, strchr(address, '@') + 1, probe_alias, &ap, &err) < 0) {
		cli_err("%s", err);
		return -1;
	}
	return ap.found ? 1 : 0;
}

/* The Maildir moves with rename(2) and the row changes in one transaction
 * (dir_user_rename); the directory is renamed first and renamed back if the
 * row cannot change, so a failure anywhere leaves both as they were. The
 * message files are not renamed, so their UIDLs stay. Throughout, this
 * command holds the mailbox's POP3 session locks (the Maildir's taken on the
 * old Maildir, whose lock file moves with it; the one in PostgreSQL on the
 * old address, which no session can log in as once the row has changed),
 * so no session has it open or opens it.
 *
 * Delivery has no lock: one that resolved OLD before the row changed opens
 * the old path. If it opened the Maildir before the rename, it writes
 * through that descriptor into the moved Maildir, where the mail belongs;
 * if after, the open fails with ENOENT and the delivery fails (see the
 * store's classification of that error), and nothing is written under the
 * old path: delivery never creates a Maildir. */
int cli_user_rename(struct dir *dir, const struct config *cfg, const char *from, const char *to,
                    struct cli_kicker *kicker)
{
	const char *to_domain = strchr(to, '@') + 1, *err;
	char *old_path = maildir_path(cfg->mail_root, from);
	char *new_path = maildir_path(cfg->mail_root, to);
	char *old_parent = parent_of(old_path), *new_parent = parent_of(new_path);
	struct alias_refs ar = {.address = from};
	bool made_parent = false, moved = false;
	struct mailbox_hold hold = {.fd = -1};
	struct stat st;
	int r, status = 0;

	r = cli_user_exists(dir, from);
	if (r <= 0) {
		if (r == 0)
			cli_err("no such mailbox %s", from);
		status = r == 0 ? EX_NOUSER : 1;
		goto out;
	}
	r = dir_domain_exists(dir, to_domain, &err);
	if (r <= 0) {
		if (r == 0)
			cli_err("cannot rename %s to %s: domain %s is not local (add it with "
			        "'pillar domain add %s')",
			        from, to, to_domain, to_domain);
		else
			cli_err("%s", err);
		status = r == 0 ? EX_NOUSER : 1;
		goto out;
	}
	r = cli_user_exists(dir, to);
	if (r == 0)
		r = alias_exists(dir, to) > 0 ? 2 : 0;
	if (r != 0) {
		if (r > 0)
			cli_err("cannot rename %s to %s: %s already exists as %s", from, to, to,
			        r == 1 ? "a mailbox" : "an alias");
		status = r > 0 ? EX_CANTCREAT : 1;
		goto out;
	}
	if (lstat(new_path, &st) == 0) {
		cli_err("cannot rename %s to %s: %s already exists (not a mailbox in the "
		        "directory); move it away first",
		        from, to, new_path);
		status = EX_CANTCREAT;
		goto out;
	}
	if (dir_alias_list(dir, NULL, find_alias_ref, &ar, &err) < 0) {
		cli_err("%s", err);
		status = 1;
		goto out;
	}

	status = hold_mailbox(cfg, old_path, from, kicker, "rename", &hold);
	if (status != 0)
		goto out;
	if (hold.fd >= 0) {
		if (mkdir(new_parent, 0700) == 0)
			made_parent = true;
		else if (errno != EEXIST) {
			cli_err("cannot rename %s to %s: cannot create %s: %s", from, to,
			        new_parent, strerror(errno));
			status = EX_CANTCREAT;
			goto out;
		}
		/* RENAME_NOREPLACE semantics by hand: new_path was checked
		 * above, and rename(2) of a directory fails on a non-empty
		 * target anyway. */
		if (rename(old_path, new_path) < 0) {
			cli_err("cannot rename %s to %s: moving %s to %s: %s", from, to, old_path,
			        new_path, strerror(errno));
			status = errno == EACCES || errno == EPERM ? EX_NOPERM : EX_CANTCREAT;
			goto undo;
		}
		moved = true;
	}
	if (dir_user_rename(dir, from, to, &err) < 0) {
		cli_err("cannot rename %s to %s: %s", from, to, err);
		status = 1;
		goto undo;
	}
	if (moved) {
		sync_dir(new_parent);
		if (strcmp(new_parent, old_parent) != 0)
			sync_dir(old_parent);
	}
	printf("mailbox %s renamed to %s%s\n", from, to, moved ? "" : " (it had no Maildir)");
	for (size_t i = 0; i < ar.aliases.count; i++)
		printf("alias %s now delivers to %s\n", ar.aliases.items[i], to);
	goto out;
undo:
	if (moved && rename(new_path, old_path) < 0)
		cli_err("and the Maildir could not be moved back from %s to %s: %s; move it "
		        "back by hand",
		        new_path, old_path, strerror(errno));
	else if (made_parent)
		rmdir(new_parent);
out:
	release_mailbox(&hold);
	strlist_free(&ar.aliases);
	free(old_path);
	free(new_path);
	free(old_parent);
	free(new_parent);
	return status;
}
