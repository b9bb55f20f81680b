/*
 * Plans: the ordered steps that take a cluster from what a backend observes
 * to what its spec asks for. Plans are plain data computed by a pure
 * function, so `plan` can print them and tests can check them without any
 * backend. The order encodes rules learned the hard way: add capacity before
 * removing it, change the node type before removing shards, enable failover
 * only once a replica exists and disable it before the last replica goes,
 * and never act on a field that needs the cluster replaced.
 */
#ifndef CK_PLAN_H
#define CK_PLAN_H

#include <stdbool.h>
#include <stdint.h>

#include <jansson.h>

#include "backend.h"
#include "spec.h"
#include "util.h"

enum step_kind {
	STEP_CREATE,
	STEP_ADD_SHARDS,
	STEP_REMOVE_SHARDS,
	STEP_ADD_REPLICAS,
	STEP_REMOVE_REPLICAS,
	STEP_MODIFY,
	STEP_REPLACE,		/* reported only, never carried out */
	STEP_DELETE,
	STEP_FAILOVER_DRILL,	/* a backend's scheduled TestFailover */
};

struct change {
	const char	*field;		/* spec field name, static */
	char		*from;
	char		*to;
	bool		 disruptive;	/* restarts or fails over nodes */
	/*
	 * A Redis parameter the spec no longer sets: back to what a node
	 * has without it (to is ""). field is then owned, in owned.
	 */
	bool		 reset;
	char		*owned;
};

struct plan_step {
	enum step_kind	 kind;
	int		 from;		/* shards or replicas per shard */
	int		 to;
	bool		 final_snapshot;	/* STEP_DELETE */
	bool		 deferred;	/* waits for the maintenance window */
	struct change	*changes;	/* STEP_MODIFY, STEP_REPLACE */
	size_t		 nchanges;
};

struct plan {
	struct plan_step	*steps;
	size_t			 n;
	char			*wait;	/* why nothing can be done now */
};

/*
 * Compute the plan for spec against obs (NULL: not observed, treated as
 * absent). deleted: the spec was removed. now: UTC seconds, for windows.
 */
void	 plan_compute(const struct cluster_spec *, const struct observed *,
	    bool deleted, int64_t now, struct plan *);
void	 plan_free(struct plan *);
/* The first step that may run now, or NULL. */
const struct plan_step *plan_next(const struct plan *);
bool	 plan_has_changes(const struct plan *);
/* Human form, one line per step, terraform's +, ~, -, ! markers. */
void	 plan_format(const struct plan *, struct strbuf *);
json_t	*plan_to_json(const struct plan *);
const char *step_kind_name(enum step_kind);
/* Whether an engine version as written in a spec matches an actual one. */
bool	 engine_version_matches(const char *want, const char *have);
/* Whether going from have to want would lower the engine version. */
bool	 engine_version_downgrade(const char *want, const char *have);

#endif
