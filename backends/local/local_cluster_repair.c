/*
 * Cluster mode: what the daemon does about what the nodes say (the views
 * of a round, local_cluster_view.c). Each repair is idempotent, so a
 * round may repeat it: MEET nodes not in the cluster yet, FORGET node IDs
 * that are not ours (removed or replaced nodes), REPLICATE a shard's
 * other nodes to its primary, have a replica take over where Redis
 * cannot elect one, assign the slots of a new cluster, close slots left
 * open, drop emptied shards, and hand the slot spread to
 * local_cluster_reshard.c. Nothing starts moving while the nodes
 * disagree about the configuration.
 */
#include "config.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "local.h"
#include "log.h"
#include "node.h"
#include "util.h"

#define MEET_EVERY_MS		2000
#define REPLICATE_EVERY_MS	3000

/* Slots per shard from the consensus owner[]. */
static int
shard_slots(struct lcluster *lc, int si)
{
	int	 s, c = 0;

	for (s = 0; s < LCL_SLOTS; s++)
		if (lc->cl->owner[s] == si)
			c++;
	return c;
}

/* The node of shard si that owns its slots (or its first primary). */
static struct lnode *
shard_master(struct lcluster *lc, int si, struct cview *vs, size_t nv)
{
	struct lshard	*sh = lc->shards[si];
	struct cent	*best = NULL;
	size_t		 i, s;

	/*
	 * A node's claim on its own slots first, the highest config epoch
	 * winning: a restarted old primary claims its slots for a moment
	 * before it learns that a promoted replica has them now.
	 */
	for (i = 0; i < nv; i++) {
		struct cent *self = vs[i].self;

		if (self == NULL || !self->master || vs[i].from->shard ==
		    NULL || strcmp(vs[i].from->shard, sh->id) != 0)
			continue;
		for (s = 0; s < LCL_SLOTS; s++)
			if (vs[i].owner[s] >= 0 &&
			    &vs[i].e[vs[i].owner[s]] == self)
				break;
		if (s < LCL_SLOTS && (best == NULL || self->epoch >
		    best->epoch))
			best = self;
	}
	if (best != NULL)
		return best->node;
	for (i = 0; i < nv; i++) {
		for (s = 0; s < LCL_SLOTS; s++) {
			short o = vs[i].owner[s];
			struct lnode *n = o < 0 ? NULL : vs[i].e[o].node;
			if (n != NULL && n->shard != NULL &&
			    strcmp(n->shard, sh->id) == 0 && lc->cl->owner[s] ==
			    si)
				return n;
		}
	}
	return lcluster_node(lc, sh->primary);
}

/* Follow each shard's primary; a change is a failover Redis made. */
static void
track_primaries(struct lcluster *lc, struct cview *vs, size_t nv)
{
	struct lnode	*m;
	char		*cause = NULL;
	size_t		 si;

	for (si = 0; si < lc->nshards; si++) {
		struct lshard *sh = lc->shards[si];

		m = shard_master(lc, (int)si, vs, nv);
		if (m == NULL || (sh->primary != NULL &&
		    strcmp(sh->primary, m->id) == 0))
			continue;
		if (sh->primary != NULL && lc->created) {
			lc->failovers++;
			log_cluster(LOG_LEVEL_NOTICE, lc->name, "failover: "
			    "shard %s: %s is the primary in place of %s",
			    sh->id, m->id, sh->primary);
			free(lc->message);
			xasprintf(&lc->message, "failover %d: shard %s: %s "
			    "replaced %s as primary", lc->failovers, sh->id,
			    m->id, sh->primary);
			lcluster_changed(lc);
		}
		free(sh->primary);
		sh->primary = xstrdup(m->id);
		if (lstate_save(lc, &cause) != 0) {
			log_cluster(LOG_LEVEL_WARNING, lc->name, "%s", cause);
			free(cause);
			cause = NULL;
		}
	}
}

/*
 * Redis Cluster promotes a replica only when most primaries agree that
 * its primary failed: with one or two shards, or half the primaries
 * gone, that majority does not exist and the shard would stay without a
 * primary. The daemon knows better than gossip whether a local process
 * died: once the primary's process is gone for twice the node timeout,
 * it has the shard's best replica take over (CLUSTER FAILOVER TAKEOVER,
 * which needs no votes).
 */
static void
act_takeover(struct lcluster *lc)
{
	uint64_t	 now = clock_mono_ms(), after;
	size_t		 si, i;

	after = 2 * lc->ctx->conf->local.cluster_node_timeout_ms + 1000;
	for (si = 0; si < lc->nshards; si++) {
		struct lshard *sh = lc->shards[si];
		struct lnode *p = lcluster_node(lc, sh->primary), *best = NULL;

		if (p == NULL || lnode_up(p) || p->down_since_ms == 0 ||
		    now - p->down_since_ms < after || node_pid_alive(p->pid))
			continue;
		for (i = 0; i < lc->nnodes; i++) {
			struct lnode *n = lc->nodes[i];
			if (n == p || strcmp(n->shard, sh->id) != 0 ||
			    !lnode_up(n) || !n->synced_once)
				continue;
			if (best == NULL || n->offset > best->offset)
				best = n;
		}
		if (best == NULL || now - best->replicate_ms <
		    REPLICATE_EVERY_MS)
			continue;
		best->replicate_ms = now;
		log_cluster(LOG_LEVEL_NOTICE, lc->name, "shard %s: primary %s "
		    "is gone and the cluster has not promoted a replica in "
		    "%llu ms; %s takes over", sh->id, p->id,
		    (unsigned long long)(now - p->down_since_ms), best->id);
		lcl_send(lc, best, "CLUSTER FAILOVER TAKEOVER");
	}
}

/* MEET nodes the seed (the node that knows most) does not know yet. */
static bool
act_meet(struct lcluster *lc, struct cview *vs, size_t nv)
{
	struct cview	*seed = NULL;
	uint64_t	 now = clock_mono_ms();
	size_t		 i;
	bool		 sent = false;

	for (i = 0; i < nv; i++)
		if (seed == NULL || vs[i].ne > seed->ne)
			seed = &vs[i];
	for (i = 0; seed != NULL && i < nv; i++) {
		struct lnode *y = vs[i].from;
		struct cent *e = lclv_find(seed, y->cid);

		if (y == seed->from || (e != NULL && !e->handshake))
			continue;
		if (now - y->meet_ms < MEET_EVERY_MS)
			continue;
		y->meet_ms = now;
		/* A new node's epoch 0 would collide with the others'. */
		if (vs[i].ne == 1)
			lcl_send(lc, y, "CLUSTER SET-CONFIG-EPOCH %d",
			    lcl_shard_index(lc, y->shard) + 1 +
			    (int)lc->nnodes);
		if (y->bus_port != 0)
			lcl_send(lc, seed->from, "CLUSTER MEET %s %d %d",
			    lc->ctx->conf->local.bind, y->port, y->bus_port);
		else
			lcl_send(lc, seed->from, "CLUSTER MEET %s %d",
			    lc->ctx->conf->local.bind, y->port);
		sent = true;
	}
	return sent;
}

/* FORGET node IDs that are none of ours and own no slot. */
static void
act_forget(struct lcluster *lc, struct cview *vs, size_t nv)
{
	size_t	 i, j, s;

	for (i = 0; i < lc->nnodes; i++)
		if (lc->nodes[i]->cid == NULL)
			return;		/* a node we do not know yet */
	for (i = 0; i < nv; i++) {
		for (j = 0; j < vs[i].ne; j++) {
			struct cent *e = &vs[i].e[j];
			bool owns = false;

			/* A node in handshake has a made-up ID until the
			 * handshake ends: forgetting it would undo a MEET. */
			if (e->node != NULL || e->myself || e->handshake)
				continue;
			for (s = 0; s < LCL_SLOTS && !owns; s++)
				owns = vs[i].owner[s] == (short)j;
			if (owns)
				continue;
			log_cluster(LOG_LEVEL_INFO, lc->name, "node %s: "
			    "forgetting node ID %.8s (not ours)",
			    vs[i].from->id, e->cid);
			lcl_send(lc, vs[i].from, "CLUSTER FORGET %s", e->cid);
		}
	}
}

/* Make every other node of each shard a replica of its primary. */
static void
act_replicate(struct lcluster *lc, struct cview *vs, size_t nv)
{
	uint64_t	 now = clock_mono_ms();
	size_t		 i, si;

	for (si = 0; si < lc->nshards; si++) {
		struct lnode *m = lcluster_node(lc, lc->shards[si]->primary);

		if (m == NULL || m->cid == NULL)
			continue;
		for (i = 0; i < nv; i++) {
			struct lnode *n = vs[i].from;
			struct cent *self = vs[i].self, *me;

			if (n == m || self == NULL || n->shard == NULL ||
			    strcmp(n->shard, lc->shards[si]->id) != 0)
				continue;
			if (!self->master && strcmp(self->master_cid,
			    m->cid) == 0)
				continue;
			if ((me = lclv_find(&vs[i], m->cid)) == NULL ||
			    me->handshake || now - n->replicate_ms <
			    REPLICATE_EVERY_MS)
				continue;
			n->replicate_ms = now;
			log_cluster(LOG_LEVEL_INFO, lc->name, "making %s a "
			    "replica of %s (shard %s)", n->id, m->id,
			    lc->shards[si]->id);
			lcl_send(lc, n, "CLUSTER REPLICATE %s", m->cid);
		}
	}
}

/*
 * A new cluster: spread the slots evenly over the shards' primaries, each
 * shard taking its part of the slots nobody has yet. Waits until every
 * primary has answered, so no part is sent to a node not listening yet.
 */
static void
act_assign(struct lcluster *lc, struct cview *vs, size_t nv)
{
	size_t	 si, i, active = 0;
	int	 start = 0, k = 0, a, s;

	for (si = 0; si < lc->nshards; si++) {
		struct lnode *m = lcluster_node(lc, lc->shards[si]->primary);

		if (lc->shards[si]->removing)
			continue;
		active++;
		for (i = 0; i < nv && vs[i].from != m; i++)
			;
		if (i == nv)
			return;
	}
	for (si = 0; si < lc->nshards && active > 0; si++) {
		struct lnode *m = lcluster_node(lc, lc->shards[si]->primary);
		int count;

		if (lc->shards[si]->removing)
			continue;
		count = LCL_SLOTS / (int)active +
		    (k < LCL_SLOTS % (int)active ? 1 : 0);
		k++;
		for (s = start; s < start + count; s++) {
			if (lc->cl->owner[s] != -1)
				continue;
			for (a = s; s + 1 < start + count &&
			    lc->cl->owner[s + 1] == -1; s++)
				;
			log_cluster(LOG_LEVEL_INFO, lc->name, "shard %s: slots "
			    "%d-%d on %s", lc->shards[si]->id, a, s, m->id);
			lcl_send(lc, m, "CLUSTER ADDSLOTSRANGE %d %d", a, s);
		}
		start += count;
	}
}

/* Close slots left open, by an earlier daemon or anyone else. */
static void
act_open_slots(struct lcluster *lc, struct cview *vs, size_t nv)
{
	size_t	 i, j, k;
	int	 s;

	for (i = 0; i < nv; i++) {
		for (j = 0; j < vs[i].nopen; j++) {
			struct copen *o = &vs[i].open[j];
			int si;
			struct lnode *owner = NULL;

			s = o->slot;
			if (s < 0 || s >= LCL_SLOTS)
				continue;
			si = lc->cl->owner[s];
			if (si >= 0)
				owner = lcluster_node(lc,
				    lc->shards[si]->primary);
			if (o->importing) {
				lmig_repair(lc, s, owner, vs[i].from, NULL);
				continue;
			}
			/* Migrating: is anyone importing it? */
			for (k = 0; k < nv; k++) {
				size_t m;
				for (m = 0; m < vs[k].nopen; m++)
					if (vs[k].open[m].slot == s &&
					    vs[k].open[m].importing)
						break;
				if (m < vs[k].nopen)
					break;
			}
			if (k < nv)
				continue;	/* the importer's entry does it */
			lmig_repair(lc, s, owner, NULL, vs[i].from);
		}
	}
}

/* The cluster is up: every shard has its nodes in their roles, every
 * replica synced once, all slots covered, every node agrees and says ok. */
static bool
all_created(struct lcluster *lc, struct cview *vs, size_t nv)
{
	size_t	 i;

	if (!lc->cl->agree || !lc->cl->all_ok || lc->cl->covered != LCL_SLOTS ||
	    nv != lc->nnodes)
		return false;
	for (i = 0; i < nv; i++) {
		struct lnode *n = vs[i].from;
		struct lshard *sh = lcl_shard(lc, n->shard);

		if (sh == NULL || vs[i].self == NULL)
			return false;
		if (strcmp(sh->primary ? sh->primary : "", n->id) != 0 &&
		    (vs[i].self->master || !n->synced_once))
			return false;
	}
	return true;
}

/* Shards being removed that hold no slot any more: stop their nodes. */
static void
act_drop_shards(struct lcluster *lc)
{
	size_t	 si, i;
	char	*cause = NULL;
	bool	 dropped = false;

	for (si = 0; si < lc->nshards; si++) {
		struct lshard *sh = lc->shards[si];

		if (!sh->removing || shard_slots(lc, (int)si) > 0)
			continue;
		log_cluster(LOG_LEVEL_NOTICE, lc->name, "shard %s holds no slot "
		    "any more: stopping its nodes", sh->id);
		for (i = lc->nnodes; i-- > 0;)
			if (lc->nodes[i]->shard != NULL &&
			    strcmp(lc->nodes[i]->shard, sh->id) == 0)
				lcl_node_destroy(lc, lc->nodes[i]);
		lshard_free(sh);
		memmove(&lc->shards[si], &lc->shards[si + 1],
		    (lc->nshards - si - 1) * sizeof *lc->shards);
		lc->nshards--;
		si--;
		dropped = true;
	}
	if (!dropped)
		return;
	lc->cl->have_view = false;
	if (lstate_save(lc, &cause) != 0) {
		log_cluster(LOG_LEVEL_WARNING, lc->name, "%s", cause);
		free(cause);
	}
	lcluster_changed(lc);
}

/* Conclude from the views and act. */
void
lclr_evaluate(struct lcluster *lc, struct cview *vs, size_t nv)
{
	struct lcl	*cl = lc->cl;
	bool		 was_agree = cl->agree, was_ok = cl->all_ok;
	size_t		 i, s;
	int		 left;

	free(cl->disagree);
	cl->disagree = NULL;
	cl->views = (int)nv;
	cl->agree = nv > 0 && lclv_agree(lc, vs, nv, &cl->disagree);
	cl->all_ok = nv > 0;
	cl->open_slots = 0;
	for (i = 0; i < nv; i++) {
		if (!vs[i].from->state_ok)
			cl->all_ok = false;
		cl->open_slots += (int)vs[i].nopen;
	}
	/* Consensus owner: the first view that names one (views agree when
	 * it matters; otherwise nothing moves). Owners' own views first. */
	cl->covered = 0;
	for (s = 0; s < LCL_SLOTS; s++) {
		cl->owner[s] = -1;
		for (i = 0; i < nv; i++) {
			short o = vs[i].owner[s];
			struct lnode *n = o < 0 ? NULL : vs[i].e[o].node;
			if (n != NULL && n->shard != NULL) {
				cl->owner[s] = lcl_shard_index(lc, n->shard);
				break;
			}
		}
		if (cl->owner[s] >= 0)
			cl->covered++;
	}
	cl->have_view = nv > 0;
	if (nv == 0)
		return;
	track_primaries(lc, vs, nv);
	cl->masters_up = true;
	for (i = 0; i < lc->nshards; i++) {
		struct lnode *m = lcluster_node(lc, lc->shards[i]->primary);
		if (m == NULL || !lnode_up(m))
			cl->masters_up = false;
	}
	if (was_agree != cl->agree || was_ok != cl->all_ok)
		lcluster_changed(lc);
	if (act_meet(lc, vs, nv))
		return;
	act_forget(lc, vs, nv);
	act_replicate(lc, vs, nv);
	if (lc->created)
		act_takeover(lc);
	if (cl->covered < LCL_SLOTS && !lc->created) {
		act_assign(lc, vs, nv);
		return;
	}
	if (cl->open_slots > 0 && !lmig_busy(lc))
		act_open_slots(lc, vs, nv);
	if (!lc->created && all_created(lc, vs, nv)) {
		char *cause = NULL;

		lc->created = true;
		log_cluster(LOG_LEVEL_NOTICE, lc->name, "cluster created: %zu "
		    "shards, all %d slots covered", lc->nshards, LCL_SLOTS);
		if (lstate_save(lc, &cause) != 0) {
			log_cluster(LOG_LEVEL_WARNING, lc->name, "%s", cause);
			free(cause);
		}
		lcluster_changed(lc);
	}
	if (!lc->created)
		return;
	if (cl->agree && !lmig_busy(lc))
		act_drop_shards(lc);
	if (!cl->have_view)
		return;
	/* A node that is not ok yet answers MIGRATE with CLUSTERDOWN. */
	left = cl->agree && cl->all_ok && cl->masters_up &&
	    cl->open_slots == 0 ?
	    lmig_drive(lc, cl->owner) : -1;
	if (left >= 0) {
		if ((left == 0) != (cl->slots_left == 0))
			lcluster_changed(lc);
		cl->slots_left = left;
	}
}
