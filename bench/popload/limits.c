/* popload limits: what this machine can do at best, measured by the same
 * tool, printed next to the rows they bound. */
#include "popload.h"

#include <arpa/inet.h>
#include <crypt.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

/* One TCP stream over loopback: a child writes, we read. */
double limit_tcp(double seconds)
{
	int ls = socket(AF_INET, SOCK_STREAM, 0);
	struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	socklen_t al = sizeof(a);
	if (ls < 0 || bind(ls, (struct sockaddr *)&a, sizeof(a)) < 0 || listen(ls, 1) < 0 ||
	    getsockname(ls, (struct sockaddr *)&a, &al) < 0)
		die("limits: listen: %s", strerror(errno));
	pid_t pid = fork();
	if (pid < 0)
		die("fork: %s", strerror(errno));
	if (pid == 0) {
		int s = socket(AF_INET, SOCK_STREAM, 0);
		if (connect(s, (struct sockaddr *)&a, sizeof(a)) < 0)
			_exit(1);
		static char buf[256 * 1024];
		memset(buf, 'x', sizeof(buf));
		double end = now_s() + seconds + 5;
		/* Bounded by time; the reader closing ends it sooner. */
		while (now_s() < end)
			if (send(s, buf, sizeof(buf), MSG_NOSIGNAL) <= 0)
				break;
		_exit(0);
	}
	int s = accept(ls, NULL, NULL);
	if (s < 0)
		die("limits: accept: %s", strerror(errno));
	static char rbuf[256 * 1024];
	uint64_t total = 0;
	double t0 = now_s(), t;
	while ((t = now_s()) - t0 < seconds) {
		ssize_t r = recv(s, rbuf, sizeof(rbuf), 0);
		if (r <= 0)
			break;
		total += (uint64_t)r;
	}
	close(s);
	close(ls);
	waitpid(pid, NULL, 0);
	return (double)total / (t - t0) / 1e6;
}

double limit_memcpy(double seconds)
{
	size_t n = 64u * 1024 * 1024;
	char *a = malloc(n), *b = malloc(n);
	if (a == NULL || b == NULL)
		die("out of memory");
	memset(a, 1, n);
	memset(b, 2, n);
	uint64_t total = 0;
	double t0 = now_s(), t;
	int rounds = 0;
	while ((t = now_s()) - t0 < seconds && rounds < 100000) {
		memcpy((rounds & 1) ? a : b, (rounds & 1) ? b : a, n);
		total += n;
		rounds++;
	}
	volatile char sink = a[n / 2] ^ b[n / 3];
	(void)sink;
	free(a);
	free(b);
	return (double)total / (t - t0) / 1e6;
}

/* sha512-crypt verifications per second on one core: logins/s can at best
 * be this times the number of cores with these hashes. */
double limit_crypt(double seconds)
{
	char salt[CRYPT_GENSALT_OUTPUT_SIZE];
	if (crypt_gensalt_rn("$6$", 0, NULL, 0, salt, sizeof(salt)) == NULL)
		die("crypt_gensalt: %s", strerror(errno));
	struct crypt_data cd;
	memset(&cd, 0, sizeof(cd));
	char *h = crypt_r("benchmark password", salt, &cd);
	if (h == NULL || h[0] == '*')
		die("crypt: no sha512-crypt");
	char hash[CRYPT_OUTPUT_SIZE];
	snprintf(hash, sizeof(hash), "%s", h);
	long n = 0;
	double t0 = now_s(), t;
	while ((t = now_s()) - t0 < seconds && n < 1000000) {
		crypt_r("benchmark password", hash, &cd);
		n++;
	}
	return (double)n / (t - t0);
}

/* Durable small writes per second in `dir`, one after another: write 10 KB
 * to a new file, fsync it, rename it, fsync the directory (what a Maildir
 * delivery must do). Deliveries/s per connection cannot beat this unless
 * fsyncs are shared between deliveries. */
double limit_fsync(const char *dir, double seconds)
{
	static char buf[10240];
	char tmp[PATH_MAX], dst[PATH_MAX];
	memset(buf, 'x', sizeof(buf));
	int dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (dfd < 0)
		die("limits: %s: %s", dir, strerror(errno));
	long n = 0;
	double t0 = now_s(), t;
	while ((t = now_s()) - t0 < seconds && n < 100000) {
		snprintf(tmp, sizeof(tmp), "%s/popload-fsync.tmp", dir);
		snprintf(dst, sizeof(dst), "%s/popload-fsync.%ld", dir, n % 2);
		int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
		if (fd < 0 || write(fd, buf, sizeof(buf)) != (ssize_t)sizeof(buf) || fsync(fd) < 0)
			die("limits: %s: %s", tmp, strerror(errno));
		close(fd);
		if (rename(tmp, dst) < 0 || fsync(dfd) < 0)
			die("limits: %s: %s", dst, strerror(errno));
		n++;
	}
	for (int i = 0; i < 2; i++) {
		snprintf(dst, sizeof(dst), "%s/popload-fsync.%d", dir, i);
		unlink(dst);
	}
	close(dfd);
	return (double)n / (t - t0);
}
