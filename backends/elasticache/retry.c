/*
 * Error classes, backoff and the call-rate bucket; see retry.h. The code
 * lists follow the ElastiCache API reference and the failure modes seen in
 * Terraform's and ACK's issue trackers: a throttled call is retried with
 * full jitter, a busy group is waited out, and a request AWS rejects as
 * invalid is not hammered again until the spec changes.
 */
#include "config.h"

#include <string.h>

#include "retry.h"

static const char *const throttle_codes[] = {
	"Throttling", "ThrottlingException", "RequestLimitExceeded",
	"APICallRateForCustomerExceeded", "TooManyRequestsException",
	"RequestThrottled", "SlowDown", NULL
};

static const char *const wait_codes[] = {
	"InvalidReplicationGroupState", "InvalidCacheClusterState",
	"InvalidSnapshotState", "InvalidGlobalReplicationGroupState",
	"ReplicationGroupNotUnderMigrationFault", NULL
};

static const char *const terminal_codes[] = {
	"InvalidParameterValue", "InvalidParameterCombination",
	"InsufficientCacheClusterCapacity", "NodeQuotaForClusterExceeded",
	"NodeQuotaForCustomerExceeded", "ClusterQuotaForCustomerExceeded",
	"NodeGroupsPerReplicationGroupQuotaExceeded",
	"ReplicationGroupQuotaExceeded", "TagQuotaPerResourceExceeded",
	"InvalidVPCNetworkStateFault", "InvalidKMSKeyFault",
	"CacheSubnetGroupNotFoundFault", "CacheParameterGroupNotFound",
	"CacheSecurityGroupNotFound", "InvalidSubnet",
	"SnapshotAlreadyExistsFault", "SnapshotQuotaExceededFault",
	"NoOperationFault", "TestFailoverNotAvailableFault",
	"InvalidClientTokenId", "UnrecognizedClientException",
	"SignatureDoesNotMatch", "AccessDenied", "AccessDeniedException",
	"AuthFailure", "OptInRequired", NULL
};

static bool
in(const char *code, const char *const *list)
{
	for (; *list != NULL; list++)
		if (strcmp(code, *list) == 0)
			return true;
	return false;
}

enum ec_error_class
ec_error_classify(long status, const char *code, const char *message)
{
	if (status == 0)
		return EC_ERR_TRANSIENT;
	if (code != NULL) {
		if (in(code, throttle_codes))
			return EC_ERR_THROTTLE;
		if (strcmp(code, "InvalidParameterCombination") == 0 &&
		    message != NULL &&
		    strstr(message, "No modifications were requested"))
			return EC_ERR_NO_CHANGE;
		if (strcmp(code, "ReplicationGroupNotFoundFault") == 0 ||
		    strcmp(code, "CacheClusterNotFound") == 0)
			return EC_ERR_NOT_FOUND;
		if (strcmp(code, "ReplicationGroupAlreadyExists") == 0 ||
		    strcmp(code, "ReplicationGroupAlreadyExistsFault") == 0)
			return EC_ERR_EXISTS;
		if (in(code, wait_codes))
			return EC_ERR_WAIT;
		if (in(code, terminal_codes))
			return EC_ERR_TERMINAL;
	}
	if (status == 429)
		return EC_ERR_THROTTLE;
	if (status >= 500)
		return EC_ERR_TRANSIENT;
	return EC_ERR_UNKNOWN;
}

const char *
ec_error_class_name(enum ec_error_class c)
{
	static const char *const names[] = {
		"throttled", "transient", "busy", "terminal", "not found",
		"already exists", "no change", "unknown"
	};

	return names[c];
}

uint64_t
retry_delay_ms(unsigned int attempt, uint32_t r)
{
	uint64_t	 ceiling = RETRY_BASE_MS;

	while (attempt-- > 0 && ceiling < RETRY_CAP_MS)
		ceiling *= 2;
	if (ceiling > RETRY_CAP_MS)
		ceiling = RETRY_CAP_MS;
	return (uint64_t)r % ceiling;
}

void
bucket_init(struct token_bucket *b, double rate, double capacity,
    uint64_t now_ms)
{
	b->rate = rate;
	b->capacity = capacity;
	b->tokens = capacity;
	b->last_ms = now_ms;
}

uint64_t
bucket_take(struct token_bucket *b, uint64_t now_ms)
{
	double	 need;

	if (now_ms > b->last_ms) {
		b->tokens += (double)(now_ms - b->last_ms) / 1000.0 * b->rate;
		if (b->tokens > b->capacity)
			b->tokens = b->capacity;
		b->last_ms = now_ms;
	}
	if (b->tokens >= 1.0) {
		b->tokens -= 1.0;
		return 0;
	}
	need = (1.0 - b->tokens) / b->rate * 1000.0;
	return (uint64_t)need + 1;
}
