/* The POP3 session lock across servers (DESIGN §7): with a PostgreSQL
 * directory, a session also holds a PostgreSQL advisory lock on its
 * mailbox, so that two servers sharing one mail store never open the same
 * mailbox at once. The Maildir's own lock (maildir_lock, an flock) still
 * keeps two sessions of one server apart; with SQLite it is the only one
 * needed, and these functions do nothing.
 *
 * The advisory lock lives on a connection of this process, one for every
 * session (thousands of connections would be too many), so it is released
 * when the session ends (dir_session_unlock) or when the process dies and
 * its connection drops. If that connection breaks while sessions are
 * open (PostgreSQL restarted), a thread of this process connects again as
 * soon as the server is back and takes their locks again; a lock another
 * server took first is lost, and its session must end without changing
 * the mailbox.
 *
 * Both calls block on the network: call them from the thread pool or an
 * admin command, never on an event loop. Thread-safe. */
#ifndef PILLAR_DIRECTORY_LOCK_H
#define PILLAR_DIRECTORY_LOCK_H

#include <stdbool.h>

struct config;
struct dir_session_lock;

/* Take the lock of mailbox `address` (lower-case local@domain). Returns 0
 * with *lock_r (NULL when the directory needs none), 1 when a session
 * elsewhere holds it, -1 on error with *error_r (a per-thread string valid
 * until the next call). */
int dir_session_lock(const struct config *cfg, const char *address,
                     struct dir_session_lock **lock_r, const char **error_r);

/* Whether another server took this lock while PostgreSQL was restarting
 * (false for NULL). Cheap: for every command of a session. */
bool dir_session_lock_lost(const struct dir_session_lock *lock);

/* Make sure the lock is held right now, reconnecting if need be: 0, or -1
 * with *error_r when it is lost or cannot be checked. Before a session
 * changes its mailbox. NULL is held. */
int dir_session_lock_confirm(struct dir_session_lock *lock, const char **error_r);

/* Release a lock from dir_session_lock and NULL the pointer; NULL is fine. */
void dir_session_unlock(struct dir_session_lock **lock);

#endif
