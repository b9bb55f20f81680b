/*
 * cachekeeper snapshots [NAME] [-o json] and snapshot-delete SNAP: the
 * snapshots the daemon keeps on this host (local backend), listed from
 * their manifests, and deleting one.
 */
#include "config.h"

#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "client.h"
#include "util.h"

static void
snapshots_usage(FILE *f)
{
	fprintf(f, "usage: cachekeeper snapshots [--socket PATH] [--config "
	    "FILE] [-o table|json] [NAME]\n\nList the snapshots of every "
	    "cluster (or of cluster NAME), oldest first:\nname, cluster, type "
	    "(automatic, manual, final), when it was taken, its size\nand "
	    "whether it is encrypted.\n\n"
	    "  -o, --output FORMAT   table (default) or json\n"
	    "      --socket PATH     the daemon's control socket\n"
	    "      --config FILE     take the socket from this daemon config\n"
	    "  -h, --help            show this help\n");
}

static void
human_size(long long n, char *buf, size_t len)
{
	const char	*u[] = { "B", "KiB", "MiB", "GiB", "TiB" };
	double		 v = (double)n;
	int		 i = 0;

	while (v >= 1024 && i < 4) {
		v /= 1024;
		i++;
	}
	snprintf(buf, len, i == 0 ? "%.0f %s" : "%.1f %s", v, u[i]);
}

static int
snapshots_run(int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "help", no_argument, NULL, 'h' },
		{ "output", required_argument, NULL, 'o' },
		CLIENT_LONGOPTS,
		{ NULL, 0, NULL, 0 }
	};
	const char	*fmt = "table";
	json_t		*a, *l, *e;
	long		 status;
	char		*path, *err = NULL, *s, size[32];
	size_t		 i;
	int		 ch;

	optind = 1;
	while ((ch = getopt_long(argc, argv, "ho:", longopts, NULL)) != -1) {
		if (client_option(ch, optarg))
			continue;
		switch (ch) {
		case 'o':
			fmt = optarg;
			break;
		case 'h':
			snapshots_usage(stdout);
			return CLI_EXIT_OK;
		default:
			snapshots_usage(stderr);
			return CLI_EXIT_USAGE;
		}
	}
	if (argc - optind > 1 || (strcmp(fmt, "table") != 0 &&
	    strcmp(fmt, "json") != 0)) {
		snapshots_usage(stderr);
		return CLI_EXIT_USAGE;
	}
	if (argc - optind == 1)
		xasprintf(&path, "/v1/snapshots?cluster=%s", argv[optind]);
	else
		path = xstrdup("/v1/snapshots");
	if (client_call("GET", path, NULL, &status, &a, &err) != 0) {
		fprintf(stderr, "cachekeeper snapshots: %s\n", err);
		free(err);
		free(path);
		return CLI_EXIT_FAIL;
	}
	free(path);
	if (status != 200) {
		fprintf(stderr, "cachekeeper snapshots: %s\n",
		    client_error_message(a, status));
		json_decref(a);
		return CLI_EXIT_FAIL;
	}
	l = json_object_get(a, "snapshots");
	if (strcmp(fmt, "json") == 0) {
		s = json_dumps(l, JSON_INDENT(2));
		printf("%s\n", s ? s : "[]");
		free(s);
		json_decref(a);
		return CLI_EXIT_OK;
	}
	printf("%-40s %-20s %-10s %-21s %10s %s\n", "NAME", "CLUSTER", "TYPE",
	    "CREATED", "SIZE", "ENCRYPTED");
	json_array_foreach(l, i, e) {
		human_size((long long)json_integer_value(json_object_get(e,
		    "size")), size, sizeof size);
		printf("%-40s %-20s %-10s %-21s %10s %s\n",
		    json_string_value(json_object_get(e, "name")),
		    json_string_value(json_object_get(e, "cluster")),
		    json_string_value(json_object_get(e, "type")) ?
		    json_string_value(json_object_get(e, "type")) : "-",
		    json_string_value(json_object_get(e, "created_at")), size,
		    json_is_true(json_object_get(e, "encrypted")) ? "yes" :
		    "no");
	}
	json_decref(a);
	return CLI_EXIT_OK;
}

static int
snapshot_delete_run(int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "help", no_argument, NULL, 'h' },
		CLIENT_LONGOPTS,
		{ NULL, 0, NULL, 0 }
	};
	json_t	*a;
	long	 status;
	char	*path, *err = NULL;
	int	 ch;

	optind = 1;
	while ((ch = getopt_long(argc, argv, "h", longopts, NULL)) != -1) {
		if (client_option(ch, optarg))
			continue;
		if (ch == 'h') {
			printf("usage: cachekeeper snapshot-delete [--socket "
			    "PATH] [--config FILE] SNAP\n\nDelete snapshot "
			    "SNAP (of whichever cluster), automatic, manual "
			    "or\nfinal.\n");
			return CLI_EXIT_OK;
		}
		return CLI_EXIT_USAGE;
	}
	if (argc - optind != 1) {
		fprintf(stderr, "usage: cachekeeper snapshot-delete SNAP\n");
		return CLI_EXIT_USAGE;
	}
	xasprintf(&path, "/v1/snapshots/%s", argv[optind]);
	if (client_call("DELETE", path, NULL, &status, &a, &err) != 0) {
		fprintf(stderr, "cachekeeper snapshot-delete: %s\n", err);
		free(err);
		free(path);
		return CLI_EXIT_FAIL;
	}
	free(path);
	if (status != 200) {
		fprintf(stderr, "cachekeeper snapshot-delete: %s\n",
		    client_error_message(a, status));
		json_decref(a);
		return CLI_EXIT_FAIL;
	}
	printf("%s: deleted\n", argv[optind]);
	json_decref(a);
	return CLI_EXIT_OK;
}

const struct cli_command cli_snapshots_command = {
	.name = "snapshots",
	.summary = "list snapshots (of a cluster)",
	.run = snapshots_run,
};

const struct cli_command cli_snapshot_delete_command = {
	.name = "snapshot-delete",
	.summary = "delete a snapshot",
	.run = snapshot_delete_run,
};
