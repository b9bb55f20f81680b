/*
 * Cluster mode: the slot movers. Each moves one hash slot the way
 * redis-cli --cluster reshard does, asynchronously: SETSLOT IMPORTING on
 * the target, MIGRATING on the source, then CLUSTER GETKEYSINSLOT and
 * MIGRATE ... KEYS in pipelined batches until the slot is empty, then
 * SETSLOT NODE on the target first (so the slot is never without an owner
 * that accepts it), the source next, the other primaries last. Several
 * slots move at once (local.migrate_slots), each with
 * local.migrate_pipeline MIGRATEs of local.migrate_batch keys in flight.
 *
 * A key already on the target (BUSYKEY) is compared with DUMP on both
 * sides: the same value is moved with REPLACE, a different one stops the
 * resharding with the key named in the status; nothing is overwritten.
 *
 * Which slot goes where is local_cluster_reshard.c's business.
 */
#include "config.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <hiredis/hiredis.h>

#include "local.h"
#include "log.h"
#include "node.h"
#include "rconn.h"
#include "util.h"

#define MIGRATE_TIMEOUT_MS	10000	/* MIGRATE's own, per batch */
#define RETRY_MS		1000	/* after a failed slot */
#define CONFLICT_RETRY_MS	10000	/* compare a conflicting key again */

enum wphase { W_IDLE, W_IMPORTING, W_MIGRATING, W_KEYS, W_MOVING, W_CMP,
	W_NODE_DST, W_NODE_SRC };

struct lworker {
	struct lmig	*m;
	enum wphase	 phase;
	int		 slot;
	char		*src;		/* node ids, looked up on each reply */
	char		*dst;
	char		*src_cid;
	char		*dst_cid;
	bool		 repair;	/* not a move of the plan */
	int		 pending;
	bool		 failed;
	bool		 busykey;
	bool		 replace;	/* values were compared equal */
	char		*err;
	char		**keys;
	size_t		*klen;
	size_t		 nkeys;
	char		**sdump;	/* DUMP on source and target */
	size_t		*sdlen;
	char		**tdump;
	size_t		*tdlen;
	/* The slot's next keys, asked for right behind the MIGRATEs on the
	 * same connection: no round trip of its own per batch. */
	bool		 have_next;
	char		**next_keys;
	size_t		*next_klen;
	size_t		 next_n;
};


static void	worker_fetch(struct lworker *);
static void	worker_compare(struct lworker *);
static void	worker_assign(struct lworker *);
static void	send_migrates(struct lworker *);
static void	batch_step(struct lworker *);

static void
worker_drop_next(struct lworker *w)
{
	size_t	 i;

	for (i = 0; i < w->next_n; i++)
		free(w->next_keys[i]);
	free(w->next_keys);
	free(w->next_klen);
	w->next_keys = NULL;
	w->next_klen = NULL;
	w->next_n = 0;
	w->have_next = false;
}

static void
worker_reset(struct lworker *w)
{
	size_t	 i;

	worker_drop_next(w);
	for (i = 0; i < w->nkeys; i++) {
		free(w->keys[i]);
		if (w->sdump != NULL)
			free(w->sdump[i]);
		if (w->tdump != NULL)
			free(w->tdump[i]);
	}
	free(w->keys);
	free(w->klen);
	free(w->sdump);
	free(w->sdlen);
	free(w->tdump);
	free(w->tdlen);
	w->keys = w->sdump = w->tdump = NULL;
	w->klen = w->sdlen = w->tdlen = NULL;
	w->nkeys = 0;
	w->busykey = w->replace = w->failed = false;
	w->pending = 0;
}

/* The next keys become the batch (the moved one is forgotten). */
static void
worker_take_next(struct lworker *w)
{
	char	**keys = w->next_keys;
	size_t	 *klen = w->next_klen, n = w->next_n;

	w->next_keys = NULL;
	w->next_klen = NULL;
	w->next_n = 0;
	worker_reset(w);
	w->keys = keys;
	w->klen = klen;
	w->nkeys = n;
}

static void
worker_idle(struct lworker *w)
{
	worker_reset(w);
	free(w->src);
	free(w->dst);
	free(w->src_cid);
	free(w->dst_cid);
	w->src = w->dst = w->src_cid = w->dst_cid = NULL;
	free(w->err);
	w->err = NULL;
	w->phase = W_IDLE;
	w->repair = false;
}

/* Give up on this slot for now; what the nodes say decides the retry. */
static void __attribute__((format(printf, 2, 3)))
worker_fail(struct lworker *w, const char *fmt, ...)
{
	struct lmig	*m = w->m;
	char		*msg;
	va_list		 ap;

	va_start(ap, fmt);
	xvasprintf(&msg, fmt, ap);
	va_end(ap);
	if (m->error == NULL || strcmp(m->error, msg) != 0)
		log_cluster(LOG_LEVEL_WARNING, m->lc->name, "slot %d: %s, will "
		    "retry", w->slot, msg);
	else
		log_debug("%s: slot %d: %s", m->lc->name, w->slot, msg);
	free(m->error);
	m->error = msg;
	m->retry_at = clock_mono_ms() + RETRY_MS;
	worker_idle(w);
}

/* Resolve the worker's nodes again; NULL when one is gone or down. */
static bool
worker_nodes(struct lworker *w, struct lnode **src, struct lnode **dst)
{
	struct lcluster	*lc = w->m->lc;

	*src = lcluster_node(lc, w->src);
	*dst = lcluster_node(lc, w->dst);
	if (*src == NULL || *dst == NULL || !lnode_up(*src) ||
	    !lnode_up(*dst)) {
		worker_fail(w, "%s", "a node of the move is down");
		return false;
	}
	return true;
}

static bool
reply_ok(struct redisReply *reply)
{
	return reply != NULL && reply->type != REDIS_REPLY_ERROR;
}

static void
node_src_done(struct rconn *rc, struct redisReply *reply, const char *err,
    void *arg)
{
	struct lworker	*w = arg;
	struct lmig	*m = w->m;
	struct lcluster	*lc = m->lc;
	size_t		 si;

	if (!reply_ok(reply)) {
		worker_fail(w, "SETSLOT NODE on the source: %s", reply ?
		    reply->str : err);
		return;
	}
	/* The other primaries learn it now rather than by gossip. */
	for (si = 0; si < lc->nshards; si++) {
		struct lnode *p = lcluster_node(lc, lc->shards[si]->primary);
		if (p == NULL || !lnode_up(p) || strcmp(p->id, w->src) == 0 ||
		    strcmp(p->id, w->dst) == 0)
			continue;
		lcl_send(lc, p, "CLUSTER SETSLOT %d NODE %s", w->slot,
		    w->dst_cid);
	}
	log_debug("%s: slot %d moved from %s to %s", lc->name, w->slot, w->src,
	    w->dst);
	lmig_moved(m, w->slot);
	worker_idle(w);
	lmig_next(m, w);
}

static void
node_dst_done(struct rconn *rc, struct redisReply *reply, const char *err,
    void *arg)
{
	struct lworker	*w = arg;
	struct lnode	*src, *dst;

	if (!reply_ok(reply)) {
		worker_fail(w, "SETSLOT NODE on the target: %s", reply ?
		    reply->str : err);
		return;
	}
	if (!worker_nodes(w, &src, &dst))
		return;
	w->phase = W_NODE_SRC;
	if (lcl_command(w->m->lc, src,
	    node_src_done, w, "CLUSTER SETSLOT %d NODE %s", w->slot,
	    w->dst_cid) != 0)
		worker_fail(w, "%s", "source connection lost");
}

/* The slot is empty on the source: give it to the target. */
static void
worker_assign(struct lworker *w)
{
	struct lnode	*src, *dst;

	if (!worker_nodes(w, &src, &dst))
		return;
	w->phase = W_NODE_DST;
	if (lcl_command(w->m->lc, dst,
	    node_dst_done, w, "CLUSTER SETSLOT %d NODE %s", w->slot,
	    w->dst_cid) != 0)
		worker_fail(w, "%s", "target connection lost");
}

static void
migrate_done(struct rconn *rc, struct redisReply *reply, const char *err,
    void *arg)
{
	struct lworker	*w = arg;

	if (reply == NULL) {
		w->failed = true;
		free(w->err);
		w->err = xstrdup(err);
	} else if (reply->type == REDIS_REPLY_ERROR &&
	    strncmp(reply->str, "NOKEY", 5) != 0) {
		if (strstr(reply->str, "BUSYKEY") != NULL)
			w->busykey = true;
		else {
			w->failed = true;
			free(w->err);
			w->err = xstrdup(reply->str);
		}
	}
	batch_step(w);
}

/* Copy a GETKEYSINSLOT reply's keys into *keys, *klen. */
static size_t
copy_keys(const struct redisReply *reply, char ***keys, size_t **klen)
{
	size_t	 i, n = reply->elements;

	*keys = xcalloc(n ? n : 1, sizeof **keys);
	*klen = xcalloc(n ? n : 1, sizeof **klen);
	for (i = 0; i < n; i++) {
		const struct redisReply *e = reply->element[i];

		(*keys)[i] = xreallocarray(NULL, e->len + 1, 1);
		memcpy((*keys)[i], e->str, e->len);
		(*keys)[i][e->len] = '\0';
		(*klen)[i] = e->len;
	}
	return n;
}

static void
next_keys_done(struct rconn *rc, struct redisReply *reply, const char *err,
    void *arg)
{
	struct lworker	*w = arg;

	worker_drop_next(w);
	if (reply != NULL && reply->type == REDIS_REPLY_ARRAY) {
		w->next_n = copy_keys(reply, &w->next_keys, &w->next_klen);
		w->have_next = true;
	}
	batch_step(w);
}

/* One reply of a batch (its MIGRATEs, the next keys) is in. */
static void
batch_step(struct lworker *w)
{
	if (--w->pending > 0)
		return;
	if (w->failed) {
		char *e = w->err;
		w->err = NULL;
		worker_fail(w, "MIGRATE: %s", e);
		free(e);
		return;
	}
	if (w->busykey && !w->replace) {
		worker_compare(w);
		return;
	}
	if (w->have_next) {
		/* The batch moved; go on with the keys that came after it. */
		worker_take_next(w);
		if (w->nkeys == 0)
			worker_assign(w);
		else
			send_migrates(w);
		return;
	}
	worker_fetch(w);
}

/* MIGRATE keys [from, to) of the batch to the target. */
static int
send_migrate(struct lworker *w, struct lnode *src, struct lnode *dst,
    size_t from, size_t to)
{
	struct lcluster	*lc = w->m->lc;
	const char	**argv;
	size_t		*lens, n = 0, i, max = to - from + 12;
	char		 port[16], tmo[16];
	int		 r;

	argv = xreallocarray(NULL, max, sizeof *argv);
	lens = xreallocarray(NULL, max, sizeof *lens);
	snprintf(port, sizeof port, "%d", dst->port);
	snprintf(tmo, sizeof tmo, "%d", MIGRATE_TIMEOUT_MS);
#define ARG(s) do { argv[n] = (s); lens[n] = strlen(s); n++; } while (0)
	ARG("MIGRATE");
	ARG(lc->ctx->conf->local.bind);
	ARG(port);
	ARG("");
	ARG("0");
	ARG(tmo);
	if (w->replace)
		ARG("REPLACE");
	if (lc->acl && lc->admin_pass != NULL) {
		ARG("AUTH2");
		ARG(LACL_ADMIN_USER);
		ARG(lc->admin_pass);
	} else if (lc->password != NULL) {
		ARG("AUTH");
		ARG(lc->password);
	}
	ARG("KEYS");
#undef ARG
	for (i = from; i < to; i++) {
		argv[n] = w->keys[i];
		lens[n++] = w->klen[i];
	}
	r = lcl_commandargv(lc, src,
	    migrate_done, w, (int)n, argv, lens);
	free(argv);
	free(lens);
	return r;
}

static void
send_migrates(struct lworker *w)
{
	const struct dconf_local *l = &w->m->lc->ctx->conf->local;
	struct lnode	*src, *dst;
	size_t		 i, b = (size_t)l->migrate_batch;

	if (!worker_nodes(w, &src, &dst))
		return;
	w->phase = W_MOVING;
	w->pending = 1;
	for (i = 0; i < w->nkeys; i += b) {
		size_t end = i + b < w->nkeys ? i + b : w->nkeys;
		if (send_migrate(w, src, dst, i, end) == 0)
			w->pending++;
		else
			w->failed = true;
	}
	/* Runs after the MIGRATEs: what the slot still holds then. */
	if (!w->failed && lcl_command(w->m->lc, src, next_keys_done, w,
	    "CLUSTER GETKEYSINSLOT %d %d", w->slot,
	    l->migrate_batch * l->migrate_pipeline) == 0)
		w->pending++;
	migrate_done(NULL, &(struct redisReply){ .type = REDIS_REPLY_STATUS },
	    NULL, w);
}

static void
cmp_done(struct lworker *w)
{
	size_t	 i;

	for (i = 0; i < w->nkeys; i++) {
		if (w->sdump[i] == NULL || w->tdump[i] == NULL)
			continue;	/* gone from one side: no conflict */
		if (w->sdlen[i] == w->tdlen[i] && memcmp(w->sdump[i],
		    w->tdump[i], w->sdlen[i]) == 0)
			continue;
		/* Two different values for one key: an operator decides.
		 * Nothing moves meanwhile; the values are compared again
		 * every CONFLICT_RETRY_MS, so removing one key resumes. */
		struct lmig *m = w->m;
		char *msg;

		xasprintf(&msg, "resharding stopped: key '%.*s' of slot %d "
		    "exists on both %s and %s with different values; remove "
		    "one of them", (int)(w->klen[i] > 200 ? 200 : w->klen[i]),
		    w->keys[i], w->slot, w->src, w->dst);
		if (m->conflict == NULL || strcmp(m->conflict, msg) != 0) {
			log_cluster(LOG_LEVEL_WARNING, m->lc->name, "%s", msg);
			lcluster_changed(m->lc);
		}
		free(m->conflict);
		m->conflict = msg;
		m->conflict_slot = w->slot;
		m->conflict_at = clock_mono_ms() + CONFLICT_RETRY_MS;
		worker_idle(w);
		return;
	}
	log_cluster(LOG_LEVEL_INFO, w->m->lc->name, "slot %d: keys already on "
	    "%s have the same values: moving them with REPLACE", w->slot,
	    w->dst);
	w->replace = true;
	w->busykey = false;
	send_migrates(w);
}

/*
 * The replies come in order per connection: source DUMPs fill sdump[] in
 * key order, target DUMPs tdump[]; the first key not answered yet is the
 * one a reply is for.
 */
static void
dump_reply(struct lworker *w, struct redisReply *reply, const char *err,
    char **slot, size_t *len)
{
	if (reply == NULL) {
		w->failed = true;
		free(w->err);
		w->err = xstrdup(err);
	} else if (reply->type == REDIS_REPLY_STRING) {
		*slot = xreallocarray(NULL, reply->len + 1, 1);
		memcpy(*slot, reply->str, reply->len);
		*len = reply->len;
	}
	if (--w->pending > 0)
		return;
	if (w->failed) {
		char *e = w->err;
		w->err = NULL;
		worker_fail(w, "DUMP: %s", e ? e : "failed");
		free(e);
		return;
	}
	cmp_done(w);
}

static void
sdump_done(struct rconn *rc, struct redisReply *reply, const char *err,
    void *arg)
{
	struct lworker	*w = arg;
	size_t		 i;

	/* Source replies count up from 0, see worker_compare. */
	for (i = 0; i < w->nkeys && w->sdlen[i] != (size_t)-1; i++)
		;
	if (i == w->nkeys)
		return;
	w->sdlen[i] = 0;
	dump_reply(w, reply, err, &w->sdump[i], &w->sdlen[i]);
}

static void
tdump_done(struct rconn *rc, struct redisReply *reply, const char *err,
    void *arg)
{
	struct lworker	*w = arg;
	size_t		 i;

	for (i = 0; i < w->nkeys && w->tdlen[i] != (size_t)-1; i++)
		;
	if (i == w->nkeys)
		return;
	w->tdlen[i] = 0;
	dump_reply(w, reply, err, &w->tdump[i], &w->tdlen[i]);
}

static void
ignore_reply(struct rconn *rc, struct redisReply *reply, const char *err,
    void *arg)
{
}

/* BUSYKEY: compare the batch's keys on both sides with DUMP. */
static void
worker_compare(struct lworker *w)
{
	struct lcluster	*lc = w->m->lc;
	struct lnode	*src, *dst;
	struct rconn	*sc, *tc;
	size_t		 i;

	if (!worker_nodes(w, &src, &dst))
		return;
	sc = lcl_conn(lc, src);
	tc = lcl_conn(lc, dst);
	w->phase = W_CMP;
	w->sdump = xcalloc(w->nkeys, sizeof *w->sdump);
	w->tdump = xcalloc(w->nkeys, sizeof *w->tdump);
	w->sdlen = xcalloc(w->nkeys, sizeof *w->sdlen);
	w->tdlen = xcalloc(w->nkeys, sizeof *w->tdlen);
	for (i = 0; i < w->nkeys; i++)
		w->sdlen[i] = w->tdlen[i] = (size_t)-1;	/* not answered */
	w->pending = 1;
	for (i = 0; i < w->nkeys && sc != NULL && tc != NULL; i++) {
		const char *argv[2] = { "DUMP", w->keys[i] };
		size_t lens[2] = { 4, w->klen[i] };

		if (rconn_commandargv(sc, LCL_CMD_TIMEOUT_MS, sdump_done, w, 2,
		    argv, lens) == 0)
			w->pending++;
		else
			w->failed = true;
		/* The slot is importing there: ASKING lets DUMP see it. */
		rconn_command(tc, LCL_CMD_TIMEOUT_MS, ignore_reply, NULL,
		    "ASKING");
		if (rconn_commandargv(tc, LCL_CMD_TIMEOUT_MS, tdump_done, w, 2,
		    argv, lens) == 0)
			w->pending++;
		else
			w->failed = true;
	}
	if (sc == NULL || tc == NULL)
		w->failed = true;
	{
		char *dummy = NULL;
		size_t dl = 0;
		dump_reply(w, &(struct redisReply){ .type = REDIS_REPLY_NIL },
		    NULL, &dummy, &dl);
	}
}

static void
keys_done(struct rconn *rc, struct redisReply *reply, const char *err,
    void *arg)
{
	struct lworker	*w = arg;

	if (reply == NULL || reply->type != REDIS_REPLY_ARRAY) {
		worker_fail(w, "GETKEYSINSLOT: %s", reply ? (reply->str ?
		    reply->str : "bad reply") : err);
		return;
	}
	worker_reset(w);
	if (reply->elements == 0) {
		worker_assign(w);
		return;
	}
	w->nkeys = copy_keys(reply, &w->keys, &w->klen);
	send_migrates(w);
}

static void
worker_fetch(struct lworker *w)
{
	const struct dconf_local *l = &w->m->lc->ctx->conf->local;
	struct lnode	*src, *dst;

	if (!worker_nodes(w, &src, &dst))
		return;
	w->replace = false;
	w->phase = W_KEYS;
	if (lcl_command(w->m->lc, src,
	    keys_done, w, "CLUSTER GETKEYSINSLOT %d %d", w->slot,
	    l->migrate_batch * l->migrate_pipeline) != 0)
		worker_fail(w, "%s", "source connection lost");
}

static void
migrating_done(struct rconn *rc, struct redisReply *reply, const char *err,
    void *arg)
{
	struct lworker	*w = arg;

	/* The keys, asked for behind it, come next: they decide. */
	if (!reply_ok(reply)) {
		w->failed = true;
		free(w->err);
		xasprintf(&w->err, "SETSLOT MIGRATING: %s", reply ?
		    reply->str : err);
	}
}

static void
first_keys_done(struct rconn *rc, struct redisReply *reply, const char *err,
    void *arg)
{
	struct lworker	*w = arg;

	if (w->failed) {
		char *e = w->err;

		w->err = NULL;
		worker_fail(w, "%s", e);
		free(e);
		return;
	}
	keys_done(rc, reply, err, w);
}

static void
importing_done(struct rconn *rc, struct redisReply *reply, const char *err,
    void *arg)
{
	struct lworker	*w = arg;
	const struct dconf_local *l = &w->m->lc->ctx->conf->local;
	struct lnode	*src, *dst;

	if (!reply_ok(reply)) {
		worker_fail(w, "SETSLOT IMPORTING: %s", reply ? reply->str :
		    err);
		return;
	}
	if (!worker_nodes(w, &src, &dst))
		return;
	/*
	 * MIGRATING, then on the same connection the slot's first keys:
	 * listed once the slot is migrating, when no key can be added to it
	 * on the source any more (clients are sent to the target), and
	 * without a round trip of their own.
	 */
	w->phase = W_MIGRATING;
	w->failed = false;
	if (lcl_command(w->m->lc, src,
	    migrating_done, w, "CLUSTER SETSLOT %d MIGRATING %s", w->slot,
	    w->dst_cid) != 0 || lcl_command(w->m->lc, src, first_keys_done, w,
	    "CLUSTER GETKEYSINSLOT %d %d", w->slot, l->migrate_batch *
	    l->migrate_pipeline) != 0)
		worker_fail(w, "%s", "source connection lost");
}

void
lmig_worker_start(struct lworker *w, int slot, struct lnode *src,
    struct lnode *dst, bool repair)
{
	w->slot = slot;
	w->src = xstrdup(src->id);
	w->dst = xstrdup(dst->id);
	w->src_cid = xstrdup(src->cid);
	w->dst_cid = xstrdup(dst->cid);
	w->repair = repair;
	w->phase = W_IMPORTING;
	if (lcl_command(w->m->lc, dst,
	    importing_done, w, "CLUSTER SETSLOT %d IMPORTING %s", slot,
	    w->src_cid) != 0)
		worker_fail(w, "%s", "target connection lost");
}

bool
lmig_slot_busy(struct lmig *m, int slot)
{
	size_t	 i;

	for (i = 0; i < m->nw; i++)
		if (m->w[i]->phase != W_IDLE && m->w[i]->slot == slot)
			return true;
	return false;
}

struct lworker *
lmig_worker_idle(struct lmig *m)
{
	int	 want = m->lc->ctx->conf->local.migrate_slots;
	size_t	 i, busy = 0;

	for (i = 0; i < m->nw; i++)
		if (m->w[i]->phase != W_IDLE)
			busy++;
	if ((int)busy >= want)
		return NULL;
	for (i = 0; i < m->nw; i++)
		if (m->w[i]->phase == W_IDLE)
			return m->w[i];
	m->w = xreallocarray(m->w, m->nw + 1, sizeof *m->w);
	m->w[m->nw] = xcalloc(1, sizeof **m->w);
	m->w[m->nw]->m = m;
	return m->w[m->nw++];
}

bool
lmig_busy(struct lcluster *lc)
{
	struct lmig	*m = lc->cl != NULL ? lc->cl->mig : NULL;
	size_t		 i;

	for (i = 0; m != NULL && i < m->nw; i++)
		if (m->w[i]->phase != W_IDLE)
			return true;
	return false;
}

bool
lmig_worker_busy(const struct lworker *w)
{
	return w->phase != W_IDLE;
}

json_t *
lmig_in_flight(struct lmig *m)
{
	json_t	*fl = json_array();
	size_t	 i;

	for (i = 0; i < m->nw; i++)
		if (m->w[i]->phase != W_IDLE)
			json_array_append_new(fl, json_integer(m->w[i]->slot));
	return fl;
}

void
lmig_workers_free(struct lmig *m)
{
	size_t	 i;

	for (i = 0; i < m->nw; i++) {
		worker_idle(m->w[i]);
		free(m->w[i]);
	}
	free(m->w);
	m->w = NULL;
	m->nw = 0;
}
