/*
 * AWS Signature Version 4: canonical request, string to sign, key
 * derivation and signature, in the header and in the presigned query
 * form. The rules follow AWS's "Create a canonical request" page and its
 * test suite (aws-c-auth's tests/aws-signing-test-suite/v4), which the
 * unit test runs in full. Hashing and HMAC come from OpenSSL.
 *
 * This file does no I/O and never logs: errors come back as -errno and a
 * cause string. The secret key only ever lives in the buffers of
 * sigv4_signature(), which wipes them.
 */
#include "config.h"

#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>

#include "sigv4.h"
#include "util.h"

#define SHA256_LEN	32
#define SHA256_HEX_LEN	64
#define AMZ_DATE_LEN	16	/* 20150830T123600Z */
#define DATE_STAMP_LEN	8	/* 20150830 */

/* What one signing works out before the signature. */
struct sigv4_work {
	char	 amz_date[AMZ_DATE_LEN + 1];
	char	*scope;			/* date/region/service/aws4_request */
	char	 payload_hash[128];
	char	*signed_headers;	/* "host;x-amz-date" */
	char	*creq;			/* the canonical request */
};

/* A request header on its way to canonical form. */
struct sigv4_hent {
	char	*lname;			/* lowercased */
	char	*value;			/* trimmed, folded, blanks squeezed */
	size_t	 idx;			/* position in the request */
};

/* A query parameter, name and value encoded. */
struct sigv4_qparam {
	char	*name;
	char	*value;
};

static void	 sigv4_set_cause(char **, const char *, ...)
		    __attribute__((format(printf, 2, 3)));

static void
sigv4_set_cause(char **cause, const char *fmt, ...)
{
	va_list	 ap;

	if (cause == NULL)
		return;
	va_start(ap, fmt);
	xvasprintf(cause, fmt, ap);
	va_end(ap);
}

/* Free a string that may hold a credential. */
static void
sigv4_wipe_free(char *s)
{
	if (s == NULL)
		return;
	OPENSSL_cleanse(s, strlen(s));
	free(s);
}

static void
sigv4_work_free(struct sigv4_work *w)
{
	free(w->scope);
	free(w->signed_headers);
	sigv4_wipe_free(w->creq);
	memset(w, 0, sizeof(*w));
}

static bool
sigv4_is_unreserved(unsigned char c)
{
	return ((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') ||
	    (c >= '0' && c <= '9') || c == '-' || c == '_' || c == '.' ||
	    c == '~');
}

/* RFC 7230 tchar: what a method or a header name may be made of. */
static bool
sigv4_is_tchar(unsigned char c)
{
	return (sigv4_is_unreserved(c) || (c != '\0' &&
	    strchr("!#$%&'*+^`|", c) != NULL));
}

static bool
sigv4_is_token(const char *s)
{
	if (s == NULL || *s == '\0')
		return false;
	for (; *s != '\0'; s++)
		if (!sigv4_is_tchar((unsigned char)*s))
			return false;
	return true;
}

static bool
sigv4_is_blank(unsigned char c)
{
	return (c == ' ' || c == '\t' || c == '\r' || c == '\n');
}

static void
sigv4_hex(const unsigned char *p, size_t len, char *out)
{
	static const char	 digits[] = "0123456789abcdef";
	size_t			 i;

	for (i = 0; i < len; i++) {
		out[2 * i] = digits[p[i] >> 4];
		out[2 * i + 1] = digits[p[i] & 0xf];
	}
	out[2 * len] = '\0';
}

/* Percent-encode everything but the unreserved set (and '/' if asked). */
static void
sigv4_uri_encode(struct strbuf *sb, const char *s, size_t len,
    bool keep_slash)
{
	static const char	 digits[] = "0123456789ABCDEF";
	char			 esc[3];
	size_t			 i, run;

	for (i = 0; i < len; i += run) {
		for (run = 0; i + run < len; run++) {
			unsigned char c = (unsigned char)s[i + run];
			if (!sigv4_is_unreserved(c) &&
			    !(keep_slash && c == '/'))
				break;
		}
		if (run > 0) {
			strbuf_add(sb, s + i, run);
			continue;
		}
		esc[0] = '%';
		esc[1] = digits[(unsigned char)s[i] >> 4];
		esc[2] = digits[(unsigned char)s[i] & 0xf];
		strbuf_add(sb, esc, 3);
		run = 1;
	}
	if (sb->s == NULL)
		strbuf_add(sb, "", 0);
}

static int
sigv4_hexval(unsigned char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

/* Undo %XX escapes; '+' stays a '+'. The result may hold NUL bytes. */
static int
sigv4_uri_decode(struct strbuf *sb, const char *s, size_t len, char **cause)
{
	size_t	 i;
	int	 hi, lo;
	char	 c;

	strbuf_add(sb, "", 0);
	for (i = 0; i < len; i++) {
		if (s[i] != '%') {
			strbuf_add(sb, s + i, 1);
			continue;
		}
		hi = i + 2 < len ? sigv4_hexval((unsigned char)s[i + 1]) : -1;
		lo = i + 2 < len ? sigv4_hexval((unsigned char)s[i + 2]) : -1;
		if (hi < 0 || lo < 0) {
			sigv4_set_cause(cause, "bad %%-escape in \"%.*s\"",
			    (int)len, s);
			return -EINVAL;
		}
		c = (char)(hi << 4 | lo);
		strbuf_add(sb, &c, 1);
		i += 2;
	}
	return 0;
}

/*
 * RFC 3986 dot-segment removal plus squeezing of empty segments, the way
 * the AWS SDKs do it: the result starts with '/', and ends with one when
 * the input did.
 */
static char *
sigv4_normalize_path(const char *path)
{
	const char	**seg;
	const char	 *p, *end;
	size_t		 *seglen, n = 0, i, len = strlen(path);
	struct strbuf	  sb = { NULL, 0, 0 };

	seg = xcalloc(len + 1, sizeof(*seg));
	seglen = xcalloc(len + 1, sizeof(*seglen));
	for (p = path; *p != '\0'; p = *end == '/' ? end + 1 : end) {
		end = p + strcspn(p, "/");
		if (end - p == 0 || (end - p == 1 && p[0] == '.'))
			continue;
		if (end - p == 2 && p[0] == '.' && p[1] == '.') {
			if (n > 0)
				n--;
			continue;
		}
		seg[n] = p;
		seglen[n++] = (size_t)(end - p);
	}
	strbuf_add(&sb, "/", 1);
	for (i = 0; i < n; i++) {
		strbuf_add(&sb, seg[i], seglen[i]);
		if (i + 1 < n || (len > 0 && path[len - 1] == '/'))
			strbuf_add(&sb, "/", 1);
	}
	free(seg);
	free(seglen);
	return strbuf_detach(&sb);
}

/* The canonical URI: normalized if asked, then encoded once or twice. */
static int
sigv4_canon_path(struct strbuf *out, const char *path, unsigned int flags,
    char **cause)
{
	struct strbuf	 dec = { NULL, 0, 0 };
	char		*norm;
	int		 error = 0;

	if (path == NULL || *path == '\0')
		path = "/";
	if (*path != '/' || strpbrk(path, "?#") != NULL) {
		sigv4_set_cause(cause, "path \"%s\" must start with '/' and "
		    "hold neither '?' nor '#'", path);
		return -EINVAL;
	}
	if (flags & SIGV4_NORMALIZE_PATH)
		norm = sigv4_normalize_path(path);
	else
		norm = xstrdup(path);
	if (flags & SIGV4_SINGLE_ENCODE) {
		error = sigv4_uri_decode(&dec, norm, strlen(norm), cause);
		if (error == 0)
			sigv4_uri_encode(out, dec.s, dec.len, true);
		strbuf_free(&dec);
	} else
		sigv4_uri_encode(out, norm, strlen(norm), true);
	free(norm);
	return error;
}

static int
sigv4_qparam_cmp(const void *a, const void *b)
{
	const struct sigv4_qparam	*x = a, *y = b;
	int				 c;

	if ((c = strcmp(x->name, y->name)) != 0)
		return c;
	return strcmp(x->value, y->value);
}

/*
 * Query parameters the presigned form adds itself. Like the SDKs, case
 * does not matter: a second X-Amz-Date in any spelling is a mistake.
 */
static bool
sigv4_param_reserved(const char *name, bool token)
{
	static const char *const names[] = { "X-Amz-Algorithm",
	    "X-Amz-Credential", "X-Amz-Date", "X-Amz-Expires",
	    "X-Amz-SignedHeaders", "X-Amz-Signature" };
	size_t	 i;

	for (i = 0; i < nitems(names); i++)
		if (strcasecmp(names[i], name) == 0)
			return true;
	return (token && strcasecmp(name, "X-Amz-Security-Token") == 0);
}

/* Decode one "name=value" piece of the query and encode it canonically. */
static int
sigv4_qparam_parse(struct sigv4_qparam *qp, const char *s, size_t len,
    char **cause)
{
	struct strbuf	 name = { NULL, 0, 0 }, value = { NULL, 0, 0 };
	struct strbuf	 enc = { NULL, 0, 0 };
	const char	*eq = memchr(s, '=', len);
	size_t		 nlen = eq != NULL ? (size_t)(eq - s) : len;
	int		 error;

	if ((error = sigv4_uri_decode(&name, s, nlen, cause)) != 0)
		goto out;
	if (eq != NULL && (error = sigv4_uri_decode(&value, eq + 1,
	    len - nlen - 1, cause)) != 0)
		goto out;
	sigv4_uri_encode(&enc, name.s, name.len, false);
	qp->name = strbuf_detach(&enc);
	sigv4_uri_encode(&enc, value.s, value.len, false);
	qp->value = strbuf_detach(&enc);
out:
	strbuf_free(&name);
	strbuf_free(&value);
	return error;
}

/*
 * The canonical query string: the request's parameters (decoded, then
 * encoded with the unreserved set so that "%E1%88%B4" and the raw UTF-8
 * bytes sign alike) and extra ones (not encoded yet), sorted by encoded
 * name, then value.
 */
static int
sigv4_canon_query(struct strbuf *out, const char *query,
    const struct sigv4_header *extra, size_t nextra, bool presign,
    bool token, char **cause)
{
	struct sigv4_qparam	*qp;
	struct strbuf		 enc = { NULL, 0, 0 };
	const char		*p, *end;
	size_t			 n = 0, i, max = nextra + 1;
	int			 error = 0;

	for (p = query != NULL ? query : ""; *p != '\0'; p++)
		max += *p == '&';
	qp = xcalloc(max, sizeof(*qp));
	for (p = query != NULL ? query : ""; *p != '\0' && error == 0;
	    p = *end == '&' ? end + 1 : end) {
		end = p + strcspn(p, "&");
		if (end == p)
			continue;
		error = sigv4_qparam_parse(&qp[n++], p, (size_t)(end - p),
		    cause);
		if (error == 0 && presign &&
		    sigv4_param_reserved(qp[n - 1].name, token)) {
			sigv4_set_cause(cause, "query parameter %s is added by "
			    "the signer", qp[n - 1].name);
			error = -EINVAL;
		}
	}
	for (i = 0; i < nextra && error == 0; i++) {
		qp[n].name = xstrdup(extra[i].name);
		sigv4_uri_encode(&enc, extra[i].value, strlen(extra[i].value),
		    false);
		qp[n++].value = strbuf_detach(&enc);
	}
	if (error == 0)
		qsort(qp, n, sizeof(*qp), sigv4_qparam_cmp);
	for (i = 0; i < n; i++) {
		if (error == 0)
			strbuf_printf(out, "%s%s=%s", i > 0 ? "&" : "",
			    qp[i].name, qp[i].value);
		free(qp[i].name);
		sigv4_wipe_free(qp[i].value);
	}
	free(qp);
	return error;
}

/*
 * A header value may be folded (a line break followed by blanks, as in
 * "a\r\n  b"); any other line break or control byte would let a value
 * smuggle in a header of its own, so it is refused.
 */
static bool
sigv4_value_ok(const char *v)
{
	const unsigned char	*p;

	for (p = (const unsigned char *)v; *p != '\0'; p++) {
		if (*p == '\r' && p[1] == '\n')
			p++;
		if (*p == '\r' || *p == '\n') {
			if (p[1] != ' ' && p[1] != '\t')
				return false;
		} else if ((*p < 0x20 && *p != '\t') || *p == 0x7f)
			return false;
	}
	return true;
}

/* Trim, and turn every run of blanks (folds included) into one space. */
static char *
sigv4_canon_value(const char *v)
{
	char	*out = xmalloc(strlen(v) + 1), *q = out;
	bool	 blank = false;

	for (; *v != '\0'; v++) {
		if (sigv4_is_blank((unsigned char)*v)) {
			blank = q != out;
			continue;
		}
		if (blank)
			*q++ = ' ';
		blank = false;
		*q++ = *v;
	}
	*q = '\0';
	return out;
}

static int
sigv4_hent_cmp(const void *a, const void *b)
{
	const struct sigv4_hent	*x = a, *y = b;
	int			 c;

	if ((c = strcmp(x->lname, y->lname)) != 0)
		return c;
	return (x->idx > y->idx) - (x->idx < y->idx);
}

/* Lowercase and check one header; it must not be one the signer adds. */
static int
sigv4_hent_make(struct sigv4_hent *h, const struct sigv4_header *hdr,
    size_t idx, const char *const *reserved, char **cause)
{
	char	*p;

	if (hdr->name == NULL || hdr->value == NULL ||
	    !sigv4_is_token(hdr->name)) {
		sigv4_set_cause(cause, "bad header name \"%s\"",
		    hdr->name != NULL ? hdr->name : "(null)");
		return -EINVAL;
	}
	for (; reserved != NULL && *reserved != NULL; reserved++) {
		if (strcasecmp(hdr->name, *reserved) == 0) {
			sigv4_set_cause(cause, "header %s is added by the "
			    "signer", hdr->name);
			return -EINVAL;
		}
	}
	if (!sigv4_value_ok(hdr->value)) {
		sigv4_set_cause(cause, "header %s: line break or control "
		    "character in the value", hdr->name);
		return -EINVAL;
	}
	h->lname = xstrdup(hdr->name);
	for (p = h->lname; *p != '\0'; p++)
		if (*p >= 'A' && *p <= 'Z')
			*p = (char)(*p - 'A' + 'a');
	h->value = sigv4_canon_value(hdr->value);
	h->idx = idx;
	return 0;
}

/*
 * The canonical headers block ("name:value\n" each, sorted, repeated
 * names joined with ',' in request order) and the signed headers list.
 */
static int
sigv4_canon_headers(struct strbuf *block, struct strbuf *names,
    const struct sigv4_request *req, const struct sigv4_header *extra,
    size_t nextra, const char *const *reserved, char **cause)
{
	struct sigv4_hent	*h;
	size_t			 n = 0, i, total = req->nheaders + nextra;
	bool			 host = false;
	int			 error = 0;

	h = xcalloc(total + 1, sizeof(*h));
	for (i = 0; i < total && error == 0; i++) {
		if (i < req->nheaders)
			error = sigv4_hent_make(&h[n], &req->headers[i], i,
			    reserved, cause);
		else
			error = sigv4_hent_make(&h[n], &extra[i -
			    req->nheaders], i, NULL, cause);
		if (error == 0)
			host |= strcmp(h[n++].lname, "host") == 0;
	}
	if (error == 0 && !host) {
		sigv4_set_cause(cause, "no Host header: AWS wants it signed");
		error = -EINVAL;
	}
	if (error == 0) {
		qsort(h, n, sizeof(*h), sigv4_hent_cmp);
		for (i = 0; i < n; i++) {
			if (i > 0 && strcmp(h[i].lname, h[i - 1].lname) == 0)
				strbuf_printf(block, ",%s", h[i].value);
			else {
				strbuf_printf(block, "%s%s:%s", i > 0 ? "\n" :
				    "", h[i].lname, h[i].value);
				strbuf_printf(names, "%s%s", i > 0 ? ";" : "",
				    h[i].lname);
			}
		}
		strbuf_add(block, "\n", 1);
	}
	for (i = 0; i < n; i++) {
		free(h[i].lname);
		sigv4_wipe_free(h[i].value);
	}
	free(h);
	return error;
}

/* Check what the credential scope and the key derivation are made of. */
static int
sigv4_check_params(const struct sigv4_params *p, enum sigv4_form form,
    char **cause)
{
	const char *const	 what[] = { "access key id", "region",
	    "service" };
	const char		*val[] = { p->access_key_id, p->region,
	    p->service };
	size_t			 i;

	for (i = 0; i < nitems(val); i++) {
		/* They go into "Credential=AKID/date/region/service/...". */
		if (val[i] == NULL || *val[i] == '\0' ||
		    strpbrk(val[i], "/,; \t\r\n") != NULL) {
			sigv4_set_cause(cause, "%s is empty or holds '/', ',', "
			    "';' or a blank", what[i]);
			return -EINVAL;
		}
	}
	if (p->secret_access_key == NULL || *p->secret_access_key == '\0' ||
	    strlen(p->secret_access_key) > INT_MAX - 4) {
		sigv4_set_cause(cause, "secret access key is empty or too "
		    "long");
		return -EINVAL;
	}
	if (form == SIGV4_QUERY && (p->expires_s < 1 ||
	    p->expires_s > SIGV4_EXPIRES_MAX_S)) {
		sigv4_set_cause(cause, "expires_s must be 1..%d, got %u",
		    SIGV4_EXPIRES_MAX_S, p->expires_s);
		return -EINVAL;
	}
	if (form != SIGV4_HEADER && form != SIGV4_QUERY) {
		sigv4_set_cause(cause, "unknown signature form %d", (int)form);
		return -EINVAL;
	}
	return 0;
}

/* "20150830T123600Z" and the credential scope. */
static int
sigv4_work_scope(struct sigv4_work *w, const struct sigv4_params *p,
    char **cause)
{
	struct tm	 tm;

	if (gmtime_r(&p->when, &tm) == NULL || tm.tm_year < -1900 ||
	    tm.tm_year > 9999 - 1900) {
		sigv4_set_cause(cause, "signing time %lld is out of range",
		    (long long)p->when);
		return -EINVAL;
	}
	if (strftime(w->amz_date, sizeof(w->amz_date), "%Y%m%dT%H%M%SZ",
	    &tm) != AMZ_DATE_LEN) {
		sigv4_set_cause(cause, "cannot format signing time %lld",
		    (long long)p->when);
		return -EINVAL;
	}
	xasprintf(&w->scope, "%.*s/%s/%s/aws4_request", DATE_STAMP_LEN,
	    w->amz_date, p->region, p->service);
	return 0;
}

static int
sigv4_work_payload(struct sigv4_work *w, const struct sigv4_request *req,
    char **cause)
{
	unsigned char	 md[SHA256_LEN];
	unsigned int	 mdlen = 0;
	const char	*h = req->payload_hash;

	if (h != NULL) {
		/* It goes into a header line and the canonical request. */
		if (*h == '\0' || strlen(h) >= sizeof(w->payload_hash) ||
		    !sigv4_is_token(h)) {
			sigv4_set_cause(cause, "bad payload hash \"%s\"", h);
			return -EINVAL;
		}
		memcpy(w->payload_hash, h, strlen(h) + 1);
		return 0;
	}
	if (EVP_Digest(req->body != NULL ? req->body : "",
	    req->body != NULL ? req->body_len : 0, md, &mdlen, EVP_sha256(),
	    NULL) != 1 || mdlen != SHA256_LEN) {
		sigv4_set_cause(cause, "SHA-256 of the body failed");
		return -EIO;
	}
	sigv4_hex(md, SHA256_LEN, w->payload_hash);
	return 0;
}

/* The headers the signer adds and signs, and those it will not take. */
static size_t
sigv4_signer_headers(const struct sigv4_params *p, enum sigv4_form form,
    const struct sigv4_work *w, struct sigv4_header *extra,
    const char **reserved)
{
	bool	 token = p->session_token != NULL && *p->session_token != '\0';
	size_t	 n = 0, r = 0;

	reserved[r++] = "Authorization";
	reserved[r++] = "X-Amz-Date";
	if (form == SIGV4_HEADER) {
		extra[n].name = "X-Amz-Date";
		extra[n++].value = w->amz_date;
		if (token) {
			reserved[r++] = "X-Amz-Security-Token";
			if (!(p->flags & SIGV4_UNSIGNED_TOKEN)) {
				extra[n].name = "X-Amz-Security-Token";
				extra[n++].value = p->session_token;
			}
		}
		if (p->flags & SIGV4_CONTENT_SHA256) {
			reserved[r++] = "x-amz-content-sha256";
			extra[n].name = "x-amz-content-sha256";
			extra[n++].value = w->payload_hash;
		}
	}
	reserved[r] = NULL;
	return n;
}

/* The X-Amz-* query parameters of the presigned form, before signing. */
static size_t
sigv4_signer_params(const struct sigv4_params *p, const struct sigv4_work *w,
    const char *credential, const char *expires, struct sigv4_header *extra)
{
	size_t	 n = 0;

	extra[n].name = "X-Amz-Algorithm";
	extra[n++].value = SIGV4_ALGORITHM;
	extra[n].name = "X-Amz-Credential";
	extra[n++].value = credential;
	extra[n].name = "X-Amz-Date";
	extra[n++].value = w->amz_date;
	extra[n].name = "X-Amz-SignedHeaders";
	extra[n++].value = w->signed_headers;
	extra[n].name = "X-Amz-Expires";
	extra[n++].value = expires;
	if (p->session_token != NULL && *p->session_token != '\0' &&
	    !(p->flags & SIGV4_UNSIGNED_TOKEN)) {
		extra[n].name = "X-Amz-Security-Token";
		extra[n++].value = p->session_token;
	}
	return n;
}

/* Everything up to the canonical request, into *w. */
static int
sigv4_work_build(struct sigv4_work *w, const struct sigv4_request *req,
    const struct sigv4_params *p, enum sigv4_form form, char **cause)
{
	struct sigv4_header	 extra[8];
	const char		*reserved[8];
	struct strbuf		 cr = { NULL, 0, 0 }, hdrs = { NULL, 0, 0 };
	struct strbuf		 names = { NULL, 0, 0 };
	char			*credential = NULL, expires[16];
	size_t			 nextra;
	int			 error;

	memset(w, 0, sizeof(*w));
	if ((error = sigv4_check_params(p, form, cause)) != 0 ||
	    (error = sigv4_work_scope(w, p, cause)) != 0 ||
	    (error = sigv4_work_payload(w, req, cause)) != 0)
		goto out;
	if (!sigv4_is_token(req->method)) {
		sigv4_set_cause(cause, "bad method \"%s\"",
		    req->method != NULL ? req->method : "(null)");
		error = -EINVAL;
		goto out;
	}
	strbuf_printf(&cr, "%s\n", req->method);
	if ((error = sigv4_canon_path(&cr, req->path, p->flags, cause)) != 0)
		goto out;
	strbuf_add(&cr, "\n", 1);

	/* Headers first: the presigned query names the signed headers. */
	nextra = sigv4_signer_headers(p, form, w, extra, reserved);
	if ((error = sigv4_canon_headers(&hdrs, &names, req, extra, nextra,
	    reserved, cause)) != 0)
		goto out;
	w->signed_headers = strbuf_detach(&names);

	nextra = 0;
	if (form == SIGV4_QUERY) {
		xasprintf(&credential, "%s/%s", p->access_key_id, w->scope);
		snprintf(expires, sizeof(expires), "%u", p->expires_s);
		nextra = sigv4_signer_params(p, w, credential, expires, extra);
	}
	if ((error = sigv4_canon_query(&cr, req->query, extra, nextra,
	    form == SIGV4_QUERY, p->session_token != NULL &&
	    *p->session_token != '\0', cause)) != 0)
		goto out;
	strbuf_printf(&cr, "\n%s\n%s\n%s", hdrs.s, w->signed_headers,
	    w->payload_hash);
	w->creq = strbuf_detach(&cr);
out:
	free(credential);
	strbuf_free(&names);
	if (hdrs.s != NULL)
		OPENSSL_cleanse(hdrs.s, hdrs.len);
	strbuf_free(&hdrs);
	if (cr.s != NULL)
		OPENSSL_cleanse(cr.s, cr.len);
	strbuf_free(&cr);
	if (error != 0)
		sigv4_work_free(w);
	return error;
}

static int
sigv4_hmac(const void *key, size_t keylen, const char *data,
    unsigned char out[SHA256_LEN])
{
	unsigned int	 len = 0;

	if (HMAC(EVP_sha256(), key, (int)keylen, (const unsigned char *)data,
	    strlen(data), out, &len) == NULL || len != SHA256_LEN)
		return -EIO;
	return 0;
}

static char *
sigv4_sts_make(const struct sigv4_work *w, const char *creq, char **cause)
{
	unsigned char	 md[SHA256_LEN];
	unsigned int	 mdlen = 0;
	char		 hex[SHA256_HEX_LEN + 1], *sts;

	if (EVP_Digest(creq, strlen(creq), md, &mdlen, EVP_sha256(),
	    NULL) != 1 || mdlen != SHA256_LEN) {
		sigv4_set_cause(cause, "SHA-256 of the canonical request "
		    "failed");
		return NULL;
	}
	sigv4_hex(md, SHA256_LEN, hex);
	xasprintf(&sts, "%s\n%s\n%s\n%s", SIGV4_ALGORITHM, w->amz_date,
	    w->scope, hex);
	return sts;
}

/*
 * The signing key is a chain of HMACs over the date, region, service and
 * "aws4_request", seeded with "AWS4" and the secret. Every link of the
 * chain is as good as the secret for that day, so all are wiped.
 */
static int
sigv4_sig_make(const struct sigv4_params *p, const struct sigv4_work *w,
    const char *sts, char **out, char **cause)
{
	unsigned char	 k1[SHA256_LEN], k2[SHA256_LEN], sig[SHA256_LEN];
	char		 date[DATE_STAMP_LEN + 1], hex[SHA256_HEX_LEN + 1];
	char		*seed;
	size_t		 seedlen = strlen(p->secret_access_key) + 4;
	int		 error;

	memcpy(date, w->amz_date, DATE_STAMP_LEN);
	date[DATE_STAMP_LEN] = '\0';
	seed = xmalloc(seedlen + 1);
	memcpy(seed, "AWS4", 4);
	memcpy(seed + 4, p->secret_access_key, seedlen - 4 + 1);
	error = sigv4_hmac(seed, seedlen, date, k1);
	if (error == 0)
		error = sigv4_hmac(k1, sizeof(k1), p->region, k2);
	if (error == 0)
		error = sigv4_hmac(k2, sizeof(k2), p->service, k1);
	if (error == 0)
		error = sigv4_hmac(k1, sizeof(k1), "aws4_request", k2);
	if (error == 0)
		error = sigv4_hmac(k2, sizeof(k2), sts, sig);
	OPENSSL_cleanse(seed, seedlen + 1);
	OPENSSL_cleanse(k1, sizeof(k1));
	OPENSSL_cleanse(k2, sizeof(k2));
	free(seed);
	if (error != 0) {
		sigv4_set_cause(cause, "HMAC-SHA256 failed");
		return error;
	}
	sigv4_hex(sig, SHA256_LEN, hex);
	*out = xstrdup(hex);
	return 0;
}

int
sigv4_canonical_request(const struct sigv4_request *req,
    const struct sigv4_params *params, enum sigv4_form form, char **out,
    char **cause)
{
	struct sigv4_work	 w;
	int			 error;

	if ((error = sigv4_work_build(&w, req, params, form, cause)) != 0)
		return error;
	*out = w.creq;
	w.creq = NULL;
	sigv4_work_free(&w);
	return 0;
}

int
sigv4_string_to_sign(const struct sigv4_params *params,
    const char *canonical_request, char **out, char **cause)
{
	struct sigv4_work	 w;
	int			 error;

	memset(&w, 0, sizeof(w));
	if ((error = sigv4_check_params(params, SIGV4_HEADER, cause)) != 0 ||
	    (error = sigv4_work_scope(&w, params, cause)) != 0)
		goto out;
	if ((*out = sigv4_sts_make(&w, canonical_request, cause)) == NULL)
		error = -EIO;
out:
	sigv4_work_free(&w);
	return error;
}

int
sigv4_signature(const struct sigv4_params *params, const char *string_to_sign,
    char **out, char **cause)
{
	struct sigv4_work	 w;
	int			 error;

	memset(&w, 0, sizeof(w));
	if ((error = sigv4_check_params(params, SIGV4_HEADER, cause)) == 0 &&
	    (error = sigv4_work_scope(&w, params, cause)) == 0)
		error = sigv4_sig_make(params, &w, string_to_sign, out, cause);
	sigv4_work_free(&w);
	return error;
}

/* The header form's lines to add, Authorization last. */
static void
sigv4_out_headers(struct sigv4_signed *out, const struct sigv4_params *p,
    const struct sigv4_work *w)
{
	size_t	 n = 0;

	xasprintf(&out->authorization, "%s Credential=%s/%s, "
	    "SignedHeaders=%s, Signature=%s", SIGV4_ALGORITHM,
	    p->access_key_id, w->scope, w->signed_headers, out->signature);
	out->headers = xcalloc(5, sizeof(*out->headers));
	if (p->session_token != NULL && *p->session_token != '\0')
		xasprintf(&out->headers[n++], "X-Amz-Security-Token: %s",
		    p->session_token);
	xasprintf(&out->headers[n++], "X-Amz-Date: %s", w->amz_date);
	if (p->flags & SIGV4_CONTENT_SHA256)
		xasprintf(&out->headers[n++], "x-amz-content-sha256: %s",
		    w->payload_hash);
	xasprintf(&out->headers[n++], "Authorization: %s",
	    out->authorization);
}

/*
 * The query form's query string. The request's own part is kept as it
 * was given, since that is what goes out; the order of what follows is
 * the SDKs' (AWS sorts again anyway).
 */
static void
sigv4_out_query(struct sigv4_signed *out, const struct sigv4_request *req,
    const struct sigv4_params *p, const struct sigv4_work *w)
{
	struct strbuf	 sb = { NULL, 0, 0 };
	char		*credential;

	if (req->query != NULL && *req->query != '\0')
		strbuf_printf(&sb, "%s&", req->query);
	xasprintf(&credential, "%s/%s", p->access_key_id, w->scope);
	strbuf_puts(&sb, "X-Amz-Algorithm=" SIGV4_ALGORITHM
	    "&X-Amz-Credential=");
	sigv4_uri_encode(&sb, credential, strlen(credential), false);
	strbuf_printf(&sb, "&X-Amz-Date=%s&X-Amz-SignedHeaders=",
	    w->amz_date);
	sigv4_uri_encode(&sb, w->signed_headers, strlen(w->signed_headers),
	    false);
	strbuf_printf(&sb, "&X-Amz-Expires=%u", p->expires_s);
	if (p->session_token != NULL && *p->session_token != '\0') {
		strbuf_puts(&sb, "&X-Amz-Security-Token=");
		sigv4_uri_encode(&sb, p->session_token,
		    strlen(p->session_token), false);
	}
	strbuf_printf(&sb, "&X-Amz-Signature=%s", out->signature);
	out->query = strbuf_detach(&sb);
	free(credential);
}

int
sigv4_sign(const struct sigv4_request *req, const struct sigv4_params *params,
    enum sigv4_form form, struct sigv4_signed *out, char **cause)
{
	struct sigv4_work	 w;
	int			 error;

	memset(out, 0, sizeof(*out));
	if ((error = sigv4_work_build(&w, req, params, form, cause)) != 0)
		return error;
	if ((out->string_to_sign = sigv4_sts_make(&w, w.creq, cause)) ==
	    NULL) {
		error = -EIO;
		goto out;
	}
	if ((error = sigv4_sig_make(params, &w, out->string_to_sign,
	    &out->signature, cause)) != 0)
		goto out;
	out->canonical_request = w.creq;
	w.creq = NULL;
	if (form == SIGV4_HEADER)
		sigv4_out_headers(out, params, &w);
	else
		sigv4_out_query(out, req, params, &w);
out:
	sigv4_work_free(&w);
	if (error != 0)
		sigv4_signed_free(out);
	return error;
}

void
sigv4_signed_free(struct sigv4_signed *out)
{
	char	**h;

	if (out == NULL)
		return;
	sigv4_wipe_free(out->canonical_request);
	free(out->string_to_sign);
	free(out->signature);
	free(out->authorization);
	for (h = out->headers; h != NULL && *h != NULL; h++)
		sigv4_wipe_free(*h);
	free(out->headers);
	sigv4_wipe_free(out->query);
	memset(out, 0, sizeof(*out));
}
