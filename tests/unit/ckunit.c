/*
 * Shared helpers of the unit tests; see ckunit.h. Nothing here knows about
 * specs: only diagnostics, files and clocks.
 */
#include "config.h"

#include <sys/stat.h>

#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <limits.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "ckunit.h"

char *
ck_diag_short(const struct diag *dg)
{
	char	*s;
	int	 n;

	n = snprintf(NULL, 0, "%d:%d: %s", dg->line, dg->col, dg->msg);
	assert_true(n >= 0);
	s = malloc((size_t)n + 1);
	assert_non_null(s);
	snprintf(s, (size_t)n + 1, "%d:%d: %s", dg->line, dg->col, dg->msg);
	return s;
}

static bool
line_matches(const char *want, const char *got)
{
	size_t	 len = strlen(want);

	if (len > 0 && want[len - 1] == '*')
		return strncmp(want, got, len - 1) == 0;
	return strcmp(want, got) == 0;
}

bool
ck_diags_match(const struct diags *d, const char *file,
    const char *const *want, const char *what)
{
	size_t	 nwant = 0, i;
	bool	 ok;
	char	*s;

	while (want != NULL && want[nwant] != NULL)
		nwant++;
	ok = d->n == nwant;
	for (i = 0; ok && i < nwant; i++) {
		s = ck_diag_short(&d->v[i]);
		ok = line_matches(want[i], s) &&
		    (file == NULL || strcmp(d->v[i].file, file) == 0);
		free(s);
	}
	if (ok)
		return true;
	print_error("%s: diagnostics differ\n", what);
	print_error("  expected (%zu):\n", nwant);
	for (i = 0; i < nwant; i++)
		print_error("    %s%s%s\n", file ? file : "", file ? ":" : "",
		    want[i]);
	print_error("  actual (%zu):\n", d->n);
	for (i = 0; i < d->n; i++) {
		s = ck_diag_short(&d->v[i]);
		print_error("    %s:%s\n", d->v[i].file, s);
		free(s);
	}
	return false;
}

void
ck_assert_diags(const struct diags *d, const char *file,
    const char *const *want, const char *what)
{
	if (!ck_diags_match(d, file, want, what))
		fail();
}

static char	*group_dir;	/* this program's private directory */

static char *
make_tmpdir(const char *base)
{
	char	*dir;
	int	 n;

	n = snprintf(NULL, 0, "%s/ckunit.XXXXXX", base);
	dir = malloc((size_t)n + 1);
	if (dir == NULL)
		return NULL;
	snprintf(dir, (size_t)n + 1, "%s/ckunit.XXXXXX", base);
	if (mkdtemp(dir) == NULL) {
		print_error("mkdtemp %s: %s\n", dir, strerror(errno));
		free(dir);
		return NULL;
	}
	return dir;
}

int
ck_group_setup(void **state)
{
	const char	*base = getenv("TMPDIR");

	(void)state;
	if (base == NULL || *base == '\0')
		base = "/tmp";
	group_dir = make_tmpdir(base);
	return group_dir == NULL ? -1 : 0;
}

int
ck_group_teardown(void **state)
{
	(void)state;
	ck_tmpdir_free(group_dir);
	group_dir = NULL;
	return 0;
}

char *
ck_tmpdir_new(void)
{
	char	*dir;

	if (group_dir == NULL)
		fail_msg("ck_tmpdir_new() needs ck_group_setup()");
	dir = make_tmpdir(group_dir);
	if (dir == NULL)
		fail();
	return dir;
}

static int
rm_one(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	(void)st;
	(void)ftw;
	if (flag == FTW_DP)
		return rmdir(path) == -1 ? -1 : 0;
	return unlink(path) == -1 ? -1 : 0;
}

void
ck_tmpdir_free(char *dir)
{
	if (dir == NULL)
		return;
	nftw(dir, rm_one, 16, FTW_DEPTH | FTW_PHYS);
	free(dir);
}

char *
ck_path(const char *dir, const char *rel)
{
	char	*p;
	int	 n;

	n = snprintf(NULL, 0, "%s/%s", dir, rel);
	p = malloc((size_t)n + 1);
	assert_non_null(p);
	snprintf(p, (size_t)n + 1, "%s/%s", dir, rel);
	return p;
}

static void
make_parents(char *path)
{
	char	*slash;

	for (slash = strchr(path + 1, '/'); slash != NULL;
	    slash = strchr(slash + 1, '/')) {
		*slash = '\0';
		if (mkdir(path, 0700) == -1 && errno != EEXIST) {
			print_error("mkdir %s: %s\n", path, strerror(errno));
			*slash = '/';
			fail();
		}
		*slash = '/';
	}
}

char *
ck_write_len(const char *dir, const char *rel, const void *data, size_t len,
    mode_t mode)
{
	char	*path = ck_path(dir, rel);
	ssize_t	 n;
	int	 fd;

	make_parents(path);
	fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode);
	if (fd == -1) {
		print_error("open %s: %s\n", path, strerror(errno));
		free(path);
		fail();
	}
	/* open() honours the umask; tests about modes need the exact one. */
	assert_int_equal(fchmod(fd, mode), 0);
	n = write(fd, data, len);
	assert_int_equal(close(fd), 0);
	assert_true(n >= 0 && (size_t)n == len);
	return path;
}

char *
ck_write(const char *dir, const char *rel, const char *text, mode_t mode)
{
	return ck_write_len(dir, rel, text, strlen(text), mode);
}

double
ck_now_ms(void)
{
	struct timespec	 ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec * 1000.0 + (double)ts.tv_nsec / 1e6;
}
