/*
 * Local nodes as systemd units: under systemd, each node runs as an
 * instance of the shipped template cachekeeper-redis@.service, named by
 * its directory below data_dir (CLUSTER/NODE, escaped as systemd-escape
 * does), and cachekeeperd starts and kills it over D-Bus with sd-bus.
 * The node then lives in its own control group, not in the daemon's, so
 * stopping, restarting or upgrading cachekeeperd.service never touches
 * it.
 *
 * The calls are synchronous with a short timeout: a node starts or goes
 * away a few times in a cluster's life, never on the hot path, and the
 * daemon waited for a fork and exec before too. The connection is the
 * system bus; as root without one (a minimal system, a test booting
 * systemd in a namespace), the manager's private socket, as systemctl
 * does.
 */
#include "config.h"

#include <sys/stat.h>

#include <errno.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <systemd/sd-bus.h>
#include <systemd/sd-daemon.h>

#include "log.h"
#include "node.h"
#include "util.h"

#define SD_DEST		"org.freedesktop.systemd1"
#define SD_PATH		"/org/freedesktop/systemd1"
#define SD_MANAGER	"org.freedesktop.systemd1.Manager"
#define SD_UNIT		"org.freedesktop.systemd1.Unit"
#define SD_SERVICE	"org.freedesktop.systemd1.Service"
#define CALL_TIMEOUT_US	(10 * 1000 * 1000)
/* The template's paths: %S/cachekeeper/local/%I. */
#define UNIT_DATA_DIR	"/var/lib/cachekeeper/local"

static struct {
	bool		 units;		/* nodes are units */
	char		*data_dir;	/* as configured, without a final / */
	char		*reason;	/* why units are or are not used */
	sd_bus		*bus;
} nu;

char *
node_unit_name(const char *data_dir, const char *dir)
{
	static const char hex[] = "0123456789abcdef";
	struct strbuf	  sb = { 0 };
	size_t		  dl = strlen(data_dir);
	const char	 *p, *start;

	while (dl > 1 && data_dir[dl - 1] == '/')
		dl--;
	if (strncmp(dir, data_dir, dl) != 0 || dir[dl] != '/')
		return NULL;
	p = dir + dl;
	while (*p == '/')
		p++;
	if (*p == '\0')
		return NULL;
	start = p;
	strbuf_puts(&sb, "cachekeeper-redis@");
	/* unit_name_escape(): "/" is "-", anything else outside
	 * [A-Za-z0-9:_.] (and a leading ".") is "\xNN". */
	for (; *p != '\0'; p++) {
		unsigned char c = (unsigned char)*p;

		if (c == '/') {
			while (p[1] == '/')
				p++;
			if (p[1] != '\0')
				strbuf_add(&sb, "-", 1);
		} else if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
		    (c >= '0' && c <= '9') || c == ':' || c == '_' ||
		    (c == '.' && p != start)) {
			strbuf_add(&sb, (const char *)&c, 1);
		} else {
			char e[4] = { '\\', 'x', hex[c >> 4], hex[c & 15] };
			strbuf_add(&sb, e, 4);
		}
	}
	strbuf_puts(&sb, ".service");
	return strbuf_detach(&sb);
}

static int
bus_connect(char **cause)
{
	sd_bus	*b = NULL;
	int	 r;

	if (nu.bus != NULL && sd_bus_is_open(nu.bus) > 0)
		return 0;
	nu.bus = sd_bus_flush_close_unref(nu.bus);
	r = sd_bus_open_system(&b);
	if (r >= 0 && (r = sd_bus_is_bus_client(b)) >= 0) {
		/* sd_bus_open_system() connects lazily: say hello now. */
		r = sd_bus_call_method(b, "org.freedesktop.DBus",
		    "/org/freedesktop/DBus", "org.freedesktop.DBus",
		    "GetId", NULL, NULL, "");
	}
	if (r < 0 && geteuid() == 0) {
		b = sd_bus_flush_close_unref(b);
		if ((r = sd_bus_new(&b)) >= 0 &&
		    (r = sd_bus_set_address(b,
		    "unix:path=/run/systemd/private")) >= 0)
			r = sd_bus_start(b);
	}
	if (r < 0) {
		sd_bus_flush_close_unref(b);
		xasprintf(cause, "cannot reach systemd over D-Bus: %s",
		    strerror(-r));
		return r;
	}
	sd_bus_set_method_call_timeout(b, CALL_TIMEOUT_US);
	nu.bus = b;
	return 0;
}

static int
call(const char *method, char **cause, sd_bus_message **reply,
    const char *types, ...)
{
	sd_bus_error	 e = SD_BUS_ERROR_NULL;
	sd_bus_message	*m = NULL;
	va_list		 ap;
	int		 r, tries;

	for (tries = 0; tries < 2; tries++) {
		if ((r = bus_connect(cause)) < 0)
			return r;
		if ((r = sd_bus_message_new_method_call(nu.bus, &m, SD_DEST,
		    SD_PATH, SD_MANAGER, method)) < 0)
			break;
		va_start(ap, types);
		r = sd_bus_message_appendv(m, types, ap);
		va_end(ap);
		if (r < 0)
			break;
		r = sd_bus_call(nu.bus, m, CALL_TIMEOUT_US, &e, reply);
		m = sd_bus_message_unref(m);
		/* systemd re-executed (daemon-reexec, an upgrade): once more
		 * on a new connection. */
		if (r == -ECONNRESET || r == -ENOTCONN || r == -EPIPE) {
			sd_bus_error_free(&e);
			nu.bus = sd_bus_flush_close_unref(nu.bus);
			continue;
		}
		break;
	}
	sd_bus_message_unref(m);
	if (r < 0 && cause != NULL)
		xasprintf(cause, "systemd %s: %s", method,
		    e.message != NULL ? e.message : strerror(-r));
	sd_bus_error_free(&e);
	return r;
}

/* The unit's object path (loading it), or NULL with *cause. */
static char *
unit_path(const char *name, char **cause)
{
	sd_bus_message	*reply = NULL;
	const char	*path;
	char		*s = NULL;

	if (call("LoadUnit", cause, &reply, "s", name) < 0)
		return NULL;
	if (sd_bus_message_read(reply, "o", &path) >= 0)
		s = xstrdup(path);
	else
		xasprintf(cause, "systemd LoadUnit %s: bad reply", name);
	sd_bus_message_unref(reply);
	return s;
}

static char *
unit_string(const char *path, const char *iface, const char *prop)
{
	sd_bus_error	 e = SD_BUS_ERROR_NULL;
	char		*v = NULL;

	if (sd_bus_get_property_string(nu.bus, SD_DEST, path, iface, prop,
	    &e, &v) < 0)
		v = NULL;
	sd_bus_error_free(&e);
	return v;
}

static pid_t
unit_main_pid(const char *path)
{
	sd_bus_error	 e = SD_BUS_ERROR_NULL;
	uint32_t	 pid = 0;

	if (sd_bus_get_property_trivial(nu.bus, SD_DEST, path, SD_SERVICE,
	    "MainPID", &e, 'u', &pid) < 0)
		pid = 0;
	sd_bus_error_free(&e);
	return (pid_t)pid;
}

static void
nap_ms(long ms)
{
	struct timespec ts = { ms / 1000, (ms % 1000) * 1000000L };

	while (nanosleep(&ts, &ts) == -1 && errno == EINTR)
		;
}

/* Whether the template is installed: an instance of it loads. */
static int
template_loads(char **cause)
{
	const char	*name = "cachekeeper-redis@probe.service";
	char		*path, *state;
	int		 ok;

	if ((path = unit_path(name, cause)) == NULL)
		return 0;
	state = unit_string(path, SD_UNIT, "LoadState");
	ok = state != NULL && strcmp(state, "loaded") == 0;
	if (!ok)
		xasprintf(cause, "cachekeeper-redis@.service is not installed "
		    "(%s is %s)", name, state != NULL ? state : "unknown");
	free(state);
	free(path);
	return ok;
}

int
node_manager_init(enum node_manager mode, const char *data_dir,
    char **cause)
{
	char	 real[PATH_MAX], *why = NULL;
	size_t	 dl;

	free(nu.data_dir);
	free(nu.reason);
	nu.reason = NULL;
	nu.data_dir = xstrdup(data_dir);
	dl = strlen(nu.data_dir);
	while (dl > 1 && nu.data_dir[dl - 1] == '/')
		nu.data_dir[--dl] = '\0';
	nu.units = false;
	if (mode == NODE_MANAGER_PROCESS) {
		nu.reason = xstrdup("local.node_manager is process");
		return 0;
	}
	if (mode == NODE_MANAGER_AUTO) {
		if (sd_booted() <= 0) {
			nu.reason = xstrdup("systemd is not the init system");
			return 0;
		}
		/* Not there yet on a first start: the name as written. */
		if (realpath(nu.data_dir, real) == NULL)
			snprintf(real, sizeof real, "%s", nu.data_dir);
		if (strcmp(real, UNIT_DATA_DIR) != 0) {
			xasprintf(&nu.reason, "local.data_dir %s is not the "
			    "template unit's %s (set local.node_manager: "
			    "systemd with a drop-in for the template to use "
			    "units anyway)", data_dir, UNIT_DATA_DIR);
			return 0;
		}
	}
	if (bus_connect(&why) < 0 || !template_loads(&why)) {
		if (mode == NODE_MANAGER_SYSTEMD) {
			/* Units it is: each start tries again, and says
			 * why it cannot. */
			xasprintf(cause, "local.node_manager is systemd, but "
			    "%s", why);
			nu.reason = why;
			nu.units = true;
			return -ENOTSUP;
		}
		xasprintf(&nu.reason, "%s", why);
		free(why);
		nu.bus = sd_bus_flush_close_unref(nu.bus);
		return 0;
	}
	nu.units = true;
	nu.reason = xstrdup("nodes run as cachekeeper-redis@ units");
	return 0;
}

bool
node_manager_units(const char **reason)
{
	if (reason != NULL)
		*reason = nu.reason != NULL ? nu.reason :
		    "nodes run as detached processes";
	return nu.units;
}

void
node_manager_free(void)
{
	nu.bus = sd_bus_flush_close_unref(nu.bus);
	free(nu.data_dir);
	free(nu.reason);
	memset(&nu, 0, sizeof nu);
}

int
node_unit_start(const char *dir, pid_t *pidp, char **cause)
{
	sd_bus_message	*reply = NULL;
	char		*name, *path = NULL, *state = NULL;
	pid_t		 pid = 0, last = 0;
	int		 r, i;

	if ((name = node_unit_name(nu.data_dir, dir)) == NULL) {
		xasprintf(cause, "%s is not below %s", dir, nu.data_dir);
		return -EINVAL;
	}
	/* A unit that failed before (its node killed) starts afresh. */
	(void)call("ResetFailedUnit", NULL, NULL, "s", name);
	if ((r = call("StartUnit", cause, &reply, "ss", name, "replace")) < 0)
		goto out;
	sd_bus_message_unref(reply);
	if ((path = unit_path(name, cause)) == NULL) {
		r = -EIO;
		goto out;
	}
	/*
	 * The job runs until Redis says READY=1, after loading its data;
	 * the monitor waits for PING as it does for a process. Only the
	 * pid is wanted here, and systemd knows it once it has forked.
	 */
	for (i = 0; i < 500; i++) {
		if ((last = unit_main_pid(path)) > 0 && node_pid_alive(last)) {
			pid = last;
			break;
		}
		free(state);
		state = unit_string(path, SD_UNIT, "ActiveState");
		if (state != NULL && (strcmp(state, "failed") == 0 ||
		    (i > 20 && strcmp(state, "inactive") == 0)))
			break;
		nap_ms(10);
	}
	if (pid <= 0) {
		char *res = unit_string(path, SD_SERVICE, "Result");

		xasprintf(cause, "%s did not start (%s, %s, MainPID %ld%s; "
		    "see journalctl -u '%s')", name,
		    state != NULL ? state : "unknown",
		    res != NULL ? res : "unknown", (long)last,
		    last > 0 ? ", not a redis-server this daemon can see" : "",
		    name);
		free(res);
		r = -ECHILD;
		goto out;
	}
	*pidp = pid;
	r = 0;
out:
	free(state);
	free(path);
	free(name);
	return r;
}

void
node_unit_kill(const char *dir, pid_t pid)
{
	char	*name, *path, *state = NULL, *cause = NULL;
	int	 i;

	if ((name = node_unit_name(nu.data_dir, dir)) == NULL)
		return;
	/* SIGKILL as for a process: the node's data goes with it. */
	if (call("KillUnit", &cause, NULL, "ssi", name, "all", SIGKILL) < 0) {
		log_debug("%s", cause);
		free(cause);
		cause = NULL;
		if (pid > 0 && node_pid_alive(pid))
			kill(pid, SIGKILL);
	}
	/*
	 * Wait until systemd has seen it die (the unit is then "failed"),
	 * and forget the unit: it is gone for good, and must not linger in
	 * systemctl --failed.
	 */
	if ((path = unit_path(name, &cause)) == NULL) {
		log_debug("%s", cause);
		free(cause);
		free(name);
		return;
	}
	for (i = 0; i < 400; i++) {
		free(state);
		state = unit_string(path, SD_UNIT, "ActiveState");
		if (state == NULL || strcmp(state, "failed") == 0 ||
		    strcmp(state, "inactive") == 0)
			break;
		nap_ms(5);
	}
	if (state != NULL && strcmp(state, "failed") == 0)
		(void)call("ResetFailedUnit", NULL, NULL, "s", name);
	else if (state == NULL || strcmp(state, "inactive") != 0)
		(void)call("StopUnit", NULL, NULL, "ss", name, "replace");
	free(state);
	free(path);
	free(name);
}
