/*
 * cachekeeper status [NAME] [-o table|json|yaml] [--watch]: what every
 * cluster is doing, as kubectl get shows it; --watch redraws when anything
 * changes, with the progress of long operations.
 */
#include "config.h"

#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <time.h>
#include <unistd.h>

#include "cli.h"
#include "client.h"
#include "util.h"

static volatile sig_atomic_t	 stop;

static void
status_usage(FILE *f)
{
	fprintf(f, "usage: cachekeeper status [-o table|json|yaml] [--watch] "
	    "[--interval SECONDS]\n"
	    "                         [--socket PATH] [--config FILE] "
	    "[NAME]\n\n"
	    "Show every cluster (or NAME): phase, shards, nodes, primary "
	    "endpoint, last\nbackup and what it is doing. --watch redraws "
	    "as phases change (Ctrl-C\nstops it). Exit 0, or 1 when the "
	    "daemon cannot be reached or NAME is unknown.\n\n"
	    "  -o, --output FORMAT   table (default), json or yaml\n"
	    "  -w, --watch           keep watching\n"
	    "      --interval SEC    how often --watch looks (default 1)\n"
	    "      --socket PATH     the daemon's control socket\n"
	    "      --config FILE     take the socket from this daemon "
	    "config\n"
	    "  -h, --help            show this help\n");
}

static void
on_sigint(int sig)
{
	(void)sig;
	stop = 1;
}

static const char *
str(json_t *o, const char *k)
{
	const char	*s = json_string_value(json_object_get(o, k));

	return s ? s : "";
}

/* SHARDS and NODES (up/total) from whatever the backend reports. */
static void
shape(json_t *ep, char *shards, size_t sl, char *nodes, size_t nl)
{
	json_t	*ng = json_object_get(ep, "node_groups");
	json_t	*sh = json_object_get(ep, "shards");
	json_t	*ns = json_object_get(ep, "nodes"), *v, *m;
	size_t	 i, k, up = 0, total = 0;

	snprintf(shards, sl, "-");
	snprintf(nodes, nl, "-");
	if (json_is_array(ng)) {
		snprintf(shards, sl, "%zu", json_array_size(ng));
		json_array_foreach(ng, i, v)
			total += json_array_size(json_object_get(v, "members"));
		snprintf(nodes, nl, "%zu", total);
		return;
	}
	if (json_is_array(sh))
		snprintf(shards, sl, "%zu", json_array_size(sh));
	if (json_is_array(ns)) {
		json_array_foreach(ns, i, v) {
			total++;
			if (json_is_true(json_object_get(v, "up")))
				up++;
		}
		if (!json_is_array(sh))
			snprintf(shards, sl, "1");
		snprintf(nodes, nl, "%zu/%zu", up, total);
	} else if (json_is_array(sh)) {
		json_array_foreach(sh, i, v)
			json_array_foreach(json_object_get(v, "nodes"), k, m) {
				total++;
				if (json_is_true(json_object_get(m, "up")))
					up++;
			}
		snprintf(nodes, nl, "%zu/%zu", up, total);
	}
}

/* "resharding 1234/4096 slots" from a status's progress, if any. */
static char *
progress(json_t *st)
{
	json_t		*p = json_object_get(st, "progress") ?
	    json_object_get(st, "progress") : json_object_get(
	    json_object_get(st, "endpoints"), "progress");
	const char	*op = json_string_value(json_object_get(p, "operation"));
	char		*s = NULL;

	if (op != NULL)
		s = progress_text(op, (long long)json_integer_value(
		    json_object_get(p, "done")), (long long)json_integer_value(
		    json_object_get(p, "total")), json_string_value(
		    json_object_get(p, "unit")));
	else if (json_string_value(json_object_get(st, "operation")) != NULL)
		xasprintf(&s, "%s", str(st, "operation"));
	return s;
}

static int
term_width(void)
{
	struct winsize	 ws;

	if (ioctl(STDOUT_FILENO, TIOCGWINSZ, &ws) == 0 && ws.ws_col > 40)
		return ws.ws_col;
	return 0;	/* not a terminal: no truncation */
}

static void
table(FILE *f, json_t *list)
{
	json_t	*st;
	size_t	 i;
	int	 w[7] = { 4, 7, 5, 6, 5, 7, 11 }, width = term_width();
	char	 shards[16], nodes[16];

	json_array_foreach(list, i, st) {
		json_t *ep = json_object_get(st, "endpoints");
		const char *prim = json_string_value(json_object_get(ep,
		    "primary")) ? str(ep, "primary") : str(ep,
		    "configuration");
		int l;

		shape(ep, shards, sizeof shards, nodes, sizeof nodes);
		if ((l = (int)strlen(str(st, "name"))) > w[0]) w[0] = l;
		if ((l = (int)strlen(str(st, "backend"))) > w[1]) w[1] = l;
		if ((l = (int)strlen(str(st, "phase"))) > w[2]) w[2] = l;
		if ((l = (int)strlen(shards)) > w[3]) w[3] = l;
		if ((l = (int)strlen(nodes)) > w[4]) w[4] = l;
		if ((l = (int)strlen(prim)) > w[5]) w[5] = l;
		if ((l = (int)strlen(str(json_object_get(st, "backups"),
		    "last_success"))) > w[6]) w[6] = l;
	}
	fprintf(f, "%-*s  %-*s  %-*s  %-*s  %-*s  %-*s  %-*s  %s\n", w[0],
	    "NAME", w[1], "BACKEND", w[2], "PHASE", w[3], "SHARDS", w[4],
	    "NODES", w[5], "PRIMARY", w[6], "LAST BACKUP", "MESSAGE");
	json_array_foreach(list, i, st) {
		json_t *ep = json_object_get(st, "endpoints");
		const char *prim = json_string_value(json_object_get(ep,
		    "primary")) ? str(ep, "primary") : str(ep,
		    "configuration");
		const char *lb = str(json_object_get(st, "backups"),
		    "last_success");
		char *prog = progress(st), *msg;
		int used, room;

		shape(ep, shards, sizeof shards, nodes, sizeof nodes);
		xasprintf(&msg, "%s%s%s", prog ? prog : "", prog &&
		    *str(st, "message") ? ": " : "", str(st, "message"));
		used = w[0] + w[1] + w[2] + w[3] + w[4] + w[5] + w[6] + 14;
		room = width > used + 10 ? width - used : 0;
		fprintf(f, "%-*s  %-*s  %s%-*s%s  %-*s  %-*s  %-*s  %-*s  "
		    "%.*s\n", w[0], str(st, "name"), w[1], str(st, "backend"),
		    out_phase_colour(f, str(st, "phase")), w[2],
		    str(st, "phase"), out_reset(f), w[3], shards, w[4],
		    nodes, w[5], *prim ? prim : "-", w[6], *lb ? lb : "-",
		    room ? room : (int)strlen(msg), msg);
		free(msg);
		free(prog);
	}
}

static int
fetch(const char *name, json_t **list, char **err)
{
	json_t	*a;
	long	 status;
	char	*path;
	int	 r;

	if (name != NULL)
		xasprintf(&path, "/v1/clusters/%s", name);
	else
		path = xstrdup("/v1/clusters");
	r = client_call("GET", path, NULL, &status, &a, err);
	free(path);
	if (r != 0)
		return -1;
	if (status != 200) {
		xasprintf(err, "%s", client_error_message(a, status));
		json_decref(a);
		return -1;
	}
	if (name != NULL) {
		*list = json_array();
		json_array_append_new(*list, a);
	} else {
		*list = json_incref(json_object_get(a, "clusters"));
		json_decref(a);
	}
	return 0;
}

/* Sort by name, so that the table reads the same every time. */
static int
by_name(const void *a, const void *b)
{
	return strcmp(str(*(json_t *const *)a, "name"),
	    str(*(json_t *const *)b, "name"));
}

static json_t *
sorted(json_t *list)
{
	json_t	**v, *out = json_array();
	size_t	 n = json_array_size(list), i;

	v = xcalloc(n ? n : 1, sizeof *v);
	for (i = 0; i < n; i++)
		v[i] = json_array_get(list, i);
	qsort(v, n, sizeof *v, by_name);
	for (i = 0; i < n; i++)
		json_array_append(out, v[i]);
	free(v);
	json_decref(list);
	return out;
}

static void
render(FILE *f, const char *fmt, json_t *list, bool one)
{
	json_t	*j = one ? json_array_get(list, 0) : json_pack("{s:O}",
	    "clusters", list);

	if (strcmp(fmt, "json") == 0) {
		char *s = json_dumps(j, JSON_INDENT(2) | JSON_SORT_KEYS);
		fprintf(f, "%s\n", s);
		free(s);
	} else if (strcmp(fmt, "yaml") == 0)
		out_yaml(f, j);
	else
		table(f, list);
	if (!one)
		json_decref(j);
}

static int
status_run(int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "output", required_argument, NULL, 'o' },
		{ "watch", no_argument, NULL, 'w' },
		{ "interval", required_argument, NULL, 'i' },
		{ "help", no_argument, NULL, 'h' },
		CLIENT_LONGOPTS,
		{ NULL, 0, NULL, 0 }
	};
	const char	*fmt = "table", *name = NULL;
	bool		 watch = false, tty = isatty(STDOUT_FILENO);
	double		 interval = 1.0;
	char		*err = NULL, *last = NULL;
	json_t		*list;
	int		 ch;

	optind = 1;
	while ((ch = getopt_long(argc, argv, "o:wh", longopts, NULL)) != -1) {
		if (client_option(ch, optarg))
			continue;
		switch (ch) {
		case 'o':
			fmt = optarg;
			if (strcmp(fmt, "table") && strcmp(fmt, "json") &&
			    strcmp(fmt, "yaml")) {
				fprintf(stderr, "cachekeeper status: -o takes "
				    "table, json or yaml, not '%s'\n", fmt);
				return CLI_EXIT_USAGE;
			}
			break;
		case 'w':
			watch = true;
			break;
		case 'i':
			interval = atof(optarg);
			if (interval < 0.1 || interval > 3600) {
				fprintf(stderr, "cachekeeper status: "
				    "--interval must be 0.1..3600 seconds\n");
				return CLI_EXIT_USAGE;
			}
			break;
		case 'h':
			status_usage(stdout);
			return CLI_EXIT_OK;
		default:
			status_usage(stderr);
			return CLI_EXIT_USAGE;
		}
	}
	if (argc - optind > 1) {
		status_usage(stderr);
		return CLI_EXIT_USAGE;
	}
	if (optind < argc)
		name = argv[optind];
	if (!watch) {
		if (fetch(name, &list, &err) != 0) {
			fprintf(stderr, "cachekeeper status: %s\n", err);
			free(err);
			return CLI_EXIT_FAIL;
		}
		list = sorted(list);
		render(stdout, fmt, list, name != NULL);
		json_decref(list);
		return CLI_EXIT_OK;
	}
	signal(SIGINT, on_sigint);
	signal(SIGTERM, on_sigint);
	setvbuf(stdout, NULL, _IOLBF, 0);
	while (!stop) {
		char	*buf = NULL;
		size_t	 len = 0;
		FILE	*m = open_memstream(&buf, &len);
		struct timespec ts;

		if (fetch(name, &list, &err) != 0) {
			fprintf(m, "cachekeeper status: %s\n", err);
			free(err);
			err = NULL;
		} else {
			list = sorted(list);
			render(m, fmt, list, name != NULL);
			json_decref(list);
		}
		fclose(m);
		/* Redraw only when something changed. */
		if (last == NULL || strcmp(last, buf) != 0) {
			char when[40];

			format_rfc3339(clock_wall_s(), when, sizeof when);
			if (tty)
				printf("\033[H\033[2J");
			else if (last != NULL)
				printf("\n");
			printf("Every %.1fs: cachekeeper status  %s\n\n%s",
			    interval, when, buf);
			fflush(stdout);
			free(last);
			last = buf;
		} else
			free(buf);
		ts.tv_sec = (time_t)interval;
		ts.tv_nsec = (long)((interval - (double)ts.tv_sec) * 1e9);
		nanosleep(&ts, NULL);
	}
	free(last);
	return CLI_EXIT_OK;
}

const struct cli_command cli_status_command = {
	.name = "status",
	.summary = "show clusters: phase, shards, nodes, endpoints, backups",
	.run = status_run,
};
