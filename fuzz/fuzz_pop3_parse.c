/* libFuzzer target: POP3 command lines (pop3/parse.h).
 *
 * Input: one command line without its line terminator, as the connection
 * layer hands it to the session — any octets, NUL and CR included.
 *
 * Checked besides the sanitizers' findings:
 *   - a parsed line has a keyword of 3-4 letters, upper-cased, equal to the
 *     line's first word; at most POP3_MAX_ARGS arguments, each pointing into
 *     the line, non-empty, NUL-terminated inside it, free of spaces and
 *     control characters — except PASS, whose one argument is the rest of
 *     the line, spaces included;
 *   - no octet is lost: the arguments, concatenated, are the rest of the
 *     line with its spaces removed;
 *   - pop3_parse_msgnum agrees with a plain reference (decimal digits only,
 *     value 1..max, no wrap-around) for several maxima. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "common.h"
#include "pop3/parse.h"

/* Reference for pop3_parse_msgnum: digits only, 1 <= value <= max. The
 * value is accumulated in 128 bits, and only while it can still matter. */
static int ref_msgnum(const char *arg, uint64_t max, uint64_t *out)
{
	unsigned __int128 v = 0;

	if (arg[0] == '\0')
		return -1;
	for (const char *p = arg; *p != '\0'; p++) {
		if (*p < '0' || *p > '9')
			return -1;
		if (v <= max)
			v = v * 10 + (unsigned)(*p - '0');
	}
	if (v == 0 || v > max)
		return -1;
	*out = (uint64_t)v;
	return 0;
}

static void check_msgnum(const char *arg, uint64_t max)
{
	uint64_t got = 0, want = 0;
	int r = pop3_parse_msgnum(arg, max, &got);
	int w = ref_msgnum(arg, max, &want);

	FUZZ_CHECK(r == w, "pop3_parse_msgnum(\"%s\", %llu) returned %d, expected %d", arg,
	           (unsigned long long)max, r, w);
	FUZZ_CHECK(r < 0 || got == want, "pop3_parse_msgnum(\"%s\", %llu) = %llu, expected %llu",
	           arg, (unsigned long long)max, (unsigned long long)got, (unsigned long long)want);
}

static bool is_letter(char c)
{
	return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z');
}

static void check_parsed(const char *orig, const char *line, size_t len, const struct pop3_cmd *cmd)
{
	size_t kw = strlen(cmd->keyword);
	bool pass = strcmp(cmd->keyword, "PASS") == 0;

	FUZZ_CHECK(kw >= 3 && kw <= POP3_MAX_KEYWORD, "keyword length %zu", kw);
	FUZZ_CHECK(kw == len || orig[kw] == ' ', "keyword is not the first word");
	for (size_t i = 0; i < kw; i++) {
		FUZZ_CHECK(is_letter(orig[i]) && (cmd->keyword[i] & ~0x20) == (orig[i] & ~0x20) &&
		               cmd->keyword[i] >= 'A' && cmd->keyword[i] <= 'Z',
		           "keyword \"%s\" does not match the line", cmd->keyword);
	}
	FUZZ_CHECK(cmd->argc <= POP3_MAX_ARGS, "argc %u", cmd->argc);

	/* Every argument inside the line buffer, NUL-terminated there. */
	char joined[4096 + 1];
	size_t jn = 0;
	for (unsigned a = 0; a < cmd->argc; a++) {
		const char *arg = cmd->argv[a];
		FUZZ_CHECK(arg > line && arg < line + len, "argv[%u] outside the line", a);
		size_t alen = strlen(arg);
		FUZZ_CHECK(alen > 0 && arg + alen <= line + len, "argv[%u] empty or past the line",
		           a);
		for (size_t i = 0; i < alen; i++) {
			unsigned char c = (unsigned char)arg[i];
			FUZZ_CHECK(c >= 0x20 && c != 0x7f, "control character in argv[%u]", a);
			FUZZ_CHECK(pass || c != ' ', "space in argv[%u]", a);
		}
		if (pass) {
			FUZZ_CHECK(arg == line + 5 && alen == len - 5,
			           "PASS argument is not the rest of the line");
		}
		if (jn + alen < sizeof(joined)) {
			memcpy(joined + jn, arg, alen);
			jn += alen;
		}
	}
	if (pass)
		return;
	/* The rest of the line without its spaces is exactly the arguments. */
	char rest[4096 + 1];
	size_t rn = 0;
	for (size_t i = kw; i < len && rn < sizeof(rest); i++) {
		if (orig[i] != ' ')
			rest[rn++] = orig[i];
	}
	if (len < sizeof(rest))
		FUZZ_CHECK(rn == jn && memcmp(rest, joined, rn) == 0,
		           "arguments do not add up to the line");
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	/* pop3_parse writes line[len]: give it the room the connection's
	 * line buffer has. */
	char *line = malloc(size + 1);
	char *orig = malloc(size + 1);
	struct pop3_cmd cmd;

	memcpy(line, data, size);
	line[size] = 'X'; /* must be overwritten with NUL when it matters */
	memcpy(orig, data, size);
	orig[size] = '\0';

	enum pop3_parse_result r = pop3_parse(line, size, &cmd);
	FUZZ_CHECK(r >= POP3_PARSE_OK && r <= POP3_PARSE_TOO_MANY, "result %d", (int)r);
	FUZZ_CHECK(r != POP3_PARSE_EMPTY || size == 0, "EMPTY for a non-empty line");
	if (r == POP3_PARSE_OK) {
		FUZZ_CHECK(memchr(orig, '\0', size) == NULL, "OK for a line with a NUL");
		check_parsed(orig, line, size, &cmd);
		for (unsigned a = 0; a < cmd.argc; a++) {
			check_msgnum(cmd.argv[a], UINT64_MAX);
			check_msgnum(cmd.argv[a], 0);
			check_msgnum(cmd.argv[a], 1);
			check_msgnum(cmd.argv[a], 7);
			check_msgnum(cmd.argv[a], UINT32_MAX);
			check_msgnum(cmd.argv[a], 1999999999999999999ull);
		}
	}

	/* The whole input (up to a NUL) as one number argument, too. */
	check_msgnum(orig, UINT64_MAX);
	check_msgnum(orig, 10);
	free(line);
	free(orig);
	return 0;
}
