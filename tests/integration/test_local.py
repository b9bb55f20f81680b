#!/usr/bin/python3
"""The local backend end to end: real redis-server nodes started by the
real daemon, a primary endpoint that follows failovers, scaling, restarts,
deletion and auth. Every node a test's daemon started is stopped by its pid
when the test ends (cklib.kill_nodes)."""

import json
import os
import signal
import shutil
import socket
import threading
import time

import cklib
from cklib import DaemonTest, spec, wait_for, DAEMON
from resp import Client, RedisError

REDIS = shutil.which("redis-server") or "/usr/bin/redis-server"


class LocalTest(DaemonTest):

    def setUp(self):
        super().setUp()
        if not os.access(REDIS, os.X_OK):
            self.skipTest("redis-server is not installed "
                          "(scripts/install-deps installs it)")
        self.base = cklib.free_port_block()
        self.port = self.base + 100          # primary endpoint
        self.reader = self.base + 101

    def start(self, failover_after="1500ms", extra_conf=""):
        d = self.daemon(binary=DAEMON)
        with open(d.conf, "w") as f:
            f.write("clusters_dir: %s\nstate_dir: %s\nresync_interval: 5s\n"
                    "local:\n  port_range: %d-%d\n  failover_after: %s\n%s"
                    % (d.specs, d.state, self.base, self.base + 99,
                       failover_after, extra_conf))
        d.start()
        return d

    def group(self, name="web", size=3, extra=""):
        return spec(name, backend="local", extra="cluster_size: %d\n"
                    "port: %d\n%s" % (size, self.port, extra))

    def wait_available(self, d, name="web", nodes=None, timeout=20):
        def ok():
            st = d.status(name)
            if not st or st["phase"] != "available":
                return None
            if st["observed_generation"] != st["generation"]:
                return None
            ns = st["endpoints"].get("nodes", [])
            if nodes is not None and len(ns) != nodes:
                return None
            return st
        d.alive()
        return wait_for(ok, timeout, what="%s available with %s nodes" %
                        (name, nodes))

    def endpoint(self, password=None):
        return Client(port=self.port, password=password)

    def write_until_ok(self, key, value, timeout=10, password=None):
        """Write through the endpoint until it works; return seconds."""
        t0 = time.monotonic()
        deadline = t0 + timeout * cklib.SLOW
        while time.monotonic() < deadline:
            try:
                with self.endpoint(password) as c:
                    c.call("SET", key, value)
                    return time.monotonic() - t0
            except (OSError, ConnectionError, RedisError):
                time.sleep(0.05)
        raise AssertionError("no successful write within %ds" % timeout)

    def node(self, st, role):
        return [n for n in st["endpoints"]["nodes"] if n["role"] == role]

    def test_create_replicates_and_reports(self):
        d = self.start()
        d.write("web.yaml", self.group(size=3))
        st = self.wait_available(d, nodes=3)
        self.assertEqual(st["endpoints"]["primary"], "127.0.0.1:%d" %
                         self.port)
        self.assertEqual(st["endpoints"]["reader"], "127.0.0.1:%d" %
                         self.reader)
        self.assertEqual(len(self.node(st, "primary")), 1)
        replicas = self.node(st, "replica")
        self.assertEqual(len(replicas), 2)
        for i in range(100):
            self.write_until_ok("k%d" % i, "v%d" % i)
        with self.endpoint() as c:
            self.assertEqual(c.info("replication")["role"], "master")
            offset = int(c.info("replication")["master_repl_offset"])
        for r in replicas:
            port = int(r["address"].split(":")[1])
            with Client(port=port) as c:
                wait_for(lambda: int(c.info("replication")[
                    "slave_repl_offset"]) >= offset, what="replica caught up")
                self.assertEqual(c.call("GET", "k99"), "v99")
                self.assertEqual(c.info("replication")["role"], "slave")
        # The reader endpoint serves reads from a replica.
        with Client(port=self.reader) as c:
            self.assertEqual(c.info("replication")["role"], "slave")
            self.assertEqual(c.call("GET", "k5"), "v5")

    def test_scale_up_and_down_with_writer(self):
        d = self.start()
        d.write("web.yaml", self.group(size=3))
        self.wait_available(d, nodes=3)
        acked = {}
        stop = threading.Event()

        def writer():
            i = 0
            c = None
            while not stop.is_set():
                try:
                    if c is None:
                        c = self.endpoint()
                    c.call("SET", "w%d" % i, str(i))
                    acked["w%d" % i] = str(i)
                    i += 1
                except (OSError, ConnectionError, RedisError):
                    c = None
                    time.sleep(0.02)
        t = threading.Thread(target=writer)
        t.start()
        try:
            d.write("web.yaml", self.group(size=5))
            self.wait_available(d, nodes=5, timeout=30)
            d.write("web.yaml", self.group(size=2))
            self.wait_available(d, nodes=2, timeout=30)
        finally:
            stop.set()
            t.join()
        self.assertGreater(len(acked), 100)
        with self.endpoint() as c:
            for k, v in acked.items():
                self.assertEqual(c.call("GET", k), v, k)

    def failover(self, sig):
        d = self.start(failover_after="1s")
        d.write("web.yaml", self.group(size=3))
        st = self.wait_available(d, nodes=3)
        # Replication is asynchronous: a write acknowledged by the primary
        # alone can be lost in a failover. WAIT for both replicas, on the
        # connection that wrote (WAIT only covers that client's own writes:
        # on a new connection it returns at once), then it must survive.
        with self.endpoint() as c:
            c.call("SET", "before", "1")
            self.assertEqual(c.call("WAIT", 2, 5000), 2)
        old = self.node(st, "primary")[0]
        os.kill(old["pid"], sig)
        t0 = time.monotonic()
        took = self.write_until_ok("after", "2", timeout=15)
        st = wait_for(lambda: (d.status("web")["endpoints"]["failovers"] == 1
                               and d.status("web")), what="failover counted")
        new = self.node(st, "primary")[0]
        self.assertNotEqual(new["id"], old["id"])
        self.assertLess(took, 10)
        with self.endpoint() as c:
            self.assertEqual(c.call("GET", "before"), "1")
        d.wait_log("failover: %s promoted to primary in place of %s" %
                   (new["id"], old["id"]))
        return d, old, new, t0

    def test_kill_primary_fails_over(self):
        d, old, new, _ = self.failover(signal.SIGKILL)
        # The old primary comes back as a replica of the new one.
        def back():
            st = d.status("web")
            n = [x for x in st["endpoints"]["nodes"] if x["id"] == old["id"]]
            return n and n[0]["role"] == "replica" and n[0]["synced"] and \
                st["phase"] == "available"
        wait_for(back, 20, what="old primary back as replica")
        port = int(old["address"].split(":")[1])
        with Client(port=port) as c:
            wait_for(lambda: c.info("replication")["role"] == "slave",
                     what="old primary is a replica")
            self.assertEqual(c.info("replication")["master_port"],
                             new["address"].split(":")[1])

    def test_hung_primary_fails_over_and_is_demoted(self):
        d, old, new, _ = self.failover(signal.SIGSTOP)
        os.kill(old["pid"], signal.SIGCONT)
        port = int(old["address"].split(":")[1])

        def demoted():
            with Client(port=port) as c:
                return c.info("replication")["role"] == "slave"
        wait_for(demoted, 10, what="old primary demoted after SIGCONT")
        # Never two primaries behind the endpoint.
        for _ in range(20):
            with self.endpoint() as c:
                self.assertEqual(c.info("server")["tcp_port"],
                                 new["address"].split(":")[1])

    def test_no_failover_restarts_primary_in_place(self):
        d = self.start(failover_after="500ms")
        d.write("web.yaml", self.group(size=2, extra=
                "enable_automatic_failover: false\n"
                "local: {persistence: aof}\n"))
        st = self.wait_available(d, nodes=2)
        self.write_until_ok("durable", "yes")
        old = self.node(st, "primary")[0]
        os.kill(old["pid"], signal.SIGKILL)
        self.write_until_ok("after", "1", timeout=15)
        st = wait_for(lambda: self.node(d.status("web"), "primary")[0]["pid"]
                      != old["pid"] and d.status("web"), what="new pid")
        p = self.node(st, "primary")[0]
        self.assertEqual(p["id"], old["id"])
        self.assertNotEqual(p["pid"], old["pid"])
        self.assertEqual(st["endpoints"]["failovers"], 0)
        with self.endpoint() as c:
            self.assertEqual(c.call("GET", "durable"), "yes")

    def test_node_that_exits_at_start_is_retried_quietly(self):
        # A replica killed, and its port taken before the daemon restarts
        # it: redis-server starts and exits at once ("Address already in
        # use"). One warning naming its log, the cause in the status, starts
        # retried with a backoff (not a notice and a start every tick), and
        # it runs again once the port is free.
        d = self.start()
        d.write("web.yaml", self.group(size=2))
        st = self.wait_available(d, nodes=2)
        rep = self.node(st, "replica")[0]
        port = int(rep["address"].rsplit(":", 1)[1])
        os.kill(rep["pid"], signal.SIGKILL)
        taker = None
        deadline = time.monotonic() + 5
        while taker is None and time.monotonic() < deadline:
            try:
                taker = socket.create_server(("127.0.0.1", port))
            except OSError:
                time.sleep(0.001)   # until the dead node's socket is gone
        self.assertIsNotNone(taker, "could not take port %d" % port)
        try:
            st = wait_for(lambda: [n for n in d.status("web")["endpoints"][
                "nodes"] if n["id"] == rep["id"] and "exits right after" in
                (n.get("error") or "")] and d.status("web"), 15,
                interval=0.1, what="the failed start in status")
            self.assertIn("node %s cannot start: it exits right after it "
                          "starts (see " % rep["id"], st["message"])
            time.sleep(3)
            log = d.log().splitlines()
            warned = [l for l in log if "warning: " in l and
                      "cannot restart node %s" % rep["id"] in l]
            self.assertEqual(len(warned), 1, warned)
            self.assertIn("redis.log", warned[0])
            starts = [l for l in log if "started node %s " % rep["id"] in l]
            # A tick is 250 ms: 12 starts in 3 s without the backoff.
            self.assertLessEqual(len(starts), 6, starts)
        finally:
            taker.close()
        wait_for(lambda: "node %s runs again after" % rep["id"] in d.log(),
                 15, interval=0.1, what="the replica running again")
        st = self.wait_available(d, nodes=2)
        self.assertFalse([n for n in st["endpoints"]["nodes"]
                          if n.get("error")])

    def test_daemon_restart_keeps_nodes(self):
        d = self.start()
        d.write("web.yaml", self.group(size=3))
        st = self.wait_available(d, nodes=3)
        pids = sorted(n["pid"] for n in st["endpoints"]["nodes"])
        self.write_until_ok("k", "v")
        self.assertEqual(d.stop(), 0)
        # Nodes keep running without the daemon.
        for p in pids:
            self.assertTrue(cklib.is_redis(p))
        d.start()
        for n in st["endpoints"]["nodes"]:
            d.wait_log("adopted node %s (pid %d" % (n["id"], n["pid"]))
        self.write_until_ok("k2", "v2")
        st = self.wait_available(d, nodes=3)
        self.assertEqual(sorted(n["pid"] for n in st["endpoints"]["nodes"]),
                         pids)
        with self.endpoint() as c:
            self.assertEqual(c.call("GET", "k"), "v")
        self.assertNotIn("restarting it", d.log())

    def test_bad_edit_leaves_cluster_untouched(self):
        d = self.start()
        d.write("web.yaml", self.group(size=3))
        st = self.wait_available(d, nodes=3)
        d.write("web.yaml", self.group(size=3, extra="cluster_mode: "
                                       "{enabled: maybe}\n"))
        st2 = d.wait_status("web", phase="spec-error")
        time.sleep(1)
        st2 = d.status("web")
        self.assertEqual(sorted(n["pid"] for n in
                                st2["endpoints"]["nodes"]),
                         sorted(n["pid"] for n in st["endpoints"]["nodes"]))

    def test_delete_retain_and_delete_with_final_snapshot(self):
        d = self.start()
        path = d.write("web.yaml", self.group(size=2))
        st = self.wait_available(d, nodes=2)
        self.write_until_ok("keep", "me")
        os.unlink(path)
        d.wait_status("web", phase="retained")
        for n in st["endpoints"]["nodes"]:
            self.assertTrue(cklib.is_redis(n["pid"]))
        # Now with deletion_policy delete and a final snapshot.
        d.write("web.yaml", self.group(size=2, extra="deletion_policy: "
                                       "delete\n"))
        st = self.wait_available(d, nodes=2)
        os.unlink(path)
        wait_for(lambda: not os.path.exists(d.status_path("web")), 20,
                 what="cluster deleted")
        for n in st["endpoints"]["nodes"]:
            wait_for(lambda: not cklib.is_redis(n["pid"]),
                     what="node %s stopped" % n["id"])
        finals = os.listdir(os.path.join(d.state, "backups", "web"))
        self.assertEqual(len(finals), 1)
        self.assertTrue(finals[0].startswith("web-final-"))
        with open(os.path.join(d.state, "backups", "web", finals[0],
                               "manifest.json")) as f:
            self.assertEqual(json.load(f)["type"], "final")
        rdb = os.path.join(d.state, "backups", "web", finals[0], "s1.rdb")
        with open(rdb, "rb") as f:
            data = f.read()
        self.assertTrue(data.startswith(b"REDIS"))
        self.assertIn(b"keep", data)
        self.assertFalse(os.path.exists(os.path.join(d.state, "local",
                                                     "web")))

    def test_auth_token(self):
        token = "s3cret-Token-0123456789"
        tf = os.path.join(self.tmp, "web.token")
        with open(tf, "w") as f:
            f.write(token + "\n")
        os.chmod(tf, 0o600)
        d = self.start()
        d.write("web.yaml", self.group(size=2, extra="auth_token_file: %s\n"
                                       % tf))
        st = self.wait_available(d, nodes=2)
        for n in st["endpoints"]["nodes"]:
            port = int(n["address"].split(":")[1])
            with Client(port=port) as c:
                with self.assertRaisesRegex(RedisError, "NOAUTH"):
                    c.call("GET", "x")
        with self.endpoint() as c:
            with self.assertRaisesRegex(RedisError, "NOAUTH"):
                c.call("SET", "x", "1")
        self.write_until_ok("x", "1", password=token)
        # The token never appears in anything the daemon writes.
        for root, _, files in os.walk(d.state):
            for fn in files:
                path = os.path.join(root, fn)
                if fn == "redis.conf" or not os.path.isfile(path) or \
                        os.path.islink(path):
                    continue    # the node's own config holds requirepass
                with open(path, "rb") as f:
                    self.assertNotIn(token.encode(), f.read(),
                                     os.path.join(root, fn))
        self.assertNotIn(token, d.log())
        for root, _, files in os.walk(d.state):
            for fn in files:
                if fn == "redis.conf":
                    self.assertEqual(os.stat(os.path.join(root, fn))
                                     .st_mode & 0o077, 0)

    def test_live_parameter_change(self):
        d = self.start()
        d.write("web.yaml", self.group(size=2))
        st = self.wait_available(d, nodes=2)
        pids = sorted(n["pid"] for n in st["endpoints"]["nodes"])
        d.write("web.yaml", self.group(size=2, extra="parameters: "
                                       "{maxmemory-policy: allkeys-lru}\n"))
        for n in st["endpoints"]["nodes"]:
            port = int(n["address"].split(":")[1])
            with Client(port=port) as c:
                wait_for(lambda: c.call("CONFIG", "GET", "maxmemory-policy")
                         [1] == "allkeys-lru", what="policy on " + n["id"])
        st = self.wait_available(d, nodes=2)
        self.assertEqual(sorted(n["pid"] for n in st["endpoints"]["nodes"]),
                         pids)
        # A setting Redis refuses is reported and never written to a
        # config (the node could not start again).
        d.write("web.yaml", self.group(size=2, extra="parameters: "
                                       "{maxmemory-policy: sometimes}\n"))
        err = wait_for(lambda: d.status("web")["last_error"],
                       what="rejection reported")
        self.assertIn("parameter maxmemory-policy=sometimes rejected by "
                      "redis-server", err)
        conf = os.path.join(d.state, "local", "web", "n1", "redis.conf")
        with open(conf) as f:
            self.assertNotIn("sometimes", f.read())

    def test_immutable_parameter_rolling_restart(self):
        d = self.start()
        d.write("web.yaml", self.group(size=3, extra="apply_immediately: "
                                       "true\n"))
        st = self.wait_available(d, nodes=3)
        before = {n["id"]: n["pid"] for n in st["endpoints"]["nodes"]}
        old_primary = self.node(st, "primary")[0]["id"]
        for i in range(200):
            self.write_until_ok("r%d" % i, str(i))
        d.write("web.yaml", self.group(size=3, extra="apply_immediately: "
                                       "true\nparameters: {databases: "
                                       "\"32\"}\n"))
        d.wait_log("rolling restart done", timeout=60)
        st = self.wait_available(d, nodes=3)
        after = {n["id"]: n["pid"] for n in st["endpoints"]["nodes"]}
        for nid, pid in before.items():
            self.assertNotEqual(after[nid], pid, "%s not restarted" % nid)
        self.assertNotEqual(self.node(st, "primary")[0]["id"], old_primary)
        self.assertIn("controlled failover", d.log())
        with self.endpoint() as c:
            self.assertEqual(c.call("CONFIG", "GET", "databases")[1], "32")
            for i in range(200):
                self.assertEqual(c.call("GET", "r%d" % i), str(i))
        # One at a time: the log shows the order, replicas first.
        log = d.log()
        restarts = [l for l in log.splitlines() if "notice: cluster web: "
                    "rolling restart: restarting" in l]
        self.assertEqual(len(restarts), 3, restarts)
        self.assertTrue(all("replica" in l for l in restarts), restarts)

    def test_removed_parameter_goes_back_to_default(self):
        # A parameter taken out of the spec: the plan says it goes back to
        # its default by a rolling restart, the nodes restart one at a
        # time without it, and then have Redis's default; the others stay.
        d = self.start()
        extra = "apply_immediately: true\nparameters: {maxmemory-policy: " \
            "allkeys-lru%s}\n"
        d.write("web.yaml", self.group(size=2, extra=extra %
                                       ", timeout: \"300\""))
        st = self.wait_available(d, nodes=2)

        def on_nodes(key):
            out = set()
            for n in d.status("web")["endpoints"]["nodes"]:
                with Client(port=int(n["address"].split(":")[1])) as c:
                    out.add(c.call("CONFIG", "GET", key)[1])
            return out
        self.assertEqual(on_nodes("timeout"), {"300"})
        for i in range(100):
            self.write_until_ok("p%d" % i, str(i))
        d.write("web.yaml", self.group(size=2, extra=extra % ""))
        d.wait_log("parameter timeout is no longer in the spec", timeout=20)
        d.wait_log("rolling restart done", timeout=60)
        st = self.wait_available(d, nodes=2)
        self.assertEqual(on_nodes("timeout"), {"0"})
        self.assertEqual(on_nodes("maxmemory-policy"), {"allkeys-lru"})
        for n in st["endpoints"]["nodes"]:
            with open(os.path.join(d.state, "local", "web", n["id"],
                                   "redis.conf")) as f:
                conf = f.read()
            self.assertNotIn("timeout \"300\"", conf)
            self.assertIn("maxmemory-policy \"allkeys-lru\"", conf)
        with self.endpoint() as c:
            for i in range(100):
                self.assertEqual(c.call("GET", "p%d" % i), str(i))
        self.assertEqual(st["plan"]["steps"], [])

    def test_restart_waits_for_maintenance_window(self):
        # A window three days from now.
        day = (time.gmtime().tm_wday + 1 + 3) % 7   # tm_wday: mon=0
        names = ["sun", "mon", "tue", "wed", "thu", "fri", "sat"]
        win = "%s:03:00-%s:04:00" % (names[day], names[day])
        d = self.start()
        extra = 'maintenance_window: "%s"\nsnapshot_window: "05:00-06:00"\n' \
            % win
        d.write("web.yaml", self.group(size=2, extra=extra))
        st = self.wait_available(d, nodes=2)
        pids = sorted(n["pid"] for n in st["endpoints"]["nodes"])
        d.write("web.yaml", self.group(size=2, extra=extra +
                                       'parameters: {databases: "20"}\n'))
        wait_for(lambda: "waits for the maintenance window %s" % win in
                 (d.status("web")["message"] or ""), timeout=15,
                 what="deferral in status")
        time.sleep(1)
        st = d.status("web")
        self.assertEqual(sorted(n["pid"] for n in st["endpoints"]["nodes"]),
                         pids)

    def test_engine_version_mismatch_is_refused(self):
        d = self.start()
        d.write("web.yaml", self.group(size=2, extra='engine_version: '
                                       '"6.2"\n'))
        st = wait_for(lambda: (d.status("web") or {}).get("last_error"),
                      what="an error in status")
        self.assertIn("engine_version 6.2 is not available: the installed "
                      "redis-server is 7.", st)
        self.assertEqual(cklib.node_pids(d.state), [])


if __name__ == "__main__":
    cklib.main()
