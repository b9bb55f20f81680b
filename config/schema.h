/*
 * Typed readers for YAML nodes. Each reader checks one value, and on a
 * problem adds a diagnostic at the node's position naming the key's path and
 * the valid range, then returns -1; the caller carries on so that every
 * error of a file is reported in one pass.
 */
#ifndef CK_SCHEMA_H
#define CK_SCHEMA_H

#include <stdbool.h>
#include <stdint.h>

#include "diag.h"
#include "yamltree.h"

struct yctx {
	const char	*file;
	struct diags	*diags;
};

/* A string-to-string map, kept in file order. */
struct kvlist {
	char	**keys;
	char	**values;
	size_t	  n;
};
void	 kvlist_free(struct kvlist *);
void	 kvlist_add(struct kvlist *, const char *, const char *);
const char *kvlist_get(const struct kvlist *, const char *);
/* Remove key k (every entry of it); true when there was one. */
bool	 kvlist_remove(struct kvlist *, const char *k);

struct strlist {
	char	**v;
	size_t	  n;
};
void	 strlist_free(struct strlist *);
void	 strlist_add(struct strlist *, const char *);

void	 yerr(struct yctx *, const struct ynode *, const char *, ...)
	    __attribute__((format(printf, 3, 4)));

/*
 * Check that map is a mapping whose keys are all in known (NULL-terminated)
 * and appear once; unknown keys get a "did you mean" when one is close.
 * Returns -1 when map is not a mapping at all.
 */
int	 ycheck_map(struct yctx *, const struct ynode *map, const char *path,
	    const char *const *known);
int	 yget_bool(struct yctx *, const struct ynode *, const char *path,
	    bool *);
int	 yget_int(struct yctx *, const struct ynode *, const char *path,
	    int64_t min, int64_t max, int64_t *);
int	 yget_string(struct yctx *, const struct ynode *, const char *path,
	    size_t maxlen, char **);
int	 yget_enum(struct yctx *, const struct ynode *, const char *path,
	    const char *const *values, int *);
int	 yget_duration(struct yctx *, const struct ynode *, const char *path,
	    uint64_t min_ms, uint64_t max_ms, uint64_t *ms);
int	 yget_size(struct yctx *, const struct ynode *, const char *path,
	    uint64_t *bytes);
int	 yget_strmap(struct yctx *, const struct ynode *, const char *path,
	    size_t maxkey, size_t maxval, struct kvlist *);
int	 yget_strlist(struct yctx *, const struct ynode *, const char *path,
	    size_t maxlen, struct strlist *);

/* Plain parsers, usable outside YAML (CLI flags, tests). 0 or -EINVAL. */
int	 parse_duration_ms(const char *, uint64_t *);
int	 parse_size_bytes(const char *, uint64_t *);
/* The known word closest to s, or NULL when none is close enough. */
const char *closest_word(const char *s, const char *const *words);

#endif
