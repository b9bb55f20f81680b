#!/usr/bin/python3
"""The local backend in cluster mode, end to end: real redis-server nodes
with cluster-enabled yes started by the real daemon, checked with the
real `redis-cli --cluster check`; resharding under a cluster-aware writer
(tests/integration/rcluster.py follows MOVED and ASK), replicas up and
down, a killed primary, and a daemon killed in the middle of a reshard.
Every node a test's daemon started is stopped by its pid when the test
ends (cklib.kill_nodes)."""

import os
import re
import shutil
import signal
import subprocess
import threading
import time

import cklib
from cklib import DaemonTest, spec, wait_for, DAEMON
from rcluster import ClusterClient, key_slot
from resp import Client, RedisError

REDIS = shutil.which("redis-server") or "/usr/bin/redis-server"
REDIS_CLI = shutil.which("redis-cli") or "/usr/bin/redis-cli"
SLOTS = 16384


class ClusterTest(DaemonTest):

    def setUp(self):
        super().setUp()
        if not os.access(REDIS, os.X_OK) or not os.access(REDIS_CLI,
                                                          os.X_OK):
            self.skipTest("redis-server or redis-cli is not installed "
                          "(scripts/install-deps installs them)")
        self.base = cklib.free_port_block()
        self.port = self.base + 100          # configuration endpoint

    def start(self, extra_conf=""):
        d = self.daemon(binary=DAEMON)
        with open(d.conf, "w") as f:
            f.write("clusters_dir: %s\nstate_dir: %s\nresync_interval: 5s\n"
                    "local:\n  port_range: %d-%d\n  failover_after: 1s\n"
                    "  cluster_node_timeout: 1000ms\n%s"
                    % (d.specs, d.state, self.base, self.base + 99,
                       extra_conf))
        d.start()
        return d

    def cluster(self, shards, replicas, name="cat"):
        return spec(name, backend="local", extra="port: %d\n"
                    "cluster_mode:\n  enabled: true\n  num_node_groups: %d\n"
                    "  replicas_per_node_group: %d\n"
                    % (self.port, shards, replicas))

    def wait_settled(self, d, shards, replicas, name="cat", timeout=40):
        def ok():
            d.alive()
            st = d.status(name)
            if not st or st["phase"] != "available" or \
                    st["observed_generation"] != st["generation"]:
                return None
            ep = st["endpoints"]
            if len(ep["shards"]) != shards or ep.get("cluster_state") != \
                    "ok" or len(ep["nodes"]) != shards * (replicas + 1):
                return None
            if any(len(s["nodes"]) != replicas + 1 for s in ep["shards"]):
                return None
            return st
        return wait_for(ok, timeout, interval=0.1, what="%s available with "
                        "%d shards x %d replicas" % (name, shards, replicas))

    def node_port(self, n):
        return int(n["address"].rsplit(":", 1)[1])

    def check(self, st):
        """redis-cli --cluster check against one node: all OK."""
        port = self.node_port(st["endpoints"]["nodes"][0])
        # Gossip after the last change may take a moment to settle.
        def ok():
            p = subprocess.run([REDIS_CLI, "--cluster", "check",
                                "127.0.0.1:%d" % port],
                               stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, timeout=30)
            out = p.stdout.decode(errors="replace")
            if p.returncode == 0 and "[WARNING]" not in out and \
                    "[ERR]" not in out:
                return out
            self.last_check = out
            return None
        self.last_check = ""
        try:
            out = wait_for(ok, 10, interval=0.3, what="cluster check OK")
        except AssertionError:
            raise AssertionError("redis-cli --cluster check:\n" +
                                 self.last_check)
        self.assertIn("[OK] All nodes agree about slots configuration", out)
        self.assertIn("[OK] All 16384 slots covered", out)
        return out

    def assert_balanced(self, st):
        shards = st["endpoints"]["shards"]
        counts = [s["slot_count"] for s in shards]
        self.assertEqual(sum(counts), SLOTS)
        self.assertLessEqual(max(counts) - min(counts), 1, counts)

    def client(self):
        return ClusterClient([("127.0.0.1", self.port)])

    def load(self, n, prefix="key:"):
        c = self.client()
        items = [("%s%d" % (prefix, i), "v%d" % i) for i in range(n)]
        for i in range(0, n, 1000):
            c.pipeline_set(items[i:i + 1000])
        c.close()
        return dict(items)

    def assert_keys(self, want):
        c = self.client()
        try:
            for k, v in want.items():
                self.assertEqual(c.call("GET", k), v, k)
        finally:
            c.close()

    def test_create_check_and_status(self):
        d = self.start()
        d.write("cat.yaml", self.cluster(3, 1))
        st = self.wait_settled(d, 3, 1)
        self.check(st)
        ep = st["endpoints"]
        self.assertEqual(ep["configuration"], "127.0.0.1:%d" % self.port)
        self.assertEqual(sorted(ep["configuration_nodes"]),
                         sorted(n["address"] for n in ep["nodes"]))
        self.assert_balanced(st)
        self.assertEqual(ep["failovers"], 0)
        # Slot ranges: shards in order cover 0..16383 with no gap.
        covered = set()
        for s in ep["shards"]:
            for part in s["slots"].split(","):
                a, _, b = part.partition("-")
                covered.update(range(int(a), int(b or a) + 1))
            prim = [n for n in ep["nodes"] if n["id"] == s["primary"]][0]
            self.assertEqual(prim["role"], "primary")
            self.assertEqual(prim["shard"], s["id"])
        self.assertEqual(covered, set(range(SLOTS)))
        # Every node runs in cluster mode with its own nodes.conf.
        for n in ep["nodes"]:
            with Client(port=self.node_port(n)) as c:
                self.assertEqual(c.info("cluster")["cluster_enabled"], "1")
                role = c.info("replication")["role"]
                self.assertEqual(role, "master" if n["role"] == "primary"
                                 else "slave")
            self.assertTrue(os.path.exists(os.path.join(
                d.state, "local", "cat", n["id"], "nodes.conf")))
        # Cluster bus ports come from local.port_range too.
        with Client(port=self.node_port(ep["nodes"][0])) as c:
            for line in c.call("CLUSTER", "NODES").splitlines():
                bus = int(line.split()[1].split("@")[1].split(",")[0])
                self.assertTrue(self.base <= bus < self.base + 100, line)
        # The configuration endpoint leads to the cluster.
        with Client(port=self.port) as c:
            self.assertIn("cluster_state:ok", c.call("CLUSTER", "INFO"))
        self.load(500)
        self.assert_keys({"key:7": "v7", "key:499": "v499"})

    def test_reshard_3_5_2_with_writer(self):
        d = self.start()
        d.write("cat.yaml", self.cluster(3, 0))
        self.wait_settled(d, 3, 0)
        data = self.load(20000)
        acked = {}
        stop = threading.Event()
        errors = []

        def writer():
            c = self.client()
            i = 0
            while not stop.is_set():
                k = "w%d" % (i % 500)
                try:
                    c.call("SET", k, str(i))
                    acked[k] = str(i)
                except (OSError, ConnectionError, RedisError) as e:
                    errors.append(repr(e))
                    time.sleep(0.02)
                i += 1
            c.close()
        t = threading.Thread(target=writer)
        t.start()
        try:
            d.write("cat.yaml", self.cluster(5, 0))
            st = self.wait_settled(d, 5, 0)
            self.assert_balanced(st)
            d.write("cat.yaml", self.cluster(2, 0))
            st = self.wait_settled(d, 2, 0)
        finally:
            stop.set()
            t.join()
        self.assert_balanced(st)
        self.check(st)
        self.assertGreater(len(acked), 100)
        self.assertEqual(errors, [])
        data.update(acked)
        self.assert_keys(data)
        log = d.log()
        self.assertIn("resharding done", log)
        self.assertIn("shard s3 holds no slot any more", log)
        # The removed shards' nodes are stopped and forgotten.
        self.assertEqual(len(st["endpoints"]["nodes"]), 2)
        for n in st["endpoints"]["nodes"]:
            with Client(port=self.node_port(n)) as c:
                wait_for(lambda: c.call("CLUSTER", "NODES").count("\n") == 2,
                         15, what="removed nodes forgotten on " + n["id"])

    def test_slot_larger_than_a_fetch(self):
        """A slot with many more keys than one GETKEYSINSLOT asks for
        (migrate_batch x migrate_pipeline) moves in rounds, each fetching
        the next keys behind its MIGRATEs, until it is empty."""
        d = self.start("  migrate_batch: 7\n  migrate_pipeline: 3\n")
        d.write("cat.yaml", self.cluster(3, 0))
        self.wait_settled(d, 3, 0)
        # A hash tag in the third shard's slots, all of which move when
        # the cluster shrinks to two shards.
        tag = next(t for t in ("t%d" % i for i in range(10000))
                   if key_slot("{%s}" % t) >= 10923)
        data = self.load(1000, prefix="{%s}:" % tag)
        data.update(self.load(3000))
        d.write("cat.yaml", self.cluster(2, 0))
        st = self.wait_settled(d, 2, 0)
        self.check(st)
        self.assert_keys(data)
        self.assertIn("resharding done", d.log())

    def test_replicas_up_and_down(self):
        d = self.start()
        d.write("cat.yaml", self.cluster(3, 1))
        self.wait_settled(d, 3, 1)
        data = self.load(2000)
        for r in (2, 0, 1):
            d.write("cat.yaml", self.cluster(3, r))
            st = self.wait_settled(d, 3, r)
            self.check(st)
            for s in st["endpoints"]["shards"]:
                self.assertEqual(len(s["nodes"]), r + 1)
        self.assert_keys(data)
        # Each replica replicates its own shard's primary.
        ep = st["endpoints"]
        ids = {n["id"]: n for n in ep["nodes"]}
        for s in ep["shards"]:
            prim = ids[s["primary"]]
            for nid in s["nodes"]:
                if nid == s["primary"]:
                    continue
                with Client(port=self.node_port(ids[nid])) as c:
                    self.assertEqual(c.info("replication")["master_port"],
                                     str(self.node_port(prim)))

    def test_kill_primary(self):
        d = self.start()
        d.write("cat.yaml", self.cluster(3, 1))
        st = self.wait_settled(d, 3, 1)
        data = self.load(3000)
        # Replication is asynchronous: only writes the replicas have are
        # sure to survive. Wait until each replica has its primary's
        # offset.
        ids = {n["id"]: n for n in st["endpoints"]["nodes"]}
        for s in st["endpoints"]["shards"]:
            with Client(port=self.node_port(ids[s["primary"]])) as c:
                off = int(c.info("replication")["master_repl_offset"])
            for nid in s["nodes"]:
                if nid == s["primary"]:
                    continue
                with Client(port=self.node_port(ids[nid])) as c:
                    wait_for(lambda: int(c.info("replication")[
                        "slave_repl_offset"]) >= off,
                        what="replica %s caught up" % nid)
        shard = st["endpoints"]["shards"][0]
        old = [n for n in st["endpoints"]["nodes"]
               if n["id"] == shard["primary"]][0]
        os.kill(old["pid"], signal.SIGKILL)
        d.wait_status("cat", phase="degraded", timeout=10)

        def promoted():
            s = d.status("cat")
            sh = [x for x in s["endpoints"]["shards"]
                  if x["id"] == shard["id"]][0]
            return sh["primary"] != old["id"] and s
        wait_for(promoted, 20, what="replica promoted")
        st = self.wait_settled(d, 3, 1)
        self.assertEqual(st["endpoints"]["failovers"], 1)
        back = [n for n in st["endpoints"]["nodes"] if n["id"] == old["id"]]
        self.assertEqual(back[0]["role"], "replica")
        self.assertNotEqual(back[0]["pid"], old["pid"])
        self.check(st)
        self.assert_keys(data)
        d.wait_log("failover: shard %s:" % shard["id"])

    def test_shard_without_nodes_is_degraded(self):
        d = self.start()
        d.write("cat.yaml", self.cluster(3, 0))
        st = self.wait_settled(d, 3, 0)
        shard = st["endpoints"]["shards"][1]
        prim = [n for n in st["endpoints"]["nodes"]
                if n["id"] == shard["primary"]][0]
        # A hung process: alive, so not restarted, and no replica.
        os.kill(prim["pid"], signal.SIGSTOP)
        try:
            st = wait_for(lambda: d.status("cat")["phase"] == "degraded" and
                          "shard %s has no node answering" % shard["id"] in
                          (d.status("cat")["message"] or "") and
                          d.status("cat"), 15, what="shard lost")
            self.assertIn("slots %s lost" % shard["slots"], st["message"])
        finally:
            os.kill(prim["pid"], signal.SIGCONT)
        st = self.wait_settled(d, 3, 0)
        self.check(st)

    def test_daemon_killed_mid_reshard(self):
        d = self.start("  migrate_slots: 2\n  migrate_batch: 20\n")
        d.write("cat.yaml", self.cluster(2, 0))
        self.wait_settled(d, 2, 0)
        data = self.load(20000)
        d.write("cat.yaml", self.cluster(4, 0))
        plan = os.path.join(d.state, "local", "cat", "reshard.json")

        def moving():
            st = d.status("cat")
            r = st["endpoints"].get("resharding", {})
            return os.path.exists(plan) and r.get("slots_done", 0) > 200
        wait_for(moving, 20, interval=0.01, what="resharding under way")
        # The operator sees the progress: in the status, in `cachekeeper
        # status` and in the daemon's STATUS= for systemctl.
        pg = d.status("cat")["progress"]
        self.assertEqual((pg["operation"], pg["unit"]),
                         ("resharding", "slots"))
        self.assertTrue(0 < pg["done"] < pg["total"] <= 16384, pg)
        p = subprocess.run([cklib.CLI, "--socket", os.path.join(
            d.tmp, "control.sock"), "status", "cat"], capture_output=True,
            text=True, timeout=10)
        self.assertRegex(p.stdout, r"resharding \d+/%d slots" % pg["total"])
        wait_for(lambda: [m for m in d.notify.seen("STATUS=")
                          if re.search(r"resharding \d+/\d+ slots", m)],
                 10, what="STATUS= with the reshard's progress")
        d.stop(signal.SIGKILL)
        d.start()
        d.wait_log("resuming resharding")
        st = self.wait_settled(d, 4, 0)
        self.assert_balanced(st)
        self.check(st)
        self.assertFalse(os.path.exists(plan))
        self.assert_keys(data)

    def open_slot_with_copy(self, st, key, src_value, dst_value):
        """Put key on its slot's owner and a copy on another primary that
        is told to import the slot, as a half-done move leaves it."""
        ep = st["endpoints"]
        ids = {n["id"]: n for n in ep["nodes"]}
        slot = key_slot(key)
        owner = other = None
        for s in ep["shards"]:
            mine = False
            for part in s["slots"].split(","):
                a, _, b = part.partition("-")
                mine = mine or int(a) <= slot <= int(b or a)
            if mine:
                owner = ids[s["primary"]]
            else:
                other = ids[s["primary"]]
        with Client(port=self.node_port(owner)) as c:
            c.call("SET", key, src_value)
            owner_id = c.call("CLUSTER", "MYID")
        with Client(port=self.node_port(other)) as c:
            c.call("CLUSTER", "SETSLOT", slot, "IMPORTING", owner_id)
            c.call("ASKING")
            c.call("SET", key, dst_value)
        return other

    def test_busykey_same_value_replaced_different_stops(self):
        d = self.start()
        d.write("cat.yaml", self.cluster(2, 0))
        st = self.wait_settled(d, 2, 0)
        self.open_slot_with_copy(st, "same", "v1", "v1")
        d.wait_log("have the same values: moving them with REPLACE", 20)
        st = self.wait_settled(d, 2, 0)
        self.check(st)
        self.assert_keys({"same": "v1"})
        # Different values: nothing is overwritten, the status says why.
        other = self.open_slot_with_copy(st, "diff", "mine", "theirs")
        st = wait_for(lambda: "key 'diff'" in (d.status("cat")["message"]
                                               or "") and d.status("cat"),
                      20, what="conflict reported")
        self.assertEqual(st["phase"], "degraded")
        self.assertIn("different values", st["message"])
        # Removing one copy lets the move finish.
        with Client(port=self.node_port(other)) as c:
            c.call("ASKING")
            c.call("DEL", "diff")
        st = self.wait_settled(d, 2, 0, timeout=40)
        self.check(st)
        self.assert_keys({"same": "v1", "diff": "mine"})

    def test_delete_with_final_snapshot(self):
        d = self.start()
        path = d.write("cat.yaml", self.cluster(2, 0).replace(
            "spec:\n", "spec:\n  deletion_policy: delete\n"))
        st = self.wait_settled(d, 2, 0)
        self.load(1000)
        os.unlink(path)
        wait_for(lambda: not os.path.exists(d.status_path("cat")), 20,
                 what="cluster deleted")
        for n in st["endpoints"]["nodes"]:
            wait_for(lambda: not cklib.is_redis(n["pid"]),
                     what="node %s stopped" % n["id"])
        finals = os.listdir(os.path.join(d.state, "backups", "cat"))
        self.assertEqual(len(finals), 1)
        self.assertTrue(finals[0].startswith("cat-final-"))
        dumps = sorted(os.listdir(os.path.join(d.state, "backups", "cat",
                                               finals[0])))
        self.assertEqual(dumps, ["manifest.json", "s1.rdb", "s2.rdb"])
        self.assertFalse(os.path.exists(os.path.join(d.state, "local",
                                                     "cat")))


if __name__ == "__main__":
    cklib.main()
