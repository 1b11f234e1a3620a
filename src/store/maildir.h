/* A Maildir mailbox as a POP3 session sees it: a snapshot of new/ and cur/
 * taken at open, the exclusive session lock, message files, and expunge.
 *
 * Messages are numbered 0..count-1 in the snapshot (POP3 numbers are +1),
 * oldest first (ordered by name, which starts with the delivery time).
 * Mail delivered after the snapshot is not seen until the next open.
 *
 * Strings returned in *error_r stay valid until the next failing call into
 * the store in the same thread. */
#ifndef PILLAR_STORE_MAILDIR_H
#define PILLAR_STORE_MAILDIR_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

struct maildir;

/* Path of the mailbox of address "local@domain": <mail_root>/<domain>/<local>.
 * Caller frees. The address must already be validated (no '/', no leading '.'). */
char *maildir_path(const char *mail_root, const char *address);

/* Create <path>/{tmp,new,cur} (and <path> and its parent) with mode 0700.
 * Existing directories are fine. Returns 0 or -1 with *error_r. */
int maildir_create(const char *path, const char **error_r);

/* Take the exclusive POP3 session lock of the mailbox at `path` (flock on
 * <path>/pillar-pop3.lock, so the kernel releases it when the holder dies in
 * any way). Returns 0 and *fd_r when taken, 1 when another session holds it,
 * -1 on error with *error_r. Close the fd to release. */
int maildir_lock(const char *path, int *fd_r, const char **error_r);

/* Scan new/ and cur/ of the mailbox at `path`. Entries that are not regular
 * files (symlinks, FIFOs, directories) or whose names are not message names are
 * skipped. Files without S=/W= are measured once and renamed to carry them
 * (keeping the unique part, so the UIDL does not change); if the rename fails
 * the computed sizes are still used. Returns 0 and *md_r, or -1 with *error_r. */
int maildir_open(const char *path, struct maildir **md_r, const char **error_r);

void maildir_free(struct maildir **md);

size_t maildir_count(const struct maildir *md);
uint64_t maildir_total_vsize(const struct maildir *md);

/* Size in octets with CRLF line ends (what RETR sends before dot-stuffing). */
uint64_t maildir_msg_vsize(const struct maildir *md, size_t i);

/* The UIDL (NUL-terminated, 1-70 printable characters). */
const char *maildir_msg_uidl(const struct maildir *md, size_t i);

/* Open message i read-only, never following a symlink (O_NOFOLLOW) and only if
 * it is a regular file. Returns an fd, or -1 with *error_r (e.g. the file was
 * removed by someone else since the snapshot). */
int maildir_msg_open(const struct maildir *md, size_t i, const char **error_r);

/* Unlink every message i with del[i] true, then fsync the directories touched.
 * A file already gone counts as removed. Returns 0 when all are gone, or -1
 * with *error_r and *failed_r = how many could not be removed (the others are
 * removed; nothing else changes). */
int maildir_expunge(struct maildir *md, const bool *del, size_t *failed_r, const char **error_r);

/* Count the messages in new/ and cur/ and their bytes (S= from the names; a
 * stat only for names without S=), for `pillar user list/show`. Does not take
 * the lock or rename anything. Returns 0 or -1 with *error_r. */
int maildir_stats(const char *path, uint64_t *messages_r, uint64_t *bytes_r, const char **error_r);

/* Remove files in <path>/tmp not modified for older_than seconds (the Maildir
 * convention is 36 hours): leftovers of deliveries that crashed. Returns how
 * many were removed, or -1 if tmp/ cannot be read. */
int maildir_clean_tmp(const char *path, time_t older_than);

#endif
