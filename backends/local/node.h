/*
 * Local nodes: one redis-server process each, with its own directory
 * DATA_DIR/CLUSTER/NODE_ID/ holding a generated redis.conf, its data, a
 * log, and a 0700 directory with its unix socket (how the daemon talks to
 * it). Nodes run detached in their own session and outlive cachekeeperd.
 * This module writes configs and starts, finds and stops processes; it
 * knows nothing of roles or failover.
 */
#ifndef CK_LOCAL_NODE_H
#define CK_LOCAL_NODE_H

#include <sys/types.h>

#include <stdbool.h>
#include <stdint.h>

#include "dconf.h"
#include "spec.h"

struct node_conf {
	const char		*bind;
	int			 port;
	const char		*dir;		/* the node's directory */
	const char		*replicaof_host; /* NULL: a primary */
	int			 replicaof_port;
	uint64_t		 maxmemory;	/* bytes, 0: none */
	enum persistence	 persistence;
	const char		*password;	/* NULL: no auth */
	/* With admin_user: ACL users instead of requirepass (see
	 * local_tls.c); password is then the "default" user's. */
	const char		*admin_user;
	const char		*admin_pass;
	char			*tls_ca;	/* NULL: no TLS */
	char			*tls_cert;
	char			*tls_key;
	const struct kvlist	*parameters;
	bool			 cluster;	/* cluster-enabled yes */
	int			 cluster_port;	/* its bus; 0: port + 10000 */
	uint64_t		 cluster_node_timeout_ms;
};

/* Paths inside a node directory (static buffers are not used: callers
 * free the results). */
char	*node_path(const char *dir, const char *file);
/*
 * Write dir/redis.conf for c (atomically). Returns 0 or -errno with a
 * reason in *cause. The unix socket path must fit in sun_path.
 */
int	 node_conf_write(const struct node_conf *c, char **cause);
/*
 * Start the node in dir: as its cachekeeper-redis@ unit when nodes are
 * units (node_unit.c), else redis-server detached (new session,
 * reparented to init).
 */
int	 node_spawn(const char *redis_server, const char *dir, pid_t *pid,
	    char **cause);
/* Whether pid is a live redis-server (not a reused pid). */
bool	 node_pid_alive(pid_t pid);
/* Read the pid redis wrote to dir/redis.pid; 0 when none. */
pid_t	 node_read_pid(const char *dir);
/* SIGKILL the node in dir (pid, if it is still a redis-server; or its
 * unit, which is then stopped and forgotten). */
void	 node_kill(const char *dir, pid_t pid);

/*
 * Who runs nodes (node_unit.c). auto: units when systemd is PID 1, the
 * data_dir is the template's and the template is installed; else
 * detached processes. systemd: units or an error. Chosen once, at start.
 */
int	 node_manager_init(enum node_manager, const char *data_dir,
	    char **cause);
/* Whether nodes are units; *reason says why (or why not). */
bool	 node_manager_units(const char **reason);
void	 node_manager_free(void);
/* "cachekeeper-redis@CLUSTER-NODE.service" for data_dir/CLUSTER/NODE,
 * escaped as systemd-escape does; NULL when dir is not below data_dir. */
char	*node_unit_name(const char *data_dir, const char *dir);
int	 node_unit_start(const char *dir, pid_t *pid, char **cause);
void	 node_unit_kill(const char *dir, pid_t pid);
/* rm -rf dir (only below a cachekeeper data directory). */
int	 node_remove_dir(const char *dir);
/* "7.0.15" from `redis-server --version`; NULL when it cannot run. */
char	*node_server_version(const char *redis_server);

#endif
