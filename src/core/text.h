/* Text that came from a client, made safe for one log line. */
#ifndef PILLAR_CORE_TEXT_H
#define PILLAR_CORE_TEXT_H

#include <stddef.h>

/* Copy at most size-1 bytes of s into buf, replacing bytes outside
 * 0x21..0x7E (and '"', '=', '\\') with '?', so a value cannot forge fields
 * or lines in a key=value log. An empty s gives "-". Returns buf. */
const char *text_log_safe(const char *s, char *buf, size_t size);

#endif
