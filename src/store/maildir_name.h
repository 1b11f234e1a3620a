/* Maildir file names: "<unique>,S=<bytes>,W=<crlf-bytes>[:2,<flags>]".
 *
 * <unique> is everything before the first ',' or ':'; it is the POP3 UIDL when
 * it is 1-70 printable characters (RFC 1939 §7), else the UIDL is derived from
 * it (see maildir_uidl). S= is the file size, W= the size with every LF that is
 * not already preceded by CR counted as CRLF — the octets POP3 RETR sends
 * before dot-stuffing. Both are optional; the Dovecot convention. */
#ifndef PILLAR_STORE_MAILDIR_NAME_H
#define PILLAR_STORE_MAILDIR_NAME_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* RFC 1939 §7: a unique-id is 1 to 70 characters in 0x21..0x7E. */
#define MAILDIR_UIDL_MAX 70

struct maildir_name {
	const char *unique; /* points into the parsed name; not NUL-terminated */
	size_t unique_len;
	bool has_size, has_vsize;
	uint64_t size;  /* S= */
	uint64_t vsize; /* W= */
	const char *info; /* after ':' (e.g. "2,S"), NULL if none */
};

/* Parse a file name from new/ or cur/. Returns 0, or -1 when the name is not a
 * message (empty, starts with '.', contains '/', or has an empty unique part).
 * Malformed S=/W= fields are ignored (treated as absent), not fatal. */
int maildir_name_parse(const char *name, struct maildir_name *out);

/* Write the UIDL for a parsed name into out (NUL-terminated, at most
 * MAILDIR_UIDL_MAX characters). A unique part that is already 1-70 characters
 * of 0x21..0x7E is used as is; anything else is replaced by the lowercase hex
 * SHA-256 of it truncated to 64 characters, so it is still stable. */
void maildir_uidl(const struct maildir_name *name, char out[MAILDIR_UIDL_MAX + 1]);

/* Size accounting for data that POP3 will send with CRLF line ends: adds to
 * *vsize the length of buf[0..len) with each LF not preceded by CR counted as
 * two octets. *prev_cr carries whether the previous chunk ended in CR, so a
 * file can be measured in chunks. */
void maildir_count_vsize(const char *buf, size_t len, bool *prev_cr, uint64_t *vsize);

/* Build the name for a file that lacks S=/W=: the same name with
 * ",S=<size>,W=<vsize>" inserted before the ':' info part (or appended).
 * Returns a malloc'd string. */
char *maildir_name_with_sizes(const char *name, uint64_t size, uint64_t vsize);

#endif
