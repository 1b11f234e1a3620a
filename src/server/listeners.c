#include "server/listeners.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/config.h"
#include "core/util.h"
#include "net/listen.h"

const char *listener_proto_name(enum listener_proto proto)
{
	switch (proto) {
	case PROTO_POP3:
		return "pop3";
	case PROTO_POP3S:
		return "pop3s";
	case PROTO_SMTP:
		return "smtp";
	case PROTO_LMTP:
		return "lmtp";
	}
	return "?";
}

static void set_add(struct listener_set *set, enum listener_proto proto, const char *spec, int fd)
{
	set->items = realloc(set->items, (set->count + 1) * sizeof(*set->items));
	if (set->items == NULL)
		abort();
	set->items[set->count].proto = proto;
	set->items[set->count].spec = xstrdup(spec);
	set->items[set->count].fd = fd;
	set->count++;
}

static struct listener *find_reusable(struct listener_set *reuse, enum listener_proto proto,
                                      const char *spec)
{
	for (size_t i = 0; reuse != NULL && i < reuse->count; i++) {
		struct listener *l = &reuse->items[i];
		if (l->fd >= 0 && l->proto == proto && strcmp(l->spec, spec) == 0)
			return l;
	}
	return NULL;
}

int listeners_bind(const struct config *cfg, struct listener_set *reuse, struct listener_set *out,
                   char *err, size_t errlen)
{
	const struct {
		enum listener_proto proto;
		const struct strlist *specs;
	} kinds[] = {
	    {PROTO_POP3, &cfg->pop3_listen},
	    {PROTO_POP3S, &cfg->pop3s_listen},
	    {PROTO_SMTP, &cfg->smtp_listen},
	    {PROTO_LMTP, &cfg->lmtp_listen},
	};

	memset(out, 0, sizeof(*out));
	for (size_t k = 0; k < sizeof(kinds) / sizeof(kinds[0]); k++) {
		for (size_t i = 0; i < kinds[k].specs->count; i++) {
			const char *spec = kinds[k].specs->items[i];
			/* Reused sockets are marked -2 for now and taken over
			 * only once everything else is bound. */
			int fd = find_reusable(reuse, kinds[k].proto, spec) != NULL
			             ? -2
			             : listen_bind(spec, err, errlen);
			if (fd == -1) {
				listeners_close(out, 0);
				return -1;
			}
			set_add(out, kinds[k].proto, spec, fd);
		}
	}
	for (size_t i = 0; i < out->count; i++) {
		struct listener *l = &out->items[i];
		if (l->fd == -2) {
			struct listener *old = find_reusable(reuse, l->proto, l->spec);
			if (old == NULL) { /* the same spec twice */
				snprintf(err, errlen, "%s: listed twice", l->spec);
				l->fd = -1;
				listeners_close(out, 0);
				return -1;
			}
			l->fd = old->fd;
			old->fd = -1;
		}
	}
	return 0;
}

void listeners_close(struct listener_set *set, int unlink_paths)
{
	for (size_t i = 0; i < set->count; i++) {
		struct listener *l = &set->items[i];
		if (l->fd >= 0) {
			close(l->fd);
			if (unlink_paths && strncmp(l->spec, "unix:", 5) == 0)
				unlink(l->spec + 5);
		}
		free(l->spec);
	}
	free(set->items);
	set->items = NULL;
	set->count = 0;
}
