/*
 * Diagnostics: the errors a parse collects, each tied to FILE:LINE:COL.
 * Parsers append every problem they find and let the caller decide; a
 * diagnostic list never logs by itself.
 */
#ifndef CK_DIAG_H
#define CK_DIAG_H

#include <stddef.h>

struct diag {
	char	*file;
	int	 line;		/* 1-based, 0 when unknown */
	int	 col;		/* 1-based, 0 when unknown */
	char	*msg;
};

struct diags {
	struct diag	*v;
	size_t		 n;
	size_t		 cap;
};

void	 diags_init(struct diags *);
void	 diags_free(struct diags *);
void	 diags_clear(struct diags *);
void	 diags_add(struct diags *, const char *file, int line, int col,
	    const char *fmt, ...) __attribute__((format(printf, 5, 6)));
void	 diags_append(struct diags *, const struct diags *);
/* Order the entries from index first on by line and column (stable). */
void	 diags_sort(struct diags *, size_t first);
/* "FILE:LINE:COL: message" (or FILE: message when no position). */
char	*diag_format(const struct diag *);

#endif
