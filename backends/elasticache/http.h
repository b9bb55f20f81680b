/*
 * Asynchronous HTTP(S) requests on the daemon's event_base, with libcurl's
 * multi-socket API (the pattern of curl's docs/examples/hiperfifo.c): many
 * requests in flight at once on one thread, connections kept alive and
 * reused, nothing that blocks the loop.
 *
 * Fixed policy, not options: TLS peer and host name verification are
 * always on; redirects are never followed; response bodies are bounded
 * (HTTP_MAX_BODY_DEFAULT unless http_set_max_body() says otherwise);
 * every request has a total and a connect timeout. Plain http:// is
 * allowed (tests, proxies inside a VPC); no other scheme is. libcurl's
 * usual proxy environment variables (https_proxy, no_proxy...) apply.
 *
 * Not here: signing (sigv4), retries and backoff (retry.h), parsing
 * bodies. Nothing here logs above debug, and never a header or a body.
 * The process must ignore SIGPIPE (the daemon does).
 */
#ifndef CK_ELASTICACHE_HTTP_H
#define CK_ELASTICACHE_HTTP_H

#include <stddef.h>

#include "schema.h"		/* struct kvlist, struct strlist */

#define HTTP_MAX_BODY_DEFAULT	(16u << 20)	/* bytes */
#define HTTP_MAX_HEADERS_LEN	(64u << 10)	/* bytes, all header lines */
#define HTTP_MAX_HEADERS	256		/* header lines */
#define HTTP_TIMEOUT_DEFAULT_MS	30000
#define HTTP_CONNECT_TIMEOUT_MS	10000		/* at most; never above
						   the request's timeout */

struct event_base;
struct http;		/* one per daemon: a libcurl multi handle on a base */
struct http_req;	/* one request, from http_request() to its callback */

/*
 * The outcome of one request, valid only during the callback.
 *
 * err is 0 when a complete HTTP response arrived, whatever its status
 * (a 500 is a response like a 200; its body holds the server's error).
 * Otherwise err is a negative errno saying what went wrong, status is 0,
 * body and headers are empty, and error says why (libcurl's message where
 * it has one, e.g. "SSL certificate problem: self-signed certificate"):
 *	-ETIMEDOUT	 the request's timeout (or the connect timeout) expired
 *	-ECONNREFUSED	 and other connect errnos: no connection was made
 *	-EHOSTUNREACH	 the host name did not resolve
 *	-ECONNRESET	 the connection broke, or closed before a full answer
 *	-EPROTO		 TLS failed, the peer's certificate or name included,
 *			 or the server spoke something other than HTTP
 *	-EFBIG		 the body or the headers were larger than allowed
 *			 (HTTP_MAX_HEADERS_LEN bytes, HTTP_MAX_HEADERS lines)
 *	-EINVAL		 a bad URL, method or header line, or a scheme other
 *			 than http and https
 *	-ENOMEM, -EIO	 out of memory inside libcurl; anything else
 *
 * headers holds the response's header lines with names in lower case
 * ("x-amzn-requestid"), in order, as kvlist_get() reads them. body is
 * NUL-terminated (never NULL) and len bytes long; the callback may keep
 * it by setting body to NULL, and must then free() it. seconds is the
 * time from http_request() to the answer.
 */
struct http_response {
	long		 status;	/* HTTP status, 0 without a response */
	char		*body;
	size_t		 len;
	struct kvlist	 headers;
	int		 err;		/* 0 or a negative errno, see above */
	const char	*error;		/* NULL when err is 0 */
	double		 seconds;
};

/*
 * Called exactly once per request, from the event loop, never from inside
 * http_request() or http_cancel(); not at all once http_cancel() or
 * http_free() was called for it. The request is freed when the callback
 * returns, so its pointer must be forgotten then. The callback may start
 * new requests, cancel others and call http_free().
 */
typedef void (*http_cb)(struct http_response *resp, void *arg);

/*
 * A client on base. Initialises libcurl's globals (curl_global_init(),
 * counted: each http_free() undoes one), so create the first one before
 * any thread is started. NULL only when libcurl cannot be initialised.
 */
struct http	*http_new(struct event_base *base);

/*
 * Cancel every pending request without calling its callback, close the
 * connections and free h; NULL is fine. Neither h nor any of its requests
 * may be used afterwards. Safe from inside one of h's callbacks: the
 * memory then goes as that callback returns.
 */
void		 http_free(struct http *h);

/*
 * Settings for requests made from now on (those in flight keep theirs).
 * ca_file: a PEM file of the CAs to trust instead of the system's (NULL
 * for the system's again); used by tests with a private CA. unix_path:
 * connect to this unix socket instead of the URL's host and port (NULL to
 * stop); the URL still gives the Host header and the path. max_body: the
 * largest response body accepted, in bytes (0 restores the default).
 */
void		 http_set_ca_file(struct http *h, const char *ca_file);
void		 http_set_unix_socket(struct http *h, const char *unix_path);
void		 http_set_max_body(struct http *h, size_t max_body);

/*
 * Start a request: method ("GET", "POST", "HEAD", "DELETE"...) on url
 * (http:// or https://), with extra header lines ("Name: value"; "Name:"
 * removes one libcurl would send; NULL for none) and a body of len bytes
 * (NULL for none; copied). Header lines holding CR or LF are refused.
 * libcurl sends no "Expect: 100-continue". timeout_ms bounds the whole
 * exchange, connect included; 0 means HTTP_TIMEOUT_DEFAULT_MS.
 *
 * Never returns NULL, and cb is then called exactly once (see http_cb),
 * unless the request is cancelled first: a request that cannot even start
 * (a bad header line, say) fails through the callback all the same.
 * Everything passed is copied; nothing needs to outlive the call but arg.
 * Must not be called on an h that http_free() was called for.
 */
struct http_req	*http_request(struct http *h, const char *method,
		    const char *url, const struct strlist *headers,
		    const void *body, size_t len, unsigned int timeout_ms,
		    http_cb cb, void *arg);

/*
 * Abandon req: its callback is never called, its connection is closed if
 * it was mid-exchange, and req is freed. Safe from inside any http
 * callback, including req's own (where it does nothing: req is finished
 * already). req must be one whose callback has not returned yet; NULL is
 * fine.
 */
void		 http_cancel(struct http_req *req);

#endif
