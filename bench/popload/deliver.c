/* popload: the LMTP (RFC 2033) and SMTP (RFC 5321) delivery client, with
 * pipelining (RFC 2920), and the test message it sends. */
#include "popload.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

long dlv_started;

static char *msg_wire; /* dot-stuffed message + ".\r\n" */
static size_t msg_wire_len, msg_id_off;

static bool dlv_may_start(void)
{
	if (stopping || now_s() >= t_soft)
		return false;
	if (opt.mode == MODE_MIXED)
		return true;
	return st_dlv.started < opt.count;
}

/* Send the next message's envelope, pipelined (RFC 2920): MAIL, the RCPTs
 * and DATA; the replies are counted in dlv_reply. */
void dlv_next(struct conn *c)
{
	if (!dlv_may_start()) {
		c->step = D_QUIT;
		send_fmt(c, "QUIT\r\n");
		return;
	}
	if (opt.mode == MODE_MIXED) {
		/* Pacing: the n-th message is due at n / rate seconds. */
		double due = t_begin + (double)dlv_started / opt.lmtp_rate;
		if (now_s() < due) {
			c->step = D_WAIT;
			return;
		}
	}
	long n = opt.mode == MODE_MIXED ? dlv_started++ : st_dlv.started;
	st_dlv.started++;
	c->msg_no = n;
	c->t_msg = now_s();
	send_fmt(c, "MAIL FROM:<sender@example.org> BODY=8BITMIME\r\n");
	for (int r = 0; r < opt.rcpts; r++) {
		size_t u = ((size_t)n * (size_t)opt.rcpts + (size_t)r) % nusers;
		send_fmt(c, "RCPT TO:<%s>\r\n", users[u].address);
	}
	send_fmt(c, "DATA\r\n");
	c->step = D_ENVELOPE;
	c->replies_wanted = opt.rcpts + 2;
	c->replies_ok = 0;
}

static void dlv_send_message(struct conn *c)
{
	char id[16];
	snprintf(id, sizeof(id), "%011ld", c->msg_no % 100000000000L);
	memcpy(msg_wire + msg_id_off, id, 11);
	send_bytes(c, msg_wire, msg_wire_len);
	c->step = D_DATA;
	c->replies_wanted = opt.mode == MODE_SMTP ? 1 : opt.rcpts;
	c->replies_ok = 0;
}

void dlv_reply(struct conn *c, const char *line, size_t len)
{
	if (len < 4) {
		conn_close(c, false);
		return;
	}
	if (line[3] == '-')
		return; /* continuation of a multi-line reply */
	int code = (line[0] - '0') * 100 + (line[1] - '0') * 10 + (line[2] - '0');
	switch (c->step) {
	case D_GREETING:
		if (code != 220)
			goto bad;
		c->step = D_HELLO;
		send_fmt(c, "%s bench.test\r\n", opt.mode == MODE_SMTP ? "EHLO" : "LHLO");
		return;
	case D_HELLO:
		if (code != 250)
			goto bad;
		dlv_next(c);
		return;
	case D_ENVELOPE: {
		int idx = opt.rcpts + 2 - c->replies_wanted; /* 0 MAIL, 1..r RCPT, r+1 DATA */
		bool want354 = idx == opt.rcpts + 1;
		if ((want354 && code != 354) || (!want354 && code != 250))
			goto bad;
		if (--c->replies_wanted == 0)
			dlv_send_message(c);
		return;
	}
	case D_DATA:
		if (code != 250)
			goto bad;
		if (--c->replies_wanted == 0) {
			double t = now_s();
			st_dlv.done++;
			st_dlv.messages++;
			sample(&st_dlv, (t - c->t_msg) * 1000);
			dlv_next(c);
		}
		return;
	case D_QUIT:
		conn_close(c, true);
		return;
	default:
		goto bad;
	}
bad:
	if (st_dlv.errors < 5 || opt.verbose)
		fprintf(stderr, "popload: delivery step %d: %.*s\n", c->step,
		        (int)(len > 200 ? 200 : len), line);
	{
		int slot = c->slot;
		conn_close(c, false);
		if (st_dlv.errors > 100 + st_dlv.done / 10) {
			fprintf(stderr, "popload: too many delivery errors, stopping\n");
			stopping = true;
		}
		if (dlv_may_start())
			dlv_start_conn(slot);
	}
}

void dlv_start_conn(int slot)
{
	bool lmtp_port = opt.mode == MODE_MIXED;
	struct conn *c = conn_new(ROLE_DELIVER, slot, lmtp_port ? &target_lmtp : &target,
	                          lmtp_port ? target_lmtp_len : target_len, false);
	if (c != NULL)
		c->step = D_GREETING;
}

/* Build the message: realistic headers, a body of text with lines that
 * start with '.', 8-bit (UTF-8) lines, about `size` octets with CRLF line
 * ends, then dot-stuffed for the wire with the final ".\r\n". */
void build_message(long size)
{
	static const char *const words[] = {
	    "the",    "quarterly", "report", "shows", "that", "delivery", "times", "improved",
	    "Grüße",  "naïve",     "café",   "über",  "mail", "server",   "pop3",  "fetch",
	    "résumé", "data",      "at",     "noon",  "and",  "again",    "on",    "Friday",
	};
	size_t cap = (size_t)size + 4096;
	char *msg = xcalloc(1, cap);
	int n = snprintf(msg, cap,
	                 "Return-Path: <sender@example.org>\r\n"
	                 "From: Sender Example <sender@example.org>\r\n"
	                 "To: Bench Recipient <rcpt@bench.test>\r\n"
	                 "Subject: =?UTF-8?Q?Quarterly_r=C3=A9sum=C3=A9?= and load figures\r\n"
	                 "Date: Tue, 03 Mar 2026 10:00:00 +0000\r\n"
	                 "Message-ID: <00000000000.popload@example.org>\r\n"
	                 "MIME-Version: 1.0\r\n"
	                 "Content-Type: text/plain; charset=utf-8\r\n"
	                 "Content-Transfer-Encoding: 8bit\r\n"
	                 "\r\n");
	size_t len = (size_t)n;
	unsigned seed = 12345;
	int lineno = 0;
	while (len + 100 < (size_t)size) {
		size_t start = len;
		if (lineno % 7 == 3)
			msg[len++] = '.'; /* exercises dot-stuffing */
		while (len - start < 70) {
			seed = seed * 1103515245u + 12345u;
			const char *w = words[(seed >> 16) % (sizeof(words) / sizeof(words[0]))];
			size_t wl = strlen(w);
			memcpy(msg + len, w, wl);
			len += wl;
			msg[len++] = ' ';
		}
		msg[len++] = '\r';
		msg[len++] = '\n';
		lineno++;
	}
	while (len + 2 < (size_t)size)
		msg[len++] = 'x';
	msg[len++] = '\r';
	msg[len++] = '\n';

	const char *idp = strstr(msg, "<00000000000.");
	size_t id_off = (size_t)(idp + 1 - msg);

	/* Dot-stuff (RFC 5321 §4.5.2). Headers have no leading dots, so the
	 * Message-ID offset is the same on the wire. */
	msg_wire = xcalloc(1, 2 * len + 8);
	size_t w = 0;
	bool bol = true;
	for (size_t i = 0; i < len; i++) {
		if (bol && msg[i] == '.')
			msg_wire[w++] = '.';
		msg_wire[w++] = msg[i];
		bol = msg[i] == '\n';
	}
	memcpy(msg_wire + w, ".\r\n", 3);
	msg_wire_len = w + 3;
	msg_id_off = id_off;
	free(msg);
}
