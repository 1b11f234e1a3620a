/* The RETR/TOP byte transformation (RFC 1939 §3): every LF that is not
 * already preceded by CR becomes CRLF, a line starting with '.' gets one more
 * '.', and the response ends with CRLF "." CRLF (with a CRLF first when the
 * message did not end in a line break). Everything else is passed through
 * byte-exact: 8-bit data, NUL, bare CR, lines of any length.
 *
 * The transformation is resumable: feed the message in chunks of any size
 * (even one byte) and the output is the same as for one chunk. TOP n sends
 * the header, the blank line and at most n body lines, then stops consuming. */
#ifndef PILLAR_POP3_STUFF_H
#define PILLAR_POP3_STUFF_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct pop3_stuff {
	bool line_start; /* next byte begins a line */
	bool prev_cr;    /* last byte copied was CR */
	bool in_body;    /* past the blank line that ends the header */
	bool limited;    /* TOP: stop after body_lines body lines */
	bool done;       /* TOP limit reached: consume nothing more */
	uint64_t body_lines;
};

/* top_lines < 0: whole message (RETR); else TOP with that many body lines. */
void pop3_stuff_init(struct pop3_stuff *st, int64_t top_lines);

/* Transform in[0..len) into out, which must have room for 2 * len bytes.
 * Returns the number of bytes written to out; *consumed_r tells how many input
 * bytes were used (less than len only when the TOP limit was reached, after
 * which st->done is true). */
size_t pop3_stuff_chunk(struct pop3_stuff *st, const char *in, size_t len, char *out,
                        size_t *consumed_r);

/* The terminator: CRLF if the data did not end at a line start, then ".\r\n".
 * out needs room for POP3_STUFF_END_MAX bytes. Returns bytes written. */
#define POP3_STUFF_END_MAX 5
size_t pop3_stuff_end(const struct pop3_stuff *st, char *out);

#endif
