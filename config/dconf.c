/* Daemon configuration; see dconf.h and docs/cachekeeperd.yaml.md. */
#include "config.h"

#include <sys/stat.h>

#include <errno.h>
#include <grp.h>
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "dconf.h"
#include "spec.h"
#include "util.h"

#define RESYNC_DEFAULT_MS	60000	/* 60 s */
#define FAILOVER_AFTER_MS	1500
#define CLUSTER_NODE_TIMEOUT_MS	5000
#define MIGRATE_BATCH		100	/* keys */
#define MIGRATE_PIPELINE	4
#define MIGRATE_SLOTS		16
#define EC_POLL_INTERVAL_MS	30000
#define S3_PART_MIN		(5 * 1024 * 1024)	/* S3's own minimum */
#define S3_PART_DEFAULT		(64 * 1024 * 1024)
#define SNAPSHOT_TIMEOUT_MS	3600000	/* 1 h: BGSAVE and copy of a big node */
#define GUARD_MAX_FRACTION	0.5
#define GUARD_MAX_COUNT		10
#define EC_MAX_CALLS_PER_S	20

static const char *const top_keys[] = {
	"clusters_dir", "state_dir", "resync_interval", "log_level",
	"default_backend", "control_socket", "control_socket_group",
	"metrics_listen", "local",
	"elasticache", "deletion_guard", "backup_key_file", "backups", NULL
};
static const char *const backups_keys[] = { "s3", "snapshot_timeout", NULL };
static const char *const s3_keys[] = {
	"bucket", "prefix", "region", "endpoint", "part_size", "retries", NULL
};
static const char *const guard_keys[] = { "max_fraction", "max_count", NULL };
static const char *const local_keys[] = {
	"redis_server", "bind", "port_range", "data_dir", "failover_after",
	"instance_types", "cluster_node_timeout", "migrate_batch",
	"migrate_pipeline", "migrate_slots", "node_manager", NULL
};
static const char *const node_manager_names[] = {
	"auto", "systemd", "process", NULL
};
static const char *const elasticache_keys[] = {
	"region", "endpoint", "profile", "poll_interval",
	"max_calls_per_second", NULL
};
static const char *const level_names[] = {
	"error", "warning", "notice", "info", "debug", NULL
};
static const char *const backend_names[] = { "local", "elasticache", NULL };

/* maxmemory per node type, modelled on ElastiCache's node sizes. */
static const char *const instance_type_defaults[][2] = {
	{ "cache.t4g.micro", "512mb" },
	{ "cache.t4g.small", "1gb" },
	{ "cache.t4g.medium", "3gb" },
	{ "cache.t3.micro", "512mb" },
	{ "cache.t3.small", "1gb" },
	{ "cache.t3.medium", "3gb" },
	{ "cache.m6g.large", "6gb" },
	{ "cache.m6g.xlarge", "12gb" },
	{ "cache.m6g.2xlarge", "24gb" },
	{ "cache.m7g.large", "6gb" },
	{ "cache.m7g.xlarge", "12gb" },
	{ "cache.r6g.large", "13gb" },
	{ "cache.r6g.xlarge", "26gb" },
	{ "cache.r6g.2xlarge", "52gb" },
	{ "cache.r7g.large", "13gb" },
	{ "cache.r7g.xlarge", "26gb" },
	{ "cache.r7g.2xlarge", "52gb" },
};

const char *
log_level_name(enum log_level l)
{
	return level_names[l];
}

void
dconf_free(struct dconf *c)
{
	if (c == NULL)
		return;
	free(c->file);
	free(c->clusters_dir);
	free(c->state_dir);
	free(c->default_backend);
	free(c->control_socket);
	free(c->control_group);
	free(c->backup_key_file);
	free(c->s3.bucket);
	free(c->s3.prefix);
	free(c->s3.region);
	free(c->s3.endpoint);
	free(c->metrics_listen);
	free(c->local.redis_server);
	free(c->local.bind);
	free(c->local.data_dir);
	kvlist_free(&c->local.instance_types);
	free(c->elasticache.region);
	free(c->elasticache.endpoint);
	free(c->elasticache.profile);
	free(c);
}

struct dconf *
dconf_new_defaults(void)
{
	struct dconf	*c;
	size_t		 i;

	c = xcalloc(1, sizeof *c);
	c->clusters_dir = xstrdup("/etc/cachekeeper/clusters.d");
	c->state_dir = xstrdup("/var/lib/cachekeeper");
	c->resync_interval_ms = RESYNC_DEFAULT_MS;
	c->log_level = LOG_LEVEL_INFO;
	c->default_backend = xstrdup("local");
	c->control_socket = xstrdup("/run/cachekeeper/control.sock");
	c->s3.prefix = xstrdup("");
	c->s3.region = xstrdup("us-east-1");
	c->s3.part_size = S3_PART_DEFAULT;
	c->s3.retries = 4;
	c->snapshot_timeout_ms = SNAPSHOT_TIMEOUT_MS;
	c->local.redis_server = xstrdup("/usr/bin/redis-server");
	c->local.bind = xstrdup("127.0.0.1");
	c->local.port_min = 17000;
	c->local.port_max = 17999;
	c->local.failover_after_ms = FAILOVER_AFTER_MS;
	c->local.cluster_node_timeout_ms = CLUSTER_NODE_TIMEOUT_MS;
	c->local.migrate_batch = MIGRATE_BATCH;
	c->local.migrate_pipeline = MIGRATE_PIPELINE;
	c->local.migrate_slots = MIGRATE_SLOTS;
	c->elasticache.poll_interval_ms = EC_POLL_INTERVAL_MS;
	c->guard_max_fraction = GUARD_MAX_FRACTION;
	c->guard_max_count = GUARD_MAX_COUNT;
	c->elasticache.max_calls_per_second = EC_MAX_CALLS_PER_S;
	for (i = 0; i < nitems(instance_type_defaults); i++)
		kvlist_add(&c->local.instance_types,
		    instance_type_defaults[i][0], instance_type_defaults[i][1]);
	return c;
}

/* Read a path value, resolved against base when relative. */
static void
get_path(struct yctx *c, const struct ynode *m, const char *key,
    const char *path, const char *base, char **out)
{
	const struct ynode	*n;
	char			*s;

	if ((n = ymap_get(m, key)) == NULL)
		return;
	if (yget_string(c, n, path, 4096, &s) != 0)
		return;
	if (s[0] == '\0') {
		yerr(c, n, "%s must not be empty", path);
		free(s);
		return;
	}
	free(*out);
	if (strcmp(s, "off") == 0 && strcmp(key, "control_socket") == 0) {
		*out = s;	/* no control socket */
		return;
	}
	if (s[0] != '/' && base != NULL) {
		xasprintf(out, "%s/%s", base, s);
		free(s);
	} else
		*out = s;
}

/*
 * A port number: digits only, no sign or blanks (unlike sscanf's %d);
 * anything above 65535 stays above it. Returns the end, NULL if no digit.
 */
static const char *
port_of(const char *s, long *port)
{
	const char	*p;

	*port = 0;
	for (p = s; *p >= '0' && *p <= '9'; p++)
		if (*port <= 65535)
			*port = *port * 10 + (*p - '0');
	return p == s ? NULL : p;
}

/*
 * sscanf("%d-%d") took " 17000-+18000", and an overflowing number is
 * undefined behaviour there: glibc wrapped "1-4294967297" to 1-1.
 */
static void
get_port_range(struct yctx *c, const struct ynode *n, struct dconf_local *l)
{
	const char	*p = NULL;
	long		 a = 0, b = 0;

	if (n->type == YNODE_SCALAR && (p = port_of(n->value, &a)) != NULL &&
	    *p == '-')
		p = port_of(p + 1, &b);
	else
		p = NULL;
	if (p == NULL || *p != '\0' || (size_t)(p - n->value) != n->len ||
	    a < 1 || b > 65535 || a > b) {
		yerr(c, n, "local.port_range must be FIRST-LAST with "
		    "1 <= FIRST <= LAST <= 65535, e.g. 17000-17999, got '%s'",
		    n->type == YNODE_SCALAR ? n->value : "a collection");
		return;
	}
	l->port_min = (int)a;
	l->port_max = (int)b;
}

static void
parse_local(struct yctx *c, const struct ynode *m, const char *base,
    struct dconf *d)
{
	const struct ynode	*n;
	struct kvlist		 types = { 0 };
	uint64_t		 v;
	int64_t			 iv;
	int			 mode;
	size_t			 i;

	if (ycheck_map(c, m, "local", local_keys) != 0)
		return;
	get_path(c, m, "redis_server", "local.redis_server", base, &d->local.redis_server);
	if ((n = ymap_get(m, "bind")) != NULL) {
		free(d->local.bind);
		d->local.bind = NULL;
		if (yget_string(c, n, "local.bind", 255, &d->local.bind) != 0)
			d->local.bind = xstrdup("127.0.0.1");
	}
	if ((n = ymap_get(m, "port_range")) != NULL)
		get_port_range(c, n, &d->local);
	get_path(c, m, "data_dir", "local.data_dir", base, &d->local.data_dir);
	if ((n = ymap_get(m, "failover_after")) != NULL)
		yget_duration(c, n, "local.failover_after", 100, 600000,
		    &d->local.failover_after_ms);
	if ((n = ymap_get(m, "cluster_node_timeout")) != NULL)
		yget_duration(c, n, "local.cluster_node_timeout", 100, 600000,
		    &d->local.cluster_node_timeout_ms);
	if ((n = ymap_get(m, "migrate_batch")) != NULL &&
	    yget_int(c, n, "local.migrate_batch", 1, 10000, &iv) == 0)
		d->local.migrate_batch = (int)iv;
	if ((n = ymap_get(m, "migrate_pipeline")) != NULL &&
	    yget_int(c, n, "local.migrate_pipeline", 1, 64, &iv) == 0)
		d->local.migrate_pipeline = (int)iv;
	if ((n = ymap_get(m, "migrate_slots")) != NULL &&
	    yget_int(c, n, "local.migrate_slots", 1, 64, &iv) == 0)
		d->local.migrate_slots = (int)iv;
	if ((n = ymap_get(m, "node_manager")) != NULL &&
	    yget_enum(c, n, "local.node_manager", node_manager_names,
	    &mode) == 0)
		d->local.node_manager = (enum node_manager)mode;
	if ((n = ymap_get(m, "instance_types")) != NULL &&
	    yget_strmap(c, n, "local.instance_types", 64, 32, &types) == 0) {
		for (i = 0; i < types.n; i++) {
			if (parse_size_bytes(types.values[i], &v) != 0)
				yerr(c, ymap_get(n, types.keys[i]),
				    "local.instance_types."
				    "%s must be a size such as 1gb, got '%s'",
				    types.keys[i], types.values[i]);
			else if (kvlist_get(&d->local.instance_types,
			    types.keys[i]) == NULL)
				kvlist_add(&d->local.instance_types,
				    types.keys[i], types.values[i]);
			else {
				/* Override a shipped default in place. */
				for (size_t k = 0; k < d->local.instance_types.n;
				    k++)
					if (strcmp(d->local.instance_types.keys[k],
					    types.keys[i]) == 0) {
						free(d->local.instance_types.values[k]);
						d->local.instance_types.values[k] =
						    xstrdup(types.values[i]);
					}
			}
		}
	}
	kvlist_free(&types);
}

static void
parse_elasticache(struct yctx *c, const struct ynode *m, struct dconf *d)
{
	const struct ynode	*n;
	int64_t			 v;

	if (ycheck_map(c, m, "elasticache", elasticache_keys) != 0)
		return;
	if ((n = ymap_get(m, "region")) != NULL)
		yget_string(c, n, "elasticache.region", 64,
		    &d->elasticache.region);
	if ((n = ymap_get(m, "endpoint")) != NULL &&
	    yget_string(c, n, "elasticache.endpoint", 1024,
	    &d->elasticache.endpoint) == 0 &&
	    strncmp(d->elasticache.endpoint, "https://", 8) != 0 &&
	    strncmp(d->elasticache.endpoint, "http://", 7) != 0)
		yerr(c, n, "elasticache.endpoint must be an http:// or "
		    "https:// URL, got '%s'", d->elasticache.endpoint);
	if ((n = ymap_get(m, "profile")) != NULL)
		yget_string(c, n, "elasticache.profile", 128,
		    &d->elasticache.profile);
	if ((n = ymap_get(m, "poll_interval")) != NULL)
		yget_duration(c, n, "elasticache.poll_interval", 100, 3600000,
		    &d->elasticache.poll_interval_ms);
	if ((n = ymap_get(m, "max_calls_per_second")) != NULL &&
	    yget_int(c, n, "elasticache.max_calls_per_second", 1, 1000,
	    &v) == 0)
		d->elasticache.max_calls_per_second = (int)v;
}


/* Whether url is a plain-HTTP loopback endpoint (an emulator). */
static bool
s3_is_emulator(const char *url)
{
	return url != NULL && (strncmp(url, "http://127.0.0.1:", 17) == 0 ||
	    strncmp(url, "http://localhost:", 17) == 0 ||
	    strncmp(url, "http://[::1]:", 13) == 0);
}

/*
 * backups: {snapshot_timeout, s3: {bucket, prefix, region, endpoint,
 * part_size, retries}}
 */
static void
parse_backups(struct yctx *c, const struct ynode *m, struct dconf *d)
{
	const struct ynode	*s, *n;
	struct dconf_s3		*o = &d->s3;
	int64_t			 v;
	char			*p;

	if (ycheck_map(c, m, "backups", backups_keys) != 0)
		return;
	if ((n = ymap_get(m, "snapshot_timeout")) != NULL)
		yget_duration(c, n, "backups.snapshot_timeout", 1000,
		    7 * 86400000ULL, &d->snapshot_timeout_ms);
	if ((s = ymap_get(m, "s3")) == NULL || ynode_is_null(s))
		return;
	if (ycheck_map(c, s, "backups.s3", s3_keys) != 0)
		return;
	if ((n = ymap_get(s, "bucket")) == NULL) {
		yerr(c, s, "backups.s3.bucket is required");
		return;
	}
	if (yget_string(c, n, "backups.s3.bucket", 63, &o->bucket) == 0 &&
	    (strlen(o->bucket) < 3 || strspn(o->bucket,
	    "abcdefghijklmnopqrstuvwxyz0123456789.-") != strlen(o->bucket)))
		yerr(c, n, "backups.s3.bucket must be an S3 bucket name (3-63 "
		    "characters of a-z 0-9 . -), got '%s'", o->bucket);
	if ((n = ymap_get(s, "prefix")) != NULL &&
	    yget_string(c, n, "backups.s3.prefix", 512, &p) == 0) {
		free(o->prefix);
		if (*p != '\0' && p[strlen(p) - 1] != '/') {
			xasprintf(&o->prefix, "%s/", p);
			free(p);
		} else
			o->prefix = p;
	}
	if ((n = ymap_get(s, "region")) != NULL) {
		free(o->region);
		o->region = NULL;
		yget_string(c, n, "backups.s3.region", 64, &o->region);
	}
	if ((n = ymap_get(s, "endpoint")) != NULL &&
	    yget_string(c, n, "backups.s3.endpoint", 512, &o->endpoint) == 0 &&
	    strncmp(o->endpoint, "https://", 8) != 0 &&
	    !s3_is_emulator(o->endpoint))
		yerr(c, n, "backups.s3.endpoint must be an https:// URL (plain "
		    "http only on loopback, for an emulator), got '%s'",
		    o->endpoint);
	if ((n = ymap_get(s, "part_size")) != NULL &&
	    yget_size(c, n, "backups.s3.part_size", &o->part_size) == 0 &&
	    (o->part_size < 1024 || o->part_size > 5ULL << 30 ||
	    (o->part_size < S3_PART_MIN && !s3_is_emulator(o->endpoint))))
		yerr(c, n, "backups.s3.part_size must be 5mb..5gb (S3's limits; "
		    "down to 1kb only with a loopback emulator endpoint)");
	if ((n = ymap_get(s, "retries")) != NULL &&
	    yget_int(c, n, "backups.s3.retries", 0, 20, &v) == 0)
		o->retries = (int)v;
}

/*
 * control_socket_group: a group name, or a numeric gid (as chown(1) takes
 * them: the name first). Resolved here, so that a typo is a file:line:col
 * error at start-up or reload rather than a socket nobody can use.
 */
static void
get_control_group(struct yctx *c, const struct ynode *n, struct dconf *d)
{
	struct group	*gr;
	char		*s, *end;
	unsigned long	 v;

	if (yget_string(c, n, "control_socket_group", 256, &s) != 0)
		return;
	if (*s == '\0') {
		yerr(c, n, "control_socket_group must not be empty");
		free(s);
		return;
	}
	errno = 0;
	if ((gr = getgrnam(s)) != NULL)
		d->control_gid = gr->gr_gid;
	else if (errno != 0 && errno != ENOENT && errno != ESRCH &&
	    errno != EBADF && errno != EPERM) {
		/* getgrnam(3): those mean "no such group" in practice. */
		yerr(c, n, "control_socket_group '%s': cannot look it up: %s",
		    s, strerror(errno));
		free(s);
		return;
	} else if (s[0] >= '0' && s[0] <= '9' && (errno = 0,
	    v = strtoul(s, &end, 10), errno == 0) && *end == '\0' &&
	    v < (unsigned long)(gid_t)-1)
		d->control_gid = (gid_t)v;
	else {
		yerr(c, n, "control_socket_group: no group named '%s' (a group "
		    "name from getent group, or a numeric gid)", s);
		free(s);
		return;
	}
	free(d->control_group);
	d->control_group = s;
	d->control_group_set = true;
}

/* deletion_guard: {max_fraction: 0.5, max_count: 10} */
static void
parse_guard(struct yctx *c, const struct ynode *m, struct dconf *d)
{
	const struct ynode	*n;
	int64_t			 v;
	char			*end;
	double			 f;

	if (ycheck_map(c, m, "deletion_guard", guard_keys) != 0)
		return;
	if ((n = ymap_get(m, "max_fraction")) != NULL) {
		if (n->type != YNODE_SCALAR || n->value == NULL ||
		    (f = strtod(n->value, &end), end == n->value) ||
		    *end != '\0' || f < 0 || f > 1)
			yerr(c, n, "deletion_guard.max_fraction must be a number "
			    "0..1 (1 turns the fraction rule off), got '%s'",
			    n->type == YNODE_SCALAR && n->value ? n->value :
			    ynode_type_name(n));
		else
			d->guard_max_fraction = f;
	}
	if ((n = ymap_get(m, "max_count")) != NULL &&
	    yget_int(c, n, "deletion_guard.max_count", 1, 1000000, &v) == 0)
		d->guard_max_count = (int)v;
}

static void
parse_top(struct yctx *c, const struct ynode *m, const char *base,
    struct dconf *d)
{
	const struct ynode	*n;
	int			 v;

	if (ycheck_map(c, m, "configuration", top_keys) != 0)
		return;
	get_path(c, m, "clusters_dir", "clusters_dir", base, &d->clusters_dir);
	get_path(c, m, "state_dir", "state_dir", base, &d->state_dir);
	get_path(c, m, "control_socket", "control_socket", base, &d->control_socket);
	if ((n = ymap_get(m, "control_socket_group")) != NULL)
		get_control_group(c, n, d);
	if ((n = ymap_get(m, "backup_key_file")) != NULL) {
		struct stat st;

		get_path(c, m, "backup_key_file", "backup_key_file", base,
		    &d->backup_key_file);
		/* The key protects every snapshot: nobody else reads it. */
		/*
		 * A key not there yet is not an error here (snapshots that
		 * need it fail, saying so); one that others can read is.
		 */
		if (d->backup_key_file != NULL && stat(d->backup_key_file,
		    &st) != 0) {
			if (errno != ENOENT)
				yerr(c, n, "backup_key_file %s: %s",
				    d->backup_key_file, strerror(errno));
		}
		else if (d->backup_key_file != NULL && (!S_ISREG(st.st_mode) ||
		    (st.st_mode & 077) != 0))
			yerr(c, n, "backup_key_file %s must be a regular file "
			    "readable and writable by its owner only (mode %04o; "
			    "chmod 600 it)", d->backup_key_file,
			    (unsigned int)(st.st_mode & 07777));
	}
	if ((n = ymap_get(m, "resync_interval")) != NULL)
		yget_duration(c, n, "resync_interval", 1000, 86400000,
		    &d->resync_interval_ms);
	if ((n = ymap_get(m, "log_level")) != NULL &&
	    yget_enum(c, n, "log_level", level_names, &v) == 0)
		d->log_level = (enum log_level)v;
	if ((n = ymap_get(m, "default_backend")) != NULL &&
	    yget_enum(c, n, "default_backend", backend_names, &v) == 0) {
		free(d->default_backend);
		d->default_backend = xstrdup(backend_names[v]);
	}
	if ((n = ymap_get(m, "metrics_listen")) != NULL) {
		char *s = NULL;
		if (yget_string(c, n, "metrics_listen", 255, &s) == 0) {
			char *colon = strrchr(s, ':'), *end = NULL;
			long port = colon ? strtol(colon + 1, &end, 10) : 0;

			if (strcmp(s, "off") == 0)
				free(s);
			else if (colon == NULL || colon == s || end == colon + 1 ||
			    *end != '\0' || port <= 0 || port > 65535) {
				yerr(c, n, "metrics_listen must be 'off' or "
				    "HOST:PORT with PORT 1..65535, got '%s'", s);
				free(s);
			} else
				d->metrics_listen = s;
		}
	}
	if ((n = ymap_get(m, "local")) != NULL && !ynode_is_null(n))
		parse_local(c, n, base, d);
	if ((n = ymap_get(m, "elasticache")) != NULL && !ynode_is_null(n))
		parse_elasticache(c, n, d);
	if ((n = ymap_get(m, "deletion_guard")) != NULL && !ynode_is_null(n))
		parse_guard(c, n, d);
	if ((n = ymap_get(m, "backups")) != NULL && !ynode_is_null(n))
		parse_backups(c, n, d);
}

struct dconf *
dconf_load(const char *path, int missing_ok, struct diags *diags)
{
	return dconf_load_flags(path, missing_ok, 0, diags);
}

struct dconf *
dconf_load_flags(const char *path, int missing_ok, unsigned int flags,
    struct diags *diags)
{
	struct dconf	*d;
	struct ytree	*t;
	struct yctx	 c = { path, diags };
	char		*buf, *dir, *base;
	size_t		 len, before = diags->n;
	int		 r;

	d = dconf_new_defaults();
	if ((r = read_file_bounded(path, SPEC_MAX_FILE_BYTES, &buf,
	    &len)) != 0) {
		if (r == -ENOENT && missing_ok) {
			xasprintf(&d->local.data_dir, "%s/local", d->state_dir);
			return d;
		}
		diags_add(diags, path, 0, 0, "cannot read: %s",
		    r == -EFBIG ? "larger than 1 MiB" : strerror(-r));
		dconf_free(d);
		return NULL;
	}
	if (!(flags & DCONF_NO_FILE_CHECK) &&
	    path_check_secure(path, (unsigned int)geteuid(), &base) != 0) {
		diags_add(diags, path, 0, 0, "not read: %s", base);
		free(base);
		free(buf);
		dconf_free(d);
		return NULL;
	}
	d->file = xstrdup(path);
	dir = xstrdup(path);
	/* Resolve once, so paths in logs and status are absolute. */
	if ((base = realpath(dirname(dir), NULL)) == NULL) {
		free(dir);
		dir = xstrdup(path);
		base = xstrdup(dirname(dir));
	}
	free(dir);
	if ((t = ytree_parse(path, buf, len, diags)) != NULL) {
		if (t->ndocs > 1)
			diags_add(diags, path, t->docs[1]->line,
			    t->docs[1]->col, "the daemon configuration must "
			    "be a single YAML document");
		else if (t->ndocs == 1 && !ynode_is_null(t->docs[0]))
			parse_top(&c, t->docs[0], base, d);
		ytree_free(t);
	}
	free(base);
	free(buf);
	if (d->local.data_dir == NULL)
		xasprintf(&d->local.data_dir, "%s/local", d->state_dir);
	if (diags->n != before) {
		dconf_free(d);
		return NULL;
	}
	return d;
}
