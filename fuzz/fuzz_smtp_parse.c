/* libFuzzer target: SMTP/LMTP command lines (smtp/parse.h) and envelope
 * addresses (smtp/address.h).
 *
 * Input: one command line without its CRLF. It is parsed as a command
 * (with and without a SMTPUTF8 transaction), and the same octets are given
 * to the address functions directly, with every combination of flags.
 *
 * Checked besides the sanitizers' findings:
 *   - results, reply codes and enhanced codes are in range and agree;
 *   - a parsed command's verb is the line's first word; EHLO/HELO/LHLO
 *     arguments are valid domains; SIZE= and BDAT sizes are the decimal
 *     values written (SIZE saturating); DATA/RSET/QUIT/STARTTLS take
 *     nothing; RCPT takes no parameters;
 *   - every mailbox a parser returns is consistent (lengths within the
 *     RFC 5321 limits, canon no longer than text, lower-case, '@' where
 *     local_len says, utf8 exactly when there are 8-bit octets, and then
 *     well-formed), and its lookup form is a fixed point: parsing canon
 *     again, or the text, or "<text>", gives the same canon;
 *   - flags only ever widen what is accepted: what parses with fewer flags
 *     parses with more, to the same canon;
 *   - a failed parse leaves the mailbox zeroed;
 *   - smtp_utf8_valid agrees with a plain RFC 3629 decoder written here. */
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "common.h"
#include "smtp/address.h"
#include "smtp/parse.h"

/* RFC 3629: decode and check each sequence's value. */
static bool ref_utf8_valid(const unsigned char *s, size_t len)
{
	size_t i = 0;

	while (i < len) {
		unsigned char c = s[i++];
		uint32_t cp, min;
		int n;

		if (c < 0x80)
			continue;
		if ((c & 0xe0) == 0xc0) {
			n = 1, cp = c & 0x1f, min = 0x80;
		} else if ((c & 0xf0) == 0xe0) {
			n = 2, cp = c & 0x0f, min = 0x800;
		} else if ((c & 0xf8) == 0xf0) {
			n = 3, cp = c & 0x07, min = 0x10000;
		} else {
			return false;
		}
		for (int k = 0; k < n; k++) {
			if (i >= len || (s[i] & 0xc0) != 0x80)
				return false;
			cp = (cp << 6) | (s[i++] & 0x3f);
		}
		if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
			return false;
	}
	return true;
}

static bool all_zero(const void *p, size_t n)
{
	const unsigned char *b = p;
	for (size_t i = 0; i < n; i++) {
		if (b[i] != 0)
			return false;
	}
	return true;
}

/* A decimal string's value; -1 if not digits. Past UINT64_MAX it is
 * UINT64_MAX with saturate, else -1. */
static int ref_decimal(const char *s, size_t n, bool saturate, uint64_t *out)
{
	unsigned __int128 v = 0;

	if (n == 0)
		return -1;
	for (size_t i = 0; i < n; i++) {
		if (s[i] < '0' || s[i] > '9')
			return -1;
		if (v <= UINT64_MAX)
			v = v * 10 + (unsigned)(s[i] - '0');
	}
	if (v > UINT64_MAX && !saturate)
		return -1;
	*out = v > UINT64_MAX ? UINT64_MAX : (uint64_t)v;
	return 0;
}

static unsigned canon_flags(const struct smtp_mailbox *mb)
{
	return SMTP_ADDR_ALLOW_NULL | SMTP_ADDR_ALLOW_POSTMASTER |
	       (mb->utf8 ? SMTP_ADDR_SMTPUTF8 : 0);
}

static void check_mailbox(const struct smtp_mailbox *mb, unsigned flags, const char *who)
{
	size_t tlen = strnlen(mb->text, sizeof(mb->text));
	size_t clen = strnlen(mb->canon, sizeof(mb->canon));
	bool eight = false;

	FUZZ_CHECK(tlen <= SMTP_MAILBOX_MAX && clen <= tlen, "%s: text %zu, canon %zu octets", who,
	           tlen, clen);
	for (size_t i = 0; i < tlen; i++)
		eight |= (unsigned char)mb->text[i] >= 0x80;
	FUZZ_CHECK(eight == mb->utf8, "%s: utf8 flag %d for text \"%s\"", who, mb->utf8, mb->text);
	FUZZ_CHECK(!mb->utf8 || (flags & SMTP_ADDR_SMTPUTF8), "%s: 8-bit without SMTPUTF8", who);
	FUZZ_CHECK(!mb->utf8 || ref_utf8_valid((const unsigned char *)mb->text, tlen),
	           "%s: accepted malformed UTF-8", who);
	for (size_t i = 0; i < clen; i++)
		FUZZ_CHECK(!(mb->canon[i] >= 'A' && mb->canon[i] <= 'Z'),
		           "%s: canon \"%s\" has upper case", who, mb->canon);

	if (mb->is_null) {
		FUZZ_CHECK((flags & SMTP_ADDR_ALLOW_NULL) && tlen == 0 && clen == 0,
		           "%s: null path wrongly accepted or not empty", who);
		return;
	}
	FUZZ_CHECK(tlen > 0, "%s: empty text for a non-null mailbox", who);
	if (mb->is_postmaster) {
		FUZZ_CHECK((flags & SMTP_ADDR_ALLOW_POSTMASTER) &&
		               strcasecmp(mb->text, "postmaster") == 0 &&
		               strcmp(mb->canon, "postmaster") == 0 && mb->local_len == 10,
		           "%s: bad bare postmaster \"%s\"", who, mb->text);
	} else {
		FUZZ_CHECK(mb->local_len > 0 && mb->local_len < clen &&
		               mb->canon[mb->local_len] == '@' &&
		               mb->domain_off == mb->local_len + 1u && mb->domain_off < clen,
		           "%s: local_len %u / domain_off %u do not fit canon \"%s\"", who,
		           mb->local_len, mb->domain_off, mb->canon);
		FUZZ_CHECK(mb->local_len <= SMTP_LOCAL_MAX &&
		               clen - mb->domain_off <= SMTP_DOMAIN_MAX,
		           "%s: local part or domain over the limit", who);
		FUZZ_CHECK(mb->literal == (mb->canon[mb->domain_off] == '['),
		           "%s: literal flag does not match \"%s\"", who, mb->canon);
	}

	/* Fixed points: canon, the text and "<text>" all parse back to canon. */
	struct smtp_mailbox again;
	enum smtp_addr_error e = smtp_mailbox_parse(mb->canon, clen, canon_flags(mb), &again);
	FUZZ_CHECK(e == SMTP_ADDR_OK && strcmp(again.canon, mb->canon) == 0,
	           "%s: canon \"%s\" does not parse to itself (error %d, \"%s\")", who, mb->canon,
	           (int)e, again.canon);
	e = smtp_mailbox_parse(mb->text, tlen, canon_flags(mb), &again);
	FUZZ_CHECK(e == SMTP_ADDR_OK && strcmp(again.canon, mb->canon) == 0,
	           "%s: text \"%s\" does not parse to the same canon", who, mb->text);
	char path[SMTP_MAILBOX_MAX + 3];
	size_t used = 0;
	path[0] = '<';
	memcpy(path + 1, mb->text, tlen);
	path[tlen + 1] = '>';
	e = smtp_path_parse(path, tlen + 2, canon_flags(mb), &again, &used);
	FUZZ_CHECK(e == SMTP_ADDR_OK && used == tlen + 2 && strcmp(again.canon, mb->canon) == 0,
	           "%s: <%s> does not parse to the same canon", who, mb->text);
}

static void check_command(const char *orig, size_t len, bool utf8)
{
	char *line = malloc(len + 1);
	struct smtp_cmd cmd;
	unsigned code = 0;
	const char *enhanced = NULL;

	memcpy(line, orig, len);
	line[len] = '\0';
	enum smtp_parse_result r = smtp_parse(line, len, utf8, &cmd);
	FUZZ_CHECK(r >= SMTP_PARSE_OK && r <= SMTP_PARSE_TOO_MANY_PARAMS, "result %d", (int)r);
	FUZZ_CHECK(smtp_parse_strerror(r) != NULL && smtp_verb_name(cmd.verb) != NULL,
	           "no text for result or verb");
	smtp_parse_reply(r, cmd.verb, cmd.addr_error, &code, &enhanced);
	FUZZ_CHECK(enhanced != NULL && strlen(enhanced) == 5 &&
	               enhanced[0] == '0' + (char)(code / 100) && enhanced[1] == '.' &&
	               enhanced[3] == '.',
	           "reply %u %s does not agree", code, enhanced != NULL ? enhanced : "(null)");
	FUZZ_CHECK(r == SMTP_PARSE_OK ? code == 250 : (code >= 500 && code <= 559),
	           "reply code %u for result %d", code, (int)r);
	FUZZ_CHECK((r == SMTP_PARSE_TOO_LONG) == (len > SMTP_MAX_LINE - 2),
	           "TOO_LONG at length %zu", len);
	if (r == SMTP_PARSE_TOO_LONG || r == SMTP_PARSE_NUL || r == SMTP_PARSE_BARE_CR_LF ||
	    r == SMTP_PARSE_CONTROL || r == SMTP_PARSE_EMPTY)
		FUZZ_CHECK(cmd.verb == SMTP_VERB_NONE, "verb set on a line-level error");
	if (r != SMTP_PARSE_OK) {
		free(line);
		return;
	}

	/* The verb is the first word. */
	size_t lead = 0, vlen = 0;
	const char *name = smtp_verb_name(cmd.verb);
	while (lead + vlen < len && orig[lead + vlen] != ' ')
		vlen++;
	FUZZ_CHECK(cmd.verb != SMTP_VERB_NONE && vlen == strlen(name) &&
	               strncasecmp(orig, name, vlen) == 0,
	           "verb %s for line \"%.*s\"", name, (int)len, orig);
	const char *rest = orig + vlen;
	size_t rest_len = len - vlen;

	switch (cmd.verb) {
	case SMTP_VERB_EHLO:
	case SMTP_VERB_HELO:
	case SMTP_VERB_LHLO:
		FUZZ_CHECK(cmd.arg != NULL &&
		               smtp_domain_check(cmd.arg, strlen(cmd.arg), 0, true) == SMTP_ADDR_OK,
		           "%s argument is not a domain", name);
		break;
	case SMTP_VERB_MAIL:
	case SMTP_VERB_RCPT: {
		bool mail = cmd.verb == SMTP_VERB_MAIL;
		unsigned flags =
		    mail ? SMTP_ADDR_ALLOW_NULL | (cmd.smtputf8 ? SMTP_ADDR_SMTPUTF8 : 0)
		         : SMTP_ADDR_ALLOW_POSTMASTER | (utf8 ? SMTP_ADDR_SMTPUTF8 : 0);
		check_mailbox(&cmd.path, flags, name);
		FUZZ_CHECK(cmd.nparams <= SMTP_MAX_PARAMS, "%u parameters", cmd.nparams);
		FUZZ_CHECK(mail || cmd.nparams == 0, "RCPT with parameters accepted");
		for (unsigned i = 0; i < cmd.nparams; i++) {
			const struct smtp_param *p = &cmd.params[i];
			FUZZ_CHECK(p->keyword >= line && p->keyword < line + len,
			           "parameter outside the line");
			FUZZ_CHECK(strcasecmp(p->keyword, "SIZE") == 0 ||
			               strcasecmp(p->keyword, "BODY") == 0 ||
			               strcasecmp(p->keyword, "SMTPUTF8") == 0,
			           "unsupported parameter %s accepted", p->keyword);
			if (strcasecmp(p->keyword, "SIZE") == 0) {
				uint64_t v = 0;
				FUZZ_CHECK(
				    cmd.size_given && p->value != NULL &&
				        ref_decimal(p->value, strlen(p->value), true, &v) == 0 &&
				        v == cmd.size && strlen(p->value) <= SMTP_SIZE_MAX_DIGITS,
				    "SIZE=%s read as %llu", p->value ? p->value : "(none)",
				    (unsigned long long)cmd.size);
			}
		}
		break;
	}
	case SMTP_VERB_BDAT: {
		uint64_t v = 0;
		size_t i = 0, n = 0;
		while (i < rest_len && rest[i] == ' ')
			i++;
		while (i + n < rest_len && rest[i + n] != ' ')
			n++;
		/* BDAT sizes do not saturate: a size past 2^64-1 is refused. */
		FUZZ_CHECK(ref_decimal(rest + i, n, false, &v) == 0 && v == cmd.bdat_size,
		           "BDAT size %llu for \"%.*s\"", (unsigned long long)cmd.bdat_size,
		           (int)rest_len, rest);
		break;
	}
	case SMTP_VERB_DATA:
	case SMTP_VERB_RSET:
	case SMTP_VERB_QUIT:
	case SMTP_VERB_STARTTLS:
		for (size_t i = 0; i < rest_len; i++)
			FUZZ_CHECK(rest[i] == ' ', "%s accepted an argument", name);
		break;
	default:
		break;
	}
	free(line);
}

/* Each address function under every flag combination; more flags may only
 * accept more, with the same canon. */
static void check_addresses(const char *s, size_t len)
{
	enum smtp_addr_error path_err[8], mbox_err[8];
	struct smtp_mailbox path_mb[8], mbox_mb[8];

	for (unsigned f = 0; f < 8; f++) {
		size_t used = 0;

		path_err[f] = smtp_path_parse(s, len, f, &path_mb[f], &used);
		if (path_err[f] == SMTP_ADDR_OK) {
			FUZZ_CHECK(used >= 2 && used <= len && s[used - 1] == '>' &&
			               used <= SMTP_PATH_MAX,
			           "path parse used %zu of %zu", used, len);
			check_mailbox(&path_mb[f], f, "smtp_path_parse");
		} else {
			FUZZ_CHECK(all_zero(&path_mb[f], sizeof(path_mb[f])),
			           "mailbox not zeroed on error");
		}
		mbox_err[f] = smtp_mailbox_parse(s, len, f, &mbox_mb[f]);
		if (mbox_err[f] == SMTP_ADDR_OK)
			check_mailbox(&mbox_mb[f], f, "smtp_mailbox_parse");
		else
			FUZZ_CHECK(all_zero(&mbox_mb[f], sizeof(mbox_mb[f])),
			           "mailbox not zeroed on error");
	}
	for (unsigned f = 0; f < 8; f++) {
		for (unsigned g = 0; g < 8; g++) {
			if ((f & g) != f)
				continue; /* g is not a superset of f */
			if (path_err[f] == SMTP_ADDR_OK)
				FUZZ_CHECK(path_err[g] == SMTP_ADDR_OK &&
				               strcmp(path_mb[f].canon, path_mb[g].canon) == 0,
				           "path accepted with flags %u but not %u", f, g);
			if (mbox_err[f] == SMTP_ADDR_OK)
				FUZZ_CHECK(mbox_err[g] == SMTP_ADDR_OK &&
				               strcmp(mbox_mb[f].canon, mbox_mb[g].canon) == 0,
				           "mailbox accepted with flags %u but not %u", f, g);
		}
	}
	for (unsigned f = 0; f < 2; f++) {
		unsigned flags = f ? SMTP_ADDR_SMTPUTF8 : 0;
		enum smtp_addr_error strict = smtp_domain_check(s, len, flags, false);
		enum smtp_addr_error lenient = smtp_domain_check(s, len, flags, true);
		FUZZ_CHECK(strict != SMTP_ADDR_OK || lenient == SMTP_ADDR_OK,
		           "domain accepted strictly but not leniently");
		FUZZ_CHECK(lenient != SMTP_ADDR_OK || (len > 0 && len <= SMTP_DOMAIN_MAX),
		           "domain of %zu octets accepted", len);
		FUZZ_CHECK(f == 1 || lenient != SMTP_ADDR_OK ||
		               smtp_domain_check(s, len, SMTP_ADDR_SMTPUTF8, true) == SMTP_ADDR_OK,
		           "domain accepted without SMTPUTF8 but not with it");
		FUZZ_CHECK(smtp_addr_strerror(lenient) != NULL, "no text for address error");
	}
	FUZZ_CHECK(smtp_utf8_valid(s, len) == ref_utf8_valid((const unsigned char *)s, len),
	           "smtp_utf8_valid disagrees with RFC 3629");
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	/* An exact-size copy, so reading past the end is caught. */
	char *s = malloc(size + 1);
	memcpy(s, data, size);
	s[size] = '\0';

	check_command(s, size, false);
	check_command(s, size, true);
	char *exact = malloc(size ? size : 1);
	memcpy(exact, data, size);
	check_addresses(exact, size);
	free(exact);
	free(s);
	return 0;
}
