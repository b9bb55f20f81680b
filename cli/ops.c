/*
 * cachekeeper reconcile NAME, snapshot NAME [--name SNAP], failover NAME
 * [--shard ID]: operations through the daemon. They wait for the answer;
 * exit 0 when it is done, 1 when it failed or the daemon said no, 2 on a
 * usage error.
 */
#include "config.h"

#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "client.h"
#include "util.h"

struct op_cmd {
	const char	*name;
	const char	*opt;		/* --name or --shard, or NULL */
	const char	*key;		/* its key in the request */
	const char	*help;
};

static const struct op_cmd ops[] = {
	{ "reconcile", NULL, NULL, "Look at cluster NAME now instead of at "
	    "the next resync." },
	{ "snapshot", "name", "name", "Take a snapshot of cluster NAME "
	    "(--name SNAP names it;\nthe default is NAME-manual-"
	    "YYYYMMDDHHMMSS)." },
	{ "failover", "shard", "shard", "Fail cluster NAME over to a "
	    "replica in a controlled way (--shard ID\npicks the shard or node "
	    "group; the default is the first)." },
};

static void
op_usage(FILE *f, const struct op_cmd *o)
{
	fprintf(f, "usage: cachekeeper %s [--socket PATH] [--config FILE]%s%s%s"
	    " NAME\n\n%s\n\n", o->name, o->opt ? " [--" : "", o->opt ? o->opt :
	    "", o->opt ? (strcmp(o->opt, "name") == 0 ? " SNAP]" : " ID]") : "",
	    o->help);
	if (o->opt != NULL)
		fprintf(f, "      --%-6s VALUE   see above\n", o->opt);
	fprintf(f, "      --socket PATH    the daemon's control socket\n"
	    "      --config FILE    take the socket from this daemon config\n"
	    "  -h, --help           show this help\n");
}

static int
op_run(const struct op_cmd *o, int argc, char **argv)
{
	const struct option longopts[] = {
		{ "help", no_argument, NULL, 'h' },
		{ o->opt ? o->opt : "-", required_argument, NULL, 'v' },
		CLIENT_LONGOPTS,
		{ NULL, 0, NULL, 0 }
	};
	const char	*value = NULL;
	json_t		*body, *a;
	long		 status;
	char		*path, *text, *err = NULL;
	int		 ch, rc;

	optind = 1;
	while ((ch = getopt_long(argc, argv, "h", longopts, NULL)) != -1) {
		if (client_option(ch, optarg))
			continue;
		switch (ch) {
		case 'v':
			value = optarg;
			break;
		case 'h':
			op_usage(stdout, o);
			return CLI_EXIT_OK;
		default:
			op_usage(stderr, o);
			return CLI_EXIT_USAGE;
		}
	}
	if (argc - optind != 1) {
		op_usage(stderr, o);
		return CLI_EXIT_USAGE;
	}
	body = json_object();
	if (value != NULL)
		json_object_set_new(body, o->key, json_string(value));
	text = json_dumps(body, JSON_COMPACT);
	json_decref(body);
	xasprintf(&path, "/v1/clusters/%s/%s", argv[optind], o->name);
	rc = client_call("POST", path, text, &status, &a, &err);
	free(path);
	free(text);
	if (rc != 0) {
		fprintf(stderr, "cachekeeper %s: %s\n", o->name, err);
		free(err);
		return CLI_EXIT_FAIL;
	}
	if (status < 200 || status >= 300) {
		fprintf(stderr, "cachekeeper %s: %s\n", o->name,
		    client_error_message(a, status));
		json_decref(a);
		return CLI_EXIT_FAIL;
	}
	printf("%s: %s\n", argv[optind], json_string_value(json_object_get(a,
	    "message")) ? json_string_value(json_object_get(a, "message")) :
	    json_string_value(json_object_get(a, "result")));
	json_decref(a);
	return CLI_EXIT_OK;
}

static int
reconcile_run(int argc, char **argv)
{
	return op_run(&ops[0], argc, argv);
}

static int
snapshot_run(int argc, char **argv)
{
	return op_run(&ops[1], argc, argv);
}

static int
failover_run(int argc, char **argv)
{
	return op_run(&ops[2], argc, argv);
}

const struct cli_command cli_reconcile_command = {
	.name = "reconcile",
	.summary = "look at a cluster now",
	.run = reconcile_run,
};

const struct cli_command cli_snapshot_command = {
	.name = "snapshot",
	.summary = "take a snapshot of a cluster",
	.run = snapshot_run,
};

const struct cli_command cli_failover_command = {
	.name = "failover",
	.summary = "fail a cluster (or one shard) over to a replica",
	.run = failover_run,
};

/*
 * cachekeeper confirm-deletions [NAME...]: let the deletions the
 * mass-deletion guard holds go, all of them or those named.
 */
static int
confirm_run(int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "help", no_argument, NULL, 'h' },
		CLIENT_LONGOPTS,
		{ NULL, 0, NULL, 0 }
	};
	json_t	*names = json_array(), *body, *a, *v;
	long	 status;
	char	*text, *err = NULL;
	size_t	 i;
	int	 ch, rc, k;

	optind = 1;
	while ((ch = getopt_long(argc, argv, "h", longopts, NULL)) != -1) {
		if (client_option(ch, optarg))
			continue;
		if (ch == 'h') {
			printf("usage: cachekeeper confirm-deletions [--socket "
			    "PATH] [--config FILE] [NAME...]\n\nLet the "
			    "deletions the mass-deletion guard holds go: every "
			    "cluster\nthat is retained because too many specs "
			    "disappeared at once (or only\nthose named) is "
			    "then handled by its deletion_policy.\n");
			json_decref(names);
			return CLI_EXIT_OK;
		}
		json_decref(names);
		return CLI_EXIT_USAGE;
	}
	for (k = optind; k < argc; k++)
		json_array_append_new(names, json_string(argv[k]));
	body = json_pack("{s:o}", "names", names);
	text = json_dumps(body, JSON_COMPACT);
	json_decref(body);
	rc = client_call("POST", "/v1/confirm-deletions", text, &status, &a,
	    &err);
	free(text);
	if (rc != 0) {
		fprintf(stderr, "cachekeeper confirm-deletions: %s\n", err);
		free(err);
		return CLI_EXIT_FAIL;
	}
	if (status != 200) {
		fprintf(stderr, "cachekeeper confirm-deletions: %s\n",
		    client_error_message(a, status));
		json_decref(a);
		return CLI_EXIT_FAIL;
	}
	if (json_array_size(json_object_get(a, "confirmed")) == 0)
		printf("no deletion was held\n");
	json_array_foreach(json_object_get(a, "confirmed"), i, v)
		printf("%s: deletion confirmed\n", json_string_value(v));
	json_decref(a);
	return CLI_EXIT_OK;
}

const struct cli_command cli_confirm_command = {
	.name = "confirm-deletions",
	.summary = "let deletions held by the mass-deletion guard go",
	.run = confirm_run,
};
