/* Mailbox quotas: may a mailbox take (more) mail?
 *
 * A quota is a number of bytes and a number of messages, each 0 for "no
 * limit", kept in the directory (struct dir_user). Usage is counted from the
 * Maildir names (maildir_stats: S= sizes, new/ and cur/), so checking costs
 * one directory scan and never reads a message.
 *
 * Two moments ask (the SMTP replies are DESIGN §4 and issue 3):
 *   - at RCPT, before the size is known (incoming == 0): a mailbox already
 *     at or over either limit is QUOTA_FULL (452 4.2.2, exit 75);
 *   - after DATA (incoming > 0, the message's S= size): a message that
 *     would take the mailbox over either limit is QUOTA_WONT_FIT
 *     (552 5.2.2 over SMTP, exit 75 for `pillar deliver`).
 * The check and the delivery are not atomic: two deliveries racing may
 * each fit alone and overshoot together by one message. That is the usual
 * trade-off of Maildir quotas (no lock on the delivery path). */
#ifndef PILLAR_STORE_QUOTA_H
#define PILLAR_STORE_QUOTA_H

#include <stdint.h>

enum quota_state {
	QUOTA_OK,
	QUOTA_FULL,     /* at or over a limit already */
	QUOTA_WONT_FIT, /* the incoming message would go over a limit */
};

/* Check the mailbox at `maildir` (a path from maildir_path) against the
 * limits. With both limits 0 nothing is read and *state_r is QUOTA_OK.
 * Returns 0 with *state_r, or -1 with *error_r when the mailbox cannot be
 * counted (treat as a temporary failure). */
int quota_check(const char *maildir, uint64_t quota_bytes, uint64_t quota_messages,
                uint64_t incoming, enum quota_state *state_r, const char **error_r);

#endif
