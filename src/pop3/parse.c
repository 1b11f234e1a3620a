/* POP3 command line parsing (RFC 1939 §3, RFC 2449 §4). See parse.h. */
#include "pop3/parse.h"

#include <stdbool.h>
#include <string.h>

static bool is_ascii_letter(char c)
{
	return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z');
}

enum pop3_parse_result pop3_parse(char *line, size_t len, struct pop3_cmd *cmd)
{
	memset(cmd, 0, sizeof(*cmd));
	if (len == 0)
		return POP3_PARSE_EMPTY;

	/* Control characters never belong in a command; a NUL would also cut
	 * an argument short behind the caller's back. 8-bit bytes are allowed
	 * (RFC 6856 UTF8 user names and passwords). */
	for (size_t i = 0; i < len; i++) {
		unsigned char c = (unsigned char)line[i];
		if (c < 0x20 || c == 0x7f)
			return POP3_PARSE_BAD_CHAR;
	}

	size_t kw_len = 0;
	while (kw_len < len && line[kw_len] != ' ')
		kw_len++;
	if (kw_len < 3 || kw_len > POP3_MAX_KEYWORD)
		return POP3_PARSE_KEYWORD;
	for (size_t i = 0; i < kw_len; i++) {
		if (!is_ascii_letter(line[i]))
			return POP3_PARSE_KEYWORD;
		char c = line[i];
		cmd->keyword[i] = (c >= 'a' && c <= 'z') ? (char)(c - 'a' + 'A') : c;
	}
	cmd->keyword[kw_len] = '\0';

	/* Arguments must be NUL-terminated in place; the last one ends where
	 * the line terminator was. */
	line[len] = '\0';
	if (kw_len == len)
		return POP3_PARSE_OK;

	if (strcmp(cmd->keyword, "PASS") == 0) {
		/* RFC 1939 §7: the password is the rest of the line, spaces
		 * and all. */
		if (kw_len + 1 < len) {
			cmd->argv[0] = line + kw_len + 1;
			cmd->argc = 1;
		}
		return POP3_PARSE_OK;
	}

	size_t i = kw_len;
	while (i < len) {
		/* Any run of spaces separates; no empty arguments. */
		while (i < len && line[i] == ' ')
			line[i++] = '\0';
		if (i == len)
			break;
		if (cmd->argc == POP3_MAX_ARGS) {
			memset(cmd, 0, sizeof(*cmd));
			return POP3_PARSE_TOO_MANY;
		}
		cmd->argv[cmd->argc++] = line + i;
		while (i < len && line[i] != ' ')
			i++;
	}
	return POP3_PARSE_OK;
}

int pop3_parse_msgnum(const char *arg, uint64_t max, uint64_t *out)
{
	uint64_t v = 0;

	if (arg == NULL || arg[0] == '\0')
		return -1;
	for (const char *p = arg; *p != '\0'; p++) {
		if (*p < '0' || *p > '9')
			return -1;
		unsigned d = (unsigned)(*p - '0');
		/* Stop as soon as the value is past max: no wrap-around. */
		if (v > (max - d) / 10 || v * 10 + d > max)
			return -1;
		v = v * 10 + d;
	}
	if (v == 0)
		return -1;
	*out = v;
	return 0;
}
