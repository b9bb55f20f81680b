/*
 * The control socket: HTTP/1.1 with JSON on a unix socket (control_socket,
 * mode 0660), served by libevent's evhttp on the daemon's loop.
 *
 *	GET  /v1/health
 *	GET  /v1/clusters			every cluster's status
 *	GET  /v1/clusters/NAME			one cluster's status
 *	GET  /v1/clusters/NAME/plan		its plan against what it sees
 *	POST /v1/clusters/NAME/reconcile	look at it now
 *	POST /v1/clusters/NAME/snapshot		{"name": "..."} (optional)
 *	POST /v1/clusters/NAME/failover		{"shard": "..."} (optional)
 *	POST /v1/plan				{"files": [{"path", "content"}]}
 *	POST /v1/confirm-deletions		{"names": [...]}
 *	GET  /v1/snapshots[?cluster=NAME]	the local backend's snapshots
 *	DELETE /v1/snapshots/SNAP		delete one
 *	GET  /v1/metrics			the Prometheus text, as /metrics
 *
 * Errors are {"error": {"status": N, "message": "..."}} with a proper
 * status code. Requests are bounded in size (CONTROL_MAX_BODY) and time.
 * Mutating calls (POST, DELETE; not POST /v1/plan, which changes nothing)
 * are allowed to root, the daemon's user and members of control_socket_group
 * (default: the daemon's primary group), as the kernel recorded them at
 * connect() (SO_PEERCRED, SO_PEERGROUPS). The socket file is chowned to
 * that group. Reading needs only access to the socket file.
 */
#ifndef CK_CONTROL_H
#define CK_CONTROL_H

#define CONTROL_MAX_BODY	(16u << 20)	/* bytes: plan of many files */
#define CONTROL_MAX_HEADERS	(16u << 10)
#define CONTROL_TIMEOUT_S	30

struct daemon;
struct control;

/* Listen on d->conf->control_socket; NULL (logged) when it cannot. */
struct control	*control_start(struct daemon *);
void		 control_free(struct control *);

#endif
