/*
 * A directory tree of spec files, scanned incrementally: only files whose
 * identity (device, inode, size, mtime, ctime) changed are parsed again.
 * Resolving the tree yields, for every cluster name, the spec in force and
 * the errors that concern it, following the rules that protect users: a
 * broken file keeps its clusters' last good specs; a name defined in two
 * files keeps the definition already running.
 */
#ifndef CK_SPECDIR_H
#define CK_SPECDIR_H

#include <stdbool.h>
#include <stddef.h>

#include "diag.h"
#include "spec.h"

struct specfile;

struct specdir {
	char			*root;		/* as configured */
	struct spec_opts	 opts;
	struct specfile		**files;	/* sorted by path */
	size_t			 nfiles;
	char			**dirs;		/* directories seen in the scan */
	size_t			 ndirs;
	struct diags		 scan_diags;	/* unreadable root etc. */
	void			*opts_private;	/* paths being written */
};

/* One cluster name after resolution. */
struct desired {
	const char		*name;
	struct cluster_spec	*spec;		/* in force; NULL if none yet */
	struct diags		 errors;	/* nonempty: spec-error */
};

struct desired_set {
	struct desired		*v;
	size_t			 n;
	size_t			 invalid_files;
	struct diags		 file_errors;	/* every error of every file */
};

struct specdir	*specdir_new(const char *root, const struct spec_opts *);
void		 specdir_free(struct specdir *);
/*
 * Walk the tree and reparse what changed. Files listed as being written
 * (specdir_mark_writing) keep their previous parse. Returns the number of
 * files added, changed or removed.
 */
size_t		 specdir_scan(struct specdir *);
/* Record that path is open for writing (true) or was closed (false). */
void		 specdir_mark_writing(struct specdir *, const char *path,
		    bool writing);
/*
 * Resolve names. current(arg, name) tells which file the running
 * definition of name came from (NULL when not running), to settle
 * duplicates in its favour.
 */
void		 specdir_resolve(struct specdir *,
		    const char *(*current)(void *, const char *), void *arg,
		    struct desired_set *);
void		 desired_set_free(struct desired_set *);

/* Whether a file name is a spec candidate (*.yaml or *.yml, not hidden). */
bool		 specdir_candidate(const char *name);

#endif
