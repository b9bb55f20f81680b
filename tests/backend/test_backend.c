/* The in-memory test backend; see test_backend.h. */
#include "config.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "htab.h"
#include "log.h"
#include "plan.h"
#include "test_backend.h"
#include "util.h"

#define OBSERVE_MS	5
#define CALL_MS		10
#define OP_MS		150

/* A simulated cluster, kept across attach/detach like a real one. */
struct tcluster {
	struct observed	 obs;
	struct event	*settle;	/* transitional state ends */
	uint64_t	 op_start_ms;	/* for progress while it runs */
	int		 op_ms;
	const char	*op_name;
	int		 failures;	/* injected so far */
};

struct thandle {
	char			*name;
	struct event_base	*base;
	struct event		*call;	/* the pending callback */
	backend_observe_cb	 ocb;
	backend_done_cb		 dcb;
	void			*arg;
	int			 error;
	char			*message;
};

static struct htab	*clusters;

static struct tcluster *
tcluster_get(const char *name)
{
	if (clusters == NULL)
		clusters = htab_new();
	return htab_get(clusters, name);
}

static void
tcluster_free(struct tcluster *c)
{
	if (c->settle) {
		free(event_get_callback_arg(c->settle));
		event_free(c->settle);
	}
	free(c->obs.engine_version);
	free(c->obs.instance_type);
	kvlist_free(&c->obs.parameters);
	free(c);
}

void
test_backend_cleanup(void)
{
	size_t		 pos = 0;
	const char	*k;
	void		*v;

	if (clusters == NULL)
		return;
	while (htab_next(clusters, &pos, &k, &v))
		tcluster_free(v);
	htab_free(clusters);
	clusters = NULL;
}

static void *
test_attach(const struct backend_env *env, const char *name)
{
	struct thandle	*h = xcalloc(1, sizeof *h);

	h->name = xstrdup(name);
	h->base = env->base;
	return h;
}

static void
test_detach(void *arg)
{
	struct thandle	*h = arg;

	if (h->call)
		event_free(h->call);
	free(h->message);
	free(h->name);
	free(h);
}

static void
call_fire(evutil_socket_t fd, short ev, void *arg)
{
	struct thandle		*h = arg;
	struct tcluster		*c = tcluster_get(h->name);
	struct observed		*o;
	char			*msg = h->message;
	int			 error = h->error;

	event_free(h->call);
	h->call = NULL;
	h->message = NULL;
	if (h->ocb != NULL) {
		backend_observe_cb cb = h->ocb;
		h->ocb = NULL;
		o = xcalloc(1, sizeof *o);
		if (c == NULL || c->obs.state == OBS_ABSENT)
			o->state = OBS_ABSENT;
		else {
			*o = c->obs;
			o->engine_version = xstrdup(c->obs.engine_version);
			o->instance_type = xstrdup(c->obs.instance_type);
			memset(&o->parameters, 0, sizeof o->parameters);
			for (size_t i = 0; i < c->obs.parameters.n; i++)
				kvlist_add(&o->parameters,
				    c->obs.parameters.keys[i],
				    c->obs.parameters.values[i]);
			o->endpoints = json_pack("{s:s, s:i}", "primary",
			    "test://primary", "nodes",
			    c->obs.num_node_groups *
			    (c->obs.replicas_per_node_group + 1));
			if (c->settle != NULL && evtimer_pending(c->settle,
			    NULL) && c->op_ms > 0) {
				uint64_t done = clock_mono_ms() -
				    c->op_start_ms;
				json_object_set_new(o->endpoints, "progress",
				    json_pack("{s:s, s:I, s:I, s:s}",
				    "operation", c->op_name, "done",
				    (json_int_t)(done > (uint64_t)c->op_ms ?
				    (uint64_t)c->op_ms : done), "total",
				    (json_int_t)c->op_ms, "unit", "ms"));
			}
			o->message = NULL;
		}
		cb(h->arg, 0, NULL, o);
	} else {
		backend_done_cb cb = h->dcb;
		h->dcb = NULL;
		cb(h->arg, error, msg);
	}
	free(msg);
}

static void
call_later(struct thandle *h, uint64_t ms)
{
	struct timeval	 tv = { (time_t)(ms / 1000),
	    (suseconds_t)(ms % 1000) * 1000 };

	h->call = evtimer_new(h->base, call_fire, h);
	evtimer_add(h->call, &tv);
}

static void
test_observe(void *arg, const struct cluster_spec *spec,
    backend_observe_cb cb, void *cbarg)
{
	struct thandle	*h = arg;

	h->ocb = cb;
	h->arg = cbarg;
	call_later(h, OBSERVE_MS);
}

static void
settle_fire(evutil_socket_t fd, short ev, void *arg)
{
	char		*name = arg;
	struct tcluster	*c = tcluster_get(name);

	if (c == NULL) {
		free(name);
		return;
	}
	event_free(c->settle);
	c->settle = NULL;
	if (c->obs.state == OBS_DELETING) {
		c->obs.state = OBS_ABSENT;
		htab_del(clusters, name);
		tcluster_free(c);
	} else
		c->obs.state = OBS_AVAILABLE;
	free(name);
}

static int
label_int(const struct cluster_spec *s, const char *k, int def)
{
	const char	*v = kvlist_get(&s->labels, k);

	return v ? atoi(v) : def;
}

static void
fill_from_spec(struct observed *o, const struct cluster_spec *s)
{
	o->cluster_mode = s->cluster_mode;
	o->num_node_groups = s->num_node_groups;
	o->replicas_per_node_group = s->replicas_per_node_group;
	o->port = s->port;
	o->at_rest_encryption = s->at_rest_encryption;
	free(o->engine_version);
	o->engine_version = xstrdup(s->engine_version);
	free(o->instance_type);
	o->instance_type = xstrdup(s->instance_type);
	o->automatic_failover = s->automatic_failover;
	o->multi_az = s->multi_az;
	o->snapshot_window = s->snapshot_window;
	o->maintenance_window = s->maintenance_window;
	o->snapshot_retention_limit = s->snapshot_retention_limit;
}

/* Change one modified field as the step says. */
static void
apply_change(struct observed *o, const struct cluster_spec *s,
    const struct change *ch)
{
	const char	*why;

	if (strcmp(ch->field, "engine_version") == 0) {
		free(o->engine_version);
		o->engine_version = xstrdup(ch->to);
	} else if (strcmp(ch->field, "instance_type") == 0) {
		free(o->instance_type);
		o->instance_type = xstrdup(ch->to);
	} else if (strcmp(ch->field, "snapshot_window") == 0)
		window_parse_daily(ch->to, &o->snapshot_window, &why);
	else if (strcmp(ch->field, "maintenance_window") == 0)
		window_parse_weekly(ch->to, &o->maintenance_window, &why);
	else if (strcmp(ch->field, "snapshot_retention_limit") == 0)
		o->snapshot_retention_limit = atoi(ch->to);
	else if (strcmp(ch->field, "enable_automatic_failover") == 0)
		o->automatic_failover = strcmp(ch->to, "true") == 0;
	else if (strcmp(ch->field, "enable_multi_az") == 0)
		o->multi_az = strcmp(ch->to, "true") == 0;
	else if (ch->reset)
		(void)kvlist_remove(&o->parameters, ch->field);
	else {
		(void)kvlist_remove(&o->parameters, ch->field);
		kvlist_add(&o->parameters, ch->field, ch->to);
	}
	(void)s;
}

static void
test_apply(void *arg, const struct cluster_spec *spec,
    const struct plan_step *step, backend_done_cb cb, void *cbarg)
{
	struct thandle	*h = arg;
	struct tcluster	*c = tcluster_get(h->name);
	const char	*fail = kvlist_get(&spec->labels, "test-fail");
	int		 times = label_int(spec, "test-fail-times", -1);
	int		 op_ms = label_int(spec, "test-op-ms", OP_MS);
	struct timeval	 tv = { op_ms / 1000, (op_ms % 1000) * 1000 };
	size_t		 i;

	h->dcb = cb;
	h->arg = cbarg;
	log_cluster(LOG_LEVEL_NOTICE, h->name, "test backend applies %s "
	    "(%d -> %d, %zu changes)", step_kind_name(step->kind), step->from,
	    step->to, step->nchanges);
	if (c == NULL) {
		/* Absent until created; it only counts injected failures. */
		c = xcalloc(1, sizeof *c);
		c->obs.state = OBS_ABSENT;
		htab_put(clusters, h->name, c);
	}
	if (fail != NULL && strcmp(fail, step_kind_name(step->kind)) == 0 &&
	    (times < 0 || c->failures < times)) {
		c->failures++;
		h->error = -EIO;
		h->message = xstrdup("injected failure");
		call_later(h, CALL_MS);
		return;
	}
	switch (step->kind) {
	case STEP_CREATE:
		fill_from_spec(&c->obs, spec);
		for (i = 0; i < spec->parameters.n; i++)
			kvlist_add(&c->obs.parameters, spec->parameters.keys[i],
			    spec->parameters.values[i]);
		c->obs.state = OBS_CREATING;
		break;
	case STEP_ADD_SHARDS:
	case STEP_REMOVE_SHARDS:
		c->obs.num_node_groups = step->to;
		c->obs.state = OBS_MODIFYING;
		break;
	case STEP_ADD_REPLICAS:
	case STEP_REMOVE_REPLICAS:
		c->obs.replicas_per_node_group = step->to;
		c->obs.state = OBS_MODIFYING;
		break;
	case STEP_MODIFY:
		for (i = 0; i < step->nchanges; i++)
			apply_change(&c->obs, spec, &step->changes[i]);
		c->obs.state = OBS_MODIFYING;
		break;
	case STEP_DELETE:
		c->obs.state = OBS_DELETING;
		break;
	case STEP_REPLACE:
	case STEP_FAILOVER_DRILL:
		break;
	}
	c->op_start_ms = clock_mono_ms();
	c->op_ms = op_ms;
	c->op_name = step_kind_name(step->kind);
	if (c->settle == NULL)
		c->settle = evtimer_new(h->base, settle_fire,
		    xstrdup(h->name));
	evtimer_add(c->settle, &tv);
	h->error = 0;
	call_later(h, CALL_MS);
}

/* Operations: succeed after a while; a snapshot named fail-* fails. */
static void
test_operate(void *arg, const struct cluster_spec *spec,
    const struct backend_op *op, backend_op_cb cb, void *cbarg)
{
	struct thandle	*h = arg;

	h->dcb = cb;
	h->arg = cbarg;
	free(h->message);
	h->message = NULL;
	struct tcluster	*c = tcluster_get(h->name);

	if (c != NULL && c->settle != NULL && evtimer_pending(c->settle,
	    NULL)) {
		h->error = -EBUSY;
		xasprintf(&h->message, "test backend: %s is busy (%s)",
		    spec->name, c->op_name ? c->op_name : "changing");
	} else if (op->kind == BACKEND_OP_SNAPSHOT && op->name != NULL &&
	    strncmp(op->name, "fail-", 5) == 0) {
		h->error = -EIO;
		xasprintf(&h->message, "test backend: snapshot %s failed",
		    op->name);
	} else {
		h->error = 0;
		if (op->kind == BACKEND_OP_SNAPSHOT)
			xasprintf(&h->message, "test snapshot %s of %s taken",
			    op->name ? op->name : "(unnamed)", spec->name);
		else
			xasprintf(&h->message, "test failover of %s shard %s",
			    spec->name, op->shard ? op->shard : "(first)");
	}
	log_cluster(LOG_LEVEL_NOTICE, h->name, "test backend operates: %s",
	    h->message);
	call_later(h, 5 * CALL_MS);
}

const struct backend backend_test = {
	.name = "test",
	.available = true,
	.poll_ms = 50,
	.attach = test_attach,
	.detach = test_detach,
	.observe = test_observe,
	.apply = test_apply,
	.operate = test_operate,
};
