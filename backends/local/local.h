/*
 * The local backend's private types, shared by its files:
 *   local.c          the backend table: attach, observe, apply
 *   local_state.c    cluster.json: what the backend remembers of a cluster
 *   local_monitor.c  health checks, role enforcement, automatic failover
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

#define LOCAL_CONNECT_TIMEOUT_MS	500
#define LOCAL_PING_TIMEOUT_MS		500
#define LOCAL_INFO_EVERY		4	/* ticks */
#define LOCAL_START_GRACE_MS		5000	/* a new process may be slow */

/* Shared by every local cluster of one daemon. */
struct local_ctx {
	struct event_base	*base;
	const struct dconf	*conf;
	const struct backend_env *env;
	char			*version;	/* of the installed redis-server */
	int			 refs;
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
	int			 failovers;
	bool			 created;	/* all nodes synced once */
	bool			 restart_pending; /* rolling restart to do */
	bool			 apply_immediately;
	struct window		 maintenance_window;

	/* Runtime. */
	char			*password;	/* from token_file, wiped on free */
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
	pid_t			 copy_pid;	/* final snapshot copy */
	struct event		*copy_ev;
	char			*copy_dest;
};

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

#endif
