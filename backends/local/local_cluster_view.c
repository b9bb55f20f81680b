/*
 * Cluster mode: what the nodes say. A round asks every answering node for
 * CLUSTER NODES and CLUSTER INFO over its cluster connection; once all
 * have answered (or the round's deadline passed) the answers are parsed
 * into views, compared (do the nodes agree about the configuration?), and
 * handed to local_cluster_repair.c, which acts on them.
 */
#include "config.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <hiredis/hiredis.h>

#include "local.h"
#include "log.h"
#include "rconn.h"
#include "util.h"

#define ROUND_DEADLINE_MS	4000

static void	round_finish(struct lcluster *);

static void
view_free(struct cview *v)
{
	free(v->e);
	free(v->owner);
	free(v->open);
}

static void
copy_cid(char *dst, const char *src, size_t len)
{
	if (len > 40)
		len = 40;
	memcpy(dst, src, len);
	dst[len] = '\0';
}

/* One slot word of a CLUSTER NODES line: "5", "0-5460", "[5->-id]". */
static void
parse_slot_word(struct cview *v, short idx, const char *w, size_t len)
{
	char		 buf[128];
	const char	*arrow;
	long		 a, b;
	char		*end;
	struct copen	*o;

	if (len >= sizeof buf)
		return;
	memcpy(buf, w, len);
	buf[len] = '\0';
	if (buf[0] == '[') {
		if (!v->e[idx].myself)
			return;
		a = strtol(buf + 1, &end, 10);
		if ((arrow = strstr(buf, "->-")) == NULL &&
		    (arrow = strstr(buf, "-<-")) == NULL)
			return;
		v->open = xreallocarray(v->open, v->nopen + 1,
		    sizeof *v->open);
		o = &v->open[v->nopen++];
		o->slot = (int)a;
		o->importing = arrow[1] == '<';
		copy_cid(o->peer, arrow + 3, strcspn(arrow + 3, "]"));
		return;
	}
	a = strtol(buf, &end, 10);
	b = *end == '-' ? strtol(end + 1, NULL, 10) : a;
	if (a < 0 || b >= LCL_SLOTS || a > b)
		return;
	for (; a <= b; a++)
		v->owner[a] = idx;
}

static bool
has_flag(const char *flags, size_t len, const char *f)
{
	size_t	 fl = strlen(f);
	const char *p = flags, *end = flags + len;

	while (p < end) {
		size_t n = strcspn(p, ",");
		if (p + n > end)
			n = (size_t)(end - p);
		if (n == fl && memcmp(p, f, n) == 0)
			return true;
		p += n + 1;
	}
	return false;
}

/* Parse CLUSTER NODES text into v; lines it cannot read are skipped. */
static void
parse_nodes(struct lcluster *lc, struct cview *v, const char *txt)
{
	const char	*line = txt, *w[9];
	size_t		 wl[9], i, k, ll;
	struct cent	*e;

	v->owner = xreallocarray(NULL, LCL_SLOTS, sizeof *v->owner);
	for (i = 0; i < LCL_SLOTS; i++)
		v->owner[i] = -1;
	while (*line != '\0') {
		const char *p = line, *eol;

		ll = strcspn(line, "\n");
		eol = line + ll;
		for (k = 0; k < 9 && p < eol; k++) {
			w[k] = p;
			wl[k] = strcspn(p, " \n");
			p += wl[k];
			while (p < eol && *p == ' ')
				p++;
		}
		if (k >= 8 && wl[0] == 40) {
			v->e = xreallocarray(v->e, v->ne + 1, sizeof *v->e);
			e = &v->e[v->ne];
			memset(e, 0, sizeof *e);
			copy_cid(e->cid, w[0], wl[0]);
			{
				const char *colon = memchr(w[1], ':', wl[1]);
				e->port = colon ? atoi(colon + 1) : 0;
			}
			e->myself = has_flag(w[2], wl[2], "myself");
			e->master = has_flag(w[2], wl[2], "master");
			e->fail = has_flag(w[2], wl[2], "fail") ||
			    has_flag(w[2], wl[2], "fail?");
			e->handshake = has_flag(w[2], wl[2], "handshake") ||
			    has_flag(w[2], wl[2], "noaddr");
			if (wl[3] == 40)
				copy_cid(e->master_cid, w[3], wl[3]);
			e->epoch = strtoull(w[6], NULL, 10);
			for (i = 0; i < lc->nnodes; i++)
				if (lc->nodes[i]->cid != NULL &&
				    strcmp(lc->nodes[i]->cid, e->cid) == 0)
					e->node = lc->nodes[i];
			v->ne++;
			/* Slots: every word after the eighth. */
			if (k == 9) {
				p = w[8];
				while (p < eol) {
					size_t n = strcspn(p, " \n");
					parse_slot_word(v, (short)(v->ne - 1),
					    p, n);
					p += n;
					while (p < eol && *p == ' ')
						p++;
				}
			}
		}
		line = *eol == '\n' ? eol + 1 : eol;
	}
	for (i = 0; i < v->ne; i++)
		if (v->e[i].myself)
			v->self = &v->e[i];
}

struct cent *
lclv_find(struct cview *v, const char *cid)
{
	size_t	 i;

	for (i = 0; cid != NULL && i < v->ne; i++)
		if (strcmp(v->e[i].cid, cid) == 0)
			return &v->e[i];
	return NULL;
}

static void
nodes_done(struct rconn *rc, struct redisReply *reply, const char *err,
    void *arg)
{
	struct lnode	*n = arg;
	struct lcluster	*lc = n->lc;

	if (lc->cl == NULL || n->gather_gen != lc->cl->round_gen)
		return;
	free(n->nodes_txt);
	n->nodes_txt = NULL;
	if (reply != NULL && reply->type == REDIS_REPLY_STRING)
		n->nodes_txt = xstrndup(reply->str, reply->len);
	else
		log_debug("%s: CLUSTER NODES on %s: %s", lc->name, n->id,
		    reply ? reply->str : err);
}

static void
info_done(struct rconn *rc, struct redisReply *reply, const char *err,
    void *arg)
{
	struct lnode	*n = arg;
	struct lcluster	*lc = n->lc;

	if (lc->cl == NULL || n->gather_gen != lc->cl->round_gen)
		return;
	n->state_ok = reply != NULL && reply->type == REDIS_REPLY_STRING &&
	    strstr(reply->str, "cluster_state:ok") != NULL;
	if (--lc->cl->round_pending == 0)
		round_finish(lc);
}

static void
round_deadline(evutil_socket_t fd, short ev, void *arg)
{
	struct lcluster	*lc = arg;

	if (lc->cl != NULL && lc->cl->round_busy)
		round_finish(lc);
}

void
lclv_round_start(struct lcluster *lc)
{
	struct lcl	*cl = lc->cl;
	struct timeval	 tv = { ROUND_DEADLINE_MS / 1000, 0 };
	struct rconn	*rc;
	size_t		 i;

	if (cl->round_busy)
		return;
	cl->round_busy = true;
	cl->round_gen++;
	cl->round_pending = 1;	/* held until every command is sent */
	if (cl->round_ev == NULL)
		cl->round_ev = evtimer_new(lc->ctx->base, round_deadline, lc);
	evtimer_add(cl->round_ev, &tv);
	for (i = 0; i < lc->nnodes; i++) {
		struct lnode *n = lc->nodes[i];

		free(n->nodes_txt);
		n->nodes_txt = NULL;
		n->state_ok = false;
		if (!lnode_up(n) || (rc = lcl_conn(lc, n)) == NULL)
			continue;
		n->gather_gen = cl->round_gen;
		if (rconn_command(rc, LCL_CMD_TIMEOUT_MS, nodes_done, n,
		    "CLUSTER NODES") != 0)
			continue;
		if (rconn_command(rc, LCL_CMD_TIMEOUT_MS, info_done, n,
		    "CLUSTER INFO") == 0)
			cl->round_pending++;
	}
	if (--cl->round_pending == 0)
		round_finish(lc);
}

/* Whether every view gives every slot the same owner and sees the same
 * primaries and replicas; *why says what differs. */
bool
lclv_agree(struct lcluster *lc, struct cview *vs, size_t nv, char **why)
{
	size_t	 i, j, s;

	/* A node that answers must have had its say, and be known. */
	for (j = 0; j < lc->nnodes; j++) {
		struct lnode *n = lc->nodes[j];

		if (!lnode_up(n))
			continue;
		for (i = 0; i < nv && vs[i].from != n; i++)
			;
		if (i == nv || n->cid == NULL) {
			xasprintf(why, "node %s has not said what it knows "
			    "yet", n->id);
			return false;
		}
	}
	for (i = 0; i < nv; i++) {
		for (j = 0; j < lc->nnodes; j++) {
			struct lnode *n = lc->nodes[j];
			struct cent *e;

			if (n->cid == NULL || !lnode_up(n))
				continue;
			e = lclv_find(&vs[i], n->cid);
			if (e == NULL || e->handshake) {
				xasprintf(why, "node %s does not know node %s "
				    "yet", vs[i].from->id, n->id);
				return false;
			}
		}
		for (j = 0; j < vs[i].ne; j++)
			if (vs[i].e[j].node == NULL) {
				xasprintf(why, "node %s still knows node ID "
				    "%.8s, which is not ours", vs[i].from->id,
				    vs[i].e[j].cid);
				return false;
			}
		if (vs[i].nopen > 0) {
			xasprintf(why, "node %s has slot %d %s", vs[i].from->id,
			    vs[i].open[0].slot, vs[i].open[0].importing ?
			    "importing" : "migrating");
			return false;
		}
	}
	for (i = 1; i < nv; i++) {
		for (s = 0; s < LCL_SLOTS; s++) {
			struct lnode *a = vs[0].owner[s] < 0 ? NULL :
			    vs[0].e[vs[0].owner[s]].node;
			struct lnode *b = vs[i].owner[s] < 0 ? NULL :
			    vs[i].e[vs[i].owner[s]].node;
			if (a != b) {
				xasprintf(why, "nodes %s and %s disagree about "
				    "slot %zu", vs[0].from->id, vs[i].from->id,
				    s);
				return false;
			}
		}
		for (j = 0; j < vs[0].ne; j++) {
			struct cent *a = &vs[0].e[j];
			struct cent *b = lclv_find(&vs[i], a->cid);
			if (b != NULL && (a->master != b->master ||
			    strcmp(a->master_cid, b->master_cid) != 0)) {
				xasprintf(why, "nodes %s and %s disagree about "
				    "the role of %s", vs[0].from->id,
				    vs[i].from->id, a->node ? a->node->id :
				    a->cid);
				return false;
			}
		}
	}
	return true;
}

static void
round_finish(struct lcluster *lc)
{
	struct lcl	*cl = lc->cl;
	struct cview	*vs;
	size_t		 nv = 0, i;

	cl->round_busy = false;
	cl->round_gen++;	/* late answers are for no round */
	evtimer_del(cl->round_ev);
	vs = xcalloc(lc->nnodes + 1, sizeof *vs);
	for (i = 0; i < lc->nnodes; i++) {
		struct lnode *n = lc->nodes[i];
		char *cause = NULL;

		if (n->nodes_txt == NULL)
			continue;
		vs[nv].from = n;
		parse_nodes(lc, &vs[nv], n->nodes_txt);
		if (vs[nv].self == NULL) {
			view_free(&vs[nv]);
			memset(&vs[nv], 0, sizeof vs[nv]);
			continue;
		}
		if (n->cid == NULL || strcmp(n->cid, vs[nv].self->cid) != 0) {
			if (n->cid != NULL)
				log_cluster(LOG_LEVEL_NOTICE, lc->name, "node "
				    "%s has a new cluster node ID %.8s (was "
				    "%.8s)", n->id, vs[nv].self->cid, n->cid);
			free(n->cid);
			n->cid = xstrdup(vs[nv].self->cid);
			if (lstate_save(lc, &cause) != 0) {
				log_cluster(LOG_LEVEL_WARNING, lc->name, "%s",
				    cause);
				free(cause);
			}
			/* Views parsed before knew it under no ID. */
			for (size_t k = 0; k <= nv; k++)
				for (size_t j = 0; j < vs[k].ne; j++)
					if (strcmp(vs[k].e[j].cid, n->cid) == 0)
						vs[k].e[j].node = n;
		}
		vs[nv].self->node = n;
		nv++;
	}
	lclr_evaluate(lc, vs, nv);
	for (i = 0; i < nv; i++)
		view_free(&vs[i]);
	free(vs);
}

void
lclv_free(struct lcluster *lc)
{
	if (lc->cl == NULL)
		return;
	if (lc->cl->round_ev != NULL)
		event_free(lc->cl->round_ev);
	lc->cl->round_ev = NULL;
	lc->cl->round_busy = false;
	free(lc->cl->disagree);
	lc->cl->disagree = NULL;
}
