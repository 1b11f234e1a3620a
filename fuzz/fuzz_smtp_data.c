/* libFuzzer target: the SMTP message stream decoders (smtp/data.h), DATA
 * and BDAT.
 *
 * Input: one mode octet, then the octets the client sends after "354" (or
 * in BDAT chunks).
 *   'D' DATA, no size limit        'd' DATA, max_size 64
 *   'B' BDAT, no size limit        'b' BDAT, max_size 64
 *   other: bit 0 set = BDAT, max_size = mode >> 1 (0..127)
 *
 * Each stream is decoded three times: in one chunk, in chunks of
 * pseudo-random sizes into separate buffers of exactly the promised size
 * (so AddressSanitizer sees any write past them), and in place in other
 * random chunks. Checked:
 *   - the three agree on consumption, every flag and the size, and on the
 *     output while the message is acceptable (data.h: once it is refused
 *     the output stops, and the caller discards it);
 *   - output is never longer than input, per call and in total;
 *   - DATA ends exactly where a plain reference finds the end: ".CRLF" at
 *     the very start, else the first "CRLF.CRLF"; never anywhere else (the
 *     SMTP smuggling defence: bare CR or LF never ends or hides the end);
 *   - bare_eol is set exactly when the consumed octets hold a CR not
 *     followed by LF or an LF not preceded by CR; too_big exactly when the
 *     size passed max_size;
 *   - a clean DATA message (done, no bare line end, not too big) is the
 *     reference's: dot-unstuffed, CRLF made LF, and size counts it with
 *     CRLF; decoding the canonical encoding of that output gives it back;
 *   - BDAT output is the input with CRLF made LF when clean, and its size
 *     is always the number of octets fed. */
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "common.h"
#include "smtp/data.h"

struct result {
	char *out;
	size_t len;
	size_t consumed;
	struct smtp_data d;
};

enum how { ONE_CHUNK, CHUNKS, IN_PLACE };

static void run(bool bdat, const char *in, size_t len, uint64_t max, enum how how,
                struct fuzz_rng *rng, struct result *r)
{
	size_t pos = 0;

	r->out = malloc(len + 1);
	r->len = 0;
	if (bdat)
		smtp_bdat_init(&r->d, max);
	else
		smtp_data_init(&r->d, max);
	/* In place: a private copy of the input that is decoded over itself. */
	char *work = how == IN_PLACE ? malloc(len + 1) : NULL;
	if (work != NULL)
		memcpy(work, in, len);

	while (pos < len) {
		size_t n = how == ONE_CHUNK ? len - pos : fuzz_rng_chunk(rng, len - pos);
		char *src, *dst;
		size_t used = n, produced;

		if (how == IN_PLACE) {
			src = dst = work + pos;
		} else {
			src = malloc(n);
			memcpy(src, in + pos, n);
			dst = malloc(n); /* exactly the promised room */
		}
		if (bdat) {
			produced = smtp_bdat_feed(&r->d, src, n, dst);
		} else {
			bool done = smtp_data_feed(&r->d, src, n, dst, &used, &produced);
			FUZZ_CHECK(done == r->d.done, "smtp_data_feed return and done disagree");
			FUZZ_CHECK(used <= n && (used == n || r->d.done),
			           "consumed %zu of %zu before the end of the data", used, n);
		}
		FUZZ_CHECK(produced <= used, "produced %zu octets from %zu", produced, used);
		memcpy(r->out + r->len, dst, produced);
		r->len += produced;
		pos += used;
		if (how != IN_PLACE) {
			free(src);
			free(dst);
		}
		if (r->d.done)
			break;
	}
	if (!bdat && r->d.done && pos < len) {
		size_t used = 1, produced = 1;
		char c = in[pos], o;
		smtp_data_feed(&r->d, &c, 1, &o, &used, &produced);
		FUZZ_CHECK(used == 0 && produced == 0, "input consumed after the end of the data");
	}
	if (bdat)
		smtp_bdat_finish(&r->d);
	r->consumed = pos;
	free(work);
}

/* Once bare_eol or too_big is set the message is refused and its output
 * discarded (data.h), and where the output stopped depends on the
 * chunking: compare the octets only while the message is acceptable. */
static bool same(const struct result *a, const struct result *b)
{
	bool refused = a->d.bare_eol || a->d.too_big;

	return (refused || (a->len == b->len && memcmp(a->out, b->out, a->len) == 0)) &&
	       a->consumed == b->consumed && a->d.done == b->d.done &&
	       a->d.bare_eol == b->d.bare_eol && a->d.too_big == b->d.too_big &&
	       a->d.size == b->d.size;
}

/* A CR not followed by LF, or an LF not after CR, in in[0..end); a CR at
 * in[end - 1] counts only if `final` (nothing more can follow it). */
static bool ref_bare(const char *in, size_t end, bool final)
{
	for (size_t i = 0; i < end; i++) {
		if (in[i] == '\n' && (i == 0 || in[i - 1] != '\r'))
			return true;
		if (in[i] == '\r' && (i + 1 < end ? in[i + 1] != '\n' : final))
			return true;
	}
	return false;
}

/* Where DATA ends (octets consumed), or 0 when it does not. */
static size_t ref_data_end(const char *in, size_t len)
{
	if (len >= 3 && memcmp(in, ".\r\n", 3) == 0)
		return 3;
	const char *t = memmem(in, len, "\r\n.\r\n", 5);
	return t != NULL ? (size_t)(t - in) + 5 : 0;
}

/* The stored form of the message in[0..len) (its last CRLF included):
 * lines starting with '.' lose it, CRLF becomes LF. Returns the length;
 * *size_r gets the size with CRLF line ends. */
static size_t ref_data_decode(const char *in, size_t len, char *out, uint64_t *size_r)
{
	size_t w = 0;
	uint64_t size = 0;
	bool line_start = true;

	for (size_t i = 0; i < len; i++) {
		if (line_start && in[i] == '.') {
			line_start = false;
			continue;
		}
		line_start = false;
		if (in[i] == '\r' && i + 1 < len && in[i + 1] == '\n') {
			out[w++] = '\n';
			size += 2;
			i++;
			line_start = true;
			continue;
		}
		out[w++] = in[i];
		size++;
	}
	*size_r = size;
	return w;
}

/* What a client sends for a stored message: LF as CRLF, leading dots
 * doubled, then the end of the data. */
static size_t encode_data(const char *msg, size_t len, char *out)
{
	size_t w = 0;
	bool line_start = true;

	for (size_t i = 0; i < len; i++) {
		if (line_start && msg[i] == '.')
			out[w++] = '.';
		line_start = msg[i] == '\n';
		if (msg[i] == '\n')
			out[w++] = '\r';
		out[w++] = msg[i];
	}
	if (!line_start && len > 0) {
		out[w++] = '\r';
		out[w++] = '\n';
	}
	memcpy(out + w, ".\r\n", 3);
	return w + 3;
}

static void check_data(const char *in, size_t len, uint64_t max, const struct result *r)
{
	size_t end = ref_data_end(in, len);

	FUZZ_CHECK(r->d.done == (end != 0), "DATA %s, reference end %zu",
	           r->d.done ? "ended" : "did not end", end);
	FUZZ_CHECK(!r->d.done || r->consumed == end, "DATA ended after %zu octets, reference %zu",
	           r->consumed, end);
	FUZZ_CHECK(r->d.done || r->consumed == len, "DATA stopped early");
	FUZZ_CHECK(r->d.bare_eol == ref_bare(in, r->consumed, r->d.done),
	           "bare_eol %d does not match the octets", r->d.bare_eol);
	FUZZ_CHECK(r->d.too_big == (r->d.size > max), "too_big %d with size %llu of %llu",
	           r->d.too_big, (unsigned long long)r->d.size, (unsigned long long)max);
	if (!r->d.done || r->d.bare_eol || r->d.too_big)
		return;

	/* A clean message: compare with the reference decoding. */
	size_t msg_len = end - 3; /* the message keeps the CRLF before "." */
	char *want = malloc(msg_len + 1);
	uint64_t want_size = 0;
	size_t want_len = ref_data_decode(in, msg_len, want, &want_size);
	FUZZ_CHECK(r->len == want_len && memcmp(r->out, want, want_len) == 0,
	           "DATA output differs from the reference decoding");
	FUZZ_CHECK(r->d.size == want_size, "DATA size %llu, reference %llu",
	           (unsigned long long)r->d.size, (unsigned long long)want_size);
	free(want);

	/* The CRLF before the dot belongs to the message: a clean message is
	 * empty or ends with a line break. */
	FUZZ_CHECK(r->len == 0 || r->out[r->len - 1] == '\n', "clean message without final LF");

	/* Round trip through the canonical encoding. */
	char *enc = malloc(2 * r->len + 6);
	size_t enc_len = encode_data(r->out, r->len, enc);
	struct smtp_data d;
	char *dec = malloc(enc_len);
	size_t used = 0, produced = 0;
	smtp_data_init(&d, UINT64_MAX);
	smtp_data_feed(&d, enc, enc_len, dec, &used, &produced);
	FUZZ_CHECK(d.done && !d.bare_eol && used == enc_len && produced == r->len &&
	               memcmp(dec, r->out, r->len) == 0,
	           "decoding the canonical encoding does not give the message back");
	free(dec);
	free(enc);
}

static void check_bdat(const char *in, size_t len, uint64_t max, const struct result *r)
{
	FUZZ_CHECK(r->d.done && r->consumed == len, "BDAT did not take every octet");
	FUZZ_CHECK(r->d.size == len, "BDAT size %llu for %zu octets", (unsigned long long)r->d.size,
	           len);
	FUZZ_CHECK(r->d.bare_eol == ref_bare(in, len, true), "BDAT bare_eol %d does not match",
	           r->d.bare_eol);
	FUZZ_CHECK(r->d.too_big == (len > max), "BDAT too_big %d for %zu octets of %llu",
	           r->d.too_big, len, (unsigned long long)max);
	if (r->d.bare_eol || r->d.too_big)
		return;
	/* No dot-unstuffing and no end marker in BDAT: only CRLF -> LF. */
	char *want = malloc(len + 1);
	size_t want_len = 0;
	for (size_t i = 0; i < len; i++) {
		if (in[i] == '\r' && i + 1 < len && in[i + 1] == '\n')
			continue;
		want[want_len++] = in[i];
	}
	FUZZ_CHECK(r->len == want_len && memcmp(r->out, want, want_len) == 0,
	           "BDAT output is not the input with CRLF made LF");
	free(want);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 1)
		return 0;

	bool bdat;
	uint64_t max;
	switch (data[0]) {
	case 'D':
	case 'B':
		bdat = data[0] == 'B';
		max = UINT64_MAX;
		break;
	case 'd':
	case 'b':
		bdat = data[0] == 'b';
		max = 64;
		break;
	default:
		bdat = data[0] & 1;
		max = data[0] >> 1;
		break;
	}
	const char *in = (const char *)data + 1;
	size_t len = size - 1;
	struct fuzz_rng rng;
	fuzz_rng_seed(&rng, data, size, 1);

	struct result one, chunks, inplace;
	run(bdat, in, len, max, ONE_CHUNK, NULL, &one);
	run(bdat, in, len, max, CHUNKS, &rng, &chunks);
	run(bdat, in, len, max, IN_PLACE, &rng, &inplace);
	FUZZ_CHECK(same(&one, &chunks), "%s: chunked decoding differs from one chunk",
	           bdat ? "BDAT" : "DATA");
	FUZZ_CHECK(same(&one, &inplace), "%s: in-place decoding differs from one chunk",
	           bdat ? "BDAT" : "DATA");
	FUZZ_CHECK(one.len <= len, "output longer than input");
	if (bdat)
		check_bdat(in, len, max, &one);
	else
		check_data(in, len, max, &one);
	free(one.out);
	free(chunks.out);
	free(inplace.out);
	return 0;
}
