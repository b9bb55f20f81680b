/*
 * The backend registry: local (embedded) and elasticache. Tests add
 * "test".
 */
#include "config.h"

#include <stdlib.h>
#include <string.h>

#include "backend.h"
#include "util.h"

#define BACKENDS_MAX	8

extern const struct backend backend_local;	/* backends/local/local.c */

extern struct backend backend_elasticache;	/* backends/elasticache/ */

static const struct backend *table[BACKENDS_MAX + 1] = {
	&backend_local,
	&backend_elasticache,
	NULL,
};

static const char *names[BACKENDS_MAX + 1];

const struct backend *
backend_find(const char *name)
{
	size_t	 i;

	for (i = 0; table[i] != NULL; i++)
		if (strcmp(table[i]->name, name) == 0)
			return table[i];
	return NULL;
}

void
backend_register(const struct backend *b)
{
	size_t	 i;

	for (i = 0; table[i] != NULL; i++) {
		if (strcmp(table[i]->name, b->name) == 0) {
			table[i] = b;	/* a real one replaces a pending one */
			return;
		}
	}
	if (i < BACKENDS_MAX)
		table[i] = b;
}

const char *const *
backend_names(void)
{
	size_t	 i;

	for (i = 0; table[i] != NULL; i++)
		names[i] = table[i]->name;
	names[i] = NULL;
	return names;
}

void
observed_free(struct observed *o)
{
	if (o == NULL)
		return;
	free(o->engine_version);
	free(o->instance_type);
	kvlist_free(&o->parameters);
	free(o->parameter_group);
	free(o->drill_node_group);
	free(o->kms_key_id);
	free(o->subnet_group);
	strlist_free(&o->security_groups);
	free(o->topic_arn);
	kvlist_free(&o->tags);
	free(o->auth_change);
	json_decref(o->endpoints);
	free(o->message);
	free(o);
}
