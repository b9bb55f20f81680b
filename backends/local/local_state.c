/*
 * What the local backend remembers of a cluster, in DATA_DIR/NAME/
 * cluster.json (written atomically and fsynced): its nodes with their ports
 * for life, which one is the primary, the settings applied. Secrets are
 * never written here: only the token file's path.
 */
#include "config.h"

#include <sys/socket.h>
#include <sys/stat.h>

#include <netinet/in.h>
#include <arpa/inet.h>

#include <dirent.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "local.h"
#include "node.h"
#include "util.h"

static const char *const pers_names[] = { "rdb", "aof", "none" };

struct lnode *
lnode_new(struct lcluster *lc, const char *id, int port)
{
	struct lnode	*n = xcalloc(1, sizeof *n);
	char		*sockdir;

	n->lc = lc;
	n->id = xstrdup(id);
	n->port = port;
	xasprintf(&n->dir, "%s/%s", lc->dir, id);
	sockdir = node_path(n->dir, "sock");
	n->sock = node_path(sockdir, "redis.sock");
	free(sockdir);
	return n;
}

struct lnode *
lcluster_node(struct lcluster *lc, const char *id)
{
	size_t	 i;

	for (i = 0; id != NULL && i < lc->nnodes; i++)
		if (strcmp(lc->nodes[i]->id, id) == 0)
			return lc->nodes[i];
	return NULL;
}

struct lnode *
lcluster_primary(struct lcluster *lc)
{
	return lcluster_node(lc, lc->primary);
}

static char *
state_path(struct lcluster *lc)
{
	return node_path(lc->dir, "cluster.json");
}

int
lstate_save(struct lcluster *lc, char **cause)
{
	json_t	*j, *nodes, *params;
	char	*txt, *path;
	size_t	 i;
	int	 r;

	nodes = json_array();
	for (i = 0; i < lc->nnodes; i++) {
		json_t *n = json_pack("{s:s, s:i, s:s?, s:b}",
		    "id", lc->nodes[i]->id, "port", lc->nodes[i]->port,
		    "run_id", lc->nodes[i]->run_id, "needs_restart",
		    lc->nodes[i]->needs_restart);
		if (lc->nodes[i]->shard != NULL)
			json_object_set_new(n, "shard",
			    json_string(lc->nodes[i]->shard));
		if (lc->nodes[i]->bus_port != 0)
			json_object_set_new(n, "bus_port",
			    json_integer(lc->nodes[i]->bus_port));
		if (lc->nodes[i]->cid != NULL)
			json_object_set_new(n, "cluster_id",
			    json_string(lc->nodes[i]->cid));
		json_array_append_new(nodes, n);
	}
	params = json_object();
	for (i = 0; i < lc->parameters.n; i++)
		json_object_set_new(params, lc->parameters.keys[i],
		    json_string(lc->parameters.values[i]));
	j = json_pack("{s:s, s:o, s:s?, s:i, s:i, s:i, s:b, s:I, s:s, s:o, "
	    "s:s?, s:i, s:b}", "name", lc->name, "nodes", nodes, "primary",
	    lc->primary, "next_seq", lc->next_seq, "port", lc->port,
	    "reader_port", lc->reader_port, "automatic_failover", lc->failover,
	    "maxmemory", (json_int_t)lc->maxmemory, "persistence",
	    pers_names[lc->persistence], "parameters", params,
	    "auth_token_file", lc->token_file, "failovers", lc->failovers,
	    "created", lc->created);
	if (lc->tls)
		json_object_set_new(j, "tls", json_true());
	if (lc->acl)
		json_object_set_new(j, "acl", json_true());
	json_object_set_new(j, "restart_pending",
	    json_boolean(lc->restart_pending));
	if (lc->restore_from != NULL)
		json_object_set_new(j, "restore_from",
		    json_string(lc->restore_from));
	json_object_set_new(j, "apply_immediately",
	    json_boolean(lc->apply_immediately));
	json_object_set_new(j, "maintenance_window", json_pack("{s:i, s:i}",
	    "start", lc->maintenance_window.start, "len",
	    lc->maintenance_window.len));
	if (lc->cluster_mode) {
		json_t *shards = json_array();

		for (i = 0; i < lc->nshards; i++)
			json_array_append_new(shards, json_pack("{s:s, s:s?, "
			    "s:b}", "id", lc->shards[i]->id, "primary",
			    lc->shards[i]->primary, "removing",
			    lc->shards[i]->removing));
		json_object_set_new(j, "cluster_mode", json_pack("{s:o, s:i, "
		    "s:i}", "shards", shards, "replicas_per_node_group",
		    lc->replicas, "next_shard", lc->next_shard));
	}
	txt = json_dumps(j, JSON_INDENT(2) | JSON_SORT_KEYS);
	json_decref(j);
	path = state_path(lc);
	if ((r = mkdir_p(lc->dir, 0700)) == 0)
		r = file_write_atomic(path, txt, strlen(txt), 0600, 1);
	if (r != 0)
		xasprintf(cause, "cannot write %s: %s", path, strerror(-r));
	free(path);
	free(txt);
	return r;
}

int
lstate_load(struct lcluster *lc, char **cause)
{
	json_t		*j, *nodes, *params, *v;
	json_error_t	 jerr;
	char		*path = state_path(lc);
	const char	*k, *s;
	size_t		 i;

	j = json_load_file(path, 0, &jerr);
	if (j == NULL) {
		if (access(path, F_OK) == -1 && errno == ENOENT) {
			free(path);
			lc->exists = false;
			return 0;
		}
		xasprintf(cause, "cannot read %s: %s", path, jerr.text);
		free(path);
		return -EINVAL;
	}
	free(path);
	nodes = json_object_get(j, "nodes");
	json_array_foreach(nodes, i, v) {
		struct lnode *n;

		s = json_string_value(json_object_get(v, "id"));
		if (s == NULL)
			continue;
		n = lnode_new(lc, s, (int)json_integer_value(
		    json_object_get(v, "port")));
		if ((s = json_string_value(json_object_get(v, "run_id"))))
			n->run_id = xstrdup(s);
		n->needs_restart = json_is_true(json_object_get(v,
		    "needs_restart"));
		n->bus_port = (int)json_integer_value(json_object_get(v,
		    "bus_port"));
		if ((s = json_string_value(json_object_get(v, "shard"))))
			n->shard = xstrdup(s);
		if ((s = json_string_value(json_object_get(v, "cluster_id"))))
			n->cid = xstrdup(s);
		lc->nodes = xreallocarray(lc->nodes, lc->nnodes + 1,
		    sizeof *lc->nodes);
		lc->nodes[lc->nnodes++] = n;
	}
	if ((s = json_string_value(json_object_get(j, "primary"))))
		lc->primary = xstrdup(s);
	lc->next_seq = (int)json_integer_value(json_object_get(j, "next_seq"));
	lc->port = (int)json_integer_value(json_object_get(j, "port"));
	lc->reader_port = (int)json_integer_value(json_object_get(j,
	    "reader_port"));
	lc->failover = json_is_true(json_object_get(j, "automatic_failover"));
	lc->maxmemory = (uint64_t)json_integer_value(json_object_get(j,
	    "maxmemory"));
	s = json_string_value(json_object_get(j, "persistence"));
	for (i = 0; s != NULL && i < nitems(pers_names); i++)
		if (strcmp(s, pers_names[i]) == 0)
			lc->persistence = (enum persistence)i;
	params = json_object_get(j, "parameters");
	json_object_foreach(params, k, v)
		if (json_is_string(v))
			kvlist_add(&lc->parameters, k, json_string_value(v));
	if ((s = json_string_value(json_object_get(j, "auth_token_file"))))
		lc->token_file = xstrdup(s);
	lc->failovers = (int)json_integer_value(json_object_get(j,
	    "failovers"));
	lc->tls = json_is_true(json_object_get(j, "tls"));
	lc->acl = json_is_true(json_object_get(j, "acl"));
	lc->created = json_is_true(json_object_get(j, "created"));
	lc->restart_pending = json_is_true(json_object_get(j,
	    "restart_pending"));
	free(lc->restore_from);
	lc->restore_from = NULL;
	if ((s = json_string_value(json_object_get(j, "restore_from"))))
		lc->restore_from = xstrdup(s);
	lc->apply_immediately = json_is_true(json_object_get(j,
	    "apply_immediately"));
	v = json_object_get(j, "maintenance_window");
	lc->maintenance_window.weekly = true;
	lc->maintenance_window.start = (int)json_integer_value(
	    json_object_get(v, "start"));
	lc->maintenance_window.len = (int)json_integer_value(
	    json_object_get(v, "len"));
	if ((v = json_object_get(j, "cluster_mode")) != NULL) {
		json_t *sh;

		lc->cluster_mode = true;
		lc->replicas = (int)json_integer_value(json_object_get(v,
		    "replicas_per_node_group"));
		lc->next_shard = (int)json_integer_value(json_object_get(v,
		    "next_shard"));
		json_array_foreach(json_object_get(v, "shards"), i, sh) {
			struct lshard *x;

			if ((s = json_string_value(json_object_get(sh,
			    "id"))) == NULL)
				continue;
			x = xcalloc(1, sizeof *x);
			x->id = xstrdup(s);
			if ((s = json_string_value(json_object_get(sh,
			    "primary"))))
				x->primary = xstrdup(s);
			x->removing = json_is_true(json_object_get(sh,
			    "removing"));
			lc->shards = xreallocarray(lc->shards, lc->nshards + 1,
			    sizeof *lc->shards);
			lc->shards[lc->nshards++] = x;
		}
	}
	json_decref(j);
	lc->exists = true;
	return 0;
}

/* Ports of every node of every local cluster, from their cluster.json. */
static bool
port_taken(struct lcluster *lc, int port)
{
	const char	*data = lc->ctx->conf->local.data_dir;
	DIR		*d;
	struct dirent	*de;
	json_t		*j, *v;
	json_error_t	 jerr;
	char		*p;
	size_t		 i;
	bool		 taken = false;

	for (i = 0; i < lc->nnodes; i++)
		if (lc->nodes[i]->port == port ||
		    lc->nodes[i]->bus_port == port)
			return true;
	if ((d = opendir(data)) == NULL)
		return false;
	while (!taken && (de = readdir(d)) != NULL) {
		if (de->d_name[0] == '.' || strcmp(de->d_name, lc->name) == 0)
			continue;
		xasprintf(&p, "%s/%s/cluster.json", data, de->d_name);
		if ((j = json_load_file(p, 0, &jerr)) != NULL) {
			json_array_foreach(json_object_get(j, "nodes"), i, v)
				if (json_integer_value(json_object_get(v,
				    "port")) == port || json_integer_value(
				    json_object_get(v, "bus_port")) == port)
					taken = true;
			json_decref(j);
		}
		free(p);
	}
	closedir(d);
	return taken;
}

/* Whether something else already listens on bind:port. */
static bool
port_busy(const char *bind_addr, int port)
{
	struct sockaddr_in	 sin;
	int			 fd, one = 1;
	bool			 busy;

	memset(&sin, 0, sizeof sin);
	sin.sin_family = AF_INET;
	sin.sin_port = htons((uint16_t)port);
	if (inet_pton(AF_INET, bind_addr, &sin.sin_addr) != 1)
		sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if ((fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0)) == -1)
		return true;
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
	busy = bind(fd, (struct sockaddr *)&sin, sizeof sin) == -1;
	close(fd);
	return busy;
}

int
lcluster_alloc_port(struct lcluster *lc, char **cause)
{
	const struct dconf_local *l = &lc->ctx->conf->local;
	int			 p;

	for (p = l->port_min; p <= l->port_max; p++) {
		if (p == lc->port || p == lc->reader_port)
			continue;
		if (!port_taken(lc, p) && !port_busy(l->bind, p))
			return p;
	}
	xasprintf(cause, "no free port left in local.port_range %d-%d",
	    l->port_min, l->port_max);
	return -1;
}

int
lcluster_read_token(struct lcluster *lc, const char *file, char **cause)
{
	char	*buf;
	size_t	 len;
	int	 r;

	lsecret_free(lc->password);
	lc->password = NULL;
	if (lc->acl && lc->admin_pass == NULL && (r = lacl_ensure(lc,
	    cause)) != 0)
		return r;
	if (file == NULL)
		return 0;
	if ((r = read_file_bounded(file, 4096, &buf, &len)) != 0) {
		xasprintf(cause, "cannot read auth_token_file %s: %s", file,
		    strerror(-r));
		return r;
	}
	while (len > 0 && (buf[len - 1] == '\n' || buf[len - 1] == '\r'))
		buf[--len] = '\0';
	lc->password = lsecret_dup(buf, len);
	explicit_bzero(buf, len);
	free(buf);
	return 0;
}
