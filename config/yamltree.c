/*
 * YAML event stream to a positioned tree; see yamltree.h. We use the event
 * API rather than yaml_parser_load() because the document loader expands
 * nothing but also bounds nothing: we need the expansion weight of every
 * anchor to refuse billion-laughs files before anything walks them.
 */
#include "config.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <yaml.h>

#include "htab.h"
#include "util.h"
#include "yamltree.h"

struct builder {
	const char	*file;
	struct diags	*diags;
	struct ytree	*tree;
	struct ynode	*stack[YAML_MAX_DEPTH + 1];
	int		 depth;
	const char	*buf;		/* the input, for error positions */
	size_t		 len;
	struct htab	*anchors;	/* name -> node, this document's */
	size_t		 total;		/* expanded nodes so far */
	int		 failed;
};

static struct ynode *
ynode_new(struct builder *b, enum ynode_type type, yaml_mark_t mark)
{
	struct ytree	*t = b->tree;
	struct ynode	*n;

	n = xcalloc(1, sizeof *n);
	n->type = type;
	n->line = (int)mark.line + 1;
	n->col = (int)mark.column + 1;
	n->weight = 1;
	if (t->narena == t->arena_cap) {
		t->arena_cap = t->arena_cap ? t->arena_cap * 2 : 64;
		t->arena = xreallocarray(t->arena, t->arena_cap,
		    sizeof *t->arena);
	}
	t->arena[t->narena++] = n;
	return n;
}

static void
ynode_push_item(struct ynode *parent, struct ynode *child)
{
	if (parent->n == parent->cap) {
		parent->cap = parent->cap ? parent->cap * 2 : 8;
		parent->items = xreallocarray(parent->items, parent->cap,
		    sizeof *parent->items);
	}
	parent->items[parent->n++] = child;
	parent->weight += child->weight;
}

void
ytree_free(struct ytree *t)
{
	size_t	 i;

	if (t == NULL)
		return;
	for (i = 0; i < t->narena; i++) {
		free(t->arena[i]->value);
		free(t->arena[i]->tag);
		free(t->arena[i]->items);
		free(t->arena[i]);
	}
	free(t->arena);
	free(t->docs);
	free(t);
}

/* Check UTF-8 ourselves: libyaml reports only a byte offset. */
static int
check_utf8(const char *file, const char *buf, size_t len, struct diags *d)
{
	const unsigned char	*p = (const unsigned char *)buf;
	size_t			 i = 0, need;
	int			 line = 1, col = 1;
	uint32_t		 cp;

	while (i < len) {
		unsigned char c = p[i];
		if (c == '\n') {
			line++;
			col = 1;
			i++;
			continue;
		}
		if (c == 0 || (c < 0x20 && c != '\t' && c != '\r')) {
			diags_add(d, file, line, col, "binary data: control "
			    "character 0x%02x is not allowed in a spec", c);
			return -1;
		}
		if (c < 0x80) {
			i++;
			col++;
			continue;
		}
		if ((c & 0xe0) == 0xc0) {
			need = 1;
			cp = c & 0x1f;
		} else if ((c & 0xf0) == 0xe0) {
			need = 2;
			cp = c & 0x0f;
		} else if ((c & 0xf8) == 0xf0) {
			need = 3;
			cp = c & 0x07;
		} else
			goto bad;
		for (size_t k = 1; k <= need; k++) {
			if (i + k >= len || (p[i + k] & 0xc0) != 0x80)
				goto bad;
			cp = (cp << 6) | (p[i + k] & 0x3f);
		}
		if ((need == 1 && cp < 0x80) || (need == 2 && cp < 0x800) ||
		    (need == 3 && cp < 0x10000) || cp > 0x10ffff ||
		    (cp >= 0xd800 && cp <= 0xdfff))
			goto bad;
		i += need + 1;
		col++;
	}
	return 0;
bad:
	diags_add(d, file, line, col, "invalid UTF-8 byte 0x%02x; specs must "
	    "be UTF-8 text", p[i]);
	return -1;
}

/*
 * Anchors live in a hash table: a list searched from the end for every
 * alias made 25,000 aliases in a 1 MiB file take seconds. A name defined
 * again refers to the latest node from then on, as YAML says.
 */
static struct ynode *
anchor_find(struct builder *b, const char *name)
{
	return htab_get(b->anchors, name);
}

static void
anchor_add(struct builder *b, const char *name, struct ynode *n)
{
	htab_put(b->anchors, name, n);
}

/* Attach a finished node to the open collection, or make it a document. */
static void
builder_attach(struct builder *b, struct ynode *n)
{
	struct ytree	*t = b->tree;

	if (b->depth == 0) {
		/* Doubling: a file can hold 30,000 documents. */
		if ((t->ndocs & (t->ndocs - 1)) == 0)
			t->docs = xreallocarray(t->docs, t->ndocs ? t->ndocs *
			    2 : 1, sizeof *t->docs);
		t->docs[t->ndocs++] = n;
	} else
		ynode_push_item(b->stack[b->depth - 1], n);
}

static int
builder_count(struct builder *b, size_t weight, yaml_mark_t mark)
{
	b->total += weight;
	if (b->total > YAML_MAX_NODES) {
		diags_add(b->diags, b->file, (int)mark.line + 1,
		    (int)mark.column + 1, "document too large: aliases and "
		    "nodes expand to more than %d nodes (alias bomb?)",
		    YAML_MAX_NODES);
		return -1;
	}
	return 0;
}

static int
builder_event(struct builder *b, yaml_event_t *ev)
{
	struct ynode	*n;
	const char	*anchor = NULL, *tag = NULL;

	switch (ev->type) {
	case YAML_SCALAR_EVENT:
		n = ynode_new(b, YNODE_SCALAR, ev->start_mark);
		n->value = xstrndup((char *)ev->data.scalar.value,
		    ev->data.scalar.length);
		n->len = ev->data.scalar.length;
		n->plain = ev->data.scalar.style == YAML_PLAIN_SCALAR_STYLE;
		anchor = (const char *)ev->data.scalar.anchor;
		tag = (const char *)ev->data.scalar.tag;
		if (builder_count(b, 1, ev->start_mark) != 0)
			return -1;
		break;
	case YAML_SEQUENCE_START_EVENT:
	case YAML_MAPPING_START_EVENT:
		if (b->depth >= YAML_MAX_DEPTH) {
			diags_add(b->diags, b->file,
			    (int)ev->start_mark.line + 1,
			    (int)ev->start_mark.column + 1,
			    "nesting deeper than %d levels", YAML_MAX_DEPTH);
			return -1;
		}
		n = ynode_new(b, ev->type == YAML_SEQUENCE_START_EVENT ?
		    YNODE_SEQ : YNODE_MAP, ev->start_mark);
		if (ev->type == YAML_SEQUENCE_START_EVENT) {
			anchor = (const char *)ev->data.sequence_start.anchor;
			tag = (const char *)ev->data.sequence_start.tag;
		} else {
			anchor = (const char *)ev->data.mapping_start.anchor;
			tag = (const char *)ev->data.mapping_start.tag;
		}
		if (tag != NULL)
			n->tag = xstrdup(tag);
		if (anchor != NULL)
			anchor_add(b, anchor, n);
		if (builder_count(b, 1, ev->start_mark) != 0)
			return -1;
		b->stack[b->depth++] = n;
		return 0;
	case YAML_SEQUENCE_END_EVENT:
	case YAML_MAPPING_END_EVENT:
		n = b->stack[--b->depth];
		builder_attach(b, n);
		return 0;
	case YAML_ALIAS_EVENT:
		n = anchor_find(b, (const char *)ev->data.alias.anchor);
		if (n == NULL) {
			diags_add(b->diags, b->file,
			    (int)ev->start_mark.line + 1,
			    (int)ev->start_mark.column + 1,
			    "unknown alias '*%s'", ev->data.alias.anchor);
			return -1;
		}
		for (int i = 0; i < b->depth; i++) {
			if (b->stack[i] == n) {
				diags_add(b->diags, b->file,
				    (int)ev->start_mark.line + 1,
				    (int)ev->start_mark.column + 1,
				    "recursive alias '*%s'",
				    ev->data.alias.anchor);
				return -1;
			}
		}
		if (builder_count(b, n->weight, ev->start_mark) != 0)
			return -1;
		builder_attach(b, n);
		return 0;
	case YAML_DOCUMENT_START_EVENT:
		/* Anchors are scoped to their document. */
		htab_free(b->anchors);
		b->anchors = htab_new();
		return 0;
	default:
		return 0;
	}
	if (tag != NULL)
		n->tag = xstrdup(tag);
	if (anchor != NULL)
		anchor_add(b, anchor, n);
	builder_attach(b, n);
	return 0;
}

static void
parser_error(struct builder *b, yaml_parser_t *p)
{
	const char	*problem = p->problem ? p->problem : "syntax error";
	yaml_mark_t	 mark = p->problem_mark;

	if (p->error == YAML_READER_ERROR) {
		int	 line = 1, col = 1;

		/*
		 * libyaml gives a byte offset only (e.g. for U+007F or
		 * U+FFFE, valid UTF-8 that YAML forbids); every diagnostic
		 * has a position, counted like check_utf8() does.
		 */
		for (size_t i = 0; i < p->problem_offset && i < b->len; i++) {
			if (b->buf[i] == '\n') {
				line++;
				col = 1;
			} else if (((unsigned char)b->buf[i] & 0xc0) != 0x80)
				col++;
		}
		diags_add(b->diags, b->file, line, col, "YAML error: %s at "
		    "byte %zu", problem, p->problem_offset);
		return;
	}
	if (p->context != NULL)
		diags_add(b->diags, b->file, (int)mark.line + 1,
		    (int)mark.column + 1, "YAML syntax error: %s %s (line %d)",
		    problem, p->context, (int)p->context_mark.line + 1);
	else
		diags_add(b->diags, b->file, (int)mark.line + 1,
		    (int)mark.column + 1, "YAML syntax error: %s", problem);
}

struct ytree *
ytree_parse(const char *file, const char *buf, size_t len, struct diags *d)
{
	struct builder	 b;
	yaml_parser_t	 parser;
	yaml_event_t	 ev;
	int		 done = 0;

	if (check_utf8(file, buf, len, d) != 0)
		return NULL;
	memset(&b, 0, sizeof b);
	b.file = file;
	b.diags = d;
	b.buf = buf;
	b.len = len;
	b.anchors = htab_new();
	b.tree = xcalloc(1, sizeof *b.tree);
	yaml_parser_initialize(&parser);
	yaml_parser_set_input_string(&parser, (const unsigned char *)buf, len);
	while (!done) {
		if (!yaml_parser_parse(&parser, &ev)) {
			parser_error(&b, &parser);
			b.failed = 1;
			break;
		}
		done = ev.type == YAML_STREAM_END_EVENT;
		if (builder_event(&b, &ev) != 0) {
			b.failed = 1;
			done = 1;
		}
		yaml_event_delete(&ev);
	}
	yaml_parser_delete(&parser);
	htab_free(b.anchors);
	if (b.failed) {
		ytree_free(b.tree);
		return NULL;
	}
	return b.tree;
}

struct ynode *
ymap_get(const struct ynode *m, const char *key)
{
	size_t	 i;

	if (m == NULL || m->type != YNODE_MAP)
		return NULL;
	for (i = 0; i < m->n / 2; i++) {
		if (YMAP_KEY(m, i)->type == YNODE_SCALAR &&
		    strcmp(YMAP_KEY(m, i)->value, key) == 0)
			return YMAP_VAL(m, i);
	}
	return NULL;
}

const char *
ynode_type_name(const struct ynode *n)
{
	if (n->type == YNODE_MAP)
		return "a mapping";
	if (n->type == YNODE_SEQ)
		return "a list";
	if (ynode_is_null(n))
		return "null";
	return "a scalar";
}

int
ynode_is_null(const struct ynode *n)
{
	if (n->type != YNODE_SCALAR || !n->plain)
		return 0;
	return n->len == 0 || strcmp(n->value, "~") == 0 ||
	    strcmp(n->value, "null") == 0 || strcmp(n->value, "Null") == 0 ||
	    strcmp(n->value, "NULL") == 0;
}
