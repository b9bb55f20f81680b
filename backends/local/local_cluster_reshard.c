/*
 * Cluster mode: resharding, which slots go where. A plan is the fewest
 * moves that leave every active shard within one slot of even and the
 * shards being removed empty; the movers of local_cluster_migrate.c carry
 * it out. The plan and the slots done are kept in DATA_DIR/NAME/
 * reshard.json, written atomically (the plan fsynced, progress coalesced),
 * so a daemon killed half way resumes; the cluster itself stays the
 * truth: a move whose slot the target already owns is done, and a slot
 * left open (IMPORTING or MIGRATING), by the daemon or anyone else, is
 * finished or closed by lmig_repair() from what the nodes say.
 */
#include "config.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "local.h"
#include "log.h"
#include "node.h"
#include "util.h"

#define SAVE_DELAY_MS		200	/* progress writes are coalesced */

/* A conflict holds every move until it is time to compare again. */
bool
lmig_stopped(struct lmig *m)
{
	return m->conflict != NULL && clock_mono_ms() < m->conflict_at;
}

struct lmig *
lmig_get(struct lcluster *lc)
{
	if (lc->cl->mig == NULL) {
		lc->cl->mig = xcalloc(1, sizeof *lc->cl->mig);
		lc->cl->mig->lc = lc;
	}
	return lc->cl->mig;
}

static char *
mig_path(struct lcluster *lc)
{
	return node_path(lc->dir, "reshard.json");
}

/* "0-5,9" for the slots with set[s]. */
static char *
ranges_format(const bool *set)
{
	struct strbuf	 sb;
	int		 s, a;

	strbuf_init(&sb);
	for (s = 0; s < LCL_SLOTS; s++) {
		if (!set[s])
			continue;
		for (a = s; s + 1 < LCL_SLOTS && set[s + 1]; s++)
			;
		if (a == s)
			strbuf_printf(&sb, "%s%d", sb.len ? "," : "", a);
		else
			strbuf_printf(&sb, "%s%d-%d", sb.len ? "," : "", a, s);
	}
	if (sb.len == 0)
		strbuf_puts(&sb, "");
	return strbuf_detach(&sb);
}

static void
ranges_parse(const char *txt, bool *set)
{
	const char	*p = txt;
	char		*end;
	long		 a, b;

	while (p != NULL && *p != '\0') {
		a = strtol(p, &end, 10);
		b = *end == '-' ? strtol(end + 1, &end, 10) : a;
		for (; a >= 0 && a <= b && a < LCL_SLOTS; a++)
			set[a] = true;
		p = *end == ',' ? end + 1 : NULL;
	}
}

/* Write reshard.json (or remove it when no plan is left). */
static void
mig_save(struct lmig *m, int do_fsync)
{
	struct lcluster	*lc = m->lc;
	json_t		*j, *plan;
	bool		 set[LCL_SLOTS];
	char		*path = mig_path(lc), *txt, *r;
	size_t		 si;
	int		 s, e;

	if (m->total == 0) {
		unlink(path);
		free(path);
		return;
	}
	plan = json_object();
	for (si = 0; si < lc->nshards; si++) {
		memset(set, 0, sizeof set);
		for (s = 0; s < LCL_SLOTS; s++)
			set[s] = m->to[s] != NULL && strcmp(m->to[s],
			    lc->shards[si]->id) == 0;
		r = ranges_format(set);
		if (*r != '\0')
			json_object_set_new(plan, lc->shards[si]->id,
			    json_string(r));
		free(r);
	}
	r = ranges_format(m->done);
	j = json_pack("{s:o, s:s, s:i, s:i}", "plan", plan, "done", r,
	    "total", m->total, "done_count", m->ndone);
	free(r);
	txt = json_dumps(j, JSON_INDENT(1) | JSON_SORT_KEYS);
	json_decref(j);
	if ((e = file_write_atomic(path, txt, strlen(txt), 0600,
	    do_fsync)) != 0)
		log_cluster(LOG_LEVEL_WARNING, lc->name, "cannot write %s: %s",
		    path, strerror(-e));
	free(txt);
	free(path);
}

static void
save_fire(evutil_socket_t fd, short ev, void *arg)
{
	mig_save(arg, 0);
}

static void
mig_save_later(struct lmig *m)
{
	struct timeval	 tv = { 0, SAVE_DELAY_MS * 1000 };

	if (m->save_ev == NULL)
		m->save_ev = evtimer_new(m->lc->ctx->base, save_fire, m);
	if (!evtimer_pending(m->save_ev, NULL))
		evtimer_add(m->save_ev, &tv);
}

int
lmig_load(struct lcluster *lc)
{
	struct lmig	*m = lmig_get(lc);
	json_t		*j, *v;
	json_error_t	 jerr;
	const char	*k;
	char		*path = mig_path(lc);
	bool		 set[LCL_SLOTS];
	int		 s;

	m->loaded = true;
	j = json_load_file(path, 0, &jerr);
	free(path);
	if (j == NULL)
		return 0;
	json_object_foreach(json_object_get(j, "plan"), k, v) {
		memset(set, 0, sizeof set);
		ranges_parse(json_string_value(v), set);
		for (s = 0; s < LCL_SLOTS; s++)
			if (set[s] && m->to[s] == NULL) {
				m->to[s] = xstrdup(k);
				m->total++;
			}
	}
	ranges_parse(json_string_value(json_object_get(j, "done")), m->done);
	for (s = 0; s < LCL_SLOTS; s++)
		if (m->done[s] && m->to[s] != NULL)
			m->ndone++;
	json_decref(j);
	if (m->total > 0)
		log_cluster(LOG_LEVEL_NOTICE, lc->name, "resuming resharding: "
		    "%d of %d slots moved", m->ndone, m->total);
	return 0;
}

static void
plan_clear(struct lmig *m)
{
	int	 s;

	for (s = 0; s < LCL_SLOTS; s++) {
		free(m->to[s]);
		m->to[s] = NULL;
		m->done[s] = false;
	}
	m->total = m->ndone = 0;
}

/* The next move of the plan for worker w, if one may start. */
void
lmig_next(struct lmig *m, struct lworker *w)
{
	struct lcluster	*lc = m->lc;
	struct lcl	*cl = lc->cl;
	int		 s, si, k;

	if (lmig_stopped(m) || !cl->masters_up || !cl->have_view ||
	    clock_mono_ms() < m->retry_at || lmig_worker_busy(w))
		return;
	/* From where the last move started: the scan stays short. */
	for (k = 0; k < LCL_SLOTS; k++) {
		struct lnode *src, *dst;
		int di;

		s = (m->cursor + k) % LCL_SLOTS;
		if (m->to[s] == NULL || m->done[s] || lmig_slot_busy(m, s))
			continue;
		di = lcl_shard_index(lc, m->to[s]);
		si = cl->owner[s];
		if (di < 0 || si == di) {
			/* Its shard is gone, or it is there already. */
			m->done[s] = true;
			m->ndone++;
			continue;
		}
		if (si < 0)
			continue;
		src = lcluster_node(lc, lc->shards[si]->primary);
		dst = lcluster_node(lc, lc->shards[di]->primary);
		if (src == NULL || dst == NULL || src->cid == NULL ||
		    dst->cid == NULL)
			continue;
		m->cursor = s;
		lmig_worker_start(w, s, src, dst, false);
		return;
	}
}

/* A new plan: the fewest moves that leave every active shard within one
 * slot of even; donors give their highest slots. */
static int
plan_make(struct lmig *m, const int *owner)
{
	struct lcluster	*lc = m->lc;
	int		*have, *want, s, si, active = 0, k = 0, moves = 0;
	size_t		 i;

	have = xcalloc(lc->nshards, sizeof *have);
	want = xcalloc(lc->nshards, sizeof *want);
	for (i = 0; i < lc->nshards; i++)
		if (!lc->shards[i]->removing)
			active++;
	if (active == 0)
		goto out;
	for (s = 0; s < LCL_SLOTS; s++)
		if (owner[s] >= 0 && owner[s] < (int)lc->nshards)
			have[owner[s]]++;
	/* Shards holding most get the extra slots: fewer moves. */
	for (i = 0; i < lc->nshards; i++) {
		if (lc->shards[i]->removing)
			continue;
		want[i] = LCL_SLOTS / active;
	}
	for (k = LCL_SLOTS % active; k > 0; k--) {
		int best = -1;
		for (i = 0; i < lc->nshards; i++)
			if (!lc->shards[i]->removing && want[i] ==
			    LCL_SLOTS / active && (best < 0 ||
			    have[i] > have[best]))
				best = (int)i;
		want[best]++;
	}
	plan_clear(m);
	for (s = LCL_SLOTS - 1; s >= 0; s--) {
		si = owner[s];
		if (si < 0 || si >= (int)lc->nshards || have[si] <= want[si])
			continue;
		for (i = 0; i < lc->nshards; i++)
			if (!lc->shards[i]->removing && have[i] < want[i])
				break;
		if (i == lc->nshards)
			break;
		m->to[s] = xstrdup(lc->shards[i]->id);
		have[si]--;
		have[i]++;
		moves++;
	}
	m->total = moves;
out:
	free(have);
	free(want);
	return moves;
}

int
lmig_drive(struct lcluster *lc, const int *owner)
{
	struct lmig	*m = lmig_get(lc);
	struct lworker	*w;
	int		 s, left = 0, di;

	if (!m->loaded)
		lmig_load(lc);
	for (s = 0; s < LCL_SLOTS; s++) {
		if (m->to[s] == NULL || m->done[s])
			continue;
		di = lcl_shard_index(lc, m->to[s]);
		if (di < 0 || owner[s] == di) {
			m->done[s] = true;
			m->ndone++;
		} else
			left++;
	}
	if (left == 0 && !lmig_busy(lc)) {
		if (m->total > 0) {
			log_cluster(LOG_LEVEL_NOTICE, lc->name, "resharding "
			    "done: %d slots moved", m->ndone);
			plan_clear(m);
			mig_save(m, 1);
			lcluster_changed(lc);
		}
		if (lmig_stopped(m))
			return 1;
		if ((left = plan_make(m, owner)) == 0)
			return 0;
		log_cluster(LOG_LEVEL_NOTICE, lc->name, "resharding: moving %d "
		    "slots", left);
		mig_save(m, 1);
		lcluster_changed(lc);
	}
	if (lmig_stopped(m))
		return left > 0 ? left : 1;
	while ((w = lmig_worker_idle(m)) != NULL) {
		lmig_next(m, w);
		if (!lmig_worker_busy(w))
			break;
	}
	return left;
}

void
lmig_repair(struct lcluster *lc, int slot, struct lnode *owner,
    struct lnode *importer, struct lnode *migrator)
{
	struct lmig	*m = lmig_get(lc);
	struct lworker	*w;

	if (lmig_slot_busy(m, slot) || clock_mono_ms() < m->retry_at ||
	    lmig_stopped(m))
		return;
	if (importer != NULL && owner != NULL && owner != importer &&
	    owner->cid != NULL && importer->cid != NULL && lnode_up(owner) &&
	    lnode_up(importer)) {
		if ((w = lmig_worker_idle(m)) == NULL)
			return;
		log_cluster(LOG_LEVEL_NOTICE, lc->name, "slot %d was left "
		    "importing on %s: finishing its move from %s", slot,
		    importer->id, owner->id);
		lmig_worker_start(w, slot, owner, importer, true);
		return;
	}
	if (importer != NULL) {
		log_cluster(LOG_LEVEL_NOTICE, lc->name, "slot %d: clearing the "
		    "importing state on %s", slot, importer->id);
		lcl_send(lc, importer, "CLUSTER SETSLOT %d STABLE", slot);
		return;
	}
	if (migrator == NULL)
		return;
	if (owner != NULL && owner != migrator && owner->cid != NULL) {
		log_cluster(LOG_LEVEL_NOTICE, lc->name, "slot %d: %s still "
		    "migrates it; giving it to its owner %s", slot,
		    migrator->id, owner->id);
		lcl_send(lc, migrator, "CLUSTER SETSLOT %d NODE %s", slot,
		    owner->cid);
	} else {
		log_cluster(LOG_LEVEL_NOTICE, lc->name, "slot %d: clearing the "
		    "migrating state on %s (no node imports it)", slot,
		    migrator->id);
		lcl_send(lc, migrator, "CLUSTER SETSLOT %d STABLE", slot);
	}
}

json_t *
lmig_status(struct lcluster *lc)
{
	struct lmig	*m = lc->cl != NULL ? lc->cl->mig : NULL;
	json_t		*j;

	if (m == NULL)
		return NULL;
	j = json_pack("{s:i, s:i, s:o, s:b}", "slots_total", m->total,
	    "slots_done", m->ndone, "in_flight", lmig_in_flight(m), "stopped",
	    m->conflict != NULL);
	if (m->conflict != NULL)
		json_object_set_new(j, "conflict", json_string(m->conflict));
	if (m->error != NULL)
		json_object_set_new(j, "error", json_string(m->error));
	return j;
}

/*
 * The reshard as the status's generic progress, which `cachekeeper status`
 * and the daemon's STATUS= show: "resharding 1234/4096 slots".
 */
json_t *
lmig_progress(struct lcluster *lc)
{
	struct lmig	*m = lc->cl != NULL ? lc->cl->mig : NULL;

	if (m == NULL || m->total == 0)
		return NULL;
	return json_pack("{s:s, s:i, s:i, s:s}", "operation", "resharding",
	    "done", m->ndone, "total", m->total, "unit", "slots");
}

const char *
lmig_error(struct lcluster *lc)
{
	struct lmig	*m = lc->cl != NULL ? lc->cl->mig : NULL;

	return m != NULL ? m->conflict : NULL;
}

void
lmig_free(struct lcluster *lc)
{
	struct lmig	*m = lc->cl != NULL ? lc->cl->mig : NULL;

	if (m == NULL)
		return;
	if (m->save_ev != NULL) {
		if (evtimer_pending(m->save_ev, NULL))
			mig_save(m, 0);
		event_free(m->save_ev);
	}
	lmig_workers_free(m);
	plan_clear(m);
	free(m->error);
	free(m->conflict);
	free(m);
	lc->cl->mig = NULL;
}


/* A slot reached its target: record it, and end a conflict it had. */
void
lmig_moved(struct lmig *m, int slot)
{
	if (m->to[slot] != NULL && !m->done[slot]) {
		m->done[slot] = true;
		m->ndone++;
		mig_save_later(m);
	}
	if (m->conflict != NULL && m->conflict_slot == slot) {
		free(m->conflict);
		m->conflict = NULL;
		lcluster_changed(m->lc);
	}
	free(m->error);
	m->error = NULL;
}
