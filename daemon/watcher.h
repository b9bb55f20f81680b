/*
 * Watch the specs directory tree with inotify and call back when something
 * that may matter changed. Bursts are coalesced: the first change is
 * reported on the next loop turn, later ones at most once per
 * WATCH_COALESCE_MS (a trailing edge), so a git checkout of a thousand
 * files costs a handful of rescans. Files being written in place are
 * reported through on_writing so the scanner keeps their previous content
 * until they are closed. Symlinks on the way to the directory are watched
 * too, so an atomic swap (git-sync, Kubernetes volumes) is seen.
 */
#ifndef CK_WATCHER_H
#define CK_WATCHER_H

#include <stdbool.h>
#include <stddef.h>

#include <event2/event.h>

#define WATCH_COALESCE_MS	100

struct watcher;

struct watcher_cbs {
	/* Something changed; full: the kernel dropped events (overflow). */
	void	(*on_change)(void *arg, bool full);
	void	(*on_writing)(void *arg, const char *path, bool writing);
	void	*arg;
};

struct watcher	*watcher_new(struct event_base *, const char *root,
		    const struct watcher_cbs *);
void		 watcher_free(struct watcher *);
/*
 * Watch exactly these directories (and the root's symlink ancestors).
 * Returns how many were not watched before: whatever appeared in them
 * between the scan and now raised no event, so the caller scans again.
 */
size_t		 watcher_set_dirs(struct watcher *, char *const *dirs,
		    size_t n);
/* Read pending events now (before a scan), without calling on_change. */
void		 watcher_drain(struct watcher *);

#endif
