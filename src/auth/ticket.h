/* Login tickets: the auth process's word that a user has just logged in,
 * which a login worker must hand to the mail worker with the session.
 *
 * A mail worker acts on a hand-off record from a login worker, the process
 * that faces clients before they log in. Without a ticket a login worker
 * taken over by an attacker could name any user in a record and be served
 * that mailbox. With one, it can only pass on logins the auth process has
 * confirmed in the last TICKET_LIFETIME_MS: a ticket is an HMAC-SHA256, by
 * a key only the master, the auth process and the mail workers hold (login
 * workers wipe their copy before they read from any client), over the user
 * and the time it was made. */
#ifndef PILLAR_AUTH_TICKET_H
#define PILLAR_AUTH_TICKET_H

#include <stdbool.h>
#include <stdint.h>

#define TICKET_KEY_LEN 32
/* The time it was made (8 octets), then the MAC (32). */
#define TICKET_SIZE 40
/* A hand-off normally follows its login within milliseconds; this leaves
 * room for mail workers that are slow to take it. */
#define TICKET_LIFETIME_MS (60u * 1000u)

/* A ticket for user, made at now (now_ms(): CLOCK_MONOTONIC, the same in
 * every process). */
void ticket_make(const uint8_t key[TICKET_KEY_LEN], const char *user, uint64_t now,
                 uint8_t out[TICKET_SIZE]);

/* Whether t is a ticket for user made by key no longer than
 * TICKET_LIFETIME_MS before now (and not after it). */
bool ticket_valid(const uint8_t key[TICKET_KEY_LEN], const char *user, const uint8_t t[TICKET_SIZE],
                  uint64_t now);

#endif
