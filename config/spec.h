/*
 * Cluster specs: the YAML contract users write (apiVersion cachekeeper/v1,
 * kind RedisCluster), parsed into typed structs with every default filled
 * in, and validated strictly. A file parses completely or not at all: the
 * caller gets its valid specs only when the whole file is valid.
 */
#ifndef CK_SPEC_H
#define CK_SPEC_H

#include <stdbool.h>
#include <stdint.h>

#include <jansson.h>

#include "diag.h"
#include "schema.h"
#include "window.h"

#define SPEC_MAX_FILE_BYTES	(1024 * 1024)	/* 1 MiB */
#define SPEC_NAME_MAX		40
#define SPEC_API_VERSION	"cachekeeper/v1"
#define SPEC_KIND		"RedisCluster"

enum persistence {
	PERSIST_RDB,
	PERSIST_AOF,
	PERSIST_NONE,
};

enum deletion_policy {
	DELETION_RETAIN,
	DELETION_DELETE,
};

struct spec_elasticache {
	char		*subnet_group_name;
	struct strlist	 security_group_ids;
	char		*kms_key_id;
	char		*notification_topic_arn;
	struct strlist	 preferred_availability_zones;
};

struct spec_local {
	uint64_t	 maxmemory;	/* bytes; 0: from instance_type */
	enum persistence persistence;
};

struct cluster_spec {
	char		*name;
	char		*file;		/* where it was defined */
	int		 line;		/* of metadata.name */
	int		 col;
	struct kvlist	 labels;

	char		*backend;
	char		*engine_version;
	char		*instance_type;
	int		 port;
	int		 reader_port;
	bool		 cluster_mode;
	int		 num_node_groups;	/* shards; 1 when disabled */
	int		 replicas_per_node_group;
	int		 cluster_size;		/* nodes per shard, primary too */
	bool		 automatic_failover;
	bool		 multi_az;
	struct window	 snapshot_window;
	int		 snapshot_retention_limit;	/* days */
	bool		 final_snapshot;
	struct window	 maintenance_window;
	bool		 apply_immediately;
	struct kvlist	 parameters;
	char		*parameter_group_name;
	bool		 transit_encryption;
	bool		 at_rest_encryption;
	char		*auth_token_file;
	char		*restore_from;	/* snapshot name; creation only */
	enum deletion_policy deletion_policy;
	struct kvlist	 tags;
	struct spec_elasticache elasticache;
	struct spec_local local;
	bool		 failover_drill;	/* failover_drill: given */
	struct window	 failover_drill_window;

	uint64_t	 generation;	/* hash of the canonical form */
	int		 refs;		/* spec_hold()/spec_free() */
};

/* Where a name was seen in a file, valid or not. */
struct spec_ref {
	char		*name;
	int		 line;
	int		 col;
};

struct spec_list {
	struct cluster_spec	**v;
	size_t			  n;
	struct spec_ref		 *refs;	/* every metadata.name seen */
	size_t			  nrefs;
};

struct spec_opts {
	const char		*default_backend;	/* "local" if NULL */
	const char *const	*backends;	/* NULL: local, elasticache */
};

/*
 * Parse a whole file's text. Valid specs are appended to out only when the
 * file has no error at all; names are always recorded in out->refs so that
 * a caller can tell which clusters a broken file meant. Returns 0 when the
 * file is valid, -1 when diags got errors.
 */
int	 spec_parse_buffer(const char *file, const char *buf, size_t len,
	    const struct spec_opts *, struct spec_list *out, struct diags *);
/* Read path (at most SPEC_MAX_FILE_BYTES) and parse it. */
int	 spec_parse_file(const char *path, const struct spec_opts *,
	    struct spec_list *out, struct diags *);

/* Specs are shared by reference: hold takes one, free drops one. */
struct cluster_spec *spec_hold(struct cluster_spec *);
void	 spec_free(struct cluster_spec *);
void	 spec_list_free(struct spec_list *);
/* A new reference to the canonical JSON of a spec (keys sorted). */
json_t	*spec_to_json(const struct cluster_spec *);
bool	 spec_name_valid(const char *, const char **why);
/* Nodes in the whole cluster. */
int	 spec_node_count(const struct cluster_spec *);

/* Read a whole file of at most max bytes; 0 or -errno. */
int	 read_file_bounded(const char *path, size_t max, char **buf,
	    size_t *len);

#endif
