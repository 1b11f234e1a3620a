/* What the mail side of a connection is created from, and nothing else
 * (DESIGN §3). A login worker fills it in when the part of a session that
 * needs no mail is done — a POP3 login, an SMTP or LMTP client's first
 * MAIL — and a mail worker starts the rest of the session from it
 * (src/server/handoff.c carries it between the two processes). Kept here,
 * below the protocols, so neither half reaches into the other's memory. */
#ifndef PILLAR_CORE_HANDOFF_H
#define PILLAR_CORE_HANDOFF_H

#include <stdbool.h>
#include <stdint.h>

struct conn;
struct worker_env;

enum handoff_proto { HANDOFF_POP3, HANDOFF_SMTP, HANDOFF_LMTP };

/* Session ids: 12 random base32 characters in every protocol. */
#define HANDOFF_SID_LEN 12
/* A mail address or a HELO name (RFC 5321 §4.5.3.1.2: 255 octets). */
#define HANDOFF_NAME_MAX 255
/* The auth process's login ticket (auth/ticket.h: TICKET_SIZE). */
#define HANDOFF_TICKET_SIZE 40

struct session_handoff {
	struct worker_env *env;
	struct conn *conn; /* paused; the input not yet answered is in it */
	enum handoff_proto proto;
	char sid[HANDOFF_SID_LEN + 1];
	/* POP3: who logged in. SMTP/LMTP: who authenticated ("" if nobody). */
	char user[HANDOFF_NAME_MAX + 1];
	/* The auth process's ticket for user; a mail worker takes no record
	 * that names a user without a valid one. */
	uint8_t ticket[HANDOFF_TICKET_SIZE];
	uint64_t connected_ms; /* CLOCK_MONOTONIC, the same in every process */
	int64_t since;         /* unix time of the connection, for `pillar who` */
	/* SMTP and LMTP: what the client said before its first MAIL. */
	char helo[HANDOFF_NAME_MAX + 1];
	bool esmtp;      /* EHLO/LHLO rather than HELO */
	unsigned errors; /* failed commands so far (the limit counts them all) */
};

#endif
