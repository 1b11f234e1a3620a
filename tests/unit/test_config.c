/* Unit tests for src/core/config.c. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/config.h"

static char conf_path[64];

static int setup(void **state)
{
	int fd;

	(void)state;
	snprintf(conf_path, sizeof(conf_path), "/tmp/pillar-test-config-XXXXXX");
	fd = mkstemp(conf_path);
	if (fd < 0)
		return -1;
	close(fd);
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	unlink(conf_path);
	return 0;
}

/* Write text to the temp file and load it. */
static int load(const char *text, struct config **cfg, struct strlist *errors)
{
	FILE *f = fopen(conf_path, "w");

	assert_non_null(f);
	fputs(text, f);
	fclose(f);
	memset(errors, 0, sizeof(*errors));
	return config_load(conf_path, cfg, errors);
}

/* Exactly one error, equal to "<path>:<suffix>". */
static void expect_one_error(const char *text, const char *suffix)
{
	struct config *cfg = NULL;
	struct strlist errors;
	char want[512];

	assert_int_equal(load(text, &cfg, &errors), -1);
	assert_null(cfg);
	snprintf(want, sizeof(want), "%s:%s", conf_path, suffix);
	if (errors.count != 1 || strcmp(errors.items[0], want) != 0) {
		for (size_t i = 0; i < errors.count; i++)
			print_error("got: %s\n", errors.items[i]);
		print_error("want: %s\n", want);
		fail();
	}
	strlist_free(&errors);
}

static void test_minimal_defaults(void **state)
{
	struct config *cfg = NULL;
	struct strlist errors;

	(void)state;
	assert_int_equal(load("state_dir = /var/lib/pillar//\n", &cfg, &errors), 0);
	assert_int_equal(errors.count, 0);
	assert_string_equal(cfg->path, conf_path);
	assert_string_equal(cfg->state_dir, "/var/lib/pillar");
	assert_string_equal(cfg->mail_root, "/var/lib/pillar/mail");
	assert_string_equal(cfg->directory, "sqlite");
	assert_string_equal(cfg->run_as, "pillar");
	assert_non_null(cfg->hostname);
	assert_true(cfg->hostname[0] != '\0');
	assert_int_equal(cfg->pop3_listen.count, 0);
	assert_int_equal(cfg->tls_cert.count, 0);
	assert_int_equal(cfg->plaintext_auth, PLAINTEXT_AUTH_TLS);
	assert_int_equal(cfg->max_message_size, 50ull * 1024 * 1024);
	assert_int_equal(cfg->pop3_idle_timeout, 600000);
	assert_int_equal(cfg->login_timeout, 60000);
	assert_int_equal(cfg->auth_failure_delay, 2000);
	assert_int_equal(cfg->max_connections_per_ip, 20);
	assert_true(cfg->workers >= 1 && cfg->workers <= 256);
	config_free(&cfg);
	assert_null(cfg);
	config_free(&cfg);
}

static const char full_conf[] = "# a full configuration\n"
                                "\n"
                                "   # indented comment\n"
                                "state_dir = /srv/pillar\n"
                                "mail_root=/srv/mail   # trailing comment\n"
                                "directory = sqlite\n"
                                "hostname = mx1.example.org\n"
                                "run_as = mail\n"
                                "pop3_listen = 0.0.0.0:110\n"
                                "pop3_listen = [::1]:110\n"
                                "pop3s_listen = *:995\n"
                                "smtp_listen = 192.0.2.1:25\n"
                                "lmtp_listen = unix:/run/pillar/lmtp\n"
                                "lmtp_listen = [2001:db8::1]:24\n"
                                "tls_cert = /etc/pillar/cert.pem\n"
                                "tls_key = /etc/pillar/key.pem\n"
                                "plaintext_auth = never\n"
                                "max_message_size = 25M\n"
                                "pop3_idle_timeout = 1h\n"
                                "login_timeout = 30s\n"
                                "auth_failure_delay = 500ms\n"
                                "max_connections_per_ip = 50\n"
                                "trusted_proxies = 10.0.0.0/8\n"
                                "trusted_proxies = 2001:db8::/32\n"
                                "trusted_proxies = 192.0.2.7\n"
                                "\tworkers\t=\t4\t\n";

static void test_every_key(void **state)
{
	struct config *cfg = NULL;
	struct strlist errors;

	(void)state;
	assert_int_equal(load(full_conf, &cfg, &errors), 0);
	assert_string_equal(cfg->state_dir, "/srv/pillar");
	assert_string_equal(cfg->mail_root, "/srv/mail");
	assert_string_equal(cfg->hostname, "mx1.example.org");
	assert_string_equal(cfg->run_as, "mail");
	assert_int_equal(cfg->pop3_listen.count, 2);
	assert_string_equal(cfg->pop3_listen.items[0], "0.0.0.0:110");
	assert_string_equal(cfg->pop3_listen.items[1], "[::1]:110");
	assert_string_equal(cfg->pop3s_listen.items[0], "*:995");
	assert_string_equal(cfg->smtp_listen.items[0], "192.0.2.1:25");
	assert_int_equal(cfg->lmtp_listen.count, 2);
	assert_string_equal(cfg->lmtp_listen.items[0], "unix:/run/pillar/lmtp");
	assert_int_equal(cfg->tls_cert.count, 1);
	assert_string_equal(cfg->tls_cert.items[0], "/etc/pillar/cert.pem");
	assert_string_equal(cfg->tls_key.items[0], "/etc/pillar/key.pem");
	assert_int_equal(cfg->plaintext_auth, PLAINTEXT_AUTH_NEVER);
	assert_int_equal(cfg->max_message_size, 25ull * 1024 * 1024);
	assert_int_equal(cfg->pop3_idle_timeout, 3600000);
	assert_int_equal(cfg->login_timeout, 30000);
	assert_int_equal(cfg->auth_failure_delay, 500);
	assert_int_equal(cfg->max_connections_per_ip, 50);
	assert_int_equal(cfg->trusted_proxies.count, 3);
	assert_string_equal(cfg->trusted_proxies.items[1], "2001:db8::/32");
	assert_int_equal(cfg->workers, 4);

	/* config_dump output loads back to the same thing */
	FILE *f = fopen(conf_path, "w");
	assert_non_null(f);
	config_dump(cfg, f);
	fclose(f);
	config_free(&cfg);
	memset(&errors, 0, sizeof(errors));
	assert_int_equal(config_load(conf_path, &cfg, &errors), 0);
	assert_int_equal(cfg->auth_failure_delay, 500);
	assert_int_equal(cfg->max_message_size, 25ull * 1024 * 1024);
	assert_int_equal(cfg->lmtp_listen.count, 2);
	config_free(&cfg);
}

static void test_postgresql_syntax(void **state)
{
	struct config *cfg = NULL;
	struct strlist errors;

	(void)state;
	assert_int_equal(load("state_dir = /s\n"
	                      "directory = postgresql://pillar:pw#x@db.example/pillar\n",
	                      &cfg, &errors),
	                 0);
	assert_string_equal(cfg->directory, "postgresql://pillar:pw#x@db.example/pillar");
	config_free(&cfg);
	expect_one_error("state_dir = /s\ndirectory = mysql://x\n",
	                 "2: directory: must be 'sqlite' or a postgresql:// URL");
}

static void test_structural_errors(void **state)
{
	(void)state;
	expect_one_error("state_dir = /s\nbogus = 1\n", "2: bogus: unknown key");
	expect_one_error("state_dir = /s\njust some words\n",
	                 "2: expected 'key = value', found no '='");
	expect_one_error("state_dir = /s\n = 5\n", "2: missing key before '='");
	expect_one_error("state_dir = /s\nhostname =\n", "2: hostname: missing value");
	expect_one_error("state_dir = /s\n\n\nstate_dir = /t\n",
	                 "4: state_dir: set more than once (first on line 1)");
	expect_one_error("run_as = x\n", " state_dir: required but not set");
	expect_one_error("state_dir = relative/dir\n", "1: state_dir: must be an absolute path");
	expect_one_error("state_dir = /s\nmail_root = mail\n",
	                 "2: mail_root: must be an absolute path");
	expect_one_error("state_dir = /s\nState_Dir = /t\n", "2: State_Dir: unknown key");
	/* Without its trailing slash the name would end in a space, which
	 * `pillar check --verbose` could not write back. */
	expect_one_error("state_dir = /srv/pillar /\n",
	                 "1: state_dir: must not end in white space");
	expect_one_error("state_dir = /s\nmail_root = /m\t//\n",
	                 "2: mail_root: must not end in white space");
}

static void test_all_errors_collected(void **state)
{
	struct config *cfg = NULL;
	struct strlist errors;
	char want[256];

	(void)state;
	assert_int_equal(load("state_dir = /s\n"
	                      "workers = 0\n"
	                      "nonsense\n"
	                      "pop3_idle_timeout = 5m\n"
	                      "workers = 2\n",
	                      &cfg, &errors),
	                 -1);
	assert_null(cfg);
	assert_int_equal(errors.count, 4);
	snprintf(want, sizeof(want), "%s:2: workers: must be a number from 1 to 256", conf_path);
	assert_string_equal(errors.items[0], want);
	snprintf(want, sizeof(want), "%s:3: expected 'key = value', found no '='", conf_path);
	assert_string_equal(errors.items[1], want);
	snprintf(want, sizeof(want), "%s:4: pop3_idle_timeout:", conf_path);
	assert_true(strncmp(errors.items[2], want, strlen(want)) == 0);
	snprintf(want, sizeof(want), "%s:5: workers: set more than once (first on line 2)",
	         conf_path);
	assert_string_equal(errors.items[3], want);
	strlist_free(&errors);
}

static void test_missing_file(void **state)
{
	struct config *cfg = NULL;
	struct strlist errors = {0};

	(void)state;
	assert_int_equal(config_load("/nonexistent/pillar.conf", &cfg, &errors), -1);
	assert_int_equal(errors.count, 1);
	assert_string_equal(errors.items[0],
	                    "/nonexistent/pillar.conf: cannot open: No such file or directory");
	strlist_free(&errors);
}

static void test_sizes_and_times(void **state)
{
	struct config *cfg = NULL;
	struct strlist errors;

	(void)state;
	/* bounds that are accepted */
	assert_int_equal(load("state_dir = /s\nmax_message_size = 1K\npop3_idle_timeout = 10m\n"
	                      "login_timeout = 1s\nauth_failure_delay = 0\n",
	                      &cfg, &errors),
	                 0);
	assert_int_equal(cfg->max_message_size, 1024);
	assert_int_equal(cfg->pop3_idle_timeout, 600000);
	assert_int_equal(cfg->auth_failure_delay, 0);
	config_free(&cfg);
	assert_int_equal(load("state_dir = /s\nmax_message_size = 2G\npop3_idle_timeout = 24h\n"
	                      "login_timeout = 1h\nauth_failure_delay = 60s\n"
	                      "pop3_idle_timeout_is_not_a_key_here = 1\n",
	                      &cfg, &errors),
	                 -1);
	strlist_free(&errors);
	assert_int_equal(load("state_dir = /s\nmax_message_size = 2G\npop3_idle_timeout = 24h\n"
	                      "login_timeout = 1h\nauth_failure_delay = 60s\n",
	                      &cfg, &errors),
	                 0);
	assert_int_equal(cfg->pop3_idle_timeout, 86400000);
	config_free(&cfg);
	assert_int_equal(load("state_dir = /s\npop3_idle_timeout = 600s\n", &cfg, &errors), 0);
	config_free(&cfg);

	expect_one_error("state_dir = /s\npop3_idle_timeout = 9m\n",
	                 "2: pop3_idle_timeout: must be at least 10m (RFC 1939 section 3: the "
	                 "autologout timer must be at least 10 minutes)");
	expect_one_error("state_dir = /s\npop3_idle_timeout = 599999ms\n",
	                 "2: pop3_idle_timeout: must be at least 10m (RFC 1939 section 3: the "
	                 "autologout timer must be at least 10 minutes)");
	expect_one_error("state_dir = /s\npop3_idle_timeout = 25h\n",
	                 "2: pop3_idle_timeout: must be at most 24h");
	expect_one_error("state_dir = /s\npop3_idle_timeout = 10\n",
	                 "2: pop3_idle_timeout: not a time (a number with ms, s, m or h)");
	expect_one_error("state_dir = /s\nlogin_timeout = 999ms\n",
	                 "2: login_timeout: must be from 1s to 1h");
	expect_one_error("state_dir = /s\nlogin_timeout = 61m\n",
	                 "2: login_timeout: must be from 1s to 1h");
	expect_one_error("state_dir = /s\nauth_failure_delay = 61s\n",
	                 "2: auth_failure_delay: must be at most 60s");
	expect_one_error("state_dir = /s\nmax_message_size = 1023\n",
	                 "2: max_message_size: must be from 1K to 2G");
	expect_one_error("state_dir = /s\nmax_message_size = 3G\n",
	                 "2: max_message_size: must be from 1K to 2G");
	expect_one_error("state_dir = /s\nmax_message_size = 10MB\n",
	                 "2: max_message_size: not a size (a number with an optional K, M or G)");
}

static void test_numbers(void **state)
{
	struct config *cfg = NULL;
	struct strlist errors;

	(void)state;
	assert_int_equal(
	    load("state_dir = /s\nworkers = 256\nmax_connections_per_ip = 65535\n", &cfg, &errors),
	    0);
	assert_int_equal(cfg->workers, 256);
	assert_int_equal(cfg->max_connections_per_ip, 65535);
	config_free(&cfg);
	expect_one_error("state_dir = /s\nworkers = 257\n",
	                 "2: workers: must be a number from 1 to 256");
	expect_one_error("state_dir = /s\nworkers = -1\n",
	                 "2: workers: must be a number from 1 to 256");
	expect_one_error("state_dir = /s\nworkers = 4x\n",
	                 "2: workers: must be a number from 1 to 256");
	expect_one_error("state_dir = /s\nmax_connections_per_ip = 0\n",
	                 "2: max_connections_per_ip: must be a number from 1 to 65535");
	expect_one_error("state_dir = /s\nplaintext_auth = sometimes\n",
	                 "2: plaintext_auth: must be tls, always or never");
}

static void test_listen(void **state)
{
	char why[CONFIG_WHY_MAX];

	(void)state;
	assert_int_equal(config_check_listen("127.0.0.1:1110", why), 0);
	assert_int_equal(config_check_listen("*:25", why), 0);
	assert_int_equal(config_check_listen("[::]:995", why), 0);
	assert_int_equal(config_check_listen("[fe80::1]:65535", why), 0);
	assert_int_equal(config_check_listen("unix:/run/x.sock", why), 0);
	assert_int_equal(config_check_listen("127.0.0.1", why), -1);
	assert_int_equal(config_check_listen("127.0.0.1:0", why), -1);
	assert_int_equal(config_check_listen("127.0.0.1:65536", why), -1);
	assert_int_equal(config_check_listen("127.0.0.1:", why), -1);
	assert_int_equal(config_check_listen(":110", why), -1);
	assert_int_equal(config_check_listen("localhost:110", why), -1);
	assert_int_equal(config_check_listen("256.0.0.1:110", why), -1);
	assert_int_equal(config_check_listen("::1:110", why), -1);
	assert_int_equal(config_check_listen("[::1]110", why), -1);
	assert_int_equal(config_check_listen("[::g]:110", why), -1);
	assert_int_equal(config_check_listen("unix:relative", why), -1);
	expect_one_error("state_dir = /s\npop3_listen = 127.0.0.1:110\npop3_listen = 1.2.3.4\n",
	                 "3: pop3_listen: expected ADDR:PORT, [IPv6]:PORT, *:PORT or unix:/PATH");
	expect_one_error("state_dir = /s\nsmtp_listen = *:99999\n",
	                 "2: smtp_listen: port must be a number from 1 to 65535");
}

static void test_cidr(void **state)
{
	char why[CONFIG_WHY_MAX];

	(void)state;
	assert_int_equal(config_check_cidr("10.0.0.0/8", why), 0);
	assert_int_equal(config_check_cidr("0.0.0.0/0", why), 0);
	assert_int_equal(config_check_cidr("192.0.2.1/32", why), 0);
	assert_int_equal(config_check_cidr("192.0.2.1", why), 0);
	assert_int_equal(config_check_cidr("::1", why), 0);
	assert_int_equal(config_check_cidr("2001:db8::/32", why), 0);
	assert_int_equal(config_check_cidr("10.0.0.1/8", why), -1);
	assert_string_equal(why, "address has bits set past the /8 prefix");
	assert_int_equal(config_check_cidr("10.0.0.0/33", why), -1);
	assert_int_equal(config_check_cidr("2001:db8::/129", why), -1);
	assert_int_equal(config_check_cidr("10.0.0.0/", why), -1);
	assert_int_equal(config_check_cidr("10.0.0.0/+8", why), -1);
	assert_int_equal(config_check_cidr("example.org/24", why), -1);
	assert_int_equal(config_check_cidr("/24", why), -1);
	expect_one_error("state_dir = /s\ntrusted_proxies = 10.1.0.0/8\n",
	                 "2: trusted_proxies: address has bits set past the /8 prefix");
}

static void test_tls_pairing(void **state)
{
	(void)state;
	expect_one_error("state_dir = /s\ntls_cert = /c.pem\n",
	                 " tls_key: tls_cert and tls_key must be set together");
	expect_one_error("state_dir = /s\npop3s_listen = *:995\n",
	                 " pop3s_listen: needs tls_cert and tls_key");
	expect_one_error("state_dir = /s\ntls_cert = c.pem\ntls_key = /k.pem\n",
	                 "2: tls_cert: must be an absolute path");
	/* Several certificates for SNI: one key per certificate, in order. */
	expect_one_error("state_dir = /s\ntls_cert = /a.pem\ntls_cert = /b.pem\ntls_key = /a.key\n",
	                 " tls_key: give one tls_key per tls_cert, in the same order");
	struct config *cfg;
	struct strlist errors = {0};
	assert_int_equal(load("state_dir = /s\ntls_cert = /a.pem\ntls_key = /a.key\n"
	                      "tls_cert = /b.pem\ntls_key = /b.key\n",
	                      &cfg, &errors),
	                 0);
	assert_int_equal(cfg->tls_cert.count, 2);
	assert_string_equal(cfg->tls_key.items[1], "/b.key");
	config_free(&cfg);
}

static void test_bad_bytes(void **state)
{
	struct config *cfg = NULL;
	struct strlist errors;
	char big[5000];

	(void)state;
	expect_one_error("state_dir = /s\nhostname = a\x01"
	                 "b\n",
	                 "2: control character in line");
	expect_one_error("state_dir = /s\nhostname = bad_name!\n",
	                 "2: hostname: may contain only letters, digits, '-' and '.'");
	memset(big, 'x', sizeof(big));
	memcpy(big, "state_dir = /s\n#", 16);
	big[sizeof(big) - 2] = '\n';
	big[sizeof(big) - 1] = '\0';
	assert_int_equal(load(big, &cfg, &errors), -1);
	assert_int_equal(errors.count, 1);
	assert_non_null(strstr(errors.items[0], ":2: line longer than 4096 bytes"));
	strlist_free(&errors);
}

static void test_default_path(void **state)
{
	(void)state;
	setenv("PILLAR_CONF", "/x/y.conf", 1);
	assert_string_equal(config_default_path(), "/x/y.conf");
	unsetenv("PILLAR_CONF");
	assert_non_null(config_default_path());
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_minimal_defaults),
	    cmocka_unit_test(test_every_key),
	    cmocka_unit_test(test_postgresql_syntax),
	    cmocka_unit_test(test_structural_errors),
	    cmocka_unit_test(test_all_errors_collected),
	    cmocka_unit_test(test_missing_file),
	    cmocka_unit_test(test_sizes_and_times),
	    cmocka_unit_test(test_numbers),
	    cmocka_unit_test(test_listen),
	    cmocka_unit_test(test_cidr),
	    cmocka_unit_test(test_tls_pairing),
	    cmocka_unit_test(test_bad_bytes),
	    cmocka_unit_test(test_default_path),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}
