/*
 * ElastiCache XML responses into structs: the shapes AWS returns (from the
 * API reference), errors, pagination markers, pending changes, and hostile
 * input (entities, non-XML, wrong documents).
 */
#include "config.h"

#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "ecxml.h"

static const char describe_xml[] =
"<DescribeReplicationGroupsResponse xmlns=\"http://elasticache.amazonaws.com/doc/2015-02-02/\">\n"
"  <DescribeReplicationGroupsResult>\n"
"    <Marker>page-2</Marker>\n"
"    <ReplicationGroups>\n"
"      <ReplicationGroup>\n"
"        <ReplicationGroupId>sessions</ReplicationGroupId>\n"
"        <Description>web sessions</Description>\n"
"        <Status>modifying</Status>\n"
"        <PendingModifiedValues>\n"
"          <AutomaticFailoverStatus>enabled</AutomaticFailoverStatus>\n"
"          <Resharding><SlotMigration><ProgressPercentage>42.5</ProgressPercentage></SlotMigration></Resharding>\n"
"        </PendingModifiedValues>\n"
"        <MemberClusters>\n"
"          <ClusterId>sessions-001</ClusterId>\n"
"          <ClusterId>sessions-002</ClusterId>\n"
"        </MemberClusters>\n"
"        <NodeGroups>\n"
"          <NodeGroup>\n"
"            <NodeGroupId>0001</NodeGroupId>\n"
"            <Status>available</Status>\n"
"            <PrimaryEndpoint><Address>sessions.abc.ng.0001.use1.cache.amazonaws.com</Address><Port>6379</Port></PrimaryEndpoint>\n"
"            <NodeGroupMembers>\n"
"              <NodeGroupMember>\n"
"                <CacheClusterId>sessions-001</CacheClusterId>\n"
"                <CacheNodeId>0001</CacheNodeId>\n"
"                <ReadEndpoint><Address>sessions-001.abc.0001.use1.cache.amazonaws.com</Address><Port>6379</Port></ReadEndpoint>\n"
"                <PreferredAvailabilityZone>us-east-1a</PreferredAvailabilityZone>\n"
"                <CurrentRole>primary</CurrentRole>\n"
"              </NodeGroupMember>\n"
"              <NodeGroupMember>\n"
"                <CacheClusterId>sessions-002</CacheClusterId>\n"
"                <CacheNodeId>0001</CacheNodeId>\n"
"                <PreferredAvailabilityZone>us-east-1b</PreferredAvailabilityZone>\n"
"                <CurrentRole>replica</CurrentRole>\n"
"              </NodeGroupMember>\n"
"            </NodeGroupMembers>\n"
"          </NodeGroup>\n"
"        </NodeGroups>\n"
"        <AutomaticFailover>enabling</AutomaticFailover>\n"
"        <MultiAZ>disabled</MultiAZ>\n"
"        <SnapshotRetentionLimit>7</SnapshotRetentionLimit>\n"
"        <SnapshotWindow>06:00-07:00</SnapshotWindow>\n"
"        <ClusterEnabled>false</ClusterEnabled>\n"
"        <CacheNodeType>cache.t4g.small</CacheNodeType>\n"
"        <AuthTokenEnabled>true</AuthTokenEnabled>\n"
"        <TransitEncryptionEnabled>true</TransitEncryptionEnabled>\n"
"        <AtRestEncryptionEnabled>false</AtRestEncryptionEnabled>\n"
"        <ARN>arn:aws:elasticache:us-east-1:123456789012:replicationgroup:sessions</ARN>\n"
"      </ReplicationGroup>\n"
"      <ReplicationGroup>\n"
"        <ReplicationGroupId>catalog</ReplicationGroupId>\n"
"        <Status>available</Status>\n"
"        <NodeGroups>\n"
"          <NodeGroup><NodeGroupId>0001</NodeGroupId><Status>available</Status><Slots>0-8191</Slots></NodeGroup>\n"
"          <NodeGroup><NodeGroupId>0002</NodeGroupId><Status>available</Status><Slots>8192-16383</Slots></NodeGroup>\n"
"        </NodeGroups>\n"
"        <ConfigurationEndpoint><Address>catalog.abc.clustercfg.use1.cache.amazonaws.com</Address><Port>6379</Port></ConfigurationEndpoint>\n"
"        <ClusterEnabled>true</ClusterEnabled>\n"
"      </ReplicationGroup>\n"
"    </ReplicationGroups>\n"
"  </DescribeReplicationGroupsResult>\n"
"  <ResponseMetadata><RequestId>b7a7c1e2-0000-4000-8000-000000000001</RequestId></ResponseMetadata>\n"
"</DescribeReplicationGroupsResponse>\n";

static void
test_describe(void **state)
{
	struct ec_rg_page	 p;
	char			*cause = NULL;
	struct ec_rg		*s, *c;

	assert_int_equal(ecxml_parse_describe_rgs(describe_xml,
	    strlen(describe_xml), &p, &cause), 0);
	assert_int_equal(p.n, 2);
	assert_string_equal(p.marker, "page-2");
	assert_string_equal(p.request_id,
	    "b7a7c1e2-0000-4000-8000-000000000001");
	s = &p.v[0];
	assert_string_equal(s->id, "sessions");
	assert_string_equal(s->status, "modifying");
	assert_string_equal(s->automatic_failover, "enabling");
	assert_string_equal(s->multi_az, "disabled");
	assert_string_equal(s->node_type, "cache.t4g.small");
	assert_string_equal(s->snapshot_window, "06:00-07:00");
	assert_int_equal(s->snapshot_retention_limit, 7);
	assert_false(s->cluster_enabled);
	assert_true(s->auth_token_enabled);
	assert_true(s->transit_encryption);
	assert_false(s->at_rest_encryption);
	assert_int_equal(s->member_clusters.n, 2);
	assert_string_equal(s->member_clusters.v[1], "sessions-002");
	assert_int_equal(s->ngroups, 1);
	assert_string_equal(s->groups[0].id, "0001");
	assert_int_equal(s->groups[0].primary_port, 6379);
	assert_int_equal(s->groups[0].nmembers, 2);
	assert_string_equal(s->groups[0].members[0].role, "primary");
	assert_string_equal(s->groups[0].members[1].az, "us-east-1b");
	assert_null(s->groups[0].members[1].address);
	assert_string_equal(kvlist_get(&s->pending, "AutomaticFailoverStatus"),
	    "enabled");
	assert_string_equal(kvlist_get(&s->pending,
	    "Resharding.SlotMigration.ProgressPercentage"), "42.5");
	c = &p.v[1];
	assert_true(c->cluster_enabled);
	assert_int_equal(c->snapshot_retention_limit, -1);
	assert_int_equal(c->ngroups, 2);
	assert_string_equal(c->groups[1].slots, "8192-16383");
	assert_string_equal(c->config_address,
	    "catalog.abc.clustercfg.use1.cache.amazonaws.com");
	ec_rg_page_free(&p);
}

static void
test_last_page_has_no_marker(void **state)
{
	static const char xml[] =
	    "<DescribeReplicationGroupsResponse><DescribeReplicationGroupsResult>"
	    "<ReplicationGroups/></DescribeReplicationGroupsResult>"
	    "</DescribeReplicationGroupsResponse>";
	struct ec_rg_page	 p;
	char			*cause = NULL;

	assert_int_equal(ecxml_parse_describe_rgs(xml, strlen(xml), &p,
	    &cause), 0);
	assert_int_equal(p.n, 0);
	assert_null(p.marker);
	ec_rg_page_free(&p);
}

static void
test_error_response(void **state)
{
	static const char xml[] =
	    "<ErrorResponse xmlns=\"http://elasticache.amazonaws.com/doc/2015-02-02/\">"
	    "<Error><Type>Sender</Type><Code>InvalidReplicationGroupState</Code>"
	    "<Message>Replication group must be in available state to modify."
	    "</Message></Error><RequestId>req-1</RequestId></ErrorResponse>";
	struct ec_error	 e;

	assert_int_equal(ecxml_parse_error(xml, strlen(xml), &e), 1);
	assert_string_equal(e.type, "Sender");
	assert_string_equal(e.code, "InvalidReplicationGroupState");
	assert_string_equal(e.message, "Replication group must be in "
	    "available state to modify.");
	assert_string_equal(e.request_id, "req-1");
	ec_error_free(&e);
	/* A normal response is not an error. */
	assert_int_equal(ecxml_parse_error(describe_xml, strlen(describe_xml),
	    &e), 0);
	ec_error_free(&e);
}

static void
test_mutating_action_result(void **state)
{
	static const char xml[] =
	    "<ModifyReplicationGroupResponse><ModifyReplicationGroupResult>"
	    "<ReplicationGroup><ReplicationGroupId>sessions</ReplicationGroupId>"
	    "<Status>modifying</Status><PendingModifiedValues>"
	    "<PrimaryClusterId>sessions-002</PrimaryClusterId>"
	    "</PendingModifiedValues></ReplicationGroup>"
	    "</ModifyReplicationGroupResult></ModifyReplicationGroupResponse>";
	struct ec_rg	 rg;
	char		*cause = NULL;

	assert_int_equal(ecxml_parse_rg_result(xml, strlen(xml), &rg, &cause),
	    0);
	assert_string_equal(rg.id, "sessions");
	assert_string_equal(rg.status, "modifying");
	assert_string_equal(kvlist_get(&rg.pending, "PrimaryClusterId"),
	    "sessions-002");
	ec_rg_free(&rg);
}

static void
test_bad_input(void **state)
{
	static const char xxe[] =
	    "<?xml version=\"1.0\"?>\n<!DOCTYPE r [<!ENTITY x SYSTEM "
	    "\"file:///etc/passwd\">]>\n<ModifyReplicationGroupResponse>"
	    "<ModifyReplicationGroupResult><ReplicationGroup>"
	    "<ReplicationGroupId>&x;</ReplicationGroupId></ReplicationGroup>"
	    "</ModifyReplicationGroupResult></ModifyReplicationGroupResponse>";
	static const char junk[] = "<html><body>502 Bad Gateway</body></html>";
	struct ec_rg		 rg;
	struct ec_rg_page	 p;
	struct ec_error		 e;
	char			*cause = NULL;

	/* An external entity is never fetched nor expanded. */
	if (ecxml_parse_rg_result(xxe, strlen(xxe), &rg, &cause) == 0) {
		assert_null(strstr(rg.id, "root:"));
		ec_rg_free(&rg);
	} else
		free(cause);
	cause = NULL;
	assert_int_equal(ecxml_parse_describe_rgs(junk, strlen(junk), &p,
	    &cause), -EINVAL);
	assert_string_equal(cause, "expected <DescribeReplicationGroupsResponse>"
	    ", got <html>");
	free(cause);
	ec_rg_page_free(&p);
	cause = NULL;
	assert_int_equal(ecxml_parse_describe_rgs("not xml", 7, &p, &cause),
	    -EINVAL);
	free(cause);
	assert_int_equal(ecxml_parse_error("\x01\x02", 2, &e), -EINVAL);
	assert_int_equal(ecxml_parse_error(junk, strlen(junk), &e), 0);
	ec_error_free(&e);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_describe),
		cmocka_unit_test(test_last_page_has_no_marker),
		cmocka_unit_test(test_error_response),
		cmocka_unit_test(test_mutating_action_result),
		cmocka_unit_test(test_bad_input),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
