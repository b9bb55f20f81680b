/* Error classes, full-jitter backoff and the call-rate bucket. */
#include "config.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "retry.h"

static void
test_classify(void **state)
{
	assert_int_equal(ec_error_classify(400, "Throttling", "Rate exceeded"),
	    EC_ERR_THROTTLE);
	assert_int_equal(ec_error_classify(400, "RequestLimitExceeded", NULL),
	    EC_ERR_THROTTLE);
	assert_int_equal(ec_error_classify(400,
	    "APICallRateForCustomerExceeded", NULL), EC_ERR_THROTTLE);
	assert_int_equal(ec_error_classify(500, "InternalFailure", NULL),
	    EC_ERR_TRANSIENT);
	assert_int_equal(ec_error_classify(503, NULL, NULL), EC_ERR_TRANSIENT);
	assert_int_equal(ec_error_classify(0, NULL, NULL), EC_ERR_TRANSIENT);
	assert_int_equal(ec_error_classify(400, "InvalidReplicationGroupState",
	    NULL), EC_ERR_WAIT);
	assert_int_equal(ec_error_classify(400, "InvalidParameterValue", NULL),
	    EC_ERR_TERMINAL);
	assert_int_equal(ec_error_classify(400, "InsufficientCacheCluster"
	    "Capacity", NULL), EC_ERR_TERMINAL);
	/* AWS says "nothing to do" as an error: it is a success. */
	assert_int_equal(ec_error_classify(400, "InvalidParameterCombination",
	    "No modifications were requested."), EC_ERR_NO_CHANGE);
	assert_int_equal(ec_error_classify(400, "InvalidParameterCombination",
	    "Automatic failover needs a replica"), EC_ERR_TERMINAL);
	assert_int_equal(ec_error_classify(404, "ReplicationGroupNotFound"
	    "Fault", NULL), EC_ERR_NOT_FOUND);
	assert_int_equal(ec_error_classify(400, "ReplicationGroupAlreadyExists",
	    NULL), EC_ERR_EXISTS);
	assert_int_equal(ec_error_classify(400, "SomethingNew", NULL),
	    EC_ERR_UNKNOWN);
	assert_int_equal(ec_error_classify(429, NULL, NULL), EC_ERR_THROTTLE);
	assert_string_equal(ec_error_class_name(EC_ERR_WAIT), "busy");
}

static void
test_backoff(void **state)
{
	unsigned int	 a;
	uint64_t	 max_seen = 0;

	/* Full jitter: below base * 2^attempt, never above the cap. */
	assert_int_equal(retry_delay_ms(0, 999), 999);
	assert_int_equal(retry_delay_ms(0, 1000), 0);
	assert_int_equal(retry_delay_ms(1, 1999), 1999);
	assert_int_equal(retry_delay_ms(3, UINT32_MAX) < 8000, 1);
	for (a = 0; a < 40; a++) {
		uint64_t d = retry_delay_ms(a, UINT32_MAX - a);
		assert_true(d < RETRY_CAP_MS);
		if (d > max_seen)
			max_seen = d;
	}
	/* From attempt 5 on (1 s * 2^5 > 20 s) the ceiling is the cap. */
	assert_int_equal(retry_delay_ms(4, 15999), 15999);
	assert_int_equal(retry_delay_ms(4, 16000), 0);
	assert_int_equal(retry_delay_ms(10, 19999), 19999);
	assert_int_equal(retry_delay_ms(10, 20000), 0);
	assert_true(max_seen < RETRY_CAP_MS);
}

static void
test_bucket(void **state)
{
	struct token_bucket	 b;
	int			 i;

	bucket_init(&b, 5.0, 10.0, 1000);
	for (i = 0; i < 10; i++)
		assert_int_equal(bucket_take(&b, 1000), 0);
	/* Empty: the next token comes in 1/5 s. */
	assert_in_range(bucket_take(&b, 1000), 199, 201);
	assert_in_range(bucket_take(&b, 1100), 99, 101);
	assert_int_equal(bucket_take(&b, 1200), 0);
	/* Refills up to the capacity only. */
	for (i = 0; i < 10; i++)
		assert_int_equal(bucket_take(&b, 100000), 0);
	assert_true(bucket_take(&b, 100000) > 0);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_classify),
		cmocka_unit_test(test_backoff),
		cmocka_unit_test(test_bucket),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
