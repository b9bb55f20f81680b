/*
 * cachekeeperd-test: the real daemon with the in-memory "test" backend
 * registered, for the framework's integration tests. Everything else is
 * the same code as cachekeeperd.
 */
#include "config.h"

#include "daemon.h"
#include "test_backend.h"

int
main(int argc, char **argv)
{
	int	 rc;

	backend_register(&backend_test);
	rc = daemon_main(argc, argv);
	test_backend_cleanup();
	return rc;
}
