/* Internals shared by the store/maildir*.c files; nothing outside src/store
 * includes this. */
#ifndef PILLAR_STORE_MAILDIR_PRIVATE_H
#define PILLAR_STORE_MAILDIR_PRIVATE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Longest "new/<name>" or "cur/<name>": a name is at most NAME_MAX (255). */
#define MAILDIR_SUBPATH_MAX (4 + 255 + 1)

/* One message of the snapshot. Names and UIDLs live in the maildir's arena
 * (one allocation for the whole mailbox, not one per message), referred to by
 * offset because the arena moves while it grows during the scan. */
struct maildir_msg {
	size_t name_off;
	size_t uidl_off;
	uint64_t vsize;
	uint64_t sort_key;  /* leading number of the name (delivery time) */
	uint32_t uidl_hash; /* scan only: for finding duplicate UIDLs */
	bool in_cur;        /* in cur/ rather than new/ */
	bool needs_sizes;   /* scan only: name lacks S= or W= */
	bool skip;          /* scan only: drop from the listing */
};

struct maildir {
	int dirfd; /* the mailbox directory, kept open for msg_open/expunge */
	char *arena;
	size_t arena_len, arena_cap;
	struct maildir_msg *msgs;
	size_t count, cap;
	uint64_t total_vsize;
};

/* "new/<name>" or "cur/<name>" of message i into buf. Returns 0, or -1 if it
 * does not fit. */
int maildir_msg_subpath(const struct maildir *md, size_t i, char buf[MAILDIR_SUBPATH_MAX]);

/* Format "<what>: <strerror(errno)>" into a per-thread buffer, which stays
 * valid until the next error from the same file in this thread. */
const char *maildir_errno_str(const char *what);

#endif
