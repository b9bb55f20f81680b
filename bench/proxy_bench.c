/*
 * bench/proxy_bench: the endpoint proxy alone, for bench/proxy.sh.
 *
 *   proxy_bench TARGET [LISTEN_PORT]
 *
 * Listens on 127.0.0.1:LISTEN_PORT (default: a free port), forwards every
 * client to TARGET, 127.0.0.1:PORT or a unix socket path (how the daemon
 * reaches its nodes), prints "port N" once listening and runs
 * until SIGTERM or SIGINT, then prints how many connections it accepted.
 * Same code as the daemon's proxy, one thread, one event_base.
 */
#include "config.h"

#include <sys/types.h>
#include <sys/socket.h>
#include <sys/un.h>

#include <arpa/inet.h>
#include <netinet/in.h>

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/event.h>

#include "local/proxy.h"
#include "util.h"

static struct sockaddr_storage	 target;
static socklen_t		 target_len;

static int
bench_pick(void *arg, struct sockaddr_storage *addr, socklen_t *len)
{
	memcpy(addr, &target, target_len);
	*len = target_len;
	return 0;
}

static void
bench_on_signal(evutil_socket_t sig, short ev, void *arg)
{
	event_base_loopbreak(arg);
}

int
main(int argc, char **argv)
{
	struct event_base	*base;
	struct event		*sigterm, *sigint;
	struct proxy		*p;
	char			*cause;
	int			 listen_port = 0;

	if (argc < 2 || argc > 3) {
		fprintf(stderr, "usage: proxy_bench TARGET_PORT|SOCKET_PATH "
		    "[LISTEN_PORT]\n");
		return 2;
	}
	if (argc == 3)
		listen_port = atoi(argv[2]);
	memset(&target, 0, sizeof(target));
	if (argv[1][0] == '/') {
		struct sockaddr_un *sun = (struct sockaddr_un *)&target;

		if (strlen(argv[1]) >= sizeof(sun->sun_path)) {
			fprintf(stderr, "proxy_bench: path too long\n");
			return 2;
		}
		sun->sun_family = AF_UNIX;
		strcpy(sun->sun_path, argv[1]);
		target_len = sizeof(*sun);
	} else {
		struct sockaddr_in *sin = (struct sockaddr_in *)&target;

		sin->sin_family = AF_INET;
		sin->sin_port = htons((uint16_t)atoi(argv[1]));
		sin->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
		target_len = sizeof(*sin);
	}

	signal(SIGPIPE, SIG_IGN);
	if ((base = event_base_new()) == NULL) {
		fprintf(stderr, "event_base_new failed\n");
		return 1;
	}
	p = proxy_new(base, "127.0.0.1", listen_port, bench_pick, NULL,
	    &cause);
	if (p == NULL) {
		fprintf(stderr, "proxy_bench: %s\n", cause);
		free(cause);
		event_base_free(base);
		return 1;
	}
	sigterm = evsignal_new(base, SIGTERM, bench_on_signal, base);
	sigint = evsignal_new(base, SIGINT, bench_on_signal, base);
	evsignal_add(sigterm, NULL);
	evsignal_add(sigint, NULL);
	printf("port %d\n", proxy_port(p));
	fflush(stdout);

	event_base_dispatch(base);

	printf("accepted %llu\n",
	    (unsigned long long)proxy_accepted_total(p));
	proxy_free(p);
	event_free(sigterm);
	event_free(sigint);
	event_base_free(base);
	return 0;
}
