/* Unit tests for src/auth/password.c. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "auth/password.h"

/* Made with `openssl passwd -6 -salt pillarTestSalt 'correct horse'`. */
static const char sha512_hash[] = "$6$pillarTestSalt$30mbcr80wGaFpsdMi29A8Ptb.5DUsmZAyDYwLEkThVs7v"
                                  "e.llKv16nK4P/ODKn61T0/d0OkzGEeoR1LLtXeN91";

static void test_yescrypt_roundtrip(void **state)
{
	const char *err = NULL;
	char *h1, *h2;

	(void)state;
	h1 = password_hash("s3cret pass", &err);
	assert_non_null(h1);
	assert_true(strncmp(h1, "$y$", 3) == 0);
	assert_true(password_hash_supported(h1));
	assert_true(password_verify("s3cret pass", h1));
	assert_false(password_verify("s3cret pasS", h1));
	assert_false(password_verify("", h1));
	/* fresh salt every time */
	h2 = password_hash("s3cret pass", &err);
	assert_non_null(h2);
	assert_string_not_equal(h1, h2);
	assert_true(password_verify("s3cret pass", h2));
	free(h1);
	free(h2);
}

static void test_sha512_import(void **state)
{
	(void)state;
	assert_true(password_hash_supported(sha512_hash));
	assert_true(password_verify("correct horse", sha512_hash));
	assert_false(password_verify("correct horse ", sha512_hash));
	assert_false(password_verify("wrong", sha512_hash));
}

static void test_garbage(void **state)
{
	(void)state;
	assert_false(password_verify("x", ""));
	assert_false(password_verify("x", "*"));
	assert_false(password_verify("x", "!"));
	assert_false(password_verify("x", "plaintext"));
	assert_false(password_verify("x", "$6$"));
	assert_false(password_verify("x", "$y$garbage"));
	/* DES and MD5 crypt are not accepted on import */
	assert_false(password_hash_supported("abJnggxhB/yWI"));
	assert_false(password_hash_supported("$1$salt$hash"));
	assert_false(password_hash_supported(NULL));
}

static void test_dummy(void **state)
{
	const char *d1 = password_dummy_hash(), *d2 = password_dummy_hash();

	(void)state;
	assert_non_null(d1);
	assert_ptr_equal(d1, d2);
	assert_true(strncmp(d1, "$y$", 3) == 0);
	assert_false(password_verify("", d1));
}

static char *read_from(const char *data, size_t len, const char **err)
{
	int fds[2];
	char *pw;

	assert_int_equal(pipe(fds), 0);
	assert_int_equal(write(fds[1], data, len), (ssize_t)len);
	close(fds[1]);
	pw = password_read_fd(fds[0], err);
	close(fds[0]);
	return pw;
}

static void test_read_fd(void **state)
{
	const char *err = NULL;
	char big[1100];
	char *pw;

	(void)state;
	pw = read_from("hunter2\n", 8, &err);
	assert_string_equal(pw, "hunter2");
	free(pw);
	pw = read_from("with space\r\nnext line\n", 22, &err);
	assert_string_equal(pw, "with space");
	free(pw);
	pw = read_from("noeol", 5, &err);
	assert_string_equal(pw, "noeol");
	free(pw);
	assert_null(read_from("\n", 1, &err));
	assert_null(read_from("", 0, &err));
	assert_null(read_from("a\0b\n", 4, &err));
	memset(big, 'a', sizeof(big));
	assert_null(read_from(big, 1025, &err));
	assert_non_null(err);
	pw = read_from(big, 1024, &err);
	assert_non_null(pw);
	assert_int_equal(strlen(pw), 1024);
	free(pw);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_yescrypt_roundtrip),
	    cmocka_unit_test(test_sha512_import),
	    cmocka_unit_test(test_garbage),
	    cmocka_unit_test(test_dummy),
	    cmocka_unit_test(test_read_fd),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
