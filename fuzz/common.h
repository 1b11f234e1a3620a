/* Helpers every fuzz target may use: invariant failures, deterministic
 * chunk splits, scratch files. Nothing here touches Pillar's own state. */
#ifndef PILLAR_FUZZ_COMMON_H
#define PILLAR_FUZZ_COMMON_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Report a broken invariant and abort, so libFuzzer saves the input. */
void fuzz_fail(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));

#define FUZZ_CHECK(cond, ...)                                                                      \
	do {                                                                                       \
		if (!(cond))                                                                       \
			fuzz_fail(__VA_ARGS__);                                                    \
	} while (0)

/* Deterministic pseudo-random numbers (splitmix64) for chunk splits: seeded
 * from the input itself, so a saved crash input replays the same splits. */
struct fuzz_rng {
	uint64_t s;
};
void fuzz_rng_seed(struct fuzz_rng *r, const uint8_t *data, size_t size, uint64_t salt);
uint64_t fuzz_rng_next(struct fuzz_rng *r);
/* A chunk length in 1..max (max >= 1), biased towards short chunks: a
 * one-byte chunk is where a resumable parser most often forgets state. */
size_t fuzz_rng_chunk(struct fuzz_rng *r, size_t max);

/* A directory for scratch files, made on first use (under /dev/shm when it
 * exists, else $TMPDIR or /tmp) and removed with everything in it at exit. */
const char *fuzz_scratch_dir(void);

/* Remove a directory tree (no symlinks followed). */
void fuzz_remove_tree(const char *path);

/* Entries of dir other than dot files (not recursive); -1 when it cannot be
 * read. */
long fuzz_count_files(const char *dir);

/* Write data to path (created or truncated); aborts on failure. */
void fuzz_write_file(const char *path, const void *data, size_t len);

#endif
