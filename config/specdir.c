/*
 * Incremental scan of a directory tree of spec files, and the resolution
 * of cluster names; see specdir.h.
 */
#include "config.h"

#include <sys/stat.h>

#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "htab.h"
#include "specdir.h"
#include "util.h"

#define SPECDIR_MAX_DEPTH	16

struct specfile {
	char			*path;
	dev_t			 dev;
	ino_t			 ino;
	off_t			 size;
	struct timespec		 mtime;
	struct timespec		 ctime;
	bool			 valid;
	bool			 seen;
	struct spec_list	 specs;		/* last parse (refs if invalid) */
	struct spec_list	 last_good;	/* specs of the last valid parse */
	struct diags		 diags;
};

struct walk {
	struct specdir	*sd;
	struct htab	*byname;	/* path -> specfile */
	struct htab	*writing;
	struct htab	*ids;		/* "dev:ino" of what was visited */
	struct specfile	**files;
	size_t		 nfiles;
	size_t		 changed;
};

static struct htab *writing_paths(struct specdir *);

bool
specdir_candidate(const char *name)
{
	size_t	 len = strlen(name);

	if (name[0] == '.' || name[0] == '#' || len == 0 ||
	    name[len - 1] == '~')
		return false;
	if (len > 5 && strcmp(name + len - 5, ".yaml") == 0)
		return true;
	if (len > 4 && strcmp(name + len - 4, ".yml") == 0)
		return true;
	return false;
}

static void
specfile_free(struct specfile *f)
{
	if (f == NULL)
		return;
	free(f->path);
	spec_list_free(&f->specs);
	spec_list_free(&f->last_good);
	diags_free(&f->diags);
	free(f);
}

struct specdir *
specdir_new(const char *root, const struct spec_opts *opts)
{
	struct specdir	*sd = xcalloc(1, sizeof *sd);

	sd->root = xstrdup(root);
	if (opts != NULL)
		sd->opts = *opts;
	diags_init(&sd->scan_diags);
	return sd;
}

void
specdir_free(struct specdir *sd)
{
	size_t	 i;

	if (sd == NULL)
		return;
	for (i = 0; i < sd->nfiles; i++)
		specfile_free(sd->files[i]);
	free(sd->files);
	for (i = 0; i < sd->ndirs; i++)
		free(sd->dirs[i]);
	free(sd->dirs);
	diags_free(&sd->scan_diags);
	htab_free(writing_paths(sd));
	free(sd->root);
	free(sd);
}

/* The set of paths open for writing hangs off the specdir's opts slot. */
static struct htab *
writing_paths(struct specdir *sd)
{
	return (struct htab *)sd->opts_private;
}

void
specdir_mark_writing(struct specdir *sd, const char *path, bool writing)
{
	struct htab	*h = writing_paths(sd);

	if (h == NULL) {
		if (!writing)
			return;
		h = htab_new();
		sd->opts_private = h;
	}
	if (writing)
		htab_put(h, path, (void *)1);
	else
		htab_del(h, path);
}

static void
specfile_parse(struct specdir *sd, struct specfile *f)
{
	size_t	 i;

	char	*cause = NULL;

	spec_list_free(&f->specs);
	diags_clear(&f->diags);
	/* Who can write a spec can run anything: StrictModes. */
	if (path_check_secure(f->path, (unsigned int)geteuid(), &cause) != 0) {
		diags_add(&f->diags, f->path, 0, 0, "not read: %s", cause);
		free(cause);
		f->valid = false;
		return;
	}
	f->valid = spec_parse_file(f->path, &sd->opts, &f->specs,
	    &f->diags) == 0;
	if (!f->valid)
		return;
	spec_list_free(&f->last_good);
	f->last_good.v = xreallocarray(NULL, f->specs.n ? f->specs.n : 1,
	    sizeof *f->last_good.v);
	for (i = 0; i < f->specs.n; i++)
		f->last_good.v[i] = spec_hold(f->specs.v[i]);
	f->last_good.n = f->specs.n;
}

static void
walk_file(struct walk *w, const char *path, const struct stat *st)
{
	struct specfile	*f;
	char		 id[64];

	/* One file reached through several paths (symlinks) counts once. */
	snprintf(id, sizeof id, "f%llu:%llu", (unsigned long long)st->st_dev,
	    (unsigned long long)st->st_ino);
	if (htab_get(w->ids, id) != NULL)
		return;
	htab_put(w->ids, id, (void *)1);
	f = htab_get(w->byname, path);
	if (f == NULL) {
		if (w->writing && htab_get(w->writing, path))
			return;		/* a new file still being written */
		f = xcalloc(1, sizeof *f);
		f->path = xstrdup(path);
		diags_init(&f->diags);
		htab_put(w->byname, path, f);
	} else if (f->seen)
		return;			/* reached twice through symlinks */
	else if (f->dev == st->st_dev && f->ino == st->st_ino &&
	    f->size == st->st_size &&
	    f->mtime.tv_sec == st->st_mtim.tv_sec &&
	    f->mtime.tv_nsec == st->st_mtim.tv_nsec &&
	    f->ctime.tv_sec == st->st_ctim.tv_sec &&
	    f->ctime.tv_nsec == st->st_ctim.tv_nsec) {
		f->seen = true;
		w->files = xreallocarray(w->files, w->nfiles + 1,
		    sizeof *w->files);
		w->files[w->nfiles++] = f;
		return;
	} else if (w->writing && htab_get(w->writing, path)) {
		/* Half written: keep the previous parse until it closes. */
		f->seen = true;
		w->files = xreallocarray(w->files, w->nfiles + 1,
		    sizeof *w->files);
		w->files[w->nfiles++] = f;
		return;
	}
	f->dev = st->st_dev;
	f->ino = st->st_ino;
	f->size = st->st_size;
	f->mtime = st->st_mtim;
	f->ctime = st->st_ctim;
	f->seen = true;
	specfile_parse(w->sd, f);
	w->changed++;
	w->files = xreallocarray(w->files, w->nfiles + 1, sizeof *w->files);
	w->files[w->nfiles++] = f;
}

static void
walk_dir(struct walk *w, const char *dir, int depth)
{
	struct specdir	*sd = w->sd;
	DIR		*d;
	struct dirent	*de;
	struct stat	 st;
	char		*path;

	if (depth > SPECDIR_MAX_DEPTH) {
		diags_add(&sd->scan_diags, dir, 0, 0, "directory nested deeper "
		    "than %d levels, not read", SPECDIR_MAX_DEPTH);
		return;
	}
	if (stat(dir, &st) == 0) {
		char id[64];

		/* A symlink back up the tree must not loop. */
		snprintf(id, sizeof id, "d%llu:%llu",
		    (unsigned long long)st.st_dev,
		    (unsigned long long)st.st_ino);
		if (htab_get(w->ids, id) != NULL)
			return;
		htab_put(w->ids, id, (void *)1);
	}
	if ((d = opendir(dir)) == NULL) {
		diags_add(&sd->scan_diags, dir, 0, 0, "cannot read directory: "
		    "%s", strerror(errno));
		return;
	}
	sd->dirs = xreallocarray(sd->dirs, sd->ndirs + 1, sizeof *sd->dirs);
	sd->dirs[sd->ndirs++] = xstrdup(dir);
	while ((de = readdir(d)) != NULL) {
		if (de->d_name[0] == '.')
			continue;
		xasprintf(&path, "%s/%s", dir, de->d_name);
		if (stat(path, &st) == -1) {
			free(path);	/* dangling symlink or raced away */
			continue;
		}
		if (S_ISDIR(st.st_mode))
			walk_dir(w, path, depth + 1);
		else if (S_ISREG(st.st_mode) && specdir_candidate(de->d_name))
			walk_file(w, path, &st);
		free(path);
	}
	closedir(d);
}

static int
file_cmp(const void *a, const void *b)
{
	const struct specfile *const *fa = a, *const *fb = b;

	return strcmp((*fa)->path, (*fb)->path);
}

size_t
specdir_scan(struct specdir *sd)
{
	struct walk	 w;
	size_t		 i;
	char		*root;

	memset(&w, 0, sizeof w);
	w.sd = sd;
	w.byname = htab_new();
	w.ids = htab_new();
	w.writing = writing_paths(sd);
	for (i = 0; i < sd->nfiles; i++) {
		sd->files[i]->seen = false;
		htab_put(w.byname, sd->files[i]->path, sd->files[i]);
	}
	for (i = 0; i < sd->ndirs; i++)
		free(sd->dirs[i]);
	sd->ndirs = 0;
	diags_clear(&sd->scan_diags);

	root = xstrdup(sd->root);
	while (strlen(root) > 1 && root[strlen(root) - 1] == '/')
		root[strlen(root) - 1] = '\0';
	walk_dir(&w, root, 0);
	free(root);

	for (i = 0; i < sd->nfiles; i++) {
		if (!sd->files[i]->seen) {
			specfile_free(sd->files[i]);
			w.changed++;
		}
	}
	free(sd->files);
	if (w.nfiles > 1)
		qsort(w.files, w.nfiles, sizeof *w.files, file_cmp);
	sd->files = w.files;
	sd->nfiles = w.nfiles;
	htab_free(w.byname);
	htab_free(w.ids);
	return w.changed;
}

/* A candidate definition of a name, before duplicates are settled. */
struct cand {
	const char		*name;
	struct cluster_spec	*spec;	/* NULL when never valid */
	const struct specfile	*file;
	int			 line;
	int			 col;
	bool			 broken;	/* its file has errors */
};

static int
cand_cmp(const void *a, const void *b)
{
	const struct cand *ca = a, *cb = b;
	int r;

	if ((r = strcmp(ca->name, cb->name)) != 0)
		return r;
	if ((r = strcmp(ca->file->path, cb->file->path)) != 0)
		return r;
	return ca->line - cb->line;
}

static void
cand_push(struct cand **v, size_t *n, size_t *cap, struct cand c)
{
	if (*n == *cap) {
		*cap = *cap ? *cap * 2 : 64;
		*v = xreallocarray(*v, *cap, sizeof **v);
	}
	(*v)[(*n)++] = c;
}

static void
collect(struct specdir *sd, struct cand **v, size_t *n, size_t *cap,
    struct desired_set *out)
{
	struct htab	*names;
	size_t		 i, j;

	for (i = 0; i < sd->nfiles; i++) {
		struct specfile *f = sd->files[i];

		if (f->valid) {
			for (j = 0; j < f->specs.n; j++)
				cand_push(v, n, cap, (struct cand){
				    f->specs.v[j]->name, f->specs.v[j], f,
				    f->specs.v[j]->line, f->specs.v[j]->col,
				    false });
			continue;
		}
		out->invalid_files++;
		diags_append(&out->file_errors, &f->diags);
		names = htab_new();
		for (j = 0; j < f->last_good.n; j++) {
			cand_push(v, n, cap, (struct cand){
			    f->last_good.v[j]->name, f->last_good.v[j], f,
			    f->last_good.v[j]->line, f->last_good.v[j]->col,
			    true });
			htab_put(names, f->last_good.v[j]->name, f);
		}
		/*
		 * Names the broken file mentions that never were valid, each
		 * once: a name the file repeats is one candidate (the file's
		 * own "defined twice" error says the rest). 16,000 repeats
		 * were 16,000 candidates and 256 million "also defined".
		 */
		for (j = 0; j < f->specs.nrefs; j++) {
			if (htab_get(names, f->specs.refs[j].name) != NULL)
				continue;
			htab_put(names, f->specs.refs[j].name, f);
			if (!spec_name_valid(f->specs.refs[j].name,
			    &(const char *){ NULL }))
				continue;
			cand_push(v, n, cap, (struct cand){
			    f->specs.refs[j].name, NULL, f,
			    f->specs.refs[j].line, f->specs.refs[j].col,
			    true });
		}
		htab_free(names);
	}
}

static void
resolve_group(struct cand *g, size_t n,
    const char *(*current)(void *, const char *), void *arg,
    struct desired *d)
{
	const char	*cur = current ? current(arg, g[0].name) : NULL;
	size_t		 i, j, pick = n;

	d->name = g[0].name;
	diags_init(&d->errors);
	if (n > 1) {
		for (i = 0; i < n; i++)
			for (j = 0; j < n; j++)
				if (i != j)
					diags_add(&d->errors, g[i].file->path,
					    g[i].line, g[i].col, "cluster '%s' "
					    "is also defined at %s:%d:%d",
					    g[i].name, g[j].file->path,
					    g[j].line, g[j].col);
		for (i = 0; i < n; i++)
			if (cur && strcmp(cur, g[i].file->path) == 0 &&
			    g[i].spec != NULL)
				pick = i;
	} else
		pick = 0;
	if (pick < n) {
		d->spec = g[pick].spec ? spec_hold(g[pick].spec) : NULL;
		if (g[pick].broken)
			diags_append(&d->errors, &g[pick].file->diags);
	} else
		d->spec = NULL;
}

void
specdir_resolve(struct specdir *sd,
    const char *(*current)(void *, const char *), void *arg,
    struct desired_set *out)
{
	struct cand	*v = NULL;
	size_t		 n = 0, cap = 0, i, j;

	memset(out, 0, sizeof *out);
	diags_init(&out->file_errors);
	diags_append(&out->file_errors, &sd->scan_diags);
	collect(sd, &v, &n, &cap, out);
	if (n > 1)
		qsort(v, n, sizeof *v, cand_cmp);
	out->v = xcalloc(n ? n : 1, sizeof *out->v);
	for (i = 0; i < n; i = j) {
		for (j = i + 1; j < n && strcmp(v[i].name, v[j].name) == 0; j++)
			;
		resolve_group(v + i, j - i, current, arg, &out->v[out->n++]);
	}
	free(v);
}

void
desired_set_free(struct desired_set *ds)
{
	size_t	 i;

	for (i = 0; i < ds->n; i++) {
		spec_free(ds->v[i].spec);
		diags_free(&ds->v[i].errors);
	}
	free(ds->v);
	diags_free(&ds->file_errors);
	memset(ds, 0, sizeof *ds);
}
