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

#endif
