/*
 * Watching local nodes and keeping roles right. Every tick each node gets
 * a PING over its unix socket and a liveness check of its process; every
 * few ticks an INFO replication. From that:
 *  - a dead replica is restarted as a replica of the current primary;
 *  - a primary unreachable for failover_after is replaced by the replica
 *    with the highest replication offset (automatic failover on), or
 *    restarted in place when it died (automatic failover off);
 *  - a node whose role disagrees with ours is corrected, so an old primary
 *    that comes back becomes a replica before the endpoint could ever send
 *    it a write: the endpoint only ever forwards to our primary.
 */
#include "config.h"

#include <sys/socket.h>
#include <sys/un.h>

#include <netinet/in.h>
#include <arpa/inet.h>

#include <errno.h>
#include <stdarg.h>
#include <stddef.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <hiredis/hiredis.h>

#include "local.h"
#include "log.h"
#include "node.h"
#include "proxy.h"
#include "rconn.h"
#include "util.h"

bool
lnode_up(const struct lnode *n)
{
	return n->conn != NULL && rconn_ok(n->conn) && n->down_since_ms == 0 &&
	    n->last_ok_ms != 0;
}

static unsigned int
tick_ms(const struct lcluster *lc)
{
	uint64_t	 t = lc->ctx->conf->local.failover_after_ms / 6;

	return t < 100 ? 100 : t > 1000 ? 1000 : (unsigned int)t;
}

int
lnode_start(struct lcluster *lc, struct lnode *n, char **cause)
{
	const struct dconf_local *l = &lc->ctx->conf->local;
	struct lnode		*p = lcluster_primary(lc);
	struct node_conf	 c;
	int			 r;

	memset(&c, 0, sizeof c);
	c.bind = l->bind;
	c.port = n->port;
	c.dir = n->dir;
	if (p != NULL && p != n) {
		c.replicaof_host = l->bind;
		c.replicaof_port = p->port;
	}
	c.cluster = lc->cluster_mode;
	c.cluster_port = n->bus_port;
	c.cluster_node_timeout_ms = l->cluster_node_timeout_ms;
	c.maxmemory = lc->maxmemory;
	c.persistence = lc->persistence;
	c.password = lc->password;
	if (lc->acl) {
		c.admin_user = LACL_ADMIN_USER;
		c.admin_pass = lc->admin_pass;
	}
	c.tls_ca = lc->tls ? ltls_path(lc, "ca.crt") : NULL;
	c.tls_cert = lc->tls ? ltls_path(lc, "node.crt") : NULL;
	c.tls_key = lc->tls ? ltls_path(lc, "node.key") : NULL;
	c.parameters = &lc->parameters;
	r = node_conf_write(&c, cause);
	free(c.tls_ca);
	free(c.tls_cert);
	free(c.tls_key);
	if (r != 0)
		return r;
	if ((r = node_spawn(l->redis_server, n->dir, &n->pid, cause)) != 0)
		return r;
	n->down_since_ms = 0;
	n->last_ok_ms = 0;
	n->synced_once = false;
	n->started_ms = clock_mono_ms();
	if (n->needs_restart || n->restarting) {
		/* Its new config has the parameters it needed a restart for. */
		n->needs_restart = n->restarting = false;
		if (lstate_save(lc, cause) != 0) {
			log_cluster(LOG_LEVEL_WARNING, lc->name, "%s", *cause);
			free(*cause);
			*cause = NULL;
		}
	}
	if (n->conn != NULL) {
		rconn_free(n->conn);
		n->conn = NULL;
	}
	if (lc->cluster_mode)
		log_cluster(LOG_LEVEL_INFO, lc->name, "started node %s (pid %ld, "
		    "port %d, shard %s)", n->id, (long)n->pid, n->port,
		    n->shard);
	else
		log_cluster(LOG_LEVEL_INFO, lc->name, "started node %s (pid %ld, "
		    "port %d, %s)", n->id, (long)n->pid, n->port, p == n ||
		    p == NULL ? "primary" : "replica");
	return 0;
}

/* A restart that did not work: say why once per cause, keep it for status. */
static void
restart_failed(struct lcluster *lc, struct lnode *n, char *cause)
{
	if (n->restart_error != NULL && strcmp(n->restart_error, cause) == 0) {
		log_cluster(LOG_LEVEL_DEBUG, lc->name, "node %s: start attempt "
		    "%u failed: %s", n->id, n->restart_failures, cause);
		free(cause);
		return;
	}
	log_cluster(LOG_LEVEL_WARNING, lc->name, "cannot restart node %s: %s "
	    "(retried every %u s at most; logged again only if the reason "
	    "changes)", n->id, cause, LOCAL_RESTART_MAX_MS / 1000);
	free(n->restart_error);
	n->restart_error = cause;
	lcluster_changed(lc);
}

/*
 * Start again a node the monitor found down. Every start counts until the
 * node answers (lnode_answered): one that fails (its redis.conf cannot be
 * written, the disk is full) or that runs but dies before answering (a bad
 * setting, the port taken) is tried again after a delay that doubles from
 * a tick to LOCAL_RESTART_MAX_MS, and is logged at warning level once per
 * cause, not at every tick; the node's status carries the cause.
 */
static void __attribute__((format(printf, 3, 4)))
node_restart(struct lcluster *lc, struct lnode *n, const char *fmt, ...)
{
	uint64_t	 now = clock_mono_ms(), delay;
	char		*cause = NULL, *why;
	unsigned int	 k;
	va_list		 ap;

	if (now < n->restart_at_ms)
		return;
	if (n->restart_failures == 0) {
		va_start(ap, fmt);
		xvasprintf(&why, fmt, ap);
		va_end(ap);
		log_cluster(LOG_LEVEL_NOTICE, lc->name, "%s: restarting it",
		    why);
		free(why);
	} else if (n->restart_ran) {
		xasprintf(&cause, "it exits right after it starts (see "
		    "%s/redis.log)", n->dir);
		restart_failed(lc, n, cause);
	}
	n->restart_ran = false;
	k = n->restart_failures < 16 ? n->restart_failures : 16;
	n->restart_failures++;
	delay = (uint64_t)tick_ms(lc) << k;
	if (delay > LOCAL_RESTART_MAX_MS)
		delay = LOCAL_RESTART_MAX_MS;
	n->restart_at_ms = now + delay;
	if (lnode_start(lc, n, &cause) == 0)
		n->restart_ran = true;
	else
		restart_failed(lc, n, cause);
}

/* The node answers: whatever kept it from starting is over. */
static void
lnode_answered(struct lcluster *lc, struct lnode *n)
{
	if (n->restart_failures > 1 || n->restart_error != NULL)
		log_cluster(LOG_LEVEL_INFO, lc->name, "node %s runs again after "
		    "%u start attempts", n->id, n->restart_failures);
	if (n->restart_error != NULL)
		lcluster_changed(lc);
	free(n->restart_error);
	n->restart_error = NULL;
	n->restart_failures = 0;
	n->restart_at_ms = 0;
	n->restart_ran = false;
}

static void
ep_pause(struct lcluster *lc, bool paused)
{
	if (lc->ep_primary != NULL)
		proxy_set_paused(lc->ep_primary, paused);
}

static void
node_down(struct lcluster *lc, struct lnode *n)
{
	/* A process we just started may not listen yet: not down. */
	bool starting = n->started_ms != 0 && node_pid_alive(n->pid) &&
	    clock_mono_ms() - n->started_ms < LOCAL_START_GRACE_MS &&
	    n->last_ok_ms == 0;

	if (n->down_since_ms == 0 && !starting) {
		n->down_since_ms = clock_mono_ms();
		log_cluster(LOG_LEVEL_NOTICE, lc->name, "node %s (port %d) is "
		    "not answering", n->id, n->port);
		lcluster_changed(lc);
	}
	if (n->conn != NULL) {
		rconn_free(n->conn);
		n->conn = NULL;
	}
	n->ping_busy = n->info_busy = n->fixing_role = false;
}

/*
 * Commands to a node pass the node itself as the callback argument: the
 * node owns its connection and frees it first, and rconn never calls back
 * after a free, so a reply can never reach a node that is gone.
 */
#define node_cmd(lc, n)	(n)

static struct lnode *
node_cmd_done(void *arg, struct lcluster **lcp)
{
	struct lnode	*n = arg;

	*lcp = n->lc;
	return n;
}

static void
ping_done(struct rconn *rc, struct redisReply *reply, const char *err,
    void *arg)
{
	struct lcluster	*lc;
	struct lnode	*n = node_cmd_done(arg, &lc);

	if (n == NULL || n->conn != rc)
		return;
	n->ping_busy = false;
	/*
	 * A node loading its dataset is alive: never fail over for that.
	 * Nor for MISCONF (a background save failed and Redis refuses
	 * writes and PING): the process answers; the status says why writes
	 * fail (lmon_node_message) until its disk is fixed.
	 */
	if (reply == NULL || (reply->type == REDIS_REPLY_ERROR &&
	    strncmp(reply->str, "LOADING", 7) != 0 &&
	    strncmp(reply->str, "MISCONF", 7) != 0)) {
		node_down(lc, n);
		return;
	}
	if (n->down_since_ms != 0)
		log_cluster(LOG_LEVEL_NOTICE, lc->name, "node %s (port %d) "
		    "answers again", n->id, n->port);
	if (n->down_since_ms != 0)
		lcluster_changed(lc);
	n->down_since_ms = 0;
	n->last_ok_ms = clock_mono_ms();
	if (n->restart_failures != 0)
		lnode_answered(lc, n);
}

static long long
info_ll(const char *info, const char *key)
{
	const char	*p = strstr(info, key);

	return p ? strtoll(p + strlen(key), NULL, 10) : -1;
}

static void
role_fixed(struct rconn *rc, struct redisReply *reply, const char *err,
    void *arg)
{
	struct lcluster	*lc;
	struct lnode	*n = node_cmd_done(arg, &lc);

	if (n != NULL)
		n->fixing_role = false;
}

/* Make a node's role agree with ours. */
static void
fix_role(struct lcluster *lc, struct lnode *n)
{
	struct lnode	*p = lcluster_primary(lc);
	char		 port[16];

	if (p == NULL || n->fixing_role || lc->promoting)
		return;
	n->fixing_role = true;
	if (p == n) {
		log_cluster(LOG_LEVEL_NOTICE, lc->name, "node %s should be the "
		    "primary, promoting it", n->id);
		rconn_command(n->conn, LOCAL_PING_TIMEOUT_MS, role_fixed,
		    node_cmd(lc, n), "REPLICAOF NO ONE");
		return;
	}
	log_cluster(LOG_LEVEL_NOTICE, lc->name, "node %s acts as a primary; "
	    "making it a replica of %s", n->id, p->id);
	snprintf(port, sizeof port, "%d", p->port);
	rconn_command(n->conn, LOCAL_PING_TIMEOUT_MS, role_fixed,
	    node_cmd(lc, n), "REPLICAOF %s %s", lc->ctx->conf->local.bind, port);
}

/* A controlled failover finished: the target reports role:master. */
static void
switchover_done(struct lcluster *lc, struct lnode *n)
{
	char	*cause = NULL;
	char	*old = lc->primary;

	lc->primary = lc->switch_to;
	lc->switch_to = NULL;
	lc->promoting = false;
	lc->failovers++;
	if (lstate_save(lc, &cause) != 0) {
		log_cluster(LOG_LEVEL_WARNING, lc->name, "%s", cause);
		free(cause);
	}
	if (lc->ep_primary != NULL)
		proxy_set_paused(lc->ep_primary, false);
	log_cluster(LOG_LEVEL_NOTICE, lc->name, "controlled failover: %s is "
	    "the primary in place of %s (%llu ms)", n->id, old,
	    (unsigned long long)(clock_mono_ms() - lc->failover_started_ms));
	free(lc->message);
	xasprintf(&lc->message, "controlled failover %d: %s replaced %s as "
	    "primary", lc->failovers, n->id, old);
	free(old);
	lcluster_changed(lc);
}

/* Remember each node's run_id; a change means someone restarted it. */
static void
record_run_id(struct lcluster *lc, struct lnode *n, const char *info)
{
	const char	*p = strstr(info, "run_id:");
	char		*id, *cause = NULL;

	if (p == NULL)
		return;
	p += 7;
	id = xstrndup(p, strcspn(p, "\r\n"));
	if (n->run_id != NULL && strcmp(n->run_id, id) == 0) {
		free(id);
		return;
	}
	if (n->run_id != NULL)
		log_cluster(LOG_LEVEL_INFO, lc->name, "node %s restarted (new "
		    "run_id)", n->id);
	free(n->run_id);
	n->run_id = id;
	if (lstate_save(lc, &cause) != 0) {
		log_cluster(LOG_LEVEL_WARNING, lc->name, "%s", cause);
		free(cause);
	}
}

static void
info_done(struct rconn *rc, struct redisReply *reply, const char *err,
    void *arg)
{
	struct lcluster	*lc;
	struct lnode	*n = node_cmd_done(arg, &lc);
	const char	*s;
	bool		 primary;

	if (n == NULL || n->conn != rc)
		return;
	n->info_busy = false;
	if (reply == NULL || reply->type != REDIS_REPLY_STRING)
		return;
	s = reply->str;
	record_run_id(lc, n, s);
	if (n->save_failed != (strstr(s, "rdb_last_bgsave_status:err") !=
	    NULL)) {
		n->save_failed = !n->save_failed;
		if (n->save_failed)
			log_cluster(LOG_LEVEL_WARNING, lc->name, "node %s: "
			    "background save failed; see %s/redis.log", n->id,
			    n->dir);
		else
			log_cluster(LOG_LEVEL_INFO, lc->name, "node %s: "
			    "background save works again", n->id);
		lcluster_changed(lc);
	}
	n->is_master = strstr(s, "role:master") != NULL;
	if (lc->switch_to != NULL && strcmp(lc->switch_to, n->id) == 0 &&
	    n->is_master)
		switchover_done(lc, n);
	primary = lcluster_primary(lc) == n;
	if (n->is_master) {
		n->offset = info_ll(s, "master_repl_offset:");
		n->link_up = false;
	} else {
		bool was = n->link_up;

		n->offset = info_ll(s, "slave_repl_offset:");
		n->link_up = strstr(s, "master_link_status:up") != NULL &&
		    info_ll(s, "master_sync_in_progress:") == 0;
		if (was != n->link_up && n->synced_once)
			lcluster_changed(lc);
		if (n->link_up && !n->synced_once) {
			n->synced_once = true;
			n->added = false;
			log_cluster(LOG_LEVEL_INFO, lc->name, "node %s finished "
			    "its first sync", n->id);
			lcluster_changed(lc);
		} else if (!n->synced_once && n->started_ms == 0 &&
		    lc->created && n->offset > 0) {
			/*
			 * Adopted after a restart of the daemon with its
			 * primary gone: its offset shows it synced under an
			 * earlier run. It may be promoted; restarting the lost
			 * primary empty instead would wipe every replica.
			 */
			n->synced_once = true;
			log_cluster(LOG_LEVEL_INFO, lc->name, "node %s synced "
			    "before (offset %lld), its link is down", n->id,
			    n->offset);
			lcluster_changed(lc);
		}
	}
	/* In cluster mode roles are Redis Cluster's (local_cluster*.c). */
	if (n->is_master != primary && !lc->cluster_mode)
		fix_role(lc, n);
}

static void
node_check(struct lcluster *lc, struct lnode *n, bool info)
{
	if (!node_pid_alive(n->pid)) {
		pid_t pid = node_read_pid(n->dir);
		if (pid > 0 && pid != n->pid && node_pid_alive(pid))
			n->pid = pid;	/* restarted by someone else */
		else {
			node_down(lc, n);
			/* The primary is handled by the failover logic, unless
			 * we stopped it ourselves for a restart. */
			if (lcluster_primary(lc) == n && !n->restarting)
				return;
			if (lc->cluster_mode && !lcl_may_restart(lc, n))
				return;
			node_restart(lc, n, "node %s (pid %ld) is gone", n->id,
			    (long)n->pid);
			return;
		}
	}
	if (n->conn == NULL || !rconn_ok(n->conn)) {
		if (n->conn != NULL)
			rconn_free(n->conn);
		n->conn = rconn_new_user(lc->ctx->base, n->sock,
		    LC_AUTH_USER(lc), LC_AUTH_PASS(lc),
		    LOCAL_CONNECT_TIMEOUT_MS);
		n->ping_busy = n->info_busy = n->fixing_role = false;
	}
	if (!n->ping_busy) {
		n->ping_busy = true;
		if (rconn_command(n->conn, LOCAL_PING_TIMEOUT_MS, ping_done,
		    node_cmd(lc, n), "PING") != 0)
			node_down(lc, n);
	}
	if (info && !n->info_busy && n->conn != NULL) {
		n->info_busy = true;
		if (rconn_command(n->conn, LOCAL_PING_TIMEOUT_MS, info_done,
		    node_cmd(lc, n), "INFO server replication persistence") != 0)
			n->info_busy = false;
	}
}

static void
promoted(struct rconn *rc, struct redisReply *reply, const char *err,
    void *arg)
{
	struct lcluster	*lc = arg;
	struct lnode	*n = lcluster_node(lc, lc->promote_id), *o;
	char		*cause = NULL, port[16], *old = lc->promote_old;
	size_t		 i;
	uint64_t	 took;

	lc->promoting = false;
	lc->promote_old = NULL;
	if (n == NULL || reply == NULL || reply->type == REDIS_REPLY_ERROR) {
		log_cluster(LOG_LEVEL_WARNING, lc->name, "promoting %s failed: "
		    "%s, will retry", lc->promote_id, reply ? reply->str : err);
		ep_pause(lc, false);
		goto out;
	}
	free(lc->primary);
	lc->primary = xstrdup(n->id);
	lc->failovers++;
	n->is_master = true;
	if (lstate_save(lc, &cause) != 0) {
		log_cluster(LOG_LEVEL_WARNING, lc->name, "%s", cause);
		free(cause);
	}
	ep_pause(lc, false);
	took = clock_mono_ms() - lc->failover_started_ms;
	log_cluster(LOG_LEVEL_NOTICE, lc->name, "failover: %s promoted to "
	    "primary in place of %s (%llu ms since the primary stopped "
	    "answering)", n->id, old, (unsigned long long)took);
	free(lc->message);
	xasprintf(&lc->message, "failover %d: %s replaced %s as primary",
	    lc->failovers, n->id, old);
	lcluster_changed(lc);
	snprintf(port, sizeof port, "%d", n->port);
	for (i = 0; i < lc->nnodes; i++) {
		o = lc->nodes[i];
		if (o == n || !lnode_up(o))
			continue;
		o->fixing_role = true;
		rconn_command(o->conn, LOCAL_PING_TIMEOUT_MS, role_fixed, o,
		    "REPLICAOF %s %s", lc->ctx->conf->local.bind, port);
	}
	/* A dead old primary comes back as a replica of the new one. */
	if ((o = lcluster_node(lc, old)) != NULL && !node_pid_alive(o->pid)) {
		node_restart(lc, o, "old primary %s is gone", o->id);
	}
out:
	free(old);
	free(lc->promote_id);
	lc->promote_id = NULL;
}

/*
 * The replica with the most data: answering, past its first sync (only
 * then does it hold the data), highest replication offset. linked: also
 * require a live link to the primary (for a planned switch).
 */
static struct lnode *
best_replica(struct lcluster *lc, struct lnode *p, bool linked)
{
	struct lnode	*best = NULL, *n;
	size_t		 i;

	for (i = 0; i < lc->nnodes; i++) {
		n = lc->nodes[i];
		if (n == p || !lnode_up(n) || !n->synced_once ||
		    (linked && !n->link_up))
			continue;
		if (best == NULL || n->offset > best->offset)
			best = n;
	}
	return best;
}

/* Promote best in place of the lost primary p. */
static void
promote(struct lcluster *lc, struct lnode *p, struct lnode *best)
{
	log_cluster(LOG_LEVEL_NOTICE, lc->name, "primary %s unreachable for "
	    "%llu ms; promoting %s (offset %lld)", p->id,
	    (unsigned long long)(clock_mono_ms() - p->down_since_ms), best->id,
	    best->offset);
	free(lc->promote_id);
	free(lc->promote_old);
	lc->promote_id = xstrdup(best->id);
	lc->promote_old = xstrdup(p->id);
	if (rconn_command(best->conn, LOCAL_PING_TIMEOUT_MS, promoted, lc,
	    "REPLICAOF NO ONE") != 0)
		promoted(NULL, NULL, "connection lost", lc);
}

/* Every candidate answered its INFO, or the deadline passed: choose. */
static void
elect_finish(struct lcluster *lc)
{
	struct lnode	*p = lcluster_primary(lc), *best;

	if (!lc->electing)
		return;
	lc->electing = false;
	evtimer_del(lc->elect_ev);
	best = p != NULL ? best_replica(lc, p, false) : NULL;
	if (p == NULL || best == NULL) {
		lc->promoting = false;
		ep_pause(lc, false);
		return;
	}
	promote(lc, p, best);
}

static void
elect_deadline(evutil_socket_t fd, short ev, void *arg)
{
	elect_finish(arg);
}

static void
elect_reply(struct rconn *rc, struct redisReply *reply, const char *err,
    void *arg)
{
	struct lnode	*n = arg;
	struct lcluster	*lc = n->lc;

	if (reply != NULL && reply->type == REDIS_REPLY_STRING)
		n->offset = info_ll(reply->str, "slave_repl_offset:");
	if (lc->electing && --lc->elect_pending == 0)
		elect_finish(lc);
}

/*
 * Offsets from the last periodic INFO can be most of a second old: ask
 * every candidate again so the replica that has the most data wins. The
 * endpoint is closed from here on: the old primary gets no more writes.
 */
static void
elect_start(struct lcluster *lc, struct lnode *p)
{
	struct timeval	 tv = { 0, 3 * LOCAL_PING_TIMEOUT_MS / 2 * 1000 };
	struct lnode	*n;
	size_t		 i;

	lc->promoting = true;
	lc->electing = true;
	lc->elect_pending = 1;	/* held until every INFO is sent */
	lc->failover_started_ms = p->down_since_ms;
	ep_pause(lc, true);
	if (lc->ep_primary != NULL)
		proxy_drop_all(lc->ep_primary);
	if (lc->elect_ev == NULL)
		lc->elect_ev = evtimer_new(lc->ctx->base, elect_deadline, lc);
	evtimer_add(lc->elect_ev, &tv);
	for (i = 0; i < lc->nnodes; i++) {
		n = lc->nodes[i];
		if (n == p || !lnode_up(n) || !n->synced_once)
			continue;
		lc->elect_pending++;
		if (rconn_command(n->conn, LOCAL_PING_TIMEOUT_MS, elect_reply, n,
		    "INFO replication") != 0)
			lc->elect_pending--;
	}
	if (--lc->elect_pending == 0)
		elect_finish(lc);
}

/* The primary has been unreachable for failover_after. */
static void
primary_lost(struct lcluster *lc, struct lnode *p)
{
	if (!lc->failover) {
		if (!node_pid_alive(p->pid)) {
			node_restart(lc, p, "primary %s is gone and automatic "
			    "failover is off", p->id);
		}
		return;
	}
	if (best_replica(lc, p, false) != NULL) {
		elect_start(lc, p);
		return;
	}
	if (!node_pid_alive(p->pid)) {
		node_restart(lc, p, "primary %s is gone and no replica can "
		    "take over", p->id);
	}
}

static void	failover_check(struct lcluster *);

static void
failover_due(evutil_socket_t fd, short ev, void *arg)
{
	failover_check(arg);
}

/*
 * Fail over once the primary has been down for failover_after: exactly
 * then, with a one-shot timer, rather than at the next tick after it.
 */
static void
failover_check(struct lcluster *lc)
{
	struct lnode	*p = lcluster_primary(lc);
	uint64_t	 now = clock_mono_ms(), after, gone;
	struct timeval	 tv;

	if (p == NULL || p->down_since_ms == 0 || lc->promoting ||
	    p->restarting)
		return;
	after = lc->ctx->conf->local.failover_after_ms;
	/* down_since may be a hair later than a "now" read before it. */
	gone = now > p->down_since_ms ? now - p->down_since_ms : 0;
	if (gone >= after) {
		primary_lost(lc, p);
		return;
	}
	if (lc->failover_ev == NULL)
		lc->failover_ev = evtimer_new(lc->ctx->base, failover_due, lc);
	tv.tv_sec = (time_t)((after - gone) / 1000);
	tv.tv_usec = (suseconds_t)((after - gone) % 1000) * 1000;
	evtimer_add(lc->failover_ev, &tv);
}

static void
lmon_tick(evutil_socket_t fd, short ev, void *arg)
{
	struct lcluster	*lc = arg;
	struct lnode	*p;
	bool		 info;
	size_t		 i;

	info = lc->ticks++ % LOCAL_INFO_EVERY == 0;
	for (i = 0; i < lc->nnodes; i++)
		node_check(lc, lc->nodes[i], info);
	lbk_tick(lc);
	if (lc->cluster_mode) {
		lcl_tick(lc);
		return;
	}
	lmon_rolling_restart(lc);
	failover_check(lc);
	p = lcluster_primary(lc);
	if (!lc->created && lc->nnodes > 0) {
		bool all = true;
		for (i = 0; i < lc->nnodes; i++)
			if (lc->nodes[i] != p && !lc->nodes[i]->synced_once)
				all = false;
		if (all && p != NULL && lnode_up(p)) {
			char *cause = NULL;
			lc->created = true;
			if (lstate_save(lc, &cause) != 0) {
				log_cluster(LOG_LEVEL_WARNING, lc->name, "%s",
				    cause);
				free(cause);
			}
		}
	}
}

void
lmon_start(struct lcluster *lc)
{
	struct timeval	 tv;
	unsigned int	 ms = tick_ms(lc);

	if (lc->tick == NULL)
		lc->tick = event_new(lc->ctx->base, -1, EV_PERSIST, lmon_tick,
		    lc);
	tv.tv_sec = ms / 1000;
	tv.tv_usec = (suseconds_t)(ms % 1000) * 1000;
	event_add(lc->tick, &tv);
	event_active(lc->tick, EV_TIMEOUT, 0);
}

void
lmon_stop(struct lcluster *lc)
{
	size_t	 i;

	if (lc->tick != NULL) {
		event_free(lc->tick);
		lc->tick = NULL;
	}
	if (lc->elect_ev != NULL) {
		event_free(lc->elect_ev);
		lc->elect_ev = NULL;
	}
	if (lc->failover_ev != NULL) {
		event_free(lc->failover_ev);
		lc->failover_ev = NULL;
	}
	lc->electing = false;
	for (i = 0; i < lc->nnodes; i++) {
		if (lc->nodes[i]->conn != NULL) {
			rconn_free(lc->nodes[i]->conn);
			lc->nodes[i]->conn = NULL;
		}
	}
}

/*
 * Where the endpoints send a client: the node's unix socket. The daemon's
 * own hop never needs TCP, which saves the kernel a loopback TCP stack
 * traversal per request (about a fifth of the endpoint's cost).
 */
static void
node_addr(struct lcluster *lc, struct lnode *n, struct sockaddr_storage *ss,
    socklen_t *len)
{
	struct sockaddr_un	*sun = (struct sockaddr_un *)ss;
	struct sockaddr_in	*sin = (struct sockaddr_in *)ss;
	struct sockaddr_in6	*sin6 = (struct sockaddr_in6 *)ss;
	const char		*bind = lc->ctx->conf->local.bind;

	memset(ss, 0, sizeof *ss);
	if (lc->tls) {
		/* TLS end to end: the client's session goes to the node's
		 * TLS port, the endpoint only relays its bytes. */
		if (inet_pton(AF_INET6, bind, &sin6->sin6_addr) == 1) {
			sin6->sin6_family = AF_INET6;
			sin6->sin6_port = htons((uint16_t)n->port);
			*len = sizeof *sin6;
		} else {
			sin->sin_family = AF_INET;
			sin->sin_port = htons((uint16_t)n->port);
			if (inet_pton(AF_INET, bind, &sin->sin_addr) != 1)
				sin->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
			*len = sizeof *sin;
		}
		return;
	}
	sun->sun_family = AF_UNIX;
	snprintf(sun->sun_path, sizeof sun->sun_path, "%s", n->sock);
	*len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) +
	    strlen(sun->sun_path) + 1);
}

static int
pick_primary(void *arg, struct sockaddr_storage *ss, socklen_t *len)
{
	struct lcluster	*lc = arg;
	struct lnode	*p = lcluster_primary(lc);

	if (p == NULL || lc->promoting || !lnode_up(p))
		return -1;
	node_addr(lc, p, ss, len);
	return 0;
}

static int
pick_reader(void *arg, struct sockaddr_storage *ss, socklen_t *len)
{
	struct lcluster	*lc = arg;
	struct lnode	*p = lcluster_primary(lc), *n;
	size_t		 i;

	for (i = 0; i < lc->nnodes; i++) {
		n = lc->nodes[(lc->reader_next + i) % lc->nnodes];
		if (n != p && lnode_up(n) && n->link_up) {
			lc->reader_next = (lc->reader_next + i + 1) %
			    lc->nnodes;
			node_addr(lc, n, ss, len);
			return 0;
		}
	}
	if (p == NULL || !lnode_up(p))
		return -1;
	node_addr(lc, p, ss, len);
	return 0;
}

/* The configuration endpoint: any node that answers, in turn. */
static int
pick_any(void *arg, struct sockaddr_storage *ss, socklen_t *len)
{
	struct lcluster	*lc = arg;
	struct lnode	*n;
	size_t		 i;

	for (i = 0; i < lc->nnodes; i++) {
		n = lc->nodes[(lc->reader_next + i) % lc->nnodes];
		if (lnode_up(n)) {
			lc->reader_next = (lc->reader_next + i + 1) %
			    lc->nnodes;
			node_addr(lc, n, ss, len);
			return 0;
		}
	}
	return -1;
}

void
lmon_endpoints_start(struct lcluster *lc, char **cause)
{
	const char	*bind = lc->ctx->conf->local.bind;

	if (lc->cluster_mode) {
		if (lc->ep_primary == NULL)
			lc->ep_primary = proxy_new(lc->ctx->base, bind,
			    lc->port, pick_any, lc, cause);
		return;
	}

	if (lc->ep_primary == NULL)
		lc->ep_primary = proxy_new(lc->ctx->base, bind, lc->port,
		    pick_primary, lc, cause);
	if (lc->ep_primary != NULL && lc->ep_reader == NULL)
		lc->ep_reader = proxy_new(lc->ctx->base, bind, lc->reader_port,
		    pick_reader, lc, cause);
}

void
lmon_endpoints_stop(struct lcluster *lc)
{
	proxy_free(lc->ep_primary);
	proxy_free(lc->ep_reader);
	lc->ep_primary = lc->ep_reader = NULL;
}

/* What is wrong with single nodes, for the cluster's message. */
char *
lmon_node_message(struct lcluster *lc)
{
	struct strbuf	 sb;
	size_t		 i;

	strbuf_init(&sb);
	for (i = 0; i < lc->nnodes; i++) {
		if (lc->nodes[i]->save_failed)
			strbuf_printf(&sb, "%snode %s: background save failed "
			    "(rdb_last_bgsave_status:err; is %s writable and "
			    "not full?)", sb.len ? "; " : "", lc->nodes[i]->id,
			    lc->nodes[i]->dir);
		if (lc->nodes[i]->restart_error != NULL)
			strbuf_printf(&sb, "%snode %s cannot start: %s",
			    sb.len ? "; " : "", lc->nodes[i]->id,
			    lc->nodes[i]->restart_error);
	}
	if (sb.len == 0) {
		strbuf_free(&sb);
		return NULL;
	}
	return strbuf_detach(&sb);
}

json_t *
lmon_endpoints(struct lcluster *lc)
{
	const char	*bind = lc->ctx->conf->local.bind;
	struct lnode	*p = lcluster_primary(lc), *n;
	json_t		*nodes, *j;
	char		 addr[300];
	size_t		 i;

	if (lc->cluster_mode)
		return lcl_endpoints(lc);
	nodes = json_array();

	for (i = 0; i < lc->nnodes; i++) {
		n = lc->nodes[i];
		snprintf(addr, sizeof addr, "%s:%d", bind, n->port);
		json_array_append_new(nodes, json_pack("{s:s, s:s, s:s, s:I, "
		    "s:I, s:b, s:b, s:s?}", "id", n->id, "address", addr,
		    "role", n == p ? "primary" : "replica", "pid",
		    (json_int_t)n->pid, "offset", (json_int_t)n->offset, "up",
		    lnode_up(n), "synced", n == p ? lnode_up(n) : n->link_up,
		    "error", n->restart_error));
	}
	snprintf(addr, sizeof addr, "%s:%d", bind, lc->port);
	j = json_pack("{s:s, s:o, s:i}", "primary", addr, "nodes", nodes,
	    "failovers", lc->failovers);
	snprintf(addr, sizeof addr, "%s:%d", bind, lc->reader_port);
	json_object_set_new(j, "reader", json_string(addr));
	return j;
}

static void
switchover_started(struct rconn *rc, struct redisReply *reply,
    const char *err, void *arg)
{
	struct lcluster	*lc = arg;

	if (reply != NULL && reply->type != REDIS_REPLY_ERROR)
		return;		/* info_done sees the target take over */
	log_cluster(LOG_LEVEL_WARNING, lc->name, "controlled failover to %s "
	    "failed: %s, will retry", lc->switch_to ? lc->switch_to : "?",
	    reply ? reply->str : err);
	free(lc->switch_to);
	lc->switch_to = NULL;
	lc->promoting = false;
	if (lc->ep_primary != NULL)
		proxy_set_paused(lc->ep_primary, false);
}

/*
 * Hand the primary role to the most up-to-date replica without losing a
 * write: Redis's own FAILOVER pauses writes on the primary, waits for the
 * target to catch up, then swaps roles. The endpoint refuses new clients
 * and drops old ones meanwhile, so nothing can write to two primaries.
 */
static void
switchover(struct lcluster *lc, struct lnode *p, const char *why)
{
	struct lnode	*best = best_replica(lc, p, true);
	char		 port[16];

	if (best == NULL)
		return;
	log_cluster(LOG_LEVEL_NOTICE, lc->name, "%s: moving the "
	    "primary role from %s to %s", why, p->id, best->id);
	lc->promoting = true;
	lc->failover_started_ms = clock_mono_ms();
	free(lc->switch_to);
	lc->switch_to = xstrdup(best->id);
	if (lc->ep_primary != NULL) {
		proxy_set_paused(lc->ep_primary, true);
		proxy_drop_all(lc->ep_primary);
	}
	snprintf(port, sizeof port, "%d", best->port);
	if (rconn_command(p->conn, 15000, switchover_started, lc,
	    "FAILOVER TO %s %s TIMEOUT 10000", lc->ctx->conf->local.bind,
	    port) != 0)
		switchover_started(NULL, NULL, "primary connection lost", lc);
}

/*
 * Parameters Redis cannot change live: restart nodes one at a time,
 * replicas first, each only once the whole group is in sync again, then
 * move the primary role away from the last node and restart it too. Waits
 * for the maintenance window unless the spec says apply_immediately.
 */
void
lmon_rolling_restart(struct lcluster *lc)
{
	struct lnode	*p = lcluster_primary(lc), *n, *next = NULL;
	char		 w[40];
	size_t		 i, left = 0;

	if (!lc->restart_pending || lc->promoting || p == NULL)
		return;
	if (!lc->apply_immediately &&
	    !window_contains(&lc->maintenance_window, clock_wall_s())) {
		if (lc->message == NULL ||
		    strstr(lc->message, "maintenance window") == NULL) {
			window_format(&lc->maintenance_window, w, sizeof w);
			free(lc->message);
			xasprintf(&lc->message, "restart for new parameters "
			    "waits for the maintenance window %s", w);
			lcluster_changed(lc);
		}
		return;
	}
	for (i = 0; i < lc->nnodes; i++) {
		n = lc->nodes[i];
		if (n->restarting)
			return;		/* one at a time */
		if (!lnode_up(n) || (n != p && (!n->synced_once ||
		    !n->link_up)))
			return;		/* wait until all is in sync */
		if (n->needs_restart) {
			left++;
			if (n != p && next == NULL)
				next = n;
		}
	}
	if (left == 0) {
		char *cause = NULL;

		lc->restart_pending = false;
		free(lc->message);
		lc->message = xstrdup("rolling restart done");
		log_cluster(LOG_LEVEL_NOTICE, lc->name, "rolling restart done");
		if (lstate_save(lc, &cause) != 0) {
			log_cluster(LOG_LEVEL_WARNING, lc->name, "%s", cause);
			free(cause);
		}
		lcluster_changed(lc);
		return;
	}
	if (next == NULL) {
		/* Only the primary is left. */
		if (lc->nnodes > 1) {
			switchover(lc, p, "rolling restart");
			return;
		}
		next = p;
	}
	log_cluster(LOG_LEVEL_NOTICE, lc->name, "rolling restart: restarting "
	    "%s %s (%zu left)", next == p ? "primary" : "replica", next->id,
	    left);
	next->restarting = true;
	free(lc->message);
	xasprintf(&lc->message, "rolling restart: restarting %s", next->id);
	kill(next->pid, SIGTERM);
	lcluster_changed(lc);
}

int
lmon_switchover(struct lcluster *lc, char **cause)
{
	struct lnode	*p = lcluster_primary(lc);

	if (!lc->created || lc->promoting || p == NULL || !lnode_up(p)) {
		xasprintf(cause, "%s: %s; try again later", lc->name,
		    !lc->created ? "being created" : lc->promoting ?
		    "a failover is in progress" : "the primary is down");
		return -EAGAIN;
	}
	if (best_replica(lc, p, true) == NULL) {
		xasprintf(cause, "%s has no replica in sync to take over",
		    lc->name);
		return -EAGAIN;
	}
	switchover(lc, p, "controlled failover");
	return 0;
}
