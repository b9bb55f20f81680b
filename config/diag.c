/* Collected diagnostics with positions; see diag.h. */
#include "config.h"

#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

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

static int
diag_before(const struct diag *a, const struct diag *b)
{
	return a->line < b->line || (a->line == b->line && a->col < b->col);
}

/*
 * A stable merge sort. It was an insertion sort ("lists are short"), but
 * a hostile file makes 100,000 errors in reverse order: 0.2 s of moves.
 */
void
diags_sort(struct diags *d, size_t first)
{
	struct diag	*v, *tmp, *t;
	size_t		 n, w, lo, mid, hi, i, j, k;

	if (first >= d->n || d->n - first < 2)
		return;
	v = d->v + first;
	n = d->n - first;
	tmp = xreallocarray(NULL, n, sizeof *tmp);
	for (w = 1; w < n; w *= 2) {
		for (lo = 0; lo < n; lo += 2 * w) {
			mid = lo + w < n ? lo + w : n;
			hi = lo + 2 * w < n ? lo + 2 * w : n;
			i = lo;
			j = mid;
			for (k = lo; k < hi; k++) {
				if (i < mid && (j >= hi ||
				    !diag_before(&v[j], &v[i])))
					tmp[k] = v[i++];
				else
					tmp[k] = v[j++];
			}
		}
		t = v;
		v = tmp;
		tmp = t;
	}
	/* After an odd number of passes the sorted run is in tmp's place. */
	if (v != d->v + first) {
		memcpy(d->v + first, v, n * sizeof *v);
		tmp = v;
	}
	free(tmp);
}
