/*
 * Cluster spec parsing and validation; see spec.h for the contract and
 * docs/spec.md for the user's reference. Every check names the key's path
 * and its valid range; all problems of a file are reported in one pass.
 */
#include "config.h"

#include <sys/stat.h>

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "htab.h"
#include "spec.h"
#include "util.h"

static const char *const default_backends[] = { "local", "elasticache", NULL };

static const char *const top_keys[] = {
	"apiVersion", "kind", "metadata", "spec", NULL
};
static const char *const metadata_keys[] = { "name", "labels", NULL };
static const char *const spec_keys[] = {
	"backend", "engine_version", "instance_type", "port", "reader_port",
	"cluster_mode", "cluster_size", "enable_automatic_failover",
	"enable_multi_az", "snapshot_window", "snapshot_retention_limit",
	"final_snapshot", "maintenance_window", "apply_immediately",
	"parameters", "parameter_group_name", "enable_transit_encryption",
	"enable_at_rest_encryption", "auth_token_file", "deletion_policy",
	"tags", "elasticache", "local", "failover_drill", "restore_from", NULL
};
static const char *const drill_keys[] = { "window", NULL };
static const char *const cluster_mode_keys[] = {
	"enabled", "num_node_groups", "replicas_per_node_group", NULL
};
static const char *const elasticache_keys[] = {
	"subnet_group_name", "security_group_ids", "kms_key_id",
	"notification_topic_arn", "preferred_availability_zones", NULL
};
static const char *const local_keys[] = { "maxmemory", "persistence", NULL };
static const char *const persistence_names[] = { "rdb", "aof", "none", NULL };
static const char *const deletion_names[] = { "retain", "delete", NULL };

/* Redis settings cachekeeper owns; users set them through spec fields. */
static const char *const managed_parameters[] = {
	"port", "bind", "dir", "dbfilename", "appendfilename", "unixsocket",
	"unixsocketperm", "daemonize", "pidfile", "logfile", "replicaof",
	"slaveof", "requirepass", "masterauth", "masteruser", "cluster-enabled",
	"cluster-config-file", "tls-port", "tls-cert-file", "tls-key-file",
	"tls-ca-cert-file", "include", "rename-command", "protected-mode",
	"supervised", NULL
};

#define DEFAULT_ENGINE_VERSION	"7.0"
#define DEFAULT_INSTANCE_TYPE	"cache.t4g.micro"
#define DEFAULT_PORT		6379
#define DEFAULT_SNAPSHOT_WINDOW	"05:00-06:00"
#define DEFAULT_MAINT_WINDOW	"sun:07:00-sun:08:00"
#define DEFAULT_RETENTION_DAYS	7
/*
 * Errors told per file; the rest are counted in one last line. A 1 MiB
 * file can hold 50,000 errors, and the daemon logs, stores and compares
 * them on every rescan: enough to flood the journal and stall the loop.
 */
#define SPEC_MAX_ERRORS		100

/* The nodes of the fields that take part in cross-field rules. */
struct spec_nodes {
	const struct ynode	*spec;
	const struct ynode	*cluster_mode;
	const struct ynode	*enabled;
	const struct ynode	*num_node_groups;
	const struct ynode	*replicas;
	const struct ynode	*cluster_size;
	const struct ynode	*failover;
	const struct ynode	*multi_az;
	const struct ynode	*snapshot_window;
	const struct ynode	*maintenance_window;
	const struct ynode	*port;
	const struct ynode	*reader_port;
	const struct ynode	*at_rest;
	const struct ynode	*persistence;
	const struct ynode	*drill;
	const struct ynode	*auth_token;
	bool			 windows_bad[2];	/* present, invalid */
	bool			 mode_unknown;	/* cluster_mode.enabled invalid */
};

struct cluster_spec *
spec_hold(struct cluster_spec *s)
{
	s->refs++;
	return s;
}

void
spec_free(struct cluster_spec *s)
{
	if (s == NULL || --s->refs > 0)
		return;
	free(s->name);
	free(s->file);
	kvlist_free(&s->labels);
	free(s->backend);
	free(s->engine_version);
	free(s->instance_type);
	kvlist_free(&s->parameters);
	free(s->parameter_group_name);
	free(s->auth_token_file);
	free(s->restore_from);
	kvlist_free(&s->tags);
	free(s->elasticache.subnet_group_name);
	strlist_free(&s->elasticache.security_group_ids);
	free(s->elasticache.kms_key_id);
	free(s->elasticache.notification_topic_arn);
	strlist_free(&s->elasticache.preferred_availability_zones);
	free(s);
}

void
spec_list_free(struct spec_list *l)
{
	size_t	 i;

	if (l == NULL)
		return;
	for (i = 0; i < l->n; i++)
		spec_free(l->v[i]);
	free(l->v);
	for (i = 0; i < l->nrefs; i++)
		free(l->refs[i].name);
	free(l->refs);
	memset(l, 0, sizeof *l);
}

bool
spec_name_valid(const char *s, const char **why)
{
	size_t	 i, len = strlen(s);

	if (len < 1 || len > SPEC_NAME_MAX) {
		*why = "must be 1-40 characters";
		return false;
	}
	if (!islower((unsigned char)s[0])) {
		*why = "must start with a lowercase letter";
		return false;
	}
	for (i = 0; i < len; i++) {
		if (!islower((unsigned char)s[i]) &&
		    !isdigit((unsigned char)s[i]) && s[i] != '-') {
			*why = "may contain only a-z, 0-9 and '-'";
			return false;
		}
		if (s[i] == '-' && s[i + 1] == '-') {
			*why = "must not contain '--'";
			return false;
		}
	}
	if (s[len - 1] == '-') {
		*why = "must not end with '-'";
		return false;
	}
	return true;
}

int
spec_node_count(const struct cluster_spec *s)
{
	return s->num_node_groups * (s->replicas_per_node_group + 1);
}

int
read_file_bounded(const char *path, size_t max, char **bufp, size_t *lenp)
{
	struct stat	 st;
	char		*buf;
	size_t		 len = 0;
	ssize_t		 n;
	int		 fd, error = 0;

	if ((fd = open(path, O_RDONLY|O_CLOEXEC|O_NOCTTY)) == -1)
		return -errno;
	if (fstat(fd, &st) == -1) {
		error = -errno;
		close(fd);
		return error;
	}
	if (!S_ISREG(st.st_mode)) {
		close(fd);
		return -EISDIR;
	}
	if ((size_t)st.st_size > max) {
		close(fd);
		return -EFBIG;
	}
	buf = xmalloc(max + 1);
	for (;;) {
		n = read(fd, buf + len, max + 1 - len);
		if (n == -1 && errno == EINTR)
			continue;
		if (n == -1) {
			error = -errno;
			break;
		}
		if (n == 0)
			break;
		len += (size_t)n;
		if (len > max) {
			error = -EFBIG;
			break;
		}
	}
	close(fd);
	if (error != 0) {
		free(buf);
		return error;
	}
	buf[len] = '\0';
	*bufp = buf;
	*lenp = len;
	return 0;
}

/*
 * Room for entry n of an array that only grows by one: 8, then each
 * power of two (one entry at a time copied the array every time where
 * realloc() moves, as under ASan: 16,000 documents took seconds).
 */
static void *
grow_by_one(void *v, size_t n, size_t size)
{
	if (n != 0 && (n < 8 || (n & (n - 1)) != 0))
		return v;
	return xreallocarray(v, n < 8 ? 8 : n * 2, size);
}

/* Read a string field; returns the node or NULL when absent or bad. */
static const struct ynode *
get_str(struct yctx *c, const struct ynode *m, const char *key,
    const char *path, size_t maxlen, char **out)
{
	const struct ynode	*n;

	if ((n = ymap_get(m, key)) == NULL || ynode_is_null(n))
		return NULL;
	if (yget_string(c, n, path, maxlen, out) != 0)
		return NULL;
	return n;
}

static const struct ynode *
get_int(struct yctx *c, const struct ynode *m, const char *key,
    const char *path, int64_t min, int64_t max, int *out)
{
	const struct ynode	*n;
	int64_t			 v;

	if ((n = ymap_get(m, key)) == NULL || ynode_is_null(n))
		return NULL;
	if (yget_int(c, n, path, min, max, &v) != 0)
		return NULL;
	*out = (int)v;
	return n;
}

static const struct ynode *
get_bool(struct yctx *c, const struct ynode *m, const char *key,
    const char *path, bool *out)
{
	const struct ynode	*n;

	if ((n = ymap_get(m, key)) == NULL || ynode_is_null(n))
		return NULL;
	if (yget_bool(c, n, path, out) != 0)
		return NULL;
	return n;
}

static const struct ynode *
get_window(struct yctx *c, const struct ynode *m, const char *key,
    const char *path, bool weekly, struct window *out, bool *bad)
{
	const struct ynode	*n;
	const char		*why;
	struct window		 w;
	int			 r;

	if ((n = ymap_get(m, key)) == NULL || ynode_is_null(n))
		return NULL;
	*bad = true;
	if (n->type != YNODE_SCALAR) {
		yerr(c, n, "%s must be a string like %s, got %s", path,
		    weekly ? "sat:07:00-sat:08:00" : "06:00-07:00",
		    ynode_type_name(n));
		return NULL;
	}
	r = weekly ? window_parse_weekly(n->value, &w, &why) :
	    window_parse_daily(n->value, &w, &why);
	if (r != 0) {
		yerr(c, n, "%s %s, got '%s'", path, why, n->value);
		return NULL;
	}
	*bad = false;
	*out = w;
	return n;
}

static int
check_version(const char *v)
{
	const char	*p = v;
	int		 major = 0, parts = 1;

	if (!isdigit((unsigned char)*p))
		return -1;
	while (isdigit((unsigned char)*p))
		major = major * 10 + (*p++ - '0');
	if (major < 4 || major > 7 || *p != '.')
		return -1;
	p++;
	if (*p == 'x')
		return p[1] == '\0' ? 0 : -1;
	if (*p == '\0')
		return -1;		/* "7." */
	while (*p != '\0') {
		if (!isdigit((unsigned char)*p))
			return -1;
		while (isdigit((unsigned char)*p))
			p++;
		if (*p == '.') {
			if (++parts > 2)
				return -1;
			p++;
			if (*p == '\0')
				return -1;
		}
	}
	return p[-1] == '.' ? -1 : 0;
}

static int
check_instance_type(const char *s)
{
	const char	*p;
	int		 dots = 0;

	if (strncmp(s, "cache.", 6) != 0)
		return -1;
	for (p = s + 6; *p != '\0'; p++) {
		if (*p == '.') {
			if (p[-1] == '.' || p[1] == '\0')
				return -1;
			dots++;
		} else if (!islower((unsigned char)*p) &&
		    !isdigit((unsigned char)*p))
			return -1;
	}
	return dots == 1 && s[6] != '.' ? 0 : -1;
}

/*
 * Check the token file the way a careful operator would: absolute path,
 * regular file, nobody else can read it, and a token ElastiCache accepts.
 * The token itself is wiped from memory before returning.
 */
static void
check_auth_token_file(struct yctx *c, const struct ynode *n, const char *path)
{
	struct stat	 st;
	char		*buf = NULL;
	size_t		 len = 0, i;
	int		 r;

	if (path[0] != '/') {
		yerr(c, n, "spec.auth_token_file must be an absolute path, got "
		    "'%s'", path);
		return;
	}
	if (stat(path, &st) == -1) {
		yerr(c, n, "spec.auth_token_file '%s': %s", path,
		    strerror(errno));
		return;
	}
	if (!S_ISREG(st.st_mode)) {
		yerr(c, n, "spec.auth_token_file '%s' is not a regular file",
		    path);
		return;
	}
	if (st.st_mode & 077) {
		yerr(c, n, "spec.auth_token_file '%s' is accessible by group "
		    "or others (mode %04o); only its owner may read it (chmod "
		    "600)", path, (unsigned)(st.st_mode & 07777));
		return;
	}
	{
		/* Nor may anyone else swap it: the directories too. */
		char *why = NULL;

		if (path_check_secure(path, (unsigned int)geteuid(), &why) !=
		    0) {
			yerr(c, n, "spec.auth_token_file '%s': %s", path, why);
			free(why);
			return;
		}
	}
	if ((r = read_file_bounded(path, 4096, &buf, &len)) != 0) {
		yerr(c, n, "spec.auth_token_file '%s': %s", path,
		    r == -EFBIG ? "file too large" : strerror(-r));
		return;
	}
	while (len > 0 && (buf[len - 1] == '\n' || buf[len - 1] == '\r'))
		len--;
	for (i = 0; i < len; i++) {
		unsigned char ch = (unsigned char)buf[i];
		if (ch < 0x21 || ch > 0x7e || ch == '@' || ch == '"' ||
		    ch == '/')
			break;
	}
	if (len < 16 || len > 128)
		yerr(c, n, "spec.auth_token_file '%s': the token must be 16-128 "
		    "characters, got %zu", path, len);
	else if (i < len)
		yerr(c, n, "spec.auth_token_file '%s': the token must be "
		    "printable ASCII without spaces, '@', '\"' or '/' "
		    "(offending character at position %zu)", path, i + 1);
	explicit_bzero(buf, len);
	free(buf);
}

static void
parse_parameters(struct yctx *c, const struct ynode *n, struct kvlist *out)
{
	size_t	 i, j;

	if (yget_strmap(c, n, "spec.parameters", 64, 1024, out) != 0)
		return;
	for (i = 0; i < n->n / 2; i++) {
		const struct ynode *k = YMAP_KEY(n, i);
		const char *p;

		if (k->type != YNODE_SCALAR)
			continue;
		for (p = k->value; *p != '\0'; p++)
			if (!islower((unsigned char)*p) &&
			    !isdigit((unsigned char)*p) && *p != '-')
				break;
		if (*p != '\0') {
			yerr(c, k, "spec.parameters: '%s' is not a Redis "
			    "setting name (lowercase a-z, 0-9 and '-')",
			    k->value);
			continue;
		}
		for (j = 0; managed_parameters[j] != NULL; j++) {
			if (strcmp(managed_parameters[j], k->value) == 0) {
				yerr(c, k, "spec.parameters: '%s' is managed "
				    "by cachekeeper and cannot be set here",
				    k->value);
				break;
			}
		}
	}
}

static void
parse_cluster_mode(struct yctx *c, const struct ynode *m,
    struct cluster_spec *s, struct spec_nodes *sn)
{
	if (ycheck_map(c, m, "spec.cluster_mode", cluster_mode_keys) != 0)
		return;
	sn->enabled = get_bool(c, m, "enabled", "spec.cluster_mode.enabled",
	    &s->cluster_mode);
	sn->num_node_groups = get_int(c, m, "num_node_groups",
	    "spec.cluster_mode.num_node_groups", 1, 500, &s->num_node_groups);
	sn->replicas = get_int(c, m, "replicas_per_node_group",
	    "spec.cluster_mode.replicas_per_node_group", 0, 5,
	    &s->replicas_per_node_group);
	/* An invalid enabled leaves the mode unknown: skip the rules that
	 * depend on it rather than give advice for the wrong mode. */
	if (sn->enabled == NULL && ymap_get(m, "enabled") != NULL &&
	    !ynode_is_null(ymap_get(m, "enabled")))
		sn->mode_unknown = true;
	/* Present but invalid still counts as present for the mode rules:
	 * both messages are true. */
	if (sn->num_node_groups == NULL && ymap_get(m, "num_node_groups"))
		sn->num_node_groups = ymap_get(m, "num_node_groups");
	if (sn->replicas == NULL && ymap_get(m, "replicas_per_node_group"))
		sn->replicas = ymap_get(m, "replicas_per_node_group");
}

static void
parse_elasticache(struct yctx *c, const struct ynode *m,
    struct spec_elasticache *e)
{
	const struct ynode	*n;
	size_t			 i;

	if (ycheck_map(c, m, "spec.elasticache", elasticache_keys) != 0)
		return;
	get_str(c, m, "subnet_group_name", "spec.elasticache.subnet_group_name",
	    255, &e->subnet_group_name);
	get_str(c, m, "kms_key_id", "spec.elasticache.kms_key_id", 2048,
	    &e->kms_key_id);
	n = get_str(c, m, "notification_topic_arn",
	    "spec.elasticache.notification_topic_arn", 2048,
	    &e->notification_topic_arn);
	if (n != NULL && strncmp(e->notification_topic_arn, "arn:", 4) != 0)
		yerr(c, n, "spec.elasticache.notification_topic_arn must be an "
		    "SNS topic ARN (arn:aws:sns:...), got '%s'",
		    e->notification_topic_arn);
	if ((n = ymap_get(m, "security_group_ids")) != NULL &&
	    yget_strlist(c, n, "spec.elasticache.security_group_ids", 64,
	    &e->security_group_ids) == 0) {
		for (i = 0; i < e->security_group_ids.n; i++)
			if (strncmp(e->security_group_ids.v[i], "sg-", 3) != 0)
				yerr(c, n->items[i], "spec.elasticache."
				    "security_group_ids[%zu] must be a security "
				    "group ID (sg-...), got '%s'", i,
				    e->security_group_ids.v[i]);
	}
	if ((n = ymap_get(m, "preferred_availability_zones")) != NULL)
		yget_strlist(c, n, "spec.elasticache."
		    "preferred_availability_zones", 64,
		    &e->preferred_availability_zones);
}

/* failover_drill: {window: "sun:10:00-sun:11:00"}: weekly, >= 60 min. */
static void
parse_drill(struct yctx *c, const struct ynode *m, struct cluster_spec *s,
    struct spec_nodes *sn)
{
	bool	 bad = false;
	size_t	 before = c->diags->n;

	if (ycheck_map(c, m, "spec.failover_drill", drill_keys) != 0)
		return;
	if (ymap_get(m, "window") == NULL) {
		/* A misspelt key said it already. */
		if (c->diags->n == before)
			yerr(c, m, "spec.failover_drill.window is required, "
			    "e.g. \"sun:10:00-sun:11:00\"");
		return;
	}
	if (get_window(c, m, "window", "spec.failover_drill.window", true,
	    &s->failover_drill_window, &bad) != NULL && !bad) {
		s->failover_drill = true;
		sn->drill = m;
	}
}

static void
parse_local(struct yctx *c, const struct ynode *m, struct spec_local *l,
    struct spec_nodes *sn)
{
	const struct ynode	*n;
	int			 v;

	if (ycheck_map(c, m, "spec.local", local_keys) != 0)
		return;
	if ((n = ymap_get(m, "maxmemory")) != NULL &&
	    yget_size(c, n, "spec.local.maxmemory", &l->maxmemory) == 0 &&
	    (l->maxmemory < 1024 * 1024 ||
	    l->maxmemory > 1024ULL * 1024 * 1024 * 1024))
		yerr(c, n, "spec.local.maxmemory must be 1mb..1024gb, got "
		    "'%s'", n->value);
	if ((n = ymap_get(m, "persistence")) != NULL &&
	    yget_enum(c, n, "spec.local.persistence", persistence_names,
	    &v) == 0) {
		l->persistence = (enum persistence)v;
		sn->persistence = n;
	}
}

static void
set_defaults(struct cluster_spec *s, const struct spec_opts *o)
{
	const char	*why;

	s->backend = NULL;
	s->port = DEFAULT_PORT;
	s->reader_port = 0;
	s->num_node_groups = 3;
	s->replicas_per_node_group = 1;
	s->cluster_size = 2;
	s->snapshot_retention_limit = DEFAULT_RETENTION_DAYS;
	s->final_snapshot = true;
	s->deletion_policy = DELETION_RETAIN;
	s->local.persistence = PERSIST_RDB;
	window_parse_daily(DEFAULT_SNAPSHOT_WINDOW, &s->snapshot_window, &why);
	window_parse_weekly(DEFAULT_MAINT_WINDOW, &s->maintenance_window, &why);
	(void)o;
}

/* The rules that tie fields together; run after every field is read. */
static void
check_cross_fields(struct yctx *c, struct cluster_spec *s,
    struct spec_nodes *sn)
{
	const struct ynode	*at;
	int			 replicas;

	if (sn->mode_unknown) {
		/* Nothing sensible to say about the shape. */
	} else if (s->cluster_mode) {
		if (sn->cluster_size != NULL)
			yerr(c, sn->cluster_size, "spec.cluster_size applies "
			    "only when cluster_mode.enabled is false; use "
			    "cluster_mode.num_node_groups and "
			    "replicas_per_node_group");
	} else {
		if (sn->num_node_groups != NULL)
			yerr(c, sn->num_node_groups, "spec.cluster_mode."
			    "num_node_groups applies only when "
			    "cluster_mode.enabled is true; use "
			    "spec.cluster_size");
		if (sn->replicas != NULL)
			yerr(c, sn->replicas, "spec.cluster_mode."
			    "replicas_per_node_group applies only when "
			    "cluster_mode.enabled is true; use "
			    "spec.cluster_size");
		s->num_node_groups = 1;
		s->replicas_per_node_group = s->cluster_size - 1;
	}
	replicas = s->replicas_per_node_group;
	if (sn->mode_unknown)
		;	/* the failover rules depend on the mode too */
	else if (sn->failover == NULL)
		s->automatic_failover = replicas > 0;
	else if (s->automatic_failover && replicas == 0)
		yerr(c, sn->failover, "spec.enable_automatic_failover needs at "
		    "least one replica (%s)", s->cluster_mode ?
		    "cluster_mode.replicas_per_node_group >= 1" :
		    "cluster_size >= 2");
	else if (!s->automatic_failover && s->cluster_mode && replicas > 0)
		yerr(c, sn->failover, "spec.enable_automatic_failover is "
		    "required when cluster mode is on and shards have "
		    "replicas");
	if (s->multi_az && !s->automatic_failover) {
		at = sn->multi_az;
		yerr(c, at, "spec.enable_multi_az needs "
		    "enable_automatic_failover: true%s",
		    sn->failover ? "" : " (and at least one replica)");
	}
	if (!sn->windows_bad[0] && !sn->windows_bad[1] &&
	    window_overlaps(&s->snapshot_window, &s->maintenance_window)) {
		char a[32], b[32];

		window_format(&s->snapshot_window, a, sizeof a);
		window_format(&s->maintenance_window, b, sizeof b);
		at = sn->snapshot_window ? sn->snapshot_window :
		    sn->maintenance_window ? sn->maintenance_window : sn->spec;
		yerr(c, at, "spec.snapshot_window %s overlaps "
		    "maintenance_window %s; they must not overlap", a, b);
	}
	if (s->failover_drill && !sn->mode_unknown && !s->automatic_failover)
		yerr(c, sn->drill, "spec.failover_drill needs "
		    "enable_automatic_failover: true (a drill fails over to a "
		    "replica)");
	if (s->reader_port == 0) {
		s->reader_port = s->port + 1;
		if (s->reader_port > 65535)
			yerr(c, sn->port, "spec.port %d leaves no room for the "
			    "default reader_port (port+1); set "
			    "spec.reader_port", s->port);
	} else if (s->reader_port == s->port)
		yerr(c, sn->reader_port, "spec.reader_port must differ from "
		    "spec.port (%d)", s->port);
}

/* A snapshot's name, as backups name them (see local/backup.h). */
static bool
backup_name_ok(const char *s)
{
	size_t	 i;

	if (s[0] < 'a' || s[0] > 'z')
		return false;
	for (i = 0; s[i] != '\0'; i++)
		if (!((s[i] >= 'a' && s[i] <= 'z') || (s[i] >= '0' &&
		    s[i] <= '9') || s[i] == '-'))
			return false;
	return true;
}

static void
parse_spec_fields(struct yctx *c, const struct ynode *m,
    struct cluster_spec *s, const struct spec_opts *o, struct spec_nodes *sn)
{
	const struct ynode	*n;
	const char *const	*backends = o->backends ? o->backends :
	    default_backends;
	int			 v;

	sn->spec = m;
	if ((n = ymap_get(m, "backend")) != NULL &&
	    yget_enum(c, n, "spec.backend", backends, &v) == 0)
		s->backend = xstrdup(backends[v]);
	if ((n = get_str(c, m, "engine_version", "spec.engine_version", 16,
	    &s->engine_version)) != NULL && check_version(s->engine_version))
		yerr(c, n, "spec.engine_version must be a Redis version such "
		    "as 7.0, 7.x or 6.2.6 (4.0 to 7.x), got '%s'",
		    s->engine_version);
	if ((n = get_str(c, m, "instance_type", "spec.instance_type", 64,
	    &s->instance_type)) != NULL &&
	    check_instance_type(s->instance_type) != 0)
		yerr(c, n, "spec.instance_type must look like "
		    "cache.<family>.<size>, e.g. cache.t4g.small, got '%s'",
		    s->instance_type);
	sn->port = get_int(c, m, "port", "spec.port", 1, 65535, &s->port);
	sn->reader_port = get_int(c, m, "reader_port", "spec.reader_port", 1,
	    65535, &s->reader_port);
	if ((n = ymap_get(m, "cluster_mode")) != NULL) {
		sn->cluster_mode = n;
		parse_cluster_mode(c, n, s, sn);
	}
	sn->cluster_size = get_int(c, m, "cluster_size", "spec.cluster_size",
	    1, 6, &s->cluster_size);
	if (sn->cluster_size == NULL)
		sn->cluster_size = ymap_get(m, "cluster_size");
	sn->failover = get_bool(c, m, "enable_automatic_failover",
	    "spec.enable_automatic_failover", &s->automatic_failover);
	sn->multi_az = get_bool(c, m, "enable_multi_az", "spec.enable_multi_az",
	    &s->multi_az);
	sn->snapshot_window = get_window(c, m, "snapshot_window",
	    "spec.snapshot_window", false, &s->snapshot_window,
	    &sn->windows_bad[0]);
	get_int(c, m, "snapshot_retention_limit",
	    "spec.snapshot_retention_limit", 0, 35,
	    &s->snapshot_retention_limit);
	get_bool(c, m, "final_snapshot", "spec.final_snapshot",
	    &s->final_snapshot);
	sn->maintenance_window = get_window(c, m, "maintenance_window",
	    "spec.maintenance_window", true, &s->maintenance_window,
	    &sn->windows_bad[1]);
	get_bool(c, m, "apply_immediately", "spec.apply_immediately",
	    &s->apply_immediately);
	if ((n = ymap_get(m, "parameters")) != NULL && !ynode_is_null(n))
		parse_parameters(c, n, &s->parameters);
	get_str(c, m, "parameter_group_name", "spec.parameter_group_name", 255,
	    &s->parameter_group_name);
	get_bool(c, m, "enable_transit_encryption",
	    "spec.enable_transit_encryption", &s->transit_encryption);
	sn->at_rest = get_bool(c, m, "enable_at_rest_encryption",
	    "spec.enable_at_rest_encryption", &s->at_rest_encryption);
	if ((n = get_str(c, m, "auth_token_file", "spec.auth_token_file", 4096,
	    &s->auth_token_file)) != NULL) {
		check_auth_token_file(c, n, s->auth_token_file);
		sn->auth_token = n;
	}
	/* Read at creation only, as ElastiCache's SnapshotName: not part of
	 * the generation, never a change to plan. */
	if ((n = get_str(c, m, "restore_from", "spec.restore_from", 80,
	    &s->restore_from)) != NULL && !backup_name_ok(s->restore_from))
		yerr(c, n, "spec.restore_from must be a snapshot name (a-z "
		    "first, then a-z, 0-9 and '-', at most 80 characters), got "
		    "'%s'", s->restore_from);
	if ((n = ymap_get(m, "deletion_policy")) != NULL &&
	    yget_enum(c, n, "spec.deletion_policy", deletion_names, &v) == 0)
		s->deletion_policy = (enum deletion_policy)v;
	if ((n = ymap_get(m, "tags")) != NULL && !ynode_is_null(n))
		yget_strmap(c, n, "spec.tags", 128, 256, &s->tags);
	if ((n = ymap_get(m, "elasticache")) != NULL && !ynode_is_null(n))
		parse_elasticache(c, n, &s->elasticache);
	if ((n = ymap_get(m, "local")) != NULL && !ynode_is_null(n))
		parse_local(c, n, &s->local, sn);
	if ((n = ymap_get(m, "failover_drill")) != NULL && !ynode_is_null(n))
		parse_drill(c, n, s, sn);
}

static void
parse_metadata(struct yctx *c, const struct ynode *m, struct cluster_spec *s,
    struct spec_list *out)
{
	const struct ynode	*n;
	const char		*why;

	if (ycheck_map(c, m, "metadata", metadata_keys) != 0)
		return;
	if ((n = ymap_get(m, "name")) == NULL) {
		yerr(c, m, "metadata.name is required");
		return;
	}
	if (yget_string(c, n, "metadata.name", 255, &s->name) != 0)
		return;
	s->line = n->line;
	s->col = n->col;
	out->refs = grow_by_one(out->refs, out->nrefs, sizeof *out->refs);
	out->refs[out->nrefs].name = xstrdup(s->name);
	out->refs[out->nrefs].line = n->line;
	out->refs[out->nrefs].col = n->col;
	out->nrefs++;
	if (!spec_name_valid(s->name, &why))
		yerr(c, n, "metadata.name %s (a letter first, then a-z, 0-9 "
		    "and '-', no '--', no trailing '-'), got '%s'", why,
		    s->name);
	if ((n = ymap_get(m, "labels")) != NULL && !ynode_is_null(n))
		yget_strmap(c, n, "metadata.labels", 63, 63, &s->labels);
}

static void
check_header(struct yctx *c, const struct ynode *doc, const char *key,
    const char *want)
{
	const struct ynode	*n;

	if ((n = ymap_get(doc, key)) == NULL)
		yerr(c, doc, "%s is required (%s: %s)", key, key, want);
	else if (n->type != YNODE_SCALAR || strcmp(n->value, want) != 0)
		yerr(c, n, "%s must be '%s', got %s%s%s", key, want,
		    n->type == YNODE_SCALAR ? "'" : "",
		    n->type == YNODE_SCALAR ? n->value : ynode_type_name(n),
		    n->type == YNODE_SCALAR ? "'" : "");
}

/* Parse one document; returns the spec (maybe invalid: check diags). */
static struct cluster_spec *
parse_document(struct yctx *c, const struct ynode *doc,
    const struct spec_opts *o, struct spec_list *out)
{
	struct cluster_spec	*s;
	struct spec_nodes	 sn;
	const struct ynode	*n;

	if (ycheck_map(c, doc, "document", top_keys) != 0)
		return NULL;
	memset(&sn, 0, sizeof sn);
	s = xcalloc(1, sizeof *s);
	s->refs = 1;
	set_defaults(s, o);
	s->file = xstrdup(c->file);
	s->line = doc->line;
	s->col = doc->col;
	check_header(c, doc, "apiVersion", SPEC_API_VERSION);
	check_header(c, doc, "kind", SPEC_KIND);
	if ((n = ymap_get(doc, "metadata")) == NULL)
		yerr(c, doc, "metadata is required (with metadata.name)");
	else
		parse_metadata(c, n, s, out);
	if ((n = ymap_get(doc, "spec")) == NULL)
		yerr(c, doc, "spec is required");
	else if (ynode_is_null(n))
		sn.spec = n;
	else if (ycheck_map(c, n, "spec", spec_keys) == 0)
		parse_spec_fields(c, n, s, o, &sn);
	if (sn.spec == NULL)
		sn.spec = doc;
	check_cross_fields(c, s, &sn);
	if (s->backend == NULL)
		s->backend = xstrdup(o->default_backend ? o->default_backend :
		    "local");
	/* ElastiCache takes an AUTH token only over TLS. */
	if (sn.auth_token != NULL && !s->transit_encryption &&
	    strcmp(s->backend, "elasticache") == 0)
		yerr(c, sn.auth_token, "spec.auth_token_file needs "
		    "enable_transit_encryption: true on the elasticache "
		    "backend (ElastiCache accepts an AUTH token only with "
		    "in-transit encryption)");
	if (s->engine_version == NULL)
		s->engine_version = xstrdup(DEFAULT_ENGINE_VERSION);
	if (s->instance_type == NULL)
		s->instance_type = xstrdup(DEFAULT_INSTANCE_TYPE);
	return s;
}

/* Feed one value into the generation hash, with a separator. */
static uint64_t
hash_str(uint64_t h, const char *s)
{
	if (s == NULL)
		return hash_fnv1a64("\x01", 1, h);
	h = hash_fnv1a64(s, strlen(s), h);
	return hash_fnv1a64("\0", 1, h);
}

static uint64_t
hash_int(uint64_t h, int64_t v)
{
	return hash_fnv1a64(&v, sizeof v, h);
}

static int
cmp_strp(const void *a, const void *b)
{
	return strcmp(**(char *const *const *)a, **(char *const *const *)b);
}

static uint64_t
hash_kv(uint64_t h, const struct kvlist *kv)
{
	char	***idx;
	size_t	  i, k;

	/* Order-independent: walk the keys sorted (qsort: maps can be big). */
	h = hash_int(h, (int64_t)kv->n);
	if (kv->n == 0)
		return h;
	idx = xreallocarray(NULL, kv->n, sizeof *idx);
	for (i = 0; i < kv->n; i++)
		idx[i] = &kv->keys[i];
	qsort(idx, kv->n, sizeof *idx, cmp_strp);
	for (i = 0; i < kv->n; i++) {
		k = (size_t)(idx[i] - kv->keys);
		h = hash_str(h, kv->keys[k]);
		h = hash_str(h, kv->values[k]);
	}
	free(idx);
	return h;
}

static uint64_t
hash_list(uint64_t h, const struct strlist *l)
{
	size_t	 i;

	h = hash_int(h, (int64_t)l->n);
	for (i = 0; i < l->n; i++)
		h = hash_str(h, l->v[i]);
	return h;
}

/*
 * The generation: a hash of every effective field (defaults included), so
 * that writing a default explicitly or reordering keys changes nothing.
 * Direct hashing rather than hashing the canonical JSON: a fleet of 10,000
 * specs loads in half the time.
 */
static uint64_t
spec_hash(const struct cluster_spec *s)
{
	uint64_t	 h = 0;

	h = hash_str(h, "cachekeeper/v1");
	h = hash_str(h, s->name);
	h = hash_kv(h, &s->labels);
	h = hash_str(h, s->backend);
	h = hash_str(h, s->engine_version);
	h = hash_str(h, s->instance_type);
	h = hash_int(h, s->port);
	h = hash_int(h, s->reader_port);
	h = hash_int(h, s->cluster_mode);
	h = hash_int(h, s->num_node_groups);
	h = hash_int(h, s->replicas_per_node_group);
	h = hash_int(h, s->cluster_mode ? 0 : s->cluster_size);
	h = hash_int(h, s->automatic_failover);
	h = hash_int(h, s->multi_az);
	h = hash_int(h, s->snapshot_window.start);
	h = hash_int(h, s->snapshot_window.len);
	h = hash_int(h, s->snapshot_retention_limit);
	h = hash_int(h, s->final_snapshot);
	h = hash_int(h, s->maintenance_window.start);
	h = hash_int(h, s->maintenance_window.len);
	h = hash_int(h, s->apply_immediately);
	h = hash_kv(h, &s->parameters);
	h = hash_str(h, s->parameter_group_name);
	h = hash_int(h, s->transit_encryption);
	h = hash_int(h, s->at_rest_encryption);
	h = hash_str(h, s->auth_token_file);
	h = hash_int(h, s->deletion_policy);
	h = hash_kv(h, &s->tags);
	h = hash_str(h, s->elasticache.subnet_group_name);
	h = hash_list(h, &s->elasticache.security_group_ids);
	h = hash_str(h, s->elasticache.kms_key_id);
	h = hash_str(h, s->elasticache.notification_topic_arn);
	h = hash_list(h, &s->elasticache.preferred_availability_zones);
	h = hash_int(h, (int64_t)s->local.maxmemory);
	h = hash_int(h, s->local.persistence);
	if (s->failover_drill) {
		h = hash_int(h, s->failover_drill_window.start);
		h = hash_int(h, s->failover_drill_window.len);
	}
	return h;
}

int
spec_parse_buffer(const char *file, const char *buf, size_t len,
    const struct spec_opts *o, struct spec_list *out, struct diags *d)
{
	struct yctx		 c = { file, d };
	struct ytree		*t;
	struct cluster_spec	**found = NULL, *first;
	struct htab		*names;
	size_t			 nfound = 0, i, before = d->n;
	static const struct spec_opts defopts;

	if (o == NULL)
		o = &defopts;
	if (len > SPEC_MAX_FILE_BYTES) {
		diags_add(d, file, 0, 0, "file is %zu bytes, more than the "
		    "limit of %d bytes (1 MiB)", len, SPEC_MAX_FILE_BYTES);
		return -1;
	}
	if ((t = ytree_parse(file, buf, len, d)) == NULL)
		return -1;
	/*
	 * Each repeat is told once, against the first definition: comparing
	 * every pair made 16,000 documents of two names take 10 GB and 80 s.
	 */
	names = htab_new();
	for (i = 0; i < t->ndocs; i++) {
		struct cluster_spec *s;

		if (ynode_is_null(t->docs[i]))
			continue;	/* an empty document, e.g. a final --- */
		if ((s = parse_document(&c, t->docs[i], o, out)) == NULL)
			continue;
		if (s->name != NULL &&
		    (first = htab_get(names, s->name)) != NULL)
			diags_add(d, file, s->line, s->col, "cluster '%s' is "
			    "defined twice in this file (also at line %d)",
			    s->name, first->line);
		else if (s->name != NULL)
			htab_put(names, s->name, s);
		found = grow_by_one(found, nfound, sizeof *found);
		found[nfound++] = s;
	}
	htab_free(names);
	ytree_free(t);
	diags_sort(d, before);
	if (d->n - before > SPEC_MAX_ERRORS) {
		size_t	 more = d->n - before - SPEC_MAX_ERRORS;
		int	 line = d->v[before + SPEC_MAX_ERRORS].line;
		int	 col = d->v[before + SPEC_MAX_ERRORS].col;

		for (i = before + SPEC_MAX_ERRORS; i < d->n; i++) {
			free(d->v[i].file);
			free(d->v[i].msg);
		}
		d->n = before + SPEC_MAX_ERRORS;
		diags_add(d, file, line, col, "too many errors: %zu more from "
		    "here on are not shown", more);
	}
	if (d->n != before) {
		for (i = 0; i < nfound; i++)
			spec_free(found[i]);
		free(found);
		return -1;
	}
	out->v = xreallocarray(out->v, out->n + nfound, sizeof *out->v);
	for (i = 0; i < nfound; i++) {
		found[i]->generation = spec_hash(found[i]);
		out->v[out->n++] = found[i];
	}
	free(found);
	return 0;
}

int
spec_parse_file(const char *path, const struct spec_opts *o,
    struct spec_list *out, struct diags *d)
{
	char	*buf = NULL;
	size_t	 len = 0;
	int	 r;

	if ((r = read_file_bounded(path, SPEC_MAX_FILE_BYTES, &buf,
	    &len)) != 0) {
		if (r == -EFBIG)
			diags_add(d, path, 0, 0, "file is larger than the "
			    "limit of %d bytes (1 MiB)", SPEC_MAX_FILE_BYTES);
		else
			diags_add(d, path, 0, 0, "cannot read: %s",
			    strerror(-r));
		return -1;
	}
	r = spec_parse_buffer(path, buf, len, o, out, d);
	free(buf);
	return r;
}
