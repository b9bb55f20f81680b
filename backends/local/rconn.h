/*
 * An asynchronous connection to one redis-server over its unix socket, on
 * the caller's event_base, with the timeouts hiredis 0.14.1 lacks: a
 * connect timeout (covering AUTH) and a timeout per command, both built
 * from libevent timers. It hides hiredis's callback re-entrancy: every
 * command's callback runs exactly once, unless the rconn is freed first.
 *
 * A connection that fails (connect error, AUTH refused, a command timeout,
 * the server closing it, a protocol error) stays failed: it fails every
 * pending command, refuses new ones and is never re-established. The owner
 * frees it and makes a new one to reconnect.
 *
 * Not supported: SUBSCRIBE and friends and MONITOR (one request, many
 * replies), and HELLO 3 (hiredis 0.14 cannot parse RESP3). No TLS, no TCP.
 *
 * Nothing here logs above debug, and the password is never logged. The
 * process must ignore SIGPIPE (the daemon does): hiredis 0.14 writes with
 * write(2), not send(2) with MSG_NOSIGNAL.
 */
#ifndef CK_LOCAL_RCONN_H
#define CK_LOCAL_RCONN_H

#include <stdbool.h>
#include <stddef.h>

struct event_base;
struct redisReply;		/* <hiredis/hiredis.h> */
struct rconn;

/*
 * A command's result. reply is the server's answer, owned by hiredis and
 * freed when the callback returns; an error reply (REDIS_REPLY_ERROR, as
 * "NOAUTH ..." or "WRONGTYPE ...") is a reply like any other and leaves
 * the connection up. reply is NULL when the connection failed before the
 * answer came; err then says why and starts with one of:
 *
 *	"timeout"		this or an earlier command timed out
 *	"connect timeout"	connect and AUTH took longer than allowed
 *	"connect failed: "	the socket could not be connected, e.g.
 *				"connect failed: No such file or directory"
 *	"auth failed: "		the server refused the password; the rest is
 *				Redis's error reply, which never holds it
 *	"connection closed"	EOF, or "connection closed: " and an I/O
 *				error, or Redis's error before it hung up
 *				("max number of clients reached")
 *	"protocol error: "	the server's bytes made no sense
 *
 * err is NULL when reply is not, and is valid only during the callback.
 * Callbacks run from the event loop only, never from inside rconn_new(),
 * rconn_command() or rconn_free(). A callback may issue new commands (they
 * fail with -ENOTCONN once the connection has failed) and may call
 * rconn_free() on rc.
 */
typedef void (*rconn_cb)(struct rconn *rc, struct redisReply *reply,
    const char *err, void *arg);

/*
 * Connect to the redis-server listening on unix_path. When password is not
 * NULL, "AUTH password" is the first command sent; password is copied and
 * the copy is wiped once AUTH is answered. Without a password against a
 * server that requires one, the connection stays up and each command gets
 * Redis's "NOAUTH ..." error as its reply. The connect timeout (milliseconds,
 * 0 for none) runs from now until the socket is connected and, with a
 * password, AUTH is accepted. The kernel completes a unix socket connect
 * on the server's behalf, so without a password a stopped server is only
 * noticed by the first command timeout.
 *
 * Never returns NULL. A unix socket connects at once or not at all, so a
 * missing socket or a server that does not listen gives an rconn that has
 * already failed: rconn_ok() is false, rconn_error() says why and
 * rconn_command() returns -ENOTCONN.
 */
struct rconn	*rconn_new(struct event_base *base, const char *unix_path,
		    const char *password, unsigned int connect_timeout_ms);
/* The same, logging in as user ("AUTH user password") unless it is NULL. */
struct rconn	*rconn_new_user(struct event_base *base, const char *unix_path,
		    const char *user, const char *password,
		    unsigned int connect_timeout_ms);

/*
 * Send a command, formatted as for redisCommand() (%s a C string, %b a
 * pointer and a size_t length). Commands are pipelined and answered in the
 * order they were sent; those issued before the connection is up (or AUTH
 * answered) wait in hiredis's buffer. timeout_ms (0 for none) runs from
 * now until the answer: when it expires the whole connection fails with
 * "timeout", since a Redis connection cannot skip one reply, and every
 * pending command is called back with that error in order.
 *
 * Returns 0, after which cb is called exactly once unless rc is freed
 * first. Otherwise cb is never called and the return is
 *	-ENOTCONN	the connection has failed or is being freed
 *	-EINVAL		fmt yields no command (empty, bad format)
 *	-ENOTSUP	a command with many replies (SUBSCRIBE, MONITOR...)
 */
int		 rconn_command(struct rconn *rc, unsigned int timeout_ms,
		    rconn_cb cb, void *arg, const char *fmt, ...);
/* The same with argc arguments, binary-safe (argvlen NULL: strlen). */
int		 rconn_commandargv(struct rconn *rc, unsigned int timeout_ms,
		    rconn_cb cb, void *arg, int argc, const char **argv,
		    const size_t *argvlen);

/*
 * Whether the connection can still be used: connected (or, with a
 * password, waiting for AUTH's answer) and not failed. False for good once
 * it has failed.
 */
bool		 rconn_ok(const struct rconn *rc);
/* Whether the connection is up and, with a password, AUTH was accepted. */
bool		 rconn_ready(const struct rconn *rc);
/*
 * Why the connection failed, in the words given to the callbacks (see
 * rconn_cb); NULL while it has not. Valid until rconn_free().
 */
const char	*rconn_error(const struct rconn *rc);

/*
 * Close the connection and free rc; NULL is fine. Callbacks of commands
 * still pending are not called, neither now nor later. Safe from inside
 * one of rc's own callbacks: the memory is then released on the next turn
 * of the loop (keep running the loop before event_base_free()), but rc
 * must not be used again by the caller in any case.
 */
void		 rconn_free(struct rconn *rc);

#endif
