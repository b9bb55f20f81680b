/*
 * A small YAML document tree with source positions, built from libyaml's
 * event stream. Aliases are shared references, never copies, and the number
 * of nodes an expansion would create is bounded, so an alias bomb costs
 * nothing but an error. All nodes of a stream live in one arena freed
 * with ytree_free().
 */
#ifndef CK_YAMLTREE_H
#define CK_YAMLTREE_H

#include <stddef.h>

#include "diag.h"

#define YAML_MAX_NODES		100000	/* expanded nodes per file */
#define YAML_MAX_DEPTH		64	/* nesting of collections */

enum ynode_type {
	YNODE_SCALAR,
	YNODE_SEQ,
	YNODE_MAP,
};

struct ynode {
	enum ynode_type	 type;
	int		 line;		/* 1-based */
	int		 col;		/* 1-based */
	char		*value;		/* scalars: NUL-terminated text */
	size_t		 len;
	int		 plain;		/* scalar written without quotes */
	char		*tag;		/* explicit tag, or NULL */
	struct ynode	**items;	/* seq: n items; map: 2n key, value */
	size_t		 n;
	size_t		 cap;
	size_t		 weight;	/* nodes in the expanded subtree */
};

struct ytree {
	struct ynode	**docs;		/* root node of each document */
	size_t		 ndocs;
	struct ynode	**arena;
	size_t		 narena;
	size_t		 arena_cap;
};

/*
 * Parse len bytes of buf as a YAML stream. Errors (syntax, invalid UTF-8,
 * binary data, alias bombs, nesting too deep) go to diags under the name
 * file. Returns a tree (possibly with fewer documents) or NULL when the
 * stream could not be parsed at all; the caller frees it with ytree_free().
 */
struct ytree	*ytree_parse(const char *file, const char *buf, size_t len,
		    struct diags *);
void		 ytree_free(struct ytree *);

/* Map helpers. */
#define YMAP_KEY(m, i)	((m)->items[2 * (i)])
#define YMAP_VAL(m, i)	((m)->items[2 * (i) + 1])
struct ynode	*ymap_get(const struct ynode *, const char *);
const char	*ynode_type_name(const struct ynode *);
/* True when a scalar is YAML's null (~, null, empty plain). */
int		 ynode_is_null(const struct ynode *);

#endif
