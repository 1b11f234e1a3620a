#include "core/text.h"

const char *text_log_safe(const char *s, char *buf, size_t size)
{
	size_t i = 0;

	if (size == 0)
		return "";
	for (; s[i] != '\0' && i + 1 < size; i++) {
		unsigned char ch = (unsigned char)s[i];
		buf[i] =
		    ch < 0x21 || ch > 0x7e || ch == '"' || ch == '=' || ch == '\\' ? '?' : (char)ch;
	}
	if (i == 0 && size > 1)
		buf[i++] = '-';
	buf[i] = '\0';
	return buf;
}
