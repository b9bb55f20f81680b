/*
 * The endpoint proxy against real sockets on 127.0.0.1 and real
 * redis-server processes. The test process runs the proxy's event loop;
 * each case forks a child that plays a blocking Redis client and exits
 * with 0 when every reply was right (it prints what was wrong otherwise).
 * The two sides meet on a socketpair when the parent must act in the
 * middle of a case (switch the target, drop, free). Two redis-servers
 * (A, also on a unix socket, and B) are started once for the group and
 * stopped by pid at the end, also when a case fails.
 *
 * Run it under valgrind --leak-check=full as well: proxy_free with live
 * connections and the error paths must not leak.
 */
#include "config.h"

#include <sys/types.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/un.h>
#include <sys/wait.h>
#ifdef __linux__
#include <sys/prctl.h>
#endif

#include <arpa/inet.h>
#include <netinet/in.h>

#include <dirent.h>
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
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include <event2/event.h>

#include "local/proxy.h"
#include "util.h"

#define CHILD_TIMEOUT_MS	60000	/* generous: valgrind is slow */
#define CLIENT_TIMEOUT_S	20	/* blocking reads in the children */
#define BIG_LEN			(4 * 1024 * 1024)
#define BIG_PIPELINE		8	/* GETs of BIG_LEN queued at once */
#define MANY_CONNS		1000

struct redis {
	pid_t	 pid;
	int	 port;
	char	 sock[108];	/* unix socket path, or "" */
};

static struct redis	 redis_a, redis_b;
static char		 tmpdir[] = "/tmp/test_proxy.XXXXXX";
static bool		 have_tmpdir;
static const char	*redis_bin;

/* Per-case state, owned by the setup/teardown pair. */
struct fx {
	struct event_base	*base;
	struct proxy		*proxy;
	int			 port;		/* the proxy's */
	struct event		*tick;		/* keeps EVLOOP_ONCE short */
	struct event		*sync_ev;
	int			 sync[2];	/* [0] parent, [1] child */
	pid_t			 child;

	/* What pick returns. */
	struct sockaddr_storage	 target;
	socklen_t		 target_len;
	bool			 refuse;
	int			 picks;

	/* Filled in by the case's on_sync, checked after the child exits. */
	void			(*on_sync)(struct fx *, char);
	size_t			 seen[8];
	size_t			 max_buffered;
	int			 rlimit_changed;
	struct rlimit		 saved_nofile;
};

/* ---- blocking client helpers, used by the children ---- */

#define CFAIL(...) do {							\
	fprintf(stderr, "child %s:%d: ", __func__, __LINE__);		\
	fprintf(stderr, __VA_ARGS__);					\
	fputc('\n', stderr);						\
	return 1;							\
} while (0)

static void
sockaddr_loopback(struct sockaddr_storage *ss, socklen_t *len, int port)
{
	struct sockaddr_in	*sin = (struct sockaddr_in *)ss;

	memset(ss, 0, sizeof(*ss));
	sin->sin_family = AF_INET;
	sin->sin_port = htons((uint16_t)port);
	sin->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	*len = sizeof(*sin);
}

static void
sockaddr_unix(struct sockaddr_storage *ss, socklen_t *len, const char *path)
{
	struct sockaddr_un	*su = (struct sockaddr_un *)ss;
	size_t			 n = strlen(path);

	memset(ss, 0, sizeof(*ss));
	su->sun_family = AF_UNIX;
	if (n >= sizeof(su->sun_path))
		n = sizeof(su->sun_path) - 1;
	memcpy(su->sun_path, path, n);
	*len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + n + 1);
}

static int
cl_connect(int port)
{
	struct sockaddr_storage	 ss;
	socklen_t		 len;
	struct timeval		 tv = { CLIENT_TIMEOUT_S, 0 };
	int			 fd;

	sockaddr_loopback(&ss, &len, port);
	if ((fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0)) == -1)
		return -1;
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
	if (connect(fd, (struct sockaddr *)&ss, len) != 0) {
		close(fd);
		return -1;
	}
	return fd;
}

static int
cl_write(int fd, const void *buf, size_t len)
{
	const char	*p = buf;
	ssize_t		 n;

	while (len > 0) {
		if ((n = write(fd, p, len)) == -1) {
			if (errno == EINTR)
				continue;
			return -1;
		}
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

/* Read exactly len bytes; -1 on error, timeout or EOF. */
static int
cl_read(int fd, void *buf, size_t len)
{
	char	*p = buf;
	ssize_t	 n;

	while (len > 0) {
		if ((n = read(fd, p, len)) == -1 && errno == EINTR)
			continue;
		if (n <= 0)
			return -1;
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

/* Send a command in RESP; the arguments are C strings, NULL-terminated. */
static int
cl_cmd(int fd, ...)
{
	struct strbuf	 sb;
	va_list		 ap;
	const char	*a;
	int		 argc = 0, r;

	va_start(ap, fd);
	while (va_arg(ap, const char *) != NULL)
		argc++;
	va_end(ap);
	strbuf_init(&sb);
	strbuf_printf(&sb, "*%d\r\n", argc);
	va_start(ap, fd);
	while ((a = va_arg(ap, const char *)) != NULL)
		strbuf_printf(&sb, "$%zu\r\n%s\r\n", strlen(a), a);
	va_end(ap);
	r = cl_write(fd, sb.s, sb.len);
	strbuf_free(&sb);
	return r;
}

/* Read exactly the reply want; print both on a mismatch. */
static int
cl_expect(int fd, const char *want)
{
	size_t	 len = strlen(want);
	char	*got = xmalloc(len + 1);
	int	 r = 0;

	memset(got, 0, len + 1);
	if (cl_read(fd, got, len) != 0 || memcmp(got, want, len) != 0) {
		fprintf(stderr, "child: want %s got %s (%s)\n", want, got,
		    errno != 0 ? strerror(errno) : "short");
		r = -1;
	}
	free(got);
	return r;
}

/*
 * The proxy closed this connection: read gives EOF (or a reset, when
 * bytes were still unread on the proxy's side), not a timeout.
 */
static int
cl_expect_closed(int fd)
{
	char	 c;
	ssize_t	 n;

	do
		n = read(fd, &c, 1);
	while (n == -1 && errno == EINTR);
	if (n == 0 || (n == -1 && errno == ECONNRESET))
		return 0;
	fprintf(stderr, "child: want EOF, got %s\n",
	    n > 0 ? "data" : strerror(errno));
	return -1;
}

static int
cl_expect_port(int fd, int port)
{
	char	 want[64], ps[16];

	snprintf(ps, sizeof(ps), "%d", port);
	snprintf(want, sizeof(want), "*2\r\n$4\r\nport\r\n$%zu\r\n%s\r\n",
	    strlen(ps), ps);
	if (cl_cmd(fd, "CONFIG", "GET", "port", NULL) != 0)
		return -1;
	return cl_expect(fd, want);
}

/* Tell the parent to act (on_sync), wait until it did. */
static int
cl_sync(struct fx *fx, char what)
{
	char	 ack;

	if (cl_write(fx->sync[1], &what, 1) != 0 ||
	    cl_read(fx->sync[1], &ack, 1) != 0)
		return -1;
	return 0;
}

static unsigned char
big_byte(size_t i)
{
	return (unsigned char)((i * 2654435761u) >> 13);
}

/* ---- redis-server processes ---- */

static int
free_port(void)
{
	struct sockaddr_storage	 ss;
	socklen_t		 len;
	int			 fd, port = -1;

	sockaddr_loopback(&ss, &len, 0);
	if ((fd = socket(AF_INET, SOCK_STREAM, 0)) == -1)
		return -1;
	if (bind(fd, (struct sockaddr *)&ss, len) == 0 &&
	    getsockname(fd, (struct sockaddr *)&ss, &len) == 0)
		port = ntohs(((struct sockaddr_in *)&ss)->sin_port);
	close(fd);
	return port;
}

static bool
redis_ping(int port)
{
	int	 fd, ok;

	if ((fd = cl_connect(port)) == -1)
		return false;
	ok = cl_cmd(fd, "PING", NULL) == 0 && cl_expect(fd, "+PONG\r\n") == 0;
	close(fd);
	return ok;
}

static void
redis_stop(struct redis *r)
{
	if (r->pid > 0) {
		kill(r->pid, SIGTERM);
		waitpid(r->pid, NULL, 0);
	}
	r->pid = 0;
	if (r->sock[0] != '\0')
		unlink(r->sock);
}

static pid_t
redis_spawn(int port, const char *sock)
{
	char	 ports[16];
	pid_t	 pid;
	int	 null;

	snprintf(ports, sizeof(ports), "%d", port);
	if ((pid = fork()) != 0)
		return pid;
#ifdef __linux__
	prctl(PR_SET_PDEATHSIG, SIGTERM);	/* no orphan if we crash */
#endif
	if ((null = open("/dev/null", O_WRONLY)) != -1) {
		dup2(null, STDOUT_FILENO);
		close(null);
	}
	if (sock[0] != '\0')
		execlp(redis_bin, redis_bin, "--save", "", "--appendonly", "no",
		    "--port", ports, "--bind", "127.0.0.1", "--daemonize", "no",
		    "--dir", tmpdir, "--unixsocket", sock, (char *)NULL);
	else
		execlp(redis_bin, redis_bin, "--save", "", "--appendonly", "no",
		    "--port", ports, "--bind", "127.0.0.1", "--daemonize", "no",
		    "--dir", tmpdir, (char *)NULL);
	_exit(127);
}

/*
 * Start a redis-server on a free port; retry if the port was taken.
 * -2: there is no redis-server to run.
 */
static int
redis_start(struct redis *r, const char *sockname)
{
	int	 attempt, i, status;

	if (sockname != NULL)
		snprintf(r->sock, sizeof(r->sock), "%s/%s", tmpdir, sockname);
	for (attempt = 0; attempt < 5; attempt++) {
		if ((r->port = free_port()) == -1)
			return -1;
		if ((r->pid = redis_spawn(r->port, r->sock)) == -1)
			return -1;
		for (i = 0; i < 500; i++) {	/* 10 s */
			if (waitpid(r->pid, &status, WNOHANG) == r->pid) {
				r->pid = 0;
				if (WIFEXITED(status) &&
				    WEXITSTATUS(status) == 127)
					return -2;
				break;
			}
			if (redis_ping(r->port))
				return 0;
			usleep(20000);
		}
		redis_stop(r);
	}
	return -1;
}

static int
group_teardown(void **state)
{
	redis_stop(&redis_a);
	redis_stop(&redis_b);
	if (have_tmpdir)
		rmdir(tmpdir);
	return 0;
}

/*
 * Without a redis-server binary the cases that need one are skipped; one
 * that is there but does not start fails the group.
 */
static int
group_setup(void **state)
{
	int	 r;

	signal(SIGPIPE, SIG_IGN);
	if ((redis_bin = getenv("CK_REDIS_SERVER")) == NULL)
		redis_bin = "redis-server";
	if (mkdtemp(tmpdir) == NULL)
		return -1;
	have_tmpdir = true;
	if ((r = redis_start(&redis_a, "a.sock")) == 0)
		r = redis_start(&redis_b, NULL);
	if (r == -2)
		print_error("no %s to run (set CK_REDIS_SERVER), skipping\n",
		    redis_bin);
	else if (r != 0) {
		print_error("%s does not start\n", redis_bin);
		group_teardown(state);
		return -1;
	}
	return 0;
}

/* ---- the parent: fixture and loop driver ---- */

static int
pick(void *arg, struct sockaddr_storage *addr, socklen_t *len)
{
	struct fx	*fx = arg;

	fx->picks++;
	if (fx->refuse)
		return -1;
	memcpy(addr, &fx->target, fx->target_len);
	*len = fx->target_len;
	return 0;
}

static void
on_tick(evutil_socket_t fd, short ev, void *arg)
{
	struct fx	*fx = arg;
	size_t		 n;

	if (fx->proxy != NULL && (n = proxy_buffered(fx->proxy)) >
	    fx->max_buffered)
		fx->max_buffered = n;
}

static void
on_sync_read(evutil_socket_t fd, short ev, void *arg)
{
	struct fx	*fx = arg;
	char		 c;

	if (read(fd, &c, 1) != 1)
		return;
	if (fx->on_sync != NULL)
		fx->on_sync(fx, c);
	(void)write(fd, &c, 1);
}

static int
fx_setup(void **state)
{
	struct fx	*fx;
	struct timeval	 tv = { 0, 5000 };
	char		*cause;

	if (redis_a.pid <= 0 || redis_b.pid <= 0)
		skip();
	fx = xcalloc(1, sizeof(*fx));
	fx->sync[0] = fx->sync[1] = -1;
	*state = fx;
	if ((fx->base = event_base_new()) == NULL)
		return -1;
	fx->proxy = proxy_new(fx->base, "127.0.0.1", 0, pick, fx, &cause);
	if (fx->proxy == NULL) {
		print_error("proxy_new: %s\n", cause);
		free(cause);
		return -1;
	}
	fx->port = proxy_port(fx->proxy);
	sockaddr_loopback(&fx->target, &fx->target_len, redis_a.port);
	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fx->sync) != 0)
		return -1;
	fx->tick = event_new(fx->base, -1, EV_PERSIST, on_tick, fx);
	fx->sync_ev = event_new(fx->base, fx->sync[0], EV_READ | EV_PERSIST,
	    on_sync_read, fx);
	event_add(fx->tick, &tv);
	event_add(fx->sync_ev, NULL);
	return 0;
}

static int
fx_teardown(void **state)
{
	struct fx	*fx = *state;

	if (fx == NULL)
		return 0;
	if (fx->rlimit_changed)
		setrlimit(RLIMIT_NOFILE, &fx->saved_nofile);
	if (fx->child > 0) {
		kill(fx->child, SIGKILL);
		waitpid(fx->child, NULL, 0);
	}
	proxy_free(fx->proxy);
	if (fx->tick != NULL)
		event_free(fx->tick);
	if (fx->sync_ev != NULL)
		event_free(fx->sync_ev);
	if (fx->sync[0] != -1)
		close(fx->sync[0]);
	if (fx->sync[1] != -1)
		close(fx->sync[1]);
	if (fx->base != NULL)
		event_base_free(fx->base);	/* runs libevent's finalizers */
	free(fx);
	return 0;
}

static void
fx_fork(struct fx *fx, int (*fn)(struct fx *))
{
	pid_t	 pid;

	fflush(stdout);
	fflush(stderr);
	pid = fork();
	assert_true(pid != -1);
	if (pid == 0) {
		close(fx->sync[0]);
		_exit(fn(fx));
	}
	fx->child = pid;
}

/* Run the loop until the child exits; its exit status, -1 on timeout. */
static int
fx_wait_child(struct fx *fx)
{
	uint64_t	 deadline = clock_mono_ms() + CHILD_TIMEOUT_MS;
	int		 status;
	pid_t		 r;

	while (clock_mono_ms() < deadline) {
		r = waitpid(fx->child, &status, WNOHANG);
		if (r == fx->child) {
			fx->child = 0;
			if (WIFEXITED(status))
				return WEXITSTATUS(status);
			return 128 + WTERMSIG(status);
		}
		event_base_loop(fx->base, EVLOOP_ONCE);
	}
	print_error("child %d timed out\n", (int)fx->child);
	return -1;
}

/* Run the loop until the proxy has no connection left. */
static bool
fx_wait_idle(struct fx *fx)
{
	uint64_t	 deadline = clock_mono_ms() + CHILD_TIMEOUT_MS;

	while (clock_mono_ms() < deadline) {
		if (fx->proxy == NULL || proxy_count(fx->proxy) == 0)
			return true;
		event_base_loop(fx->base, EVLOOP_ONCE);
	}
	return false;
}

/* ---- the cases ---- */

static int
child_forward(struct fx *fx)
{
	int	 fd;

	if ((fd = cl_connect(fx->port)) == -1)
		CFAIL("connect: %s", strerror(errno));
	if (cl_cmd(fd, "PING", NULL) != 0 || cl_expect(fd, "+PONG\r\n") != 0)
		CFAIL("PING");
	if (cl_cmd(fd, "SET", "greeting", "hello", NULL) != 0 ||
	    cl_expect(fd, "+OK\r\n") != 0)
		CFAIL("SET");
	if (cl_cmd(fd, "GET", "greeting", NULL) != 0 ||
	    cl_expect(fd, "$5\r\nhello\r\n") != 0)
		CFAIL("GET");
	if (cl_expect_port(fd, redis_a.port) != 0)
		CFAIL("not forwarded to A");
	close(fd);
	return 0;
}

static void
test_forward(void **state)
{
	struct fx	*fx = *state;

	fx_fork(fx, child_forward);
	assert_int_equal(fx_wait_child(fx), 0);
	assert_true(fx_wait_idle(fx));
	assert_int_equal(fx->picks, 1);
	assert_int_equal(proxy_accepted_total(fx->proxy), 1);
}

static int
child_forward_unix(struct fx *fx)
{
	int	 fd;

	if ((fd = cl_connect(fx->port)) == -1)
		CFAIL("connect: %s", strerror(errno));
	if (cl_expect_port(fd, redis_a.port) != 0)
		CFAIL("CONFIG GET port over the unix socket");
	close(fd);
	return 0;
}

static void
test_forward_unix(void **state)
{
	struct fx	*fx = *state;

	sockaddr_unix(&fx->target, &fx->target_len, redis_a.sock);
	fx_fork(fx, child_forward_unix);
	assert_int_equal(fx_wait_child(fx), 0);
	assert_true(fx_wait_idle(fx));
}

static int
child_expect_closed(struct fx *fx)
{
	int	 fd;

	if ((fd = cl_connect(fx->port)) == -1)
		CFAIL("connect: %s", strerror(errno));
	if (cl_expect_closed(fd) != 0)
		CFAIL("not closed");
	close(fd);
	return 0;
}

static void
test_refuse(void **state)
{
	struct fx	*fx = *state;

	fx->refuse = true;
	fx_fork(fx, child_expect_closed);
	assert_int_equal(fx_wait_child(fx), 0);
	assert_int_equal(fx->picks, 1);
	assert_int_equal(proxy_accepted_total(fx->proxy), 1);
	assert_int_equal(proxy_count(fx->proxy), 0);
}

/* Nothing listens on the target: the client is closed, nothing leaks. */
static void
test_upstream_down(void **state)
{
	struct fx	*fx = *state;

	sockaddr_loopback(&fx->target, &fx->target_len, free_port());
	fx_fork(fx, child_expect_closed);
	assert_int_equal(fx_wait_child(fx), 0);
	assert_true(fx_wait_idle(fx));
}

/* connect() to a missing AF_UNIX path fails at once, inside libevent. */
static void
test_upstream_missing_path(void **state)
{
	struct fx	*fx = *state;
	char		 path[200];

	snprintf(path, sizeof(path), "%s/nothing.sock", tmpdir);
	sockaddr_unix(&fx->target, &fx->target_len, path);
	fx_fork(fx, child_expect_closed);
	assert_int_equal(fx_wait_child(fx), 0);
	assert_true(fx_wait_idle(fx));
	assert_int_equal(fx->picks, 1);
}

static void
drop_on_sync(struct fx *fx, char c)
{
	struct sockaddr_storage	 a;
	socklen_t		 alen;

	switch (c) {
	case 'a':		/* failover: new clients go to B */
		sockaddr_loopback(&fx->target, &fx->target_len,
		    redis_b.port);
		break;
	case 'b':		/* drop the old primary's clients */
		sockaddr_loopback(&a, &alen, redis_a.port);
		fx->seen[0] = proxy_count(fx->proxy);
		fx->seen[1] = proxy_drop_target(fx->proxy,
		    (struct sockaddr *)&a, alen);
		fx->seen[2] = proxy_count(fx->proxy);
		break;
	}
}

static int
child_drop(struct fx *fx)
{
	int	 c1, c2, c3;

	if ((c1 = cl_connect(fx->port)) == -1 ||
	    cl_expect_port(c1, redis_a.port) != 0)
		CFAIL("first connection not to A");
	if (cl_sync(fx, 'a') != 0)
		CFAIL("sync a");
	if ((c2 = cl_connect(fx->port)) == -1 ||
	    cl_expect_port(c2, redis_b.port) != 0)
		CFAIL("second connection not to B");
	if (cl_sync(fx, 'b') != 0)
		CFAIL("sync b");
	if (cl_expect_closed(c1) != 0)
		CFAIL("connection to A not dropped");
	if (cl_cmd(c2, "PING", NULL) != 0 || cl_expect(c2, "+PONG\r\n") != 0)
		CFAIL("connection to B dropped too");
	if ((c3 = cl_connect(fx->port)) == -1 ||
	    cl_expect_port(c3, redis_b.port) != 0)
		CFAIL("reconnection not to B");
	close(c1);
	close(c2);
	close(c3);
	return 0;
}

static void
test_drop_target(void **state)
{
	struct fx	*fx = *state;

	fx->on_sync = drop_on_sync;
	fx_fork(fx, child_drop);
	assert_int_equal(fx_wait_child(fx), 0);
	assert_int_equal(fx->seen[0], 2);	/* before: A and B */
	assert_int_equal(fx->seen[1], 1);	/* dropped: A's */
	assert_int_equal(fx->seen[2], 1);	/* left: B's */
	assert_true(fx_wait_idle(fx));
	assert_int_equal(fx->picks, 3);
}

static void
pause_on_sync(struct fx *fx, char c)
{
	fx->seen[0] = (size_t)fx->picks;
	proxy_set_paused(fx->proxy, false);
}

static int
child_paused(struct fx *fx)
{
	int	 fd;

	if (child_expect_closed(fx) != 0)
		CFAIL("paused proxy kept the client");
	if (cl_sync(fx, 'u') != 0)
		CFAIL("sync");
	if ((fd = cl_connect(fx->port)) == -1)
		CFAIL("connect: %s", strerror(errno));
	if (cl_cmd(fd, "PING", NULL) != 0 || cl_expect(fd, "+PONG\r\n") != 0)
		CFAIL("PING after unpausing");
	close(fd);
	return 0;
}

static void
test_paused(void **state)
{
	struct fx	*fx = *state;

	fx->on_sync = pause_on_sync;
	proxy_set_paused(fx->proxy, true);
	fx_fork(fx, child_paused);
	assert_int_equal(fx_wait_child(fx), 0);
	assert_int_equal(fx->seen[0], 0);	/* no pick while paused */
	assert_int_equal(fx->picks, 1);
	assert_int_equal(proxy_accepted_total(fx->proxy), 2);
	assert_true(fx_wait_idle(fx));
}

/*
 * A 4 MiB value both ways, then BIG_PIPELINE GETs of it queued while the
 * client does not read: the proxy must hold about one high watermark
 * (1 MiB) of it, not everything Redis sends.
 */
static int
child_big(struct fx *fx)
{
	unsigned char	*big, *got;
	char		 hdr[64];
	size_t		 i;
	int		 fd, k;

	big = xmalloc(BIG_LEN);
	got = xmalloc(BIG_LEN);
	for (i = 0; i < BIG_LEN; i++)
		big[i] = big_byte(i);
	if ((fd = cl_connect(fx->port)) == -1)
		CFAIL("connect: %s", strerror(errno));
	snprintf(hdr, sizeof(hdr), "*3\r\n$3\r\nSET\r\n$3\r\nbig\r\n$%d\r\n",
	    BIG_LEN);
	if (cl_write(fd, hdr, strlen(hdr)) != 0 ||
	    cl_write(fd, big, BIG_LEN) != 0 || cl_write(fd, "\r\n", 2) != 0 ||
	    cl_expect(fd, "+OK\r\n") != 0)
		CFAIL("SET big");
	snprintf(hdr, sizeof(hdr), "$%d\r\n", BIG_LEN);
	for (k = 0; k < BIG_PIPELINE; k++)
		if (cl_cmd(fd, "GET", "big", NULL) != 0)
			CFAIL("GET big");
	usleep(500000);		/* let Redis push while we do not read */
	if (cl_sync(fx, 'w') != 0)
		CFAIL("sync");
	for (k = 0; k < BIG_PIPELINE; k++) {
		memset(got, 0, BIG_LEN);
		if (cl_expect(fd, hdr) != 0 || cl_read(fd, got, BIG_LEN) != 0 ||
		    cl_expect(fd, "\r\n") != 0)
			CFAIL("GET big #%d: short reply", k);
		if (memcmp(got, big, BIG_LEN) != 0)
			CFAIL("GET big #%d: the value differs", k);
	}
	close(fd);
	free(big);
	free(got);
	return 0;
}

static void
big_on_sync(struct fx *fx, char c)
{
	fx->seen[0] = proxy_buffered(fx->proxy);
}

static void
test_big_value(void **state)
{
	struct fx	*fx = *state;

	fx->on_sync = big_on_sync;
	fx_fork(fx, child_big);
	assert_int_equal(fx_wait_child(fx), 0);
	/* Backpressure happened ... */
	assert_true(fx->seen[0] >= 512 * 1024);
	/* ... and was bounded by the watermark (plus one read). */
	assert_true(fx->max_buffered <= 1024 * 1024 + 64 * 1024);
	assert_true(fx_wait_idle(fx));
}

/* The client sends and closes at once: its command still reaches Redis. */
static int
child_early_close(struct fx *fx)
{
	char	 val[32];
	int	 fd, i;

	snprintf(val, sizeof(val), "v%d", (int)getpid());
	if ((fd = cl_connect(fx->port)) == -1)
		CFAIL("connect: %s", strerror(errno));
	if (cl_cmd(fd, "SET", "early", val, NULL) != 0)
		CFAIL("SET");
	close(fd);
	for (i = 0; i < 300; i++) {
		char	 want[64];
		int	 ok;

		if ((fd = cl_connect(fx->port)) == -1)
			CFAIL("connect: %s", strerror(errno));
		snprintf(want, sizeof(want), "$%zu\r\n%s\r\n", strlen(val),
		    val);
		ok = cl_cmd(fd, "GET", "early", NULL) == 0 &&
		    cl_expect(fd, want) == 0;
		close(fd);
		if (ok)
			return 0;
		usleep(10000);
	}
	CFAIL("the SET sent before close never arrived");
}

static void
test_early_close(void **state)
{
	struct fx	*fx = *state;

	fx_fork(fx, child_early_close);
	assert_int_equal(fx_wait_child(fx), 0);
	assert_true(fx_wait_idle(fx));
}

/* Redis answers QUIT and closes: the answer arrives, then EOF. */
static int
child_quit(struct fx *fx)
{
	int	 fd;

	if ((fd = cl_connect(fx->port)) == -1)
		CFAIL("connect: %s", strerror(errno));
	if (cl_cmd(fd, "QUIT", NULL) != 0 || cl_expect(fd, "+OK\r\n") != 0)
		CFAIL("QUIT");
	if (cl_expect_closed(fd) != 0)
		CFAIL("not closed after QUIT");
	close(fd);
	return 0;
}

static void
test_upstream_close(void **state)
{
	struct fx	*fx = *state;

	fx_fork(fx, child_quit);
	assert_int_equal(fx_wait_child(fx), 0);
	assert_true(fx_wait_idle(fx));
}

static void
free_on_sync(struct fx *fx, char c)
{
	fx->seen[0] = proxy_count(fx->proxy);
	proxy_free(fx->proxy);
	fx->proxy = NULL;
}

static int
child_free(struct fx *fx)
{
	int	 fd[3], i;

	for (i = 0; i < 3; i++) {
		if ((fd[i] = cl_connect(fx->port)) == -1)
			CFAIL("connect: %s", strerror(errno));
		if (cl_cmd(fd[i], "PING", NULL) != 0 ||
		    cl_expect(fd[i], "+PONG\r\n") != 0)
			CFAIL("PING");
	}
	/* One with a request in flight. */
	if (cl_cmd(fd[2], "BLPOP", "nothing", "5", NULL) != 0)
		CFAIL("BLPOP");
	if (cl_sync(fx, 'f') != 0)
		CFAIL("sync");
	for (i = 0; i < 3; i++)
		if (cl_expect_closed(fd[i]) != 0)
			CFAIL("connection %d survived proxy_free", i);
	return 0;
}

static void
test_free_live(void **state)
{
	struct fx	*fx = *state;
	int		 fd;

	fx->on_sync = free_on_sync;
	fx_fork(fx, child_free);
	assert_int_equal(fx_wait_child(fx), 0);
	assert_int_equal(fx->seen[0], 3);
	/* The port is free again. */
	fd = cl_connect(fx->port);
	if (fd != -1)
		close(fd);
	assert_int_equal(fd, -1);
}

static void
test_port_in_use(void **state)
{
	struct event_base	*base;
	struct sockaddr_storage	 ss;
	struct proxy		*p;
	socklen_t		 len;
	char			*cause, want[32];
	int			 fd, port;

	base = event_base_new();
	assert_non_null(base);
	sockaddr_loopback(&ss, &len, 0);
	fd = socket(AF_INET, SOCK_STREAM, 0);
	assert_int_equal(bind(fd, (struct sockaddr *)&ss, len), 0);
	assert_int_equal(listen(fd, 1), 0);
	assert_int_equal(getsockname(fd, (struct sockaddr *)&ss, &len), 0);
	port = ntohs(((struct sockaddr_in *)&ss)->sin_port);

	p = proxy_new(base, "127.0.0.1", port, pick, NULL, &cause);
	close(fd);
	assert_null(p);
	snprintf(want, sizeof(want), "127.0.0.1:%d: bind: ", port);
	print_message("cause: %s\n", cause);
	assert_non_null(strstr(cause, want));
	assert_non_null(strstr(cause, strerror(EADDRINUSE)));
	free(cause);

	p = proxy_new(base, "localhost", 0, pick, NULL, &cause);
	assert_null(p);
	assert_string_equal(cause,
	    "localhost: not a numeric IPv4 or IPv6 address");
	free(cause);

	p = proxy_new(base, "::1", 70000, pick, NULL, &cause);
	assert_null(p);
	assert_string_equal(cause, "::1: port must be 0..65535, got 70000");
	free(cause);
	event_base_free(base);
}

/* Open fds of this process (Linux /proc), -1 where unknown. */
static int
count_open_fds(void)
{
	DIR		*d;
	struct dirent	*de;
	int		 n = 0;

	if ((d = opendir("/proc/self/fd")) == NULL)
		return -1;
	while ((de = readdir(d)) != NULL)
		if (de->d_name[0] != '.')
			n++;
	closedir(d);
	return n - 1;	/* the directory's own */
}

static void
many_on_sync(struct fx *fx, char c)
{
	fx->seen[0] = proxy_count(fx->proxy);
}

static int
child_many(struct fx *fx)
{
	int	*fd, i, n = (int)fx->seen[1];

	fd = xcalloc((size_t)n, sizeof(*fd));
	for (i = 0; i < n; i++)
		if ((fd[i] = cl_connect(fx->port)) == -1)
			CFAIL("connect #%d: %s", i, strerror(errno));
	for (i = 0; i < n; i++)
		if (cl_cmd(fd[i], "PING", NULL) != 0)
			CFAIL("PING #%d", i);
	for (i = 0; i < n; i++)
		if (cl_expect(fd[i], "+PONG\r\n") != 0)
			CFAIL("PONG #%d", i);
	if (cl_sync(fx, 'n') != 0)
		CFAIL("sync");
	for (i = 0; i < n; i++)
		close(fd[i]);
	free(fd);
	return 0;
}

/* Thousands of pairs (as many as the fd limit allows, up to 1000). */
static void
test_many(void **state)
{
	struct fx	*fx = *state;
	struct rlimit	 rl;
	size_t		 n = MANY_CONNS;
	int		 fds;

	assert_int_equal(getrlimit(RLIMIT_NOFILE, &rl), 0);
	fx->saved_nofile = rl;
	if (rl.rlim_cur < 2 * n + 100 && rl.rlim_max > rl.rlim_cur) {
		rl.rlim_cur = rl.rlim_max < 2 * n + 100 ? rl.rlim_max :
		    2 * n + 100;
		if (setrlimit(RLIMIT_NOFILE, &rl) == 0)
			fx->rlimit_changed = 1;
		getrlimit(RLIMIT_NOFILE, &rl);
	}
	if (rl.rlim_cur < 2 * n + 100)
		n = (rl.rlim_cur - 100) / 2;
	print_message("%zu connections\n", n);
	fx->seen[1] = n;
	fx->on_sync = many_on_sync;
	fds = count_open_fds();
	fx_fork(fx, child_many);
	assert_int_equal(fx_wait_child(fx), 0);
	assert_int_equal(fx->seen[0], n);
	assert_true(fx_wait_idle(fx));
	assert_int_equal(proxy_accepted_total(fx->proxy), n);
	/* libevent closes a freed bufferevent's fd on the next loop turn. */
	event_base_loop(fx->base, EVLOOP_NONBLOCK);
	assert_int_equal(count_open_fds(), fds);
}

static int
child_emfile(struct fx *fx)
{
	int	 fd, attempt, ok = 0;

	/* We inherited the lowered limit; take ours back. */
	setrlimit(RLIMIT_NOFILE, &fx->saved_nofile);
	/*
	 * Natively the first connection waits in the backlog and is served.
	 * Under valgrind, which only pretends to lower the limit, the kernel
	 * accepts it and valgrind closes it again: connect once more.
	 */
	for (attempt = 0; attempt < 5 && !ok; attempt++) {
		if ((fd = cl_connect(fx->port)) == -1)
			CFAIL("connect: %s", strerror(errno));
		ok = cl_cmd(fd, "PING", NULL) == 0 &&
		    cl_expect(fd, "+PONG\r\n") == 0;
		close(fd);
	}
	if (!ok)
		CFAIL("PING once the proxy accepts again");
	return 0;
}

/*
 * Out of fds, accept() fails with EMFILE while the listen socket stays
 * readable; the proxy must back off instead of spinning, and accept the
 * waiting client once fds are available again.
 */
static void
test_emfile(void **state)
{
	struct fx	*fx = *state;
	struct rlimit	 rl;
	uint64_t	 until;
	int		 lowest, loops = 0, last = 0;

	/*
	 * A limit at the lowest free fd number: every fd below is taken, so
	 * the next accept() fails with EMFILE (fds above it stay usable).
	 */
	assert_int_equal(getrlimit(RLIMIT_NOFILE, &fx->saved_nofile), 0);
	lowest = open("/dev/null", O_RDONLY | O_CLOEXEC);
	assert_true(lowest != -1);
	close(lowest);
	rl = fx->saved_nofile;
	rl.rlim_cur = (rlim_t)lowest;
	if (setrlimit(RLIMIT_NOFILE, &rl) != 0) {
		print_message("setrlimit: %s, skipping\n", strerror(errno));
		skip();
	}
	fx->rlimit_changed = 1;
	fx_fork(fx, child_emfile);

	/* Wait for the child's connection to hit EMFILE ... */
	until = clock_mono_ms() + CHILD_TIMEOUT_MS;
	while (proxy_accept_errors(fx->proxy, NULL) == 0 &&
	    clock_mono_ms() < until)
		event_base_loop(fx->base, EVLOOP_ONCE);
	/* ... then count loop turns while it waits in the backlog. */
	until = clock_mono_ms() + 300;
	while (clock_mono_ms() < until) {
		event_base_loop(fx->base, EVLOOP_ONCE);
		loops++;
	}
	proxy_accept_errors(fx->proxy, &last);
	print_message("%d loop turns in 300 ms, %llu accept errors\n", loops,
	    (unsigned long long)proxy_accept_errors(fx->proxy, NULL));

	setrlimit(RLIMIT_NOFILE, &fx->saved_nofile);
	fx->rlimit_changed = 0;

	assert_int_equal(fx_wait_child(fx), 0);
	assert_true(proxy_accept_errors(fx->proxy, NULL) >= 1);
	assert_int_equal(last, EMFILE);
	/* A 5 ms tick gives ~60 turns; a spinning loop gives thousands. */
	assert_true(loops < 1000);
	assert_true(fx_wait_idle(fx));
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_port_in_use),
		cmocka_unit_test_setup_teardown(test_forward, fx_setup,
		    fx_teardown),
		cmocka_unit_test_setup_teardown(test_forward_unix, fx_setup,
		    fx_teardown),
		cmocka_unit_test_setup_teardown(test_refuse, fx_setup,
		    fx_teardown),
		cmocka_unit_test_setup_teardown(test_upstream_down, fx_setup,
		    fx_teardown),
		cmocka_unit_test_setup_teardown(test_upstream_missing_path,
		    fx_setup, fx_teardown),
		cmocka_unit_test_setup_teardown(test_drop_target, fx_setup,
		    fx_teardown),
		cmocka_unit_test_setup_teardown(test_paused, fx_setup,
		    fx_teardown),
		cmocka_unit_test_setup_teardown(test_big_value, fx_setup,
		    fx_teardown),
		cmocka_unit_test_setup_teardown(test_early_close, fx_setup,
		    fx_teardown),
		cmocka_unit_test_setup_teardown(test_upstream_close, fx_setup,
		    fx_teardown),
		cmocka_unit_test_setup_teardown(test_free_live, fx_setup,
		    fx_teardown),
		cmocka_unit_test_setup_teardown(test_many, fx_setup,
		    fx_teardown),
		cmocka_unit_test_setup_teardown(test_emfile, fx_setup,
		    fx_teardown),
	};

	return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
