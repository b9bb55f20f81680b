/*
 * Typed YAML value readers with precise diagnostics; see schema.h.
 * Messages follow one shape: "<path> must be <what is valid>, got <what>".
 */
#include "config.h"

#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "htab.h"
#include "schema.h"
#include "util.h"

void
kvlist_free(struct kvlist *kv)
{
	size_t	 i;

	for (i = 0; i < kv->n; i++) {
		free(kv->keys[i]);
		free(kv->values[i]);
	}
	free(kv->keys);
	free(kv->values);
	memset(kv, 0, sizeof *kv);
}

/*
 * Room for entry n of an array that only ever grows by one: capacity 8,
 * then each power of two. Growing by one entry each time copied the whole
 * array each time where realloc() cannot extend in place (ASan's always
 * moves): 24,000 tags took 9 s and 2 GB.
 */
static void *
list_grow(void *v, size_t n, size_t size)
{
	if (n != 0 && (n < 8 || (n & (n - 1)) != 0))
		return v;
	return xreallocarray(v, n < 8 ? 8 : n * 2, size);
}

void
kvlist_add(struct kvlist *kv, const char *k, const char *v)
{
	kv->keys = list_grow(kv->keys, kv->n, sizeof *kv->keys);
	kv->values = list_grow(kv->values, kv->n, sizeof *kv->values);
	kv->keys[kv->n] = xstrdup(k);
	kv->values[kv->n] = xstrdup(v);
	kv->n++;
}

const char *
kvlist_get(const struct kvlist *kv, const char *k)
{
	size_t	 i;

	for (i = 0; i < kv->n; i++)
		if (strcmp(kv->keys[i], k) == 0)
			return kv->values[i];
	return NULL;
}

bool
kvlist_remove(struct kvlist *kv, const char *k)
{
	size_t	 i, j;
	bool	 found = false;

	for (i = j = 0; i < kv->n; i++) {
		if (strcmp(kv->keys[i], k) == 0) {
			free(kv->keys[i]);
			free(kv->values[i]);
			found = true;
			continue;
		}
		kv->keys[j] = kv->keys[i];
		kv->values[j] = kv->values[i];
		j++;
	}
	kv->n = j;
	return found;
}

void
strlist_free(struct strlist *l)
{
	size_t	 i;

	for (i = 0; i < l->n; i++)
		free(l->v[i]);
	free(l->v);
	memset(l, 0, sizeof *l);
}

void
strlist_add(struct strlist *l, const char *s)
{
	l->v = list_grow(l->v, l->n, sizeof *l->v);
	l->v[l->n++] = xstrdup(s);
}

void
yerr(struct yctx *c, const struct ynode *n, const char *fmt, ...)
{
	va_list	 ap;
	char	*msg;

	va_start(ap, fmt);
	xvasprintf(&msg, fmt, ap);
	va_end(ap);
	diags_add(c->diags, c->file, n ? n->line : 0, n ? n->col : 0, "%s",
	    msg);
	free(msg);
}

/* Levenshtein distance, bounded to short words. */
static size_t
edit_distance(const char *a, const char *b)
{
	size_t	 la = strlen(a), lb = strlen(b), i, j;
	size_t	 row[65], prev, tmp;

	if (la > 64 || lb > 64)
		return SIZE_MAX;
	for (j = 0; j <= lb; j++)
		row[j] = j;
	for (i = 1; i <= la; i++) {
		prev = row[0];
		row[0] = i;
		for (j = 1; j <= lb; j++) {
			tmp = row[j];
			size_t cost = a[i - 1] == b[j - 1] ? 0 : 1;
			size_t best = prev + cost;
			if (row[j] + 1 < best)
				best = row[j] + 1;
			if (row[j - 1] + 1 < best)
				best = row[j - 1] + 1;
			row[j] = best;
			prev = tmp;
		}
	}
	return row[lb];
}

const char *
closest_word(const char *s, const char *const *words)
{
	const char	*best = NULL;
	size_t		 bestd = SIZE_MAX, d, limit;

	limit = strlen(s) / 3;
	if (limit < 2)
		limit = 2;
	for (; *words != NULL; words++) {
		d = edit_distance(s, *words);
		if (d < bestd) {
			bestd = d;
			best = *words;
		}
	}
	return bestd <= limit ? best : NULL;
}

/* Quote a user-supplied value for a message, shortened. */
static const char *
shown(const struct ynode *n, char *buf, size_t len)
{
	if (n->type != YNODE_SCALAR) {
		snprintf(buf, len, "%s", ynode_type_name(n));
		return buf;
	}
	if (n->len > 40)
		snprintf(buf, len, "'%.37s...'", n->value);
	else
		snprintf(buf, len, "'%s'", n->value);
	return buf;
}

int
ycheck_map(struct yctx *c, const struct ynode *m, const char *path,
    const char *const *known)
{
	size_t			 i, j;
	const char		*k, *hint;
	const struct ynode	*prev;
	struct htab		*seen;
	char			 buf[64];

	if (m->type != YNODE_MAP) {
		yerr(c, m, "%s must be a mapping, got %s", path,
		    shown(m, buf, sizeof buf));
		return -1;
	}
	/*
	 * A hash of the keys seen so far: comparing each key with all
	 * earlier ones made a 1 MiB map of 50,000 keys take 20 seconds.
	 */
	seen = htab_new();
	for (i = 0; i < m->n / 2; i++) {
		const struct ynode *kn = YMAP_KEY(m, i);
		if (kn->type != YNODE_SCALAR) {
			yerr(c, kn, "%s: keys must be plain words, got %s",
			    path, ynode_type_name(kn));
			continue;
		}
		k = kn->value;
		if ((prev = htab_get(seen, k)) != NULL)
			yerr(c, kn, "duplicate key '%s' in %s (first at line "
			    "%d)", k, path, prev->line);
		else
			htab_put(seen, k, (void *)kn);
		if (known == NULL)
			continue;
		for (j = 0; known[j] != NULL; j++)
			if (strcmp(known[j], k) == 0)
				break;
		if (known[j] != NULL)
			continue;
		if (strcmp(k, "<<") == 0) {
			yerr(c, kn, "merge keys ('<<') are not supported in "
			    "%s; repeat the fields or use separate files", path);
			continue;
		}
		if ((hint = closest_word(k, known)) != NULL)
			yerr(c, kn, "unknown key '%s' in %s, did you mean "
			    "'%s'?", k, path, hint);
		else
			yerr(c, kn, "unknown key '%s' in %s", k, path);
	}
	htab_free(seen);
	return 0;
}

int
yget_bool(struct yctx *c, const struct ynode *n, const char *path, bool *out)
{
	char	 buf[64];

	if (n->type == YNODE_SCALAR && n->plain) {
		if (strcmp(n->value, "true") == 0 ||
		    strcmp(n->value, "True") == 0 ||
		    strcmp(n->value, "TRUE") == 0) {
			*out = true;
			return 0;
		}
		if (strcmp(n->value, "false") == 0 ||
		    strcmp(n->value, "False") == 0 ||
		    strcmp(n->value, "FALSE") == 0) {
			*out = false;
			return 0;
		}
	}
	yerr(c, n, "%s must be true or false, got %s", path,
	    shown(n, buf, sizeof buf));
	return -1;
}

int
yget_int(struct yctx *c, const struct ynode *n, const char *path,
    int64_t min, int64_t max, int64_t *out)
{
	char		 buf[64], *end;
	long long	 v;
	const char	*s;

	if (n->type != YNODE_SCALAR || !n->plain || n->len == 0)
		goto bad;
	s = n->value;
	if (!isdigit((unsigned char)s[0]) && !((s[0] == '-' || s[0] == '+') &&
	    isdigit((unsigned char)s[1])))
		goto bad;
	errno = 0;
	v = strtoll(s, &end, 10);
	if (*end != '\0')
		goto bad;
	if (errno == ERANGE || v < min || v > max) {
		yerr(c, n, "%s must be %" PRId64 "..%" PRId64 ", got %s", path,
		    min, max, n->value);
		return -1;
	}
	*out = v;
	return 0;
bad:
	yerr(c, n, "%s must be an integer in %" PRId64 "..%" PRId64
	    ", got %s", path, min, max, shown(n, buf, sizeof buf));
	return -1;
}

int
yget_string(struct yctx *c, const struct ynode *n, const char *path,
    size_t maxlen, char **out)
{
	char	 buf[64];

	if (n->type != YNODE_SCALAR || ynode_is_null(n)) {
		yerr(c, n, "%s must be a string, got %s", path,
		    shown(n, buf, sizeof buf));
		return -1;
	}
	if (n->len > maxlen) {
		yerr(c, n, "%s must be at most %zu characters, got %zu", path,
		    maxlen, n->len);
		return -1;
	}
	if (strlen(n->value) != n->len) {
		yerr(c, n, "%s must not contain NUL characters", path);
		return -1;
	}
	*out = xstrdup(n->value);
	return 0;
}

int
yget_enum(struct yctx *c, const struct ynode *n, const char *path,
    const char *const *values, int *out)
{
	struct strbuf	 sb;
	char		 buf[64];
	int		 i;

	if (n->type == YNODE_SCALAR) {
		for (i = 0; values[i] != NULL; i++) {
			if (strcmp(values[i], n->value) == 0) {
				*out = i;
				return 0;
			}
		}
	}
	strbuf_init(&sb);
	for (i = 0; values[i] != NULL; i++) {
		if (i > 0)
			strbuf_puts(&sb, values[i + 1] ? ", " : " or ");
		strbuf_puts(&sb, values[i]);
	}
	yerr(c, n, "%s must be one of %s, got %s", path, sb.s,
	    shown(n, buf, sizeof buf));
	strbuf_free(&sb);
	return -1;
}

int
parse_duration_ms(const char *s, uint64_t *ms)
{
	uint64_t	 total = 0, v, mult;
	const char	*p = s;

	if (*p == '\0')
		return -EINVAL;
	while (*p != '\0') {
		if (!isdigit((unsigned char)*p))
			return -EINVAL;
		v = 0;
		while (isdigit((unsigned char)*p)) {
			if (v > UINT64_MAX / 10 / 3600000)
				return -ERANGE;
			v = v * 10 + (uint64_t)(*p++ - '0');
		}
		if (strncmp(p, "ms", 2) == 0) {
			mult = 1;
			p += 2;
		} else if (*p == 's') {
			mult = 1000;
			p++;
		} else if (*p == 'm') {
			mult = 60000;
			p++;
		} else if (*p == 'h') {
			mult = 3600000;
			p++;
		} else
			return -EINVAL;
		total += v * mult;
		if (total > UINT64_MAX / 4)
			return -ERANGE;
	}
	*ms = total;
	return 0;
}

static void
format_ms(uint64_t ms, char *buf, size_t len)
{
	if (ms % 3600000 == 0 && ms >= 3600000)
		snprintf(buf, len, "%" PRIu64 "h", ms / 3600000);
	else if (ms % 60000 == 0 && ms >= 60000)
		snprintf(buf, len, "%" PRIu64 "m", ms / 60000);
	else if (ms % 1000 == 0 && ms >= 1000)
		snprintf(buf, len, "%" PRIu64 "s", ms / 1000);
	else
		snprintf(buf, len, "%" PRIu64 "ms", ms);
}

int
yget_duration(struct yctx *c, const struct ynode *n, const char *path,
    uint64_t min_ms, uint64_t max_ms, uint64_t *out)
{
	char		 buf[64], lo[32], hi[32];
	uint64_t	 ms;
	int		 r = -EINVAL;

	format_ms(min_ms, lo, sizeof lo);
	format_ms(max_ms, hi, sizeof hi);
	if (n->type == YNODE_SCALAR)
		r = parse_duration_ms(n->value, &ms);
	if (r != 0 || ms < min_ms || ms > max_ms) {
		yerr(c, n, "%s must be a duration from %s to %s (units ms, s, "
		    "m, h, e.g. 1500ms or 1m30s), got %s", path, lo, hi,
		    shown(n, buf, sizeof buf));
		return -1;
	}
	*out = ms;
	return 0;
}

int
parse_size_bytes(const char *s, uint64_t *bytes)
{
	char		*end;
	uint64_t	 v, mult = 1;

	if (!isdigit((unsigned char)*s))
		return -EINVAL;
	errno = 0;
	v = strtoull(s, &end, 10);
	if (errno == ERANGE)
		return -ERANGE;
	/* Redis's own units: k/kb, m/mb, g/gb (1000 vs 1024 as Redis has). */
	if (*end == '\0')
		mult = 1;
	else if (strcasecmp(end, "k") == 0)
		mult = 1000;
	else if (strcasecmp(end, "kb") == 0)
		mult = 1024;
	else if (strcasecmp(end, "m") == 0)
		mult = 1000 * 1000;
	else if (strcasecmp(end, "mb") == 0)
		mult = 1024 * 1024;
	else if (strcasecmp(end, "g") == 0)
		mult = 1000ULL * 1000 * 1000;
	else if (strcasecmp(end, "gb") == 0)
		mult = 1024ULL * 1024 * 1024;
	else
		return -EINVAL;
	if (v > UINT64_MAX / mult)
		return -ERANGE;
	*bytes = v * mult;
	return 0;
}

int
yget_size(struct yctx *c, const struct ynode *n, const char *path,
    uint64_t *out)
{
	char	 buf[64];

	if (n->type != YNODE_SCALAR || parse_size_bytes(n->value, out) != 0) {
		yerr(c, n, "%s must be a size such as 256mb or 1gb (units k, "
		    "kb, m, mb, g, gb), got %s", path, shown(n, buf,
		    sizeof buf));
		return -1;
	}
	return 0;
}

int
yget_strmap(struct yctx *c, const struct ynode *n, const char *path,
    size_t maxkey, size_t maxval, struct kvlist *out)
{
	size_t	 i;
	char	 buf[64];
	int	 rc = 0;

	if (ycheck_map(c, n, path, NULL) != 0)
		return -1;
	for (i = 0; i < n->n / 2; i++) {
		const struct ynode *k = YMAP_KEY(n, i), *v = YMAP_VAL(n, i);
		if (k->type != YNODE_SCALAR)
			continue;
		if (k->len == 0 || k->len > maxkey) {
			yerr(c, k, "%s: keys must be 1..%zu characters, got "
			    "%zu", path, maxkey, k->len);
			rc = -1;
			continue;
		}
		if (v->type != YNODE_SCALAR || ynode_is_null(v)) {
			yerr(c, v, "%s.%s must be a string, got %s", path,
			    k->value, shown(v, buf, sizeof buf));
			rc = -1;
			continue;
		}
		if (v->len > maxval) {
			yerr(c, v, "%s.%s must be at most %zu characters, got "
			    "%zu", path, k->value, maxval, v->len);
			rc = -1;
			continue;
		}
		kvlist_add(out, k->value, v->value);
	}
	return rc;
}

int
yget_strlist(struct yctx *c, const struct ynode *n, const char *path,
    size_t maxlen, struct strlist *out)
{
	size_t	 i;
	char	 buf[64];
	int	 rc = 0;

	if (n->type != YNODE_SEQ) {
		yerr(c, n, "%s must be a list, got %s", path,
		    shown(n, buf, sizeof buf));
		return -1;
	}
	for (i = 0; i < n->n; i++) {
		char *s;
		char ipath[256];

		snprintf(ipath, sizeof ipath, "%s[%zu]", path, i);
		if (yget_string(c, n->items[i], ipath, maxlen, &s) != 0) {
			rc = -1;
			continue;
		}
		strlist_add(out, s);
		free(s);
	}
	return rc;
}
