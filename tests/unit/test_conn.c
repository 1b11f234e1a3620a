/* Unit tests for the time limits of src/net/conn.c (conn_set_line_timeout,
 * and conn_set_idle_timeout for output nobody reads): a real connection
 * over a socketpair in a real event loop, fed by a timer that writes the
 * peer's bytes at a set pace. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <event2/event.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "core/util.h"
#include "net/conn.h"

/* Generous against a slow machine or valgrind, yet far above the pace of
 * the trickle: an idle timer restarted by each byte would never fire. */
#define LINE_LIMIT_MS 400
#define PACE_MS       50
/* Nothing here may run longer than this. */
#define SAFETY_MS 8000

struct fixture {
	struct event_base *base;
	struct conn *conn;
	int peer; /* the client's end */
	struct event *feeder, *safety, *stopper;
	const char *script; /* bytes the client sends, one per PACE_MS */
	size_t script_len, sent;
	bool loop_script; /* start again at the end (a trickle without end) */
	uint64_t first_byte_ms, timeout_ms, closed_ms;
	enum conn_close_reason why;
	bool closed, timed_out, safety_hit;
	unsigned lines, too_long;
	size_t raw_octets;
	bool go_raw;         /* switch to raw mode at the first line */
	bool pause_on_first; /* pause after the first line (a job running) */
	char last[64];
};

static void on_line(void *ctx, char *line, size_t len)
{
	struct fixture *f = ctx;
	f->lines++;
	snprintf(f->last, sizeof(f->last), "%.*s", (int)len, line);
	if (f->go_raw && f->lines == 1)
		conn_set_raw(f->conn, true);
	if (f->pause_on_first && f->lines == 1)
		conn_pause(f->conn);
}

static size_t on_data(void *ctx, const char *buf, size_t len)
{
	(void)buf;
	((struct fixture *)ctx)->raw_octets += len;
	return len;
}

static void on_too_long(void *ctx)
{
	((struct fixture *)ctx)->too_long++;
}

static void on_timeout(void *ctx)
{
	struct fixture *f = ctx;
	f->timed_out = true;
	f->timeout_ms = now_ms();
}

static void on_closed(void *ctx, enum conn_close_reason why)
{
	struct fixture *f = ctx;
	f->closed = true;
	f->closed_ms = now_ms();
	f->why = why;
	f->conn = NULL;
	event_base_loopexit(f->base, NULL);
}

static const struct conn_handler handler = {
    .line = on_line,
    .data = on_data,
    .line_too_long = on_too_long,
    .timeout = on_timeout,
    .closed = on_closed,
};

static void feed_cb(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	struct fixture *f = arg;

	if (f->sent == f->script_len) {
		if (!f->loop_script)
			return;
		f->sent = 0;
	}
	if (f->first_byte_ms == 0)
		f->first_byte_ms = now_ms();
	assert_int_equal(write(f->peer, f->script + f->sent, 1), 1);
	f->sent++;
}

static void safety_cb(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	struct fixture *f = arg;
	f->safety_hit = true;
	event_base_loopexit(f->base, NULL);
}

static void stop_cb(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	event_base_loopexit(((struct fixture *)arg)->base, NULL);
}

static void start(struct fixture *f, const char *script, bool loop_script, size_t max_line)
{
	int sv[2];
	struct sockaddr_un peer = {.sun_family = AF_UNIX};

	memset(f, 0, sizeof(*f));
	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
	f->peer = sv[1];
	/* As the server's own sockets are (accept4 with SOCK_NONBLOCK). */
	assert_int_equal(evutil_make_socket_nonblocking(sv[0]), 0);
	f->base = event_base_new();
	assert_non_null(f->base);
	f->conn = conn_new(f->base, sv[0], (struct sockaddr *)&peer, sizeof(peer));
	conn_set_handler(f->conn, &handler, f, max_line);
	conn_set_line_timeout(f->conn, LINE_LIMIT_MS);
	conn_start(f->conn);
	f->script = script;
	f->script_len = strlen(script);
	f->loop_script = loop_script;
	struct timeval pace = {0, PACE_MS * 1000};
	f->feeder = event_new(f->base, -1, EV_PERSIST, feed_cb, f);
	event_add(f->feeder, &pace);
	struct timeval safety = {SAFETY_MS / 1000, (SAFETY_MS % 1000) * 1000};
	f->safety = evtimer_new(f->base, safety_cb, f);
	evtimer_add(f->safety, &safety);
	f->stopper = evtimer_new(f->base, stop_cb, f);
}

/* Run the loop for ms (or until the connection is closed). */
static void run_for(struct fixture *f, uint64_t ms)
{
	struct timeval tv = {(time_t)(ms / 1000), (suseconds_t)((ms % 1000) * 1000)};
	evtimer_add(f->stopper, &tv);
	event_base_dispatch(f->base);
	evtimer_del(f->stopper);
}

static void finish(struct fixture *f)
{
	event_free(f->feeder);
	event_free(f->safety);
	event_free(f->stopper);
	if (f->conn != NULL) {
		conn_abort(f->conn);
		/* The free is scheduled on the loop. */
		while (!f->closed)
			assert_int_equal(event_base_loop(f->base, EVLOOP_ONCE), 0);
	}
	close(f->peer);
	event_base_free(f->base);
}

/* Bytes of a line that never ends, one every PACE_MS: the limit counts from
 * the first of them. */
static void test_trickled_line_is_cut_off(void **state)
{
	(void)state;
	struct fixture f;

	start(&f, "NOOP NOOP NOOP ", true, 512);
	run_for(&f, SAFETY_MS);
	assert_false(f.safety_hit);
	assert_true(f.timed_out);
	assert_true(f.closed);
	assert_int_equal(f.why, CONN_CLOSE_TIMEOUT);
	assert_int_equal(f.lines, 0);
	uint64_t took = f.timeout_ms - f.first_byte_ms;
	assert_true(took >= LINE_LIMIT_MS - PACE_MS);
	assert_true(took < 3000);
	finish(&f);
}

/* Whole lines, each sent slowly but within the limit, for several times
 * the limit in all: every line gets its own time. */
static void test_each_line_gets_its_own_time(void **state)
{
	(void)state;
	struct fixture f;

	/* 3 bytes per line: 150 ms from its first byte to its LF. */
	start(&f, "ab\ncd\nef\ngh\nij\nkl\nmn\nop\n", false, 512);
	run_for(&f, 24 * PACE_MS + 3 * LINE_LIMIT_MS);
	assert_false(f.safety_hit);
	assert_false(f.timed_out);
	assert_false(f.closed);
	assert_int_equal(f.lines, 8);
	assert_string_equal(f.last, "op");
	finish(&f);
}

/* An over-long line is being discarded: still the same line, still timed. */
static void test_discarded_line_is_still_timed(void **state)
{
	(void)state;
	struct fixture f;

	start(&f, "0123456789abcdef", true, 4); /* too long after 200 ms */
	run_for(&f, SAFETY_MS);
	assert_false(f.safety_hit);
	assert_true(f.too_long >= 1);
	assert_true(f.timed_out);
	assert_int_equal(f.why, CONN_CLOSE_TIMEOUT);
	assert_true(f.timeout_ms - f.first_byte_ms >= LINE_LIMIT_MS - PACE_MS);
	finish(&f);
}

/* Raw mode (a message being received) has no line limit. */
static void test_raw_mode_is_not_timed(void **state)
{
	(void)state;
	struct fixture f;

	start(&f, "DATA\nmessage octets without end ", false, 512);
	f.go_raw = true;
	run_for(&f, 33 * PACE_MS + 2 * LINE_LIMIT_MS);
	assert_false(f.safety_hit);
	assert_false(f.timed_out);
	assert_false(f.closed);
	assert_int_equal(f.lines, 1);
	assert_int_equal(f.raw_octets, strlen("message octets without end "));
	finish(&f);
}

/* Whole lines waiting while the protocol is busy are the server's delay,
 * not the client's: they are not timed, and come out on resume. */
static void test_lines_waiting_for_the_protocol_are_not_timed(void **state)
{
	(void)state;
	struct fixture f;

	start(&f, "one\ntwo\n", false, 512);
	f.pause_on_first = true;
	run_for(&f, 8 * PACE_MS + 2 * LINE_LIMIT_MS);
	assert_false(f.timed_out);
	assert_false(f.closed);
	assert_int_equal(f.lines, 1);
	conn_resume(f.conn);
	run_for(&f, 2 * PACE_MS);
	assert_int_equal(f.lines, 2);
	assert_string_equal(f.last, "two");
	assert_false(f.timed_out);
	finish(&f);
}

/* A peer that keeps talking but never reads what it is sent (a POP3 client
 * that asked for a large RETR): once the output stalls, the idle time limit
 * ends the connection all the same, whatever the peer sends meanwhile (the
 * connection reads no commands while that much output waits).
 * (pop3_idle_timeout is this limit for POP3, 10 minutes at least.) */
#define IDLE_LIMIT_MS 600
static void test_output_nobody_reads_times_out(void **state)
{
	(void)state;
	struct fixture f;
	static char chunk[64 * 1024];

	uint64_t t0 = now_ms(); /* before the loop's timers are armed */
	start(&f, "x\r\n", true, 512);
	conn_set_idle_timeout(f.conn, IDLE_LIMIT_MS);
	memset(chunk, 'y', sizeof(chunk));
	for (int i = 0; i < 64; i++) /* 4 MiB, far more than the socket holds */
		conn_write(f.conn, chunk, sizeof(chunk));
	run_for(&f, IDLE_LIMIT_MS + 2000);
	assert_false(f.safety_hit);
	assert_true(f.timed_out);
	assert_true(f.timeout_ms - t0 >= IDLE_LIMIT_MS);
	assert_true(f.timeout_ms - t0 < IDLE_LIMIT_MS + 1500);
	/* What follows is the close, whose flush has a deadline of its own. */
	assert_true(f.closed || conn_closing(f.conn));
	finish(&f);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_trickled_line_is_cut_off),
	    cmocka_unit_test(test_each_line_gets_its_own_time),
	    cmocka_unit_test(test_discarded_line_is_still_timed),
	    cmocka_unit_test(test_raw_mode_is_not_timed),
	    cmocka_unit_test(test_lines_waiting_for_the_protocol_are_not_timed),
	    cmocka_unit_test(test_output_nobody_reads_times_out),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
