/*
 * The ElastiCache Query API client; see ecapi.h. Calls wait in one queue
 * for credentials and for the token bucket, go out signed, and come back
 * through retries until they succeed, fail for good, or run out of
 * attempts. The credentials chain runs at most once at a time; every call
 * that needs it waits for it.
 */
#include "config.h"

#include <sys/queue.h>

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <event2/event.h>
#include <jansson.h>

#include "creds.h"
#include "dconf.h"
#include "ecapi.h"
#include "http.h"
#include "log.h"
#include "sigv4.h"
#include "spec.h"
#include "util.h"

#define CREDS_RETRY_MS		5000	/* after the chain found nothing */
#define CREDS_MARGIN_S		300	/* refresh this long before expiry */
#define IMDS_TIMEOUT_MS		2000
#define IMDS_TOKEN_TTL_S	"21600"
#define STS_TIMEOUT_MS		10000
#define ACTIONS_MAX		64

enum creds_state {
	CREDS_NONE,
	CREDS_FETCHING,
	CREDS_OK,
	CREDS_FAILED,
};

struct ecapi_call {
	struct ecapi		*api;
	char			*action;
	char			*body;		/* form, unsigned */
	ecapi_cb		 cb;
	void			*arg;
	unsigned int		 attempt;
	struct http_req		*req;
	struct event		*retry_ev;
	bool			 queued;
	TAILQ_ENTRY(ecapi_call)	 entry;
};

TAILQ_HEAD(call_queue, ecapi_call);

struct action_count {
	char		*name;
	uint64_t	 n;
};

struct ecapi {
	struct event_base	*base;
	const struct dconf	*conf;
	struct http		*http;
	char			*region;
	char			*url;
	char			*host;		/* Host header: authority */
	char			*path;

	struct aws_creds	 creds;
	enum creds_state	 cstate;
	char			*cfail;		/* why the chain failed */
	uint64_t		 cretry_at_ms;
	int64_t			 cfetched_s;
	int			 cstep;		/* IMDS: 0 token, 1 role, 2 keys */
	char			*imds_token;
	char			*imds_role;
	struct http_req		*creq;

	struct call_queue	 queue;
	struct token_bucket	 bucket;
	struct event		*pump_ev;
	struct ecapi_stats	 stats;
	struct action_count	 actions[ACTIONS_MAX];
	size_t			 nactions;
};

static void	pump(struct ecapi *);
static void	pump_fire(evutil_socket_t, short, void *);
static void	creds_start(struct ecapi *);

/* Run the queue on the next loop turn. */
static void
kick(struct ecapi *a)
{
	struct timeval	 tv = { 0, 0 };

	if (a->pump_ev == NULL)
		a->pump_ev = evtimer_new(a->base, pump_fire, a);
	if (!evtimer_pending(a->pump_ev, NULL))
		evtimer_add(a->pump_ev, &tv);
}

char *
ecapi_urlencode(const char *s)
{
	struct strbuf	 sb;
	char		 hex[4];

	strbuf_init(&sb);
	for (; *s != '\0'; s++) {
		unsigned char c = (unsigned char)*s;
		if (isalnum(c) || c == '-' || c == '_' || c == '.' ||
		    c == '~')
			strbuf_add(&sb, (const char *)&c, 1);
		else {
			snprintf(hex, sizeof hex, "%%%02X", c);
			strbuf_add(&sb, hex, 3);
		}
	}
	if (sb.s == NULL)
		strbuf_add(&sb, "", 0);
	return strbuf_detach(&sb);
}

int64_t
ecapi_parse_iso8601(const char *s)
{
	struct tm	 tm;
	int		 y, mo, d, h, mi, sec;

	if (s == NULL || sscanf(s, "%4d-%2d-%2dT%2d:%2d:%2d", &y, &mo, &d, &h,
	    &mi, &sec) != 6)
		return -1;
	memset(&tm, 0, sizeof tm);
	tm.tm_year = y - 1900;
	tm.tm_mon = mo - 1;
	tm.tm_mday = d;
	tm.tm_hour = h;
	tm.tm_min = mi;
	tm.tm_sec = sec;
	return (int64_t)timegm(&tm);
}

static void
set_endpoint(struct ecapi *a)
{
	const char	*e = a->conf->elasticache.endpoint, *p, *slash;
	const char	*r = a->conf->elasticache.region;

	free(a->region);
	free(a->url);
	free(a->host);
	free(a->path);
	if (r == NULL || *r == '\0')
		r = getenv("AWS_REGION");
	if (r == NULL || *r == '\0')
		r = getenv("AWS_DEFAULT_REGION");
	if (r == NULL || *r == '\0')
		r = "us-east-1";
	a->region = xstrdup(r);
	if (e != NULL && *e != '\0')
		a->url = xstrdup(e);
	else
		xasprintf(&a->url, "https://elasticache.%s.amazonaws.com/", r);
	p = strstr(a->url, "://");
	p = p != NULL ? p + 3 : a->url;
	slash = strchr(p, '/');
	a->host = slash ? xstrndup(p, (size_t)(slash - p)) : xstrdup(p);
	a->path = xstrdup(slash ? slash : "/");
}

struct ecapi *
ecapi_new(struct event_base *base, const struct dconf *conf)
{
	struct ecapi	*a = xcalloc(1, sizeof *a);

	a->base = base;
	a->conf = conf;
	if ((a->http = http_new(base)) == NULL) {
		free(a);
		return NULL;
	}
	TAILQ_INIT(&a->queue);
	set_endpoint(a);
	bucket_init(&a->bucket, conf->elasticache.max_calls_per_second,
	    2.0 * conf->elasticache.max_calls_per_second, clock_mono_ms());
	return a;
}

void
ecapi_set_conf(struct ecapi *a, const struct dconf *conf)
{
	a->conf = conf;
	set_endpoint(a);
	a->bucket.rate = conf->elasticache.max_calls_per_second;
	a->bucket.capacity = 2.0 * conf->elasticache.max_calls_per_second;
}

static void
call_free(struct ecapi_call *c)
{
	if (c->queued)
		TAILQ_REMOVE(&c->api->queue, c, entry);
	http_cancel(c->req);
	if (c->retry_ev != NULL)
		event_free(c->retry_ev);
	free(c->action);
	explicit_bzero(c->body, strlen(c->body));	/* may hold a token */
	free(c->body);
	free(c);
}

void
ecapi_free(struct ecapi *a)
{
	struct ecapi_call	*c;
	size_t			 i;

	if (a == NULL)
		return;
	/* Off the queue here, not through c->queued: the loop must end. */
	while ((c = TAILQ_FIRST(&a->queue)) != NULL) {
		TAILQ_REMOVE(&a->queue, c, entry);
		c->queued = false;
		call_free(c);
	}
	http_cancel(a->creq);
	http_free(a->http);
	if (a->pump_ev != NULL)
		event_free(a->pump_ev);
	creds_free(&a->creds);
	for (i = 0; i < a->nactions; i++)
		free(a->actions[i].name);
	free(a->cfail);
	if (a->imds_token != NULL)
		explicit_bzero(a->imds_token, strlen(a->imds_token));
	free(a->imds_token);
	free(a->imds_role);
	free(a->region);
	free(a->url);
	free(a->host);
	free(a->path);
	free(a);
}

void
ecapi_cancel(struct ecapi_call *c)
{
	if (c != NULL)
		call_free(c);
}

const struct ecapi_stats *
ecapi_stats(const struct ecapi *a)
{
	return &a->stats;
}

uint64_t
ecapi_action_count(const struct ecapi *a, const char *action)
{
	size_t	 i;

	for (i = 0; i < a->nactions; i++)
		if (strcmp(a->actions[i].name, action) == 0)
			return a->actions[i].n;
	return 0;
}

const char *
ecapi_creds_source(const struct ecapi *a)
{
	return a->cstate == CREDS_OK ? a->creds.source : NULL;
}

static void
count_action(struct ecapi *a, const char *action)
{
	size_t	 i;

	for (i = 0; i < a->nactions; i++)
		if (strcmp(a->actions[i].name, action) == 0) {
			a->actions[i].n++;
			return;
		}
	if (a->nactions < ACTIONS_MAX) {
		a->actions[a->nactions].name = xstrdup(action);
		a->actions[a->nactions++].n = 1;
	}
}

struct ecapi_call *
ecapi_call(struct ecapi *a, const char *action, const struct kvlist *params,
    ecapi_cb cb, void *arg)
{
	struct ecapi_call	*c = xcalloc(1, sizeof *c);
	struct strbuf		 sb;
	char			*k, *v;
	size_t			 i;

	c->api = a;
	c->action = xstrdup(action);
	c->cb = cb;
	c->arg = arg;
	strbuf_init(&sb);
	strbuf_printf(&sb, "Action=%s&Version=%s", action, ECAPI_VERSION);
	for (i = 0; params != NULL && i < params->n; i++) {
		k = ecapi_urlencode(params->keys[i]);
		v = ecapi_urlencode(params->values[i]);
		strbuf_printf(&sb, "&%s=%s", k, v);
		free(k);
		if (strstr(params->keys[i], "Token") != NULL)
			explicit_bzero(v, strlen(v));
		free(v);
	}
	c->body = strbuf_detach(&sb);
	TAILQ_INSERT_TAIL(&a->queue, c, entry);
	c->queued = true;
	kick(a);	/* never call back from inside ecapi_call() */
	return c;
}

/* Finish c: its callback, then free it. */
static void
call_done(struct ecapi_call *c, struct ecapi_result *res)
{
	ecapi_cb	 cb = c->cb;
	void		*arg = c->arg;

	res->attempts = c->attempt + 1;
	if (res->err == 0)
		c->api->stats.ok++;
	else
		c->api->stats.errors++;
	c->req = NULL;
	call_free(c);
	cb(res, arg);
}

static void
call_fail(struct ecapi_call *c, int err, const char *message)
{
	struct ecapi_result	 res;

	memset(&res, 0, sizeof res);
	res.err = err;
	res.cls = EC_ERR_TRANSIENT;
	res.message = message;
	call_done(c, &res);
}

static void
retry_fire(evutil_socket_t fd, short ev, void *arg)
{
	struct ecapi_call	*c = arg;

	TAILQ_INSERT_HEAD(&c->api->queue, c, entry);
	c->queued = true;
	pump(c->api);
}

static void
call_retry(struct ecapi_call *c, bool throttled)
{
	struct timeval	 tv;
	uint64_t	 ms = retry_delay_ms(c->attempt, (uint32_t)random());

	c->api->stats.retries++;
	if (throttled)
		c->api->stats.throttled++;
	c->attempt++;
	c->req = NULL;
	if (c->retry_ev == NULL)
		c->retry_ev = evtimer_new(c->api->base, retry_fire, c);
	tv.tv_sec = (time_t)(ms / 1000);
	tv.tv_usec = (suseconds_t)(ms % 1000) * 1000;
	evtimer_add(c->retry_ev, &tv);
	log_debug("elasticache: %s: retry %u in %llu ms", c->action,
	    c->attempt, (unsigned long long)ms);
}

static void
call_answered(struct http_response *resp, void *arg)
{
	struct ecapi_call	*c = arg;
	struct ecapi_result	 res;
	char			*msg = NULL;
	int			 r;

	memset(&res, 0, sizeof res);
	res.status = resp->status;
	if (resp->err != 0) {
		if (c->attempt + 1 < ECAPI_MAX_ATTEMPTS) {
			call_retry(c, false);
			return;
		}
		call_fail(c, resp->err, resp->error);
		return;
	}
	if (resp->status >= 200 && resp->status < 300) {
		res.body = resp->body;
		res.len = resp->len;
		call_done(c, &res);
		return;
	}
	r = ecxml_parse_error(resp->body, resp->len, &res.aws);
	if (r != 1) {
		ec_error_free(&res.aws);
		res.aws.code = xstrdup(resp->status >= 500 ?
		    "InternalFailure" : "MalformedResponse");
		xasprintf(&res.aws.message, "HTTP %ld with a body that is no "
		    "AWS error", resp->status);
	}
	res.cls = ec_error_classify(resp->status, res.aws.code,
	    res.aws.message);
	if (strcmp(res.aws.code, "ExpiredToken") == 0 ||
	    strcmp(res.aws.code, "ExpiredTokenException") == 0 ||
	    strcmp(res.aws.code, "RequestExpired") == 0) {
		/* Fetch credentials again, then send again. */
		if (c->api->cstate == CREDS_OK)
			c->api->cstate = CREDS_NONE;
		res.cls = EC_ERR_TRANSIENT;
	}
	/* For TestFailover this code is AWS's 24-hour drill limit. */
	if (strcmp(c->action, "TestFailover") == 0 &&
	    strcmp(res.aws.code, "APICallRateForCustomerExceeded") == 0)
		res.cls = EC_ERR_TERMINAL;
	if ((res.cls == EC_ERR_THROTTLE || res.cls == EC_ERR_TRANSIENT ||
	    res.cls == EC_ERR_UNKNOWN) && c->attempt + 1 < ECAPI_MAX_ATTEMPTS) {
		log_debug("elasticache: %s: %s (%s)", c->action, res.aws.code,
		    ec_error_class_name(res.cls));
		call_retry(c, res.cls == EC_ERR_THROTTLE);
		ec_error_free(&res.aws);
		return;
	}
	xasprintf(&msg, "%s: %s", res.aws.code, res.aws.message ?
	    res.aws.message : "");
	res.err = -EREMOTEIO;
	res.message = msg;
	call_done(c, &res);
	ec_error_free(&res.aws);
	free(msg);
}

static void
call_send(struct ecapi *a, struct ecapi_call *c)
{
	struct sigv4_header	 hdrs[2];
	struct sigv4_request	 rq;
	struct sigv4_params	 sp;
	struct sigv4_signed	 out;
	struct strlist		 lines;
	char			*cause = NULL, *line;
	size_t			 i;

	hdrs[0].name = "Host";
	hdrs[0].value = a->host;
	hdrs[1].name = "Content-Type";
	hdrs[1].value = "application/x-www-form-urlencoded; charset=utf-8";
	memset(&rq, 0, sizeof rq);
	rq.method = "POST";
	rq.path = a->path;
	rq.headers = hdrs;
	rq.nheaders = nitems(hdrs);
	rq.body = c->body;
	rq.body_len = strlen(c->body);
	memset(&sp, 0, sizeof sp);
	sp.access_key_id = a->creds.access_key_id;
	sp.secret_access_key = a->creds.secret_access_key;
	sp.session_token = a->creds.session_token;
	sp.region = a->region;
	sp.service = "elasticache";
	sp.when = time(NULL);
	if (sigv4_sign(&rq, &sp, SIGV4_HEADER, &out, &cause) != 0) {
		call_fail(c, -EINVAL, cause ? cause : "cannot sign");
		free(cause);
		return;
	}
	memset(&lines, 0, sizeof lines);
	xasprintf(&line, "Host: %s", a->host);
	strlist_add(&lines, line);
	free(line);
	xasprintf(&line, "Content-Type: %s", hdrs[1].value);
	strlist_add(&lines, line);
	free(line);
	for (i = 0; out.headers != NULL && out.headers[i] != NULL; i++)
		strlist_add(&lines, out.headers[i]);
	a->stats.calls++;
	count_action(a, c->action);
	c->req = http_request(a->http, "POST", a->url, &lines, c->body,
	    strlen(c->body), ECAPI_TIMEOUT_MS, call_answered, c);
	for (i = 0; i < lines.n; i++)
		explicit_bzero(lines.v[i], strlen(lines.v[i]));
	strlist_free(&lines);
	sigv4_signed_free(&out);
}

static void
pump_fire(evutil_socket_t fd, short ev, void *arg)
{
	pump(arg);
}

static bool
creds_fresh(struct ecapi *a)
{
	int64_t	 now = clock_wall_s(), life, margin;

	if (a->cstate != CREDS_OK)
		return false;
	if (a->creds.expiration == 0)
		return true;
	life = a->creds.expiration - a->cfetched_s;
	margin = life / 5 < CREDS_MARGIN_S ? life / 5 : CREDS_MARGIN_S;
	return now < a->creds.expiration - margin;
}

static void
pump(struct ecapi *a)
{
	struct ecapi_call	*c;
	struct timeval		 tv;
	uint64_t		 wait;

	while ((c = TAILQ_FIRST(&a->queue)) != NULL) {
		if (!creds_fresh(a)) {
			if (a->cstate == CREDS_FAILED &&
			    clock_mono_ms() < a->cretry_at_ms) {
				TAILQ_REMOVE(&a->queue, c, entry);
				c->queued = false;
				call_fail(c, -EACCES, a->cfail);
				continue;
			}
			if (a->cstate != CREDS_FETCHING)
				creds_start(a);
			return;
		}
		if ((wait = bucket_take(&a->bucket, clock_mono_ms())) > 0) {
			if (a->pump_ev == NULL)
				a->pump_ev = evtimer_new(a->base, pump_fire, a);
			tv.tv_sec = (time_t)(wait / 1000);
			tv.tv_usec = (suseconds_t)(wait % 1000) * 1000;
			evtimer_add(a->pump_ev, &tv);
			return;
		}
		TAILQ_REMOVE(&a->queue, c, entry);
		c->queued = false;
		call_send(a, c);
	}
}

/* --- the credentials chain --------------------------------------------- */

static void
creds_done(struct ecapi *a, struct aws_creds *got)
{
	creds_free(&a->creds);
	a->creds = *got;
	memset(got, 0, sizeof *got);
	a->cstate = CREDS_OK;
	a->cfetched_s = clock_wall_s();
	a->creq = NULL;
	log_debug("elasticache: credentials from %s%s", a->creds.source,
	    a->creds.expiration ? ", expiring" : "");
	pump(a);
}

static void
creds_failed(struct ecapi *a, const char *why)
{
	free(a->cfail);
	xasprintf(&a->cfail, "no AWS credentials: %s", why);
	a->cstate = CREDS_FAILED;
	a->cretry_at_ms = clock_mono_ms() + CREDS_RETRY_MS;
	a->creq = NULL;
	log_debug("elasticache: %s", a->cfail);
	pump(a);
}

static void	imds_next(struct ecapi *);

static const char *
imds_base(void)
{
	const char	*e = getenv("AWS_EC2_METADATA_SERVICE_ENDPOINT");

	return e != NULL && *e != '\0' ? e : "http://169.254.169.254";
}

static void
imds_answered(struct http_response *resp, void *arg)
{
	struct ecapi	*a = arg;
	struct aws_creds got;
	json_t		*j;
	const char	*id, *sk, *tok, *exp;
	char		*why;

	a->creq = NULL;
	if (resp->err != 0 || resp->status != 200) {
		xasprintf(&why, "none in the environment or the shared files, "
		    "and the instance metadata service %s%s%s",
		    resp->err ? "did not answer (" : "answered HTTP ",
		    resp->err ? resp->error : "", resp->err ? ")" : "");
		if (!resp->err) {
			char *w2;
			xasprintf(&w2, "%s%ld", why, resp->status);
			free(why);
			why = w2;
		}
		creds_failed(a, why);
		free(why);
		return;
	}
	switch (a->cstep++) {
	case 0:
		free(a->imds_token);
		a->imds_token = xstrndup(resp->body, strcspn(resp->body,
		    "\r\n"));
		imds_next(a);
		return;
	case 1:
		free(a->imds_role);
		a->imds_role = xstrndup(resp->body, strcspn(resp->body,
		    "\r\n"));
		imds_next(a);
		return;
	default:
		break;
	}
	memset(&got, 0, sizeof got);
	j = json_loadb(resp->body, resp->len, 0, NULL);
	id = json_string_value(json_object_get(j, "AccessKeyId"));
	sk = json_string_value(json_object_get(j, "SecretAccessKey"));
	tok = json_string_value(json_object_get(j, "Token"));
	exp = json_string_value(json_object_get(j, "Expiration"));
	if (id == NULL || sk == NULL) {
		json_decref(j);
		creds_failed(a, "the instance metadata service gave no keys");
		return;
	}
	got.access_key_id = xstrdup(id);
	got.secret_access_key = xstrdup(sk);
	got.session_token = tok ? xstrdup(tok) : NULL;
	got.expiration = exp ? ecapi_parse_iso8601(exp) : 0;
	if (got.expiration < 0)
		got.expiration = 0;
	xasprintf(&got.source, "instance metadata (role %s)", a->imds_role);
	/* The JSON held the secret too. */
	if (json_is_string(json_object_get(j, "SecretAccessKey")))
		json_string_set(json_object_get(j, "SecretAccessKey"), "");
	json_decref(j);
	explicit_bzero(resp->body, resp->len);
	creds_done(a, &got);
}

static void
imds_next(struct ecapi *a)
{
	struct strlist	 h;
	char		*url, *line;

	memset(&h, 0, sizeof h);
	if (a->cstep == 0) {
		xasprintf(&url, "%s/latest/api/token", imds_base());
		strlist_add(&h, "X-aws-ec2-metadata-token-ttl-seconds: "
		    IMDS_TOKEN_TTL_S);
		a->creq = http_request(a->http, "PUT", url, &h, NULL, 0,
		    IMDS_TIMEOUT_MS, imds_answered, a);
	} else {
		if (a->cstep == 1)
			xasprintf(&url, "%s/latest/meta-data/iam/"
			    "security-credentials/", imds_base());
		else
			xasprintf(&url, "%s/latest/meta-data/iam/"
			    "security-credentials/%s", imds_base(),
			    a->imds_role);
		xasprintf(&line, "X-aws-ec2-metadata-token: %s", a->imds_token);
		strlist_add(&h, line);
		explicit_bzero(line, strlen(line));
		free(line);
		a->creq = http_request(a->http, "GET", url, &h, NULL, 0,
		    IMDS_TIMEOUT_MS, imds_answered, a);
		explicit_bzero(h.v[0], strlen(h.v[0]));
	}
	strlist_free(&h);
	free(url);
}

static void
sts_answered(struct http_response *resp, void *arg)
{
	struct ecapi		*a = arg;
	struct ec_sts_creds	 sc;
	struct ec_error		 e;
	struct aws_creds	 got;
	char			*cause = NULL, *why;

	a->creq = NULL;
	if (resp->err != 0) {
		xasprintf(&why, "web identity: STS did not answer (%s)",
		    resp->error);
		creds_failed(a, why);
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
		creds_failed(a, why);
		free(why);
		return;
	}
	if (ecxml_parse_sts_creds(resp->body, resp->len, &sc, &cause) != 0) {
		creds_failed(a, cause);
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
	creds_done(a, &got);
}

/* AssumeRoleWithWebIdentity: unsigned, the token is the proof. */
static int
sts_start(struct ecapi *a)
{
	const char	*role = getenv("AWS_ROLE_ARN");
	const char	*file = getenv("AWS_WEB_IDENTITY_TOKEN_FILE");
	const char	*ep = getenv("AWS_ENDPOINT_URL_STS");
	const char	*sess = getenv("AWS_ROLE_SESSION_NAME");
	struct strlist	 h;
	char		*tok = NULL, *etok, *erole, *esess, *body, *url, *why,
			 sname[64];
	size_t		 len;
	int		 r;

	if (role == NULL || *role == '\0' || file == NULL || *file == '\0')
		return -ENOENT;
	if ((r = read_file_bounded(file, 16384, &tok, &len)) != 0) {
		xasprintf(&why, "web identity: cannot read "
		    "AWS_WEB_IDENTITY_TOKEN_FILE %s: %s", file, strerror(-r));
		creds_failed(a, why);
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
		xasprintf(&url, "https://sts.%s.amazonaws.com/", a->region);
	memset(&h, 0, sizeof h);
	strlist_add(&h, "Content-Type: application/x-www-form-urlencoded; "
	    "charset=utf-8");
	a->creq = http_request(a->http, "POST", url, &h, body, strlen(body),
	    STS_TIMEOUT_MS, sts_answered, a);
	strlist_free(&h);
	explicit_bzero(tok, strlen(tok));
	explicit_bzero(etok, strlen(etok));
	explicit_bzero(body, strlen(body));
	free(tok);
	free(etok);
	free(erole);
	free(esess);
	free(body);
	free(url);
	return 0;
}

static void
creds_start(struct ecapi *a)
{
	struct aws_creds got;
	const char	*off = getenv("AWS_EC2_METADATA_DISABLED");
	char		*cause = NULL;
	int		 r;

	a->cstate = CREDS_FETCHING;
	a->stats.creds_fetches++;
	memset(&got, 0, sizeof got);
	if ((r = creds_from_env(&got, &cause)) == 0) {
		creds_done(a, &got);
		return;
	}
	if (r != -ENOENT) {
		creds_failed(a, cause);
		free(cause);
		return;
	}
	if ((r = creds_from_profile(a->conf->elasticache.profile, NULL, NULL,
	    &got, &cause)) == 0) {
		creds_done(a, &got);
		return;
	}
	if (r != -ENOENT) {
		creds_failed(a, cause);
		free(cause);
		return;
	}
	free(cause);
	if (sts_start(a) == 0)
		return;
	if (off != NULL && strcasecmp(off, "true") == 0) {
		creds_failed(a, "none in the environment or the shared files, "
		    "no web identity, and AWS_EC2_METADATA_DISABLED is set");
		return;
	}
	a->cstep = 0;
	imds_next(a);
}
