/*
 * cachekeeper validate PATH...: check spec files and directories exactly as
 * the daemon would, print every error as FILE:LINE:COL: message and a
 * summary. Directories are read recursively with the daemon's own rules
 * (*.yaml and *.yml, hidden files skipped), and duplicate names across all
 * given paths are reported.
 */
#include "config.h"

#include <sys/stat.h>

#include <errno.h>
#include <getopt.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "specdir.h"
#include "util.h"

static void
validate_usage(FILE *f)
{
	fprintf(f, "usage: cachekeeper validate [--json] [--default-backend "
	    "NAME] PATH...\n\n"
	    "Check cluster spec files (or directories of them) and print "
	    "every error as\nFILE:LINE:COL: message. Exit 0 when all are "
	    "valid, 1 when any is not,\n2 on a usage error.\n\n"
	    "  --json                  print the result as JSON\n"
	    "  --default-backend NAME  backend for specs that name none "
	    "(default: local)\n"
	    "  -h, --help              show this help\n");
}

struct tally {
	size_t		 files;
	size_t		 invalid_files;
	size_t		 clusters;
	size_t		 errors;
};

/* Files that had at least one error, for the summary. */
static struct strlist	 bad_files;

static void
emit(const struct diag *dg, json_t *arr)
{
	char	*s;
	size_t	 i;

	for (i = 0; i < bad_files.n; i++)
		if (strcmp(bad_files.v[i], dg->file) == 0)
			break;
	if (i == bad_files.n)
		strlist_add(&bad_files, dg->file);

	if (arr != NULL) {
		json_array_append_new(arr, json_pack("{s:s, s:i, s:i, s:s}",
		    "file", dg->file, "line", dg->line, "column", dg->col,
		    "message", dg->msg));
		return;
	}
	s = diag_format(dg);
	printf("%s\n", s);
	free(s);
}

/* Validate one path (file or tree) into the combined specdir view. */
static int
validate_path(const char *path, const struct spec_opts *opts,
    struct desired_set *all, struct tally *t, json_t *arr)
{
	struct specdir		*sd;
	struct desired_set	 ds;
	struct stat		 st;
	struct spec_list	 l = { 0 };
	struct diags		 d;
	size_t			 i, j;

	if (stat(path, &st) == -1) {
		fprintf(stderr, "cachekeeper: %s: %s\n", path, strerror(errno));
		return -1;
	}
	diags_init(&d);
	if (!S_ISDIR(st.st_mode)) {
		t->files++;
		if (spec_parse_file(path, opts, &l, &d) != 0)
			t->invalid_files++;
		for (i = 0; i < d.n; i++)
			emit(&d.v[i], arr);
		t->errors += d.n;
		for (i = 0; i < l.n; i++) {
			all->v = xreallocarray(all->v, all->n + 1,
			    sizeof *all->v);
			memset(&all->v[all->n], 0, sizeof all->v[all->n]);
			all->v[all->n].spec = spec_hold(l.v[i]);
			all->v[all->n].name = all->v[all->n].spec->name;
			all->n++;
		}
		spec_list_free(&l);
		diags_free(&d);
		return 0;
	}
	sd = specdir_new(path, opts);
	specdir_scan(sd);
	specdir_resolve(sd, NULL, NULL, &ds);
	t->files += sd->nfiles;
	t->invalid_files += ds.invalid_files;
	for (i = 0; i < ds.file_errors.n; i++)
		emit(&ds.file_errors.v[i], arr);
	t->errors += ds.file_errors.n;
	for (i = 0; i < ds.n; i++) {
		/* Duplicates inside the tree; file errors are printed above. */
		for (j = 0; j < ds.v[i].errors.n; j++) {
			if (strstr(ds.v[i].errors.v[j].msg, "is also defined")) {
				emit(&ds.v[i].errors.v[j], arr);
				t->errors++;
			}
		}
		if (ds.v[i].spec == NULL)
			continue;
		all->v = xreallocarray(all->v, all->n + 1, sizeof *all->v);
		memset(&all->v[all->n], 0, sizeof all->v[all->n]);
		all->v[all->n].spec = spec_hold(ds.v[i].spec);
		all->v[all->n].name = all->v[all->n].spec->name;
		all->n++;
	}
	desired_set_free(&ds);
	specdir_free(sd);
	return 0;
}

static int
name_cmp(const void *a, const void *b)
{
	const struct desired *x = a, *y = b;
	int r = strcmp(x->name, y->name);

	return r ? r : strcmp(x->spec->file, y->spec->file);
}

/* Duplicates between different paths given on the command line. */
static void
cross_duplicates(struct desired_set *all, struct tally *t, json_t *arr)
{
	size_t	 i, j;

	if (all->n > 1)		/* qsort(NULL, 0) is undefined */
		qsort(all->v, all->n, sizeof *all->v, name_cmp);
	for (i = 0; i + 1 < all->n; i++) {
		struct cluster_spec *a = all->v[i].spec, *b = all->v[i + 1].spec;
		struct diag dg;
		char *msg;

		if (strcmp(a->name, b->name) != 0 ||
		    strcmp(a->file, b->file) == 0)
			continue;
		for (j = 0; j < 2; j++) {
			struct cluster_spec *x = j ? b : a, *y = j ? a : b;
			xasprintf(&msg, "cluster '%s' is also defined at "
			    "%s:%d:%d", x->name, y->file, y->line, y->col);
			dg = (struct diag){ x->file, x->line, x->col, msg };
			emit(&dg, arr);
			free(msg);
			t->errors++;
		}
	}
}

static int
validate_run(int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "json", no_argument, NULL, 'j' },
		{ "default-backend", required_argument, NULL, 'b' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 }
	};
	struct spec_opts	 opts = { "local", NULL };
	struct desired_set	 all;
	struct tally		 t = { 0 };
	json_t			*arr = NULL, *out;
	int			 ch, json = 0, i, bad = 0;
	size_t			 k;

	while ((ch = getopt_long(argc, argv, "h", longopts, NULL)) != -1) {
		switch (ch) {
		case 'j':
			json = 1;
			break;
		case 'b':
			if (strcmp(optarg, "local") != 0 &&
			    strcmp(optarg, "elasticache") != 0) {
				fprintf(stderr, "cachekeeper validate: "
				    "--default-backend must be local or "
				    "elasticache\n");
				return CLI_EXIT_USAGE;
			}
			opts.default_backend = optarg;
			break;
		case 'h':
			validate_usage(stdout);
			return CLI_EXIT_OK;
		default:
			validate_usage(stderr);
			return CLI_EXIT_USAGE;
		}
	}
	if (optind >= argc) {
		fprintf(stderr, "cachekeeper validate: no PATH given\n\n");
		validate_usage(stderr);
		return CLI_EXIT_USAGE;
	}
	memset(&all, 0, sizeof all);
	if (json)
		arr = json_array();
	for (i = optind; i < argc; i++)
		if (validate_path(argv[i], &opts, &all, &t, arr) != 0)
			bad = 1;
	cross_duplicates(&all, &t, arr);
	t.clusters = all.n;
	if (json) {
		out = json_pack("{s:b, s:i, s:i, s:i, s:o}", "valid",
		    t.errors == 0 && !bad, "files", (int)t.files, "clusters",
		    (int)t.clusters, "error_count", (int)t.errors, "errors",
		    arr);
		json_dumpf(out, stdout, JSON_INDENT(2));
		putchar('\n');
		json_decref(out);
	} else if (t.errors == 0 && !bad)
		printf("%zu file%s, %zu cluster%s: all valid\n", t.files,
		    t.files == 1 ? "" : "s", t.clusters,
		    t.clusters == 1 ? "" : "s");
	else
		printf("%zu file%s, %zu valid cluster%s: %zu error%s in %zu "
		    "file%s\n", t.files, t.files == 1 ? "" : "s", t.clusters,
		    t.clusters == 1 ? "" : "s", t.errors,
		    t.errors == 1 ? "" : "s", bad_files.n,
		    bad_files.n == 1 ? "" : "s");
	strlist_free(&bad_files);
	for (k = 0; k < all.n; k++)
		spec_free(all.v[k].spec);
	free(all.v);
	return t.errors == 0 && !bad ? CLI_EXIT_OK : CLI_EXIT_FAIL;
}

const struct cli_command cli_validate_command = {
	.name = "validate",
	.summary = "check cluster spec files and directories",
	.run = validate_run,
};
