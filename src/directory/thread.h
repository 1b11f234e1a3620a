/* One directory connection per thread of the pool: opened on first use,
 * dropped after an error (so the next call reopens it: the database may have
 * been restarted or replaced), and closed when the thread ends. */
#ifndef PILLAR_DIRECTORY_THREAD_H
#define PILLAR_DIRECTORY_THREAD_H

struct config;
struct dir;

/* This thread's connection, or NULL with *error_r. */
struct dir *dir_thread(const struct config *cfg, const char **error_r);

/* Close this thread's connection after an error. */
void dir_thread_drop(void);

#endif
