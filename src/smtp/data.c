/* DATA and BDAT stream decoding. See data.h for the contract.
 *
 * The state machine has five states; only line starts, CRs and the octets
 * right after them are looked at one by one. Everything between is found
 * with memchr and copied with memmove, so the cost per octet is that of
 * two memchr passes and one copy.
 *
 *   LINE_START  at the start of a line (after CRLF, or at the start)
 *   TEXT        inside a line
 *   CR          a CR was consumed inside a line (not yet written)
 *   DOT         a line started with '.' (consumed, and always dropped)
 *   DOT_CR      "<CRLF>.<CR>" consumed: one LF more ends the data
 *
 * Output never runs ahead of input — each octet written corresponds to an
 * octet already consumed (the LF of a CRLF is written when the LF is read)
 * — which is what makes decoding in place safe. */
#include "smtp/data.h"

#include <string.h>

enum {
	ST_LINE_START = 0,
	ST_TEXT,
	ST_CR,
	ST_DOT,
	ST_DOT_CR,
	ST_DONE,
};

void smtp_data_init(struct smtp_data *d, uint64_t max_size)
{
	memset(d, 0, sizeof(*d));
	d->max_size = max_size;
	d->state = ST_LINE_START;
}

void smtp_bdat_init(struct smtp_data *d, uint64_t max_size)
{
	memset(d, 0, sizeof(*d));
	d->max_size = max_size;
	d->bdat = true;
	d->state = ST_TEXT; /* no line starts: nothing is special there */
}

static bool emitting(const struct smtp_data *d)
{
	return !d->bare_eol && !d->too_big;
}

static void add_size(struct smtp_data *d, uint64_t n)
{
	d->size += n;
	if (d->size > d->max_size)
		d->too_big = true;
}

/* The shared decoder. Stops after the DATA terminator; BDAT never has one. */
static void decode(struct smtp_data *d, const char *in, size_t len, char *out, size_t *consumed_r,
                   size_t *produced_r)
{
	const char *p = in, *end = in + len;
	char *w = out;

	while (p < end && d->state != ST_DONE) {
		switch (d->state) {
		case ST_LINE_START:
			if (*p == '.') {
				/* RFC 5321 §4.5.2: the first '.' of a line
				 * is deleted (or is the terminator). */
				p++;
				d->state = ST_DOT;
				continue;
			}
			d->state = ST_TEXT;
			continue;

		case ST_TEXT: {
			const char *cr = memchr(p, '\r', (size_t)(end - p));
			const char *stop = cr != NULL ? cr : end;
			const char *lf = memchr(p, '\n', (size_t)(stop - p));
			size_t n;

			if (lf != NULL) {
				/* A bare LF: RFC 5321 §2.3.8 allows LF only
				 * as part of CRLF. */
				d->bare_eol = true;
				stop = lf + 1;
				cr = NULL;
			}
			n = (size_t)(stop - p);
			add_size(d, n);
			if (emitting(d)) {
				memmove(w, p, n);
				w += n;
			}
			p = stop;
			if (cr != NULL) {
				p++;
				d->state = ST_CR;
			}
			continue;
		}

		case ST_CR:
			if (*p == '\n') {
				p++;
				add_size(d, 2);
				if (emitting(d))
					*w++ = '\n';
				d->state = d->bdat ? ST_TEXT : ST_LINE_START;
				continue;
			}
			/* A bare CR; the octet after it is ordinary data
			 * (it may be another CR starting a CRLF). */
			add_size(d, 1);
			d->bare_eol = true;
			d->state = ST_TEXT;
			continue;

		case ST_DOT:
			if (*p == '\r') {
				p++;
				d->state = ST_DOT_CR;
				continue;
			}
			d->state = ST_TEXT;
			continue;

		case ST_DOT_CR:
			if (*p == '\n') {
				/* <CRLF>.<CRLF> (RFC 5321 §4.1.1.4). */
				p++;
				d->state = ST_DONE;
				d->done = true;
				continue;
			}
			/* ".<CR>" and then not LF: the line "." + bare CR. */
			add_size(d, 1);
			d->bare_eol = true;
			d->state = ST_TEXT;
			continue;
		}
	}
	*consumed_r = (size_t)(p - in);
	*produced_r = (size_t)(w - out);
}

bool smtp_data_feed(struct smtp_data *d, const char *in, size_t len, char *out, size_t *consumed_r,
                    size_t *produced_r)
{
	decode(d, in, len, out, consumed_r, produced_r);
	return d->done;
}

size_t smtp_bdat_feed(struct smtp_data *d, const char *in, size_t len, char *out)
{
	size_t consumed, produced;

	decode(d, in, len, out, &consumed, &produced);
	return produced;
}

void smtp_bdat_finish(struct smtp_data *d)
{
	if (d->state == ST_CR) {
		add_size(d, 1);
		d->bare_eol = true;
	}
	d->state = ST_DONE;
	d->done = true;
}
