/* Helpers shared by the admin commands. See cli.h. */
#include "cli/cli.h"

#include "auth/password.h"
#include "core/config.h"
#include "core/priv.h"
#include "core/util.h"
#include "directory/directory.h"

#include <errno.h>
#include <ftw.h>
#include <openssl/crypto.h>
#include <signal.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sysexits.h>
#include <termios.h>
#include <unistd.h>

void cli_err(const char *fmt, ...)
{
	va_list ap;

	fflush(stdout);
	fputs("pillar: ", stderr);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
}

int cli_usage_err(const char *cmd, const char *fmt, ...)
{
	va_list ap;

	fputs("pillar: ", stderr);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fprintf(stderr, " (see 'pillar %s --help')\n", cmd);
	return EX_USAGE;
}

int cli_load_config(const char *path, struct config **cfg_r)
{
	struct strlist errors = {0};

	if (path == NULL)
		path = config_default_path();
	if (config_load(path, cfg_r, &errors) < 0) {
		for (size_t i = 0; i < errors.count; i++)
			cli_err("%s", errors.items[i]);
		strlist_free(&errors);
		return EX_CONFIG;
	}
	return 0;
}

int cli_admin_open(const char *conf_path, struct config **cfg_r, struct dir **dir_r)
{
	return cli_admin_open_kicker(conf_path, cfg_r, dir_r, NULL);
}

int cli_admin_open_kicker(const char *conf_path, struct config **cfg_r, struct dir **dir_r,
                          struct cli_kicker **kicker_r)
{
	const char *err;
	int status;

	*dir_r = NULL;
	status = cli_load_config(conf_path, cfg_r);
	if (status != 0)
		return status;
	if (kicker_r != NULL) {
		*kicker_r = cli_kicker_new(*cfg_r);
		if (*kicker_r == NULL) {
			config_free(cfg_r);
			return EX_OSERR;
		}
	}
	if (geteuid() == 0) {
		uid_t uid;
		gid_t gid;

		if (priv_lookup((*cfg_r)->run_as, &uid, &gid, &err) < 0) {
			cli_err("%s: run_as: %s", (*cfg_r)->path, err);
			status = EX_CONFIG;
			goto fail;
		}
	}
	/* As root the directory opens first, each file with its owner's ids
	 * (directory/sqlite_files.c): its secrets are auth_as's alone, and an
	 * open connection keeps its files after root is gone. */
	if (dir_open(*cfg_r, false, dir_r, &err) < 0) {
		cli_err("%s", err);
		status = strstr(err, "not supported") != NULL ? EX_CONFIG : EX_UNAVAILABLE;
		goto fail;
	}
	if (geteuid() == 0 && priv_drop((*cfg_r)->run_as, &err) < 0) {
		cli_err("cannot become %s: %s", (*cfg_r)->run_as, err);
		dir_close(dir_r);
		status = EX_OSERR;
		goto fail;
	}
	return 0;
fail:
	if (kicker_r != NULL)
		cli_kicker_free(kicker_r);
	config_free(cfg_r);
	return status;
}

static int remove_one(const char *path, const struct stat *st, int type, struct FTW *ftw)
{
	(void)st;
	(void)ftw;
	if (type == FTW_DP)
		return rmdir(path) < 0 && errno != ENOENT ? -1 : 0;
	return unlink(path) < 0 && errno != ENOENT ? -1 : 0;
}

int cli_remove_tree(const char *path)
{
	/* FTW_PHYS: a symlink inside a mailbox is removed, never followed. */
	if (nftw(path, remove_one, 16, FTW_DEPTH | FTW_PHYS) < 0)
		return errno == ENOENT ? 0 : -1;
	return 0;
}

void cli_json_string(FILE *out, const char *s)
{
	fputc('"', out);
	for (const unsigned char *p = (const unsigned char *)s; *p != '\0'; p++) {
		if (*p == '"' || *p == '\\')
			fprintf(out, "\\%c", *p);
		else if (*p < 0x20 || *p == 0x7f)
			fprintf(out, "\\u%04x", *p);
		else
			fputc(*p, out); /* UTF-8 passes through, as JSON allows */
	}
	fputc('"', out);
}

/* The terminal state to restore if the user presses Ctrl-C at the prompt. */
static struct termios saved_tio;
static volatile sig_atomic_t echo_off;

static void restore_echo(int sig)
{
	if (echo_off)
		tcsetattr(STDIN_FILENO, TCSAFLUSH, &saved_tio);
	signal(sig, SIG_DFL);
	raise(sig);
}

static char *prompt(const char *text, int *status_r)
{
	struct termios tio;
	const char *err;
	char *pw;

	fputs(text, stderr);
	fflush(stderr);
	if (tcgetattr(STDIN_FILENO, &saved_tio) == 0) {
		tio = saved_tio;
		tio.c_lflag &= ~(tcflag_t)ECHO;
		tio.c_lflag |= ECHONL;
		echo_off = 1;
		tcsetattr(STDIN_FILENO, TCSAFLUSH, &tio);
	}
	pw = password_read_fd(STDIN_FILENO, &err);
	if (echo_off) {
		tcsetattr(STDIN_FILENO, TCSAFLUSH, &saved_tio);
		echo_off = 0;
	}
	if (pw == NULL) {
		cli_err("%s", err);
		*status_r = EX_DATAERR;
	}
	return pw;
}

char *cli_read_new_password(bool from_stdin, int *status_r)
{
	const char *err;
	char *pw, *again;

	if (from_stdin) {
		pw = password_read_fd(STDIN_FILENO, &err);
		if (pw == NULL) {
			cli_err("reading the password from stdin: %s", err);
			*status_r = EX_DATAERR;
		}
		return pw;
	}
	if (!isatty(STDIN_FILENO)) {
		cli_err("stdin is not a terminal: use --password-stdin to pass the password");
		*status_r = EX_USAGE;
		return NULL;
	}
	signal(SIGINT, restore_echo);
	signal(SIGTERM, restore_echo);
	pw = prompt("New password: ", status_r);
	if (pw == NULL)
		return NULL;
	again = prompt("Repeat password: ", status_r);
	if (again == NULL || strcmp(pw, again) != 0) {
		if (again != NULL) {
			cli_err("the passwords do not match");
			*status_r = EX_DATAERR;
			OPENSSL_cleanse(again, strlen(again));
			free(again);
		}
		OPENSSL_cleanse(pw, strlen(pw));
		free(pw);
		return NULL;
	}
	OPENSSL_cleanse(again, strlen(again));
	free(again);
	signal(SIGINT, SIG_DFL);
	signal(SIGTERM, SIG_DFL);
	return pw;
}
