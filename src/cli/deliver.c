/* `pillar deliver`: the local delivery agent. One message on stdin, into
 * the mailboxes of the recipients named on the command line, through the
 * same delivery path as SMTP and LMTP (store/delivery.h).
 *
 * The exit status is what the calling MTA acts on, so it follows sysexits.h
 * the way MTAs read it: 75 (EX_TEMPFAIL) means "keep the message and try
 * again", everything else non-zero means "bounce". Every check that can
 * refuse the message (recipients, quota, size) runs before anything is
 * committed, so a refusal never leaves a copy in any mailbox. */
#include "cli/cli.h"

#include "core/config.h"
#include "core/util.h"
#include "directory/directory.h"
#include "smtp/address.h"
#include "store/delivery.h"
#include "store/maildir.h"
#include "store/quota.h"

#include <errno.h>
#include <getopt.h>
#include <stdlib.h>
#include <string.h>
#include <sysexits.h>
#include <time.h>
#include <unistd.h>

/* RFC 5321 §4.5.3.1.8: the recipients one SMTP transaction must take; the
 * same bound for one command line. */
#define DELIVER_MAX_RCPTS 100
/* stdin is read in pieces of this size (the delivery buffers further). */
#define DELIVER_READ_SIZE (64 * 1024)

static const char deliver_help[] =
    "usage: pillar deliver [-c FILE] [-f SENDER] RCPT...\n"
    "\n"
    "Deliver one message, read from standard input, to local recipients: the\n"
    "local delivery agent for an MTA (a Postfix pipe transport or\n"
    "mailbox_command, Exim, fetchmail --mda). Line ends may be CRLF or LF;\n"
    "the message is stored with LF and every other byte as it came (8-bit and\n"
    "binary included), below a Return-Path: and a Received: header. Each RCPT\n"
    "is a mailbox or alias of a local domain (or postmaster); the message goes\n"
    "once to each mailbox they reach. Run it as root (it becomes run_as, like\n"
    "the other admin commands) or as the run_as account itself.\n"
    "\n"
    "  -c, --config FILE  the config file\n"
    "  -f, --from SENDER  the envelope sender, for Return-Path:; none, '' or\n"
    "                     '<>' mean the null sender <> (bounces, notices)\n"
    "  -h, --help         show this help\n"
    "\n"
    "Exit status (sysexits.h; 75 makes the MTA retry, the others bounce):\n"
    "   0  delivered to every mailbox\n"
    "  64  usage: bad option, no RCPT, a RCPT or SENDER that is no address\n"
    "  67  a recipient is unknown, or not in a local domain\n"
    "  73  cannot be stored, ever: the message is larger than\n"
    "      max_message_size, or a mailbox's Maildir is missing\n"
    "  75  temporary failure: a mailbox is over its quota, the disk is full,\n"
    "      an I/O error, the directory cannot be read\n"
    "  78  the config file is bad\n"
    "Nothing is stored unless the status is 0, with one exception: with\n"
    "several RCPT, when writing fails for one mailbox the others keep their\n"
    "copy. An MTA that retries should pass one recipient per run (Postfix:\n"
    "<transport>_destination_recipient_limit = 1).\n";

struct target {
	char address[DIR_ADDRESS_MAX + 1];
	uint64_t quota_bytes, quota_messages;
	char *path;
};

struct targets {
	struct target *items;
	size_t n, cap;
};

static void targets_add(struct targets *t, const struct dir_user *u, const char *mail_root)
{
	for (size_t i = 0; i < t->n; i++) {
		if (strcmp(t->items[i].address, u->address) == 0)
			return; /* two recipients reaching one mailbox: one copy */
	}
	if (t->n == t->cap) {
		size_t cap = t->cap == 0 ? 8 : t->cap * 2;
		struct target *items = xcalloc(cap, sizeof(*items));

		if (t->n > 0)
			memcpy(items, t->items, t->n * sizeof(*items));
		free(t->items);
		t->items = items;
		t->cap = cap;
	}
	struct target *x = &t->items[t->n++];
	snprintf(x->address, sizeof(x->address), "%s", u->address);
	x->quota_bytes = u->quota_bytes;
	x->quota_messages = u->quota_messages;
	x->path = maildir_path(mail_root, u->address);
}

static void targets_free(struct targets *t)
{
	for (size_t i = 0; i < t->n; i++)
		free(t->items[i].path);
	free(t->items);
	t->items = NULL;
	t->n = t->cap = 0;
}

/* An address argument: "<...>" as an SMTP path or a bare mailbox. */
static enum smtp_addr_error parse_arg(const char *arg, unsigned flags, struct smtp_mailbox *mb)
{
	size_t len = strlen(arg), used;
	enum smtp_addr_error e;

	if (len > 0 && arg[0] == '<') {
		e = smtp_path_parse(arg, len, flags, mb, &used);
		if (e == SMTP_ADDR_OK && used != len)
			e = SMTP_ADDR_SYNTAX;
		return e;
	}
	return smtp_mailbox_parse(arg, len, flags, mb);
}

/* Copy in[0..n) to out dropping the CR of every CRLF; a CR at the end of
 * one piece is held in *cr until the next shows whether LF follows. out
 * has room for n + 1. Returns the length written. */
static size_t crlf_to_lf(const char *in, size_t n, char *out, bool *cr)
{
	size_t o = 0;

	for (size_t i = 0; i < n; i++) {
		char c = in[i];

		if (*cr) {
			*cr = false;
			if (c != '\n')
				out[o++] = '\r';
		}
		if (c == '\r') {
			*cr = true;
			continue;
		}
		out[o++] = c;
	}
	return o;
}

/* The trace headers, in stored form (LF). RFC 5321 §4.4: Return-Path:
 * carries the envelope sender; Received: says who handed the message over
 * (here a local uid) and when. */
static char *trace_headers(const char *sender, uid_t uid, const char *hostname)
{
	char date[64], id[17];
	time_t now = time(NULL);
	struct tm tm;

	localtime_r(&now, &tm);
	/* The C locale (never changed here) gives RFC 5322 day and month names. */
	strftime(date, sizeof(date), "%a, %d %b %Y %H:%M:%S %z", &tm);
	random_token(id, sizeof(id) - 1);
	return xasprintf("Return-Path: <%s>\n"
	                 "Received: from local (uid %lu) by %s (Pillar) with local id %s; %s\n",
	                 sender, (unsigned long)uid, hostname, id, date);
}

/* Resolve every recipient into t. Returns 0 or an exit status. */
static int resolve_all(struct dir *dir, const struct config *cfg, struct smtp_mailbox *rcpts,
                       char **args, int n, struct targets *t)
{
	struct dir_rcpt *found = xmalloc(sizeof(*found));
	enum dir_rcpt_result result;
	const char *err;
	int status = 0;

	for (int i = 0; i < n && status == 0; i++) {
		if (dir_rcpt_resolve(dir, rcpts[i].canon, &result, found, &err) < 0) {
			cli_err("deliver: looking up %s: %s", args[i], err);
			status = EX_TEMPFAIL;
		} else if (result == DIR_RCPT_NOT_LOCAL) {
			cli_err("deliver: %s: not a local domain", args[i]);
			status = EX_NOUSER;
		} else if (result == DIR_RCPT_NO_USER) {
			cli_err("deliver: %s: unknown recipient", args[i]);
			status = EX_NOUSER;
		} else {
			for (size_t k = 0; k < found->n; k++)
				targets_add(t, &found->users[k], cfg->mail_root);
		}
	}
	free(found);
	return status;
}

/* Quota of every mailbox: at incoming == 0 "full already?", after the
 * data "does it fit?". Returns 0 or EX_TEMPFAIL: a full mailbox may empty
 * (RFC 5321 §4.2.2 452 / RFC 3463 4.2.2), so the MTA keeps the message. */
static int check_quotas(const struct targets *t, uint64_t incoming)
{
	for (size_t i = 0; i < t->n; i++) {
		const struct target *x = &t->items[i];
		enum quota_state st;
		const char *err;

		if (x->path == NULL || quota_check(x->path, x->quota_bytes, x->quota_messages,
		                                   incoming, &st, &err) < 0) {
			cli_err("deliver: %s: cannot read the mailbox: %s", x->address,
			        x->path == NULL ? "bad address" : err);
			return EX_TEMPFAIL;
		}
		if (st == QUOTA_FULL) {
			cli_err("deliver: %s: mailbox full (over quota)", x->address);
			return EX_TEMPFAIL;
		}
		if (st == QUOTA_WONT_FIT) {
			cli_err("deliver: %s: the message (%llu bytes) would exceed the "
			        "mailbox's quota",
			        x->address, (unsigned long long)incoming);
			return EX_TEMPFAIL;
		}
	}
	return 0;
}

/* Copy stdin into the delivery. Returns 0 or an exit status. */
static int spool_stdin(struct delivery *d, uint64_t max_size)
{
	char *in = xmalloc(DELIVER_READ_SIZE), *out = xmalloc(DELIVER_READ_SIZE + 1);
	uint64_t body = 0;
	bool cr = false;
	const char *err;
	int status = 0;

	for (;;) {
		ssize_t n = read(STDIN_FILENO, in, DELIVER_READ_SIZE);
		size_t len;

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			cli_err("deliver: reading the message from stdin: %s", strerror(errno));
			status = EX_TEMPFAIL;
			break;
		}
		if (n == 0) {
			len = 0;
			if (cr)
				out[len++] = '\r'; /* a CR at the very end stays */
		} else {
			len = crlf_to_lf(in, (size_t)n, out, &cr);
		}
		body += len;
		if (max_size > 0 && body > max_size) {
			cli_err("deliver: the message is larger than max_message_size (%llu "
			        "bytes)",
			        (unsigned long long)max_size);
			status = EX_CANTCREAT;
			break;
		}
		if (len > 0 && delivery_write(d, out, len, &err) < 0) {
			cli_err("deliver: %s", err);
			status = EX_TEMPFAIL;
			break;
		}
		if (n == 0)
			break;
	}
	free(in);
	free(out);
	return status;
}

static int deliver(const struct config *cfg, struct targets *t, const char *sender, uid_t uid)
{
	const char **paths = xcalloc(t->n, sizeof(*paths));
	const char **errors = xcalloc(t->n, sizeof(*errors));
	enum delivery_status *st = xcalloc(t->n, sizeof(*st));
	struct delivery *d = NULL;
	const char *err;
	char *headers;
	int status = 0;

	if (delivery_begin(cfg->mail_root, cfg->hostname, &d, &err) < 0) {
		cli_err("deliver: %s", err);
		status = EX_TEMPFAIL;
		goto out;
	}
	headers = trace_headers(sender, uid, cfg->hostname);
	if (delivery_write(d, headers, strlen(headers), &err) < 0) {
		cli_err("deliver: %s", err);
		status = EX_TEMPFAIL;
	}
	free(headers);
	if (status == 0)
		status = spool_stdin(d, cfg->max_message_size);
	if (status == 0)
		status = check_quotas(t, delivery_size(d));
	if (status != 0)
		goto out;

	for (size_t i = 0; i < t->n; i++)
		paths[i] = t->items[i].path;
	if (delivery_commit(d, paths, t->n, st, errors) == t->n)
		goto out;
	for (size_t i = 0; i < t->n; i++) {
		if (st[i] == DELIVERY_OK)
			continue;
		if (st[i] == DELIVERY_PERMFAIL) {
			cli_err("deliver: %s: cannot deliver (no Maildir at %s?): %s",
			        t->items[i].address, paths[i], errors[i]);
			if (status == 0)
				status = EX_CANTCREAT;
		} else {
			cli_err("deliver: %s: %s", t->items[i].address, errors[i]);
			status = EX_TEMPFAIL; /* the MTA should retry: the worst wins */
		}
	}
out:
	delivery_free(&d);
	free(paths);
	free(errors);
	free(st);
	return status;
}

int cli_deliver(int argc, char **argv)
{
	static const struct option opts[] = {
	    {"config", required_argument, NULL, 'c'},
	    {"from", required_argument, NULL, 'f'},
	    {"help", no_argument, NULL, 'h'},
	    {NULL, 0, NULL, 0},
	};
	const unsigned rcpt_flags = SMTP_ADDR_SMTPUTF8 | SMTP_ADDR_ALLOW_POSTMASTER;
	const char *conf = NULL, *from = NULL;
	struct smtp_mailbox sender, *rcpts = NULL;
	struct targets t = {0};
	struct config *cfg;
	struct dir *dir;
	enum smtp_addr_error e;
	uid_t uid = getuid(); /* the caller, before any privilege drop */
	int c, n, status;

	optind = 0;
	opterr = 0;
	/* '+': options end at the first RCPT, as with sendmail-style LDAs. */
	while ((c = getopt_long(argc, argv, "+:c:f:h", opts, NULL)) != -1) {
		switch (c) {
		case 'c':
			conf = optarg;
			break;
		case 'f':
			from = optarg;
			break;
		case 'h':
			fputs(deliver_help, stdout);
			return 0;
		case ':':
			return cli_usage_err("deliver", "option %s needs a value",
			                     argv[optind - 1]);
		default:
			return cli_usage_err("deliver", "unknown option %s", argv[optind - 1]);
		}
	}
	n = argc - optind;
	if (n == 0)
		return cli_usage_err("deliver", "deliver needs at least one RCPT");
	if (n > DELIVER_MAX_RCPTS)
		return cli_usage_err("deliver", "at most %d recipients", DELIVER_MAX_RCPTS);

	memset(&sender, 0, sizeof(sender));
	if (from != NULL && from[0] != '\0' && strcmp(from, "<>") != 0) {
		e = parse_arg(from, SMTP_ADDR_SMTPUTF8, &sender);
		if (e != SMTP_ADDR_OK)
			return cli_usage_err("deliver", "bad sender '%s': %s", from,
			                     smtp_addr_strerror(e));
	}
	rcpts = xcalloc((size_t)n, sizeof(*rcpts));
	for (int i = 0; i < n; i++) {
		e = parse_arg(argv[optind + i], rcpt_flags, &rcpts[i]);
		if (e != SMTP_ADDR_OK) {
			free(rcpts);
			return cli_usage_err("deliver", "bad recipient '%s': %s", argv[optind + i],
			                     smtp_addr_strerror(e));
		}
	}

	/* Delivery needs the mailboxes, never their secrets. */
	dir_open_only(DIR_MAILBOXES);
	status = cli_admin_open(conf, &cfg, &dir);
	if (status != 0) {
		free(rcpts);
		/* A directory that cannot be opened now may open later. */
		return status == EX_UNAVAILABLE ? EX_TEMPFAIL : status;
	}
	status = resolve_all(dir, cfg, rcpts, argv + optind, n, &t);
	/* Everything needed from the directory is in t: close it before the
	 * (possibly long) read of the message. */
	dir_close(&dir);
	if (status == 0)
		status = check_quotas(&t, 0);
	if (status == 0)
		status = deliver(cfg, &t, sender.text, uid);
	targets_free(&t);
	config_free(&cfg);
	free(rcpts);
	return status;
}
