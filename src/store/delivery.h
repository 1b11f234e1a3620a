/* One message on its way into one or more mailboxes: the single delivery
 * path of SMTP, LMTP and `pillar deliver`.
 *
 * The message is written once to a spool file <mail_root>/.spool/<unique>
 * while it arrives (already in stored form: LF line ends, the Return-Path:
 * and Received: headers first). delivery_commit then makes it durable in
 * every recipient's mailbox: fsync the spool file once, then per recipient
 * hard-link it (copy when the file system refuses the link) into
 * <maildir>/tmp/, fsync the copy if one was made, rename it into
 * new/<unique>,S=<size>,W=<vsize>, and fsync new/. Only then is a recipient
 * reported delivered — the caller's success reply comes after that.
 *
 * On any failure every file made for that recipient is removed, so nothing
 * half-written is ever visible in new/. delivery_free removes the spool file.
 *
 * Writes happen on the event loop (they only reach the page cache);
 * delivery_commit blocks on fsync and must run on the thread pool. */
#ifndef PILLAR_STORE_DELIVERY_H
#define PILLAR_STORE_DELIVERY_H

#include <stddef.h>
#include <stdint.h>
#include <time.h>

struct delivery;

enum delivery_status {
	DELIVERY_OK = 0,
	DELIVERY_TEMPFAIL, /* disk full, I/O error, quota of the file system: retry later */
	DELIVERY_PERMFAIL, /* the mailbox does not exist */
};

/* Create the spool file (and <mail_root>/.spool if missing). Returns 0, or -1
 * with *error_r (a temporary failure). */
int delivery_begin(const char *mail_root, const char *hostname, struct delivery **d_r,
                   const char **error_r);

/* The same with the spool file made directly in spool_dir, which must
 * exist (maildir_deliver spools in the mailbox's own tmp/). On failure
 * errno tells why: ENOENT/ENOTDIR when spool_dir is missing. */
int delivery_begin_in(const char *spool_dir, const char *hostname, struct delivery **d_r,
                      const char **error_r);

/* Append data to the message. Errors are sticky: after one, later writes do
 * nothing and delivery_commit fails every recipient with DELIVERY_TEMPFAIL.
 * Returns 0 or -1 with *error_r. */
int delivery_write(struct delivery *d, const void *data, size_t len, const char **error_r);

/* Octets written so far (the S= size) and the same with every LF counted as
 * CRLF (the W= size, what POP3 LIST reports). */
uint64_t delivery_size(const struct delivery *d);
uint64_t delivery_vsize(const struct delivery *d);

/* Make the message durable in each of the n mailboxes (paths as from
 * maildir_path). Fills status[i] and, for failures, errors[i] (static
 * strings). Returns how many were delivered. Blocks: call from the pool. */
size_t delivery_commit(struct delivery *d, const char *const *maildirs, size_t n,
                       enum delivery_status *status, const char **errors);

/* Remove the spool file and free everything. Always call, after a commit or
 * to abandon a message. */
void delivery_free(struct delivery **d);

/* Remove what crashed deliveries left behind: files in <mail_root>/.spool
 * and in every <mail_root>/<domain>/<local>/tmp not modified for older_than
 * seconds (the Maildir convention is 36 hours; a delivery in progress
 * writes its file within minutes). Returns how many files were removed, or
 * -1 when the mail root or the spool directory cannot be read. Blocks:
 * run it from a timer on the thread pool or from the master. */
int delivery_clean_spool(const char *mail_root, time_t older_than);

#endif
