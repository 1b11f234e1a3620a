/* RETR/TOP byte transformation: fixed cases, each fed in one chunk, one byte
 * at a time and in random chunk sizes, plus random inputs compared against a
 * byte-at-a-time reference model. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "pop3/stuff.h"

struct buf {
	char *data;
	size_t len, cap;
};

static void buf_add(struct buf *b, const char *p, size_t n)
{
	if (b->len + n + 1 > b->cap) {
		b->cap = (b->len + n + 1) * 2;
		b->data = realloc(b->data, b->cap);
		assert_non_null(b->data);
	}
	memcpy(b->data + b->len, p, n);
	b->len += n;
}

/* chunk == 0: random chunk sizes from seed; else fixed chunk size
 * (SIZE_MAX: the whole input at once). */
static struct buf run(const char *in, size_t len, int64_t top, size_t chunk, unsigned seed)
{
	struct pop3_stuff st;
	struct buf out = {0};
	size_t pos = 0;

	srand(seed);
	pop3_stuff_init(&st, top);
	buf_add(&out, "", 0);
	while (pos < len && !st.done) {
		size_t n = chunk != 0 ? chunk : (size_t)(rand() % 17) + 1;
		if (n > len - pos)
			n = len - pos;
		char *tmp = malloc(2 * n + 1);
		size_t consumed = 12345;
		size_t w = pop3_stuff_chunk(&st, in + pos, n, tmp, &consumed);
		assert_true(w <= 2 * n);
		assert_true(consumed <= n);
		if (consumed < n)
			assert_true(st.done);
		buf_add(&out, tmp, w);
		free(tmp);
		pos += consumed;
	}
	char end[POP3_STUFF_END_MAX];
	size_t e = pop3_stuff_end(&st, end);
	assert_true(e <= POP3_STUFF_END_MAX);
	buf_add(&out, end, e);
	return out;
}

static void check_all_chunkings(const char *in, size_t len, int64_t top, const char *want,
                                size_t want_len)
{
	struct buf whole = run(in, len, top, SIZE_MAX, 0);
	if (whole.len != want_len || memcmp(whole.data, want, want_len) != 0) {
		print_error("got %zu bytes, want %zu\n", whole.len, want_len);
		fail();
	}
	struct buf bytes = run(in, len, top, 1, 0);
	assert_int_equal(bytes.len, want_len);
	assert_memory_equal(bytes.data, want, want_len);
	for (unsigned seed = 1; seed <= 20; seed++) {
		struct buf r = run(in, len, top, 0, seed);
		assert_int_equal(r.len, want_len);
		assert_memory_equal(r.data, want, want_len);
		free(r.data);
	}
	free(whole.data);
	free(bytes.data);
}

#define CHECK(in, top, want) check_all_chunkings(in, sizeof(in) - 1, top, want, sizeof(want) - 1)

static void test_lf_to_crlf(void **state)
{
	(void)state;
	CHECK("a\nb\n", -1, "a\r\nb\r\n.\r\n");
	CHECK("\n\n", -1, "\r\n\r\n.\r\n");
}

static void test_crlf_untouched(void **state)
{
	(void)state;
	CHECK("a\r\nb\r\n", -1, "a\r\nb\r\n.\r\n");
	CHECK("a\r\nb\nc\r\n", -1, "a\r\nb\r\nc\r\n.\r\n");
}

static void test_bare_cr_kept(void **state)
{
	(void)state;
	CHECK("a\rb\r\n", -1, "a\rb\r\n.\r\n");
	CHECK("\r\r\n", -1, "\r\r\n.\r\n");
	CHECK("a\n\r", -1, "a\r\n\r\r\n.\r\n");
	CHECK("a\r", -1, "a\r\r\n.\r\n");
	CHECK("\r.\n", -1, "\r.\r\n.\r\n");
}

static void test_dot_stuffing(void **state)
{
	(void)state;
	CHECK(".a\n..b\nc.\n", -1, "..a\r\n...b\r\nc.\r\n.\r\n");
	CHECK(".\n", -1, "..\r\n.\r\n");
	CHECK(".", -1, "..\r\n.\r\n");
	CHECK("x\r\n.\r\n", -1, "x\r\n..\r\n.\r\n");
	CHECK("x\n.", -1, "x\r\n..\r\n.\r\n");
}

static void test_no_final_newline(void **state)
{
	(void)state;
	CHECK("abc", -1, "abc\r\n.\r\n");
	CHECK("a\nbc", -1, "a\r\nbc\r\n.\r\n");
}

static void test_empty(void **state)
{
	(void)state;
	CHECK("", -1, ".\r\n");
	CHECK("", 0, ".\r\n");
	CHECK("", 5, ".\r\n");
}

static void test_nul_and_8bit(void **state)
{
	(void)state;
	CHECK("a\0b\xff\n\x80.\n", -1, "a\0b\xff\r\n\x80.\r\n.\r\n");
	CHECK("\0\n.\0\n", -1, "\0\r\n..\0\r\n.\r\n");
}

static void test_long_lines(void **state)
{
	(void)state;
	size_t n = 200000;
	char *in = malloc(n + 10);
	char *want = malloc(n + 20);
	memset(in, 'x', n);
	memcpy(in + n, "\n.y", 3);
	memset(want, 'x', n);
	memcpy(want + n, "\r\n..y\r\n.\r\n", 10);
	check_all_chunkings(in, n + 3, -1, want, n + 10);
	free(in);
	free(want);
}

static void test_top(void **state)
{
	(void)state;
	static const char msg[] = "H: 1\nH: 2\n\nb1\n.b2\nb3\n";
	CHECK(msg, 0, "H: 1\r\nH: 2\r\n\r\n.\r\n");
	CHECK(msg, 1, "H: 1\r\nH: 2\r\n\r\nb1\r\n.\r\n");
	CHECK(msg, 2, "H: 1\r\nH: 2\r\n\r\nb1\r\n..b2\r\n.\r\n");
	CHECK(msg, 3, "H: 1\r\nH: 2\r\n\r\nb1\r\n..b2\r\nb3\r\n.\r\n");
	CHECK(msg, 100, "H: 1\r\nH: 2\r\n\r\nb1\r\n..b2\r\nb3\r\n.\r\n");
	CHECK(msg, -1, "H: 1\r\nH: 2\r\n\r\nb1\r\n..b2\r\nb3\r\n.\r\n");

	/* CRLF message; blank body lines count as lines. */
	CHECK("H: 1\r\n\r\n\r\nb2\r\nb3\r\n", 2, "H: 1\r\n\r\n\r\nb2\r\n.\r\n");
	/* Body without final newline. */
	CHECK("H: 1\n\nb1", 5, "H: 1\r\n\r\nb1\r\n.\r\n");
	CHECK("H: 1\n\nb1", 0, "H: 1\r\n\r\n.\r\n");
	/* Header ends at the first blank line only. */
	CHECK("\nb1\nb2\n", 1, "\r\nb1\r\n.\r\n");
}

static void test_top_no_blank_line(void **state)
{
	(void)state;
	CHECK("H: 1\nH: 2\n", 0, "H: 1\r\nH: 2\r\n.\r\n");
	CHECK("H: 1\nH: 2", 0, "H: 1\r\nH: 2\r\n.\r\n");
	/* A line that is a lone CR followed by text is not blank. */
	CHECK("H\n\rx\n\nb\n", 0, "H\r\n\rx\r\n\r\n.\r\n");
	/* "\r\r\n" is not blank either. */
	CHECK("H\n\r\r\nx\n\nb\n", 0, "H\r\n\r\r\nx\r\n\r\n.\r\n");
}

static void test_top_stops_consuming(void **state)
{
	(void)state;
	static const char msg[] = "H: 1\n\nb1\nb2\n";
	struct pop3_stuff st;
	char out[64];
	size_t consumed;

	pop3_stuff_init(&st, 1);
	size_t w = pop3_stuff_chunk(&st, msg, sizeof(msg) - 1, out, &consumed);
	assert_true(st.done);
	assert_int_equal(consumed, strlen("H: 1\n\nb1\n"));
	assert_int_equal(w, strlen("H: 1\r\n\r\nb1\r\n"));
	w = pop3_stuff_chunk(&st, msg + consumed, sizeof(msg) - 1 - consumed, out, &consumed);
	assert_int_equal(w, 0);
	assert_int_equal(consumed, 0);
}

/* Byte-at-a-time model of the contract, written for clarity, not speed. */
static struct buf reference(const char *in, size_t len, int64_t top)
{
	struct buf out = {0};
	size_t line_len = 0;
	char first = 0, prev = 0;
	int in_body = 0;
	int64_t left = top;

	buf_add(&out, "", 0);
	for (size_t i = 0; i < len; i++) {
		char c = in[i];
		if (c == '\n') {
			if (line_len == 0 || prev != '\r')
				buf_add(&out, "\r", 1);
			buf_add(&out, "\n", 1);
			int blank = line_len == 0 || (line_len == 1 && first == '\r');
			line_len = 0;
			prev = c;
			if (!in_body) {
				if (blank) {
					in_body = 1;
					if (top >= 0 && left == 0)
						break;
				}
			} else if (top >= 0 && --left == 0) {
				break;
			}
			continue;
		}
		if (line_len == 0) {
			first = c;
			if (c == '.')
				buf_add(&out, ".", 1);
		}
		buf_add(&out, &c, 1);
		line_len++;
		prev = c;
	}
	if (line_len > 0)
		buf_add(&out, "\r\n", 2);
	buf_add(&out, ".\r\n", 3);
	return out;
}

static void test_random_against_reference(void **state)
{
	(void)state;
	static const char alphabet[] = {'\r', '\n', '.', 'a', '\0', '\xff', '\n', '\r'};
	char in[300];

	for (unsigned iter = 0; iter < 3000; iter++) {
		srand(iter * 7919u + 1);
		size_t len = (size_t)(rand() % (int)sizeof(in));
		for (size_t i = 0; i < len; i++)
			in[i] = alphabet[rand() % (int)sizeof(alphabet)];
		int64_t top = (int64_t)(rand() % 6) - 1;
		struct buf want = reference(in, len, top);
		check_all_chunkings(in, len, top, want.data, want.len);
		free(want.data);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_lf_to_crlf),
	    cmocka_unit_test(test_crlf_untouched),
	    cmocka_unit_test(test_bare_cr_kept),
	    cmocka_unit_test(test_dot_stuffing),
	    cmocka_unit_test(test_no_final_newline),
	    cmocka_unit_test(test_empty),
	    cmocka_unit_test(test_nul_and_8bit),
	    cmocka_unit_test(test_long_lines),
	    cmocka_unit_test(test_top),
	    cmocka_unit_test(test_top_no_blank_line),
	    cmocka_unit_test(test_top_stops_consuming),
	    cmocka_unit_test(test_random_against_reference),
	};
	return cmocka_run_group_tests_name("stuff", tests, NULL, NULL);
}
