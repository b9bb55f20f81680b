/*
 * Prometheus metrics; see metrics.h. Names follow Prometheus conventions:
 * cachekeeper_ prefix, _total for counters, base units (_seconds, _bytes).
 */
#include "config.h"

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/http.h>
#include <jansson.h>

#include "daemon.h"
#include "elasticache/elasticache.h"
#include "log.h"
#include "metrics.h"
#include "reconciler.h"
#include "util.h"

struct metrics {
	struct daemon	*d;
	struct evhttp	*http;
};

/* A label value, escaped as the text format wants. */
static void
label(struct strbuf *sb, const char *v)
{
	for (; v != NULL && *v != '\0'; v++) {
		if (*v == '\\' || *v == '"')
			strbuf_printf(sb, "\\%c", *v);
		else if (*v == '\n')
			strbuf_puts(sb, "\\n");
		else
			strbuf_add(sb, v, 1);
	}
}

static void
head(struct strbuf *sb, const char *name, const char *type, const char *help)
{
	strbuf_printf(sb, "# HELP %s %s\n# TYPE %s %s\n", name, help, name,
	    type);
}

static void
one_label(struct strbuf *sb, const char *name, const char *k,
    const char *v, double value)
{
	strbuf_printf(sb, "%s{%s=\"", name, k);
	label(sb, v);
	strbuf_printf(sb, "\"} %.17g\n", value);
}

static void
two_labels(struct strbuf *sb, const char *name, const char *k1,
    const char *v1, const char *k2, const char *v2, double value)
{
	strbuf_printf(sb, "%s{%s=\"", name, k1);
	label(sb, v1);
	strbuf_printf(sb, "\",%s=\"", k2);
	label(sb, v2);
	strbuf_printf(sb, "\"} %.17g\n", value);
}

static void
process_metrics(struct strbuf *sb)
{
	FILE		*f;
	char		 line[256];
	long long	 rss = 0;
	unsigned long	 ut = 0, st = 0;
	unsigned long long start = 0;
	int		 fds = 0;
	DIR		*dir;
	struct dirent	*de;
	long		 tick = sysconf(_SC_CLK_TCK);

	if ((f = fopen("/proc/self/status", "r")) != NULL) {
		while (fgets(line, sizeof line, f) != NULL)
			if (strncmp(line, "VmRSS:", 6) == 0)
				rss = strtoll(line + 6, NULL, 10) * 1024;
		fclose(f);
	}
	if ((f = fopen("/proc/self/stat", "r")) != NULL) {
		char buf[1024], *p;
		if (fgets(buf, sizeof buf, f) != NULL &&
		    (p = strrchr(buf, ')')) != NULL)
			(void)sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u "
			    "%*u %*u %*u %lu %lu %*d %*d %*d %*d %*d %*d %llu",
			    &ut, &st, &start);
		fclose(f);
	}
	if ((dir = opendir("/proc/self/fd")) != NULL) {
		while ((de = readdir(dir)) != NULL)
			if (de->d_name[0] != '.')
				fds++;
		closedir(dir);
		fds--;		/* the one opendir holds */
	}
	head(sb, "process_resident_memory_bytes", "gauge", "Resident memory "
	    "size in bytes.");
	strbuf_printf(sb, "process_resident_memory_bytes %lld\n", rss);
	head(sb, "process_open_fds", "gauge", "Number of open file "
	    "descriptors.");
	strbuf_printf(sb, "process_open_fds %d\n", fds);
	head(sb, "process_cpu_seconds_total", "counter", "Total user and "
	    "system CPU time spent in seconds.");
	strbuf_printf(sb, "process_cpu_seconds_total %.2f\n",
	    tick > 0 ? (double)(ut + st) / (double)tick : 0.0);
	(void)start;
}

/* Per cluster, from its status: phase, lag, nodes, failovers, backups. */
static void
cluster_metrics(struct daemon *d, struct strbuf *sb, size_t *by_phase)
{
	struct strbuf	 phase, lag, up, rlag, fo, backup, serr;
	size_t		 pos = 0, i, k;
	const char	*name;
	void		*v;

	strbuf_init(&phase);
	strbuf_init(&lag);
	strbuf_init(&up);
	strbuf_init(&rlag);
	strbuf_init(&fo);
	strbuf_init(&backup);
	strbuf_init(&serr);
	while (htab_next(d->reconcilers, &pos, &name, &v)) {
		json_t		*ep = reconciler_endpoints(v), *nodes, *n;
		enum phase	 ph = reconciler_phase(v);
		long long	 primary_off = -1;
		const char	*lb;
		int64_t		 t;

		by_phase[ph]++;
		for (k = 0; k < PHASE__COUNT; k++) {
			strbuf_puts(&phase, "cachekeeper_cluster_phase{"
			    "cluster=\"");
			label(&phase, name);
			strbuf_printf(&phase, "\",phase=\"%s\"} %d\n",
			    phase_name((enum phase)k), ph == (enum phase)k);
		}
		one_label(&lag, "cachekeeper_cluster_generation_lag",
		    "cluster", name, reconciler_generation_lag(v));
		one_label(&serr, "cachekeeper_cluster_spec_errors", "cluster",
		    name, (double)reconciler_spec_error_count(v));
		if (json_is_integer(json_object_get(ep, "failovers")))
			one_label(&fo, "cachekeeper_failovers_total",
			    "cluster", name, (double)json_integer_value(
			    json_object_get(ep, "failovers")));
		nodes = json_object_get(ep, "nodes");
		json_array_foreach(nodes, i, n) {
			const char *role = json_string_value(json_object_get(n,
			    "role"));
			if (role != NULL && strcmp(role, "primary") == 0)
				primary_off = json_integer_value(
				    json_object_get(n, "offset"));
		}
		json_array_foreach(nodes, i, n) {
			const char *id = json_string_value(json_object_get(n,
			    "id"));
			const char *role = json_string_value(json_object_get(n,
			    "role"));
			long long off = json_integer_value(json_object_get(n,
			    "offset"));
			two_labels(&up, "cachekeeper_node_up", "cluster", name,
			    "node", id, json_is_true(json_object_get(n, "up")));
			if (role != NULL && strcmp(role, "replica") == 0 &&
			    primary_off >= 0)
				two_labels(&rlag,
				    "cachekeeper_replication_lag_bytes",
				    "cluster", name, "node", id,
				    (double)(primary_off > off ? primary_off -
				    off : 0));
		}
		lb = json_string_value(json_object_get(json_object_get(ep,
		    "backups"), "last_success"));
		if ((t = ecapi_parse_iso8601(lb)) > 0)
			one_label(&backup,
			    "cachekeeper_last_backup_timestamp_seconds",
			    "cluster", name, (double)t);
	}
	head(sb, "cachekeeper_cluster_phase", "gauge", "1 for the phase each "
	    "cluster is in, 0 for the others.");
	strbuf_puts(sb, phase.s ? phase.s : "");
	head(sb, "cachekeeper_cluster_generation_lag", "gauge", "1 while a "
	    "cluster's spec generation is not yet the one observed in sync.");
	strbuf_puts(sb, lag.s ? lag.s : "");
	head(sb, "cachekeeper_cluster_spec_errors", "gauge", "Errors in the "
	    "spec of each cluster (its last good spec stays in force).");
	strbuf_puts(sb, serr.s ? serr.s : "");
	head(sb, "cachekeeper_failovers_total", "counter", "Automatic and "
	    "controlled failovers of each cluster.");
	strbuf_puts(sb, fo.s ? fo.s : "");
	head(sb, "cachekeeper_node_up", "gauge", "1 when a node answers.");
	strbuf_puts(sb, up.s ? up.s : "");
	head(sb, "cachekeeper_replication_lag_bytes", "gauge", "How far each "
	    "replica's replication offset is behind its primary's.");
	strbuf_puts(sb, rlag.s ? rlag.s : "");
	head(sb, "cachekeeper_last_backup_timestamp_seconds", "gauge", "When "
	    "the last successful backup of each cluster finished.");
	strbuf_puts(sb, backup.s ? backup.s : "");
	strbuf_free(&phase);
	strbuf_free(&lag);
	strbuf_free(&up);
	strbuf_free(&rlag);
	strbuf_free(&fo);
	strbuf_free(&backup);
	strbuf_free(&serr);
}

static void
stats_metrics(struct daemon *d, struct strbuf *sb)
{
	const struct ctl_stats	*st = &d->env.stats;
	const struct ecapi_stats *ec = elasticache_stats();
	uint64_t		 cum = 0;
	int			 b, op, i;

	head(sb, "cachekeeper_reconcile_duration_seconds", "histogram",
	    "Time from observing a cluster to the end of the step it led "
	    "to.");
	for (i = 0; i < CTL_HIST_BUCKETS; i++) {
		cum += st->hist[i];
		strbuf_printf(sb, "cachekeeper_reconcile_duration_seconds_bucket"
		    "{le=\"%g\"} %llu\n", ctl_hist_bounds[i],
		    (unsigned long long)cum);
	}
	cum += st->hist[CTL_HIST_BUCKETS];
	strbuf_printf(sb, "cachekeeper_reconcile_duration_seconds_bucket"
	    "{le=\"+Inf\"} %llu\n", (unsigned long long)cum);
	strbuf_printf(sb, "cachekeeper_reconcile_duration_seconds_sum %.6f\n"
	    "cachekeeper_reconcile_duration_seconds_count %llu\n",
	    st->hist_sum, (unsigned long long)st->hist_count);
	head(sb, "cachekeeper_backend_calls_total", "counter", "Calls into "
	    "the backends by operation and result.");
	for (b = 0; b < CTL_MAX_BACKENDS && st->backends[b] != NULL; b++)
		for (op = 0; op < CTL_OPS; op++)
			for (i = 0; i < 2; i++) {
				if (st->calls[b][op][i] == 0)
					continue;
				strbuf_printf(sb, "cachekeeper_backend_calls_"
				    "total{backend=\"%s\",operation=\"%s\","
				    "result=\"%s\"} %llu\n", st->backends[b],
				    ctl_op_name(op), i ? "error" : "ok",
				    (unsigned long long)st->calls[b][op][i]);
			}
	head(sb, "cachekeeper_backend_retries_total", "counter", "Remote "
	    "calls sent again after throttling or a transient error.");
	head(sb, "cachekeeper_backend_throttles_total", "counter", "Remote "
	    "calls the provider throttled.");
	head(sb, "cachekeeper_aws_requests_total", "counter", "ElastiCache "
	    "API requests sent (retries included) and their outcome.");
	if (ec != NULL) {
		strbuf_printf(sb, "cachekeeper_backend_retries_total{backend="
		    "\"elasticache\"} %llu\n", (unsigned long long)ec->retries);
		strbuf_printf(sb, "cachekeeper_backend_throttles_total{backend="
		    "\"elasticache\"} %llu\n",
		    (unsigned long long)ec->throttled);
		strbuf_printf(sb, "cachekeeper_aws_requests_total{result="
		    "\"sent\"} %llu\ncachekeeper_aws_requests_total{result="
		    "\"ok\"} %llu\ncachekeeper_aws_requests_total{result="
		    "\"error\"} %llu\n", (unsigned long long)ec->calls,
		    (unsigned long long)ec->ok, (unsigned long long)ec->errors);
	}
}

void
metrics_render(struct daemon *d, struct strbuf *sb)
{
	size_t	 by_phase[PHASE__COUNT] = { 0 };
	int	 k;

	head(sb, "cachekeeper_info", "gauge", "The daemon's version.");
	strbuf_printf(sb, "cachekeeper_info{version=\"%s\"} 1\n",
	    PACKAGE_VERSION);
	cluster_metrics(d, sb, by_phase);
	head(sb, "cachekeeper_clusters", "gauge", "Clusters by phase.");
	for (k = 0; k < PHASE__COUNT; k++)
		strbuf_printf(sb, "cachekeeper_clusters{phase=\"%s\"} %zu\n",
		    phase_name((enum phase)k), by_phase[k]);
	head(sb, "cachekeeper_spec_errors", "gauge", "Errors in spec files at "
	    "the last scan.");
	strbuf_printf(sb, "cachekeeper_spec_errors %zu\n", d->spec_errors);
	head(sb, "cachekeeper_invalid_spec_files", "gauge", "Spec files that "
	    "failed validation at the last scan.");
	strbuf_printf(sb, "cachekeeper_invalid_spec_files %zu\n",
	    d->invalid_files);
	stats_metrics(d, sb);
	process_metrics(sb);
}

static void
handle(struct evhttp_request *req, void *arg)
{
	struct metrics	*m = arg;
	struct evbuffer	*b;
	struct strbuf	 sb;
	const char	*uri = evhttp_request_get_uri(req);

	if (strcmp(uri, "/metrics") != 0 && strncmp(uri, "/metrics?", 9) != 0) {
		evhttp_send_error(req, 404, "see /metrics");
		return;
	}
	strbuf_init(&sb);
	metrics_render(m->d, &sb);
	b = evbuffer_new();
	evbuffer_add(b, sb.s ? sb.s : "", sb.len);
	evhttp_add_header(evhttp_request_get_output_headers(req),
	    "Content-Type", "text/plain; version=0.0.4");
	evhttp_send_reply(req, 200, "OK", b);
	evbuffer_free(b);
	strbuf_free(&sb);
}

struct metrics *
metrics_start(struct daemon *d)
{
	const char	*l = d->conf->metrics_listen;
	struct metrics	*m;
	char		*host, *colon;
	int		 port;

	if (l == NULL)
		return NULL;
	host = xstrdup(l);
	colon = strrchr(host, ':');
	*colon = '\0';
	port = atoi(colon + 1);
	/* [::1]:9540 */
	if (host[0] == '[' && host[strlen(host) - 1] == ']') {
		memmove(host, host + 1, strlen(host));
		host[strlen(host) - 1] = '\0';
	}
	m = xcalloc(1, sizeof *m);
	m->d = d;
	m->http = evhttp_new(d->base);
	evhttp_set_timeout(m->http, 10);
	evhttp_set_max_body_size(m->http, 4096);
	evhttp_set_allowed_methods(m->http, EVHTTP_REQ_GET | EVHTTP_REQ_HEAD);
	evhttp_set_gencb(m->http, handle, m);
	if (evhttp_bind_socket(m->http, host, (ev_uint16_t)port) != 0) {
		log_warn("metrics_listen %s: cannot listen", l);
		metrics_free(m);
		free(host);
		return NULL;
	}
	log_info("metrics on http://%s/metrics", l);
	free(host);
	return m;
}

void
metrics_free(struct metrics *m)
{
	if (m == NULL)
		return;
	if (m->http != NULL)
		evhttp_free(m->http);
	free(m);
}
