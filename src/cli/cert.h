/* The self-signed certificate `pillar init` makes, so a fresh instance
 * serves POP3S and STLS at once. Replace it with one from a CA (an ACME
 * client) for real clients; `pillar reload` picks the new files up. */
#ifndef PILLAR_CLI_CERT_H
#define PILLAR_CLI_CERT_H

#include <stddef.h>

/* Write a new P-256 key (mode 0600) and a self-signed certificate for
 * `hostname` (also naming localhost, 127.0.0.1 and ::1), valid 825 days.
 * Both files must not exist. Returns 0, or -1 with a message in err. */
int cert_make_selfsigned(const char *cert_path, const char *key_path, const char *hostname,
                         char *err, size_t errlen);

#endif
