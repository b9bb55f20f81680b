/*
 * Helpers shared by the cmocka unit tests: assertions on diagnostic lists
 * that print both the expected and the actual "LINE:COL: message" lines, and
 * a private temporary directory that is removed again, also when a test
 * fails half-way.
 *
 * Include after <stdarg.h>, <stddef.h>, <setjmp.h>, <stdint.h> and
 * <cmocka.h>, as cmocka wants.
 */
#ifndef CK_UNIT_H
#define CK_UNIT_H

#include <stdbool.h>
#include <sys/types.h>

#include "diag.h"

/*
 * Whether d holds exactly the diagnostics in want (NULL-terminated, in
 * order), each written "LINE:COL: message". A want entry ending in '*'
 * matches any message starting with the text before the '*': used only
 * where the exact wording is reported as a problem and should not be
 * frozen by a test. When file is not NULL every diagnostic must name it.
 * On a mismatch both lists are printed and false is returned, so that a
 * test can free what it holds before it fails.
 */
bool	 ck_diags_match(const struct diags *d, const char *file,
	    const char *const *want, const char *what);
/* The same, failing the test at once on a mismatch. */
void	 ck_assert_diags(const struct diags *d, const char *file,
	    const char *const *want, const char *what);
/* Format a diagnostic as "LINE:COL: message" (caller frees). */
char	*ck_diag_short(const struct diag *);

/*
 * Group setup and teardown: one private directory per test program, under
 * $TMPDIR (or /tmp), removed with all its contents at the end even when a
 * test failed half-way and could not clean up after itself.
 */
int	 ck_group_setup(void **state);
int	 ck_group_teardown(void **state);
/* A new directory inside the group's; fails the test on error. */
char	*ck_tmpdir_new(void);
/* Remove dir and everything below it, then free the string. */
void	 ck_tmpdir_free(char *dir);
/*
 * Write text to dir/rel with the given mode, creating parent directories;
 * returns the full path (caller frees).
 */
char	*ck_write(const char *dir, const char *rel, const char *text,
	    mode_t mode);
/* The same with an explicit length (data may hold NUL bytes). */
char	*ck_write_len(const char *dir, const char *rel, const void *data,
	    size_t len, mode_t mode);
/* dir/rel as a new string. */
char	*ck_path(const char *dir, const char *rel);
/* Monotonic milliseconds, for "this must be fast" checks. */
double	 ck_now_ms(void);

#endif
