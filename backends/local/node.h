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
/* Start redis-server detached (new session, reparented to init). */
int	 node_spawn(const char *redis_server, const char *dir, pid_t *pid,
	    char **cause);
/* Whether pid is a live redis-server (not a reused pid). */
bool	 node_pid_alive(pid_t pid);
/* Read the pid redis wrote to dir/redis.pid; 0 when none. */
pid_t	 node_read_pid(const char *dir);
/* SIGKILL pid if it is still a redis-server. */
void	 node_kill(pid_t pid);
/* rm -rf dir (only below a cachekeeper data directory). */
int	 node_remove_dir(const char *dir);
/* "7.0.15" from `redis-server --version`; NULL when it cannot run. */
char	*node_server_version(const char *redis_server);

#endif
