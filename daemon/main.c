/* cachekeeperd's entry point; the daemon lives in daemon.c. */
#include "config.h"

#include "daemon.h"

int
main(int argc, char **argv)
{
	return daemon_main(argc, argv);
}
