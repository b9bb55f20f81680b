/* Plan computation and rendering; see plan.h. Pure: no I/O, no clocks. */
#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "plan.h"
#include "util.h"

static const char *const kind_names[] = {
	[STEP_CREATE] = "create",
	[STEP_ADD_SHARDS] = "add-shards",
	[STEP_REMOVE_SHARDS] = "remove-shards",
	[STEP_ADD_REPLICAS] = "add-replicas",
	[STEP_REMOVE_REPLICAS] = "remove-replicas",
	[STEP_MODIFY] = "modify",
	[STEP_REPLACE] = "needs-replacement",
	[STEP_DELETE] = "delete",
	[STEP_FAILOVER_DRILL] = "failover-drill",
};

const char *
step_kind_name(enum step_kind k)
{
	return kind_names[k];
}

bool
engine_version_matches(const char *want, const char *have)
{
	size_t	 n;

	if (want == NULL || have == NULL)
		return want == have;
	n = strlen(want);
	/* "7.x" matches any 7.*; "7.1" matches 7.1 and 7.1.*; else exact. */
	if (n >= 2 && strcmp(want + n - 2, ".x") == 0)
		return strncmp(want, have, n - 1) == 0;
	return strncmp(want, have, n) == 0 &&
	    (have[n] == '\0' || have[n] == '.');
}

static struct plan_step *
plan_add(struct plan *p, enum step_kind kind)
{
	struct plan_step	*s;

	p->steps = xreallocarray(p->steps, p->n + 1, sizeof *p->steps);
	s = &p->steps[p->n++];
	memset(s, 0, sizeof *s);
	s->kind = kind;
	return s;
}

static void
step_change(struct plan_step *s, const char *field, const char *from,
    const char *to, bool disruptive)
{
	struct change	*c;

	s->changes = xreallocarray(s->changes, s->nchanges + 1,
	    sizeof *s->changes);
	c = &s->changes[s->nchanges++];
	c->field = field;
	c->from = xstrdup(from ? from : "");
	c->to = xstrdup(to ? to : "");
	c->disruptive = disruptive;
	c->reset = false;
	c->owned = NULL;
}

static const char *
yesno(bool b)
{
	return b ? "true" : "false";
}

static void
change_int(struct plan_step *s, const char *field, int from, int to)
{
	char	 a[32], b[32];

	snprintf(a, sizeof a, "%d", from);
	snprintf(b, sizeof b, "%d", to);
	step_change(s, field, a, b, false);
}

static void
change_window(struct plan_step *s, const char *field,
    const struct window *from, const struct window *to)
{
	char	 a[32], b[32];

	if (from->start == to->start && from->len == to->len)
		return;
	window_format(from, a, sizeof a);
	window_format(to, b, sizeof b);
	step_change(s, field, a, b, false);
}

static bool
str_same(const char *a, const char *b)
{
	return a != NULL && b != NULL && strcmp(a, b) == 0;
}

/* "7.1.0" -> {7, 1, 0}; missing parts and "x" are -1. */
static void
version_parts(const char *v, int out[3])
{
	int	 i;

	for (i = 0; i < 3; i++)
		out[i] = -1;
	for (i = 0; i < 3 && v != NULL && *v != '\0'; i++) {
		if (*v >= '0' && *v <= '9')
			out[i] = (int)strtol(v, (char **)&v, 10);
		else
			break;
		if (*v != '.')
			break;
		v++;
	}
}

bool
engine_version_downgrade(const char *want, const char *have)
{
	int	 w[3], h[3], i;

	if (want == NULL || have == NULL)
		return false;
	version_parts(want, w);
	version_parts(have, h);
	for (i = 0; i < 3; i++) {
		if (w[i] < 0 || h[i] < 0)
			return false;
		if (w[i] != h[i])
			return w[i] < h[i];
	}
	return false;
}

/* Fields that cannot change in place. Returns true if any. */
static bool
plan_replacements(const struct cluster_spec *spec, const struct observed *o,
    struct plan *p)
{
	struct plan_step	 tmp = { .kind = STEP_REPLACE };

	if (o->cluster_mode != spec->cluster_mode)
		step_change(&tmp, "cluster_mode.enabled", yesno(o->cluster_mode),
		    yesno(spec->cluster_mode), true);
	if (o->port != 0 && o->port != spec->port)
		change_int(&tmp, "port", o->port, spec->port);
	if (o->at_rest_encryption != spec->at_rest_encryption)
		step_change(&tmp, "enable_at_rest_encryption",
		    yesno(o->at_rest_encryption),
		    yesno(spec->at_rest_encryption), true);
	if (engine_version_downgrade(spec->engine_version, o->engine_version))
		step_change(&tmp, "engine_version (a downgrade)",
		    o->engine_version, spec->engine_version, true);
	if (spec->elasticache.kms_key_id != NULL && o->at_rest_encryption &&
	    !str_same(o->kms_key_id, spec->elasticache.kms_key_id))
		step_change(&tmp, "elasticache.kms_key_id", o->kms_key_id,
		    spec->elasticache.kms_key_id, true);
	if (spec->elasticache.subnet_group_name != NULL &&
	    o->subnet_group != NULL &&
	    strcmp(o->subnet_group, spec->elasticache.subnet_group_name) != 0)
		step_change(&tmp, "elasticache.subnet_group_name",
		    o->subnet_group, spec->elasticache.subnet_group_name, true);
	if (tmp.nchanges == 0)
		return false;
	*plan_add(p, STEP_REPLACE) = tmp;
	return true;
}

/*
 * Parameters the spec sets and the nodes do not have go into m, at once;
 * parameters the nodes have and the spec no longer sets go back to their
 * default by a rolling restart (so into d, which waits for the maintenance
 * window unless apply_immediately), as terraform resets a parameter taken
 * out of a parameter group.
 */
static void
plan_parameters(const struct cluster_spec *spec, const struct observed *o,
    struct plan_step *m, struct plan_step *d)
{
	size_t		 i;
	const char	*have;
	struct change	*c;

	for (i = 0; i < spec->parameters.n; i++) {
		have = kvlist_get(&o->parameters, spec->parameters.keys[i]);
		if (have == NULL || strcmp(have, spec->parameters.values[i]))
			step_change(m, spec->parameters.keys[i], have,
			    spec->parameters.values[i], false);
	}
	for (i = 0; i < o->parameters.n; i++) {
		if (kvlist_get(&spec->parameters, o->parameters.keys[i]) !=
		    NULL)
			continue;
		step_change(d, "", o->parameters.values[i], "", true);
		c = &d->changes[d->nchanges - 1];
		c->reset = true;
		c->owned = xstrdup(o->parameters.keys[i]);
		c->field = c->owned;
	}
}

static char *
join(const struct strlist *l)
{
	struct strbuf	 sb;
	size_t		 i;

	strbuf_init(&sb);
	for (i = 0; i < l->n; i++)
		strbuf_printf(&sb, "%s%s", i ? "," : "", l->v[i]);
	if (sb.s == NULL)
		strbuf_add(&sb, "", 0);
	return strbuf_detach(&sb);
}

static bool
same_set(const struct strlist *a, const struct strlist *b)
{
	size_t	 i, k;

	if (a->n != b->n)
		return false;
	for (i = 0; i < a->n; i++) {
		for (k = 0; k < b->n; k++)
			if (strcmp(a->v[i], b->v[k]) == 0)
				break;
		if (k == b->n)
			return false;
	}
	return true;
}

/* Settings only some backends report (security groups, topic, tags). */
static void
plan_backend_fields(const struct cluster_spec *spec, const struct observed *o,
    struct plan_step *m)
{
	const struct spec_elasticache *e = &spec->elasticache;
	const char	*have;
	char		*a, *b;
	size_t		 i;

	if (o->has_security_groups && e->security_group_ids.n > 0 &&
	    !same_set(&o->security_groups, &e->security_group_ids)) {
		a = join(&o->security_groups);
		b = join(&e->security_group_ids);
		step_change(m, "elasticache.security_group_ids", a, b, false);
		free(a);
		free(b);
	}
	if (o->has_topic && e->notification_topic_arn != NULL &&
	    !str_same(o->topic_arn, e->notification_topic_arn))
		step_change(m, "elasticache.notification_topic_arn",
		    o->topic_arn, e->notification_topic_arn, false);
	for (i = 0; o->has_tags && i < spec->tags.n; i++) {
		have = kvlist_get(&o->tags, spec->tags.keys[i]);
		if (have != NULL && strcmp(have, spec->tags.values[i]) == 0)
			continue;
		xasprintf(&a, "%s=%s", spec->tags.keys[i], have ? have : "");
		xasprintf(&b, "%s=%s", spec->tags.keys[i],
		    spec->tags.values[i]);
		step_change(m, "tags", have ? a : NULL, b, false);
		free(a);
		free(b);
	}
}

/* The combined modification of settings; disruptive parts may wait. */
static void
plan_modify(const struct cluster_spec *spec, const struct observed *o,
    bool type_done, int64_t now, struct plan *p)
{
	struct plan_step	 now_s = { .kind = STEP_MODIFY };
	struct plan_step	 later = { .kind = STEP_MODIFY };
	struct plan_step	*d;
	bool			 in_window;

	in_window = spec->apply_immediately || o->defers_disruptive ||
	    window_contains(&spec->maintenance_window, now);
	d = in_window ? &now_s : &later;
	if (!engine_version_matches(spec->engine_version, o->engine_version) &&
	    !engine_version_downgrade(spec->engine_version, o->engine_version))
		step_change(d, "engine_version", o->engine_version,
		    spec->engine_version, true);
	if (!type_done && o->instance_type != NULL &&
	    strcmp(o->instance_type, spec->instance_type) != 0)
		step_change(d, "instance_type", o->instance_type,
		    spec->instance_type, true);
	plan_parameters(spec, o, &now_s, d);
	if (o->parameter_group != NULL && spec->parameter_group_name != NULL &&
	    strcmp(o->parameter_group, spec->parameter_group_name) != 0)
		step_change(d, "parameter_group_name", o->parameter_group,
		    spec->parameter_group_name, true);
	change_window(&now_s, "snapshot_window", &o->snapshot_window,
	    &spec->snapshot_window);
	change_window(&now_s, "maintenance_window", &o->maintenance_window,
	    &spec->maintenance_window);
	if (o->snapshot_retention_limit != spec->snapshot_retention_limit)
		change_int(&now_s, "snapshot_retention_limit",
		    o->snapshot_retention_limit,
		    spec->snapshot_retention_limit);
	if (o->automatic_failover != spec->automatic_failover)
		step_change(&now_s, "enable_automatic_failover",
		    yesno(o->automatic_failover),
		    yesno(spec->automatic_failover), false);
	if (o->multi_az != spec->multi_az)
		step_change(&now_s, "enable_multi_az", yesno(o->multi_az),
		    yesno(spec->multi_az), false);
	plan_backend_fields(spec, o, &now_s);
	if (now_s.nchanges > 0)
		*plan_add(p, STEP_MODIFY) = now_s;
	if (o->auth_change != NULL) {
		/* On its own: a token change is not mixed with others. */
		struct plan_step *a = plan_add(p, STEP_MODIFY);
		step_change(a, "auth_token", "(hidden)", o->auth_change, false);
	}
	if (later.nchanges > 0) {
		later.deferred = true;
		*plan_add(p, STEP_MODIFY) = later;
	}
}

void
plan_compute(const struct cluster_spec *spec, const struct observed *o,
    bool deleted, int64_t now, struct plan *p)
{
	struct plan_step	*s;
	bool			 type_done = false;
	int			 want_r = spec->replicas_per_node_group;

	memset(p, 0, sizeof *p);
	if (o == NULL || o->state == OBS_ABSENT) {
		if (!deleted)
			plan_add(p, STEP_CREATE)->to = spec_node_count(spec);
		return;
	}
	switch (o->state) {
	case OBS_CREATING:
	case OBS_MODIFYING:
	case OBS_DELETING:
		xasprintf(&p->wait, "cluster is %s", o->state == OBS_CREATING ?
		    "being created" : o->state == OBS_MODIFYING ?
		    "being modified" : "being deleted");
		return;
	default:
		break;
	}
	if (deleted) {
		if (spec->deletion_policy == DELETION_DELETE) {
			s = plan_add(p, STEP_DELETE);
			s->final_snapshot = spec->final_snapshot;
		}
		return;
	}
	if (plan_replacements(spec, o, p) && o->cluster_mode !=
	    spec->cluster_mode)
		return;		/* shard and replica diffs mean nothing now */
	if (spec->num_node_groups < o->num_node_groups &&
	    o->instance_type != NULL &&
	    strcmp(o->instance_type, spec->instance_type) != 0) {
		/* Give the remaining shards the new size before they take
		 * the removed shards' data. */
		s = plan_add(p, STEP_MODIFY);
		step_change(s, "instance_type", o->instance_type,
		    spec->instance_type, true);
		type_done = true;
	}
	if (spec->num_node_groups != o->num_node_groups) {
		s = plan_add(p, spec->num_node_groups > o->num_node_groups ?
		    STEP_ADD_SHARDS : STEP_REMOVE_SHARDS);
		s->from = o->num_node_groups;
		s->to = spec->num_node_groups;
	}
	if (want_r > o->replicas_per_node_group) {
		s = plan_add(p, STEP_ADD_REPLICAS);
		s->from = o->replicas_per_node_group;
		s->to = want_r;
	}
	plan_modify(spec, o, type_done, now, p);
	if (want_r < o->replicas_per_node_group) {
		s = plan_add(p, STEP_REMOVE_REPLICAS);
		s->from = o->replicas_per_node_group;
		s->to = want_r;
	}
	/* A drill only runs on a group with nothing else to do. */
	if (p->n == 0 && o->state == OBS_AVAILABLE &&
	    o->drill_node_group != NULL) {
		s = plan_add(p, STEP_FAILOVER_DRILL);
		step_change(s, "node_group", "", o->drill_node_group, true);
	}
}

void
plan_free(struct plan *p)
{
	size_t	 i, j;

	for (i = 0; i < p->n; i++) {
		for (j = 0; j < p->steps[i].nchanges; j++) {
			free(p->steps[i].changes[j].from);
			free(p->steps[i].changes[j].to);
			free(p->steps[i].changes[j].owned);
		}
		free(p->steps[i].changes);
	}
	free(p->steps);
	free(p->wait);
	memset(p, 0, sizeof *p);
}

const struct plan_step *
plan_next(const struct plan *p)
{
	size_t	 i;

	for (i = 0; i < p->n; i++)
		if (p->steps[i].kind != STEP_REPLACE && !p->steps[i].deferred)
			return &p->steps[i];
	return NULL;
}

bool
plan_has_changes(const struct plan *p)
{
	return p->n > 0;
}

static void
format_changes(const struct plan_step *s, struct strbuf *sb)
{
	size_t	 i;

	for (i = 0; i < s->nchanges; i++) {
		if (s->changes[i].reset)
			strbuf_printf(sb, "      %s: \"%s\" -> (default, by a "
			    "rolling restart)\n", s->changes[i].field,
			    s->changes[i].from);
		else
			strbuf_printf(sb, "      %s: \"%s\" -> \"%s\"\n",
			    s->changes[i].field, s->changes[i].from,
			    s->changes[i].to);
	}
}

void
plan_format(const struct plan *p, struct strbuf *sb)
{
	const struct plan_step	*s;
	size_t			 i;

	if (p->wait != NULL)
		strbuf_printf(sb, "  . waiting: %s\n", p->wait);
	for (i = 0; i < p->n; i++) {
		s = &p->steps[i];
		switch (s->kind) {
		case STEP_CREATE:
			strbuf_printf(sb, "  + create cluster (%d nodes)\n",
			    s->to);
			break;
		case STEP_ADD_SHARDS:
		case STEP_REMOVE_SHARDS:
			strbuf_printf(sb, "  %c shards: %d -> %d\n",
			    s->kind == STEP_ADD_SHARDS ? '+' : '-', s->from,
			    s->to);
			break;
		case STEP_ADD_REPLICAS:
		case STEP_REMOVE_REPLICAS:
			strbuf_printf(sb, "  %c replicas per shard: %d -> %d\n",
			    s->kind == STEP_ADD_REPLICAS ? '+' : '-', s->from,
			    s->to);
			break;
		case STEP_MODIFY:
			strbuf_printf(sb, "  ~ modify%s\n", s->deferred ?
			    " (deferred to the maintenance window)" : "");
			format_changes(s, sb);
			break;
		case STEP_REPLACE:
			strbuf_puts(sb, "  ! needs replacement (not applied; "
			    "create a new cluster and migrate)\n");
			format_changes(s, sb);
			break;
		case STEP_DELETE:
			strbuf_printf(sb, "  - delete cluster%s\n",
			    s->final_snapshot ? " (final snapshot first)" : "");
			break;
		case STEP_FAILOVER_DRILL:
			strbuf_printf(sb, "  ~ failover drill on node group %s\n",
			    s->nchanges ? s->changes[0].to : "?");
			break;
		}
	}
}

json_t *
plan_to_json(const struct plan *p)
{
	json_t	*steps = json_array(), *j, *ch;
	size_t	 i, k;

	for (i = 0; i < p->n; i++) {
		const struct plan_step *s = &p->steps[i];

		j = json_pack("{s:s, s:b}", "action", kind_names[s->kind],
		    "deferred", s->deferred);
		if (s->kind != STEP_MODIFY && s->kind != STEP_REPLACE &&
		    s->kind != STEP_DELETE && s->kind != STEP_FAILOVER_DRILL) {
			json_object_set_new(j, "from", json_integer(s->from));
			json_object_set_new(j, "to", json_integer(s->to));
		}
		if (s->kind == STEP_DELETE)
			json_object_set_new(j, "final_snapshot",
			    json_boolean(s->final_snapshot));
		if (s->nchanges > 0) {
			ch = json_array();
			for (k = 0; k < s->nchanges; k++)
				json_array_append_new(ch, json_pack(
				    "{s:s, s:s, s:o, s:b}", "field",
				    s->changes[k].field, "from",
				    s->changes[k].from, "to", s->changes[k].reset ?
				    json_null() : json_string(s->changes[k].to),
				    "disruptive", s->changes[k].disruptive));
			json_object_set_new(j, "changes", ch);
		}
		json_array_append_new(steps, j);
	}
	j = json_pack("{s:o}", "steps", steps);
	if (p->wait)
		json_object_set_new(j, "waiting", json_string(p->wait));
	return j;
}
