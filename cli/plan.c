/*
 * cachekeeper plan [PATH...|NAME]: what the daemon would do, step by
 * step, in terraform's spirit. With PATHs, the specs in those files (or
 * directories) are sent to the daemon and planned against what it
 * observes now, before they are merged; with a NAME, that cluster's plan;
 * with nothing, every cluster's. Exit 0: no changes; 2: changes; 1: an
 * error (a spec that does not validate, the daemon unreachable).
 */
#include "config.h"

#include <sys/stat.h>

#include <dirent.h>
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "client.h"
#include "spec.h"
#include "specdir.h"
#include "util.h"

#define PLAN_EXIT_CHANGES	2

static void
plan_usage(FILE *f)
{
	fprintf(f, "usage: cachekeeper plan [-o text|json] [--socket PATH] "
	    "[--config FILE] [PATH...|NAME]\n\n"
	    "Show what cachekeeperd would do, step by step: '+' adds, '~' "
	    "changes,\n'-' removes, '!' needs a new cluster (never applied). "
	    "PATHs are spec files\nor directories, planned against what the "
	    "daemon observes now without being\napplied; NAME is a running "
	    "cluster; nothing means every cluster.\n"
	    "Exit 0: no changes, 2: changes, 1: an error.\n\n"
	    "  -o, --output FORMAT   text (default) or json\n"
	    "      --socket PATH     the daemon's control socket\n"
	    "      --config FILE     take the socket from this daemon "
	    "config\n"
	    "  -h, --help            show this help\n");
}

static void
add_file(json_t *files, const char *path, int *bad)
{
	char	*buf = NULL;
	size_t	 len;
	int	 r;

	if ((r = read_file_bounded(path, SPEC_MAX_FILE_BYTES, &buf, &len)) !=
	    0) {
		fprintf(stderr, "cachekeeper plan: %s: %s\n", path,
		    r == -EFBIG ? "larger than 1 MiB" : strerror(-r));
		*bad = 1;
		return;
	}
	json_array_append_new(files, json_pack("{s:s, s:s%}", "path", path,
	    "content", buf, len));
	free(buf);
}

static void
add_path(json_t *files, const char *path, int depth, int *bad)
{
	struct stat	 sb;
	struct dirent	**de = NULL;
	char		*sub;
	int		 n, i;

	if (stat(path, &sb) != 0) {
		fprintf(stderr, "cachekeeper plan: %s: %s\n", path,
		    strerror(errno));
		*bad = 1;
		return;
	}
	if (!S_ISDIR(sb.st_mode)) {
		add_file(files, path, bad);
		return;
	}
	if (depth > 32)
		return;
	if ((n = scandir(path, &de, NULL, alphasort)) < 0) {
		fprintf(stderr, "cachekeeper plan: %s: %s\n", path,
		    strerror(errno));
		*bad = 1;
		return;
	}
	for (i = 0; i < n; i++) {
		const char *nm = de[i]->d_name;

		if (nm[0] != '.') {
			xasprintf(&sub, "%s/%s", path, nm);
			if (stat(sub, &sb) == 0 && (S_ISDIR(sb.st_mode) ||
			    specdir_candidate(nm)))
				add_path(files, sub, depth + 1, bad);
			free(sub);
		}
		free(de[i]);
	}
	free(de);
}

static void
print_text(FILE *f, json_t *p)
{
	const char	*text = json_string_value(json_object_get(p, "text"));
	const char	*name = json_string_value(json_object_get(p, "name"));
	const char	*be = json_string_value(json_object_get(p, "backend"));
	const char	*line, *nl;
	bool		 col = out_colour(f);

	fprintf(f, "cluster %s (%s)%s:\n", name ? name : "?", be ? be : "?",
	    !json_is_true(json_object_get(p, "known")) ? ", new to the daemon" :
	    !json_is_true(json_object_get(p, "observed")) ?
	    ", not observed yet" : "");
	if (!json_is_true(json_object_get(p, "changes"))) {
		fprintf(f, "  no changes\n");
		return;
	}
	for (line = text; line != NULL && *line != '\0'; line = nl) {
		const char	*c = line + strspn(line, " ");
		const char	*colour = "";

		nl = strchr(line, '\n');
		nl = nl ? nl + 1 : line + strlen(line);
		if (col)
			colour = *c == '+' ? "\033[32m" : *c == '~' ?
			    "\033[33m" : *c == '-' ? "\033[31m" : *c == '!' ?
			    "\033[35m" : "";
		fprintf(f, "%s%.*s%s", colour, (int)(nl - line), line,
		    *colour ? "\033[0m" : "");
	}
}

static int
report(json_t *plans, json_t *errors, const char *fmt)
{
	json_t	*p, *e;
	size_t	 i, changed = 0;

	json_array_foreach(errors, i, e)
		fprintf(stderr, "%s\n", json_string_value(e));
	json_array_foreach(plans, i, p)
		if (json_is_true(json_object_get(p, "changes")))
			changed++;
	if (strcmp(fmt, "json") == 0) {
		json_t	*j = json_pack("{s:O, s:O}", "plans", plans, "errors",
		    errors);
		char	*s = json_dumps(j, JSON_INDENT(2) | JSON_SORT_KEYS);

		printf("%s\n", s);
		free(s);
		json_decref(j);
	} else {
		json_array_foreach(plans, i, p)
			print_text(stdout, p);
		printf("\nPlan: %zu cluster%s to change, %zu unchanged%s.\n",
		    changed, changed == 1 ? "" : "s",
		    json_array_size(plans) - changed,
		    json_array_size(errors) ? "; the specs above have errors "
		    "and would change nothing" : "");
	}
	if (json_array_size(errors) > 0)
		return CLI_EXIT_FAIL;
	return changed ? PLAN_EXIT_CHANGES : CLI_EXIT_OK;
}

static int
plan_names(int argc, char **argv, const char *fmt)
{
	json_t		*plans = json_array(), *errors = json_array(), *a, *c;
	long		 status;
	char		*err = NULL, *path;
	size_t		 i;
	int		 rc, k;
	struct strlist	 names = { 0 };

	if (argc == 0) {
		if (client_call("GET", "/v1/clusters", NULL, &status, &a,
		    &err) != 0)
			goto fail;
		json_array_foreach(json_object_get(a, "clusters"), i, c)
			if (!json_is_null(json_object_get(c, "backend")))
				strlist_add(&names, json_string_value(
				    json_object_get(c, "name")));
		json_decref(a);
	} else
		for (k = 0; k < argc; k++)
			strlist_add(&names, argv[k]);
	for (i = 0; i < names.n; i++) {
		xasprintf(&path, "/v1/clusters/%s/plan", names.v[i]);
		rc = client_call("GET", path, NULL, &status, &a, &err);
		free(path);
		if (rc != 0)
			goto fail;
		if (status != 200) {
			json_array_append_new(errors, json_sprintf("%s: %s",
			    names.v[i], client_error_message(a, status)));
			json_decref(a);
			continue;
		}
		json_array_append_new(plans, a);
	}
	strlist_free(&names);
	rc = report(plans, errors, fmt);
	json_decref(plans);
	json_decref(errors);
	return rc;
fail:
	fprintf(stderr, "cachekeeper plan: %s\n", err);
	free(err);
	strlist_free(&names);
	json_decref(plans);
	json_decref(errors);
	return CLI_EXIT_FAIL;
}

static int
plan_run(int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "output", required_argument, NULL, 'o' },
		{ "help", no_argument, NULL, 'h' },
		CLIENT_LONGOPTS,
		{ NULL, 0, NULL, 0 }
	};
	const char	*fmt = "text";
	json_t		*files, *a;
	struct stat	 sb;
	long		 status;
	char		*body, *err = NULL;
	const char	*why;
	int		 ch, i, bad = 0, rc;

	optind = 1;
	while ((ch = getopt_long(argc, argv, "o:h", longopts, NULL)) != -1) {
		if (client_option(ch, optarg))
			continue;
		switch (ch) {
		case 'o':
			fmt = optarg;
			if (strcmp(fmt, "text") && strcmp(fmt, "json")) {
				fprintf(stderr, "cachekeeper plan: -o takes "
				    "text or json, not '%s'\n", fmt);
				return CLI_EXIT_USAGE;
			}
			break;
		case 'h':
			plan_usage(stdout);
			return CLI_EXIT_OK;
		default:
			plan_usage(stderr);
			return CLI_EXIT_USAGE;
		}
	}
	argc -= optind;
	argv += optind;
	/* Names, unless the arguments are paths. */
	if (argc == 0 || (stat(argv[0], &sb) != 0 && spec_name_valid(argv[0],
	    &why)))
		return plan_names(argc, argv, fmt);
	files = json_array();
	for (i = 0; i < argc; i++)
		add_path(files, argv[i], 0, &bad);
	if (bad) {
		json_decref(files);
		return CLI_EXIT_FAIL;
	}
	a = json_pack("{s:o}", "files", files);
	body = json_dumps(a, JSON_COMPACT);
	json_decref(a);
	rc = client_call("POST", "/v1/plan", body, &status, &a, &err);
	free(body);
	if (rc != 0) {
		fprintf(stderr, "cachekeeper plan: %s\n", err);
		free(err);
		return CLI_EXIT_FAIL;
	}
	if (status != 200) {
		fprintf(stderr, "cachekeeper plan: %s\n",
		    client_error_message(a, status));
		json_decref(a);
		return CLI_EXIT_FAIL;
	}
	rc = report(json_object_get(a, "plans"), json_object_get(a, "errors"),
	    fmt);
	json_decref(a);
	return rc;
}

const struct cli_command cli_plan_command = {
	.name = "plan",
	.summary = "show what the daemon would do for specs or clusters",
	.run = plan_run,
};
