/* The message a RETR or TOP is sending: its file, read in steps and
 * transformed for the wire (pop3/stuff.h).
 *
 * A large file is mapped rather than read, which saves copying every octet
 * once; a small one, or one that cannot be mapped, is read. Either way the message ends
 * where its size at the start said: a file that another program shortens
 * meanwhile makes the step fail (a mapped page past the new end raises
 * SIGBUS, which is caught for the pages of the message being converted
 * and nowhere else), so a client is never told that a cut message is
 * whole. */
#ifndef PILLAR_POP3_RETR_H
#define PILLAR_POP3_RETR_H

#include <stddef.h>
#include <stdint.h>

#include "pop3/stuff.h"

struct evbuffer;

/* Input octets converted per step at most: a step adds up to twice this. */
#define POP3_RETR_STEP (128 * 1024)
/* Smaller files are read: for them the mapping's own system calls and page
 * faults cost about what the copy it saves does (on loopback, 100 KB
 * messages went no faster mapped; 10 MB ones went a fifth faster). */
#define POP3_RETR_MAP_MIN (2 * POP3_RETR_STEP)

struct pop3_retr {
	int fd;          /* -1: nothing open */
	const char *map; /* the whole file, or NULL: read from fd */
	uint64_t size;   /* at the start */
	uint64_t done;   /* input octets converted so far */
	struct pop3_stuff stuff;
};

enum pop3_retr_step {
	POP3_RETR_MORE,   /* call again when there is room */
	POP3_RETR_END,    /* the terminator is written too */
	POP3_RETR_FAILED, /* the file could not be read; *error_r says why */
};

/* Takes fd (a regular file, open for reading). top_lines as for
 * pop3_stuff_init. Never fails: what cannot be mapped is read. */
void pop3_retr_start(struct pop3_retr *r, int fd, int64_t top_lines);

/* Append the next part of the response to out. */
enum pop3_retr_step pop3_retr_step(struct pop3_retr *r, struct evbuffer *out, size_t *added_r,
                                   const char **error_r);

/* Closes and unmaps; safe to call again, and on a zeroed struct with fd -1. */
void pop3_retr_end(struct pop3_retr *r);

#endif
