/* libFuzzer target: the RETR/TOP transformation (pop3/stuff.h), with the
 * Maildir W= size (store/maildir_name.h) it must agree with.
 *
 * Input: one mode octet, then a message file's bytes.
 *   mode '0'..'9'   TOP with that many body lines
 *   mode >= 0x80    TOP with (mode - 0x80) body lines
 *   anything else   RETR
 *
 * The message is transformed in one chunk, then again in chunks of
 * pseudo-random sizes (seeded from the input, so a saved input replays),
 * each into an output buffer of exactly the promised 2 * len bytes, so
 * AddressSanitizer catches any write past it. Checked:
 *   - any chunking gives the same octets, the same consumption and the
 *     same terminator as one chunk;
 *   - every LF in the output is preceded by CR;
 *   - every line of the output that starts with '.' starts with "..", so
 *     no line "." (or any other unstuffed dot) comes before the terminator,
 *     and the first "CRLF . CRLF" is the terminator's;
 *   - taking the dots off again (what a client does) gives the message
 *     with every bare LF made CRLF, and that length is the W= size that
 *     maildir_count_vsize computes (LIST sizes are exact, DESIGN §4), in
 *     one chunk or in many;
 *   - TOP n is RETR cut after the header, the blank line and n body lines
 *     (or the whole message when it has fewer); it stops consuming there. */
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "common.h"
#include "pop3/stuff.h"
#include "store/maildir_name.h"

struct result {
	char *out;
	size_t len;
	size_t consumed;
	char end[POP3_STUFF_END_MAX];
	size_t end_len;
	struct pop3_stuff st;
};

/* Feed msg in chunks whose sizes come from rng (NULL: one chunk). */
static void run(const char *msg, size_t len, int64_t top, struct fuzz_rng *rng, struct result *r)
{
	struct pop3_stuff st;
	size_t pos = 0;

	pop3_stuff_init(&st, top);
	r->out = malloc(2 * len + 1);
	r->len = 0;
	while (pos < len && !st.done) {
		size_t n = rng != NULL ? fuzz_rng_chunk(rng, len - pos) : len - pos;
		/* Exactly the room the contract promises, on its own. */
		char *buf = malloc(2 * n);
		size_t used = 0;
		size_t w = pop3_stuff_chunk(&st, msg + pos, n, buf, &used);

		FUZZ_CHECK(w <= 2 * n, "pop3_stuff_chunk wrote %zu for %zu input octets", w, n);
		FUZZ_CHECK(used <= n, "consumed %zu of %zu", used, n);
		FUZZ_CHECK(used == n || st.done, "stopped consuming before TOP's limit");
		FUZZ_CHECK(top >= 0 || used == n, "RETR stopped consuming");
		memcpy(r->out + r->len, buf, w);
		r->len += w;
		pos += used;
		free(buf);
	}
	if (st.done) {
		/* Once done, nothing more is consumed or written. */
		char buf[2];
		size_t used = 1;
		size_t w = len > pos ? pop3_stuff_chunk(&st, msg + pos, 1, buf, &used) : 0;
		FUZZ_CHECK(w == 0 && (len == pos || used == 0), "output after TOP's limit");
	}
	r->consumed = pos;
	r->end_len = pop3_stuff_end(&st, r->end);
	FUZZ_CHECK(r->end_len <= POP3_STUFF_END_MAX, "terminator of %zu octets", r->end_len);
	r->st = st;
}

/* The octets a client sees after removing the stuffing dots. */
static size_t unstuff(const char *in, size_t len, char *out)
{
	size_t w = 0;
	bool line_start = true;

	for (size_t i = 0; i < len; i++) {
		if (line_start && in[i] == '.') {
			line_start = false;
			continue;
		}
		line_start = in[i] == '\n';
		out[w++] = in[i];
	}
	return w;
}

/* The message with every LF that is not after a CR made CRLF. */
static size_t crlf_form(const char *in, size_t len, char *out)
{
	size_t w = 0;

	for (size_t i = 0; i < len; i++) {
		if (in[i] == '\n' && (i == 0 || in[i - 1] != '\r'))
			out[w++] = '\r';
		out[w++] = in[i];
	}
	return w;
}

/* Where TOP n must cut RETR's output r[0..len): after the first blank line
 * ("\r\n" alone) and n more complete lines; len when there are fewer. */
static size_t top_cut(const char *r, size_t len, uint64_t n)
{
	size_t i = 0;
	bool header = true;

	while (i < len) {
		const char *lf = memchr(r + i, '\n', len - i);
		if (lf == NULL)
			return len;
		size_t next = (size_t)(lf - r) + 1;
		if (header) {
			if (next - i == 2 && r[i] == '\r') {
				header = false;
				if (n == 0)
					return next;
			}
		} else if (--n == 0) {
			return next;
		}
		i = next;
	}
	return len;
}

static void check_output(const struct result *r)
{
	for (size_t i = 0; i < r->len; i++) {
		if (r->out[i] == '\n')
			FUZZ_CHECK(i > 0 && r->out[i - 1] == '\r', "bare LF at %zu of the output",
			           i);
		if (r->out[i] == '.' && (i == 0 || r->out[i - 1] == '\n'))
			FUZZ_CHECK(i + 1 < r->len && r->out[i + 1] == '.',
			           "unstuffed dot at line start, offset %zu", i);
	}
	/* Output and terminator: the only "CRLF.CRLF" is the last one. */
	size_t total = r->len + r->end_len;
	char *all = malloc(total);
	memcpy(all, r->out, r->len);
	memcpy(all + r->len, r->end, r->end_len);
	if (r->len == 0) {
		FUZZ_CHECK(total == 3 && memcmp(all, ".\r\n", 3) == 0,
		           "terminator of an empty response is not \".\\r\\n\"");
	} else {
		FUZZ_CHECK(total >= 5 && memcmp(all + total - 5, "\r\n.\r\n", 5) == 0,
		           "response does not end with CRLF.CRLF");
		const char *first = memmem(all, total, "\r\n.\r\n", 5);
		FUZZ_CHECK(first == all + total - 5, "CRLF.CRLF inside the message at %zu",
		           (size_t)(first - all));
	}
	free(all);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 1)
		return 0;

	int64_t top = -1;
	if (data[0] >= '0' && data[0] <= '9')
		top = data[0] - '0';
	else if (data[0] >= 0x80)
		top = data[0] - 0x80;
	const char *msg = (const char *)data + 1;
	size_t len = size - 1;
	struct fuzz_rng rng;
	fuzz_rng_seed(&rng, data, size, 0);

	struct result retr, retr_chunked, one, chunked;
	run(msg, len, -1, NULL, &retr);
	run(msg, len, -1, &rng, &retr_chunked);
	FUZZ_CHECK(retr.len == retr_chunked.len &&
	               memcmp(retr.out, retr_chunked.out, retr.len) == 0,
	           "RETR output differs when fed in chunks");
	FUZZ_CHECK(retr.end_len == retr_chunked.end_len &&
	               memcmp(retr.end, retr_chunked.end, retr.end_len) == 0,
	           "RETR terminator differs when fed in chunks");
	FUZZ_CHECK(retr.consumed == len, "RETR consumed %zu of %zu", retr.consumed, len);
	check_output(&retr);

	/* Un-stuffed, the response is the message in CRLF form, and as long
	 * as the W= size says. */
	char *plain = malloc(retr.len + 1);
	char *crlf = malloc(2 * len + 1);
	size_t plain_len = unstuff(retr.out, retr.len, plain);
	size_t crlf_len = crlf_form(msg, len, crlf);
	FUZZ_CHECK(plain_len == crlf_len && memcmp(plain, crlf, crlf_len) == 0,
	           "RETR output without its stuffing is not the message in CRLF form");
	uint64_t vsize = 0, vsize_chunked = 0;
	bool prev_cr = false;
	maildir_count_vsize(msg, len, &prev_cr, &vsize);
	FUZZ_CHECK(vsize == crlf_len, "W= size %llu, RETR sends %zu", (unsigned long long)vsize,
	           crlf_len);
	prev_cr = false;
	for (size_t pos = 0; pos < len;) {
		size_t n = fuzz_rng_chunk(&rng, len - pos);
		maildir_count_vsize(msg + pos, n, &prev_cr, &vsize_chunked);
		pos += n;
	}
	FUZZ_CHECK(vsize_chunked == vsize, "W= size differs when measured in chunks");
	free(plain);
	free(crlf);

	if (top >= 0) {
		run(msg, len, top, NULL, &one);
		run(msg, len, top, &rng, &chunked);
		FUZZ_CHECK(one.len == chunked.len && memcmp(one.out, chunked.out, one.len) == 0,
		           "TOP output differs when fed in chunks");
		FUZZ_CHECK(one.consumed == chunked.consumed, "TOP consumption differs in chunks");
		FUZZ_CHECK(one.end_len == chunked.end_len &&
		               memcmp(one.end, chunked.end, one.end_len) == 0,
		           "TOP terminator differs when fed in chunks");
		check_output(&one);
		size_t cut = top_cut(retr.out, retr.len, (uint64_t)top);
		FUZZ_CHECK(one.len == cut && memcmp(one.out, retr.out, cut) == 0,
		           "TOP %lld is not RETR cut after %lld body lines (%zu octets, want %zu)",
		           (long long)top, (long long)top, one.len, cut);
		free(one.out);
		free(chunked.out);
	}
	free(retr.out);
	free(retr_chunked.out);
	return 0;
}
