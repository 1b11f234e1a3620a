/* Durable delivery of one message into Maildir mailboxes.
 *
 * The data is written once to <maildir>/tmp/<unique> with O_EXCL, fsync'ed,
 * closed (checked), renamed into new/<unique>,S=<size>,W=<vsize>, and new/ is
 * fsync'ed — all before this returns 0. On any failure every file it created
 * is removed and nothing is visible in new/. */
#ifndef PILLAR_STORE_DELIVER_H
#define PILLAR_STORE_DELIVER_H

#include <stddef.h>

/* Room for a unique name (with NUL); host names longer than fit are cut.
 * With ",S=,W=" the file name stays well under NAME_MAX. */
#define MAILDIR_UNIQUE_MAX 200

/* A new unique name: "<sec>.M<usec>P<pid>Q<counter>R<random>.<hostname>" with
 * '/' and ':' in the host name escaped as \057 and \072 (Maildir convention).
 * Writes at most size bytes including NUL. */
void maildir_unique(char *out, size_t size, const char *hostname);

/* Deliver data[0..len) into the mailbox at path. Returns 0, or -1 with
 * *error_r; *temporary_r tells whether the failure is temporary (disk full,
 * I/O error) rather than permanent (no such mailbox). */
int maildir_deliver(const char *path, const char *hostname, const void *data, size_t len,
                    int *temporary_r, const char **error_r);

#endif
