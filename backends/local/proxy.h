/*
 * A small TCP forwarder for a replication group's stable endpoints (the
 * "primary endpoint" and the "reader endpoint"). Clients connect to
 * bind:port; each new connection is paired with an upstream connection to
 * the target the owner picks at accept time. Bytes are moved both ways
 * without being looked at, so any protocol passes (RESP, TLS inside TCP).
 * On failover the owner drops the pairs that go to the old primary; their
 * clients see EOF and reconnect, and the next pick sends them to the new
 * one.
 *
 * Everything runs on the caller's event_base, from its loop; nothing here
 * blocks and nothing logs above debug. The process must ignore SIGPIPE
 * (the daemon does): libevent 2.1 writes with writev(), not send() with
 * MSG_NOSIGNAL.
 */
#ifndef CK_PROXY_H
#define CK_PROXY_H

#include <sys/types.h>
#include <sys/socket.h>

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <event2/event.h>

struct proxy;

/*
 * Choose the target of a new client connection: fill *addr and *len (an
 * AF_INET, AF_INET6 or AF_UNIX stream address; *len comes in as
 * sizeof(*addr)) and return 0, or return -1 to refuse the client, which is
 * then closed at once. Called from the loop, once per accepted connection
 * while the proxy is not paused. It may call proxy_drop_target(),
 * proxy_drop_all() and proxy_set_paused(), but must not free the proxy.
 */
typedef int (*proxy_pick_cb)(void *arg, struct sockaddr_storage *addr,
    socklen_t *len);

/*
 * Listen on bind_addr:port (a numeric IPv4 or IPv6 address, NULL for
 * 0.0.0.0; port 0..65535, 0 picks a free port, see proxy_port()). The
 * socket is bound before this returns, so a port in use is reported here:
 * on failure NULL is returned and *cause is set to a message the caller
 * frees, for example "127.0.0.1:6380: bind: Address already in use".
 * pick and arg are kept until proxy_free().
 */
struct proxy	*proxy_new(struct event_base *base, const char *bind_addr,
		    int port, proxy_pick_cb pick, void *arg, char **cause);

/*
 * Stop listening and close every connection without flushing. NULL is
 * accepted. The listening port is released at once; the connection
 * sockets are closed by libevent on the next turn of the loop (or by
 * event_base_free()). Must not be called from the pick callback.
 */
void		 proxy_free(struct proxy *p);

/*
 * Close, at once and without flushing, every client whose upstream is
 * addr (same family, address and port; for AF_UNIX the same path),
 * together with its upstream. Connections to other targets are left
 * alone. Returns the number of client connections closed.
 */
size_t		 proxy_drop_target(struct proxy *p, const struct sockaddr *addr,
		    socklen_t len);
/* The same for every client connection. */
size_t		 proxy_drop_all(struct proxy *p);

/*
 * While paused, new clients are accepted and closed at once, without a
 * pick, so that they retry rather than wait in the listen queue during a
 * failover. Existing connections are not touched.
 */
void		 proxy_set_paused(struct proxy *p, bool paused);

/*
 * Client connections alive: paired, or still flushing what one side sent
 * before the other closed.
 */
size_t		 proxy_count(const struct proxy *p);
/* Connections accepted since proxy_new(), including refused ones. */
uint64_t	 proxy_accepted_total(const struct proxy *p);
/*
 * Bytes held in the proxy's own buffers, both directions, all connections;
 * bounded by about 2 MiB per connection (walks every connection).
 */
size_t		 proxy_buffered(const struct proxy *p);
/*
 * accept() failures other than the transient ones (EMFILE, ENFILE,
 * ENOBUFS...) since proxy_new(); *last_errno, if not NULL, gets the last
 * one's errno, or 0. After such a failure the proxy stops accepting for a
 * second instead of spinning on a listen socket it cannot serve.
 */
uint64_t	 proxy_accept_errors(const struct proxy *p, int *last_errno);
/* The port listened on (useful after asking for port 0). */
int		 proxy_port(const struct proxy *p);

#endif
