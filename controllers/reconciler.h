/*
 * One reconciler per cluster name. It holds the spec in force, observes the
 * cluster through its backend, computes a plan and carries out the first
 * step, one action at a time, then requeues itself: soon after progress,
 * at the resync interval when in sync, and with jittered exponential
 * backoff after errors. Its status is written to STATUS_DIR/NAME.json
 * atomically whenever it changes.
 */
#ifndef CK_RECONCILER_H
#define CK_RECONCILER_H

#include <stdbool.h>
#include <stdint.h>

#include <event2/event.h>
#include <jansson.h>

#include "backend.h"
#include "diag.h"
#include "plan.h"
#include "spec.h"

enum phase {
	PHASE_PENDING,
	PHASE_CREATING,
	PHASE_AVAILABLE,
	PHASE_MODIFYING,
	PHASE_DEGRADED,
	PHASE_FAILED,
	PHASE_DELETING,
	PHASE_RETAINED,
	PHASE_SPEC_ERROR,
	PHASE__COUNT
};

#define BACKOFF_BASE_MS		1000
#define BACKOFF_CAP_MS		300000	/* 5 minutes */
#define WAIT_POLL_MS		1000	/* while the backend is busy */

/* Counters for metrics, shared by every reconciler of a daemon. */
#define CTL_HIST_BUCKETS	12
#define CTL_MAX_BACKENDS	4
#define CTL_OPS			12	/* observe, each step kind, operate */

struct ctl_stats {
	/* Reconcile durations (observe to the end of its step), seconds. */
	uint64_t	 hist[CTL_HIST_BUCKETS + 1];	/* last: +Inf */
	double		 hist_sum;
	uint64_t	 hist_count;
	/* Backend calls by backend, operation and result (ok, error). */
	const char	*backends[CTL_MAX_BACKENDS];
	uint64_t	 calls[CTL_MAX_BACKENDS][CTL_OPS][2];
};

extern const double ctl_hist_bounds[CTL_HIST_BUCKETS];
/* Operation names for calls[][op][]: "observe", step kinds, "operate". */
const char	*ctl_op_name(int op);

/* What the reconcilers share; owned by the daemon. */
struct ctl_env {
	struct event_base	*base;
	struct backend_env	 benv;
	char			*status_dir;
	uint64_t		 resync_ms;
	/* Called (from the loop) when a reconciler's phase changes. */
	void			 (*on_change)(void *arg);
	/* Called on a later loop turn when a reconciler is finished. */
	void			 (*on_retire)(void *arg, const char *name);
	void			*arg;
	struct ctl_stats	 stats;
};

struct reconciler;

struct reconciler *reconciler_new(struct ctl_env *, const char *name);
/* Stop and free; cancels what is in flight. Not from its own callbacks. */
void		 reconciler_free(struct reconciler *);
/*
 * Give the reconciler the spec resolved for its name (NULL: none valid
 * yet) and the spec errors that concern it (empty: none). A new generation
 * triggers a reconcile at once. The reconciler takes its own reference.
 */
void		 reconciler_set_spec(struct reconciler *, struct cluster_spec *,
		    const struct diags *errors);
/* The spec disappeared (true) or came back (false). */
void		 reconciler_set_deleted(struct reconciler *, bool deleted,
		    const char *why);
void		 reconciler_kick(struct reconciler *, uint64_t delay_ms);
/* A cluster known from its status file only: shown retained, never acted
 * on until a spec arrives. */
void		 reconciler_mark_orphan(struct reconciler *, const char *why);
bool		 reconciler_deleted(const struct reconciler *);
/*
 * The mass-deletion guard holds this cluster's deletion (why), or lets it
 * go (NULL). A held cluster shows as retained with why, keeps its last
 * good spec and is never deleted.
 */
void		 reconciler_hold_deletion(struct reconciler *, const char *why);
const char	*reconciler_held(const struct reconciler *);

const char	*reconciler_name(const struct reconciler *);
const char	*reconciler_message(const struct reconciler *);
enum phase	 reconciler_phase(const struct reconciler *);
/* For metrics, without building the status: views, no copies. */
bool		 reconciler_generation_lag(const struct reconciler *);
size_t		 reconciler_spec_error_count(const struct reconciler *);
/* The last observation's endpoints (borrowed), or NULL. */
json_t		*reconciler_endpoints(const struct reconciler *);
/*
 * A long operation's progress as the backend last told it (NULL: none),
 * written to the status at once; reconciler_progress() is that, else the
 * last observation's (a reshard's). Borrowed.
 */
void		 reconciler_set_progress(struct reconciler *, json_t *);
json_t		*reconciler_progress(const struct reconciler *);
bool		 reconciler_in_sync(const struct reconciler *);
const struct cluster_spec *reconciler_spec(const struct reconciler *);
uint64_t	 reconciler_generation(const struct reconciler *);
/* Number of spec generations handed to this reconciler (for benches). */
uint64_t	 reconciler_spec_updates(const struct reconciler *);
json_t		*reconciler_status_json(const struct reconciler *);
/* The last observation (NULL before the first), for `plan`. */
const struct observed *reconciler_observed(const struct reconciler *);
/*
 * Run an operator's operation through the backend. 0 and cb called
 * later, or a negative errno with *cause: -EBUSY (a step is in flight),
 * -ENOTSUP (the backend cannot), -ENOENT (no valid spec or backend).
 */
int		 reconciler_operate(struct reconciler *, const struct backend_op *,
		    backend_op_cb cb, void *arg, char **cause);
/* Forget a pending operation's callback (its requester went away). */
void		 reconciler_operate_cancel(struct reconciler *, void *arg);
void		 reconciler_remove_status(struct ctl_env *, const char *name);
const char	*phase_name(enum phase);

#endif
