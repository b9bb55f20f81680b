/*
 * Plans are data: these cases check the steps and their order for every
 * kind of difference between a spec and an observed cluster, without any
 * backend. Then the reconciler runs against the in-memory test backend on a
 * real event loop.
 */
#include "config.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "backend.h"
#include "plan.h"
#include "reconciler.h"
#include "spec.h"
#include "test_backend.h"
#include "util.h"

/* 2026-11-28 is a Saturday; 12:00 UTC. */
#define SAT_NOON	1795867200
/* Sunday 07:30 UTC, inside the default maintenance window. */
#define SUN_0730	(SAT_NOON + 19 * 3600 + 1800)

static struct cluster_spec *
parse(const char *extra)
{
	struct spec_list	 l = { 0 };
	struct diags		 d;
	struct cluster_spec	*s;
	char			*text;

	diags_init(&d);
	xasprintf(&text, "apiVersion: cachekeeper/v1\nkind: RedisCluster\n"
	    "metadata:\n  name: c\nspec:\n  backend: local\n%s", extra);
	if (spec_parse_buffer("t.yaml", text, strlen(text), NULL, &l, &d)) {
		for (size_t i = 0; i < d.n; i++)
			print_error("%s:%d:%d: %s\n", d.v[i].file, d.v[i].line,
			    d.v[i].col, d.v[i].msg);
		fail();
	}
	s = spec_hold(l.v[0]);
	spec_list_free(&l);
	diags_free(&d);
	free(text);
	return s;
}

/* An observed cluster that matches spec exactly. */
static struct observed *
obs_like(const struct cluster_spec *s)
{
	struct observed	*o = xcalloc(1, sizeof *o);
	size_t		 i;

	o->state = OBS_AVAILABLE;
	o->cluster_mode = s->cluster_mode;
	o->num_node_groups = s->num_node_groups;
	o->replicas_per_node_group = s->replicas_per_node_group;
	o->port = s->port;
	o->engine_version = xstrdup("7.0.15");
	o->instance_type = xstrdup(s->instance_type);
	o->automatic_failover = s->automatic_failover;
	o->multi_az = s->multi_az;
	o->at_rest_encryption = s->at_rest_encryption;
	o->snapshot_window = s->snapshot_window;
	o->maintenance_window = s->maintenance_window;
	o->snapshot_retention_limit = s->snapshot_retention_limit;
	for (i = 0; i < s->parameters.n; i++)
		kvlist_add(&o->parameters, s->parameters.keys[i],
		    s->parameters.values[i]);
	return o;
}

/* The plan as "kind(from->to)[fields]" words, for exact comparison. */
static char *
plan_words(const struct plan *p)
{
	struct strbuf	 sb;
	size_t		 i, k;

	strbuf_init(&sb);
	if (p->wait)
		strbuf_printf(&sb, "wait(%s) ", p->wait);
	for (i = 0; i < p->n; i++) {
		const struct plan_step *s = &p->steps[i];
		strbuf_puts(&sb, step_kind_name(s->kind));
		if (s->kind != STEP_MODIFY && s->kind != STEP_REPLACE &&
		    s->kind != STEP_DELETE && s->kind != STEP_CREATE &&
		    s->kind != STEP_FAILOVER_DRILL)
			strbuf_printf(&sb, "(%d->%d)", s->from, s->to);
		if (s->kind == STEP_CREATE)
			strbuf_printf(&sb, "(%d)", s->to);
		if (s->kind == STEP_DELETE && s->final_snapshot)
			strbuf_puts(&sb, "(final)");
		if (s->deferred)
			strbuf_puts(&sb, "!deferred");
		if (s->nchanges > 0) {
			strbuf_puts(&sb, "[");
			for (k = 0; k < s->nchanges; k++)
				strbuf_printf(&sb, "%s%s", k ? "," : "",
				    s->changes[k].field);
			strbuf_puts(&sb, "]");
		}
		strbuf_puts(&sb, " ");
	}
	if (sb.len > 0)
		sb.s[--sb.len] = '\0';
	return strbuf_detach(&sb);
}

static void
check_plan(const char *spec_yaml, void (*mutate)(struct observed *),
    bool deleted, int64_t now, const char *want)
{
	struct cluster_spec	*s = parse(spec_yaml);
	struct observed		*o = obs_like(s);
	struct plan		 p;
	char			*got;

	if (mutate)
		mutate(o);
	plan_compute(s, o, deleted, now, &p);
	got = plan_words(&p);
	if (strcmp(got, want) != 0) {
		print_error("plan mismatch\n  want: %s\n  got:  %s\n", want,
		    got);
		fail();
	}
	free(got);
	plan_free(&p);
	observed_free(o);
	spec_free(s);
}

static void
absent(struct observed *o)
{
	o->state = OBS_ABSENT;
}

static void
test_create_when_absent(void **state)
{
	check_plan("  cluster_size: 3\n", absent, false, SAT_NOON,
	    "create(3)");
	check_plan("  cluster_mode: {enabled: true, num_node_groups: 4, "
	    "replicas_per_node_group: 2}\n", absent, false, SAT_NOON,
	    "create(12)");
	/* A deleted spec of a cluster that does not exist: nothing. */
	check_plan("  cluster_size: 3\n", absent, true, SAT_NOON, "");
}

static void
test_in_sync_is_empty(void **state)
{
	check_plan("  cluster_size: 3\n  parameters: {maxmemory-policy: "
	    "allkeys-lru}\n", NULL, false, SAT_NOON, "");
	/* "7.0" is satisfied by 7.0.15; so is 7.x. */
	check_plan("  engine_version: \"7.x\"\n", NULL, false, SAT_NOON, "");
}

static void
busy(struct observed *o)
{
	o->state = OBS_MODIFYING;
	o->num_node_groups = 99;
}

static void
test_busy_cluster_waits(void **state)
{
	check_plan("  cluster_size: 3\n", busy, false, SAT_NOON,
	    "wait(cluster is being modified)");
}

static void
test_deletion_follows_policy(void **state)
{
	check_plan("  cluster_size: 3\n", NULL, true, SAT_NOON, "");
	check_plan("  deletion_policy: delete\n", NULL, true, SAT_NOON,
	    "delete(final)");
	check_plan("  deletion_policy: delete\n  final_snapshot: false\n",
	    NULL, true, SAT_NOON, "delete");
}

static void
one_replica(struct observed *o)
{
	o->replicas_per_node_group = 1;
	o->automatic_failover = true;
}

static void
no_replica(struct observed *o)
{
	o->replicas_per_node_group = 0;
	o->automatic_failover = false;
}

static void
test_replicas_and_failover_order(void **state)
{
	/* Up: add replicas before enabling failover. */
	check_plan("  cluster_size: 3\n", no_replica, false, SAT_NOON,
	    "add-replicas(0->2) modify[enable_automatic_failover]");
	/* Down to none: disable failover before removing the last one. */
	check_plan("  cluster_size: 1\n", one_replica, false, SAT_NOON,
	    "modify[enable_automatic_failover] remove-replicas(1->0)");
	check_plan("  cluster_size: 2\n  enable_automatic_failover: true\n",
	    no_replica, false, SAT_NOON,
	    "add-replicas(0->1) modify[enable_automatic_failover]");
}

static void
shards5_small(struct observed *o)
{
	o->num_node_groups = 5;
	free(o->instance_type);
	o->instance_type = xstrdup("cache.t4g.small");
}

static void
shards2(struct observed *o)
{
	o->num_node_groups = 2;
}

static void
test_shards_and_node_type_order(void **state)
{
	/* Removing shards: grow the node type first. */
	check_plan("  instance_type: cache.r7g.large\n  cluster_mode: "
	    "{enabled: true, num_node_groups: 3}\n  apply_immediately: true\n",
	    shards5_small, false, SAT_NOON,
	    "modify[instance_type] remove-shards(5->3)");
	check_plan("  cluster_mode: {enabled: true, num_node_groups: 4}\n",
	    shards2, false, SAT_NOON, "add-shards(2->4)");
}

static void
old_version(struct observed *o)
{
	free(o->engine_version);
	o->engine_version = xstrdup("6.2.6");
	o->snapshot_retention_limit = 1;
}

static void
test_disruptive_changes_wait_for_window(void **state)
{
	/* Outside the window: the retention change goes now, the engine
	 * upgrade waits. */
	check_plan("  engine_version: \"7.0\"\n", old_version, false, SAT_NOON,
	    "modify[snapshot_retention_limit] modify!deferred[engine_version]");
	/* Inside the window (sun 07:00-08:00): all at once. */
	check_plan("  engine_version: \"7.0\"\n", old_version, false, SUN_0730,
	    "modify[engine_version,snapshot_retention_limit]");
	/* apply_immediately: now. */
	check_plan("  engine_version: \"7.0\"\n  apply_immediately: true\n",
	    old_version, false, SAT_NOON,
	    "modify[engine_version,snapshot_retention_limit]");
}

static void
other_port_mode(struct observed *o)
{
	o->port = 6400;
	o->at_rest_encryption = true;
}

static void
was_cluster_mode(struct observed *o)
{
	o->cluster_mode = true;
	o->num_node_groups = 3;
}

static void
test_replacement_fields_are_never_applied(void **state)
{
	struct cluster_spec	*s = parse("  cluster_size: 2\n");
	struct observed		*o = obs_like(s);
	struct plan		 p;

	other_port_mode(o);
	plan_compute(s, o, false, SAT_NOON, &p);
	assert_int_equal(p.n, 1);
	assert_int_equal(p.steps[0].kind, STEP_REPLACE);
	assert_null(plan_next(&p));
	plan_free(&p);
	observed_free(o);
	spec_free(s);
	check_plan("  cluster_size: 2\n", other_port_mode, false, SAT_NOON,
	    "needs-replacement[port,enable_at_rest_encryption]");
	/* Cluster mode flipped: shard counts are meaningless, stop there. */
	check_plan("  cluster_size: 2\n", was_cluster_mode, false, SAT_NOON,
	    "needs-replacement[cluster_mode.enabled]");
}

static void
params_differ(struct observed *o)
{
	kvlist_free(&o->parameters);
	kvlist_add(&o->parameters, "maxmemory-policy", "noeviction");
	o->snapshot_window.start = 0;
	o->multi_az = true;
}

static void
test_settings_in_one_modify(void **state)
{
	check_plan("  cluster_size: 2\n  parameters: {maxmemory-policy: "
	    "allkeys-lru, timeout: \"300\"}\n", params_differ, false, SAT_NOON,
	    "modify[maxmemory-policy,timeout,snapshot_window,enable_multi_az]");
}

static void
param_left_over(struct observed *o)
{
	kvlist_add(&o->parameters, "timeout", "300");
}

/* A parameter taken out of the spec goes back to its default. */
static void
test_removed_parameter_resets(void **state)
{
	const char		*yaml = "  cluster_size: 2\n  parameters: "
	    "{maxmemory-policy: allkeys-lru}\n";
	struct cluster_spec	*s;
	struct observed		*o;
	struct plan		 p;
	struct strbuf		 sb;
	json_t			*j, *c;

	/* A rolling restart: outside the maintenance window it waits. */
	check_plan(yaml, param_left_over, false, SAT_NOON,
	    "modify!deferred[timeout]");
	check_plan(yaml, param_left_over, false, SUN_0730, "modify[timeout]");
	check_plan("  cluster_size: 2\n  apply_immediately: true\n",
	    param_left_over, false, SAT_NOON, "modify[timeout]");
	/* What an operator reads in `cachekeeper plan`. */
	s = parse(yaml);
	o = obs_like(s);
	param_left_over(o);
	plan_compute(s, o, false, SUN_0730, &p);
	assert_int_equal(p.n, 1);
	assert_true(p.steps[0].changes[0].reset);
	assert_true(p.steps[0].changes[0].disruptive);
	strbuf_init(&sb);
	plan_format(&p, &sb);
	assert_non_null(strstr(sb.s, "timeout: \"300\" -> (default, by a "
	    "rolling restart)"));
	strbuf_free(&sb);
	j = plan_to_json(&p);
	c = json_array_get(json_object_get(json_array_get(json_object_get(j,
	    "steps"), 0), "changes"), 0);
	assert_string_equal(json_string_value(json_object_get(c, "field")),
	    "timeout");
	assert_true(json_is_null(json_object_get(c, "to")));
	json_decref(j);
	plan_free(&p);
	observed_free(o);
	spec_free(s);
}

static void
test_engine_version_matching(void **state)
{
	assert_true(engine_version_matches("7.0", "7.0.15"));
	assert_true(engine_version_matches("7.0", "7.0"));
	assert_false(engine_version_matches("7.0", "7.01.1"));
	assert_true(engine_version_matches("7.x", "7.1.0"));
	assert_false(engine_version_matches("7.x", "6.2.6"));
	assert_true(engine_version_matches("6.2.6", "6.2.6"));
	assert_false(engine_version_matches("6.2.6", "6.2.14"));
}

static void
test_engine_downgrade_needs_replacement(void **state)
{
	assert_true(engine_version_downgrade("6.2", "7.0.15"));
	assert_true(engine_version_downgrade("7.0", "7.1.0"));
	assert_false(engine_version_downgrade("7.x", "7.1.0"));
	assert_false(engine_version_downgrade("7.1", "7.0.15"));
	assert_false(engine_version_downgrade("7.0", "7.0.15"));
	/* obs_like reports 7.0.15: asking for 6.2 is never applied. */
	check_plan("  engine_version: \"6.2\"\n  apply_immediately: true\n",
	    NULL, false, SAT_NOON, "needs-replacement[engine_version "
	    "(a downgrade)]");
}

static void
ec_fields(struct observed *o)
{
	o->defers_disruptive = true;
	o->has_security_groups = true;
	strlist_add(&o->security_groups, "sg-1");
	o->has_topic = true;
	o->has_tags = true;
	kvlist_add(&o->tags, "team", "old");
	free(o->engine_version);
	o->engine_version = xstrdup("6.2.6");
	o->subnet_group = xstrdup("old-subnets");
	o->drill_node_group = xstrdup("0001");
}

static void
test_backend_reported_fields(void **state)
{
	/* A backend that defers disruptive changes itself gets them at
	 * once; settings only it reports are compared; fields it cannot
	 * change are replacements; a drill waits for a quiet plan. */
	check_plan("  engine_version: \"7.0\"\n  tags: {team: web, env: prod}\n"
	    "  elasticache:\n    security_group_ids: [sg-1, sg-2]\n"
	    "    notification_topic_arn: arn:aws:sns:us-east-1:1:t\n"
	    "    subnet_group_name: new-subnets\n", ec_fields, false,
	    SAT_NOON, "needs-replacement[elasticache.subnet_group_name] "
	    "modify[engine_version,elasticache.security_group_ids,"
	    "elasticache.notification_topic_arn,tags,tags]");
}

static void
drill_only(struct observed *o)
{
	o->drill_node_group = xstrdup("0002");
}

static void
drill_and_fewer(struct observed *o)
{
	drill_only(o);
	o->replicas_per_node_group = 1;
}

static void
test_failover_drill_step(void **state)
{
	check_plan("  cluster_size: 2\n", drill_only, false, SAT_NOON,
	    "failover-drill[node_group]");
	/* Not while anything else is to do. */
	check_plan("  cluster_size: 3\n", drill_and_fewer, false, SAT_NOON,
	    "add-replicas(1->2)");
}

static void
test_plan_format(void **state)
{
	struct cluster_spec	*s = parse("  engine_version: \"7.0\"\n");
	struct observed		*o = obs_like(s);
	struct plan		 p;
	struct strbuf		 sb;

	old_version(o);
	plan_compute(s, o, false, SAT_NOON, &p);
	strbuf_init(&sb);
	plan_format(&p, &sb);
	assert_string_equal(sb.s,
	    "  ~ modify\n"
	    "      snapshot_retention_limit: \"1\" -> \"7\"\n"
	    "  ~ modify (deferred to the maintenance window)\n"
	    "      engine_version: \"6.2.6\" -> \"7.0\"\n");
	strbuf_free(&sb);
	plan_free(&p);
	observed_free(o);
	spec_free(s);
}

/* The reconciler against the test backend on a real event loop. */
struct loop {
	struct event_base	*base;
	int			 changes;
};

static void
on_change(void *arg)
{
	((struct loop *)arg)->changes++;
}

static void
on_retire(void *arg, const char *name)
{
}

static void
run_until(struct event_base *base, struct reconciler *r, enum phase want,
    bool insync, int timeout_ms)
{
	uint64_t	 t0 = clock_mono_ms();

	while (!(reconciler_phase(r) == want &&
	    (!insync || reconciler_in_sync(r)))) {
		if (clock_mono_ms() - t0 > (uint64_t)timeout_ms) {
			print_error("phase %s, wanted %s\n",
			    phase_name(reconciler_phase(r)), phase_name(want));
			fail();
		}
		event_base_loop(base, EVLOOP_ONCE);
	}
}

static void
test_reconciler_converges_with_test_backend(void **state)
{
	struct loop		 lp = { 0 };
	struct ctl_env		 env = { 0 };
	struct reconciler	*r;
	struct cluster_spec	*s1, *s2, *s3;
	struct diags		 errs;
	json_t			*st;

	backend_register(&backend_test);
	lp.base = event_base_new();
	env.base = lp.base;
	env.benv.base = lp.base;
	env.resync_ms = 60000;
	env.on_change = on_change;
	env.on_retire = on_retire;
	env.arg = &lp;
	s1 = parse("  cluster_size: 2\n");
	free(s1->backend);
	s1->backend = xstrdup("test");
	r = reconciler_new(&env, "c");
	reconciler_set_spec(r, s1, NULL);
	assert_int_equal(reconciler_phase(r), PHASE_PENDING);
	run_until(lp.base, r, PHASE_CREATING, false, 2000);
	run_until(lp.base, r, PHASE_AVAILABLE, true, 2000);

	/* A new generation converges too. */
	s2 = parse("  cluster_size: 4\n");
	free(s2->backend);
	s2->backend = xstrdup("test");
	reconciler_set_spec(r, s2, NULL);
	assert_false(reconciler_in_sync(r));
	run_until(lp.base, r, PHASE_MODIFYING, false, 2000);
	run_until(lp.base, r, PHASE_AVAILABLE, true, 2000);
	st = reconciler_status_json(r);
	assert_int_equal(json_integer_value(json_object_get(json_object_get(
	    st, "endpoints"), "nodes")), 4);
	json_decref(st);

	/* Spec errors keep the last good spec but show spec-error. */
	diags_init(&errs);
	diags_add(&errs, "t.yaml", 3, 5, "broken");
	s3 = parse("  cluster_size: 6\n");
	reconciler_set_spec(r, NULL, &errs);
	assert_int_equal(reconciler_phase(r), PHASE_SPEC_ERROR);
	assert_ptr_equal(reconciler_spec(r), s2);
	reconciler_set_spec(r, s2, NULL);
	assert_int_equal(reconciler_phase(r), PHASE_AVAILABLE);
	assert_true(lp.changes >= 4);

	diags_free(&errs);
	spec_free(s1);
	spec_free(s2);
	spec_free(s3);
	reconciler_free(r);
	test_backend_cleanup();
	event_base_free(lp.base);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_create_when_absent),
		cmocka_unit_test(test_in_sync_is_empty),
		cmocka_unit_test(test_busy_cluster_waits),
		cmocka_unit_test(test_deletion_follows_policy),
		cmocka_unit_test(test_replicas_and_failover_order),
		cmocka_unit_test(test_shards_and_node_type_order),
		cmocka_unit_test(test_disruptive_changes_wait_for_window),
		cmocka_unit_test(test_replacement_fields_are_never_applied),
		cmocka_unit_test(test_settings_in_one_modify),
		cmocka_unit_test(test_removed_parameter_resets),
		cmocka_unit_test(test_engine_version_matching),
		cmocka_unit_test(test_engine_downgrade_needs_replacement),
		cmocka_unit_test(test_backend_reported_fields),
		cmocka_unit_test(test_failover_drill_step),
		cmocka_unit_test(test_plan_format),
		cmocka_unit_test(test_reconciler_converges_with_test_backend),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
