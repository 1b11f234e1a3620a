/* SMTP/LMTP command line parsing. See parse.h for the contract.
 *
 * Order of checks: length and octets of the whole line first (a NUL or CR
 * must never reach a handler, whatever the verb), then the verb, then the
 * verb's own grammar. Paths go to address.c; parameters are split here and
 * interpreted per verb. */
#include "smtp/parse.h"

#include <string.h>
#include <strings.h>

#include "core/util.h"

struct verb_def {
	const char *name;
	size_t len;
	enum smtp_verb verb;
};

#define VERB(n, v)                                                                                 \
	{                                                                                          \
		n, sizeof(n) - 1, v                                                                \
	}
static const struct verb_def verbs[] = {
    VERB("EHLO", SMTP_VERB_EHLO),         VERB("HELO", SMTP_VERB_HELO),
    VERB("LHLO", SMTP_VERB_LHLO),         VERB("MAIL", SMTP_VERB_MAIL),
    VERB("RCPT", SMTP_VERB_RCPT),         VERB("DATA", SMTP_VERB_DATA),
    VERB("BDAT", SMTP_VERB_BDAT),         VERB("RSET", SMTP_VERB_RSET),
    VERB("NOOP", SMTP_VERB_NOOP),         VERB("QUIT", SMTP_VERB_QUIT),
    VERB("VRFY", SMTP_VERB_VRFY),         VERB("HELP", SMTP_VERB_HELP),
    VERB("STARTTLS", SMTP_VERB_STARTTLS), VERB("AUTH", SMTP_VERB_AUTH),
};
#undef VERB

const char *smtp_verb_name(enum smtp_verb verb)
{
	for (size_t i = 0; i < sizeof(verbs) / sizeof(verbs[0]); i++) {
		if (verbs[i].verb == verb)
			return verbs[i].name;
	}
	return "-";
}

static bool is_alnum(unsigned char c)
{
	return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9');
}

/* The whole line: RFC 5321 §2.3.8 — CR and LF only ever appear together as
 * the line terminator, which the caller has removed; a NUL has no place in
 * a command and would cut strings short. */
static enum smtp_parse_result check_octets(const char *line, size_t len)
{
	for (size_t i = 0; i < len; i++) {
		unsigned char c = (unsigned char)line[i];
		if (c >= 0x20 && c != 0x7f)
			continue;
		if (c == '\0')
			return SMTP_PARSE_NUL;
		if (c == '\r' || c == '\n')
			return SMTP_PARSE_BARE_CR_LF;
		return SMTP_PARSE_CONTROL;
	}
	return SMTP_PARSE_OK;
}

/* Split "KEYWORD[=VALUE] ..." at p (NUL-terminated, no trailing spaces)
 * into cmd->params, in place. RFC 5321 §4.1.2:
 *   esmtp-keyword = (ALPHA / DIGIT) *(ALPHA / DIGIT / "-")
 *   esmtp-value   = 1*(%d33-60 / %d62-126)     (+ UTF8-non-ascii, RFC 6531 §3.3)
 * UTF-8 in values is not validated here: no value we interpret may
 * contain it, so it can only be part of a parameter we refuse anyway. */
static enum smtp_parse_result split_params(char *p, struct smtp_cmd *cmd)
{
	while (*p != '\0') {
		while (*p == ' ')
			p++;
		if (*p == '\0')
			break;
		if (cmd->nparams == SMTP_MAX_PARAMS)
			return SMTP_PARSE_TOO_MANY_PARAMS;
		struct smtp_param *prm = &cmd->params[cmd->nparams++];
		prm->keyword = p;
		prm->value = NULL;
		if (!is_alnum((unsigned char)*p))
			return SMTP_PARSE_SYNTAX;
		while (is_alnum((unsigned char)*p) || *p == '-')
			p++;
		if (*p == '=') {
			*p++ = '\0';
			prm->value = p;
			while (*p != '\0' && *p != ' ' && *p != '=')
				p++;
			if (p == prm->value || *p == '=')
				return SMTP_PARSE_SYNTAX;
		}
		if (*p == ' ')
			*p++ = '\0';
		else if (*p != '\0')
			return SMTP_PARSE_SYNTAX;
	}
	return SMTP_PARSE_OK;
}

/* RFC 1870 §3: size-value ::= 1*20DIGIT. A value that does not fit in 64
 * bits is still a well-formed declaration of a message far too big, so it
 * saturates to UINT64_MAX (the session refuses it with 552 5.3.4) instead
 * of being a syntax error. */
static int parse_size_value(const char *v, uint64_t *out)
{
	size_t n = strlen(v);

	if (n == 0 || n > SMTP_SIZE_MAX_DIGITS)
		return -1;
	for (size_t i = 0; i < n; i++) {
		if (v[i] < '0' || v[i] > '9')
			return -1;
	}
	if (parse_uint(v, n, UINT64_MAX, out) < 0)
		*out = UINT64_MAX;
	return 0;
}

static enum smtp_parse_result mail_params(struct smtp_cmd *cmd)
{
	for (unsigned i = 0; i < cmd->nparams; i++) {
		const struct smtp_param *prm = &cmd->params[i];
		const char *v = prm->value;

		cmd->bad_param = prm->keyword;
		if (strcasecmp(prm->keyword, "SIZE") == 0) {
			/* RFC 1870 §6. */
			if (cmd->size_given || v == NULL || parse_size_value(v, &cmd->size) < 0)
				return SMTP_PARSE_BAD_PARAM;
			cmd->size_given = true;
		} else if (strcasecmp(prm->keyword, "BODY") == 0) {
			/* RFC 6152 §2, RFC 3030 §3. */
			if (cmd->body != SMTP_BODY_NONE || v == NULL)
				return SMTP_PARSE_BAD_PARAM;
			if (strcasecmp(v, "7BIT") == 0)
				cmd->body = SMTP_BODY_7BIT;
			else if (strcasecmp(v, "8BITMIME") == 0)
				cmd->body = SMTP_BODY_8BITMIME;
			else if (strcasecmp(v, "BINARYMIME") == 0)
				cmd->body = SMTP_BODY_BINARYMIME;
			else
				return SMTP_PARSE_BAD_PARAM;
		} else if (strcasecmp(prm->keyword, "SMTPUTF8") == 0) {
			/* RFC 6531 §3.4: no value. */
			if (cmd->smtputf8 || v != NULL)
				return SMTP_PARSE_BAD_PARAM;
			cmd->smtputf8 = true;
		} else {
			/* RFC 5321 §4.1.1.11: 555 for parameters not
			 * recognised or not implemented. */
			return SMTP_PARSE_UNKNOWN_PARAM;
		}
	}
	cmd->bad_param = NULL;
	return SMTP_PARSE_OK;
}

/* "FROM:" / "TO:" [SP] Path [SP params] — for MAIL and RCPT. */
static enum smtp_parse_result parse_mail_rcpt(char *args, size_t len, bool smtputf8,
                                              struct smtp_cmd *cmd)
{
	bool mail = cmd->verb == SMTP_VERB_MAIL;
	const char *prefix = mail ? "FROM:" : "TO:";
	size_t plen = strlen(prefix), used = 0;
	unsigned flags;
	enum smtp_parse_result r;

	if (len < plen || strncasecmp(args, prefix, plen) != 0)
		return SMTP_PARSE_SYNTAX;
	args += plen;
	len -= plen;
	/* One space after the colon: common practice, see parse.h. */
	if (len > 0 && args[0] == ' ') {
		args++;
		len--;
	}
	if (len == 0 || args[0] != '<')
		return SMTP_PARSE_SYNTAX;

	/* For MAIL the path may be UTF-8 only if SMTPUTF8 is among the
	 * parameters that follow it; parse permissively, judge below. */
	if (mail)
		flags = SMTP_ADDR_ALLOW_NULL | SMTP_ADDR_SMTPUTF8;
	else
		flags = SMTP_ADDR_ALLOW_POSTMASTER | (smtputf8 ? SMTP_ADDR_SMTPUTF8 : 0);
	cmd->addr_error = smtp_path_parse(args, len, flags, &cmd->path, &used);
	if (cmd->addr_error != SMTP_ADDR_OK)
		return SMTP_PARSE_ADDRESS;

	args += used;
	if (*args != '\0' && *args != ' ')
		return SMTP_PARSE_SYNTAX;
	r = split_params(args, cmd);
	if (r != SMTP_PARSE_OK)
		return r;

	if (!mail) {
		/* We implement no RCPT parameters (no DSN). */
		if (cmd->nparams > 0) {
			cmd->bad_param = cmd->params[0].keyword;
			return SMTP_PARSE_UNKNOWN_PARAM;
		}
		return SMTP_PARSE_OK;
	}
	r = mail_params(cmd);
	if (r != SMTP_PARSE_OK)
		return r;
	if (cmd->path.utf8 && !cmd->smtputf8) {
		/* RFC 6531 §3.5. */
		memset(&cmd->path, 0, sizeof(cmd->path));
		cmd->addr_error = SMTP_ADDR_UTF8_NOT_ALLOWED;
		return SMTP_PARSE_ADDRESS;
	}
	return SMTP_PARSE_OK;
}

/* RFC 3030 §2: bdat-cmd = "BDAT" SP chunk-size [ SP end-marker ] CRLF,
 * chunk-size = 1*DIGIT, end-marker = "LAST". */
static enum smtp_parse_result parse_bdat(const char *args, size_t len, struct smtp_cmd *cmd)
{
	size_t n = 0;

	while (n < len && args[n] != ' ')
		n++;
	if (parse_uint(args, n, UINT64_MAX, &cmd->bdat_size) < 0)
		return SMTP_PARSE_SYNTAX;
	while (n < len && args[n] == ' ')
		n++;
	if (n == len)
		return SMTP_PARSE_OK;
	if (len - n == 4 && strncasecmp(args + n, "LAST", 4) == 0) {
		cmd->bdat_last = true;
		return SMTP_PARSE_OK;
	}
	return SMTP_PARSE_SYNTAX;
}

enum smtp_parse_result smtp_parse(char *line, size_t len, bool smtputf8, struct smtp_cmd *cmd)
{
	enum smtp_parse_result r;
	size_t vlen = 0;
	char *args;
	size_t alen;

	memset(cmd, 0, sizeof(*cmd));
	if (len > SMTP_MAX_LINE - 2)
		return SMTP_PARSE_TOO_LONG;
	r = check_octets(line, len);
	if (r != SMTP_PARSE_OK)
		return r;
	/* Trailing spaces: tolerated everywhere (see parse.h). */
	while (len > 0 && line[len - 1] == ' ')
		len--;
	line[len] = '\0';
	if (len == 0)
		return SMTP_PARSE_EMPTY;

	while (vlen < len && line[vlen] != ' ')
		vlen++;
	for (size_t i = 0; i < sizeof(verbs) / sizeof(verbs[0]); i++) {
		if (verbs[i].len == vlen && strncasecmp(line, verbs[i].name, vlen) == 0) {
			cmd->verb = verbs[i].verb;
			break;
		}
	}
	if (cmd->verb == SMTP_VERB_NONE)
		return SMTP_PARSE_UNKNOWN_VERB;

	args = line + vlen;
	while (*args == ' ')
		args++;
	alen = len - (size_t)(args - line);

	switch (cmd->verb) {
	case SMTP_VERB_EHLO:
	case SMTP_VERB_HELO:
	case SMTP_VERB_LHLO:
		/* RFC 5321 §4.1.1.1, RFC 2033 §4.1: exactly one argument. */
		if (alen == 0 || smtp_domain_check(args, alen, 0, true) != SMTP_ADDR_OK)
			return SMTP_PARSE_SYNTAX;
		cmd->arg = args;
		return SMTP_PARSE_OK;
	case SMTP_VERB_MAIL:
	case SMTP_VERB_RCPT:
		return parse_mail_rcpt(args, alen, smtputf8, cmd);
	case SMTP_VERB_BDAT:
		return parse_bdat(args, alen, cmd);
	case SMTP_VERB_DATA:
	case SMTP_VERB_RSET:
	case SMTP_VERB_QUIT:
	case SMTP_VERB_STARTTLS:
		/* RFC 5321 §4.1.1.4, §4.1.1.5, §4.1.1.10; RFC 3207 §4. */
		return alen == 0 ? SMTP_PARSE_OK : SMTP_PARSE_SYNTAX;
	case SMTP_VERB_NOOP:
	case SMTP_VERB_HELP:
		/* RFC 5321 §4.1.1.8, §4.1.1.9: an optional string, ignored. */
		cmd->arg = alen > 0 ? args : NULL;
		return SMTP_PARSE_OK;
	case SMTP_VERB_VRFY:
	case SMTP_VERB_AUTH:
		/* RFC 5321 §4.1.1.6; RFC 4954 §4. */
		if (alen == 0)
			return SMTP_PARSE_SYNTAX;
		cmd->arg = args;
		return SMTP_PARSE_OK;
	case SMTP_VERB_NONE:
		break;
	}
	return SMTP_PARSE_UNKNOWN_VERB;
}

const char *smtp_parse_strerror(enum smtp_parse_result r)
{
	switch (r) {
	case SMTP_PARSE_OK:
		return "ok";
	case SMTP_PARSE_EMPTY:
		return "empty command line";
	case SMTP_PARSE_TOO_LONG:
		return "command line too long";
	case SMTP_PARSE_NUL:
		return "NUL in command line";
	case SMTP_PARSE_BARE_CR_LF:
		return "bare CR or LF in command line";
	case SMTP_PARSE_CONTROL:
		return "control character in command line";
	case SMTP_PARSE_UNKNOWN_VERB:
		return "command not recognized";
	case SMTP_PARSE_SYNTAX:
		return "syntax error in arguments";
	case SMTP_PARSE_ADDRESS:
		return "bad address";
	case SMTP_PARSE_UNKNOWN_PARAM:
		return "unknown ESMTP parameter";
	case SMTP_PARSE_BAD_PARAM:
		return "bad ESMTP parameter value";
	case SMTP_PARSE_TOO_MANY_PARAMS:
		return "too many ESMTP parameters";
	}
	return "parse error";
}

void smtp_parse_reply(enum smtp_parse_result r, enum smtp_verb verb,
                      enum smtp_addr_error addr_error, unsigned *code_r, const char **enhanced_r)
{
	/* Basic codes from RFC 5321 §4.2.2-§4.2.3, enhanced codes from
	 * RFC 3463 §3 (X.5.1 bad command, X.5.2 syntax, X.5.4 bad
	 * arguments, X.1.7 / X.1.3 bad sender / recipient address syntax)
	 * and RFC 6531 §3.5 (X.6.7). */
	switch (r) {
	case SMTP_PARSE_OK:
		*code_r = 250;
		*enhanced_r = "2.0.0";
		return;
	case SMTP_PARSE_EMPTY:
	case SMTP_PARSE_TOO_LONG: /* §4.5.3.1.10: "500 Line too long" */
	case SMTP_PARSE_NUL:
	case SMTP_PARSE_BARE_CR_LF:
	case SMTP_PARSE_CONTROL:
		*code_r = 500;
		*enhanced_r = "5.5.2";
		return;
	case SMTP_PARSE_UNKNOWN_VERB:
		*code_r = 500;
		*enhanced_r = "5.5.1";
		return;
	case SMTP_PARSE_SYNTAX:
	case SMTP_PARSE_BAD_PARAM:
		*code_r = 501;
		*enhanced_r = "5.5.4";
		return;
	case SMTP_PARSE_ADDRESS:
		if (addr_error == SMTP_ADDR_UTF8_NOT_ALLOWED) {
			*code_r = 553;
			*enhanced_r = "5.6.7";
			return;
		}
		/* §4.5.3.1.10: "501 Path too long"; 501 for bad syntax. */
		*code_r = 501;
		*enhanced_r = verb == SMTP_VERB_MAIL ? "5.1.7" : "5.1.3";
		return;
	case SMTP_PARSE_UNKNOWN_PARAM:
	case SMTP_PARSE_TOO_MANY_PARAMS:
		/* §4.1.1.11. */
		*code_r = 555;
		*enhanced_r = "5.5.4";
		return;
	}
	*code_r = 500;
	*enhanced_r = "5.5.2";
}
