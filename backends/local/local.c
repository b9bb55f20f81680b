/*
 * The local backend: replication groups of real redis-server processes on
 * this host, and Redis Cluster in cluster mode (local_cluster*.c). The
 * reconciler asks for one step at a time; node health and
 * failover run continuously in local_monitor.c for as long as the cluster
 * is attached.
 */
#include "config.h"

#include <sys/stat.h>
#include <sys/wait.h>

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <hiredis/hiredis.h>

#include "backup.h"
#include "local.h"
#include "elasticache/credchain.h"
#include "elasticache/http.h"
#include "log.h"
#include "node.h"
#include "plan.h"
#include "proxy.h"
#include "rconn.h"
#include "util.h"

static struct local_ctx	*shared;	/* one per daemon, see local.h */

/*
 * Once per daemon: who runs nodes. A failure with node_manager: systemd
 * is kept and every node start reports it (node_spawn).
 */
static void
node_manager_start(const struct dconf *conf)
{
	const char	*why;
	char		*cause = NULL;

	if (node_manager_init(conf->local.node_manager, conf->local.data_dir,
	    &cause) != 0) {
		log_error("%s", cause);
		free(cause);
		return;
	}
	if (node_manager_units(&why))
		log_notice("local nodes: %s", why);
	else
		log_info("local nodes run as detached processes: %s", why);
}

static struct local_ctx *
ctx_get(const struct backend_env *env)
{
	if (shared == NULL) {
		shared = xcalloc(1, sizeof *shared);
		shared->base = env->base;
		shared->version = node_server_version(
		    env->conf->local.redis_server);
		node_manager_start(env->conf);
	}
	shared->conf = env->conf;	/* follows reloads */
	shared->env = env;
	shared->refs++;
	return shared;
}

static void
ctx_put(struct local_ctx *c)
{
	if (--c->refs > 0)
		return;
	credchain_free(c->s3chain);
	http_free(c->http);
	free(c->version);
	if (c == shared) {
		shared = NULL;
		node_manager_free();
	}
	free(c);
}

int
local_s3_creds(struct local_ctx *c, const struct aws_creds **out,
    const char **why)
{
	*out = NULL;
	*why = NULL;
	if (c->s3chain == NULL) {
		if (c->http == NULL && (c->http = http_new(c->base)) == NULL) {
			*why = "no AWS credentials: libcurl cannot start";
			return -EACCES;
		}
		c->s3chain = credchain_new(c->http, "s3", NULL, NULL);
	}
	/* The ElastiCache backend's profile; STS in the bucket's region. */
	credchain_configure(c->s3chain, c->conf->elasticache.profile,
	    c->conf->s3.region);
	return credchain_get(c->s3chain, out, why);
}

void
local_s3_creds_expired(struct local_ctx *c)
{
	if (c->s3chain != NULL)
		credchain_expire(c->s3chain);
}

void
lcluster_changed(struct lcluster *lc)
{
	const struct backend_env *env = lc->ctx->env;

	if (env->changed != NULL)
		env->changed(env->changed_arg, lc->name);
}

static void
finish_fire(evutil_socket_t fd, short ev, void *arg)
{
	struct lcluster		*lc = arg;
	backend_done_cb		 cb = lc->dcb;
	char			*msg = lc->done_msg;

	lc->dcb = NULL;
	lc->done_msg = NULL;
	cb(lc->cbarg, lc->done_error, msg);
	free(msg);
}

/* Complete the running step on the next loop turn. */
static void
finish(struct lcluster *lc, int error, char *msg)
{
	struct timeval	 tv = { 0, 0 };

	lc->done_error = error;
	free(lc->done_msg);
	lc->done_msg = msg;
	evtimer_add(lc->done_ev, &tv);
}

static void	observe_fire(evutil_socket_t, short, void *);
static void	param_deadline(evutil_socket_t, short, void *);
static void	param_free(struct param_op *);

static void *
local_attach(const struct backend_env *env, const char *name)
{
	struct lcluster	*lc = xcalloc(1, sizeof *lc);
	char		*cause = NULL;
	size_t		 i;

	lc->ctx = ctx_get(env);
	lc->name = xstrdup(name);
	xasprintf(&lc->dir, "%s/%s", env->conf->local.data_dir, name);
	lc->done_ev = evtimer_new(env->base, finish_fire, lc);
	lc->obs_ev = evtimer_new(env->base, observe_fire, lc);
	lc->param_ev = evtimer_new(env->base, param_deadline, lc);
	lbk_init(lc);
	if (lstate_load(lc, &cause) != 0) {
		log_cluster(LOG_LEVEL_WARNING, name, "%s", cause);
		free(cause);
		cause = NULL;
	}
	if (!lc->exists)
		return lc;
	/* Adopt what is running; what is gone the monitor restarts. */
	if (lcluster_read_token(lc, lc->token_file, &cause) != 0) {
		log_cluster(LOG_LEVEL_WARNING, name, "%s", cause);
		free(cause);
		cause = NULL;
	}
	for (i = 0; i < lc->nnodes; i++) {
		struct lnode *n = lc->nodes[i];
		n->pid = node_read_pid(n->dir);
		if (node_pid_alive(n->pid))
			log_cluster(LOG_LEVEL_INFO, name, "adopted node %s "
			    "(pid %ld, port %d)", n->id, (long)n->pid, n->port);
		else
			n->pid = 0;
	}
	lmon_endpoints_start(lc, &cause);
	if (cause != NULL) {
		log_cluster(LOG_LEVEL_WARNING, name, "endpoint: %s", cause);
		free(cause);
	}
	if (lc->cluster_mode) {
		lcl_init(lc);
		lmig_load(lc);
	}
	lmon_start(lc);
	return lc;
}

static void
local_detach(void *arg)
{
	struct lcluster	*lc = arg;
	size_t		 i;

	lmon_stop(lc);
	lmon_endpoints_stop(lc);
	lcl_remove_all(lc);
	lbk_free(lc);
	lrs_free(lc);
	event_free(lc->done_ev);
	event_free(lc->obs_ev);
	event_free(lc->param_ev);
	param_free(lc->param);
	for (i = 0; i < lc->nnodes; i++)
		lnode_free(lc->nodes[i]);
	free(lc->nodes);
	lsecret_free(lc->password);
	lsecret_free(lc->admin_pass);
	kvlist_free(&lc->parameters);
	free(lc->primary);
	free(lc->switch_to);
	free(lc->promote_id);
	free(lc->promote_old);
	free(lc->token_file);
	free(lc->message);
	free(lc->done_msg);
	free(lc->dir);
	free(lc->name);
	ctx_put(lc->ctx);
	free(lc);
}

void
lnode_free(struct lnode *n)
{
	if (n == NULL)
		return;
	if (n->conn != NULL)
		rconn_free(n->conn);
	if (n->ccon != NULL)
		rconn_free(n->ccon);
	free(n->shard);
	free(n->cid);
	free(n->nodes_txt);
	free(n->id);
	free(n->run_id);
	free(n->restart_error);
	free(n->dir);
	free(n->sock);
	free(n);
}

/* The state the reconciler sees, from the monitor's view. */
static enum obs_state
observed_state(struct lcluster *lc)
{
	struct lnode	*p = lcluster_primary(lc), *n;
	bool		 syncing = false, down = false;
	size_t		 i;

	if (p == NULL || !lnode_up(p))
		down = true;
	for (i = 0; i < lc->nnodes; i++) {
		n = lc->nodes[i];
		if (n == p)
			continue;
		/* A new replica's first sync is the change being made; a
		 * restarted one resyncing is damage being repaired. */
		if (!n->synced_once && n->added)
			syncing = true;
		else if (!n->synced_once || !lnode_up(n) || !n->link_up)
			down = true;
	}
	if (!lc->created)
		return OBS_CREATING;
	/* A node down because we restart it is progress, not damage. */
	if (lc->restart_pending && (lc->apply_immediately ||
	    window_contains(&lc->maintenance_window, clock_wall_s())))
		return OBS_MODIFYING;
	if (syncing && !down)
		return OBS_MODIFYING;
	if (lc->promoting || down)
		return OBS_DEGRADED;
	return OBS_AVAILABLE;
}

/* Say which nodes are the trouble. */
static char *
degraded_message(struct lcluster *lc)
{
	struct lnode	*p = lcluster_primary(lc), *n;
	struct strbuf	 sb;
	size_t		 i;

	strbuf_init(&sb);
	if (lc->promoting)
		strbuf_puts(&sb, "failover in progress");
	for (i = 0; i < lc->nnodes; i++) {
		n = lc->nodes[i];
		if (lnode_up(n) && (n == p || (n->synced_once && n->link_up)))
			continue;
		strbuf_printf(&sb, "%s%s %s %s", sb.len ? "; " : "",
		    n == p ? "primary" : "replica", n->id, !lnode_up(n) ?
		    "not answering" : "resyncing");
	}
	if (sb.len == 0)
		strbuf_puts(&sb, "degraded");
	return strbuf_detach(&sb);
}

static void
observe_fire(evutil_socket_t fd, short ev, void *arg)
{
	struct lcluster		*lc = arg;
	backend_observe_cb	 cb = lc->ocb;
	struct observed		*o = xcalloc(1, sizeof *o);
	const struct cluster_spec *s = lc->obs_spec;
	char			*save;

	lc->ocb = NULL;
	lc->obs_spec = NULL;
	if (!lc->exists) {
		o->state = OBS_ABSENT;
		cb(lc->cbarg, 0, NULL, o);
		return;
	}
	/* Follow the window and urgency the spec says now. */
	lc->apply_immediately = s->apply_immediately;
	lc->maintenance_window = s->maintenance_window;
	if (lc->cluster_mode) {
		o->state = lcl_observed_state(lc);
		o->cluster_mode = true;
		o->num_node_groups = lcl_num_shards(lc);
		o->replicas_per_node_group = lc->replicas;
	} else {
		o->state = observed_state(lc);
		o->cluster_mode = false;
		o->num_node_groups = 1;
		o->replicas_per_node_group = lc->nnodes > 0 ?
		    (int)lc->nnodes - 1 : 0;
	}
	o->port = lc->port;
	o->engine_version = xstrdup(lc->ctx->version ? lc->ctx->version : "");
	o->instance_type = xstrdup(s->instance_type);
	o->automatic_failover = lc->failover;
	/* Settings this backend keeps as the spec says (snapshots follow
	 * them in local_backup.c). */
	lbk_spec(lc, s);
	o->multi_az = s->multi_az;
	o->at_rest_encryption = s->at_rest_encryption;
	o->snapshot_window = s->snapshot_window;
	o->maintenance_window = s->maintenance_window;
	o->snapshot_retention_limit = s->snapshot_retention_limit;
	for (size_t i = 0; i < lc->parameters.n; i++)
		kvlist_add(&o->parameters, lc->parameters.keys[i],
		    lc->parameters.values[i]);
	o->endpoints = lmon_endpoints(lc);
	if (json_is_object(o->endpoints))
		json_object_set_new(o->endpoints, "backups", lbk_status(lc));
	/* A restore is part of the creation; a failed one fails it. */
	if (lc->restore_error != NULL) {
		o->state = OBS_FAILED;
		o->message = xstrdup(lc->restore_error);
		json_object_set_new(json_object_get(o->endpoints, "backups"),
		    "last_error", json_string(lc->restore_error));
		cb(lc->cbarg, 0, NULL, o);
		return;
	}
	if (lc->restore_from != NULL && o->state == OBS_AVAILABLE) {
		o->state = OBS_CREATING;
		xasprintf(&o->message, "restoring from snapshot %s",
		    lc->restore_from);
		cb(lc->cbarg, 0, NULL, o);
		return;
	}
	if (lc->tls && json_is_object(o->endpoints)) {
		char *ca = ltls_path(lc, "ca.crt");
		json_object_set_new(o->endpoints, "tls_ca", json_string(ca));
		free(ca);
	}
	if (lc->cluster_mode)
		o->message = lcl_message(lc);
	else if (o->state == OBS_DEGRADED)
		o->message = degraded_message(lc);
	else if (lc->message != NULL)
		o->message = xstrdup(lc->message);
	if ((save = lmon_node_message(lc)) != NULL) {
		if (o->message != NULL) {
			char *m;

			xasprintf(&m, "%s; %s", o->message, save);
			free(o->message);
			free(save);
			save = m;
		}
		o->message = save;
	}
	cb(lc->cbarg, 0, NULL, o);
}

static void
local_observe(void *arg, const struct cluster_spec *spec,
    backend_observe_cb cb, void *cbarg)
{
	struct lcluster	*lc = arg;
	struct timeval	 tv = { 0, 0 };

	lc->ocb = cb;
	lc->cbarg = cbarg;
	lc->obs_spec = spec;	/* the reconciler holds it meanwhile */
	evtimer_add(lc->obs_ev, &tv);
}

/* maxmemory from the spec: local.maxmemory, else the instance type. */
static int
spec_maxmemory(struct lcluster *lc, const struct cluster_spec *s,
    uint64_t *out, char **cause)
{
	const char	*v;

	if (s->local.maxmemory > 0) {
		*out = s->local.maxmemory;
		return 0;
	}
	v = kvlist_get(&lc->ctx->conf->local.instance_types, s->instance_type);
	if (v == NULL || parse_size_bytes(v, out) != 0) {
		xasprintf(cause, "instance_type %s is not in local."
		    "instance_types; add it to the daemon configuration or set "
		    "spec.local.maxmemory", s->instance_type);
		return -EINVAL;
	}
	return 0;
}

static int
check_engine(struct lcluster *lc, const struct cluster_spec *s, char **cause)
{
	if (lc->ctx->version == NULL) {
		xasprintf(cause, "cannot run %s --version",
		    lc->ctx->conf->local.redis_server);
		return -ENOENT;
	}
	if (!engine_version_matches(s->engine_version, lc->ctx->version)) {
		xasprintf(cause, "engine_version %s is not available: the "
		    "installed redis-server is %s", s->engine_version,
		    lc->ctx->version);
		return -EINVAL;
	}
	return 0;
}

static struct lnode *
add_node(struct lcluster *lc, char **cause)
{
	struct lnode	*n;
	char		 id[16];
	int		 port;

	if ((port = lcluster_alloc_port(lc, cause)) < 0)
		return NULL;
	snprintf(id, sizeof id, "n%d", ++lc->next_seq);
	n = lnode_new(lc, id, port);
	n->added = true;
	lc->nodes = xreallocarray(lc->nodes, lc->nnodes + 1, sizeof *lc->nodes);
	lc->nodes[lc->nnodes++] = n;
	return n;
}

static int
step_create(struct lcluster *lc, const struct cluster_spec *s, char **cause)
{
	int	 i, r;

	if ((r = check_engine(lc, s, cause)) != 0 ||
	    (r = spec_maxmemory(lc, s, &lc->maxmemory, cause)) != 0)
		return r;
	/*
	 * A directory without cluster.json is what a deletion interrupted
	 * after its first step leaves (no node runs from it: cluster.json is
	 * written before any node starts and removed after all are stopped).
	 * Its data must not come back in the new cluster's nodes.
	 */
	if (!lc->exists && access(lc->dir, F_OK) == 0) {
		log_cluster(LOG_LEVEL_NOTICE, lc->name, "removing %s, left by "
		    "an interrupted deletion", lc->dir);
		if ((r = node_remove_dir(lc->dir)) != 0) {
			xasprintf(cause, "cannot remove %s: %s", lc->dir,
			    strerror(-r));
			return r;
		}
	}
	/* New clusters with a token get ACL users (local_tls.c). */
	lc->acl = s->auth_token_file != NULL;
	lc->tls = s->transit_encryption;
	if ((r = lcluster_read_token(lc, s->auth_token_file, cause)) != 0)
		return r;
	if (lc->tls && (r = ltls_ensure(lc, lc->ctx->conf->local.bind,
	    cause)) != 0)
		return r;
	lc->port = s->port;
	lc->reader_port = s->reader_port;
	lc->apply_immediately = s->apply_immediately;
	lc->maintenance_window = s->maintenance_window;
	lc->failover = s->automatic_failover;
	lc->persistence = s->local.persistence;
	kvlist_free(&lc->parameters);
	for (size_t k = 0; k < s->parameters.n; k++)
		kvlist_add(&lc->parameters, s->parameters.keys[k],
		    s->parameters.values[k]);
	free(lc->token_file);
	lc->token_file = s->auth_token_file ? xstrdup(s->auth_token_file) :
	    NULL;
	lc->cluster_mode = s->cluster_mode;
	free(lc->restore_from);
	lc->restore_from = NULL;
	if (s->restore_from != NULL) {
		char *dir = backup_find(lc->ctx->conf->state_dir,
		    s->restore_from);

		if (dir == NULL && lc->ctx->conf->s3.bucket == NULL) {
			xasprintf(cause, "spec.restore_from: no snapshot named "
			    "%s (see cachekeeper snapshots)", s->restore_from);
			return -ENOENT;
		}
		free(dir);
		lc->restore_from = xstrdup(s->restore_from);
	}
	/* Endpoints first: a port in use must fail before any node runs. */
	lmon_endpoints_start(lc, cause);
	if (*cause != NULL)
		return -EADDRINUSE;
	if (s->cluster_mode)
		return lcl_create(lc, s, cause);
	for (i = 0; i < s->cluster_size; i++) {
		struct lnode *n = add_node(lc, cause);
		if (n == NULL)
			return -ENOSPC;
		if (i == 0)
			lc->primary = xstrdup(n->id);
	}
	lc->exists = true;
	lc->created = false;
	if ((r = lstate_save(lc, cause)) != 0)
		return r;
	if (lrs_same_layout(lc, s) && lrs_place_start(lc))
		return 0;	/* it starts the nodes */
	for (i = 0; i < (int)lc->nnodes; i++)
		if ((r = lnode_start(lc, lc->nodes[i], cause)) != 0)
			return r;
	lmon_start(lc);
	return 0;
}

static int
step_add_replicas(struct lcluster *lc, int to, char **cause)
{
	int	 r;

	while ((int)lc->nnodes - 1 < to) {
		struct lnode *n = add_node(lc, cause);
		if (n == NULL)
			return -ENOSPC;
		if ((r = lstate_save(lc, cause)) != 0 ||
		    (r = lnode_start(lc, n, cause)) != 0)
			return r;
	}
	return 0;
}

/* Remove replicas, the most lagging first (never the primary). */
static int
step_remove_replicas(struct lcluster *lc, int to, char **cause)
{
	struct lnode	*p = lcluster_primary(lc), *worst;
	long long	 least, off;
	size_t		 i, w;

	while ((int)lc->nnodes - 1 > to) {
		least = 0;
		w = lc->nnodes;		/* none yet */
		for (i = 0; i < lc->nnodes; i++) {
			struct lnode *n = lc->nodes[i];
			if (n == p)
				continue;
			/* Down or never synced counts as most lagging. */
			off = lnode_up(n) && n->synced_once ? n->offset : -1;
			if (w == lc->nnodes || off < least) {
				least = off;
				w = i;
			}
		}
		if (w == lc->nnodes)
			break;
		worst = lc->nodes[w];
		log_cluster(LOG_LEVEL_INFO, lc->name, "removing replica %s "
		    "(port %d, offset %lld)", worst->id, worst->port,
		    worst->offset);
		node_kill(worst->dir, worst->pid);
		node_remove_dir(worst->dir);
		memmove(&lc->nodes[w], &lc->nodes[w + 1],
		    (lc->nnodes - w - 1) * sizeof *lc->nodes);
		lc->nnodes--;
		lnode_free(worst);
	}
	return lstate_save(lc, cause);
}

static void
config_set_done(struct rconn *rc, struct redisReply *reply, const char *err,
    void *arg)
{
	if (reply == NULL || reply->type == REDIS_REPLY_ERROR)
		log_debug("CONFIG SET: %s", reply ? reply->str : err);
}

/* CONFIG SET on every node that answers; configs follow on restarts. */
static void
config_set_all(struct lcluster *lc, const char *key, const char *value)
{
	size_t	 i;

	for (i = 0; i < lc->nnodes; i++)
		if (lnode_up(lc->nodes[i]))
			rconn_command(lc->nodes[i]->conn, LOCAL_PING_TIMEOUT_MS,
			    config_set_done, NULL, "CONFIG SET %s %s",
			    key, value);
}

/*
 * A parameter change in flight: CONFIG SET on every node that answers. It
 * lives in the cluster (one step at a time) and has a deadline, because a
 * node connection freed meanwhile never calls back.
 */
#define PARAM_DEADLINE_MS	(3 * LOCAL_PING_TIMEOUT_MS)

struct param_op {
	char		*key;
	char		*value;
	int		 pending;
	bool		 immutable;
	char		*error;		/* first rejection, Redis's words */
};

static void
param_apply(struct lcluster *lc, const char *key, const char *value)
{
	size_t	 k;

	for (k = 0; k < lc->parameters.n; k++) {
		if (strcmp(lc->parameters.keys[k], key) == 0) {
			free(lc->parameters.values[k]);
			lc->parameters.values[k] = xstrdup(value);
			return;
		}
	}
	kvlist_add(&lc->parameters, key, value);
}

/*
 * Have every node restart, one at a time, replicas first (the monitor's
 * rolling restart), to take a setting it can only take at start: why.
 */
static void
restart_all(struct lcluster *lc, const char *why)
{
	size_t	 i;

	lc->restart_pending = true;
	for (i = 0; i < lc->nnodes; i++)
		lc->nodes[i]->needs_restart = true;
	log_cluster(LOG_LEVEL_NOTICE, lc->name, "%s: nodes restart one at a "
	    "time, replicas first", why);
}

static void
param_free(struct param_op *op)
{
	if (op == NULL)
		return;
	free(op->key);
	free(op->value);
	free(op->error);
	free(op);
}

static void
param_finish(struct lcluster *lc)
{
	struct param_op	*op = lc->param;
	char		*cause = NULL, *msg = NULL, *why;
	int		 r = 0;

	lc->param = NULL;
	evtimer_del(lc->param_ev);
	if (op->error != NULL) {
		/* Never write a setting Redis refuses into a config: the node
		 * would not start again. */
		xasprintf(&msg, "parameter %s=%s rejected by redis-server: %s",
		    op->key, op->value, op->error);
		r = -EINVAL;
	} else {
		param_apply(lc, op->key, op->value);
		if (op->immutable) {
			xasprintf(&why, "parameter %s cannot change live",
			    op->key);
			restart_all(lc, why);
			free(why);
		}
		if ((r = lstate_save(lc, &cause)) != 0)
			msg = cause;
		lcluster_changed(lc);
	}
	param_free(op);
	finish(lc, r, msg);
}

static void
param_deadline(evutil_socket_t fd, short ev, void *arg)
{
	struct lcluster	*lc = arg;

	if (lc->param == NULL)
		return;
	if (lc->param->error == NULL)
		lc->param->error = xstrdup("a node connection was lost");
	param_finish(lc);
}

static void
param_done(struct rconn *rc, struct redisReply *reply, const char *err,
    void *arg)
{
	struct lcluster	*lc = arg;
	struct param_op	*op = lc->param;

	if (op == NULL)
		return;		/* finished by its deadline */
	if (reply == NULL && op->error == NULL)
		xasprintf(&op->error, "%s", err);
	else if (reply != NULL && reply->type == REDIS_REPLY_ERROR) {
		/* Redis 7: "... can't set immutable config". */
		if (strstr(reply->str, "immutable") != NULL)
			op->immutable = true;
		else if (op->error == NULL)
			op->error = xstrdup(reply->str);
	}
	if (--op->pending == 0)
		param_finish(lc);
}

static int
step_params(struct lcluster *lc, const struct change *c, char **cause)
{
	struct param_op	*op;
	struct timeval	 tv = { 0, PARAM_DEADLINE_MS * 1000 };
	size_t		 i;
	int		 up = 0;

	for (i = 0; i < lc->nnodes; i++)
		if (lnode_up(lc->nodes[i]))
			up++;
	if (up == 0) {
		xasprintf(cause, "no node answers; parameter %s not changed",
		    c->field);
		return -EAGAIN;
	}
	op = xcalloc(1, sizeof *op);
	op->key = xstrdup(c->field);
	op->value = xstrdup(c->to);
	op->pending = up;
	lc->param = op;
	evtimer_add(lc->param_ev, &tv);
	for (i = 0; i < lc->nnodes && lc->param == op; i++) {
		if (!lnode_up(lc->nodes[i]))
			continue;
		if (rconn_command(lc->nodes[i]->conn, LOCAL_PING_TIMEOUT_MS,
		    param_done, lc, "CONFIG SET %s %s", c->field, c->to) != 0)
			param_done(NULL, NULL, "connection lost", lc);
	}
	return 1;	/* completes in param_done or param_deadline */
}

/*
 * One combined modification. Settings the backend only records are done
 * at once; Redis parameters go one per call (the reconciler comes back for
 * the next), so a rejected one names itself.
 */
static int
step_modify(struct lcluster *lc, const struct cluster_spec *s,
    const struct plan_step *st, char **cause)
{
	const struct change	*c, *param = NULL;
	size_t			 i, resets = 0;
	uint64_t		 mm;
	char			 buf[32];
	int			 r;

	for (i = 0; i < st->nchanges; i++) {
		c = &st->changes[i];
		if (c->reset) {
			/*
			 * A parameter the spec no longer sets: its value on a
			 * running node is whatever was set last, and only a
			 * node started from a config without it has its
			 * default.
			 */
			char *why;

			if (!kvlist_remove(&lc->parameters, c->field))
				continue;
			xasprintf(&why, "parameter %s is no longer in the spec "
			    "and goes back to its default", c->field);
			restart_all(lc, why);
			free(why);
			resets++;
		} else if (strcmp(c->field, "engine_version") == 0) {
			if ((r = check_engine(lc, s, cause)) != 0)
				return r;
		} else if (strcmp(c->field, "instance_type") == 0) {
			if ((r = spec_maxmemory(lc, s, &mm, cause)) != 0)
				return r;
			lc->maxmemory = mm;
			snprintf(buf, sizeof buf, "%llu",
			    (unsigned long long)mm);
			config_set_all(lc, "maxmemory", buf);
		} else if (strcmp(c->field, "enable_automatic_failover") == 0)
			lc->failover = strcmp(c->to, "true") == 0;
		else if (strcmp(c->field, "snapshot_window") == 0 ||
		    strcmp(c->field, "maintenance_window") == 0 ||
		    strcmp(c->field, "snapshot_retention_limit") == 0 ||
		    strcmp(c->field, "enable_multi_az") == 0)
			continue;	/* kept in the spec; nothing to run */
		else if (param == NULL)
			param = c;	/* a Redis parameter */
	}
	lc->apply_immediately = s->apply_immediately;
	lc->maintenance_window = s->maintenance_window;
	if ((r = lstate_save(lc, cause)) != 0)
		return r;
	if (resets > 0)
		lcluster_changed(lc);
	return param != NULL ? step_params(lc, param, cause) : 0;
}

static void
remove_cluster(struct lcluster *lc)
{
	size_t	 i;
	char	*path;

	lmon_stop(lc);
	lmon_endpoints_stop(lc);
	lcl_remove_all(lc);
	for (i = 0; i < lc->nnodes; i++) {
		node_kill(lc->nodes[i]->dir, lc->nodes[i]->pid);
		lnode_free(lc->nodes[i]);
	}
	free(lc->nodes);
	lc->nodes = NULL;
	lc->nnodes = 0;
	free(lc->primary);
	lc->primary = NULL;
	/* cluster.json goes first: a crash half way leaves no cluster. */
	path = node_path(lc->dir, "cluster.json");
	unlink(path);
	free(path);
	node_remove_dir(lc->dir);
	lc->exists = false;
	log_cluster(LOG_LEVEL_NOTICE, lc->name, "nodes stopped and data "
	    "removed (deletion_policy delete)");
}

/* The final snapshot is complete (or failed): delete, or keep it all. */
static void
final_done(void *arg, int error, const char *message)
{
	struct lcluster	*lc = arg;
	char		*m;

	if (error != 0) {
		xasprintf(&m, "final snapshot failed (%s); nothing was deleted",
		    message ? message : strerror(-error));
		finish(lc, error, m);
		return;
	}
	log_cluster(LOG_LEVEL_NOTICE, lc->name, "%s", message);
	remove_cluster(lc);
	finish(lc, 0, NULL);
}

/*
 * Deletion. With final_snapshot, a snapshot of type final first (the
 * same as any: a replica in sync per shard, manifest and checksums, see
 * local_backup.c); the nodes go only once it is complete.
 */
static int
step_delete(struct lcluster *lc, const struct plan_step *st, char **cause)
{
	char	*why = NULL;
	int	 r;

	if (!st->final_snapshot) {
		remove_cluster(lc);
		return 0;
	}
	if ((r = lbk_final(lc, final_done, lc, &why)) != 0) {
		xasprintf(cause, "final snapshot: %s; nothing was deleted", why);
		free(why);
		return r == -EBUSY ? -EAGAIN : r;
	}
	return 1;	/* completes in final_done */
}

static void
local_apply(void *arg, const struct cluster_spec *spec,
    const struct plan_step *step, backend_done_cb cb, void *cbarg)
{
	struct lcluster	*lc = arg;
	char		*cause = NULL;
	int		 r = 0;

	lc->dcb = cb;
	lc->cbarg = cbarg;
	switch (step->kind) {
	case STEP_CREATE:
		r = step_create(lc, spec, &cause);
		break;
	case STEP_ADD_REPLICAS:
		r = lc->cluster_mode ? lcl_add_replicas(lc, step->to, &cause) :
		    step_add_replicas(lc, step->to, &cause);
		break;
	case STEP_REMOVE_REPLICAS:
		r = lc->cluster_mode ? lcl_remove_replicas(lc, step->to,
		    &cause) : step_remove_replicas(lc, step->to, &cause);
		break;
	case STEP_MODIFY:
		if ((r = step_modify(lc, spec, step, &cause)) == 1)
			return;
		break;
	case STEP_DELETE:
		if ((r = step_delete(lc, step, &cause)) == 1)
			return;
		break;
	case STEP_FAILOVER_DRILL:	/* not scheduled by this backend */
	case STEP_ADD_SHARDS:
	case STEP_REMOVE_SHARDS:
		if (!lc->cluster_mode) {
			r = -ENOTSUP;
			xasprintf(&cause, "shards need cluster mode");
		} else if (step->kind == STEP_ADD_SHARDS)
			r = lcl_add_shards(lc, step->to, &cause);
		else
			r = lcl_remove_shards(lc, step->to, &cause);
		break;
	case STEP_REPLACE:
		r = -ENOTSUP;
		xasprintf(&cause, "this change needs the cluster replaced");
		break;
	}
	finish(lc, r, cause);
}

/* An operator's snapshot or failover (backend.h). */
static void
local_operate(void *arg, const struct cluster_spec *spec,
    const struct backend_op *op, backend_op_cb cb, void *cbarg)
{
	struct lcluster	*lc = arg;
	char		*cause = NULL, *msg = NULL;
	int		 r;

	if (!lc->exists) {
		xasprintf(&cause, "cluster %s does not exist yet", lc->name);
		lbk_answer(lc, cb, cbarg, -ENOENT, cause);
		return;
	}
	lbk_spec(lc, spec);
	if (op->kind == BACKEND_OP_SNAPSHOT) {
		lbk_manual(lc, op->name, cb, cbarg);
		return;
	}
	if (lc->cluster_mode) {
		const char *sh = op->shard;

		if (sh == NULL && lc->nshards > 0)
			sh = lc->shards[0]->id;
		r = local_cluster_failover(lc, sh ? sh : "s1", &cause);
		if (r == 0)
			xasprintf(&msg, "controlled failover of shard %s "
			    "started", sh);
	} else {
		if (op->shard != NULL && strcmp(op->shard, "s1") != 0 &&
		    strcmp(op->shard, "0001") != 0) {
			xasprintf(&cause, "%s has one node group (s1), not %s",
			    lc->name, op->shard);
			r = -ENOENT;
		} else
			r = lmon_switchover(lc, &cause);
		if (r == 0)
			xasprintf(&msg, "controlled failover to %s started",
			    lc->switch_to ? lc->switch_to : "a replica");
	}
	lbk_answer(lc, cb, cbarg, r, r == 0 ? msg : cause);
}

const struct backend backend_local = {
	.name = "local",
	.available = true,
	.poll_ms = 200,
	.attach = local_attach,
	.detach = local_detach,
	.observe = local_observe,
	.apply = local_apply,
	.operate = local_operate,
};
