/*
 * ElastiCache XML responses; see ecxml.h. libxml2 reads with XML_PARSE_NONET
 * and without XML_PARSE_NOENT/DTDLOAD, so an answer from a hostile or
 * broken endpoint can neither fetch anything nor blow up through entities.
 */
#include "config.h"

#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>

#include <libxml/parser.h>
#include <libxml/tree.h>

#include "ecxml.h"
#include "util.h"

#define ECXML_OPTS	(XML_PARSE_NONET | XML_PARSE_NOBLANKS | \
			 XML_PARSE_NOERROR | XML_PARSE_NOWARNING)

static bool
is(const xmlNode *n, const char *name)
{
	return n != NULL && n->type == XML_ELEMENT_NODE &&
	    strcmp((const char *)n->name, name) == 0;
}

/* The first element child called name, or NULL. */
static xmlNode *
child(const xmlNode *n, const char *name)
{
	xmlNode	*c;

	for (c = n ? n->children : NULL; c != NULL; c = c->next)
		if (is(c, name))
			return c;
	return NULL;
}

/* The text of the child called name, as a new string, or NULL. */
static char *
text(const xmlNode *n, const char *name)
{
	xmlNode	*c = child(n, name);
	xmlChar	*t;
	char	*s;

	if (c == NULL)
		return NULL;
	t = xmlNodeGetContent(c);
	s = xstrdup(t ? (const char *)t : "");
	xmlFree(t);
	return s;
}

/*
 * An integer child, def when absent, empty or not a number that fits an
 * int (atoi() on "99999999999" from a broken endpoint is undefined).
 */
static int
int_of(const xmlNode *n, const char *name, int def)
{
	char	*s = text(n, name), *end;
	long	 l;
	int	 v = def;

	if (s != NULL && *s != '\0') {
		errno = 0;
		l = strtol(s, &end, 10);
		if (errno == 0 && end != s && l >= INT_MIN && l <= INT_MAX)
			v = (int)l;
	}
	free(s);
	return v;
}

static bool
bool_of(const xmlNode *n, const char *name)
{
	char	*s = text(n, name);
	bool	 v = s != NULL && strcmp(s, "true") == 0;

	free(s);
	return v;
}

static xmlDoc *
read_doc(const char *xml, size_t len)
{
	if (len > (size_t)INT32_MAX)
		return NULL;
	return xmlReadMemory(xml, (int)len, "response.xml", NULL, ECXML_OPTS);
}

int
ecxml_parse_error(const char *xml, size_t len, struct ec_error *err)
{
	xmlDoc	*doc;
	xmlNode	*root, *e;

	memset(err, 0, sizeof *err);
	if ((doc = read_doc(xml, len)) == NULL)
		return -EINVAL;
	root = xmlDocGetRootElement(doc);
	if (!is(root, "ErrorResponse")) {
		xmlFreeDoc(doc);
		return 0;
	}
	e = child(root, "Error");
	err->type = text(e, "Type");
	err->code = text(e, "Code");
	err->message = text(e, "Message");
	err->request_id = text(root, "RequestId");
	if (err->code == NULL)
		err->code = xstrdup("Unknown");
	xmlFreeDoc(doc);
	return 1;
}

void
ec_error_free(struct ec_error *e)
{
	if (e == NULL)
		return;
	free(e->type);
	free(e->code);
	free(e->message);
	free(e->request_id);
	memset(e, 0, sizeof *e);
}

static void
parse_endpoint(const xmlNode *ep, char **addr, int *port)
{
	if (ep == NULL)
		return;
	*addr = text(ep, "Address");
	*port = int_of(ep, "Port", 0);
}

static void
parse_group(const xmlNode *g, struct ec_node_group *out)
{
	xmlNode		*m;
	struct ec_member *mb;

	out->id = text(g, "NodeGroupId");
	out->status = text(g, "Status");
	out->slots = text(g, "Slots");
	parse_endpoint(child(g, "PrimaryEndpoint"), &out->primary_address,
	    &out->primary_port);
	for (m = child(g, "NodeGroupMembers") ?
	    child(g, "NodeGroupMembers")->children : NULL; m; m = m->next) {
		if (!is(m, "NodeGroupMember"))
			continue;
		out->members = xreallocarray(out->members, out->nmembers + 1,
		    sizeof *out->members);
		mb = &out->members[out->nmembers++];
		memset(mb, 0, sizeof *mb);
		mb->cluster_id = text(m, "CacheClusterId");
		mb->node_id = text(m, "CacheNodeId");
		mb->role = text(m, "CurrentRole");
		mb->az = text(m, "PreferredAvailabilityZone");
		parse_endpoint(child(m, "ReadEndpoint"), &mb->address,
		    &mb->port);
	}
}

/* PendingModifiedValues, flattened: nested elements as "A.B". */
static void
parse_pending(const xmlNode *p, const char *prefix, struct kvlist *out)
{
	xmlNode	*c;
	xmlChar	*t;
	char	*key;

	for (c = p ? p->children : NULL; c != NULL; c = c->next) {
		if (c->type != XML_ELEMENT_NODE)
			continue;
		xasprintf(&key, "%s%s%s", prefix, *prefix ? "." : "",
		    (const char *)c->name);
		if (c->children != NULL &&
		    c->children->type == XML_ELEMENT_NODE)
			parse_pending(c, key, out);
		else {
			t = xmlNodeGetContent(c);
			kvlist_add(out, key, t ? (const char *)t : "");
			xmlFree(t);
		}
		free(key);
	}
}

static void
parse_rg(const xmlNode *r, struct ec_rg *rg)
{
	xmlNode	*c;

	memset(rg, 0, sizeof *rg);
	rg->id = text(r, "ReplicationGroupId");
	rg->description = text(r, "Description");
	rg->status = text(r, "Status");
	rg->automatic_failover = text(r, "AutomaticFailover");
	rg->multi_az = text(r, "MultiAZ");
	rg->node_type = text(r, "CacheNodeType");
	rg->snapshot_window = text(r, "SnapshotWindow");
	rg->kms_key_id = text(r, "KmsKeyId");
	rg->arn = text(r, "ARN");
	rg->snapshot_retention_limit = int_of(r, "SnapshotRetentionLimit", -1);
	rg->cluster_enabled = bool_of(r, "ClusterEnabled");
	rg->auth_token_enabled = bool_of(r, "AuthTokenEnabled");
	rg->transit_encryption = bool_of(r, "TransitEncryptionEnabled");
	rg->at_rest_encryption = bool_of(r, "AtRestEncryptionEnabled");
	parse_endpoint(child(r, "ConfigurationEndpoint"), &rg->config_address,
	    &rg->config_port);
	for (c = child(r, "MemberClusters") ?
	    child(r, "MemberClusters")->children : NULL; c; c = c->next) {
		if (is(c, "ClusterId")) {
			xmlChar *t = xmlNodeGetContent(c);
			strlist_add(&rg->member_clusters, t ? (const char *)t :
			    "");
			xmlFree(t);
		}
	}
	for (c = child(r, "NodeGroups") ? child(r, "NodeGroups")->children :
	    NULL; c; c = c->next) {
		if (!is(c, "NodeGroup"))
			continue;
		rg->groups = xreallocarray(rg->groups, rg->ngroups + 1,
		    sizeof *rg->groups);
		memset(&rg->groups[rg->ngroups], 0, sizeof *rg->groups);
		parse_group(c, &rg->groups[rg->ngroups++]);
	}
	parse_pending(child(r, "PendingModifiedValues"), "", &rg->pending);
}

void
ec_rg_free(struct ec_rg *rg)
{
	size_t	 i, k;

	if (rg == NULL)
		return;
	free(rg->id);
	free(rg->description);
	free(rg->status);
	free(rg->automatic_failover);
	free(rg->multi_az);
	free(rg->node_type);
	free(rg->snapshot_window);
	free(rg->kms_key_id);
	free(rg->arn);
	free(rg->config_address);
	strlist_free(&rg->member_clusters);
	for (i = 0; i < rg->ngroups; i++) {
		struct ec_node_group *g = &rg->groups[i];
		for (k = 0; k < g->nmembers; k++) {
			free(g->members[k].cluster_id);
			free(g->members[k].node_id);
			free(g->members[k].role);
			free(g->members[k].az);
			free(g->members[k].address);
		}
		free(g->members);
		free(g->id);
		free(g->status);
		free(g->slots);
		free(g->primary_address);
	}
	free(rg->groups);
	kvlist_free(&rg->pending);
	memset(rg, 0, sizeof *rg);
}

void
ec_rg_page_free(struct ec_rg_page *p)
{
	size_t	 i;

	if (p == NULL)
		return;
	for (i = 0; i < p->n; i++)
		ec_rg_free(&p->v[i]);
	free(p->v);
	free(p->marker);
	free(p->request_id);
	memset(p, 0, sizeof *p);
}

/* Open the document and find <ActionResult> under <ActionResponse>. */
static xmlNode *
result_of(xmlDoc **docp, const char *xml, size_t len, const char *action,
    char **cause)
{
	xmlNode	*root, *res;
	char	 name[96];

	if ((*docp = read_doc(xml, len)) == NULL) {
		xasprintf(cause, "%sResponse: not XML", action);
		return NULL;
	}
	root = xmlDocGetRootElement(*docp);
	snprintf(name, sizeof name, "%sResponse", action);
	if (!is(root, name)) {
		xasprintf(cause, "expected <%s>, got <%s>", name,
		    root ? (const char *)root->name : "nothing");
		return NULL;
	}
	snprintf(name, sizeof name, "%sResult", action);
	if ((res = child(root, name)) == NULL)
		xasprintf(cause, "<%sResponse> without <%s>", action, name);
	return res;
}

int
ecxml_parse_describe_rgs(const char *xml, size_t len, struct ec_rg_page *out,
    char **cause)
{
	xmlDoc	*doc = NULL;
	xmlNode	*res, *c;

	memset(out, 0, sizeof *out);
	res = result_of(&doc, xml, len, "DescribeReplicationGroups", cause);
	if (res == NULL) {
		xmlFreeDoc(doc);
		return -EINVAL;
	}
	out->marker = text(res, "Marker");
	if (out->marker != NULL && *out->marker == '\0') {
		free(out->marker);
		out->marker = NULL;
	}
	for (c = child(res, "ReplicationGroups") ?
	    child(res, "ReplicationGroups")->children : NULL; c; c = c->next) {
		if (!is(c, "ReplicationGroup"))
			continue;
		out->v = xreallocarray(out->v, out->n + 1, sizeof *out->v);
		parse_rg(c, &out->v[out->n++]);
	}
	c = child(xmlDocGetRootElement(doc), "ResponseMetadata");
	out->request_id = text(c, "RequestId");
	xmlFreeDoc(doc);
	return 0;
}

int
ecxml_parse_rg_result(const char *xml, size_t len, struct ec_rg *rg,
    char **cause)
{
	xmlDoc		*doc = NULL;
	xmlNode		*root, *res = NULL, *r;
	char		 action[96];
	size_t		 n;

	memset(rg, 0, sizeof *rg);
	if ((doc = read_doc(xml, len)) == NULL) {
		xasprintf(cause, "response is not XML");
		return -EINVAL;
	}
	/* Any <XResponse><XResult><ReplicationGroup>. */
	root = xmlDocGetRootElement(doc);
	n = root ? strlen((const char *)root->name) : 0;
	if (n > 8 && n < sizeof action &&
	    strcmp((const char *)root->name + n - 8, "Response") == 0) {
		snprintf(action, sizeof action, "%.*sResult", (int)(n - 8),
		    (const char *)root->name);
		res = child(root, action);
	}
	if ((r = child(res, "ReplicationGroup")) == NULL) {
		xasprintf(cause, "no <ReplicationGroup> in <%s>",
		    root ? (const char *)root->name : "nothing");
		xmlFreeDoc(doc);
		return -EINVAL;
	}
	parse_rg(r, rg);
	xmlFreeDoc(doc);
	return 0;
}

/* The list element under res called list, its first child, or NULL. */
static xmlNode *
first_of(const xmlNode *res, const char *list)
{
	xmlNode	*l = child(res, list);

	return l != NULL ? l->children : NULL;
}

static char *
take_marker(const xmlNode *res)
{
	char	*m = text(res, "Marker");

	if (m != NULL && *m == '\0') {
		free(m);
		m = NULL;
	}
	return m;
}

static void
parse_cc(const xmlNode *c, struct ec_cc *cc)
{
	xmlNode	*m;

	memset(cc, 0, sizeof *cc);
	cc->id = text(c, "CacheClusterId");
	cc->status = text(c, "CacheClusterStatus");
	cc->rg_id = text(c, "ReplicationGroupId");
	cc->engine_version = text(c, "EngineVersion");
	cc->node_type = text(c, "CacheNodeType");
	cc->maintenance_window = text(c, "PreferredMaintenanceWindow");
	cc->param_group = text(child(c, "CacheParameterGroup"),
	    "CacheParameterGroupName");
	cc->topic_arn = text(child(c, "NotificationConfiguration"),
	    "TopicArn");
	cc->subnet_group = text(c, "CacheSubnetGroupName");
	for (m = first_of(c, "SecurityGroups"); m != NULL; m = m->next) {
		char *id;

		if (!is(m, "member") && !is(m, "SecurityGroupMembership"))
			continue;
		if ((id = text(m, "SecurityGroupId")) != NULL)
			strlist_add(&cc->security_groups, id);
		free(id);
	}
	parse_pending(child(c, "PendingModifiedValues"), "", &cc->pending);
}

int
ecxml_parse_describe_ccs(const char *xml, size_t len, struct ec_cc_page *out,
    char **cause)
{
	xmlDoc	*doc = NULL;
	xmlNode	*res, *c;

	memset(out, 0, sizeof *out);
	if ((res = result_of(&doc, xml, len, "DescribeCacheClusters",
	    cause)) == NULL) {
		xmlFreeDoc(doc);
		return -EINVAL;
	}
	out->marker = take_marker(res);
	for (c = first_of(res, "CacheClusters"); c != NULL; c = c->next) {
		if (!is(c, "CacheCluster"))
			continue;
		out->v = xreallocarray(out->v, out->n + 1, sizeof *out->v);
		parse_cc(c, &out->v[out->n++]);
	}
	xmlFreeDoc(doc);
	return 0;
}

void
ec_cc_page_free(struct ec_cc_page *p)
{
	size_t	 i;

	if (p == NULL)
		return;
	for (i = 0; i < p->n; i++) {
		struct ec_cc *c = &p->v[i];
		free(c->id);
		free(c->status);
		free(c->rg_id);
		free(c->engine_version);
		free(c->node_type);
		free(c->maintenance_window);
		free(c->param_group);
		free(c->topic_arn);
		free(c->subnet_group);
		strlist_free(&c->security_groups);
		kvlist_free(&c->pending);
	}
	free(p->v);
	free(p->marker);
	memset(p, 0, sizeof *p);
}

int
ecxml_parse_describe_events(const char *xml, size_t len,
    struct ec_event_page *out, char **cause)
{
	xmlDoc		*doc = NULL;
	xmlNode		*res, *c;
	struct ec_event	*e;

	memset(out, 0, sizeof *out);
	if ((res = result_of(&doc, xml, len, "DescribeEvents", cause)) ==
	    NULL) {
		xmlFreeDoc(doc);
		return -EINVAL;
	}
	out->marker = take_marker(res);
	for (c = first_of(res, "Events"); c != NULL; c = c->next) {
		if (!is(c, "Event"))
			continue;
		out->v = xreallocarray(out->v, out->n + 1, sizeof *out->v);
		e = &out->v[out->n++];
		e->source_id = text(c, "SourceIdentifier");
		e->source_type = text(c, "SourceType");
		e->message = text(c, "Message");
		e->date = text(c, "Date");
	}
	xmlFreeDoc(doc);
	return 0;
}

void
ec_event_page_free(struct ec_event_page *p)
{
	size_t	 i;

	if (p == NULL)
		return;
	for (i = 0; i < p->n; i++) {
		free(p->v[i].source_id);
		free(p->v[i].source_type);
		free(p->v[i].message);
		free(p->v[i].date);
	}
	free(p->v);
	free(p->marker);
	memset(p, 0, sizeof *p);
}

static void
wipe_free(char *s)
{
	if (s != NULL) {
		explicit_bzero(s, strlen(s));
		free(s);
	}
}

int
ecxml_parse_sts_creds(const char *xml, size_t len, struct ec_sts_creds *out,
    char **cause)
{
	xmlDoc	*doc = NULL;
	xmlNode	*res, *c;

	memset(out, 0, sizeof *out);
	if ((res = result_of(&doc, xml, len, "AssumeRoleWithWebIdentity",
	    cause)) == NULL) {
		xmlFreeDoc(doc);
		return -EINVAL;
	}
	c = child(res, "Credentials");
	out->access_key_id = text(c, "AccessKeyId");
	out->secret_access_key = text(c, "SecretAccessKey");
	out->session_token = text(c, "SessionToken");
	out->expiration = text(c, "Expiration");
	xmlFreeDoc(doc);
	if (out->access_key_id == NULL || out->secret_access_key == NULL ||
	    out->session_token == NULL) {
		ec_sts_creds_free(out);
		xasprintf(cause, "AssumeRoleWithWebIdentity: no credentials in "
		    "the answer");
		return -EINVAL;
	}
	return 0;
}

void
ec_sts_creds_free(struct ec_sts_creds *c)
{
	if (c == NULL)
		return;
	free(c->access_key_id);
	wipe_free(c->secret_access_key);
	wipe_free(c->session_token);
	free(c->expiration);
	memset(c, 0, sizeof *c);
}

int
ecxml_parse_tags(const char *xml, size_t len, struct kvlist *out,
    char **cause)
{
	xmlDoc	*doc = NULL;
	xmlNode	*res, *c;
	char	*k, *v;

	if ((res = result_of(&doc, xml, len, "ListTagsForResource", cause)) ==
	    NULL) {
		xmlFreeDoc(doc);
		return -EINVAL;
	}
	for (c = first_of(res, "TagList"); c != NULL; c = c->next) {
		if (!is(c, "Tag"))
			continue;
		k = text(c, "Key");
		v = text(c, "Value");
		if (k != NULL)
			kvlist_add(out, k, v ? v : "");
		free(k);
		free(v);
	}
	xmlFreeDoc(doc);
	return 0;
}
