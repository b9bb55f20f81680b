/*
 * One asynchronous Redis connection over a unix socket, on hiredis 0.14.1's
 * async API and its libevent adapter, with the timeouts that version lacks.
 *
 * Every command is a struct rconn_cmd, hiredis's privdata for its reply
 * callback. hiredis calls that callback exactly once per command: with the
 * reply, or with NULL from __redisAsyncFree() when the context goes away,
 * whoever frees it. The user's callback is called at most once, marked by
 * cmd->done; the struct itself is freed only in hiredis's callback, so
 * hiredis never holds a dangling privdata. Commands whose user callback
 * is still due sit in rc->cmds in the order they were sent, which is the
 * order their replies come back in.
 *
 * hiredis 0.14.1 rules this file lives by (see async.c of that version):
 * - The context must not be freed from inside one of its callbacks.
 *   onConnect runs without REDIS_IN_CALLBACK, and onDisconnect runs from
 *   inside __redisAsyncFree(), so redisAsyncFree() there is a use after
 *   free or a double free. We only free it from our own timer callbacks
 *   (teardown_ev), or from rconn_free() when none of rc's callbacks is on
 *   the stack (rc->busy == 0).
 * - hiredis frees the context itself when the connection breaks (EOF, I/O
 *   or protocol error) and when an asynchronous connect fails (onConnect
 *   with REDIS_ERR, no onDisconnect then). A NULL reply or either of those
 *   callbacks while rc->ac is still set means exactly that, so rc forgets
 *   the pointer there.
 * - redisAsyncDisconnect() waits for every pending reply, which a hung
 *   server never sends: a failure frees the context instead, which is why
 *   every pending command is failed first.
 * - A command starting with "p" has that letter stripped before hiredis
 *   looks for SUBSCRIBE, UNSUBSCRIBE and MONITOR; those never get exactly
 *   one reply, so they are refused before hiredis sees them. An empty
 *   command trips an assert() in hiredis, so it is refused too.
 */
#include "config.h"

#include <sys/queue.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/un.h>

#include <errno.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <event2/event.h>
#include <event2/event_struct.h>
#include <hiredis/hiredis.h>
#include <hiredis/async.h>
#include <hiredis/adapters/libevent.h>

#include "log.h"
#include "rconn.h"
#include "util.h"

enum rconn_state {
	RCONN_CONNECTING,	/* socket connecting, or AUTH unanswered */
	RCONN_READY,
	RCONN_FAILED,
};

struct rconn_cmd {
	TAILQ_ENTRY(rconn_cmd)	 entry;		/* in rc->cmds while !done */
	struct rconn		*rc;
	rconn_cb		 cb;
	void			*arg;
	struct event		 timer;
	bool			 timed;		/* timer assigned */
	bool			 done;		/* cb called or cancelled */
};
TAILQ_HEAD(rconn_cmds, rconn_cmd);

struct rconn {
	struct event_base	*base;
	char			*path;
	redisAsyncContext	*ac;		/* NULL once freed, by anyone */
	enum rconn_state	 state;
	char			*error;		/* why it failed */
	char			*password;	/* until AUTH is answered */
	struct rconn_cmds	 cmds;
	struct event		 connect_ev;
	struct event		 teardown_ev;
	int			 busy;		/* our callbacks on the stack */
	bool			 freeing;
};

static void	rconn_fail(struct rconn *, const char *, ...)
		    __attribute__((format(printf, 2, 3)));

/* Forget the password, wiping it from memory. */
static void
rconn_password_wipe(struct rconn *rc)
{
	if (rc->password == NULL)
		return;
	explicit_bzero(rc->password, strlen(rc->password));
	free(rc->password);
	rc->password = NULL;
}

/* Take cmd off the pending list and call its callback, once. */
static void
rconn_cmd_finish(struct rconn_cmd *cmd, redisReply *reply, const char *err)
{
	struct rconn	*rc = cmd->rc;

	TAILQ_REMOVE(&rc->cmds, cmd, entry);
	cmd->done = true;
	if (cmd->timed)
		evtimer_del(&cmd->timer);
	rc->busy++;
	cmd->cb(rc, reply, err, cmd->arg);
	rc->busy--;
}

/* Cancel every pending command without calling it. */
static void
rconn_cmds_cancel(struct rconn *rc)
{
	struct rconn_cmd	*cmd;

	while ((cmd = TAILQ_FIRST(&rc->cmds)) != NULL) {
		TAILQ_REMOVE(&rc->cmds, cmd, entry);
		cmd->done = true;
		if (cmd->timed)
			evtimer_del(&cmd->timer);
	}
}

/*
 * Mark rc failed for good, call every pending command back with the
 * reason in order, and close the socket on the next loop turn (we may be
 * inside a hiredis callback here).
 */
static void
rconn_fail(struct rconn *rc, const char *fmt, ...)
{
	va_list	 ap;

	if (rc->state == RCONN_FAILED || rc->freeing)
		return;
	rc->state = RCONN_FAILED;
	va_start(ap, fmt);
	xvasprintf(&rc->error, fmt, ap);
	va_end(ap);
	log_debug("redis connection %s: %s", rc->path, rc->error);
	evtimer_del(&rc->connect_ev);
	rconn_password_wipe(rc);
	if (rc->ac != NULL)
		event_active(&rc->teardown_ev, EV_TIMEOUT, 1);

	rc->busy++;
	while (!TAILQ_EMPTY(&rc->cmds))
		rconn_cmd_finish(TAILQ_FIRST(&rc->cmds), NULL, rc->error);
	rc->busy--;
}

/* Fail rc for the error hiredis recorded on ac before freeing it. */
static void
rconn_fail_ac(struct rconn *rc, const redisAsyncContext *ac)
{
	const char	*why = ac->c.errstr;

	switch (ac->c.err) {
	case 0:
	case REDIS_ERR_EOF:
		rconn_fail(rc, "connection closed");
		break;
	case REDIS_ERR_PROTOCOL:
		rconn_fail(rc, "protocol error: %s", why);
		break;
	case REDIS_ERR_OOM:
		rconn_fail(rc, "connection closed: out of memory");
		break;
	default:	/* I/O error, or an error reply with no command */
		rconn_fail(rc, "connection closed: %s", why);
		break;
	}
}

static void
rconn_set_ready(struct rconn *rc)
{
	if (rc->state != RCONN_CONNECTING)
		return;
	rc->state = RCONN_READY;
	evtimer_del(&rc->connect_ev);
}

/* hiredis's reply callback: reply is NULL when the context is going away. */
static void
rconn_on_reply(redisAsyncContext *ac, void *r, void *privdata)
{
	struct rconn_cmd	*cmd = privdata;
	struct rconn		*rc = cmd->rc;
	redisReply		*reply = r;

	rc->busy++;
	if (reply == NULL && rc->ac == ac) {
		/* hiredis broke the connection and is freeing ac. */
		rc->ac = NULL;
		rconn_fail_ac(rc, ac);
	}
	if (!cmd->done)
		rconn_cmd_finish(cmd, reply, reply != NULL ? NULL :
		    rc->error != NULL ? rc->error : "connection closed");
	rc->busy--;
	free(cmd);
}

static void
rconn_on_connect(const redisAsyncContext *ac, int status)
{
	struct rconn	*rc = ac->data;

	rc->busy++;
	if (status != REDIS_OK) {
		/* hiredis frees ac when this returns, without onDisconnect. */
		rc->ac = NULL;
		rconn_fail(rc, "connect failed: %s", ac->c.errstr);
	} else if (rc->password == NULL)
		rconn_set_ready(rc);
	rc->busy--;
}

/* Called from __redisAsyncFree(), after the NULL replies. */
static void
rconn_on_disconnect(const redisAsyncContext *ac, int status)
{
	struct rconn	*rc = ac->data;

	if (rc->ac != ac)
		return;		/* we freed it */
	rc->busy++;
	rc->ac = NULL;
	rconn_fail_ac(rc, ac);
	rc->busy--;
}

/* teardown_ev: free the context of a failed connection, outside hiredis. */
static void
rconn_teardown(evutil_socket_t fd, short what, void *arg)
{
	struct rconn		*rc = arg;
	redisAsyncContext	*ac = rc->ac;

	if (ac == NULL)
		return;
	rc->ac = NULL;
	redisAsyncFree(ac);	/* NULL replies: every cmd is done already */
}

static void
rconn_connect_timeout(evutil_socket_t fd, short what, void *arg)
{
	rconn_fail(arg, "connect timeout");
}

static void
rconn_cmd_timeout(evutil_socket_t fd, short what, void *arg)
{
	struct rconn_cmd	*cmd = arg;

	rconn_fail(cmd->rc, "timeout");
}

/* The answer to AUTH, the first command of a connection with a password. */
static void
rconn_auth_done(struct rconn *rc, redisReply *reply, const char *err,
    void *arg)
{
	const char	*msg;

	if (reply == NULL)
		return;		/* the connection failed: already told */
	if (reply->type != REDIS_REPLY_ERROR) {
		rconn_password_wipe(rc);
		rconn_set_ready(rc);
		return;
	}
	/*
	 * Redis 6 and 7 never echo the password ("WRONGPASS invalid
	 * username-password pair ..."), but the message goes into logs, so
	 * make sure.
	 */
	msg = reply->str;
	if (msg == NULL || rc->password[0] == '\0' ||
	    strstr(msg, rc->password) != NULL)
		msg = "(error reply withheld: it holds the password)";
	rconn_fail(rc, "auth failed: %s", msg);
}

/*
 * Whether a formatted command ("*N\r\n$LEN\r\nNAME\r\n...") has a name and
 * is one we can handle: 0, -EINVAL or -ENOTSUP.
 */
static int
rconn_cmd_check(const char *buf, size_t len)
{
	static const char *const many[] = {
		"subscribe", "unsubscribe", "monitor",
		"ssubscribe", "sunsubscribe",
	};
	const char	*end = buf + len, *p, *name;
	char		*q;
	unsigned long	 namelen;
	size_t		 i;

	if (len < 4 || buf[0] != '*' || strtol(buf + 1, NULL, 10) < 1)
		return -EINVAL;
	if ((p = memchr(buf, '\n', len)) == NULL || end - ++p < 4 ||
	    *p != '$')
		return -EINVAL;
	namelen = strtoul(p + 1, &q, 10);
	if (end - q < 2 || q[0] != '\r' || q[1] != '\n')
		return -EINVAL;
	name = q + 2;
	if (namelen > (unsigned long)(end - name))
		return -EINVAL;
	/* hiredis's own test: drop a leading "p", then compare. */
	if (namelen > 0 && (name[0] == 'p' || name[0] == 'P')) {
		name++;
		namelen--;
	}
	for (i = 0; i < nitems(many); i++) {
		if (strlen(many[i]) == namelen &&
		    strncasecmp(name, many[i], namelen) == 0)
			return -ENOTSUP;
	}
	return 0;
}

/* Queue a formatted command on rc; see rconn_command(). */
static int
rconn_send(struct rconn *rc, unsigned int timeout_ms, rconn_cb cb,
    void *arg, const char *buf, int len)
{
	struct rconn_cmd	*cmd;
	struct timeval		 tv;
	int			 r;

	if (len < 0)
		return -EINVAL;
	if ((r = rconn_cmd_check(buf, len)) != 0)
		return r;

	cmd = xcalloc(1, sizeof *cmd);
	cmd->rc = rc;
	cmd->cb = cb;
	cmd->arg = arg;
	if (redisAsyncFormattedCommand(rc->ac, rconn_on_reply, cmd, buf,
	    len) != REDIS_OK) {
		free(cmd);	/* hiredis is disconnecting: not queued */
		return -ENOTCONN;
	}
	TAILQ_INSERT_TAIL(&rc->cmds, cmd, entry);
	if (timeout_ms > 0) {
		tv.tv_sec = timeout_ms / 1000;
		tv.tv_usec = (timeout_ms % 1000) * 1000;
		evtimer_assign(&cmd->timer, rc->base, rconn_cmd_timeout, cmd);
		cmd->timed = true;
		evtimer_add(&cmd->timer, &tv);
	}
	return 0;
}

struct rconn *
rconn_new(struct event_base *base, const char *unix_path,
    const char *password, unsigned int connect_timeout_ms)
{
	return rconn_new_user(base, unix_path, NULL, password,
	    connect_timeout_ms);
}

struct rconn *
rconn_new_user(struct event_base *base, const char *unix_path,
    const char *user, const char *password, unsigned int connect_timeout_ms)
{
	struct rconn		*rc = xcalloc(1, sizeof *rc);
	redisAsyncContext	*ac;
	struct sockaddr_un	 sa;
	struct timeval		 tv;
	char			*buf;
	int			 len;

	rc->base = base;
	rc->path = xstrdup(unix_path);
	rc->state = RCONN_CONNECTING;
	TAILQ_INIT(&rc->cmds);
	evtimer_assign(&rc->connect_ev, base, rconn_connect_timeout, rc);
	evtimer_assign(&rc->teardown_ev, base, rconn_teardown, rc);

	/* hiredis 0.14.1 silently truncates a long path with strncpy. */
	if (strlen(unix_path) >= sizeof sa.sun_path) {
		rconn_fail(rc, "connect failed: socket path too long");
		return rc;
	}
	if ((ac = redisAsyncConnectUnix(unix_path)) == NULL) {
		rconn_fail(rc, "connect failed: out of memory");
		return rc;
	}
	if (ac->err != 0) {
		/* A unix socket connects at once, or fails at once. */
		rconn_fail(rc, "connect failed: %s", ac->errstr);
		redisAsyncFree(ac);
		return rc;
	}
	rc->ac = ac;
	rc->ac->data = rc;
	redisLibeventAttach(rc->ac, base);
	redisAsyncSetConnectCallback(rc->ac, rconn_on_connect);
	redisAsyncSetDisconnectCallback(rc->ac, rconn_on_disconnect);

	if (password != NULL) {
		rc->password = xstrdup(password);
		if (user != NULL)
			len = redisFormatCommand(&buf, "AUTH %s %s", user,
			    password);
		else
			len = redisFormatCommand(&buf, "AUTH %s", password);
		if (len < 0)
			abort();	/* out of memory, as in xmalloc */
		rconn_send(rc, 0, rconn_auth_done, NULL, buf, len);
		explicit_bzero(buf, len);
		redisFreeCommand(buf);
	}
	if (connect_timeout_ms > 0) {
		tv.tv_sec = connect_timeout_ms / 1000;
		tv.tv_usec = (connect_timeout_ms % 1000) * 1000;
		evtimer_add(&rc->connect_ev, &tv);
	}
	return rc;
}

int
rconn_command(struct rconn *rc, unsigned int timeout_ms, rconn_cb cb,
    void *arg, const char *fmt, ...)
{
	va_list	 ap;
	char	*buf;
	int	 len, r;

	if (!rconn_ok(rc))
		return -ENOTCONN;
	va_start(ap, fmt);
	len = redisvFormatCommand(&buf, fmt, ap);
	va_end(ap);
	if (len < 0)
		return -EINVAL;	/* a bad format; or out of memory */
	r = rconn_send(rc, timeout_ms, cb, arg, buf, len);
	redisFreeCommand(buf);
	return r;
}

int
rconn_commandargv(struct rconn *rc, unsigned int timeout_ms, rconn_cb cb,
    void *arg, int argc, const char **argv, const size_t *argvlen)
{
	char	*buf;
	int	 len, r;

	if (!rconn_ok(rc))
		return -ENOTCONN;
	if (argc < 1)
		return -EINVAL;
	if ((len = redisFormatCommandArgv(&buf, argc, argv, argvlen)) < 0)
		return -EINVAL;
	r = rconn_send(rc, timeout_ms, cb, arg, buf, len);
	redisFreeCommand(buf);
	return r;
}

bool
rconn_ok(const struct rconn *rc)
{
	return !rc->freeing && rc->state != RCONN_FAILED;
}

bool
rconn_ready(const struct rconn *rc)
{
	return !rc->freeing && rc->state == RCONN_READY;
}

const char *
rconn_error(const struct rconn *rc)
{
	return rc->error;
}

/* Release everything; no callback of rc may be on the stack. */
static void
rconn_destroy(struct rconn *rc)
{
	redisAsyncContext	*ac = rc->ac;

	event_del(&rc->teardown_ev);
	evtimer_del(&rc->connect_ev);
	if (ac != NULL) {
		/* Its NULL replies find every cmd done and free them. */
		rc->ac = NULL;
		redisAsyncFree(ac);
	}
	rconn_password_wipe(rc);
	free(rc->error);
	free(rc->path);
	free(rc);
}

static void
rconn_destroy_deferred(evutil_socket_t fd, short what, void *arg)
{
	rconn_destroy(arg);
}

void
rconn_free(struct rconn *rc)
{
	if (rc == NULL || rc->freeing)
		return;
	rc->freeing = true;
	evtimer_del(&rc->connect_ev);
	rconn_cmds_cancel(rc);
	if (rc->busy == 0) {
		rconn_destroy(rc);
		return;
	}
	/* Inside one of rc's callbacks: hiredis may still hold ac. */
	if (event_base_once(rc->base, -1, EV_TIMEOUT, rconn_destroy_deferred,
	    rc, NULL) == -1)
		abort();	/* out of memory, as in xmalloc */
}
