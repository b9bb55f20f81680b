#!/usr/bin/python3
"""Backups on the local backend end to end: automatic snapshots inside the
snapshot window (the daemon's wall clock moved by its test hook
CK_TEST_CLOCK_OFFSET_S, never by sleeping), their manifests and checksums,
which node's BGSAVE ran, retention, a missed window caught up, manual
snapshots, listing, deletion and controlled failover through the CLI.
Every node a test's daemon started is stopped by its pid (cklib)."""

import datetime
import hashlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import time

import cklib
from cklib import DaemonTest, spec, wait_for, CLI, DAEMON
from resp import Client
from rcluster import ClusterClient

REDIS = shutil.which("redis-server") or "/usr/bin/redis-server"
DAY = 86400


def windows(now=None):
    """A daily snapshot window holding now, and a maintenance window (weekly,
    six hours later) that cannot overlap it."""
    now = now or datetime.datetime.now(datetime.timezone.utc)
    s = now - datetime.timedelta(minutes=10)
    e = s + datetime.timedelta(minutes=90)
    m = now + datetime.timedelta(hours=6)
    m2 = m + datetime.timedelta(hours=1)
    days = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
    return ("%02d:%02d-%02d:%02d" % (s.hour, s.minute, e.hour, e.minute),
            "%s:%02d:%02d-%s:%02d:%02d" % (days[m.weekday()], m.hour,
                                            m.minute, days[m2.weekday()],
                                            m2.hour, m2.minute))


class BackupTest(DaemonTest):

    def setUp(self):
        super().setUp()
        if not os.access(REDIS, os.X_OK):
            self.skipTest("redis-server is not installed "
                          "(scripts/install-deps installs it)")
        self.base = cklib.free_port_block()
        self.port = self.base + 100

    def start(self, offset=0, d=None, extra_conf=""):
        if d is None:
            d = self.daemon(binary=DAEMON)
            with open(d.conf, "w") as f:
                f.write("clusters_dir: %s\nstate_dir: %s\n"
                        "resync_interval: 5s\nlocal:\n  port_range: %d-%d\n"
                        "  failover_after: 1500ms\n  cluster_node_timeout: "
                        "1000ms\n%s" % (d.specs, d.state, self.base,
                                        self.base + 99, extra_conf))
        d.env["CK_TEST_CLOCK_OFFSET_S"] = str(offset)
        d.start()
        return d

    def group(self, name="web", size=2, retention=2, window=None):
        sw, mw = windows()
        return spec(name, backend="local", extra="cluster_size: %d\n"
                    "port: %d\nsnapshot_window: \"%s\"\n"
                    "maintenance_window: \"%s\"\n"
                    "snapshot_retention_limit: %d\n"
                    % (size, self.port, window or sw, mw, retention))

    def backups(self, d, name="web"):
        st = d.status(name)
        return st["endpoints"]["backups"] if st else None

    def wait_available(self, d, name="web", timeout=30):
        def ok():
            d.alive()
            st = d.status(name)
            if not st or st["phase"] != "available" or \
                    st["observed_generation"] != st["generation"]:
                return None
            return st
        return wait_for(ok, timeout, interval=0.1, what="%s available" % name)

    def wait_snapshots(self, d, n, name="web", timeout=30):
        return wait_for(lambda: (self.backups(d, name) or {}).get(
            "snapshots") == n and not self.backups(d, name).get(
            "in_progress") and self.backups(d, name), timeout, interval=0.1,
            what="%d snapshots of %s" % (n, name))

    def snap_dirs(self, d, name="web"):
        root = os.path.join(d.state, "backups", name)
        return sorted(x for x in os.listdir(root)) if os.path.isdir(root) \
            else []

    def stop_copy(self, d, over):
        """The snapshot copy child of d (a fork of the daemon, not a
        redis-server), stopped with SIGSTOP as soon as it shows; None when
        over() says the snapshot ended before it could be caught."""
        me, n = d.pid(), 0
        deadline = time.monotonic() + 60 * cklib.SLOW
        while time.monotonic() < deadline:
            try:
                with open("/proc/%d/task/%d/children" % (me, me)) as f:
                    kids = [int(x) for x in f.read().split()]
            except OSError:
                kids = []
            for k in kids:
                try:
                    with open("/proc/%d/comm" % k) as f:
                        if f.read().strip() != "cachekeeperd":
                            continue
                except OSError:
                    continue
                os.kill(k, signal.SIGSTOP)
                return k
            n += 1
            if n % 100 == 0 and over():
                return None
            time.sleep(0.001)
        self.fail("no snapshot copy in 60 s")

    def manifest(self, d, snap, name="web"):
        with open(os.path.join(d.state, "backups", name, snap,
                               "manifest.json")) as f:
            return json.load(f)

    def check_files(self, d, snap, name="web"):
        m = self.manifest(d, snap, name)
        for sh in m["shards"]:
            path = os.path.join(d.state, "backups", name, snap, sh["file"])
            with open(path, "rb") as f:
                data = f.read()
            self.assertEqual(len(data), sh["size"])
            self.assertEqual(hashlib.sha256(data).hexdigest(), sh["sha256"])
            if m["encryption"]["scheme"] == "none":
                self.assertTrue(data.startswith(b"REDIS"), sh["file"])
            else:
                self.assertTrue(data.startswith(b"CKENC1"), sh["file"])
                self.assertNotIn(b"REDIS", data[:64])
        return m

    def cli(self, d, *args, ok=True):
        p = subprocess.run([CLI, "--socket", os.path.join(d.tmp,
                            "control.sock")] + list(args),
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                           timeout=120 * cklib.SLOW)
        if ok:
            self.assertEqual(p.returncode, 0, p.stderr.decode())
        return p

    def node_log(self, d, node, name="web"):
        with open(os.path.join(d.state, "local", name, node,
                               "redis.log")) as f:
            return f.read()

    def test_automatic_daily_from_replica_retention_catch_up(self):
        d = self.start()
        d.write("web.yaml", self.group())
        st = self.wait_available(d)
        with Client(port=self.port) as c:
            for i in range(200):
                c.call("SET", "k%d" % i, "v%d" % i)
        b = self.wait_snapshots(d, 1)
        self.assertIsNotNone(b["last_success"])
        self.assertIsNone(b["last_error"])
        (auto1,) = self.snap_dirs(d)
        m = self.check_files(d, auto1)
        self.assertEqual(m["type"], "automatic")
        self.assertEqual(m["cluster"], "web")
        self.assertEqual(m["name"], auto1)
        self.assertEqual(m["generation"], st["generation"])
        self.assertEqual(m["encryption"]["scheme"], "none")
        self.assertTrue(m["engine_version"].startswith("7."))
        # From the replica: its BGSAVE ran, the primary's did not.
        (sh,) = m["shards"]
        self.assertEqual(sh["role"], "replica")
        prim = [n for n in st["endpoints"]["nodes"]
                if n["role"] == "primary"][0]
        self.assertNotEqual(sh["node"], prim["id"])
        self.assertIn("Background saving started", self.node_log(d,
                      sh["node"]))
        self.assertNotIn("Background saving started", self.node_log(d,
                         prim["id"]))
        # next_due is the window's next start, tomorrow.
        due = datetime.datetime.fromisoformat(
            b["next_due"].replace("Z", "+00:00"))
        self.assertGreater(due, datetime.datetime.now(
            datetime.timezone.utc) + datetime.timedelta(hours=22))
        # Once a day: nothing more in the same window.
        time.sleep(1.5)
        self.assertEqual(self.snap_dirs(d), [auto1])
        # A manual one stays whatever the retention.
        p = self.cli(d, "snapshot", "web", "--name", "keepme")
        self.assertIn("snapshot keepme complete", p.stdout.decode())
        self.assertEqual(self.check_files(d, "keepme")["type"], "manual")
        # The daemon is down a day: the window is caught up at start.
        d.stop()
        d = self.start(offset=DAY, d=d)
        self.wait_snapshots(d, 3)
        (auto2,) = [n for n in self.snap_dirs(d) if n not in (auto1,
                                                            "keepme")]
        # Two days and two minutes later (created_at has whole seconds,
        # so stay clear of the boundary): the first automatic one is
        # older than the 2-day limit and goes, the second is a day old
        # and stays.
        d.stop()
        d = self.start(offset=2 * DAY + 120, d=d)
        wait_for(lambda: auto1 not in self.snap_dirs(d) and len(
            self.snap_dirs(d)) == 3, 30, interval=0.1,
            what="a third automatic snapshot and %s pruned" % auto1)
        self.wait_snapshots(d, 3)
        names = self.snap_dirs(d)
        self.assertIn("keepme", names)
        self.assertIn(auto2, names)
        self.assertNotIn(auto1, names)
        (auto3,) = [n for n in names if n not in ("keepme", auto2)]
        m3 = self.check_files(d, auto3)
        self.assertEqual(m3["type"], "automatic")
        self.assertGreater(m3["created_at_unix"], time.time() + 1.5 * DAY)
        self.assertIn("retention: deleted automatic snapshot %s" % auto1,
                      d.log())
        self.assertNotIn("retention: deleted automatic snapshot %s" %
                         auto2, d.log())

    def test_progress_of_snapshots(self):
        # What an operator watching a big snapshot sees: its BGSAVE, then
        # the bytes copied, in the status, `cachekeeper status` and
        # STATUS=. The window opens in 10 minutes: keys are loaded first,
        # then the daemon's clock is moved into it (test hook). Redis's own
        # rdb-key-save-delay (microseconds per key) makes the BGSAVE last,
        # and the copy child is stopped (SIGSTOP) while the bytes are read.
        now = datetime.datetime.now(datetime.timezone.utc)
        sw, mw = windows(now + datetime.timedelta(minutes=20))
        d = self.start()
        d.write("web.yaml", spec("web", backend="local", extra=(
            "cluster_size: 1\nport: %d\nsnapshot_window: \"%s\"\n"
            "maintenance_window: \"%s\"\nsnapshot_retention_limit: 2\n"
            "parameters:\n  rdb-key-save-delay: \"5000\"\n"
            % (self.port, sw, mw))))
        self.wait_available(d)
        val = os.urandom(128 * 1024).hex()      # 256 KiB of hex digits
        with Client(port=self.port, timeout=30) as c:
            for i in range(800):
                c.call("SET", "k%d" % i, val)
        self.assertEqual(self.backups(d)["snapshots"], 0)
        d.stop()
        d = self.start(offset=630, d=d)

        def progress(what, snap=r"web-auto-\d+"):
            pg = (d.status("web") or {}).get("progress") or {}
            return re.fullmatch(r"snapshot %s: %s" % (snap, what),
                                pg.get("operation", "")) and pg
        pg = wait_for(lambda: progress("BGSAVE"), 20, interval=0.05,
                      what="the BGSAVE in the status")
        self.assertIn(pg["done"], (0, 1))
        self.assertEqual((pg["total"], pg["unit"]), (1, "shards"))
        out = self.cli(d, "status", "web").stdout.decode()
        self.assertRegex(out, r"snapshot web-auto-\d+: BGSAVE [01]/1 shards")
        wait_for(lambda: [m for m in d.notify.seen("STATUS=")
                          if re.search(r"BGSAVE [01]/1 shards", m)], 10,
                 what="STATUS= with the snapshot's progress")
        # The copy: a child of the daemon, not a redis-server. A copy over
        # before it could be caught is tried again with an operator's
        # snapshot.
        kid = self.stop_copy(d, lambda: self.backups(d)["snapshots"] == 1)
        snaps, p = 1, None
        while kid is None and snaps < 4:
            p = subprocess.Popen([CLI, "--socket", os.path.join(
                d.tmp, "control.sock"), "snapshot", "web"],
                stdout=subprocess.PIPE, stderr=subprocess.PIPE)
            snaps += 1
            kid = self.stop_copy(d, lambda: p.poll() is not None)
            if kid is None:
                p.communicate(timeout=60)
        self.assertIsNotNone(kid, "4 copies, each over before it was seen")
        try:
            pg = wait_for(lambda: progress("copy", r"web-[a-z0-9-]+"), 10,
                          interval=0.05, what="the copy in the status")
            self.assertEqual(pg["unit"], "bytes")
            self.assertGreater(pg["total"], 100 << 20)
            self.assertLessEqual(pg["done"], pg["total"])
            out = self.cli(d, "status", "web").stdout.decode()
            self.assertRegex(out, r"snapshot web-[a-z0-9-]+: copy "
                             r"\d+\.\d/\d+\.\d MiB")
        finally:
            os.kill(kid, signal.SIGCONT)
        if p is not None:
            self.assertEqual(p.wait(60 * cklib.SLOW), 0)
            p.stdout.close()
            p.stderr.close()
        b = self.wait_snapshots(d, snaps, timeout=60)
        self.assertIsNone(b["last_error"])
        wait_for(lambda: "progress" not in d.status("web"), 10,
                 what="no progress once done")
        # An operator's snapshot: the CLI waits for it, and meanwhile the
        # status shows its progress too.
        p = subprocess.Popen([CLI, "--socket", os.path.join(
            d.tmp, "control.sock"), "snapshot", "web", "--name", "big"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        try:
            st = wait_for(lambda: progress("BGSAVE", "big") and
                          d.status("web"), 20, interval=0.05,
                          what="the manual one's progress")
            self.assertEqual(st["progress"]["total"], 1)
            self.assertEqual(st["operation"], "snapshot big")
        finally:
            out, err = p.communicate(timeout=120 * cklib.SLOW)
        self.assertEqual(p.returncode, 0, err)
        self.assertIn("snapshot big complete", out.decode())
        self.assertNotIn("progress", d.status("web"))

    def test_snapshot_timeout(self):
        # backups.snapshot_timeout bounds a snapshot's BGSAVE and copy
        # together: past it, the snapshot fails saying which part was
        # late, and leaves nothing that looks like a snapshot.
        now = datetime.datetime.now(datetime.timezone.utc)
        sw, mw = windows(now + datetime.timedelta(hours=12))

        def web(extra=""):
            return spec("web", backend="local", extra=(
                "cluster_size: 1\nport: %d\nsnapshot_window: \"%s\"\n"
                "maintenance_window: \"%s\"\n%s" % (self.port, sw, mw,
                                                     extra)))
        d = self.start(extra_conf="backups:\n  snapshot_timeout: 2s\n")
        # A BGSAVE of 4 s (Redis's rdb-key-save-delay, in microseconds).
        d.write("web.yaml", web("parameters:\n  rdb-key-save-delay: "
                                "\"5000\"\n"))
        self.wait_available(d)
        val = os.urandom(128 * 1024).hex()
        with Client(port=self.port, timeout=30) as c:
            for i in range(800):
                c.call("SET", "k%d" % i, val)
        p = self.cli(d, "snapshot", "web", "--name", "slow", ok=False)
        self.assertEqual(p.returncode, 1)
        self.assertIn("BGSAVE did not finish within "
                      "backups.snapshot_timeout (2 s)", p.stderr.decode())
        self.assertEqual(self.snap_dirs(d), [])
        self.assertIn("BGSAVE did not finish",
                      self.backups(d)["last_error"])
        # A copy held past the deadline (its child stopped) is stopped.
        d.write("web.yaml", web("parameters:\n  rdb-key-save-delay: "
                                "\"0\"\n"))
        with Client(port=self.port) as c:
            wait_for(lambda: c.call("CONFIG", "GET", "rdb-key-save-delay")[
                1] == "0", 10, what="rdb-key-save-delay 0 on the node")
        for attempt in range(4):
            cli = subprocess.Popen([CLI, "--socket", os.path.join(
                d.tmp, "control.sock"), "snapshot", "web", "--name",
                "held%d" % attempt], stdout=subprocess.PIPE,
                stderr=subprocess.PIPE)
            kid = self.stop_copy(d, lambda: cli.poll() is not None)
            out, err = cli.communicate(timeout=60 * cklib.SLOW)
            if kid is not None:
                break
            # Done before it could be caught: only a fast copy; again.
        self.assertIsNotNone(kid, "4 copies, each over before it was seen")
        self.assertEqual(cli.returncode, 1, out)
        self.assertIn("the copy did not finish within "
                      "backups.snapshot_timeout (2 s): stopped", err.decode())
        wait_for(lambda: not os.path.exists("/proc/%d" % kid) or
                 open("/proc/%d/stat" % kid).read().split()[2] == "Z", 10,
                 what="the copy child gone")
        self.assertNotIn("held%d" % attempt, self.snap_dirs(d))
        self.assertFalse([x for x in os.listdir(os.path.join(
            d.state, "backups", "web")) if x.startswith(".tmp")])

    def test_retention_zero_takes_none(self):
        d = self.start()
        d.write("web.yaml", self.group(size=1, retention=0))
        self.wait_available(d)
        time.sleep(1.5)
        b = self.backups(d)
        self.assertEqual(b["snapshots"], 0)
        self.assertIsNone(b["next_due"])
        self.assertEqual(self.snap_dirs(d), [])

    def test_cli_manual_list_delete_failover(self):
        # A window far from now: only manual snapshots.
        now = datetime.datetime.now(datetime.timezone.utc)
        sw, _ = windows(now + datetime.timedelta(hours=12))
        d = self.start()
        d.write("web.yaml", self.group(size=3, window=sw))
        st = self.wait_available(d)
        with Client(port=self.port) as c:
            c.call("SET", "a", "1")
        p = self.cli(d, "snapshot", "web")
        out = p.stdout.decode()
        self.assertIn("web-manual-", out)
        p = self.cli(d, "snapshots", "-o", "json")
        l = json.loads(p.stdout.decode())
        self.assertEqual(len(l), 1)
        self.assertEqual(l[0]["cluster"], "web")
        self.assertEqual(l[0]["type"], "manual")
        self.assertFalse(l[0]["encrypted"])
        self.assertGreater(l[0]["size"], 0)
        snap = l[0]["name"]
        p = self.cli(d, "snapshots", "web")
        self.assertIn(snap, p.stdout.decode())
        self.assertIn("NAME", p.stdout.decode())
        p = self.cli(d, "snapshots", "nosuch", "-o", "json")
        self.assertEqual(json.loads(p.stdout.decode()), [])
        # The same name twice is refused.
        p = self.cli(d, "snapshot", "web", "--name", snap, ok=False)
        self.assertEqual(p.returncode, 1)
        self.assertIn("already exists", p.stderr.decode())
        self.cli(d, "snapshot-delete", snap)
        self.assertEqual(self.snap_dirs(d), [])
        p = self.cli(d, "snapshot-delete", snap, ok=False)
        self.assertEqual(p.returncode, 1)
        self.assertIn("no snapshot named", p.stderr.decode())
        wait_for(lambda: self.backups(d)["snapshots"] == 0, 10,
                 what="status counts the deletion")
        # One removed by hand, behind the daemon's back, is noticed too.
        self.cli(d, "snapshot", "web", "--name", "byhand")
        wait_for(lambda: self.backups(d)["snapshots"] == 1, 10,
                 what="status counts the new one")
        shutil.rmtree(os.path.join(d.state, "backups", "web", "byhand"))
        wait_for(lambda: self.backups(d)["snapshots"] == 0, 10,
                 what="status counts the removal by hand")
        # Controlled failover: another node is primary, nothing lost.
        old = [n["id"] for n in st["endpoints"]["nodes"]
               if n["role"] == "primary"][0]
        p = self.cli(d, "failover", "web")
        self.assertIn("controlled failover", p.stdout.decode())

        def moved():
            s = d.status("web")
            pr = [n["id"] for n in s["endpoints"]["nodes"]
                  if n["role"] == "primary"]
            return s["phase"] == "available" and pr and pr[0] != old
        wait_for(moved, 20, interval=0.1, what="primary moved")

        def read():
            try:
                with Client(port=self.port) as c:
                    return c.call("GET", "a") == "1"
            except (OSError, ConnectionError):
                return False
        wait_for(read, 10, what="the write is still there")
        p = self.cli(d, "failover", "web", "--shard", "s9", ok=False)
        self.assertEqual(p.returncode, 1)

    def test_cluster_mode_snapshot_and_failover(self):
        now = datetime.datetime.now(datetime.timezone.utc)
        sw, mw = windows(now + datetime.timedelta(hours=12))
        d = self.start()
        d.write("cat.yaml", spec("cat", backend="local", extra=(
            "port: %d\ncluster_mode:\n  enabled: true\n"
            "  num_node_groups: 2\n  replicas_per_node_group: 1\n"
            "snapshot_window: \"%s\"\nmaintenance_window: \"%s\"\n"
            % (self.port, sw, mw))))

        def settled():
            d.alive()
            st = d.status("cat")
            if not st or st["phase"] != "available" or \
                    st["endpoints"].get("cluster_state") != "ok" or \
                    len(st["endpoints"]["nodes"]) != 4:
                return None
            return st
        st = wait_for(settled, 40, interval=0.1, what="cluster settled")
        self.cli(d, "snapshot", "cat", "--name", "cat-one")
        m = self.check_files(d, "cat-one", "cat")
        self.assertEqual([s["id"] for s in m["shards"]], ["s1", "s2"])
        self.assertTrue(m["cluster_mode"])
        slots = sorted(r for s in m["shards"] for r in s["slots"])
        self.assertEqual(sum(b - a + 1 for a, b in slots), 16384)
        for s in m["shards"]:
            self.assertEqual(s["role"], "replica")
        old = [s for s in st["endpoints"]["shards"] if s["id"] == "s2"][0]
        p = self.cli(d, "failover", "cat", "--shard", "s2")
        self.assertIn("shard s2", p.stdout.decode())

        def moved():
            s = d.status("cat")
            sh = [x for x in s["endpoints"]["shards"] if x["id"] == "s2"][0]
            return sh.get("primary") != old.get("primary") and \
                s["phase"] == "available"
        wait_for(moved, 30, interval=0.2, what="shard s2 failed over")

    def test_busy_at_window_start_postponed_then_taken_once(self):
        # The snapshot window opens while the cluster reshards (2 shards
        # to 3): no snapshot while it moves slots, the status says it is
        # postponed, why and until when; once the reshard is done it is
        # taken, inside the window, once. One slot and one key at a time,
        # so the reshard outlasts the window's start.
        now = datetime.datetime.now(datetime.timezone.utc)
        sw, mw = windows(now + datetime.timedelta(hours=12))
        d = self.start(extra_conf="  migrate_slots: 1\n  migrate_batch: 1\n"
                       "  migrate_pipeline: 1\n")

        def cat(shards, window):
            return spec("cat", backend="local", extra=(
                "port: %d\ncluster_mode:\n  enabled: true\n"
                "  num_node_groups: %d\n  replicas_per_node_group: 0\n"
                "snapshot_window: \"%s\"\nmaintenance_window: \"%s\"\n"
                "snapshot_retention_limit: 1\n"
                % (self.port, shards, window, mw)))
        d.write("cat.yaml", cat(2, sw))

        def settled(n):
            def ok():
                d.alive()
                st = d.status("cat")
                if not st or st["phase"] != "available" or \
                        st["endpoints"].get("cluster_state") != "ok" or \
                        len(st["endpoints"]["nodes"]) != n or \
                        st["observed_generation"] != st["generation"]:
                    return None
                return st
            return ok
        wait_for(settled(2), 40, interval=0.1, what="2 shards")
        c = ClusterClient([("127.0.0.1", self.port)])
        try:
            for i in range(30000):
                c.call("SET", "k%d" % i, "v" * 100, key="k%d" % i)
        finally:
            c.close()
        self.assertEqual(self.backups(d, "cat")["snapshots"], 0)
        # Stopped: one more shard, and a window that opens 5 s after the
        # daemon is back (its clock moved by the test hook), while the
        # reshard (which starts about 3 s after, and moves 10000 keys one
        # by one) is under way.
        d.stop()
        start = (int(time.time()) + 12 * 3600) // 60 * 60
        ws = datetime.datetime.fromtimestamp(start, datetime.timezone.utc)
        we = ws + datetime.timedelta(minutes=60)
        win = "%02d:%02d-%02d:%02d" % (ws.hour, ws.minute, we.hour,
                                       we.minute)
        d.write("cat.yaml", cat(3, win))
        d = self.start(offset=start - 5 - int(time.time()), d=d)
        wait_for(lambda: "resharding: moving" in d.log(), 20,
                 interval=0.05, what="the reshard started")
        b = wait_for(lambda: (self.backups(d, "cat") or {}).get(
            "postponed") and self.backups(d, "cat"), 30, interval=0.05,
            what="the snapshot postponed")
        self.assertIn("resharding", b["postponed"]["reason"])
        since = datetime.datetime.fromisoformat(
            b["postponed"]["since"].replace("Z", "+00:00"))
        self.assertGreaterEqual(since, ws)
        self.assertEqual(b["postponed"]["until_window_end"],
                         we.strftime("%Y-%m-%dT%H:%M:%SZ"))
        due = datetime.datetime.fromisoformat(b["next_due"].replace(
            "Z", "+00:00"))
        self.assertTrue(ws <= due < we, due)     # now: as soon as it can
        self.assertEqual(b["snapshots"], 0)
        self.assertIsNone(b["in_progress"])
        self.assertEqual(self.snap_dirs(d, "cat"), [])
        log = d.log()
        self.assertIn("automatic snapshot postponed: the cluster is not "
                      "available (resharding", log)
        self.assertNotIn("resharding done", log)
        # Then the reshard ends and the snapshot follows, of 3 shards.
        wait_for(settled(3), 120, interval=0.2, what="3 shards")
        b = self.wait_snapshots(d, 1, "cat", timeout=30)
        self.assertNotIn("postponed", b)
        self.assertIsNone(b["last_error"])
        (snap,) = self.snap_dirs(d, "cat")
        m = self.check_files(d, snap, "cat")
        self.assertEqual(m["type"], "automatic")
        self.assertEqual([x["id"] for x in m["shards"]], ["s1", "s2", "s3"])
        self.assertTrue(start <= m["created_at_unix"] < start + 3600,
                        m["created_at"])
        log = d.log()
        self.assertLess(log.index("resharding done"),
                        log.index("snapshot %s (automatic) started" % snap))
        self.assertEqual(log.count("automatic snapshot postponed"), 1)
        # Once: nothing more in the same window.
        time.sleep(2)
        self.assertEqual(self.snap_dirs(d, "cat"), [snap])
        self.assertEqual(d.log().count("(automatic) started"), 1)

    def test_restore_into_clusters_with_a_token(self):
        # Clusters with auth_token_file have ACL users: the application
        # user may not RESTORE (@dangerous), so loading a snapshot's keys
        # must go through the daemon's own user. Both restore paths, into
        # clusters with a token, from a snapshot of one without.
        now = datetime.datetime.now(datetime.timezone.utc)
        sw, mw = windows(now + datetime.timedelta(hours=12))
        token = "tok-" + "r3st0re" * 4
        tf = os.path.join(self.tmp, "app.token")
        with open(tf, "w") as f:
            f.write(token + "\n")
        os.chmod(tf, 0o600)
        d = self.start()
        d.write("web.yaml", self.group(size=1, window=sw))
        self.wait_available(d)
        with Client(port=self.port) as c:
            for i in range(200):
                c.call("SET", "k%d" % i, "v%d" % i, "EX", "5000")
        self.cli(d, "snapshot", "web", "--name", "src1")

        def check(c, cluster):
            for i in range(200):
                k = "k%d" % i
                kw = {"key": k} if cluster else {}
                self.assertEqual(c.call("GET", k, **kw), "v%d" % i)
                self.assertTrue(4900 < int(c.call("TTL", k, **kw)) <= 5000)
        # Another layout (keys loaded with RESTORE): cluster mode.
        p3 = self.base + 106
        d.write("cat.yaml", spec("cat", backend="local", extra=(
            "port: %d\nauth_token_file: %s\ncluster_mode:\n"
            "  enabled: true\n  num_node_groups: 2\n"
            "  replicas_per_node_group: 0\nsnapshot_window: \"%s\"\n"
            "maintenance_window: \"%s\"\nrestore_from: src1\n"
            % (p3, tf, sw, mw))))
        wait_for(lambda: d.status("cat") and d.status("cat")["phase"] ==
                 "available", 60, interval=0.1, what="cat restored")
        self.assertRegex(d.log(), r"cluster cat: restored from snapshot src1 "
                         r"\(200 keys\)")
        c = ClusterClient([("127.0.0.1", p3)], password=token)
        try:
            check(c, True)
        finally:
            c.close()
        # Same layout (the primary starts from the RDB).
        p2 = self.base + 103
        d.write("web2.yaml", spec("web2", backend="local", extra=(
            "cluster_size: 1\nport: %d\nauth_token_file: %s\n"
            "snapshot_window: \"%s\"\nmaintenance_window: \"%s\"\n"
            "restore_from: src1\n" % (p2, tf, sw, mw))))
        self.wait_available(d, "web2", timeout=40)
        with Client(port=p2, password=token) as c:
            check(c, False)
        self.assertNotIn(token, d.log())

    def test_restore_same_layout_other_layout_and_corrupt(self):
        now = datetime.datetime.now(datetime.timezone.utc)
        sw, mw = windows(now + datetime.timedelta(hours=12))
        d = self.start()
        d.write("web.yaml", self.group(size=2, window=sw))
        self.wait_available(d)
        want = {}
        with Client(port=self.port) as c:
            for i in range(300):
                c.call("SET", "k%d" % i, "v%d" % i)
                want["k%d" % i] = "v%d" % i
            for i in range(50):
                c.call("SET", "t%d" % i, "x", "EX", "5000")
            c.call("HSET", "h", "f", "1")
            c.call("SET", "gone", "x", "PX", "1")
        self.cli(d, "snapshot", "web", "--name", "src1")

        def check(port, cluster=False):
            c = ClusterClient([("127.0.0.1", port)]) if cluster else \
                Client(port=port)
            try:
                for k, v in want.items():
                    self.assertEqual(c.call("GET", k, **({"key": k} if
                                     cluster else {})), v)
                for i in range(50):
                    k = "t%d" % i
                    ttl = int(c.call("TTL", k, **({"key": k} if cluster
                                                  else {})))
                    self.assertTrue(4900 < ttl <= 5000, (k, ttl))
                kw = {"key": "h"} if cluster else {}
                self.assertEqual(c.call("HGET", "h", "f", **kw), "1")
                self.assertEqual(int(c.call("TTL", "k1", **({"key": "k1"}
                                 if cluster else {}))), -1)
            finally:
                c.close()
        # Same layout: another replication group.
        p2 = self.base + 103
        d.write("web2.yaml", spec("web2", backend="local", extra=(
            "cluster_size: 2\nport: %d\nsnapshot_window: \"%s\"\n"
            "maintenance_window: \"%s\"\nrestore_from: src1\n"
            % (p2, sw, mw))))
        wait_for(lambda: d.status("web2") and d.status("web2")["phase"] ==
                 "available", 40, interval=0.1, what="web2 restored")
        check(p2)
        log = d.log()
        self.assertIn("cluster web2: restoring from snapshot src1 (checksums "
                      "first): same layout, each shard's primary starts "
                      "from its RDB", log)
        self.assertIn("cluster web2: restored from snapshot src1 (same "
                      "layout: 1 shard started from the snapshot's RDB)", log)
        # The primary loaded every key from the RDB at its start; the
        # replica has them too.
        st2 = d.status("web2")
        (prim,) = [n for n in st2["endpoints"]["nodes"]
                   if n["role"] == "primary"]
        (repl,) = [n for n in st2["endpoints"]["nodes"]
                   if n["role"] == "replica"]
        loaded = self.rdb_loaded(prim["address"])
        self.assertGreaterEqual(loaded, len(want) + 51)
        with Client(port=int(prim["address"].rsplit(":", 1)[1])) as c:
            self.assertEqual(int(c.call("DBSIZE")), loaded)
        with Client(port=int(repl["address"].rsplit(":", 1)[1])) as c:
            wait_for(lambda: int(c.call("DBSIZE")) == loaded, 10,
                     what="the replica synced")
        # Another layout: cluster mode with three shards.
        p3 = self.base + 106
        d.write("cat.yaml", spec("cat", backend="local", extra=(
            "port: %d\ncluster_mode:\n  enabled: true\n"
            "  num_node_groups: 3\n  replicas_per_node_group: 0\n"
            "snapshot_window: \"%s\"\nmaintenance_window: \"%s\"\n"
            "restore_from: src1\n" % (p3, sw, mw))))
        wait_for(lambda: d.status("cat") and d.status("cat")["phase"] ==
                 "available", 60, interval=0.1, what="cat restored")
        check(p3, cluster=True)
        self.assertRegex(d.log(), r"cluster cat: restored from snapshot src1 "
                         r"\(\d+ keys\)")
        self.assertNotIn("cluster cat: restoring from snapshot src1 "
                         "(checksums first): same layout", d.log())
        # Cluster mode, same layout: 3 shards into 3 shards (with a
        # replica each), every primary started from its shard's RDB.
        self.cli(d, "snapshot", "cat", "--name", "src3")
        p5 = self.base + 115
        d.write("cat2.yaml", spec("cat2", backend="local", extra=(
            "port: %d\ncluster_mode:\n  enabled: true\n"
            "  num_node_groups: 3\n  replicas_per_node_group: 1\n"
            "snapshot_window: \"%s\"\nmaintenance_window: \"%s\"\n"
            "restore_from: src3\n" % (p5, sw, mw))))
        st5 = wait_for(lambda: d.status("cat2") and d.status("cat2")[
            "phase"] == "available" and d.status("cat2"), 60, interval=0.1,
            what="cat2 restored")
        check(p5, cluster=True)
        log = d.log()
        self.assertIn("cluster cat2: restoring from snapshot src3 "
                      "(checksums first): same layout", log)
        self.assertIn("cluster cat2: restored from snapshot src3 (same "
                      "layout: 3 shards started from the snapshot's RDB)", log)
        prims = [n for n in st5["endpoints"]["nodes"]
                 if n["role"] == "primary"]
        self.assertEqual(len(prims), 3)
        counts = [self.rdb_loaded(n["address"]) for n in prims]
        self.assertTrue(all(n > 0 for n in counts), counts)
        self.assertGreaterEqual(sum(counts), len(want) + 51)
        # A flipped byte: refused before any key is written.
        src = os.path.join(d.state, "backups", "web", "src1")
        bad = os.path.join(d.state, "backups", "web", "bad1")
        shutil.copytree(src, bad)
        with open(os.path.join(bad, "s1.rdb"), "r+b") as f:
            f.seek(20)
            b = f.read(1)
            f.seek(20)
            f.write(bytes([b[0] ^ 1]))
        p4 = self.base + 109
        d.write("web4.yaml", spec("web4", backend="local", extra=(
            "cluster_size: 1\nport: %d\nsnapshot_window: \"%s\"\n"
            "maintenance_window: \"%s\"\nrestore_from: bad1\n"
            % (p4, sw, mw))))
        st = wait_for(lambda: d.status("web4") and d.status("web4")[
            "phase"] == "failed" and d.status("web4"), 40, interval=0.1,
            what="web4 refused")
        self.assertIn("corrupt", st["message"])
        self.assertIn("corrupt", st["backups"]["last_error"])
        # Its node starts empty (in the same layout, as soon as the
        # checksums failed).

        def dbsize():
            with Client(port=p4) as c:
                return (int(c.call("DBSIZE")),)
        self.assertEqual(wait_for(dbsize, 10, interval=0.1,
                                  what="web4's node answering"), (0,))
        # A name that is not a snapshot name is a spec error.
        d.write("web5.yaml", spec("web5", backend="local", extra=(
            "cluster_size: 1\nport: %d\nrestore_from: \"Bad_Name\"\n"
            % (self.base + 112))))
        wait_for(lambda: "spec.restore_from must be a snapshot name" in
                 d.log(), 10, what="restore_from validated")

    def rdb_loaded(self, address):
        """Keys the node at HOST:PORT loaded from an RDB when it started."""
        with Client(port=int(address.rsplit(":", 1)[1])) as c:
            info = c.call("INFO", "persistence")
        if isinstance(info, bytes):
            info = info.decode()
        for line in info.splitlines():
            if line.startswith("rdb_last_load_keys_loaded:"):
                return int(line.split(":")[1])
        raise AssertionError("no rdb_last_load_keys_loaded in INFO")

    def test_encrypted_round_trip_tamper_and_key_hygiene(self):
        key = os.urandom(32).hex()
        kf = os.path.join(self.tmp, "backup.key")
        with open(kf, "w") as f:
            f.write(key + "\n")
        os.chmod(kf, 0o644)
        # Too loose: refused.
        conf = os.path.join(self.tmp, "loose.yaml")
        with open(conf, "w") as f:
            f.write("clusters_dir: %s\nstate_dir: %s\n"
                    "backup_key_file: %s\n" % (self.tmp, self.tmp, kf))
        p = subprocess.run([DAEMON, "-n", "-f", conf],
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        self.assertNotEqual(p.returncode, 0)
        self.assertIn("backup_key_file", p.stdout.decode())
        self.assertIn("chmod 600", p.stdout.decode())
        os.chmod(kf, 0o600)
        now = datetime.datetime.now(datetime.timezone.utc)
        sw, mw = windows(now + datetime.timedelta(hours=12))
        d = self.start(extra_conf="backup_key_file: %s\n" % kf)
        d.write("web.yaml", self.group(size=1, window=sw) +
                "  enable_at_rest_encryption: true\n")
        self.wait_available(d)
        with Client(port=self.port) as c:
            for i in range(100):
                c.call("SET", "secret%d" % i, "plaintext-value-%d" % i)
            c.call("SET", "ttl", "x", "EX", "3000")
        self.cli(d, "snapshot", "web", "--name", "enc1")
        m = self.check_files(d, "enc1")
        self.assertEqual(m["encryption"]["scheme"], "aes-256-gcm-chunked")
        self.assertEqual(m["encryption"]["key_id"], hashlib.sha256(
            bytes.fromhex(key)).hexdigest()[:16])
        with open(os.path.join(d.state, "backups", "web", "enc1",
                               "s1.rdb"), "rb") as f:
            self.assertNotIn(b"plaintext-value", f.read())
        l = json.loads(self.cli(d, "snapshots", "-o", "json").stdout)
        self.assertTrue(l[0]["encrypted"])
        # Round trip.
        p2 = self.base + 103
        d.write("web2.yaml", spec("web2", backend="local", extra=(
            "cluster_size: 1\nport: %d\nsnapshot_window: \"%s\"\n"
            "maintenance_window: \"%s\"\nrestore_from: enc1\n"
            % (p2, sw, mw))))
        wait_for(lambda: d.status("web2") and d.status("web2")["phase"] ==
                 "available", 40, interval=0.1, what="web2 restored")
        with Client(port=p2) as c:
            for i in range(100):
                self.assertEqual(c.call("GET", "secret%d" % i),
                                 "plaintext-value-%d" % i)
            self.assertGreater(int(c.call("TTL", "ttl")), 2900)
        # A flipped ciphertext byte with a matching SHA-256: GCM says no.
        src = os.path.join(d.state, "backups", "web", "enc1")
        bad = os.path.join(d.state, "backups", "web", "enc-bad")
        shutil.copytree(src, bad)
        path = os.path.join(bad, "s1.rdb")
        with open(path, "r+b") as f:
            f.seek(40)
            b = f.read(1)
            f.seek(40)
            f.write(bytes([b[0] ^ 0x80]))
        with open(path, "rb") as f:
            data = f.read()
        with open(os.path.join(bad, "manifest.json")) as f:
            mb = json.load(f)
        mb["shards"][0]["sha256"] = hashlib.sha256(data).hexdigest()
        with open(os.path.join(bad, "manifest.json"), "w") as f:
            json.dump(mb, f)
        p3 = self.base + 106
        d.write("web3.yaml", spec("web3", backend="local", extra=(
            "cluster_size: 1\nport: %d\nsnapshot_window: \"%s\"\n"
            "maintenance_window: \"%s\"\nrestore_from: enc-bad\n"
            % (p3, sw, mw))))
        st = wait_for(lambda: d.status("web3") and d.status("web3")[
            "phase"] == "failed" and d.status("web3"), 40, interval=0.1,
            what="web3 refused")
        self.assertIn("fails authentication", st["message"])

        def dbsize():       # its node starts empty, just after the refusal
            with Client(port=p3) as c:
                return (int(c.call("DBSIZE")),)
        self.assertEqual(wait_for(dbsize, 10, interval=0.1,
                                  what="web3's node answering"), (0,))
        # The key is nowhere but in its own file.
        raw = bytes.fromhex(key)
        for root, _, files in os.walk(self.tmp):
            for n in files:
                fp = os.path.join(root, n)
                if fp == kf or not os.path.isfile(fp):
                    continue
                with open(fp, "rb") as f:
                    blob = f.read()
                self.assertNotIn(key.encode(), blob, fp)
                self.assertNotIn(raw, blob, fp)
        # 64 characters that are not all hex digits: refused, saying so
        # (it was a left shift of -1, undefined behaviour, that the
        # sanitizers' run would stop at).
        with open(kf, "w") as f:
            f.write("zz" + key[2:] + "\n")
        p = self.cli(d, "snapshot", "web", "--name", "enc2", ok=False)
        self.assertEqual(p.returncode, 1)
        self.assertIn("must hold a 256-bit key", p.stderr.decode())

    # --- S3, against s3rver (npm) on 127.0.0.1 ------------------------

    def s3rver_bin(self):
        """s3rver, installed with npm into the build tree if missing."""
        prefix = os.environ.get("CK_S3RVER_DIR") or os.path.join(
            cklib.BUILDDIR, "tests", "s3rver")
        binary = os.path.join(prefix, "node_modules", ".bin", "s3rver")
        if os.access(binary, os.X_OK):
            return binary
        npm = shutil.which("npm")
        if npm is None or shutil.which("node") is None:
            self.skipTest("npm and node are needed to install s3rver "
                          "(apt-get install npm)")
        os.makedirs(prefix, exist_ok=True)
        p = subprocess.run([npm, "install", "--prefix", prefix, "--no-audit",
                            "--no-fund", "--loglevel=error", "s3rver@3"],
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                           timeout=300)
        if p.returncode != 0 or not os.access(binary, os.X_OK):
            self.skipTest("npm install s3rver failed: %s" %
                          p.stdout.decode(errors="replace")[-300:])
        return binary

    def s3rver_start(self, binary, port, data, any_key=False, env=None):
        log = open(os.path.join(self.tmp, "s3rver.log"), "ab")
        cmd = [binary]
        if any_key:     # any access key id, each logged once
            cmd = [shutil.which("node"), os.path.join(
                os.path.dirname(os.path.abspath(__file__)),
                "s3rver_anykey.js"), os.path.join(os.path.dirname(
                    os.path.dirname(binary)), "s3rver")]
        p = subprocess.Popen(cmd + ["-d", data, "-a", "127.0.0.1", "-p",
                                    str(port), "--configure-bucket", "ckb"],
                             stdout=log, stderr=subprocess.STDOUT,
                             env=dict(os.environ, **(env or {})))
        log.close()
        self.addCleanup(self.s3rver_stop, p)

        def up():
            try:
                socket.create_connection(("127.0.0.1", port), 0.2).close()
                return True
            except OSError:
                return False
        wait_for(up, 20, interval=0.1, what="s3rver listening")
        return p

    def s3rver_stop(self, p):
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()

    def s3_objects(self, data):
        """{key: bytes} of what s3rver keeps in bucket ckb."""
        out = {}
        root = os.path.join(data, "ckb")
        for r, _, files in os.walk(root):
            for n in files:
                if n.endswith("._S3rver_object"):
                    k = os.path.relpath(os.path.join(r, n), root)[
                        :-len("._S3rver_object")]
                    with open(os.path.join(r, n), "rb") as f:
                        out[k] = f.read()
        return out

    def test_s3_upload_multipart_restore_and_retry(self):
        binary = self.s3rver_bin()
        s3port = self.base + 110
        data = os.path.join(self.tmp, "s3data")
        os.makedirs(data)
        srv = self.s3rver_start(binary, s3port, data)
        now = datetime.datetime.now(datetime.timezone.utc)
        sw, mw = windows(now + datetime.timedelta(hours=12))
        d = self.daemon(binary=DAEMON, env={
            "AWS_ACCESS_KEY_ID": "S3RVER", "AWS_SECRET_ACCESS_KEY": "S3RVER"})
        with open(d.conf, "w") as f:
            f.write("clusters_dir: %s\nstate_dir: %s\nresync_interval: 5s\n"
                    "local:\n  port_range: %d-%d\nbackups:\n  s3:\n"
                    "    bucket: ckb\n    prefix: snaps\n"
                    "    region: us-east-1\n"
                    "    endpoint: http://127.0.0.1:%d\n"
                    "    part_size: 4kb\n    retries: 1\n"
                    % (d.specs, d.state, self.base, self.base + 99, s3port))
        self.start(d=d)
        d.write("web.yaml", self.group(size=1, window=sw))
        self.wait_available(d)
        with Client(port=self.port) as c:
            for i in range(64):
                c.call("SET", "blob%d" % i, os.urandom(8192).hex())
            c.call("SET", "ttl", "x", "EX", "4000")
            want = {("blob%d" % i): c.call("GET", "blob%d" % i)
                    for i in range(64)}
        self.cli(d, "snapshot", "web", "--name", "s3one")
        wait_for(lambda: self.backups(d)["s3"]["pending"] == 0 and
                 self.backups(d)["s3"]["last_upload"], 30, interval=0.1,
                 what="s3one uploaded")
        objs = self.s3_objects(data)
        local = os.path.join(d.state, "backups", "web", "s3one")
        with open(os.path.join(local, "s1.rdb"), "rb") as f:
            rdb = f.read()
        self.assertGreater(len(rdb), 100 * 4096)     # many parts
        self.assertEqual(objs["snaps/s3one/s1.rdb"], rdb)
        self.assertIn("snaps/s3one/manifest.json", objs)
        self.assertEqual(json.loads(objs["snaps/s3one/manifest.json"])[
            "name"], "s3one")
        with open(os.path.join(self.tmp, "s3rver.log"), errors="replace") \
                as f:
            slog = f.read()
        self.assertIn("partNumber=4", slog)      # multipart, signed
        self.assertNotIn("SignatureDoesNotMatch", slog)
        # Gone here, still there: a new cluster restores from S3.
        self.cli(d, "snapshot-delete", "s3one")
        p2 = self.base + 103
        d.write("web2.yaml", spec("web2", backend="local", extra=(
            "cluster_size: 1\nport: %d\nsnapshot_window: \"%s\"\n"
            "maintenance_window: \"%s\"\nrestore_from: s3one\n"
            % (p2, sw, mw))))
        wait_for(lambda: d.status("web2") and d.status("web2")["phase"] ==
                 "available", 40, interval=0.1, what="web2 restored from S3")
        self.assertIn("fetched snapshot s3one from S3", d.log())
        # Fetched before any node started, so the same layout's primary
        # started from its RDB.
        self.assertIn("cluster web2: restoring from snapshot s3one "
                      "(checksums first): same layout", d.log())
        (prim,) = d.status("web2")["endpoints"]["nodes"]
        self.assertEqual(self.rdb_loaded(prim["address"]), len(want) + 1)
        with Client(port=p2) as c:
            for k, v in want.items():
                self.assertEqual(c.call("GET", k), v)
            self.assertGreater(int(c.call("TTL", "ttl")), 3900)
        # S3 goes away in the middle of an upload: it fails, is retried,
        # and until it succeeds no manifest of it is there.
        logp = os.path.join(self.tmp, "s3rver.log")
        with open(logp, errors="replace") as f:
            seen = len(f.read())
        self.cli(d, "snapshot", "web", "--name", "s3two")

        def parts_going():
            with open(logp, errors="replace") as f:
                return "s3two/s1.rdb?partNumber=20" in f.read()[seen:]
        wait_for(parts_going, 20, interval=0.005, what="s3two half way up")
        srv.kill()
        srv.wait()
        wait_for(lambda: "S3" in (self.backups(d)["last_error"] or ""),
                 30, interval=0.1, what="the upload failure reported")
        self.assertEqual(self.backups(d)["s3"]["pending"], 1)
        self.assertNotIn("snaps/s3two/manifest.json", self.s3_objects(data))
        self.s3rver_start(binary, s3port, data)
        wait_for(lambda: self.backups(d)["s3"]["pending"] == 0, 40,
                 interval=0.2, what="s3two uploaded after a retry")
        objs = self.s3_objects(data)
        with open(os.path.join(d.state, "backups", "web", "s3two",
                               "s1.rdb"), "rb") as f:
            self.assertEqual(objs["snaps/s3two/s1.rdb"], f.read())
        self.assertIn("snaps/s3two/manifest.json", objs)
        self.assertIsNone(self.backups(d)["last_error"])

    def imds_s3_daemon(self, imds=None, s3env=None, s3conf=""):
        """A daemon whose only credentials are the emulator's IMDSv2,
        copying to an s3rver that takes any key, with a one-node group
        "web" available (its window half a day away). Returns the
        daemon, the emulator and s3rver's data directory."""
        from test_elasticache import Emulator, have_botocore
        if not have_botocore():
            self.skipTest("the emulator needs Debian's python3-botocore")
        binary = self.s3rver_bin()
        emu = Emulator()
        self.addCleanup(emu.stop)
        if imds:
            emu.control("imds", imds)
        s3port = self.base + 110
        data = os.path.join(self.tmp, "s3data")
        os.makedirs(data)
        self.s3rver_start(binary, s3port, data, any_key=True, env=s3env)
        now = datetime.datetime.now(datetime.timezone.utc)
        sw, _ = windows(now + datetime.timedelta(hours=12))
        d = self.daemon(binary=DAEMON, env={
            "AWS_EC2_METADATA_DISABLED": "",
            "AWS_EC2_METADATA_SERVICE_ENDPOINT": emu.url})
        with open(d.conf, "w") as f:
            f.write("clusters_dir: %s\nstate_dir: %s\nresync_interval: 5s\n"
                    "local:\n  port_range: %d-%d\nbackups:\n  s3:\n"
                    "    bucket: ckb\n%s    endpoint: http://127.0.0.1:%d\n"
                    % (d.specs, d.state, self.base, self.base + 99, s3conf,
                       s3port))
        self.start(d=d)
        d.write("web.yaml", self.group(size=1, window=sw))
        self.wait_available(d)
        return d, emu, data

    def test_s3_expired_token_fetches_new_credentials(self):
        # S3 refuses the instance credentials as expired (before their
        # own expiry, as after a clock step): the daemon fetches new ones
        # from the chain and uploads again at once, without a warning.
        d, emu, data = self.imds_s3_daemon(
            s3env={"S3RVER_EXPIRE_FIRST": "1"})
        self.cli(d, "snapshot", "web", "--name", "exp1")
        wait_for(lambda: "exp1/manifest.json" in self.s3_objects(data), 30,
                 interval=0.1, what="exp1 uploaded")
        log = d.log()
        self.assertIn("upload of exp1: S3 says the credentials expired; "
                      "fetching new ones", log)
        self.assertEqual(log.count("s3: credentials from instance metadata"),
                         2, log)
        self.assertNotIn("upload of exp1 to S3 failed", log)
        key = emu.control("imds")["current"]["AccessKeyId"]
        with open(os.path.join(self.tmp, "s3rver.log"),
                  errors="replace") as f:
            slog = f.read()
        self.assertIn("expired key %s" % key, slog)
        self.assertIn("access key %s" % key, slog)
        wait_for(lambda: self.backups(d)["s3"]["pending"] == 0, 10,
                 interval=0.1, what="nothing pending")
        self.assertIsNone(self.backups(d)["last_error"])

    def test_s3_credentials_from_instance_metadata_refreshed(self):
        # No keys in the environment or the shared files: the daemon's
        # credentials chain (the ElastiCache backend's) finds them in the
        # emulator's IMDSv2, fetches new ones when they near expiry, and
        # no secret of them is ever written anywhere.
        # 10 s credentials: fresh for 8 s (the chain refreshes a fifth of
        # their life ahead).
        d, emu, data = self.imds_s3_daemon(
            imds={"expiry_seconds": 10},
            s3conf="    prefix: imds/\n    region: us-east-1\n")
        self.assertNotIn("AWS_ACCESS_KEY_ID", d.env)
        with Client(port=self.port) as c:
            for i in range(20):
                c.call("SET", "k%d" % i, "v%d" % i)
        secrets, keys = [], []

        def remember():
            cur = emu.control("imds")["current"]
            if cur and cur["SecretAccessKey"] not in secrets:
                secrets.append(cur["SecretAccessKey"])
                secrets.append(cur["Token"])
                keys.append(cur["AccessKeyId"])
            return cur
        for n, snap in enumerate(("imdsone", "imdstwo")):
            if n == 1:
                # Past the first keys' refresh point.
                first = emu.control("imds")["current"]["AccessKeyId"]
                time.sleep(8.5)
            self.cli(d, "snapshot", "web", "--name", snap)
            wait_for(lambda: "imds/%s/manifest.json" % snap in
                     self.s3_objects(data), 30, interval=0.1,
                     what="%s uploaded" % snap)
            remember()
            objs = self.s3_objects(data)
            with open(os.path.join(d.state, "backups", "web", snap,
                                   "s1.rdb"), "rb") as f:
                self.assertEqual(objs["imds/%s/s1.rdb" % snap], f.read())
        wait_for(lambda: self.backups(d)["s3"]["pending"] == 0, 10,
                 interval=0.1, what="nothing pending")
        self.assertNotEqual(emu.control("imds")["current"]["AccessKeyId"],
                            first, "the second upload used new keys")
        # S3 saw both instance keys, and no other.
        with open(os.path.join(self.tmp, "s3rver.log"),
                  errors="replace") as f:
            seen = [l.split()[2] for l in f if l.startswith("access key ")]
        self.assertEqual(seen, keys)
        self.assertEqual(len(set(keys)), 2)
        log = d.log()
        self.assertEqual(log.count("s3: credentials from instance metadata "
                                   "(role cachekeeper-role)"), 2, log)
        self.assertIn("uploading snapshot imdstwo to S3 (credentials from "
                      "instance metadata (role cachekeeper-role))", log)
        st = self.backups(d)
        self.assertIsNone(st["last_error"])
        self.assertTrue(st["s3"]["last_upload"])
        # The secrets: never in the log, the status or any file the daemon
        # keeps.
        self.assertEqual(len(secrets), 4)
        texts = [log, json.dumps(d.status("web")),
                 self.cli(d, "status", "-o", "json").stdout.decode(),
                 self.cli(d, "snapshots", "-o", "json").stdout.decode()]
        for root, _, files in os.walk(d.state):
            for n in files:
                p = os.path.join(root, n)
                if os.path.isfile(p) and not n.endswith(".rdb"):
                    with open(p, "rb") as f:
                        texts.append(f.read().decode(errors="replace"))
        for sec in secrets:
            for t in texts:
                self.assertNotIn(sec, t)

    def test_s3_retention_deletes_remote_copy(self):
        binary = self.s3rver_bin()
        s3port = self.base + 110
        data = os.path.join(self.tmp, "s3data")
        os.makedirs(data)
        self.s3rver_start(binary, s3port, data)
        d = self.daemon(binary=DAEMON, env={
            "AWS_ACCESS_KEY_ID": "S3RVER", "AWS_SECRET_ACCESS_KEY": "S3RVER"})
        with open(d.conf, "w") as f:
            f.write("clusters_dir: %s\nstate_dir: %s\nresync_interval: 5s\n"
                    "local:\n  port_range: %d-%d\nbackups:\n  s3:\n"
                    "    bucket: ckb\n    endpoint: http://127.0.0.1:%d\n"
                    % (d.specs, d.state, self.base, self.base + 99, s3port))
        self.start(d=d)
        d.write("web.yaml", self.group(size=1, retention=1))
        self.wait_available(d)
        wait_for(lambda: self.backups(d)["snapshots"] == 1 and
                 self.backups(d)["s3"]["pending"] == 0 and
                 self.backups(d)["s3"]["last_upload"], 30, interval=0.1,
                 what="automatic snapshot uploaded")
        (old,) = self.snap_dirs(d)
        self.assertIn("%s/manifest.json" % old, self.s3_objects(data))
        # Two days later: the old one goes, here and in S3.
        d.stop()
        self.start(offset=2 * DAY, d=d)

        def pruned():
            objs = self.s3_objects(data)
            names = self.snap_dirs(d)
            return old not in names and len(names) == 1 and \
                not any(k.startswith(old + "/") for k in objs) and \
                "%s/manifest.json" % names[0] in objs
        wait_for(pruned, 30, interval=0.2, what="old copy deleted in S3")


if __name__ == "__main__":
    cklib.main()
