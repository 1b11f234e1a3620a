/* DATA and BDAT stream decoding: end-of-data detection, dot-unstuffing,
 * CRLF -> LF, the bare CR/LF (SMTP smuggling) variants, size limits. Every
 * fixed case is fed in one piece, one octet at a time, split in two at
 * every position and in random pieces; random inputs are compared against
 * a simple octet-at-a-time model of RFC 5321 §4.5.2. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "smtp/data.h"

struct result {
	char out[4096];
	size_t out_len;
	size_t consumed;
	bool done, bare, big;
	uint64_t size;
};

/* Feed in[0..len) cut at the given split points (sorted, each <= len). */
static void run_splits(const char *in, size_t len, const size_t *cuts, size_t ncuts, uint64_t max,
                       struct result *r)
{
	struct smtp_data d;
	size_t pos = 0;

	memset(r, 0, sizeof(*r));
	smtp_data_init(&d, max);
	for (size_t k = 0; k <= ncuts && !d.done; k++) {
		size_t stop = k < ncuts ? cuts[k] : len;
		size_t n = stop - pos, consumed = 999999, produced = 999999;
		char buf[4096];

		assert_true(n <= sizeof(buf));
		bool done = smtp_data_feed(&d, in + pos, n, buf, &consumed, &produced);
		assert_int_equal(done, d.done);
		assert_true(consumed <= n);
		assert_true(produced <= consumed);
		if (!done)
			assert_int_equal(consumed, n);
		assert_true(r->out_len + produced <= sizeof(r->out));
		memcpy(r->out + r->out_len, buf, produced);
		r->out_len += produced;
		pos += consumed;
	}
	r->consumed = pos;
	r->done = d.done;
	r->bare = d.bare_eol;
	r->big = d.too_big;
	r->size = d.size;
}

static void run_chunked(const char *in, size_t len, size_t chunk, uint64_t max, struct result *r)
{
	size_t cuts[4096] = {0}, n = 0;

	for (size_t p = chunk; p < len && n < 4096; p += chunk)
		cuts[n++] = p;
	run_splits(in, len, cuts, n, max, r);
}

static bool same(const struct result *a, const struct result *b)
{
	if (a->consumed != b->consumed || a->done != b->done || a->bare != b->bare ||
	    a->big != b->big || a->size != b->size)
		return false;
	/* Output is only meaningful for a message we would keep. */
	if (a->bare || a->big)
		return true;
	return a->out_len == b->out_len && memcmp(a->out, b->out, a->out_len) == 0;
}

/* Every way of feeding must agree with feeding it whole. */
static void check_all_feeds(const char *in, size_t len, uint64_t max, const struct result *whole)
{
	struct result r;

	run_chunked(in, len, 1, max, &r);
	assert_true(same(whole, &r));
	for (size_t cut = 0; cut <= len; cut++) {
		run_splits(in, len, &cut, 1, max, &r);
		if (!same(whole, &r))
			fail_msg("split at %zu differs", cut);
	}
	for (size_t a = 1; a < len && len < 40; a++) {
		for (size_t b = a; b < len; b++) {
			size_t cuts[2] = {a, b};
			run_splits(in, len, cuts, 2, max, &r);
			if (!same(whole, &r))
				fail_msg("splits at %zu,%zu differ", a, b);
		}
	}
	for (size_t c = 2; c < 9; c++) {
		run_chunked(in, len, c, max, &r);
		assert_true(same(whole, &r));
	}
}

/* want_consumed: SIZE_MAX means "all of it, and not done". */
static void data_case(const char *in, size_t len, const char *want_out, size_t want_out_len,
                      size_t want_consumed, bool want_bare)
{
	struct result r;

	run_chunked(in, len, len > 0 ? len : 1, UINT64_MAX, &r);
	if (want_consumed == SIZE_MAX) {
		assert_false(r.done);
		assert_int_equal(r.consumed, len);
	} else {
		assert_true(r.done);
		assert_int_equal(r.consumed, want_consumed);
	}
	if (r.bare != want_bare)
		fail_msg("bare_eol %d, want %d", r.bare, want_bare);
	assert_false(r.big);
	if (!want_bare) {
		assert_int_equal(r.out_len, want_out_len);
		assert_memory_equal(r.out, want_out, want_out_len);
		/* size = stored octets + one per LF (every LF was a CRLF). */
		uint64_t lfs = 0;
		for (size_t i = 0; i < r.out_len; i++)
			lfs += r.out[i] == '\n';
		assert_int_equal(r.size, r.out_len + lfs);
	}
	check_all_feeds(in, len, UINT64_MAX, &r);
}

#define L(s) s, sizeof(s) - 1
#define END  ((size_t)-1)

static void test_end_of_data(void **state)
{
	(void)state;

	data_case(L("Hello\r\n.\r\n"), L("Hello\n"), 10, false);
	data_case(L("a\r\nb\r\n.\r\n"), L("a\nb\n"), 9, false);
	/* At the very start, ".\r\n" is the terminator: an empty message. */
	data_case(L(".\r\n"), L(""), 3, false);
	/* The terminator needs the CRLF before it. */
	data_case(L("Hello.\r\n"), L("Hello.\n"), END, false);
	data_case(L("Hello\r\n.\r"), L("Hello\n"), END, false);
	data_case(L("Hello\r\n."), L("Hello\n"), END, false);
	data_case(L("Hello\r\n"), L("Hello\n"), END, false);
	data_case(L(""), L(""), END, false);
	/* A blank line before the dot. */
	data_case(L("\r\n.\r\n"), L("\n"), 5, false);
	data_case(L("x\r\n\r\n.\r\n"), L("x\n\n"), 8, false);
	/* Pipelined commands after the terminator are not consumed. */
	data_case(L("Hi\r\n.\r\nQUIT\r\n"), L("Hi\n"), 7, false);
	data_case(L(".\r\nRSET\r\n"), L(""), 3, false);
	data_case(L("Hi\r\n.\r\n.\r\n"), L("Hi\n"), 7, false);
	/* A message whose last line has no CRLF cannot end (the sender would
	 * have to add one): "x.\r\n" is not a terminator. */
	data_case(L("x\r\nx.\r\n"), L("x\nx.\n"), END, false);
}

static void test_unstuffing(void **state)
{
	(void)state;

	data_case(L("..\r\n.\r\n"), L(".\n"), 7, false);
	data_case(L("a\r\n..\r\n.\r\n"), L("a\n.\n"), 10, false);
	data_case(L("...\r\n.\r\n"), L("..\n"), 8, false);
	data_case(L("..x\r\n.\r\n"), L(".x\n"), 8, false);
	data_case(L("a\r\n...\r\nb\r\n.\r\n"), L("a\n..\nb\n"), 14, false);
	/* RFC 5321 §4.5.2: an unstuffed leading '.' is deleted too. */
	data_case(L(".x\r\n.\r\n"), L("x\n"), 7, false);
	/* Dots inside a line are data. */
	data_case(L("a.b\r\n.\r\n"), L("a.b\n"), 8, false);
	data_case(L("a..\r\n.\r\n"), L("a..\n"), 8, false);
	data_case(L("a\r\nb.\r\n.\r\n"), L("a\nb.\n"), 10, false);
	data_case(L(" .\r\n.\r\n"), L(" .\n"), 7, false);
	/* ". " is not the terminator. */
	data_case(L(". \r\n.\r\n"), L(" \n"), 7, false);
	/* ".." then the end. */
	data_case(L("..\r\n..\r\n.\r\n"), L(".\n.\n"), 11, false);
}

static void test_line_ends_and_binary(void **state)
{
	(void)state;

	/* NUL and 8-bit octets are data (8BITMIME, RFC 6152). */
	data_case(L("a\0b\r\n\xff\xfe\r\n.\r\n"), L("a\0b\n\xff\xfe\n"), 12, false);
	data_case(L("\0\r\n.\r\n"), L("\0\n"), 6, false);
	/* CRLF pairs in a row. */
	data_case(L("\r\n\r\n\r\n.\r\n"), L("\n\n\n"), 9, false);
	/* A long line. */
	char big[3000];
	char want[3000];
	memset(big, 'x', 2000);
	memcpy(big + 2000, "\r\n.\r\n", 5);
	memset(want, 'x', 2000);
	want[2000] = '\n';
	struct result r;
	run_chunked(big, 2005, 2005, UINT64_MAX, &r);
	assert_true(r.done);
	assert_int_equal(r.out_len, 2001);
	assert_memory_equal(r.out, want, 2001);
	run_chunked(big, 2005, 7, UINT64_MAX, &r);
	assert_true(r.done);
	assert_memory_equal(r.out, want, 2001);
}

static void test_smuggling(void **state)
{
	(void)state;

	/* None of these ends the data, and each sets bare_eol. */
	data_case(L("a\n.\n"), NULL, 0, END, true);
	data_case(L("a\r.\r"), NULL, 0, END, true);
	data_case(L("a\r\n.\n"), NULL, 0, END, true);
	data_case(L("a\n.\r\n"), NULL, 0, END, true);
	data_case(L("a\r\n.\rX"), NULL, 0, END, true);
	data_case(L("a\r.\r\n"), NULL, 0, END, true);
	data_case(L("a\n\r.\r\n"), NULL, 0, END, true);
	data_case(L("\n.\r\n"), NULL, 0, END, true);
	data_case(L(".\n"), NULL, 0, END, true);
	data_case(L(".\r.\r\n"), NULL, 0, END, true);

	/* ... and the real end is still found after them, so the session
	 * can answer 550 5.6.0 in step with the client. */
	data_case(L("a\n.\nb\r\n.\r\n"), NULL, 0, 10, true);
	data_case(L("a\r.\rb\r\n.\r\nQUIT\r\n"), NULL, 0, 10, true);
	data_case(L("x\r\n.\r\r\n.\r\n"), NULL, 0, 10, true);
	data_case(L("x\r\n.\rX\r\n.\r\n"), NULL, 0, 11, true);
	data_case(L("x\r\n.\n\r\n.\r\n"), NULL, 0, 10, true);
	data_case(L("\r\r\n.\r\n"), NULL, 0, 6, true);
	data_case(L("\n\r\n.\r\n"), NULL, 0, 6, true);
	/* Bare ends right before a would-be terminator. */
	data_case(L("a\n\r\n.\r\n"), NULL, 0, 7, true);
	data_case(L("a\r\r\n.\r\n"), NULL, 0, 7, true);
}

static void test_size_limit(void **state)
{
	(void)state;
	struct result r;
	const char *msg = "12345\r\n67890\r\n.\r\nNOOP\r\n";
	size_t len = strlen(msg);

	/* size counts CRLF as two octets (RFC 1870 §3): 7 + 7 = 14. */
	run_chunked(msg, len, len, 14, &r);
	assert_true(r.done);
	assert_false(r.big);
	assert_int_equal(r.size, 14);
	assert_int_equal(r.consumed, 17);
	check_all_feeds(msg, len, 14, &r);

	run_chunked(msg, len, len, 13, &r);
	assert_true(r.done);
	assert_true(r.big);
	assert_int_equal(r.consumed, 17); /* still found the end */
	assert_int_equal(r.size, 14);
	check_all_feeds(msg, len, 13, &r);

	/* Over the limit early: no more output, still scanning. */
	run_chunked(msg, len, 3, 2, &r);
	assert_true(r.big);
	assert_true(r.done);
	assert_true(r.out_len <= 2);
	assert_int_equal(r.consumed, 17);

	/* Stuffing dots do not count. */
	run_chunked("..\r\n.\r\n", 7, 7, 3, &r);
	assert_false(r.big);
	assert_int_equal(r.size, 3);
	/* Zero means nothing at all may come. */
	run_chunked(".\r\n", 3, 3, 0, &r);
	assert_false(r.big);
	assert_true(r.done);
	run_chunked("x\r\n.\r\n", 6, 6, 0, &r);
	assert_true(r.big);
}

static void test_in_place(void **state)
{
	(void)state;
	char buf[] = "..a\r\nb\r\n...\r\n.\r\nMAIL";
	struct smtp_data d;
	size_t consumed, produced;

	smtp_data_init(&d, UINT64_MAX);
	assert_true(smtp_data_feed(&d, buf, sizeof(buf) - 1, buf, &consumed, &produced));
	assert_int_equal(consumed, 16);
	assert_int_equal(produced, 8);
	assert_memory_equal(buf, ".a\nb\n..\n", 8);
	/* After the end, nothing more is consumed. */
	assert_true(smtp_data_feed(&d, "x", 1, buf, &consumed, &produced));
	assert_int_equal(consumed, 0);
	assert_int_equal(produced, 0);
}

/* The reference model: RFC 5321 §4.5.2 / §4.1.1.4, one octet at a time,
 * over the whole input at once. */
static void model(const char *in, size_t len, struct result *r)
{
	size_t i = 0;
	bool line_start = true;

	memset(r, 0, sizeof(*r));
	while (i < len) {
		if (line_start) {
			line_start = false;
			if (in[i] == '.') {
				if (i + 2 < len && in[i + 1] == '\r' && in[i + 2] == '\n') {
					r->done = true;
					i += 3;
					break;
				}
				if (i + 2 >= len && (i + 1 == len || in[i + 1] == '\r'))
					break; /* undecided at the end of input */
				i++;
				continue;
			}
		}
		char c = in[i];
		if (c == '\r') {
			if (i + 1 == len)
				break; /* undecided */
			if (in[i + 1] == '\n') {
				if (!r->bare)
					r->out[r->out_len++] = '\n';
				r->size += 2;
				i += 2;
				line_start = true;
				continue;
			}
			r->bare = true;
			r->size++;
			i++;
			continue;
		}
		if (c == '\n')
			r->bare = true;
		if (!r->bare)
			r->out[r->out_len++] = c;
		r->size++;
		i++;
	}
	/* Undecided octets at the end are consumed by the decoder too. */
	r->consumed = r->done ? i : len;
}

static void test_random_against_model(void **state)
{
	(void)state;
	static const char alphabet[] = {'\r', '\n', '.', 'a', '\0', '\r', '\n', '.'};
	char in[64];

	srand(5321);
	for (int iter = 0; iter < 20000; iter++) {
		size_t len = (size_t)(rand() % 24);
		struct result want, got;

		for (size_t i = 0; i < len; i++)
			in[i] = alphabet[rand() % (int)sizeof(alphabet)];
		/* Bias towards well-formed CRLF sequences too. */
		if (iter % 2 == 0) {
			for (size_t i = 0; i + 1 < len; i++) {
				if (in[i] == '\r')
					in[i + 1] = '\n';
				else if (in[i + 1] == '\n')
					in[i] = '\r';
			}
		}
		model(in, len, &want);
		run_chunked(in, len, len > 0 ? len : 1, UINT64_MAX, &got);
		if (!same(&want, &got)) {
			char hex[200] = "";
			for (size_t i = 0; i < len; i++)
				snprintf(hex + strlen(hex), sizeof(hex) - strlen(hex), "%02x ",
				         (unsigned char)in[i]);
			fail_msg("input %s: consumed %zu/%zu done %d/%d bare %d/%d size %llu/%llu",
			         hex, got.consumed, want.consumed, got.done, want.done, got.bare,
			         want.bare, (unsigned long long)got.size,
			         (unsigned long long)want.size);
		}
		run_chunked(in, len, (size_t)(rand() % 5) + 1, UINT64_MAX, &got);
		assert_true(same(&want, &got));
	}
}

/* BDAT: feed pieces, then finish. */
static void bdat_run(const char *const *chunks, size_t n, const size_t *lens, uint64_t max,
                     struct result *r)
{
	struct smtp_data d;

	memset(r, 0, sizeof(*r));
	smtp_bdat_init(&d, max);
	for (size_t i = 0; i < n; i++) {
		char buf[1024];
		size_t p = smtp_bdat_feed(&d, chunks[i], lens[i], buf);
		assert_true(p <= lens[i]);
		memcpy(r->out + r->out_len, buf, p);
		r->out_len += p;
		assert_false(d.done);
	}
	smtp_bdat_finish(&d);
	r->done = d.done;
	r->bare = d.bare_eol;
	r->big = d.too_big;
	r->size = d.size;
}

static void bdat_case(const char *in, size_t len, const char *want, size_t want_len, bool bare)
{
	struct result whole, r;
	const char *chunks[3];
	size_t lens[3];

	chunks[0] = in;
	lens[0] = len;
	bdat_run(chunks, 1, lens, UINT64_MAX, &whole);
	assert_true(whole.done);
	assert_int_equal(whole.bare, bare);
	if (!bare) {
		assert_int_equal(whole.out_len, want_len);
		assert_memory_equal(whole.out, want, want_len);
		assert_int_equal(whole.size, len);
	}
	/* Chunk boundaries anywhere, including empty chunks (BDAT 0). */
	for (size_t a = 0; a <= len; a++) {
		for (size_t b = a; b <= len; b++) {
			chunks[0] = in;
			lens[0] = a;
			chunks[1] = in + a;
			lens[1] = b - a;
			chunks[2] = in + b;
			lens[2] = len - b;
			bdat_run(chunks, 3, lens, UINT64_MAX, &r);
			r.consumed = whole.consumed;
			if (!same(&whole, &r))
				fail_msg("BDAT split %zu,%zu differs", a, b);
		}
	}
}

static void test_bdat(void **state)
{
	(void)state;

	bdat_case(L("Subject: x\r\n\r\nbody\r\n"), L("Subject: x\n\nbody\n"), false);
	/* No stuffing and no terminator in BDAT. */
	bdat_case(L("a\r\n.\r\n..\r\nb"), L("a\n.\n..\nb"), false);
	bdat_case(L(".\r\n"), L(".\n"), false);
	bdat_case(L(""), L(""), false);
	bdat_case(L("\0\xff\r\n"), L("\0\xff\n"), false);
	/* Same bare CR/LF policy as DATA. */
	bdat_case(L("a\nb\r\n"), NULL, 0, true);
	bdat_case(L("a\rb\r\n"), NULL, 0, true);
	bdat_case(L("a\r\r\n"), NULL, 0, true);
	bdat_case(L("a\r\n\n"), NULL, 0, true);
	/* A CR at the very end of the last chunk is bare. */
	bdat_case(L("a\r\nb\r"), NULL, 0, true);
	bdat_case(L("\r"), NULL, 0, true);

	/* Size limit. */
	struct result r;
	const char *chunks[2] = {"1234\r", "\n5678"};
	size_t lens[2] = {5, 5};
	bdat_run(chunks, 2, lens, 10, &r);
	assert_false(r.big);
	assert_int_equal(r.size, 10);
	assert_int_equal(r.out_len, 9);
	bdat_run(chunks, 2, lens, 9, &r);
	assert_true(r.big);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_end_of_data),          cmocka_unit_test(test_unstuffing),
	    cmocka_unit_test(test_line_ends_and_binary), cmocka_unit_test(test_smuggling),
	    cmocka_unit_test(test_size_limit),           cmocka_unit_test(test_in_place),
	    cmocka_unit_test(test_random_against_model), cmocka_unit_test(test_bdat),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
