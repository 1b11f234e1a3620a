#include "directory/thread.h"

#include <pthread.h>
#include <stdlib.h>

#include "directory/directory.h"

static pthread_key_t dir_key;
static pthread_once_t dir_key_once = PTHREAD_ONCE_INIT;

static void dir_key_destroy(void *p)
{
	struct dir *dir = p;
	dir_close(&dir);
}

static void dir_key_make(void)
{
	if (pthread_key_create(&dir_key, dir_key_destroy) != 0)
		abort();
}

struct dir *dir_thread(const struct config *cfg, const char **error_r)
{
	pthread_once(&dir_key_once, dir_key_make);
	struct dir *dir = pthread_getspecific(dir_key);
	if (dir == NULL && dir_open(cfg, false, &dir, error_r) == 0)
		pthread_setspecific(dir_key, dir);
	return dir;
}

void dir_thread_drop(void)
{
	pthread_once(&dir_key_once, dir_key_make);
	struct dir *dir = pthread_getspecific(dir_key);
	dir_close(&dir);
	pthread_setspecific(dir_key, NULL);
}
