/* RETR/TOP byte transformation. See stuff.h for the contract.
 *
 * The inner loop works on whole runs: the bytes up to the next LF are copied
 * and searched in one pass (copy_to_lf). Only the first byte of each line
 * (dot stuffing, blank-line detection) is looked at individually.
 *
 * State encoding: besides the usual meanings, `line_start && prev_cr` means
 * "the current line so far is a single CR". That line is blank if an LF comes
 * next ("\r\n" ends the header), and it is not a line start for dot-stuffing
 * purposes any more. Keeping it in the two existing flags lets a chunk end
 * right after that CR. */
#include "pop3/stuff.h"

#include <string.h>
#ifdef __SSE2__
#include <emmintrin.h>
#endif

void pop3_stuff_init(struct pop3_stuff *st, int64_t top_lines)
{
	memset(st, 0, sizeof(*st));
	st->line_start = true;
	if (top_lines >= 0) {
		st->limited = true;
		st->body_lines = (uint64_t)top_lines; /* body lines still to send */
	}
}

/* Copy run[0..avail) to w up to the first LF, which is not copied; returns
 * how many bytes were copied, avail when there is no LF. w needs room for
 * avail bytes. Mail lines are short, so a memchr and a memcpy call per line
 * cost more than the bytes: here each 16-byte block is loaded once, stored,
 * then searched (bytes stored past the LF are overwritten by what follows). */
static size_t copy_to_lf(const char *run, size_t avail, char *w)
{
	size_t k = 0;
#ifdef __SSE2__
	const __m128i lf = _mm_set1_epi8('\n');
	for (; avail - k >= 16; k += 16) {
		__m128i v = _mm_loadu_si128((const __m128i *)(const void *)(run + k));
		_mm_storeu_si128((__m128i *)(void *)(w + k), v);
		unsigned m = (unsigned)_mm_movemask_epi8(_mm_cmpeq_epi8(v, lf));
		if (m != 0)
			return k + (size_t)__builtin_ctz(m);
	}
#endif
	const char *p = memchr(run + k, '\n', avail - k);
	size_t n = p != NULL ? (size_t)(p - run) : avail;
	memcpy(w + k, run + k, n - k);
	return n;
}

/* A line has just ended (its LF was copied). Updates the TOP accounting. */
static void line_ended(struct pop3_stuff *st, bool blank)
{
	st->line_start = true;
	st->prev_cr = false;
	if (!st->in_body) {
		if (!blank)
			return;
		/* The blank line ending the header; TOP 0 stops here. */
		st->in_body = true;
		if (st->limited && st->body_lines == 0)
			st->done = true;
		return;
	}
	if (st->limited) {
		if (st->body_lines > 0)
			st->body_lines--;
		if (st->body_lines == 0)
			st->done = true;
	}
}

size_t pop3_stuff_chunk(struct pop3_stuff *st, const char *in, size_t len, char *out,
                        size_t *consumed_r)
{
	size_t i = 0;
	char *w = out;

	while (i < len && !st->done) {
		if (st->line_start) {
			char c = in[i];
			if (st->prev_cr) {
				/* The line so far is one CR. */
				if (c == '\n') {
					*w++ = '\n';
					i++;
					line_ended(st, true);
				} else {
					/* Not blank; handle c as an ordinary
					 * mid-line byte (prev_cr stays true). */
					st->line_start = false;
				}
				continue;
			}
			if (c == '\n') {
				*w++ = '\r';
				*w++ = '\n';
				i++;
				line_ended(st, true);
				continue;
			}
			if (c == '\r') {
				*w++ = '\r';
				i++;
				st->prev_cr = true; /* stays at line start: see top */
				continue;
			}
			if (c == '.') {
				/* RFC 1939 §3: byte-stuff a leading termination
				 * octet. */
				*w++ = '.';
				*w++ = '.';
				i++;
				st->line_start = false;
				st->prev_cr = false;
				continue;
			}
			st->line_start = false;
			/* fall through to the run copy with c unconsumed */
		}

		const char *run = in + i;
		size_t avail = len - i;
		size_t n = copy_to_lf(run, avail, w);
		if (n == avail) {
			w += avail;
			st->prev_cr = run[avail - 1] == '\r';
			i = len;
			break;
		}
		bool cr_before = n > 0 ? run[n - 1] == '\r' : st->prev_cr;
		w += n;
		if (!cr_before)
			*w++ = '\r';
		*w++ = '\n';
		i += n + 1;
		line_ended(st, false);
	}
	*consumed_r = i;
	return (size_t)(w - out);
}

size_t pop3_stuff_end(const struct pop3_stuff *st, char *out)
{
	char *w = out;

	/* Not at a line start, or the last line is a lone CR: finish the line
	 * so the terminator stands on its own line. */
	if (!st->line_start || st->prev_cr) {
		*w++ = '\r';
		*w++ = '\n';
	}
	*w++ = '.';
	*w++ = '\r';
	*w++ = '\n';
	return (size_t)(w - out);
}
