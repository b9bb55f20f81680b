/* Collected diagnostics with positions; see diag.h. */
#include "config.h"

#include <stdarg.h>
#include <stdlib.h>

#include "diag.h"
#include "util.h"

void
diags_init(struct diags *d)
{
	d->v = NULL;
	d->n = d->cap = 0;
}

void
diags_clear(struct diags *d)
{
	size_t	 i;

	for (i = 0; i < d->n; i++) {
		free(d->v[i].file);
		free(d->v[i].msg);
	}
	d->n = 0;
}

void
diags_free(struct diags *d)
{
	if (d == NULL)
		return;
	diags_clear(d);
	free(d->v);
	d->v = NULL;
	d->cap = 0;
}

static void
diags_push(struct diags *d, const char *file, int line, int col, char *msg)
{
	if (d->n == d->cap) {
		d->cap = d->cap ? d->cap * 2 : 8;
		d->v = xreallocarray(d->v, d->cap, sizeof *d->v);
	}
	d->v[d->n].file = xstrdup(file ? file : "-");
	d->v[d->n].line = line;
	d->v[d->n].col = col;
	d->v[d->n].msg = msg;
	d->n++;
}

void
diags_add(struct diags *d, const char *file, int line, int col,
    const char *fmt, ...)
{
	va_list	 ap;
	char	*msg;

	va_start(ap, fmt);
	xvasprintf(&msg, fmt, ap);
	va_end(ap);
	diags_push(d, file, line, col, msg);
}

void
diags_append(struct diags *d, const struct diags *from)
{
	size_t	 i;

	for (i = 0; i < from->n; i++)
		diags_push(d, from->v[i].file, from->v[i].line,
		    from->v[i].col, xstrdup(from->v[i].msg));
}

char *
diag_format(const struct diag *dg)
{
	char	*s;

	if (dg->line > 0)
		xasprintf(&s, "%s:%d:%d: %s", dg->file, dg->line, dg->col,
		    dg->msg);
	else
		xasprintf(&s, "%s: %s", dg->file, dg->msg);
	return s;
}

void
diags_sort(struct diags *d, size_t first)
{
	size_t		 i, j;
	struct diag	 t;

	/* Insertion sort: lists are short and it is stable. */
	for (i = first + 1; i < d->n; i++) {
		t = d->v[i];
		for (j = i; j > first && (d->v[j - 1].line > t.line ||
		    (d->v[j - 1].line == t.line && d->v[j - 1].col > t.col));
		    j--)
			d->v[j] = d->v[j - 1];
		d->v[j] = t;
	}
}
