/* The Maildir store on a real file system (a mkdtemp directory): creation,
 * delivery, the snapshot, the session lock, expunge, stats, tmp/ cleanup. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include <dirent.h>
#include <fcntl.h>
#include <ftw.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "store/deliver.h"
#include "store/maildir.h"
#include "store/maildir_name.h"

struct fixture {
	char root[64];
	char *box; /* <root>/example.org/alice */
};

static int setup(void **state)
{
	struct fixture *f = calloc(1, sizeof(*f));
	const char *error = NULL;

	strcpy(f->root, "/tmp/pillar-test-maildir.XXXXXX");
	if (mkdtemp(f->root) == NULL)
		return -1;
	f->box = maildir_path(f->root, "alice@example.org");
	if (f->box == NULL || maildir_create(f->box, &error) < 0)
		return -1;
	*state = f;
	return 0;
}

static int rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	(void)st;
	(void)flag;
	(void)ftw;
	return remove(path);
}

static int teardown(void **state)
{
	struct fixture *f = *state;
	nftw(f->root, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
	free(f->box);
	free(f);
	return 0;
}

static char *join(const char *a, const char *b)
{
	char *p = malloc(strlen(a) + strlen(b) + 2);
	sprintf(p, "%s/%s", a, b);
	return p;
}

static void write_file(const char *dir, const char *sub, const char *name, const char *data)
{
	char path[1024];
	snprintf(path, sizeof(path), "%s/%s/%s", dir, sub, name);
	FILE *fp = fopen(path, "w");
	assert_non_null(fp);
	fputs(data, fp);
	assert_int_equal(fclose(fp), 0);
}

static bool exists(const char *dir, const char *sub, const char *name)
{
	char path[1024];
	struct stat st;
	snprintf(path, sizeof(path), "%s/%s/%s", dir, sub, name);
	return lstat(path, &st) == 0;
}

static size_t count_entries(const char *dir, const char *sub)
{
	char path[1024];
	snprintf(path, sizeof(path), "%s/%s", dir, sub);
	DIR *d = opendir(path);
	assert_non_null(d);
	size_t n = 0;
	struct dirent *de;
	while ((de = readdir(d)) != NULL) {
		if (strcmp(de->d_name, ".") != 0 && strcmp(de->d_name, "..") != 0)
			n++;
	}
	closedir(d);
	return n;
}

static void deliver(const char *box, const char *data)
{
	int temporary = -1;
	const char *error = NULL;
	assert_int_equal(
	    maildir_deliver(box, "mx.example.org", data, strlen(data), &temporary, &error), 0);
}

static struct maildir *open_box(const char *box)
{
	struct maildir *md = NULL;
	const char *error = NULL;
	if (maildir_open(box, &md, &error) < 0) {
		print_error("maildir_open: %s\n", error);
		fail();
	}
	return md;
}

static void test_path(void **state)
{
	(void)state;
	char *p = maildir_path("/var/mail", "bob@example.com");
	assert_string_equal(p, "/var/mail/example.com/bob");
	free(p);
	p = maildir_path("/var/mail/", "bob@example.com");
	assert_string_equal(p, "/var/mail/example.com/bob");
	free(p);
	assert_null(maildir_path("/var/mail", "nobody"));
}

static void test_create(void **state)
{
	struct fixture *f = *state;
	struct stat st;
	const char *error = NULL;

	assert_int_equal(stat(f->box, &st), 0);
	assert_int_equal(st.st_mode & 0777, 0700);
	char *domain = join(f->root, "example.org");
	assert_int_equal(stat(domain, &st), 0);
	assert_int_equal(st.st_mode & 0777, 0700);
	free(domain);
	for (int i = 0; i < 3; i++) {
		char *sub = join(f->box, (const char *[]){"tmp", "new", "cur"}[i]);
		assert_int_equal(stat(sub, &st), 0);
		assert_true(S_ISDIR(st.st_mode));
		assert_int_equal(st.st_mode & 0777, 0700);
		free(sub);
	}
	/* Again: existing directories are fine. */
	assert_int_equal(maildir_create(f->box, &error), 0);
}

static void test_deliver_and_open(void **state)
{
	struct fixture *f = *state;
	static const char *const msgs[] = {
	    "Subject: one\n\nbody\n",           /* 19 bytes, 22 with CRLF */
	    "Subject: two\r\n\r\nbody two\r\n", /* 26 bytes, already CRLF */
	    "Subject: three\n\n",               /* 16 bytes, 18 with CRLF */
	};
	for (int i = 0; i < 3; i++)
		deliver(f->box, msgs[i]);
	assert_int_equal(count_entries(f->box, "tmp"), 0);
	assert_int_equal(count_entries(f->box, "new"), 3);

	struct maildir *md = open_box(f->box);
	assert_int_equal(maildir_count(md), 3);
	assert_int_equal(maildir_total_vsize(md), 22 + 26 + 18);

	char uidls[3][MAILDIR_UIDL_MAX + 1];
	uint64_t seen = 0;
	for (size_t i = 0; i < 3; i++) {
		const char *u = maildir_msg_uidl(md, i);
		assert_true(strlen(u) >= 1 && strlen(u) <= MAILDIR_UIDL_MAX);
		for (const char *p = u; *p; p++)
			assert_true(*p >= 0x21 && *p <= 0x7e);
		strcpy(uidls[i], u);
		if (i > 0)
			assert_true(strcmp(uidls[i - 1], uidls[i]) < 0);

		/* The file holds exactly what was delivered; W= matches. */
		const char *error = NULL;
		int fd = maildir_msg_open(md, i, &error);
		assert_true(fd >= 0);
		char buf[256];
		ssize_t n = read(fd, buf, sizeof(buf));
		close(fd);
		assert_true(n > 0);
		for (int m = 0; m < 3; m++) {
			if ((size_t)n == strlen(msgs[m]) && memcmp(buf, msgs[m], (size_t)n) == 0) {
				seen |= 1u << m;
				uint64_t want = m == 0 ? 22 : m == 1 ? 26 : 18;
				assert_int_equal(maildir_msg_vsize(md, i), want);
			}
		}
	}
	assert_int_equal(seen, 7);
	maildir_free(&md);
	assert_null(md);

	/* Stable across reopen. */
	md = open_box(f->box);
	assert_int_equal(maildir_count(md), 3);
	for (size_t i = 0; i < 3; i++)
		assert_string_equal(maildir_msg_uidl(md, i), uidls[i]);
	maildir_free(&md);
}

static void test_skips_non_messages(void **state)
{
	struct fixture *f = *state;
	char path[1024], target[1024];

	deliver(f->box, "Subject: real\n\nx\n");
	write_file(f->box, "new", ".dotfile,S=1,W=1", "x");
	write_file(f->box, "tmp", "1.tmp.host", "x");

	snprintf(target, sizeof(target), "%s/tmp/1.tmp.host", f->box);
	snprintf(path, sizeof(path), "%s/new/1.link.host,S=1,W=1", f->box);
	assert_int_equal(symlink(target, path), 0);
	snprintf(path, sizeof(path), "%s/new/1.linknosize.host", f->box);
	assert_int_equal(symlink(target, path), 0);
	snprintf(path, sizeof(path), "%s/new/1.fifo.host,S=1,W=1", f->box);
	assert_int_equal(mkfifo(path, 0600), 0);
	snprintf(path, sizeof(path), "%s/cur/1.fifonosize.host", f->box);
	assert_int_equal(mkfifo(path, 0600), 0);
	snprintf(path, sizeof(path), "%s/new/1.dir.host,S=1,W=1", f->box);
	assert_int_equal(mkdir(path, 0700), 0);
	snprintf(path, sizeof(path), "%s/cur/1.dirnosize.host", f->box);
	assert_int_equal(mkdir(path, 0700), 0);

	struct maildir *md = open_box(f->box);
	assert_int_equal(maildir_count(md), 1);
	assert_int_equal(maildir_total_vsize(md), strlen("Subject: real\r\n\r\nx\r\n"));
	maildir_free(&md);
	/* Nothing was renamed. */
	assert_true(exists(f->box, "new", "1.linknosize.host"));
	assert_true(exists(f->box, "cur", "1.fifonosize.host"));
	assert_true(exists(f->box, "cur", "1.dirnosize.host"));
}

static void test_measure_and_rename(void **state)
{
	struct fixture *f = *state;

	write_file(f->box, "cur", "1600000000.raw.host:2,S", "x\ny\n");
	write_file(f->box, "new", "1600000001.half.host,S=3", "a\nb");

	struct maildir *md = open_box(f->box);
	assert_int_equal(maildir_count(md), 2);
	assert_string_equal(maildir_msg_uidl(md, 0), "1600000000.raw.host");
	assert_int_equal(maildir_msg_vsize(md, 0), 6);
	assert_string_equal(maildir_msg_uidl(md, 1), "1600000001.half.host");
	assert_int_equal(maildir_msg_vsize(md, 1), 4);
	const char *error = NULL;
	int fd = maildir_msg_open(md, 0, &error);
	assert_true(fd >= 0);
	close(fd);
	maildir_free(&md);

	assert_false(exists(f->box, "cur", "1600000000.raw.host:2,S"));
	assert_true(exists(f->box, "cur", "1600000000.raw.host,S=4,W=6:2,S"));
	assert_false(exists(f->box, "new", "1600000001.half.host,S=3"));
	assert_true(exists(f->box, "new", "1600000001.half.host,S=3,W=4"));

	md = open_box(f->box);
	assert_int_equal(maildir_count(md), 2);
	assert_string_equal(maildir_msg_uidl(md, 0), "1600000000.raw.host");
	assert_int_equal(maildir_msg_vsize(md, 0), 6);
	maildir_free(&md);
}

static void test_duplicate_uidl(void **state)
{
	struct fixture *f = *state;

	write_file(f->box, "new", "1600000000.dup.host,S=1,W=1", "a");
	write_file(f->box, "cur", "1600000000.dup.host,S=1,W=1:2,S", "a");
	write_file(f->box, "cur", "1600000001.other.host,S=1,W=1:2,S", "b");

	struct maildir *md = open_box(f->box);
	assert_int_equal(maildir_count(md), 2);
	assert_string_equal(maildir_msg_uidl(md, 0), "1600000000.dup.host");
	assert_string_equal(maildir_msg_uidl(md, 1), "1600000001.other.host");
	assert_int_equal(maildir_total_vsize(md), 2);
	maildir_free(&md);
}

static void test_lock(void **state)
{
	struct fixture *f = *state;
	const char *error = NULL;
	int fd1 = -1, fd2 = -1;

	assert_int_equal(maildir_lock(f->box, &fd1, &error), 0);
	assert_true(fd1 >= 0);
	assert_int_equal(maildir_lock(f->box, &fd2, &error), 1);
	assert_int_equal(fd2, -1);
	close(fd1);
	assert_int_equal(maildir_lock(f->box, &fd2, &error), 0);
	assert_true(fd2 >= 0);
	close(fd2);

	char *missing = join(f->root, "nowhere");
	assert_int_equal(maildir_lock(missing, &fd1, &error), -1);
	assert_non_null(error);
	free(missing);
}

static void test_expunge(void **state)
{
	struct fixture *f = *state;
	const char *error = NULL;
	size_t failed = 99;

	for (int i = 0; i < 3; i++)
		deliver(f->box, "Subject: x\n\nbody\n");
	write_file(f->box, "cur", "1.seen.host,S=1,W=1:2,S", "a");

	struct maildir *md = open_box(f->box);
	assert_int_equal(maildir_count(md), 4);
	char keep[2][MAILDIR_UIDL_MAX + 1];
	strcpy(keep[0], maildir_msg_uidl(md, 1));
	strcpy(keep[1], maildir_msg_uidl(md, 3));
	/* Index 0 is the cur/ message (its name sorts first); index 2 is
	 * removed behind our back first, which still counts as removed. */
	bool del[4] = {true, false, true, false};
	const char *gone = maildir_msg_uidl(md, 2);
	char sub[1024];
	snprintf(sub, sizeof(sub), "%s/new", f->box);
	DIR *d = opendir(sub);
	struct dirent *de;
	while ((de = readdir(d)) != NULL) {
		if (strncmp(de->d_name, gone, strlen(gone)) == 0) {
			char p[2048];
			snprintf(p, sizeof(p), "%s/%s", sub, de->d_name);
			assert_int_equal(unlink(p), 0);
		}
	}
	closedir(d);
	assert_int_equal(count_entries(f->box, "new"), 2);
	assert_int_equal(maildir_expunge(md, del, &failed, &error), 0);
	assert_int_equal(failed, 0);
	maildir_free(&md);

	md = open_box(f->box);
	assert_int_equal(maildir_count(md), 2);
	assert_string_equal(maildir_msg_uidl(md, 0), keep[0]);
	assert_string_equal(maildir_msg_uidl(md, 1), keep[1]);
	maildir_free(&md);
	assert_int_equal(count_entries(f->box, "cur"), 0);
}

static void test_msg_open_after_removal(void **state)
{
	struct fixture *f = *state;
	const char *error = NULL;

	write_file(f->box, "new", "1.gone.host,S=1,W=1", "a");
	struct maildir *md = open_box(f->box);
	assert_int_equal(maildir_count(md), 1);
	char path[1024];
	snprintf(path, sizeof(path), "%s/new/1.gone.host,S=1,W=1", f->box);
	assert_int_equal(unlink(path), 0);
	assert_int_equal(maildir_msg_open(md, 0, &error), -1);
	assert_non_null(error);

	/* Replaced by a symlink: not followed. */
	snprintf(path, sizeof(path), "%s/new/1.gone.host,S=1,W=1", f->box);
	assert_int_equal(symlink("/etc/passwd", path), 0);
	error = NULL;
	assert_int_equal(maildir_msg_open(md, 0, &error), -1);
	assert_non_null(error);
	maildir_free(&md);
}

static void test_deliver_missing_mailbox(void **state)
{
	struct fixture *f = *state;
	int temporary = -1;
	const char *error = NULL;

	char *missing = maildir_path(f->root, "nobody@example.org");
	assert_int_equal(maildir_deliver(missing, "h", "x\n", 2, &temporary, &error), -1);
	assert_int_equal(temporary, 0);
	assert_non_null(error);
	free(missing);

	/* tmp/ exists but new/ does not: the tmp file must not stay. */
	char *new_dir = join(f->box, "new");
	assert_int_equal(rmdir(new_dir), 0);
	temporary = -1;
	assert_int_equal(maildir_deliver(f->box, "h", "x\n", 2, &temporary, &error), -1);
	assert_int_equal(temporary, 0);
	assert_int_equal(count_entries(f->box, "tmp"), 0);
	free(new_dir);
}

static void test_unique(void **state)
{
	(void)state;
	char a[128], b[128];

	maildir_unique(a, sizeof(a), "mx/1:2,x y");
	maildir_unique(b, sizeof(b), "mx/1:2,x y");
	assert_string_not_equal(a, b);
	assert_non_null(strstr(a, ".mx\\0571\\0722\\054x\\040y"));
	assert_null(strchr(a, '/'));
	assert_null(strchr(a, ':'));
	assert_null(strchr(a, ','));
	assert_non_null(strstr(a, ".M"));
	assert_non_null(strstr(a, "P"));
	assert_non_null(strstr(a, "Q"));
	assert_non_null(strstr(a, "R"));

	/* Truncated to the buffer, still terminated. */
	char small[8];
	maildir_unique(small, sizeof(small), "host");
	assert_int_equal(strlen(small), 7);
}

static void test_stats(void **state)
{
	struct fixture *f = *state;
	uint64_t messages = 99, bytes = 99;
	const char *error = NULL;

	assert_int_equal(maildir_stats(f->box, &messages, &bytes, &error), 0);
	assert_int_equal(messages, 0);
	assert_int_equal(bytes, 0);

	deliver(f->box, "0123456789");
	write_file(f->box, "cur", "1.a.host,S=100,W=105:2,S", "");
	write_file(f->box, "cur", "1.b.host:2,S", "12345");
	write_file(f->box, "new", ".hidden,S=1000", "");
	char path[1024];
	snprintf(path, sizeof(path), "%s/new/1.dir.host,S=1000", f->box);
	assert_int_equal(mkdir(path, 0700), 0);

	assert_int_equal(maildir_stats(f->box, &messages, &bytes, &error), 0);
	assert_int_equal(messages, 3);
	assert_int_equal(bytes, 10 + 100 + 5);

	char *missing = join(f->root, "nowhere");
	assert_int_equal(maildir_stats(missing, &messages, &bytes, &error), -1);
	assert_non_null(error);
	free(missing);
}

static void test_clean_tmp(void **state)
{
	struct fixture *f = *state;
	char path[1024];

	write_file(f->box, "tmp", "old", "x");
	write_file(f->box, "tmp", "fresh", "x");
	snprintf(path, sizeof(path), "%s/tmp/old", f->box);
	struct timespec times[2] = {{.tv_sec = time(NULL) - 37 * 3600},
	                            {.tv_sec = time(NULL) - 37 * 3600}};
	assert_int_equal(utimensat(AT_FDCWD, path, times, 0), 0);

	assert_int_equal(maildir_clean_tmp(f->box, 36 * 3600), 1);
	assert_false(exists(f->box, "tmp", "old"));
	assert_true(exists(f->box, "tmp", "fresh"));
}

#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_path),
	    T(test_create),
	    T(test_deliver_and_open),
	    T(test_skips_non_messages),
	    T(test_measure_and_rename),
	    T(test_duplicate_uidl),
	    T(test_lock),
	    T(test_expunge),
	    T(test_msg_open_after_removal),
	    T(test_deliver_missing_mailbox),
	    cmocka_unit_test(test_unique),
	    T(test_stats),
	    T(test_clean_tmp),
	};
	return cmocka_run_group_tests_name("maildir", tests, NULL, NULL);
}
