/*
 * The elasticache backend: replication groups on Amazon ElastiCache
 * through the Query API (ecapi.c).
 *
 * Observing: groups in a steady state are served by one paginated
 * DescribeReplicationGroups (MaxRecords 100) shared by every cluster of
 * the daemon, at most once per half resync interval; a group that is busy
 * or that we just changed is described on its own. What only member
 * clusters report (engine version, maintenance window, parameter group,
 * pending node type or version) comes from DescribeCacheClusters of one
 * member, cached while the group stays available, and new events from
 * DescribeEvents.
 *
 * Acting: one mutating call per group at a time, only after the group,
 * every node group and every member cluster say "available" and the member
 * count matches the node groups (a group can say available while a member
 * is still being created). "No modifications were requested" is success;
 * ReplicationGroupAlreadyExists on create adopts the group; terminal codes
 * stop until the spec changes, as does a modification AWS reverted.
 */
#include "config.h"

#include <ctype.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <event2/event.h>
#include <jansson.h>
#include <openssl/evp.h>

#include "backend.h"
#include "dconf.h"
#include "ecapi.h"
#include "ecxml.h"
#include "elasticache.h"
#include "htab.h"
#include "log.h"
#include "plan.h"
#include "spec.h"
#include "util.h"

#define FLEET_PAGE		"100"	/* MaxRecords */
#define FLEET_BATCH		8	/* busy groups worth a fleet listing */
#define MEMBER_TTL_MS		3600000	/* member details, while steady */
#define EVENTS_KEPT		20
#define TOKEN_MAX		128
#define DRILLS_PER_DAY		15	/* AWS: node groups per rolling 24 h */
#define DRILL_RESULTS		10

struct ec_ctx {
	struct event_base	*base;
	const struct dconf	*conf;
	const struct backend_env *env;
	struct ecapi		*api;
	int			 refs;

	/* The shared fleet view: name -> struct ec_rg *. */
	struct htab		*fleet;
	uint64_t		 fleet_at_ms;	/* 0: never */
	bool			 fleet_busy;
	char			*fleet_marker;
	struct htab		*fleet_next;	/* being read */
	struct ecapi_call	*fleet_call;
	struct eccl		**waiters;
	size_t			 nwaiters;
	size_t			 ndirty;	/* clusters being watched closely */

	/* When this daemon's drills called TestFailover (UTC seconds). */
	int64_t			 drill_times[4 * DRILLS_PER_DAY];
	size_t			 ndrill_times;
};

enum op {
	OP_NONE,
	OP_OBSERVE,
	OP_APPLY,
};

struct eccl {
	struct ec_ctx		*ctx;
	char			*name;
	struct event		*done_ev;
	enum op			 op;
	struct ecapi_call	*call;
	backend_observe_cb	 ocb;
	backend_done_cb		 dcb;
	void			*cbarg;
	struct cluster_spec	*spec;
	const struct plan_step	*step;
	bool			 waiting_fleet;

	/* The result being built. */
	struct ec_rg		 rg;
	bool			 have_rg;
	int			 done_error;
	char			*done_msg;
	struct observed		*obs;

	/* What we remember. */
	bool			 dirty;		/* changed by us: look closely */
	uint64_t		 dirty_at_ms;
	char			*engine_version;	/* from a member */
	char			*maintenance_window;
	char			*param_group;
	char			*subnet_group;
	char			*topic_arn;
	struct strlist		 security_groups;
	bool			 have_tags;
	struct kvlist		 tags;
	struct kvlist		 member_pending;
	uint64_t		 member_at_ms;	/* details valid until; 0: none */
	size_t			 gate_next;	/* member being checked */
	char			*events_since;	/* ISO 8601 */
	json_t			*events;	/* last EVENTS_KEPT */
	struct kvlist		 requested;	/* field -> value, this gen */
	struct kvlist		 tagp;		/* AddTagsToResource first */
	struct kvlist		 modp;		/* then this modification */
	int			 auth_step;	/* 1 ROTATE, 2 SET in flight */
	uint64_t		 requested_gen;
	uint64_t		 terminal_gen;
	char			*terminal_msg;

	/* Failover drills (spec.failover_drill), kept in STATE_DIR. */
	int64_t			 drill_occ;	/* window start, epoch min */
	struct strlist		 drill_done;	/* node groups drilled */
	char			*drill_running;	/* node group, or NULL */
	int64_t			 drill_started_s;
	int64_t			 drill_ev_start_ms;	/* from events */
	int64_t			 drill_ev_ms;	/* measured by events */
	int64_t			 drills[DRILLS_PER_DAY];	/* start times */
	json_t			*drill_results;	/* last DRILL_RESULTS */
	char			*drill_paused;	/* why no drill runs now */

	/* An operator's operation in flight. */
	struct backend_op	 uop;
	backend_op_cb		 op_cb;
	void			*op_arg;
	char			*op_name;
	char			*op_shard;

	/* AUTH token digests: what AWS has, and what a ROTATE added. */
	char			*auth_sha;
	char			*auth_rotating;
	char			*auth_file_sha;	/* the file now (observe) */
};

static struct ec_ctx	*shared;
static void		 observe_rg(struct eccl *);
static int		 shared_drills_today(void);
static void		 set_dirty(struct eccl *, bool);
static void		 shared_drill_add(int64_t);
static void		 drill_load(struct eccl *);
static int		 read_token(const char *, char **, char **);
static void		 wipe_params(struct kvlist *);
static void		 fleet_start(struct ec_ctx *);

/* --- small helpers ----------------------------------------------------- */

static void
kv_addf(struct kvlist *kv, const char *key, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void
kv_addf(struct kvlist *kv, const char *key, const char *fmt, ...)
{
	va_list	 ap;
	char	*v;

	va_start(ap, fmt);
	xvasprintf(&v, fmt, ap);
	va_end(ap);
	kvlist_add(kv, key, v);
	free(v);
}

static void
rg_free(void *p)
{
	ec_rg_free(p);
	free(p);
}

static void
fleet_free(struct htab *h)
{
	size_t		 pos = 0;
	const char	*k;
	void		*v;

	if (h == NULL)
		return;
	while (htab_next(h, &pos, &k, &v))
		rg_free(v);
	htab_free(h);
}

/* Deep copy of a group, through its XML-free fields. */
static void
rg_copy(struct ec_rg *dst, const struct ec_rg *src)
{
	size_t	 i, k;

#define DUP(f)	dst->f = src->f ? xstrdup(src->f) : NULL
	memset(dst, 0, sizeof *dst);
	DUP(id); DUP(description); DUP(status); DUP(automatic_failover);
	DUP(multi_az); DUP(node_type); DUP(snapshot_window); DUP(kms_key_id);
	DUP(arn); DUP(config_address);
	dst->config_port = src->config_port;
	dst->snapshot_retention_limit = src->snapshot_retention_limit;
	dst->cluster_enabled = src->cluster_enabled;
	dst->auth_token_enabled = src->auth_token_enabled;
	dst->transit_encryption = src->transit_encryption;
	dst->at_rest_encryption = src->at_rest_encryption;
	for (i = 0; i < src->member_clusters.n; i++)
		strlist_add(&dst->member_clusters, src->member_clusters.v[i]);
	for (i = 0; i < src->pending.n; i++)
		kvlist_add(&dst->pending, src->pending.keys[i],
		    src->pending.values[i]);
	dst->ngroups = src->ngroups;
	dst->groups = xcalloc(src->ngroups ? src->ngroups : 1,
	    sizeof *dst->groups);
	for (i = 0; i < src->ngroups; i++) {
		const struct ec_node_group *s = &src->groups[i];
		struct ec_node_group *d = &dst->groups[i];
		d->id = s->id ? xstrdup(s->id) : NULL;
		d->status = s->status ? xstrdup(s->status) : NULL;
		d->slots = s->slots ? xstrdup(s->slots) : NULL;
		d->primary_address = s->primary_address ?
		    xstrdup(s->primary_address) : NULL;
		d->primary_port = s->primary_port;
		d->nmembers = s->nmembers;
		d->members = xcalloc(s->nmembers ? s->nmembers : 1,
		    sizeof *d->members);
		for (k = 0; k < s->nmembers; k++) {
			const struct ec_member *sm = &s->members[k];
			struct ec_member *dm = &d->members[k];
			dm->cluster_id = sm->cluster_id ?
			    xstrdup(sm->cluster_id) : NULL;
			dm->node_id = sm->node_id ? xstrdup(sm->node_id) : NULL;
			dm->role = sm->role ? xstrdup(sm->role) : NULL;
			dm->az = sm->az ? xstrdup(sm->az) : NULL;
			dm->address = sm->address ? xstrdup(sm->address) : NULL;
			dm->port = sm->port;
		}
	}
#undef DUP
}

static bool
streq(const char *a, const char *b)
{
	return a != NULL && b != NULL && strcmp(a, b) == 0;
}

/* --- the shared context ------------------------------------------------ */

static struct ec_ctx *
ctx_get(const struct backend_env *env)
{
	if (shared == NULL) {
		shared = xcalloc(1, sizeof *shared);
		shared->base = env->base;
		shared->api = ecapi_new(env->base, env->conf);
		if (shared->api == NULL)
			fatalx("elasticache: cannot initialise libcurl");
	}
	if (shared->conf != env->conf)
		ecapi_set_conf(shared->api, env->conf);
	shared->conf = env->conf;
	shared->env = env;
	shared->refs++;
	return shared;
}

static void
ctx_put(struct ec_ctx *c)
{
	if (--c->refs > 0)
		return;
	ecapi_cancel(c->fleet_call);
	fleet_free(c->fleet);
	fleet_free(c->fleet_next);
	free(c->fleet_marker);
	free(c->waiters);
	ecapi_free(c->api);
	free(c);
	shared = NULL;
}

static void
shared_drill_add(int64_t t)
{
	struct ec_ctx	*c = shared;
	size_t		 i;

	if (c == NULL || t == 0)
		return;
	for (i = 0; i < c->ndrill_times; i++)
		if (c->drill_times[i] == t)
			return;
	if (c->ndrill_times == nitems(c->drill_times)) {
		memmove(c->drill_times, c->drill_times + 1,
		    (c->ndrill_times - 1) * sizeof *c->drill_times);
		c->ndrill_times--;
	}
	c->drill_times[c->ndrill_times++] = t;
}

static int
shared_drills_today(void)
{
	int64_t	 since = clock_wall_s() - 86400;
	size_t	 i;
	int	 n = 0;

	for (i = 0; shared != NULL && i < shared->ndrill_times; i++)
		if (shared->drill_times[i] > since)
			n++;
	return n;
}

static void
set_dirty(struct eccl *cl, bool dirty)
{
	if (dirty) {
		cl->dirty_at_ms = clock_mono_ms();
		if (!cl->dirty)
			cl->ctx->ndirty++;
	} else if (cl->dirty)
		cl->ctx->ndirty--;
	cl->dirty = dirty;
}

/* --- completing the backend's calls ------------------------------------ */

static void
done_fire(evutil_socket_t fd, short ev, void *arg)
{
	struct eccl		*cl = arg;
	enum op			 op = cl->op;
	struct observed		*obs = cl->obs;
	char			*msg = cl->done_msg;
	int			 err = cl->done_error;

	cl->op = OP_NONE;
	cl->obs = NULL;
	cl->done_msg = NULL;
	spec_free(cl->spec);
	cl->spec = NULL;
	cl->step = NULL;
	if (op == OP_OBSERVE)
		cl->ocb(cl->cbarg, err, msg, obs);
	else if (op == OP_APPLY)
		cl->dcb(cl->cbarg, err, msg);
	else
		observed_free(obs);
	free(msg);
}

/* Finish the current operation on the next loop turn. */
static void
finish(struct eccl *cl, int error, char *msg)
{
	struct timeval	 tv = { 0, 0 };

	cl->call = NULL;
	cl->done_error = error;
	free(cl->done_msg);
	cl->done_msg = msg;
	if (cl->have_rg) {
		ec_rg_free(&cl->rg);
		cl->have_rg = false;
	}
	evtimer_add(cl->done_ev, &tv);
}

static void
finishf(struct eccl *cl, int error, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void
finishf(struct eccl *cl, int error, const char *fmt, ...)
{
	va_list	 ap;
	char	*m;

	va_start(ap, fmt);
	xvasprintf(&m, fmt, ap);
	va_end(ap);
	finish(cl, error, m);
}

/* An API error as the reconciler should see it. */
static int
api_errno(const struct ecapi_result *r)
{
	if (r->err == -EREMOTEIO && r->cls == EC_ERR_TERMINAL)
		return -ENOTRECOVERABLE;
	if (r->err == -EREMOTEIO && r->cls == EC_ERR_WAIT)
		return -EBUSY;
	return r->err != 0 ? r->err : -EIO;
}

/* A call with one parameter, as most of this backend's are. */
static void
call_one(struct eccl *cl, const char *action, const char *key,
    const char *value, ecapi_cb cb)
{
	struct kvlist	 p;

	memset(&p, 0, sizeof p);
	kvlist_add(&p, key, value);
	cl->call = ecapi_call(cl->ctx->api, action, &p, cb, cl);
	kvlist_free(&p);
}

/* --- attach and detach ------------------------------------------------- */

static void *
ec_attach(const struct backend_env *env, const char *name)
{
	struct eccl	*cl = xcalloc(1, sizeof *cl);

	cl->ctx = ctx_get(env);
	cl->name = xstrdup(name);
	cl->done_ev = evtimer_new(env->base, done_fire, cl);
	cl->events = json_array();
	set_dirty(cl, true);	/* the first look is at this group alone */
	drill_load(cl);
	for (size_t i = 0; i < DRILLS_PER_DAY; i++)
		shared_drill_add(cl->drills[i]);
	return cl;
}

static void
fleet_unwait(struct eccl *cl)
{
	struct ec_ctx	*c = cl->ctx;
	size_t		 i;

	for (i = 0; i < c->nwaiters; i++)
		if (c->waiters[i] == cl) {
			memmove(&c->waiters[i], &c->waiters[i + 1],
			    (c->nwaiters - i - 1) * sizeof *c->waiters);
			c->nwaiters--;
			break;
		}
	cl->waiting_fleet = false;
}

static void
ec_detach(void *arg)
{
	struct eccl	*cl = arg;

	if (cl->waiting_fleet)
		fleet_unwait(cl);
	set_dirty(cl, false);
	ecapi_cancel(cl->call);
	event_free(cl->done_ev);
	if (cl->have_rg)
		ec_rg_free(&cl->rg);
	observed_free(cl->obs);
	spec_free(cl->spec);
	free(cl->done_msg);
	free(cl->engine_version);
	free(cl->maintenance_window);
	free(cl->param_group);
	free(cl->subnet_group);
	free(cl->topic_arn);
	strlist_free(&cl->security_groups);
	kvlist_free(&cl->tags);
	kvlist_free(&cl->member_pending);
	free(cl->events_since);
	json_decref(cl->events);
	kvlist_free(&cl->requested);
	kvlist_free(&cl->tagp);
	wipe_params(&cl->modp);
	free(cl->terminal_msg);
	strlist_free(&cl->drill_done);
	free(cl->drill_running);
	free(cl->drill_paused);
	json_decref(cl->drill_results);
	free(cl->auth_sha);
	free(cl->auth_rotating);
	free(cl->auth_file_sha);
	free(cl->op_name);
	free(cl->op_shard);
	free(cl->name);
	ctx_put(cl->ctx);
	free(cl);
}

/* --- observing --------------------------------------------------------- */

static bool
rg_steady(const struct ec_rg *rg)
{
	size_t	 i, members = 0;

	if (!streq(rg->status, "available"))
		return false;
	for (i = 0; i < rg->ngroups; i++) {
		if (rg->groups[i].status != NULL &&
		    !streq(rg->groups[i].status, "available"))
			return false;
		members += rg->groups[i].nmembers;
	}
	return rg->ngroups == 0 || members == rg->member_clusters.n;
}

static enum obs_state
rg_state(const struct ec_rg *rg)
{
	const char	*s = rg->status ? rg->status : "";

	if (strcmp(s, "creating") == 0)
		return OBS_CREATING;
	if (strcmp(s, "deleting") == 0)
		return OBS_DELETING;
	if (strcmp(s, "create-failed") == 0 ||
	    strcmp(s, "incompatible-network") == 0)
		return OBS_FAILED;
	if (strcmp(s, "available") == 0)
		return rg_steady(rg) ? OBS_AVAILABLE : OBS_MODIFYING;
	return OBS_MODIFYING;		/* modifying, snapshotting, ... */
}

/* --- failover drills --------------------------------------------------- */

/* Milliseconds since the epoch of an ISO 8601 time with fractions. */
static int64_t
iso_ms(const char *s)
{
	int64_t		 t = ecapi_parse_iso8601(s), ms = 0;
	const char	*dot;
	int		 k;

	if (t < 0)
		return -1;
	if ((dot = strchr(s, '.')) != NULL)
		for (k = 0, dot++; k < 3; k++)
			ms = ms * 10 + (isdigit((unsigned char)*dot) ?
			    *dot++ - '0' : 0);
	return t * 1000 + ms;
}

static char *
drill_path(struct eccl *cl)
{
	char	*p;

	xasprintf(&p, "%s/elasticache/%s.json", cl->ctx->conf->state_dir,
	    cl->name);
	return p;
}

static void
drill_save(struct eccl *cl)
{
	json_t	*j = json_object(), *done = json_array(), *hist = json_array();
	char	*path = drill_path(cl), *dir, *text;
	size_t	 i;

	for (i = 0; i < cl->drill_done.n; i++)
		json_array_append_new(done, json_string(cl->drill_done.v[i]));
	for (i = 0; i < DRILLS_PER_DAY; i++)
		if (cl->drills[i] != 0)
			json_array_append_new(hist, json_integer(cl->drills[i]));
	json_object_set_new(j, "drill_window_start_min",
	    json_integer(cl->drill_occ));
	json_object_set_new(j, "drilled", done);
	json_object_set_new(j, "drill_times", hist);
	json_object_set(j, "results", cl->drill_results);
	/* Digests only: the token itself stays in its file. */
	if (cl->auth_sha != NULL)
		json_object_set_new(j, "auth_token_sha256",
		    json_string(cl->auth_sha));
	if (cl->auth_rotating != NULL)
		json_object_set_new(j, "auth_token_rotating_sha256",
		    json_string(cl->auth_rotating));
	text = json_dumps(j, JSON_INDENT(2) | JSON_SORT_KEYS);
	dir = xstrdup(path);
	*strrchr(dir, '/') = '\0';
	if (mkdir_p(dir, 0700) != 0 || file_write_atomic(path, text,
	    strlen(text), 0600, 1) != 0)
		log_cluster(LOG_LEVEL_WARNING, cl->name, "cannot save %s",
		    path);
	free(text);
	free(dir);
	free(path);
	json_decref(j);
}

static void
drill_load(struct eccl *cl)
{
	char	*path = drill_path(cl);
	json_t	*j = json_load_file(path, 0, NULL), *v;
	size_t	 i, k = 0;

	free(path);
	cl->drill_results = json_array();
	if (j == NULL)
		return;
	cl->drill_occ = json_integer_value(json_object_get(j,
	    "drill_window_start_min"));
	json_array_foreach(json_object_get(j, "drilled"), i, v)
		if (json_is_string(v))
			strlist_add(&cl->drill_done, json_string_value(v));
	json_array_foreach(json_object_get(j, "drill_times"), i, v)
		if (k < DRILLS_PER_DAY)
			cl->drills[k++] = json_integer_value(v);
	if (json_is_array(json_object_get(j, "results")))
		json_array_extend(cl->drill_results,
		    json_object_get(j, "results"));
	if ((v = json_object_get(j, "auth_token_sha256")) != NULL &&
	    json_is_string(v))
		cl->auth_sha = xstrdup(json_string_value(v));
	if ((v = json_object_get(j, "auth_token_rotating_sha256")) != NULL &&
	    json_is_string(v))
		cl->auth_rotating = xstrdup(json_string_value(v));
	json_decref(j);
}

/* Drills in the last 24 hours, by every cluster of this daemon: AWS's
 * limit is the account's. */
static int
drills_today(struct eccl *cl)
{
	(void)cl;
	return shared_drills_today();
}

static json_t *
drill_json(struct eccl *cl)
{
	char	 w[40];
	json_t	*j, *done = json_array();
	size_t	 i;

	window_format(&cl->spec->failover_drill_window, w, sizeof w);
	for (i = 0; i < cl->drill_done.n; i++)
		json_array_append_new(done, json_string(cl->drill_done.v[i]));
	j = json_pack("{s:s, s:o, s:O, s:i}", "window", w, "drilled", done,
	    "results", cl->drill_results, "in_last_24h", drills_today(cl));
	if (cl->drill_running != NULL)
		json_object_set_new(j, "running", json_string(
		    cl->drill_running));
	if (cl->drill_paused != NULL)
		json_object_set_new(j, "paused", json_string(cl->drill_paused));
	return j;
}

/* Events say when AWS started and finished a failover. */
static void
drill_event(struct eccl *cl, const struct ec_event *e)
{
	if (e->message == NULL || e->date == NULL || cl->drill_running == NULL)
		return;
	if (strncmp(e->message, "Test Failover API called", 24) == 0)
		cl->drill_ev_start_ms = iso_ms(e->date);
	else if (strncmp(e->message, "Failover from primary", 21) == 0 &&
	    strstr(e->message, "completed") != NULL &&
	    cl->drill_ev_start_ms > 0)
		cl->drill_ev_ms = iso_ms(e->date) - cl->drill_ev_start_ms;
}

/* The drill on the running node group is over: the group is available. */
static void
drill_finished(struct eccl *cl, const char *result)
{
	int64_t		 ms = cl->drill_ev_ms > 0 ? cl->drill_ev_ms :
	    (clock_wall_s() - cl->drill_started_s) * 1000;
	char		 when[32];

	format_rfc3339(cl->drill_started_s, when, sizeof when);
	json_array_append_new(cl->drill_results, json_pack("{s:s, s:s, s:f, "
	    "s:s, s:b}", "node_group", cl->drill_running, "started_at", when,
	    "duration_s", (double)ms / 1000.0, "result", result,
	    "duration_from_events", cl->drill_ev_ms > 0));
	while (json_array_size(cl->drill_results) > DRILL_RESULTS)
		json_array_remove(cl->drill_results, 0);
	log_cluster(LOG_LEVEL_NOTICE, cl->name, "failover drill on node "
	    "group %s: %s in %.1f s", cl->drill_running, result,
	    (double)ms / 1000.0);
	strlist_add(&cl->drill_done, cl->drill_running);
	free(cl->drill_running);
	cl->drill_running = NULL;
	cl->drill_ev_ms = cl->drill_ev_start_ms = 0;
	drill_save(cl);
}

static bool
drilled(struct eccl *cl, const char *ng)
{
	size_t	 i;

	for (i = 0; i < cl->drill_done.n; i++)
		if (strcmp(cl->drill_done.v[i], ng) == 0)
			return true;
	return false;
}

/*
 * Whether a drill is due now: inside the window, once per window, one
 * node group at a time, each only once the group is available again.
 */
static const char *
drill_due(struct eccl *cl, const struct ec_rg *rg, enum obs_state st)
{
	const struct window	*w = &cl->spec->failover_drill_window;
	int64_t			 now = clock_wall_s(), mow, occ;
	size_t			 i;

	if (!cl->spec->failover_drill)
		return NULL;
	if (cl->drill_running != NULL) {
		if (st == OBS_AVAILABLE)
			drill_finished(cl, "completed");
		else
			return NULL;
	}
	free(cl->drill_paused);
	cl->drill_paused = NULL;
	if (st != OBS_AVAILABLE || !window_contains(w, now))
		return NULL;
	/* Minutes since Sunday 00:00 UTC (the epoch was a Thursday). */
	mow = (now / 60 + 4 * WINDOW_DAY_MIN) % WINDOW_WEEK_MIN;
	occ = now / 60 - ((mow - w->start + WINDOW_WEEK_MIN) %
	    WINDOW_WEEK_MIN);
	if (occ != cl->drill_occ) {
		strlist_free(&cl->drill_done);
		memset(&cl->drill_done, 0, sizeof cl->drill_done);
		cl->drill_occ = occ;
		drill_save(cl);
	}
	for (i = 0; i < rg->ngroups; i++) {
		const struct ec_node_group *g = &rg->groups[i];
		if (g->id == NULL || drilled(cl, g->id) || g->nmembers < 2)
			continue;
		if (drills_today(cl) >= DRILLS_PER_DAY) {
			xasprintf(&cl->drill_paused, "AWS allows TestFailover "
			    "on %d node groups per rolling 24 hours; the "
			    "drill waits", DRILLS_PER_DAY);
			return NULL;
		}
		return g->id;
	}
	return NULL;
}

/* --- AUTH token rotation ---------------------------------------------- */

/* SHA-256 of the token in file, as hex; NULL when it cannot be read. */
static char *
token_digest(const char *file)
{
	unsigned char	 md[EVP_MAX_MD_SIZE];
	unsigned int	 mdlen = 0, i;
	char		*tok = NULL, *cause = NULL, *hex;

	if (read_token(file, &tok, &cause) != 0) {
		free(cause);
		return NULL;
	}
	if (EVP_Digest(tok, strlen(tok), md, &mdlen, EVP_sha256(), NULL) != 1)
		mdlen = 0;
	explicit_bzero(tok, strlen(tok));
	free(tok);
	if (mdlen == 0)
		return NULL;
	hex = xmalloc(2 * mdlen + 1);
	for (i = 0; i < mdlen; i++)
		snprintf(hex + 2 * i, 3, "%02x", md[i]);
	return hex;
}

/*
 * A changed token file: ROTATE (AWS accepts the old and the new token),
 * then, once clients had the maintenance window to move (or at once with
 * apply_immediately), SET (only the new one).
 */
static const char *
auth_due(struct eccl *cl, const struct ec_rg *rg, enum obs_state st,
    char **note)
{
	const struct cluster_spec	*s = cl->spec;

	free(cl->auth_file_sha);
	cl->auth_file_sha = NULL;
	if (s->auth_token_file == NULL || !s->transit_encryption ||
	    st != OBS_AVAILABLE)
		return NULL;
	if ((cl->auth_file_sha = token_digest(s->auth_token_file)) == NULL)
		return NULL;
	if (cl->auth_sha == NULL) {
		/* Adopted, or created before this was recorded: take the
		 * file as what the group has. */
		if (rg->auth_token_enabled) {
			cl->auth_sha = xstrdup(cl->auth_file_sha);
			drill_save(cl);
		}
		return NULL;
	}
	if (strcmp(cl->auth_sha, cl->auth_file_sha) == 0)
		return NULL;
	if (cl->auth_rotating == NULL ||
	    strcmp(cl->auth_rotating, cl->auth_file_sha) != 0)
		return "rotate";
	if (s->apply_immediately ||
	    window_contains(&s->maintenance_window, clock_wall_s()))
		return "set";
	xasprintf(note, "AUTH token rotated: the old and the new token work "
	    "until the maintenance window, when the old one is retired");
	return NULL;
}

static json_t *
endpoints_json(struct eccl *cl, const struct ec_rg *rg)
{
	json_t	*j = json_object(), *groups = json_array(), *g, *ms, *pend;
	char	 addr[300];
	size_t	 i, k;

	if (rg->config_address != NULL) {
		snprintf(addr, sizeof addr, "%s:%d", rg->config_address,
		    rg->config_port);
		json_object_set_new(j, "configuration", json_string(addr));
	} else if (rg->ngroups > 0 && rg->groups[0].primary_address) {
		snprintf(addr, sizeof addr, "%s:%d",
		    rg->groups[0].primary_address, rg->groups[0].primary_port);
		json_object_set_new(j, "primary", json_string(addr));
	}
	for (i = 0; i < rg->ngroups; i++) {
		const struct ec_node_group *ng = &rg->groups[i];
		ms = json_array();
		for (k = 0; k < ng->nmembers; k++) {
			const struct ec_member *m = &ng->members[k];
			json_t *o = json_pack("{s:s?, s:s?, s:s?}", "id",
			    m->cluster_id, "role", m->role, "az", m->az);
			if (m->address != NULL) {
				snprintf(addr, sizeof addr, "%s:%d",
				    m->address, m->port);
				json_object_set_new(o, "address",
				    json_string(addr));
			}
			json_array_append_new(ms, o);
		}
		g = json_pack("{s:s?, s:s?, s:s?, s:o}", "id", ng->id,
		    "status", ng->status, "slots", ng->slots, "members", ms);
		json_array_append_new(groups, g);
	}
	json_object_set_new(j, "node_groups", groups);
	json_object_set_new(j, "status", json_string(rg->status ?
	    rg->status : ""));
	if (rg->arn != NULL)
		json_object_set_new(j, "arn", json_string(rg->arn));
	pend = json_object();
	for (i = 0; i < rg->pending.n; i++)
		json_object_set_new(pend, rg->pending.keys[i],
		    json_string(rg->pending.values[i]));
	for (i = 0; i < cl->member_pending.n; i++)
		json_object_set_new(pend, cl->member_pending.keys[i],
		    json_string(cl->member_pending.values[i]));
	json_object_set_new(j, "pending_modified_values", pend);
	json_object_set(j, "events", cl->events);
	if (cl->spec != NULL && cl->spec->failover_drill)
		json_object_set_new(j, "failover_drill", drill_json(cl));
	return j;
}

/* Turn what we saw into the observation the plan diffs. */
static void
observe_finish(struct eccl *cl)
{
	const struct ec_rg		*rg = &cl->rg;
	const struct cluster_spec	*s = cl->spec;
	struct observed			*o = xcalloc(1, sizeof *o);
	struct strbuf			 msg;
	const char			*why, *pv;
	size_t				 i;

	o->state = rg_state(rg);
	o->cluster_mode = rg->cluster_enabled;
	o->num_node_groups = rg->ngroups > 0 ? (int)rg->ngroups : 1;
	o->replicas_per_node_group = rg->ngroups > 0 &&
	    rg->groups[0].nmembers > 0 ? (int)rg->groups[0].nmembers - 1 :
	    (int)rg->member_clusters.n - 1;
	if (!rg->cluster_enabled && rg->ngroups > 0)
		o->replicas_per_node_group = (int)rg->member_clusters.n - 1;
	if (o->replicas_per_node_group < 0)
		o->replicas_per_node_group = 0;
	o->port = rg->config_port ? rg->config_port : rg->ngroups > 0 ?
	    rg->groups[0].primary_port : 0;
	o->automatic_failover = streq(rg->automatic_failover, "enabled") ||
	    streq(rg->automatic_failover, "enabling");
	o->multi_az = streq(rg->multi_az, "enabled");
	o->at_rest_encryption = rg->at_rest_encryption;
	o->snapshot_retention_limit = rg->snapshot_retention_limit < 0 ? 0 :
	    rg->snapshot_retention_limit;
	if (rg->snapshot_window == NULL || window_parse_daily(
	    rg->snapshot_window, &o->snapshot_window, &why) != 0)
		o->snapshot_window = s->snapshot_window;
	if (cl->maintenance_window == NULL || window_parse_weekly(
	    cl->maintenance_window, &o->maintenance_window, &why) != 0)
		o->maintenance_window = s->maintenance_window;
	o->instance_type = rg->node_type ? xstrdup(rg->node_type) : NULL;
	o->engine_version = cl->engine_version ?
	    xstrdup(cl->engine_version) : NULL;
	o->parameter_group = cl->param_group ? xstrdup(cl->param_group) :
	    NULL;
	/* Parameters live in parameter groups here, not on nodes. */
	for (i = 0; i < s->parameters.n; i++)
		kvlist_add(&o->parameters, s->parameters.keys[i],
		    s->parameters.values[i]);
	o->defers_disruptive = true;
	o->kms_key_id = rg->kms_key_id ? xstrdup(rg->kms_key_id) : NULL;
	o->subnet_group = cl->subnet_group ? xstrdup(cl->subnet_group) : NULL;
	if (cl->member_at_ms != 0) {
		o->has_security_groups = true;
		for (i = 0; i < cl->security_groups.n; i++)
			strlist_add(&o->security_groups,
			    cl->security_groups.v[i]);
		o->has_topic = true;
		o->topic_arn = cl->topic_arn ? xstrdup(cl->topic_arn) : NULL;
	}
	if (cl->have_tags) {
		o->has_tags = true;
		for (i = 0; i < cl->tags.n; i++)
			kvlist_add(&o->tags, cl->tags.keys[i],
			    cl->tags.values[i]);
	}

	/* What AWS holds for the maintenance window counts as done. */
	strbuf_init(&msg);
	if ((pv = kvlist_get(&cl->member_pending, "CacheNodeType")) != NULL ||
	    (pv = kvlist_get(&cl->rg.pending, "CacheNodeType")) != NULL) {
		free(o->instance_type);
		o->instance_type = xstrdup(pv);
		strbuf_printf(&msg, "%snode type %s", msg.len ? ", " : "", pv);
	}
	if ((pv = kvlist_get(&cl->member_pending, "EngineVersion")) != NULL) {
		free(o->engine_version);
		o->engine_version = xstrdup(pv);
		strbuf_printf(&msg, "%sengine version %s", msg.len ? ", " :
		    "", pv);
	}
	if (msg.len > 0)
		xasprintf(&o->message, "pending until the maintenance window: "
		    "%s", msg.s);
	else if (o->state == OBS_AVAILABLE && cl->terminal_msg != NULL &&
	    cl->terminal_gen == s->generation)
		o->message = xstrdup(cl->terminal_msg);
	strbuf_free(&msg);
	{
		char *note = NULL;

		if ((pv = auth_due(cl, rg, o->state, &note)) != NULL)
			o->auth_change = xstrdup(pv);
		if (note != NULL && o->message == NULL)
			o->message = note;
		else
			free(note);
	}
	if ((pv = drill_due(cl, rg, o->state)) != NULL)
		o->drill_node_group = xstrdup(pv);
	o->endpoints = endpoints_json(cl, rg);
	if (o->state == OBS_AVAILABLE && !kvlist_get(&cl->rg.pending,
	    "AutomaticFailoverStatus"))
		set_dirty(cl, false);
	cl->obs = o;
	finish(cl, 0, NULL);
}

static void
events_done(const struct ecapi_result *r, void *arg)
{
	struct eccl		*cl = arg;
	struct ec_event_page	 page;
	char			*cause = NULL;
	size_t			 n;

	cl->call = NULL;
	if (r->err == 0 && ecxml_parse_describe_events(r->body, r->len, &page,
	    &cause) == 0) {
		/* Oldest first, whichever order the answer has. */
		bool newest_first = page.n > 1 && page.v[0].date != NULL &&
		    page.v[page.n - 1].date != NULL &&
		    strcmp(page.v[0].date, page.v[page.n - 1].date) > 0;
		char *since = cl->events_since ? xstrdup(cl->events_since) :
		    NULL;

		for (n = 0; n < page.n; n++) {
			const struct ec_event *e = &page.v[newest_first ?
			    page.n - 1 - n : n];
			if (since != NULL && e->date != NULL &&
			    strcmp(e->date, since) <= 0)
				continue;
			log_cluster(LOG_LEVEL_INFO, cl->name, "aws event: %s",
			    e->message ? e->message : "");
			drill_event(cl, e);
			json_array_append_new(cl->events, json_pack(
			    "{s:s?, s:s?}", "date", e->date, "message",
			    e->message));
			if (e->date != NULL && (cl->events_since == NULL ||
			    strcmp(e->date, cl->events_since) > 0)) {
				free(cl->events_since);
				cl->events_since = xstrdup(e->date);
			}
		}
		free(since);
		while (json_array_size(cl->events) > EVENTS_KEPT)
			json_array_remove(cl->events, 0);
		ec_event_page_free(&page);
	}
	free(cause);
	observe_finish(cl);
}

static void
events_start(struct eccl *cl)
{
	struct kvlist	 p;
	char		 since[32];

	memset(&p, 0, sizeof p);
	kvlist_add(&p, "SourceIdentifier", cl->name);
	kvlist_add(&p, "SourceType", "replication-group");
	kvlist_add(&p, "MaxRecords", FLEET_PAGE);
	if (cl->events_since != NULL)
		kvlist_add(&p, "StartTime", cl->events_since);
	else {
		format_rfc3339(clock_wall_s() - 3600, since, sizeof since);
		kvlist_add(&p, "StartTime", since);
	}
	cl->call = ecapi_call(cl->ctx->api, "DescribeEvents", &p, events_done,
	    cl);
	kvlist_free(&p);
}

static void
tags_done(const struct ecapi_result *r, void *arg)
{
	struct eccl	*cl = arg;
	char		*cause = NULL;

	cl->call = NULL;
	kvlist_free(&cl->tags);
	memset(&cl->tags, 0, sizeof cl->tags);
	cl->have_tags = r->err == 0 && ecxml_parse_tags(r->body, r->len,
	    &cl->tags, &cause) == 0;
	if (r->err != 0)
		log_cluster(LOG_LEVEL_DEBUG, cl->name, "ListTagsForResource: "
		    "%s", r->message);
	free(cause);
	events_start(cl);
}

/* Tags, for groups whose spec names any (one call, with the members'). */
static void
tags_start(struct eccl *cl)
{

	/* AWS refuses tagging calls, listing too, while a group is busy. */
	if (cl->spec->tags.n == 0 || cl->rg.arn == NULL ||
	    !rg_steady(&cl->rg)) {
		events_start(cl);
		return;
	}
	call_one(cl, "ListTagsForResource", "ResourceName", cl->rg.arn,
	    tags_done);
}

static void
member_done(const struct ecapi_result *r, void *arg)
{
	struct eccl		*cl = arg;
	struct ec_cc_page	 page;
	char			*cause = NULL;
	size_t			 i;

	cl->call = NULL;
	if (r->err != 0) {
		finishf(cl, api_errno(r), "DescribeCacheClusters: %s",
		    r->message);
		return;
	}
	if (ecxml_parse_describe_ccs(r->body, r->len, &page, &cause) != 0) {
		finish(cl, -EPROTO, cause);
		return;
	}
	if (page.n > 0) {
		const struct ec_cc *c = &page.v[0];
		free(cl->engine_version);
		free(cl->maintenance_window);
		free(cl->param_group);
		cl->engine_version = c->engine_version ?
		    xstrdup(c->engine_version) : NULL;
		cl->maintenance_window = c->maintenance_window ?
		    xstrdup(c->maintenance_window) : NULL;
		cl->param_group = c->param_group ? xstrdup(c->param_group) :
		    NULL;
		kvlist_free(&cl->member_pending);
		for (i = 0; i < c->pending.n; i++)
			kvlist_add(&cl->member_pending, c->pending.keys[i],
			    c->pending.values[i]);
		free(cl->subnet_group);
		free(cl->topic_arn);
		cl->subnet_group = c->subnet_group ? xstrdup(c->subnet_group) :
		    NULL;
		cl->topic_arn = c->topic_arn ? xstrdup(c->topic_arn) : NULL;
		strlist_free(&cl->security_groups);
		memset(&cl->security_groups, 0, sizeof cl->security_groups);
		for (i = 0; i < c->security_groups.n; i++)
			strlist_add(&cl->security_groups,
			    c->security_groups.v[i]);
		/* When to look again: spread over the hour, so that a
		 * fleet's member checks do not come all at once. */
		cl->member_at_ms = clock_mono_ms() + MEMBER_TTL_MS * 9 / 10 +
		    (uint64_t)random() % (MEMBER_TTL_MS / 5);
	}
	ec_cc_page_free(&page);
	tags_start(cl);
}

/* We have the group: fill in what only members know, then events. */
static void
observe_rg(struct eccl *cl)
{
	bool		 fresh;

	fresh = cl->member_at_ms != 0 && !cl->dirty &&
	    clock_mono_ms() < cl->member_at_ms &&
	    rg_steady(&cl->rg) && cl->member_pending.n == 0;
	if (fresh || cl->rg.member_clusters.n == 0) {
		if (cl->dirty || !rg_steady(&cl->rg))
			events_start(cl);
		else
			observe_finish(cl);
		return;
	}
	call_one(cl, "DescribeCacheClusters", "CacheClusterId",
	    cl->rg.member_clusters.v[0], member_done);
}

static void
absent(struct eccl *cl)
{
	struct observed	*o = xcalloc(1, sizeof *o);

	o->state = OBS_ABSENT;
	o->defers_disruptive = true;
	cl->obs = o;
	finish(cl, 0, NULL);
}

static void
describe_one_done(const struct ecapi_result *r, void *arg)
{
	struct eccl		*cl = arg;
	struct ec_rg_page	 page;
	char			*cause = NULL;

	cl->call = NULL;
	if (r->err != 0 && r->cls == EC_ERR_NOT_FOUND) {
		absent(cl);
		return;
	}
	if (r->err != 0) {
		finishf(cl, api_errno(r), "DescribeReplicationGroups: %s",
		    r->message);
		return;
	}
	if (ecxml_parse_describe_rgs(r->body, r->len, &page, &cause) != 0) {
		finish(cl, -EPROTO, cause);
		return;
	}
	if (page.n == 0) {
		ec_rg_page_free(&page);
		absent(cl);
		return;
	}
	cl->rg = page.v[0];
	memset(&page.v[0], 0, sizeof page.v[0]);
	cl->have_rg = true;
	ec_rg_page_free(&page);
	observe_rg(cl);
}

static void
describe_one(struct eccl *cl)
{

	call_one(cl, "DescribeReplicationGroups", "ReplicationGroupId",
	    cl->name, describe_one_done);
}

/* The fleet view answered (or failed): serve everyone who waited. */
static void
fleet_serve(struct ec_ctx *c, int err, const char *msg)
{
	struct eccl	**w = c->waiters;
	size_t		 n = c->nwaiters, i;
	struct ec_rg	*rg;

	c->waiters = NULL;
	c->nwaiters = 0;
	for (i = 0; i < n; i++) {
		struct eccl *cl = w[i];
		cl->waiting_fleet = false;
		if (err != 0) {
			finishf(cl, err, "DescribeReplicationGroups: %s", msg);
			continue;
		}
		if ((rg = htab_get(c->fleet, cl->name)) == NULL) {
			/* Not in the listing: make sure, on its own. */
			describe_one(cl);
			continue;
		}
		rg_copy(&cl->rg, rg);
		cl->have_rg = true;
		observe_rg(cl);
	}
	free(w);
}

static void
fleet_page_done(const struct ecapi_result *r, void *arg)
{
	struct ec_ctx		*c = arg;
	struct ec_rg_page	 page;
	char			*cause = NULL;
	size_t			 i;

	c->fleet_call = NULL;
	if (r->err != 0 || ecxml_parse_describe_rgs(r->body, r->len, &page,
	    &cause) != 0) {
		fleet_free(c->fleet_next);
		c->fleet_next = NULL;
		c->fleet_busy = false;
		fleet_serve(c, r->err ? api_errno(r) : -EPROTO, r->err ?
		    r->message : cause);
		free(cause);
		return;
	}
	for (i = 0; i < page.n; i++) {
		struct ec_rg *rg = xmalloc(sizeof *rg);
		*rg = page.v[i];
		memset(&page.v[i], 0, sizeof page.v[i]);
		if (rg->id == NULL) {
			rg_free(rg);
			continue;
		}
		rg_free(htab_put(c->fleet_next, rg->id, rg));
	}
	free(c->fleet_marker);
	c->fleet_marker = page.marker;
	page.marker = NULL;
	ec_rg_page_free(&page);
	if (c->fleet_marker != NULL) {
		fleet_start(c);
		return;
	}
	fleet_free(c->fleet);
	c->fleet = c->fleet_next;
	c->fleet_next = NULL;
	c->fleet_at_ms = clock_mono_ms();
	c->fleet_busy = false;
	fleet_serve(c, 0, NULL);
}

static void
fleet_start(struct ec_ctx *c)
{
	struct kvlist	 p;

	if (c->fleet_next == NULL)
		c->fleet_next = htab_new();
	c->fleet_busy = true;
	memset(&p, 0, sizeof p);
	kvlist_add(&p, "MaxRecords", FLEET_PAGE);
	if (c->fleet_marker != NULL)
		kvlist_add(&p, "Marker", c->fleet_marker);
	c->fleet_call = ecapi_call(c->api, "DescribeReplicationGroups", &p,
	    fleet_page_done, c);
	kvlist_free(&p);
}

static void
ec_observe(void *arg, const struct cluster_spec *spec, backend_observe_cb cb,
    void *cbarg)
{
	struct eccl	*cl = arg;
	struct ec_ctx	*c = cl->ctx;
	/* One listing per resync interval serves every steady group. */
	uint64_t	 fresh_ms = c->conf->resync_interval_ms * 9 / 10;

	cl->op = OP_OBSERVE;
	cl->ocb = cb;
	cl->cbarg = cbarg;
	cl->spec = spec_hold((struct cluster_spec *)spec);
	/*
	 * A group we just changed needs a view from after the change: its
	 * own describe, unless so many are busy that the fleet's pages are
	 * cheaper (a fleet listing newer than the change serves too).
	 */
	if (cl->dirty) {
		fresh_ms = c->conf->elasticache.poll_interval_ms;
		if (c->fleet == NULL || c->fleet_busy ||
		    c->fleet_at_ms <= cl->dirty_at_ms) {
			if (c->ndirty <= FLEET_BATCH) {
				describe_one(cl);
				return;
			}
			fresh_ms = 0;	/* join or start a listing */
		}
	}
	if (!c->fleet_busy && c->fleet != NULL &&
	    clock_mono_ms() - c->fleet_at_ms < fresh_ms) {
		struct ec_rg *rg = htab_get(c->fleet, cl->name);
		if (rg == NULL) {
			describe_one(cl);
			return;
		}
		rg_copy(&cl->rg, rg);
		cl->have_rg = true;
		observe_rg(cl);
		return;
	}
	c->waiters = xreallocarray(c->waiters, c->nwaiters + 1,
	    sizeof *c->waiters);
	c->waiters[c->nwaiters++] = cl;
	cl->waiting_fleet = true;
	if (!c->fleet_busy) {
		free(c->fleet_marker);
		c->fleet_marker = NULL;
		fleet_start(c);
	}
}

/* --- acting ------------------------------------------------------------ */

static int
read_token(const char *file, char **out, char **cause)
{
	size_t	 len;
	int	 r;

	if ((r = read_file_bounded(file, 4096, out, &len)) != 0) {
		xasprintf(cause, "auth_token_file %s: %s", file, strerror(-r));
		return r;
	}
	(*out)[strcspn(*out, "\r\n")] = '\0';
	return 0;
}

static void
wipe_params(struct kvlist *p)
{
	size_t	 i;

	for (i = 0; i < p->n; i++)
		if (strcmp(p->keys[i], "AuthToken") == 0)
			explicit_bzero(p->values[i], strlen(p->values[i]));
	kvlist_free(p);
}

/* A call that carried the token succeeded: remember what AWS has now. */
static void
auth_done(struct eccl *cl)
{
	const struct cluster_spec	*s = cl->spec;
	char				*sha;

	if (s->auth_token_file == NULL || (cl->step->kind != STEP_CREATE &&
	    cl->auth_step == 0))
		return;
	if ((sha = token_digest(s->auth_token_file)) == NULL)
		return;
	if (cl->step->kind == STEP_CREATE || cl->auth_step == 2) {
		free(cl->auth_sha);
		cl->auth_sha = sha;
		free(cl->auth_rotating);
		cl->auth_rotating = NULL;
		log_cluster(LOG_LEVEL_NOTICE, cl->name, "AUTH token %s",
		    cl->step->kind == STEP_CREATE ? "set" : "rotation "
		    "complete: only the new token works now");
	} else {
		free(cl->auth_rotating);
		cl->auth_rotating = sha;
		log_cluster(LOG_LEVEL_NOTICE, cl->name, "AUTH token rotating: "
		    "the old and the new token both work");
	}
	cl->auth_step = 0;
	drill_save(cl);
}

static void
mutated(const struct ecapi_result *r, void *arg)
{
	struct eccl	*cl = arg;
	const char	*action = cl->step->kind == STEP_CREATE ?
	    "CreateReplicationGroup" : step_kind_name(cl->step->kind);

	cl->call = NULL;
	set_dirty(cl, true);
	cl->member_at_ms = 0;
	if (cl->step->kind == STEP_FAILOVER_DRILL && r->err != 0) {
		char *res;

		log_cluster(LOG_LEVEL_WARNING, cl->name, "failover drill on "
		    "node group %s: %s", cl->drill_running ? cl->drill_running :
		    "?", r->message);
		xasprintf(&res, "failed: %s", r->message);
		if (cl->drill_running != NULL)
			drill_finished(cl, res);
		free(res);
		finish(cl, 0, NULL);
		return;
	}
	if (r->err == 0 || r->cls == EC_ERR_NO_CHANGE) {
		auth_done(cl);
		finish(cl, 0, NULL);
		return;
	}
	if (r->cls == EC_ERR_EXISTS && cl->step->kind == STEP_CREATE) {
		log_cluster(LOG_LEVEL_NOTICE, cl->name, "replication group "
		    "exists already: adopting it");
		finish(cl, 0, NULL);
		return;
	}
	if (r->cls == EC_ERR_NOT_FOUND && cl->step->kind == STEP_DELETE) {
		finish(cl, 0, NULL);
		return;
	}
	if (r->err == -EREMOTEIO && r->cls == EC_ERR_TERMINAL) {
		free(cl->terminal_msg);
		xasprintf(&cl->terminal_msg, "%s refused: %s", action,
		    r->message);
		cl->terminal_gen = cl->spec->generation;
		finish(cl, -ENOTRECOVERABLE, xstrdup(cl->terminal_msg));
		return;
	}
	finishf(cl, api_errno(r), "%s: %s", action, r->message);
}

static void
create_params(struct eccl *cl, const struct cluster_spec *s,
    struct kvlist *p, char **cause)
{
	char	 w[40], key[64], *tok = NULL;
	size_t	 i;

	kvlist_add(p, "ReplicationGroupId", s->name);
	kv_addf(p, "ReplicationGroupDescription", "managed by cachekeeper "
	    "(%s)", s->file ? s->file : s->name);
	kvlist_add(p, "Engine", "redis");
	kvlist_add(p, "EngineVersion", s->engine_version);
	kvlist_add(p, "CacheNodeType", s->instance_type);
	kv_addf(p, "Port", "%d", s->port);
	if (s->cluster_mode) {
		kv_addf(p, "NumNodeGroups", "%d", s->num_node_groups);
		kv_addf(p, "ReplicasPerNodeGroup", "%d",
		    s->replicas_per_node_group);
	} else
		kv_addf(p, "NumCacheClusters", "%d", s->cluster_size);
	kvlist_add(p, "AutomaticFailoverEnabled", s->automatic_failover ?
	    "true" : "false");
	kvlist_add(p, "MultiAZEnabled", s->multi_az ? "true" : "false");
	window_format(&s->snapshot_window, w, sizeof w);
	kvlist_add(p, "SnapshotWindow", w);
	window_format(&s->maintenance_window, w, sizeof w);
	kvlist_add(p, "PreferredMaintenanceWindow", w);
	kv_addf(p, "SnapshotRetentionLimit", "%d",
	    s->snapshot_retention_limit);
	if (s->parameter_group_name != NULL)
		kvlist_add(p, "CacheParameterGroupName",
		    s->parameter_group_name);
	if (s->transit_encryption)
		kvlist_add(p, "TransitEncryptionEnabled", "true");
	if (s->at_rest_encryption)
		kvlist_add(p, "AtRestEncryptionEnabled", "true");
	if (s->elasticache.kms_key_id != NULL)
		kvlist_add(p, "KmsKeyId", s->elasticache.kms_key_id);
	if (s->elasticache.subnet_group_name != NULL)
		kvlist_add(p, "CacheSubnetGroupName",
		    s->elasticache.subnet_group_name);
	if (s->elasticache.notification_topic_arn != NULL)
		kvlist_add(p, "NotificationTopicArn",
		    s->elasticache.notification_topic_arn);
	for (i = 0; i < s->elasticache.security_group_ids.n; i++) {
		snprintf(key, sizeof key, "SecurityGroupIds.SecurityGroupId.%zu",
		    i + 1);
		kvlist_add(p, key, s->elasticache.security_group_ids.v[i]);
	}
	for (i = 0; i < s->elasticache.preferred_availability_zones.n; i++) {
		snprintf(key, sizeof key, "PreferredCacheClusterAZs."
		    "AvailabilityZone.%zu", i + 1);
		kvlist_add(p, key,
		    s->elasticache.preferred_availability_zones.v[i]);
	}
	for (i = 0; i < s->tags.n; i++) {
		snprintf(key, sizeof key, "Tags.Tag.%zu.Key", i + 1);
		kvlist_add(p, key, s->tags.keys[i]);
		snprintf(key, sizeof key, "Tags.Tag.%zu.Value", i + 1);
		kvlist_add(p, key, s->tags.values[i]);
	}
	if (s->auth_token_file != NULL &&
	    read_token(s->auth_token_file, &tok, cause) == 0) {
		kvlist_add(p, "AuthToken", tok);
		explicit_bzero(tok, strlen(tok));
		free(tok);
	}
	(void)cl;
}

static const struct {
	const char	*field;
	const char	*param;
} modify_params[] = {
	{ "engine_version", "EngineVersion" },
	{ "instance_type", "CacheNodeType" },
	{ "snapshot_window", "SnapshotWindow" },
	{ "maintenance_window", "PreferredMaintenanceWindow" },
	{ "snapshot_retention_limit", "SnapshotRetentionLimit" },
	{ "enable_automatic_failover", "AutomaticFailoverEnabled" },
	{ "enable_multi_az", "MultiAZEnabled" },
	{ "parameter_group_name", "CacheParameterGroupName" },
};

static const char *
modify_param(const char *field)
{
	size_t	 i;

	for (i = 0; i < nitems(modify_params); i++)
		if (strcmp(modify_params[i].field, field) == 0)
			return modify_params[i].param;
	return NULL;
}

/* The newest event that tells of a failure, else the newest one. */
static const char *
revert_event(struct eccl *cl)
{
	const char	*m, *last = NULL;
	size_t		 i = json_array_size(cl->events);

	while (i-- > 0) {
		m = json_string_value(json_object_get(json_array_get(
		    cl->events, i), "message"));
		if (m == NULL)
			continue;
		if (last == NULL)
			last = m;
		if (strcasestr(m, "fail") != NULL ||
		    strstr(m, "rolled back") != NULL)
			return m;
	}
	return last;
}

/*
 * ModifyReplicationGroup for every change of the step at once. A change we
 * asked for before in this generation and that is still not there was
 * reverted by AWS: that is terminal, not a loop.
 */
static int
modify_build(struct eccl *cl, const struct plan_step *st, struct kvlist *p,
    size_t *nmod, char **cause)
{
	const struct cluster_spec	*s = cl->spec;
	struct strbuf			 again;
	const char			*param, *prev;
	size_t				 i, n = 0;

	if (cl->requested_gen != s->generation) {
		kvlist_free(&cl->requested);
		memset(&cl->requested, 0, sizeof cl->requested);
		cl->requested_gen = s->generation;
	}
	strbuf_init(&again);
	kvlist_free(&cl->tagp);
	memset(&cl->tagp, 0, sizeof cl->tagp);
	cl->auth_step = 0;
	kvlist_add(p, "ReplicationGroupId", s->name);
	for (i = 0; i < st->nchanges; i++) {
		const struct change *c = &st->changes[i];
		char key[64];
		if (strcmp(c->field, "tags") == 0) {
			const char *eq = strchr(c->to, '=');
			size_t t = cl->tagp.n / 2 + 1;
			if (eq == NULL)
				continue;
			snprintf(key, sizeof key, "Tags.Tag.%zu.Key", t);
			kvlist_add(&cl->tagp, key, "");
			free(cl->tagp.values[cl->tagp.n - 1]);
			cl->tagp.values[cl->tagp.n - 1] = xstrndup(c->to,
			    (size_t)(eq - c->to));
			snprintf(key, sizeof key, "Tags.Tag.%zu.Value", t);
			kvlist_add(&cl->tagp, key, eq + 1);
		} else if (strcmp(c->field,
		    "elasticache.security_group_ids") == 0) {
			size_t k;
			for (k = 0; k < s->elasticache.security_group_ids.n;
			    k++) {
				snprintf(key, sizeof key, "SecurityGroupIds."
				    "SecurityGroupId.%zu", k + 1);
				kvlist_add(p, key,
				    s->elasticache.security_group_ids.v[k]);
			}
			n++;
		} else if (strcmp(c->field,
		    "elasticache.notification_topic_arn") == 0) {
			kvlist_add(p, "NotificationTopicArn", c->to);
			n++;
		} else if (strcmp(c->field, "auth_token") == 0) {
			char *tok = NULL;

			if (read_token(s->auth_token_file, &tok, cause) != 0) {
				strbuf_free(&again);
				return -EIO;
			}
			kvlist_add(p, "AuthToken", tok);
			explicit_bzero(tok, strlen(tok));
			free(tok);
			kvlist_add(p, "AuthTokenUpdateStrategy",
			    strcmp(c->to, "set") == 0 ? "SET" : "ROTATE");
			n++;
			cl->auth_step = strcmp(c->to, "set") == 0 ? 2 : 1;
			continue;	/* never "reverted": AWS hides tokens */
		} else if ((param = modify_param(c->field)) != NULL) {
			kvlist_add(p, param, c->to);
			n++;
		} else
			continue;	/* node parameters: not here */
		prev = kvlist_get(&cl->requested, strcmp(c->field, "tags") ?
		    c->field : c->to);
		if (prev != NULL && strcmp(prev, c->to) == 0)
			strbuf_printf(&again, "%s%s %s", again.len ? ", " : "",
			    c->field, c->to);
		else
			kvlist_add(&cl->requested, strcmp(c->field, "tags") ?
			    c->field : c->to, c->to);
	}
	kvlist_add(p, "ApplyImmediately", s->apply_immediately ||
	    cl->auth_step != 0 ? "true" : "false");
	*nmod = n;
	if (n == 0 && cl->tagp.n == 0) {
		strbuf_free(&again);
		return 1;	/* nothing this backend changes */
	}
	if (again.len > 0 && cl->rg.pending.n == 0 &&
	    cl->member_pending.n == 0) {
		const char *ev = revert_event(cl);
		xasprintf(cause, "AWS reverted %s (requested before, the group "
		    "is available without it)%s%s", again.s, ev ?
		    "; last event: " : "", ev ? ev : "");
		strbuf_free(&again);
		return -ENOTRECOVERABLE;
	}
	strbuf_free(&again);
	return 0;
}

static void
remove_shards(struct eccl *cl, const struct plan_step *st, struct kvlist *p)
{
	char	 key[80];
	size_t	 i, k = 1, drop;

	drop = cl->rg.ngroups > (size_t)st->to ? cl->rg.ngroups -
	    (size_t)st->to : 0;
	/* The highest numbered node groups go; their real IDs. */
	for (i = cl->rg.ngroups; i-- > 0 && drop > 0; drop--) {
		snprintf(key, sizeof key, "NodeGroupsToRemove."
		    "NodeGroupToRemove.%zu", k++);
		kvlist_add(p, key, cl->rg.groups[i].id);
	}
}

/* The tags are set: the rest of the modification, if any. */
static void
tags_added(const struct ecapi_result *r, void *arg)
{
	struct eccl	*cl = arg;

	cl->call = NULL;
	if (r->err != 0 || cl->modp.n == 0) {
		mutated(r, arg);
		return;
	}
	log_cluster(LOG_LEVEL_INFO, cl->name, "ModifyReplicationGroup");
	cl->call = ecapi_call(cl->ctx->api, "ModifyReplicationGroup",
	    &cl->modp, mutated, cl);
	wipe_params(&cl->modp);
	memset(&cl->modp, 0, sizeof cl->modp);
}

/* Everything is available: send the step's call. */
static void
apply_send(struct eccl *cl)
{
	const struct plan_step		*st = cl->step;
	const struct cluster_spec	*s = cl->spec;
	struct kvlist			 p;
	const char			*action = NULL;
	char				*cause = NULL, stamp[32];
	struct tm			 tm;
	time_t				 now = time(NULL);
	size_t				 nmod = 0;
	int				 r;

	memset(&p, 0, sizeof p);
	switch (st->kind) {
	case STEP_ADD_SHARDS:
	case STEP_REMOVE_SHARDS:
		action = "ModifyReplicationGroupShardConfiguration";
		kvlist_add(&p, "ReplicationGroupId", s->name);
		kv_addf(&p, "NodeGroupCount", "%d", st->to);
		kvlist_add(&p, "ApplyImmediately", "true");
		if (st->kind == STEP_REMOVE_SHARDS)
			remove_shards(cl, st, &p);
		break;
	case STEP_ADD_REPLICAS:
	case STEP_REMOVE_REPLICAS:
		action = st->kind == STEP_ADD_REPLICAS ? "IncreaseReplicaCount" :
		    "DecreaseReplicaCount";
		kvlist_add(&p, "ReplicationGroupId", s->name);
		kv_addf(&p, "NewReplicaCount", "%d", st->to);
		kvlist_add(&p, "ApplyImmediately", "true");
		break;
	case STEP_MODIFY:
		action = "ModifyReplicationGroup";
		if ((r = modify_build(cl, st, &p, &nmod, &cause)) != 0) {
			kvlist_free(&p);
			if (r == 1) {
				finish(cl, 0, NULL);
				return;
			}
			free(cl->terminal_msg);
			cl->terminal_msg = xstrdup(cause);
			cl->terminal_gen = s->generation;
			finish(cl, r, cause);
			return;
		}
		if (cl->tagp.n > 0) {
			/* Tags first: tagging needs an available group. */
			kvlist_free(&cl->modp);
			cl->modp = p;
			if (nmod == 0) {
				kvlist_free(&cl->modp);
				memset(&cl->modp, 0, sizeof cl->modp);
			}
			kvlist_add(&cl->tagp, "ResourceName", cl->rg.arn ?
			    cl->rg.arn : "");
			log_cluster(LOG_LEVEL_INFO, cl->name,
			    "AddTagsToResource");
			cl->call = ecapi_call(cl->ctx->api, "AddTagsToResource",
			    &cl->tagp, tags_added, cl);
			return;
		}
		break;
	case STEP_FAILOVER_DRILL:
		action = "TestFailover";
		kvlist_add(&p, "ReplicationGroupId", s->name);
		kvlist_add(&p, "NodeGroupId", st->changes[0].to);
		free(cl->drill_running);
		cl->drill_running = xstrdup(st->changes[0].to);
		cl->drill_started_s = clock_wall_s();
		cl->drill_ev_ms = cl->drill_ev_start_ms = 0;
		memmove(cl->drills, cl->drills + 1, (DRILLS_PER_DAY - 1) *
		    sizeof *cl->drills);
		cl->drills[DRILLS_PER_DAY - 1] = cl->drill_started_s;
		shared_drill_add(cl->drill_started_s);
		drill_save(cl);
		log_cluster(LOG_LEVEL_NOTICE, cl->name, "failover drill: "
		    "TestFailover on node group %s", cl->drill_running);
		break;
	case STEP_DELETE:
		action = "DeleteReplicationGroup";
		kvlist_add(&p, "ReplicationGroupId", s->name);
		if (st->final_snapshot) {
			gmtime_r(&now, &tm);
			strftime(stamp, sizeof stamp, "%Y%m%d%H%M%S", &tm);
			kv_addf(&p, "FinalSnapshotIdentifier", "%s-final-%s",
			    s->name, stamp);
		}
		break;
	default:
		kvlist_free(&p);
		finishf(cl, -ENOTSUP, "%s is not carried out",
		    step_kind_name(st->kind));
		return;
	}
	log_cluster(LOG_LEVEL_INFO, cl->name, "%s", action);
	cl->call = ecapi_call(cl->ctx->api, action, &p, mutated, cl);
	wipe_params(&p);
}

static void	gate_next(struct eccl *);

static void
gate_member_done(const struct ecapi_result *r, void *arg)
{
	struct eccl		*cl = arg;
	struct ec_cc_page	 page;
	char			*cause = NULL;

	cl->call = NULL;
	if (r->err != 0) {
		finishf(cl, api_errno(r), "DescribeCacheClusters: %s",
		    r->message);
		return;
	}
	if (ecxml_parse_describe_ccs(r->body, r->len, &page, &cause) != 0) {
		finish(cl, -EPROTO, cause);
		return;
	}
	if (page.n > 0 && !streq(page.v[0].status, "available")) {
		finishf(cl, -EBUSY, "waiting: member %s is %s", page.v[0].id,
		    page.v[0].status ? page.v[0].status : "?");
		ec_cc_page_free(&page);
		return;
	}
	ec_cc_page_free(&page);
	gate_next(cl);
}

static void
gate_next(struct eccl *cl)
{

	if (cl->gate_next >= cl->rg.member_clusters.n) {
		apply_send(cl);
		return;
	}
	call_one(cl, "DescribeCacheClusters", "CacheClusterId",
	    cl->rg.member_clusters.v[cl->gate_next++], gate_member_done);
}

/* The state gate: the group described now, then each member. */
static void
gate_rg_done(const struct ecapi_result *r, void *arg)
{
	struct eccl		*cl = arg;
	struct ec_rg_page	 page;
	char			*cause = NULL;
	size_t			 i;

	cl->call = NULL;
	if (r->err != 0) {
		finishf(cl, api_errno(r), "DescribeReplicationGroups: %s",
		    r->message);
		return;
	}
	if (ecxml_parse_describe_rgs(r->body, r->len, &page, &cause) != 0 ||
	    page.n == 0) {
		finish(cl, -EPROTO, cause ? cause : xstrdup("group not listed"));
		ec_rg_page_free(&page);
		return;
	}
	if (cl->have_rg)
		ec_rg_free(&cl->rg);
	cl->rg = page.v[0];
	memset(&page.v[0], 0, sizeof page.v[0]);
	cl->have_rg = true;
	ec_rg_page_free(&page);
	if (!streq(cl->rg.status, "available")) {
		finishf(cl, -EBUSY, "waiting: the group is %s", cl->rg.status ?
		    cl->rg.status : "?");
		return;
	}
	for (i = 0; i < cl->rg.ngroups; i++)
		if (cl->rg.groups[i].status != NULL &&
		    !streq(cl->rg.groups[i].status, "available")) {
			finishf(cl, -EBUSY, "waiting: node group %s is %s",
			    cl->rg.groups[i].id, cl->rg.groups[i].status);
			return;
		}
	if (!rg_steady(&cl->rg)) {
		finishf(cl, -EBUSY, "waiting: member clusters do not match the "
		    "node groups yet");
		return;
	}
	cl->gate_next = 0;
	gate_next(cl);
}

static void
ec_apply(void *arg, const struct cluster_spec *spec,
    const struct plan_step *st, backend_done_cb cb, void *cbarg)
{
	struct eccl	*cl = arg;
	struct kvlist	 p;
	char		*cause = NULL;

	cl->op = OP_APPLY;
	cl->dcb = cb;
	cl->cbarg = cbarg;
	cl->spec = spec_hold((struct cluster_spec *)spec);
	cl->step = st;
	if (cl->terminal_msg != NULL && cl->terminal_gen == spec->generation &&
	    st->kind != STEP_DELETE) {
		finish(cl, -ENOTRECOVERABLE, xstrdup(cl->terminal_msg));
		return;
	}
	memset(&p, 0, sizeof p);
	if (st->kind == STEP_CREATE) {
		create_params(cl, spec, &p, &cause);
		if (cause != NULL) {
			wipe_params(&p);
			finish(cl, -ENOTRECOVERABLE, cause);
			return;
		}
		log_cluster(LOG_LEVEL_INFO, cl->name, "CreateReplicationGroup "
		    "(%s, %s)", spec->cluster_mode ? "cluster mode" :
		    "cluster mode disabled", spec->instance_type);
		cl->call = ecapi_call(cl->ctx->api, "CreateReplicationGroup",
		    &p, mutated, cl);
		wipe_params(&p);
		return;
	}
	kvlist_add(&p, "ReplicationGroupId", spec->name);
	cl->call = ecapi_call(cl->ctx->api, "DescribeReplicationGroups", &p,
	    gate_rg_done, cl);
	kvlist_free(&p);
}

/* --- operations (snapshot, failover) ------------------------------------ */

static void
op_sent(const struct ecapi_result *r, void *arg)
{
	struct eccl	*cl = arg;
	backend_op_cb	 cb = cl->op_cb;
	char		*msg;

	cl->call = NULL;
	cl->op_cb = NULL;
	set_dirty(cl, true);
	cl->member_at_ms = 0;
	if (r->err != 0)
		xasprintf(&msg, "%s", r->message);
	else if (cl->uop.kind == BACKEND_OP_SNAPSHOT)
		xasprintf(&msg, "snapshot %s is being created (DescribeSnapshots "
		    "or the cluster's events tell when it is available)",
		    cl->op_name);
	else
		xasprintf(&msg, "TestFailover started on node group %s",
		    cl->op_shard);
	spec_free(cl->spec);
	cl->spec = NULL;
	cb(cl->op_arg, r->err != 0 ? api_errno(r) : 0, msg);
	free(msg);
}

static void
op_rg_done(const struct ecapi_result *r, void *arg)
{
	struct eccl		*cl = arg;
	struct ec_rg_page	 page;
	struct kvlist		 p;
	backend_op_cb		 cb = cl->op_cb;
	char			*cause = NULL, *msg = NULL;
	const char		*ng = cl->uop.shard;
	int			 err = 0;

	cl->call = NULL;
	memset(&page, 0, sizeof page);
	if (r->err != 0) {
		err = api_errno(r);
		xasprintf(&msg, "DescribeReplicationGroups: %s", r->message);
	} else if (ecxml_parse_describe_rgs(r->body, r->len, &page,
	    &cause) != 0 || page.n == 0) {
		err = -EPROTO;
		msg = cause ? cause : xstrdup("the group is not listed");
	} else if (!rg_steady(&page.v[0])) {
		err = -EBUSY;
		xasprintf(&msg, "the group is %s, not available: try again "
		    "once it is", page.v[0].status ? page.v[0].status : "?");
	} else if (cl->uop.kind == BACKEND_OP_FAILOVER && ng == NULL) {
		ng = page.v[0].ngroups > 0 ? page.v[0].groups[0].id : "0001";
	}
	if (err != 0) {
		ec_rg_page_free(&page);
		cl->op_cb = NULL;
		spec_free(cl->spec);
		cl->spec = NULL;
		cb(cl->op_arg, err, msg);
		free(msg);
		return;
	}
	memset(&p, 0, sizeof p);
	kvlist_add(&p, "ReplicationGroupId", cl->name);
	{
		char *keep = ng ? xstrdup(ng) : NULL;

		free(cl->op_shard);
		cl->op_shard = keep;
		cl->uop.shard = keep;
		ng = keep;
	}
	if (cl->uop.kind == BACKEND_OP_SNAPSHOT) {
		kvlist_add(&p, "SnapshotName", cl->op_name);
		cl->call = ecapi_call(cl->ctx->api, "CreateSnapshot", &p,
		    op_sent, cl);
	} else {
		kvlist_add(&p, "NodeGroupId", ng);
		cl->call = ecapi_call(cl->ctx->api, "TestFailover", &p,
		    op_sent, cl);
	}
	kvlist_free(&p);
	ec_rg_page_free(&page);
}

static void
ec_operate(void *arg, const struct cluster_spec *spec,
    const struct backend_op *op, backend_op_cb cb, void *cbarg)
{
	struct eccl	*cl = arg;
	char		 stamp[32];
	time_t		 now = time(NULL);
	struct tm	 tm;

	cl->uop = *op;
	cl->uop.name = cl->uop.shard = NULL;
	cl->op_cb = cb;
	cl->op_arg = cbarg;
	cl->spec = spec_hold((struct cluster_spec *)spec);
	free(cl->op_name);
	if (op->name != NULL)
		cl->op_name = xstrdup(op->name);
	else {
		gmtime_r(&now, &tm);
		strftime(stamp, sizeof stamp, "%Y%m%d%H%M%S", &tm);
		xasprintf(&cl->op_name, "%s-manual-%s", spec->name, stamp);
	}
	free(cl->op_shard);
	cl->op_shard = op->shard ? xstrdup(op->shard) : NULL;
	cl->uop.shard = cl->op_shard;
	call_one(cl, "DescribeReplicationGroups", "ReplicationGroupId",
	    spec->name, op_rg_done);
}

/* The backend's poll while busy follows the daemon config. */
static void	*ec_attach_poll(const struct backend_env *, const char *);

struct backend backend_elasticache = {
	.name = "elasticache",
	.available = true,
	.poll_ms = 30000,
	.attach = ec_attach_poll,
	.detach = ec_detach,
	.observe = ec_observe,
	.apply = ec_apply,
	.operate = ec_operate,
};

static void *
ec_attach_poll(const struct backend_env *env, const char *name)
{
	backend_elasticache.poll_ms =
	    (unsigned int)env->conf->elasticache.poll_interval_ms;
	return ec_attach(env, name);
}

/* For benchmarks and tests: the daemon-wide call counters. */
const struct ecapi_stats *
elasticache_stats(void)
{
	return shared != NULL ? ecapi_stats(shared->api) : NULL;
}
