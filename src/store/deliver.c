/* Maildir unique names, and delivery of a message already in memory (the
 * demo mail of `pillar init --demo`) through the one delivery path in
 * delivery.c. */
#include "store/deliver.h"
#include "store/delivery.h"
#include "store/maildir_name.h"
#include "store/maildir_private.h"

#include <errno.h>
#include <fcntl.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

static atomic_ulong delivery_counter;

void maildir_unique(char *out, size_t size, const char *hostname)
{
	struct timespec ts;
	unsigned char rnd[8];
	char host[MAILDIR_UNIQUE_MAX];
	size_t h = 0;

	clock_gettime(CLOCK_REALTIME, &ts);
	unsigned long counter = atomic_fetch_add(&delivery_counter, 1);
	if (getrandom(rnd, sizeof(rnd), GRND_NONBLOCK) != (ssize_t)sizeof(rnd)) {
		/* The name is still unique by pid and counter. */
		memset(rnd, 0, sizeof(rnd));
	}

	/* '/' and ':' escaped as octal (Maildir convention); ',' too, because
	 * it would end the unique part (S=/W= fields follow it), and anything
	 * not printable so the unique stays a valid UIDL. */
	for (const char *p = hostname; *p != '\0' && h + 5 < sizeof(host); p++) {
		unsigned char c = (unsigned char)*p;
		if (c == '/' || c == ':' || c == ',' || c == '\\' || c < 0x21 || c > 0x7e) {
			snprintf(host + h, sizeof(host) - h, "\\%03o", c);
			h += 4;
		} else {
			host[h++] = (char)c;
		}
	}
	host[h] = '\0';

	snprintf(out, size, "%lld.M%06ldP%ldQ%luR%02x%02x%02x%02x%02x%02x%02x%02x.%s",
	         (long long)ts.tv_sec, ts.tv_nsec / 1000, (long)getpid(), counter, rnd[0], rnd[1],
	         rnd[2], rnd[3], rnd[4], rnd[5], rnd[6], rnd[7], host);
}

int maildir_deliver(const char *path, const char *hostname, const void *data, size_t len,
                    int *temporary_r, const char **error_r)
{
	enum delivery_status status;
	const char *error;
	struct delivery *d;
	char *spool;

	/* One delivery path for everything: spool the message in the
	 * mailbox's own tmp/ (same file system, so the commit links rather
	 * than copies), then commit it to this one mailbox. */
	spool = malloc(strlen(path) + sizeof("/tmp"));
	if (spool == NULL) {
		*temporary_r = 1;
		*error_r = maildir_errno_str("delivery");
		return -1;
	}
	sprintf(spool, "%s/tmp", path);
	if (delivery_begin_in(spool, hostname, &d, error_r) < 0) {
		*temporary_r = errno != ENOENT && errno != ENOTDIR;
		free(spool);
		return -1;
	}
	free(spool);
	if (delivery_write(d, data, len, error_r) < 0) {
		delivery_free(&d);
		*temporary_r = 1;
		return -1;
	}
	if (delivery_commit(d, &path, 1, &status, &error) != 1) {
		*temporary_r = status != DELIVERY_PERMFAIL;
		*error_r = error;
		delivery_free(&d);
		return -1;
	}
	delivery_free(&d);
	return 0;
}
