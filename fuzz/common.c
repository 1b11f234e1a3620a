/* Helpers shared by the fuzz targets. See common.h. */
#include "common.h"

#include <dirent.h>
#include <sanitizer/common_interface_defs.h>
#include <fcntl.h>
#include <ftw.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

void fuzz_fail(const char *fmt, ...)
{
	char msg[1024];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	/* Through the sanitizer's report channel: it stays visible when
	 * libFuzzer runs with -close_fd_mask=2 (which `make fuzz` uses to
	 * keep Pillar's own log lines out of its output). */
	char line[1100];
	snprintf(line, sizeof(line), "pillar fuzz: invariant broken: %s", msg);
	__sanitizer_report_error_summary(line);
	abort();
}

void fuzz_rng_seed(struct fuzz_rng *r, const uint8_t *data, size_t size, uint64_t salt)
{
	/* FNV-1a over the input: any change to the input changes the splits. */
	uint64_t h = 0xcbf29ce484222325ull ^ salt;
	for (size_t i = 0; i < size; i++) {
		h ^= data[i];
		h *= 0x100000001b3ull;
	}
	r->s = h;
}

uint64_t fuzz_rng_next(struct fuzz_rng *r)
{
	uint64_t z = (r->s += 0x9e3779b97f4a7c15ull);
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
	return z ^ (z >> 31);
}

size_t fuzz_rng_chunk(struct fuzz_rng *r, size_t max)
{
	uint64_t v = fuzz_rng_next(r);
	size_t n;

	switch (v & 3) {
	case 0:
		n = 1;
		break;
	case 1:
		n = 1 + (size_t)((v >> 8) % 8);
		break;
	case 2:
		n = 1 + (size_t)((v >> 8) % 64);
		break;
	default:
		n = 1 + (size_t)((v >> 8) % 4096);
		break;
	}
	return n < max ? n : max;
}

static char scratch[128];

static void scratch_cleanup(void)
{
	if (scratch[0] != '\0')
		fuzz_remove_tree(scratch);
}

const char *fuzz_scratch_dir(void)
{
	if (scratch[0] != '\0')
		return scratch;

	const char *base = "/dev/shm";
	struct stat st;
	if (stat(base, &st) < 0 || !S_ISDIR(st.st_mode) || access(base, W_OK) < 0) {
		base = getenv("TMPDIR");
		if (base == NULL || base[0] == '\0')
			base = "/tmp";
	}
	snprintf(scratch, sizeof(scratch), "%s/pillar-fuzz-XXXXXX", base);
	if (mkdtemp(scratch) == NULL) {
		perror("pillar fuzz: mkdtemp");
		abort();
	}
	atexit(scratch_cleanup);
	return scratch;
}

static int remove_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	(void)st;
	(void)flag;
	(void)ftw;
	remove(path);
	return 0;
}

void fuzz_remove_tree(const char *path)
{
	nftw(path, remove_entry, 16, FTW_DEPTH | FTW_PHYS);
}

long fuzz_count_files(const char *dir)
{
	DIR *d = opendir(dir);
	struct dirent *de;
	long n = 0;

	if (d == NULL)
		return -1;
	while ((de = readdir(d)) != NULL) {
		if (de->d_name[0] != '.')
			n++;
	}
	closedir(d);
	return n;
}

void fuzz_write_file(const char *path, const void *data, size_t len)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	const char *p = data;

	if (fd < 0) {
		perror(path);
		abort();
	}
	while (len > 0) {
		ssize_t w = write(fd, p, len);
		if (w <= 0) {
			perror(path);
			abort();
		}
		p += w;
		len -= (size_t)w;
	}
	if (close(fd) < 0) {
		perror(path);
		abort();
	}
}
