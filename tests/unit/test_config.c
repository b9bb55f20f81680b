/*
 * Unit tests of the small parsers under the spec and daemon configuration:
 * UTC windows (parse, format, overlap, contains), durations, sizes, the
 * "did you mean" word matcher, the string hash table, and the daemon's
 * configuration file (config/dconf.c) loaded from temporary files.
 *
 * Regression cases for fixed bugs say so in their comments.
 */
#include "config.h"
#include <sys/wait.h>
#include <poll.h>
#include <signal.h>
#include <unistd.h>

#include <errno.h>
#include <limits.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "ckunit.h"
#include "dconf.h"
#include "htab.h"
#include "schema.h"
#include "util.h"
#include "window.h"

/* Saturday 2024-01-06 00:00:00 UTC. */
#define SAT_0000	INT64_C(1704499200)
#define AT(day, h, m)	(SAT_0000 + (day) * 86400 + (h) * 3600 + (m) * 60)

/* Windows. */

static void
assert_daily(const char *s, int start, int len)
{
	struct window	 w;
	const char	*why = NULL;

	if (window_parse_daily(s, &w, &why) != 0)
		fail_msg("'%s' refused: %s", s, why);
	assert_false(w.weekly);
	assert_int_equal(w.start, start);
	assert_int_equal(w.len, len);
}

static void
assert_daily_bad(const char *s, const char *want_why)
{
	struct window	 w;
	const char	*why = NULL;

	if (window_parse_daily(s, &w, &why) == 0)
		fail_msg("'%s' accepted", s);
	assert_non_null(why);
	assert_string_equal(why, want_why);
}

static void
assert_weekly(const char *s, int start, int len)
{
	struct window	 w;
	const char	*why = NULL;

	if (window_parse_weekly(s, &w, &why) != 0)
		fail_msg("'%s' refused: %s", s, why);
	assert_true(w.weekly);
	assert_int_equal(w.start, start);
	assert_int_equal(w.len, len);
}

static void
assert_weekly_bad(const char *s, const char *want_why)
{
	struct window	 w;
	const char	*why = NULL;

	if (window_parse_weekly(s, &w, &why) == 0)
		fail_msg("'%s' accepted", s);
	assert_non_null(why);
	assert_string_equal(why, want_why);
}

static void
test_window_parse_daily(void **state)
{
	static const char fmt[] = "must look like hh:mm-hh:mm (UTC, 24-hour)";
	static const char short_[] = "must be at least 60 minutes long";

	(void)state;
	assert_daily("05:00-06:00", 300, 60);
	assert_daily("00:00-23:59", 0, 1439);
	/* Crossing midnight: start late, end early next day. */
	assert_daily("23:30-00:30", 1410, 60);
	assert_daily("10:00-09:00", 600, 1380);
	assert_daily("23:00-00:00", 1380, 60);

	assert_daily_bad("5:00-6:00", fmt);
	assert_daily_bad("24:00-01:00", fmt);
	assert_daily_bad("05:60-06:00", fmt);
	assert_daily_bad("05:00-06:00x", fmt);
	assert_daily_bad("05:00 - 06:00", fmt);
	assert_daily_bad("05:00", fmt);
	assert_daily_bad("", fmt);
	assert_daily_bad("ab:cd-ef:gh", fmt);
	assert_daily_bad("05:00-05:59", short_);
	assert_daily_bad("23:30-00:29", short_);
	/* Start equal to end is length 0, not 24 hours. */
	assert_daily_bad("06:00-06:00", short_);
}

static void
test_window_parse_weekly(void **state)
{
	static const char fmt[] = "must look like ddd:hh:mm-ddd:hh:mm with ddd "
	    "one of sun, mon, tue, wed, thu, fri, sat (UTC)";
	static const char short_[] = "must be at least 60 minutes long";
	static const char long_[] = "must be at most 24 hours long";

	(void)state;
	assert_weekly("sun:07:00-sun:08:00", 420, 60);
	assert_weekly("MON:03:00-Mon:04:00", 1440 + 180, 60);
	assert_weekly("wed:22:00-thu:02:00", 3 * 1440 + 1320, 240);
	/* The end of the week: Saturday night into Sunday. */
	assert_weekly("sat:23:30-sun:00:30", 6 * 1440 + 1410, 60);
	assert_weekly("sat:07:00-sun:07:00", 6 * 1440 + 420, 1440);

	assert_weekly_bad("sun:07:00-08:00", fmt);
	assert_weekly_bad("sunday:07:00-sunday:08:00", fmt);
	assert_weekly_bad("sun:7:00-sun:8:00", fmt);
	assert_weekly_bad("sun:07:00-xyz:08:00", fmt);
	assert_weekly_bad("sun:07:00-sun:08:00 ", fmt);
	assert_weekly_bad("", fmt);
	assert_weekly_bad("sun:07:00-sun:07:59", short_);
	assert_weekly_bad("sun:07:00-sun:07:00", short_);
	assert_weekly_bad("sun:07:00-mon:07:01", long_);
	assert_weekly_bad("sat:07:00-sun:08:00", long_);
	/* Backwards within a week is a window of almost a week. */
	assert_weekly_bad("mon:07:00-sun:08:00", long_);
}

static void
assert_format(const char *s, bool weekly)
{
	struct window	 w;
	const char	*why;
	char		 buf[32];

	if (weekly)
		assert_int_equal(window_parse_weekly(s, &w, &why), 0);
	else
		assert_int_equal(window_parse_daily(s, &w, &why), 0);
	window_format(&w, buf, sizeof buf);
	assert_string_equal(buf, s);
}

static void
test_window_format(void **state)
{
	struct window	 w;
	const char	*why;
	char		 buf[32];

	(void)state;
	assert_format("05:00-06:00", false);
	assert_format("23:30-00:30", false);
	assert_format("00:00-23:59", false);
	assert_format("sun:07:00-sun:08:00", true);
	assert_format("sat:23:30-sun:00:30", true);
	assert_format("fri:12:05-sat:12:05", true);
	/* Day names are written back in lowercase. */
	assert_int_equal(window_parse_weekly("TUE:01:00-TUE:02:00", &w, &why),
	    0);
	window_format(&w, buf, sizeof buf);
	assert_string_equal(buf, "tue:01:00-tue:02:00");
}

static bool
overlaps(const char *a, const char *b)
{
	struct window	 x, y;
	const char	*why;
	bool		 r1, r2;

	if (strlen(a) > 11)
		assert_int_equal(window_parse_weekly(a, &x, &why), 0);
	else
		assert_int_equal(window_parse_daily(a, &x, &why), 0);
	if (strlen(b) > 11)
		assert_int_equal(window_parse_weekly(b, &y, &why), 0);
	else
		assert_int_equal(window_parse_daily(b, &y, &why), 0);
	r1 = window_overlaps(&x, &y);
	r2 = window_overlaps(&y, &x);
	if (r1 != r2)
		fail_msg("overlap of %s and %s is not symmetric", a, b);
	return r1;
}

static void
test_window_overlaps(void **state)
{
	(void)state;
	/* Daily and daily. */
	assert_true(overlaps("05:00-06:00", "05:59-07:00"));
	assert_false(overlaps("05:00-06:00", "06:00-07:00"));
	assert_true(overlaps("23:00-01:00", "00:30-01:30"));
	assert_false(overlaps("23:00-01:00", "01:00-02:00"));
	assert_true(overlaps("10:00-09:00", "09:30-10:30"));
	assert_false(overlaps("10:00-09:00", "09:00-10:00"));
	/* Weekly and weekly, including the wrap from Saturday to Sunday. */
	assert_true(overlaps("sat:23:00-sun:01:00", "sun:00:30-sun:02:00"));
	assert_false(overlaps("sat:23:00-sun:01:00", "sun:01:00-sun:02:00"));
	assert_false(overlaps("sun:07:00-sun:08:00", "mon:07:00-mon:08:00"));
	assert_true(overlaps("fri:22:00-sat:02:00", "sat:01:00-sat:03:00"));
	/* Daily against weekly: the daily window recurs on every day. */
	assert_true(overlaps("06:30-07:30", "sun:07:00-sun:08:00"));
	assert_false(overlaps("06:00-07:00", "sun:07:00-sun:08:00"));
	assert_false(overlaps("08:00-09:00", "sun:07:00-sun:08:00"));
	assert_true(overlaps("00:00-01:00", "wed:00:30-wed:01:30"));
	assert_true(overlaps("23:00-01:00", "sat:23:30-sun:00:30"));
	assert_true(overlaps("00:00-01:00", "sat:23:30-sun:00:30"));
	assert_false(overlaps("22:00-23:00", "sat:23:30-sun:00:30"));
	assert_false(overlaps("01:00-23:00", "sat:23:30-sun:00:30"));
	/* A weekly window of 24 hours meets every daily window. */
	assert_true(overlaps("12:00-13:00", "tue:14:00-wed:14:00"));
}

static bool
contains(const char *s, int64_t t)
{
	struct window	 w;
	const char	*why;

	if (strlen(s) > 11)
		assert_int_equal(window_parse_weekly(s, &w, &why), 0);
	else
		assert_int_equal(window_parse_daily(s, &w, &why), 0);
	return window_contains(&w, t);
}

static void
test_window_contains(void **state)
{
	(void)state;
	/* Daily, over midnight; the end is exclusive. */
	assert_true(contains("23:30-00:30", AT(0, 23, 30)));
	assert_true(contains("23:30-00:30", AT(1, 0, 29)));
	assert_true(contains("23:30-00:30", AT(1, 0, 29) + 59));
	assert_false(contains("23:30-00:30", AT(1, 0, 30)));
	assert_false(contains("23:30-00:30", AT(0, 23, 29) + 59));
	assert_false(contains("23:30-00:30", AT(0, 12, 0)));
	assert_true(contains("05:00-06:00", AT(3, 5, 0)));
	assert_false(contains("05:00-06:00", AT(3, 6, 0)));
	/* Weekly, Saturday night into Sunday. */
	assert_true(contains("sat:23:30-sun:00:30", AT(0, 23, 45)));
	assert_true(contains("sat:23:30-sun:00:30", AT(1, 0, 15)));
	assert_false(contains("sat:23:30-sun:00:30", AT(1, 0, 30)));
	assert_false(contains("sat:23:30-sun:00:30", AT(0, 23, 29)));
	/* The same time a day later or earlier is outside. */
	assert_false(contains("sat:23:30-sun:00:30", AT(1, 23, 45)));
	assert_false(contains("sat:23:30-sun:00:30", AT(-1, 23, 45)));
	/* A week later it is inside again. */
	assert_true(contains("sat:23:30-sun:00:30", AT(7, 23, 45)));
	assert_true(contains("sun:07:00-sun:08:00", AT(1, 7, 0)));
	assert_false(contains("sun:07:00-sun:08:00", AT(2, 7, 0)));
}

/* Durations and sizes. */

static void
test_parse_duration(void **state)
{
	static const struct {
		const char	*s;
		uint64_t	 ms;
	} good[] = {
		{ "1500ms", 1500 },
		{ "0ms", 0 },
		{ "1s", 1000 },
		{ "30s", 30000 },
		{ "2m", 120000 },
		{ "1h", 3600000 },
		{ "1m30s", 90000 },
		{ "1h1m1s1ms", 3661001 },
		{ "90m", 5400000 },
	};
	static const char *const bad[] = {
		"", "10", "5x", "-1s", "+1s", "1.5s", " 1s", "1s ", "1S",
		"s", "ms", "1m 30s", "1m30", "1d",
	};
	uint64_t	 ms;
	size_t		 i;

	(void)state;
	for (i = 0; i < sizeof good / sizeof good[0]; i++) {
		ms = 42;
		if (parse_duration_ms(good[i].s, &ms) != 0)
			fail_msg("'%s' refused", good[i].s);
		if (ms != good[i].ms)
			fail_msg("'%s': want %llu ms, got %llu", good[i].s,
			    (unsigned long long)good[i].ms,
			    (unsigned long long)ms);
	}
	for (i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		ms = 42;
		if (parse_duration_ms(bad[i], &ms) != -EINVAL)
			fail_msg("'%s' not refused with EINVAL", bad[i]);
		assert_int_equal(ms, 42);
	}
	assert_int_equal(parse_duration_ms("99999999999999999999h", &ms),
	    -ERANGE);
}

static void
test_parse_size(void **state)
{
	static const struct {
		const char	*s;
		uint64_t	 bytes;
	} good[] = {
		{ "0", 0 },
		{ "1024", 1024 },
		{ "1k", 1000 },
		{ "1kb", 1024 },
		{ "1KB", 1024 },
		{ "1m", 1000000 },
		{ "256mb", 268435456 },
		{ "256MB", 268435456 },
		{ "1g", 1000000000 },
		{ "1gb", 1073741824 },
		{ "1024gb", 1099511627776ULL },
		{ "18446744073709551615", UINT64_MAX },
	};
	static const char *const bad[] = {
		"", "abc", "-1", "+1", " 1", "1 mb", "1tb", "mb", "1.5gb",
		"1b", "1mbb",
	};
	uint64_t	 v;
	size_t		 i;

	(void)state;
	for (i = 0; i < sizeof good / sizeof good[0]; i++) {
		v = 42;
		if (parse_size_bytes(good[i].s, &v) != 0)
			fail_msg("'%s' refused", good[i].s);
		if (v != good[i].bytes)
			fail_msg("'%s': want %llu, got %llu", good[i].s,
			    (unsigned long long)good[i].bytes,
			    (unsigned long long)v);
	}
	for (i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		v = 42;
		if (parse_size_bytes(bad[i], &v) != -EINVAL)
			fail_msg("'%s' not refused with EINVAL", bad[i]);
		assert_int_equal(v, 42);
	}
	assert_int_equal(parse_size_bytes("18446744073709551616", &v),
	    -ERANGE);
	/* 2^34 gb is 2^64 bytes. */
	assert_int_equal(parse_size_bytes("17179869184gb", &v), -ERANGE);
	assert_int_equal(parse_size_bytes("17179869183gb", &v), 0);
	assert_true(v == 17179869183ULL * 1073741824ULL);
}

/* "Did you mean". */

static void
test_closest_word(void **state)
{
	static const char *const keys[] = {
		"port", "reader_port", "engine_version", "cluster_size",
		"snapshot_window", "maintenance_window",
		"replicas_per_node_group", NULL
	};
	static const char *const short_words[] = { "abcdef", NULL };
	char	 longw[80];
	const char *r;

	(void)state;
	assert_string_equal(closest_word("port", keys), "port");
	assert_string_equal(closest_word("prot", keys), "port");
	assert_string_equal(closest_word("engine_versoin", keys),
	    "engine_version");
	assert_string_equal(closest_word("clustersize", keys),
	    "cluster_size");
	assert_string_equal(closest_word("snapshot_windows", keys),
	    "snapshot_window");
	assert_string_equal(closest_word("replica_per_nodegroup", keys),
	    "replicas_per_node_group");
	assert_null(closest_word("flavour", keys));
	assert_null(closest_word("x", keys));
	/* Short words allow two edits, no more. */
	assert_string_equal(closest_word("abcdxy", short_words), "abcdef");
	assert_null(closest_word("abcxyz", short_words));
	/* Over 64 characters nothing is compared. */
	memset(longw, 'p', sizeof longw - 1);
	longw[sizeof longw - 1] = '\0';
	assert_null(closest_word(longw, keys));
	r = closest_word("reader-port", keys);
	assert_non_null(r);
	assert_string_equal(r, "reader_port");
}

/* The hash table. */

static void *
val(size_t i)
{
	return (void *)(uintptr_t)(i + 1);
}

static void
test_htab_basic(void **state)
{
	struct htab	*h = htab_new();
	const char	*k;
	void		*v;
	size_t		 pos = 0, n = 0;

	(void)state;
	assert_null(htab_get(h, "a"));
	assert_null(htab_del(h, "a"));
	assert_null(htab_put(h, "a", val(1)));
	assert_null(htab_put(h, "b", val(2)));
	assert_ptr_equal(htab_get(h, "a"), val(1));
	/* Replacing returns the previous value and keeps the count. */
	assert_ptr_equal(htab_put(h, "a", val(3)), val(1));
	assert_ptr_equal(htab_get(h, "a"), val(3));
	assert_int_equal(htab_count(h), 2);
	/* Keys are copied. */
	{
		char key[] = "c";
		htab_put(h, key, val(4));
		key[0] = 'x';
		assert_ptr_equal(htab_get(h, "c"), val(4));
		assert_null(htab_get(h, "x"));
	}
	assert_null(htab_get(h, ""));
	htab_put(h, "", val(5));
	assert_ptr_equal(htab_get(h, ""), val(5));
	while (htab_next(h, &pos, &k, &v))
		n++;
	assert_int_equal(n, 4);
	assert_ptr_equal(htab_del(h, "a"), val(3));
	assert_null(htab_get(h, "a"));
	assert_null(htab_del(h, "a"));
	assert_int_equal(htab_count(h), 3);
	htab_free(h);
	htab_free(NULL);
}

static void
check_all(const struct htab *h, const bool *present, size_t n)
{
	char	 key[32];
	size_t	 i;
	void	*v;

	for (i = 0; i < n; i++) {
		snprintf(key, sizeof key, "cluster-%zu", i);
		v = htab_get(h, key);
		if (present[i] && v != val(i))
			fail_msg("%s lost", key);
		if (!present[i] && v != NULL)
			fail_msg("%s still found after delete", key);
	}
}

/*
 * Many keys, deleted in a scattered order: backward-shift deletion must
 * never cut a probe chain, so every remaining key stays reachable.
 */
static void
test_htab_many(void **state)
{
	enum { N = 10000 };
	struct htab	*h = htab_new();
	bool		*present = calloc(N, sizeof *present);
	char		 key[32];
	const char	*k;
	void		*v;
	size_t		 i, j, pos, seen;

	(void)state;
	assert_non_null(present);
	for (i = 0; i < N; i++) {
		snprintf(key, sizeof key, "cluster-%zu", i);
		assert_null(htab_put(h, key, val(i)));
		present[i] = true;
	}
	assert_int_equal(htab_count(h), N);
	check_all(h, present, N);
	/* 7919 is prime, so i * 7919 mod N visits every key once. */
	for (i = 0; i < N / 2; i++) {
		j = (i * 7919) % N;
		snprintf(key, sizeof key, "cluster-%zu", j);
		assert_ptr_equal(htab_del(h, key), val(j));
		present[j] = false;
		if (i % 500 == 499)
			check_all(h, present, N);
	}
	assert_int_equal(htab_count(h), N - N / 2);
	pos = 0;
	seen = 0;
	while (htab_next(h, &pos, &k, &v)) {
		assert_int_equal(sscanf(k, "cluster-%zu", &j), 1);
		assert_true(j < N && present[j]);
		assert_ptr_equal(v, val(j));
		seen++;
	}
	assert_int_equal(seen, N - N / 2);
	/* Put the deleted ones back, then remove everything. */
	for (i = 0; i < N; i++) {
		if (present[i])
			continue;
		snprintf(key, sizeof key, "cluster-%zu", i);
		assert_null(htab_put(h, key, val(i)));
		present[i] = true;
	}
	check_all(h, present, N);
	for (i = 0; i < N; i++) {
		snprintf(key, sizeof key, "cluster-%zu", N - 1 - i);
		assert_ptr_equal(htab_del(h, key), val(N - 1 - i));
	}
	assert_int_equal(htab_count(h), 0);
	pos = 0;
	assert_int_equal(htab_next(h, &pos, &k, &v), 0);
	free(present);
	htab_free(h);
}

/* The daemon configuration. */

struct dconf_case {
	const char	*name;
	const char	*text;
	const char	*want[4];	/* none: valid */
	void		(*check)(const struct dconf *, const char *dir);
};

static void
check_defaults(const struct dconf *c, const char *dir)
{
	(void)dir;
	assert_string_equal(c->clusters_dir, "/etc/cachekeeper/clusters.d");
	assert_string_equal(c->state_dir, "/var/lib/cachekeeper");
	assert_int_equal(c->resync_interval_ms, 60000);
	assert_int_equal(c->snapshot_timeout_ms, 3600000);
	assert_int_equal(c->log_level, LOG_LEVEL_INFO);
	assert_string_equal(log_level_name(c->log_level), "info");
	assert_string_equal(c->default_backend, "local");
	assert_string_equal(c->control_socket, "/run/cachekeeper/control.sock");
	assert_null(c->metrics_listen);
	assert_string_equal(c->local.redis_server, "/usr/bin/redis-server");
	assert_string_equal(c->local.bind, "127.0.0.1");
	assert_int_equal(c->local.port_min, 17000);
	assert_int_equal(c->local.port_max, 17999);
	assert_string_equal(c->local.data_dir, "/var/lib/cachekeeper/local");
	assert_int_equal(c->local.failover_after_ms, 1500);
	assert_int_equal(c->local.instance_types.n, 17);
	assert_string_equal(kvlist_get(&c->local.instance_types,
	    "cache.t4g.micro"), "512mb");
	assert_string_equal(kvlist_get(&c->local.instance_types,
	    "cache.r7g.2xlarge"), "52gb");
	assert_null(c->elasticache.region);
	assert_null(c->elasticache.endpoint);
	assert_null(c->elasticache.profile);
}

static void
check_resync_1s(const struct dconf *c, const char *dir)
{
	(void)dir;
	assert_int_equal(c->resync_interval_ms, 1000);
}

static void
check_resync_24h(const struct dconf *c, const char *dir)
{
	(void)dir;
	assert_int_equal(c->resync_interval_ms, 86400000);
}

static void
check_snapshot_timeout(const struct dconf *c, const char *dir)
{
	(void)dir;
	assert_int_equal(c->snapshot_timeout_ms, 5400000);
	assert_null(c->s3.bucket);
}

static void
check_resync_90s(const struct dconf *c, const char *dir)
{
	(void)dir;
	assert_int_equal(c->resync_interval_ms, 90000);
}

static void
check_debug(const struct dconf *c, const char *dir)
{
	(void)dir;
	assert_int_equal(c->log_level, LOG_LEVEL_DEBUG);
	assert_string_equal(log_level_name(c->log_level), "debug");
}

static void
check_node_manager_process(const struct dconf *c, const char *dir)
{
	(void)dir;
	assert_int_equal(c->local.node_manager, NODE_MANAGER_PROCESS);
}

static void
check_node_manager_default(const struct dconf *c, const char *dir)
{
	(void)dir;
	assert_int_equal(c->local.node_manager, NODE_MANAGER_AUTO);
}

static void
check_error_level(const struct dconf *c, const char *dir)
{
	(void)dir;
	assert_int_equal(c->log_level, LOG_LEVEL_ERROR);
}

static void
check_elasticache_backend(const struct dconf *c, const char *dir)
{
	(void)dir;
	assert_string_equal(c->default_backend, "elasticache");
}

static void
expect_path(const char *got, const char *dir, const char *rel)
{
	char	*want;

	assert_true(asprintf(&want, "%s/%s", dir, rel) > 0);
	assert_string_equal(got, want);
	free(want);
}

static void
check_relative(const struct dconf *c, const char *dir)
{
	expect_path(c->clusters_dir, dir, "clusters.d");
	expect_path(c->state_dir, dir, "state");
	assert_string_equal(c->control_socket, "/run/x.sock");
	expect_path(c->local.redis_server, dir, "bin/redis-server");
	expect_path(c->local.data_dir, dir, "data");
}

static void
check_relative_state(const struct dconf *c, const char *dir)
{
	/* The local data directory follows a relative state_dir. */
	expect_path(c->state_dir, dir, "var");
	expect_path(c->local.data_dir, dir, "var/local");
}

static void
check_port_range(const struct dconf *c, const char *dir)
{
	(void)dir;
	assert_int_equal(c->local.port_min, 20000);
	assert_int_equal(c->local.port_max, 20100);
}

static void
check_port_range_full(const struct dconf *c, const char *dir)
{
	(void)dir;
	assert_int_equal(c->local.port_min, 1);
	assert_int_equal(c->local.port_max, 65535);
}

static void
check_instance_types(const struct dconf *c, const char *dir)
{
	const struct kvlist	*t = &c->local.instance_types;

	(void)dir;
	/* Overridden in place, added at the end, others kept. */
	assert_int_equal(t->n, 18);
	assert_string_equal(t->keys[0], "cache.t4g.micro");
	assert_string_equal(t->values[0], "1gb");
	assert_string_equal(kvlist_get(t, "cache.t4g.small"), "1gb");
	assert_string_equal(t->keys[17], "cache.x9.huge");
	assert_string_equal(t->values[17], "64gb");
}

static void
check_endpoint(const struct dconf *c, const char *dir)
{
	(void)dir;
	assert_string_equal(c->elasticache.endpoint, "http://localhost:4566");
	assert_string_equal(c->elasticache.region, "eu-west-1");
	assert_string_equal(c->elasticache.profile, "ops");
}

static void
check_metrics_off(const struct dconf *c, const char *dir)
{
	(void)dir;
	assert_null(c->metrics_listen);
}

static void
check_metrics_on(const struct dconf *c, const char *dir)
{
	(void)dir;
	assert_string_equal(c->metrics_listen, "127.0.0.1:9100");
}

static void
check_metrics_v6(const struct dconf *c, const char *dir)
{
	(void)dir;
	assert_string_equal(c->metrics_listen, "[::1]:9100");
}

static void
check_failover(const struct dconf *c, const char *dir)
{
	(void)dir;
	assert_int_equal(c->local.failover_after_ms, 2500);
	assert_string_equal(c->local.bind, "0.0.0.0");
}

static void
check_group_root(const struct dconf *c, const char *dir)
{
	(void)dir;
	assert_true(c->control_group_set);
	assert_string_equal(c->control_group, "root");
	assert_int_equal(c->control_gid, 0);
}

static void
check_group_numeric(const struct dconf *c, const char *dir)
{
	(void)dir;
	assert_true(c->control_group_set);
	assert_string_equal(c->control_group, "4242");
	assert_int_equal(c->control_gid, 4242);
}

static void
check_group_unset(const struct dconf *c, const char *dir)
{
	(void)dir;
	assert_false(c->control_group_set);
	assert_null(c->control_group);
}

#define MSG_RESYNC \
	"resync_interval must be a duration from 1s to 24h (units ms, s, m, " \
	"h, e.g. 1500ms or 1m30s), got "
#define MSG_RANGE \
	"local.port_range must be FIRST-LAST with 1 <= FIRST <= LAST <= " \
	"65535, e.g. 17000-17999, got "
#define MSG_METRICS \
	"metrics_listen must be 'off' or HOST:PORT with PORT 1..65535, got "

static const struct dconf_case dconf_cases[] = {
	{ "empty_file_defaults", "", { NULL }, check_defaults },
	{ "comment_only_defaults", "# all defaults\n", { NULL },
	    check_defaults },
	{ "unknown_key_hint", "log_levl: debug\n",
	    { "1:1: unknown key 'log_levl' in configuration, did you mean "
	    "'log_level'?" }, NULL },
	{ "unknown_key_no_hint", "frobnicate: 1\n",
	    { "1:1: unknown key 'frobnicate' in configuration" }, NULL },
	{ "unknown_local_key", "local:\n  port_rnge: 1-2\n",
	    { "2:3: unknown key 'port_rnge' in local, did you mean "
	    "'port_range'?" }, NULL },
	{ "unknown_elasticache_key", "elasticache:\n  regoin: x\n",
	    { "2:3: unknown key 'regoin' in elasticache, did you mean "
	    "'region'?" }, NULL },
	{ "not_a_mapping", "- a\n",
	    { "1:1: configuration must be a mapping, got a list" }, NULL },
	{ "two_documents", "log_level: debug\n---\nlog_level: info\n",
	    { "3:1: the daemon configuration must be a single YAML "
	    "document" }, NULL },
	{ "yaml_syntax", "log_level: [debug\n",
	    { "2:1: YAML syntax error: did not find expected ',' or ']' while "
	    "parsing a flow sequence (line 1)" }, NULL },
	{ "resync_1s", "resync_interval: 1s\n", { NULL }, check_resync_1s },
	{ "resync_24h", "resync_interval: 24h\n", { NULL }, check_resync_24h },
	{ "resync_1m30s", "resync_interval: 1m30s\n", { NULL },
	    check_resync_90s },
	{ "snapshot_timeout_90m", "backups:\n  snapshot_timeout: 90m\n",
	    { NULL }, check_snapshot_timeout },
	{ "snapshot_timeout_too_short", "backups:\n  snapshot_timeout: 500ms\n",
	    { "2:21: backups.snapshot_timeout must be a duration from 1s to "
	    "168h (units ms, s, m, h, e.g. 1500ms or 1m30s), got '500ms'" },
	    NULL },
	{ "resync_too_short", "resync_interval: 999ms\n",
	    { "1:18: " MSG_RESYNC "'999ms'" }, NULL },
	{ "resync_too_long", "resync_interval: 25h\n",
	    { "1:18: " MSG_RESYNC "'25h'" }, NULL },
	{ "resync_no_unit", "resync_interval: 60\n",
	    { "1:18: " MSG_RESYNC "'60'" }, NULL },
	{ "resync_negative", "resync_interval: -1s\n",
	    { "1:18: " MSG_RESYNC "'-1s'" }, NULL },
	{ "resync_list", "resync_interval: [1s]\n",
	    { "1:18: " MSG_RESYNC "a list" }, NULL },
	{ "log_level_debug", "log_level: debug\n", { NULL }, check_debug },
	{ "log_level_error", "log_level: error\n", { NULL },
	    check_error_level },
	{ "log_level_unknown", "log_level: verbose\n",
	    { "1:12: log_level must be one of error, warning, notice, info or "
	    "debug, got 'verbose'" }, NULL },
	{ "log_level_case", "log_level: DEBUG\n",
	    { "1:12: log_level must be one of error, warning, notice, info or "
	    "debug, got 'DEBUG'" }, NULL },
	{ "node_manager_process", "local:\n  node_manager: process\n",
	    { NULL }, check_node_manager_process },
	{ "node_manager_default", "local:\n  port_range: 17000-17100\n",
	    { NULL }, check_node_manager_default },
	{ "node_manager_unknown", "local:\n  node_manager: docker\n",
	    { "2:17: local.node_manager must be one of auto, systemd or "
	    "process, got 'docker'" }, NULL },
	{ "default_backend_elasticache", "default_backend: elasticache\n",
	    { NULL }, check_elasticache_backend },
	{ "default_backend_unknown", "default_backend: docker\n",
	    { "1:18: default_backend must be one of local or elasticache, got "
	    "'docker'" }, NULL },
	{ "control_group_name", "control_socket_group: root\n", { NULL },
	    check_group_root },
	{ "control_group_gid", "control_socket_group: 4242\n", { NULL },
	    check_group_numeric },
	{ "control_group_default", "control_socket: /run/x.sock\n", { NULL },
	    check_group_unset },
	{ "control_group_unknown",
	    "control_socket_group: no-such-group-ck\n",
	    { "1:23: control_socket_group: no group named 'no-such-group-ck' "
	    "(a group name from getent group, or a numeric gid)" }, NULL },
	{ "control_group_negative", "control_socket_group: -1\n",
	    { "1:23: control_socket_group: no group named '-1' (a group name "
	    "from getent group, or a numeric gid)" }, NULL },
	{ "control_group_too_big", "control_socket_group: 4294967295\n",
	    { "1:23: control_socket_group: no group named '4294967295' (a "
	    "group name from getent group, or a numeric gid)" }, NULL },
	{ "control_group_empty", "control_socket_group: ''\n",
	    { "1:23: control_socket_group must not be empty" }, NULL },
	{ "control_group_list", "control_socket_group: [ops]\n",
	    { "1:23: control_socket_group must be a string, got a list" },
	    NULL },
	{ "relative_paths",
	    "clusters_dir: clusters.d\nstate_dir: state\n"
	    "control_socket: /run/x.sock\nlocal:\n  data_dir: data\n"
	    "  redis_server: bin/redis-server\n", { NULL }, check_relative },
	{ "relative_state_dir", "state_dir: var\n", { NULL },
	    check_relative_state },
	{ "empty_path", "state_dir: \"\"\n",
	    { "1:12: state_dir must not be empty" }, NULL },
	{ "empty_local_path", "local:\n  data_dir: ''\n",
	    { "2:13: local.data_dir must not be empty" }, NULL },
	{ "local_path_list", "local:\n  redis_server: [a]\n",
	    { "2:17: local.redis_server must be a string, got a list" },
	    NULL },
	{ "empty_sections_are_defaults", "local:\nelasticache:\n", { NULL },
	    check_defaults },
	{ "duplicate_key", "log_level: debug\nlog_level: info\n",
	    { "2:1: duplicate key 'log_level' in configuration (first at "
	    "line 1)" }, NULL },
	{ "path_map", "clusters_dir: {a: b}\n",
	    { "1:15: clusters_dir must be a string, got a mapping" }, NULL },
	{ "port_range_ok", "local:\n  port_range: 20000-20100\n", { NULL },
	    check_port_range },
	{ "port_range_full", "local:\n  port_range: 1-65535\n", { NULL },
	    check_port_range_full },
	{ "port_range_single", "local:\n  port_range: 17000\n",
	    { "2:15: " MSG_RANGE "'17000'" }, NULL },
	{ "port_range_reversed", "local:\n  port_range: 18000-17000\n",
	    { "2:15: " MSG_RANGE "'18000-17000'" }, NULL },
	{ "port_range_zero", "local:\n  port_range: 0-100\n",
	    { "2:15: " MSG_RANGE "'0-100'" }, NULL },
	{ "port_range_too_high", "local:\n  port_range: 1000-70000\n",
	    { "2:15: " MSG_RANGE "'1000-70000'" }, NULL },
	{ "port_range_trailing", "local:\n  port_range: 1000-2000x\n",
	    { "2:15: " MSG_RANGE "'1000-2000x'" }, NULL },
	{ "port_range_spaces", "local:\n  port_range: 1000 - 2000\n",
	    { "2:15: " MSG_RANGE "'1000 - 2000'" }, NULL },
	{ "port_range_list", "local:\n  port_range: [1, 2]\n",
	    { "2:15: " MSG_RANGE "'a collection'" }, NULL },
	{ "failover_and_bind",
	    "local:\n  failover_after: 2500ms\n  bind: 0.0.0.0\n", { NULL },
	    check_failover },
	{ "failover_too_short", "local:\n  failover_after: 50ms\n",
	    { "2:19: local.failover_after must be a duration from 100ms to "
	    "10m (units ms, s, m, h, e.g. 1500ms or 1m30s), got '50ms'" },
	    NULL },
	{ "bind_list", "local:\n  bind: [a]\n",
	    { "2:9: local.bind must be a string, got a list" }, NULL },
	{ "local_scalar", "local: 5\n",
	    { "1:8: local must be a mapping, got '5'" }, NULL },
	{ "instance_types_override",
	    "local:\n  instance_types:\n    cache.t4g.micro: 1gb\n"
	    "    cache.x9.huge: 64gb\n", { NULL }, check_instance_types },
	{ "instance_types_bad_size",
	    "local:\n  instance_types:\n    cache.t4g.micro: lots\n",
	    { "3:22: local.instance_types.cache.t4g.micro must be a size such "
	    "as 1gb, got 'lots'" }, NULL },
	{ "instance_types_list", "local:\n  instance_types: [a]\n",
	    { "2:19: local.instance_types must be a mapping, got a list" },
	    NULL },
	/*
	 * Regression (was a bug): the error was placed with the index of
	 * the kvlist, which skips keys that are not scalars, so it lands on
	 * the value of the key before ('1gb', line 4) instead of 'lots'.
	 */
	{ "instance_types_error_position",
	    "local:\n  instance_types:\n    ? [a]\n    : 1gb\n"
	    "    cache.x9.huge: lots\n",
	    { "3:7: local.instance_types: keys must be plain words, got a "
	    "list",
	    "5:20: local.instance_types.cache.x9.huge must be a size such as "
	    "1gb, got 'lots'" }, NULL },
	{ "endpoint_ok",
	    "elasticache:\n  endpoint: http://localhost:4566\n"
	    "  region: eu-west-1\n  profile: ops\n", { NULL },
	    check_endpoint },
	{ "endpoint_no_scheme", "elasticache:\n  endpoint: localhost:4566\n",
	    { "2:13: elasticache.endpoint must be an http:// or https:// URL, "
	    "got 'localhost:4566'" }, NULL },
	{ "endpoint_ftp", "elasticache:\n  endpoint: ftp://x\n",
	    { "2:13: elasticache.endpoint must be an http:// or https:// URL, "
	    "got 'ftp://x'" }, NULL },
	{ "metrics_off", "metrics_listen: off\n", { NULL },
	    check_metrics_off },
	{ "metrics_host_port", "metrics_listen: 127.0.0.1:9100\n", { NULL },
	    check_metrics_on },
	{ "metrics_ipv6", "metrics_listen: \"[::1]:9100\"\n", { NULL },
	    check_metrics_v6 },
	{ "metrics_no_port", "metrics_listen: 127.0.0.1\n",
	    { "1:17: " MSG_METRICS "'127.0.0.1'" }, NULL },
	{ "metrics_port_too_big", "metrics_listen: 127.0.0.1:99999\n",
	    { "1:17: " MSG_METRICS "'127.0.0.1:99999'" }, NULL },
	{ "metrics_port_zero", "metrics_listen: host:0\n",
	    { "1:17: " MSG_METRICS "'host:0'" }, NULL },
	{ "metrics_list", "metrics_listen: [a]\n",
	    { "1:17: metrics_listen must be a string, got a list" }, NULL },
	{ "metrics_port_garbage", "metrics_listen: host:9100abc\n",
	    { "1:17: " MSG_METRICS "'host:9100abc'" }, NULL },
	{ "metrics_no_host", "metrics_listen: \":9100\"\n",
	    { "1:17: " MSG_METRICS "':9100'" }, NULL },
	{ "metrics_empty_port", "metrics_listen: \"host:\"\n",
	    { "1:17: " MSG_METRICS "'host:'" }, NULL },
};

static void
run_dconf_case(void **state)
{
	const struct dconf_case	*c = *state;
	char			*dir = ck_tmpdir_new(), *path, *real;
	struct diags		 d;
	struct dconf		*conf;

	path = ck_write(dir, "cachekeeperd.yaml", c->text, 0644);
	real = realpath(dir, NULL);
	assert_non_null(real);
	diags_init(&d);
	conf = dconf_load(path, 0, &d);
	if (!ck_diags_match(&d, path, c->want, c->name)) {
		dconf_free(conf);
		diags_free(&d);
		free(real);
		free(path);
		ck_tmpdir_free(dir);
		fail();
	}
	if (c->want[0] == NULL) {
		assert_non_null(conf);
		assert_string_equal(conf->file, path);
		if (c->check != NULL)
			c->check(conf, real);
	} else
		assert_null(conf);
	dconf_free(conf);
	diags_free(&d);
	free(real);
	free(path);
	ck_tmpdir_free(dir);
}

/*
 * A worker forked by a process that is then killed with -9 dies too: the
 * pipe's last writer is the worker, so its EOF means the worker is gone.
 */
static void
test_child_die_with_parent(void **state)
{
	struct pollfd	 pfd;
	pid_t		 mid, leaf = 0;
	int		 p[2], status;
	char		 c;

	(void)state;
	assert_int_equal(pipe(p), 0);
	if ((mid = fork()) == 0) {
		pid_t self = getpid(), l;

		close(p[0]);
		if ((l = fork()) == 0) {
			child_die_with_parent(self);
			for (;;)
				pause();
		}
		(void)!write(p[1], &l, sizeof l);
		for (;;)
			pause();
	}
	assert_true(mid > 0);
	close(p[1]);
	assert_int_equal(read(p[0], &leaf, sizeof leaf), sizeof leaf);
	assert_true(leaf > 0);
	assert_int_equal(kill(mid, SIGKILL), 0);
	assert_int_equal(waitpid(mid, &status, 0), mid);
	pfd.fd = p[0];
	pfd.events = POLLIN;
	/* 10 s: the worker is gone in milliseconds, or never. */
	if (poll(&pfd, 1, 10000) != 1) {
		(void)kill(leaf, SIGKILL);
		fail_msg("the worker outlived its parent");
	}
	assert_int_equal(read(p[0], &c, 1), 0);
	close(p[0]);
}

static void
test_dconf_missing(void **state)
{
	char		*dir = ck_tmpdir_new(), *path;
	struct diags	 d;
	struct dconf	*c;
	const char	*want[] = {
		"0:0: cannot read: No such file or directory", NULL
	};

	(void)state;
	path = ck_path(dir, "none.yaml");
	diags_init(&d);
	c = dconf_load(path, 1, &d);
	assert_non_null(c);
	assert_int_equal(d.n, 0);
	assert_null(c->file);
	check_defaults(c, dir);
	dconf_free(c);
	assert_null(dconf_load(path, 0, &d));
	ck_assert_diags(&d, path, want, "missing, not ok");
	diags_free(&d);
	dconf_free(NULL);
	free(path);
	ck_tmpdir_free(dir);
}

/* A directory or an oversized file is an error even with missing_ok. */
static void
test_dconf_unreadable(void **state)
{
	char		*dir = ck_tmpdir_new(), *big, *buf;
	struct diags	 d;
	const char	*want_dir[] = { "0:0: cannot read: Is a directory",
	    NULL };
	const char	*want_big[] = { "0:0: cannot read: larger than 1 MiB",
	    NULL };

	(void)state;
	diags_init(&d);
	assert_null(dconf_load(dir, 1, &d));
	ck_assert_diags(&d, dir, want_dir, "directory");
	diags_clear(&d);
	buf = malloc(1024 * 1024 + 1);
	assert_non_null(buf);
	memset(buf, '#', 1024 * 1024 + 1);
	big = ck_write_len(dir, "big.yaml", buf, 1024 * 1024 + 1, 0644);
	assert_null(dconf_load(big, 1, &d));
	ck_assert_diags(&d, big, want_big, "big");
	diags_free(&d);
	free(buf);
	free(big);
	ck_tmpdir_free(dir);
}

int
main(void)
{
	static const struct CMUnitTest fixed[] = {
		cmocka_unit_test(test_window_parse_daily),
		cmocka_unit_test(test_window_parse_weekly),
		cmocka_unit_test(test_window_format),
		cmocka_unit_test(test_window_overlaps),
		cmocka_unit_test(test_window_contains),
		cmocka_unit_test(test_parse_duration),
		cmocka_unit_test(test_parse_size),
		cmocka_unit_test(test_closest_word),
		cmocka_unit_test(test_htab_basic),
		cmocka_unit_test(test_htab_many),
		cmocka_unit_test(test_child_die_with_parent),
		cmocka_unit_test(test_dconf_missing),
		cmocka_unit_test(test_dconf_unreadable),
	};
	size_t			 n = sizeof dconf_cases / sizeof dconf_cases[0];
	struct CMUnitTest	*table;
	size_t			 i;
	int			 failed;

	table = calloc(n, sizeof *table);
	if (table == NULL)
		return 1;
	for (i = 0; i < n; i++) {
		table[i].name = dconf_cases[i].name;
		table[i].test_func = run_dconf_case;
		table[i].initial_state = (void *)(uintptr_t)&dconf_cases[i];
	}
	failed = cmocka_run_group_tests_name("config", fixed, ck_group_setup,
	    ck_group_teardown);
	failed += _cmocka_run_group_tests("dconf_cases", table, n,
	    ck_group_setup, ck_group_teardown);
	free(table);
	return failed != 0;
}
