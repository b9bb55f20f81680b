/*
 * The asynchronous Redis connection against real redis-server processes
 * on unix sockets in a private directory: a plain one (with DEBUG enabled,
 * for DEBUG SLEEP) and one with requirepass, started once for the group
 * and stopped by pid at the end, also when a case fails; the case that
 * kills a server starts its own. Every case counts callbacks: each command
 * must be answered exactly once, or never after rconn_free().
 *
 * Run it under valgrind --leak-check=full and with the sanitizers too: the
 * failure and free paths are where hiredis's re-entrancy bites.
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
#include <unistd.h>

#include <cmocka.h>

#include <event2/event.h>
#include <hiredis/hiredis.h>

#include "local/rconn.h"
#include "util.h"

#define WAIT_MS		10000	/* generous: valgrind is slow */
#define CMD_MS		5000	/* a command timeout that must not fire */
#define PASSWORD	"s3cret-pw"
#define PIPELINE	1000

struct server {
	pid_t	 pid;
	char	*sock;
	char	*log;
};

static char		 tmpdir[] = "/tmp/test_rconn.XXXXXX";
static bool		 have_tmpdir;
static const char	*redis_bin = "/usr/bin/redis-server";
static struct server	 plain, authed, victim;
static struct event_base *base;
static struct event	*tick;		/* keeps EVLOOP_ONCE short */
static int		 seq;		/* order of callbacks */

/* What one command's callback saw. */
struct call {
	int		 n;		/* times called */
	int		 order;		/* seq when called */
	bool		 reply;
	int		 type;
	long long	 integer;
	char		 str[256];
	size_t		 len;
	char		 err[256];
	uint64_t	 at_ms;
	struct rconn	*free_rc;	/* rconn_free this when called */
};

/* ---- servers ---- */

/* Start redis-server on DIR/name.sock; 0, or -1 after printing why. */
static int
server_start(struct server *s, const char *name, const char *password)
{
	char		*argv[32];
	int		 argc = 0, fd, status;
	uint64_t	 deadline;
	struct sockaddr_un sa;

	xasprintf(&s->sock, "%s/%s.sock", tmpdir, name);
	xasprintf(&s->log, "%s/%s.log", tmpdir, name);
	argv[argc++] = (char *)redis_bin;
	argv[argc++] = "--port";
	argv[argc++] = "0";
	argv[argc++] = "--unixsocket";
	argv[argc++] = s->sock;
	argv[argc++] = "--unixsocketperm";
	argv[argc++] = "700";
	argv[argc++] = "--save";
	argv[argc++] = "";
	argv[argc++] = "--appendonly";
	argv[argc++] = "no";
	argv[argc++] = "--daemonize";
	argv[argc++] = "no";
	argv[argc++] = "--enable-debug-command";
	argv[argc++] = "yes";
	argv[argc++] = "--dir";
	argv[argc++] = tmpdir;
	if (password != NULL) {
		argv[argc++] = "--requirepass";
		argv[argc++] = (char *)password;
	}
	argv[argc] = NULL;

	if ((s->pid = fork()) == -1) {
		print_error("fork: %s\n", strerror(errno));
		return -1;
	}
	if (s->pid == 0) {
#ifdef __linux__
		prctl(PR_SET_PDEATHSIG, SIGKILL);
#endif
		if ((fd = open(s->log, O_WRONLY | O_CREAT | O_TRUNC, 0600))
		    != -1) {
			dup2(fd, 1);
			dup2(fd, 2);
		}
		execv(redis_bin, argv);
		_exit(127);
	}

	/* Ready when the socket accepts a connection. */
	memset(&sa, 0, sizeof sa);
	sa.sun_family = AF_UNIX;
	snprintf(sa.sun_path, sizeof sa.sun_path, "%s", s->sock);
	deadline = clock_mono_ms() + WAIT_MS;
	for (;;) {
		if (waitpid(s->pid, &status, WNOHANG) == s->pid) {
			s->pid = 0;
			print_error("%s exited at start; see %s\n", name,
			    s->log);
			return -1;
		}
		if ((fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0)) ==
		    -1)
			return -1;
		if (connect(fd, (struct sockaddr *)&sa, sizeof sa) == 0) {
			close(fd);
			return 0;
		}
		close(fd);
		if (clock_mono_ms() > deadline) {
			print_error("%s: no socket after %d ms\n", name,
			    WAIT_MS);
			return -1;
		}
		usleep(10 * 1000);
	}
}

static void
server_stop(struct server *s)
{
	if (s->pid > 0) {
		kill(s->pid, SIGCONT);
		kill(s->pid, SIGTERM);
		waitpid(s->pid, NULL, 0);
		s->pid = 0;
	}
	free(s->sock);
	free(s->log);
	s->sock = s->log = NULL;
}

static void
tmpdir_remove(void)
{
	DIR		*d;
	struct dirent	*de;
	char		*p;

	if (!have_tmpdir || (d = opendir(tmpdir)) == NULL)
		return;
	while ((de = readdir(d)) != NULL) {
		if (strcmp(de->d_name, ".") == 0 ||
		    strcmp(de->d_name, "..") == 0)
			continue;
		xasprintf(&p, "%s/%s", tmpdir, de->d_name);
		unlink(p);
		free(p);
	}
	closedir(d);
	rmdir(tmpdir);
	have_tmpdir = false;
}

static int
group_teardown(void **state)
{
	server_stop(&plain);
	server_stop(&authed);
	server_stop(&victim);
	tmpdir_remove();
	return 0;
}

/* cmocka skips the group teardown when this fails: clean up here. */
static int
group_setup(void **state)
{
	if (mkdtemp(tmpdir) == NULL)
		return -1;
	have_tmpdir = true;
	if (server_start(&plain, "plain", NULL) != 0 ||
	    server_start(&authed, "auth", PASSWORD) != 0) {
		group_teardown(state);
		return -1;
	}
	return 0;
}

/* ---- the loop ---- */

static void
tick_fire(evutil_socket_t fd, short what, void *arg)
{
}

static int
setup(void **state)
{
	struct timeval	 tv = { 0, 10 * 1000 };

	base = event_base_new();
	tick = event_new(base, -1, EV_PERSIST, tick_fire, NULL);
	event_add(tick, &tv);
	seq = 0;
	return 0;
}

/* Let deferred frees run, then free the base. */
static int
teardown(void **state)
{
	event_free(tick);
	tick = NULL;
	event_base_loop(base, EVLOOP_NONBLOCK);
	event_base_free(base);
	base = NULL;
	return 0;
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

/* Run the loop for ms milliseconds. */
static void
run_for(unsigned int ms)
{
	int	 never = 0;

	run_until(&never, 1, ms);
}

/* ---- callbacks ---- */

static void
record(struct rconn *rc, struct redisReply *reply, const char *err,
    void *arg)
{
	struct call	*c = arg;

	c->n++;
	c->order = ++seq;
	c->at_ms = clock_mono_ms();
	c->reply = reply != NULL;
	/* Exactly one of reply and err. */
	assert_true((reply == NULL) != (err == NULL));
	if (reply != NULL) {
		c->type = reply->type;
		c->integer = reply->integer;
		if (reply->str != NULL) {
			c->len = reply->len;
			memcpy(c->str, reply->str, reply->len < sizeof c->str ?
			    reply->len : sizeof c->str - 1);
		}
	} else
		snprintf(c->err, sizeof c->err, "%s", err);
	if (c->free_rc != NULL)
		rconn_free(c->free_rc);
}

static void
assert_reply(const struct call *c, int type, const char *str)
{
	if (c->n != 1 || !c->reply || c->type != type ||
	    (str != NULL && strcmp(c->str, str) != 0))
		fail_msg("want 1 call with reply type %d \"%s\", got %d "
		    "call(s): reply %d type %d \"%s\" err \"%s\"", type,
		    str ? str : "", c->n, c->reply, c->type, c->str, c->err);
}

/* One call, with an error starting with prefix. */
static void
assert_err(const struct call *c, const char *prefix)
{
	if (c->n != 1 || c->reply ||
	    strncmp(c->err, prefix, strlen(prefix)) != 0)
		fail_msg("want 1 call with error \"%s...\", got %d call(s): "
		    "reply %d \"%s\" err \"%s\"", prefix, c->n, c->reply,
		    c->str, c->err);
}

static void
assert_prefix(const char *s, const char *prefix)
{
	if (s == NULL || strncmp(s, prefix, strlen(prefix)) != 0)
		fail_msg("want \"%s...\", got \"%s\"", prefix,
		    s ? s : "(null)");
}

/* ---- cases ---- */

static void
test_roundtrip(void **state)
{
	struct rconn	*rc = rconn_new(base, plain.sock, NULL, 1000);
	struct call	 c[5] = { 0 };
	const char	*argv[] = { "SET", "bin", "a\0b" };
	size_t		 argvlen[] = { 3, 3, 3 };

	assert_true(rconn_ok(rc));
	assert_null(rconn_error(rc));
	assert_int_equal(rconn_command(rc, CMD_MS, record, &c[0], "PING"), 0);
	assert_int_equal(rconn_command(rc, CMD_MS, record, &c[1],
	    "SET %s %s", "k", "hello world"), 0);
	assert_int_equal(rconn_command(rc, CMD_MS, record, &c[2], "GET %s",
	    "k"), 0);
	assert_int_equal(rconn_commandargv(rc, CMD_MS, record, &c[3], 3, argv,
	    argvlen), 0);
	assert_int_equal(rconn_command(rc, CMD_MS, record, &c[4], "GET %b",
	    "bin", (size_t)3), 0);
	assert_true(run_until(&c[4].n, 1, WAIT_MS));
	assert_reply(&c[0], REDIS_REPLY_STATUS, "PONG");
	assert_reply(&c[1], REDIS_REPLY_STATUS, "OK");
	assert_reply(&c[2], REDIS_REPLY_STRING, "hello world");
	assert_reply(&c[3], REDIS_REPLY_STATUS, "OK");
	assert_reply(&c[4], REDIS_REPLY_STRING, NULL);
	assert_int_equal(c[4].len, 3);
	assert_memory_equal(c[4].str, "a\0b", 3);
	assert_true(rconn_ok(rc));
	assert_true(rconn_ready(rc));
	rconn_free(rc);
}

struct pipe_state {
	int	 next;		/* the ECHO expected next */
	int	 bad;
};

static void
pipe_done(struct rconn *rc, struct redisReply *reply, const char *err,
    void *arg)
{
	struct pipe_state	*ps = arg;
	char			 want[16];

	snprintf(want, sizeof want, "%d", ps->next);
	if (reply == NULL || reply->type != REDIS_REPLY_STRING ||
	    strcmp(reply->str, want) != 0) {
		if (ps->bad++ == 0)
			print_error("reply %d: %s\n", ps->next,
			    reply ? reply->str : err);
	}
	ps->next++;
}

static void
test_pipeline(void **state)
{
	struct rconn		*rc = rconn_new(base, plain.sock, NULL, 1000);
	struct pipe_state	 ps = { 0, 0 };
	int			 i;

	for (i = 0; i < PIPELINE; i++)
		assert_int_equal(rconn_command(rc, CMD_MS, pipe_done, &ps,
		    "ECHO %d", i), 0);
	assert_true(run_until(&ps.next, PIPELINE, WAIT_MS));
	run_for(50);
	assert_int_equal(ps.next, PIPELINE);
	assert_int_equal(ps.bad, 0);
	assert_true(rconn_ok(rc));
	rconn_free(rc);
}

static void
test_error_reply(void **state)
{
	struct rconn	*rc = rconn_new(base, plain.sock, NULL, 1000);
	struct call	 c[4] = { 0 };

	rconn_command(rc, CMD_MS, record, &c[0], "SET %s %s", "str", "x");
	rconn_command(rc, CMD_MS, record, &c[1], "INCR %s", "str");
	rconn_command(rc, CMD_MS, record, &c[2], "NOSUCHCOMMAND");
	rconn_command(rc, CMD_MS, record, &c[3], "PING");
	assert_true(run_until(&c[3].n, 1, WAIT_MS));
	assert_reply(&c[1], REDIS_REPLY_ERROR, NULL);
	assert_prefix(c[1].str, "ERR value is not an integer");
	assert_reply(&c[2], REDIS_REPLY_ERROR, NULL);
	assert_prefix(c[2].str, "ERR unknown command");
	assert_reply(&c[3], REDIS_REPLY_STATUS, "PONG");
	assert_true(c[1].order < c[2].order && c[2].order < c[3].order);
	assert_true(rconn_ok(rc));
	rconn_free(rc);
}

/* After DEBUG SLEEP, wait until the plain server answers again. */
static void
plain_wait_awake(void)
{
	struct rconn	*rc = rconn_new(base, plain.sock, NULL, 1000);
	struct call	 c = { 0 };

	assert_int_equal(rconn_command(rc, 3000, record, &c, "PING"), 0);
	assert_true(run_until(&c.n, 1, WAIT_MS));
	assert_reply(&c, REDIS_REPLY_STATUS, "PONG");
	rconn_free(rc);
}

static void
test_command_timeout(void **state)
{
	struct rconn	*rc = rconn_new(base, plain.sock, NULL, 1000);
	struct call	 c[4] = { 0 };
	uint64_t	 t0;

	/* Answered before the sleep: never touched by the timeout. */
	rconn_command(rc, CMD_MS, record, &c[0], "PING");
	assert_true(run_until(&c[0].n, 1, WAIT_MS));
	assert_reply(&c[0], REDIS_REPLY_STATUS, "PONG");

	t0 = clock_mono_ms();
	assert_int_equal(rconn_command(rc, 200, record, &c[1],
	    "DEBUG SLEEP 1"), 0);
	assert_int_equal(rconn_command(rc, CMD_MS, record, &c[2], "PING"), 0);
	assert_int_equal(rconn_command(rc, 0, record, &c[3], "GET k"), 0);
	assert_true(run_until(&c[3].n, 1, WAIT_MS));
	assert_err(&c[1], "timeout");
	assert_err(&c[2], "timeout");
	assert_err(&c[3], "timeout");
	assert_string_equal(c[1].err, "timeout");
	assert_true(c[1].order < c[2].order && c[2].order < c[3].order);
	if (c[1].at_ms - t0 < 190 || c[1].at_ms - t0 > 900)
		fail_msg("timeout after %llu ms, want 200",
		    (unsigned long long)(c[1].at_ms - t0));
	assert_false(rconn_ok(rc));
	assert_false(rconn_ready(rc));
	assert_string_equal(rconn_error(rc), "timeout");
	assert_int_equal(rconn_command(rc, CMD_MS, record, &c[0], "PING"),
	    -ENOTCONN);

	/* The late answer to DEBUG SLEEP goes nowhere. */
	run_for(1200);
	assert_int_equal(c[0].n + c[1].n + c[2].n + c[3].n, 4);
	rconn_free(rc);
	plain_wait_awake();
}

static void
test_connect_fail(void **state)
{
	struct rconn		*rc;
	struct call		 c = { 0 };
	struct sockaddr_un	 sa;
	char			*path, *longpath;
	int			 fd;

	/* No such socket. */
	xasprintf(&path, "%s/missing.sock", tmpdir);
	rc = rconn_new(base, path, NULL, 1000);
	assert_false(rconn_ok(rc));
	assert_prefix(rconn_error(rc),
	    "connect failed: No such file or directory");
	assert_int_equal(rconn_command(rc, CMD_MS, record, &c, "PING"),
	    -ENOTCONN);
	rconn_free(rc);
	free(path);

	/* A socket nobody listens on. */
	xasprintf(&path, "%s/deaf.sock", tmpdir);
	memset(&sa, 0, sizeof sa);
	sa.sun_family = AF_UNIX;
	snprintf(sa.sun_path, sizeof sa.sun_path, "%s", path);
	fd = socket(AF_UNIX, SOCK_STREAM, 0);
	assert_int_equal(bind(fd, (struct sockaddr *)&sa, sizeof sa), 0);
	rc = rconn_new(base, path, PASSWORD, 1000);
	assert_false(rconn_ok(rc));
	assert_prefix(rconn_error(rc), "connect failed: Connection refused");
	assert_int_equal(rconn_commandargv(rc, CMD_MS, record, &c, 1,
	    (const char *[]){ "PING" }, NULL), -ENOTCONN);
	run_for(50);
	rconn_free(rc);
	close(fd);
	unlink(path);
	free(path);

	/* Too long for sun_path: hiredis would truncate it silently. */
	xasprintf(&longpath, "%s/%0200d.sock", tmpdir, 0);
	rc = rconn_new(base, longpath, NULL, 1000);
	assert_false(rconn_ok(rc));
	assert_string_equal(rconn_error(rc),
	    "connect failed: socket path too long");
	rconn_free(rc);
	free(longpath);
	assert_int_equal(c.n, 0);
}

static void
test_connect_timeout(void **state)
{
	struct rconn	*rc;
	struct call	 c[2] = { 0 };
	uint64_t	 t0 = clock_mono_ms();

	/* A stopped server still accepts into its backlog; AUTH hangs. */
	assert_int_equal(kill(authed.pid, SIGSTOP), 0);
	rc = rconn_new(base, authed.sock, PASSWORD, 200);
	assert_true(rconn_ok(rc));
	assert_false(rconn_ready(rc));
	rconn_command(rc, CMD_MS, record, &c[0], "PING");
	rconn_command(rc, 0, record, &c[1], "PING");
	run_until(&c[1].n, 1, WAIT_MS);
	kill(authed.pid, SIGCONT);
	assert_err(&c[0], "connect timeout");
	assert_err(&c[1], "connect timeout");
	if (c[0].at_ms - t0 < 190 || c[0].at_ms - t0 > 900)
		fail_msg("connect timeout after %llu ms, want 200",
		    (unsigned long long)(c[0].at_ms - t0));
	assert_false(rconn_ok(rc));
	assert_string_equal(rconn_error(rc), "connect timeout");
	rconn_free(rc);
}

static void
test_auth_ok(void **state)
{
	struct rconn	*rc = rconn_new(base, authed.sock, PASSWORD, 1000);
	struct call	 c[2] = { 0 };

	rconn_command(rc, CMD_MS, record, &c[0], "PING");
	rconn_command(rc, CMD_MS, record, &c[1], "SET %s %s", "a", "1");
	assert_true(run_until(&c[1].n, 1, WAIT_MS));
	assert_reply(&c[0], REDIS_REPLY_STATUS, "PONG");
	assert_reply(&c[1], REDIS_REPLY_STATUS, "OK");
	assert_true(rconn_ready(rc));
	rconn_free(rc);
}

static void
test_auth_wrong(void **state)
{
	struct rconn	*rc = rconn_new(base, authed.sock, "hunter2", 1000);
	struct call	 c[2] = { 0 };

	rconn_command(rc, CMD_MS, record, &c[0], "PING");
	rconn_command(rc, CMD_MS, record, &c[1], "GET a");
	assert_true(run_until(&c[1].n, 1, WAIT_MS));
	assert_err(&c[0], "auth failed: WRONGPASS");
	assert_err(&c[1], "auth failed: WRONGPASS");
	assert_null(strstr(c[0].err, "hunter2"));
	assert_false(rconn_ok(rc));
	assert_prefix(rconn_error(rc), "auth failed: ");
	/* The NOAUTH replies to PING and GET are swallowed. */
	run_for(100);
	assert_int_equal(c[0].n + c[1].n, 2);
	rconn_free(rc);
}

/* A password the server does not want is refused just the same. */
static void
test_auth_unwanted(void **state)
{
	struct rconn	*rc = rconn_new(base, plain.sock, PASSWORD, 1000);
	struct call	 c = { 0 };

	rconn_command(rc, CMD_MS, record, &c, "PING");
	assert_true(run_until(&c.n, 1, WAIT_MS));
	assert_err(&c, "auth failed: ERR");
	assert_null(strstr(c.err, PASSWORD));
	rconn_free(rc);
}

/*
 * No password where one is required: the connection is fine, and each
 * command gets Redis's NOAUTH error as its reply.
 */
static void
test_auth_missing(void **state)
{
	struct rconn	*rc = rconn_new(base, authed.sock, NULL, 1000);
	struct call	 c = { 0 };

	rconn_command(rc, CMD_MS, record, &c, "PING");
	assert_true(run_until(&c.n, 1, WAIT_MS));
	assert_reply(&c, REDIS_REPLY_ERROR, NULL);
	assert_prefix(c.str, "NOAUTH");
	assert_true(rconn_ok(rc));
	rconn_free(rc);
}

static void
kill_fire(evutil_socket_t fd, short what, void *arg)
{
	struct server	*s = arg;

	kill(s->pid, SIGKILL);
	waitpid(s->pid, NULL, 0);
	s->pid = 0;
}

static void
test_server_killed(void **state)
{
	struct rconn	*busy, *idle;
	struct call	 c[3] = { 0 };
	struct timeval	 tv = { 0, 100 * 1000 };

	assert_int_equal(server_start(&victim, "victim", NULL), 0);
	busy = rconn_new(base, victim.sock, NULL, 1000);
	idle = rconn_new(base, victim.sock, NULL, 1000);
	rconn_command(idle, CMD_MS, record, &c[2], "PING");
	assert_true(run_until(&c[2].n, 1, WAIT_MS));
	assert_true(rconn_ready(idle));

	/* BLPOP holds the connection; PING waits behind it. */
	rconn_command(busy, CMD_MS, record, &c[0], "BLPOP nolist 0");
	rconn_command(busy, CMD_MS, record, &c[1], "PING");
	event_base_once(base, -1, EV_TIMEOUT, kill_fire, &victim, &tv);
	run_until(&c[1].n, 1, WAIT_MS);
	server_stop(&victim);
	assert_err(&c[0], "connection closed");
	assert_err(&c[1], "connection closed");
	assert_false(rconn_ok(busy));

	/* With nothing pending the EOF alone fails the connection. */
	run_for(100);
	assert_false(rconn_ok(idle));
	assert_prefix(rconn_error(idle), "connection closed");
	assert_int_equal(c[2].n, 1);
	rconn_free(busy);
	rconn_free(idle);
}

/* Freed from its first reply: the others are never called. */
static void
test_free_in_reply(void **state)
{
	struct rconn	*rc = rconn_new(base, plain.sock, NULL, 1000);
	struct call	 c[3] = { 0 };

	c[0].free_rc = rc;
	rconn_command(rc, CMD_MS, record, &c[0], "PING");
	rconn_command(rc, CMD_MS, record, &c[1], "PING");
	rconn_command(rc, 100, record, &c[2], "PING");
	assert_true(run_until(&c[0].n, 1, WAIT_MS));
	run_for(300);
	assert_reply(&c[0], REDIS_REPLY_STATUS, "PONG");
	assert_int_equal(c[1].n, 0);
	assert_int_equal(c[2].n, 0);
}

/* Freed from the first of several failure callbacks. */
static void
test_free_in_failure(void **state)
{
	struct rconn	*rc = rconn_new(base, plain.sock, NULL, 1000);
	struct call	 c[3] = { 0 };

	c[0].free_rc = rc;
	rconn_command(rc, 100, record, &c[0], "DEBUG SLEEP 0.5");
	rconn_command(rc, CMD_MS, record, &c[1], "PING");
	rconn_command(rc, CMD_MS, record, &c[2], "PING");
	assert_true(run_until(&c[0].n, 1, WAIT_MS));
	run_for(700);
	assert_err(&c[0], "timeout");
	assert_int_equal(c[1].n, 0);
	assert_int_equal(c[2].n, 0);
	plain_wait_awake();
}

/* Freed from an AUTH failure callback, inside hiredis's reply loop. */
static void
test_free_in_auth_failure(void **state)
{
	struct rconn	*rc = rconn_new(base, authed.sock, "wrong", 1000);
	struct call	 c[2] = { 0 };

	c[0].free_rc = rc;
	rconn_command(rc, CMD_MS, record, &c[0], "PING");
	rconn_command(rc, CMD_MS, record, &c[1], "PING");
	assert_true(run_until(&c[0].n, 1, WAIT_MS));
	run_for(100);
	assert_err(&c[0], "auth failed: ");
	assert_int_equal(c[1].n, 0);
}

/* Freed from outside with commands in flight: silence. */
static void
test_free_pending(void **state)
{
	struct rconn	*rc = rconn_new(base, plain.sock, NULL, 1000);
	struct call	 c[3] = { 0 };

	/* Sent, and answered after the free and after the timeout. */
	rconn_command(rc, 150, record, &c[0], "BLPOP nolist 0.3");
	rconn_command(rc, CMD_MS, record, &c[1], "PING");
	run_for(50);
	assert_true(rconn_ready(rc));
	rconn_free(rc);
	rconn_free(NULL);
	run_for(500);
	assert_int_equal(c[0].n + c[1].n, 0);

	/* And before anything ran at all, with AUTH queued. */
	rc = rconn_new(base, authed.sock, PASSWORD, 100);
	rconn_command(rc, 100, record, &c[2], "PING");
	rconn_free(rc);
	run_for(300);
	assert_int_equal(c[2].n, 0);
}

struct chain {
	struct rconn	*rc;
	int		 left;
	int		 done;
};

/* Each reply sends the next command from inside the callback. */
static void
chain_next(struct rconn *rc, struct redisReply *reply, const char *err,
    void *arg)
{
	struct chain	*ch = arg;

	assert_non_null(reply);
	if (ch->left-- > 0)
		assert_int_equal(rconn_command(rc, CMD_MS, chain_next, ch,
		    "INCR chain"), 0);
	else
		ch->done = 1;
}

static void
test_command_from_callback(void **state)
{
	struct chain	 ch = { NULL, 50, 0 };

	ch.rc = rconn_new(base, plain.sock, NULL, 1000);
	assert_int_equal(rconn_command(ch.rc, CMD_MS, chain_next, &ch,
	    "DEL chain"), 0);
	assert_true(run_until(&ch.done, 1, WAIT_MS));
	assert_true(rconn_ok(ch.rc));
	rconn_free(ch.rc);
}

static void
test_refused_commands(void **state)
{
	struct rconn	*rc = rconn_new(base, plain.sock, NULL, 1000);
	struct call	 c = { 0 };
	const char	*argv[] = { "MONITOR" };

	assert_int_equal(rconn_command(rc, CMD_MS, record, &c,
	    "SUBSCRIBE ch"), -ENOTSUP);
	assert_int_equal(rconn_command(rc, CMD_MS, record, &c,
	    "psubscribe ch*"), -ENOTSUP);
	assert_int_equal(rconn_command(rc, CMD_MS, record, &c,
	    "UNSUBSCRIBE"), -ENOTSUP);
	assert_int_equal(rconn_commandargv(rc, CMD_MS, record, &c, 1, argv,
	    NULL), -ENOTSUP);
	assert_int_equal(rconn_command(rc, CMD_MS, record, &c, ""), -EINVAL);
	assert_int_equal(rconn_commandargv(rc, CMD_MS, record, &c, 0, argv,
	    NULL), -EINVAL);
	/* Commands that merely start with "p" are fine. */
	assert_int_equal(rconn_command(rc, CMD_MS, record, &c, "PING"), 0);
	assert_true(run_until(&c.n, 1, WAIT_MS));
	assert_reply(&c, REDIS_REPLY_STATUS, "PONG");
	rconn_free(rc);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_roundtrip, setup,
		    teardown),
		cmocka_unit_test_setup_teardown(test_pipeline, setup, teardown),
		cmocka_unit_test_setup_teardown(test_error_reply, setup,
		    teardown),
		cmocka_unit_test_setup_teardown(test_command_timeout, setup,
		    teardown),
		cmocka_unit_test_setup_teardown(test_connect_fail, setup,
		    teardown),
		cmocka_unit_test_setup_teardown(test_connect_timeout, setup,
		    teardown),
		cmocka_unit_test_setup_teardown(test_auth_ok, setup, teardown),
		cmocka_unit_test_setup_teardown(test_auth_wrong, setup,
		    teardown),
		cmocka_unit_test_setup_teardown(test_auth_unwanted, setup,
		    teardown),
		cmocka_unit_test_setup_teardown(test_auth_missing, setup,
		    teardown),
		cmocka_unit_test_setup_teardown(test_server_killed, setup,
		    teardown),
		cmocka_unit_test_setup_teardown(test_free_in_reply, setup,
		    teardown),
		cmocka_unit_test_setup_teardown(test_free_in_failure, setup,
		    teardown),
		cmocka_unit_test_setup_teardown(test_free_in_auth_failure,
		    setup, teardown),
		cmocka_unit_test_setup_teardown(test_free_pending, setup,
		    teardown),
		cmocka_unit_test_setup_teardown(test_command_from_callback,
		    setup, teardown),
		cmocka_unit_test_setup_teardown(test_refused_commands, setup,
		    teardown),
	};
	const char	*bin;

	if ((bin = getenv("CK_REDIS_SERVER")) != NULL)
		redis_bin = bin;
	if (access(redis_bin, X_OK) != 0) {
		printf("SKIP: no %s\n", redis_bin);
		return 77;
	}
	/* hiredis writes with write(2): a dead server must not kill us. */
	signal(SIGPIPE, SIG_IGN);
	return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
