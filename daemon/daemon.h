/*
 * The daemon's one context object. Everything the daemon runs hangs off
 * it, the event_base included; there is no other global state.
 */
#ifndef CK_DAEMON_H
#define CK_DAEMON_H

#include <stdbool.h>
#include <stdint.h>

#include <event2/event.h>

#include <jansson.h>

#include "dconf.h"
#include "htab.h"
#include "reconciler.h"
#include "specdir.h"

#define DAEMON_START_EXTEND_USEC	(90ULL * 1000000)	/* EXTEND_TIMEOUT */
#define SUMMARY_MIN_MS			250	/* between STATUS= updates */
#define GUARD_SETTLE_MS			2000	/* gone specs gathered for */

struct watcher;
struct control;
struct metrics;

struct daemon {
	struct event_base	*base;
	char			*conf_path;
	bool			 conf_missing_ok;
	struct dconf		*conf;
	struct specdir		*specs;
	struct htab		*reconcilers;	/* name -> reconciler */
	struct ctl_env		 env;
	struct watcher		*watcher;
	struct control		*control;
	struct metrics		*metrics;
	char			*summary;	/* the last STATUS= text */
	uint64_t		 summary_at_ms;	/* when it was computed */
	struct htab		*del_pending;	/* specs gone, not yet judged */
	struct event		*ev_guard;
	int			 lock_fd;

	struct event		*ev_sigterm;
	struct event		*ev_sigint;
	struct event		*ev_sighup;
	struct event		*ev_resync;
	struct event		*ev_heartbeat;
	struct event		*ev_summary;	/* coalesced STATUS= update */
	uint64_t		 watchdog_usec;

	bool			 debug;		/* -d: debug logs, kept on reload */
	bool			 ready;
	bool			 stopping;
	size_t			 invalid_files;
	size_t			 spec_errors;	/* file errors, last scan */
	char			*file_errors_seen;	/* to log changes only */
	uint64_t		 rescans;
};

/* daemon/loader.c */
/* Scan the specs directory and hand the result to the reconcilers. */
void	 daemon_rescan(struct daemon *, const char *why);
/* Forget clusters that are no longer anywhere, at shutdown. */
void	 daemon_free_reconcilers(struct daemon *);
/* Recompute the STATUS= summary now. */
void	 daemon_update_summary(struct daemon *);
/* Schedule a summary update on the next loop turn. */
void	 daemon_summary_soon(void *);
void	 daemon_retire(void *, const char *name);
/* Let deletions the guard holds go (all, or names); names into done. */
size_t	 daemon_confirm_deletions(struct daemon *, const struct strlist *names,
	    json_t *done);
/* Create reconcilers for clusters known only from status files. */
void	 daemon_load_known(struct daemon *);

/* daemon/daemon.c */
struct daemon	*daemon_new(const char *conf_path, bool missing_ok);
/* Load config, take the state dir, load specs, start watching. */
int		 daemon_start(struct daemon *);
int		 daemon_run(struct daemon *);
void		 daemon_free(struct daemon *);
int		 daemon_main(int argc, char **argv);

#endif
