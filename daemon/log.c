/* The logging layer; see log.h. Writes to stderr only. */
#include "config.h"

#include <sys/stat.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <systemd/sd-journal.h>

#include "htab.h"
#include "log.h"
#include "util.h"

static enum log_level	 cur_level = LOG_LEVEL_INFO;
static int		 journal;	/* stderr is connected to journald */
static struct htab	*fields;	/* cluster -> struct cluster_fields */

/* What log_cluster() adds as journal fields for a cluster. */
struct cluster_fields {
	char	*backend;
	char	*step;
};

static const int syslog_prio[] = {
	[LOG_LEVEL_ERROR] = 3,
	[LOG_LEVEL_WARNING] = 4,
	[LOG_LEVEL_NOTICE] = 5,
	[LOG_LEVEL_INFO] = 6,
	[LOG_LEVEL_DEBUG] = 7,
};

static const char *const level_tags[] = {
	[LOG_LEVEL_ERROR] = "error",
	[LOG_LEVEL_WARNING] = "warning",
	[LOG_LEVEL_NOTICE] = "notice",
	[LOG_LEVEL_INFO] = "info",
	[LOG_LEVEL_DEBUG] = "debug",
};

/* systemd sets JOURNAL_STREAM=dev:ino of the stream it connected. */
static int
stderr_is_journal(void)
{
	const char		*e = getenv("JOURNAL_STREAM");
	struct stat		 st;
	unsigned long long	 dev, ino;

	if (e == NULL || sscanf(e, "%llu:%llu", &dev, &ino) != 2)
		return 0;
	if (fstat(STDERR_FILENO, &st) == -1)
		return 0;
	return (unsigned long long)st.st_dev == dev &&
	    (unsigned long long)st.st_ino == ino;
}

void
log_init(enum log_level level)
{
	cur_level = level;
	journal = stderr_is_journal();
	setvbuf(stderr, NULL, _IOLBF, 0);
}

void
log_setlevel(enum log_level level)
{
	cur_level = level;
}

enum log_level
log_getlevel(void)
{
	return cur_level;
}

void
log_vemit(enum log_level level, const char *fmt, va_list ap)
{
	char		*msg;
	char		 ts[40];
	struct timespec	 now;
	struct tm	 tm;
	int		 saved = errno;

	if (level > cur_level)
		return;
	xvasprintf(&msg, fmt, ap);
	if (journal)
		fprintf(stderr, "<%d>%s\n", syslog_prio[level], msg);
	else {
		clock_gettime(CLOCK_REALTIME, &now);
		gmtime_r(&now.tv_sec, &tm);
		strftime(ts, sizeof ts, "%Y-%m-%dT%H:%M:%S", &tm);
		fprintf(stderr, "%s.%03ldZ %s: %s\n", ts,
		    now.tv_nsec / 1000000, level_tags[level], msg);
	}
	free(msg);
	errno = saved;
}

void
log_emit(enum log_level level, const char *fmt, ...)
{
	va_list	 ap;

	va_start(ap, fmt);
	log_vemit(level, fmt, ap);
	va_end(ap);
}

#define LOG_FN(fn, level)				\
void							\
fn(const char *fmt, ...)				\
{							\
	va_list	 ap;					\
							\
	va_start(ap, fmt);				\
	log_vemit(level, fmt, ap);			\
	va_end(ap);					\
}
LOG_FN(log_warnx, LOG_LEVEL_WARNING)
LOG_FN(log_notice, LOG_LEVEL_NOTICE)
LOG_FN(log_info, LOG_LEVEL_INFO)
LOG_FN(log_debug, LOG_LEVEL_DEBUG)
LOG_FN(log_error, LOG_LEVEL_ERROR)

void
log_warn(const char *fmt, ...)
{
	va_list	 ap;
	char	*s;
	int	 saved = errno;

	va_start(ap, fmt);
	xvasprintf(&s, fmt, ap);
	va_end(ap);
	log_emit(LOG_LEVEL_WARNING, "%s: %s", s, strerror(saved));
	free(s);
}

void
log_cluster_context(const char *cluster, const char *backend,
    const char *step)
{
	struct cluster_fields	*f;

	if (fields == NULL)
		fields = htab_new();
	if ((f = htab_get(fields, cluster)) == NULL) {
		if (backend == NULL && step == NULL)
			return;
		f = xcalloc(1, sizeof *f);
		htab_put(fields, cluster, f);
	}
	if (backend != NULL && (f->backend == NULL ||
	    strcmp(f->backend, backend) != 0)) {
		free(f->backend);
		f->backend = xstrdup(backend);
	}
	free(f->step);
	f->step = step ? xstrdup(step) : NULL;
}

void
log_cluster_forget(const char *cluster)
{
	struct cluster_fields	*f;

	if (fields != NULL && (f = htab_del(fields, cluster)) != NULL) {
		free(f->backend);
		free(f->step);
		free(f);
	}
}

void
log_cluster(enum log_level level, const char *cluster, const char *fmt, ...)
{
	struct cluster_fields	*f;
	va_list			 ap;
	char			*s;

	if (level > cur_level)
		return;
	va_start(ap, fmt);
	xvasprintf(&s, fmt, ap);
	va_end(ap);
	/*
	 * Under journald, structured: CLUSTER=, BACKEND= and STEP= fields,
	 * so that "journalctl -u cachekeeperd CLUSTER=sessions" works.
	 */
	f = fields ? htab_get(fields, cluster) : NULL;
	if (!journal || sd_journal_send("MESSAGE=cluster %s: %s", cluster, s,
	    "PRIORITY=%d", syslog_prio[level], "CLUSTER=%s", cluster,
	    "BACKEND=%s", f && f->backend ? f->backend : "",
	    "STEP=%s", f && f->step ? f->step : "",
	    "SYSLOG_IDENTIFIER=cachekeeperd", NULL) < 0)
		log_emit(level, "cluster %s: %s", cluster, s);
	free(s);
}

void
fatal(const char *fmt, ...)
{
	va_list	 ap;
	char	*s;
	int	 saved = errno;

	va_start(ap, fmt);
	xvasprintf(&s, fmt, ap);
	va_end(ap);
	log_emit(LOG_LEVEL_ERROR, "fatal: %s: %s", s, strerror(saved));
	exit(1);
}

void
fatalx(const char *fmt, ...)
{
	va_list	 ap;
	char	*s;

	va_start(ap, fmt);
	xvasprintf(&s, fmt, ap);
	va_end(ap);
	log_emit(LOG_LEVEL_ERROR, "fatal: %s", s);
	exit(1);
}
