/* Maildir file names: parsing, the UIDL derived from them, and the CRLF size
 * that goes into W=. Pure functions; nothing here touches the file system. */
#include "store/maildir_name.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>

/* Parse the digits of a S= or W= value: [s, end). Returns 0 or -1 for an empty,
 * non-digit or overflowing value. */
static int parse_field_number(const char *s, const char *end, uint64_t *out)
{
	uint64_t v = 0;

	if (s == end)
		return -1;
	for (; s < end; s++) {
		if (*s < '0' || *s > '9')
			return -1;
		unsigned d = (unsigned)(*s - '0');
		if (v > (UINT64_MAX - d) / 10)
			return -1;
		v = v * 10 + d;
	}
	*out = v;
	return 0;
}

int maildir_name_parse(const char *name, struct maildir_name *out)
{
	memset(out, 0, sizeof(*out));
	if (name[0] == '\0' || name[0] == '.' || strchr(name, '/') != NULL)
		return -1;

	const char *colon = strchr(name, ':');
	const char *base_end = colon != NULL ? colon : name + strlen(name);
	size_t unique_len = strcspn(name, ",:");
	if (unique_len == 0)
		return -1;
	out->unique = name;
	out->unique_len = unique_len;
	out->info = colon != NULL ? colon + 1 : NULL;

	/* The ",key=value" fields between the unique part and ':'. Unknown
	 * fields (Dovecot also writes others) are skipped; the first valid S=
	 * and W= win. */
	const char *p = name + unique_len;
	while (p < base_end) {
		const char *field = p + 1; /* skip ',' */
		const char *field_end = memchr(field, ',', (size_t)(base_end - field));
		if (field_end == NULL)
			field_end = base_end;
		if (field_end - field >= 2 && field[1] == '=') {
			uint64_t v;
			if (field[0] == 'S' && !out->has_size &&
			    parse_field_number(field + 2, field_end, &v) == 0) {
				out->size = v;
				out->has_size = true;
			} else if (field[0] == 'W' && !out->has_vsize &&
			           parse_field_number(field + 2, field_end, &v) == 0) {
				out->vsize = v;
				out->has_vsize = true;
			}
		}
		p = field_end;
	}
	return 0;
}

static bool uidl_usable(const char *s, size_t len)
{
	if (len == 0 || len > MAILDIR_UIDL_MAX)
		return false;
	for (size_t i = 0; i < len; i++) {
		unsigned char c = (unsigned char)s[i];
		if (c < 0x21 || c > 0x7e)
			return false;
	}
	return true;
}

void maildir_uidl(const struct maildir_name *name, char out[MAILDIR_UIDL_MAX + 1])
{
	if (uidl_usable(name->unique, name->unique_len)) {
		memcpy(out, name->unique, name->unique_len);
		out[name->unique_len] = '\0';
		return;
	}

	/* Too long or not printable: RFC 1939 §7 does not allow it as a
	 * unique-id, so use a hash of it. A hash keeps the UIDL stable across
	 * sessions without storing anything. */
	static const char hex[] = "0123456789abcdef";
	unsigned char md[EVP_MAX_MD_SIZE];
	unsigned int md_len = 0;

	if (EVP_Digest(name->unique, name->unique_len, md, &md_len, EVP_sha256(), NULL) != 1 ||
	    md_len != 32) {
		/* Cannot happen with a working libcrypto; fall back to a
		 * printable, still deterministic rendering of the first bytes. */
		size_t n = name->unique_len < 32 ? name->unique_len : 32;
		memset(md, 0, 32);
		memcpy(md, name->unique, n);
		md_len = 32;
	}
	for (unsigned int i = 0; i < 32; i++) {
		out[2 * i] = hex[md[i] >> 4];
		out[2 * i + 1] = hex[md[i] & 0xf];
	}
	out[64] = '\0';
}

void maildir_count_vsize(const char *buf, size_t len, bool *prev_cr, uint64_t *vsize)
{
	const char *p = buf;
	const char *end = buf + len;
	uint64_t extra = 0;

	if (len == 0)
		return;
	while (p < end) {
		const char *lf = memchr(p, '\n', (size_t)(end - p));
		if (lf == NULL)
			break;
		bool cr_before = lf > buf ? lf[-1] == '\r' : *prev_cr;
		if (!cr_before)
			extra++;
		p = lf + 1;
	}
	*prev_cr = end[-1] == '\r';
	*vsize += len + extra;
}

/* Is the field [f, end) one of the size fields this module writes? */
static bool is_size_field(const char *f, const char *end)
{
	return end - f >= 2 && (f[0] == 'S' || f[0] == 'W') && f[1] == '=';
}

char *maildir_name_with_sizes(const char *name, uint64_t size, uint64_t vsize)
{
	const char *colon = strchr(name, ':');
	const char *base_end = colon != NULL ? colon : name + strlen(name);
	const char *info = colon != NULL ? colon : "";
	size_t unique_len = strcspn(name, ",:");
	char sizes[64];
	int n = snprintf(sizes, sizeof(sizes), ",S=%llu,W=%llu", (unsigned long long)size,
	                 (unsigned long long)vsize);
	size_t total = (size_t)(base_end - name) + (size_t)n + strlen(info) + 1;
	char *out = malloc(total);
	if (out == NULL)
		return NULL;

	/* Keep the unique part and any other fields; drop old S=/W= so the
	 * name never carries two different values. */
	char *w = out;
	memcpy(w, name, unique_len);
	w += unique_len;
	const char *p = name + unique_len;
	while (p < base_end) {
		const char *field = p + 1;
		const char *field_end = memchr(field, ',', (size_t)(base_end - field));
		if (field_end == NULL)
			field_end = base_end;
		if (!is_size_field(field, field_end)) {
			memcpy(w, p, (size_t)(field_end - p));
			w += field_end - p;
		}
		p = field_end;
	}
	memcpy(w, sizes, (size_t)n);
	w += n;
	strcpy(w, info);
	return out;
}
