/* The SMTP message stream after "354" (DATA, RFC 5321 §4.1.1.4 and §4.5.2)
 * and after "BDAT n" (RFC 3030 §2): raw octets in, the message as we store
 * it out.
 *
 * The store keeps messages with LF line ends (the Maildir convention; POP3
 * turns them back into CRLF), so both decoders turn every CRLF into LF and
 * pass every other octet through unchanged — 8-bit and NUL included.
 *
 * DATA (smtp_data_feed):
 *   - The end of the data is <CRLF>.<CRLF> and nothing else (RFC 5321
 *     §4.1.1.4). The CRLF before the dot is the message's last line end
 *     and is part of the message. At the very start of the data, ".<CRLF>"
 *     alone ends it (the CRLF of the DATA command line precedes it): an
 *     empty message.
 *   - Dot-unstuffing (RFC 5321 §4.5.2): when a line starts with '.', that
 *     first '.' is deleted — so ".." becomes ".", "..." becomes "..", and
 *     (as the RFC says, and Postfix does) an unstuffed ".x" becomes "x".
 *     A '.' anywhere else in a line is just a '.'.
 *   - Bare CR and bare LF (a CR not followed by LF, an LF not preceded by
 *     CR) set `bare_eol`. They never end a line for the purposes above:
 *     "\n.\n", "\r.\r", "\r\n.\n", "\n.\r\n" and "\r\n.\r" + more are
 *     ordinary data (plus bare_eol), never the end of the message. That is
 *     the SMTP smuggling defence: we cannot disagree with any other server
 *     about where a message ends, because we refuse every message over
 *     which two servers could disagree. The session answers
 *     "550 5.6.0" after the end of the data.
 *   - Input is consumed up to and including the terminator's final LF and
 *     no further: whatever follows (pipelined commands, RFC 2920) is the
 *     caller's to parse as command lines.
 *
 * BDAT (smtp_bdat_feed): chunks carry raw octets with no stuffing and no
 * end marker; the caller counts the chunk sizes and feeds exactly those
 * octets. We keep the same line-end policy as DATA: CRLF becomes LF (also
 * when CR and LF are in different chunks), and a bare CR or LF sets
 * `bare_eol`, so the session refuses the message. Why not pass binary
 * through, which RFC 3030 BINARYMIME allows: we do not advertise
 * BINARYMIME; the LF-based store could not give a bare LF back byte-exact
 * (POP3 would send it as CRLF); and refusing bare line ends on every path
 * in is simpler to reason about than refusing them on one.
 *
 * Both decoders are resumable: any split of the input into chunks, down to
 * one octet at a time, gives the same output and the same flags. Neither
 * allocates nor fails; problems are flags the caller reads at the end.
 *
 * Output buffer: `out` needs room for `len` octets (the output of a call
 * is never longer than its input). `out` may be the same pointer as `in`
 * (decoding in place); otherwise the two must not overlap.
 *
 * Once `bare_eol` or `too_big` is set, no more output is produced (the
 * message is going to be refused; the caller must discard what it has
 * written), but the DATA decoder keeps scanning for the terminator and
 * `size` keeps counting.
 */
#ifndef PILLAR_SMTP_DATA_H
#define PILLAR_SMTP_DATA_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct smtp_data {
	/* Results the caller reads. */
	bool done;     /* DATA: the terminator has been consumed */
	bool bare_eol; /* a bare CR or bare LF was seen: refuse (550 5.6.0) */
	bool too_big;  /* size went past max_size: refuse (552 5.3.4) */
	/* The message size as RFC 1870 §3 counts it: octets after
	 * unstuffing with CRLF line ends, terminator excluded. Without
	 * bare_eol this is also the stored size plus one per line end, i.e.
	 * the Maildir ",W=" value of the body as stored. */
	uint64_t size;

	/* Private. */
	uint64_t max_size;
	uint8_t state;
	bool bdat;
};

/* Start decoding one DATA message. max_size: refuse (too_big) once `size`
 * exceeds it; UINT64_MAX for no limit. */
void smtp_data_init(struct smtp_data *d, uint64_t max_size);

/* Decode in[0..len) into out (room for len octets, see above). Sets
 * *consumed_r (<= len; less than len only when the terminator was found
 * inside the input) and *produced_r. Returns true when the end of the data
 * has been reached (d->done); feeding more after that consumes nothing. */
bool smtp_data_feed(struct smtp_data *d, const char *in, size_t len, char *out, size_t *consumed_r,
                    size_t *produced_r);

/* Start decoding one message sent with BDAT: call once per transaction,
 * before the first chunk, and keep the state across its chunks. */
void smtp_bdat_init(struct smtp_data *d, uint64_t max_size);

/* Decode in[0..len), octets of BDAT chunks, into out (room for len
 * octets). Consumes everything. Returns the number of octets produced. */
size_t smtp_bdat_feed(struct smtp_data *d, const char *in, size_t len, char *out);

/* After the chunk marked LAST has been fed: a CR left over at the very end
 * is a bare CR (sets bare_eol). Sets d->done. */
void smtp_bdat_finish(struct smtp_data *d);

#endif
