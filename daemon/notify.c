/*
 * sd_notify; see notify.h. Messages are sent with our own non-blocking
 * sendto() rather than libsystemd's sd_notify(): that one blocks when the
 * receiver's queue is full (net.unix.max_dgram_qlen, often only 10), and a
 * daemon whose supervisor is slow to read must never stall its event loop.
 * A message that does not fit is dropped and logged at debug level; the
 * next STATUS= carries the current state anyway. libsystemd still tells us
 * the watchdog period.
 */
#include "config.h"

#include <sys/socket.h>
#include <sys/un.h>

#include <errno.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <systemd/sd-daemon.h>

#include "log.h"
#include "notify.h"
#include "util.h"

static char	*last_status;

static void
notify_send(const char *msg)
{
	const char		*path = getenv("NOTIFY_SOCKET");
	struct sockaddr_un	 sun;
	socklen_t		 len;
	size_t			 plen;
	int			 fd;

	if (path == NULL || path[0] == '\0')
		return;
	plen = strlen(path);
	if ((path[0] != '/' && path[0] != '@') || plen >= sizeof sun.sun_path) {
		log_debug("NOTIFY_SOCKET '%s' is not usable", path);
		return;
	}
	memset(&sun, 0, sizeof sun);
	sun.sun_family = AF_UNIX;
	memcpy(sun.sun_path, path, plen);
	if (path[0] == '@')
		sun.sun_path[0] = '\0';	/* abstract namespace */
	len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + plen +
	    (path[0] == '@' ? 0 : 1));
	fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (fd == -1) {
		log_debug("notify socket: %s", strerror(errno));
		return;
	}
	if (sendto(fd, msg, strlen(msg), MSG_NOSIGNAL | MSG_DONTWAIT,
	    (struct sockaddr *)&sun, len) == -1)
		log_debug("notify '%.20s': %s, dropped", msg, strerror(errno));
	close(fd);
}

void
notify_ready(void)
{
	notify_send("READY=1");
}

void
notify_reloading(void)
{
	char	*s;

	/* MONOTONIC_USEC lets systemd >= 253 match the reload to us. */
	xasprintf(&s, "RELOADING=1\nMONOTONIC_USEC=%llu",
	    (unsigned long long)clock_mono_us());
	notify_send(s);
	free(s);
}

void
notify_stopping(void)
{
	notify_send("STOPPING=1");
}

void
notify_status(const char *status)
{
	char	*s;

	if (last_status != NULL && strcmp(last_status, status) == 0)
		return;
	free(last_status);
	last_status = xstrdup(status);
	xasprintf(&s, "STATUS=%s", status);
	notify_send(s);
	free(s);
}

void
notify_free(void)
{
	free(last_status);
	last_status = NULL;
}

void
notify_extend_timeout(uint64_t usec)
{
	char	*s;

	xasprintf(&s, "EXTEND_TIMEOUT_USEC=%llu", (unsigned long long)usec);
	notify_send(s);
	free(s);
}

void
notify_watchdog(void)
{
	notify_send("WATCHDOG=1");
}

uint64_t
notify_watchdog_usec(void)
{
	uint64_t	 usec = 0;

	if (sd_watchdog_enabled(0, &usec) <= 0)
		return 0;
	return usec;
}
