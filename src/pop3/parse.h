/* POP3 command lines (RFC 1939 §3, RFC 2449 §4): a keyword of 3-4
 * characters, then arguments separated by single spaces, at most 255 octets
 * including CRLF. */
#ifndef PILLAR_POP3_PARSE_H
#define PILLAR_POP3_PARSE_H

#include <stddef.h>
#include <stdint.h>

/* RFC 2449 §4: a command line is at most 255 octets including the CRLF. */
#define POP3_MAX_LINE 255
/* RFC 1939 keywords are 3-4 characters; RFC 2449 allows extensions up to 4. */
#define POP3_MAX_KEYWORD 4
#define POP3_MAX_ARGS    2

struct pop3_cmd {
	char keyword[POP3_MAX_KEYWORD + 1]; /* upper-cased */
	unsigned argc;
	const char *argv[POP3_MAX_ARGS]; /* point into the line, NUL-terminated */
};

enum pop3_parse_result {
	POP3_PARSE_OK = 0,
	POP3_PARSE_EMPTY,    /* empty line */
	POP3_PARSE_BAD_CHAR, /* NUL, CR or another control character in the line */
	POP3_PARSE_KEYWORD,  /* keyword not 3-4 letters */
	POP3_PARSE_TOO_MANY, /* more than POP3_MAX_ARGS arguments */
};

/* Parse line[0..len) (without the line terminator) in place: spaces between
 * arguments are replaced by NULs. For PASS the rest of the line after the
 * first space is one argument, so passwords may contain spaces (RFC 1939 §7
 * notes this is common practice). */
enum pop3_parse_result pop3_parse(char *line, size_t len, struct pop3_cmd *cmd);

/* A message number argument: decimal digits only, 1..max. Returns 0 or -1. */
int pop3_parse_msgnum(const char *arg, uint64_t max, uint64_t *out);

#endif
