/* SMTP envelope addresses: the reverse-path of MAIL and the forward-path of
 * RCPT (RFC 5321 §4.1.2), with the RFC 6531 §3.3 extensions for SMTPUTF8.
 *
 * Pure functions over bytes: no allocation, no I/O, no logging. A parsed
 * mailbox is copied into a fixed-size struct smtp_mailbox, so it owns its
 * text and stays valid after the command line buffer is reused — the
 * session may keep one per recipient.
 *
 * What is accepted (everything else is SMTP_ADDR_SYNTAX):
 *
 *   Path      = "<" [ A-d-l ":" ] Mailbox ">"     source route ignored (§4.1.2)
 *   Mailbox   = Local-part "@" ( Domain / address-literal )
 *   Local-part= Dot-string / Quoted-string         quoted pairs \x, x in 32..126
 *   Domain    = sub-domain *("." sub-domain)       letters, digits, '-' inside;
 *                                                   1..63 octets per label
 *   address-literal = "[" IPv4 "]" / "[IPv6:" IPv6 "]"
 *
 *   "<>" (the null reverse-path) only with SMTP_ADDR_ALLOW_NULL (MAIL), and
 *   "<Postmaster>" (any case, no domain, RFC 5321 §4.1.1.3 and §4.5.1) only
 *   with SMTP_ADDR_ALLOW_POSTMASTER (RCPT).
 *
 * General address literals ("[tag:...]" other than IPv6) are refused: no
 * such tag is standardised, and nothing local could match one.
 *
 * Octets >= 0x80 are allowed in the local part and in domain labels only
 * with SMTP_ADDR_SMTPUTF8 (RFC 6531 §3.3), and must then be well-formed
 * UTF-8 (RFC 3629 §4: no truncated sequences, no overlong forms, no
 * surrogates, nothing above U+10FFFF). U-labels are not further checked
 * against IDNA2008 and not normalised: lookup compares octets.
 */
#ifndef PILLAR_SMTP_ADDRESS_H
#define PILLAR_SMTP_ADDRESS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* RFC 5321 §4.5.3.1.1: a local part is at most 64 octets. Measured as it
 * appears on the wire (quotes and backslashes included). */
#define SMTP_LOCAL_MAX 64
/* RFC 5321 §4.5.3.1.2: a domain is at most 255 octets. */
#define SMTP_DOMAIN_MAX 255
/* RFC 1035 §2.3.4: a label is at most 63 octets. */
#define SMTP_LABEL_MAX 63
/* RFC 5321 §4.5.3.1.3: a path is at most 256 octets "including the
 * punctuation and element separators", i.e. from '<' to '>' inclusive,
 * source route included. */
#define SMTP_PATH_MAX 256
/* The longest mailbox text: a path without its angle brackets. */
#define SMTP_MAILBOX_MAX (SMTP_PATH_MAX - 2)

/* Flags for smtp_path_parse(). */
enum {
	SMTP_ADDR_SMTPUTF8 = 1 << 0,         /* UTF-8 allowed (RFC 6531) */
	SMTP_ADDR_ALLOW_NULL = 1 << 1,       /* "<>" accepted (MAIL) */
	SMTP_ADDR_ALLOW_POSTMASTER = 1 << 2, /* "<Postmaster>" accepted (RCPT) */
};

enum smtp_addr_error {
	SMTP_ADDR_OK = 0,
	SMTP_ADDR_SYNTAX,           /* not a path / mailbox per the grammar above */
	SMTP_ADDR_TOO_LONG,         /* local part, domain, label or path over its limit */
	SMTP_ADDR_UTF8_NOT_ALLOWED, /* 8-bit octets without SMTPUTF8 */
	SMTP_ADDR_BAD_UTF8,         /* 8-bit octets that are not well-formed UTF-8 */
};

struct smtp_mailbox {
	/* The mailbox as received, without angle brackets and without the
	 * source route: what Return-Path: should show. "" for the null path,
	 * "Postmaster" (as sent) for the bare postmaster form. */
	char text[SMTP_MAILBOX_MAX + 1];
	/* The lookup form: the local part unquoted when quoting is not
	 * needed (otherwise quoted with a backslash only before '"' and '\'),
	 * ASCII letters in both parts lower-cased, then "@" and the domain.
	 * "" for the null path, "postmaster" (no '@') for bare postmaster.
	 * Never longer than text. */
	char canon[SMTP_MAILBOX_MAX + 1];
	/* canon[0..local_len) is the local part; when the mailbox has a
	 * domain, canon[local_len] is '@' and the domain starts at
	 * canon + domain_off. */
	uint16_t local_len;
	uint16_t domain_off;
	bool is_null;       /* "<>" */
	bool is_postmaster; /* "<Postmaster>" without a domain */
	bool utf8;          /* has octets >= 0x80 (so needs SMTPUTF8) */
	bool literal;       /* the domain is an address literal "[...]" */
};

/* Parse a path starting at s[0] (which must be '<') within s[0..len). On
 * success fills *mb, sets *used_r to the number of octets up to and
 * including the closing '>' and returns SMTP_ADDR_OK. A '>' inside a quoted
 * local part does not end the path. On error *mb is zeroed and *used_r is
 * unspecified.
 *
 * Checks run in this order, and the first failure is returned: grammar
 * (SYNTAX), 8-bit octets (UTF8_NOT_ALLOWED, then BAD_UTF8), lengths
 * (TOO_LONG). A session maps TOO_LONG to 501 (RFC 5321 §4.5.3.1.10 "Path too
 * long"), UTF8_NOT_ALLOWED to 553 5.6.7 (RFC 6531 §3.5) and the others to
 * 501/553 with 5.1.7 (sender) or 5.1.3 (recipient), RFC 3463 §3.2. */
enum smtp_addr_error smtp_path_parse(const char *s, size_t len, unsigned flags,
                                     struct smtp_mailbox *mb, size_t *used_r);

/* Parse a bare mailbox "local@domain" filling the whole of s[0..len) (no
 * angle brackets, no route), e.g. from the `pillar deliver` command line or
 * an admin command. flags as above (ALLOW_NULL accepts len == 0,
 * ALLOW_POSTMASTER accepts a bare "postmaster"). */
enum smtp_addr_error smtp_mailbox_parse(const char *s, size_t len, unsigned flags,
                                        struct smtp_mailbox *mb);

/* Validate a domain or address literal filling s[0..len) as in an EHLO
 * argument, with the same UTF-8 rules. `lenient` additionally accepts '_'
 * inside labels (hosts named by Windows conventions send that in EHLO). */
enum smtp_addr_error smtp_domain_check(const char *s, size_t len, unsigned flags, bool lenient);

/* Check that s[0..len) is well-formed UTF-8 (RFC 3629 §4). Returns true if so
 * (also for pure ASCII and len == 0). */
bool smtp_utf8_valid(const char *s, size_t len);

/* A short English description of an error, for logs and reply texts. */
const char *smtp_addr_strerror(enum smtp_addr_error err);

#endif
