/*
 * Cluster mode of the local backend: Redis Cluster of real redis-server
 * processes (cluster-enabled yes, each with its own nodes.conf). This file
 * holds the shards, the scaling steps the reconciler asks for, what the
 * backend reports (state, message, the shards with their slots and the
 * configuration endpoint) and the controlled failover entry point.
 *
 * Redis Cluster promotes replicas itself; the monitor (local_monitor.c)
 * still restarts dead processes, and local_cluster_view.c watches what
 * the nodes say and repairs what it can. Slots move in
 * local_cluster_migrate.c. The configuration endpoint on spec.port is a
 * plain TCP forwarder to a healthy node, like ElastiCache's configuration
 * endpoint name that resolves to some node: clients read the slot map
 * there and then talk to the nodes' own addresses.
 */
#include "config.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <hiredis/hiredis.h>

#include "local.h"
#include "log.h"
#include "node.h"
#include "rconn.h"
#include "util.h"

#define MAX_ARGS	64

struct lshard *
lcl_shard(struct lcluster *lc, const char *id)
{
	size_t	 i;

	for (i = 0; id != NULL && i < lc->nshards; i++)
		if (strcmp(lc->shards[i]->id, id) == 0)
			return lc->shards[i];
	return NULL;
}

int
lcl_shard_index(struct lcluster *lc, const char *id)
{
	size_t	 i;

	for (i = 0; id != NULL && i < lc->nshards; i++)
		if (strcmp(lc->shards[i]->id, id) == 0)
			return (int)i;
	return -1;
}

void
lshard_free(struct lshard *sh)
{
	if (sh == NULL)
		return;
	free(sh->id);
	free(sh->primary);
	free(sh);
}

void
lcl_init(struct lcluster *lc)
{
	if (lc->cl == NULL)
		lc->cl = xcalloc(1, sizeof *lc->cl);
}

void
lcl_free(struct lcluster *lc)
{
	size_t	 i;

	if (lc->cl == NULL)
		return;
	/* Silence every cluster command first: workers go next. */
	for (i = 0; i < lc->nnodes; i++) {
		rconn_free(lc->nodes[i]->ccon);
		lc->nodes[i]->ccon = NULL;
	}
	lmig_free(lc);
	lclv_free(lc);
	free(lc->cl);
	lc->cl = NULL;
}

struct rconn *
lcl_conn(struct lcluster *lc, struct lnode *n)
{
	return n->ccon != NULL && rconn_ok(n->ccon) ? n->ccon : NULL;
}

int
lcl_commandargv(struct lcluster *lc, struct lnode *n, rconn_cb_t cb,
    void *arg, int argc, const char **argv, const size_t *argvlen)
{
	struct rconn	*rc = lcl_conn(lc, n);

	if (rc == NULL)
		return -ENOTCONN;
	return rconn_commandargv(rc, LCL_CMD_TIMEOUT_MS, cb, arg, argc, argv,
	    argvlen);
}

int
lcl_command(struct lcluster *lc, struct lnode *n, rconn_cb_t cb, void *arg,
    const char *fmt, ...)
{
	const char	*argv[MAX_ARGS];
	char		*line, *p, *w;
	va_list		 ap;
	int		 argc = 0, r;

	va_start(ap, fmt);
	xvasprintf(&line, fmt, ap);
	va_end(ap);
	for (p = line; (w = strsep(&p, " ")) != NULL && argc < MAX_ARGS;)
		if (*w != '\0')
			argv[argc++] = w;
	r = lcl_commandargv(lc, n, cb, arg, argc, argv, NULL);
	free(line);
	return r;
}

static void
send_done(struct rconn *rc, struct redisReply *reply, const char *err,
    void *arg)
{
	if (reply == NULL || reply->type == REDIS_REPLY_ERROR)
		log_debug("cluster command: %s", reply ? reply->str : err);
}

void
lcl_send(struct lcluster *lc, struct lnode *n, const char *fmt, ...)
{
	char	*line;
	va_list	 ap;

	va_start(ap, fmt);
	xvasprintf(&line, fmt, ap);
	va_end(ap);
	log_debug("%s: %s: %s", lc->name, n->id, line);
	if (lcl_command(lc, n, send_done, NULL, "%s", line) != 0)
		log_debug("%s: %s: not connected", lc->name, n->id);
	free(line);
}

void
lcl_tick(struct lcluster *lc)
{
	size_t	 i;

	lcl_init(lc);
	/* Replace failed cluster connections here, outside any callback. */
	for (i = 0; i < lc->nnodes; i++) {
		struct lnode *n = lc->nodes[i];

		if (n->ccon != NULL && !rconn_ok(n->ccon)) {
			rconn_free(n->ccon);
			n->ccon = NULL;
		}
		if (n->ccon == NULL && lnode_up(n))
			n->ccon = rconn_new_user(lc->ctx->base, n->sock,
			    LC_AUTH_USER(lc), LC_AUTH_PASS(lc),
			    LOCAL_CONNECT_TIMEOUT_MS);
	}
	/* Settled, a round every few ticks is enough; busy, every tick. */
	if (lc->cl->have_view && lc->cl->agree && lc->cl->slots_left == 0 &&
	    !lmig_busy(lc) && lc->ticks % LOCAL_INFO_EVERY != 1)
		return;
	lclv_round_start(lc);
}

/*
 * A dead primary is restarted only once Redis has promoted one of its
 * replicas: started again at once, it would come back as the primary with
 * the data of its last snapshot and its replicas would resync from it,
 * losing every write since. Without a replica that could take over, or
 * when the promotion does not come, it restarts in place.
 */
bool
lcl_may_restart(struct lcluster *lc, struct lnode *n)
{
	struct lshard	*sh = lcl_shard(lc, n->shard);
	uint64_t	 wait_ms, now = clock_mono_ms();
	size_t		 i;
	bool		 candidate = false;

	if (sh == NULL || sh->primary == NULL || strcmp(sh->primary,
	    n->id) != 0 || !lc->created)
		return true;
	for (i = 0; i < lc->nnodes; i++) {
		struct lnode *o = lc->nodes[i];
		if (o != n && o->shard != NULL && strcmp(o->shard,
		    sh->id) == 0 && lnode_up(o) && o->synced_once)
			candidate = true;
	}
	if (!candidate)
		return true;
	wait_ms = 3 * lc->ctx->conf->local.cluster_node_timeout_ms + 5000;
	return n->down_since_ms != 0 && now - n->down_since_ms > wait_ms;
}

struct lnode *
lcl_add_node(struct lcluster *lc, const char *shard, char **cause)
{
	struct lnode	*n;
	char		 id[16];
	int		 port;

	if ((port = lcluster_alloc_port(lc, cause)) < 0)
		return NULL;
	snprintf(id, sizeof id, "n%d", ++lc->next_seq);
	n = lnode_new(lc, id, port);
	n->shard = xstrdup(shard);
	n->added = true;
	lc->nodes = xreallocarray(lc->nodes, lc->nnodes + 1, sizeof *lc->nodes);
	lc->nodes[lc->nnodes++] = n;
	/*
	 * The cluster bus port comes from the range too, rather than Redis's
	 * port + 10000: that may be above 65535, taken, or outside what the
	 * operator opened.
	 */
	if ((port = lcluster_alloc_port(lc, cause)) < 0) {
		lc->nnodes--;
		lnode_free(n);
		return NULL;
	}
	n->bus_port = port;
	return n;
}

void
lcl_node_destroy(struct lcluster *lc, struct lnode *n)
{
	struct timeval	 now = { 0, 0 };
	size_t		 i;

	log_cluster(LOG_LEVEL_INFO, lc->name, "removing node %s (shard %s, "
	    "port %d)", n->id, n->shard ? n->shard : "-", n->port);
	node_kill(n->dir, n->pid);
	node_remove_dir(n->dir);
	for (i = 0; i < lc->nnodes; i++)
		if (lc->nodes[i] == n)
			break;
	if (i < lc->nnodes) {
		memmove(&lc->nodes[i], &lc->nodes[i + 1],
		    (lc->nnodes - i - 1) * sizeof *lc->nodes);
		lc->nnodes--;
	}
	lnode_free(n);
	if (lc->cl != NULL) {
		lc->cl->have_view = false;
		/* Its answers will never come: end the round now. */
		if (lc->cl->round_busy && lc->cl->round_ev != NULL)
			evtimer_add(lc->cl->round_ev, &now);
	}
}

/* A new shard with a primary and lc->replicas replicas, started. */
static int
shard_new(struct lcluster *lc, char **cause)
{
	struct lshard	*sh = xcalloc(1, sizeof *sh);
	struct lnode	*n;
	char		 id[16];
	int		 i, r;

	snprintf(id, sizeof id, "s%d", ++lc->next_shard);
	sh->id = xstrdup(id);
	lc->shards = xreallocarray(lc->shards, lc->nshards + 1,
	    sizeof *lc->shards);
	lc->shards[lc->nshards++] = sh;
	for (i = 0; i <= lc->replicas; i++) {
		if ((n = lcl_add_node(lc, sh->id, cause)) == NULL)
			return -ENOSPC;
		if (i == 0)
			sh->primary = xstrdup(n->id);
	}
	if ((r = lstate_save(lc, cause)) != 0)
		return r;
	if (lc->restore_placing)
		return 0;	/* lrs_place_start() starts them */
	for (i = 0; i < (int)lc->nnodes; i++) {
		n = lc->nodes[i];
		if (strcmp(n->shard, sh->id) == 0 &&
		    (r = lnode_start(lc, n, cause)) != 0)
			return r;
	}
	return 0;
}

int
lcl_create(struct lcluster *lc, const struct cluster_spec *s, char **cause)
{
	int	 i, r;

	lc->cluster_mode = true;
	lc->replicas = s->replicas_per_node_group;
	lc->exists = true;
	lc->created = false;
	lcl_init(lc);
	(void)lrs_same_layout(lc, s);
	for (i = 0; i < s->num_node_groups; i++)
		if ((r = shard_new(lc, cause)) != 0) {
			lc->restore_placing = false;
			return r;
		}
	if (lc->restore_placing) {
		if (lrs_place_start(lc))
			return 0;	/* it starts the nodes */
		for (i = 0; i < (int)lc->nnodes; i++)
			if ((r = lnode_start(lc, lc->nodes[i], cause)) != 0)
				return r;
	}
	lmon_start(lc);
	return 0;
}

static int
active_shards(struct lcluster *lc)
{
	size_t	 i;
	int	 n = 0;

	for (i = 0; i < lc->nshards; i++)
		if (!lc->shards[i]->removing)
			n++;
	return n;
}

int
lcl_num_shards(struct lcluster *lc)
{
	return active_shards(lc);
}

int
lcl_add_shards(struct lcluster *lc, int to, char **cause)
{
	size_t	 i;
	int	 r;

	/* Shards on their way out come back first: their data is there. */
	for (i = 0; i < lc->nshards && active_shards(lc) < to; i++)
		lc->shards[i]->removing = false;
	while (active_shards(lc) < to) {
		if ((r = shard_new(lc, cause)) != 0)
			return r;
	}
	log_cluster(LOG_LEVEL_NOTICE, lc->name, "%d shards: slots move to the "
	    "new ones once every node agrees", to);
	lc->cl->have_view = false;
	return lstate_save(lc, cause);
}

int
lcl_remove_shards(struct lcluster *lc, int to, char **cause)
{
	size_t	 i;

	if (lmig_busy(lc)) {
		xasprintf(cause, "slots are moving; try again when done");
		return -EAGAIN;
	}
	for (i = lc->nshards; i-- > 0 && active_shards(lc) > to;) {
		if (lc->shards[i]->removing)
			continue;
		lc->shards[i]->removing = true;
		log_cluster(LOG_LEVEL_NOTICE, lc->name, "removing shard %s: its "
		    "slots move to the other shards first", lc->shards[i]->id);
	}
	lc->cl->have_view = false;
	return lstate_save(lc, cause);
}

static int
shard_size(struct lcluster *lc, const char *shard)
{
	size_t	 i;
	int	 n = 0;

	for (i = 0; i < lc->nnodes; i++)
		if (strcmp(lc->nodes[i]->shard, shard) == 0)
			n++;
	return n;
}

int
lcl_add_replicas(struct lcluster *lc, int to, char **cause)
{
	struct lnode	*n;
	size_t		 si;
	int		 r;

	lc->replicas = to;
	for (si = 0; si < lc->nshards; si++) {
		const char *sh = lc->shards[si]->id;

		while (shard_size(lc, sh) - 1 < to) {
			if ((n = lcl_add_node(lc, sh, cause)) == NULL)
				return -ENOSPC;
			if ((r = lstate_save(lc, cause)) != 0 ||
			    (r = lnode_start(lc, n, cause)) != 0)
				return r;
		}
	}
	lc->cl->have_view = false;
	return lstate_save(lc, cause);
}

/* The replica of a shard to remove first: down, unsynced, most behind. */
static struct lnode *
worst_replica(struct lcluster *lc, struct lshard *sh)
{
	struct lnode	*worst = NULL;
	long long	 wo = 0, off;
	size_t		 i;

	for (i = 0; i < lc->nnodes; i++) {
		struct lnode *n = lc->nodes[i];

		if (strcmp(n->shard, sh->id) != 0 || (sh->primary != NULL &&
		    strcmp(sh->primary, n->id) == 0))
			continue;
		off = lnode_up(n) && n->synced_once ? n->offset : -1;
		if (worst == NULL || off < wo) {
			worst = n;
			wo = off;
		}
	}
	return worst;
}

int
lcl_remove_replicas(struct lcluster *lc, int to, char **cause)
{
	struct lnode	*n;
	size_t		 si;

	if (lmig_busy(lc)) {
		xasprintf(cause, "slots are moving; try again when done");
		return -EAGAIN;
	}
	lc->replicas = to;
	for (si = 0; si < lc->nshards; si++) {
		struct lshard *sh = lc->shards[si];

		while (shard_size(lc, sh->id) - 1 > to &&
		    (n = worst_replica(lc, sh)) != NULL)
			lcl_node_destroy(lc, n);
	}
	/* The others forget the removed nodes' IDs in the next rounds. */
	return lstate_save(lc, cause);
}

void
lcl_remove_all(struct lcluster *lc)
{
	size_t	 i;

	lcl_free(lc);
	for (i = 0; i < lc->nshards; i++)
		lshard_free(lc->shards[i]);
	free(lc->shards);
	lc->shards = NULL;
	lc->nshards = 0;
	lc->cluster_mode = false;
}

/* Slots of shard si, as "0-5460,16000". */
static char *
shard_ranges(struct lcluster *lc, int si, int *count)
{
	struct strbuf	 sb;
	int		 s, a;

	*count = 0;
	strbuf_init(&sb);
	if (lc->cl == NULL || !lc->cl->have_view)
		return strbuf_detach(&sb);
	for (s = 0; s < LCL_SLOTS; s++) {
		if (lc->cl->owner[s] != si)
			continue;
		for (a = s; s + 1 < LCL_SLOTS && lc->cl->owner[s + 1] == si;
		    s++)
			;
		*count += s - a + 1;
		if (a == s)
			strbuf_printf(&sb, "%s%d", sb.len ? "," : "", a);
		else
			strbuf_printf(&sb, "%s%d-%d", sb.len ? "," : "", a, s);
	}
	if (sb.len == 0)
		strbuf_puts(&sb, "");
	return strbuf_detach(&sb);
}

/*
 * A node not heard from yet (just started or adopted) that the monitor
 * has not found down either is not damage yet.
 */
static bool
node_starting(const struct lnode *n)
{
	return !lnode_up(n) && n->last_ok_ms == 0 && n->down_since_ms == 0;
}

static bool
shard_lost(struct lcluster *lc, struct lshard *sh)
{
	size_t	 i;

	for (i = 0; i < lc->nnodes; i++)
		if (strcmp(lc->nodes[i]->shard, sh->id) == 0 &&
		    (lnode_up(lc->nodes[i]) || node_starting(lc->nodes[i])))
			return false;
	return true;
}

/* Whether every node is in its place, in sync, and nothing moves. */
static bool
settled(struct lcluster *lc)
{
	struct lcl	*cl = lc->cl;
	size_t		 i;

	if (cl == NULL || !cl->have_view || !cl->agree || !cl->all_ok ||
	    cl->covered != LCL_SLOTS || cl->slots_left != 0 ||
	    cl->open_slots != 0 || lmig_busy(lc) ||
	    cl->views != (int)lc->nnodes)
		return false;
	for (i = 0; i < lc->nshards; i++)
		if (lc->shards[i]->removing ||
		    shard_size(lc, lc->shards[i]->id) != lc->replicas + 1)
			return false;
	for (i = 0; i < lc->nnodes; i++) {
		struct lnode *n = lc->nodes[i];
		struct lshard *sh = lcl_shard(lc, n->shard);
		bool primary = sh != NULL && sh->primary != NULL &&
		    strcmp(sh->primary, n->id) == 0;

		if (!lnode_up(n) || n->is_master != primary ||
		    (!primary && (!n->synced_once || !n->link_up)))
			return false;
	}
	return true;
}

enum obs_state
lcl_observed_state(struct lcluster *lc)
{
	size_t	 i;

	if (!lc->created)
		return OBS_CREATING;
	for (i = 0; i < lc->nshards; i++)
		if (shard_lost(lc, lc->shards[i]))
			return OBS_DEGRADED;
	for (i = 0; i < lc->nnodes; i++)
		if (!lnode_up(lc->nodes[i]) && !node_starting(lc->nodes[i]))
			return OBS_DEGRADED;
	if (lmig_error(lc) != NULL)
		return OBS_DEGRADED;
	if (lc->cl != NULL && lc->cl->have_view && !lc->cl->all_ok &&
	    lc->cl->covered != LCL_SLOTS)
		return OBS_DEGRADED;
	return settled(lc) ? OBS_AVAILABLE : OBS_MODIFYING;
}

char *
lcl_message(struct lcluster *lc)
{
	struct lcl	*cl = lc->cl;
	struct strbuf	 sb;
	size_t		 i;
	int		 count;

	strbuf_init(&sb);
	if (lmig_error(lc) != NULL)
		strbuf_puts(&sb, lmig_error(lc));
	for (i = 0; i < lc->nshards; i++) {
		char *r;

		if (!shard_lost(lc, lc->shards[i]))
			continue;
		r = shard_ranges(lc, (int)i, &count);
		strbuf_printf(&sb, "%sshard %s has no node answering: slots "
		    "%s lost until it is back", sb.len ? "; " : "",
		    lc->shards[i]->id, *r ? r : "(unknown)");
		free(r);
	}
	for (i = 0; i < lc->nnodes; i++)
		if (!lnode_up(lc->nodes[i]) && !node_starting(lc->nodes[i]) &&
		    !shard_lost(lc, lcl_shard(lc, lc->nodes[i]->shard)))
			strbuf_printf(&sb, "%snode %s (shard %s) not answering",
			    sb.len ? "; " : "", lc->nodes[i]->id,
			    lc->nodes[i]->shard);
	if (cl != NULL && cl->have_view && !cl->agree && cl->disagree)
		strbuf_printf(&sb, "%snodes disagree about the configuration "
		    "(%s): no slot moves until they agree", sb.len ? "; " : "",
		    cl->disagree);
	if (cl != NULL && cl->slots_left > 0)
		strbuf_printf(&sb, "%sresharding: %d slots to move",
		    sb.len ? "; " : "", cl->slots_left);
	if (sb.len == 0 && lc->message != NULL)
		strbuf_puts(&sb, lc->message);
	if (sb.len == 0) {
		strbuf_free(&sb);
		return NULL;
	}
	return strbuf_detach(&sb);
}

json_t *
lcl_endpoints(struct lcluster *lc)
{
	const char	*bind = lc->ctx->conf->local.bind;
	json_t		*j, *shards = json_array(), *nodes = json_array();
	json_t		*cfg = json_array(), *mig;
	char		 addr[300], *r;
	size_t		 si, i;
	int		 count;

	for (si = 0; si < lc->nshards; si++) {
		struct lshard *sh = lc->shards[si];
		json_t *members = json_array();

		for (i = 0; i < lc->nnodes; i++)
			if (strcmp(lc->nodes[i]->shard, sh->id) == 0)
				json_array_append_new(members, json_string(
				    lc->nodes[i]->id));
		r = shard_ranges(lc, (int)si, &count);
		json_array_append_new(shards, json_pack("{s:s, s:s?, s:s, "
		    "s:i, s:o, s:b}", "id", sh->id, "primary", sh->primary,
		    "slots", r, "slot_count", count, "nodes", members,
		    "removing", sh->removing));
		free(r);
	}
	for (i = 0; i < lc->nnodes; i++) {
		struct lnode *n = lc->nodes[i];
		struct lshard *sh = lcl_shard(lc, n->shard);
		bool primary = sh != NULL && sh->primary != NULL &&
		    strcmp(sh->primary, n->id) == 0;

		snprintf(addr, sizeof addr, "%s:%d", bind, n->port);
		if (lnode_up(n) && (primary || n->link_up))
			json_array_append_new(cfg, json_string(addr));
		json_array_append_new(nodes, json_pack("{s:s, s:s, s:s, s:s, "
		    "s:I, s:I, s:b, s:b, s:s?, s:s?}", "id", n->id, "shard",
		    n->shard, "address", addr, "role", primary ? "primary" :
		    "replica", "pid", (json_int_t)n->pid, "offset",
		    (json_int_t)n->offset, "up", lnode_up(n), "synced", primary ?
		    lnode_up(n) : n->link_up, "cluster_id", n->cid, "error",
		    n->restart_error));
	}
	snprintf(addr, sizeof addr, "%s:%d", bind, lc->port);
	j = json_pack("{s:s, s:o, s:o, s:o, s:i}", "configuration", addr,
	    "configuration_nodes", cfg, "shards", shards, "nodes", nodes,
	    "failovers", lc->failovers);
	if (lc->cl != NULL && lc->cl->have_view) {
		json_object_set_new(j, "cluster_state", json_string(
		    lc->cl->all_ok ? "ok" : "fail"));
		json_object_set_new(j, "nodes_agree", json_boolean(
		    lc->cl->agree));
		json_object_set_new(j, "slots_covered", json_integer(
		    lc->cl->covered));
	}
	if ((mig = lmig_status(lc)) != NULL)
		json_object_set_new(j, "resharding", mig);
	if ((mig = lmig_progress(lc)) != NULL)
		json_object_set_new(j, "progress", mig);
	return j;
}

int
local_cluster_failover(struct lcluster *lc, const char *shard, char **cause)
{
	struct lshard	*sh;
	struct lnode	*best = NULL;
	size_t		 i;

	if (!lc->cluster_mode) {
		xasprintf(cause, "%s is not a cluster-mode cluster", lc->name);
		return -ENOTSUP;
	}
	if ((sh = lcl_shard(lc, shard)) == NULL) {
		xasprintf(cause, "%s has no shard %s", lc->name, shard);
		return -ENOENT;
	}
	if (!lc->created || lmig_busy(lc)) {
		xasprintf(cause, "%s is %s; try again later", lc->name,
		    !lc->created ? "being created" : "resharding");
		return -EAGAIN;
	}
	for (i = 0; i < lc->nnodes; i++) {
		struct lnode *n = lc->nodes[i];

		if (strcmp(n->shard, sh->id) != 0 || (sh->primary != NULL &&
		    strcmp(n->id, sh->primary) == 0) || !lnode_up(n) ||
		    !n->synced_once || !n->link_up || lcl_conn(lc, n) == NULL)
			continue;
		if (best == NULL || n->offset > best->offset)
			best = n;
	}
	if (best == NULL) {
		xasprintf(cause, "shard %s has no replica in sync to take over",
		    sh->id);
		return -EAGAIN;
	}
	log_cluster(LOG_LEVEL_NOTICE, lc->name, "controlled failover of shard "
	    "%s: %s takes over from %s", sh->id, best->id, sh->primary ?
	    sh->primary : "?");
	/* Redis pauses the primary's clients until best has caught up. */
	lcl_send(lc, best, "CLUSTER FAILOVER");
	return 0;
}
