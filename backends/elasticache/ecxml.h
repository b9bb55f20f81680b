/*
 * ElastiCache Query API responses (version 2015-02-02) parsed with libxml2
 * into typed structs: error responses, and replication groups as
 * DescribeReplicationGroups and the mutating actions return them. Element
 * names follow the API reference; the XML namespace is ignored, unknown
 * elements are skipped, and no entity is ever expanded or fetched. Pure:
 * no I/O, no logging.
 */
#ifndef CK_ECXML_H
#define CK_ECXML_H

#include <stdbool.h>
#include <stddef.h>

#include "schema.h"

/* <ErrorResponse><Error><Type/><Code/><Message/></Error><RequestId/> */
struct ec_error {
	char	*type;		/* Sender or Receiver */
	char	*code;		/* e.g. InvalidReplicationGroupState */
	char	*message;
	char	*request_id;
};

struct ec_member {
	char	*cluster_id;	/* CacheClusterId */
	char	*node_id;	/* CacheNodeId */
	char	*role;		/* CurrentRole: primary, replica (disabled) */
	char	*az;		/* PreferredAvailabilityZone */
	char	*address;	/* ReadEndpoint.Address */
	int	 port;
};

struct ec_node_group {
	char			*id;		/* "0001" */
	char			*status;
	char			*slots;		/* "0-5461" */
	char			*primary_address;
	int			 primary_port;
	struct ec_member	*members;
	size_t			 nmembers;
};

struct ec_rg {
	char			*id;
	char			*description;
	char			*status;	/* creating, available, ... */
	char			*automatic_failover;	/* enabled, enabling, ... */
	char			*multi_az;	/* enabled, disabled */
	char			*node_type;	/* CacheNodeType */
	char			*snapshot_window;
	char			*kms_key_id;
	char			*arn;
	char			*config_address;	/* ConfigurationEndpoint */
	int			 config_port;
	int			 snapshot_retention_limit;	/* -1: absent */
	bool			 cluster_enabled;
	bool			 auth_token_enabled;
	bool			 transit_encryption;
	bool			 at_rest_encryption;
	struct strlist		 member_clusters;
	struct ec_node_group	*groups;
	size_t			 ngroups;
	struct kvlist		 pending;	/* PendingModifiedValues, flat */
};

struct ec_rg_page {
	struct ec_rg	*v;
	size_t		 n;
	char		*marker;	/* NULL: last page */
	char		*request_id;
};

/*
 * Whether xml is an ErrorResponse; fills err (free with ec_error_free).
 * Returns 1 for an error response, 0 for anything else, -EINVAL when the
 * text is not XML at all.
 */
int	 ecxml_parse_error(const char *xml, size_t len, struct ec_error *err);
void	 ec_error_free(struct ec_error *);

/* A DescribeReplicationGroups page. 0, or -EINVAL with *cause set. */
int	 ecxml_parse_describe_rgs(const char *xml, size_t len,
	    struct ec_rg_page *, char **cause);
/*
 * The ReplicationGroup of a Create/Modify/Delete/IncreaseReplicaCount/...
 * response (<ActionResult><ReplicationGroup>). 0 or -EINVAL.
 */
int	 ecxml_parse_rg_result(const char *xml, size_t len, struct ec_rg *,
	    char **cause);
void	 ec_rg_free(struct ec_rg *);	/* frees the contents only */
void	 ec_rg_page_free(struct ec_rg_page *);

/* A member cache cluster, as DescribeCacheClusters shows it. */
struct ec_cc {
	char		*id;		/* CacheClusterId */
	char		*status;	/* CacheClusterStatus */
	char		*rg_id;		/* ReplicationGroupId */
	char		*engine_version;
	char		*node_type;
	char		*maintenance_window;	/* PreferredMaintenanceWindow */
	char		*param_group;	/* CacheParameterGroupName */
	char		*topic_arn;	/* NotificationConfiguration */
	char		*subnet_group;	/* CacheSubnetGroupName */
	struct strlist	 security_groups;	/* SecurityGroupId */
	struct kvlist	 pending;	/* PendingModifiedValues, flat */
};

struct ec_cc_page {
	struct ec_cc	*v;
	size_t		 n;
	char		*marker;
};

/* One DescribeEvents entry. */
struct ec_event {
	char	*source_id;
	char	*source_type;
	char	*message;
	char	*date;		/* ISO 8601, as AWS sends it */
};

struct ec_event_page {
	struct ec_event	*v;
	size_t		 n;
	char		*marker;
};

/* STS credentials (AssumeRoleWithWebIdentity). */
struct ec_sts_creds {
	char	*access_key_id;
	char	*secret_access_key;
	char	*session_token;
	char	*expiration;	/* ISO 8601 */
};

int	 ecxml_parse_describe_ccs(const char *xml, size_t len,
	    struct ec_cc_page *, char **cause);
void	 ec_cc_page_free(struct ec_cc_page *);
int	 ecxml_parse_describe_events(const char *xml, size_t len,
	    struct ec_event_page *, char **cause);
void	 ec_event_page_free(struct ec_event_page *);
/* Wipes the secrets as it frees. */
int	 ecxml_parse_sts_creds(const char *xml, size_t len,
	    struct ec_sts_creds *, char **cause);
void	 ec_sts_creds_free(struct ec_sts_creds *);
/* Tags of ListTagsForResource. */
int	 ecxml_parse_tags(const char *xml, size_t len, struct kvlist *,
	    char **cause);

#endif
