/*
 * The local backend's private types, shared by its files:
 *   local.c          the backend table: attach, observe, apply
 *   local_state.c    cluster.json: what the backend remembers of a cluster
 *   local_monitor.c  health checks, role enforcement, automatic failover
 *   local_cluster.c  cluster mode: shards, scaling steps, status, failover
 *   local_cluster_view.c    cluster mode: what the nodes say (CLUSTER
 *                    NODES), and whether they agree
 *   local_cluster_repair.c  cluster mode: the repairs that follow
 *   local_cluster_reshard.c cluster mode: which slots move where, the
 *                    plan and its progress in reshard.json
 *   local_cluster_migrate.c cluster mode: moving one slot between shards
 *   local_backup.c   snapshots: automatic, manual, retention
 * One struct lcluster per cluster, alive while its reconciler is.
 */
#ifndef CK_LOCAL_H
#define CK_LOCAL_H

#include <sys/types.h>

#include <stdbool.h>
#include <stdint.h>

#include <event2/event.h>
#include <jansson.h>

#include "backend.h"
#include "dconf.h"
#include "spec.h"

struct rconn;
struct proxy;
struct redisReply;
struct lcl;
struct lcl_round;
struct lbk;
struct http;
struct credchain;
struct aws_creds;

#define LOCAL_CONNECT_TIMEOUT_MS	500
#define LOCAL_PING_TIMEOUT_MS		500
#define LOCAL_INFO_EVERY		4	/* ticks */
#define LOCAL_START_GRACE_MS		5000	/* a new process may be slow */
#define LOCAL_RESTART_MAX_MS		5000	/* between failed restarts */

typedef void (*rconn_cb_t)(struct rconn *, struct redisReply *,
    const char *, void *);

#define LCL_SLOTS		16384	/* Redis Cluster hash slots */
#define LCL_CMD_TIMEOUT_MS	15000	/* cluster commands, MIGRATE */

/* Shared by every local cluster of one daemon. */
struct local_ctx {
	struct event_base	*base;
	const struct dconf	*conf;
	const struct backend_env *env;
	char			*version;	/* of the installed redis-server */
	int			 refs;
	/* backups.s3: the credentials chain, and the client it fetches
	 * over; made at the first need. */
	struct http		*http;
	struct credchain	*s3chain;
};

struct lnode {
	struct lcluster	*lc;
	char		*id;		/* "n1", "n2", ... never reused */
	int		 port;
	pid_t		 pid;
	char		*run_id;
	char		*dir;
	char		*sock;
	/* Runtime view, from the monitor. */
	struct rconn	*conn;
	bool		 ping_busy;
	bool		 info_busy;
	uint64_t	 last_ok_ms;
	uint64_t	 down_since_ms;	/* 0: answering */
	long long	 offset;
	bool		 is_master;	/* what INFO says */
	bool		 link_up;	/* replica: master_link_status:up */
	bool		 synced_once;	/* finished a first sync at least once */
	bool		 fixing_role;
	uint64_t	 started_ms;	/* when we last started it */
	bool		 needs_restart;	/* a parameter it can only take so */
	bool		 restarting;	/* stopped by us, start it again */
	bool		 added;		/* new by scaling, not yet synced */
	bool		 save_failed;	/* rdb_last_bgsave_status:err */
	/* The monitor's restarts that failed: retried with a backoff. */
	unsigned int	 restart_failures;
	uint64_t	 restart_at_ms;	/* not before (monotonic) */
	char		*restart_error;	/* the last cause, logged once */
	bool		 restart_ran;	/* the last start ran redis-server */
	/* Cluster mode only. */
	char		*shard;		/* "s1", ...: its node group */
	int		 bus_port;	/* cluster bus, from local.port_range */
	char		*cid;		/* Redis Cluster node ID, 40 hex */
	struct rconn	*ccon;		/* cluster commands and migrations */
	unsigned int	 gather_gen;	/* round its CLUSTER NODES is for */
	char		*nodes_txt;	/* last CLUSTER NODES answer */
	bool		 state_ok;	/* cluster_state:ok */
	uint64_t	 meet_ms;	/* last CLUSTER MEET for it */
	uint64_t	 replicate_ms;	/* last CLUSTER REPLICATE sent to it */
};

/*
 * The cluster-mode runtime of a cluster: the last round of views and what
 * was concluded from it. Rebuilt from the nodes after a restart.
 */
struct lcl {
	/* The round in flight. */
	bool		 round_busy;
	unsigned int	 round_gen;
	int		 round_pending;
	struct event	*round_ev;	/* its deadline */
	/* What the last finished round concluded. */
	bool		 have_view;	/* owner[] is valid */
	bool		 agree;		/* every node says the same */
	bool		 all_ok;	/* cluster_state:ok on every node */
	bool		 masters_up;	/* every shard's primary answers */
	int		 covered;	/* slots with an owner */
	int		 open_slots;	/* IMPORTING or MIGRATING somewhere */
	int		 slots_left;	/* to move for an even spread */
	int		 views;		/* nodes that answered */
	char		*disagree;	/* why they do not agree, or NULL */
	int		 owner[LCL_SLOTS];	/* shard index, -1: none */
	struct lmig	*mig;
};

/* A node group of a cluster-mode cluster (remembered in cluster.json). */
struct lshard {
	char		*id;		/* "s1", "s2", ... never reused */
	char		*primary;	/* node id of its primary, last seen */
	bool		 removing;	/* its slots move away, then it goes */
};

struct lcluster {
	struct local_ctx	*ctx;
	char			*name;
	char			*dir;		/* DATA_DIR/NAME */
	bool			 exists;	/* cluster.json is there */

	/* Remembered in cluster.json. */
	struct lnode		**nodes;
	size_t			 nnodes;
	char			*primary;	/* node id */
	int			 next_seq;
	int			 port;
	int			 reader_port;
	bool			 failover;
	uint64_t		 maxmemory;
	enum persistence	 persistence;
	struct kvlist		 parameters;
	char			*token_file;
	bool			 tls;		/* transit encryption */
	bool			 acl;		/* users, not requirepass */
	int			 failovers;
	bool			 created;	/* all nodes synced once */
	bool			 restart_pending; /* rolling restart to do */
	bool			 apply_immediately;
	struct window		 maintenance_window;
	/* Cluster mode. */
	bool			 cluster_mode;
	struct lshard		**shards;
	size_t			 nshards;
	int			 next_shard;
	int			 replicas;	/* per shard */

	/* Runtime. */
	struct lcl		*cl;		/* cluster mode, local_cluster*.c */
	char			*password;	/* from token_file, lsecret */
	char			*admin_pass;	/* acl: the daemon's, lsecret */
	struct proxy		*ep_primary;
	struct proxy		*ep_reader;
	size_t			 reader_next;
	struct event		*tick;
	unsigned int		 ticks;
	bool			 promoting;
	char			*switch_to;	/* controlled failover target */
	bool			 electing;	/* asking replicas' offsets */
	int			 elect_pending;
	struct event		*elect_ev;
	struct event		*failover_ev;	/* failover_after is up */
	char			*promote_id;	/* failover in flight */
	char			*promote_old;
	struct param_op		*param;		/* parameter change in flight */
	struct event		*param_ev;	/* its deadline */
	uint64_t		 failover_started_ms;
	char			*message;	/* last notable event */
	struct event		*done_ev;	/* deferred completion */
	struct event		*obs_ev;	/* deferred observation */
	const struct cluster_spec *obs_spec;
	backend_observe_cb	 ocb;
	backend_done_cb		 dcb;
	void			*cbarg;
	int			 done_error;
	char			*done_msg;
	struct lbk		*bk;		/* local_backup.c */
	/* local_restore.c: spec.restore_from, until its keys are in. */
	char			*restore_from;	/* in cluster.json */
	char			*restore_error;	/* it failed: why */
	pid_t			 restore_pid;
	bool			 restore_fetching; /* from S3 */
	bool			 restore_fetched;
	/* The same layout: RDBs going in place (no node started yet), the
	 * primaries started on them; fetching from S3 before any start. */
	bool			 restore_placing;
	bool			 restore_placed;
	bool			 restore_prefetch;
	int			 restore_fd;
	struct event		*restore_ev;
};

/*
 * local.c: credentials for backups.s3 from the daemon's chain
 * (credchain.h: environment, profile elasticache.profile, web identity,
 * IMDSv2), as credchain_get() answers: 1 with *out (valid until the next
 * call), 0 while they are being fetched (ask again on a later tick),
 * -EACCES with *why.
 */
int		 local_s3_creds(struct local_ctx *,
		    const struct aws_creds **out, const char **why);
/* S3 said the credentials expired: the next local_s3_creds() fetches. */
void		 local_s3_creds_expired(struct local_ctx *);

/* local_state.c */
int		 lstate_load(struct lcluster *, char **cause);
int		 lstate_save(struct lcluster *, char **cause);
struct lnode	*lnode_new(struct lcluster *, const char *id, int port);
void		 lnode_free(struct lnode *);
struct lnode	*lcluster_node(struct lcluster *, const char *id);
struct lnode	*lcluster_primary(struct lcluster *);
int		 lcluster_alloc_port(struct lcluster *, char **cause);
int		 lcluster_read_token(struct lcluster *, const char *file,
		    char **cause);

/* Have the reconciler look at this cluster again now. */
void		 lcluster_changed(struct lcluster *);

/* local_tls.c: certificates, the daemon's ACL user, secrets in memory. */
#define LACL_ADMIN_USER	"ck-admin"
char		*lsecret_dup(const char *, size_t);	/* not dumped */
void		 lsecret_free(char *);			/* wipes; NULL ok */
void		 lsecret_sha256(const char *, char out[66]);
char		*ltls_path(const struct lcluster *, const char *file);
int		 ltls_ensure(struct lcluster *, const char *bind, char **);
int		 lacl_ensure(struct lcluster *, char **cause);
/* Who the daemon logs in as: user NULL for requirepass (or no auth). */
#define LC_AUTH_USER(lc)	((lc)->acl ? LACL_ADMIN_USER : NULL)
#define LC_AUTH_PASS(lc)	((lc)->acl ? (lc)->admin_pass : (lc)->password)

/* local_monitor.c */
void		 lmon_start(struct lcluster *);
void		 lmon_stop(struct lcluster *);
/* (Re)write a node's config for its current role and start it. */
int		 lnode_start(struct lcluster *, struct lnode *, char **cause);
bool		 lnode_up(const struct lnode *);
json_t		*lmon_endpoints(struct lcluster *);
void		 lmon_endpoints_start(struct lcluster *, char **cause);
void		 lmon_endpoints_stop(struct lcluster *);
void		 lmon_rolling_restart(struct lcluster *);
/*
 * A controlled failover of a replication group (cluster mode disabled):
 * FAILOVER TO its most up-to-date replica in sync. 0 once started (the
 * monitor sees the new primary), or -EAGAIN with *cause.
 */
int		 lmon_switchover(struct lcluster *, char **cause);

/* local_backup.c: snapshots of the cluster. */
void		 lbk_init(struct lcluster *);
void		 lbk_free(struct lcluster *);
/* What the spec says of snapshots now (each observation). */
void		 lbk_spec(struct lcluster *, const struct cluster_spec *);
/* From the monitor's tick: take an automatic snapshot when due. */
void		 lbk_tick(struct lcluster *);
/* {last_success, next_due, last_error, snapshots} for the status. */
json_t		*lbk_status(struct lcluster *);
json_t		*lbk_progress(struct lcluster *);
/* A manual snapshot (name NULL: NAME-manual-YYYYMMDDHHMMSS); cb is
 * called from the loop once it is complete or has failed. */
void		 lbk_manual(struct lcluster *, const char *name,
		    backend_op_cb cb, void *arg);
/*
 * The final snapshot before a deletion (NAME-final-YYYYMMDDHHMMSS, type
 * final): 0 once started (cb follows from the loop), or -errno with
 * *cause.
 */
int		 lbk_final(struct lcluster *, backend_op_cb cb, void *arg,
		    char **cause);
/* local_restore.c: load spec.restore_from once the cluster is created. */
void		 lrs_tick(struct lcluster *);
/*
 * At creation, before any node starts: whether spec.restore_from names a
 * snapshot on this host with the layout s creates (see local_restore.c);
 * if so lc->restore_placing is set, and the caller creates the nodes
 * without starting them, then calls lrs_place_start(), which starts
 * them (and the monitor) once each primary's RDB is in place. When it
 * cannot (false, said in a warning), nothing was started: start them as
 * usual, the keys are loaded later.
 */
bool		 lrs_same_layout(struct lcluster *,
		    const struct cluster_spec *);
bool		 lrs_place_start(struct lcluster *);
void		 lrs_free(struct lcluster *);
/* Call an operation's cb from the loop; msg is taken over. */
void		 lbk_answer(struct lcluster *, backend_op_cb cb, void *arg,
		    int error, char *msg);
/* "node n2: background save failed ...", NULL when none did. */
char		*lmon_node_message(struct lcluster *);

/*
 * Cluster mode (local_cluster*.c). The monitor above still checks
 * processes and restarts dead nodes; roles, failover and slots are Redis
 * Cluster's own, and these functions watch and steer it.
 */
struct lshard	*lcl_shard(struct lcluster *, const char *id);
void		 lshard_free(struct lshard *);
/* Start the cluster-mode runtime of lc (idempotent); lcl_free ends it. */
void		 lcl_init(struct lcluster *);
void		 lcl_free(struct lcluster *);
/* Called by the monitor every tick. */
void		 lcl_tick(struct lcluster *);
/* Whether the monitor may restart dead node n now (see local_cluster.c). */
bool		 lcl_may_restart(struct lcluster *, struct lnode *);
/* The create step and the scaling steps; 0 or -errno with *cause. */
int		 lcl_create(struct lcluster *, const struct cluster_spec *,
		    char **cause);
int		 lcl_add_shards(struct lcluster *, int to, char **cause);
int		 lcl_remove_shards(struct lcluster *, int to, char **cause);
int		 lcl_add_replicas(struct lcluster *, int to, char **cause);
int		 lcl_remove_replicas(struct lcluster *, int to, char **cause);
/* Observed state, its message (NULL: none) and the status endpoints. */
enum obs_state	 lcl_observed_state(struct lcluster *);
char		*lcl_message(struct lcluster *);
json_t		*lcl_endpoints(struct lcluster *);
int		 lcl_num_shards(struct lcluster *);
/* Stop every node and forget the runtime (deletion). */
void		 lcl_remove_all(struct lcluster *);
/* A new node of shard sh (not started). */
struct lnode	*lcl_add_node(struct lcluster *, const char *shard,
		    char **cause);

/*
 * A controlled failover of one shard: CLUSTER FAILOVER on its replica
 * with the highest replication offset that is up and in sync, so Redis
 * swaps roles without losing a write. Returns 0 once the command is sent
 * (the outcome shows in the status and the log: the monitor sees the new
 * primary), or -ENOENT (no such shard), -EAGAIN (no replica in sync, a
 * failover or reshard in progress, the cluster not created yet) or
 * -ENOTSUP (not a cluster-mode cluster), with a reason in *cause (the
 * caller frees it). For the CLI's `failover` command.
 */
int		 local_cluster_failover(struct lcluster *, const char *shard,
		    char **cause);

/*
 * The node's cluster connection, or NULL when it has failed: lcl_tick()
 * makes a new one outside every callback (freeing a failed rconn inside
 * another command's callback would silence the rest of its replies).
 */
struct rconn	*lcl_conn(struct lcluster *, struct lnode *);
/* A command on it: 0, or -ENOTCONN and cb is never called. Arguments are
 * the words of fmt after formatting, split at spaces. */
int		 lcl_command(struct lcluster *, struct lnode *, rconn_cb_t cb,
		    void *arg, const char *fmt, ...)
		    __attribute__((format(printf, 5, 6)));
int		 lcl_commandargv(struct lcluster *, struct lnode *,
		    rconn_cb_t cb, void *arg, int argc, const char **argv,
		    const size_t *argvlen);
/* Fire-and-forget a cluster command on node n (errors go to debug). */
void		 lcl_send(struct lcluster *, struct lnode *, const char *fmt,
		    ...) __attribute__((format(printf, 3, 4)));
/* Remove node n for good: stop it, delete its directory, free it. */
void		 lcl_node_destroy(struct lcluster *, struct lnode *);
int		 lcl_shard_index(struct lcluster *, const char *id);

/*
 * local_cluster_view.c: one round of CLUSTER NODES from every node, each
 * answer parsed into a view.
 */
struct cent {				/* one line of CLUSTER NODES */
	char		 cid[41];
	int		 port;
	bool		 myself;
	bool		 master;
	bool		 fail;
	bool		 handshake;	/* or noaddr: not really there yet */
	unsigned long long epoch;	/* its config epoch */
	char		 master_cid[41];
	struct lnode	*node;		/* ours with that ID, or NULL */
};

struct copen {				/* a slot open on the node itself */
	int		 slot;
	bool		 importing;	/* else migrating */
	char		 peer[41];
};

struct cview {				/* what one node says */
	struct lnode	*from;
	struct cent	*e;
	size_t		 ne;
	struct cent	*self;
	short		*owner;		/* [LCL_SLOTS] entry index, -1 */
	struct copen	*open;
	size_t		 nopen;
};

void		 lclv_round_start(struct lcluster *);
void		 lclv_free(struct lcluster *);
struct cent	*lclv_find(struct cview *, const char *cid);
/* Whether the views agree; if not, *why (the caller frees it) says why. */
bool		 lclv_agree(struct lcluster *, struct cview *, size_t,
		    char **why);
/* local_cluster_repair.c: act on a round's views. */
void		 lclr_evaluate(struct lcluster *, struct cview *, size_t);

/*
 * Resharding: the plan (local_cluster_reshard.c) and the movers that carry
 * it out (local_cluster_migrate.c), sharing this.
 */
struct lworker;
struct lmig {
	struct lcluster	*lc;
	/* The plan: slot -> destination shard id, NULL when none. */
	char		*to[LCL_SLOTS];
	bool		 done[LCL_SLOTS];
	int		 total;
	int		 ndone;
	int		 cursor;	/* where lmig_next() looks first */
	struct lworker	**w;		/* the movers, one slot each */
	size_t		 nw;
	char		*conflict;	/* a key an operator must look at */
	uint64_t	 conflict_at;	/* when to compare it again */
	int		 conflict_slot;
	char		*error;		/* the last failed move */
	uint64_t	 retry_at;
	struct event	*save_ev;
	bool		 loaded;
};

/* local_cluster_migrate.c: the movers. */
/* Whether a mover has a slot in flight. */
bool		 lmig_busy(struct lcluster *);
bool		 lmig_slot_busy(struct lmig *, int slot);
/* An idle mover, NULL when local.migrate_slots are busy. */
struct lworker	*lmig_worker_idle(struct lmig *);
bool		 lmig_worker_busy(const struct lworker *);
/* Move slot from src to dst (repair: not a move of the plan). */
void		 lmig_worker_start(struct lworker *, int slot,
		    struct lnode *src, struct lnode *dst, bool repair);
json_t		*lmig_in_flight(struct lmig *);
void		 lmig_workers_free(struct lmig *);

/* local_cluster_reshard.c: the plan. */
struct lmig	*lmig_get(struct lcluster *);
bool		 lmig_stopped(struct lmig *);
/* Called by a mover: slot is on its target now; start its next move. */
void		 lmig_moved(struct lmig *, int slot);
void		 lmig_next(struct lmig *, struct lworker *);
/*
 * Given owner[slot] = shard index (-1: none) and the shards that may hold
 * slots, start or continue moving slots so every active shard ends within
 * one slot of even and removing shards end empty. Returns the number of
 * slots still to move.
 */
int		 lmig_drive(struct lcluster *, const int *owner);
/*
 * Close a slot left open: IMPORTING on importer (finish moving it there
 * from owner), or MIGRATING on migrator with nobody importing it.
 */
void		 lmig_repair(struct lcluster *, int slot, struct lnode *owner,
		    struct lnode *importer, struct lnode *migrator);
void		 lmig_free(struct lcluster *);
json_t		*lmig_status(struct lcluster *);
json_t		*lmig_progress(struct lcluster *);
const char	*lmig_error(struct lcluster *);
int		 lmig_load(struct lcluster *);

#endif
