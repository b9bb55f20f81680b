/*
 * The interface between the reconcilers and the systems that run clusters.
 * A backend is a const table of functions (one file and one row in
 * backend.c to add one). Everything is asynchronous on the daemon's
 * event_base: a call starts work and returns at once; the callback runs
 * later from the loop, exactly once, unless the cluster handle is detached
 * first, which cancels it silently.
 */
#ifndef CK_BACKEND_H
#define CK_BACKEND_H

#include <stdbool.h>
#include <stdint.h>

#include <event2/event.h>
#include <jansson.h>

#include "spec.h"

struct dconf;
struct plan_step;

/* What a backend sees of a cluster; plan.c diffs it against the spec. */
enum obs_state {
	OBS_ABSENT,		/* no such cluster */
	OBS_CREATING,
	OBS_AVAILABLE,
	OBS_MODIFYING,
	OBS_DEGRADED,
	OBS_DELETING,
	OBS_FAILED,
};

struct observed {
	enum obs_state	 state;
	bool		 cluster_mode;
	int		 num_node_groups;
	int		 replicas_per_node_group;
	int		 port;
	char		*engine_version;
	char		*instance_type;
	bool		 automatic_failover;
	bool		 multi_az;
	bool		 at_rest_encryption;
	struct window	 snapshot_window;
	struct window	 maintenance_window;
	int		 snapshot_retention_limit;
	struct kvlist	 parameters;
	char		*parameter_group;	/* NULL: not a backend's notion */
	/*
	 * The backend holds disruptive changes for the maintenance window
	 * itself (ElastiCache's ApplyImmediately=false): the plan sends them
	 * at once instead of waiting for the window.
	 */
	bool		 defers_disruptive;
	/* A failover drill is due on this node group now (or NULL). */
	char		*drill_node_group;
	/* What only some backends report; NULL or false: not compared. */
	char		*kms_key_id;
	char		*subnet_group;
	bool		 has_security_groups;
	struct strlist	 security_groups;
	bool		 has_topic;
	char		*topic_arn;
	bool		 has_tags;
	struct kvlist	 tags;
	/* The AUTH token file changed: "rotate" or "set" is due (or NULL). */
	char		*auth_change;
	json_t		*endpoints;	/* owned; may be NULL */
	char		*message;	/* backend's own words, or NULL */
};

void	 observed_free(struct observed *);

typedef void (*backend_observe_cb)(void *arg, int error, const char *message,
    struct observed *obs);
typedef void (*backend_done_cb)(void *arg, int error, const char *message);

struct backend_env {
	struct event_base	*base;
	const struct dconf	*conf;
	/*
	 * A backend calls this when something it watches on its own changed
	 * (a node died, a failover happened) so the cluster is observed again
	 * now rather than at the next resync.
	 */
	void			(*changed)(void *arg, const char *cluster);
	/*
	 * A long operation's progress ({"operation", "done", "total",
	 * "unit"}; NULL: it ended), for the status now, even while the
	 * cluster is not observed (an operator's snapshot). Borrowed.
	 */
	void			(*progress)(void *arg, const char *cluster,
				    json_t *progress);
	void			*changed_arg;
};

/* An operation an operator asks for (control socket, CLI). */
enum backend_op_kind {
	BACKEND_OP_SNAPSHOT,	/* name: the snapshot's, or NULL for one */
	BACKEND_OP_FAILOVER,	/* shard: node group, or NULL for the first */
};

struct backend_op {
	enum backend_op_kind	 kind;
	const char		*name;
	const char		*shard;
};

/* An operation's end: message says what happened, for people. */
typedef void (*backend_op_cb)(void *arg, int error, const char *message);

struct backend {
	const char	*name;
	/* false: the backend is not built in yet; specs still validate. */
	bool		 available;
	const char	*unavailable_reason;
	/* How often to look again while the cluster is busy (ms). */
	unsigned int	 poll_ms;

	/* Per-cluster handle; NULL on failure. */
	void		*(*attach)(const struct backend_env *, const char *name);
	/* Cancel whatever is in flight (no callback) and free the handle. */
	void		 (*detach)(void *handle);
	/* Observe the cluster; obs is the callback's to keep or free. */
	void		 (*observe)(void *handle, const struct cluster_spec *,
			    backend_observe_cb, void *arg);
	/* Carry out one step of a plan. */
	void		 (*apply)(void *handle, const struct cluster_spec *,
			    const struct plan_step *, backend_done_cb,
			    void *arg);
	/* An operator's operation (optional: NULL means not supported). */
	void		 (*operate)(void *handle, const struct cluster_spec *,
			    const struct backend_op *, backend_op_cb,
			    void *arg);
};

/* Look a backend up by name; NULL when unknown. */
const struct backend	*backend_find(const char *name);
/* Add a backend (test builds add "test"); names must be unique. */
void			 backend_register(const struct backend *);
/* NULL-terminated list of names, for spec validation. */
const char *const	*backend_names(void);

#endif
