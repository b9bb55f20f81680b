/*
 * SigV4 signing: every case of the AWS signing test suite (aws-c-auth's
 * tests/aws-signing-test-suite/v4, kept in shared/test-vectors/sigv4-v4
 * beside the checkout and read at run time), in the header and in the
 * presigned query form, plus the rules the suite does not exercise (S3
 * single encoding, double encoding, refused requests) and two worked
 * examples from the S3 documentation.
 *
 * For each case, request.txt is parsed as raw HTTP (request line,
 * headers with folded continuation lines, body) and context.json with
 * jansson; the canonical request, string to sign and signature must
 * match exactly, and so must the signed request rebuilt from what the
 * signer returns. Without the vector directory the remaining tests run
 * and the program exits 77 (automake's SKIP), saying why.
 */
#include "config.h"

#include <errno.h>
#include <dirent.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>
#include <jansson.h>

#include "sigv4.h"
#include "util.h"

#define VECTORS_REL	"../shared/test-vectors/sigv4-v4"
#define SKIP_EXIT	77	/* automake: the test was skipped */

/* One case folder of the suite. */
struct vcase {
	char	*name;
	char	*dir;
};

/* request.txt, parsed in place. */
struct vreq {
	char			*buf;
	char			*method;
	char			*target;	/* path, as in the file */
	char			*version;
	struct sigv4_request	 req;
	struct sigv4_header	*hdrs;
};

/* context.json. */
struct vctx {
	json_t			*root;
	struct sigv4_params	 params;
};

static const char	*vectors_dir;

/* Whole file as a string; NULL when it does not exist. */
static char *
read_text(const char *dir, const char *file, size_t *lenp)
{
	char	*path, *buf;
	FILE	*f;
	long	 len;

	xasprintf(&path, "%s/%s", dir, file);
	f = fopen(path, "rb");
	if (f == NULL) {
		if (errno != ENOENT)
			fail_msg("%s: %s", path, strerror(errno));
		free(path);
		return NULL;
	}
	assert_int_equal(fseek(f, 0, SEEK_END), 0);
	len = ftell(f);
	assert_true(len >= 0);
	rewind(f);
	buf = xmalloc((size_t)len + 1);
	assert_int_equal(fread(buf, 1, (size_t)len, f), (size_t)len);
	buf[len] = '\0';
	fclose(f);
	free(path);
	if (lenp != NULL)
		*lenp = (size_t)len;
	return buf;
}

/* Split off the line at *p (ending in '\n' or at the end); NULL at end. */
static char *
next_line(char **p, char *end)
{
	char	*line = *p, *nl;

	if (line >= end)
		return NULL;
	nl = memchr(line, '\n', (size_t)(end - line));
	if (nl == NULL)
		nl = end;
	*nl = '\0';
	*p = nl < end ? nl + 1 : end;
	return line;
}

/*
 * "METHOD target HTTP/1.1", headers, an empty line, the body. A line
 * that starts with a blank continues the header above: the value keeps
 * the line break and the blanks, for the signer to fold. The target may
 * hold spaces (get-space-*), so the version is after the last one.
 */
static void
vreq_parse(struct vreq *v, const char *dir)
{
	char	*p, *end, *line, *colon, *q;
	size_t	 len, n = 0;

	memset(v, 0, sizeof(*v));
	v->buf = read_text(dir, "request.txt", &len);
	assert_non_null(v->buf);
	p = v->buf;
	end = v->buf + len;
	line = next_line(&p, end);
	assert_non_null(line);
	v->method = line;
	q = strchr(line, ' ');
	assert_non_null(q);
	*q = '\0';
	v->target = q + 1;
	q = strrchr(v->target, ' ');
	assert_non_null(q);
	*q = '\0';
	v->version = q + 1;

	v->hdrs = xcalloc(len + 1, sizeof(*v->hdrs));
	while (p < end && *p != '\n') {
		line = p;
		/* Take in the continuation lines that follow. */
		for (q = line; (q = memchr(q, '\n', (size_t)(end - q))) !=
		    NULL && q + 1 < end && (q[1] == ' ' || q[1] == '\t'); q++)
			;
		if (q == NULL)
			q = end;
		*q = '\0';
		p = q < end ? q + 1 : end;
		colon = strchr(line, ':');
		assert_non_null(colon);
		*colon = '\0';
		v->hdrs[n].name = line;
		v->hdrs[n++].value = colon + 1;
	}
	if (p < end && *p == '\n')
		p++;

	v->req.method = v->method;
	if ((q = strchr(v->target, '?')) != NULL) {
		/* Keep target whole for the signed request: copy the parts. */
		v->req.path = xstrndup(v->target, (size_t)(q - v->target));
		v->req.query = q + 1;
	} else
		v->req.path = xstrdup(v->target);
	v->req.headers = v->hdrs;
	v->req.nheaders = n;
	v->req.body = p;
	v->req.body_len = (size_t)(end - p);
}

static void
vreq_free(struct vreq *v)
{
	free((char *)v->req.path);
	free(v->hdrs);
	free(v->buf);
}

static time_t
parse_utc(const char *s)
{
	struct tm	 tm;

	memset(&tm, 0, sizeof(tm));
	assert_int_equal(sscanf(s, "%4d-%2d-%2dT%2d:%2d:%2dZ", &tm.tm_year,
	    &tm.tm_mon, &tm.tm_mday, &tm.tm_hour, &tm.tm_min, &tm.tm_sec), 6);
	tm.tm_year -= 1900;
	tm.tm_mon -= 1;
	return timegm(&tm);
}

static const char *
json_str(json_t *o, const char *key, bool required)
{
	json_t	*v = json_object_get(o, key);

	if (v == NULL && !required)
		return NULL;
	if (!json_is_string(v))
		fail_msg("context.json: \"%s\" is not a string", key);
	return json_string_value(v);
}

static void
vctx_parse(struct vctx *c, const char *dir)
{
	json_error_t	 jerr;
	json_t		*creds, *exp;
	char		*path;

	memset(c, 0, sizeof(*c));
	xasprintf(&path, "%s/context.json", dir);
	c->root = json_load_file(path, 0, &jerr);
	if (c->root == NULL)
		fail_msg("%s:%d: %s", path, jerr.line, jerr.text);
	free(path);
	creds = json_object_get(c->root, "credentials");
	assert_true(json_is_object(creds));
	c->params.access_key_id = json_str(creds, "access_key_id", true);
	c->params.secret_access_key = json_str(creds, "secret_access_key",
	    true);
	c->params.session_token = json_str(creds, "token", false);
	c->params.region = json_str(c->root, "region", true);
	c->params.service = json_str(c->root, "service", true);
	c->params.when = parse_utc(json_str(c->root, "timestamp", true));
	exp = json_object_get(c->root, "expiration_in_seconds");
	assert_true(json_is_integer(exp));
	c->params.expires_s = (unsigned int)json_integer_value(exp);
	if (json_is_true(json_object_get(c->root, "normalize")))
		c->params.flags |= SIGV4_NORMALIZE_PATH;
	if (json_is_true(json_object_get(c->root, "sign_body")))
		c->params.flags |= SIGV4_CONTENT_SHA256;
	if (json_is_true(json_object_get(c->root, "omit_session_token")))
		c->params.flags |= SIGV4_UNSIGNED_TOKEN;
}

/* Compare, printing both on a mismatch; true when equal. */
static bool
same_text(const char *vcase, const char *what, const char *want,
    const char *got)
{
	if (got != NULL && strcmp(want, got) == 0)
		return true;
	print_error("%s: %s differs\n--- expected\n%s\n--- got\n%s\n---\n",
	    vcase, what, want, got != NULL ? got : "(null)");
	return false;
}

/* The signed request as the suite writes it, from the signer's output. */
static char *
signed_request(const struct vreq *v, const struct sigv4_signed *out,
    enum sigv4_form form)
{
	struct strbuf	 sb = { NULL, 0, 0 };
	const char	*colon;
	size_t		 i;

	if (form == SIGV4_HEADER)
		strbuf_printf(&sb, "%s %s %s\n", v->method, v->target,
		    v->version);
	else
		strbuf_printf(&sb, "%s %s?%s %s\n", v->method, v->req.path,
		    out->query, v->version);
	for (i = 0; i < v->req.nheaders; i++)
		strbuf_printf(&sb, "%s:%s\n", v->hdrs[i].name,
		    v->hdrs[i].value);
	for (i = 0; out->headers != NULL && out->headers[i] != NULL; i++) {
		/* "Name: value" for curl; the suite writes "Name:value". */
		colon = strstr(out->headers[i], ": ");
		assert_non_null(colon);
		strbuf_printf(&sb, "%.*s:%s\n", (int)(colon -
		    out->headers[i]), out->headers[i], colon + 2);
	}
	strbuf_add(&sb, "\n", 1);
	strbuf_add(&sb, v->req.body, v->req.body_len);
	return strbuf_detach(&sb);
}

/* The step functions must agree with sigv4_sign(). */
static bool
steps_agree(const char *name, const struct vreq *v, const struct vctx *c,
    enum sigv4_form form, const struct sigv4_signed *out)
{
	char	*creq = NULL, *sts = NULL, *sig = NULL, *cause = NULL;
	bool	 ok;

	assert_int_equal(sigv4_canonical_request(&v->req, &c->params, form,
	    &creq, &cause), 0);
	assert_int_equal(sigv4_string_to_sign(&c->params, creq, &sts,
	    &cause), 0);
	assert_int_equal(sigv4_signature(&c->params, sts, &sig, &cause), 0);
	ok = same_text(name, "sigv4_canonical_request()",
	    out->canonical_request, creq);
	ok &= same_text(name, "sigv4_string_to_sign()", out->string_to_sign,
	    sts);
	ok &= same_text(name, "sigv4_signature()", out->signature, sig);
	free(creq);
	free(sts);
	free(sig);
	return ok;
}

/*
 * One form of one case. Returns how many expected files were compared
 * (0: the case has no files for this form); *ok turns false on a
 * mismatch, after printing it.
 */
static int
run_form(const struct vcase *vc, enum sigv4_form form, bool *ok)
{
	static const char *const files[] = { "canonical-request.txt",
	    "string-to-sign.txt", "signature.txt", "signed-request.txt" };
	const char		*prefix = form == SIGV4_HEADER ? "header" :
			    "query";
	struct vreq		 v;
	struct vctx		 c;
	struct sigv4_signed	 out;
	char			*want, *fname, *got[nitems(files)];
	char			*cause = NULL;
	int			 compared = 0, error;
	size_t			 i;

	vreq_parse(&v, vc->dir);
	vctx_parse(&c, vc->dir);
	error = sigv4_sign(&v.req, &c.params, form, &out, &cause);
	if (error != 0)
		fail_msg("%s: %s form: error %d: %s", vc->name, prefix, error,
		    cause != NULL ? cause : "(no cause)");
	got[0] = out.canonical_request;
	got[1] = out.string_to_sign;
	got[2] = out.signature;
	got[3] = signed_request(&v, &out, form);
	for (i = 0; i < nitems(files); i++) {
		xasprintf(&fname, "%s-%s", prefix, files[i]);
		if ((want = read_text(vc->dir, fname, NULL)) != NULL) {
			*ok &= same_text(vc->name, fname, want, got[i]);
			compared++;
		}
		free(want);
		free(fname);
	}
	*ok &= steps_agree(vc->name, &v, &c, form, &out);
	free(got[3]);
	sigv4_signed_free(&out);
	json_decref(c.root);
	vreq_free(&v);
	return compared;
}

static void
test_vector(void **state)
{
	const struct vcase	*vc = *state;
	bool			 ok = true;
	int			 nheader, nquery;

	nheader = run_form(vc, SIGV4_HEADER, &ok);
	nquery = run_form(vc, SIGV4_QUERY, &ok);
	if (nquery == 0)
		print_message("%s: no query-* files, header form only\n",
		    vc->name);
	if (nheader == 0 && nquery == 0)
		fail_msg("%s: no expected results at all", vc->name);
	if (!ok)
		fail_msg("%s: mismatch, see above", vc->name);
}

/* A minimal valid request and parameters for the hand-written tests. */
static const struct sigv4_header	 base_hdrs[] = {
	{ "Host", "example.amazonaws.com" },
};

static struct sigv4_params
base_params(void)
{
	struct sigv4_params	 p = {
		.access_key_id = "AKIDEXAMPLE",
		.secret_access_key = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY",
		.region = "us-east-1",
		.service = "service",
		.when = 1440938160,	/* 2015-08-30T12:36:00Z */
		.expires_s = 3600,
	};

	return p;
}

/* The first two lines after the method: canonical path and query. */
static void
assert_canon(const char *path, const char *query, unsigned int flags,
    const char *want_path, const char *want_query)
{
	struct sigv4_request	 r = { "GET", path, query, base_hdrs, 1,
	    NULL, 0, NULL };
	struct sigv4_params	 p = base_params();
	char			*creq = NULL, *cause = NULL, *want;

	p.flags = flags;
	if (sigv4_canonical_request(&r, &p, SIGV4_HEADER, &creq, &cause) != 0)
		fail_msg("%s?%s: %s", path, query, cause);
	xasprintf(&want, "GET\n%s\n%s\n", want_path, want_query);
	if (strncmp(creq, want, strlen(want)) != 0) {
		print_error("path %s query %s flags %#x\n--- expected\n%s"
		    "--- got\n%s\n", path, query, flags, want, creq);
		fail();
	}
	free(want);
	free(creq);
}

static void
test_path_rules(void **state)
{
	/* Not S3: the path as sent is encoded once more. */
	assert_canon("/a%20b/c d/~x", NULL, 0, "/a%2520b/c%20d/~x", "");
	/* S3: encoded once, whatever the sender's spelling. */
	assert_canon("/a%20b/c d/%7Ex", NULL, SIGV4_SINGLE_ENCODE,
	    "/a%20b/c%20d/~x", "");
	assert_canon("/a/./b/../c/", NULL, SIGV4_NORMALIZE_PATH, "/a/c/", "");
	assert_canon("/a/b/.", NULL, SIGV4_NORMALIZE_PATH, "/a/b", "");
	assert_canon("/../..", NULL, SIGV4_NORMALIZE_PATH, "/", "");
	assert_canon("/a/./b/", NULL, 0, "/a/./b/", "");
	assert_canon("", NULL, 0, "/", "");
}

static void
test_query_rules(void **state)
{
	/* '+' is a plus sign; a name alone gets an empty value. */
	assert_canon("/", "b=2&a=%7e&a=1&c&+=x&&e=%20", 0, "/",
	    "%2B=x&a=1&a=~&b=2&c=&e=%20");
	/* Sorted by name first: "Param" before "Param-3". */
	assert_canon("/", "Param-3=1&Param=2", 0, "/", "Param=2&Param-3=1");
	assert_canon("/", "a=%00%ff", 0, "/", "a=%00%FF");
}

static void
expect_refusal(const struct sigv4_request *r, const struct sigv4_params *p,
    enum sigv4_form form, const char *want_cause)
{
	struct sigv4_signed	 out;
	char			*cause = NULL;

	assert_int_equal(sigv4_sign(r, p, form, &out, &cause), -EINVAL);
	assert_non_null(cause);
	if (strstr(cause, want_cause) == NULL)
		fail_msg("cause \"%s\" lacks \"%s\"", cause, want_cause);
	assert_null(out.signature);
	sigv4_signed_free(&out);
	free(cause);
}

static void
test_refusals(void **state)
{
	struct sigv4_header	 h[2] = { { "Host", "example.amazonaws.com" } };
	struct sigv4_request	 r = { "GET", "/", NULL, h, 2, NULL, 0, NULL };
	struct sigv4_params	 p = base_params();

	r.nheaders = 0;
	expect_refusal(&r, &p, SIGV4_HEADER, "no Host header");
	r.nheaders = 2;
	h[1].name = "authorization";
	h[1].value = "x";
	expect_refusal(&r, &p, SIGV4_HEADER, "added by the signer");
	h[1].name = "X-AMZ-DATE";
	expect_refusal(&r, &p, SIGV4_QUERY, "added by the signer");
	h[1].name = "X-Evil";
	h[1].value = "a\r\nHost: elsewhere";
	expect_refusal(&r, &p, SIGV4_HEADER, "line break");
	h[1].name = "Bad Name";
	h[1].value = "x";
	expect_refusal(&r, &p, SIGV4_HEADER, "bad header name");
	r.nheaders = 1;
	r.query = "a=%zz";
	expect_refusal(&r, &p, SIGV4_HEADER, "bad %-escape");
	r.query = "x-amz-signature=abc";
	expect_refusal(&r, &p, SIGV4_QUERY, "added by the signer");
	r.query = NULL;
	r.path = "relative";
	expect_refusal(&r, &p, SIGV4_HEADER, "must start with '/'");
	r.path = "/";
	p.expires_s = 0;
	expect_refusal(&r, &p, SIGV4_QUERY, "expires_s must be 1..604800");
	p.expires_s = SIGV4_EXPIRES_MAX_S + 1;
	expect_refusal(&r, &p, SIGV4_QUERY, "expires_s must be 1..604800");
	p = base_params();
	p.region = "us-east-1/x";
	expect_refusal(&r, &p, SIGV4_HEADER, "region is empty or holds");
	p = base_params();
	p.when = (time_t)400000000000LL;	/* year ~14645 */
	expect_refusal(&r, &p, SIGV4_HEADER, "out of range");
}

/* A folded value signs like the same value on one line. */
static void
test_folding(void **state)
{
	struct sigv4_header	 a[] = { { "Host", "h" },
	    { "X-A", "\t one \r\n\t two  three " } };
	struct sigv4_header	 b[] = { { "host", "h" },
	    { "x-a", "one two three" } };
	struct sigv4_request	 ra = { "POST", "/", NULL, a, 2, "x", 1, NULL };
	struct sigv4_request	 rb = { "POST", "/", NULL, b, 2, "x", 1, NULL };
	struct sigv4_params	 p = base_params();
	struct sigv4_signed	 sa, sb;

	assert_int_equal(sigv4_sign(&ra, &p, SIGV4_HEADER, &sa, NULL), 0);
	assert_int_equal(sigv4_sign(&rb, &p, SIGV4_HEADER, &sb, NULL), 0);
	assert_string_equal(sa.canonical_request, sb.canonical_request);
	assert_string_equal(sa.signature, sb.signature);
	assert_non_null(strstr(sa.canonical_request, "\nx-a:one two three\n"));
	sigv4_signed_free(&sa);
	sigv4_signed_free(&sb);
}

/*
 * The S3 documentation's worked examples ("Signature Calculations for
 * the Authorization Header: Transferring Payload in a Single Chunk",
 * GET Object; and "Authenticating Requests: Using Query Parameters"):
 * S3 mode, x-amz-content-sha256 and UNSIGNED-PAYLOAD, which the suite
 * does not cover.
 */
static void
test_s3_examples(void **state)
{
	const struct sigv4_header	 h[] = {
		{ "Host", "examplebucket.s3.amazonaws.com" },
		{ "Range", "bytes=0-9" },
	};
	struct sigv4_request	 r = { "GET", "/test.txt", NULL, h, 2, NULL,
	    0, NULL };
	struct sigv4_params	 p = {
		.access_key_id = "AKIAIOSFODNN7EXAMPLE",
		.secret_access_key = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
		.region = "us-east-1",
		.service = "s3",
		.when = 1369353600,	/* 2013-05-24T00:00:00Z */
		.expires_s = 86400,
		.flags = SIGV4_SINGLE_ENCODE | SIGV4_CONTENT_SHA256,
	};
	struct sigv4_signed	 out;

	assert_int_equal(sigv4_sign(&r, &p, SIGV4_HEADER, &out, NULL), 0);
	assert_string_equal(out.signature, "f0e8bdb87c964420e857bd35b5d6ed31"
	    "0bd44f0170aba48dd91039c6036bdb41");
	assert_string_equal(out.headers[1], "x-amz-content-sha256: e3b0c442"
	    "98fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
	sigv4_signed_free(&out);

	r.nheaders = 1;
	r.payload_hash = SIGV4_UNSIGNED_PAYLOAD;
	p.flags = SIGV4_SINGLE_ENCODE;
	assert_int_equal(sigv4_sign(&r, &p, SIGV4_QUERY, &out, NULL), 0);
	assert_string_equal(out.signature, "aeeed9bbccd4d02ee5c0109b86d86835"
	    "f995330da4c265957d157751f604d404");
	assert_null(out.headers);
	sigv4_signed_free(&out);
}

/* Whether dir exists; the first candidate that does wins. */
static bool
is_dir(const char *dir)
{
	struct stat	 sb;

	return stat(dir, &sb) == 0 && S_ISDIR(sb.st_mode);
}

static char *
find_vectors(void)
{
	const char	*srcdir[] = { getenv("CK_SRCDIR"), CK_TOP_SRCDIR };
	char		*dir;
	size_t		 i;

	for (i = 0; i < nitems(srcdir); i++) {
		if (srcdir[i] == NULL || *srcdir[i] == '\0')
			continue;
		xasprintf(&dir, "%s/%s", srcdir[i], VECTORS_REL);
		if (is_dir(dir))
			return dir;
		free(dir);
	}
	return NULL;
}

static int
filter_case(const struct dirent *de)
{
	char	*ctx;
	bool	 ok;

	if (de->d_name[0] == '.')
		return 0;
	xasprintf(&ctx, "%s/%s/context.json", vectors_dir, de->d_name);
	ok = access(ctx, F_OK) == 0;
	free(ctx);
	return ok;
}

int
main(void)
{
	const struct CMUnitTest	 fixed[] = {
		cmocka_unit_test(test_path_rules),
		cmocka_unit_test(test_query_rules),
		cmocka_unit_test(test_refusals),
		cmocka_unit_test(test_folding),
		cmocka_unit_test(test_s3_examples),
	};
	struct CMUnitTest	*tests;
	struct vcase		*cases;
	struct dirent		**de = NULL;
	char			*dir;
	int			 i, n = 0, rc;

	if ((dir = find_vectors()) == NULL) {
		rc = cmocka_run_group_tests_name("sigv4", fixed, NULL, NULL);
		if (rc != 0)
			return rc;
		fprintf(stderr, "SKIP: the AWS SigV4 test suite is not in "
		    "$CK_SRCDIR/%s nor %s/%s (shared/ belongs beside the "
		    "checkout)\n", VECTORS_REL, CK_TOP_SRCDIR, VECTORS_REL);
		return SKIP_EXIT;
	}
	vectors_dir = dir;
	n = scandir(dir, &de, filter_case, alphasort);
	if (n <= 0) {
		fprintf(stderr, "%s: %s\n", dir, n < 0 ? strerror(errno) :
		    "no test cases (no */context.json)");
		return 1;
	}

	/* A test per case, so that cmocka names the one that fails. */
	tests = xcalloc((size_t)n + nitems(fixed), sizeof(*tests));
	cases = xcalloc((size_t)n, sizeof(*cases));
	memcpy(tests, fixed, sizeof(fixed));
	for (i = 0; i < n; i++) {
		cases[i].name = xstrdup(de[i]->d_name);
		xasprintf(&cases[i].dir, "%s/%s", dir, de[i]->d_name);
		tests[nitems(fixed) + i].name = cases[i].name;
		tests[nitems(fixed) + i].test_func = test_vector;
		tests[nitems(fixed) + i].initial_state = &cases[i];
		free(de[i]);
	}
	free(de);
	printf("sigv4: %d cases in %s\n", n, dir);
	/* The macro needs an array; the function behind it takes a count. */
	rc = _cmocka_run_group_tests("sigv4", tests, nitems(fixed) +
	    (size_t)n, NULL, NULL);
	for (i = 0; i < n; i++) {
		free(cases[i].name);
		free(cases[i].dir);
	}
	free(cases);
	free(tests);
	free(dir);
	return rc;
}
