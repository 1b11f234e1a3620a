/* What the files of `pillar user` (user.c, user_show.c, user_move.c) share;
 * nothing outside src/cli/user*.c includes this. Each function prints its
 * own errors ("pillar: ...") and returns 0 or an exit status, like the
 * commands in cli.h. */
#ifndef PILLAR_CLI_USER_H
#define PILLAR_CLI_USER_H

#include <stdbool.h>

struct config;
struct dir;
struct dir_user;
struct cli_kicker;

/* 1 the mailbox exists, 0 not, -1 error (printed). */
int cli_user_exists(struct dir *dir, const char *address);
/* The mailbox's row with its password hash wiped: 1, 0 (printed "no such
 * mailbox"), -1 (printed). */
int cli_user_lookup(struct dir *dir, const char *address, struct dir_user *user);

/* user list [DOMAIN] [--json], user show ADDRESS [--json] */
int cli_user_list(struct dir *dir, const struct config *cfg, const char *domain, bool json);
int cli_user_show(struct dir *dir, const struct config *cfg, const char *address, bool json);

/* user rename OLD NEW [--kick]: kicker NULL without --kick. */
int cli_user_rename(struct dir *dir, const struct config *cfg, const char *from, const char *to,
                    struct cli_kicker *kicker);

#endif
