#!/usr/bin/python3
"""Fault injection against the real daemon and real redis-server nodes:
kill -9 of cachekeeperd at seeded random points of create, scaling,
resharding, failover handling, deletion, snapshots and restores; nodes
hung with SIGSTOP; a node directory turned read-only and the state dir
filled up (a small tmpfs in a private mount namespace); the wall clock stepped between runs;
and the ElastiCache emulator dropping, delaying, throttling, failing and
garbling answers. After each fault the daemon must converge with every
acknowledged key present, no orphan redis-server, no half-written JSON.

The seed is random.Random(seed); it is printed, and CK_FAULT_SEED=N runs
the same points again. Each scenario prints one line:
    FAULT name seed=N faults=F keys=K lost=L  (details)
docs/RELIABILITY.md explains every scenario. Every process a test starts
is stopped by its pid, also on failure."""

import hashlib
import json
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import threading
import time

import cklib
from cklib import DaemonTest, spec, wait_for, DAEMON
from rcluster import ClusterClient
from resp import Client, RedisError

REDIS = shutil.which("redis-server") or "/usr/bin/redis-server"
REDIS_CLI = shutil.which("redis-cli") or "/usr/bin/redis-cli"
SEED = int(os.environ.get("CK_FAULT_SEED") or
           random.SystemRandom().randrange(1, 1 << 31))
RESULTS = []
sys.stderr.write("fault suite seed: %d (CK_FAULT_SEED=%d reproduces it)\n"
                 % (SEED, SEED))


def fill(path):
    """Fill the file system holding path, to the last byte."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        for chunk in (1 << 16, 4096, 1):
            try:
                while True:
                    os.write(fd, b"\0" * chunk)
            except OSError:
                pass
    finally:
        os.close(fd)


def report(name, faults, keys, lost, detail=""):
    line = "FAULT %-22s seed=%d faults=%d keys=%d lost=%d%s" % (
        name, SEED, faults, keys, lost, ("  (%s)" % detail) if detail
        else "")
    RESULTS.append(line)
    sys.stderr.write(line + "\n")


def redis_procs():
    """{pid: working directory} of every redis-server on the host (the
    daemon starts each node in its directory; Redis rewrites its argv)."""
    out = {}
    for p in os.listdir("/proc"):
        if not p.isdigit():
            continue
        try:
            with open("/proc/%s/cmdline" % p, "rb") as f:
                argv0 = f.read().split(b"\0")[0]
            cwd = os.readlink("/proc/%s/cwd" % p)
        except OSError:
            continue
        if b"redis-server" in argv0:
            out[int(p)] = cwd
    return out


class Writer(threading.Thread):
    """Writes k0, k1, ... and remembers what was acknowledged. wait=1:
    a write counts only once WAIT says a replica has it."""

    def __init__(self, port=None, cluster=None, wait=0, prefix="w"):
        super().__init__(daemon=True)
        self.port, self.cluster, self.wait = port, cluster, wait
        self.prefix = prefix
        self.acked = []
        self.stop_ev = threading.Event()
        self.errors = 0

    def run(self):
        i = 0
        c = None
        while not self.stop_ev.is_set():
            key = "%s%d" % (self.prefix, i)
            try:
                if self.cluster:
                    self.cluster.call("SET", key, str(i), deadline_s=2)
                    self.acked.append(key)
                else:
                    if c is None:
                        c = Client(port=self.port, timeout=1.0)
                    c.call("SET", key, str(i))
                    if not self.wait or c.call("WAIT", str(self.wait),
                                               "1000") >= self.wait:
                        self.acked.append(key)
                i += 1
            except (OSError, ConnectionError, RedisError, ValueError):
                self.errors += 1
                if c is not None:
                    try:
                        c.close()
                    except OSError:
                        pass
                c = None
                i += 1
                time.sleep(0.02)
            time.sleep(0.002)
        if c is not None:
            c.close()

    def finish(self):
        self.stop_ev.set()
        self.join(10)
        return list(self.acked)


class FaultTest(DaemonTest):

    def setUp(self):
        super().setUp()
        if not os.access(REDIS, os.X_OK):
            self.skipTest("redis-server is not installed")
        self.base = cklib.free_port_block()
        self.port = self.base + 100
        self.rng = random.Random("%d-%s" % (SEED, self._testMethodName))
        self.faults = 0
        self.fresh_after = 0

    def msg(self, what):
        return "%s (seed %d: CK_FAULT_SEED=%d reproduces it)" % (
            what, SEED, SEED)

    def conf_text(self, d, extra=""):
        return ("clusters_dir: %s\nstate_dir: %s\nresync_interval: 2s\n"
                "local:\n  port_range: %d-%d\n  failover_after: 1s\n"
                "  cluster_node_timeout: 1000ms\n%s"
                % (d.specs, d.state, self.base, self.base + 99, extra))

    def start(self, env=None, binary=DAEMON, extra=""):
        d = self.daemon(binary=binary, env=env)
        with open(d.conf, "w") as f:
            f.write(self.conf_text(d, extra))
        d.start()
        return d

    def crash(self, d, delay):
        """kill -9 the daemon after delay seconds, start it again."""
        time.sleep(delay)
        d.alive()
        d.stop(signal.SIGKILL)
        self.faults += 1
        self.check_files(d)
        # A status file from before the kill must not pass for the new
        # run's: avail() waits for one written after the restart.
        self.fresh_after = time.time()
        d.start()

    # --- checks ----------------------------------------------------------

    def check_files(self, d, root=None):
        """Every *.json under the state dir parses."""
        root = root or d.state
        n = 0
        for dirpath, _, files in os.walk(root):
            for fn in files:
                if fn.endswith(".json"):
                    p = os.path.join(dirpath, fn)
                    with open(p) as f:
                        try:
                            json.load(f)
                        except ValueError as e:
                            self.fail(self.msg("%s does not parse: %s" %
                                               (p, e)))
                    n += 1
        return n

    def known_nodes(self, d, root=None):
        base = os.path.join(root or d.state, "local")
        known = set()
        if not os.path.isdir(base):
            return known
        for c in os.listdir(base):
            p = os.path.join(base, c, "cluster.json")
            try:
                with open(p) as f:
                    j = json.load(f)
            except (OSError, ValueError):
                continue
            for n in j.get("nodes", []):
                known.add(os.path.join(base, c, n["id"]))
        return known

    def check_orphans(self, d):
        """Every redis-server of this state dir belongs to a node in a
        cluster.json; none runs from outside it."""
        known = self.known_nodes(d)
        procs = redis_procs()
        for pid, cwd in procs.items():
            if cwd.startswith(d.state + "/"):
                self.assertIn(cwd, known, self.msg(
                    "orphan redis-server pid %d (%s)" % (pid, cwd)))
        for pid in cklib.node_pids(d.state):
            if pid in procs:
                self.assertTrue(procs[pid].startswith(d.state + "/"),
                                self.msg("a pid file names pid %d, not "
                                         "one of ours" % pid))

    def avail(self, d, name, nodes=None, shards=None, timeout=40):
        def ok():
            d.alive()
            if os.stat(d.status_path(name)).st_mtime < self.fresh_after:
                return None
            st = d.status(name)
            if not st or st["phase"] != "available" or \
                    st["observed_generation"] != st["generation"]:
                return None
            ep = st["endpoints"]
            if nodes is not None and len(ep.get("nodes", [])) != nodes:
                return None
            if shards is not None and (len(ep.get("shards", [])) != shards
                                       or ep.get("cluster_state") != "ok"):
                return None
            return st
        try:
            return wait_for(ok, timeout, interval=0.1, what="%s available"
                            % name)
        except AssertionError as e:
            raise AssertionError(self.msg(str(e)))

    def lost_keys(self, keys, port=None, cluster=None):
        if cluster:
            return [k for k in keys if cluster.call("GET", k) is None]
        return [k for k, v in zip(keys, self.get_all(port, keys, 5))
                if v is None]

    def cluster_check(self, st):
        port = int(st["endpoints"]["nodes"][0]["address"].rsplit(":", 1)[1])

        def ok():
            p = subprocess.run([REDIS_CLI, "--cluster", "check",
                                "127.0.0.1:%d" % port],
                               capture_output=True, text=True, timeout=20)
            return "[OK] All 16384 slots covered" in p.stdout and \
                "[WARNING]" not in p.stdout and "[ERR]" not in p.stdout
        wait_for(ok, 20, interval=0.5, what=self.msg("cluster check OK"))

    def group(self, name="web", size=3, extra=""):
        return spec(name, backend="local", extra="cluster_size: %d\n"
                    "port: %d\n%s" % (size, self.port, extra))

    def cluster(self, shards, replicas, name="cat"):
        return spec(name, backend="local", extra="port: %d\n"
                    "cluster_mode:\n  enabled: true\n  num_node_groups: %d\n"
                    "  replicas_per_node_group: %d\n"
                    % (self.port, shards, replicas))

    # --- kill -9 of the daemon -----------------------------------------

    def test_kill9_create(self):
        d = self.start()
        d.write("web.yaml", self.group(size=3))
        t = self.rng.uniform(0.02, 0.6)
        self.crash(d, t)
        self.avail(d, "web", nodes=3)
        w = Writer(port=self.port)
        w.start()
        time.sleep(0.5)
        keys = w.finish()
        lost = self.lost_keys(keys, port=self.port)
        self.check_orphans(d)
        self.check_files(d)
        report("kill9_create", self.faults, len(keys), len(lost),
               "killed at %.2fs" % t)
        self.assertEqual(lost, [], self.msg("lost keys"))

    def test_kill9_create_cluster_mode(self):
        d = self.start()
        d.write("cat.yaml", self.cluster(2, 1))
        t = self.rng.uniform(0.02, 1.0)
        self.crash(d, t)
        st = self.avail(d, "cat", shards=2, nodes=4, timeout=60)
        self.cluster_check(st)
        cc = ClusterClient([("127.0.0.1", self.port)])
        keys = ["c%d" % i for i in range(500)]
        cc.pipeline_set([(k, k) for k in keys])
        lost = self.lost_keys(keys, cluster=cc)
        cc.close()
        self.check_orphans(d)
        self.check_files(d)
        report("kill9_create_cluster", self.faults, len(keys), len(lost),
               "killed at %.2fs" % t)
        self.assertEqual(lost, [], self.msg("lost keys"))

    def test_kill9_scale_up_down(self):
        d = self.start()
        d.write("web.yaml", self.group(size=2))
        self.avail(d, "web", nodes=2)
        w = Writer(port=self.port)
        w.start()
        points = []
        for size in (4, 2):
            d.write("web.yaml", self.group(size=size))
            t = self.rng.uniform(0.05, 1.5)
            points.append("%d nodes at %.2fs" % (size, t))
            self.crash(d, t)
            self.avail(d, "web", nodes=size)
            self.check_orphans(d)
        keys = w.finish()
        lost = self.lost_keys(keys, port=self.port)
        self.check_files(d)
        report("kill9_scale", self.faults, len(keys), len(lost),
               ", ".join(points))
        self.assertEqual(lost, [], self.msg("lost keys"))

    def test_kill9_reshard(self):
        d = self.start()
        d.write("cat.yaml", self.cluster(2, 0))
        self.avail(d, "cat", shards=2, nodes=2, timeout=60)
        cc = ClusterClient([("127.0.0.1", self.port)])
        keys = ["r%d" % i for i in range(3000)]
        cc.pipeline_set([(k, "x" * 100) for k in keys])
        w = Writer(cluster=ClusterClient([("127.0.0.1", self.port)]),
                   prefix="rw")
        w.start()
        points = []
        for shards in (3, 2):
            d.write("cat.yaml", self.cluster(shards, 0))
            t = self.rng.uniform(0.2, 2.0)
            points.append("%d shards at %.2fs" % (shards, t))
            self.crash(d, t)
            st = self.avail(d, "cat", shards=shards, nodes=shards,
                            timeout=90)
            self.cluster_check(st)
            self.check_orphans(d)
        wkeys = w.finish()
        w.cluster.close()
        cc.close()
        cc = ClusterClient([("127.0.0.1", self.port)])
        lost = self.lost_keys(keys + wkeys, cluster=cc)
        cc.close()
        self.check_files(d)
        report("kill9_reshard", self.faults, len(keys) + len(wkeys),
               len(lost), ", ".join(points))
        self.assertEqual(lost, [], self.msg("lost keys"))

    def test_kill9_during_failover(self):
        d = self.start()
        d.write("web.yaml", self.group(size=3))
        st = self.avail(d, "web", nodes=3)
        w = Writer(port=self.port, wait=1)
        w.start()
        time.sleep(0.5)
        prim = [n for n in st["endpoints"]["nodes"]
                if n["role"] == "primary"][0]
        os.kill(prim["pid"], signal.SIGKILL)
        self.faults += 1
        t = self.rng.uniform(0.0, 2.0)
        self.crash(d, t)
        st = self.avail(d, "web", nodes=3)
        new = [n for n in st["endpoints"]["nodes"] if n["role"] ==
               "primary"][0]
        time.sleep(0.3)
        keys = w.finish()
        lost = self.lost_keys(keys, port=self.port)
        self.check_orphans(d)
        self.check_files(d)
        report("kill9_failover", self.faults, len(keys), len(lost),
               "primary %s killed, daemon at +%.2fs, new primary %s; "
               "writes acknowledged by WAIT 1" % (prim["id"], t, new["id"]))
        self.assertEqual(lost, [], self.msg("lost WAIT-acknowledged keys"))

    def test_kill9_delete(self):
        d = self.start()
        d.write("web.yaml", self.group(size=2, extra="deletion_policy: "
                                       "delete\n"))
        self.avail(d, "web", nodes=2)
        w = Writer(port=self.port)
        w.start()
        time.sleep(0.3)
        keys = w.finish()
        lost = []
        os.unlink(os.path.join(d.specs, "web.yaml"))
        t = self.rng.uniform(0.0, 0.5)
        self.crash(d, t)
        self.check_orphans(d)
        # A spec missing at start-up is never deleted: the cluster is
        # either gone, or retained (nodes the deletion had stopped stay
        # stopped until the spec comes back).
        cj = os.path.join(d.state, "local", "web", "cluster.json")

        def settled():
            d.alive()
            if not os.path.exists(cj):
                return "deleted"
            st = d.status("web")
            return st and st["phase"] == "retained" and "retained"
        outcome = wait_for(settled, 20, interval=0.1,
                           what=self.msg("web deleted or retained"))
        self.check_orphans(d)
        if outcome == "retained":
            with open(cj) as f:
                ids = [n["id"] for n in json.load(f)["nodes"]]
            running = sorted(set(os.path.basename(c) for c in
                                 redis_procs().values()
                                 if c.startswith(os.path.dirname(cj))))
            outcome = "retained with %d of %d nodes running" % (
                len(running), len(ids))
            # The spec comes back: the cluster is whole again, then goes.
            d.write("web.yaml", self.group(size=2, extra="deletion_policy: "
                                           "delete\n"))
            self.avail(d, "web", nodes=2)
            lost = self.lost_keys(keys, port=self.port)
            outcome += ", whole again when its spec returned"
            os.unlink(os.path.join(d.specs, "web.yaml"))
        else:
            # Killed between removing cluster.json and the directory:
            # no process is left; a new cluster of the same name must
            # start empty, not with the deleted one's data.
            d.write("web.yaml", self.group(size=2, extra="deletion_policy: "
                                           "delete\n"))
            self.avail(d, "web", nodes=2)
            back = len(keys) - len(self.lost_keys(keys, port=self.port))
            self.assertEqual(back, 0, self.msg("deleted keys came back"))
            outcome += ", the same name created again empty"
            os.unlink(os.path.join(d.specs, "web.yaml"))
        wait_for(lambda: not os.path.exists(os.path.join(
            d.state, "local", "web")), 20, what=self.msg("web deleted"))
        self.check_orphans(d)
        self.assertFalse([p for p, cwd in redis_procs().items()
                          if cwd.startswith(d.state + "/")],
                         self.msg("a node outlived its deletion"))
        self.check_files(d)
        report("kill9_delete", self.faults, len(keys) if "retained" in
               outcome else 0, len(lost), "killed at %.2fs: %s after "
               "restart" % (t, outcome))
        self.assertEqual(lost, [], self.msg("a retained cluster lost keys"))

    def test_deletion_leftover_not_resurrected(self):
        """The exact state a kill between deletion's two steps leaves:
        nodes stopped, cluster.json gone, the directory still there."""
        d = self.start()
        d.write("web.yaml", self.group(size=2))
        st = self.avail(d, "web", nodes=2)
        with Client(port=self.port) as c:
            for i in range(50):
                c.call("SET", "old%d" % i, "x")
            c.call("SAVE")
        d.stop(signal.SIGKILL)
        self.faults += 1
        for n in st["endpoints"]["nodes"]:
            os.kill(n["pid"], signal.SIGKILL)
        os.unlink(os.path.join(d.state, "local", "web", "cluster.json"))
        os.unlink(d.status_path("web"))
        self.fresh_after = time.time()
        d.start()
        self.avail(d, "web", nodes=2)
        back = 50 - len(self.lost_keys(["old%d" % i for i in range(50)],
                                       port=self.port))
        self.check_orphans(d)
        report("deletion_leftover", self.faults, 50, 0, "%d deleted keys "
               "came back" % back)
        self.assertEqual(back, 0, self.msg("deleted keys came back"))

    # --- hung nodes ------------------------------------------------------

    def sigstop(self, role):
        d = self.start()
        d.write("web.yaml", self.group(size=3))
        st = self.avail(d, "web", nodes=3)
        w = Writer(port=self.port, wait=1)
        w.start()
        time.sleep(0.3)
        n = [x for x in st["endpoints"]["nodes"] if x["role"] == role][0]
        os.kill(n["pid"], signal.SIGSTOP)
        self.faults += 1
        try:
            if role == "replica":
                wait_for(lambda: d.status("web")["phase"] == "degraded" and
                         n["id"] in (d.status("web")["message"] or ""), 10,
                         interval=0.1, what=self.msg("degraded"))
            else:
                wait_for(lambda: [x for x in d.status("web")["endpoints"][
                    "nodes"] if x["role"] == "primary"][0]["id"] !=
                    n["id"], 15, interval=0.1, what=self.msg("failover"))
            n_before = len(w.acked)
            time.sleep(1.0)
            self.assertGreater(len(w.acked), n_before,
                               self.msg("no writes while %s hung" % role))
        finally:
            os.kill(n["pid"], signal.SIGCONT)
        st = self.avail(d, "web", nodes=3, timeout=40)
        back = [x for x in st["endpoints"]["nodes"] if x["id"] == n["id"]][0]
        if role == "primary":
            self.assertEqual(back["role"], "replica")
        keys = w.finish()
        lost = self.lost_keys(keys, port=self.port)
        self.check_orphans(d)
        report("sigstop_" + role, self.faults, len(keys), len(lost),
               "%s %s stopped; %s" % (role, n["id"], "came back as a replica"
                                      if role == "primary" else
                                      "writes went on"))
        self.assertEqual(lost, [], self.msg("lost keys"))

    def test_sigstop_replica(self):
        self.sigstop("replica")

    def test_sigstop_primary(self):
        self.sigstop("primary")

    # --- read-only node dir, full state dir (private mount namespace) ----

    def test_readonly_dir_and_full_state_dir(self):
        if os.geteuid() != 0 or not shutil.which("unshare") or \
                not shutil.which("nsenter"):
            self.skipTest("needs root, unshare(1) and nsenter(1)")
        # Two small tmpfs in the daemon's private mount namespace: the
        # state dir (8 MiB) and local.data_dir (the nodes', 16 MiB), so
        # the nodes' disk can turn read-only while the status can still
        # be written, and the state dir can fill up on its own. (As
        # root, chmod 0500 stops nobody: CAP_DAC_OVERRIDE.)
        state = os.path.join(self.tmp, "state")     # cklib.Daemon's
        data = os.path.join(self.tmp, "data")
        os.makedirs(state, exist_ok=True)
        os.makedirs(data, exist_ok=True)
        wrap = os.path.join(self.tmp, "ns-daemon.sh")
        with open(wrap, "w") as f:
            f.write('#!/bin/sh\nexec unshare --mount --propagation private '
                    'sh -c \'mount -t tmpfs -o size=8m,mode=0755 tmpfs "$0" '
                    '&& mount -t tmpfs -o size=16m,mode=0755 tmpfs "$1" && '
                    'shift && exec "$@"\' %s %s %s "$@"\n'
                    % (state, data, DAEMON))
        os.chmod(wrap, 0o755)
        d = self.daemon(binary=wrap)
        with open(d.conf, "w") as f:
            f.write(self.conf_text(d, "  data_dir: %s\n" % data))
        d.start()
        pid = d.pid()
        root = "/proc/%d/root%s" % (pid, d.state)
        d.status_path = lambda name: os.path.join(root, "status",
                                                  name + ".json")

        def ns(*cmd):
            return subprocess.run(["nsenter", "--mount", "--target",
                                   str(pid)] + list(cmd),
                                  capture_output=True, text=True, timeout=10)

        droot = "/proc/%d/root%s/web" % (pid, data)

        def real_pids():
            out = {}
            for nid in ("n1", "n2", "n3"):
                try:
                    with open(os.path.join(droot, nid, "redis.pid")) as f:
                        out[nid] = int(f.read().strip())
                except (OSError, ValueError):
                    pass
            return out

        def track():
            # The status may be stale (see below): the pid files too.
            st = d.status("web") or {}
            d.extra_pids = [n["pid"] for n in st.get("endpoints", {}).get(
                "nodes", [])] + list(real_pids().values())
        def full_then_kill_replica(filler):
            # Two faults: a disk filled to the last byte through filler,
            # then a replica killed so the daemon must write.
            fill(filler)
            self.faults += 1
            rep = [x for x in d.status("web")["endpoints"]["nodes"]
                   if x["role"] == "replica"][0]
            os.kill(rep["pid"], signal.SIGKILL)
            self.faults += 1
            return rep
        try:
            wait_for(lambda: ns("mountpoint", "-q", d.state).returncode == 0,
                     5, what="tmpfs state dir")
            d.write("web.yaml", self.group(size=2))
            st = self.avail(d, "web", nodes=2)
            track()
            w = Writer(port=self.port)
            w.start()
            # 1. A node directory read-only: BGSAVE fails, status says so.
            r = ns("mount", "-o", "remount,ro", data)
            self.assertEqual(r.returncode, 0, r.stderr)
            self.faults += 1
            sock = "/proc/%d/root%s/web/n1/sock/redis.sock" % (pid, data)
            with Client(unix=sock) as c:
                c.call("BGSAVE")
            st = wait_for(lambda: "background save failed" in (
                d.status("web")["message"] or "") and d.status("web"), 15,
                interval=0.2, what=self.msg("save failure in status"))
            ro_msg = st["message"]
            d.alive()
            r = ns("mount", "-o", "remount,rw", data)
            self.assertEqual(r.returncode, 0, r.stderr)
            with Client(unix=sock) as c:
                wait_for(lambda: c.call("BGSAVE") and False or
                         "rdb_last_bgsave_status:ok" in c.call(
                             "INFO", "persistence"), 10, interval=0.3,
                         what="BGSAVE ok again")
            wait_for(lambda: "background save failed" not in (
                d.status("web")["message"] or ""), 15, interval=0.2,
                what=self.msg("save failure cleared"))
            # 2. The state dir full: kill a replica so the daemon must
            # write (status, state) while it cannot.
            filler = os.path.join(root, "filler")
            full_then_kill_replica(filler)
            wait_for(lambda: "No space left on device" in d.log(), 15,
                     interval=0.2, what=self.msg("ENOSPC reported"))
            t_end = time.monotonic() + 3
            while time.monotonic() < t_end:
                d.alive()
                self.check_files(d, root=root)
                time.sleep(0.1)
            os.unlink(filler)
            track()
            # Recovered: both nodes run (as their pid files say) and take
            # writes, and the status file catches up on its own: a status
            # write that failed is retried (at most 8 s apart), not left
            # stale until the cluster changes again.
            wait_for(lambda: len([p for p in real_pids().values()
                                  if cklib.is_redis(p)]) == 2, 20,
                     what=self.msg("both nodes running"))
            track()
            with Client(port=self.port) as c:
                wait_for(lambda: c.call("SET", "after-full", "1") == "OK",
                         10, what=self.msg("a write after space returned"))
            t0 = time.monotonic()
            wait_for(lambda: {n["id"]: n["pid"] for n in d.status(
                "web")["endpoints"]["nodes"]} == real_pids(), 20,
                interval=0.2, what=self.msg("status caught up"))
            fresh = "status caught up %.1f s after" % (time.monotonic() - t0)
            track()
            keys = w.finish()
            lost = self.lost_keys(keys, port=self.port)
            self.check_files(d, root=root)
            errs = [l for l in d.log().splitlines()
                    if "No space left on device" in l and " warning: " in l]
            # Each write that keeps failing is a warning once, not one a
            # tick.
            st_errs = [l for l in errs if "status/web.json" in l]
            self.assertEqual(len(st_errs), 1, self.msg(st_errs))
            self.assertIn("wrote %s again" % os.path.join(
                d.state, "status", "web.json"), d.log())
            self.assertEqual(lost, [], self.msg("lost keys"))
            # 3. The nodes' disk full: a dead replica cannot be started
            # (its redis.conf cannot be written). One warning, the
            # node's status says why, and it starts once there is room.
            dfill = os.path.join("/proc/%d/root%s" % (pid, data), "filler")
            rep = full_then_kill_replica(dfill)
            st = wait_for(lambda: [x for x in d.status("web")["endpoints"][
                "nodes"] if x["id"] == rep["id"] and x.get("error")] and
                d.status("web"), 15, interval=0.2,
                what=self.msg("the start failure in status"))
            node_err = [x for x in st["endpoints"]["nodes"]
                        if x["id"] == rep["id"]][0]["error"]
            self.assertIn("No space left on device", node_err)
            self.assertIn("node %s cannot start" % rep["id"], st["message"])
            time.sleep(3)     # a dozen ticks
            warned = [l for l in d.log().splitlines()
                      if "cannot restart node %s" % rep["id"] in l and
                      " warning: " in l]
            self.assertEqual(len(warned), 1, self.msg(warned))
            os.unlink(dfill)
            wait_for(lambda: "node %s runs again after" % rep["id"] in
                     d.log(), 15, interval=0.2,
                     what=self.msg("the replica started again"))
            wait_for(lambda: len([p for p in real_pids().values()
                                  if cklib.is_redis(p)]) == 2, 20,
                     what=self.msg("both nodes running again"))
            track()
            self.avail(d, "web", nodes=2)
            wait_for(lambda: not any(x.get("error") for x in d.status(
                "web")["endpoints"]["nodes"]), 15, interval=0.2,
                what=self.msg("the start failure cleared"))
            report("readonly_and_full", self.faults, len(keys), len(lost),
                   "read-only: %r; full: %d warnings, e.g. %r; "
                   "%s; nodes' disk full: %r, %d warning" % (
                       ro_msg, len(errs), errs[0][-90:], fresh, node_err,
                       len(warned)))
        finally:
            track()

    # --- the wall clock stepping ------------------------------------------

    def test_clock_steps(self):
        day = (time.gmtime().tm_wday + 1 + 3) % 7      # three days on
        names = ["sun", "mon", "tue", "wed", "thu", "fri", "sat"]
        win = "%s:03:00-%s:04:00" % (names[day], names[day])
        now = int(time.time())
        # Seconds from now to the window's start.
        lt = time.gmtime(now)
        days_on = (day - (lt.tm_wday + 1) % 7) % 7
        start = now - (lt.tm_hour * 3600 + lt.tm_min * 60 + lt.tm_sec) + \
            days_on * 86400 + 3 * 3600
        extra = 'maintenance_window: "%s"\nsnapshot_window: ' \
            '"05:00-06:00"\n' % win
        d = self.start()
        d.write("web.yaml", self.group(size=2, extra=extra))
        st = self.avail(d, "web", nodes=2)
        pids = sorted(n["pid"] for n in st["endpoints"]["nodes"])
        d.write("web.yaml", self.group(size=2, extra=extra +
                                       'parameters: {databases: "20"}\n'))
        wait_for(lambda: "waits for the maintenance window" in
                 (d.status("web")["message"] or ""), 15,
                 what=self.msg("deferral"))
        runs = []
        # Run 2: clock stepped to 10 minutes before the window: no
        # restart. Run 3: stepped back a day: still none.
        for off in (start - now - 600, start - now - 86400):
            d.stop()
            d.env["CK_TEST_CLOCK_OFFSET_S"] = str(off)
            d.start()
            self.faults += 1
            time.sleep(3)
            st = d.status("web")
            self.assertEqual(sorted(n["pid"] for n in st["endpoints"][
                "nodes"]), pids, self.msg("restarted early, offset %d" %
                                          off))
            runs.append("offset %+ds: no restart" % off)
        # Failover timing with the clock stepped back: monotonic.
        prim = [n for n in st["endpoints"]["nodes"]
                if n["role"] == "primary"][0]
        t0 = time.monotonic()
        os.kill(prim["pid"], signal.SIGKILL)
        self.faults += 1
        wait_for(lambda: [n for n in d.status("web")["endpoints"]["nodes"]
                          if n["role"] == "primary"][0]["id"] != prim["id"],
                 15, interval=0.05, what=self.msg("failover"))
        took = time.monotonic() - t0
        self.assertGreaterEqual(took, 0.9, self.msg("failover early"))
        self.assertLess(took, 4 * cklib.SLOW, self.msg("failover late"))
        runs.append("failover after %.2fs (failover_after 1s)" % took)
        self.avail(d, "web", nodes=2)
        pids = sorted(n["pid"] for n in d.status("web")["endpoints"][
            "nodes"])
        # Run 4: stepped into the window: the restart happens now.
        d.stop()
        d.env["CK_TEST_CLOCK_OFFSET_S"] = str(start - now + 60)
        d.start()
        self.faults += 1
        t0 = time.monotonic()
        d.wait_log("rolling restart done", timeout=40)
        took_r = time.monotonic() - t0
        st = self.avail(d, "web", nodes=2)
        self.assertNotEqual(sorted(n["pid"] for n in st["endpoints"][
            "nodes"]), pids)
        runs.append("in the window: rolling restart done in %.1fs" % took_r)
        with Client(port=self.port) as c:
            self.assertEqual(c.call("CONFIG", "GET", "databases")[1], "20")
        self.check_orphans(d)
        report("clock_steps", self.faults, 0, 0, "; ".join(runs))

    # --- what asynchronous replication loses on failover ------------------

    def pipelined_writer(self, stop, acked, prefix, port):
        """SETs in pipelines of 50 through the endpoint, no WAIT."""
        i = 0
        c = None
        while not stop.is_set():
            try:
                if c is None:
                    c = Client(port=port, timeout=1.0)
                batch = ["%s%d" % (prefix, i + j) for j in range(50)]
                i += 50
                for k in batch:
                    c.send("SET", k, "v")
                for k in batch:
                    try:
                        c._reply()
                        acked.append(k)
                    except RedisError:
                        pass
            except (OSError, ConnectionError, ValueError):
                if c is not None:
                    try:
                        c.close()
                    except OSError:
                        pass
                c = None
                time.sleep(0.01)
        if c is not None:
            c.close()

    def measure_loss(self, d, name, port, extra, trials):
        d.write(name + ".yaml", spec(name, backend="local", extra=(
            "cluster_size: 3\nport: %d\nreader_port: %d\n"
            "deletion_policy: delete\n%s" % (port, port + 1, extra))))
        st = self.avail(d, name, nodes=3)
        out = []
        for t in range(trials):
            stop = threading.Event()
            acked = []
            th = threading.Thread(target=self.pipelined_writer, args=(
                stop, acked, "%s-t%d-" % (name, t), port), daemon=True)
            th.start()
            time.sleep(self.rng.uniform(0.3, 0.8))
            prim = [n for n in st["endpoints"]["nodes"]
                    if n["role"] == "primary"][0]
            os.kill(prim["pid"], signal.SIGKILL)
            self.faults += 1
            n_at_kill = len(acked)
            wait_for(lambda: [n for n in d.status(name)["endpoints"][
                "nodes"] if n["role"] == "primary"][0]["id"] != prim["id"],
                15, interval=0.05, what=self.msg("failover"))
            time.sleep(0.3)
            stop.set()
            th.join(10)
            st = self.avail(d, name, nodes=3)
            keys = list(acked)
            lost = self.lost_keys(keys, port=port)
            out.append((len(keys), n_at_kill, len(lost)))
        os.unlink(os.path.join(d.specs, name + ".yaml"))
        return out

    def test_async_replication_loss(self):
        trials = int(os.environ.get("CK_FAULT_TRIALS", "4"))
        d = self.start()
        res = {}
        for name, port, extra in (
                ("plain", self.port, ""),
                ("minrep", self.port + 2, 'parameters: {min-replicas-to-'
                 'write: "1", min-replicas-max-lag: "10"}\n')):
            res[name] = self.measure_loss(d, name, port, extra, trials)
            acked = sum(a for a, _, _ in res[name])
            lost = sum(l for _, _, l in res[name])
            report("async_loss_" + name, trials, acked, lost,
                   "per trial acked/lost: %s" % ", ".join(
                       "%d/%d" % (a, l) for a, _, l in res[name]))
        # Not asserted to be 0: Redis acknowledges before replicating
        # (RELIABILITY.md); WAIT-acknowledged writes are (kill9_failover).

    # --- snapshots --------------------------------------------------------

    def children_of(self, pid):
        """Processes whose parent is pid, but the redis-server nodes
        (which the daemon detaches, and which must outlive it)."""
        out = []
        for p in os.listdir("/proc"):
            if not p.isdigit():
                continue
            try:
                with open("/proc/%s/stat" % p) as f:
                    st = f.read()
                with open("/proc/%s/cmdline" % p, "rb") as f:
                    argv0 = f.read().split(b"\0")[0]
            except OSError:
                continue
            ppid = int(st.rsplit(")", 1)[1].split()[1])
            if ppid == pid and b"redis-server" not in argv0:
                out.append(int(p))
        return out

    def kill_daemon(self, d, probe=None):
        """kill -9 the daemon; what it had started (copy or restore
        children, their temporary redis-servers) must end with it, at
        once, so that the next daemon is the only writer. Returns the
        children it had, and what probe() said just before the kill."""
        kids = self.children_of(d.pid())
        seen = probe() if probe else None
        d.alive()
        d.stop(signal.SIGKILL)
        self.faults += 1

        def running(pid):
            try:
                with open("/proc/%d/stat" % pid) as f:
                    return f.read().rsplit(")", 1)[1].split()[0] != "Z"
            except OSError:
                return False

        def gone():
            left = [k for k in kids if running(k)]
            strays = [pid for pid, cwd in redis_procs().items()
                      if cwd.startswith(d.state + "/") and cwd not in
                      self.known_nodes(d)]
            return not left and not strays
        # Killed as their parent dies, they are gone in milliseconds; a
        # restore left running lasts a second or more. A copy left running
        # can finish sooner: snapshot_killed() sees the snapshot it
        # completes after the kill.
        wait_for(gone, 0.5, interval=0.01, what=self.msg(
            "the killed daemon's children (%s) and temporary redis-servers "
            "to end with it" % kids))
        return kids, seen

    def check_snapshots(self, d, tmp_ok):
        """No snapshot directory looks complete without being complete:
        every one that backup_list() would show has a manifest, and every
        file it names has its size and SHA-256. .tmp-* directories are
        work in progress (a crash leaves them; the next daemon removes
        them). Returns the names of the complete ones."""
        root = os.path.join(d.state, "backups")
        good = []
        if not os.path.isdir(root):
            return good
        for cl in os.listdir(root):
            for snap in os.listdir(os.path.join(root, cl)):
                sd = os.path.join(root, cl, snap)
                if snap.startswith(".tmp-"):
                    self.assertTrue(tmp_ok, self.msg(
                        "%s left behind after the restart" % sd))
                    self.assertFalse(os.path.exists(os.path.join(
                        sd, "manifest.json")), self.msg(
                        "%s has a manifest but was not renamed" % sd))
                    continue
                if snap.startswith("."):
                    continue
                mp = os.path.join(sd, "manifest.json")
                self.assertTrue(os.path.exists(mp), self.msg(
                    "%s looks like a snapshot but has no manifest" % sd))
                with open(mp) as f:
                    m = json.load(f)
                for sh in m["shards"]:
                    h = hashlib.sha256()
                    n = 0
                    with open(os.path.join(sd, sh["file"]), "rb") as f:
                        for chunk in iter(lambda: f.read(1 << 20), b""):
                            h.update(chunk)
                            n += len(chunk)
                    self.assertEqual((n, h.hexdigest()),
                                     (sh["size"], sh["sha256"]),
                                     self.msg("%s/%s does not match its "
                                              "manifest" % (sd, sh["file"])))
                good.append(snap)
        return sorted(good)

    def snapshot_cli(self, d, name):
        return subprocess.Popen([cklib.CLI, "--socket", os.path.join(
            d.tmp, "control.sock"), "snapshot", "web", "--name", name],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

    def restore_spec(self, name, port, snap, windows):
        return spec(name, backend="local", extra="cluster_size: 2\n"
                    "port: %d\nsnapshot_window: \"%s\"\n"
                    "maintenance_window: \"%s\"\nrestore_from: %s\n"
                    % (port, windows[0], windows[1], snap))

    def snapshot_killed(self, d, name, t, in_copy):
        """A manual snapshot, and kill -9 of the daemon t seconds into
        it (in_copy: t seconds after its copy began, which is when its
        .tmp- directory appears). Restarts the daemon; the snapshot must
        be complete, or gone and possible again under the same name."""
        tmp = os.path.join(d.state, "backups", "web", ".tmp-" + name)
        final = os.path.join(d.state, "backups", "web", name)
        p = self.snapshot_cli(d, name)
        if in_copy:
            wait_for(lambda: os.path.isdir(tmp) or os.path.isdir(final),
                     30, interval=0.002,
                     what=self.msg("the copy of %s to start" % name))
        time.sleep(t)
        phase = ("end" if os.path.isdir(final) else "copy" if
                 os.path.isdir(tmp) else "BGSAVE")
        # Whether it was complete, read just before the kill (a rename in
        # the microseconds between would be reported wrongly).
        kids, done = self.kill_daemon(d, lambda: os.path.isdir(final))
        p.communicate(timeout=30)
        before = self.check_snapshots(d, tmp_ok=True)
        self.assertFalse(name in before and not done, self.msg(
            "%s was completed after the daemon died, by a child it left "
            "behind" % name))
        self.fresh_after = time.time()
        d.start()
        self.avail(d, "web", nodes=2)
        # The next daemon removes what the crash left half written.
        wait_for(lambda: not os.path.exists(tmp), 10,
                 what=self.msg("%s removed" % tmp))
        if name in before:
            outcome = "complete before the kill"
        else:
            # Nothing half done is left in its way: the same name again.
            p = self.snapshot_cli(d, name)
            out, err = p.communicate(timeout=120 * cklib.SLOW)
            self.assertEqual(p.returncode, 0, self.msg(err))
            outcome = "taken again after the restart"
        self.assertIn(name, self.check_snapshots(d, tmp_ok=False))
        self.check_orphans(d)
        self.check_files(d)
        return "%s killed at %.2fs%s (in the %s, %d child%s): %s" % (
            name, t, " of the copy" if in_copy else "", phase, len(kids),
            "" if len(kids) == 1 else "ren", outcome)

    def restore_killed(self, d, name, port, snap, win, t, in_restore, want):
        """A new cluster restored from snap, and kill -9 of the daemon t
        seconds after its spec appears (in_restore: after the daemon
        says it is restoring). After the restart it is available with
        every key of want, its work directory gone."""
        log0 = len(d.log())
        d.write(name + ".yaml", self.restore_spec(name, port, snap, win))
        if in_restore:
            wait_for(lambda: "restoring from snapshot %s" % snap in
                     d.log()[log0:], 60, interval=0.005,
                     what=self.msg("%s restoring" % name))
        time.sleep(t)
        said = d.log()[log0:]
        phase = ("end" if "restored from snapshot %s" % snap in said else
                 "restore" if "restoring from snapshot" in said else
                 "create")
        kids, _ = self.kill_daemon(d)
        self.check_snapshots(d, tmp_ok=True)
        self.fresh_after = time.time()
        log0 = len(d.log())
        d.start()
        self.avail(d, name, nodes=2, timeout=120)
        if phase != "end":
            self.assertIn("restored from snapshot %s" % snap,
                          d.log()[log0:], self.msg(
                              "%s available, but not restored" % name))
        lost = self.missing(want, port)
        self.assertFalse(os.path.exists(os.path.join(
            d.state, "local", name, ".restore")), self.msg(
            "the restore's work directory is left"))
        with open(os.path.join(d.state, "local", name,
                               "cluster.json")) as f:
            self.assertNotIn("restore_from", json.load(f))
        self.check_orphans(d)
        self.check_files(d)
        return lost, "%s killed at %.2fs%s (in the %s, %d child%s)" % (
            name, t, " of the restore" if in_restore else "", phase,
            len(kids), "" if len(kids) == 1 else "ren")

    def test_snapshot_restore_faults(self):
        """kill -9 of the daemon in the middle of a manual snapshot (a
        BGSAVE and copy of some 40 MB), once in the BGSAVE and once in
        the copy, and in the middle of a restore (spec.restore_from) of
        it into a new cluster, once while the cluster is being created
        and once while the keys are going in."""
        import datetime
        from test_backups import windows
        t0 = time.monotonic()
        win = windows(datetime.datetime.now(datetime.timezone.utc) +
                      datetime.timedelta(hours=12))   # no automatic ones
        d = self.start()
        d.write("web.yaml", spec("web", backend="local", extra=(
            "cluster_size: 2\nport: %d\nsnapshot_window: \"%s\"\n"
            "maintenance_window: \"%s\"\n" % (self.port, win[0], win[1]))))
        self.avail(d, "web", nodes=2)
        # 40000 keys of 1 KiB, random: the RDB does not compress.
        n = int(os.environ.get("CK_FAULT_SNAP_KEYS", "40000"))
        vr = random.Random("%d-values" % SEED)
        want = {}
        with Client(port=self.port, timeout=30) as c:
            for i in range(0, n, 1000):
                for k in range(i, min(n, i + 1000)):
                    want["s%d" % k] = "%x" % vr.getrandbits(4096)
                    c.send("SET", "s%d" % k, want["s%d" % k])
                for k in range(i, min(n, i + 1000)):
                    c._reply()
            # A replica in sync: the snapshot is taken from it.
            c.call("WAIT", "1", "5000")
        # One snapshot undisturbed, to know how long its steps take.
        p = self.snapshot_cli(d, "ref")
        out, err = p.communicate(timeout=120 * cklib.SLOW)
        self.assertEqual(p.returncode, 0, err)
        m = re.search(r"BGSAVE ([0-9.]+)s, copy ([0-9.]+)s", out)
        self.assertIsNotNone(m, out)
        save_s, copy_s = float(m.group(1)), float(m.group(2))
        details = ["%d keys; snapshot %.2fs + %.2fs" % (n, save_s, copy_s)]
        details.append(self.snapshot_killed(
            d, "snap1", self.rng.uniform(0.02, save_s), False))
        details.append(self.snapshot_killed(
            d, "snap2", self.rng.uniform(0.0, copy_s * 0.5), True))
        self.assertEqual(self.check_snapshots(d, tmp_ok=False),
                         ["ref", "snap1", "snap2"])

        # One restore undisturbed, to know how long its steps take; its
        # content is checked too.
        p3 = self.base + 106
        t1 = time.monotonic()
        log0 = len(d.log())
        d.write("web3.yaml", self.restore_spec("web3", p3, "ref", win))
        wait_for(lambda: "restoring from snapshot ref" in d.log()[log0:],
                 60, interval=0.005, what=self.msg("web3 restoring"))
        create_s = time.monotonic() - t1
        self.avail(d, "web3", nodes=2, timeout=120)
        rest_s = time.monotonic() - t1 - create_s
        self.assertEqual(self.missing(want, p3), [])
        details.append("restore %.2fs + %.2fs" % (create_s, rest_s))
        lost2, what = self.restore_killed(
            d, "web2", self.base + 103, "snap1", win,
            self.rng.uniform(0.05, create_s), False, want)
        details.append(what)
        lost4, what = self.restore_killed(
            d, "web4", self.base + 109, "snap2", win,
            self.rng.uniform(0.0, rest_s * 0.8), True, want)
        details.append(what)
        self.assertEqual(self.check_snapshots(d, tmp_ok=False),
                         ["ref", "snap1", "snap2"])
        details.append("%.0fs in all" % (time.monotonic() - t0))
        report("kill9_snapshot_restore", self.faults, 2 * len(want),
               len(lost2) + len(lost4), "; ".join(details))
        self.assertEqual(lost2 + lost4, [], self.msg(
            "keys missing after a restore"))

    def missing(self, want, port):
        """Keys of want not there, or not with their value, on port."""
        keys = list(want)
        return [k for k, v in zip(keys, self.get_all(port, keys, 30))
                if v != want[k]]

    @staticmethod
    def get_all(port, keys, timeout, chunk=500):
        """The values of keys on port (None when missing), pipelined."""
        vals = []
        with Client(port=port, timeout=timeout) as c:
            for i in range(0, len(keys), chunk):
                part = keys[i:i + chunk]
                for k in part:
                    c.send("GET", k)
                vals.extend(c._reply() for _ in part)
        return vals


class ECFaultTest(DaemonTest):
    """The ElastiCache emulator misbehaving under CreateReplicationGroup:
    each fault on its own group, one daemon. Retries stay bounded, the
    group is created exactly once, the status says what went wrong."""

    FAULTS = [
        ("drop", {"type": "drop", "execute": True, "count": 1}),
        ("throttle", {"type": "throttle", "count": 3}),
        ("internal", {"type": "internal", "count": 2}),
        ("unavailable", {"type": "unavailable", "count": 2}),
        ("malformed", {"type": "malformed", "execute": True, "count": 1}),
        # Past the daemon's 20 s request timeout (ECAPI_TIMEOUT_MS).
        ("delay", {"type": "delay", "delay_ms": 21000, "execute": True,
                   "count": 1}),
    ]

    def setUp(self):
        super().setUp()
        from test_elasticache import Emulator, have_botocore, AK, SK
        if not have_botocore():
            self.skipTest("python3-botocore is not installed")
        self.emu = Emulator(delay_ms=50)
        self.addCleanup(self.emu.stop)
        self.creds = {"AWS_ACCESS_KEY_ID": AK, "AWS_SECRET_ACCESS_KEY": SK}

    def test_emulator_faults(self):
        t0 = time.monotonic()
        d = self.daemon(binary=DAEMON, env=self.creds)
        with open(d.conf, "w") as f:
            f.write("clusters_dir: %s\nstate_dir: %s\nresync_interval: 2s\n"
                    "default_backend: elasticache\n"
                    "elasticache:\n  endpoint: %s\n  region: us-east-1\n"
                    "  poll_interval: 200ms\n"
                    % (d.specs, d.state, self.emu.url))
        d.start()
        for kind, rule in self.FAULTS:
            name = "g-" + kind
            before = self.emu.calls()
            recv0 = self.emu.calls("received").get(
                "CreateReplicationGroup", 0)
            self.emu.control("faults", dict(rule, action=
                                            "CreateReplicationGroup"))
            d.write(name + ".yaml", spec(name, backend="elasticache",
                                         extra="cluster_size: 2\n"))
            seen = set()

            def ok():
                d.alive()
                st = d.status(name)
                if st and st.get("last_error"):
                    seen.add(st["last_error"])
                return st and st["phase"] == "available" and \
                    st["observed_generation"] == st["generation"] and \
                    not st["plan"]["steps"] and st
            log0 = len(d.log())
            wait_for(ok, 60, interval=0.1, what="%s available" % name)
            for line in d.log()[log0:].splitlines():
                if ("cluster %s:" % name) in line and (
                        " warning: " in line or " notice: " in line):
                    seen.add(line.split("%s: " % name, 1)[1])
            oks = self.emu.calls().get("CreateReplicationGroup", 0) - \
                before.get("CreateReplicationGroup", 0)
            recv = self.emu.calls("received").get(
                "CreateReplicationGroup", 0) - recv0
            groups = [g for g in self.emu.control("state")[
                "replication_groups"] if g["ReplicationGroupId"] == name]
            report("ec_" + kind, rule.get("count", 1), 0, 0,
                   "creates ok=%d received=%d groups=%d; said: %s" %
                   (oks, recv, len(groups), "; ".join(sorted(seen))[:160]
                    or "nothing"))
            self.assertEqual(len(groups), 1, name)
            self.assertLessEqual(oks, 1, name)
            self.assertLessEqual(recv, rule.get("count", 1) + 2,
                                 "%s: unbounded retries" % name)
            # Not asserted: the API client retries throttling and 5xx
            # itself and says so at debug level only (RELIABILITY.md).
            self.emu.control("faults", method="DELETE")
        sys.stderr.write("emulator faults: %.1fs\n" % (time.monotonic() - t0))


if __name__ == "__main__":
    try:
        cklib.main()
    finally:
        sys.stderr.write("fault suite seed %d: %d scenarios\n%s\n" % (
            SEED, len(RESULTS), "\n".join(RESULTS)))
