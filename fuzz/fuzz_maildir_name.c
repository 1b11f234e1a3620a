/* libFuzzer target: Maildir file names (store/maildir_name.h) — what
 * another Maildir writer, or anyone with access to the mail store, may put
 * in new/ and cur/.
 *
 * Input: a file name (up to the first NUL); the whole input is also
 * measured as message bytes by maildir_count_vsize.
 *
 * Checked besides the sanitizers' findings:
 *   - a parsed name's unique part is the name's prefix up to the first ','
 *     or ':', non-empty; info is what follows the first ':';
 *   - the UIDL is 1-70 characters of 0x21..0x7E (RFC 1939 §7), the same on
 *     every call, and the unique part itself whenever that qualifies;
 *   - maildir_name_with_sizes keeps the unique part (so the UIDL), the info
 *     and the other fields, and the new name parses to exactly the sizes
 *     given; doing it twice changes nothing more;
 *   - maildir_count_vsize counts every LF not after a CR twice, in any
 *     chunking. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "common.h"
#include "store/maildir_name.h"

static void check_uidl(const struct maildir_name *n, char uidl[MAILDIR_UIDL_MAX + 1])
{
	char again[MAILDIR_UIDL_MAX + 1];
	bool usable = n->unique_len >= 1 && n->unique_len <= MAILDIR_UIDL_MAX;

	memset(uidl, 'U', MAILDIR_UIDL_MAX + 1);
	maildir_uidl(n, uidl);
	size_t len = strnlen(uidl, MAILDIR_UIDL_MAX + 1);
	FUZZ_CHECK(len >= 1 && len <= MAILDIR_UIDL_MAX, "UIDL of %zu characters", len);
	for (size_t i = 0; i < len; i++)
		FUZZ_CHECK(uidl[i] >= 0x21 && uidl[i] <= 0x7e, "UIDL octet 0x%02x",
		           (unsigned char)uidl[i]);
	for (size_t i = 0; usable && i < n->unique_len; i++)
		usable = n->unique[i] >= 0x21 && n->unique[i] <= 0x7e;
	if (usable)
		FUZZ_CHECK(len == n->unique_len && memcmp(uidl, n->unique, len) == 0,
		           "UIDL is not the usable unique part");
	maildir_uidl(n, again);
	FUZZ_CHECK(strcmp(uidl, again) == 0, "UIDL not stable");
}

static void check_with_sizes(const char *name, const struct maildir_name *n, const char *uidl,
                             uint64_t size, uint64_t vsize)
{
	struct maildir_name m;
	char uidl2[MAILDIR_UIDL_MAX + 1];
	char *renamed = maildir_name_with_sizes(name, size, vsize);

	FUZZ_CHECK(renamed != NULL, "maildir_name_with_sizes failed");
	FUZZ_CHECK(maildir_name_parse(renamed, &m) == 0, "renamed \"%s\" does not parse", renamed);
	FUZZ_CHECK(m.unique_len == n->unique_len && memcmp(m.unique, n->unique, n->unique_len) == 0,
	           "renaming changed the unique part: \"%s\" -> \"%s\"", name, renamed);
	FUZZ_CHECK(m.has_size && m.size == size && m.has_vsize && m.vsize == vsize,
	           "renamed \"%s\" does not carry S=%llu,W=%llu", renamed, (unsigned long long)size,
	           (unsigned long long)vsize);
	FUZZ_CHECK((m.info == NULL) == (n->info == NULL) &&
	               (m.info == NULL || strcmp(m.info, n->info) == 0),
	           "renaming changed the info part");
	maildir_uidl(&m, uidl2);
	FUZZ_CHECK(strcmp(uidl, uidl2) == 0, "renaming changed the UIDL");

	char *twice = maildir_name_with_sizes(renamed, size, vsize);
	FUZZ_CHECK(twice != NULL && strcmp(twice, renamed) == 0,
	           "maildir_name_with_sizes not idempotent: \"%s\" -> \"%s\"", renamed,
	           twice != NULL ? twice : "(null)");
	free(twice);
	free(renamed);
}

static void check_vsize(const uint8_t *data, size_t size)
{
	const char *buf = (const char *)data;
	uint64_t want = size, one = 0, chunked = 0;
	bool prev_cr = false;
	struct fuzz_rng rng;

	for (size_t i = 0; i < size; i++) {
		if (buf[i] == '\n' && (i == 0 || buf[i - 1] != '\r'))
			want++;
	}
	maildir_count_vsize(buf, size, &prev_cr, &one);
	FUZZ_CHECK(one == want, "W= size %llu, want %llu", (unsigned long long)one,
	           (unsigned long long)want);
	FUZZ_CHECK(prev_cr == (size > 0 && buf[size - 1] == '\r'), "prev_cr wrong after one chunk");
	fuzz_rng_seed(&rng, data, size, 2);
	prev_cr = false;
	for (size_t pos = 0; pos < size;) {
		size_t n = fuzz_rng_chunk(&rng, size - pos);
		maildir_count_vsize(buf + pos, n, &prev_cr, &chunked);
		pos += n;
	}
	FUZZ_CHECK(chunked == want, "W= size in chunks %llu, want %llu",
	           (unsigned long long)chunked, (unsigned long long)want);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	size_t len = strnlen((const char *)data, size);
	char *name = malloc(len + 1);
	struct maildir_name n;
	char uidl[MAILDIR_UIDL_MAX + 1];

	memcpy(name, data, len);
	name[len] = '\0';
	if (maildir_name_parse(name, &n) == 0) {
		size_t unique_len = strcspn(name, ",:");
		const char *colon = strchr(name, ':');
		FUZZ_CHECK(len > 0 && name[0] != '.' && strchr(name, '/') == NULL,
		           "accepted a name that is not a message");
		FUZZ_CHECK(n.unique == name && n.unique_len == unique_len && unique_len > 0,
		           "unique part %zu octets, want %zu", n.unique_len, unique_len);
		FUZZ_CHECK(colon == NULL ? n.info == NULL : n.info == colon + 1, "info misplaced");
		check_uidl(&n, uidl);
		struct fuzz_rng rng;
		fuzz_rng_seed(&rng, data, size, 3);
		check_with_sizes(name, &n, uidl, 0, 0);
		check_with_sizes(name, &n, uidl, UINT64_MAX, UINT64_MAX);
		check_with_sizes(name, &n, uidl, fuzz_rng_next(&rng) >> (fuzz_rng_next(&rng) & 63),
		                 fuzz_rng_next(&rng));
		if (n.has_size && n.has_vsize)
			check_with_sizes(name, &n, uidl, n.size, n.vsize);
	} else {
		FUZZ_CHECK(len == 0 || name[0] == '.' || strchr(name, '/') != NULL ||
		               strcspn(name, ",:") == 0,
		           "refused a message name \"%s\"", name);
	}
	free(name);
	check_vsize(data, size);
	return 0;
}
