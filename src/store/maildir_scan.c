/* Taking the snapshot of a mailbox at POP3 login: one readdir pass over new/
 * and cur/, sizes from the file names, sorted by name.
 *
 * First login to a 100,000-message mailbox must be fast, so the scan avoids
 * per-message system calls: d_type tells regular files apart (stat only when
 * the file system does not fill it in), sizes come from S=/W= in the name
 * (Dovecot writes them too), and names go into one arena instead of one
 * malloc each. Only files without sizes in the name are opened, once: they
 * are measured and renamed so the next scan does not have to. */
#include "store/maildir.h"
#include "store/maildir_name.h"
#include "store/maildir_private.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* Read size when measuring a file without S=/W=. */
#define MEASURE_CHUNK (64 * 1024)
/* First arena allocation; it doubles from there. */
#define ARENA_INITIAL (64 * 1024)

struct scan {
	struct maildir *md;
	char *buf; /* MEASURE_CHUNK bytes, allocated on first use */
	const char *error;
};

/* Append s (with its NUL) to the arena; returns its offset or SIZE_MAX. */
static size_t arena_add(struct maildir *md, const char *s, size_t len)
{
	if (md->arena_cap - md->arena_len < len + 1) {
		size_t cap = md->arena_cap == 0 ? ARENA_INITIAL : md->arena_cap;
		while (cap - md->arena_len < len + 1) {
			if (cap > SIZE_MAX / 2)
				return SIZE_MAX;
			cap *= 2;
		}
		char *p = realloc(md->arena, cap);
		if (p == NULL)
			return SIZE_MAX;
		md->arena = p;
		md->arena_cap = cap;
	}
	size_t off = md->arena_len;
	memcpy(md->arena + off, s, len);
	md->arena[off + len] = '\0';
	md->arena_len += len + 1;
	return off;
}

static struct maildir_msg *msg_add(struct maildir *md)
{
	if (md->count == md->cap) {
		size_t cap = md->cap == 0 ? 256 : md->cap * 2;
		if (cap > SIZE_MAX / sizeof(*md->msgs))
			return NULL;
		struct maildir_msg *p = realloc(md->msgs, cap * sizeof(*p));
		if (p == NULL)
			return NULL;
		md->msgs = p;
		md->cap = cap;
	}
	struct maildir_msg *m = &md->msgs[md->count++];
	memset(m, 0, sizeof(*m));
	return m;
}

/* FNV-1a: a few instructions per byte, plenty for a hash set of names. */
static uint32_t hash_string(const char *s)
{
	uint32_t h = 2166136261u;
	for (; *s != '\0'; s++) {
		h ^= (unsigned char)*s;
		h *= 16777619u;
	}
	return h;
}

/* The decimal number a name starts with (its delivery time), saturating;
 * 0 when it does not start with a digit. */
static uint64_t leading_number(const char *s)
{
	uint64_t v = 0;
	for (; *s >= '0' && *s <= '9'; s++) {
		unsigned d = (unsigned)(*s - '0');
		if (v > (UINT64_MAX - d) / 10)
			return UINT64_MAX;
		v = v * 10 + d;
	}
	return v;
}

/* Store name and its UIDL in the arena and fill in m. */
static int msg_set_name(struct maildir *md, struct maildir_msg *m, const char *name,
                        const struct maildir_name *parsed)
{
	char uidl[MAILDIR_UIDL_MAX + 1];

	maildir_uidl(parsed, uidl);
	size_t name_off = arena_add(md, name, strlen(name));
	if (name_off == SIZE_MAX)
		return -1;
	/* The UIDL is usually the head of the name, but it is not
	 * NUL-terminated there, so it gets its own copy. */
	size_t uidl_off = arena_add(md, uidl, strlen(uidl));
	if (uidl_off == SIZE_MAX)
		return -1;
	m->name_off = name_off;
	m->uidl_off = uidl_off;
	m->uidl_hash = hash_string(uidl);
	m->sort_key = leading_number(name);
	return 0;
}

/* Is this directory entry a regular file? Trusts d_type except where the file
 * system leaves it unknown. Symlinks are never followed (a user who can write
 * to the mailbox must not make us read other files). */
static bool entry_is_regular(int dfd, const struct dirent *de)
{
	struct stat st;

	switch (de->d_type) {
	case DT_REG:
		return true;
	case DT_UNKNOWN:
		if (fstatat(dfd, de->d_name, &st, AT_SYMLINK_NOFOLLOW) < 0)
			return false;
		return S_ISREG(st.st_mode);
	default:
		return false;
	}
}

static int rename_noreplace(int dfd, const char *from, const char *to)
{
	if (renameat2(dfd, from, dfd, to, RENAME_NOREPLACE) == 0)
		return 0;
	if (errno != EINVAL && errno != ENOSYS)
		return -1;
	if (linkat(dfd, from, dfd, to, 0) < 0)
		return -1;
	if (unlinkat(dfd, from, 0) < 0) {
		/* Keep exactly one name for the message. */
		unlinkat(dfd, to, 0);
		return -1;
	}
	return 0;
}

/* Measure the file named by message m in dfd and rename it to carry S=/W=.
 * Returns 0 (m->skip set when the file has gone or is not a regular file) or
 * -1 on an I/O error. */
static int measure_and_rename(struct scan *sc, int dfd, struct maildir_msg *m)
{
	struct maildir *md = sc->md;
	struct stat st;
	uint64_t size = 0, vsize = 0;
	bool prev_cr = false;

	if (sc->buf == NULL && (sc->buf = malloc(MEASURE_CHUNK)) == NULL) {
		sc->error = "out of memory";
		return -1;
	}

	/* Copy the name: the arena may move when the new one is added. */
	char name[256];
	size_t name_len = strlen(md->arena + m->name_off);
	if (name_len >= sizeof(name)) {
		m->skip = true;
		return 0;
	}
	memcpy(name, md->arena + m->name_off, name_len + 1);

	/* O_NONBLOCK: a FIFO put under the name since readdir must not block
	 * the thread in open(2); S_ISREG is checked below. */
	int fd = openat(dfd, name, O_RDONLY | O_NOFOLLOW | O_NOCTTY | O_NONBLOCK | O_CLOEXEC);
	if (fd < 0) {
		if (errno == ENOENT || errno == ELOOP) {
			m->skip = true;
			return 0;
		}
		sc->error = maildir_errno_str(name);
		return -1;
	}
	if (fstat(fd, &st) < 0) {
		sc->error = maildir_errno_str(name);
		close(fd);
		return -1;
	}
	if (!S_ISREG(st.st_mode)) {
		close(fd);
		m->skip = true;
		return 0;
	}
	for (;;) {
		ssize_t n = read(fd, sc->buf, MEASURE_CHUNK);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			sc->error = maildir_errno_str(name);
			close(fd);
			return -1;
		}
		if (n == 0)
			break;
		size += (uint64_t)n;
		maildir_count_vsize(sc->buf, (size_t)n, &prev_cr, &vsize);
	}
	close(fd);
	m->vsize = vsize;

	char *new_name = maildir_name_with_sizes(name, size, vsize);
	if (new_name == NULL) {
		sc->error = "out of memory";
		return -1;
	}
	/* Never replace an existing file. Where the file system lacks
	 * RENAME_NOREPLACE, link + unlink gives the same guarantee. If both
	 * fail the sizes are still right for this session and the next scan
	 * measures again. */
	if (rename_noreplace(dfd, name, new_name) == 0) {
		size_t off = arena_add(md, new_name, strlen(new_name));
		if (off == SIZE_MAX) {
			free(new_name);
			sc->error = "out of memory";
			return -1;
		}
		m->name_off = off;
	}
	free(new_name);
	return 0;
}

static int scan_dir(struct scan *sc, const char *sub, bool in_cur)
{
	struct maildir *md = sc->md;
	int dfd = openat(md->dirfd, sub, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (dfd < 0) {
		sc->error = maildir_errno_str(sub);
		return -1;
	}
	DIR *dir = fdopendir(dfd);
	if (dir == NULL) {
		sc->error = maildir_errno_str(sub);
		close(dfd);
		return -1;
	}

	size_t first = md->count;
	bool any_unsized = false;
	int ret = 0;
	for (;;) {
		errno = 0;
		struct dirent *de = readdir(dir);
		if (de == NULL) {
			if (errno != 0) {
				sc->error = maildir_errno_str(sub);
				ret = -1;
			}
			break;
		}
		struct maildir_name parsed;
		if (de->d_name[0] == '.' || maildir_name_parse(de->d_name, &parsed) < 0)
			continue;
		if (!entry_is_regular(dfd, de))
			continue;
		struct maildir_msg *m = msg_add(md);
		if (m == NULL || msg_set_name(md, m, de->d_name, &parsed) < 0) {
			sc->error = "out of memory";
			ret = -1;
			break;
		}
		m->in_cur = in_cur;
		if (parsed.has_size && parsed.has_vsize) {
			m->vsize = parsed.vsize;
		} else {
			m->needs_sizes = true;
			any_unsized = true;
		}
	}

	/* Measure after the readdir pass: renaming while reading a directory
	 * may make an entry show up twice. */
	for (size_t i = first; ret == 0 && any_unsized && i < md->count; i++) {
		if (md->msgs[i].needs_sizes)
			ret = measure_and_rename(sc, dfd, &md->msgs[i]);
	}
	closedir(dir);
	return ret;
}

/* Name order, made cheap: most names start with the delivery time in
 * seconds, so that number is compared first (it fits in the index struct, no
 * arena access) and strcmp only breaks ties. For the ten-digit times of
 * 2001-2286 this is exactly name order. */
static int cmp_by_name(const void *a, const void *b, void *arg)
{
	const struct maildir_msg *x = a, *y = b;
	const char *arena = arg;
	if (x->sort_key != y->sort_key)
		return x->sort_key < y->sort_key ? -1 : 1;
	int r = strcmp(arena + x->name_off, arena + y->name_off);
	if (r != 0)
		return r;
	return (int)x->in_cur - (int)y->in_cur; /* new/ before cur/ */
}

/* Mark every message whose UIDL already appeared earlier in name order (the
 * same unique in new/ and cur/, e.g. a move half done by another program):
 * a POP3 listing must not contain one UIDL twice (RFC 1939 §7). An open
 * addressing hash set of message indexes, at most half full; the hash was
 * taken while the UIDL was still in cache. */
static int mark_duplicates(struct maildir *md)
{
	if (md->count < 2)
		return 0;
	size_t size = 1;
	while (size < md->count * 2) {
		if (size > SIZE_MAX / 4)
			return -1;
		size *= 2;
	}
	size_t *slots = malloc(size * sizeof(*slots));
	if (slots == NULL)
		return -1;
	for (size_t i = 0; i < size; i++)
		slots[i] = SIZE_MAX;
	for (size_t i = 0; i < md->count; i++) {
		struct maildir_msg *m = &md->msgs[i];
		size_t h = m->uidl_hash & (size - 1);
		for (;; h = (h + 1) & (size - 1)) {
			size_t j = slots[h];
			if (j == SIZE_MAX) {
				slots[h] = i;
				break;
			}
			if (md->msgs[j].uidl_hash == m->uidl_hash &&
			    strcmp(md->arena + md->msgs[j].uidl_off, md->arena + m->uidl_off) ==
			        0) {
				m->skip = true;
				break;
			}
		}
	}
	free(slots);
	return 0;
}

/* The snapshot is kept for the whole session: move it out of what the scan
 * reserved into blocks of its exact size. Copied, not shrunk with realloc:
 * a shrunk block stays where it was, at the head of the reservation, and
 * the next scan's reservation no longer fits there, so every idle session
 * would pin a fresh page or two of the scanning thread's heap. Freed whole,
 * the reservation is what the next scan gets back. */
static void *exact_copy(void *p, size_t len)
{
	void *q = malloc(len);

	if (q == NULL)
		return p; /* keep the larger block */
	memcpy(q, p, len);
	free(p);
	return q;
}

static void shrink_to_fit(struct maildir *md)
{
	if (md->arena_len > 0 && md->arena_len < md->arena_cap) {
		md->arena = exact_copy(md->arena, md->arena_len);
		md->arena_cap = md->arena_len;
	}
	if (md->count == 0) {
		free(md->msgs);
		md->msgs = NULL;
		md->cap = 0;
	} else if (md->count < md->cap) {
		md->msgs = exact_copy(md->msgs, md->count * sizeof(*md->msgs));
		md->cap = md->count;
	}
}

int maildir_open(const char *path, struct maildir **md_r, const char **error_r)
{
	struct maildir *md = calloc(1, sizeof(*md));
	struct scan sc = {.md = md};

	*md_r = NULL;
	if (md == NULL) {
		*error_r = "out of memory";
		return -1;
	}
	md->dirfd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (md->dirfd < 0) {
		*error_r = maildir_errno_str(path);
		maildir_free(&md);
		return -1;
	}
	if (scan_dir(&sc, "new", false) < 0 || scan_dir(&sc, "cur", true) < 0)
		goto fail;
	free(sc.buf);
	sc.buf = NULL;

	/* Drop entries that vanished while measuring, then sort (names start
	 * with the delivery time: oldest first), then drop duplicate UIDLs. */
	size_t n = 0;
	for (size_t i = 0; i < md->count; i++) {
		if (!md->msgs[i].skip)
			md->msgs[n++] = md->msgs[i];
	}
	md->count = n;
	if (md->count > 1) /* an empty mailbox has no array at all */
		qsort_r(md->msgs, md->count, sizeof(*md->msgs), cmp_by_name, md->arena);
	if (mark_duplicates(md) < 0) {
		sc.error = "out of memory";
		goto fail;
	}
	n = 0;
	md->total_vsize = 0;
	for (size_t i = 0; i < md->count; i++) {
		if (md->msgs[i].skip)
			continue;
		md->msgs[n++] = md->msgs[i];
		md->total_vsize += md->msgs[i].vsize;
	}
	md->count = n;
	shrink_to_fit(md);
	*md_r = md;
	return 0;

fail:
	*error_r = sc.error;
	free(sc.buf);
	maildir_free(&md);
	return -1;
}

void maildir_free(struct maildir **mdp)
{
	struct maildir *md = *mdp;

	if (md == NULL)
		return;
	if (md->dirfd >= 0)
		close(md->dirfd);
	free(md->arena);
	free(md->msgs);
	free(md);
	*mdp = NULL;
}

size_t maildir_count(const struct maildir *md)
{
	return md->count;
}

uint64_t maildir_total_vsize(const struct maildir *md)
{
	return md->total_vsize;
}

uint64_t maildir_msg_vsize(const struct maildir *md, size_t i)
{
	return md->msgs[i].vsize;
}

const char *maildir_msg_uidl(const struct maildir *md, size_t i)
{
	return md->arena + md->msgs[i].uidl_off;
}

int maildir_msg_subpath(const struct maildir *md, size_t i, char buf[MAILDIR_SUBPATH_MAX])
{
	const struct maildir_msg *m = &md->msgs[i];
	int n = snprintf(buf, MAILDIR_SUBPATH_MAX, "%s/%s", m->in_cur ? "cur" : "new",
	                 md->arena + m->name_off);
	return n < 0 || n >= MAILDIR_SUBPATH_MAX ? -1 : 0;
}
