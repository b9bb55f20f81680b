/*
 * HTTP requests on libcurl's multi-socket API, driven by the daemon's
 * event_base the way curl's docs/examples/hiperfifo.c does it: libcurl
 * tells us which sockets to watch (http_sock_update) and when to call it
 * back (http_timer_update, one libevent timer); libevent tells libcurl
 * what happened (curl_multi_socket_action); after each action the finished
 * transfers are collected (http_collect) and found again by CURLOPT_PRIVATE.
 *
 * Users' callbacks never run from inside libcurl. A finished request is
 * moved to h->done and called back from done_ev, a zero-second timer of
 * our own, when no libcurl frame is on the stack: there a callback may
 * freely start, cancel or free, which libcurl forbids from inside its
 * callbacks (CURLM_RECURSIVE_API_CALL). It also gives one path for
 * requests that fail before libcurl sees them, so that no callback ever
 * runs from inside http_request().
 *
 * A request is in exactly one place: h->reqs (REQ_RUNNING, attached to the
 * multi handle), h->done (REQ_DONE, detached, waiting for its callback), or
 * on the stack of http_done_run (REQ_CALLING, in no list).
 *
 * libcurl 7.88 notes that this file relies on:
 * - The socket callback says CURL_POLL_REMOVE before libcurl closes a
 *   socket, so an fd number is never watched twice. But a connection closed
 *   from the connection cache, as in curl_multi_cleanup(), is not always
 *   announced; every struct http_sock is therefore also kept in h->socks
 *   and whatever is left there is freed with h.
 * - With the threaded resolver (Debian's), removing an easy handle whose
 *   name is still being resolved joins the resolver thread, i.e. blocks
 *   until getaddrinfo() returns, unless CURLOPT_QUICK_EXIT (7.87) is set.
 *   That happens on http_cancel() and on a timeout during DNS.
 */
#include "config.h"

#include <sys/queue.h>
#include <sys/time.h>

#include <ctype.h>
#include <errno.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <curl/curl.h>
#include <event2/event.h>
#include <event2/event_struct.h>

#include "http.h"
#include "log.h"
#include "util.h"

#define HTTP_USER_AGENT		PACKAGE_NAME "/" PACKAGE_VERSION

enum http_req_state {
	REQ_RUNNING,
	REQ_DONE,
	REQ_CALLING,
};

/* A socket libcurl wants watched; libcurl's socketp for it. */
struct http_sock {
	TAILQ_ENTRY(http_sock)	 entry;
	struct event		 ev;
};
TAILQ_HEAD(http_socks, http_sock);

struct http_req {
	TAILQ_ENTRY(http_req)	 entry;
	struct http		*h;
	enum http_req_state	 state;
	CURL			*easy;
	bool			 attached;	/* easy is in h->multi */
	struct curl_slist	*hdrs;
	char			*body;		/* request body, a copy */
	char			*what;		/* "GET http://host/path" */
	http_cb			 cb;
	void			*arg;
	uint64_t		 start_us;
	size_t			 max_body;

	/* The answer, as it comes in. */
	struct strbuf		 rbody;
	struct kvlist		 rheaders;
	size_t			 rheaders_len;
	long			 status;
	int			 err;		/* ours, or mapped from curl */
	char			*error;
	char			 errbuf[CURL_ERROR_SIZE];
};
TAILQ_HEAD(http_reqs, http_req);

struct http {
	struct event_base	*base;
	CURLM			*multi;
	struct event		 timer;		/* libcurl's one timeout */
	struct event		 done_ev;	/* 0s timer: http_done_run */
	struct http_socks	 socks;
	struct http_reqs	 reqs;
	struct http_reqs	 done;
	size_t			 ndone;
	char			*ca_file;
	char			*unix_path;
	size_t			 max_body;
	bool			 calling;	/* in http_done_run */
	bool			 freeing;
};

static void	http_collect(struct http *);
static void	http_destroy(struct http *);
static void	http_req_fail(struct http_req *, int, const char *, ...)
		    __attribute__((format(printf, 3, 4)));

static void
http_sock_free(struct http *h, struct http_sock *hs)
{
	event_del(&hs->ev);
	TAILQ_REMOVE(&h->socks, hs, entry);
	free(hs);
}

/* libevent: a socket libcurl watches is ready. */
static void
http_sock_event(evutil_socket_t fd, short what, void *arg)
{
	struct http	*h = arg;
	int		 action = 0, running;
	CURLMcode	 mc;

	if (what & EV_READ)
		action |= CURL_CSELECT_IN;
	if (what & EV_WRITE)
		action |= CURL_CSELECT_OUT;
	mc = curl_multi_socket_action(h->multi, fd, action, &running);
	if (mc != CURLM_OK && mc != CURLM_BAD_SOCKET)
		log_debug("http: curl_multi_socket_action: %s",
		    curl_multi_strerror(mc));
	http_collect(h);
}

/*
 * CURLMOPT_SOCKETFUNCTION: watch s for what libcurl asks, or stop. The
 * event's argument is h, not hs: hs may be freed by the action it runs.
 */
static int
http_sock_update(CURL *easy, curl_socket_t s, int what, void *arg,
    void *sockp)
{
	struct http		*h = arg;
	struct http_sock	*hs = sockp;
	short			 flags = EV_PERSIST;

	if (what == CURL_POLL_REMOVE) {
		if (hs != NULL)
			http_sock_free(h, hs);
		return 0;
	}
	if (hs == NULL) {
		hs = xcalloc(1, sizeof *hs);
		TAILQ_INSERT_TAIL(&h->socks, hs, entry);
		curl_multi_assign(h->multi, s, hs);
	} else
		event_del(&hs->ev);
	if (what & CURL_POLL_IN)
		flags |= EV_READ;
	if (what & CURL_POLL_OUT)
		flags |= EV_WRITE;
	event_assign(&hs->ev, h->base, s, flags, http_sock_event, h);
	event_add(&hs->ev, NULL);
	return 0;
}

/* libevent: libcurl's timeout expired. */
static void
http_timer_fire(evutil_socket_t fd, short what, void *arg)
{
	struct http	*h = arg;
	int		 running;
	CURLMcode	 mc;

	mc = curl_multi_socket_action(h->multi, CURL_SOCKET_TIMEOUT, 0,
	    &running);
	if (mc != CURLM_OK)
		log_debug("http: curl_multi_socket_action: %s",
		    curl_multi_strerror(mc));
	http_collect(h);
}

/* CURLMOPT_TIMERFUNCTION: (re)arm or stop the one timer; 0 means now. */
static int
http_timer_update(CURLM *multi, long timeout_ms, void *arg)
{
	struct http	*h = arg;
	struct timeval	 tv;

	if (timeout_ms < 0) {
		evtimer_del(&h->timer);
		return 0;
	}
	tv.tv_sec = timeout_ms / 1000;
	tv.tv_usec = (timeout_ms % 1000) * 1000;
	evtimer_add(&h->timer, &tv);
	return 0;
}

/* CURLOPT_WRITEFUNCTION: keep the body, up to req->max_body bytes. */
static size_t
http_body_write(char *p, size_t size, size_t n, void *arg)
{
	struct http_req	*req = arg;

	n *= size;	/* size is always 1 */
	if (n > req->max_body - req->rbody.len) {
		http_req_fail(req, -EFBIG, "response body larger than %zu "
		    "bytes", req->max_body);
		return 0;	/* CURLE_WRITE_ERROR */
	}
	strbuf_add(&req->rbody, p, n);
	return n;
}

/*
 * CURLOPT_HEADERFUNCTION: one header line at a time, with its CRLF. A
 * status line starts a new response (after a 100 Continue, say), whose
 * headers replace those seen so far; obsolete folded lines continue the
 * previous value.
 */
static size_t
http_header_write(char *p, size_t size, size_t n, void *arg)
{
	struct http_req	*req = arg;
	struct kvlist	*kv = &req->rheaders;
	size_t		 len = n * size, i;
	const char	*colon, *v, *end = p + len;
	char		*name, *joined;

	req->rheaders_len += len;
	if (req->rheaders_len > HTTP_MAX_HEADERS_LEN) {
		http_req_fail(req, -EFBIG, "response headers larger than %u "
		    "bytes", HTTP_MAX_HEADERS_LEN);
		return 0;	/* CURLE_WRITE_ERROR */
	}
	while (end > p && (end[-1] == '\r' || end[-1] == '\n'))
		end--;
	if (end - p >= 5 && strncmp(p, "HTTP/", 5) == 0) {
		kvlist_free(kv);
		return len;
	}
	if (end == p)
		return len;
	if (*p == ' ' || *p == '\t') {
		if (kv->n == 0)
			return len;
		while (p < end && (*p == ' ' || *p == '\t'))
			p++;
		xasprintf(&joined, "%s %.*s", kv->values[kv->n - 1],
		    (int)(end - p), p);
		free(kv->values[kv->n - 1]);
		kv->values[kv->n - 1] = joined;
		return len;
	}
	if ((colon = memchr(p, ':', end - p)) == NULL || colon == p)
		return len;	/* not a header: ignore it */
	if (kv->n >= HTTP_MAX_HEADERS) {
		http_req_fail(req, -EFBIG, "response has more than %u header "
		    "lines", HTTP_MAX_HEADERS);
		return 0;
	}
	for (v = colon + 1; v < end && (*v == ' ' || *v == '\t'); v++)
		;
	while (end > v && (end[-1] == ' ' || end[-1] == '\t'))
		end--;
	name = xstrndup(p, colon - p);
	for (i = 0; name[i] != '\0'; i++)
		name[i] = tolower((unsigned char)name[i]);
	joined = xstrndup(v, end - v);
	kvlist_add(kv, name, joined);
	free(name);
	free(joined);
	return len;
}

/* A libcurl result as a negative errno; see http.h. */
static int
http_err_from_curl(CURLcode cc, long os_errno)
{
	switch (cc) {
	case CURLE_OK:
		return 0;
	case CURLE_OPERATION_TIMEDOUT:
		return -ETIMEDOUT;
	case CURLE_COULDNT_CONNECT:
		return os_errno > 0 ? -(int)os_errno : -ECONNREFUSED;
	case CURLE_COULDNT_RESOLVE_HOST:
	case CURLE_COULDNT_RESOLVE_PROXY:
		return -EHOSTUNREACH;
	case CURLE_GOT_NOTHING:
	case CURLE_SEND_ERROR:
	case CURLE_RECV_ERROR:
	case CURLE_PARTIAL_FILE:
	case CURLE_HTTP2:
	case CURLE_HTTP2_STREAM:
		return -ECONNRESET;
	case CURLE_SSL_CONNECT_ERROR:
	case CURLE_PEER_FAILED_VERIFICATION:
	case CURLE_SSL_CERTPROBLEM:
	case CURLE_SSL_CIPHER:
	case CURLE_SSL_CACERT_BADFILE:
	case CURLE_SSL_ISSUER_ERROR:
	case CURLE_SSL_INVALIDCERTSTATUS:
	case CURLE_SSL_PINNEDPUBKEYNOTMATCH:
	case CURLE_USE_SSL_FAILED:
	case CURLE_WEIRD_SERVER_REPLY:
		return -EPROTO;
	case CURLE_FILESIZE_EXCEEDED:
		return -EFBIG;
	case CURLE_URL_MALFORMAT:
	case CURLE_UNSUPPORTED_PROTOCOL:
	case CURLE_BAD_FUNCTION_ARGUMENT:
		return -EINVAL;
	case CURLE_OUT_OF_MEMORY:
		return -ENOMEM;
	default:
		return -EIO;
	}
}

/* Record why req failed, unless it already says. */
static void
http_req_fail(struct http_req *req, int err, const char *fmt, ...)
{
	va_list	 ap;

	if (req->err != 0)
		return;
	req->err = err;
	va_start(ap, fmt);
	xvasprintf(&req->error, fmt, ap);
	va_end(ap);
}

/*
 * Run http_done_run on the next turn of the loop. A zero timer rather than
 * event_active(): libevent 2.1 runs events activated from a callback in
 * the same pass, without polling in between.
 */
static void
http_done_schedule(struct http *h)
{
	const struct timeval	 now = { 0, 0 };

	evtimer_add(&h->done_ev, &now);
}

/* Queue req for its callback, from done_ev. */
static void
http_req_queue_done(struct http_req *req)
{
	struct http	*h = req->h;

	req->state = REQ_DONE;
	TAILQ_INSERT_TAIL(&h->done, req, entry);
	h->ndone++;
	http_done_schedule(h);
}

/* Take a transfer libcurl finished off the multi handle, and queue it. */
static void
http_req_finished(struct http_req *req, CURLcode cc)
{
	struct http	*h = req->h;
	long		 os_errno = 0;

	curl_easy_getinfo(req->easy, CURLINFO_RESPONSE_CODE, &req->status);
	curl_easy_getinfo(req->easy, CURLINFO_OS_ERRNO, &os_errno);
	if (cc == CURLE_FILESIZE_EXCEEDED)
		http_req_fail(req, -EFBIG, "response body larger than %zu "
		    "bytes", req->max_body);
	else if (cc != CURLE_OK)
		http_req_fail(req, http_err_from_curl(cc, os_errno), "%s",
		    req->errbuf[0] != '\0' ? req->errbuf :
		    curl_easy_strerror(cc));
	curl_multi_remove_handle(h->multi, req->easy);
	req->attached = false;
	curl_easy_cleanup(req->easy);
	req->easy = NULL;
	TAILQ_REMOVE(&h->reqs, req, entry);
	http_req_queue_done(req);
}

/* After each action: collect the transfers libcurl has finished. */
static void
http_collect(struct http *h)
{
	CURLMsg		*msg;
	CURL		*easy;
	CURLcode	 cc;
	char		*p;
	int		 left;

	while ((msg = curl_multi_info_read(h->multi, &left)) != NULL) {
		if (msg->msg != CURLMSG_DONE)
			continue;
		/* msg dies with the handle's removal: copy first. */
		easy = msg->easy_handle;
		cc = msg->data.result;
		if (curl_easy_getinfo(easy, CURLINFO_PRIVATE, &p) != CURLE_OK ||
		    p == NULL)
			continue;
		http_req_finished((struct http_req *)p, cc);
	}
}

static void
http_req_free(struct http_req *req)
{
	if (req == NULL)
		return;
	if (req->attached)
		curl_multi_remove_handle(req->h->multi, req->easy);
	if (req->easy != NULL)
		curl_easy_cleanup(req->easy);
	curl_slist_free_all(req->hdrs);
	free(req->body);
	free(req->what);
	strbuf_free(&req->rbody);
	kvlist_free(&req->rheaders);
	free(req->error);
	free(req);
}

/* Call req back with its outcome, then free it. */
static void
http_req_call(struct http_req *req)
{
	struct http_response	 resp;

	memset(&resp, 0, sizeof resp);
	resp.seconds = (clock_mono_us() - req->start_us) / 1e6;
	resp.err = req->err;
	if (req->err != 0) {
		resp.error = req->error;
		strbuf_free(&req->rbody);
		kvlist_free(&req->rheaders);
		log_debug("http: %s: %s (%.3fs)", req->what, req->error,
		    resp.seconds);
	} else {
		resp.status = req->status;
		log_debug("http: %s: %ld, %zu bytes (%.3fs)", req->what,
		    req->status, req->rbody.len, resp.seconds);
	}
	resp.len = req->rbody.len;
	resp.body = strbuf_detach(&req->rbody);
	resp.headers = req->rheaders;
	memset(&req->rheaders, 0, sizeof req->rheaders);

	req->state = REQ_CALLING;
	req->cb(&resp, req->arg);

	free(resp.body);	/* NULL when the callback took it */
	kvlist_free(&resp.headers);
	http_req_free(req);
}

/*
 * done_ev: call back the requests that were done when it fired. Those
 * queued meanwhile wait for the next turn, so that a callback that always
 * starts a request that fails at once cannot keep the loop from polling.
 */
static void
http_done_run(evutil_socket_t fd, short what, void *arg)
{
	struct http	*h = arg;
	struct http_req	*req;
	size_t		 n;

	/* http_free() empties h->done: a callback freeing h ends the loop. */
	h->calling = true;
	for (n = h->ndone; n > 0; n--) {
		if ((req = TAILQ_FIRST(&h->done)) == NULL)
			break;
		TAILQ_REMOVE(&h->done, req, entry);
		h->ndone--;
		http_req_call(req);
	}
	h->calling = false;
	if (h->freeing) {
		/*
		 * A callback called http_free(h). Nothing of h is used
		 * after this, and libevent does not touch done_ev once its
		 * callback has returned, so h can go now.
		 */
		http_destroy(h);
		return;
	}
	if (!TAILQ_EMPTY(&h->done))
		http_done_schedule(h);
}

struct http *
http_new(struct event_base *base)
{
	struct http	*h;

	if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK)
		return NULL;
	h = xcalloc(1, sizeof *h);
	if ((h->multi = curl_multi_init()) == NULL) {
		free(h);
		curl_global_cleanup();
		return NULL;
	}
	h->base = base;
	h->max_body = HTTP_MAX_BODY_DEFAULT;
	TAILQ_INIT(&h->socks);
	TAILQ_INIT(&h->reqs);
	TAILQ_INIT(&h->done);
	evtimer_assign(&h->timer, base, http_timer_fire, h);
	evtimer_assign(&h->done_ev, base, http_done_run, h);
	curl_multi_setopt(h->multi, CURLMOPT_SOCKETFUNCTION, http_sock_update);
	curl_multi_setopt(h->multi, CURLMOPT_SOCKETDATA, h);
	curl_multi_setopt(h->multi, CURLMOPT_TIMERFUNCTION, http_timer_update);
	curl_multi_setopt(h->multi, CURLMOPT_TIMERDATA, h);
	return h;
}

/* Free h for good; no request is left by now. */
static void
http_destroy(struct http *h)
{
	struct http_sock	*hs, *next;
	size_t			 left = 0;

	/* May call http_sock_update and http_timer_update: h is intact. */
	curl_multi_cleanup(h->multi);
	for (hs = TAILQ_FIRST(&h->socks); hs != NULL; hs = next) {
		next = TAILQ_NEXT(hs, entry);
		event_del(&hs->ev);
		free(hs);
		left++;
	}
	TAILQ_INIT(&h->socks);
	if (left > 0)
		log_debug("http: %zu sockets never removed by libcurl", left);
	event_del(&h->timer);
	event_del(&h->done_ev);
	free(h->ca_file);
	free(h->unix_path);
	free(h);
	curl_global_cleanup();
}

void
http_free(struct http *h)
{
	struct http_req	*req;

	if (h == NULL || h->freeing)
		return;
	h->freeing = true;
	while ((req = TAILQ_FIRST(&h->reqs)) != NULL) {
		TAILQ_REMOVE(&h->reqs, req, entry);
		http_req_free(req);
	}
	while ((req = TAILQ_FIRST(&h->done)) != NULL) {
		TAILQ_REMOVE(&h->done, req, entry);
		http_req_free(req);
	}
	h->ndone = 0;
	if (!h->calling)
		http_destroy(h);
	/* else http_done_run() frees h when the callback returns. */
}

void
http_set_ca_file(struct http *h, const char *ca_file)
{
	free(h->ca_file);
	h->ca_file = ca_file != NULL ? xstrdup(ca_file) : NULL;
}

void
http_set_unix_socket(struct http *h, const char *unix_path)
{
	free(h->unix_path);
	h->unix_path = unix_path != NULL ? xstrdup(unix_path) : NULL;
}

void
http_set_max_body(struct http *h, size_t max_body)
{
	h->max_body = max_body != 0 ? max_body : HTTP_MAX_BODY_DEFAULT;
}

/* Whether method is an HTTP token, as RFC 9110 defines one. */
static bool
http_method_ok(const char *method)
{
	const char	*p;

	if (*method == '\0')
		return false;
	for (p = method; *p != '\0'; p++)
		if (!isalnum((unsigned char)*p) &&
		    strchr("!#$%&'*+-.^_`|~", *p) == NULL)
			return false;
	return true;
}

/* The header list for req: the caller's lines, and no Expect. */
static int
http_req_headers(struct http_req *req, const struct strlist *headers)
{
	struct curl_slist	*l;
	bool			 expect = false;
	size_t			 i;

	for (i = 0; headers != NULL && i < headers->n; i++) {
		if (strpbrk(headers->v[i], "\r\n") != NULL) {
			http_req_fail(req, -EINVAL, "header line %zu holds CR "
			    "or LF", i + 1);
			return -EINVAL;
		}
		if (strncasecmp(headers->v[i], "expect:", 7) == 0)
			expect = true;
		if ((l = curl_slist_append(req->hdrs, headers->v[i])) == NULL)
			goto nomem;
		req->hdrs = l;
	}
	/* libcurl 7.88 waits up to 1s for "100 Continue" on big bodies. */
	if (!expect) {
		if ((l = curl_slist_append(req->hdrs, "Expect:")) == NULL)
			goto nomem;
		req->hdrs = l;
	}
	return 0;

nomem:
	http_req_fail(req, -ENOMEM, "out of memory");
	return -ENOMEM;
}

/* How to send method, with or without a body. */
static CURLcode
http_req_method(struct http_req *req, const char *method, const void *body,
    size_t len)
{
	CURL		*e = req->easy;
	CURLcode	 cc;

	if (body == NULL)
		len = 0;
	if (body == NULL && strcmp(method, "GET") == 0)
		return curl_easy_setopt(e, CURLOPT_HTTPGET, 1L);
	if (body == NULL && strcmp(method, "HEAD") == 0)
		return curl_easy_setopt(e, CURLOPT_NOBODY, 1L);
	if (body == NULL && strcmp(method, "POST") != 0)
		return curl_easy_setopt(e, CURLOPT_CUSTOMREQUEST, method);

	req->body = xmalloc(len + 1);
	if (len > 0)
		memcpy(req->body, body, len);
	if ((cc = curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE,
	    (curl_off_t)len)) != CURLE_OK)
		return cc;
	if ((cc = curl_easy_setopt(e, CURLOPT_POSTFIELDS, req->body)) !=
	    CURLE_OK)
		return cc;
	if (strcmp(method, "POST") != 0)
		return curl_easy_setopt(e, CURLOPT_CUSTOMREQUEST, method);
	return CURLE_OK;
}

/* Set every option of req's easy handle; a CURLcode. */
static CURLcode
http_req_options(struct http_req *req, const char *url,
    unsigned int timeout_ms)
{
	struct http	*h = req->h;
	CURL		*e = req->easy;
	CURLcode	 cc = CURLE_OK;
	long		 connect_ms = HTTP_CONNECT_TIMEOUT_MS;

	if (timeout_ms < connect_ms)
		connect_ms = timeout_ms;
#define SETOPT(opt, val) do {						\
	if (cc == CURLE_OK)						\
		cc = curl_easy_setopt(e, opt, val);			\
} while (0)
	SETOPT(CURLOPT_URL, url);
	SETOPT(CURLOPT_PRIVATE, req);
	SETOPT(CURLOPT_ERRORBUFFER, req->errbuf);
	SETOPT(CURLOPT_NOSIGNAL, 1L);
#if LIBCURL_VERSION_NUM >= 0x075500	/* 7.85.0 */
	SETOPT(CURLOPT_PROTOCOLS_STR, "http,https");
#else
	SETOPT(CURLOPT_PROTOCOLS, (long)(CURLPROTO_HTTP | CURLPROTO_HTTPS));
#endif
	SETOPT(CURLOPT_FOLLOWLOCATION, 0L);
	SETOPT(CURLOPT_SSL_VERIFYPEER, 1L);
	SETOPT(CURLOPT_SSL_VERIFYHOST, 2L);
	if (h->ca_file != NULL)
		SETOPT(CURLOPT_CAINFO, h->ca_file);
	if (h->unix_path != NULL)
		SETOPT(CURLOPT_UNIX_SOCKET_PATH, h->unix_path);
	SETOPT(CURLOPT_TIMEOUT_MS, (long)timeout_ms);
	SETOPT(CURLOPT_CONNECTTIMEOUT_MS, connect_ms);
	SETOPT(CURLOPT_TCP_KEEPALIVE, 1L);
#if LIBCURL_VERSION_NUM >= 0x075700	/* 7.87.0; see the top of the file */
	SETOPT(CURLOPT_QUICK_EXIT, 1L);
#endif
	SETOPT(CURLOPT_USERAGENT, HTTP_USER_AGENT);
	SETOPT(CURLOPT_HTTPHEADER, req->hdrs);
	SETOPT(CURLOPT_MAXFILESIZE_LARGE, (curl_off_t)req->max_body);
	SETOPT(CURLOPT_WRITEFUNCTION, http_body_write);
	SETOPT(CURLOPT_WRITEDATA, req);
	SETOPT(CURLOPT_HEADERFUNCTION, http_header_write);
	SETOPT(CURLOPT_HEADERDATA, req);
#undef SETOPT
	return cc;
}

/* "METHOD url" without the query, which may hold signatures. */
static char *
http_req_describe(const char *method, const char *url)
{
	char	*s;

	xasprintf(&s, "%s %.*s", method, (int)strcspn(url, "?"), url);
	return s;
}

struct http_req *
http_request(struct http *h, const char *method, const char *url,
    const struct strlist *headers, const void *body, size_t len,
    unsigned int timeout_ms, http_cb cb, void *arg)
{
	struct http_req	*req;
	CURLcode	 cc;
	CURLMcode	 mc;

	req = xcalloc(1, sizeof *req);
	req->h = h;
	req->cb = cb;
	req->arg = arg;
	req->start_us = clock_mono_us();
	req->max_body = h->max_body;
	req->what = http_req_describe(method, url);
	strbuf_init(&req->rbody);
	if (timeout_ms == 0)
		timeout_ms = HTTP_TIMEOUT_DEFAULT_MS;

	if (!http_method_ok(method)) {
		http_req_fail(req, -EINVAL, "bad method");
		goto fail;
	}
	if (http_req_headers(req, headers) != 0)
		goto fail;
	if ((req->easy = curl_easy_init()) == NULL) {
		http_req_fail(req, -ENOMEM, "curl_easy_init failed");
		goto fail;
	}
	if ((cc = http_req_options(req, url, timeout_ms)) != CURLE_OK ||
	    (cc = http_req_method(req, method, body, len)) != CURLE_OK) {
		http_req_fail(req, http_err_from_curl(cc, 0), "%s",
		    curl_easy_strerror(cc));
		goto fail;
	}
	if ((mc = curl_multi_add_handle(h->multi, req->easy)) != CURLM_OK) {
		http_req_fail(req, mc == CURLM_OUT_OF_MEMORY ? -ENOMEM : -EIO,
		    "%s", curl_multi_strerror(mc));
		goto fail;
	}
	req->attached = true;
	req->state = REQ_RUNNING;
	TAILQ_INSERT_TAIL(&h->reqs, req, entry);
	return req;

fail:
	http_req_queue_done(req);
	return req;
}

void
http_cancel(struct http_req *req)
{
	struct http	*h;

	if (req == NULL)
		return;
	h = req->h;
	switch (req->state) {
	case REQ_CALLING:
		return;		/* http_req_call() frees it */
	case REQ_RUNNING:
		TAILQ_REMOVE(&h->reqs, req, entry);
		break;
	case REQ_DONE:
		TAILQ_REMOVE(&h->done, req, entry);
		h->ndone--;
		break;
	}
	http_req_free(req);
}
