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
