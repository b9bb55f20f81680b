/*
 * The per-cluster control loop; see reconciler.h. A reconcile is: observe
 * through the backend, plan, run the first runnable step, requeue. The
 * loop never has more than one backend call in flight per cluster.
 */
#include "config.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "log.h"
#include "reconciler.h"
#include "util.h"

enum cond_type {
	COND_READY,
	COND_SYNCED,
	COND_SPEC_VALID,
	COND__COUNT
};

static const char *const cond_names[] = { "Ready", "Synced", "SpecValid" };

struct condition {
	bool	 status;
	char	*reason;
	char	*message;
	int64_t	 since;
	bool	 set;
};

enum inflight {
	INFLIGHT_NONE,
	INFLIGHT_OBSERVE,
	INFLIGHT_APPLY,
	INFLIGHT_OPERATE,
};

struct reconciler {
	char			*name;
	struct ctl_env		*env;
	struct cluster_spec	*spec;		/* in force; may be NULL */
	const struct backend	*backend;
	void			*handle;
	uint64_t		 generation;
	uint64_t		 observed_generation;
	uint64_t		 spec_updates;
	enum phase		 phase;
	char			*message;
	char			*last_error;
	struct diags		 spec_errors;
	bool			 deleted;
	bool			 retiring;
	enum inflight		 inflight;
	bool			 kick_pending;	/* kicked while in flight */
	struct event		*timer;
	uint64_t		 next_at_ms;	/* monotonic */
	unsigned int		 failures;
	struct plan		 plan;
	struct observed		*obs;
	struct condition	 cond[COND__COUNT];
	int64_t			 updated_at;
	uint64_t		 cycle_ms;	/* this reconcile started */
	int			 step_kind;	/* of the step in flight */
	backend_op_cb		 op_cb;		/* operation in flight */
	void			*op_arg;
	char			*op_what;
	json_t			*last_op;	/* the last operation's end */
	bool			 op_queued;	/* waits for the observation */
	char			*held;		/* deletion held: why, or NULL */
	struct backend_op	 op_next;
	char			*op_next_name;
	char			*op_next_shard;
	json_t			*progress;	/* from the backend, or NULL */
	/* A status file that could not be written: retried on a timer. */
	struct event		*status_ev;
	int			 status_errno;	/* of the last failure, or 0 */
	unsigned int		 status_failures;
};

const double ctl_hist_bounds[CTL_HIST_BUCKETS] = {
	0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30
};

static const char *const op_names[CTL_OPS] = {
	"observe", "create", "add_shards", "remove_shards", "add_replicas",
	"remove_replicas", "modify", "replace", "delete", "failover_drill",
	"operate", "other"
};

const char *
ctl_op_name(int op)
{
	return op >= 0 && op < CTL_OPS ? op_names[op] : "other";
}

/* Count a backend call; op 0 observe, 1 + step kind, 10 operate. */
static void
stats_call(struct reconciler *r, int op, bool ok)
{
	struct ctl_stats	*st = &r->env->stats;
	const char		*b = r->backend ? r->backend->name : "none";
	int			 i;

	for (i = 0; i < CTL_MAX_BACKENDS; i++) {
		if (st->backends[i] == NULL)
			st->backends[i] = b;
		if (strcmp(st->backends[i], b) == 0)
			break;
	}
	if (i == CTL_MAX_BACKENDS)
		return;
	if (op < 0 || op >= CTL_OPS)
		op = CTL_OPS - 1;
	st->calls[i][op][ok ? 0 : 1]++;
}

/* A reconcile (observe, plan, step) ended: its duration. */
static void
stats_cycle(struct reconciler *r)
{
	struct ctl_stats	*st = &r->env->stats;
	double			 sec;
	int			 i;

	if (r->cycle_ms == 0)
		return;
	sec = (double)(clock_mono_ms() - r->cycle_ms) / 1000.0;
	r->cycle_ms = 0;
	for (i = 0; i < CTL_HIST_BUCKETS; i++)
		if (sec <= ctl_hist_bounds[i])
			break;
	st->hist[i]++;
	st->hist_sum += sec;
	st->hist_count++;
}

static const char *const phase_names[] = {
	[PHASE_PENDING] = "pending",
	[PHASE_CREATING] = "creating",
	[PHASE_AVAILABLE] = "available",
	[PHASE_MODIFYING] = "modifying",
	[PHASE_DEGRADED] = "degraded",
	[PHASE_FAILED] = "failed",
	[PHASE_DELETING] = "deleting",
	[PHASE_RETAINED] = "retained",
	[PHASE_SPEC_ERROR] = "spec-error",
};

static void	reconciler_run(evutil_socket_t, short, void *);
static void	reconciler_write_status(struct reconciler *);

const char *
phase_name(enum phase p)
{
	return phase_names[p];
}

struct reconciler *
reconciler_new(struct ctl_env *env, const char *name)
{
	struct reconciler	*r;

	r = xcalloc(1, sizeof *r);
	r->name = xstrdup(name);
	r->env = env;
	r->phase = PHASE_PENDING;
	diags_init(&r->spec_errors);
	r->timer = evtimer_new(env->base, reconciler_run, r);
	r->updated_at = clock_wall_s();
	return r;
}

static void
reconciler_detach(struct reconciler *r)
{
	backend_op_cb	 cb = r->op_cb;
	void		*arg = r->op_arg;

	if (r->handle != NULL && r->backend != NULL && r->backend->detach)
		r->backend->detach(r->handle);
	r->handle = NULL;
	r->backend = NULL;
	r->inflight = INFLIGHT_NONE;
	r->op_cb = NULL;
	r->op_arg = NULL;
	r->op_queued = false;
	json_decref(r->progress);	/* the backend's job is gone */
	r->progress = NULL;
	/* Whoever waits for an operation hears that it will not end. */
	if (cb != NULL)
		cb(arg, -ECANCELED, "the cluster's backend was detached");
}

void
reconciler_free(struct reconciler *r)
{
	int	 i;

	if (r == NULL)
		return;
	reconciler_detach(r);
	if (r->timer != NULL)
		event_free(r->timer);
	if (r->status_ev != NULL)
		event_free(r->status_ev);
	spec_free(r->spec);
	plan_free(&r->plan);
	observed_free(r->obs);
	diags_free(&r->spec_errors);
	for (i = 0; i < COND__COUNT; i++) {
		free(r->cond[i].reason);
		free(r->cond[i].message);
	}
	free(r->message);
	free(r->last_error);
	free(r->op_what);
	free(r->op_next_name);
	free(r->op_next_shard);
	json_decref(r->last_op);
	json_decref(r->progress);
	log_cluster_forget(r->name);
	free(r->held);
	free(r->name);
	free(r);
}

const char *
reconciler_name(const struct reconciler *r)
{
	return r->name;
}

const char *
reconciler_message(const struct reconciler *r)
{
	return r->message;
}

enum phase
reconciler_phase(const struct reconciler *r)
{
	return r->phase;
}

/* The spec's generation is not (yet) the one last observed in sync. */
bool
reconciler_generation_lag(const struct reconciler *r)
{
	return r->observed_generation == 0 ||
	    r->observed_generation != r->generation;
}

size_t
reconciler_spec_error_count(const struct reconciler *r)
{
	return r->spec_errors.n;
}

json_t *
reconciler_endpoints(const struct reconciler *r)
{
	return r->obs != NULL ? r->obs->endpoints : NULL;
}

void
reconciler_set_progress(struct reconciler *r, json_t *progress)
{
	json_decref(r->progress);
	r->progress = json_incref(progress);
	reconciler_write_status(r);
	if (r->env->on_change != NULL)
		r->env->on_change(r->env->arg);
}

json_t *
reconciler_progress(const struct reconciler *r)
{
	if (r->progress != NULL)
		return r->progress;
	return json_object_get(reconciler_endpoints(r), "progress");
}

const struct cluster_spec *
reconciler_spec(const struct reconciler *r)
{
	return r->spec;
}

uint64_t
reconciler_generation(const struct reconciler *r)
{
	return r->generation;
}

uint64_t
reconciler_spec_updates(const struct reconciler *r)
{
	return r->spec_updates;
}

bool
reconciler_in_sync(const struct reconciler *r)
{
	return r->spec != NULL && r->observed_generation == r->generation &&
	    (r->phase == PHASE_AVAILABLE || r->phase == PHASE_RETAINED);
}

/* Set a condition; returns true when it changed. */
static bool
cond_set(struct reconciler *r, enum cond_type t, bool status,
    const char *reason, const char *message)
{
	struct condition	*c = &r->cond[t];

	if (c->set && c->status == status && c->reason &&
	    strcmp(c->reason, reason) == 0 && c->message && message &&
	    strcmp(c->message, message) == 0)
		return false;
	if (!c->set || c->status != status)
		c->since = clock_wall_s();
	c->set = true;
	c->status = status;
	free(c->reason);
	free(c->message);
	c->reason = xstrdup(reason);
	c->message = xstrdup(message ? message : "");
	return true;
}

/* Update phase and message; log transitions, tell the daemon. */
static void
set_phase(struct reconciler *r, enum phase p, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void
set_phase(struct reconciler *r, enum phase p, const char *fmt, ...)
{
	va_list	 ap;
	char	*msg = NULL;
	bool	 changed;

	if (fmt != NULL) {
		va_start(ap, fmt);
		xvasprintf(&msg, fmt, ap);
		va_end(ap);
	}
	/* A deletion held by the guard shows as that, whatever else. */
	if (r->held != NULL && p != PHASE_SPEC_ERROR) {
		p = PHASE_RETAINED;
		free(msg);
		msg = xstrdup(r->held);
	}
	changed = r->phase != p;
	if (changed)
		log_cluster(LOG_LEVEL_INFO, r->name, "%s -> %s%s%s",
		    phase_names[r->phase], phase_names[p], msg ? ": " : "",
		    msg ? msg : "");
	else if ((msg == NULL) != (r->message == NULL) ||
	    (msg && strcmp(msg, r->message) != 0))
		log_cluster(LOG_LEVEL_DEBUG, r->name, "%s: %s",
		    phase_names[p], msg ? msg : "");
	r->phase = p;
	free(r->message);
	r->message = msg;
	if (changed && r->env->on_change)
		r->env->on_change(r->env->arg);
}

/* The phase to show: a spec error wins over what the cluster does. */
static enum phase
shown_phase(const struct reconciler *r, enum phase p)
{
	return r->spec_errors.n > 0 ? PHASE_SPEC_ERROR : p;
}

static void
schedule(struct reconciler *r, uint64_t delay_ms)
{
	struct timeval	 tv;

	if (r->kick_pending) {
		r->kick_pending = false;
		delay_ms = 0;
	}
	tv.tv_sec = (time_t)(delay_ms / 1000);
	tv.tv_usec = (suseconds_t)((delay_ms % 1000) * 1000);
	r->next_at_ms = clock_mono_ms() + delay_ms;
	evtimer_add(r->timer, &tv);
}

void
reconciler_kick(struct reconciler *r, uint64_t delay_ms)
{
	uint64_t	 at = clock_mono_ms() + delay_ms;

	if (r->inflight != INFLIGHT_NONE) {
		/* Requeues itself when the call returns: make that now. */
		if (delay_ms == 0)
			r->kick_pending = true;
		return;
	}
	if (evtimer_pending(r->timer, NULL) && r->next_at_ms <= at)
		return;
	schedule(r, delay_ms);
}

/* Jittered exponential backoff: half fixed, half random. */
static uint64_t
backoff_ms(struct reconciler *r)
{
	uint64_t	 d = BACKOFF_BASE_MS;
	unsigned int	 i;

	for (i = 1; i < r->failures && d < BACKOFF_CAP_MS; i++)
		d *= 2;
	if (d > BACKOFF_CAP_MS)
		d = BACKOFF_CAP_MS;
	return d / 2 + (uint64_t)random() % (d / 2 + 1);
}

static void
fail(struct reconciler *r, int error, const char *what, const char *message)
{
	char		*e;
	uint64_t	 delay;
	bool		 repeat;

	xasprintf(&e, "%s: %s", what, message ? message : strerror(-error));
	repeat = r->last_error != NULL && strcmp(r->last_error, e) == 0;
	if (error == -ENOTRECOVERABLE) {
		/* The backend refuses this spec for good: no retries until
		 * the spec changes; look again at the resync. */
		log_cluster(repeat ? LOG_LEVEL_DEBUG : LOG_LEVEL_ERROR,
		    r->name, "%s; not retried until the spec changes", e);
		free(r->last_error);
		r->last_error = e;
		r->observed_generation = r->generation;
		set_phase(r, shown_phase(r, PHASE_FAILED), "%s", e);
		cond_set(r, COND_READY, false, "TerminalError", e);
		reconciler_write_status(r);
		schedule(r, r->env->resync_ms);
		return;
	}
	r->failures++;
	delay = backoff_ms(r);
	/* A repeating error is logged at warning only when it changes. */
	log_cluster(repeat ? LOG_LEVEL_DEBUG : LOG_LEVEL_WARNING, r->name,
	    "%s, will retry in %llums", e, (unsigned long long)delay);
	free(r->last_error);
	r->last_error = e;
	cond_set(r, COND_READY, false, "BackendError", e);
	reconciler_write_status(r);
	schedule(r, delay);
}

static void	apply_done(void *, int, const char *);
static void	operate_start(struct reconciler *);

static enum phase
phase_of_obs(const struct observed *o)
{
	switch (o->state) {
	case OBS_ABSENT:
		return PHASE_PENDING;
	case OBS_CREATING:
		return PHASE_CREATING;
	case OBS_AVAILABLE:
		return PHASE_AVAILABLE;
	case OBS_MODIFYING:
		return PHASE_MODIFYING;
	case OBS_DEGRADED:
		return PHASE_DEGRADED;
	case OBS_DELETING:
		return PHASE_DELETING;
	case OBS_FAILED:
		return PHASE_FAILED;
	}
	return PHASE_PENDING;
}

static void
retire_cb(evutil_socket_t fd, short ev, void *arg)
{
	struct reconciler	*r = arg;

	r->env->on_retire(r->env->arg, r->name);
}

/* Nothing to do now: settle the phase and requeue at the resync. */
static void
settle(struct reconciler *r)
{
	const struct observed	*o = r->obs;
	size_t			 i, deferred = 0, replace = 0;

	for (i = 0; i < r->plan.n; i++) {
		if (r->plan.steps[i].kind == STEP_REPLACE)
			replace++;
		else if (r->plan.steps[i].deferred)
			deferred++;
	}
	if (r->deleted && (o == NULL || o->state == OBS_ABSENT) &&
	    r->spec->deletion_policy == DELETION_DELETE) {
		log_cluster(LOG_LEVEL_NOTICE, r->name, "deleted");
		r->retiring = true;
		event_base_once(r->env->base, -1, EV_TIMEOUT, retire_cb, r,
		    NULL);
		return;
	}
	r->observed_generation = r->generation;
	r->failures = 0;
	if (r->deleted)
		set_phase(r, shown_phase(r, PHASE_RETAINED), "spec removed; "
		    "deletion_policy retain leaves the cluster running");
	else if (replace > 0)
		set_phase(r, shown_phase(r, phase_of_obs(o)), "some changes "
		    "need a new cluster and are not applied (see plan)");
	else if (deferred > 0)
		set_phase(r, shown_phase(r, phase_of_obs(o)), "changes wait "
		    "for the maintenance window");
	else
		set_phase(r, shown_phase(r, phase_of_obs(o)), "%s",
		    o && o->message ? o->message : "in sync");
	cond_set(r, COND_SYNCED, replace + deferred == 0, replace ?
	    "NeedsReplacement" : deferred ? "PendingMaintenance" : "InSync",
	    NULL);
	cond_set(r, COND_READY, o != NULL && (o->state == OBS_AVAILABLE ||
	    o->state == OBS_DEGRADED), o == NULL ? "Unknown" :
	    o->state == OBS_AVAILABLE ? "Available" : o->state ==
	    OBS_DEGRADED ? "Degraded" : o->state == OBS_FAILED ? "Failed" :
	    "NotReady", NULL);
	reconciler_write_status(r);
	schedule(r, r->env->resync_ms);
}

static enum phase
phase_of_step(const struct plan_step *s)
{
	switch (s->kind) {
	case STEP_CREATE:
		return PHASE_CREATING;
	case STEP_DELETE:
		return PHASE_DELETING;
	default:
		return PHASE_MODIFYING;
	}
}

static void
observe_done(void *arg, int error, const char *message, struct observed *obs)
{
	struct reconciler	*r = arg;
	const struct plan_step	*step;
	struct strbuf		 sb;

	r->inflight = INFLIGHT_NONE;
	stats_call(r, 0, error == 0);
	if (r->op_queued) {
		/* An operator's operation came in meanwhile: it goes first;
		 * the cluster is looked at again when it is done. */
		if (error == 0) {
			observed_free(r->obs);
			r->obs = obs;
		} else
			observed_free(obs);
		stats_cycle(r);
		operate_start(r);
		return;
	}
	if (error != 0) {
		observed_free(obs);
		stats_cycle(r);
		fail(r, error, "observe failed", message);
		return;
	}
	observed_free(r->obs);
	r->obs = obs;
	plan_free(&r->plan);
	plan_compute(r->spec, obs, r->deleted, clock_wall_s(), &r->plan);
	if (r->plan.wait != NULL) {
		set_phase(r, shown_phase(r, phase_of_obs(obs)), "%s",
		    r->plan.wait);
		reconciler_write_status(r);
		schedule(r, r->backend->poll_ms ? r->backend->poll_ms :
		    WAIT_POLL_MS);
		return;
	}
	if ((step = plan_next(&r->plan)) == NULL) {
		stats_cycle(r);
		settle(r);
		return;
	}
	r->step_kind = (int)step->kind;
	log_cluster_context(r->name, r->backend->name,
	    step_kind_name(step->kind));
	strbuf_init(&sb);
	plan_format(&r->plan, &sb);
	log_cluster(LOG_LEVEL_DEBUG, r->name, "plan:\n%s", sb.s);
	strbuf_free(&sb);
	set_phase(r, shown_phase(r, phase_of_step(step)), "%s",
	    step_kind_name(step->kind));
	cond_set(r, COND_SYNCED, false, "Progressing", step_kind_name(
	    step->kind));
	reconciler_write_status(r);
	r->inflight = INFLIGHT_APPLY;
	r->backend->apply(r->handle, r->spec, step, apply_done, r);
}

static void
apply_done(void *arg, int error, const char *message)
{
	struct reconciler	*r = arg;

	r->inflight = INFLIGHT_NONE;
	stats_call(r, 1 + r->step_kind, error == 0);
	stats_cycle(r);
	log_cluster_context(r->name, NULL, NULL);
	if (error != 0) {
		fail(r, error, "step failed", message);
		return;
	}
	r->failures = 0;
	free(r->last_error);
	r->last_error = NULL;
	schedule(r, 0);		/* observe the result at once */
}

/* Attach to the spec's backend, re-attaching when the backend changed. */
static bool
ensure_backend(struct reconciler *r)
{
	const struct backend	*b = backend_find(r->spec->backend);

	if (b != r->backend)
		reconciler_detach(r);
	if (b == NULL || !b->available) {
		if (r->message == NULL || r->phase != PHASE_PENDING)
			log_cluster(LOG_LEVEL_NOTICE, r->name, "%s", b ?
			    b->unavailable_reason : "unknown backend");
		set_phase(r, shown_phase(r, PHASE_PENDING), "%s", b ?
		    b->unavailable_reason : "unknown backend");
		cond_set(r, COND_READY, false, "BackendUnavailable",
		    r->message);
		reconciler_write_status(r);
		return false;
	}
	if (r->handle == NULL) {
		r->backend = b;
		r->handle = b->attach(&r->env->benv, r->name);
		if (r->handle == NULL) {
			r->backend = NULL;
			fail(r, -EIO, "attach failed", "backend refused the "
			    "cluster");
			return false;
		}
	}
	return true;
}

static void
reconciler_run(evutil_socket_t fd, short ev, void *arg)
{
	struct reconciler	*r = arg;

	if (r->inflight != INFLIGHT_NONE || r->retiring)
		return;
	if (r->spec == NULL) {
		set_phase(r, PHASE_SPEC_ERROR, "no valid spec yet");
		reconciler_write_status(r);
		return;
	}
	if (!ensure_backend(r)) {
		schedule(r, r->env->resync_ms);
		return;
	}
	r->inflight = INFLIGHT_OBSERVE;
	r->cycle_ms = clock_mono_ms();
	log_cluster_context(r->name, r->backend->name, NULL);
	r->backend->observe(r->handle, r->spec, observe_done, r);
}

const struct observed *
reconciler_observed(const struct reconciler *r)
{
	return r->obs;
}

static void	operate_done(void *, int, const char *);

static void
operate_start(struct reconciler *r)
{
	r->op_queued = false;
	r->inflight = INFLIGHT_OPERATE;
	r->backend->operate(r->handle, r->spec, &r->op_next, operate_done, r);
}

static void
operate_done(void *arg, int error, const char *message)
{
	struct reconciler	*r = arg;
	backend_op_cb		 cb = r->op_cb;
	void			*cbarg = r->op_arg;
	char			 ts[40];

	r->inflight = INFLIGHT_NONE;
	r->op_cb = NULL;
	r->op_arg = NULL;
	stats_call(r, 10, error == 0);
	format_rfc3339(clock_wall_s(), ts, sizeof ts);
	json_decref(r->last_op);
	r->last_op = json_pack("{s:s, s:s, s:s, s:s?}", "operation",
	    r->op_what ? r->op_what : "?", "finished_at", ts, "result",
	    error == 0 ? "ok" : "failed", "message", message);
	log_cluster(error == 0 ? LOG_LEVEL_NOTICE : LOG_LEVEL_WARNING,
	    r->name, "%s %s%s%s", r->op_what ? r->op_what : "operation",
	    error == 0 ? "done" : "failed", message ? ": " : "",
	    message ? message : "");
	reconciler_write_status(r);
	if (cb != NULL)
		cb(cbarg, error, message);
	/* Look at the cluster again: the operation changed it. */
	r->kick_pending = false;
	schedule(r, 0);
}

int
reconciler_operate(struct reconciler *r, const struct backend_op *op,
    backend_op_cb cb, void *arg, char **cause)
{
	if (r->spec == NULL || r->retiring) {
		xasprintf(cause, "cluster %s has no valid spec", r->name);
		return -ENOENT;
	}
	if (!ensure_backend(r)) {
		xasprintf(cause, "cluster %s: %s", r->name, r->message ?
		    r->message : "backend unavailable");
		return -ENOENT;
	}
	if (r->backend->operate == NULL) {
		xasprintf(cause, "the %s backend cannot do that",
		    r->backend->name);
		return -ENOTSUP;
	}
	if (r->inflight == INFLIGHT_APPLY || r->inflight == INFLIGHT_OPERATE ||
	    r->op_queued) {
		xasprintf(cause, "cluster %s is busy (%s in flight); try again "
		    "in a moment", r->name, r->inflight == INFLIGHT_APPLY ?
		    "a step" : "an operation");
		return -EBUSY;
	}
	free(r->op_next_name);
	free(r->op_next_shard);
	r->op_next = *op;
	r->op_next_name = op->name ? xstrdup(op->name) : NULL;
	r->op_next_shard = op->shard ? xstrdup(op->shard) : NULL;
	r->op_next.name = r->op_next_name;
	r->op_next.shard = r->op_next_shard;
	r->op_queued = true;
	r->op_cb = cb;
	r->op_arg = arg;
	free(r->op_what);
	if (op->kind == BACKEND_OP_SNAPSHOT)
		xasprintf(&r->op_what, "snapshot%s%s", op->name ? " " : "",
		    op->name ? op->name : "");
	else
		xasprintf(&r->op_what, "failover%s%s", op->shard ?
		    " of shard " : "", op->shard ? op->shard : "");
	log_cluster(LOG_LEVEL_NOTICE, r->name, "%s requested", r->op_what);
	/* During an observation it waits for its end (observe_done). */
	if (r->inflight == INFLIGHT_NONE)
		operate_start(r);
	return 0;
}

void
reconciler_operate_cancel(struct reconciler *r, void *arg)
{
	if (r->op_arg == arg) {
		r->op_cb = NULL;
		r->op_arg = NULL;
	}
}

void
reconciler_set_spec(struct reconciler *r, struct cluster_spec *spec,
    const struct diags *errors)
{
	bool	 had_errors = r->spec_errors.n > 0, changed = false;
	char	*msg;

	diags_clear(&r->spec_errors);
	if (errors != NULL)
		diags_append(&r->spec_errors, errors);
	if (spec != NULL && (r->spec == NULL ||
	    spec->generation != r->spec->generation ||
	    strcmp(spec->file, r->spec->file) != 0)) {
		if (r->spec == NULL || spec->generation != r->spec->generation)
			changed = true;
		spec_hold(spec);
		spec_free(r->spec);
		r->spec = spec;
		r->generation = spec->generation;
		r->spec_updates++;
	}
	if (r->spec_errors.n > 0) {
		msg = diag_format(&r->spec_errors.v[0]);
		if (!had_errors)
			log_cluster(LOG_LEVEL_WARNING, r->name, "spec error, "
			    "%s: %s", r->spec ? "keeping the last good spec" :
			    "nothing to apply", msg);
		cond_set(r, COND_SPEC_VALID, false, "SpecError", msg);
		free(msg);
		set_phase(r, PHASE_SPEC_ERROR, "%zu error%s in spec",
		    r->spec_errors.n, r->spec_errors.n == 1 ? "" : "s");
		reconciler_write_status(r);
	} else {
		if (had_errors)
			log_cluster(LOG_LEVEL_INFO, r->name, "spec valid again");
		cond_set(r, COND_SPEC_VALID, true, "Valid", NULL);
		if (had_errors && r->phase == PHASE_SPEC_ERROR) {
			/* Show the cluster's own state again. */
			set_phase(r, r->obs ? phase_of_obs(r->obs) :
			    PHASE_PENDING, "spec valid again");
			reconciler_write_status(r);
		}
	}
	if (changed) {
		log_cluster(LOG_LEVEL_DEBUG, r->name, "spec generation %016llx",
		    (unsigned long long)r->generation);
		reconciler_kick(r, 0);
	} else if (had_errors != (r->spec_errors.n > 0))
		reconciler_kick(r, 0);
}

void
reconciler_set_deleted(struct reconciler *r, bool deleted, const char *why)
{
	if (r->deleted == deleted)
		return;
	r->deleted = deleted;
	if (deleted) {
		diags_clear(&r->spec_errors);
		cond_set(r, COND_SPEC_VALID, true, "Removed", why);
		log_cluster(LOG_LEVEL_WARNING, r->name, "spec removed (%s); "
		    "deletion_policy %s", why, r->spec == NULL ? "unknown" :
		    r->spec->deletion_policy == DELETION_DELETE ? "delete" :
		    "retain: the cluster keeps running");
	} else
		log_cluster(LOG_LEVEL_INFO, r->name, "spec is back");
	reconciler_kick(r, 0);
}

bool
reconciler_deleted(const struct reconciler *r)
{
	return r->deleted;
}

const char *
reconciler_held(const struct reconciler *r)
{
	return r->held;
}

void
reconciler_hold_deletion(struct reconciler *r, const char *why)
{
	if (why == NULL) {
		if (r->held == NULL)
			return;
		free(r->held);
		r->held = NULL;
		log_cluster(LOG_LEVEL_INFO, r->name, "deletion no longer held");
		reconciler_kick(r, 0);
		return;
	}
	if (r->held != NULL && strcmp(r->held, why) == 0)
		return;
	if (r->held == NULL)
		log_cluster(LOG_LEVEL_WARNING, r->name, "%s", why);
	free(r->held);
	r->held = xstrdup(why);
	set_phase(r, shown_phase(r, PHASE_RETAINED), NULL);
	cond_set(r, COND_SPEC_VALID, false, "DeletionHeld", why);
	reconciler_write_status(r);
}

void
reconciler_mark_orphan(struct reconciler *r, const char *why)
{
	log_cluster(LOG_LEVEL_WARNING, r->name, "%s", why);
	set_phase(r, PHASE_RETAINED, "%s", why);
	cond_set(r, COND_SPEC_VALID, false, "SpecMissing", why);
	reconciler_write_status(r);
}

json_t *
reconciler_status_json(const struct reconciler *r)
{
	json_t	*j, *conds, *errs;
	char	 ts[40], gen[20];
	size_t	 i;

	conds = json_array();
	for (i = 0; i < COND__COUNT; i++) {
		const struct condition *c = &r->cond[i];
		if (!c->set)
			continue;
		format_rfc3339(c->since, ts, sizeof ts);
		json_array_append_new(conds, json_pack("{s:s, s:s, s:s, s:s, "
		    "s:s}", "type", cond_names[i], "status", c->status ?
		    "True" : "False", "reason", c->reason, "message",
		    c->message, "since", ts));
	}
	errs = json_array();
	for (i = 0; i < r->spec_errors.n; i++) {
		char *s = diag_format(&r->spec_errors.v[i]);
		json_array_append_new(errs, json_string(s));
		free(s);
	}
	snprintf(gen, sizeof gen, "%016llx", (unsigned long long)r->generation);
	format_rfc3339(r->updated_at, ts, sizeof ts);
	j = json_object();
	json_object_set_new(j, "name", json_string(r->name));
	json_object_set_new(j, "backend", r->spec ?
	    json_string(r->spec->backend) : json_null());
	json_object_set_new(j, "phase", json_string(phase_names[r->phase]));
	json_object_set_new(j, "message", r->message ?
	    json_string(r->message) : json_null());
	json_object_set_new(j, "generation", json_string(gen));
	snprintf(gen, sizeof gen, "%016llx",
	    (unsigned long long)r->observed_generation);
	json_object_set_new(j, "observed_generation", r->observed_generation ?
	    json_string(gen) : json_null());
	json_object_set_new(j, "spec_file", r->spec ?
	    json_string(r->spec->file) : json_null());
	json_object_set_new(j, "deletion_policy", r->spec ? json_string(
	    r->spec->deletion_policy == DELETION_DELETE ? "delete" :
	    "retain") : json_null());
	json_object_set_new(j, "deleted", json_boolean(r->deleted));
	if (r->held != NULL)
		json_object_set_new(j, "deletion_held", json_string(r->held));
	json_object_set_new(j, "conditions", conds);
	json_object_set_new(j, "spec_errors", errs);
	json_object_set_new(j, "endpoints", r->obs && r->obs->endpoints ?
	    json_incref(r->obs->endpoints) : json_object());
	/* The backend's backup summary, where the CLI and metrics read it. */
	if (r->obs && json_object_get(r->obs->endpoints, "backups") != NULL)
		json_object_set(j, "backups", json_object_get(
		    r->obs->endpoints, "backups"));
	json_object_set_new(j, "plan", plan_to_json(&r->plan));
	json_object_set_new(j, "last_error", r->last_error ?
	    json_string(r->last_error) : json_null());
	if (r->last_op != NULL)
		json_object_set(j, "last_operation", r->last_op);
	if (r->inflight == INFLIGHT_OPERATE && r->op_what != NULL)
		json_object_set_new(j, "operation", json_string(r->op_what));
	if (reconciler_progress(r) != NULL)
		json_object_set(j, "progress", reconciler_progress(r));
	json_object_set_new(j, "updated_at", json_string(ts));
	return j;
}

static void
status_retry(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	reconciler_write_status(arg);
}

/*
 * Write the cluster's status file. A write that fails (a full or read-only
 * disk) is tried again after 1 s, doubling up to 8 s, until it works, so
 * the file does not stay stale until the next change; it is logged at
 * warning level once per cause, and once more when it works again.
 */
static void
reconciler_write_status(struct reconciler *r)
{
	json_t		*j;
	char		*txt, *path;
	int		 e;
	unsigned int	 k;
	struct timeval	 tv;

	if (r->env->status_dir == NULL)
		return;
	/* A long operation's progress shows in the daemon's summary. */
	if ((r->phase == PHASE_CREATING || r->phase == PHASE_MODIFYING ||
	    r->phase == PHASE_DELETING) && r->env->on_change != NULL)
		r->env->on_change(r->env->arg);
	r->updated_at = clock_wall_s();
	j = reconciler_status_json(r);
	txt = json_dumps(j, JSON_INDENT(2) | JSON_SORT_KEYS);
	json_decref(j);
	xasprintf(&path, "%s/%s.json", r->env->status_dir, r->name);
	e = file_write_atomic(path, txt, strlen(txt), 0644, false);
	if (e == 0 && r->status_errno != 0) {
		log_cluster(LOG_LEVEL_INFO, r->name, "wrote %s again after %u "
		    "failed attempts", path, r->status_failures);
		r->status_errno = 0;
		r->status_failures = 0;
		if (r->status_ev != NULL)
			evtimer_del(r->status_ev);
	} else if (e != 0) {
		if (-e != r->status_errno)
			log_cluster(LOG_LEVEL_WARNING, r->name, "cannot write "
			    "%s: %s (retried until it works)", path,
			    strerror(-e));
		else
			log_cluster(LOG_LEVEL_DEBUG, r->name, "cannot write "
			    "%s: %s (attempt %u)", path, strerror(-e),
			    r->status_failures + 1);
		r->status_errno = -e;
		k = r->status_failures < 3 ? r->status_failures : 3;
		r->status_failures++;
		if (r->status_ev == NULL)
			r->status_ev = evtimer_new(r->env->base, status_retry,
			    r);
		tv.tv_sec = 1 << k;
		tv.tv_usec = 0;
		evtimer_add(r->status_ev, &tv);
	}
	free(path);
	free(txt);
}

/* Remove the status file of a cluster that is gone. */
void
reconciler_remove_status(struct ctl_env *env, const char *name)
{
	char	*path;

	xasprintf(&path, "%s/%s.json", env->status_dir, name);
	unlink(path);
	free(path);
}
