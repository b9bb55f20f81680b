/*
 * Logging, after OpenBSD's log.h: log_warn appends strerror(errno),
 * log_warnx does not; fatal/fatalx exit. Under journald (JOURNAL_STREAM
 * matches stderr) every line carries a <N> syslog priority prefix so
 * levels survive; otherwise lines carry a UTC timestamp and the level.
 * log_cluster() lines always name their cluster.
 */
#ifndef CK_LOG_H
#define CK_LOG_H

#include <stdarg.h>

#include "dconf.h"

void	log_init(enum log_level);
void	log_setlevel(enum log_level);
enum log_level log_getlevel(void);
void	log_emit(enum log_level, const char *, ...)
	    __attribute__((format(printf, 2, 3)));
void	log_vemit(enum log_level, const char *, va_list)
	    __attribute__((format(printf, 2, 0)));
void	log_warn(const char *, ...) __attribute__((format(printf, 1, 2)));
void	log_warnx(const char *, ...) __attribute__((format(printf, 1, 2)));
void	log_notice(const char *, ...) __attribute__((format(printf, 1, 2)));
void	log_info(const char *, ...) __attribute__((format(printf, 1, 2)));
void	log_debug(const char *, ...) __attribute__((format(printf, 1, 2)));
void	log_error(const char *, ...) __attribute__((format(printf, 1, 2)));
/* "cluster NAME: message" at the given level. */
/* The backend and the step in flight of a cluster, for journal fields. */
void	log_cluster_context(const char *cluster, const char *backend,
	    const char *step);
void	log_cluster_forget(const char *cluster);
void	log_cluster(enum log_level, const char *cluster, const char *, ...)
	    __attribute__((format(printf, 3, 4)));
void	fatal(const char *, ...)
	    __attribute__((format(printf, 1, 2), noreturn));
void	fatalx(const char *, ...)
	    __attribute__((format(printf, 1, 2), noreturn));

#endif
