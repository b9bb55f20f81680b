/*
 * Allocation wrappers, string buffers, clocks and atomic file writes.
 * Nothing here logs; allocation failure aborts because a daemon that cannot
 * allocate a few bytes cannot do anything useful or safe.
 */
#include "config.h"

#include <sys/prctl.h>
#include <sys/stat.h>

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "util.h"

static void __attribute__((noreturn))
oom(void)
{
	static const char msg[] = "cachekeeper: out of memory\n";

	(void)!write(STDERR_FILENO, msg, sizeof msg - 1);
	abort();
}

void *
xmalloc(size_t size)
{
	void	*p;

	if ((p = malloc(size ? size : 1)) == NULL)
		oom();
	return p;
}

void *
xcalloc(size_t n, size_t size)
{
	void	*p;

	if ((p = calloc(n ? n : 1, size ? size : 1)) == NULL)
		oom();
	return p;
}

void *
xreallocarray(void *old, size_t n, size_t size)
{
	void	*p;

	if (size != 0 && n > SIZE_MAX / size)
		oom();
	if ((p = realloc(old, n * size != 0 ? n * size : 1)) == NULL)
		oom();
	return p;
}

char *
xstrdup(const char *s)
{
	char	*p;

	if ((p = strdup(s)) == NULL)
		oom();
	return p;
}

char *
xstrndup(const char *s, size_t n)
{
	char	*p;

	if ((p = strndup(s, n)) == NULL)
		oom();
	return p;
}

int
xvasprintf(char **ret, const char *fmt, va_list ap)
{
	int	 n;

	if ((n = vasprintf(ret, fmt, ap)) < 0)
		oom();
	return n;
}

int
xasprintf(char **ret, const char *fmt, ...)
{
	va_list	 ap;
	int	 n;

	va_start(ap, fmt);
	n = xvasprintf(ret, fmt, ap);
	va_end(ap);
	return n;
}

void
strbuf_init(struct strbuf *sb)
{
	sb->cap = 64;
	sb->len = 0;
	sb->s = xmalloc(sb->cap);
	sb->s[0] = '\0';
}

void
strbuf_free(struct strbuf *sb)
{
	free(sb->s);
	sb->s = NULL;
	sb->len = sb->cap = 0;
}

void
strbuf_add(struct strbuf *sb, const char *p, size_t n)
{
	if (sb->s == NULL)
		strbuf_init(sb);
	if (sb->len + n + 1 > sb->cap) {
		while (sb->len + n + 1 > sb->cap)
			sb->cap *= 2;
		sb->s = xreallocarray(sb->s, 1, sb->cap);
	}
	memcpy(sb->s + sb->len, p, n);
	sb->len += n;
	sb->s[sb->len] = '\0';
}

void
strbuf_puts(struct strbuf *sb, const char *p)
{
	strbuf_add(sb, p, strlen(p));
}

void
strbuf_printf(struct strbuf *sb, const char *fmt, ...)
{
	va_list	 ap;
	char	*s;
	int	 n;

	va_start(ap, fmt);
	n = xvasprintf(&s, fmt, ap);
	va_end(ap);
	strbuf_add(sb, s, (size_t)n);
	free(s);
}

char *
strbuf_detach(struct strbuf *sb)
{
	char	*s;

	if (sb->s == NULL)
		strbuf_init(sb);
	s = sb->s;
	sb->s = NULL;
	sb->len = sb->cap = 0;
	return s;
}

uint64_t
clock_mono_us(void)
{
	struct timespec	 ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000 + (uint64_t)ts.tv_nsec / 1000;
}

uint64_t
clock_mono_ms(void)
{
	return clock_mono_us() / 1000;
}

/*
 * Test hook: CK_TEST_CLOCK_OFFSET_S (signed seconds, read once, on the
 * first call) is added to the wall clock, so tests can run the daemon as
 * if the clock had stepped. Only wall-clock decisions see it (windows,
 * timestamps); timers run on CLOCK_MONOTONIC and must not.
 */
int64_t
clock_wall_s(void)
{
	static int	 init;
	static int64_t	 offset_s;
	struct timespec	 ts;
	const char	*e;
	char		*end;
	long long	 v;

	if (!init) {
		init = 1;
		if ((e = getenv("CK_TEST_CLOCK_OFFSET_S")) != NULL) {
			errno = 0;
			v = strtoll(e, &end, 10);
			if (errno == 0 && end != e && *end == '\0')
				offset_s = (int64_t)v;
		}
	}
	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec + offset_s;
}

void
format_rfc3339(int64_t t, char *buf, size_t len)
{
	struct tm	 tm;
	time_t		 tt = (time_t)t;

	gmtime_r(&tt, &tm);
	strftime(buf, len, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

char *
progress_text(const char *op, long long done, long long total,
    const char *unit)
{
	char	*s;

	if (unit != NULL && strcmp(unit, "bytes") == 0 && total >= 1048576)
		xasprintf(&s, "%s %.1f/%.1f MiB", op, (double)done / 1048576,
		    (double)total / 1048576);
	else
		xasprintf(&s, "%s %lld/%lld%s%s", op, done, total,
		    unit != NULL ? " " : "", unit != NULL ? unit : "");
	return s;
}

int
file_write_atomic(const char *path, const void *data, size_t len,
    unsigned int mode, int durable)
{
	char	*tmp;
	int	 fd, error = 0;
	ssize_t	 n;
	size_t	 off = 0;

	xasprintf(&tmp, "%s.tmp.%ld", path, (long)getpid());
	fd = open(tmp, O_WRONLY|O_CREAT|O_TRUNC|O_CLOEXEC, mode);
	if (fd == -1) {
		error = -errno;
		free(tmp);
		return error;
	}
	while (off < len) {
		n = write(fd, (const char *)data + off, len - off);
		if (n == -1) {
			if (errno == EINTR)
				continue;
			error = -errno;
			break;
		}
		off += (size_t)n;
	}
	if (error == 0 && durable && fsync(fd) == -1)
		error = -errno;
	if (close(fd) == -1 && error == 0)
		error = -errno;
	if (error == 0 && rename(tmp, path) == -1)
		error = -errno;
	if (error != 0)
		unlink(tmp);
	free(tmp);
	return error;
}

void
child_die_with_parent(pid_t parent)
{
	/*
	 * The parent may have died between fork() and prctl(): then the
	 * death signal never comes, and getppid() already names another.
	 */
	if (prctl(PR_SET_PDEATHSIG, SIGKILL) != 0 || getppid() != parent)
		_exit(1);
}

int
mkdir_p(const char *path, unsigned int mode)
{
	char	*p, *s;
	int	 error = 0;

	p = xstrdup(path);
	for (s = p + 1; ; s++) {
		if (*s != '/' && *s != '\0')
			continue;
		char c = *s;
		*s = '\0';
		if (mkdir(p, mode) == -1 && errno != EEXIST) {
			error = -errno;
			break;
		}
		*s = c;
		if (c == '\0')
			break;
	}
	free(p);
	return error;
}

uint64_t
hash_fnv1a64(const void *data, size_t len, uint64_t h)
{
	const unsigned char	*p = data;
	size_t			 i;

	if (h == 0)
		h = 0xcbf29ce484222325ULL;
	for (i = 0; i < len; i++) {
		h ^= p[i];
		h *= 0x100000001b3ULL;
	}
	return h;
}

int
path_check_secure(const char *path, unsigned int uid, char **cause)
{
	struct stat	 st;
	char		*real, *p, *slash;
	int		 r = 0;

	if ((real = realpath(path, NULL)) == NULL) {
		r = -errno;
		xasprintf(cause, "%s: %s", path, strerror(errno));
		return r;
	}
	p = real;
	for (;;) {
		if (stat(p, &st) != 0) {
			r = -errno;
			xasprintf(cause, "%s: %s", p, strerror(errno));
			break;
		}
		if (st.st_uid != 0 && st.st_uid != uid) {
			xasprintf(cause, "%s is owned by uid %u, not by root or "
			    "the daemon's user (uid %u); cachekeeperd reads only "
			    "files that they own", p, (unsigned int)st.st_uid,
			    uid);
			r = -EPERM;
			break;
		}
		if ((st.st_mode & 022) != 0 && !(S_ISDIR(st.st_mode) &&
		    (st.st_mode & S_ISVTX))) {
			xasprintf(cause, "%s is writable by %s (mode %04o); "
			    "cachekeeperd reads only files that no one else "
			    "can change (chmod go-w %s)", p, (st.st_mode &
			    020) && (st.st_mode & 002) ? "group and others" :
			    (st.st_mode & 020) ? "its group" : "others",
			    (unsigned int)(st.st_mode & 07777), p);
			r = -EPERM;
			break;
		}
		if (strcmp(p, "/") == 0)
			break;
		if ((slash = strrchr(p, '/')) == p)
			p[1] = '\0';
		else
			*slash = '\0';
	}
	free(real);
	return r;
}
