/* What a domain name and a mailbox address may look like (directory.h:
 * dir_check_domain, dir_check_address). Syntax only: nothing here reads
 * the directory. */
#include "directory/directory.h"

#include "core/util.h"

#include <string.h>

int dir_check_domain(char *domain, const char **error_r)
{
	size_t len = strlen(domain), label = 0;

	if (len == 0) {
		*error_r = "empty domain";
		return -1;
	}
	if (len > DIR_DOMAIN_MAX) {
		*error_r = "domain longer than 255 characters";
		return -1;
	}
	str_lower(domain);
	/* RFC 1035 §2.3.1 / RFC 1123 §2.1: letters, digits and hyphens, labels
	 * of 1-63, no hyphen at either end of a label. Single-label names such
	 * as "localhost" are allowed for test setups. */
	for (size_t i = 0; i <= len; i++) {
		char c = domain[i];

		if (c == '.' || c == '\0') {
			if (label == 0) {
				*error_r =
				    "empty label in domain (leading, trailing or double dot)";
				return -1;
			}
			if (domain[i - 1] == '-') {
				*error_r = "domain label may not end with '-'";
				return -1;
			}
			label = 0;
			continue;
		}
		if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-')) {
			*error_r = "domain may contain only letters, digits, '-' and '.'";
			return -1;
		}
		if (c == '-' && label == 0) {
			*error_r = "domain label may not start with '-'";
			return -1;
		}
		if (++label > 63) {
			*error_r = "domain label longer than 63 characters";
			return -1;
		}
	}
	return 0;
}

int dir_check_address(char *address, const char **error_r)
{
	char *at = strchr(address, '@');
	size_t local_len;

	if (at == NULL) {
		*error_r = "address must be local@domain";
		return -1;
	}
	if (strchr(at + 1, '@') != NULL) {
		*error_r = "address has more than one '@'";
		return -1;
	}
	if (strlen(address) > DIR_ADDRESS_MAX) {
		*error_r = "address longer than 254 characters";
		return -1;
	}
	local_len = (size_t)(at - address);
	if (local_len == 0) {
		*error_r = "empty local part";
		return -1;
	}
	if (local_len > DIR_LOCAL_MAX) {
		*error_r = "local part longer than 64 octets";
		return -1;
	}
	/* The local part becomes a directory name under <mail_root>/<domain>:
	 * nothing that could leave it or hide it. 8-bit bytes are allowed for
	 * SMTPUTF8 (RFC 6531) addresses. */
	if (address[0] == '.') {
		*error_r = "local part may not start with '.'";
		return -1;
	}
	for (size_t i = 0; i < local_len; i++) {
		unsigned char c = (unsigned char)address[i];

		if (c == '/') {
			*error_r = "local part may not contain '/'";
			return -1;
		}
		if (c <= 0x20 || c == 0x7f) {
			*error_r = "local part may not contain spaces or control characters";
			return -1;
		}
	}
	if (dir_check_domain(at + 1, error_r) < 0)
		return -1;
	str_lower(address);
	return 0;
}
