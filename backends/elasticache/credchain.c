/*
 * The AWS credentials chain; see credchain.h. One fetch at a time walks
 * the sources in order: the environment and the shared files are plain
 * reads (creds.c), web identity is one unsigned STS call, IMDSv2 three
 * requests (a session token, the role's name, the role's keys).
 */
#include "config.h"

#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <jansson.h>

#include "credchain.h"
#include "ecapi.h"
#include "ecxml.h"
#include "http.h"
#include "log.h"
#include "spec.h"		/* read_file_bounded */
#include "util.h"

#define IMDS_TIMEOUT_MS		2000
#define IMDS_TOKEN_TTL_S	"21600"
#define STS_TIMEOUT_MS		10000

enum chain_state {
	CHAIN_NONE,
	CHAIN_FETCHING,
	CHAIN_OK,
	CHAIN_FAILED,
};

struct credchain {
	struct http		*http;
	char			*name;
	credchain_cb		 cb;
	void			*arg;
	char			*profile;
	char			*region;

	struct aws_creds	 creds;
	enum chain_state	 state;
	bool			 in_get;	/* no cb from inside get */
	char			*fail;		/* why it failed */
	uint64_t		 retry_at_ms;
	int64_t			 fetched_s;
	int			 step;	/* IMDS: token, role, keys */
	char			*imds_token;
	char			*imds_role;
	struct http_req		*req;
	uint64_t		 fetches;
};

struct credchain *
credchain_new(struct http *http, const char *name, credchain_cb cb,
    void *arg)
{
	struct credchain	*c = xcalloc(1, sizeof *c);

	c->http = http;
	c->name = xstrdup(name);
	c->cb = cb;
	c->arg = arg;
	c->region = xstrdup("us-east-1");
	return c;
}

static void
wipe_free(char *s)
{
	if (s != NULL)
		explicit_bzero(s, strlen(s));
	free(s);
}

void
credchain_free(struct credchain *c)
{
	if (c == NULL)
		return;
	http_cancel(c->req);
	creds_free(&c->creds);
	wipe_free(c->imds_token);
	free(c->imds_role);
	free(c->fail);
	free(c->profile);
	free(c->region);
	free(c->name);
	free(c);
}

void
credchain_configure(struct credchain *c, const char *profile,
    const char *region)
{
	free(c->profile);
	c->profile = profile != NULL && *profile != '\0' ? xstrdup(profile) :
	    NULL;
	free(c->region);
	c->region = xstrdup(region != NULL && *region != '\0' ? region :
	    "us-east-1");
}

const char *
credchain_source(const struct credchain *c)
{
	return c->state == CHAIN_OK ? c->creds.source : NULL;
}

uint64_t
credchain_fetches(const struct credchain *c)
{
	return c->fetches;
}

void
credchain_expire(struct credchain *c)
{
	if (c->state == CHAIN_OK)
		c->state = CHAIN_NONE;
}

static bool
chain_fresh(const struct credchain *c)
{
	int64_t	 now = clock_wall_s(), life, margin;

	if (c->state != CHAIN_OK)
		return false;
	if (c->creds.expiration == 0)
		return true;
	life = c->creds.expiration - c->fetched_s;
	margin = life / 5 < CREDCHAIN_MARGIN_S ? life / 5 : CREDCHAIN_MARGIN_S;
	return now < c->creds.expiration - margin;
}

/* A fetch ended: tell the user, unless it is still inside get. */
static void
chain_notify(struct credchain *c)
{
	if (!c->in_get && c->cb != NULL)
		c->cb(c->arg);
}

static void
chain_done(struct credchain *c, struct aws_creds *got)
{
	creds_free(&c->creds);
	c->creds = *got;
	memset(got, 0, sizeof *got);
	c->state = CHAIN_OK;
	c->fetched_s = clock_wall_s();
	c->req = NULL;
	log_debug("%s: credentials from %s%s", c->name, c->creds.source,
	    c->creds.expiration ? ", expiring" : "");
	chain_notify(c);
}

static void
chain_failed(struct credchain *c, const char *why)
{
	free(c->fail);
	xasprintf(&c->fail, "no AWS credentials: %s", why);
	c->state = CHAIN_FAILED;
	c->retry_at_ms = clock_mono_ms() + CREDCHAIN_RETRY_MS;
	c->req = NULL;
	log_debug("%s: %s", c->name, c->fail);
	chain_notify(c);
}

/* --- EC2 instance metadata, IMDSv2 ------------------------------------- */

static void	imds_next(struct credchain *);

static const char *
imds_base(void)
{
	const char	*e = getenv("AWS_EC2_METADATA_SERVICE_ENDPOINT");

	return e != NULL && *e != '\0' ? e : "http://169.254.169.254";
}

/* The role's keys, as JSON. */
static void
imds_keys(struct credchain *c, struct http_response *resp)
{
	struct aws_creds got;
	json_t		*j;
	const char	*id, *sk, *tok, *exp;

	memset(&got, 0, sizeof got);
	j = json_loadb(resp->body, resp->len, 0, NULL);
	id = json_string_value(json_object_get(j, "AccessKeyId"));
	sk = json_string_value(json_object_get(j, "SecretAccessKey"));
	tok = json_string_value(json_object_get(j, "Token"));
	exp = json_string_value(json_object_get(j, "Expiration"));
	if (id == NULL || sk == NULL) {
		json_decref(j);
		explicit_bzero(resp->body, resp->len);
		chain_failed(c, "the instance metadata service gave no keys");
		return;
	}
	got.access_key_id = xstrdup(id);
	got.secret_access_key = xstrdup(sk);
	got.session_token = tok ? xstrdup(tok) : NULL;
	got.expiration = exp ? ecapi_parse_iso8601(exp) : 0;
	if (got.expiration < 0)
		got.expiration = 0;
	xasprintf(&got.source, "instance metadata (role %s)", c->imds_role);
	/* The JSON held the secret too. */
	if (json_is_string(json_object_get(j, "SecretAccessKey")))
		json_string_set(json_object_get(j, "SecretAccessKey"), "");
	json_decref(j);
	explicit_bzero(resp->body, resp->len);
	chain_done(c, &got);
}

static void
imds_answered(struct http_response *resp, void *arg)
{
	struct credchain *c = arg;
	char		*why;

	c->req = NULL;
	if (resp->err != 0 || resp->status != 200) {
		if (resp->err != 0)
			xasprintf(&why, "none in the environment or the shared "
			    "files, and the instance metadata service did not "
			    "answer (%s)", resp->error);
		else
			xasprintf(&why, "none in the environment or the shared "
			    "files, and the instance metadata service answered "
			    "HTTP %ld", resp->status);
		chain_failed(c, why);
		free(why);
		return;
	}
	switch (c->step++) {
	case 0:
		wipe_free(c->imds_token);
		c->imds_token = xstrndup(resp->body, strcspn(resp->body,
		    "\r\n"));
		imds_next(c);
		return;
	case 1:
		free(c->imds_role);
		c->imds_role = xstrndup(resp->body, strcspn(resp->body,
		    "\r\n"));
		imds_next(c);
		return;
	default:
		imds_keys(c, resp);
		return;
	}
}

static void
imds_next(struct credchain *c)
{
	struct strlist	 h;
	char		*url, *line;

	memset(&h, 0, sizeof h);
	if (c->step == 0) {
		xasprintf(&url, "%s/latest/api/token", imds_base());
		strlist_add(&h, "X-aws-ec2-metadata-token-ttl-seconds: "
		    IMDS_TOKEN_TTL_S);
		c->req = http_request(c->http, "PUT", url, &h, NULL, 0,
		    IMDS_TIMEOUT_MS, imds_answered, c);
	} else {
		if (c->step == 1)
			xasprintf(&url, "%s/latest/meta-data/iam/"
			    "security-credentials/", imds_base());
		else
			xasprintf(&url, "%s/latest/meta-data/iam/"
			    "security-credentials/%s", imds_base(),
			    c->imds_role);
		xasprintf(&line, "X-aws-ec2-metadata-token: %s", c->imds_token);
		strlist_add(&h, line);
		wipe_free(line);
		c->req = http_request(c->http, "GET", url, &h, NULL, 0,
		    IMDS_TIMEOUT_MS, imds_answered, c);
		explicit_bzero(h.v[0], strlen(h.v[0]));
	}
	strlist_free(&h);
	free(url);
}

/* --- web identity, STS AssumeRoleWithWebIdentity ----------------------- */

static void
sts_answered(struct http_response *resp, void *arg)
{
	struct credchain	*c = arg;
	struct ec_sts_creds	 sc;
	struct ec_error		 e;
	struct aws_creds	 got;
	char			*cause = NULL, *why;

	c->req = NULL;
	if (resp->err != 0) {
		xasprintf(&why, "web identity: STS did not answer (%s)",
		    resp->error);
		chain_failed(c, why);
		free(why);
		return;
	}
	if (resp->status != 200) {
		if (ecxml_parse_error(resp->body, resp->len, &e) == 1)
			xasprintf(&why, "web identity: STS said %s: %s", e.code,
			    e.message ? e.message : "");
		else
			xasprintf(&why, "web identity: STS answered HTTP %ld",
			    resp->status);
		ec_error_free(&e);
		chain_failed(c, why);
		free(why);
		return;
	}
	if (ecxml_parse_sts_creds(resp->body, resp->len, &sc, &cause) != 0) {
		chain_failed(c, cause);
		free(cause);
		return;
	}
	explicit_bzero(resp->body, resp->len);
	memset(&got, 0, sizeof got);
	got.access_key_id = sc.access_key_id;
	got.secret_access_key = sc.secret_access_key;
	got.session_token = sc.session_token;
	got.expiration = ecapi_parse_iso8601(sc.expiration);
	if (got.expiration < 0)
		got.expiration = 0;
	free(sc.expiration);
	xasprintf(&got.source, "web identity (%s)", getenv("AWS_ROLE_ARN"));
	chain_done(c, &got);
}

/*
 * AssumeRoleWithWebIdentity: unsigned, the token is the proof. -ENOENT
 * when no web identity is configured; 0 when the call went out or the
 * chain failed (a token file that cannot be read).
 */
static int
sts_start(struct credchain *c)
{
	const char	*role = getenv("AWS_ROLE_ARN");
	const char	*file = getenv("AWS_WEB_IDENTITY_TOKEN_FILE");
	const char	*ep = getenv("AWS_ENDPOINT_URL_STS");
	const char	*sess = getenv("AWS_ROLE_SESSION_NAME");
	struct strlist	 h;
	char		*tok = NULL, *etok, *erole, *esess, *body, *url;
	char		*why;
	char		 sname[64];
	size_t		 len;
	int		 r;

	if (role == NULL || *role == '\0' || file == NULL || *file == '\0')
		return -ENOENT;
	if ((r = read_file_bounded(file, 16384, &tok, &len)) != 0) {
		xasprintf(&why, "web identity: cannot read "
		    "AWS_WEB_IDENTITY_TOKEN_FILE %s: %s", file, strerror(-r));
		chain_failed(c, why);
		free(why);
		return 0;
	}
	tok[strcspn(tok, "\r\n")] = '\0';
	if (sess == NULL || *sess == '\0') {
		snprintf(sname, sizeof sname, "cachekeeperd-%ld",
		    (long)getpid());
		sess = sname;
	}
	etok = ecapi_urlencode(tok);
	erole = ecapi_urlencode(role);
	esess = ecapi_urlencode(sess);
	xasprintf(&body, "Action=AssumeRoleWithWebIdentity&Version=2011-06-15"
	    "&RoleArn=%s&RoleSessionName=%s&WebIdentityToken=%s", erole, esess,
	    etok);
	if (ep != NULL && *ep != '\0')
		url = xstrdup(ep);
	else
		xasprintf(&url, "https://sts.%s.amazonaws.com/", c->region);
	memset(&h, 0, sizeof h);
	strlist_add(&h, "Content-Type: application/x-www-form-urlencoded; "
	    "charset=utf-8");
	c->req = http_request(c->http, "POST", url, &h, body, strlen(body),
	    STS_TIMEOUT_MS, sts_answered, c);
	strlist_free(&h);
	wipe_free(tok);
	wipe_free(etok);
	wipe_free(body);
	free(erole);
	free(esess);
	free(url);
	return 0;
}

/* --- the order ---------------------------------------------------------- */

static void
chain_start(struct credchain *c)
{
	struct aws_creds got;
	const char	*off = getenv("AWS_EC2_METADATA_DISABLED");
	char		*cause = NULL;
	int		 r;

	c->state = CHAIN_FETCHING;
	c->fetches++;
	memset(&got, 0, sizeof got);
	/* The plain reads first: the environment, then the profile. */
	if ((r = creds_from_env(&got, &cause)) == -ENOENT)
		r = creds_from_profile(c->profile, NULL, NULL, &got, &cause);
	if (r == 0) {
		chain_done(c, &got);
		return;
	}
	if (r != -ENOENT) {
		chain_failed(c, cause);
		free(cause);
		return;
	}
	free(cause);
	if (sts_start(c) == 0)
		return;
	if (off != NULL && strcasecmp(off, "true") == 0) {
		chain_failed(c, "none in the environment or the shared files, "
		    "no web identity, and AWS_EC2_METADATA_DISABLED is set");
		return;
	}
	c->step = 0;
	imds_next(c);
}

int
credchain_get(struct credchain *c, const struct aws_creds **out,
    const char **why)
{
	*out = NULL;
	*why = NULL;
	if (!chain_fresh(c)) {
		if (c->state == CHAIN_FAILED &&
		    clock_mono_ms() < c->retry_at_ms) {
			*why = c->fail;
			return -EACCES;
		}
		if (c->state != CHAIN_FETCHING) {
			c->in_get = true;
			chain_start(c);
			c->in_get = false;
		}
		if (c->state == CHAIN_FAILED) {
			*why = c->fail;
			return -EACCES;
		}
		if (c->state != CHAIN_OK)
			return 0;
	}
	*out = &c->creds;
	return 1;
}
