/*
 * Snapshots of local clusters: automatic ones once a UTC day inside the
 * spec's snapshot_window (never inside the maintenance window), manual
 * ones on an operator's request, retention of the automatic ones.
 *
 * A snapshot is a BGSAVE on one node per shard (a replica in sync when
 * there is one, so the primary's clients never wait on a fork), polled
 * with INFO persistence until it is done or its deadline passes; then a
 * child process copies each RDB with its SHA-256 into
 * STATE_DIR/backups/CLUSTER/.tmp-SNAP/, writes manifest.json and renames
 * the directory to SNAP, so a half-written snapshot never looks complete
 * and the loop never waits on the disk. What is listed and deleted is in
 * backup_store.c; restoring is not done here.
 */
#include "config.h"

#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <hiredis/hiredis.h>
#include <openssl/evp.h>

#include "backup.h"
#include "elasticache/credchain.h"
#include "local.h"
#include "log.h"
#include "node.h"
#include "rconn.h"
#include "util.h"

#define BK_POLL_MS		100
#define BK_PROGRESS_MS		1000	/* a job's progress to the status */
#define BK_FULL_SCAN_MS		60000	/* read every manifest at least */
#define BK_INFO_TIMEOUT_MS	5000
#define BK_RETRY_S		60	/* after a failed automatic one */
#define BK_SCAN_MS		5000	/* re-read the snapshot directory */
#define BK_COPY_BUF		(1024 * 1024)

enum part_state { PART_IDLE, PART_SAVING, PART_DONE };

struct bk_part {
	char		*shard;
	char		*node;
	bool		 primary;
	json_t		*slots;		/* [[from, to], ...] */
	enum part_state	 state;
	bool		 busy;		/* a command is out */
	uint64_t	 sent_ms;
	char		*src;		/* its dump.rdb */
};

struct bk_job {
	struct lcluster	*lc;
	char		*name;
	const char	*type;		/* "automatic", "manual" */
	int64_t		 created_s;
	struct bk_part	*parts;
	size_t		 nparts;
	uint64_t	 deadline_ms;
	uint64_t	 started_ms;
	uint64_t	 copy_ms;	/* when the copy started */
	long long	 copy_total;	/* bytes of the shards' RDB files */
	long long	 copy_done;	/* as last read off its files */
	uint64_t	 told_ms;	/* last progress reported */
	bool		 killed;	/* the copy, past the deadline */
	pid_t		 pid;
	int		 fd;		/* the child's report */
	struct event	*rev;		/* on fd: its EOF is the child's end */
	char		 why[512];
	size_t		 whylen;
	char		*tmp;
	char		*final;
	const char	*key_file;	/* encrypt with it; NULL: do not */
	json_t		*manifest;
	backend_op_cb	 cb;
	void		*cbarg;
};

struct lbk {
	bool		 have_spec;
	struct window	 win;
	struct window	 mwin;
	int		 retention_days;
	bool		 encrypt;	/* enable_at_rest_encryption */
	uint64_t	 generation;
	struct bk_job	*job;
	struct event	*ev;		/* the job's poll timer */
	int64_t		 last_success;	/* 0: never */
	int64_t		 last_auto;	/* created_at of the newest automatic */
	int		 count;
	char		*last_error;
	int64_t		 retry_at;	/* wall s */
	/* A due automatic snapshot waiting for the cluster: why, since. */
	char		*postponed;
	int64_t		 postponed_since;	/* wall s */
	int64_t		 postponed_window;	/* its window */
	uint64_t	 scan_ms;
	int64_t		 oldest_auto;	/* created_at of the oldest automatic */
	/* The backup directory as the last full scan saw it. */
	bool		 trusted;	/* its mtime tells a later change */
	ino_t		 dir_ino;
	struct timespec	 dir_mtim;
	uint64_t	 full_scan_ms;
	/* S3: one upload child at a time, one deletion child. */
	pid_t		 up_pid;
	int		 up_fd;
	char		*up_snap;
	int64_t		 up_retry_at;	/* wall s */
	int		 up_backoff_s;
	int64_t		 last_upload;
	int		 up_pending;	/* snapshots not in S3 yet */
	pid_t		 del_pid;
	struct bk_answer *answers;	/* not yet fired */
};

static void	bk_poll(evutil_socket_t, short, void *);
static void	copy_readable(evutil_socket_t, short, void *);

/* An operation's answer, always from the loop (backend.h). */
struct bk_answer {
	struct lcluster	*lc;
	struct event	*ev;
	backend_op_cb	 cb;
	void		*arg;
	int		 error;
	char		*msg;
	struct bk_answer *next;		/* the cluster's pending answers */
};

static void
answer_free(struct bk_answer *a)
{
	event_free(a->ev);
	free(a->msg);
	free(a);
}

static void
answer_fire(evutil_socket_t fd, short ev, void *arg)
{
	struct bk_answer	*a = arg, **pp;

	for (pp = &a->lc->bk->answers; *pp != NULL; pp = &(*pp)->next)
		if (*pp == a) {
			*pp = a->next;
			break;
		}
	a->cb(a->arg, a->error, a->msg);
	answer_free(a);
}

/*
 * Answers wait for the next loop turn in the cluster, so a detach
 * cancels them silently as backend.h promises.
 */
void
lbk_answer(struct lcluster *lc, backend_op_cb cb, void *arg, int error,
    char *msg)
{
	struct bk_answer	*a = xcalloc(1, sizeof *a);
	struct timeval		 tv = { 0, 0 };

	a->lc = lc;
	a->cb = cb;
	a->arg = arg;
	a->error = error;
	a->msg = msg;
	a->ev = evtimer_new(lc->ctx->base, answer_fire, a);
	a->next = lc->bk->answers;
	lc->bk->answers = a;
	evtimer_add(a->ev, &tv);
}


static const char *
bk_root(struct lcluster *lc)
{
	return lc->ctx->conf->state_dir;
}

/*
 * Re-read what is on disk: count, newest success, newest and oldest
 * automatic, snapshots not yet in S3. Unless forced (after the daemon's own
 * jobs, which also change files inside the snapshots), only when the
 * cluster's backup directory changed: a snapshot completed, deleted or
 * removed by hand changes its mtime, and a stat is cheaper than reading
 * every manifest at each look. An mtime within a second of the scan may
 * hide a later change in the same clock tick (file times are coarse), so
 * it is not trusted and the next look scans again. A snapshot copied in by
 * hand completes (its manifest) without touching the directory: a full
 * scan at least every BK_FULL_SCAN_MS sees it.
 */
static void
bk_scan(struct lcluster *lc, bool force)
{
	struct lbk	*bk = lc->bk;
	json_t		*l, *e;
	size_t		 i;
	int64_t		 t;
	struct stat	 st;
	struct timespec	 now;
	char		*dir;

	xasprintf(&dir, "%s/backups/%s", bk_root(lc), lc->name);
	if (stat(dir, &st) != 0)
		memset(&st, 0, sizeof st);
	free(dir);
	clock_gettime(CLOCK_REALTIME, &now);	/* file times: no test offset */
	bk->scan_ms = clock_mono_ms();
	if (!force && bk->trusted && st.st_ino == bk->dir_ino &&
	    st.st_mtim.tv_sec == bk->dir_mtim.tv_sec &&
	    st.st_mtim.tv_nsec == bk->dir_mtim.tv_nsec &&
	    bk->scan_ms - bk->full_scan_ms < BK_FULL_SCAN_MS)
		return;
	bk->trusted = st.st_mtim.tv_sec + 1 < now.tv_sec;
	bk->dir_ino = st.st_ino;
	bk->dir_mtim = st.st_mtim;
	bk->full_scan_ms = bk->scan_ms;
	l = backup_list(bk_root(lc), lc->name);
	bk->count = (int)json_array_size(l);
	bk->last_auto = 0;
	bk->oldest_auto = 0;
	bk->up_pending = 0;
	json_array_foreach(l, i, e) {
		char *mk;

		xasprintf(&mk, "%s/backups/%s/%s/%s", bk_root(lc), lc->name,
		    json_string_value(json_object_get(e, "name")),
		    BACKUP_S3_PENDING);
		if (access(mk, F_OK) == 0)
			bk->up_pending++;
		free(mk);
		t = json_integer_value(json_object_get(e,
		    "created_at_unix"));
		if (t > bk->last_success)
			bk->last_success = t;
		if (strcmp(json_string_value(json_object_get(e, "type")),
		    "automatic") != 0)
			continue;
		if (t > bk->last_auto)
			bk->last_auto = t;
		if (bk->oldest_auto == 0 || t < bk->oldest_auto)
			bk->oldest_auto = t;
	}
	json_decref(l);
}

/* Remove what a crash left half written. */
static void
bk_clean_tmp(struct lcluster *lc)
{
	char		*dir;

	xasprintf(&dir, "%s/backups/%s", bk_root(lc), lc->name);
	backup_clean_tmp(dir);
	free(dir);
}

void
lbk_init(struct lcluster *lc)
{
	if (lc->bk != NULL)
		return;
	lc->bk = xcalloc(1, sizeof *lc->bk);
	lc->bk->up_fd = -1;
	lc->bk->ev = evtimer_new(lc->ctx->base, bk_poll, lc);
	bk_clean_tmp(lc);
	bk_scan(lc, true);
}

static void
bk_set_error(struct lcluster *lc, const char *msg)
{
	struct lbk	*bk = lc->bk;

	/* Warn when it changes; the same again goes to debug. */
	if (bk->last_error == NULL || strcmp(bk->last_error, msg) != 0)
		log_cluster(LOG_LEVEL_WARNING, lc->name, "snapshot: %s", msg);
	else
		log_debug("%s: snapshot: %s", lc->name, msg);
	free(bk->last_error);
	bk->last_error = xstrdup(msg);
}

static void
job_free(struct bk_job *j)
{
	size_t	 i;

	if (j == NULL)
		return;
	for (i = 0; i < j->nparts; i++) {
		free(j->parts[i].shard);
		free(j->parts[i].node);
		free(j->parts[i].src);
		json_decref(j->parts[i].slots);
	}
	free(j->parts);
	if (j->pid > 0) {
		kill(j->pid, SIGKILL);
		(void)waitpid(j->pid, NULL, 0);
	}
	if (j->rev != NULL)
		event_free(j->rev);
	if (j->fd >= 0)
		close(j->fd);
	free(j->name);
	free(j->tmp);
	free(j->final);
	json_decref(j->manifest);
	free(j);
}

void
lbk_free(struct lcluster *lc)
{
	struct lbk	*bk = lc->bk;

	if (bk == NULL)
		return;
	if (bk->job != NULL && bk->job->tmp != NULL && bk->job->pid > 0) {
		char *tmp = xstrdup(bk->job->tmp);
		job_free(bk->job);
		(void)node_remove_dir(tmp);
		free(tmp);
	} else
		job_free(bk->job);
	event_free(bk->ev);
	while (bk->answers != NULL) {
		struct bk_answer *a = bk->answers;

		bk->answers = a->next;
		answer_free(a);
	}
	/* An upload starts again from the marker next time. */
	if (bk->up_pid > 0) {
		kill(bk->up_pid, SIGKILL);
		(void)waitpid(bk->up_pid, NULL, 0);
		close(bk->up_fd);
	}
	if (bk->del_pid > 0)
		(void)waitpid(bk->del_pid, NULL, WNOHANG);
	free(bk->up_snap);
	free(bk->last_error);
	free(bk->postponed);
	free(bk);
	lc->bk = NULL;
}

void
lbk_spec(struct lcluster *lc, const struct cluster_spec *s)
{
	struct lbk	*bk = lc->bk;

	if (bk == NULL)
		return;
	bk->have_spec = true;
	bk->win = s->snapshot_window;
	bk->mwin = s->maintenance_window;
	bk->retention_days = s->snapshot_retention_limit;
	bk->encrypt = s->at_rest_encryption;
	bk->generation = s->generation;
}

/* The latest start of the snapshot window at or before now. */
static int64_t
window_last_start(const struct window *w, int64_t now)
{
	int64_t	 s = now - now % 86400 + (int64_t)w->start * 60;

	if (s > now)
		s -= 86400;
	return s;
}

/* When the next automatic snapshot is due (0: none are taken). */
static int64_t
bk_next_due(struct lcluster *lc, int64_t now)
{
	struct lbk	*bk = lc->bk;
	int64_t		 s;

	if (!bk->have_spec || bk->retention_days == 0)
		return 0;
	s = window_last_start(&bk->win, now);
	if (now < s + (int64_t)bk->win.len * 60 && bk->last_auto < s)
		return bk->retry_at > now ? bk->retry_at : now;
	return s + 86400;
}

json_t *
lbk_status(struct lcluster *lc)
{
	struct lbk	*bk = lc->bk;
	char		 a[40], b[40];
	int64_t		 due;
	json_t		*j;

	if (bk == NULL)
		return json_null();
	/* What is on disk now: snapshots deleted by hand count too. */
	if (bk->job == NULL)
		bk_scan(lc, false);
	due = bk_next_due(lc, clock_wall_s());
	if (bk->last_success)
		format_rfc3339(bk->last_success, a, sizeof a);
	if (due)
		format_rfc3339(due, b, sizeof b);
	j = json_pack("{s:s?, s:s?, s:s?, s:i, s:s?}", "last_success",
	    bk->last_success ? a : NULL, "next_due", due ? b : NULL,
	    "last_error", bk->last_error, "snapshots", bk->count,
	    "in_progress", bk->job ? bk->job->name : NULL);
	if (bk->postponed != NULL) {
		format_rfc3339(bk->postponed_since, a, sizeof a);
		format_rfc3339(bk->postponed_window + (int64_t)bk->win.len *
		    60, b, sizeof b);
		json_object_set_new(j, "postponed", json_pack("{s:s, s:s, "
		    "s:s}", "reason", bk->postponed, "since", a,
		    "until_window_end", b));
	}
	if (lc->ctx->conf->s3.bucket != NULL) {
		if (bk->last_upload)
			format_rfc3339(bk->last_upload, a, sizeof a);
		json_object_set_new(j, "s3", json_pack("{s:s?, s:i, s:s?}",
		    "last_upload", bk->last_upload ? a : NULL, "pending",
		    bk->up_pending, "uploading", bk->up_snap));
	}
	return j;
}

/* The node a shard's snapshot comes from: its best replica in sync. */
static struct lnode *
pick_node(struct lcluster *lc, const char *shard, struct lnode *p)
{
	struct lnode	*best = NULL, *n;
	size_t		 i;

	for (i = 0; i < lc->nnodes; i++) {
		n = lc->nodes[i];
		if (n == p || (shard != NULL && (n->shard == NULL ||
		    strcmp(n->shard, shard) != 0)))
			continue;
		if (!lnode_up(n) || !n->synced_once || !n->link_up)
			continue;
		if (lc->cluster_mode && lcl_conn(lc, n) == NULL)
			continue;
		if (best == NULL || n->offset > best->offset)
			best = n;
	}
	return best != NULL ? best : p;
}

static json_t *
shard_slots(struct lcluster *lc, int idx)
{
	json_t	*a = json_array();
	int	 s, from = -1;

	if (lc->cl == NULL || !lc->cl->have_view)
		return a;
	for (s = 0; s <= LCL_SLOTS; s++) {
		bool mine = s < LCL_SLOTS && lc->cl->owner[s] == idx;

		if (mine && from < 0)
			from = s;
		else if (!mine && from >= 0) {
			json_array_append_new(a, json_pack("[i, i]", from,
			    s - 1));
			from = -1;
		}
	}
	return a;
}

static void
add_part(struct bk_job *j, const char *shard, struct lnode *n, bool primary,
    json_t *slots)
{
	struct bk_part	*p;

	j->parts = xreallocarray(j->parts, j->nparts + 1, sizeof *j->parts);
	p = &j->parts[j->nparts++];
	memset(p, 0, sizeof *p);
	p->shard = xstrdup(shard);
	p->node = xstrdup(n->id);
	p->primary = primary;
	p->slots = slots;
	p->src = node_path(n->dir, "dump.rdb");
}

/* Whether the cluster can be snapshotted now; if not, why. */
static const char *
bk_busy(struct lcluster *lc)
{
	struct lnode	*p;

	if (!lc->exists || !lc->created)
		return "the cluster is not created yet";
	if (lc->restore_from != NULL)
		return "it is being restored from a snapshot";
	if (lc->bk->job != NULL)
		return "a snapshot is in progress";
	if (lc->cluster_mode) {
		if (lcl_observed_state(lc) != OBS_AVAILABLE || lmig_busy(lc))
			return "the cluster is not available (resharding, "
			    "failover or a node down)";
		return NULL;
	}
	p = lcluster_primary(lc);
	if (p == NULL || !lnode_up(p) || lc->promoting)
		return "the primary is not available";
	return NULL;
}

static struct bk_job *
job_new(struct lcluster *lc, const char *name, const char *type,
    char **cause)
{
	struct bk_job	*j = xcalloc(1, sizeof *j);
	size_t		 i;
	/*
	 * A final snapshot comes from the primaries: a replica may not have
	 * the last writes acknowledged before the deletion, and the fork's
	 * cost no longer matters to nodes about to go.
	 */
	bool		 final = strcmp(type, "final") == 0;

	j->lc = lc;
	j->fd = -1;
	j->name = xstrdup(name);
	j->type = type;
	j->created_s = clock_wall_s();
	j->started_ms = clock_mono_ms();
	j->deadline_ms = j->started_ms + lc->ctx->conf->snapshot_timeout_ms;
	if (lc->cluster_mode) {
		for (i = 0; i < lc->nshards; i++) {
			struct lshard *sh = lc->shards[i];
			struct lnode *p = lcluster_node(lc, sh->primary);

			if (sh->removing)
				continue;
			if (p == NULL) {
				xasprintf(cause, "shard %s has no primary",
				    sh->id);
				job_free(j);
				return NULL;
			}
			struct lnode *n = final ? p : pick_node(lc, sh->id, p);
			add_part(j, sh->id, n, n == p,
			    shard_slots(lc, (int)i));
		}
	} else {
		struct lnode *p = lcluster_primary(lc);
		struct lnode *n = final ? p : pick_node(lc, NULL, p);

		add_part(j, "s1", n, n == p, json_array());
	}
	return j;
}

static void	job_done(struct lcluster *, int, const char *);

static int
part_command(struct lcluster *lc, struct bk_part *p, rconn_cb_t cb,
    const char *cmd)
{
	struct lnode	*n = lcluster_node(lc, p->node);

	if (n == NULL)
		return -ENOENT;
	p->busy = true;
	p->sent_ms = clock_mono_ms();
	/*
	 * Cluster mode: the cluster connection, so the monitor's PINGs never
	 * wait behind us. The node is the callback's argument: it owns the
	 * connection, which is freed (silencing the callback) before it.
	 */
	if (lc->cluster_mode)
		return lcl_command(lc, n, cb, n, "%s", cmd);
	if (n->conn == NULL)
		return -ENOTCONN;
	/* rconn formats as hiredis does: "%s" would be one word. */
	if (strcmp(cmd, "BGSAVE") == 0)
		return rconn_command(n->conn, BK_INFO_TIMEOUT_MS, cb, n,
		    "BGSAVE");
	return rconn_command(n->conn, BK_INFO_TIMEOUT_MS, cb, n,
	    "INFO persistence");
}

static struct bk_part *
part_of(struct lnode *n)
{
	struct lcluster	*lc = n->lc;
	struct bk_job	*j = lc->bk ? lc->bk->job : NULL;
	size_t		 i;

	if (j == NULL || j->pid != 0)
		return NULL;
	for (i = 0; i < j->nparts; i++)
		if (strcmp(j->parts[i].node, n->id) == 0)
			return &j->parts[i];
	return NULL;
}

static void
bgsave_done(struct rconn *rc, struct redisReply *reply, const char *err,
    void *arg)
{
	struct lnode	*n = arg;
	struct bk_part	*p = part_of(n);
	char		*m;

	if (p == NULL)
		return;
	p->busy = false;
	if (reply == NULL)
		return;		/* the connection failed; poll sends again */
	if (reply->type == REDIS_REPLY_ERROR) {
		/* A scheduled save or a replica's full sync: wait for it. */
		if (strstr(reply->str, "in progress") != NULL)
			return;
		xasprintf(&m, "BGSAVE on %s: %s", n->id, reply->str);
		job_done(n->lc, -EIO, m);
		free(m);
		return;
	}
	log_cluster(LOG_LEVEL_INFO, n->lc->name, "snapshot %s: BGSAVE on %s "
	    "%s %s", n->lc->bk->job->name, p->primary ? "primary" : "replica",
	    n->id, p->shard);
	p->state = PART_SAVING;
}

static void
info_done(struct rconn *rc, struct redisReply *reply, const char *err,
    void *arg)
{
	struct lnode	*n = arg;
	struct bk_part	*p = part_of(n);
	char		*m;

	if (p == NULL)
		return;
	p->busy = false;
	if (reply == NULL || reply->type != REDIS_REPLY_STRING)
		return;
	if (strstr(reply->str, "rdb_bgsave_in_progress:0") == NULL)
		return;
	if (strstr(reply->str, "rdb_last_bgsave_status:ok") == NULL) {
		xasprintf(&m, "BGSAVE on %s failed (see its redis.log)",
		    n->id);
		job_done(n->lc, -EIO, m);
		free(m);
		return;
	}
	p->state = PART_DONE;
}

static void
manifest_base(struct lcluster *lc, struct bk_job *j)
{
	char	 ts[40], gen[20];
	json_t	*shards = json_array();
	size_t	 i;

	format_rfc3339(j->created_s, ts, sizeof ts);
	snprintf(gen, sizeof gen, "%016llx",
	    (unsigned long long)lc->bk->generation);
	for (i = 0; i < j->nparts; i++) {
		char file[64];

		snprintf(file, sizeof file, "%s.rdb", j->parts[i].shard);
		json_array_append_new(shards, json_pack("{s:s, s:s, s:s, "
		    "s:O, s:s}", "id", j->parts[i].shard, "node",
		    j->parts[i].node, "role", j->parts[i].primary ? "primary" :
		    "replica", "slots", j->parts[i].slots, "file", file));
	}
	j->manifest = json_pack("{s:i, s:s, s:s, s:s, s:s, s:I, s:s, s:s, "
	    "s:b, s:o, s:{s:s}}", "format", 1, "name", j->name, "cluster",
	    lc->name, "type", j->type, "created_at", ts, "created_at_unix",
	    (json_int_t)j->created_s, "generation", gen, "engine_version",
	    lc->ctx->version ? lc->ctx->version : "", "cluster_mode",
	    lc->cluster_mode, "shards", shards, "encryption", "scheme",
	    "none");
}

/* The child: copy every part, write the manifest, rename. Never returns. */
static void
copy_child(struct bk_job *j, int fd)
{
	json_t		*sh;
	char		*dst, hex[2 * EVP_MAX_MD_SIZE + 1], *txt, *path;
	long long	 size;
	size_t		 i;
	int		 e, dfd;
	unsigned char	 key[BACKUP_KEY_LEN];
	char		 id[17], *cause = NULL;

	if (j->key_file != NULL) {
		if (backup_key_load(j->key_file, key, id, &cause) != 0) {
			dprintf(fd, "%s", cause);
			_exit(1);
		}
		json_object_set_new(j->manifest, "encryption", json_pack(
		    "{s:s, s:s, s:i}", "scheme", BACKUP_SCHEME, "key_id", id,
		    "chunk_size", BK_COPY_BUF));
	}
	json_array_foreach(json_object_get(j->manifest, "shards"), i, sh) {
		xasprintf(&dst, "%s/%s", j->tmp, json_string_value(
		    json_object_get(sh, "file")));
		if ((e = backup_copy_file(j->parts[i].src, dst, j->key_file ? key :
		    NULL, &size, hex)) != 0) {
			dprintf(fd, "copying %s: %s", j->parts[i].src,
			    strerror(-e));
			_exit(1);
		}
		free(dst);
		json_object_set_new(sh, "size", json_integer(size));
		json_object_set_new(sh, "sha256", json_string(hex));
	}
	explicit_bzero(key, sizeof key);
	txt = json_dumps(j->manifest, JSON_INDENT(2) | JSON_SORT_KEYS);
	xasprintf(&path, "%s/manifest.json", j->tmp);
	if ((e = file_write_atomic(path, txt, strlen(txt), 0600,
	    1)) != 0) {
		dprintf(fd, "writing %s: %s", path, strerror(-e));
		_exit(1);
	}
	if (rename(j->tmp, j->final) != 0) {
		dprintf(fd, "renaming %s: %s", j->tmp, strerror(errno));
		_exit(1);
	}
	if ((dfd = open(j->final, O_RDONLY | O_DIRECTORY)) >= 0) {
		(void)fsync(dfd);
		close(dfd);
	}
	_exit(0);
}

static void
copy_start(struct lcluster *lc, struct bk_job *j)
{
	int		 fds[2], r;
	char		*m;
	pid_t		 parent;
	size_t		 i;
	struct stat	 st;

	j->copy_ms = clock_mono_ms();
	j->copy_total = 0;
	for (i = 0; i < j->nparts; i++)
		if (stat(j->parts[i].src, &st) == 0)
			j->copy_total += (long long)st.st_size;
	manifest_base(lc, j);
	xasprintf(&j->final, "%s/backups/%s/%s", bk_root(lc), lc->name,
	    j->name);
	xasprintf(&j->tmp, "%s/backups/%s/.tmp-%s", bk_root(lc), lc->name,
	    j->name);
	(void)node_remove_dir(j->tmp);
	if ((r = mkdir_p(j->tmp, 0700)) != 0 || pipe2(fds, O_CLOEXEC) != 0) {
		xasprintf(&m, "cannot create %s: %s", j->tmp,
		    strerror(r ? -r : errno));
		job_done(lc, -EIO, m);
		free(m);
		return;
	}
	/*
	 * The copy dies with the daemon: the next one removes .tmp-SNAP at
	 * start, and must not race a leftover child still writing into it
	 * (which could rename a directory emptied under it, manifest and
	 * all, into a snapshot that looks complete).
	 */
	parent = getpid();
	if ((j->pid = fork()) == 0) {
		child_die_with_parent(parent);
		close(fds[0]);
		copy_child(j, fds[1]);
	}
	close(fds[1]);
	j->fd = fds[0];
	if (j->pid < 0) {
		j->pid = 0;
		job_done(lc, -errno, "fork failed");
		return;
	}
	/* No polling: the pipe closes when the child exits. */
	j->rev = event_new(lc->ctx->base, j->fd, EV_READ | EV_PERSIST,
	    copy_readable, lc);
	event_add(j->rev, NULL);
}

static void	copy_reaped(struct lcluster *, struct bk_job *, int);

/* The copy child's report, then its EOF: it is exiting, reap it. */
static void
copy_readable(evutil_socket_t fd, short ev, void *arg)
{
	struct lcluster	*lc = arg;
	struct bk_job	*j = lc->bk->job;
	ssize_t		 n;
	int		 status;

	if (j == NULL || j->pid <= 0)
		return;
	n = read(fd, j->why + j->whylen, sizeof j->why - 1 - j->whylen);
	if (n < 0 && (errno == EINTR || errno == EAGAIN))
		return;
	if (n > 0) {
		j->whylen += (size_t)n;
		if (j->whylen < sizeof j->why - 1)
			return;
	}
	event_del(j->rev);
	if (waitpid(j->pid, &status, 0) != j->pid)
		status = 0x7f00;
	copy_reaped(lc, j, status);
}

/* The copy child ended: read its report. */
static void
copy_reaped(struct lcluster *lc, struct bk_job *j, int status)
{
	char	 why[512];
	ssize_t	 n;

	j->pid = 0;
	if (WIFEXITED(status) && WEXITSTATUS(status) == 0) {
		job_done(lc, 0, NULL);
		return;
	}
	n = (ssize_t)j->whylen;
	memcpy(why, j->why, j->whylen);
	why[n] = '\0';
	if (n <= 0)
		snprintf(why, sizeof why, "the copy process failed");
	(void)node_remove_dir(j->tmp);
	job_done(lc, -EIO, why);
}

static json_t *
bk_progress_json(const struct bk_job *j, const char *phase, long long done,
    long long total, const char *unit)
{
	char	*op;
	json_t	*p;

	xasprintf(&op, "snapshot %s: %s", j->name, phase);
	p = json_pack("{s:s, s:I, s:I, s:s}", "operation", op, "done",
	    (json_int_t)done, "total", (json_int_t)total, "unit", unit);
	free(op);
	return p;
}

/*
 * A snapshot's progress, for the status (and so `cachekeeper status` and
 * STATUS=): shards saved while the nodes BGSAVE, then bytes copied, read
 * off the files growing in its temporary directory.
 */
json_t *
lbk_progress(struct lcluster *lc)
{
	struct bk_job	*j = lc->bk != NULL ? lc->bk->job : NULL;
	long long	 done = 0;
	size_t		 i;
	char		*path;
	DIR		*dir;
	struct dirent	*de;
	struct stat	 st;

	if (j == NULL)
		return NULL;
	if (j->pid <= 0) {
		for (i = 0; i < j->nparts; i++)
			done += j->parts[i].state == PART_DONE;
		return bk_progress_json(j, "BGSAVE", done, (long long)j->nparts,
		    "shards");
	}
	/* Renamed into place at the end: then it keeps the last count. */
	if ((dir = opendir(j->tmp)) == NULL)
		done = j->copy_done;
	else {
		while ((de = readdir(dir)) != NULL) {
			if (de->d_name[0] == '.')
				continue;
			xasprintf(&path, "%s/%s", j->tmp, de->d_name);
			if (stat(path, &st) == 0 && S_ISREG(st.st_mode))
				done += (long long)st.st_size;
			free(path);
		}
		closedir(dir);
	}
	if (done > j->copy_total)	/* encryption adds its tags */
		done = j->copy_total;
	j->copy_done = done;
	return bk_progress_json(j, "copy", done, j->copy_total, "bytes");
}

/*
 * Tell the status, at most every BK_PROGRESS_MS, straight away (an
 * operator's snapshot holds the reconciler: it observes nothing until the
 * snapshot is done).
 */
static void
bk_progress_tell(struct lcluster *lc, struct bk_job *j, uint64_t now)
{
	const struct backend_env *env = lc->ctx->env;
	json_t		*pg;

	if (now - j->told_ms < BK_PROGRESS_MS || env->progress == NULL)
		return;
	j->told_ms = now;
	pg = lbk_progress(lc);
	env->progress(env->changed_arg, lc->name, pg);
	json_decref(pg);
}

static void
bk_poll(evutil_socket_t fd, short ev, void *arg)
{
	struct lcluster	*lc = arg;
	struct bk_job	*j = lc->bk->job;
	struct timeval	 tv = { 0, BK_POLL_MS * 1000 };
	uint64_t	 now = clock_mono_ms();
	size_t		 i, done = 0;

	if (j == NULL)
		return;
	bk_progress_tell(lc, j, now);
	if (j->pid > 0) {
		/* copy_readable sees it end; here only progress and deadline. */
		if (now > j->deadline_ms && !j->killed) {
			int n = snprintf(j->why, sizeof j->why, "the copy did "
			    "not finish within backups.snapshot_timeout (%llu "
			    "s): stopped", (unsigned long long)(lc->ctx->conf->
			    snapshot_timeout_ms / 1000));

			j->whylen = n > 0 && (size_t)n < sizeof j->why ?
			    (size_t)n : 0;
			j->killed = true;
			kill(j->pid, SIGKILL);
		}
		tv.tv_sec = BK_PROGRESS_MS / 1000;
		tv.tv_usec = 0;
		evtimer_add(lc->bk->ev, &tv);
		return;
	}
	if (now > j->deadline_ms) {
		char *m;

		xasprintf(&m, "BGSAVE did not finish within "
		    "backups.snapshot_timeout (%llu s)", (unsigned long long)(
		    lc->ctx->conf->snapshot_timeout_ms / 1000));
		job_done(lc, -ETIMEDOUT, m);
		free(m);
		return;
	} else {
		for (i = 0; i < j->nparts; i++) {
			struct bk_part *p = &j->parts[i];

			if (p->state == PART_DONE) {
				done++;
				continue;
			}
			if (p->busy && now - p->sent_ms < BK_INFO_TIMEOUT_MS)
				continue;
			if (part_command(lc, p, p->state == PART_IDLE ?
			    bgsave_done : info_done, p->state == PART_IDLE ?
			    "BGSAVE" : "INFO persistence") != 0)
				p->busy = false;
		}
		if (done == j->nparts) {
			copy_start(lc, j);
			if (lc->bk->job != j)
				return;
		}
	}
	evtimer_add(lc->bk->ev, &tv);
}

/*
 * Retention in S3: a child deletes the copy of snapshot name (manifest
 * first). False when a deletion is still running: try again later.
 */
static bool
bk_s3_forget(struct lcluster *lc, const char *name)
{
	struct lbk	*bk = lc->bk;
	const struct aws_creds *cr;
	const char	*no;
	json_t		*m;
	char		*path, *cause = NULL;
	pid_t		 pid, parent;
	int		 status;

	if (bk->del_pid > 0) {
		if (waitpid(bk->del_pid, &status, WNOHANG) == 0)
			return false;
		bk->del_pid = 0;
		if (WIFEXITED(status) && WEXITSTATUS(status) ==
		    BACKUP_S3_EXIT_EXPIRED)
			local_s3_creds_expired(lc->ctx);
	}
	if (local_s3_creds(lc->ctx, &cr, &no) != 1)
		return false;	/* the next scan tries again */
	xasprintf(&path, "%s/backups/%s/%s/manifest.json", bk_root(lc),
	    lc->name, name);
	m = json_load_file(path, 0, NULL);
	free(path);
	if (m == NULL)
		return true;
	parent = getpid();
	if ((pid = fork()) == 0) {
		int e;

		child_die_with_parent(parent);
		e = backup_s3_delete(&lc->ctx->conf->s3, cr, name, m, &cause);
		_exit(e == 0 ? 0 : e == -EKEYEXPIRED ?
		    BACKUP_S3_EXIT_EXPIRED : 1);
	}
	json_decref(m);
	if (pid < 0)
		return false;
	bk->del_pid = pid;
	log_cluster(LOG_LEVEL_INFO, lc->name, "retention: deleting the S3 "
	    "copy of %s", name);
	return true;
}

/* Reap the upload child, or start one for a snapshot not in S3 yet. */
static void
bk_s3_tick(struct lcluster *lc)
{
	struct lbk	*bk = lc->bk;
	const struct aws_creds *cr;
	const char	*no;
	char		*dir, *mk, *cause = NULL, why[1024], *m;
	json_t		*l, *e;
	int64_t		 now = clock_wall_s();
	int		 status, fds[2], got;
	ssize_t		 n;
	size_t		 i;
	pid_t		 r, parent;

	if (lc->ctx->conf->s3.bucket == NULL)
		return;
	if (bk->up_pid > 0) {
		if ((r = waitpid(bk->up_pid, &status, WNOHANG)) == 0)
			return;
		bk->up_pid = 0;
		n = read(bk->up_fd, why, sizeof why - 1);
		why[n > 0 ? n : 0] = '\0';
		close(bk->up_fd);
		bk->up_fd = -1;
		if (r > 0 && WIFEXITED(status) && WEXITSTATUS(status) == 0) {
			log_cluster(LOG_LEVEL_NOTICE, lc->name, "snapshot %s "
			    "uploaded to s3://%s/%s%s/", bk->up_snap,
			    lc->ctx->conf->s3.bucket,
			    lc->ctx->conf->s3.prefix, bk->up_snap);
			bk->last_upload = now;
			bk->up_backoff_s = 0;
			if (bk->last_error != NULL && strstr(bk->last_error,
			    "S3") != NULL) {
				free(bk->last_error);
				bk->last_error = NULL;
			}
		} else if (r > 0 && WIFEXITED(status) && WEXITSTATUS(status) ==
		    BACKUP_S3_EXIT_EXPIRED && bk->up_backoff_s == 0) {
			/* New credentials, and at once, once. */
			local_s3_creds_expired(lc->ctx);
			bk->up_backoff_s = 1;
			log_cluster(LOG_LEVEL_INFO, lc->name, "upload of %s: "
			    "S3 says the credentials expired; fetching new "
			    "ones", bk->up_snap);
		} else {
			if (r > 0 && WIFEXITED(status) && WEXITSTATUS(status) ==
			    BACKUP_S3_EXIT_EXPIRED)
				local_s3_creds_expired(lc->ctx);
			bk->up_backoff_s = bk->up_backoff_s ?
			    bk->up_backoff_s * 2 : 2;
			if (bk->up_backoff_s > 300)
				bk->up_backoff_s = 300;
			bk->up_retry_at = now + bk->up_backoff_s;
			xasprintf(&m, "upload of %s to S3 failed: %s, will "
			    "retry in %ds", bk->up_snap, n > 0 ? why :
			    "the upload process died", bk->up_backoff_s);
			bk_set_error(lc, m);
			free(m);
		}
		free(bk->up_snap);
		bk->up_snap = NULL;
		bk_scan(lc, true);
		lcluster_changed(lc);
		return;
	}
	if (now < bk->up_retry_at || bk->up_pending == 0)
		return;
	if ((got = local_s3_creds(lc->ctx, &cr, &no)) == 0)
		return;		/* being fetched: a later tick */
	if (got < 0) {
		bk->up_retry_at = now + CREDCHAIN_RETRY_MS / 1000;
		xasprintf(&m, "upload to S3: %s, will retry in %ds", no,
		    CREDCHAIN_RETRY_MS / 1000);
		bk_set_error(lc, m);
		free(m);
		lcluster_changed(lc);
		return;
	}
	parent = getpid();
	l = backup_list(bk_root(lc), lc->name);
	json_array_foreach(l, i, e) {
		const char *name = json_string_value(json_object_get(e,
		    "name"));

		xasprintf(&dir, "%s/backups/%s/%s", bk_root(lc), lc->name,
		    name);
		xasprintf(&mk, "%s/%s", dir, BACKUP_S3_PENDING);
		if (access(mk, F_OK) != 0 || pipe2(fds, O_CLOEXEC) != 0) {
			free(mk);
			free(dir);
			continue;
		}
		if ((bk->up_pid = fork()) == 0) {
			child_die_with_parent(parent);
			close(fds[0]);
			if ((got = backup_s3_upload(&lc->ctx->conf->s3, cr,
			    dir, name, &cause)) != 0) {
				dprintf(fds[1], "%s", cause ? cause : "error");
				_exit(got == -EKEYEXPIRED ?
				    BACKUP_S3_EXIT_EXPIRED : 1);
			}
			(void)unlink(mk);
			_exit(0);
		}
		close(fds[1]);
		free(mk);
		free(dir);
		if (bk->up_pid < 0) {
			bk->up_pid = 0;
			close(fds[0]);
			break;
		}
		bk->up_fd = fds[0];
		bk->up_snap = xstrdup(name);
		log_cluster(LOG_LEVEL_INFO, lc->name, "uploading snapshot %s "
		    "to S3 (credentials from %s)", name, cr->source);
		break;
	}
	json_decref(l);
}

/* Delete automatic snapshots older than the retention limit. */
static void
bk_retain(struct lcluster *lc)
{
	struct lbk	*bk = lc->bk;
	json_t		*l, *e;
	int64_t		 cut, t;
	char		*cause = NULL;
	size_t		 i;

	if (!bk->have_spec || bk->retention_days <= 0)
		return;
	cut = clock_wall_s() - (int64_t)bk->retention_days * 86400;
	if (bk->oldest_auto == 0 || bk->oldest_auto >= cut)
		return;		/* none old enough, as of the last scan */
	l = backup_list(bk_root(lc), lc->name);
	json_array_foreach(l, i, e) {
		const char *name = json_string_value(json_object_get(e,
		    "name"));

		if (strcmp(json_string_value(json_object_get(e, "type")),
		    "automatic") != 0)
			continue;
		t = json_integer_value(json_object_get(e,
		    "created_at_unix"));
		if (t >= cut)
			continue;
		if (lc->ctx->conf->s3.bucket != NULL && !bk_s3_forget(lc,
		    name))
			continue;	/* the S3 copy first; next scan */
		if (backup_delete(bk_root(lc), name, &cause) != 0) {
			log_cluster(LOG_LEVEL_WARNING, lc->name, "retention: "
			    "%s", cause);
			free(cause);
			cause = NULL;
		} else
			log_cluster(LOG_LEVEL_INFO, lc->name, "retention: "
			    "deleted automatic snapshot %s (older than %d "
			    "days)", name, bk->retention_days);
	}
	json_decref(l);
	bk_scan(lc, true);
}

static void
job_done(struct lcluster *lc, int error, const char *why)
{
	struct lbk	*bk = lc->bk;
	struct bk_job	*j = bk->job;
	backend_op_cb	 cb = j->cb;
	void		*cbarg = j->cbarg;
	char		*msg;

	bk->job = NULL;
	evtimer_del(bk->ev);
	if (j->told_ms != 0 && lc->ctx->env->progress != NULL)
		lc->ctx->env->progress(lc->ctx->env->changed_arg, lc->name,
		    NULL);
	if (error == 0) {
		uint64_t now = clock_mono_ms();

		xasprintf(&msg, "snapshot %s complete (%zu shard%s, %.1fs: "
		    "BGSAVE %.3fs, copy %.3fs%s)", j->name, j->nparts,
		    j->nparts == 1 ? "" : "s", (double)(now - j->started_ms) /
		    1000, (double)(j->copy_ms - j->started_ms) / 1000,
		    (double)(now - j->copy_ms) / 1000, j->key_file ?
		    ", encrypted" : "");
		log_cluster(LOG_LEVEL_NOTICE, lc->name, "%s", msg);
		free(bk->last_error);
		bk->last_error = NULL;
		bk->retry_at = 0;
		if (lc->ctx->conf->s3.bucket != NULL) {
			char *mk;

			xasprintf(&mk, "%s/%s", j->final, BACKUP_S3_PENDING);
			if (file_write_atomic(mk, "", 0, 0600, 0) != 0)
				log_cluster(LOG_LEVEL_WARNING, lc->name,
				    "cannot write %s; snapshot %s will not go "
				    "to S3", mk, j->name);
			free(mk);
			bk->up_retry_at = 0;
		}
		bk_scan(lc, true);
		bk_retain(lc);
	} else {
		xasprintf(&msg, "snapshot %s failed: %s", j->name, why);
		bk_set_error(lc, msg);
		if (strcmp(j->type, "automatic") == 0)
			bk->retry_at = clock_wall_s() + BK_RETRY_S;
	}
	job_free(j);
	if (cb != NULL)
		lbk_answer(lc, cb, cbarg, error, msg);
	else
		free(msg);
	lcluster_changed(lc);
}

static int
bk_start(struct lcluster *lc, const char *name, const char *type,
    backend_op_cb cb, void *cbarg, char **cause)
{
	struct timeval	 tv = { 0, 0 };
	struct bk_job	*j;
	const char	*why;
	char		*dir;

	if ((why = bk_busy(lc)) != NULL) {
		xasprintf(cause, "cannot take snapshot %s now: %s", name, why);
		return -EBUSY;
	}
	if ((dir = backup_find(bk_root(lc), name)) != NULL) {
		free(dir);
		xasprintf(cause, "a snapshot named %s already exists", name);
		return -EEXIST;
	}
	if (lc->bk->encrypt && lc->ctx->conf->backup_key_file == NULL) {
		xasprintf(cause, "snapshot %s: enable_at_rest_encryption needs "
		    "backup_key_file in the daemon configuration", name);
		return -EINVAL;
	}
	if ((j = job_new(lc, name, type, cause)) == NULL)
		return -EAGAIN;
	if (lc->bk->encrypt)
		j->key_file = lc->ctx->conf->backup_key_file;
	j->cb = cb;
	j->cbarg = cbarg;
	lc->bk->job = j;
	log_cluster(LOG_LEVEL_NOTICE, lc->name, "snapshot %s (%s) started",
	    name, type);
	evtimer_add(lc->bk->ev, &tv);
	return 0;
}

void
lbk_manual(struct lcluster *lc, const char *name, backend_op_cb cb,
    void *cbarg)
{
	char		 stamp[32], *gen = NULL, *cause = NULL;
	time_t		 now = (time_t)clock_wall_s();
	struct tm	 tm;
	int		 r;

	if (name == NULL) {
		gmtime_r(&now, &tm);
		strftime(stamp, sizeof stamp, "%Y%m%d%H%M%S", &tm);
		xasprintf(&gen, "%s-manual-%s", lc->name, stamp);
		name = gen;
	}
	if ((r = bk_start(lc, name, "manual", cb, cbarg, &cause)) != 0)
		lbk_answer(lc, cb, cbarg, r, cause);
	free(gen);
}

int
lbk_final(struct lcluster *lc, backend_op_cb cb, void *arg, char **cause)
{
	char		 stamp[32], *name;
	time_t		 now = (time_t)clock_wall_s();
	struct tm	 tm;
	int		 r;

	gmtime_r(&now, &tm);
	strftime(stamp, sizeof stamp, "%Y%m%d%H%M%S", &tm);
	xasprintf(&name, "%s-final-%s", lc->name, stamp);
	r = bk_start(lc, name, "final", cb, arg, cause);
	free(name);
	return r;
}

/*
 * A due automatic snapshot waits for the cluster (a reshard, a failover,
 * a node down, the maintenance window): said once at info level and in
 * the status, until it is taken or its window closes.
 */
static void
bk_postpone(struct lcluster *lc, int64_t now, const char *why)
{
	struct lbk	*bk = lc->bk;
	char		 end[40];

	if (bk->postponed != NULL && strcmp(bk->postponed, why) == 0)
		return;
	if (bk->postponed == NULL) {
		bk->postponed_since = now;
		bk->postponed_window = window_last_start(&bk->win, now);
	}
	format_rfc3339(bk->postponed_window + (int64_t)bk->win.len * 60, end,
	    sizeof end);
	log_cluster(LOG_LEVEL_INFO, lc->name, "automatic snapshot postponed: "
	    "%s; it is taken as soon as that ends, until the window closes at "
	    "%s", why, end);
	free(bk->postponed);
	bk->postponed = xstrdup(why);
	lcluster_changed(lc);
}

/* The snapshot is being taken, or its window closed without it. */
static void
bk_postpone_end(struct lcluster *lc, int64_t now)
{
	struct lbk	*bk = lc->bk;
	char		*m;

	if (bk->postponed == NULL)
		return;
	if (now >= bk->postponed_window + (int64_t)bk->win.len * 60 &&
	    bk->last_auto < bk->postponed_window) {
		xasprintf(&m, "automatic snapshot missed: %s until its window "
		    "closed", bk->postponed);
		bk_set_error(lc, m);
		free(m);
	}
	free(bk->postponed);
	bk->postponed = NULL;
	lcluster_changed(lc);
}

/* From the monitor's tick: is an automatic snapshot due? */
void
lbk_tick(struct lcluster *lc)
{
	struct lbk	*bk = lc->bk;
	char		 stamp[32], *name, *cause = NULL;
	const char	*why;
	int64_t		 now = clock_wall_s(), due;
	time_t		 tt = (time_t)now;
	struct tm	 tm;

	lrs_tick(lc);
	if (bk != NULL)
		bk_s3_tick(lc);
	if (bk == NULL || !bk->have_spec || bk->job != NULL)
		return;
	if (clock_mono_ms() - bk->scan_ms >= BK_SCAN_MS) {
		bk_scan(lc, false);
		bk_retain(lc);
	}
	if ((due = bk_next_due(lc, now)) == 0 || due > now) {
		bk_postpone_end(lc, now);
		return;
	}
	if ((why = window_contains(&bk->mwin, now) ? "the maintenance window "
	    "is open" : bk_busy(lc)) != NULL) {
		bk_postpone(lc, now, why);
		return;		/* later in the same window */
	}
	bk_postpone_end(lc, now);
	gmtime_r(&tt, &tm);
	strftime(stamp, sizeof stamp, "%Y%m%d%H%M", &tm);
	xasprintf(&name, "%s-auto-%s", lc->name, stamp);
	if (bk_start(lc, name, "automatic", NULL, NULL, &cause) != 0) {
		bk_set_error(lc, cause);
		bk->retry_at = now + BK_RETRY_S;
		free(cause);
	}
	free(name);
}
