/*
 * cachekeeper: the command-line client. Commands are a table; each has its
 * own getopt_long options and --help. Exit codes: 0 success, 1 failure (for
 * validate: an invalid spec), 2 usage error.
 */
#include "config.h"

#include <sys/stat.h>

#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"
#include "client.h"
#include "util.h"

static const struct cli_command *const commands[] = {
	&cli_status_command,
	&cli_plan_command,
	&cli_validate_command,
	&cli_reconcile_command,
	&cli_snapshot_command,
	&cli_snapshots_command,
	&cli_snapshot_delete_command,
	&cli_failover_command,
	&cli_confirm_command,
	NULL
};

static void
usage(FILE *f)
{
	size_t	 i;

	fprintf(f, "usage: cachekeeper [--version] [--help] [--socket PATH] "
	    "COMMAND [ARGS]\n\nCommands:\n");
	for (i = 0; commands[i] != NULL; i++)
		fprintf(f, "  %-17s %s\n", commands[i]->name,
		    commands[i]->summary);
	fprintf(f, "\nRun 'cachekeeper COMMAND --help' for a command's "
	    "options. Exit codes: 0 success,\n1 failure, 2 usage error "
	    "(plan: 2 when there are changes).\n");
}

int
main(int argc, char **argv)
{
	size_t	 i;

	/* A global --socket PATH (or --socket=PATH) before the command. */
	while (argc >= 2 && strncmp(argv[1], "--socket", 8) == 0) {
		if (argv[1][8] == '=')
			client_socket = argv[1] + 9;
		else if (argv[1][8] == '\0' && argc >= 3) {
			client_socket = argv[2];
			argc--;
			argv++;
		} else
			break;
		argc--;
		argv++;
	}
	if (argc < 2) {
		usage(stderr);
		return CLI_EXIT_USAGE;
	}
	if (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0 ||
	    strcmp(argv[1], "help") == 0) {
		usage(stdout);
		return 0;
	}
	if (strcmp(argv[1], "--version") == 0 ||
	    strcmp(argv[1], "version") == 0) {
		printf("cachekeeper %s\n", PACKAGE_VERSION);
		return 0;
	}
	for (i = 0; commands[i] != NULL; i++)
		if (strcmp(commands[i]->name, argv[1]) == 0)
			return commands[i]->run(argc - 1, argv + 1);
	fprintf(stderr, "cachekeeper: unknown command '%s'\n\n", argv[1]);
	usage(stderr);
	return CLI_EXIT_USAGE;
}
