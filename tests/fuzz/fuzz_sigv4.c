/*
 * Fuzz the SigV4 signer with arbitrary requests. It must never crash and
 * either sign or say why not. Input, one item a line:
 *
 *	FORM FLAGS WHEN EXPIRES REGION SERVICE TOKEN	(any prefix of it)
 *	METHOD
 *	PATH
 *	QUERY
 *	Name: value	(headers until an empty line; a line that starts
 *			 with a blank continues the value, as a fold)
 *	body...
 *
 * FORM is H (header) or Q (presigned query); "-" leaves a field at its
 * default. A HASH header line ("x-fuzz-payload-hash: ...") becomes the
 * payload_hash instead of a header.
 */
#include "config.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz.h"
#include "sigv4.h"

#define MAX_HEADERS	64
#define HASH_HEADER	"x-fuzz-payload-hash"

struct cursor {
	const char	*p;
	const char	*end;
};

/* The next line, without its '\n', as a new string; NULL at the end. */
static char *
next_line(struct cursor *c)
{
	const char	*nl;
	char		*s;

	if (c->p >= c->end)
		return NULL;
	if ((nl = memchr(c->p, '\n', (size_t)(c->end - c->p))) == NULL)
		nl = c->end;
	if ((s = strndup(c->p, (size_t)(nl - c->p))) == NULL)
		abort();
	c->p = nl < c->end ? nl + 1 : nl;
	return s;
}

/* A header line and its folds ("\n " or "\n\t" continue it). */
static char *
next_header(struct cursor *c)
{
	const char	*q = c->p, *nl;
	char		*s;

	if (c->p >= c->end || *c->p == '\n')
		return NULL;
	for (;;) {
		nl = memchr(q, '\n', (size_t)(c->end - q));
		if (nl == NULL) {
			q = c->end;
			break;
		}
		if (nl + 1 < c->end && (nl[1] == ' ' || nl[1] == '\t')) {
			q = nl + 1;
			continue;
		}
		q = nl;
		break;
	}
	if ((s = strndup(c->p, (size_t)(q - c->p))) == NULL)
		abort();
	c->p = q < c->end ? q + 1 : q;
	return s;
}

static char *
field(char **save)
{
	char	*t = strtok_r(NULL, " ", save);

	return t != NULL && strcmp(t, "-") == 0 ? NULL : t;
}

static void
parse_opts(char *line, struct sigv4_params *p, enum sigv4_form *form)
{
	char	*save = NULL, *t;

	if (line == NULL || (t = strtok_r(line, " ", &save)) == NULL)
		return;
	if (strcmp(t, "Q") == 0)
		*form = SIGV4_QUERY;
	else if (strcmp(t, "X") == 0)
		*form = (enum sigv4_form)7;	/* not a form at all */
	if ((t = field(&save)) != NULL)
		p->flags = (unsigned int)strtoul(t, NULL, 0);
	if ((t = field(&save)) != NULL)
		p->when = (time_t)strtoll(t, NULL, 10);
	if ((t = field(&save)) != NULL)
		p->expires_s = (unsigned int)strtoul(t, NULL, 10);
	if ((t = field(&save)) != NULL)
		p->region = t;
	if ((t = field(&save)) != NULL)
		p->service = t;
	if ((t = field(&save)) != NULL)
		p->session_token = t;
}

static void
check(int r, const struct sigv4_signed *out, enum sigv4_form form,
    const char *cause)
{
	if (r != 0) {
		if (r != -EINVAL && r != -EIO)
			abort();
		if (cause == NULL)
			abort();
		return;
	}
	if (out->signature == NULL || strlen(out->signature) != 64 ||
	    out->canonical_request == NULL || out->string_to_sign == NULL)
		abort();
	if (form == SIGV4_HEADER && (out->headers == NULL ||
	    out->authorization == NULL || out->query != NULL))
		abort();
	if (form == SIGV4_QUERY && (out->query == NULL ||
	    out->headers != NULL))
		abort();
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct cursor		 c = { (const char *)data,
	    (const char *)data + size };
	struct sigv4_params	 p = { "AKIDEXAMPLE",
	    "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY", NULL, "us-east-1",
	    "elasticache", 1440938160, 300, 0 };
	struct sigv4_header	 h[MAX_HEADERS];
	struct sigv4_request	 req;
	struct sigv4_signed	 out;
	enum sigv4_form		 form = SIGV4_HEADER;
	char			*opts, *method, *path, *query, *lines[MAX_HEADERS];
	char			*hash = NULL, *cause = NULL, *s, *colon;
	char			*creq = NULL, *sts = NULL, *sig = NULL;
	size_t			 n = 0, nlines = 0, i;
	int			 r;

	opts = next_line(&c);
	parse_opts(opts, &p, &form);
	method = next_line(&c);
	path = next_line(&c);
	query = next_line(&c);
	while (nlines < MAX_HEADERS && (s = next_header(&c)) != NULL) {
		lines[nlines++] = s;
		if ((colon = strchr(s, ':')) == NULL)
			colon = s + strlen(s);	/* a name without a value */
		else
			*colon++ = '\0';
		while (*colon == ' ')
			colon++;
		if (strcmp(s, HASH_HEADER) == 0) {
			hash = colon;
			continue;
		}
		h[n].name = s;
		h[n++].value = colon;
	}
	if (c.p < c.end && *c.p == '\n')
		c.p++;

	memset(&req, 0, sizeof req);
	req.method = method;
	req.path = path;
	req.query = query;
	req.headers = h;
	req.nheaders = n;
	req.body = c.p;
	req.body_len = (size_t)(c.end - c.p);
	req.payload_hash = hash;

	r = sigv4_sign(&req, &p, form, &out, &cause);
	check(r, &out, form, cause);
	if (r == 0) {
		/* The steps on their own agree with the whole. */
		free(cause);
		cause = NULL;
		if (sigv4_canonical_request(&req, &p, form, &creq,
		    &cause) != 0 || strcmp(creq, out.canonical_request) != 0)
			abort();
		if (sigv4_string_to_sign(&p, creq, &sts, &cause) != 0 ||
		    strcmp(sts, out.string_to_sign) != 0)
			abort();
		if (sigv4_signature(&p, sts, &sig, &cause) != 0 ||
		    strcmp(sig, out.signature) != 0)
			abort();
	}
	sigv4_signed_free(&out);
	free(creq);
	free(sts);
	free(sig);
	free(cause);
	for (i = 0; i < nlines; i++)
		free(lines[i]);
	free(opts);
	free(method);
	free(path);
	free(query);
	return 0;
}
