/*
 * Small helpers shared by every part of cachekeeper: allocation wrappers
 * that abort on out-of-memory (so callers never test for NULL), a growable
 * string buffer, and monotonic/wall clock readers.
 */
#ifndef CK_UTIL_H
#define CK_UTIL_H

#include <sys/types.h>

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#define nitems(a) (sizeof(a) / sizeof((a)[0]))

void	*xmalloc(size_t);
void	*xcalloc(size_t, size_t);
void	*xreallocarray(void *, size_t, size_t);
char	*xstrdup(const char *);
char	*xstrndup(const char *, size_t);
int	 xasprintf(char **, const char *, ...)
	    __attribute__((format(printf, 2, 3)));
int	 xvasprintf(char **, const char *, va_list)
	    __attribute__((format(printf, 2, 0)));

/* A growable NUL-terminated string. */
struct strbuf {
	char	*s;
	size_t	 len;
	size_t	 cap;
};
void	 strbuf_init(struct strbuf *);
void	 strbuf_free(struct strbuf *);
void	 strbuf_add(struct strbuf *, const char *, size_t);
void	 strbuf_puts(struct strbuf *, const char *);
void	 strbuf_printf(struct strbuf *, const char *, ...)
	    __attribute__((format(printf, 2, 3)));
char	*strbuf_detach(struct strbuf *);

uint64_t	 clock_mono_ms(void);	/* CLOCK_MONOTONIC, milliseconds */
uint64_t	 clock_mono_us(void);
int64_t		 clock_wall_s(void);	/* UTC seconds since the epoch */
void		 format_rfc3339(int64_t, char *, size_t);
/*
 * A long operation's progress as people read it: "resharding 1234/4096
 * slots", "snapshot web-auto-1: copy 12.5/48.0 MiB" (unit "bytes").
 */
char		*progress_text(const char *op, long long done, long long total,
		    const char *unit);

/*
 * Write data to path atomically: temp file in the same directory, rename.
 * durable: fsync the file first (state that must survive power loss).
 */
int	 file_write_atomic(const char *path, const void *data, size_t len,
	    unsigned int mode, int durable);
/*
 * In a child just forked: be killed (SIGKILL) when the parent ends,
 * however it ends, so that a daemon killed with -9 leaves no worker
 * writing behind the next daemon's back. parent is getppid() of the
 * child, read in the parent before fork(); a child whose parent is
 * already gone exits at once.
 */
void	 child_die_with_parent(pid_t parent);
/* mkdir -p; returns 0 or -errno. */
int	 mkdir_p(const char *path, unsigned int mode);

/* 64-bit FNV-1a, used for spec generations. */
uint64_t	 hash_fnv1a64(const void *, size_t, uint64_t);

/*
 * Like sshd's StrictModes: path (resolved through symbolic links) and
 * every directory above it must be owned by root or uid, and writable by
 * neither group nor others (a directory with the sticky bit, like /tmp,
 * may be). 0, or -EPERM (or the stat errno) with *cause naming exactly
 * the path that is unsafe and how to fix it.
 */
int	 path_check_secure(const char *path, unsigned int uid, char **cause);

#endif
