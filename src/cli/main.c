/* `pillar`: one program, subcommands. This file is the dispatcher and
 * `pillar serve`; each admin command lives in its own file (cli.h). */
#include "cli/cli.h"

#include "core/config.h"
#include "server/server.h"

#include <getopt.h>
#include <stdlib.h>
#include <string.h>
#include <sysexits.h>

#define PILLAR_VERSION "0.1"

struct command {
	const char *name;
	const char *synopsis;
	const char *summary;
	int (*run)(int argc, char **argv);
};

static int cli_serve(int argc, char **argv);
static int cli_help(int argc, char **argv);

static const struct command commands[] = {
    {"init", "init DIR [--demo] [--run-as USER] [--hostname NAME]",
     "make a ready-to-run instance in DIR", cli_init},
    {"serve", "serve [-c FILE] [--foreground]", "run the server", cli_serve},
    {"check", "check [-c FILE] [--verbose]", "validate a config file", cli_check},
    {"domain", "domain add|del|list ...", "manage local domains", cli_domain},
    {"user", "user add|del|rename|passwd|lock|unlock|quota|list|show ...", "manage mailboxes",
     cli_user},
    {"alias", "alias add|del|list ...", "manage aliases", cli_alias},
    {"directory", "directory migrate [-c FILE]", "create or update the directory's tables",
     cli_directory},
    {"migrate-directory", "migrate-directory --from sqlite --to URL [-c FILE]",
     "copy a directory into PostgreSQL", cli_migrate_directory},
    {"deliver", "deliver [-c FILE] [-f SENDER] RCPT...", "deliver a message from stdin",
     cli_deliver},
    {"who", "who [--json] [-c FILE]", "list the running server's sessions", cli_who},
    {"kick", "kick ADDRESS|SESSION [-c FILE]", "end sessions (no deletions)", cli_kick},
    {"reload", "reload [-c FILE]", "re-read config and certificates", cli_reload},
    {"stop", "stop [--grace TIME] [-c FILE]", "stop the running server", cli_stop},
    {"help", "help [COMMAND]", "show this help, or a command's", cli_help},
};
#define NCOMMANDS (sizeof(commands) / sizeof(commands[0]))

static void usage(FILE *out)
{
	fprintf(out, "usage: pillar COMMAND [ARGS]\n\n"
	             "Pillar is a POP3 and SMTP mail server.\n\ncommands:\n");
	for (size_t i = 0; i < NCOMMANDS; i++)
		fprintf(out, "  pillar %-52s %s\n", commands[i].synopsis, commands[i].summary);
	fprintf(out, "\nEvery command takes -c FILE; without it $PILLAR_CONF, then ./pillar.conf,\n"
	             "then /etc/pillar/pillar.conf. 'pillar COMMAND --help' describes one.\n");
}

static const struct command *find_command(const char *name)
{
	for (size_t i = 0; i < NCOMMANDS; i++) {
		if (strcmp(commands[i].name, name) == 0)
			return &commands[i];
	}
	return NULL;
}

static int cli_help(int argc, char **argv)
{
	char *help_argv[] = {NULL, (char *)"--help", NULL};
	const struct command *cmd;

	if (argc < 2 || strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0) {
		usage(stdout);
		return 0;
	}
	cmd = find_command(argv[1]);
	if (cmd == NULL || cmd->run == cli_help) {
		cli_err("no such command '%s'", argv[1]);
		usage(stderr);
		return EX_USAGE;
	}
	help_argv[0] = argv[1];
	return cmd->run(2, help_argv);
}

static const char serve_help[] =
    "usage: pillar serve [-c FILE] [--foreground]\n"
    "\n"
    "Run the server with every listener the config names. As root it opens the\n"
    "directory (migrating an older schema) and binds the listeners, then runs its\n"
    "mail workers as run_as, its login workers as login_as and its auth process\n"
    "as auth_as.\n"
    "\n"
    "  -c, --config FILE  the config file\n"
    "  -f, --foreground   stay attached to the terminal and log to stderr\n"
    "  -h, --help         show this help\n";

static int cli_serve(int argc, char **argv)
{
	static const struct option opts[] = {
	    {"config", required_argument, NULL, 'c'},
	    {"foreground", no_argument, NULL, 'f'},
	    {"help", no_argument, NULL, 'h'},
	    {NULL, 0, NULL, 0},
	};
	const char *conf = NULL;
	bool foreground = false;
	struct config *cfg;
	int c, status;

	optind = 0;
	opterr = 0;
	while ((c = getopt_long(argc, argv, ":c:fh", opts, NULL)) != -1) {
		switch (c) {
		case 'c':
			conf = optarg;
			break;
		case 'f':
			foreground = true;
			break;
		case 'h':
			fputs(serve_help, stdout);
			return 0;
		case ':':
			return cli_usage_err("serve", "option %s needs a value", argv[optind - 1]);
		default:
			return cli_usage_err("serve", "unknown option %s", argv[optind - 1]);
		}
	}
	if (optind < argc)
		return cli_usage_err("serve", "unexpected argument '%s'", argv[optind]);
	status = cli_load_config(conf, &cfg);
	if (status != 0)
		return status;
	return server_run(cfg, foreground);
}

int main(int argc, char **argv)
{
	const struct command *cmd;

	if (argc < 2) {
		usage(stderr);
		return EX_USAGE;
	}
	if (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0) {
		usage(stdout);
		return 0;
	}
	if (strcmp(argv[1], "--version") == 0) {
		printf("pillar %s\n", PILLAR_VERSION);
		return 0;
	}
	cmd = find_command(argv[1]);
	if (cmd == NULL) {
		cli_err("unknown command '%s'", argv[1]);
		usage(stderr);
		return EX_USAGE;
	}
	return cmd->run(argc - 1, argv + 1);
}
