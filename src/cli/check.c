/* `pillar check`: validate a config file and report every problem. */
#include "cli/cli.h"

#include "core/config.h"

#include <getopt.h>
#include <stdbool.h>
#include <sysexits.h>

static const char check_help[] =
    "usage: pillar check [-c FILE] [--verbose]\n"
    "\n"
    "Validate a config file. Each problem is printed on stderr as\n"
    "FILE:LINE: key: what is wrong, and the exit status is 1; a good file prints\n"
    "\"FILE: ok\".\n"
    "\n"
    "  -c, --config FILE  the config file\n"
    "  -v, --verbose      also print the effective settings, defaults included\n"
    "  -h, --help         show this help\n";

int cli_check(int argc, char **argv)
{
	static const struct option opts[] = {
	    {"config", required_argument, NULL, 'c'},
	    {"verbose", no_argument, NULL, 'v'},
	    {"help", no_argument, NULL, 'h'},
	    {NULL, 0, NULL, 0},
	};
	struct strlist errors = {0};
	const char *conf = NULL;
	bool verbose = false;
	struct config *cfg;
	int c;

	optind = 0;
	opterr = 0;
	while ((c = getopt_long(argc, argv, ":c:vh", opts, NULL)) != -1) {
		switch (c) {
		case 'c':
			conf = optarg;
			break;
		case 'v':
			verbose = true;
			break;
		case 'h':
			fputs(check_help, stdout);
			return 0;
		case ':':
			return cli_usage_err("check", "option %s needs a value", argv[optind - 1]);
		default:
			return cli_usage_err("check", "unknown option %s", argv[optind - 1]);
		}
	}
	if (optind < argc)
		return cli_usage_err("check", "unexpected argument '%s'", argv[optind]);
	if (conf == NULL)
		conf = config_default_path();

	if (config_load(conf, &cfg, &errors) < 0) {
		for (size_t i = 0; i < errors.count; i++)
			fprintf(stderr, "%s\n", errors.items[i]);
		strlist_free(&errors);
		return 1;
	}
	printf("%s: ok\n", conf);
	if (verbose)
		config_dump(cfg, stdout);
	config_free(&cfg);
	return 0;
}
