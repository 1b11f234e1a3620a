/* SMTP and LMTP command lines (RFC 5321 §4.1, RFC 2033 §4.1, RFC 3030 §2,
 * RFC 1870, RFC 6152, RFC 6531): one line in, a verb and its checked
 * arguments out.
 *
 * Pure and bounded: no allocation, no I/O, no logging, no session state.
 * What is allowed *now* (command order, whether an extension was
 * advertised, SIZE against max_message_size, BODY=BINARYMIME with DATA) is
 * the session's call; this module only says what the client sent and
 * whether it was well-formed.
 *
 * Leniencies, each one what deployed servers accept and deployed clients
 * send:
 *   - verbs and parameter keywords in any case (RFC 5321 §2.4);
 *   - one space between "FROM:"/"TO:" and the path ("MAIL FROM: <a@b>"): the
 *     grammar has none, Postfix and others accept it, and several clients
 *     send it;
 *   - runs of spaces between parameters and trailing spaces at the end of
 *     the line;
 *   - '_' in EHLO/HELO/LHLO host names.
 * Not accepted: paths without angle brackets ("MAIL FROM:a@b"), tabs or
 * any other control character.
 */
#ifndef PILLAR_SMTP_PARSE_H
#define PILLAR_SMTP_PARSE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "smtp/address.h"

/* RFC 5321 §4.5.3.1.4: a command line is at most 512 octets including the
 * CRLF. */
#define SMTP_MAX_LINE 512
/* ESMTP parameters kept per MAIL/RCPT. We support three; a client sending
 * more than this is refused as a whole (SMTP_PARSE_TOO_MANY_PARAMS). */
#define SMTP_MAX_PARAMS 8
/* RFC 1870 §3: size-value ::= 1*20DIGIT. */
#define SMTP_SIZE_MAX_DIGITS 20

enum smtp_verb {
	SMTP_VERB_NONE = 0, /* only on parse failure */
	SMTP_VERB_EHLO,
	SMTP_VERB_HELO,
	SMTP_VERB_LHLO,
	SMTP_VERB_MAIL,
	SMTP_VERB_RCPT,
	SMTP_VERB_DATA,
	SMTP_VERB_BDAT,
	SMTP_VERB_RSET,
	SMTP_VERB_NOOP,
	SMTP_VERB_QUIT,
	SMTP_VERB_VRFY,
	SMTP_VERB_HELP,
	SMTP_VERB_STARTTLS,
	SMTP_VERB_AUTH,
};

enum smtp_parse_result {
	SMTP_PARSE_OK = 0,
	SMTP_PARSE_EMPTY,           /* nothing but spaces */
	SMTP_PARSE_TOO_LONG,        /* len > SMTP_MAX_LINE - 2 */
	SMTP_PARSE_NUL,             /* NUL octet in the line */
	SMTP_PARSE_BARE_CR_LF,      /* CR or LF inside the line */
	SMTP_PARSE_CONTROL,         /* another control character (incl. TAB, DEL) */
	SMTP_PARSE_UNKNOWN_VERB,    /* not a command we know */
	SMTP_PARSE_SYNTAX,          /* arguments do not match the command's grammar */
	SMTP_PARSE_ADDRESS,         /* path syntax; see cmd->addr_error */
	SMTP_PARSE_UNKNOWN_PARAM,   /* an ESMTP parameter we do not support */
	SMTP_PARSE_BAD_PARAM,       /* a supported parameter with a bad or repeated value */
	SMTP_PARSE_TOO_MANY_PARAMS, /* more than SMTP_MAX_PARAMS parameters */
};

/* BODY= values (RFC 6152 §2, RFC 3030 §3). */
enum smtp_body {
	SMTP_BODY_NONE = 0, /* no BODY parameter: 7BIT by default */
	SMTP_BODY_7BIT,
	SMTP_BODY_8BITMIME,
	SMTP_BODY_BINARYMIME,
};

/* One "KEYWORD[=VALUE]" (RFC 5321 §4.1.2 esmtp-param). Both point into the
 * parsed line, NUL-terminated in place; value is NULL when there was no
 * '='. */
struct smtp_param {
	const char *keyword;
	const char *value;
};

struct smtp_cmd {
	enum smtp_verb verb;
	/* EHLO/HELO/LHLO: the domain or address literal (checked).
	 * VRFY, HELP, NOOP, AUTH: the rest of the line after the verb and
	 * its space, trailing spaces removed, not checked; NULL if none.
	 * Points into the line. */
	const char *arg;

	/* MAIL, RCPT: the path, copied (independent of the line). */
	struct smtp_mailbox path;
	/* On SMTP_PARSE_ADDRESS: which check failed. */
	enum smtp_addr_error addr_error;

	/* MAIL, RCPT: every parameter as sent, in order. */
	unsigned nparams;
	struct smtp_param params[SMTP_MAX_PARAMS];
	/* On UNKNOWN_PARAM / BAD_PARAM: the keyword at fault (points into
	 * the line; client data — make it log-safe before logging). */
	const char *bad_param;

	/* MAIL parameters, interpreted. */
	bool size_given;
	uint64_t size; /* SIZE=, RFC 1870; UINT64_MAX if it did not fit */
	enum smtp_body body;
	bool smtputf8; /* SMTPUTF8, RFC 6531 §3.4 */

	/* BDAT, RFC 3030 §2. */
	uint64_t bdat_size;
	bool bdat_last;
};

/* Parse line[0..len), a command line WITHOUT its CRLF, in place: octets of
 * the line are overwritten with NULs to terminate arguments, and line[len]
 * must be writable (the connection's line buffer is NUL-terminated, so it
 * is). Pointers in *cmd point into line and live as long as it does;
 * cmd->path is a copy.
 *
 * `smtputf8` says whether the current transaction was started with
 * "MAIL ... SMTPUTF8": it governs whether a RCPT path may be non-ASCII
 * (RFC 6531 §3.4). A MAIL command decides that for itself from its own
 * parameters, ignoring `smtputf8`.
 *
 * Grammar enforced per verb (RFC 5321 §4.1.1 unless noted):
 *   EHLO/LHLO SP (Domain / address-literal)      LHLO: RFC 2033 §4.1
 *   HELO SP Domain (an address literal is also accepted)
 *   MAIL FROM:[SP]Reverse-path *(SP param)        SIZE, BODY, SMTPUTF8 only
 *   RCPT TO:[SP]Forward-path *(SP param)          no parameters supported;
 *                                                 "<Postmaster>" accepted
 *   BDAT SP 1*DIGIT [SP "LAST"]                   RFC 3030 §2, size < 2^64
 *   DATA, RSET, QUIT, STARTTLS: no argument
 *   NOOP, HELP [SP String]; VRFY SP String; AUTH SP rest (RFC 4954 §4)
 *
 * On any result other than SMTP_PARSE_OK, cmd->verb is still set when the
 * verb was recognised (so the session can count the error against the
 * right command) and everything else in *cmd is unspecified except the
 * error details named above.
 *
 * A syntax error in BDAT leaves the session unable to tell how many octets
 * of chunk data follow: RFC 3030 has no way to resynchronise, so the
 * session should answer and close the connection. */
enum smtp_parse_result smtp_parse(char *line, size_t len, bool smtputf8, struct smtp_cmd *cmd);

/* A short English description of a result (no client data), e.g.
 * "unknown ESMTP parameter". */
const char *smtp_parse_strerror(enum smtp_parse_result r);

/* The reply RFC 5321 §4.2 / RFC 3463 suggest for a failed parse of `verb`:
 * basic code and enhanced status code (e.g. 555 and "5.5.4"). For
 * SMTP_PARSE_ADDRESS, addr_error and the verb (sender vs recipient) pick
 * the code. The session may of course answer differently (e.g. close with
 * 421 after too many errors). */
void smtp_parse_reply(enum smtp_parse_result r, enum smtp_verb verb,
                      enum smtp_addr_error addr_error, unsigned *code_r, const char **enhanced_r);

/* The verb's name ("EHLO", ...), for logs. */
const char *smtp_verb_name(enum smtp_verb verb);

#endif
