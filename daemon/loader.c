/*
 * From the specs directory to the reconcilers: scan, resolve names, hand
 * every reconciler its spec (or its errors, or its deletion), and keep the
 * one-line STATUS= summary current.
 */
#include "config.h"

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "daemon.h"
#include "htab.h"
#include "log.h"
#include "notify.h"
#include "util.h"
#include "watcher.h"

static const char *
current_file(void *arg, const char *name)
{
	struct daemon			*d = arg;
	struct reconciler		*r;
	const struct cluster_spec	*s;

	if ((r = htab_get(d->reconcilers, name)) == NULL)
		return NULL;
	s = reconciler_spec(r);
	return s ? s->file : NULL;
}

/* Log file errors once each: repeats across rescans go to debug. */
static void
log_file_errors(struct daemon *d, const struct diags *errs)
{
	struct strbuf	 sb;
	struct htab	*before;
	size_t		 i;
	char		*s, *prev, *line, *p;

	strbuf_init(&sb);
	for (i = 0; i < errs->n; i++) {
		s = diag_format(&errs->v[i]);
		strbuf_puts(&sb, s);
		strbuf_puts(&sb, "\n");
		free(s);
	}
	if (d->file_errors_seen != NULL &&
	    strcmp(d->file_errors_seen, sb.s) == 0) {
		strbuf_free(&sb);
		return;
	}
	/* Never repeat a line the previous scan reported: a set of them,
	 * so that thousands of bad files cost linear time. */
	before = htab_new();
	prev = d->file_errors_seen != NULL ? xstrdup(d->file_errors_seen) :
	    NULL;
	for (p = prev; p != NULL && (line = strsep(&p, "\n")) != NULL;)
		if (*line != '\0')
			htab_put(before, line, (void *)1);
	for (i = 0; i < errs->n; i++) {
		s = diag_format(&errs->v[i]);
		if (htab_get(before, s) == NULL)
			log_warnx("spec error: %s", s);
		free(s);
	}
	htab_free(before);
	free(prev);
	free(d->file_errors_seen);
	d->file_errors_seen = strbuf_detach(&sb);
}

/*
 * The mass-deletion guard. Specs that disappear are deletions (or
 * retentions) by their policy, unless too many go at once: more than
 * deletion_guard.max_count, or more than one and more than max_fraction
 * of the clusters with a spec. A broken checkout, a wrong clusters_dir
 * or an emptied directory must never delete a fleet: then nothing is
 * deleted, every one of them is held (retained, said why) until its spec
 * comes back or "cachekeeper confirm-deletions" lets them go. While any
 * deletion is held, every further one is held too.
 */
static void
guard_apply(struct daemon *d, struct reconciler **missing, size_t n)
{
	size_t		 pos = 0, known = 0, held = 0, i;
	const char	*name;
	void		*v;
	char		*why;
	bool		 trip;

	while (htab_next(d->reconcilers, &pos, &name, &v)) {
		if (reconciler_spec(v) != NULL)
			known++;
		if (reconciler_held(v) != NULL)
			held++;
	}
	trip = held > 0 || n + held > (size_t)d->conf->guard_max_count ||
	    (n + held > 1 && (double)(n + held) > d->conf->guard_max_fraction *
	    (double)known);
	if (n == 0)
		return;
	if (!trip) {
		for (i = 0; i < n; i++)
			reconciler_set_deleted(missing[i], true,
			    "no spec file defines it");
		return;
	}
	xasprintf(&why, "deletion held by the mass-deletion guard: %zu of %zu "
	    "cluster specs disappeared at once (deletion_guard: max_fraction "
	    "%g, max_count %d); nothing is deleted until the specs come back "
	    "or 'cachekeeper confirm-deletions' lets them go", n + held, known,
	    d->conf->guard_max_fraction, d->conf->guard_max_count);
	log_warnx("mass-deletion guard: %zu of %zu cluster specs disappeared "
	    "at once; holding every deletion (retained) until the specs come "
	    "back or 'cachekeeper confirm-deletions'", n + held, known);
	for (i = 0; i < n; i++)
		reconciler_hold_deletion(missing[i], why);
	free(why);
}

static void
guard_fire(evutil_socket_t fd, short ev, void *arg)
{
	struct daemon		*d = arg;
	struct reconciler	**missing = NULL, *r;
	size_t			 pos = 0, n = 0;
	const char		*name;
	void			*v;

	while (htab_next(d->del_pending, &pos, &name, &v)) {
		r = htab_get(d->reconcilers, name);
		if (r == NULL || reconciler_spec(r) == NULL ||
		    reconciler_deleted(r) || reconciler_held(r) != NULL)
			continue;
		missing = xreallocarray(missing, n + 1, sizeof *missing);
		missing[n++] = r;
	}
	htab_free(d->del_pending);
	d->del_pending = NULL;
	guard_apply(d, missing, n);
	free(missing);
	daemon_update_summary(d);
}

/*
 * Specs that disappear are not acted on at once: a checkout that removes
 * many files reaches the daemon over several scans, and the guard must
 * see them together. They are collected for GUARD_SETTLE_MS from the
 * first, then judged as one (guard_fire); a spec that comes back within
 * that time was never gone.
 */
static void
guard_note(struct daemon *d, struct reconciler **missing, size_t n)
{
	struct timeval	 tv = { GUARD_SETTLE_MS / 1000,
	    (GUARD_SETTLE_MS % 1000) * 1000 };
	size_t		 i;

	if (n == 0)
		return;
	if (d->del_pending == NULL)
		d->del_pending = htab_new();
	for (i = 0; i < n; i++) {
		const char *name = reconciler_name(missing[i]);
		if (htab_get(d->del_pending, name) == NULL)
			log_cluster(LOG_LEVEL_INFO, name, "spec not found; "
			    "deciding in %d ms what that means", GUARD_SETTLE_MS);
		htab_put(d->del_pending, name, (void *)1);
	}
	if (d->ev_guard == NULL)
		d->ev_guard = evtimer_new(d->base, guard_fire, d);
	if (!evtimer_pending(d->ev_guard, NULL))
		evtimer_add(d->ev_guard, &tv);
}

/* Let held deletions go: all of them, or those named. */
size_t
daemon_confirm_deletions(struct daemon *d, const struct strlist *names,
    json_t *done)
{
	size_t		 pos = 0, k, n = 0;
	const char	*name;
	void		*v;

	while (htab_next(d->reconcilers, &pos, &name, &v)) {
		if (reconciler_held(v) == NULL)
			continue;
		if (names != NULL && names->n > 0) {
			for (k = 0; k < names->n; k++)
				if (strcmp(names->v[k], name) == 0)
					break;
			if (k == names->n)
				continue;
		}
		log_cluster(LOG_LEVEL_NOTICE, name, "deletion confirmed by an "
		    "operator");
		reconciler_hold_deletion(v, NULL);
		reconciler_set_deleted(v, true, "no spec file defines it; "
		    "confirmed");
		json_array_append_new(done, json_string(name));
		n++;
	}
	daemon_update_summary(d);
	return n;
}

void
daemon_rescan(struct daemon *d, const char *why)
{
	struct desired_set	 ds;
	struct htab		*seen;
	struct reconciler	*r;
	const char		*name;
	void			*v;
	size_t			 i, pos, changed;
	char			**gone = NULL;
	size_t			 ngone = 0;
	struct reconciler	**missing = NULL;
	size_t			 nmissing = 0;
	uint64_t		 t0 = clock_mono_us();

	if (d->watcher != NULL)
		watcher_drain(d->watcher);
	changed = specdir_scan(d->specs);
	/* New directories: scan again what raced in before their watch. */
	for (i = 0; i < 8 && d->watcher != NULL && watcher_set_dirs(d->watcher,
	    d->specs->dirs, d->specs->ndirs) > 0 && d->rescans > 0; i++)
		changed += specdir_scan(d->specs);
	d->rescans++;
	if (changed == 0 && d->rescans > 1) {
		log_debug("rescan (%s): nothing changed", why);
		return;
	}
	specdir_resolve(d->specs, current_file, d, &ds);
	log_file_errors(d, &ds.file_errors);
	seen = htab_new();
	for (i = 0; i < ds.n; i++) {
		struct desired *de = &ds.v[i];

		htab_put(seen, de->name, (void *)1);
		if ((r = htab_get(d->reconcilers, de->name)) == NULL) {
			r = reconciler_new(&d->env, de->name);
			htab_put(d->reconcilers, de->name, r);
		}
		reconciler_set_deleted(r, false, NULL);
		reconciler_set_spec(r, de->spec, &de->errors);
	}
	pos = 0;
	while (htab_next(d->reconcilers, &pos, &name, &v)) {
		r = v;
		if (htab_get(seen, name) != NULL) {
			reconciler_hold_deletion(r, NULL);	/* it is back */
			if (d->del_pending != NULL)
				htab_del(d->del_pending, name);
			continue;
		}
		if (reconciler_spec(r) == NULL) {
			if (reconciler_phase(r) != PHASE_RETAINED) {
				gone = xreallocarray(gone, ngone + 1,
				    sizeof *gone);
				gone[ngone++] = xstrdup(name);
			}
			continue;
		}
		if (!reconciler_deleted(r)) {
			missing = xreallocarray(missing, nmissing + 1,
			    sizeof *missing);
			missing[nmissing++] = r;
		}
	}
	guard_note(d, missing, nmissing);
	free(missing);
	for (i = 0; i < ngone; i++) {
		/* Never had a valid spec, now not even a broken one. */
		r = htab_del(d->reconcilers, gone[i]);
		reconciler_remove_status(&d->env, gone[i]);
		reconciler_free(r);
		free(gone[i]);
	}
	free(gone);
	htab_free(seen);
	d->invalid_files = ds.invalid_files;
	d->spec_errors = ds.file_errors.n;
	log_info("loaded %zu file%s (%s): %zu cluster%s, %zu invalid file%s "
	    "in %.1f ms", d->specs->nfiles, d->specs->nfiles == 1 ? "" : "s",
	    why, ds.n, ds.n == 1 ? "" : "s", ds.invalid_files,
	    ds.invalid_files == 1 ? "" : "s",
	    (double)(clock_mono_us() - t0) / 1000.0);
	desired_set_free(&ds);
	daemon_update_summary(d);
}

void
daemon_retire(void *arg, const char *name)
{
	struct daemon		*d = arg;
	struct reconciler	*r;
	char			*n = xstrdup(name);

	if ((r = htab_del(d->reconcilers, n)) != NULL) {
		reconciler_remove_status(&d->env, n);
		reconciler_free(r);
	}
	free(n);
	daemon_update_summary(d);
}

void
daemon_free_reconcilers(struct daemon *d)
{
	size_t		 pos = 0;
	const char	*name;
	void		*v;

	while (htab_next(d->reconcilers, &pos, &name, &v))
		reconciler_free(v);
	htab_free(d->reconcilers);
	d->reconcilers = NULL;
}

void
daemon_update_summary(struct daemon *d)
{
	size_t		 counts[PHASE__COUNT] = { 0 }, insync = 0, total = 0;
	size_t		 pos = 0;
	const char	*name;
	void		*v;
	struct strbuf	 sb;

	const char	*busy = NULL;
	struct reconciler *busy_r = NULL;
	size_t		 nbusy = 0, nheld = 0;

	while (htab_next(d->reconcilers, &pos, &name, &v)) {
		struct reconciler *r = v;
		enum phase p = reconciler_phase(r);
		json_t *pg = reconciler_progress(r);

		total++;
		if (reconciler_held(r) != NULL)
			nheld++;
		if (reconciler_in_sync(r) && p == PHASE_AVAILABLE)
			insync++;
		else
			counts[p]++;
		/*
		 * The long operation to show: the first busy cluster, or one
		 * whose backend reports progress (a snapshot of a cluster that
		 * stays available).
		 */
		if (p == PHASE_CREATING || p == PHASE_MODIFYING ||
		    p == PHASE_DELETING || pg != NULL) {
			nbusy++;
			if (busy == NULL || strcmp(name, busy) < 0) {
				busy = name;
				busy_r = r;
			}
		}
	}
	strbuf_init(&sb);
	strbuf_printf(&sb, "%zu cluster%s: %zu in sync", total,
	    total == 1 ? "" : "s", insync);
	size_t converging = counts[PHASE_CREATING] + counts[PHASE_MODIFYING] +
	    counts[PHASE_DELETING] + counts[PHASE_AVAILABLE];
	if (converging)
		strbuf_printf(&sb, ", %zu converging", converging);
	if (counts[PHASE_PENDING])
		strbuf_printf(&sb, ", %zu pending", counts[PHASE_PENDING]);
	if (counts[PHASE_DEGRADED])
		strbuf_printf(&sb, ", %zu degraded", counts[PHASE_DEGRADED]);
	if (counts[PHASE_FAILED])
		strbuf_printf(&sb, ", %zu failed", counts[PHASE_FAILED]);
	if (counts[PHASE_RETAINED])
		strbuf_printf(&sb, ", %zu retained", counts[PHASE_RETAINED]);
	if (counts[PHASE_SPEC_ERROR])
		strbuf_printf(&sb, ", %zu spec error%s",
		    counts[PHASE_SPEC_ERROR],
		    counts[PHASE_SPEC_ERROR] == 1 ? "" : "s");
	if (d->invalid_files)
		strbuf_printf(&sb, "; %zu invalid spec file%s",
		    d->invalid_files, d->invalid_files == 1 ? "" : "s");
	if (nheld > 0)
		strbuf_printf(&sb, "; deletion guard holds %zu deletion%s "
		    "(cachekeeper confirm-deletions)", nheld, nheld == 1 ? "" :
		    "s");
	if (busy_r != NULL) {
		json_t *pg = reconciler_progress(busy_r);
		const char *m = reconciler_message(busy_r);

		strbuf_printf(&sb, "; %s: %s", busy, m ? m : phase_name(
		    reconciler_phase(busy_r)));
		if (json_string_value(json_object_get(pg, "operation"))) {
			char *t = progress_text(json_string_value(
			    json_object_get(pg, "operation")), (long long)
			    json_integer_value(json_object_get(pg, "done")),
			    (long long)json_integer_value(json_object_get(pg,
			    "total")), json_string_value(json_object_get(pg,
			    "unit")));

			strbuf_printf(&sb, " (%s)", t);
			free(t);
		}
		if (nbusy > 1)
			strbuf_printf(&sb, " (+%zu more)", nbusy - 1);
	}
	notify_status(sb.s);
	d->summary_at_ms = clock_mono_ms();
	free(d->summary);
	d->summary = strbuf_detach(&sb);
}

static void
summary_fire(evutil_socket_t fd, short ev, void *arg)
{
	daemon_update_summary(arg);
}

/*
 * Recompute STATUS= soon: on the next loop turn, or, when it was just
 * recomputed, SUMMARY_MIN_MS after that (a long operation reports
 * progress often; the summary need not follow every step).
 */
void
daemon_summary_soon(void *arg)
{
	struct daemon	*d = arg;
	struct timeval	 tv = { 0, 0 };
	uint64_t	 now = clock_mono_ms();

	if (d->ev_summary == NULL)
		d->ev_summary = evtimer_new(d->base, summary_fire, d);
	if (evtimer_pending(d->ev_summary, NULL))
		return;
	if (d->summary_at_ms != 0 && now - d->summary_at_ms < SUMMARY_MIN_MS)
		tv.tv_usec = (suseconds_t)(SUMMARY_MIN_MS - (now -
		    d->summary_at_ms)) * 1000;
	evtimer_add(d->ev_summary, &tv);
}

/*
 * Clusters that have a status file but no spec at start-up. For safety a
 * deletion policy is never applied to them: a wrong clusters_dir or an
 * empty checkout at boot must not delete anything. They show as retained
 * until their spec comes back.
 */
void
daemon_load_known(struct daemon *d)
{
	DIR		*dir;
	struct dirent	*de;
	char		*name;
	size_t		 len;
	struct reconciler *r;
	const char	*why;

	if ((dir = opendir(d->env.status_dir)) == NULL)
		return;
	while ((de = readdir(dir)) != NULL) {
		len = strlen(de->d_name);
		if (len < 6 || strcmp(de->d_name + len - 5, ".json") != 0)
			continue;
		name = xstrndup(de->d_name, len - 5);
		if (spec_name_valid(name, &why) &&
		    htab_get(d->reconcilers, name) == NULL) {
			r = reconciler_new(&d->env, name);
			reconciler_mark_orphan(r, "spec not found at start-up; "
			    "the cluster is left as it is (no deletion policy "
			    "is applied until its spec has been seen)");
			htab_put(d->reconcilers, name, r);
		}
		free(name);
	}
	closedir(dir);
}
