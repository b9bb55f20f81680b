/*
 * The HTTP client against servers in this process, on the same event_base:
 * an evhttp server on 127.0.0.1 (and on a unix socket) with handlers that
 * echo, fail, answer late, send big bodies or too many headers; a raw TCP
 * listener that reads a request and hangs up; and, when the openssl tool
 * is there, an "openssl s_server" child with a self-signed certificate
 * made for the run, to prove that TLS verification cannot be skipped.
 *
 * Every case counts callbacks: each request must be answered exactly once,
 * or never once cancelled or freed. Callbacks only record; the asserts run
 * after the loop, never on libcurl's or libevent's stack.
 *
 * Run it under valgrind --leak-check=full and with the sanitizers too: the
 * cancel and free paths are the point.
 */
#include "config.h"

#include <sys/types.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#ifdef __linux__
#include <sys/prctl.h>
#endif

#include <netinet/in.h>
#include <arpa/inet.h>

#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <event2/listener.h>

#include "http.h"
#include "util.h"

#define WAIT_MS		10000	/* generous: valgrind is slow */
#define REQ_MS		5000	/* a request timeout that must not fire */
#define SLOW_MS		2000	/* how late /slow answers */
#define BIG_LEN		(2u << 20)
#define NCONC		100
#define OPENSSL_BIN	"/usr/bin/openssl"
#define ERROR_LEN	256	/* libcurl's CURL_ERROR_SIZE */

/* What one request's callback saw. */
struct call {
	int		 n;		/* times called */
	long		 status;
	int		 err;
	char		 error[ERROR_LEN];
	char		*body;		/* taken from the response */
	size_t		 len;
	char		 reply_hdr[64];	/* "x-reply" */
	size_t		 nheaders;
	double		 seconds;
	struct http_req	*cancel;	/* http_cancel this when called */
	struct http_req	**self;		/* http_cancel *self when called */
	struct http	*free_h;	/* http_free this when called */
	struct http	*chain_h;	/* start a request for chained */
	const char	*chain_method;	/* its method, "GET" when NULL */
	struct call	*chained;
};

/* A /slow request the server has not answered yet. */
struct slow {
	struct evhttp_request	*req;
	struct event		*ev;
	struct slow		*next;
};

/* A connection to the raw listener. */
struct raw {
	struct bufferevent	*bev;
	bool			 closing;
	struct raw		*next;
};

static char			 tmpdir[] = "/tmp/test_http.XXXXXX";
static bool			 have_tmpdir;
static struct event_base	*base;
static struct event		*tick;		/* keeps EVLOOP_ONCE short */
static struct evhttp		*srv;
static unsigned int		 srv_port, raw_port;
static char			*srv_sock;	/* srv's unix socket */
static struct evconnlistener	*raw_lev;
static struct raw		*raws;
static struct slow		*slows;
static int			 slow_answered;
static int			 srv_requests;
static struct http		*h;		/* each case's client */
static pid_t			 tls_pid;
static unsigned int		 tls_port;

/* ---- helpers ---- */

static void
tick_fire(evutil_socket_t fd, short what, void *arg)
{
}

/* Run the loop until *n reaches want or ms pass; whether it did. */
static bool
run_until(const int *n, int want, unsigned int ms)
{
	uint64_t	 deadline = clock_mono_ms() + ms;

	while (*n < want) {
		if (clock_mono_ms() > deadline)
			return false;
		event_base_loop(base, EVLOOP_ONCE);
	}
	return true;
}

static void
run_for(unsigned int ms)
{
	int	 never = 0;

	run_until(&never, 1, ms);
}

/* Whether every call of c[0..n) was made, within ms. */
static bool
run_until_all(struct call *c, size_t n, unsigned int ms)
{
	uint64_t	 deadline = clock_mono_ms() + ms;
	size_t		 i;

	for (i = 0; i < n; i++)
		while (c[i].n == 0) {
			if (clock_mono_ms() > deadline)
				return false;
			event_base_loop(base, EVLOOP_ONCE);
		}
	return true;
}

static void
call_reset(struct call *c)
{
	free(c->body);
	memset(c, 0, sizeof *c);
}

static char *
url(const char *path)
{
	char	*s;

	xasprintf(&s, "http://127.0.0.1:%u%s", srv_port, path);
	return s;
}

/* The callback of every case: record, then do what c asks. */
static void
record(struct http_response *resp, void *arg)
{
	struct call	*c = arg;
	const char	*v;
	char		*u;

	c->n++;
	if (c->n > 1)
		return;		/* reported by the asserts */
	c->status = resp->status;
	c->err = resp->err;
	if (resp->error != NULL)
		snprintf(c->error, sizeof c->error, "%s", resp->error);
	c->body = resp->body;
	c->len = resp->len;
	resp->body = NULL;	/* ours now */
	if ((v = kvlist_get(&resp->headers, "x-reply")) != NULL)
		snprintf(c->reply_hdr, sizeof c->reply_hdr, "%s", v);
	c->nheaders = resp->headers.n;
	c->seconds = resp->seconds;
	if (c->self != NULL)
		http_cancel(*c->self);
	if (c->cancel != NULL)
		http_cancel(c->cancel);
	if (c->chain_h != NULL) {
		u = url("/echo");
		http_request(c->chain_h, c->chain_method != NULL ?
		    c->chain_method : "GET", u, NULL, NULL, 0, REQ_MS, record,
		    c->chained);
		free(u);
	}
	if (c->free_h != NULL)
		http_free(c->free_h);
}

static void
assert_ok(const struct call *c, long status)
{
	if (c->n != 1 || c->err != 0 || c->status != status ||
	    c->body == NULL)
		fail_msg("want 1 call with status %ld, got %d call(s): "
		    "status %ld err %d \"%s\"", status, c->n, c->status,
		    c->err, c->error);
}

static void
assert_fails(const struct call *c, int err, const char *substr)
{
	if (c->n != 1 || c->err != err || c->status != 0 ||
	    strstr(c->error, substr) == NULL || c->body == NULL ||
	    c->len != 0 || c->nheaders != 0)
		fail_msg("want 1 call with err %d (%s) \"...%s...\", got %d "
		    "call(s): status %ld err %d (%s) \"%s\" len %zu",
		    err, strerror(-err), substr, c->n, c->status, c->err,
		    strerror(-c->err), c->error, c->len);
}

static void
assert_body(const struct call *c, const char *want)
{
	if (c->body == NULL || strcmp(c->body, want) != 0 ||
	    c->len != strlen(want))
		fail_msg("want body \"%s\", got \"%s\" (%zu bytes)", want,
		    c->body ? c->body : "(null)", c->len);
}

static unsigned char
big_byte(size_t i)
{
	return (unsigned char)((i * 7 + i / 251) % 256);
}

/* ---- the evhttp server ---- */

static const char *
method_name(enum evhttp_cmd_type cmd)
{
	switch (cmd) {
	case EVHTTP_REQ_GET:
		return "GET";
	case EVHTTP_REQ_POST:
		return "POST";
	case EVHTTP_REQ_HEAD:
		return "HEAD";
	case EVHTTP_REQ_PUT:
		return "PUT";
	case EVHTTP_REQ_DELETE:
		return "DELETE";
	default:
		return "?";
	}
}

/* "method=M x-test=V expect=V ua=V peer=PORT len=N body=BODY" */
static void
srv_echo(struct evhttp_request *req, void *arg)
{
	struct evkeyvalq	*in = evhttp_request_get_input_headers(req);
	struct evbuffer		*body = evhttp_request_get_input_buffer(req);
	struct evbuffer		*out = evbuffer_new();
	const char		*test, *expect, *ua;
	char			*peer = NULL;
	ev_uint16_t		 port = 0;
	size_t			 len = evbuffer_get_length(body);

	srv_requests++;
	test = evhttp_find_header(in, "X-Test");
	expect = evhttp_find_header(in, "Expect");
	ua = evhttp_find_header(in, "User-Agent");
	evhttp_connection_get_peer(evhttp_request_get_connection(req), &peer,
	    &port);
	evbuffer_add_printf(out, "method=%s x-test=%s expect=%s ua=%s "
	    "peer=%u len=%zu body=", method_name(evhttp_request_get_command(
	    req)), test ? test : "-", expect ? expect : "-", ua ? ua : "-",
	    (unsigned int)port, len);
	evbuffer_add_buffer(out, body);
	evhttp_add_header(evhttp_request_get_output_headers(req), "X-Reply",
	    "  echoed  ");
	evhttp_send_reply(req, 200, "OK", out);
	evbuffer_free(out);
}

static void
srv_fail(struct evhttp_request *req, void *arg)
{
	struct evbuffer	*out = evbuffer_new();

	srv_requests++;
	evbuffer_add_printf(out, "boom");
	evhttp_send_reply(req, 500, "Internal Server Error", out);
	evbuffer_free(out);
}

static void
slow_answer(struct slow *s)
{
	struct evbuffer	*out = evbuffer_new();
	struct slow	**sp;

	for (sp = &slows; *sp != s; sp = &(*sp)->next)
		;
	*sp = s->next;
	evbuffer_add_printf(out, "late");
	/* Also fine when the client is gone: evhttp then just frees req. */
	evhttp_send_reply(s->req, 200, "OK", out);
	evbuffer_free(out);
	event_free(s->ev);
	free(s);
	slow_answered++;
}

static void
slow_fire(evutil_socket_t fd, short what, void *arg)
{
	slow_answer(arg);
}

/* Answers after SLOW_MS, from a timer: the loop never sleeps. */
static void
srv_slow(struct evhttp_request *req, void *arg)
{
	struct slow	*s = xcalloc(1, sizeof *s);
	struct timeval	 tv = { SLOW_MS / 1000, (SLOW_MS % 1000) * 1000 };

	srv_requests++;
	s->req = req;
	s->ev = evtimer_new(base, slow_fire, s);
	s->next = slows;
	slows = s;
	evtimer_add(s->ev, &tv);
}

/* BIG_LEN bytes of a pattern; "?chunked" sends them chunked. */
static void
srv_big(struct evhttp_request *req, void *arg)
{
	struct evbuffer	*out = evbuffer_new();
	unsigned char	*p = xmalloc(BIG_LEN);
	size_t		 i;
	const char	*uri = evhttp_request_get_uri(req);

	srv_requests++;
	for (i = 0; i < BIG_LEN; i++)
		p[i] = big_byte(i);
	if (strstr(uri, "chunked") == NULL) {
		evbuffer_add(out, p, BIG_LEN);
		evhttp_send_reply(req, 200, "OK", out);
	} else {
		evhttp_send_reply_start(req, 200, "OK");
		for (i = 0; i < BIG_LEN; i += 65536) {
			evbuffer_add(out, p + i, 65536);
			evhttp_send_reply_chunk(req, out);
		}
		evhttp_send_reply_end(req);
	}
	evbuffer_free(out);
	free(p);
}

static void
srv_headers(struct evhttp_request *req, void *arg)
{
	struct evkeyvalq	*oh = evhttp_request_get_output_headers(req);
	char			 name[32];
	int			 i;

	srv_requests++;
	for (i = 0; i < 300; i++) {
		snprintf(name, sizeof name, "X-H%d", i);
		evhttp_add_header(oh, name, "v");
	}
	evhttp_send_reply(req, 200, "OK", NULL);
}

static void
srv_redirect(struct evhttp_request *req, void *arg)
{
	struct evbuffer	*out = evbuffer_new();

	srv_requests++;
	evbuffer_add_printf(out, "moved");
	evhttp_add_header(evhttp_request_get_output_headers(req), "Location",
	    "/echo");
	evhttp_send_reply(req, 302, "Found", out);
	evbuffer_free(out);
}

/* ---- the raw listener: reads a request, hangs up ---- */

static void
raw_close(struct raw *r)
{
	struct raw	**rp;

	for (rp = &raws; *rp != r; rp = &(*rp)->next)
		;
	*rp = r->next;
	bufferevent_free(r->bev);
	free(r);
}

static void
raw_read(struct bufferevent *bev, void *arg)
{
	struct raw		*r = arg;
	struct evbuffer		*in = bufferevent_get_input(bev);
	struct evbuffer_ptr	 end;
	bool			 partial;

	end = evbuffer_search(in, "\r\n\r\n", 4, NULL);
	if (end.pos == -1 || r->closing)
		return;
	partial = evbuffer_search(in, "/partial", 8, NULL).pos != -1;
	evbuffer_drain(in, evbuffer_get_length(in));
	if (!partial) {
		raw_close(r);
		return;
	}
	/* Promise 100 bytes, send 3, hang up once they are out. */
	r->closing = true;
	bufferevent_write(bev, "HTTP/1.1 200 OK\r\nContent-Length: 100\r\n"
	    "\r\nabc", 42);
}

static void
raw_write(struct bufferevent *bev, void *arg)
{
	struct raw	*r = arg;

	if (r->closing)
		raw_close(r);
}

static void
raw_event(struct bufferevent *bev, short what, void *arg)
{
	if (what & (BEV_EVENT_EOF | BEV_EVENT_ERROR))
		raw_close(arg);
}

static void
raw_accept(struct evconnlistener *lev, evutil_socket_t fd,
    struct sockaddr *sa, int salen, void *arg)
{
	struct raw	*r = xcalloc(1, sizeof *r);

	r->bev = bufferevent_socket_new(base, fd, BEV_OPT_CLOSE_ON_FREE);
	bufferevent_setcb(r->bev, raw_read, raw_write, raw_event, r);
	bufferevent_enable(r->bev, EV_READ | EV_WRITE);
	r->next = raws;
	raws = r;
}

static unsigned int
fd_port(evutil_socket_t fd)
{
	struct sockaddr_in	 sin = { 0 };
	socklen_t		 len = sizeof sin;

	if (getsockname(fd, (struct sockaddr *)&sin, &len) == -1)
		return 0;
	return ntohs(sin.sin_port);
}

/* ---- the TLS server: openssl s_server ---- */

/* Run argv to completion, output to log; its exit status or -1. */
static int
run_cmd(char *const argv[], const char *log)
{
	pid_t	 pid;
	int	 fd, status;

	if ((pid = fork()) == -1)
		return -1;
	if (pid == 0) {
		if ((fd = open(log, O_WRONLY | O_CREAT | O_APPEND, 0600)) !=
		    -1) {
			dup2(fd, 1);
			dup2(fd, 2);
		}
		execv(argv[0], argv);
		_exit(127);
	}
	if (waitpid(pid, &status, 0) == -1 || !WIFEXITED(status))
		return -1;
	return WEXITSTATUS(status);
}

static void
tls_stop(void)
{
	if (tls_pid > 0) {
		kill(tls_pid, SIGTERM);
		waitpid(tls_pid, NULL, 0);
		tls_pid = 0;
	}
}

/* A self-signed certificate for IP 127.0.0.1 only; 0 or -1. */
static int
tls_cert_make(const char *cert, const char *key, const char *log)
{
	char *const	 argv[] = { OPENSSL_BIN, "req", "-x509", "-newkey",
	    "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
	    "-days", "2", "-subj", "/CN=127.0.0.1", "-addext",
	    "subjectAltName=IP:127.0.0.1", "-keyout", (char *)key, "-out",
	    (char *)cert, NULL };

	if (run_cmd(argv, log) != 0) {
		print_error("openssl req failed; see %s\n", log);
		return -1;
	}
	return 0;
}

/* s_server on a port it picks and prints, into tls_port; 0 or -1. */
static int
tls_server_start(const char *cert, const char *key, const char *log)
{
	char *const	 argv[] = { OPENSSL_BIN, "s_server", "-accept",
	    "127.0.0.1:0", "-cert", (char *)cert, "-key", (char *)key,
	    "-www", NULL };
	char		*line = NULL;
	size_t		 cap = 0;
	uint64_t	 deadline;
	FILE		*f;
	int		 fd;

	if ((tls_pid = fork()) == -1)
		return -1;
	if (tls_pid == 0) {
#ifdef __linux__
		prctl(PR_SET_PDEATHSIG, SIGKILL);
#endif
		if ((fd = open(log, O_WRONLY | O_CREAT | O_TRUNC, 0600)) !=
		    -1) {
			dup2(fd, 1);
			dup2(fd, 2);
		}
		execv(argv[0], argv);
		_exit(127);
	}
	/* Wait for "ACCEPT 127.0.0.1:PORT". */
	tls_port = 0;
	deadline = clock_mono_ms() + WAIT_MS;
	while (tls_port == 0 && clock_mono_ms() < deadline) {
		usleep(20 * 1000);
		if ((f = fopen(log, "r")) == NULL)
			continue;
		while (getline(&line, &cap, f) != -1)
			if (sscanf(line, "ACCEPT 127.0.0.1:%u", &tls_port) == 1)
				break;
		fclose(f);
	}
	free(line);
	if (tls_port == 0) {
		print_error("s_server did not start; see %s\n", log);
		tls_stop();
		return -1;
	}
	return 0;
}

/* ---- fixtures ---- */

static void
tmpdir_remove(void)
{
	const char *const	 names[] = { "cert.pem", "key.pem",
	    "openssl.log", "s_server.log", "http.sock" };
	char			*p;
	size_t			 i;

	if (!have_tmpdir)
		return;
	for (i = 0; i < nitems(names); i++) {
		xasprintf(&p, "%s/%s", tmpdir, names[i]);
		unlink(p);
		free(p);
	}
	rmdir(tmpdir);
	have_tmpdir = false;
}

static int
group_teardown(void **state)
{
	tls_stop();
	while (slows != NULL)
		slow_answer(slows);
	while (raws != NULL)
		raw_close(raws);
	if (base != NULL)
		event_base_loop(base, EVLOOP_NONBLOCK);
	if (srv != NULL)
		evhttp_free(srv);
	if (raw_lev != NULL)
		evconnlistener_free(raw_lev);
	if (tick != NULL)
		event_free(tick);
	if (base != NULL)
		event_base_free(base);
	srv = NULL;
	raw_lev = NULL;
	tick = NULL;
	base = NULL;
	free(srv_sock);
	srv_sock = NULL;
	tmpdir_remove();
	return 0;
}

static int
group_setup(void **state)
{
	struct evhttp_bound_socket	*bound;
	struct evconnlistener		*lev;
	struct sockaddr_in		 sin;
	struct sockaddr_un		 sun;
	struct timeval			 tv = { 0, 10 * 1000 };

	signal(SIGPIPE, SIG_IGN);
	/* The client honours these, the test servers are local. */
	unsetenv("http_proxy");
	unsetenv("https_proxy");
	unsetenv("HTTPS_PROXY");
	unsetenv("all_proxy");
	unsetenv("ALL_PROXY");
	if (mkdtemp(tmpdir) == NULL)
		return -1;
	have_tmpdir = true;

	base = event_base_new();
	tick = event_new(base, -1, EV_PERSIST, tick_fire, NULL);
	event_add(tick, &tv);

	srv = evhttp_new(base);
	evhttp_set_allowed_methods(srv, EVHTTP_REQ_GET | EVHTTP_REQ_POST |
	    EVHTTP_REQ_HEAD | EVHTTP_REQ_PUT | EVHTTP_REQ_DELETE);
	evhttp_set_cb(srv, "/echo", srv_echo, NULL);
	evhttp_set_cb(srv, "/fail", srv_fail, NULL);
	evhttp_set_cb(srv, "/slow", srv_slow, NULL);
	evhttp_set_cb(srv, "/big", srv_big, NULL);
	evhttp_set_cb(srv, "/headers", srv_headers, NULL);
	evhttp_set_cb(srv, "/redirect", srv_redirect, NULL);
	if ((bound = evhttp_bind_socket_with_handle(srv, "127.0.0.1", 0)) ==
	    NULL)
		goto fail;
	srv_port = fd_port(evhttp_bound_socket_get_fd(bound));

	memset(&sun, 0, sizeof sun);
	sun.sun_family = AF_UNIX;
	xasprintf(&srv_sock, "%s/http.sock", tmpdir);
	snprintf(sun.sun_path, sizeof sun.sun_path, "%s", srv_sock);
	if ((lev = evconnlistener_new_bind(base, NULL, NULL,
	    LEV_OPT_CLOSE_ON_FREE | LEV_OPT_CLOSE_ON_EXEC, -1,
	    (struct sockaddr *)&sun, sizeof sun)) == NULL ||
	    evhttp_bind_listener(srv, lev) == NULL)
		goto fail;

	memset(&sin, 0, sizeof sin);
	sin.sin_family = AF_INET;
	sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if ((raw_lev = evconnlistener_new_bind(base, raw_accept, NULL,
	    LEV_OPT_CLOSE_ON_FREE | LEV_OPT_CLOSE_ON_EXEC, -1,
	    (struct sockaddr *)&sin, sizeof sin)) == NULL)
		goto fail;
	raw_port = fd_port(evconnlistener_get_fd(raw_lev));
	if (srv_port == 0 || raw_port == 0)
		goto fail;
	return 0;

fail:
	print_error("cannot start the test servers\n");
	group_teardown(state);
	return -1;
}

static int
setup(void **state)
{
	h = http_new(base);
	return h != NULL ? 0 : -1;
}

static int
teardown(void **state)
{
	http_free(h);
	h = NULL;
	return 0;
}

/* ---- cases ---- */

static void
test_get(void **state)
{
	struct call		 c = { 0 };
	struct strlist		 hdrs = { 0 };
	char			*u = url("/echo");
	char			 want[256];

	strlist_add(&hdrs, "X-Test: hello there");
	http_request(h, "GET", u, &hdrs, NULL, 0, REQ_MS, record, &c);
	strlist_free(&hdrs);
	free(u);
	assert_int_equal(c.n, 0);	/* never from inside http_request */
	assert_true(run_until(&c.n, 1, WAIT_MS));
	assert_ok(&c, 200);
	assert_string_equal(c.reply_hdr, "echoed");	/* trimmed */
	assert_true(c.seconds > 0 && c.seconds < 5);
	snprintf(want, sizeof want, "method=GET x-test=hello there expect=- "
	    "ua=%s/%s peer=", PACKAGE_NAME, PACKAGE_VERSION);
	if (strncmp(c.body, want, strlen(want)) != 0)
		fail_msg("want \"%s...\", got \"%s\"", want, c.body);
	assert_non_null(strstr(c.body, " len=0 body="));
	run_for(50);
	assert_int_equal(c.n, 1);
	call_reset(&c);
}

static void
test_methods(void **state)
{
	struct call	 c[4] = { 0 };
	struct strlist	 hdrs = { 0 };
	char		*u = url("/echo");
	const char	*form = "Action=DescribeReplicationGroups&Version=x";
	size_t		 i;

	strlist_add(&hdrs, "Content-Type: application/x-www-form-urlencoded");
	http_request(h, "POST", u, &hdrs, form, strlen(form), REQ_MS, record,
	    &c[0]);
	http_request(h, "POST", u, NULL, NULL, 0, REQ_MS, record, &c[1]);
	http_request(h, "DELETE", u, NULL, NULL, 0, REQ_MS, record, &c[2]);
	http_request(h, "PUT", u, NULL, "a\0b", 3, REQ_MS, record, &c[3]);
	strlist_free(&hdrs);
	free(u);
	assert_true(run_until_all(c, 4, WAIT_MS));
	assert_ok(&c[0], 200);
	assert_non_null(strstr(c[0].body, "method=POST "));
	assert_non_null(strstr(c[0].body, " len=42 body=Action="
	    "DescribeReplicationGroups&Version=x"));
	assert_ok(&c[1], 200);
	assert_non_null(strstr(c[1].body, "method=POST "));
	assert_non_null(strstr(c[1].body, " len=0 body="));
	assert_ok(&c[2], 200);
	assert_non_null(strstr(c[2].body, "method=DELETE "));
	assert_ok(&c[3], 200);
	assert_non_null(strstr(c[3].body, "method=PUT "));
	assert_true(c[3].len > 3);
	assert_memory_equal(c[3].body + c[3].len - 3, "a\0b", 3);
	for (i = 0; i < 4; i++)
		call_reset(&c[i]);
}

/* A 500 is an answer: err 0, and the server's body. */
static void
test_status_500(void **state)
{
	struct call	 c = { 0 };
	char		*u = url("/fail");

	http_request(h, "GET", u, NULL, NULL, 0, REQ_MS, record, &c);
	free(u);
	assert_true(run_until(&c.n, 1, WAIT_MS));
	assert_ok(&c, 500);
	assert_body(&c, "boom");
	assert_true(c.error[0] == '\0');
	call_reset(&c);
}

/* Redirects are answers too, never followed. */
static void
test_redirect(void **state)
{
	struct call	 c = { 0 };
	char		*u = url("/redirect");
	int		 before = srv_requests;

	http_request(h, "GET", u, NULL, NULL, 0, REQ_MS, record, &c);
	free(u);
	assert_true(run_until(&c.n, 1, WAIT_MS));
	assert_ok(&c, 302);
	assert_body(&c, "moved");
	run_for(50);
	assert_int_equal(srv_requests, before + 1);
	call_reset(&c);
}

/*
 * The client gives up at its timeout, and stays quiet when the late answer
 * comes.
 */
static void
test_timeout(void **state)
{
	struct call	 c = { 0 };
	char		*u = url("/slow");
	int		 answered = slow_answered;

	http_request(h, "GET", u, NULL, NULL, 0, 300, record, &c);
	free(u);
	assert_true(run_until(&c.n, 1, WAIT_MS));
	assert_fails(&c, -ETIMEDOUT, "imed out");
	if (c.seconds < 0.25 || c.seconds > 1.5)
		fail_msg("timed out after %.3fs, want about 0.3s", c.seconds);
	assert_true(run_until(&slow_answered, answered + 1, WAIT_MS));
	run_for(100);
	assert_int_equal(c.n, 1);
	call_reset(&c);
}

static void
assert_big(const struct call *c)
{
	size_t	 i;

	assert_ok(c, 200);
	assert_int_equal(c->len, BIG_LEN);
	for (i = 0; i < BIG_LEN; i++)
		if ((unsigned char)c->body[i] != big_byte(i))
			fail_msg("byte %zu is %u, want %u", i,
			    (unsigned char)c->body[i], big_byte(i));
	assert_int_equal(c->body[BIG_LEN], '\0');
}

/* 2 MiB in and out, with Content-Length and chunked; no Expect sent. */
static void
test_big(void **state)
{
	struct call	 c[3] = { 0 };
	char		*u1 = url("/big"), *u2 = url("/big?chunked");
	char		*u3 = url("/echo"), *up = xmalloc(BIG_LEN);
	size_t		 i;

	for (i = 0; i < BIG_LEN; i++)
		up[i] = (char)big_byte(i);
	http_request(h, "GET", u1, NULL, NULL, 0, REQ_MS, record, &c[0]);
	http_request(h, "GET", u2, NULL, NULL, 0, REQ_MS, record, &c[1]);
	http_request(h, "POST", u3, NULL, up, BIG_LEN, REQ_MS, record, &c[2]);
	free(up);	/* copied */
	free(u1);
	free(u2);
	free(u3);
	assert_true(run_until_all(c, 3, WAIT_MS));
	assert_big(&c[0]);
	assert_big(&c[1]);
	assert_ok(&c[2], 200);
	assert_non_null(strstr(c[2].body, " expect=- "));
	assert_non_null(strstr(c[2].body, " len=2097152 body="));
	assert_true(c[2].len > BIG_LEN);
	for (i = 0; i < BIG_LEN; i++)
		if ((unsigned char)c[2].body[c[2].len - BIG_LEN + i] !=
		    big_byte(i))
			fail_msg("uploaded byte %zu differs", i);
	for (i = 0; i < 3; i++)
		call_reset(&c[i]);
}

/* Bodies over the limit fail, announced (Content-Length) or not. */
static void
test_body_limit(void **state)
{
	struct call	 c[3] = { 0 };
	char		*u1 = url("/big"), *u2 = url("/big?chunked");
	char		*u3 = url("/headers");
	size_t		 i;

	http_set_max_body(h, 1u << 20);
	http_request(h, "GET", u1, NULL, NULL, 0, REQ_MS, record, &c[0]);
	http_request(h, "GET", u2, NULL, NULL, 0, REQ_MS, record, &c[1]);
	http_request(h, "GET", u3, NULL, NULL, 0, REQ_MS, record, &c[2]);
	free(u1);
	free(u2);
	free(u3);
	assert_true(run_until_all(c, 3, WAIT_MS));
	assert_fails(&c[0], -EFBIG, "response body larger than 1048576 bytes");
	assert_fails(&c[1], -EFBIG, "response body larger than 1048576 bytes");
	assert_fails(&c[2], -EFBIG, "more than 256 header lines");
	run_for(50);
	assert_int_equal(c[0].n + c[1].n + c[2].n, 3);
	for (i = 0; i < 3; i++)
		call_reset(&c[i]);
}

/* A server that hangs up without an answer, or half-way through one. */
static void
test_closed(void **state)
{
	struct call	 c[2] = { 0 };
	char		*u1, *u2;

	xasprintf(&u1, "http://127.0.0.1:%u/close", raw_port);
	xasprintf(&u2, "http://127.0.0.1:%u/partial", raw_port);
	http_request(h, "GET", u1, NULL, NULL, 0, REQ_MS, record, &c[0]);
	http_request(h, "GET", u2, NULL, NULL, 0, REQ_MS, record, &c[1]);
	free(u1);
	free(u2);
	assert_true(run_until_all(c, 2, WAIT_MS));
	assert_fails(&c[0], -ECONNRESET, "Empty reply");
	assert_fails(&c[1], -ECONNRESET, "");
	run_for(50);
	assert_int_equal(c[0].n + c[1].n, 2);
	call_reset(&c[0]);
	call_reset(&c[1]);
}

static void
test_refused(void **state)
{
	struct call		 c = { 0 };
	struct sockaddr_in	 sin;
	int			 fd;
	unsigned int		 port;
	char			*u;

	/* A port that was free a moment ago, and nobody listens on. */
	memset(&sin, 0, sizeof sin);
	sin.sin_family = AF_INET;
	sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	assert_true((fd = socket(AF_INET, SOCK_STREAM, 0)) != -1);
	assert_int_equal(bind(fd, (struct sockaddr *)&sin, sizeof sin), 0);
	port = fd_port(fd);
	close(fd);
	xasprintf(&u, "http://127.0.0.1:%u/", port);
	http_request(h, "GET", u, NULL, NULL, 0, REQ_MS, record, &c);
	free(u);
	assert_true(run_until(&c.n, 1, WAIT_MS));
	assert_fails(&c, -ECONNREFUSED, "");
	call_reset(&c);
}

/* Requests refused before libcurl sees them still answer from the loop. */
static void
test_bad_requests(void **state)
{
	struct call	 c[5] = { 0 };
	struct strlist	 hdrs = { 0 };
	char		*u = url("/echo");
	int		 before = srv_requests;
	size_t		 i;

	strlist_add(&hdrs, "X-Test: a\r\nX-Injected: b");
	http_request(h, "GET", u, &hdrs, NULL, 0, REQ_MS, record, &c[0]);
	http_request(h, "GE T", u, NULL, NULL, 0, REQ_MS, record, &c[1]);
	http_request(h, "GET", "ftp://127.0.0.1/x", NULL, NULL, 0, REQ_MS,
	    record, &c[2]);
	http_request(h, "GET", "http://[::1", NULL, NULL, 0, REQ_MS, record,
	    &c[3]);
	http_request(h, "GET", "file:///etc/passwd", NULL, NULL, 0, REQ_MS,
	    record, &c[4]);
	strlist_free(&hdrs);
	free(u);
	assert_int_equal(c[0].n + c[1].n + c[2].n + c[3].n + c[4].n, 0);
	assert_true(run_until_all(c, 5, WAIT_MS));
	assert_fails(&c[0], -EINVAL, "CR or LF");
	assert_fails(&c[1], -EINVAL, "bad method");
	assert_fails(&c[2], -EINVAL, "");
	assert_fails(&c[3], -EINVAL, "");
	assert_fails(&c[4], -EINVAL, "");
	run_for(50);
	assert_int_equal(srv_requests, before);
	for (i = 0; i < 5; i++)
		call_reset(&c[i]);
}

/* Many requests at once, each answered with its own reply. */
static void
test_concurrent(void **state)
{
	static struct call	 c[NCONC];
	struct strlist		 hdrs;
	char			*u = url("/echo"), line[64], want[64];
	size_t			 i;

	for (i = 0; i < NCONC; i++) {
		memset(&hdrs, 0, sizeof hdrs);
		snprintf(line, sizeof line, "X-Test: req-%zu", i);
		strlist_add(&hdrs, line);
		http_request(h, "GET", u, &hdrs, NULL, 0, REQ_MS, record,
		    &c[i]);
		strlist_free(&hdrs);
	}
	free(u);
	assert_true(run_until_all(c, NCONC, WAIT_MS));
	run_for(50);
	for (i = 0; i < NCONC; i++) {
		assert_ok(&c[i], 200);
		snprintf(want, sizeof want, " x-test=req-%zu ", i);
		if (strstr(c[i].body, want) == NULL)
			fail_msg("reply %zu is \"%s\"", i, c[i].body);
		call_reset(&c[i]);
	}
}

/* Sequential requests to one server share one connection. */
static void
test_keepalive(void **state)
{
	struct call	 c[3] = { 0 };
	char		*u = url("/echo");
	const char	*p[3];
	size_t		 i;

	for (i = 0; i < 3; i++) {
		http_request(h, "GET", u, NULL, NULL, 0, REQ_MS, record, &c[i]);
		assert_true(run_until(&c[i].n, 1, WAIT_MS));
		assert_ok(&c[i], 200);
		assert_non_null(p[i] = strstr(c[i].body, " peer="));
	}
	free(u);
	if (strtoul(p[0] + 6, NULL, 10) != strtoul(p[1] + 6, NULL, 10) ||
	    strtoul(p[1] + 6, NULL, 10) != strtoul(p[2] + 6, NULL, 10))
		fail_msg("not reused: %.12s %.12s %.12s", p[0], p[1], p[2]);
	for (i = 0; i < 3; i++)
		call_reset(&c[i]);
}

/* A cancelled request is never called back, wherever it was. */
static void
test_cancel(void **state)
{
	struct call	 c[3] = { 0 };
	struct http_req	*r[3];
	char		*slow = url("/slow"), *echo = url("/echo");

	r[0] = http_request(h, "GET", slow, NULL, NULL, 0, REQ_MS, record,
	    &c[0]);
	r[1] = http_request(h, "GET", echo, NULL, NULL, 0, REQ_MS, record,
	    &c[1]);
	r[2] = http_request(h, "GE T", echo, NULL, NULL, 0, REQ_MS, record,
	    &c[2]);
	http_cancel(r[1]);	/* before it started */
	http_cancel(r[2]);	/* failed, its callback queued */
	http_cancel(NULL);
	run_for(200);		/* r[0] is sent and waiting */
	assert_int_equal(c[0].n, 0);
	http_cancel(r[0]);
	run_for(300);
	assert_int_equal(c[0].n + c[1].n + c[2].n, 0);
	free(slow);
	free(echo);
}

/*
 * Cancel from inside callbacks: A cancels the slow B; of two quick
 * requests, the first answered cancels the other, so exactly one is called
 * whichever order they finish in; a callback may cancel itself.
 */
static void
test_cancel_in_callback(void **state)
{
	struct call	 a = { 0 }, b = { 0 }, p[20] = { { 0 } }, s = { 0 };
	struct http_req	*rb, *rp[20], *rs;
	char		*slow = url("/slow"), *echo = url("/echo");
	size_t		 i;
	int		 n;
	uint64_t	 deadline = clock_mono_ms() + WAIT_MS;

	rb = http_request(h, "GET", slow, NULL, NULL, 0, REQ_MS, record, &b);
	a.cancel = rb;
	http_request(h, "GET", echo, NULL, NULL, 0, REQ_MS, record, &a);
	for (i = 0; i < 20; i++)
		rp[i] = http_request(h, "GET", echo, NULL, NULL, 0, REQ_MS,
		    record, &p[i]);
	for (i = 0; i < 20; i += 2) {
		p[i].cancel = rp[i + 1];
		p[i + 1].cancel = rp[i];
	}
	rs = http_request(h, "GET", echo, NULL, NULL, 0, REQ_MS, record, &s);
	s.self = &rs;
	assert_true(run_until(&a.n, 1, WAIT_MS));
	assert_true(run_until(&s.n, 1, WAIT_MS));
	for (i = 0; i < 20; i += 2) {
		n = p[i].n + p[i + 1].n;
		while (n == 0 && clock_mono_ms() < deadline) {
			event_base_loop(base, EVLOOP_ONCE);
			n = p[i].n + p[i + 1].n;
		}
	}
	run_for(300);
	assert_ok(&a, 200);
	assert_int_equal(b.n, 0);
	assert_ok(&s, 200);
	for (i = 0; i < 20; i += 2)
		if (p[i].n + p[i + 1].n != 1)
			fail_msg("pair %zu: %d and %d calls", i / 2, p[i].n,
			    p[i + 1].n);
	call_reset(&a);
	call_reset(&s);
	for (i = 0; i < 20; i++)
		call_reset(&p[i]);
	free(slow);
	free(echo);
}

/* A callback may start the next request. */
static void
test_chain(void **state)
{
	struct call	 a = { 0 }, b = { 0 };
	char		*u = url("/echo");

	a.chain_h = h;
	a.chained = &b;
	http_request(h, "GET", u, NULL, NULL, 0, REQ_MS, record, &a);
	free(u);
	assert_true(run_until(&b.n, 1, WAIT_MS));
	assert_ok(&a, 200);
	assert_ok(&b, 200);
	call_reset(&a);
	call_reset(&b);
}

/* http_free with requests everywhere: no callbacks, no leaks. */
static void
test_free_pending(void **state)
{
	struct http	*h2 = http_new(base);
	struct call	 c[8] = { 0 };
	char		*slow = url("/slow"), *echo = url("/echo");
	size_t		 i;

	assert_non_null(h2);
	for (i = 0; i < 4; i++)
		http_request(h2, "GET", slow, NULL, NULL, 0, REQ_MS, record,
		    &c[i]);
	run_for(100);		/* the slow ones are sent */
	for (; i < 7; i++)
		http_request(h2, "GET", echo, NULL, NULL, 0, REQ_MS, record,
		    &c[i]);
	http_request(h2, "GE T", echo, NULL, NULL, 0, REQ_MS, record, &c[7]);
	http_free(h2);
	http_free(NULL);
	run_for(300);
	for (i = 0; i < 8; i++)
		assert_int_equal(c[i].n, 0);
	free(slow);
	free(echo);
}

/*
 * http_free from inside a callback of its own, with a request in flight
 * and one that a callback queued just before: neither is called back.
 */
static void
test_free_in_callback(void **state)
{
	struct http	*h2 = http_new(base);
	struct call	 a = { 0 }, b = { 0 }, c = { 0 }, d = { 0 };
	char		*slow = url("/slow"), *echo = url("/echo");

	assert_non_null(h2);
	http_request(h2, "GET", slow, NULL, NULL, 0, REQ_MS, record, &b);
	a.chain_h = h2;
	a.chain_method = "GE T";	/* fails, queued for a callback */
	a.chained = &c;
	a.free_h = h2;
	http_request(h2, "GET", echo, NULL, NULL, 0, REQ_MS, record, &a);
	http_request(h, "GET", echo, NULL, NULL, 0, REQ_MS, record, &d);
	assert_true(run_until(&a.n, 1, WAIT_MS));
	assert_true(run_until(&d.n, 1, WAIT_MS));
	run_for(300);
	assert_ok(&a, 200);
	assert_int_equal(b.n, 0);
	assert_int_equal(c.n, 0);
	assert_ok(&d, 200);	/* h is unaffected */
	call_reset(&a);
	call_reset(&d);
	free(slow);
	free(echo);
}

static void
test_unix_socket(void **state)
{
	struct call	 c = { 0 };

	http_set_unix_socket(h, srv_sock);
	http_request(h, "GET", "http://localhost/echo", NULL, NULL, 0,
	    REQ_MS, record, &c);
	assert_true(run_until(&c.n, 1, WAIT_MS));
	assert_ok(&c, 200);
	assert_non_null(strstr(c.body, "method=GET "));
	call_reset(&c);
	http_set_unix_socket(h, NULL);
}

/*
 * TLS: a self-signed certificate fails verification unless its CA is
 * configured, and then still fails for a name it does not carry.
 */
static void
test_tls_verify(void **state)
{
	struct call	 c[3] = { 0 };
	char		*cert, *key, *log1, *log2, *u1, *u2;
	bool		 ok;
	size_t		 i;

	if (access(OPENSSL_BIN, X_OK) != 0) {
		print_message("no %s: TLS not tested\n", OPENSSL_BIN);
		skip();
	}
	xasprintf(&cert, "%s/cert.pem", tmpdir);
	xasprintf(&key, "%s/key.pem", tmpdir);
	xasprintf(&log1, "%s/openssl.log", tmpdir);
	xasprintf(&log2, "%s/s_server.log", tmpdir);
	ok = tls_cert_make(cert, key, log1) == 0 &&
	    tls_server_start(cert, key, log2) == 0;
	free(key);
	free(log1);
	free(log2);
	if (!ok) {
		free(cert);
		fail_msg("cannot start openssl s_server");
	}
	xasprintf(&u1, "https://127.0.0.1:%u/", tls_port);
	xasprintf(&u2, "https://localhost:%u/", tls_port);

	http_request(h, "GET", u1, NULL, NULL, 0, REQ_MS, record, &c[0]);
	assert_true(run_until(&c[0].n, 1, WAIT_MS));
	assert_fails(&c[0], -EPROTO, "certificate");

	http_set_ca_file(h, cert);
	http_request(h, "GET", u1, NULL, NULL, 0, REQ_MS, record, &c[1]);
	assert_true(run_until(&c[1].n, 1, WAIT_MS));
	assert_ok(&c[1], 200);

	http_request(h, "GET", u2, NULL, NULL, 0, REQ_MS, record, &c[2]);
	assert_true(run_until(&c[2].n, 1, WAIT_MS));
	assert_fails(&c[2], -EPROTO, "localhost");

	http_set_ca_file(h, NULL);
	tls_stop();
	for (i = 0; i < 3; i++)
		call_reset(&c[i]);
	free(cert);
	free(u1);
	free(u2);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_get, setup, teardown),
		cmocka_unit_test_setup_teardown(test_methods, setup, teardown),
		cmocka_unit_test_setup_teardown(test_status_500, setup,
		    teardown),
		cmocka_unit_test_setup_teardown(test_redirect, setup,
		    teardown),
		cmocka_unit_test_setup_teardown(test_timeout, setup, teardown),
		cmocka_unit_test_setup_teardown(test_big, setup, teardown),
		cmocka_unit_test_setup_teardown(test_body_limit, setup,
		    teardown),
		cmocka_unit_test_setup_teardown(test_closed, setup, teardown),
		cmocka_unit_test_setup_teardown(test_refused, setup, teardown),
		cmocka_unit_test_setup_teardown(test_bad_requests, setup,
		    teardown),
		cmocka_unit_test_setup_teardown(test_concurrent, setup,
		    teardown),
		cmocka_unit_test_setup_teardown(test_keepalive, setup,
		    teardown),
		cmocka_unit_test_setup_teardown(test_cancel, setup, teardown),
		cmocka_unit_test_setup_teardown(test_cancel_in_callback, setup,
		    teardown),
		cmocka_unit_test_setup_teardown(test_chain, setup, teardown),
		cmocka_unit_test_setup_teardown(test_free_pending, setup,
		    teardown),
		cmocka_unit_test_setup_teardown(test_free_in_callback, setup,
		    teardown),
		cmocka_unit_test_setup_teardown(test_unix_socket, setup,
		    teardown),
		cmocka_unit_test_setup_teardown(test_tls_verify, setup,
		    teardown),
	};

	return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
