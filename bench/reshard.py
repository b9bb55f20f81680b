#!/usr/bin/python3
"""bench/reshard.py: how fast slots move, and how long a shard goes
without a primary.

Resharding, on identical data (--keys keys "key:N" with --value-size byte
values, spread over all slots by their hash, no hash tags), moving the
same slots: a 3-shard cluster without replicas gets a fourth, empty shard
and a quarter of the slots (4096) move to it (redis-cli --cluster create
needs at least 3 primaries).

  cachekeeper        cachekeeperd runs the cluster; the spec goes from
                     num_node_groups 3 to 4. Timed from the daemon's
                     "resharding: moving" log line to "resharding done"
                     (the moves alone), and from the spec write to the
                     status being available again (with starting the new
                     shard's node, MEET and the final agreement).
  redis-cli          four redis-server processes this script starts
                     itself, `redis-cli --cluster create` over three of
                     them, the fourth added with `--cluster add-node`, then
                     timed `redis-cli --cluster reshard --cluster-from
                     <the three> --cluster-to <new> --cluster-slots 4096
                     --cluster-yes`, once with the default pipeline (10
                     keys per MIGRATE) and once with --cluster-pipeline 100.

Keys per second = keys that moved (counted on the new shard) / seconds.

Failover (--failover-trials, default 3): a 3 shards x 1 replica cluster
run by cachekeeperd at the default cluster_node_timeout (5000 ms); each
trial kill -9s one primary and times kill -> first successful SET of a key
in that shard by a client that follows MOVED and refreshes its slot map
(rcluster.py), and kill -> the status naming the new primary.

It is a benchmark, not a test: it prints figures and exits 0 (1 when it
could not measure). Every process it starts is stopped by its pid.

  bench/reshard.py [--keys N] [--value-size N] [--daemon PATH]
                   [--failover-trials N] [--skip-failover] [--skip-reshard]
                   [--local KEY=VALUE ...]
"""

import argparse
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tests", "integration"))
from rcluster import ClusterClient, key_slot  # noqa: E402
from resp import Client, RedisError  # noqa: E402

REDIS = shutil.which("redis-server") or "/usr/bin/redis-server"
CLI = shutil.which("redis-cli") or "/usr/bin/redis-cli"
PIDS = []


def free_block(size=40):
    import random
    for _ in range(200):
        base = random.randrange(20000, 50000, 10)
        ok = True
        for p in list(range(base, base + size)) + \
                list(range(base + 10000, base + 10000 + size)):
            s = socket.socket()
            try:
                s.bind(("127.0.0.1", p))
            except OSError:
                ok = False
            finally:
                s.close()
            if not ok:
                break
        if ok:
            return base
    raise RuntimeError("no free port block")


def wait(cond, timeout, what, interval=0.05):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        try:
            v = cond()
        except (OSError, ValueError, KeyError, TypeError, RedisError):
            v = None
        if v:
            return v
        time.sleep(interval)
    raise RuntimeError("timed out waiting for " + what)


def load(port, n, size):
    c = ClusterClient([("127.0.0.1", port)])
    val = "x" * size
    t0 = time.monotonic()
    for i in range(0, n, 2000):
        c.pipeline_set([("key:%d" % k, val) for k in range(i, min(n,
                                                                   i + 2000))])
    c.close()
    return time.monotonic() - t0


def dbsize(port):
    with Client(port=port) as c:
        return int(c.call("DBSIZE"))


class Daemon:
    def __init__(self, path, tmp, base, extra=""):
        self.tmp = tmp
        self.specs = os.path.join(tmp, "specs")
        self.state = os.path.join(tmp, "state")
        os.makedirs(self.specs)
        self.conf = os.path.join(tmp, "ck.yaml")
        with open(self.conf, "w") as f:
            f.write("clusters_dir: %s\nstate_dir: %s\nresync_interval: 5s\n"
                    "log_level: info\nlocal:\n  port_range: %d-%d\n%s"
                    % (self.specs, self.state, base, base + 30, extra))
        self.log = os.path.join(tmp, "daemon.log")
        self.proc = subprocess.Popen([path, "-f", self.conf], stdout=open(
            self.log, "w"), stderr=subprocess.STDOUT)
        self.port = base + 35

    def spec(self, shards, replicas):
        tmp = os.path.join(self.specs, ".c.tmp")
        with open(tmp, "w") as f:
            f.write("apiVersion: cachekeeper/v1\nkind: RedisCluster\n"
                    "metadata:\n  name: bench\nspec:\n  backend: local\n"
                    "  port: %d\n  cluster_mode:\n    enabled: true\n"
                    "    num_node_groups: %d\n    replicas_per_node_group: "
                    "%d\n" % (self.port, shards, replicas))
        os.rename(tmp, os.path.join(self.specs, "c.yaml"))

    def status(self):
        with open(os.path.join(self.state, "status", "bench.json")) as f:
            return json.load(f)

    def available(self, shards):
        st = self.status()
        return st["phase"] == "available" and st["observed_generation"] == \
            st["generation"] and len(st["endpoints"]["shards"]) == shards \
            and st

    def logtext(self):
        with open(self.log) as f:
            return f.read()

    def stop(self):
        self.proc.send_signal(signal.SIGTERM)
        self.proc.wait(10)
        for root, _, files in os.walk(os.path.join(self.state, "local")):
            if "redis.pid" in files:
                try:
                    PIDS.append(int(open(os.path.join(root, "redis.pid"))
                                    .read()))
                except (OSError, ValueError):
                    pass


def stamp(log, text):
    for line in log.splitlines():
        if text in line:
            t = line.split(" ", 1)[0]
            h, m, s = t[11:-1].split(":")
            return int(h) * 3600 + int(m) * 60 + float(s)
    return None


def bench_daemon(args, tmp):
    base = free_block()
    extra = "".join("  %s\n" % kv.replace("=", ": ", 1)
                    for kv in args.local)
    d = Daemon(args.daemon, os.path.join(tmp, "ck"), base, extra)
    try:
        d.spec(3, 0)
        wait(lambda: d.available(3), 30, "3 shards")
        load(d.port, args.keys, args.value_size)
        t0 = time.monotonic()
        d.spec(4, 0)
        st = wait(lambda: d.available(4), 600, "4 shards", 0.02)
        total = time.monotonic() - t0
        log = d.logtext()
        a, b = stamp(log, "resharding: moving"), stamp(log, "resharding done")
        new = [s for s in st["endpoints"]["shards"] if s["id"] == "s4"][0]
        prim = [n for n in st["endpoints"]["nodes"]
                if n["id"] == new["primary"]][0]
        moved = dbsize(int(prim["address"].rsplit(":", 1)[1]))
        return moved, b - a, total, new["slot_count"]
    finally:
        d.stop()


def start_node(tmp, port):
    d = os.path.join(tmp, str(port))
    os.makedirs(d)
    p = subprocess.Popen([REDIS, "--port", str(port), "--bind", "127.0.0.1",
                          "--cluster-enabled", "yes", "--cluster-config-file",
                          d + "/nodes.conf", "--dir", d, "--save", "",
                          "--appendonly", "no", "--logfile", d + "/log"],
                         stdout=subprocess.DEVNULL)
    PIDS.append(p.pid)
    wait(lambda: Client(port=port).call("PING") == "PONG", 10, "node")
    return p


def myid(port):
    with Client(port=port) as c:
        return c.call("CLUSTER", "MYID")


def bench_cli(args, tmp, pipeline):
    base = free_block()
    d = os.path.join(tmp, "cli%d" % (pipeline or 0))
    procs = [start_node(d, base + i) for i in range(4)]
    try:
        subprocess.run([CLI, "--cluster", "create", "127.0.0.1:%d" % base,
                        "127.0.0.1:%d" % (base + 1),
                        "127.0.0.1:%d" % (base + 2), "--cluster-yes"],
                       check=True, stdout=subprocess.DEVNULL)
        wait(lambda: "cluster_state:ok" in Client(port=base).call(
            "CLUSTER", "INFO"), 30, "cluster ok")
        load(base, args.keys, args.value_size)
        subprocess.run([CLI, "--cluster", "add-node",
                        "127.0.0.1:%d" % (base + 3), "127.0.0.1:%d" % base],
                       check=True, stdout=subprocess.DEVNULL)
        def known(port):
            with Client(port=port) as c:
                txt = c.call("CLUSTER", "NODES")
                info = c.call("CLUSTER", "INFO")
            return txt.count("master") == 4 and "handshake" not in txt \
                and "cluster_state:ok" in info
        wait(lambda: all(known(base + i) for i in range(4)) and subprocess.run(
                 [CLI, "--cluster", "check", "127.0.0.1:%d" % base],
                 stdout=subprocess.DEVNULL).returncode == 0, 30, "agree")
        cmd = [CLI, "--cluster", "reshard", "127.0.0.1:%d" % base,
               "--cluster-from", ",".join(myid(base + i) for i in range(3)),
               "--cluster-to", myid(base + 3), "--cluster-slots", "4096",
               "--cluster-yes"]
        if pipeline:
            cmd += ["--cluster-pipeline", str(pipeline)]
        t0 = time.monotonic()
        p = subprocess.run(cmd, stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT)
        took = time.monotonic() - t0
        if p.returncode != 0:
            raise RuntimeError("redis-cli --cluster reshard: " + "\n".join(
                p.stdout.decode(errors="replace").splitlines()[-5:]))
        return dbsize(base + 3), took
    finally:
        for p in procs:
            p.kill()
            p.wait()


def bench_failover(args, tmp):
    base = free_block()
    d = Daemon(args.daemon, os.path.join(tmp, "fo"), base)
    out = []
    try:
        d.spec(3, 1)
        wait(lambda: d.available(3), 60, "3x1")
        load(d.port, 3000, 16)
        for trial in range(args.failover_trials):
            st = wait(lambda: d.available(3) and all(
                n["up"] and n["synced"] for n in d.status()["endpoints"]
                ["nodes"]) and d.status(), 120, "healthy")
            sh = st["endpoints"]["shards"][trial % 3]
            old = [n for n in st["endpoints"]["nodes"]
                   if n["id"] == sh["primary"]][0]
            a, _, b = sh["slots"].split(",")[0].partition("-")
            key = next("fo:%d" % i for i in range(100000)
                       if int(a) <= key_slot("fo:%d" % i) <= int(b or a))
            c = ClusterClient([("127.0.0.1", d.port)], timeout=0.5)
            os.kill(old["pid"], signal.SIGKILL)
            t0 = time.monotonic()
            while True:
                try:
                    c.call("SET", key, "1", deadline_s=0)
                    break
                except (OSError, ConnectionError, RedisError):
                    c.refresh()
                    time.sleep(0.01)
            write = time.monotonic() - t0
            st2 = wait(lambda: [s for s in d.status()["endpoints"]["shards"]
                                if s["id"] == sh["id"]][0]["primary"] !=
                       old["id"], 60, "new primary", 0.01)
            seen = time.monotonic() - t0
            c.close()
            out.append((write, seen))
            print("  failover trial %d: writes back after %.2f s, status "
                  "shows the new primary after %.2f s" % (trial + 1, write,
                                                          seen), flush=True)
    finally:
        d.stop()
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--keys", type=int, default=200000)
    ap.add_argument("--value-size", type=int, default=64)
    ap.add_argument("--daemon", default=os.path.join(
        os.environ.get("CK_BUILDDIR", os.path.join(HERE, "..")),
        "cachekeeperd"))
    ap.add_argument("--failover-trials", type=int, default=3)
    ap.add_argument("--skip-failover", action="store_true")
    ap.add_argument("--skip-reshard", action="store_true")
    ap.add_argument("--local", action="append", default=[],
                    metavar="KEY=VALUE", help="a daemon config local: "
                    "setting, e.g. migrate_slots=16 (default: the "
                    "daemon's defaults)")
    args = ap.parse_args()
    tmp = tempfile.mkdtemp(prefix="ck-bench-reshard-")
    try:
        if not args.skip_reshard:
            print("%d keys of %d bytes; moving 4096 of 16384 slots to a new "
                  "shard" % (args.keys, args.value_size), flush=True)
            moved, moves_s, total_s, slots = bench_daemon(args, tmp)
            ck = moved / moves_s
            print("cachekeeper       %7d keys in %6.2f s  %9.0f keys/s  "
                  "(%d slots; %.2f s from spec write to available)"
                  % (moved, moves_s, ck, slots, total_s), flush=True)
            res = {}
            for pl in (None, 100):
                m, s = bench_cli(args, tmp, pl)
                res[pl] = m / s
                print("redis-cli %-8s %7d keys in %6.2f s  %9.0f keys/s"
                      % ("p%d" % (pl or 10), m, s, m / s), flush=True)
            print("ratio cachekeeper / redis-cli default pipeline: %.2fx"
                  % (ck / res[None]))
            print("ratio cachekeeper / redis-cli --cluster-pipeline 100: "
                  "%.2fx" % (ck / res[100]))
        if not args.skip_failover:
            print("failover at the default cluster_node_timeout (5000 ms):",
                  flush=True)
            fo = sorted(bench_failover(args, tmp))
            if fo:
                print("  median: writes back %.2f s, status %.2f s" % (
                    fo[len(fo) // 2][0], sorted(x[1] for x in fo)
                    [len(fo) // 2]))
    except (RuntimeError, subprocess.CalledProcessError) as e:
        print("could not measure: %s" % e)
        return 1
    except KeyboardInterrupt:
        return 130
    finally:
        for p in PIDS:
            try:
                with open("/proc/%d/cmdline" % p, "rb") as f:
                    if b"redis" in f.read():
                        os.kill(p, signal.SIGKILL)
            except OSError:
                pass
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
