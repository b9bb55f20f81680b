/*
 * bench/load: how cachekeeperd copes with a large fleet.
 *
 *  1. Load: 10,000 cluster specs in 1,000 files (10 per file, nested in 20
 *     directories): time to scan, parse, validate, resolve and plan every
 *     cluster, and the peak RSS of doing so. Reference, same run and same
 *     files: PyYAML's libyaml-based CSafeLoader only parsing them (no
 *     validation, no plans), when /usr/bin/python3 has it.
 *  2. Latency: with that fleet loaded in a real daemon (same code as
 *     cachekeeperd), rename a new version of one file into place 200
 *     times and measure until its reconciler holds the new spec.
 *
 * Targets on a 2-core machine: load <= 1 s, RSS <= 64 MiB, p99 <= 50 ms.
 * It prints figures; it is not a test and never fails on a target.
 */
#include "config.h"

#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "daemon.h"
#include "log.h"
#include "plan.h"
#include "specdir.h"
#include "test_backend.h"
#include "util.h"

#define NFILES		1000
#define PER_FILE	10
#define NDIRS		20
#define RENAMES		200

static void
write_spec(FILE *f, int id, int variant)
{
	if (id % 3 == 0)
		fprintf(f, "apiVersion: cachekeeper/v1\nkind: RedisCluster\n"
		    "metadata:\n  name: shard-%05d\n  labels: {team: t%d}\n"
		    "spec:\n  backend: local\n  engine_version: \"7.0\"\n"
		    "  instance_type: cache.r7g.large\n  port: %d\n"
		    "  cluster_mode:\n    enabled: true\n"
		    "    num_node_groups: %d\n    replicas_per_node_group: 1\n"
		    "  snapshot_window: \"03:00-04:00\"\n"
		    "  snapshot_retention_limit: 5\n"
		    "  maintenance_window: \"sun:05:00-sun:06:00\"\n"
		    "  parameters: {maxmemory-policy: allkeys-lru}\n"
		    "  tags: {env: prod, owner: team-%d}\n---\n", id, id % 40,
		    20000 + (id % 20000) + variant, 3 + variant % 5, id % 40);
	else
		fprintf(f, "apiVersion: cachekeeper/v1\nkind: RedisCluster\n"
		    "metadata:\n  name: group-%05d\nspec:\n  backend: local\n"
		    "  cluster_size: %d\n  port: %d\n"
		    "  snapshot_window: \"06:00-07:00\"\n"
		    "  maintenance_window: \"sat:07:00-sat:08:00\"\n"
		    "  local: {maxmemory: 256mb, persistence: aof}\n---\n", id,
		    2 + (id + variant) % 4, 30000 + (id % 20000) + variant);
}

static char *
file_path(const char *root, int i)
{
	char	*p;

	xasprintf(&p, "%s/team-%02d/clusters-%04d.yaml", root, i % NDIRS, i);
	return p;
}

static void
write_file(const char *root, int i, int variant)
{
	char	*p = file_path(root, i), *tmp;
	FILE	*f;
	int	 k;

	xasprintf(&tmp, "%s/team-%02d/.tmp-%04d", root, i % NDIRS, i);
	if ((f = fopen(tmp, "w")) == NULL) {
		perror(tmp);
		exit(1);
	}
	for (k = 0; k < PER_FILE; k++)
		write_spec(f, i * PER_FILE + k, variant);
	fclose(f);
	if (rename(tmp, p) == -1) {
		perror(p);
		exit(1);
	}
	free(tmp);
	free(p);
}

static void
make_tree(const char *root)
{
	char	*d;
	int	 i;

	for (i = 0; i < NDIRS; i++) {
		xasprintf(&d, "%s/team-%02d", root, i);
		mkdir_p(d, 0755);
		free(d);
	}
	for (i = 0; i < NFILES; i++)
		write_file(root, i, 0);
}

static double
peak_rss_mib(void)
{
	struct rusage	 ru;

	getrusage(RUSAGE_SELF, &ru);
	return (double)ru.ru_maxrss / 1024.0;
}

/* Load, validate, resolve and plan, in a child so RSS is its own. */
static void
bench_load(const char *root)
{
	pid_t	 pid;
	int	 status, pfd[2];
	double	 res[3];

	if (pipe(pfd) == -1 || (pid = fork()) == -1) {
		perror("fork");
		exit(1);
	}
	if (pid == 0) {
		struct spec_opts	 o = { "local", NULL };
		struct specdir		*sd;
		struct desired_set	 ds;
		struct plan		 p;
		uint64_t		 t0 = clock_mono_us();
		size_t			 i, steps = 0;

		sd = specdir_new(root, &o);
		specdir_scan(sd);
		specdir_resolve(sd, NULL, NULL, &ds);
		for (i = 0; i < ds.n; i++) {
			plan_compute(ds.v[i].spec, NULL, false, clock_wall_s(),
			    &p);
			steps += p.n;
			plan_free(&p);
		}
		res[0] = (double)(clock_mono_us() - t0) / 1e6;
		res[1] = peak_rss_mib();
		res[2] = (double)ds.n + (double)ds.file_errors.n * 1e6 +
		    (steps == ds.n ? 0 : 1e9);
		(void)!write(pfd[1], res, sizeof res);
		_exit(0);
	}
	close(pfd[1]);
	if (read(pfd[0], res, sizeof res) != sizeof res) {
		fprintf(stderr, "load child failed\n");
		exit(1);
	}
	waitpid(pid, &status, 0);
	close(pfd[0]);
	printf("load: %d specs in %d files: %.3f s (target <= 1 s), peak RSS "
	    "%.1f MiB (target <= 64 MiB)%s\n", NFILES * PER_FILE, NFILES,
	    res[0], res[1], res[2] == NFILES * PER_FILE ? "" :
	    "  ** unexpected result count **");

	/* The reference: PyYAML with libyaml, parsing only. */
	char *cmd;
	xasprintf(&cmd, "/usr/bin/python3 -c 'import glob,sys,time,yaml\n"
	    "t=time.monotonic()\nn=0\n"
	    "for p in glob.glob(\"%s/*/*.yaml\"):\n"
	    "  with open(p) as f: n+=len([d for d in yaml.load_all(f, "
	    "Loader=yaml.CSafeLoader) if d])\n"
	    "print(\"%%.3f %%d\" %% (time.monotonic()-t, n))' 2>/dev/null",
	    root);
	FILE *pp = popen(cmd, "r");
	double ref = 0;
	int n = 0;
	if (pp != NULL && fscanf(pp, "%lf %d", &ref, &n) == 2 && ref > 0)
		printf("load: reference PyYAML CSafeLoader, parse only: %.3f s "
		    "for %d documents; cachekeeper/reference time ratio %.2f "
		    "(lower is better)\n", ref, n, res[0] / ref);
	else
		printf("load: reference PyYAML unavailable, ratio skipped\n");
	if (pp != NULL)
		pclose(pp);
	free(cmd);
}

static int
u64cmp(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

	return x < y ? -1 : x > y;
}

/* Rename-to-reconciler latency in a real daemon instance. */
static void
bench_latency(const char *tmp, const char *root)
{
	struct daemon		*d;
	struct reconciler	*r;
	char			*conf, *state;
	FILE			*f;
	uint64_t		 lat[RENAMES], t0, before;
	int			 i;
	uint64_t		 load0;

	xasprintf(&conf, "%s/cachekeeperd.yaml", tmp);
	xasprintf(&state, "%s/state", tmp);
	f = fopen(conf, "w");
	fprintf(f, "clusters_dir: %s\nstate_dir: %s\nresync_interval: 1h\n"
	    "log_level: warning\ncontrol_socket: off\n", root, state);
	fclose(f);
	log_init(LOG_LEVEL_WARNING);
	d = daemon_new(conf, false);
	load0 = clock_mono_us();
	if (daemon_start(d) != 0) {
		fprintf(stderr, "daemon_start failed\n");
		exit(1);
	}
	/* Let the first reconcile of every cluster run. */
	while (event_base_loop(d->base, EVLOOP_NONBLOCK) == 0 &&
	    clock_mono_us() - load0 < 30000000) {
		size_t pos = 0, pending = 0;
		const char *k;
		void *v;
		while (htab_next(d->reconcilers, &pos, &k, &v))
			if (reconciler_phase(v) != PHASE_PENDING ||
			    reconciler_spec_updates(v) == 0)
				pending++;
		if (pending == 0)
			break;
	}
	printf("latency: daemon started with %zu clusters in %.2f s\n",
	    htab_count(d->reconcilers),
	    (double)(clock_mono_us() - load0) / 1e6);
	for (i = 0; i < RENAMES; i++) {
		int file = (i * 37) % NFILES;
		char name[32];

		snprintf(name, sizeof name, "%s-%05d", file * PER_FILE % 3 ?
		    "group" : "shard", file * PER_FILE);
		r = htab_get(d->reconcilers, name);
		before = reconciler_spec_updates(r);
		t0 = clock_mono_us();
		write_file(root, file, i + 1);
		while (reconciler_spec_updates(r) == before) {
			event_base_loop(d->base, EVLOOP_ONCE);
			if (clock_mono_us() - t0 > 5000000) {
				fprintf(stderr, "no update of %s after 5 s (rename %d)\n", name, i);
				exit(1);
			}
		}
		lat[i] = clock_mono_us() - t0;
		/* Let the coalescing window pass, as separate commits would. */
		uint64_t idle = clock_mono_us();
		while (clock_mono_us() - idle < 110000)
			event_base_loop(d->base, EVLOOP_NONBLOCK);
	}
	qsort(lat, RENAMES, sizeof lat[0], u64cmp);
	printf("latency: %d renames, rename to reconciler notified: median "
	    "%.2f ms, p99 %.2f ms, max %.2f ms (target p99 <= 50 ms)\n",
	    RENAMES, lat[RENAMES / 2] / 1000.0,
	    lat[RENAMES * 99 / 100] / 1000.0, lat[RENAMES - 1] / 1000.0);
	printf("latency: daemon peak RSS with %zu clusters: %.1f MiB\n",
	    htab_count(d->reconcilers), peak_rss_mib());
	daemon_free(d);
	free(conf);
	free(state);
}

int
main(int argc, char **argv)
{
	char	 tmpl[] = "/tmp/ck-bench-XXXXXX", *root, *cmd;
	const char *tmp;

	if ((tmp = mkdtemp(tmpl)) == NULL) {
		perror("mkdtemp");
		return 1;
	}
	xasprintf(&root, "%s/specs", tmp);
	make_tree(root);
	bench_load(root);
	/*
	 * The daemon measured must not start 10,000 clusters of real
	 * redis-server nodes: the in-memory test backend stands in for
	 * "local" here (the specs name local, as users' would).
	 */
	{
		static struct backend	 fake;

		fake = backend_test;
		fake.name = "local";
		backend_register(&fake);
	}
	bench_latency(tmp, root);
	xasprintf(&cmd, "rm -rf '%s'", tmp);
	if (system(cmd) != 0)
		fprintf(stderr, "could not remove %s\n", tmp);
	free(cmd);
	free(root);
	return 0;
}
