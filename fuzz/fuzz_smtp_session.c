/* libFuzzer target: a whole SMTP or LMTP session (smtp/smtp.h): greeting,
 * EHLO/LHLO, AUTH, MAIL, RCPT (directory lookups on the pool), DATA and
 * BDAT into the spool, the durable commit into Maildirs, RSET, QUIT — over
 * a socketpair in a real event loop (fuzz/instance.h).
 *
 * Input: one mode octet, then the bytes the client sends (written in
 * pieces of pseudo-random sizes, then the write side is shut down).
 *   mode bit 0: LMTP instead of SMTP
 *   mode bit 1: the client is not on loopback
 * e.g. '0' SMTP, '1' LMTP, '2' SMTP from a remote address. Local
 * recipients are FUZZ_USER, FUZZ_ALIAS (to FUZZ_USER), FUZZ_LOCKED_USER
 * and postmaster; max_message_size is 16K so inputs can cross it.
 *
 * Checked besides the sanitizers' findings (leaks included):
 *   - the session ends by itself once the client has sent everything;
 *   - every reply line is "DDD SP text" or "DDD - text" with a code 2xx-5xx,
 *     at most 512 octets with its CRLF (RFC 5321 §4.2, §4.5.3.1.5); a
 *     "DDD-" line is followed by a line with the same code; the greeting
 *     is a 220 and the last reply is complete;
 *   - what reached the mailboxes matches what was acknowledged (DESIGN §4:
 *     250 after DATA only once every copy is on disk): SMTP stores at
 *     least one and at most two copies (two local mailboxes) per
 *     "message accepted" and nothing else; LMTP stores nothing without a
 *     "delivered" reply;
 *   - no spool file and no file in a Maildir's tmp/ is left behind, however
 *     the session ended (abandoned DATA, client gone mid-BDAT, refusals). */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common.h"
#include "core/config.h"
#include "core/env.h"
#include "instance.h"
#include "smtp/smtp.h"

static struct fuzz_instance *fi;
static char spool[512], tmp_user[512], tmp_locked[512];

int LLVMFuzzerInitialize(int *argc, char ***argv);

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc;
	(void)argv;
	fi = fuzz_instance_init(NULL, true);
	snprintf(spool, sizeof(spool), "%s/.spool", fi->cfg->mail_root);
	snprintf(tmp_user, sizeof(tmp_user), "%s/tmp", fi->maildir);
	snprintf(tmp_locked, sizeof(tmp_locked), "%s/tmp", fi->locked_maildir);
	return 0;
}

static void accept_smtp(struct worker_env *env, struct conn *conn, void *arg)
{
	smtp_accept(env, conn, *(const bool *)arg);
}

static bool is_digit(char c)
{
	return c >= '0' && c <= '9';
}

/* Check the reply lines; count the replies that report a stored message. */
static void check_replies(const struct fuzz_transcript *t, bool lmtp, unsigned *accepted_r,
                          unsigned *delivered_r)
{
	const char *p = t->out, *end = t->out + t->len;
	char cont[3] = {0}; /* code of a "DDD-" line awaiting its continuation */
	bool first = true;

	*accepted_r = *delivered_r = 0;
	while (p < end) {
		const char *lf = memchr(p, '\n', (size_t)(end - p));
		if (lf == NULL) {
			FUZZ_CHECK(t->total > t->len, "the last reply is cut short: \"%.80s\"", p);
			break;
		}
		size_t len = (size_t)(lf - p) + 1;
		FUZZ_CHECK(len >= 6 && p[len - 2] == '\r', "reply line without CRLF: \"%.*s\"",
		           (int)len, p);
		FUZZ_CHECK(len <= 512, "reply line of %zu octets", len);
		FUZZ_CHECK(p[0] >= '2' && p[0] <= '5' && is_digit(p[1]) && is_digit(p[2]) &&
		               (p[3] == ' ' || p[3] == '-'),
		           "malformed reply line \"%.*s\"", (int)len - 2, p);
		FUZZ_CHECK(!first || memcmp(p, "220 ", 4) == 0, "greeting is \"%.*s\"",
		           (int)len - 2, p);
		if (cont[0] != 0)
			FUZZ_CHECK(memcmp(p, cont, 3) == 0, "continuation of %.3s has code %.3s",
			           cont, p);
		if (p[3] == '-')
			memcpy(cont, p, 3);
		else
			cont[0] = 0;
		if (!lmtp && len > 34 && memcmp(p, "250 2.0.0 message accepted as ", 30) == 0)
			(*accepted_r)++;
		if (lmtp && len > 12 && memcmp(p, "250 2.0.0 <", 11) == 0 &&
		    memmem(p, len, "> delivered as ", 15) != NULL)
			(*delivered_r)++;
		first = false;
		p += len;
	}
	FUZZ_CHECK(t->len > 0, "no greeting");
	FUZZ_CHECK(cont[0] == 0 || t->total > t->len, "the last reply ends with a \"%.3s-\" line",
	           cont);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct fuzz_transcript t;
	unsigned accepted, delivered;

	if (size < 1)
		return 0;
	bool lmtp = data[0] & 1;
	bool loopback = !(data[0] & 2);
	fuzz_session_run(fi, data + 1, size - 1, loopback, accept_smtp, &lmtp, &t);
	check_replies(&t, lmtp, &accepted, &delivered);
	free(t.out);

	long stored = fuzz_mailbox_messages(fi->maildir) - FUZZ_MESSAGES +
	              fuzz_mailbox_messages(fi->locked_maildir);
	if (lmtp) {
		FUZZ_CHECK(
		    stored >= 0 && (stored == 0 || delivered > 0) && stored <= (long)delivered,
		    "LMTP stored %ld copies with %u \"delivered\" replies", stored, delivered);
	} else {
		FUZZ_CHECK(stored >= accepted && stored <= 2 * (long)accepted,
		           "SMTP stored %ld copies for %u accepted messages", stored, accepted);
	}
	FUZZ_CHECK(fuzz_count_files(spool) <= 0, "%ld file(s) left in the spool",
	           fuzz_count_files(spool));
	FUZZ_CHECK(fuzz_count_files(tmp_user) == 0 && fuzz_count_files(tmp_locked) == 0,
	           "file(s) left in a Maildir's tmp/");
	fuzz_mailbox_restore(fi);
	return 0;
}
