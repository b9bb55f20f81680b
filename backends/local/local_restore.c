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
 * Not done: starting each node of an unchanged layout directly from its
 * RDB (faster for big datasets).
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
child_connect(int fd, const char *sock, const char *password)
{
	struct timeval	 tv = { 30, 0 };
	redisContext	*c = redisConnectUnixWithTimeout(sock, tv);
	redisReply	*r;

	if (c == NULL || c->err)
		child_fail(fd, "cannot connect to %s: %s", sock, c ? c->errstr :
		    "out of memory");
	redisSetTimeout(c, tv);
	if (password != NULL) {
		r = redisCommand(c, "AUTH %s", password);
		if (r == NULL || r->type == REDIS_REPLY_ERROR)
			child_fail(fd, "AUTH refused by %s", sock);
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
	c = child_connect(fd, x->t[0].sock, x->password);
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
		x->conns[i] = child_connect(fd, x->t[i].sock, x->password);
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

/* The child: verify, then load every shard's keys. Never returns. */
static void
restore_child(struct rs_ctx *x, int fd)
{
	json_t		*sh;
	size_t		 i;
	long long	 moved = 0;
	char		*path, **files;
	int		 e;

	files = xcalloc(json_array_size(json_object_get(x->manifest,
	    "shards")) + 1, sizeof *files);
	/* Every file first: nothing is written from a bad snapshot. */
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
	x->conns = xcalloc(x->nt, sizeof *x->conns);
	child_slots(x, fd);
	json_array_foreach(json_object_get(x->manifest, "shards"), i, sh)
		moved += child_shard(x, fd, files[i], (int)i);
	dprintf(fd, "%lld keys", moved);
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
	x = xcalloc(1, sizeof *x);
	if ((x->snapdir = backup_find(lc->ctx->conf->state_dir,
	    lc->restore_from)) == NULL && lc->ctx->conf->s3.bucket != NULL &&
	    !lc->restore_fetched) {
		/* Not here: fetch it from S3 first, then come back. */
		free(x);
		if (pipe2(fds, O_CLOEXEC) != 0)
			return;
		log_cluster(LOG_LEVEL_NOTICE, lc->name, "fetching snapshot %s "
		    "from S3", lc->restore_from);
		parent = getpid();
		if ((lc->restore_pid = fork()) == 0) {
			char *cause = NULL;

			child_die_with_parent(parent);
			close(fds[0]);
			if (backup_s3_fetch(&lc->ctx->conf->s3,
			    lc->ctx->conf->state_dir, lc->restore_from,
			    &cause) != 0) {
				dprintf(fds[1], "fetching it from S3: %s",
				    cause ? cause : "error");
				_exit(1);
			}
			_exit(0);
		}
		close(fds[1]);
		if (lc->restore_pid < 0) {
			lc->restore_pid = 0;
			close(fds[0]);
			return;
		}
		lc->restore_fetching = true;
		lc->restore_fd = fds[0];
		if (lc->restore_ev == NULL)
			lc->restore_ev = evtimer_new(lc->ctx->base, rs_poll,
			    lc);
		evtimer_add(lc->restore_ev, &tv);
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
	x->password = lc->password;
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

	if ((r = waitpid(lc->restore_pid, &status, WNOHANG)) == 0) {
		evtimer_add(lc->restore_ev, &tv);
		return;
	}
	lc->restore_pid = 0;
	n = read(lc->restore_fd, why, sizeof why - 1);
	why[n > 0 ? n : 0] = '\0';
	close(lc->restore_fd);
	lc->restore_fd = -1;
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
}
