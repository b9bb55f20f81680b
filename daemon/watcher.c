/* inotify directory watcher with coalescing; see watcher.h. */
#include "config.h"

#include <sys/inotify.h>
#include <sys/stat.h>

#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "log.h"
#include "specdir.h"
#include "util.h"
#include "watcher.h"

#define DIR_MASK	(IN_CLOSE_WRITE | IN_MOVED_TO | IN_MOVED_FROM | \
			 IN_DELETE | IN_CREATE | IN_MODIFY | IN_DELETE_SELF | \
			 IN_MOVE_SELF | IN_ONLYDIR)
#define LINK_MASK	(IN_CREATE | IN_MOVED_TO | IN_MOVED_FROM | IN_DELETE | \
			 IN_ONLYDIR)

struct watch {
	int	 wd;
	char	*path;
	char	*link_name;	/* watching a symlink's parent for this name */
	bool	 specs;		/* a directory of the specs tree */
};

struct watcher {
	struct event_base	*base;
	int			 fd;
	struct event		*ev_read;
	struct event		*ev_fire;
	uint64_t		 last_fire_ms;
	bool			 full;
	bool			 draining;
	char			*root;
	struct watcher_cbs	 cbs;
	struct watch		*w;
	size_t			 nw;
};

static void	watcher_read(evutil_socket_t, short, void *);
static void	watcher_fire(evutil_socket_t, short, void *);

struct watcher *
watcher_new(struct event_base *base, const char *root,
    const struct watcher_cbs *cbs)
{
	struct watcher	*wt;
	int		 fd;

	if ((fd = inotify_init1(IN_NONBLOCK | IN_CLOEXEC)) == -1)
		return NULL;
	wt = xcalloc(1, sizeof *wt);
	wt->base = base;
	wt->fd = fd;
	wt->root = xstrdup(root);
	wt->cbs = *cbs;
	wt->ev_read = event_new(base, fd, EV_READ | EV_PERSIST, watcher_read,
	    wt);
	wt->ev_fire = evtimer_new(base, watcher_fire, wt);
	event_add(wt->ev_read, NULL);
	return wt;
}

static void
watch_clear(struct watch *w)
{
	free(w->path);
	free(w->link_name);
}

void
watcher_free(struct watcher *wt)
{
	size_t	 i;

	if (wt == NULL)
		return;
	event_free(wt->ev_read);
	event_free(wt->ev_fire);
	close(wt->fd);
	for (i = 0; i < wt->nw; i++)
		watch_clear(&wt->w[i]);
	free(wt->w);
	free(wt->root);
	free(wt);
}

static void
watch_push(struct watch **v, size_t *n, int wd, const char *path,
    const char *link_name, bool specs)
{
	size_t	 i;

	for (i = 0; i < *n; i++) {
		if ((*v)[i].wd == wd) {
			/* The same inode twice (symlinked dirs): merge. */
			(*v)[i].specs |= specs;
			if (link_name && (*v)[i].link_name == NULL)
				(*v)[i].link_name = xstrdup(link_name);
			return;
		}
	}
	*v = xreallocarray(*v, *n + 1, sizeof **v);
	(*v)[*n].wd = wd;
	(*v)[*n].path = xstrdup(path);
	(*v)[*n].link_name = link_name ? xstrdup(link_name) : NULL;
	(*v)[*n].specs = specs;
	(*n)++;
}

/* Watch the parent of every symlink on the way to the root. */
static void
watch_link_ancestors(struct watcher *wt, struct watch **v, size_t *n)
{
	char		*p, *s, *parent, *name, *tmp1, *tmp2;
	struct stat	 st;
	int		 wd;

	p = xstrdup(wt->root);
	for (s = p + 1; ; s++) {
		if (*s != '/' && *s != '\0')
			continue;
		char c = *s;
		*s = '\0';
		if (lstat(p, &st) == 0 && S_ISLNK(st.st_mode)) {
			tmp1 = xstrdup(p);
			tmp2 = xstrdup(p);
			parent = dirname(tmp1);
			name = basename(tmp2);
			wd = inotify_add_watch(wt->fd, parent, LINK_MASK);
			if (wd >= 0)
				watch_push(v, n, wd, parent, name, false);
			free(tmp1);
			free(tmp2);
		}
		*s = c;
		if (c == '\0')
			break;
	}
	free(p);
}

size_t
watcher_set_dirs(struct watcher *wt, char *const *dirs, size_t ndirs)
{
	struct watch	*v = NULL;
	size_t		 n = 0, i, j, added = 0;
	int		 wd;

	for (i = 0; i < ndirs; i++) {
		wd = inotify_add_watch(wt->fd, dirs[i], DIR_MASK);
		if (wd >= 0)
			watch_push(&v, &n, wd, dirs[i], NULL, true);
		else
			log_debug("inotify_add_watch %s: %s", dirs[i],
			    strerror(errno));
	}
	watch_link_ancestors(wt, &v, &n);
	for (j = 0; j < n; j++) {
		for (i = 0; i < wt->nw; i++)
			if (v[j].wd == wt->w[i].wd)
				break;
		if (i == wt->nw)
			added++;
	}
	/* Drop watches no longer wanted; re-adding kept the others. */
	for (i = 0; i < wt->nw; i++) {
		for (j = 0; j < n; j++)
			if (v[j].wd == wt->w[i].wd)
				break;
		if (j == n)
			inotify_rm_watch(wt->fd, wt->w[i].wd);
		watch_clear(&wt->w[i]);
	}
	free(wt->w);
	wt->w = v;
	wt->nw = n;
	return added;
}

static void
schedule_fire(struct watcher *wt)
{
	uint64_t	 now, delay = 0;
	struct timeval	 tv;

	if (wt->draining || evtimer_pending(wt->ev_fire, NULL))
		return;
	now = clock_mono_ms();
	if (wt->last_fire_ms + WATCH_COALESCE_MS > now)
		delay = wt->last_fire_ms + WATCH_COALESCE_MS - now;
	tv.tv_sec = 0;
	tv.tv_usec = (suseconds_t)delay * 1000;
	evtimer_add(wt->ev_fire, &tv);
}

static void
watcher_fire(evutil_socket_t fd, short ev, void *arg)
{
	struct watcher	*wt = arg;
	bool		 full = wt->full;

	wt->last_fire_ms = clock_mono_ms();
	wt->full = false;
	wt->cbs.on_change(wt->cbs.arg, full);
}

static struct watch *
watch_find(struct watcher *wt, int wd)
{
	size_t	 i;

	for (i = 0; i < wt->nw; i++)
		if (wt->w[i].wd == wd)
			return &wt->w[i];
	return NULL;
}

/* Decide whether an event in a specs directory may matter. */
static bool
event_matters(struct watcher *wt, struct watch *w,
    const struct inotify_event *ie)
{
	char		*path;
	struct stat	 st;
	bool		 matters = false;

	if (ie->len == 0)
		return true;		/* the directory itself moved or went */
	xasprintf(&path, "%s/%s", w->path, ie->name);
	if (specdir_candidate(ie->name)) {
		if (ie->mask & IN_MODIFY)
			wt->cbs.on_writing(wt->cbs.arg, path, true);
		else {
			wt->cbs.on_writing(wt->cbs.arg, path, false);
			matters = true;
		}
	} else if (ie->mask & IN_ISDIR)
		matters = (ie->mask & IN_MODIFY) == 0;
	else if (strncmp(ie->name, "..", 2) == 0)
		matters = true;		/* Kubernetes' ..data swaps */
	else if (lstat(path, &st) == 0 && S_ISLNK(st.st_mode))
		matters = true;
	free(path);
	return matters;
}

static void
watcher_handle(struct watcher *wt, const struct inotify_event *ie)
{
	struct watch	*w;

	if (ie->mask & IN_Q_OVERFLOW) {
		log_notice("inotify queue overflowed, rescanning everything");
		wt->full = true;
		schedule_fire(wt);
		return;
	}
	if ((w = watch_find(wt, ie->wd)) == NULL)
		return;
	if (ie->mask & IN_IGNORED) {
		schedule_fire(wt);	/* the directory is gone */
		return;
	}
	if (w->link_name != NULL && ie->len > 0 &&
	    strcmp(ie->name, w->link_name) == 0) {
		log_debug("symlink %s/%s changed", w->path, w->link_name);
		wt->full = true;
		schedule_fire(wt);
		return;
	}
	if (w->specs && event_matters(wt, w, ie))
		schedule_fire(wt);
}

static void
watcher_read(evutil_socket_t fd, short ev, void *arg)
{
	struct watcher	*wt = arg;
	char		 buf[16384]
	    __attribute__((aligned(__alignof__(struct inotify_event))));
	ssize_t		 n;
	char		*p;

	for (;;) {
		n = read(wt->fd, buf, sizeof buf);
		if (n == -1 && errno == EINTR)
			continue;
		if (n <= 0)
			return;
		for (p = buf; p < buf + n; ) {
			const struct inotify_event *ie =
			    (const struct inotify_event *)p;
			watcher_handle(wt, ie);
			p += sizeof *ie + ie->len;
		}
	}
}

void
watcher_drain(struct watcher *wt)
{
	wt->draining = true;
	watcher_read(wt->fd, EV_READ, wt);
	wt->draining = false;
}
