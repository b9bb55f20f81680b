/*
 * The control socket; see control.h. Every answer is built from the same
 * status the reconcilers write to their files, so the socket, the files
 * and the metrics never disagree.
 */
#include "config.h"

#include <sys/queue.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>

#include <errno.h>
#include <grp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <jansson.h>

#include "backend.h"
#include "local/backup.h"
#include "control.h"
#include "daemon.h"
#include "log.h"
#include "metrics.h"
#include "plan.h"
#include "spec.h"
#include "util.h"

struct control {
	struct daemon		*d;
	struct evhttp		*http;
	char			*path;
	int			 fd;
};

/* An operation whose answer waits for the backend. */
struct pending {
	struct control		*c;
	struct evhttp_request	*req;
	char			*name;
	bool			 gone;	/* the client hung up */
};

static void
reply_json(struct evhttp_request *req, int status, json_t *j)
{
	struct evbuffer	*b = evbuffer_new();
	char		*s = json_dumps(j, JSON_INDENT(2) | JSON_SORT_KEYS);

	evbuffer_add_printf(b, "%s\n", s ? s : "null");
	evhttp_add_header(evhttp_request_get_output_headers(req),
	    "Content-Type", "application/json");
	evhttp_send_reply(req, status, status == 200 ? "OK" : status == 202 ?
	    "Accepted" : status == 400 ? "Bad Request" : status == 403 ?
	    "Forbidden" : status == 404 ? "Not Found" : status == 405 ?
	    "Method Not Allowed" : status == 409 ? "Conflict" : status == 413 ?
	    "Payload Too Large" : status == 501 ? "Not Implemented" :
	    status == 503 ? "Service Unavailable" : "Error", b);
	evbuffer_free(b);
	free(s);
	json_decref(j);
}

static void
reply_error(struct evhttp_request *req, int status, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void
reply_error(struct evhttp_request *req, int status, const char *fmt, ...)
{
	va_list	 ap;
	char	*m;

	va_start(ap, fmt);
	xvasprintf(&m, fmt, ap);
	va_end(ap);
	reply_json(req, status, json_pack("{s:{s:i, s:s}}", "error", "status",
	    status, "message", m));
	free(m);
}

static int
errno_status(int e)
{
	switch (e) {
	case -EBUSY:
	case -EEXIST:
		return 409;
	case -EAGAIN:
		return 503;
	case -ENOTSUP:
		return 501;
	case -ENOENT:
		return 404;
	case -EINVAL:
		return 400;
	default:
		return 500;
	}
}

/* The group whose members may change things: configured, or ours. */
static gid_t
control_gid(const struct control *c)
{
	const struct dconf	*conf = c->d->conf;

	return conf->control_group_set ? conf->control_gid : getegid();
}

/*
 * Whether the peer on fd is in group g: its primary group, or one of its
 * supplementary groups as the kernel recorded them at connect()
 * (SO_PEERGROUPS, Linux 4.13). Not /proc/PID/status nor getgrouplist():
 * a pid can be reused once the client exits while a child keeps the
 * connection, and the group database is not what the process holds.
 */
static bool
peer_in_group(int fd, const struct ucred *cr, gid_t g)
{
	gid_t		 small[64], *v = small;
	socklen_t	 len = sizeof small;
	size_t		 i, n;
	bool		 in = false;

	if (cr->gid == g)
		return true;
	if (getsockopt(fd, SOL_SOCKET, SO_PEERGROUPS, v, &len) != 0) {
		if (errno != ERANGE) {
			log_debug("control: SO_PEERGROUPS: %s; only the "
			    "peer's primary group counts", strerror(errno));
			return false;
		}
		/* len now says how much the kernel has (NGROUPS_MAX bounds it). */
		v = xcalloc(1, len);
		if (getsockopt(fd, SOL_SOCKET, SO_PEERGROUPS, v, &len) != 0) {
			log_debug("control: SO_PEERGROUPS: %s", strerror(errno));
			free(v);
			return false;
		}
	}
	n = len / sizeof *v;
	for (i = 0; i < n && !in; i++)
		in = v[i] == g;
	if (v != small)
		free(v);
	return in;
}

/* The group in messages: its name when it has one. */
static void
group_text(const struct control *c, char *buf, size_t len)
{
	const struct dconf	*conf = c->d->conf;
	struct group		*gr;
	gid_t			 g = control_gid(c);

	if (conf->control_group_set)
		snprintf(buf, len, "group %s", conf->control_group);
	else if ((gr = getgrgid(g)) != NULL)
		snprintf(buf, len, "its group %s", gr->gr_name);
	else
		snprintf(buf, len, "its group %ld", (long)g);
}

/*
 * May this peer change things? Root, our user, and the members of the
 * control group (control_socket_group, else our primary group). Reading
 * needs only access to the socket file. who gets the peer, for logs and
 * answers.
 */
static bool
peer_may_mutate(struct control *c, struct evhttp_request *req, char *who,
    size_t len)
{
	struct evhttp_connection *conn = evhttp_request_get_connection(req);
	struct bufferevent	*bev = conn ?
	    evhttp_connection_get_bufferevent(conn) : NULL;
	struct ucred		 cr;
	socklen_t		 sl = sizeof cr;
	int			 fd = bev ? (int)bufferevent_getfd(bev) : -1;

	if (fd < 0 || getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cr, &sl) != 0) {
		snprintf(who, len, "unknown peer");
		return false;
	}
	snprintf(who, len, "uid %ld gid %ld pid %ld", (long)cr.uid,
	    (long)cr.gid, (long)cr.pid);
	return cr.uid == 0 || cr.uid == geteuid() ||
	    peer_in_group(fd, &cr, control_gid(c));
}

/* 403 for a peer that may not make this change, saying who may. */
static void
reply_forbidden(struct control *c, struct evhttp_request *req,
    const char *what, const char *who)
{
	char	grp[300];

	group_text(c, grp, sizeof grp);
	reply_error(req, 403, "only root, the daemon's user or %s may %s "
	    "(you are %s)", grp, what, who);
}

static json_t *
read_body_json(struct evhttp_request *req, char **cause)
{
	struct evbuffer	*in = evhttp_request_get_input_buffer(req);
	size_t		 len = evbuffer_get_length(in);
	json_error_t	 je;
	json_t		*j;

	if (len == 0)
		return json_object();
	j = json_loadb((const char *)evbuffer_pullup(in, (ssize_t)len), len,
	    0, &je);
	if (j == NULL || !json_is_object(j)) {
		xasprintf(cause, "the body must be a JSON object%s%s",
		    j ? "" : ": ", j ? "" : je.text);
		json_decref(j);
		return NULL;
	}
	return j;
}

static json_t *
cluster_plan_json(struct daemon *d, const struct cluster_spec *s,
    struct reconciler *r)
{
	const struct observed	*o = r ? reconciler_observed(r) : NULL;
	struct plan		 p;
	struct strbuf		 sb;
	json_t			*j;

	plan_compute(s, o, false, clock_wall_s(), &p);
	strbuf_init(&sb);
	plan_format(&p, &sb);
	j = json_pack("{s:s, s:s, s:b, s:b, s:o, s:s}", "name", s->name,
	    "backend", s->backend, "known", r != NULL, "observed", o != NULL,
	    "plan", plan_to_json(&p), "text", sb.s ? sb.s : "");
	json_object_set_new(j, "changes", json_boolean(plan_has_changes(&p)));
	strbuf_free(&sb);
	plan_free(&p);
	(void)d;
	return j;
}

/* POST /v1/confirm-deletions {"names": [...]}: let held deletions go. */
static void
handle_confirm(struct control *c, struct evhttp_request *req)
{
	struct strlist	 names = { 0 };
	json_t		*body, *a, *v, *done;
	char		*cause = NULL, who[96];
	size_t		 i;

	if (!peer_may_mutate(c, req, who, sizeof who)) {
		log_warnx("control: confirm-deletions refused to %s", who);
		reply_forbidden(c, req, "confirm deletions", who);
		return;
	}
	if ((body = read_body_json(req, &cause)) == NULL) {
		reply_error(req, 400, "%s", cause);
		free(cause);
		return;
	}
	a = json_object_get(body, "names");
	json_array_foreach(a, i, v)
		if (json_is_string(v))
			strlist_add(&names, json_string_value(v));
	done = json_array();
	daemon_confirm_deletions(c->d, &names, done);
	strlist_free(&names);
	json_decref(body);
	reply_json(req, 200, json_pack("{s:o}", "confirmed", done));
}

/* POST /v1/plan: specs sent by the client, against what the daemon sees. */
static void
handle_plan_files(struct control *c, struct evhttp_request *req)
{
	struct daemon		*d = c->d;
	struct spec_opts	 o = { d->conf->default_backend,
	    backend_names() };
	json_t			*body, *files, *f, *plans, *errs;
	char			*cause = NULL;
	size_t			 i, k;

	if ((body = read_body_json(req, &cause)) == NULL) {
		reply_error(req, 400, "%s", cause);
		free(cause);
		return;
	}
	files = json_object_get(body, "files");
	if (!json_is_array(files)) {
		json_decref(body);
		reply_error(req, 400, "the body needs \"files\": [{\"path\", "
		    "\"content\"}]");
		return;
	}
	plans = json_array();
	errs = json_array();
	json_array_foreach(files, i, f) {
		const char	*path = json_string_value(json_object_get(f,
		    "path"));
		const char	*text = json_string_value(json_object_get(f,
		    "content"));
		struct spec_list l = { 0 };
		struct diags	 dg;

		if (path == NULL || text == NULL) {
			json_array_append_new(errs, json_string("a file "
			    "without path or content"));
			continue;
		}
		diags_init(&dg);
		spec_parse_buffer(path, text, strlen(text), &o, &l, &dg);
		for (k = 0; k < dg.n; k++) {
			char *m = diag_format(&dg.v[k]);
			json_array_append_new(errs, json_string(m));
			free(m);
		}
		for (k = 0; k < l.n; k++)
			json_array_append_new(plans, cluster_plan_json(d,
			    l.v[k], htab_get(d->reconcilers, l.v[k]->name)));
		spec_list_free(&l);
		diags_free(&dg);
	}
	json_decref(body);
	reply_json(req, 200, json_pack("{s:o, s:o}", "plans", plans,
	    "errors", errs));
}

static void
op_done(void *arg, int error, const char *message)
{
	struct pending	*p = arg;

	if (!p->gone)
		reply_json(p->req, error == 0 ? 200 : errno_status(error),
		    error == 0 ? json_pack("{s:s, s:s, s:s?}", "name", p->name,
		    "result", "ok", "message", message) : json_pack("{s:{s:i, "
		    "s:s}}", "error", "status", errno_status(error), "message",
		    message ? message : strerror(-error)));
	else
		log_debug("control: %s: the client left before the answer",
		    p->name);
	if (!p->gone)
		evhttp_connection_set_closecb(evhttp_request_get_connection(
		    p->req), NULL, NULL);
	free(p->name);
	free(p);
}

static void
op_client_gone(struct evhttp_connection *conn, void *arg)
{
	struct pending		*p = arg;
	struct reconciler	*r = htab_get(p->c->d->reconcilers, p->name);

	p->gone = true;
	/* The reconciler still calls op_done: nothing answers it. */
	(void)conn;
	(void)r;
}

static void
handle_operation(struct control *c, struct evhttp_request *req,
    struct reconciler *r, const char *name, const char *what)
{
	struct backend_op	 op;
	struct pending		*p;
	json_t			*body;
	char			*cause = NULL, who[96];
	const char		*why;
	int			 e;

	if (!peer_may_mutate(c, req, who, sizeof who)) {
		char *act;

		log_warnx("control: %s of %s refused to %s", what, name, who);
		xasprintf(&act, "%s clusters", what);
		reply_forbidden(c, req, act, who);
		free(act);
		return;
	}
	if ((body = read_body_json(req, &cause)) == NULL) {
		reply_error(req, 400, "%s", cause);
		free(cause);
		return;
	}
	if (strcmp(what, "reconcile") == 0) {
		reconciler_kick(r, 0);
		json_decref(body);
		reply_json(req, 202, json_pack("{s:s, s:s}", "name", name,
		    "result", "reconcile requested"));
		return;
	}
	memset(&op, 0, sizeof op);
	op.kind = strcmp(what, "snapshot") == 0 ? BACKEND_OP_SNAPSHOT :
	    BACKEND_OP_FAILOVER;
	op.name = json_string_value(json_object_get(body, "name"));
	op.shard = json_string_value(json_object_get(body, "shard"));
	if (op.name != NULL && !spec_name_valid(op.name, &why)) {
		reply_error(req, 400, "snapshot name '%s': %s (1-40 "
		    "characters, a letter first, then a-z 0-9 -)", op.name, why);
		json_decref(body);
		return;
	}
	p = xcalloc(1, sizeof *p);
	p->c = c;
	p->req = req;
	p->name = xstrdup(name);
	evhttp_connection_set_closecb(evhttp_request_get_connection(req),
	    op_client_gone, p);
	if ((e = reconciler_operate(r, &op, op_done, p, &cause)) != 0) {
		evhttp_connection_set_closecb(evhttp_request_get_connection(
		    req), NULL, NULL);
		reply_error(req, errno_status(e), "%s", cause);
		free(cause);
		free(p->name);
		free(p);
	}
	json_decref(body);
}

static void
handle_clusters(struct control *c, struct evhttp_request *req)
{
	json_t		*a = json_array();
	size_t		 pos = 0;
	const char	*name;
	void		*v;

	while (htab_next(c->d->reconcilers, &pos, &name, &v))
		json_array_append_new(a, reconciler_status_json(v));
	reply_json(req, 200, json_pack("{s:o}", "clusters", a));
}

static void
handle_health(struct control *c, struct evhttp_request *req)
{
	struct daemon	*d = c->d;

	reply_json(req, 200, json_pack("{s:s, s:s, s:b, s:I, s:I, s:I, s:s}",
	    "status", d->stopping ? "stopping" : "ok", "version",
	    PACKAGE_VERSION, "ready", d->ready, "clusters",
	    (json_int_t)htab_count(d->reconcilers), "invalid_files",
	    (json_int_t)d->invalid_files, "pid", (json_int_t)getpid(),
	    "summary", d->summary ? d->summary : ""));
}

static void
handle_metrics(struct control *c, struct evhttp_request *req)
{
	struct evbuffer	*b = evbuffer_new();
	struct strbuf	 sb;

	strbuf_init(&sb);
	metrics_render(c->d, &sb);
	evbuffer_add(b, sb.s ? sb.s : "", sb.len);
	evhttp_add_header(evhttp_request_get_output_headers(req),
	    "Content-Type", "text/plain; version=0.0.4");
	evhttp_send_reply(req, 200, "OK", b);
	evbuffer_free(b);
	strbuf_free(&sb);
}

/* /v1/clusters/NAME[/ACTION] */
static void
handle_cluster(struct control *c, struct evhttp_request *req,
    const char *rest, enum evhttp_cmd_type m)
{
	struct reconciler	*r;
	const char		*slash = strchr(rest, '/');
	char			*name = slash ? xstrndup(rest, (size_t)(slash -
	    rest)) : xstrdup(rest);
	const char		*action = slash ? slash + 1 : "";

	if ((r = htab_get(c->d->reconcilers, name)) == NULL) {
		reply_error(req, 404, "no cluster named '%s'", name);
		goto out;
	}
	if (*action == '\0') {
		if (m != EVHTTP_REQ_GET)
			reply_error(req, 405, "use GET");
		else
			reply_json(req, 200, reconciler_status_json(r));
	} else if (strcmp(action, "plan") == 0) {
		if (m != EVHTTP_REQ_GET)
			reply_error(req, 405, "use GET");
		else if (reconciler_spec(r) == NULL)
			reply_error(req, 409, "cluster '%s' has no valid spec",
			    name);
		else
			reply_json(req, 200, cluster_plan_json(c->d,
			    reconciler_spec(r), r));
	} else if (strcmp(action, "reconcile") == 0 ||
	    strcmp(action, "snapshot") == 0 ||
	    strcmp(action, "failover") == 0) {
		if (m != EVHTTP_REQ_POST)
			reply_error(req, 405, "use POST");
		else
			handle_operation(c, req, r, name, action);
	} else
		reply_error(req, 404, "unknown path /v1/clusters/%s/%s", name,
		    action);
out:
	free(name);
}

/*
 * GET /v1/snapshots[?cluster=NAME]: the local backend's snapshots on this
 * host; DELETE /v1/snapshots/SNAP deletes one (manual, final or
 * automatic alike).
 */
static void
handle_snapshots(struct control *c, struct evhttp_request *req,
    const struct evhttp_uri *u, const char *snap, enum evhttp_cmd_type m)
{
	struct evkeyvalq	 q;
	struct reconciler	*r;
	const char		*cluster = NULL, *qs = evhttp_uri_get_query(u);
	char			*cause = NULL, who[96], *owner = NULL;
	int			 e;

	if (snap == NULL) {
		if (m != EVHTTP_REQ_GET) {
			reply_error(req, 405, "use GET");
			return;
		}
		TAILQ_INIT(&q);
		if (qs != NULL && evhttp_parse_query_str(qs, &q) != 0) {
			reply_error(req, 400, "bad query string");
			return;
		}
		cluster = evhttp_find_header(&q, "cluster");
		if (cluster != NULL && !spec_name_valid(cluster, &(const char *)
		    { NULL })) {
			evhttp_clear_headers(&q);
			reply_error(req, 400, "'%s' is not a cluster name",
			    cluster);
			return;
		}
		reply_json(req, 200, json_pack("{s:o}", "snapshots",
		    backup_list(c->d->conf->state_dir, cluster)));
		evhttp_clear_headers(&q);
		return;
	}
	if (m != EVHTTP_REQ_DELETE) {
		reply_error(req, 405, "use DELETE");
		return;
	}
	if (!peer_may_mutate(c, req, who, sizeof who)) {
		log_warnx("control: deletion of snapshot %s refused to %s",
		    snap, who);
		reply_forbidden(c, req, "delete snapshots", who);
		return;
	}
	{
		/* Whose it was: that cluster's status counts it. */
		json_t		*all = backup_list(c->d->conf->state_dir, NULL);
		json_t		*v;
		size_t		 i;

		json_array_foreach(all, i, v) {
			const char *n = json_string_value(json_object_get(v,
			    "name"));
			const char *cl = json_string_value(json_object_get(v,
			    "cluster"));
			if (n != NULL && cl != NULL && strcmp(n, snap) == 0) {
				free(owner);
				owner = xstrdup(cl);
			}
		}
		json_decref(all);
	}
	if ((e = backup_delete(c->d->conf->state_dir, snap, &cause)) != 0) {
		reply_error(req, errno_status(e), "%s", cause);
		free(cause);
		free(owner);
		return;
	}
	if (owner != NULL && (r = htab_get(c->d->reconcilers, owner)) != NULL)
		reconciler_kick(r, 0);
	free(owner);
	log_info("control: snapshot %s deleted (%s)", snap, who);
	reply_json(req, 200, json_pack("{s:s, s:s}", "name", snap, "result",
	    "deleted"));
}

static void
handle(struct evhttp_request *req, void *arg)
{
	struct control		*c = arg;
	const char		*uri = evhttp_request_get_uri(req);
	struct evhttp_uri	*u = evhttp_uri_parse(uri);
	const char		*path = u ? evhttp_uri_get_path(u) : NULL;
	enum evhttp_cmd_type	 m = evhttp_request_get_command(req);

	if (path == NULL) {
		reply_error(req, 400, "bad request URI");
		goto out;
	}
	log_debug("control: %s %s", m == EVHTTP_REQ_GET ? "GET" :
	    m == EVHTTP_REQ_POST ? "POST" : m == EVHTTP_REQ_DELETE ?
	    "DELETE" : "other", path);
	if (strcmp(path, "/v1/health") == 0)
		handle_health(c, req);
	else if (strcmp(path, "/v1/metrics") == 0 || strcmp(path,
	    "/metrics") == 0)
		handle_metrics(c, req);
	else if (strcmp(path, "/v1/clusters") == 0) {
		if (m != EVHTTP_REQ_GET)
			reply_error(req, 405, "use GET");
		else
			handle_clusters(c, req);
	} else if (strncmp(path, "/v1/clusters/", 13) == 0 && path[13])
		handle_cluster(c, req, path + 13, m);
	else if (strcmp(path, "/v1/confirm-deletions") == 0) {
		if (m != EVHTTP_REQ_POST)
			reply_error(req, 405, "use POST");
		else
			handle_confirm(c, req);
	} else if (strcmp(path, "/v1/snapshots") == 0)
		handle_snapshots(c, req, u, NULL, m);
	else if (strncmp(path, "/v1/snapshots/", 14) == 0 && path[14])
		handle_snapshots(c, req, u, path + 14, m);
	else if (strcmp(path, "/v1/plan") == 0) {
		if (m != EVHTTP_REQ_POST)
			reply_error(req, 405, "use POST");
		else
			handle_plan_files(c, req);
	} else
		reply_error(req, 404, "unknown path %s (see /v1/health, "
		    "/v1/clusters)", path);
out:
	if (u != NULL)
		evhttp_uri_free(u);
}

struct control *
control_start(struct daemon *d)
{
	const char		*path = d->conf->control_socket;
	struct sockaddr_un	 sun;
	struct control		*c;
	char			*dir, *slash;
	int			 fd;

	if (path == NULL || *path == '\0' || strcmp(path, "off") == 0)
		return NULL;
	if (strlen(path) >= sizeof sun.sun_path) {
		log_warnx("control_socket %s: the path is too long (at most "
		    "%zu bytes); no control socket", path,
		    sizeof sun.sun_path - 1);
		return NULL;
	}
	dir = xstrdup(path);
	if ((slash = strrchr(dir, '/')) != NULL && slash != dir) {
		*slash = '\0';
		(void)mkdir_p(dir, 0755);
	}
	free(dir);
	if ((fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC,
	    0)) == -1) {
		log_warn("control socket");
		return NULL;
	}
	memset(&sun, 0, sizeof sun);
	sun.sun_family = AF_UNIX;
	snprintf(sun.sun_path, sizeof sun.sun_path, "%s", path);
	/* We own the state dir lock: a socket left here is a dead one's. */
	(void)unlink(path);
	/*
	 * The group before the mode: until chmod the group has no write
	 * permission, and a unix socket needs it to connect.
	 */
	if (bind(fd, (struct sockaddr *)&sun, sizeof sun) == -1 ||
	    (d->conf->control_group_set && chown(path, (uid_t)-1,
	    d->conf->control_gid) == -1) || chmod(path, 0660) == -1 ||
	    listen(fd, 64) == -1) {
		log_warn("control socket %s%s%s", path,
		    d->conf->control_group_set ? ", group " : "",
		    d->conf->control_group_set ? d->conf->control_group : "");
		close(fd);
		(void)unlink(path);
		return NULL;
	}
	c = xcalloc(1, sizeof *c);
	c->d = d;
	c->fd = fd;
	c->path = xstrdup(path);
	c->http = evhttp_new(d->base);
	evhttp_set_max_body_size(c->http, CONTROL_MAX_BODY);
	evhttp_set_max_headers_size(c->http, CONTROL_MAX_HEADERS);
	evhttp_set_timeout(c->http, CONTROL_TIMEOUT_S);
	evhttp_set_allowed_methods(c->http, EVHTTP_REQ_GET | EVHTTP_REQ_POST |
	    EVHTTP_REQ_HEAD | EVHTTP_REQ_DELETE);
	evhttp_set_gencb(c->http, handle, c);
	if (evhttp_accept_socket(c->http, fd) != 0) {
		log_warnx("control socket %s: evhttp cannot accept", path);
		control_free(c);
		return NULL;
	}
	if (d->conf->control_group_set)
		log_info("control socket %s (group %s may make changes)", path,
		    d->conf->control_group);
	else
		log_info("control socket %s", path);
	return c;
}

void
control_free(struct control *c)
{
	if (c == NULL)
		return;
	if (c->http != NULL)
		evhttp_free(c->http);	/* closes the listening socket */
	else
		close(c->fd);
	(void)unlink(c->path);
	free(c->path);
	free(c);
}
