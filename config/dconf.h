/*
 * The daemon's own configuration (cachekeeperd.yaml): where specs live,
 * where state goes, timers, logging, and the backends' sections. Every key
 * has a default; unknown keys are errors. Relative paths are resolved
 * against the directory of the configuration file.
 */
#ifndef CK_DCONF_H
#define CK_DCONF_H

#include <sys/types.h>

#include <stdbool.h>
#include <stdint.h>

#include "diag.h"
#include "schema.h"

#define DCONF_DEFAULT_PATH	"/etc/cachekeeper/cachekeeperd.yaml"

enum log_level {
	LOG_LEVEL_ERROR,
	LOG_LEVEL_WARNING,
	LOG_LEVEL_NOTICE,
	LOG_LEVEL_INFO,
	LOG_LEVEL_DEBUG,
};

enum node_manager {
	NODE_MANAGER_AUTO,
	NODE_MANAGER_SYSTEMD,	/* cachekeeper-redis@ units over D-Bus */
	NODE_MANAGER_PROCESS,	/* detached redis-server processes */
};

struct dconf_local {
	char		*redis_server;
	char		*bind;
	int		 port_min;
	int		 port_max;
	char		*data_dir;
	uint64_t	 failover_after_ms;
	struct kvlist	 instance_types;	/* type -> maxmemory text */
	/* Cluster mode. */
	uint64_t	 cluster_node_timeout_ms;
	int		 migrate_batch;		/* keys per MIGRATE */
	int		 migrate_pipeline;	/* MIGRATEs in flight per slot */
	int		 migrate_slots;		/* slots moved at once */
	enum node_manager node_manager;
};

struct dconf_elasticache {
	char		*region;
	char		*endpoint;
	char		*profile;
	uint64_t	 poll_interval_ms;	/* while a group is busy */
	int		 max_calls_per_second;	/* the daemon's own limit */
};

/* backups.s3: off-host copies of the local backend's snapshots. */
struct dconf_s3 {
	char		*bucket;	/* NULL: no uploads */
	char		*prefix;	/* "" or ending in '/' */
	char		*region;
	char		*endpoint;	/* NULL: https://s3.REGION.amazonaws.com */
	uint64_t	 part_size;	/* bytes; multipart above it */
	int		 retries;	/* per request */
};

struct dconf {
	char		*file;		/* NULL: built-in defaults */
	char		*clusters_dir;
	char		*state_dir;
	uint64_t	 resync_interval_ms;
	enum log_level	 log_level;
	char		*default_backend;
	char		*control_socket;
	/*
	 * control_socket_group: the group that owns the socket and may make
	 * changes through it, besides root and the daemon's user. Unset:
	 * the daemon's primary group, as before the key existed.
	 */
	char		*control_group;		/* as written; NULL: unset */
	gid_t		 control_gid;		/* resolved at load time */
	bool		 control_group_set;
	char		*metrics_listen;	/* NULL when off */
	/* Snapshot encryption key (0600), or NULL: see backup_crypt.c. */
	char		*backup_key_file;
	struct dconf_local	 local;
	struct dconf_elasticache elasticache;
	struct dconf_s3		 s3;
	/* A local snapshot's BGSAVE and copy, together, at most. */
	uint64_t		 snapshot_timeout_ms;
	/* Mass-deletion guard: more specs than this gone at once are held. */
	double			 guard_max_fraction;	/* of known clusters */
	int			 guard_max_count;
};

/* A configuration with every default. */
struct dconf	*dconf_new_defaults(void);
/*
 * Load path into a new configuration. missing_ok: a missing file yields the
 * defaults. Returns NULL with diags filled on any error.
 */
struct dconf	*dconf_load(const char *path, int missing_ok, struct diags *);
/* dconf_load() without the check of who may write the file (fuzzing). */
#define DCONF_NO_FILE_CHECK	0x01
struct dconf	*dconf_load_flags(const char *path, int missing_ok,
		    unsigned int flags, struct diags *);
void		 dconf_free(struct dconf *);
const char	*log_level_name(enum log_level);

#endif
