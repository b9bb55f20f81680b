/*
 * Unit tests of the spec directory (config/specdir.c): which files a scan
 * picks up, that a rescan parses only what changed, and how names are
 * resolved when files break, collide, are being written or go away. Each
 * test builds its own tree in a private temporary directory.
 *
 * Regression cases for fixed bugs say so in their comments.
 */
#include "config.h"

#include <sys/stat.h>

#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "ckunit.h"
#include "specdir.h"

/* A valid spec for name; extra is appended under spec:. */
static char *
spec_text(const char *name, const char *extra)
{
	char	*s;

	assert_true(asprintf(&s, "apiVersion: cachekeeper/v1\n"
	    "kind: RedisCluster\n"
	    "metadata:\n"
	    "  name: %s\n"
	    "spec:\n"
	    "%s", name, extra ? extra : "") > 0);
	return s;
}

/* Write a spec file; returns its path as the scan will name it. */
static char *
put_spec(const char *root, const char *rel, const char *name,
    const char *extra)
{
	char	*text = spec_text(name, extra), *path;

	path = ck_write(root, rel, text, 0644);
	free(text);
	return path;
}

static const struct desired *
find(const struct desired_set *ds, const char *name)
{
	size_t	 i;

	for (i = 0; i < ds->n; i++)
		if (strcmp(ds->v[i].name, name) == 0)
			return &ds->v[i];
	return NULL;
}

/* The names of ds, comma-separated, for messages and comparisons. */
static char *
names_of(const struct desired_set *ds)
{
	size_t	 i, len = 1;
	char	*s;

	for (i = 0; i < ds->n; i++)
		len += strlen(ds->v[i].name) + 1;
	s = calloc(1, len);
	assert_non_null(s);
	for (i = 0; i < ds->n; i++) {
		if (i > 0)
			strcat(s, ",");
		strcat(s, ds->v[i].name);
	}
	return s;
}

static void
assert_names(const struct desired_set *ds, const char *want)
{
	char	*got = names_of(ds);

	if (strcmp(got, want) != 0) {
		print_error("names: want '%s', got '%s'\n", want, got);
		free(got);
		fail();
	}
	free(got);
}

/* Assert that name resolves to a spec from file with the given port. */
static void
assert_in_force(const struct desired_set *ds, const char *name,
    const char *file, int port)
{
	const struct desired	*d = find(ds, name);

	if (d == NULL)
		fail_msg("'%s' not resolved", name);
	if (d->spec == NULL)
		fail_msg("'%s' has no spec in force", name);
	assert_string_equal(d->spec->file, file);
	assert_int_equal(d->spec->port, port);
}

/* Make sure the next write gets a different mtime and ctime. */
static void
tick(void)
{
	struct timespec	 ts = { 0, 20 * 1000 * 1000 };

	nanosleep(&ts, NULL);
}

static void
test_candidate_names(void **state)
{
	(void)state;
	assert_true(specdir_candidate("a.yaml"));
	assert_true(specdir_candidate("a.yml"));
	assert_true(specdir_candidate("prod.web.yaml"));
	assert_false(specdir_candidate(".yaml"));
	assert_false(specdir_candidate(".x.yaml"));
	assert_false(specdir_candidate("x.yaml~"));
	assert_false(specdir_candidate("#x.yaml#"));
	assert_false(specdir_candidate("#x.yaml"));
	assert_false(specdir_candidate("x.yaml.swp"));
	assert_false(specdir_candidate(".x.yaml.swp"));
	assert_false(specdir_candidate("x.yaml.tmp"));
	assert_false(specdir_candidate("x.YAML"));
	assert_false(specdir_candidate("x.json"));
	assert_false(specdir_candidate("yaml"));
	assert_false(specdir_candidate(""));
}

/* Nested directories are read; hidden files, backups and others are not. */
static void
test_scan_picks_spec_files(void **state)
{
	static const char *const ignored[] = {
		"x.yaml~", ".x.yaml", "#x.yaml#", "x.yaml.swp", ".x.yaml.swp",
		"x.yaml.tmp", "x.YAML", "notes.txt", ".git/hooks.yaml",
		"sub/.hidden/deep.yaml", "sub/old.yml~",
	};
	char			*root = ck_tmpdir_new(), *p[3], name[16];
	struct specdir		*sd;
	struct desired_set	 ds;
	size_t			 i;

	(void)state;
	p[0] = put_spec(root, "a.yaml", "web-a", NULL);
	p[1] = put_spec(root, "sub/b.yml", "web-b", NULL);
	p[2] = put_spec(root, "sub/deeper/c.yaml", "web-c", NULL);
	/* Each ignored file is valid, so picking one would show. */
	for (i = 0; i < sizeof ignored / sizeof ignored[0]; i++) {
		snprintf(name, sizeof name, "ignored-%zu", i);
		free(put_spec(root, ignored[i], name, NULL));
	}
	sd = specdir_new(root, NULL);
	assert_int_equal(specdir_scan(sd), 3);
	assert_int_equal(sd->nfiles, 3);
	specdir_resolve(sd, NULL, NULL, &ds);
	assert_names(&ds, "web-a,web-b,web-c");
	assert_int_equal(ds.invalid_files, 0);
	assert_int_equal(ds.file_errors.n, 0);
	for (i = 0; i < 3; i++) {
		assert_non_null(ds.v[i].spec);
		assert_int_equal(ds.v[i].errors.n, 0);
		assert_string_equal(ds.v[i].spec->file, p[i]);
	}
	desired_set_free(&ds);
	/* Nothing changed: nothing is parsed again. */
	assert_int_equal(specdir_scan(sd), 0);
	specdir_free(sd);
	for (i = 0; i < 3; i++)
		free(p[i]);
	ck_tmpdir_free(root);
}

/* A root given with a trailing slash names files without "//". */
static void
test_root_trailing_slash(void **state)
{
	char			*root = ck_tmpdir_new(), *slashed, *p;
	struct specdir		*sd;
	struct desired_set	 ds;

	(void)state;
	p = put_spec(root, "a.yaml", "web", NULL);
	assert_true(asprintf(&slashed, "%s//", root) > 0);
	sd = specdir_new(slashed, NULL);
	assert_int_equal(specdir_scan(sd), 1);
	specdir_resolve(sd, NULL, NULL, &ds);
	assert_in_force(&ds, "web", p, 6379);
	desired_set_free(&ds);
	specdir_free(sd);
	free(slashed);
	free(p);
	ck_tmpdir_free(root);
}

/* 16 levels below the root are read, as documented. */
static void
test_scan_depth(void **state)
{
	char			*root = ck_tmpdir_new(), *p, rel[128];
	struct specdir		*sd;
	struct desired_set	 ds;
	int			 i;

	(void)state;
	rel[0] = '\0';
	for (i = 0; i < 16; i++)
		strcat(rel, "d/");
	strcat(rel, "deep.yaml");
	p = put_spec(root, rel, "deep", NULL);
	sd = specdir_new(root, NULL);
	assert_int_equal(specdir_scan(sd), 1);
	specdir_resolve(sd, NULL, NULL, &ds);
	assert_in_force(&ds, "deep", p, 6379);
	desired_set_free(&ds);
	specdir_free(sd);
	free(p);
	ck_tmpdir_free(root);
}

/* The return value of a rescan counts what was parsed again. */
static void
test_rescan_only_changed(void **state)
{
	char			*root = ck_tmpdir_new(), *a, *b, *c, *text;
	struct specdir		*sd;
	struct desired_set	 ds1, ds2;
	struct timespec		 times[2];

	(void)state;
	a = put_spec(root, "a.yaml", "web-a", "  port: 7000\n");
	b = put_spec(root, "b.yaml", "web-b", NULL);
	c = put_spec(root, "sub/c.yaml", "web-c", NULL);
	sd = specdir_new(root, NULL);
	assert_int_equal(specdir_scan(sd), 3);
	specdir_resolve(sd, NULL, NULL, &ds1);

	tick();
	free(put_spec(root, "b.yaml", "web-b", "  port: 7000\n"));
	assert_int_equal(specdir_scan(sd), 1);
	specdir_resolve(sd, NULL, NULL, &ds2);
	/* Unchanged files keep the very same parsed spec objects. */
	assert_ptr_equal(find(&ds2, "web-a")->spec, find(&ds1, "web-a")->spec);
	assert_ptr_equal(find(&ds2, "web-c")->spec, find(&ds1, "web-c")->spec);
	assert_true(find(&ds2, "web-b")->spec != find(&ds1, "web-b")->spec);
	assert_in_force(&ds2, "web-b", b, 7000);
	assert_true(find(&ds2, "web-b")->spec->generation !=
	    find(&ds1, "web-b")->spec->generation);
	desired_set_free(&ds1);
	desired_set_free(&ds2);
	assert_int_equal(specdir_scan(sd), 0);

	/* A new file is one change; so is a touched one. */
	free(put_spec(root, "sub/d.yaml", "web-d", NULL));
	assert_int_equal(specdir_scan(sd), 1);
	times[0].tv_sec = times[1].tv_sec = 1000000000;
	times[0].tv_nsec = times[1].tv_nsec = 0;
	assert_int_equal(utimensat(AT_FDCWD, c, times, 0), 0);
	assert_int_equal(specdir_scan(sd), 1);
	assert_int_equal(specdir_scan(sd), 0);

	/* Same size, new content: noticed through the modification time. */
	tick();
	text = spec_text("web-a", "  port: 7001\n");
	free(ck_write(root, "a.yaml", text, 0644));
	free(text);
	assert_int_equal(specdir_scan(sd), 1);
	specdir_resolve(sd, NULL, NULL, &ds1);
	assert_in_force(&ds1, "web-a", a, 7001);
	desired_set_free(&ds1);
	specdir_free(sd);
	free(a);
	free(b);
	free(c);
	ck_tmpdir_free(root);
}

/*
 * A file that breaks keeps its clusters' last good specs, with the file's
 * errors attached (spec-error); a name it never defined validly gets no
 * spec; fixing the file clears everything.
 */
static void
test_broken_file_keeps_last_good(void **state)
{
	char			*root = ck_tmpdir_new(), *a, *b, *text;
	struct specdir		*sd;
	struct desired_set	 ds;
	const struct desired	*d;
	const char		*want[2] = { NULL, NULL };

	(void)state;
	a = put_spec(root, "a.yaml", "web", "  port: 7000\n");
	b = put_spec(root, "b.yaml", "other", NULL);
	sd = specdir_new(root, NULL);
	assert_int_equal(specdir_scan(sd), 2);

	/* Break a.yaml, and add a second cluster that was never valid. */
	tick();
	assert_true(asprintf(&text, "apiVersion: cachekeeper/v1\n"
	    "kind: RedisCluster\nmetadata:\n  name: web\nspec:\n"
	    "  port: x\n---\napiVersion: cachekeeper/v1\n"
	    "kind: RedisCluster\nmetadata:\n  name: api\nspec:\n") > 0);
	free(ck_write(root, "a.yaml", text, 0644));
	free(text);
	assert_int_equal(specdir_scan(sd), 1);
	specdir_resolve(sd, NULL, NULL, &ds);
	assert_names(&ds, "api,other,web");
	assert_int_equal(ds.invalid_files, 1);
	want[0] = "6:9: spec.port must be an integer in 1..65535, got 'x'";
	ck_assert_diags(&ds.file_errors, a, want, "file_errors");
	/* The running spec stays: port 7000 from the last good parse. */
	assert_in_force(&ds, "web", a, 7000);
	d = find(&ds, "web");
	ck_assert_diags(&d->errors, a, want, "web errors");
	/* Never valid: no spec, but the user sees why. */
	d = find(&ds, "api");
	assert_null(d->spec);
	ck_assert_diags(&d->errors, a, want, "api errors");
	/* Other files carry on. */
	d = find(&ds, "other");
	assert_non_null(d->spec);
	assert_int_equal(d->errors.n, 0);
	desired_set_free(&ds);

	/* Fixed: the new spec is in force and the errors are gone. */
	tick();
	free(put_spec(root, "a.yaml", "web", "  port: 7002\n"));
	assert_int_equal(specdir_scan(sd), 1);
	specdir_resolve(sd, NULL, NULL, &ds);
	assert_names(&ds, "other,web");
	assert_int_equal(ds.invalid_files, 0);
	assert_int_equal(ds.file_errors.n, 0);
	assert_in_force(&ds, "web", a, 7002);
	assert_int_equal(find(&ds, "web")->errors.n, 0);
	desired_set_free(&ds);
	specdir_free(sd);
	free(a);
	free(b);
	ck_tmpdir_free(root);
}

/* A file broken from the start (daemon start-up): names, no specs. */
static void
test_broken_from_start(void **state)
{
	char			*root = ck_tmpdir_new(), *a;
	struct specdir		*sd;
	struct desired_set	 ds;
	const struct desired	*d;
	const char		*want[] = {
		"6:3: unknown key 'clustersize' in spec, did you mean "
		    "'cluster_size'?",
		NULL
	};

	(void)state;
	a = put_spec(root, "a.yaml", "web", "  clustersize: 3\n");
	sd = specdir_new(root, NULL);
	assert_int_equal(specdir_scan(sd), 1);
	specdir_resolve(sd, NULL, NULL, &ds);
	assert_names(&ds, "web");
	d = find(&ds, "web");
	assert_null(d->spec);
	ck_assert_diags(&d->errors, a, want, "web errors");
	assert_int_equal(ds.invalid_files, 1);
	desired_set_free(&ds);
	specdir_free(sd);
	free(a);
	ck_tmpdir_free(root);
}

static const char *
current_is(void *arg, const char *name)
{
	(void)name;
	return arg;
}

/* Check the two "also defined at" errors of a duplicate. */
static void
assert_dup_errors(const struct desired *d, const char *a, const char *b)
{
	char	*want_a, *want_b;

	assert_int_equal(d->errors.n, 2);
	assert_true(asprintf(&want_a, "cluster 'dup' is also defined at "
	    "%s:4:9", b) > 0);
	assert_true(asprintf(&want_b, "cluster 'dup' is also defined at "
	    "%s:4:9", a) > 0);
	assert_string_equal(d->errors.v[0].file, a);
	assert_int_equal(d->errors.v[0].line, 4);
	assert_int_equal(d->errors.v[0].col, 9);
	assert_string_equal(d->errors.v[0].msg, want_a);
	assert_string_equal(d->errors.v[1].file, b);
	assert_int_equal(d->errors.v[1].line, 4);
	assert_int_equal(d->errors.v[1].col, 9);
	assert_string_equal(d->errors.v[1].msg, want_b);
	free(want_a);
	free(want_b);
}

/*
 * One name in two files: both places are reported; the definition that is
 * running stays in force; when none runs, neither is created.
 */
static void
test_duplicate_across_files(void **state)
{
	char			*root = ck_tmpdir_new(), *a, *b, *other;
	struct specdir		*sd;
	struct desired_set	 ds;
	const struct desired	*d;

	(void)state;
	a = put_spec(root, "a.yaml", "dup", "  port: 7000\n");
	b = put_spec(root, "b/b.yaml", "dup", "  port: 8000\n");
	sd = specdir_new(root, NULL);
	assert_int_equal(specdir_scan(sd), 2);

	specdir_resolve(sd, NULL, NULL, &ds);
	assert_names(&ds, "dup");
	d = find(&ds, "dup");
	assert_null(d->spec);
	assert_dup_errors(d, a, b);
	/* Both files are valid on their own. */
	assert_int_equal(ds.invalid_files, 0);
	desired_set_free(&ds);

	specdir_resolve(sd, current_is, b, &ds);
	assert_in_force(&ds, "dup", b, 8000);
	assert_dup_errors(find(&ds, "dup"), a, b);
	desired_set_free(&ds);

	specdir_resolve(sd, current_is, a, &ds);
	assert_in_force(&ds, "dup", a, 7000);
	desired_set_free(&ds);

	other = ck_path(root, "elsewhere.yaml");
	specdir_resolve(sd, current_is, other, &ds);
	assert_null(find(&ds, "dup")->spec);
	desired_set_free(&ds);

	/* Removing one definition clears the error. */
	assert_int_equal(unlink(a), 0);
	assert_int_equal(specdir_scan(sd), 1);
	specdir_resolve(sd, current_is, a, &ds);
	assert_in_force(&ds, "dup", b, 8000);
	assert_int_equal(find(&ds, "dup")->errors.n, 0);
	desired_set_free(&ds);
	specdir_free(sd);
	free(other);
	free(a);
	free(b);
	ck_tmpdir_free(root);
}

/* A file open for writing keeps its previous parse until it is closed. */
static void
test_mark_writing(void **state)
{
	char			*root = ck_tmpdir_new(), *a, *n;
	struct specdir		*sd;
	struct desired_set	 ds;

	(void)state;
	a = put_spec(root, "a.yaml", "web", "  port: 7000\n");
	sd = specdir_new(root, NULL);
	assert_int_equal(specdir_scan(sd), 1);

	specdir_mark_writing(sd, a, true);
	tick();
	free(ck_write(root, "a.yaml", "apiVersion: cachekeeper/v1\nkind: Re",
	    0644));
	assert_int_equal(specdir_scan(sd), 0);
	specdir_resolve(sd, NULL, NULL, &ds);
	assert_in_force(&ds, "web", a, 7000);
	assert_int_equal(find(&ds, "web")->errors.n, 0);
	assert_int_equal(ds.invalid_files, 0);
	desired_set_free(&ds);

	/* Closed: the finished text is read. */
	free(put_spec(root, "a.yaml", "web", "  port: 7001\n"));
	specdir_mark_writing(sd, a, false);
	assert_int_equal(specdir_scan(sd), 1);
	specdir_resolve(sd, NULL, NULL, &ds);
	assert_in_force(&ds, "web", a, 7001);
	desired_set_free(&ds);

	/* A new file still being written is not read at all. */
	n = ck_path(root, "new.yaml");
	specdir_mark_writing(sd, n, true);
	free(ck_write(root, "new.yaml", "apiVersion: cache", 0644));
	assert_int_equal(specdir_scan(sd), 0);
	specdir_resolve(sd, NULL, NULL, &ds);
	assert_names(&ds, "web");
	assert_int_equal(ds.invalid_files, 0);
	desired_set_free(&ds);
	free(put_spec(root, "new.yaml", "fresh", NULL));
	specdir_mark_writing(sd, n, false);
	/* Unmarking a path never marked is harmless. */
	specdir_mark_writing(sd, "/nowhere.yaml", false);
	assert_int_equal(specdir_scan(sd), 1);
	specdir_resolve(sd, NULL, NULL, &ds);
	assert_names(&ds, "fresh,web");
	desired_set_free(&ds);
	specdir_free(sd);
	free(a);
	free(n);
	ck_tmpdir_free(root);
}

/* A removed file, or a removed directory, removes its clusters. */
static void
test_removed_file(void **state)
{
	char			*root = ck_tmpdir_new(), *a, *b, *c, *sub;
	struct specdir		*sd;
	struct desired_set	 ds;

	(void)state;
	a = put_spec(root, "a.yaml", "web", NULL);
	b = put_spec(root, "b.yaml", "api", NULL);
	c = put_spec(root, "sub/c.yaml", "jobs", NULL);
	sd = specdir_new(root, NULL);
	assert_int_equal(specdir_scan(sd), 3);

	assert_int_equal(unlink(b), 0);
	assert_int_equal(specdir_scan(sd), 1);
	specdir_resolve(sd, NULL, NULL, &ds);
	assert_names(&ds, "jobs,web");
	desired_set_free(&ds);

	assert_int_equal(unlink(c), 0);
	sub = ck_path(root, "sub");
	assert_int_equal(rmdir(sub), 0);
	assert_int_equal(specdir_scan(sd), 1);
	specdir_resolve(sd, NULL, NULL, &ds);
	assert_names(&ds, "web");
	desired_set_free(&ds);

	/* A broken file that goes away takes its last good spec along. */
	tick();
	free(ck_write(root, "a.yaml", "{", 0644));
	assert_int_equal(specdir_scan(sd), 1);
	specdir_resolve(sd, NULL, NULL, &ds);
	assert_names(&ds, "web");
	assert_non_null(find(&ds, "web")->spec);
	desired_set_free(&ds);
	assert_int_equal(unlink(a), 0);
	assert_int_equal(specdir_scan(sd), 1);
	specdir_resolve(sd, NULL, NULL, &ds);
	assert_int_equal(ds.n, 0);
	assert_int_equal(ds.invalid_files, 0);
	desired_set_free(&ds);
	specdir_free(sd);
	free(sub);
	free(a);
	free(b);
	free(c);
	ck_tmpdir_free(root);
}

/* An unreadable root is a scan error, not a crash or a silent nothing. */
static void
test_missing_root(void **state)
{
	char			*root = ck_tmpdir_new(), *gone;
	struct specdir		*sd;
	struct desired_set	 ds;
	const char		*want[] = {
		"0:0: cannot read directory: No such file or directory", NULL
	};

	(void)state;
	gone = ck_path(root, "gone");
	sd = specdir_new(gone, NULL);
	assert_int_equal(specdir_scan(sd), 0);
	specdir_resolve(sd, NULL, NULL, &ds);
	assert_int_equal(ds.n, 0);
	ck_assert_diags(&ds.file_errors, gone, want, "missing root");
	desired_set_free(&ds);
	specdir_free(sd);
	free(gone);
	ck_tmpdir_free(root);
}

/* The backend default of the specdir's options reaches every spec. */
static void
test_opts_default_backend(void **state)
{
	char			*root = ck_tmpdir_new();
	struct spec_opts	 o = { "elasticache", NULL };
	struct specdir		*sd;
	struct desired_set	 ds;

	(void)state;
	free(put_spec(root, "a.yaml", "web", NULL));
	sd = specdir_new(root, &o);
	assert_int_equal(specdir_scan(sd), 1);
	specdir_resolve(sd, NULL, NULL, &ds);
	assert_string_equal(find(&ds, "web")->spec->backend, "elasticache");
	desired_set_free(&ds);
	specdir_free(sd);
	ck_tmpdir_free(root);
}

/*
 * Regression (was a bug): files were told apart by path
 * only, so a file reached again through a symbolic link (here a link back
 * to the root) is read under several names and reported as a duplicate of
 * itself; the cluster then never gets a spec. The same file (device and
 * inode) should count once, and directories already visited should not be
 * walked again.
 */
static void
test_symlink_same_file_counts_once(void **state)
{
	char			*root = ck_tmpdir_new(), *a, *link;
	struct specdir		*sd;
	struct desired_set	 ds;
	const struct desired	*d;
	bool			 ok;

	(void)state;
	a = put_spec(root, "a.yaml", "web", NULL);
	free(ck_write(root, "sub/keep", "", 0644));
	link = ck_path(root, "sub/loop");
	assert_int_equal(symlink("..", link), 0);
	sd = specdir_new(root, NULL);
	specdir_scan(sd);
	specdir_resolve(sd, NULL, NULL, &ds);
	d = find(&ds, "web");
	ok = ds.n == 1 && d != NULL && d->spec != NULL && d->errors.n == 0;
	if (!ok)
		print_error("files=%zu names=%zu web.spec=%p errors=%zu\n",
		    sd->nfiles, ds.n, d ? (void *)d->spec : NULL,
		    d ? d->errors.n : 0);
	desired_set_free(&ds);
	specdir_free(sd);
	free(link);
	free(a);
	ck_tmpdir_free(root);
	if (!ok)
		fail();
}

int
main(void)
{
	static const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_candidate_names),
		cmocka_unit_test(test_scan_picks_spec_files),
		cmocka_unit_test(test_root_trailing_slash),
		cmocka_unit_test(test_scan_depth),
		cmocka_unit_test(test_rescan_only_changed),
		cmocka_unit_test(test_broken_file_keeps_last_good),
		cmocka_unit_test(test_broken_from_start),
		cmocka_unit_test(test_duplicate_across_files),
		cmocka_unit_test(test_mark_writing),
		cmocka_unit_test(test_removed_file),
		cmocka_unit_test(test_missing_root),
		cmocka_unit_test(test_opts_default_backend),
		cmocka_unit_test(test_symlink_same_file_counts_once),
	};

	return cmocka_run_group_tests_name("specdir", tests, ck_group_setup,
	    ck_group_teardown) != 0;
}
