/* Unit tests for src/pop3/retr.c: a message file into RETR/TOP output, read
 * or mapped, and a file shortened in the middle. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <event2/buffer.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "pop3/retr.h"

static char path[] = "/tmp/pillar-test-retr-XXXXXX";

/* A message of about `size` octets: lines of varying length, some starting
 * with a dot, LF line ends. */
static char *message(size_t size)
{
	char *m = malloc(size);
	size_t i = 0, line = 0;

	assert_non_null(m);
	while (i < size) {
		size_t len = 1 + (line * 37) % 90;
		for (size_t k = 0; k < len && i < size; k++)
			m[i++] = k == 0 && line % 9 == 0 ? '.' : (char)('a' + (line + k) % 26);
		if (i < size)
			m[i++] = '\n';
		line++;
	}
	return m;
}

static int open_with(const char *data, size_t len)
{
	int fd = mkstemp(path);

	assert_true(fd >= 0);
	assert_int_equal(write(fd, data, len), (ssize_t)len);
	return fd;
}

/* What one pop3_stuff_chunk over the whole message, plus the end, gives. */
static size_t expected(const char *data, size_t len, int64_t top, char **out)
{
	struct pop3_stuff st;
	size_t used;

	*out = malloc(2 * len + POP3_STUFF_END_MAX);
	pop3_stuff_init(&st, top);
	size_t n = pop3_stuff_chunk(&st, data, len, *out, &used);
	return n + pop3_stuff_end(&st, *out + n);
}

static void check_whole(size_t size, int64_t top)
{
	char *data = message(size), *want;
	size_t want_len = expected(data, size, top, &want);
	int fd = open_with(data, size);
	struct evbuffer *out = evbuffer_new();
	struct pop3_retr r;
	enum pop3_retr_step step;
	size_t added, total = 0;
	const char *error;
	int steps = 0;

	pop3_retr_start(&r, fd, top);
	assert_int_equal(r.map != NULL, size >= POP3_RETR_MAP_MIN);
	do {
		step = pop3_retr_step(&r, out, &added, &error);
		assert_int_not_equal(step, POP3_RETR_FAILED);
		total += added;
		steps++;
	} while (step == POP3_RETR_MORE);
	pop3_retr_end(&r);
	assert_int_equal(r.fd, -1);
	pop3_retr_end(&r); /* again: nothing */
	assert_int_equal(total, evbuffer_get_length(out));
	assert_int_equal(evbuffer_get_length(out), want_len);
	assert_memory_equal(evbuffer_pullup(out, -1), want, want_len);
	if (top < 0)
		assert_true(steps >= (int)(size / POP3_RETR_STEP));
	evbuffer_free(out);
	unlink(path);
	strcpy(path + strlen(path) - 6, "XXXXXX");
	free(data);
	free(want);
}

static void test_read_and_mapped(void **state)
{
	(void)state;
	check_whole(0, -1);
	check_whole(1, -1);
	check_whole(5000, -1);
	check_whole(POP3_RETR_MAP_MIN - 1, -1);
	check_whole(POP3_RETR_MAP_MIN, -1);
	check_whole(3 * POP3_RETR_STEP + 17, -1);
	check_whole(3 * POP3_RETR_STEP + 17, 0);
	check_whole(3 * POP3_RETR_STEP + 17, 100);
	check_whole(1000, 3);
}

/* The file is cut after the start: the step that reaches the missing part
 * fails, mapped (SIGBUS, caught) or read (an early end of file). */
static void check_shortened(size_t size)
{
	char *data = message(size);
	int fd = open_with(data, size);
	struct evbuffer *out = evbuffer_new();
	struct pop3_retr r;
	enum pop3_retr_step step;
	size_t added;
	const char *error = NULL;

	pop3_retr_start(&r, fd, -1);
	assert_int_equal(ftruncate(fd, 100), 0);
	do
		step = pop3_retr_step(&r, out, &added, &error);
	while (step == POP3_RETR_MORE);
	assert_int_equal(step, POP3_RETR_FAILED);
	assert_non_null(error);
	assert_non_null(strstr(error, "shortened"));
	pop3_retr_end(&r);
	evbuffer_free(out);
	unlink(path);
	strcpy(path + strlen(path) - 6, "XXXXXX");
	free(data);
}

static void test_shortened(void **state)
{
	(void)state;
	check_shortened(POP3_RETR_MAP_MIN - 1);
	check_shortened(4 * POP3_RETR_STEP);
	/* The guard is per step: one more after a caught fault works too. */
	check_shortened(4 * POP3_RETR_STEP);
	check_whole(4 * POP3_RETR_STEP, -1);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_read_and_mapped),
	    cmocka_unit_test(test_shortened),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
