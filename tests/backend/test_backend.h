/*
 * The "test" backend: an in-memory stand-in that completes every call
 * asynchronously on the event loop, to prove the reconciler framework
 * without a real system. It is linked only into test builds
 * (tests/cachekeeperd-test). Behaviour can be steered per cluster with spec
 * labels:
 *   test-fail: STEP     fail every attempt of that step (create, modify...)
 *   test-fail-times: N  ... only the first N attempts
 *   test-op-ms: N       how long a change takes (default 150 ms)
 * Each applied step is logged at notice level as
 *   "cluster NAME: test backend applies STEP ..." for tests to read.
 */
#ifndef CK_TEST_BACKEND_H
#define CK_TEST_BACKEND_H

#include "backend.h"

extern const struct backend backend_test;
/* Free the in-memory clusters (at exit, for leak checkers). */
void	test_backend_cleanup(void);

#endif
