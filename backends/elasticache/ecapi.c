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

#include "credchain.h"
#include "dconf.h"
#include "ecapi.h"
#include "http.h"
#include "log.h"
#include "sigv4.h"
#include "spec.h"
#include "util.h"

#define ACTIONS_MAX		64

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

	struct credchain	*chain;

	struct call_queue	 queue;
	struct token_bucket	 bucket;
	struct event		*pump_ev;
	struct ecapi_stats	 stats;
	struct action_count	 actions[ACTIONS_MAX];
	size_t			 nactions;
};

static void	pump(struct ecapi *);
static void	pump_fire(evutil_socket_t, short, void *);
static void	creds_ready(void *);

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
	credchain_configure(a->chain, a->conf->elasticache.profile, a->region);
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
	a->chain = credchain_new(a->http, "elasticache", creds_ready, a);
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
	credchain_free(a->chain);	/* before the http it fetches over */
	http_free(a->http);
	if (a->pump_ev != NULL)
		event_free(a->pump_ev);
	for (i = 0; i < a->nactions; i++)
		free(a->actions[i].name);
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
	return credchain_source(a->chain);
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
		credchain_expire(c->api->chain);
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
call_send(struct ecapi *a, struct ecapi_call *c, const struct aws_creds *cr)
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
	sp.access_key_id = cr->access_key_id;
	sp.secret_access_key = cr->secret_access_key;
	sp.session_token = cr->session_token;
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

/* The chain's fetch ended: the calls waiting for it go on. */
static void
creds_ready(void *arg)
{
	pump(arg);
}

static void
pump(struct ecapi *a)
{
	struct ecapi_call	*c;
	const struct aws_creds	*cr;
	const char		*why;
	struct timeval		 tv;
	uint64_t		 wait;
	int			 r;

	while ((c = TAILQ_FIRST(&a->queue)) != NULL) {
		r = credchain_get(a->chain, &cr, &why);
		a->stats.creds_fetches = credchain_fetches(a->chain);
		if (r < 0) {
			TAILQ_REMOVE(&a->queue, c, entry);
			c->queued = false;
			call_fail(c, -EACCES, why);
			continue;
		}
		if (r == 0)
			return;		/* creds_ready() comes back */
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
		call_send(a, c, cr);
	}
}
