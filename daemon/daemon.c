/*
 * cachekeeperd: start-up, the event loop's fixed events (signals, resync,
 * heartbeat), reloads and shutdown. Reconciling is the controllers'
 * business; this file only wires things together.
 */
#include "config.h"

#include <sys/file.h>
#include <sys/stat.h>

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "control.h"
#include "daemon.h"
#include "log.h"
#include "metrics.h"
#include "notify.h"
#include "util.h"
#include "watcher.h"

#define HEARTBEAT_DEFAULT_MS	10000

static void
print_diags(const struct diags *d)
{
	size_t	 i;
	char	*s;

	for (i = 0; i < d->n; i++) {
		s = diag_format(&d->v[i]);
		log_error("%s", s);
		free(s);
	}
}

struct daemon *
daemon_new(const char *conf_path, bool missing_ok)
{
	struct daemon	*d = xcalloc(1, sizeof *d);

	d->conf_path = xstrdup(conf_path);
	d->conf_missing_ok = missing_ok;
	d->lock_fd = -1;
	d->reconcilers = htab_new();
	return d;
}

static struct specdir *
new_specdir(struct daemon *d)
{
	struct spec_opts	 o;

	o.default_backend = d->conf->default_backend;
	o.backends = backend_names();
	return specdir_new(d->conf->clusters_dir, &o);
}

static void
on_watch_change(void *arg, bool full)
{
	struct daemon	*d = arg;

	daemon_rescan(d, full ? "full rescan" : "files changed");
}

static void
on_watch_writing(void *arg, const char *path, bool writing)
{
	struct daemon	*d = arg;

	log_debug("%s is %s", path, writing ? "being written" : "closed");
	specdir_mark_writing(d->specs, path, writing);
}

static void
start_watcher(struct daemon *d)
{
	struct watcher_cbs	 cbs = { on_watch_change, on_watch_writing, d };

	watcher_free(d->watcher);
	d->watcher = watcher_new(d->base, d->conf->clusters_dir, &cbs);
	if (d->watcher == NULL)
		log_warn("inotify unavailable; relying on the %llus resync",
		    (unsigned long long)d->conf->resync_interval_ms / 1000);
}

static void
arm_resync(struct daemon *d)
{
	struct timeval	 tv;
	uint64_t	 ms = d->conf->resync_interval_ms;

	tv.tv_sec = (time_t)(ms / 1000);
	tv.tv_usec = (suseconds_t)(ms % 1000) * 1000;
	evtimer_add(d->ev_resync, &tv);
}

static void
on_resync(evutil_socket_t fd, short ev, void *arg)
{
	struct daemon	*d = arg;

	daemon_rescan(d, "resync");
	arm_resync(d);
}

static void
on_heartbeat(evutil_socket_t fd, short ev, void *arg)
{
	struct daemon	*d = arg;

	if (d->watchdog_usec > 0)
		notify_watchdog();
}

static bool
str_eq(const char *a, const char *b)
{
	return (a == NULL && b == NULL) || (a != NULL && b != NULL &&
	    strcmp(a, b) == 0);
}

/* Reload on SIGHUP: a configuration that fails keeps the old one. */
static void
daemon_reload(struct daemon *d)
{
	struct diags	 diags;
	struct dconf	*c;

	notify_reloading();
	log_info("reloading %s", d->conf_path);
	diags_init(&diags);
	c = dconf_load(d->conf_path, d->conf_missing_ok, &diags);
	if (c == NULL) {
		print_diags(&diags);
		log_warnx("configuration %s is invalid, keeping the running "
		    "one", d->conf_path);
	} else {
		if (strcmp(c->state_dir, d->conf->state_dir) != 0) {
			log_warnx("state_dir changed to %s: this takes a "
			    "restart, keeping %s", c->state_dir,
			    d->conf->state_dir);
			free(c->state_dir);
			c->state_dir = xstrdup(d->conf->state_dir);
		}
		/* A new group: a new socket file, chowned to it. */
		bool ctl = !str_eq(c->control_socket, d->conf->control_socket) ||
		    c->control_group_set != d->conf->control_group_set ||
		    c->control_gid != d->conf->control_gid;
		bool met = !str_eq(c->metrics_listen, d->conf->metrics_listen);

		if (ctl) {
			control_free(d->control);
			d->control = NULL;
		}
		if (met) {
			metrics_free(d->metrics);
			d->metrics = NULL;
		}
		dconf_free(d->conf);
		d->conf = c;
		if (ctl)
			d->control = control_start(d);
		if (met)
			d->metrics = metrics_start(d);
		d->env.benv.conf = c;
		d->env.resync_ms = c->resync_interval_ms;
		log_setlevel(d->debug ? LOG_LEVEL_DEBUG : c->log_level);
		evtimer_del(d->ev_resync);
		arm_resync(d);
	}
	diags_free(&diags);
	/* Reparse every spec: the defaults they inherit may have changed. */
	specdir_free(d->specs);
	d->specs = new_specdir(d);
	start_watcher(d);
	d->rescans = 0;
	daemon_rescan(d, "reload");
	notify_ready();
	log_info("reload done");
}

static void
on_signal(evutil_socket_t sig, short ev, void *arg)
{
	struct daemon	*d = arg;

	switch (sig) {
	case SIGHUP:
		daemon_reload(d);
		break;
	case SIGTERM:
	case SIGINT:
		if (d->stopping)
			return;
		d->stopping = true;
		notify_stopping();
		log_info("received %s, stopping; managed clusters keep running",
		    sig == SIGTERM ? "SIGTERM" : "SIGINT");
		event_base_loopbreak(d->base);
		break;
	}
}

/* A backend saw something change in a cluster: look at it now. */
static void
on_backend_changed(void *arg, const char *cluster)
{
	struct daemon		*d = arg;
	struct reconciler	*r;

	if ((r = htab_get(d->reconcilers, cluster)) != NULL)
		reconciler_kick(r, 0);
}

static void
on_backend_progress(void *arg, const char *cluster, json_t *progress)
{
	struct daemon		*d = arg;
	struct reconciler	*r;

	if ((r = htab_get(d->reconcilers, cluster)) != NULL)
		reconciler_set_progress(r, progress);
}

/* Only one daemon may own a state directory. */
static int
lock_state_dir(struct daemon *d)
{
	char	*path, pid[32];
	int	 fd;

	xasprintf(&path, "%s/cachekeeperd.lock", d->conf->state_dir);
	fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
	if (fd == -1) {
		log_warn("cannot open %s", path);
		free(path);
		return -1;
	}
	if (flock(fd, LOCK_EX | LOCK_NB) == -1) {
		ssize_t n = read(fd, pid, sizeof pid - 1);
		pid[n > 0 ? n : 0] = '\0';
		pid[strcspn(pid, "\n")] = '\0';
		log_error("state directory %s is owned by another cachekeeperd "
		    "(pid %s)", d->conf->state_dir, pid[0] ? pid : "unknown");
		close(fd);
		free(path);
		return -1;
	}
	snprintf(pid, sizeof pid, "%ld\n", (long)getpid());
	if (ftruncate(fd, 0) == 0)
		(void)!write(fd, pid, strlen(pid));
	free(path);
	d->lock_fd = fd;
	return 0;
}

int
daemon_start(struct daemon *d)
{
	struct diags	 diags;
	struct timeval	 tv;
	int		 r;

	diags_init(&diags);
	d->conf = dconf_load(d->conf_path, d->conf_missing_ok, &diags);
	if (d->conf == NULL) {
		print_diags(&diags);
		diags_free(&diags);
		return -1;
	}
	diags_free(&diags);
	log_setlevel(d->debug ? LOG_LEVEL_DEBUG : d->conf->log_level);
	if ((r = mkdir_p(d->conf->state_dir, 0750)) != 0) {
		log_error("cannot create state_dir %s: %s", d->conf->state_dir,
		    strerror(-r));
		return -1;
	}
	if (lock_state_dir(d) != 0)
		return -1;
	d->base = event_base_new();
	if (d->base == NULL)
		fatalx("event_base_new failed");
	d->env.base = d->base;
	d->env.benv.base = d->base;
	d->env.benv.conf = d->conf;
	d->env.benv.changed = on_backend_changed;
	d->env.benv.progress = on_backend_progress;
	d->env.benv.changed_arg = d;
	xasprintf(&d->env.status_dir, "%s/status", d->conf->state_dir);
	if ((r = mkdir_p(d->env.status_dir, 0755)) != 0) {
		log_error("cannot create %s: %s", d->env.status_dir,
		    strerror(-r));
		return -1;
	}
	d->env.resync_ms = d->conf->resync_interval_ms;
	d->env.on_change = daemon_summary_soon;
	d->env.on_retire = daemon_retire;
	d->env.arg = d;

	d->ev_sigterm = evsignal_new(d->base, SIGTERM, on_signal, d);
	d->ev_sigint = evsignal_new(d->base, SIGINT, on_signal, d);
	d->ev_sighup = evsignal_new(d->base, SIGHUP, on_signal, d);
	evsignal_add(d->ev_sigterm, NULL);
	evsignal_add(d->ev_sigint, NULL);
	evsignal_add(d->ev_sighup, NULL);
	signal(SIGPIPE, SIG_IGN);

	d->ev_resync = evtimer_new(d->base, on_resync, d);
	arm_resync(d);
	d->watchdog_usec = notify_watchdog_usec();
	d->ev_heartbeat = event_new(d->base, -1, EV_PERSIST, on_heartbeat, d);
	if (d->watchdog_usec > 0) {
		tv.tv_sec = (time_t)(d->watchdog_usec / 2 / 1000000);
		tv.tv_usec = (suseconds_t)(d->watchdog_usec / 2 % 1000000);
	} else {
		tv.tv_sec = HEARTBEAT_DEFAULT_MS / 1000;
		tv.tv_usec = 0;
	}
	event_add(d->ev_heartbeat, &tv);

	log_info("cachekeeperd %s starting: config %s, clusters_dir %s, "
	    "state_dir %s", PACKAGE_VERSION, d->conf->file ? d->conf->file :
	    "(built-in defaults)", d->conf->clusters_dir, d->conf->state_dir);
	/* Loading a large fleet can take a while: more time to start. */
	notify_extend_timeout(DAEMON_START_EXTEND_USEC);
	d->specs = new_specdir(d);
	start_watcher(d);
	daemon_rescan(d, "start-up");
	daemon_load_known(d);
	daemon_update_summary(d);
	d->control = control_start(d);
	d->metrics = metrics_start(d);
	return 0;
}

int
daemon_run(struct daemon *d)
{
	d->ready = true;
	notify_ready();
	log_info("ready");
	event_base_dispatch(d->base);
	return 0;
}

void
daemon_free(struct daemon *d)
{
	if (d == NULL)
		return;
	control_free(d->control);
	metrics_free(d->metrics);
	if (d->reconcilers != NULL)
		daemon_free_reconcilers(d);
	watcher_free(d->watcher);
	specdir_free(d->specs);
	if (d->ev_sigterm) {
		event_free(d->ev_sigterm);
		event_free(d->ev_sigint);
		event_free(d->ev_sighup);
		event_free(d->ev_resync);
		event_free(d->ev_heartbeat);
	}
	if (d->ev_summary)
		event_free(d->ev_summary);
	if (d->ev_guard)
		event_free(d->ev_guard);
	htab_free(d->del_pending);
	if (d->base)
		event_base_free(d->base);
	if (d->lock_fd != -1)
		close(d->lock_fd);
	dconf_free(d->conf);
	free(d->env.status_dir);
	free(d->file_errors_seen);
	free(d->summary);
	free(d->conf_path);
	free(d);
}

static void
usage(FILE *f)
{
	fprintf(f, "usage: cachekeeperd [-dn] [-f FILE | --config FILE] "
	    "[--version] [--help]\n\n"
	    "  -f, --config FILE  daemon configuration (default %s)\n"
	    "  -n                 check the configuration and every spec, "
	    "then exit\n"
	    "  -d                 debug logging\n"
	    "      --version      print the version\n"
	    "  -h, --help         show this help\n", DCONF_DEFAULT_PATH);
}

/* -n: check everything, print every error, exit 0 when all is valid. */
static int
check_only(const char *path, bool missing_ok)
{
	struct diags		 diags;
	struct dconf		*c;
	struct specdir		*sd;
	struct desired_set	 ds;
	struct spec_opts	 o;
	size_t			 i, j, nerr = 0;
	char			*s;

	diags_init(&diags);
	if ((c = dconf_load(path, missing_ok, &diags)) == NULL) {
		for (i = 0; i < diags.n; i++) {
			s = diag_format(&diags.v[i]);
			fprintf(stderr, "%s\n", s);
			free(s);
		}
		diags_free(&diags);
		return 1;
	}
	o.default_backend = c->default_backend;
	o.backends = backend_names();
	sd = specdir_new(c->clusters_dir, &o);
	specdir_scan(sd);
	specdir_resolve(sd, NULL, NULL, &ds);
	for (i = 0; i < ds.file_errors.n; i++) {
		s = diag_format(&ds.file_errors.v[i]);
		fprintf(stderr, "%s\n", s);
		free(s);
		nerr++;
	}
	for (i = 0; i < ds.n; i++) {
		for (j = 0; j < ds.v[i].errors.n; j++) {
			if (strstr(ds.v[i].errors.v[j].msg, "also defined") ==
			    NULL)
				continue;
			s = diag_format(&ds.v[i].errors.v[j]);
			fprintf(stderr, "%s\n", s);
			free(s);
			nerr++;
		}
	}
	if (nerr == 0)
		printf("configuration OK (%zu spec file%s, %zu cluster%s)\n",
		    sd->nfiles, sd->nfiles == 1 ? "" : "s", ds.n,
		    ds.n == 1 ? "" : "s");
	desired_set_free(&ds);
	specdir_free(sd);
	dconf_free(c);
	diags_free(&diags);
	return nerr == 0 ? 0 : 1;
}

int
daemon_main(int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "config", required_argument, NULL, 'f' },
		{ "help", no_argument, NULL, 'h' },
		{ "version", no_argument, NULL, 'V' },
		{ NULL, 0, NULL, 0 }
	};
	const char	*path = DCONF_DEFAULT_PATH;
	bool		 missing_ok = true, check = false, debug = false;
	struct daemon	*d;
	int		 ch, rc;

	while ((ch = getopt_long(argc, argv, "df:hn", longopts, NULL)) != -1) {
		switch (ch) {
		case 'd':
			debug = true;
			break;
		case 'f':
			path = optarg;
			missing_ok = false;
			break;
		case 'n':
			check = true;
			break;
		case 'h':
			usage(stdout);
			return 0;
		case 'V':
			printf("cachekeeperd %s\n", PACKAGE_VERSION);
			return 0;
		default:
			usage(stderr);
			return 2;
		}
	}
	if (optind != argc) {
		usage(stderr);
		return 2;
	}
	if (check)
		return check_only(path, missing_ok);
	log_init(debug ? LOG_LEVEL_DEBUG : LOG_LEVEL_INFO);
	srandom((unsigned int)(clock_mono_us() ^ (uint64_t)getpid()));
	d = daemon_new(path, missing_ok);
	d->debug = debug;
	if (daemon_start(d) != 0) {
		daemon_free(d);
		return 1;
	}
	rc = daemon_run(d);
	log_info("stopped");
	daemon_free(d);
	notify_free();
	return rc;
}
