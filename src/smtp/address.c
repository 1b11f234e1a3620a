/* SMTP envelope address parsing (RFC 5321 §4.1.2, RFC 6531 §3.3). See
 * address.h for the contract.
 *
 * Written by hand: the grammar is small, the limits are SMTP's own, and the
 * mail libraries that parse addresses (RFC 5322 header parsers) accept a
 * different, much larger language (comments, folding, obsolete forms) that
 * must not be accepted in an envelope.
 *
 * The parser runs in one pass over the octets and records where the local
 * part and domain are; UTF-8 and length checks, and the copy into the
 * result, happen only after the grammar matched. */
#include "smtp/address.h"

#include <arpa/inet.h>
#include <strings.h>
#include <string.h>

static bool is_alpha(unsigned char c)
{
	return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z');
}

static bool is_digit(unsigned char c)
{
	return c >= '0' && c <= '9';
}

static char ascii_lower(char c)
{
	return (c >= 'A' && c <= 'Z') ? (char)(c - 'A' + 'a') : c;
}

/* atext, RFC 5322 §3.2.3 as used by RFC 5321 §4.1.2; 8-bit octets are
 * admitted here and judged later (RFC 6531 §3.3: atext =/ UTF8-non-ascii). */
static bool is_atext(unsigned char c)
{
	if (is_alpha(c) || is_digit(c) || c >= 0x80)
		return true;
	return c != '\0' && strchr("!#$%&'*+-/=?^_`{|}~", c) != NULL;
}

/* qtextSMTP, RFC 5321 §4.1.2: %d32-33 / %d35-91 / %d93-126 (plus 8-bit,
 * RFC 6531 §3.3). */
static bool is_qtext(unsigned char c)
{
	return (c >= 32 && c <= 126 && c != '"' && c != '\\') || c >= 0x80;
}

/* A character that may appear inside a domain label: Let-dig and '-'
 * (RFC 5321 §4.1.2), 8-bit for U-labels (RFC 6531 §3.3), '_' when lenient. */
static bool is_label_char(unsigned char c, bool lenient)
{
	return is_alpha(c) || is_digit(c) || c == '-' || c >= 0x80 || (lenient && c == '_');
}

bool smtp_utf8_valid(const char *str, size_t len)
{
	const unsigned char *s = (const unsigned char *)str;
	size_t i = 0;

	/* RFC 3629 §4, UTF8-octets. The second octet's range depends on the
	 * first; that is what rules out overlong forms (E0 80..9F, F0
	 * 80..8F), surrogates (ED A0..BF) and values past U+10FFFF (F4
	 * 90..BF, F5..FF). */
	while (i < len) {
		unsigned char c = s[i];
		unsigned char lo = 0x80, hi = 0xbf;
		size_t n;

		if (c < 0x80) {
			i++;
			continue;
		}
		if (c >= 0xc2 && c <= 0xdf) {
			n = 1;
		} else if (c >= 0xe0 && c <= 0xef) {
			n = 2;
			if (c == 0xe0)
				lo = 0xa0;
			else if (c == 0xed)
				hi = 0x9f;
		} else if (c >= 0xf0 && c <= 0xf4) {
			n = 3;
			if (c == 0xf0)
				lo = 0x90;
			else if (c == 0xf4)
				hi = 0x8f;
		} else {
			return false; /* continuation, C0/C1 overlong lead, F5+ */
		}
		if (len - i - 1 < n)
			return false; /* truncated */
		if (s[i + 1] < lo || s[i + 1] > hi)
			return false;
		for (size_t k = 2; k <= n; k++) {
			if (s[i + k] < 0x80 || s[i + k] > 0xbf)
				return false;
		}
		i += n + 1;
	}
	return true;
}

/* Snum = 1*3DIGIT, value 0..255 (RFC 5321 §4.1.3); IPv4-address-literal =
 * Snum 3("." Snum). */
static bool ipv4_literal_valid(const char *s, size_t len)
{
	size_t i = 0;

	for (int part = 0; part < 4; part++) {
		unsigned v = 0, digits = 0;

		if (part > 0) {
			if (i >= len || s[i] != '.')
				return false;
			i++;
		}
		while (i < len && is_digit((unsigned char)s[i]) && digits < 3) {
			v = v * 10 + (unsigned)(s[i] - '0');
			digits++;
			i++;
		}
		if (digits == 0 || v > 255)
			return false;
	}
	return i == len;
}

/* The content between '[' and ']' (RFC 5321 §4.1.3). IPv6 addresses are
 * checked with inet_pton, whose accepted forms (full, compressed, with an
 * embedded IPv4 tail) are the IPv6-addr alternatives of the RFC. */
static bool literal_valid(const char *s, size_t len)
{
	char buf[64];
	struct in6_addr a6;

	if (len > 5 && strncasecmp(s, "IPv6:", 5) == 0) {
		if (len - 5 >= sizeof(buf))
			return false;
		memcpy(buf, s + 5, len - 5);
		buf[len - 5] = '\0';
		return inet_pton(AF_INET6, buf, &a6) == 1;
	}
	return ipv4_literal_valid(s, len);
}

/* Scan a Domain or address-literal starting at s[*pos]; stop at the first
 * octet that cannot continue it (the caller checks what that is). Sets
 * *eight_bit when a label has an octet >= 0x80. */
static enum smtp_addr_error scan_domain(const char *s, size_t len, size_t *pos, bool lenient,
                                        bool *literal, bool *eight_bit)
{
	size_t i = *pos;

	*literal = false;
	if (i < len && s[i] == '[') {
		size_t start = ++i;

		/* dcontent = %d33-90 / %d94-126 (RFC 5321 §4.1.3). */
		while (i < len && s[i] != ']') {
			unsigned char c = (unsigned char)s[i];
			if (c < 33 || c > 126 || c == '[' || c == '\\')
				return SMTP_ADDR_SYNTAX;
			i++;
		}
		if (i == len || !literal_valid(s + start, i - start))
			return SMTP_ADDR_SYNTAX;
		*literal = true;
		*pos = i + 1;
		return SMTP_ADDR_OK;
	}

	for (;;) {
		size_t start = i;

		while (i < len && is_label_char((unsigned char)s[i], lenient)) {
			if ((unsigned char)s[i] >= 0x80)
				*eight_bit = true;
			i++;
		}
		/* sub-domain = Let-dig [Ldh-str]: no empty label, no '-' at
		 * either end (RFC 5321 §4.1.2). */
		if (i == start || s[start] == '-' || s[i - 1] == '-')
			return SMTP_ADDR_SYNTAX;
		if (i - start > SMTP_LABEL_MAX)
			return SMTP_ADDR_TOO_LONG;
		if (i < len && s[i] == '.') {
			i++;
			continue;
		}
		break;
	}
	*pos = i;
	return SMTP_ADDR_OK;
}

/* Where the pieces of a mailbox were found in the input. */
struct mailbox_span {
	size_t local_start, local_end; /* as on the wire, quotes included */
	size_t domain_start, domain_end;
	bool quoted, has_domain, literal, eight_bit;
};

/* Local-part "@" Domain at s[*pos]; or, with allow_postmaster, a bare
 * "postmaster" not followed by '@'. */
static enum smtp_addr_error scan_mailbox(const char *s, size_t len, size_t *pos,
                                         bool allow_postmaster, struct mailbox_span *sp)
{
	size_t i = *pos;
	enum smtp_addr_error err;

	memset(sp, 0, sizeof(*sp));
	sp->local_start = i;
	if (i < len && s[i] == '"') {
		/* Quoted-string = DQUOTE *QcontentSMTP DQUOTE;
		 * quoted-pairSMTP = "\" %d32-126 (RFC 5321 §4.1.2). */
		sp->quoted = true;
		i++;
		for (;;) {
			if (i >= len)
				return SMTP_ADDR_SYNTAX;
			unsigned char c = (unsigned char)s[i];
			if (c == '"')
				break;
			if (c == '\\') {
				if (i + 1 >= len || (unsigned char)s[i + 1] < 32 ||
				    (unsigned char)s[i + 1] > 126)
					return SMTP_ADDR_SYNTAX;
				i += 2;
				continue;
			}
			if (!is_qtext(c))
				return SMTP_ADDR_SYNTAX;
			if (c >= 0x80)
				sp->eight_bit = true;
			i++;
		}
		i++; /* closing quote */
	} else {
		/* Dot-string = Atom *("." Atom). */
		for (;;) {
			size_t start = i;
			while (i < len && is_atext((unsigned char)s[i])) {
				if ((unsigned char)s[i] >= 0x80)
					sp->eight_bit = true;
				i++;
			}
			if (i == start)
				return SMTP_ADDR_SYNTAX;
			if (i < len && s[i] == '.') {
				i++;
				continue;
			}
			break;
		}
	}
	sp->local_end = i;

	if (i >= len || s[i] != '@') {
		/* RFC 5321 §4.1.1.3: "<Postmaster>" with no domain must be
		 * accepted as a recipient. */
		if (allow_postmaster && !sp->quoted && i - sp->local_start == 10 &&
		    strncasecmp(s + sp->local_start, "postmaster", 10) == 0) {
			*pos = i;
			return SMTP_ADDR_OK;
		}
		return SMTP_ADDR_SYNTAX;
	}
	i++;
	sp->has_domain = true;
	sp->domain_start = i;
	err = scan_domain(s, len, &i, false, &sp->literal, &sp->eight_bit);
	if (err != SMTP_ADDR_OK)
		return err;
	sp->domain_end = i;
	*pos = i;
	return SMTP_ADDR_OK;
}

/* Is content[0..len) (a decoded quoted local part) also a valid Dot-string,
 * so that the quotes can go? */
static bool needs_no_quotes(const char *s, size_t len)
{
	if (len == 0 || s[0] == '.' || s[len - 1] == '.')
		return false;
	for (size_t i = 0; i < len; i++) {
		if (s[i] == '.') {
			if (s[i + 1] == '.')
				return false;
			continue;
		}
		if (!is_atext((unsigned char)s[i]))
			return false;
	}
	return true;
}

/* Write the canonical local part for a quoted local part s[0..len) (quotes
 * included) into out; returns the length written. The result is never
 * longer than the input: unquoting drops two octets, and re-quoting escapes
 * only '"' and '\', which had to be escaped on input too. */
static size_t canon_quoted_local(const char *s, size_t len, char *out)
{
	char content[SMTP_LOCAL_MAX];
	size_t n = 0, w = 0;

	for (size_t i = 1; i + 1 < len; i++) {
		if (s[i] == '\\')
			i++;
		content[n++] = ascii_lower(s[i]);
	}
	if (needs_no_quotes(content, n)) {
		memcpy(out, content, n);
		return n;
	}
	out[w++] = '"';
	for (size_t i = 0; i < n; i++) {
		if (content[i] == '"' || content[i] == '\\')
			out[w++] = '\\';
		out[w++] = content[i];
	}
	out[w++] = '"';
	return w;
}

/* Judge and copy a matched mailbox into *mb. */
static enum smtp_addr_error finish_mailbox(const char *s, const struct mailbox_span *sp,
                                           unsigned flags, struct smtp_mailbox *mb)
{
	size_t local_len = sp->local_end - sp->local_start;
	size_t domain_len = sp->domain_end - sp->domain_start;
	size_t text_len = sp->has_domain ? sp->domain_end - sp->local_start : local_len;
	size_t w;

	if (sp->eight_bit) {
		/* RFC 6531 §3.3/§3.5: non-ASCII addresses need SMTPUTF8. */
		if (!(flags & SMTP_ADDR_SMTPUTF8))
			return SMTP_ADDR_UTF8_NOT_ALLOWED;
		if (!smtp_utf8_valid(s + sp->local_start, local_len) ||
		    (sp->has_domain && !smtp_utf8_valid(s + sp->domain_start, domain_len)))
			return SMTP_ADDR_BAD_UTF8;
	}
	/* RFC 5321 §4.5.3.1.1 and §4.5.3.1.2. */
	if (local_len > SMTP_LOCAL_MAX || domain_len > SMTP_DOMAIN_MAX ||
	    text_len > SMTP_MAILBOX_MAX)
		return SMTP_ADDR_TOO_LONG;

	memcpy(mb->text, s + sp->local_start, text_len);
	mb->text[text_len] = '\0';
	mb->utf8 = sp->eight_bit;
	mb->literal = sp->literal;

	if (sp->quoted) {
		w = canon_quoted_local(s + sp->local_start, local_len, mb->canon);
	} else {
		for (w = 0; w < local_len; w++)
			mb->canon[w] = ascii_lower(s[sp->local_start + w]);
	}
	mb->local_len = (uint16_t)w;
	if (!sp->has_domain) {
		mb->is_postmaster = true;
		mb->domain_off = (uint16_t)w;
		mb->canon[w] = '\0';
		return SMTP_ADDR_OK;
	}
	mb->canon[w++] = '@';
	mb->domain_off = (uint16_t)w;
	for (size_t i = 0; i < domain_len; i++)
		mb->canon[w++] = ascii_lower(s[sp->domain_start + i]);
	mb->canon[w] = '\0';
	return SMTP_ADDR_OK;
}

enum smtp_addr_error smtp_path_parse(const char *s, size_t len, unsigned flags,
                                     struct smtp_mailbox *mb, size_t *used_r)
{
	struct mailbox_span sp;
	enum smtp_addr_error err;
	size_t i = 1;
	bool literal, eight_bit = false;

	memset(mb, 0, sizeof(*mb));
	if (len < 2 || s[0] != '<')
		return SMTP_ADDR_SYNTAX;
	if (s[1] == '>') {
		/* Reverse-path = Path / "<>" (RFC 5321 §4.1.2); only MAIL
		 * may use the null path (§4.5.5). */
		if (!(flags & SMTP_ADDR_ALLOW_NULL))
			return SMTP_ADDR_SYNTAX;
		mb->is_null = true;
		*used_r = 2;
		return SMTP_ADDR_OK;
	}

	if (s[i] == '@') {
		/* A-d-l = At-domain *( "," At-domain ) ":" — a source route.
		 * RFC 5321 §4.1.2 and Appendix C: servers SHOULD accept and
		 * ignore it. */
		for (;;) {
			i++; /* '@' */
			err = scan_domain(s, len, &i, false, &literal, &eight_bit);
			if (err != SMTP_ADDR_OK)
				return SMTP_ADDR_SYNTAX;
			if (i < len && s[i] == ',' && i + 1 < len && s[i + 1] == '@') {
				i++;
				continue;
			}
			break;
		}
		if (i >= len || s[i] != ':')
			return SMTP_ADDR_SYNTAX;
		i++;
		if (eight_bit && !(flags & SMTP_ADDR_SMTPUTF8))
			return SMTP_ADDR_UTF8_NOT_ALLOWED;
		if (eight_bit && !smtp_utf8_valid(s + 1, i - 1))
			return SMTP_ADDR_BAD_UTF8;
	}

	err = scan_mailbox(s, len, &i, (flags & SMTP_ADDR_ALLOW_POSTMASTER) != 0, &sp);
	if (err == SMTP_ADDR_OK && (i >= len || s[i] != '>'))
		err = SMTP_ADDR_SYNTAX;
	if (err == SMTP_ADDR_OK)
		err = finish_mailbox(s, &sp, flags, mb);
	/* RFC 5321 §4.5.3.1.3, counted from '<' to '>' inclusive. */
	if (err == SMTP_ADDR_OK && i + 1 > SMTP_PATH_MAX)
		err = SMTP_ADDR_TOO_LONG;
	if (err != SMTP_ADDR_OK) {
		memset(mb, 0, sizeof(*mb));
		return err;
	}
	*used_r = i + 1;
	return SMTP_ADDR_OK;
}

enum smtp_addr_error smtp_mailbox_parse(const char *s, size_t len, unsigned flags,
                                        struct smtp_mailbox *mb)
{
	struct mailbox_span sp;
	enum smtp_addr_error err;
	size_t i = 0;

	memset(mb, 0, sizeof(*mb));
	if (len == 0) {
		if (!(flags & SMTP_ADDR_ALLOW_NULL))
			return SMTP_ADDR_SYNTAX;
		mb->is_null = true;
		return SMTP_ADDR_OK;
	}
	err = scan_mailbox(s, len, &i, (flags & SMTP_ADDR_ALLOW_POSTMASTER) != 0, &sp);
	if (err == SMTP_ADDR_OK && i != len)
		err = SMTP_ADDR_SYNTAX;
	if (err == SMTP_ADDR_OK)
		err = finish_mailbox(s, &sp, flags, mb);
	if (err != SMTP_ADDR_OK)
		memset(mb, 0, sizeof(*mb));
	return err;
}

enum smtp_addr_error smtp_domain_check(const char *s, size_t len, unsigned flags, bool lenient)
{
	enum smtp_addr_error err;
	size_t i = 0;
	bool literal, eight_bit = false;

	err = scan_domain(s, len, &i, lenient, &literal, &eight_bit);
	if (err != SMTP_ADDR_OK)
		return err;
	if (i != len)
		return SMTP_ADDR_SYNTAX;
	if (eight_bit) {
		if (!(flags & SMTP_ADDR_SMTPUTF8))
			return SMTP_ADDR_UTF8_NOT_ALLOWED;
		if (!smtp_utf8_valid(s, len))
			return SMTP_ADDR_BAD_UTF8;
	}
	if (len > SMTP_DOMAIN_MAX)
		return SMTP_ADDR_TOO_LONG;
	return SMTP_ADDR_OK;
}

const char *smtp_addr_strerror(enum smtp_addr_error err)
{
	switch (err) {
	case SMTP_ADDR_OK:
		return "ok";
	case SMTP_ADDR_SYNTAX:
		return "address syntax error";
	case SMTP_ADDR_TOO_LONG:
		return "address too long";
	case SMTP_ADDR_UTF8_NOT_ALLOWED:
		return "non-ASCII address without SMTPUTF8";
	case SMTP_ADDR_BAD_UTF8:
		return "address is not valid UTF-8";
	}
	return "address error";
}
