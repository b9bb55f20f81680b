/*
 * Restoring a new cluster from a snapshot (spec.restore_from, read at
 * creation only). Once the new cluster is created, a child process checks
 * every file of the snapshot against its manifest's SHA-256 (a corrupt or
 * tampered snapshot is refused before a single key is written), then, per
 * shard, starts a temporary redis-server on the RDB (unix socket only, no
 * TCP port, no persistence), SCANs it and moves each key with DUMP, PTTL
 * and RESTORE ... REPLACE to the node that owns its slot in the new
 * cluster. That serves every layout alike: the same shard count,
 * another, cluster mode on or off; TTLs are kept (absolute, as PTTL was
 * read). The child blocks as it likes; the loop only polls waitpid.
 *
 * The same layout (cluster mode as the snapshot's, as many shards, the
 * same slot ranges; not with AOF persistence) goes faster: at creation,
 * before any node starts, a child checks the files the same way, then
 * puts each shard's RDB in its new primary's directory as dump.rdb; the
 * nodes start once it is done, each primary loading its RDB as Redis
 * does at start, its replicas syncing from it. No key is copied.
 *
 * A snapshot that is only in S3 is fetched first, before any node
 * starts, then takes the path its layout allows.
 *
 * Not done: the same-layout path for a restore interrupted by a daemon
 * restart before its nodes started (they then start empty, and the keys
 * are loaded).
 */
#include "config.h"

#include <sys/stat.h>
#include <sys/wait.h>

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <hiredis/hiredis.h>
#include <jansson.h>

#include "backup.h"
#include "local.h"
#include "log.h"
#include "node.h"
#include "util.h"

#define RS_POLL_MS		100
#define RS_BATCH		200	/* keys per pipelined round */
#define RS_START_TIMEOUT_S	120	/* the temporary server's load */

struct rs_target {
	int		 port;
	char		*sock;
};

struct rs_ctx {				/* what the child needs */
	char		*snapdir;
	json_t		*manifest;
	const char	*user;		/* the daemon's own: RESTORE is admin */
	const char	*password;
	const char	*redis_server;
	char		*workdir;
	bool		 cluster;
	struct rs_target *t;
	size_t		 nt;
	const char	*key_file;	/* encrypted snapshots */
	/* Child state. */
	redisContext	**conns;	/* per target, lazily */
	int		 owner[LCL_SLOTS];	/* target index */
};

/* CRC16 (XMODEM), as Redis Cluster hashes keys. */
static unsigned int
crc16(const char *buf, size_t len)
{
	unsigned int	 crc = 0;
	size_t		 i;
	int		 b;

	for (i = 0; i < len; i++) {
		crc ^= (unsigned int)(unsigned char)buf[i] << 8;
		for (b = 0; b < 8; b++)
			crc = crc & 0x8000 ? (crc << 1) ^ 0x1021 : crc << 1;
		crc &= 0xffff;
	}
	return crc;
}

static int
key_slot(const char *k, size_t len)
{
	size_t	 s, e;

	for (s = 0; s < len && k[s] != '{'; s++)
		;
	if (s < len) {
		for (e = s + 1; e < len && k[e] != '}'; e++)
			;
		if (e < len && e > s + 1)
			return (int)(crc16(k + s + 1, e - s - 1) & 16383);
	}
	return (int)(crc16(k, len) & 16383);
}

static void __attribute__((noreturn, format(printf, 2, 3)))
child_fail(int fd, const char *fmt, ...)
{
	va_list	 ap;

	va_start(ap, fmt);
	vdprintf(fd, fmt, ap);
	va_end(ap);
	_exit(1);
}

static redisContext *
child_connect(int fd, const char *sock, const char *user,
    const char *password)
{
	struct timeval	 tv = { 30, 0 };
	redisContext	*c = redisConnectUnixWithTimeout(sock, tv);
	redisReply	*r;

	if (c == NULL || c->err)
		child_fail(fd, "cannot connect to %s: %s", sock, c ? c->errstr :
		    "out of memory");
	redisSetTimeout(c, tv);
	if (password != NULL) {
		r = user != NULL ? redisCommand(c, "AUTH %s %s", user,
		    password) : redisCommand(c, "AUTH %s", password);
		if (r == NULL || r->type == REDIS_REPLY_ERROR)
			child_fail(fd, "AUTH%s%s refused by %s", user ? " as " :
			    "", user ? user : "", sock);
		freeReplyObject(r);
	}
	return c;
}

/* Which target owns each slot (cluster mode), from CLUSTER SLOTS. */
static void
child_slots(struct rs_ctx *x, int fd)
{
	redisContext	*c;
	redisReply	*r, *e;
	size_t		 i, k;
	int		 s;

	for (s = 0; s < LCL_SLOTS; s++)
		x->owner[s] = 0;
	if (!x->cluster)
		return;
	c = child_connect(fd, x->t[0].sock, x->user, x->password);
	r = redisCommand(c, "CLUSTER SLOTS");
	if (r == NULL || r->type != REDIS_REPLY_ARRAY)
		child_fail(fd, "CLUSTER SLOTS failed");
	for (i = 0; i < r->elements; i++) {
		e = r->element[i];
		if (e->elements < 3 || e->element[2]->elements < 2)
			continue;
		int port = (int)e->element[2]->element[1]->integer;
		for (k = 0; k < x->nt; k++)
			if (x->t[k].port == port)
				break;
		if (k == x->nt)
			child_fail(fd, "CLUSTER SLOTS names port %d, not a "
			    "node of the cluster", port);
		for (s = (int)e->element[0]->integer;
		    s <= (int)e->element[1]->integer && s < LCL_SLOTS; s++)
			x->owner[s] = (int)k;
	}
	freeReplyObject(r);
	redisFree(c);
}

static redisContext *
target_conn(struct rs_ctx *x, int fd, int i)
{
	if (x->conns[i] == NULL)
		x->conns[i] = child_connect(fd, x->t[i].sock, x->user,
		    x->password);
	return x->conns[i];
}

/* Start redis-server on rdb with only a unix socket; its pid. */
static pid_t
child_temp_server(struct rs_ctx *x, int fd, const char *dir,
    const char *rdb, char **sock)
{
	pid_t		 pid, parent;
	char		*conf, *txt;
	int		 e;

	xasprintf(sock, "%s/tmp.sock", dir);
	xasprintf(&conf, "%s/redis.conf", dir);
	xasprintf(&txt, "port 0\nunixsocket %s\nunixsocketperm 700\n"
	    "dir %s\ndbfilename %s\nsave \"\"\nappendonly no\n"
	    "daemonize no\nlogfile %s/redis.log\nprotected-mode yes\n",
	    *sock, dir, rdb, dir);
	if ((e = file_write_atomic(conf, txt, strlen(txt), 0600, 0)) != 0)
		child_fail(fd, "writing %s: %s", conf, strerror(-e));
	free(txt);
	parent = getpid();
	if ((pid = fork()) == 0) {
		int null = open("/dev/null", O_RDWR);

		/* Never outlive the restore, whatever ends it. */
		child_die_with_parent(parent);
		dup2(null, 0);
		dup2(null, 1);
		dup2(null, 2);
		execl(x->redis_server, x->redis_server, conf, (char *)NULL);
		_exit(127);
	}
	free(conf);
	if (pid < 0)
		child_fail(fd, "fork: %s", strerror(errno));
	return pid;
}

static redisContext *
child_wait_server(int fd, const char *sock, pid_t pid)
{
	struct timeval	 tv = { 2, 0 };
	time_t		 until = time(NULL) + RS_START_TIMEOUT_S;
	redisContext	*c;
	redisReply	*r;

	while (time(NULL) < until) {
		if (waitpid(pid, NULL, WNOHANG) == pid)
			child_fail(fd, "the temporary redis-server refused "
			    "the snapshot's RDB (see its redis.log)");
		c = redisConnectUnixWithTimeout(sock, tv);
		if (c != NULL && !c->err) {
			redisSetTimeout(c, (struct timeval){ 60, 0 });
			r = redisCommand(c, "PING");
			if (r != NULL && r->type == REDIS_REPLY_STATUS) {
				freeReplyObject(r);
				return c;
			}
			if (r != NULL)
				freeReplyObject(r);
		}
		if (c != NULL)
			redisFree(c);
		usleep(50000);
	}
	child_fail(fd, "the temporary redis-server did not load the RDB in "
	    "%ds", RS_START_TIMEOUT_S);
}

/* Move one batch of keys: DUMP + PTTL from src, RESTORE to the owners. */
static long long
child_batch(struct rs_ctx *x, int fd, redisContext *src, redisReply *keys)
{
	redisReply	*d, *t, *r;
	size_t		 i, n = keys->elements;
	long long	 moved = 0;
	int		*sent = xcalloc(n + 1, sizeof *sent);
	size_t		 k;

	for (i = 0; i < n; i++) {
		redisAppendCommand(src, "DUMP %b", keys->element[i]->str,
		    keys->element[i]->len);
		redisAppendCommand(src, "PTTL %b", keys->element[i]->str,
		    keys->element[i]->len);
	}
	for (i = 0; i < n; i++) {
		redisReply *ki = keys->element[i];
		if (redisGetReply(src, (void **)&d) != REDIS_OK ||
		    redisGetReply(src, (void **)&t) != REDIS_OK)
			child_fail(fd, "reading the snapshot: %s", src->errstr);
		sent[i] = -1;
		if (d->type == REDIS_REPLY_STRING && t->type ==
		    REDIS_REPLY_INTEGER && t->integer != -2) {
			int o = x->owner[key_slot(ki->str, ki->len)];
			char ttl[32];

			snprintf(ttl, sizeof ttl, "%lld", t->integer < 0 ? 0 :
			    t->integer);
			redisAppendCommand(target_conn(x, fd, o),
			    "RESTORE %b %s %b REPLACE", ki->str, ki->len, ttl,
			    d->str, d->len);
			sent[i] = o;
		}
		freeReplyObject(d);
		freeReplyObject(t);
	}
	for (i = 0; i < n; i++) {
		if (sent[i] < 0)
			continue;
		k = (size_t)sent[i];
		if (redisGetReply(x->conns[k], (void **)&r) != REDIS_OK)
			child_fail(fd, "restoring: %s", x->conns[k]->errstr);
		if (r->type == REDIS_REPLY_ERROR)
			child_fail(fd, "RESTORE of a key refused: %s", r->str);
		freeReplyObject(r);
		moved++;
	}
	free(sent);
	return moved;
}

static long long
child_shard(struct rs_ctx *x, int fd, const char *rdb_path, int idx)
{
	char		*dir, *sock, *link, cursor[32] = "0";
	redisContext	*src;
	redisReply	*r;
	pid_t		 pid;
	long long	 moved = 0;

	xasprintf(&dir, "%s/shard%d", x->workdir, idx);
	if (mkdir_p(dir, 0700) != 0)
		child_fail(fd, "cannot create %s", dir);
	xasprintf(&link, "%s/snapshot.rdb", dir);
	(void)unlink(link);
	if (symlink(rdb_path, link) != 0)
		child_fail(fd, "symlink %s: %s", link, strerror(errno));
	pid = child_temp_server(x, fd, dir, "snapshot.rdb", &sock);
	src = child_wait_server(fd, sock, pid);
	do {
		r = redisCommand(src, "SCAN %s COUNT %d", cursor, RS_BATCH);
		if (r == NULL || r->type != REDIS_REPLY_ARRAY ||
		    r->elements != 2) {
			kill(pid, SIGKILL);
			child_fail(fd, "SCAN of the snapshot failed");
		}
		snprintf(cursor, sizeof cursor, "%s", r->element[0]->str);
		moved += child_batch(x, fd, src, r->element[1]);
		freeReplyObject(r);
	} while (strcmp(cursor, "0") != 0);
	redisFree(src);
	kill(pid, SIGKILL);
	(void)waitpid(pid, NULL, 0);
	free(sock);
	free(link);
	free(dir);
	return moved;
}

/*
 * The child: every file of the snapshot against its manifest first, so
 * nothing is written from a bad snapshot; then the plaintext of each
 * (decrypted into the workdir when the snapshot is encrypted). Returns
 * the files' paths, in the manifest's order; fails the child otherwise.
 */
static char **
child_verify(struct rs_ctx *x, int fd)
{
	json_t		*sh;
	size_t		 i;
	char		*path, **files;
	int		 e;

	files = xcalloc(json_array_size(json_object_get(x->manifest,
	    "shards")) + 1, sizeof *files);
	json_array_foreach(json_object_get(x->manifest, "shards"), i, sh) {
		const char *f = json_string_value(json_object_get(sh, "file"));

		if (f == NULL || strchr(f, '/') != NULL)
			child_fail(fd, "snapshot manifest names a bad file");
		xasprintf(&path, "%s/%s", x->snapdir, f);
		e = backup_verify_file(path, json_string_value(
		    json_object_get(sh, "sha256")), json_integer_value(
		    json_object_get(sh, "size")));
		if (e != 0)
			child_fail(fd, "snapshot %s is corrupt or was tampered "
			    "with: %s %s; nothing was restored",
			    json_string_value(json_object_get(x->manifest,
			    "name")), f, e == -EBADMSG ? "does not match its "
			    "SHA-256 in the manifest" : strerror(-e));
		files[i] = path;
	}
	if (backup_decrypt_all(x->manifest, files, x->workdir, x->key_file,
	    fd) != 0)
		_exit(1);
	return files;
}

/* The child: verify, then load every shard's keys. Never returns. */
static void
restore_child(struct rs_ctx *x, int fd)
{
	json_t		*sh;
	size_t		 i;
	long long	 moved = 0;
	char		**files;

	files = child_verify(x, fd);
	x->conns = xcalloc(x->nt, sizeof *x->conns);
	child_slots(x, fd);
	json_array_foreach(json_object_get(x->manifest, "shards"), i, sh)
		moved += child_shard(x, fd, files[i], (int)i);
	dprintf(fd, "%lld keys", moved);
	_exit(0);
}

/*
 * The child of the same-layout path: verify, then put each shard's RDB
 * in its new primary's directory as dump.rdb, before any node of the
 * cluster has started. A verified plain RDB is hard-linked, not copied:
 * Redis never writes dump.rdb in place (it saves to a temporary file and
 * renames it over), so the snapshot's file cannot change under it, and a
 * large dataset costs no copy. Never returns.
 */
static void
place_child(struct rs_ctx *x, char **dirs, int fd)
{
	char		**files, *dst, *tmp, hex[65];
	const char	*scheme = json_string_value(json_object_get(
			    json_object_get(x->manifest, "encryption"),
			    "scheme"));
	bool		 plain = scheme == NULL ||
			    strcmp(scheme, "none") == 0;
	long long	 size;
	size_t		 i, n;
	int		 e, dfd;

	files = child_verify(x, fd);
	n = json_array_size(json_object_get(x->manifest, "shards"));
	for (i = 0; i < n; i++) {
		if ((e = mkdir_p(dirs[i], 0700)) != 0)
			child_fail(fd, "cannot create %s: %s", dirs[i],
			    strerror(-e));
		xasprintf(&dst, "%s/dump.rdb", dirs[i]);
		xasprintf(&tmp, "%s/dump.rdb.restore", dirs[i]);
		(void)unlink(tmp);
		if (!plain)	/* the workdir's plaintext: ours to move */
			e = rename(files[i], tmp) == 0 ? 0 : -errno;
		else if (link(files[i], tmp) == 0)
			e = 0;
		else		/* another file system, say */
			e = backup_copy_file(files[i], tmp, NULL, &size, hex);
		if (e != 0 || rename(tmp, dst) != 0)
			child_fail(fd, "placing %s as %s: %s", files[i], dst,
			    strerror(e ? -e : errno));
		if ((dfd = open(dirs[i], O_RDONLY | O_DIRECTORY)) >= 0) {
			(void)fsync(dfd);
			close(dfd);
		}
		free(dst);
		free(tmp);
	}
	dprintf(fd, "%zu", n);
	_exit(0);
}

static void	rs_poll(evutil_socket_t, short, void *);

static void
rs_ctx_free(struct rs_ctx *x)
{
	size_t	 i;

	for (i = 0; i < x->nt; i++)
		free(x->t[i].sock);
	free(x->t);
	free(x->snapdir);
	free(x->workdir);
	json_decref(x->manifest);
	free(x);
}

/*
 * Whether manifest m describes the layout of the cluster spec s creates:
 * the same cluster mode, as many shards, and (cluster mode) each shard's
 * slots the one range the new cluster's even spread gives the shard of
 * the same rank (local_cluster_repair.c's act_assign), so each new
 * primary owns exactly the keys of its RDB. Not with AOF persistence:
 * a node with appendonly yes starts from its (empty) AOF, not the RDB.
 */
static bool
rs_same_layout(bool cluster_mode, int n, enum persistence persistence,
    json_t *m)
{
	json_t	*shards = json_object_get(m, "shards"), *sh, *sl;
	int	 start = 0, count;
	size_t	 i;

	if (persistence == PERSIST_AOF ||
	    json_is_true(json_object_get(m, "cluster_mode")) != cluster_mode ||
	    (int)json_array_size(shards) != n)
		return false;
	if (!cluster_mode)
		return true;
	json_array_foreach(shards, i, sh) {
		count = LCL_SLOTS / n + ((int)i < LCL_SLOTS % n ? 1 : 0);
		sl = json_object_get(sh, "slots");
		if (json_array_size(sl) != 1 ||
		    json_integer_value(json_array_get(json_array_get(sl, 0),
		    0)) != start ||
		    json_integer_value(json_array_get(json_array_get(sl, 0),
		    1)) != start + count - 1)
			return false;
		start += count;
	}
	return true;
}

/* Whether the snapshot, here, has that layout. */
static bool
rs_local_same(struct lcluster *lc, bool cluster_mode, int n,
    enum persistence persistence)
{
	char	*dir, *path;
	json_t	*m;
	bool	 same;

	if ((dir = backup_find(lc->ctx->conf->state_dir,
	    lc->restore_from)) == NULL)
		return false;
	xasprintf(&path, "%s/manifest.json", dir);
	m = json_load_file(path, 0, NULL);
	free(path);
	free(dir);
	same = m != NULL && rs_same_layout(cluster_mode, n, persistence, m);
	json_decref(m);
	return same;
}

bool
lrs_same_layout(struct lcluster *lc, const struct cluster_spec *s)
{
	char	*dir;

	lc->restore_placing = lc->restore_prefetch = false;
	if (lc->restore_from == NULL)
		return false;
	if ((dir = backup_find(lc->ctx->conf->state_dir,
	    lc->restore_from)) == NULL) {
		/* In S3 only: fetched first, then looked at. */
		if (lc->ctx->conf->s3.bucket == NULL ||
		    s->local.persistence == PERSIST_AOF)
			return false;
		lc->restore_placing = lc->restore_prefetch = true;
		return true;
	}
	free(dir);
	lc->restore_placing = rs_local_same(lc, s->cluster_mode,
	    s->cluster_mode ? s->num_node_groups : 1, s->local.persistence);
	return lc->restore_placing;
}

/* The primary of the new cluster's shard of rank i. */
static struct lnode *
rs_primary(struct lcluster *lc, size_t i)
{
	if (!lc->cluster_mode)
		return i == 0 ? lcluster_primary(lc) : NULL;
	return i < lc->nshards ? lcluster_node(lc, lc->shards[i]->primary) :
	    NULL;
}

/* Every node of the cluster, which waited for its primaries' RDBs. */
static void
rs_start_nodes(struct lcluster *lc)
{
	char	*cause = NULL;
	size_t	 i;

	for (i = 0; i < lc->nnodes; i++)
		if (lnode_start(lc, lc->nodes[i], &cause) != 0) {
			log_cluster(LOG_LEVEL_WARNING, lc->name, "cannot start "
			    "node %s: %s", lc->nodes[i]->id, cause);
			free(cause);
			cause = NULL;
		}
	lmon_start(lc);
}

static int
place_start(struct lcluster *lc, char **cause)
{
	struct rs_ctx	*x = xcalloc(1, sizeof *x);
	struct timeval	 tv = { 0, RS_POLL_MS * 1000 };
	struct lnode	*p;
	char		*path, **dirs = NULL;
	size_t		 i, n;
	int		 fds[2], r = 0;
	pid_t		 parent;

	if (lc->restore_prefetch) {
		/* rs_poll fetches it, then places it or starts the nodes. */
		rs_ctx_free(x);
		if (lc->restore_ev == NULL)
			lc->restore_ev = evtimer_new(lc->ctx->base, rs_poll,
			    lc);
		tv.tv_usec = 0;
		evtimer_add(lc->restore_ev, &tv);
		return 0;
	}
	x->snapdir = backup_find(lc->ctx->conf->state_dir, lc->restore_from);
	if (x->snapdir != NULL) {
		xasprintf(&path, "%s/manifest.json", x->snapdir);
		x->manifest = json_load_file(path, 0, NULL);
		free(path);
	}
	if (x->manifest == NULL) {
		xasprintf(cause, "snapshot %s: gone, or an unreadable manifest",
		    lc->restore_from);
		r = -ENOENT;
		goto out;
	}
	x->key_file = lc->ctx->conf->backup_key_file;
	xasprintf(&x->workdir, "%s/.restore", lc->dir);
	(void)node_remove_dir(x->workdir);
	n = json_array_size(json_object_get(x->manifest, "shards"));
	dirs = xcalloc(n + 1, sizeof *dirs);
	for (i = 0; i < n; i++) {
		if ((p = rs_primary(lc, i)) == NULL) {
			xasprintf(cause, "no primary for shard %zu", i + 1);
			r = -EINVAL;
			goto out;
		}
		dirs[i] = p->dir;
	}
	if (mkdir_p(x->workdir, 0700) != 0 || pipe2(fds, O_CLOEXEC) != 0) {
		xasprintf(cause, "cannot create %s", x->workdir);
		r = -EIO;
		goto out;
	}
	log_cluster(LOG_LEVEL_NOTICE, lc->name, "restoring from snapshot %s "
	    "(checksums first): same layout, each shard's primary starts "
	    "from its RDB", lc->restore_from);
	parent = getpid();
	if ((lc->restore_pid = fork()) == 0) {
		/* Dies with the daemon, as the key-loading restore does. */
		child_die_with_parent(parent);
		close(fds[0]);
		place_child(x, dirs, fds[1]);
	}
	close(fds[1]);
	if (lc->restore_pid < 0) {
		lc->restore_pid = 0;
		close(fds[0]);
		xasprintf(cause, "fork: %s", strerror(errno));
		r = -EAGAIN;
		goto out;
	}
	lc->restore_fd = fds[0];
	if (lc->restore_ev == NULL)
		lc->restore_ev = evtimer_new(lc->ctx->base, rs_poll, lc);
	evtimer_add(lc->restore_ev, &tv);
out:
	free(dirs);
	rs_ctx_free(x);
	if (r != 0)
		lc->restore_placing = false;
	return r;
}

bool
lrs_place_start(struct lcluster *lc)
{
	char	*cause = NULL;

	if (place_start(lc, &cause) == 0)
		return true;
	log_cluster(LOG_LEVEL_WARNING, lc->name, "%s; loading the snapshot's "
	    "keys instead", cause);
	free(cause);
	return false;
}

/* The placing child ended: start the nodes, from their RDBs or empty. */
static void
rs_placed(struct lcluster *lc, bool ok, const char *why)
{
	char	*w;

	lc->restore_placing = false;
	xasprintf(&w, "%s/.restore", lc->dir);
	(void)node_remove_dir(w);
	free(w);
	lc->restore_prefetch = false;
	if (ok)
		lc->restore_placed = true;
	else if (lc->restore_error == NULL) {
		xasprintf(&lc->restore_error, "restore from snapshot %s "
		    "failed: %s", lc->restore_from, why);
		log_cluster(LOG_LEVEL_ERROR, lc->name, "%s", lc->restore_error);
	}
	rs_start_nodes(lc);
	lcluster_changed(lc);
}

/* The cluster is up on the RDBs it started from: the restore is done. */
static void
rs_placed_done(struct lcluster *lc)
{
	char	*cause = NULL;

	log_cluster(LOG_LEVEL_NOTICE, lc->name, "restored from snapshot %s "
	    "(same layout: %zu shard%s started from the snapshot's RDB)",
	    lc->restore_from, lc->cluster_mode ? lc->nshards : (size_t)1,
	    lc->cluster_mode && lc->nshards != 1 ? "s" : "");
	lc->restore_placed = false;
	free(lc->restore_from);
	lc->restore_from = NULL;
	if (lstate_save(lc, &cause) != 0) {
		log_cluster(LOG_LEVEL_WARNING, lc->name, "%s", cause);
		free(cause);
	}
	lcluster_changed(lc);
}

/*
 * The snapshot came from S3 before any node started: its layout decides
 * now whether the primaries start from its RDBs or the keys are loaded.
 */
static void
rs_prefetched(struct lcluster *lc, bool ok, const char *why)
{
	lc->restore_fetching = lc->restore_prefetch = false;
	lc->restore_fetched = true;
	if (!ok) {
		rs_placed(lc, false, why);
		return;
	}
	log_cluster(LOG_LEVEL_NOTICE, lc->name, "fetched snapshot %s from S3",
	    lc->restore_from);
	if (rs_local_same(lc, lc->cluster_mode, lc->cluster_mode ?
	    (int)lc->nshards : 1, lc->persistence) && lrs_place_start(lc))
		return;
	lc->restore_placing = false;
	rs_start_nodes(lc);
	lcluster_changed(lc);
}

/*
 * Fetch the snapshot from S3 in a child (rs_poll sees it end). 1: it
 * runs; 0: the credentials are being fetched, try again later; -1: the
 * restore failed (lc->restore_error says why) or the child could not
 * start.
 */
static int
rs_fetch_start(struct lcluster *lc)
{
	struct timeval	 tv = { 0, RS_POLL_MS * 1000 };
	const struct aws_creds *cr;
	const char	*no;
	int		 got, fds[2];
	pid_t		 parent;

	if ((got = local_s3_creds(lc->ctx, &cr, &no)) == 0)
		return 0;
	if (got < 0) {
		xasprintf(&lc->restore_error, "restore from snapshot %s "
		    "failed: fetching it from S3: %s", lc->restore_from, no);
		log_cluster(LOG_LEVEL_ERROR, lc->name, "%s", lc->restore_error);
		lcluster_changed(lc);
		return -1;
	}
	if (pipe2(fds, O_CLOEXEC) != 0)
		return -1;
	log_cluster(LOG_LEVEL_NOTICE, lc->name, "fetching snapshot %s from S3",
	    lc->restore_from);
	parent = getpid();
	if ((lc->restore_pid = fork()) == 0) {
		char *cause = NULL;

		child_die_with_parent(parent);
		close(fds[0]);
		if (backup_s3_fetch(&lc->ctx->conf->s3, cr,
		    lc->ctx->conf->state_dir, lc->restore_from, &cause) != 0) {
			dprintf(fds[1], "fetching it from S3: %s", cause ?
			    cause : "error");
			_exit(1);
		}
		_exit(0);
	}
	close(fds[1]);
	if (lc->restore_pid < 0) {
		lc->restore_pid = 0;
		close(fds[0]);
		return -1;
	}
	lc->restore_fetching = true;
	lc->restore_fd = fds[0];
	if (lc->restore_ev == NULL)
		lc->restore_ev = evtimer_new(lc->ctx->base, rs_poll, lc);
	evtimer_add(lc->restore_ev, &tv);
	return 1;
}

/* Start the restore child when the new cluster is ready for it. */
void
lrs_tick(struct lcluster *lc)
{
	struct rs_ctx	*x;
	struct lnode	*p;
	char		*m, *path;
	int		 fds[2];
	size_t		 i;
	struct timeval	 tv = { 0, RS_POLL_MS * 1000 };
	pid_t		 parent;

	if (lc->restore_from == NULL || lc->restore_error != NULL ||
	    lc->restore_pid != 0 || !lc->created)
		return;
	if (lc->cluster_mode ? lcl_observed_state(lc) != OBS_AVAILABLE :
	    ((p = lcluster_primary(lc)) == NULL || !lnode_up(p)))
		return;
	if (lc->restore_placed) {
		rs_placed_done(lc);
		return;
	}
	x = xcalloc(1, sizeof *x);
	if ((x->snapdir = backup_find(lc->ctx->conf->state_dir,
	    lc->restore_from)) == NULL && lc->ctx->conf->s3.bucket != NULL &&
	    !lc->restore_fetched) {
		/* Not here: fetch it from S3 first, then come back. */
		free(x);
		(void)rs_fetch_start(lc);
		return;
	}
	if (x->snapdir == NULL) {
		xasprintf(&lc->restore_error, "no snapshot named %s",
		    lc->restore_from);
		goto fail;
	}
	xasprintf(&path, "%s/manifest.json", x->snapdir);
	x->manifest = json_load_file(path, 0, NULL);
	free(path);
	if (x->manifest == NULL) {
		xasprintf(&lc->restore_error, "snapshot %s: unreadable "
		    "manifest", lc->restore_from);
		goto fail;
	}
	x->user = LC_AUTH_USER(lc);
	x->password = LC_AUTH_PASS(lc);
	x->redis_server = lc->ctx->conf->local.redis_server;
	x->key_file = lc->ctx->conf->backup_key_file;
	x->cluster = lc->cluster_mode;
	xasprintf(&x->workdir, "%s/.restore", lc->dir);
	(void)node_remove_dir(x->workdir);
	if (mkdir_p(x->workdir, 0700) != 0) {
		xasprintf(&lc->restore_error, "cannot create %s", x->workdir);
		goto fail;
	}
	x->t = xcalloc(lc->nnodes + 1, sizeof *x->t);
	if (!lc->cluster_mode) {
		p = lcluster_primary(lc);
		x->t[0].port = p->port;
		x->t[0].sock = xstrdup(p->sock);
		x->nt = 1;
	} else {
		for (i = 0; i < lc->nnodes; i++) {
			x->t[x->nt].port = lc->nodes[i]->port;
			x->t[x->nt++].sock = xstrdup(lc->nodes[i]->sock);
		}
	}
	if (pipe2(fds, O_CLOEXEC) != 0) {
		xasprintf(&lc->restore_error, "pipe: %s", strerror(errno));
		goto fail;
	}
	log_cluster(LOG_LEVEL_NOTICE, lc->name, "restoring from snapshot %s "
	    "(checksums first)", lc->restore_from);
	/*
	 * The restore dies with the daemon (and its temporary redis-server
	 * with it): the next daemon restores again from the start, and two
	 * restores must never write to the new cluster at once.
	 */
	parent = getpid();
	if ((lc->restore_pid = fork()) == 0) {
		child_die_with_parent(parent);
		close(fds[0]);
		restore_child(x, fds[1]);
	}
	close(fds[1]);
	rs_ctx_free(x);
	if (lc->restore_pid < 0) {
		lc->restore_pid = 0;
		close(fds[0]);
		xasprintf(&lc->restore_error, "fork: %s", strerror(errno));
		goto failed;
	}
	lc->restore_fd = fds[0];
	if (lc->restore_ev == NULL)
		lc->restore_ev = evtimer_new(lc->ctx->base, rs_poll, lc);
	evtimer_add(lc->restore_ev, &tv);
	return;
fail:
	rs_ctx_free(x);
failed:
	xasprintf(&m, "restore from snapshot %s failed: %s",
	    lc->restore_from, lc->restore_error);
	free(lc->restore_error);
	lc->restore_error = m;
	log_cluster(LOG_LEVEL_ERROR, lc->name, "%s", m);
	lcluster_changed(lc);
}

static void
rs_poll(evutil_socket_t fd, short ev, void *arg)
{
	struct lcluster	*lc = arg;
	struct timeval	 tv = { 0, RS_POLL_MS * 1000 };
	char		 why[1024], *cause = NULL;
	ssize_t		 n;
	int		 status;
	pid_t		 r;

	if (lc->restore_prefetch && !lc->restore_fetching) {
		if ((r = rs_fetch_start(lc)) == 0)
			evtimer_add(lc->restore_ev, &tv); /* credentials */
		else if (r < 0)
			rs_placed(lc, false, "cannot start the fetch");
		return;
	}
	if ((r = waitpid(lc->restore_pid, &status, WNOHANG)) == 0) {
		evtimer_add(lc->restore_ev, &tv);
		return;
	}
	lc->restore_pid = 0;
	n = read(lc->restore_fd, why, sizeof why - 1);
	why[n > 0 ? n : 0] = '\0';
	close(lc->restore_fd);
	lc->restore_fd = -1;
	if (lc->restore_prefetch) {
		rs_prefetched(lc, r > 0 && WIFEXITED(status) &&
		    WEXITSTATUS(status) == 0, n > 0 ? why :
		    "the fetch process died");
		return;
	}
	if (lc->restore_placing) {
		rs_placed(lc, r > 0 && WIFEXITED(status) &&
		    WEXITSTATUS(status) == 0, n > 0 ? why :
		    "the restore process died");
		return;
	}
	if (lc->restore_fetching) {
		lc->restore_fetching = false;
		lc->restore_fetched = true;
		if (r > 0 && WIFEXITED(status) && WEXITSTATUS(status) == 0)
			log_cluster(LOG_LEVEL_NOTICE, lc->name, "fetched "
			    "snapshot %s from S3", lc->restore_from);
		else {
			xasprintf(&lc->restore_error, "restore from snapshot "
			    "%s failed: %s", lc->restore_from, n > 0 ? why :
			    "the fetch process died");
			log_cluster(LOG_LEVEL_ERROR, lc->name, "%s",
			    lc->restore_error);
		}
		lcluster_changed(lc);
		return;
	}
	if (r > 0 && WIFEXITED(status) && WEXITSTATUS(status) == 0) {
		log_cluster(LOG_LEVEL_NOTICE, lc->name, "restored from "
		    "snapshot %s (%s)", lc->restore_from, why);
		free(lc->restore_from);
		lc->restore_from = NULL;
		if (lstate_save(lc, &cause) != 0) {
			log_cluster(LOG_LEVEL_WARNING, lc->name, "%s", cause);
			free(cause);
		}
	} else {
		xasprintf(&lc->restore_error, "restore from snapshot %s "
		    "failed: %s", lc->restore_from, n > 0 ? why :
		    "the restore process died");
		log_cluster(LOG_LEVEL_ERROR, lc->name, "%s", lc->restore_error);
	}
	{
		char *w;
		xasprintf(&w, "%s/.restore", lc->dir);
		(void)node_remove_dir(w);
		free(w);
	}
	lcluster_changed(lc);
}

void
lrs_free(struct lcluster *lc)
{
	if (lc->restore_pid > 0) {
		kill(lc->restore_pid, SIGKILL);
		(void)waitpid(lc->restore_pid, NULL, 0);
		lc->restore_pid = 0;
	}
	if (lc->restore_fd > 0)
		close(lc->restore_fd);
	lc->restore_fd = -1;
	if (lc->restore_ev != NULL)
		event_free(lc->restore_ev);
	lc->restore_ev = NULL;
	free(lc->restore_from);
	free(lc->restore_error);
	lc->restore_from = lc->restore_error = NULL;
	lc->restore_placing = lc->restore_placed = false;
	lc->restore_prefetch = false;
}
