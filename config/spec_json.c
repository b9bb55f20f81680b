/*
 * The canonical JSON form of a spec: every field with its effective value,
 * defaults included. It is hashed into the spec's generation, written in
 * status files and shown by `plan`. The auth token is never read here: only
 * the file's path appears.
 */
#include "config.h"

#include "spec.h"
#include "util.h"

static json_t *
kv_json(const struct kvlist *kv)
{
	json_t	*o = json_object();
	size_t	 i;

	for (i = 0; i < kv->n; i++)
		json_object_set_new(o, kv->keys[i], json_string(kv->values[i]));
	return o;
}

static json_t *
list_json(const struct strlist *l)
{
	json_t	*a = json_array();
	size_t	 i;

	for (i = 0; i < l->n; i++)
		json_array_append_new(a, json_string(l->v[i]));
	return a;
}

static json_t *
str_or_null(const char *s)
{
	return s ? json_string(s) : json_null();
}

static json_t *
window_json(const struct window *w)
{
	char	 buf[32];

	window_format(w, buf, sizeof buf);
	return json_string(buf);
}

json_t *
spec_to_json(const struct cluster_spec *s)
{
	static const char *const pers[] = { "rdb", "aof", "none" };
	json_t	*j, *ec, *lo, *cm;

	cm = json_pack("{s:b, s:i, s:i}", "enabled", s->cluster_mode,
	    "num_node_groups", s->num_node_groups,
	    "replicas_per_node_group", s->replicas_per_node_group);
	ec = json_object();
	json_object_set_new(ec, "subnet_group_name",
	    str_or_null(s->elasticache.subnet_group_name));
	json_object_set_new(ec, "security_group_ids",
	    list_json(&s->elasticache.security_group_ids));
	json_object_set_new(ec, "kms_key_id",
	    str_or_null(s->elasticache.kms_key_id));
	json_object_set_new(ec, "notification_topic_arn",
	    str_or_null(s->elasticache.notification_topic_arn));
	json_object_set_new(ec, "preferred_availability_zones",
	    list_json(&s->elasticache.preferred_availability_zones));
	lo = json_pack("{s:I, s:s}", "maxmemory", (json_int_t)s->local.maxmemory,
	    "persistence", pers[s->local.persistence]);

	j = json_object();
	json_object_set_new(j, "name", json_string(s->name));
	json_object_set_new(j, "labels", kv_json(&s->labels));
	json_object_set_new(j, "backend", json_string(s->backend));
	json_object_set_new(j, "engine_version", json_string(s->engine_version));
	json_object_set_new(j, "instance_type", json_string(s->instance_type));
	json_object_set_new(j, "port", json_integer(s->port));
	json_object_set_new(j, "reader_port", json_integer(s->reader_port));
	json_object_set_new(j, "cluster_mode", cm);
	json_object_set_new(j, "cluster_size", s->cluster_mode ? json_null() :
	    json_integer(s->cluster_size));
	json_object_set_new(j, "enable_automatic_failover",
	    json_boolean(s->automatic_failover));
	json_object_set_new(j, "enable_multi_az", json_boolean(s->multi_az));
	json_object_set_new(j, "snapshot_window",
	    window_json(&s->snapshot_window));
	json_object_set_new(j, "snapshot_retention_limit",
	    json_integer(s->snapshot_retention_limit));
	json_object_set_new(j, "final_snapshot",
	    json_boolean(s->final_snapshot));
	json_object_set_new(j, "maintenance_window",
	    window_json(&s->maintenance_window));
	if (s->failover_drill)
		json_object_set_new(j, "failover_drill", json_pack("{s:o}",
		    "window", window_json(&s->failover_drill_window)));
	json_object_set_new(j, "apply_immediately",
	    json_boolean(s->apply_immediately));
	json_object_set_new(j, "parameters", kv_json(&s->parameters));
	json_object_set_new(j, "parameter_group_name",
	    str_or_null(s->parameter_group_name));
	json_object_set_new(j, "enable_transit_encryption",
	    json_boolean(s->transit_encryption));
	json_object_set_new(j, "enable_at_rest_encryption",
	    json_boolean(s->at_rest_encryption));
	json_object_set_new(j, "auth_token_file",
	    str_or_null(s->auth_token_file));
	json_object_set_new(j, "deletion_policy", json_string(
	    s->deletion_policy == DELETION_DELETE ? "delete" : "retain"));
	json_object_set_new(j, "tags", kv_json(&s->tags));
	json_object_set_new(j, "elasticache", ec);
	json_object_set_new(j, "local", lo);
	return j;
}
