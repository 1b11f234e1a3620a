/* Mailbox quotas. See quota.h. */
#include "store/quota.h"
#include "store/maildir.h"

int quota_check(const char *maildir, uint64_t quota_bytes, uint64_t quota_messages,
                uint64_t incoming, enum quota_state *state_r, const char **error_r)
{
	uint64_t messages, bytes;

	*state_r = QUOTA_OK;
	if (quota_bytes == 0 && quota_messages == 0)
		return 0;
	if (maildir_stats(maildir, &messages, &bytes, error_r) < 0)
		return -1;
	if (incoming == 0) {
		if ((quota_messages > 0 && messages >= quota_messages) ||
		    (quota_bytes > 0 && bytes >= quota_bytes))
			*state_r = QUOTA_FULL;
		return 0;
	}
	/* Written so that nothing can overflow: bytes + incoming > quota
	 * as incoming > quota - bytes, once bytes <= quota is known. */
	if ((quota_messages > 0 && messages >= quota_messages) ||
	    (quota_bytes > 0 && (bytes > quota_bytes || incoming > quota_bytes - bytes)))
		*state_r = QUOTA_WONT_FIT;
	return 0;
}
