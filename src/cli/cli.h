/* The `pillar` admin commands: what the subcommand files share.
 *
 * Every command function gets the words from its own name on (argv[0] is
 * "init", "domain", ...) and returns the process exit status, a sysexits.h
 * code on failure. Errors are printed as one line, "pillar: ...", on stderr
 * by the function that knows what went wrong. */
#ifndef PILLAR_CLI_CLI_H
#define PILLAR_CLI_CLI_H

#include <stdbool.h>
#include <stdio.h>

struct config;
struct dir;

int cli_init(int argc, char **argv);
int cli_check(int argc, char **argv);
int cli_domain(int argc, char **argv);
int cli_user(int argc, char **argv);
int cli_alias(int argc, char **argv);
int cli_deliver(int argc, char **argv);
int cli_who(int argc, char **argv);
int cli_kick(int argc, char **argv);
int cli_reload(int argc, char **argv);
int cli_stop(int argc, char **argv);
int cli_directory(int argc, char **argv);
int cli_migrate_directory(int argc, char **argv);

/* "pillar: <message>\n" on stderr. */
void cli_err(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* An option-parsing error, one line: the message and where to find help.
 * Returns EX_USAGE. */
int cli_usage_err(const char *cmd, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Load the config at path (config_default_path() when NULL); prints every
 * error and returns EX_CONFIG on failure, else 0. */
int cli_load_config(const char *path, struct config **cfg_r);

/* For commands that touch state: load the config, then (when root) become
 * run_as before anything in the state dir is opened, so no root-owned file
 * ever appears there; then open the directory. Returns 0 or an exit code
 * after printing the reason. */
int cli_admin_open(const char *conf_path, struct config **cfg_r, struct dir **dir_r);

/* cli_admin_open, and first, when kicker_r is not NULL, a kicker that can
 * still end sessions through the control socket after the drop to run_as
 * (see cli_kicker_new). */
struct cli_kicker;
int cli_admin_open_kicker(const char *conf_path, struct config **cfg_r, struct dir **dir_r,
                          struct cli_kicker **kicker_r);

/* ---- the running server's control socket (control.c) ---- */

/* Send one request line (ending in "\n") to <state_dir>/control.sock and
 * read the whole answer. Returns it (malloc'd) or NULL after printing why,
 * with *status_r set (EX_UNAVAILABLE when the server is not running,
 * EX_NOPERM when the socket is not ours). */
char *cli_control_request(const struct config *cfg, const char *req, int *status_r);

/* End every session of target (an address or a session id) as a dropped
 * connection would: a POP3 session applies no deletions. The sessions end
 * asynchronously: a POP3 session's mailbox lock is free a moment later.
 * Returns 0 with *ended_r, or an exit status after printing why. */
int cli_control_kick(const struct config *cfg, const char *target, unsigned *ended_r);

/* The control socket is root's; admin commands run as run_as. A kicker made
 * while still root (a tiny helper process that only sends kick requests)
 * lets the command kick after the drop; made without root it kicks
 * directly. cfg must outlive it. NULL after printing why. */
struct cli_kicker *cli_kicker_new(const struct config *cfg);
/* As cli_control_kick, for one mailbox address. */
int cli_kicker_kick(struct cli_kicker *k, const char *address, unsigned *ended_r);
void cli_kicker_free(struct cli_kicker **k);

/* ---- mailboxes (user.c), shared with domain del --force ---- */

/* `pillar user del`: move the Maildir to <state_dir>/deleted/ (with purge:
 * remove it), then remove the row and the aliases' rows that name it; a
 * failure of either step undoes the other. A POP3 session that has the
 * mailbox open is ended through kicker when it is not NULL, else the
 * deletion is refused (EX_TEMPFAIL). Prints what it did. Returns 0 or an
 * exit status after printing why. */
int cli_user_del(struct dir *dir, const struct config *cfg, const char *address, bool purge,
                 struct cli_kicker *kicker);
/* Whether a POP3 session has the mailbox open now: 1 (it holds the
 * Maildir's lock), 2 (only the lock in PostgreSQL is taken: a session on
 * another server sharing the directory), 0 when not, -1 after printing an
 * error. */
int cli_mailbox_in_use(const struct config *cfg, const char *address);

/* Remove path and everything below it, without following symlinks. A path
 * that does not exist is fine. Returns 0 or -1 with errno set. */
int cli_remove_tree(const char *path);

/* Write s as a JSON string literal (quotes included). */
void cli_json_string(FILE *out, const char *s);

/* Read a new password: from stdin when from_stdin, else prompted twice on a
 * terminal with echo off. Returns a malloc'd string (free it after
 * OPENSSL_cleanse) or NULL after printing why, with *status_r set. */
char *cli_read_new_password(bool from_stdin, int *status_r);

#endif
