/* popload: the POP3 client (RFC 1939): the session steps of every POP3
 * mode, and the scanning of multi-line replies. */
#include "popload.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

long idle_ready;
bool idle_release;
bool idle_quit_sent;
double ph_login, ph_stat, ph_list, ph_uidl;
long ph_listed, ph_count;

static const struct user *slot_user(int slot)
{
	return &users[(size_t)slot % nusers];
}

bool pop3_may_start(void)
{
	return !stopping && st.started < opt.count && now_s() < t_soft;
}

/* The POP3 session on c ended (QUIT answered and the server closed, or an
 * error). Start the slot's next session when allowed. */
void pop3_session_end(struct conn *c, bool ok)
{
	int slot = c->slot;
	conn_close(c, ok);
	if (opt.mode == MODE_IDLE || opt.mode == MODE_STAT100K)
		return;
	if (!ok && st.errors > 100 + st.done / 10) {
		fprintf(stderr, "popload: too many errors, stopping\n");
		stopping = true;
	}
	if (pop3_may_start())
		pop3_start_session(slot);
}

void pop3_start_session(int slot)
{
	st.started++;
	struct conn *c = conn_new(ROLE_POP3, slot, &target, target_len, opt.tls);
	if (c == NULL)
		return;
	c->step = P_GREETING;
	c->user = slot_user(slot);
}

/* Begin a multi-line reply body after its +OK line. */
static void body_begin(struct conn *c, bool lines)
{
	c->in_body = true;
	c->body_lines = lines;
	c->body_state = 1;
	c->body_bytes = 0;
	c->body_stuffed = 0;
}

void pop3_quit(struct conn *c)
{
	c->step = P_QUIT;
	send_fmt(c, "QUIT\r\n");
}

static void retr_next(struct conn *c)
{
	if (c->next_msg > c->nsizes || stopping || now_s() >= t_hard) {
		pop3_quit(c);
		return;
	}
	c->step = P_RETR;
	send_fmt(c, "RETR %zu\r\n", c->next_msg);
}

static void mixed_next(struct conn *c)
{
	if (c->next_msg > c->nmsgs || now_s() >= t_hard) {
		pop3_quit(c);
		return;
	}
	c->step = P_RETR;
	send_fmt(c, "RETR %zu\r\n", c->next_msg);
}

/* After a successful login: the mode's commands. */
static void pop3_after_login(struct conn *c)
{
	switch (opt.mode) {
	case MODE_LOGIN:
	case MODE_STAT100K:
		c->step = P_STAT;
		send_fmt(c, "STAT\r\n");
		break;
	case MODE_RETR:
		c->step = P_LIST;
		c->nsizes = 0;
		c->nlisted = 0;
		send_fmt(c, "LIST\r\n");
		break;
	case MODE_MIXED:
		c->step = P_UIDL;
		c->nlisted = 0;
		send_fmt(c, "UIDL\r\n");
		break;
	case MODE_IDLE:
		c->step = P_IDLE;
		idle_ready++;
		break;
	default:
		die("bad mode (bug)");
	}
}

/* One line of a LIST or UIDL body (dot-unstuffed, without CRLF). */
static void pop3_body_line(struct conn *c, const char *line, size_t len)
{
	c->nlisted++;
	if (c->step != P_LIST || opt.mode != MODE_RETR)
		return;
	/* "n size" */
	const char *sp = memchr(line, ' ', len);
	if (sp == NULL)
		return;
	uint64_t v = 0;
	for (const char *p = sp + 1; p < line + len && *p >= '0' && *p <= '9'; p++)
		v = v * 10 + (uint64_t)(*p - '0');
	if (c->nsizes == c->sizes_cap) {
		if (c->sizes_cap >= MSGS_MAX)
			return;
		c->sizes_cap = c->sizes_cap ? c->sizes_cap * 2 : 1024;
		c->sizes = realloc(c->sizes, c->sizes_cap * sizeof(*c->sizes));
		if (c->sizes == NULL)
			die("out of memory");
	}
	c->sizes[c->nsizes++] = v;
}

/* A multi-line reply ended. */
void pop3_body_done(struct conn *c)
{
	double t = now_s();
	switch (c->step) {
	case P_LIST:
		if (opt.mode == MODE_STAT100K) {
			ph_list = (t - c->t_phase) * 1000;
			ph_listed = (long)c->nlisted;
			c->t_phase = t;
			c->step = P_UIDL;
			c->nlisted = 0;
			send_fmt(c, "UIDL\r\n");
			return;
		}
		c->next_msg = 1;
		retr_next(c);
		return;
	case P_UIDL:
		if (opt.mode == MODE_STAT100K) {
			ph_uidl = (t - c->t_phase) * 1000;
			if ((long)c->nlisted != ph_listed)
				st.mismatch++;
			pop3_quit(c);
			return;
		}
		c->nmsgs = c->nlisted;
		c->next_msg = 1;
		mixed_next(c);
		return;
	case P_RETR: {
		/* Body octets as stored: what arrived, less the terminating
		 * ".\r\n" and the dots added by stuffing. */
		uint64_t octets = c->body_bytes - 3 - c->body_stuffed;
		st.messages++;
		st.octets += octets;
		if (opt.mode == MODE_RETR) {
			if (c->next_msg <= c->nsizes && c->sizes[c->next_msg - 1] != octets)
				st.mismatch++;
			c->next_msg++;
			retr_next(c);
		} else {
			c->step = P_DELE;
			send_fmt(c, "DELE %zu\r\n", c->next_msg);
		}
		return;
	}
	default:
		die("multi-line reply in step %d (bug)", c->step);
	}
}

/* One single-line POP3 reply. */
void pop3_reply(struct conn *c, const char *line, size_t len)
{
	bool ok = len >= 3 && memcmp(line, "+OK", 3) == 0;
	double t = now_s();

	if (!ok && c->step != P_EOF) {
		if (opt.verbose || st.errors < 5)
			fprintf(stderr, "popload: step %d user %s: %.*s\n", c->step,
			        c->user ? c->user->address : "-", (int)(len > 200 ? 200 : len),
			        line);
		pop3_session_end(c, false);
		return;
	}
	switch (c->step) {
	case P_GREETING:
		c->step = P_USER;
		send_fmt(c, "USER %s\r\n", c->user->address);
		c->t_phase = t;
		break;
	case P_USER:
		c->step = P_PASS;
		send_fmt(c, "PASS %s\r\n", c->user->password);
		break;
	case P_PASS:
		if (opt.mode == MODE_STAT100K) {
			ph_login = (t - c->t_phase) * 1000;
			/* "first STAT" counts from USER: the login opens the mailbox. */
		}
		pop3_after_login(c);
		break;
	case P_STAT:
		if (opt.mode == MODE_STAT100K) {
			ph_stat = (t - c->t_phase) * 1000;
			c->t_phase = t;
			c->stat_count = strtol(line + 3, NULL, 10);
			ph_count = c->stat_count;
			c->step = P_LIST;
			c->nlisted = 0;
			send_fmt(c, "LIST\r\n");
			break;
		}
		pop3_quit(c);
		break;
	case P_LIST:
	case P_UIDL:
	case P_RETR:
		body_begin(c, c->step != P_RETR);
		break;
	case P_DELE:
		st.deleted++;
		c->next_msg++;
		mixed_next(c);
		break;
	case P_QUIT:
		/* The session counts as done at the QUIT reply; the server
		 * then closes (RFC 1939 §6) and we wait for that. */
		st.done++;
		sample(&st, (t - c->t_start) * 1000);
		c->step = P_EOF;
		break;
	case P_IDLE:
	case P_EOF:
	default:
		if (opt.verbose)
			fprintf(stderr, "popload: unexpected line in step %d: %.*s\n", c->step,
			        (int)(len > 200 ? 200 : len), line);
		break;
	}
}

/* Scan a multi-line body fast: only line starts matter. Returns bytes used;
 * sets c->in_body false at the terminator. */
size_t pop3_body_scan(struct conn *c, const char *p, size_t n)
{
	size_t i = 0;
	while (i < n) {
		switch (c->body_state) {
		case 0: {
			const char *nl = memchr(p + i, '\n', n - i);
			if (nl == NULL) {
				i = n;
				break;
			}
			i = (size_t)(nl - p) + 1;
			c->body_state = 1;
			break;
		}
		case 1:
			c->body_state = p[i] == '.' ? 2 : p[i] == '\n' ? 1 : 0;
			i++;
			break;
		case 2:
			if (p[i] == '\r') {
				c->body_state = 3;
			} else {
				c->body_stuffed++; /* "..x": the first dot was stuffed */
				c->body_state = p[i] == '\n' ? 1 : 0;
			}
			i++;
			break;
		case 3:
			if (p[i] == '\n') {
				i++;
				c->body_bytes += i;
				c->in_body = false;
				return i;
			}
			/* ".\rx": a stuffed line that is just ".\r..." is not
			 * possible (the server stuffs every leading dot), but
			 * count it as a stuffed line and carry on. */
			c->body_stuffed++;
			c->body_state = 0;
			break;
		}
	}
	c->body_bytes += n;
	return n;
}

/* Lines of a multi-line body (LIST, UIDL). Returns bytes used; -1 when the
 * connection was closed. */
long pop3_body_lines(struct conn *c, const char *p, size_t n)
{
	size_t used = 0;
	while (used < n) {
		const char *nl = memchr(p + used, '\n', n - used);
		if (nl == NULL)
			break;
		size_t len = (size_t)(nl - (p + used)) + 1;
		const char *line = p + used;
		used += len;
		c->body_bytes += len;
		size_t l = len - 1;
		if (l > 0 && line[l - 1] == '\r')
			l--;
		if (l == 1 && line[0] == '.') {
			c->in_body = false;
			pop3_body_done(c);
			return c->dead ? -1 : (long)used;
		}
		if (l > 0 && line[0] == '.') {
			line++;
			l--;
		}
		pop3_body_line(c, line, l);
	}
	return (long)used;
}
