/* The sockets the master binds and every worker inherits. */
#ifndef PILLAR_SERVER_LISTENERS_H
#define PILLAR_SERVER_LISTENERS_H

#include <stdbool.h>
#include <stdint.h>
#include <stddef.h>
#include <sys/types.h>

struct config;

enum listener_proto { PROTO_POP3, PROTO_POP3S, PROTO_SMTP, PROTO_LMTP };

struct listener {
	enum listener_proto proto;
	char *spec;
	int fd;
};

struct listener_set {
	struct listener *items;
	size_t count;
};

const char *listener_proto_name(enum listener_proto proto);

/* Bind every listener cfg names. Sockets already bound in `reuse` with the
 * same protocol and spec are taken over (moved out of reuse) instead of being
 * bound again, so a reload never drops a listening socket. Returns 0, or -1
 * with err filled and nothing bound. */
int listeners_bind(const struct config *cfg, struct listener_set *reuse, struct listener_set *out,
                   char *err, size_t errlen);

/* Close every socket (removing unix socket files when unlink_paths). */
void listeners_close(struct listener_set *set, int unlink_paths);

/* The worker process: serves the listeners until told to stop. Returns the
 * process exit status. */
struct iplimit;
struct penalty;
struct tls_ctx;
/* Login workers accept every connection, log POP3 clients in and take SMTP
 * and LMTP up to the first MAIL, then hand them to mail workers, which
 * serve the rest (DESIGN §3). */
enum worker_role { ROLE_LOGIN, ROLE_MAIL };

struct authp_addr;
struct worker_params {
	const struct config *cfg;
	const struct listener_set *listeners;
	struct tls_ctx *tls;
	struct iplimit *ipl;
	struct penalty *penalty;
	enum worker_role role;
	unsigned slot;   /* unique among live workers (per-IP table, logs) */
	unsigned index;  /* among the workers of its role and generation */
	int ctl;         /* this worker's end of the control channel */
	int handoff;     /* login: the sending end; mail: the receiving end */
	int jail;        /* login, as root: the empty directory to chroot to; else -1 */
	uid_t login_uid; /* login, as root: the login_as account */
	gid_t login_gid;
	bool housekeeper;              /* the first mail worker of its generation: Maildir sweeps */
	const struct authp_addr *auth; /* its generation's auth process */
	const uint8_t *ticket_key;     /* mail: checks login tickets (auth/ticket.h) */
};
int worker_main(const struct worker_params *p);

#endif
