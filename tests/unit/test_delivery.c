/* The delivery path (src/store/delivery.c) on a real file system: one spool
 * file linked into several mailboxes, the names, the bytes, and that every
 * failure leaves nothing behind. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <signal.h>
#include <sys/resource.h>
#include <grp.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "store/deliver.h"
#include "store/delivery.h"
#include "store/maildir.h"
#include "store/maildir_name.h"

#define NBOX 3

struct fixture {
	char root[64];
	char *box[NBOX]; /* <root>/example.org/{a,b,c} */
};

static int setup(void **state)
{
	static const char *const addrs[NBOX] = {"a@example.org", "b@example.org", "c@example.net"};
	struct fixture *f = calloc(1, sizeof(*f));
	const char *error = NULL;

	strcpy(f->root, "/tmp/pillar-test-delivery.XXXXXX");
	if (mkdtemp(f->root) == NULL)
		return -1;
	for (int i = 0; i < NBOX; i++) {
		f->box[i] = maildir_path(f->root, addrs[i]);
		if (f->box[i] == NULL || maildir_create(f->box[i], &error) < 0)
			return -1;
	}
	*state = f;
	return 0;
}

static int rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	(void)st;
	(void)flag;
	(void)ftw;
	chmod(path, 0700);
	return remove(path);
}

static int teardown(void **state)
{
	struct fixture *f = *state;

	nftw(f->root, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
	for (int i = 0; i < NBOX; i++)
		free(f->box[i]);
	free(f);
	return 0;
}

/* Entries of dir/sub other than . and .. */
static size_t count_entries(const char *dir, const char *sub)
{
	char path[1024];
	struct dirent *de;
	size_t n = 0;
	DIR *d;

	snprintf(path, sizeof(path), "%s/%s", dir, sub);
	d = opendir(path);
	if (d == NULL)
		return 0;
	while ((de = readdir(d)) != NULL) {
		if (strcmp(de->d_name, ".") != 0 && strcmp(de->d_name, "..") != 0)
			n++;
	}
	closedir(d);
	return n;
}

/* The one file in dir/new: its name into name (size 512) and its path. */
static void only_new(const char *dir, char *name, char *path)
{
	char sub[1024];
	struct dirent *de;
	DIR *d;

	snprintf(sub, sizeof(sub), "%s/new", dir);
	d = opendir(sub);
	assert_non_null(d);
	name[0] = '\0';
	while ((de = readdir(d)) != NULL) {
		if (de->d_name[0] == '.')
			continue;
		assert_string_equal(name, ""); /* only one */
		snprintf(name, 512, "%s", de->d_name);
	}
	closedir(d);
	assert_string_not_equal(name, "");
	snprintf(path, 1536, "%s/%s", sub, name);
}

static char *read_all(const char *path, size_t *len_r)
{
	FILE *fp = fopen(path, "rb");
	char *buf;
	long len;

	assert_non_null(fp);
	fseek(fp, 0, SEEK_END);
	len = ftell(fp);
	fseek(fp, 0, SEEK_SET);
	buf = malloc((size_t)len + 1);
	assert_int_equal(fread(buf, 1, (size_t)len, fp), (size_t)len);
	fclose(fp);
	*len_r = (size_t)len;
	return buf;
}

static struct delivery *begin(struct fixture *f)
{
	struct delivery *d = NULL;
	const char *error = NULL;

	if (delivery_begin(f->root, "mx.example.org", &d, &error) < 0)
		fail_msg("delivery_begin: %s", error);
	return d;
}

static void write_ok(struct delivery *d, const void *data, size_t len)
{
	const char *error = NULL;

	if (delivery_write(d, data, len, &error) < 0)
		fail_msg("delivery_write: %s", error);
}

/* A message with 8-bit bytes, NULs, a bare CR, and more than one buffer's
 * worth so that both the buffered and the write-through paths run. */
static char *sample(size_t *len_r, size_t *lines_r)
{
	size_t len = 200 * 1024, lines = 0;
	char *m = malloc(len);

	for (size_t i = 0; i < len; i++) {
		m[i] = (char)(i * 7 + 3);
		if (m[i] == '\n' || m[i] == '\r')
			m[i] = 'x';
		if (i % 61 == 60) {
			m[i] = '\n';
			lines++;
		}
	}
	m[100] = '\0';
	m[200] = '\r'; /* bare CR: not a line end, not counted twice */
	*len_r = len;
	*lines_r = lines;
	return m;
}

static void test_one_mailbox(void **state)
{
	struct fixture *f = *state;
	size_t len, lines, got_len;
	char name[512], path[1536];
	enum delivery_status st;
	const char *error = NULL;
	const char *boxes[1] = {f->box[0]};
	char *msg = sample(&len, &lines);
	struct delivery *d = begin(f);
	struct maildir_name mn;

	/* in odd pieces: 1 byte, 5000, 70000 (over a buffer), the rest */
	write_ok(d, msg, 1);
	write_ok(d, msg + 1, 5000);
	write_ok(d, msg + 5001, 70000);
	write_ok(d, msg + 75001, len - 75001);
	assert_int_equal(delivery_size(d), len);
	assert_int_equal(delivery_vsize(d), len + lines);

	assert_int_equal(delivery_commit(d, boxes, 1, &st, &error), 1);
	assert_int_equal(st, DELIVERY_OK);
	delivery_free(&d);
	assert_null(d);

	only_new(f->box[0], name, path);
	assert_int_equal(maildir_name_parse(name, &mn), 0);
	assert_true(mn.has_size && mn.has_vsize);
	assert_int_equal(mn.size, len);
	assert_int_equal(mn.vsize, len + lines);
	assert_true(mn.unique_len > 0 && mn.unique_len <= MAILDIR_UIDL_MAX);
	char *got = read_all(path, &got_len);
	assert_int_equal(got_len, len);
	assert_memory_equal(got, msg, len);
	free(got);
	free(msg);

	/* nothing left in tmp/, and the spool is empty again */
	assert_int_equal(count_entries(f->box[0], "tmp"), 0);
	assert_int_equal(count_entries(f->root, ".spool"), 0);
}

static void test_three_mailboxes(void **state)
{
	struct fixture *f = *state;
	static const char text[] = "Subject: three\n\nsame inode\n";
	const char *boxes[NBOX] = {f->box[0], f->box[1], f->box[2]};
	enum delivery_status st[NBOX];
	const char *errors[NBOX];
	char names[NBOX][512], path[1536];
	struct stat sb[NBOX];
	struct delivery *d = begin(f);

	write_ok(d, text, sizeof(text) - 1);
	assert_int_equal(delivery_commit(d, boxes, NBOX, st, errors), NBOX);
	delivery_free(&d);

	for (int i = 0; i < NBOX; i++) {
		size_t len;

		assert_int_equal(st[i], DELIVERY_OK);
		assert_null(errors[i]);
		only_new(f->box[i], names[i], path);
		assert_int_equal(stat(path, &sb[i]), 0);
		char *got = read_all(path, &len);
		assert_int_equal(len, sizeof(text) - 1);
		assert_memory_equal(got, text, len);
		free(got);
		/* S= and W= (three LFs counted as CRLF) */
		char want[64];
		snprintf(want, sizeof(want), ",S=%zu,W=%zu", sizeof(text) - 1, sizeof(text) + 2);
		assert_non_null(strstr(names[i], want));
		assert_int_equal(count_entries(f->box[i], "tmp"), 0);
	}
	/* one inode on one file system; the spool's own name is gone, so
	 * three links remain */
	assert_int_equal(sb[0].st_ino, sb[1].st_ino);
	assert_int_equal(sb[0].st_ino, sb[2].st_ino);
	assert_int_equal(sb[0].st_nlink, NBOX);
	/* each recipient has its own unique name (its own UIDL) */
	assert_string_not_equal(names[0], names[1]);
	assert_string_not_equal(names[1], names[2]);
	assert_int_equal(count_entries(f->root, ".spool"), 0);
}

static void test_missing_mailbox(void **state)
{
	struct fixture *f = *state;
	char *missing = maildir_path(f->root, "nobody@example.org");
	const char *boxes[3] = {f->box[0], missing, f->box[1]};
	enum delivery_status st[3];
	const char *errors[3];
	struct delivery *d = begin(f);

	write_ok(d, "x\n", 2);
	assert_int_equal(delivery_commit(d, boxes, 3, st, errors), 2);
	assert_int_equal(st[0], DELIVERY_OK);
	assert_int_equal(st[1], DELIVERY_PERMFAIL);
	assert_non_null(errors[1]);
	assert_non_null(strstr(errors[1], "no such file"));
	assert_int_equal(st[2], DELIVERY_OK);
	delivery_free(&d);
	assert_int_equal(count_entries(f->box[0], "new"), 1);
	assert_int_equal(count_entries(f->box[1], "new"), 1);
	assert_int_equal(count_entries(f->root, "example.org/nobody"), 0);

	/* new/ missing: permanent, and the link in tmp/ is taken back */
	char new_dir[1024];
	snprintf(new_dir, sizeof(new_dir), "%s/new", f->box[2]);
	assert_int_equal(rmdir(new_dir), 0);
	d = begin(f);
	write_ok(d, "y\n", 2);
	assert_int_equal(delivery_commit(d, (const char *const *)&f->box[2], 1, st, errors), 0);
	assert_int_equal(st[0], DELIVERY_PERMFAIL);
	assert_int_equal(count_entries(f->box[2], "tmp"), 0);
	delivery_free(&d);
	assert_int_equal(count_entries(f->root, ".spool"), 0);
	free(missing);
}

static void test_abandoned(void **state)
{
	struct fixture *f = *state;
	struct delivery *d = begin(f);

	write_ok(d, "half a mess", 11);
	assert_int_equal(count_entries(f->root, ".spool"), 1);
	delivery_free(&d);
	assert_int_equal(count_entries(f->root, ".spool"), 0);
	delivery_free(&d); /* harmless on NULL */
	assert_int_equal(count_entries(f->box[0], "new"), 0);
}

/* tmp/ not writable (as a full or broken file system would refuse it):
 * temporary, nothing in new/ or tmp/. Root writes anyway, so as root the
 * fixture is given to an unprivileged uid and the delivery runs in a child
 * that has become it; the child reports by exit status. */
#define NOBODY 65534

static int chown_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	(void)st;
	(void)flag;
	(void)ftw;
	return lchown(path, NOBODY, NOBODY);
}

static int unwritable_run(struct fixture *f)
{
	enum delivery_status st;
	const char *error = NULL;
	struct delivery *d = NULL;

	if (delivery_begin(f->root, "h", &d, &error) < 0 || delivery_write(d, "z\n", 2, &error) < 0)
		return 10;
	if (delivery_commit(d, (const char *const *)&f->box[0], 1, &st, &error) != 0)
		return 11;
	if (st != DELIVERY_TEMPFAIL || strstr(error, "permission denied") == NULL)
		return 12;
	delivery_free(&d);
	return 0;
}

static void test_tmp_unwritable(void **state)
{
	struct fixture *f = *state;
	char tmp[1024];

	snprintf(tmp, sizeof(tmp), "%s/tmp", f->box[0]);
	assert_int_equal(chmod(tmp, 0500), 0);
	if (geteuid() != 0) {
		assert_int_equal(unwritable_run(f), 0);
	} else {
		int ws;

		assert_int_equal(nftw(f->root, chown_entry, 16, FTW_PHYS), 0);
		pid_t pid = fork();
		assert_true(pid >= 0);
		if (pid == 0) {
			if (setgroups(0, NULL) < 0 || setresgid(NOBODY, NOBODY, NOBODY) < 0 ||
			    setresuid(NOBODY, NOBODY, NOBODY) < 0)
				_exit(9);
			_exit(unwritable_run(f));
		}
		assert_int_equal(waitpid(pid, &ws, 0), pid);
		assert_true(WIFEXITED(ws));
		assert_int_equal(WEXITSTATUS(ws), 0);
	}
	chmod(tmp, 0700);
	assert_int_equal(count_entries(f->box[0], "new"), 0);
	assert_int_equal(count_entries(f->box[0], "tmp"), 0);
	assert_int_equal(count_entries(f->root, ".spool"), 0);
}

/* A write that fails (here: the file size limit, the way a full disk
 * fails a write) is sticky and makes every recipient a temporary failure
 * with nothing delivered anywhere. */
static void test_write_error(void **state)
{
	struct fixture *f = *state;
	const char *boxes[2] = {f->box[0], f->box[1]};
	enum delivery_status st[2];
	const char *errors[2], *error = NULL;
	struct rlimit old, small = {.rlim_cur = 100 * 1024};
	static char chunk[40 * 1024];
	struct delivery *d = begin(f);
	int failed = 0;

	memset(chunk, 'a', sizeof(chunk));
	assert_int_equal(getrlimit(RLIMIT_FSIZE, &old), 0);
	small.rlim_max = old.rlim_max;
	signal(SIGXFSZ, SIG_IGN);
	assert_int_equal(setrlimit(RLIMIT_FSIZE, &small), 0);
	for (int i = 0; i < 6; i++) {
		if (delivery_write(d, chunk, sizeof(chunk), &error) < 0) {
			failed++;
			assert_non_null(strstr(error, "file too large"));
		}
	}
	assert_int_equal(setrlimit(RLIMIT_FSIZE, &old), 0);
	signal(SIGXFSZ, SIG_DFL);
	assert_true(failed > 0);
	/* sticky: a later small write fails too */
	assert_int_equal(delivery_write(d, "x", 1, &error), -1);
	assert_int_equal(delivery_commit(d, boxes, 2, st, errors), 0);
	assert_int_equal(st[0], DELIVERY_TEMPFAIL);
	assert_int_equal(st[1], DELIVERY_TEMPFAIL);
	assert_non_null(errors[0]);
	delivery_free(&d);
	for (int i = 0; i < 2; i++) {
		assert_int_equal(count_entries(f->box[i], "new"), 0);
		assert_int_equal(count_entries(f->box[i], "tmp"), 0);
	}
	assert_int_equal(count_entries(f->root, ".spool"), 0);
}

/* Many deliveries in a row (the same microsecond, often) never collide. */
static void test_unique_names(void **state)
{
	struct fixture *f = *state;
	const char *boxes[1] = {f->box[0]};

	for (int i = 0; i < 200; i++) {
		enum delivery_status st;
		const char *error;
		struct delivery *d = begin(f);

		write_ok(d, "m\n", 2);
		assert_int_equal(delivery_commit(d, boxes, 1, &st, &error), 1);
		delivery_free(&d);
	}
	assert_int_equal(count_entries(f->box[0], "new"), 200);
}

static void test_empty_message(void **state)
{
	struct fixture *f = *state;
	const char *boxes[1] = {f->box[0]};
	enum delivery_status st;
	const char *error;
	char name[512], path[1536];
	struct delivery *d = begin(f);

	assert_int_equal(delivery_commit(d, boxes, 1, &st, &error), 1);
	delivery_free(&d);
	only_new(f->box[0], name, path);
	assert_non_null(strstr(name, ",S=0,W=0"));
}

/* maildir_deliver goes the same way and spools in the mailbox's tmp/. */
static void test_maildir_deliver(void **state)
{
	struct fixture *f = *state;
	const char *error = NULL;
	char name[512], path[1536];
	int temporary = -1;
	size_t len;

	assert_int_equal(maildir_deliver(f->box[1], "h", "a\nb\n", 4, &temporary, &error), 0);
	only_new(f->box[1], name, path);
	assert_non_null(strstr(name, ",S=4,W=6"));
	char *got = read_all(path, &len);
	assert_int_equal(len, 4);
	free(got);
	assert_int_equal(count_entries(f->box[1], "tmp"), 0);
	struct stat sb;
	assert_int_equal(stat(path, &sb), 0);
	assert_int_equal(sb.st_nlink, 1);
}

/* A mailbox on another file system than the spool: link(2) fails with
 * EXDEV and the message is copied (and the copy fsync'ed) instead. Uses
 * /dev/shm when it is a different file system; skipped otherwise. */
static void test_copy_across_file_systems(void **state)
{
	struct fixture *f = *state;
	char other[64], name[512], path[1536];
	struct stat a, b;
	const char *error = NULL;
	enum delivery_status st[2];
	const char *errors[2];
	size_t len;

	if (stat(f->root, &a) < 0 || stat("/dev/shm", &b) < 0 || a.st_dev == b.st_dev)
		skip();
	strcpy(other, "/dev/shm/pillar-test-delivery.XXXXXX");
	if (mkdtemp(other) == NULL)
		skip();
	char *box = maildir_path(other, "far@example.org");
	assert_int_equal(maildir_create(box, &error), 0);

	const char *boxes[2] = {box, f->box[0]};
	struct delivery *d = begin(f);
	write_ok(d, "copied\n", 7);
	assert_int_equal(delivery_commit(d, boxes, 2, st, errors), 2);
	delivery_free(&d);

	only_new(box, name, path);
	assert_non_null(strstr(name, ",S=7,W=8"));
	char *got = read_all(path, &len);
	assert_int_equal(len, 7);
	assert_memory_equal(got, "copied\n", 7);
	free(got);
	assert_int_equal(count_entries(box, "tmp"), 0);
	assert_int_equal(count_entries(f->box[0], "new"), 1);
	assert_int_equal(count_entries(f->root, ".spool"), 0);

	nftw(other, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
	free(box);
}

static void set_mtime(const char *path, time_t when)
{
	struct timespec ts[2] = {{.tv_sec = when}, {.tv_sec = when}};

	assert_int_equal(utimensat(AT_FDCWD, path, ts, AT_SYMLINK_NOFOLLOW), 0);
}

static void touch(const char *path)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_EXCL, 0600);

	assert_true(fd >= 0);
	close(fd);
}

static void test_clean_spool(void **state)
{
	struct fixture *f = *state;
	char path[1024];
	time_t old = time(NULL) - 40 * 3600;

	/* nothing to do, and no spool directory yet */
	assert_int_equal(delivery_clean_spool(f->root, 36 * 3600), 0);

	struct delivery *d = begin(f); /* a live one: fresh, kept */
	snprintf(path, sizeof(path), "%s/.spool/stale", f->root);
	touch(path);
	set_mtime(path, old);
	snprintf(path, sizeof(path), "%s/tmp/stale", f->box[0]);
	touch(path);
	set_mtime(path, old);
	snprintf(path, sizeof(path), "%s/tmp/stale", f->box[2]);
	touch(path);
	set_mtime(path, old);
	snprintf(path, sizeof(path), "%s/tmp/fresh", f->box[1]);
	touch(path);
	/* a message in new/ is never touched however old */
	snprintf(path, sizeof(path), "%s/new/1.old,S=0,W=0", f->box[1]);
	touch(path);
	set_mtime(path, old);

	assert_int_equal(delivery_clean_spool(f->root, 36 * 3600), 3);
	assert_int_equal(count_entries(f->root, ".spool"), 1);
	assert_int_equal(count_entries(f->box[0], "tmp"), 0);
	assert_int_equal(count_entries(f->box[1], "tmp"), 1);
	assert_int_equal(count_entries(f->box[1], "new"), 1);
	delivery_free(&d);

	assert_int_equal(delivery_clean_spool("/nonexistent/pillar", 1), -1);
}

static void test_begin_fails(void **state)
{
	struct fixture *f = *state;
	struct delivery *d = NULL;
	const char *error = NULL;
	char path[1024];

	assert_int_equal(delivery_begin("/nonexistent/pillar", "h", &d, &error), -1);
	assert_null(d);
	assert_non_null(error);
	/* a symlink in place of the spool directory is not followed */
	snprintf(path, sizeof(path), "%s/.spool", f->root);
	assert_int_equal(symlink("/tmp", path), 0);
	assert_int_equal(delivery_begin(f->root, "h", &d, &error), -1);
	assert_null(d);
	unlink(path);
}

#define T(name) cmocka_unit_test_setup_teardown(name, setup, teardown)

int main(void)
{
	const struct CMUnitTest tests[] = {
	    T(test_one_mailbox),     T(test_three_mailboxes),
	    T(test_missing_mailbox), T(test_abandoned),
	    T(test_tmp_unwritable),  T(test_write_error),
	    T(test_unique_names),    T(test_empty_message),
	    T(test_maildir_deliver), T(test_copy_across_file_systems),
	    T(test_clean_spool),     T(test_begin_fails),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
