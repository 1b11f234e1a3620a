/* libFuzzer target: a whole POP3 session (pop3/pop3.h), from the greeting
 * through login (USER/PASS, APOP, AUTH) and TRANSACTION to QUIT, over a
 * socketpair in a real event loop with the thread pool, the SQLite
 * directory and a Maildir (fuzz/instance.h).
 *
 * Input: one mode octet, then the bytes the client sends (written in
 * pieces of pseudo-random sizes, then the write side is shut down).
 *   mode bit 0: the client is not on loopback (so plaintext_auth = tls
 *               refuses USER/PASS, PLAIN and LOGIN without TLS)
 * e.g. mode '0' is a loopback client, '1' a remote one. FUZZ_USER's
 * password is in the dictionary and the seeds, so inputs reach
 * TRANSACTION; its Maildir holds the FUZZ_MESSAGES fixture messages at the
 * start of every input.
 *
 * Checked besides the sanitizers' findings (leaks included):
 *   - the session ends by itself once the client has sent everything
 *     (no hang, no session or pool job left behind);
 *   - the client gets the greeting first, and the last reply is complete
 *     (ends with CRLF);
 *   - a session without QUIT deletes nothing (RFC 1939 §6: UPDATE only
 *     after QUIT) — checked whenever the input has no "QUIT" in any case;
 *   - the mailbox lock is released when the session is gone. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "common.h"
#include "core/env.h"
#include "instance.h"
#include "pop3/pop3.h"
#include "store/maildir.h"

static struct fuzz_instance *fi;

int LLVMFuzzerInitialize(int *argc, char ***argv);

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc;
	(void)argv;
	fi = fuzz_instance_init(NULL, true);
	return 0;
}

static void accept_pop3(struct worker_env *env, struct conn *conn, void *arg)
{
	(void)arg;
	pop3_accept(env, conn);
}

static bool has_quit(const uint8_t *data, size_t size)
{
	for (size_t i = 0; i + 4 <= size; i++) {
		if (strncasecmp((const char *)data + i, "QUIT", 4) == 0)
			return true;
	}
	return false;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct fuzz_transcript t;

	if (size < 1)
		return 0;
	bool loopback = !(data[0] & 1);
	fuzz_session_run(fi, data + 1, size - 1, loopback, accept_pop3, NULL, &t);

	static const char greeting[] = "+OK Pillar POP3 server ready";
	FUZZ_CHECK(t.len >= sizeof(greeting) - 1 &&
	               memcmp(t.out, greeting, sizeof(greeting) - 1) == 0,
	           "no greeting: \"%.60s\"", t.out);
	FUZZ_CHECK(t.total > t.len || (t.len >= 2 && memcmp(t.out + t.len - 2, "\r\n", 2) == 0),
	           "the last reply is cut short: \"...%.60s\"",
	           t.out + (t.len > 60 ? t.len - 60 : 0));
	free(t.out);

	long messages = fuzz_mailbox_messages(fi->maildir);
	FUZZ_CHECK(messages == FUZZ_MESSAGES || has_quit(data + 1, size - 1),
	           "a session without QUIT changed the mailbox: %ld messages, want %d", messages,
	           FUZZ_MESSAGES);

	int lock_fd = -1;
	const char *err = NULL;
	int r = maildir_lock(fi->maildir, &lock_fd, &err);
	FUZZ_CHECK(r == 0, "the mailbox lock is still held after the session (%d: %s)", r,
	           err != NULL ? err : "held");
	close(lock_fd);

	fuzz_mailbox_restore(fi);
	return 0;
}
