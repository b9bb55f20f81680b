/*
 * Local nodes (backends/local/node.c, node_unit.c): the version of the
 * installed redis-server, and nodes as cachekeeper-redis@ units: the
 * instance names, checked against systemd-escape(1) itself, since
 * the template's %I undoes exactly that escaping; and the choice of who
 * runs nodes where systemd is not PID 1. Booting systemd to start real
 * units is tests/integration/test_systemd.py.
 */
#include "config.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>
#include <systemd/sd-daemon.h>

#include "node.h"
#include "util.h"

/* systemd-escape --template=cachekeeper-redis@.service REL, or NULL. */
static char *
escape_ref(const char *rel)
{
	char	 line[1024], *cmd;
	FILE	*p;
	size_t	 n;

	xasprintf(&cmd, "systemd-escape --template=cachekeeper-redis@.service "
	    "-- '%s' 2>/dev/null", rel);
	p = popen(cmd, "r");
	free(cmd);
	if (p == NULL)
		return NULL;
	if (fgets(line, sizeof line, p) == NULL) {
		pclose(p);
		return NULL;
	}
	pclose(p);
	n = strcspn(line, "\n");
	line[n] = '\0';
	return xstrdup(line);
}

static void
test_names_match_systemd_escape(void **state)
{
	static const char *const rels[] = {
		"sessions/n1", "web-cache/n2", "a.b/0001", "x_y:z/shard-3-r1",
		"caf\xc3\xa9/n1", "sp ace/n1", "back\\slash/n1", ".dot/n1",
		"UPPER/Case-9",
	};
	size_t	 i;
	char	*dir, *got, *want;

	(void)state;
	if (access("/usr/bin/systemd-escape", X_OK) != 0 &&
	    access("/bin/systemd-escape", X_OK) != 0)
		skip();	/* reported as skipped: no systemd-escape here */
	for (i = 0; i < sizeof rels / sizeof rels[0]; i++) {
		xasprintf(&dir, "/var/lib/cachekeeper/local/%s", rels[i]);
		got = node_unit_name("/var/lib/cachekeeper/local/", dir);
		want = escape_ref(rels[i]);
		assert_non_null(want);
		if (got == NULL || strcmp(got, want) != 0)
			fail_msg("%s: got %s, systemd-escape says %s", rels[i],
			    got != NULL ? got : "(null)", want);
		free(got);
		free(want);
		free(dir);
	}
}

static void
test_names_outside_data_dir(void **state)
{
	(void)state;
	assert_null(node_unit_name("/var/lib/cachekeeper/local",
	    "/var/lib/cachekeeper/localx/a/n1"));
	assert_null(node_unit_name("/var/lib/cachekeeper/local",
	    "/srv/a/n1"));
	assert_null(node_unit_name("/var/lib/cachekeeper/local",
	    "/var/lib/cachekeeper/local/"));
}

static void
test_manager_without_systemd(void **state)
{
	const char	*why;
	char		*cause = NULL;

	(void)state;
	assert_int_equal(node_manager_init(NODE_MANAGER_PROCESS, "/tmp",
	    &cause), 0);
	assert_false(node_manager_units(&why));
	assert_string_equal(why, "local.node_manager is process");
	if (sd_booted() > 0) {
		node_manager_free();
		skip();	/* the rest is about machines without systemd */
	}
	/* auto: processes, and the reason says why. */
	assert_int_equal(node_manager_init(NODE_MANAGER_AUTO, "/tmp",
	    &cause), 0);
	assert_false(node_manager_units(&why));
	assert_string_equal(why, "systemd is not the init system");
	node_manager_free();
}

/* The version of a redis-server whose path a shell would choke on. */
static void
test_server_version_odd_path(void **state)
{
	char	 path[] = "/tmp/ck-node-unit-XXXXXX", *bin, *want, *got;
	FILE	*p;
	char	 line[256];

	(void)state;
	if (access("/usr/bin/redis-server", X_OK) != 0)
		skip();	/* reported as skipped: no redis-server here */
	assert_non_null(mkdtemp(path));
	xasprintf(&bin, "%s/redis 'q$x;", path);
	assert_int_equal(symlink("/usr/bin/redis-server", bin), 0);
	p = popen("/usr/bin/redis-server --version", "r");
	assert_non_null(p);
	assert_non_null(fgets(line, sizeof line, p));
	pclose(p);
	want = strstr(line, "v=");
	assert_non_null(want);
	want += 2;
	want[strcspn(want, " \n")] = '\0';
	got = node_server_version(bin);
	unlink(bin);
	rmdir(path);
	free(bin);
	assert_non_null(got);
	assert_string_equal(got, want);
	free(got);
	assert_null(node_server_version("/nonexistent/redis-server"));
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_names_match_systemd_escape),
		cmocka_unit_test(test_names_outside_data_dir),
		cmocka_unit_test(test_manager_without_systemd),
		cmocka_unit_test(test_server_version_odd_path),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
