/* Unit tests for src/net/listen.c: listen specs as the binder reads them
 * (and that it reads every one the config accepts the same way), peer
 * addresses as logs and limits see them, and binding unix sockets. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "core/config.h"
#include "net/listen.h"

struct good {
	const char *spec;
	int family;
	const char *addr; /* numeric, or the path for AF_UNIX */
	unsigned port;
};

static const struct good goods[] = {
    {"127.0.0.1:110", AF_INET, "127.0.0.1", 110},
    {"192.0.2.1:65535", AF_INET, "192.0.2.1", 65535},
    {"*:25", AF_INET, "0.0.0.0", 25},
    {"0.0.0.0:1", AF_INET, "0.0.0.0", 1},
    {"[::1]:110", AF_INET6, "::1", 110},
    {"[::]:995", AF_INET6, "::", 995},
    {"[2001:db8::7]:2424", AF_INET6, "2001:db8::7", 2424},
    {"[::ffff:192.0.2.1]:110", AF_INET6, "::ffff:192.0.2.1", 110},
    {"unix:/run/pillar/lmtp.sock", AF_UNIX, "/run/pillar/lmtp.sock", 0},
};

/* Every spec the config accepts, the binder reads as the same address. */
static void test_specs_the_config_accepts(void **state)
{
	(void)state;
	for (size_t i = 0; i < sizeof(goods) / sizeof(goods[0]); i++) {
		const struct good *g = &goods[i];
		char why[CONFIG_WHY_MAX], text[INET6_ADDRSTRLEN];
		struct sockaddr_storage ss;
		socklen_t len = 0;
		const char *error = NULL;

		if (config_check_listen(g->spec, why) < 0)
			fail_msg("config refuses %s: %s", g->spec, why);
		if (listen_parse(g->spec, &ss, &len, &error) < 0)
			fail_msg("listen_parse refuses %s: %s", g->spec, error);
		assert_int_equal(ss.ss_family, g->family);
		if (g->family == AF_INET) {
			const struct sockaddr_in *sin = (const struct sockaddr_in *)&ss;
			assert_int_equal(len, sizeof(*sin));
			inet_ntop(AF_INET, &sin->sin_addr, text, sizeof(text));
			assert_string_equal(text, g->addr);
			assert_int_equal(ntohs(sin->sin_port), g->port);
		} else if (g->family == AF_INET6) {
			const struct sockaddr_in6 *sin6 = (const struct sockaddr_in6 *)&ss;
			assert_int_equal(len, sizeof(*sin6));
			inet_ntop(AF_INET6, &sin6->sin6_addr, text, sizeof(text));
			assert_string_equal(text, g->addr);
			assert_int_equal(ntohs(sin6->sin6_port), g->port);
		} else {
			assert_string_equal(((const struct sockaddr_un *)&ss)->sun_path, g->addr);
		}
	}
}

/* What neither accepts, and why the binder says so. */
static void test_bad_specs(void **state)
{
	(void)state;
	char long_path[160] = "unix:/";
	memset(long_path + 6, 'p', 120);
	long_path[126] = '\0';
	static const struct {
		const char *spec, *error;
	} bads[] = {
	    {"unix:run/lmtp.sock", "unix socket path must be absolute"},
	    {NULL, "unix socket path must be absolute"}, /* long_path */
	    {"110", "expected ADDR:PORT"},
	    {":110", "expected ADDR:PORT"},
	    {"127.0.0.1:0", "port must be 1-65535"},
	    {"127.0.0.1:65536", "port must be 1-65535"},
	    {"127.0.0.1:", "port must be 1-65535"},
	    {"127.0.0.1:11o", "port must be 1-65535"},
	    {"[::1:110", "IPv6 address must be in brackets"},
	    {"[]:110", "IPv6 address must be in brackets"},
	    {"localhost:110", "not a numeric IPv4 or IPv6 address"},
	    {"[mail.example.org]:25", "not a numeric IPv4 or IPv6 address"},
	    {"[1111:2222:3333:4444:5555:6666:7777:8888:9999:aaaa:bbbb:cccc:dddd:eeee]:25",
	     "address too long"},
	};
	for (size_t i = 0; i < sizeof(bads) / sizeof(bads[0]); i++) {
		const char *spec = bads[i].spec != NULL ? bads[i].spec : long_path;
		char why[CONFIG_WHY_MAX];
		struct sockaddr_storage ss;
		socklen_t len;
		const char *error = NULL;

		if (listen_parse(spec, &ss, &len, &error) == 0)
			fail_msg("listen_parse accepts %s", spec);
		if (strncmp(error, bads[i].error, strlen(bads[i].error)) != 0)
			fail_msg("%s: \"%s\", expected \"%s\"", spec, error, bads[i].error);
		if (config_check_listen(spec, why) == 0)
			fail_msg("config accepts %s", spec);
	}
}

static void v4(struct sockaddr_storage *ss, const char *addr)
{
	struct sockaddr_in *sin = (struct sockaddr_in *)ss;
	memset(ss, 0, sizeof(*ss));
	sin->sin_family = AF_INET;
	assert_int_equal(inet_pton(AF_INET, addr, &sin->sin_addr), 1);
}

static void v6(struct sockaddr_storage *ss, const char *addr)
{
	struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)ss;
	memset(ss, 0, sizeof(*ss));
	sin6->sin6_family = AF_INET6;
	assert_int_equal(inet_pton(AF_INET6, addr, &sin6->sin6_addr), 1);
}

/* How a client address reads in logs (v4-mapped IPv6 as IPv4), whether it
 * counts as loopback (plaintext_auth), and its 16-octet key (per-address
 * limits: one client is one key however its socket was opened). */
static void test_peer_addresses(void **state)
{
	(void)state;
	static const struct {
		int family;
		const char *addr, *text;
		bool loopback;
	} peers[] = {
	    {AF_INET, "192.0.2.7", "192.0.2.7", false},
	    {AF_INET, "127.0.0.1", "127.0.0.1", true},
	    {AF_INET, "127.255.0.9", "127.255.0.9", true},
	    {AF_INET, "128.0.0.1", "128.0.0.1", false},
	    {AF_INET6, "2001:db8::7", "2001:db8::7", false},
	    {AF_INET6, "::1", "::1", true},
	    {AF_INET6, "::2", "::2", false},
	    {AF_INET6, "::ffff:192.0.2.7", "192.0.2.7", false},
	    {AF_INET6, "::ffff:127.0.0.3", "127.0.0.3", true},
	};
	for (size_t i = 0; i < sizeof(peers) / sizeof(peers[0]); i++) {
		struct sockaddr_storage ss;
		char text[64];
		uint8_t key[16], want[16] = {0};

		if (peers[i].family == AF_INET) {
			v4(&ss, peers[i].addr);
			want[10] = want[11] = 0xff;
			memcpy(want + 12, &((struct sockaddr_in *)&ss)->sin_addr, 4);
		} else {
			v6(&ss, peers[i].addr);
			memcpy(want, &((struct sockaddr_in6 *)&ss)->sin6_addr, 16);
		}
		net_peer_string((struct sockaddr *)&ss, sizeof(ss), text, sizeof(text));
		assert_string_equal(text, peers[i].text);
		if (net_is_loopback((struct sockaddr *)&ss) != peers[i].loopback)
			fail_msg("%s: loopback should be %d", peers[i].addr, peers[i].loopback);
		net_peer_key((struct sockaddr *)&ss, key);
		assert_memory_equal(key, want, 16);
	}
	/* The same client over IPv4 and v4-mapped IPv6 is one key. */
	struct sockaddr_storage a, b;
	uint8_t ka[16], kb[16];
	v4(&a, "198.51.100.4");
	v6(&b, "::ffff:198.51.100.4");
	net_peer_key((struct sockaddr *)&a, ka);
	net_peer_key((struct sockaddr *)&b, kb);
	assert_memory_equal(ka, kb, 16);
	/* A unix-socket peer: "local", loopback, the zero key. */
	struct sockaddr_un sun = {.sun_family = AF_UNIX};
	char text[64];
	uint8_t key[16], zero[16] = {0};
	net_peer_string((struct sockaddr *)&sun, sizeof(sun), text, sizeof(text));
	assert_string_equal(text, "local");
	assert_true(net_is_loopback((struct sockaddr *)&sun));
	net_peer_key((struct sockaddr *)&sun, key);
	assert_memory_equal(key, zero, 16);
}

/* A unix listener replaces a stale socket file (a server that died), but
 * never a file that is not a socket; it is open to every local account. */
static void test_bind_unix(void **state)
{
	(void)state;
	char dir[] = "/tmp/pillar-test-listen-XXXXXX", path[128], spec[160], err[256];
	struct stat st;

	assert_non_null(mkdtemp(dir));
	snprintf(path, sizeof(path), "%s/lmtp.sock", dir);
	snprintf(spec, sizeof(spec), "unix:%s", path);

	int fd = listen_bind(spec, err, sizeof(err));
	if (fd < 0)
		fail_msg("%s", err);
	assert_int_equal(stat(path, &st), 0);
	assert_true(S_ISSOCK(st.st_mode));
	assert_int_equal(st.st_mode & 0777, 0666);
	close(fd); /* the file stays: a stale socket */
	fd = listen_bind(spec, err, sizeof(err));
	if (fd < 0)
		fail_msg("a stale socket file was not replaced: %s", err);
	close(fd);

	assert_int_equal(unlink(path), 0);
	FILE *f = fopen(path, "w");
	assert_non_null(f);
	fputs("not a socket\n", f);
	fclose(f);
	assert_int_equal(listen_bind(spec, err, sizeof(err)), -1);
	assert_non_null(strstr(err, spec));
	assert_non_null(strstr(err, strerror(EADDRINUSE)));
	assert_int_equal(stat(path, &st), 0);
	assert_true(S_ISREG(st.st_mode));
	unlink(path);

	/* A directory that does not exist, and a spec that does not parse. */
	snprintf(spec, sizeof(spec), "unix:%s/missing/lmtp.sock", dir);
	assert_int_equal(listen_bind(spec, err, sizeof(err)), -1);
	assert_non_null(strstr(err, strerror(ENOENT)));
	assert_int_equal(listen_bind("localhost:110", err, sizeof(err)), -1);
	assert_string_equal(err, "localhost:110: not a numeric IPv4 or IPv6 address");
	assert_int_equal(rmdir(dir), 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_specs_the_config_accepts),
	    cmocka_unit_test(test_bad_specs),
	    cmocka_unit_test(test_peer_addresses),
	    cmocka_unit_test(test_bind_unix),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
