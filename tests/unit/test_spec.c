/*
 * Unit tests of cluster spec parsing and validation (config/spec.c and the
 * readers and YAML tree under it). Most cases are rows of one table: a YAML
 * text and the exact diagnostics a user must see, "LINE:COL: message", or
 * for a valid text a check of the parsed values. The rest need files on
 * disk (auth token files), generated input (alias bombs, 1 MiB files) or
 * two parses (generations, all-or-nothing).
 *
 * Regression rows for fixed bugs say so in their comments. Rows whose
 * message ends in '*' check position and start only, where the wording
 * may still improve.
 */
#include "config.h"

#include <sys/stat.h>

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "ckunit.h"
#include "spec.h"

#define HDR \
	"apiVersion: cachekeeper/v1\n" \
	"kind: RedisCluster\n" \
	"metadata:\n" \
	"  name: web\n" \
	"spec:\n"
#define HDR_NAMED(n) \
	"apiVersion: cachekeeper/v1\n" \
	"kind: RedisCluster\n" \
	"metadata:\n" \
	"  name: " n "\n" \
	"spec:\n"

#define MSG_ENGINE \
	"spec.engine_version must be a Redis version such as 7.0, 7.x or " \
	"6.2.6 (4.0 to 7.x), got "
#define MSG_ITYPE \
	"spec.instance_type must look like cache.<family>.<size>, e.g. " \
	"cache.t4g.small, got "
#define MSG_NAME \
	" (a letter first, then a-z, 0-9 and '-', no '--', no trailing " \
	"'-'), got "
#define MSG_WEEKLY \
	"must look like ddd:hh:mm-ddd:hh:mm with ddd one of sun, mon, tue, " \
	"wed, thu, fri, sat (UTC)"
#define MSG_SIZE \
	"spec.local.maxmemory must be a size such as 256mb or 1gb (units k, " \
	"kb, m, mb, g, gb), got "

#define FILE_NAME	"t.yaml"

#define X16	"xxxxxxxxxxxxxxxx"
#define X64	X16 X16 X16 X16
#define X256	X64 X64 X64 X64

struct spec_case {
	const char	*name;
	const char	*yaml;
	size_t		 len;		/* 0: strlen(yaml) */
	const char	*want[8];	/* none: the text is valid */
	size_t		 nspecs;	/* valid texts: specs expected */
	void		(*check)(const struct spec_list *);
	const char	*default_backend;
};

#define BAD(n, y, ...)	{ .name = n, .yaml = y, .want = { __VA_ARGS__ } }
#define GOOD(n, y, c)	{ .name = n, .yaml = y, .nspecs = 1, .check = c }

static int
parse(const char *yaml, size_t len, const char *default_backend,
    struct spec_list *l, struct diags *d)
{
	struct spec_opts	 o = { default_backend, NULL };

	memset(l, 0, sizeof *l);
	diags_init(d);
	return spec_parse_buffer(FILE_NAME, yaml, len, &o, l, d);
}

static char *
fmt_window(const struct window *w)
{
	static char	 buf[32];

	window_format(w, buf, sizeof buf);
	return buf;
}

/* Checks of valid texts. */

static void
check_minimal(const struct spec_list *l)
{
	const struct cluster_spec	*s = l->v[0];

	assert_string_equal(s->name, "web");
	assert_string_equal(s->file, FILE_NAME);
	assert_int_equal(s->line, 4);
	assert_int_equal(s->col, 9);
	assert_string_equal(s->backend, "local");
	assert_string_equal(s->engine_version, "7.0");
	assert_string_equal(s->instance_type, "cache.t4g.micro");
	assert_int_equal(s->port, 6379);
	assert_int_equal(s->reader_port, 6380);
	assert_false(s->cluster_mode);
	assert_int_equal(s->cluster_size, 2);
	assert_int_equal(s->num_node_groups, 1);
	assert_int_equal(s->replicas_per_node_group, 1);
	assert_int_equal(spec_node_count(s), 2);
	/* A replica exists, so failover is on unless the user says no. */
	assert_true(s->automatic_failover);
	assert_false(s->multi_az);
	assert_string_equal(fmt_window(&s->snapshot_window), "05:00-06:00");
	assert_string_equal(fmt_window(&s->maintenance_window),
	    "sun:07:00-sun:08:00");
	assert_int_equal(s->snapshot_retention_limit, 7);
	assert_true(s->final_snapshot);
	assert_false(s->apply_immediately);
	assert_false(s->transit_encryption);
	assert_false(s->at_rest_encryption);
	assert_null(s->auth_token_file);
	assert_null(s->parameter_group_name);
	assert_int_equal(s->parameters.n, 0);
	assert_int_equal(s->tags.n, 0);
	assert_int_equal(s->labels.n, 0);
	assert_int_equal(s->deletion_policy, DELETION_RETAIN);
	assert_int_equal(s->local.persistence, PERSIST_RDB);
	assert_int_equal(s->local.maxmemory, 0);
	assert_int_equal(s->refs, 1);
	assert_int_equal(l->nrefs, 1);
	assert_string_equal(l->refs[0].name, "web");
	assert_int_equal(l->refs[0].line, 4);
	assert_int_equal(l->refs[0].col, 9);
}

static void
check_backend_elasticache(const struct spec_list *l)
{
	assert_string_equal(l->v[0]->backend, "elasticache");
}

static void
check_backend_local(const struct spec_list *l)
{
	assert_string_equal(l->v[0]->backend, "local");
}

static void
check_cluster_mode_defaults(const struct spec_list *l)
{
	const struct cluster_spec	*s = l->v[0];

	assert_true(s->cluster_mode);
	assert_int_equal(s->num_node_groups, 3);
	assert_int_equal(s->replicas_per_node_group, 1);
	assert_true(s->automatic_failover);
	assert_int_equal(spec_node_count(s), 6);
}

static void
check_cluster_mode_no_replicas(const struct spec_list *l)
{
	const struct cluster_spec	*s = l->v[0];

	assert_true(s->cluster_mode);
	assert_int_equal(s->num_node_groups, 2);
	assert_int_equal(s->replicas_per_node_group, 0);
	assert_false(s->automatic_failover);
	assert_int_equal(spec_node_count(s), 2);
}

static void
check_single_node(const struct spec_list *l)
{
	const struct cluster_spec	*s = l->v[0];

	assert_int_equal(s->cluster_size, 1);
	assert_int_equal(s->replicas_per_node_group, 0);
	/* No replica: failover defaults to off instead of failing. */
	assert_false(s->automatic_failover);
	assert_int_equal(spec_node_count(s), 1);
}

static void
check_six_nodes(const struct spec_list *l)
{
	const struct cluster_spec	*s = l->v[0];

	assert_int_equal(s->replicas_per_node_group, 5);
	assert_int_equal(spec_node_count(s), 6);
	assert_true(s->automatic_failover);
	assert_true(s->multi_az);
}

static void
check_midnight(const struct spec_list *l)
{
	const struct cluster_spec	*s = l->v[0];

	assert_int_equal(s->snapshot_window.start, 23 * 60 + 30);
	assert_int_equal(s->snapshot_window.len, 60);
	assert_string_equal(fmt_window(&s->snapshot_window), "23:30-00:30");
}

static void
check_week_wrap(const struct spec_list *l)
{
	const struct cluster_spec	*s = l->v[0];

	assert_true(s->maintenance_window.weekly);
	assert_int_equal(s->maintenance_window.start, 6 * 1440 + 23 * 60 + 30);
	assert_int_equal(s->maintenance_window.len, 60);
	assert_string_equal(fmt_window(&s->maintenance_window),
	    "sat:23:30-sun:00:30");
}

static void
check_day_case(const struct spec_list *l)
{
	assert_string_equal(fmt_window(&l->v[0]->maintenance_window),
	    "mon:03:00-mon:04:00");
}

static void
check_name_40(const struct spec_list *l)
{
	assert_int_equal(strlen(l->v[0]->name), 40);
}

static void
check_engine_7x(const struct spec_list *l)
{
	assert_string_equal(l->v[0]->engine_version, "7.x");
}

static void
check_engine_626(const struct spec_list *l)
{
	assert_string_equal(l->v[0]->engine_version, "6.2.6");
}

static void
check_engine_70(const struct spec_list *l)
{
	assert_string_equal(l->v[0]->engine_version, "7.0");
}

static void
check_two_docs(const struct spec_list *l)
{
	assert_string_equal(l->v[0]->name, "web");
	assert_int_equal(l->v[0]->line, 4);
	assert_string_equal(l->v[1]->name, "api");
	assert_int_equal(l->v[1]->line, 10);
	assert_int_equal(l->nrefs, 2);
	assert_true(l->v[0]->generation != l->v[1]->generation);
}

static void
check_alias(const struct spec_list *l)
{
	const struct cluster_spec	*s = l->v[0];

	assert_int_equal(s->labels.n, 1);
	assert_string_equal(kvlist_get(&s->labels, "team"), "cache");
	assert_int_equal(s->tags.n, 1);
	assert_string_equal(kvlist_get(&s->tags, "team"), "cache");
}

static void
check_local(const struct spec_list *l)
{
	const struct cluster_spec	*s = l->v[0];

	assert_int_equal(s->local.persistence, PERSIST_AOF);
	assert_int_equal(s->local.maxmemory, 256ULL * 1024 * 1024);
}

static void
check_persist_none(const struct spec_list *l)
{
	assert_int_equal(l->v[0]->local.persistence, PERSIST_NONE);
	assert_int_equal(l->v[0]->local.maxmemory, 1000ULL * 1000 * 1000);
}

static void
check_params(const struct spec_list *l)
{
	const struct kvlist	*p = &l->v[0]->parameters;

	assert_int_equal(p->n, 2);
	/* File order is kept, values are text (Redis takes text). */
	assert_string_equal(p->keys[0], "maxmemory-policy");
	assert_string_equal(p->values[0], "allkeys-lru");
	assert_string_equal(p->keys[1], "hz");
	assert_string_equal(p->values[1], "20");
}

static void
check_port_plus(const struct spec_list *l)
{
	assert_int_equal(l->v[0]->port, 7000);
	assert_int_equal(l->v[0]->reader_port, 7001);
}

static void
check_reader_port(const struct spec_list *l)
{
	assert_int_equal(l->v[0]->port, 65535);
	assert_int_equal(l->v[0]->reader_port, 6380);
}

static void
check_null_port(const struct spec_list *l)
{
	assert_int_equal(l->v[0]->port, 6379);
}

static void
check_deletion(const struct spec_list *l)
{
	assert_int_equal(l->v[0]->deletion_policy, DELETION_DELETE);
}

static void
check_arn(const struct spec_list *l)
{
	const struct spec_elasticache	*e = &l->v[0]->elasticache;

	assert_string_equal(e->notification_topic_arn,
	    "arn:aws:sns:eu-west-1:123456789012:ops");
	assert_int_equal(e->security_group_ids.n, 2);
	assert_string_equal(e->security_group_ids.v[1], "sg-2");
}

static void
check_bool_upper(const struct spec_list *l)
{
	assert_false(l->v[0]->final_snapshot);
	assert_true(l->v[0]->apply_immediately);
}

static void
check_leading_zero(const struct spec_list *l)
{
	/* Decimal, as documented; not YAML 1.1 octal. */
	assert_int_equal(l->v[0]->port, 700);
}

static void
check_none(const struct spec_list *l)
{
	(void)l;
}

/* A NUL byte ends a C string, so this case carries its length. */
static const char yaml_nul[] = HDR "  port: 70\00000\n";

static const struct spec_case cases[] = {
	/* Valid texts and their defaults. */
	GOOD("minimal_defaults", HDR, check_minimal),
	GOOD("spec_empty_map", HDR_NAMED("web") "  {}\n", check_minimal),
	GOOD("spec_null_explicit",
	    "apiVersion: cachekeeper/v1\nkind: RedisCluster\nmetadata:\n"
	    "  name: web\nspec: ~\n", check_minimal),
	{ .name = "default_backend_from_opts", .yaml = HDR, .nspecs = 1,
	  .check = check_backend_elasticache,
	  .default_backend = "elasticache" },
	{ .name = "explicit_backend_beats_default",
	  .yaml = HDR "  backend: local\n", .nspecs = 1,
	  .check = check_backend_local, .default_backend = "elasticache" },
	GOOD("cluster_mode_defaults",
	    HDR "  cluster_mode:\n    enabled: true\n",
	    check_cluster_mode_defaults),
	GOOD("cluster_mode_no_replicas_failover_off",
	    HDR "  cluster_mode:\n    enabled: true\n    num_node_groups: 2\n"
	    "    replicas_per_node_group: 0\n"
	    "  enable_automatic_failover: false\n",
	    check_cluster_mode_no_replicas),
	GOOD("single_node_failover_defaults_off",
	    HDR "  cluster_size: 1\n", check_single_node),
	GOOD("six_nodes_multi_az",
	    HDR "  cluster_size: 6\n  enable_multi_az: true\n",
	    check_six_nodes),
	GOOD("snapshot_window_crosses_midnight",
	    HDR "  snapshot_window: 23:30-00:30\n", check_midnight),
	GOOD("maintenance_window_wraps_week",
	    HDR "  maintenance_window: sat:23:30-sun:00:30\n", check_week_wrap),
	GOOD("maintenance_day_any_case",
	    HDR "  maintenance_window: MON:03:00-Mon:04:00\n", check_day_case),
	GOOD("windows_touching_do_not_overlap",
	    HDR "  snapshot_window: 06:00-07:00\n", check_none),
	GOOD("name_40_chars",
	    HDR_NAMED("abcdefghij-abcdefghij-abcdefghij-abcdefg"),
	    check_name_40),
	GOOD("engine_7x", HDR "  engine_version: 7.x\n", check_engine_7x),
	GOOD("engine_626", HDR "  engine_version: 6.2.6\n", check_engine_626),
	GOOD("engine_quoted_70", HDR "  engine_version: \"7.0\"\n",
	    check_engine_70),
	{ .name = "two_docs_and_empty_trailing_doc", .nspecs = 2,
	  .yaml = HDR "---\n" HDR_NAMED("api") "---\n",
	  .check = check_two_docs },
	{ .name = "leading_and_middle_empty_docs", .nspecs = 1,
	  .yaml = "---\n---\n# nothing here\n---\n" HDR,
	  .check = check_none },
	{ .name = "empty_file", .yaml = "", .nspecs = 0 },
	{ .name = "comment_only", .yaml = "# no clusters yet\n", .nspecs = 0 },
	GOOD("alias_shared_map",
	    "apiVersion: cachekeeper/v1\nkind: RedisCluster\nmetadata:\n"
	    "  name: web\n  labels: &common\n    team: cache\nspec:\n"
	    "  tags: *common\n", check_alias),
	GOOD("local_maxmemory_aof",
	    HDR "  local:\n    maxmemory: 256mb\n    persistence: aof\n",
	    check_local),
	GOOD("local_maxmemory_g_none",
	    HDR "  local:\n    maxmemory: 1G\n    persistence: none\n",
	    check_persist_none),
	GOOD("parameters_kept_in_order",
	    HDR "  parameters:\n    maxmemory-policy: allkeys-lru\n"
	    "    hz: 20\n", check_params),
	GOOD("port_plus_sign", HDR "  port: +7000\n", check_port_plus),
	GOOD("port_leading_zero_is_decimal", HDR "  port: 0700\n",
	    check_leading_zero),
	GOOD("bool_capitalised",
	    HDR "  final_snapshot: FALSE\n  apply_immediately: True\n",
	    check_bool_upper),
	GOOD("port_65535_with_reader_port",
	    HDR "  port: 65535\n  reader_port: 6380\n", check_reader_port),
	GOOD("null_value_means_default", HDR "  port:\n", check_null_port),
	GOOD("deletion_delete", HDR "  deletion_policy: delete\n",
	    check_deletion),
	GOOD("elasticache_arn_and_sgs",
	    HDR "  elasticache:\n    notification_topic_arn: "
	    "arn:aws:sns:eu-west-1:123456789012:ops\n"
	    "    security_group_ids: [sg-1, sg-2]\n", check_arn),
	GOOD("crlf_line_endings",
	    "apiVersion: cachekeeper/v1\r\nkind: RedisCluster\r\n"
	    "metadata:\r\n  name: web\r\nspec:\r\n  port: 7000\r\n",
	    check_none),

	/* Wrong types. */
	BAD("port_string", HDR "  port: abc\n",
	    "6:9: spec.port must be an integer in 1..65535, got 'abc'"),
	BAD("port_map", HDR "  port: {a: 1}\n",
	    "6:9: spec.port must be an integer in 1..65535, got a mapping"),
	BAD("port_list", HDR "  port: [6379]\n",
	    "6:9: spec.port must be an integer in 1..65535, got a list"),
	BAD("port_float", HDR "  port: 6379.0\n",
	    "6:9: spec.port must be an integer in 1..65535, got '6379.0'"),
	BAD("port_hex", HDR "  port: 0x18eb\n",
	    "6:9: spec.port must be an integer in 1..65535, got '0x18eb'"),
	/* Reported: "got '6379'" does not say that the quotes are wrong. */
	BAD("port_quoted", HDR "  port: \"6379\"\n",
	    "6:9: spec.port must be an integer in 1..65535, got *"),
	BAD("engine_version_map", HDR "  engine_version: {a: 1}\n",
	    "6:19: spec.engine_version must be a string, got a mapping"),
	BAD("instance_type_list", HDR "  instance_type: [cache.t4g.micro]\n",
	    "6:18: spec.instance_type must be a string, got a list"),
	BAD("multi_az_list", HDR "  enable_multi_az: [true]\n",
	    "6:20: spec.enable_multi_az must be true or false, got a list"),
	BAD("bool_yes_is_not_bool", HDR "  enable_multi_az: yes\n",
	    "6:20: spec.enable_multi_az must be true or false, got 'yes'"),
	/* Reported: "got 'true'" does not say that the quotes are wrong. */
	BAD("bool_quoted", HDR "  final_snapshot: \"true\"\n",
	    "6:19: spec.final_snapshot must be true or false, got *"),
	BAD("cluster_mode_scalar", HDR "  cluster_mode: on\n",
	    "6:17: spec.cluster_mode must be a mapping, got 'on'"),
	BAD("spec_list", HDR "  - port\n",
	    "6:3: spec must be a mapping, got a list"),
	BAD("metadata_scalar",
	    "apiVersion: cachekeeper/v1\nkind: RedisCluster\nmetadata: web\n"
	    "spec:\n",
	    "3:11: metadata must be a mapping, got 'web'"),
	BAD("document_list", "- a\n- b\n",
	    "1:1: document must be a mapping, got a list"),
	BAD("document_scalar", "hello\n",
	    "1:1: document must be a mapping, got 'hello'"),
	BAD("tags_list", HDR "  tags: [a]\n",
	    "6:9: spec.tags must be a mapping, got a list"),
	BAD("label_value_map",
	    "apiVersion: cachekeeper/v1\nkind: RedisCluster\nmetadata:\n"
	    "  name: web\n  labels:\n    tier: 1\n    x: {a: b}\nspec:\n",
	    "7:8: metadata.labels.x must be a string, got a mapping"),
	BAD("parameter_value_list", HDR "  parameters:\n    hz: [1]\n",
	    "7:9: spec.parameters.hz must be a string, got a list"),
	/* Reported: a null value is shown as '' rather than as null. */
	BAD("parameter_value_null", HDR "  parameters:\n    hz:\n",
	    "7:8: spec.parameters.hz must be a string, got *"),
	BAD("cluster_mode_null", HDR "  cluster_mode: ~\n",
	    "6:17: spec.cluster_mode must be a mapping, got '~'"),
	/* Documented as an error; reported: null is shown as ''. */
	BAD("security_groups_null",
	    HDR "  elasticache:\n    security_group_ids:\n",
	    "7:24: spec.elasticache.security_group_ids must be a list, got *"),
	BAD("parameters_scalar", HDR "  parameters: hz\n",
	    "6:15: spec.parameters must be a mapping, got 'hz'"),
	BAD("security_groups_scalar",
	    HDR "  elasticache:\n    security_group_ids: sg-1\n",
	    "7:25: spec.elasticache.security_group_ids must be a list, got "
	    "'sg-1'"),
	BAD("availability_zone_map",
	    HDR "  elasticache:\n    preferred_availability_zones:\n"
	    "      - {a: b}\n",
	    "8:9: spec.elasticache.preferred_availability_zones[0] must be a "
	    "string, got a mapping"),
	BAD("window_map", HDR "  snapshot_window: {a: b}\n",
	    "6:20: spec.snapshot_window must be a string like 06:00-07:00, "
	    "got a mapping"),
	BAD("maintenance_window_list", HDR "  maintenance_window: [a]\n",
	    "6:23: spec.maintenance_window must be a string like "
	    "sat:07:00-sat:08:00, got a list"),
	BAD("nul_escape_in_string", HDR "  engine_version: \"7.0\\0\"\n",
	    "6:19: spec.engine_version must not contain NUL characters"),
	BAD("key_not_scalar", HDR "  ? [a]\n  : b\n",
	    "6:5: spec: keys must be plain words, got a list"),

	/* Numbers out of range. */
	BAD("num_node_groups_0",
	    HDR "  cluster_mode:\n    enabled: true\n    num_node_groups: 0\n",
	    "8:22: spec.cluster_mode.num_node_groups must be 1..500, got 0"),
	BAD("num_node_groups_501",
	    HDR "  cluster_mode:\n    enabled: true\n"
	    "    num_node_groups: 501\n",
	    "8:22: spec.cluster_mode.num_node_groups must be 1..500, got 501"),
	BAD("replicas_6",
	    HDR "  cluster_mode:\n    enabled: true\n"
	    "    replicas_per_node_group: 6\n",
	    "8:30: spec.cluster_mode.replicas_per_node_group must be 0..5, "
	    "got 6"),
	BAD("replicas_negative",
	    HDR "  cluster_mode:\n    enabled: true\n"
	    "    replicas_per_node_group: -1\n",
	    "8:30: spec.cluster_mode.replicas_per_node_group must be 0..5, "
	    "got -1"),
	BAD("cluster_size_0", HDR "  cluster_size: 0\n",
	    "6:17: spec.cluster_size must be 1..6, got 0"),
	BAD("cluster_size_7", HDR "  cluster_size: 7\n",
	    "6:17: spec.cluster_size must be 1..6, got 7"),
	BAD("port_0", HDR "  port: 0\n",
	    "6:9: spec.port must be 1..65535, got 0"),
	BAD("port_70000", HDR "  port: 70000\n",
	    "6:9: spec.port must be 1..65535, got 70000"),
	BAD("port_negative", HDR "  port: -1\n",
	    "6:9: spec.port must be 1..65535, got -1"),
	BAD("port_huge", HDR "  port: 99999999999999999999\n",
	    "6:9: spec.port must be 1..65535, got 99999999999999999999"),
	BAD("port_huge_negative", HDR "  port: -99999999999999999999\n",
	    "6:9: spec.port must be 1..65535, got -99999999999999999999"),
	BAD("retention_36", HDR "  snapshot_retention_limit: 36\n",
	    "6:29: spec.snapshot_retention_limit must be 0..35, got 36"),
	BAD("retention_negative", HDR "  snapshot_retention_limit: -1\n",
	    "6:29: spec.snapshot_retention_limit must be 0..35, got -1"),
	BAD("port_65535_no_room_for_reader", HDR "  port: 65535\n",
	    "6:9: spec.port 65535 leaves no room for the default reader_port "
	    "(port+1); set spec.reader_port"),
	BAD("reader_port_equals_port",
	    HDR "  port: 7000\n  reader_port: 7000\n",
	    "7:16: spec.reader_port must differ from spec.port (7000)"),

	/* Windows. */
	BAD("snapshot_window_single_digit_hour",
	    HDR "  snapshot_window: 5:00-6:00\n",
	    "6:20: spec.snapshot_window must look like hh:mm-hh:mm (UTC, "
	    "24-hour), got '5:00-6:00'"),
	BAD("snapshot_window_hour_24", HDR "  snapshot_window: 24:00-01:00\n",
	    "6:20: spec.snapshot_window must look like hh:mm-hh:mm (UTC, "
	    "24-hour), got '24:00-01:00'"),
	BAD("snapshot_window_30_minutes",
	    HDR "  snapshot_window: 05:00-05:30\n",
	    "6:20: spec.snapshot_window must be at least 60 minutes long, got "
	    "'05:00-05:30'"),
	BAD("snapshot_window_59_minutes_over_midnight",
	    HDR "  snapshot_window: 23:30-00:29\n",
	    "6:20: spec.snapshot_window must be at least 60 minutes long, got "
	    "'23:30-00:29'"),
	BAD("maintenance_window_no_end_day",
	    HDR "  maintenance_window: sun:07:00-08:00\n",
	    "6:23: spec.maintenance_window " MSG_WEEKLY
	    ", got 'sun:07:00-08:00'"),
	BAD("maintenance_window_long_day_name",
	    HDR "  maintenance_window: sunday:07:00-sunday:08:00\n",
	    "6:23: spec.maintenance_window " MSG_WEEKLY
	    ", got 'sunday:07:00-sunday:08:00'"),
	BAD("maintenance_window_25h",
	    HDR "  maintenance_window: sun:07:00-mon:08:00\n",
	    "6:23: spec.maintenance_window must be at most 24 hours long, got "
	    "'sun:07:00-mon:08:00'"),
	BAD("maintenance_window_59_minutes",
	    HDR "  maintenance_window: sun:07:00-sun:07:59\n",
	    "6:23: spec.maintenance_window must be at least 60 minutes long, "
	    "got 'sun:07:00-sun:07:59'"),
	/* 24 h is allowed, but then it must cover some daily snapshot slot. */
	BAD("maintenance_window_24h_always_overlaps",
	    HDR "  maintenance_window: sun:07:00-mon:07:00\n",
	    "6:23: spec.snapshot_window 05:00-06:00 overlaps "
	    "maintenance_window sun:07:00-mon:07:00; they must not overlap"),
	BAD("windows_overlap",
	    HDR "  snapshot_window: 06:30-07:30\n"
	    "  maintenance_window: sun:07:00-sun:08:00\n",
	    "6:20: spec.snapshot_window 06:30-07:30 overlaps "
	    "maintenance_window sun:07:00-sun:08:00; they must not overlap"),
	BAD("windows_overlap_default_maintenance",
	    HDR "  snapshot_window: 06:30-07:30\n",
	    "6:20: spec.snapshot_window 06:30-07:30 overlaps "
	    "maintenance_window sun:07:00-sun:08:00; they must not overlap"),
	BAD("windows_overlap_default_snapshot",
	    HDR "  maintenance_window: mon:05:30-mon:06:30\n",
	    "6:23: spec.snapshot_window 05:00-06:00 overlaps "
	    "maintenance_window mon:05:30-mon:06:30; they must not overlap"),
	BAD("windows_overlap_across_week_end",
	    HDR "  snapshot_window: 23:00-01:00\n"
	    "  maintenance_window: sat:23:30-sun:00:30\n",
	    "6:20: spec.snapshot_window 23:00-01:00 overlaps "
	    "maintenance_window sat:23:30-sun:00:30; they must not overlap"),
	/* A bad window must not also produce an overlap error. */
	BAD("bad_window_no_overlap_noise",
	    HDR "  snapshot_window: 07:00-07:10\n"
	    "  maintenance_window: sun:07:00-sun:08:00\n",
	    "6:20: spec.snapshot_window must be at least 60 minutes long, got "
	    "'07:00-07:10'"),

	/* Rules between fields. */
	BAD("cluster_size_with_cluster_mode",
	    HDR "  cluster_mode:\n    enabled: true\n  cluster_size: 3\n",
	    "8:17: spec.cluster_size applies only when cluster_mode.enabled is "
	    "false; use cluster_mode.num_node_groups and "
	    "replicas_per_node_group"),
	BAD("shards_without_cluster_mode",
	    HDR "  cluster_mode:\n    num_node_groups: 3\n"
	    "    replicas_per_node_group: 2\n",
	    "7:22: spec.cluster_mode.num_node_groups applies only when "
	    "cluster_mode.enabled is true; use spec.cluster_size",
	    "8:30: spec.cluster_mode.replicas_per_node_group applies only when "
	    "cluster_mode.enabled is true; use spec.cluster_size"),
	BAD("shards_with_cluster_mode_false",
	    HDR "  cluster_mode:\n    enabled: false\n    num_node_groups: 3\n",
	    "8:22: spec.cluster_mode.num_node_groups applies only when "
	    "cluster_mode.enabled is true; use spec.cluster_size"),
	/* Out of range and misplaced: both are true, both are reported. */
	BAD("shards_out_of_range_and_misplaced",
	    HDR "  cluster_mode:\n    num_node_groups: 0\n",
	    "7:22: spec.cluster_mode.num_node_groups must be 1..500, got 0",
	    "7:22: spec.cluster_mode.num_node_groups applies only when "
	    "cluster_mode.enabled is true; use spec.cluster_size"),
	/*
	 * Regression (was a bug): an invalid cluster_mode.enabled
	 * leaves cluster_mode false, and the user who wrote "enabled: yes" is
	 * then told to drop num_node_groups for cluster_size. Only the real
	 * error should be reported.
	 */
	BAD("invalid_enabled_skips_cross_rules",
	    HDR "  cluster_mode:\n    enabled: yes\n    num_node_groups: 3\n",
	    "7:14: spec.cluster_mode.enabled must be true or false, got 'yes'"),
	BAD("failover_without_replicas",
	    HDR "  cluster_size: 1\n  enable_automatic_failover: true\n",
	    "7:30: spec.enable_automatic_failover needs at least one replica "
	    "(cluster_size >= 2)"),
	BAD("failover_without_replicas_cluster_mode",
	    HDR "  cluster_mode:\n    enabled: true\n"
	    "    replicas_per_node_group: 0\n"
	    "  enable_automatic_failover: true\n",
	    "9:30: spec.enable_automatic_failover needs at least one replica "
	    "(cluster_mode.replicas_per_node_group >= 1)"),
	BAD("failover_off_cluster_mode_with_replicas",
	    HDR "  cluster_mode:\n    enabled: true\n"
	    "  enable_automatic_failover: false\n",
	    "8:30: spec.enable_automatic_failover is required when cluster "
	    "mode is on and shards have replicas"),
	BAD("drill_needs_window", HDR "  failover_drill: {}\n",
	    "6:19: spec.failover_drill.window is required, e.g. "
	    "\"sun:10:00-sun:11:00\""),
	BAD("drill_window_daily", HDR
	    "  failover_drill: {window: \"10:00-11:00\"}\n", "6:28: "
	    "spec.failover_drill.window " MSG_WEEKLY ", got '10:00-11:00'"),
	BAD("drill_unknown_key", HDR
	    "  failover_drill: {windw: \"sun:10:00-sun:11:00\"}\n",
	    "6:20: unknown key 'windw' in spec.failover_drill, did you mean "
	    "'window'?"),
	BAD("drill_needs_failover", HDR "  cluster_size: 1\n"
	    "  failover_drill: {window: \"sun:10:00-sun:11:00\"}\n",
	    "7:19: spec.failover_drill needs enable_automatic_failover: true "
	    "(a drill fails over to a replica)"),
	BAD("multi_az_single_node",
	    HDR "  cluster_size: 1\n  enable_multi_az: true\n",
	    "7:20: spec.enable_multi_az needs enable_automatic_failover: true "
	    "(and at least one replica)"),
	BAD("multi_az_failover_off",
	    HDR "  enable_automatic_failover: false\n  enable_multi_az: true\n",
	    "7:20: spec.enable_multi_az needs enable_automatic_failover: true"),
	/* An invalid failover value must not drag multi_az down with it. */
	BAD("invalid_failover_no_multi_az_noise",
	    HDR "  enable_automatic_failover: yes\n  enable_multi_az: true\n",
	    "6:30: spec.enable_automatic_failover must be true or false, got "
	    "'yes'"),

	/* Names. */
	BAD("name_uppercase", HDR_NAMED("Web"),
	    "4:9: metadata.name must start with a lowercase letter" MSG_NAME
	    "'Web'"),
	BAD("name_leading_digit", HDR_NAMED("1web"),
	    "4:9: metadata.name must start with a lowercase letter" MSG_NAME
	    "'1web'"),
	BAD("name_double_dash", HDR_NAMED("we--b"),
	    "4:9: metadata.name must not contain '--'" MSG_NAME "'we--b'"),
	BAD("name_trailing_dash", HDR_NAMED("web-"),
	    "4:9: metadata.name must not end with '-'" MSG_NAME "'web-'"),
	BAD("name_41_chars",
	    HDR_NAMED("abcdefghij-abcdefghij-abcdefghij-abcdefgh"),
	    "4:9: metadata.name must be 1-40 characters" MSG_NAME
	    "'abcdefghij-abcdefghij-abcdefghij-abcdefgh'"),
	BAD("name_underscore", HDR_NAMED("we_b"),
	    "4:9: metadata.name may contain only a-z, 0-9 and '-'" MSG_NAME
	    "'we_b'"),
	BAD("name_empty_quoted", HDR_NAMED("\"\""),
	    "4:9: metadata.name must be 1-40 characters" MSG_NAME "''"),
	BAD("name_map", HDR_NAMED("{a: b}"),
	    "4:9: metadata.name must be a string, got a mapping"),

	/* Unknown and repeated keys. */
	BAD("unknown_key_did_you_mean", HDR "  engine_versoin: 7.0\n",
	    "6:3: unknown key 'engine_versoin' in spec, did you mean "
	    "'engine_version'?"),
	BAD("unknown_key_no_hint", HDR "  flavour: big\n",
	    "6:3: unknown key 'flavour' in spec"),
	BAD("unknown_top_key", HDR "spek: {}\n",
	    "6:1: unknown key 'spek' in document, did you mean 'spec'?"),
	BAD("unknown_metadata_key",
	    "apiVersion: cachekeeper/v1\nkind: RedisCluster\nmetadata:\n"
	    "  name: web\n  lables: {}\nspec:\n",
	    "5:3: unknown key 'lables' in metadata, did you mean 'labels'?"),
	BAD("unknown_cluster_mode_keys",
	    HDR "  cluster_mode:\n    enable: true\n    replicas: 1\n",
	    "7:5: unknown key 'enable' in spec.cluster_mode, did you mean "
	    "'enabled'?",
	    "8:5: unknown key 'replicas' in spec.cluster_mode"),
	BAD("unknown_elasticache_key",
	    HDR "  elasticache:\n    subnet_group: x\n",
	    "7:5: unknown key 'subnet_group' in spec.elasticache"),
	BAD("duplicate_key", HDR "  port: 7000\n  port: 7001\n",
	    "7:3: duplicate key 'port' in spec (first at line 6)"),
	BAD("duplicate_cluster_in_file", HDR "---\n" HDR,
	    "10:9: cluster 'web' is defined twice in this file (also at "
	    "line 4)"),
	BAD("merge_key",
	    HDR "  <<: {port: 7000}\n",
	    "6:3: merge keys ('<<') are not supported in spec; repeat the "
	    "fields or use separate files"),

	/* Header fields. */
	BAD("api_version_wrong",
	    "apiVersion: cachekeeper/v2\nkind: RedisCluster\nmetadata:\n"
	    "  name: web\nspec:\n",
	    "1:13: apiVersion must be 'cachekeeper/v1', got 'cachekeeper/v2'"),
	BAD("api_version_map",
	    "apiVersion: {a: 1}\nkind: RedisCluster\nmetadata:\n"
	    "  name: web\nspec:\n",
	    "1:13: apiVersion must be 'cachekeeper/v1', got a mapping"),
	BAD("kind_wrong",
	    "apiVersion: cachekeeper/v1\nkind: Redis\nmetadata:\n"
	    "  name: web\nspec:\n",
	    "2:7: kind must be 'RedisCluster', got 'Redis'"),
	BAD("everything_missing", "foo: 1\n",
	    "1:1: unknown key 'foo' in document",
	    "1:1: apiVersion is required (apiVersion: cachekeeper/v1)",
	    "1:1: kind is required (kind: RedisCluster)",
	    "1:1: metadata is required (with metadata.name)",
	    "1:1: spec is required"),
	BAD("metadata_missing",
	    "apiVersion: cachekeeper/v1\nkind: RedisCluster\nspec:\n",
	    "1:1: metadata is required (with metadata.name)"),
	BAD("spec_missing",
	    "apiVersion: cachekeeper/v1\nkind: RedisCluster\nmetadata:\n"
	    "  name: web\n",
	    "1:1: spec is required"),
	BAD("name_missing",
	    "apiVersion: cachekeeper/v1\nkind: RedisCluster\nmetadata:\n"
	    "  labels: {a: b}\nspec:\n",
	    "4:3: metadata.name is required"),

	/* Lengths of map keys and values. */
	BAD("label_key_64",
	    "apiVersion: cachekeeper/v1\nkind: RedisCluster\nmetadata:\n"
	    "  name: web\n  labels:\n    " X64 ": x\nspec:\n",
	    "6:5: metadata.labels: keys must be 1..63 characters, got 64"),
	BAD("label_key_empty",
	    "apiVersion: cachekeeper/v1\nkind: RedisCluster\nmetadata:\n"
	    "  name: web\n  labels:\n    '': x\nspec:\n",
	    "6:5: metadata.labels: keys must be 1..63 characters, got 0"),
	BAD("parameter_name_65", HDR "  parameters:\n    " X64 "x: y\n",
	    "7:5: spec.parameters: keys must be 1..64 characters, got 65"),
	BAD("parameter_value_1025",
	    HDR "  parameters:\n    hz: " X256 X256 X256 X256 "x\n",
	    "7:9: spec.parameters.hz must be at most 1024 characters, got "
	    "1025"),

	/* Redis parameters. */
	BAD("parameter_port_managed", HDR "  parameters:\n    port: '7000'\n",
	    "7:5: spec.parameters: 'port' is managed by cachekeeper and cannot "
	    "be set here"),
	BAD("parameters_secrets_managed",
	    HDR "  parameters:\n    requirepass: x\n    rename-command: y\n",
	    "7:5: spec.parameters: 'requirepass' is managed by cachekeeper and "
	    "cannot be set here",
	    "8:5: spec.parameters: 'rename-command' is managed by cachekeeper "
	    "and cannot be set here"),
	BAD("parameter_name_uppercase",
	    HDR "  parameters:\n    MaxMemory: 1gb\n",
	    "7:5: spec.parameters: 'MaxMemory' is not a Redis setting name "
	    "(lowercase a-z, 0-9 and '-')"),
	BAD("parameter_name_underscore",
	    HDR "  parameters:\n    max_memory: 1gb\n",
	    "7:5: spec.parameters: 'max_memory' is not a Redis setting name "
	    "(lowercase a-z, 0-9 and '-')"),

	/* Engine versions and instance types. */
	BAD("engine_8_0", HDR "  engine_version: 8.0\n",
	    "6:19: " MSG_ENGINE "'8.0'"),
	BAD("engine_major_only", HDR "  engine_version: 7\n",
	    "6:19: " MSG_ENGINE "'7'"),
	BAD("engine_abc", HDR "  engine_version: abc\n",
	    "6:19: " MSG_ENGINE "'abc'"),
	BAD("engine_3_2", HDR "  engine_version: 3.2\n",
	    "6:19: " MSG_ENGINE "'3.2'"),
	BAD("engine_four_parts", HDR "  engine_version: 7.0.1.2\n",
	    "6:19: " MSG_ENGINE "'7.0.1.2'"),
	BAD("engine_trailing_dot", HDR "  engine_version: 7.0.\n",
	    "6:19: " MSG_ENGINE "'7.0.'"),
	BAD("engine_major_dot", HDR "  engine_version: '7.'\n",
	    "6:19: " MSG_ENGINE "'7.'"),
	BAD("instance_type_no_prefix", HDR "  instance_type: t4g.small\n",
	    "6:18: " MSG_ITYPE "'t4g.small'"),
	BAD("instance_type_no_size", HDR "  instance_type: cache.t4g\n",
	    "6:18: " MSG_ITYPE "'cache.t4g'"),
	BAD("instance_type_uppercase", HDR "  instance_type: cache.T4g.small\n",
	    "6:18: " MSG_ITYPE "'cache.T4g.small'"),
	BAD("instance_type_trailing_dot",
	    HDR "  instance_type: cache.t4g.small.\n",
	    "6:18: " MSG_ITYPE "'cache.t4g.small.'"),

	/* ElastiCache fields. */
	BAD("security_group_id_bad",
	    HDR "  elasticache:\n    security_group_ids:\n      - sg-123\n"
	    "      - 123\n",
	    "9:9: spec.elasticache.security_group_ids[1] must be a security "
	    "group ID (sg-...), got '123'"),
	BAD("security_group_id_bad_flow",
	    HDR "  elasticache:\n    security_group_ids: [sg-1, abc]\n",
	    "7:32: spec.elasticache.security_group_ids[1] must be a security "
	    "group ID (sg-...), got 'abc'"),
	BAD("notification_topic_not_arn",
	    HDR "  elasticache:\n    notification_topic_arn: sns:topic\n",
	    "7:29: spec.elasticache.notification_topic_arn must be an SNS "
	    "topic ARN (arn:aws:sns:...), got 'sns:topic'"),

	/* Local backend fields. */
	BAD("maxmemory_too_small", HDR "  local:\n    maxmemory: 1kb\n",
	    "7:16: spec.local.maxmemory must be 1mb..1024gb, got '1kb'"),
	BAD("maxmemory_too_big", HDR "  local:\n    maxmemory: 2000gb\n",
	    "7:16: spec.local.maxmemory must be 1mb..1024gb, got '2000gb'"),
	BAD("maxmemory_space", HDR "  local:\n    maxmemory: 256 MB\n",
	    "7:16: " MSG_SIZE "'256 MB'"),
	BAD("maxmemory_tb", HDR "  local:\n    maxmemory: 1tb\n",
	    "7:16: " MSG_SIZE "'1tb'"),
	BAD("maxmemory_negative", HDR "  local:\n    maxmemory: -1mb\n",
	    "7:16: " MSG_SIZE "'-1mb'"),
	BAD("maxmemory_map", HDR "  local:\n    maxmemory: {a: 1}\n",
	    "7:16: " MSG_SIZE "a mapping"),
	/* Reported: a well-formed but overflowing size gets the syntax hint. */
	BAD("maxmemory_overflow",
	    HDR "  local:\n    maxmemory: 99999999999gb\n",
	    "7:16: spec.local.maxmemory must be *"),
	BAD("persistence_bad", HDR "  local:\n    persistence: always\n",
	    "7:18: spec.local.persistence must be one of rdb, aof or none, got "
	    "'always'"),
	BAD("local_scalar", HDR "  local: yes\n",
	    "6:10: spec.local must be a mapping, got 'yes'"),
	BAD("backend_unknown", HDR "  backend: docker\n",
	    "6:12: spec.backend must be one of local or elasticache, got "
	    "'docker'"),
	BAD("deletion_policy_unknown", HDR "  deletion_policy: destroy\n",
	    "6:20: spec.deletion_policy must be one of retain or delete, got "
	    "'destroy'"),
	BAD("tag_value_too_long",
	    HDR "  tags:\n    team: " X256 "x\n",
	    "7:11: spec.tags.team must be at most 256 characters, got 257"),

	/* The YAML layer: syntax, encoding, aliases. */
	BAD("yaml_unclosed_flow", HDR "  port: [1, 2\n  cluster_size: 2\n",
	    "7:15: YAML syntax error: did not find expected ',' or ']' while "
	    "parsing a flow sequence (line 6)"),
	BAD("yaml_bad_indent", HDR "  port: 7000\n   cluster_size: 2\n",
	    "7:16: YAML syntax error: mapping values are not allowed in this "
	    "context"),
	BAD("yaml_tab_indent", HDR "\tport: 7000\n",
	    "6:1: YAML syntax error: found character that cannot start any "
	    "token while scanning for the next token (line 6)"),
	BAD("yaml_unterminated_quote", HDR "  engine_version: \"7.0\n",
	    "7:1: YAML syntax error: found unexpected end of stream while "
	    "scanning a quoted scalar (line 6)"),
	BAD("utf8_invalid_byte", HDR "  tags:\n    owner: caf\xc3\xa9 \xff\n",
	    "7:17: invalid UTF-8 byte 0xff; specs must be UTF-8 text"),
	BAD("utf8_overlong", HDR "  tags:\n    o: \xc0\xaf\n",
	    "7:8: invalid UTF-8 byte 0xc0; specs must be UTF-8 text"),
	BAD("utf8_truncated_at_end", HDR "  tags:\n    o: ab\xe2\x82",
	    "7:10: invalid UTF-8 byte 0xe2; specs must be UTF-8 text"),
	BAD("utf8_surrogate", HDR "  tags:\n    o: \xed\xa0\x80\n",
	    "7:8: invalid UTF-8 byte 0xed; specs must be UTF-8 text"),
	{ .name = "binary_nul", .yaml = yaml_nul, .len = sizeof yaml_nul - 1,
	  .want = { "6:11: binary data: control character 0x00 is not "
	  "allowed in a spec" } },
	BAD("binary_control_char", HDR "  port: 70\x01" "00\n",
	    "6:11: binary data: control character 0x01 is not allowed in a "
	    "spec"),
	BAD("alias_unknown", HDR "  port: *nope\n",
	    "6:9: unknown alias '*nope'"),
	BAD("alias_recursive", "a: &x\n  b: *x\n",
	    "2:6: recursive alias '*x'"),
	BAD("alias_from_other_document", "a: &x 1\n---\nb: *x\n",
	    "3:4: unknown alias '*x'"),
};

static void
run_case(void **state)
{
	const struct spec_case	*c = *state;
	struct spec_list	 l;
	struct diags		 d;
	size_t			 len = c->len ? c->len : strlen(c->yaml);
	int			 r;

	r = parse(c->yaml, len, c->default_backend, &l, &d);
	if (!ck_diags_match(&d, FILE_NAME, c->want, c->name)) {
		spec_list_free(&l);
		diags_free(&d);
		fail();
	}
	if (c->want[0] == NULL) {
		assert_int_equal(r, 0);
		assert_int_equal(l.n, c->nspecs);
		assert_int_equal(l.nrefs, c->nspecs);
		if (c->check != NULL)
			c->check(&l);
	} else {
		/* All or nothing: a file with an error yields no spec. */
		assert_int_equal(r, -1);
		assert_int_equal(l.n, 0);
	}
	spec_list_free(&l);
	diags_free(&d);
}

/* A file with a bad document keeps none of its good ones, names all. */
static void
test_all_or_nothing_records_refs(void **state)
{
	static const char yaml[] = HDR "---\n" HDR_NAMED("api") "  port: x\n"
	    "---\n" HDR_NAMED("Bad");
	static const char *const want[] = {
		"12:9: spec.port must be an integer in 1..65535, got 'x'",
		"17:9: metadata.name must start with a lowercase letter"
		    MSG_NAME "'Bad'",
		NULL
	};
	struct spec_list	 l;
	struct diags		 d;

	(void)state;
	assert_int_equal(parse(yaml, strlen(yaml), NULL, &l, &d), -1);
	ck_assert_diags(&d, FILE_NAME, want, "all_or_nothing");
	assert_int_equal(l.n, 0);
	assert_int_equal(l.nrefs, 3);
	assert_string_equal(l.refs[0].name, "web");
	assert_int_equal(l.refs[0].line, 4);
	assert_int_equal(l.refs[0].col, 9);
	assert_string_equal(l.refs[1].name, "api");
	assert_int_equal(l.refs[1].line, 10);
	assert_string_equal(l.refs[2].name, "Bad");
	assert_int_equal(l.refs[2].line, 17);
	spec_list_free(&l);
	diags_free(&d);
}

/* Parsing appends; an invalid file leaves what was there untouched. */
static void
test_parse_appends(void **state)
{
	static const char bad[] = HDR_NAMED("api") "  port: x\n";
	struct spec_opts	 o = { NULL, NULL };
	struct spec_list	 l = { 0 };
	struct diags		 d;

	(void)state;
	diags_init(&d);
	assert_int_equal(spec_parse_buffer("a.yaml", HDR, strlen(HDR), &o, &l,
	    &d), 0);
	assert_int_equal(spec_parse_buffer("b.yaml", bad, strlen(bad), &o, &l,
	    &d), -1);
	assert_int_equal(l.n, 1);
	assert_string_equal(l.v[0]->name, "web");
	assert_string_equal(l.v[0]->file, "a.yaml");
	assert_int_equal(d.n, 1);
	assert_string_equal(d.v[0].file, "b.yaml");
	assert_int_equal(l.nrefs, 2);
	spec_list_free(&l);
	diags_free(&d);
}

static uint64_t
generation_of(const char *yaml)
{
	struct spec_list	 l;
	struct diags		 d;
	uint64_t		 g;

	if (parse(yaml, strlen(yaml), NULL, &l, &d) != 0 || l.n != 1) {
		ck_assert_diags(&d, NULL, NULL, yaml);
		fail_msg("expected one valid spec");
	}
	g = l.v[0]->generation;
	spec_list_free(&l);
	diags_free(&d);
	return g;
}

/* Equivalent texts share a generation, so the daemon does not churn. */
static void
test_generation_equal_for_equivalent(void **state)
{
	static const char base[] =
	    "apiVersion: cachekeeper/v1\n"
	    "kind: RedisCluster\n"
	    "metadata:\n"
	    "  name: web\n"
	    "  labels: {team: a, tier: b}\n"
	    "spec:\n"
	    "  parameters: {hz: \"20\", maxmemory-policy: allkeys-lru}\n";
	/* Keys reordered everywhere, every default written out. */
	static const char explicit_defaults[] =
	    "spec:\n"
	    "  maintenance_window: SUN:07:00-sun:08:00\n"
	    "  snapshot_window: 05:00-06:00\n"
	    "  local:\n"
	    "    persistence: rdb\n"
	    "  deletion_policy: retain\n"
	    "  snapshot_retention_limit: 7\n"
	    "  final_snapshot: true\n"
	    "  apply_immediately: false\n"
	    "  enable_automatic_failover: true\n"
	    "  enable_multi_az: false\n"
	    "  enable_transit_encryption: false\n"
	    "  enable_at_rest_encryption: false\n"
	    "  cluster_size: 2\n"
	    "  reader_port: 6380\n"
	    "  port: 6379\n"
	    "  instance_type: cache.t4g.micro\n"
	    "  engine_version: \"7.0\"\n"
	    "  backend: local\n"
	    "  parameters: {maxmemory-policy: allkeys-lru, hz: 20}\n"
	    "  tags: {}\n"
	    "kind: RedisCluster\n"
	    "metadata:\n"
	    "  labels: {tier: b, team: a}\n"
	    "  name: web\n"
	    "apiVersion: cachekeeper/v1\n";
	static const char cm_short[] = HDR
	    "  cluster_mode: {enabled: true}\n";
	static const char cm_long[] = HDR
	    "  cluster_mode:\n"
	    "    replicas_per_node_group: 1\n"
	    "    num_node_groups: 3\n"
	    "    enabled: true\n"
	    "  enable_automatic_failover: true\n";

	(void)state;
	assert_true(generation_of(base) != 0);
	assert_true(generation_of(base) == generation_of(explicit_defaults));
	assert_true(generation_of(cm_short) == generation_of(cm_long));
	assert_true(generation_of(HDR) != generation_of(cm_short));
}

/* Any field that changes the cluster changes the generation. */
static void
test_generation_differs_on_change(void **state)
{
	static const char *const variants[] = {
		HDR "  port: 6390\n",
		HDR "  reader_port: 6390\n",
		HDR "  cluster_size: 3\n",
		HDR "  engine_version: 6.2.6\n",
		HDR "  instance_type: cache.t4g.small\n",
		HDR "  snapshot_window: 01:00-02:00\n",
		HDR "  maintenance_window: mon:07:00-mon:08:00\n",
		HDR "  snapshot_retention_limit: 8\n",
		HDR "  deletion_policy: delete\n",
		HDR "  parameters: {hz: \"20\"}\n",
		HDR "  parameters: {hz: \"21\"}\n",
		HDR "  tags: {team: a}\n",
		HDR "  local: {persistence: aof}\n",
		HDR "  local: {maxmemory: 1gb}\n",
		HDR "  backend: elasticache\n",
		HDR_NAMED("web2"),
	};
	uint64_t	 g[sizeof variants / sizeof variants[0] + 1];
	size_t		 i, j, n = sizeof variants / sizeof variants[0];

	(void)state;
	g[n] = generation_of(HDR);
	for (i = 0; i < n; i++)
		g[i] = generation_of(variants[i]);
	for (i = 0; i <= n; i++)
		for (j = i + 1; j <= n; j++)
			if (g[i] == g[j])
				fail_msg("same generation for:\n%s\nand:\n%s",
				    i < n ? variants[i] : HDR,
				    j < n ? variants[j] : HDR);
}

/* The backend list comes from the caller, and messages follow it. */
static void
test_custom_backends(void **state)
{
	static const char *const only_local[] = { "local", NULL };
	static const char *const three[] = { "local", "elasticache", "test",
	    NULL };
	static const char *const want1[] = {
		"6:12: spec.backend must be one of local, got 'elasticache'",
		NULL
	};
	static const char *const want3[] = {
		"6:12: spec.backend must be one of local, elasticache or test, "
		    "got 'docker'",
		NULL
	};
	static const char ec[] = HDR "  backend: elasticache\n";
	static const char docker[] = HDR "  backend: docker\n";
	static const char test[] = HDR "  backend: test\n";
	struct spec_opts	 o = { NULL, only_local };
	struct spec_list	 l = { 0 };
	struct diags		 d;

	(void)state;
	diags_init(&d);
	assert_int_equal(spec_parse_buffer(FILE_NAME, ec, strlen(ec), &o, &l,
	    &d), -1);
	ck_assert_diags(&d, FILE_NAME, want1, "only_local");
	diags_clear(&d);
	o.backends = three;
	assert_int_equal(spec_parse_buffer(FILE_NAME, docker, strlen(docker),
	    &o, &l, &d), -1);
	ck_assert_diags(&d, FILE_NAME, want3, "three");
	assert_int_equal(spec_parse_buffer(FILE_NAME, test, strlen(test), &o,
	    &l, &d), 0);
	assert_int_equal(l.n, 1);
	assert_string_equal(l.v[0]->backend, "test");
	spec_list_free(&l);
	diags_free(&d);
}

/* A spec that sets every field, with a real token file. */
static void
test_full_spec(void **state)
{
	char			*dir = ck_tmpdir_new(), *tok, *yaml;
	const struct cluster_spec *s;
	struct spec_list	 l;
	struct diags		 d;
	int			 n;

	(void)state;
	tok = ck_write(dir, "token", "0123456789abcdef0123\n", 0600);
	n = asprintf(&yaml,
	    "apiVersion: cachekeeper/v1\n"
	    "kind: RedisCluster\n"
	    "metadata:\n"
	    "  name: orders-cache\n"
	    "  labels:\n"
	    "    team: payments\n"
	    "spec:\n"
	    "  backend: elasticache\n"
	    "  engine_version: 6.2.6\n"
	    "  instance_type: cache.r6g.large\n"
	    "  port: 7000\n"
	    "  reader_port: 7100\n"
	    "  cluster_mode:\n"
	    "    enabled: true\n"
	    "    num_node_groups: 4\n"
	    "    replicas_per_node_group: 2\n"
	    "  enable_automatic_failover: true\n"
	    "  enable_multi_az: true\n"
	    "  snapshot_window: 03:00-04:00\n"
	    "  snapshot_retention_limit: 14\n"
	    "  final_snapshot: false\n"
	    "  maintenance_window: tue:05:00-tue:06:30\n"
	    "  apply_immediately: true\n"
	    "  parameters:\n"
	    "    maxmemory-policy: allkeys-lru\n"
	    "    notify-keyspace-events: Ex\n"
	    "  parameter_group_name: orders-params\n"
	    "  enable_transit_encryption: true\n"
	    "  enable_at_rest_encryption: true\n"
	    "  auth_token_file: %s\n"
	    "  deletion_policy: delete\n"
	    "  tags:\n"
	    "    cost-center: \"42\"\n"
	    "  elasticache:\n"
	    "    subnet_group_name: private-a\n"
	    "    security_group_ids: [sg-0123abcd, sg-4567ef01]\n"
	    "    kms_key_id: arn:aws:kms:eu-west-1:123456789012:key/abcd\n"
	    "    notification_topic_arn: arn:aws:sns:eu-west-1:1234:ops\n"
	    "    preferred_availability_zones: [eu-west-1a, eu-west-1b]\n"
	    "  local:\n"
	    "    maxmemory: 2gb\n"
	    "    persistence: aof\n", tok);
	assert_true(n > 0);
	if (parse(yaml, strlen(yaml), NULL, &l, &d) != 0)
		ck_assert_diags(&d, NULL, NULL, "full_spec");
	assert_int_equal(l.n, 1);
	s = l.v[0];
	assert_string_equal(s->name, "orders-cache");
	assert_string_equal(kvlist_get(&s->labels, "team"), "payments");
	assert_string_equal(s->backend, "elasticache");
	assert_string_equal(s->engine_version, "6.2.6");
	assert_string_equal(s->instance_type, "cache.r6g.large");
	assert_int_equal(s->port, 7000);
	assert_int_equal(s->reader_port, 7100);
	assert_true(s->cluster_mode);
	assert_int_equal(s->num_node_groups, 4);
	assert_int_equal(s->replicas_per_node_group, 2);
	assert_int_equal(spec_node_count(s), 12);
	assert_true(s->automatic_failover);
	assert_true(s->multi_az);
	assert_string_equal(fmt_window(&s->snapshot_window), "03:00-04:00");
	assert_int_equal(s->snapshot_retention_limit, 14);
	assert_false(s->final_snapshot);
	assert_string_equal(fmt_window(&s->maintenance_window),
	    "tue:05:00-tue:06:30");
	assert_int_equal(s->maintenance_window.len, 90);
	assert_true(s->apply_immediately);
	assert_int_equal(s->parameters.n, 2);
	assert_string_equal(kvlist_get(&s->parameters,
	    "notify-keyspace-events"), "Ex");
	assert_string_equal(s->parameter_group_name, "orders-params");
	assert_true(s->transit_encryption);
	assert_true(s->at_rest_encryption);
	assert_string_equal(s->auth_token_file, tok);
	assert_int_equal(s->deletion_policy, DELETION_DELETE);
	assert_string_equal(kvlist_get(&s->tags, "cost-center"), "42");
	assert_string_equal(s->elasticache.subnet_group_name, "private-a");
	assert_int_equal(s->elasticache.security_group_ids.n, 2);
	assert_string_equal(s->elasticache.security_group_ids.v[0],
	    "sg-0123abcd");
	assert_string_equal(s->elasticache.kms_key_id,
	    "arn:aws:kms:eu-west-1:123456789012:key/abcd");
	assert_string_equal(s->elasticache.notification_topic_arn,
	    "arn:aws:sns:eu-west-1:1234:ops");
	assert_int_equal(s->elasticache.preferred_availability_zones.n, 2);
	assert_string_equal(s->elasticache.preferred_availability_zones.v[1],
	    "eu-west-1b");
	assert_int_equal(s->local.maxmemory, 2ULL * 1024 * 1024 * 1024);
	assert_int_equal(s->local.persistence, PERSIST_AOF);
	spec_list_free(&l);
	diags_free(&d);
	free(yaml);
	free(tok);
	ck_tmpdir_free(dir);
}

/*
 * Parse a spec whose auth_token_file is path; want_fmt (NULL: valid) is the
 * one expected diagnostic, formatted with the remaining arguments.
 */
static void check_token(const char *path, const char *want_fmt, ...)
    __attribute__((format(printf, 2, 3)));

static void
check_token(const char *path, const char *want_fmt, ...)
{
	char		*yaml, *want = NULL;
	const char	*wants[2] = { NULL, NULL };
	struct spec_list l;
	struct diags	 d;
	va_list		 ap;

	assert_true(asprintf(&yaml, HDR "  auth_token_file: %s\n", path) > 0);
	if (want_fmt != NULL) {
		va_start(ap, want_fmt);
		assert_true(vasprintf(&want, want_fmt, ap) > 0);
		va_end(ap);
		wants[0] = want;
	}
	parse(yaml, strlen(yaml), NULL, &l, &d);
	ck_assert_diags(&d, FILE_NAME, wants, path);
	assert_int_equal(l.n, want ? 0 : 1);
	spec_list_free(&l);
	diags_free(&d);
	free(yaml);
	free(want);
}

static void
test_auth_token_file(void **state)
{
	char	*dir = ck_tmpdir_new(), *p;
	char	 long_token[131];

	(void)state;
	p = ck_write(dir, "good", "abcdefghijklmnopqrstuvwx\n", 0600);
	check_token(p, NULL);
	{
		/* ElastiCache: an AUTH token needs in-transit encryption. */
		const char	*w[2] = { "7:20: spec.auth_token_file needs "
		    "enable_transit_encryption: true on the elasticache "
		    "backend (ElastiCache accepts an AUTH token only with "
		    "in-transit encryption)", NULL };
		struct spec_list l;
		struct diags	 d;
		char		*y;

		assert_true(asprintf(&y, HDR "  backend: elasticache\n"
		    "  auth_token_file: %s\n", p) > 0);
		parse(y, strlen(y), NULL, &l, &d);
		ck_assert_diags(&d, FILE_NAME, w, p);
		spec_list_free(&l);
		diags_free(&d);
		free(y);
		assert_true(asprintf(&y, HDR "  backend: elasticache\n"
		    "  enable_transit_encryption: true\n"
		    "  auth_token_file: %s\n", p) > 0);
		parse(y, strlen(y), NULL, &l, &d);
		assert_int_equal(d.n, 0);
		assert_int_equal(l.n, 1);
		spec_list_free(&l);
		diags_free(&d);
		free(y);
	}
	free(p);
	p = ck_write(dir, "read-only", "abcdefghijklmnop", 0400);
	check_token(p, NULL);
	free(p);
	p = ck_write(dir, "crlf", "abcdefghijklmnop\r\n", 0600);
	check_token(p, NULL);
	free(p);

	check_token("tok/good", "6:20: spec.auth_token_file must be an "
	    "absolute path, got '%s'", "tok/good");
	p = ck_path(dir, "missing");
	check_token(p, "6:20: spec.auth_token_file '%s': No such file or "
	    "directory", p);
	free(p);
	p = ck_write(dir, "open", "abcdefghijklmnopqrstuvwx\n", 0644);
	check_token(p, "6:20: spec.auth_token_file '%s' is accessible by "
	    "group or others (mode 0644); only its owner may read it (chmod "
	    "600)", p);
	free(p);
	p = ck_write(dir, "group", "abcdefghijklmnopqrstuvwx\n", 0640);
	check_token(p, "6:20: spec.auth_token_file '%s' is accessible by "
	    "group or others (mode 0640); only its owner may read it (chmod "
	    "600)", p);
	free(p);
	p = ck_write(dir, "short", "short\n", 0600);
	check_token(p, "6:20: spec.auth_token_file '%s': the token must be "
	    "16-128 characters, got 5", p);
	free(p);
	memset(long_token, 'a', 129);
	long_token[129] = '\n';
	long_token[130] = '\0';
	p = ck_write(dir, "long", long_token, 0600);
	check_token(p, "6:20: spec.auth_token_file '%s': the token must be "
	    "16-128 characters, got 129", p);
	free(p);
	p = ck_write(dir, "at", "abcdefgh@ijklmnopqrstu\n", 0600);
	check_token(p, "6:20: spec.auth_token_file '%s': the token must be "
	    "printable ASCII without spaces, '@', '\"' or '/' (offending "
	    "character at position 9)", p);
	free(p);
	p = ck_write(dir, "space", "abcdefghijklm opqrstu\n", 0600);
	check_token(p, "6:20: spec.auth_token_file '%s': the token must be "
	    "printable ASCII without spaces, '@', '\"' or '/' (offending "
	    "character at position 14)", p);
	free(p);
	free(ck_write(dir, "subdir/x", "x", 0600));
	p = ck_path(dir, "subdir");
	check_token(p, "6:20: spec.auth_token_file '%s' is not a regular "
	    "file", p);
	free(p);
	ck_tmpdir_free(dir);
}

/* The size limit: exactly 1 MiB parses, one byte more does not. */
static void
test_file_size_limit(void **state)
{
	size_t			 max = SPEC_MAX_FILE_BYTES, hl = strlen(HDR);
	char			*buf = malloc(max + 2);
	struct spec_list	 l;
	struct diags		 d;
	static const char *const want[] = {
		"0:0: file is 1048577 bytes, more than the limit of 1048576 "
		    "bytes (1 MiB)",
		NULL
	};

	(void)state;
	assert_non_null(buf);
	memcpy(buf, HDR, hl);
	buf[hl] = '#';
	memset(buf + hl + 1, 'x', max - hl - 2);
	buf[max - 1] = '\n';
	buf[max] = '\n';
	buf[max + 1] = '\0';
	assert_int_equal(parse(buf, max, NULL, &l, &d), 0);
	assert_int_equal(l.n, 1);
	spec_list_free(&l);
	diags_free(&d);
	assert_int_equal(parse(buf, max + 1, NULL, &l, &d), -1);
	ck_assert_diags(&d, FILE_NAME, want, "over_1mib");
	assert_int_equal(l.nrefs, 0);
	spec_list_free(&l);
	diags_free(&d);
	free(buf);
}

/* spec_parse_file: unreadable and oversized files name the path. */
static void
test_parse_file_errors(void **state)
{
	char			*dir = ck_tmpdir_new(), *big, *missing, *good;
	char			*buf, *want;
	const char		*wants[2] = { NULL, NULL };
	struct spec_list	 l = { 0 };
	struct diags		 d;

	(void)state;
	diags_init(&d);
	buf = malloc(SPEC_MAX_FILE_BYTES + 1);
	assert_non_null(buf);
	memset(buf, '#', SPEC_MAX_FILE_BYTES + 1);
	big = ck_write_len(dir, "big.yaml", buf, SPEC_MAX_FILE_BYTES + 1,
	    0644);
	free(buf);
	assert_int_equal(spec_parse_file(big, NULL, &l, &d), -1);
	wants[0] = "0:0: file is larger than the limit of 1048576 bytes "
	    "(1 MiB)";
	ck_assert_diags(&d, big, wants, "big file");
	diags_clear(&d);

	missing = ck_path(dir, "missing.yaml");
	assert_int_equal(spec_parse_file(missing, NULL, &l, &d), -1);
	wants[0] = "0:0: cannot read: No such file or directory";
	ck_assert_diags(&d, missing, wants, "missing file");
	diags_clear(&d);

	assert_int_equal(spec_parse_file(dir, NULL, &l, &d), -1);
	wants[0] = "0:0: cannot read: Is a directory";
	ck_assert_diags(&d, dir, wants, "directory");
	diags_clear(&d);

	good = ck_write(dir, "good.yaml", HDR "  port: x\n", 0644);
	assert_true(asprintf(&want, "6:9: spec.port must be an integer in "
	    "1..65535, got 'x'") > 0);
	wants[0] = want;
	assert_int_equal(spec_parse_file(good, NULL, &l, &d), -1);
	ck_assert_diags(&d, good, wants, "file with error");
	free(want);
	assert_int_equal(l.n, 0);
	spec_list_free(&l);
	diags_free(&d);
	free(big);
	free(missing);
	free(good);
	ck_tmpdir_free(dir);
}

static char *
nested_flow(size_t depth)
{
	char	*s = malloc(2 * depth + 8);
	size_t	 i;

	assert_non_null(s);
	memcpy(s, "a: ", 3);
	for (i = 0; i < depth; i++) {
		s[3 + i] = '[';
		s[3 + depth + i] = ']';
	}
	memcpy(s + 3 + 2 * depth, "\n", 2);
	return s;
}

/* 64 levels of collections are fine; the 65th is refused. */
static void
test_nesting_limit(void **state)
{
	static const char *const want_ok[] = {
		"1:1: unknown key 'a' in document",
		"1:1: apiVersion is required (apiVersion: cachekeeper/v1)",
		"1:1: kind is required (kind: RedisCluster)",
		"1:1: metadata is required (with metadata.name)",
		"1:1: spec is required",
		NULL
	};
	static const char *const want_deep[] = {
		"1:67: nesting deeper than 64 levels",
		NULL
	};
	struct spec_list	 l;
	struct diags		 d;
	char			*s;

	(void)state;
	/* The top-level mapping is the first level. */
	s = nested_flow(63);
	parse(s, strlen(s), NULL, &l, &d);
	ck_assert_diags(&d, FILE_NAME, want_ok, "depth 64");
	spec_list_free(&l);
	diags_free(&d);
	free(s);
	s = nested_flow(64);
	parse(s, strlen(s), NULL, &l, &d);
	ck_assert_diags(&d, FILE_NAME, want_deep, "depth 65");
	spec_list_free(&l);
	diags_free(&d);
	free(s);
}

/* Billion laughs: refused at once, without expanding anything. */
static void
test_alias_bomb(void **state)
{
	static const char yaml[] =
	    "a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n"
	    "a1: &a1 [*a0, *a0, *a0, *a0, *a0, *a0, *a0, *a0, *a0, *a0]\n"
	    "a2: &a2 [*a1, *a1, *a1, *a1, *a1, *a1, *a1, *a1, *a1, *a1]\n"
	    "a3: &a3 [*a2, *a2, *a2, *a2, *a2, *a2, *a2, *a2, *a2, *a2]\n"
	    "a4: &a4 [*a3, *a3, *a3, *a3, *a3, *a3, *a3, *a3, *a3, *a3]\n"
	    "a5: &a5 [*a4, *a4, *a4, *a4, *a4, *a4, *a4, *a4, *a4, *a4]\n"
	    "a6: &a6 [*a5, *a5, *a5, *a5, *a5, *a5, *a5, *a5, *a5, *a5]\n"
	    "a7: &a7 [*a6, *a6, *a6, *a6, *a6, *a6, *a6, *a6, *a6, *a6]\n"
	    "a8: &a8 [*a7, *a7, *a7, *a7, *a7, *a7, *a7, *a7, *a7, *a7]\n"
	    "a9: &a9 [*a8, *a8, *a8, *a8, *a8, *a8, *a8, *a8, *a8, *a8]\n";
	static const char *const want[] = {
		/* a4's tenth alias is the 100001st node: 5 levels of 10. */
		"5:45: document too large: aliases and nodes expand to more "
		    "than 100000 nodes (alias bomb?)",
		NULL
	};
	struct spec_list	 l;
	struct diags		 d;
	double			 t0, ms;

	(void)state;
	t0 = ck_now_ms();
	assert_int_equal(parse(yaml, strlen(yaml), NULL, &l, &d), -1);
	ms = ck_now_ms() - t0;
	ck_assert_diags(&d, FILE_NAME, want, "alias bomb");
	/* Generous for valgrind; expanding would take minutes and GBs. */
	if (ms > 1000)
		fail_msg("alias bomb took %.0f ms", ms);
	spec_list_free(&l);
	diags_free(&d);
}

/* spec_name_valid on its own, as the CLI and the status code use it. */
static void
test_name_valid(void **state)
{
	const char	*why = NULL;

	(void)state;
	assert_true(spec_name_valid("a", &why));
	assert_true(spec_name_valid("a1-b2", &why));
	assert_false(spec_name_valid("", &why));
	assert_string_equal(why, "must be 1-40 characters");
	assert_false(spec_name_valid("-a", &why));
	assert_string_equal(why, "must start with a lowercase letter");
	assert_false(spec_name_valid("a.b", &why));
	assert_string_equal(why, "may contain only a-z, 0-9 and '-'");
	assert_false(spec_name_valid("a\xc3\xa9", &why));
	assert_string_equal(why, "may contain only a-z, 0-9 and '-'");
}

/* Specs are reference counted: a held spec outlives its list. */
static void
test_spec_hold(void **state)
{
	struct spec_list	 l;
	struct diags		 d;
	struct cluster_spec	*s;

	(void)state;
	assert_int_equal(parse(HDR, strlen(HDR), NULL, &l, &d), 0);
	s = spec_hold(l.v[0]);
	assert_int_equal(s->refs, 2);
	spec_list_free(&l);
	assert_int_equal(l.n, 0);
	assert_int_equal(s->refs, 1);
	assert_string_equal(s->name, "web");
	spec_free(s);
	spec_free(NULL);
	diags_free(&d);
}

int
main(void)
{
	static const struct CMUnitTest fixed[] = {
		cmocka_unit_test(test_all_or_nothing_records_refs),
		cmocka_unit_test(test_parse_appends),
		cmocka_unit_test(test_generation_equal_for_equivalent),
		cmocka_unit_test(test_generation_differs_on_change),
		cmocka_unit_test(test_custom_backends),
		cmocka_unit_test(test_full_spec),
		cmocka_unit_test(test_auth_token_file),
		cmocka_unit_test(test_file_size_limit),
		cmocka_unit_test(test_parse_file_errors),
		cmocka_unit_test(test_nesting_limit),
		cmocka_unit_test(test_alias_bomb),
		cmocka_unit_test(test_name_valid),
		cmocka_unit_test(test_spec_hold),
	};
	size_t			 ncases = sizeof cases / sizeof cases[0];
	struct CMUnitTest	*table;
	size_t			 i;
	int			 failed;

	/* One cmocka test per table row, so each case passes or fails alone. */
	table = calloc(ncases, sizeof *table);
	if (table == NULL)
		return 1;
	for (i = 0; i < ncases; i++) {
		table[i].name = cases[i].name;
		table[i].test_func = run_case;
		table[i].initial_state = (void *)(uintptr_t)&cases[i];
	}
	failed = _cmocka_run_group_tests("spec_cases", table, ncases, NULL,
	    NULL);
	failed += cmocka_run_group_tests_name("spec", fixed, ck_group_setup,
	    ck_group_teardown);
	free(table);
	return failed != 0;
}
